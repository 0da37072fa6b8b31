//! Staging: the private copy a plugin file is loaded from.
//!
//! The loader never opens the operator's file itself. It reads it once, hashes what it read,
//! checks that the bytes are a whole ELF shared object, and writes them to a fresh, uniquely
//! named file in the daemon's own cache folder, which it then loads and unlinks. So:
//! - the loader's cache cannot hand back old code: glibc reuses an already-loaded object when
//!   the same path is opened again, and every copy has a new name;
//! - a file overwritten in place (`cp new.so apps/`) cannot corrupt a mapped library: what is
//!   mapped is the copy;
//! - a half-written file is refused before it is mapped (its ELF headers describe more bytes
//!   than it has), where mapping it would crash the process on first touch;
//! - the SHA-256 of exactly the bytes loaded is known, so an unchanged file (a `touch`, a
//!   rebuild with identical output) is not loaded again.
//!
//! An unlinked copy stays mapped (and its inode allocated) for as long as the library is, so
//! no later copy can share its identity. Copies live in `CACHE_DIR/run-PID/` and are removed
//! right after loading; a folder left by a daemon that died is removed at the next start.

use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

/// A file's identity: a changed identity means a new file to look at. Not the ctime: it
/// changes with the link count, and hard links to a plugin file come and go (cargo makes
/// them, and so do installers) without changing a byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl FileId {
    /// The identity of `path` (following symlinks), or None if it cannot be looked at.
    pub(crate) fn of(path: &Path) -> Option<FileId> {
        fs::metadata(path).ok().map(|m| FileId::from_metadata(&m))
    }

    fn from_metadata(m: &fs::Metadata) -> FileId {
        FileId {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        }
    }
}

/// A SHA-256 digest.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Digest256(pub [u8; 32]);

impl std::fmt::Display for Digest256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for Digest256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "sha256:{self}")
    }
}

/// Why a plugin file could not be staged.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The file could not be read.
    #[error("cannot read it: {0}")]
    Read(io::Error),
    /// The file changed while it was being read: it is still being written.
    #[error(
        "it changed while being read (still being written?); it is tried again when it \
         changes (hint: install plugins with `install -m 0644 NEW.so DIR/` or copy then `mv`)"
    )]
    Changing,
    /// The bytes are not an ELF shared object.
    #[error("cannot load as a shared library: {0}")]
    NotElf(String),
    /// The ELF headers describe more bytes than the file has.
    #[error(
        "the file is incomplete: {0} (half-written? it is tried again when it changes; hint: \
         install plugins with `install -m 0644 NEW.so DIR/` or copy then `mv`)"
    )]
    Truncated(String),
    /// The file fails a trust check (see `trust`).
    #[error("refused: {0}")]
    Untrusted(gatehouse_trust::Untrusted),
    /// The file's digest is not the one the alias pins.
    #[error(
        "its SHA-256 is {found}, not the {pinned} its alias pins with `sha256` (a tampered or \
         half-copied file, or a new build: update the pin to `sha256sum` of the new file)"
    )]
    Digest {
        /// The file's digest.
        found: String,
        /// The pinned one.
        pinned: String,
    },
    /// The private copy could not be written.
    #[error(
        "cannot write its private copy in {dir}: {error} (hint: the daemon's user needs write \
         access to `cache_dir`, on a file system not mounted noexec)"
    )]
    Copy {
        /// The cache folder.
        dir: PathBuf,
        /// What failed.
        error: io::Error,
    },
}

/// A plugin file copied into the cache, ready to load.
#[derive(Debug)]
pub(crate) struct Staged {
    /// The private copy (removed when this value is dropped).
    pub copy: PathBuf,
    /// The original file's identity when it was read.
    pub id: FileId,
    /// The digest of the bytes copied.
    pub sha256: Digest256,
}

impl Drop for Staged {
    fn drop(&mut self) {
        // Loaded or refused, the copy is no longer needed by name (see the module docs).
        let _ = fs::remove_file(&self.copy);
    }
}

/// What the trust checks do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Check {
    /// Refuse a file that fails them (`check_plugins: true`).
    Enforce,
    /// Log a warning and load it (`check_plugins: false`).
    Warn,
    /// Do not run them (benchmarks).
    Skip,
}

/// What a plugin file must satisfy before it is staged.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy<'a> {
    /// The trust checks.
    pub check: Check,
    /// Whose files are trusted.
    pub owners: gatehouse_trust::Owners,
    /// The digest the file must have (lower-case hex), if the alias pins one.
    pub sha256: Option<&'a str>,
}

impl Policy<'_> {
    /// Refuses a file whose digest is not the one the alias pins (`sha256`), if it pins one.
    pub(crate) fn check_pin(&self, sha256: Digest256) -> Result<(), StageError> {
        match self.sha256 {
            Some(pinned) if sha256.to_string() != pinned => {
                Err(StageError::Digest { found: sha256.to_string(), pinned: pinned.to_owned() })
            }
            _ => Ok(()),
        }
    }
}

/// The daemon's folder of private copies: `CACHE_DIR/run-PID`.
#[derive(Debug)]
pub struct Cache {
    dir: PathBuf,
    next: AtomicU64,
}

impl Cache {
    /// The folder copies are written to.
    #[cfg(test)]
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates `base/run-PID` (mode 0700), removing folders left there by daemons that are
    /// no longer running.
    pub fn create(base: &Path) -> io::Result<Cache> {
        fs::DirBuilder::new().recursive(true).mode(0o750).create(base)?;
        let me = std::process::id();
        if let Ok(entries) = fs::read_dir(base) {
            for e in entries.flatten() {
                let name = e.file_name();
                let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("run-")) else {
                    continue;
                };
                let Ok(pid) = pid.parse::<u32>() else { continue };
                if pid == me || !Path::new(&format!("/proc/{pid}")).exists() {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        let dir = base.join(format!("run-{me}"));
        fs::DirBuilder::new().mode(0o700).create(&dir)?;
        Ok(Cache { dir, next: AtomicU64::new(1) })
    }

    /// Reads `file`, checks it, and writes its private copy. An error comes with the
    /// identity of the file as read, when it was read whole.
    /// A trust failure comes without an identity: fixing it (`chmod`, `chown`) does not
    /// change the file's identity, so it is looked at again next time.
    pub(crate) fn stage(
        &self,
        file: &Path,
        policy: &Policy<'_>,
    ) -> Result<Staged, (StageError, Option<FileId>)> {
        let (bytes, id) = read_stable(file, policy).map_err(|e| (e, None))?;
        check_elf(&bytes).map_err(|e| (e, Some(id)))?;
        let sha256 = Digest256(Sha256::digest(&bytes).into());
        policy.check_pin(sha256).map_err(|e| (e, Some(id)))?;
        let stem = file.file_stem().and_then(|s| s.to_str()).unwrap_or("plugin");
        let stem: String = stem
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
            .take(64)
            .collect();
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let copy = self.dir.join(format!("{stem}-{n}-{}.so", &sha256.to_string()[..12]));
        let written = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o500)
            .open(&copy)
            .and_then(|mut f| f.write_all(&bytes));
        let staged = Staged { copy, id, sha256 };
        written.map_err(|error| (StageError::Copy { dir: self.dir.clone(), error }, None))?;
        Ok(staged)
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// Reads a whole file, after the trust checks, making sure it did not change while being
/// read.
pub(crate) fn read_stable(
    file: &Path,
    policy: &Policy<'_>,
) -> Result<(Vec<u8>, FileId), StageError> {
    let mut f = fs::File::open(file).map_err(StageError::Read)?;
    let meta = f.metadata().map_err(StageError::Read)?;
    if policy.check != Check::Skip {
        let resolved = fs::canonicalize(file).map_err(StageError::Read)?;
        if let Err(untrusted) =
            gatehouse_trust::check(&resolved, &meta, policy.owners, gatehouse_trust::Code::Plugin)
        {
            if policy.check == Check::Enforce {
                return Err(StageError::Untrusted(untrusted));
            }
            log::warn!("loading it anyway, `check_plugins` is off: {untrusted}");
        }
    }
    let before = FileId::from_metadata(&meta);
    let mut bytes = Vec::with_capacity(usize::try_from(before.size).unwrap_or(0));
    f.read_to_end(&mut bytes).map_err(StageError::Read)?;
    let after = FileId::from_metadata(&f.metadata().map_err(StageError::Read)?);
    if before != after || bytes.len() as u64 != after.size {
        return Err(StageError::Changing);
    }
    Ok((bytes, after))
}

/// Checks that `bytes` are a whole ELF shared object: the ELF header, every program header,
/// every loadable segment and the section header table lie inside the file.
pub fn check_elf(bytes: &[u8]) -> Result<(), StageError> {
    let elf = super::elf::Elf::new(bytes).map_err(StageError::NotElf)?;
    let wide = elf.wide;
    let len = bytes.len() as u64;
    let short = |what: &str, end: u64| {
        StageError::Truncated(format!("its {what} ends at byte {end}, the file has {len}"))
    };
    let rd = |at: u64, size: usize| -> Result<u64, StageError> {
        elf.int(at, size).map_err(|_| short("header", at.saturating_add(size as u64)))
    };
    // The ELF header itself first: 64 bytes (ELF64) or 52 (ELF32).
    let header = if wide { 64 } else { 52 };
    if len < header {
        return Err(short("ELF header", header));
    }
    let word = if wide { 8 } else { 4 };
    // e_type, then the offsets and counts, at the positions the two classes define.
    let e_type = rd(16, 2)?;
    if e_type != 3 {
        return Err(StageError::NotElf(format!(
            "ELF type {e_type} is not a shared object (3); build the plugin as a cdylib"
        )));
    }
    let (phoff, shoff, sizes) = if wide { (0x20, 0x28, 0x36) } else { (0x1c, 0x20, 0x2a) };
    let phoff = rd(phoff, word)?;
    let shoff = rd(shoff, word)?;
    let phentsize = rd(sizes, 2)?;
    let phnum = rd(sizes + 2, 2)?;
    let shentsize = rd(sizes + 4, 2)?;
    let shnum = rd(sizes + 6, 2)?;
    let ph_end = phoff.saturating_add(phnum.saturating_mul(phentsize));
    if ph_end > len {
        return Err(short("program header table", ph_end));
    }
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        if rd(ph, 4)? != 1 {
            continue; // not PT_LOAD
        }
        let (offset, filesz) = if wide {
            (rd(ph + 8, 8)?, rd(ph + 0x20, 8)?)
        } else {
            (rd(ph + 4, 4)?, rd(ph + 0x10, 4)?)
        };
        let end = offset.saturating_add(filesz);
        if end > len {
            return Err(short(&format!("loadable segment {i}"), end));
        }
    }
    if shoff != 0 {
        let sh_end = shoff.saturating_add(shnum.saturating_mul(shentsize));
        if sh_end > len {
            return Err(short("section header table", sh_end));
        }
    }
    Ok(())
}

#[cfg(test)]
impl Policy<'_> {
    /// No checks at all (tests of other things).
    pub(crate) const NONE: Policy<'static> =
        Policy { check: Check::Skip, owners: gatehouse_trust::Owners { euid: 0 }, sha256: None };
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// This test binary's own bytes: a whole ELF file (an executable, so typed 3 = PIE
    /// or 2; either way its tables are whole).
    fn whole_elf() -> Vec<u8> {
        fs::read(std::env::current_exe().unwrap()).unwrap()
    }

    fn shared_object() -> Vec<u8> {
        let mut b = whole_elf();
        b[16] = 3; // e_type little-endian low byte: ET_DYN (x86-64 and aarch64 are LE)
        b[17] = 0;
        b
    }

    #[test]
    fn elf_checks() {
        let so = shared_object();
        assert!(check_elf(&so).is_ok());
        let cases: [(&str, Vec<u8>, &str); 6] = [
            ("empty", Vec::new(), "invalid ELF header"),
            ("a script", b"#!/bin/sh\necho hi\n".to_vec(), "invalid ELF header"),
            ("header only", so[..40].to_vec(), "ends at byte"),
            ("half", so[..so.len() / 2].to_vec(), "ends at byte"),
            ("one byte short", so[..so.len() - 1].to_vec(), "section header table"),
            (
                "an executable",
                {
                    let mut b = so.clone();
                    b[16] = 2;
                    b
                },
                "not a shared object",
            ),
        ];
        for (what, bytes, says) in cases {
            let err = check_elf(&bytes).expect_err(what).to_string();
            assert!(err.contains(says), "{what}: {err}");
        }
    }

    /// The elf fuzzer's finding: a 51-byte ELF32 whose fields all lay inside the file but
    /// whose 52-byte header did not was accepted.
    #[test]
    fn a_header_shorter_than_its_class_is_refused() {
        let crash: &[u8] = b"\x7fELF\x01\x01\x00\x02\x01\x7fELF\x02\x01\x01\x03\x00\x00\x00\x00\x00\x00\x03\x00>\x00Q\x00\x00\x00\x00\x00\x00\x00\x00!\x00\x00\x00\x00\x03\x00\x00\x00\x00?\x00\x00\x00\x00";
        assert_eq!(crash.len(), 51);
        let err = check_elf(crash).expect_err("51 bytes of ELF32").to_string();
        assert!(err.contains("ELF header ends at byte 52"), "{err}");
        let mut wide = shared_object();
        wide.truncate(63);
        assert!(
            check_elf(&wide).expect_err("63 bytes of ELF64").to_string().contains("ELF header")
        );
    }

    #[test]
    fn stage_copies_hashes_and_cleans_up() {
        let tmp = tempfile::tempdir().unwrap();
        let src = tmp.path().join("libx.so");
        fs::write(&src, shared_object()).unwrap();
        let cache = Cache::create(&tmp.path().join("cache")).unwrap();
        let a = cache.stage(&src, &Policy::NONE).unwrap();
        let b = cache.stage(&src, &Policy::NONE).unwrap();
        assert_ne!(a.copy, b.copy, "every copy has a new name");
        assert_eq!(a.sha256, b.sha256);
        assert_eq!(fs::read(&a.copy).unwrap(), fs::read(&src).unwrap());
        let copy = a.copy.clone();
        drop(a);
        assert!(!copy.exists(), "the copy is removed once loaded");
        fs::write(&src, b"not elf").unwrap();
        assert!(matches!(cache.stage(&src, &Policy::NONE), Err((StageError::NotElf(_), Some(_)))));
        let dir = cache.dir().to_owned();
        drop((b, cache));
        assert!(!dir.exists(), "the run folder goes with the cache");
    }

    #[test]
    fn stale_run_folders_are_swept() {
        let tmp = tempfile::tempdir().unwrap();
        // pid 0 is never a process: a folder left by a dead daemon.
        let stale = tmp.path().join("run-0");
        fs::create_dir_all(&stale).unwrap();
        fs::write(stale.join("libx-1-abc.so"), b"x").unwrap();
        let other = tmp.path().join("keep-me");
        fs::create_dir_all(&other).unwrap();
        let _cache = Cache::create(tmp.path()).unwrap();
        assert!(!stale.exists());
        assert!(other.exists());
    }
}
