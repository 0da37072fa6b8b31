//! What the daemon does to a log file on disk, none of which goes through a link: opening the
//! current file, renaming it away at rotation, compressing and removing rotated files.
//!
//! A log folder may be writable by others than the daemon (a group of operators, or, with
//! the daemon started as root, a folder that is its service user's), who could plant a
//! symbolic link named `debug.log` (or named like the next rotated or compressed file) to
//! `/etc/shadow`. So:
//! - files are opened with `O_NOFOLLOW` (a link is refused, never followed), `O_NONBLOCK`
//!   (a planted FIFO cannot block the writer) and checked to be a regular file with one
//!   link (a hard link to another file is refused too);
//! - a file the daemon creates is created with `O_EXCL` (never through anything already
//!   there) and given its mode through its descriptor (`fchmod`), never by path;
//! - renames and removals act on the names themselves, which never follows a link.
//!
//! Names: the current file is `NAME.EXT`; rotated ones are `NAME_rYYYY-MM-DD_HH-MM-SS.EXT`
//! (the time the file was started; several in one second get `.restart-NNNN` before the
//! extension), `….EXT.gz` once compressed. These are flexi_logger's names, which earlier
//! versions wrote.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Local};

/// The time format in rotated files' names.
const INFIX_FORMAT: &str = "%Y-%m-%d_%H-%M-%S";

/// An open log file, with its metadata as opened.
#[derive(Debug)]
pub(super) struct Opened {
    pub(super) file: File,
    pub(super) meta: fs::Metadata,
}

/// Opens the log file `path` for appending, creating it with exactly `mode` if it does not
/// exist. Refuses a symbolic link, anything but a regular file, and a file with other hard
/// links, with an error that says so.
pub(super) fn open_append(path: &Path, mode: u32) -> io::Result<Opened> {
    let options = |create: bool| {
        let mut o = OpenOptions::new();
        o.append(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY);
        if create {
            o.create_new(true).mode(mode);
        }
        o
    };
    let (file, created) = match options(true).open(path) {
        Ok(f) => (f, true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            (options(false).open(path).map_err(|e| refusal(path, e))?, false)
        }
        Err(e) => return Err(refusal(path, e)),
    };
    if created {
        // Exactly `mode` (the umask narrowed it), through the descriptor.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
    }
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::other(format!(
            "{} is not a regular file; a log is written only to one",
            path.display()
        )));
    }
    if meta.nlink() > 1 {
        return Err(io::Error::other(format!(
            "{} has {} hard links (another name for the same file); a log is never written to \
             a file that has another (remove it, and the daemon starts a new file)",
            path.display(),
            meta.nlink()
        )));
    }
    Ok(Opened { file, meta })
}

/// `e`, worded for a link that `O_NOFOLLOW` refused, or a FIFO or socket (`ENXIO` when
/// opened without waiting).
fn refusal(path: &Path, e: io::Error) -> io::Error {
    match e.raw_os_error() {
        Some(libc::ELOOP) => io::Error::other(format!(
            "{} is a symbolic link; a log is never written through one (remove it, and the \
             daemon starts a new file)",
            path.display()
        )),
        Some(libc::ENXIO) => io::Error::other(format!(
            "{} is not a regular file; a log is written only to one",
            path.display()
        )),
        _ => e,
    }
}

/// The file name's parts: (stem, extension), `debug` and `log` for `debug.log`.
fn parts(path: &Path) -> (String, Option<String>) {
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let ext = path.extension().map(|e| e.to_string_lossy().into_owned());
    (stem, ext)
}

/// `NAME_rINFIX.EXT`.
fn rotated_name(stem: &str, infix: &str, ext: Option<&str>) -> String {
    match ext {
        Some(ext) => format!("{stem}_r{infix}.{ext}"),
        None => format!("{stem}_r{infix}"),
    }
}

/// Renames the current file `path`, started at `started`, to its rotated name, one no file
/// has yet; returns that name.
pub(super) fn rotate_away(path: &Path, started: DateTime<Local>) -> io::Result<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let (stem, ext) = parts(path);
    let stamp = started.format(INFIX_FORMAT).to_string();
    let exists = |name: &str| {
        fs::symlink_metadata(dir.join(name)).is_ok()
            || fs::symlink_metadata(dir.join(format!("{name}.gz"))).is_ok()
    };
    // The restarts of this second already there: `NAME_rSTAMP.restart-NNNN.EXT[.gz]`.
    let prefix = format!("{stem}_r{stamp}.restart-");
    let last_restart = fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_prefix(&prefix)?.get(..4)?.parse::<u32>().ok()
        })
        .max();
    let infix = match last_restart {
        None if !exists(&rotated_name(&stem, &stamp, ext.as_deref())) => stamp,
        None => format!("{stamp}.restart-0000"),
        Some(n) => format!("{stamp}.restart-{:04}", n + 1),
    };
    let to = dir.join(rotated_name(&stem, &infix, ext.as_deref()));
    fs::rename(path, &to)?;
    Ok(to)
}

/// After a rotation of `path`: compresses the rotated files (with `compress`) and removes
/// all but the newest `keep` (all kept when `None`). The first failure is returned; the
/// other files are still seen to.
pub(super) fn clean_up(
    path: &Path,
    keep: Option<usize>,
    compress: bool,
    mode: u32,
) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let (stem, ext) = parts(path);
    let prefix = format!("{stem}_r");
    let suffix = ext.map_or_else(String::new, |e| format!(".{e}"));
    // Rotated files (regular files only: a link of the same name is none of ours), newest
    // first: their names sort as their times (`.restart-` after the plain name), a
    // compressed one as its plain name.
    let mut rotated: Vec<(String, PathBuf)> = fs::read_dir(dir)?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let plain = name.strip_suffix(".gz").unwrap_or(&name);
            (plain.starts_with(&prefix) && plain.ends_with(&suffix))
                .then(|| (plain.to_owned(), e.path()))
        })
        .collect();
    rotated.sort_by(|a, b| b.0.cmp(&a.0));
    let mut first_error = None;
    for (i, (_, file)) in rotated.iter().enumerate() {
        let done = if keep.is_some_and(|k| i >= k) {
            fs::remove_file(file)
        } else if compress && file.extension().is_none_or(|e| e != "gz") {
            gzip(file, mode)
        } else {
            Ok(())
        };
        if let Err(e) = done {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Compresses `file` into `FILE.gz` (created with exactly `mode`), then removes `file`.
fn gzip(file: &Path, mode: u32) -> io::Result<()> {
    let mut to = file.as_os_str().to_owned();
    to.push(".gz");
    let to = PathBuf::from(to);
    let mut input = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(file)
        .map_err(|e| refusal(file, e))?;
    if !input.metadata()?.is_file() {
        return Err(io::Error::other(format!("{} is not a regular file", file.display())));
    }
    let create = || {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(mode)
            .open(&to)
    };
    let output = match create() {
        // What is there (a file left by a crash midway, or anything planted) is replaced:
        // removing a name never follows it.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs::remove_file(&to)?;
            create()?
        }
        other => other?,
    };
    output.set_permissions(fs::Permissions::from_mode(mode))?;
    let written = (|| {
        let mut gz = flate2::write::GzEncoder::new(output, flate2::Compression::fast());
        io::copy(&mut input, &mut gz)?;
        gz.finish()?.sync_all()
    })();
    match written {
        Ok(()) => fs::remove_file(file),
        Err(e) => {
            let _ = fs::remove_file(&to);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;
    use std::io::{Read as _, Write as _};

    fn names(dir: &Path) -> Vec<String> {
        let mut out: Vec<String> = fs::read_dir(dir)
            .expect("list")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        out.sort();
        out
    }

    #[test]
    fn links_fifos_and_hard_links_are_refused_and_their_targets_untouched() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let victim = tmp.path().join("victim");
        fs::write(&victim, "not a log\n").expect("write");
        fs::set_permissions(&victim, fs::Permissions::from_mode(0o600)).expect("chmod");
        let log = tmp.path().join("debug.log");

        std::os::unix::fs::symlink(&victim, &log).expect("symlink");
        let e = open_append(&log, 0o640).expect_err("a link");
        assert!(e.to_string().contains("is a symbolic link"), "{e}");
        fs::remove_file(&log).expect("rm");

        fs::hard_link(&victim, &log).expect("hard link");
        let e = open_append(&log, 0o640).expect_err("a hard link");
        assert!(e.to_string().contains("hard links"), "{e}");
        fs::remove_file(&log).expect("rm");

        rustix::fs::mknodat(
            rustix::fs::CWD,
            &log,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .expect("mkfifo");
        let e = open_append(&log, 0o640).expect_err("a FIFO");
        assert!(e.to_string().contains("not a regular file"), "{e}");
        fs::remove_file(&log).expect("rm");

        let meta = fs::metadata(&victim).expect("stat");
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(fs::read_to_string(&victim).expect("read"), "not a log\n");

        // A file of its own: created with exactly the mode, then appended to.
        let mut opened = open_append(&log, 0o640).expect("a new file");
        assert_eq!(opened.meta.mode() & 0o777, 0o640);
        opened.file.write_all(b"one\n").expect("write");
        let mut again = open_append(&log, 0o600).expect("the same file");
        again.file.write_all(b"two\n").expect("write");
        assert_eq!(fs::read_to_string(&log).expect("read"), "one\ntwo\n");
        assert_eq!(fs::metadata(&log).expect("stat").mode() & 0o777, 0o640, "not chmodded");
    }

    #[test]
    fn rotated_names_are_new_and_sort_as_their_times() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let log = tmp.path().join("debug.log");
        let t = Local.with_ymd_and_hms(2024, 3, 1, 10, 26, 26).single().expect("time");
        for _ in 0..3 {
            fs::write(&log, "x\n").expect("write");
            rotate_away(&log, t).expect("rotate");
        }
        // A compressed one counts as taken too.
        fs::write(&log, "x\n").expect("write");
        let later = t + chrono::Duration::seconds(1);
        fs::write(tmp.path().join("debug_r2024-03-01_10-26-27.log.gz"), "gz").expect("write");
        rotate_away(&log, later).expect("rotate");
        assert_eq!(
            names(tmp.path()),
            [
                "debug_r2024-03-01_10-26-26.log",
                "debug_r2024-03-01_10-26-26.restart-0000.log",
                "debug_r2024-03-01_10-26-26.restart-0001.log",
                "debug_r2024-03-01_10-26-27.log.gz",
                "debug_r2024-03-01_10-26-27.restart-0000.log",
            ]
        );
    }

    #[test]
    fn clean_up_compresses_keeps_the_newest_and_follows_no_link() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let dir = tmp.path();
        let log = dir.join("debug.log");
        let victim = dir.join("victim");
        fs::write(&victim, "not a log\n").expect("write");
        for (i, name) in [
            "debug_r2024-03-01_10-00-00.log",
            "debug_r2024-03-01_10-00-01.log",
            "debug_r2024-03-01_10-00-01.restart-0000.log",
            "debug_r2024-03-01_10-00-02.log",
        ]
        .iter()
        .enumerate()
        {
            fs::write(dir.join(name), format!("file {i}\n")).expect("write");
        }
        // The compressed name of a rotated file, planted as a link: replaced, not followed.
        std::os::unix::fs::symlink(&victim, dir.join("debug_r2024-03-01_10-00-02.log.gz"))
            .expect("symlink");
        // A link named like a rotated file: none of ours, left alone.
        std::os::unix::fs::symlink(&victim, dir.join("debug_r2024-03-01_09-00-00.log"))
            .expect("symlink");
        fs::write(&log, "current\n").expect("write");
        clean_up(&log, Some(3), true, 0o640).expect("clean up");
        assert_eq!(
            names(dir),
            [
                "debug.log",
                "debug_r2024-03-01_09-00-00.log",
                "debug_r2024-03-01_10-00-01.log.gz",
                "debug_r2024-03-01_10-00-01.restart-0000.log.gz",
                "debug_r2024-03-01_10-00-02.log.gz",
                "victim",
            ]
        );
        assert_eq!(fs::read_to_string(&victim).expect("read"), "not a log\n");
        assert_eq!(fs::read_to_string(&log).expect("read"), "current\n");
        let gz = dir.join("debug_r2024-03-01_10-00-02.log.gz");
        assert!(!fs::symlink_metadata(&gz).expect("stat").is_symlink());
        assert_eq!(fs::metadata(&gz).expect("stat").mode() & 0o777, 0o640);
        let mut text = String::new();
        flate2::read::GzDecoder::new(File::open(&gz).expect("open"))
            .read_to_string(&mut text)
            .expect("gunzip");
        assert_eq!(text, "file 3\n");

        // Without compression, `keep` counts plain and compressed files alike.
        clean_up(&log, Some(1), false, 0o640).expect("clean up");
        assert_eq!(
            names(dir),
            [
                "debug.log",
                "debug_r2024-03-01_09-00-00.log",
                "debug_r2024-03-01_10-00-02.log.gz",
                "victim"
            ]
        );
    }
}
