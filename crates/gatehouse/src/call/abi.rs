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
use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::web::Bytes;
use gatehouse_abi::{Environ, HostApi, Pair, Status, Str, Upload};
use tokio::sync::oneshot;

use super::body::{BodySource, body_error_code};
use super::reply::{Call, CallError, Head, Reply, ReplySink, log_app_error};
use crate::plugin::load::Plugin;
/// Per-call state behind the `request` handle the app passes back to every callback.
struct RequestState<'a> {
    call: &'a Call<'a>,
    body: BodySource,
    /// The rest of the body chunk being read.
    pending: Bytes,
    sink: ReplySink<'a>,
}

/// Runs a callback body, turning a panic (a bug of ours) into `fallback` instead of an abort
/// at the `extern "C"` boundary.
pub(crate) fn guard<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// # Safety
/// `request` must be the `RequestState` pointer `invoke` passed in the environ, during the
/// app's `handle` call, with no other reference to it alive.
unsafe fn state<'s>(request: *mut c_void) -> Option<&'s mut RequestState<'s>> {
    // SAFETY: guaranteed by the caller; null is checked by `as_mut`.
    unsafe { request.cast::<RequestState<'s>>().as_mut() }
}

/// The `len` pairs at `ptr` (none when `len` is 0); `None` for a null pointer with a length.
///
/// # Safety
/// `ptr` must point to `len` valid pairs for the returned lifetime (or `len` be 0).
pub(crate) unsafe fn pairs<'a>(ptr: *const Pair, len: usize) -> Option<&'a [Pair]> {
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
pub(crate) unsafe fn bytes<'a>(s: &Str) -> &'a [u8] {
    if s.ptr.is_null() || s.len == 0 {
        return &[];
    }
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts(s.ptr, s.len) }
}

unsafe extern "C" fn read_body(request: *mut c_void, buf: *mut u8, cap: usize) -> isize {
    // SAFETY: the app passes back the handle it was given, during the call.
    let Some(st) = (unsafe { state(request) }) else { return -(Status::INVALID.0 as isize) };
    if buf.is_null() && cap > 0 {
        return -(Status::INVALID.0 as isize);
    }
    guard(-(Status::ERROR.0 as isize), || {
        if cap == 0 {
            return 0;
        }
        while st.pending.is_empty() {
            let next = match st.sink.body_wait() {
                None => st.body.next_chunk(),
                Some(limit) => {
                    st.body.next_chunk_within(limit).unwrap_or_else(|| st.sink.body_stalled())
                }
            };
            match next {
                Ok(Some(chunk)) => st.pending = chunk,
                Ok(None) => return 0,
                Err(e) => return -(body_error_code(e).0 as isize),
            }
        }
        let n = cap.min(st.pending.len()).min(isize::MAX as usize);
        // SAFETY: the app guarantees `buf` has room for `cap >= n` bytes; the source is
        // `n` bytes of `pending`.
        unsafe { std::ptr::copy_nonoverlapping(st.pending.as_ptr(), buf, n) };
        let _ = st.pending.split_to(n);
        n as isize
    })
}

unsafe extern "C" fn debug_log(request: *mut c_void, message: Str, must: u32) -> Status {
    // SAFETY: the app passes back the handle it was given, during the call.
    let Some(st) = (unsafe { state(request) }) else { return Status::INVALID };
    // SAFETY: the app passes a valid byte range for the duration of this call.
    let message = unsafe { bytes(&message) };
    guard(Status::ERROR, || {
        if !st.call.develop_mode && must == 0 {
            return Status::OK;
        }
        match st.call.debug.write(st.call.request_id, message) {
            Ok(()) => Status::OK,
            Err(_) => Status::ERROR,
        }
    })
}

unsafe extern "C" fn log_error(request: *mut c_void, message: Str) {
    // SAFETY: the app passes back the handle it was given, during the call.
    let Some(st) = (unsafe { state(request) }) else { return };
    // SAFETY: the app passes a valid byte range for the duration of this call.
    let message = unsafe { bytes(&message) };
    guard((), || log_app_error(st.call.app, st.call.request_id, message));
}

/// Headers an app may not set: the connection is the daemon's business.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-connection"
            | "te"
            | "trailer"
    )
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
        } else if !hop_by_hop(&name) {
            out.push((name, value));
        }
    }
    Ok(Head { status, headers: out, declared_len })
}

unsafe extern "C" fn start_response(
    request: *mut c_void,
    status: u32,
    headers: *const Pair,
    headers_len: usize,
) -> Status {
    // SAFETY: the app passes back the handle it was given, during the call.
    let Some(st) = (unsafe { state(request) }) else { return Status::INVALID };
    // SAFETY: the app passes `headers_len` valid pairs for the duration of this call.
    let Some(headers) = (unsafe { pairs(headers, headers_len) }) else { return Status::INVALID };
    // SAFETY: the app's pairs are valid for this call, which `head` runs in.
    guard(Status::ERROR, || st.sink.start(|| unsafe { head(status, headers) }))
}

unsafe extern "C" fn write(request: *mut c_void, data: Str) -> Status {
    // SAFETY: the app passes back the handle it was given, during the call.
    let Some(st) = (unsafe { state(request) }) else { return Status::INVALID };
    // SAFETY: the app passes a valid byte range for the duration of this call.
    let data = unsafe { bytes(&data) };
    guard(Status::ERROR, || st.sink.write(data))
}

unsafe extern "C" fn flush(request: *mut c_void) -> Status {
    // SAFETY: the app passes back the handle it was given, during the call.
    let Some(st) = (unsafe { state(request) }) else { return Status::INVALID };
    guard(Status::ERROR, || st.sink.flush())
}

/// The callbacks every request gets.
static HOST_API: HostApi = HostApi {
    struct_size: std::mem::size_of::<HostApi>() as u32,
    read_body: Some(read_body),
    debug_log: Some(debug_log),
    log_error: Some(log_error),
    start_response: Some(start_response),
    write: Some(write),
    flush: Some(flush),
};

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
    let _ = call_app(plugin, call, body, sink);
}

/// Calls the app right here (`dispatch: inline`) and returns its whole reply. The caller
/// must not wait on anything, so there is no body to stream and every write is kept.
pub fn invoke_inline(plugin: &Plugin, call: &Call<'_>) -> Reply {
    call_app(plugin, call, BodySource::Empty, ReplySink::direct(call.app, call.request_id))
        .unwrap_or(Reply::Failed(CallError::NoResponse))
}

thread_local! {
    /// Reused arrays for the ABI view of a request (vars, params), so a call allocates none.
    static ABI_SCRATCH: std::cell::RefCell<(Vec<Pair>, Vec<Pair>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

fn call_app(
    plugin: &Plugin,
    call: &Call<'_>,
    body: BodySource,
    sink: ReplySink<'_>,
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
        let result = call_with(plugin, call, body, sink, vars, params);
        // The pointers in the scratch arrays die with the call.
        vars.clear();
        params.clear();
        result
    })
}

fn call_with(
    plugin: &Plugin,
    call: &Call<'_>,
    body: BodySource,
    sink: ReplySink<'_>,
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
    let mut state = RequestState { call, body, pending: Bytes::new(), sink };
    let environ = Environ {
        struct_size: std::mem::size_of::<Environ>() as u32,
        vars: vars.as_ptr(),
        vars_len: vars.len(),
        params: params.as_ptr(),
        params_len: params.len(),
        uploads: uploads.as_ptr(),
        uploads_len: uploads.len(),
        request: std::ptr::from_mut(&mut state).cast(),
        host: &HOST_API,
    };
    let status = plugin.call(&environ);
    state.sink.finish(status)
}
