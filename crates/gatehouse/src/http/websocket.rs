//! WebSockets at the edge: a request that asks for one (`Upgrade: websocket`) is checked
//! (RFC 6455's handshake), its app is called on the alias's pool (or relayed to a worker
//! process, `isolation::websocket`) with the offer, and when
//! the app accepts, the daemon answers 101 and drives the socket on this HTTP worker: it
//! reads and reassembles frames, answers pings, hands whole messages to the app's threads
//! one at a time, writes what the apps send, enforces `websocket_max_message` (1009) and
//! `websocket_idle_timeout` (1001), and closes with the proper code. No thread is held per
//! socket: an idle one is a task waiting on its connection.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_http::ws::{CloseCode, CloseReason, OpCode, Parser, ProtocolError};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{StatusCode, Version};
use actix_web::web::{Bytes, BytesMut};
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::{Stream, StreamExt};
use gatehouse_abi::{Status, WebSocketKind};
use gatehouse_config::AliasKind;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

use crate::call::deadline::Deadline;
use crate::call::websocket::{Offer, Upgrade};
use crate::call::{self, BodySource, Reply};
use crate::host::{Host, Unavailable};
use crate::http::response;
use crate::logs::per_request;
use crate::request::answer::Answer;
use crate::request::environ::PairBuf;
use crate::request::input::{self, Input};
use crate::request::route::alias_app_name;

/// Frames that may wait between the socket's task and the client's connection.
const FRAMES_IN_FLIGHT: usize = 8;

/// How long the daemon waits for the client's close frame after sending its own.
const CLOSE_WAIT: Duration = Duration::from_secs(5);

/// Whether the request asks for a WebSocket (an HTTP/1.1 `Upgrade: websocket`; HTTP/2 has
/// no such upgrade).
pub(crate) fn asked(req: &HttpRequest) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().get_all(header::UPGRADE).any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("websocket")))
        })
}

/// Where a WebSocket request was routed.
#[derive(Debug)]
pub(crate) struct Routed<'a> {
    pub(crate) mount: usize,
    pub(crate) file: &'a Arc<std::path::Path>,
    pub(crate) group_name: Option<&'a str>,
    /// Its environ (the access and authentication hooks have run).
    pub(crate) vars: PairBuf,
}

/// The handshake's checks (RFC 6455 §4.2.1): 400 for a malformed one, 426 (with
/// `Sec-WebSocket-Version: 13`) for another version. The client's subprotocols.
fn check(req: &HttpRequest) -> Result<Vec<String>, Box<HttpResponse>> {
    use actix_http::ws::HandshakeError as E;
    let refuse = |status: u16, message: &'static str| Answer::new(status, message).response();
    if let Err(e) = actix_http::ws::verify_handshake(req.head()) {
        return Err(Box::new(match e {
            E::GetMethodRequired => refuse(400, "a WebSocket handshake must be a GET"),
            E::NoConnectionUpgrade => {
                refuse(400, "a WebSocket handshake needs `Connection: Upgrade`")
            }
            E::NoVersionHeader | E::UnsupportedVersion => {
                let mut resp =
                    refuse(426, "this server speaks WebSocket version 13 (RFC 6455) only");
                resp.headers_mut()
                    .insert(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"));
                resp
            }
            _ => refuse(400, "a WebSocket handshake needs a Sec-WebSocket-Key of 16 bytes"),
        }));
    }
    Ok(req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect())
}

/// Serves a WebSocket request of an in-process alias: its app may accept it (101, then the
/// socket is driven here) or answer it as any request.
pub(crate) async fn serve(
    req: &HttpRequest,
    payload: web::Payload,
    host: &Arc<Host>,
    r: Routed<'_>,
    request_id: u64,
) -> Result<HttpResponse, Answer> {
    let protocols = match check(req) {
        Ok(p) => p,
        Err(resp) => return Ok(*resp),
    };
    let m = &host.mounts[r.mount];
    let alias = &m.alias;
    let mut input = Input::default();
    input::query_params(req.query_string(), &mut input.params);
    let vars = r.vars;
    let offer = Offer {
        protocols,
        max: alias.limits.max_websockets,
        stats: Arc::clone(&m.stats),
        stall_limit: alias.limits.timeout,
        pool: Arc::clone(&m.pool),
    };
    let deadline = Deadline::start(alias.limits.timeout);
    let (tx, rx) = oneshot::channel();
    let (mount, file, group) = (r.mount, Arc::clone(r.file), r.group_name.map(Arc::<str>::from));
    let reply = if let Some(workers) = &m.workers {
        // In a worker process: its app may accept through the relay.
        let (host, group_of, deadline_of) =
            (Arc::clone(host), Arc::clone(workers), deadline.clone());
        actix_web::rt::spawn(async move {
            let (workers, deadline) = (group_of, deadline_of);
            let m = &host.mounts[mount];
            let app = group.as_deref().unwrap_or_else(|| alias_app_name(&m.alias.url));
            let debug = host.debug_log(app);
            let relay = crate::isolation::relay::Relay {
                group: &workers,
                kind: m.alias.kind,
                app,
                debug: &debug,
                request_id,
                develop_mode: m.alias.develop_mode,
                file: &file,
                group_name: group.as_deref(),
                vars: &vars,
                input: &input,
                deadline: &deadline,
                websocket: Some(&offer),
            };
            crate::isolation::relay::relay(&relay, BodySource::Empty, tx).await;
        });
        deadline.wait(rx, &**workers, alias.url.as_str(), request_id).await?
    } else {
        let (job_host, job_deadline) = (Arc::clone(host), deadline.clone());
        let job = Box::new(move || {
            let deadline = job_deadline;
            let m = &job_host.mounts[mount];
            if deadline.expired() || tx.is_closed() {
                deadline.ended(&*m.pool);
                return;
            }
            match job_host.plugin(mount, &file, group.as_deref()) {
                Ok(loaded) => {
                    let call = loaded.call(&vars, &input, m.alias.develop_mode, request_id);
                    call::invoke_websocket(&loaded.plugin, &call, &offer, tx, deadline.timeout());
                }
                Err(u) => {
                    let group = m.alias.kind == AliasKind::Group;
                    let _ = tx.send(Reply::Refused(Answer::unavailable(
                        matches!(u, Unavailable::Missing),
                        group,
                    )));
                }
            }
            deadline.ended(&*m.pool);
        });
        if let Err(busy) = m.pool.submit(job) {
            per_request!(Warn, &alias.url, request_id; "{busy}; answered 503");
            return Err(Answer::busy());
        }
        deadline.wait(rx, &*m.pool, alias.url.as_str(), request_id).await?
    };
    let Reply::Upgrade(up) = reply else {
        return Ok(response::from_reply(reply, request_id, false, None));
    };
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY).map(HeaderValue::as_bytes);
    let accept = actix_http::ws::hash_key(key.unwrap_or_default());
    let mut resp = HttpResponse::build(StatusCode::SWITCHING_PROTOCOLS);
    resp.upgrade("websocket").insert_header((
        header::SEC_WEBSOCKET_ACCEPT,
        HeaderValue::from_bytes(&accept).map_err(|_| Answer::call_lost())?,
    ));
    if let Some(p) = up.protocol.as_deref().and_then(|p| HeaderValue::from_str(p).ok()) {
        resp.insert_header((header::SEC_WEBSOCKET_PROTOCOL, p));
    }
    let (out, frames) = mpsc::channel(FRAMES_IN_FLIGHT);
    let limits = Limits {
        max_message: usize::try_from(alias.limits.websocket_max_message).unwrap_or(usize::MAX),
        idle: alias.limits.websocket_idle_timeout,
    };
    log::debug!("{} (request {request_id}): WebSocket {} open", alias.url, up.socket);
    actix_web::rt::spawn(drive(up, payload, out, limits));
    let mut resp = resp.streaming(Frames(frames));
    // (A streamed body's default type: the 101 has no body of its own.)
    resp.headers_mut().remove(header::CONTENT_TYPE);
    Ok(resp)
}

/// The frames the socket's task sends, as the 101 response's body.
struct Frames(mpsc::Receiver<Result<Bytes, std::io::Error>>);

impl Stream for Frames {
    type Item = Result<Bytes, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.0.poll_recv(cx)
    }
}

/// One socket's limits.
#[derive(Debug, Clone, Copy)]
struct Limits {
    max_message: usize,
    idle: Duration,
}

/// Drives one accepted socket until it closes; then the app gets its CLOSE event.
async fn drive(
    mut up: Box<Upgrade>,
    payload: web::Payload,
    out: mpsc::Sender<Result<Bytes, std::io::Error>>,
    limits: Limits,
) {
    let mut socket = Socket { out, buf: BytesMut::new(), message: None, limits };
    let (code, reason) = socket.run(&mut up, payload).await;
    log::debug!("WebSocket {} closed ({code})", up.socket);
    up.close_code = code;
    up.close_reason = Bytes::from(reason);
}

/// How a socket ended, for the app's CLOSE event: the code and the reason.
type End = (u16, String);

struct Socket {
    out: mpsc::Sender<Result<Bytes, std::io::Error>>,
    /// Bytes read and not yet parsed.
    buf: BytesMut,
    /// A fragmented message being reassembled: its kind and what came so far.
    message: Option<(WebSocketKind, BytesMut)>,
    limits: Limits,
}

/// What woke a socket's task.
enum Woke {
    HandleDone,
    EventDone(Option<Status>),
    Read(Option<Bytes>),
    Send(Option<crate::sockets::Out>),
    Writable,
    Close(u16, String),
    Idle,
}

/// What one parsed frame asks for.
enum Step {
    /// Nothing more (a ping answered, a fragment kept).
    Go,
    /// A whole message for the app.
    Deliver(WebSocketKind, Bytes),
    /// The socket ends: the client closed (its code and reason, echoed).
    Closed(End),
    /// The client broke the protocol or a limit: close with this code.
    Fail(u16, &'static str),
}

impl Socket {
    async fn run(&mut self, up: &mut Upgrade, mut payload: web::Payload) -> End {
        let mut handle_done = up.handle_done.take();
        let mut last = Instant::now();
        loop {
            // Frames already read, once the app may take the next message.
            if up.in_flight.is_none() && handle_done.is_none() {
                match self.next_frame() {
                    Ok(None) => {}
                    Ok(Some(Step::Go)) => continue,
                    Ok(Some(Step::Deliver(kind, data))) => {
                        match up.event(kind, data) {
                            Ok(rx) => up.in_flight = Some(rx),
                            Err(busy) => {
                                log::warn!("WebSocket {}: {busy}; closing it (1013)", up.socket);
                                return self.close(1013, "the server is busy", &mut payload).await;
                            }
                        }
                        continue;
                    }
                    Ok(Some(Step::Closed(end))) => {
                        self.send_close(end.0, &end.1);
                        return end;
                    }
                    Ok(Some(Step::Fail(code, why))) | Err((code, why)) => {
                        return self.close(code, why, &mut payload).await;
                    }
                }
            }
            let reading = up.in_flight.is_none() && handle_done.is_none();
            // (One place is kept for a close frame: it goes out after what was sent.)
            let writable = self.out.capacity() > 1;
            let woke = tokio::select! {
                _ = maybe(&mut handle_done), if handle_done.is_some() => Woke::HandleDone,
                st = maybe(&mut up.in_flight), if up.in_flight.is_some() => Woke::EventDone(st.ok()),
                chunk = payload.next(), if reading => Woke::Read(chunk.and_then(Result::ok)),
                msg = up.outbound.recv(), if writable => Woke::Send(msg),
                _ = self.out.reserve(), if !writable => Woke::Writable,
                (code, reason) = up.close.requested() => Woke::Close(code, reason),
                () = tokio::time::sleep_until(last + self.limits.idle) => Woke::Idle,
            };
            match woke {
                Woke::HandleDone => handle_done = None,
                Woke::EventDone(st) => {
                    up.in_flight = None;
                    if st != Some(Status::OK) {
                        log::warn!(
                            "WebSocket {}: the app's websocket_event failed; closing it (1011)",
                            up.socket
                        );
                        return self.close(1011, "the app failed", &mut payload).await;
                    }
                }
                Woke::Read(Some(bytes)) => {
                    last = Instant::now();
                    self.buf.extend_from_slice(&bytes);
                }
                // The connection ended without a close frame.
                Woke::Read(None) | Woke::Send(None) => return (1006, String::new()),
                Woke::Send(Some(msg)) => {
                    last = Instant::now();
                    let (op, data) = match msg {
                        crate::sockets::Out::Text(d) => (OpCode::Text, d),
                        crate::sockets::Out::Binary(d) => (OpCode::Binary, d),
                    };
                    let mut frame = BytesMut::with_capacity(data.len() + 10);
                    Parser::write_message(&mut frame, &data, op, true, false);
                    if self.out.try_send(Ok(frame.freeze())).is_err() {
                        return (1006, String::new());
                    }
                }
                Woke::Writable => {}
                Woke::Close(code, reason) => return self.close(code, &reason, &mut payload).await,
                Woke::Idle => return self.close(1001, "idle timeout", &mut payload).await,
            }
        }
    }

    /// Parses the next whole frame in the buffer, if there is one.
    fn next_frame(&mut self) -> Result<Option<Step>, (u16, &'static str)> {
        if let Some((rsv, len)) = frame_head(&self.buf) {
            if rsv {
                return Err((1002, "reserved bits set without an extension"));
            }
            let held = self.message.as_ref().map_or(0, |(_, m)| m.len()) as u64;
            if len.saturating_add(held) > self.limits.max_message as u64 {
                return Err((1009, "the message is larger than websocket_max_message"));
            }
        }
        let frame = match Parser::parse(&mut self.buf, true, self.limits.max_message) {
            Ok(Some(frame)) => frame,
            Ok(None) => return Ok(None),
            Err(ProtocolError::Overflow) => {
                return Err((1009, "the message is larger than websocket_max_message"));
            }
            Err(_) => return Err((1002, "a malformed frame")),
        };
        let (fin, op, data) = frame;
        let data = data.unwrap_or_default();
        Ok(Some(match op {
            OpCode::Ping | OpCode::Pong | OpCode::Close if !fin => {
                Step::Fail(1002, "a fragmented control frame")
            }
            OpCode::Ping => {
                let mut pong = BytesMut::with_capacity(data.len() + 2);
                Parser::write_message(&mut pong, &data, OpCode::Pong, true, false);
                // A client that reads nothing misses the pong, not more.
                let _ = self.out.try_send(Ok(pong.freeze()));
                Step::Go
            }
            OpCode::Pong => Step::Go,
            OpCode::Close => close_frame(&data),
            OpCode::Text | OpCode::Binary if self.message.is_some() => {
                Step::Fail(1002, "a new message inside a fragmented one")
            }
            OpCode::Text | OpCode::Binary => {
                let kind =
                    if op == OpCode::Text { WebSocketKind::TEXT } else { WebSocketKind::BINARY };
                if fin {
                    whole(kind, data.freeze())
                } else {
                    self.message = Some((kind, data));
                    Step::Go
                }
            }
            OpCode::Continue => match self.message.take() {
                None => Step::Fail(1002, "a continuation with no message begun"),
                Some((kind, mut m)) => {
                    m.extend_from_slice(&data);
                    if fin {
                        whole(kind, m.freeze())
                    } else {
                        self.message = Some((kind, m));
                        Step::Go
                    }
                }
            },
            OpCode::Bad => Step::Fail(1002, "an unknown opcode"),
        }))
    }

    /// Queues a close frame (dropped if the client reads nothing).
    fn send_close(&self, code: u16, reason: &str) {
        let mut frame = BytesMut::new();
        let reason = CloseReason {
            code: CloseCode::from(code),
            description: (!reason.is_empty()).then(|| reason.to_owned()),
        };
        let reason = if code == 1005 { None } else { Some(reason) };
        Parser::write_close(&mut frame, reason, false);
        let _ = self.out.try_send(Ok(frame.freeze()));
    }

    /// The daemon closes: its close frame, then the client's answer (or [`CLOSE_WAIT`]).
    async fn close(&mut self, code: u16, reason: &str, payload: &mut web::Payload) -> End {
        self.send_close(code, reason);
        let wait = tokio::time::sleep(CLOSE_WAIT);
        tokio::pin!(wait);
        loop {
            // Whatever the client sends before its close frame is dropped.
            while let Ok(Some(step)) = self.next_frame() {
                if let Step::Closed(_) = step {
                    return (code, reason.to_owned());
                }
            }
            tokio::select! {
                chunk = payload.next() => match chunk {
                    Some(Ok(bytes)) => self.buf.extend_from_slice(&bytes),
                    _ => break,
                },
                () = &mut wait => break,
            }
        }
        (code, reason.to_owned())
    }
}

/// What `rx` gives, or never when there is none.
async fn maybe<T>(rx: &mut Option<oneshot::Receiver<T>>) -> Result<T, oneshot::error::RecvError> {
    match rx {
        Some(rx) => rx.await,
        None => std::future::pending().await,
    }
}

/// A whole message: text must be UTF-8 (else 1007).
fn whole(kind: WebSocketKind, data: Bytes) -> Step {
    if kind == WebSocketKind::TEXT && std::str::from_utf8(&data).is_err() {
        return Step::Fail(1007, "a text message that is not UTF-8");
    }
    Step::Deliver(kind, data)
}

/// A client's close frame: its code (1005 for none) and reason, or what is wrong with it.
fn close_frame(data: &[u8]) -> Step {
    match data {
        [] => Step::Closed((1005, String::new())),
        [_] => Step::Fail(1002, "a close frame of one byte"),
        [a, b, rest @ ..] => {
            let code = u16::from_be_bytes([*a, *b]);
            if !matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999) {
                return Step::Fail(1002, "a close code that may not be sent");
            }
            match std::str::from_utf8(rest) {
                Ok(reason) => Step::Closed((code, reason.to_owned())),
                Err(_) => Step::Fail(1007, "a close reason that is not UTF-8"),
            }
        }
    }
}

/// A frame's reserved bits and payload length, from its head once that is buffered.
fn frame_head(buf: &[u8]) -> Option<(bool, u64)> {
    let (&b0, &b1) = (buf.first()?, buf.get(1)?);
    let len = match b1 & 0x7f {
        126 => u64::from(u16::from_be_bytes([*buf.get(2)?, *buf.get(3)?])),
        127 => u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?),
        n => u64::from(n),
    };
    Some((b0 & 0x70 != 0, len))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_heads_and_close_frames() {
        assert_eq!(frame_head(&[0x81]), None);
        assert_eq!(frame_head(&[0x81, 0x85]), Some((false, 5)));
        assert_eq!(frame_head(&[0xc1, 0x80]), Some((true, 0)));
        assert_eq!(frame_head(&[0x82, 0xfe, 1, 0]), Some((false, 256)));
        assert_eq!(frame_head(&[0x82, 0xff, 0, 0, 0, 1, 0, 0, 0]), None);
        assert_eq!(frame_head(&[0x82, 0xff, 0, 0, 0, 1, 0, 0, 0, 0]), Some((false, 1 << 32)));
        assert!(matches!(close_frame(&[]), Step::Closed((1005, _))));
        assert!(
            matches!(close_frame(&[3, 0xe8, b'o', b'k']), Step::Closed((1000, r)) if r == "ok")
        );
        assert!(matches!(close_frame(&[3, 0xed]), Step::Fail(1002, _)));
        assert!(matches!(close_frame(&[3, 0xe8, 0xff]), Step::Fail(1007, _)));
        assert!(matches!(close_frame(&[3]), Step::Fail(1002, _)));
    }
}
