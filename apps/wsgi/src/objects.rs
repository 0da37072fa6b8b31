//! The Python objects of one request, implemented over the host's callbacks: the
//! `start_response` callable and the `write` callable it returns, `wsgi.input` and
//! `wsgi.errors` (PEP 3333). Each holds the request's [`Call`], which refuses to be used
//! after the request ended or from another thread, so an app that keeps these objects
//! gets a Python exception, never a dangling pointer.
//!
//! Lock discipline: the mutexes here are held only for Rust work on the thread running the
//! request, never while running Python code and never while the GIL is released, so no
//! thread can wait for one while holding the GIL another needs.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use gatehouse_abi::Status;
use pyo3::exceptions::{PyAssertionError, PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::abi::{Call, Unusable};

/// The most of the request body one host read asks for.
const READ_CHUNK: usize = 64 * 1024;
/// The least: a read of a known small size (`read(CONTENT_LENGTH)` of a form, say) asks
/// for what it needs, not 64 KiB (the buffer is zeroed first: ~2 µs a request wasted).
const MIN_CHUNK: usize = 8 * 1024;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A host failure as the Python exception an app sees.
fn host_error(what: &str, status: Status) -> PyErr {
    match status {
        Status::DISCONNECTED => {
            PyOSError::new_err(format!("cannot {what}: the client has gone away"))
        }
        Status::INVALID => PyValueError::new_err(format!(
            "cannot {what}: the server refused it (a header HTTP forbids, or more body bytes \
             than the declared Content-Length)"
        )),
        Status::BAD_STATE => PyRuntimeError::new_err(format!(
            "cannot {what}: the request is over, or this is not the thread serving it"
        )),
        Status(n) => PyOSError::new_err(format!("cannot {what} (status {n})")),
    }
}

fn unusable(what: &str, why: Unusable) -> PyErr {
    match why {
        Unusable::Expired => {
            PyRuntimeError::new_err(format!("{what} used after its request ended"))
        }
        Unusable::OtherThread => PyRuntimeError::new_err(format!(
            "{what} used from a thread other than the one serving its request"
        )),
    }
}

/// What `start_response` recorded, and whether the head went to the host.
#[derive(Debug, Default)]
pub(crate) struct Head {
    /// The status code, once `start_response` was called.
    pub(crate) status: Option<u32>,
    /// The headers as latin-1 bytes.
    pub(crate) headers: Vec<(Vec<u8>, Vec<u8>)>,
    /// Whether the head was handed to the host (it is, with the first body bytes).
    pub(crate) sent: bool,
}

/// A first write up to this size is handed to the host with the GIL held.
const KEEP_GIL_WRITE: usize = 64 * 1024;

/// The response side of one request, shared by `start_response`, `write` and the bridge.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) call: Arc<Call>,
    pub(crate) head: Mutex<Head>,
}

impl Response {
    pub(crate) fn new(call: Arc<Call>) -> Response {
        Response { call, head: Mutex::new(Head::default()) }
    }

    /// Whether the head went out.
    pub(crate) fn sent(&self) -> bool {
        lock(&self.head).sent
    }

    /// Whether `start_response` was called.
    pub(crate) fn started(&self) -> bool {
        lock(&self.head).status.is_some()
    }

    /// Hands the head to the host if it has not gone yet (PEP 3333: with the first
    /// non-empty body bytes, or at the end), then `data`; with `flush` the host sends it
    /// now. The GIL is released while the host works (it may wait for a slow client).
    pub(crate) fn send(&self, py: Python<'_>, data: &[u8], flush: bool) -> PyResult<()> {
        let start = {
            let mut head = lock(&self.head);
            if head.sent {
                None
            } else {
                let Some(status) = head.status else {
                    return Err(PyAssertionError::new_err(
                        "the response body started before start_response() was called",
                    ));
                };
                head.sent = true;
                Some((status, std::mem::take(&mut head.headers)))
            }
        };
        let call = &*self.call;
        let first = start.is_some();
        if let Some((status, headers)) = start {
            let st = call.start_response(status, &headers);
            if st != Status::OK {
                return Err(host_error("start the response", st));
            }
        }
        if data.is_empty() && !flush {
            return Ok(());
        }
        let send = || {
            let st = if data.is_empty() { Status::OK } else { call.write(data) };
            if st == Status::OK && flush { call.flush() } else { st }
        };
        // The host holds back the head and the first write (environ ABI §6): it returns at
        // once, so the GIL stays (releasing it per request costs a hand-over to any thread
        // waiting for it, and a wait to get it back). A large one is copied with the GIL
        // released, and anything after it may wait for the client.
        let st =
            if first && !flush && data.len() <= KEEP_GIL_WRITE { send() } else { py.detach(send) };
        if st != Status::OK {
            return Err(host_error("write the response", st));
        }
        Ok(())
    }
}

/// The `start_response(status, response_headers, exc_info=None)` callable.
#[pyclass(frozen, module = "gatehouse_wsgi")]
#[derive(Debug)]
pub(crate) struct StartResponse {
    pub(crate) response: Arc<Response>,
}

#[pymethods]
impl StartResponse {
    #[pyo3(signature = (status, headers, exc_info = None))]
    fn __call__(
        &self,
        status: &Bound<'_, PyAny>,
        headers: &Bound<'_, PyAny>,
        exc_info: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Write> {
        if let Err(why) = self.response.call_check() {
            return Err(unusable("start_response", why));
        }
        let exc_info = exc_info.filter(|e| !e.is_none());
        {
            let head = lock(&self.response.head);
            match exc_info {
                // PEP 3333: too late to change the head: re-raise the app's exception.
                Some(info) if head.sent => return Err(PyErr::from_value(info.get_item(1)?)),
                None if head.status.is_some() => {
                    return Err(PyAssertionError::new_err(
                        "start_response() was already called (pass exc_info to replace the \
                         headers after an error)",
                    ));
                }
                _ => {}
            }
        }
        let code = status_code(status)?;
        let headers = header_list(headers)?;
        let mut head = lock(&self.response.head);
        head.status = Some(code);
        head.headers = headers;
        Ok(Write { response: Arc::clone(&self.response) })
    }
}

impl Response {
    fn call_check(&self) -> Result<(), Unusable> {
        self.call.check()
    }
}

/// A status line's code: `NNN Reason`, a native string of latin-1 characters.
fn status_code(status: &Bound<'_, PyAny>) -> PyResult<u32> {
    let Ok(text) = status.cast::<PyString>() else {
        return Err(PyTypeError::new_err(format!(
            "the status must be a str like '200 OK', not {}",
            type_name(status)
        )));
    };
    let text = text.to_str()?;
    let b = text.as_bytes();
    let valid = b.len() >= 4
        && b[..3].iter().all(u8::is_ascii_digit)
        && b[3] == b' '
        && b[0] != b'0'
        && !text.chars().any(|c| c.is_control() || u32::from(c) > 0xFF);
    if !valid {
        return Err(PyValueError::new_err(format!(
            "invalid status line {text:?}: expected a three-digit code, a space and a reason, \
             like '200 OK'"
        )));
    }
    Ok(u32::from(b[0] - b'0') * 100 + u32::from(b[1] - b'0') * 10 + u32::from(b[2] - b'0'))
}

/// The response headers: a list of `(name, value)` tuples of native strings.
fn header_list(headers: &Bound<'_, PyAny>) -> PyResult<Vec<(Vec<u8>, Vec<u8>)>> {
    let Ok(list) = headers.cast::<PyList>() else {
        return Err(PyTypeError::new_err(format!(
            "the response headers must be a list of (name, value) tuples, not {}",
            type_name(headers)
        )));
    };
    let mut out = Vec::with_capacity(list.len());
    for item in list.iter() {
        let pair = match item.cast::<PyTuple>() {
            Ok(t) if t.len() == 2 => t.clone(),
            _ => {
                return Err(PyTypeError::new_err(format!(
                    "a response header must be a (name, value) tuple, not {}",
                    item.repr().map_or_else(|_| type_name(&item), |r| r.to_string())
                )));
            }
        };
        let name = header_text(&pair.get_item(0)?, "name")?;
        let value = header_text(&pair.get_item(1)?, "value")?;
        let token = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
        if name.is_empty() || !name.iter().copied().all(token) {
            return Err(PyValueError::new_err(format!(
                "invalid response header name {:?}",
                String::from_utf8_lossy(&name)
            )));
        }
        if value.iter().any(|&c| (c < 0x20 && c != b'\t') || c == 0x7F) {
            return Err(PyValueError::new_err(format!(
                "the value of response header {:?} has a control character (a newline?)",
                String::from_utf8_lossy(&name)
            )));
        }
        out.push((name, value));
    }
    Ok(out)
}

/// A header name or value: a str of latin-1 characters, as bytes.
fn header_text(v: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<u8>> {
    let Ok(s) = v.cast::<PyString>() else {
        return Err(PyTypeError::new_err(format!(
            "a response header {what} must be a str, not {}",
            type_name(v)
        )));
    };
    s.to_str()?
        .chars()
        .map(|c| u8::try_from(u32::from(c)).ok())
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "a response header {what} must be latin-1 text (encode other text first, as \
                 RFC 8187 or percent-encoding)"
            ))
        })
}

pub(crate) fn type_name(v: &Bound<'_, PyAny>) -> String {
    v.get_type().name().map_or_else(|_| "?".to_owned(), |n| n.to_string())
}

/// The `write(data)` callable `start_response` returns: sends `data` at once (unbuffered,
/// as PEP 3333 asks).
#[pyclass(frozen, module = "gatehouse_wsgi")]
#[derive(Debug)]
pub(crate) struct Write {
    response: Arc<Response>,
}

#[pymethods]
impl Write {
    fn __call__(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<()> {
        if let Err(why) = self.response.call_check() {
            return Err(unusable("write()", why));
        }
        let Ok(bytes) = data.cast::<PyBytes>() else {
            return Err(PyTypeError::new_err(format!(
                "write() takes bytes, not {}",
                type_name(data)
            )));
        };
        self.response.send(py, bytes.as_bytes(), true)
    }
}

/// `wsgi.input`: the request body as the host streams it, with `read`, `readline`,
/// `readlines` and iteration by lines. Reads wait (with the GIL released) for the client.
#[pyclass(frozen, module = "gatehouse_wsgi")]
#[derive(Debug)]
pub(crate) struct Input {
    call: Arc<Call>,
    state: Mutex<Buffer>,
}

#[derive(Debug, Default)]
struct Buffer {
    bytes: Vec<u8>,
    /// Where the unread bytes start.
    start: usize,
    eof: bool,
    /// How much the next read of an unknown size asks for: `MIN_CHUNK` first, doubling up
    /// to `READ_CHUNK` (a small body costs little; iterating a large one, few reads).
    next_unsized: usize,
}

impl Buffer {
    fn unread(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    /// Takes `n` unread bytes.
    fn take(&mut self, n: usize) -> Vec<u8> {
        let out = self.bytes[self.start..self.start + n].to_vec();
        self.start += n;
        if self.start == self.bytes.len() {
            self.bytes.clear();
            self.start = 0;
        }
        out
    }
}

impl Input {
    pub(crate) fn new(call: Arc<Call>) -> Input {
        Input { call, state: Mutex::new(Buffer::default()) }
    }

    /// Reads one more piece of the body into `buf`, asking for about `need` bytes (within
    /// `MIN_CHUNK..=READ_CHUNK`); false at the end.
    fn fill(&self, py: Python<'_>, buf: &mut Buffer, need: usize) -> PyResult<bool> {
        if buf.eof {
            return Ok(false);
        }
        if buf.start > 0 {
            buf.bytes.drain(..buf.start);
            buf.start = 0;
        }
        let old = buf.bytes.len();
        buf.bytes.resize(old + need.clamp(MIN_CHUNK, READ_CHUNK), 0);
        let call = &*self.call;
        let target = &mut buf.bytes[old..];
        let read = py.detach(|| call.read_body(target));
        match read {
            Ok(n) => {
                buf.bytes.truncate(old + n);
                buf.eof = n == 0;
                Ok(n > 0)
            }
            Err(status) => {
                buf.bytes.truncate(old);
                Err(match status {
                    Status::DISCONNECTED => PyOSError::new_err(
                        "reading the request body: the client went away before sending all of it",
                    ),
                    Status::TOO_LARGE => PyOSError::new_err(
                        "reading the request body: it is larger than the alias's max_body",
                    ),
                    Status::BAD_STATE => unusable("wsgi.input", Unusable::Expired),
                    _ => PyOSError::new_err(
                        "reading the request body: it was cut short or badly chunked",
                    ),
                })
            }
        }
    }

    fn guard(&self) -> PyResult<MutexGuard<'_, Buffer>> {
        self.call.check().map_err(|why| unusable("wsgi.input", why))?;
        Ok(lock(&self.state))
    }

    fn line(&self, py: Python<'_>, size: Option<isize>) -> PyResult<Vec<u8>> {
        let limit = size.and_then(|s| usize::try_from(s).ok());
        let mut buf = self.guard()?;
        let mut searched = 0;
        loop {
            let unread = buf.unread();
            if let Some(i) = unread[searched..].iter().position(|&b| b == b'\n') {
                let end = searched + i + 1;
                return Ok(buf.take(limit.map_or(end, |l| l.min(end))));
            }
            if let Some(l) = limit
                && unread.len() >= l
            {
                return Ok(buf.take(l));
            }
            searched = unread.len();
            let need = match limit {
                Some(l) => l - searched,
                None => {
                    let need = buf.next_unsized.max(MIN_CHUNK);
                    buf.next_unsized = (need * 2).min(READ_CHUNK);
                    need
                }
            };
            if !self.fill(py, &mut buf, need)? {
                let n = buf.unread().len();
                return Ok(buf.take(limit.map_or(n, |l| l.min(n))));
            }
        }
    }
}

#[pymethods]
impl Input {
    /// Reads `size` bytes (fewer at the end), or everything left without a size.
    #[pyo3(signature = (size = None))]
    fn read<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        let want = size.and_then(|s| usize::try_from(s).ok());
        let mut buf = self.guard()?;
        while want.is_none_or(|w| buf.unread().len() < w) {
            let need = want.map_or(READ_CHUNK, |w| w - buf.unread().len());
            if !self.fill(py, &mut buf, need)? {
                break;
            }
        }
        let n = want.map_or(buf.unread().len(), |w| w.min(buf.unread().len()));
        Ok(PyBytes::new(py, &buf.take(n)))
    }

    /// Reads one line, with its `\n` (at most `size` bytes).
    #[pyo3(signature = (size = None))]
    fn readline<'py>(&self, py: Python<'py>, size: Option<isize>) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, &self.line(py, size)?))
    }

    /// Reads lines until the end, or until about `hint` bytes were read.
    #[pyo3(signature = (hint = None))]
    fn readlines<'py>(
        &self,
        py: Python<'py>,
        hint: Option<isize>,
    ) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        let hint = hint.and_then(|h| usize::try_from(h).ok()).filter(|&h| h > 0);
        let mut lines = Vec::new();
        let mut total = 0;
        loop {
            let line = self.line(py, None)?;
            if line.is_empty() {
                return Ok(lines);
            }
            total += line.len();
            lines.push(PyBytes::new(py, &line));
            if hint.is_some_and(|h| total >= h) {
                return Ok(lines);
            }
        }
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyBytes>>> {
        let line = self.line(py, None)?;
        Ok((!line.is_empty()).then(|| PyBytes::new(py, &line)))
    }
}

/// `wsgi.errors`: a text stream into the daemon's error log, one log line per line
/// written (a partial line waits for its end, a `flush`, or the end of the request), at
/// level ERROR; what `print()` writes through `sys.stdout` comes in by `write_info` and is
/// logged at level INFO.
#[pyclass(frozen, module = "gatehouse_wsgi")]
#[derive(Debug)]
pub(crate) struct Errors {
    call: Arc<Call>,
    pending: Mutex<String>,
    pending_info: Mutex<String>,
}

impl Errors {
    pub(crate) fn new(call: Arc<Call>) -> Errors {
        Errors { call, pending: Mutex::new(String::new()), pending_info: Mutex::new(String::new()) }
    }

    /// Logs every complete line (and with `all`, the rest), without the GIL: in a worker
    /// process a log line is a write to the daemon, which may have to wait.
    pub(crate) fn emit(&self, py: Python<'_>, all: bool) {
        let take = |pending: &Mutex<String>| -> Vec<String> {
            let mut pending = lock(pending);
            let cut = if all { pending.len() } else { pending.rfind('\n').map_or(0, |i| i + 1) };
            let done: String = pending.drain(..cut).collect();
            done.lines().map(str::to_owned).collect()
        };
        let (errors, infos) = (take(&self.pending), take(&self.pending_info));
        if errors.is_empty() && infos.is_empty() {
            return;
        }
        py.detach(|| {
            for line in errors {
                self.call.log_error(&line);
            }
            for line in infos {
                self.call.log_info(&line);
            }
        });
    }

    fn push(&self, pending: &Mutex<String>, text: &Bound<'_, PyAny>) -> PyResult<usize> {
        let Ok(s) = text.cast::<PyString>() else {
            return Err(PyTypeError::new_err(format!(
                "wsgi.errors.write() takes a str, not {}",
                type_name(text)
            )));
        };
        let s = s.to_str()?;
        lock(pending).push_str(s);
        self.emit(text.py(), self.call.expired());
        Ok(s.chars().count())
    }
}

#[pymethods]
impl Errors {
    fn write(&self, text: &Bound<'_, PyAny>) -> PyResult<usize> {
        self.push(&self.pending, text)
    }

    /// What `sys.stdout` is given on a request's thread: the same, at level INFO.
    fn write_info(&self, text: &Bound<'_, PyAny>) -> PyResult<usize> {
        self.push(&self.pending_info, text)
    }

    fn writelines(&self, lines: &Bound<'_, PyAny>) -> PyResult<()> {
        for line in lines.try_iter()? {
            self.write(&line?)?;
        }
        Ok(())
    }

    fn flush(&self, py: Python<'_>) {
        self.emit(py, true);
    }
}
