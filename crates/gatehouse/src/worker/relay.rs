//! One request of an isolated alias, relayed on an app thread of the daemon: a socket is
//! taken from the alias's [`Group`], the request goes out as one `Request` frame, and the
//! worker's frames drive the same [`ReplySink`] an in-process call drives, so the client
//! sees the same reply in both modes. Body chunks go to the worker as it asks for them.
//!
//! A worker that dies mid-request ends its sockets: a reply not started becomes 502, a
//! streaming one is cut.

use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::Instant;

use gatehouse_abi::Status;
use gatehouse_config::AliasKind;
use tokio::sync::oneshot;

use super::group::{Conn, Group, NoConn};
use super::messages::{RequestOut, decode_head};
use super::proto::{Get, Kind, Put};
use crate::debug_log::DebugLog;
use crate::environ::PairBuf;
use crate::ffi::{BodySource, Reply, ReplySink, body_error_code, log_app_error};
use crate::input::Input;

/// What one relayed request needs.
#[derive(Debug)]
pub struct Relay<'a> {
    /// The alias's workers.
    pub group: &'a Group,
    /// The alias's kind (a group answers 404 for a plugin that does not load).
    pub kind: AliasKind,
    /// The app's name, for logs.
    pub app: &'a str,
    /// Its debug log.
    pub debug: &'a DebugLog,
    /// The request id.
    pub request_id: u64,
    /// Develop mode for the alias.
    pub develop_mode: bool,
    /// The file to serve.
    pub file: &'a Path,
    /// A directory group's plugin NAME.
    pub group_name: Option<&'a str>,
    /// CGI/WSGI variables.
    pub vars: &'a PairBuf,
    /// Parameters and uploads.
    pub input: &'a Input,
    /// When the client gets 504 if no reply has started.
    pub deadline: Instant,
}

/// Relays the request; the reply goes to `tx`. `pid` is set to the worker's pid while it
/// serves the request (the HTTP side kills it past the timeout); `overdue` is set by the
/// HTTP side when the client already got 504.
pub fn relay(
    r: &Relay<'_>,
    mut body: BodySource,
    tx: oneshot::Sender<Reply>,
    pid: &AtomicU32,
    overdue: &AtomicBool,
) {
    let mut conn = match r.group.acquire(r.deadline) {
        Ok(conn) => conn,
        Err(NoConn::Down(why)) => {
            log::warn!(
                "{} (request {}): no worker process is running ({why}); answered 503",
                r.app,
                r.request_id
            );
            let _ = tx.send(Reply::Refused {
                status: 503,
                message: "the app's worker processes are not running; the error log says why",
            });
            return;
        }
        Err(NoConn::Stopping) => {
            let _ = tx.send(Reply::Refused { status: 503, message: "the app is stopping" });
            return;
        }
        // Every worker stayed busy (if the HTTP side already answered 504, this is dropped).
        Err(NoConn::Timeout) => {
            let _ = tx.send(Reply::Refused {
                status: 503,
                message: "every worker process of the app is busy; retry shortly",
            });
            return;
        }
    };
    if overdue.load(Ordering::Acquire) {
        r.group.release(conn, Outcome::Done);
        return;
    }
    if let Some(uid) = r.group.uid() {
        // The spooled uploads are the daemon's (0600): the worker's user gets them.
        for u in &r.input.uploads {
            if let Err(e) = std::os::unix::fs::fchown(u.file.as_file(), Some(uid), None) {
                log::warn!(
                    "{} (request {}): cannot hand an upload to uid {uid}: {e}",
                    r.app,
                    r.request_id
                );
            }
        }
    }
    let worker = std::sync::Arc::clone(&conn.worker);
    pid.store(worker.pid, Ordering::Release);
    worker.in_flight_ids().push(r.request_id);
    let outcome = exchange(r, &mut conn, &mut body, tx);
    if outcome != Outcome::Died {
        // A dead worker's ids stay for its report (its slot thread takes them).
        worker.in_flight_ids().retain(|&i| i != r.request_id);
    }
    pid.store(0, Ordering::Release);
    r.group.release(conn, outcome);
}

/// How a relayed request ended, for the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// By the framing's rules: the socket serves the next request.
    Done,
    /// The socket ended: the worker died or was killed.
    Died,
    /// The worker sent what the framing does not allow: it is recycled.
    Broken,
}

/// Sends the request and follows the worker's frames to `End`.
fn exchange(
    r: &Relay<'_>,
    conn: &mut Conn,
    body: &mut BodySource,
    tx: oneshot::Sender<Reply>,
) -> Outcome {
    let io = &mut conn.io;
    let out = RequestOut {
        id: r.request_id,
        develop_mode: r.develop_mode,
        file: r.file.as_os_str().as_bytes(),
        group_name: r.group_name,
        vars: r.vars,
        params: &r.input.params,
        uploads: &r.input.uploads,
    };
    io.frame(Kind::Request, |buf| out.encode(buf));
    let mut sink = ReplySink::channel(r.app, r.request_id, tx);
    let mut gone = false;
    if io.flush().is_err() {
        sink.abort(502, DIED);
        return Outcome::Died;
    }
    loop {
        let kind = match io.read() {
            Ok(kind) => kind,
            Err(e) => {
                log::debug!("{} (request {}): worker socket: {e}", r.app, r.request_id);
                sink.abort(502, DIED);
                return Outcome::Died;
            }
        };
        let status = match kind {
            Kind::Head => match decode_head(io.payload()) {
                Ok(head) => sink.start(|| Ok(head)),
                Err(e) => return protocol(r, sink, &e.to_string()),
            },
            Kind::Data => sink.write(io.payload()),
            Kind::Flush => sink.flush(),
            Kind::ReadBody => {
                match body.next_chunk() {
                    Ok(Some(chunk)) => io.frame_bytes(Kind::Body, &chunk),
                    Ok(None) => io.frame_bytes(Kind::Body, &[]),
                    Err(e) => io.frame(Kind::BodyError, |b| b.put_u32(body_error_code(e).0)),
                }
                if io.flush().is_err() {
                    sink.abort(502, DIED);
                    return Outcome::Died;
                }
                Status::OK
            }
            Kind::Debug => {
                if let Err(e) = r.debug.write(r.request_id, io.payload()) {
                    log::debug!("{}: debug line not written: {e}", r.app);
                }
                Status::OK
            }
            Kind::LogError => {
                log_app_error(r.app, r.request_id, io.payload());
                Status::OK
            }
            Kind::End => {
                let code = Get::new(io.payload(), "End").u32().unwrap_or(Status::ERROR.0);
                let _ = sink.finish(Status(code));
                return Outcome::Done;
            }
            Kind::Refused => {
                let missing = io.payload().first() == Some(&0);
                let (status, message) = match (missing, r.kind) {
                    (true, _) | (false, AliasKind::Group) => (404, "no such app"),
                    (false, AliasKind::App) => {
                        (500, "the app could not be loaded; the error log says why")
                    }
                };
                sink.abort(status, message);
                return Outcome::Done;
            }
            other => return protocol(r, sink, &format!("unexpected {other:?}")),
        };
        if status == Status::DISCONNECTED && !gone {
            // The client left: the app learns it at its next write.
            gone = true;
            io.frame(Kind::Gone, |_| {});
            let _ = io.flush();
        }
    }
}

const DIED: &str = "the app's worker process died; the error log says why";

fn protocol(r: &Relay<'_>, sink: ReplySink<'_>, what: &str) -> Outcome {
    log::error!("{} (request {}): the worker broke the framing: {what}", r.app, r.request_id);
    sink.abort(502, "the app's worker process failed; the error log says why");
    Outcome::Broken
}
