//! FFI micro-benchmarks: one app call across the environ ABI and the reply's conversion into
//! an actix response, with the real plugins (`plugins::Plugin::load` of
//! target/release/libhello.so and libproducts.so, `call::invoke` with a oneshot,
//! `response::from_reply`); the thread-pool hand-off that `dispatch: pool` adds to every call;
//! and the daemon's whole request handler (`server::handle`: routing, input, environ,
//! dispatch, the call, the response) in process, without HTTP parsing or sockets.
//!
//! Needs the release plugins: `cargo build --release --workspace` first (or set
//! GATEHOUSE_BENCH_PLUGINS to the folder holding them); without them these benches are
//! skipped with a message.
//!
//! Run: `cargo bench -p gatehouse --bench ffi` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use gatehouse::call::pool::Pool;
use gatehouse::call::{self, BodySource, Call, Reply};
use gatehouse::host::Host;
use gatehouse::host::Live;
use gatehouse::http::response;
use gatehouse::logs::debug::DebugLogs;
use gatehouse::plugin::load::{InitArgs, Plugin};
use gatehouse::request::environ::{self, PairBuf, RouteVars};
use gatehouse::request::forwarded::Origin;
use gatehouse::request::input::Input;
use tokio::sync::oneshot;

mod common;

/// The folder holding the release plugins, if they are built.
fn plugins_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("GATEHOUSE_BENCH_PLUGINS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release"),
        PathBuf::from,
    );
    let dir = std::fs::canonicalize(dir).ok()?;
    if ["libhello.so", "libproducts.so", "libenviron.so"].iter().all(|f| dir.join(f).is_file()) {
        Some(dir)
    } else {
        eprintln!(
            "skipping: no release plugins in {} (run `cargo build --release --workspace`, or \
             set GATEHOUSE_BENCH_PLUGINS)",
            dir.display()
        );
        None
    }
}

/// A GET as wrk sends it: a Host header only.
fn wrk_get(uri: &str) -> HttpRequest {
    common::wrk_get(uri).to_http_request()
}

fn load(
    dir: &Path,
    file: &str,
    alias: &str,
    config_dir: &Path,
    env: &[(String, String)],
) -> Plugin {
    let args = InitArgs { alias, config_dir, env };
    match Plugin::load(&dir.join(file), &dir.join(file), &args, None) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

/// How the daemon calls the app: `inline` returns the reply, `pool` sends it over a oneshot
/// (here received on the same thread, without the hand-off).
#[derive(Clone, Copy)]
enum Delivery {
    Buffer,
    Stream,
}

fn call_once(plugin: &Plugin, call: &Call<'_>, delivery: Delivery) -> Reply {
    match delivery {
        Delivery::Buffer => call::invoke_inline(plugin, call, None),
        Delivery::Stream => {
            let (tx, mut rx) = oneshot::channel();
            call::invoke(plugin, call, BodySource::Empty, tx, std::time::Duration::from_secs(60));
            match rx.try_recv() {
                Ok(reply) => reply,
                Err(e) => panic!("no reply: {e}"),
            }
        }
    }
}

fn is_complete(reply: &Reply, want: &[u8]) -> bool {
    matches!(reply, Reply::Complete { head, body } if head.status == 200 && body == want)
}

fn invoke(c: &mut Criterion) {
    let Some(dir) = plugins_dir() else { return };
    let Ok(tmp) = tempfile::tempdir() else { return };
    let logs = DebugLogs::new(tmp.path().join("log"));
    let hello = load(&dir, "libhello.so", "/sample", tmp.path(), &[]);
    let db = vec![("PRODUCTS_DB".to_owned(), "products.sqlite3".to_owned())];
    let products = load(&dir, "libproducts.so", "/myapp", tmp.path(), &db);

    let aliases = match gatehouse_config::parse(
        "aliases:\n  - url: /sample\n    path: libhello.so\n  - url: /myapp\n    path: libproducts.so\n",
        &dir.join("bench.yaml"),
    ) {
        Ok(l) => l.config.aliases,
        Err(e) => panic!("{e}"),
    };
    let vars_of = |uri: &str, alias: &gatehouse_config::Alias, script: &str| {
        let route = RouteVars {
            script_name: script.as_bytes(),
            path_info: b"",
            script_filename: alias.path.as_os_str().as_encoded_bytes(),
        };
        {
            let req = wrk_get(uri);
            environ::cgi_vars(&req, route, alias, Origin::direct(&req))
        }
    };
    let sample_vars = vars_of("/sample", &aliases[0], "/sample");
    let myapp_vars = vars_of("/myapp?id=A001", &aliases[1], "/myapp");
    let no_input = Input::default();
    let mut params = PairBuf::default();
    params.push(b"id", b"A001");
    let id_input = Input { params, ..Input::default() };
    let hello_debug = logs.for_app("sample");
    let products_debug = logs.for_app("myapp");
    let hello_call = Call {
        vars: &sample_vars,
        input: &no_input,
        debug: &hello_debug,
        develop_mode: false,
        app: "sample",
        request_id: 1,
    };
    let products_call = Call {
        vars: &myapp_vars,
        input: &id_input,
        debug: &products_debug,
        develop_mode: false,
        app: "myapp",
        request_id: 1,
    };
    assert!(is_complete(&call_once(&hello, &hello_call, Delivery::Buffer), b"Hello World!"));
    assert!(is_complete(
        &call_once(&products, &products_call, Delivery::Buffer),
        br#"{"name": "clock", "price": 30}"#
    ));

    let mut g = c.benchmark_group("ffi");
    g.bench_function("invoke hello (inline)", |b| {
        b.iter(|| call_once(&hello, black_box(&hello_call), Delivery::Buffer));
    });
    g.bench_function("invoke hello (pool delivery, same thread)", |b| {
        b.iter(|| call_once(&hello, black_box(&hello_call), Delivery::Stream));
    });
    g.bench_function("invoke hello + from_reply", |b| {
        b.iter(|| {
            let reply = call_once(&hello, black_box(&hello_call), Delivery::Buffer);
            response::from_reply(reply, 1, false, None)
        });
    });
    g.bench_function("invoke products GET id=A001 (SQLite lookup)", |b| {
        b.iter(|| call_once(&products, black_box(&products_call), Delivery::Buffer));
    });
    g.finish();

    // The hand-off of `dispatch: pool`: a job to a pool thread and a oneshot reply back, with
    // nothing in the job but the send. (In the daemon the waiting side is an async task on
    // an actix worker, woken through its waker; here a blocked thread.)
    let pool = Pool::new("/bench", 8, None);
    let mut g = c.benchmark_group("dispatch");
    g.bench_function("pool round trip (submit, run, oneshot back)", |b| {
        b.iter(|| {
            let (tx, rx) = oneshot::channel::<u32>();
            if pool
                .submit(Box::new(move || {
                    let _ = tx.send(1);
                }))
                .is_err()
            {
                panic!("pool busy");
            }
            rx.blocking_recv()
        });
    });
    g.finish();
}

/// The seed's browser multipart POST to `uri`, as the request and its payload.
fn browser_post(uri: &str) -> (HttpRequest, web::Payload) {
    common::parts(common::browser_post(uri).set_payload(common::multipart_body()))
}

fn get_parts(uri: &str) -> (HttpRequest, web::Payload) {
    common::parts(common::wrk_get(uri))
}

/// The bench configuration: the demo apps from the release folder, `dispatch` as given.
fn host(dir: &Path, tmp: &Path, dispatch: &str) -> Arc<Host> {
    // Each host has its own folder: a plugin file must never be rewritten while it is
    // loaded (its pages are mapped: the process would crash).
    let tmp = tmp.join(dispatch);
    let group = tmp.join("wsgi");
    let _ = std::fs::create_dir_all(&group);
    let _ = std::fs::copy(dir.join("libhello.so"), group.join("libhello.so"));
    let yaml = format!(
        "dispatch: {dispatch}
logs:
  dir: log
aliases:
  - url: /sample
    path: {dir}/libhello.so
  - url: /myapp
    path: {dir}/libproducts.so
    env:
      PRODUCTS_DB: var/products.sqlite3
  - url: /environ
    path: {dir}/libenviron.so
  - url: /wsgi/
    path: wsgi/
",
        dir = dir.display()
    );
    let config = match gatehouse_config::parse(&yaml, &tmp.join("hosting.yaml")) {
        Ok(l) => l.config,
        Err(e) => panic!("{e}"),
    };
    let host = Arc::new(Host::new(config, None));
    assert_eq!(host.load_single_apps(), 0, "a demo app did not load");
    host
}

fn handler(c: &mut Criterion) {
    let Some(dir) = plugins_dir() else { return };
    let Ok(tmp) = tempfile::tempdir() else { return };
    let system = actix_web::rt::System::new();
    let cases: [(&str, &str, &[u8]); 5] = [
        ("GET /sample", "/sample", b"Hello World!"),
        ("GET /myapp?id=A001", "/myapp?id=A001", br#"{"name": "clock", "price": 30}"#),
        ("POST /myapp (browser multipart)", "/myapp", br#"{"name": "watch", "price": 120}"#),
        ("GET /wsgi/hello", "/wsgi/hello", b"Hello World!"),
        ("GET /environ", "/environ", b""),
    ];
    for dispatch in ["pool", "inline"] {
        let data = web::Data::new(Live::new(host(&dir, tmp.path(), dispatch)));
        let respond = |(req, payload): (HttpRequest, web::Payload)| -> HttpResponse {
            system.block_on(gatehouse::http::handle(req, payload, data.clone()))
        };
        // The response is dropped inside the timed routine, as the server drops it once
        // written (keeping a batch of them alive would drain actix's response-head pool).
        let serve = |parts| respond(parts).status().as_u16();
        let mut g = c.benchmark_group(format!("handler (dispatch: {dispatch})"));
        for (name, uri, want) in cases {
            let parts =
                || if name.starts_with("POST") { browser_post(uri) } else { get_parts(uri) };
            // Check the reply once (this also loads the group's plugin).
            let resp = respond(parts());
            assert_eq!(resp.status(), 200, "{dispatch} {name}");
            let body = system.block_on(actix_web::body::to_bytes(resp.into_body()));
            let Ok(body) = body else { panic!("{dispatch} {name}: no body") };
            assert!(want.is_empty() || body == want, "{dispatch} {name}: {body:?}");
            g.bench_function(name, |b| b.iter_batched(parts, serve, BatchSize::SmallInput));
        }
        g.finish();
    }
}

criterion_group!(benches, invoke, handler);
criterion_main!(benches);
