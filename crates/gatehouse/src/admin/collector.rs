//! The Prometheus collector behind `/metrics`: reads the counters of [`crate::metrics`] and
//! the current host at scrape time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use crate::host::Live;
use crate::metrics::{CLASSES, GLOBAL, RequestStats, UNROUTED, open_fds, rss_bytes, started};

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
                gatehouse_config::AliasKind::App => {
                    crate::request::route::alias_app_name(&m.alias.url)
                }
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
        {
            let mut family = encoder.encode_descriptor(
                "gatehouse_websockets_open",
                "WebSockets open now, by alias and app",
                None,
                MetricType::Gauge,
            )?;
            for (alias, app, stats) in rows.iter().skip(1) {
                let n = i64::try_from(stats.websockets.load(Ordering::Relaxed)).unwrap_or(0);
                let labels = [("alias", *alias), ("app", *app)];
                ConstGauge::new(n).encode(family.encode_family(&labels)?)?;
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
pub(crate) fn registry(live: Arc<Live>) -> Registry {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Daemon { live }));
    registry
}

/// The exposition (OpenMetrics text, which Prometheus reads).
pub(crate) fn render(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, registry);
    out
}
