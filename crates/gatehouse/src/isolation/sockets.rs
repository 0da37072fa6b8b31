//! What the supervisor ([`super::group`]) and the relay ([`super::relay`]) share: a running
//! [`Worker`], a request socket lent to one request ([`Conn`], its [`Sock`]), why none
//! could be had ([`NoConn`]) and how a relayed request ended for its socket ([`Outcome`]).

use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::ThreadId;
use std::time::Instant;

use tokio::io::unix::AsyncFd;

use super::proto::Kind;

/// One running worker process.
#[derive(Debug)]
pub(crate) struct Worker {
    /// Its process id.
    pub pid: u32,
    pub(super) started: Instant,
    /// Writes to its control socket (Init, Refresh, Stop).
    pub(super) control: Mutex<UnixStream>,
    /// The daemon's ends of its request sockets, shut down when it dies so that no
    /// relay waits on a dead worker (even if a stray descriptor keeps the socket open).
    pub(super) streams: Vec<UnixStream>,
    /// Requests it has been given.
    pub(super) served: AtomicU64,
    /// Requests it is serving now, by id (for the report when it dies).
    pub(super) in_flight: Mutex<Vec<u64>>,
    /// It gets no new requests and stops when the last one is done.
    pub(super) retiring: AtomicBool,
    /// Reaped or about to be: never signal its pid again.
    pub(super) dead: AtomicBool,
    /// Why the daemon killed it, if it did.
    pub(super) killed: Mutex<Option<String>>,
    /// Its memory could not be read (said once).
    pub(super) unmeasured: AtomicBool,
    /// Sockets handed to requests now (changed under the group's lock).
    pub(super) busy: std::sync::atomic::AtomicUsize,
    /// The plugins it last reported it has loaded (status page).
    pub(super) plugins: Mutex<Vec<serde_json::Value>>,
    /// The WebSockets its apps accepted.
    pub(super) ws: super::websocket::WorkerSockets,
}

/// A worker as the status page shows it.
#[derive(Debug, Clone)]
pub(crate) struct WorkerStatus {
    /// Its process id.
    pub pid: u32,
    /// Requests it has been given.
    pub requests: u64,
    /// The plugins it has loaded, as it last reported them.
    pub plugins: Vec<serde_json::Value>,
}

impl Worker {
    /// The ids of the requests it serves now.
    pub(crate) fn in_flight_ids(&self) -> MutexGuard<'_, Vec<u64>> {
        self.in_flight.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Writes one frame of `kind` to its control socket; false when that failed.
    pub(super) fn send_control_frame(&self, kind: Kind, fill: impl FnOnce(&mut Vec<u8>)) -> bool {
        use std::io::Write as _;
        let mut frame = Vec::new();
        super::proto::push_frame(&mut frame, kind, fill);
        let mut control = self.control.lock().unwrap_or_else(PoisonError::into_inner);
        control.write_all(&frame).is_ok()
    }

    pub(super) fn send_control(&self, kind: Kind) {
        use std::io::Write as _;
        let frame = [0, 0, 0, 0, kind as u8];
        let mut control = self.control.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = control.write_all(&frame);
    }

    /// Kills it with SIGKILL, unless it is already dead; `why` goes into the report.
    pub(super) fn kill(&self, why: String) {
        if self.dead.load(Ordering::Acquire) {
            return;
        }
        // Before the signal: the slot thread that reaps it reports why.
        *self.killed.lock().unwrap_or_else(PoisonError::into_inner) = Some(why.clone());
        if let Some(pid) = rustix::process::Pid::from_raw(self.pid as i32) {
            match rustix::process::kill_process(pid, rustix::process::Signal::KILL) {
                Ok(()) | Err(rustix::io::Errno::SRCH) => {}
                Err(e) => log::error!(
                    "cannot kill worker {} ({why}): {e}; it runs on (hint: a daemon that \
                     starts workers as another user needs CAP_KILL: docs/isolation.md)",
                    self.pid
                ),
            }
        }
    }
}

/// A request socket of a worker, lent to one request at a time.
#[derive(Debug)]
pub(crate) struct Conn {
    /// The worker it leads to.
    pub worker: Arc<Worker>,
    /// The socket (non-blocking; registered with the event loop of the HTTP worker that
    /// used it last). `None` once a request lost it.
    pub stream: Option<Sock>,
    /// The read buffer, kept across requests.
    pub rbuf: Vec<u8>,
    /// The frames being written, kept across requests.
    pub out: Vec<u8>,
}

/// Why no socket could be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NoConn {
    /// No worker runs and none is starting: every slot waits after a failure (the reason).
    Down(String),
    /// None became free before the deadline.
    Timeout,
    /// Too many requests wait already (the alias's `queue`).
    Busy {
        /// How many.
        waiting: usize,
    },
    /// The group is stopping.
    Stopping,
}

/// How a relayed request ended, for the socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// By the framing's rules: the socket serves the next request.
    Done,
    /// The socket ended: the worker died or was killed.
    Died,
    /// The worker sent what the framing does not allow: it is recycled.
    Broken,
    /// The relay was dropped midway (its HTTP worker stopped): the worker may still be
    /// running the request, so it is killed, not stopped (a stop would run its apps'
    /// `shutdown` beside that request).
    Abandoned,
}

/// A worker's request socket as a `Conn` keeps it between requests.
///
/// It stays registered with the event loop of the HTTP worker thread that used it last, so
/// a request on the same thread (every request, with one HTTP worker) adds and removes
/// nothing from an epoll set; a request on another thread moves it.
///
/// It is registered for reading only. A Unix stream socket signals "writable" to its
/// writer each time the reader consumes data, so a registration for writing too would wake
/// the HTTP worker for nothing on every request (as the worker process reads it), at the
/// cost of two process switches on a shared core. A write that would block waits on a
/// second registration of a duplicate of the socket, for that write only.
#[derive(Debug)]
pub(crate) enum Sock {
    /// Registered with no event loop (new).
    Plain(UnixStream),
    /// Registered (for reading) with the event loop of this thread.
    Registered(AsyncFd<UnixStream>, ThreadId),
}
