//! The metrics listener (the Prometheus exposition, read with a real parser,
//! counted after a known number of requests) and the status page (JSON and HTML).

use std::net::SocketAddr;
use std::time::Duration;

use prometheus_parse::{Scrape, Value as Metric};
use serde_json::Value;

use crate::harness::{Daemon, get_from, wait_until};

fn start() -> (Daemon, SocketAddr) {
    let d = Daemon::start(
        "metrics: {listen: \"127.0.0.1:0\"}\naliases:\n  - url: /env\n    path: {environ}\n  - url: /apps/\n    path: '{dir}/apps'\n",
    );
    let line = d.stdout_line(Duration::from_secs(10)).expect("the metrics line");
    let addr = line
        .strip_prefix("gatehouse metrics on http://")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected line {line:?}"));
    (d, addr)
}

fn scrape(addr: SocketAddr) -> Scrape {
    let (status, text) = get_from(addr, "/metrics");
    assert_eq!(status, 200, "{text}");
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("a Prometheus exposition")
}

/// The value of the sample named `name` whose labels include `labels`.
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    let sample = s
        .samples
        .iter()
        .find(|x| x.metric == name && labels.iter().all(|(k, v)| x.labels.get(k) == Some(*v)))
        .unwrap_or_else(|| {
            let names: Vec<_> = s.samples.iter().map(|x| (&x.metric, &x.labels)).collect();
            panic!("no {name} {labels:?} in {names:#?}")
        });
    match &sample.value {
        Metric::Counter(v) | Metric::Gauge(v) | Metric::Untyped(v) => *v,
        Metric::Histogram(buckets) => buckets.last().map_or(0.0, |b| b.count),
        Metric::Summary(_) => panic!("{name} is a summary"),
    }
}

#[test]
fn counters_after_known_requests_and_the_status_page() {
    let (d, m) = start();
    for i in 0..3 {
        d.get(&format!("/env/{i}")).expect_status(200);
    }
    for _ in 0..2 {
        d.get("/nowhere").expect_status(404);
    }
    d.get("/apps/environ/x").expect_status(200);
    d.get("/apps/missing/x").expect_status(404);

    let s = scrape(m);
    let env = [("alias", "/env"), ("app", "env")];
    assert_eq!(value(&s, "gatehouse_requests_total", &[env[0], env[1], ("class", "2xx")]), 3.0);
    assert_eq!(value(&s, "gatehouse_requests_total", &[env[0], ("class", "4xx")]), 0.0);
    assert_eq!(value(&s, "gatehouse_requests_total", &[("alias", "-"), ("class", "4xx")]), 2.0);
    let group = [("alias", "/apps"), ("app", "*")];
    assert_eq!(value(&s, "gatehouse_requests_total", &[group[0], group[1], ("class", "2xx")]), 1.0);
    assert_eq!(value(&s, "gatehouse_requests_total", &[group[0], ("class", "4xx")]), 1.0);
    assert_eq!(value(&s, "gatehouse_request_duration_seconds_count", &env), 3.0);
    assert!(value(&s, "gatehouse_request_duration_seconds_sum", &env) > 0.0);
    // The plugin loads: /env at start, environ in the group on demand.
    assert!(value(&s, "gatehouse_plugin_loads_total", &[]) >= 2.0);
    assert_eq!(value(&s, "gatehouse_reloads_total", &[]), 0.0);
    assert_eq!(value(&s, "gatehouse_requests_in_flight", &[]), 0.0);
    assert!(value(&s, "process_resident_memory_bytes", &[]) > 1e6);
    assert!(value(&s, "process_open_fds", &[]) >= 3.0);

    // A reload and a refused one are counted.
    d.signal("HUP");
    wait_until("the reload", || d.log_count("configuration reloaded (SIGHUP)") == 1);
    // (The edit is seen by itself; a SIGHUP as well could be handled before or after it,
    // and each attempt counts.)
    std::fs::write(d.path("hosting.yaml"), "aliases: 3\n").unwrap();
    wait_until("the refusal", || d.log_count("configuration not applied") == 1);
    let s = scrape(m);
    assert_eq!(value(&s, "gatehouse_reloads_total", &[]), 1.0);
    assert_eq!(value(&s, "gatehouse_reload_failures_total", &[]), 1.0);
    // Counters survive a reload that left the alias unchanged.
    assert_eq!(value(&s, "gatehouse_requests_total", &[env[0], ("class", "2xx")]), 3.0);

    // The status page as JSON, both ways.
    let (status, text) = get_from(m, "/status.json");
    assert_eq!(status, 200, "{text}");
    let j: Value = serde_json::from_str(&text).unwrap();
    let (_, text2) = get_from(m, "/status?json");
    let j2: Value = serde_json::from_str(&text2).unwrap();
    assert_eq!(j["aliases"], j2["aliases"]);
    assert_eq!(j["version"].as_str(), Some(env!("CARGO_PKG_VERSION")));
    assert_eq!(j["abi_version"], 1);
    assert_eq!(j["pid"], d.pid());
    assert!(j["uptime_seconds"].is_u64());
    // The listen addresses as configured (here `--listen 127.0.0.1:0`).
    assert_eq!(j["listen"][0].as_str(), Some("http://127.0.0.1:0"), "{j:#}");
    let a = &j["aliases"][0];
    assert_eq!(a["url"], "/env");
    assert_eq!(a["kind"], "app");
    assert_eq!(a["requests"], 3);
    assert_eq!(a["requests_by_class"]["2xx"], 3);
    let p = &a["plugins"][0];
    assert_eq!(p["file"].as_str(), Some(crate::harness::artifacts().environ.to_str().unwrap()));
    assert_eq!(p["abi_version"], 1);
    assert_eq!(p["app"], "env");
    assert!(p["loaded_at"].as_str().is_some_and(|t| t.ends_with('Z')), "{p:#}");
    // Each plugin's own request count (a group's plugins share the alias's counters).
    assert_eq!(p["requests"], 3, "{p:#}");
    // environ promises never to block, and has kept its promise.
    assert_eq!((&p["never_blocks"], &p["promises_broken"]), (&true.into(), &0.into()), "{p:#}");
    let g = &j["aliases"][1];
    assert_eq!(
        (g["url"].as_str(), g["kind"].as_str(), g["requests"].as_u64()),
        (Some("/apps"), Some("group"), Some(2))
    );
    assert!(
        g["plugins"][0]["file"].as_str().is_some_and(|f| f.ends_with("apps/libenviron.so")),
        "{g:#}"
    );
    assert_eq!(g["plugins"][0]["requests"], 1, "the group's environ plugin: {g:#}");
    assert_eq!(j["requests_unrouted"], 2);

    // HTML for a person.
    let (status, html) = get_from(m, "/status");
    assert_eq!(status, 200);
    assert!(html.starts_with("<!DOCTYPE html>"), "{html}");
    assert!(html.contains("<td>/env</td>") && html.contains("libenviron.so"), "{html}");
    assert!(html.contains("3 requests, promises never to block)"), "{html}");
    // Nothing else is served there, and the apps are not.
    assert_eq!(get_from(m, "/env/").0, 404);
}

#[test]
fn livez_readyz_and_drain_delay_as_kubernetes_probes_use_them() {
    let mut d = Daemon::start(
        "metrics: {listen: \"127.0.0.1:0\"}\ndrain_delay: 30s\naliases:\n  - url: /a\n    path: {hello}\n  \
         - url: /late\n    path: late/libhello.so\n  - url: /iso\n    path: {hello}\n    \
         isolation: process\n    processes: 1\n",
    );
    let line = d.stdout_line(Duration::from_secs(10)).expect("the metrics line");
    let addr: SocketAddr = line
        .strip_prefix("gatehouse metrics on http://")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected line {line:?}"));
    assert_eq!(get_from(addr, "/livez"), (200, "ok\n".to_owned()));
    // A single app whose file is not there: not ready, and it says which.
    let (status, text) = get_from(addr, "/readyz");
    assert_eq!(status, 503, "{text}");
    assert!(text.contains("/late: its app is not loaded"), "{text}");
    crate::harness::install(&crate::harness::artifacts().hello, &d.path("late/libhello.so"));
    d.get("/late").expect_status(200);
    crate::harness::wait_for("/readyz", Duration::from_secs(20), || {
        match get_from(addr, "/readyz") {
            (200, t) if t == "ready\n" => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    // SIGTERM: not ready at once, still serving through drain_delay.
    d.signal("TERM");
    crate::harness::wait_for("/readyz to fail", Duration::from_secs(10), || {
        match get_from(addr, "/readyz") {
            (503, t) if t.contains("draining") => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(d.get("/a").text(), "Hello World!");
    assert_eq!(get_from(addr, "/livez").0, 200);
    assert!(d.log().contains("draining for 30s (drain_delay)"), "{}", d.log());
    // A second SIGTERM ends the drain: the daemon stops now, cleanly.
    let status = d.terminate();
    assert!(status.success(), "{status}\n{}", d.log());
    assert!(d.log().contains("SIGTERM again: stopping now"), "{}", d.log());
}
