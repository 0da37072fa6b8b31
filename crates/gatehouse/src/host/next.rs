//! What a configuration reload keeps: two aliases in two generations share their plugin
//! instances when their [`AppsKey`]s are equal, and their worker processes when their
//! [`WorkersKey`]s are; and the `init` settings of a handler's plugin ([`init_env`]).

use std::path::PathBuf;

use gatehouse_config::{Alias, AliasKind, Config, Dispatch, Handler, Isolation};

/// What makes two aliases (in two generations of the configuration) run the same plugin
/// instances: the same URL, kind, file or folder, `env` and folders given to `init`, the
/// same handlers (suffix, plugin, `init` settings) for the files it may serve, and the same
/// side of the process boundary (an alias that takes up `isolation: process` must leave no
/// instance in the daemon, where its code would still run on a plugin swap).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AppsKey {
    pub(super) url: String,
    pub(super) kind: AliasKind,
    pub(super) path: PathBuf,
    pub(super) env: Vec<(String, String)>,
    pub(super) config_dir: PathBuf,
    pub(super) logs_dir: PathBuf,
    pub(super) handlers: Vec<HandlerKey>,
    pub(super) isolated: bool,
}

/// What makes two aliases (in two generations of the configuration) run on the same worker
/// processes: their plugins' identity, and every setting a worker reads from its alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct WorkersKey {
    pub(super) apps: AppsKey,
    pub(super) isolation: Isolation,
    pub(super) threads: usize,
    pub(super) check_plugins: bool,
    sha256: Option<String>,
    pub(super) reloading: bool,
}

impl WorkersKey {
    pub(super) fn of(alias: &Alias, apps: &AppsKey) -> Option<WorkersKey> {
        matches!(alias.isolation, Isolation::Process(_)).then(|| WorkersKey {
            apps: apps.clone(),
            isolation: alias.isolation.clone(),
            threads: alias.threads,
            check_plugins: alias.check_plugins,
            sha256: alias.sha256.clone(),
            reloading: alias.reloading,
        })
    }
}

/// A handler as it matters to the instances it makes: suffix, plugin, `init` settings.
pub(super) type HandlerKey = (String, PathBuf, Vec<(String, String)>);

impl AppsKey {
    pub(super) fn of(alias: &Alias, config: &Config) -> AppsKey {
        let handlers: Vec<&Handler> = match alias.kind {
            AliasKind::App => config.handler_for(&alias.path).into_iter().collect(),
            AliasKind::Group => config.handlers.iter().collect(),
        };
        AppsKey {
            url: alias.url.clone(),
            kind: alias.kind,
            path: alias.path.clone(),
            env: alias.env.clone(),
            config_dir: config.dir.clone(),
            logs_dir: config.logs_dir.clone(),
            handlers: handlers
                .into_iter()
                .map(|h: &Handler| (h.suffix.clone(), h.plugin.clone(), init_env(h, alias, config)))
                .collect(),
            isolated: matches!(alias.isolation, Isolation::Process(_)),
        }
    }
}

/// The settings a handler plugin's `init` gets for a file of `alias`: the handler's `env`,
/// then the alias's (an alias entry replaces the handler's of the same name), then what the
/// daemon knows and the plugin cannot: `python_home` (the process's one), `python_path`
/// (the handler's folders, then the alias's, joined with `:`), `gatehouse.threads` (how many
/// requests may call it at once: the pool's size, or 0 for `dispatch: inline`, where any
/// HTTP worker may), `gatehouse.processes` (how many processes run it: `processes` with
/// `isolation: process`, else 1), `gatehouse.reloading` (`on`/`off`: the alias's `reloading`, which
/// for a script means mod_wsgi's WSGIScriptReloading) and `gatehouse.check_plugins` (`on`/`off`:
/// whether the plugin refuses a script that fails the trust rules, as the daemon refuses a
/// plugin).
pub(crate) fn init_env(handler: &Handler, alias: &Alias, config: &Config) -> Vec<(String, String)> {
    let mut env = handler.env.clone();
    let mut set = |name: &str, value: String| match env.iter_mut().find(|(k, _)| k == name) {
        Some(entry) => entry.1 = value,
        None => env.push((name.to_owned(), value)),
    };
    for (name, value) in &alias.env {
        set(name, value.clone());
    }
    if let Some(home) = &config.python_home {
        set("python_home", home.display().to_string());
    }
    let path: Vec<String> = handler
        .python_path
        .iter()
        .chain(&alias.python_path)
        .map(|p| p.display().to_string())
        .collect();
    if !path.is_empty() {
        set("python_path", path.join(":"));
    }
    let threads = match alias.dispatch {
        Dispatch::Auto | Dispatch::Pool => alias.threads,
        Dispatch::Inline => 0,
    };
    set("gatehouse.threads", threads.to_string());
    let processes = match &alias.isolation {
        Isolation::Process(p) => p.processes,
        Isolation::InProcess => 1,
    };
    set("gatehouse.processes", processes.to_string());
    if let Isolation::Process(p) = &alias.isolation
        && let Some(t) = p.deadlock_timeout
    {
        set("gatehouse.deadlock_timeout_ms", t.as_millis().to_string());
    }
    set("gatehouse.reloading", if alias.reloading { "on" } else { "off" }.to_owned());
    set("gatehouse.check_plugins", if alias.check_plugins { "on" } else { "off" }.to_owned());
    env
}
