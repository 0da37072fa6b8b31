//! An app's reply, the same for every caller: what one call needs ([`Call`]), where its
//! body comes from ([`BodySource`]), and the reply state machine ([`ReplySink`]) that the
//! ABI callbacks (`call::abi`) and the worker boundary (`isolation::boundary`) drive.
//!
//! A reply goes out in one of two shapes. The head and the first write are held back; if
//! `handle` returns with nothing more written, the whole response goes as one
//! [`Reply::Complete`] with its exact length (the common case, one hand-off). A second write
//! or a `flush` turns it into a [`Reply::Stream`]: the head goes at once and every later write
//! follows through a bounded channel, so the app waits while the client is slower than it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::web::Bytes;
use gatehouse_abi::Status;
use tokio::sync::{mpsc, oneshot};

use super::websocket::Upgrade;
use crate::logs::debug::DebugLog;
use crate::logs::per_request;
use crate::request::answer::Answer;
use crate::request::environ::PairBuf;
use crate::request::input::{BodyError, Input};

/// Chunks of a streamed response that may wait between the app and the client.
const RESPONSE_CHUNKS_IN_FLIGHT: usize = 16;

/// Everything one app call needs, owned by the caller for the duration of the call.
#[derive(Debug)]
pub struct Call<'a> {
    /// CGI/WSGI variables.
    pub vars: &'a PairBuf,
    /// Parameters and uploads.
    pub input: &'a Input,
    /// The app's debug log.
    pub debug: &'a DebugLog,
    /// Whether develop mode is on for the alias.
    pub develop_mode: bool,
    /// The app's name, for the error log.
    pub app: &'a str,
    /// The request's id, for the error log.
    pub request_id: u64,
}

/// A response head, validated: hop-by-hop headers and Content-Length removed (the length
/// the app declared is kept in `declared_len`).
#[derive(Debug)]
pub struct Head {
    /// HTTP status.
    pub status: StatusCode,
    /// Headers in the order the app gave them.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The Content-Length the app declared, if any.
    pub declared_len: Option<u64>,
}

/// Headers an app may not set: the connection is the daemon's business.
pub(crate) fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-connection"
            | "te"
            | "trailer"
    )
}

/// Whether a response header from an app (or a worker process) may reach the client: not
/// hop-by-hop, and not the body's framing (`Content-Length` is the head's `declared_len`).
pub(crate) fn app_may_set(name: &HeaderName) -> bool {
    !hop_by_hop(name) && name != actix_web::http::header::CONTENT_LENGTH
}

/// A chunk of a streamed response; an error aborts the response (the client sees a cut
/// connection, never a truncated body that looks whole).
pub(crate) type Chunk = Result<Bytes, std::io::Error>;

/// What an app call produced, sent to the HTTP side as soon as it is known.
#[derive(Debug)]
pub enum Reply {
    /// The whole response: `handle` returned after at most one write.
    Complete {
        /// The head.
        head: Head,
        /// The whole body.
        body: Bytes,
    },
    /// The head and the first chunk; the rest follows on `rest`.
    Stream {
        /// The head.
        head: Head,
        /// What was written before streaming began.
        first: Bytes,
        /// Later chunks; closed when `handle` returns.
        rest: mpsc::Receiver<Chunk>,
        /// Set when the app side gave up on a client that took nothing for the stall
        /// limit: the channel then ends without the error chunk (it was full), and the
        /// body must end cut, not clean.
        stalled: Arc<AtomicBool>,
    },
    /// The app failed before starting a response (the client gets 500).
    Failed(CallError),
    /// The daemon answers without the app (a plugin that is missing or does not load, a
    /// worker process that died or is not running).
    Refused(Answer),
    /// The app accepted a WebSocket handshake: the daemon answers 101 and drives the socket.
    #[allow(private_interfaces)]
    Upgrade(Box<Upgrade>),
}

/// Why a call produced no usable reply (the client gets 500).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// `handle` returned a failure status (a panic in a Rust app, an error in a C one).
    #[error("the app failed (handle returned status {0})")]
    Failed(u32),
    /// `handle` returned success without starting a response.
    #[error("the app returned without starting a response")]
    NoResponse,
}

/// Where the reply goes, which also decides how it may leave the app's thread.
enum Tx {
    /// To the HTTP side over a channel: the app runs on a pool thread, and a reply of more
    /// than one write streams (the thread may wait on a slow client).
    Channel(oneshot::Sender<Reply>),
    /// Back to the caller of [`invoke_inline`] (no channel, no allocation): the app runs on
    /// an HTTP worker, which must never wait, so every write is kept and the whole reply is
    /// returned when `handle` does.
    Direct,
}

impl Tx {
    /// Sends `reply`, or keeps it in `direct`. Fails when the receiver is gone.
    fn send(self, reply: Reply, direct: &mut Option<Reply>) -> Result<(), Reply> {
        match self {
            Tx::Channel(tx) => tx.send(reply),
            Tx::Direct => {
                *direct = Some(reply);
                Ok(())
            }
        }
    }
}

/// Where the response stands.
enum ReplyState {
    /// `start_response` not called yet.
    NotStarted(Tx),
    /// Head (and maybe a first write) held back.
    Holding { head: Head, body: Option<Vec<u8>>, tx: Tx },
    /// Head sent; writes go straight to the client. `left` counts down a declared length;
    /// `stalled` is [`Reply::Stream`]'s.
    Streaming { chunks: mpsc::Sender<Chunk>, left: Option<u64>, stalled: Arc<AtomicBool> },
    /// A WebSocket was accepted: its 101 goes when `handle` returns.
    Upgraded { up: Box<Upgrade>, tx: Tx },
    /// The client is gone, or the reply was sent.
    Done,
}

/// The reply side of one app call: the head and first write held back, then a stream.
/// The in-process callbacks drive it, and so does the relay of a worker process's frames
/// (`isolation::relay`), so a reply means the same in both modes.
pub(crate) struct ReplySink<'a> {
    app: &'a str,
    request_id: u64,
    /// The request is HEAD: a streamed reply short of its declared length is not cut.
    head_request: bool,
    /// How long a streamed write may wait for the client to take earlier data.
    stall_limit: Duration,
    reply: ReplyState,
    /// The reply, for [`Tx::Direct`].
    direct: Option<Reply>,
    /// For [`Tx::Direct`] under `dispatch: auto`: a write after this instant is refused and
    /// the reply is a 500 (see [`ReplySink::cut_at`]).
    cut_at: Option<std::time::Instant>,
}

impl std::fmt::Debug for ReplySink<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplySink").field("app", &self.app).finish_non_exhaustive()
    }
}

impl<'a> ReplySink<'a> {
    /// A reply sent to `tx` as soon as it is known (for app `app`, request `request_id`,
    /// named in the error log).
    pub(crate) fn channel(app: &'a str, request_id: u64, tx: oneshot::Sender<Reply>) -> Self {
        ReplySink {
            app,
            request_id,
            head_request: false,
            stall_limit: DEFAULT_STALL_LIMIT,
            reply: ReplyState::NotStarted(Tx::Channel(tx)),
            direct: None,
            cut_at: None,
        }
    }

    pub(crate) fn direct(app: &'a str, request_id: u64) -> Self {
        ReplySink {
            app,
            request_id,
            head_request: false,
            stall_limit: DEFAULT_STALL_LIMIT,
            reply: ReplyState::NotStarted(Tx::Direct),
            direct: None,
            cut_at: None,
        }
    }

    /// A reply kept whole on an HTTP worker that is still being written at `at` is cut: the
    /// write fails as if the client had left (so the app stops), the client gets 500, and
    /// the error log says why. Only a stream does that (a call that keeps writing on the
    /// worker, every other connection of which waits): it belongs on the alias's threads.
    pub(crate) fn cut_at(mut self, at: Option<std::time::Instant>) -> Self {
        self.cut_at = at;
        self
    }

    /// Whether a write now comes past [`ReplySink::cut_at`]; if so, the reply is the 500.
    fn past_cut(&mut self) -> bool {
        let Some(at) = self.cut_at else { return false };
        let now = std::time::Instant::now();
        if now < at {
            return false;
        }
        self.cut_at = None;
        let tx = match std::mem::replace(&mut self.reply, ReplyState::Done) {
            ReplyState::NotStarted(tx) | ReplyState::Holding { tx, .. } => tx,
            other => {
                self.reply = other;
                return false;
            }
        };
        per_request!(Warn, format_args!("app {}", self.app), self.request_id;
            "promises its calls never block, but was still writing its reply on an HTTP worker \
             {:.1} s after the call started: the reply is cut (500); a streamed reply needs \
             the alias's threads (hint: drop the promise, App::NEVER_BLOCKS or \
             gh_AppFlags_NEVER_BLOCKS, or set `dispatch: pool` on the alias)",
            (now - at + super::inline::CUT_AFTER).as_secs_f64());
        let answer = Answer::new(500, "the app's reply was cut; the error log says why");
        let _ = tx.send(Reply::Refused(answer), &mut self.direct);
        true
    }

    /// Marks the reply as one to a HEAD request when `vars` say so.
    pub(crate) fn for_request(mut self, vars: &PairBuf) -> Self {
        self.head_request = vars.get(b"REQUEST_METHOD") == Some(&b"HEAD"[..]);
        self
    }

    /// How long a streamed write may wait for a client that takes nothing (the alias's
    /// `timeout`); past it the write fails as if the client had left, and the connection is
    /// cut. Without a limit, a client that stops reading holds the app's thread for ever.
    pub(crate) fn stall_limit(mut self, limit: Duration) -> Self {
        self.stall_limit = limit;
        self
    }

    /// `start_response`: `head` is validated only if no response was started.
    pub(crate) fn start(&mut self, head: impl FnOnce() -> Result<Head, Status>) -> Status {
        match &self.reply {
            ReplyState::NotStarted(_) => {}
            ReplyState::Done | ReplyState::Upgraded { .. } => return Status::DISCONNECTED,
            _ => return Status::BAD_STATE,
        }
        let head = match head() {
            Ok(h) => h,
            Err(e) => return e,
        };
        let ReplyState::NotStarted(tx) = std::mem::replace(&mut self.reply, ReplyState::Done)
        else {
            return Status::BAD_STATE;
        };
        self.reply = ReplyState::Holding { head, body: None, tx };
        Status::OK
    }

    /// While the reply has not been handed over (not started, or its head held back):
    /// whether the side waiting for it is gone (the client left and its request was
    /// dropped). `None` once it has been handed over.
    pub(crate) fn waiter_gone(&self) -> Option<bool> {
        match &self.reply {
            ReplyState::NotStarted(tx)
            | ReplyState::Holding { tx, .. }
            | ReplyState::Upgraded { tx, .. } => Some(match tx {
                Tx::Channel(tx) => tx.is_closed(),
                Tx::Direct => false,
            }),
            ReplyState::Streaming { .. } | ReplyState::Done => None,
        }
    }

    /// How long a body read may wait: once the reply streams, its stream (not the request
    /// handler) drives the body pump, and a client that reads nothing stops both; so a read
    /// then waits at most the stall limit. `None` before: the handler drives the pump,
    /// which keeps its own deadlines.
    pub(crate) fn body_wait(&self) -> Option<Duration> {
        matches!(self.reply, ReplyState::Streaming { .. }).then_some(self.stall_limit)
    }

    /// What a body read that waited out [`Self::body_wait`] returns (and logs): the client
    /// neither sends nor reads.
    pub(crate) fn body_stalled<T>(&self) -> Result<T, BodyError> {
        per_request!(Warn, format_args!("app {}", self.app), self.request_id;
            "the reply streams, and the client sent none of the rest of the body (nor read the \
             reply) for {:?}: the app's body read failed",
            self.stall_limit);
        Err(BodyError::TimedOut)
    }

    /// `websocket_accept`: `up` becomes the reply, handed over when `handle` returns (so
    /// that the client sees its 101 once the app is ready for its messages). On a failure,
    /// the status for the app and `up` back.
    pub(crate) fn upgrade(&mut self, up: Upgrade) -> Result<(), (Status, Box<Upgrade>)> {
        let up = Box::new(up);
        let status = match &self.reply {
            ReplyState::NotStarted(Tx::Channel(tx)) if !tx.is_closed() => Status::OK,
            ReplyState::NotStarted(Tx::Channel(_)) | ReplyState::Done => Status::DISCONNECTED,
            _ => Status::BAD_STATE,
        };
        if status != Status::OK {
            return Err((status, up));
        }
        if let ReplyState::NotStarted(tx) = std::mem::replace(&mut self.reply, ReplyState::Done) {
            self.reply = ReplyState::Upgraded { up, tx };
        }
        Ok(())
    }

    /// The daemon answers `answer` instead of the app (nothing may have been started);
    /// the app's later calls find the reply done. Returns `DISCONNECTED` for the app.
    pub(crate) fn refuse(&mut self, answer: Answer) -> Status {
        if let ReplyState::NotStarted(_) = &self.reply
            && let ReplyState::NotStarted(tx) = std::mem::replace(&mut self.reply, ReplyState::Done)
        {
            let _ = tx.send(Reply::Refused(answer), &mut self.direct);
        }
        Status::DISCONNECTED
    }

    /// Whether a response was started (by `start_response`).
    pub(crate) fn started(&self) -> bool {
        !matches!(self.reply, ReplyState::NotStarted(_))
    }

    /// `write`.
    pub(crate) fn write(&mut self, data: &[u8]) -> Status {
        if self.past_cut() {
            return Status::DISCONNECTED;
        }
        match &mut self.reply {
            ReplyState::NotStarted(_) => Status::BAD_STATE,
            ReplyState::Done | ReplyState::Upgraded { .. } => Status::DISCONNECTED,
            ReplyState::Holding { body: body @ None, .. } => {
                *body = Some(data.to_vec());
                Status::OK
            }
            ReplyState::Holding { body: Some(body), tx: Tx::Direct, .. } => {
                body.extend_from_slice(data);
                Status::OK
            }
            ReplyState::Holding { .. } => match self.start_streaming() {
                Status::OK => self.send_chunk(data),
                failed => failed,
            },
            ReplyState::Streaming { .. } => self.send_chunk(data),
        }
    }

    /// `flush`: the held head (and first write) go now, and later writes stream.
    pub(crate) fn flush(&mut self) -> Status {
        if self.past_cut() {
            return Status::DISCONNECTED;
        }
        match &self.reply {
            ReplyState::NotStarted(_) => Status::BAD_STATE,
            ReplyState::Done | ReplyState::Upgraded { .. } => Status::DISCONNECTED,
            ReplyState::Holding { tx: Tx::Direct, .. } => Status::OK,
            ReplyState::Holding { .. } => self.start_streaming(),
            ReplyState::Streaming { .. } => Status::OK,
        }
    }

    /// Sends the held head and first write as a stream head, switching to streaming.
    fn start_streaming(&mut self) -> Status {
        let ReplyState::Holding { head, body, tx } =
            std::mem::replace(&mut self.reply, ReplyState::Done)
        else {
            return Status::BAD_STATE;
        };
        let Tx::Channel(tx) = tx else {
            // A direct reply is never streamed.
            return Status::BAD_STATE;
        };
        let (chunks, rest) = mpsc::channel(RESPONSE_CHUNKS_IN_FLIGHT);
        let mut first = Bytes::from(body.unwrap_or_default());
        if let Some(n) = head.declared_len
            && first.len() as u64 > n
        {
            // As for later writes: never past the declared length (over HTTP/2 the client
            // would fail the stream).
            per_request!(Error, format_args!("app {}", self.app), self.request_id;
                "wrote more than its Content-Length; the excess was dropped");
            first.truncate(usize::try_from(n).unwrap_or(first.len()));
        }
        let left = head.declared_len.map(|n| n.saturating_sub(first.len() as u64));
        let stalled = Arc::new(AtomicBool::new(false));
        if tx.send(Reply::Stream { head, first, rest, stalled: Arc::clone(&stalled) }).is_err() {
            return Status::DISCONNECTED;
        }
        self.reply = ReplyState::Streaming { chunks, left, stalled };
        Status::OK
    }

    /// Counts a streamed write against the declared length: the part to send and the
    /// status the write returns (the excess past Content-Length is dropped).
    fn account<'d>(&mut self, data: &'d [u8]) -> (&'d [u8], Status) {
        let ReplyState::Streaming { left: Some(left), .. } = &mut self.reply else {
            return (data, Status::OK);
        };
        let mut data = data;
        let mut status = Status::OK;
        if data.len() as u64 > *left {
            per_request!(Error, format_args!("app {}", self.app), self.request_id;
                "wrote more than its Content-Length; the excess was dropped");
            data = &data[..usize::try_from(*left).unwrap_or(data.len())];
            status = Status::INVALID;
        }
        *left -= data.len() as u64;
        (data, status)
    }

    fn send_chunk(&mut self, data: &[u8]) -> Status {
        if !matches!(self.reply, ReplyState::Streaming { .. }) {
            return Status::BAD_STATE;
        }
        let (data, status) = self.account(data);
        let ReplyState::Streaming { chunks, .. } = &self.reply else { return Status::BAD_STATE };
        if data.is_empty() {
            return status;
        }
        let data = Bytes::copy_from_slice(data);
        let mut sent = Sent::Yes;
        for piece in pieces(&data) {
            sent = send_within(chunks, Ok(piece), self.stall_limit);
            if sent != Sent::Yes {
                break;
            }
        }
        self.after_send(sent, status)
    }

    /// What a streamed write returns once its chunk was sent, refused (the client left),
    /// or given up on (the client took nothing for the stall limit).
    fn after_send(&mut self, sent: Sent, status: Status) -> Status {
        match sent {
            Sent::Yes => status,
            Sent::Closed => {
                self.reply = ReplyState::Done;
                Status::DISCONNECTED
            }
            Sent::Stalled => {
                self.give_up();
                Status::DISCONNECTED
            }
        }
    }

    /// Ends a stream whose client took nothing for the stall limit: the body ends cut.
    fn give_up(&mut self) {
        if let ReplyState::Streaming { stalled, .. } = &self.reply {
            stalled.store(true, Ordering::Release);
            per_request!(Warn, format_args!("app {}", self.app), self.request_id;
                "the client took none of the reply for {:?}; the app's write failed as if the \
                 client had left, and the connection is cut",
                self.stall_limit);
        }
        self.reply = ReplyState::Done;
    }

    /// [`ReplySink::write`] for a caller on the async side (the relay of a worker's frames):
    /// it waits for the client asynchronously instead of blocking its thread.
    pub(crate) async fn write_async(&mut self, data: &[u8]) -> Status {
        match &self.reply {
            ReplyState::Streaming { .. } => {}
            ReplyState::Holding { body: Some(_), tx: Tx::Channel(_), .. } => {
                let started = self.start_streaming();
                if started != Status::OK {
                    return started;
                }
            }
            // Holding the first write, or not started, or done: nothing waits.
            _ => return self.write(data),
        }
        let (data, status) = self.account(data);
        let ReplyState::Streaming { chunks, .. } = &self.reply else { return Status::BAD_STATE };
        if data.is_empty() {
            return status;
        }
        let data = Bytes::copy_from_slice(data);
        let mut sent = Sent::Yes;
        for piece in pieces(&data) {
            sent = send_async_within(chunks, Ok(piece), self.stall_limit).await;
            if sent != Sent::Yes {
                break;
            }
        }
        self.after_send(sent, status)
    }

    /// [`ReplySink::abort`] for a caller on the async side.
    pub(crate) async fn abort_async(mut self, answer: Answer) {
        match &self.reply {
            ReplyState::Streaming { chunks, .. } => {
                let cut = Err(std::io::Error::other(answer.message.into_owned()));
                if send_async_within(chunks, cut, self.stall_limit).await == Sent::Stalled {
                    self.give_up();
                }
            }
            _ => self.abort(answer),
        }
    }

    /// [`ReplySink::finish`] for a caller on the async side (never a direct reply).
    pub(crate) async fn finish_async(mut self, status: Status) {
        if let ReplyState::Streaming { chunks, left, .. } = &self.reply {
            let cut = if status != Status::OK {
                per_request!(Error, format_args!("app {}", self.app), self.request_id;
                    "{} after the response started: the connection is cut",
                    CallError::Failed(status.0));
                Some("the app failed after the response started".to_owned())
            } else {
                // (A HEAD's body is not sent: it may declare a length it does not write.)
                left.filter(|&n| n > 0 && !self.head_request).map(|n| {
                    per_request!(Error, format_args!("app {}", self.app), self.request_id;
                        "ended {n} bytes short of its Content-Length: the connection is cut");
                    format!("the app ended {n} bytes short of its Content-Length")
                })
            };
            if let Some(why) = cut {
                let cut = Err(std::io::Error::other(why));
                if send_async_within(chunks, cut, self.stall_limit).await == Sent::Stalled {
                    self.give_up();
                }
            }
            self.reply = ReplyState::Done;
            return;
        }
        let _ = self.finish(status);
    }

    /// The call ended without `handle` returning: its worker process died or was killed.
    /// A reply not started yet becomes `answer`; a streaming one is cut.
    pub(crate) fn abort(mut self, answer: Answer) {
        let mut direct = None;
        match std::mem::replace(&mut self.reply, ReplyState::Done) {
            ReplyState::NotStarted(tx)
            | ReplyState::Holding { tx, .. }
            | ReplyState::Upgraded { tx, .. } => {
                // (An accepted socket is dropped: it closes, and its app gets its CLOSE.)
                let _ = tx.send(Reply::Refused(answer), &mut direct);
            }
            streaming @ ReplyState::Streaming { .. } => {
                self.reply = streaming;
                self.cut(std::io::Error::other(answer.message.into_owned()));
            }
            ReplyState::Done => {}
        }
    }

    /// Cuts a streaming reply with `error` (given up on past the stall limit if the client
    /// takes nothing).
    fn cut(&mut self, error: std::io::Error) {
        if let ReplyState::Streaming { chunks, .. } = &self.reply
            && send_within(chunks, Err(error), self.stall_limit) == Sent::Stalled
        {
            self.give_up();
        }
        self.reply = ReplyState::Done;
    }

    /// Sends what `handle` left behind once it returned with `status`; returns a direct
    /// reply.
    pub(crate) fn finish(mut self, status: Status) -> Option<Reply> {
        let (app, request_id, head_request) = (self.app, self.request_id, self.head_request);
        let mut direct = self.direct.take();
        let failed = |error: CallError| {
            per_request!(Error, format_args!("app {app}"), request_id; "{error}");
            error
        };
        match std::mem::replace(&mut self.reply, ReplyState::Done) {
            ReplyState::NotStarted(tx) => {
                let error = if status == Status::OK {
                    CallError::NoResponse
                } else {
                    CallError::Failed(status.0)
                };
                let _ = tx.send(Reply::Failed(failed(error)), &mut direct);
            }
            ReplyState::Upgraded { up, tx } => {
                // (Whatever `handle` returned: the socket is open. A client already gone
                // drops it, which closes it.)
                let _ = tx.send(Reply::Upgrade(up), &mut direct);
            }
            ReplyState::Holding { tx, .. } if status != Status::OK => {
                let _ = tx.send(Reply::Failed(failed(CallError::Failed(status.0))), &mut direct);
            }
            ReplyState::Holding { head, body, tx } => {
                let body = Bytes::from(body.unwrap_or_default());
                if let Some(n) = head.declared_len
                    && n != body.len() as u64
                    && !body.is_empty()
                {
                    per_request!(Warn, format_args!("app {app}"), request_id;
                        "Content-Length {n} does not match the {} body bytes it wrote; sent the \
                         real length",
                        body.len());
                }
                let _ = tx.send(Reply::Complete { head, body }, &mut direct);
            }
            streaming @ ReplyState::Streaming { left, .. } => {
                let cut = if status != Status::OK {
                    Some(format!(
                        "{} after the response started: the connection is cut",
                        failed(CallError::Failed(status.0))
                    ))
                } else {
                    // (A HEAD's body is not sent: it may declare a length it does not
                    // write.)
                    left.filter(|&n| n > 0 && !head_request).map(|n| {
                        per_request!(Error, format_args!("app {app}"), request_id;
                            "ended {n} bytes short of its Content-Length: the connection is cut");
                        format!("the app ended {n} bytes short of its Content-Length")
                    })
                };
                if let Some(why) = cut {
                    self.reply = streaming;
                    self.cut(std::io::Error::other(why));
                }
            }
            ReplyState::Done => {}
        }
        direct
    }
}

/// How long a streamed write waits for the client by default (the alias's `timeout` is set
/// on every sink the daemon makes; this is for sinks made without one).
const DEFAULT_STALL_LIMIT: Duration = Duration::from_secs(60);

/// The most bytes one queued chunk holds. The stall limit bounds the wait for one slot of
/// the queue, and actix takes the next chunk once it has written most of the one before:
/// with small chunks the limit means "the client took (almost) nothing", where one 8 MiB
/// write would have cut a client reading a steady 1 MiB/s.
const PIECE: usize = 64 * 1024;

/// `data` in queue-sized pieces (views of the one copy).
fn pieces(data: &Bytes) -> impl Iterator<Item = Bytes> + '_ {
    (0..data.len()).step_by(PIECE).map(|at| data.slice(at..data.len().min(at + PIECE)))
}

/// How a chunk fared on its way to the HTTP side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// Queued.
    Yes,
    /// The HTTP side is gone (the client left).
    Closed,
    /// The queue stayed full for the stall limit: the client takes nothing.
    Stalled,
}

/// Queues `chunk`, blocking this (app) thread while the queue is full, at most `limit`.
fn send_within(chunks: &mpsc::Sender<Chunk>, chunk: Chunk, limit: Duration) -> Sent {
    let chunk = match chunks.try_send(chunk) {
        Ok(()) => return Sent::Yes,
        Err(mpsc::error::TrySendError::Closed(_)) => return Sent::Closed,
        Err(mpsc::error::TrySendError::Full(chunk)) => chunk,
    };
    match block_on_within(chunks.send(chunk), limit) {
        Some(Ok(())) => Sent::Yes,
        Some(Err(_)) => Sent::Closed,
        None => Sent::Stalled,
    }
}

/// [`send_within`] for the async side (the relay of a worker's frames).
async fn send_async_within(chunks: &mpsc::Sender<Chunk>, chunk: Chunk, limit: Duration) -> Sent {
    match tokio::time::timeout(limit, chunks.send(chunk)).await {
        Ok(Ok(())) => Sent::Yes,
        Ok(Err(_)) => Sent::Closed,
        Err(_) => Sent::Stalled,
    }
}

/// Wakes a thread parked in [`block_on_within`].
struct Unpark(std::thread::Thread);

impl std::task::Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `fut` on this thread (not a runtime's) until it is ready, or `None` after `limit`
/// (the future is then dropped, which cancels it).
pub(super) fn block_on_within<F: std::future::Future>(
    fut: F,
    limit: Duration,
) -> Option<F::Output> {
    let deadline = Instant::now() + limit;
    let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        if let std::task::Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return Some(out);
        }
        let now = Instant::now();
        if now >= deadline {
            return None;
        }
        std::thread::park_timeout(deadline - now);
    }
}

#[cfg(test)]
#[path = "reply_tests.rs"]
mod tests;
