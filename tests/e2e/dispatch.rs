//! `dispatch: inline`: the app runs on the HTTP worker that took the request, with no
//! hand-off, and answers exactly as under the default pool; what would make a worker wait (a
//! streamed request body, a group plugin's first load) still goes through the pool.

use crate::harness::{Daemon, Response, multipart};

const CONFIG: &str = "\
aliases:
  - url: /pool
    path: {panicky}
  - url: /inline
    path: {panicky}
    dispatch: inline
  - url: /sample
    path: {hello}
    dispatch: inline
  - url: /myapp
    path: {products}
    dispatch: inline
    env: {PRODUCTS_DB: var/p.sqlite3}
  - url: /wsgi/
    path: apps/
    dispatch: inline
";

/// Status, headers but Date, and body: what must not depend on the dispatch mode.
fn shape(r: &Response) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let headers = r
        .headers
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("date"))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .collect();
    (r.status, headers, r.body.clone())
}

#[test]
fn inline_apps_run_on_the_http_worker_and_pool_apps_on_their_pool() {
    let d = Daemon::start(CONFIG);
    let pool = d.get("/pool/thread");
    pool.expect_status(200);
    assert!(pool.text().starts_with("app /pool#"), "pool app ran on {:?}", pool.text());
    let inline = d.get("/inline/thread");
    inline.expect_status(200);
    assert!(inline.text().starts_with("actix-rt"), "inline app ran on {:?}", inline.text());
    // A streamed body would make the worker wait: that request goes through the pool.
    let echo = d.post("/inline/echo", "text/plain", b"streamed through the pool");
    assert_eq!(echo.text(), "streamed through the pool", "{echo}");
}

#[test]
fn inline_replies_are_the_same_as_pooled_ones() {
    let d = Daemon::start(CONFIG);
    for (target, body) in
        [("/sample", "Hello World!"), ("/myapp?id=A001", r#"{"name": "clock", "price": 30}"#)]
    {
        let r = d.get(target);
        r.expect_status(200);
        assert_eq!(r.text(), body, "{r}");
        assert_eq!(r.header("Content-Length"), Some(body.len().to_string().as_str()), "{r}");
        assert_eq!(r.header("Transfer-Encoding"), None, "{r}");
    }
    let boundary = "----WebKitFormBoundary8iNBS40xtXFszuZN";
    let form = multipart(boundary, &[("Content-Disposition: form-data; name=\"id\"", b"A002")]);
    let r = d.post("/myapp", &format!("multipart/form-data; boundary={boundary}"), &form);
    assert_eq!(r.text(), r#"{"name": "watch", "price": 120}"#, "{r}");
    let r = d.get("/myapp?id=NOPE");
    r.expect_status(404);
    // The same app inline and pooled: identical replies.
    for path in ["/x", "/thread-not", "/sleep/1"] {
        assert_eq!(
            shape(&d.get(&format!("/pool{path}"))),
            shape(&d.get(&format!("/inline{path}"))),
            "{path}"
        );
    }
    // A panic inline is a 500, and the worker keeps serving.
    d.get("/inline/panic").expect_status(500);
    assert_eq!(d.get("/sample").text(), "Hello World!");
}

#[test]
fn an_inline_group_loads_its_plugins_on_the_pool_then_serves_inline() {
    let d = Daemon::start(CONFIG);
    // The first request loads the plugin (on the pool), later ones run inline.
    for _ in 0..3 {
        let r = d.get("/wsgi/hello");
        r.expect_status(200);
        assert_eq!(r.text(), "Hello World!");
    }
    let first = d.get("/wsgi/panicky/thread");
    let later = d.get("/wsgi/panicky/thread");
    assert!(first.text().starts_with("app /wsgi#"), "first request ran on {:?}", first.text());
    assert!(later.text().starts_with("actix-rt"), "later request ran on {:?}", later.text());
}
