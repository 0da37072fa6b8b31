//! Metrics: counters the daemon keeps with plain atomics, and their Prometheus text
//! exposition with `prometheus-client` (the Prometheus project's own Rust client).
//!
//! The request path touches only atomics it already owns: the alias's [`RequestStats`]
//! (one status-class counter, one latency bucket, the latency sum) and the in-flight gauge.
//! Nothing is looked up by label on the hot path; the labels (`alias`, `app`, `class`) are
//! attached when `/metrics` is scraped, by a custom collector that walks the current host.
//! A single-app alias's `app` is its app name; a directory group's is `*` (its apps share
//! the alias's counters).
//!
//! Latency is the time to the response's head (a streamed body's tail is not counted).

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The latency histogram's upper bounds, in seconds.
pub(crate) const BUCKETS: [f64; 12] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// The status classes counted: 1xx to 5xx.
pub(crate) const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// One alias's request counters and latency histogram.
#[derive(Debug)]
pub struct RequestStats {
    by_class: [AtomicU64; 5],
    /// Non-cumulative: `buckets[i]` counts latencies in `(BUCKETS[i-1], BUCKETS[i]]`; the
    /// last slot those above every bound.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    /// WebSockets of the alias open now (held against its `max_websockets`).
    pub(crate) websockets: std::sync::atomic::AtomicUsize,
}

impl Default for RequestStats {
    fn default() -> Self {
        RequestStats::new()
    }
}

impl RequestStats {
    /// All zero.
    pub(crate) const fn new() -> RequestStats {
        RequestStats {
            by_class: [const { AtomicU64::new(0) }; 5],
            buckets: [const { AtomicU64::new(0) }; BUCKETS.len() + 1],
            sum_micros: AtomicU64::new(0),
            websockets: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// Counts one answered request: three relaxed atomic additions.
    pub(crate) fn record(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        let bucket = BUCKETS.iter().position(|&b| secs <= b).unwrap_or(BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Requests answered, by status class (1xx..5xx).
    pub(crate) fn by_class(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.by_class[i].load(Ordering::Relaxed))
    }

    /// Requests answered.
    pub(crate) fn total(&self) -> u64 {
        self.by_class().iter().sum()
    }

    /// (sum in seconds, count, cumulative buckets) for the exposition.
    pub(crate) fn histogram(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut acc = 0;
        let mut out = Vec::with_capacity(BUCKETS.len() + 1);
        for (i, bound) in BUCKETS.iter().chain([f64::INFINITY].iter()).enumerate() {
            acc += self.buckets[i].load(Ordering::Relaxed);
            out.push((*bound, acc));
        }
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        (sum, acc, out)
    }
}

/// The counters that are not per alias.
#[derive(Debug)]
pub(crate) struct Globals {
    /// Requests being answered now.
    pub in_flight: AtomicI64,
    /// Plugins loaded (instances initialised), at start, on demand and by swaps.
    pub plugin_loads: AtomicU64,
    /// Plugin loads refused (bad file, failed `init`, trust, digest).
    pub plugin_load_failures: AtomicU64,
    /// Configuration reloads applied.
    pub reloads: AtomicU64,
    /// Configuration reloads refused (invalid file, unusable logs or certificates).
    pub reload_failures: AtomicU64,
    /// Log lines lost: writes that failed, or lines dropped behind a stalled writer.
    pub log_lines_lost: AtomicU64,
}

/// The daemon's counters.
pub(crate) static GLOBAL: Globals = Globals {
    in_flight: AtomicI64::new(0),
    plugin_loads: AtomicU64::new(0),
    plugin_load_failures: AtomicU64::new(0),
    reloads: AtomicU64::new(0),
    reload_failures: AtomicU64::new(0),
    log_lines_lost: AtomicU64::new(0),
};

/// Requests no alias answered (400, 404, 414 before routing): alias `-`.
pub(crate) static UNROUTED: RequestStats = RequestStats::new();

/// Adds one to `counter`.
pub(crate) fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Counts a request in flight while it lives.
#[derive(Debug)]
pub(crate) struct InFlight(());

impl InFlight {
    /// One more request in flight.
    pub(crate) fn start() -> InFlight {
        GLOBAL.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        GLOBAL.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// When the daemon started, for uptime.
pub fn started() -> Instant {
    static STARTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *STARTED.get_or_init(Instant::now)
}

/// Resident set size in bytes, from `VmRSS` in `/proc/self/status`.
pub(crate) fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

/// Open file descriptors, from `/proc/self/fd`.
pub(crate) fn open_fds() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_buckets() {
        let s = RequestStats::new();
        let cases: &[(u16, u64)] =
            &[(200, 500), (204, 2_000), (404, 50_000), (503, 20_000_000), (99, 1), (700, 1)];
        for &(status, micros) in cases {
            s.record(status, Duration::from_micros(micros));
        }
        assert_eq!(s.by_class(), [1, 2, 0, 1, 2]);
        let (sum, count, buckets) = s.histogram();
        assert_eq!(count, 6);
        assert!((sum - 20.052_502).abs() < 1e-6, "{sum}");
        // <= 1 ms: 500 us and the two 1 us ones; <= 2.5 ms: + 2 ms; <= 50 ms: + 50 ms
        assert_eq!(buckets[0], (0.001, 3));
        assert_eq!(buckets[1], (0.0025, 4));
        assert_eq!(buckets[5], (0.05, 5));
        assert_eq!(buckets[BUCKETS.len() - 1], (10.0, 5));
        assert_eq!(buckets[BUCKETS.len()].1, 6);
    }
}
