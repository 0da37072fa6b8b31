//! The host side of a request across the ABI: builds the `#[repr(C)]` environ from owned
//! request data, implements the [`HostApi`] callbacks (body reader, debug log, error log,
//! start_response, write), calls the app, and collects its reply.
//!
//! This is one of the two ABI boundary modules (the other is `plugins`); `unsafe` is allowed
//! here and nowhere else but there.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::os::unix::ffi::OsStrExt;
use std::panic::{AssertUnwindSafe, catch_unwind};

use actix_web::http::StatusCode;
use actix_web::http::header::{HeaderName, HeaderValue};
use gatehouse_abi::{Environ, HostApi, Pair, Status, Str, Upload};

use crate::debug_log::DebugLog;
use crate::environ::PairBuf;
use crate::input::Input;
use crate::plugins::Plugin;

/// Everything one app call needs, owned by the caller for the duration of the call.
#[derive(Debug)]
pub struct Call<'a> {
    /// CGI/WSGI variables.
    pub vars: &'a PairBuf,
    /// Parameters, uploads and body.
    pub input: &'a Input,
    /// The app's debug log.
    pub debug: &'a DebugLog,
    /// Whether develop mode is on for the alias.
    pub develop_mode: bool,
    /// The app's name, for the error log.
    pub app: &'a str,
    /// The request's id, for the error log.
    pub request_id: u64,
}

/// An app's reply, validated.
#[derive(Debug)]
pub struct Reply {
    /// HTTP status.
    pub status: StatusCode,
    /// Headers, in the order the app gave them.
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// The body.
    pub body: Vec<u8>,
}

/// Why a call produced no usable reply (the client gets 500).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// `handle` returned a failure status (a panic in a Rust app, an error in a C one).
    #[error("the app failed (handle returned status {0})")]
    Failed(u32),
    /// `handle` returned success without starting a response.
    #[error("the app returned without starting a response")]
    NoResponse,
}

/// Per-call state behind the `request` handle the app passes back to every callback.
struct RequestState<'a> {
    call: &'a Call<'a>,
    body_pos: usize,
    head: Option<(StatusCode, Vec<(HeaderName, HeaderValue)>)>,
    body: Vec<u8>,
}

/// Runs a callback body, turning a panic (a bug of ours) into `fallback` instead of an abort
/// at the `extern "C"` boundary.
fn guard<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// # Safety
/// `request` must be the `RequestState` pointer `invoke` passed in the environ, during the
/// app's `handle` call, with no other reference to it alive.
unsafe fn state<'s>(request: *mut c_void) -> Option<&'s mut RequestState<'s>> {
    // SAFETY: guaranteed by the caller; null is checked by `as_mut`.
    unsafe { request.cast::<RequestState<'s>>().as_mut() }
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

unsafe extern "C" fn read_body(request: *mut c_void, buf: *mut u8, cap: usize) -> isize {
    // SAFETY: the app passes back the handle it was given, during the call.
    let Some(st) = (unsafe { state(request) }) else { return -1 };
    if buf.is_null() && cap > 0 {
        return -1;
    }
    guard(-1, || {
        let body = &st.call.input.body;
        let n = cap.min(body.len() - st.body_pos).min(isize::MAX as usize);
        if n > 0 {
            // SAFETY: the app guarantees `buf` has room for `cap >= n` bytes; the source
            // range is inside `body`.
            unsafe { std::ptr::copy_nonoverlapping(body[st.body_pos..].as_ptr(), buf, n) };
            st.body_pos += n;
        }
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
        match st.call.debug.write(message) {
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
    guard((), || {
        log::error!(
            "app {} (request {}): {}",
            st.call.app,
            st.call.request_id,
            String::from_utf8_lossy(message).escape_debug()
        );
    });
}

unsafe extern "C" fn start_response(
    request: *mut c_void,
    status: u32,
    headers: *const Pair,
    headers_len: usize,
) -> Status {
    // SAFETY: the app passes back the handle it was given, during the call.
    let Some(st) = (unsafe { state(request) }) else { return Status::INVALID };
    if st.head.is_some() {
        return Status::BAD_STATE;
    }
    if headers.is_null() && headers_len > 0 {
        return Status::INVALID;
    }
    let headers: &[Pair] = if headers_len == 0 {
        &[]
    } else {
        // SAFETY: the app passes `headers_len` valid pairs for the duration of this call.
        unsafe { std::slice::from_raw_parts(headers, headers_len) }
    };
    guard(Status::ERROR, || {
        let Some(status) = u16::try_from(status).ok().and_then(|s| StatusCode::from_u16(s).ok())
        else {
            return Status::INVALID;
        };
        let mut out = Vec::with_capacity(headers.len());
        for h in headers {
            // SAFETY: the pairs' strings are valid for this call.
            let (name, value) = unsafe { (bytes(&h.name), bytes(&h.value)) };
            let (Ok(name), Ok(value)) =
                (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
            else {
                return Status::INVALID;
            };
            out.push((name, value));
        }
        st.head = Some((status, out));
        Status::OK
    })
}

unsafe extern "C" fn write(request: *mut c_void, data: Str) -> Status {
    // SAFETY: the app passes back the handle it was given, during the call.
    let Some(st) = (unsafe { state(request) }) else { return Status::INVALID };
    if st.head.is_none() {
        return Status::BAD_STATE;
    }
    // SAFETY: the app passes a valid byte range for the duration of this call.
    let data = unsafe { bytes(&data) };
    guard(Status::ERROR, || {
        st.body.extend_from_slice(data);
        Status::OK
    })
}

/// The callbacks every request gets.
static HOST_API: HostApi = HostApi {
    struct_size: std::mem::size_of::<HostApi>() as u32,
    read_body: Some(read_body),
    debug_log: Some(debug_log),
    log_error: Some(log_error),
    start_response: Some(start_response),
    write: Some(write),
};

/// Calls the app once and collects its reply.
pub fn invoke(plugin: &Plugin, call: &Call<'_>) -> Result<Reply, CallError> {
    let vars = call.vars.to_abi();
    let params = call.input.params.to_abi();
    let uploads: Vec<Upload> = call
        .input
        .uploads
        .iter()
        .map(|u| Upload {
            field: Str::new(u.field.as_bytes()),
            filename: Str::new(u.filename.as_bytes()),
            content_type: Str::new(u.content_type.as_bytes()),
            path: Str::new(u.file.path().as_os_str().as_bytes()),
            size: u.size,
        })
        .collect();
    let mut state = RequestState { call, body_pos: 0, head: None, body: Vec::new() };
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
    if status != Status::OK {
        return Err(CallError::Failed(status.0));
    }
    let Some((status, headers)) = state.head else { return Err(CallError::NoResponse) };
    Ok(Reply { status, headers, body: state.body })
}
