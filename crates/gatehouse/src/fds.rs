//! The daemon's file descriptor budget: the soft `RLIMIT_NOFILE` raised to the hard limit
//! at start, and the connection limit of each HTTP worker clamped to what that budget
//! allows, so that idle connections cannot take the descriptors that logs, plugins,
//! workers' sockets, upload spooling and staging need.

use std::sync::atomic::{AtomicU64, Ordering};

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// The soft limit in effect after [`raise`] (0: not known, no clamp).
static SOFT: AtomicU64 = AtomicU64::new(0);

/// Descriptors kept out of the connections' share whatever the limit: logs, plugins,
/// worker processes' sockets and pipes, spooled uploads, staging, the runtime's own.
const MIN_RESERVE: u64 = 128;

/// What [`raise`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Nofile {
    /// The soft limit before.
    pub before: u64,
    /// The soft limit in effect now.
    pub soft: u64,
    /// The hard limit (`None`: unlimited).
    pub hard: Option<u64>,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit (through `prlimit64`, which systemd's
/// `@system-service` filter allows) and records the limit in effect for [`connection_limit`].
/// On failure the soft limit stays and is still recorded; the error says why.
pub fn raise() -> (Nofile, Option<std::io::Error>) {
    let Rlimit { current, maximum } = getrlimit(Resource::Nofile);
    // An unlimited soft limit cannot be for descriptors (the kernel caps it at nr_open).
    let before = current.unwrap_or(u64::MAX);
    let mut error = None;
    let mut soft = before;
    if let Some(hard) = maximum.filter(|&h| h > before) {
        match setrlimit(Resource::Nofile, Rlimit { current: Some(hard), maximum }) {
            Ok(()) => soft = hard,
            Err(e) => error = Some(e.into()),
        }
    }
    SOFT.store(soft, Ordering::Relaxed);
    (Nofile { before, soft, hard: maximum }, error)
}

/// The soft limit recorded by [`raise`] (`None` before it ran).
pub(crate) fn soft_limit() -> Option<u64> {
    match SOFT.load(Ordering::Relaxed) {
        0 => None,
        n => Some(n),
    }
}

/// The descriptors kept for everything but connections under a soft limit of `soft`: a
/// quarter of it, and at least [`MIN_RESERVE`].
pub(crate) fn reserve(soft: u64) -> u64 {
    (soft / 4).max(MIN_RESERVE)
}

/// The connections each of `workers` HTTP worker threads may hold on each of `listeners`
/// listeners: `max_connections`, or fewer when the soft limit `soft` cannot give every one
/// of them a descriptor beside [`reserve`]. Never below 1 (a listener that accepts nothing
/// serves nothing).
pub(crate) fn clamp(max_connections: usize, soft: u64, workers: usize, listeners: usize) -> usize {
    let sharers = (workers.max(1) as u64).saturating_mul(listeners.max(1) as u64);
    let allowed = soft.saturating_sub(reserve(soft)) / sharers;
    usize::try_from(allowed).unwrap_or(usize::MAX).clamp(1, max_connections.max(1))
}

/// The limit each HTTP worker applies to one listener: `max_connections` clamped to the
/// descriptor budget ([`clamp`]), with a warning the first time it is lower, naming the
/// setting, the limit and the fix.
pub(crate) fn connection_limit(max_connections: usize, workers: usize, listeners: usize) -> usize {
    static WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let Some(soft) = soft_limit() else { return max_connections };
    let limit = clamp(max_connections, soft, workers, listeners);
    if limit < max_connections && !WARNED.swap(true, Ordering::Relaxed) {
        log::warn!(
            "max_connections is {max_connections} per HTTP worker thread and listener, but the \
             open file limit (RLIMIT_NOFILE) is {soft}: with {workers} worker thread(s), \
             {listeners} listener(s) and {} descriptors kept for logs, plugins, workers and \
             uploads, each worker accepts at most {limit} connection(s) per listener (hint: \
             raise the limit, `LimitNOFILE=65536` in the unit (`systemctl edit gatehouse`), \
             `--ulimit nofile=65536` for a container, or `ulimit -n`; or lower `max_connections`)",
            reserve(soft)
        );
    }
    limit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connections_share_what_the_reserve_leaves() {
        // (max_connections, soft, workers, listeners, expected)
        let table: &[(usize, u64, usize, usize, usize)] = &[
            // The default under systemd's 1024: 768 left over 2 workers.
            (10_000, 1024, 2, 1, 384),
            (10_000, 1024, 2, 2, 192),
            (10_000, 1024, 8, 1, 96),
            // LimitNOFILE=65536: a quarter kept, the rest over the workers.
            (10_000, 65_536, 2, 1, 10_000),
            (10_000, 65_536, 8, 1, 6_144),
            (100, 65_536, 8, 3, 100),
            // A small limit: the minimum reserve, the rest shared.
            (10_000, 200, 2, 1, 36),
            (10_000, 200, 1, 1, 72),
            // Less than the reserve: one each, never zero.
            (10_000, 64, 2, 1, 1),
            (10_000, 128, 4, 4, 1),
            // Zero workers or listeners count as one; max_connections is the ceiling.
            (50, 1024, 0, 0, 50),
            (1, 1_048_576, 1, 1, 1),
            // Unlimited.
            (1_000_000, u64::MAX, 64, 16, 1_000_000),
        ];
        for &(max, soft, workers, listeners, want) in table {
            assert_eq!(
                clamp(max, soft, workers, listeners),
                want,
                "max_connections {max}, soft {soft}, {workers} workers, {listeners} listeners"
            );
        }
    }

    #[test]
    fn the_reserve_is_a_quarter_and_at_least_the_minimum() {
        for (soft, want) in [(0, 128), (200, 128), (512, 128), (1024, 256), (65_536, 16_384)] {
            assert_eq!(reserve(soft), want, "soft {soft}");
        }
    }
}
