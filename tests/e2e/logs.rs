//! Logs: the per-app debug logs (develop mode × `must`, request ids, forged
//! newlines, modes), rotation under concurrent load with an exact line count, compression
//! and the kept count, a log folder deleted or made unwritable while running, the
//! permission checks of `check` and `serve` (a world-writable folder, a world-readable log,
//! an unwritable folder as `nobody`), the access log's format, the error log's file and
//! level, and the rate limits that keep floods out of the error log.

use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::harness::{
    Daemon, artifacts, debug_line, debug_messages, read_lossy, wait_debug_messages, wait_until,
};

/// The probe app (its `/debug-log` logs what it is told) and the products app, plus a
/// group; `EXTRA` is replaced by further `logs` keys.
const PROBE: &str = "\
develop_mode: DEV
logs:
  dir: LOGS
EXTRA
aliases:
  - url: /probe
    path: {probe}
  - url: /myapp
    path: {products}
    env: {PRODUCTS_DB: var/p.sqlite3}
  - url: /wsgi/
    path: apps/
    env: {PRODUCTS_DB: var/g.sqlite3}
";

fn config(develop: bool, extra: &str) -> String {
    PROBE.replace("DEV", if develop { "true" } else { "false" }).replace("EXTRA", extra)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).mode() & 0o777
}

/// Every line of the log `stem` in `dir`: the current file and the rotated ones, plain
/// (gzipped ones are not read).
fn lines_of(dir: &Path, stem: &str) -> Vec<String> {
    let mut out = Vec::new();
    for path in log_files(dir, stem) {
        if path.extension().is_some_and(|e| e == "gz") {
            continue;
        }
        out.extend(read_lossy(&path).lines().map(str::to_owned));
    }
    out
}

/// The files of the log `stem` in `dir`: `STEM.log` and `STEM_r*`, sorted.
fn log_files(dir: &Path, stem: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            name == format!("{stem}.log") || name.starts_with(&format!("{stem}_r"))
        })
        .collect();
    files.sort();
    files
}

/// The access log's lines (all files).
fn access_lines(d: &Daemon) -> Vec<String> {
    lines_of(&d.path("LOGS"), "access")
}

/// Waits until the access log has a line containing `needle`, and returns it.
#[track_caller]
fn access_line(d: &Daemon, needle: &str) -> String {
    let mut found = None;
    wait_until(&format!("an access-log line with {needle:?}"), || {
        found = access_lines(d).into_iter().find(|l| l.contains(needle));
        found.is_some()
    });
    found.unwrap_or_default()
}

/// The value of `key=` in an access-log line's extra fields.
fn field<'a>(line: &'a str, key: &str) -> &'a str {
    line.rsplit(' ')
        .find_map(|f| f.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
}

#[test]
fn debug_log_follows_develop_mode_and_must_with_request_ids() {
    for develop in [false, true] {
        let d = Daemon::start(&config(develop, ""));
        let log = d.path("LOGS/probe/debug.log");
        d.get("/probe/debug-log?msg=optional").expect_status(200);
        let must = d.get("/probe/debug-log?msg=must&must=1");
        assert_eq!(must.text(), "written");
        let want: &[&str] = if develop { &["optional", "must"] } else { &["must"] };
        assert_eq!(wait_debug_messages(&log, want.len()), want, "develop_mode: {develop}");

        // Each line carries its request's id, the one in the access log.
        let text = read_lossy(&log);
        let last = text.lines().last().unwrap();
        let (id, message) = debug_line(last).unwrap();
        assert_eq!(message, "must");
        let access = access_line(&d, "GET /probe/debug-log?msg=must&must=1 ");
        assert_eq!(field(&access, "req"), id.to_string(), "{access}");
        assert_eq!(field(&access, "app"), "probe", "{access}");
    }
}

#[test]
fn forged_newlines_and_control_characters_stay_on_one_line() {
    let d = Daemon::start(&config(true, ""));
    let log = d.path("LOGS/probe/debug.log");
    d.get("/probe/debug-log?msg=a%0A2021-04-13+10:26:26+[req+1]+forged%0D%1B[31m%5Cend")
        .expect_status(200);
    assert_eq!(
        wait_debug_messages(&log, 1),
        [r"a\n2021-04-13 10:26:26 [req 1] forged\r\x1b[31m\\end"]
    );
    assert_eq!(read_lossy(&log).lines().count(), 1);
    // The request line in the access log is escaped the Apache way.
    d.send("GET", "/probe/x%0a", &["Referer: a\"b", "User-Agent: caf\u{e9}"], b"");
    let line = access_line(&d, "GET /probe/x");
    assert!(line.contains(r#""GET /probe/x%0a HTTP/1.1""#), "{line}");
    assert!(line.contains(r#""a\"b" "caf\xc3\xa9""#), "{line}");
}

#[test]
fn created_folders_and_files_get_the_configured_modes() {
    let d = Daemon::start(&config(true, ""));
    d.get("/probe/debug-log?msg=x").expect_status(200);
    wait_debug_messages(&d.path("LOGS/probe/debug.log"), 1);
    access_line(&d, "/probe/debug-log");
    assert_eq!(mode(&d.path("LOGS")), 0o750);
    assert_eq!(mode(&d.path("LOGS/probe")), 0o750);
    assert_eq!(mode(&d.path("LOGS/probe/debug.log")), 0o640);
    assert_eq!(mode(&d.path("LOGS/access.log")), 0o640);

    let d = Daemon::start(&config(true, "  dir_mode: 0700\n  file_mode: 0600"));
    d.get("/probe/debug-log?msg=x").expect_status(200);
    wait_debug_messages(&d.path("LOGS/probe/debug.log"), 1);
    assert_eq!(mode(&d.path("LOGS/probe")), 0o700);
    assert_eq!(mode(&d.path("LOGS/probe/debug.log")), 0o600);
}

#[test]
fn rotation_under_concurrent_load_loses_and_duplicates_no_line() {
    const THREADS: usize = 16;
    const EACH: usize = 50;
    let d = Daemon::start(&config(true, "  rotate: {size: 4K, keep: all}"));
    let addr = d.addr;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            std::thread::spawn(move || {
                for i in 0..EACH {
                    let raw = format!(
                        "GET /probe/debug-log?msg=line-{t}-{i} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
                    );
                    let mut s = std::net::TcpStream::connect(addr).unwrap();
                    std::io::Write::write_all(&mut s, raw.as_bytes()).unwrap();
                    let mut reply = String::new();
                    std::io::Read::read_to_string(&mut s, &mut reply).unwrap();
                    assert!(reply.ends_with("written") && !reply.ends_with("not written"), "{reply}");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let dir = d.path("LOGS/probe");
    let total = THREADS * EACH;
    wait_until("every debug line", || lines_of(&dir, "debug").len() >= total);
    wait_until("every access line", || access_lines(&d).len() >= total);
    std::thread::sleep(std::time::Duration::from_millis(100));

    let lines = lines_of(&dir, "debug");
    let messages: Vec<&str> =
        lines.iter().map(|l| debug_line(l).unwrap_or_else(|| panic!("bad line {l:?}")).1).collect();
    let unique: HashSet<&str> = messages.iter().copied().collect();
    assert_eq!(messages.len(), total, "lines written");
    assert_eq!(unique.len(), total, "duplicated lines");
    for t in 0..THREADS {
        for i in 0..EACH {
            assert!(unique.contains(format!("line-{t}-{i}").as_str()), "line-{t}-{i} lost");
        }
    }
    let files = log_files(&dir, "debug");
    assert!(files.len() > 5, "no rotation at 4K: {files:?}");
    for f in &files {
        assert_eq!(mode(f), 0o640, "{}", f.display());
    }
    // The access log rotated too, and has every request exactly once.
    let access = access_lines(&d);
    assert_eq!(access.len(), total);
    let ids: HashSet<&str> = access.iter().map(|l| field(l, "req")).collect();
    assert_eq!(ids.len(), total, "duplicated access lines");
    assert!(log_files(&d.path("LOGS"), "access").len() > 5);
}

/// With an error log file, what an in-process plugin writes to stderr and stdout lands in
/// it, as written, and fds 1 and 2 follow the file through its rotations: no line is lost
/// or doubled, and the lines are spread over the files in turn (fd 2 left on the first
/// file would put them all in one). The daemon's own listening line still goes to its
/// stdout (the harness read it to find the port).
#[test]
fn a_plugins_stderr_follows_the_error_log_file_across_rotations() {
    const N: usize = 60;
    let d =
        Daemon::start(&config(false, "  error_log: error.log\n  rotate: {size: 1K, keep: all}"));
    for i in 0..N {
        d.get(&format!("/probe/stderr?msg=to-stderr-{i}")).expect_status(200);
    }
    let dir = d.path("LOGS");
    wait_until("the last line logged", || {
        lines_of(&dir, "error").iter().any(|l| l.ends_with(&format!("logged to-stderr-{}", N - 1)))
    });
    let mut holding = 0;
    let mut seen = Vec::new();
    for file in log_files(&dir, "error") {
        let raw: Vec<String> = read_lossy(&file)
            .lines()
            .filter(|l| l.starts_with("to-stderr-"))
            .map(str::to_owned)
            .collect();
        holding += usize::from(!raw.is_empty());
        seen.extend(raw);
    }
    seen.sort();
    let mut want: Vec<String> = (0..N)
        .flat_map(|i| [format!("to-stderr-{i}"), format!("to-stderr-{i} on stdout")])
        .collect();
    want.sort();
    assert_eq!(seen, want, "each stderr and stdout line once, whole, as written");
    assert!(holding >= 3, "the stderr lines are in {holding} files: fd 2 did not follow");
    assert!(!d.log().contains("to-stderr-"), "a line went to the daemon's stderr:\n{}", d.log());
}

#[test]
fn rotated_files_are_compressed_and_only_keep_are_kept() {
    let d = Daemon::start(&config(true, "  rotate: {size: 1K, keep: 2, compress: true}"));
    let dir = d.path("LOGS/probe");
    // One line at a time: the writer checks the size before each batch it writes, and on a
    // loaded machine lines queued together go out as one batch (one rotation for many).
    for i in 0..80 {
        d.get(&format!("/probe/debug-log?msg=a-fairly-long-message-to-fill-the-file-{i:04}"))
            .expect_status(200);
        let line = format!("file-{i:04}");
        wait_until("the line", || read_lossy(&dir.join("debug.log")).contains(&line));
    }
    let files = log_files(&dir, "debug");
    let gz: Vec<&PathBuf> =
        files.iter().filter(|f| f.extension().is_some_and(|e| e == "gz")).collect();
    let sizes: Vec<(String, u64)> = files
        .iter()
        .map(|f| (f.display().to_string(), std::fs::metadata(f).map_or(0, |m| m.len())))
        .collect();
    assert_eq!(gz.len(), 2, "{sizes:?}\n{}", read_lossy(&dir.join("debug.log")));
    assert_eq!(files.len(), 3, "only debug.log and the kept .gz files: {files:?}");
    for f in gz {
        let bytes = std::fs::read(f).unwrap();
        assert!(bytes.starts_with(&[0x1f, 0x8b]), "{} is not gzip", f.display());
        assert_eq!(mode(f), 0o640, "{}", f.display());
    }
}

#[test]
fn a_log_folder_deleted_while_running_is_created_again() {
    let d = Daemon::start(&config(true, ""));
    let log = d.path("LOGS/probe/debug.log");
    d.get("/probe/debug-log?msg=before").expect_status(200);
    assert_eq!(wait_debug_messages(&log, 1), ["before"]);
    access_line(&d, "msg=before");
    std::fs::remove_dir_all(d.path("LOGS")).unwrap();
    for i in 0..3 {
        d.get(&format!("/probe/debug-log?msg=after-{i}")).expect_status(200);
    }
    assert_eq!(wait_debug_messages(&log, 3), ["after-0", "after-1", "after-2"]);
    access_line(&d, "msg=after-2");
    assert_eq!(mode(&d.path("LOGS/probe")), 0o750);
    assert_eq!(mode(&log), 0o640);
    assert!(d.log().contains("was deleted or moved away; writing to a new one"), "{}", d.log());
}

#[test]
fn an_unwritable_log_is_reported_once_and_recovers() {
    let d = Daemon::start(&config(true, ""));
    let app_dir = d.path("LOGS/probe");
    d.get("/probe/debug-log?msg=before").expect_status(200);
    assert_eq!(wait_debug_messages(&app_dir.join("debug.log"), 1), ["before"]);
    // A file where the app's folder must be: nothing can be written there, even as root.
    std::fs::remove_dir_all(&app_dir).unwrap();
    std::fs::write(&app_dir, "in the way\n").unwrap();
    for i in 0..20 {
        // The request is served all the same.
        d.get(&format!("/probe/debug-log?msg=lost-{i}")).expect_status(200);
    }
    access_line(&d, "msg=lost-19");
    wait_until("the failure in the error log", || d.log().contains("cannot write"));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let reports = d.log().matches("debug log of app probe").count();
    assert_eq!(reports, 1, "reported more than once:\n{}", d.log());
    // The app is told its line was not written.
    assert_eq!(d.get("/probe/debug-log?msg=lost-20").text(), "not written");

    std::fs::remove_file(&app_dir).unwrap();
    d.get("/probe/debug-log?msg=back").expect_status(200);
    let back = wait_debug_messages(&app_dir.join("debug.log"), 1);
    assert!(back.ends_with(&["back".to_owned()]), "{back:?}");
    wait_until("the recovery in the error log", || d.log().contains("writing again"));
    assert!(d.log().contains("lines lost while it failed"), "{}", d.log());
}

/// Runs the gatehouse binary with `args` (and `--config DIR/hosting.yaml`), optionally as
/// `nobody` through setpriv; kills it if it is still running after 20 s.
fn run_gatehouse(dir: &Path, args: &[&str], as_nobody: bool) -> Output {
    let a = artifacts();
    let config = dir.join("hosting.yaml");
    let mut cmd = if as_nobody {
        let mut c = Command::new("setpriv");
        // A copy nobody can exec wherever the clone lives.
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"]).arg(a.public_gatehouse());
        c
    } else {
        Command::new(&a.gatehouse)
    };
    cmd.args(args).arg("--config").arg(&config).current_dir(dir).env_remove("RUST_LOG");
    if args.first() == Some(&"serve") {
        cmd.args(["--listen", "127.0.0.1:0"]);
    }
    crate::harness::output_within(&mut cmd, std::time::Duration::from_secs(20))
}

/// A temp folder holding `hosting.yaml` with `logs.dir: LOGS` and no aliases.
fn bare_config() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::Builder::new().prefix("gatehouse-e2e-").tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    std::fs::write(root.join("hosting.yaml"), "logs: {dir: LOGS}\naliases: []\n").unwrap();
    (tmp, root)
}

#[track_caller]
fn assert_refused(out: &Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "exit {}:\n{stderr}", out.status);
    assert!(!stdout.contains("listening"), "it bound before refusing:\n{stdout}");
    for n in needles {
        assert!(stderr.contains(n), "no {n:?} in:\n{stderr}");
    }
}

#[test]
fn a_world_writable_log_folder_is_refused_with_the_fix() {
    let (_tmp, root) = bare_config();
    let logs = root.join("LOGS");
    std::fs::create_dir(&logs).unwrap();
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o777)).unwrap();
    let what = format!("{}: is writable by everyone (mode 0777)", logs.display());
    let fix = format!("fix: chmod o-w {}", logs.display());
    let needles = [what.as_str(), fix.as_str()];
    assert_refused(&run_gatehouse(&root, &["check"], false), &needles);
    assert_refused(&run_gatehouse(&root, &["serve"], false), &needles);
    // Fixed, both go on.
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o750)).unwrap();
    let out = run_gatehouse(&root, &["check"], false);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_world_readable_log_file_is_refused_unless_file_mode_allows_it() {
    let (_tmp, root) = bare_config();
    let app = root.join("LOGS/myapp");
    std::fs::create_dir_all(&app).unwrap();
    std::fs::write(app.join("debug.log"), "old\n").unwrap();
    std::fs::set_permissions(app.join("debug.log"), std::fs::Permissions::from_mode(0o644))
        .unwrap();
    let needle = format!("fix: chmod o-r {}", app.join("debug.log").display());
    assert_refused(&run_gatehouse(&root, &["check"], false), &[&needle, "readable by everyone"]);
    std::fs::write(root.join("hosting.yaml"), "logs: {dir: LOGS, file_mode: 0644}\naliases: []\n")
        .unwrap();
    let out = run_gatehouse(&root, &["check"], false);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn an_unwritable_log_folder_is_refused_with_the_fix() {
    let root_user = std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0"))
    });
    let setpriv =
        Command::new("setpriv").arg("--version").output().is_ok_and(|o| o.status.success());
    if !root_user || !setpriv {
        eprintln!(
            "skipped: needs root and setpriv to run the daemon as another user (root: {root_user}, setpriv: {setpriv})"
        );
        return;
    }
    // `nobody` must reach the config: a folder it can pass through, whatever TMPDIR is.
    let tmp = tempfile::Builder::new()
        .prefix("gatehouse-e2e-")
        .tempdir_in(crate::harness::public_temp_dir())
        .unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    std::fs::write(root.join("hosting.yaml"), "logs: {dir: LOGS}\naliases: []\n").unwrap();
    let logs = root.join("LOGS");
    std::fs::create_dir(&logs).unwrap();
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o755)).unwrap();
    let group = read_lossy(Path::new("/etc/group"))
        .lines()
        .find_map(|l| {
            let mut p = l.split(':');
            let name = p.next()?;
            let _password = p.next()?;
            (p.next()? == "65534").then(|| name.to_owned())
        })
        .unwrap_or_else(|| "65534".to_owned());
    let fix = format!("fix: chgrp {group} {0} && chmod g+w {0}", logs.display());
    let needles = [fix.as_str(), "cannot write to it: it belongs to root:root with mode 0755"];
    assert_refused(&run_gatehouse(&root, &["check"], true), &needles);
    assert_refused(&run_gatehouse(&root, &["serve"], true), &needles);
    // The suggested fix works.
    let status =
        Command::new("sh").arg("-c").arg(fix.trim_start_matches("fix: ")).status().unwrap();
    assert!(status.success());
    let out = run_gatehouse(&root, &["check"], true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // A folder that cannot be created names `install -d`.
    std::fs::write(root.join("hosting.yaml"), "logs: {dir: LOGS/sub/deeper}\naliases: []\n")
        .unwrap();
    std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = run_gatehouse(&root, &["check"], true);
    assert_refused(&out, &["does not exist and cannot be created", "fix: install -d -o nobody"]);
}

#[test]
fn the_access_log_has_one_combined_line_per_request() {
    let d = Daemon::start(&config(false, ""));
    // An app's reply, with Referer and User-Agent.
    let r =
        d.send("GET", "/myapp?id=A001", &["Referer: http://x/form", "User-Agent: test/1.0"], b"");
    r.expect_status(200);
    let line = access_line(&d, "GET /myapp?id=A001 ");
    let prefix = "127.0.0.1 - - [";
    assert!(line.starts_with(prefix), "{line}");
    let after_time = line.split_once("] ").map(|(_, rest)| rest).unwrap();
    assert!(
        after_time.starts_with(&format!(
            "\"GET /myapp?id=A001 HTTP/1.1\" 200 {} \"http://x/form\" \"test/1.0\" app=myapp req=",
            r.body.len()
        )),
        "{line}"
    );
    let micros: u64 = field(&line, "time_us").parse().unwrap();
    assert!(micros > 0 && micros < 10_000_000, "{line}");
    // The daemon's own 404, with no app and no request id.
    let nope = d.get("/nope");
    let line = access_line(&d, "GET /nope ");
    assert!(
        line.contains(&format!("\" 404 {} \"-\" \"-\" app=- req=- time_us=", nope.body.len())),
        "{line}"
    );
    // HEAD: no body bytes.
    d.send("HEAD", "/probe/head-len", &[], b"").expect_status(200);
    let line = access_line(&d, "HEAD /probe/head-len ");
    assert!(line.contains("\" 200 - \""), "{line}");
    // A streamed (chunked) reply: the body bytes, counted as they went out.
    let streamed = d.get("/probe/stream?n=5&wait=0");
    streamed.expect_status(200);
    assert_eq!(streamed.body.len(), 40);
    let line = access_line(&d, "GET /probe/stream?n=5&wait=0 ");
    assert!(line.contains("\" 200 40 \""), "{line}");
    // A group plugin is named by its NAME.
    d.get("/wsgi/products?id=A001").expect_status(200);
    let line = access_line(&d, "GET /wsgi/products?id=A001 ");
    assert_eq!(field(&line, "app"), "products", "{line}");
}

#[test]
fn the_error_log_can_be_a_file_with_its_own_level() {
    let yaml = "\
logs:
  dir: LOGS
  error_log: error.log
  level: warn
aliases:
  - url: /sample
    path: {hello}
  - url: /missing
    path: apps/not-built-yet.so
";
    let d = Daemon::start(yaml);
    d.get("/missing").expect_status(404);
    let error_log = d.path("LOGS/error.log");
    wait_until("the warning in error.log", || read_lossy(&error_log).contains("not-built-yet.so"));
    let text = read_lossy(&error_log);
    assert!(text.lines().all(|l| l.contains(" WARN ") || l.contains(" ERROR ")), "{text}");
    assert!(!text.contains("serving"), "info lines at level warn:\n{text}");
    assert_eq!(mode(&error_log), 0o640);
}

#[test]
fn per_request_messages_cannot_flood_the_error_log() {
    let d = Daemon::start(&config(false, ""));
    for i in 0..60 {
        // Group misses are logged at INFO, once per request.
        d.get(&format!("/wsgi/nope-{i}")).expect_status(404);
        // Malformed requests: actix answers 400 and logs at ERROR.
        let _ = std::net::TcpStream::connect(d.addr).and_then(|mut s| {
            std::io::Write::write_all(&mut s, b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")?;
            let mut reply = Vec::new();
            std::io::Read::read_to_end(&mut s, &mut reply)
        });
    }
    access_line(&d, "/wsgi/nope-59 ");
    let log = d.log();
    let misses =
        log.lines().filter(|l| l.contains("404: no plugin") || l.contains(": 404: ")).count();
    assert!(misses <= 20, "{misses} group-miss lines:\n{log}");
    let malformed = log.lines().filter(|l| l.contains("stream error")).count();
    assert!(malformed <= 20, "{malformed} malformed-request lines:\n{log}");
    // Every miss is in the access log all the same.
    assert_eq!(access_lines(&d).iter().filter(|l| l.contains("/wsgi/nope-")).count(), 60);
}

#[test]
fn an_app_panic_is_logged_with_its_request_id() {
    let d = Daemon::start("logs: {dir: LOGS}\naliases:\n  - url: /panicky\n    path: {panicky}\n");
    d.get("/panicky/panic").expect_status(500);
    let line = access_line(&d, "GET /panicky/panic ");
    let id = field(&line, "req");
    assert!(line.contains("\" 500 "), "{line}");
    wait_until("the panic in the error log", || d.log().contains("app panicked"));
    assert!(
        d.log().contains(&format!("app panicky (request {id}): app panicked: ")),
        "{}",
        d.log()
    );
    assert_eq!(debug_messages(&d.path("LOGS/panicky/debug.log")), Vec::<String>::new());
}

#[test]
fn the_access_log_may_go_to_stdout_beside_the_error_log_on_stderr() {
    // As a container runs it: `kubectl logs` shows both streams.
    let d = Daemon::start(&config(false, "  access_log: stdout\n  error_log: stderr"));
    d.get("/probe/debug-log?msg=x").expect_status(200);
    d.get("/nowhere").expect_status(404);
    let mut lines = Vec::new();
    while lines.len() < 2 {
        match d.stdout_line(std::time::Duration::from_secs(10)) {
            Some(l) => lines.push(l),
            None => panic!("access lines on stdout: {lines:?}\n{}", d.log()),
        }
    }
    assert!(lines[0].contains("\"GET /probe/debug-log?msg=x HTTP/1.1\" 200 "), "{lines:?}");
    assert!(lines[1].contains("\"GET /nowhere HTTP/1.1\" 404 "), "{lines:?}");
    // Not in a file, and not in the error log.
    assert!(!d.path("LOGS/access.log").exists());
    assert!(!d.log().contains("GET /probe/debug-log"), "{}", d.log());
}
