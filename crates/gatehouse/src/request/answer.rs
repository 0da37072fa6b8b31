//! Every answer the daemon makes itself, 400 to 504, in one type: its status and the short
//! `text/plain` message that says what was wrong (the detail an operator needs goes to the
//! error log), for the in-process path and the worker relay alike.
//!
//! The rules that pick an answer live here too, so each is written once: an app file that
//! is missing or does not load ([`Answer::unavailable`]), a body that went wrong
//! ([`Answer::body`]), the app's deadline ([`Answer::timed_out`]).

use std::borrow::Cow;

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};

use super::input::BodyError;
use super::route::PathError;

/// An answer of the daemon's own.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// What was wrong, for the client.
    pub message: Cow<'static, str>,
    /// Whether the client is told to retry after a second (`Retry-After: 1`).
    pub retry: bool,
    /// The methods a 405 names in its `Allow` header.
    pub allow: Option<&'static str>,
    /// The realm a 401 names in its `WWW-Authenticate: Basic` challenge.
    pub realm: Option<std::sync::Arc<str>>,
}

/// The message of a 504: the app (or a worker process for it) did not answer within the
/// alias's `timeout`.
pub(crate) const TIMED_OUT: &str = "the app did not answer in time";

impl Answer {
    /// An answer with a fixed message.
    pub(crate) const fn new(status: u16, message: &'static str) -> Answer {
        Answer { status, message: Cow::Borrowed(message), retry: false, allow: None, realm: None }
    }

    /// An answer with a message made for this request.
    pub(crate) fn owned(status: u16, message: String) -> Answer {
        Answer { status, message: Cow::Owned(message), retry: false, allow: None, realm: None }
    }

    /// 400 Bad Request.
    pub(crate) fn bad(message: impl Into<Cow<'static, str>>) -> Answer {
        Answer { status: 400, message: message.into(), retry: false, allow: None, realm: None }
    }

    /// 413: a body, an upload or the fields past a limit.
    pub(crate) fn too_large(message: impl Into<Cow<'static, str>>) -> Answer {
        Answer { status: 413, message: message.into(), retry: false, allow: None, realm: None }
    }

    /// 503 with `Retry-After: 1`: every thread or worker is busy and the queue is full.
    pub(crate) const fn busy() -> Answer {
        Answer {
            status: 503,
            message: Cow::Borrowed("the app is busy; retry shortly"),
            retry: true,
            allow: None,
            realm: None,
        }
    }

    /// 405 for a method the daemon refuses itself (`TRACE` unless `trace_enable`, `CONNECT`:
    /// no app is a proxy), with the methods apps may get in `Allow`.
    pub(crate) const fn method_not_allowed(method: &'static str, allow: &'static str) -> Answer {
        Answer {
            status: 405,
            message: Cow::Borrowed(method),
            retry: false,
            allow: Some(allow),
            realm: None,
        }
    }

    /// 503 with `Retry-After: 1`: the form bodies held across the daemon would pass its
    /// `upload_budget`.
    pub(crate) const fn uploads_full() -> Answer {
        Answer {
            status: 503,
            message: Cow::Borrowed("the server holds too many uploads at once; retry shortly"),
            retry: true,
            allow: None,
            realm: None,
        }
    }

    /// 401 with a `WWW-Authenticate: Basic` challenge for `realm`.
    pub(crate) fn unauthorized(message: &'static str, realm: std::sync::Arc<str>) -> Answer {
        Answer { realm: Some(realm), ..Answer::new(401, message) }
    }

    /// 504: the app did not answer within its timeout.
    pub(crate) const fn timed_out() -> Answer {
        Answer::new(504, TIMED_OUT)
    }

    /// 500: the call ended without a reply reaching the HTTP side.
    pub(crate) const fn call_lost() -> Answer {
        Answer::new(500, "the app call was lost; the error log has the details")
    }

    /// The answer for an app file that is `missing`, or present and broken: a missing app
    /// is 404; a directory group answers for a broken file as for a missing one (its URL
    /// space is its folder's names), a single app's alias 500.
    pub(crate) const fn unavailable(missing: bool, group: bool) -> Answer {
        if missing || group {
            Answer::new(404, "no such app")
        } else {
            Answer::new(500, "the app could not be loaded; the error log says why")
        }
    }

    /// The answer for a request body that failed before the app answered.
    pub(crate) fn body(fault: BodyError, max_body: u64) -> Answer {
        match fault {
            BodyError::TooLarge => Answer::too_large(format!(
                "the request body is larger than this alias's max_body of {max_body} bytes"
            )),
            BodyError::Malformed => {
                Answer::bad("the request body is shorter than its Content-Length or badly chunked")
            }
            BodyError::Disconnected => Answer::bad("the client went away while sending the body"),
            BodyError::TimedOut => Answer::new(408, "the request body was not received in time"),
            BodyError::AppStalled => {
                Answer::new(504, "the app did not read the request body in time")
            }
        }
    }

    /// The answer as an HTTP response: `STATUS REASON: message` in `text/plain`.
    pub(crate) fn response(&self) -> HttpResponse {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = HttpResponse::build(status);
        resp.insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; charset=utf-8"),
        ));
        if self.retry {
            resp.insert_header((header::RETRY_AFTER, HeaderValue::from_static("1")));
        }
        if let Some(allow) = self.allow {
            resp.insert_header((header::ALLOW, HeaderValue::from_static(allow)));
        }
        // The realm was checked when the configuration was read (no quote, backslash or
        // control character).
        if let Some(realm) = &self.realm
            && let Ok(v) =
                HeaderValue::from_str(&format!("Basic realm=\"{realm}\", charset=\"UTF-8\""))
        {
            resp.insert_header((header::WWW_AUTHENTICATE, v));
        }
        let mut resp = resp.body(format!(
            "{} {}: {}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or(""),
            self.message
        ));
        resp.extensions_mut().insert(DaemonAnswer);
        resp
    }
}

/// Marks a response the daemon made itself (an [`Answer`]), not an app's reply: the error
/// documents replace its body (`error_documents`), and an app's only with `error_override`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DaemonAnswer;

impl From<PathError> for Answer {
    fn from(e: PathError) -> Answer {
        Answer::new(e.status(), e.reason())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unavailable_apps_answer_by_alias_kind() {
        // (missing, group) -> status
        let table = [
            ((true, false), 404),
            ((true, true), 404),
            ((false, true), 404),
            ((false, false), 500),
        ];
        for ((missing, group), status) in table {
            assert_eq!(Answer::unavailable(missing, group).status, status, "{missing} {group}");
        }
    }

    #[test]
    fn body_faults_map_to_statuses() {
        let table = [
            (BodyError::TooLarge, 413),
            (BodyError::Malformed, 400),
            (BodyError::Disconnected, 400),
            (BodyError::TimedOut, 408),
            (BodyError::AppStalled, 504),
        ];
        for (fault, status) in table {
            assert_eq!(Answer::body(fault, 10).status, status, "{fault:?}");
        }
        assert!(Answer::body(BodyError::TooLarge, 10).message.contains("max_body of 10 bytes"));
    }

    #[test]
    fn the_response_says_status_reason_and_message() {
        let resp = Answer::busy().response();
        assert_eq!(resp.status(), 503);
        assert_eq!(resp.headers().get(header::RETRY_AFTER).map(|v| v.as_bytes()), Some(&b"1"[..]));
        let resp = Answer::new(404, "no such app").response();
        assert!(resp.headers().get(header::RETRY_AFTER).is_none());
        assert!(resp.headers().get(header::ALLOW).is_none());
        let body = actix_web::body::to_bytes(resp.into_body());
        let body = futures_util::FutureExt::now_or_never(body).and_then(Result::ok);
        assert_eq!(body.as_deref(), Some(&b"404 Not Found: no such app\n"[..]));
        let resp = Answer::method_not_allowed("no TRACE", "GET, POST").response();
        assert_eq!(resp.status(), 405);
        assert_eq!(
            resp.headers().get(header::ALLOW).map(|v| v.as_bytes()),
            Some(&b"GET, POST"[..])
        );
    }
}
