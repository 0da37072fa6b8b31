//! Streamed bodies, both ways: a reply written in pieces reaches the client piece by
//! piece (chunked without a Content-Length, sized with one), a one-piece reply keeps its exact
//! length, a declared Content-Length is enforced by cutting the connection, HEAD gets the
//! declared length and no body, and a request body that is not a form streams to the app while
//! it reads (and while it answers), never silently truncated.
//!
//! Order is proved with handshakes, never with sleeps: the `probe` app waits for a marker file
//! `go-I` before it writes piece I+1, and the test creates it only after it has read piece I;
//! the echo test sends body piece 2 only after it has read the app's echo of piece 1. The
//! timeouts below only turn a hang into a failure.
//!
//! [`Conn`] is a raw HTTP/1.1 connection that reads a reply incrementally and tells a complete
//! body from a cut one (the harness's client reads to EOF and refuses a short body outright).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::harness::Daemon;

/// How long one read or write may block before the test fails.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// A response head read off a [`Conn`].
#[derive(Debug, Clone)]
pub(crate) struct Head {
    /// The status code.
    pub(crate) status: u16,
    /// Headers in order received.
    pub(crate) headers: Vec<(String, String)>,
    /// Whether the request was HEAD (the reply then has no body whatever its headers say).
    head_request: bool,
}

impl Head {
    /// The first header `name` (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Whether the body is chunked.
    pub(crate) fn chunked(&self) -> bool {
        self.header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    }

    /// The Content-Length, if any (panics on a malformed one).
    pub(crate) fn content_length(&self) -> Option<usize> {
        self.header("content-length")
            .map(|v| v.parse().unwrap_or_else(|_| panic!("bad Content-Length {v:?}")))
    }
}

impl std::fmt::Display for Head {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        for (n, v) in &self.headers {
            write!(f, "\n{n}: {v}")?;
        }
        Ok(())
    }
}

/// How the server ended the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum End {
    /// A clean EOF.
    Eof,
    /// A read error (a reset): the server cut the connection.
    Error(String),
}

/// A body read to the end of the connection.
#[derive(Debug)]
pub(crate) struct Body {
    /// The body bytes received (de-chunked), at most what the framing allows.
    pub(crate) bytes: Vec<u8>,
    /// Whether the framing says the body is whole: the last chunk of a chunked body arrived,
    /// or exactly Content-Length bytes did.
    pub(crate) complete: bool,
    /// Bytes after the framed body's end (or past Content-Length).
    pub(crate) extra: usize,
    /// How the connection ended.
    pub(crate) end: End,
}

/// A raw HTTP/1.1 connection to a daemon.
#[derive(Debug)]
pub(crate) struct Conn {
    stream: TcpStream,
    /// Bytes read and not yet consumed as the head: after [`Conn::head`], the raw body so far.
    buf: Vec<u8>,
    /// Set once the server ended the connection.
    ended: Option<End>,
    head_request: bool,
}

impl Conn {
    /// Connects to the daemon.
    pub(crate) fn open(d: &Daemon) -> Conn {
        let stream =
            TcpStream::connect(d.addr).unwrap_or_else(|e| panic!("connect {}: {e}", d.addr));
        stream.set_read_timeout(Some(IO_TIMEOUT)).expect("read timeout");
        stream.set_write_timeout(Some(IO_TIMEOUT)).expect("write timeout");
        Conn { stream, buf: Vec::new(), ended: None, head_request: false }
    }

    /// Connects and sends `METHOD target` with `headers` (each `Name: value`, ended by the
    /// blank line) and nothing else: the caller sends any body.
    pub(crate) fn request(d: &Daemon, method: &str, target: &str, headers: &[&str]) -> Conn {
        let mut c = Conn::open(d);
        c.head_request = method == "HEAD";
        let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: {}\r\n", d.addr);
        for h in headers {
            raw.push_str(h);
            raw.push_str("\r\n");
        }
        raw.push_str("\r\n");
        c.send(raw.as_bytes());
        c
    }

    /// Sends bytes (panics when the write fails).
    #[track_caller]
    pub(crate) fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap_or_else(|e| panic!("cannot send to the daemon: {e}"));
    }

    /// Sends one chunk of a chunked request body (the last one when `data` is empty).
    #[track_caller]
    pub(crate) fn send_chunk(&mut self, data: &[u8]) {
        let mut raw = format!("{:x}\r\n", data.len()).into_bytes();
        raw.extend_from_slice(data);
        raw.extend_from_slice(b"\r\n");
        if data.is_empty() {
            raw.extend_from_slice(b"\r\n");
        }
        self.send(&raw);
    }

    /// Half-closes: the daemon sees the end of the request stream, the reply can still come.
    pub(crate) fn shutdown_write(&mut self) {
        self.stream.shutdown(Shutdown::Write).expect("shut down the write side");
    }

    /// Reads once more into `buf`; false once the server ended the connection. A timeout is a
    /// test failure naming `waiting_for`.
    #[track_caller]
    fn fill(&mut self, waiting_for: &str) -> bool {
        if self.ended.is_some() {
            return false;
        }
        let mut chunk = [0u8; 64 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => {
                self.ended = Some(End::Eof);
                false
            }
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => panic!(
                "no progress in {IO_TIMEOUT:?} while waiting for {waiting_for}; received so far:\n{}",
                String::from_utf8_lossy(&self.buf)
            ),
            Err(e) => {
                self.ended = Some(End::Error(e.to_string()));
                false
            }
        }
    }

    /// Reads the response head.
    #[track_caller]
    pub(crate) fn head(&mut self) -> Head {
        self.try_head().unwrap_or_else(|| {
            panic!(
                "the connection ended ({:?}) before the response head; received:\n{}",
                self.ended,
                String::from_utf8_lossy(&self.buf)
            )
        })
    }

    /// Reads the response head; `None` when the server ended the connection before a whole
    /// head arrived.
    #[track_caller]
    pub(crate) fn try_head(&mut self) -> Option<Head> {
        let end = loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            if !self.fill("the response head") {
                return None;
            }
        };
        let text = String::from_utf8(self.buf[..end].to_vec()).expect("UTF-8 head");
        self.buf.drain(..end + 4);
        let mut lines = text.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap_or_else(|| panic!("bad header {l:?}"));
                (n.trim().to_owned(), v.trim().to_owned())
            })
            .collect();
        Some(Head { status, headers, head_request: self.head_request })
    }

    /// The body received so far, de-framed: (bytes, complete, bytes past the framed end).
    fn decoded(&self, head: &Head) -> (Vec<u8>, bool, usize) {
        if head.head_request {
            return (self.buf.clone(), true, 0);
        }
        if head.chunked() {
            return dechunk_partial(&self.buf)
                .unwrap_or_else(|e| panic!("bad chunked body ({e}): {:?}", self.buf));
        }
        match head.content_length() {
            Some(len) => {
                let n = self.buf.len().min(len);
                (self.buf[..n].to_vec(), n == len, self.buf.len() - n)
            }
            None => (self.buf.clone(), false, 0),
        }
    }

    /// Reads until the body received so far satisfies `done`, and returns it.
    #[track_caller]
    pub(crate) fn body_until(
        &mut self,
        head: &Head,
        what: &str,
        done: impl Fn(&[u8]) -> bool,
    ) -> Vec<u8> {
        loop {
            let (body, _, _) = self.decoded(head);
            if done(&body) {
                return body;
            }
            assert!(
                self.fill(what),
                "the connection ended ({:?}) before {what}; body so far:\n{}",
                self.ended,
                String::from_utf8_lossy(&body)
            );
        }
    }

    /// Reads until the server ends the connection.
    #[track_caller]
    pub(crate) fn finish(&mut self, head: &Head) -> Body {
        while self.fill("the end of the connection") {}
        let (bytes, complete, extra) = self.decoded(head);
        Body { bytes, complete, extra, end: self.ended.clone().unwrap_or(End::Eof) }
    }
}

/// De-chunks as much of `data` as has arrived: (body, whether the last chunk arrived, bytes
/// after it).
fn dechunk_partial(mut data: &[u8]) -> Result<(Vec<u8>, bool, usize), String> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = data.windows(2).position(|w| w == b"\r\n") else {
            return Ok((body, false, 0));
        };
        let size_text = std::str::from_utf8(&data[..eol]).map_err(|_| "chunk size not text")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        let rest = &data[eol + 2..];
        if size == 0 {
            // No trailers from this daemon: the last chunk is `0\r\n\r\n`.
            return match rest.strip_prefix(b"\r\n") {
                Some(after) => Ok((body, true, after.len())),
                None if rest.is_empty() || rest == b"\r" => Ok((body, false, 0)),
                None => Err(format!("trailers or junk after the last chunk: {rest:?}")),
            };
        }
        if rest.len() < size + 2 {
            body.extend_from_slice(&rest[..rest.len().min(size)]);
            return Ok((body, false, 0));
        }
        if &rest[size..size + 2] != b"\r\n" {
            return Err("chunk not followed by CRLF".to_owned());
        }
        body.extend_from_slice(&rest[..size]);
        data = &rest[size + 2..];
    }
}

/// `chunk 0\n` .. `chunk N-1\n`, as `/stream` writes them.
fn lines(n: usize) -> Vec<u8> {
    (0..n).flat_map(|i| format!("chunk {i}\n").into_bytes()).collect()
}

/// Creates the marker `go-I` the probe waits for.
fn go(marks: &Path, i: usize) {
    std::fs::write(marks.join(format!("go-{i}")), b"").expect("create a marker");
}

/// Deterministic bytes that look random: xorshift64.
pub(crate) fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

const STREAMING: &str = "\
aliases:
  - url: /probe
    path: {probe}
    env: {PROBE_DIR: marks}
  - url: /small
    path: {probe}
    env: {PROBE_DIR: marks}
    max_body: 100
  - url: /p
    path: {panicky}
  - url: /hello
    path: {hello}
  - url: /iprobe
    path: {probe}
    env: {PROBE_DIR: marks}
    isolation: process
    processes: 1
";

fn start() -> (Daemon, PathBuf) {
    let d = Daemon::start_with(STREAMING, |root| {
        std::fs::create_dir_all(root.join("marks")).expect("create marks/");
    });
    let marks = d.path("marks");
    (d, marks)
}

#[track_caller]
fn assert_still_serving(d: &Daemon) {
    let r = d.get("/hello");
    assert_eq!((r.status, r.text().as_str()), (200, "Hello World!"), "after the test: {r}");
}

/// Reads the `/stream` reply on `c` line by line with the marker handshake: line I must have
/// arrived, alone, before the test lets the app write line I+1. `first_alone` is false when
/// the app writes lines 0 and 1 before waiting (the held-back first write).
#[track_caller]
fn handshake(c: &mut Conn, head: &Head, marks: &Path, n: usize, first_alone: bool) -> Body {
    for i in usize::from(!first_alone)..n {
        let want = lines(i + 1);
        let got = c.body_until(head, &format!("line {i}"), |b| b.len() >= want.len());
        assert_eq!(
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&want),
            "after line {i} (line {} must wait for go-{i})",
            i + 1
        );
        if i + 1 < n {
            go(marks, i);
        }
    }
    c.finish(head)
}

#[test]
fn a_streamed_reply_without_length_goes_out_chunked_piece_by_piece() {
    let (d, marks) = start();
    let mut c = Conn::request(&d, "GET", "/probe/stream?n=4", &["Connection: close"]);
    let head = c.head();
    assert_eq!(head.status, 200, "{head}");
    assert!(head.chunked(), "no Transfer-Encoding: chunked on a reply without a length:\n{head}");
    assert_eq!(head.content_length(), None, "{head}");
    assert_eq!(head.header("content-type"), Some("text/plain"), "{head}");
    let body = handshake(&mut c, &head, &marks, 4, true);
    assert!(body.complete && body.extra == 0, "the chunked body did not end cleanly: {body:?}");
    assert_eq!(body.bytes, lines(4));
    assert_eq!(body.end, End::Eof);
    assert_still_serving(&d);
}

#[test]
fn without_flush_the_second_write_starts_the_stream() {
    // The daemon holds back the head and the first write; the second write sends both and
    // itself at once, and every later write goes as it comes.
    let (d, marks) = start();
    let mut c = Conn::request(&d, "GET", "/probe/stream?n=4&flush=0", &["Connection: close"]);
    let head = c.head();
    assert!(head.status == 200 && head.chunked(), "{head}");
    let body = handshake(&mut c, &head, &marks, 4, false);
    assert!(body.complete, "{body:?}");
    assert_eq!(body.bytes, lines(4));
}

#[test]
fn a_streamed_reply_with_a_content_length_keeps_it() {
    let (d, marks) = start();
    let mut c = Conn::request(&d, "GET", "/probe/stream-sized?n=4", &["Connection: close"]);
    let head = c.head();
    assert_eq!(head.status, 200, "{head}");
    assert_eq!(head.content_length(), Some(lines(4).len()), "{head}");
    assert!(!head.chunked(), "a reply with a Content-Length went out chunked:\n{head}");
    let body = handshake(&mut c, &head, &marks, 4, true);
    assert!(body.complete && body.extra == 0, "{body:?}");
    assert_eq!(body.bytes, lines(4));
}

#[test]
fn long_streamed_replies_arrive_whole() {
    let (d, _marks) = start();
    let n = 20_000;
    for (target, chunked) in [
        (format!("/probe/stream?n={n}&wait=0"), true),
        (format!("/probe/stream?n={n}&wait=0&flush=0"), true),
        (format!("/probe/stream-sized?n={n}&wait=0"), false),
    ] {
        let r = d.get(&target);
        assert_eq!(r.status, 200, "{target}");
        assert_eq!(r.header("transfer-encoding").is_some(), chunked, "{target}: {:?}", r.headers);
        let want = lines(n);
        assert!(r.body == want, "{target}: {} bytes, not the {} written", r.body.len(), want.len());
    }
}

#[test]
fn a_reply_written_in_one_piece_keeps_its_exact_length() {
    let (d, _marks) = start();
    let mut c = Conn::request(&d, "GET", "/hello", &["Connection: close"]);
    let head = c.head();
    assert_eq!(head.content_length(), Some(12), "{head}");
    assert!(!head.chunked(), "{head}");
    let body = c.finish(&head);
    assert!(body.complete && body.extra == 0 && body.bytes == b"Hello World!", "{body:?}");

    let mut c = Conn::request(&d, "GET", "/probe/head-len", &["Connection: close"]);
    let head = c.head();
    assert_eq!((head.status, head.content_length(), head.chunked()), (200, Some(1234), false));
    let body = c.finish(&head);
    assert!(body.complete && body.extra == 0, "{body:?}");
    let want: Vec<u8> = (0..1234u32).map(|i| b'a' + (i % 26) as u8).collect();
    assert_eq!(body.bytes, want);
}

/// What a client made of a reply that must not look whole: nothing at all (the connection
/// ended before a head), or a head and a body that the framing says is incomplete.
#[derive(Debug)]
enum Broken {
    /// The connection ended before a whole head.
    NoHead(End),
    /// A head, then part of the body, then the end of the connection.
    Cut(Head, Body),
}

/// Requests `target` on a keep-alive connection (a daemon that ended a broken body cleanly
/// would leave it open, and the client waiting) and reads until the daemon ends it.
#[track_caller]
fn broken_reply(d: &Daemon, target: &str) -> Broken {
    let mut c = Conn::request(d, "GET", target, &[]);
    let Some(head) = c.try_head() else {
        return Broken::NoHead(c.ended.clone().unwrap_or(End::Eof));
    };
    let body = c.finish(&head);
    Broken::Cut(head, body)
}

/// Asserts that the reply to `target` never looks whole: when a head arrived, it is `status`
/// with the given Content-Length (`None`: chunked), and the body is an incomplete prefix of
/// `written` with nothing after it.
#[track_caller]
fn assert_never_whole(d: &Daemon, target: &str, length: Option<usize>, written: &[u8]) {
    match broken_reply(d, target) {
        // See `bytes_written_before_a_cut_reach_the_client`: the daemon may drop everything.
        Broken::NoHead(_) => {}
        Broken::Cut(head, body) => {
            assert_eq!(head.status, 200, "{target}: {head}");
            assert_eq!(head.content_length(), length, "{target}: {head}");
            assert_eq!(head.chunked(), length.is_none(), "{target}: {head}");
            assert!(!body.complete, "{target}: a broken body looked whole: {body:?}");
            assert!(
                written.starts_with(&body.bytes) && body.extra == 0,
                "{target}: bytes the app did not write: {body:?}"
            );
        }
    }
}

#[test]
fn a_body_shorter_than_its_declared_length_is_never_whole() {
    let (d, _marks) = start();
    // Declares 100 bytes and streams 10: the connection is cut.
    assert_never_whole(&d, "/probe/short", Some(100), b"0123456789");
    // A producer that fails after the first piece went out: no last chunk, connection cut.
    assert_never_whole(&d, "/probe/fail-mid", None, b"partial\n");

    // A body written in one piece is not streamed yet: the daemon sends it with its real
    // length (and logs the mismatch), so the header never promises what is not there.
    let mut c = Conn::request(&d, "GET", "/probe/short-one", &["Connection: close"]);
    let head = c.head();
    assert_eq!((head.status, head.content_length()), (200, Some(10)), "{head}");
    let body = c.finish(&head);
    assert!(body.complete && body.extra == 0 && body.bytes == b"0123456789", "{body:?}");
    assert_still_serving(&d);
}

#[test]
fn a_body_longer_than_its_declared_length_never_goes_past_it() {
    let (d, _marks) = start();
    // The first write shorter than the length, then one past it; the first write exactly the
    // length; and the first write alone past it (held back, then sent when the second write
    // starts the stream). The daemon drops the excess and the SDK reports the refused write as
    // an error, which cuts the connection.
    for first in [3, 5, 7] {
        let target = format!("/probe/long?first={first}");
        match broken_reply(&d, &target) {
            Broken::NoHead(_) => {}
            Broken::Cut(head, body) => {
                assert_eq!((head.status, head.content_length()), (200, Some(5)), "{head}");
                assert!(
                    b"abcde".starts_with(&body.bytes) && body.extra == 0,
                    "{target}: more or other bytes than the declared 5: {body:?}"
                );
            }
        }
    }
    assert_still_serving(&d);
}

#[test]
fn bytes_written_before_a_cut_reach_the_client() {
    // The ABI's flush "sends the head and everything written so far now": a cut that follows
    // must not take them back. Repeated because whether actix wrote them before the cut is
    // a race the daemon loses about half the time.
    let (d, _marks) = start();
    let cases: [(&str, Option<usize>, &[u8]); 3] = [
        ("/probe/short", Some(100), b"0123456789"),
        ("/probe/fail-mid", None, b"partial\n"),
        ("/probe/long?first=3", Some(5), b"abcde"),
    ];
    for round in 0..20 {
        for (target, length, written) in cases {
            match broken_reply(&d, target) {
                Broken::NoHead(end) => panic!(
                    "round {round}: {target}: the connection ended ({end:?}) before the head"
                ),
                Broken::Cut(head, body) => {
                    assert_eq!(head.content_length(), length, "{target}: {head}");
                    assert_eq!(
                        body.bytes, written,
                        "round {round}: {target}: not every byte written before the cut: {body:?}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_producer_that_panics_mid_body_cuts_only_its_connection() {
    let (d, _marks) = start();
    assert_never_whole(&d, "/probe/panic-mid", None, b"partial\n");
    assert_still_serving(&d);
}

#[test]
fn head_gets_the_declared_length_and_no_body() {
    let (d, _marks) = start();
    // An app that knows its length answers HEAD without producing the body.
    let mut c = Conn::request(&d, "HEAD", "/probe/head-len", &["Connection: close"]);
    let head = c.head();
    assert_eq!(
        (head.status, head.content_length(), head.header("content-type")),
        (200, Some(1234), Some("application/octet-stream")),
        "{head}"
    );
    let body = c.finish(&head);
    assert!(body.bytes.is_empty(), "HEAD reply with a body: {body:?}");

    // An app that answers HEAD through a stream that writes nothing: the headers all the
    // same, not a cut connection, repeatedly (whether the cut beat the head was a race).
    for _ in 0..10 {
        let mut c = Conn::request(&d, "HEAD", "/probe/head-stream", &["Connection: close"]);
        let head = c.head();
        assert_eq!((head.status, head.content_length()), (200, Some(1234)), "{head}");
        let body = c.finish(&head);
        assert!(body.bytes.is_empty(), "HEAD reply with a body: {body:?}");
    }

    // An app that streams its body on HEAD too: the headers, and no body.
    let n = 50;
    let mut c = Conn::request(
        &d,
        "HEAD",
        &format!("/probe/stream-sized?n={n}&wait=0"),
        &["Connection: close"],
    );
    let head = c.head();
    assert_eq!((head.status, head.content_length()), (200, Some(lines(n).len())), "{head}");
    let body = c.finish(&head);
    assert!(body.bytes.is_empty(), "HEAD reply with a body: {body:?}");
    let mut c =
        Conn::request(&d, "HEAD", &format!("/probe/stream?n={n}&wait=0"), &["Connection: close"]);
    let head = c.head();
    assert_eq!(head.status, 200, "{head}");
    let body = c.finish(&head);
    assert!(body.bytes.is_empty(), "HEAD reply with a body: {body:?}");
    assert_still_serving(&d);
}

#[test]
fn head_of_a_reply_of_unknown_length_gets_no_length() {
    let (d, _marks) = start();
    // Werkzeug and Django answer HEAD for a streamed response with its headers and no body:
    // its length is unknown, not 0.
    let mut c = Conn::request(&d, "HEAD", "/probe/download?n=5", &["Connection: close"]);
    let head = c.head();
    assert_eq!((head.status, head.content_length()), (200, None), "{head}");
    let body = c.finish(&head);
    assert!(body.bytes.is_empty(), "HEAD reply with a body: {body:?}");
    // The GET it stands for: streamed, of unknown length.
    let mut c = Conn::request(&d, "GET", "/probe/download?n=5", &["Connection: close"]);
    let head = c.head();
    assert!(head.chunked() && head.content_length().is_none(), "{head}");
    let body = c.finish(&head);
    assert!(body.complete, "{body:?}");
    assert_eq!(body.bytes, lines(5));
    // An app that streams its body on HEAD too: no length either.
    let mut c = Conn::request(&d, "HEAD", "/probe/stream?n=5&wait=0", &["Connection: close"]);
    let head = c.head();
    assert_eq!((head.status, head.content_length()), (200, None), "{head}");
    assert!(c.finish(&head).bytes.is_empty());

    // Kept alive, the next reply on the connection is read right after the HEAD's head.
    let mut c = Conn::open(&d);
    c.send(
        format!(
            "HEAD /probe/download?n=5 HTTP/1.1\r\nHost: {0}\r\n\r\n\
             GET /probe/download?n=2 HTTP/1.1\r\nHost: {0}\r\nConnection: close\r\n\r\n",
            d.addr
        )
        .as_bytes(),
    );
    let first = c.head();
    assert_eq!((first.status, first.content_length()), (200, None), "{first}");
    let second = c.head();
    assert!(second.chunked(), "{second}");
    let body = c.finish(&second);
    assert!(body.complete, "{body:?}");
    assert_eq!(body.bytes, lines(2));
    assert_still_serving(&d);
}

#[test]
fn http10_gets_a_streamed_reply_delimited_by_the_close() {
    let (d, _marks) = start();
    let n = 3;
    // nginx proxies speak HTTP/1.0, without or with keep-alive: neither knows chunked.
    for extra in ["", "Connection: keep-alive\r\n"] {
        let mut c = Conn::open(&d);
        c.send(format!("GET /probe/stream?n={n}&wait=0 HTTP/1.0\r\n{extra}\r\n").as_bytes());
        let head = c.head();
        assert_eq!(head.status, 200, "{head}");
        assert!(head.header("transfer-encoding").is_none(), "chunked to HTTP/1.0: {head}");
        assert!(head.content_length().is_none(), "{head}");
        // The body ends with the connection (a kept-alive one would time the read out).
        let body = c.finish(&head);
        assert_eq!(body.end, End::Eof, "{body:?}");
        assert_eq!(
            String::from_utf8_lossy(&body.bytes),
            String::from_utf8_lossy(&lines(n)),
            "{extra:?}"
        );
        // A HEAD too: no framing header, and no body.
        let mut c = Conn::open(&d);
        c.head_request = true;
        c.send(format!("HEAD /probe/stream?n={n}&wait=0 HTTP/1.0\r\n{extra}\r\n").as_bytes());
        let head = c.head();
        assert_eq!(head.status, 200, "{head}");
        assert!(head.header("transfer-encoding").is_none(), "chunked to HTTP/1.0: {head}");
        assert!(c.finish(&head).bytes.is_empty());
    }
    // A declared length still goes out as it is, and a kept-alive connection stays open.
    let mut c = Conn::open(&d);
    c.send(
        format!(
            "GET /probe/stream-sized?n={n}&wait=0 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n\
             GET /hello HTTP/1.0\r\n\r\n"
        )
        .as_bytes(),
    );
    let head = c.head();
    assert_eq!(head.content_length(), Some(lines(n).len()), "{head}");
    let body = c.body_until(&head, "the sized body", |b| b.len() >= lines(n).len());
    assert_eq!(body, lines(n));
    assert_still_serving(&d);
}

/// `raw` with a chunked body cut into pieces of varying sizes.
fn chunked_request(d: &Daemon, target: &str, body: &[u8]) -> Vec<u8> {
    let mut raw = format!(
        "POST {target} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/octet-stream\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        d.addr
    )
    .into_bytes();
    let mut rest = body;
    let mut size = 1;
    while !rest.is_empty() {
        let (piece, after) = rest.split_at(size.min(rest.len()));
        raw.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        raw.extend_from_slice(piece);
        raw.extend_from_slice(b"\r\n");
        rest = after;
        size = size * 7 % 100_003 + 1;
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    raw
}

#[test]
fn large_request_bodies_reach_the_app_whole() {
    let (d, _marks) = start();
    let body = noise(3 * 1024 * 1024 + 17, 0x5eed);
    let r = d.post("/p/echo", "application/octet-stream", &body);
    assert!(
        r.status == 200 && r.body == body,
        "Content-Length body: status {}, {} of {} bytes, equal: {}",
        r.status,
        r.body.len(),
        body.len(),
        r.body == body
    );
    let r = d.request(&chunked_request(&d, "/p/echo", &body));
    assert!(
        r.status == 200 && r.body == body,
        "chunked body: status {}, {} of {} bytes, equal: {}",
        r.status,
        r.body.len(),
        body.len(),
        r.body == body
    );
}

/// The text the app echoed in its `got N bytes: TEXT` lines (complete lines only), checking N.
fn echoed(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut out = String::new();
    for line in text.split_inclusive('\n').filter(|l| l.ends_with('\n')) {
        if let Some(rest) = line.strip_prefix("got ") {
            let (n, piece) = rest.split_once(" bytes: ").expect("got N bytes: TEXT");
            let piece = piece.trim_end_matches('\n');
            assert_eq!(n.parse::<usize>().ok(), Some(piece.len()), "{line:?}");
            out.push_str(piece);
        }
    }
    out
}

#[test]
fn a_request_body_streams_to_the_app_while_its_reply_streams_back() {
    let (d, _marks) = start();
    let pieces = ["alpha", "beta-beta", "gamma gamma gamma"];
    let total: usize = pieces.iter().map(|p| p.len()).sum();
    for chunked in [true, false] {
        let framing = if chunked {
            "Transfer-Encoding: chunked".to_owned()
        } else {
            format!("Content-Length: {total}")
        };
        let mut c = Conn::request(
            &d,
            "POST",
            "/probe/echo-stream",
            &["Content-Type: text/plain", &framing, "Connection: close"],
        );
        let mut sent = String::new();
        let mut head = None;
        for piece in pieces {
            if chunked {
                c.send_chunk(piece.as_bytes());
            } else {
                c.send(piece.as_bytes());
            }
            sent.push_str(piece);
            // The reply (head included) comes while the request body is still unfinished.
            let h = head.get_or_insert_with(|| c.head()).clone();
            assert!(h.status == 200 && h.chunked(), "{h}");
            c.body_until(&h, &format!("the echo of {sent:?} (chunked: {chunked})"), |b| {
                echoed(b) == sent
            });
        }
        if chunked {
            c.send_chunk(b"");
        }
        let head = head.expect("a head");
        let body = c.finish(&head);
        assert!(body.complete, "chunked: {chunked}: {body:?}");
        let text = String::from_utf8_lossy(&body.bytes);
        assert_eq!(echoed(&body.bytes), sent);
        assert!(text.ends_with(&format!("\nend: {total} bytes\n")), "chunked: {chunked}: {text}");
    }
}

#[test]
fn a_body_past_max_body_is_refused_and_never_truncated_silently() {
    let (d, _marks) = start();
    // Before the app answered: the daemon answers 413 itself (the app, reading the whole
    // body, only ever sees an error).
    let r = d.request(&chunked_request(&d, "/small/read-error", &[b'x'; 101]));
    assert_eq!(r.status, 413, "{r}");
    assert!(r.text().contains("max_body"), "{r}");
    // At the limit it is whole.
    let r = d.request(&chunked_request(&d, "/small/read-error", &[b'x'; 100]));
    assert_eq!((r.status, r.text().as_str()), (200, "ok: 100 bytes"), "{r}");

    // After the app answered: its reader reports TOO_LARGE (-5) instead of an end.
    let mut c = Conn::request(
        &d,
        "POST",
        "/small/echo-stream",
        &["Content-Type: text/plain", "Transfer-Encoding: chunked", "Connection: close"],
    );
    c.send_chunk(b"first");
    let head = c.head();
    assert!(head.status == 200 && head.chunked(), "{head}");
    c.body_until(&head, "the echo of the first piece", |b| echoed(b) == "first");
    c.send_chunk(&[b'y'; 200]);
    let body = c.body_until(&head, "the app's read error", |b| {
        b.ends_with(b"\n") && {
            let t = String::from_utf8_lossy(b);
            t.contains("read error") || t.contains("end:")
        }
    });
    let text = String::from_utf8_lossy(&body);
    assert!(
        text.ends_with("read error: -5, again: -4\n"),
        "the app was not told the body is too large:\n{text}"
    );
    assert_eq!(echoed(&body), "first", "part of the oversized body reached the app");
    assert_still_serving(&d);
}

#[test]
fn a_body_shorter_than_its_content_length_is_an_error_not_an_end() {
    let (d, _marks) = start();
    // Before the app answered: 400 from the daemon.
    let mut c = Conn::request(
        &d,
        "POST",
        "/probe/read-error",
        &["Content-Type: application/octet-stream", "Content-Length: 1000", "Connection: close"],
    );
    c.send(&[b'z'; 500]);
    c.shutdown_write();
    let head = c.head();
    let body = c.finish(&head);
    let text = String::from_utf8_lossy(&body.bytes);
    assert_eq!(head.status, 400, "{head}\n{text}");
    assert!(text.contains("Content-Length"), "{text}");

    // After the app answered: its reader reports -1 (ERROR: malformed or cut short), and
    // the next read fails too (-4, the body is gone), never a clean end; the same in a
    // worker process.
    for alias in ["/probe", "/iprobe"] {
        let mut c = Conn::request(
            &d,
            "POST",
            &format!("{alias}/echo-stream"),
            &["Content-Type: text/plain", "Content-Length: 100", "Connection: close"],
        );
        c.send(b"only this");
        let head = c.head();
        c.body_until(&head, "the echo of the first piece", |b| echoed(b) == "only this");
        c.shutdown_write();
        let body = c.finish(&head);
        let text = String::from_utf8_lossy(&body.bytes);
        assert!(
            text.ends_with("read error: -1, again: -4\n"),
            "{alias}: a body cut short reached the app as a clean end:\n{text}"
        );
    }
    assert_still_serving(&d);
}

#[test]
fn a_client_that_stops_reading_does_not_hold_the_app_for_ever() {
    // The client reads the head, then nothing: the app's writes fill the queue to the HTTP
    // side and block. Past the alias's timeout the write fails as if the client had left,
    // which frees the alias's one thread, and the body ends cut, never clean.
    let yaml = "\
aliases:
  - url: /in
    path: {probe}
    env: {PROBE_DIR: in}
    timeout: 1s
    threads: 1
  - url: /out
    path: {probe}
    env: {PROBE_DIR: out}
    timeout: 1s
    isolation: process
    processes: 1
    threads: 1
";
    let d = Daemon::start_with(yaml, |root| {
        for dir in ["in", "out"] {
            std::fs::create_dir_all(root.join(dir)).expect("create the marker folder");
        }
    });
    for alias in ["in", "out"] {
        let mut c = Conn::request(&d, "GET", &format!("/{alias}/endless"), &[]);
        let head = c.head();
        assert!(head.status == 200 && head.chunked(), "{alias}: {head}");
        let done = d.path(alias).join("endless.done");
        let deadline = Instant::now() + IO_TIMEOUT;
        while !done.exists() {
            assert!(
                Instant::now() < deadline,
                "{alias}: the app is still held by a client that reads nothing"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let report = std::fs::read_to_string(&done).expect("read endless.done");
        assert!(report.contains("BrokenPipe"), "{alias}: {report}");
        // The alias's one thread serves again.
        let r = d.get(&format!("/{alias}/debug-log?msg=after"));
        assert_eq!(r.status, 200, "{alias}: {r}");
        // What the client reads now ends cut: it must not take a part for the whole.
        let body = c.finish(&head);
        assert!(!body.complete, "{alias}: a body given up on ended clean");
        assert!(!body.bytes.is_empty(), "{alias}: nothing arrived");
    }
    assert!(d.log().contains("took none of the reply"), "{}", d.log());
}

#[test]
fn a_client_that_goes_away_mid_stream_stops_the_app() {
    let (d, marks) = start();
    let mut c = Conn::request(&d, "GET", "/probe/endless", &["Connection: close"]);
    let head = c.head();
    assert!(head.status == 200 && head.chunked(), "{head}");
    c.body_until(&head, "the first 64 KiB", |b| b.len() >= 64 * 1024);
    drop(c);
    // Failure guard only: the app stops as soon as a write fails.
    let done = marks.join("endless.done");
    let deadline = Instant::now() + IO_TIMEOUT;
    while !done.exists() {
        assert!(Instant::now() < deadline, "the app kept streaming to a client that left");
        std::thread::sleep(Duration::from_millis(20));
    }
    let report = std::fs::read_to_string(&done).expect("read endless.done");
    assert!(report.contains("BrokenPipe"), "the app was not told the client went away: {report}");
    assert_still_serving(&d);
}

#[test]
fn server_sent_events_stay_open_past_timeout_while_they_write() {
    // The demo's event stream, through the WSGI bridge, on an alias whose timeout is shorter
    // than the stream: it bounds the reply's start, not a stream that keeps writing.
    let yaml = "\
handlers:
  - suffix: .py
    plugin: {wsgi}
aliases:
  - url: /py/
    path: py/
    timeout: 1s
";
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/python/events.py");
    let d = Daemon::start_with(yaml, |root| {
        std::fs::create_dir_all(root.join("py")).unwrap();
        std::fs::copy(&demo, root.join("py/events.py")).unwrap();
    });
    let mut c =
        Conn::request(&d, "GET", "/py/events.py?n=5&interval=0.4", &["Accept: text/event-stream"]);
    let head = c.head();
    assert_eq!(head.status, 200, "{head:?}");
    assert_eq!(head.header("content-type"), Some("text/event-stream"), "{head:?}");
    // The opening comment arrives at once, the first event while the stream is still open.
    let first = c.body_until(&head, "the first event", |b| b.windows(6).any(|w| w == b"data: "));
    assert!(first.starts_with(b": stream open\n\n"), "{}", String::from_utf8_lossy(&first));
    let body = c.finish(&head);
    assert!(body.complete, "the stream was cut: {}", String::from_utf8_lossy(&body.bytes));
    let text = String::from_utf8_lossy(&body.bytes);
    assert_eq!(text.matches("\ndata: ").count(), 5, "{text}");
    assert!(text.contains("id: 4\n"), "{text}");
    assert!(!d.log().contains("504"), "{}", d.log());
}
