//! `gatehouse serve` as PID 1: a container's entrypoint with no init in front of it (no
//! `podman run --init`, tini or catatonit; Kubernetes adds none).
//!
//! PID 1 inherits every orphan of its PID namespace: a process whose parent exits is
//! re-parented to it (a script's `subprocess` that daemonises, the children a worker
//! process leaves when it crashes), and when such a process exits it stays a zombie until
//! PID 1 waits for it. The daemon waits only for its own worker processes, each by its pid
//! (their exit status is what it reports), and an app's `subprocess` waits for its child
//! by pid too: a daemon that also waited for any child would steal those statuses. So as
//! PID 1 the process splits in two, as `docker run --init` would:
//!
//! - PID 1 ([`supervise`]) is the init: it starts the daemon proper as its child (the same
//!   binary and arguments, in its own process group), forwards to it every signal it is
//!   sent that the daemon acts on (SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGQUIT),
//!   waits for every child it has (the orphans), and exits with the daemon's status when
//!   the daemon exits (128 + N when signal N ended it). It loads no configuration, plugin
//!   or Python, and starts no thread.
//! - The daemon runs as anywhere else; its pid file names it, so `gatehouse reload` signals
//!   it directly (`kill -HUP 1` reaches it through the init).

use std::process::{Command, ExitCode};
use std::time::Duration;

use rustix::process::{Pid, Signal, WaitOptions};
use tokio::signal::unix::{SignalKind, signal};

/// How often the init also looks for exited children without a SIGCHLD (signals of the
/// same kind merge; this bounds how long a zombie can wait).
const SWEEP: Duration = Duration::from_secs(1);

/// Whether this process is its PID namespace's init.
pub fn is_pid1() -> bool {
    std::process::id() == 1
}

/// Runs the init: starts the daemon as a child with this process's arguments, forwards
/// signals to it, reaps every child, and returns the daemon's exit status once it exits.
pub fn supervise() -> std::io::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(run())
}

async fn run() -> std::io::Result<ExitCode> {
    // Before the child exists: a SIGCHLD or SIGTERM from now on is seen.
    let mut child_exits = signal(SignalKind::child())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    let mut quit = signal(SignalKind::quit())?;
    let mut args = std::env::args_os();
    let arg0 = args.next().unwrap_or_else(|| "gatehouse".into());
    // The running binary, by its path: the daemon's name (`comm`) is then `gatehouse`, which
    // `gatehouse reload` and the pid file check look for (`/proc/self/exe` would name it `exe`).
    let exe = std::env::current_exe().unwrap_or_else(|_| "/proc/self/exe".into());
    let mut command = Command::new(&exe);
    std::os::unix::process::CommandExt::arg0(&mut command, &arg0);
    // Its own process group: a Ctrl-C on a terminal reaches the init, which passes it on
    // once (not twice, as it would to a shared foreground group).
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    // Sockets passed by socket activation were passed to this pid: they are the daemon's.
    if std::env::var_os("LISTEN_PID").is_some_and(|p| p == "1") {
        command.env_remove("LISTEN_PID");
    }
    let child = command.args(args).spawn().map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot start the daemon from {}: {e}", exe.display()),
        )
    })?;
    let daemon = i32::try_from(child.id())
        .ok()
        .and_then(Pid::from_raw)
        .ok_or_else(|| std::io::Error::other("the daemon's pid is out of range"))?;
    // Its status is collected below, with the orphans', by `waitpid(-1)` (`wait`).
    drop(child);
    loop {
        let forward = tokio::select! {
            _ = child_exits.recv() => None,
            () = tokio::time::sleep(SWEEP) => None,
            _ = term.recv() => Some(Signal::TERM),
            _ = int.recv() => Some(Signal::INT),
            _ = hup.recv() => Some(Signal::HUP),
            _ = usr1.recv() => Some(Signal::USR1),
            _ = usr2.recv() => Some(Signal::USR2),
            _ = quit.recv() => Some(Signal::QUIT),
        };
        if let Some(sig) = forward {
            // It may have just exited: then its status is reaped below.
            let _ = rustix::process::kill_process(daemon, sig);
        }
        if let Some(code) = reap(daemon) {
            return Ok(code);
        }
    }
}

/// Waits for every child that has exited; the daemon's exit status once it has.
fn reap(daemon: Pid) -> Option<ExitCode> {
    let mut daemon_status = None;
    loop {
        match rustix::process::wait(WaitOptions::NOHANG) {
            Ok(Some((pid, status))) if pid == daemon => {
                daemon_status = Some(if let Some(code) = status.exit_status() {
                    exit_code(code)
                } else if let Some(sig) = status.terminating_signal() {
                    eprintln!(
                        "gatehouse (PID 1): the daemon (pid {}) was killed by signal {sig}",
                        pid.as_raw_pid()
                    );
                    exit_code(128 + sig)
                } else {
                    exit_code(1)
                });
            }
            Ok(Some(_)) => {}
            Err(rustix::io::Errno::INTR) => {}
            // None exited (yet), or no child left.
            Ok(None) | Err(_) => return daemon_status,
        }
    }
}

fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
