//! The WSGI bridge: a Gatehouse handler plugin that runs Python WSGI apps (PEP 3333) by
//! embedding CPython, the way mod_wsgi runs them inside Apache.
//!
//! Served through a handler (`handlers: [{suffix: .py, plugin: .../libwsgi.so}]`), the
//! daemon makes one instance of this plugin per script file and calls it with
//! `SCRIPT_FILENAME` set to the script. The instance loads the script once as its own module
//! (re-imported when the file changes, as WSGIScriptReloading does), calls its `application`
//! (or the `callable` setting) with a PEP 3333 environ, and streams what it returns.
//!
//! - `abi`: the only `unsafe`: entry points, the host callbacks as a safe [`abi::Call`],
//!   libpython made global, the interpreter started from a `PyConfig`.
//! - `interp`: the one interpreter per process, `python_home`, `python_path`, helpers.
//! - `objects`: `start_response`, `write`, `wsgi.input`, `wsgi.errors`.
//! - `bridge`: one request: the environ, the call, the body, `close()`, errors.
//! - `hooks`: `allow_access(environ, host)` and `check_password(environ, user, password)` of
//!   a script named as an alias's `access_script` / `auth_user_script`, as mod_wsgi's
//!   `WSGIAccessScript` and `WSGIAuthUserScript` call them.
//!
//! Settings (the `init` env: the handler's `env`, then the alias's, then the daemon's):
//! `callable` (default `application`), `python_home`, `python_path` (`:`-separated),
//! `gatehouse.threads` (for `wsgi.multithread`), `gatehouse.processes` (for
//! `wsgi.multiprocess`: more than 1 with `isolation: process`), `gatehouse.reloading`
//! (`off`: a changed script is not re-imported) and `gatehouse.check_plugins` (`off`: a
//! script that fails the trust rules runs, with a warning, instead of being refused).
//! `gatehouse.script` names the script the instance serves (the file a hook call runs).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};

use pyo3::prelude::*;

mod abi;
mod bridge;
mod hooks;
mod interp;
mod objects;
mod websocket;

pub use abi::gatehouse_app;

/// The callable looked up in a script when `callable` is not set (WSGICallableObject's
/// default).
const DEFAULT_CALLABLE: &str = "application";

/// One instance: the scripts it has loaded and the settings it was given.
#[derive(Debug)]
pub(crate) struct Instance {
    /// The alias it serves, for messages.
    alias: String,
    /// The name of the WSGI callable in a script.
    callable: String,
    /// Whether a changed script is re-imported.
    reloading: bool,
    /// `wsgi.multithread`: whether several requests may run the app at once.
    multithread: bool,
    /// `wsgi.multiprocess`: whether other processes run the same app.
    multiprocess: bool,
    /// Loaded scripts by path. Locked only briefly, never around Python code.
    scripts: Mutex<HashMap<PathBuf, Arc<Script>>>,
    /// Only one thread imports at a time (a script's top level runs once).
    importing: Gate,
    /// Whether a script that fails the trust rules is refused (`check_plugins`), or run with
    /// a warning.
    check_scripts: bool,
    /// Whose scripts may run: root's and this process's effective user's.
    owners: gatehouse_trust::Owners,
    /// The last trust failure logged per script, so each is logged once.
    refusals: Mutex<HashMap<PathBuf, String>>,
    /// The script this instance was made for (`gatehouse.script`), which an access or
    /// authentication hook call runs (an app call runs `SCRIPT_FILENAME`).
    script: Option<PathBuf>,
}

/// A loaded script: the file's identity when it was loaded, its module, and its WSGI
/// callable (a hook script may have none).
#[derive(Debug)]
pub(crate) struct Script {
    stamp: Stamp,
    module: Py<PyAny>,
    callable: Option<Py<PyAny>>,
}

/// A file's identity and version: (device, inode, size, mtime seconds, mtime nanoseconds).
pub(crate) type Stamp = (u64, u64, u64, i64, i64);

pub(crate) fn stamp(path: &Path) -> std::io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok((m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}

/// A lock taken with the GIL released, so that a thread waiting for it never blocks the
/// one holding it (which needs the GIL to finish).
#[derive(Debug, Default)]
pub(crate) struct Gate {
    busy: Mutex<bool>,
    free: Condvar,
}

/// Holding the [`Gate`].
#[derive(Debug)]
pub(crate) struct Entered<'a>(&'a Gate);

impl Gate {
    pub(crate) fn enter(&self, py: Python<'_>) -> Entered<'_> {
        py.detach(|| {
            let mut busy = self.busy.lock().unwrap_or_else(PoisonError::into_inner);
            while *busy {
                busy = self.free.wait(busy).unwrap_or_else(PoisonError::into_inner);
            }
            *busy = true;
        });
        Entered(self)
    }
}

impl Drop for Entered<'_> {
    fn drop(&mut self) {
        *self.0.busy.lock().unwrap_or_else(PoisonError::into_inner) = false;
        self.0.free.notify_one();
    }
}

impl Instance {
    /// Reads the settings, starts (or joins) the interpreter.
    pub(crate) fn new(args: &abi::InitArgs) -> Result<Instance, String> {
        let get = |key: &str| args.env.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v);
        let callable = get("callable").map_or(DEFAULT_CALLABLE, String::as_str);
        if callable.is_empty() || callable.contains(|c: char| c.is_whitespace()) {
            return Err(format!("callable {callable:?} is not a name (hint: `callable: app`)"));
        }
        let dir = Path::new(&args.config_dir);
        let python_home = get("python_home").map(|h| dir.join(h));
        let python_path: Vec<PathBuf> = get("python_path")
            .map(|p| p.split(':').filter(|s| !s.is_empty()).map(|s| dir.join(s)).collect())
            .unwrap_or_default();
        let threads: usize = get("gatehouse.threads").and_then(|t| t.parse().ok()).unwrap_or(0);
        let processes: usize = get("gatehouse.processes").and_then(|t| t.parse().ok()).unwrap_or(1);
        let reloading = get("gatehouse.reloading").is_none_or(|r| r != "off");
        let check_scripts = get("gatehouse.check_plugins").is_none_or(|c| c != "off");
        interp::ensure(python_home.as_deref(), &python_path)
            .map_err(|e| format!("{}: {e}", args.alias))?;
        // Only in a worker process (the daemon sets it only for `isolation: process`).
        if let Some(ms) = get("gatehouse.deadlock_timeout_ms").and_then(|t| t.parse::<u64>().ok()) {
            interp::watch_deadlock(std::time::Duration::from_millis(ms), &args.alias);
        }
        Ok(Instance {
            alias: args.alias.clone(),
            callable: callable.to_owned(),
            reloading,
            // 0 is `dispatch: inline`: any HTTP worker may call at once.
            multithread: threads != 1,
            multiprocess: processes > 1,
            scripts: Mutex::new(HashMap::new()),
            importing: Gate::default(),
            check_scripts,
            owners: gatehouse_trust::Owners::current(),
            refusals: Mutex::new(HashMap::new()),
            script: get("gatehouse.script").map(PathBuf::from),
        })
    }

    /// Serves one request.
    pub(crate) fn handle(&self, call: &Arc<abi::Call>) -> gatehouse_abi::Status {
        bridge::handle(self, call)
    }

    /// Lets go of the loaded scripts (their objects are released with the GIL held).
    pub(crate) fn shutdown(self) {
        let scripts =
            std::mem::take(&mut *self.scripts.lock().unwrap_or_else(PoisonError::into_inner));
        let _ = Python::try_attach(move |_py| drop(scripts));
    }
}
