//! One app call, the same in and out of process: the reply state machine ([`reply`]), the
//! ABI callbacks and the call across the boundary ([`abi`]), and the per-alias thread pool
//! ([`pool`]).

pub(crate) mod abi;
pub(crate) mod body;
pub(crate) mod deadline;
pub(crate) mod hook;
pub mod pool;
pub(crate) mod reply;
pub(crate) mod websocket;

pub(crate) use abi::invoke_websocket;
pub use abi::{head, invoke, invoke_inline};
pub use body::{BodySource, body_error_code};
pub use reply::{Call, Reply};
pub(crate) use reply::{Chunk, Head, ReplySink, app_may_set, log_app_line};
