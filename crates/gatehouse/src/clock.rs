//! A monotonic clock in milliseconds since its first reading: a moment is one `u64`, so it
//! fits in an atomic (the HTTP workers' heartbeats, `dispatch: auto`'s probations).

use std::sync::LazyLock;
use std::time::Instant;

static EPOCH: LazyLock<Instant> = LazyLock::new(Instant::now);

/// Milliseconds since the first call in this process.
pub(crate) fn now_ms() -> u64 {
    u64::try_from(EPOCH.elapsed().as_millis()).unwrap_or(u64::MAX)
}
