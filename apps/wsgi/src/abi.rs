//! The ABI boundary: the exported descriptor and entry points, the one request's host
//! callbacks behind a safe [`Call`], and the two places the bridge talks to the dynamic
//! loader and to CPython's C API directly (making libpython's symbols global, and starting
//! the interpreter with a `PyConfig`).
//!
//! This is the only module of the bridge with `unsafe`; every block says why it holds.
//! Nothing here knows WSGI: it hands the rest of the crate byte slices and statuses.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString, c_void};
use std::os::unix::ffi::OsStrExt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::ThreadId;

use gatehouse_abi::{
    ABI_VERSION, AppDescriptor, AppFlags, Environ, HostApi, InitContext, Pair, Status, Str,
    Verdict, WebSocketKind,
};

use crate::Instance;

static DESCRIPTOR: AppDescriptor = AppDescriptor {
    abi_version: ABI_VERSION,
    struct_size: std::mem::size_of::<AppDescriptor>() as u32,
    name: Str::new(b"wsgi"),
    version: Str::new(env!("CARGO_PKG_VERSION").as_bytes()),
    init: Some(init),
    handle: Some(handle),
    shutdown: Some(shutdown),
    allow_access: Some(allow_access),
    check_password: Some(check_password),
    websocket_event: Some(websocket_event),
    // A script may block, and every call takes the GIL: always on the alias's threads.
    flags: AppFlags::NONE,
    reserved: 0,
};

/// The one symbol the daemon looks up.
#[unsafe(no_mangle)]
pub extern "C" fn gatehouse_app() -> *const AppDescriptor {
    &DESCRIPTOR
}

/// The ABI version as data, for `gatehouse check` (which reads the file, running nothing).
#[unsafe(no_mangle)]
#[allow(unreachable_pub)]
pub static gatehouse_abi_version: u32 = ABI_VERSION;

/// What `init` was given, copied out of the host's buffers.
#[derive(Debug, Clone)]
pub(crate) struct InitArgs {
    /// The URL this instance serves.
    pub(crate) alias: String,
    /// The folder holding `hosting.yaml`.
    pub(crate) config_dir: String,
    /// The settings (handler `env`, alias `env`, what the daemon adds), in order.
    pub(crate) env: Vec<(String, String)>,
}

/// Reads a host string.
///
/// # Safety
/// `s` must describe a readable byte range (or be null/empty) for the returned lifetime.
unsafe fn bytes<'a>(s: &Str) -> &'a [u8] {
    if s.ptr.is_null() || s.len == 0 {
        return &[];
    }
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts(s.ptr, s.len) }
}

/// Reads a host array of pairs.
///
/// # Safety
/// `ptr` must point to `len` valid pairs (or be null with `len` 0) for the lifetime.
unsafe fn pairs<'a>(ptr: *const Pair, len: usize) -> &'a [Pair] {
    if ptr.is_null() || len == 0 {
        return &[];
    }
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts(ptr, len) }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

unsafe extern "C" fn init(ctx: *const InitContext, instance: *mut *mut c_void) -> Status {
    if ctx.is_null() || instance.is_null() {
        return Status::ERROR;
    }
    // SAFETY: the host passes a valid context for the duration of `init`.
    let ctx = unsafe { &*ctx };
    // (The WebSocket calls after `report_error` are read only when the host has them.)
    if (ctx.struct_size as usize) < std::mem::offset_of!(InitContext, sockets_ctx) {
        return Status::ERROR;
    }
    if (ctx.struct_size as usize) >= std::mem::size_of::<InitContext>()
        && let (Some(send), Some(close)) = (ctx.websocket_send, ctx.websocket_close)
    {
        let _ = SOCKETS.set(SocketApi { ctx: ctx.sockets_ctx.addr(), send, close });
    }
    // SAFETY: the strings and the env array are valid during `init` (ABI §3).
    let args = unsafe {
        InitArgs {
            alias: text(bytes(&ctx.alias)),
            config_dir: text(bytes(&ctx.config_dir)),
            env: pairs(ctx.env, ctx.env_len)
                .iter()
                .map(|p| (text(bytes(&p.name)), text(bytes(&p.value))))
                .collect(),
        }
    };
    let report = |message: &str| {
        if let Some(report_error) = ctx.report_error {
            // SAFETY: host_ctx is the host's, passed back during `init`; the message is
            // valid for the call and the host copies it.
            unsafe { report_error(ctx.host_ctx, Str::new(message.as_bytes())) }
        }
    };
    match catch_unwind(|| Instance::new(&args)) {
        Ok(Ok(made)) => {
            // SAFETY: `instance` is the host's valid out-slot.
            unsafe { *instance = Box::into_raw(Box::new(made)).cast() };
            Status::OK
        }
        Ok(Err(message)) => {
            report(&message);
            Status::ERROR
        }
        Err(_) => {
            report("the WSGI bridge panicked while starting (a bug in the bridge)");
            Status::ERROR
        }
    }
}

unsafe extern "C" fn handle(instance: *mut c_void, environ: *const Environ) -> Status {
    // SAFETY: as the host guarantees for `handle`.
    let Some((inst, call)) = (unsafe { enter(instance, environ) }) else { return Status::ERROR };
    let status = catch_unwind(AssertUnwindSafe(|| inst.handle(&call))).unwrap_or_else(|_| {
        call.log_error("the WSGI bridge panicked (a bug in the bridge); answered 500");
        Status::ERROR
    });
    // Python may keep objects that hold the call (an environ stored by the app): from now
    // on they find it expired and never touch the host's pointers.
    call.live.store(false, Ordering::Release);
    status
}

/// The instance and the call of an entry point's arguments; `None` when they are unusable
/// (null, or from a host older than the structs this bridge reads).
///
/// # Safety
/// `instance` must be what our `init` returned (or null) and `environ` valid (or null) for
/// the duration of the entry point's call.
unsafe fn enter<'a>(
    instance: *mut c_void,
    environ: *const Environ,
) -> Option<(&'a Instance, std::sync::Arc<Call>)> {
    if instance.is_null() || environ.is_null() {
        return None;
    }
    // SAFETY: `instance` is what our `init` returned; the host keeps it alive across calls.
    let inst = unsafe { &*instance.cast::<Instance>() };
    // SAFETY: the host passes a valid environ for the duration of the call.
    let env = unsafe { &*environ };
    if (env.struct_size as usize) < std::mem::size_of::<Environ>() || env.host.is_null() {
        return None;
    }
    // SAFETY: `host` is the host's static callback table, valid during the call.
    let host = unsafe { &*env.host };
    // (`websocket_accept`, after `log_info`, is read only when the host has it.)
    if (host.struct_size as usize) < std::mem::offset_of!(HostApi, websocket_accept) {
        return None;
    }
    let call = std::sync::Arc::new(Call {
        environ,
        request: env.request,
        host,
        owner: std::thread::current().id(),
        live: AtomicBool::new(true),
        answered: AtomicBool::new(false),
    });
    Some((inst, call))
}

/// Runs a hook of the instance's script, as `handle` runs the app.
///
/// # Safety
/// As [`enter`].
unsafe fn hook(
    instance: *mut c_void,
    environ: *const Environ,
    hook: &crate::hooks::Hook<'_>,
) -> Verdict {
    // SAFETY: as the caller guarantees.
    let Some((inst, call)) = (unsafe { enter(instance, environ) }) else { return Verdict::ERROR };
    let verdict = catch_unwind(AssertUnwindSafe(|| crate::hooks::run(inst, &call, hook)))
        .unwrap_or_else(|_| {
            call.log_error("the WSGI bridge panicked (a bug in the bridge) in a hook");
            Verdict::ERROR
        });
    call.live.store(false, Ordering::Release);
    verdict
}

unsafe extern "C" fn allow_access(
    instance: *mut c_void,
    environ: *const Environ,
    host: Str,
) -> Verdict {
    // SAFETY: the host's string is valid for this call.
    let host = unsafe { bytes(&host) };
    // SAFETY: the host calls with our instance and a valid environ.
    unsafe { hook(instance, environ, &crate::hooks::Hook::Access { host }) }
}

unsafe extern "C" fn check_password(
    instance: *mut c_void,
    environ: *const Environ,
    user: Str,
    password: Str,
) -> Verdict {
    // SAFETY: the host's strings are valid for this call.
    let (user, password) = unsafe { (bytes(&user), bytes(&password)) };
    // SAFETY: the host calls with our instance and a valid environ.
    unsafe { hook(instance, environ, &crate::hooks::Hook::Password { user, password }) }
}

unsafe extern "C" fn shutdown(instance: *mut c_void) {
    if instance.is_null() {
        return;
    }
    // SAFETY: `instance` came from `Box::into_raw` in our `init`; the host calls shutdown
    // once, after the last `handle` returned.
    let inst = unsafe { Box::from_raw(instance.cast::<Instance>()) };
    let _ = catch_unwind(AssertUnwindSafe(move || inst.shutdown()));
}

/// Why a host callback could not be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unusable {
    /// The request's `handle` has returned: the host's pointers are gone.
    Expired,
    /// Called from a thread other than the one running the request's `handle`.
    OtherThread,
}

/// One request's view of the host: the environ and the callbacks, usable only from the
/// thread running `handle` and only until it returns (the ABI's rule, §3), which every
/// method checks before touching a pointer.
#[derive(Debug)]
pub(crate) struct Call {
    environ: *const Environ,
    request: *mut c_void,
    host: *const HostApi,
    owner: ThreadId,
    live: AtomicBool,
    /// The host answered the request itself: a WebSocket accepted (101) or refused (503).
    answered: AtomicBool,
}

// SAFETY: the pointers are only dereferenced after `usable` checked that this is the
// owner thread during its `handle` call; other threads only read the atomic flag and the
// thread id.
unsafe impl Send for Call {}
// SAFETY: as above.
unsafe impl Sync for Call {}

impl Call {
    fn usable(&self) -> Result<&HostApi, Unusable> {
        if std::thread::current().id() != self.owner {
            return Err(Unusable::OtherThread);
        }
        if !self.live.load(Ordering::Acquire) {
            return Err(Unusable::Expired);
        }
        // SAFETY: owner thread, during `handle`: the host's table is valid.
        Ok(unsafe { &*self.host })
    }

    /// Whether the host may be called now (the owner thread, during `handle`).
    pub(crate) fn check(&self) -> Result<(), Unusable> {
        self.usable().map(|_| ())
    }

    /// Calls `f` with each environ variable (name, value), in the host's order.
    pub(crate) fn for_each_var<E>(
        &self,
        mut f: impl FnMut(&[u8], &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.usable().is_err() {
            return Ok(());
        }
        // SAFETY: owner thread, during `handle`: the environ and its arrays are valid.
        let env = unsafe { &*self.environ };
        // SAFETY: as above.
        for p in unsafe { pairs(env.vars, env.vars_len) } {
            // SAFETY: as above.
            let (name, value) = unsafe { (bytes(&p.name), bytes(&p.value)) };
            f(name, value)?;
        }
        Ok(())
    }

    /// The value of environ variable `name`.
    pub(crate) fn var(&self, name: &[u8]) -> Option<Vec<u8>> {
        let mut found = None;
        let _ = self.for_each_var(|n, v| {
            if n == name {
                found = Some(v.to_vec());
                return Err(());
            }
            Ok(())
        });
        found
    }

    /// Reads body bytes, waiting for at least one: `Ok(0)` at the end, or the host's
    /// failure status.
    pub(crate) fn read_body(&self, buf: &mut [u8]) -> Result<usize, Status> {
        let host = self.usable().map_err(|_| Status::BAD_STATE)?;
        let Some(read) = host.read_body else { return Ok(0) };
        // SAFETY: `buf` is writable for its length; the request handle is the host's.
        let n = unsafe { read(self.request, buf.as_mut_ptr(), buf.len()) };
        usize::try_from(n).map_err(|_| Status(u32::try_from(-n).unwrap_or(1)))
    }

    /// Starts the response (the host copies everything before returning).
    pub(crate) fn start_response(&self, status: u32, headers: &[(Vec<u8>, Vec<u8>)]) -> Status {
        let Ok(host) = self.usable() else { return Status::BAD_STATE };
        let Some(start) = host.start_response else { return Status::ERROR };
        let abi: Vec<Pair> =
            headers.iter().map(|(n, v)| Pair { name: Str::new(n), value: Str::new(v) }).collect();
        // SAFETY: `abi` and the bytes it points to live across the call; the host copies.
        unsafe { start(self.request, status, abi.as_ptr(), abi.len()) }
    }

    /// Appends body bytes.
    pub(crate) fn write(&self, data: &[u8]) -> Status {
        let Ok(host) = self.usable() else { return Status::BAD_STATE };
        let Some(write) = host.write else { return Status::ERROR };
        // SAFETY: `data` is valid for the call; the host copies it.
        unsafe { write(self.request, Str::new(data)) }
    }

    /// Sends what was written so far now.
    pub(crate) fn flush(&self) -> Status {
        let Ok(host) = self.usable() else { return Status::BAD_STATE };
        let Some(flush) = host.flush else { return Status::ERROR };
        // SAFETY: the request handle is the host's, during the call.
        unsafe { flush(self.request) }
    }

    /// Writes one line to the daemon's error log, tagged with the app and the request;
    /// when the call is over (or from another thread), to stderr, which is the same log
    /// without the tag.
    pub(crate) fn log_error(&self, message: &str) {
        match self.usable() {
            Ok(host) => {
                if let Some(log) = host.log_error {
                    // SAFETY: the message is valid for the call; the host copies it.
                    unsafe { log(self.request, Str::new(message.as_bytes())) }
                }
            }
            Err(_) => eprintln!("wsgi: {}", message.escape_debug()),
        }
    }

    /// Writes one informational line (level INFO) to the daemon's error log, tagged like
    /// [`Call::log_error`]; through `log_error` on a host without `log_info`.
    pub(crate) fn log_info(&self, message: &str) {
        let Ok(host) = self.usable() else { return self.log_error(message) };
        let end = std::mem::offset_of!(HostApi, log_info)
            + std::mem::size_of::<Option<unsafe extern "C" fn(*mut c_void, Str)>>();
        match host.log_info.filter(|_| host.struct_size as usize >= end) {
            // SAFETY: the message is valid for the call; the host copies it.
            Some(log) => unsafe { log(self.request, Str::new(message.as_bytes())) },
            None => self.log_error(message),
        }
    }

    /// `websocket_accept` with `protocol` (empty: none): the socket's id, or the host's
    /// status (`INVALID` too on a host without the callback).
    pub(crate) fn websocket_accept(&self, protocol: &[u8]) -> Result<u64, Status> {
        let host = self.usable().map_err(|_| Status::BAD_STATE)?;
        let end = std::mem::offset_of!(HostApi, websocket_accept)
            + std::mem::size_of::<Option<unsafe extern "C" fn()>>();
        let accept = host.websocket_accept.filter(|_| host.struct_size as usize >= end);
        let Some(accept) = accept else { return Err(Status::INVALID) };
        let mut socket = 0u64;
        // SAFETY: the protocol is valid for the call (the host copies it); `socket` is a
        // writable u64 that outlives it.
        let status = unsafe { accept(self.request, Str::new(protocol), &mut socket) };
        if status == Status::OK || status == Status::DISCONNECTED {
            self.answered.store(true, Ordering::Release);
        }
        if status == Status::OK { Ok(socket) } else { Err(status) }
    }

    /// Whether the host answered the request itself (see [`Call::websocket_accept`]).
    pub(crate) fn answered(&self) -> bool {
        self.answered.load(Ordering::Acquire)
    }

    /// Whether the call is over (its `handle` returned).
    pub(crate) fn expired(&self) -> bool {
        !self.live.load(Ordering::Acquire)
    }
}

/// Makes the symbols of the libpython this plugin is linked with global, so that the
/// interpreter's own extension modules (`_json`, `_socket`, ... which are not linked with
/// libpython and expect its symbols to be there) can be loaded: the daemon opens plugins
/// `RTLD_LOCAL`, which keeps a plugin's dependencies local too. Returns libpython's path.
pub(crate) fn make_libpython_global() -> Result<String, String> {
    let mut info = libc::Dl_info {
        dli_fname: std::ptr::null(),
        dli_fbase: std::ptr::null_mut(),
        dli_sname: std::ptr::null(),
        dli_saddr: std::ptr::null_mut(),
    };
    let symbol = pyo3::ffi::Py_IsInitialized as *const c_void;
    // SAFETY: `symbol` is an address inside libpython; `info` is a valid out-struct.
    let found = unsafe { libc::dladdr(symbol, &mut info) };
    if found == 0 || info.dli_fname.is_null() {
        return Err("cannot tell which libpython the bridge is linked with (dladdr)".to_owned());
    }
    // SAFETY: dladdr filled in a NUL-terminated path owned by the loader.
    let path = unsafe { CStr::from_ptr(info.dli_fname) }.to_owned();
    // RTLD_NOLOAD: only promote the already loaded library to global scope; the handle is
    // never closed (the library stays for the process's life anyway).
    // SAFETY: a valid path; the library is already loaded, nothing new runs.
    let handle = unsafe {
        libc::dlopen(path.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL | libc::RTLD_NOLOAD)
    };
    let shown = path.to_string_lossy().into_owned();
    if handle.is_null() {
        return Err(format!("cannot make {shown}'s symbols global (dlopen RTLD_GLOBAL failed)"));
    }
    Ok(shown)
}

/// How the interpreter is started.
#[derive(Debug, Clone)]
pub(crate) enum Start<'a> {
    /// As the Python at this path would start (`sys.executable`): for the Python the
    /// bridge was built against, or a virtualenv's `bin/python3` (whose `pyvenv.cfg` then
    /// makes it the prefix, as running that Python does).
    Program(&'a Path),
    /// With this `PYTHONHOME`-like prefix (a Python installation that is not a virtualenv).
    Home(&'a Path),
}

/// Starts the interpreter (without signal handlers: the daemon owns SIGINT/SIGTERM/SIGHUP)
/// unless it runs already, then releases the GIL for other threads. Returns whether this
/// call started it. Call with the process-wide start lock held.
pub(crate) fn start_python(how: Start<'_>) -> Result<bool, String> {
    // SAFETY: plain query, callable at any time.
    if unsafe { pyo3::ffi::Py_IsInitialized() } != 0 {
        return Ok(false);
    }
    let (field, path) = match how {
        Start::Program(p) => ("program_name", p),
        Start::Home(p) => ("home", p),
    };
    let value = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| format!("{} contains a NUL byte", path.display()))?;
    let mut config = std::mem::MaybeUninit::<pyo3::ffi::PyConfig>::uninit();
    // SAFETY: PyConfig_InitPythonConfig initialises the whole struct; every field set
    // below is then a valid `wchar_t *` slot of it, filled by PyConfig_SetBytesString; the
    // config is cleared after use whatever happens.
    unsafe {
        let config = config.as_mut_ptr();
        pyo3::ffi::PyConfig_InitPythonConfig(config);
        (*config).install_signal_handlers = 0;
        (*config).parse_argv = 0;
        // The daemon's stdio is its own: leave its buffering alone.
        (*config).configure_c_stdio = 0;
        let slot = match field {
            "home" => &raw mut (*config).home,
            _ => &raw mut (*config).program_name,
        };
        let status = pyo3::ffi::PyConfig_SetBytesString(config, slot, value.as_ptr());
        if pyo3::ffi::PyStatus_Exception(status) != 0 {
            pyo3::ffi::PyConfig_Clear(config);
            return Err(format!("cannot set the interpreter's {field} to {}", path.display()));
        }
        let status = pyo3::ffi::Py_InitializeFromConfig(config);
        pyo3::ffi::PyConfig_Clear(config);
        if pyo3::ffi::PyStatus_Exception(status) != 0 {
            let why = if status.err_msg.is_null() {
                "unknown error".to_owned()
            } else {
                CStr::from_ptr(status.err_msg).to_string_lossy().into_owned()
            };
            return Err(format!("the Python interpreter did not start: {why}"));
        }
        // The thread that started it holds the GIL: release it so that every thread
        // (this one included) attaches the same way.
        pyo3::ffi::PyEval_SaveThread();
    }
    Ok(true)
}

thread_local! {
    /// Whether this thread has its own lasting Python thread state (see
    /// [`keep_thread_state`]). No destructor: the bridge's mapping may be unloaded while the
    /// thread lives on.
    static KEPT: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Gives the calling thread a Python thread state that lasts as long as the thread, so that
/// each request's `Python::attach` only takes and releases the GIL.
///
/// Without it, attaching from a thread Python did not create makes a new thread state, and
/// detaching deletes it: every request paid for creating one (with its frame stack, an
/// `mmap`, page faults, and an `munmap` when it was deleted). `PyGILState_Ensure` here
/// creates the state and leaves its count at one, never released, so the later
/// `PyGILState_Ensure`/`Release` pairs of `Python::attach` find it and leave it alive. The
/// state is reclaimed when the interpreter finalizes (which the daemon never asks for).
/// Call only once the interpreter runs, without holding the GIL.
pub(crate) fn keep_thread_state() {
    if KEPT.get() {
        return;
    }
    // SAFETY: the interpreter is initialised (every instance's init ran `start_python`
    // before any request reaches it) and this thread does not hold the GIL (requests come
    // from the daemon's threads, outside any `Python::attach`). `PyGILState_Ensure`
    // creates this thread's state and takes the GIL; `PyEval_SaveThread` releases the GIL
    // and keeps the state, whose counter stays at one.
    unsafe {
        if pyo3::ffi::Py_IsInitialized() == 0 {
            return;
        }
        let _ = pyo3::ffi::PyGILState_Ensure();
        pyo3::ffi::PyEval_SaveThread();
    }
    KEPT.set(true);
}

/// `b` decoded as latin-1 (every byte one character, as PEP 3333's native strings are): one
/// call into Python's own decoder, which copies ASCII as it is.
pub(crate) fn latin1<'py>(
    py: pyo3::Python<'py>,
    b: &[u8],
) -> pyo3::PyResult<pyo3::Bound<'py, pyo3::types::PyString>> {
    let len = pyo3::ffi::Py_ssize_t::try_from(b.len())
        .map_err(|_| pyo3::exceptions::PyOverflowError::new_err("a value too long for Python"))?;
    // SAFETY: `b` is valid for `len` bytes during the call (Python copies them); the GIL is
    // held (`py`); the errors argument may be null (strict, and latin-1 cannot fail).
    // `from_owned_ptr_or_err` takes the new reference, or the exception on null.
    unsafe {
        let s = pyo3::ffi::PyUnicode_DecodeLatin1(b.as_ptr().cast(), len, std::ptr::null());
        pyo3::Bound::from_owned_ptr_or_err(py, s).map(|s| s.cast_into_unchecked())
    }
}

/// The host's WebSocket send and close, from `init` (one interpreter, one instance, per
/// process).
#[derive(Debug, Clone, Copy)]
struct SocketApi {
    /// The opaque `sockets_ctx`, a token kept as a number.
    ctx: usize,
    send: unsafe extern "C" fn(*mut c_void, u64, u32, Str) -> Status,
    close: unsafe extern "C" fn(*mut c_void, u64, u32, Str) -> Status,
}

static SOCKETS: std::sync::OnceLock<SocketApi> = std::sync::OnceLock::new();

/// Sends a message on a WebSocket this process's app accepted, from any thread.
pub(crate) fn websocket_send(socket: u64, kind: WebSocketKind, data: &[u8]) -> Status {
    let Some(api) = SOCKETS.get() else { return Status::DISCONNECTED };
    // SAFETY: the host's callback with its own context, callable from any thread until
    // `shutdown` returns; `data` is valid for the call and the host copies it.
    unsafe { (api.send)(std::ptr::without_provenance_mut(api.ctx), socket, kind.0, Str::new(data)) }
}

/// Closes a WebSocket this process's app accepted, from any thread.
pub(crate) fn websocket_close(socket: u64, code: u16, reason: &str) -> Status {
    let Some(api) = SOCKETS.get() else { return Status::DISCONNECTED };
    let reason = Str::new(reason.as_bytes());
    // SAFETY: as in `websocket_send`.
    unsafe {
        (api.close)(std::ptr::without_provenance_mut(api.ctx), socket, u32::from(code), reason)
    }
}

unsafe extern "C" fn websocket_event(
    instance: *mut c_void,
    socket: u64,
    kind: u32,
    data: Str,
    close_code: u32,
) -> Status {
    if instance.is_null() {
        return Status::ERROR;
    }
    // SAFETY: the host's data is valid for this call.
    let data = unsafe { bytes(&data) };
    let code = u16::try_from(close_code).unwrap_or(1006);
    catch_unwind(|| crate::websocket::event(socket, WebSocketKind(kind), data, code))
        .unwrap_or(Status::ERROR)
}
