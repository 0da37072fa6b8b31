//! Process isolation: aliases with `isolation: process` run their apps in worker
//! processes. `apps/crashy` segfaults, aborts, exits, hangs and leaks on request; every other
//! request (on the alias's other workers, on other aliases, in-process or isolated) keeps
//! succeeding meanwhile, and the same plugins answer the same in both modes.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::harness::{Daemon, artifacts, install, read_lossy, wait_for};

/// Long enough for a worker to start, short enough to fail fast on a real miss.
const RESTART: Duration = Duration::from_secs(10);
/// Lines one call site may log per window (`logs::error_log::BURST`).
const BURST: usize = 20;

/// Requests `targets` in a loop on background threads until stopped; returns the
/// failures (anything but 200) and how many requests were made.
struct Background {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<(Vec<String>, usize)>>,
}

impl Background {
    fn start(d: &Daemon, targets: &[&str]) -> Background {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = targets
            .iter()
            .map(|&target| {
                let (addr, stop, target) = (d.addr, Arc::clone(&stop), target.to_owned());
                std::thread::spawn(move || {
                    let (mut failures, mut n) = (Vec::new(), 0);
                    while !stop.load(Ordering::Relaxed) {
                        let (status, text) = crate::harness::get_from(addr, &target);
                        if status != 200 {
                            failures.push(format!("{target}: {status} {text}"));
                        }
                        n += 1;
                    }
                    (failures, n)
                })
            })
            .collect();
        Background { stop, threads }
    }

    /// Stops the clients; asserts none failed and each made requests.
    fn finish(self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        let mut total = 0;
        for t in self.threads {
            let (failures, n) = t.join().unwrap();
            assert!(failures.is_empty(), "requests failed meanwhile: {failures:#?}");
            assert!(n > 0, "a background client made no request");
            total += n;
        }
        total
    }
}

pub(crate) fn pid_of(d: &Daemon, target: &str) -> u32 {
    let r = d.get(target);
    assert_eq!(r.status, 200, "{target}: {r}");
    r.header("x-pid").and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{target}: no X-Pid"))
}

/// The worker pids of the daemon: its children running `gatehouse worker URL`.
pub(crate) fn workers(d: &Daemon, url: &str) -> BTreeSet<u32> {
    let mut out = BTreeSet::new();
    let Ok(entries) = std::fs::read_dir("/proc") else { return out };
    for e in entries.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let stat = read_lossy(&e.path().join("stat"));
        let ppid = stat.rsplit(") ").next().and_then(|r| r.split(' ').nth(1));
        let cmdline = read_lossy(&e.path().join("cmdline")).replace('\0', " ");
        if ppid == Some(&d.pid().to_string()) && cmdline.contains(&format!("worker {url} ")) {
            out.insert(pid);
        }
    }
    out
}

/// The address of the metrics listener (`metrics: {listen: "127.0.0.1:0"}`), as the
/// daemon prints it.
fn metrics_addr(d: &Daemon) -> std::net::SocketAddr {
    let line = d.stdout_line(Duration::from_secs(10)).expect("the metrics line");
    line.strip_prefix("gatehouse metrics on http://").unwrap().parse().unwrap()
}

fn wait_workers(d: &Daemon, url: &str, n: usize) -> BTreeSet<u32> {
    wait_new_workers(d, url, n, &BTreeSet::new())
}

/// Waits until `url` has `n` worker processes and none of them is in `old` (a worker being
/// replaced may still be finishing when its successors have started).
fn wait_new_workers(d: &Daemon, url: &str, n: usize, old: &BTreeSet<u32>) -> BTreeSet<u32> {
    wait_for(&format!("{n} workers of {url}, none of {old:?}"), RESTART, || {
        let w = workers(d, url);
        if w.len() == n && w.is_disjoint(old) { Ok(w) } else { Err(format!("{w:?}")) }
    })
}

/// The request id the crashy app logged for its `/segv` (its debug line names it).
fn logged_request_id(d: &Daemon, message: &str) -> u64 {
    let log = read_lossy(&d.path("log/crashy/debug.log"));
    log.lines()
        .find(|l| l.contains(message))
        .and_then(crate::harness::debug_line)
        .map(|(id, _)| id)
        .unwrap_or_else(|| panic!("no debug line {message:?} in {log:?}"))
}

#[test]
fn a_crashing_worker_fails_only_its_own_request() {
    let yaml = "\
aliases:
  - url: /crashy
    path: {crashy}
    isolation: process
    processes: 2
    threads: 1
  - url: /other
    path: {crashy}
    isolation: process
    processes: 1
  - url: /hello
    path: {hello}
";
    let d = Daemon::start(yaml);
    let first = wait_workers(&d, "/crashy", 2);
    wait_workers(&d, "/other", 1);
    let other_pid = pid_of(&d, "/other/ok");
    let bg = Background::start(&d, &["/crashy/ok", "/other/ok", "/hello", "/crashy/ok/2"]);
    std::thread::sleep(Duration::from_millis(200));
    for (path, how) in [
        ("/segv", "died of signal 11 (SIGSEGV"),
        ("/abort", "died of signal 6 (SIGABRT"),
        ("/exit", "exited with status 3"),
    ] {
        let before = d.log_count(how);
        let r = d.get(&format!("/crashy{path}"));
        assert_eq!(r.status, 502, "{path}: {r}");
        assert!(r.text().contains("worker process died"), "{path}: {r}");
        wait_for(&format!("the log to report {how}"), RESTART, || {
            if d.log_count(how) > before { Ok(()) } else { Err(d.log()) }
        });
        // The alias is back to two workers before the next crash.
        wait_workers(&d, "/crashy", 2);
    }
    let served = bg.finish();
    assert!(served >= 20, "only {served} requests were made meanwhile");
    // The report names the signal and the request that was in flight.
    let id = logged_request_id(&d, "segv: dereferencing a null pointer");
    let log = d.log();
    let line = log.lines().find(|l| l.contains("SIGSEGV")).unwrap();
    assert!(
        line.contains(&format!("; request {id} in flight failed (502, or a cut stream);")),
        "{line}"
    );
    assert!(line.contains("starting a new one"), "{line}");
    // Three crashes, three new workers; the other alias's worker never changed.
    let now = workers(&d, "/crashy");
    assert_ne!(now, first, "no worker of /crashy was replaced");
    assert!(d.log_count("; starting a new one") >= 3, "{}", d.log());
    assert_eq!(pid_of(&d, "/other/ok"), other_pid);
    assert_eq!(d.get("/hello").text(), "Hello World!");
}

#[test]
fn a_hung_request_gets_504_and_its_worker_is_replaced() {
    let yaml = "\
aliases:
  - url: /crashy
    path: {crashy}
    isolation: process
    processes: 2
    threads: 1
    timeout: 1s
  - url: /hello
    path: {hello}
";
    let d = Daemon::start(yaml);
    let before = wait_workers(&d, "/crashy", 2);
    let bg = Background::start(&d, &["/crashy/ok", "/hello"]);
    let started = Instant::now();
    let r = d.get("/crashy/hang");
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{r}");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(5), "{took:?}");
    let after = wait_for("a new worker for the killed one", RESTART, || {
        let w = workers(&d, "/crashy");
        if w.len() == 2 && w != before { Ok(w) } else { Err(format!("{w:?}")) }
    });
    bg.finish();
    let killed: Vec<u32> = before.difference(&after).copied().collect();
    assert_eq!(killed.len(), 1, "{before:?} → {after:?}");
    let log = d.log();
    assert!(
        log.contains(&format!("answered 504 and killed its worker process {}", killed[0])),
        "{log}"
    );
    assert!(log.contains(&format!("worker {} was killed (request", killed[0])), "{log}");
    assert!(log.contains("ran past its timeout of 1s"), "{log}");
}

#[test]
fn leaks_and_maximum_requests_recycle_workers_without_failing_a_request() {
    let yaml = "\
metrics: {listen: \"127.0.0.1:0\"}
aliases:
  - url: /crashy
    path: {crashy}
    isolation: process
    processes: 1
    threads: 1
    memory_limit: 48MiB
  - url: /counted
    path: {crashy}
    isolation: process
    processes: 1
    threads: 2
    maximum_requests: 3
";
    let d = Daemon::start(yaml);
    // Each /leak keeps 10 MiB resident; past 48 MiB the worker is recycled after its
    // request, and the next requests are served by a new one.
    let first = pid_of(&d, "/crashy/ok");
    let mut pids = vec![first];
    let deadline = Instant::now() + RESTART;
    while pids.iter().all(|&p| p == first) {
        assert!(Instant::now() < deadline, "never recycled: {pids:?}\n{}", d.log());
        let r = d.get("/crashy/leak");
        assert_eq!(r.status, 200, "{r}");
        pids.push(r.header("x-pid").unwrap().parse().unwrap());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(pids.len() >= 4, "recycled after {} leaks, under the limit", pids.len() - 1);
    assert!(d.log().contains(&format!("worker {first} uses ")), "{}", d.log());
    assert!(d.log().contains("past its memory_limit of 48 MiB"), "{}", d.log());
    assert!(d.log().contains(&format!("worker {first} stopped after")), "{}", d.log());

    // maximum_requests: 3 → a new worker every three requests, none failing.
    let pids: Vec<u32> = (0..9).map(|_| pid_of(&d, "/counted/ok")).collect();
    for chunk in pids.chunks(3) {
        assert!(chunk.iter().all(|&p| p == chunk[0]), "{pids:?}");
    }
    let distinct: BTreeSet<u32> = pids.iter().copied().collect();
    assert_eq!(distinct.len(), 3, "{pids:?}");
    assert!(d.log().contains("served its maximum_requests (3); recycling it"), "{}", d.log());
    // The status page lists each alias's worker processes.
    let addr = metrics_addr(&d);
    // (The ninth request recycled the worker: wait for its successor.)
    let running = wait_new_workers(&d, "/counted", 1, &BTreeSet::from([pids[8]]));
    wait_for("the status page to list the running worker", RESTART, || {
        let (status, text) = crate::harness::get_from(addr, "/status.json");
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let counted = json["aliases"].as_array().and_then(|a| {
            a.iter().find(|a| a["url"] == "/counted").and_then(|a| a["workers"].as_array())
        });
        let listed: BTreeSet<u32> = counted
            .into_iter()
            .flatten()
            .filter_map(|w| w["pid"].as_u64().map(|p| p as u32))
            .collect();
        if status == 200 && listed == running { Ok(()) } else { Err(text) }
    });
}

#[test]
fn the_status_page_lists_the_plugins_worker_processes_loaded() {
    // An isolated alias's plugins are loaded in its workers, not in the daemon: each worker
    // reports what it loaded and how many requests each plugin served, and the status page
    // shows them per worker and merged per file.
    let yaml = "\
metrics: {listen: \"127.0.0.1:0\"}
aliases:
  - url: /g/
    path: g/
    isolation: process
    processes: 2
";
    let d = Daemon::start_with(yaml, |root| {
        install(&artifacts().hello, &root.join("g/libhello.so"));
        install(&artifacts().crashy, &root.join("g/libcrashy.so"));
    });
    let addr = metrics_addr(&d);
    for _ in 0..5 {
        assert_eq!(d.get("/g/hello").expect_status(200).text(), "Hello World!");
    }
    for _ in 0..3 {
        d.get("/g/crashy/ok").expect_status(200);
    }
    let running = wait_workers(&d, "/g", 2);
    let g = wait_for("the workers' plugin reports", RESTART, || {
        let (status, text) = crate::harness::get_from(addr, "/status.json");
        let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let g = json["aliases"]
            .as_array()
            .and_then(|a| a.iter().find(|a| a["url"] == "/g").cloned())
            .ok_or_else(|| text.clone())?;
        let counts: Vec<(String, u64)> = g["plugins"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                (p["app"].as_str().unwrap_or("?").to_owned(), p["requests"].as_u64().unwrap_or(0))
            })
            .collect();
        let want = [("crashy".to_owned(), 3), ("hello".to_owned(), 5)];
        if status == 200 && counts == want { Ok(g) } else { Err(format!("{counts:?}: {g:#}")) }
    });
    let plugins = g["plugins"].as_array().unwrap();
    assert_eq!(plugins[1]["file"].as_str(), Some(d.path("g/libhello.so").to_str().unwrap()));
    assert_eq!(plugins[1]["name"].as_str(), Some("hello"), "{g:#}");
    assert!(plugins[1]["loaded_at_unix"].as_u64().is_some_and(|t| t > 0), "{g:#}");
    // Per worker: the running pids, and their own counts add up to the merged ones.
    let workers = g["workers"].as_array().unwrap();
    let pids: BTreeSet<u32> =
        workers.iter().filter_map(|w| w["pid"].as_u64()).map(|p| p as u32).collect();
    assert_eq!(pids, running, "{g:#}");
    let hello: u64 = workers
        .iter()
        .flat_map(|w| w["plugins"].as_array().cloned().unwrap_or_default())
        .filter(|p| p["app"] == "hello")
        .filter_map(|p| p["requests"].as_u64())
        .sum();
    assert_eq!(hello, 5, "{g:#}");
    let (_, html) = crate::harness::get_from(addr, "/status");
    assert!(html.contains("/g/libhello.so (hello hello "), "{html}");
}

/// Removes what legitimately differs between the two aliases of a request's environ.
fn comparable(mut v: serde_json::Value, alias: &str) -> serde_json::Value {
    let o = v.as_object_mut().unwrap();
    o.remove("REMOTE_PORT"); // the client's port
    for key in ["SCRIPT_NAME", "REQUEST_URI"] {
        let value = o.remove(key).unwrap_or_default();
        assert!(value.as_str().unwrap_or("").starts_with(alias), "{key}: {value} for {alias}");
    }
    if let Some(uploads) = o.get_mut("gatehouse.uploads").and_then(|u| u.as_array_mut()) {
        for u in uploads {
            u.as_object_mut().unwrap().remove("path");
        }
    }
    v
}

#[test]
fn the_same_plugins_answer_the_same_in_both_modes() {
    let yaml = "\
aliases:
  - url: /in/
    path: apps/
  - url: /out/
    path: apps/
    isolation: process
    processes: 2
    threads: 2
";
    let d = Daemon::start_with(yaml, |root| {
        install(&artifacts().environ, &root.join("apps/libenviron.so"));
        install(&artifacts().probe, &root.join("apps/libprobe.so"));
    });
    let boundary = "xYzZy";
    let form = crate::harness::multipart(
        boundary,
        &[
            ("Content-Disposition: form-data; name=\"title\"", b"A \xc3\xa9 title"),
            (
                "Content-Disposition: form-data; name=\"f\"; filename=\"a.bin\"\r\n\
                 Content-Type: application/octet-stream",
                &[0u8, 1, 2, 255],
            ),
        ],
    );
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    for alias in ["/in", "/out"] {
        // Answered by the environ app: the same JSON but for the alias's own URL.
        let get = d.send(
            "GET",
            &format!("{alias}/environ/a%20b/c?x=1&y=%C3%A9&x=2"),
            &["X-Custom: v", "Cookie: a=b"],
            b"",
        );
        assert_eq!(get.status, 200, "{get}");
        let post_form = d.post(
            &format!("{alias}/environ/form"),
            "application/x-www-form-urlencoded",
            b"a=1&b=%E2%82%AC",
        );
        let post_multi = d.post(
            &format!("{alias}/environ/upload"),
            &format!("multipart/form-data; boundary={boundary}"),
            &form,
        );
        let post_raw = d.post(&format!("{alias}/environ/raw"), "application/octet-stream", &big);
        for r in [&post_form, &post_multi, &post_raw] {
            assert_eq!(r.status, 200, "{r}");
        }
        let answers: Vec<serde_json::Value> = [&get, &post_form, &post_multi, &post_raw]
            .iter()
            .map(|r| comparable(r.json(), alias))
            .collect();
        if alias == "/in" {
            std::fs::write(d.path("in.json"), serde_json::to_vec(&answers).unwrap()).unwrap();
        } else {
            let inproc: Vec<serde_json::Value> =
                serde_json::from_slice(&std::fs::read(d.path("in.json")).unwrap()).unwrap();
            for (a, b) in inproc.iter().zip(&answers) {
                assert_eq!(a, b, "in-process and process mode disagree");
            }
        }
    }
    assert_eq!(
        comparable(d.post("/out/environ/raw", "application/octet-stream", &big).json(), "/out")["gatehouse.input"]
            ["length"],
        300_000
    );
    // The probe: streamed replies, a body echoed while it streams, declared lengths.
    for target in [
        "/probe/stream?n=50&wait=0",
        "/probe/stream?n=3&flush=0&wait=0",
        "/probe/head-len",
        "/probe/uploads?q=1",
    ] {
        let a = d.get(&format!("/in{target}"));
        let b = d.get(&format!("/out{target}"));
        assert_eq!((a.status, a.body.clone()), (b.status, b.body.clone()), "{target}");
    }
    let a = d.post("/in/probe/echo-stream", "text/plain", &big);
    let b = d.post("/out/probe/echo-stream", "text/plain", &big);
    assert_eq!(a.status, 200, "{a}");
    assert_eq!(b.status, 200, "{b}");
    let end = |r: &crate::harness::Response| r.text().lines().last().unwrap_or("").to_owned();
    assert_eq!(end(&a), "end: 300000 bytes");
    assert_eq!(end(&b), end(&a));
    // A declared length the app does not keep: the connection is cut the same way in both.
    let raw = |alias: &str| {
        use std::io::{Read as _, Write as _};
        let mut s = std::net::TcpStream::connect(d.addr).unwrap();
        let req =
            format!("GET {alias}/probe/short HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).unwrap();
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out).into_owned();
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
        (text.contains("content-length: 100"), body)
    };
    assert_eq!(raw("/in"), (true, "0123456789".to_owned()));
    assert_eq!(raw("/out"), raw("/in"));
}

#[test]
fn reload_swaps_and_graceful_stop_work_in_worker_processes() {
    let yaml = "\
aliases:
  - url: /iso
    path: single/libone.so
    isolation: process
    processes: 1
    threads: 2
    env: {PANICKY_MARKS: var/marks.txt}
  - url: /hello
    path: {hello}
";
    let mut d = Daemon::start_with(yaml, |root| {
        std::fs::create_dir_all(root.join("var")).unwrap();
        install(&artifacts().panicky, &root.join("single/libone.so"));
    });
    let marks = d.path("var/marks.txt");
    assert_eq!(d.get("/iso/x").text(), "ok");
    let worker = wait_workers(&d, "/iso", 1);
    // Each worker leads its own process group: a terminal's Ctrl-C reaches the daemon only,
    // which stops its workers gracefully.
    for &w in &worker {
        let stat = read_lossy(Path::new(&format!("/proc/{w}/stat")));
        let pgrp = stat.rsplit(") ").next().and_then(|r| r.split(' ').nth(2));
        assert_eq!(pgrp, Some(w.to_string().as_str()), "{stat}");
    }
    // A replaced plugin file is swapped inside the worker, like in-process.
    let bg = Background::start(&d, &["/iso/x", "/hello"]);
    install(&artifacts().hello, &d.path("single/libone.so"));
    wait_for("the worker to serve the new plugin", RESTART, || {
        let r = d.get("/iso");
        if r.text() == "Hello World!" { Ok(()) } else { Err(format!("{r}")) }
    });
    install(&artifacts().panicky, &d.path("single/libone.so"));
    wait_for("and back", RESTART, || {
        let r = d.get("/iso/x");
        if r.text() == "ok" { Ok(()) } else { Err(format!("{r}")) }
    });
    assert_eq!(wait_workers(&d, "/iso", 1), worker, "a plugin swap must not restart the worker");
    // A configuration edit that changes the workers: new ones start, the old ones stop after
    // their requests, nothing fails meanwhile.
    d.write_config(&yaml.replace("processes: 1", "processes: 2"));
    // (The old worker is told to stop once the new ones are ready: all three can be seen.)
    wait_new_workers(&d, "/iso", 2, &worker);
    bg.finish();
    wait_for("the old worker's shutdown", RESTART, || {
        if read_lossy(&marks).matches("shutdown /iso").count() >= 1 {
            Ok(())
        } else {
            Err(read_lossy(&marks))
        }
    });
    // SIGTERM during a slow request: it finishes, every worker runs its shutdown, exit 0.
    let addr = d.addr;
    let sleeping = read_lossy(&marks).matches("sleep /iso").count();
    let slow = std::thread::spawn(move || crate::harness::get_from(addr, "/iso/sleep/1500"));
    wait_for("the slow request to reach a worker", RESTART, || {
        let m = read_lossy(&marks);
        if m.matches("sleep /iso").count() > sleeping { Ok(()) } else { Err(m) }
    });
    // Two workers may append at once (the lines can interleave): count the word.
    let shutdowns = read_lossy(&marks).matches("shutdown").count();
    let status = d.terminate();
    assert_eq!(slow.join().unwrap(), (200, "slept".to_owned()));
    assert!(status.success(), "{status}");
    let marks_now = read_lossy(&marks);
    assert_eq!(marks_now.matches("shutdown").count(), shutdowns + 2, "{marks_now}");
    assert!(workers(&d, "/iso").is_empty());
    assert!(d.log().contains("stopped after"), "{}", d.log());
}

pub(crate) fn is_root() -> bool {
    read_lossy(Path::new("/proc/self/status"))
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
}

pub(crate) fn uid_of(pid: u32) -> Option<u32> {
    read_lossy(Path::new(&format!("/proc/{pid}/status")))
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|u| u.parse().ok())
}

#[test]
fn workers_run_as_the_configured_user() {
    if !is_root() {
        eprintln!("skipped: switching users needs a daemon started as root");
        return;
    }
    let yaml = "\
cache_dir: cache
aliases:
  - url: /crashy
    path: plugins/libcrashy.so
    isolation: process
    processes: 1
    user: nobody
    supplementary_groups: [\"4242\"]
  - url: /probe/
    path: plugins/
    isolation: process
    user: \"65534\"
    group: \"65534\"
  - url: /hello
    path: plugins/libhello.so
";
    // The workers (uid 65534) exec the daemon's binary: a public copy, so the test passes
    // wherever the clone lives.
    // The workers must read the plugins and pass through the folders.
    let d = Daemon::start_public(yaml, |root| {
        crate::harness::public_plugins(root, &["crashy", "probe", "hello"]);
    });
    let pid = pid_of(&d, "/crashy/ok");
    assert_eq!(uid_of(pid), Some(65534), "worker {pid}\n{}", d.log());
    // Its groups: its user's, and the supplementary one configured.
    let status = read_lossy(Path::new(&format!("/proc/{pid}/status")));
    let groups = status.lines().find(|l| l.starts_with("Groups:")).unwrap_or_default().to_owned();
    assert!(groups.split_whitespace().any(|g| g == "4242"), "{groups}");
    // An upload spooled by the daemon (root) is readable by the worker's user.
    let body = crate::harness::multipart(
        "b0undary",
        &[("Content-Disposition: form-data; name=\"f\"; filename=\"x.txt\"", b"secret for nobody")],
    );
    let r = d.post("/probe/probe/uploads", "multipart/form-data; boundary=b0undary", &body);
    assert_eq!(r.status, 200, "{r}\n{}", d.log());
    let json = r.json();
    assert_eq!(json["uploads"][0]["exists"], true, "{json}");
    assert_eq!(
        json["uploads"][0]["content_hex"],
        "secret for nobody".bytes().map(|b| format!("{b:02x}")).collect::<String>(),
        "{json}"
    );
    for w in workers(&d, "/probe/") {
        assert_eq!(uid_of(w), Some(65534));
    }
    // The in-process alias runs as the daemon.
    assert_eq!(d.get("/hello").text(), "Hello World!");
}

#[test]
fn workers_of_another_user_start_from_a_daemon_binary_they_cannot_reach() {
    if !is_root() {
        eprintln!("skipped: switching users needs a daemon started as root");
        return;
    }
    // The daemon's binary in a folder only root may enter (a clone in a `mktemp -d` folder or
    // root's home): its workers, as `nobody`, are started from the daemon's descriptor of
    // it, not by its path.
    let private = tempfile::Builder::new().prefix("gatehouse-e2e-private-").tempdir().unwrap();
    std::fs::set_permissions(private.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let binary = private.path().join("gatehouse");
    std::fs::copy(&artifacts().gatehouse, &binary).unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let yaml = "\
cache_dir: cache
aliases:
  - url: /crashy
    path: plugins/libcrashy.so
    isolation: process
    processes: 1
    user: nobody
";
    let d = Daemon::start_public_from(
        yaml,
        |root| crate::harness::public_plugins(root, &["crashy"]),
        &binary,
    );
    let pid = pid_of(&d, "/crashy/ok");
    assert_eq!(uid_of(pid), Some(65534), "worker {pid}\n{}", d.log());
    // Named as the daemon for `ps` and `pgrep`, not after the descriptor it was started from.
    let comm = read_lossy(Path::new(&format!("/proc/{pid}/comm")));
    assert_eq!(comm.trim(), "gatehouse", "{}", d.log());
}

#[test]
fn a_worker_whose_apps_never_load_is_killed_at_its_startup_timeout() {
    // An `init` that hangs holds a new worker before it is ready: past `startup_timeout` it
    // is killed and another started, instead of the slot waiting forever.
    let yaml = "\
aliases:
  - url: /iso
    path: {panicky}
    isolation: process
    processes: 1
    startup_timeout: 1s
    env: {PANICKY_INIT_SLEEP_MS: \"600000\"}
";
    let d = Daemon::start(yaml);
    let first = wait_workers(&d, "/iso", 1);
    wait_for("the kill at startup_timeout", RESTART, || {
        let log = d.log();
        if log.contains("not ready (its apps loaded) within its startup_timeout of 1s") {
            Ok(())
        } else {
            Err(log)
        }
    });
    // Another worker takes the slot.
    let next = wait_new_workers(&d, "/iso", 1, &first);
    assert!(next.is_disjoint(&first), "{first:?} {next:?}");
}

/// Sends a chunked POST in pieces, `pause` apart; the status line and the body.
fn chunked_post(d: &Daemon, target: &str, pieces: &[&[u8]], pause: Duration) -> (String, String) {
    use std::io::{Read as _, Write as _};
    let mut s = std::net::TcpStream::connect(d.addr).unwrap();
    let head = format!(
        "POST {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    for piece in pieces {
        let mut chunk = format!("{:x}\r\n", piece.len()).into_bytes();
        chunk.extend_from_slice(piece);
        chunk.extend_from_slice(b"\r\n");
        // The daemon may have answered (413) and closed already: later writes may fail.
        if s.write_all(&chunk).is_err() {
            break;
        }
        std::thread::sleep(pause);
    }
    let _ = s.write_all(b"0\r\n\r\n");
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.lines().next().unwrap_or("").to_owned();
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

#[test]
fn a_worker_gets_the_body_with_the_request_or_as_it_arrives() {
    // The daemon sends what it has of the body with the request (a small body: all of it)
    // and the rest when the app asks; a body that turns out too large fails the same way
    // whether the app learns it with the request or later.
    let yaml = "\
aliases:
  - url: /out/
    path: apps/
    isolation: process
    processes: 1
    threads: 2
    max_body: 1000
";
    let d = Daemon::start_with(yaml, |root| {
        install(&artifacts().environ, &root.join("apps/libenviron.so"));
    });
    let length = |body: &str| -> u64 {
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        v["gatehouse.input"]["length"].as_u64().unwrap_or(u64::MAX)
    };
    // All at once (with the request), then in pieces 150 ms apart (asked for).
    let all = [&[b'a'; 300][..], &[b'b'; 300][..], &[b'c'; 300][..]];
    for pause in [Duration::ZERO, Duration::from_millis(150)] {
        let (status, body) = chunked_post(&d, "/out/environ/raw", &all, pause);
        assert!(status.contains(" 200 "), "{pause:?}: {status}\n{body}");
        assert_eq!(length(&body), 900, "{pause:?}: {body}");
    }
    // 1200 bytes, past max_body: 413 both ways, and the worker serves on.
    let over = [&[b'a'; 600][..], &[b'b'; 600][..]];
    for pause in [Duration::ZERO, Duration::from_millis(150)] {
        let (status, body) = chunked_post(&d, "/out/environ/raw", &over, pause);
        assert!(status.contains(" 413 "), "{pause:?}: {status}\n{body}");
    }
    let pids = workers(&d, "/out/");
    let r = d.post("/out/environ/raw", "application/octet-stream", b"12345");
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json()["gatehouse.input"]["length"], 5);
    assert_eq!(workers(&d, "/out/"), pids, "no worker was replaced");
}

#[test]
fn requests_past_an_isolated_alias_queue_get_503_at_once() {
    // One worker with one thread: a hung request holds the only socket, `queue: 1` more may
    // wait for it, and the one after that is refused at once, with the daemon serving on.
    let yaml = "\
metrics: {listen: \"127.0.0.1:0\"}
aliases:
  - url: /crashy
    path: {crashy}
    isolation: process
    processes: 1
    threads: 1
    queue: 1
    timeout: 3s
";
    let d = Daemon::start(yaml);
    let metrics = metrics_addr(&d);
    wait_workers(&d, "/crashy", 1);
    let spawn = |target: &'static str| {
        let addr = d.addr;
        std::thread::spawn(move || crate::harness::get_from(addr, target).0)
    };
    let hung = spawn("/crashy/hang");
    // The status page counts a request for its worker when the request takes its socket.
    wait_for_worker_requests(metrics, "the hung request to take the worker", 1);
    let waiting = spawn("/crashy/ok");
    // The second one waits for the socket (no answer yet), the third is past the queue.
    wait_for("the second request to wait", Duration::from_secs(5), || {
        let (_, text) = crate::harness::get_from(metrics, "/status.json");
        let status: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let n = status["requests_in_flight"].as_i64();
        if n == Some(2) { Ok(()) } else { Err(format!("{n:?} in flight: {status}")) }
    });
    assert!(!waiting.is_finished(), "the queued request was answered early");
    let started = Instant::now();
    let refused = d.get("/crashy/ok");
    assert_eq!(refused.status, 503, "{refused}");
    // As the in-process queue's 503: come back in a second.
    assert_eq!(refused.header("retry-after"), Some("1"), "{refused}");
    assert!(started.elapsed() < Duration::from_secs(1), "{:?}", started.elapsed());
    assert!(refused.text().contains("busy"), "{refused}");
    let busy = "requests already wait for a worker process; answered 503";
    assert!(d.log().contains(busy), "{}", d.log());
    // Every refused request is logged, up to the error log's per-request limit (BURST lines
    // per call site in 10 s, `logs::error_log`): a client cannot flood the log with them.
    for _ in 0..2 * BURST {
        assert_eq!(d.get("/crashy/ok").status, 503);
    }
    let lines = d.log().lines().filter(|l| l.contains(busy)).count();
    assert_eq!(lines, BURST, "{}", d.log());
    // The hung one gets 504 and its worker is replaced; the queued one then gets the new
    // worker's answer, or 504 if its own timeout passed while it waited.
    let status = hung.join().unwrap();
    assert_eq!(status, 504);
    let status = waiting.join().unwrap();
    assert!(status == 200 || status == 504, "{status}");
    let after = wait_for("the alias to serve again", RESTART, || {
        let r = d.get("/crashy/ok");
        if r.status == 200 { Ok(r) } else { Err(r.to_string()) }
    });
    assert_eq!(after.text(), "ok");
}

/// Waits until the status page at `metrics` counts `n` requests given to worker processes
/// (a request counts when it takes its worker's socket).
fn wait_for_worker_requests(metrics: std::net::SocketAddr, what: &str, n: u64) {
    wait_for(what, Duration::from_secs(5), || {
        let (_, text) = crate::harness::get_from(metrics, "/status.json");
        let status: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let served = worker_requests(&status);
        if served == n { Ok(()) } else { Err(format!("{served} requests: {status}")) }
    });
}

/// The requests every worker process on a status page was given, added up.
fn worker_requests(v: &serde_json::Value) -> u64 {
    match v {
        serde_json::Value::Object(m) => {
            let own = m
                .get("workers")
                .and_then(|w| w.as_array())
                .map_or(0, |w| w.iter().filter_map(|w| w["requests"].as_u64()).sum());
            own + m
                .iter()
                .filter(|(k, _)| *k != "workers")
                .map(|(_, v)| worker_requests(v))
                .sum::<u64>()
        }
        serde_json::Value::Array(a) => a.iter().map(worker_requests).sum(),
        _ => 0,
    }
}

#[test]
fn a_worker_that_breaks_the_framing_is_recycled() {
    // The app writes a frame of no known kind on its own request socket: the daemon answers
    // 502, says so, and replaces the worker once it is idle; nothing else notices.
    let yaml = "\
aliases:
  - url: /crashy
    path: {crashy}
    isolation: process
    processes: 1
    threads: 1
  - url: /hello
    path: {hello}
";
    let d = Daemon::start(yaml);
    let before = wait_workers(&d, "/crashy", 1);
    let bg = Background::start(&d, &["/hello"]);
    let r = d.get("/crashy/garble");
    assert_eq!(r.status, 502, "{r}");
    let after = wait_for("a new worker for the broken one", RESTART, || {
        let w = workers(&d, "/crashy");
        if w.len() == 1 && w != before { Ok(w) } else { Err(format!("{w:?}")) }
    });
    let r = d.get("/crashy/ok");
    assert_eq!((r.status, r.text()), (200, "ok".to_owned()), "{r}");
    assert_eq!(r.header("x-pid").and_then(|p| p.parse().ok()), after.first().copied());
    bg.finish();
    let old = before.first().copied().unwrap_or(0);
    let log = d.log();
    assert!(log.contains("the worker broke the framing: unknown frame kind"), "{log}");
    assert!(log.contains(&format!("worker {old} broke the framing; recycling it")), "{log}");
}

#[test]
fn a_refused_file_leaves_its_worker_socket_ready_for_the_next_request() {
    // A group folder holds more than plugins: the worker refuses such a file (404), and the
    // request's body frames, sent with it, must not be left on the socket for the next one.
    let yaml = "\
aliases:
  - url: /g/
    path: g/
    isolation: process
    processes: 1
    threads: 1
";
    let d = Daemon::start_with(yaml, |root| {
        install(&artifacts().crashy, &root.join("g/libcrashy.so"));
        std::fs::write(root.join("g/README"), "not a plugin\n").unwrap();
    });
    let pid = pid_of(&d, "/g/crashy/ok");
    for i in 0..3 {
        d.get("/g/README").expect_status(404);
        assert_eq!(pid_of(&d, "/g/crashy/ok"), pid, "after GET {i}");
        let r = d.post("/g/README", "application/octet-stream", b"a small body");
        assert_eq!(r.status, 404, "{r}");
        assert_eq!(pid_of(&d, "/g/crashy/ok"), pid, "after POST {i}");
    }
    assert_eq!(workers(&d, "/g"), BTreeSet::from([pid]), "the worker was replaced");
    assert!(!d.log().contains("protocol error"), "{}", d.log());
}

#[test]
fn a_form_too_large_to_hand_to_a_worker_is_413_and_the_worker_serves_on() {
    // The worker's Request frame is at most 16 MiB: with a max_body past that, 17 fields
    // of 1 MiB do not fit (fewer than 10,000 fields, so the form itself is fine).
    let yaml = "\
aliases:
  - url: /crashy
    path: {crashy}
    isolation: process
    processes: 1
    threads: 1
    max_body: 32MiB
";
    let d = Daemon::start(yaml);
    let pid = pid_of(&d, "/crashy/ok");
    let field = format!("a={}", "x".repeat(1 << 20));
    let body = vec![field; 17].join("&");
    let r = d.post("/crashy/ok", "application/x-www-form-urlencoded", body.as_bytes());
    assert_eq!(r.status, 413, "{r}");
    assert!(r.text().contains("too many or too large form fields"), "{r}");
    assert!(d.log().contains("answered 413"), "{}", d.log());
    // Nothing reached the worker: the same one serves the next request.
    assert_eq!(pid_of(&d, "/crashy/ok"), pid);
    assert_eq!(workers(&d, "/crashy"), BTreeSet::from([pid]));
}

#[test]
fn a_request_frame_larger_than_the_socket_buffer_reaches_the_worker_whole() {
    // 6 form fields of 1 MiB make a Request frame many times the size of a Unix socket's
    // buffer: the daemon must wait for room as the worker reads (the socket is registered
    // for reading only, so that wait has its own registration), then serve on.
    let yaml = "\
aliases:
  - url: /environ
    path: {environ}
    isolation: process
    processes: 1
    threads: 1
    max_body: 8MiB
";
    let d = Daemon::start(yaml);
    let fields: Vec<String> = (0..6)
        .map(|i| format!("f{i}={}", char::from(b'a' + i).to_string().repeat(1 << 20)))
        .collect();
    let r = d.post("/environ", "application/x-www-form-urlencoded", fields.join("&").as_bytes());
    assert_eq!(r.status, 200, "{r}");
    let params = r.json()["gatehouse.params"].clone();
    let got: Vec<(String, usize, bool)> = params
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    let v = p[1].as_str().unwrap_or("");
                    let first = v.chars().next().unwrap_or('?');
                    (p[0].as_str().unwrap_or("").to_owned(), v.len(), v.chars().all(|c| c == first))
                })
                .collect()
        })
        .unwrap_or_default();
    let want: Vec<(String, usize, bool)> =
        (0..6).map(|i| (format!("f{i}"), 1 << 20, true)).collect();
    assert_eq!(got, want);
    // The socket is still in step: the next requests are served by the same worker.
    for _ in 0..3 {
        let r = d.post("/environ", "application/x-www-form-urlencoded", b"x=1");
        assert_eq!(r.status, 200, "{r}");
        assert_eq!(r.json()["gatehouse.params"], serde_json::json!([["x", "1"]]));
    }
    assert!(!d.log().contains("framing"), "{}", d.log());
}

#[test]
fn a_hung_request_whose_client_reset_the_connection_still_has_its_worker_replaced() {
    // A reset connection drops the request on the HTTP side, which would have answered 504
    // and killed the worker: the relay does it, or the hung app would hold the alias's only
    // worker socket for ever.
    let yaml = "\
metrics: {listen: \"127.0.0.1:0\"}
aliases:
  - url: /crashy
    path: {crashy}
    isolation: process
    processes: 1
    threads: 1
    timeout: 1s
";
    let d = Daemon::start(yaml);
    let metrics = metrics_addr(&d);
    let before = wait_workers(&d, "/crashy", 1);
    let mut client = std::net::TcpStream::connect(d.addr).unwrap();
    std::io::Write::write_all(&mut client, b"GET /crashy/hang HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    wait_for_worker_requests(metrics, "the hung request to take the worker", 1);
    // Closed with a reset (linger 0), not a FIN.
    socket2::SockRef::from(&client).set_linger(Some(Duration::ZERO)).unwrap();
    drop(client);
    let after = wait_new_workers(&d, "/crashy", 1, &before);
    let killed = before.iter().next().copied().unwrap();
    assert!(
        d.log().contains(&format!(
            "the client left and the app did not answer within 1s; killed its worker process \
             {killed}"
        )),
        "{}",
        d.log()
    );
    assert_eq!(pid_of(&d, "/crashy/ok"), after.iter().next().copied().unwrap());
}

#[test]
fn a_worker_that_breaks_its_control_socket_is_killed_and_replaced() {
    // A live worker whose control socket the daemon can no longer read would never see that
    // socket close (and so never end): the daemon kills it, and a new one serves.
    let yaml = "\
aliases:
  - url: /crashy
    path: {crashy}
    isolation: process
    processes: 1
    threads: 1
";
    let d = Daemon::start(yaml);
    let before = wait_workers(&d, "/crashy", 1);
    let old = before.first().copied().unwrap_or(0);
    // (The daemon reads the garbled frame at once: the request that wrote it gets its
    // reply, or 502 when the kill comes first.)
    let r = d.get("/crashy/garble-control");
    assert!(r.status == 200 || r.status == 502, "{r}");
    let after = wait_new_workers(&d, "/crashy", 1, &before);
    assert_eq!(pid_of(&d, "/crashy/ok"), after.first().copied().unwrap_or(0));
    let log = d.log();
    assert!(
        log.contains(&format!("worker {old} was killed (it broke its control socket's framing")),
        "{log}"
    );
}

#[test]
fn a_request_still_running_past_shutdown_timeout_gets_its_worker_killed_not_shut_down() {
    // Past shutdown_timeout the HTTP workers stop and drop the relays of requests still in
    // flight. Their worker may still be running one: it is killed. A graceful stop would
    // run its apps' `shutdown` beside that request.
    let yaml = "\
shutdown_timeout: 1s
aliases:
  - url: /iso
    path: {panicky}
    isolation: process
    processes: 1
    threads: 1
    timeout: 30s
    env: {PANICKY_MARKS: var/marks.txt}
";
    let mut d = Daemon::start_with(yaml, |root| std::fs::create_dir_all(root.join("var")).unwrap());
    let marks = d.path("var/marks.txt");
    let worker = wait_workers(&d, "/iso", 1);
    let addr = d.addr;
    let slow = std::thread::spawn(move || {
        let raw = "GET /iso/sleep/6000 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        crate::harness::try_exchange(addr, raw.as_bytes()).map(|r| r.status)
    });
    wait_for("the slow request to reach the worker", RESTART, || {
        let m = read_lossy(&marks);
        if m.contains("sleep /iso\n") { Ok(()) } else { Err(m) }
    });
    let status = d.terminate();
    assert!(status.success(), "{status}\n{}", d.log());
    assert!(slow.join().unwrap().is_err(), "the abandoned request got a reply");
    let pid = worker.first().copied().unwrap_or(0);
    let log = d.log();
    assert!(
        log.contains(&format!("worker {pid} was killed (a request it was serving was abandoned")),
        "{log}"
    );
    // The killed worker never ran `shutdown`, and no successor was started for it: the
    // daemon was stopping (one started then could be killed before its own `shutdown`, if it
    // was still starting when shutdown_timeout ran out).
    let m = read_lossy(&marks);
    let lines: Vec<&str> = m.lines().collect();
    assert_eq!(lines, ["init /iso", "sleep /iso"], "shutdown ran beside the request:\n{m}");
    assert!(!log.contains("starting a new one"), "{log}");
}

/// The first CPU this process may run on (its `Cpus_allowed_list`).
fn first_allowed_cpu() -> Option<String> {
    let status = read_lossy(Path::new("/proc/self/status"));
    let list = status.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:"))?.trim();
    let first = list.split([',', '-']).next()?;
    first.parse::<u32>().ok().map(|n| n.to_string())
}

/// Two workers of two threads each, and a `timeout` long enough to hold hung requests.
const TWO_BY_TWO: &str = "\
metrics: {listen: \"127.0.0.1:0\"}
aliases:
  - url: /crashy
    path: {crashy}
    isolation: process
    processes: 2
    threads: 2
    timeout: 4s
";

/// Starts `target` on a thread; its status when joined.
fn in_background(d: &Daemon, target: &'static str) -> std::thread::JoinHandle<u16> {
    let addr = d.addr;
    std::thread::spawn(move || crate::harness::get_from(addr, target).0)
}

#[test]
fn with_more_workers_than_cpus_the_first_worker_takes_requests_until_its_threads_are_busy() {
    // The daemon (and so its workers) may run on one CPU only: spreading requests over two
    // Python workers would buy no parallelism there, only process switches.
    let cpu = first_allowed_cpu().expect("no Cpus_allowed_list in /proc/self/status");
    let d = Daemon::start_cmd(TWO_BY_TWO, |_| {}, true, &[], &["taskset", "-c", &cpu]);
    let metrics = metrics_addr(&d);
    let both = wait_ready(metrics, 2);
    let first = pid_of(&d, "/crashy/ok");
    for _ in 0..4 {
        assert_eq!(pid_of(&d, "/crashy/ok"), first, "one request at a time: the same worker");
    }
    // A hung request holds one of its two threads: the next still goes to it...
    let hung = in_background(&d, "/crashy/hang");
    wait_for_worker_requests(metrics, "the first hung request to take a socket", 6);
    assert_eq!(pid_of(&d, "/crashy/ok"), first, "it has a free thread");
    // ...and so does a second hung one (were it spread, the next request would find the
    // first worker's other thread free)...
    let hung_too = in_background(&d, "/crashy/hang");
    wait_for_worker_requests(metrics, "the second hung request to take a socket", 8);
    // ...after which the first worker is full, and the other one serves.
    let other = pid_of(&d, "/crashy/ok");
    assert_ne!(other, first, "the first worker's threads are both hung");
    assert!(both.contains(&other) && both.contains(&first), "{both:?}: {first}, {other}");
    // The first to time out kills the worker both hang in: the other then fails with it
    // (502), or times out too (504).
    let statuses = [hung.join().unwrap(), hung_too.join().unwrap()];
    assert!(statuses.contains(&504) && statuses.iter().all(|s| [502, 504].contains(s)));
    assert_eq!(killed_for_timeout(&d), first, "the hung requests were not both in {first}");
    let log = d.log();
    assert!(log.contains("/crashy: 2 worker processes and 1 CPU(s) to run them"), "{log}");
}

/// Waits until the status page at `metrics` lists `n` workers that have loaded their app
/// (they report it once ready); their pids.
fn wait_ready(metrics: std::net::SocketAddr, n: usize) -> BTreeSet<u32> {
    wait_for(&format!("{n} ready workers"), RESTART, || {
        let (_, text) = crate::harness::get_from(metrics, "/status.json");
        let status: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let ready: BTreeSet<u32> = status["aliases"][0]["workers"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|w| w["plugins"].as_array().is_some_and(|p| !p.is_empty()))
            .filter_map(|w| w["pid"].as_u64().and_then(|p| u32::try_from(p).ok()))
            .collect();
        if ready.len() == n { Ok(ready) } else { Err(text) }
    })
}

/// The worker the daemon killed for a request past its timeout (the first it logged).
fn killed_for_timeout(d: &Daemon) -> u32 {
    wait_for("a worker killed for a timeout", RESTART, || {
        let log = d.log();
        let marker = "answered 504 and killed its worker process ";
        let Some((_, after)) = log.split_once(marker) else { return Err(log) };
        let pid: String = after.chars().take_while(char::is_ascii_digit).collect();
        pid.parse().map_err(|e| format!("{e}: {log}"))
    })
}

#[test]
fn with_a_cpu_per_worker_requests_in_flight_spread_over_the_workers() {
    if std::thread::available_parallelism().map_or(0, std::num::NonZero::get) < 2 {
        eprintln!("skipped: this machine gives the tests one CPU, so the daemon packs");
        return;
    }
    let d = Daemon::start(TWO_BY_TWO);
    let metrics = metrics_addr(&d);
    wait_ready(metrics, 2);
    let hung = in_background(&d, "/crashy/hang");
    wait_for_worker_requests(metrics, "the hung request to take a socket", 1);
    // The next requests go to the least busy worker: not the one the hung request holds.
    let a = pid_of(&d, "/crashy/ok");
    assert_eq!(pid_of(&d, "/crashy/ok"), a, "the idle worker, its socket given back last");
    assert_eq!(hung.join().unwrap(), 504);
    assert_ne!(killed_for_timeout(&d), a, "the requests went to the worker that hung");
}

/// A process's time slice in ns, as `/proc/PID/sched` shows it (kernels with EEVDF and
/// scheduler statistics only).
fn slice_of(pid: u32) -> Option<u64> {
    let sched = read_lossy(Path::new(&format!("/proc/{pid}/sched")));
    sched
        .lines()
        .find_map(|l| l.strip_prefix("se.slice")?.trim().strip_prefix(':')?.trim().parse().ok())
}

#[test]
fn the_daemon_runs_with_a_longer_time_slice_than_its_workers() {
    let d = Daemon::start(TWO_BY_TWO);
    // Ready, so each has reset its slice (the first thing it does).
    let workers = wait_ready(metrics_addr(&d), 2);
    let Some(daemon) = slice_of(d.pid()) else {
        eprintln!("skipped: this kernel shows no se.slice in /proc/PID/sched");
        return;
    };
    // Linux 6.12 and later honour it; older ones keep their default everywhere.
    let release = read_lossy(Path::new("/proc/sys/kernel/osrelease"));
    let mut version = release.split(['.', '-']).map(|n| n.trim().parse::<u32>().unwrap_or(0));
    if (version.next().unwrap_or(0), version.next().unwrap_or(0)) < (6, 12) {
        eprintln!("skipped: Linux {release} has no per-task slice");
        return;
    }
    assert_eq!(daemon, 10_000_000, "the daemon's slice");
    for w in workers {
        let worker = slice_of(w).expect("the worker's se.slice");
        assert!(worker < daemon, "worker {w}: slice {worker} ns, the daemon's {daemon} ns");
    }
}

/// A WSGI script that says what process serves it: working directory, umask, LANG,
/// LC_ALL, the first word of its command line, pid.
const WHO: &str = "import os\n\
def application(environ, start_response):\n\
\x20   mask = os.umask(0)\n\
\x20   os.umask(mask)\n\
\x20   with open('/proc/self/cmdline', 'rb') as f:\n\
\x20       argv0 = f.read().split(b'\\0')[0].decode()\n\
\x20   body = '|'.join([os.getcwd(), '%04o' % mask, os.environ.get('LANG', '-'),\n\
\x20                    os.environ.get('LC_ALL', '-'), argv0, str(os.getpid())])\n\
\x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
\x20   return [body.encode()]\n";

#[test]
fn worker_options_as_wsgidaemonprocess_sets_them() {
    let yaml = "\
handlers:
  - suffix: .py
    plugin: {wsgi}
aliases:
  - url: /set
    path: py/who.py
    isolation: process
    processes: 1
    home: home
    umask: \"0077\"
    lang: C.UTF-8
    locale: C
    display_name: \"(wsgi:who)\"
    inactivity_timeout: 1s
  - url: /aged
    path: py/who.py
    isolation: process
    processes: 1
    restart_interval: 1s
";
    let d = Daemon::start_with(yaml, |root| {
        std::fs::create_dir_all(root.join("py")).unwrap();
        std::fs::create_dir_all(root.join("home")).unwrap();
        std::fs::write(root.join("py/who.py"), WHO).unwrap();
    });
    let who = |url: &str| {
        let text = d.get(url).text();
        let parts: Vec<String> = text.split('|').map(str::to_owned).collect();
        assert_eq!(parts.len(), 6, "{text}");
        parts
    };
    let first = who("/set");
    let home = std::fs::canonicalize(d.path("home")).unwrap();
    assert_eq!(
        first[..5],
        [
            home.display().to_string(),
            "0077".into(),
            "C.UTF-8".into(),
            "C".into(),
            "(wsgi:who)".into()
        ]
    );
    // Idle past inactivity_timeout: replaced, by a worker with the same settings.
    wait_for("the idle worker's replacement", Duration::from_secs(20), || {
        let log = d.log();
        if log.contains("served no request for its inactivity_timeout of 1s") {
            Ok(())
        } else {
            Err(log)
        }
    });
    let second = who("/set");
    assert_ne!(second[5], first[5], "the same worker served after its inactivity_timeout");
    assert_eq!(second[..5], first[..5]);
    // Busy or not, a worker is replaced once it has run restart_interval.
    let aged = who("/aged");
    wait_for("the aged worker's replacement", Duration::from_secs(20), || {
        let now = who("/aged");
        if now[5] != aged[5] { Ok(()) } else { Err(now.join("|")) }
    });
    assert!(d.log().contains("it has run for its restart_interval of 1s"), "{}", d.log());
    // Its defaults: the daemon's umask and its usual name.
    let defaults = who("/aged");
    assert_ne!(defaults[1], "0077");
    assert!(defaults[4].ends_with("gatehouse"), "{defaults:?}");
}

#[test]
fn a_worker_whose_interpreter_is_held_past_deadlock_timeout_is_replaced() {
    let yaml = "\
handlers:
  - suffix: .py
    plugin: {wsgi}
aliases:
  - url: /py
    path: py/hold.py
    isolation: process
    processes: 1
    deadlock_timeout: 1s
";
    // ctypes.PyDLL calls keep the GIL: libc's sleep(30) through it holds the interpreter.
    let script = "import ctypes\n\
def application(environ, start_response):\n\
\x20   if environ['PATH_INFO'] == '/hold':\n\
\x20       ctypes.PyDLL(None).sleep(30)\n\
\x20   start_response('200 OK', [('Content-Type', 'text/plain')])\n\
\x20   return [b'ok']\n";
    let d = Daemon::start_with(yaml, |root| {
        std::fs::create_dir_all(root.join("py")).unwrap();
        std::fs::write(root.join("py/hold.py"), script).unwrap();
    });
    assert_eq!(d.get("/py/ok").text(), "ok");
    // 502: its worker ended (the sleep itself would have ended in a 200).
    let held = d.get("/py/hold");
    assert_eq!(held.status, 502, "{held}");
    // Its last words reach the log (from its stderr, relayed apart from the reply).
    wait_for("the deadlock line", Duration::from_secs(10), || {
        let log = d.log();
        if log.contains("past its deadlock_timeout of 1000 ms") { Ok(()) } else { Err(log) }
    });
    // A new worker serves.
    wait_for("a new worker", Duration::from_secs(20), || {
        let r = d.get("/py/ok");
        if r.status == 200 { Ok(()) } else { Err(format!("{r}")) }
    });
}

#[test]
fn reload_and_reopen_signals_sent_to_every_process_spare_the_workers() {
    let yaml = "\
aliases:
  - url: /crashy
    path: {crashy}
    isolation: process
    processes: 1
";
    let d = Daemon::start(yaml);
    let worker = *wait_workers(&d, "/crashy", 1).iter().next().unwrap();
    assert_eq!(pid_of(&d, "/crashy/ok"), worker);
    // As `systemctl kill -s HUP` or a logrotate script's `killall -USR1 gatehouse` would.
    for signal in ["-HUP", "-USR1"] {
        let sent = std::process::Command::new("kill")
            .args([signal, &worker.to_string()])
            .status()
            .unwrap();
        assert!(sent.success(), "kill {signal} {worker}");
        // The worker runs this request after the signal is delivered: it must be alive.
        assert_eq!(pid_of(&d, "/crashy/ok"), worker, "after {signal}");
    }
    assert_eq!(workers(&d, "/crashy"), BTreeSet::from([worker]));
    let log = d.log();
    assert!(!log.contains("died of signal"), "{log}");
}
