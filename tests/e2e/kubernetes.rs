//! The OCI image and the Kubernetes manifests, for real, without a cluster:
//!
//! - `deploy/kubernetes/*.yaml` pass `kubernetes-validate --strict` (from PyPI, in a
//!   virtualenv cached in the target folder) and hold together (names, grace period).
//! - `deploy/oci/build` makes the image with buildah; under podman, on a read-only root, as
//!   uid 10001, it serves the demo apps (Rust plugins, the WSGI bridge with Debian's Python,
//!   worker processes); as PID 1 it reaps the orphans re-parented to it (from an in-process
//!   script and from a worker process), a crashed worker is replaced without a zombie, and
//!   `podman stop` (SIGTERM) ends it with status 0 after `drain_delay`.
//! - `deploy/kubernetes/podman-play` plays the Deployment, ConfigMap and Secret with `podman
//!   kube play`: the pod serves the demo apps, `/readyz` answers, the Secret reaches an app
//!   through `${DEMO_TOKEN}`, the HPA's metric is exported, and two ConfigMap updates made
//!   the kubelet's way (`..data` swaps on the volume podman made) are applied by the same
//!   daemon, without a restart: one adds an alias pinned with `sha256:`.
//!
//! The container test runs only as root with buildah, podman, runc and python3-yaml (else it
//! says why it is skipped; with `GATEHOUSE_E2E_CONTAINERS=require`, as `.ci/run` sets, that
//! is a failure). Everything it makes is named `gatehouse-e2e-PID...` and removed by that
//! name when it ends (the base image and podman's pause image only if it made them); what a
//! killed run left behind is removed by the next one. Nothing is bound on the host but
//! loopback ports.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{
    artifacts, exchange, get_from, multipart, public_temp_dir, read_lossy, target_dir, wait_for,
    without_package_env, workspace,
};

/// The kubernetes-validate release the manifests are checked with.
const VALIDATOR: &str = "kubernetes-validate==1.37.0";
/// How long the image may take to answer /readyz, a change to be applied, a stop to end.
const READY: Duration = Duration::from_secs(60);

#[test]
fn kubernetes_manifests_pass_schema_validation_and_hold_together() {
    let dir = workspace().join("deploy/kubernetes");
    let mut manifests: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    manifests.sort();
    let names: Vec<String> =
        manifests.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    // kustomization.yaml lists every resource but the HPA example (it needs an adapter).
    let kustomization = read_lossy(&dir.join("kustomization.yaml"));
    for name in &names {
        let listed = kustomization.contains(&format!("- {name}"));
        let expected = !["kustomization.yaml", "hpa.yaml"].contains(&name.as_str());
        assert_eq!(listed, expected, "{name} in kustomization.yaml:\n{kustomization}");
    }
    // The grace period outlasts drain_delay + shutdown_timeout.
    let deployment = read_lossy(&dir.join("deployment.yaml"));
    let config = read_lossy(&dir.join("configmap.yaml"));
    let grace = seconds_after(&deployment, "terminationGracePeriodSeconds:");
    let drain = seconds_after(&config, "drain_delay:");
    let shutdown = seconds_after(&config, "shutdown_timeout:");
    assert!(grace > drain + shutdown, "grace {grace} s <= drain {drain} s + shutdown {shutdown} s");
    // The HPA's metric is the daemon's in-flight gauge.
    assert!(read_lossy(&dir.join("hpa.yaml")).contains("name: gatehouse_requests_in_flight"));

    let Some(validate) = validator() else { return };
    let schemas: Vec<&PathBuf> =
        manifests.iter().filter(|p| !p.ends_with("kustomization.yaml")).collect();
    let out = Command::new(&validate).args(["--strict", "--quiet"]).args(&schemas).output();
    let out = out.unwrap_or_else(|e| panic!("run {}: {e}", validate.display()));
    assert!(
        out.status.success(),
        "kubernetes-validate --strict refused the manifests:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // It does refuse a misspelt field.
    let bad = tempfile::tempdir().unwrap();
    let misspelt = bad.path().join("deployment.yaml");
    std::fs::write(
        &misspelt,
        deployment.replace("readOnlyRootFilesystem", "readOnlyRootFileSystem"),
    )
    .unwrap();
    let out =
        Command::new(&validate).args(["--strict", "--quiet"]).arg(&misspelt).output().unwrap();
    assert!(!out.status.success(), "a misspelt field passed");
}

/// The number in `key: N` or `key: Ns` (the first line holding `key`).
fn seconds_after(text: &str, key: &str) -> u64 {
    let line = text.lines().find(|l| l.contains(key)).unwrap_or_else(|| panic!("no {key}"));
    let value = line.split(key).nth(1).unwrap().split('#').next().unwrap().trim();
    value.trim_end_matches('s').parse().unwrap_or_else(|_| panic!("{key} {value:?}"))
}

/// `kubernetes-validate` in a virtualenv under the target folder, made with pip on first
/// use; None (the test skipped, said why) when that cannot be done.
fn validator() -> Option<PathBuf> {
    let venv = target_dir().join("tools").join(VALIDATOR.replace("==", "-"));
    let bin = venv.join("bin/kubernetes-validate");
    if bin.is_file() {
        return Some(bin);
    }
    let made = Command::new("/usr/bin/python3").arg("-m").arg("venv").arg(&venv).output();
    let why = match made {
        Ok(o) if o.status.success() => {
            let pip = Command::new(venv.join("bin/pip"))
                .args(["install", "--quiet", "--disable-pip-version-check", VALIDATOR])
                .output();
            match pip {
                Ok(o) if o.status.success() && bin.is_file() => return Some(bin),
                Ok(o) => format!(
                    "pip install {VALIDATOR} failed: {}",
                    String::from_utf8_lossy(&o.stderr)
                ),
                Err(e) => format!("cannot run pip: {e}"),
            }
        }
        Ok(o) => format!("python3 -m venv failed: {}", String::from_utf8_lossy(&o.stderr)),
        Err(e) => format!("cannot run /usr/bin/python3: {e}"),
    };
    let _ = std::fs::remove_dir_all(&venv);
    skip_or_fail(&format!("schema validation skipped: {why}"));
    None
}

/// Prints why a test is skipped, or fails it when `.ci/run` requires it to run.
fn skip_or_fail(why: &str) {
    if std::env::var("GATEHOUSE_E2E_CONTAINERS").is_ok_and(|v| v == "require") {
        panic!("{why} (GATEHOUSE_E2E_CONTAINERS=require)");
    }
    eprintln!("skipped: {why}");
}

/// Why the container test cannot run here, if it cannot.
fn cannot_run_containers() -> Option<String> {
    let root = read_lossy(Path::new("/proc/self/status"))
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .is_some_and(|l| l.split_whitespace().nth(2) == Some("0"));
    if !root {
        return Some("not root (buildah and podman need it here)".to_owned());
    }
    for tool in ["buildah", "podman", "runc"] {
        let found = Command::new(tool).arg("--version").stdout(Stdio::null()).status();
        if !found.is_ok_and(|s| s.success()) {
            return Some(format!("{tool} is not installed (apt-get install buildah podman runc)"));
        }
    }
    let yaml = Command::new("python3").args(["-c", "import yaml"]).status();
    if !yaml.is_ok_and(|s| s.success()) {
        return Some("python3 has no yaml module (apt-get install python3-yaml)".to_owned());
    }
    None
}

/// Names this run gives what it makes: `gatehouse-e2e-PID-...`.
fn prefix() -> String {
    format!("gatehouse-e2e-{}", std::process::id())
}

/// Podman and buildah as this test runs them, and everything it made, removed when dropped.
struct Podman {
    /// containers.conf for this test: runc, and open file and process limits the machine
    /// allows (podman's defaults may be above them).
    conf: PathBuf,
    _dir: tempfile::TempDir,
    containers: Vec<String>,
    plays: Vec<String>,
    images: Vec<String>,
    /// podman's pause images (made for the first pod) before this test ran.
    pause_before: Vec<String>,
}

impl Podman {
    fn new() -> Podman {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("containers.conf");
        let nofile = read_lossy(Path::new("/proc/self/limits"))
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .and_then(|l| l.split_whitespace().nth(4).and_then(|h| h.parse::<u64>().ok()))
            .unwrap_or(65536)
            .min(65536);
        std::fs::write(
            &conf,
            format!(
                "[containers]\ndefault_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc=4096:4096\"]\n\
                 [engine]\nruntime = \"runc\"\n"
            ),
        )
        .unwrap();
        let mut p = Podman {
            conf,
            _dir: dir,
            containers: vec![],
            plays: vec![],
            images: vec![],
            pause_before: vec![],
        };
        p.pause_before = p.pause_images();
        p.remove_stale();
        p
    }

    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env("CONTAINERS_CONF", &self.conf).stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd("podman").args(args).output().expect("run podman")
    }

    /// `podman ARGS`, which must succeed: its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "podman {} failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn lines(&self, args: &[&str]) -> Vec<String> {
        let out = self.run(args);
        String::from_utf8_lossy(&out.stdout).lines().map(str::to_owned).collect()
    }

    /// Removes what earlier runs, killed before they could clean up, left: names of a
    /// `gatehouse-e2e-PID` whose process is gone.
    fn remove_stale(&self) {
        let stale = |name: &str| {
            let Some(rest) = name.split("gatehouse-e2e-").nth(1) else { return false };
            let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
            !pid.is_empty() && !Path::new(&format!("/proc/{pid}")).exists()
        };
        let mut plays = std::collections::BTreeSet::new();
        for pod in self.lines(&["pod", "ps", "--format", "{{.Name}}"]) {
            if stale(&pod)
                && let Some(name) = pod.strip_suffix("-pod-0")
            {
                plays.insert(name.to_owned());
            }
        }
        for play in plays {
            let _ = self.play(&["down", &play]);
        }
        for c in self.lines(&["ps", "-a", "--format", "{{.Names}}"]) {
            if stale(&c) {
                self.run(&["rm", "-f", "-t", "0", &c]);
            }
        }
        for v in self.lines(&["volume", "ls", "--format", "{{.Name}}"]) {
            if stale(&v) {
                self.run(&["volume", "rm", "-f", &v]);
            }
        }
        for s in self.lines(&["secret", "ls", "--format", "{{.Name}}"]) {
            if stale(&s) {
                self.run(&["secret", "rm", &s]);
            }
        }
        for i in self.lines(&["images", "--format", "{{.Repository}}:{{.Tag}}"]) {
            if i.starts_with("localhost/gatehouse-e2e:") && stale(&i.replace(':', "-")) {
                self.run(&["rmi", &i]);
            }
        }
    }

    /// `deploy/kubernetes/podman-play ARGS`, its output shown as it goes.
    fn play(&self, args: &[&str]) -> Output {
        let script = workspace().join("deploy/kubernetes/podman-play");
        let out = self.cmd(script.to_str().unwrap()).args(args).output().expect("run podman-play");
        eprint!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        out
    }

    fn pause_images(&self) -> Vec<String> {
        let all = self.lines(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
        all.into_iter().filter(|i| i.starts_with("localhost/podman-pause:")).collect()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        for c in &self.containers {
            if std::thread::panicking() {
                let logs = self.run(&["logs", c]);
                eprintln!(
                    "--- {c} ---\n{}{}",
                    String::from_utf8_lossy(&logs.stdout),
                    String::from_utf8_lossy(&logs.stderr)
                );
            }
            self.run(&["rm", "-f", "-t", "0", c]);
        }
        for play in &self.plays {
            let _ = self.play(&["down", play]);
        }
        for image in &self.images {
            self.run(&["rmi", image]);
        }
        for pause in self.pause_images() {
            if !self.pause_before.contains(&pause) {
                self.run(&["rmi", &pause]);
            }
        }
    }
}

/// A free port on 127.0.0.1 (for podman to publish a container's port on).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Waits until `addr` answers `target` with 200; its body, without a final newline.
fn wait_ok(addr: SocketAddr, target: &str) -> String {
    wait_for(&format!("{addr}{target} to answer 200"), READY, || {
        let raw = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        match crate::harness::try_exchange(addr, raw.as_bytes()) {
            Ok(r) if r.status == 200 => Ok(r.text().trim_end().to_owned()),
            Ok(r) => Err(format!("{r}")),
            Err(e) => Err(e.to_string()),
        }
    })
}

/// Asserts `GET target` answers 200 with a body containing `want`.
#[track_caller]
fn expect(addr: SocketAddr, target: &str, want: &str) {
    let (status, body) = get_from(addr, target);
    assert!(status == 200 && body.contains(want), "{target}: {status} {body:?}, wanted {want:?}");
}

/// A process as /proc tells it.
#[derive(Debug)]
struct Proc {
    pid: u32,
    ppid: u32,
    state: char,
    comm: String,
}

/// Every process in the PID namespace of host process `pid` (a container's).
fn processes_beside(pid: u32) -> Vec<Proc> {
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/pid")).ok();
    let Some(want) = ns(&pid.to_string()) else { return vec![] };
    let mut out = vec![];
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) || ns(&name).as_ref() != Some(&want) {
            continue;
        }
        // `PID (COMM) STATE PPID ...`; COMM may hold spaces and parentheses.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{name}/stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let mut rest = stat[close + 1..].split_whitespace();
        let state = rest.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid = rest.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        out.push(Proc {
            pid: name.parse().unwrap(),
            ppid,
            state,
            comm: stat[open + 1..close].to_owned(),
        });
    }
    out
}

/// A WSGI script whose request leaves an orphan: a child that forks and exits at once. The
/// grandchild, re-parented to the container's PID 1, lives until /srv/signal/go exists.
const ORPHAN_PY: &str = r#"import subprocess

CHILD = """
import os, time
if os.fork() == 0:
    end = time.monotonic() + 120
    while not os.path.exists('/srv/signal/go') and time.monotonic() < end:
        time.sleep(0.05)
    os._exit(0)
os._exit(0)
"""

def application(environ, start_response):
    subprocess.run(["/usr/bin/python3", "-c", CHILD], check=True)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"orphaned\n"]
"#;

#[test]
fn the_image_and_the_manifests_run_under_podman() {
    if let Some(why) = cannot_run_containers() {
        skip_or_fail(&format!("the OCI image and Kubernetes test: {why}"));
        return;
    }
    let started = Instant::now();
    let mut podman = Podman::new();

    // The image, with the documented command (nice: it may build the release binaries).
    let image = format!("localhost/gatehouse-e2e:{}", std::process::id());
    let target = target_dir();
    let mut build = Command::new("nice");
    build
        .args(["-n", "19"])
        .arg(workspace().join("deploy/oci/build"))
        .args(["--tag", &image])
        .env("CARGO_TARGET_DIR", &target)
        .env("CONTAINERS_CONF", &podman.conf)
        .stdin(Stdio::null());
    without_package_env(&mut build);
    let t = Instant::now();
    let out = build.output().expect("run deploy/oci/build");
    let log =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "deploy/oci/build failed:\n{log}");
    podman.images.push(image.clone());
    let base = log
        .lines()
        .find_map(|l| l.strip_prefix("base image ").and_then(|r| r.split_once(": built")))
        .map(|(name, _)| name.to_owned());
    if let Some(base) = base {
        podman.images.push(base);
    }
    let size = podman.ok(&["image", "inspect", "--format", "{{.Size}}", &image]);
    eprintln!(
        "deploy/oci/build: {:.1} s; image {image}: {:.1} MB",
        t.elapsed().as_secs_f64(),
        size.parse::<f64>().unwrap_or(0.0) / 1e6
    );

    run_the_image(&mut podman, &image);
    play_the_manifests(&mut podman, &image, &target);

    eprintln!("the OCI image and Kubernetes test took {:.1} s", started.elapsed().as_secs_f64());
}

/// The image alone: read-only root, uid 10001, PID 1 reaping orphans, workers replaced, a
/// clean stop.
fn run_the_image(podman: &mut Podman, image: &str) {
    // Files the container reads as uid 10001: copies, outside the clone.
    let files = tempfile::Builder::new()
        .prefix("gatehouse-e2e-oci-")
        .tempdir_in(public_temp_dir())
        .unwrap();
    let root = files.path();
    let chmod = |p: &Path, mode: u32| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    chmod(root, 0o755);
    std::fs::write(root.join("orphan.py"), ORPHAN_PY).unwrap();
    chmod(&root.join("orphan.py"), 0o644);
    std::fs::copy(artifacts().plugin("crashy"), root.join("libcrashy.so")).unwrap();
    chmod(&root.join("libcrashy.so"), 0o644);
    std::fs::create_dir(root.join("signal")).unwrap();
    chmod(&root.join("signal"), 0o755);
    let mount = |from: &str, to: &str| format!("{}:{to}:ro", root.join(from).display());

    let name = format!("{}-run", prefix());
    podman.containers.push(name.clone());
    let t = Instant::now();
    // As the README runs it, plus: test files mounted into the image's own folders (its /py/
    // alias is in process, /wsgi/ in worker processes), loopback ports podman picks.
    podman.ok(&[
        "run",
        "-d",
        "--name",
        &name,
        "--read-only",
        "--tmpfs",
        "/var/cache/gatehouse:rw,exec,U",
        "--tmpfs",
        "/var/lib/gatehouse:U",
        "-p",
        "127.0.0.1::8080",
        "-p",
        "127.0.0.1::9090",
        "-v",
        &mount("orphan.py", "/usr/share/gatehouse/python/orphan.py"),
        "-v",
        &mount("orphan.py", "/usr/lib/gatehouse/apps/orphan.py"),
        "-v",
        &mount("libcrashy.so", "/usr/lib/gatehouse/apps/libcrashy.so"),
        "-v",
        &mount("signal", "/srv/signal"),
        image,
    ]);
    let port = |p: &str| -> SocketAddr {
        podman.ok(&["port", &name, p]).lines().next().unwrap().parse().unwrap()
    };
    let (http, metrics) = (port("8080/tcp"), port("9090/tcp"));
    wait_ok(metrics, "/readyz");
    eprintln!(
        "the container answered /readyz {:.2} s after `podman run` began",
        t.elapsed().as_secs_f64()
    );
    assert_eq!(get_from(metrics, "/livez").0, 200);
    expect(http, "/sample", "Hello World!");
    expect(http, "/myapp?id=A001", r#""name": "clock""#);
    expect(http, "/wsgi/hello", "Hello World!");
    expect(http, "/py/myapp.py?id=A001", r#"{"name": "clock", "price": 30}"#);
    // The seed's POST writes its debug log through the image's link into the data volume.
    let body = multipart("b0undary", &[("Content-Disposition: form-data; name=\"id\"", b"A002")]);
    let raw = [
        format!(
            "POST /py/myapp.py HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b0undary\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .into_bytes(),
        body,
    ]
    .concat();
    let r = exchange(http, &raw);
    assert_eq!((r.status, r.text()), (200, r#"{"name": "watch", "price": 120}"#.to_owned()), "{r}");

    let inspect = |f: &str| podman.ok(&["inspect", "--format", f, &name]);
    assert_eq!(inspect("{{.HostConfig.ReadonlyRootfs}}"), "true");
    let init: u32 = inspect("{{.State.Pid}}").parse().unwrap();
    let status = read_lossy(Path::new(&format!("/proc/{init}/status")));
    assert!(status.lines().any(|l| l.starts_with("NSpid:") && l.ends_with("\t1")), "{status}");
    let procs = processes_beside(init);
    let daemon = procs.iter().find(|p| p.ppid == init && p.comm == "gatehouse");
    let daemon = daemon.unwrap_or_else(|| panic!("no daemon under PID 1: {procs:?}")).pid;
    for p in procs.iter().filter(|p| p.comm == "gatehouse") {
        let status = read_lossy(Path::new(&format!("/proc/{}/status", p.pid)));
        let uid = status.lines().find(|l| l.starts_with("Uid:")).unwrap_or_default().to_owned();
        assert!(uid.split_whitespace().skip(1).all(|u| u == "10001"), "{p:?}: {uid}");
    }

    // Orphans from a script in the daemon and from one in a worker process: re-parented to
    // PID 1, and reaped when they exit.
    for target in ["/py/orphan.py", "/wsgi/orphan.py", "/py/orphan.py", "/wsgi/orphan.py"] {
        expect(http, target, "orphaned");
    }
    wait_for("the 4 orphans as children of PID 1", READY, || {
        let procs = processes_beside(init);
        let orphans = procs.iter().filter(|p| p.ppid == init && p.comm == "python3").count();
        if orphans == 4 { Ok(()) } else { Err(format!("{procs:?}")) }
    });
    std::fs::write(root.join("signal/go"), "").unwrap();
    // A worker process crashes: the daemon replaces it.
    assert_eq!(get_from(http, "/wsgi/crashy/segv").0, 502);
    wait_for("the orphans reaped, and no zombie", READY, || {
        let procs = processes_beside(init);
        let left = procs.iter().any(|p| p.state == 'Z' || p.comm == "python3");
        if left { Err(format!("{procs:?}")) } else { Ok(()) }
    });
    expect(http, "/wsgi/hello", "Hello World!");
    assert!(processes_beside(init).iter().any(|p| p.pid == daemon), "the daemon was replaced");

    // SIGTERM to PID 1: drain_delay (5 s), the requests, the apps' shutdown, exit 0.
    let t = Instant::now();
    podman.ok(&["stop", "-t", "40", &name]);
    let stopped = t.elapsed();
    let logs = podman.run(&["logs", &name]);
    let logs = format!(
        "{}{}",
        String::from_utf8_lossy(&logs.stdout),
        String::from_utf8_lossy(&logs.stderr)
    );
    assert_eq!(inspect("{{.State.ExitCode}}"), "0", "{logs}");
    assert!(logs.contains("stopping: running every app's shutdown"), "{logs}");
    assert!(logs.contains("\"GET /sample HTTP/1.1\" 200 12"), "no access log on stdout:\n{logs}");
    assert!(stopped >= Duration::from_secs(5), "stopped in {stopped:?}, before drain_delay");
    eprintln!("podman stop: exit 0 in {:.1} s (drain_delay 5 s)", stopped.as_secs_f64());
}

/// The manifests, played by podman: the pod, the Secret, the ConfigMap's live updates.
fn play_the_manifests(podman: &mut Podman, image: &str, target: &Path) {
    let name = prefix();
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    podman.plays.push(name.clone());
    let t = Instant::now();
    let out = podman.play(&[
        "up",
        "--name",
        &name,
        "--image",
        image,
        "--http",
        &http.to_string(),
        "--metrics",
        &metrics.to_string(),
    ]);
    assert!(out.status.success(), "podman-play up failed");
    eprintln!("the pod was ready {:.2} s after `podman-play up`", t.elapsed().as_secs_f64());
    assert_eq!(wait_ok(metrics, "/readyz"), "ready");
    assert_eq!(get_from(metrics, "/livez").0, 200);
    expect(http, "/sample", "Hello World!");
    expect(http, "/myapp?id=A001", r#""name": "clock""#);
    expect(http, "/wsgi/hello", "Hello World!");
    expect(http, "/py/sample.py", "Hello World!");
    // The Secret, through the environment and ${DEMO_TOKEN} in the ConfigMap.
    expect(http, "/environ/x", r#""DEMO_TOKEN":"not-a-real-secret""#);
    let (_, text) = get_from(metrics, "/metrics");
    assert!(text.contains("gatehouse_requests_in_flight"), "{text}");
    let container = format!("{name}-pod-0-gatehouse");
    let pid_of_daemon = || {
        serde_json::from_str::<serde_json::Value>(&get_from(metrics, "/status.json").1).unwrap()["pid"].clone()
    };
    let before = pid_of_daemon();
    let started_at = podman.ok(&["inspect", "--format", "{{.State.StartedAt}}", &container]);

    // A ConfigMap update, as the kubelet makes it: an alias pinned with `sha256:` (the digest
    // the build wrote), and one whose pin is wrong.
    let sums = read_lossy(&target.join("oci/app/usr/lib/gatehouse/apps/SHA256SUMS"));
    let hello_sha =
        sums.lines().find(|l| l.ends_with("  libhello.so")).unwrap().split(' ').next().unwrap();
    let configmap = read_lossy(&workspace().join("deploy/kubernetes/configmap.yaml"));
    let hosting: String = configmap
        .split_once("hosting.yaml: |\n")
        .unwrap()
        .1
        .lines()
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    let files = tempfile::tempdir().unwrap();
    let pinned = |url: &str, sha: &str| {
        format!(
            "  - url: {url}\n    path: /usr/lib/gatehouse/apps/libhello.so\n    sha256: {sha}\n"
        )
    };
    let first = hosting.replace(
        "aliases:\n",
        &format!(
            "aliases:\n{}{}",
            pinned("/pinned", hello_sha),
            pinned("/mispinned", &"0".repeat(64))
        ),
    );
    std::fs::write(files.path().join("first.yaml"), &first).unwrap();
    let file = files.path().join("first.yaml");
    assert!(podman.play(&["config", &name, file.to_str().unwrap()]).status.success());
    assert_eq!(wait_ok(http, "/pinned"), "Hello World!");
    assert_eq!(get_from(http, "/mispinned").0, 500);
    // A single app that is not loaded makes the pod unready (the Service routes around it).
    let (status, why) = get_from(metrics, "/readyz");
    assert!(status == 503 && why.contains("/mispinned"), "{status} {why}");
    // Again: now a pure `..data` swap, as every later kubelet update is.
    let second =
        hosting.replace("aliases:\n", &format!("aliases:\n{}", pinned("/pinned2", hello_sha)));
    let file = files.path().join("second.yaml");
    std::fs::write(&file, &second).unwrap();
    assert!(podman.play(&["config", &name, file.to_str().unwrap()]).status.success());
    assert_eq!(wait_ok(http, "/pinned2"), "Hello World!");
    assert_eq!(wait_ok(metrics, "/readyz"), "ready");
    wait_for("/pinned to be gone", READY, || match get_from(http, "/pinned").0 {
        404 => Ok(()),
        s => Err(s.to_string()),
    });
    // The same daemon, never restarted.
    let after = pid_of_daemon();
    assert!(before.is_u64() && before == after, "the daemon changed: pid {before} then {after}");
    assert_eq!(podman.ok(&["inspect", "--format", "{{.State.StartedAt}}", &container]), started_at);
    let logs = podman.run(&["logs", &container]);
    let logs =
        String::from_utf8_lossy(&logs.stderr).into_owned() + &String::from_utf8_lossy(&logs.stdout);
    assert!(logs.matches("configuration reloaded (the file changed)").count() >= 2, "{logs}");

    // Down: SIGTERM, drain_delay, exit 0, everything removed.
    let out = podman.play(&["down", &name]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("exited with status 0"), "{text}");
    podman.plays.clear();
    assert!(!podman.run(&["pod", "exists", &format!("{name}-pod-0")]).status.success());
    for v in ["config", "cache", "data", "tmp"] {
        assert!(!podman.run(&["volume", "exists", &format!("{name}-{v}")]).status.success());
    }
}
