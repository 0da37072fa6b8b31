//! The daemon's own log (the error log): flexi_logger's `Logger` with [`ErrorLogWriter`]
//! as its one writer, so the level spec (`logs.level`, `RUST_LOG`) is flexi_logger's and
//! the destination — stderr, or a rotated file ([`super::sink::Sink`]) — can change on a
//! reload. Lines are `YYYY-MM-DD HH:MM:SS.mmm LEVEL message`, written synchronously (the
//! error log is low-volume and must not lose what it says).
//!
//! Floods: a message logged per request can be caused by any client (a malformed request
//! that actix logs at ERROR, a group's 403/404 at INFO, a 503) or by a broken app (an app
//! error or panic per request). Each source line of the per-request modules
//! ([`RATE_LIMITED`]) may log [`BURST`] lines per [`WINDOW`]; the rest are counted, and one
//! line says how many were suppressed when the window ends. Start-up and load messages are
//! never limited.
//!
//! Panics: [`install_panic_hook`] logs every panic of a daemon thread here, with the app
//! and request id of the call it happened in ([`RequestScope`]).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::{self, Write as _};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use flexi_logger::DeferredNow;
use flexi_logger::writers::LogWriter;

use super::sink::Sink;

/// Targets (module paths) whose messages are rate-limited: the ones logged per request.
const RATE_LIMITED: &[&str] = &[
    "actix_http",
    "actix_server::worker",
    "actix_server::accept",
    "actix_web",
    "gatehouse::http",
    "gatehouse::call",
    "gatehouse::http::response",
    "gatehouse::request::input",
    "gatehouse::call::pool",
    "gatehouse::http::access",
    "gatehouse::app",
    "gatehouse::stderr",
];
/// Lines one source line may log per window.
pub(crate) const BURST: u32 = 20;
/// Lines each app may write through `log_error` per window (`gatehouse::app::NAME`), and
/// plugins to stderr ([`super::capture`]): more, because one app error is often a
/// many-line traceback.
pub(crate) const APP_BURST: u32 = 500;
/// The rate-limit window.
pub(crate) const WINDOW: Duration = Duration::from_secs(10);

/// Where the error log goes.
#[derive(Debug, Clone)]
pub(crate) enum Destination {
    Stderr,
    File(Arc<Sink>),
}

static DESTINATION: RwLock<Option<Destination>> = RwLock::new(None);

/// Sets where the error log goes (stderr until called).
pub(crate) fn set_destination(d: Destination) {
    *DESTINATION.write().unwrap_or_else(PoisonError::into_inner) = Some(d);
}

thread_local! {
    /// Set while this thread is inside the error log: a panic or a message from in there
    /// goes straight to stderr instead of deadlocking on the file.
    static IN_LOGGER: Cell<bool> = const { Cell::new(false) };
    /// The app call this thread is running, for panic messages.
    static CURRENT: RefCell<Option<(String, u64)>> = const { RefCell::new(None) };
}

/// Marks the current thread as running `app`'s call for request `request_id` until
/// dropped, so that a panic on it names both.
#[derive(Debug)]
pub(crate) struct RequestScope {
    previous: Option<(String, u64)>,
}

impl RequestScope {
    /// Enters the scope of one app call.
    pub(crate) fn enter(app: &str, request_id: u64) -> RequestScope {
        let previous = CURRENT.with(|c| c.replace(Some((app.to_owned(), request_id))));
        RequestScope { previous }
    }
}

impl Drop for RequestScope {
    fn drop(&mut self) {
        let previous = self.previous.take();
        CURRENT.with(|c| *c.borrow_mut() = previous);
    }
}

/// Logs every panic of the daemon's threads to the error log, with the app and request id
/// when it happens during an app call, and the backtrace when `RUST_BACKTRACE` asks for
/// one. (An app's own panics are caught and reported by its SDK with the same details.)
pub(crate) fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let name = thread.name().unwrap_or("unnamed");
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".to_owned());
        let place = info.location().map(|l| format!(" at {l}")).unwrap_or_default();
        let during = CURRENT
            .try_with(|c| c.try_borrow().ok().and_then(|c| c.clone()))
            .ok()
            .flatten()
            .map(|(app, id)| format!(" during app {app} (request {id})"))
            .unwrap_or_default();
        let backtrace = std::backtrace::Backtrace::capture();
        let backtrace = match backtrace.status() {
            std::backtrace::BacktraceStatus::Captured => format!("\n{backtrace}"),
            _ => String::new(),
        };
        let line = format!("panic in thread '{name}'{during}{place}: {message}{backtrace}");
        if IN_LOGGER.try_with(Cell::get).unwrap_or(true) {
            let _ = writeln!(super::capture::stderr(), "{line}");
        } else {
            log::error!("{line}");
        }
    }));
}

/// One source line's window.
#[derive(Debug)]
struct Window {
    start: Instant,
    passed: u32,
    suppressed: u64,
    sample: String,
}

static LIMITS: Mutex<Option<HashMap<(String, u32), Window>>> = Mutex::new(None);

/// Whether a record may be written now; counts it otherwise.
fn admit(record: &log::Record<'_>) -> bool {
    let target = record.target();
    if !RATE_LIMITED.iter().any(|t| {
        target.strip_prefix(t).is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
    }) {
        return true;
    }
    let key = (target.to_owned(), record.line().unwrap_or(0));
    let mut limits = LIMITS.lock().unwrap_or_else(PoisonError::into_inner);
    let map = limits.get_or_insert_with(HashMap::new);
    let now = Instant::now();
    let w = map.entry(key).or_insert_with(|| Window {
        start: now,
        passed: 0,
        suppressed: 0,
        sample: String::new(),
    });
    if now.duration_since(w.start) >= WINDOW && w.suppressed == 0 {
        w.start = now;
        w.passed = 0;
    }
    let burst = if target.starts_with("gatehouse::app::") || target == "gatehouse::stderr" {
        APP_BURST
    } else {
        BURST
    };
    if w.passed < burst {
        w.passed += 1;
        return true;
    }
    if w.suppressed == 0 {
        w.sample = record.args().to_string().chars().take(200).collect();
    }
    w.suppressed += 1;
    false
}

/// Reports (once per window) the messages suppressed in windows that have ended. Called
/// by the log writer thread every second and before each error-log line.
pub(crate) fn tick() {
    let reports: Vec<String> = {
        let mut limits = LIMITS.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(map) = limits.as_mut() else { return };
        let now = Instant::now();
        let mut reports = Vec::new();
        map.retain(|(target, line), w| {
            let ended = now.duration_since(w.start) >= WINDOW;
            if ended && w.suppressed > 0 {
                reports.push(format!(
                    "{} more messages from {target}:{line} were suppressed in {} s (the first: {})",
                    w.suppressed,
                    now.duration_since(w.start).as_secs(),
                    w.sample
                ));
                w.start = now;
                w.passed = 0;
                w.suppressed = 0;
                return true;
            }
            // Forget quiet sources.
            !ended
        });
        reports
    };
    let time = chrono::Local::now().format("%Y-%m-%d %H:%M:%S%.3f").to_string();
    for r in reports {
        write_line(&format_line(&time, log::Level::Warn, &r));
    }
}

fn format_line(time: &str, level: log::Level, message: &str) -> String {
    format!("{time} {level:<5} {message}\n")
}

fn write_line(line: &str) {
    let destination = DESTINATION.read().unwrap_or_else(PoisonError::into_inner).clone();
    IN_LOGGER.with(|f| f.set(true));
    match destination {
        Some(Destination::File(sink)) => {
            let settings = super::settings();
            if sink.write(line.as_bytes(), 1, &settings).is_err() {
                // The sink has said why (once, on stderr); keep the message.
                let _ = super::capture::stderr().write_all(line.as_bytes());
            }
            // After a rotation or a reopen, fd 2 follows the new file.
            super::capture::follow(sink.path(), sink.file_id());
        }
        Some(Destination::Stderr) | None => {
            let _ = super::capture::stderr().write_all(line.as_bytes());
        }
    }
    IN_LOGGER.with(|f| f.set(false));
}

/// Points the daemon's fd 2 at the error log's destination: its file (opened first, if it
/// is not yet), or the original stderr (see [`super::capture`]).
pub(crate) fn point_stderr() {
    let destination = DESTINATION.read().unwrap_or_else(PoisonError::into_inner).clone();
    match destination {
        Some(Destination::File(sink)) => {
            let _ = sink.write(b"", 0, &super::settings());
            super::capture::follow(sink.path(), sink.file_id());
        }
        Some(Destination::Stderr) | None => super::capture::restore(),
    }
}

/// The writer flexi_logger's `Logger` writes the daemon's log with.
#[derive(Debug, Default)]
pub(crate) struct ErrorLogWriter;

impl LogWriter for ErrorLogWriter {
    fn write(&self, now: &mut DeferredNow, record: &log::Record<'_>) -> io::Result<()> {
        if IN_LOGGER.try_with(Cell::get).unwrap_or(true) {
            // Logged from inside the error log (a sink's own report): stderr only.
            let line = format_line(
                &now.now().format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
                record.level(),
                &record.args().to_string(),
            );
            let _ = super::capture::stderr().write_all(line.as_bytes());
            return Ok(());
        }
        tick();
        if !admit(record) {
            return Ok(());
        }
        let line = format_line(
            &now.now().format("%Y-%m-%d %H:%M:%S%.3f").to_string(),
            record.level(),
            &record.args().to_string(),
        );
        write_line(&line);
        Ok(())
    }

    fn flush(&self) -> io::Result<()> {
        super::capture::stderr().flush()
    }

    fn max_log_level(&self) -> log::LevelFilter {
        log::LevelFilter::Trace
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(target: &str, line: u32) -> bool {
        admit(
            &log::Record::builder()
                .target(target)
                .line(Some(line))
                .args(format_args!("x"))
                .level(log::Level::Info)
                .build(),
        )
    }

    #[test]
    fn per_request_sources_are_limited_others_are_not() {
        let limited: u32 = (0..100).map(|_| u32::from(record("gatehouse::http", 4242))).sum();
        assert_eq!(limited, BURST);
        // Another source line of the same module has its own budget.
        assert!(record("gatehouse::http", 4243));
        assert!(record("actix_http::h1::dispatcher", 7));
        // Start-up and load messages are never limited.
        let host: u32 = (0..100).map(|_| u32::from(record("gatehouse::host", 1))).sum();
        assert_eq!(host, 100);
        assert!(record("gatehouse::serverx", 1), "a prefix is not a module");
        // An app's own error lines: a bigger budget, per app.
        let app: u32 = (0..1000).map(|_| u32::from(record("gatehouse::app::myapp", 310))).sum();
        assert_eq!(app, APP_BURST);
        assert!(record("gatehouse::app::other", 310));
    }
}
