//! `dispatch: inline`: the app runs on the HTTP worker that took the request, with no
//! hand-off, and answers exactly as under the pool; what would make a worker wait (a
//! streamed request body, a group plugin's first load) still goes through the pool. Under the
//! default `dispatch: auto`, only a plugin that promises never to block runs there, and a
//! call that breaks the promise sends its app back to the pool.

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

/// A C plugin promising never to block (`gh_AppFlags_NEVER_BLOCKS`): `/thread` answers the
/// name of the thread it ran on, `/sleep` the same after 300 ms (a broken promise), and
/// `/stream` writes `first`, waits 1.2 s and writes `second` (a stream: a broken promise too).
const PROMISING_C: &str = r#"
#include <string.h>
#include <unistd.h>
#include <sys/prctl.h>
#include "gatehouse.h"

static int path_is(const gh_Environ *env, const char *path) {
    for (size_t i = 0; i < env->vars_len; i++) {
        const gh_Pair *v = &((const gh_Pair *)env->vars)[i];
        if (v->name.len == 9 && memcmp(v->name.ptr, "PATH_INFO", 9) == 0)
            return v->value.len == strlen(path) && memcmp(v->value.ptr, path, v->value.len) == 0;
    }
    return 0;
}

static gh_Status handle(void *instance, const gh_Environ *env) {
    (void)instance;
    gh_Pair h = { GH_STR("Content-Type"), GH_STR("text/plain") };
    if (path_is(env, "/stream")) {
        env->host->start_response(env->request, 200, &h, 1);
        env->host->write(env->request, (gh_Str)GH_STR("first\n"));
        usleep(1200 * 1000);
        env->host->write(env->request, (gh_Str)GH_STR("second\n"));
        return gh_Status_OK;
    }
    if (path_is(env, "/sleep"))
        usleep(300 * 1000);
    char name[17] = {0};
    prctl(PR_GET_NAME, name, 0, 0, 0);
    env->host->start_response(env->request, 200, &h, 1);
    return env->host->write(env->request, (gh_Str){ (const uint8_t *)name, strlen(name) });
}

static const gh_AppDescriptor D = {
    .abi_version = gh_ABI_VERSION,
    .struct_size = sizeof(gh_AppDescriptor),
    .name = GH_STR("promising"),
    .version = GH_STR("1.0"),
    .handle = handle,
    .flags = gh_AppFlags_NEVER_BLOCKS,
};
const gh_AppDescriptor *gatehouse_app(void);
const gh_AppDescriptor *gatehouse_app(void) { return &D; }
"#;

const AUTO: &str = "\
metrics: {listen: \"127.0.0.1:0\"}
aliases:
  - url: /fast
    path: c/libpromising.so
  - url: /slow
    path: c/libpromising.so
  - url: /pooled
    path: c/libpromising.so
    dispatch: pool
  - url: /streams
    path: c/libpromising.so
  - url: /unpromised
    path: {panicky}
";

fn start_auto() -> Daemon {
    Daemon::start_with(AUTO, |root| {
        std::fs::create_dir_all(root.join("c")).expect("mkdir c");
        let header = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../crates/gatehouse-abi/include/gatehouse.h");
        let source =
            PROMISING_C.replace("\"gatehouse.h\"", &format!("{:?}", header.display().to_string()));
        crate::plugins::cc_shared(&source, &root.join("c/libpromising.so"));
    })
}

#[test]
fn by_default_only_plugins_that_promise_never_to_block_run_on_the_http_worker() {
    let d = start_auto();
    let fast = d.get("/fast/thread");
    fast.expect_status(200);
    assert!(fast.text().starts_with("actix-rt"), "the promising app ran on {:?}", fast.text());
    let pooled = d.get("/pooled/thread");
    assert!(pooled.text().starts_with("app /pooled#"), "dispatch: pool ran on {:?}", pooled.text());
    let unpromised = d.get("/unpromised/thread");
    assert!(
        unpromised.text().starts_with("app /unpromised"),
        "an app without the promise ran on {:?}",
        unpromised.text()
    );
    let log = d.log();
    assert!(log.contains("promises its calls never block"), "the load line says so:\n{log}");
    // `gatehouse routes` shows a dispatch set on an alias.
    let o = std::process::Command::new(&crate::harness::artifacts().gatehouse)
        .args(["routes", "--config"])
        .arg(d.path("hosting.yaml"))
        .output()
        .expect("run gatehouse routes");
    let text = String::from_utf8_lossy(&o.stdout);
    let line = |url: &str| text.lines().find(|l| l.contains(url)).unwrap_or_default().to_owned();
    assert!(line("/pooled").contains("[dispatch: pool]"), "{text}");
    assert!(!line("/fast").contains("dispatch"), "{text}");
}

#[test]
fn a_call_that_breaks_the_promise_sends_its_app_to_the_pool_with_a_warning() {
    let d = start_auto();
    // 300 ms asleep: past the 20 ms a call may wait at all.
    let slow = d.get("/slow/sleep");
    slow.expect_status(200);
    assert!(slow.text().starts_with("actix-rt"), "the first call ran on {:?}", slow.text());
    let after = std::time::Instant::now();
    let next = d.get("/slow/thread");
    next.expect_status(200);
    // The probation is a second: a machine too slow to ask again within it proves nothing.
    if after.elapsed() < std::time::Duration::from_millis(900) {
        assert!(next.text().starts_with("app /slow#"), "on probation it ran on {:?}", next.text());
    }
    let log = d.log();
    assert!(
        log.contains("but this one waited")
            && log.contains("its calls run on its threads for the next 1 s"),
        "no warning for the broken promise:\n{log}"
    );
    // Another alias of the same plugin has its own standing.
    let fast = d.get("/fast/thread");
    assert!(fast.text().starts_with("actix-rt"), "the other alias ran on {:?}", fast.text());
    // The status page counts it.
    let line = d.stdout_line(std::time::Duration::from_secs(10)).expect("the metrics line");
    let addr: std::net::SocketAddr = line
        .strip_prefix("gatehouse metrics on http://")
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("unexpected line {line:?}"));
    let (status, text) = crate::harness::get_from(addr, "/status.json");
    assert_eq!(status, 200, "{text}");
    let j: serde_json::Value = serde_json::from_str(&text).expect("the status as JSON");
    let plugin = |url: &str| {
        let a = j["aliases"].as_array().and_then(|a| a.iter().find(|a| a["url"] == url));
        a.map(|a| a["plugins"][0].clone()).unwrap_or_else(|| panic!("no {url} in {j:#}"))
    };
    let (slow, fast, unpromised) = (plugin("/slow"), plugin("/fast"), plugin("/unpromised"));
    assert_eq!(
        (&slow["never_blocks"], &slow["promises_broken"]),
        (&true.into(), &1.into()),
        "{slow:#}"
    );
    assert_eq!(fast["promises_broken"], 0, "{fast:#}");
    assert_eq!(unpromised["never_blocks"], false, "{unpromised:#}");
}

#[test]
fn a_promising_app_that_streams_on_the_worker_is_cut_then_streams_from_its_pool() {
    let d = start_auto();
    let cut = d.get("/streams/stream");
    cut.expect_status(500);
    assert!(cut.text().contains("cut"), "{cut}");
    let after = std::time::Instant::now();
    let log = d.log();
    assert!(log.contains("was still writing its reply on an HTTP worker"), "{log}");
    // The cut call broke the promise (it ran 1.2 s): the next one streams from the pool.
    let streamed = d.get("/streams/stream");
    if after.elapsed() < std::time::Duration::from_millis(900) {
        streamed.expect_status(200);
        assert_eq!(streamed.text(), "first\nsecond\n", "{streamed}");
    }
    // The other aliases were served meanwhile.
    assert!(d.get("/fast/thread").text().starts_with("actix-rt"));
}
