//! One log file on disk: the open file, rotation by size and/or age, the kept count,
//! compression, the configured modes, noticing a deleted or replaced file, and honest
//! errors, reported once.
//!
//! The file operations themselves are [`super::file`]'s, none of which goes through a link
//! someone planted in a log folder. [`State::write`] rotates when the file passed
//! `rotate.size` or the local clock started a new `rotate.age` period: the current file is
//! renamed away, a new one created (with its mode, before the first line goes in), and the
//! rotated files compressed and cut to `keep`.
//!
//! Files: the current file is always `NAME.EXT` (`debug.log`, `access.log`); rotated files
//! are `NAME_rYYYY-MM-DD_HH-MM-SS.EXT` (the time the file was started; several in one
//! second get `.restart-NNNN`), gzipped to `….EXT.gz` with `compress`.
//!
//! Before each write the path is `lstat`ed: if the file is gone (deleted, or moved away by
//! logrotate) or replaced, its folder and the file are created again (with the configured
//! modes) and opened, so lines appear again without a restart; a link in its place is
//! refused (reported like any failure to write) until it is removed.

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Datelike as _, Local, Timelike as _};
use gatehouse_config::RotateAge;

use super::Settings;
use super::file;

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
    /// Writes go to the daemon's original stdout, not to `path` (no file, no rotation).
    stdout: bool,
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

#[derive(Debug)]
struct State {
    /// The file open for appending.
    writer: Option<fs::File>,
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
            stdout: false,
            path,
            what,
            reports,
            state: Mutex::new(State {
                writer: None,
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

    /// A sink writing to the daemon's original standard output (`access_log: stdout`): a
    /// stream, never rotated or reopened. A write is one `write(2)` of whole lines, so lines
    /// of this sink do not interleave with each other.
    pub(crate) fn stdout(what: String) -> Sink {
        Sink { stdout: true, ..Sink::new(PathBuf::from("stdout"), what, Reports::Stderr) }
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
        let outcome = if self.stdout {
            use std::io::Write as _;
            Outcome { write: super::capture::stdout().write_all(buf).err(), rotate: None }
        } else {
            st.write(&self.path, buf, settings)
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
        if st.writer.is_none() || self.stdout {
            return Ok(());
        }
        st.open(&self.path, settings, true)
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

impl State {
    fn write(&mut self, path: &Path, buf: &[u8], settings: &Settings) -> Outcome {
        let mut outcome = Outcome::default();
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
        if let Some(rotate) = settings.rotate.filter(|_| age_due || size_due) {
            let renamed = file::rotate_away(path, self.started);
            // The file at `path` is the one written next: a new one, unless the rename failed.
            if let Err(e) = self.open(path, settings, true) {
                outcome.rotate = renamed.err();
                outcome.write = Some(e);
                return outcome;
            }
            self.started = Local::now();
            outcome.rotate = renamed
                .and_then(|_| {
                    file::clean_up(path, rotate.keep, rotate.compress, settings.file_mode)
                })
                .err();
        }
        let Some(writer) = &mut self.writer else {
            outcome.write = Some(io::Error::other("log file not open"));
            return outcome;
        };
        if let Err(e) = writer.write_all(buf) {
            outcome.write = Some(e);
            return outcome;
        }
        self.size += buf.len() as u64;
        outcome
    }

    /// Makes sure the writer has `path` open: opens it, or (after the file vanished or was
    /// replaced, or when `force`d) opens it again, creating it if it is not there.
    fn open(&mut self, path: &Path, settings: &Settings, force: bool) -> io::Result<()> {
        // Not following a link: one in the file's place is not the file the writer has.
        let meta = match fs::symlink_metadata(path) {
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
        // Until a file opens, lines fail (they never go to the one it replaced).
        self.writer = None;
        self.file = None;
        if meta.is_none()
            && let Some(dir) = path.parent()
        {
            create_dir_all_with_mode(dir, settings.dir_mode)?;
        }
        let opened = file::open_append(path, settings.file_mode)?;
        self.file = Some((opened.meta.dev(), opened.meta.ino()));
        self.size = opened.meta.len();
        self.started = started_at(&opened.meta);
        self.writer = Some(opened.file);
        Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    #[test]
    fn a_link_in_the_files_place_is_refused_and_rotated_files_are_the_sinks_own() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let victim = tmp.path().join("victim");
        fs::write(&victim, "not a log\n").expect("write");
        let dir = tmp.path().join("app");
        let path = dir.join("debug.log");
        let rotate =
            gatehouse_config::Rotate { size: Some(40), age: None, keep: Some(2), compress: true };
        let settings = Settings { rotate: Some(rotate), dir_mode: 0o750, file_mode: 0o640 };
        let sink = Sink::new(path.clone(), "debug log of app t".to_owned(), Reports::Stderr);
        fs::create_dir(&dir).expect("mkdir");
        std::os::unix::fs::symlink(&victim, &path).expect("symlink");
        let e = sink.write(b"refused\n", 1, &settings).expect_err("a link");
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert!(sink.is_failing());
        assert_eq!(fs::read_to_string(&victim).expect("read"), "not a log\n");

        fs::remove_file(&path).expect("rm");
        for i in 0..20 {
            sink.write(format!("line {i:02} of the debug log\n").as_bytes(), 1, &settings)
                .expect("write");
        }
        assert!(!sink.is_failing());
        let mut names: Vec<String> = fs::read_dir(&dir)
            .expect("list")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), 3, "debug.log and the 2 kept: {names:?}");
        assert!(names.iter().filter(|n| n.ends_with(".log.gz")).count() == 2, "{names:?}");
        for name in names {
            let meta = fs::symlink_metadata(dir.join(&name)).expect("stat");
            assert!(meta.is_file(), "{name}");
            assert_eq!(meta.mode() & 0o777, 0o640, "{name}");
        }
        assert!(fs::read_to_string(&path).expect("read").ends_with("line 19 of the debug log\n"));
        assert_eq!(fs::read_to_string(&victim).expect("read"), "not a log\n");
    }

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
}
