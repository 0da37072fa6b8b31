//! The host: the running state built from one configuration — each alias's plugin slot(s),
//! thread pool and debug log — and the one request path through it, from a routed request to
//! the app's reply.
//!
//! Single-app plugins load at start (a missing file is retried on each request until it
//! appears); directory-group plugins load on their first request. A load failure is
//! remembered with the file's identity, so an unchanged broken file is not reopened on every
//! request and a replaced one is tried again.
//!
//! Architecture Invariant: app code (load, init, handle) only ever runs on an alias's pool
//! thread, never on an actix worker.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use gatehouse_config::{Alias, AliasKind, Config};

use crate::debug_log::{DebugLog, DebugLogs};
use crate::dispatch::Pool;
use crate::mounts::{GroupMiss, resolve_group_file};
use crate::plugins::{InitArgs, LoadError, Plugin};

/// How often a single app whose file is missing logs about it while requests arrive.
const MISSING_WARN_EVERY: Duration = Duration::from_secs(10);

/// A file's identity: a changed identity means a new file to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: i64,
    mtime_nsec: i64,
}

impl FileId {
    fn of(path: &Path) -> Option<FileId> {
        let m = std::fs::metadata(path).ok()?;
        Some(FileId {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: m.mtime(),
            mtime_nsec: m.mtime_nsec(),
        })
    }
}

/// A plugin ready to serve, with the debug log of its app.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The plugin.
    pub plugin: Arc<Plugin>,
    /// Its app's debug log.
    pub debug: Arc<DebugLog>,
    /// Its app's name for logs: the alias's last URL segment, or the group's plugin NAME.
    pub app: Arc<str>,
}

#[derive(Debug)]
enum Slot {
    Ready(Loaded),
    Failed { id: Option<FileId>, error: Arc<LoadError> },
}

/// Why an alias could not produce a plugin for a request.
#[derive(Debug, Clone)]
pub enum Unavailable {
    /// The file does not exist (404).
    Missing(String),
    /// The file exists but does not load (a group answers 404, a single app 500).
    Broken(Arc<LoadError>),
}

/// One alias's running state.
#[derive(Debug)]
pub struct Mount {
    /// The alias as configured.
    pub alias: Alias,
    /// Where its plugins run.
    pub pool: Pool,
    /// For a group: its folder, canonical (None if it could not be resolved).
    pub group_dir: Option<PathBuf>,
    /// For a single app: its file, shared with every request.
    pub app_file: Arc<Path>,
    /// For a single app: the loaded plugin, once loaded (the fast path).
    single: RwLock<Option<Loaded>>,
    slots: RwLock<HashMap<PathBuf, Slot>>,
    load_lock: Mutex<()>,
    last_missing_warn: Mutex<Option<Instant>>,
    groups: RwLock<GroupCache>,
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
pub type GroupFile = Result<(Arc<Path>, Arc<str>), GroupMiss>;

/// Most names a group remembers; past it the cache starts over (names are client input).
const GROUP_CACHE_MAX: usize = 4096;

/// Everything one configuration runs.
#[derive(Debug)]
pub struct Host {
    /// The configuration it was built from.
    pub config: Config,
    /// The router.
    pub table: crate::mounts::Table,
    /// Per alias, in declaration order.
    pub mounts: Vec<Mount>,
    logs: DebugLogs,
    next_request: AtomicU64,
}

/// The app name of a single-app alias: its URL's last segment (`/myapp` gives `myapp`),
/// `root` for `/`.
fn alias_app_name(url: &str) -> &str {
    match url.rsplit('/').next() {
        Some(s) if !s.is_empty() => s,
        _ => "root",
    }
}

impl Host {
    /// Builds the host for `config`, without loading anything yet.
    pub fn new(config: Config) -> Host {
        let table = crate::mounts::Table::from_config(&config);
        let mounts = config
            .aliases
            .iter()
            .map(|alias| Mount {
                pool: Pool::new(&alias.url, alias.threads),
                group_dir: match alias.kind {
                    AliasKind::Group => std::fs::canonicalize(&alias.path).ok(),
                    AliasKind::App => None,
                },
                app_file: Arc::from(alias.path.as_path()),
                alias: alias.clone(),
                single: RwLock::new(None),
                slots: RwLock::new(HashMap::new()),
                load_lock: Mutex::new(()),
                last_missing_warn: Mutex::new(None),
                groups: RwLock::new(GroupCache::default()),
            })
            .collect();
        let logs = DebugLogs::new(config.logs_dir.clone());
        Host { config, table, mounts, logs, next_request: AtomicU64::new(1) }
    }

    /// A fresh request id.
    pub fn request_id(&self) -> u64 {
        self.next_request.fetch_add(1, Ordering::Relaxed)
    }

    /// Loads every single-app plugin now, logging each outcome. Returns how many failed.
    pub fn load_single_apps(&self) -> usize {
        let mut failed = 0;
        for (i, m) in self.mounts.iter().enumerate() {
            if m.alias.kind != AliasKind::App {
                continue;
            }
            match self.plugin(i, &m.alias.path, None) {
                Ok(l) => log::info!(
                    "{} -> {} ({} {})",
                    m.alias.url,
                    m.alias.path.display(),
                    l.plugin.name(),
                    l.plugin.version()
                ),
                // `plugin` has already warned (rate-limited) about a missing file.
                Err(Unavailable::Missing(_)) => {}
                Err(Unavailable::Broken(e)) => {
                    failed += 1;
                    log::error!("{}: {e}; it answers 500 until fixed", m.alias.url);
                }
            }
        }
        failed
    }

    /// The plugin for `file` on alias `mount` if it is loaded already; never loads.
    pub fn loaded(&self, mount: usize, file: &Path) -> Option<Loaded> {
        let m = &self.mounts[mount];
        if m.alias.kind == AliasKind::App {
            return m.single.read().unwrap_or_else(PoisonError::into_inner).clone();
        }
        match m.slots.read().unwrap_or_else(PoisonError::into_inner).get(file) {
            Some(Slot::Ready(l)) => Some(l.clone()),
            _ => None,
        }
    }

    /// The plugin file serving `name` in directory group `mount` (see
    /// [`resolve_group_file`]), remembered while the group's folder is unchanged.
    pub fn group_file(&self, mount: usize, name: &[u8]) -> GroupFile {
        let m = &self.mounts[mount];
        let Some(dir) = &m.group_dir else {
            return Err(GroupMiss::NotFound(format!(
                "the folder {} cannot be opened",
                m.alias.path.display()
            )));
        };
        let stamp = std::fs::metadata(dir).ok().map(|d| (d.ino(), d.mtime(), d.mtime_nsec()));
        {
            let cache = m.groups.read().unwrap_or_else(PoisonError::into_inner);
            if stamp.is_some()
                && cache.stamp == stamp
                && let Some(found) = cache.entries.get(name)
            {
                return found.clone();
            }
        }
        let found = resolve_group_file(dir, name)
            .map(|file| (Arc::from(file), Arc::from(String::from_utf8_lossy(name).as_ref())));
        let mut cache = m.groups.write().unwrap_or_else(PoisonError::into_inner);
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
    pub fn plugin(
        &self,
        mount: usize,
        file: &Path,
        group_name: Option<&str>,
    ) -> Result<Loaded, Unavailable> {
        if let Some(l) = self.loaded(mount, file) {
            return Ok(l);
        }
        let m = &self.mounts[mount];
        let _loading = m.load_lock.lock().unwrap_or_else(PoisonError::into_inner);
        let id = FileId::of(file);
        if let Some(slot) = m.slots.read().unwrap_or_else(PoisonError::into_inner).get(file) {
            match slot {
                Slot::Ready(l) => return Ok(l.clone()),
                Slot::Failed { id: failed_id, error } if *failed_id == id => {
                    return Err(Unavailable::Broken(Arc::clone(error)));
                }
                Slot::Failed { .. } => {}
            }
        }
        if id.is_none() {
            let why = format!("plugin file {} does not exist", file.display());
            if group_name.is_none() {
                self.warn_missing(m, &why);
            }
            return Err(Unavailable::Missing(why));
        }
        let alias_url;
        let alias = match group_name {
            Some(name) => {
                alias_url = format!("{}/{name}", m.alias.url.trim_end_matches('/'));
                alias_url.as_str()
            }
            None => m.alias.url.as_str(),
        };
        let args = InitArgs { alias, config_dir: &self.config.dir, env: &m.alias.env };
        let slot = match Plugin::load(file, &args) {
            Ok(plugin) => {
                let app: Arc<str> =
                    Arc::from(group_name.unwrap_or_else(|| alias_app_name(&m.alias.url)));
                log::info!(
                    "loaded {} for {alias}: app {} {}",
                    file.display(),
                    plugin.name(),
                    plugin.version()
                );
                Slot::Ready(Loaded {
                    plugin: Arc::new(plugin),
                    debug: self.logs.for_app(&app),
                    app,
                })
            }
            Err(e) => {
                log::error!("{alias}: refused plugin: {e}");
                Slot::Failed { id, error: Arc::new(e) }
            }
        };
        let result = match &slot {
            Slot::Ready(l) => {
                if m.alias.kind == AliasKind::App {
                    *m.single.write().unwrap_or_else(PoisonError::into_inner) = Some(l.clone());
                }
                Ok(l.clone())
            }
            Slot::Failed { error, .. } => Err(Unavailable::Broken(Arc::clone(error))),
        };
        m.slots.write().unwrap_or_else(PoisonError::into_inner).insert(file.to_owned(), slot);
        result
    }

    fn warn_missing(&self, m: &Mount, why: &str) {
        let mut last = m.last_missing_warn.lock().unwrap_or_else(PoisonError::into_inner);
        if last.is_none_or(|t| t.elapsed() >= MISSING_WARN_EVERY) {
            *last = Some(Instant::now());
            log::warn!("{}: {why}; answering 404 until it appears", m.alias.url);
        }
    }

    /// Runs every loaded app's `shutdown` (at daemon stop).
    pub fn shutdown(&self) {
        for m in &self.mounts {
            let slots = m.slots.read().unwrap_or_else(PoisonError::into_inner);
            for slot in slots.values() {
                if let Slot::Ready(l) = slot {
                    l.plugin.shutdown();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::alias_app_name;

    #[test]
    fn app_names_from_alias_urls() {
        for (url, name) in [("/myapp", "myapp"), ("/a/b/sample", "sample"), ("/", "root")] {
            assert_eq!(alias_app_name(url), name);
        }
    }
}
