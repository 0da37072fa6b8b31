//! Plugins: load an app's shared library, check its descriptor against the environ ABI, run
//! its `init`, and hold the handle that later requests call through.
//!
//! This is one of the two ABI boundary modules (the other is `ffi`); `unsafe` is allowed here
//! and nowhere else but there.
//!
//! Architecture Invariant: a library is never `dlclose`d. Unloading Rust cdylibs is unsound on
//! Linux (thread-local destructors registered from the library), so a plugin's `shutdown` runs
//! and its mapping stays. Reloading loads a new private copy beside it (see `staging`).
//!
//! A plugin's `shutdown` runs when the last reference to it is dropped (its last in-flight
//! request finished after it was replaced or removed). That can happen on any thread, so the
//! call itself is handed to the reaper thread ([`start_reaper`]): a slow `shutdown` never
//! stalls an HTTP worker or an app thread.
#![allow(unsafe_code)]

use std::collections::HashMap;
use std::ffi::c_void;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::thread::JoinHandle;

use crate::plugin::staging::Digest256;
use gatehouse_abi::{
    ABI_VERSION, AppDescriptor, AppFlags, DESCRIPTOR_SYMBOL, DescriptorFn, Environ, InitContext,
    Pair, Status, Str, Verdict, WebSocketKind,
};

/// Why a plugin file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// dlopen failed: not a shared library, wrong architecture, or a missing dependency.
    #[error(
        "{path}: cannot load as a shared library: {reason} (hint: a plugin is a cdylib built \
         for this machine; check the file and its dependencies with `ldd`)"
    )]
    Open {
        /// The file.
        path: PathBuf,
        /// The loader's message.
        reason: String,
    },
    /// The library does not export `gatehouse_app`.
    #[error(
        "{path}: no `gatehouse_app` symbol: not a Gatehouse plugin (hint: export the app with \
         `gatehouse_app::export!` or, in C, define `gatehouse_app` from gatehouse.h)"
    )]
    MissingSymbol {
        /// The file.
        path: PathBuf,
    },
    /// The descriptor is unusable.
    #[error("{path}: bad descriptor: {reason}")]
    BadDescriptor {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The plugin was built for another ABI version.
    #[error(
        "{path}: built for environ ABI version {found}, this daemon speaks version {expected} \
         (hint: rebuild the plugin against this release's gatehouse-app or gatehouse.h)"
    )]
    AbiVersion {
        /// The file.
        path: PathBuf,
        /// The version the plugin reports.
        found: u32,
        /// The version the daemon speaks.
        expected: u32,
    },
    /// The file could not be staged (read, checked and copied) for loading.
    #[error("{path}: {error}")]
    Stage {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: crate::plugin::staging::StageError,
    },
    /// The app's `init` refused to start.
    #[error("{path}: init failed: {message}")]
    InitFailed {
        /// The file.
        path: PathBuf,
        /// What the app reported.
        message: String,
    },
}

/// What a plugin's `init` is given.
#[derive(Debug, Clone)]
pub struct InitArgs<'a> {
    /// The alias URL this instance serves.
    pub alias: &'a str,
    /// The folder holding the configuration file.
    pub config_dir: &'a Path,
    /// The alias's `env` settings.
    pub env: &'a [(String, String)],
}

/// A loaded, initialised plugin instance. Dropping it runs the app's `shutdown` (once).
#[derive(Debug)]
pub struct Plugin {
    path: PathBuf,
    name: String,
    version: String,
    instance: *mut c_void,
    handle: unsafe extern "C" fn(*mut c_void, *const Environ) -> Status,
    shutdown: Option<unsafe extern "C" fn(*mut c_void)>,
    allow_access: Option<AllowAccessFn>,
    check_password: Option<CheckPasswordFn>,
    websocket_event: Option<WebSocketEventFn>,
    /// What the app promises about its calls (its descriptor's `flags`).
    flags: AppFlags,
    /// This instance's number, unique for the process's life: the owner of the WebSockets
    /// it accepts, and (as a token) the `sockets_ctx` its `init` was given.
    id: usize,
    shut_down: AtomicBool,
    /// Calls inside `handle` (or `websocket_event`) now.
    calls: AtomicUsize,
    /// Set at daemon stop: no new call starts, so `shutdown` can wait for the last one.
    closing: AtomicBool,
}

// SAFETY: the ABI requires `handle` to be callable from several threads at once and the
// instance pointer to be shareable between them (the SDK requires `App: Send + Sync`).
unsafe impl Send for Plugin {}
// SAFETY: as above; the only mutable state is atomics.
unsafe impl Sync for Plugin {}

/// The `report_error` callback given to `init`: appends the message to a `Mutex<String>`.
unsafe extern "C" fn report_init_error(host_ctx: *mut c_void, message: Str) {
    if host_ctx.is_null() {
        return;
    }
    // SAFETY: host_ctx is the `&Mutex<String>` that `load` passed, alive during `init`.
    let sink = unsafe { &*host_ctx.cast::<Mutex<String>>() };
    // SAFETY: the plugin passes a valid byte range for the duration of this call.
    let text = unsafe { str_bytes(&message) };
    if let Ok(mut s) = sink.lock() {
        if !s.is_empty() {
            s.push_str("; ");
        }
        s.push_str(&String::from_utf8_lossy(text));
    }
}

/// Reads a plugin-provided string.
///
/// # Safety
/// `s` must describe a readable byte range (or be null/empty) for the returned lifetime.
unsafe fn str_bytes<'a>(s: &Str) -> &'a [u8] {
    if s.ptr.is_null() || s.len == 0 {
        return &[];
    }
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts(s.ptr, s.len) }
}

/// The numbers of plugin instances: never 0, never reused.
static NEXT_INSTANCE: AtomicUsize = AtomicUsize::new(1);

/// The `websocket_send` callback given to `init`: `sockets_ctx` is the instance's number.
unsafe extern "C" fn websocket_send(ctx: *mut c_void, socket: u64, kind: u32, data: Str) -> Status {
    // SAFETY: the app passes a valid byte range for the duration of this call.
    let data = unsafe { str_bytes(&data) };
    let msg = match WebSocketKind(kind) {
        WebSocketKind::TEXT if std::str::from_utf8(data).is_ok() => {
            crate::sockets::Out::Text(data.to_vec().into())
        }
        WebSocketKind::BINARY => crate::sockets::Out::Binary(data.to_vec().into()),
        _ => return Status::INVALID,
    };
    std::panic::catch_unwind(|| crate::sockets::send(ctx.addr(), socket, msg))
        .unwrap_or(Status::ERROR)
}

/// The `websocket_close` callback given to `init`.
unsafe extern "C" fn websocket_close(
    ctx: *mut c_void,
    socket: u64,
    code: u32,
    reason: Str,
) -> Status {
    // SAFETY: the app passes a valid byte range for the duration of this call.
    let reason = unsafe { str_bytes(&reason) };
    let (Some(code), Ok(reason)) =
        (crate::sockets::app_close_code(code), std::str::from_utf8(reason))
    else {
        return Status::INVALID;
    };
    if reason.len() > crate::sockets::MAX_REASON {
        return Status::INVALID;
    }
    std::panic::catch_unwind(|| crate::sockets::close(ctx.addr(), socket, code, reason))
        .unwrap_or(Status::ERROR)
}

/// Size of the version-1.0 descriptor (up to `shutdown`): a plugin's `struct_size` must be at
/// least this; fields appended later are read only when it reaches past them.
const DESCRIPTOR_V1_SIZE: usize = std::mem::offset_of!(AppDescriptor, allow_access);

impl Plugin {
    /// Loads the library at `open` (normally a private copy of `path`, see `staging`),
    /// checks its descriptor and runs `init`. `path` is the operator's file: messages name
    /// it and `init` is given it as the plugin's path. With the `digest` of the bytes at
    /// `open`, a build already mapped earlier (by an alias, a group, or before a swap) is not
    /// mapped again: a new instance of it is made (see [`images_mapped`]).
    pub fn load(
        open: &Path,
        path: &Path,
        args: &InitArgs<'_>,
        digest: Option<Digest256>,
    ) -> Result<Plugin, LoadError> {
        let known = digest.and_then(|d| {
            let images = IMAGES.lock().unwrap_or_else(PoisonError::into_inner);
            images.as_ref().and_then(|m| m.get(&d.0).copied())
        });
        let image = match known {
            Some(image) => image,
            None => {
                let image = Image::map(open, path)?;
                if let Some(d) = digest {
                    let mut images = IMAGES.lock().unwrap_or_else(PoisonError::into_inner);
                    images.get_or_insert_with(HashMap::new).insert(d.0, image);
                }
                image
            }
        };
        image.instantiate(path, args)
    }

    /// The app's name from its descriptor.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The app's version from its descriptor.
    pub(crate) fn version(&self) -> &str {
        &self.version
    }

    /// Calls the app's `handle` with a fully built environ; once the daemon is stopping
    /// (see [`Plugin::shutdown_when_idle`]), answers `Status::ERROR` without calling it.
    pub(crate) fn call(&self, environ: &Environ) -> Status {
        // Counted before `closing` is read, and `shutdown_when_idle` sets `closing` before
        // it reads the count (both SeqCst): either this call sees `closing`, or the shutdown
        // sees this call and waits for it.
        self.calls.fetch_add(1, Ordering::SeqCst);
        let _done = CallDone(&self.calls);
        if self.closing.load(Ordering::SeqCst) {
            return Status::ERROR;
        }
        // SAFETY: `instance` came from this plugin's `init` and its `shutdown` has not run
        // (it waits for this call, see above); `environ` and everything it points to are
        // valid for the call (built by `call::abi`); handle is thread-safe by ABI.
        unsafe { (self.handle)(self.instance, environ) }
    }

    /// Whether the plugin has the access hook, `allow_access`.
    pub(crate) fn has_allow_access(&self) -> bool {
        self.allow_access.is_some()
    }

    /// Whether the plugin has the authentication hook, `check_password`.
    pub(crate) fn has_check_password(&self) -> bool {
        self.check_password.is_some()
    }

    /// Calls the plugin's `allow_access` hook with the environ of a request and the client's
    /// address; `None` without the entry point. Counted like a `handle` call.
    pub(crate) fn allow_access(&self, environ: &Environ, host: &[u8]) -> Option<Verdict> {
        let f = self.allow_access?;
        self.calls.fetch_add(1, Ordering::SeqCst);
        let _done = CallDone(&self.calls);
        if self.closing.load(Ordering::SeqCst) {
            return Some(Verdict::ERROR);
        }
        // SAFETY: as in `call`: a live instance, an environ valid for the call, and the hook
        // thread-safe by the ABI; `host` outlives the call.
        Some(unsafe { f(self.instance, environ, Str::new(host)) })
    }

    /// Calls the plugin's `check_password` hook; `None` without the entry point.
    pub(crate) fn check_password(
        &self,
        environ: &Environ,
        user: &[u8],
        password: &[u8],
    ) -> Option<Verdict> {
        let f = self.check_password?;
        self.calls.fetch_add(1, Ordering::SeqCst);
        let _done = CallDone(&self.calls);
        if self.closing.load(Ordering::SeqCst) {
            return Some(Verdict::ERROR);
        }
        // SAFETY: as in `allow_access`.
        Some(unsafe { f(self.instance, environ, Str::new(user), Str::new(password)) })
    }

    /// At daemon stop: refuses new calls, waits until the calls inside `handle` have
    /// returned, at most until `deadline`, then runs the app's `shutdown` once. False, and
    /// `shutdown` not run, when a call is still inside `handle` then: running it beside that
    /// call would break the ABI's contract (the instance may be freed under it).
    pub(crate) fn shutdown_when_idle(&self, deadline: std::time::Instant) -> bool {
        self.closing.store(true, Ordering::SeqCst);
        while self.calls.load(Ordering::SeqCst) > 0 {
            if std::time::Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        if !self.shut_down.swap(true, Ordering::AcqRel)
            && let Some(shutdown) = self.shutdown
        {
            // SAFETY: called once, with the instance from `init`, after the last call into
            // it has returned and with no new one able to start.
            unsafe { shutdown(self.instance) }
        }
        true
    }

    /// This instance's number: the owner of the WebSockets it accepts.
    pub(crate) fn id(&self) -> usize {
        self.id
    }

    /// Whether the app promises its `handle` never blocks ([`AppFlags::NEVER_BLOCKS`]).
    pub(crate) fn never_blocks(&self) -> bool {
        self.flags.contains(AppFlags::NEVER_BLOCKS)
    }

    /// Whether the app takes WebSocket events (its descriptor has `websocket_event`).
    pub(crate) fn takes_websockets(&self) -> bool {
        self.websocket_event.is_some()
    }

    /// Gives the app one event of a WebSocket it accepted (see the ABI's `websocket_event`),
    /// counted as a call like `handle`; once the daemon is stopping, or without the entry
    /// point, answers `Status::ERROR` without calling it.
    pub(crate) fn websocket_event(
        &self,
        socket: u64,
        kind: WebSocketKind,
        data: &[u8],
        close_code: u16,
    ) -> Status {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let _done = CallDone(&self.calls);
        let Some(event) = self.websocket_event else { return Status::ERROR };
        if self.closing.load(Ordering::SeqCst) {
            return Status::ERROR;
        }
        // SAFETY: as for `call`: the instance is alive (its `shutdown` waits for this call),
        // `data` is valid for the call, and the entry point is thread-safe by the ABI.
        unsafe { event(self.instance, socket, kind.0, Str::new(data), u32::from(close_code)) }
    }

    /// Calls inside `handle` now.
    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

/// Counts a call out when it returns.
struct CallDone<'a>(&'a AtomicUsize);

impl Drop for CallDone<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A mapped plugin build: the entry points from its descriptor. Images are never unmapped
/// (see the module invariant), so these pointers stay valid for the process's life.
#[derive(Debug, Clone, Copy)]
struct Image {
    name: Str,
    version: Str,
    init: Option<unsafe extern "C" fn(*const InitContext, *mut *mut c_void) -> Status>,
    handle: unsafe extern "C" fn(*mut c_void, *const Environ) -> Status,
    shutdown: Option<unsafe extern "C" fn(*mut c_void)>,
    allow_access: Option<AllowAccessFn>,
    check_password: Option<CheckPasswordFn>,
    websocket_event: Option<WebSocketEventFn>,
    flags: AppFlags,
}

/// The type of a descriptor's `websocket_event` entry point.
pub(crate) type WebSocketEventFn = unsafe extern "C" fn(*mut c_void, u64, u32, Str, u32) -> Status;

/// The type of a descriptor's `allow_access` entry point.
pub(crate) type AllowAccessFn = unsafe extern "C" fn(*mut c_void, *const Environ, Str) -> Verdict;
/// The type of a descriptor's `check_password` entry point.
pub(crate) type CheckPasswordFn =
    unsafe extern "C" fn(*mut c_void, *const Environ, Str, Str) -> Verdict;

// SAFETY: the strings point into the mapped library's read-only data, which is never
// unmapped; the functions are thread-safe by the ABI.
unsafe impl Send for Image {}

/// Builds mapped so far, by the SHA-256 of their bytes.
static IMAGES: Mutex<Option<HashMap<[u8; 32], Image>>> = Mutex::new(None);

impl Image {
    /// Maps the library at `open` and reads its descriptor.
    fn map(open: &Path, path: &Path) -> Result<Image, LoadError> {
        let flags =
            libloading::os::unix::RTLD_NOW | libloading::os::unix::RTLD_LOCAL | libc::RTLD_NODELETE;
        // SAFETY: loading runs the library's initialisers: that is what a plugin host does.
        // The operator chose this file in hosting.yaml or the group's folder.
        let lib =
            unsafe { libloading::os::unix::Library::open(Some(open), flags) }.map_err(|e| {
                // libloading's Display is only "dlopen failed"; the loader's text is the source.
                let mut reason = std::error::Error::source(&e)
                    .map_or_else(|| e.to_string(), ToString::to_string);
                if reason.contains("failed to map segment") {
                    reason.push_str(
                        " (the copy is in `cache_dir`: it must not be on a noexec mount)",
                    );
                }
                LoadError::Open { path: path.to_owned(), reason }
            })?;
        // The library stays mapped for the life of the process (see the module invariant).
        let lib = std::mem::ManuallyDrop::new(lib);
        // SAFETY: the symbol's type is fixed by the ABI: `extern "C" fn() -> *const AppDescriptor`.
        let describe: libloading::os::unix::Symbol<DescriptorFn> =
            unsafe { lib.get(DESCRIPTOR_SYMBOL.as_bytes()) }
                .map_err(|_| LoadError::MissingSymbol { path: path.to_owned() })?;
        // SAFETY: calling the exported descriptor function, which takes no arguments.
        let desc_ptr = unsafe { describe() };
        let bad = |reason: &str| LoadError::BadDescriptor {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        if desc_ptr.is_null() {
            return Err(bad("gatehouse_app() returned null"));
        }
        // The first field is the ABI version: read it alone before trusting the layout.
        // SAFETY: every descriptor version starts with a u32 abi_version.
        let found = unsafe { desc_ptr.cast::<u32>().read() };
        if found != ABI_VERSION {
            return Err(LoadError::AbiVersion {
                path: path.to_owned(),
                found,
                expected: ABI_VERSION,
            });
        }
        // SAFETY: version 1 descriptors start with (u32 abi_version, u32 struct_size).
        let size = unsafe { desc_ptr.cast::<u32>().add(1).read() } as usize;
        if size < DESCRIPTOR_V1_SIZE {
            return Err(bad(&format!(
                "struct_size is {size}, smaller than the version-1 descriptor ({DESCRIPTOR_V1_SIZE} bytes)"
            )));
        }
        // Read field by field: a descriptor built before the hooks were appended is shorter
        // than this crate's struct, so no reference to the whole of it may be made.
        // SAFETY: version and size checked: the first DESCRIPTOR_V1_SIZE bytes are a v1
        // descriptor; each read below is of a field inside them.
        let (name, version, init, handle, shutdown) = unsafe {
            (
                std::ptr::addr_of!((*desc_ptr).name).read(),
                std::ptr::addr_of!((*desc_ptr).version).read(),
                std::ptr::addr_of!((*desc_ptr).init).read(),
                std::ptr::addr_of!((*desc_ptr).handle).read(),
                std::ptr::addr_of!((*desc_ptr).shutdown).read(),
            )
        };
        let Some(handle) = handle else { return Err(bad("the handle entry point is null")) };
        let has = |end: usize| size >= end;
        let allow_access = if has(std::mem::offset_of!(AppDescriptor, allow_access) + 8) {
            // SAFETY: read only when the plugin's struct_size says the field is there.
            unsafe { std::ptr::addr_of!((*desc_ptr).allow_access).read() }
        } else {
            None
        };
        let check_password = if has(std::mem::offset_of!(AppDescriptor, check_password) + 8) {
            // SAFETY: as above.
            unsafe { std::ptr::addr_of!((*desc_ptr).check_password).read() }
        } else {
            None
        };
        let websocket_event = if has(std::mem::offset_of!(AppDescriptor, websocket_event) + 8) {
            // SAFETY: read only when the plugin's struct_size says the field is there.
            unsafe { std::ptr::addr_of!((*desc_ptr).websocket_event).read() }
        } else {
            None
        };
        let flags = if has(std::mem::offset_of!(AppDescriptor, flags) + 4) {
            // SAFETY: read only when the plugin's struct_size says the field is there.
            unsafe { std::ptr::addr_of!((*desc_ptr).flags).read() }
        } else {
            AppFlags::NONE
        };
        Ok(Image {
            name,
            version,
            init,
            handle,
            shutdown,
            allow_access,
            check_password,
            websocket_event,
            flags,
        })
    }

    /// Makes an instance: runs `init` with the alias's arguments.
    fn instantiate(&self, path: &Path, args: &InitArgs<'_>) -> Result<Plugin, LoadError> {
        // SAFETY: the descriptor's strings are static in the plugin, which stays mapped.
        let name = String::from_utf8_lossy(unsafe { str_bytes(&self.name) }).into_owned();
        // SAFETY: as above.
        let version = String::from_utf8_lossy(unsafe { str_bytes(&self.version) }).into_owned();
        let mut instance: *mut c_void = std::ptr::null_mut();
        let id = NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed);
        if let Some(init) = self.init {
            let env: Vec<Pair> = args
                .env
                .iter()
                .map(|(k, v)| Pair { name: Str::new(k.as_bytes()), value: Str::new(v.as_bytes()) })
                .collect();
            let errors = Mutex::new(String::new());
            let plugin_path = path.as_os_str().as_bytes();
            let config_dir = args.config_dir.as_os_str().as_bytes();
            let ctx = InitContext {
                struct_size: std::mem::size_of::<InitContext>() as u32,
                alias: Str::new(args.alias.as_bytes()),
                plugin_path: Str::new(plugin_path),
                config_dir: Str::new(config_dir),
                env: env.as_ptr(),
                env_len: env.len(),
                host_ctx: std::ptr::from_ref(&errors).cast_mut().cast(),
                report_error: Some(report_init_error),
                // A token, not an address: a stale one reaches no socket.
                sockets_ctx: std::ptr::without_provenance_mut(id),
                websocket_send: Some(websocket_send),
                websocket_close: Some(websocket_close),
            };
            // SAFETY: ctx and everything it points to outlive the call; `instance` is a
            // valid slot.
            let status = unsafe { init(&ctx, &mut instance) };
            if status != Status::OK {
                let mut message = errors.into_inner().unwrap_or_else(|p| p.into_inner());
                if message.is_empty() {
                    message = format!("init returned status {} without saying why", status.0);
                }
                return Err(LoadError::InitFailed { path: path.to_owned(), message });
            }
        }
        Ok(Plugin {
            path: path.to_owned(),
            name,
            version,
            instance,
            handle: self.handle,
            shutdown: self.shutdown,
            allow_access: self.allow_access,
            check_password: self.check_password,
            websocket_event: self.websocket_event,
            flags: self.flags,
            id,
            shut_down: AtomicBool::new(false),
            calls: AtomicUsize::new(0),
            closing: AtomicBool::new(false),
        })
    }
}

impl Drop for Plugin {
    fn drop(&mut self) {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return;
        }
        let Some(shutdown) = self.shutdown else { return };
        let job = Shutdown { f: shutdown, instance: self.instance, what: self.describe() };
        let reaper = REAPER.lock().unwrap_or_else(PoisonError::into_inner);
        match reaper.as_ref() {
            Some(r) => {
                if let Err(e) = r.tx.send(job) {
                    drop(reaper);
                    e.into_inner().run();
                }
            }
            None => {
                drop(reaper);
                job.run();
            }
        }
    }
}

impl Plugin {
    fn describe(&self) -> String {
        format!("{} {} ({})", self.name, self.version, self.path.display())
    }
}

/// A retired plugin's `shutdown`, to run on the reaper thread.
struct Shutdown {
    f: unsafe extern "C" fn(*mut c_void),
    instance: *mut c_void,
    what: String,
}

// SAFETY: the instance may be used from any thread (the ABI requires the app to be Send +
// Sync), and nothing else uses it any more: its plugin has been dropped.
unsafe impl Send for Shutdown {}

impl Shutdown {
    fn run(self) {
        // SAFETY: called once (the plugin's `shut_down` flag was set by its drop), with the
        // instance from `init`, after the last call into it has returned.
        unsafe { (self.f)(self.instance) }
        log::info!("ran shutdown of retired {}", self.what);
    }
}

struct Reaper {
    tx: crossbeam_channel::Sender<Shutdown>,
    thread: JoinHandle<()>,
}

static REAPER: Mutex<Option<Reaper>> = Mutex::new(None);

/// Keeps large allocations (a plugin file read whole to be hashed and checked, several MB)
/// out of the heap: glibc's malloc serves them with their own mapping, returned to the
/// system when freed, but raises that threshold to the size of each such block freed, so
/// the next plugin's bytes land on the heap, which does not shrink. A fixed threshold of
/// glibc's own default (128 KiB) keeps the daemon's idle memory what it uses: with the
/// demo apps, 12 MiB resident instead of 17. Call once at start, before loading plugins.
pub fn fixed_mmap_threshold() {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: mallopt only sets an allocator parameter; M_MMAP_THRESHOLD takes a size.
        let _ = unsafe { libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024) };
    }
}

/// Starts the thread that runs retired plugins' `shutdown` (without it, `shutdown` runs
/// on whichever thread drops the last reference).
pub fn start_reaper() -> std::io::Result<()> {
    let mut reaper = REAPER.lock().unwrap_or_else(PoisonError::into_inner);
    if reaper.is_some() {
        return Ok(());
    }
    let (tx, rx) = crossbeam_channel::unbounded::<Shutdown>();
    let thread = std::thread::Builder::new().name("plugin reaper".into()).spawn(move || {
        for job in rx {
            job.run();
        }
    })?;
    *reaper = Some(Reaper { tx, thread });
    Ok(())
}

/// Stops the reaper after it has run every `shutdown` queued so far (at daemon stop).
pub fn stop_reaper() {
    let reaper = REAPER.lock().unwrap_or_else(PoisonError::into_inner).take();
    if let Some(Reaper { tx, thread }) = reaper {
        drop(tx);
        let _ = thread.join();
    }
}
