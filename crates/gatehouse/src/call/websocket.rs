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

/// Where a socket's events go: the instance that accepted it, on its alias's pool; or the
/// worker process whose app accepted it (`isolation: process`).
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// An instance in this process.
    Local {
        /// The instance, kept (a swap leaves it serving this socket).
        plugin: Arc<Plugin>,
        /// Where its events run.
        pool: Arc<Pool>,
    },
    /// A worker process.
    Remote(Arc<dyn RemoteEvents>),
}

/// A process that holds sockets' apps: it takes their events.
pub(crate) trait RemoteEvents: Send + Sync + std::fmt::Debug {
    /// Hands one event of `socket` to the app; the receiver gets what it returned (or
    /// fails when the process is gone).
    fn event(
        &self,
        socket: u64,
        kind: WebSocketKind,
        data: Bytes,
        close_code: u16,
    ) -> oneshot::Receiver<Status>;
}

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
        if self.done.is_some() {
            return Err(Status::BAD_STATE);
        }
        if !self.plugin.takes_websockets() {
            return Err(Status::INVALID);
        }
        let target =
            Target::Local { plugin: Arc::clone(self.plugin), pool: Arc::clone(&self.offer.pool) };
        let (socket, done) = accept(self.offer, self.plugin.id(), target, sink, protocol)?;
        self.done = Some(done);
        Ok(socket)
    }
}

/// Accepts the socket `offer` offers for `owner` (the instance, or the worker process, that
/// will send on it), its events going to `target`: hands its [`Upgrade`] to `sink`. The
/// socket's id and the sender to drop when the accepting `handle` has returned; or the
/// status for the app.
pub(crate) fn accept(
    offer: &Offer,
    owner: usize,
    target: Target,
    sink: &mut ReplySink<'_>,
    protocol: &[u8],
) -> Result<(u64, oneshot::Sender<()>), Status> {
    if sink.started() {
        return Err(Status::BAD_STATE);
    }
    let protocol = match std::str::from_utf8(protocol) {
        Ok("") => None,
        Ok(p) if offer.protocols.iter().any(|o| o == p) => Some(p.to_owned()),
        _ => return Err(Status::INVALID),
    };
    let stats = &offer.stats;
    if stats.websockets.fetch_add(1, Ordering::AcqRel) >= offer.max {
        stats.websockets.fetch_sub(1, Ordering::AcqRel);
        crate::logs::per_request!(Warn, "WebSockets", None;
            "{} are open, the alias's max_websockets; answered 503", offer.max);
        return Err(sink.refuse(Answer::busy()));
    }
    let (tx, outbound) = mpsc::channel(sockets::QUEUE);
    let close = Arc::new(CloseSignal::default());
    let out = Outbound { tx, close: Arc::clone(&close), stall_limit: offer.stall_limit };
    let socket = sockets::register(owner, out);
    let (done, handle_done) = oneshot::channel();
    let up = Upgrade {
        socket,
        protocol,
        target,
        outbound,
        close,
        handle_done: Some(handle_done),
        in_flight: None,
        close_code: 1006,
        close_reason: Bytes::new(),
        stats: Arc::clone(stats),
        promised: true,
    };
    match sink.upgrade(up) {
        Ok(()) => Ok((socket, done)),
        Err((status, mut up)) => {
            // The app is told it has no socket: no CLOSE for it.
            up.promised = false;
            Err(status)
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
    /// Where its events go.
    pub(crate) target: Target,
    /// The apps' messages to send.
    pub(crate) outbound: mpsc::Receiver<Out>,
    /// Close requests (an app's, the daemon's stop, a slow reader).
    pub(crate) close: Arc<CloseSignal>,
    /// Closed when the accepting `handle` returned; `None` once seen.
    pub(crate) handle_done: Option<oneshot::Receiver<()>>,
    /// The event the app is handling now, if any (its CLOSE waits for it).
    pub(crate) in_flight: Option<oneshot::Receiver<Status>>,
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
        let (plugin, pool) = match &self.target {
            Target::Local { plugin, pool } => (Arc::clone(plugin), pool),
            Target::Remote(remote) => return Ok(remote.event(self.socket, kind, data, 0)),
        };
        let (tx, rx) = oneshot::channel();
        let socket = self.socket;
        pool.submit(Box::new(move || {
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
        // The CLOSE event: after `handle` returned and the last event did, on the pool (or,
        // with every thread busy and the queue full, a thread of its own: it must not be
        // lost); to a worker process, from a thread of its own when it must wait.
        let (socket, code) = (self.socket, self.close_code);
        let reason = std::mem::take(&mut self.close_reason);
        let (done, last) = (self.handle_done.take(), self.in_flight.take());
        let must_wait = done.is_some() || last.is_some();
        let wait = move || {
            if let Some(done) = done {
                let _ = done.blocking_recv();
            }
            if let Some(last) = last {
                let _ = last.blocking_recv();
            }
        };
        let pool = match &self.target {
            Target::Local { pool, .. } => Some(Arc::clone(pool)),
            Target::Remote(_) => None,
        };
        let target = self.target.clone();
        let job = Arc::new(Mutex::new(Some(move || {
            wait();
            match target {
                Target::Local { plugin, .. } => {
                    let _ = plugin.websocket_event(socket, WebSocketKind::CLOSE, &reason, code);
                }
                Target::Remote(remote) => {
                    drop(remote.event(socket, WebSocketKind::CLOSE, reason, code));
                }
            }
        })));
        let queued = Arc::clone(&job);
        let on_pool = match pool {
            Some(pool) => pool.submit(Box::new(move || run_once(&queued))).is_ok(),
            None if !must_wait => {
                run_once(&job);
                return;
            }
            None => false,
        };
        if !on_pool {
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
