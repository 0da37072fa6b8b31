//! The WSGI bridge: the seed's own Python files, unchanged, served through a
//! `.py` handler by `libwsgi.so`, both alias kinds; PEP 3333 behaviour (input reading modes,
//! streaming, `write`, `exc_info`, `wsgi.file_wrapper`, `close()`), errors as mod_wsgi
//! reports them, script re-import, script trust checks, `callable`, extension modules, a
//! swapped bridge build,
//! `wsgiref.validate` around every kind of request, and a Flask app from a virtualenv.
//!
//! Fixtures: `fixtures/wsgi/sample.py` and `myapp.py` are byte-for-byte copies of the
//! seed's `apps/` (myapp.py reads `MYAPP_DEVELOP_MODE` from the process environment and
//! writes `log/debug.log` beside itself, as in the article: the tests set the variable and
//! create `log/`); `features.py` is a hand-written app, one PEP 3333 feature per path;
//! `validated.py` runs any of them under `wsgiref.validate.validator`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::harness::{Daemon, multipart, seed_debug_messages, wait_for};

/// The fixture folder.
fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/fixtures/wsgi")
}

/// Copies the fixture scripts into `ROOT/wsgi/` (with the `log/` folder myapp.py writes to).
fn prepare(root: &Path) {
    let dir = root.join("wsgi");
    std::fs::create_dir_all(dir.join("log")).expect("create wsgi/log");
    for name in ["sample.py", "myapp.py", "features.py", "validated.py", "flaskapp.py"] {
        std::fs::copy(fixtures().join(name), dir.join(name)).expect("copy a fixture script");
    }
}

/// The seed's layout: the article's `WSGIScriptAlias` lines as Gatehouse aliases, `.py`
/// served by the bridge.
const SEED: &str = "\
handlers:
  - suffix: .py
    plugin: {wsgi}
aliases:
  - url: /myapp
    path: wsgi/myapp.py
  - url: /sample
    path: wsgi/sample.py
  - url: /wsgi/
    path: wsgi/
";

fn seed_daemon() -> Daemon {
    Daemon::start_env(SEED, prepare, true, &[("MYAPP_DEVELOP_MODE", "1")])
}

/// The article's browser form, as the article's debug log shows it (137 bytes).
const BOUNDARY: &str = "----WebKitFormBoundary8iNBS40xtXFszuZN";

fn seed_post_body() -> Vec<u8> {
    multipart(BOUNDARY, &[("Content-Disposition: form-data; name=\"id\"", b"A002")])
}

#[test]
fn wsgi_seed_apps_answer_as_under_mod_wsgi() {
    let d = seed_daemon();
    for target in ["/wsgi/sample.py", "/sample"] {
        let r = d.get(target);
        r.expect_status(200);
        assert_eq!(r.text(), "Hello World!", "{target}");
        assert_eq!(r.header("Content-Type"), Some("text/plain"), "{target}");
        assert_eq!(r.header("Content-Length"), Some("12"), "{target}");
    }
    for target in ["/myapp?id=A001", "/wsgi/myapp.py?id=A001"] {
        let r = d.get(target);
        r.expect_status(200);
        assert_eq!(r.text(), r#"{"name": "clock", "price": 30}"#, "{target}");
        assert_eq!(r.header("Content-Type"), Some("application/json"));
    }
    let body = seed_post_body();
    assert_eq!(body.len(), 137, "the article's form body is 137 bytes");
    let content_type = format!("multipart/form-data; boundary={BOUNDARY}");
    for target in ["/myapp", "/wsgi/myapp.py"] {
        let r = d.post(target, &content_type, &body);
        r.expect_status(200);
        assert_eq!(r.text(), r#"{"name": "watch", "price": 120}"#, "{target}");
    }
    // An unknown id is a KeyError in the article's code: mod_wsgi answers 500 and logs it.
    d.get("/myapp?id=A999").expect_status(500);
    let log = d.log();
    for needle in [
        "Exception occurred processing WSGI script",
        "Traceback (most recent call last):",
        "in handle_get",
        "KeyError: 'A999'",
    ] {
        assert!(log.contains(needle), "no {needle:?} in the daemon log:\n{log}");
    }
    // The debug log the article shows, written by the app itself beside the script.
    let messages = seed_debug_messages(&d.path("wsgi/log/debug.log"));
    let posted = "wsgi.input: b'------WebKitFormBoundary8iNBS40xtXFszuZN\\r\\nContent-Disposition: \
                  form-data; name=\"id\"\\r\\n\\r\\nA002\\r\\n------WebKitFormBoundary8iNBS40xtXFszuZN--\\r\\n'";
    for want in [
        "QUERY_STRING: id=A001",
        "qs: {'id': ['A001']}",
        "content_len: 137",
        posted,
        "no of lines: 6",
        "POST data: {'id': 'A002'}",
    ] {
        assert!(messages.iter().any(|m| m == want), "no debug line {want:?} in {messages:#?}");
    }
}

#[test]
fn wsgi_seed_apps_without_develop_mode_log_only_must_lines() {
    let d = Daemon::start_with(SEED, prepare);
    let r =
        d.post("/myapp", &format!("multipart/form-data; boundary={BOUNDARY}"), &seed_post_body());
    assert_eq!(r.expect_status(200).text(), r#"{"name": "watch", "price": 120}"#);
    d.get("/myapp?id=A001").expect_status(200);
    let messages = seed_debug_messages(&d.path("wsgi/log/debug.log"));
    assert_eq!(messages, ["content_len: 137", "no of lines: 6"]);
}

/// Every kind of request, run under `wsgiref.validate.validator`: it raises (500, and
/// `AssertionError` in the log) or warns (`WSGIWarning`) on any breach of PEP 3333 by the
/// server or the app.
#[test]
fn wsgi_requests_pass_wsgiref_validate() {
    let d = Daemon::start_env(SEED, prepare, true, &[("MYAPP_DEVELOP_MODE", "1")]);
    let v = "/wsgi/validated.py";
    let r = d.get(&format!("{v}/sample.py"));
    assert_eq!(r.expect_status(200).text(), "Hello World!");
    let r = d.get(&format!("{v}/myapp.py?id=A001"));
    assert_eq!(r.expect_status(200).text(), r#"{"name": "clock", "price": 30}"#);
    let ct = format!("multipart/form-data; boundary={BOUNDARY}");
    let r = d.post(&format!("{v}/myapp.py"), &ct, &seed_post_body());
    assert_eq!(r.expect_status(200).text(), r#"{"name": "watch", "price": 120}"#);
    for (path, status) in [
        ("/types", 200),
        ("/write", 200),
        ("/exc_info", 503),
        ("/file", 200),
        ("/empty", 204),
        ("/errors", 200),
    ] {
        d.get(&format!("{v}/features.py{path}")).expect_status(status);
    }
    let r = d.post(&format!("{v}/features.py/read?mode=sized"), "text/plain", b"abc\ndef");
    r.expect_status(200);
    let r = d.post(&format!("{v}/features.py/read?mode=limited"), "text/plain", b"abc\ndef\n");
    r.expect_status(200);
    let marker = d.path("closed-validated");
    let r = d.get(&format!("{v}/features.py/close?marker={}", marker.display()));
    assert_eq!(r.expect_status(200).text(), "part one\npart two\n");
    assert!(marker.exists(), "close() was not called");
    let log = d.log();
    for bad in ["AssertionError", "WSGIWarning", "Exception occurred"] {
        assert!(!log.contains(bad), "wsgiref.validate complained ({bad}):\n{log}");
    }
}

#[test]
fn wsgi_environ_types_and_script_module() {
    let yaml = "\
handlers:
  - suffix: .py
    plugin: {wsgi}
aliases:
  - url: /one
    path: wsgi/features.py
    threads: 1
  - url: /f
    path: wsgi/features.py
";
    let d = Daemon::start_with(yaml, prepare);
    let j = d.get("/f/types").expect_status(200).json();
    assert_eq!(j["version"], serde_json::json!([1, 0]));
    assert_eq!(j["multithread"], true);
    assert_eq!(j["multiprocess"], false);
    assert_eq!(j["run_once"], false);
    assert_eq!(j["url_scheme"], "http");
    assert_eq!(j["all_str"], true, "CGI variables must be native strings: {j}");
    assert_eq!(j["wsgi.input"], "Input");
    assert_eq!(j["wsgi.errors"], "Errors");
    assert_eq!(j["wsgi.file_wrapper"], "type");
    assert_eq!(j["wsgi.input_terminated"], "bool");
    assert_eq!(j["file"], d.path("wsgi/features.py").display().to_string());
    assert!(j["name"].as_str().is_some_and(|n| n.starts_with("_gatehouse_wsgi_features_py_")));
    // One thread: requests never overlap, and the app is told so.
    assert_eq!(d.get("/one/types").expect_status(200).json()["multithread"], false);
}

/// The bridge serving `features.py` at `/f`.
const FEATURES: &str = "\
handlers:
  - suffix: .py
    plugin: {wsgi}
aliases:
  - url: /f
    path: wsgi/features.py
";

#[test]
fn wsgi_input_reading_modes() {
    let d = Daemon::start_with(FEATURES, prepare);
    let body = b"ab\ncd\n\nlast";
    let cases: &[(&str, &[&str])] = &[
        ("all", &["ab\ncd\n\nlast"]),
        ("sized", &["ab\n", "cd\n", "\nla", "st"]),
        ("lines", &["ab\n", "cd\n", "\n", "last"]),
        ("limited", &["ab", "\n"]),
        ("readlines", &["ab\n", "cd\n", "\n", "last"]),
        ("iter", &["ab\n", "cd\n", "\n", "last"]),
    ];
    for (mode, parts) in cases {
        let r = d.post(&format!("/f/read?mode={mode}"), "text/plain", body);
        let j = r.expect_status(200).json();
        assert_eq!(j["parts"], serde_json::json!(parts), "mode {mode}");
        let after = if *mode == "limited" { "c" } else { "" };
        assert_eq!(j["after"], after, "mode {mode}: what is left");
    }
    // A form body reaches the app raw (a WSGI app parses its own forms).
    let r = d.post("/f/read?mode=all", "application/x-www-form-urlencoded", b"a=1&b=%20");
    assert_eq!(r.expect_status(200).json()["parts"], serde_json::json!(["a=1&b=%20"]));
    // A chunked body, read to its end by iteration (wsgi.input_terminated).
    let raw = b"POST /f/read?mode=iter HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\
                Content-Type: text/plain\r\nConnection: close\r\n\r\n4\r\nab\nc\r\n3\r\nd\ne\r\n0\r\n\r\n";
    let j = d.request(raw).expect_status(200).json();
    assert_eq!(j["parts"], serde_json::json!(["ab\n", "cd\n", "e"]));
    // A big body, read in one go.
    let big: Vec<u8> = (0..300_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    let j = d.post("/f/read?mode=all", "application/octet-stream", &big).expect_status(200).json();
    assert_eq!(j["parts"][0].as_str().map(str::len), Some(big.len()));
    // Lines longer than one read from the host (8 KiB to 64 KiB a read), whole and in order.
    let lines: Vec<String> =
        [20_000, 1, 70_000, 9_000].iter().map(|&n| format!("{}\n", "x".repeat(n))).collect();
    for mode in ["lines", "iter", "readlines"] {
        let j = d
            .post(&format!("/f/read?mode={mode}"), "text/plain", lines.concat().as_bytes())
            .expect_status(200)
            .json();
        assert_eq!(j["parts"], serde_json::json!(lines), "mode {mode}");
    }
}

/// Reads from `s` until `needle` has arrived (or the timeout), returning what was read.
fn read_until(s: &mut TcpStream, needle: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(needle.len()).any(|w| w == needle) {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => {
                panic!("reading the stream: {e}; got so far {:?}", String::from_utf8_lossy(&got))
            }
        }
    }
    got
}

#[test]
fn wsgi_streams_a_generator_as_it_yields_and_cuts_a_failed_stream() {
    let d = Daemon::start_with(FEATURES, prepare);
    let gate = d.path("gate");
    let mut s = TcpStream::connect(d.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let req = format!(
        "GET /f/stream?gate={} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        gate.display()
    );
    s.write_all(req.as_bytes()).expect("send");
    // The first piece arrives while the generator still waits for the gate.
    let first = read_until(&mut s, b"first\n");
    assert!(first.windows(6).any(|w| w == b"first\n"), "{:?}", String::from_utf8_lossy(&first));
    assert!(!first.windows(6).any(|w| w == b"second"));
    std::fs::write(&gate, b"open").expect("open the gate");
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).expect("read the rest");
    assert!(rest.windows(7).any(|w| w == b"second\n"), "{:?}", String::from_utf8_lossy(&rest));

    // An error after the body started: the connection is cut, never a clean end.
    let mut s = TcpStream::connect(d.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    s.write_all(b"GET /f/exc_info_late HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    let text = String::from_utf8_lossy(&all);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("started") && !text.contains("never"), "{text}");
    assert!(!text.ends_with("0\r\n\r\n"), "a failed stream must not end cleanly: {text:?}");
    wait_for("the late exc_info error in the log", Duration::from_secs(10), || {
        if d.log().contains("KeyError: 'too late'") { Ok(()) } else { Err(d.log()) }
    });
}

#[test]
fn wsgi_write_exc_info_file_wrapper_and_close() {
    let d = Daemon::start_with(FEATURES, prepare);
    assert_eq!(d.get("/f/write").expect_status(200).text(), "written then returned");
    let r = d.get("/f/exc_info");
    assert_eq!(r.expect_status(503).text(), "recovered");
    assert_eq!(r.header("X-Recovered"), Some("yes"));
    let r = d.get("/f/file");
    let source = std::fs::read(fixtures().join("features.py")).expect("read features.py");
    assert_eq!(r.expect_status(200).body, source);
    let r = d.get("/f/empty");
    assert!(r.expect_status(204).body.is_empty());
    // close() is called after a whole body, and after a body that failed half-way.
    let marker = d.path("closed");
    let r = d.get(&format!("/f/close?marker={}", marker.display()));
    assert_eq!(r.expect_status(200).text(), "part one\npart two\n");
    assert!(marker.exists(), "close() was not called");
    let failed = d.path("closed-after-failure");
    let mut s = TcpStream::connect(d.addr).expect("connect");
    let req =
        format!("GET /f/close?fail=1&marker={} HTTP/1.1\r\nHost: x\r\n\r\n", failed.display());
    s.write_all(req.as_bytes()).expect("send");
    s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    let mut all = Vec::new();
    let _ = s.read_to_end(&mut all);
    assert!(failed.exists(), "close() was not called after the iterable failed");
    assert!(d.log().contains("RuntimeError: failed after the first part"), "{}", d.log());
    // wsgi.errors lines and print() go to the daemon's log, tagged with the app.
    d.get("/f/errors").expect_status(200);
    let log = d.log();
    for line in ["): one line", "): partial rest", "): last", "printed to stdout"] {
        assert!(log.contains(line), "no {line:?} in the log:\n{log}");
    }
}

/// With the error log in a file, what an app writes to stderr lands there too, as Apache's
/// ErrorLog gets it under mod_wsgi: `print()` and `sys.stderr` on the request's thread as
/// the request's `wsgi.errors` lines (tagged with the app and request); `print()` on
/// another thread and raw writes to fd 2 (as a C extension's would be) as they are in
/// process, and as `(worker PID): stderr:` lines from a worker process, whose last words
/// before a crash are logged too, before its end.
#[test]
fn wsgi_stderr_output_goes_to_the_error_log_file() {
    let yaml = format!(
        "logs:\n  dir: LOGS\n  error_log: error.log\n{FEATURES}  - url: /iso\n    path: \
         wsgi/features.py\n    isolation: process\n    processes: 1\n"
    );
    let d = Daemon::start_with(&yaml, prepare);
    d.get("/f/errors?tag=-in-process").expect_status(200);
    d.get("/iso/errors?tag=-in-a-worker").expect_status(200);
    d.get("/iso/abort?tag=-in-a-worker").expect_status(502);
    let error_log = d.path("LOGS/error.log");
    // (the line's end, what is before it: "" for a line as the app wrote it)
    let mut wanted = Vec::new();
    for tag in ["-in-process", "-in-a-worker"] {
        // What is printed is information, what goes to sys.stderr an error.
        wanted.push((format!("printed to stdout{tag}"), " INFO  app "));
        wanted.push((format!("written to sys.stderr{tag}"), " ERROR app "));
        let raw = if tag == "-in-process" { "" } else { " ERROR /iso (worker " };
        for untagged in ["written to fd 2", "printed on another thread"] {
            wanted.push((format!("{untagged}{tag}"), raw));
        }
    }
    wanted.push(("last words-in-a-worker".to_owned(), " ERROR /iso (worker "));
    let died = |text: &str| {
        text.lines().position(|l| l.contains("/iso: worker ") && l.contains(" in flight failed"))
    };
    wait_for("the app's stderr lines in error.log", Duration::from_secs(10), || {
        let text = crate::harness::read_lossy(&error_log);
        let all = wanted.iter().all(|(w, _)| text.contains(w.as_str()));
        if all && died(&text).is_some() { Ok(()) } else { Err(text) }
    });
    let text = crate::harness::read_lossy(&error_log);
    for (end, before) in &wanted {
        // Each a line of its own.
        let line = text.lines().find(|l| l.ends_with(end.as_str())).unwrap_or_default();
        let ok = if before.is_empty() {
            line == end
        } else {
            line.contains(before) && line.contains("stderr: ") != before.contains(" app ")
        };
        assert!(ok, "{end:?} without {before:?}: {line:?}\n{text}");
    }
    let last_words = text.lines().position(|l| l.ends_with("last words-in-a-worker"));
    let (Some(last_words), Some(died)) = (last_words, died(&text)) else {
        panic!("no last words or no end:\n{text}")
    };
    assert!(last_words < died, "the crash's last words after its end:\n{text}");
    assert!(!d.log().contains("written to fd 2"), "stderr kept a line:\n{}", d.log());
}

#[test]
fn wsgi_app_errors_answer_500_with_the_reason_in_the_log() {
    let yaml = "\
handlers:
  - suffix: .py
    plugin: {wsgi}
aliases:
  - url: /f
    path: wsgi/features.py
  - url: /wsgi/
    path: wsgi/
";
    let d = Daemon::start_with(yaml, |root| {
        prepare(root);
        std::fs::write(root.join("wsgi/broken.py"), "def application(:\n").expect("write");
        std::fs::write(root.join("wsgi/nocallable.py"), "x = 1\n").expect("write");
    });
    let cases = [
        ("/f/error", 500, "ValueError: boom from features.py"),
        ("/f/badstatus", 500, "invalid status line \"OK\""),
        ("/f/badheader", 500, "has a control character"),
        ("/f/strbody", 500, "must be an iterable of bytes, and it gave a str"),
        ("/f/nostart", 500, "body started before start_response() was called"),
        ("/f/twice", 500, "start_response() was already called"),
        ("/wsgi/broken.py", 500, "SyntaxError"),
        ("/wsgi/nocallable.py", 404, "does not contain WSGI application 'application'"),
    ];
    for (target, status, needle) in cases {
        d.get(target).expect_status(status);
        assert!(d.log().contains(needle), "{target}: no {needle:?} in the log:\n{}", d.log());
    }
    let log = d.log();
    assert!(log.contains("about to fail"), "wsgi.errors before the exception:\n{log}");
    assert!(log.contains("Failed to exec Python script file"), "{log}");
    assert!(log.contains("Traceback (most recent call last):"), "{log}");
    // The daemon and the other scripts keep serving.
    assert_eq!(d.get("/wsgi/sample.py").expect_status(200).text(), "Hello World!");
}

#[test]
fn wsgi_a_204_body_never_reaches_the_connection_and_a_1xx_is_no_answer() {
    let d = Daemon::start_with(FEATURES, prepare);
    // Pipelined on one connection: bytes after the 204's head would be read as the start
    // of the next response.
    let mut c = std::net::TcpStream::connect(d.addr).unwrap();
    c.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    std::io::Write::write_all(
        &mut c,
        b"GET /f/body204 HTTP/1.1\r\nHost: x\r\n\r\nGET /f/types HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    let mut raw = Vec::new();
    std::io::Read::read_to_end(&mut c, &mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw);
    assert!(!text.contains("SMUGGLED-BODY"), "{text}");
    let (first, second) = text.split_once("\r\n\r\n").unwrap();
    assert!(first.starts_with("HTTP/1.1 204 "), "{text}");
    assert!(second.starts_with("HTTP/1.1 200 "), "the next response is not next:\n{text}");
    assert!(d.log().contains("204 No Content reply came with a body; its 13 bytes"), "{}", d.log());
    // 103 as the final status: refused (500), never sent as if it answered.
    d.get("/f/interim").expect_status(500);
}

#[test]
fn wsgi_script_is_reimported_when_it_changes_and_gone_when_removed() {
    let yaml = "\
handlers:
  - suffix: .py
    plugin: {wsgi}
aliases:
  - url: /one
    path: wsgi/changing.py
  - url: /wsgi/
    path: wsgi/
  - url: /fixed
    path: wsgi/fixed.py
    reloading: off
";
    let script = |v: &str| {
        format!(
            "import time\nLOADED = time.time()\ndef application(environ, start_response):\n    \
             start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'{v}']\n"
        )
    };
    let d = Daemon::start_with(yaml, |root| {
        prepare(root);
        std::fs::write(root.join("wsgi/changing.py"), script("version one")).expect("write");
        std::fs::write(root.join("wsgi/fixed.py"), script("fixed one")).expect("write");
    });
    for target in ["/one", "/wsgi/changing.py"] {
        assert_eq!(d.get(target).expect_status(200).text(), "version one");
    }
    assert_eq!(d.get("/fixed").expect_status(200).text(), "fixed one");
    std::fs::write(d.path("wsgi/changing.py"), script("version two, longer")).expect("rewrite");
    std::fs::write(d.path("wsgi/fixed.py"), script("fixed two, longer")).expect("rewrite");
    for target in ["/one", "/wsgi/changing.py"] {
        assert_eq!(d.get(target).expect_status(200).text(), "version two, longer", "{target}");
    }
    // reloading: off is WSGIScriptReloading Off: the loaded module stays.
    assert_eq!(d.get("/fixed").expect_status(200).text(), "fixed one");
    std::fs::remove_file(d.path("wsgi/changing.py")).expect("remove");
    d.get("/wsgi/changing.py").expect_status(404);
    wait_for("/one to answer 404", Duration::from_secs(10), || {
        let r = d.get("/one");
        if r.status == 404 { Ok(()) } else { Err(r.to_string()) }
    });
}

#[test]
fn wsgi_scripts_pass_the_plugin_trust_rules_before_they_run() {
    // A script runs as the daemon's user, as a plugin does: a script others may write, or
    // whose folder they may write, is refused (500, the rule and the fix in the log, once),
    // in process and in worker processes alike. A `chmod` fixes it without an edit; with
    // `check_plugins: false` it runs with a warning.
    use std::os::unix::fs::PermissionsExt;
    for isolation in ["in-process", "process\n    processes: 1"] {
        let yaml = format!(
            "\
handlers:
  - suffix: .py
    plugin: {{wsgi}}
aliases:
  - url: /open
    path: wsgi/open.py
    isolation: {isolation}
  - url: /shared/
    path: shared/
    isolation: {isolation}
  - url: /dev
    path: dev/open.py
    check_plugins: false
    isolation: {isolation}
"
        );
        let hello = "def application(environ, start_response):\n    \
                     start_response('200 OK', [('Content-Type', 'text/plain')])\n    \
                     return [b'ran']\n";
        let chmod = |p: &Path, mode: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        };
        let d = Daemon::start_with(&yaml, |root| {
            for dir in ["wsgi", "shared", "dev"] {
                std::fs::create_dir_all(root.join(dir)).expect("mkdir");
            }
            for file in ["wsgi/open.py", "shared/app.py", "dev/open.py"] {
                std::fs::write(root.join(file), hello).expect("write a script");
            }
            chmod(&root.join("wsgi/open.py"), 0o666);
            chmod(&root.join("dev/open.py"), 0o646);
            chmod(&root.join("shared"), 0o777);
        });
        let open = d.path("wsgi/open.py");
        for _ in 0..3 {
            let r = d.get("/open");
            r.expect_status(500);
            assert_eq!(r.text(), "this WSGI script is refused: see the error log\n");
            d.get("/shared/app.py").expect_status(500);
        }
        let log = d.log();
        assert!(!log.contains("the app failed"), "{isolation}: one line per refusal:\n{log}");
        let want = format!(
            "/open: refused WSGI script: {} is writable by its group and everyone (mode 0666) \
             (fix: `chmod go-w {}`",
            open.display(),
            open.display()
        );
        assert_eq!(log.matches(&want).count(), 1, "{isolation}: once, not per request:\n{log}");
        let shared = d.path("shared");
        let want = format!(
            "{} (the script's folder) is writable by its group and everyone (mode 0777): they \
             can rename another file over the script (fix: `chmod go-w {}`",
            shared.display(),
            shared.display()
        );
        assert_eq!(log.matches(&want).count(), 1, "{isolation}:\n{log}");
        // Fixed by chmod alone: the file's content and mtime are unchanged.
        chmod(&open, 0o644);
        chmod(&shared, 0o755);
        assert_eq!(d.get("/open").expect_status(200).text(), "ran", "{isolation}");
        assert_eq!(d.get("/shared/app.py").expect_status(200).text(), "ran", "{isolation}");
        // check_plugins: false runs it and says so, once.
        for _ in 0..2 {
            assert_eq!(d.get("/dev").expect_status(200).text(), "ran", "{isolation}");
        }
        let log = d.log();
        let warned = "/dev: running WSGI script anyway, `check_plugins` is off: ";
        assert_eq!(log.matches(warned).count(), 1, "{isolation}:\n{log}");
        assert!(log.contains("is writable by everyone (mode 0646)"), "{isolation}:\n{log}");
    }
}

#[test]
fn wsgi_callable_setting_and_extension_modules() {
    let yaml = "\
handlers:
  - suffix: .py
    plugin: {wsgi}
    env: {callable: application}
aliases:
  - url: /other
    path: wsgi/features.py
    env: {callable: other}
  - url: /ext
    path: wsgi/ext.py
";
    let d = Daemon::start_with(yaml, |root| {
        prepare(root);
        std::fs::write(
            root.join("wsgi/ext.py"),
            "import json, socket, sqlite3, decimal, ssl, hashlib, zlib, _json\n\
             def application(environ, start_response):\n    \
                 out = json.dumps({'sum': str(decimal.Decimal('1.1') + decimal.Decimal('2.2')),\n\
                                   'sqlite': sqlite3.connect(':memory:').execute('select 6*7').fetchone()[0],\n\
                                   'socket': hasattr(socket, 'socketpair')}).encode()\n    \
                 start_response('200 OK', [('Content-Type', 'application/json')])\n    \
                 return [out]\n",
        )
        .expect("write ext.py");
    });
    assert_eq!(d.get("/other").expect_status(200).text(), "the other callable");
    let j = d.get("/ext").expect_status(200).json();
    assert_eq!(j, serde_json::json!({"sum": "3.3", "sqlite": 42, "socket": true}));
}

#[test]
fn wsgi_a_new_bridge_build_swaps_in_and_joins_the_interpreter() {
    let yaml = "\
handlers:
  - suffix: .py
    plugin: bridge/libwsgi.so
aliases:
  - url: /sample
    path: wsgi/sample.py
";
    let d = Daemon::start_with(yaml, |root| {
        prepare(root);
        crate::harness::install(&crate::harness::artifacts().wsgi, &root.join("bridge/libwsgi.so"));
    });
    assert_eq!(d.get("/sample").expect_status(200).text(), "Hello World!");
    // Another build: the same code with other bytes (a different digest), mapped anew, with
    // fresh statics, joining the interpreter the first build started.
    let mut bytes = std::fs::read(&crate::harness::artifacts().wsgi).expect("read libwsgi.so");
    bytes.extend_from_slice(&[0u8; 64]);
    let tmp = d.path("bridge/.next.so");
    std::fs::write(&tmp, &bytes).expect("write the new build");
    std::fs::rename(&tmp, d.path("bridge/libwsgi.so")).expect("install it");
    wait_for("the new bridge build", Duration::from_secs(15), || {
        if d.log().contains("reloaded ") { Ok(()) } else { Err(d.log()) }
    });
    assert_eq!(d.get("/sample").expect_status(200).text(), "Hello World!");
    assert!(!d.log().contains("refused"), "{}", d.log());
}

/// A virtualenv with Flask, made once per test run under the target folder (pip needs the
/// package index).
fn flask_venv() -> &'static Result<PathBuf, String> {
    static VENV: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    VENV.get_or_init(|| {
        // Beside the built daemon: TARGET/PROFILE/wsgi-flask-venv.
        let dir = crate::harness::artifacts()
            .gatehouse
            .parent()
            .ok_or("the daemon has no folder")?
            .join("wsgi-flask-venv");
        let python = dir.join("bin/python3");
        let ready = |p: &Path| {
            std::process::Command::new(p)
                .args(["-c", "import flask"])
                .output()
                .is_ok_and(|o| o.status.success())
        };
        if ready(&python) {
            return Ok(dir);
        }
        let run = |cmd: &mut std::process::Command| -> Result<(), String> {
            let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!("{cmd:?} failed:\n{}", String::from_utf8_lossy(&out.stderr)))
            }
        };
        run(std::process::Command::new("/usr/bin/python3").args(["-m", "venv"]).arg(&dir))?;
        run(std::process::Command::new(dir.join("bin/pip")).args(["install", "-q", "flask"]))?;
        if ready(&python) { Ok(dir) } else { Err("flask does not import".to_owned()) }
    })
}

#[test]
fn wsgi_flask_app_from_a_virtualenv() {
    let venv = match flask_venv() {
        Ok(v) => v,
        Err(e) => panic!("cannot make the Flask virtualenv (pip needs PyPI): {e}"),
    };
    let yaml = format!(
        "\
handlers:
  - suffix: .py
    plugin: {{wsgi}}
    python_home: {}
aliases:
  - url: /flask
    path: wsgi/flaskapp.py
    env: {{callable: app}}
",
        venv.display()
    );
    let d = Daemon::start_with(&yaml, prepare);
    assert_eq!(d.get("/flask/hello/gatehouse").expect_status(200).text(), "Hello, gatehouse!");
    let r = d.post("/flask/form", "application/x-www-form-urlencoded", b"id=A002");
    assert_eq!(r.expect_status(200).json(), serde_json::json!({"id": "A002", "upload": null}));
    let body = multipart(
        "xyz",
        &[
            ("Content-Disposition: form-data; name=\"id\"", b"A001"),
            ("Content-Disposition: form-data; name=\"f\"; filename=\"a.txt\"", b"file text"),
        ],
    );
    let r = d.post("/flask/form", "multipart/form-data; boundary=xyz", &body);
    assert_eq!(
        r.expect_status(200).json(),
        serde_json::json!({"id": "A001", "upload": "file text"})
    );
    let r = d.post("/flask/json", "application/json", br#"{"a": [1, 2]}"#);
    assert_eq!(r.expect_status(200).json(), serde_json::json!({"got": {"a": [1, 2]}, "n": 1}));
    d.get("/flask/nothere").expect_status(404);
}

/// A project as Django lays one out: `app.py` (its `wsgi.py`) imports a module of its own.
fn project(root: &Path, value: &str) {
    let dir = root.join("proj");
    std::fs::create_dir_all(&dir).expect("create proj/");
    std::fs::write(dir.join("helper.py"), format!("VALUE = {value:?}\n")).expect("write helper");
    if !dir.join("app.py").exists() {
        touch_script(root, "");
    }
}

/// Writes `proj/app.py` anew (its size changes with `mark`), as a deploy touches `wsgi.py`.
fn touch_script(root: &Path, mark: &str) {
    let app = "import time\nimport helper\n\n\
               def application(environ, start_response):\n\
               \x20   if environ['PATH_INFO'] == '/slow':\n\
               \x20       time.sleep(1.5)\n\
               \x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
               \x20   return [helper.VALUE.encode()]\n";
    std::fs::write(root.join("proj/app.py"), format!("{app}# {mark}\n")).expect("write app.py");
}

#[test]
fn a_changed_script_or_a_reload_replaces_its_workers_and_its_modules_are_imported_anew() {
    let yaml = "\
handlers:
  - suffix: .py
    plugin: {wsgi}
aliases:
  - url: /proj
    path: proj/app.py
    python_path: [proj]
    isolation: process
    processes: 1
";
    let d = Daemon::start_with(yaml, |root| project(root, "one"));
    let root = d.path("");
    let wait_text = |want: &str| {
        wait_for(&format!("/proj to say {want}"), Duration::from_secs(20), || {
            let r = d.get("/proj");
            if r.status == 200 && r.text() == want { Ok(()) } else { Err(format!("{r}")) }
        });
    };
    wait_text("one");
    // A module edited alone is not imported again (as under mod_wsgi).
    project(&root, "two");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(d.get("/proj").text(), "one");
    // Touching the script replaces the worker, after its request in flight.
    let addr = d.addr;
    let slow = std::thread::spawn(move || crate::harness::get_from(addr, "/proj/slow"));
    std::thread::sleep(Duration::from_millis(300));
    touch_script(&root, "deployed");
    wait_text("two");
    let (status, text) = slow.join().expect("the slow request");
    assert_eq!((status, text.as_str()), (200, "one"), "the request in flight during the swap");
    assert!(d.log().contains("/proj: a script changed: replacing worker(s) "), "{}", d.log());
    // An explicit reload (SIGHUP, `gatehouse reload`) does the same.
    project(&root, "three");
    d.signal("HUP");
    wait_text("three");
    assert!(d.log().contains("/proj: reload: replacing worker(s) "), "{}", d.log());
    assert!(!d.log().contains(" failed"), "{}", d.log());
}
