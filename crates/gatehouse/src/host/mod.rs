//! The host: the running state built from one configuration — each alias's plugin slot(s),
//! thread pool and debug log — and the one request path through it, from a routed request to
//! the app's reply.
//!
//! Single-app plugins load at start (a missing file is retried on each request until it
//! appears); directory-group plugins load on their first request. Every load goes through a
//! private copy (see `staging`). A load failure is remembered with the file's identity, so an
//! unchanged broken file is not reopened on every request and a replaced one is tried again.
//!
//! A configuration reload builds the next `Host` with [`Host::next`]: an alias whose plugin
//! identity (url, kind, path, env, folders) is unchanged keeps its loaded plugins (and its
//! pool, if `threads` is unchanged), so only what changed is loaded. [`Host::refresh`] swaps
//! plugins whose files were replaced and retires removed ones; requests in flight keep the
//! version they started with, whose `shutdown` runs when the last of them finishes.
//!
//! A file whose name ends in a handler's suffix (`handlers:` in the configuration, like
//! Apache's `AddHandler wsgi-script .py`) is served by the handler's plugin instead: the slot
//! is still the file's (one instance per script), but what is staged, loaded, watched and
//! swapped is the handler plugin, `init` gets the handler's settings ([`init_env`]), and
//! `SCRIPT_FILENAME` is the script. A changed script is the plugin's business (the WSGI
//! bridge re-imports it); a removed one stops being served.
//!
//! Architecture Invariant: app code (load, init, handle) runs on an alias's pool thread, on
//! the HTTP worker only for `dispatch: inline` calls to an already loaded plugin, and on the
//! reloader thread for the `init` of a replacement; `shutdown` of a retired plugin runs on the
//! reaper thread.

mod error_pages;
mod hooks;
mod live;
mod next;
#[cfg(test)]
mod next_tests;
mod refresh;
pub(crate) use hooks::{HookKind, Outcome};
pub use live::Live;
pub(crate) use next::init_env;
use next::{AppsKey, WorkersKey};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use gatehouse_config::{Alias, AliasKind, Config};

use crate::call::Call;
use crate::call::inline::InlineGate;
use crate::call::pool::Pool;
use crate::logs::debug::{DebugLog, DebugLogs};
use crate::plugin::load::{InitArgs, LoadError, Plugin};
use crate::plugin::staging::{Cache, Check, Digest256, FileId, Policy, StageError};
use crate::request::environ::PairBuf;
use crate::request::input::Input;
use crate::request::route::{GroupMiss, alias_app_name, resolve_group_file};
use gatehouse_trust::Owners;

/// How often a single app whose file is missing logs about it while requests arrive.
const MISSING_WARN_EVERY: Duration = Duration::from_secs(10);

/// The next request id, unique for the daemon's life (across reloads).
static NEXT_REQUEST: AtomicU64 = AtomicU64::new(1);

/// A plugin ready to serve, with the debug log of its app.
#[derive(Debug, Clone)]
pub(crate) struct Loaded {
    /// The plugin.
    pub plugin: Arc<Plugin>,
    /// Its app's debug log.
    pub debug: Arc<DebugLog>,
    /// Its app's name for logs: the alias's last URL segment, or the group's plugin NAME.
    pub app: Arc<str>,
    /// When it was loaded.
    pub loaded_at: std::time::SystemTime,
    /// Requests this instance was called for (the status page's per-plugin count).
    pub requests: Arc<AtomicU64>,
    /// Whether its calls may run on the HTTP worker now (`dispatch: auto`).
    pub inline: Arc<InlineGate>,
}

impl Loaded {
    /// The call of this app for one request (counted in [`Loaded::requests`]).
    pub(crate) fn call<'a>(
        &'a self,
        vars: &'a PairBuf,
        input: &'a Input,
        develop_mode: bool,
        request_id: u64,
    ) -> Call<'a> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        Call { vars, input, debug: &self.debug, develop_mode, app: &self.app, request_id }
    }
}

#[derive(Debug)]
enum Slot {
    Ready {
        loaded: Loaded,
        /// The file's identity when the serving version was read.
        id: FileId,
        /// The digest of the bytes loaded (None when loaded without a private copy).
        sha256: Option<Digest256>,
        /// A newer version of the file that was refused: not tried again until it changes.
        rejected: Option<FileId>,
        /// Why the last newer version was refused, so a refusal retried (a trust failure is
        /// retried every second until fixed) is logged once.
        refusal: Option<String>,
    },
    Failed {
        id: Option<FileId>,
        error: Arc<LoadError>,
    },
}

/// Why an alias could not produce a plugin for a request.
#[derive(Debug, Clone)]
pub(crate) enum Unavailable {
    /// The file does not exist (404); the error log says which.
    Missing,
    /// The file exists but does not load (a group answers 404, a single app 500); the
    /// error log says why.
    Broken,
}

/// What serves a file: the file itself (a plugin), or the plugin of the handler for its
/// suffix, and the settings its `init` gets.
#[derive(Debug)]
struct Source {
    /// The plugin file to load.
    plugin: PathBuf,
    /// Its `init` settings.
    env: Vec<(String, String)>,
    /// Whether `plugin` is a handler's (the file is a script it serves).
    handler: bool,
}

/// The plugins an alias has loaded, kept across configuration reloads that leave the
/// alias's [`AppsKey`] unchanged.
#[derive(Debug)]
struct Apps {
    key: AppsKey,
    /// For a single app: the loaded plugin, once loaded (the fast path).
    single: RwLock<Option<Loaded>>,
    slots: RwLock<HashMap<PathBuf, Slot>>,
    load_lock: Mutex<()>,
    last_missing_warn: Mutex<Option<Instant>>,
    groups: RwLock<GroupCache>,
    /// Its requests, for metrics and the status page (kept while the alias is unchanged).
    stats: Arc<crate::metrics::RequestStats>,
}

impl Apps {
    fn new(key: AppsKey) -> Apps {
        Apps {
            key,
            single: RwLock::new(None),
            slots: RwLock::new(HashMap::new()),
            load_lock: Mutex::new(()),
            last_missing_warn: Mutex::new(None),
            groups: RwLock::new(GroupCache::default()),
            stats: Arc::default(),
        }
    }

    fn slots(&self) -> std::sync::RwLockReadGuard<'_, HashMap<PathBuf, Slot>> {
        self.slots.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn slots_mut(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<PathBuf, Slot>> {
        self.slots.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn set_single(&self, loaded: Option<Loaded>) {
        if self.key.kind == AliasKind::App {
            *self.single.write().unwrap_or_else(PoisonError::into_inner) = loaded;
        }
    }
}

/// One alias's running state.
#[derive(Debug)]
pub struct Mount {
    /// The alias as configured.
    pub alias: Alias,
    /// Where its plugins run.
    pub pool: Arc<Pool>,
    /// For a group: its folder, canonical (None if it could not be resolved).
    pub group_dir: Option<PathBuf>,
    /// For a single app: its file, shared with every request.
    pub app_file: Arc<Path>,
    /// Its request counters (shared with the next configuration's alias while unchanged).
    pub stats: Arc<crate::metrics::RequestStats>,
    /// With `isolation: process`: its worker processes (shared with the next
    /// configuration's alias while nothing a worker reads changed).
    pub workers: Option<Arc<crate::isolation::group::Group>>,
    workers_key: Option<WorkersKey>,
    apps: Arc<Apps>,
    /// Its access and authentication hooks (None: it has none, or this is a worker).
    pub(crate) hooks: Option<hooks::Hooks>,
}

/// A directory group's resolved names, valid while the folder is unchanged.
#[derive(Debug, Default)]
struct GroupCache {
    /// The folder's (inode, mtime, mtime_nsec) when the entries were resolved: adding,
    /// removing or renaming a file changes it.
    stamp: Option<(u64, i64, i64)>,
    entries: HashMap<Box<[u8]>, GroupFile>,
}

/// What a directory-group name resolves to.
pub(crate) type GroupFile = Result<(Arc<Path>, Arc<str>), GroupMiss>;

/// Most names a group remembers; past it the cache starts over (names are client input).
const GROUP_CACHE_MAX: usize = 4096;

/// Everything one configuration runs.
#[derive(Debug)]
pub struct Host {
    /// The configuration it was built from.
    pub config: Config,
    /// The router.
    pub table: crate::request::route::Table,
    /// Per alias, in declaration order.
    pub mounts: Vec<Mount>,
    logs: Arc<DebugLogs>,
    cache: Option<Arc<Cache>>,
    owners: Owners,
    /// Whether aliases with `isolation: process` get worker processes (false in a worker).
    isolate: bool,
    /// The error documents, read.
    error_pages: error_pages::ErrorPages,
}

/// What a new host may take over from the previous one's alias with the same plugins.
struct Previous {
    apps: Arc<Apps>,
    pool: Arc<Pool>,
    threads: usize,
    queue: Option<usize>,
    workers: Option<(Arc<crate::isolation::group::Group>, WorkersKey)>,
}

/// The result of opening a plugin file.
enum Opened {
    /// Loaded and initialised.
    Ready { loaded: Loaded, id: FileId, sha256: Option<Digest256> },
    /// The file's bytes are those already loaded: nothing was loaded.
    Same(FileId),
    /// Refused; `id` is the identity of the refused version (None: try again next time).
    Failed { id: Option<FileId>, error: LoadError },
}

impl Host {
    /// Builds the host for `config`, without loading anything yet. With a `cache`, every
    /// plugin is loaded from a private copy made there; without one (benchmarks), from
    /// its file.
    pub fn new(config: Config, cache: Option<Arc<Cache>>) -> Host {
        let logs = Arc::new(DebugLogs::new(config.logs_dir.clone()));
        Host::build(config, logs, cache, true, |_| None)
    }

    /// The host of a worker process: like [`Host::new`], but every alias runs in this
    /// process, whatever its `isolation` says.
    pub(crate) fn in_worker(config: Config, cache: Option<Arc<Cache>>) -> Host {
        let logs = Arc::new(DebugLogs::new(config.logs_dir.clone()));
        Host::build(config, logs, cache, false, |_| None)
    }

    /// Builds the host for the next configuration: aliases whose plugin identity is
    /// unchanged keep their loaded plugins (and pools, when `threads` is unchanged).
    pub(crate) fn next(&self, config: Config) -> Host {
        let logs = if self.config.logs_dir == config.logs_dir {
            Arc::clone(&self.logs)
        } else {
            Arc::new(DebugLogs::new(config.logs_dir.clone()))
        };
        let cache = self.cache.clone();
        Host::build(config, logs, cache, self.isolate, |key| {
            self.mounts.iter().find(|m| m.apps.key == *key).map(|m| Previous {
                apps: Arc::clone(&m.apps),
                pool: Arc::clone(&m.pool),
                threads: m.alias.threads,
                queue: m.alias.limits.queue,
                workers: m.workers.clone().zip(m.workers_key.clone()),
            })
        })
    }

    fn build(
        config: Config,
        logs: Arc<DebugLogs>,
        cache: Option<Arc<Cache>>,
        isolate: bool,
        previous: impl Fn(&AppsKey) -> Option<Previous>,
    ) -> Host {
        let table = crate::request::route::Table::from_config(&config);
        let mounts = config
            .aliases
            .iter()
            .enumerate()
            .map(|(index, alias)| {
                let key = AppsKey::of(alias, &config);
                let workers_key = WorkersKey::of(alias, &key).filter(|_| isolate);
                let before = previous(&key);
                let workers = workers_key.as_ref().map(|wk| {
                    match before.as_ref().and_then(|p| p.workers.as_ref()) {
                        Some((group, old)) if old == wk => Arc::clone(group),
                        _ => Arc::new(crate::isolation::group::Group::new(&config, index)),
                    }
                });
                let (apps, pool) = match before {
                    Some(p) if p.threads == alias.threads && p.queue == alias.limits.queue => {
                        (p.apps, p.pool)
                    }
                    Some(p) => (p.apps, new_pool(alias)),
                    None => (Arc::new(Apps::new(key)), new_pool(alias)),
                };
                Mount {
                    workers,
                    workers_key,
                    pool,
                    group_dir: match alias.kind {
                        AliasKind::Group => std::fs::canonicalize(&alias.path).ok(),
                        AliasKind::App => None,
                    },
                    app_file: Arc::from(alias.path.as_path()),
                    // Hooks run in the daemon, never in a worker.
                    hooks: hooks::Hooks::of(alias).filter(|_| isolate),
                    alias: alias.clone(),
                    stats: Arc::clone(&apps.stats),
                    apps,
                }
            })
            .collect();
        let error_pages = error_pages::ErrorPages::load(&config);
        Host { config, table, mounts, logs, cache, owners: Owners::current(), isolate, error_pages }
    }

    /// Whether alias `mount` of this host runs the same plugin instances as alias `other`
    /// of `previous` (so a reload did not touch it).
    pub(crate) fn shares_apps(&self, mount: usize, previous: &Host, other: usize) -> bool {
        Arc::ptr_eq(&self.mounts[mount].apps, &previous.mounts[other].apps)
    }

    /// A fresh request id.
    pub(crate) fn request_id(&self) -> u64 {
        NEXT_REQUEST.fetch_add(1, Ordering::Relaxed)
    }

    /// Loads every single-app plugin not loaded yet, and every plugin of the directory
    /// groups with `preload`, logging each outcome. Returns how many failed.
    pub fn load_single_apps(&self) -> usize {
        let mut failed = self.load_hooks();
        for (i, m) in self.mounts.iter().enumerate() {
            if let Some(workers) = &m.workers {
                // Its apps load in its worker processes.
                workers.start();
                continue;
            }
            if m.alias.kind == AliasKind::Group {
                if m.alias.preload {
                    failed += self.preload_group(i);
                }
                continue;
            }
            match self.plugin(i, &m.alias.path, None) {
                Ok(_) => {}
                // `plugin` has already warned (rate-limited) about a missing file.
                Err(Unavailable::Missing) => {}
                // ... and about a refused one.
                Err(Unavailable::Broken) => failed += 1,
            }
        }
        failed
    }

    /// The error document for `status` on alias `mount` (`None`: no alias): its body and
    /// Content-Type.
    pub(crate) fn error_page(
        &self,
        mount: Option<usize>,
        status: u16,
    ) -> Option<(actix_web::web::Bytes, &'static str)> {
        self.error_pages.page(mount, status).map(|p| (p.body.clone(), p.content_type))
    }

    /// Whether an app's own error replies on alias `mount` get the error documents too.
    pub(crate) fn error_override(&self, mount: Option<usize>) -> bool {
        mount.map_or(self.config.error_override, |m| self.mounts[m].alias.error_override)
    }

    /// What keeps this host from being ready to serve every alias, one line each: a single
    /// app whose plugin is not loaded, an isolated alias with no worker ready. Empty when
    /// ready (`/readyz`).
    pub(crate) fn not_ready(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, m) in self.mounts.iter().enumerate() {
            if let Some(workers) = &m.workers {
                if workers.ready_workers() == 0 {
                    out.push(format!("{}: no worker process is ready", m.alias.url));
                }
            } else if m.alias.kind == AliasKind::App && self.loaded(i, &m.alias.path).is_none() {
                out.push(format!("{}: its app is not loaded", m.alias.url));
            }
        }
        out
    }

    /// Loads every plugin of directory group `mount` (each `.so` and each script a handler
    /// serves, by the name a request would use); returns how many failed.
    fn preload_group(&self, mount: usize) -> usize {
        let Some(dir) = &self.mounts[mount].group_dir else { return 0 };
        let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
        let mut names: Vec<String> = entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter_map(|f| {
                if let Some(stem) = f.strip_suffix(".so") {
                    Some(stem.strip_prefix("lib").unwrap_or(stem).to_owned())
                } else {
                    self.config.handler_for(Path::new(&f)).map(|_| f)
                }
            })
            .filter(|name| !name.starts_with('.'))
            .collect();
        names.sort();
        names.dedup();
        let mut failed = 0;
        for name in names {
            if let Ok((file, app)) = self.group_file(mount, name.as_bytes())
                && let Err(Unavailable::Broken) = self.plugin(mount, &file, Some(&app))
            {
                failed += 1;
            }
        }
        failed
    }

    /// The plugin for `file` on alias `mount` if it is loaded already; never loads.
    pub(crate) fn loaded(&self, mount: usize, file: &Path) -> Option<Loaded> {
        let apps = &self.mounts[mount].apps;
        if apps.key.kind == AliasKind::App {
            return apps.single.read().unwrap_or_else(PoisonError::into_inner).clone();
        }
        match apps.slots().get(file) {
            Some(Slot::Ready { loaded, .. }) => Some(loaded.clone()),
            _ => None,
        }
    }

    /// The plugins alias `mount` serves now: (file, plugin), sorted by file.
    pub(crate) fn loaded_plugins(&self, mount: usize) -> Vec<(PathBuf, Loaded)> {
        let mut out: Vec<(PathBuf, Loaded)> = self.mounts[mount]
            .apps
            .slots()
            .iter()
            .filter_map(|(file, slot)| match slot {
                Slot::Ready { loaded, .. } => Some((file.clone(), loaded.clone())),
                Slot::Failed { .. } => None,
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// The plugin file serving `name` in directory group `mount` (see
    /// [`resolve_group_file`]), remembered while the group's folder is unchanged.
    pub(crate) fn group_file(&self, mount: usize, name: &[u8]) -> GroupFile {
        use std::os::unix::fs::MetadataExt;
        let m = &self.mounts[mount];
        let Some(dir) = &m.group_dir else {
            return Err(GroupMiss::NotFound(format!(
                "the folder {} cannot be opened",
                m.alias.path.display()
            )));
        };
        let stamp = std::fs::metadata(dir).ok().map(|d| (d.ino(), d.mtime(), d.mtime_nsec()));
        {
            let cache = m.apps.groups.read().unwrap_or_else(PoisonError::into_inner);
            if stamp.is_some()
                && cache.stamp == stamp
                && let Some(found) = cache.entries.get(name)
            {
                return found.clone();
            }
        }
        let found = resolve_group_file(dir, name)
            .map(|file| (Arc::from(file), Arc::from(String::from_utf8_lossy(name).as_ref())));
        let mut cache = m.apps.groups.write().unwrap_or_else(PoisonError::into_inner);
        if cache.stamp != stamp || cache.entries.len() >= GROUP_CACHE_MAX {
            cache.entries.clear();
            cache.stamp = stamp;
        }
        if stamp.is_some() {
            cache.entries.insert(name.into(), found.clone());
        }
        found
    }

    /// The loaded plugin for `file` on alias `mount`, loading it if needed. `group_name` is
    /// the plugin NAME for a directory group. Call from a pool thread: loading runs app code.
    pub(crate) fn plugin(
        &self,
        mount: usize,
        file: &Path,
        group_name: Option<&str>,
    ) -> Result<Loaded, Unavailable> {
        if let Some(l) = self.loaded(mount, file) {
            return Ok(l);
        }
        let m = &self.mounts[mount];
        let _loading = m.apps.load_lock.lock().unwrap_or_else(PoisonError::into_inner);
        let source = self.source(m, file);
        let id = FileId::of(&source.plugin);
        if let Some(slot) = m.apps.slots().get(file) {
            match slot {
                Slot::Ready { loaded, .. } => return Ok(loaded.clone()),
                Slot::Failed { id: failed_id, error }
                    if failed_id.is_some() && *failed_id == id =>
                {
                    return Err(Unavailable::Broken);
                }
                Slot::Failed { .. } => {}
            }
        }
        let missing = if source.handler && FileId::of(file).is_none() {
            Some(format!("script {} does not exist", file.display()))
        } else if id.is_none() && source.handler {
            Some(format!(
                "the handler plugin {} (serving {}) does not exist",
                source.plugin.display(),
                file.display()
            ))
        } else if id.is_none() {
            Some(format!("plugin file {} does not exist", file.display()))
        } else {
            None
        };
        if let Some(why) = missing {
            if group_name.is_none() {
                self.warn_missing(m, &why);
            }
            return Err(Unavailable::Missing);
        }
        let app: Arc<str> = Arc::from(group_name.unwrap_or_else(|| alias_app_name(&m.alias.url)));
        let (slot, result) = match self.open(m, file, &app, None) {
            Opened::Ready { loaded, id, sha256 } => {
                m.apps.set_single(Some(loaded.clone()));
                let ok = Ok(loaded.clone());
                (Slot::Ready { loaded, id, sha256, rejected: None, refusal: None }, ok)
            }
            Opened::Failed { id, error } => {
                // A failure retried on every request (a trust check) is logged once.
                let text = error.to_string();
                let repeated = matches!(
                    m.apps.slots().get(file),
                    Some(Slot::Failed { error: old, .. }) if old.to_string() == text
                );
                if !repeated {
                    let answers = if group_name.is_some() { 404 } else { 500 };
                    log::error!(
                        "{}: refused plugin: {text}; it answers {answers} until fixed",
                        instance_alias(m, group_name)
                    );
                }
                let error = Arc::new(error);
                (Slot::Failed { id, error: Arc::clone(&error) }, Err(Unavailable::Broken))
            }
            // Not reachable without a digest to compare with; treat as missing to be safe.
            Opened::Same(_) => {
                return Err(Unavailable::Missing);
            }
        };
        m.apps.slots_mut().insert(file.to_owned(), slot);
        result
    }

    /// What serves `file` on alias `m`: the file, or its handler's plugin.
    fn source(&self, m: &Mount, file: &Path) -> Source {
        match self.config.handler_for(file) {
            Some(h) => {
                let mut env = init_env(h, &m.alias, &self.config);
                env.push(("gatehouse.script".to_owned(), file.display().to_string()));
                Source { plugin: h.plugin.clone(), env, handler: true }
            }
            None => Source { plugin: file.to_owned(), env: m.alias.env.clone(), handler: false },
        }
    }

    /// Stages and loads what serves `file` (see [`Host::source`]) for alias `m` as app
    /// `app`; when `unless` is the digest of the plugin's bytes, loads nothing and answers
    /// [`Opened::Same`].
    fn open(&self, m: &Mount, file: &Path, app: &Arc<str>, unless: Option<Digest256>) -> Opened {
        let group_name = (m.alias.kind == AliasKind::Group).then_some(&**app);
        let alias = instance_alias(m, group_name);
        let source = self.source(m, file);
        let script =
            if source.handler { format!(" (script {})", file.display()) } else { String::new() };
        // `sha256` pins what serves the alias's own file, not a hook's.
        let pinned = file == m.alias.path;
        let file = source.plugin.as_path();
        let args = InitArgs { alias: &alias, config_dir: &self.config.dir, env: &source.env };
        let policy = Policy {
            check: if m.alias.check_plugins { Check::Enforce } else { Check::Warn },
            owners: self.owners,
            sha256: m.alias.sha256.as_deref().filter(|_| pinned),
        };
        let staged = match &self.cache {
            Some(cache) => match cache.stage(file, &policy) {
                Ok(staged) => Some(staged),
                Err((error, id)) => {
                    let id = if matches!(error, StageError::Changing) { None } else { id };
                    return Opened::Failed {
                        id,
                        error: LoadError::Stage { path: file.to_owned(), error },
                    };
                }
            },
            None => None,
        };
        if let Some(s) = &staged
            && Some(s.sha256) == unless
        {
            return Opened::Same(s.id);
        }
        let (open, id, sha256) = match &staged {
            Some(s) => (s.copy.as_path(), Some(s.id), Some(s.sha256)),
            None => (file, FileId::of(file), None),
        };
        let Some(id) = id else {
            return Opened::Failed {
                id: None,
                error: LoadError::Stage {
                    path: file.to_owned(),
                    error: StageError::Read(std::io::ErrorKind::NotFound.into()),
                },
            };
        };
        match Plugin::load(open, file, &args, sha256) {
            Ok(plugin) => {
                log::info!(
                    "loaded {} for {alias}{script}: {}",
                    file.display(),
                    describe(&plugin, sha256)
                );
                crate::metrics::inc(&crate::metrics::GLOBAL.plugin_loads);
                let loaded = Loaded {
                    plugin: Arc::new(plugin),
                    debug: self.logs.for_app(app),
                    app: Arc::clone(app),
                    loaded_at: std::time::SystemTime::now(),
                    requests: Arc::new(AtomicU64::new(0)),
                    inline: Arc::default(),
                };
                Opened::Ready { loaded, id, sha256 }
            }
            Err(error) => {
                crate::metrics::inc(&crate::metrics::GLOBAL.plugin_load_failures);
                Opened::Failed { id: Some(id), error }
            }
        }
    }

    /// The folders whose changes can matter to this host's plugins: each group's folder,
    /// each single app's parent folder and, when any alias reloads, each handler plugin's.
    pub(crate) fn watched_dirs(&self) -> Vec<PathBuf> {
        let mut dirs: Vec<PathBuf> = Vec::new();
        let reloading = self.mounts.iter().filter(|m| m.alias.reloading);
        let handlers =
            self.config.handlers.iter().filter(|_| self.mounts.iter().any(|m| m.alias.reloading));
        let folders = reloading
            .map(|m| match m.alias.kind {
                AliasKind::Group => Some(m.alias.path.clone()),
                AliasKind::App => m.alias.path.parent().map(Path::to_path_buf),
            })
            .chain(handlers.map(|h| h.plugin.parent().map(Path::to_path_buf)));
        for dir in folders.flatten() {
            if !dirs.contains(&dir) {
                dirs.push(dir);
            }
        }
        dirs
    }

    /// How many plugin instances this host serves from.
    pub(crate) fn loaded_count(&self) -> usize {
        let mut seen: Vec<*const Apps> = Vec::new();
        let mut n = 0;
        for m in &self.mounts {
            if seen.contains(&Arc::as_ptr(&m.apps)) {
                continue;
            }
            seen.push(Arc::as_ptr(&m.apps));
            n += m.apps.slots().values().filter(|s| matches!(s, Slot::Ready { .. })).count();
        }
        n
    }

    fn warn_missing(&self, m: &Mount, why: &str) {
        let mut last = m.apps.last_missing_warn.lock().unwrap_or_else(PoisonError::into_inner);
        if last.is_none_or(|t| t.elapsed() >= MISSING_WARN_EVERY) {
            *last = Some(Instant::now());
            log::warn!("{}: {why}; answering 404 until it appears", m.alias.url);
        }
    }

    /// The debug log of app `app`.
    pub(crate) fn debug_log(&self, app: &str) -> Arc<DebugLog> {
        self.logs.for_app(app)
    }

    /// The daemon is stopping: worker processes that end are not replaced from now on.
    pub(crate) fn no_successors(&self) {
        for m in &self.mounts {
            if let Some(workers) = &m.workers {
                workers.no_successors();
            }
        }
    }

    /// Runs every loaded app's `shutdown` (at daemon stop); worker processes are stopped
    /// (each runs its apps' shutdown) within `timeout`, then killed.
    pub fn shutdown_within(&self, timeout: Duration) {
        for m in &self.mounts {
            if let Some(workers) = &m.workers {
                workers.stop_and_wait(timeout);
            }
        }
        self.shutdown(Instant::now() + timeout);
    }

    /// Runs every loaded app's `shutdown` (at daemon stop), each once its calls in flight
    /// have returned; an app still inside `handle` at `deadline` is not shut down (its
    /// instance must outlive that call), and the log says so.
    pub(crate) fn shutdown(&self, deadline: Instant) {
        for m in &self.mounts {
            for slot in m.apps.slots().values() {
                if let Slot::Ready { loaded, .. } = slot
                    && !loaded.plugin.shutdown_when_idle(deadline)
                {
                    log::warn!(
                        "{}: app {} still has {} call(s) inside handle past shutdown_timeout; \
                         its shutdown is not run (it would run beside them)",
                        m.alias.url,
                        loaded.app,
                        loaded.plugin.calls()
                    );
                }
            }
        }
    }
}

/// An alias's pool of `threads` (an isolated alias's stays unused: its requests are relayed
/// by tasks on the HTTP workers, its apps run on its workers' threads).
fn new_pool(alias: &Alias) -> Arc<Pool> {
    Arc::new(Pool::new(&alias.url, alias.threads, alias.limits.queue))
}

/// The alias URL an instance serves: the alias's, or for a group `URL/NAME`.
fn instance_alias(m: &Mount, group_name: Option<&str>) -> String {
    match group_name {
        // A `url_match` alias's instance is named by its match (its SCRIPT_NAME).
        Some(name) if m.alias.url_match.is_some() => name.to_owned(),
        Some(name) => format!("{}/{name}", m.alias.url.trim_end_matches('/')),
        None => m.alias.url.clone(),
    }
}

/// `app NAME VERSION (sha256 PREFIX)`: a build, told apart from another of the same version
/// by the digest of the bytes loaded (when it was staged).
fn describe(p: &Plugin, sha256: Option<Digest256>) -> String {
    let digest = sha256.map(|d| format!(" (sha256 {})", &d.to_string()[..16])).unwrap_or_default();
    let promise = if p.never_blocks() { ", promises its calls never block" } else { "" };
    format!("app {} {}{digest}{promise}", p.name(), p.version())
}
