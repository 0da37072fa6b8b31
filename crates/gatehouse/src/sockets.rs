//! The open WebSockets of this process, by id: what an app's `websocket_send` and
//! `websocket_close` reach, from any of its threads, at any time.
//!
//! Each socket is driven by one task on the HTTP worker that accepted its connection
//! (`http::websocket`); here it is only a bounded queue of outbound messages and a close
//! request. A socket belongs to the plugin instance that accepted it (its *owner*, the
//! instance's number): another instance's send reaches nothing. Ids are unique for the
//! process's life and never reused, so a send on a closed socket is refused, never
//! delivered to a newer one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use gatehouse_abi::Status;
use tokio::sync::{Notify, mpsc};

/// Messages that may wait per socket between the apps and the client.
pub(crate) const QUEUE: usize = 16;

/// The longest close reason RFC 6455 allows (a control frame's 125 bytes, less the code).
pub(crate) const MAX_REASON: usize = 123;

/// A message an app sends.
#[derive(Debug)]
pub(crate) enum Out {
    /// A text message (valid UTF-8).
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
}

/// How a socket is asked to close, by an app, by the daemon's stop, or by a slow reader.
#[derive(Debug, Default)]
pub(crate) struct CloseSignal {
    request: Mutex<Option<(u16, String)>>,
    /// Set once a close was requested (or the socket ended): sends are refused.
    closing: AtomicBool,
    notify: Notify,
}

impl CloseSignal {
    /// Asks the socket to close with `code` and `reason` (the first request wins).
    pub(crate) fn request(&self, code: u16, reason: &str) {
        let mut r = self.request.lock().unwrap_or_else(PoisonError::into_inner);
        if r.is_none() {
            *r = Some((code, reason.to_owned()));
        }
        drop(r);
        self.closing.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// Waits for a close request; its code and reason.
    pub(crate) async fn requested(&self) -> (u16, String) {
        loop {
            if let Some(r) = self.request.lock().unwrap_or_else(PoisonError::into_inner).take() {
                return r;
            }
            self.notify.notified().await;
        }
    }

    /// Whether the socket is closing (sends are refused).
    pub(crate) fn closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }

    /// Marks the socket as closing without a request (it ended).
    pub(crate) fn ended(&self) {
        self.closing.store(true, Ordering::Release);
    }
}

/// The sending side of one socket.
#[derive(Debug, Clone)]
pub(crate) struct Outbound {
    /// Its messages, to the task that drives it.
    pub(crate) tx: mpsc::Sender<Out>,
    /// Its close request.
    pub(crate) close: Arc<CloseSignal>,
    /// How long a send waits for room in a full queue before the socket is closed (1008).
    pub(crate) stall_limit: Duration,
}

/// Where a worker process's sockets are: in the daemon, which drives them. A worker's
/// sends and closes become frames to it (`worker.rs` installs this at start).
pub(crate) trait Forward: Send + Sync {
    /// Forwards a send; false when the daemon is gone.
    fn send(&self, id: u64, msg: &Out) -> bool;
    /// Forwards a close.
    fn close(&self, id: u64, code: u16, reason: &str) -> bool;
}

#[derive(Debug)]
enum Route {
    /// Driven in this process.
    Local(Outbound),
    /// Driven by the daemon (in a worker process).
    Forwarded,
}

#[derive(Debug)]
struct Entry {
    owner: usize,
    route: Route,
}

static OPEN: LazyLock<RwLock<HashMap<u64, Entry>>> = LazyLock::new(RwLock::default);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static FORWARD: std::sync::OnceLock<Box<dyn Forward>> = std::sync::OnceLock::new();

/// Registers a new socket of instance `owner`; its id.
pub(crate) fn register(owner: usize, out: Outbound) -> u64 {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let entry = Entry { owner, route: Route::Local(out) };
    OPEN.write().unwrap_or_else(PoisonError::into_inner).insert(id, entry);
    id
}

/// In a worker process: where its sockets' sends go (once, at start).
pub(crate) fn set_forward(forward: Box<dyn Forward>) {
    let _ = FORWARD.set(forward);
}

/// In a worker process: registers socket `id` (the daemon's) of instance `owner`.
pub(crate) fn register_forwarded(owner: usize, id: u64) {
    let entry = Entry { owner, route: Route::Forwarded };
    OPEN.write().unwrap_or_else(PoisonError::into_inner).insert(id, entry);
}

/// Forgets a socket that ended: sends on it are refused from now on.
pub(crate) fn unregister(id: u64) {
    OPEN.write().unwrap_or_else(PoisonError::into_inner).remove(&id);
}

/// Socket `id` of `owner`: driven here (`Some(Some)`), or by the daemon (`Some(None)`).
fn outbound(owner: usize, id: u64) -> Option<Option<Outbound>> {
    let open = OPEN.read().unwrap_or_else(PoisonError::into_inner);
    open.get(&id).filter(|e| e.owner == owner).map(|e| match &e.route {
        Route::Local(out) => Some(out.clone()),
        Route::Forwarded => None,
    })
}

fn forwarded(ok: impl FnOnce(&dyn Forward) -> bool) -> Status {
    match FORWARD.get() {
        Some(f) if ok(&**f) => Status::OK,
        _ => Status::DISCONNECTED,
    }
}

/// An app's send on socket `id`: queued (`OK`), or `DISCONNECTED` when the socket is not
/// open (or not `owner`'s). While the queue is full it waits, at most the socket's stall
/// limit; then the client is taken for one that does not read: the socket is closed with
/// 1008, and the send fails.
pub(crate) fn send(owner: usize, id: u64, msg: Out) -> Status {
    let out = match outbound(owner, id) {
        None => return Status::DISCONNECTED,
        Some(None) => return forwarded(|f| f.send(id, &msg)),
        Some(Some(out)) => out,
    };
    if out.close.closing() {
        return Status::DISCONNECTED;
    }
    let deadline = Instant::now() + out.stall_limit;
    let mut msg = msg;
    let mut pause = Duration::from_micros(200);
    loop {
        match out.tx.try_send(msg) {
            Ok(()) => return Status::OK,
            Err(mpsc::error::TrySendError::Closed(_)) => return Status::DISCONNECTED,
            Err(mpsc::error::TrySendError::Full(back)) => msg = back,
        }
        if out.close.closing() {
            return Status::DISCONNECTED;
        }
        let now = Instant::now();
        if now >= deadline {
            log::warn!(
                "WebSocket {id}: the client read none of its last {QUEUE} messages for {:?}; \
                 closing it (1008)",
                out.stall_limit
            );
            out.close.request(1008, "the client does not read its messages");
            return Status::DISCONNECTED;
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// An app's close of socket `id`.
pub(crate) fn close(owner: usize, id: u64, code: u16, reason: &str) -> Status {
    let out = match outbound(owner, id) {
        None => return Status::DISCONNECTED,
        Some(None) => return forwarded(|f| f.close(id, code, reason)),
        Some(Some(out)) => out,
    };
    if out.close.closing() {
        return Status::DISCONNECTED;
    }
    out.close.request(code, reason);
    Status::OK
}

/// Asks every open socket of `owner` (every one: `None`) to close; how many there were.
pub(crate) fn close_all(owner: Option<usize>, code: u16, reason: &str) -> usize {
    let open = OPEN.read().unwrap_or_else(PoisonError::into_inner);
    let mut n = 0;
    for e in open.values().filter(|e| owner.is_none_or(|o| o == e.owner)) {
        if let Route::Local(out) = &e.route {
            out.close.request(code, reason);
            n += 1;
        }
    }
    n
}

/// Whether `code` is one an endpoint may send (RFC 6455 §7.4: 1000..=1003, 1007..=1011,
/// or an application's 3000..=4999).
pub(crate) fn app_close_code(code: u32) -> Option<u16> {
    match code {
        1000..=1003 | 1007..=1011 | 3000..=4999 => u16::try_from(code).ok(),
        _ => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn socket(owner: usize, stall: Duration) -> (u64, mpsc::Receiver<Out>, Arc<CloseSignal>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let close = Arc::new(CloseSignal::default());
        let id = register(owner, Outbound { tx, close: Arc::clone(&close), stall_limit: stall });
        (id, rx, close)
    }

    #[test]
    fn only_the_owner_reaches_an_open_socket() {
        let (id, mut rx, _) = socket(7, Duration::from_secs(1));
        assert_eq!(send(7, id, Out::Text(Bytes::from_static(b"hi"))), Status::OK);
        assert_eq!(send(8, id, Out::Text(Bytes::from_static(b"no"))), Status::DISCONNECTED);
        assert!(matches!(rx.try_recv(), Ok(Out::Text(b)) if b == "hi"));
        assert!(rx.try_recv().is_err());
        unregister(id);
        assert_eq!(send(7, id, Out::Binary(Bytes::new())), Status::DISCONNECTED);
    }

    #[test]
    fn a_full_queue_waits_then_closes_with_1008() {
        let (id, _rx, close) = socket(1, Duration::from_millis(50));
        for _ in 0..QUEUE {
            assert_eq!(send(1, id, Out::Binary(Bytes::new())), Status::OK);
        }
        assert_eq!(send(1, id, Out::Binary(Bytes::new())), Status::DISCONNECTED);
        assert!(close.closing());
        assert_eq!(close.request.lock().unwrap().as_ref().map(|r| r.0), Some(1008));
        assert_eq!(send(1, id, Out::Binary(Bytes::new())), Status::DISCONNECTED);
        assert_eq!(self::close(1, id, 1000, ""), Status::DISCONNECTED);
        unregister(id);
    }

    #[test]
    fn close_codes_an_app_may_use() {
        for (code, ok) in [(1000, true), (1001, true), (1005, false), (1011, true), (2999, false)] {
            assert_eq!(app_close_code(code).is_some(), ok, "{code}");
        }
        assert_eq!(app_close_code(4000), Some(4000));
        assert_eq!(app_close_code(5000), None);
    }
}
