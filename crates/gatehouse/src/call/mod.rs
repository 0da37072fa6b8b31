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
pub(crate) use reply::{Chunk, Head, ReplySink, app_may_set, log_app_line};

use gatehouse_abi::Status;

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
        reply::log_app_line(level, self.app, self.request_id, message);
    }
}
