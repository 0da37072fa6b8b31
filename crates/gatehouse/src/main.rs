//! The `gatehouse` command: `serve`, `check`, `routes`, `reload`, `reopen-logs` and `new`. The binary's edge:
//! arguments, the daemon's own log, the pid file, exit codes; everything else is in the
//! library.

use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use gatehouse::host::Host;
use gatehouse::host::Live;
use gatehouse::http::{Control, Hooks, Signals};
use gatehouse::plugin::staging::Cache;
use gatehouse::reload::{Reloader, Trigger};

/// Hosts app plugins (cdylibs) behind one HTTP daemon, configured like mod_wsgi's
/// WSGIScriptAlias.
#[derive(Debug, Parser)]
#[command(name = "gatehouse", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the aliases of a configuration until SIGINT or SIGTERM. SIGHUP (or an edit of
    /// the file) reloads the configuration; replaced plugin files are swapped live.
    Serve {
        /// The configuration file.
        #[arg(long, short, default_value = "hosting.yaml")]
        config: PathBuf,
        /// Listen on these addresses instead of the configuration's `listen` (repeatable;
        /// port 0 picks a free port).
        #[arg(long)]
        listen: Vec<std::net::SocketAddr>,
    },
    /// Validate a configuration and print its route table, like `apachectl configtest`.
    /// Exits 1 on errors, printed as FILE:LINE:COLUMN: message.
    Check {
        /// The configuration file.
        #[arg(long, short, default_value = "hosting.yaml")]
        config: PathBuf,
    },
    /// Check a configuration, then ask the daemon serving it (the pid in its `pid_file`) to
    /// reload it, like `apachectl graceful`: the same as `kill -HUP PID`.
    Reload {
        /// The configuration file.
        #[arg(long, short, default_value = "hosting.yaml")]
        config: PathBuf,
        /// Signal this process instead of the one in `pid_file` (systemd's `$MAINPID`); it
        /// must be a running gatehouse.
        #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
        pid: Option<i32>,
    },
    /// Ask the daemon serving a configuration to reopen its log files (after logrotate
    /// moved them): the same as `kill -USR1 PID`.
    ReopenLogs {
        /// The configuration file.
        #[arg(long, short, default_value = "hosting.yaml")]
        config: PathBuf,
        /// Signal this process instead of the one in `pid_file` (systemd's `$MAINPID`); it
        /// must be a running gatehouse.
        #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
        pid: Option<i32>,
    },
    /// Print the route table, or explain how one URL is answered.
    Routes {
        /// The configuration file.
        #[arg(long, short, default_value = "hosting.yaml")]
        config: PathBuf,
        /// A URL or path to explain (which alias wins and why, SCRIPT_NAME, PATH_INFO,
        /// the plugin file, or why it is 400/403/404).
        url: Option<String>,
    },
    /// Write a new plugin crate, NAME, into DIR (default ./NAME): Cargo.toml, src/lib.rs
    /// (GET, POST, JSON, 404/405), a README with the alias that serves it. It builds with
    /// cargo against the SDK sources beside this daemon, with no registry.
    New {
        /// The plugin's (package and library) name.
        name: String,
        /// Where to write it (must not exist, or be empty).
        dir: Option<PathBuf>,
        /// The folder holding the SDK crates `gatehouse-app/` and `gatehouse-abi/` (default:
        /// the installed SDK, else the checkout this binary was built from).
        #[arg(long)]
        sdk: Option<PathBuf>,
    },
    /// Serve one plugin or one WSGI script at / on 127.0.0.1, with no configuration file,
    /// like `mod_wsgi-express start-server app.py`: for a developer's machine. Edits of the
    /// script and rebuilds of the plugin are served at once; Ctrl-C stops.
    ServeApp {
        /// The plugin (`libNAME.so`) or the `.py` script.
        file: PathBuf,
        /// The port on 127.0.0.1 (0 picks a free one).
        #[arg(long, default_value_t = 8000)]
        port: u16,
    },
    /// A worker process of an alias with `isolation: process` (started by the daemon only;
    /// the alias's URL is shown in `ps`).
    #[command(hide = true)]
    Worker {
        /// The alias it serves, for `ps`.
        alias: Option<String>,
    },
}

/// Loads a configuration, printing warnings; on errors prints them all and returns None.
fn load_config(path: &Path) -> Option<gatehouse_config::Config> {
    match gatehouse_config::load(path) {
        Ok(loaded) => {
            for w in &loaded.warnings {
                eprintln!("{w}");
            }
            Some(loaded.config)
        }
        Err(e) => {
            eprintln!("{e}");
            None
        }
    }
}

/// The daemon's own log, on stderr until [`start_logs`] applies the configuration's.
fn init_logging() -> anyhow::Result<gatehouse::logs::Guard> {
    gatehouse::logs::start_error_log().context("cannot start the daemon's log (bad RUST_LOG?)")
}

/// Checks the log folders and files of `config` and switches to its logs; the error names
/// every problem and its fix, so `serve` stops before binding.
fn start_logs(config: &gatehouse_config::Config) -> anyhow::Result<()> {
    gatehouse::logs::apply(config).map_err(|problems| {
        anyhow::anyhow!("the logs cannot be written:\n{}", render_problems(&problems))
    })
}

fn render_problems(problems: &[gatehouse::logs::Problem]) -> String {
    problems.iter().map(|p| format!("error: {p}")).collect::<Vec<_>>().join("\n")
}

/// Raises the open file limit to the hard limit and logs the limit in effect (the
/// listeners' connection limits are clamped to it, `gatehouse::fds`).
fn raise_nofile() {
    let (n, error) = gatehouse::fds::raise();
    let hard = n.hard.map_or_else(|| "unlimited".to_owned(), |h| h.to_string());
    match error {
        None if n.soft > n.before => {
            log::info!("open file limit raised from {} to {} (the hard limit)", n.before, n.soft)
        }
        None => log::info!("open file limit: {} (hard limit {hard})", n.soft),
        Some(e) => log::warn!(
            "cannot raise the open file limit from {} to the hard limit {hard} ({e}); \
             serving with {}",
            n.before,
            n.soft
        ),
    }
}

fn serve(config_path: &Path, listen: Vec<std::net::SocketAddr>) -> anyhow::Result<ExitCode> {
    let started = std::time::SystemTime::now();
    // First, while this is the only thread: it takes LISTEN_FDS out of the environment.
    let activated = gatehouse::systemd::take_listeners()
        .context("cannot use the sockets systemd passed (LISTEN_FDS)")?;
    // Still the only thread: every thread started after inherits it.
    let slice =
        gatehouse::isolation::boundary::set_time_slice(Some(gatehouse::isolation::DAEMON_SLICE));
    let _logger = init_logging()?;
    if let Err(e) = slice {
        log::debug!("cannot set the daemon's time slice ({e}); it keeps the default");
    }
    // Before any connection, log, plugin or worker takes a descriptor.
    raise_nofile();
    let Some(mut config) = load_config(config_path) else { return Ok(ExitCode::FAILURE) };
    if !listen.is_empty() {
        config.listen.clone_from(&listen);
    }
    // With an error log file, fds 1 and 2 are that file from here (what in-process plugins
    // write to stdout and stderr lands there), and the originals again when this is
    // dropped, at exit.
    let _capture = match gatehouse::logs::capture::install() {
        Ok(capture) => Some(capture),
        Err(e) => {
            log::warn!(
                "cannot keep stderr aside ({e}): what apps write to stderr goes to the \
                 daemon's stderr, not to an error log file"
            );
            None
        }
    };
    start_logs(&config)?;
    // Before any app's `init` (which may open shared files) or worker: this configuration's
    // daemon must not be running already, and every address must be free.
    if let Some(pid) = gatehouse::pidfile::running_daemon(&config.pid_file) {
        anyhow::bail!(
            "a gatehouse daemon (pid {pid}) already serves this configuration: its pid file is \
             {} (hint: stop it first, `kill {pid}`, or give this one another `pid_file`)",
            config.pid_file.display()
        );
    }
    if activated.is_empty() {
        gatehouse::http::probe(&gatehouse::http::endpoints(&config)).map_err(anyhow::Error::msg)?;
    }
    // Uploads a crashed daemon left behind: nobody will remove them otherwise.
    match gatehouse::spool::sweep(&config.upload_dir, started) {
        Ok(0) => {}
        Ok(n) => log::info!(
            "removed {n} upload file(s) left in {} by a daemon that is gone",
            config.upload_dir.display()
        ),
        Err(e) => {
            log::warn!("cannot look for stale uploads in {}: {e}", config.upload_dir.display())
        }
    }
    let cache = Cache::create(&config.cache_dir).with_context(|| {
        format!(
            "cannot create the plugin cache folder in {} (hint: set `cache_dir` to a folder \
             the daemon's user may write, on a file system not mounted noexec)",
            config.cache_dir.display()
        )
    })?;
    gatehouse::plugin::load::fixed_mmap_threshold();
    gatehouse::plugin::load::start_reaper().context("cannot start the plugin reaper thread")?;
    let system = actix_web::rt::System::new();
    let result = system.block_on(async move {
        // Before anything slow: a SIGHUP during start-up is then queued, not fatal.
        let signals = Signals::install().context("cannot install signal handlers")?;
        let pid_file = config.pid_file.clone();
        let first_listen = gatehouse::http::endpoints(&config);
        let metrics = config.metrics;
        let certs = gatehouse::tls::load(&config).map_err(|problems| {
            let list: Vec<String> = problems.iter().map(|p| format!("error: {p}")).collect();
            anyhow::anyhow!("a TLS certificate cannot be used:\n{}", list.join("\n"))
        })?;
        gatehouse::metrics::started();
        let host = Arc::new(Host::new(config, Some(Arc::new(cache))));
        host.load_single_apps();
        let live = Arc::new(Live::new(host));
        live.certs().store(certs);
        let (control_tx, control_rx) = tokio::sync::mpsc::unbounded_channel();
        let options = gatehouse::reload::Options {
            config_file: config_path.to_owned(),
            listen_override: listen,
        };
        let reloader = Reloader::start(Arc::clone(&live), options, move |addrs| {
            let _ = control_tx.send(Control::Listen(addrs));
        })
        .context("cannot start the reloader thread")?;
        let reload = reloader.trigger();
        let mut first = true;
        let hooks = Hooks {
            on_bound: |bound: &[gatehouse::http::Endpoint]| {
                // Scripts and tests read the bound addresses from these stdout lines (the
                // original stdout: fd 1 may be an error log file, see `logs::capture`).
                use std::io::Write as _;
                let mut out = gatehouse::logs::capture::stdout();
                for e in bound {
                    let _ = writeln!(out, "gatehouse listening on {}", e.url());
                }
                let first = std::mem::take(&mut first);
                if first {
                    // The metrics and status listener, once the others are bound (its line
                    // comes after theirs).
                    if let Some(m) = metrics {
                        match gatehouse::admin::start(Arc::clone(&live), m.listen) {
                            Ok(bound) => {
                                for a in bound {
                                    let _ = writeln!(out, "gatehouse metrics on http://{a}");
                                }
                            }
                            Err(e) => log::error!("{e}; serving without metrics"),
                        }
                    }
                }
                if first {
                    gatehouse::pidfile::write(&pid_file);
                    let host = live.host();
                    log::info!("serving {} aliases", host.mounts.len());
                    let on: Vec<String> = bound.iter().map(|e| e.addr.to_string()).collect();
                    gatehouse::systemd::notify(&format!(
                        "READY=1\nSTATUS={} on {}",
                        gatehouse::reload::status_line(&host),
                        on.join(", ")
                    ));
                }
            },
            on_hangup: move || {
                log::info!("SIGHUP: reloading the configuration");
                let _ = reload.send(Trigger::Config("SIGHUP"));
            },
            on_reopen: || match gatehouse::logs::reopen() {
                Ok(n) => log::info!("SIGUSR1: reopened {n} log files"),
                Err(errors) => log::error!("SIGUSR1: reopening the logs: {}", errors.join("; ")),
            },
        };
        let served = gatehouse::http::run(
            Arc::clone(&live),
            &first_listen,
            activated,
            signals,
            control_rx,
            hooks,
        )
        .await;
        reloader.stop();
        gatehouse::pidfile::remove(&pid_file);
        served.context("the server stopped with an error")?;
        log::info!("stopping: running every app's shutdown");
        let host = live.host();
        host.shutdown_within(host.config.shutdown_timeout);
        anyhow::Ok(())
    });
    gatehouse::plugin::load::stop_reaper();
    result?;
    Ok(ExitCode::SUCCESS)
}

/// `gatehouse reload`: checks the configuration, then sends SIGHUP to the daemon `pid`, or
/// the one in its pid file.
fn reload(config_path: &Path, pid: Option<i32>) -> anyhow::Result<ExitCode> {
    let Some(config) = load_config(config_path) else {
        eprintln!("gatehouse: not reloading: the running configuration stays until this is fixed");
        return Ok(ExitCode::FAILURE);
    };
    let pid = signal_daemon(&config, config_path, pid, rustix::process::Signal::HUP)?;
    println!("sent SIGHUP to gatehouse (pid {pid}): its log says what the reload changed");
    Ok(ExitCode::SUCCESS)
}

/// Sends `signal` to the daemon `pid`, or without one to the daemon whose pid is in the
/// configuration's `pid_file`, after making sure that process is a gatehouse (not a stale
/// pid reused by another program).
fn signal_daemon(
    config: &gatehouse_config::Config,
    config_path: &Path,
    pid: Option<i32>,
    signal: rustix::process::Signal,
) -> anyhow::Result<i32> {
    let pid_file = &config.pid_file;
    // Where the pid comes from, for the errors.
    let (pid, source) = match pid {
        Some(pid) => (pid, "--pid".to_owned()),
        None => {
            let text = std::fs::read_to_string(pid_file).with_context(|| {
                format!(
                    "cannot read the pid file {} (is the daemon running on {}? its `pid_file` \
                     is written once it listens; or name the daemon with --pid)",
                    pid_file.display(),
                    config_path.display()
                )
            })?;
            let pid: i32 = text.trim().parse().with_context(|| {
                format!("{}: not a process id: {:?}", pid_file.display(), text.trim())
            })?;
            (pid, pid_file.display().to_string())
        }
    };
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim() != "gatehouse" {
        anyhow::bail!(
            "{source}: process {pid} is not a running gatehouse daemon{}",
            if source == "--pid" { "" } else { " (a stale pid file?)" }
        );
    }
    let raw = rustix::process::Pid::from_raw(pid)
        .with_context(|| format!("{source}: bad process id {pid}"))?;
    rustix::process::kill_process(raw, signal)
        .with_context(|| format!("cannot signal process {pid}"))?;
    Ok(pid)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        // A container's first process: an init in front of the daemon (`gatehouse::init`).
        Command::Serve { .. } if gatehouse::init::is_pid1() => {
            gatehouse::init::supervise().context("cannot run as PID 1")
        }
        Command::Serve { config, listen } => serve(&config, listen),
        Command::Reload { config, pid } => reload(&config, pid),
        Command::ReopenLogs { config, pid } => {
            let Some(cfg) = load_config(&config) else { return Ok(ExitCode::FAILURE) };
            let pid = signal_daemon(&cfg, &config, pid, rustix::process::Signal::USR1)?;
            println!("sent SIGUSR1 to gatehouse (pid {pid}): it reopens its log files");
            Ok(ExitCode::SUCCESS)
        }
        Command::Check { config } => {
            let Some(cfg) = load_config(&config) else { return Ok(ExitCode::FAILURE) };
            print!("{}", gatehouse::routes::table(&cfg));
            let plugins = gatehouse::plugin::inspect::check_config(&cfg, &config);
            for d in &plugins {
                eprintln!("{d}");
            }
            if plugins.iter().any(gatehouse_config::Diagnostic::is_error) {
                eprintln!("{}: syntax OK, but a plugin would not load", config.display());
                return Ok(ExitCode::FAILURE);
            }
            if let Err(problems) = gatehouse::logs::check_log_dirs(&cfg) {
                eprintln!("{}", render_problems(&problems));
                eprintln!("{}: syntax OK, but the logs cannot be written", config.display());
                return Ok(ExitCode::FAILURE);
            }
            println!("{}: syntax OK", config.display());
            Ok(ExitCode::SUCCESS)
        }
        Command::ServeApp { file, port } => {
            // Its logs, cache and pid file in a folder of its own, removed at exit.
            let state =
                std::env::temp_dir().join(format!("gatehouse-serve-app-{}", std::process::id()));
            std::fs::DirBuilder::new()
                .mode(0o700)
                .create(&state)
                .with_context(|| format!("cannot create {}", state.display()))?;
            let yaml = match gatehouse::scaffold::serve_app_config(
                &file,
                port,
                &state,
                gatehouse::scaffold::find_wsgi_bridge().as_deref(),
            ) {
                Ok(yaml) => yaml,
                Err(e) => {
                    let _ = std::fs::remove_dir_all(&state);
                    eprintln!("gatehouse: {e}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            let config = state.join("hosting.yaml");
            std::fs::write(&config, yaml)
                .with_context(|| format!("cannot write {}", config.display()))?;
            eprintln!("serving {} at / (its configuration: {})", file.display(), config.display());
            let code = serve(&config, Vec::new());
            let _ = std::fs::remove_dir_all(&state);
            code
        }
        Command::New { name, dir, sdk } => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(&name));
            let sdk = gatehouse::scaffold::find_sdk(sdk.as_deref())?;
            let written = gatehouse::scaffold::create(&name, &dir, &sdk)?;
            for file in &written {
                println!("wrote {}", file.display());
            }
            println!(
                "plugin {name} in {}: build it with `cargo build --release` there (see its README.md)",
                dir.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Worker { .. } => {
            gatehouse::worker::run()?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Routes { config, url } => {
            let Some(cfg) = load_config(&config) else { return Ok(ExitCode::FAILURE) };
            match url {
                Some(url) => print!("{}", gatehouse::routes::explain(&cfg, &url)),
                None => print!("{}", gatehouse::routes::table(&cfg)),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("gatehouse: {e:#}");
            ExitCode::FAILURE
        }
    }
}
