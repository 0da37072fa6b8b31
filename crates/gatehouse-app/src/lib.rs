//! The Gatehouse SDK: write an app as one function and one macro.
//!
//! ```no_run
//! use gatehouse_app::{Request, Response};
//!
//! fn hello(_req: &Request) -> Response {
//!     Response::text("Hello World!")
//! }
//! gatehouse_app::export!(hello);
//! ```
//!
//! Build the crate as a `cdylib` and point an alias in `hosting.yaml` at the `.so`. An app that
//! needs state (a database opened once) implements [`App`] and exports it with
//! `gatehouse_app::export!(app: MyApp)`.
//!
//! This crate owns the safe view of the environ ABI ([`Request`], [`Response`], [`Init`]) and
//! the `extern "C"` glue ([`export!`]); every raw pointer is read in its `ffi` module. A panic
//! in app code is caught here and becomes a 500: it never unwinds into the host. (So do not
//! build apps with `panic = "abort"`: a panic would then end the whole daemon.)

mod ffi;
mod request;
mod response;
mod websocket;

pub use gatehouse_abi as abi;
pub use request::{BodyReader, Request, UploadedFile};
pub use response::{BodyWriter, Response, Text};
pub use websocket::{Closed, Message, Socket, Sockets};

use std::path::{Path, PathBuf};

/// An app with state: built once by [`App::init`], then shared by every request thread.
pub trait App: Send + Sync + Sized + 'static {
    /// Runs once after the plugin is loaded. An `Err` refuses the load; its text goes to the
    /// daemon's error log.
    fn init(init: &Init<'_>) -> Result<Self, String>;

    /// Whether [`App::handle`] never blocks: it does not wait on the network, on a lock
    /// another thread may hold for long, on a child process or a timer, takes microseconds
    /// (at most about a millisecond) of CPU, and answers with a whole body (not
    /// [`Response::stream`]). When true, the daemon's default `dispatch: auto` runs each call
    /// on the HTTP worker that read the request, without handing it to the alias's threads:
    /// the fastest way a plugin is served. A call that waits or computes for over 20 ms, or
    /// four over the daemon's inline budget (2 ms) within 1000 calls, send the app's calls
    /// back to its threads for a while (a warning says so), so a wrong promise costs a stall
    /// or a few, not a hang. Default: false.
    const NEVER_BLOCKS: bool = false;

    /// Answers one request. Called from several threads at once.
    fn handle(&self, req: &Request<'_>) -> Response;

    /// Runs once before the plugin is unloaded or the daemon stops.
    fn shutdown(&self) {}

    /// The access hook, for an alias whose `access_script` is this plugin (mod_wsgi's
    /// `WSGIAccessScript`): whether the client at `host` (its address) may reach the alias's
    /// app. `Some(true)` or `None` (no opinion) let the request on, `Some(false)` answers
    /// 403. `req` has the environ and the query's parameters; the body is not read yet.
    /// The default refuses (logging that it is not implemented): a plugin named as a hook
    /// must say what it allows.
    fn allow_access(&self, req: &Request<'_>, host: &str) -> Option<bool> {
        let _ = host;
        req.log_error("this plugin does not implement App::allow_access; refusing");
        Some(false)
    }

    /// The authentication hook, for an alias whose `auth_user_script` is this plugin
    /// (mod_wsgi's `WSGIAuthUserScript`): whether `password` is `user`'s. `Some(true)` lets
    /// the request on with `REMOTE_USER` set; `Some(false)` (wrong password) and `None` (no
    /// such user) answer 401. The default refuses (logging that it is not implemented).
    fn check_password(&self, req: &Request<'_>, user: &str, password: &str) -> Option<bool> {
        let _ = (user, password);
        req.log_error("this plugin does not implement App::check_password; refusing");
        Some(false)
    }

    /// A message on a WebSocket this app accepted ([`Request::accept_websocket`]), or its
    /// end ([`Message::Close`], the last call for that socket, exactly once). Called on the
    /// alias's app threads, one message of a socket at a time and in order (messages of
    /// different sockets may come at once), and only after the `handle` that accepted it
    /// returned. A panic closes the socket with 1011. By default, nothing.
    fn on_message(&self, socket: &Socket, message: Message<'_>) {
        let _ = (socket, message);
    }
}

/// What an app is told at [`App::init`]: the alias it serves and its `env` settings.
#[derive(Debug)]
pub struct Init<'a> {
    alias: &'a [u8],
    plugin_path: &'a [u8],
    config_dir: &'a [u8],
    env: ffi::Pairs<'a>,
    sockets: Option<ffi::SocketApi>,
}

impl<'a> Init<'a> {
    /// The alias URL this instance serves.
    pub fn alias(&self) -> &'a str {
        std::str::from_utf8(self.alias).unwrap_or_default()
    }

    /// The plugin file the daemon loaded.
    pub fn plugin_path(&self) -> &'a Path {
        bytes_path(self.plugin_path)
    }

    /// The folder holding `hosting.yaml`.
    pub fn config_dir(&self) -> &'a Path {
        bytes_path(self.config_dir)
    }

    /// A setting from the alias's `env`, if present and UTF-8.
    pub fn env(&self, name: &str) -> Option<&'a str> {
        self.env
            .iter()
            .find(|(n, _)| *n == name.as_bytes())
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// Every `env` setting, in the order written.
    pub fn envs(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        self.env.iter()
    }

    /// The handle to send on (and close) the WebSockets this instance accepts, from any
    /// thread: keep it in the app to reach a socket from outside its own calls. `None` on a
    /// daemon older than WebSockets.
    pub fn sockets(&self) -> Option<Sockets> {
        self.sockets.map(Sockets::new)
    }

    /// Resolves a path from `env` the way the daemon resolves paths in `hosting.yaml`:
    /// relative to the configuration file's folder.
    pub fn resolve(&self, path: &str) -> PathBuf {
        self.config_dir().join(path)
    }
}

fn bytes_path(b: &[u8]) -> &Path {
    use std::os::unix::ffi::OsStrExt;
    Path::new(std::ffi::OsStr::from_bytes(b))
}

/// Glue used by [`export!`]; not part of the API.
#[doc(hidden)]
pub mod __private {
    pub use crate::ffi::{allow_access, check_password, handle, init, shutdown, websocket_event};
}

/// Exports an app from a `cdylib` as the `gatehouse_app` symbol.
///
/// - `export!(handler)` for a plain `fn(&Request) -> Response`;
/// - `export!(handler, never_blocks)` for one that never blocks (see [`App::NEVER_BLOCKS`]);
/// - `export!(app: Type)` for a type implementing [`App`].
///
/// The descriptor carries the crate's package name and version.
#[macro_export]
macro_rules! export {
    (app: $ty:ty) => {
        /// The environ ABI version this plugin speaks, as data: `gatehouse check` reads it
        /// from the file without running any code.
        #[unsafe(no_mangle)]
        pub static gatehouse_abi_version: u32 = $crate::abi::ABI_VERSION;

        /// The Gatehouse plugin descriptor (environ ABI entry point).
        #[unsafe(no_mangle)]
        pub extern "C" fn gatehouse_app() -> *const $crate::abi::AppDescriptor {
            static DESCRIPTOR: $crate::abi::AppDescriptor = $crate::abi::AppDescriptor {
                abi_version: $crate::abi::ABI_VERSION,
                struct_size: ::core::mem::size_of::<$crate::abi::AppDescriptor>() as u32,
                name: $crate::abi::Str::new(env!("CARGO_PKG_NAME").as_bytes()),
                version: $crate::abi::Str::new(env!("CARGO_PKG_VERSION").as_bytes()),
                init: Some($crate::__private::init::<$ty>),
                handle: Some($crate::__private::handle::<$ty>),
                shutdown: Some($crate::__private::shutdown::<$ty>),
                allow_access: Some($crate::__private::allow_access::<$ty>),
                check_password: Some($crate::__private::check_password::<$ty>),
                websocket_event: Some($crate::__private::websocket_event::<$ty>),
                flags: if <$ty as $crate::App>::NEVER_BLOCKS {
                    $crate::abi::AppFlags::NEVER_BLOCKS
                } else {
                    $crate::abi::AppFlags::NONE
                },
                reserved: 0,
            };
            &DESCRIPTOR
        }
    };
    ($handler:path) => {
        $crate::export!(@fn $handler, false);
    };
    ($handler:path, never_blocks) => {
        $crate::export!(@fn $handler, true);
    };
    (@fn $handler:path, $never_blocks:literal) => {
        struct __GatehouseFnApp;
        impl $crate::App for __GatehouseFnApp {
            const NEVER_BLOCKS: bool = $never_blocks;
            fn init(_: &$crate::Init<'_>) -> ::core::result::Result<Self, String> {
                Ok(__GatehouseFnApp)
            }
            fn handle(&self, req: &$crate::Request<'_>) -> $crate::Response {
                $handler(req)
            }
        }
        $crate::export!(app: __GatehouseFnApp);
    };
}
