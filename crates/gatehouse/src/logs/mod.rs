//! The daemon's logs: per-app debug logs ([`crate::logs::debug`]), the access log
//! ([`crate::http::access`]) and the daemon's own error log (its level spec on
//! flexi_logger), rotated, permission-checked, reopenable.
//!
//! - [`sink`]: one log file with rotation by size and/or age, a kept count, compression,
//!   the configured modes, and recovery when the file or its folder is deleted or the disk
//!   is full (reported once, and again when it works).
//! - [`file`]: the file operations of a sink, none of which follows a link planted in a
//!   log folder (open, rename at rotation, compress, remove).
//! - [`queue`]: debug and access lines go to disk on one writer thread behind a bounded
//!   queue, so a request never waits for the disk.
//! - [`error_log`]: the daemon's log (stderr or a file), its level spec, the panic hook,
//!   and the rate limits of per-request lines: every line a client or an app can cause
//!   once per request is logged with [`per_request!`], which marks it for them.
//! - [`perms`]: the permission checks of every log folder and file, with fixing commands.
//! - [`capture`]: what plugins and worker processes write to stderr, into the error log
//!   (fd 2 following the error log file; a pipe per worker process).
//!
//! The API the daemon's life cycle calls:
//! - at start: [`start_error_log`] (stderr, before the configuration is read), then
//!   [`apply`] with the configuration (checks, creates folders, switches the error log's
//!   destination and level, opens the access log) before binding;
//! - on reload: [`apply`] with the new configuration (on `Err` nothing changed: keep the
//!   old configuration; [`check_log_dirs`] alone checks without changing anything);
//! - before that, `serve` keeps its stderr aside ([`capture::install`]): [`apply`] then
//!   points fd 2 at an error log file;
//! - on SIGUSR1 (external logrotate): [`reopen`];
//! - at exit: dropping the [`Guard`] from [`start_error_log`] writes what is queued.
//!
//! Files are shared process-wide by path: a reload that builds new debug logs for the same
//! apps gets the same open files, so two writers never rotate one file.

pub mod capture;
pub mod debug;
mod error_log;
mod file;
pub(crate) mod perms;
mod queue;
pub(crate) mod sink;

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use gatehouse_config::{AccessLog, Config, ErrorLog, Rotate};

#[cfg(test)]
pub(crate) use error_log::PER_REQUEST_KEY;
pub(crate) use error_log::{ErrorLogWriter, RequestScope, install_panic_hook};
pub(crate) use error_log::{RequestTag, per_request, per_request_mark, relay_worker_record};
pub use perms::{Problem, check_log_dirs};
pub(crate) use sink::Sink;

use error_log::Destination;
use sink::Reports;

/// How long [`flush`] (and the [`Guard`] at exit) waits for queued lines.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// What every log file is written with: the `logs` values that concern files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) rotate: Option<Rotate>,
    pub(crate) dir_mode: u32,
    pub(crate) file_mode: u32,
}

impl Settings {
    fn of(logs: &gatehouse_config::Logs) -> Settings {
        Settings { rotate: logs.rotate, dir_mode: logs.dir_mode, file_mode: logs.file_mode }
    }
}

static SETTINGS: RwLock<Option<Arc<Settings>>> = RwLock::new(None);

/// The current settings (the defaults until [`apply`]).
pub(crate) fn settings() -> Arc<Settings> {
    if let Some(s) = SETTINGS.read().unwrap_or_else(PoisonError::into_inner).as_ref() {
        return Arc::clone(s);
    }
    Arc::new(Settings::of(&gatehouse_config::Logs::defaults(Path::new("log"))))
}

/// Sets the settings directly (tests and measurements).
#[cfg(test)]
pub(crate) fn set_settings_for_test(settings: Settings) {
    *SETTINGS.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(settings));
}

/// Every open log file, by path.
static REGISTRY: Mutex<Option<HashMap<PathBuf, Weak<Sink>>>> = Mutex::new(None);

/// The sink for `path`: the open one if there is one, else a new one.
pub(crate) fn sink(path: &Path, what: impl FnOnce() -> String, reports: Reports) -> Arc<Sink> {
    let mut registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    let map = registry.get_or_insert_with(HashMap::new);
    if let Some(live) = map.get(path).and_then(Weak::upgrade) {
        return live;
    }
    map.retain(|_, w| w.strong_count() > 0);
    let s = Arc::new(Sink::new(path.to_owned(), what(), reports));
    map.insert(path.to_owned(), Arc::downgrade(&s));
    s
}

fn live_sinks() -> Vec<Arc<Sink>> {
    let registry = REGISTRY.lock().unwrap_or_else(PoisonError::into_inner);
    let mut sinks: Vec<Arc<Sink>> =
        registry.iter().flat_map(|m| m.values()).filter_map(Weak::upgrade).collect();
    sinks.sort_by(|a, b| a.path().cmp(b.path()));
    sinks
}

/// Queues `line` (whole lines) for `sink`. `Err` when it was dropped (the writer is
/// behind) or when the file currently cannot be written (the error log says why).
pub(crate) fn submit(sink: &Arc<Sink>, line: Vec<u8>) -> io::Result<()> {
    if queue::global().submit(sink, line).is_err() {
        return Err(io::Error::new(
            io::ErrorKind::WouldBlock,
            "the log writer is behind; the line was dropped",
        ));
    }
    if sink.is_failing() {
        return Err(io::Error::other("the log file cannot be written; the error log says why"));
    }
    Ok(())
}

/// Waits until every line queued so far is written (at most 5 s). Returns false if the
/// writer did not catch up in time (a stalled disk).
pub(crate) fn flush() -> bool {
    queue::global().flush(FLUSH_TIMEOUT)
}

static ACCESS: RwLock<Option<Arc<Sink>>> = RwLock::new(None);

/// The access log, when on.
pub(crate) fn access_sink() -> Option<Arc<Sink>> {
    ACCESS.read().unwrap_or_else(PoisonError::into_inner).clone()
}

static HANDLE: Mutex<Option<flexi_logger::LoggerHandle>> = Mutex::new(None);

/// Flushes the logs when dropped: hold it for the daemon's life.
#[derive(Debug)]
#[must_use = "dropping the guard flushes the logs: hold it until exit"]
pub struct Guard(());

impl Drop for Guard {
    fn drop(&mut self) {
        if !flush() {
            use std::io::Write as _;
            let _ = writeln!(
                capture::stderr(),
                "gatehouse: some log lines could not be written before exit"
            );
        }
        if let Some(h) = HANDLE.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            h.flush();
        }
    }
}

/// Starts the daemon's log: on stderr, at `RUST_LOG`'s level or `info`, until [`apply`]
/// says otherwise; installs the panic hook.
pub fn start_error_log() -> Result<Guard, flexi_logger::FlexiLoggerError> {
    let handle = flexi_logger::Logger::try_with_env_or_str("info")?
        .log_to_writer(Box::new(ErrorLogWriter))
        .start()?;
    *HANDLE.lock().unwrap_or_else(PoisonError::into_inner) = Some(handle);
    error_log::set_destination(Destination::Stderr);
    install_panic_hook();
    Ok(Guard(()))
}

/// The folders `config` writes log files into directly (app folders are made on demand).
fn folders(config: &Config) -> Vec<PathBuf> {
    let mut dirs = vec![config.logs_dir.clone()];
    let files = config.logs.access_log.file().into_iter().chain(match &config.logs.error_log {
        ErrorLog::File(p) => Some(p),
        ErrorLog::Stderr => None,
    });
    for f in files {
        if let Some(d) = f.parent()
            && !dirs.iter().any(|x| x == d)
        {
            dirs.push(d.to_owned());
        }
    }
    dirs
}

/// Makes `config`'s logs the running ones: checks every log folder and file
/// ([`check_log_dirs`]), creates the missing folders (`dir_mode`), then switches rotation
/// and modes, the access log, the error log's destination and its level (unless
/// `RUST_LOG` is set: it wins). On `Err` nothing was changed.
pub fn apply(config: &Config) -> Result<(), Vec<Problem>> {
    check_log_dirs(config)?;
    let logs = &config.logs;
    let problems: Vec<Problem> = folders(config)
        .into_iter()
        .filter_map(|dir| {
            sink::create_dir_all_with_mode(&dir, logs.dir_mode).err().map(|e| Problem {
                message: format!("cannot be created: {e}"),
                fix: perms::fix_for_dir(&dir),
                path: dir,
            })
        })
        .collect();
    if !problems.is_empty() {
        return Err(problems);
    }
    *SETTINGS.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(Settings::of(logs)));
    *ACCESS.write().unwrap_or_else(PoisonError::into_inner) = match &logs.access_log {
        AccessLog::Off => None,
        AccessLog::Stdout => Some(Arc::new(Sink::stdout("access log".to_owned()))),
        AccessLog::File(p) => Some(sink(p, || "access log".to_owned(), Reports::ErrorLog)),
    };
    error_log::set_destination(match &logs.error_log {
        ErrorLog::Stderr => Destination::Stderr,
        ErrorLog::File(p) => Destination::File(sink(p, || "error log".to_owned(), Reports::Stderr)),
    });
    error_log::point_stderr();
    if let Some(h) = HANDLE.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
        if std::env::var_os("RUST_LOG").is_some_and(|v| !v.is_empty()) {
            log::info!("RUST_LOG is set: it overrides logs.level ({})", logs.level);
        } else if let Err(e) = h.parse_new_spec(&logs.level) {
            log::warn!("logs.level {:?} was not applied: {e}", logs.level);
        }
    }
    Ok(())
}

/// Reopens every open log file at its path — debug logs, the access log, the error log
/// file — for an external logrotate that moved them away (SIGUSR1). A file that is gone
/// is created again. Returns how many files were reopened, or what failed (the others are
/// reopened all the same).
pub fn reopen() -> Result<usize, Vec<String>> {
    let settings = settings();
    let mut errors = Vec::new();
    let mut count = 0;
    for s in live_sinks() {
        match s.reopen(&settings) {
            Ok(()) => count += 1,
            Err(e) => errors.push(format!("{}: {e}", s.path().display())),
        }
    }
    if errors.is_empty() {
        log::info!("reopened {count} log files");
        Ok(count)
    } else {
        for e in &errors {
            log::error!("cannot reopen log file {e}");
        }
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_specs_the_config_accepts_are_flexi_loggers() {
        for spec in ["info", "warn, gatehouse::host=debug", "off,actix_http=error", "trace,"] {
            assert!(flexi_logger::LogSpecification::parse(spec).is_ok(), "{spec}");
        }
    }

    #[test]
    fn reopen_follows_a_file_moved_away_by_logrotate() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let path = tmp.path().join("log/app/debug.log");
        let s = sink(&path, || "test log".to_owned(), Reports::Stderr);
        submit(&s, b"one\n".to_vec()).expect("queued");
        assert!(flush());
        // logrotate's `create` mode without copytruncate: move away, then signal.
        let moved = tmp.path().join("log/app/debug.log.1");
        std::fs::rename(&path, &moved).expect("rename");
        assert!(reopen().is_ok());
        // Reopened at once: the new file exists before anything is written to it, with the
        // configured mode.
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).expect("new file").permissions(),
        );
        assert_eq!(mode & 0o777, 0o640);
        submit(&s, b"two\n".to_vec()).expect("queued");
        assert!(flush());
        assert_eq!(std::fs::read_to_string(&moved).expect("old"), "one\n");
        assert_eq!(std::fs::read_to_string(&path).expect("new"), "two\n");
    }
}
