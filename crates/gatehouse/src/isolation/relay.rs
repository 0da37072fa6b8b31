//! One request of an isolated alias, relayed by a task on the HTTP worker that received it:
//! a socket is taken from the alias's [`Group`] (waiting asynchronously while every worker
//! is busy), the request goes out as one `Request` frame, and the worker's frames drive the
//! same [`ReplySink`] an in-process call drives, so the client sees the same reply in both
//! modes. Body chunks go to the worker as it asks for them.
//!
//! No daemon thread waits on a worker: the socket is registered with the HTTP worker's
//! event loop (a worker's reply wakes the HTTP worker directly, one hand-off each way, as
//! an in-process call on the pool has), and stays registered there between requests.
//!
//! A worker that dies mid-request ends its sockets: a reply not started becomes 502, a
//! streaming one is cut.

use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use gatehouse_abi::Status;
use gatehouse_config::AliasKind;
use std::io::Write as _;

use std::io::Read as _;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;

use super::boundary::register;
use super::group::Group;
use super::messages::{RequestOut, decode_head};
use super::proto::{Get, Kind, MAX_FRAME, ProtoError, Put, parse_frame, push_frame};
use super::sockets::{Conn, NoConn, Outcome, Sock};
use crate::call::deadline::Deadline;
use crate::call::{BodySource, Reply, ReplySink, body_error_code, log_app_line};
use crate::logs::debug::DebugLog;
use crate::logs::per_request;
use crate::request::answer::Answer;
use crate::request::environ::PairBuf;
use crate::request::input::{BodyError, Input};

/// What one relayed request needs.
#[derive(Debug)]
pub(crate) struct Relay<'a> {
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
    /// The request's deadline (its timeout is also how long a streamed reply or a body
    /// read waits on a client that takes or sends nothing).
    pub deadline: &'a Deadline,
    /// A WebSocket handshake's offer, which the worker's app may accept.
    pub websocket: Option<&'a crate::call::websocket::Offer>,
}

const DIED: &str = "the app's worker process died; the error log says why";
const TOO_MANY_FIELDS: &str = "the request has too many or too large form fields for the app's \
                               worker process; send fewer";

/// Relays the request; the reply goes to `tx`. The deadline names the worker serving the
/// request while it does (the HTTP side kills it past the timeout) and says when the client
/// already got 504.
pub(crate) async fn relay(r: &Relay<'_>, mut body: BodySource, tx: oneshot::Sender<Reply>) {
    let refuse = |tx: oneshot::Sender<Reply>, answer: Answer| {
        let _ = tx.send(Reply::Refused(answer));
    };
    let conn = match r.group.acquire(r.deadline.at()).await {
        Ok(conn) => conn,
        Err(NoConn::Down(why)) => {
            per_request!(Warn, r.app, r.request_id;
                "no worker process is running ({why}); answered 503");
            return refuse(
                tx,
                Answer::new(
                    503,
                    "the app's worker processes are not running; the error log says why",
                ),
            );
        }
        Err(NoConn::Stopping) => return refuse(tx, Answer::new(503, "the app is stopping")),
        Err(NoConn::Busy { waiting }) => {
            per_request!(Warn, r.app, r.request_id;
                "{waiting} requests already wait for a worker process; answered 503");
            return refuse(tx, Answer::busy());
        }
        // Every worker stayed busy until the deadline: 504, as when the HTTP side's own
        // timer for the same deadline fires first (then this is dropped), so the client's
        // answer does not depend on which of the two wins.
        Err(NoConn::Timeout) => {
            if !r.deadline.expired() {
                per_request!(Warn, r.app, r.request_id;
                    "no worker process took the request within {:?}; answered 504",
                    r.deadline.timeout());
            }
            return refuse(tx, Answer::timed_out());
        }
    };
    // Given back however this ends: if the task is dropped midway (its HTTP worker
    // stopped), as `Abandoned`: the worker's state is then unknown, so it is killed.
    let mut borrowed = Borrowed { group: r.group, conn: Some(conn), outcome: Outcome::Abandoned };
    let Some(conn) = borrowed.conn.as_mut() else { return };
    if r.deadline.expired() {
        borrowed.outcome = Outcome::Done;
        return;
    }
    // (Spooled uploads are already the worker's user's: `Limits::upload_owner`.)
    let out = RequestOut {
        id: r.request_id,
        develop_mode: r.develop_mode,
        file: r.file.as_os_str().as_bytes(),
        group_name: r.group_name,
        vars: r.vars,
        params: &r.input.params,
        uploads: &r.input.uploads,
        preloaded: 0,
    };
    let len = out.encoded_len();
    if len > MAX_FRAME {
        // (A 10 MiB urlencoded body of `a&a&...` is millions of fields, 8 bytes of lengths
        // each.) Refused before anything is sent: the socket serves on.
        per_request!(Warn, r.app, r.request_id;
            "its variables and form fields take {len} bytes to hand to a worker process, past \
             {MAX_FRAME}; answered 413");
        borrowed.outcome = Outcome::Done;
        let _ = tx.send(Reply::Refused(Answer::too_large(TOO_MANY_FIELDS)));
        return;
    }
    let worker = std::sync::Arc::clone(&conn.worker);
    r.deadline.serving(worker.pid);
    worker.in_flight_ids().push(r.request_id);
    // The body the HTTP side already has goes with the request (up to PRELOAD bytes).
    let mut preload = Vec::new();
    let mut preloaded_bytes = 0;
    while preloaded_bytes < PRELOAD {
        let Some(next) = body.try_next_chunk() else { break };
        let end = !matches!(next, Ok(Some(_)));
        if let Ok(Some(chunk)) = &next {
            preloaded_bytes += chunk.len();
        }
        preload.push(next);
        if end {
            break;
        }
    }
    let out = RequestOut { preloaded: u32::try_from(preload.len()).unwrap_or(u32::MAX), ..out };
    let request = |buf: &mut Vec<u8>| {
        push_frame(buf, Kind::Request, |b| out.encode(b));
        for chunk in &preload {
            push_body(buf, chunk);
        }
    };
    let outcome = match Attached::attach(conn, request) {
        Ok(mut io) => {
            let outcome = exchange(r, &mut io, &mut body, tx, &worker).await;
            match io.detach() {
                Ok(()) => outcome,
                Err(_) => Outcome::Broken,
            }
        }
        Err(e) => {
            per_request!(Error, r.app, r.request_id; "worker socket: {e}");
            let _ = tx.send(Reply::Refused(Answer::new(502, DIED)));
            Outcome::Died
        }
    };
    if outcome != Outcome::Died {
        // A dead worker's ids stay for its report (its slot thread takes them).
        worker.in_flight_ids().retain(|&i| i != r.request_id);
    }
    r.deadline.serving(0);
    borrowed.outcome = outcome;
}

/// A socket borrowed from a group, given back when dropped with `outcome`.
struct Borrowed<'g> {
    group: &'g Group,
    conn: Option<Conn>,
    outcome: Outcome,
}

impl Drop for Borrowed<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.group.release(conn, self.outcome);
        }
    }
}

/// A borrowed socket, registered with this thread's event loop, for one request.
struct Attached<'c> {
    conn: &'c mut Conn,
    stream: AsyncFd<UnixStream>,
    /// Bytes read and not yet consumed are `conn.rbuf[pos..len]`.
    pos: usize,
    len: usize,
}

impl<'c> Attached<'c> {
    /// Takes the socket and sends the frames `first` writes: at once, before the socket
    /// is (re)registered when it must be (a new registration knows no readiness yet, and
    /// waiting for the loop to report it costs a turn of the loop per request).
    fn attach(
        conn: &'c mut Conn,
        first: impl FnOnce(&mut Vec<u8>),
    ) -> std::io::Result<Attached<'c>> {
        let here = std::thread::current().id();
        conn.out.clear();
        first(&mut conn.out);
        let std = match conn.stream.take() {
            Some(Sock::Registered(stream, thread)) if thread == here => {
                return Ok(Attached { conn, stream, pos: 0, len: 0 });
            }
            // Moved off the other thread's event loop (it may have stopped: its epoll set
            // lives as long as the registration).
            Some(Sock::Registered(stream, _)) => stream.into_inner(),
            Some(Sock::Plain(std)) => std,
            None => {
                return Err(std::io::Error::other("the socket was lost by an earlier request"));
            }
        };
        std.set_nonblocking(true)?;
        let sent = match (&std).write(&conn.out) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
            Err(e) => return Err(e),
        };
        conn.out.drain(..sent);
        let stream = register(std, Interest::READABLE)?;
        Ok(Attached { conn, stream, pos: 0, len: 0 })
    }

    /// Gives the socket back to its `Conn`, still registered with this thread's loop.
    fn detach(self) -> std::io::Result<()> {
        if self.pos != self.len {
            // Bytes after `End`: the worker broke the framing.
            return Err(ProtoError::Unexpected(Kind::End).into());
        }
        self.conn.stream = Some(Sock::Registered(self.stream, std::thread::current().id()));
        Ok(())
    }

    fn frame(&mut self, kind: Kind, fill: impl FnOnce(&mut Vec<u8>)) {
        push_frame(&mut self.conn.out, kind, fill);
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        let r = self.write_all().await;
        self.conn.out.clear();
        r
    }

    /// Writes `conn.out` whole. When the socket is full (the worker is not reading yet),
    /// waits for room on a duplicate registered for writing, dropped once all is written.
    async fn write_all(&mut self) -> std::io::Result<()> {
        let mut at = 0;
        let mut for_room: Option<AsyncFd<UnixStream>> = None;
        while at < self.conn.out.len() {
            match self.stream.get_ref().write(&self.conn.out[at..]) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => at += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let room = match &for_room {
                        Some(room) => room,
                        None => for_room.insert(register(
                            self.stream.get_ref().try_clone()?,
                            Interest::WRITABLE,
                        )?),
                    };
                    room.writable().await?.clear_ready();
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The next frame: its kind and where its payload is in the read buffer (valid until
    /// the next read).
    async fn read(&mut self) -> std::io::Result<(Kind, std::ops::Range<usize>)> {
        loop {
            if let Some((kind, payload)) = parse_frame(&self.conn.rbuf[self.pos..self.len])? {
                let range = self.pos + payload.start..self.pos + payload.end;
                self.pos += payload.end;
                return Ok((kind, range));
            }
            // Make room: move what is left to the front, and grow for a large frame.
            let rbuf = &mut self.conn.rbuf;
            rbuf.copy_within(self.pos..self.len, 0);
            self.len -= self.pos;
            self.pos = 0;
            let want = match parse_frame(&rbuf[..self.len]) {
                Ok(None) if self.len >= 5 => {
                    5 + u32::from_le_bytes([rbuf[0], rbuf[1], rbuf[2], rbuf[3]]) as usize
                }
                _ => 64 * 1024,
            };
            if rbuf.len() < want.max(64 * 1024) {
                rbuf.resize(want.max(64 * 1024), 0);
            }
            let n = loop {
                let mut ready = self.stream.readable().await?;
                match ready.try_io(|sock| sock.get_ref().read(&mut rbuf[self.len..])) {
                    Ok(read) => break read?,
                    Err(_would_block) => {}
                }
            };
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            self.len += n;
        }
    }

    fn payload(&self, range: std::ops::Range<usize>) -> &[u8] {
        &self.conn.rbuf[range]
    }
}

/// Body bytes the HTTP side has at hand are sent with the request, up to this many.
const PRELOAD: usize = 64 * 1024;

/// The frame that gives the worker a body chunk: `Body` (empty at the end) or `BodyError`.
fn push_body(out: &mut Vec<u8>, chunk: &Result<Option<Bytes>, BodyError>) {
    match chunk {
        Ok(Some(chunk)) => push_frame(out, Kind::Body, |b| b.extend_from_slice(chunk)),
        Ok(None) => push_frame(out, Kind::Body, |_| {}),
        Err(e) => push_frame(out, Kind::BodyError, |b| b.put_u32(body_error_code(*e).0)),
    }
}

/// Sends the rest of the request and follows the worker's frames to `End`.
async fn exchange(
    r: &Relay<'_>,
    io: &mut Attached<'_>,
    body: &mut BodySource,
    tx: oneshot::Sender<Reply>,
    worker: &std::sync::Arc<super::sockets::Worker>,
) -> Outcome {
    let pid = worker.pid;
    // Dropped when this request ends: an accepted WebSocket's events may start then.
    let mut _handle_done = None;
    let mut sink = ReplySink::channel(r.app, r.request_id, tx)
        .for_request(r.vars)
        .stall_limit(r.deadline.timeout());
    let mut gone = false;
    if io.flush().await.is_err() {
        sink.abort(Answer::new(502, DIED));
        return Outcome::Died;
    }
    loop {
        let (kind, payload) = match next_frame(r, io, &sink, pid).await {
            Ok(frame) => frame,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                return protocol(r, sink, &e.to_string()).await;
            }
            Err(e) => {
                log::debug!("{} (request {}): worker socket: {e}", r.app, r.request_id);
                sink.abort_async(Answer::new(502, DIED)).await;
                return Outcome::Died;
            }
        };
        let status = match kind {
            Kind::Head => match decode_head(io.payload(payload)) {
                Ok(head) => sink.start(|| Ok(head)),
                Err(e) => return protocol(r, sink, &e.to_string()).await,
            },
            Kind::Data => sink.write_async(io.payload(payload)).await,
            Kind::Flush => sink.flush(),
            Kind::ReadBody => {
                let chunk = body
                    .next_chunk_async(sink.body_wait())
                    .await
                    .unwrap_or_else(|| sink.body_stalled());
                push_body(&mut io.conn.out, &chunk);
                if io.flush().await.is_err() {
                    sink.abort_async(Answer::new(502, DIED)).await;
                    return Outcome::Died;
                }
                Status::OK
            }
            Kind::Debug => {
                if let Err(e) = r.debug.write(r.request_id, io.payload(payload)) {
                    log::debug!("{}: debug line not written: {e}", r.app);
                }
                Status::OK
            }
            Kind::LogError => {
                log_app_line(log::Level::Error, r.app, r.request_id, io.payload(payload));
                Status::OK
            }
            Kind::LogInfo => {
                log_app_line(log::Level::Info, r.app, r.request_id, io.payload(payload));
                Status::OK
            }
            Kind::WsAccept => {
                let protocol = Get::new(io.payload(payload), "WsAccept").bytes().unwrap_or(b"\xff");
                let protocol = protocol.to_vec();
                let (status, socket, done) =
                    super::websocket::accept(r.websocket, worker, &mut sink, &protocol);
                _handle_done = done;
                io.frame(Kind::WsAccepted, |out| {
                    out.put_u32(status.0);
                    out.put_u64(socket);
                });
                if io.flush().await.is_err() {
                    return Outcome::Died;
                }
                Status::OK
            }
            Kind::End => {
                let code = Get::new(io.payload(payload), "End").u32().unwrap_or(Status::ERROR.0);
                sink.finish_async(Status(code)).await;
                return Outcome::Done;
            }
            // A worker refuses before the app runs; after a reply began, only an app that
            // writes to its socket could have sent this.
            Kind::Refused if sink.started() => {
                return protocol(r, sink, "Refused after the reply began").await;
            }
            Kind::Refused => {
                let missing = io.payload(payload).first() == Some(&0);
                let answer = Answer::unavailable(missing, r.kind == AliasKind::Group);
                sink.abort_async(answer).await;
                return Outcome::Done;
            }
            other => return protocol(r, sink, &format!("unexpected {other:?}")).await,
        };
        if status == Status::DISCONNECTED && !gone {
            // The client left: the app learns it at its next write.
            gone = true;
            io.frame(Kind::Gone, |_| {});
            let _ = io.flush().await;
        }
    }
}

/// How often a relay past its deadline looks whether its client is still waiting.
const WAITER_CHECK: Duration = Duration::from_millis(250);

/// The worker's next frame. Past the deadline with no reply handed over, the HTTP side
/// answers 504 and kills the worker; but when the client has left (its request was dropped,
/// as on a reset connection), nothing there will, so the relay kills the worker itself
/// rather than wait forever on a hung app with the worker's socket.
async fn next_frame(
    r: &Relay<'_>,
    io: &mut Attached<'_>,
    sink: &ReplySink<'_>,
    pid: u32,
) -> std::io::Result<(Kind, std::ops::Range<usize>)> {
    let deadline = r.deadline.at();
    loop {
        let Some(gone) = sink.waiter_gone() else { return io.read().await };
        if r.deadline.expired() {
            // The client got 504 and the worker was killed: its socket ends.
            return io.read().await;
        }
        let now = Instant::now();
        if now >= deadline && gone && r.deadline.claim() {
            per_request!(Warn, r.app, r.request_id;
                "the client left and the app did not answer within {:?}; killed its worker \
                 process {pid} (a new one starts)", r.deadline.timeout());
            r.group.kill_overdue(pid, r.request_id, r.deadline.timeout());
            return io.read().await;
        }
        let until = if now < deadline { deadline } else { now + WAITER_CHECK };
        // (Reading is cancel-safe: what was read stays in the buffer.)
        if let Ok(frame) = tokio::time::timeout_at(until.into(), io.read()).await {
            return frame;
        }
    }
}

async fn protocol(r: &Relay<'_>, sink: ReplySink<'_>, what: &str) -> Outcome {
    per_request!(Error, r.app, r.request_id; "the worker broke the framing: {what}");
    sink.abort_async(Answer::new(502, "the app's worker process failed; the error log says why"))
        .await;
    Outcome::Broken
}
