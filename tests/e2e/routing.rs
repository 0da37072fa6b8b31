//! Routing as mod_wsgi does it: the SCRIPT_NAME / PATH_INFO split, whole-segment and
//! case-sensitive matching, the first declared alias winning, Apache's URL normalisation
//! (decode once, merge `//`, resolve `.` and `..`), and a directory group's rules for plugin
//! names (candidates, hidden names, subfolders, symlinks, files that are not plugins).

use std::path::Path;

use crate::harness::{Daemon, Response, artifacts, install};

const ROUTES: &str = "\
aliases:
  - url: /myapp
    path: {environ}
  - url: /sample
    path: {hello}
  - url: /wsgi/
    path: apps/
  - url: /first
    path: {hello}
  - url: /first/inner
    path: {environ}
  - url: /second/inner
    path: {environ}
  - url: /second
    path: {hello}
  - url: /order
    path: order/
";

/// Adds to `apps/` what the group rules are about, and fills `order/`.
fn prepare(root: &Path) {
    let a = artifacts();
    let apps = root.join("apps");
    std::fs::create_dir(apps.join("sub")).unwrap();
    install(&a.hello, &apps.join("sub/libhello.so"));
    install(&a.hello, &apps.join(".secret.so"));
    std::fs::write(apps.join("libjunk.so"), "this is a text file, not a plugin\n").unwrap();
    // A real, loadable plugin outside the folder, reached through a symlink in it.
    install(&a.hello, &root.join("outside/libevil.so"));
    std::os::unix::fs::symlink(root.join("outside/libevil.so"), apps.join("libevil.so")).unwrap();
    std::os::unix::fs::symlink("..", apps.join("up")).unwrap();
    // A symlink that stays inside the folder is fine.
    std::os::unix::fs::symlink("libhello.so", apps.join("inside.so")).unwrap();

    let order = root.join("order");
    // `DIR/NAME` exists but is not a plugin: no fall-through to `DIR/libNAME.so`.
    std::fs::create_dir_all(&order).unwrap();
    std::fs::write(order.join("greet"), "not a plugin").unwrap();
    install(&a.hello, &order.join("libgreet.so"));
    // `DIR/libNAME.so` comes before `DIR/NAME.so`.
    install(&a.environ, &order.join("libenv.so"));
    install(&a.hello, &order.join("env.so"));
    // `DIR/NAME.so` alone, and `DIR/NAME` without any suffix.
    install(&a.hello, &order.join("hi.so"));
    install(&a.environ, &order.join("plain"));
}

#[track_caller]
fn assert_hello(r: &Response, what: &str) {
    assert_eq!((r.status, r.text().as_str()), (200, "Hello World!"), "{what}: {r}");
}

/// GETs `target` from an environ app and returns (SCRIPT_NAME, PATH_INFO, SCRIPT_FILENAME).
#[track_caller]
fn split(d: &Daemon, target: &str) -> (String, String, String) {
    let r = d.get(target);
    assert_eq!(r.status, 200, "{target}: {r}");
    let j = r.json();
    let var =
        |k: &str| j[k].as_str().unwrap_or_else(|| panic!("{target}: no {k} in {r}")).to_owned();
    (var("SCRIPT_NAME"), var("PATH_INFO"), var("SCRIPT_FILENAME"))
}

#[track_caller]
fn assert_split(d: &Daemon, target: &str, script_name: &str, path_info: &str) {
    let (s, p, _) = split(d, target);
    assert_eq!(
        (s.as_str(), p.as_str()),
        (script_name, path_info),
        "SCRIPT_NAME, PATH_INFO of {target}"
    );
}

#[track_caller]
fn assert_status(d: &Daemon, target: &str, status: u16) -> Response {
    let r = d.get(target);
    assert_eq!(r.status, status, "{target}: {r}");
    // Refusals are the daemon's short text, never an app's reply.
    assert_eq!(r.header("Content-Type"), Some("text/plain; charset=utf-8"), "{target}: {r}");
    r
}

#[test]
fn single_app_split_and_normalisation() {
    let d = Daemon::start_with(ROUTES, prepare);
    let environ = artifacts().environ.display().to_string();
    for (target, script_name, path_info) in [
        ("/myapp", "/myapp", ""),
        ("/myapp/", "/myapp", "/"),
        ("/myapp/a/b", "/myapp", "/a/b"),
        ("/myapp/a/b/", "/myapp", "/a/b/"),
        ("/myapp?id=1", "/myapp", ""),
        // `//` merged, `.` and `..` resolved, as Apache does before mapping.
        ("//myapp", "/myapp", ""),
        ("//myapp//a///b", "/myapp", "/a/b"),
        ("/a/../myapp", "/myapp", ""),
        ("/myapp/./a/./b/..", "/myapp", "/a/"),
        ("/myapp/x/../y", "/myapp", "/y"),
        ("/x/%2e%2e/myapp/b", "/myapp", "/b"),
        // Decoded once: escapes in the alias and in PATH_INFO.
        ("/my%61pp/c", "/myapp", "/c"),
        ("/myapp/a%20b", "/myapp", "/a b"),
        ("/myapp/%2541", "/myapp", "/%41"),
        ("/myapp/..a/b..", "/myapp", "/..a/b.."),
    ] {
        assert_split(&d, target, script_name, path_info);
    }
    let (_, _, file) = split(&d, "/myapp");
    assert_eq!(file, environ, "SCRIPT_FILENAME of a single app");

    // Whole segments, case-sensitively.
    for target in ["/myappx", "/myappx/a", "/MYAPP", "/Myapp/a", "/my", "/", "/nothing"] {
        assert_status(&d, target, 404);
    }
    // Climbing above `/`, in any spelling, is 400.
    for target in [
        "/..",
        "/../myapp",
        "/a/../..",
        "/myapp/../..",
        "/myapp/../../myapp",
        "/%2e%2e/myapp",
        "/myapp/%2E%2E/%2e%2e",
        "/myapp/.%2e/..",
    ] {
        let r = assert_status(&d, target, 400);
        assert!(r.text().contains(".."), "{target}: {r}");
    }
    // An encoded slash is not served (Apache's AllowEncodedSlashes Off), nor a NUL.
    for target in
        ["/myapp/a%2Fb", "/myapp/a%2fb", "/myapp%2F", "/wsgi/..%2Fsample", "/wsgi%2fhello"]
    {
        let r = assert_status(&d, target, 404);
        assert!(r.text().contains("%2F"), "{target}: {r}");
    }
    for target in ["/myapp/a%00b", "/myapp%00", "/wsgi/hello%00.so"] {
        let r = assert_status(&d, target, 404);
        assert!(r.text().contains("NUL"), "{target}: {r}");
    }
    // A bad escape is 400.
    for target in ["/myapp/%zz", "/myapp/%4", "/myapp/%", "/myapp/a%g1"] {
        let r = assert_status(&d, target, 400);
        assert!(r.text().contains('%'), "{target}: {r}");
    }
    // A raw NUL in the request line never reaches an app.
    let raw = d.request(
        format!("GET /myapp/a\0b HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", d.addr)
            .as_bytes(),
    );
    assert!(matches!(raw.status, 400 | 404), "raw NUL: {raw}");
    // The query string is not part of the path: it is neither decoded nor normalised.
    let r = d.get("/myapp?next=/a/../..%2F%00");
    r.expect_status(200);
    assert_eq!(r.json()["QUERY_STRING"], "next=/a/../..%2F%00", "{r}");
    // Still serving after all that.
    assert_hello(&d.get("/sample"), "/sample");
}

#[test]
fn first_declared_alias_wins_not_the_longest() {
    let d = Daemon::start_with(ROUTES, prepare);
    // `/first` is declared before `/first/inner`: it serves everything under it.
    for target in ["/first", "/first/inner", "/first/inner/x", "/first/x"] {
        assert_hello(&d.get(target), target);
    }
    // `/second/inner` is declared before `/second`.
    assert_split(&d, "/second/inner", "/second/inner", "");
    assert_split(&d, "/second/inner/z", "/second/inner", "/z");
    for target in ["/second", "/second/", "/second/innerx", "/second/other/inner"] {
        assert_hello(&d.get(target), target);
    }
}

#[test]
fn directory_group_names_and_refusals() {
    let d = Daemon::start_with(ROUTES, prepare);
    let apps = d.path("apps");
    assert_hello(&d.get("/wsgi/hello"), "/wsgi/hello");
    assert_hello(&d.get("/wsgi/hello/"), "/wsgi/hello/");
    for (target, script_name, path_info) in [
        ("/wsgi/environ", "/wsgi/environ", ""),
        ("/wsgi/environ/", "/wsgi/environ", "/"),
        ("/wsgi/environ/x/y", "/wsgi/environ", "/x/y"),
        ("/wsgi//environ//x", "/wsgi/environ", "/x"),
        ("/wsgi/hello/../environ/x", "/wsgi/environ", "/x"),
        ("/wsgi/%65nviron", "/wsgi/environ", ""),
    ] {
        assert_split(&d, target, script_name, path_info);
    }
    let (_, _, file) = split(&d, "/wsgi/environ");
    assert_eq!(Path::new(&file), apps.join("libenviron.so"), "SCRIPT_FILENAME in a group");
    // `DIR/NAME` is the first candidate: the full file name works too.
    assert_hello(&d.get("/wsgi/libhello.so"), "/wsgi/libhello.so");
    // A symlink that stays inside the folder is served.
    assert_hello(&d.get("/wsgi/inside"), "/wsgi/inside");

    // The folder itself is not an app; the group URL without slash does not match.
    let r = assert_status(&d, "/wsgi/", 403);
    assert!(r.text().contains("not an app"), "{r}");
    assert_status(&d, "/wsgi", 404);
    assert_status(&d, "/wsgix/hello", 404);
    // Hidden names (even existing ones, even escaped) and subfolders: 403.
    for target in [
        "/wsgi/.secret",
        "/wsgi/.secret/x",
        "/wsgi/.x",
        "/wsgi/%2esecret",
        "/wsgi/sub",
        "/wsgi/sub/hello",
    ] {
        assert_status(&d, target, 403);
    }
    // Missing, wrong case, outside the folder through a symlink, not a plugin: 404.
    for target in [
        "/wsgi/missing",
        "/wsgi/HELLO",
        "/wsgi/hello.so",
        "/wsgi/evil",
        "/wsgi/libevil.so",
        "/wsgi/up",
        "/wsgi/junk",
        "/wsgi/junk/x",
    ] {
        assert_status(&d, target, 404);
    }
    // `..` resolves before routing: this is `/sample`, not a file outside the folder.
    assert_hello(&d.get("/wsgi/%2e%2e/sample"), "/wsgi/%2e%2e/sample");
    assert_status(&d, "/wsgi/../../outside/libevil.so", 400);
    // The junk file and the refusals did not disturb the others.
    assert_hello(&d.get("/wsgi/hello"), "/wsgi/hello after junk");
    assert_hello(&d.get("/sample"), "/sample after junk");
    assert!(
        d.log().contains("libjunk.so"),
        "the log does not say why junk is refused:\n{}",
        d.log()
    );
}

#[test]
fn directory_group_candidates_in_order_without_fall_through() {
    let d = Daemon::start_with(ROUTES, prepare);
    let order = d.path("order");
    // `order/greet` exists and is not a plugin: 404, although `libgreet.so` would load.
    assert_status(&d, "/order/greet", 404);
    // `libenv.so` (environ) is tried before `env.so` (hello).
    let (_, _, file) = split(&d, "/order/env");
    assert_eq!(Path::new(&file), order.join("libenv.so"));
    assert_hello(&d.get("/order/hi"), "/order/hi");
    let (s, p, file) = split(&d, "/order/plain/q");
    assert_eq!(
        (s.as_str(), p.as_str(), Path::new(&file)),
        ("/order/plain", "/q", order.join("plain").as_path())
    );
    // A group written without a trailing slash is the same group.
    assert_status(&d, "/order/", 403);
    assert_status(&d, "/order", 404);
}

#[test]
fn error_documents_replace_the_daemons_answers_and_with_override_the_apps() {
    let yaml = "\
error_documents: {404: errors/404.html}
aliases:
  - url: /p
    path: {probe}
  - url: /q
    path: {probe}
    error_override: true
  - url: /g/
    path: apps/
    error_documents: {404: errors/group.txt}
";
    let d = Daemon::start_with(yaml, |root| {
        std::fs::create_dir_all(root.join("errors")).unwrap();
        std::fs::write(root.join("errors/404.html"), "<h1>Not here</h1>\n").unwrap();
        std::fs::write(root.join("errors/group.txt"), "no such app in this group\n").unwrap();
    });
    let body = |target: &str| {
        let r = d.get(target);
        (r.status, r.header("content-type").unwrap_or_default().to_owned(), r.text())
    };
    let html = "text/html; charset=utf-8".to_owned();
    // The daemon's own 404 (no alias) gets the global document.
    assert_eq!(body("/nowhere"), (404, html.clone(), "<h1>Not here</h1>\n".to_owned()));
    // An app's own 404 keeps its body...
    let (status, _, text) = body("/p/no-such-route");
    assert_eq!((status, text.starts_with("probe: no route")), (404, true), "{text}");
    // ... unless its alias has error_override.
    assert_eq!(body("/q/no-such-route"), (404, html, "<h1>Not here</h1>\n".to_owned()));
    // An alias's own document wins over the global one.
    let (status, kind, text) = body("/g/missing");
    assert_eq!(
        (status, kind.as_str(), text.as_str()),
        (404, "text/plain; charset=utf-8", "no such app in this group\n")
    );
    // Other statuses keep the daemon's body.
    let r = d.send("TRACE", "/p", &[], b"");
    r.expect_status(405);
    assert!(r.text().contains("TRACE is not allowed"), "{r}");
    // A document that is not there, or a status that is no error, is a positioned error.
    std::fs::write(
        d.path("bad.yaml"),
        "error_documents: {404: errors/none.html, 200: errors/404.html}\naliases: []\n",
    )
    .unwrap();
    let (code, err) = crate::harness::check(&d.path("bad.yaml"));
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("bad.yaml:1:24: error: the error document"), "{err}");
    assert!(err.contains("bad.yaml:1:42: error: `200` is not an HTTP error status"), "{err}");
}

#[test]
fn static_folders_are_served_before_the_aliases_with_ranges_and_validators() {
    let yaml = "\
static:
  - url: /static
    path: www/
aliases:
  - url: /
    path: {hello}
";
    let d = Daemon::start_with(yaml, |root| {
        let www = root.join("www");
        std::fs::create_dir_all(www.join("sub")).unwrap();
        std::fs::write(www.join("app.css"), "body { color: teal; }\n").unwrap();
        std::fs::write(www.join(".secret"), "token").unwrap();
        std::fs::write(root.join("outside.txt"), "not yours").unwrap();
        std::os::unix::fs::symlink(root.join("outside.txt"), www.join("out.txt")).unwrap();
    });
    let css = d.get("/static/app.css");
    css.expect_status(200);
    assert_eq!(css.text(), "body { color: teal; }\n");
    assert!(css.header("content-type").unwrap_or_default().starts_with("text/css"), "{css}");
    let etag = css.header("etag").expect("an ETag").to_owned();
    assert!(css.header("last-modified").is_some(), "{css}");
    // A range, a revalidation, a HEAD.
    let part = d.send("GET", "/static/app.css", &["Range: bytes=0-3"], b"");
    part.expect_status(206);
    assert_eq!(part.text(), "body");
    let same = d.send("GET", "/static/app.css", &[&format!("If-None-Match: {etag}")], b"");
    same.expect_status(304);
    let head = d.send("HEAD", "/static/app.css", &[], b"");
    head.expect_status(200);
    assert!(head.body.is_empty());
    // The path rules of a directory group.
    for (target, status) in [
        ("/static/.secret", 403),
        ("/static/sub", 403),
        ("/static/out.txt", 404),
        ("/static/missing.js", 404),
    ] {
        assert_eq!(d.get(target).status, status, "{target}");
    }
    let post = d.post("/static/app.css", "text/plain", b"x");
    post.expect_status(405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
    // `..` is resolved first, as for any URL: out of /static is out of the folder.
    assert_eq!(d.get("/static/sub/../../hosting.yaml").text(), "Hello World!");
    // Everything else is the aliases'.
    assert_eq!(d.get("/other").text(), "Hello World!");
    assert_eq!(d.get("/staticx").text(), "Hello World!");
}

#[test]
fn url_match_serves_the_file_its_captures_name_as_wsgiscriptaliasmatch() {
    let yaml = "\
aliases:
  - url_match: ^/apps/([^/]+)
    path: plugins/lib$1.so
  - url: /
    path: {hello}
";
    let d = Daemon::start_with(yaml, |root| {
        crate::harness::install(
            &crate::harness::artifacts().environ,
            &root.join("plugins/libenviron.so"),
        );
    });
    let j = d.get("/apps/environ/x/y?q=1").json();
    assert_eq!(j["SCRIPT_NAME"], "/apps/environ", "{j:#}");
    assert_eq!(j["PATH_INFO"], "/x/y", "{j:#}");
    assert_eq!(j["QUERY_STRING"], "q=1", "{j:#}");
    // No such file: 404; no match: the next alias.
    d.get("/apps/nothing/x").expect_status(404);
    assert_eq!(d.get("/appsx").text(), "Hello World!");
    assert_eq!(d.get("/apps").text(), "Hello World!");
    // `routes URL` explains a match.
    let o = std::process::Command::new(&crate::harness::artifacts().gatehouse)
        .args(["routes", "--config"])
        .arg(d.path("hosting.yaml"))
        .arg("/apps/environ/x")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("~^/apps/([^/]+)"), "{text}");
    assert!(text.contains("SCRIPT_NAME:   \"/apps/environ\" (the match)"), "{text}");
    assert!(text.contains("plugins/libenviron.so"), "{text}");
    // What cannot work is a positioned error.
    for (alias, wanted) in [
        ("  - url_match: ^/a/(\n    path: x$1.so\n", "not a valid regular expression"),
        (
            "  - url_match: ^/a/(b)\n    path: x$2.so\n",
            "`path` uses $2, and `url_match` has 1 capture group(s)",
        ),
        ("  - url_match: ^/a/(b)\n    path: x.so\n", "uses no capture"),
        (
            "  - url: /a\n    url_match: ^/a/(b)\n    path: x$1.so\n",
            "`url` or `url_match`, not both",
        ),
    ] {
        std::fs::write(d.path("bad.yaml"), format!("aliases:\n{alias}")).unwrap();
        let (code, err) = crate::harness::check(&d.path("bad.yaml"));
        assert_eq!(code, Some(1), "{alias}: {err}");
        assert!(err.contains(wanted), "{alias}: {err}");
    }
}
