//! The Gatehouse daemon: hosts app plugins (cdylibs speaking the environ ABI) behind
//! actix-web, configured by `hosting.yaml` the way Apache's `WSGIScriptAlias` configures
//! mod_wsgi.
//!
//! One request flows one way: [`server`] (actix) → [`mounts`] (URL → alias, SCRIPT_NAME,
//! PATH_INFO) → [`host`] (alias → loaded [`plugins`]) → [`input`] (params, uploads, body) →
//! [`environ`] (CGI/WSGI variables) → [`dispatch`] (the alias's thread pool) → [`ffi`] (the
//! call across the ABI) → [`response`] (the reply as HTTP). Configuration parsing lives in
//! the `gatehouse-config` crate; the CLI in `main.rs`; [`routes`] explains the route table.
//! [`logs`] owns the files the daemon writes: [`debug_log`], [`access_log`], the error log.

pub mod access_log;
pub mod debug_log;
pub mod dispatch;
pub mod environ;
pub mod ffi;
pub mod forwarded;
pub mod host;
pub mod input;
pub mod logs;
pub mod metrics;
pub mod mounts;
pub mod plugins;
pub mod reload;
pub mod response;
pub mod routes;
pub mod server;
pub mod staging;
pub mod status;
pub mod systemd;
pub mod tls;
pub mod worker;
