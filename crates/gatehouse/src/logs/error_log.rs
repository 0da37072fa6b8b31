//! The daemon's own log (the error log): flexi_logger's `Logger` with [`ErrorLogWriter`]
//! as its one writer, so the level spec (`logs.level`, `RUST_LOG`) is flexi_logger's and
//! the destination — stderr, or a rotated file ([`super::sink::Sink`]) — can change on a
//! reload. Lines are `YYYY-MM-DD HH:MM:SS.mmm LEVEL message`, written synchronously (the
//! error log is low-volume and must not lose what it says).
//!
//! Floods: a line logged per request can be caused by any client (a group's 403/404, a
//! 503 or 504, a body that stalls, a client that leaves) or by a broken app (an app error,
//! a Content-Length it does not keep, its stderr). Every such line of ours is logged with
//! [`per_request!`], never with `log::warn!` and the like: the macro writes the request's
//! id (`SUBJECT (request N): ...`) and marks the record (a `log` key-value). The writer
//! limits marked records, whatever module logs them: [`BURST`] lines per [`WINDOW`] from
//! one call site (an app's own lines: [`APP_BURST`] per app), the rest counted, and one
//! line says how many were suppressed once the window ends. A worker process sends the
//! mark, file and line with its records, so the daemon limits its lines with the same call
//! site's in the daemon. Lines without the mark are never limited: start-up, reload,
//! signals, log files, and worker life cycles (a worker's start, recycling and end, paced
//! by its restarts and their backoff rather than by requests).
//!
//! The budget is the call site's, not the kind's: a call site is one kind of event already
//! (503 busy, 504 of an isolated alias, an app's short body…), keying on it needs no list
//! of kinds to keep up to date, and a flood of one kind cannot hide the first lines of
//! another. The summary names the call site (`file:line`).
//!
//! Foreign crates cannot use the macro: what actix-web, its HTTP codec and its server log
//! per connection or request (a malformed request at ERROR, a dropped connection), and
//! rustls per TLS connection (a client's bad handshake at WARN), is limited by target,
//! [`FOREIGN_PER_REQUEST`], one budget per source line. That list is for foreign crates
//! only: the daemon's own lines are marked where they are logged.
//!
//! Not limited here: what a plugin in the daemon's own process writes to stderr goes
//! straight to the error log file (fd 2 follows it, see [`super::capture`]); a worker
//! process's stderr comes through a pipe and is limited like its app's `log_error` lines.
//!
//! Panics: [`install_panic_hook`] logs every panic of a daemon thread here, with the app
//! and request id of the call it happened in ([`RequestScope`]); one in an app call is a
//! per-request line (the request that caused it can be sent again).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::io::{self, Write as _};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use flexi_logger::DeferredNow;
use flexi_logger::writers::LogWriter;

use super::sink::Sink;

/// Foreign crates (targets, with their submodules) that log per connection or request
/// and cannot mark their lines with [`per_request!`]. Never a module of the daemon's own.
const FOREIGN_PER_REQUEST: &[&str] =
    &["actix_http", "actix_server::worker", "actix_server::accept", "actix_web", "rustls"];
/// The key-value that marks a per-request record ([`per_request!`]). Its value is the
/// owner of the budget it counts against: empty for its call site's own ([`BURST`]), else
/// the app whose own lines share [`APP_BURST`].
pub(crate) const PER_REQUEST_KEY: &str = "per_request";
/// Lines one call site may log per window.
pub(crate) const BURST: u32 = 20;
/// Lines each app may write through `log_error` per window, and each isolated alias's
/// worker processes to stderr ([`super::capture`]): more, because one app error is often a
/// many-line traceback.
pub(crate) const APP_BURST: u32 = 500;
/// The rate-limit window.
pub(crate) const WINDOW: Duration = Duration::from_secs(10);

/// Logs a line that a client or an app can cause once per request (a refusal, a timeout, a
/// stalled body, an app's error): rate-limited by the error log (see the module docs).
///
/// `per_request!(Warn, subject, request_id; "format", args…)` logs
/// `SUBJECT (request ID): MESSAGE` at `log::Level::Warn`, under the caller's module path
/// (so `logs.level` filters it as before). `request_id` is a `u64`, or an `Option<u64>`:
/// `None` for a request refused before it got an id, logged as `SUBJECT: MESSAGE`. The
/// call site has its own budget of [`BURST`] lines per [`WINDOW`].
///
/// `per_request!(app: NAME, target: TARGET, Error, subject, request_id; …)`: an app's own
/// line (its `log_error`, its stderr) under `TARGET`, counted against app `NAME`'s budget
/// of [`APP_BURST`] lines for that call site.
macro_rules! per_request {
    (app: $app:expr, target: $target:expr, $level:ident, $subject:expr, $request:expr;
     $($arg:tt)+) => {
        $crate::logs::per_request!(
            @to ::log::logger(), $target, $app, $level, $subject, $request; $($arg)+
        )
    };
    // (The logger is a parameter for the tests.)
    (@to $logger:expr, $target:expr, $owner:expr, $level:ident, $subject:expr, $request:expr;
     $($arg:tt)+) => {{
        let request: ::std::option::Option<u64> = ::std::convert::From::from($request);
        let owner: &str = $owner;
        ::log::log!(
            logger: $logger,
            target: $target,
            ::log::Level::$level,
            per_request = owner;
            "{}{}: {}",
            $subject,
            $crate::logs::RequestTag(request),
            ::std::format_args!($($arg)+)
        )
    }};
    ($level:ident, $subject:expr, $request:expr; $($arg:tt)+) => {
        $crate::logs::per_request!(
            @to ::log::logger(), ::std::module_path!(), "", $level, $subject, $request; $($arg)+
        )
    };
}
pub(crate) use per_request;

/// ` (request N)`, or nothing for a request without an id (see [`per_request!`]).
#[doc(hidden)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestTag(pub(crate) Option<u64>);

impl std::fmt::Display for RequestTag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(id) => write!(f, " (request {id})"),
            None => Ok(()),
        }
    }
}

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
        let during =
            CURRENT.try_with(|c| c.try_borrow().ok().and_then(|c| c.clone())).ok().flatten();
        let backtrace = std::backtrace::Backtrace::capture();
        let backtrace = match backtrace.status() {
            std::backtrace::BacktraceStatus::Captured => format!("\n{backtrace}"),
            _ => String::new(),
        };
        if IN_LOGGER.try_with(Cell::get).unwrap_or(true) {
            let during = during
                .map(|(app, id)| format!(" during app {app} (request {id})"))
                .unwrap_or_default();
            let _ = writeln!(
                super::capture::stderr(),
                "panic in thread '{name}'{during}{place}: {message}{backtrace}"
            );
        } else if let Some((app, id)) = during {
            // In an app call: a request may cause it again, and again.
            per_request!(
                Error,
                format_args!("panic in thread '{name}' during app {app}"),
                id;
                "panicked{place}: {message}{backtrace}"
            );
        } else {
            log::error!("panic in thread '{name}'{place}: {message}{backtrace}");
        }
    }));
}

/// Where limited lines come from: one budget each.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Source {
    /// The source file of a per-request line; a foreign crate's target.
    place: String,
    line: u32,
    /// The app whose own lines these are (empty for a call site's own budget).
    owner: String,
}

/// One source's window.
#[derive(Debug)]
struct Window {
    start: Instant,
    passed: u32,
    suppressed: u64,
    sample: String,
}

/// The mark of a per-request line ([`per_request!`]): the owner of its budget (empty for
/// its call site's own). `None` for any other line.
pub(crate) fn per_request_mark(record: &log::Record<'_>) -> Option<String> {
    let owner = record.key_values().get(log::kv::Key::from_str(PER_REQUEST_KEY))?;
    Some(owner.to_borrowed_str().map_or_else(|| owner.to_string(), str::to_owned))
}

/// Every source's window.
#[derive(Debug, Default)]
struct Limits(HashMap<Source, Window>);

static LIMITS: Mutex<Option<Limits>> = Mutex::new(None);

/// The source and budget of a record that is limited: a per-request line
/// ([`per_request!`]), or a foreign crate's line per connection ([`FOREIGN_PER_REQUEST`]).
fn limited(record: &log::Record<'_>) -> Option<(Source, u32)> {
    let line = record.line().unwrap_or(0);
    if let Some(owner) = per_request_mark(record) {
        let burst = if owner.is_empty() { BURST } else { APP_BURST };
        let place = record.file().unwrap_or(record.target()).to_owned();
        return Some((Source { place, line, owner }, burst));
    }
    let target = record.target();
    FOREIGN_PER_REQUEST
        .iter()
        .any(|t| {
            target.strip_prefix(t).is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
        .then(|| (Source { place: target.to_owned(), line, owner: String::new() }, BURST))
}

impl Limits {
    /// Whether `record` may be written at `now`; counts it otherwise.
    fn admit(&mut self, record: &log::Record<'_>, now: Instant) -> bool {
        let Some((source, burst)) = limited(record) else { return true };
        let w = self.0.entry(source).or_insert_with(|| Window {
            start: now,
            passed: 0,
            suppressed: 0,
            sample: String::new(),
        });
        if now.duration_since(w.start) >= WINDOW && w.suppressed == 0 {
            w.start = now;
            w.passed = 0;
        }
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

    /// The summaries of the windows ended by `now` that suppressed lines (each starts a new
    /// window); quiet sources are forgotten.
    fn ended(&mut self, now: Instant) -> Vec<String> {
        let mut reports = Vec::new();
        self.0.retain(|Source { place, line, owner }, w| {
            let ended = now.duration_since(w.start) >= WINDOW;
            if ended && w.suppressed > 0 {
                let of = if owner.is_empty() { String::new() } else { format!(" ({owner})") };
                reports.push(format!(
                    "{} more messages from {place}:{line}{of} were suppressed in {} s (the \
                     first: {})",
                    w.suppressed,
                    now.duration_since(w.start).as_secs(),
                    w.sample
                ));
                w.start = now;
                w.passed = 0;
                w.suppressed = 0;
                return true;
            }
            !ended
        });
        reports
    }
}

/// Whether a record may be written now; counts it otherwise.
fn admit(record: &log::Record<'_>) -> bool {
    let mut limits = LIMITS.lock().unwrap_or_else(PoisonError::into_inner);
    limits.get_or_insert_with(Limits::default).admit(record, Instant::now())
}

/// Reports (once per window) the messages suppressed in windows that have ended. Called
/// by the log writer thread every second and before each error-log line.
pub(crate) fn tick() {
    let reports = {
        let mut limits = LIMITS.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(limits) = limits.as_mut() else { return };
        limits.ended(Instant::now())
    };
    if reports.is_empty() {
        return;
    }
    let time = chrono::Local::now().format("%Y-%m-%d %H:%M:%S%.3f").to_string();
    for r in reports {
        write_line(&format_line(&time, log::Level::Warn, &r));
    }
}

/// One entry of the error log: `TIME LEVEL message`. No message can forge an entry, whatever
/// a client put in it (a URL's `%0A`, an app's output): control characters are escaped
/// (`\r` as `\\r`, the others but tab as `\xHH`), and a message's own line breaks start
/// indented continuation lines, which never begin with a time.
fn format_line(time: &str, level: log::Level, message: &str) -> String {
    use std::fmt::Write as _;
    let mut line = String::with_capacity(time.len() + message.len() + 8);
    let _ = write!(line, "{time} {level:<5} ");
    for c in message.trim_end_matches('\n').chars() {
        match c {
            '\n' => line.push_str("\n  "),
            '\t' => line.push('\t'),
            '\r' => line.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(line, "\\x{:02x}", u32::from(c));
            }
            c => line.push(c),
        }
    }
    line.push('\n');
    line
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

/// Logs a record a worker process sent (its own log line, `message` already attributed to
/// the worker), on `logger`. Every such line of one alias counts against one budget,
/// [`APP_BURST`] per window, owned by `owner` (the alias): whatever file, line, target or
/// mark the worker wrote, which a hostile worker could vary to get a fresh budget per line.
/// The level and target stay the worker's, for `logs.level` filtering.
pub(crate) fn relay_worker_record(
    logger: &dyn log::Log,
    owner: &str,
    level: log::Level,
    target: &str,
    message: std::fmt::Arguments<'_>,
) {
    let kvs = [(PER_REQUEST_KEY, owner)];
    logger.log(
        &log::Record::builder()
            .level(level)
            .target(target)
            .file(Some("a worker process"))
            .line(Some(0))
            .key_values(&kvs)
            .args(message)
            .build(),
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn no_message_forges_an_entry() {
        let table = [
            ("plain", "T INFO  plain\n"),
            (
                "a\n2026-01-01 00:00:00.000 ERROR forged",
                "T INFO  a\n  2026-01-01 00:00:00.000 ERROR forged\n",
            ),
            ("cr\rhere", "T INFO  cr\\rhere\n"),
            ("esc\u{1b}[31m", "T INFO  esc\\x1b[31m\n"),
            ("tab\tok", "T INFO  tab\tok\n"),
            ("trailing\n\n", "T INFO  trailing\n"),
        ];
        for (message, want) in table {
            assert_eq!(format_line("T", log::Level::Info, message), want, "{message:?}");
        }
    }

    /// A record as a call site logs it: `per_request` marks it with its budget's owner.
    fn logged(limits: &mut Limits, target: &str, line: u32, per_request: Option<&str>) -> bool {
        let kvs = per_request.map(|owner| [(PER_REQUEST_KEY, owner)]);
        let kvs: &[(&str, &str)] = kvs.as_ref().map_or(&[], |k| &k[..]);
        limits.admit(
            &log::Record::builder()
                .target(target)
                .file(Some("crates/gatehouse/src/somewhere.rs"))
                .line(Some(line))
                .key_values(&kvs)
                .args(format_args!("x"))
                .level(log::Level::Warn)
                .build(),
            Instant::now(),
        )
    }

    #[test]
    fn per_request_lines_are_limited_from_any_module_and_other_lines_never() {
        // (target, per-request mark, lines written of 1000)
        let table: &[(&str, Option<&str>, u32)] = &[
            // Per-request lines: whatever module logs them, BURST per window.
            ("gatehouse::http::handler", Some(""), BURST),
            ("gatehouse::isolation::relay", Some(""), BURST),
            ("gatehouse::call::reply", Some(""), BURST),
            ("gatehouse::module_not_written_yet", Some(""), BURST),
            // A worker process's line, relayed by the daemon with its mark.
            ("gatehouse::worker", Some(""), BURST),
            // An app's own lines: its bigger budget.
            ("gatehouse::app::myapp", Some("myapp"), APP_BURST),
            ("gatehouse::stderr", Some("/alias (worker group)"), APP_BURST),
            // Foreign crates that log per connection: by target.
            ("actix_http::h1::dispatcher", None, BURST),
            ("actix_server::worker", None, BURST),
            ("actix_web::middleware", None, BURST),
            ("rustls::common_state", None, BURST),
            // Start-up, reload and life-cycle lines: never, whatever module logs them.
            ("gatehouse::host", None, 1000),
            ("gatehouse::http::handler", None, 1000),
            ("gatehouse::isolation::group", None, 1000),
            ("actix_serverx", None, 1000),
        ];
        let mut limits = Limits::default();
        for (row, &(target, mark, want)) in table.iter().enumerate() {
            let line = 1000 + u32::try_from(row).unwrap();
            let written: u32 =
                (0..1000).map(|_| u32::from(logged(&mut limits, target, line, mark))).sum();
            assert_eq!(written, want, "{target} {mark:?}");
        }
        // Another call site (or another app) has its own budget.
        assert!(logged(&mut limits, "gatehouse::http::handler", 1, Some("")));
        assert!(logged(&mut limits, "gatehouse::app::other", 1005, Some("other")));
    }

    /// Admits records as the error log's writer does, and keeps the ones written.
    #[derive(Default)]
    struct Writer {
        limits: Mutex<Limits>,
        written: Mutex<Vec<String>>,
    }

    impl log::Log for Writer {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }
        fn log(&self, record: &log::Record<'_>) {
            if self.limits.lock().unwrap().admit(record, Instant::now()) {
                self.written.lock().unwrap().push(record.args().to_string());
            }
        }
        fn flush(&self) {}
    }

    #[test]
    fn a_worker_gets_one_budget_per_alias_whatever_its_records_say() {
        let w = Writer::default();
        // A hostile worker's records: a new target (and file, line, mark) for every line.
        for i in 0..1000 {
            let target = format!("gatehouse::forged{i}");
            relay_worker_record(&w, "/iso", log::Level::Error, &target, format_args!("x{i}"));
        }
        assert_eq!(w.written.lock().unwrap().len(), APP_BURST as usize);
        // Another alias's workers have their own budget.
        relay_worker_record(&w, "/other", log::Level::Info, "gatehouse::worker", format_args!("y"));
        assert_eq!(w.written.lock().unwrap().len(), APP_BURST as usize + 1);
    }

    #[test]
    fn the_macro_limits_per_call_site_and_a_summary_says_how_many_were_suppressed() {
        log::set_max_level(log::LevelFilter::Trace);
        let w = Writer::default();
        let target = module_path!();
        for i in 0..50 {
            per_request!(@to &w, target, "", Warn, "/app", 7u64; "busy {i}; answered 503");
            per_request!(@to &w, target, "", Info, "/group", None; "404: no plugin {i}");
            log::log!(logger: &w, log::Level::Info, "a start-up line {i}");
        }
        let written = w.written.lock().unwrap().clone();
        let count = |what: &str| written.iter().filter(|l| l.starts_with(what)).count();
        assert_eq!(count("/app (request 7): busy "), BURST as usize, "{written:#?}");
        assert_eq!(count("/group: 404: no plugin "), BURST as usize, "{written:#?}");
        assert_eq!(count("a start-up line "), 50);
        assert_eq!(written[0], "/app (request 7): busy 0; answered 503");
        // When the window ends: one line per call site says what was suppressed.
        let mut reports = w.limits.lock().unwrap().ended(Instant::now() + WINDOW);
        reports.sort();
        assert_eq!(reports.len(), 2, "{reports:#?}");
        let this = file!();
        assert!(reports[0].starts_with(&format!("30 more messages from {this}:")), "{reports:#?}");
        assert!(
            reports[0].ends_with(
                " were suppressed in 10 s (the first: /app (request 7): busy 20; answered 503)"
            ),
            "{reports:#?}"
        );
        assert!(reports[1].ends_with("(the first: /group: 404: no plugin 20)"), "{reports:#?}");
        // A new window: the call site may log again, and a quiet one is forgotten later.
        per_request!(@to &w, target, "", Warn, "/app", 8u64; "busy again");
        assert_eq!(w.written.lock().unwrap().last().unwrap(), "/app (request 8): busy again");
    }
}
