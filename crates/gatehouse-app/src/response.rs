//! Building a reply: status, headers and a body (bytes, or a stream written as it is
//! produced), and handing it to the daemon.

use std::borrow::Cow;
use std::io;

use gatehouse_abi::Status;
use serde::Serialize;

use crate::ffi::RawRequest;

/// A header name or value: borrowed when it is a `&'static str`, owned otherwise.
pub type Text = Cow<'static, str>;

/// A body produced while the response is being sent.
type StreamFn = Box<dyn FnOnce(&mut BodyWriter<'_, '_>) -> io::Result<()>>;

enum Body {
    Bytes(Cow<'static, [u8]>),
    Stream(StreamFn),
}

/// An HTTP response built by an app.
///
/// A bytes body gets `Content-Length` from its length when the app does not set it. A
/// streamed body ([`Response::stream`]) goes out as it is written: chunked, unless the app
/// sets `Content-Length`.
pub struct Response {
    status: u16,
    headers: Vec<(Text, Text)>,
    body: Body,
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body = match &self.body {
            Body::Bytes(b) => format!("{} bytes", b.len()),
            Body::Stream(_) => "a stream".to_owned(),
        };
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body", &body)
            .finish()
    }
}

impl Response {
    /// An empty response with the given status.
    pub fn new(status: u16) -> Self {
        Response { status, headers: Vec::new(), body: Body::Bytes(Cow::Borrowed(&[])) }
    }

    /// A `200` reply with `Content-Type: text/plain; charset=utf-8`.
    pub fn text(body: impl Into<String>) -> Self {
        Response::new(200)
            .header("Content-Type", "text/plain; charset=utf-8")
            .body(body.into().into_bytes())
    }

    /// A `200` reply with `Content-Type: text/html; charset=utf-8`.
    pub fn html(body: impl Into<String>) -> Self {
        Response::new(200)
            .header("Content-Type", "text/html; charset=utf-8")
            .body(body.into().into_bytes())
    }

    /// A `200` reply with `Content-Type: application/json` and `value` serialised compactly.
    /// A value that cannot be serialised gives a 500.
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Self {
        match serde_json::to_vec(value) {
            Ok(body) => Response::new(200).header("Content-Type", "application/json").body(body),
            Err(e) => Response::new(500)
                .header("Content-Type", "text/plain; charset=utf-8")
                .body(format!("cannot serialise the JSON reply: {e}").into_bytes()),
        }
    }

    /// Sets the status code.
    #[must_use]
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// Appends a header. Names and values that are `&'static str` are not copied.
    #[must_use]
    pub fn header(mut self, name: impl Into<Text>, value: impl Into<Text>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Replaces the body: owned bytes (`Vec<u8>`, `String`) or a `&'static` slice, which is
    /// not copied.
    #[must_use]
    pub fn body(mut self, body: impl Into<Cow<'static, [u8]>>) -> Self {
        self.body = Body::Bytes(body.into());
        self
    }

    /// Replaces the body with one written while the response is sent: `produce` writes to
    /// the client through [`BodyWriter`] (each `flush` sends what was written so far at
    /// once). An error it returns after the first bytes went out cuts the connection, so the
    /// client never mistakes a broken body for a whole one.
    #[must_use]
    pub fn stream(
        mut self,
        produce: impl FnOnce(&mut BodyWriter<'_, '_>) -> io::Result<()> + 'static,
    ) -> Self {
        self.body = Body::Stream(Box::new(produce));
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The headers, in order.
    pub fn headers(&self) -> &[(Text, Text)] {
        &self.headers
    }

    /// The body bytes (empty for a streamed body).
    pub fn body_bytes(&self) -> &[u8] {
        match &self.body {
            Body::Bytes(b) => b,
            Body::Stream(_) => &[],
        }
    }

    /// Hands the response to the daemon.
    pub(crate) fn send(self, raw: &RawRequest<'_>) -> Status {
        // Content-Length from the body when the app set none, formatted on the stack.
        let mut digits = [0u8; 20];
        let length = match &self.body {
            Body::Bytes(body)
                if !self.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-length")) =>
            {
                Some(("Content-Length", format_decimal(body.len() as u64, &mut digits)))
            }
            _ => None,
        };
        let status = raw.start_response(u32::from(self.status), &self.headers, length);
        // (DISCONNECTED: the client left, or the daemon answered itself: nothing to fix.)
        if status != Status::OK && status != Status::DISCONNECTED {
            raw.log_error(&format!(
                "the daemon refused the response head (status {}, code {}): check the status \
                 code and header names and values",
                self.status, status.0
            ));
            return status;
        }
        match self.body {
            Body::Bytes(body) if body.is_empty() => Status::OK,
            Body::Bytes(body) => raw.write(&body),
            Body::Stream(produce) => {
                let mut writer = BodyWriter { raw };
                match produce(&mut writer) {
                    Ok(()) => Status::OK,
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Status::DISCONNECTED,
                    Err(e) => {
                        raw.log_error(&format!("the streamed body failed: {e}"));
                        Status::ERROR
                    }
                }
            }
        }
    }
}

/// `n` in decimal, written into `buf`.
fn format_decimal(mut n: u64, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    std::str::from_utf8(&buf[i..]).unwrap_or("0")
}

/// Writes a streamed body to the client (see [`Response::stream`]).
#[derive(Debug)]
pub struct BodyWriter<'r, 'a> {
    raw: &'r RawRequest<'a>,
}

fn status_error(status: Status) -> io::Result<()> {
    match status {
        Status::OK => Ok(()),
        Status::DISCONNECTED => {
            Err(io::Error::new(io::ErrorKind::BrokenPipe, "the client went away"))
        }
        other => Err(io::Error::other(format!("the daemon refused the write (code {})", other.0))),
    }
}

impl io::Write for BodyWriter<'_, '_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !buf.is_empty() {
            status_error(self.raw.write(buf))?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        status_error(self.raw.flush())
    }
}

#[cfg(test)]
mod tests {
    use super::{Response, format_decimal};

    #[test]
    fn decimal_lengths() {
        for n in [0u64, 7, 12, 100, 4096, u64::MAX] {
            assert_eq!(format_decimal(n, &mut [0; 20]), n.to_string());
        }
    }

    #[test]
    fn builders_set_status_type_and_body() {
        let cases = [
            (Response::text("hi"), 200, "text/plain; charset=utf-8", &b"hi"[..]),
            (Response::html("<p>"), 200, "text/html; charset=utf-8", &b"<p>"[..]),
            (
                Response::json(&serde_json::json!({"a": 1})).with_status(404),
                404,
                "application/json",
                &br#"{"a":1}"#[..],
            ),
        ];
        for (resp, status, ctype, body) in cases {
            assert_eq!(resp.status(), status);
            let (name, value) = &resp.headers()[0];
            assert_eq!((name.as_ref(), value.as_ref()), ("Content-Type", ctype));
            assert_eq!(resp.body_bytes(), body);
        }
    }
}
