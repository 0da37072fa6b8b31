//! Request bodies the daemon holds: the daemon-wide budget of form bytes held at once
//! ([`Budget`], `upload_budget`: uploads spooled to disk, form text in memory), and the
//! spool folder's leftovers ([`sweep`]): upload files a crashed daemon never removed.
//!
//! A spool file is named `gatehouse-upload-PID-RANDOM` (PID: the daemon's), so that a daemon
//! starting beside another one on the same `upload_dir` leaves the other's files alone.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// The start of every spool file's name.
pub(crate) const PREFIX: &str = "gatehouse-upload-";

/// The prefix of this process's spool files: `gatehouse-upload-PID-`.
pub(crate) fn own_prefix() -> String {
    format!("{PREFIX}{}-", std::process::id())
}

/// Form bytes held at once across the daemon, against a limit each request passes in (the
/// current configuration's `upload_budget`, so a reload changes it for new requests while
/// the bytes held by requests in flight stay counted).
#[derive(Debug, Default)]
pub struct Budget {
    used: AtomicU64,
}

/// The daemon's one budget of form bytes.
pub static UPLOADS: Budget = Budget::new();

/// The budget is spent: past it the request is 503 with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full {
    /// The budget's limit.
    pub(crate) limit: u64,
}

impl Budget {
    /// Nothing held.
    pub const fn new() -> Budget {
        Budget { used: AtomicU64::new(0) }
    }

    /// The bytes held now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }
}

/// What one request holds of a [`Budget`], given back when dropped.
#[derive(Debug, Default)]
pub struct Held {
    budget: Option<&'static Budget>,
    bytes: u64,
}

impl Held {
    /// Nothing held yet of `budget`.
    pub fn of(budget: &'static Budget) -> Held {
        Held { budget: Some(budget), bytes: 0 }
    }

    /// Holds at least `bytes` in all, if the budget's other holders leave room under
    /// `limit`; else nothing more is held.
    pub(crate) fn at_least(&mut self, bytes: u64, limit: u64) -> Result<(), Full> {
        let Some(budget) = self.budget else { return Ok(()) };
        let more = bytes.saturating_sub(self.bytes);
        if more == 0 {
            return Ok(());
        }
        budget
            .used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(more).filter(|&total| total <= limit)
            })
            .map_err(|_| Full { limit })?;
        self.bytes = bytes;
        Ok(())
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(budget) = self.budget {
            budget.used.fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}

/// Removes the spool files in `dir` left by daemons that are gone: `gatehouse-upload-*`
/// regular files last written before `started`, except those named for a process that is
/// still running (another daemon on the same folder). Returns how many were removed; a file
/// that cannot be removed is logged and skipped.
pub fn sweep(dir: &Path, started: SystemTime) -> std::io::Result<usize> {
    let mut removed = 0;
    for entry in std::fs::read_dir(dir)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(PREFIX)) else { continue };
        let Ok(meta) = entry.metadata() else { continue };
        let old = meta.modified().is_ok_and(|m| m < started);
        if !meta.is_file() || !old || owner_is_running(rest) {
            continue;
        }
        match std::fs::remove_file(entry.path()) {
            Ok(()) => removed += 1,
            Err(e) => log::warn!("cannot remove the stale upload {}: {e}", entry.path().display()),
        }
    }
    Ok(removed)
}

/// Whether the spool file named `gatehouse-upload-REST` belongs to a running process other
/// than this one (`REST` starts with its pid; older names have none).
fn owner_is_running(rest: &str) -> bool {
    let Some((pid, _)) = rest.split_once('-') else { return false };
    match pid.parse::<u32>() {
        Ok(pid) if pid != std::process::id() => Path::new("/proc").join(pid.to_string()).exists(),
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn held_bytes_count_against_the_limit_until_dropped() {
        let budget: &'static Budget = Box::leak(Box::new(Budget::new()));
        let mut a = Held::of(budget);
        let mut b = Held::of(budget);
        assert_eq!(a.at_least(60, 100), Ok(()));
        assert_eq!(a.at_least(50, 100), Ok(()), "already held");
        assert_eq!(budget.used(), 60);
        assert_eq!(b.at_least(50, 100), Err(Full { limit: 100 }));
        assert_eq!(budget.used(), 60, "a refusal holds nothing");
        assert_eq!(b.at_least(40, 100), Ok(()));
        assert_eq!(budget.used(), 100);
        drop(a);
        assert_eq!(budget.used(), 40);
        assert_eq!(b.at_least(90, 100), Ok(()), "grows by the difference");
        drop(b);
        assert_eq!(budget.used(), 0);
        // Without a budget (Input's default), nothing is counted.
        assert_eq!(Held::default().at_least(u64::MAX, 0), Ok(()));
    }

    #[test]
    fn the_sweep_removes_only_stale_leftovers_of_gone_daemons() {
        let dir = tempfile::tempdir().unwrap();
        let at = |name: &str| dir.path().join(name);
        // A leftover without a pid, one of a pid that is no process, this process's own, one
        // of a running process (pid 1), a folder and another file of the same age.
        for name in [
            "gatehouse-upload-abc123",
            "gatehouse-upload-4000000000-x",
            &format!("{}x", own_prefix()),
            "gatehouse-upload-1-y",
            "notes.txt",
        ] {
            std::fs::write(at(name), b"x").unwrap();
        }
        std::fs::create_dir(at("gatehouse-upload-dir")).unwrap();
        let later = SystemTime::now() + std::time::Duration::from_secs(5);
        assert_eq!(sweep(dir.path(), later).unwrap(), 3);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["gatehouse-upload-1-y", "gatehouse-upload-dir", "notes.txt"]);
        // Files newer than the start are an upload in flight: kept.
        std::fs::write(at("gatehouse-upload-new"), b"x").unwrap();
        let before = SystemTime::now() - std::time::Duration::from_secs(60);
        assert_eq!(sweep(dir.path(), before).unwrap(), 0);
    }
}
