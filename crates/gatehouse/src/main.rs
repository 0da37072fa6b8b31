//! The `gatehouse` command: `serve`, `check` and `routes`. The binary's edge: arguments,
//! the daemon's own log, exit codes; everything else is in the library.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use gatehouse::host::Host;

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
    /// Serve the aliases of a configuration until SIGINT or SIGTERM.
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
    /// Print the route table, or explain how one URL is answered.
    Routes {
        /// The configuration file.
        #[arg(long, short, default_value = "hosting.yaml")]
        config: PathBuf,
        /// A URL or path to explain (which alias wins and why, SCRIPT_NAME, PATH_INFO,
        /// the plugin file, or why it is 400/403/404).
        url: Option<String>,
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

fn serve(config_path: &Path, listen: Vec<std::net::SocketAddr>) -> anyhow::Result<ExitCode> {
    let _logger = init_logging()?;
    let Some(mut config) = load_config(config_path) else { return Ok(ExitCode::FAILURE) };
    if !listen.is_empty() {
        config.listen = listen;
    }
    start_logs(&config)?;
    let listen = config.listen.clone();
    let host = Arc::new(Host::new(config));
    host.load_single_apps();
    let served = Arc::clone(&host);
    actix_web::rt::System::new()
        .block_on(gatehouse::server::run(served, &listen, |addrs| {
            for a in addrs {
                // The one line on stdout: scripts and tests read the bound address from it.
                println!("gatehouse listening on http://{a}");
            }
            log::info!("serving {} aliases", host.mounts.len());
        }))
        .context("the server stopped with an error")?;
    log::info!("stopping: running every app's shutdown");
    host.shutdown();
    Ok(ExitCode::SUCCESS)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve { config, listen } => serve(&config, listen),
        Command::Check { config } => {
            let Some(cfg) = load_config(&config) else { return Ok(ExitCode::FAILURE) };
            print!("{}", gatehouse::routes::table(&cfg));
            if let Err(problems) = gatehouse::logs::check_log_dirs(&cfg) {
                eprintln!("{}", render_problems(&problems));
                eprintln!("{}: syntax OK, but the logs cannot be written", config.display());
                return Ok(ExitCode::FAILURE);
            }
            println!("{}: syntax OK", config.display());
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
