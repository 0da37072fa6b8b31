//! systemd integration: the `sd_notify` protocol (READY, RELOADING, STOPPING, STATUS,
//! WATCHDOG), the watchdog interval, and socket activation (`LISTEN_FDS`).
//!
//! All of it is a no-op outside systemd: without `NOTIFY_SOCKET` nothing is sent, without
//! `WATCHDOG_USEC` there is no watchdog, without `LISTEN_FDS` the daemon binds its `listen`
//! addresses itself. The protocol is small enough to speak directly: one datagram per
//! message to the socket named in `NOTIFY_SOCKET` (a path, or `@name` in the abstract
//! namespace).

use std::net::TcpListener;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::sync::OnceLock;
use std::time::Duration;

/// Where notifications go, if anywhere.
#[derive(Debug)]
struct Notifier {
    sock: UnixDatagram,
    addr: SocketAddr,
}

impl Notifier {
    /// A notifier for `NOTIFY_SOCKET`'s value: a path, or `@name` (abstract namespace).
    fn new(socket: &std::ffi::OsStr) -> Option<Notifier> {
        let bytes = std::os::unix::ffi::OsStrExt::as_bytes(socket);
        let addr = match bytes.split_first() {
            Some((b'@', name)) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name).ok()?
            }
            _ => SocketAddr::from_pathname(socket).ok()?,
        };
        let sock = UnixDatagram::unbound().ok()?;
        Some(Notifier { sock, addr })
    }

    fn send(&self, state: &str) {
        if let Err(e) = self.sock.send_to_addr(state.as_bytes(), &self.addr) {
            log::debug!("sd_notify {state:?}: {e}");
        }
    }
}

fn notifier() -> Option<&'static Notifier> {
    static NOTIFIER: OnceLock<Option<Notifier>> = OnceLock::new();
    NOTIFIER.get_or_init(|| Notifier::new(&std::env::var_os("NOTIFY_SOCKET")?)).as_ref()
}

/// Sends one notification (`READY=1`, `STATUS=...`, several lines at once allowed). A
/// failure is logged at debug level: systemd going away must not stop the daemon.
pub fn notify(state: &str) {
    if let Some(n) = notifier() {
        n.send(state);
    }
}

/// `RELOADING=1` with the monotonic time, as `Type=notify-reload` expects (and `notify`
/// accepts).
pub(crate) fn reloading() {
    notify(&reloading_message());
}

fn reloading_message() -> String {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let usec = u128::try_from(now.tv_sec).unwrap_or(0) * 1_000_000
        + u128::try_from(now.tv_nsec).unwrap_or(0) / 1000;
    format!("RELOADING=1\nMONOTONIC_USEC={usec}")
}

/// The watchdog interval systemd expects pings within (`WatchdogSec=`), if it is on for
/// this process.
pub(crate) fn watchdog() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID")
        && pid.parse::<u32>().ok() != Some(std::process::id())
    {
        return None;
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

/// Takes the TCP sockets systemd passed (`LISTEN_FDS` for this `LISTEN_PID`), removing the
/// variables so that nothing started later inherits them. Call before any thread starts:
/// it changes the environment.
pub fn take_listeners() -> std::io::Result<Vec<TcpListener>> {
    let mut fds = listenfd::ListenFd::from_env();
    let mut out = Vec::new();
    for i in 0..fds.len() {
        match fds.take_tcp_listener(i)? {
            Some(l) => out.push(l),
            None => {
                log::warn!("socket activation: passed descriptor {} is not a TCP listener", i + 3)
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn notifications_reach_path_and_abstract_sockets_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let rx = UnixDatagram::bind(&path).unwrap();
        let n = Notifier::new(path.as_os_str()).unwrap();
        n.send("READY=1\nSTATUS=serving");
        n.send(&reloading_message());
        let mut buf = [0u8; 256];
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"READY=1\nSTATUS=serving");
        let len = rx.recv(&mut buf).unwrap();
        let text = std::str::from_utf8(&buf[..len]).unwrap();
        let usec = text.strip_prefix("RELOADING=1\nMONOTONIC_USEC=").unwrap();
        assert!(usec.parse::<u128>().unwrap() > 0, "{text}");

        use std::os::linux::net::SocketAddrExt;
        let name = format!("gatehouse-test-{}", std::process::id());
        let rx = UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(&name).unwrap()).unwrap();
        Notifier::new(std::ffi::OsStr::new(&format!("@{name}"))).unwrap().send("STOPPING=1");
        let len = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..len], b"STOPPING=1");
    }
}
