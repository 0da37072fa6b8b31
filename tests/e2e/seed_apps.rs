//! The seed article's two apps, answered exactly as the article shows: `sample.py` (Hello
//! World!) and `myapp.py` (products by id over GET and a browser's POST), both as a single
//! app and through a directory group, and the seed's develop-mode debug log.

use crate::harness::{Daemon, debug_messages, wait_debug_messages};

/// The article's setup: `/sample` and `/myapp` single apps, `/wsgi/` a directory group.
const SEED: &str = "\
develop_mode: false
logs:
  dir: LOGS
aliases:
  - url: /sample
    path: {hello}
  - url: /myapp
    path: {products}
    env:
      PRODUCTS_DB: var/products.sqlite3
  - url: /sample-c
    path: {hello-c}
  - url: /wsgi/
    path: apps/
    env:
      PRODUCTS_DB: var/group-products.sqlite3
";

const BOUNDARY: &str = "----WebKitFormBoundary8iNBS40xtXFszuZN";

/// The seed's HTML form (`<input name="id">`, value A002) as Chrome posts it, byte for byte.
fn browser_form_post(d: &Daemon, target: &str) -> (crate::harness::Response, usize) {
    let body = format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"id\"\r\n\r\nA002\r\n--{BOUNDARY}--\r\n"
    );
    let mut raw = format!(
        "POST {target} HTTP/1.1\r\n\
         Host: {addr}\r\n\
         Connection: close\r\n\
         Content-Length: {len}\r\n\
         Cache-Control: max-age=0\r\n\
         Origin: http://{addr}\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\
         User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/89.0.4389.114 Safari/537.36\r\n\
         Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8\r\n\
         Referer: http://{addr}/form.html\r\n\
         Accept-Encoding: gzip, deflate\r\n\
         Accept-Language: ja,en-US;q=0.9,en;q=0.8\r\n\
         \r\n",
        addr = d.addr,
        len = body.len(),
    )
    .into_bytes();
    raw.extend_from_slice(body.as_bytes());
    (d.request(&raw), body.len())
}

#[track_caller]
fn assert_hello(r: &crate::harness::Response) {
    r.expect_status(200);
    assert_eq!(r.body, b"Hello World!", "{r}");
    assert_eq!(r.header_all("Content-Type"), ["text/plain"], "{r}");
    assert_eq!(r.header("Content-Length"), Some("12"), "{r}");
}

#[track_caller]
fn assert_product(r: &crate::harness::Response, json: &str) {
    r.expect_status(200);
    assert_eq!(r.text(), json, "{r}");
    assert_eq!(r.header_all("Content-Type"), ["application/json"], "{r}");
    assert_eq!(r.header("Content-Length"), Some(json.len().to_string().as_str()), "{r}");
}

#[test]
fn sample_says_hello_world_as_a_single_app_and_in_a_group() {
    let d = Daemon::start(SEED);
    assert_hello(&d.get("/sample"));
    assert_hello(&d.get("/wsgi/hello"));
    // The group finds `libhello.so` for the name `hello`, as WSGIScriptAlias finds hello.py.
    assert_hello(&d.get("/wsgi/hello/anything?x=1"));
    // The same app written in C against gatehouse.h only, as a single app and in the group.
    assert_hello(&d.get("/sample-c"));
    assert_hello(&d.get("/wsgi/hello_c"));

    for url in ["/sample", "/sample-c"] {
        let head = d.send("HEAD", url, &[], b"");
        head.expect_status(200);
        assert_eq!(head.header("Content-Length"), Some("12"), "{head}");
        assert_eq!(head.header("Content-Type"), Some("text/plain"), "{head}");
        assert!(head.body.is_empty(), "HEAD reply has a body: {head}");
    }
}

#[test]
fn products_answer_get_and_the_browsers_post_byte_for_byte() {
    let d = Daemon::start(SEED);
    let clock = r#"{"name": "clock", "price": 30}"#;
    let watch = r#"{"name": "watch", "price": 120}"#;

    assert_product(&d.get("/myapp?id=A001"), clock);
    assert_product(&browser_form_post(&d, "/myapp").0, watch);
    assert_product(&d.post("/myapp", "application/x-www-form-urlencoded", b"id=A002"), watch);
    assert_product(&d.get("/myapp?id=A002"), watch);

    // The same app through the directory group.
    assert_product(&d.get("/wsgi/products?id=A001"), clock);
    assert_product(&browser_form_post(&d, "/wsgi/products").0, watch);

    // Where the seed crashes with a KeyError, the app answers clearly.
    let unknown = d.get("/myapp?id=A999");
    unknown.expect_status(404);
    assert_eq!(unknown.header("Content-Type"), Some("application/json"), "{unknown}");
    let j = unknown.json();
    assert_eq!(j["id"], "A999", "{unknown}");
    assert!(j["error"].as_str().is_some_and(|e| e.contains("A999")), "{unknown}");

    for missing in [
        d.get("/myapp"),
        d.get("/myapp?id="),
        d.get("/myapp?other=A001"),
        d.post("/myapp", "application/x-www-form-urlencoded", b"name=A001"),
    ] {
        missing.expect_status(400);
        assert_eq!(missing.header("Content-Type"), Some("application/json"), "{missing}");
        assert!(missing.json()["error"].as_str().is_some_and(|e| e.contains("id")), "{missing}");
    }

    // The store is the SQLite file the alias's `env` names, relative to the config's folder
    // (not the daemon's working directory), one per alias.
    for db in ["var/products.sqlite3", "var/group-products.sqlite3"] {
        let bytes = std::fs::read(d.path(db)).unwrap_or_else(|e| panic!("{db}: {e}"));
        assert!(bytes.starts_with(b"SQLite format 3\0"), "{db} is not an SQLite file");
    }
    let cwd: Vec<_> = std::fs::read_dir(d.path("cwd")).unwrap().collect();
    assert!(cwd.is_empty(), "files appeared in the daemon's working directory: {cwd:?}");
}

#[test]
fn develop_mode_off_logs_only_what_must_be_logged() {
    let d = Daemon::start(SEED);
    let log = d.path("LOGS/myapp/debug.log");
    d.get("/myapp?id=A001").expect_status(200);
    assert_eq!(debug_messages(&log), Vec::<String>::new(), "a GET logged with develop_mode off");

    let (r, len) = browser_form_post(&d, "/myapp");
    r.expect_status(200);
    assert_eq!(wait_debug_messages(&log, 1), [format!("content_len: {len}")]);

    d.post("/myapp", "application/x-www-form-urlencoded", b"id=A002").expect_status(200);
    assert_eq!(
        wait_debug_messages(&log, 2),
        [format!("content_len: {len}"), "content_len: 7".to_owned()]
    );

    // A group's plugin logs under its NAME.
    d.post("/wsgi/products", "application/x-www-form-urlencoded", b"id=A001").expect_status(200);
    assert_eq!(wait_debug_messages(&d.path("LOGS/products/debug.log"), 1), ["content_len: 7"]);
}

#[test]
fn develop_mode_on_logs_the_query_string_and_post_data() {
    let d = Daemon::start(&SEED.replace("develop_mode: false", "develop_mode: true"));
    let log = d.path("LOGS/myapp/debug.log");
    d.get("/myapp?id=A001").expect_status(200);
    assert_eq!(wait_debug_messages(&log, 1), ["QUERY_STRING: id=A001"]);
    d.post("/myapp", "application/x-www-form-urlencoded", b"id=A002").expect_status(200);
    assert_eq!(
        wait_debug_messages(&log, 3),
        ["QUERY_STRING: id=A001", "content_len: 7", r#"POST data: [("id", "A002")]"#]
    );
}

#[test]
fn develop_mode_per_alias_overrides_the_global_one() {
    let yaml = "\
develop_mode: true
logs: {dir: LOGS}
aliases:
  - url: /loud
    path: {products}
    env: {PRODUCTS_DB: var/p.sqlite3}
  - url: /quiet
    path: {products}
    develop_mode: false
    env: {PRODUCTS_DB: var/p.sqlite3}
";
    let d = Daemon::start(yaml);
    d.get("/loud?id=A001").expect_status(200);
    d.get("/quiet?id=A001").expect_status(200);
    assert_eq!(wait_debug_messages(&d.path("LOGS/loud/debug.log"), 1), ["QUERY_STRING: id=A001"]);
    assert_eq!(debug_messages(&d.path("LOGS/quiet/debug.log")), Vec::<String>::new());
    d.post("/quiet", "application/x-www-form-urlencoded", b"id=A001").expect_status(200);
    assert_eq!(wait_debug_messages(&d.path("LOGS/quiet/debug.log"), 1), ["content_len: 7"]);

    let yaml = "\
develop_mode: false
logs: {dir: other/logs}
aliases:
  - url: /dev
    path: {products}
    develop_mode: true
    env: {PRODUCTS_DB: var/p.sqlite3}
  - url: /prod
    path: {products}
    env: {PRODUCTS_DB: var/p.sqlite3}
";
    let d = Daemon::start(yaml);
    d.get("/dev?id=A002").expect_status(200);
    d.get("/prod?id=A002").expect_status(200);
    assert_eq!(
        wait_debug_messages(&d.path("other/logs/dev/debug.log"), 1),
        ["QUERY_STRING: id=A002"]
    );
    assert_eq!(debug_messages(&d.path("other/logs/prod/debug.log")), Vec::<String>::new());
    assert!(!d.path("LOGS").exists() && !d.path("log").exists(), "logs written outside logs.dir");
}
