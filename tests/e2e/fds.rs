//! The descriptor budget: `serve` raises its soft open file limit to the hard one, and under
//! a small hard limit clamps `max_connections` so that a crowd of idle connections cannot
//! take every descriptor: the daemon keeps serving.

use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::harness::{Daemon, read_lossy, try_exchange, wait_for};

/// How many descriptors process `pid` has open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// The "Max open files" line of process `pid`'s limits.
fn nofile_line(pid: u32) -> String {
    let limits = read_lossy(Path::new(&format!("/proc/{pid}/limits")));
    limits.lines().find(|l| l.starts_with("Max open files")).unwrap_or_default().to_owned()
}

const HELLO: &str = "aliases:\n  - url: /a\n    path: {hello}\n";

#[test]
fn serve_raises_a_low_soft_open_file_limit_to_the_hard_one() {
    let d = Daemon::start_cmd(HELLO, |_| {}, true, &[], &["prlimit", "--nofile=64:4096", "--"]);
    assert!(
        d.log().contains("open file limit raised from 64 to 4096 (the hard limit)"),
        "{}",
        d.log()
    );
    let line = nofile_line(d.pid());
    assert_eq!(line.split_whitespace().collect::<Vec<_>>()[3..5], ["4096", "4096"], "{line}");
    assert_eq!(d.get("/a").text(), "Hello World!");
}

#[test]
fn under_a_small_hard_limit_idle_connections_leave_descriptors_and_requests_are_served() {
    const LIMIT: usize = 200;
    let yaml = format!("header_timeout: 2s\n{HELLO}");
    let mut d = Daemon::start_cmd(&yaml, |_| {}, true, &[], &["prlimit", "--nofile=200:200", "--"]);
    let log = d.log();
    assert!(
        log.contains("max_connections is 10000 per HTTP worker thread and listener, but the open file limit (RLIMIT_NOFILE) is 200")
            && log.contains("LimitNOFILE=65536"),
        "{log}"
    );
    assert_eq!(log.matches("max_connections is 10000").count(), 1, "{log}");
    // 300 connections that send nothing: more than the daemon's descriptors.
    let idle: Vec<TcpStream> =
        (0..300).map(|_| TcpStream::connect(d.addr).expect("connect (idle)")).collect();
    // Until the first of them time out (header_timeout), the daemon holds what it accepted:
    // never so many that nothing is left for logs, spooling or workers.
    let t = Instant::now();
    let mut most = 0;
    while t.elapsed() < Duration::from_millis(1500) {
        most = most.max(open_fds(d.pid()));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(most > 40, "the idle connections were not accepted ({most} fds)");
    assert!(
        most <= LIMIT - 64,
        "the daemon held {most} of its {LIMIT} descriptors for idle connections:\n{}",
        d.log()
    );
    // A request on a fresh connection is answered once the idle ones time out (408).
    let raw = format!("GET /a HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", d.addr);
    let reply = wait_for("a reply on a fresh connection", Duration::from_secs(30), || {
        try_exchange(d.addr, raw.as_bytes()).map_err(|e| e.to_string())
    });
    reply.expect_status(200);
    assert_eq!(reply.text(), "Hello World!");
    drop(idle);
    assert!(!d.log().contains("Too many open files"), "{}", d.log());
    let status = d.terminate();
    assert!(status.success(), "exit {status}:\n{}", d.log());
}
