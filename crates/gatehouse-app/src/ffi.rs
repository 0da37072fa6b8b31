//! The ABI boundary of the SDK: every raw pointer the host hands an app is read here, and the
//! `extern "C"` entry points the [`export!`](crate::export) macro installs live here. Nothing
//! outside this module touches `unsafe`.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

use gatehouse_abi::{
    Environ, HostApi, InitContext, Pair, Status, Str, Upload, Verdict, WebSocketKind,
};

use crate::websocket::{Message, Socket};
use crate::{App, Init, Request};

/// The host's WebSocket send and close, from `init`: callable from any thread until
/// `shutdown` returns.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SocketApi {
    /// The opaque `sockets_ctx`, kept as a number (it is a token, not a pointer).
    ctx: usize,
    send: unsafe extern "C" fn(*mut c_void, u64, u32, Str) -> Status,
    close: unsafe extern "C" fn(*mut c_void, u64, u32, Str) -> Status,
}

impl SocketApi {
    /// The callbacks of `ctx`, when its host has them (its `struct_size` reaches past them).
    fn of(ctx: &InitContext) -> Option<SocketApi> {
        let end = std::mem::offset_of!(InitContext, websocket_close)
            + std::mem::size_of::<Option<unsafe extern "C" fn()>>();
        if (ctx.struct_size as usize) < end {
            return None;
        }
        Some(SocketApi {
            ctx: ctx.sockets_ctx.addr(),
            send: ctx.websocket_send?,
            close: ctx.websocket_close?,
        })
    }

    pub(crate) fn send(&self, socket: u64, kind: WebSocketKind, data: &[u8]) -> Status {
        // SAFETY: the host's callback, with its own context, callable from any thread while
        // the instance lives; `data` outlives the call and the host copies it.
        unsafe {
            (self.send)(std::ptr::without_provenance_mut(self.ctx), socket, kind.0, Str::new(data))
        }
    }

    pub(crate) fn close(&self, socket: u64, code: u16, reason: &str) -> Status {
        // SAFETY: as for `send`.
        unsafe {
            (self.close)(
                std::ptr::without_provenance_mut(self.ctx),
                socket,
                u32::from(code),
                Str::new(reason.as_bytes()),
            )
        }
    }
}

/// What the SDK makes of an app's instance: the app and its host's socket calls.
struct Instance<A> {
    app: A,
    sockets: Option<SocketApi>,
}

/// Views a host-provided [`Str`] as bytes.
///
/// # Safety
/// `s` must come from the host during the current call: `ptr` points at `len` readable bytes
/// (or is null with `len == 0`) that stay valid for `'a`.
unsafe fn bytes<'a>(s: &Str) -> &'a [u8] {
    if s.ptr.is_null() || s.len == 0 {
        return &[];
    }
    // SAFETY: the caller guarantees ptr/len describe a live byte range for 'a.
    unsafe { std::slice::from_raw_parts(s.ptr, s.len) }
}

/// Views a host-provided (pointer, length) array as a slice.
///
/// # Safety
/// `ptr` must point at `len` initialised `T`s valid for `'a`, or be null with `len == 0`.
unsafe fn slice<'a, T>(ptr: *const T, len: usize) -> &'a [T] {
    if ptr.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: the caller guarantees ptr/len describe a live array for 'a.
    unsafe { std::slice::from_raw_parts(ptr, len) }
}

/// A host-provided array of name/value pairs, valid for `'a`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pairs<'a>(&'a [Pair]);

impl<'a> Pairs<'a> {
    pub(crate) fn iter(self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        // SAFETY: a `Pairs` is only built from host-provided arrays (see `RawRequest::new`
        // and `InitContext` handling below), whose strings live as long as the array.
        self.0.iter().map(|p| unsafe { (bytes(&p.name), bytes(&p.value)) })
    }

    pub(crate) fn len(self) -> usize {
        self.0.len()
    }
}

/// A host-provided upload record, valid for `'a`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RawUpload<'a>(&'a Upload);

impl<'a> RawUpload<'a> {
    pub(crate) fn field(self) -> &'a [u8] {
        // SAFETY: built only from the host's upload array, valid for 'a.
        unsafe { bytes(&self.0.field) }
    }
    pub(crate) fn filename(self) -> &'a [u8] {
        // SAFETY: as above.
        unsafe { bytes(&self.0.filename) }
    }
    pub(crate) fn content_type(self) -> &'a [u8] {
        // SAFETY: as above.
        unsafe { bytes(&self.0.content_type) }
    }
    pub(crate) fn path(self) -> &'a [u8] {
        // SAFETY: as above.
        unsafe { bytes(&self.0.path) }
    }
    pub(crate) fn size(self) -> u64 {
        self.0.size
    }
}

/// The request as the host passed it, with the callbacks checked for presence.
#[derive(Debug)]
pub(crate) struct RawRequest<'a> {
    pub(crate) vars: Pairs<'a>,
    pub(crate) params: Pairs<'a>,
    uploads: &'a [Upload],
    request: *mut c_void,
    host: &'a HostApi,
    /// The instance's socket calls, for an accepted WebSocket.
    pub(crate) sockets: Option<SocketApi>,
}

impl<'a> RawRequest<'a> {
    /// # Safety
    /// `env` must be the environ the host passed to `handle`, valid for `'a`.
    unsafe fn new(env: &'a Environ) -> Option<Self> {
        if env.host.is_null() {
            return None;
        }
        // SAFETY: the host guarantees every array and the HostApi live for the call.
        unsafe {
            Some(RawRequest {
                vars: Pairs(slice(env.vars, env.vars_len)),
                params: Pairs(slice(env.params, env.params_len)),
                uploads: slice(env.uploads, env.uploads_len),
                request: env.request,
                host: &*env.host,
                sockets: None,
            })
        }
    }

    pub(crate) fn uploads(&self) -> impl Iterator<Item = RawUpload<'a>> + 'a {
        self.uploads.iter().map(RawUpload)
    }

    pub(crate) fn read_body(&self, buf: &mut [u8]) -> isize {
        match self.host.read_body {
            // SAFETY: `request` is this call's handle; buf is a valid writable range.
            Some(f) => unsafe { f(self.request, buf.as_mut_ptr(), buf.len()) },
            None => 0,
        }
    }

    pub(crate) fn debug_log(&self, message: &str, must: bool) -> bool {
        match self.host.debug_log {
            // SAFETY: `request` is this call's handle; the host copies the message.
            Some(f) => unsafe {
                f(self.request, Str::new(message.as_bytes()), u32::from(must)) == Status::OK
            },
            None => false,
        }
    }

    pub(crate) fn log_error(&self, message: &str) {
        if let Some(f) = self.host.log_error {
            // SAFETY: `request` is this call's handle; the host copies the message.
            unsafe { f(self.request, Str::new(message.as_bytes())) }
        }
    }

    /// An informational line; through `log_error` on a host whose `HostApi` predates
    /// `log_info` (its `struct_size` ends before the field).
    pub(crate) fn log_info(&self, message: &str) {
        let end = std::mem::offset_of!(HostApi, log_info)
            + std::mem::size_of::<Option<unsafe extern "C" fn(*mut c_void, Str)>>();
        let f = if self.host.struct_size as usize >= end { self.host.log_info } else { None };
        match f {
            // SAFETY: `request` is this call's handle; the host copies the message.
            Some(f) => unsafe { f(self.request, Str::new(message.as_bytes())) },
            None => self.log_error(message),
        }
    }

    /// Starts the response with `headers` and then `extra` (a header the SDK adds, such as
    /// Content-Length), without allocating for the common handful of headers.
    pub(crate) fn start_response(
        &self,
        status: u32,
        headers: &[(crate::response::Text, crate::response::Text)],
        extra: Option<(&str, &str)>,
    ) -> Status {
        const ON_STACK: usize = 16;
        let Some(f) = self.host.start_response else { return Status::ERROR };
        let pair =
            |n: &str, v: &str| Pair { name: Str::new(n.as_bytes()), value: Str::new(v.as_bytes()) };
        let all = headers.iter().map(|(n, v)| pair(n, v)).chain(extra.map(|(n, v)| pair(n, v)));
        let mut stack = [Pair { name: Str::EMPTY, value: Str::EMPTY }; ON_STACK];
        let heap: Vec<Pair>;
        let pairs: &[Pair] = if headers.len() < ON_STACK {
            let mut n = 0;
            for (slot, p) in stack.iter_mut().zip(all) {
                *slot = p;
                n += 1;
            }
            &stack[..n]
        } else {
            heap = all.collect();
            &heap
        };
        // SAFETY: `pairs` and the strings it borrows outlive the call; the host copies them.
        unsafe { f(self.request, status, pairs.as_ptr(), pairs.len()) }
    }

    pub(crate) fn write(&self, data: &[u8]) -> Status {
        let Some(f) = self.host.write else { return Status::ERROR };
        // SAFETY: `data` outlives the call; the host copies it.
        unsafe { f(self.request, Str::new(data)) }
    }

    /// `websocket_accept` with `protocol` (empty: none): the socket's id; `None` when the
    /// host refused it or has no such callback.
    pub(crate) fn websocket_accept(&self, protocol: &str) -> Result<u64, Status> {
        let end = std::mem::offset_of!(HostApi, websocket_accept)
            + std::mem::size_of::<Option<unsafe extern "C" fn()>>();
        let f =
            if self.host.struct_size as usize >= end { self.host.websocket_accept } else { None };
        let Some(f) = f else { return Err(Status::INVALID) };
        let mut socket = 0u64;
        // SAFETY: `request` is this call's handle; the host copies the protocol and writes
        // the id into `socket`, which outlives the call.
        match unsafe { f(self.request, Str::new(protocol.as_bytes()), &mut socket) } {
            Status::OK => Ok(socket),
            status => Err(status),
        }
    }

    pub(crate) fn flush(&self) -> Status {
        // A host without `flush` (none yet) sends as it sees fit: nothing to do.
        let Some(f) = self.host.flush else { return Status::OK };
        // SAFETY: `request` is this call's handle.
        unsafe { f(self.request) }
    }
}

/// Turns a panic payload into text for the error log.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

/// The `init` entry point for app type `A`.
///
/// # Safety
/// Called by the host with a valid `InitContext` and a writable `instance` slot.
pub unsafe extern "C" fn init<A: App>(
    ctx: *const InitContext,
    instance: *mut *mut c_void,
) -> Status {
    if ctx.is_null() || instance.is_null() {
        return Status::INVALID;
    }
    // SAFETY: the host passes a valid context for the duration of this call.
    let ctx = unsafe { &*ctx };
    // SAFETY: the context's strings and env array are valid for this call.
    let init = unsafe {
        Init {
            alias: bytes(&ctx.alias),
            plugin_path: bytes(&ctx.plugin_path),
            config_dir: bytes(&ctx.config_dir),
            env: Pairs(slice(ctx.env, ctx.env_len)),
            sockets: None,
        }
    };
    let report = |msg: &str| {
        if let Some(f) = ctx.report_error {
            // SAFETY: host_ctx is the host's, msg outlives the call.
            unsafe { f(ctx.host_ctx, Str::new(msg.as_bytes())) }
        }
    };
    let sockets = SocketApi::of(ctx);
    let init = Init { sockets, ..init };
    match catch_unwind(AssertUnwindSafe(|| A::init(&init))) {
        Ok(Ok(app)) => {
            let boxed = Box::into_raw(Box::new(Instance { app, sockets })).cast::<c_void>();
            // SAFETY: `instance` is a valid slot (checked non-null above).
            unsafe { *instance = boxed };
            Status::OK
        }
        Ok(Err(message)) => {
            report(&message);
            Status::ERROR
        }
        Err(payload) => {
            report(&format!("init panicked: {}", panic_message(payload.as_ref())));
            Status::ERROR
        }
    }
}

/// The `handle` entry point for app type `A`.
///
/// # Safety
/// Called by the host with the instance `init` returned and a valid environ.
pub unsafe extern "C" fn handle<A: App>(instance: *mut c_void, environ: *const Environ) -> Status {
    if instance.is_null() || environ.is_null() {
        return Status::INVALID;
    }
    // SAFETY: `instance` is the `Box<Instance<A>>` made by `init`, alive until `shutdown`;
    // `A: Sync` makes shared access from several threads sound.
    let instance = unsafe { &*instance.cast::<Instance<A>>() };
    // SAFETY: the environ is valid for this call.
    let Some(mut raw) = (unsafe { RawRequest::new(&*environ) }) else { return Status::INVALID };
    raw.sockets = instance.sockets;
    let req = Request::from_raw(raw);
    // The whole of the app's work, the response's sending included (a streamed body runs
    // app code while it is sent), is inside catch_unwind. After an accepted WebSocket the
    // host answers 101 itself: the response is not sent.
    let run = || {
        let resp = instance.app.handle(&req);
        if req.upgraded() { Status::OK } else { resp.send(&req.raw) }
    };
    match catch_unwind(AssertUnwindSafe(run)) {
        Ok(status) => status,
        Err(payload) => {
            req.raw.log_error(&format!("app panicked: {}", panic_message(payload.as_ref())));
            Status::ERROR
        }
    }
}

/// Runs one of `A`'s hooks for the request in `environ`, turning a panic into
/// [`Verdict::ERROR`] (logged).
///
/// # Safety
/// As [`handle`].
unsafe fn hook<A: App>(
    instance: *mut c_void,
    environ: *const Environ,
    f: impl FnOnce(&A, &Request<'_>) -> Option<bool>,
) -> Verdict {
    if instance.is_null() || environ.is_null() {
        return Verdict::ERROR;
    }
    // SAFETY: as in `handle`.
    let app = unsafe { &*instance.cast::<A>() };
    // SAFETY: the environ is valid for this call.
    let Some(raw) = (unsafe { RawRequest::new(&*environ) }) else { return Verdict::ERROR };
    let req = Request::from_raw(raw);
    match catch_unwind(AssertUnwindSafe(|| f(app, &req))) {
        Ok(Some(true)) => Verdict::ALLOW,
        Ok(Some(false)) => Verdict::DENY,
        Ok(None) => Verdict::UNKNOWN,
        Err(payload) => {
            req.raw.log_error(&format!("hook panicked: {}", panic_message(payload.as_ref())));
            Verdict::ERROR
        }
    }
}

/// The `allow_access` entry point for app type `A` ([`App::allow_access`]).
///
/// # Safety
/// Called by the host with the instance `init` returned, a valid environ and `host`.
pub unsafe extern "C" fn allow_access<A: App>(
    instance: *mut c_void,
    environ: *const Environ,
    host: Str,
) -> Verdict {
    // SAFETY: the host's string is valid for this call.
    let host = String::from_utf8_lossy(unsafe { bytes(&host) });
    // SAFETY: as the caller guarantees.
    unsafe { hook::<A>(instance, environ, |app, req| app.allow_access(req, &host)) }
}

/// The `check_password` entry point for app type `A` ([`App::check_password`]): credentials
/// that are not UTF-8 name no user (`UNKNOWN`) without a call.
///
/// # Safety
/// Called by the host with the instance `init` returned, a valid environ and credentials.
pub unsafe extern "C" fn check_password<A: App>(
    instance: *mut c_void,
    environ: *const Environ,
    user: Str,
    password: Str,
) -> Verdict {
    // SAFETY: the host's strings are valid for this call.
    let (user, password) = unsafe { (bytes(&user), bytes(&password)) };
    let (Ok(user), Ok(password)) = (std::str::from_utf8(user), std::str::from_utf8(password))
    else {
        return Verdict::UNKNOWN;
    };
    // SAFETY: as the caller guarantees.
    unsafe { hook::<A>(instance, environ, |app, req| app.check_password(req, user, password)) }
}

/// The `shutdown` entry point for app type `A`.
///
/// # Safety
/// Called once by the host with the instance `init` returned, after the last `handle`.
pub unsafe extern "C" fn shutdown<A: App>(instance: *mut c_void) {
    if instance.is_null() {
        return;
    }
    // SAFETY: `instance` is the `Box<Instance<A>>` made by `init`; the host calls shutdown
    // once.
    let instance = unsafe { Box::from_raw(instance.cast::<Instance<A>>()) };
    // A panic in shutdown must not cross the boundary; there is nobody left to tell.
    let _ = catch_unwind(AssertUnwindSafe(move || {
        instance.app.shutdown();
        drop(instance);
    }));
}

/// The `websocket_event` entry point for app type `A`: [`App::on_message`].
///
/// # Safety
/// Called by the host with the instance `init` returned and `data` valid for the call.
pub unsafe extern "C" fn websocket_event<A: App>(
    instance: *mut c_void,
    socket: u64,
    kind: u32,
    data: Str,
    close_code: u32,
) -> Status {
    if instance.is_null() {
        return Status::INVALID;
    }
    // SAFETY: as in `handle`.
    let instance = unsafe { &*instance.cast::<Instance<A>>() };
    let Some(sockets) = instance.sockets else { return Status::ERROR };
    // SAFETY: the host's data is valid for this call.
    let data = unsafe { bytes(&data) };
    let message = match WebSocketKind(kind) {
        WebSocketKind::TEXT => Message::Text(std::str::from_utf8(data).unwrap_or_default()),
        WebSocketKind::BINARY => Message::Binary(data),
        WebSocketKind::CLOSE => Message::Close {
            code: u16::try_from(close_code).unwrap_or(1006),
            reason: std::str::from_utf8(data).unwrap_or_default(),
        },
        _ => return Status::OK,
    };
    let socket = Socket::new(socket, sockets);
    match catch_unwind(AssertUnwindSafe(|| instance.app.on_message(&socket, message))) {
        Ok(()) => Status::OK,
        Err(_) => Status::ERROR,
    }
}
