//! One app call, the same in and out of process: the reply state machine ([`reply`]), the
//! ABI callbacks and the call across the boundary ([`abi`]), the per-alias thread pool
//! ([`pool`]), and when a call may skip it ([`inline`]).

pub(crate) mod abi;
pub(crate) mod body;
pub(crate) mod deadline;
pub(crate) mod hook;
pub(crate) mod inline;
pub mod pool;
pub(crate) mod reply;
pub(crate) mod websocket;

pub(crate) use abi::invoke_websocket;
pub use abi::{head, invoke, invoke_inline};
pub use body::{BodySource, body_error_code};
pub use reply::{Call, Reply};
pub(crate) use reply::{Chunk, Head, ReplySink, app_may_set};

use gatehouse_abi::Status;

use crate::logs::per_request;

impl Call<'_> {
    /// The app's `debug_log` line: written with develop mode on, or when it `must` be.
    pub(crate) fn debug_log(&self, message: &[u8], must: bool) -> Status {
        if !self.develop_mode && !must {
            return Status::OK;
        }
        match self.debug.write(self.request_id, message) {
            Ok(()) => Status::OK,
            Err(_) => Status::ERROR,
        }
    }

    /// The app's line for the error log (`log_error`, `log_info`), tagged with the app and
    /// the request.
    pub(crate) fn log(&self, level: log::Level, message: &[u8]) {
        log_app_line(level, self.app, self.request_id, message);
    }
}

/// Writes an app's `log_error` (level ERROR) or `log_info` (INFO) line to the error log:
/// control characters escaped (one call is one line; quotes are left alone, so a Python
/// traceback reads as Python printed it), target `gatehouse::app::NAME` (filterable with
/// `logs.level` / RUST_LOG), rate-limited per app, both levels against one budget
/// (`APP_BURST`, see `logs::per_request!`).
pub(crate) fn log_app_line(level: log::Level, app: &str, request_id: u64, message: &[u8]) {
    let mut escaped = Vec::with_capacity(message.len());
    crate::logs::debug::escape_into(message, &mut escaped);
    let target = format!("gatehouse::app::{app}");
    let line = String::from_utf8_lossy(&escaped);
    let subject = format_args!("app {app}");
    if level == log::Level::Error {
        per_request!(app: app, target: &target, Error, subject, request_id; "{line}");
    } else {
        per_request!(app: app, target: &target, Info, subject, request_id; "{line}");
    }
}
