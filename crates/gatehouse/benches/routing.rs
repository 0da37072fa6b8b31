//! Routing micro-benchmarks: `route::normalize` + `Table::route` for the seed's URLs, in the
//! demo configuration (hosting.yaml's four aliases) and in tables of 1, 100 and 1,000 aliases
//! where the alias that serves the URL is declared last (the worst case for first-match
//! routing); and a directory group's file lookup (`resolve_group_file`, which asks the
//! filesystem on every request).
//!
//! Run: `cargo bench -p gatehouse --bench routing` (add `-- --quick` for a short run).

use std::hint::black_box;
use std::path::PathBuf;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gatehouse::request::route::{self, Mount, Table};
use gatehouse_config::AliasKind;

fn mount(url: &str, kind: AliasKind) -> Mount {
    Mount { url: url.to_owned(), trailing_slash: false, kind, path: PathBuf::from("/srv/app.so") }
}

/// `n` aliases: `n - 1` others, then `url` last.
fn table(n: usize, url: &str, kind: AliasKind) -> Table {
    let mut mounts: Vec<Mount> =
        (0..n - 1).map(|i| mount(&format!("/app{i:04}"), AliasKind::App)).collect();
    mounts.push(mount(url, kind));
    Table::new(mounts)
}

/// The demo hosting.yaml's aliases, in its order.
fn demo_table() -> Table {
    Table::new(vec![
        mount("/sample", AliasKind::App),
        mount("/myapp", AliasKind::App),
        mount("/environ", AliasKind::App),
        mount("/wsgi", AliasKind::Group),
    ])
}

/// The seed's requests: (name, raw URL path, the alias that serves it, its kind). The query
/// string is not part of routing (`?id=A001` is split off by the HTTP layer).
const SEED_URLS: [(&str, &[u8], &str, AliasKind); 3] = [
    ("GET /sample", b"/sample", "/sample", AliasKind::App),
    ("GET /myapp?id=A001", b"/myapp", "/myapp", AliasKind::App),
    ("GET /wsgi/hello", b"/wsgi/hello", "/wsgi", AliasKind::Group),
];

fn route_once(t: &Table, raw: &[u8]) -> bool {
    match route::normalize(black_box(raw)) {
        Ok(path) => !matches!(black_box(t.route(&path)), route::Route::NoMatch),
        Err(_) => false,
    }
}

fn routing(c: &mut Criterion) {
    let demo = demo_table();
    let mut g = c.benchmark_group("routing/demo config");
    for (name, raw, _, _) in SEED_URLS {
        assert!(route_once(&demo, raw), "{name} does not route");
        g.bench_function(name, |b| b.iter(|| route_once(&demo, raw)));
    }
    g.finish();

    for (name, raw, url, kind) in SEED_URLS {
        let mut g = c.benchmark_group(format!("routing/{name}, its alias last of N"));
        for n in [1, 100, 1000] {
            let t = table(n, url, kind);
            assert!(route_once(&t, raw), "{name} does not route in a table of {n}");
            g.bench_with_input(BenchmarkId::from_parameter(n), &t, |b, t| {
                b.iter(|| route_once(t, raw));
            });
        }
        g.finish();
    }

    let mut g = c.benchmark_group("routing/parts");
    g.bench_function("normalize /wsgi/hello", |b| {
        b.iter(|| route::normalize(black_box(b"/wsgi/hello")));
    });
    let path = b"/wsgi/hello".to_vec();
    g.bench_function("route /wsgi/hello (demo config)", |b| {
        b.iter(|| !matches!(demo.route(black_box(&path)), route::Route::NoMatch));
    });
    g.finish();
}

fn group_lookup(c: &mut Criterion) {
    let dir = match tempfile::tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("skipping the group lookup bench: no temporary folder: {e}");
            return;
        }
    };
    if let Err(e) = std::fs::write(dir.path().join("libhello.so"), b"") {
        eprintln!("skipping the group lookup bench: {e}");
        return;
    }
    let canonical = match std::fs::canonicalize(dir.path()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("skipping the group lookup bench: {e}");
            return;
        }
    };
    assert!(route::resolve_group_file(&canonical, b"hello").is_ok());
    let mut g = c.benchmark_group("routing/group file lookup");
    g.bench_function("resolve_group_file hello (libhello.so)", |b| {
        b.iter(|| route::resolve_group_file(black_box(&canonical), black_box(b"hello")));
    });
    g.finish();
}

criterion_group!(benches, routing, group_lookup);
criterion_main!(benches);
