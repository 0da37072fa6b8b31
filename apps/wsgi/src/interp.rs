//! The interpreter: one per process, started by the first instance, shared by every
//! instance after it (of this build of the bridge or of any other: a reloaded bridge is a
//! new mapping with fresh statics, but libpython is loaded once, so the interpreter and
//! what it records in `sys` carry over).
//!
//! - libpython's symbols are made global first (see [`abi::make_libpython_global`]).
//! - Without `python_home` the interpreter starts as the Python the bridge was built
//!   against would (`sys.executable` that Python, its prefix and standard library). With a
//!   virtualenv as `python_home` (a folder with `pyvenv.cfg`) it starts as that
//!   virtualenv's `bin/python3`, so the virtualenv's site-packages are on `sys.path`
//!   exactly as when running its Python; any other `python_home` is the prefix (`home`).
//! - The `python_home` it started with is kept in `sys._gatehouse_python_home`; an instance
//!   that asks for another one is refused (one interpreter: restart to change it).
//! - `python_path` folders are added with `site.addsitedir` (so `.pth` files work), once
//!   each, for the whole process.
//! - `sys.stdout` and `sys.stderr` are each a `RequestStderr` (see [`HELPERS`]): on a
//!   thread serving a request, lines go to its `wsgi.errors`, tagged with the app and
//!   request, as under mod_wsgi 4 (what is printed at level INFO, sys.stderr at ERROR);
//!   elsewhere to the process's stderr, which the daemon logs. The daemon's stdout stays
//!   its own.

use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock, PoisonError};

use pyo3::prelude::*;
use pyo3::types::{PyList, PyModule};

use crate::abi;

/// Serialises starting the interpreter and changing `sys.path` between instances.
static START: Mutex<()> = Mutex::new(());

/// The Python version the bridge was built against (`3.11`).
pub(crate) const PYTHON_VERSION: &str = env!("WSGI_PYTHON_VERSION");

/// Python-side helpers, easier to read in Python than as C-API calls: loading a script as
/// its own module, `wsgi.file_wrapper`, and traceback formatting.
const HELPERS: &CStr = c"
import os, sys, threading, types, traceback

class RequestStderr:
    '''sys.stdout and sys.stderr: on a thread serving a request, what is written goes to that
    request's wsgi.errors (error log lines tagged with the app and the request, as under
    mod_wsgi 4; sys.stdout's at level INFO, sys.stderr's at ERROR); on any other thread, to
    the stream it replaces (the process's stderr, which the daemon logs). Everything else
    (encoding, fileno, isatty) is that stream's.'''

    def __init__(self, stream, current, info=False):
        self._stream = stream
        self._current = current
        self._info = info
        # Off a request's thread, whole lines only, each in one write: print() writes its
        # text and its newline apart, and the daemon's own lines go to the same file.
        self._pending = ''
        self._lock = threading.Lock()

    def write(self, text):
        errors = getattr(self._current, 'errors', None)
        if errors is None:
            with self._lock:
                self._pending += text
                cut = self._pending.rfind('\\n') + 1
                done, self._pending = self._pending[:cut], self._pending[cut:]
                if done:
                    self._stream.write(done)
                    self._stream.flush()
            return len(text)
        if self._info:
            return getattr(errors, 'write_info', errors.write)(text)
        return errors.write(text)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        errors = getattr(self._current, 'errors', None)
        if errors is not None:
            errors.flush()
        with self._lock:
            done, self._pending = self._pending, ''
            if done:
                self._stream.write(done)
        self._stream.flush()

    def __getattr__(self, name):
        return getattr(self._stream, name)


class FileWrapper:
    '''wsgi.file_wrapper (PEP 3333): iterates a file-like object in blocks and closes it.'''

    def __init__(self, filelike, blksize=8192):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, 'close'):
            self.close = filelike.close

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration


def load_script(path, name, source):
    '''Runs `source`, the script at `path` (read by the bridge from the file it checked), as
    a fresh module `name`, registered in sys.modules while it runs (and after, if it
    succeeds), as mod_wsgi loads a WSGI script file.'''
    path = os.fsdecode(path)
    code = compile(source, path, 'exec', dont_inherit=True)
    module = types.ModuleType(name)
    module.__file__ = path
    previous = sys.modules.get(name)
    sys.modules[name] = module
    try:
        exec(code, module.__dict__)
    except BaseException:
        if previous is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = previous
        raise
    return module


def format_exception(etype, value, tb):
    return ''.join(traceback.format_exception(etype, value, tb))
";

/// The name in `sys` of the thread-local whose `errors` is the running request's
/// `wsgi.errors` (see `RequestStderr` in [`HELPERS`]).
const REQUEST_LOCAL: &str = "_gatehouse_request";

/// The interpreter's request thread-local (`sys._gatehouse_request`), looked up once per
/// build; `None` when the interpreter was started by a build of the bridge without one.
pub(crate) fn request_local(py: Python<'_>) -> Option<&Bound<'_, PyAny>> {
    static LOCAL: OnceLock<Option<Py<PyAny>>> = OnceLock::new();
    LOCAL
        .get_or_init(|| {
            py.import("sys").and_then(|s| s.getattr(REQUEST_LOCAL)).ok().map(Bound::unbind)
        })
        .as_ref()
        .map(|l| l.bind(py))
}

/// This build's helper module.
static HELPER_MODULE: OnceLock<Py<PyModule>> = OnceLock::new();

/// The helper module (see [`HELPERS`]).
pub(crate) fn helpers(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    if HELPER_MODULE.get().is_none() {
        let module = PyModule::from_code(py, HELPERS, c"<gatehouse wsgi>", c"_gatehouse_wsgi")?;
        let _ = HELPER_MODULE.set(module.unbind());
    }
    match HELPER_MODULE.get() {
        Some(m) => Ok(m.bind(py)),
        None => Err(pyo3::exceptions::PyRuntimeError::new_err("the helper module is missing")),
    }
}

/// Starts the interpreter if needed, checks `python_home` against the one it runs with,
/// and adds `python_path`. Errors are for the daemon's log (init refused).
pub(crate) fn ensure(python_home: Option<&Path>, python_path: &[PathBuf]) -> Result<(), String> {
    let _start = START.lock().unwrap_or_else(PoisonError::into_inner);
    abi::make_libpython_global()?;
    let program;
    let how = match python_home {
        Some(home) if home.join("pyvenv.cfg").is_file() => {
            program = venv_python(home)?;
            abi::Start::Program(&program)
        }
        Some(home) => abi::Start::Home(home),
        None => abi::Start::Program(Path::new(env!("WSGI_PYTHON_EXECUTABLE"))),
    };
    let started = abi::start_python(how)?;
    Python::attach(|py| setup(py, started, python_home, python_path)).map_err(|e| {
        Python::attach(|py| format!("setting up the interpreter failed: {}", describe(py, &e)))
    })?
}

fn setup(
    py: Python<'_>,
    started: bool,
    python_home: Option<&Path>,
    python_path: &[PathBuf],
) -> PyResult<Result<(), String>> {
    let sys = py.import("sys")?;
    let wanted = python_home.map(|p| p.display().to_string());
    if started {
        sys.setattr("_gatehouse_python_home", wanted.clone())?;
        // One per interpreter, kept in `sys` so that a later build of the bridge (a new
        // mapping, with its own helper module) finds the same one: see [`request_local`].
        let current = py.import("threading")?.getattr("local")?.call0()?;
        sys.setattr(REQUEST_LOCAL, &current)?;
        let stderr = sys.getattr("stderr")?;
        let (stream, printed) = if stderr.is_none() {
            (stderr.clone(), stderr)
        } else {
            let class = helpers(py)?.getattr("RequestStderr")?;
            (class.call1((&stderr, &current, false))?, class.call1((&stderr, &current, true))?)
        };
        sys.setattr("stderr", &stream)?;
        sys.setattr("stdout", &printed)?;
        sys.setattr("argv", vec!["gatehouse"])?;
    } else {
        let running: Option<String> = match sys.getattr("_gatehouse_python_home") {
            Ok(v) => v.extract()?,
            Err(_) => None,
        };
        if running != wanted {
            let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "(none)".to_owned());
            return Ok(Err(format!(
                "python_home {} differs from {}, which this process's Python interpreter started \
                 with: there is one interpreter per process, so changing python_home needs a \
                 restart of the daemon",
                show(&wanted),
                show(&running)
            )));
        }
    }
    let site = py.import("site")?;
    let path = sys.getattr("path")?.cast_into::<PyList>()?;
    for entry in python_path {
        let entry = entry.display().to_string();
        if !path.contains(&entry)? {
            site.call_method1("addsitedir", (entry,))?;
        }
    }
    helpers(py)?;
    Ok(Ok(()))
}

/// A virtualenv's Python, after checking that it is of the version the bridge embeds.
fn venv_python(home: &Path) -> Result<PathBuf, String> {
    let cfg = std::fs::read_to_string(home.join("pyvenv.cfg"))
        .map_err(|e| format!("cannot read {}: {e}", home.join("pyvenv.cfg").display()))?;
    let version = cfg.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        matches!(key.trim(), "version" | "version_info").then(|| value.trim().to_owned())
    });
    if let Some(v) = version {
        let major_minor: Vec<&str> = v.split('.').take(2).collect();
        if major_minor.join(".") != PYTHON_VERSION {
            return Err(format!(
                "python_home {} is a virtualenv of Python {v}, but the bridge embeds Python \
                 {PYTHON_VERSION} (hint: create it with `python{PYTHON_VERSION} -m venv {}`)",
                home.display(),
                home.display()
            ));
        }
    }
    ["bin/python3", "bin/python"]
        .iter()
        .map(|p| home.join(p))
        .find(|p| p.exists())
        .ok_or_else(|| format!("python_home {} has no bin/python3", home.display()))
}

/// An exception as text: its traceback when there is one.
pub(crate) fn describe(py: Python<'_>, e: &PyErr) -> String {
    let formatted = helpers(py).and_then(|h| {
        let args = (e.get_type(py), e.value(py), e.traceback(py));
        h.getattr("format_exception")?.call1(args)?.extract::<String>()
    });
    formatted.unwrap_or_else(|_| e.to_string())
}

/// Starts (once per process) the deadlock watch of `deadlock_timeout`, as mod_wsgi's: one
/// thread takes the GIL every tenth of `timeout` and notes when it got it; another ends the
/// process (abort: the daemon logs the crash and starts a new worker) when that note is
/// older than `timeout`: something holds the interpreter and gives it up to nobody (a C
/// extension blocking with the GIL held, a hung native call). Only worker processes run it.
pub(crate) fn watch_deadlock(timeout: std::time::Duration, alias: &str) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static STARTED: std::sync::Once = std::sync::Once::new();
    static LAST: AtomicU64 = AtomicU64::new(0);
    let alias = alias.to_owned();
    STARTED.call_once(move || {
        let epoch = std::time::Instant::now();
        let now = move || u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let tick = (timeout / 10).max(std::time::Duration::from_millis(10));
        LAST.store(now(), Ordering::Relaxed);
        let _ = std::thread::Builder::new().name("gil-probe".into()).spawn(move || {
            loop {
                std::thread::sleep(tick);
                Python::attach(|_py| LAST.store(now(), Ordering::Relaxed));
            }
        });
        let _ = std::thread::Builder::new().name("gil-watch".into()).spawn(move || {
            let limit = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
            loop {
                std::thread::sleep(tick);
                let held = now().saturating_sub(LAST.load(Ordering::Relaxed));
                if held > limit {
                    eprintln!(
                        "{alias}: the Python interpreter has been held for {held} ms, past its \
                         deadlock_timeout of {} ms: ending this worker process (the daemon starts \
                         another)",
                        limit
                    );
                    std::process::abort();
                }
            }
        });
    });
}
