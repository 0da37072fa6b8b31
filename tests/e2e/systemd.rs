//! Running as a systemd service, over the real protocols: a unix datagram socket as
//! `NOTIFY_SOCKET` receives the notifications in order, a socket passed by
//! `systemd-socket-activate` (LISTEN_FDS) serves requests, SIGTERM during a slow request lets
//! it finish and the process exit 0, `systemd-analyze verify` accepts both units, and the
//! .debs hold the expected files with their modes, a stripped binary and its debug symbols,
//! and their `Depends` (`debian.rs` installs them under a real systemd).

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::{Daemon, artifacts, read_lossy, wait_for};

/// A notify socket in its own temp folder.
struct Notify {
    _dir: tempfile::TempDir,
    path: PathBuf,
    sock: UnixDatagram,
}

impl Notify {
    fn new() -> Notify {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        Notify { _dir: dir, path, sock }
    }

    /// The next message, skipping watchdog pings unless `pings`.
    fn next(&self, pings: bool) -> String {
        let mut buf = [0u8; 4096];
        loop {
            let n = self.sock.recv(&mut buf).expect("a notification within 10 s");
            let text = String::from_utf8_lossy(&buf[..n]).into_owned();
            if pings || text != "WATCHDOG=1" {
                return text;
            }
        }
    }
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

#[test]
fn notifications_arrive_in_order_ready_reloading_ready_stopping() {
    let notify = Notify::new();
    let socket = notify.path.to_str().unwrap();
    let mut d = Daemon::start_env(
        "aliases:\n  - url: /a\n    path: {hello}\n  - url: /wsgi/\n    path: apps/\n",
        |_| {},
        true,
        &[("NOTIFY_SOCKET", socket), ("WATCHDOG_USEC", "400000")],
    );
    let ready = notify.next(false);
    assert!(
        ready.starts_with(
            "READY=1\nSTATUS=serving 2 aliases (1 groups), 1 plugins loaded on 127.0.0.1:"
        ),
        "{ready:?}"
    );
    // The watchdog: pinged (every 200 ms) while the daemon answers itself.
    let t = Instant::now();
    assert_eq!(notify.next(true), "WATCHDOG=1");
    assert!(t.elapsed() < Duration::from_secs(2));
    d.signal("HUP");
    let reloading = notify.next(false);
    let usec = reloading
        .strip_prefix("RELOADING=1\nMONOTONIC_USEC=")
        .unwrap_or_else(|| panic!("{reloading:?}"));
    assert!(usec.parse::<u64>().unwrap() > 0);
    let ready = notify.next(false);
    assert!(ready.starts_with("READY=1\nSTATUS=serving 2 aliases"), "{ready:?}");
    // An invalid edit: RELOADING, then READY with a status that says it was refused.
    d.write_config("aliases:\n  - url: /a\n    pth: x\n");
    assert!(notify.next(false).starts_with("RELOADING=1"));
    let ready = notify.next(false);
    assert!(ready.contains("the last edit was refused"), "{ready:?}");
    let status = d.terminate();
    assert!(status.success(), "{status}");
    assert_eq!(notify.next(false), "STOPPING=1\nSTATUS=stopping: finishing requests in flight");
}

#[test]
fn the_watchdog_is_pinged_while_every_connection_slot_is_taken() {
    let notify = Notify::new();
    let socket = notify.path.to_str().unwrap();
    // One connection per HTTP worker, idle clients kept for a minute: the listener is full
    // and a new connection waits in the accept backlog. That is load: no restart.
    let d = Daemon::start_env(
        "max_connections: 1\nheader_timeout: 60s\naliases:\n  - url: /a\n    path: {hello}\n",
        |_| {},
        true,
        &[("NOTIFY_SOCKET", socket), ("WATCHDOG_USEC", "2000000")],
    );
    assert!(notify.next(false).starts_with("READY=1"));
    let idle: Vec<std::net::TcpStream> =
        (0..64).map(|_| std::net::TcpStream::connect(d.addr).expect("connect (idle)")).collect();
    // A request cannot get through now.
    let mut probe = std::net::TcpStream::connect(d.addr).unwrap();
    probe.set_read_timeout(Some(Duration::from_millis(1500))).unwrap();
    std::io::Write::write_all(&mut probe, b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = [0u8; 64];
    assert!(
        std::io::Read::read(&mut probe, &mut buf).is_err(),
        "the listener still took a connection: the test does not fill it"
    );
    // Pinged every second meanwhile (the interval is 2 s).
    let t = Instant::now();
    let mut pings = 0;
    while t.elapsed() < Duration::from_secs(6) {
        if notify.next(true) == "WATCHDOG=1" {
            pings += 1;
        }
    }
    assert!(pings >= 3, "{pings} pings in 6 s while the listener was full:\n{}", d.log());
    drop(idle);
    assert!(!d.log().contains("not pinging systemd"), "{}", d.log());
}

#[test]
fn sockets_passed_by_systemd_are_served_instead_of_listen() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let addr = format!("127.0.0.1:{port}");
    // systemd-socket-activate starts the daemon on the first connection (as systemd does
    // with a socket unit): make one, and keep its request for when the daemon is up.
    let first = {
        let addr = addr.clone();
        std::thread::spawn(move || {
            let target: std::net::SocketAddr = addr.parse().unwrap();
            let deadline = Instant::now() + Duration::from_secs(20);
            while std::net::TcpStream::connect(target).is_err() {
                assert!(Instant::now() < deadline, "systemd-socket-activate never listened");
                std::thread::sleep(Duration::from_millis(20));
            }
            crate::harness::get_from(target, "/a")
        })
    };
    // `listen` names another address: the passed socket wins.
    let d = Daemon::start_cmd(
        "listen: [\"127.0.0.1:1\"]\naliases:\n  - url: /a\n    path: {hello}\n",
        |_| {},
        false,
        &[],
        &["systemd-socket-activate", "-l", &addr],
    );
    assert_eq!(d.addr.to_string(), addr);
    assert_eq!(first.join().unwrap(), (200, "Hello World!".to_owned()));
    assert_eq!(d.get("/a").text(), "Hello World!");
    // An edit of `listen` does not take the socket away.
    d.write_config("listen: [\"127.0.0.1:2\"]\naliases:\n  - url: /a\n    path: {hello}\n");
    wait_for("the warning about listen", Duration::from_secs(5), || {
        if d.log().contains("the sockets come from systemd's socket unit") {
            Ok(())
        } else {
            Err(d.log())
        }
    });
    assert_eq!(d.get("/a").text(), "Hello World!");
}

#[test]
fn sigterm_lets_a_slow_request_finish_then_runs_shutdown_and_exits_0() {
    let yaml =
        "aliases:\n  - url: /p\n    path: {panicky}\n    env: {PANICKY_MARKS: var/marks.txt}\n";
    let mut d = Daemon::start_with(yaml, |root| std::fs::create_dir_all(root.join("var")).unwrap());
    let addr = d.addr;
    let slow = std::thread::spawn(move || crate::harness::get_from(addr, "/p/sleep/1500"));
    let marks = d.path("var/marks.txt");
    wait_for("the slow request to reach the app", Duration::from_secs(10), || {
        let m = read_lossy(&marks);
        if m.contains("sleep /p\n") { Ok(()) } else { Err(m) }
    });
    let status = d.terminate();
    assert_eq!(slow.join().unwrap(), (200, "slept".to_owned()), "the request in flight was cut");
    assert!(status.success(), "exit {status}:\n{}", d.log());
    assert_eq!(read_lossy(&marks), "init /p\nsleep /p\nwoke /p\nshutdown /p\n");
    assert!(d.log().contains("SIGTERM: stopping"), "{}", d.log());
}

#[test]
fn both_units_pass_systemd_analyze_verify() {
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for unit in ["gatehouse.service", "gatehouse.socket"] {
        // The unit names /usr/bin/gatehouse; verify checks that the binary exists, so point
        // it at the one just built.
        let text = std::fs::read_to_string(repo_root().join("systemd").join(unit)).unwrap();
        let text = text.replace("/usr/bin/gatehouse", &artifacts().gatehouse.display().to_string());
        std::fs::write(dir.path().join(unit), text).unwrap();
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(dir.path().join("gatehouse.service"))
        .arg(dir.path().join("gatehouse.socket"))
        .output()
        .unwrap();
    let said =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify:\n{said}");
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20"])
        .arg(dir.path().join("gatehouse.service"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exposure above 2.0:\n{said}");
    let overall = said.lines().last().unwrap_or_default();
    assert!(overall.contains("Overall exposure level for gatehouse.service: 1."), "{overall}");
}

#[test]
fn the_deb_holds_the_daemon_units_config_user_and_folders() {
    if let Some(why) = crate::debian::cargo_deb_missing() {
        eprintln!("skipped: {why}");
        return;
    }
    let a = artifacts();
    let debs = crate::debian::debs();
    let deb = &debs.gatehouse;
    let list = Command::new("dpkg-deb").arg("-c").arg(deb).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    for (mode, path) in [
        ("-rwxr-xr-x", "./usr/bin/gatehouse"),
        ("-rw-r--r--", "./lib/systemd/system/gatehouse.service"),
        ("-rw-r--r--", "./lib/systemd/system/gatehouse.socket"),
        ("-rw-r-----", "./etc/gatehouse/hosting.yaml"),
        ("-rw-r--r--", "./usr/lib/sysusers.d/gatehouse.conf"),
        ("-rw-r--r--", "./usr/lib/tmpfiles.d/gatehouse.conf"),
        ("-rw-r--r--", "./usr/share/man/man1/gatehouse.1.gz"),
        ("-rw-r--r--", "./usr/share/doc/gatehouse/changelog.Debian.gz"),
        ("-rw-r--r--", "./usr/share/doc/gatehouse/copyright"),
        ("-rw-r--r--", "./usr/share/doc/gatehouse/examples/per-app-users.conf"),
        ("-rw-r--r--", "./usr/share/doc/gatehouse/README.md"),
        // The plugin SDK, for `gatehouse new`.
        ("-rw-r--r--", "./usr/share/gatehouse/sdk/gatehouse-app/Cargo.toml"),
        ("-rw-r--r--", "./usr/share/gatehouse/sdk/gatehouse-abi/include/gatehouse.h"),
    ] {
        assert!(
            list.lines().any(|l| l.starts_with(mode) && l.ends_with(path)),
            "{path} with {mode} not in the package:\n{list}"
        );
    }
    let field = |deb: &Path, name: &str| crate::debian::control_field(deb, name);
    assert_eq!(field(deb, "Provides"), "gatehouse-abi-1");
    let depends = field(deb, "Depends");
    assert!(depends.contains("libc6") && depends.contains("systemd"), "Depends: {depends}");
    // The WSGI bridge's package: the plugin, and the Python it was linked with.
    let wsgi = &debs.wsgi;
    let depends = field(wsgi, "Depends");
    assert!(
        depends.contains("gatehouse-abi-1") && depends.contains("libpython3"),
        "gatehouse-wsgi Depends: {depends}"
    );
    let list = Command::new("dpkg-deb").arg("-c").arg(wsgi).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout).into_owned();
    assert!(
        list.lines()
            .any(|l| l.starts_with("-rw-r--r--") && l.ends_with("./usr/lib/gatehouse/libwsgi.so")),
        "{list}"
    );
    let scratch = tempfile::tempdir().unwrap();
    let x = Command::new("dpkg-deb").arg("-R").arg(deb).arg(scratch.path()).status().unwrap();
    assert!(x.success());
    let root = scratch.path();
    // Stripped: no debug sections in the binary; they are in a file named by its build id.
    let sections = Command::new("readelf")
        .args(["-S", "-n", "--wide"])
        .arg(root.join("usr/bin/gatehouse"))
        .output()
        .unwrap();
    let sections = String::from_utf8_lossy(&sections.stdout).into_owned();
    assert!(!sections.contains(".debug_info"), "the packaged binary is not stripped");
    let build_id = sections
        .lines()
        .find_map(|l| l.split("Build ID: ").nth(1))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no build id:\n{sections}"))
        .to_owned();
    let debug_file =
        format!("/usr/lib/debug/.build-id/{}/{}.debug", &build_id[..2], &build_id[2..]);
    let symbols = debs
        .all
        .iter()
        .map(|p| {
            let out = Command::new("dpkg-deb").arg("-c").arg(p).output().unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .collect::<String>();
    assert!(symbols.contains(&debug_file), "no {debug_file} in the packages:\n{symbols}");
    let tmpfiles = read_lossy(&root.join("usr/lib/tmpfiles.d/gatehouse.conf"));
    assert!(
        tmpfiles.contains("d /var/log/gatehouse       0750 gatehouse gatehouse -"),
        "{tmpfiles}"
    );
    assert!(
        tmpfiles.contains("d /var/lib/gatehouse/apps  0755 root      root      -"),
        "{tmpfiles}"
    );
    assert!(read_lossy(&root.join("usr/lib/sysusers.d/gatehouse.conf")).contains("u gatehouse -"));
    let postinst = read_lossy(&root.join("DEBIAN/postinst"));
    assert!(
        postinst.contains("systemd-sysusers gatehouse.conf")
            && postinst.contains("systemd-tmpfiles --create"),
        "{postinst}"
    );
    assert!(read_lossy(&root.join("DEBIAN/conffiles")).contains("/etc/gatehouse/hosting.yaml"));
    // The packaged configuration is valid as shipped (with its folders moved under a temp
    // root, since this machine has no /var/lib/gatehouse).
    let shipped = read_lossy(&root.join("etc/gatehouse/hosting.yaml"));
    let fake = tempfile::tempdir().unwrap();
    let moved = shipped
        .replace(" /var/", &format!(" {}/var/", fake.path().display()))
        .replace(" /run/", &format!(" {}/run/", fake.path().display()));
    assert_ne!(moved, shipped);
    std::fs::create_dir_all(fake.path().join("var/lib/gatehouse/apps")).unwrap();
    std::fs::write(fake.path().join("hosting.yaml"), &moved).unwrap();
    let check = Command::new(&a.gatehouse)
        .args(["routes", "--config"])
        .arg(fake.path().join("hosting.yaml"))
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stderr);
    assert!(check.status.success() && !said.contains("error"), "{said}");
    // Its commented Python example, enabled as the file says (`sed -E 's/^#(handlers:|  )/\1/'`):
    // a `.py` handler and the /py/ alias.
    let enabled: String = moved
        .lines()
        .map(|l| match l.strip_prefix('#') {
            Some(rest) if rest.starts_with("handlers:") || rest.starts_with("  ") => rest,
            _ => l,
        })
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(shipped.contains("'s/^#(handlers:|  )/\\1/'"), "the file's own command changed");
    std::fs::create_dir_all(fake.path().join("var/lib/gatehouse/python")).unwrap();
    std::fs::write(fake.path().join("hosting.yaml"), &enabled).unwrap();
    let routes = Command::new(&a.gatehouse)
        .args(["routes", "--config"])
        .arg(fake.path().join("hosting.yaml"))
        .arg("/py/sample.py")
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&routes.stdout),
        String::from_utf8_lossy(&routes.stderr)
    );
    assert!(routes.status.success() && said.contains("/usr/lib/gatehouse/libwsgi.so"), "{said}");
}

/// The syscalls of `systemd-analyze syscall-filter GROUP`, nested groups expanded.
fn syscalls_of(group: &str) -> std::collections::BTreeSet<String> {
    let out = Command::new("systemd-analyze").args(["syscall-filter", group]).output().unwrap();
    assert!(out.status.success(), "systemd-analyze syscall-filter {group}");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut calls = std::collections::BTreeSet::new();
    // The first line names the group itself; the indented ones are its members.
    for member in
        text.lines().skip(1).map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        if member.starts_with('@') {
            calls.extend(syscalls_of(member));
        } else {
            calls.insert(member.to_owned());
        }
    }
    calls
}

#[test]
fn the_unit_lifts_the_open_file_limit_and_its_filter_lets_the_daemon_raise_its_own() {
    let unit = std::fs::read_to_string(repo_root().join("systemd/gatehouse.service")).unwrap();
    let limit = unit
        .lines()
        .find_map(|l| l.strip_prefix("LimitNOFILE="))
        .and_then(|v| v.rsplit(':').next()?.parse::<u64>().ok());
    assert!(limit.is_some_and(|n| n >= 65_536), "LimitNOFILE (at least 65536) not set:\n{unit}");
    if Command::new("systemd-analyze").arg("--version").output().is_err() {
        eprintln!("skipped: systemd-analyze is not installed");
        return;
    }
    // The daemon raises its soft limit with prlimit64 (rustix's setrlimit): the filter's
    // allowed groups must hold it and none of its denied groups.
    let (mut allowed, mut denied) = (false, false);
    for filter in unit.lines().filter_map(|l| l.strip_prefix("SystemCallFilter=")) {
        let (deny, list) = match filter.strip_prefix('~') {
            Some(list) => (true, list),
            None => (false, filter),
        };
        for entry in list.split_whitespace() {
            let holds = if entry.starts_with('@') {
                syscalls_of(entry).contains("prlimit64")
            } else {
                entry == "prlimit64"
            };
            if deny {
                denied |= holds;
            } else {
                allowed |= holds;
            }
        }
    }
    assert!(allowed && !denied, "the unit's SystemCallFilter blocks prlimit64:\n{unit}");
}
