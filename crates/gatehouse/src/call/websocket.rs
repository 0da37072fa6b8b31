//! A WebSocket seen from the app call: what a valid handshake offers the app ([`Offer`]),
//! its `websocket_accept` inside `handle` ([`Accepting`]), what the call then hands the
//! HTTP side ([`Upgrade`]), and the events given to the app on its alias's pool
//! ([`Upgrade::event`]).
//!
//! Every accepted socket gets exactly one `CLOSE` event, its last, after `handle` returned:
//! [`Upgrade`]'s drop sends it, whoever drops it (the task that drove the socket, or a
//! handshake whose client left before its 101).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix_web::web::Bytes;
use gatehouse_abi::{Status, WebSocketKind};
use tokio::sync::{mpsc, oneshot};

use super::pool::{Busy, Pool};
use super::reply::ReplySink;
use crate::metrics::RequestStats;
use crate::plugin::load::Plugin;
use crate::request::answer::Answer;
use crate::sockets::{self, CloseSignal, Out, Outbound};

/// What a request with a valid WebSocket handshake offers its app.
#[derive(Debug, Clone)]
pub(crate) struct Offer {
    /// The client's `Sec-WebSocket-Protocol` values, in its order.
    pub(crate) protocols: Vec<String>,
    /// The alias's `max_websockets`.
    pub(crate) max: usize,
    /// The alias's counters (its open sockets among them).
    pub(crate) stats: Arc<RequestStats>,
    /// How long an app's send waits on a full queue (the alias's `timeout`).
    pub(crate) stall_limit: Duration,
    /// Where the socket's events run: the alias's pool.
    pub(crate) pool: Arc<Pool>,
}

/// The WebSocket side of one call's state: the offer and the plugin that may accept it.
#[derive(Debug)]
pub(crate) struct Accepting<'a> {
    pub(crate) offer: &'a Offer,
    pub(crate) plugin: &'a Arc<Plugin>,
    /// Dropped when the call returns: the socket's events may start then.
    done: Option<oneshot::Sender<()>>,
}

impl<'a> Accepting<'a> {
    pub(crate) fn new(offer: &'a Offer, plugin: &'a Arc<Plugin>) -> Self {
        Accepting { offer, plugin, done: None }
    }

    /// `websocket_accept` with `protocol` (empty: none): the socket's id, or the status the
    /// callback returns.
    pub(crate) fn accept(
        &mut self,
        sink: &mut ReplySink<'_>,
        protocol: &[u8],
    ) -> Result<u64, Status> {
        if self.done.is_some() || sink.started() {
            return Err(Status::BAD_STATE);
        }
        if !self.plugin.takes_websockets() {
            return Err(Status::INVALID);
        }
        let protocol = match std::str::from_utf8(protocol) {
            Ok("") => None,
            Ok(p) if self.offer.protocols.iter().any(|o| o == p) => Some(p.to_owned()),
            _ => return Err(Status::INVALID),
        };
        let stats = &self.offer.stats;
        if stats.websockets.fetch_add(1, Ordering::AcqRel) >= self.offer.max {
            stats.websockets.fetch_sub(1, Ordering::AcqRel);
            log::warn!(
                "app {}: {} WebSockets are open, its alias's max_websockets; answered 503",
                self.plugin.name(),
                self.offer.max
            );
            return Err(sink.refuse(Answer::busy()));
        }
        let (tx, outbound) = mpsc::channel(sockets::QUEUE);
        let close = Arc::new(CloseSignal::default());
        let out = Outbound { tx, close: Arc::clone(&close), stall_limit: self.offer.stall_limit };
        let socket = sockets::register(self.plugin.id(), out);
        let (done, handle_done) = oneshot::channel();
        let up = Upgrade {
            socket,
            protocol,
            plugin: Arc::clone(self.plugin),
            pool: Arc::clone(&self.offer.pool),
            outbound,
            close,
            handle_done: Some(handle_done),
            close_code: 1006,
            close_reason: Bytes::new(),
            stats: Arc::clone(stats),
            promised: true,
        };
        match sink.upgrade(up) {
            Ok(()) => {
                self.done = Some(done);
                Ok(socket)
            }
            Err((status, up)) => {
                if let Some(mut up) = up {
                    // The app is told it has no socket: no CLOSE for it.
                    up.promised = false;
                }
                Err(status)
            }
        }
    }
}

/// An accepted socket, handed from the app's call to the task that drives it.
#[derive(Debug)]
pub(crate) struct Upgrade {
    /// Its id (the app's handle).
    pub(crate) socket: u64,
    /// The subprotocol the app chose.
    pub(crate) protocol: Option<String>,
    /// The instance that accepted it, kept (a swap leaves it serving this socket).
    pub(crate) plugin: Arc<Plugin>,
    /// Where its events run.
    pub(crate) pool: Arc<Pool>,
    /// The apps' messages to send.
    pub(crate) outbound: mpsc::Receiver<Out>,
    /// Close requests (an app's, the daemon's stop, a slow reader).
    pub(crate) close: Arc<CloseSignal>,
    /// Closed when the accepting `handle` returned; `None` once seen.
    pub(crate) handle_done: Option<oneshot::Receiver<()>>,
    /// The code the app's `CLOSE` event gets (1006 unless a close frame said otherwise).
    pub(crate) close_code: u16,
    /// And its data: the close frame's reason.
    pub(crate) close_reason: Bytes,
    stats: Arc<RequestStats>,
    /// The app was given the id: it gets a `CLOSE` event.
    promised: bool,
}

impl Upgrade {
    /// Gives the app one message of this socket on the alias's pool; the receiver gets
    /// what `websocket_event` returned.
    pub(crate) fn event(
        &self,
        kind: WebSocketKind,
        data: Bytes,
    ) -> Result<oneshot::Receiver<Status>, Busy> {
        let (tx, rx) = oneshot::channel();
        let plugin = Arc::clone(&self.plugin);
        let socket = self.socket;
        self.pool.submit(Box::new(move || {
            let _ = tx.send(plugin.websocket_event(socket, kind, &data, 0));
        }))?;
        Ok(rx)
    }
}

impl Drop for Upgrade {
    fn drop(&mut self) {
        sockets::unregister(self.socket);
        self.close.ended();
        self.stats.websockets.fetch_sub(1, Ordering::AcqRel);
        if !self.promised {
            return;
        }
        // The CLOSE event: after `handle` returned, on the pool (or, with every thread
        // busy and the queue full, a thread of its own: it must not be lost).
        let plugin = Arc::clone(&self.plugin);
        let (socket, code) = (self.socket, self.close_code);
        let reason = std::mem::take(&mut self.close_reason);
        let done = self.handle_done.take();
        let job = Arc::new(Mutex::new(Some(move || {
            if let Some(done) = done {
                let _ = done.blocking_recv();
            }
            let _ = plugin.websocket_event(socket, WebSocketKind::CLOSE, &reason, code);
        })));
        let queued = Arc::clone(&job);
        if self.pool.submit(Box::new(move || run_once(&queued))).is_err() {
            let spawned = std::thread::Builder::new()
                .name("websocket close".into())
                .spawn(move || run_once(&job));
            if let Err(e) = spawned {
                log::error!("WebSocket {socket}: cannot deliver its CLOSE event: {e}");
            }
        }
    }
}

/// Runs the job in `slot` unless it ran already.
fn run_once<F: FnOnce()>(slot: &Mutex<Option<F>>) {
    let job = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
    if let Some(f) = job {
        f();
    }
}
