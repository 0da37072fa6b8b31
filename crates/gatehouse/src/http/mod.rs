//! The HTTP edge: the one request handler ([`handler`]), an app's reply as an HTTP
//! response ([`response`]), the access-log middleware ([`access`]) and the listeners
//! ([`listen`]).

pub(crate) mod access;
pub(crate) mod alive;
pub(crate) mod handler;
#[cfg(test)]
mod handler_tests;
mod hooks;
pub(crate) mod listen;
pub mod response;
pub(crate) mod static_files;
pub(crate) mod websocket;

pub use handler::handle;
pub use listen::{Control, Endpoint, Hooks, Signals, endpoints, probe, run};
