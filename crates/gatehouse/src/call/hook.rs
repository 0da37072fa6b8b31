//! A call of an access or authentication hook (`allow_access`, `check_password`): the same
//! environ an app call gets, without a body or a response. The hook may log (`log_error`,
//! `log_info`, `debug_log`); `read_body` finds the body empty, `start_response`, `write` and
//! `flush` are out of place (`BAD_STATE`).

use std::panic::{AssertUnwindSafe, catch_unwind};

use gatehouse_abi::{Environ, HostApi, Pair, Status, Verdict};

use super::abi::{Backend, host_api, with_call};
use super::reply::{Call, Head};
use crate::plugin::load::Plugin;

/// Which hook, with its arguments.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Hook<'a> {
    /// `allow_access(environ, host)`: `host` is the client's address.
    Access { host: &'a [u8] },
    /// `check_password(environ, user, password)`.
    Password { user: &'a [u8], password: &'a [u8] },
}

/// What a hook's callbacks act on.
struct HookState<'a> {
    call: &'a Call<'a>,
}

impl Backend for HookState<'_> {
    fn read_body(&mut self, _: usize) -> Result<&[u8], Status> {
        Ok(&[])
    }

    fn debug_log(&mut self, message: &[u8], must: bool) -> Status {
        self.call.debug_log(message, must)
    }

    fn log_error(&mut self, message: &[u8]) {
        self.call.log(log::Level::Error, message);
    }

    fn log_info(&mut self, message: &[u8]) {
        self.call.log(log::Level::Info, message);
    }

    fn start_response(&mut self, _: impl FnOnce() -> Result<Head, Status>) -> Status {
        Status::BAD_STATE
    }

    fn write(&mut self, _: &[u8]) -> Status {
        Status::BAD_STATE
    }

    fn flush(&mut self) -> Status {
        Status::BAD_STATE
    }
}

/// The callbacks of a hook call.
static HOOK_API: HostApi = host_api::<HookState<'static>>();

/// Calls `hook` of `plugin` for the request `call` describes (its `input` has the query's
/// parameters; no body was read). `None`: the plugin has no such entry point. A panic of
/// ours on the way is the hook's failure ([`Verdict::ERROR`]).
pub(crate) fn run(plugin: &Plugin, call: &Call<'_>, hook: Hook<'_>) -> Option<Verdict> {
    let _panics_name_the_request = crate::logs::RequestScope::enter(call.app, call.request_id);
    let mut vars: Vec<Pair> = Vec::new();
    let mut params: Vec<Pair> = Vec::new();
    call.vars.fill_abi(&mut vars);
    call.input.params.fill_abi(&mut params);
    let mut state = HookState { call };
    catch_unwind(AssertUnwindSafe(|| {
        with_call(&mut state, |request| {
            let environ = Environ {
                struct_size: std::mem::size_of::<Environ>() as u32,
                vars: vars.as_ptr(),
                vars_len: vars.len(),
                params: params.as_ptr(),
                params_len: params.len(),
                uploads: std::ptr::null(),
                uploads_len: 0,
                request,
                host: &HOOK_API,
            };
            match hook {
                Hook::Access { host } => plugin.allow_access(&environ, host),
                Hook::Password { user, password } => {
                    plugin.check_password(&environ, user, password)
                }
            }
        })
    }))
    .unwrap_or(Some(Verdict::ERROR))
}
