//! The commands besides `serve`: `gatehouse check` (validate, print the route table, errors
//! and warnings as `FILE:LINE:COLUMN: ...`, exit 1 on errors) and `gatehouse routes` (the
//! table, or how one URL is answered) — and that `routes` says what the server does.

use std::path::Path;
use std::process::{Command, Output};

use crate::harness::{Daemon, artifacts, expand, install, output_within};

/// Runs `gatehouse ARGS` in `cwd`; kills it if it still runs after 20 s (a `serve` that
/// should have been refused).
fn gatehouse(cwd: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(&artifacts().gatehouse);
    cmd.args(args).current_dir(cwd).env_remove("RUST_LOG");
    output_within(&mut cmd, std::time::Duration::from_secs(20))
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A temp folder holding `hosting.yaml` (placeholders expanded) and an `apps/` group folder.
fn config(yaml: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    install(&artifacts().hello, &root.join("apps/libhello.so"));
    std::fs::write(root.join("hosting.yaml"), expand(yaml, &root)).unwrap();
    (tmp, root)
}

const GOOD: &str = "\
aliases:
  - url: /sample
    path: {hello}
  - url: /myapp
    path: {products}
    develop_mode: true
    env: {PRODUCTS_DB: var/p.sqlite3}
  - url: /wsgi/
    path: apps/
";

#[test]
fn check_accepts_a_good_config_and_prints_the_route_table() {
    let (_tmp, root) = config(GOOD);
    let o = gatehouse(&root, &["check", "--config", "hosting.yaml"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    assert_eq!(err(&o), "", "a good config printed diagnostics");
    let stdout = out(&o);
    let a = artifacts();
    let line = |url: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(url))
            .unwrap_or_else(|| panic!("no route line for {url}:\n{stdout}"))
    };
    let sample = line("/sample");
    assert!(
        sample.contains(" app ") && sample.contains(&a.hello.display().to_string()),
        "{sample}"
    );
    assert!(sample.starts_with('1') && sample.contains("hosting.yaml:2:5)"), "{sample}");
    let myapp = line("/myapp");
    assert!(myapp.starts_with('2') && myapp.contains("hosting.yaml:4:5)"), "{myapp}");
    assert!(myapp.contains("develop_mode") && myapp.contains("PRODUCTS_DB"), "{myapp}");
    let wsgi = line("/wsgi/NAME");
    assert!(wsgi.starts_with('3') && wsgi.contains(" group "), "{wsgi}");
    assert!(
        wsgi.contains(&root.join("apps").display().to_string())
            && wsgi.contains("hosting.yaml:8:5)"),
        "{wsgi}"
    );
    assert!(stdout.trim_end().ends_with("syntax OK"), "{stdout}");

    // `routes` without a URL prints the same table.
    let o = gatehouse(&root, &["routes", "--config", "hosting.yaml"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(out(&o).contains(sample) && out(&o).contains(wsgi), "{}", out(&o));
}

#[test]
fn check_reports_errors_at_their_line_and_column_and_exits_1() {
    let cases: [(&str, &str); 7] = [
        (
            "aliases:\n  - url: /sample\n    path: {hello}\n    colour: blue\n",
            "hosting.yaml:4:5: error: unknown key `colour`",
        ),
        (
            "aliases:\n  - url: sample\n    path: {hello}\n",
            "hosting.yaml:2:10: error: url `sample` must start with `/`",
        ),
        (
            "aliases:\n  - url: /a%20b\n    path: {hello}\n",
            "hosting.yaml:2:10: error: url `/a%20b`",
        ),
        ("max-body: 1MiB\naliases: []\n", "hosting.yaml:1:1: error: unknown key `max-body`"),
        ("aliases:\n  - url: [\n", "hosting.yaml:2:"),
        // Worker users and groups are looked up when the file is read, not when workers start.
        (
            "aliases:\n  - url: /a\n    path: {hello}\n    isolation: process\n    user: gatehouse-no-such-user\n",
            "hosting.yaml:5:11: error: user `gatehouse-no-such-user` does not exist",
        ),
        (
            "aliases:\n  - url: /a\n    path: {hello}\n    isolation: process\n    group: gatehouse-no-such-group\n",
            "hosting.yaml:5:12: error: group `gatehouse-no-such-group` does not exist",
        ),
    ];
    for (yaml, expected) in cases {
        let (_tmp, root) = config(yaml);
        let o = gatehouse(&root, &["check", "--config", "hosting.yaml"]);
        assert_eq!(o.status.code(), Some(1), "{yaml}\n{}{}", out(&o), err(&o));
        assert!(
            err(&o).lines().any(|l| l.starts_with(expected)),
            "expected {expected:?} for\n{yaml}got:\n{}",
            err(&o)
        );
        assert!(!out(&o).contains("syntax OK"), "{}", out(&o));
        // `serve` refuses the same file without listening.
        let o = gatehouse(&root, &["serve", "--config", "hosting.yaml", "--listen", "127.0.0.1:0"]);
        assert_eq!(o.status.code(), Some(1), "serve on a bad config: {}{}", out(&o), err(&o));
        assert!(!out(&o).contains("listening"), "{}", out(&o));
        assert!(err(&o).contains(expected), "serve does not say why: {}", err(&o));
    }
    // Every error is reported, not only the first; an absolute path names the file as given.
    let (_tmp, root) = config(
        "aliases:\n  - url: /a\n    path: {hello}\n    colour: blue\n  - url: b\n    path: {hello}\n",
    );
    let file = root.join("hosting.yaml").display().to_string();
    let o = gatehouse(Path::new("/"), &["check", "--config", &file]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains(&format!("{file}:4:5: error: unknown key")), "{}", err(&o));
    assert!(err(&o).contains(&format!("{file}:5:10: error: url `b`")), "{}", err(&o));
}

#[test]
fn check_warns_but_accepts_a_missing_app_file_and_a_shadowed_alias() {
    let yaml = "\
aliases:
  - url: /sample
    path: {hello}
  - url: /later
    path: build/liblater.so
  - url: /sample/inner
    path: {hello}
";
    let (_tmp, root) = config(yaml);
    let o = gatehouse(&root, &["check", "--config", "hosting.yaml"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", out(&o), err(&o));
    let stderr = err(&o);
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("hosting.yaml:5:11: warning:") && l.contains("does not exist")),
        "no warning for the missing file:\n{stderr}"
    );
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("hosting.yaml:6:10: warning:") && l.contains("never reached")),
        "no warning for the shadowed alias:\n{stderr}"
    );
    assert!(!stderr.contains("error"), "{stderr}");
    assert!(out(&o).contains("syntax OK"), "{}", out(&o));
}

#[test]
fn check_looks_at_each_plugin_file_as_loading_would_without_running_it() {
    let (_tmp, root) = config(GOOD);
    let bad = root.join("bad");
    std::fs::create_dir(&bad).unwrap();
    let sdk = root.join("bad/sdk.so");
    install(&artifacts().hello, &sdk);
    // A copy (install links), so that the build's own file keeps its mode.
    let writable = root.join("bad/writable.so");
    std::fs::copy(&artifacts().hello, &writable).unwrap();
    std::fs::set_permissions(&writable, std::os::unix::fs::PermissionsExt::from_mode(0o666))
        .unwrap();
    std::fs::write(root.join("bad/text.so"), "#!/bin/sh\necho not a library\n").unwrap();
    // Its code would write a file if it ever ran: check must not run it.
    let ran = root.join("ran");
    crate::plugins::cc_shared(
        &format!(
            "#include <stdint.h>\n#include <stdio.h>\n\
             const uint32_t gatehouse_abi_version = 2;\n\
             __attribute__((constructor)) static void ran(void) {{ fclose(fopen(\"{}\", \"w\")); }}\n\
             const void *gatehouse_app(void) {{ return 0; }}\n",
            ran.display()
        ),
        &root.join("bad/abi2.so"),
    );
    crate::plugins::cc_shared("int not_an_app(void) { return 1; }\n", &root.join("bad/none.so"));
    // A group folder holding a broken plugin beside a good one.
    std::fs::write(root.join("apps/libbroken.so"), "not ELF").unwrap();
    let yaml = format!(
        "{GOOD}  - url: /sdk\n    path: bad/sdk.so\n  - url: /writable\n    path: bad/writable.so\n  \
         - url: /text\n    path: bad/text.so\n  - url: /abi2\n    path: bad/abi2.so\n  \
         - url: /none\n    path: bad/none.so\n"
    );
    std::fs::write(root.join("hosting.yaml"), expand(&yaml, &root)).unwrap();
    let o = gatehouse(&root, &["check", "--config", "hosting.yaml"]);
    let e = err(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    for (line, wanted) in [
        (12, "error: /writable: "),
        (14, "error: /text: "),
        (16, "error: /abi2: "),
        (18, "error: /none: "),
    ] {
        assert!(
            e.contains(&format!("hosting.yaml:{line}:5: {wanted}")),
            "{wanted} at line {line}:\n{e}"
        );
    }
    for wanted in [
        "writable by its group and everyone (mode 0666)",
        "text.so: cannot load as a shared library: invalid ELF header",
        "abi2.so: built for environ ABI version 2, this daemon speaks version 1",
        "none.so: no `gatehouse_app` symbol",
        "hosting.yaml:8:5: warning: /wsgi: ",
        "libbroken.so: cannot load as a shared library",
        "syntax OK, but a plugin would not load",
    ] {
        assert!(e.contains(wanted), "{wanted}:\n{e}");
    }
    // The plugins built with the SDK (and the demo ones) pass; nothing ran.
    for fine in ["/sdk:", "/sample:", "/myapp:", "libhello.so"] {
        assert!(!e.contains(fine), "{fine}:\n{e}");
    }
    assert!(!ran.exists(), "check ran the plugin's code");
    // A log folder where nothing can be created fails check as it fails serve.
    std::fs::write(
        root.join("hosting.yaml"),
        expand(&format!("logs:\n  dir: /proc/gatehouse-logs\n{GOOD}"), &root),
    )
    .unwrap();
    let o = gatehouse(&root, &["check", "--config", "hosting.yaml"]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert!(err(&o).contains("/proc is on the kernel's proc filesystem"), "{}", err(&o));
}

#[test]
fn routes_explains_one_url() {
    let yaml = "\
aliases:
  - url: /sample
    path: {hello}
  - url: /myapp
    path: {products}
  - url: /later
    path: build/liblater.so
  - url: /wsgi/
    path: apps/
";
    let (_tmp, root) = config(yaml);
    let a = artifacts();
    let routes = |url: &str| {
        let o = gatehouse(&root, &["routes", "--config", "hosting.yaml", url]);
        assert_eq!(o.status.code(), Some(0), "routes {url}: {}{}", out(&o), err(&o));
        out(&o)
    };
    let field = |text: &str, name: &str| -> String {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}:")))
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
            .trim()
            .to_owned()
    };

    let t = routes("/myapp/a/b");
    assert_eq!(field(&t, "SCRIPT_NAME"), "\"/myapp\"", "{t}");
    assert_eq!(field(&t, "PATH_INFO"), "\"/a/b\"", "{t}");
    assert_eq!(field(&t, "plugin"), a.products.display().to_string(), "{t}");
    assert!(field(&t, "alias").starts_with("#2 /myapp (hosting.yaml:4:5)"), "{t}");
    assert!(field(&t, "why").contains("order declared"), "{t}");

    let t = routes("http://127.0.0.1:8080/myapp?id=A001");
    assert_eq!(
        (field(&t, "SCRIPT_NAME"), field(&t, "PATH_INFO")),
        ("\"/myapp\"".to_owned(), "\"\"".to_owned()),
        "{t}"
    );

    let t = routes("/wsgi/hello/x");
    assert_eq!(field(&t, "SCRIPT_NAME"), "\"/wsgi/hello\"", "{t}");
    assert_eq!(field(&t, "PATH_INFO"), "\"/x\"", "{t}");
    assert_eq!(field(&t, "plugin"), root.join("apps/libhello.so").display().to_string(), "{t}");

    for (url, answer) in [
        ("/wsgi/", "403"),
        ("/wsgi/.x", "403"),
        ("/wsgi", "404"),
        ("/wsgi/missing", "404"),
        ("/nothing", "404"),
        ("/myappx", "404"),
        ("/later/x", "404"),
        ("/..", "400"),
        ("/a/%zz", "400"),
        ("/a%2Fb", "404"),
    ] {
        let t = routes(url);
        assert!(field(&t, "answer").starts_with(answer), "routes {url}: expected {answer}:\n{t}");
    }
    let t = routes("/a/../myapp");
    assert_eq!(field(&t, "normalised"), "/myapp", "{t}");
}

/// The status `routes` predicts for `url`.
fn predicted_status(root: &Path, url: &str) -> u16 {
    let o = gatehouse(root, &["routes", "--config", "hosting.yaml", url]);
    let text = out(&o);
    let answer = text
        .lines()
        .find_map(|l| l.strip_prefix("answer:"))
        .unwrap_or_else(|| panic!("no answer for {url}:\n{text}"))
        .trim();
    if answer.starts_with("served by the app") {
        200
    } else {
        answer
            .get(..3)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("odd answer for {url}: {answer}"))
    }
}

#[test]
fn routes_says_what_the_server_does() {
    let yaml = "\
aliases:
  - url: /sample
    path: {hello}
  - url: /later
    path: build/liblater.so
  - url: /wsgi/
    path: apps/
  - url: /sample/inner
    path: {environ}
";
    let d = Daemon::start_with(yaml, |root| {
        std::fs::create_dir(root.join("apps/sub")).unwrap();
        std::os::unix::fs::symlink(artifacts().hello.as_path(), root.join("apps/libout.so"))
            .unwrap();
    });
    let root = d.path("");
    for url in [
        "/sample",
        "/sample/inner",
        "//sample/x",
        "/a/../sample",
        "/sample/../..",
        "/SAMPLE",
        "/samplex",
        "/later",
        "/wsgi",
        "/wsgi/",
        "/wsgi/hello",
        "/wsgi/environ/x",
        "/wsgi/.hidden",
        "/wsgi/sub",
        "/wsgi/missing",
        "/wsgi/out",
        "/wsgi/a%2Fb",
        "/wsgi/a%00",
        "/wsgi/%zz",
        "/",
    ] {
        let predicted = predicted_status(&root, url);
        let r = d.get(url);
        assert_eq!(
            r.status, predicted,
            "`gatehouse routes {url}` predicts {predicted}, the server says: {r}"
        );
    }
}

#[test]
fn a_second_serve_of_a_running_configuration_is_refused_before_any_init() {
    let yaml =
        "aliases:\n  - url: /p\n    path: {panicky}\n    env: {PANICKY_MARKS: var/marks.txt}\n";
    let d = Daemon::start_with(yaml, |root| std::fs::create_dir_all(root.join("var")).unwrap());
    let root = d.path("");
    let pid_file = root.join("var/run/gatehouse.pid");
    crate::harness::wait_until("the pid file", || pid_file.exists());
    let pid = d.pid().to_string();
    // The same configuration again: refused, and the first daemon keeps its pid file.
    let o = gatehouse(
        &root.join("cwd"),
        &["serve", "--config", "../hosting.yaml", "--listen", "127.0.0.1:0"],
    );
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    assert!(
        err(&o).contains(&format!("a gatehouse daemon (pid {pid}) already serves")),
        "{}",
        err(&o)
    );
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap().trim(), pid);
    // Another pid file, the first daemon's address: refused, naming the holder.
    std::fs::write(
        root.join("second.yaml"),
        expand(&format!("pid_file: var/run/second.pid\n{yaml}"), &root),
    )
    .unwrap();
    let addr = d.addr.to_string();
    let o = gatehouse(&root, &["serve", "--config", "second.yaml", "--listen", &addr]);
    assert_eq!(o.status.code(), Some(1), "{}{}", out(&o), err(&o));
    let held =
        format!("cannot listen on {addr}: the address is in use by process {pid} (gatehouse)");
    assert!(err(&o).contains(&held), "{}", err(&o));
    // Neither refused start ran an app's `init`.
    let marks = crate::harness::read_lossy(&root.join("var/marks.txt"));
    assert_eq!(marks.matches("init").count(), 1, "{marks}");
    d.get("/p/ok").expect_status(200);
}

/// Runs cargo (the one running this test) in `dir`, offline, building into `dir/target`.
fn cargo_build(dir: &Path) -> Output {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--offline", "--quiet"])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", dir.join("target"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET");
    output_within(&mut cmd, std::time::Duration::from_secs(600))
}

#[test]
fn gatehouse_new_writes_a_plugin_that_builds_offline_and_is_served_and_swapped() {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let dir = root.join("greeter");
    let o = gatehouse(&root, &["new", "greeter"]);
    assert!(o.status.success(), "{}{}", out(&o), err(&o));
    assert!(out(&o).contains("wrote greeter/src/lib.rs"), "{}", out(&o));
    // Not over what is there, and not under a name that is no crate name.
    let again = gatehouse(&root, &["new", "greeter"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(err(&again).contains("greeter already exists and is not empty"), "{}", err(&again));
    let bad = gatehouse(&root, &["new", "Bad Name", "elsewhere"]);
    assert_eq!(bad.status.code(), Some(1));
    assert!(err(&bad).contains("`Bad Name` cannot be a plugin name"), "{}", err(&bad));
    assert!(!root.join("elsewhere").exists());
    let built = cargo_build(&dir);
    assert!(built.status.success(), "cargo build:\n{}", err(&built));
    let so = dir.join("target/debug/libgreeter.so");
    let yaml = format!(
        "aliases:\n  - url: /greeter\n    path: {}\n    env: {{GREETING: Howdy}}\n",
        so.display()
    );
    std::fs::write(root.join("hosting.yaml"), &yaml).unwrap();
    let o = gatehouse(&root, &["check", "--config", "hosting.yaml"]);
    assert!(o.status.success(), "{}", err(&o));
    let d = Daemon::start(&yaml);
    assert_eq!(d.get("/greeter/?name=Ada").text(), "Howdy, Ada!\n");
    let json = d.get("/greeter/json");
    assert_eq!(json.header("content-type"), Some("application/json"));
    assert_eq!(json.text(), r#"{"app":"greeter","greeting":"Howdy"}"#);
    let posted = d.post("/greeter/", "application/x-www-form-urlencoded", b"name=Bo");
    assert_eq!(posted.text(), "Howdy, Bo! (posted)\n");
    // The SDK's `Request::log_info`: an INFO line in the error log, tagged with the request.
    crate::harness::wait_until("the app's INFO line", || {
        d.log()
            .lines()
            .any(|l| l.contains(" INFO  app greeter (request ") && l.ends_with("): greeted Bo"))
    });
    let put = d.send("PUT", "/greeter/", &[], b"");
    put.expect_status(405);
    assert_eq!(put.header("allow"), Some("GET, HEAD, POST"));
    d.get("/greeter/missing").expect_status(404);
    // The development loop: an edit, a build, and the daemon serves the new build.
    let lib = dir.join("src/lib.rs");
    let source = std::fs::read_to_string(&lib).unwrap().replace("(posted)", "(received)");
    std::fs::write(&lib, source).unwrap();
    let built = cargo_build(&dir);
    assert!(built.status.success(), "cargo build:\n{}", err(&built));
    crate::harness::wait_for("the rebuilt plugin", std::time::Duration::from_secs(20), || {
        let r = d.post("/greeter/", "application/x-www-form-urlencoded", b"name=Bo");
        if r.text() == "Howdy, Bo! (received)\n" { Ok(()) } else { Err(r.text()) }
    });
    assert!(d.log().contains("now app greeter 0.1.0 (sha256 "), "{}", d.log());
}

#[test]
fn the_sdk_as_the_package_installs_it_builds_a_new_plugin_with_no_registry() {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let sdk = root.join("sdk");
    let made = output_within(
        Command::new(repo.join("packaging/sdk-sources")).arg(&sdk),
        std::time::Duration::from_secs(120),
    );
    assert!(made.status.success(), "sdk-sources:\n{}", err(&made));
    for file in ["gatehouse-app/Cargo.toml", "gatehouse-abi/include/gatehouse.h", "vendor"] {
        assert!(sdk.join(file).exists(), "{file} is not in the SDK");
    }
    let sdk_arg = sdk.to_str().unwrap();
    let o = gatehouse(&root, &["new", "standalone", "app", "--sdk", sdk_arg]);
    assert!(o.status.success(), "{}", err(&o));
    let config = std::fs::read_to_string(root.join("app/.cargo/config.toml")).unwrap();
    assert!(config.contains(&format!("directory = \"{sdk_arg}/vendor\"")), "{config}");
    // A cargo home with no registry in it: every crate comes from the SDK.
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--offline", "--quiet"])
        .current_dir(root.join("app"))
        .env("CARGO_HOME", root.join("empty-cargo-home"))
        .env("CARGO_TARGET_DIR", root.join("app/target"))
        .env_remove("RUSTFLAGS");
    let built = output_within(&mut cmd, std::time::Duration::from_secs(600));
    assert!(built.status.success(), "cargo build:\n{}", err(&built));
    let so = root.join("app/target/debug/libstandalone.so");
    let d = Daemon::start(&format!("aliases:\n  - url: /s\n    path: {}\n", so.display()));
    assert_eq!(d.get("/s/?name=Ada").text(), "Hello, Ada!\n");
}

#[test]
fn serve_app_serves_one_script_or_plugin_with_no_configuration() {
    use std::io::BufRead as _;
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    let script = root.join("hello.py");
    let app = "def application(environ, start_response):\n    start_response('200 OK', [('Content-Type', 'text/plain')])\n    return [b'one']\n";
    std::fs::write(&script, app).unwrap();
    for (file, first, edit) in [
        (script.clone(), "one", Some(app.replace("b'one'", "b'two'"))),
        (artifacts().hello.clone(), "Hello World!", None),
    ] {
        let mut child = Command::new(&artifacts().gatehouse)
            .args(["serve-app", "--port", "0"])
            .arg(&file)
            .current_dir(&root)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let line = lines.next().expect("a listening line").unwrap();
        let addr: std::net::SocketAddr = line
            .strip_prefix("gatehouse listening on http://")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{line:?}"));
        assert_eq!(crate::harness::get_from(addr, "/"), (200, first.to_owned()));
        // The access log is on stdout.
        let access = lines.next().expect("an access line").unwrap();
        assert!(access.contains("\"GET / HTTP/1.1\" 200 "), "{access}");
        if let Some(edited) = edit {
            // An edited script is served at once (re-imported on its next request).
            std::fs::write(&file, edited).unwrap();
            crate::harness::wait_for(
                "the edited script",
                std::time::Duration::from_secs(10),
                || match crate::harness::get_from(addr, "/") {
                    (200, t) if t == "two" => Ok(()),
                    other => Err(format!("{other:?}")),
                },
            );
        }
        let state = format!("/gatehouse-serve-app-{}", child.id());
        let state = std::env::temp_dir().join(state.trim_start_matches('/'));
        assert!(state.join("hosting.yaml").is_file());
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        let status = child.wait().unwrap();
        assert!(status.success(), "{status}");
        assert!(!state.exists(), "{} was left behind", state.display());
    }
    // A file that is not there says so.
    let o = gatehouse(&root, &["serve-app", "missing.py"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("missing.py is not a file"), "{}", err(&o));
}

#[test]
fn the_manual_page_documents_every_command_and_option() {
    let man = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../packaging/gatehouse.1"),
    )
    .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // The commands `gatehouse --help` lists (not `help` itself, nor the hidden `worker`).
    let help = out(&gatehouse(tmp.path(), &["--help"]));
    let commands: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() >= 5, "{help}");
    for command in commands {
        let roff = command.replace('-', "\\-");
        assert!(
            man.contains(&format!(".B gatehouse {roff}\n"))
                && man.contains(&format!(".TP\n.B {roff}\n")),
            "gatehouse(1) has no synopsis or COMMANDS entry for `{command}`"
        );
        // Every long option of the command.
        let help = out(&gatehouse(tmp.path(), &[command, "--help"]));
        for option in help
            .lines()
            .filter_map(|l| l.trim_start().split("--").nth(1))
            .filter_map(|rest| rest.split([' ', ',', '<', '=']).next())
            .filter(|o| !o.is_empty() && *o != "help")
        {
            assert!(
                man.contains(&format!("\\-\\-{}", option.replace('-', "\\-"))),
                "gatehouse(1) does not document `{command} --{option}`"
            );
        }
    }
}
