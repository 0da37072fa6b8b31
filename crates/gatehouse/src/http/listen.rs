//! The listeners: one actix server per listen address (HTTP or HTTPS, or a socket systemd
//! passed), rebinding on reload, the signals the daemon acts on, and the watchdog pings
//! (on the workers' heartbeats, [`super::alive`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_http::{HttpService, Request, Response};
use actix_service::{IntoServiceFactory as _, fn_service, map_config};
use actix_web::dev::AppConfig;
use actix_web::{App, web};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::mpsc;

use super::handler::{before_continue, handle};
use crate::host::Live;
use crate::request::environ::ListenerInfo;

/// A listen address and whether it serves HTTPS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// The address.
    pub addr: SocketAddr,
    /// Whether it serves HTTPS (its certificate is in [`Live::certs`]).
    pub tls: bool,
}

impl Endpoint {
    /// `http://ADDR` or `https://ADDR`.
    pub fn url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.addr)
    }
}

/// The listen addresses of `config`, each marked HTTPS or not.
pub fn endpoints(config: &gatehouse_config::Config) -> Vec<Endpoint> {
    config
        .listen
        .iter()
        .map(|&addr| Endpoint { addr, tls: config.tls_for(addr).is_some() })
        .collect()
}

/// Asks the listener loop to change what it listens on.
#[derive(Debug)]
pub enum Control {
    /// Listen on exactly these addresses now: keep those already bound (as they are:
    /// HTTP or HTTPS), bind the new ones, stop the others (gracefully).
    Listen(Vec<Endpoint>),
}

/// The signals the daemon acts on, installed before anything slow happens so that an early
/// SIGHUP is queued, not fatal.
#[derive(Debug)]
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
    usr1: Signal,
}

impl Signals {
    /// Installs the handlers (call inside the actix system).
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
            usr1: signal(SignalKind::user_defined1())?,
        })
    }
}

/// One bound listen address, served by its own actix server.
struct Listener {
    /// The address as configured (port 0 stays 0), or the passed socket's address, and
    /// whether it serves HTTPS.
    configured: Endpoint,
    /// Where it really listens.
    bound: Vec<Endpoint>,
    handle: actix_web::dev::ServerHandle,
}

/// What a listener serves on: an address to bind, or a socket systemd passed.
enum Bind {
    Addr(Endpoint),
    Socket(std::net::TcpListener),
}

/// The backlog of a listening socket (actix-web's default).
const BACKLOG: i32 = 1024;

/// A listening socket on `addr`, as actix-web makes one (address reuse, [`BACKLOG`]).
fn bind_socket(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(BACKLOG)?;
    Ok(socket.into())
}

/// One listener: an actix server (actix-server, with actix-http's HTTP/1 and HTTP/2 service
/// around the actix-web App) on a bound socket. Built by hand rather than with actix-web's
/// `HttpServer` for one hook that `HttpServer` does not offer: the `Expect: 100-continue`
/// service, which may refuse a request before the client is asked for its body
/// ([`before_continue`]).
/// `listeners` is how many listeners share the descriptor budget ([`crate::fds`]).
fn start_listener(
    live: &web::Data<Live>,
    bind: Bind,
    listeners: usize,
) -> std::io::Result<Listener> {
    // Slow-header clients (slowloris) get 408 after `header_timeout`; idle keep-alive
    // connections close after `keep_alive`; each worker serves at most `max_connections`,
    // or fewer if the open file limit cannot hold that many (`fds::connection_limit`);
    // a reload's new values apply to listeners bound after it. A stop waits
    // `shutdown_timeout` for requests in flight.
    let host = live.host();
    let config = &host.config;
    let (header_timeout, keep_alive) = (config.header_timeout, config.keep_alive);
    let (socket, configured) = match bind {
        Bind::Addr(endpoint) => {
            let socket = bind_socket(endpoint.addr).map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot listen on {}: {e}", endpoint.url()))
            })?;
            (socket, endpoint)
        }
        Bind::Socket(socket) => {
            let addr = socket.local_addr()?;
            // A passed socket serves HTTPS if the configuration gives its address a certificate.
            (socket, Endpoint { addr, tls: config.tls_for(addr).is_some() })
        }
    };
    let addr = socket.local_addr()?;
    let tls =
        if configured.tls { Some(live.certs().server_config(configured.addr)?) } else { None };
    let info = ListenerInfo { secure: configured.tls, addr };
    let workers = http_workers();
    let max_connections = crate::fds::connection_limit(config.max_connections, workers, listeners);
    let builder = actix_web::dev::Server::build()
        .disable_signals()
        .workers(workers)
        .backlog(BACKLOG as u32)
        .max_concurrent_connections(max_connections)
        .shutdown_timeout(config.shutdown_timeout.as_secs().max(1));
    // Keep-alive connections learn of a graceful stop, as under actix-web's HttpServer.
    let stopping = builder.graceful_shutdown_signal();
    // The service of one connection, over a plain or a TLS stream (a macro: the stream
    // type is a parameter of the service, and each listener has one).
    macro_rules! service {
        () => {{
            let data = live.clone();
            let stopping = stopping.clone();
            move || {
                // Runs on each HTTP worker's thread, as it builds its service.
                super::alive::beat_here();
                let stopping = stopping.clone();
                let data = data.clone();
                let app = App::new()
                    .wrap(crate::http::access::AccessLog) // access log
                    .app_data(data.clone())
                    .app_data(info)
                    .default_service(web::to(handle));
                let app = map_config(app.into_factory(), |_| AppConfig::default());
                let expect = fn_service(move |req: Request| {
                    let refused = before_continue(&data, req.head(), req.peer_addr());
                    async move {
                        match refused {
                            Some(resp) => Err(Response::from(resp)),
                            None => Ok(req),
                        }
                    }
                });
                // actix-web's HttpServer defaults, but for the timeouts set here: a refused
                // request's connection lingers a second after the answer, so a client still
                // sending its body reads the answer rather than a reset.
                HttpService::build()
                    .keep_alive(keep_alive)
                    .client_request_timeout(header_timeout)
                    .client_disconnect_timeout(Duration::from_secs(1))
                    .graceful_shutdown_signal(move || {
                        let stopping = stopping.clone();
                        async move { stopping.notified().await }
                    })
                    .local_addr(addr)
                    .expect(expect)
                    .finish(app)
            }
        }};
    }
    let name = format!("gatehouse-{addr}");
    let server = match tls {
        Some(tls) => {
            let service = service!();
            builder.listen(name, socket, move || service().rustls_0_23(tls.clone()))
        }
        None => {
            let service = service!();
            builder.listen(name, socket, move || service().tcp())
        }
    }
    .map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot serve {}: {e}", configured.url()))
    })?;
    let bound = vec![Endpoint { addr, tls: configured.tls }];
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    Ok(Listener { configured, bound, handle })
}

/// The HTTP worker threads of each listener (actix-server's default, made explicit so
/// that the descriptor budget counts what runs).
fn http_workers() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}

/// What the serving loop is given.
#[derive(Debug)]
pub struct Hooks<B, H, R> {
    /// Called with the addresses bound, at start and whenever a reload binds more.
    pub on_bound: B,
    /// Called on SIGHUP.
    pub on_hangup: H,
    /// Called on SIGUSR1 (reopen the log files, for logrotate).
    pub on_reopen: R,
}

/// Binds every listen address (or serves the sockets systemd passed, `activated`, instead),
/// reports the bound addresses, and serves until SIGINT or SIGTERM (graceful: requests in
/// flight finish, up to `shutdown_timeout`). SIGHUP calls `on_hangup`, SIGUSR1 `on_reopen`;
/// [`Control`] messages change the listen addresses while serving (not for passed sockets,
/// which the socket unit owns). With systemd's watchdog on, it is pinged while some HTTP
/// worker's event loop runs ([`super::alive`]), whatever the listeners' load.
pub async fn run<B: FnMut(&[Endpoint]), H: FnMut(), R: FnMut()>(
    live: Arc<Live>,
    listen: &[Endpoint],
    activated: Vec<std::net::TcpListener>,
    mut signals: Signals,
    mut control: mpsc::UnboundedReceiver<Control>,
    mut hooks: Hooks<B, H, R>,
) -> std::io::Result<()> {
    let live = web::Data::from(live);
    let mut listeners: Vec<Listener> = Vec::new();
    let socket_activated = !activated.is_empty();
    let binds: Vec<Bind> = if socket_activated {
        activated.into_iter().map(Bind::Socket).collect()
    } else {
        listen.iter().copied().map(Bind::Addr).collect()
    };
    let count = binds.len();
    for bind in binds {
        match start_listener(&live, bind, count) {
            Ok(l) => listeners.push(l),
            Err(e) => {
                for l in &listeners {
                    l.handle.stop(false).await;
                }
                return Err(e);
            }
        }
    }
    let bound: Vec<Endpoint> = listeners.iter().flat_map(|l| l.bound.clone()).collect();
    (hooks.on_bound)(&bound);
    let watchdog = crate::systemd::watchdog();
    // Pinged at half the interval, as sd_watchdog_enabled(3) advises.
    let mut ticks = actix_web::rt::time::interval(
        watchdog.map_or(Duration::from_secs(3600), |w| (w / 2).max(Duration::from_millis(50))),
    );
    loop {
        tokio::select! {
            _ = signals.term.recv() => {
                log::info!("SIGTERM: stopping (requests in flight finish first)");
                break;
            }
            _ = signals.int.recv() => {
                log::info!("SIGINT: stopping (requests in flight finish first)");
                break;
            }
            _ = signals.hup.recv() => (hooks.on_hangup)(),
            _ = signals.usr1.recv() => (hooks.on_reopen)(),
            _ = ticks.tick(), if watchdog.is_some() => {
                let interval = watchdog.unwrap_or_default();
                let freshest = super::alive::freshest();
                if super::alive::is_alive(freshest, interval) {
                    crate::systemd::notify("WATCHDOG=1");
                } else {
                    log::warn!(
                        "watchdog: no HTTP worker's event loop has run for {}; not pinging systemd",
                        freshest.map_or_else(|| "ever".to_owned(), |a| format!("{} ms", a.as_millis()))
                    );
                }
            }
            Some(Control::Listen(want)) = control.recv() => {
                if socket_activated {
                    log::warn!("`listen` changed, but the sockets come from systemd's socket unit: edit gatehouse.socket instead");
                    continue;
                }
                let (keep, gone): (Vec<Listener>, Vec<Listener>) =
                    listeners.into_iter().partition(|l| want.contains(&l.configured));
                listeners = keep;
                for l in gone {
                    log::info!("no longer listening on {} (its requests in flight finish)", l.configured.url());
                    actix_web::rt::spawn(async move { l.handle.stop(true).await });
                }
                let mut added = Vec::new();
                let count = want.len();
                for endpoint in want {
                    if listeners.iter().any(|l| l.configured == endpoint) {
                        continue;
                    }
                    match start_listener(&live, Bind::Addr(endpoint), count) {
                        Ok(l) => {
                            added.extend(l.bound.iter().copied());
                            listeners.push(l);
                        }
                        Err(e) => log::error!("{e}; the other addresses keep serving"),
                    }
                }
                if !added.is_empty() {
                    (hooks.on_bound)(&added);
                }
            }
        }
    }
    let drain = live.host().config.drain_delay;
    if !drain.is_zero() {
        // Not ready from now on, still serving: a load balancer (a Service's endpoints)
        // stops sending requests here before the listeners close. A second signal ends it.
        live.start_draining();
        crate::systemd::notify(&format!(
            "STATUS=draining for {drain:?}: serving, not ready (/readyz fails)"
        ));
        log::info!("draining for {drain:?} (drain_delay): serving on, /readyz answers 503");
        tokio::select! {
            () = actix_web::rt::time::sleep(drain) => {}
            _ = signals.term.recv() => log::info!("SIGTERM again: stopping now"),
            _ = signals.int.recv() => log::info!("SIGINT again: stopping now"),
        }
    }
    crate::systemd::notify("STOPPING=1\nSTATUS=stopping: finishing requests in flight");
    live.host().no_successors();
    let open = crate::sockets::close_all(None, 1001, "the server is stopping");
    if open > 0 {
        log::info!("closing {open} WebSockets (1001)");
    }
    let stops = listeners.iter().map(|l| l.handle.stop(true));
    futures_util::future::join_all(stops).await;
    Ok(())
}

/// Checks, before any app's `init` runs, that every address can be listened on: each is
/// bound as the listeners bind it (`SO_REUSEADDR`) and released at once. An address in use
/// is an error naming the process that holds it, when this user may see it.
pub fn probe(listen: &[Endpoint]) -> Result<(), String> {
    use rustix::net::{AddressFamily, SocketType, sockopt};
    for e in listen {
        let family = if e.addr.is_ipv4() { AddressFamily::INET } else { AddressFamily::INET6 };
        let bound = rustix::net::socket(family, SocketType::STREAM, None).and_then(|fd| {
            sockopt::set_socket_reuseaddr(&fd, true)?;
            rustix::net::bind(&fd, &e.addr)
        });
        match bound {
            Ok(()) => {}
            Err(rustix::io::Errno::ADDRINUSE) => {
                let who = holder(e.addr.port()).map_or_else(
                    || "another process".to_owned(),
                    |(pid, name)| format!("process {pid} ({name})"),
                );
                return Err(format!(
                    "cannot listen on {}: the address is in use by {who} (hint: stop it, or \
                     change `listen`; a second daemon of this configuration is refused)",
                    e.addr
                ));
            }
            Err(err) => return Err(format!("cannot listen on {}: {err}", e.addr)),
        }
    }
    Ok(())
}

/// The process listening on TCP `port`, from `/proc/net/tcp{,6}` and the processes' fds.
fn holder(port: u16) -> Option<(u32, String)> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| t.lines().skip(1).map(str::to_owned).collect::<Vec<_>>())
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let local_port = f.get(1)?.rsplit(':').next()?;
            let listening = f.get(3) == Some(&"0A");
            (listening && u16::from_str_radix(local_port, 16).ok() == Some(port))
                .then(|| format!("socket:[{}]", f.get(9).unwrap_or(&"")))
        })
        .collect();
    if inodes.is_empty() {
        return None;
    }
    for proc in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = proc.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(proc.path().join("fd")) else { continue };
        for fd in fds.flatten() {
            let link = std::fs::read_link(fd.path()).unwrap_or_default();
            if inodes.iter().any(|i| link.as_os_str() == i.as_str()) {
                let name = std::fs::read_to_string(proc.path().join("comm")).unwrap_or_default();
                return Some((pid, name.trim().to_owned()));
            }
        }
    }
    None
}
