//! What `gatehouse check` tells of a plugin file before anything loads it, with no code of it
//! run: the trust checks and the whole-ELF check staging does, the alias's `sha256` pin, the
//! exported `gatehouse_app` entry point, and the ABI version the file records in its
//! `gatehouse_abi_version` symbol (plugins built with an SDK that exports it; the
//! descriptor's own version is only known by running `gatehouse_app`, at load).

use std::path::Path;

use gatehouse_config::Diagnostic;
use sha2::{Digest as _, Sha256};

use super::elf::{self, FUNC, OBJECT};
use super::load::LoadError;
use super::staging::{Check, Digest256, Policy, StageError, check_elf, read_stable};

/// Checks `file` as loading it for an alias with `check_plugins` and the `sha256` pin would,
/// short of running it (see the module's comment), trusting the files of the user running
/// this (`check` runs as the daemon's user).
pub fn inspect(file: &Path, check_plugins: bool, sha256: Option<&str>) -> Result<(), LoadError> {
    let policy = Policy {
        check: if check_plugins { Check::Enforce } else { Check::Warn },
        owners: gatehouse_trust::Owners::current(),
        sha256,
    };
    let policy = &policy;
    let stage = |error: StageError| LoadError::Stage { path: file.to_owned(), error };
    let (bytes, _) = read_stable(file, policy).map_err(stage)?;
    check_elf(&bytes).map_err(stage)?;
    // Hashed only to compare with a pin.
    if policy.sha256.is_some() {
        policy.check_pin(Digest256(Sha256::digest(&bytes).into())).map_err(stage)?;
    }
    let bad = |reason: String| LoadError::BadDescriptor { path: file.to_owned(), reason };
    let entry = elf::dynamic_symbol(&bytes, gatehouse_abi::DESCRIPTOR_SYMBOL)
        .map_err(|e| stage(StageError::NotElf(e)))?;
    match entry {
        Some(s) if s.defined && s.kind == FUNC => {}
        Some(s) if s.defined => {
            return Err(bad(format!(
                "`{}` is exported, but not as a function (symbol type {})",
                gatehouse_abi::DESCRIPTOR_SYMBOL,
                s.kind
            )));
        }
        _ => return Err(LoadError::MissingSymbol { path: file.to_owned() }),
    }
    let recorded = elf::dynamic_symbol(&bytes, gatehouse_abi::ABI_VERSION_SYMBOL)
        .map_err(|e| stage(StageError::NotElf(e)))?;
    let abi_version = match recorded {
        Some(s) if s.defined && s.kind == OBJECT && s.size == 4 => Some(
            elf::u32_at(&bytes, s.value)
                .map_err(|e| bad(format!("`{}`: {e}", gatehouse_abi::ABI_VERSION_SYMBOL)))?,
        ),
        _ => None,
    };
    if let Some(found) = abi_version
        && found != gatehouse_abi::ABI_VERSION
    {
        return Err(LoadError::AbiVersion {
            path: file.to_owned(),
            found,
            expected: gatehouse_abi::ABI_VERSION,
        });
    }
    Ok(())
}

/// `gatehouse check`'s look at the plugin files of `config` (read from `file`), each as
/// loading it would: every single app's file (for a script, its handler's plugin) is an
/// error when it would not load; each plugin in a directory group's folder is a warning (it
/// fails only its own name); a file that is not there yet is left to the configuration's
/// own warning. One line per file, positioned at the alias that serves it.
pub fn check_config(config: &gatehouse_config::Config, file: &Path) -> Vec<Diagnostic> {
    use gatehouse_config::{AliasKind, Severity};
    let mut out = Vec::new();
    let mut seen: Vec<std::path::PathBuf> = Vec::new();
    for alias in &config.aliases {
        let (plugins, severity) = match alias.kind {
            AliasKind::App => {
                let plugin = config.handler_for(&alias.path).map_or(&alias.path, |h| &h.plugin);
                (vec![plugin.clone()], Severity::Error)
            }
            AliasKind::Group => (group_plugins(config, &alias.path), Severity::Warning),
        };
        for plugin in plugins {
            if !plugin.exists() || seen.contains(&plugin) {
                continue;
            }
            if let Err(e) = inspect(&plugin, alias.check_plugins, alias.sha256.as_deref()) {
                out.push(Diagnostic {
                    severity,
                    file: file.to_owned(),
                    pos: Some(alias.pos),
                    message: format!("{}: {e}", alias.url),
                    hint: None,
                });
            }
            seen.push(plugin);
        }
    }
    out
}

/// The plugin files a directory group at `dir` may serve: its `.so` files, and the plugins
/// of the handlers whose scripts are there.
fn group_plugins(config: &gatehouse_config::Config, dir: &Path) -> Vec<std::path::PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut out = Vec::new();
    for path in entries.flatten().map(|e| e.path()) {
        let plugin = match config.handler_for(&path) {
            Some(h) => h.plugin.clone(),
            None if path.extension().is_some_and(|e| e == "so") => path,
            None => continue,
        };
        if !out.contains(&plugin) {
            out.push(plugin);
        }
    }
    out.sort();
    out
}
