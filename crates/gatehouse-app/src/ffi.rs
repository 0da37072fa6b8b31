//! The ABI boundary of the SDK: every raw pointer the host hands an app is read here, and the
//! `extern "C"` entry points the [`export!`](crate::export) macro installs live here. Nothing
//! outside this module touches `unsafe`.
#![allow(unsafe_code)]

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

use gatehouse_abi::{Environ, HostApi, InitContext, Pair, Status, Str, Upload, Verdict};

use crate::{App, Init, Request};

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
        }
    };
    let report = |msg: &str| {
        if let Some(f) = ctx.report_error {
            // SAFETY: host_ctx is the host's, msg outlives the call.
            unsafe { f(ctx.host_ctx, Str::new(msg.as_bytes())) }
        }
    };
    match catch_unwind(AssertUnwindSafe(|| A::init(&init))) {
        Ok(Ok(app)) => {
            let boxed = Box::into_raw(Box::new(app)).cast::<c_void>();
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
    // SAFETY: `instance` is the `Box<A>` made by `init`, alive until `shutdown`; `A: Sync`
    // makes shared access from several threads sound.
    let app = unsafe { &*instance.cast::<A>() };
    // SAFETY: the environ is valid for this call.
    let Some(raw) = (unsafe { RawRequest::new(&*environ) }) else { return Status::INVALID };
    let req = Request::from_raw(raw);
    // The whole of the app's work, the response's sending included (a streamed body runs
    // app code while it is sent), is inside catch_unwind.
    match catch_unwind(AssertUnwindSafe(|| app.handle(&req).send(&req.raw))) {
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
    // SAFETY: `instance` is the `Box<A>` made by `init`; the host calls shutdown once.
    let app = unsafe { Box::from_raw(instance.cast::<A>()) };
    // A panic in shutdown must not cross the boundary; there is nobody left to tell.
    let _ = catch_unwind(AssertUnwindSafe(move || {
        app.shutdown();
        drop(app);
    }));
}
