//! The access log: one line per request, Apache's Combined Log Format followed by three
//! documented fields, so goaccess, awstats and fail2ban read it as they read Apache's:
//!
//! ```text
//! 127.0.0.1 - - [13/Apr/2021:10:26:26 +0900] "GET /myapp?id=A001 HTTP/1.1" 200 30 "-" "curl/8.0" app=myapp req=42 time_us=812
//! ```
//!
//! `%h %l %u %t "%r" %>s %b "%{Referer}i" "%{User-Agent}i"` (client address (behind one of
//! `trusted_proxies`, the client it names, as `REMOTE_ADDR`), `-`, `-`,
//! the time the request arrived, the request line as received, the status, the body bytes
//! sent or `-`, the Referer and User-Agent headers or `-`), then:
//! - `app=NAME`: the app that served it (a single app's alias name, a group's plugin
//!   NAME), `-` when the daemon answered before any app was chosen (404, 400);
//! - `req=ID`: the request id used in the debug and error logs, `-` when none was given;
//! - `time_us=N`: microseconds from the request's arrival to the last body byte handed to
//!   the connection (Apache's `%D`).
//!
//! As in Apache, `"`, `\`, control characters and bytes above 0x7e in the request line and
//! headers are written as `\"`, `\\` and `\xHH`, so a client cannot forge a line.
//!
//! [`AccessLog`] is an actix middleware wrapping the whole App: every response counts,
//! the daemon's own 4xx/5xx answers included. A streamed body is counted as it goes out
//! and the line is written when it ends, or when it is dropped (the client went away: the
//! bytes sent so far). The handler tells the middleware the client, the app and the
//! request id with [`note`]; a request refused before `100 Continue` (it never reaches the
//! App) is logged by [`refused`]. Requests that never become a request (a malformed request line, which actix
//! answers itself) are not in the access log. Lines are queued like debug-log lines
//! ([`crate::logs`]): writing never waits for the disk.

use std::future::{Future, Ready, ready};
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use actix_web::body::{BodySize, BoxBody, MessageBody};
use actix_web::dev::{
    RequestHead, Service, ServiceRequest, ServiceResponse, Transform, forward_ready,
};
use actix_web::http::{Version, header};
use actix_web::web::Bytes;
use actix_web::{HttpMessage as _, HttpRequest};

use crate::logs::{self, Sink};

/// What the handler learned about a request, handed to the access log in one request
/// extension by [`note`]: the client (behind a trusted proxy, the client it names), the
/// alias it was routed to (for the handler's metrics), the app and the request id.
#[derive(Debug, Clone)]
pub(crate) struct Served {
    pub(crate) client: IpAddr,
    pub(crate) mount: Option<usize>,
    pub(crate) app: Option<Arc<str>>,
    pub(crate) request_id: Option<u64>,
    /// The user an `auth_user_script` let in (the log's `%u`).
    pub(crate) user: Option<Box<[u8]>>,
}

impl Served {
    /// A request from `client`, not routed yet.
    pub(crate) fn new(client: IpAddr) -> Served {
        Served { client, mount: None, app: None, request_id: None, user: None }
    }
}

/// Escapes a field that the client chose and that is not quoted in the line (an app name from
/// the URL, a user name): as [`escape_into`], spaces too.
fn escape_field(bytes: &[u8], out: &mut String) {
    for &b in bytes {
        if b == b' ' {
            out.push_str("\\x20");
        } else {
            escape_into(&[b], out);
        }
    }
}

/// Records, for the access log, what the handler learned about `req`.
pub(crate) fn note(req: &HttpRequest, served: Served) {
    req.extensions_mut().insert(served);
}

/// Logs a request the listener refused before `100 Continue` (it never reached the App):
/// `status` with a body of `bytes`, from the peer, counted under `app` if one was routed.
pub(crate) fn refused(
    head: &RequestHead,
    peer: Option<std::net::SocketAddr>,
    status: u16,
    bytes: u64,
    app: Option<Arc<str>>,
) {
    let Some(sink) = logs::access_sink() else { return };
    let client = peer.map_or_else(|| "-".to_owned(), |p| p.ip().to_string());
    let mut entry = Entry::begin(head, sink, client);
    entry.status = status;
    entry.app = app;
    entry.write(bytes);
}

/// The middleware: `App::new().wrap(AccessLog)`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AccessLog;

impl<S, B> Transform<S, ServiceRequest> for AccessLog
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<LoggedBody>;
    type Error = actix_web::Error;
    type Transform = AccessLogService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(AccessLogService { service }))
    }
}

/// The service [`AccessLog`] wraps around the App.
#[derive(Debug)]
pub(crate) struct AccessLogService<S> {
    service: S,
}

type ServiceFuture<B> = Pin<Box<dyn Future<Output = Result<ServiceResponse<B>, actix_web::Error>>>>;

impl<S, B> Service<ServiceRequest> for AccessLogService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = actix_web::Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<LoggedBody>;
    type Error = actix_web::Error;
    type Future = ServiceFuture<LoggedBody>;

    forward_ready!(service);

    fn call(&self, req: ServiceRequest) -> Self::Future {
        let entry = logs::access_sink().map(|sink| Entry::begin(req.head(), sink, peer(&req)));
        let fut = self.service.call(req);
        Box::pin(async move {
            let res = match fut.await {
                Ok(res) => res,
                Err(e) => {
                    if let Some(mut entry) = entry {
                        entry.status = e.as_response_error().status_code().as_u16();
                        entry.write(0);
                    }
                    return Err(e);
                }
            };
            let entry = entry.map(|mut entry| {
                entry.status = res.status().as_u16();
                if let Some(s) = res.request().extensions().get::<Served>() {
                    entry.client = s.client.to_string();
                    entry.app = s.app.clone();
                    entry.request_id = s.request_id;
                    if let Some(user) = s.user.as_deref().filter(|u| !u.is_empty()) {
                        entry.user.clear();
                        escape_field(user, &mut entry.user);
                    }
                }
                Box::new(entry)
            });
            Ok(res.map_body(|_, body| LoggedBody { inner: body.boxed(), entry, bytes: 0 }))
        })
    }
}

/// The peer's address for `%h`, until the handler names the client (behind one of
/// `trusted_proxies`, the client it names, as `REMOTE_ADDR` and mod_remoteip's `%a`, so a
/// log reader such as fail2ban sees clients, not the proxy).
fn peer(req: &ServiceRequest) -> String {
    req.peer_addr().map_or_else(|| "-".to_owned(), |p| p.ip().to_string())
}

/// One access-log line in the making.
#[derive(Debug)]
struct Entry {
    sink: Arc<Sink>,
    start: Instant,
    time: std::time::SystemTime,
    client: String,
    request_line: String,
    referer: String,
    user_agent: String,
    status: u16,
    app: Option<Arc<str>>,
    request_id: Option<u64>,
    /// `-`, or the user an authentication hook let in, escaped (spaces too).
    user: String,
}

impl Entry {
    fn begin(req: &RequestHead, sink: Arc<Sink>, client: String) -> Entry {
        let version = match req.version {
            Version::HTTP_09 => "HTTP/0.9",
            Version::HTTP_10 => "HTTP/1.0",
            Version::HTTP_2 => "HTTP/2.0",
            Version::HTTP_3 => "HTTP/3.0",
            _ => "HTTP/1.1",
        };
        let uri = &req.uri;
        let mut request_line = String::with_capacity(uri.path().len() + 32);
        escape_into(req.method.as_str().as_bytes(), &mut request_line);
        request_line.push(' ');
        // The target as sent: origin-form without an allocation, absolute-form whole.
        match (uri.authority(), uri.path_and_query()) {
            (None, Some(pq)) => escape_into(pq.as_str().as_bytes(), &mut request_line),
            _ => escape_into(uri.to_string().as_bytes(), &mut request_line),
        }
        request_line.push(' ');
        request_line.push_str(version);
        let header = |name| {
            req.headers.get(name).map_or_else(
                || "-".to_owned(),
                |v| {
                    let mut s = String::new();
                    escape_into(v.as_bytes(), &mut s);
                    s
                },
            )
        };
        Entry {
            sink,
            start: Instant::now(),
            time: std::time::SystemTime::now(),
            client,
            request_line,
            referer: header(header::REFERER),
            user_agent: header(header::USER_AGENT),
            status: 0,
            app: None,
            request_id: None,
            user: "-".to_owned(),
        }
    }

    fn format(&self, bytes: u64, micros: u128) -> String {
        use std::fmt::Write as _;
        let mut line = String::with_capacity(
            96 + self.client.len()
                + self.request_line.len()
                + self.referer.len()
                + self.user_agent.len(),
        );
        line.push_str(&self.client);
        line.push_str(" - ");
        line.push_str(&self.user);
        line.push_str(" [");
        clf_time(self.time, &mut line);
        line.push_str("] \"");
        line.push_str(&self.request_line);
        let _ = write!(line, "\" {} ", self.status);
        if bytes == 0 {
            line.push('-');
        } else {
            let _ = write!(line, "{bytes}");
        }
        line.push_str(" \"");
        line.push_str(&self.referer);
        line.push_str("\" \"");
        line.push_str(&self.user_agent);
        line.push_str("\" app=");
        match &self.app {
            // A group's plugin NAME comes from the URL: escape it too, spaces included.
            Some(a) => escape_field(a.as_bytes(), &mut line),
            None => line.push('-'),
        }
        line.push_str(" req=");
        match self.request_id {
            Some(id) => {
                let _ = write!(line, "{id}");
            }
            None => line.push('-'),
        }
        let _ = writeln!(line, " time_us={micros}");
        line
    }

    fn write(&self, bytes: u64) {
        let line = self.format(bytes, self.start.elapsed().as_micros());
        // A dropped line is counted and reported by the sink.
        let _ = logs::submit(&self.sink, line.into_bytes());
    }
}

/// Appends `t` as Apache's `%t` (`13/Apr/2021:10:26:26 +0900`, local time), formatted once
/// per second per thread: formatting a date is most of a line's cost otherwise.
fn clf_time(t: std::time::SystemTime, out: &mut String) {
    thread_local! {
        static CACHE: std::cell::RefCell<(u64, String)> =
            const { std::cell::RefCell::new((u64::MAX, String::new())) };
    }
    let secs = t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs {
            let local: chrono::DateTime<chrono::Local> = t.into();
            c.1 = local.format("%d/%b/%Y:%H:%M:%S %z").to_string();
            c.0 = secs;
        }
        out.push_str(&c.1);
    });
}

/// Apache's escaping of logged request data.
fn escape_into(bytes: &[u8], out: &mut String) {
    for &b in bytes {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(b)),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.push_str("\\x");
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
            }
        }
    }
}

/// A response body that counts its bytes and writes the access-log line when it ends or
/// is dropped.
#[derive(Debug)]
pub(crate) struct LoggedBody {
    inner: BoxBody,
    entry: Option<Box<Entry>>,
    bytes: u64,
}

impl LoggedBody {
    fn finish(&mut self) {
        if let Some(entry) = self.entry.take() {
            entry.write(self.bytes);
        }
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        self.finish();
    }
}

impl MessageBody for LoggedBody {
    type Error = Box<dyn std::error::Error>;

    fn size(&self) -> BodySize {
        self.inner.size()
    }

    fn poll_next(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Self::Error>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_next(cx);
        match &polled {
            Poll::Ready(Some(Ok(chunk))) => this.bytes += chunk.len() as u64,
            Poll::Ready(None | Some(Err(_))) => this.finish(),
            Poll::Pending => {}
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    #[test]
    fn request_data_is_escaped_like_apache() {
        for (input, want) in [
            (&b"GET /a?b=c HTTP/1.1"[..], "GET /a?b=c HTTP/1.1"),
            (b"q\"uote", "q\\\"uote"),
            (b"back\\slash", "back\\\\slash"),
            (b"new\nline\r", "new\\x0aline\\x0d"),
            (b"caf\xc3\xa9", "caf\\xc3\\xa9"),
            (b"del\x7f", "del\\x7f"),
        ] {
            let mut out = String::new();
            escape_into(input, &mut out);
            assert_eq!(out, want);
        }
    }

    #[test]
    fn the_line_is_combined_log_format_plus_three_fields() {
        let sink = crate::logs::sink(
            std::path::Path::new("/nonexistent/access-test.log"),
            || "access log".to_owned(),
            crate::logs::sink::Reports::ErrorLog,
        );
        let time = chrono::FixedOffset::east_opt(9 * 3600)
            .and_then(|tz| tz.with_ymd_and_hms(2021, 4, 13, 10, 26, 26).single())
            .expect("time");
        let mut entry = Entry {
            sink,
            start: Instant::now(),
            time: std::time::SystemTime::from(time),
            client: "127.0.0.1".to_owned(),
            request_line: "GET /myapp?id=A001 HTTP/1.1".to_owned(),
            referer: "-".to_owned(),
            user_agent: "curl/8.0".to_owned(),
            status: 200,
            app: Some(Arc::from("my app")),
            request_id: Some(42),
            user: "-".to_owned(),
        };
        let line = entry.format(30, 812);
        let local = time.with_timezone(&chrono::Local).format("%d/%b/%Y:%H:%M:%S %z").to_string();
        assert_eq!(
            line,
            format!(
                "127.0.0.1 - - [{local}] \"GET /myapp?id=A001 HTTP/1.1\" 200 30 \"-\" \"curl/8.0\" app=my\\x20app req=42 time_us=812\n"
            )
        );
        entry.app = None;
        entry.request_id = None;
        entry.status = 404;
        assert!(entry.format(0, 5).contains("\" 404 - \"-\" \"curl/8.0\" app=- req=- time_us=5\n"));
    }

    /// The cost of one access-log line on the request path (Entry::begin, formatting,
    /// queueing) and the writer's throughput. `cargo test --release -p gatehouse --lib --
    /// --ignored --nocapture access_line_cost`.
    #[test]
    #[ignore = "a measurement, not a test"]
    fn access_line_cost() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let sink = crate::logs::sink(
            &tmp.path().join("access.log"),
            || "access log".to_owned(),
            crate::logs::sink::Reports::Stderr,
        );
        let req = actix_web::test::TestRequest::get()
            .uri("/myapp?id=A001")
            .insert_header(("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) Chrome/89.0"))
            .insert_header(("Referer", "http://127.0.0.1:8080/form.html"))
            .peer_addr("127.0.0.1:5555".parse().expect("addr"))
            .to_srv_request();
        const N: u32 = 200_000;
        let started = Instant::now();
        for i in 0..N {
            let mut e = Entry::begin(req.head(), Arc::clone(&sink), peer(&req));
            e.status = 200;
            e.app = Some(Arc::from("myapp"));
            e.request_id = Some(u64::from(i));
            e.write(30);
        }
        let queued = started.elapsed();
        assert!(crate::logs::flush());
        let written = started.elapsed();
        println!(
            "access log: {:.2} us per request on the request path; {:.0} lines/s to disk",
            queued.as_secs_f64() * 1e6 / f64::from(N),
            f64::from(N) / written.as_secs_f64()
        );
    }
}
