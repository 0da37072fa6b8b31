//! The environ an app sees, through the conformance app `apps/environ`: the CGI/WSGI
//! variables as mod_wsgi builds them, HTTP_* headers, the alias's `env` settings, and the
//! parsed parameters. Values are shown latin-1 decoded, as PEP 3333 does.

use serde_json::{Value, json};

use crate::harness::{Daemon, artifacts};

const ENVIRON: &str = "\
aliases:
  - url: /env
    path: {environ}
    env:
      GREETING: hello there
      EMPTY: \"\"
      NUMBER: 1.0
      REQUEST_METHOD: FORGED
      HTTP_HOST: forged.example
";

#[track_caller]
fn var<'a>(j: &'a Value, name: &str) -> &'a str {
    j[name].as_str().unwrap_or_else(|| panic!("no {name} in {j:#}"))
}

#[test]
fn cgi_variables_of_a_get() {
    let d = Daemon::start(ENVIRON);
    let mut raw = format!(
        "GET /env/p%20q/r?a=%20b&c&a=+ HTTP/1.1\r\n\
         Host: {}\r\n\
         User-Agent: gatehouse-e2e\r\n\
         X-Multi: one\r\n\
         Accept: text/html\r\n\
         x-multi: two\r\n\
         X-Multi: three, four\r\n\
         X_Under: sneaky\r\n\
         X-Forwarded-For: 10.0.0.1\r\n\
         X.Dot: dropped\r\n",
        d.addr
    )
    .into_bytes();
    raw.extend_from_slice(b"X-Latin: caf\xe9\r\nConnection: close\r\n\r\n");
    let r = d.request(&raw);
    r.expect_status(200);
    assert_eq!(r.header("Content-Type"), Some("application/json"), "{r}");
    let j = r.json();
    let port = d.addr.port().to_string();
    let environ = artifacts().environ.display().to_string();
    for (name, want) in [
        ("REQUEST_METHOD", "GET"),
        ("SCRIPT_NAME", "/env"),
        ("PATH_INFO", "/p q/r"),
        ("QUERY_STRING", "a=%20b&c&a=+"),
        ("REQUEST_URI", "/env/p%20q/r?a=%20b&c&a=+"),
        ("SERVER_NAME", "127.0.0.1"),
        ("SERVER_PORT", port.as_str()),
        ("SERVER_ADDR", "127.0.0.1"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("GATEWAY_INTERFACE", "CGI/1.1"),
        ("REMOTE_ADDR", "127.0.0.1"),
        ("REQUEST_SCHEME", "http"),
        ("wsgi.url_scheme", "http"),
        ("SCRIPT_FILENAME", environ.as_str()),
        ("HTTP_HOST", d.addr.to_string().as_str()),
        ("HTTP_USER_AGENT", "gatehouse-e2e"),
        ("HTTP_ACCEPT", "text/html"),
        ("HTTP_X_FORWARDED_FOR", "10.0.0.1"),
        // Repeated headers joined with ", ", in the order received.
        ("HTTP_X_MULTI", "one, two, three, four"),
        // Bytes shown as latin-1.
        ("HTTP_X_LATIN", "caf\u{e9}"),
        // The alias's env, added where the request did not set the name.
        ("GREETING", "hello there"),
        ("EMPTY", ""),
        ("NUMBER", "1.0"),
    ] {
        assert_eq!(var(&j, name), want, "{name} in {j:#}");
    }
    assert!(var(&j, "SERVER_SOFTWARE").starts_with("Gatehouse/"), "{j:#}");
    assert!(var(&j, "REMOTE_PORT").parse::<u16>().is_ok_and(|p| p > 0), "{j:#}");
    // No body: no CONTENT_TYPE or CONTENT_LENGTH at all (not even empty).
    for absent in ["CONTENT_TYPE", "CONTENT_LENGTH", "HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"] {
        assert!(j.get(absent).is_none(), "{absent} present in {j:#}");
    }
    // Header names with `_` or other characters are dropped, so `X_Under` cannot pose as
    // `X-Under` (Apache 2.4 does the same).
    let keys: Vec<&String> = j.as_object().unwrap().keys().collect();
    assert!(
        !keys.iter().any(|k| k.contains("UNDER") || k.contains("DOT")),
        "a header with `_` or `.` in its name reached the environ: {keys:?}"
    );
    assert_eq!(j["gatehouse.params"], json!([["a", " b"], ["c", ""], ["a", " "]]));
}

#[test]
fn cgi_variables_of_bodies_methods_and_http_1_0() {
    let d = Daemon::start(ENVIRON);
    let r = d.send("POST", "/env?x=1", &["Content-Type: text/plain; charset=utf-8"], b"hello");
    r.expect_status(200);
    let j = r.json();
    assert_eq!(var(&j, "REQUEST_METHOD"), "POST");
    assert_eq!(var(&j, "CONTENT_TYPE"), "text/plain; charset=utf-8");
    assert_eq!(var(&j, "CONTENT_LENGTH"), "5");
    assert_eq!(j["gatehouse.params"], json!([["x", "1"]]));

    let r = d.send(
        "POST",
        "/env",
        &["Content-Type: application/x-www-form-urlencoded"],
        b"id=A002&n=2",
    );
    let j = r.json();
    assert_eq!(
        (var(&j, "CONTENT_LENGTH"), var(&j, "CONTENT_TYPE")),
        ("11", "application/x-www-form-urlencoded")
    );
    assert_eq!(j["gatehouse.params"], json!([["id", "A002"], ["n", "2"]]));

    for method in ["PUT", "DELETE", "PATCH", "OPTIONS"] {
        let r = d.send(method, "/env/m", &[], b"");
        r.expect_status(200);
        assert_eq!(var(&r.json(), "REQUEST_METHOD"), method);
    }

    // HTTP/1.0 without a Host header: SERVER_NAME falls back to the local address.
    let r = d.request(b"GET /env?v=10 HTTP/1.0\r\n\r\n");
    r.expect_status(200);
    let j = r.json();
    assert_eq!(var(&j, "SERVER_PROTOCOL"), "HTTP/1.0");
    assert_eq!(var(&j, "SERVER_NAME"), "127.0.0.1");
    assert_eq!(var(&j, "QUERY_STRING"), "v=10");
    // The request's own Host wins over an alias env entry of the same name.
    let r = d.send("GET", "/env", &[], b"");
    assert_eq!(var(&r.json(), "HTTP_HOST"), d.addr.to_string());
    // A Host header with a name: SERVER_NAME is that name, without the port.
    let r =
        d.request(b"GET /env HTTP/1.1\r\nHost: www.example.com:8080\r\nConnection: close\r\n\r\n");
    assert_eq!(var(&r.json(), "SERVER_NAME"), "www.example.com");
}

#[test]
fn alias_env_never_overrides_request_variables() {
    let d = Daemon::start(ENVIRON);
    let j = d.get("/env").json();
    assert_eq!(var(&j, "REQUEST_METHOD"), "GET", "an env entry replaced REQUEST_METHOD");
    assert_eq!(var(&j, "HTTP_HOST"), d.addr.to_string(), "an env entry replaced HTTP_HOST");
    assert_eq!(var(&j, "GREETING"), "hello there");
}

#[test]
fn authorization_reaches_only_aliases_that_pass_it_and_proxy_never() {
    let d = Daemon::start(
        "\
aliases:
  - url: /hidden
    path: {environ}
  - url: /passed
    path: {environ}
    pass_authorization: true
",
    );
    let headers = ["Authorization: Basic dTpw", "Proxy: http://evil:1", "X-Kept: 1"];
    let hidden = d.send("GET", "/hidden", &headers, b"").json();
    assert_eq!(hidden.get("HTTP_AUTHORIZATION"), None, "{hidden:#}");
    assert_eq!(hidden.get("HTTP_PROXY"), None, "{hidden:#}");
    assert_eq!(var(&hidden, "HTTP_X_KEPT"), "1");
    let passed = d.send("GET", "/passed", &headers, b"").json();
    assert_eq!(var(&passed, "HTTP_AUTHORIZATION"), "Basic dTpw");
    assert_eq!(passed.get("HTTP_PROXY"), None, "{passed:#}");
}

/// `GET TARGET` sent as raw bytes, with Host and `Connection: close`.
fn get_raw(d: &Daemon, target: &[u8]) -> crate::harness::Response {
    let mut raw = b"GET ".to_vec();
    raw.extend_from_slice(target);
    raw.extend_from_slice(
        format!(" HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", d.addr).as_bytes(),
    );
    d.request(&raw)
}

#[test]
fn raw_non_ascii_bytes_in_the_target_are_served_as_apache_serves_them() {
    let d = Daemon::start(ENVIRON);
    // As curl sends `café` (UTF-8) and older clients latin-1: PATH_INFO decoded, the
    // query and REQUEST_URI as sent, every byte shown latin-1 (PEP 3333).
    for (target, path_info, query) in [
        (&b"/env/caf\xc3\xa9?q=\xc3\xa9&x=1"[..], "/caf\u{c3}\u{a9}", "q=\u{c3}\u{a9}&x=1"),
        (&b"/env/caf\xe9"[..], "/caf\u{e9}", ""),
        (&b"/env/%41\xe9/b#frag"[..], "/A\u{e9}/b", ""),
    ] {
        let r = get_raw(&d, target);
        r.expect_status(200);
        let j = r.json();
        let sent: String =
            target.split(|&b| b == b'#').next().unwrap().iter().map(|&b| char::from(b)).collect();
        assert_eq!(var(&j, "PATH_INFO"), path_info, "{j:#}");
        assert_eq!(var(&j, "QUERY_STRING"), query, "{j:#}");
        assert_eq!(var(&j, "REQUEST_URI"), sent, "{j:#}");
    }
    // Control bytes stay refused, with a body saying so.
    let r = get_raw(&d, b"/env/caf\xc3\xa9\x01");
    r.expect_status(400);
    assert_eq!(r.text(), "malformed request\n");
}

#[test]
fn every_request_line_past_the_limit_is_414_with_a_body() {
    let d = Daemon::start(ENVIRON);
    // Past Apache's 8190 bytes, and past what the URI type holds (64 KiB), alike.
    for len in [8200, 70_000, 100_000] {
        let target = format!("/env/{}", "a".repeat(len));
        let r = get_raw(&d, target.as_bytes());
        r.expect_status(414);
        assert!(r.text().contains("the request line is longer than 8190 bytes"), "{len}: {r}");
    }
    // A raw byte counts once, not as its encoding: a line just under the limit is served.
    let target = [&b"/env/"[..], &vec![0xe9; 8150]].concat();
    get_raw(&d, &target).expect_status(200);
    d.get("/env/after").expect_status(200);
}

#[test]
fn environment_variables_fill_in_values_in_process_and_in_workers() {
    let yaml = "\
threads: ${GH_THREADS}
aliases:
  - url: /env
    path: {environ}
    env: {DB_URL: \"${GH_DB_URL}\", MODE: \"${GH_MODE:-production}\", LITERAL: \"$${GH_DB_URL}\"}
  - url: /iso
    path: {environ}
    isolation: process
    processes: 1
    env: {DB_URL: \"${GH_DB_URL}\"}
";
    let secret = "postgres://u:p@db/x?opt=${not-a-ref}";
    let d = Daemon::start_env(yaml, |_| {}, true, &[("GH_THREADS", "3"), ("GH_DB_URL", secret)]);
    let j = d.get("/env/").json();
    assert_eq!(var(&j, "DB_URL"), secret, "{j:#}");
    assert_eq!(var(&j, "MODE"), "production", "{j:#}");
    assert_eq!(var(&j, "LITERAL"), "${GH_DB_URL}", "{j:#}");
    // A worker (whose environment is not the daemon's) gets the daemon's value.
    let j = d.get("/iso/").json();
    assert_eq!(var(&j, "DB_URL"), secret, "{j:#}");
    // An unset variable without a default is an error at its place.
    std::fs::write(
        d.path("unset.yaml"),
        "aliases:\n  - url: /x\n    path: x.so\n    env: {A: \"${GH_NOT_SET_ANYWHERE}\"}\n",
    )
    .unwrap();
    let (code, err) = crate::harness::check(&d.path("unset.yaml"));
    assert_eq!(code, Some(1));
    assert!(
        err.contains("unset.yaml:4:14: error: `${GH_NOT_SET_ANYWHERE}` is not set in the daemon's environment"),
        "{err}"
    );
}
