//! WebSockets of an isolated alias. The daemon drives every socket (`http::websocket`),
//! whichever process holds its app; here is what crosses to a worker process and back:
//!
//! - the accept: the app's `websocket_accept` in the worker is a `WsAccept` frame on the
//!   request's socket, which the relay answers with `WsAccepted` ([`accept`]);
//! - the events: `WsEvent` frames on the worker's control socket, run there on the
//!   alias's app threads and answered by `WsEventDone` ([`Worker`]'s [`RemoteEvents`]);
//! - the sends and closes of its apps, from any of its threads: `WsSend` and `WsClose` on
//!   the control socket, which the worker's slot thread hands to the sockets
//!   ([`from_worker`]).
//!
//! A worker that ends closes its sockets: with 1011 when it crashed or was killed, with
//! 1001 when it was stopped ([`worker_ended`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use actix_web::web::Bytes;
use gatehouse_abi::{Status, WebSocketKind};
use tokio::sync::oneshot;

use super::proto::{Get, Kind, ProtoError, Put, push_frame};
use super::sockets::Worker;
use crate::call::ReplySink;
use crate::call::websocket::{Offer, RemoteEvents, Target};
use crate::plugin::load::Plugin;
use crate::sockets::Out;

/// The owners of workers' sockets, apart from plugin instances' numbers.
static NEXT_OWNER: AtomicUsize = AtomicUsize::new(1 << 40);

/// A worker's WebSockets, seen from the daemon.
#[derive(Debug)]
pub(crate) struct WorkerSockets {
    /// The owner of its sockets in the daemon's registry.
    owner: usize,
    /// The events it was sent and has not answered, by socket (one at a time per socket).
    pending: Mutex<HashMap<u64, oneshot::Sender<Status>>>,
}

impl Default for WorkerSockets {
    fn default() -> Self {
        WorkerSockets {
            owner: NEXT_OWNER.fetch_add(1, Ordering::Relaxed),
            pending: Mutex::default(),
        }
    }
}

impl RemoteEvents for Worker {
    fn event(
        &self,
        socket: u64,
        kind: WebSocketKind,
        data: Bytes,
        close_code: u16,
    ) -> oneshot::Receiver<Status> {
        let (tx, rx) = oneshot::channel();
        if self.dead.load(Ordering::Acquire) {
            return rx;
        }
        let pending = &self.ws.pending;
        if kind != WebSocketKind::CLOSE {
            pending.lock().unwrap_or_else(PoisonError::into_inner).insert(socket, tx);
        }
        let sent = self.send_control_frame(Kind::WsEvent, |out| {
            out.put_u64(socket);
            out.put_u32(kind.0);
            out.put_u32(u32::from(close_code));
            out.put_bytes(&data);
        });
        if !sent {
            pending.lock().unwrap_or_else(PoisonError::into_inner).remove(&socket);
        }
        rx
    }
}

/// The relay's answer to a worker's `WsAccept` (with `protocol`) for a request that
/// `offer`s a socket: the status and the socket's id for the `WsAccepted` frame, and the
/// sender to drop when the worker's `handle` has returned.
pub(super) fn accept(
    offer: Option<&Offer>,
    worker: &Arc<Worker>,
    sink: &mut ReplySink<'_>,
    protocol: &[u8],
) -> (Status, u64, Option<oneshot::Sender<()>>) {
    let Some(offer) = offer else { return (Status::INVALID, 0, None) };
    let target = Target::Remote(Arc::clone(worker) as Arc<dyn RemoteEvents>);
    match crate::call::websocket::accept(offer, worker.ws.owner, target, sink, protocol) {
        Ok((socket, done)) => (Status::OK, socket, Some(done)),
        Err(status) => (status, 0, None),
    }
}

/// A WebSocket frame on a worker's control socket (`WsEventDone`, `WsSend`, `WsClose`).
pub(super) fn from_worker(worker: &Worker, kind: Kind, payload: &[u8]) -> Result<(), ProtoError> {
    let mut get = Get::new(payload, "WebSocket");
    let socket = get.u64()?;
    match kind {
        Kind::WsEventDone => {
            let status = Status(get.u32()?);
            let waiting =
                worker.ws.pending.lock().unwrap_or_else(PoisonError::into_inner).remove(&socket);
            if let Some(tx) = waiting {
                let _ = tx.send(status);
            }
        }
        Kind::WsSend => {
            let kind = WebSocketKind(get.u32()?);
            let data = get.bytes()?;
            let msg = match kind {
                WebSocketKind::TEXT if std::str::from_utf8(data).is_ok() => {
                    Out::Text(Bytes::copy_from_slice(data))
                }
                WebSocketKind::BINARY => Out::Binary(Bytes::copy_from_slice(data)),
                _ => return Ok(()),
            };
            // (While the socket's queue is full, this waits: the worker's app waits too.)
            let _ = crate::sockets::send(worker.ws.owner, socket, msg);
        }
        Kind::WsClose => {
            let code = get.u32()?;
            let reason = String::from_utf8_lossy(get.bytes()?);
            if let Some(code) = crate::sockets::app_close_code(code) {
                let _ = crate::sockets::close(worker.ws.owner, socket, code, &reason);
            }
        }
        other => return Err(ProtoError::Unexpected(other)),
    }
    Ok(())
}

/// A worker ended: its sockets are closed (1011 when it crashed or was killed, else 1001),
/// and its unanswered events fail.
pub(super) fn worker_ended(worker: &Worker, crashed: bool) {
    let (code, reason) = if crashed {
        (1011, "the app's worker process died")
    } else {
        (1001, "the app's worker process stopped")
    };
    let n = crate::sockets::close_all(Some(worker.ws.owner), code, reason);
    if n > 0 {
        log::warn!("worker {} ended: closing its {n} WebSockets ({code})", worker.pid);
    }
    worker.ws.pending.lock().unwrap_or_else(PoisonError::into_inner).clear();
}

/// In a worker process: the sockets its apps accepted, and the instance of each.
static HELD: LazyLock<Mutex<HashMap<u64, Arc<Plugin>>>> = LazyLock::new(Mutex::default);

/// In a worker process: `plugin` accepted socket `id` (the daemon's).
pub(crate) fn held(plugin: &Arc<Plugin>, id: u64) {
    HELD.lock().unwrap_or_else(PoisonError::into_inner).insert(id, Arc::clone(plugin));
    crate::sockets::register_forwarded(plugin.id(), id);
}

/// In a worker process: one `WsEvent`, decoded: the instance that holds the socket (none:
/// no longer held), the socket, the kind, the close code and the data.
pub(crate) type Event = (Option<Arc<Plugin>>, u64, WebSocketKind, u16, Vec<u8>);

/// In a worker process: decodes a `WsEvent` payload. A CLOSE forgets the socket.
pub(crate) fn event(payload: &[u8]) -> Result<Event, ProtoError> {
    let mut get = Get::new(payload, "WsEvent");
    let socket = get.u64()?;
    let kind = WebSocketKind(get.u32()?);
    let code = u16::try_from(get.u32()?).unwrap_or(1006);
    let data = get.bytes()?.to_vec();
    let mut held = HELD.lock().unwrap_or_else(PoisonError::into_inner);
    let plugin = if kind == WebSocketKind::CLOSE {
        crate::sockets::unregister(socket);
        held.remove(&socket)
    } else {
        held.get(&socket).cloned()
    };
    Ok((plugin, socket, kind, code, data))
}

/// A `WsEventDone` frame's payload.
pub(crate) fn event_done(out: &mut Vec<u8>, socket: u64, status: Status) {
    out.put_u64(socket);
    out.put_u32(status.0);
}

/// A `WsSend` frame.
pub(crate) fn push_send(out: &mut Vec<u8>, socket: u64, msg: &Out) {
    push_frame(out, Kind::WsSend, |b| {
        b.put_u64(socket);
        match msg {
            Out::Text(d) => {
                b.put_u32(WebSocketKind::TEXT.0);
                b.put_bytes(d);
            }
            Out::Binary(d) => {
                b.put_u32(WebSocketKind::BINARY.0);
                b.put_bytes(d);
            }
        }
    });
}

/// A `WsClose` frame.
pub(crate) fn push_close(out: &mut Vec<u8>, socket: u64, code: u16, reason: &str) {
    push_frame(out, Kind::WsClose, |b| {
        b.put_u64(socket);
        b.put_u32(u32::from(code));
        b.put_bytes(reason.as_bytes());
    });
}
