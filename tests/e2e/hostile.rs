//! Hostile input and untrusted files: plugin trust checks with real files and
//! modes, digest pins, and the limits on every request (header count, slow headers, slow
//! bodies, app timeouts, the queue), each answered with a clear status while the daemon
//! keeps serving. `scripts/hostile-client` sends many more cases against a running daemon.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::{Daemon, artifacts, read_lossy, wait_for, wait_until};

/// A private copy of a plugin (never `install`'s hard link: these tests change modes and
/// owners, which a hard link would change on the build's own file).
fn copy_plugin(from: &Path, to: &Path, mode: u32) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to).unwrap();
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

#[test]
fn untrusted_plugin_files_are_refused_with_the_fixing_command() {
    let yaml = "\
aliases:
  - url: /ww
    path: single/libww.so
  - url: /relaxed
    path: single/librelaxed.so
    check_plugins: false
  - url: /wsgi/
    path: group/
  - url: /open/
    path: open/
";
    let d = Daemon::start_with(yaml, |root| {
        copy_plugin(&artifacts().hello, &root.join("single/libww.so"), 0o666);
        copy_plugin(&artifacts().hello, &root.join("single/librelaxed.so"), 0o666);
        copy_plugin(&artifacts().hello, &root.join("group/libgood.so"), 0o644);
        copy_plugin(&artifacts().hello, &root.join("group/libgw.so"), 0o664);
        copy_plugin(&artifacts().hello, &root.join("open/libhello.so"), 0o644);
        chmod(&root.join("open"), 0o777);
    });
    // A world-writable single app: 500, and the log names the file, the rule and the fix.
    d.get("/ww").expect_status(500);
    let file = d.path("single/libww.so");
    let log = d.log();
    assert!(
        log.contains(&format!(
            "{} is writable by its group and everyone (mode 0666)",
            file.display()
        )),
        "{log}"
    );
    assert!(log.contains(&format!("chmod go-w {}", file.display())), "{log}");
    // The same file with `check_plugins: false`: served, with a warning.
    assert_eq!(d.get("/relaxed").text(), "Hello World!");
    assert!(d.log().contains("loading it anyway, `check_plugins` is off"), "{}", d.log());
    // In a group: a group-writable file is a 404 like any unloadable name; the others serve.
    d.get("/wsgi/gw").expect_status(404);
    assert_eq!(d.get("/wsgi/good").text(), "Hello World!");
    assert!(d.log().contains("libgw.so is writable by its group (mode 0664)"), "{}", d.log());
    // A world-writable folder: anyone could rename a file over the plugin.
    d.get("/open/hello").expect_status(404);
    assert!(
        d.log().contains("(the plugin's folder) is writable by its group and everyone"),
        "{}",
        d.log()
    );
    // Repeated requests do not repeat the error (a trust failure is retried every time).
    for _ in 0..5 {
        d.get("/ww").expect_status(500);
    }
    assert_eq!(d.log_count("single/libww.so is writable"), 1, "{}", d.log());
    // Fixed with the command the log gave: served on the next request, no restart.
    chmod(&file, 0o644);
    chmod(&d.path("open"), 0o755);
    assert_eq!(d.get("/ww").text(), "Hello World!");
    assert_eq!(d.get("/open/hello").text(), "Hello World!");
}

#[test]
fn a_plugin_owned_by_another_user_is_refused() {
    if !is_root() {
        eprintln!("skipped: only root can give a file to another user here");
        return;
    }
    let d =
        Daemon::start_with("aliases:\n  - url: /other\n    path: single/libother.so\n", |root| {
            let file = root.join("single/libother.so");
            copy_plugin(&artifacts().hello, &file, 0o644);
            std::os::unix::fs::chown(&file, Some(65534), Some(65534)).unwrap();
        });
    d.get("/other").expect_status(500);
    let log = d.log();
    assert!(
        log.contains("is owned by uid 65534, not by root or the daemon's user (uid 0)"),
        "{log}"
    );
    assert!(log.contains("chown root "), "{log}");
}

#[test]
fn a_pinned_digest_refuses_any_other_file() {
    let hello = std::fs::read(&artifacts().hello).unwrap();
    let digest = {
        let out = std::process::Command::new("sha256sum").arg(&artifacts().hello).output().unwrap();
        String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_owned()
    };
    let yaml = format!(
        "aliases:\n  - url: /pinned\n    path: single/libpinned.so\n    sha256: {digest}\n  - url: /wrong\n    path: single/libwrong.so\n    sha256: {}\n",
        "0".repeat(64)
    );
    let d = Daemon::start_with(&yaml, |root| {
        copy_plugin(&artifacts().hello, &root.join("single/libpinned.so"), 0o644);
        copy_plugin(&artifacts().hello, &root.join("single/libwrong.so"), 0o644);
    });
    assert_eq!(d.get("/pinned").text(), "Hello World!");
    d.get("/wrong").expect_status(500);
    assert!(
        d.log().contains(&format!("its SHA-256 is {digest}, not the {}", "0".repeat(64))),
        "{}",
        d.log()
    );
    // A tampered copy of the pinned file (one byte past its end) is refused on reload and the
    // pinned version keeps serving.
    let mut tampered = hello;
    tampered.push(0);
    let tmp = d.path("single/.libpinned.so.new");
    std::fs::write(&tmp, &tampered).unwrap();
    chmod(&tmp, 0o644);
    std::fs::rename(&tmp, d.path("single/libpinned.so")).unwrap();
    wait_for("the refusal of the tampered file", Duration::from_secs(5), || {
        if d.log().contains("changed but the new version was refused") {
            Ok(())
        } else {
            Err(d.log())
        }
    });
    assert_eq!(d.get("/pinned").text(), "Hello World!");
}

#[test]
fn a_url_cannot_forge_an_error_log_entry() {
    // A group's missing app is logged with its name, which the client chose: a `%0A` in it
    // must not start a line that reads as the daemon's own.
    let d = Daemon::start("aliases:\n  - url: /apps/\n    path: apps/\n");
    let forged = "2026-01-01 00:00:00.000 ERROR forged by a client";
    let target = format!("/apps/x%0A{}", forged.replace(' ', "%20"));
    d.get(&target).expect_status(404);
    crate::harness::wait_until("the 404 in the log", || d.log().contains("forged by a client"));
    let log = d.log();
    assert!(!log.lines().any(|l| l.starts_with(forged)), "a forged entry:\n{log}");
}

#[test]
fn too_many_headers_are_400_and_never_reach_the_app() {
    let d = Daemon::start("max_headers: 10\naliases:\n  - url: /e\n    path: {environ}\n");
    let many: Vec<String> = (0..12).map(|i| format!("X-H{i}: {i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    let r = d.send("GET", "/e", &many, b"");
    assert_eq!(r.status, 400, "{r}");
    assert!(r.text().contains("more than 10"), "{r}");
    d.send("GET", "/e", &many[..5], b"").expect_status(200);
}

#[test]
fn stopping_never_runs_an_app_shutdown_beside_its_handle() {
    // A request still inside `handle` past shutdown_timeout: the app's `shutdown` must not
    // run beside it (the instance it uses could be freed under it). It runs after the call
    // returns, or not at all when the call outlasts the stop's wait too.
    let yaml = "\
shutdown_timeout: 1s
aliases:
  - url: /p
    path: {panicky}
    timeout: 30s
    env: {PANICKY_MARKS: var/marks.txt}
";
    let mut d = Daemon::start_with(yaml, |root| std::fs::create_dir_all(root.join("var")).unwrap());
    let marks = d.path("var/marks.txt");
    let addr = d.addr;
    let slow = std::thread::spawn(move || crate::harness::get_from(addr, "/p/sleep/4000"));
    crate::harness::wait_until("the slow request in the app", || {
        crate::harness::read_lossy(&marks).contains("sleep /p")
    });
    let status = d.terminate();
    assert!(status.success(), "{status}\n{}", d.log());
    let _ = slow.join();
    let m = crate::harness::read_lossy(&marks);
    let lines: Vec<&str> = m.lines().collect();
    assert!(
        lines == ["init /p", "sleep /p"]
            || lines == ["init /p", "sleep /p", "woke /p", "shutdown /p"],
        "shutdown ran beside the request:\n{m}\n{}",
        d.log()
    );
    assert!(d.log().contains("its shutdown is not run"), "{}", d.log());
}

#[test]
fn an_app_past_its_timeout_gets_504_and_its_thread_is_accounted_for() {
    let yaml = "\
aliases:
  - url: /slow
    path: {panicky}
    timeout: 300ms
    threads: 2
  - url: /fast
    path: {hello}
";
    let d = Daemon::start(yaml);
    let t = Instant::now();
    let r = d.get("/slow/sleep/1500");
    assert_eq!(r.status, 504, "{r}");
    assert!(t.elapsed() < Duration::from_millis(1400), "504 came after {:?}", t.elapsed());
    // Others keep serving meanwhile, and so does the alias's other thread.
    assert_eq!(d.get("/fast").text(), "Hello World!");
    assert_eq!(d.get("/slow/x").text(), "ok");
    assert!(
        d.log().contains(
            "did not answer within 300ms; answered 504 (1 of its 2 threads busy past their timeout)"
        ),
        "{}",
        d.log()
    );
    wait_for("the late return to be logged", Duration::from_secs(5), || {
        if d.log().contains("past its timeout of 300ms; its thread is free again") {
            Ok(())
        } else {
            Err(d.log())
        }
    });
}

/// Opens a connection and sends `head` (and nothing more), then reads what comes back
/// within `wait`.
fn send_and_hold(d: &Daemon, raw: &[u8], wait: Duration) -> (Duration, String) {
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(wait)).unwrap();
    s.write_all(raw).unwrap();
    let t = Instant::now();
    let mut reply = Vec::new();
    let _ = s.read_to_end(&mut reply);
    (t.elapsed(), String::from_utf8_lossy(&reply).into_owned())
}

#[test]
fn slow_headers_and_slow_bodies_time_out() {
    let yaml = "\
header_timeout: 1s
aliases:
  - url: /p
    path: {panicky}
    body_timeout: 1s
    body_min_rate: 0
";
    let d = Daemon::start(yaml);
    // A head that never ends (slowloris): 408 after header_timeout, connection closed.
    let (took, reply) =
        send_and_hold(&d, b"GET /p/x HTTP/1.1\r\nHost: x\r\nX-Slow: 1\r\n", Duration::from_secs(5));
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply:?} after {took:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    // A streamed body that stops arriving: 408 after body_timeout.
    let (took, reply) = send_and_hold(
        &d,
        b"POST /p/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 100\r\n\r\n0123456789",
        Duration::from_secs(5),
    );
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply:?} after {took:?}");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(4), "{took:?}");
    // A form body that stops arriving: the same.
    let (took, reply) = send_and_hold(
        &d,
        b"POST /p/x HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\na=1&b=",
        Duration::from_secs(5),
    );
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply:?} after {took:?}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    // The daemon serves on.
    assert_eq!(d.get("/p/x").text(), "ok");
}

#[test]
fn a_body_that_keeps_the_rate_is_cut_at_body_timeout_max() {
    // One app thread. A client sends 20 bytes every 200 ms (100 B/s, ten times
    // body_min_rate) of a 10 000-byte body: every window is fast enough, so before
    // `body_timeout_max` it held the thread for the whole 100 s.
    let yaml = "\
aliases:
  - url: /p
    path: {panicky}
    threads: 1
    body_timeout: 1s
    body_min_rate: 10
    body_timeout_max: 2s
";
    let d = Daemon::start(yaml);
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.write_all(b"POST /p/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 10000\r\n\r\n")
        .unwrap();
    let t = Instant::now();
    let mut sender = s.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        while t.elapsed() < Duration::from_secs(8) {
            if sender.write_all(&[b'x'; 20]).is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    s.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    let took = t.elapsed();
    assert_eq!(&head, b"HTTP/1.1 408", "after {took:?}");
    assert!(took >= Duration::from_millis(1900) && took < Duration::from_secs(4), "{took:?}");
    // The app's read failed, and its one thread serves the next request at once.
    let t = Instant::now();
    assert_eq!(d.get("/p/x").text(), "ok");
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    drop(s);
    trickle.join().unwrap();
}

#[test]
fn an_app_that_never_reads_its_streamed_body_gets_504() {
    let yaml = "\
aliases:
  - url: /p
    path: {panicky}
    timeout: 500ms
";
    let d = Daemon::start(yaml);
    // /sleep does not read the body; 1 MiB is more than the chunks that may wait for it.
    let body = vec![b'x'; 1 << 20];
    let t = Instant::now();
    let r = d.send("POST", "/p/sleep/3000", &["Content-Type: application/octet-stream"], &body);
    assert_eq!(r.status, 504, "{r}");
    assert!(t.elapsed() < Duration::from_millis(2900), "{:?}", t.elapsed());
}

#[test]
fn malformed_http_is_400() {
    let d = Daemon::start("aliases:\n  - url: /e\n    path: {environ}\n");
    let cases: [(&str, &[u8]); 6] = [
        ("Content-Length with Transfer-Encoding", b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"),
        ("two Content-Lengths", b"POST /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello"),
        ("obs-fold", b"GET /e HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n  folded\r\n\r\n"),
        ("NUL in a header", b"GET /e HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\n\r\n"),
        ("space before the colon", b"GET /e HTTP/1.1\r\nHost: x\r\nX-A : 1\r\n\r\n"),
        ("bad chunk size", b"POST /e HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"),
    ];
    for (what, raw) in cases {
        let (_, reply) = send_and_hold(&d, raw, Duration::from_secs(5));
        assert!(reply.starts_with("HTTP/1.1 400"), "{what}: {reply:?}");
    }
    d.get("/e").expect_status(200);
}

#[test]
fn trace_and_connect_are_refused_unless_trace_enable() {
    let d = Daemon::start("aliases:\n  - url: /sample\n    path: {hello}\n");
    // As a hardened Apache (TraceEnable off): 405 with Allow, the app never sees it.
    let r = d.send("TRACE", "/sample", &["Cookie: secret=1"], b"");
    r.expect_status(405);
    assert!(r.header("allow").is_some_and(|a| a.contains("GET") && !a.contains("TRACE")), "{r}");
    assert!(!r.text().contains("secret"), "{r}");
    // CONNECT, in authority form and in origin form: never a proxy.
    for target in ["127.0.0.1:22", "/sample"] {
        let r = d.send("CONNECT", target, &[], b"");
        assert!(r.status == 405 || r.status == 400, "CONNECT {target}: {r}");
        if r.status == 405 {
            assert!(r.header("allow").is_some(), "{r}");
        }
    }
    d.get("/sample").expect_status(200);
    // trace_enable lets TRACE through to the app, as TraceEnable on.
    let d = Daemon::start("trace_enable: true\naliases:\n  - url: /sample\n    path: {hello}\n");
    let r = d.send("TRACE", "/sample", &[], b"");
    r.expect_status(200);
    assert_eq!(r.text(), "Hello World!");
    d.send("CONNECT", "/sample", &[], b"").expect_status(405);
}

/// Sends `head` (no body) and reads what comes within `wait`, to EOF or the wait's end.
fn head_only(d: &Daemon, head: &str, wait: Duration) -> (Duration, String) {
    send_and_hold(d, head.as_bytes(), wait)
}

#[test]
fn expect_100_continue_past_max_body_is_413_before_the_body_is_asked_for() {
    let yaml = "\
max_body: 1MiB
aliases:
  - url: /p
    path: {panicky}
  - url: /small
    path: {panicky}
    max_body: 1KiB
";
    let d = Daemon::start(yaml);
    // A declared 1 GB upload: 413 at once, never `100 Continue` (which asks for the body),
    // and the connection closed (the client may send the body anyway; nobody will read it).
    for (target, len) in [("/p/echo", 1_000_000_000u64), ("/small/echo", 2048)] {
        let head = format!(
            "POST {target} HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: {len}\r\nExpect: 100-continue\r\n\r\n"
        );
        let (took, reply) = head_only(&d, &head, Duration::from_secs(5));
        assert!(reply.starts_with("HTTP/1.1 413"), "{target}: {reply:?} after {took:?}");
        assert!(!reply.contains("100 Continue"), "{target}: {reply:?}");
        assert!(took < Duration::from_secs(3), "{target}: closed after {took:?}: {reply:?}");
    }
    // Counted and logged as the handler's answers are.
    let log = d.path("log/access.log");
    wait_until("the 413s in the access log", || read_lossy(&log).matches("\" 413 ").count() >= 2);
    let lines = read_lossy(&log);
    assert!(
        lines.contains("\"POST /p/echo HTTP/1.1\" 413 ") && lines.contains(" app=p "),
        "{lines}"
    );
    // Within the limit: 100 Continue, then the app reads the body.
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"POST /small/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\nContent-Length: 5\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n").unwrap();
    let mut interim = [0u8; 25];
    s.read_exact(&mut interim).unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"hello").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200") && reply.ends_with("hello"), "{reply:?}");
}
