//! Gatehouse's configuration: turns `hosting.yaml` into a typed, validated [`Config`],
//! with the line and column of every error and warning.
//!
//! This module owns the public API: the [`Config`] and [`Alias`] types, and [`load`] /
//! [`parse`]. The work is split by what it owns: `node` (the YAML parser and the
//! positioned tree, the only place that knows serde-saphyr), `validate` (top-level keys,
//! `listen`, typed scalars), `logs` (the `logs` mapping), `alias` (the aliases, kind
//! detection on disk, shadowing), `isolation` (an alias's worker processes, `user` and
//! `group` resolved), `accounts` (the system's user and group database, the only place that
//! knows nix), `url` (url checks and [`url_covers`]), `size` ([`parse_size`]),
//! `worker_text` (the text a worker process reads: the globals and its one alias,
//! [`worker_text`]) and `diagnostic` ([`Diagnostic`], [`ConfigError`]).
//!
//! # The file
//!
//! ```yaml
//! listen:                      # socket addresses (IP:PORT; [::1]:8080; port 0 = any free port)
//!   - "127.0.0.1:8080"         # plain HTTP/1.1
//!   - address: "127.0.0.1:8443"    # HTTPS (TLS 1.2/1.3, ALPN h2 and http/1.1)
//!     tls: {cert: tls/fullchain.pem, key: tls/privkey.pem}   # PEM; re-read on every reload
//! keep_alive: 5s               # idle keep-alive connections are closed after this
//! max_connections: 10000       # open connections per HTTP worker thread and listener
//! trusted_proxies: ["127.0.0.1", "10.0.0.0/8"]  # their Forwarded / X-Forwarded-* set REMOTE_ADDR and the scheme
//! metrics: {listen: "127.0.0.1:9090"}  # /metrics (Prometheus), /status, /status.json; off when absent
//! develop_mode: false          # the seed's DEVELOP_MODE
//! max_body: 10MiB              # request body limit: bytes, or B, K/KB/KiB, M/MB/MiB, G/GB/GiB
//! max_upload: 10MiB            # largest uploaded file (default: max_body)
//! upload_dir: /var/tmp         # where uploads are spooled (default: the system temp folder)
//! upload_budget: 1GiB          # form bytes (spooled files and form text) held at once, daemon-wide; past it 503
//! pass_authorization: false    # pass Authorization to apps (mod_wsgi's WSGIPassAuthorization)
//! trace_enable: false          # let TRACE through to apps (Apache's TraceEnable); else 405 (global only)
//! dispatch: pool               # `pool` (app threads) or `inline` (on the HTTP worker, for apps that never block)
//! threads: 8                   # app threads per alias pool, 1..=1024
//! reloading: true              # swap replaced plugin files live (mod_wsgi's WSGIScriptReloading)
//! cache_dir: var/cache         # private copies of plugin files are loaded from here (not noexec)
//! pid_file: var/run/gatehouse.pid  # read by `gatehouse reload`
//! check_plugins: true          # refuse plugin files others could have written (suexec-style)
//! header_timeout: 10s          # to receive a request's head, else 408 (global only)
//! shutdown_timeout: 30s        # on SIGTERM, how long requests in flight may take to finish
//! drain_delay: 0s              # after SIGTERM, serve this long with /readyz failing first
//! max_headers: 96              # header fields per request, else 400 (at most 96)
//! max_header_size: 8190        # longest header line, else 400
//! timeout: 60s                 # for the app to start its reply, else 504; and the longest a
//!                              # streamed write waits on a client that reads nothing (then cut)
//! body_timeout: 20s            # the longest a request body may pause, else 408
//! body_min_rate: 500           # bytes/s the body must keep over every body_timeout window
//! body_timeout_max: 60s        # the longest a whole request body may take, else 408
//! queue: 1024                  # requests waiting for a busy pool, else 503 (default 128 per thread)
//! logs:
//!   dir: log                   # debug logs go to DIR/APP/debug.log; relative to this file's folder
//!   level: info                # the error log's level, RUST_LOG syntax (`warn,gatehouse::host=debug`); RUST_LOG wins
//!   error_log: stderr          # the daemon's own log: `stderr`, or a file (relative to `dir`)
//!   access_log: access.log     # Combined Log Format + app, request id, duration; a file (relative to `dir`), `stdout` or `off`
//!   rotate:                    # for every log file; `rotate: off` leaves it to logrotate
//!     size: 10MiB              # rotate when a file passes this size
//!     age: day                 # and/or when the local clock starts a new `day`, `hour` or `minute`
//!     keep: 7                  # rotated files kept per log (`all`: never delete)
//!     compress: false          # gzip rotated files
//!   dir_mode: 0750             # mode of the log folders the daemon creates (octal)
//!   file_mode: 0640            # mode of the log files the daemon creates (octal)
//! handlers:                    # files served by a plugin, like `AddHandler wsgi-script .py`
//!   - suffix: .py              # a file whose name ends with it...
//!     plugin: target/release/libwsgi.so   # ...is served by this plugin (SCRIPT_FILENAME: the file)
//!     env: {callable: app}     # handed to the plugin's init (the WSGI bridge's settings)
//!     python_home: venv        # WSGIPythonHome: one per process (every value must agree)
//!     python_path: [lib]       # WSGIPythonPath: folders added to sys.path (or "a:b")
//! aliases:                     # required; tried in order, the first match wins
//!   - url: /sample             # one app: WSGIScriptAlias /sample .../sample.py
//!     path: target/release/libhello.so
//!   - url: /myapp
//!     path: target/release/libproducts.so
//!     develop_mode: true       # per-alias overrides of the global values
//!     env: {PRODUCTS_DB: var/products.sqlite3}
//!     max_body: 1MiB
//!     threads: 4
//!     reloading: false         # keep the loaded version until restart
//!     sha256: 3f2a...          # 64 hex digits: only a file with this digest is loaded
//!     timeout: 5s              # the limits above may be set per alias (not header_timeout)
//!   - url: /wsgi/              # a directory group: /wsgi/NAME/rest serves plugin NAME
//!     path: target/release/
//!   - url: /py/                # a group of scripts: /py/sample.py is served by the handler
//!     path: scripts/
//!     python_path: [scripts/lib]   # per alias too: added to the handler's entries
//!   - url: /crashy             # isolated: runs in worker processes, like WSGIDaemonProcess
//!     path: target/release/libcrashy.so
//!     isolation: process       # `in-process` (default) or `process`
//!     processes: 2             # worker processes, 1..=64 (default 2), each with `threads`
//!     user: www-data           # run them as this user/group (the daemon must start as root);
//!     group: www-data          # names or numbers, resolved when the file is read
//!     maximum_requests: 10000  # recycle a worker after this many requests
//!     memory_limit: 512MiB     # ... or when its resident memory passes this
//! ```
//!
//! Defaults when a key is absent: `listen: ["127.0.0.1:8080"]`, `develop_mode: false`,
//! `max_body: 10MiB` ([`DEFAULT_MAX_BODY`]), `threads: 8` ([`DEFAULT_THREADS`]),
//! `logs.dir: log`, the `logs` values shown above ([`Logs::defaults`]). `aliases` is
//! required (`aliases: []` for none).
//!
//! Rules worth knowing:
//! - Unknown keys, duplicate keys and YAML syntax errors are errors.
//! - Booleans accept `true`/`false` and the YAML 1.1 spellings `yes`/`no`/`on`/`off`
//!   (friendly to Apache users: `develop_mode: On`).
//! - Size units are all binary: `K`, `KB` and `KiB` all mean 1024 bytes (see
//!   [`parse_size`]).
//! - Relative paths (`path`, `logs.dir`) resolve against the config file's folder, not
//!   the current directory; `logs.access_log` and `logs.error_log` against `logs.dir`.
//! - Modes are octal as for chmod (`0640`, `640`, `0o640`); a world-writable mode, or one
//!   that locks the daemon out of its own logs, is an error.
//! - An alias is a directory group if its `path` is an existing directory, a single app
//!   if it is an existing file. A missing path is a directory group (an error: the
//!   folder must exist) if the path or the url ends with `/`, otherwise a single app
//!   whose file is not built yet (a warning: the alias answers 404 until it appears).
//! - A later alias that can never match because an earlier one matches all its URLs
//!   gets a warning (see [`url_covers`]).
//! - A file is served by the first handler whose suffix its name ends with (and is longer
//!   than), case-sensitively ([`Config::handler_for`]). `python_home` and `python_path` on an
//!   alias that no handler can serve are errors; two different `python_home`s anywhere in
//!   the file are an error (one interpreter per process).
//! - An isolated alias's `user` and `group` are looked up in the system's user and group
//!   database when the file is read ([`ProcessSettings::uid`], [`ProcessSettings::gid`]): a
//!   name that does not exist is an error, and so is a numeric `user` with no entry and no
//!   `group` (its workers' group would be unknown).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

mod accounts;
mod alias;
mod diagnostic;
mod env_vars;
mod errors;
mod handler;
mod hooks;
mod isolation;
mod limits;
mod logs;
mod net;
mod node;
mod size;
mod statics;
mod url;
mod url_match;
mod validate;
mod worker_text;

pub use diagnostic::{ConfigError, Diagnostic, Pos, Severity};
pub use errors::ErrorDocuments;
pub use hooks::Hooks;
pub use isolation::{DEFAULT_PROCESSES, DEFAULT_STARTUP_TIMEOUT, MAX_PROCESSES, ProcessSettings};
pub use limits::{Limits, MAX_HEADER_SIZE_CEILING, MAX_HEADERS_CEILING, parse_duration};
pub use logs::{AccessLog, ErrorLog, Logs, Rotate, RotateAge};
pub use net::parse_net;
pub use size::parse_size;
pub use statics::StaticDir;
pub use url::url_covers;
pub use url_match::expand as expand_url_match;
pub use worker_text::worker_text;

use diagnostic::Diags;

/// `max_body` when not set: 10 MiB.
pub const DEFAULT_MAX_BODY: u64 = 10 * 1024 * 1024;

/// The default `upload_budget`: 1 GiB of form bodies held at once across the daemon.
pub const DEFAULT_UPLOAD_BUDGET: u64 = 1 << 30;
/// `threads` when not set.
pub const DEFAULT_THREADS: usize = 8;
/// The largest accepted `threads`.
pub const MAX_THREADS: usize = 1024;
/// `logs.rotate.size` when `rotate` is not written: 10 MiB.
pub const DEFAULT_ROTATE_SIZE: u64 = 10 * 1024 * 1024;
/// `logs.rotate.keep` when not written.
pub const DEFAULT_KEEP: usize = 7;
/// The largest accepted `logs.rotate.keep` (short of `all`).
pub const MAX_KEEP: usize = 100_000;
/// `logs.dir_mode` when not written.
pub const DEFAULT_DIR_MODE: u32 = 0o750;
/// `logs.file_mode` when not written.
pub const DEFAULT_FILE_MODE: u32 = 0o640;

/// `keep_alive` when not written: 5 s, Apache's `KeepAliveTimeout`.
pub const DEFAULT_KEEP_ALIVE: std::time::Duration = std::time::Duration::from_secs(5);
/// `max_connections` when not written (per HTTP worker thread).
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;
/// The largest accepted `max_connections`.
pub const MAX_CONNECTIONS_CEILING: usize = 1_000_000;

/// A listen address that serves HTTPS: its certificate chain and private key, PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsListen {
    /// The address (as in [`Config::listen`]).
    pub addr: SocketAddr,
    /// The certificate chain, PEM (the server's certificate first), absolute.
    pub cert: PathBuf,
    /// The private key, PEM (PKCS#8, PKCS#1 or SEC1), absolute.
    pub key: PathBuf,
}

/// A trusted proxy: an address or a CIDR block (`prefix` bits of `addr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyNet {
    /// The block's first address.
    pub addr: std::net::IpAddr,
    /// The prefix length: 32 (IPv4) or 128 (IPv6) for one address.
    pub prefix: u8,
}

/// The metrics and status listener (`metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metrics {
    /// Where `/metrics`, `/status` and `/status.json` are served (loopback advised).
    pub listen: SocketAddr,
}

/// A validated configuration: every value resolved, every path absolute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The configuration file, as it was given to [`load`] or [`parse`].
    pub file: PathBuf,
    /// The file's folder, absolute: relative paths in the file resolve against it.
    pub dir: PathBuf,
    /// Addresses to listen on (at least one, no duplicates).
    pub listen: Vec<SocketAddr>,
    /// The text the configuration was read from (a worker process reads its alias from
    /// this text, cut down by [`worker_text`], so it serves the generation that started it).
    pub text: std::sync::Arc<str>,
    /// The addresses of `listen` that serve HTTPS, with their certificates.
    pub tls: Vec<TlsListen>,
    /// How long an idle keep-alive connection stays open (`keep_alive`, default 5 s).
    pub keep_alive: std::time::Duration,
    /// Connections each HTTP worker thread serves at once, per listener (`max_connections`,
    /// default 10000); past it new connections wait in the kernel's backlog.
    pub max_connections: usize,
    /// Peers whose `Forwarded` / `X-Forwarded-For` / `X-Forwarded-Proto` are believed
    /// (`trusted_proxies`, default none).
    pub trusted_proxies: Vec<ProxyNet>,
    /// The metrics and status listener (`metrics`; none by default).
    pub metrics: Option<Metrics>,
    /// The global develop mode (the seed's `DEVELOP_MODE`).
    pub develop_mode: bool,
    /// The global request body limit, in bytes (at least 1).
    pub max_body: u64,
    /// The global limit for one uploaded file, in bytes (default: `max_body`).
    pub max_upload: u64,
    /// Where uploaded files are spooled during a request (default: the system's temporary
    /// folder, `$TMPDIR` or `/tmp`).
    pub upload_dir: PathBuf,
    /// The form bytes all requests together may hold at once: uploads spooled to disk and
    /// form text in memory (`upload_budget`, default 1 GiB); past it 503 with `Retry-After`.
    pub upload_budget: u64,
    /// Whether apps see the `Authorization` header as `HTTP_AUTHORIZATION` (mod_wsgi's
    /// `WSGIPassAuthorization`; default false, as there).
    pub pass_authorization: bool,
    /// Whether `TRACE` requests reach apps (`trace_enable`, Apache's `TraceEnable`; default
    /// false: the daemon answers them 405, as it always answers `CONNECT`).
    pub trace_enable: bool,
    /// The bodies of error answers, by status (`error_documents`, Apache's `ErrorDocument`):
    /// files, absolute. Each alias's own are over these in [`Alias::error_documents`].
    pub error_documents: ErrorDocuments,
    /// Whether an app's own error replies (status 400 and up) get the error document of
    /// their status too (`error_override`, mod_wsgi's `WSGIErrorOverride`; default false).
    pub error_override: bool,
    /// Folders of files served by the daemon itself (`static`), before any alias.
    pub statics: Vec<StaticDir>,
    /// The global number of app threads per alias pool, in `1..=1024`.
    pub threads: usize,
    /// The global dispatch mode.
    pub dispatch: Dispatch,
    /// The global `reloading` (mod_wsgi's `WSGIScriptReloading`): whether a replaced or
    /// removed plugin file is picked up while running. Default true.
    pub reloading: bool,
    /// The global request limits (each alias's start from these).
    pub limits: Limits,
    /// How long a client may take to send a request's head (`header_timeout`, default
    /// 10 s); past it 408 (slow-header clients, slowloris).
    pub header_timeout: std::time::Duration,
    /// How long a stop (SIGTERM) waits for requests in flight before closing their
    /// connections (`shutdown_timeout`, default 30 s).
    pub shutdown_timeout: std::time::Duration,
    /// After SIGTERM, how long the daemon keeps serving with `/readyz` failing before its
    /// listeners close (`drain_delay`, default 0): the time a load balancer (a Kubernetes
    /// Service's endpoints) needs to stop sending it new requests.
    pub drain_delay: std::time::Duration,
    /// The global `check_plugins` (default true): refuse plugin files that someone other
    /// than root or the daemon's user could have written (see the daemon's `trust`).
    pub check_plugins: bool,
    /// Where private copies of plugin files are made before they are loaded (default
    /// `var/cache` beside the file). Must not be on a `noexec` mount.
    pub cache_dir: PathBuf,
    /// Where the daemon writes its process id, for `gatehouse reload` (default
    /// `var/run/gatehouse.pid` beside the file).
    pub pid_file: PathBuf,
    /// The debug-log directory, absolute (`logs.dir`, default `log` beside the file).
    pub logs_dir: PathBuf,
    /// The rest of the `logs` mapping: levels, the access and error logs, rotation, modes.
    pub logs: Logs,
    /// The handlers, in declared order: a file is served by the first whose suffix it has.
    pub handlers: Vec<Handler>,
    /// The process's one `python_home` (mod_wsgi's `WSGIPythonHome`): the value every
    /// handler and alias that sets one agrees on, absolute.
    pub python_home: Option<PathBuf>,
    /// The aliases, in declared order: the first one whose url matches serves.
    pub aliases: Vec<Alias>,
}

impl Config {
    /// The certificate of listen address `addr`, if it serves HTTPS.
    pub fn tls_for(&self, addr: SocketAddr) -> Option<&TlsListen> {
        self.tls.iter().find(|t| t.addr == addr)
    }

    /// The handler serving `file`, if any: the first whose suffix the file's name ends with
    /// (a name that is only the suffix, like `.py`, is not served).
    pub fn handler_for(&self, file: &std::path::Path) -> Option<&Handler> {
        handler_for(&self.handlers, file)
    }
}

/// The first of `handlers` whose suffix `file`'s name ends with (and is longer than).
pub(crate) fn handler_for<'h>(handlers: &'h [Handler], file: &Path) -> Option<&'h Handler> {
    use std::os::unix::ffi::OsStrExt as _;
    let name = file.file_name()?.as_bytes();
    handlers.iter().find(|h| name.len() > h.suffix.len() && name.ends_with(h.suffix.as_bytes()))
}

/// One entry of `handlers`, like Apache's `AddHandler wsgi-script .py`: files whose name
/// ends with `suffix` are served by `plugin`, with `SCRIPT_FILENAME` set to the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handler {
    /// The file-name ending it serves, starting with `.` (`.py`).
    pub suffix: String,
    /// The plugin file, absolute (it may not exist yet: a warning).
    pub plugin: PathBuf,
    /// `plugin` exactly as written, for messages.
    pub plugin_as_written: String,
    /// Settings handed to the plugin's `init` (for the WSGI bridge: `callable`), in
    /// declaration order; an alias's `env` entries of the same name win.
    pub env: Vec<(String, String)>,
    /// The handler's `python_home`, absolute (the process-wide value is
    /// [`Config::python_home`]).
    pub python_home: Option<PathBuf>,
    /// Folders added to the interpreter's `sys.path` (mod_wsgi's `python-path`), absolute.
    pub python_path: Vec<PathBuf>,
    /// Where the handler's list item starts.
    pub pos: Pos,
}

/// One entry of `aliases`, like one `WSGIScriptAlias` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alias {
    /// The URL prefix, normalized: starts with `/`, no trailing slash (except the root
    /// `/` itself), no empty, `.` or `..` segments, no `?`, `#`, `%` or whitespace.
    pub url: String,
    /// With `url_match` (mod_wsgi's `WSGIScriptAliasMatch`): the regular expression, as
    /// matched (anchored at the path's start, so `url` holds it too); `path` is then a
    /// template whose `$1`..`$9` are its captures, one file per match.
    pub url_match: Option<String>,
    /// Whether `url` was written with a trailing slash (`/myapp/`), which the
    /// normalization removed. For a directory group it means nothing (`/wsgi/` and
    /// `/wsgi` are the same group). For a single app, mod_wsgi would then match only
    /// `/myapp/` and below, not `/myapp` itself: the router may use this to redirect
    /// `/myapp` to `/myapp/` or to refuse it; it is never set for the root `/`.
    pub trailing_slash: bool,
    /// A single app or a directory group, as found on disk when the file was read.
    pub kind: AliasKind,
    /// The app file or the group's folder, absolute: resolved against [`Config::dir`]
    /// and cleaned of `.` components and trailing slashes, but not canonicalized
    /// (symlinks and `..` kept). A single app's file may not exist yet (a warning).
    pub path: PathBuf,
    /// `path` exactly as written in the file, for messages.
    pub path_as_written: String,
    /// The alias's `develop_mode`, or the global one.
    pub develop_mode: bool,
    /// Variables handed to the app's init and added to its environ (like `SetEnv`),
    /// in declaration order; numbers and booleans as written (`1.0`, `on`).
    pub env: Vec<(String, String)>,
    /// The alias's `max_body`, or the global one, in bytes.
    pub max_body: u64,
    /// The largest uploaded file the alias accepts, in bytes: its `max_upload`, else the
    /// global `max_upload` if written, else its own `max_body`.
    pub max_upload: u64,
    /// The alias's `pass_authorization`, or the global one.
    pub pass_authorization: bool,
    /// The alias's `threads`, or the global one.
    pub threads: usize,
    /// The alias's `dispatch`, or the global one.
    pub dispatch: Dispatch,
    /// The alias's `reloading`, or the global one: whether its plugin files are watched
    /// and swapped when replaced.
    pub reloading: bool,
    /// For a directory group: whether its plugins (and scripts) are all loaded at start and
    /// after a reload (`preload`, like mod_wsgi's `WSGIImportScript`), rather than on each
    /// name's first request. Default false.
    pub preload: bool,
    /// The error documents for this alias's answers: the global ones with its own over
    /// them.
    pub error_documents: ErrorDocuments,
    /// The alias's `error_override`, or the global one.
    pub error_override: bool,
    /// Its access and authentication hooks (`access_script`, `auth_user_script`,
    /// `auth_realm`).
    pub hooks: Hooks,
    /// The alias's request limits (its own keys over the global ones).
    pub limits: Limits,
    /// The alias's `check_plugins`, or the global one.
    pub check_plugins: bool,
    /// For a single app: the SHA-256 its plugin file must have (`sha256`, 64 hex digits,
    /// lower-cased).
    pub sha256: Option<String>,
    /// Folders the alias adds to `sys.path` after its handler's (only for files served by
    /// a handler), absolute.
    pub python_path: Vec<PathBuf>,
    /// Where its apps run: in the daemon, or in worker processes.
    pub isolation: Isolation,
    /// Where the alias's list item starts (its first key, usually `url`).
    pub pos: Pos,
}

/// Where an alias's app code runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Dispatch {
    /// On the HTTP worker for apps whose plugin promises its calls never block (the ABI's
    /// `NEVER_BLOCKS` flag), while their calls keep the promise; on the pool otherwise. The
    /// default.
    #[default]
    Auto,
    /// On the alias's own bounded thread pool (`threads`): an app may block without
    /// stalling others, whatever its plugin promises.
    Pool,
    /// On the HTTP worker that received the request: no hand-off, the fastest, for apps that
    /// never block (no I/O, no waiting). Requests with a streamed body, and a group plugin's
    /// first request (its load), still go through the pool; replies are sent whole.
    Inline,
}

/// Where an alias's apps run (`isolation`).
// Read once per configuration, never moved in a hot path: the variants' sizes do not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Isolation {
    /// In the daemon's process, on the alias's thread pool: the fastest; a crash in the app
    /// takes the daemon down. The default.
    #[default]
    InProcess,
    /// In worker processes (`isolation: process`), like mod_wsgi's daemon mode: a crash fails
    /// only the requests its worker was serving.
    Process(ProcessSettings),
}

/// What an alias serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AliasKind {
    /// One app plugin file: `url` and everything under `url/` go to it.
    App,
    /// A folder of app plugins: `url/NAME/rest` goes to plugin `NAME` in the folder.
    Group,
}

/// A configuration that passed validation, and the warnings about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Warnings (no errors), sorted by position: show them, then go on.
    pub warnings: Vec<Diagnostic>,
}

/// Reads and validates the configuration file at `path`. A read error (or a file that
/// is not UTF-8) is a [`ConfigError`] naming the file and the cause. See [`parse`].
pub fn load(path: &Path) -> Result<Loaded, ConfigError> {
    let bytes = std::fs::read(path).map_err(|e| {
        single(
            path,
            None,
            format!("cannot read the configuration file: {e}"),
            Some("check that the file exists and that the daemon's user may read it"),
        )
    })?;
    parse_bytes(&bytes, path)
}

/// Like [`parse`], for the file's bytes as read (they must be UTF-8): what [`load`] does
/// after reading, for a caller that reads the file itself (to tell whether it changed).
pub fn parse_bytes(bytes: &[u8], path: &Path) -> Result<Loaded, ConfigError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let valid = String::from_utf8_lossy(&bytes[..e.valid_up_to()]);
        let line = valid.matches('\n').count() + 1;
        let column = valid.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        single(
            path,
            Some(Pos::new(line, column)),
            "the file is not valid UTF-8".to_owned(),
            Some("save it as UTF-8"),
        )
    })?;
    parse(text, path)
}

/// Parses and validates configuration `text`. `path` names the file in messages, and
/// its folder (made absolute with [`std::path::absolute`], so relative to the current
/// directory if `path` is relative) is where relative paths in the file resolve.
///
/// Looks at the disk to tell single apps from directory groups. Returns every error
/// found (a YAML syntax error stops at itself; everything else is collected), or the
/// configuration and its warnings.
///
/// Resolves the aliases' `user` and `group` against the system's user and group database
/// ([`ProcessSettings::uid`], [`ProcessSettings::gid`]): one that does not exist is an error.
pub fn parse(text: &str, path: &Path) -> Result<Loaded, ConfigError> {
    parse_with(text, path, &accounts::System)
}

/// [`parse`], with users and groups looked up in `accounts`.
pub(crate) fn parse_with(
    text: &str,
    path: &Path,
    accounts: &dyn accounts::Accounts,
) -> Result<Loaded, ConfigError> {
    let absolute = std::path::absolute(path).map_err(|e| {
        single(path, None, format!("cannot tell the configuration file's folder: {e}"), None)
    })?;
    let dir = absolute.parent().map_or_else(|| absolute.clone(), Path::to_path_buf);
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);

    let mut d = Diags::new(path);
    let config = match node::parse_yaml(text) {
        Ok(mut root) => {
            env_vars::expand(&mut root, &env_vars::process_env, &mut d);
            let mut config = validate::build(&root, path, &dir, accounts, &mut d);
            config.text = std::sync::Arc::from(text);
            Some(config)
        }
        Err(e) => {
            let hint = e.hint().to_owned();
            d.error_at(e.pos, e.message, Some(hint));
            None
        }
    };
    let (errors, warnings) = d.finish();
    match config {
        Some(config) if errors.is_empty() => Ok(Loaded { config, warnings }),
        _ => Err(ConfigError { diagnostics: errors.into_iter().chain(warnings).collect() }),
    }
}

fn single(path: &Path, pos: Option<Pos>, message: String, hint: Option<&str>) -> ConfigError {
    let mut d = Diags::new(path);
    d.error_at(pos, message, hint.map(str::to_owned));
    ConfigError { diagnostics: d.finish().0 }
}

#[cfg(test)]
mod reference_tests;
#[cfg(test)]
pub(crate) mod testutil;

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn upload_limits_and_authorization_inherit() {
        let fx = fixture();
        // (yaml, (global max_upload, upload_dir under the config folder?, pass_authorization),
        //  per alias (max_upload, pass_authorization))
        type Case<'a> = (&'a str, (u64, bool, bool), &'a [(u64, bool)]);
        let cases: &[Case<'_>] = &[
            (
                "max_body: 4k\naliases:\n  - url: /a\n    path: lib/app.so\n  - url: /b\n    path: lib/app.so\n    max_body: 1k\n",
                (4096, false, false),
                // an alias's upload limit follows its own max_body when max_upload is unset
                &[(4096, false), (1024, false)],
            ),
            (
                "max_upload: 2k\nupload_dir: spool\npass_authorization: yes\naliases:\n  - url: /a\n    path: lib/app.so\n    max_body: 1k\n  - url: /b\n    path: lib/app.so\n    max_upload: 3k\n    pass_authorization: false\n",
                (2048, true, true),
                &[(2048, true), (3072, false)],
            ),
        ];
        for (text, (max_upload, spool, auth), aliases) in cases {
            let c = fx.ok(text).config;
            assert_eq!(c.max_upload, *max_upload, "{text}");
            assert_eq!(c.upload_dir == fx.tmp.path().join("spool"), *spool, "{text}");
            assert_eq!(c.pass_authorization, *auth, "{text}");
            let got: Vec<(u64, bool)> =
                c.aliases.iter().map(|a| (a.max_upload, a.pass_authorization)).collect();
            assert_eq!(got, *aliases, "{text}");
        }
        assert_eq!(fx.ok("aliases: []\n").config.upload_dir, std::env::temp_dir());
        assert_has(&fx.errors("aliases: []\nmax_upload: 0\n"), 2, 13, "at least 1 byte");
    }

    #[test]
    fn reloading_cache_and_pid_file() {
        let fx = fixture();
        let dir = fx.tmp.path();
        let c = fx.ok("aliases:\n  - url: /a\n    path: lib/app.so\n").config;
        assert!(c.reloading && c.aliases[0].reloading);
        assert_eq!(c.cache_dir, dir.join("var/cache"));
        assert_eq!(c.pid_file, dir.join("var/run/gatehouse.pid"));
        let c = fx
            .ok("reloading: off\ncache_dir: /var/cache/gatehouse\npid_file: run/g.pid\naliases:\n  \
                 - url: /a\n    path: lib/app.so\n  - url: /b\n    path: lib/app.so\n    reloading: on\n")
            .config;
        assert!(!c.reloading && !c.aliases[0].reloading && c.aliases[1].reloading);
        assert_eq!(c.cache_dir, Path::new("/var/cache/gatehouse"));
        assert_eq!(c.pid_file, dir.join("run/g.pid"));
        assert_has(&fx.errors("aliases: []\nreloading: sometimes\n"), 2, 12, "true or false");
        assert_has(&fx.errors("aliases: []\nmax_upload: 0\n"), 2, 13, "at least 1 byte");
    }

    #[test]
    fn full_config_round_trip() {
        let fx = fixture();
        let text = "\
listen: [\"127.0.0.1:0\", \"[::1]:9000\"]
develop_mode: on
max_body: 2MiB
threads: 16
logs:
  dir: var/log
aliases:
  - url: /sample
    path: lib/app.so
  - url: /myapp/
    path: ./lib//app.so
    develop_mode: false
    env: {ZED: last, A: 1.0, B: on, C: \"quoted\", D: 0x1F}
    max_body: 1024
    threads: 4
  - url: /wsgi/
    path: apps/
  - url: /abs
    path: PLACEHOLDER
";
        let abs_apps = fx.tmp.path().join("apps");
        let text = text.replace("PLACEHOLDER", &abs_apps.display().to_string());
        let loaded = fx.ok(&text);
        assert_eq!(loaded.warnings, []);
        let c = &loaded.config;
        let dir = fx.tmp.path();
        assert_eq!(c.file, fx.file);
        assert_eq!(c.dir, dir);
        assert_eq!(
            c.listen,
            [
                SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                SocketAddr::from((Ipv6Addr::LOCALHOST, 9000))
            ]
        );
        assert!(c.develop_mode);
        assert_eq!(c.max_body, 2 * 1024 * 1024);
        assert_eq!(c.threads, 16);
        assert_eq!(c.logs_dir, dir.join("var/log"));
        assert_eq!(c.aliases.len(), 4);

        let a = &c.aliases[0];
        assert_eq!(
            (a.url.as_str(), a.trailing_slash, a.kind, a.path.as_path()),
            ("/sample", false, AliasKind::App, dir.join("lib/app.so").as_path())
        );
        assert_eq!(a.path_as_written, "lib/app.so");
        // inherited
        assert_eq!((a.develop_mode, a.max_body, a.threads), (true, 2 * 1024 * 1024, 16));
        assert_eq!(a.env, []);
        assert_eq!(a.pos, Pos::new(8, 5));

        let b = &c.aliases[1];
        assert_eq!((b.url.as_str(), b.trailing_slash, b.kind), ("/myapp", true, AliasKind::App));
        assert_eq!(b.path, dir.join("lib/app.so"));
        assert_eq!(b.path_as_written, "./lib//app.so");
        // overridden
        assert_eq!((b.develop_mode, b.max_body, b.threads), (false, 1024, 4));
        let env: Vec<(&str, &str)> = b.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            env,
            [("ZED", "last"), ("A", "1.0"), ("B", "on"), ("C", "quoted"), ("D", "0x1F")]
        );
        assert_eq!(b.pos, Pos::new(10, 5));

        let g = &c.aliases[2];
        assert_eq!((g.url.as_str(), g.trailing_slash, g.kind), ("/wsgi", true, AliasKind::Group));
        assert_eq!(g.path, dir.join("apps"));
        assert_eq!(g.pos, Pos::new(16, 5));

        let abs = &c.aliases[3];
        assert_eq!((abs.url.as_str(), abs.kind), ("/abs", AliasKind::Group));
        assert_eq!(abs.path, abs_apps);
    }

    #[test]
    fn defaults_when_keys_are_absent() {
        let fx = fixture();
        let loaded = fx.ok("aliases: []\n");
        let c = loaded.config;
        assert_eq!(c.listen, [SocketAddr::from((Ipv4Addr::LOCALHOST, 8080))]);
        assert!(!c.develop_mode);
        assert_eq!(c.max_body, 10_485_760);
        assert_eq!(c.threads, 8);
        assert_eq!(c.logs_dir, fx.tmp.path().join("log"));
        assert_eq!(c.aliases, []);
        assert_eq!(loaded.warnings, []);

        // `logs:` and `env:` left empty mean their defaults.
        let loaded = fx.ok("logs:\naliases:\n  - url: /a\n    path: lib/app.so\n    env:\n");
        assert_eq!(loaded.config.logs_dir, fx.tmp.path().join("log"));
        assert_eq!(loaded.config.aliases[0].env, []);
    }

    #[test]
    fn relative_config_path_is_made_absolute() {
        // Relative paths in the file resolve against the file's folder (see the round
        // trip above); a relative file path is itself made absolute against the cwd.
        let loaded = parse("aliases: []\n", Path::new("some/where/hosting.yaml")).expect("valid");
        let cwd = std::env::current_dir().expect("cwd");
        assert_eq!(loaded.config.dir, cwd.join("some/where"));
        assert_eq!(loaded.config.logs_dir, cwd.join("some/where/log"));
        assert_eq!(loaded.config.file, Path::new("some/where/hosting.yaml"));
    }

    #[test]
    fn load_reads_the_file() {
        let fx = fixture();
        std::fs::write(&fx.file, "\u{feff}threads: 3\naliases: []\n").expect("write");
        let loaded = load(&fx.file).expect("valid");
        assert_eq!(loaded.config.threads, 3);
    }

    #[test]
    fn load_errors() {
        let fx = fixture();
        let missing = fx.tmp.path().join("nope.yaml");
        let err = load(&missing).expect_err("missing file");
        assert_eq!(err.diagnostics.len(), 1);
        let d = &err.diagnostics[0];
        assert_eq!((d.pos, d.file.as_path()), (None, missing.as_path()));
        assert!(d.message.contains("cannot read"), "{d}");
        assert!(err.to_string().starts_with(&format!("{}: error: cannot read", missing.display())));

        std::fs::write(&fx.file, b"aliases: []\n# caf\xe9\n").expect("write");
        let err = load(&fx.file).expect_err("not utf-8");
        assert_eq!(err.diagnostics[0].pos, Some(Pos::new(2, 6)));
        assert!(err.diagnostics[0].message.contains("UTF-8"));
    }

    #[test]
    fn syntax_error_is_reported_with_position() {
        let fx = fixture();
        let err = fx.parse("aliases: []\nthreads: 4\n  max_body: 1\n").expect_err("bad yaml");
        assert_eq!(err.diagnostics.len(), 1);
        let d = &err.diagnostics[0];
        assert_eq!(d.pos, Some(Pos::new(3, 11)));
        assert_eq!(d.severity, Severity::Error);
        let shown = err.to_string();
        assert!(shown.starts_with(&format!("{}:3:11: error: ", fx.file.display())), "{shown}");
    }

    #[test]
    fn errors_come_first_then_warnings() {
        let fx = fixture();
        let err = fx
            .parse("aliases:\n  - url: /a\n    path: lib/missing.so\n  - url: nope\n    path: lib/app.so\n")
            .expect_err("bad url");
        let severities: Vec<_> = err.diagnostics.iter().map(|d| d.severity).collect();
        assert_eq!(severities, [Severity::Error, Severity::Warning]);
        assert_eq!(err.diagnostics[0].pos, Some(Pos::new(4, 10)));
        assert_eq!(err.diagnostics[1].pos, Some(Pos::new(3, 11)));
    }
}
