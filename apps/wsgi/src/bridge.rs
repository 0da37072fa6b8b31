//! One request through a WSGI app: find (load, or re-import) the script's callable, build
//! the environ, call the app, stream what it returns, always call `close()`, and turn
//! every failure into what mod_wsgi does: a traceback in the error log, and a 500 if the
//! response has not started (the connection cut if it has).
//!
//! Streaming: a list or tuple (the common `return [output]`) and `wsgi.file_wrapper` are
//! written piece after piece, so a one-piece reply goes out whole with its exact length;
//! any other iterable (a generator) may wait between pieces, so each piece is flushed to
//! the client as it is produced, as is every `write()` call.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, PoisonError};

use gatehouse_abi::Status;
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::abi::Call;
use crate::objects::{Errors, Input, Response, StartResponse, type_name};
use crate::{Instance, Script, interp, stamp};

/// Why a request did not reach the app.
pub(crate) enum Refused {
    /// Answer 404 (the script is gone, or has no such callable), having logged why.
    NotFound,
    /// Answer 500, having logged why.
    Failed,
    /// Answer 500 without a further log line: the script failed the trust rules, which is
    /// logged once, not on every request.
    Untrusted,
}

pub(crate) fn handle(inst: &Instance, call: &Arc<Call>) -> Status {
    let Some(script) = call.var(b"SCRIPT_FILENAME") else {
        call.log_error("no SCRIPT_FILENAME: serve .py files through a handler (`handlers:`)");
        return Status::ERROR;
    };
    let script = Path::new(OsStr::from_bytes(&script));
    crate::abi::keep_thread_state();
    Python::attach(|py| match inst.app(py, call, script) {
        Ok(app) => run(py, inst, call, script, app.bind(py)),
        Err(Refused::NotFound) => {
            let headers = [(b"Content-Type".to_vec(), b"text/plain; charset=utf-8".to_vec())];
            let _ = call.start_response(404, &headers);
            call.write(b"no such WSGI application\n")
        }
        Err(Refused::Failed) => Status::ERROR,
        Err(Refused::Untrusted) => {
            let headers = [(b"Content-Type".to_vec(), b"text/plain; charset=utf-8".to_vec())];
            let _ = call.start_response(500, &headers);
            call.write(b"this WSGI script is refused: see the error log\n")
        }
    })
}

impl Instance {
    /// The script's WSGI callable.
    fn app(&self, py: Python<'_>, call: &Call, script: &Path) -> Result<Py<PyAny>, Refused> {
        let loaded = self.script(py, call, script)?;
        match &loaded.callable {
            Some(app) => Ok(app.clone_ref(py)),
            None => {
                call.log_error(&format!(
                    "Target WSGI script '{}' does not contain WSGI application '{}' ({}: set \
                     `callable` in the handler's or alias's env if it has another name).",
                    script.display(),
                    self.callable,
                    self.alias
                ));
                Err(Refused::NotFound)
            }
        }
    }

    /// The script, loaded once and re-imported when the file changed (unless reloading is
    /// off).
    pub(crate) fn script(
        &self,
        py: Python<'_>,
        call: &Call,
        script: &Path,
    ) -> Result<Arc<Script>, Refused> {
        let now = match stamp(script) {
            Ok(s) => s,
            Err(e) => {
                call.log_error(&format!("WSGI script '{}' cannot be read: {e}", script.display()));
                return Err(if e.kind() == std::io::ErrorKind::NotFound {
                    Refused::NotFound
                } else {
                    Refused::Failed
                });
            }
        };
        let cached = |this: &Self| {
            let scripts = this.scripts.lock().unwrap_or_else(PoisonError::into_inner);
            scripts.get(script).filter(|s| s.stamp == now || !this.reloading).cloned()
        };
        if let Some(loaded) = cached(self) {
            return Ok(loaded);
        }
        let _importing = self.importing.enter(py);
        if let Some(loaded) = cached(self) {
            return Ok(loaded);
        }
        let source = self.read_trusted(py, call, script)?;
        let loaded = interp::helpers(py).and_then(|h| {
            let source = PyBytes::new(py, &source);
            h.getattr("load_script")?.call1((script, module_name(script), source))
        });
        let module = match loaded {
            Ok(m) => m,
            Err(e) => {
                call.log_error(&format!(
                    "Failed to exec Python script file '{}'.",
                    script.display()
                ));
                log_exception(py, call, script, &e);
                return Err(Refused::Failed);
            }
        };
        let callable = module.getattr(self.callable.as_str()).ok().map(Bound::unbind);
        let new = Arc::new(Script { stamp: now, module: module.unbind(), callable });
        let old = self
            .scripts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(script.to_owned(), Arc::clone(&new));
        // The old module's objects are released here, outside the lock.
        drop(old);
        Ok(new)
    }
}

impl Instance {
    /// The script's bytes, read from the file that passed the trust rules (see
    /// `gatehouse_trust`): checked on each (re)import, as the daemon checks a plugin on each
    /// load. With `check_plugins: false` a failure is a warning. A refusal is logged once
    /// per reason, and checked again on the next request (a `chmod` fixes it without a
    /// change the stamp would see).
    fn read_trusted(&self, py: Python<'_>, call: &Call, script: &Path) -> Result<Vec<u8>, Refused> {
        use std::io::Read as _;
        let cannot = |e: std::io::Error| {
            call.log_error(&format!("WSGI script '{}' cannot be read: {e}", script.display()));
            if e.kind() == std::io::ErrorKind::NotFound {
                Refused::NotFound
            } else {
                Refused::Failed
            }
        };
        py.detach(|| {
            let real = std::fs::canonicalize(script).map_err(cannot)?;
            let mut file = std::fs::File::open(&real).map_err(cannot)?;
            let meta = file.metadata().map_err(cannot)?;
            let verdict =
                gatehouse_trust::check(&real, &meta, self.owners, gatehouse_trust::Code::Script);
            let mut refusals = self.refusals.lock().unwrap_or_else(PoisonError::into_inner);
            match verdict {
                Ok(()) => {
                    refusals.remove(script);
                }
                Err(untrusted) => {
                    let text = untrusted.to_string();
                    let new = refusals.get(script) != Some(&text);
                    if self.check_scripts {
                        if new {
                            call.log_error(&format!(
                                "{}: refused WSGI script: {text}; it answers 500 until fixed",
                                self.alias
                            ));
                            refusals.insert(script.to_owned(), text);
                        }
                        return Err(Refused::Untrusted);
                    }
                    if new {
                        call.log_error(&format!(
                            "{}: running WSGI script anyway, `check_plugins` is off: {text}",
                            self.alias
                        ));
                        refusals.insert(script.to_owned(), text);
                    }
                }
            }
            drop(refusals);
            let mut source = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
            file.read_to_end(&mut source).map_err(cannot)?;
            Ok(source)
        })
    }
}

/// The module name a script is loaded as: unique per path (mod_wsgi uses a digest of the
/// path the same way), readable in tracebacks.
fn module_name(script: &Path) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in script.as_os_str().as_bytes() {
        hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let stem: String = script
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    format!("_gatehouse_wsgi_{stem}_{hash:016x}")
}

/// Calls the app and sends its response; every failure is logged with its traceback.
fn run(
    py: Python<'_>,
    inst: &Instance,
    call: &Arc<Call>,
    script: &Path,
    app: &Bound<'_, PyAny>,
) -> Status {
    let response = Arc::new(Response::new(Arc::clone(call)));
    let outcome =
        with_errors(py, call, script, |errors| call_app(py, inst, call, app, &response, errors));
    match outcome {
        Some(Ok(())) => Status::OK,
        Some(Err(failures)) => {
            for e in &failures {
                log_exception(py, call, script, e);
            }
            Status::ERROR
        }
        None => Status::ERROR,
    }
}

/// Runs `f` (Python code for the request in `call`) with the request's `wsgi.errors`:
/// print() and sys.stderr on this thread go to it meanwhile, and what it holds is logged
/// after. `None` (logged) when it cannot be made.
pub(crate) fn with_errors<T>(
    py: Python<'_>,
    call: &Arc<Call>,
    script: &Path,
    f: impl FnOnce(&Bound<'_, Errors>) -> T,
) -> Option<T> {
    let errors = match Bound::new(py, Errors::new(Arc::clone(call))) {
        Ok(e) => e,
        Err(e) => {
            log_exception(py, call, script, &e);
            return None;
        }
    };
    let local = interp::request_local(py);
    if let Some(local) = local {
        let _ = local.setattr(intern!(py, "errors"), &errors);
    }
    let out = f(&errors);
    if let Some(local) = local {
        let _ = local.setattr(intern!(py, "errors"), py.None());
    }
    errors.get().emit(py, true);
    Some(out)
}

/// The app call proper; the failures, in order (the body's, then `close()`'s).
fn call_app(
    py: Python<'_>,
    inst: &Instance,
    call: &Arc<Call>,
    app: &Bound<'_, PyAny>,
    response: &Arc<Response>,
    errors: &Bound<'_, Errors>,
) -> Result<(), Vec<PyErr>> {
    let environ = environ(py, inst, call, errors).map_err(|e| vec![e])?;
    let start =
        Bound::new(py, StartResponse { response: Arc::clone(response) }).map_err(|e| vec![e])?;
    let result = app.call1((environ, start)).map_err(|e| vec![e])?;
    let mut failures = Vec::new();
    if let Err(e) = body(py, response, &result) {
        failures.push(e);
    }
    // PEP 3333: close() is called whatever happened, if the iterable has one. A plain
    // list, tuple or bytes (the common `return [output]`) has none: asking would raise and
    // format an AttributeError on every request.
    let plain = result.is_exact_instance_of::<PyList>()
        || result.is_exact_instance_of::<PyTuple>()
        || result.is_exact_instance_of::<PyBytes>();
    match if plain { Ok(None) } else { result.getattr_opt("close") } {
        Ok(Some(close)) => {
            if let Err(e) = close.call0() {
                failures.push(e);
            }
        }
        Ok(None) => {}
        Err(e) => failures.push(e),
    }
    // (After an accepted WebSocket, or its 503, the host has answered: no head is due.)
    if failures.is_empty()
        && !call.answered()
        && let Err(e) = finish(py, response)
    {
        failures.push(e);
    }
    if failures.is_empty() { Ok(()) } else { Err(failures) }
}

/// Streams the iterable the app returned.
fn body(py: Python<'_>, response: &Response, result: &Bound<'_, PyAny>) -> PyResult<()> {
    let eager = result.is_instance_of::<PyList>()
        || result.is_instance_of::<PyTuple>()
        || is_file_wrapper(py, result);
    for item in result.try_iter()? {
        let item = item?;
        let Ok(bytes) = item.cast::<PyBytes>() else {
            return Err(PyTypeError::new_err(format!(
                "the response body must be an iterable of bytes, and it gave a {}",
                type_name(&item)
            )));
        };
        let data = bytes.as_bytes();
        if !data.is_empty() {
            response.send(py, data, !eager)?;
        }
    }
    Ok(())
}

fn is_file_wrapper(py: Python<'_>, v: &Bound<'_, PyAny>) -> bool {
    interp::helpers(py)
        .and_then(|h| h.getattr("FileWrapper"))
        .and_then(|cls| v.is_instance(&cls))
        .unwrap_or(false)
}

/// After the body: a response with no body bytes still needs its head sent.
fn finish(py: Python<'_>, response: &Response) -> PyResult<()> {
    if response.sent() {
        return Ok(());
    }
    if !response.started() {
        return Err(PyRuntimeError::new_err(
            "the application returned without calling start_response()",
        ));
    }
    response.send(py, b"", false)
}

/// The PEP 3333 environ: the host's variables as native strings (bytes decoded as
/// latin-1), and the `wsgi.*` keys.
pub(crate) fn environ<'py>(
    py: Python<'py>,
    inst: &Instance,
    call: &Arc<Call>,
    errors: &Bound<'py, Errors>,
) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    call.for_each_var(|name, value| d.set_item(native(py, name)?, native(py, value)?))?;
    d.set_item("wsgi.version", (1, 0))?;
    if !d.contains("wsgi.url_scheme")? {
        let scheme = match d.get_item("REQUEST_SCHEME")? {
            Some(s) => s,
            None => PyString::new(py, "http").into_any(),
        };
        d.set_item("wsgi.url_scheme", scheme)?;
    }
    d.set_item("wsgi.input", Bound::new(py, Input::new(Arc::clone(call)))?)?;
    d.set_item("wsgi.errors", errors)?;
    d.set_item("wsgi.multithread", inst.multithread)?;
    d.set_item("wsgi.multiprocess", inst.multiprocess)?;
    d.set_item("wsgi.run_once", false)?;
    // As mod_wsgi: wsgi.input ends where the body ends (a chunked body too).
    d.set_item("wsgi.input_terminated", true)?;
    d.set_item("wsgi.file_wrapper", interp::helpers(py)?.getattr("FileWrapper")?)?;
    crate::websocket::offer(py, call, &d)?;
    Ok(d)
}

/// A native string: the bytes decoded as latin-1.
fn native<'py>(py: Python<'py>, b: &[u8]) -> PyResult<Bound<'py, PyString>> {
    crate::abi::latin1(py, b)
}

/// Logs an exception as mod_wsgi does: a line naming the script, then the traceback, one
/// log line per line.
pub(crate) fn log_exception(py: Python<'_>, call: &Call, script: &Path, e: &PyErr) {
    let traceback = interp::describe(py, e);
    // Without the GIL, as `wsgi.errors`: in a worker process each line is a write that may
    // wait for the daemon.
    py.detach(|| {
        call.log_error(&format!(
            "Exception occurred processing WSGI script '{}'.",
            script.display()
        ));
        for line in traceback.lines() {
            call.log_error(line);
        }
    });
}
