//! Access and authentication hooks (`access_script`, `auth_user_script`, `auth_realm`):
//! mod_wsgi's `WSGIAccessScript` and `WSGIAuthUserScript`, written as a plugin (the probe's
//! `allow_access` / `check_password`) and as Python scripts through the WSGI bridge, in
//! front of apps in process and in worker processes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use crate::harness::{Daemon, read_lossy, wait_until};

/// `Authorization: Basic` for `user:password`.
fn basic(credentials: &str) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in credentials.as_bytes().chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ABC[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    format!("Authorization: Basic {out}")
}

/// The environ app behind the probe's hooks, in process and in a worker process.
const PLUGIN_HOOKS: &str = "\
logs:
  dir: LOGS
aliases:
  - url: /env
    path: {environ}
    access_script: {probe}
    auth_user_script: {probe}
    auth_realm: Staff area
  - url: /iso
    path: {environ}
    isolation: process
    processes: 1
    auth_user_script: {probe}
  - url: /open
    path: {environ}
    access_script: {probe}
";

#[test]
fn a_plugin_hook_decides_access_and_checks_basic_credentials() {
    let d = Daemon::start(PLUGIN_HOOKS);
    let alice = basic("alice:secret");
    // No credentials: 401 with the realm, the app not called.
    let r = d.get("/env/x");
    r.expect_status(401);
    assert_eq!(
        r.header("WWW-Authenticate"),
        Some("Basic realm=\"Staff area\", charset=\"UTF-8\""),
        "{r:?}"
    );
    assert!(r.text().contains("authentication required"), "{}", r.text());
    // Wrong password, a user the hook knows nothing of, credentials that do not decode.
    for header in [basic("alice:wrong"), basic("bob:secret"), basic("carol:x"), basic("nocolon")]
        .iter()
        .map(String::as_str)
        .chain(["Authorization: Basic !!!!", "Authorization: Bearer abc"])
    {
        let r = d.send("GET", "/env/x", &[header], b"");
        r.expect_status(401);
        assert!(r.header("WWW-Authenticate").is_some(), "{header}");
    }
    // The right ones: the app runs as alice, without the credentials themselves.
    let r = d.send("GET", "/env/x?a=1", &[&alice], b"");
    r.expect_status(200);
    let env = r.json();
    assert_eq!(env["REMOTE_USER"], "alice", "{env}");
    assert_eq!(env["AUTH_TYPE"], "Basic", "{env}");
    assert!(env.get("HTTP_AUTHORIZATION").is_none(), "{env}");
    // The access hook ran first, saw the client's address, and no user yet.
    let log = d.log();
    assert!(log.contains("probe hook: allow_access host=127.0.0.1 remote_user=-"), "{log}");
    // Access is decided before credentials are asked for: 403 with or without them.
    d.get("/env/x?deny").expect_status(403);
    d.send("GET", "/env/x?deny", &[&alice], b"").expect_status(403);
    // No opinion lets the request on to the password check.
    d.get("/env/x?abstain").expect_status(401);
    d.send("GET", "/env/x?abstain", &[&alice], b"").expect_status(200);
    // A hook that panics: 500, the panic logged, the daemon serving on.
    let r = d.send("GET", "/env/x?hook-panic", &[&alice], b"");
    r.expect_status(500);
    wait_until("the hook's panic in the error log", || {
        d.log().contains("the access hook panics, as asked")
    });
    d.send("GET", "/env/y", &[&alice], b"").expect_status(200);
    // A POST without credentials is refused before its body reaches the app.
    let r = d.send("POST", "/env/x", &["Content-Type: text/plain"], &vec![b'x'; 100_000]);
    r.expect_status(401);
    // Only an access hook: no credentials asked for.
    d.get("/open/x").expect_status(200);
    d.get("/open/x?deny").expect_status(403);
    // In a worker process: the hook runs in the daemon, the user reaches the worker's app.
    d.get("/iso/x").expect_status(401);
    d.send("GET", "/iso/x", &[&basic("alice:wrong")], b"").expect_status(401);
    let r = d.send("GET", "/iso/x", &[&alice], b"");
    r.expect_status(200);
    assert_eq!(r.json()["REMOTE_USER"], "alice");
    // With `Expect: 100-continue` and no credentials, the 401 comes instead of `100
    // Continue`: the client is never asked for a body that would be refused.
    let mut s = TcpStream::connect(d.addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    s.write_all(
        b"POST /iso/x HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\
          Expect: 100-continue\r\n\r\n",
    )
    .expect("send the head");
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("the daemon answers and closes");
    assert!(reply.starts_with("HTTP/1.1 401"), "{reply:?}");
    assert!(reply.contains("www-authenticate: Basic realm=\"/iso\""), "{reply:?}");
    // The access log names the user (Apache's %u).
    let access = d.path("LOGS/access.log");
    wait_until("alice in the access log", || {
        read_lossy(&access)
            .lines()
            .any(|l| l.starts_with("127.0.0.1 - alice [") && l.contains("/iso/x"))
    });
    assert!(
        read_lossy(&access)
            .lines()
            .any(|l| l.starts_with("127.0.0.1 - - [") && l.contains("\" 401 ")),
        "{}",
        read_lossy(&access)
    );
}

/// The Python hooks of the tests below.
const HOOKS_PY: &str = r#"
def allow_access(environ, host):
    print("access hook: host", host, "path", environ["PATH_INFO"])
    if "odd" in environ["QUERY_STRING"]:
        return "yes"
    if "boom" in environ["QUERY_STRING"]:
        raise RuntimeError("the access hook fails, as asked")
    return "deny" not in environ["QUERY_STRING"]

def check_password(environ, user, password):
    if user == "alice":
        return password == "s3cret"
    if user == "zoë":
        return password == "pä"
    return None
"#;

const APP_PY: &str = r#"
def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [("user=%s type=%s" % (environ.get("REMOTE_USER"), environ.get("AUTH_TYPE"))).encode()]
"#;

fn write_scripts(root: &Path) {
    let dir = root.join("py");
    std::fs::create_dir_all(&dir).expect("mkdir py");
    std::fs::write(dir.join("hooks.py"), HOOKS_PY).expect("write hooks.py");
    std::fs::write(dir.join("app.py"), APP_PY).expect("write app.py");
    std::fs::write(dir.join("nohooks.py"), "x = 1\n").expect("write nohooks.py");
}

const PYTHON_HOOKS: &str = "\
handlers:
  - suffix: .py
    plugin: {wsgi}
aliases:
  - url: /app
    path: py/app.py
    access_script: py/hooks.py
    auth_user_script: py/hooks.py
  - url: /group/
    path: py/
    auth_user_script: py/hooks.py
    auth_realm: Scripts
  - url: /broken
    path: py/app.py
    access_script: py/nohooks.py
";

#[test]
fn python_hooks_run_as_mod_wsgi_calls_them() {
    let d = Daemon::start_with(PYTHON_HOOKS, write_scripts);
    let alice = basic("alice:s3cret");
    let r = d.get("/app");
    r.expect_status(401);
    assert_eq!(r.header("WWW-Authenticate"), Some("Basic realm=\"/app\", charset=\"UTF-8\""));
    d.send("GET", "/app", &[&basic("alice:nope")], b"").expect_status(401);
    d.send("GET", "/app", &[&basic("mallory:x")], b"").expect_status(401);
    let r = d.send("GET", "/app/p", &[&alice], b"");
    r.expect_status(200);
    assert_eq!(r.text(), "user=alice type=Basic");
    // print() in a hook goes to the error log, as the app's would.
    wait_until("the hook's print in the error log", || {
        d.log().contains("access hook: host 127.0.0.1 path /p")
    });
    // Credentials are native strings: UTF-8 bytes decoded as latin-1, as mod_wsgi does, so
    // the hook's "zoë" (a str of 3 characters) is not the 4 the client's bytes make.
    d.send("GET", "/app", &[&basic("zoë:pä")], b"").expect_status(401);
    d.get("/app?deny").expect_status(403);
    // A hook that raises, or answers something else than True/False/None: 500, logged.
    d.send("GET", "/app?boom", &[&alice], b"").expect_status(500);
    d.send("GET", "/app?odd", &[&alice], b"").expect_status(500);
    wait_until("the exception and the type error in the error log", || {
        let log = d.log();
        log.contains("the access hook fails, as asked")
            && log.contains("allow_access() must return True, False or None, and it returned a str")
    });
    // A directory group: every script behind the one password hook, with its realm.
    let r = d.get("/group/app.py");
    r.expect_status(401);
    assert_eq!(r.header("WWW-Authenticate"), Some("Basic realm=\"Scripts\", charset=\"UTF-8\""));
    let r = d.send("GET", "/group/app.py", &[&alice], b"");
    r.expect_status(200);
    assert_eq!(r.text(), "user=alice type=Basic");
    // A name that serves nothing answers only once the hook passed the request: a client
    // without credentials cannot tell the names that exist from the others.
    d.get("/group/missing.py").expect_status(401);
    d.get("/group/.hidden.py").expect_status(401);
    d.send("GET", "/group/missing.py", &[&alice], b"").expect_status(404);
    // A script without the hook refuses everything, and says why.
    d.get("/broken").expect_status(500);
    wait_until("the missing hook in the error log", || {
        d.log().contains("does not provide allow_access()")
    });
    // `gatehouse routes` names the hooks a URL goes through.
    let o = std::process::Command::new(&crate::harness::artifacts().gatehouse)
        .args(["routes", "--config"])
        .arg(d.path("hosting.yaml"))
        .arg("/group/app.py")
        .output()
        .expect("run gatehouse routes");
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(!text.contains("access:"), "{text}");
    let auth = text.lines().find(|l| l.starts_with("auth:")).unwrap_or_default();
    assert!(auth.contains("py/hooks.py") && auth.contains("\"Scripts\""), "{text}");
    // An edited hook script is re-read, as an app script is.
    std::fs::write(
        d.path("py/hooks.py"),
        HOOKS_PY.replace("password == \"s3cret\"", "password == \"changed\""),
    )
    .expect("rewrite hooks.py");
    wait_until("the edited hook script in effect", || {
        d.send("GET", "/app", &[&basic("alice:changed")], b"").status == 200
    });
    d.send("GET", "/app", &[&alice], b"").expect_status(401);
}

#[test]
fn check_refuses_a_hook_file_that_does_not_exist() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("hosting.yaml");
    std::fs::write(dir.path().join("app.so"), b"x").expect("write app");
    std::fs::write(
        &config,
        "aliases:\n  - url: /a\n    path: app.so\n    auth_user_script: hooks/auth.py\n    auth_realm: \"a\\\"b\"\n",
    )
    .expect("write config");
    let (code, out) = crate::harness::check(&config);
    assert_eq!(code, Some(1), "{out}");
    assert!(out.contains("hosting.yaml:4:23"), "{out}");
    assert!(out.contains("the auth_user_script"), "{out}");
    assert!(out.contains("does not exist"), "{out}");
    assert!(out.contains("hosting.yaml:5:17"), "{out}");
    assert!(out.contains("must not contain '\"'"), "{out}");
}

/// A plugin built against the 1.0 descriptor (64 bytes, no hooks), followed in memory by
/// two pointers to a function that aborts: a daemon reading past `struct_size` would call
/// one of them.
const OLD_DESCRIPTOR_C: &str = r#"
#include <stdint.h>
#include <stdlib.h>
#include <stddef.h>
typedef struct { const uint8_t *ptr; size_t len; } Str;
typedef struct { Str name; Str value; } Pair;
typedef struct {
    uint32_t struct_size;
    void *read_body, *debug_log, *log_error;
    uint32_t (*start_response)(void *, uint32_t, const Pair *, size_t);
    uint32_t (*write)(void *, Str);
} Host;
typedef struct {
    uint32_t struct_size;
    const void *vars; size_t vars_len; const void *params; size_t params_len;
    const void *uploads; size_t uploads_len; void *request; const Host *host;
} Environ;
static uint32_t handle(void *instance, const Environ *env) {
    (void)instance;
    Pair h = { { (const uint8_t *)"Content-Type", 12 }, { (const uint8_t *)"text/plain", 10 } };
    env->host->start_response(env->request, 200, &h, 1);
    return env->host->write(env->request, (Str){ (const uint8_t *)"old plugin", 10 });
}
static uint32_t trap(void) { abort(); }
static const struct {
    uint32_t abi_version, struct_size;
    Str name, version;
    void *init; uint32_t (*handle)(void *, const Environ *); void *shutdown;
    uint32_t (*after[2])(void);
} D = { 1, 64, { (const uint8_t *)"old", 3 }, { (const uint8_t *)"1.0", 3 }, 0, handle, 0,
        { trap, trap } };
const void *gatehouse_app(void) { return &D; }
"#;

#[test]
fn a_plugin_built_before_the_hooks_serves_and_is_refused_as_a_hook() {
    let yaml = "\
aliases:
  - url: /old
    path: old/libold.so
  - url: /guarded
    path: {hello}
    access_script: old/libold.so
";
    let d = Daemon::start_with(yaml, |root| {
        std::fs::create_dir_all(root.join("old")).expect("mkdir old");
        crate::plugins::cc_shared(OLD_DESCRIPTOR_C, &root.join("old/libold.so"));
    });
    let r = d.get("/old");
    r.expect_status(200);
    assert_eq!(r.text(), "old plugin");
    // Named as a hook it has no entry point: every request refused, never served unchecked.
    d.get("/guarded").expect_status(500);
    d.get("/guarded").expect_status(500);
    let log = d.log();
    assert!(log.contains("has no allow_access entry point"), "{log}");
    d.get("/old").expect_status(200);
}
