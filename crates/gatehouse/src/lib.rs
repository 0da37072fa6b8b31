//! The Gatehouse daemon: hosts app plugins (cdylibs speaking the environ ABI) behind
//! actix-web, configured by `hosting.yaml` the way Apache's `WSGIScriptAlias` configures
//! mod_wsgi.
//!
//! The modules sit in layers, listed in [`LAYERS`] from the bottom up. A module uses only its
//! own layer or lower ones; `tests/layers.rs` reads every `use crate::` path and fails on an
//! upward import or on a cycle between top-level modules. One request goes up the layers
//! and back: `http::handler` routes it (`request`), reads its input and environ
//! (`request`), calls its app (`call`, or `isolation` for worker processes) on the running
//! `host`, and answers.

// layer 0: services any layer may use
pub mod clock;
pub mod fds;
pub mod logs;
pub mod metrics;
pub mod sockets;
pub mod spool;
pub mod systemd;
pub mod tls;
// layer 1: one request as data, no shared state
pub mod request;
// layer 2: loading code, and one app call
pub mod call;
pub mod plugin;
// layer 3: worker processes, seen from the daemon
pub mod isolation;
// layer 4: the running state of one configuration
pub mod host;
// layer 5: edges and entry points
pub mod admin;
pub mod http;
pub mod init;
pub mod pidfile;
pub mod reload;
pub mod routes;
pub mod scaffold;
pub mod worker;

/// The layers, bottom up: each top-level module and its layer. A module may use modules
/// of its own layer or lower ones (checked by `tests/layers.rs`).
pub const LAYERS: &[(&str, u8)] = &[
    ("clock", 0),
    ("fds", 0),
    ("logs", 0),
    ("metrics", 0),
    ("sockets", 0),
    ("spool", 0),
    ("systemd", 0),
    ("tls", 0),
    ("request", 1),
    ("call", 2),
    ("plugin", 2),
    ("isolation", 3),
    ("host", 4),
    ("admin", 5),
    ("http", 5),
    ("init", 5),
    ("pidfile", 5),
    ("reload", 5),
    ("routes", 5),
    ("scaffold", 5),
    ("worker", 5),
];
