//! Parameters and bodies: GET query parameters and POST form fields (urlencoded and
//! multipart) through one ordered list, uploads, the `max_body` limit (with Content-Length
//! and chunked), and malformed or non-UTF-8 form bodies refused with 400 before the app runs.

use serde_json::{Value, json};

use crate::harness::{Daemon, Response, debug_messages, multipart, wait_debug_messages};

const FORMS: &str = "\
logs: {dir: LOGS}
aliases:
  - url: /env
    path: {environ}
    max_body: 1KiB
  - url: /big
    path: {environ}
  - url: /myapp
    path: {products}
    max_body: 1KiB
    env: {PRODUCTS_DB: var/p.sqlite3}
";

const URLENCODED: &str = "application/x-www-form-urlencoded";

#[track_caller]
fn params(r: &Response) -> Value {
    r.expect_status(200);
    r.json()["gatehouse.params"].clone()
}

/// A request with a chunked body: `chunks` as sent, then the last chunk.
fn chunked(d: &Daemon, target: &str, content_type: &str, chunks: &[&[u8]]) -> Response {
    let mut raw = format!(
        "POST {target} HTTP/1.1\r\nHost: {}\r\nContent-Type: {content_type}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        d.addr
    )
    .into_bytes();
    for c in chunks {
        raw.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
        raw.extend_from_slice(c);
        raw.extend_from_slice(b"\r\n");
    }
    raw.extend_from_slice(b"0\r\n\r\n");
    d.request(&raw)
}

#[test]
fn get_and_post_parameters_come_through_one_ordered_list() {
    let d = Daemon::start(FORMS);
    assert_eq!(params(&d.get("/env?a=1&b=2&a=3")), json!([["a", "1"], ["b", "2"], ["a", "3"]]));
    assert_eq!(params(&d.get("/env")), json!([]));
    // Query first, then the form, repeats kept; `+` and escapes decoded.
    let r = d.post("/env?a=1&b=2", URLENCODED, b"b=3&c=%C3%A9&d=x+y%2Bz&e&=f");
    assert_eq!(
        params(&r),
        json!([
            ["a", "1"],
            ["b", "2"],
            ["b", "3"],
            ["c", "\u{e9}"],
            ["d", "x y+z"],
            ["e", ""],
            ["", "f"]
        ])
    );
    // A charset parameter and odd case in the content type change nothing.
    let r = d.post("/env", "Application/X-WWW-Form-Urlencoded; charset=UTF-8", b"id=A002");
    assert_eq!(params(&r), json!([["id", "A002"]]));
    // Same over chunked transfer.
    let r = chunked(&d, "/env?q=0", URLENCODED, &[b"id=A", b"002&x=1"]);
    assert_eq!(params(&r), json!([["q", "0"], ["id", "A002"], ["x", "1"]]));

    // Multipart: text fields join the list, files become uploads.
    let boundary = "----WebKitFormBoundaryAbC123xyz";
    let body = multipart(
        boundary,
        &[
            ("Content-Disposition: form-data; name=\"x\"", b"hello world"),
            ("Content-Disposition: form-data; name=\"y\"", "caf\u{e9}\r\nline 2".as_bytes()),
            (
                "Content-Disposition: form-data; name=\"file\"; filename=\"notes.bin\"\r\nContent-Type: application/octet-stream",
                b"\xff\x00\xfe\r\n--not-a-boundary\r\n",
            ),
            ("Content-Disposition: form-data; name=\"x\"", b""),
        ],
    );
    let r = d.post("/env?q=1", &format!("multipart/form-data; boundary={boundary}"), &body);
    assert_eq!(
        params(&r),
        json!([["q", "1"], ["x", "hello world"], ["y", "caf\u{e9}\r\nline 2"], ["x", ""]])
    );
    assert_eq!(
        r.json()["gatehouse.uploads"],
        json!([{"field": "file", "filename": "notes.bin", "content_type": "application/octet-stream", "size": 23}]),
        "{r}"
    );

    // The query string is lenient (the raw QUERY_STRING is there for the app).
    let r = d.get("/env?x=%FF&y=a+b");
    assert_eq!(params(&r), json!([["x", "\u{fffd}"], ["y", "a b"]]));
    assert_eq!(r.json()["QUERY_STRING"], "x=%FF&y=a+b");

    // Any other body is not parsed into parameters.
    let r = d.post("/env?a=1", "application/json", br#"{"b": 2}"#);
    assert_eq!(params(&r), json!([["a", "1"]]));
}

#[test]
fn bodies_past_max_body_are_413() {
    let d = Daemon::start(FORMS);
    // Exactly at the limit: served.
    let at_limit = format!("a={}", "x".repeat(1024 - 2));
    let r = d.post("/env", URLENCODED, at_limit.as_bytes());
    assert_eq!(params(&r)[0][1].as_str().map(str::len), Some(1022), "{r}");
    let r = chunked(
        &d,
        "/env",
        URLENCODED,
        &[&at_limit.as_bytes()[..500], &at_limit.as_bytes()[500..]],
    );
    assert_eq!(params(&r)[0][1].as_str().map(str::len), Some(1022), "{r}");

    // One byte past it: 413, with Content-Length and with chunks.
    let past = format!("a={}", "x".repeat(1024 - 1));
    let r = d.post("/env", URLENCODED, past.as_bytes());
    r.expect_status(413);
    assert!(r.text().contains("max_body"), "{r}");
    let r = chunked(&d, "/env", URLENCODED, &[&past.as_bytes()[..600], &past.as_bytes()[600..]]);
    r.expect_status(413);
    assert!(r.text().contains("max_body"), "{r}");
    let r = chunked(&d, "/env", "application/octet-stream", &[&[b'z'; 700], &[b'z'; 700]]);
    r.expect_status(413);

    // The default limit (10 MiB) on another alias: 2 KiB is fine, a declared 10 MiB + 1 not.
    let r = d.post("/big", URLENCODED, format!("a={}", "y".repeat(2046)).as_bytes());
    r.expect_status(200);
    let r = d.request(
        format!(
            "POST /big HTTP/1.1\r\nHost: {}\r\nContent-Type: {URLENCODED}\r\nContent-Length: 10485761\r\nConnection: close\r\n\r\n",
            d.addr
        )
        .as_bytes(),
    );
    r.expect_status(413);

    // The app never ran for a refused body: the products app logs every POST (must=true).
    let boundary = "----WebKitFormBoundary8iNBS40xtXFszuZN";
    let big = multipart(
        boundary,
        &[
            ("Content-Disposition: form-data; name=\"id\"", b"A002"),
            ("Content-Disposition: form-data; name=\"pad\"", &[b'p'; 1100]),
        ],
    );
    d.post("/myapp", &format!("multipart/form-data; boundary={boundary}"), &big).expect_status(413);
    assert_eq!(debug_messages(&d.path("LOGS/myapp/debug.log")), Vec::<String>::new());
    d.post("/myapp", URLENCODED, b"id=A002").expect_status(200);
    assert_eq!(wait_debug_messages(&d.path("LOGS/myapp/debug.log"), 1), ["content_len: 7"]);
}

#[test]
fn more_than_ten_thousand_fields_or_a_thousand_files_are_413() {
    // A few bytes of body per field or file: each costs far more in memory, or a file.
    let d = Daemon::start(FORMS);
    let at_limit = "a&".repeat(10_000);
    let r = d.post("/big", URLENCODED, at_limit.as_bytes());
    assert_eq!(params(&r).as_array().map(Vec::len), Some(10_000), "{r}");
    let past = "a&".repeat(10_001);
    let r = d.post("/big", URLENCODED, past.as_bytes());
    r.expect_status(413);
    assert!(r.text().contains("more than 10000 parameters"), "{r}");
    // Query parameters count too.
    let r = d.post("/big?q=1", URLENCODED, at_limit.as_bytes());
    r.expect_status(413);

    let boundary = "b0undary";
    let files = |n: usize| {
        let parts: Vec<(&str, &[u8])> = (0..n)
            .map(|_| ("Content-Disposition: form-data; name=\"f\"; filename=\"a\"", &b"x"[..]))
            .collect();
        multipart(boundary, &parts)
    };
    let ctype = format!("multipart/form-data; boundary={boundary}");
    let r = d.post("/big", &ctype, &files(1_000));
    r.expect_status(200);
    assert_eq!(r.json()["gatehouse.uploads"].as_array().map(Vec::len), Some(1_000), "{r}");
    let r = d.post("/big", &ctype, &files(1_001));
    r.expect_status(413);
    assert!(r.text().contains("more than 1000 files"), "{r}");
}

#[test]
fn malformed_multipart_is_400_and_never_reaches_the_app() {
    let d = Daemon::start(FORMS);
    let good = "----WebKitFormBoundary8iNBS40xtXFszuZN";
    let form = format!(
        "--{good}\r\nContent-Disposition: form-data; name=\"id\"\r\n\r\nA002\r\n--{good}--\r\n"
    );
    let cases: [(&str, String, &str); 4] = [
        (
            "boundary differs from the header's",
            form.clone(),
            "multipart/form-data; boundary=----SomethingElse",
        ),
        (
            "truncated: no closing boundary",
            format!("--{good}\r\nContent-Disposition: form-data; name=\"id\"\r\n\r\nA00"),
            "multipart/form-data; boundary=----WebKitFormBoundary8iNBS40xtXFszuZN",
        ),
        ("no boundary parameter", form.clone(), "multipart/form-data"),
        (
            "part without Content-Disposition",
            format!("--{good}\r\nContent-Type: text/plain\r\n\r\nA002\r\n--{good}--\r\n"),
            "multipart/form-data; boundary=----WebKitFormBoundary8iNBS40xtXFszuZN",
        ),
    ];
    for (what, body, content_type) in &cases {
        let r = d.post("/myapp", content_type, body.as_bytes());
        assert_eq!(r.status, 400, "{what}: {r}");
        assert!(
            r.text().to_ascii_lowercase().contains("multipart"),
            "{what}: the message does not say what was wrong: {r}"
        );
    }
    assert_eq!(
        debug_messages(&d.path("LOGS/myapp/debug.log")),
        Vec::<String>::new(),
        "the app ran on a malformed body"
    );
    // The well-formed one is served.
    let r = d.post("/myapp", &format!("multipart/form-data; boundary={good}"), form.as_bytes());
    assert_eq!((r.status, r.text().as_str()), (200, r#"{"name": "watch", "price": 120}"#), "{r}");
}

#[test]
fn form_text_that_is_not_utf8_is_400() {
    let d = Daemon::start(FORMS);
    for body in [&b"id=%FF"[..], b"ok=1&id=%C3%28", b"id=\xff", b"%FF=1"] {
        let r = d.post("/myapp", URLENCODED, body);
        assert_eq!(r.status, 400, "{}: {r}", String::from_utf8_lossy(body));
        assert!(r.text().contains("UTF-8"), "{r}");
    }
    let boundary = "XyZboundary";
    let body = multipart(boundary, &[("Content-Disposition: form-data; name=\"id\"", b"A0\xff2")]);
    let r = d.post("/myapp", &format!("multipart/form-data; boundary={boundary}"), &body);
    r.expect_status(400);
    assert!(r.text().contains("UTF-8") && r.text().contains("id"), "{r}");
    assert_eq!(
        debug_messages(&d.path("LOGS/myapp/debug.log")),
        Vec::<String>::new(),
        "the app ran on a refused body"
    );
    // Binary content is fine in a file part.
    let body = multipart(
        boundary,
        &[
            ("Content-Disposition: form-data; name=\"id\"", b"A001"),
            ("Content-Disposition: form-data; name=\"f\"; filename=\"b.bin\"", b"\xff\xfe\x00"),
        ],
    );
    let r = d.post("/myapp", &format!("multipart/form-data; boundary={boundary}"), &body);
    assert_eq!((r.status, r.text().as_str()), (200, r#"{"name": "clock", "price": 30}"#), "{r}");
}

#[test]
fn other_bodies_reach_the_app_through_the_body_reader() {
    let d = Daemon::start("aliases:\n  - url: /p\n    path: {panicky}\n    max_body: 64KiB\n");
    let json_body = br#"{"id": "A002", "note": "caf\u00e9"}"#;
    let r = d.post("/p/echo", "application/json", json_body);
    r.expect_status(200);
    assert_eq!(
        (r.body.as_slice(), r.header("Content-Type")),
        (&json_body[..], Some("application/json")),
        "{r}"
    );
    let binary: Vec<u8> = (0..=255u8).cycle().take(40_000).collect();
    let r = d.post("/p/echo", "application/octet-stream", &binary);
    assert!(
        r.status == 200 && r.body == binary,
        "a 40 kB binary body did not come back intact: {} bytes, status {}",
        r.body.len(),
        r.status
    );
    let r = chunked(&d, "/p/echo", "text/plain", &[b"one ", b"two ", b"three"]);
    assert_eq!((r.status, r.text().as_str()), (200, "one two three"), "{r}");
    // A form body was parsed into parameters instead: the reader gives nothing.
    let r = d.post("/p/echo", URLENCODED, b"id=A002");
    assert_eq!((r.status, r.body.len()), (200, 0), "{r}");
}

#[test]
fn top_level_max_body_applies_to_aliases_without_their_own() {
    let yaml = "\
max_body: 100
aliases:
  - url: /inherits
    path: {environ}
  - url: /own
    path: {environ}
    max_body: 200B
";
    let d = Daemon::start(yaml);
    let body = |n: usize| format!("a={}", "x".repeat(n - 2));
    d.post("/inherits", URLENCODED, body(100).as_bytes()).expect_status(200);
    d.post("/inherits", URLENCODED, body(101).as_bytes()).expect_status(413);
    d.post("/own", URLENCODED, body(200).as_bytes()).expect_status(200);
    d.post("/own", URLENCODED, body(201).as_bytes()).expect_status(413);
}
