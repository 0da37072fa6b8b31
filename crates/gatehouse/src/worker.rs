//! `gatehouse worker`: the worker process. It is started by the daemon only, with its
//! sockets mapped to descriptors 3 (control) and 4.. (one per app thread, which waits on
//! it alone: the daemon sends a socket a request only when the socket's last one is
//! answered, so its thread is free), and serves one
//! alias: it reads the alias from the configuration text the daemon sends (the generation
//! that started it; the globals and that one alias, never another alias's settings), loads plugins exactly as the daemon would in-process (private copies,
//! trust checks, handlers, group NAME lookup, swaps on `Refresh`), and answers requests.
//!
//! It writes no file of the daemon's: its log records and its apps' debug and error lines
//! go to the daemon as frames, which writes them where the in-process ones go.

use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use gatehouse_config::Isolation;

use crate::host::{Host, Unavailable};
use crate::isolation::messages::{Init, RequestIn, encode_log};
use crate::isolation::proto::{CONNS_ENV, CONTROL_FD, FrameIo, Kind, Put, push_frame};
use crate::plugin::staging::Cache;

/// How often the worker looks whether the plugins it reports changed.
const REPORT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The worker's writing end of the control socket, shared by the logger and the reporter.
struct Control(Mutex<(UnixStream, Vec<u8>)>);

impl Control {
    /// Writes one frame; false when the daemon is gone.
    fn send(&self, kind: Kind, payload: impl FnOnce(&mut Vec<u8>)) -> bool {
        use std::io::Write as _;
        let mut guard = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (stream, buf) = &mut *guard;
        buf.clear();
        push_frame(buf, kind, payload);
        stream.write_all(buf).is_ok()
    }

    /// Writes the frames `frames` puts in the buffer; false when the daemon is gone.
    fn send_raw(&self, frames: impl FnOnce(&mut Vec<u8>)) -> bool {
        use std::io::Write as _;
        let mut guard = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (stream, buf) = &mut *guard;
        buf.clear();
        frames(buf);
        stream.write_all(buf).is_ok()
    }
}

/// The worker's WebSocket sends and closes, as frames to the daemon that drives the sockets.
struct ForwardSockets(Arc<Control>);

impl crate::sockets::Forward for ForwardSockets {
    fn send(&self, id: u64, msg: &crate::sockets::Out) -> bool {
        self.0.send_raw(|buf| crate::isolation::websocket::push_send(buf, id, msg))
    }

    fn close(&self, id: u64, code: u16, reason: &str) -> bool {
        self.0.send_raw(|buf| crate::isolation::websocket::push_close(buf, id, code, reason))
    }
}

/// Sends the worker's log records to the daemon on the control socket.
struct Forward {
    control: Arc<Control>,
    level: log::LevelFilter,
}

impl log::Log for Forward {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= self.level
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        use std::io::Write as _;
        if !self.control.send(Kind::Log, |out| encode_log(record, out)) {
            // The daemon is gone: the control loop ends the process.
            let _ = writeln!(std::io::stderr(), "gatehouse worker: {}", record.args());
        }
    }

    fn flush(&self) {}
}

/// Runs the worker; returns when told to stop or when the daemon is gone.
pub fn run() -> anyhow::Result<()> {
    use anyhow::Context as _;
    // The daemon's long slice (see `DAEMON_SLICE`) is inherited: a worker takes the
    // kernel's default back, before any thread starts. Failing costs only speed.
    let slice = crate::isolation::boundary::set_time_slice(None);
    // Before any thread starts (threads inherit the handlers): a reload or reopen signal
    // sent to the whole service must not end a worker.
    let shield = crate::isolation::boundary::shield_from_daemon_signals();
    // Started from a descriptor (`/proc/self/fd/N`), the process is named `N`: give it the
    // daemon's name back, for `ps`, `top` and `pgrep gatehouse`.
    let _ = rustix::thread::set_name(c"gatehouse");
    let conns: usize = std::env::var(CONNS_ENV)
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|&n| (1..=gatehouse_config::MAX_THREADS * 8).contains(&n))
        .context("`gatehouse worker` is started by the daemon only (no worker sockets given)")?;
    let mut sockets = crate::isolation::boundary::adopt_sockets(CONTROL_FD, conns + 1)
        .context("cannot take the sockets the daemon passed")?;
    let control_stream = sockets.remove(0);
    let mut control = FrameIo::new(control_stream.try_clone()?)?;
    if control.read()? != Kind::Init {
        anyhow::bail!("the daemon did not start with Init");
    }
    let init = Init::decode(control.payload())?;
    let level = match init.level {
        0 => log::LevelFilter::Off,
        n => crate::isolation::proto::byte_level(n).to_level_filter(),
    };
    let writer = Arc::new(Control(Mutex::new((control_stream, Vec::new()))));
    log::set_boxed_logger(Box::new(Forward { control: Arc::clone(&writer), level }))
        .context("cannot install the worker's logger")?;
    log::set_max_level(level);
    crate::sockets::set_forward(Box::new(ForwardSockets(Arc::clone(&writer))));
    crate::logs::install_panic_hook();
    if let Err(e) = slice {
        log::debug!("worker: cannot reset its time slice ({e})");
    }
    if let Err(e) = shield {
        log::warn!("worker: cannot shield itself from SIGHUP and SIGUSR1 ({e})");
    }

    let host = match host_for(&init) {
        Ok(host) => Arc::new(host),
        Err(e) => {
            log::error!("{e:#}");
            return Err(e);
        }
    };
    crate::plugin::load::fixed_mmap_threshold();
    crate::plugin::load::start_reaper().context("cannot start the plugin reaper thread")?;
    host.load_single_apps();
    control.frame(Kind::Ready, |_| {});
    control.flush()?;
    let events = Arc::clone(&writer);
    {
        let host = Arc::clone(&host);
        std::thread::Builder::new()
            .name("worker report".to_owned())
            .spawn(move || report_plugins(&host, &writer))
            .context("cannot start the worker's report thread")?;
    }

    for (i, socket) in sockets.into_iter().enumerate() {
        let host = Arc::clone(&host);
        let mut io = FrameIo::new(socket)?;
        std::thread::Builder::new()
            .name(format!("worker app {i}"))
            .spawn(move || {
                loop {
                    io.wait_readable();
                    if !serve_one(&host, &mut io) {
                        break;
                    }
                }
            })
            .context("cannot start a worker thread")?;
    }

    loop {
        match control.read() {
            Ok(Kind::Refresh) => {
                host.refresh();
            }
            Ok(Kind::WsEvent) => websocket_event(&host, &events, control.payload()),
            Ok(Kind::Stop) => {
                // Nothing should be in flight (the daemon waited): shut the apps down, each
                // after its last call, then exit.
                host.shutdown(std::time::Instant::now() + host.config.shutdown_timeout);
                crate::plugin::load::stop_reaper();
                return Ok(());
            }
            Ok(other) => log::warn!("worker: ignored an unexpected {other:?} control frame"),
            // The daemon is gone (or broke the framing): nothing can reach this worker now.
            Err(_) => return Ok(()),
        }
    }
}

/// Tells the daemon which plugins this worker has loaded (for the status page): at once,
/// then whenever that, or a plugin's request count, changed, looked at every
/// [`REPORT_EVERY`]. Ends when the daemon is gone.
fn report_plugins(host: &Host, control: &Control) {
    let mut last = Vec::new();
    loop {
        let plugins: Vec<serde_json::Value> = host
            .loaded_plugins(0)
            .iter()
            .map(|(file, loaded)| crate::admin::plugin_json(file, loaded))
            .collect();
        let now = serde_json::to_vec(&plugins).unwrap_or_default();
        if now != last {
            if !control.send(Kind::Plugins, |out| out.extend_from_slice(&now)) {
                return;
            }
            last = now;
        }
        std::thread::sleep(REPORT_EVERY);
    }
}

/// The host of one alias, from the configuration text the daemon validated (cut down to
/// that alias).
fn host_for(init: &Init) -> anyhow::Result<Host> {
    let loaded = gatehouse_config::parse(&init.text, &init.config_file).map_err(|e| {
        anyhow::anyhow!("the configuration no longer reads the same in the worker:\n{e}")
    })?;
    let mut config = loaded.config;
    let index = init.alias as usize;
    let Some(alias) = config.aliases.get(index).cloned() else {
        anyhow::bail!("the configuration has no alias number {index}");
    };
    if alias.isolation == Isolation::InProcess {
        anyhow::bail!("alias number {index} ({}) is not isolated", alias.url);
    }
    config.aliases = vec![alias];
    let cache = Cache::create(&init.cache_dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot create the plugin cache folder in {}: {e} (hint: the worker's user must \
             be able to write there)",
            init.cache_dir.display()
        )
    })?;
    // The worker runs the alias's apps itself.
    Ok(Host::in_worker(config, Some(Arc::new(cache))))
}

/// Serves the next request on `io` (waiting for it); false when the socket is closed or
/// broken (the thread ends; the process ends from its control loop).
fn serve_one(host: &Host, io: &mut FrameIo) -> bool {
    match io.read() {
        Ok(Kind::Request) => {}
        // A `Gone` that came after the request it was about ended: nothing to do.
        Ok(Kind::Gone) => return true,
        Ok(other) => {
            log::error!("worker: protocol error: {other:?} where a request was expected");
            io.close();
            return false;
        }
        Err(_) => {
            io.close();
            return false;
        }
    }
    let payload = io.take_payload();
    match RequestIn::decode(&payload) {
        Ok(req) => answer(host, io, &req),
        Err(e) => {
            log::error!("worker: protocol error: {e}");
            io.close();
            return false;
        }
    }
    io.give_back(payload);
    if io.flush().is_err() {
        io.close();
        return false;
    }
    true
}

/// Answers one request: the app's frames, then `End`; or `Refused` without the app.
fn answer(host: &Host, io: &mut FrameIo, req: &RequestIn<'_>) {
    let file = Path::new(std::ffi::OsStr::from_bytes(req.file));
    let group_name = req.group_name.map(String::from_utf8_lossy);
    match host.plugin(0, file, group_name.as_deref()) {
        Ok(loaded) => {
            loaded.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let _scope = crate::logs::RequestScope::enter(&loaded.app, req.id);
            crate::isolation::boundary::call(&loaded.plugin, io, req);
        }
        Err(u) => {
            // The body frames the daemon sent with the request are read all the same: left
            // on the socket, they would be taken for the start of the next request.
            for _ in 0..req.preloaded {
                if io.read().is_err() {
                    // The socket failed: the flush after this fails too and ends the thread.
                    break;
                }
            }
            let code = match u {
                Unavailable::Missing => 0,
                Unavailable::Broken => 1,
            };
            io.frame(Kind::Refused, |out| out.put_u8(code));
        }
    }
}

/// Runs one event of a WebSocket this worker's app accepted on the alias's app threads, and
/// tells the daemon when it returned.
fn websocket_event(host: &Host, control: &Arc<Control>, payload: &[u8]) {
    let (plugin, socket, kind, code, data) = match crate::isolation::websocket::event(payload) {
        Ok(event) => event,
        Err(e) => {
            log::error!("worker: protocol error: {e}");
            return;
        }
    };
    let done = move |control: &Control, status| {
        control.send(Kind::WsEventDone, |out| {
            crate::isolation::websocket::event_done(out, socket, status);
        })
    };
    let Some(plugin) = plugin else {
        done(control, gatehouse_abi::Status::ERROR);
        return;
    };
    let job_control = Arc::clone(control);
    let job = Box::new(move || {
        let status = plugin.websocket_event(socket, kind, &data, code);
        done(&job_control, status);
    });
    if host.mounts[0].pool.submit(job).is_err() {
        log::warn!("worker: every app thread is busy; WebSocket {socket}'s event failed");
        done(control, gatehouse_abi::Status::ERROR);
    }
}
