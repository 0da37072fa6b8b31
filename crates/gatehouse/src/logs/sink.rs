//! One log file on disk: a flexi_logger [`FileLogWriter`] plus what flexi_logger does not
//! do — modes, noticing a deleted or replaced file, honest errors — and rotation decided
//! here.
//!
//! Why rotation is decided here and not by flexi_logger's `Criterion`: when flexi_logger
//! rotates on its own, a failure goes to its process-wide error channel, once per line (a
//! flood), and the new file is created with whatever the umask gives. So the writer is
//! built with a criterion that never fires (`Size(u64::MAX)`), and [`State::write`] calls
//! [`FileLogWriter::rotate`] itself when the file passed `rotate.size` or the local clock
//! started a new `rotate.age` period: the result comes back to us, and the new (still
//! empty) file is chmodded before the first line goes into it. Naming, renaming, the kept
//! count and compression stay flexi_logger's.
//!
//! Files: the current file is always `NAME.EXT` (`debug.log`, `access.log`); rotated files
//! are `NAME_rYYYY-MM-DD_HH-MM-SS.EXT` (the time the file was started; several in one
//! second get `.restart-NNNN`), gzipped to `….EXT.gz` with `compress`.
//!
//! Writes go through flexi_logger's `ArcFileLogWriter` (its `io::Write`), which returns
//! the real I/O error, unlike `LogWriter::write`, which reports to stderr and says `Ok`.
//! Before each write the path is `stat`ed: if the file is gone (deleted, or moved away by
//! logrotate) or replaced, its folder and the file are created again (with the configured
//! modes) and the writer reopens it, so lines appear again without a restart.

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt,
};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Datelike as _, Local, Timelike as _};
use flexi_logger::writers::{ArcFileLogWriter, FileLogWriter, FileLogWriterHandle};
use flexi_logger::{Cleanup, Criterion, FileSpec, Naming, WriteMode};
use gatehouse_config::{Rotate, RotateAge};

use super::Settings;

/// The infix format of rotated files (flexi_logger's standard one).
const ROTATED_INFIX: &str = "r%Y-%m-%d_%H-%M-%S";

/// Who hears about a sink's failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reports {
    /// The error log (`log::error!`).
    ErrorLog,
    /// Standard error directly: the sink *is* the error log.
    Stderr,
}

/// One log file and its writer.
#[derive(Debug)]
pub(crate) struct Sink {
    path: PathBuf,
    what: String,
    reports: Reports,
    state: Mutex<State>,
    failing: AtomicBool,
    dropped: AtomicU64,
}

/// What a write left to report.
#[derive(Debug, Default)]
struct Outcome {
    write: Option<io::Error>,
    rotate: Option<io::Error>,
}

struct Writer {
    w: ArcFileLogWriter,
    _handle: FileLogWriterHandle,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Writer")
    }
}

#[derive(Debug)]
struct State {
    writer: Option<Writer>,
    /// The settings the writer was built with (a change rebuilds it).
    built_with: Option<Settings>,
    /// (device, inode) of the file the writer has open.
    file: Option<(u64, u64)>,
    /// Its size, as of the last `stat` plus what was written since.
    size: u64,
    /// When the current file was started (for `rotate.age`).
    started: DateTime<Local>,
    /// The failure being reported, if writing fails (reported once).
    write_failure: Option<String>,
    /// Lines lost since the failure started.
    lost: u64,
    /// The rotation failure being reported, if rotating fails (reported once).
    rotate_failure: Option<String>,
    /// Set when the file was found deleted or replaced and a new one opened: to report.
    replaced: Option<&'static str>,
}

impl Sink {
    /// A sink for `path`, described as `what` in messages ("debug log of app myapp").
    pub(crate) fn new(path: PathBuf, what: String, reports: Reports) -> Sink {
        Sink {
            path,
            what,
            reports,
            state: Mutex::new(State {
                writer: None,
                built_with: None,
                file: None,
                size: 0,
                started: Local::now(),
                write_failure: None,
                lost: 0,
                rotate_failure: None,
                replaced: None,
            }),
            failing: AtomicBool::new(false),
            dropped: AtomicU64::new(0),
        }
    }

    /// The current file.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The (device, inode) of the file open now, once one is.
    pub(crate) fn file_id(&self) -> Option<(u64, u64)> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner).file
    }

    /// Whether the last write failed (lines are being lost).
    pub(crate) fn is_failing(&self) -> bool {
        self.failing.load(Ordering::Relaxed)
    }

    /// Counts a line that could not even be queued; the first of a series is reported.
    pub(crate) fn note_dropped(&self, queued_limit: usize) {
        crate::metrics::inc(&crate::metrics::GLOBAL.log_lines_lost);
        if self.dropped.fetch_add(1, Ordering::Relaxed) == 0 {
            self.report(
                log::Level::Error,
                &format!(
                    "{} {}: the log writer is {} KiB behind (a slow or stalled disk?); lines \
                     are dropped until it catches up",
                    self.what,
                    self.path.display(),
                    queued_limit >> 10
                ),
            );
        }
    }

    /// Writes `buf` (`lines` whole lines) now, on this thread, with `settings`. Failures are
    /// reported once per episode, and their end too.
    pub(crate) fn write(&self, buf: &[u8], lines: u64, settings: &Settings) -> io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let outcome = match catch_unwind(AssertUnwindSafe(|| st.write(&self.path, buf, settings))) {
            Ok(outcome) => outcome,
            Err(_) => {
                // flexi_logger panicked (it unwraps a read_dir of a folder that vanished in
                // between); start over with a fresh writer next time.
                st.writer = None;
                st.file = None;
                Outcome {
                    write: Some(io::Error::other("the log writer failed; it is rebuilt")),
                    rotate: None,
                }
            }
        };
        if let Some(how) = st.replaced.take() {
            self.report(
                log::Level::Warn,
                &format!(
                    "{} {}: the file {how}; writing to a new one",
                    self.what,
                    self.path.display()
                ),
            );
        }
        let result = match outcome.write {
            None => {
                if let Some(failure) = st.write_failure.take() {
                    let lost = std::mem::take(&mut st.lost);
                    self.report(
                        log::Level::Warn,
                        &format!(
                            "{} {}: writing again ({lost} lines lost while it failed: {failure})",
                            self.what,
                            self.path.display()
                        ),
                    );
                }
                self.failing.store(false, Ordering::Relaxed);
                Ok(())
            }
            Some(e) => {
                st.lost += lines;
                crate::metrics::GLOBAL
                    .log_lines_lost
                    .fetch_add(lines, std::sync::atomic::Ordering::Relaxed);
                if st.write_failure.is_none() {
                    st.write_failure = Some(e.to_string());
                    self.report(
                        log::Level::Error,
                        &format!(
                            "{} {}: cannot write: {e}; lines are lost until it works again{}",
                            self.what,
                            self.path.display(),
                            hint_for(&self.path, &e)
                        ),
                    );
                }
                self.failing.store(true, Ordering::Relaxed);
                Err(e)
            }
        };
        match outcome.rotate {
            None => {
                if st.rotate_failure.take().is_some() {
                    self.report(
                        log::Level::Warn,
                        &format!("{} {}: rotating works again", self.what, self.path.display()),
                    );
                }
            }
            Some(e) => {
                if st.rotate_failure.is_none() {
                    st.rotate_failure = Some(e.to_string());
                    self.report(
                        log::Level::Error,
                        &format!(
                            "{} {}: cannot rotate: {e}; lines go on into the current file{}",
                            self.what,
                            self.path.display(),
                            hint_for(&self.path, &e)
                        ),
                    );
                }
            }
        }
        let dropped = self.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0 && result.is_ok() {
            self.report(
                log::Level::Warn,
                &format!(
                    "{} {}: the log writer caught up; {dropped} lines were dropped",
                    self.what,
                    self.path.display()
                ),
            );
        }
        result
    }

    /// Reopens the file at its path (after an external rotation), creating it if needed.
    /// Does nothing for a file not opened yet.
    pub(crate) fn reopen(&self, settings: &Settings) -> io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if st.writer.is_none() {
            return Ok(());
        }
        match catch_unwind(AssertUnwindSafe(|| st.open(&self.path, settings, true))) {
            Ok(result) => result,
            Err(_) => {
                st.writer = None;
                st.file = None;
                Err(io::Error::other("the log writer failed; it is rebuilt"))
            }
        }
    }

    /// Holds the file's lock until the guard is dropped, as a stalled disk would.
    #[cfg(test)]
    pub(crate) fn stall(&self) -> impl Drop + '_ {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn report(&self, level: log::Level, message: &str) {
        match self.reports {
            Reports::ErrorLog => log::log!(level, "{message}"),
            Reports::Stderr => {
                let line = format!(
                    "{} {:<5} {message}\n",
                    Local::now().format("%Y-%m-%d %H:%M:%S%.3f"),
                    level
                );
                let _ = super::capture::stderr().write_all(line.as_bytes());
            }
        }
    }
}

/// A hint for an error writing `path`: the permission fix, or what to look at.
fn hint_for(path: &Path, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::PermissionDenied => {
            let dir = path.parent().unwrap_or(path);
            match super::perms::fix_for_dir(dir) {
                Some(fix) => format!(" (fix: {fix})"),
                None => " (hint: the daemon's user must be able to write that folder and file)"
                    .to_owned(),
            }
        }
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => {
            " (hint: free space on that disk; writing resumes by itself)".to_owned()
        }
        io::ErrorKind::ReadOnlyFilesystem => {
            " (hint: the folder is on a read-only filesystem; under systemd with \
             ProtectSystem=, add it to ReadWritePaths=)"
                .to_owned()
        }
        _ => String::new(),
    }
}

fn flexi_err(e: flexi_logger::FlexiLoggerError) -> io::Error {
    match e {
        flexi_logger::FlexiLoggerError::OutputIo(e) => e,
        other => io::Error::other(other.to_string()),
    }
}

impl State {
    fn write(&mut self, path: &Path, buf: &[u8], settings: &Settings) -> Outcome {
        let mut outcome = Outcome::default();
        if self.built_with.as_ref() != Some(settings) {
            self.writer = None;
        }
        if let Err(e) = self.open(path, settings, false) {
            outcome.write = Some(e);
            return outcome;
        }
        // A file that has passed its size (or age) is rotated before the next lines, so the
        // newest lines are always in the current file (`tail -f`, and tests, read it).
        let age_due = settings
            .rotate
            .and_then(|r| r.age)
            .is_some_and(|age| age_due(age, self.started, Local::now()));
        let size_due = settings.rotate.and_then(|r| r.size).is_some_and(|max| self.size > max);
        if age_due || size_due {
            outcome.rotate = self.rotate(path, settings).err();
        }
        let Some(writer) = &mut self.writer else {
            outcome.write = Some(io::Error::other("log file not open"));
            return outcome;
        };
        if let Err(e) = writer.w.write_all(buf) {
            outcome.write = Some(e);
            return outcome;
        }
        self.size += buf.len() as u64;
        outcome
    }

    /// Makes sure the writer has `path` open: builds it, or (after the file vanished or was
    /// replaced, or when `force`d) recreates the file and reopens it.
    fn open(&mut self, path: &Path, settings: &Settings, force: bool) -> io::Result<()> {
        let meta = match fs::metadata(path) {
            Ok(m) if !m.is_file() => {
                return Err(io::Error::other(format!("{} is not a regular file", path.display())));
            }
            Ok(m) => Some(m),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        if let Some(m) = &meta
            && !force
            && self.writer.is_some()
            && self.file == Some((m.dev(), m.ino()))
        {
            // The usual case: still our file. Its size may have changed under us
            // (copytruncate).
            self.size = m.len();
            return Ok(());
        }
        if self.writer.is_some() && !force {
            self.replaced =
                Some(if meta.is_some() { "was replaced" } else { "was deleted or moved away" });
        }
        let meta = match meta {
            Some(m) => m,
            None => {
                if let Some(dir) = path.parent() {
                    create_dir_all_with_mode(dir, settings.dir_mode)?;
                }
                create_file_with_mode(path, settings.file_mode)?
            }
        };
        match &self.writer {
            Some(w) => w.w.reopen_outputfile().map_err(flexi_err)?,
            None => {
                let writer = build_writer(path, settings)?;
                // An empty write opens the file (flexi_logger opens lazily).
                let mut w = writer.w.clone();
                let written = w.write(&[])?;
                debug_assert_eq!(written, 0);
                self.writer = Some(writer);
                self.built_with = Some(settings.clone());
            }
        }
        self.file = Some((meta.dev(), meta.ino()));
        self.size = meta.len();
        self.started = started_at(&meta);
        Ok(())
    }

    fn rotate(&mut self, path: &Path, settings: &Settings) -> io::Result<()> {
        let Some(writer) = &self.writer else { return Ok(()) };
        let rotated = writer.w.rotate().map_err(flexi_err);
        // Whatever happened, the file at `path` is the one written next: give it its mode
        // before the first line goes in, and remember it.
        if let Ok(m) = fs::metadata(path) {
            let _ = fs::set_permissions(path, fs::Permissions::from_mode(settings.file_mode));
            self.file = Some((m.dev(), m.ino()));
            self.size = m.len();
            self.started = Local::now();
        }
        if settings.rotate.is_some_and(|r| r.compress) {
            chmod_rotated(path, settings.file_mode);
        }
        rotated
    }
}

/// Whether a file started at `started` is due for rotation by `age` at `now`: the local
/// clock has started a new day (hour, minute) since.
pub(crate) fn age_due(age: RotateAge, started: DateTime<Local>, now: DateTime<Local>) -> bool {
    let day = (started.year(), started.ordinal()) != (now.year(), now.ordinal());
    match age {
        RotateAge::Day => day,
        RotateAge::Hour => day || started.hour() != now.hour(),
        RotateAge::Minute => {
            day || (started.hour(), started.minute()) != (now.hour(), now.minute())
        }
    }
}

/// When an existing file was started: its birth time where the filesystem keeps one, else
/// its last change.
fn started_at(m: &fs::Metadata) -> DateTime<Local> {
    m.created().or_else(|_| m.modified()).map_or_else(|_| Local::now(), DateTime::<Local>::from)
}

fn build_writer(path: &Path, settings: &Settings) -> io::Result<Writer> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let spec = FileSpec::default()
        .directory(dir)
        .basename(stem)
        .suppress_timestamp()
        .o_suffix(path.extension().map(|e| e.to_string_lossy().into_owned()));
    let mut builder = FileLogWriter::builder(spec)
        .append()
        .write_mode(WriteMode::Direct)
        .cleanup_in_background_thread(false);
    if let Some(r) = settings.rotate {
        builder = builder.rotate(
            // Never by itself: see the module docs.
            Criterion::Size(u64::MAX),
            Naming::TimestampsCustomFormat { current_infix: Some(""), format: ROTATED_INFIX },
            cleanup(r),
        );
    }
    let (w, handle) = builder.try_build_with_handle().map_err(flexi_err)?;
    Ok(Writer { w, _handle: handle })
}

fn cleanup(r: Rotate) -> Cleanup {
    match (r.keep, r.compress) {
        (None, false) => Cleanup::Never,
        (None, true) => Cleanup::KeepCompressedFiles(usize::MAX),
        (Some(k), false) => Cleanup::KeepLogFiles(k),
        (Some(k), true) => Cleanup::KeepCompressedFiles(k),
    }
}

/// Creates `dir` and any missing parents with `mode` (exactly: the umask does not narrow
/// it).
pub(crate) fn create_dir_all_with_mode(dir: &Path, mode: u32) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dir_all_with_mode(parent, mode)?;
    }
    match fs::DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(mode)),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Creates the file at `path` with exactly `mode` if it does not exist; returns its
/// metadata.
fn create_file_with_mode(path: &Path, mode: u32) -> io::Result<fs::Metadata> {
    match OpenOptions::new().append(true).create_new(true).mode(mode).open(path) {
        Ok(f) => {
            f.set_permissions(fs::Permissions::from_mode(mode))?;
            f.metadata()
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => fs::metadata(path),
        Err(e) => Err(e),
    }
}

/// Gives compressed rotated files of `path` (`NAME_r*.gz`, created by flexi_logger with
/// the umask's mode) the configured mode.
fn chmod_rotated(path: &Path, mode: u32) {
    let (Some(dir), Some(stem)) = (path.parent(), path.file_stem()) else { return };
    let prefix = format!("{}_r", stem.to_string_lossy());
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix)
            && name.ends_with(".gz")
            && let Ok(m) = entry.metadata()
            && m.mode() & 0o777 != mode
        {
            let _ = fs::set_permissions(entry.path(), fs::Permissions::from_mode(mode));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    #[test]
    fn age_rotation_is_due_when_the_clock_starts_a_new_period() {
        let t = |d, h, m| Local.with_ymd_and_hms(2024, 3, d, h, m, 30).single().expect("time");
        let cases = [
            (RotateAge::Day, t(1, 10, 0), t(1, 23, 59), false),
            (RotateAge::Day, t(1, 23, 59), t(2, 0, 0), true),
            (RotateAge::Hour, t(1, 10, 0), t(1, 10, 59), false),
            (RotateAge::Hour, t(1, 10, 59), t(1, 11, 0), true),
            (RotateAge::Hour, t(1, 10, 0), t(2, 10, 0), true),
            (RotateAge::Minute, t(1, 10, 5), t(1, 10, 5), false),
            (RotateAge::Minute, t(1, 10, 5), t(1, 10, 6), true),
            (RotateAge::Minute, t(1, 10, 5), t(1, 11, 5), true),
        ];
        for (age, started, now, due) in cases {
            assert_eq!(age_due(age, started, now), due, "{age:?} {started} {now}");
        }
    }

    #[test]
    fn cleanup_follows_keep_and_compress() {
        let r = |keep, compress| Rotate { size: Some(1), age: None, keep, compress };
        assert!(matches!(cleanup(r(None, false)), Cleanup::Never));
        assert!(matches!(cleanup(r(Some(3), false)), Cleanup::KeepLogFiles(3)));
        assert!(matches!(cleanup(r(Some(3), true)), Cleanup::KeepCompressedFiles(3)));
        assert!(matches!(cleanup(r(None, true)), Cleanup::KeepCompressedFiles(usize::MAX)));
    }
}
