//! Live reload: the current [`Host`] behind an atomic pointer, and the reloader thread that
//! replaces it when `hosting.yaml` changes and swaps plugins whose files change.
//!
//! Triggers: SIGHUP and `gatehouse reload` (explicit: the configuration is always re-read),
//! file-system events from `notify` on the configuration's folder and on every plugin folder
//! (hints: the configuration is re-read only if its bytes changed), and a poll every second
//! that looks at the same files by identity, so a lost event costs at most a second.
//! Events are debounced ([`QUIET`]) so a file being written is looked at once it settles.
//!
//! A new configuration is validated in full first; an invalid one is logged with
//! `FILE:LINE:COLUMN` and the running one stays. A valid one becomes the next `Host` (see
//! [`Host::next`]: unchanged aliases keep their plugins), whose new single apps are loaded
//! before it is published with one atomic store: a request sees the old host or the new one,
//! never a mix. Requests in flight keep the host they started with.
//!
//! Architecture Invariant: every reload and plugin swap happens on the one reloader thread,
//! so two reloads never race; request threads only ever load a host pointer.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use gatehouse_config::{Alias, AliasKind};
use notify::{RecursiveMode, Watcher};

use crate::host::{Host, Live};
use crate::http::Endpoint;
use crate::plugin::staging::FileId;

/// How long the watched files must be quiet before a burst of events is acted on.
pub(crate) const QUIET: Duration = Duration::from_millis(100);
/// The longest a burst of events can postpone acting on it.
const MAX_WAIT: Duration = Duration::from_millis(500);
/// How often the files are looked at without an event.
pub(crate) const POLL: Duration = Duration::from_secs(1);

/// What the reloader is asked to do.
#[derive(Debug)]
pub enum Trigger {
    /// Re-read the configuration now (SIGHUP, `gatehouse reload`), giving the reason.
    Config(&'static str),
    /// Files changed in a watched folder.
    Files(Vec<PathBuf>),
    /// Stop the reloader.
    Stop,
}

/// How the reloader was set up.
#[derive(Debug, Clone)]
pub struct Options {
    /// The configuration file.
    pub config_file: PathBuf,
    /// Listen addresses given on the command line, which win over the file's.
    pub listen_override: Vec<SocketAddr>,
}

/// The reloader thread.
#[derive(Debug)]
pub struct Reloader {
    tx: Sender<Trigger>,
    thread: Option<JoinHandle<()>>,
}

impl Reloader {
    /// Starts the reloader for `live`. `on_listen` is called with the new listen addresses
    /// when a reload changes them.
    pub fn start(
        live: Arc<Live>,
        options: Options,
        on_listen: impl Fn(Vec<Endpoint>) + Send + 'static,
    ) -> std::io::Result<Reloader> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let events = tx.clone();
        let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            let paths = match res {
                Ok(event) => event.paths,
                // An overflow or watcher error: look at everything.
                Err(_) => Vec::new(),
            };
            let _ = events.send(Trigger::Files(paths));
        });
        let watcher = match watcher {
            Ok(w) => Some(w),
            Err(e) => {
                log::warn!("cannot watch files ({e}); changes are noticed by polling every second");
                None
            }
        };
        let config_file = std::path::absolute(&options.config_file)?;
        let last_config = std::fs::read(&config_file).ok();
        let state = State {
            config_id: FileId::of(&config_file),
            config_file,
            last_config,
            listen_override: options.listen_override,
            live,
            watcher,
            watched: Vec::new(),
            plugin_dirs: Vec::new(),
            on_listen: Box::new(on_listen),
        };
        let thread =
            std::thread::Builder::new().name("reloader".into()).spawn(move || state.run(&rx))?;
        Ok(Reloader { tx, thread: Some(thread) })
    }

    /// A sender of triggers (for the signal handler and others).
    pub fn trigger(&self) -> Sender<Trigger> {
        self.tx.clone()
    }

    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        let _ = self.tx.send(Trigger::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct State {
    config_file: PathBuf,
    config_id: Option<FileId>,
    /// The bytes of the configuration last read (applied or refused).
    last_config: Option<Vec<u8>>,
    listen_override: Vec<SocketAddr>,
    live: Arc<Live>,
    watcher: Option<notify::RecommendedWatcher>,
    watched: Vec<PathBuf>,
    /// The folders holding plugin files (watched or not).
    plugin_dirs: Vec<PathBuf>,
    on_listen: Box<dyn Fn(Vec<Endpoint>) + Send>,
}

impl State {
    fn run(mut self, rx: &Receiver<Trigger>) {
        self.update_watches();
        // A burst of file events being waited out: (first, last) event times and whether
        // the configuration file was among them.
        let mut pending: Option<(Instant, Instant, bool)> = None;
        let mut next_poll = Instant::now() + POLL;
        loop {
            let now = Instant::now();
            let wake = match pending {
                Some((first, last, _)) => (last + QUIET).min(first + MAX_WAIT),
                None => next_poll,
            };
            match rx.recv_timeout(wake.saturating_duration_since(now)) {
                Ok(Trigger::Stop) | Err(RecvTimeoutError::Disconnected) => return,
                Ok(Trigger::Config(why)) => {
                    self.reload_config(why, true);
                    // An explicit reload also restarts the workers that run scripts, whose
                    // imported modules would otherwise stay as first imported.
                    self.live.host().recycle_script_workers();
                    self.live.host().refresh();
                }
                Ok(Trigger::Files(paths)) => {
                    let config = paths.is_empty() || paths.iter().any(|p| self.is_config(p));
                    let plugins = paths.is_empty()
                        || paths.iter().any(|p| {
                            p.parent().is_some_and(|dir| self.plugin_dirs.iter().any(|d| d == dir))
                        });
                    if !config && !plugins {
                        continue; // another file in the configuration's folder
                    }
                    let now = Instant::now();
                    pending = Some(match pending {
                        Some((first, _, c)) => (first, now, c || config),
                        None => (now, now, config),
                    });
                }
                Err(RecvTimeoutError::Timeout) => {
                    if let Some((_, _, config)) = pending.take() {
                        if config {
                            self.reload_config("the file changed", false);
                        }
                        self.live.host().refresh();
                    } else {
                        // The poll: the same checks, by file identity.
                        let id = FileId::of(&self.config_file);
                        if id != self.config_id {
                            self.reload_config("the file changed", false);
                        }
                        self.live.host().refresh();
                        next_poll = Instant::now() + POLL;
                    }
                }
            }
        }
    }

    /// Whether an event on `path` may have changed the configuration file: the file itself,
    /// or, beside it, a Kubernetes ConfigMap volume's `..data` link (renamed over to swap
    /// every file of the volume at once) or its timestamped folders.
    fn is_config(&self, path: &Path) -> bool {
        path.parent() == self.config_file.parent()
            && (path.file_name() == self.config_file.file_name()
                || path.file_name().is_some_and(|n| n.as_encoded_bytes().starts_with(b"..")))
    }

    /// Re-reads the configuration; applies it if it is valid and (unless `always`) changed.
    /// systemd hears `RELOADING=1` before and `READY=1` after, whatever the outcome.
    fn reload_config(&mut self, why: &str, always: bool) {
        let mut notified = false;
        let outcome = self.reload_config_inner(why, always, &mut notified);
        if notified {
            let g = &crate::metrics::GLOBAL;
            crate::metrics::inc(if outcome.is_ok() { &g.reloads } else { &g.reload_failures });
            let host = self.live.host();
            let status = match outcome {
                Ok(()) => status_line(&host),
                Err(()) => {
                    format!("{}; the last edit was refused (see the log)", status_line(&host))
                }
            };
            crate::systemd::notify(&format!("READY=1\nSTATUS={status}"));
        }
    }

    fn reload_config_inner(
        &mut self,
        why: &str,
        always: bool,
        notified: &mut bool,
    ) -> Result<(), ()> {
        self.config_id = FileId::of(&self.config_file);
        let file = self.config_file.display();
        let bytes = match std::fs::read(&self.config_file) {
            Ok(b) => b,
            Err(e) => {
                // Mid-rename, or removed: keep running; the next change is looked at again.
                log::warn!("{file}: cannot read ({e}); the running configuration stays");
                return Err(());
            }
        };
        if !always && self.last_config.as_deref() == Some(&bytes[..]) {
            return Ok(());
        }
        crate::systemd::reloading();
        *notified = true;
        self.last_config = Some(bytes);
        let Some(bytes) = self.last_config.as_deref() else { return Err(()) };
        let started = Instant::now();
        let mut config = match gatehouse_config::parse_bytes(bytes, &self.config_file) {
            Ok(loaded) => {
                for w in &loaded.warnings {
                    log::warn!("{w}");
                }
                loaded.config
            }
            Err(e) => {
                log::error!(
                    "configuration not applied ({why}), the running one stays; fix the file \
                     and save it again (or `gatehouse check --config {file}`):\n{e}"
                );
                return Err(());
            }
        };
        if !self.listen_override.is_empty() {
            config.listen.clone_from(&self.listen_override);
        }
        let old = self.live.host();
        if config.cache_dir != old.config.cache_dir || config.pid_file != old.config.pid_file {
            log::warn!("{file}: `cache_dir` and `pid_file` changes take effect at the next start");
        }
        // The certificates are read before anything is switched: one that cannot be used
        // refuses the whole configuration, and the running ones stay.
        let certs = match crate::tls::load(&config) {
            Ok(certs) => certs,
            Err(problems) => {
                let list: Vec<String> = problems.iter().map(|p| format!("error: {p}")).collect();
                log::error!(
                    "configuration not applied ({why}), the running one stays (with its \
                     certificates): a TLS certificate cannot be used:\n{}",
                    list.join("\n")
                );
                return Err(());
            }
        };
        if config.metrics != old.config.metrics {
            log::warn!("{file}: a `metrics` change takes effect at the next start");
        }
        // The log folders are checked (and the log settings switched) first: a configuration
        // whose logs cannot be written is refused like an invalid one.
        if let Err(problems) = crate::logs::apply(&config) {
            let list: Vec<String> = problems.iter().map(|p| format!("error: {p}")).collect();
            log::error!(
                "configuration not applied ({why}), the running one stays: its logs cannot be \
                 written:\n{}",
                list.join("\n")
            );
            return Err(());
        }
        let listen = crate::http::endpoints(&config);
        let listen_changed = listen != crate::http::endpoints(&old.config);
        let new = old.next(config);
        new.load_single_apps();
        let summary = summarize(&old, &new);
        self.live.certs().store(certs);
        self.live.store(Arc::new(new));
        log::info!(
            "configuration reloaded ({why}) in {} ms: {summary}",
            started.elapsed().as_millis()
        );
        if listen_changed {
            (self.on_listen)(listen);
        }
        self.update_watches();
        Ok(())
    }

    /// Watches the configuration's folder and every plugin folder of the current host.
    fn update_watches(&mut self) {
        self.plugin_dirs = self.live.host().watched_dirs();
        let Some(watcher) = self.watcher.as_mut() else { return };
        let mut want = self.plugin_dirs.clone();
        if let Some(dir) = self.config_file.parent() {
            want.push(dir.to_path_buf());
        }
        want.sort();
        want.dedup();
        for dir in self.watched.iter().filter(|d| !want.contains(d)) {
            let _ = watcher.unwatch(dir);
        }
        let mut watched = Vec::new();
        for dir in want {
            if self.watched.contains(&dir) {
                watched.push(dir);
                continue;
            }
            match watcher.watch(&dir, RecursiveMode::NonRecursive) {
                Ok(()) => watched.push(dir),
                Err(e) => log::debug!("not watching {} ({e}); polled instead", dir.display()),
            }
        }
        self.watched = watched;
    }
}

/// The settings (`hosting.yaml` keys) of an alias that differ between `old` and `new`, for
/// an alias whose plugins were kept. Its place in the file is not a setting.
fn changed_settings(old: &Alias, new: &Alias) -> Vec<&'static str> {
    let mut keys = Vec::new();
    macro_rules! compare {
        ($($field:ident),*) => {$(
            if old.$field != new.$field {
                keys.push(stringify!($field));
            }
        )*};
    }
    compare!(
        develop_mode,
        env,
        max_body,
        max_upload,
        pass_authorization,
        threads,
        dispatch,
        reloading,
        preload,
        check_plugins,
        sha256,
        python_path,
        isolation
    );
    let (was, now) = (&old.limits, &new.limits);
    macro_rules! compare_limits {
        ($($field:ident),*) => {$(
            if was.$field != now.$field {
                keys.push(stringify!($field));
            }
        )*};
    }
    compare_limits!(
        max_headers,
        max_header_size,
        timeout,
        body_timeout,
        body_min_rate,
        body_timeout_max,
        queue
    );
    if old.trailing_slash != new.trailing_slash || old.path_as_written != new.path_as_written {
        keys.push("url/path as written");
    }
    // A field not named above (one added later) still counts.
    if keys.is_empty() && (Alias { pos: new.pos, ..old.clone() }) != *new {
        keys.push("settings");
    }
    keys
}

/// What the daemon serves, for systemd's STATUS= line.
pub fn status_line(host: &Host) -> String {
    let groups = host.mounts.iter().filter(|m| m.alias.kind == AliasKind::Group).count();
    format!(
        "serving {} aliases ({groups} groups), {} plugins loaded",
        host.mounts.len(),
        host.loaded_count()
    )
}

/// What a reload changed, for the log: aliases unchanged (same settings, same plugins),
/// added, changed (same URL: `URL: reloaded` when its plugins were loaded again, else the
/// settings that changed) and removed.
fn summarize(old: &Host, new: &Host) -> String {
    let (mut kept, mut added, mut changed) = (0, Vec::new(), Vec::new());
    for (i, m) in new.mounts.iter().enumerate() {
        let before = old.mounts.iter().position(|o| o.alias.url == m.alias.url);
        match before {
            Some(j) if new.shares_apps(i, old, j) => {
                let settings = changed_settings(&old.mounts[j].alias, &m.alias);
                if settings.is_empty() {
                    kept += 1;
                } else {
                    changed.push(format!("{}: {}", m.alias.url, settings.join(" ")));
                }
            }
            Some(_) => changed.push(format!("{}: reloaded", m.alias.url)),
            None => added.push(m.alias.url.clone()),
        }
    }
    let changed: Vec<&str> = changed.iter().map(String::as_str).collect();
    let added: Vec<&str> = added.iter().map(String::as_str).collect();
    let removed: Vec<&str> = old
        .mounts
        .iter()
        .filter(|o| !new.mounts.iter().any(|m| m.alias.url == o.alias.url))
        .map(|o| o.alias.url.as_str())
        .collect();
    let list =
        |v: &[&str]| if v.is_empty() { String::new() } else { format!(" ({})", v.join(", ")) };
    let groups = new.mounts.iter().filter(|m| m.alias.kind == AliasKind::Group).count();
    format!(
        "{} aliases ({groups} groups): {kept} unchanged, {} added{}, {} changed{}, {} removed{}",
        new.mounts.len(),
        added.len(),
        list(&added),
        changed.len(),
        list(&changed),
        removed.len(),
        list(&removed)
    )
}
