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

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::reload::Live;

/// The latency histogram's upper bounds, in seconds.
pub const BUCKETS: [f64; 12] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// The status classes counted: 1xx to 5xx.
pub const CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// One alias's request counters and latency histogram.
#[derive(Debug)]
pub struct RequestStats {
    by_class: [AtomicU64; 5],
    /// Non-cumulative: `buckets[i]` counts latencies in `(BUCKETS[i-1], BUCKETS[i]]`; the
    /// last slot those above every bound.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Default for RequestStats {
    fn default() -> Self {
        RequestStats::new()
    }
}

impl RequestStats {
    /// All zero.
    pub const fn new() -> RequestStats {
        RequestStats {
            by_class: [const { AtomicU64::new(0) }; 5],
            buckets: [const { AtomicU64::new(0) }; BUCKETS.len() + 1],
            sum_micros: AtomicU64::new(0),
        }
    }

    /// Counts one answered request: three relaxed atomic additions.
    pub fn record(&self, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        self.by_class[class].fetch_add(1, Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        let bucket = BUCKETS.iter().position(|&b| secs <= b).unwrap_or(BUCKETS.len());
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
    }

    /// Requests answered, by status class (1xx..5xx).
    pub fn by_class(&self) -> [u64; 5] {
        std::array::from_fn(|i| self.by_class[i].load(Ordering::Relaxed))
    }

    /// Requests answered.
    pub fn total(&self) -> u64 {
        self.by_class().iter().sum()
    }

    /// (sum in seconds, count, cumulative buckets) for the exposition.
    fn histogram(&self) -> (f64, u64, Vec<(f64, u64)>) {
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
pub struct Globals {
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
pub static GLOBAL: Globals = Globals {
    in_flight: AtomicI64::new(0),
    plugin_loads: AtomicU64::new(0),
    plugin_load_failures: AtomicU64::new(0),
    reloads: AtomicU64::new(0),
    reload_failures: AtomicU64::new(0),
    log_lines_lost: AtomicU64::new(0),
};

/// Requests no alias answered (400, 404, 414 before routing): alias `-`.
pub static UNROUTED: RequestStats = RequestStats::new();

/// Adds one to `counter`.
pub fn inc(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

/// Counts a request in flight while it lives.
#[derive(Debug)]
pub struct InFlight(());

impl InFlight {
    /// One more request in flight.
    pub fn start() -> InFlight {
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
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
    let kib: u64 = line.trim().strip_suffix("kB")?.trim().parse().ok()?;
    Some(kib * 1024)
}

/// Open file descriptors, from `/proc/self/fd`.
pub fn open_fds() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

/// The collector: reads the atomics and the current host at scrape time.
#[derive(Debug)]
struct Daemon {
    live: Arc<Live>,
}

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(metric)
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let metric = encoder.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(metric)
}

impl Collector for Daemon {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let host = self.live.host();
        let mut rows: Vec<(&str, &str, &RequestStats)> = vec![("-", "-", &UNROUTED)];
        for m in &host.mounts {
            let app = match m.alias.kind {
                gatehouse_config::AliasKind::App => crate::host::alias_app_name(&m.alias.url),
                gatehouse_config::AliasKind::Group => "*",
            };
            rows.push((m.alias.url.as_str(), app, &m.stats));
        }
        {
            let mut family = encoder.encode_descriptor(
                "gatehouse_requests",
                "Requests answered, by alias, app and status class",
                None,
                MetricType::Counter,
            )?;
            for (alias, app, stats) in &rows {
                for (class, n) in CLASSES.iter().zip(stats.by_class()) {
                    let labels = [("alias", *alias), ("app", *app), ("class", *class)];
                    ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        {
            let mut family = encoder.encode_descriptor(
                "gatehouse_request_duration_seconds",
                "Time to the response head, by alias and app",
                None,
                MetricType::Histogram,
            )?;
            for (alias, app, stats) in &rows {
                let (sum, count, buckets) = stats.histogram();
                let labels = [("alias", *alias), ("app", *app)];
                family
                    .encode_family(&labels)?
                    .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                        sum, count, &buckets, None,
                    )?;
            }
        }
        let g = &GLOBAL;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        gauge(
            &mut encoder,
            "gatehouse_requests_in_flight",
            "Requests being answered now",
            g.in_flight.load(Ordering::Relaxed),
        )?;
        counter(
            &mut encoder,
            "gatehouse_plugin_loads",
            "Plugin instances loaded",
            load(&g.plugin_loads),
        )?;
        counter(
            &mut encoder,
            "gatehouse_plugin_load_failures",
            "Plugin loads refused",
            load(&g.plugin_load_failures),
        )?;
        counter(
            &mut encoder,
            "gatehouse_reloads",
            "Configuration reloads applied",
            load(&g.reloads),
        )?;
        counter(
            &mut encoder,
            "gatehouse_reload_failures",
            "Configuration reloads refused",
            load(&g.reload_failures),
        )?;
        counter(
            &mut encoder,
            "gatehouse_log_lines_lost",
            "Log lines lost to write failures or a stalled writer",
            load(&g.log_lines_lost),
        )?;
        gauge(
            &mut encoder,
            "gatehouse_plugins_loaded",
            "Plugin instances serving now",
            i64::try_from(host.loaded_count()).unwrap_or(i64::MAX),
        )?;
        gauge(
            &mut encoder,
            "gatehouse_uptime_seconds",
            "Seconds since the daemon started",
            i64::try_from(started().elapsed().as_secs()).unwrap_or(i64::MAX),
        )?;
        if let Some(rss) = rss_bytes() {
            gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                i64::try_from(rss).unwrap_or(i64::MAX),
            )?;
        }
        if let Some(fds) = open_fds() {
            gauge(
                &mut encoder,
                "process_open_fds",
                "Open file descriptors",
                i64::try_from(fds).unwrap_or(i64::MAX),
            )?;
        }
        Ok(())
    }
}

/// The registry served at `/metrics`.
pub fn registry(live: Arc<Live>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Daemon { live }));
    registry
}

/// The exposition (OpenMetrics text, which Prometheus reads).
pub fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
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
