//! The ABI boundary of an app call: the [`HostApi`] callbacks an app calls back into
//! (body reader, debug log, error log, start_response, write, flush) and the call itself,
//! which builds the `#[repr(C)]` environ from owned request data.
//!
//! One of the boundary modules where `unsafe` is allowed (with `plugin::load` and
//! `isolation::boundary`); each block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::os::unix::ffi::OsStrExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::web::Bytes;
use gatehouse_abi::{Environ, HostApi, Pair, Status, Str, Upload};
use tokio::sync::oneshot;

use super::body::{BodySource, body_error_code};
use super::reply::{Call, CallError, Head, Reply, ReplySink};
use crate::plugin::load::Plugin;
/// Per-call state behind the `request` handle the app passes back to every callback.
struct RequestState<'a> {
    call: &'a Call<'a>,
    body: BodySource,
    /// The rest of the body chunk being read.
    pending: Bytes,
    /// The bytes of the last read, until they are copied to the app.
    taken: Bytes,
    sink: ReplySink<'a>,
    /// A WebSocket handshake's call: the offer the app may accept.
    ws: Option<super::websocket::Accepting<'a>>,
}

impl Backend for RequestState<'_> {
    fn read_body(&mut self, cap: usize) -> Result<&[u8], Status> {
        while self.pending.is_empty() {
            let next = match self.sink.body_wait() {
                None => self.body.next_chunk(),
                Some(limit) => {
                    self.body.next_chunk_within(limit).unwrap_or_else(|| self.sink.body_stalled())
                }
            };
            match next {
                Ok(Some(chunk)) => self.pending = chunk,
                Ok(None) => return Ok(&[]),
                Err(e) => return Err(body_error_code(e)),
            }
        }
        let n = cap.min(self.pending.len());
        self.taken = self.pending.split_to(n);
        Ok(&self.taken)
    }

    fn debug_log(&mut self, message: &[u8], must: bool) -> Status {
        self.call.debug_log(message, must)
    }

    fn log_error(&mut self, message: &[u8]) {
        self.call.log(log::Level::Error, message);
    }

    fn log_info(&mut self, message: &[u8]) {
        self.call.log(log::Level::Info, message);
    }

    fn start_response(&mut self, head: impl FnOnce() -> Result<Head, Status>) -> Status {
        self.sink.start(head)
    }

    fn write(&mut self, data: &[u8]) -> Status {
        self.sink.write(data)
    }

    fn flush(&mut self) -> Status {
        self.sink.flush()
    }

    fn websocket_accept(&mut self, protocol: &[u8]) -> Result<u64, Status> {
        match &mut self.ws {
            Some(ws) => ws.accept(&mut self.sink, protocol),
            None => Err(Status::INVALID),
        }
    }
}

/// The callbacks of an in-process call.
static HOST_API: HostApi = host_api::<RequestState<'static>>();

/// Where an app call runs, seen from its callbacks: what each [`HostApi`] callback does, in
/// safe Rust. The in-process call (`RequestState`, below) and a worker process's call
/// (`isolation::boundary`) implement it; the `extern "C"` shims are written once, generic
/// over it ([`host_api`]).
pub(crate) trait Backend {
    /// At most `cap` (> 0) bytes of the request body, consumed: empty at its end, or the
    /// status of a failed body.
    fn read_body(&mut self, cap: usize) -> Result<&[u8], Status>;
    /// A `debug_log` line (`must`: written even without develop mode).
    fn debug_log(&mut self, message: &[u8], must: bool) -> Status;
    /// A `log_error` line.
    fn log_error(&mut self, message: &[u8]);
    /// A `log_info` line.
    fn log_info(&mut self, message: &[u8]);
    /// `start_response`: `head` validates the app's status and headers when called.
    fn start_response(&mut self, head: impl FnOnce() -> Result<Head, Status>) -> Status;
    /// A `write` of body bytes.
    fn write(&mut self, data: &[u8]) -> Status;
    /// A `flush`.
    fn flush(&mut self) -> Status;
    /// A `websocket_accept` with `protocol` (empty: none): the socket's id. By default
    /// refused (`INVALID`: this call offers no WebSocket).
    fn websocket_accept(&mut self, protocol: &[u8]) -> Result<u64, Status> {
        let _ = protocol;
        Err(Status::INVALID)
    }
}

/// The callbacks of a call whose `request` handle points to a `B`.
pub(crate) const fn host_api<B: Backend>() -> HostApi {
    HostApi {
        struct_size: std::mem::size_of::<HostApi>() as u32,
        read_body: Some(read_body::<B>),
        debug_log: Some(debug_log::<B>),
        log_error: Some(log_error::<B>),
        start_response: Some(start_response::<B>),
        write: Some(write::<B>),
        flush: Some(flush::<B>),
        log_info: Some(log_info::<B>),
        websocket_accept: Some(websocket_accept::<B>),
    }
}

thread_local! {
    /// The call running on this thread: the handle its app was given, and its state.
    static CURRENT: std::cell::Cell<(usize, *mut c_void)> =
        const { std::cell::Cell::new((0, std::ptr::null_mut())) };
}

/// Handles given to apps: unique for the process's life, never 0.
static NEXT_HANDLE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(1);

/// Puts the previous call back as this thread's current one (none, outside nested calls).
struct Restore((usize, *mut c_void));

impl Drop for Restore {
    fn drop(&mut self) {
        CURRENT.with(|c| c.set(self.0));
    }
}

/// Runs `f` (which calls the app) with `state` as this thread's current call; `f` gets the
/// `request` handle to put in the environ. The handle is a token, not the state's address:
/// a callback from another thread, or after `handle` returned (a C plugin that kept the
/// handle), matches no call and is refused with `INVALID`, instead of acting on whatever
/// request runs next on that thread (its state would be at the same stack address).
pub(crate) fn with_call<S, R>(state: &mut S, f: impl FnOnce(*mut c_void) -> R) -> R {
    let handle = NEXT_HANDLE.fetch_add(1, std::sync::atomic::Ordering::Relaxed).max(1);
    let this = (handle, std::ptr::from_mut(state).cast::<c_void>());
    let _restore = Restore(CURRENT.with(|c| c.replace(this)));
    f(std::ptr::without_provenance_mut(handle))
}

/// The state of the call `request` names, if it is this thread's current call.
///
/// # Safety
/// The current call's state must be a `B` (every `HostApi` made by [`host_api::<B>`] is
/// only given with a `B` to [`with_call`]), and no other reference to it may be alive
/// (callbacks do not nest). (A `B` is named with `'static` lifetimes in its `HostApi`; the
/// object lives for the call, and no callback keeps a reference past its return.)
unsafe fn backend<'s, B>(request: *mut c_void) -> Option<&'s mut B> {
    let (handle, state) = CURRENT.with(std::cell::Cell::get);
    if handle == 0 || request.addr() != handle {
        return None;
    }
    // SAFETY: the current call's state, alive until `with_call` returns (the app is inside
    // `handle`, on this thread); a `B` as guaranteed by the caller.
    unsafe { state.cast::<B>().as_mut() }
}

fn negative(s: Status) -> isize {
    -(s.0 as isize)
}

unsafe extern "C" fn read_body<B: Backend>(
    request: *mut c_void,
    buf: *mut u8,
    cap: usize,
) -> isize {
    // SAFETY: the app passes back the handle it was given, during the call.
    let Some(b) = (unsafe { backend::<B>(request) }) else { return negative(Status::INVALID) };
    if buf.is_null() && cap > 0 {
        return negative(Status::INVALID);
    }
    guard(negative(Status::ERROR), || {
        if cap == 0 {
            return 0;
        }
        match b.read_body(cap) {
            Ok(data) => {
                let n = data.len().min(cap).min(isize::MAX as usize);
                // SAFETY: the app guarantees `buf` has room for `cap >= n` bytes; the source
                // is `n` bytes of the backend's buffer.
                unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), buf, n) };
                n as isize
            }
            Err(status) => negative(status),
        }
    })
}

unsafe extern "C" fn debug_log<B: Backend>(
    request: *mut c_void,
    message: Str,
    must: u32,
) -> Status {
    // SAFETY: the app passes back the handle it was given, during the call.
    let Some(b) = (unsafe { backend::<B>(request) }) else { return Status::INVALID };
    // SAFETY: the app passes a valid byte range for the duration of this call.
    let message = unsafe { bytes(&message) };
    guard(Status::ERROR, || b.debug_log(message, must != 0))
}

unsafe extern "C" fn log_error<B: Backend>(request: *mut c_void, message: Str) {
    // SAFETY: the app passes back the handle it was given, during the call.
    let Some(b) = (unsafe { backend::<B>(request) }) else { return };
    // SAFETY: the app passes a valid byte range for the duration of this call.
    let message = unsafe { bytes(&message) };
    guard((), || b.log_error(message));
}

unsafe extern "C" fn log_info<B: Backend>(request: *mut c_void, message: Str) {
    // SAFETY: the app passes back the handle it was given, during the call.
    let Some(b) = (unsafe { backend::<B>(request) }) else { return };
    // SAFETY: the app passes a valid byte range for the duration of this call.
    let message = unsafe { bytes(&message) };
    guard((), || b.log_info(message));
}

unsafe extern "C" fn start_response<B: Backend>(
    request: *mut c_void,
    status: u32,
    headers: *const Pair,
    headers_len: usize,
) -> Status {
    // SAFETY: the app passes back the handle it was given, during the call.
    let Some(b) = (unsafe { backend::<B>(request) }) else { return Status::INVALID };
    // SAFETY: the app passes `headers_len` valid pairs for the duration of this call.
    let Some(headers) = (unsafe { pairs(headers, headers_len) }) else { return Status::INVALID };
    // SAFETY: the app's pairs are valid for this call, which `head` runs in.
    guard(Status::ERROR, || b.start_response(|| unsafe { head(status, headers) }))
}

unsafe extern "C" fn write<B: Backend>(request: *mut c_void, data: Str) -> Status {
    // SAFETY: the app passes back the handle it was given, during the call.
    let Some(b) = (unsafe { backend::<B>(request) }) else { return Status::INVALID };
    // SAFETY: the app passes a valid byte range for the duration of this call.
    let data = unsafe { bytes(&data) };
    guard(Status::ERROR, || b.write(data))
}

unsafe extern "C" fn flush<B: Backend>(request: *mut c_void) -> Status {
    // SAFETY: the app passes back the handle it was given, during the call.
    let Some(b) = (unsafe { backend::<B>(request) }) else { return Status::INVALID };
    guard(Status::ERROR, || b.flush())
}

unsafe extern "C" fn websocket_accept<B: Backend>(
    request: *mut c_void,
    protocol: Str,
    socket: *mut u64,
) -> Status {
    // SAFETY: the app passes back the handle it was given, during the call.
    let Some(b) = (unsafe { backend::<B>(request) }) else { return Status::INVALID };
    if socket.is_null() {
        return Status::INVALID;
    }
    // SAFETY: the app passes a valid byte range for the duration of this call.
    let protocol = unsafe { bytes(&protocol) };
    match guard(Err(Status::ERROR), || b.websocket_accept(protocol)) {
        Ok(id) => {
            // SAFETY: the app passes a writable `u64` (checked non-null above).
            unsafe { socket.write(id) };
            Status::OK
        }
        Err(status) => status,
    }
}

/// Runs a callback body, turning a panic (a bug of ours) into `fallback` instead of an abort
/// at the `extern "C"` boundary.
fn guard<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// The `len` pairs at `ptr` (none when `len` is 0); `None` for a null pointer with a length.
///
/// # Safety
/// `ptr` must point to `len` valid pairs for the returned lifetime (or `len` be 0).
unsafe fn pairs<'a>(ptr: *const Pair, len: usize) -> Option<&'a [Pair]> {
    if len == 0 {
        return Some(&[]);
    }
    if ptr.is_null() {
        return None;
    }
    // SAFETY: guaranteed by the caller.
    Some(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// # Safety
/// `s` must describe a readable byte range (or be null/empty) for the returned lifetime.
unsafe fn bytes<'a>(s: &Str) -> &'a [u8] {
    if s.ptr.is_null() || s.len == 0 {
        return &[];
    }
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts(s.ptr, s.len) }
}

/// Validates a status and headers from the app into a [`Head`].
/// # Safety
/// Every pair's strings must be readable byte ranges (or null/empty) during the call.
pub unsafe fn head(status: u32, headers: &[Pair]) -> Result<Head, Status> {
    // A 1xx is an interim response: as an app's final answer, a client would wait on.
    let status = u16::try_from(status)
        .ok()
        .filter(|&s| s >= 200)
        .and_then(|s| StatusCode::from_u16(s).ok())
        .ok_or(Status::INVALID)?;
    let mut out = Vec::with_capacity(headers.len());
    let mut declared_len = None;
    for h in headers {
        // SAFETY: guaranteed by the caller.
        let (name, value) = unsafe { (bytes(&h.name), bytes(&h.value)) };
        let name = HeaderName::from_bytes(name).map_err(|_| Status::INVALID)?;
        let value = HeaderValue::from_bytes(value).map_err(|_| Status::INVALID)?;
        if name == header::CONTENT_LENGTH {
            let n = value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or(Status::INVALID)?;
            declared_len = Some(n);
        } else if !super::reply::hop_by_hop(&name) {
            out.push((name, value));
        }
    }
    Ok(Head { status, headers: out, declared_len })
}

/// Calls the app once on a pool thread; its reply goes to `reply` as soon as it is known (at
/// the latest when `handle` returns), streaming when the app writes in pieces.
/// A streamed write waits at most `stall_limit` for the client to take earlier data.
pub fn invoke(
    plugin: &Plugin,
    call: &Call<'_>,
    body: BodySource,
    reply: oneshot::Sender<Reply>,
    stall_limit: Duration,
) {
    let sink = ReplySink::channel(call.app, call.request_id, reply)
        .for_request(call.vars)
        .stall_limit(stall_limit);
    let _ = call_app(plugin, call, body, sink, None);
}

/// Calls the app once on a pool thread for a request with a valid WebSocket handshake
/// (`offer`): as [`invoke`], and the app may accept the socket (its reply is then
/// [`Reply::Upgrade`]).
pub(crate) fn invoke_websocket(
    plugin: &std::sync::Arc<Plugin>,
    call: &Call<'_>,
    offer: &super::websocket::Offer,
    reply: oneshot::Sender<Reply>,
    stall_limit: Duration,
) {
    let sink = ReplySink::channel(call.app, call.request_id, reply)
        .for_request(call.vars)
        .stall_limit(stall_limit);
    let ws = super::websocket::Accepting::new(offer, plugin);
    let _ = call_app(plugin, call, BodySource::Empty, sink, Some(ws));
}

/// Calls the app right here (on the HTTP worker) and returns its whole reply. The caller
/// must not wait on anything, so there is no body to stream and every write is kept; with
/// `cut_at`, a write after it cuts the reply (see [`ReplySink::cut_at`]).
pub fn invoke_inline(plugin: &Plugin, call: &Call<'_>, cut_at: Option<Instant>) -> Reply {
    let sink = ReplySink::direct(call.app, call.request_id).cut_at(cut_at);
    call_app(plugin, call, BodySource::Empty, sink, None)
        .unwrap_or(Reply::Failed(CallError::NoResponse))
}

thread_local! {
    /// Reused arrays for the ABI view of a request (vars, params), so a call allocates none.
    static ABI_SCRATCH: std::cell::RefCell<(Vec<Pair>, Vec<Pair>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

fn call_app<'a>(
    plugin: &Plugin,
    call: &'a Call<'a>,
    body: BodySource,
    sink: ReplySink<'a>,
    ws: Option<super::websocket::Accepting<'a>>,
) -> Option<Reply> {
    let _panics_name_the_request = crate::logs::RequestScope::enter(call.app, call.request_id);
    ABI_SCRATCH.with(|scratch| {
        // A nested call on the same thread (not done today) would find the scratch taken.
        let mut own = (Vec::new(), Vec::new());
        let mut borrowed = scratch.try_borrow_mut().ok();
        let (vars, params) = match borrowed.as_deref_mut() {
            Some((v, p)) => (v, p),
            None => (&mut own.0, &mut own.1),
        };
        call.vars.fill_abi(vars);
        call.input.params.fill_abi(params);
        let result = call_with(plugin, call, body, sink, ws, vars, params);
        // The pointers in the scratch arrays die with the call.
        vars.clear();
        params.clear();
        result
    })
}

fn call_with<'a>(
    plugin: &Plugin,
    call: &'a Call<'a>,
    body: BodySource,
    sink: ReplySink<'a>,
    ws: Option<super::websocket::Accepting<'a>>,
    vars: &[Pair],
    params: &[Pair],
) -> Option<Reply> {
    let uploads: Vec<Upload> = call
        .input
        .uploads
        .iter()
        .map(|u| Upload {
            field: Str::new(u.field.as_bytes()),
            filename: Str::new(u.filename.as_bytes()),
            content_type: Str::new(u.content_type.as_bytes()),
            path: Str::new(u.path().as_os_str().as_bytes()),
            size: u.size,
        })
        .collect();
    let mut state =
        RequestState { call, body, pending: Bytes::new(), taken: Bytes::new(), sink, ws };
    let status = with_call(&mut state, |request| {
        plugin.call(&Environ {
            struct_size: std::mem::size_of::<Environ>() as u32,
            vars: vars.as_ptr(),
            vars_len: vars.len(),
            params: params.as_ptr(),
            params_len: params.len(),
            uploads: uploads.as_ptr(),
            uploads_len: uploads.len(),
            request,
            host: &HOST_API,
        })
    });
    state.sink.finish(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the writes it is given.
    #[derive(Default)]
    struct Counter(usize);

    impl Backend for Counter {
        fn read_body(&mut self, _: usize) -> Result<&[u8], Status> {
            Ok(b"")
        }
        fn debug_log(&mut self, _: &[u8], _: bool) -> Status {
            Status::OK
        }
        fn log_error(&mut self, _: &[u8]) {}
        fn log_info(&mut self, _: &[u8]) {}
        fn start_response(&mut self, _: impl FnOnce() -> Result<Head, Status>) -> Status {
            Status::OK
        }
        fn write(&mut self, _: &[u8]) -> Status {
            self.0 += 1;
            Status::OK
        }
        fn flush(&mut self) -> Status {
            Status::OK
        }
    }

    static COUNTER_API: HostApi = host_api::<Counter>();

    /// What a write through `request` answers on this thread.
    fn write_via(request: *mut c_void) -> Status {
        let Some(write) = COUNTER_API.write else { panic!("no write") };
        // SAFETY: a valid byte range; the handle is checked by the shim.
        unsafe { write(request, Str::new(b"x")) }
    }

    #[test]
    fn only_the_running_call_on_its_own_thread_reaches_its_state() {
        let mut first = Counter::default();
        let kept = with_call(&mut first, |request| {
            assert_eq!(write_via(request), Status::OK, "the call itself");
            // From another thread, during the call: refused.
            let addr = request.addr();
            let other = std::thread::spawn(move || {
                write_via(std::ptr::without_provenance_mut(addr)) == Status::INVALID
            });
            assert!(other.join().unwrap_or(false), "another thread's callback");
            assert_eq!(write_via(std::ptr::null_mut()), Status::INVALID, "a null handle");
            request.addr()
        });
        assert_eq!(first.0, 1);
        // After `handle` returned: refused, also while the next call runs on this thread.
        let mut second = Counter::default();
        with_call(&mut second, |request| {
            assert_ne!(request.addr(), kept);
            assert_eq!(write_via(std::ptr::without_provenance_mut(kept)), Status::INVALID);
        });
        assert_eq!(write_via(std::ptr::without_provenance_mut(kept)), Status::INVALID);
        assert_eq!((first.0, second.0), (1, 0), "a late write reached a call");
    }
}
