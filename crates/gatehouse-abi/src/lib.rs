//! The Gatehouse environ ABI, version 1: the `#[repr(C)]` contract between the daemon and
//! every app plugin, in the spirit of PEP 3333.
//!
//! This crate owns the types and constants only; it has no code that runs. The C view of the
//! same types is `include/gatehouse.h`, generated from this file by cbindgen (a test fails when
//! the checked-in header is stale).
//!
//! # Shape
//!
//! A plugin is a shared library exporting one symbol, [`DESCRIPTOR_SYMBOL`] (`gatehouse_app`):
//! a function taking no arguments and returning a pointer to a static [`AppDescriptor`]. Its
//! first two fields are the ABI version and the descriptor's size, so later versions can append
//! fields and the host can tell what a plugin was built against.
//!
//! - `init` runs once after load with an [`InitContext`] (the alias's `env` settings) and
//!   returns an opaque instance pointer that every later call gets back.
//! - `handle` runs per request, possibly on several threads at once, with an [`Environ`]
//!   (CGI/WSGI variables, parsed parameters, uploads) and the [`HostApi`] callbacks: read the
//!   body, write the debug log, start the response, write body bytes.
//! - `shutdown` runs once, before unload or at daemon stop, after the last request.
//!
//! # Rules
//!
//! - Strings are [`Str`]: a (pointer, length) byte slice, not NUL-terminated, not necessarily
//!   UTF-8. A `Str` handed to the app is valid until the call it came with returns.
//! - No allocator crosses the boundary: whoever allocates frees. The host copies whatever the
//!   app passes to a callback before the callback returns.
//! - Status codes and flags are plain integers ([`Status`], `u32` flags), never Rust enums,
//!   so a C plugin cannot produce an invalid value.
//! - A panic or exception never crosses the boundary: `handle` returns [`Status::ERROR`] and
//!   the host answers 500 if no response was started.
#![no_std]
#![allow(non_camel_case_types)]

use core::ffi::c_void;

/// The ABI version this crate describes. The host refuses a plugin that reports another.
pub const ABI_VERSION: u32 = 1;

/// The name of the one symbol every plugin exports (without the trailing NUL).
pub const DESCRIPTOR_SYMBOL: &str = "gatehouse_app";

/// The name of a `uint32_t` data symbol holding [`ABI_VERSION`] that a plugin may export
/// beside [`DESCRIPTOR_SYMBOL`], so that the version can be read from the file without
/// running any of its code (`gatehouse check` does). The SDK's `export!` exports it; in C,
/// `GH_EXPORT_ABI_VERSION;` at file scope. A file that exports it with another value is
/// refused by `check`; loading still goes by the descriptor's `abi_version`.
pub const ABI_VERSION_SYMBOL: &str = "gatehouse_abi_version";

/// A borrowed byte string: `len` bytes at `ptr`. `ptr` may be null only when `len` is 0.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Str {
    /// First byte, or null for the empty string.
    pub ptr: *const u8,
    /// Number of bytes.
    pub len: usize,
}

impl Str {
    /// The empty string.
    pub const EMPTY: Str = Str { ptr: core::ptr::null(), len: 0 };

    /// Borrows a Rust byte slice; the result is valid as long as `bytes` is.
    pub const fn new(bytes: &[u8]) -> Str {
        Str { ptr: bytes.as_ptr(), len: bytes.len() }
    }
}

/// A name/value pair of byte strings: an environ variable, a header, a parameter.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Pair {
    /// The name.
    pub name: Str,
    /// The value.
    pub value: Str,
}

/// A result code returned by plugin entry points and host callbacks.
///
/// A `u32` with named constants rather than an enum: any value a C plugin returns is valid,
/// and every value other than [`Status::OK`] means failure.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status(pub u32);

impl Status {
    /// Success.
    pub const OK: Status = Status(0);
    /// The call failed (for `handle`: the host answers 500 if no response was started).
    pub const ERROR: Status = Status(1);
    /// A host callback was called out of order (for example `write` before `start_response`,
    /// or `start_response` twice).
    pub const BAD_STATE: Status = Status(2);
    /// A host callback was given an invalid argument (a status outside 100..=999, a header
    /// name or value with bytes HTTP forbids).
    pub const INVALID: Status = Status(3);
    /// The client went away or the response could not be delivered; stop producing it.
    pub const DISCONNECTED: Status = Status(4);
    /// The request body is larger than the alias's `max_body` (the client gets 413).
    pub const TOO_LARGE: Status = Status(5);
}

/// An uploaded file from a `multipart/form-data` body, spooled by the host to a temporary
/// file that is removed after the request.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct Upload {
    /// The form field name.
    pub field: Str,
    /// The file name the client sent (may be empty).
    pub filename: Str,
    /// The part's Content-Type (may be empty).
    pub content_type: Str,
    /// Path of the temporary file holding the content.
    pub path: Str,
    /// Size of the content in bytes.
    pub size: u64,
}

/// What `init` is given: the alias's settings.
#[repr(C)]
#[derive(Debug)]
pub struct InitContext {
    /// `size_of::<InitContext>()` as the host built it.
    pub struct_size: u32,
    /// The alias URL this instance serves (for a directory group, the group's URL plus
    /// `/NAME`).
    pub alias: Str,
    /// The plugin file the host loaded.
    pub plugin_path: Str,
    /// The folder holding the configuration file, for resolving relative paths in `env`.
    pub config_dir: Str,
    /// The alias's `env` settings, in the order written.
    pub env: *const Pair,
    /// Number of entries in `env`.
    pub env_len: usize,
    /// Opaque host context for the callbacks below.
    pub host_ctx: *mut c_void,
    /// Reports why `init` failed; the host logs the message with the plugin's name.
    pub report_error: Option<unsafe extern "C" fn(host_ctx: *mut c_void, message: Str)>,
    /// Opaque: this instance's WebSocket context, for [`InitContext::websocket_send`] and
    /// [`InitContext::websocket_close`]. Unlike `host_ctx` it may be kept after `init`
    /// returns, until `shutdown` returns. Appended after version 1.0 of this struct, like
    /// the two callbacks: present only when `struct_size` reaches past them.
    pub sockets_ctx: *mut c_void,
    /// Sends one message on a WebSocket this instance accepted: `kind` is
    /// [`WebSocketKind::TEXT`] (valid UTF-8) or [`WebSocketKind::BINARY`]. Callable from
    /// any thread, at any time until `shutdown` returns. The host copies `data` before it
    /// returns; while the socket's outbound queue is full it waits (at most the alias's
    /// `timeout`, after which the socket is closed with 1008). Returns [`Status::OK`]
    /// when queued, [`Status::DISCONNECTED`] once the socket is closed (or closing, or
    /// not this instance's), [`Status::INVALID`] for another kind or text that is not UTF-8.
    pub websocket_send: Option<
        unsafe extern "C" fn(sockets_ctx: *mut c_void, socket: u64, kind: u32, data: Str) -> Status,
    >,
    /// Closes a WebSocket this instance accepted with `code` (1000, or 3000..=4999) and
    /// `reason` (UTF-8, at most 123 bytes). Messages queued before it go out first; the app
    /// then gets the socket's `CLOSE` event. Same threading and statuses as `websocket_send`.
    pub websocket_close: Option<
        unsafe extern "C" fn(
            sockets_ctx: *mut c_void,
            socket: u64,
            code: u32,
            reason: Str,
        ) -> Status,
    >,
}

/// The kind of a WebSocket message or event ([`AppDescriptor::websocket_event`],
/// [`InitContext::websocket_send`]): a `u32` with named constants, the RFC 6455 opcodes.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebSocketKind(pub u32);

impl WebSocketKind {
    /// A text message (its data is valid UTF-8).
    pub const TEXT: WebSocketKind = WebSocketKind(1);
    /// A binary message.
    pub const BINARY: WebSocketKind = WebSocketKind(2);
    /// The socket is closed: the last event of every accepted socket, exactly once, with
    /// the close code (1006 when the connection ended without a close frame).
    pub const CLOSE: WebSocketKind = WebSocketKind(8);
}

/// The host's callbacks for one request. Every callback takes the [`Environ::request`]
/// handle of the request it belongs to, and may be called only during that request's
/// `handle` call, from the thread running it.
#[repr(C)]
#[derive(Debug)]
pub struct HostApi {
    /// `size_of::<HostApi>()` as the host built it; fields may be appended in later versions.
    pub struct_size: u32,
    /// Reads up to `cap` bytes of the request body into `buf`, waiting until at least one
    /// byte, the end of the body or an error arrives. Returns the number of bytes read, 0
    /// at the end of the body, or a failure [`Status`] negated: `-1` (ERROR: the body was
    /// malformed or cut short), `-4` (DISCONNECTED), `-5` (TOO_LARGE: past `max_body`).
    /// For form bodies the host has already parsed the body into parameters and this
    /// returns 0 at once.
    pub read_body:
        Option<unsafe extern "C" fn(request: *mut c_void, buf: *mut u8, cap: usize) -> isize>,
    /// Writes `message` to the app's debug log if develop mode is on for the alias, or
    /// always when `must` is nonzero (the seed's `debugLog(msg, must)`). Returns
    /// [`Status::OK`] when the line was written or skipped by rule, [`Status::ERROR`] when
    /// writing failed.
    pub debug_log:
        Option<unsafe extern "C" fn(request: *mut c_void, message: Str, must: u32) -> Status>,
    /// Reports an error to the daemon's error log (the app's `wsgi.errors`), tagged with the
    /// app name and request.
    pub log_error: Option<unsafe extern "C" fn(request: *mut c_void, message: Str)>,
    /// Starts the response: an HTTP status (100..=999) and headers. Call once, before
    /// `write`. The host copies everything before returning.
    pub start_response: Option<
        unsafe extern "C" fn(
            request: *mut c_void,
            status: u32,
            headers: *const Pair,
            headers_len: usize,
        ) -> Status,
    >,
    /// Appends bytes to the response body. May be called any number of times after
    /// `start_response`. The host copies the bytes before returning. The host holds back
    /// the head and the first write, so that a response written in one piece goes out with
    /// its exact length; from the second write on (or after `flush`) every write is sent as
    /// it comes, waiting while the client is slower than the app. Returns
    /// [`Status::DISCONNECTED`] once the client is gone.
    pub write: Option<unsafe extern "C" fn(request: *mut c_void, data: Str) -> Status>,
    /// Sends the head and everything written so far now, instead of holding it back
    /// (for a first chunk the client should see before the app writes more).
    pub flush: Option<unsafe extern "C" fn(request: *mut c_void) -> Status>,
    /// Writes an informational line to the daemon's error log (what the app prints, as
    /// opposed to an error), tagged like `log_error` and logged at level INFO. Appended
    /// after version 1.0 of this struct: present only when `struct_size` reaches past it
    /// (hosts built before it do not have it; use `log_error` then).
    pub log_info: Option<unsafe extern "C" fn(request: *mut c_void, message: Str)>,
    /// Accepts a WebSocket handshake (`Upgrade: websocket`, already checked by the host)
    /// with `protocol`, one of the client's `Sec-WebSocket-Protocol` values or empty for
    /// none. On [`Status::OK`] the socket's id is in `*socket`: the host answers 101 when
    /// `handle` returns (so register the socket before returning) and owns the connection,
    /// `start_response` and `write` return [`Status::DISCONNECTED`], and the socket's
    /// messages reach `websocket_event` from then on. Messages sent before `handle` returns
    /// wait in the socket's queue (16).
    /// [`Status::INVALID`]: not a WebSocket request, a protocol the client did not offer, or
    /// a descriptor without `websocket_event` (the app may answer as usual);
    /// [`Status::BAD_STATE`]: a response was started or a socket accepted already;
    /// [`Status::DISCONNECTED`]: the alias has `max_websockets` open (the host answered 503).
    /// Appended after `log_info`: present only when `struct_size` reaches past it.
    pub websocket_accept: Option<
        unsafe extern "C" fn(request: *mut c_void, protocol: Str, socket: *mut u64) -> Status,
    >,
}

/// One request, as the app sees it.
#[repr(C)]
#[derive(Debug)]
pub struct Environ {
    /// `size_of::<Environ>()` as the host built it; fields may be appended in later versions.
    pub struct_size: u32,
    /// CGI/WSGI variables (REQUEST_METHOD, SCRIPT_NAME, PATH_INFO, QUERY_STRING, HTTP_*, the
    /// alias's `env` settings, ...), one entry per name.
    pub vars: *const Pair,
    /// Number of entries in `vars`.
    pub vars_len: usize,
    /// Parameters: the query string's, then the form body's (urlencoded or multipart text
    /// fields), in order, repeated names kept. Values are valid UTF-8.
    pub params: *const Pair,
    /// Number of entries in `params`.
    pub params_len: usize,
    /// Uploaded files from a multipart body.
    pub uploads: *const Upload,
    /// Number of entries in `uploads`.
    pub uploads_len: usize,
    /// Opaque handle of this request, passed back to every [`HostApi`] callback.
    pub request: *mut c_void,
    /// The host's callbacks.
    pub host: *const HostApi,
}

/// The app's entry points and identity, returned by the exported `gatehouse_app` function.
/// It must live as long as the library is loaded (a `static`).
#[repr(C)]
#[derive(Debug)]
pub struct AppDescriptor {
    /// Must equal [`ABI_VERSION`].
    pub abi_version: u32,
    /// `size_of::<AppDescriptor>()` as the plugin was built; at least the size of version 1.
    pub struct_size: u32,
    /// The app's name (for logs and the route table).
    pub name: Str,
    /// The app's version string.
    pub version: Str,
    /// Called once after load. On success stores an opaque instance pointer in `*instance`
    /// (it may stay null) and returns [`Status::OK`]; on failure returns another status,
    /// having called `report_error` to say why.
    pub init:
        Option<unsafe extern "C" fn(ctx: *const InitContext, instance: *mut *mut c_void) -> Status>,
    /// Called per request, possibly from several threads at once.
    pub handle:
        Option<unsafe extern "C" fn(instance: *mut c_void, environ: *const Environ) -> Status>,
    /// Called once before unload or at daemon stop, after the last `handle` returned.
    pub shutdown: Option<unsafe extern "C" fn(instance: *mut c_void)>,
    /// Access hook (mod_wsgi's `WSGIAccessScript`): called before the app of an alias whose
    /// `access_script` is this plugin, with the request's environ (no body) and the client's
    /// address as `host`. [`Verdict::ALLOW`] or [`Verdict::UNKNOWN`] let the request on,
    /// [`Verdict::DENY`] makes the daemon answer 403. May be called from several threads at
    /// once. Appended after version 1.0 of this struct: read only when `struct_size` reaches
    /// past it, and it may be null.
    pub allow_access: Option<
        unsafe extern "C" fn(instance: *mut c_void, environ: *const Environ, host: Str) -> Verdict,
    >,
    /// Basic authentication hook (mod_wsgi's `WSGIAuthUserScript`): called for an alias whose
    /// `auth_user_script` is this plugin, with the environ (no body) and the credentials the
    /// client sent. [`Verdict::ALLOW`] lets the request on with `REMOTE_USER` set to `user`;
    /// [`Verdict::DENY`] (wrong password) and [`Verdict::UNKNOWN`] (no such user) make the
    /// daemon answer 401 with the alias's realm. Same rules as `allow_access`.
    pub check_password: Option<
        unsafe extern "C" fn(
            instance: *mut c_void,
            environ: *const Environ,
            user: Str,
            password: Str,
        ) -> Verdict,
    >,
    /// WebSocket events of the sockets this instance accepted (`websocket_accept`): a
    /// message (`kind` [`WebSocketKind::TEXT`] or [`WebSocketKind::BINARY`], `data` the whole
    /// reassembled message, valid for the call) or the end ([`WebSocketKind::CLOSE`], with
    /// `close_code`; the last event of the socket, exactly once). Called on the alias's app
    /// threads, one event of a socket at a time and in order; events of different sockets
    /// may run at once. Returning anything but [`Status::OK`] closes the socket with 1011.
    /// Appended after `check_password`: read only when `struct_size` reaches past it; may be
    /// null (the app accepts no WebSocket).
    pub websocket_event: Option<
        unsafe extern "C" fn(
            instance: *mut c_void,
            socket: u64,
            kind: u32,
            data: Str,
            close_code: u32,
        ) -> Status,
    >,
    /// What the app promises about its calls: [`AppFlags`] bits (0: nothing). Appended after
    /// `websocket_event`: read only when `struct_size` reaches past it.
    pub flags: AppFlags,
    /// Zero. Keeps the struct's size a multiple of 8 the same way in Rust and C.
    pub reserved: u32,
}

/// Promises an app makes in [`AppDescriptor::flags`]: a `u32` of bits with named constants.
/// The daemon ignores bits it does not know.
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppFlags(pub u32);

impl AppFlags {
    /// No promise: calls run on the alias's thread pool (under `dispatch: auto`).
    pub const NONE: AppFlags = AppFlags(0);
    /// `handle` never blocks (no waiting on the network, a lock another thread holds, a
    /// child process or a sleep; a few microseconds to a millisecond of CPU) and answers with
    /// one whole reply. Under `dispatch: auto` (the default) the daemon then runs it on the
    /// HTTP worker that read the request, without a hand-off to the alias's threads; calls
    /// that break the promise (wait, or compute, longer than the daemon's inline budget)
    /// send the app's calls back to its thread pool for a while, with a warning in the error
    /// log.
    pub const NEVER_BLOCKS: AppFlags = AppFlags(1);

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: AppFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

/// What an access or authentication hook decided. A `u32` with named constants: any other
/// value counts as a failure of the hook (the daemon answers 500 and logs it).
#[repr(transparent)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict(pub u32);

impl Verdict {
    /// Access granted, or the password is right (Python's `True`).
    pub const ALLOW: Verdict = Verdict(0);
    /// Access refused, or the password is wrong (Python's `False`).
    pub const DENY: Verdict = Verdict(1);
    /// No opinion (`allow_access`: the request goes on) or no such user (`check_password`:
    /// 401) (Python's `None`).
    pub const UNKNOWN: Verdict = Verdict(2);
    /// The hook failed (an exception, a panic); the daemon answers 500.
    pub const ERROR: Verdict = Verdict(3);
}

/// The type of the exported `gatehouse_app` symbol.
pub type DescriptorFn = unsafe extern "C" fn() -> *const AppDescriptor;

#[allow(unsafe_code)]
// SAFETY: AppDescriptor holds only pointers to immutable static data and function pointers.
unsafe impl Sync for AppDescriptor {}

// Layout guards: the C header and every plugin depend on these exact sizes (64-bit targets).
#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(core::mem::size_of::<Str>() == 16);
    assert!(core::mem::size_of::<Pair>() == 32);
    assert!(core::mem::size_of::<Upload>() == 72);
    // InitContext 1.0 was 88 bytes (up to `report_error`); the WebSocket calls follow.
    assert!(core::mem::size_of::<InitContext>() == 112);
    assert!(core::mem::offset_of!(InitContext, sockets_ctx) == 88);
    assert!(core::mem::offset_of!(InitContext, websocket_send) == 96);
    assert!(core::mem::offset_of!(InitContext, websocket_close) == 104);
    // HostApi 1.0 was 56 bytes (up to `flush`); `log_info`, then `websocket_accept` were
    // appended after it.
    assert!(core::mem::size_of::<HostApi>() == 72);
    assert!(core::mem::offset_of!(HostApi, log_info) == 56);
    assert!(core::mem::offset_of!(HostApi, websocket_accept) == 64);
    assert!(core::mem::size_of::<Environ>() == 72);
    // AppDescriptor 1.0 was 64 bytes (up to `shutdown`); the hooks, then `websocket_event`,
    // then `flags` were appended after it.
    assert!(core::mem::size_of::<AppDescriptor>() == 96);
    assert!(core::mem::offset_of!(AppDescriptor, allow_access) == 64);
    assert!(core::mem::offset_of!(AppDescriptor, check_password) == 72);
    assert!(core::mem::offset_of!(AppDescriptor, websocket_event) == 80);
    assert!(core::mem::offset_of!(AppDescriptor, flags) == 88);
};
