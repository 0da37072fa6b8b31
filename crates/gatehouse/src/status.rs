//! The metrics and status listener (`metrics: {listen: ...}`), in the spirit of Apache's
//! `server-status`: `/metrics` (the Prometheus exposition, see [`crate::metrics`]),
//! `/status` (HTML for a person) and `/status.json` or `/status?json` (the same for a
//! script): version, uptime, the route table with each loaded plugin's file, ABI version,
//! load time, and each alias's request counts.
//!
//! It is a separate actix server with one worker, outside the request path: nothing it does
//! costs the apps' requests more than the atomics they bump.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use gatehouse_config::AliasKind;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};

use crate::metrics::{CLASSES, GLOBAL};
use crate::reload::Live;
use crate::response::plain;

/// Binds `addr` and serves the metrics and status pages on it; returns where it listens.
pub fn start(live: Arc<Live>, addr: SocketAddr) -> std::io::Result<Vec<SocketAddr>> {
    let registry = web::Data::new(crate::metrics::registry(Arc::clone(&live)));
    let live = web::Data::from(live);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(live.clone())
            .app_data(registry.clone())
            .route("/metrics", web::get().to(metrics))
            .route("/status", web::get().to(status))
            .route("/status.json", web::get().to(status_json))
            .default_service(web::to(|| async {
                plain(404, "not found: try /metrics, /status or /status.json")
            }))
    })
    .disable_signals()
    .workers(1)
    .bind(addr)
    .map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot listen on {addr} for metrics: {e}"))
    })?;
    let bound = server.addrs();
    actix_web::rt::spawn(server.run());
    Ok(bound)
}

async fn metrics(registry: web::Data<Registry>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(crate::metrics::render(&registry))
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
pub fn report(live: &Live) -> Value {
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
            let plugins: Vec<Value> = host
                .loaded_plugins(i)
                .into_iter()
                .map(|(file, l)| {
                    let (secs, text) = when(l.loaded_at);
                    json!({
                        "file": file.display().to_string(),
                        "app": &*l.app,
                        "name": l.plugin.name(),
                        "version": l.plugin.version(),
                        "abi_version": gatehouse_abi::ABI_VERSION,
                        "loaded_at": text,
                        "loaded_at_unix": secs,
                        "requests": l.requests.load(Relaxed),
                    })
                })
                .collect();
            json!({
                "url": m.alias.url,
                "kind": match m.alias.kind { AliasKind::App => "app", AliasKind::Group => "group" },
                "path": m.alias.path.display().to_string(),
                "requests": m.stats.total(),
                "requests_by_class": by_class,
                "plugins": plugins,
                // With `isolation: process`: its worker processes and the requests each got.
                "workers": m.workers.as_ref().map(|w| {
                    w.workers()
                        .into_iter()
                        .map(|(pid, requests)| json!({"pid": pid, "requests": requests}))
                        .collect::<Vec<_>>()
                }),
            })
        })
        .collect();
    let listen: Vec<String> =
        crate::server::endpoints(&host.config).iter().map(crate::server::Endpoint::url).collect();
    json!({
        "server": crate::environ::SERVER_SOFTWARE,
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
            let _ = write!(
                out,
                "{} ({} {} {}, ABI {}, {}, {} requests)<br>",
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
    fn html_escapes() {
        let cases = [("a<b>&\"'", "a&lt;b&gt;&amp;&quot;&#39;"), ("/plain/path", "/plain/path")];
        for (raw, want) in cases {
            assert_eq!(escape(raw), want);
        }
    }
}
