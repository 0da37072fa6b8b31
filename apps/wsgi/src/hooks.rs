//! An alias's access and authentication hooks written in Python, as mod_wsgi calls them:
//! `allow_access(environ, host)` (`WSGIAccessScript`) and `check_password(environ, user,
//! password)` (`WSGIAuthUserScript`), from the script this instance was made for. `True`,
//! `False` and `None` are the answers; anything else, or an exception (its traceback in
//! the error log), is the hook's failure and the daemon answers 500.

use std::sync::Arc;

use gatehouse_abi::Verdict;
use pyo3::prelude::*;
use pyo3::types::PyBool;

use crate::Instance;
use crate::abi::Call;
use crate::bridge::{environ, log_exception, with_errors};
use crate::objects::{Errors, type_name};

/// Which hook, with its arguments (as the host passed them: bytes).
pub(crate) enum Hook<'a> {
    /// `allow_access(environ, host)`.
    Access { host: &'a [u8] },
    /// `check_password(environ, user, password)`.
    Password { user: &'a [u8], password: &'a [u8] },
}

impl Hook<'_> {
    fn name(&self) -> &'static str {
        match self {
            Hook::Access { .. } => "allow_access",
            Hook::Password { .. } => "check_password",
        }
    }
}

/// Runs `hook` of the instance's script for the request in `call`.
pub(crate) fn run(inst: &Instance, call: &Arc<Call>, hook: &Hook<'_>) -> Verdict {
    let Some(script) = inst.script.as_deref() else {
        call.log_error("no script to run the hook of (gatehouse.script is not set)");
        return Verdict::ERROR;
    };
    crate::abi::keep_thread_state();
    Python::attach(|py| {
        let Ok(loaded) = inst.script(py, call, script) else { return Verdict::ERROR };
        let module = loaded.module.bind(py);
        let Ok(Some(f)) = module.getattr_opt(hook.name()) else {
            call.log_error(&format!(
                "Target WSGI script '{}' does not provide {}() (hint: define it, or name \
                 another script in the alias)",
                script.display(),
                hook.name()
            ));
            return Verdict::ERROR;
        };
        let result =
            with_errors(py, call, script, |errors| call_hook(py, inst, call, errors, &f, hook));
        match result {
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                log_exception(py, call, script, &e);
                Verdict::ERROR
            }
            None => Verdict::ERROR,
        }
    })
}

fn call_hook(
    py: Python<'_>,
    inst: &Instance,
    call: &Arc<Call>,
    errors: &Bound<'_, Errors>,
    f: &Bound<'_, PyAny>,
    hook: &Hook<'_>,
) -> PyResult<Verdict> {
    let environ = environ(py, inst, call, errors)?;
    // Native strings, as the environ's: the bytes decoded as latin-1 (mod_wsgi does the same).
    let text = |b: &[u8]| crate::abi::latin1(py, b);
    let result = match hook {
        Hook::Access { host } => f.call1((environ, text(host)?))?,
        Hook::Password { user, password } => f.call1((environ, text(user)?, text(password)?))?,
    };
    if result.is_none() {
        return Ok(Verdict::UNKNOWN);
    }
    match result.cast::<PyBool>() {
        Ok(b) if b.is_true() => Ok(Verdict::ALLOW),
        Ok(_) => Ok(Verdict::DENY),
        Err(_) => Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "{}() must return True, False or None, and it returned a {}",
            hook.name(),
            type_name(&result)
        ))),
    }
}
