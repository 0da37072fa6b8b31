//! Response: an app's [`Reply`] as an actix response. A complete reply goes out with its
//! exact length; a streamed one as its chunks arrive, with the app's declared Content-Length
//! or chunked (to an HTTP/1.0 client, which knows no chunks: delimited by the connection's
//! end); a HEAD keeps the length the app declared, claims none it did not, and sends no body.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use actix_web::HttpResponse;
use actix_web::body::{BodySize, MessageBody, SizedStream};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::{ConnectionType, StatusCode, Version};
use actix_web::web::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc;

use crate::call::{Chunk, Head, Reply};
use crate::host::Host;
use crate::logs::per_request;
use crate::request::answer::{Answer, DaemonAnswer};

/// The body of a streamed reply: the first chunk, then the channel. It also drives the
/// request-body pump, when the app answers before reading the whole body, so the app can
/// keep reading while it writes.
struct AppBody {
    first: Option<Bytes>,
    rest: mpsc::Receiver<Chunk>,
    pump: Option<Pin<Box<dyn Future<Output = ()>>>>,
    /// Data was handed to actix since this stream last returned `Pending`.
    unflushed: bool,
    /// An error held back until actix has written the data before it.
    cut: Option<std::io::Error>,
    /// The app side gave up on a client that took nothing (see [`Reply::Stream`]): the
    /// channel's end is a cut, not the end of the body.
    stalled: Arc<AtomicBool>,
}

impl Stream for AppBody {
    type Item = Chunk;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Chunk>> {
        if let Some(pump) = &mut self.pump
            && pump.as_mut().poll(cx).is_ready()
        {
            self.pump = None;
        }
        if let Some(cut) = self.cut.take() {
            return Poll::Ready(Some(Err(cut)));
        }
        if let Some(first) = self.first.take().filter(|b| !b.is_empty()) {
            self.unflushed = true;
            return Poll::Ready(Some(Ok(first)));
        }
        let next = match self.rest.poll_recv(cx) {
            Poll::Ready(None) if self.stalled.load(Ordering::Acquire) => Poll::Ready(Some(Err(
                std::io::Error::other("the client took none of the reply for the alias's timeout"),
            ))),
            next => next,
        };
        match next {
            Poll::Ready(Some(Err(e))) if self.unflushed => {
                // actix drops its write buffer with the connection on a body error: let it
                // write what the app sent before the cut (it flushes when we are Pending).
                self.unflushed = false;
                self.cut = Some(e);
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Poll::Ready(Some(Ok(chunk))) => {
                self.unflushed = true;
                Poll::Ready(Some(Ok(chunk)))
            }
            Poll::Pending => {
                self.unflushed = false;
                Poll::Pending
            }
            other => other,
        }
    }
}

fn builder(head: &Head) -> actix_web::HttpResponseBuilder {
    let mut resp = HttpResponse::build(head.status);
    for (name, value) in &head.headers {
        resp.append_header((name.clone(), value.clone()));
    }
    resp
}

/// 204 and 304 have no body: bytes after their head would be read as the start of the next
/// response on the connection.
fn has_no_body(head: &Head) -> bool {
    matches!(head.status, StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED)
}

/// `head` alone; the `dropped` body bytes the app sent with it are logged.
fn without_body(head: &Head, dropped: usize, request_id: u64) -> HttpResponse {
    if dropped > 0 {
        per_request!(Warn, "an app", request_id;
            "its {} reply came with a body; its {dropped} bytes were dropped", head.status);
    }
    builder(head).finish()
}

/// Turns an app's reply to request `request_id` into the HTTP response. `is_head` is
/// whether the request was HEAD; `pump` is the request-body pump still running, if any.
pub fn from_reply(
    reply: Reply,
    request_id: u64,
    is_head: bool,
    pump: Option<Pin<Box<dyn Future<Output = ()>>>>,
) -> HttpResponse {
    match reply {
        Reply::Complete { head, body } if has_no_body(&head) => {
            without_body(&head, body.len(), request_id)
        }
        Reply::Stream { head, first, .. } if has_no_body(&head) => {
            without_body(&head, first.len(), request_id)
        }
        Reply::Complete { head, body } => {
            let mut resp = builder(&head);
            match head.declared_len {
                // HEAD: the app may declare the length of a body it does not send.
                Some(n) if is_head && body.is_empty() => {
                    resp.body(SizedStream::new(n, futures_util::stream::empty::<Chunk>()))
                }
                // HEAD answered with neither a body nor a length (Werkzeug and Django do so
                // for a streamed response): the length is unknown, not 0, so none is sent.
                None if is_head && body.is_empty() => resp.body(actix_web::body::None::new()),
                _ => resp.body(body),
            }
        }
        Reply::Stream { head, first, rest, stalled } => {
            let mut resp = builder(&head);
            let body =
                AppBody { first: Some(first), rest, pump, unflushed: false, cut: None, stalled };
            match head.declared_len {
                Some(n) => resp.body(SizedStream::new(n, body)),
                None => resp.streaming(body),
            }
        }
        Reply::Failed(_) => {
            Answer::new(500, "the app failed; the error log has the details").response()
        }
        Reply::Refused(answer) => answer.response(),
        // (Only a WebSocket handshake's call can accept one: see `http::websocket`.)
        Reply::Upgrade(_) => Answer::new(500, "an unexpected WebSocket").response(),
    }
}

/// `resp` with the error document of its status as its body, when the configuration has
/// one for alias `mount` (or for unrouted requests) and the response is the daemon's own
/// answer, or an app's error reply with `error_override` on. The app's headers stay but for
/// the body's own (type, encoding, length).
pub(crate) fn with_error_page(
    host: &Host,
    mount: Option<usize>,
    resp: HttpResponse,
) -> HttpResponse {
    let status = resp.status().as_u16();
    if status < 400 {
        return resp;
    }
    let daemon = resp.extensions().contains::<DaemonAnswer>();
    if !daemon && !host.error_override(mount) {
        return resp;
    }
    let Some((body, content_type)) = host.error_page(mount, status) else { return resp };
    let mut resp = resp.set_body(body).map_into_boxed_body();
    let headers = resp.headers_mut();
    headers.remove(header::CONTENT_ENCODING);
    headers.remove(header::CONTENT_LENGTH);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// HTTP/1.0 has no chunked transfer coding: to a client that sent an HTTP/1.0 request
/// (`version`), a body of unknown length goes unframed and ends with the connection, which
/// closes after it whatever keep-alive the client asked for (as Apache does). actix would
/// frame it as chunked (`actix-http`'s `h1::encoder`, `MessageEncoder::encode` picks chunked
/// for every `BodySize::Stream` unless the head says `no_chunking`).
pub fn frame_for(version: Version, resp: &mut HttpResponse) {
    if version < Version::HTTP_11 && resp.body().size() == BodySize::Stream {
        let head = resp.head_mut();
        head.no_chunking(true);
        head.set_connection_type(ConnectionType::Close);
    }
}
