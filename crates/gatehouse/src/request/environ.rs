//! Environ: a request's CGI/WSGI variables, built as mod_wsgi builds them, in the compact
//! [`PairBuf`] form that crosses the ABI without a copy per string.

use std::net::SocketAddr;
use std::ops::Range;

use actix_web::HttpRequest;
use gatehouse_abi::{Pair, Str};
use gatehouse_config::Alias;

use crate::request::forwarded::Origin;

/// Name/value byte-string pairs stored in one buffer, in insertion order.
#[derive(Debug, Default, Clone)]
pub struct PairBuf {
    bytes: Vec<u8>,
    /// (name range, value range) into `bytes`.
    spans: Vec<(Range<usize>, Range<usize>)>,
}

impl PairBuf {
    /// An empty buffer with room for about `pairs` entries of `bytes` total.
    pub(crate) fn with_capacity(pairs: usize, bytes: usize) -> Self {
        PairBuf { bytes: Vec::with_capacity(bytes), spans: Vec::with_capacity(pairs) }
    }

    /// Appends a pair.
    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        let n0 = self.bytes.len();
        self.bytes.extend_from_slice(name);
        let n1 = self.bytes.len();
        self.bytes.extend_from_slice(value);
        self.spans.push((n0..n1, n1..self.bytes.len()));
    }

    /// Appends a pair whose value is `value` formatted, without an intermediate string.
    pub(crate) fn push_display(&mut self, name: &[u8], value: impl std::fmt::Display) {
        use std::io::Write as _;
        // Writing into a Vec cannot fail.
        self.push_with(
            |b| b.extend_from_slice(name),
            |b| {
                let _ = write!(b, "{value}");
            },
        );
    }

    /// Appends a pair whose name and value are written by closures into the buffer.
    fn push_with(&mut self, name: impl FnOnce(&mut Vec<u8>), value: impl FnOnce(&mut Vec<u8>)) {
        let n0 = self.bytes.len();
        name(&mut self.bytes);
        let n1 = self.bytes.len();
        value(&mut self.bytes);
        self.spans.push((n0..n1, n1..self.bytes.len()));
    }

    /// Sets `name` to `value`: any earlier pair of that name is dropped (its bytes stay in
    /// the buffer, unused), and the pair appended.
    pub(crate) fn set(&mut self, name: &[u8], value: &[u8]) {
        let bytes = &self.bytes;
        self.spans.retain(|(n, _)| &bytes[n.clone()] != name);
        self.push(name, value);
    }

    /// The pairs, in order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.spans.iter().map(|(n, v)| (&self.bytes[n.clone()], &self.bytes[v.clone()]))
    }

    /// The first value of `name`.
    pub fn get(&self, name: &[u8]) -> Option<&[u8]> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Replaces `out` with the ABI view (reusing its allocation): valid while `self` is
    /// neither moved nor changed.
    pub fn fill_abi(&self, out: &mut Vec<Pair>) {
        out.clear();
        out.extend(self.iter().map(|(n, v)| Pair { name: Str::new(n), value: Str::new(v) }));
    }
}

/// What routing decided, for the environ.
#[derive(Debug, Clone, Copy)]
pub struct RouteVars<'a> {
    /// SCRIPT_NAME.
    pub script_name: &'a [u8],
    /// PATH_INFO (decoded).
    pub path_info: &'a [u8],
    /// SCRIPT_FILENAME: the plugin file.
    pub script_filename: &'a [u8],
}

/// The software name and version in SERVER_SOFTWARE.
pub(crate) const SERVER_SOFTWARE: &str = concat!("Gatehouse/", env!("CARGO_PKG_VERSION"));

/// Whether a header name may become an `HTTP_*` variable. As Apache 2.4 does, names with
/// anything but letters, digits and `-` are dropped, so `X_Forwarded_For` cannot pose as
/// `X-Forwarded-For`.
fn cgi_safe_header(name: &str) -> bool {
    name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Whether header `name` (lower case) becomes an `HTTP_*` variable for this alias. As under
/// mod_wsgi: `Authorization` only with `pass_authorization` (WSGIPassAuthorization), never
/// `Proxy` (the httpoxy fix: `HTTP_PROXY` would pose as the `http_proxy` setting).
fn passes(name: &str, alias: &Alias) -> bool {
    match name {
        "content-type" | "content-length" | "proxy" => false,
        "authorization" => alias.pass_authorization,
        _ => cgi_safe_header(name),
    }
}

/// The listener a request came in on: whether it serves HTTPS, and its address. Each
/// listener puts one in its app's data (`http::listen`); without it (a test's `App`),
/// actix-web's `AppConfig` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListenerInfo {
    /// Whether it serves HTTPS.
    pub(crate) secure: bool,
    /// The address it listens on.
    pub(crate) addr: std::net::SocketAddr,
}

impl ListenerInfo {
    /// The listener of `req`.
    pub(crate) fn of(req: &HttpRequest) -> ListenerInfo {
        req.app_data::<ListenerInfo>().copied().unwrap_or_else(|| {
            let config = req.app_config();
            ListenerInfo { secure: config.secure(), addr: config.local_addr() }
        })
    }
}

/// The request target exactly as sent, when it held raw bytes >= 0x80 (the parser keeps it
/// beside the `Uri`, which has them percent-encoded; see vendor/README.md).
pub(crate) fn raw_target(req: &HttpRequest) -> Option<actix_web::web::Bytes> {
    use actix_web::HttpMessage as _;
    req.extensions().get::<actix_http::RawTarget>().map(|t| t.0.clone())
}

/// Builds the CGI/WSGI variables of a request as mod_wsgi does, then adds the alias's `env`
/// settings whose names the request did not already set. An HTTPS connection gives
/// `HTTPS=on` and the `https` scheme (as mod_ssl and mod_wsgi); `origin` is the client as
/// the handler worked it out once (a peer among `trusted_proxies` may say who the client is
/// and which scheme it used: see [`crate::request::forwarded`]).
pub fn cgi_vars(req: &HttpRequest, route: RouteVars<'_>, alias: &Alias, origin: Origin) -> PairBuf {
    let env = &alias.env;
    let headers = req.headers();
    let peer = req.peer_addr();
    let listener = ListenerInfo::of(req);
    let https = origin.https.unwrap_or(listener.secure);
    let mut vars = PairBuf::with_capacity(24 + headers.len() + env.len(), 768);
    let uri = req.uri();
    vars.push(b"REQUEST_METHOD", req.method().as_str().as_bytes());
    vars.push(b"SCRIPT_NAME", route.script_name);
    vars.push(b"PATH_INFO", route.path_info);
    // The request target as sent: origin form (`/a?b`) or absolute form (`http://h/a?b`),
    // raw bytes >= 0x80 included when the client sent some (the URI has them encoded).
    if let Some(raw) = raw_target(req) {
        // Up to a fragment, which the URI drops too.
        let raw = &raw[..raw.iter().position(|&b| b == b'#').unwrap_or(raw.len())];
        let query = raw.iter().position(|&b| b == b'?').map_or(&b""[..], |q| &raw[q + 1..]);
        vars.push(b"QUERY_STRING", query);
        vars.push(b"REQUEST_URI", raw);
    } else if uri.scheme().is_some() {
        vars.push(b"QUERY_STRING", uri.query().unwrap_or("").as_bytes());
        vars.push(b"REQUEST_URI", uri.to_string().as_bytes());
    } else {
        vars.push(b"QUERY_STRING", uri.query().unwrap_or("").as_bytes());
        let request_uri = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
        vars.push(b"REQUEST_URI", request_uri.as_bytes());
    }
    if let Some(v) = headers.get(actix_web::http::header::CONTENT_TYPE) {
        vars.push(b"CONTENT_TYPE", v.as_bytes());
    }
    if let Some(v) = headers.get(actix_web::http::header::CONTENT_LENGTH) {
        vars.push(b"CONTENT_LENGTH", v.as_bytes());
    }
    let local = listener.addr;
    // As Apache with `UseCanonicalName Off`: the name and port the client asked for (the
    // absolute-form target's authority, else the Host header), the port defaulting to 80.
    let host = uri
        .authority()
        .map(|a| a.as_str())
        .or_else(|| headers.get(actix_web::http::header::HOST).and_then(|h| h.to_str().ok()));
    let (server_name, server_port) = host.map(host_and_port).unwrap_or_default();
    if server_name.is_empty() {
        vars.push_display(b"SERVER_NAME", local.ip());
    } else {
        vars.push_with(
            |b| b.extend_from_slice(b"SERVER_NAME"),
            |b| b.extend(server_name.bytes().map(|c| c.to_ascii_lowercase())),
        );
    }
    let default_port = if https { "443" } else { "80" };
    vars.push(b"SERVER_PORT", server_port.unwrap_or(default_port).as_bytes());
    vars.push_display(b"SERVER_ADDR", local.ip());
    vars.push(b"SERVER_PROTOCOL", protocol(req.version()).as_bytes());
    vars.push(b"SERVER_SOFTWARE", SERVER_SOFTWARE.as_bytes());
    vars.push(b"GATEWAY_INTERFACE", b"CGI/1.1");
    if let Some(peer) = peer {
        // The client a trusted proxy named, on the peer's port.
        let ip = origin.ip;
        push_peer(&mut vars, SocketAddr::new(ip, peer.port()));
    }
    let scheme: &[u8] = if https { b"https" } else { b"http" };
    if https {
        vars.push(b"HTTPS", b"on");
    }
    vars.push(b"REQUEST_SCHEME", scheme);
    vars.push(b"wsgi.url_scheme", scheme);
    vars.push(b"SCRIPT_FILENAME", route.script_filename);
    for name in headers.keys() {
        let name = name.as_str();
        if !passes(name, alias) {
            continue;
        }
        vars.push_with(
            |buf| {
                buf.extend_from_slice(b"HTTP_");
                buf.extend(
                    name.bytes().map(|b| if b == b'-' { b'_' } else { b.to_ascii_uppercase() }),
                );
            },
            |buf| {
                for (i, v) in headers.get_all(name).enumerate() {
                    if i > 0 {
                        buf.extend_from_slice(b", ");
                    }
                    buf.extend_from_slice(v.as_bytes());
                }
            },
        );
    }
    for (k, v) in env {
        if vars.get(k.as_bytes()).is_none() {
            vars.push(k.as_bytes(), v.as_bytes());
        }
    }
    vars
}

fn push_peer(vars: &mut PairBuf, peer: SocketAddr) {
    vars.push_display(b"REMOTE_ADDR", peer.ip());
    vars.push_display(b"REMOTE_PORT", peer.port());
}

fn protocol(v: actix_web::http::Version) -> &'static str {
    use actix_web::http::Version;
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// Splits a Host header into name and port (`None` when absent); IPv6 literals keep their
/// brackets, as Apache keeps them (`[::1]`).
fn host_and_port(host: &str) -> (&str, Option<&str>) {
    let (name, port) = if host.starts_with('[') {
        match host.find(']') {
            Some(end) => (&host[..=end], host[end + 1..].strip_prefix(':')),
            None => (host, None),
        }
    } else {
        match host.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (host, None),
        }
    };
    (name, port.filter(|p| !p.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_header_to_server_name_and_port() {
        for (host, want) in [
            ("example.com", ("example.com", None)),
            ("example.com:8080", ("example.com", Some("8080"))),
            ("example.com:", ("example.com", None)),
            ("127.0.0.1:80", ("127.0.0.1", Some("80"))),
            ("[::1]:8080", ("[::1]", Some("8080"))),
            ("[::1]", ("[::1]", None)),
        ] {
            assert_eq!(host_and_port(host), want, "{host}");
        }
    }

    #[test]
    fn header_names_apache_would_drop() {
        for (name, ok) in [
            ("user-agent", true),
            ("x-forwarded-for", true),
            ("x_forwarded_for", false),
            ("a.b", false),
        ] {
            assert_eq!(cgi_safe_header(name), ok, "{name}");
        }
    }

    #[test]
    fn pair_buf_keeps_order_and_bytes() {
        let mut b = PairBuf::default();
        b.push(b"A", b"1");
        b.push(b"B", b"\xff\x00");
        b.push(b"A", b"2");
        let all: Vec<_> = b.iter().collect();
        assert_eq!(all, vec![(&b"A"[..], &b"1"[..]), (b"B", b"\xff\x00"), (b"A", b"2")]);
        assert_eq!(b.get(b"A"), Some(&b"1"[..]));
        let mut abi = Vec::new();
        b.fill_abi(&mut abi);
        assert_eq!(abi.len(), 3);
        assert_eq!(abi[1].value.len, 2);
    }
}
