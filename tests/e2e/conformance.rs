//! Conformance with a real Apache + mod_wsgi (a plugin gets exactly what mod_wsgi gives a
//! WSGI app): every request of `fixtures/modwsgi-environ.json` is replayed byte for byte against
//! Gatehouse, and what the `apps/environ` plugin sees is compared with what the seed's
//! `environ.py` saw under Apache.
//!
//! The fixture is produced by `scripts/capture-modwsgi-environ` (not part of CI), which runs
//! Debian's apache2 + libapache2-mod-wsgi-py3 on a loopback port with
//!
//! ```text
//! WSGIScriptAlias /environ $TMP/wsgi/environ.py     + SetEnv GATEHOUSE_TEST_ENV hello
//! WSGIScriptAlias /wsgi/   $TMP/wsgi/
//! ```
//!
//! and the Gatehouse side here is the equivalent configuration: `/environ` → `libenviron.so`
//! with `env: {GATEHOUSE_TEST_ENV: hello}`, `/wsgi/` → a folder holding a copy of
//! `libenviron.so` named `environ.py`, so the very same URLs resolve.
//!
//! What is compared, per case:
//! - the status, always;
//! - when the app ran and replied a body: every environ key, classified by [`class`]: the
//!   request's CGI/WSGI keys ([`EXACT`], every `HTTP_*` key, and the alias's `env`) exactly,
//!   present or absent alike; host-dependent keys only for presence ([`PRESENCE`]);
//!   Apache-only keys not at all ([`IGNORED`]); any other key mod_wsgi gives exactly, and any
//!   other key Gatehouse adds (but `gatehouse.*`) is reported as extra;
//! - for HEAD, whose reply has no body: the reply has no body, and has the Content-Type and a
//!   Content-Length, as the app set them.
//!
//! Every mismatch of every case is collected and reported at once.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::panic::AssertUnwindSafe;
use std::path::Path;

use serde_json::{Map, Value};

use crate::harness::{Daemon, Response, artifacts, install};

/// The captured ground truth.
const FIXTURE: &str = include_str!("fixtures/modwsgi-environ.json");

/// The equivalent of the capture's two `WSGIScriptAlias` lines.
const CONFIG: &str = "\
aliases:
  - url: /environ
    path: {environ}
    env:
      GATEHOUSE_TEST_ENV: hello
  - url: /wsgi/
    path: wsgi/
";

/// Puts a copy of `libenviron.so` at `wsgi/environ.py`, as the capture's `$TMP/wsgi/environ.py`.
fn prepare(root: &Path) {
    install(&artifacts().environ, &root.join("wsgi/environ.py"));
}

/// Where Gatehouse answers differently from Apache on purpose: (case, Apache's status,
/// Gatehouse's status, why). Each is a request Apache's lenient parser accepts (or a
/// fragment its parser sees and actix's drops) and the HTTP RFCs let a server refuse.
const DEVIATIONS: &[(&str, u16, u16, &str)] = &[
    (
        "header-obs-fold",
        200,
        400,
        "obsolete line folding is refused, as RFC 9112 section 5.2 allows, so that no folded \
         header can smuggle a value past a proxy",
    ),
    (
        "fragment",
        400,
        200,
        "the HTTP parser drops a #fragment from the target (clients never send one); the path \
         and query before it are served",
    ),
];

/// Response headers of `apps/environ` (and the seed's environ.py) compared exactly: they
/// show what a HEAD request reached the app as.
const X_ENVIRON: &[&str] =
    &["X-Environ-Method", "X-Environ-Script-Name", "X-Environ-Path-Info", "X-Environ-Query-String"];

/// Keys compared exactly, present or absent alike: the request's CGI/WSGI keys, and the
/// alias's `env`.
/// Every `HTTP_*` key is compared the same way (same set of keys, same values).
const EXACT: &[&str] = &[
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "CONTENT_TYPE",
    "CONTENT_LENGTH",
    "SERVER_NAME",
    "SERVER_PROTOCOL",
    "REQUEST_URI",
    "REQUEST_SCHEME",
    "GATEWAY_INTERFACE",
    "wsgi.url_scheme",
    "GATEHOUSE_TEST_ENV",
];

/// Keys whose values depend on the host or the run: Gatehouse must have them whenever
/// mod_wsgi has them, with any value.
const PRESENCE: &[(&str, &str)] = &[
    ("REMOTE_ADDR", "the client's address (127.0.0.1 on both sides, but a property of the run)"),
    ("REMOTE_PORT", "the client's ephemeral port"),
    ("SERVER_ADDR", "the address the server accepted on"),
    ("SERVER_SOFTWARE", "names the server: `Apache/2.4.x (Debian) mod_wsgi/4.x Python/3.x`"),
    ("SCRIPT_FILENAME", "the app's file: `$TMP/wsgi/environ.py` there, the plugin here"),
];

/// Keys mod_wsgi gives that Gatehouse need not: Apache's own concepts, with no equivalent here.
/// A trailing `.` makes the entry a prefix.
const IGNORED: &[(&str, &str)] = &[
    ("DOCUMENT_ROOT", "Apache's DocumentRoot; Gatehouse serves no document tree"),
    ("CONTEXT_DOCUMENT_ROOT", "DocumentRoot of the matched context (mod_alias); no equivalent"),
    ("CONTEXT_PREFIX", "URL prefix of the matched DocumentRoot context; no equivalent"),
    ("PATH_TRANSLATED", "PATH_INFO mapped onto DocumentRoot; meaningless without one"),
    ("PATH", "the Apache process's own PATH"),
    ("SERVER_ADMIN", "Apache's ServerAdmin setting"),
    ("SERVER_SIGNATURE", "Apache's ServerSignature footer"),
    ("mod_wsgi.", "mod_wsgi internals: groups, request ids and times, listener host and port"),
    ("apache.", "Apache's own version"),
];

/// `SERVER_PORT` has a documented transformation: with `UseCanonicalName Off`, Apache takes
/// it from the Host header, and when that has no port, from the ServerName's port, which the
/// capture leaves unset, so the default, `80`. It is compared exactly, unless it equals the
/// port Apache happened to listen on (`note.capture_port`), where it is only checked for
/// presence.
const SERVER_PORT: &str = "SERVER_PORT";

/// How one environ key is compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Same presence, same value.
    Exact,
    /// Present in Gatehouse whenever present under mod_wsgi.
    Presence,
    /// Not compared.
    Ignored,
    /// A key mod_wsgi does not name among the above: compared exactly when mod_wsgi gives it,
    /// reported as extra when only Gatehouse does.
    Other,
}

fn class(key: &str) -> Class {
    let listed = |list: &[(&str, &str)]| {
        list.iter().any(|(k, _)| if k.ends_with('.') { key.starts_with(k) } else { key == *k })
    };
    if EXACT.contains(&key) || key.starts_with("HTTP_") {
        Class::Exact
    } else if listed(PRESENCE) {
        Class::Presence
    } else if listed(IGNORED) || key.starts_with("gatehouse.") {
        Class::Ignored
    } else {
        Class::Other
    }
}

/// One difference.
#[derive(Debug)]
struct Mismatch {
    case: String,
    /// The key, or `status`, `reply`, or a response header for HEAD.
    key: String,
    apache: String,
    gatehouse: String,
}

/// The fixture's request text (latin-1) back to bytes.
fn request_bytes(name: &str, text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| {
            u8::try_from(u32::from(c))
                .unwrap_or_else(|_| panic!("case {name}: {c:?} is not latin-1"))
        })
        .collect()
}

/// A value for the report: Rust-escaped, long values shortened.
fn show(v: Option<&str>) -> String {
    match v {
        None => "<absent>".to_owned(),
        Some(s) if s.chars().count() > 70 => {
            let head: String = s.chars().take(40).collect();
            format!("{head:?}… ({} chars)", s.chars().count())
        }
        Some(s) => format!("{s:?}"),
    }
}

/// The first line of a raw request, for the report.
fn request_line(text: &str) -> &str {
    text.split("\r\n").next().unwrap_or_default()
}

/// Sends one case; a daemon that drops the connection or replies garbage is a mismatch, not
/// the end of the run.
fn send(d: &Daemon, raw: &[u8]) -> Result<Response, String> {
    std::panic::catch_unwind(AssertUnwindSafe(|| d.request(raw))).map_err(|e| {
        e.downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "the request panicked".to_owned())
    })
}

/// Which app answers: `apps/environ` (the environ at the top of its JSON, the body it read
/// as `gatehouse.input`), or the seed's `environ.py` itself through the WSGI bridge (the
/// environ under `environ`, the body as `wsgi_input`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Plugin,
    Python,
}

/// Compares one case; pushes what differs.
fn check_case(d: &Daemon, case: &Value, capture_port: &str, probe: Probe, out: &mut Vec<Mismatch>) {
    let name = case["name"].as_str().expect("case name");
    let request = case["request"].as_str().expect("case request");
    let mut push = |key: &str, apache: String, gatehouse: String| {
        out.push(Mismatch { case: name.to_owned(), key: key.to_owned(), apache, gatehouse });
    };
    let want_status = case["status"].as_u64().expect("case status");
    let r = match send(d, &request_bytes(name, request)) {
        Ok(r) => r,
        Err(e) => {
            let first = e.lines().next().unwrap_or_default().to_owned();
            push("reply", format!("HTTP {want_status}"), format!("no valid reply: {first}"));
            return;
        }
    };
    if u64::from(r.status) != want_status {
        let deliberate = DEVIATIONS.iter().any(|(case, apache, ours, _)| {
            *case == name && u64::from(*apache) == want_status && *ours == r.status
        });
        if !deliberate {
            push("status", want_status.to_string(), r.status.to_string());
        }
        return;
    }
    let app_called = case["app_called"].as_bool().unwrap_or(false);
    if !app_called || want_status != 200 {
        return;
    }
    let headers = case["headers"].as_object().expect("case headers");
    for h in X_ENVIRON {
        let apache =
            headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(h)).and_then(|(_, v)| v.as_str());
        if apache != r.header(h) {
            push(&format!("{h} header"), show(apache), show(r.header(h)));
        }
    }
    let Some(apache) = case["environ"].as_object() else {
        // HEAD: the app ran, Apache sent its headers and no body.
        let headers = case["headers"].as_object().expect("case headers");
        let apache_header = |h: &str| {
            headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(h)).and_then(|(_, v)| v.as_str())
        };
        if !r.body.is_empty() {
            push("body", "<none>".to_owned(), format!("{} bytes", r.body.len()));
        }
        if r.header("Content-Length").is_none() {
            push("Content-Length header", show(apache_header("Content-Length")), show(None));
        }
        if r.header("Content-Type") != apache_header("Content-Type") {
            push(
                "Content-Type header",
                show(apache_header("Content-Type")),
                show(r.header("Content-Type")),
            );
        }
        return;
    };
    let reply: Option<Map<String, Value>> = match serde_json::from_slice(&r.body) {
        Ok(Value::Object(m)) => match probe {
            Probe::Plugin => Some(m),
            Probe::Python => match &m.get("environ") {
                Some(Value::Object(env)) => {
                    let mut env = env.clone();
                    env.insert("gatehouse.input".to_owned(), m["wsgi_input"].clone());
                    Some(env)
                }
                _ => None,
            },
        },
        _ => None,
    };
    let gatehouse: Map<String, Value> = match reply {
        Some(m) => m,
        None => {
            push(
                "reply",
                "the app's JSON environ".to_owned(),
                format!("not a JSON object: {}", show(Some(&r.text()))),
            );
            return;
        }
    };
    // What the body reader yielded. A form body is parsed by the daemon into parameters
    // before a plugin is called, so there the reader is empty by design.
    let form = ["application/x-www-form-urlencoded", "multipart/form-data"].iter().any(|t| {
        apache.get("CONTENT_TYPE").and_then(Value::as_str).is_some_and(|ct| ct.starts_with(t))
    });
    // Through the WSGI bridge the app reads the raw body, form or not, as under mod_wsgi.
    if (!form || probe == Probe::Python) && case["wsgi_input"] != gatehouse["gatehouse.input"] {
        push(
            "body read by the app",
            case["wsgi_input"].to_string(),
            gatehouse["gatehouse.input"].to_string(),
        );
    }
    let ours =
        |k: &str| gatehouse.get(k).map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned));
    let theirs = |k: &str| apache.get(k).and_then(Value::as_str);
    let keys: BTreeSet<&str> = apache.keys().chain(gatehouse.keys()).map(String::as_str).collect();
    for key in keys {
        let (a, g) = (theirs(key), ours(key));
        let (a_show, g_show) = (show(a), show(g.as_deref()));
        match (key, class(key)) {
            (SERVER_PORT, _) => {
                let differs = if a == Some(capture_port) {
                    a.is_some() && g.is_none()
                } else {
                    a != g.as_deref()
                };
                if differs {
                    push(key, a_show, g_show);
                }
            }
            (_, Class::Exact) => {
                if a != g.as_deref() {
                    push(key, a_show, g_show);
                }
            }
            (_, Class::Presence) => {
                if a.is_some() && g.is_none() {
                    push(key, a_show, g_show);
                }
            }
            (_, Class::Ignored) => {}
            (_, Class::Other) => {
                if a.is_some() && a != g.as_deref() {
                    push(key, a_show, g_show);
                } else if a.is_none() {
                    push(key, "<absent> (not a mod_wsgi key)".to_owned(), g_show);
                }
            }
        }
    }
}

/// All mismatches: first those shared by many cases (same key, same values), then by case.
fn report(fixture: &Value, cases: &[Value], mismatches: &[Mismatch]) -> String {
    /// A difference seen in this many cases or more is shown once, with the case names.
    const WIDESPREAD: usize = 3;
    let note = &fixture["note"];
    let mut groups: BTreeMap<(&str, &str, &str), Vec<&str>> = BTreeMap::new();
    // Status and reply differences have as many causes as cases: always shown by case.
    for m in mismatches.iter().filter(|m| m.key != "status" && m.key != "reply") {
        groups.entry((&m.key, &m.apache, &m.gatehouse)).or_default().push(&m.case);
    }
    let differing: BTreeSet<&str> = mismatches.iter().map(|m| m.case.as_str()).collect();
    let mut s = format!(
        "{} mismatch(es) in {} of {} cases between Gatehouse and {} + mod_wsgi {} (captured {}):\n",
        mismatches.len(),
        differing.len(),
        cases.len(),
        note["apache"].as_str().unwrap_or("?"),
        note["mod_wsgi"].as_str().unwrap_or("?"),
        note["date"].as_str().unwrap_or("?"),
    );
    let widespread = |m: &Mismatch| {
        groups
            .get(&(m.key.as_str(), m.apache.as_str(), m.gatehouse.as_str()))
            .is_some_and(|n| n.len() >= WIDESPREAD)
    };
    if groups.values().any(|names| names.len() >= WIDESPREAD) {
        let _ = writeln!(s, "\nIn {WIDESPREAD} cases or more:");
        for ((key, apache, gatehouse), names) in &groups {
            if names.len() >= WIDESPREAD {
                let _ = writeln!(
                    s,
                    "    {key}: apache {apache}, gatehouse {gatehouse}\n        {} cases: {}",
                    names.len(),
                    names.join(", ")
                );
            }
        }
    }
    let _ = writeln!(s, "\nBy case:");
    for case in cases {
        let name = case["name"].as_str().unwrap_or_default();
        let mine: Vec<&Mismatch> =
            mismatches.iter().filter(|m| m.case == name && !widespread(m)).collect();
        if mine.is_empty() {
            continue;
        }
        let line = request_line(case["request"].as_str().unwrap_or_default());
        let _ = writeln!(s, "  {name}  [{}]", show(Some(line)));
        for m in mine {
            let _ = writeln!(
                s,
                "    {:<24} apache:    {}\n    {:<24} gatehouse: {}",
                m.key, m.apache, "", m.gatehouse
            );
        }
    }
    s
}

fn load() -> (Value, Vec<Value>) {
    let fixture: Value =
        serde_json::from_str(FIXTURE).expect("fixtures/modwsgi-environ.json is JSON");
    let cases = fixture["cases"].as_array().expect("the fixture has a `cases` list").clone();
    (fixture, cases)
}

/// The fixture is complete and well formed (runs in the normal suite).
#[test]
fn conformance_fixture_is_well_formed() {
    let (fixture, cases) = load();
    assert!(
        cases.len() >= 30,
        "the conformance suite wants at least 30 requests, the fixture has {}",
        cases.len()
    );
    assert!(fixture["note"]["apache"].as_str().is_some_and(|v| v.starts_with("Apache/2.4")));
    assert!(fixture["note"]["mod_wsgi"].is_string());
    assert!(fixture["note"]["capture_port"].is_u64());
    let mut names = BTreeSet::new();
    for case in &cases {
        let name = case["name"].as_str().expect("case name");
        assert!(names.insert(name), "duplicate case {name}");
        let raw = request_bytes(name, case["request"].as_str().expect("request"));
        assert!(raw.windows(4).any(|w| w == b"\r\n\r\n"), "{name}: no end of headers");
        // Only the port-free Host the fixture promises.
        for line in
            String::from_utf8_lossy(&raw).split("\r\n").skip(1).take_while(|l| !l.is_empty())
        {
            if let Some(host) = line.strip_prefix("Host: ") {
                assert!(
                    !host.contains(&fixture["note"]["capture_port"].to_string()),
                    "{name}: {line}"
                );
            }
        }
        let status = case["status"].as_u64().expect("status");
        let app_called = case["app_called"].as_bool().expect("app_called");
        match (status, app_called, case["environ"].is_object()) {
            (200, true, true) => {}
            (200, true, false) => {
                assert!(raw.starts_with(b"HEAD "), "{name}: 200 without an environ")
            }
            (_, false, false) => {}
            other => panic!("{name}: unexpected (status, app_called, environ) {other:?}"),
        }
    }
    // Both alias kinds, every method, and the cases Apache answers itself are all there.
    for method in ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
        assert!(
            cases.iter().any(|c| c["request"]
                .as_str()
                .is_some_and(|r| r.starts_with(&format!("{method} ")))),
            "no {method} case"
        );
    }
    for script_name in ["/environ", "/wsgi/environ.py"] {
        assert!(
            cases.iter().any(|c| c["environ"]["SCRIPT_NAME"] == script_name),
            "no {script_name} case"
        );
    }
    assert!(cases.iter().any(|c| c["status"] == 400), "no case Apache refuses");
    // Every key the test sees is classified on purpose, or deliberately strict.
    for key in
        ["REQUEST_METHOD", "HTTP_X_FOO", "REMOTE_PORT", "mod_wsgi.request_id", "gatehouse.params"]
    {
        assert_ne!(class(key), Class::Other, "{key}");
    }
}

/// Gatehouse gives the app what mod_wsgi gives a WSGI app, for every captured request.
#[test]
fn conformance_environ_matches_mod_wsgi() {
    let (fixture, cases) = load();
    let capture_port = fixture["note"]["capture_port"].to_string();
    let d = Daemon::start_with(CONFIG, prepare);
    let mut mismatches = Vec::new();
    for case in &cases {
        check_case(&d, case, &capture_port, Probe::Plugin, &mut mismatches);
    }
    assert!(mismatches.is_empty(), "{}", report(&fixture, &cases, &mismatches));
}

/// The same requests against the seed's `environ.py` itself, run by the WSGI bridge with
/// the capture's layout (`/environ` → `wsgi/environ.py`, `/wsgi/` → `wsgi/`): the environ
/// a Python app sees, and the body `wsgi.input` yields (forms included), match mod_wsgi's.
#[test]
fn conformance_wsgi_bridge_matches_mod_wsgi() {
    let (fixture, cases) = load();
    let capture_port = fixture["note"]["capture_port"].to_string();
    let config = "\
handlers:
  - suffix: .py
    plugin: {wsgi}
aliases:
  - url: /environ
    path: wsgi/environ.py
    env:
      GATEHOUSE_TEST_ENV: hello
  - url: /wsgi/
    path: wsgi/
";
    let d = Daemon::start_with(config, |root| {
        let dir = root.join("wsgi");
        std::fs::create_dir_all(&dir).expect("create wsgi/");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("e2e/fixtures/environ.py");
        std::fs::copy(source, dir.join("environ.py")).expect("copy environ.py");
    });
    let mut mismatches = Vec::new();
    for case in &cases {
        check_case(&d, case, &capture_port, Probe::Python, &mut mismatches);
    }
    assert!(mismatches.is_empty(), "{}", report(&fixture, &cases, &mismatches));
}
