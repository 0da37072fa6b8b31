//! Picking up replaced files while serving: a plugin file replaced or removed is swapped
//! in or dropped ([`Host::refresh`]); an isolated alias whose scripts changed, or any that
//! serves scripts at an explicit reload, gets fresh workers.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};

use gatehouse_config::AliasKind;

use super::{Host, Mount, Opened, Slot, describe, instance_alias};
use crate::plugin::staging::FileId;

impl Host {
    /// Looks at every loaded plugin file of every alias with `reloading` on: a replaced
    /// file is loaded and swapped in (requests in flight finish on the old version, whose
    /// `shutdown` then runs), a removed one stops being served. A replacement that fails
    /// to load leaves the old version serving. Returns how many plugins changed.
    pub(crate) fn refresh(&self) -> usize {
        let mut changed = 0;
        let mut told = Vec::new();
        for m in self.mounts.iter().filter(|m| m.alias.reloading) {
            if let Some(workers) = &m.workers
                && !told.iter().any(|t| Arc::ptr_eq(t, workers))
            {
                // A changed script replaces the workers (its modules are imported anew);
                // otherwise each worker swaps its own plugins (the count is theirs to log).
                let changed =
                    self.scripts_fingerprint(m).is_some_and(|f| workers.scripts_changed(f));
                if changed {
                    workers.recycle("a script changed");
                } else {
                    workers.refresh();
                }
                told.push(Arc::clone(workers));
            }
        }
        for m in self.mounts.iter().filter(|m| m.alias.reloading) {
            let files: Vec<PathBuf> = m
                .apps
                .slots()
                .iter()
                .filter(|(_, slot)| matches!(slot, Slot::Ready { .. }))
                .map(|(file, _)| file.clone())
                .collect();
            for file in files {
                changed += usize::from(self.refresh_one(m, &file));
            }
        }
        changed
    }

    fn refresh_one(&self, m: &Mount, file: &Path) -> bool {
        // A handler's script that is gone stops being served like a removed plugin; its
        // changes are the handler plugin's business. What is swapped is the plugin.
        let source = self.source(m, file);
        let now = if source.handler && FileId::of(file).is_none() {
            None
        } else {
            FileId::of(&source.plugin)
        };
        let (app, sha256, version) = match m.apps.slots().get(file) {
            Some(Slot::Ready { id, rejected, loaded, sha256, .. }) => {
                if now == Some(*id) || (now.is_some() && now == *rejected) {
                    return false;
                }
                (Arc::clone(&loaded.app), *sha256, describe(&loaded.plugin, *sha256))
            }
            _ => return false,
        };
        let _loading = m.apps.load_lock.lock().unwrap_or_else(PoisonError::into_inner);
        let group_name = (m.alias.kind == AliasKind::Group).then_some(&*app);
        let alias = instance_alias(m, group_name);
        if now.is_none() {
            m.apps.set_single(None);
            m.apps.slots_mut().remove(file);
            log::info!(
                "{alias}: {} was removed: {version} is no longer served (requests in flight \
                 finish on it)",
                file.display()
            );
            return true;
        }
        match self.open(m, file, &app, sha256) {
            Opened::Same(id) => {
                if let Some(Slot::Ready { id: old, .. }) = m.apps.slots_mut().get_mut(file) {
                    *old = id;
                }
                false
            }
            Opened::Ready { loaded, id, sha256 } => {
                let new_version = describe(&loaded.plugin, sha256);
                m.apps.set_single(Some(loaded.clone()));
                m.apps.slots_mut().insert(
                    file.to_owned(),
                    Slot::Ready { loaded, id, sha256, rejected: None, refusal: None },
                );
                log::info!(
                    "{alias}: reloaded {}: now {new_version}, was {version} (requests in \
                     flight finish on the old version)",
                    file.display()
                );
                true
            }
            Opened::Failed { id, error } => {
                let text = error.to_string();
                if let Some(Slot::Ready { rejected, refusal, .. }) =
                    m.apps.slots_mut().get_mut(file)
                {
                    *rejected = id;
                    if refusal.as_deref() == Some(&text) {
                        return false;
                    }
                    *refusal = Some(text.clone());
                }
                log::error!(
                    "{alias}: {} changed but the new version was refused: {text}; {version} \
                     keeps serving",
                    file.display()
                );
                false
            }
        }
    }

    /// A fingerprint of the scripts (files a handler serves) alias `m` serves, from their
    /// names and identities (device, inode, size, mtime): `None` when it serves none.
    fn scripts_fingerprint(&self, m: &Mount) -> Option<u64> {
        use std::hash::{Hash as _, Hasher as _};
        use std::os::unix::fs::MetadataExt as _;
        if self.config.handlers.is_empty() {
            return None;
        }
        let files: Vec<PathBuf> = match m.alias.kind {
            AliasKind::App => vec![m.alias.path.clone()],
            AliasKind::Group => std::fs::read_dir(&m.alias.path)
                .map(|d| d.flatten().map(|e| e.path()).collect())
                .unwrap_or_default(),
        };
        type Identity = Option<(u64, u64, u64, i64, i64)>;
        let mut scripts: Vec<(PathBuf, Identity)> = files
            .into_iter()
            .filter(|f| self.config.handler_for(f).is_some())
            .map(|f| {
                let id = std::fs::metadata(&f)
                    .ok()
                    .map(|m| (m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()));
                (f, id)
            })
            .collect();
        if scripts.is_empty() {
            return None;
        }
        scripts.sort();
        let mut h = std::collections::hash_map::DefaultHasher::new();
        scripts.hash(&mut h);
        Some(h.finish())
    }

    /// Replaces the workers of every isolated alias that serves scripts through a handler,
    /// gracefully (an explicit reload: SIGHUP, `gatehouse reload`), as `apachectl graceful`
    /// restarts mod_wsgi's daemon processes: the new ones import the scripts' modules anew.
    pub(crate) fn recycle_script_workers(&self) {
        let mut told: Vec<&Arc<crate::isolation::group::Group>> = Vec::new();
        for m in &self.mounts {
            if let Some(workers) = &m.workers
                && !told.iter().any(|t| Arc::ptr_eq(t, workers))
                && let Some(f) = self.scripts_fingerprint(m)
            {
                workers.scripts_changed(f);
                workers.recycle("reload");
                told.push(workers);
            }
        }
    }
}
