//! Plugin loading and failure: a single app whose file appears after the daemon started, a
//! panicking app, and plugins that cannot serve (not a shared library, no `gatehouse_app`
//! symbol, another ABI version, a short descriptor, an `init` that fails) — each refused
//! with a clear log line while every other alias keeps serving.
//!
//! The broken shared libraries are built here from a few lines of C with the system's C
//! compiler (`$CC`, else `cc`: the linker Rust itself uses, so it is always present).

use std::path::Path;
use std::process::Command;

use crate::harness::{Daemon, Response, artifacts, install};

#[track_caller]
fn assert_hello(r: &Response, what: &str) {
    assert_eq!((r.status, r.text().as_str()), (200, "Hello World!"), "{what}: {r}");
}

/// Compiles C `source` into the shared library `out`.
pub(crate) fn cc_shared(source: &str, out: &Path) {
    let src = out.with_extension("c");
    std::fs::write(&src, source).unwrap();
    let cc = std::env::var_os("CC").unwrap_or_else(|| "cc".into());
    let output = Command::new(&cc)
        .args(["-shared", "-fPIC", "-o"])
        .arg(out)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler {cc:?}: {e}"));
    assert!(
        output.status.success(),
        "{cc:?} failed on {}:\n{}",
        src.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A plugin whose descriptor starts with `abi_version`, `struct_size`.
fn descriptor_plugin(abi_version: u32, struct_size: &str, out: &Path) {
    cc_shared(
        &format!(
            "#include <stdint.h>\n\
             struct descriptor {{ uint32_t abi_version; uint32_t struct_size; }};\n\
             static const struct descriptor D = {{ {abi_version}, {struct_size} }};\n\
             const struct descriptor *gatehouse_app(void) {{ return &D; }}\n"
        ),
        out,
    );
}

#[test]
fn a_single_app_whose_file_appears_later_is_served_from_then_on() {
    let yaml = "\
aliases:
  - url: /late
    path: late/libhello.so
  - url: /sample
    path: {hello}
";
    let d = Daemon::start(yaml);
    let file = d.path("late/libhello.so");
    let log = d.log();
    assert!(
        log.contains(&file.display().to_string()) && log.contains("does not exist"),
        "the daemon does not say which file is missing:\n{log}"
    );
    for target in ["/late", "/late/x", "/late"] {
        let r = d.get(target);
        assert_eq!(r.status, 404, "{target} before the file exists: {r}");
    }
    assert_hello(&d.get("/sample"), "/sample while /late is missing");

    install(&artifacts().hello, &file);
    assert_hello(&d.get("/late"), "/late once the file exists");
    assert_hello(&d.get("/late/x"), "/late/x once the file exists");
}

#[test]
fn a_panicking_app_answers_500_and_the_daemon_keeps_serving() {
    let yaml = "\
aliases:
  - url: /panicky
    path: {panicky}
    threads: 1
  - url: /sample
    path: {hello}
  - url: /wsgi/
    path: apps/
";
    let d = Daemon::start(yaml);
    let ok = d.get("/panicky/fine");
    assert_eq!((ok.status, ok.text().as_str()), (200, "ok"), "{ok}");
    for i in 0..3 {
        let r = d.get("/panicky/panic");
        assert_eq!(r.status, 500, "panic #{i}: {r}");
        assert!(
            !r.text().contains("asked to panic"),
            "the panic message leaked to the client: {r}"
        );
        // The one app thread survived the panic.
        let ok = d.get("/panicky");
        assert_eq!((ok.status, ok.text().as_str()), (200, "ok"), "after panic #{i}: {ok}");
    }
    // Panics on several connections at once.
    let handles: Vec<_> = (0..4)
        .map(|_| {
            let addr = d.addr;
            std::thread::spawn(move || {
                let raw = format!(
                    "GET /panicky/panic HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
                );
                let mut s = std::net::TcpStream::connect(addr).unwrap();
                std::io::Write::write_all(&mut s, raw.as_bytes()).unwrap();
                let mut reply = String::new();
                std::io::Read::read_to_string(&mut s, &mut reply).unwrap();
                reply
            })
        })
        .collect();
    for h in handles {
        let reply = h.join().unwrap();
        assert!(reply.starts_with("HTTP/1.1 500"), "{reply}");
    }
    let r = d.get("/wsgi/panicky/panic");
    assert_eq!(r.status, 500, "{r}");
    let ok = d.get("/wsgi/panicky/x");
    assert_eq!((ok.status, ok.text().as_str()), (200, "ok"), "{ok}");
    assert_hello(&d.get("/sample"), "/sample after the panics");
    assert!(
        d.log().contains("panicky: asked to panic by /panicky/panic"),
        "the error log does not carry the panic message:\n{}",
        d.log()
    );
}

#[test]
fn broken_plugins_are_refused_and_the_rest_keeps_serving() {
    let yaml = "\
aliases:
  - url: /text
    path: broken/libtext.so
  - url: /nosym
    path: broken/libnosym.so
  - url: /abi
    path: broken/libabi99.so
  - url: /short
    path: broken/libshort.so
  - url: /badstore
    path: {products}
    env: {PRODUCTS_DB: var/garbage.sqlite3}
  - url: /sample
    path: {hello}
  - url: /group/
    path: broken/
";
    let d = Daemon::start_with(yaml, |root| {
        let broken = root.join("broken");
        std::fs::create_dir_all(&broken).unwrap();
        std::fs::write(broken.join("libtext.so"), "#!/bin/sh\necho not a plugin\n").unwrap();
        cc_shared("int not_a_gatehouse_app(void) { return 42; }\n", &broken.join("libnosym.so"));
        descriptor_plugin(99, "sizeof(struct descriptor)", &broken.join("libabi99.so"));
        descriptor_plugin(1, "sizeof(struct descriptor)", &broken.join("libshort.so"));
        std::fs::create_dir_all(root.join("var")).unwrap();
        std::fs::write(root.join("var/garbage.sqlite3"), [b'x'; 4096]).unwrap();
    });
    for (target, logged) in [
        ("/text", "cannot load as a shared library"),
        ("/nosym", "no `gatehouse_app` symbol"),
        ("/abi", "built for environ ABI version 99"),
        ("/short", "struct_size is 8"),
        ("/badstore", "garbage.sqlite3"),
    ] {
        for attempt in 0..2 {
            let r = d.get(target);
            assert_eq!(r.status, 500, "{target} (attempt {attempt}): {r}");
        }
        let log = d.log();
        assert!(log.contains(logged), "the log does not say {logged:?} for {target}:\n{log}");
        assert_hello(&d.get("/sample"), &format!("/sample after {target}"));
    }
    assert!(d.log().contains("init failed"), "{}", d.log());
    // In a directory group, a file that is not a loadable plugin is 404.
    for target in ["/group/text", "/group/nosym", "/group/abi99", "/group/short"] {
        let r = d.get(target);
        assert_eq!(r.status, 404, "{target}: {r}");
    }
    // A broken file replaced by a good one is tried again.
    install(&artifacts().hello, &d.path("broken/libtext.so"));
    assert_hello(&d.get("/text"), "/text after its file was replaced");
    assert_hello(&d.get("/group/text"), "/group/text after its file was replaced");
    install(&artifacts().hello, &d.path("broken/libgood.so"));
    assert_hello(&d.get("/group/good"), "/group/good");
}

#[test]
fn init_and_shutdown_run_once_each_with_the_alias_env() {
    let yaml = "\
aliases:
  - url: /p
    path: {panicky}
    env: {PANICKY_MARKS: var/marks.txt}
  - url: /wsgi/
    path: apps/
    env: {PANICKY_MARKS: var/marks.txt}
";
    let mut d = Daemon::start_with(yaml, |root| std::fs::create_dir(root.join("var")).unwrap());
    let marks = d.path("var/marks.txt");
    let read = || crate::harness::read_lossy(&marks);
    // A single app is loaded and initialised at start, a group's plugin on first use.
    assert_eq!(read(), "init /p\n");
    for _ in 0..3 {
        assert_eq!(d.get("/p/x").text(), "ok");
        assert_eq!(d.get("/wsgi/panicky/x").text(), "ok");
    }
    d.get("/p/panic").expect_status(500);
    assert_eq!(read(), "init /p\ninit /wsgi/panicky\n", "init ran more than once per alias");
    let status = d.terminate();
    assert!(status.success(), "the daemon stopped with {status}:\n{}", d.log());
    let mut lines: Vec<String> = read().lines().map(str::to_owned).collect();
    lines.sort();
    assert_eq!(lines, ["init /p", "init /wsgi/panicky", "shutdown /p", "shutdown /wsgi/panicky"]);
}

#[test]
fn a_slow_app_stalls_nobody_else_and_its_pool_is_bounded() {
    use std::time::{Duration, Instant};
    let yaml = "\
aliases:
  - url: /slow
    path: {panicky}
    threads: 8
  - url: /single
    path: {panicky}
    threads: 1
  - url: /sample
    path: {hello}
";
    let d = Daemon::start(yaml);
    let get = |target: &'static str| {
        let addr = d.addr;
        std::thread::spawn(move || {
            let started = Instant::now();
            let raw = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
            let mut s = std::net::TcpStream::connect(addr).unwrap();
            std::io::Write::write_all(&mut s, raw.as_bytes()).unwrap();
            let mut reply = String::new();
            std::io::Read::read_to_string(&mut s, &mut reply).unwrap();
            (reply, started.elapsed())
        })
    };
    // More slow requests than the daemon has HTTP workers (one per core).
    let slow: Vec<_> = (0..6).map(|_| get("/slow/sleep/2000")).collect();
    let single: Vec<_> = (0..2).map(|_| get("/single/sleep/800")).collect();
    std::thread::sleep(Duration::from_millis(300));
    let started = Instant::now();
    assert_hello(&d.get("/sample"), "/sample while slow apps run");
    let sample_took = started.elapsed();
    assert!(
        sample_took < Duration::from_millis(1000),
        "/sample took {sample_took:?} while another alias was slow"
    );
    // /single/x waits for its alias's one thread, busy with the sleeps (at least the first
    // one's remaining 500 ms, however late the second was queued).
    let started = Instant::now();
    assert_eq!(d.get("/single/x").text(), "ok");
    let single_took = started.elapsed();
    assert!(
        single_took >= Duration::from_millis(400),
        "/single/x did not wait for its one thread: {single_took:?}"
    );
    for h in slow {
        let (reply, took) = h.join().unwrap();
        assert!(reply.starts_with("HTTP/1.1 200") && reply.ends_with("slept"), "{reply}");
        assert!(took >= Duration::from_millis(2000), "a 2 s sleep answered in {took:?}");
    }
    let mut took: Vec<Duration> = single
        .into_iter()
        .map(|h| {
            let (reply, took) = h.join().unwrap();
            assert!(reply.ends_with("slept"), "{reply}");
            took
        })
        .collect();
    took.sort();
    // `threads: 1`: the second sleep starts when the first ends.
    assert!(took[1] >= Duration::from_millis(1600), "two 800 ms sleeps on one thread: {took:?}");
}

#[test]
fn requests_answered_504_while_queued_are_not_run_later() {
    // One thread, each call 800 ms, a 1 s timeout: of five requests sent at once, the ones
    // still queued at their timeout get 504 and must not take the thread afterwards (the
    // requests behind them would wait for answers nobody reads).
    let yaml = "\
aliases:
  - url: /one
    path: {panicky}
    threads: 1
    timeout: 1s
    env: {PANICKY_MARKS: var/marks.txt}
";
    let d = Daemon::start_with(yaml, |root| std::fs::create_dir(root.join("var")).unwrap());
    let addr = d.addr;
    let clients: Vec<_> = (0..5)
        .map(|_| std::thread::spawn(move || crate::harness::get_from(addr, "/one/sleep/800").0))
        .collect();
    let statuses: Vec<u16> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    assert!(statuses.contains(&504), "{statuses:?}");
    // Every call that could still run has ended by now (each takes 800 ms).
    std::thread::sleep(std::time::Duration::from_millis(1000));
    let ran = crate::harness::read_lossy(&d.path("var/marks.txt")).matches("sleep /one").count();
    let skipped = d.log_count("waited for a thread");
    assert!(skipped >= 1, "{statuses:?}, {ran} ran:\n{}", d.log());
    assert_eq!(ran + skipped, 5, "{statuses:?}:\n{}", d.log());
    assert_eq!(d.get("/one/x").text(), "ok");
}
