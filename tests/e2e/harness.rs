//! The harness: builds the real binary and plugins once, starts a `gatehouse serve` per test
//! in its own temporary folder, and talks raw HTTP/1.1 to it.
//!
//! - [`artifacts`] runs one nested `cargo build` of the daemon and the plugins (once per test
//!   binary, shared by every test thread) into the same target folder as this test binary.
//! - [`Daemon`] writes a `hosting.yaml` into a fresh temp folder, starts the daemon on an
//!   ephemeral 127.0.0.1 port, reads the port from its one stdout line, captures its stderr
//!   (the daemon's log) to `daemon.log` in the folder, and kills it (by its pid) when dropped.
//! - [`Response`] and the request helpers are a tiny HTTP/1.1 client over [`TcpStream`]: the
//!   bytes sent are exactly the bytes given (traversal attempts, `%2F`, raw NULs, odd headers
//!   and multipart bodies reach the daemon untouched), with `Connection: close`, read to EOF.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::Duration;

/// How long the daemon may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one HTTP exchange may take.
const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// The plugins the nested build produces: (placeholder / package name, file name).
pub(crate) const PLUGINS: [(&str, &str); 9] = [
    ("hello", "libhello.so"),
    ("hello-c", "libhello_c.so"),
    ("products", "libproducts.so"),
    ("environ", "libenviron.so"),
    ("panicky", "libpanicky.so"),
    ("probe", "libprobe.so"),
    ("wsgi", "libwsgi.so"),
    ("crashy", "libcrashy.so"),
    ("chat", "libchat.so"),
];

/// The built daemon and plugins.
#[derive(Debug)]
pub(crate) struct Artifacts {
    /// The `gatehouse` binary.
    pub(crate) gatehouse: PathBuf,
    /// `libhello.so`: the seed's sample.py.
    pub(crate) hello: PathBuf,
    /// `libhello_c.so`: the same app written in C against gatehouse.h.
    pub(crate) hello_c: PathBuf,
    /// `libproducts.so`: the seed's myapp.py.
    pub(crate) products: PathBuf,
    /// `libenviron.so`: the conformance app.
    pub(crate) environ: PathBuf,
    /// `libpanicky.so`: panics on PATH_INFO `/panic`.
    pub(crate) panicky: PathBuf,
    /// `libprobe.so`: streamed replies with handshakes, declared lengths, body echo, uploads.
    pub(crate) probe: PathBuf,
    /// `libwsgi.so`: the WSGI bridge, the handler plugin for `.py` files.
    pub(crate) wsgi: PathBuf,
    /// `libchat.so`: the WebSocket chat room.
    pub(crate) chat: PathBuf,
    /// `libcrashy.so`: segfaults, aborts, exits, hangs or leaks on request.
    pub(crate) crashy: PathBuf,
}

impl Artifacts {
    /// A copy of the `gatehouse` binary that every user can exec, for tests that run the
    /// daemon or its workers as another user (`nobody`): the build's own copy may sit under a
    /// private folder (a clone in a `mktemp -d` folder or in root's home, mode 0700) that such
    /// a user cannot pass through. Made once per test binary, in [`public_temp_dir`].
    pub(crate) fn public_gatehouse(&self) -> &'static Path {
        static COPY: OnceLock<PathBuf> = OnceLock::new();
        COPY.get_or_init(|| {
            let base = public_temp_dir();
            remove_stale_copies(&base);
            let dir = tempfile::Builder::new()
                .prefix("gatehouse-e2e-bin-")
                .tempdir_in(&base)
                .expect("temp dir for the binary")
                .keep();
            // Whose copy it is, for the next run's clean-up.
            std::fs::write(dir.join("pid"), std::process::id().to_string()).expect("write pid");
            make_public(&dir, 0o755);
            let to = dir.join("gatehouse");
            if std::fs::hard_link(&self.gatehouse, &to).is_err() {
                std::fs::copy(&self.gatehouse, &to).unwrap_or_else(|e| {
                    panic!("copy {} to {}: {e}", self.gatehouse.display(), to.display())
                });
            }
            make_public(&to, 0o755);
            to
        })
    }

    /// The plugin file of package `name` (one of [`PLUGINS`]).
    pub(crate) fn plugin(&self, name: &str) -> &Path {
        match name {
            "hello" => &self.hello,
            "hello-c" => &self.hello_c,
            "products" => &self.products,
            "environ" => &self.environ,
            "panicky" => &self.panicky,
            "probe" => &self.probe,
            "wsgi" => &self.wsgi,
            "crashy" => &self.crashy,
            "chat" => &self.chat,
            other => panic!("no plugin named {other}"),
        }
    }
}

/// Where this test binary was built: `(target dir, profile folder name, target triple)`.
/// The binary is `TARGET/[TRIPLE/]PROFILE/deps/e2e-HASH`.
pub(crate) fn build_layout() -> Result<(PathBuf, String, Option<String>), String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the test binary: {e}"))?;
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("{} is not in TARGET/PROFILE/deps", exe.display()))?;
    let profile = profile_dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{} has no profile folder", exe.display()))?
        .to_owned();
    let above =
        profile_dir.parent().ok_or_else(|| format!("{} has no target dir", exe.display()))?;
    // Cargo tags the root of every target dir with CACHEDIR.TAG; one level below it means a
    // `--target TRIPLE` build.
    if !above.join("CACHEDIR.TAG").exists()
        && let Some(root) = above.parent().filter(|r| r.join("CACHEDIR.TAG").exists())
    {
        let triple = above.file_name().and_then(|n| n.to_str()).map(str::to_owned);
        return Ok((root.to_owned(), profile, triple));
    }
    Ok((above.to_owned(), profile, None))
}

/// Removes from `cmd`'s environment the e2e package's own variables, which Cargo sets when
/// it runs this test binary (CARGO_MANIFEST_DIR, CARGO_PKG_*...), for a nested cargo
/// command. Passed on, they would differ from what the outer build saw, and build scripts
/// that watch them (ring's) would rerun, rebuilding the TLS stack, actix and the daemon
/// there and again in the next outer `cargo test`.
pub(crate) fn without_package_env(cmd: &mut Command) {
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let per_package = ["CARGO_MANIFEST_", "CARGO_PKG_", "CARGO_BIN_", "CARGO_CRATE_"];
        if per_package.iter().any(|p| name.starts_with(p))
            || ["CARGO_PRIMARY_PACKAGE", "CARGO_TARGET_TMPDIR", "CARGO_RUSTC_CURRENT_DIR"]
                .contains(&name.as_ref())
        {
            cmd.env_remove(name.as_ref());
        }
    }
}

/// The target folder this test binary was built in (the nested builds' too).
pub(crate) fn target_dir() -> PathBuf {
    build_layout().unwrap_or_else(|e| panic!("{e}")).0
}

/// The workspace's root folder.
pub(crate) fn workspace() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest_dir.parent().expect("the e2e package has a parent folder").to_owned()
}

fn build() -> Result<Artifacts, String> {
    let (target_dir, profile, triple) = build_layout()?;
    // Cargo sets CARGO_MANIFEST_DIR when it runs the tests; the compile-time value is the
    // fallback (it is stale if the workspace was moved after this binary was built).
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    let workspace = manifest_dir.parent().ok_or("the e2e package has no parent folder")?.to_owned();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    without_package_env(&mut cmd);
    cmd.current_dir(&workspace)
        .arg("build")
        // The outer `cargo test` has already settled Cargo.lock; never rewrite it here.
        .arg("--locked")
        .arg("--manifest-path")
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .arg("--profile")
        .arg(if profile == "debug" { "dev" } else { profile.as_str() })
        .args(["-p", "gatehouse"]);
    for (package, _) in PLUGINS {
        cmd.args(["-p", package]);
    }
    if let Some(triple) = &triple {
        cmd.args(["--target", triple]);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", Path::new(&cargo).display()))?;
    if !out.status.success() {
        return Err(format!(
            "the nested `cargo build` failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut dir = target_dir;
    if let Some(triple) = triple {
        dir.push(triple);
    }
    dir.push(profile);
    let found = |name: &str| {
        let p = dir.join(name);
        if p.is_file() { Ok(p) } else { Err(format!("the build did not produce {}", p.display())) }
    };
    Ok(Artifacts {
        gatehouse: found("gatehouse")?,
        hello: found("libhello.so")?,
        hello_c: found("libhello_c.so")?,
        products: found("libproducts.so")?,
        environ: found("libenviron.so")?,
        panicky: found("libpanicky.so")?,
        probe: found("libprobe.so")?,
        wsgi: found("libwsgi.so")?,
        crashy: found("libcrashy.so")?,
        chat: found("libchat.so")?,
    })
}

/// The built daemon and plugins, built once per test binary by a nested `cargo build`.
///
/// `cargo test` releases its build lock before it runs the tests, so the nested build takes
/// the lock and finds everything fresh (or builds what is stale).
pub(crate) fn artifacts() -> &'static Artifacts {
    static BUILT: OnceLock<Result<Artifacts, String>> = OnceLock::new();
    match BUILT.get_or_init(build) {
        Ok(a) => a,
        Err(e) => panic!("{e}"),
    }
}

/// A folder for temp folders that every user can pass through: the temp dir when it and
/// every folder above it are searchable by others, else `/tmp`.
pub(crate) fn public_temp_dir() -> PathBuf {
    use std::os::unix::fs::PermissionsExt as _;
    let tmp = std::fs::canonicalize(std::env::temp_dir()).unwrap_or_else(|_| "/tmp".into());
    let searchable = tmp.ancestors().all(|d| {
        std::fs::metadata(d).is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o001 != 0)
    });
    if searchable { tmp } else { PathBuf::from("/tmp") }
}

/// Removes the binary copies of earlier test runs whose process has ended (a static is never
/// dropped, so each run leaves its copy behind).
fn remove_stale_copies(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let ours = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with("gatehouse-e2e-bin-"));
        let pid = std::fs::read_to_string(path.join("pid")).ok();
        if ours
            && let Some(pid) = pid.and_then(|p| p.trim().parse::<u32>().ok())
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

/// Copies the built plugins named by package (`crashy`, `probe`, ...) into `root/plugins`,
/// the folder and the files readable by every user (for workers run as `nobody`).
pub(crate) fn public_plugins(root: &Path, packages: &[&str]) {
    let dir = root.join("plugins");
    std::fs::create_dir_all(&dir).expect("create plugins/");
    for package in packages {
        let from = artifacts().plugin(package);
        let to = dir.join(from.file_name().expect("a plugin file name"));
        std::fs::copy(from, &to)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
        make_public(&to, 0o755);
    }
    make_public(&dir, 0o755);
}

/// `gatehouse check --config FILE`: its exit code and its stderr (where it prints errors).
pub(crate) fn check(config: &Path) -> (Option<i32>, String) {
    let mut cmd = Command::new(&artifacts().gatehouse);
    cmd.args(["check", "--config"]).arg(config).env_remove("RUST_LOG");
    let o = output_within(&mut cmd, Duration::from_secs(60));
    (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// Runs `cmd` with its output captured; kills it if it still runs after `limit` (a `serve`
/// that should have refused to start).
pub(crate) fn output_within(cmd: &mut Command, limit: Duration) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the command");
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().expect("wait").is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait_with_output().expect("output")
}

/// Sets `path`'s mode (a temp folder is made 0700).
fn make_public(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} {}: {e}", path.display()));
}

/// Puts a copy of `from` at `to`, atomically (a hard link when possible, else a copy renamed
/// into place), so a daemon never sees a half-written plugin.
pub(crate) fn install(from: &Path, to: &Path) {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).expect("create the plugin's folder");
    }
    let tmp = to.with_extension("installing");
    if std::fs::hard_link(from, &tmp).is_err() {
        std::fs::copy(from, &tmp)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), tmp.display()));
    }
    std::fs::rename(&tmp, to).expect("rename the plugin into place");
}

/// Replaces `{hello}`, `{hello-c}`, `{products}`, `{environ}`, `{panicky}`, `{probe}`,
/// `{wsgi}`, `{crashy}`, `{chat}` (the built plugins) and `{dir}`
/// (the test's temp folder) in a configuration text.
pub(crate) fn expand(yaml: &str, dir: &Path) -> String {
    let a = artifacts();
    let mut out = yaml.replace("{dir}", &dir.display().to_string());
    for (name, _) in PLUGINS {
        out = out.replace(&format!("{{{name}}}"), &a.plugin(name).display().to_string());
    }
    out
}

/// A running `gatehouse serve` in its own temp folder. Dropping it kills the process.
#[derive(Debug)]
pub(crate) struct Daemon {
    child: Child,
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    /// The test's temp folder: `hosting.yaml`, `daemon.log`, `apps/` (a folder holding a
    /// copy of every plugin), `cwd/` (the daemon's empty working directory).
    pub(crate) dir: tempfile::TempDir,
    /// Its stdout lines after the first.
    stdout: mpsc::Receiver<String>,
}

impl Daemon {
    /// Starts a daemon on `yaml` (see [`expand`] for placeholders).
    pub(crate) fn start(yaml: &str) -> Daemon {
        Daemon::start_with(yaml, |_| {})
    }

    /// Starts a daemon on `yaml` after `prepare` has set up the temp folder (given as the
    /// argument) beyond the defaults.
    pub(crate) fn start_with(yaml: &str, prepare: impl FnOnce(&Path)) -> Daemon {
        Daemon::start_opts(yaml, prepare, true)
    }

    /// Like [`Daemon::start_with`]; with `listen_flag` false the daemon listens where the
    /// configuration says (the test must give free loopback ports), not on `--listen
    /// 127.0.0.1:0`.
    pub(crate) fn start_opts(yaml: &str, prepare: impl FnOnce(&Path), listen_flag: bool) -> Daemon {
        Daemon::start_env(yaml, prepare, listen_flag, &[])
    }

    /// Like [`Daemon::start_opts`], with `env` added to the daemon's environment.
    pub(crate) fn start_env(
        yaml: &str,
        prepare: impl FnOnce(&Path),
        listen_flag: bool,
        env: &[(&str, &str)],
    ) -> Daemon {
        Daemon::start_cmd(yaml, prepare, listen_flag, env, &[])
    }

    /// Like [`Daemon::start_env`], with the daemon started through `wrapper` (a command and
    /// its arguments that execs the rest, like `systemd-socket-activate -l ADDR`).
    pub(crate) fn start_cmd(
        yaml: &str,
        prepare: impl FnOnce(&Path),
        listen_flag: bool,
        env: &[(&str, &str)],
        wrapper: &[&str],
    ) -> Daemon {
        Daemon::start_in(yaml, prepare, listen_flag, env, wrapper, false, None)
    }

    /// Starts a daemon on `yaml` that other users can reach: its temp folder (mode 0755) is
    /// in [`public_temp_dir`] and it runs [`Artifacts::public_gatehouse`], so workers it starts
    /// as another user can exec it wherever the clone lives.
    pub(crate) fn start_public(yaml: &str, prepare: impl FnOnce(&Path)) -> Daemon {
        Daemon::start_in(yaml, prepare, true, &[], &[], true, None)
    }

    /// Like [`Daemon::start_public`], running the daemon binary at `binary` instead.
    pub(crate) fn start_public_from(
        yaml: &str,
        prepare: impl FnOnce(&Path),
        binary: &Path,
    ) -> Daemon {
        Daemon::start_in(yaml, prepare, true, &[], &[], true, Some(binary))
    }

    fn start_in(
        yaml: &str,
        prepare: impl FnOnce(&Path),
        listen_flag: bool,
        env: &[(&str, &str)],
        wrapper: &[&str],
        public: bool,
        binary: Option<&Path>,
    ) -> Daemon {
        let a = artifacts();
        let mut builder = tempfile::Builder::new();
        builder.prefix("gatehouse-e2e-");
        let dir = if public {
            let dir = builder.tempdir_in(public_temp_dir()).expect("temp dir");
            make_public(dir.path(), 0o755);
            dir
        } else {
            builder.tempdir().expect("temp dir")
        };
        let gatehouse = match binary {
            Some(b) => b,
            None if public => a.public_gatehouse(),
            None => a.gatehouse.as_path(),
        };
        // Canonical, so paths the daemon reports compare equal to ours.
        let root = std::fs::canonicalize(dir.path()).expect("canonical temp dir");
        for (name, file) in PLUGINS {
            install(a.plugin(name), &root.join("apps").join(file));
        }
        std::fs::create_dir_all(root.join("cwd")).expect("create cwd");
        prepare(&root);
        let config = root.join("hosting.yaml");
        std::fs::write(&config, expand(yaml, &root)).expect("write hosting.yaml");
        let log = std::fs::File::create(root.join("daemon.log")).expect("create daemon.log");
        let listen: &[&str] = if listen_flag { &["--listen", "127.0.0.1:0"] } else { &[] };
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(gatehouse);
                c
            }
            None => Command::new(gatehouse),
        };
        let mut child = command
            .arg("serve")
            .arg("--config")
            .arg(&config)
            .args(listen)
            // Relative paths must resolve against the config's folder, not the daemon's
            // working directory: give it one nothing should land in.
            .current_dir(root.join("cwd"))
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", gatehouse.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(line)) = lines.next() {
                if tx.send(line).is_err() {
                    break;
                }
            }
            // Keeps draining stdout until the daemon exits, so it never blocks on a write.
            for _ in lines {}
        });
        let addr = match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line
                .strip_prefix("gatehouse listening on http://")
                .or_else(|| line.strip_prefix("gatehouse listening on https://"))
                .and_then(|a| a.parse::<SocketAddr>().ok())
                .unwrap_or_else(|| {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "unexpected first stdout line {line:?}; daemon log:\n{}",
                        read_lossy(&root.join("daemon.log"))
                    )
                }),
            Err(e) => {
                let _ = child.kill();
                let status = child.wait();
                panic!(
                    "the daemon did not report its address ({e}; exit: {status:?}); daemon log:\n{}",
                    read_lossy(&root.join("daemon.log"))
                )
            }
        };
        assert!(addr.ip().is_loopback(), "bound {addr}, not loopback");
        Daemon { child, addr, dir, stdout: rx }
    }

    /// The daemon's pid.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (a `kill` name: `HUP`, `TERM`, ...) to the daemon's pid.
    pub(crate) fn signal(&self, signal: &str) {
        let pid = self.pid().to_string();
        let sent = Command::new("kill").args([&format!("-{signal}"), &pid]).status().expect("kill");
        assert!(sent.success(), "kill -{signal} {pid} failed");
    }

    /// Replaces `hosting.yaml` with `yaml` (placeholders expanded) the way editors do: a new
    /// file renamed over the old one.
    pub(crate) fn write_config(&self, yaml: &str) {
        let root = self.path("");
        let tmp = root.join(".hosting.yaml.swp");
        std::fs::write(&tmp, expand(yaml, &root)).expect("write the new hosting.yaml");
        std::fs::rename(&tmp, root.join("hosting.yaml")).expect("rename hosting.yaml into place");
    }

    /// The next line the daemon prints on stdout, within `timeout`.
    pub(crate) fn stdout_line(&self, timeout: Duration) -> Option<String> {
        self.stdout.recv_timeout(timeout).ok()
    }

    /// How many times `needle` occurs in the daemon's log.
    pub(crate) fn log_count(&self, needle: &str) -> usize {
        self.log().matches(needle).count()
    }

    /// A path inside the temp folder.
    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        std::fs::canonicalize(self.dir.path()).expect("canonical temp dir").join(rel)
    }

    /// What the daemon wrote to stderr so far (its log).
    pub(crate) fn log(&self) -> String {
        read_lossy(&self.path("daemon.log"))
    }

    /// Sends `raw` exactly and reads the reply.
    pub(crate) fn request(&self, raw: &[u8]) -> Response {
        exchange(self.addr, raw)
    }

    /// `METHOD target` with `headers` (each `Name: value`) and `body`, plus Host,
    /// `Connection: close` and, when `body` is not empty, Content-Length.
    pub(crate) fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[&str],
        body: &[u8],
    ) -> Response {
        let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: {}\r\n", self.addr).into_bytes();
        for h in headers {
            raw.extend_from_slice(h.as_bytes());
            raw.extend_from_slice(b"\r\n");
        }
        if !body.is_empty() {
            raw.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        raw.extend_from_slice(b"Connection: close\r\n\r\n");
        raw.extend_from_slice(body);
        self.request(&raw)
    }

    /// `GET target` (path and query, sent as written).
    pub(crate) fn get(&self, target: &str) -> Response {
        self.send("GET", target, &[], b"")
    }

    /// `POST target` with a Content-Type and a body.
    pub(crate) fn post(&self, target: &str, content_type: &str, body: &[u8]) -> Response {
        self.send("POST", target, &[&format!("Content-Type: {content_type}")], body)
    }
}

impl Daemon {
    /// Stops the daemon as systemd does, with SIGTERM to its pid, and waits (up to 20 s)
    /// for it to exit.
    pub(crate) fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("run kill");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the daemon") {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the daemon did not stop on SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // Child::kill signals this child's own pid (SIGKILL); wait reaps it.
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- daemon log ({}) ---\n{}--- end of daemon log ---",
                self.addr,
                self.log()
            );
        }
    }
}

/// Polls `probe` every 25 ms until it gives a value, failing the test with `what` and the
/// last attempt after `timeout`.
pub(crate) fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match probe() {
            Ok(v) => return v,
            Err(last) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "timed out after {timeout:?} waiting for {what}; last: {last}"
                );
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A file's text, or a note saying why it could not be read.
pub(crate) fn read_lossy(path: &Path) -> String {
    match std::fs::read(path) {
        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// One HTTP reply.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    /// The status code.
    pub(crate) status: u16,
    /// Headers in order received, repeats kept.
    pub(crate) headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub(crate) body: Vec<u8>,
}

impl Response {
    /// The first header `name` (case-insensitive).
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Every header `name` (case-insensitive), in order.
    pub(crate) fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The body as text (lossy).
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the reply when it is not.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {self}"))
    }

    /// Asserts the status, showing the whole reply when it differs.
    #[track_caller]
    pub(crate) fn expect_status(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "unexpected status: {self}");
        self
    }
}

impl std::fmt::Display for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "HTTP {}", self.status)?;
        for (n, v) in &self.headers {
            writeln!(f, "{n}: {v}")?;
        }
        write!(f, "\n{}", String::from_utf8_lossy(&self.body))
    }
}

/// Connects, writes `raw`, reads to EOF and parses the reply.
/// `GET target` to any address (another listener of the daemon, or from another thread):
/// the status and the body as text.
pub(crate) fn get_from(addr: SocketAddr, target: &str) -> (u16, String) {
    let raw = format!("GET {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let r = exchange(addr, raw.as_bytes());
    (r.status, r.text())
}

pub(crate) fn exchange(addr: SocketAddr, raw: &[u8]) -> Response {
    try_exchange(addr, raw).unwrap_or_else(|e| {
        panic!("no reply from {addr} ({e}) to:\n{}", String::from_utf8_lossy(raw))
    })
}

/// Like [`exchange`], but a connection refused, or closed or reset before any reply byte, is
/// an error rather than a failed test: an address being closed resets the connections the
/// kernel had queued for it.
pub(crate) fn try_exchange(addr: SocketAddr, raw: &[u8]) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    // A daemon that refuses a request early (413) may close before reading all of it; the
    // reply is what matters, so a failed write is not fatal.
    let write_error = stream.write_all(raw).err();
    let mut reply = Vec::new();
    let read_error = stream.read_to_end(&mut reply).err();
    if reply.is_empty() {
        let why = format!("write error: {write_error:?}, read error: {read_error:?}");
        let kind =
            read_error.or(write_error).map_or(std::io::ErrorKind::UnexpectedEof, |e| e.kind());
        return Err(std::io::Error::new(kind, why));
    }
    let head_request = raw.starts_with(b"HEAD ");
    Ok(parse(&reply, head_request).unwrap_or_else(|e| {
        panic!(
            "bad reply ({e}):\n{}\nto:\n{}",
            String::from_utf8_lossy(&reply),
            String::from_utf8_lossy(raw)
        )
    }))
}

/// Parses a whole HTTP/1.1 reply read to EOF (a reply read over another transport, TLS).
pub(crate) fn parse_reply(reply: &[u8], head_request: bool) -> Result<Response, String> {
    parse(reply, head_request)
}

/// Parses a whole HTTP/1.1 reply read to EOF.
fn parse(reply: &[u8], head_request: bool) -> Result<Response, String> {
    let end = reply.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no end of headers")?;
    let head = std::str::from_utf8(&reply[..end]).map_err(|_| "headers are not UTF-8")?;
    let rest = &reply[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("no status line")?;
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(format!("bad status line {status_line:?}"));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let mut headers = Vec::new();
    for line in lines {
        let (n, v) = line.split_once(':').ok_or_else(|| format!("bad header line {line:?}"))?;
        headers.push((n.trim().to_owned(), v.trim().to_owned()));
    }
    let mut resp = Response { status, headers, body: Vec::new() };
    let chunked = resp
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    if head_request {
        resp.body = rest.to_vec();
    } else if chunked {
        resp.body = dechunk(rest)?;
    } else if let Some(len) = resp.header("content-length") {
        let len: usize = len.parse().map_err(|_| format!("bad Content-Length {len:?}"))?;
        if rest.len() != len {
            return Err(format!("Content-Length {len} but {} body bytes", rest.len()));
        }
        resp.body = rest.to_vec();
    } else {
        resp.body = rest.to_vec();
    }
    Ok(resp)
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n").ok_or("chunk size line not ended")?;
        let size_text = std::str::from_utf8(&data[..eol]).map_err(|_| "chunk size not text")?;
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        data = &data[eol + 2..];
        if size == 0 {
            return Ok(body);
        }
        if data.len() < size + 2 || &data[size..size + 2] != b"\r\n" {
            return Err("truncated chunk".to_owned());
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

/// Builds a `multipart/form-data` body from parts, each `(headers, content)`, as browsers
/// lay it out: `--BOUNDARY\r\nHEADERS\r\n\r\nCONTENT\r\n` per part, then `--BOUNDARY--\r\n`.
pub(crate) fn multipart(boundary: &str, parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (headers, content) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n{headers}\r\n\r\n").as_bytes());
        body.extend_from_slice(content);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    body
}

/// Splits a debug-log line, the seed's `YYYY-MM-DD HH:MM:SS ` stamp then `[req ID] ` then
/// the message, into the request id and the message.
pub(crate) fn debug_line(line: &str) -> Option<(u64, &str)> {
    let b = line.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let digits = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];
    let seps = [(4, b'-'), (7, b'-'), (10, b' '), (13, b':'), (16, b':'), (19, b' ')];
    if !(digits.iter().all(|&i| b[i].is_ascii_digit()) && seps.iter().all(|&(i, c)| b[i] == c)) {
        return None;
    }
    let rest = line[20..].strip_prefix("[req ")?;
    let (id, message) = rest.split_once("] ")?;
    Some((id.parse().ok()?, message))
}

/// The message of a debug-log line (see [`debug_line`]).
pub(crate) fn debug_line_message(line: &str) -> Option<&str> {
    debug_line(line).map(|(_, m)| m)
}

/// The messages of a debug log as they are now, each line's stamp checked; empty if the
/// file does not exist.
#[track_caller]
pub(crate) fn debug_messages(path: &Path) -> Vec<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    };
    text.lines()
        .map(|l| {
            debug_line_message(l)
                .unwrap_or_else(|| {
                    panic!("debug log line without a `YYYY-MM-DD HH:MM:SS [req N] ` prefix: {l:?}")
                })
                .to_owned()
        })
        .collect()
}

/// The messages of a log the seed's own Python `debugLog` writes (`YYYY-MM-DD HH:MM:SS
/// message`, no request id: the app writes it, not the daemon).
#[track_caller]
pub(crate) fn seed_debug_messages(path: &Path) -> Vec<String> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
        Err(e) => panic!("cannot read {}: {e}", path.display()),
    };
    text.lines()
        .map(|l| match l.get(..20) {
            Some(stamp) if stamp.as_bytes()[4] == b'-' && stamp.as_bytes()[19] == b' ' => {
                l[20..].to_owned()
            }
            _ => panic!("seed debug log line without a `YYYY-MM-DD HH:MM:SS ` prefix: {l:?}"),
        })
        .collect()
}

/// The messages of a debug log once it has at least `n` lines (the daemon writes them on
/// its log thread, just after the reply): waits up to 10 s, then a moment more so that an
/// extra line would show too.
#[track_caller]
pub(crate) fn wait_debug_messages(path: &Path, n: usize) -> Vec<String> {
    wait_until(&format!("{n} lines in {}", path.display()), || debug_messages(path).len() >= n);
    std::thread::sleep(Duration::from_millis(50));
    debug_messages(path)
}

/// Polls `done` every 10 ms until it holds; panics after 10 s naming `what`.
#[track_caller]
pub(crate) fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn harness_parses_chunked_and_sized_replies() {
    let r = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX: 1\r\nx: 2\r\n\r\n5\r\nHello\r\n7;ext=1\r\n World!\r\n0\r\n\r\n", false)
        .expect("chunked");
    assert_eq!((r.status, r.body.as_slice()), (200, &b"Hello World!"[..]));
    assert_eq!(r.header_all("X"), ["1", "2"]);
    let r = parse(b"HTTP/1.1 404 Not Found\r\ncontent-length: 3\r\n\r\nabc", false).expect("sized");
    assert_eq!((r.status, r.text().as_str(), r.header("Content-Length")), (404, "abc", Some("3")));
    assert!(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nabc", false).is_err());
    assert_eq!(
        debug_line("2021-04-13 10:26:26 [req 42] content_len: 137"),
        Some((42, "content_len: 137"))
    );
    assert_eq!(debug_line_message("2021-04-13 10:26:26 content_len: 137"), None);
    assert_eq!(debug_line_message("2021-04-13T10:26:26 [req 1] x"), None);
}
