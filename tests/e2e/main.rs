//! End-to-end tests of Gatehouse: the real `gatehouse` binary, started as a process on an
//! ephemeral 127.0.0.1 port, serving real built plugins (`dlopen`ed cdylibs), driven over
//! real HTTP/1.1.
//!
//! How it works (see [`harness`]):
//! - The first test to need them runs one nested `cargo build -p gatehouse -p hello -p
//!   products -p environ -p panicky` into this binary's own target folder (`cargo test` has
//!   released its build lock by then), so the daemon and plugins are always current.
//! - Each test starts its own daemon in its own temp folder from a `hosting.yaml` written
//!   there; `apps/` in that folder holds a copy of every plugin for directory-group aliases.
//!   Tests run in parallel, one daemon each, and share a daemon across the assertions of one
//!   test.
//! - Requests are written byte for byte over a `TcpStream` (no URL-normalising client), so the
//!   traversal, encoding and malformed-body cases reach the daemon exactly as written.
//!
//! One module per topic: the seed's two apps, routing, forms and limits, the environ and its
//! conformance with mod_wsgi, plugin loading and failures, dispatch, streaming, uploads, logs,
//! live reload, hostile input, process isolation and what a worker gets from the daemon
//! (hardening), the WSGI bridge, TLS, metrics, systemd, the Debian packages (installed into a
//! container booted with systemd, where root can run it), the OCI image and the Kubernetes
//! manifests (under podman), and the `check` / `routes` commands.
#![allow(clippy::unwrap_used)]

mod cli;
mod conformance;
mod debian;
mod dispatch;
mod environ;
mod fds;
mod forms;
mod hardening;
mod harness;
mod hooks;
mod hostile;
mod isolation;
mod kubernetes;
mod logs;
mod metrics;
mod plugins;
mod reload;
mod routing;
mod seed_apps;
mod streaming;
mod systemd;
mod tls;
mod uploads;
mod websocket;
mod wsgi;
