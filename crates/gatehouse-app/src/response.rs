//! Building a reply: status, headers and body, and handing it to the daemon.

use gatehouse_abi::Status;
use serde::Serialize;

use crate::ffi::RawRequest;

/// An HTTP response built by an app.
///
/// `Content-Length` is added from the body when the app does not set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// An empty response with the given status.
    pub fn new(status: u16) -> Self {
        Response { status, headers: Vec::new(), body: Vec::new() }
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

    /// Appends a header.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Replaces the body.
    #[must_use]
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The headers, in order.
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }

    /// The body bytes.
    pub fn body_bytes(&self) -> &[u8] {
        &self.body
    }

    /// Hands the response to the daemon.
    pub(crate) fn send(mut self, raw: &RawRequest<'_>) -> Status {
        if !self.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("content-length")) {
            self.headers.push(("Content-Length".to_owned(), self.body.len().to_string()));
        }
        let status = raw.start_response(u32::from(self.status), &self.headers);
        if status != Status::OK {
            raw.log_error(&format!(
                "the daemon refused the response head (status {}, code {}): check the status \
                 code and header names and values",
                self.status, status.0
            ));
            return status;
        }
        if self.body.is_empty() { Status::OK } else { raw.write(&self.body) }
    }
}

#[cfg(test)]
mod tests {
    use super::Response;

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
            assert_eq!(resp.headers()[0], ("Content-Type".to_owned(), ctype.to_owned()));
            assert_eq!(resp.body_bytes(), body);
        }
    }
}
