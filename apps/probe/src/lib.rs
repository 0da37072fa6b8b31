//! A test plugin for the end-to-end tests of streamed bodies and uploads, not a demo app.
//! By PATH_INFO:
//!
//! - `/stream?n=N&flush=1&wait=1`: a streamed reply ([`Response::stream`]) of the lines
//!   `chunk 0\n` .. `chunk N-1\n`. With `flush=1` (the default) each line is flushed as it is
//!   written; with `flush=0` it is only written (the daemon holds back the first write and
//!   streams from the second on). With `wait=1` (the default), after writing (and flushing)
//!   line `i` the app waits for the marker file `PROBE_DIR/go-i` before it writes line `i+1`
//!   (with `flush=0`, from line 1 on: line 0 alone never leaves the daemon), so a test can
//!   prove that line `i` reached the client before line `i+1` existed. The wait gives up after
//!   10 s with an error, which cuts the connection.
//! - `/stream-sized?...`: the same with `Content-Length` set to the total length.
//! - `/short`: declares `Content-Length: 100`, writes 10 bytes in two writes and returns.
//! - `/short-one`: declares `Content-Length: 100` and writes 10 bytes in one write.
//! - `/long?first=K`: declares `Content-Length: 5` and writes `abcdefghij` in two writes, the
//!   first of K bytes.
//! - `/fail-mid`: streams `partial\n` (flushed), then its body producer fails with an error.
//! - `/panic-mid`: streams `partial\n` (flushed), then its body producer panics.
//! - `/head-len`: on HEAD, `200` with `Content-Length: 1234` and no body (an app that knows
//!   its length without producing the body); otherwise the 1234 bytes ([`head_len_body`]).
//! - `/head-stream`: the same, but HEAD answers through a stream that writes nothing.
//! - `/download?n=N`: on HEAD, `200` with neither a body nor a length (what Werkzeug and
//!   Django answer to HEAD for a streamed response); otherwise `/stream?n=N&wait=0`.
//! - `/echo-stream`: reads the request body piece by piece through the raw `read_body`
//!   callback and after each piece writes and flushes `got N bytes: TEXT\n`; at the end of the
//!   body `end: T bytes\n`, or `read error: CODE, again: CODE2\n` when `read_body` failed
//!   (CODE is its negative return value, CODE2 that of one more read after it). Written against the raw ABI (module `raw`): the SDK's streamed
//!   body is a `'static` closure that cannot read the request, so an SDK app cannot read its
//!   body while it streams its reply.
//! - `/uploads`: JSON `{"params": [[name, value]..], "uploads": [{"field", "filename",
//!   "content_type", "size", "path", "exists", "content_hex"}..]}`, `exists` being whether the
//!   spooled file exists while the app runs and `content_hex` its content (files up to 64 KiB).
//! - `/read-error`: reads the whole body; answers `ok: N bytes` or `error: MESSAGE`.
//! - `/debug-log?msg=TEXT&must=1`: calls `debug_log(TEXT, must)` (`must` is true for `1`)
//!   and answers `written` or `not written`: the seed's `debugLog` driven by a test.
//! - `/endless`: streams 16 KiB chunks, each flushed, until a write fails, then writes
//!   `stopped after N chunks: KIND: MESSAGE` to the marker file `PROBE_DIR/endless.done`.
//!
//! As an alias's `access_script` and `auth_user_script` (hooks), it logs (INFO)
//! `probe hook: allow_access host=HOST remote_user=VALUE` and allows the request, refuses it
//! when the query string has `deny`, has no opinion with `abstain` and panics with
//! `hook-panic`; `check_password` knows `alice` (password `secret`) and `bob` (every password
//! wrong), and no other user.
//!
//! `env: {PROBE_DIR: FOLDER}` on the alias names the marker folder (relative to the
//! configuration's folder).

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gatehouse_app::{App, BodyWriter, Init, Request, Response};
use serde_json::{Value, json};

pub use raw::gatehouse_app;

/// How long a stream waits for a marker file before it gives up.
const WAIT_LIMIT: Duration = Duration::from_secs(10);
/// How often it looks for the marker.
const WAIT_POLL: Duration = Duration::from_millis(10);

/// The body of `/head-len`: 1234 bytes, a repeating pattern.
fn head_len_body() -> Vec<u8> {
    (0..1234u32).map(|i| b'a' + (i % 26) as u8).collect()
}

struct Probe {
    marks: Option<PathBuf>,
}

fn text(status: u16, body: impl Into<String>) -> Response {
    Response::new(status).header("Content-Type", "text/plain").body(body.into().into_bytes())
}

/// Waits for the marker file `dir/name`.
fn wait_for(dir: Option<&Path>, name: &str) -> io::Result<()> {
    let dir = dir.ok_or_else(|| io::Error::other("no PROBE_DIR in the alias's env"))?;
    let path = dir.join(name);
    let deadline = Instant::now() + WAIT_LIMIT;
    while !path.exists() {
        if Instant::now() > deadline {
            return Err(io::Error::other(format!("gave up waiting for {}", path.display())));
        }
        std::thread::sleep(WAIT_POLL);
    }
    Ok(())
}

/// Writes `text` to `dir/name` atomically (a temporary file renamed into place).
fn write_marker(dir: &Path, name: &str, text: &str) -> io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, dir.join(name))
}

/// Streams `chunk i\n` lines as described for `/stream`.
fn stream_lines(
    w: &mut BodyWriter<'_, '_>,
    marks: Option<&Path>,
    n: usize,
    flush: bool,
    wait: bool,
) -> io::Result<()> {
    for i in 0..n {
        w.write_all(format!("chunk {i}\n").as_bytes())?;
        if flush {
            w.flush()?;
        }
        if wait && i + 1 < n && (flush || i > 0) {
            wait_for(marks, &format!("go-{i}"))?;
        }
    }
    Ok(())
}

fn query_flag(req: &Request<'_>, name: &str, default: bool) -> bool {
    req.param(name).map_or(default, |v| v != "0")
}

impl Probe {
    fn stream(&self, req: &Request<'_>, sized: bool) -> Response {
        let Some(n) = req.param("n").and_then(|n| n.parse::<usize>().ok()) else {
            return text(400, "n=N is required");
        };
        let flush = query_flag(req, "flush", true);
        let wait = query_flag(req, "wait", true);
        let marks = self.marks.clone();
        let mut resp = Response::new(200).header("Content-Type", "text/plain");
        if sized {
            let total: usize = (0..n).map(|i| format!("chunk {i}\n").len()).sum();
            resp = resp.header("Content-Length", total.to_string());
        }
        resp.stream(move |w| stream_lines(w, marks.as_deref(), n, flush, wait))
    }

    fn endless(&self) -> Response {
        let Some(dir) = self.marks.clone() else { return text(500, "no PROBE_DIR") };
        Response::new(200).header("Content-Type", "application/octet-stream").stream(move |w| {
            let chunk = vec![b'e'; 16 * 1024];
            let mut sent = 0u64;
            let error = loop {
                if let Err(e) = w.write_all(&chunk).and_then(|()| w.flush()) {
                    break e;
                }
                sent += 1;
            };
            let report = format!("stopped after {sent} chunks: {:?}: {error}", error.kind());
            write_marker(&dir, "endless.done", &report)?;
            Err(error)
        })
    }

    fn uploads(req: &Request<'_>) -> Response {
        let params: Vec<Value> = req.params().map(|(n, v)| json!([n, v])).collect();
        let uploads: Vec<Value> = req
            .uploads()
            .map(|u| {
                let content_hex = if u.size() <= 64 * 1024 {
                    match u.read() {
                        Ok(bytes) => Value::String(bytes.iter().fold(String::new(), |mut s, b| {
                            let _ = write!(s, "{b:02x}");
                            s
                        })),
                        Err(e) => Value::String(format!("cannot read: {e}")),
                    }
                } else {
                    Value::Null
                };
                json!({
                    "field": u.field(),
                    "filename": u.filename(),
                    "content_type": u.content_type(),
                    "size": u.size(),
                    "path": u.path().to_string_lossy(),
                    "exists": u.path().exists(),
                    "content_hex": content_hex,
                })
            })
            .collect();
        Response::json(&json!({"params": params, "uploads": uploads}))
    }
}

impl App for Probe {
    fn init(init: &Init<'_>) -> Result<Self, String> {
        Ok(Probe { marks: init.env("PROBE_DIR").map(|p| init.resolve(p)) })
    }

    fn allow_access(&self, req: &Request<'_>, host: &str) -> Option<bool> {
        let query = req.var("QUERY_STRING").unwrap_or_default();
        req.log_info(format!(
            "probe hook: allow_access host={host} remote_user={}",
            req.var("REMOTE_USER").unwrap_or("-")
        ));
        if query.contains("hook-panic") {
            panic!("probe: the access hook panics, as asked");
        }
        if query.contains("deny") {
            Some(false)
        } else if query.contains("abstain") {
            None
        } else {
            Some(true)
        }
    }

    fn check_password(&self, _req: &Request<'_>, user: &str, password: &str) -> Option<bool> {
        match user {
            "alice" => Some(password == "secret"),
            "bob" => Some(false),
            _ => None,
        }
    }

    fn handle(&self, req: &Request<'_>) -> Response {
        match req.path_info() {
            "/stream" => self.stream(req, false),
            "/stream-sized" => self.stream(req, true),
            "/short" => Response::new(200).header("Content-Length", "100").stream(|w| {
                w.write_all(b"01234")?;
                w.write_all(b"56789")
            }),
            "/short-one" => text(200, "0123456789").header("Content-Length", "100"),
            "/long" => {
                let first = req.param("first").and_then(|k| k.parse::<usize>().ok()).unwrap_or(3);
                let body = b"abcdefghij";
                let (a, b) = body.split_at(first.min(body.len()));
                let (a, b) = (a.to_vec(), b.to_vec());
                Response::new(200).header("Content-Length", "5").stream(move |w| {
                    w.write_all(&a)?;
                    w.write_all(&b)
                })
            }
            "/fail-mid" => Response::new(200).header("Content-Type", "text/plain").stream(|w| {
                w.write_all(b"partial\n")?;
                w.flush()?;
                Err(io::Error::other("probe: failing in the middle of the body, as asked"))
            }),
            "/panic-mid" => Response::new(200).header("Content-Type", "text/plain").stream(|w| {
                w.write_all(b"partial\n")?;
                w.flush()?;
                panic!("probe: panicking in the middle of the body, as asked")
            }),
            // HEAD through a stream that writes nothing, with the GET's length declared.
            "/head-stream" if req.method() == "HEAD" => Response::new(200)
                .header("Content-Type", "application/octet-stream")
                .header("Content-Length", "1234")
                .stream(|w| w.flush()),
            "/head-stream" => Response::new(200)
                .header("Content-Type", "application/octet-stream")
                .body(head_len_body()),
            "/head-len" if req.method() == "HEAD" => Response::new(200)
                .header("Content-Type", "application/octet-stream")
                .header("Content-Length", "1234"),
            "/head-len" => Response::new(200)
                .header("Content-Type", "application/octet-stream")
                .body(head_len_body()),
            // (A bytes body, even an empty one, would get its Content-Length from the SDK.)
            "/download" if req.method() == "HEAD" => Response::new(200)
                .header("Content-Type", "application/octet-stream")
                .stream(|_| Ok(())),
            "/download" => {
                let Some(n) = req.param("n").and_then(|n| n.parse::<usize>().ok()) else {
                    return text(400, "n=N is required");
                };
                Response::new(200)
                    .header("Content-Type", "application/octet-stream")
                    .stream(move |w| stream_lines(w, None, n, true, false))
            }
            "/uploads" => Probe::uploads(req),
            "/read-error" => match req.body() {
                Ok(body) => text(200, format!("ok: {} bytes", body.len())),
                Err(e) => text(200, format!("error: {e}")),
            },
            "/debug-log" => {
                let message = req.param("msg").unwrap_or("");
                let must = req.param("must") == Some("1");
                text(200, if req.debug_log(message, must) { "written" } else { "not written" })
            }
            "/stderr" => {
                // A plugin's own stderr and stdout (a Rust plugin's eprintln! and println!),
                // then an error log line.
                let message = req.param("msg").unwrap_or("");
                eprintln!("{message}");
                println!("{message} on stdout");
                req.log_error(format!("logged {message}"));
                text(200, "written")
            }
            "/endless" => self.endless(),
            other => text(404, format!("probe: no route {other:?}")),
        }
    }
}

/// The raw-ABI side: the plugin's descriptor, whose `handle` serves `/echo-stream` itself and
/// hands every other request to the SDK's handler for [`Probe`].
mod raw {
    #![allow(unsafe_code)]

    use std::ffi::c_void;

    use gatehouse_app::__private;
    use gatehouse_app::abi::{ABI_VERSION, AppDescriptor, Environ, HostApi, Pair, Status, Str};

    use super::Probe;

    /// The plugin descriptor (what `gatehouse_app::export!` would generate, with our handle).
    #[unsafe(no_mangle)]
    pub extern "C" fn gatehouse_app() -> *const AppDescriptor {
        static DESCRIPTOR: AppDescriptor = AppDescriptor {
            abi_version: ABI_VERSION,
            struct_size: size_of::<AppDescriptor>() as u32,
            name: Str::new(env!("CARGO_PKG_NAME").as_bytes()),
            version: Str::new(env!("CARGO_PKG_VERSION").as_bytes()),
            init: Some(__private::init::<Probe>),
            handle: Some(handle),
            shutdown: Some(__private::shutdown::<Probe>),
            allow_access: Some(__private::allow_access::<Probe>),
            check_password: Some(__private::check_password::<Probe>),
            websocket_event: None,
            flags: gatehouse_app::abi::AppFlags::NONE,
            reserved: 0,
        };
        &DESCRIPTOR
    }

    /// # Safety
    /// `s` must be a host-provided string valid for `'a`.
    unsafe fn bytes<'a>(s: &Str) -> &'a [u8] {
        if s.ptr.is_null() || s.len == 0 {
            return &[];
        }
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts(s.ptr, s.len) }
    }

    /// # Safety
    /// `env` must be the environ of the current `handle` call.
    unsafe fn var<'a>(env: &'a Environ, name: &[u8]) -> Option<&'a [u8]> {
        if env.vars.is_null() || env.vars_len == 0 {
            return None;
        }
        // SAFETY: the host passes `vars_len` pairs valid for the call.
        let vars: &[Pair] = unsafe { std::slice::from_raw_parts(env.vars, env.vars_len) };
        // SAFETY: the pairs' strings are valid for the call.
        vars.iter().find(|p| unsafe { bytes(&p.name) } == name).map(|p| unsafe { bytes(&p.value) })
    }

    unsafe extern "C" fn handle(instance: *mut c_void, environ: *const Environ) -> Status {
        // SAFETY: the host passes a valid environ (or null, checked) for the call.
        let Some(env) = (unsafe { environ.as_ref() }) else { return Status::INVALID };
        // SAFETY: `env` is this call's environ.
        if unsafe { var(env, b"PATH_INFO") } != Some(b"/echo-stream") {
            // SAFETY: the host's arguments, passed on unchanged.
            return unsafe { __private::handle::<Probe>(instance, environ) };
        }
        // SAFETY: the host's callbacks are valid for the call (null checked).
        let Some(host) = (unsafe { env.host.as_ref() }) else { return Status::INVALID };
        match std::panic::catch_unwind(|| echo_stream(env.request, host)) {
            Ok(status) => status,
            Err(_) => Status::ERROR,
        }
    }

    /// `/echo-stream`: echoes each piece of the body as it is read.
    fn echo_stream(request: *mut c_void, host: &HostApi) -> Status {
        let (Some(start), Some(read), Some(write), Some(flush)) =
            (host.start_response, host.read_body, host.write, host.flush)
        else {
            return Status::ERROR;
        };
        let headers = [Pair { name: Str::new(b"Content-Type"), value: Str::new(b"text/plain") }];
        // SAFETY: `request` is this call's handle; the headers outlive the call.
        let status = unsafe { start(request, 200, headers.as_ptr(), headers.len()) };
        if status != Status::OK {
            return status;
        }
        let send = |line: String| -> Status {
            // SAFETY: `request` is this call's handle; `line` outlives the call.
            let status = unsafe { write(request, Str::new(line.as_bytes())) };
            if status != Status::OK {
                return status;
            }
            // SAFETY: `request` is this call's handle.
            unsafe { flush(request) }
        };
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0usize;
        loop {
            // SAFETY: `buf` has room for `buf.len()` bytes.
            let n = unsafe { read(request, buf.as_mut_ptr(), buf.len()) };
            let line = match usize::try_from(n) {
                Ok(0) => return send(format!("end: {total} bytes\n")),
                Ok(n) => {
                    total += n;
                    format!("got {n} bytes: {}\n", String::from_utf8_lossy(&buf[..n]))
                }
                Err(_) => {
                    // SAFETY: as above; a reader that failed must fail again, not end.
                    let again = unsafe { read(request, buf.as_mut_ptr(), buf.len()) };
                    return send(format!("read error: {n}, again: {again}\n"));
                }
            };
            let status = send(line);
            if status != Status::OK {
                return status;
            }
        }
    }
}
