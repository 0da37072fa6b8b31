//! Hardening: what a worker process gets from the daemon (its own alias's settings only, a
//! minimal environment, no descriptor of the daemon's, the supplementary groups of its
//! user), and files the daemon writes as root that others could have swapped for links: an
//! upload handed to a worker's user, a log file.

use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::Path;
use std::time::Duration;

use crate::harness::{Daemon, multipart, read_lossy, wait_until};
use crate::isolation::{is_root, pid_of, uid_of};

/// Whether the readable memory of process `pid` holds `needle`.
fn memory_holds(pid: u32, needle: &[u8]) -> bool {
    use std::io::{Read as _, Seek as _, SeekFrom};
    let maps = read_lossy(Path::new(&format!("/proc/{pid}/maps")));
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).expect("open /proc/PID/mem");
    let mut buf = vec![0u8; 1 << 20];
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else { continue };
        if !perms.starts_with('r') || line.ends_with("[vvar]") || line.ends_with("[vsyscall]") {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else { continue };
        let (Ok(start), Ok(end)) = (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        else {
            continue;
        };
        // In pieces that overlap by the needle's length, so no match is cut in two.
        let mut at = start;
        while at < end {
            let len = usize::try_from((end - at).min(buf.len() as u64)).unwrap();
            if mem.seek(SeekFrom::Start(at)).is_err() || mem.read_exact(&mut buf[..len]).is_err() {
                break;
            }
            if buf[..len].windows(needle.len()).any(|w| w == needle) {
                return true;
            }
            if at + len as u64 >= end {
                break;
            }
            at += (len - needle.len()) as u64;
        }
    }
    false
}

#[test]
fn a_worker_holds_no_other_aliases_settings() {
    const SECRET: &str = "e2e-secret-of-b-7f3a91";
    let yaml = format!(
        "\
aliases:
  - url: /crashy
    path: {{crashy}}
    isolation: process
    processes: 1
  - url: /b
    path: {{hello}}
    env: {{B_SECRET: {SECRET}}}
"
    );
    let d = Daemon::start(&yaml);
    let pid = pid_of(&d, "/crashy/ok");
    assert_eq!(d.get("/b").text(), "Hello World!");
    // (The scan finds it where it is: the daemon holds the whole file.)
    assert!(memory_holds(d.pid(), SECRET.as_bytes()), "the scan is broken");
    assert!(
        !memory_holds(pid, SECRET.as_bytes()),
        "the worker of /crashy ({pid}) holds /b's env value"
    );
}

#[test]
fn a_worker_gets_a_minimal_environment_and_no_descriptor_of_the_daemon() {
    let yaml = "\
aliases:
  - url: /crashy
    path: {crashy}
    isolation: process
    processes: 1
    threads: 1
";
    let d = Daemon::start_env(
        yaml,
        |_| {},
        true,
        &[("E2E_DAEMON_SECRET", "s3cret-in-the-daemon-env"), ("LANG", "C.UTF-8"), ("TZ", "UTC")],
    );
    let pid = pid_of(&d, "/crashy/ok");
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap();
    let vars: Vec<String> =
        environ.split(|&b| b == 0).map(|v| String::from_utf8_lossy(v).into_owned()).collect();
    let has = |prefix: &str| vars.iter().any(|v| v.starts_with(prefix));
    assert!(!has("E2E_DAEMON_SECRET="), "the daemon's environment reached the worker: {vars:?}");
    for wanted in ["PATH=", "LANG=C.UTF-8", "TZ=UTC", "GATEHOUSE_WORKER_CONNS="] {
        assert!(has(wanted), "no {wanted} in {vars:?}");
    }
    // The daemon's stderr (kept aside by the daemon) is not open in the worker, nor is any
    // other descriptor it did not open itself (all of those are close-on-exec, its sockets
    // included once adopted) but its stdin, stdout and stderr.
    let log = d.path("daemon.log");
    for (n, flags, target) in descriptors(pid) {
        assert_ne!(target, log, "worker fd {n} is the daemon's stderr");
        assert!(
            n <= 2 || flags & O_CLOEXEC != 0,
            "worker fd {n} ({}) was inherited",
            target.display()
        );
    }
    // Nor can it be in any process the daemon or an app in it starts: every descriptor the
    // daemon opened is close-on-exec (those it inherited itself, as this test's own, aside).
    let inherited: Vec<u32> = descriptors(std::process::id())
        .into_iter()
        .filter(|&(_, flags, _)| flags & O_CLOEXEC == 0)
        .map(|(n, _, _)| n)
        .collect();
    for (n, flags, target) in descriptors(d.pid()) {
        assert!(
            n <= 2 || inherited.contains(&n) || flags & O_CLOEXEC != 0,
            "the daemon's fd {n} ({}) is inherited by what it starts",
            target.display()
        );
    }
}

/// `O_CLOEXEC` in `/proc/PID/fdinfo/N`'s `flags` (octal).
const O_CLOEXEC: u32 = 0o2_000_000;

/// The open descriptors of process `pid`: number, flags, what they are.
fn descriptors(pid: u32) -> Vec<(u32, u32, std::path::PathBuf)> {
    let mut out = Vec::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap().flatten() {
        let Ok(n) = fd.file_name().to_string_lossy().parse::<u32>() else { continue };
        let info = read_lossy(&fd.path());
        let Some(flags) = info.lines().find_map(|l| l.strip_prefix("flags:")) else { continue };
        let flags = u32::from_str_radix(flags.trim(), 8).unwrap();
        let target = std::fs::read_link(format!("/proc/{pid}/fd/{n}")).unwrap_or_default();
        out.push((n, flags, target));
    }
    out
}

/// The supplementary groups of process `pid` (`Groups:` in its status).
fn groups_of(pid: u32) -> Vec<u32> {
    let status = read_lossy(Path::new(&format!("/proc/{pid}/status")));
    let line = status.lines().find(|l| l.starts_with("Groups:")).expect("Groups: line");
    let mut groups: Vec<u32> =
        line["Groups:".len()..].split_whitespace().map(|g| g.parse().unwrap()).collect();
    groups.sort_unstable();
    groups
}

/// A public daemon whose `plugins/` holds crashy and probe, readable by every user.
fn start_public_with_plugins(yaml: &str, prepare: impl FnOnce(&Path)) -> Daemon {
    Daemon::start_public(yaml, |root| {
        crate::harness::public_plugins(root, &["crashy", "probe"]);
        prepare(root);
    })
}

#[test]
fn a_worker_has_the_supplementary_groups_of_its_user() {
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
";
    let d = start_public_with_plugins(yaml, |_| {});
    let pid = pid_of(&d, "/crashy/ok");
    assert_eq!(uid_of(pid), Some(65534));
    // What initgroups gives `nobody`: its groups in the group database, and its primary one.
    let id = std::process::Command::new("id").args(["-G", "nobody"]).output().unwrap();
    let mut want: Vec<u32> = String::from_utf8_lossy(&id.stdout)
        .split_whitespace()
        .map(|g| g.parse().unwrap())
        .collect();
    want.sort_unstable();
    let groups = groups_of(pid);
    assert!(!groups.contains(&0), "worker {pid} is in group 0: {groups:?}");
    assert_eq!(groups, want, "worker {pid}: not the groups of nobody");
}

#[test]
fn an_upload_swapped_for_a_link_does_not_give_the_target_away() {
    if !is_root() {
        eprintln!("skipped: handing uploads to another user needs a daemon started as root");
        return;
    }
    // The workers' user may write upload_dir: it may swap a spooled file for a link to
    // a file of root's while the body still arrives.
    let yaml = "\
cache_dir: cache
upload_dir: spool
aliases:
  - url: /probe
    path: plugins/libprobe.so
    isolation: process
    processes: 1
    user: nobody
";
    let d = start_public_with_plugins(yaml, |root| {
        std::fs::create_dir(root.join("spool")).unwrap();
        std::os::unix::fs::chown(root.join("spool"), Some(65534), Some(65534)).unwrap();
        std::fs::write(root.join("victim"), "root's secret\n").unwrap();
        std::fs::set_permissions(root.join("victim"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
    });
    let victim = d.path("victim");
    let spool = d.path("spool");
    // A worker to hand the upload to, before the body starts.
    assert_eq!(d.get("/probe/debug-log?msg=x").status, 200);

    let body = multipart(
        "b0undary",
        &[(
            "Content-Disposition: form-data; name=\"f\"; filename=\"x.txt\"",
            b"first half|second half",
        )],
    );
    let cut = body.windows(11).position(|w| w == b"first half|").unwrap() + 11;
    let mut s = std::net::TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!(
        "POST /probe/uploads HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: multipart/form-data; boundary=b0undary\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&body[..cut]).unwrap();
    let spooled =
        || {
            std::fs::read_dir(&spool).unwrap().flatten().map(|e| e.path()).find(|p| {
                p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("gatehouse-"))
            })
        };
    wait_until("the upload's spool file", || spooled().is_some());
    let file = spooled().unwrap();
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink(&victim, &file).unwrap();
    s.write_all(&body[cut..]).unwrap();
    let mut reply = Vec::new();
    std::io::Read::read_to_end(&mut s, &mut reply).unwrap();
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");

    let meta = std::fs::metadata(&victim).unwrap();
    assert_eq!((meta.uid(), meta.gid()), (0, 0), "the link's target was given away");
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's secret\n");
    assert!(!reply.contains("root's secret"), "{reply}");
}

#[test]
fn a_log_file_swapped_for_a_link_is_refused_and_its_target_untouched() {
    let yaml = "\
develop_mode: true
logs:
  dir: LOGS
aliases:
  - url: /probe
    path: {probe}
";
    let d = Daemon::start_with(yaml, |root| {
        std::fs::write(root.join("victim"), "not a log\n").unwrap();
    });
    let victim = d.path("victim");
    // Planted before the app's first line (the file is opened then).
    let dir = d.path("LOGS/probe");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(&victim, dir.join("debug.log")).unwrap();
    assert_eq!(d.get("/probe/debug-log?msg=planted").status, 200);
    wait_until("the refusal in the error log", || {
        d.log().contains("debug.log") && d.log().contains("symbolic link")
    });
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "not a log\n", "{}", d.log());
    // Once the link is gone, lines go to a file of the daemon's again.
    std::fs::remove_file(dir.join("debug.log")).unwrap();
    assert_eq!(d.get("/probe/debug-log?msg=again").status, 200);
    wait_until("the new debug.log", || read_lossy(&dir.join("debug.log")).contains("again"));
    assert!(!std::fs::symlink_metadata(dir.join("debug.log")).unwrap().is_symlink());
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "not a log\n");
}
