//! Environ micro-benchmarks: `environ::cgi_vars` (the CGI/WSGI variables of a request, as
//! the daemon builds them before every app call) for the seed's requests, over an
//! `actix_web::test::TestRequest` that carries the headers the benchmark's clients send; and
//! `PairBuf::fill_abi` (the pointer array the app gets, into a reused buffer).
//!
//! Run: `cargo bench -p gatehouse --bench environ` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::path::Path;

use actix_web::HttpRequest;
use criterion::{Criterion, criterion_group, criterion_main};
use gatehouse::request::environ::{self, RouteVars};
use gatehouse::request::forwarded::Origin;
use gatehouse_config::Alias;

mod common;

/// The seed's browser POST headers (tests/e2e/seed_apps.rs), Content-Length included.
fn browser_post() -> HttpRequest {
    let body = common::multipart_body();
    common::browser_post("/myapp")
        .insert_header(("Content-Length", body.len().to_string()))
        .to_http_request()
}

/// A GET as wrk sends it: a Host header only.
fn wrk_get(uri: &str) -> HttpRequest {
    common::wrk_get(uri).to_http_request()
}

/// The demo configuration's aliases (/sample, /myapp with its PRODUCTS_DB env, /environ).
fn demo_aliases() -> Vec<Alias> {
    let yaml = "aliases:
  - url: /sample
    path: plugins/libhello.so
  - url: /myapp
    path: plugins/libproducts.so
    env:
      PRODUCTS_DB: var/products.sqlite3
  - url: /environ
    path: plugins/libenviron.so
";
    match gatehouse_config::parse(yaml, Path::new("/srv/gatehouse/hosting.yaml")) {
        Ok(loaded) => loaded.config.aliases,
        Err(e) => panic!("the bench configuration does not parse: {e}"),
    }
}

fn cgi_vars(c: &mut Criterion) {
    let aliases = demo_aliases();
    let cases = [
        ("GET /sample (wrk)", wrk_get("/sample"), &aliases[0], "/sample", ""),
        ("GET /myapp?id=A001 (wrk)", wrk_get("/myapp?id=A001"), &aliases[1], "/myapp", ""),
        ("POST /myapp (browser multipart)", browser_post(), &aliases[1], "/myapp", ""),
        ("GET /environ (wrk)", wrk_get("/environ"), &aliases[2], "/environ", ""),
    ];
    let mut g = c.benchmark_group("environ/cgi_vars");
    for (name, req, alias, script_name, path_info) in &cases {
        let file = alias.path.as_os_str().as_encoded_bytes();
        let route = RouteVars {
            script_name: script_name.as_bytes(),
            path_info: path_info.as_bytes(),
            script_filename: file,
        };
        let vars = environ::cgi_vars(req, route, alias, Origin::direct(req));
        assert!(vars.get(b"REQUEST_METHOD").is_some());
        g.bench_function(*name, |b| {
            b.iter(|| environ::cgi_vars(black_box(req), route, alias, Origin::direct(req)))
        });
    }
    g.finish();

    let (_, req, alias, script_name, _) = &cases[2];
    let route = RouteVars {
        script_name: script_name.as_bytes(),
        path_info: b"",
        script_filename: alias.path.as_os_str().as_encoded_bytes(),
    };
    let vars = environ::cgi_vars(req, route, alias, Origin::direct(req));
    let mut g = c.benchmark_group("environ/fill_abi");
    g.bench_function(format!("POST /myapp (browser multipart), {} vars", vars.len()), |b| {
        let mut abi = Vec::new();
        b.iter(|| black_box(&vars).fill_abi(&mut abi));
    });
    g.finish();
}

criterion_group!(benches, cgi_vars);
criterion_main!(benches);
