//! Params micro-benchmarks: the seed's GET query string (`input::query_params`), and the
//! seed's browser multipart POST and an urlencoded POST read and parsed by `input::read_form`
//! (under an actix runtime, as in the daemon: the body comes from an in-memory payload), plus
//! `input::body_kind` (how a body is read, from the headers).
//!
//! Run: `cargo bench -p gatehouse --bench params` (add `-- --quick` for a short run).

use std::hint::black_box;

use actix_web::test::TestRequest;
use actix_web::{HttpRequest, web};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use gatehouse::request::environ::PairBuf;
use gatehouse::request::input::{self, BodyKind, Input, Limits};

mod common;

use common::{BOUNDARY, multipart_body};

/// A POST of `body` with `content_type`, as the request and its payload.
fn post(content_type: &str, body: &str) -> (HttpRequest, web::Payload) {
    common::parts(
        TestRequest::post()
            .uri("/myapp")
            .insert_header(("Host", "127.0.0.1:8080"))
            .insert_header(("Content-Type", content_type.to_owned()))
            .set_payload(body.to_owned()),
    )
}

fn query(c: &mut Criterion) {
    let mut g = c.benchmark_group("params/query_params");
    g.bench_function("id=A001", |b| {
        b.iter(|| {
            let mut params = PairBuf::default();
            input::query_params(black_box("id=A001"), &mut params);
            params
        });
    });
    g.finish();
}

fn forms(c: &mut Criterion) {
    let system = actix_web::rt::System::new();
    let upload_dir = std::env::temp_dir();
    let limits = Limits {
        max_body: 10 << 20,
        max_upload: 10 << 20,
        upload_dir: &upload_dir,
        upload_owner: None,
        body_timeout: std::time::Duration::from_secs(20),
        min_rate: 500,
        body_timeout_max: std::time::Duration::from_secs(60),
        budget: &gatehouse::spool::UPLOADS,
        upload_budget: u64::MAX,
    };
    let multipart_type = format!("multipart/form-data; boundary={BOUNDARY}");
    let multipart = multipart_body();
    let cases = [
        ("browser multipart id=A002", multipart_type.as_str(), multipart.as_str()),
        ("urlencoded id=A002", "application/x-www-form-urlencoded", "id=A002"),
    ];

    let mut g = c.benchmark_group("params/body_kind");
    for (name, content_type, body) in cases {
        let (req, _) = post(content_type, body);
        g.bench_function(name, |b| b.iter(|| input::body_kind(black_box(&req), 10 << 20)));
    }
    g.finish();

    let mut g = c.benchmark_group("params/read_form");
    for (name, content_type, body) in cases {
        let (req, _) = post(content_type, body);
        let Ok(kind) = input::body_kind(&req, 10 << 20) else { panic!("{name}: body_kind") };
        let read = |(req, payload): (HttpRequest, web::Payload)| {
            system.block_on(async move {
                let mut input = Input::default();
                match input::read_form(&req, payload, kind, limits, &mut input).await {
                    Ok(()) => input.params.len(),
                    Err(e) => panic!("{name}: {e}"),
                }
            })
        };
        assert_eq!(read(post(content_type, body)), 1, "{name}");
        assert!(matches!(kind, BodyKind::Multipart | BodyKind::Urlencoded));
        g.bench_function(name, |b| {
            b.iter_batched(|| post(content_type, body), read, BatchSize::SmallInput);
        });
    }
    // What the batched setup costs by itself (building the test request and its payload),
    // for reading the numbers above: it is not included in them.
    g.bench_function("(setup only: TestRequest + payload)", |b| {
        b.iter(|| post(&multipart_type, &multipart));
    });
    g.bench_function("(an empty System::block_on)", |b| b.iter(|| system.block_on(async {})));
    g.finish();
}

criterion_group!(benches, query, forms);
criterion_main!(benches);
