//! The metrics and status listener (`metrics: {listen: ...}`), in the spirit of Apache's
//! `server-status`: `/metrics` (the Prometheus exposition, see [`crate::metrics`]),
//! `/status` (HTML for a person) and `/status.json` or `/status?json` (the same for a
//! script): version, uptime, the route table with each loaded plugin's file, ABI version,
//! load time, and each alias's request counts.
//!
//! It is a separate actix server with one worker, outside the request path: nothing it does
//! costs the apps' requests more than the atomics they bump.

pub(crate) mod collector;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use gatehouse_config::AliasKind;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

use crate::host::Live;
use crate::metrics::{CLASSES, GLOBAL};
use crate::request::answer::Answer;

/// Binds `addr` and serves the metrics and status pages on it; returns where it listens.
pub fn start(live: Arc<Live>, addr: SocketAddr) -> std::io::Result<Vec<SocketAddr>> {
    let registry = web::Data::new(crate::admin::collector::registry(Arc::clone(&live)));
    let live = web::Data::from(live);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(live.clone())
            .app_data(registry.clone())
            .route("/metrics", web::get().to(metrics))
            .route("/status", web::get().to(status))
            .route("/status.json", web::get().to(status_json))
            .route("/livez", web::get().to(livez))
            .route("/readyz", web::get().to(readyz))
            .default_service(web::to(|| async {
                Answer::new(
                    404,
                    "not found: try /metrics, /status, /status.json, /livez or /readyz",
                )
                .response()
            }))
    })
    .disable_signals()
    .workers(1)
    // Scrapers and a status page need few; the rest of the descriptors are the listeners'.
    .max_connections(64)
    .bind(addr)
    .map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot listen on {addr} for metrics: {e}"))
    })?;
    let bound = server.addrs();
    actix_web::rt::spawn(server.run());
    Ok(bound)
}

/// Liveness (a Kubernetes `livenessProbe`): 200 while some HTTP worker's event loop has
/// run within the last 5 s (their heartbeats, not a request through a listener, so a full
/// listener is load and never a restart), else 503.
async fn livez() -> HttpResponse {
    let freshest = crate::http::alive::freshest();
    if crate::http::alive::is_alive(freshest, std::time::Duration::from_secs(10)) {
        HttpResponse::Ok().content_type("text/plain").body("ok\n")
    } else {
        let age =
            freshest.map_or_else(|| "never".to_owned(), |a| format!("{} ms ago", a.as_millis()));
        Answer::owned(503, format!("no HTTP worker's event loop has run since {age}")).response()
    }
}

/// Readiness (a `readinessProbe`): 200 when the configuration is loaded, every single app
/// is loaded (every isolated alias has a ready worker) and the daemon is not draining;
/// else 503 with the reasons, one per line.
async fn readyz(live: web::Data<Live>) -> HttpResponse {
    let mut reasons = live.host().not_ready();
    if live.draining() {
        reasons.insert(0, "draining: the daemon is stopping (drain_delay)".to_owned());
    }
    if reasons.is_empty() {
        HttpResponse::Ok().content_type("text/plain").body("ready\n")
    } else {
        Answer::owned(503, reasons.join("\n")).response()
    }
}

async fn metrics(registry: web::Data<Registry>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(crate::admin::collector::render(&registry))
}

async fn status(req: HttpRequest, live: web::Data<Live>) -> HttpResponse {
    let report = report(&live);
    if req.query_string() == "json" {
        return HttpResponse::Ok().json(report);
    }
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(html(&report))
}

async fn status_json(live: web::Data<Live>) -> HttpResponse {
    HttpResponse::Ok().json(report(&live))
}

/// Seconds since the epoch, and RFC 3339 text.
fn when(t: SystemTime) -> (u64, String) {
    let secs = t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    (
        secs,
        chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

/// The status as JSON: what both pages show.
pub(crate) fn report(live: &Live) -> Value {
    use std::sync::atomic::Ordering::Relaxed;
    let host = live.host();
    let uptime = crate::metrics::started().elapsed();
    let aliases: Vec<Value> = host
        .mounts
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let by_class: serde_json::Map<String, Value> = CLASSES
                .iter()
                .zip(m.stats.by_class())
                .map(|(c, n)| ((*c).to_owned(), json!(n)))
                .collect();
            let workers = m.workers.as_ref().map(|w| w.workers());
            let plugins: Vec<Value> = match &workers {
                // Isolated: what the workers reported, one entry per file.
                Some(workers) => merge_plugins(workers.iter().map(|w| &w.plugins)),
                None => host
                    .loaded_plugins(i)
                    .into_iter()
                    .map(|(file, l)| plugin_json(&file, &l))
                    .collect(),
            };
            json!({
                "url": m.alias.url,
                "kind": match m.alias.kind { AliasKind::App => "app", AliasKind::Group => "group" },
                "path": m.alias.path.display().to_string(),
                "requests": m.stats.total(),
                "requests_by_class": by_class,
                "plugins": plugins,
                // With `isolation: process`: its worker processes, the requests each got and
                // the plugins each has loaded.
                "workers": workers.map(|ws| {
                    ws.into_iter()
                        .map(|w| json!({"pid": w.pid, "requests": w.requests, "plugins": w.plugins}))
                        .collect::<Vec<_>>()
                }),
            })
        })
        .collect();
    let listen: Vec<String> =
        crate::http::endpoints(&host.config).iter().map(crate::http::Endpoint::url).collect();
    json!({
        "server": crate::request::environ::SERVER_SOFTWARE,
        "version": env!("CARGO_PKG_VERSION"),
        "abi_version": gatehouse_abi::ABI_VERSION,
        "pid": std::process::id(),
        "uptime_seconds": uptime.as_secs(),
        "config": host.config.file.display().to_string(),
        "listen": listen,
        "requests_in_flight": GLOBAL.in_flight.load(Relaxed),
        "requests_unrouted": crate::metrics::UNROUTED.total(),
        "plugin_loads": GLOBAL.plugin_loads.load(Relaxed),
        "plugin_load_failures": GLOBAL.plugin_load_failures.load(Relaxed),
        "reloads": GLOBAL.reloads.load(Relaxed),
        "reload_failures": GLOBAL.reload_failures.load(Relaxed),
        "log_lines_lost": GLOBAL.log_lines_lost.load(Relaxed),
        "rss_bytes": crate::metrics::rss_bytes(),
        "open_fds": crate::metrics::open_fds(),
        "aliases": aliases,
    })
}

/// One loaded plugin as the status shows it (also what a worker process reports of its
/// own, see `worker::child`).
pub(crate) fn plugin_json(file: &std::path::Path, l: &crate::host::Loaded) -> Value {
    let (secs, text) = when(l.loaded_at);
    json!({
        "file": file.display().to_string(),
        "app": &*l.app,
        "name": l.plugin.name(),
        "version": l.plugin.version(),
        "abi_version": gatehouse_abi::ABI_VERSION,
        "loaded_at": text,
        "loaded_at_unix": secs,
        "requests": l.requests.load(std::sync::atomic::Ordering::Relaxed),
        // The plugin's promise never to block, and how often a call broke it
        // (`dispatch: auto`).
        "never_blocks": l.plugin.never_blocks(),
        "promises_broken": l.inline.broken(),
    })
}

/// The plugins of an isolated alias: the workers' reports merged by file, the requests
/// summed, the rest from the latest load (the workers of a swap in progress may differ
/// for a moment; each worker's own list is under `workers`).
fn merge_plugins<'a>(reports: impl Iterator<Item = &'a Vec<Value>>) -> Vec<Value> {
    let mut by_file: std::collections::BTreeMap<String, Value> = std::collections::BTreeMap::new();
    for p in reports.flatten() {
        let Some(file) = p["file"].as_str() else { continue };
        match by_file.get_mut(file) {
            None => {
                by_file.insert(file.to_owned(), p.clone());
            }
            Some(seen) => {
                let requests =
                    seen["requests"].as_u64().unwrap_or(0) + p["requests"].as_u64().unwrap_or(0);
                if p["loaded_at_unix"].as_u64() > seen["loaded_at_unix"].as_u64() {
                    *seen = p.clone();
                }
                seen["requests"] = json!(requests);
            }
        }
    }
    by_file.into_values().collect()
}

/// Text for HTML.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A JSON value as page text.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => escape(s),
        Value::Null => "-".to_owned(),
        other => escape(&other.to_string()),
    }
}

/// The status page for a person.
fn html(r: &Value) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Gatehouse status</title>\
         <style>body{{font-family:sans-serif}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #999;padding:2px 6px;text-align:left}}</style></head><body>\n\
         <h1>{} status</h1>\n<p>pid {}, up {} s, configuration {}</p>\n<p>listening on {}</p>\n\
         <p>{} requests in flight; {} unrouted; plugin loads {} ({} refused); reloads {} ({} \
         refused); log lines lost {}; RSS {} bytes; {} open files</p>\n",
        text(&r["server"]),
        text(&r["pid"]),
        text(&r["uptime_seconds"]),
        text(&r["config"]),
        r["listen"]
            .as_array()
            .map_or(String::new(), |l| { l.iter().map(text).collect::<Vec<_>>().join(", ") }),
        text(&r["requests_in_flight"]),
        text(&r["requests_unrouted"]),
        text(&r["plugin_loads"]),
        text(&r["plugin_load_failures"]),
        text(&r["reloads"]),
        text(&r["reload_failures"]),
        text(&r["log_lines_lost"]),
        text(&r["rss_bytes"]),
        text(&r["open_fds"]),
    );
    out.push_str(
        "<h2>Routes</h2>\n<table><tr><th>alias</th><th>kind</th><th>path</th><th>requests</th>\
         <th>1xx</th><th>2xx</th><th>3xx</th><th>4xx</th><th>5xx</th><th>plugins: file, app, \
         version, ABI, loaded at</th></tr>\n",
    );
    for a in r["aliases"].as_array().into_iter().flatten() {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td>",
            text(&a["url"]),
            text(&a["kind"]),
            text(&a["path"]),
            text(&a["requests"])
        );
        for c in CLASSES {
            let _ = write!(out, "<td>{}</td>", text(&a["requests_by_class"][c]));
        }
        out.push_str("<td>");
        for p in a["plugins"].as_array().into_iter().flatten() {
            let promise = match (p["never_blocks"].as_bool(), p["promises_broken"].as_u64()) {
                (Some(true), Some(0)) => ", promises never to block".to_owned(),
                (Some(true), Some(n)) => format!(", promises never to block (broken {n} times)"),
                _ => String::new(),
            };
            let _ = write!(
                out,
                "{} ({} {} {}, ABI {}, {}, {} requests{promise})<br>",
                text(&p["file"]),
                text(&p["app"]),
                text(&p["name"]),
                text(&p["version"]),
                text(&p["abi_version"]),
                text(&p["loaded_at"]),
                text(&p["requests"])
            );
        }
        for w in a["workers"].as_array().into_iter().flatten() {
            let _ = write!(
                out,
                "worker process {} ({} requests)<br>",
                text(&w["pid"]),
                text(&w["requests"])
            );
        }
        out.push_str("</td></tr>\n");
    }
    out.push_str("</table>\n<p><a href=\"/status.json\">JSON</a> · <a href=\"/metrics\">metrics</a></p></body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_reports_merge_per_file() {
        let p = |file: &str, version: &str, at: u64, requests: u64| json!({"file": file, "version": version, "loaded_at_unix": at, "requests": requests});
        // (each worker's report, the merged (file, version, requests))
        type Case = (Vec<Vec<Value>>, Vec<(&'static str, &'static str, u64)>);
        let cases: Vec<Case> = vec![
            (vec![], vec![]),
            (vec![vec![], vec![]], vec![]),
            (vec![vec![p("/a", "1", 10, 4)]], vec![("/a", "1", 4)]),
            // the same file in two workers: requests summed
            (vec![vec![p("/a", "1", 10, 4)], vec![p("/a", "1", 11, 3)]], vec![("/a", "1", 7)]),
            // a swap in progress: the latest load's version, requests summed
            (vec![vec![p("/a", "2", 20, 1)], vec![p("/a", "1", 10, 5)]], vec![("/a", "2", 6)]),
            // different files, sorted by file; an entry without a file is skipped
            (
                vec![vec![p("/b", "1", 1, 1), json!({"requests": 9})], vec![p("/a", "1", 1, 2)]],
                vec![("/a", "1", 2), ("/b", "1", 1)],
            ),
        ];
        for (reports, want) in cases {
            let got: Vec<(String, String, u64)> = merge_plugins(reports.iter())
                .iter()
                .map(|v| {
                    let s = |k: &str| v[k].as_str().unwrap_or_default().to_owned();
                    (s("file"), s("version"), v["requests"].as_u64().unwrap_or(0))
                })
                .collect();
            let want: Vec<(String, String, u64)> =
                want.iter().map(|(f, v, n)| ((*f).to_owned(), (*v).to_owned(), *n)).collect();
            assert_eq!(got, want, "{reports:?}");
        }
    }

    #[test]
    fn html_escapes() {
        let cases = [("a<b>&\"'", "a&lt;b&gt;&amp;&quot;&#39;"), ("/plain/path", "/plain/path")];
        for (raw, want) in cases {
            assert_eq!(escape(raw), want);
        }
    }
}
