//! The Debian packages under a real systemd. The .debs are built from this tree (the
//! binaries the harness built, packaged by cargo-deb, which strips them), checked by
//! lintian, then installed into a Debian 12 container booted with systemd as PID 1
//! (debootstrap + systemd-nspawn, in its own network namespace: what it binds is on its own
//! loopback only) and driven as README's "Install as a service" does, one step after the
//! other: install, serve a plugin dropped into the apps folder, pick up a YAML edit,
//! `systemctl reload` (a valid and an invalid edit), stop during a slow request, socket
//! activation, the watchdog restarting a hung daemon, the journal, the hardening score,
//! the WSGI bridge package, per-app users, an upgrade keeping an edited conffile, a purge.
//!
//! The container test runs only where it can: as root, with debootstrap, systemd-nspawn and
//! cargo-deb (`.ci/run` installs them); elsewhere it says why it is skipped. The
//! debootstrapped root (about 100 s and 280 MB) is kept in the target folder, under
//! `debian-e2e/`, and copied afresh for each run; the copy, the container and the packages
//! are removed at the end, whatever happened.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::harness::{artifacts, build_layout};

/// The packages debootstrap puts into the container beside a minimal Debian: systemd as
/// init, curl to make requests from inside. The Python runtime the WSGI bridge depends on
/// is added from that package's `Depends` (the container has no network to fetch it).
const BASE_PACKAGES: &str = "systemd,systemd-sysv,dbus,curl";

/// The packaged configuration's address, inside the container.
const URL: &str = "http://127.0.0.1:8080";

/// How long a change (an edit, a reload, a restart) may take to be served: generous, for a
/// loaded machine; a pass takes a second or two.
const CHANGE: Duration = Duration::from_secs(60);

/// The folder this file's runs keep their things in: `TARGET/debian-e2e`.
fn work_dir() -> PathBuf {
    let (target, _, _) = build_layout().unwrap_or_else(|e| panic!("{e}"));
    target.join("debian-e2e")
}

/// Removes `DIR/PREFIX-PID` folders whose process has ended (a run killed midway).
fn remove_stale(dir: &Path, prefix: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(prefix).and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Why `cargo deb` cannot run here, if it cannot.
pub(crate) fn cargo_deb_missing() -> Option<String> {
    let ok =
        Command::new("cargo").args(["deb", "--version"]).output().is_ok_and(|o| o.status.success());
    (!ok).then(|| "cargo-deb is not installed (.ci/run installs it)".to_owned())
}

/// The two packages, built from the harness's binaries.
#[derive(Debug)]
pub(crate) struct Debs {
    /// `gatehouse_VERSION_ARCH.deb`.
    pub(crate) gatehouse: PathBuf,
    /// `gatehouse-wsgi_VERSION_ARCH.deb`.
    pub(crate) wsgi: PathBuf,
    /// Every file cargo-deb made (the debug symbol packages too).
    pub(crate) all: Vec<PathBuf>,
}

/// Builds both packages into `out` with Debian revision `revision`, as the README does
/// (`packaging/build-debs`), from the binaries the harness built (no second build:
/// `--no-build`, the test profile's folder). cargo-deb strips them and moves their debug
/// symbols into the -dbgsym packages.
fn build_debs(out: &Path, revision: u32) -> Result<Debs, String> {
    // The binaries, built (once) by the harness.
    artifacts();
    let (target, profile, triple) = build_layout()?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("the e2e package has no parent folder")?
        .to_owned();
    std::fs::create_dir_all(out).map_err(|e| format!("create {}: {e}", out.display()))?;
    let mut cmd = Command::new(workspace.join("packaging/build-debs"));
    cmd.current_dir(&workspace)
        .env("CARGO_TARGET_DIR", &target)
        .args(["--no-build", "--fast", "--quiet", "--profile"])
        .arg(if profile == "debug" { "dev" } else { profile.as_str() })
        .args(["--deb-revision", &revision.to_string(), "-o"])
        .arg(out);
    if let Some(triple) = &triple {
        cmd.args(["--target", triple]);
    }
    let built = cmd.output().map_err(|e| format!("cannot run packaging/build-debs: {e}"))?;
    if !built.status.success() {
        return Err(format!(
            "packaging/build-debs failed ({}):\n{}",
            built.status,
            String::from_utf8_lossy(&built.stderr)
        ));
    }
    let mut all: Vec<PathBuf> = std::fs::read_dir(out)
        .map_err(|e| format!("list {}: {e}", out.display()))?
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains(&format!("-{revision}_")))
        .collect();
    all.sort();
    let find = |prefix: &str| {
        all.iter()
            .find(|p| {
                let name = p.file_name().unwrap_or_default().to_string_lossy();
                name.starts_with(prefix) && name.ends_with(".deb")
            })
            .cloned()
            .ok_or_else(|| format!("no {prefix}*.deb in {}: {all:?}", out.display()))
    };
    Ok(Debs { gatehouse: find("gatehouse_")?, wsgi: find("gatehouse-wsgi_")?, all: all.clone() })
}

/// The packages of this tree (revision 1), built once per test binary into
/// `TARGET/debian-e2e/debs-PID` (removed by the next run once this process has ended).
pub(crate) fn debs() -> &'static Debs {
    static BUILT: OnceLock<Result<Debs, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        let work = work_dir();
        remove_stale(&work, "debs-");
        build_debs(&work.join(format!("debs-{}", std::process::id())), 1)
    });
    match built {
        Ok(d) => d,
        Err(e) => panic!("{e}"),
    }
}

/// A control field of a package (`dpkg-deb -f`).
pub(crate) fn control_field(deb: &Path, field: &str) -> String {
    let out = Command::new("dpkg-deb").arg("-f").arg(deb).arg(field).output().expect("dpkg-deb");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn the_packages_have_no_lintian_errors() {
    if let Some(why) = cargo_deb_missing() {
        eprintln!("skipped: {why}");
        return;
    }
    if Command::new("lintian").arg("--version").output().is_err() {
        eprintln!("skipped: lintian is not installed (.ci/run installs it)");
        return;
    }
    let d = debs();
    // Errors fail (lintian's default --fail-on); the warnings left are printed and listed
    // in docs/packaging.md with the reason each stays.
    let out = Command::new("lintian")
        .arg("--no-tag-display-limit")
        .args(&d.all)
        .output()
        .expect("run lintian");
    let said =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("lintian:\n{said}");
    assert!(
        out.status.success() && !said.lines().any(|l| l.starts_with("E: ")),
        "lintian found errors:\n{said}"
    );
}

/// Whether the container test can run here: `None`, or why not.
fn why_not() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1).map(str::to_owned));
    if euid.as_deref() != Some("0") {
        return Some("not root (debootstrap and systemd-nspawn need root)".to_owned());
    }
    for (tool, package) in [
        ("debootstrap", "debootstrap"),
        ("systemd-nspawn", "systemd-container"),
        ("nsenter", "util-linux"),
        ("dpkg-deb", "dpkg"),
    ] {
        if Command::new(tool).arg("--version").output().is_err() {
            return Some(format!("{tool} is not installed (apt-get install {package})"));
        }
    }
    cargo_deb_missing()
}

/// The Debian mirror apt uses on this machine (for debootstrap).
fn mirror() -> String {
    let sources =
        std::fs::read_to_string("/etc/apt/sources.list.d/debian.sources").unwrap_or_default();
    if let Some(uri) = sources
        .lines()
        .find_map(|l| l.strip_prefix("URIs:"))
        .and_then(|u| u.split_whitespace().next())
    {
        return uri.to_owned();
    }
    let list = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    list.lines()
        .map(str::split_whitespace)
        .find_map(|mut words| match (words.next(), words.next()) {
            (Some("deb"), Some(uri)) if uri.starts_with("http") => Some(uri.to_owned()),
            _ => None,
        })
        .unwrap_or_else(|| "http://deb.debian.org/debian".to_owned())
}

/// A minimal Debian 12 with `packages`, debootstrapped once into `TARGET/debian-e2e` and
/// kept for the next runs (made again when the package list changes).
fn rootfs(packages: &str) -> PathBuf {
    let work = work_dir();
    std::fs::create_dir_all(&work).expect("create the work folder");
    let root = work.join("bookworm");
    let stamp = work.join("bookworm.packages");
    if root.join("usr/lib/systemd/systemd").exists()
        && std::fs::read_to_string(&stamp).is_ok_and(|s| s == packages)
    {
        return root;
    }
    let _ = std::fs::remove_dir_all(&root);
    remove_stale(&work, "bookworm.new-");
    let new = work.join(format!("bookworm.new-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&new);
    let started = Instant::now();
    let out = Command::new("debootstrap")
        .args(["--variant=minbase", &format!("--include={packages}"), "bookworm"])
        .arg(&new)
        .arg(mirror())
        .stdin(Stdio::null())
        .output()
        .expect("run debootstrap");
    assert!(
        out.status.success(),
        "debootstrap failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("debian: debootstrap took {:.0?}", started.elapsed());
    std::fs::rename(&new, &root).expect("move the new root into place");
    std::fs::write(&stamp, packages).expect("write the package list");
    root
}

/// Runs `cmd` (its output captured), killed if it takes longer than `limit`.
fn run_within(cmd: &mut Command, limit: Duration) -> Result<Output, String> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let deadline = Instant::now() + limit;
    // Read both pipes on threads, so that a chatty command cannot block on a full pipe.
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stdout, &mut b);
        b
    });
    let err = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = std::io::Read::read_to_end(&mut stderr, &mut b);
        b
    });
    loop {
        if let Some(status) = child.try_wait().map_err(|e| e.to_string())? {
            let stdout = out.join().unwrap_or_default();
            let stderr = err.join().unwrap_or_default();
            return Ok(Output { status, stdout, stderr });
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{cmd:?} still ran after {limit:?}: killed"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A process's parent and name, from `/proc/PID/stat`.
fn parent_and_name(pid: u32) -> Option<(u32, String)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let name = stat[open + 1..close].to_owned();
    let ppid = stat[close + 1..].split_whitespace().nth(1)?.parse().ok()?;
    Some((ppid, name))
}

/// Sends `signal` to `pid` (with the shell's built-in `kill`, which every system has).
fn signal(pid: u32, signal: &str) {
    let _ = Command::new("sh").args(["-c", &format!("kill -s {signal} {pid}")]).status();
}

/// A Debian container booted with systemd as PID 1, on a fresh copy of the cached root.
struct Container {
    /// The `systemd-nspawn` this test started.
    nspawn: Child,
    /// The container's PID 1 (systemd), as seen here.
    leader: u32,
    /// Its root folder, this run's copy.
    root: PathBuf,
    /// nspawn's console (the container's boot messages).
    console: PathBuf,
}

impl Container {
    fn boot(cache: &Path) -> Container {
        let work = work_dir();
        remove_stale(&work, "root-");
        let root = work.join(format!("root-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let copied = Command::new("cp")
            .args(["-a", "--reflink=auto"])
            .arg(cache)
            .arg(&root)
            .status()
            .expect("run cp");
        assert!(copied.success(), "cannot copy {} to {}", cache.display(), root.display());
        let console = work.join(format!("console-{}.log", std::process::id()));
        // Where this machine runs systemd, nspawn asks it for a scope; elsewhere it keeps the
        // one it runs in (--keep-unit). If the first way fails at once, the other is tried.
        let systemd_here = Path::new("/run/systemd/system").exists();
        let started = Instant::now();
        let nspawn = Container::nspawn(&root, &console, !systemd_here);
        let mut c = Container { leader: 0, nspawn, root, console };
        let mut consoles = String::new();
        let mut tries = 1;
        loop {
            if let Ok(Some(status)) = c.nspawn.try_wait() {
                consoles.push_str(&format!(
                    "systemd-nspawn exited ({status}):\n{}\n",
                    c.console_text()
                ));
                assert!(tries < 2, "systemd-nspawn did not boot the container:\n{consoles}");
                tries += 1;
                c.nspawn = Container::nspawn(&c.root, &c.console, systemd_here);
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "no systemd started in the container within 60 s:\n{consoles}{}",
                c.console_text()
            );
            let nspawn_pid = c.nspawn.id();
            c.leader = std::fs::read_dir("/proc")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
                .find(|&pid| {
                    parent_and_name(pid).is_some_and(|(p, n)| p == nspawn_pid && n == "systemd")
                })
                .unwrap_or(0);
            if c.leader != 0 {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // systemctl answers once systemd has made its socket; then it waits for the boot.
        let state = loop {
            let out = c.sh_within("systemctl is-system-running --wait", Duration::from_secs(120));
            let state = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if !state.is_empty() {
                break state;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the container's systemd does not answer:\n{}\n{}",
                text(&out),
                c.console_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        };
        if state != "running" {
            let failed = c.sh("systemctl --failed --no-legend; journalctl -b -p warning -n 50");
            panic!("the container's systemd says {state:?}, not running:\n{}", text(&failed));
        }
        eprintln!("debian: the container booted in {:.1?}", started.elapsed());
        c
    }

    /// Starts `systemd-nspawn` booting `root`, its console into `console`.
    fn nspawn(root: &Path, console: &Path, keep_unit: bool) -> Child {
        let log = std::fs::File::create(console).expect("create the console log");
        let mut cmd = Command::new("systemd-nspawn");
        cmd.arg("-D")
            .arg(root)
            .args(["--boot", "--console=pipe", "--register=no", "--private-network"])
            .arg(format!("--machine=gatehouse-e2e-{}", std::process::id()));
        if keep_unit {
            cmd.arg("--keep-unit");
        }
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the console log"))
            .stderr(log)
            .spawn()
            .expect("start systemd-nspawn")
    }

    fn console_text(&self) -> String {
        crate::harness::read_lossy(&self.console)
    }

    /// Runs `script` with `sh` inside the container as root, within `limit`.
    fn sh_within(&self, script: &str, limit: Duration) -> Output {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.leader.to_string(), "-a", "/bin/sh", "-c", script])
            .env_clear()
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .env("LANG", "C.UTF-8")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .env("SYSTEMD_PAGER", "")
            .env("SYSTEMD_COLORS", "0");
        run_within(&mut cmd, limit).unwrap_or_else(|e| self.fail(&e))
    }

    /// Runs `script` inside the container (within 2 minutes).
    fn sh(&self, script: &str) -> Output {
        self.sh_within(script, Duration::from_secs(120))
    }

    /// Runs `script`, which must succeed; its stdout. `what` names the step for the failure.
    fn ok(&self, what: &str, script: &str) -> String {
        let out = self.sh(script);
        if !out.status.success() {
            self.fail(&format!("{what}: `{script}` failed ({}):\n{}", out.status, text(&out)));
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Fails the test with `why`, the service's state and its journal.
    fn fail(&self, why: &str) -> ! {
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &self.leader.to_string(), "-a", "/bin/sh", "-c"]).arg(
            "SYSTEMD_COLORS=0 systemctl status --no-pager gatehouse.service gatehouse.socket; \
             journalctl --no-pager -n 150 -u gatehouse.service -u gatehouse.socket",
        );
        let state = run_within(&mut cmd, Duration::from_secs(30)).map_or_else(|e| e, |o| text(&o));
        panic!("{why}\n--- the service and its journal ---\n{state}");
    }

    /// Fails the test (with the journal) unless `holds`; `why` says what went wrong.
    fn check(&self, holds: bool, why: impl FnOnce() -> String) {
        if !holds {
            self.fail(&why());
        }
    }

    /// Fails the test (with the journal) unless `got` is `want`.
    fn same<T: PartialEq + std::fmt::Debug>(&self, what: &str, got: T, want: T) {
        if got != want {
            self.fail(&format!("{what}: {got:?}, not {want:?}"));
        }
    }

    /// `curl URL PATH` from inside: the status and the body.
    fn get(&self, path: &str) -> (u16, String) {
        let out = self.sh(&format!("curl -sS -m 20 -w '\\n%{{http_code}}' '{URL}{path}'"));
        let all = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = all.rsplit_once('\n').unwrap_or(("", all.as_str()));
        (code.trim().parse().unwrap_or(0), body.to_owned())
    }

    /// Waits until `path` answers 200 with `want`.
    fn wait_body(&self, what: &str, path: &str, want: &str) {
        self.wait(what, || match self.get(path) {
            (200, body) if body == want => Ok(()),
            other => Err(format!("{path}: {other:?}")),
        });
    }

    /// Polls `probe` every 100 ms until it holds; fails after [`CHANGE`] with `what`.
    fn wait<T>(&self, what: &str, mut probe: impl FnMut() -> Result<T, String>) -> T {
        let deadline = Instant::now() + CHANGE;
        loop {
            match probe() {
                Ok(v) => return v,
                Err(last) if Instant::now() > deadline => {
                    self.fail(&format!("{what}: not within {CHANGE:?}; last: {last}"))
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// A property of a unit (`systemctl show -p NAME --value`).
    fn property(&self, unit: &str, name: &str) -> String {
        self.ok("systemctl show", &format!("systemctl show -p {name} --value {unit}"))
            .trim()
            .to_owned()
    }

    /// The service's journal (the daemon's lines: its stderr).
    fn journal(&self) -> String {
        self.ok("journalctl", "journalctl --no-pager -o cat -u gatehouse.service")
    }

    /// `systemd-analyze security gatehouse`'s overall exposure.
    fn exposure(&self) -> f64 {
        let said =
            self.ok("systemd-analyze security", "systemd-analyze security --no-pager gatehouse");
        said.lines()
            .find_map(|l| l.split("Overall exposure level for gatehouse.service:").nth(1))
            .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
            .unwrap_or_else(|| self.fail(&format!("no overall exposure in:\n{said}")))
    }

    /// Copies `from` into the container as `to` (a path inside it), mode 0644, root's.
    fn put(&self, from: &Path, to: &str) {
        let dest = self.root.join(to.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().expect("a parent")).expect("create the folder");
        std::fs::copy(from, &dest)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), dest.display()));
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }

    /// Writes `text` into the container as `to`, mode 0644.
    fn write(&self, to: &str, text: &str) {
        let dest = self.root.join(to.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().expect("a parent")).expect("create the folder");
        std::fs::write(&dest, text).expect("write into the container");
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    }
}

impl Drop for Container {
    /// Powers the container off (SIGTERM to the nspawn this test started), or kills it, then
    /// removes its root.
    fn drop(&mut self) {
        if self.nspawn.try_wait().ok().flatten().is_none() {
            signal(self.nspawn.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(60);
            while self.nspawn.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if self.nspawn.try_wait().ok().flatten().is_none() {
                // The whole PID namespace goes with its PID 1.
                if self.leader != 0 {
                    signal(self.leader, "KILL");
                }
                let _ = self.nspawn.kill();
                let _ = self.nspawn.wait();
            }
        }
        // nspawn mounted in its own mount namespace: nothing is left mounted here.
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let root = self.root.display().to_string();
        if mounts.lines().any(|l| l.contains(&root)) {
            eprintln!("debian: {root} still has mounts; not removed");
            return;
        }
        let _ = std::fs::remove_dir_all(&self.root);
        let _ = std::fs::remove_file(&self.console);
    }
}

/// A command's stdout and stderr.
fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A step's start, for the timings printed as the test goes.
fn step(started: &mut Instant, name: &str) {
    eprintln!("debian: {name} ({:.1?})", started.elapsed());
    *started = Instant::now();
}

/// The WSGI script of the per-app users step: what its worker reads (the file named by the
/// query string, or the error), its uid and its capabilities.
const READ_PY: &str = r#"import os


def application(environ, start_response):
    try:
        with open(environ['QUERY_STRING']) as f:
            found = f.read().strip()
    except OSError as e:
        found = type(e).__name__
    with open('/proc/self/status') as f:
        caps = [l.split()[1] for l in f if l.startswith(('CapPrm', 'CapEff', 'CapAmb'))]
    body = 'uid=%d read=%s caps=%s' % (os.getuid(), found, ','.join(caps))
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [body.encode()]
"#;

/// A script that hangs (past its alias's `timeout`).
const HANG_PY: &str = r#"import time


def application(environ, start_response):
    time.sleep(300)
    start_response('200 OK', [('Content-Type', 'text/plain')])
    return [b'woke']
"#;

#[test]
fn the_packages_install_and_run_under_a_real_systemd() {
    if let Some(why) = why_not() {
        eprintln!("skipped: the Debian container test needs root and its tools: {why}");
        return;
    }
    let started = Instant::now();
    let mut t = Instant::now();
    let a = artifacts();
    let d = debs();
    // The Python runtime the bridge was linked with, from its package's Depends.
    let wsgi_depends = control_field(&d.wsgi, "Depends");
    let pythons: Vec<&str> = wsgi_depends
        .split(',')
        .filter_map(|dep| dep.split_whitespace().next())
        .filter(|name| name.starts_with("libpython3"))
        .collect();
    assert!(!pythons.is_empty(), "gatehouse-wsgi does not depend on a libpython: {wsgi_depends}");
    let cache = rootfs(&format!("{BASE_PACKAGES},{}", pythons.join(",")));
    step(&mut t, "packages built, root ready");
    let c = Container::boot(&cache);
    step(&mut t, "booted");
    let deb = |p: &Path| format!("/srv/e2e/{}", p.file_name().unwrap().to_string_lossy());
    c.put(&d.gatehouse, &deb(&d.gatehouse));
    c.put(&d.wsgi, &deb(&d.wsgi));
    c.put(&a.hello, "/srv/e2e/libhello.so");
    c.put(&a.panicky, "/srv/e2e/libpanicky.so");
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../demo/python/sample.py");
    c.put(&demo, "/srv/e2e/sample.py");

    // A minimal Debian: no /bin/kill (procps is not there), which the unit must not need.
    c.ok("no /bin/kill", "[ ! -e /bin/kill ] && [ ! -e /usr/bin/kill ]");

    // Install: the user, the folders, the service enabled and started, READY with a STATUS.
    c.ok("apt-get install gatehouse", &format!("apt-get install -y {}", deb(&d.gatehouse)));
    c.same("the service", c.property("gatehouse", "ActiveState"), "active".into());
    c.same("the service", c.property("gatehouse", "UnitFileState"), "enabled".into());
    let status = c.property("gatehouse", "StatusText");
    c.check(
        status.starts_with("serving 1 aliases (1 groups), 0 plugins loaded on 127.0.0.1:8080"),
        || format!("the STATUS line: {status:?}"),
    );
    c.ok("the user", "getent passwd gatehouse");
    let modes = c.ok(
        "the folders",
        "stat -c '%n %U:%G %a' /var/lib/gatehouse/apps /var/log/gatehouse /var/cache/gatehouse \
         /etc/gatehouse/hosting.yaml",
    );
    for want in [
        "/var/lib/gatehouse/apps root:root 755",
        "/var/log/gatehouse gatehouse:gatehouse 750",
        "/etc/gatehouse/hosting.yaml root:gatehouse 640",
    ] {
        c.check(modes.contains(want), || format!("{want} not in:\n{modes}"));
    }
    c.same("the daemon is up: /apps/x", c.get("/apps/x").0, 404);
    step(&mut t, "installed and started");

    // A plugin installed into the apps folder: served, with no restart.
    c.ok("install the plugin", "install -m 0644 /srv/e2e/libhello.so /var/lib/gatehouse/apps/");
    c.wait_body("the dropped plugin", "/apps/hello", "Hello World!");

    // A YAML edit alone (no reload): picked up.
    let pid = c.property("gatehouse", "MainPID");
    c.ok(
        "edit hosting.yaml",
        "cat >> /etc/gatehouse/hosting.yaml <<'EOF'\n  - url: /hello\n    path: /var/lib/gatehouse/apps/libhello.so\nEOF",
    );
    c.wait_body("the edited alias", "/hello", "Hello World!");

    // `systemctl reload` after a valid edit: checked, then SIGHUP (no /bin/kill).
    c.ok(
        "install a slow plugin",
        "install -m 0644 /srv/e2e/libpanicky.so /var/lib/gatehouse/apps/",
    );
    c.ok(
        "edit hosting.yaml",
        "cat >> /etc/gatehouse/hosting.yaml <<'EOF'\n  - url: /slow\n    path: /var/lib/gatehouse/apps/libpanicky.so\n    env: {PANICKY_MARKS: /var/log/gatehouse/marks.txt}\nEOF\n\
         cp -p /etc/gatehouse/hosting.yaml /root/hosting.yaml.good",
    );
    c.ok("systemctl reload", "systemctl reload gatehouse");
    c.wait("the reload in the journal", || {
        let j = c.journal();
        if j.contains("configuration reloaded (SIGHUP)") { Ok(()) } else { Err(j) }
    });
    c.wait_body("the reloaded alias", "/slow/x", "ok");
    c.same("the daemon after a reload", c.property("gatehouse", "MainPID"), pid.clone());

    // ... and after an invalid one: it fails, says why, and the old configuration serves.
    c.ok(
        "break hosting.yaml",
        "cat >> /etc/gatehouse/hosting.yaml <<'EOF'\n  - url: /broken\n    pth: nowhere\nEOF",
    );
    let refused = c.sh("systemctl reload gatehouse");
    c.check(!refused.status.success(), || {
        format!("systemctl reload accepted a broken file:\n{}", text(&refused))
    });
    c.wait("the reason in the journal", || {
        let j = c.journal();
        if j.contains("error: unknown key `pth`") { Ok(()) } else { Err(j) }
    });
    c.same("after a refused reload", c.property("gatehouse", "ActiveState"), "active".into());
    c.same("the daemon after a refused reload", c.property("gatehouse", "MainPID"), pid);
    c.same("the old configuration", c.get("/hello"), (200, "Hello World!".to_owned()));
    c.ok("fix hosting.yaml", "cp /root/hosting.yaml.good /etc/gatehouse/hosting.yaml");
    step(&mut t, "plugin, edit, reload");

    // `systemctl stop` during a slow request: the request finishes, then the apps' shutdown.
    let mut slow = Command::new("nsenter");
    slow.args(["-t", &c.leader.to_string(), "-a", "curl", "-sS", "-m", "60"])
        .arg(format!("{URL}/slow/sleep/3000"));
    let slow = std::thread::spawn(move || run_within(&mut slow, Duration::from_secs(90)));
    c.wait("the slow request to reach the app", || {
        let marks = c.sh("cat /var/log/gatehouse/marks.txt");
        let marks = String::from_utf8_lossy(&marks.stdout).into_owned();
        if marks.contains("sleep /slow") { Ok(()) } else { Err(marks) }
    });
    c.ok("systemctl stop", "systemctl stop gatehouse");
    let slow = slow.join().expect("the slow request's thread").unwrap_or_else(|e| c.fail(&e));
    c.same("the request in flight", text(&slow), "slept".into());
    c.same("the stop", c.property("gatehouse", "Result"), "success".into());
    c.same("the daemon's exit status", c.property("gatehouse", "ExecMainStatus"), "0".into());
    let marks = c.ok("the marks", "cat /var/log/gatehouse/marks.txt");
    c.check(marks.ends_with("sleep /slow\nwoke /slow\nshutdown /slow\n"), || {
        format!("the app's calls, in order: {marks}")
    });
    step(&mut t, "stop during a slow request");

    // Socket activation: systemd holds the socket; the first request starts the daemon.
    c.ok("enable the socket", "systemctl enable --now gatehouse.socket");
    let state = |unit| c.property(unit, "ActiveState");
    c.same("the service before a request", state("gatehouse.service"), "inactive".into());
    c.same("the first request", c.get("/hello"), (200, "Hello World!".to_owned()));
    c.same("the service after it", state("gatehouse.service"), "active".into());
    c.same("the socket", state("gatehouse.socket"), "active".into());
    let by = c.property("gatehouse.service", "TriggeredBy");
    c.check(by.contains("gatehouse.socket"), || format!("TriggeredBy={by}"));
    c.ok(
        "back to the service alone",
        "systemctl disable --now gatehouse.socket && systemctl restart gatehouse.service",
    );
    c.wait_body("the service alone", "/hello", "Hello World!");
    step(&mut t, "socket activation");

    // A hung daemon (SIGSTOP) misses its watchdog pings: killed and started again. The
    // test's drop-in shortens the interval, and keeps the aborted daemon from dumping core.
    c.ok(
        "shorten the watchdog",
        "mkdir -p /etc/systemd/system/gatehouse.service.d && printf '[Service]\\nWatchdogSec=5s\\nLimitCORE=0\\n' \
         > /etc/systemd/system/gatehouse.service.d/watchdog.conf && systemctl daemon-reload && \
         systemctl restart gatehouse",
    );
    c.wait_body("the restarted service", "/hello", "Hello World!");
    let (hung, restarts) =
        (c.property("gatehouse", "MainPID"), c.property("gatehouse", "NRestarts"));
    c.ok("hang the daemon", "systemctl kill --kill-whom=main --signal=SIGSTOP gatehouse");
    c.wait("the watchdog to restart the daemon", || {
        let pid = c.property("gatehouse", "MainPID");
        let n = c.property("gatehouse", "NRestarts");
        let active = c.property("gatehouse", "ActiveState");
        if pid != hung && pid != "0" && n != restarts && active == "active" {
            Ok(())
        } else {
            Err(format!("MainPID {pid}, NRestarts {n}, {active}"))
        }
    });
    let j = c.ok("the watchdog's line", "journalctl --no-pager -o cat -u gatehouse.service");
    c.check(j.contains("Watchdog timeout"), || format!("no watchdog timeout in:\n{j}"));
    c.wait_body("the daemon after the watchdog", "/hello", "Hello World!");
    c.ok(
        "remove the watchdog drop-in",
        "rm /etc/systemd/system/gatehouse.service.d/watchdog.conf && systemctl daemon-reload && \
         systemctl restart gatehouse",
    );
    step(&mut t, "watchdog");

    // The journal holds the daemon's own lines (its stderr).
    let j = c.journal();
    for line in ["serving 1 aliases", "SIGHUP: reloading the configuration", "SIGTERM: stopping"] {
        c.check(j.contains(line), || format!("{line:?} not in the journal"));
    }
    // The hardening score of the unit as shipped.
    let exposure = c.exposure();
    eprintln!("debian: systemd-analyze security gatehouse: {exposure}");
    c.check(exposure <= 2.0, || format!("systemd-analyze security gatehouse: {exposure} > 2.0"));

    // The WSGI bridge: its package, the commented example enabled, the seed's sample.py.
    c.ok("apt-get install gatehouse-wsgi", &format!("apt-get install -y {}", deb(&d.wsgi)));
    c.ok(
        "enable the Python example",
        "sed -i -E 's/^#(handlers:|  )/\\1/' /etc/gatehouse/hosting.yaml && \
         gatehouse check --config /etc/gatehouse/hosting.yaml",
    );
    c.ok("install sample.py", "install -m 0644 /srv/e2e/sample.py /var/lib/gatehouse/python/");
    c.wait_body("the seed's sample.py", "/py/sample.py", "Hello World!");
    step(&mut t, "gatehouse-wsgi");

    // Per-app users: the drop-in shipped in the docs; two apps as two users, each unable to
    // read the other's files; the workers keep no capability.
    c.write("/srv/e2e/read.py", READ_PY);
    c.write("/srv/e2e/hang.py", HANG_PY);
    c.ok(
        "two users and their files",
        "for u in alice bob; do \
           useradd --system --no-create-home --shell /usr/sbin/nologin app$u && \
           install -d -m 0755 /srv/$u /srv/$u/www && \
           install -m 0644 /srv/e2e/read.py /srv/$u/www/read.py && \
           echo \"$u's secret\" > /srv/$u/secret && \
           chown app$u:app$u /srv/$u/secret && chmod 0600 /srv/$u/secret; \
         done && install -m 0644 /srv/e2e/hang.py /srv/bob/www/hang.py",
    );
    c.ok(
        "the per-app-users drop-in",
        "mkdir -p /etc/systemd/system/gatehouse.service.d && \
         cp /usr/share/doc/gatehouse/examples/per-app-users.conf \
            /etc/systemd/system/gatehouse.service.d/ && \
         systemctl daemon-reload && systemctl restart gatehouse",
    );
    let with_users = c.exposure();
    eprintln!("debian: systemd-analyze security gatehouse with per-app users: {with_users}");
    c.ok(
        "the two apps' aliases",
        "cat >> /etc/gatehouse/hosting.yaml <<'EOF'
  - url: /alice/
    path: /srv/alice/www/
    isolation: process
    processes: 1
    user: appalice
  - url: /bob/
    path: /srv/bob/www/
    isolation: process
    processes: 1
    user: appbob
    timeout: 2s
EOF",
    );
    let uid = |u: &str| c.ok("a uid", &format!("id -u app{u}")).trim().to_owned();
    for (me, other) in [("alice", "bob"), ("bob", "alice")] {
        let none = "caps=0000000000000000,0000000000000000,0000000000000000";
        c.wait_body(
            &format!("{me} reading its own file"),
            &format!("/{me}/read.py?/srv/{me}/secret"),
            &format!("uid={} read={me}'s secret {none}", uid(me)),
        );
        c.same(
            &format!("{me} reading {other}'s file"),
            c.get(&format!("/{me}/read.py?/srv/{other}/secret")),
            (200, format!("uid={} read=PermissionError {none}", uid(me))),
        );
    }
    // A worker of another user past its timeout: 504, killed (CAP_KILL) and replaced.
    c.same("a hung worker", c.get("/bob/hang.py").0, 504);
    c.wait("the worker's end in the journal", || {
        let j = c.journal();
        if j.contains("ran past its timeout of 2s)") { Ok(()) } else { Err(j) }
    });
    c.wait_body(
        "bob's new worker",
        "/bob/read.py?/srv/bob/secret",
        &format!(
            "uid={} read=bob's secret caps=0000000000000000,0000000000000000,0000000000000000",
            uid("bob")
        ),
    );
    step(&mut t, "per-app users");

    // An upgrade to a rebuilt package keeps the edited conffile; the service comes back.
    let upgrade = build_debs(&work_dir().join(format!("debs-{}/upgrade", std::process::id())), 2)
        .unwrap_or_else(|e| c.fail(&e));
    c.put(
        &upgrade.gatehouse,
        &format!("/srv/e2e/upgrade/{}", upgrade.gatehouse.file_name().unwrap().to_string_lossy()),
    );
    let before = c.ok("the edited conffile", "cat /etc/gatehouse/hosting.yaml");
    let pid = c.property("gatehouse", "MainPID");
    c.ok("apt-get install (upgrade)", "apt-get install -y /srv/e2e/upgrade/gatehouse_*.deb");
    let version = c.ok("the version", "dpkg-query -W -f '${Version}' gatehouse");
    c.same("the version", version.as_str(), "0.1.0-2");
    c.same("the edited conffile", c.ok("the conffile", "cat /etc/gatehouse/hosting.yaml"), before);
    c.ok("no conffile copies", "! ls /etc/gatehouse/*.dpkg-* 2>/dev/null");
    c.wait("the service to come back", || {
        let now = c.property("gatehouse", "MainPID");
        let state = c.property("gatehouse", "ActiveState");
        if now != pid && now != "0" && state == "active" {
            Ok(())
        } else {
            Err(format!("{now} {state}"))
        }
    });
    c.wait_body("after the upgrade", "/py/sample.py", "Hello World!");
    c.wait_body("after the upgrade", "/apps/hello", "Hello World!");
    step(&mut t, "upgrade");

    // Purge (after `systemctl revert`, which removes the operator's drop-ins): no unit, no
    // configuration, logs or cache left; the plugins and scripts deployed stay (user data).
    c.ok("revert the drop-ins", "systemctl revert gatehouse");
    c.ok("apt-get purge", "apt-get purge -y gatehouse-wsgi gatehouse");
    let units = c.ok("the unit files", "systemctl list-unit-files --no-legend 'gatehouse*'; find /etc/systemd /lib/systemd /usr/lib/systemd -name 'gatehouse*'");
    c.check(units.trim().is_empty(), || format!("units left after a purge:\n{units}"));
    c.ok(
        "nothing else left",
        "for p in /etc/gatehouse /var/log/gatehouse /var/cache/gatehouse /run/gatehouse /usr/bin/gatehouse /usr/lib/gatehouse; do \
           if [ -e $p ]; then echo \"$p is left\"; exit 1; fi; done; \
         ! grep -qx gatehouse /proc/[0-9]*/comm",
    );
    // Kept, as Debian keeps them: the operator's plugins and scripts, and the system user
    // (whose uid may still own files).
    c.ok(
        "user data kept",
        "[ -f /var/lib/gatehouse/apps/libhello.so ] && [ -f /var/lib/gatehouse/python/sample.py ] \
         && getent passwd gatehouse",
    );
    step(&mut t, "purge");
    drop(c);
    eprintln!("debian: the whole test took {:.1?}", started.elapsed());
}
