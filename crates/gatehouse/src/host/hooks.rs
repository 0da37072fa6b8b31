//! An alias's access and authentication hooks (`access_script`, `auth_user_script`): the
//! plugins (or scripts, through their handler) asked before the app whether a request may
//! reach it, loaded in the daemon and called on the alias's pool.
//!
//! A hook loads at start (with the single apps) or on the first request that needs it, and
//! again with each configuration reload. One that cannot be loaded, or lacks the entry point,
//! fails closed: the alias answers 500 until it is fixed (a broken file is tried again once
//! it changes). A changed `.so` hook is picked up by a reload; a script is re-read by its
//! handler as its apps are.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use gatehouse_abi::Verdict;

use super::{Host, Loaded, Mount, Opened};
use crate::call::hook::{self, Hook};
use crate::plugin::staging::FileId;
use crate::request::environ::PairBuf;
use crate::request::input::Input;

/// Which of an alias's hooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HookKind {
    /// `access_script`: `allow_access`.
    Access,
    /// `auth_user_script`: `check_password`.
    Password,
}

impl HookKind {
    /// The configuration key that names its file.
    pub(crate) fn key(self) -> &'static str {
        match self {
            HookKind::Access => "access_script",
            HookKind::Password => "auth_user_script",
        }
    }

    /// The entry point it calls.
    fn entry(self) -> &'static str {
        match self {
            HookKind::Access => "allow_access",
            HookKind::Password => "check_password",
        }
    }
}

/// One hook's file and what loading it gave.
#[derive(Debug)]
struct Slot {
    file: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug)]
enum State {
    Unloaded,
    Ready(Loaded),
    /// Refused; tried again once the file or what serves it changes (their identities).
    Failed {
        ids: (Option<FileId>, Option<FileId>),
    },
}

/// An alias's hooks.
#[derive(Debug)]
pub(crate) struct Hooks {
    access: Option<Slot>,
    password: Option<Slot>,
}

impl Hooks {
    /// The hooks `alias` names; `None` when it names none.
    pub(crate) fn of(alias: &gatehouse_config::Alias) -> Option<Hooks> {
        let slot = |file: &Option<PathBuf>| {
            file.as_ref().map(|f| Slot { file: f.clone(), state: Mutex::new(State::Unloaded) })
        };
        alias.hooks.any().then(|| Hooks {
            access: slot(&alias.hooks.access_script),
            password: slot(&alias.hooks.auth_user_script),
        })
    }

    /// Whether the alias has hook `kind`.
    pub(crate) fn has(&self, kind: HookKind) -> bool {
        self.slot(kind).is_some()
    }

    fn slot(&self, kind: HookKind) -> Option<&Slot> {
        match kind {
            HookKind::Access => self.access.as_ref(),
            HookKind::Password => self.password.as_ref(),
        }
    }
}

/// What a hook call came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The hook's verdict.
    Verdict(Verdict),
    /// The hook could not be called (not loaded, no entry point); the error log said why
    /// when it was loaded.
    Unavailable,
}

impl Host {
    /// Loads the hooks of every alias that has some (at start and after a reload), logging
    /// each outcome; returns how many failed.
    pub(crate) fn load_hooks(&self) -> usize {
        let mut failed = 0;
        for m in &self.mounts {
            for kind in [HookKind::Access, HookKind::Password] {
                if m.hooks.as_ref().is_some_and(|h| h.has(kind)) && self.hook(m, kind).is_none() {
                    failed += 1;
                }
            }
        }
        failed
    }

    /// Calls hook `kind` of alias `mount` for a request (its environ `vars`, its query's
    /// parameters in `input`). Call from a pool thread: it may load the hook.
    pub(crate) fn run_hook(
        &self,
        mount: usize,
        kind: HookKind,
        vars: &PairBuf,
        input: &Input,
        request_id: u64,
        args: Hook<'_>,
    ) -> Outcome {
        let m = &self.mounts[mount];
        let Some(loaded) = self.hook(m, kind) else { return Outcome::Unavailable };
        let call = loaded.call(vars, input, m.alias.develop_mode, request_id);
        // No entry point: said when it was loaded; the caller logs each refusal.
        hook::run(&loaded.plugin, &call, args).map_or(Outcome::Unavailable, Outcome::Verdict)
    }

    /// The loaded hook `kind` of `m`, loading it if needed; `None` (logged) when it cannot
    /// be loaded.
    fn hook(&self, m: &Mount, kind: HookKind) -> Option<Loaded> {
        let slot = m.hooks.as_ref()?.slot(kind)?;
        let mut state = slot.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let State::Ready(loaded) = &*state {
            return Some(loaded.clone());
        }
        let source = self.source(m, &slot.file);
        let ids = (FileId::of(&slot.file), FileId::of(&source.plugin));
        if let State::Failed { ids: failed } = &*state
            && failed.0.is_some()
            && *failed == ids
        {
            return None;
        }
        let app: Arc<str> = Arc::from(hook_name(&slot.file));
        match self.open(m, &slot.file, &app, None) {
            Opened::Ready { loaded, .. } => {
                let entry = match kind {
                    HookKind::Access => loaded.plugin.has_allow_access(),
                    HookKind::Password => loaded.plugin.has_check_password(),
                };
                if !entry {
                    log::error!(
                        "{}: the {} {} has no {} entry point (a plugin built before hooks \
                         existed, or one that does not implement it); every request is \
                         refused with 500 until it is fixed",
                        m.alias.url,
                        kind.key(),
                        slot.file.display(),
                        kind.entry()
                    );
                }
                *state = State::Ready(loaded.clone());
                Some(loaded)
            }
            Opened::Failed { error, .. } => {
                log::error!(
                    "{}: refused {} {}: {error}; every request is refused with 500 until it \
                     is fixed",
                    m.alias.url,
                    kind.key(),
                    slot.file.display()
                );
                *state = State::Failed { ids };
                None
            }
            Opened::Same(_) => None,
        }
    }
}

/// The name a hook's log lines carry: its file's name.
fn hook_name(file: &Path) -> String {
    file.file_name().map_or_else(|| "hook".to_owned(), |n| n.to_string_lossy().into_owned())
}
