//! The route → answer table: a real [`Host`] built from a real configuration (parsed from
//! YAML text in a temporary folder) behind [`handle`], driven in process with
//! `actix_web::test`: no daemon process, no socket, no HTTP parsing. Each row is one
//! request and the status, body and alias (for the metrics) it must get. The e2e suite
//! (`tests/e2e`, a real daemon over HTTP) stays the safety net; these rows pin the
//! handler's own decisions.
//!
//! The rows of [`answers_without_a_plugin`] need no plugin: what the daemon answers itself
//! (routing, limits, missing and broken files). [`answers_of_the_hello_plugin`] needs
//! `libhello.so` (`cargo build -p hello`, into the same target folder as this test binary,
//! or a folder named by `GATEHOUSE_TEST_PLUGINS`) and is skipped with a message without it.

use std::path::Path;
use std::sync::Arc;

use actix_web::http::{Method, header};
use actix_web::test::{self, TestRequest};
use actix_web::{App, web};

use super::handle;
use crate::host::{Host, Live};
use crate::plugin::test_plugins::hello_dir;

/// What a row expects as the body.
#[derive(Debug, Clone, Copy)]
enum Want {
    /// The daemon's own plain-text answer: `STATUS REASON: message\n`.
    Says(&'static str),
    /// Exactly these bytes (an app's reply, or nothing).
    Exact(&'static str),
}

/// One request and its expected answer.
struct Row {
    what: &'static str,
    req: fn() -> TestRequest,
    status: u16,
    body: Want,
    /// The alias (its URL as configured) the request counts under; `None`: unrouted.
    counted: Option<&'static str>,
}

/// The folder and the host serving it.
struct Fixture {
    _tmp: tempfile::TempDir,
    host: Arc<Host>,
}

/// The configuration shared by both tables. With `hello` (the folder holding
/// `libhello.so`), `/sample`, `/inline` and the group's `hello` serve it.
fn fixture(hello: Option<&Path>) -> Fixture {
    let tmp = tempfile::tempdir().expect("temp folder");
    let dir = tmp.path();
    let group = dir.join("group");
    std::fs::create_dir_all(group.join("sub")).expect("group folder");
    // Not ELF: loading it fails.
    std::fs::write(dir.join("broken.so"), b"not a shared object\n").expect("broken.so");
    std::fs::write(group.join("broken.so"), b"not a shared object\n").expect("group broken.so");
    std::fs::write(group.join(".hidden"), b"").expect(".hidden");
    std::fs::write(group.join("script.py"), b"print('hi')\n").expect("script.py");
    // A name inside the folder that resolves outside it.
    std::os::unix::fs::symlink(dir.join("broken.so"), group.join("escape.so")).expect("symlink");
    let mut yaml = String::from(
        "max_body: 1KiB
logs:
  dir: log
handlers:
  - suffix: .py
    plugin: libwsgi-not-built.so
aliases:
  - url: /missing
    path: libmissing.so
  - url: /broken
    path: broken.so
  - url: /strict
    path: libstrict.so
    max_headers: 3
    max_header_size: 64
  - url: /wsgi/
    path: group/
",
    );
    if let Some(hello) = hello {
        std::fs::copy(hello.join("libhello.so"), dir.join("libhello.so")).expect("copy hello");
        std::fs::copy(hello.join("libhello.so"), group.join("libhello.so")).expect("copy hello");
        yaml.push_str(
            "  - url: /sample
    path: libhello.so
  - url: /inline
    path: libhello.so
    dispatch: inline
  - url: /guarded
    path: libhello.so
    access_script: libhello.so
  - url: /login
    path: libhello.so
    auth_user_script: libhello.so
    auth_realm: Staff
  - url: /brokenhook
    path: libhello.so
    access_script: broken.so
",
        );
    }
    let config = match gatehouse_config::parse(&yaml, &dir.join("hosting.yaml")) {
        Ok(loaded) => loaded.config,
        Err(e) => panic!("{e}"),
    };
    let host = Arc::new(Host::new(config, None));
    // As the daemon does at start: /broken fails (and with hello, /brokenhook's hook),
    // /missing is only warned about.
    let broken = if hello.is_some() { 2 } else { 1 };
    assert_eq!(host.load_single_apps(), broken, "only /broken's plugin and hook should fail");
    Fixture { _tmp: tmp, host }
}

/// Sends every row through [`handle`] on `host` and checks its answer; fails with every
/// row that did not get its answer.
async fn check(host: &Arc<Host>, rows: &[Row]) {
    let live = web::Data::new(Live::new(Arc::clone(host)));
    let app = test::init_service(App::new().app_data(live).default_service(web::to(handle))).await;
    let counts = || host.mounts.iter().map(|m| m.stats.total()).collect::<Vec<u64>>();
    let mut wrong = Vec::new();
    for row in rows {
        let before = counts();
        let resp = test::call_service(&app, (row.req)().to_request()).await;
        let status = resp.status().as_u16();
        let body = test::read_body(resp).await;
        let body = String::from_utf8_lossy(&body);
        let want = match row.body {
            Want::Says(message) => {
                let reason = actix_web::http::StatusCode::from_u16(row.status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                format!("{} {reason}: {message}\n", row.status)
            }
            Want::Exact(bytes) => bytes.to_owned(),
        };
        if (status, &*body) != (row.status, &*want) {
            wrong
                .push(format!("{}: got {status} {body:?}, want {} {want:?}", row.what, row.status));
        }
        let after = counts();
        let counted: Vec<&str> = host
            .mounts
            .iter()
            .zip(before.iter().zip(&after))
            .filter(|(_, (b, a))| a > b)
            .map(|(m, _)| m.alias.url.as_str())
            .collect();
        let want: Vec<&str> = row.counted.into_iter().collect();
        if counted != want {
            wrong.push(format!("{}: counted under {counted:?}, want {want:?}", row.what));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} rows wrong:\n{}",
        wrong.len(),
        rows.len(),
        wrong.join("\n")
    );
}

fn get(uri: &str) -> TestRequest {
    TestRequest::get().uri(uri)
}

/// `n` header fields.
fn with_headers(mut req: TestRequest, n: usize) -> TestRequest {
    for i in 0..n {
        req = req.insert_header((format!("x-h{i}"), "1"));
    }
    req
}

const NO_ALIAS: Want = Want::Says("no alias matches this URL");
const NO_SUCH_APP: Want = Want::Says("no such app");

#[actix_web::test]
async fn answers_without_a_plugin() {
    let f = fixture(None);
    let rows = [
        // Routing.
        Row {
            what: "no alias",
            req: || get("/nothing"),
            status: 404,
            body: NO_ALIAS,
            counted: None,
        },
        Row {
            what: "an alias URL as a prefix of a longer segment does not match",
            req: || get("/missingx"),
            status: 404,
            body: NO_ALIAS,
            counted: None,
        },
        Row {
            what: "a group's URL without its slash does not match",
            req: || get("/wsgi"),
            status: 404,
            body: NO_ALIAS,
            counted: None,
        },
        Row {
            what: "a group's folder itself",
            req: || get("/wsgi/"),
            status: 403,
            body: Want::Says("a directory group's folder is not an app"),
            counted: None,
        },
        Row {
            what: "a group NAME with no plugin",
            req: || get("/wsgi/nothing/more"),
            status: 404,
            body: NO_SUCH_APP,
            counted: Some("/wsgi"),
        },
        Row {
            what: "a group's hidden name",
            req: || get("/wsgi/.hidden"),
            status: 403,
            body: Want::Says("not an app"),
            counted: Some("/wsgi"),
        },
        Row {
            what: "a group's subfolder",
            req: || get("/wsgi/sub"),
            status: 403,
            body: Want::Says("not an app"),
            counted: Some("/wsgi"),
        },
        Row {
            what: "a group name whose file resolves outside the folder",
            req: || get("/wsgi/escape"),
            status: 404,
            body: NO_SUCH_APP,
            counted: Some("/wsgi"),
        },
        Row {
            what: "a group's broken plugin answers as a missing one",
            req: || get("/wsgi/broken"),
            status: 404,
            body: NO_SUCH_APP,
            counted: Some("/wsgi"),
        },
        Row {
            what: "a group's script whose handler plugin is not built",
            req: || get("/wsgi/script.py"),
            status: 404,
            body: NO_SUCH_APP,
            counted: Some("/wsgi"),
        },
        // The path.
        Row {
            what: "traversal above /",
            req: || get("/wsgi/../../etc/passwd"),
            status: 400,
            body: Want::Says("the request path climbs above / with .."),
            counted: None,
        },
        Row {
            what: "encoded traversal above /",
            req: || get("/%2e%2e/etc"),
            status: 400,
            body: Want::Says("the request path climbs above / with .."),
            counted: None,
        },
        Row {
            what: "traversal that stays below / is resolved first",
            req: || get("/nothing/../wsgi/"),
            status: 403,
            body: Want::Says("a directory group's folder is not an app"),
            counted: None,
        },
        Row {
            what: "bad percent-encoding",
            req: || get("/wsgi/%zz"),
            status: 400,
            body: Want::Says("the request path has a % not followed by two hex digits"),
            counted: None,
        },
        Row {
            what: "an encoded slash",
            req: || get("/wsgi/a%2Fb"),
            status: 404,
            body: Want::Says("the request path has an encoded slash (%2F)"),
            counted: None,
        },
        Row {
            what: "an encoded NUL",
            req: || get("/missing%00"),
            status: 404,
            body: Want::Says("the request path has a NUL byte"),
            counted: None,
        },
        Row {
            what: "GET * (not a path)",
            req: || get("*"),
            status: 400,
            body: Want::Says("the request path must start with /"),
            counted: None,
        },
        Row {
            what: "request line too long",
            req: || get(&format!("/missing?{}", "a".repeat(8190))),
            status: 414,
            body: Want::Says("the request line is longer than 8190 bytes"),
            counted: None,
        },
        Row {
            what: "request line of exactly 8190 bytes",
            // "GET " + target + " HTTP/1.1" = 8190
            req: || get(&format!("/missing?{}", "a".repeat(8190 - 4 - 9 - 9))),
            status: 404,
            body: NO_SUCH_APP,
            counted: Some("/missing"),
        },
        Row {
            what: "TRACE, before routing",
            req: || TestRequest::default().method(Method::TRACE).uri("/nothing"),
            status: 405,
            body: Want::Says("TRACE is not allowed (trace_enable is off)"),
            counted: None,
        },
        Row {
            what: "OPTIONS *",
            req: || TestRequest::default().method(Method::OPTIONS).uri("*"),
            status: 200,
            body: Want::Exact(""),
            counted: None,
        },
        // Files.
        Row {
            what: "a missing single-app plugin file",
            req: || get("/missing/path?x=1"),
            status: 404,
            body: NO_SUCH_APP,
            counted: Some("/missing"),
        },
        Row {
            what: "a single app whose file does not load",
            req: || get("/broken"),
            status: 500,
            body: Want::Says("the app could not be loaded; the error log says why"),
            counted: Some("/broken"),
        },
        // Limits.
        Row {
            what: "as many header fields as max_headers",
            req: || with_headers(get("/strict"), 3),
            status: 404,
            body: NO_SUCH_APP,
            counted: Some("/strict"),
        },
        Row {
            what: "more header fields than max_headers",
            req: || with_headers(get("/strict"), 4),
            status: 400,
            body: Want::Says("the request has 4 header fields, more than 3"),
            counted: Some("/strict"),
        },
        Row {
            what: "a header line longer than max_header_size",
            // "x-long: " + 57 = 65 bytes
            req: || get("/strict").insert_header(("x-long", "v".repeat(57))),
            status: 400,
            body: Want::Says("the x-long header is longer than 64 bytes"),
            counted: Some("/strict"),
        },
        Row {
            what: "a header line of exactly max_header_size",
            req: || get("/strict").insert_header(("x-long", "v".repeat(56))),
            status: 404,
            body: NO_SUCH_APP,
            counted: Some("/strict"),
        },
        Row {
            what: "a declared body over max_body",
            req: || {
                TestRequest::post()
                    .uri("/missing")
                    .insert_header((header::CONTENT_TYPE, "application/octet-stream"))
                    .set_payload(vec![b'x'; 1025])
            },
            status: 413,
            body: Want::Says(
                "the request body (1025 bytes) is larger than this alias's max_body of 1024 bytes",
            ),
            counted: Some("/missing"),
        },
        Row {
            what: "a form body of exactly max_body is read, then the app is missing",
            req: || {
                TestRequest::post()
                    .uri("/missing")
                    .insert_header((header::CONTENT_TYPE, "application/x-www-form-urlencoded"))
                    .set_payload(format!("a={}", "x".repeat(1022)))
            },
            status: 404,
            body: NO_SUCH_APP,
            counted: Some("/missing"),
        },
        Row {
            what: "a Content-Length that is not a number",
            req: || {
                TestRequest::post().uri("/missing").insert_header((header::CONTENT_LENGTH, "ten"))
            },
            status: 400,
            body: Want::Says("the Content-Length header is not a number"),
            counted: Some("/missing"),
        },
    ];
    check(&f.host, &rows).await;
}

#[actix_web::test]
async fn answers_of_the_hello_plugin() {
    let Some(dir) = hello_dir() else { return };
    let f = fixture(Some(&dir));
    const HELLO: Want = Want::Exact("Hello World!");
    let rows = [
        Row {
            what: "a single app",
            req: || get("/sample"),
            status: 200,
            body: HELLO,
            counted: Some("/sample"),
        },
        Row {
            what: "a single app with PATH_INFO and a query",
            req: || get("/sample/a/b?x=1"),
            status: 200,
            body: HELLO,
            counted: Some("/sample"),
        },
        Row {
            // The handler passes the app's body on: actix's HTTP encoder drops it on the
            // wire (tests/e2e/seed_apps.rs checks that).
            what: "HEAD: the handler leaves the body to the HTTP layer",
            req: || TestRequest::default().method(Method::HEAD).uri("/sample"),
            status: 200,
            body: HELLO,
            counted: Some("/sample"),
        },
        Row {
            what: "dispatch: inline",
            req: || get("/inline"),
            status: 200,
            body: HELLO,
            counted: Some("/inline"),
        },
        Row {
            what: "a group's plugin by NAME (libNAME.so)",
            req: || get("/wsgi/hello/x"),
            status: 200,
            body: HELLO,
            counted: Some("/wsgi"),
        },
        Row {
            what: "a group's plugin by its file name",
            req: || get("/wsgi/libhello.so"),
            status: 200,
            body: HELLO,
            counted: Some("/wsgi"),
        },
        Row {
            what: "NAME.so is not libNAME.so",
            req: || get("/wsgi/hello.so"),
            status: 404,
            body: NO_SUCH_APP,
            counted: Some("/wsgi"),
        },
        Row {
            what: "a body over max_body is refused before the app runs",
            req: || TestRequest::post().uri("/sample").set_payload(vec![b'x'; 2048]),
            status: 413,
            body: Want::Says(
                "the request body (2048 bytes) is larger than this alias's max_body of 1024 bytes",
            ),
            counted: Some("/sample"),
        },
        Row {
            what: "TRACE never reaches the app (trace_enable is off)",
            req: || TestRequest::default().method(Method::TRACE).uri("/sample"),
            status: 405,
            body: Want::Says("TRACE is not allowed (trace_enable is off)"),
            counted: None,
        },
        Row {
            what: "CONNECT never reaches the app",
            req: || TestRequest::default().method(Method::CONNECT).uri("/sample"),
            status: 405,
            body: Want::Says("CONNECT is not allowed: this is not a proxy"),
            counted: None,
        },
        // Hooks: the hello plugin implements none, and the SDK's defaults refuse.
        Row {
            what: "an access hook that refuses",
            req: || get("/guarded"),
            status: 403,
            body: Want::Says("access denied"),
            counted: Some("/guarded"),
        },
        Row {
            what: "an auth hook without credentials",
            req: || get("/login"),
            status: 401,
            body: Want::Says("authentication required"),
            counted: Some("/login"),
        },
        Row {
            what: "an auth hook that refuses the credentials",
            req: || get("/login").insert_header((header::AUTHORIZATION, "Basic YWxpY2U6cw==")),
            status: 401,
            body: Want::Says("authentication required"),
            counted: Some("/login"),
        },
        Row {
            what: "a hook that does not load fails closed",
            req: || get("/brokenhook"),
            status: 500,
            body: Want::Says("the access check failed; the error log says why"),
            counted: Some("/brokenhook"),
        },
        Row {
            what: "traversal out of an app's URL into another",
            req: || get("/sample/../inline"),
            status: 200,
            body: HELLO,
            counted: Some("/inline"),
        },
    ];
    check(&f.host, &rows).await;
}

#[actix_web::test]
async fn options_star_lists_the_methods() {
    let f = fixture(None);
    let live = web::Data::new(Live::new(Arc::clone(&f.host)));
    let app = test::init_service(App::new().app_data(live).default_service(web::to(handle))).await;
    let req = TestRequest::default().method(Method::OPTIONS).uri("*").to_request();
    let resp = test::call_service(&app, req).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers().get(header::ALLOW).and_then(|v| v.to_str().ok()),
        Some("GET, HEAD, POST, OPTIONS")
    );
}
