//! The HTTP side: actix-web setup, and the one handler that takes every request through
//! mounts → input → environ → dispatch → response.
//!
//! Errors the daemon answers itself (400, 403, 404, 413, 500, 503) are short `text/plain`
//! bodies saying what was wrong; the detail an operator needs goes to the error log.

use std::net::SocketAddr;
use std::sync::Arc;

use std::future::Future;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::pin::Pin;

use actix_web::http::header;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use futures_util::future::Either;
use gatehouse_config::{Alias, AliasKind, Dispatch};
use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio::sync::{mpsc, oneshot};

use crate::environ::{self, PairBuf, RouteVars};
use crate::ffi::{self, BodySource, Call, Reply};
use crate::host::{Host, Unavailable};
use crate::input::{self, BodyError, BodyKind, Input, Limits};
use crate::mounts::{self, GroupMiss, Route};
use crate::reload::Live;
use crate::response::{self, plain};

/// Chunks of a streamed request body that may wait between the client and the app.
const REQUEST_CHUNKS_IN_FLIGHT: usize = 4;

/// Where a routed request goes.
struct Target {
    mount: usize,
    file: Arc<Path>,
    /// For a directory group, the plugin NAME.
    group_name: Option<Arc<str>>,
    /// The normalised path: SCRIPT_NAME is its first `script_len` bytes, PATH_INFO the rest.
    path: Vec<u8>,
    script_len: usize,
}

/// Routes a request to its alias and plugin file, or answers it.
fn target(host: &Host, raw_path: &str) -> Result<Target, (u16, &'static str)> {
    let path = mounts::normalize(raw_path.as_bytes()).map_err(|e| (e.status(), e.reason()))?;
    let (mount, script_len, group) = match host.table.route(&path) {
        Route::App { mount, script_name, .. } => (mount, script_name.len(), None),
        Route::Group { mount, name, script_name, .. } => (mount, script_name.len(), Some(name)),
        Route::GroupIndex { .. } => return Err((403, "a directory group's folder is not an app")),
        Route::NoMatch => return Err((404, "no alias matches this URL")),
    };
    let m = &host.mounts[mount];
    let (file, group_name) = match group {
        None => (Arc::clone(&m.app_file), None),
        Some(name) => match host.group_file(mount, name) {
            Ok((file, name)) => (file, Some(name)),
            Err(GroupMiss::Forbidden(why)) => {
                log::info!("{}: 403: {why}", m.alias.url);
                return Err((403, "not an app"));
            }
            Err(GroupMiss::NotFound(why)) => {
                log::info!("{}: 404: {why}", m.alias.url);
                return Err((404, "no such app"));
            }
        },
    };
    Ok(Target { mount, file, group_name, path, script_len })
}

/// Apache's `LimitRequestFieldSize`: the longest header line accepted.
const MAX_HEADER_LINE: usize = 8190;

/// Refuses what Apache refuses before mapping a URL: an over-long header line. (A
/// `#fragment` never gets here: the HTTP parser drops it.)
fn check_request(req: &HttpRequest) -> Result<(), (u16, String)> {
    for (name, value) in req.headers() {
        if name.as_str().len() + 2 + value.len() > MAX_HEADER_LINE {
            return Err((400, format!("the {name} header is longer than {MAX_HEADER_LINE} bytes")));
        }
    }
    Ok(())
}

/// The request-body pump still running while the app works.
type Pump = Pin<Box<dyn Future<Output = Result<(), BodyError>>>>;

/// A request read and routed, ready for its app.
struct Prepared {
    t: Target,
    vars: PairBuf,
    input: Input,
    body: BodySource,
    request_id: u64,
}

/// Reads a request's parameters (and form body), and sets up the stream of any other body.
/// With `raw` (a script served by a handler: a WSGI app parses its own forms from
/// `wsgi.input`), a form body is streamed as it is, like any other.
async fn read_input(
    req: &HttpRequest,
    payload: web::Payload,
    alias: &Alias,
    upload_dir: &Path,
    raw: bool,
) -> Result<(Input, BodySource, Option<Pump>), input::InputError> {
    let limits = Limits { max_body: alias.max_body, max_upload: alias.max_upload, upload_dir };
    let kind = match input::body_kind(req, alias.max_body)? {
        BodyKind::Urlencoded | BodyKind::Multipart if raw => BodyKind::Other,
        kind => kind,
    };
    let mut input = Input::default();
    input::query_params(req.query_string(), &mut input.params);
    Ok(match kind {
        BodyKind::Urlencoded | BodyKind::Multipart => {
            input::read_form(req, payload, kind, limits, &mut input).await?;
            (input, BodySource::Empty, None)
        }
        BodyKind::Other => {
            let (tx, rx) = mpsc::channel(REQUEST_CHUNKS_IN_FLIGHT);
            let pump: Pump = Box::pin(input::pump(payload, tx, alias.max_body));
            (input, BodySource::Stream(rx), Some(pump))
        }
        BodyKind::None => (input, BodySource::Empty, None),
    })
}

/// Serves every request, on the host current when it arrives.
pub async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    live: web::Data<Live>,
) -> HttpResponse {
    let host: Arc<Host> = live.host();
    if let Err((status, message)) = check_request(&req) {
        return plain(status, &message);
    }
    if req.uri().path() == "*" && req.method() == actix_web::http::Method::OPTIONS {
        // `OPTIONS *` asks about the server, not a resource: Apache answers it itself.
        return HttpResponse::Ok()
            .insert_header((header::ALLOW, "GET, HEAD, POST, OPTIONS"))
            .finish();
    }
    let t = match target(&host, req.uri().path()) {
        Ok(t) => t,
        Err((status, message)) => return plain(status, message),
    };
    let alias = &host.mounts[t.mount].alias;
    let raw = host.config.handler_for(&t.file).is_some();
    let (input, body, pump) =
        match read_input(&req, payload, alias, &host.config.upload_dir, raw).await {
            Ok(read) => read,
            Err(e) => return plain(e.status, &e.message),
        };
    let vars = environ::cgi_vars(
        &req,
        RouteVars {
            script_name: &t.path[..t.script_len],
            path_info: &t.path[t.script_len..],
            script_filename: t.file.as_os_str().as_bytes(),
        },
        alias,
    );
    let request_id = host.request_id();
    let is_head = req.method() == actix_web::http::Method::HEAD;
    // Inline dispatch: call the app right here, on the HTTP worker, when it is loaded and
    // there is no body to stream (reading one would wait).
    if alias.dispatch == Dispatch::Inline
        && pump.is_none()
        && let Some(loaded) = host.loaded(t.mount, &t.file)
    {
        let call = Call::new(&loaded, &vars, &input, alias.develop_mode, request_id);
        return response::from_reply(ffi::invoke_inline(&loaded.plugin, &call), is_head, None);
    }
    on_pool(Arc::clone(&host), Prepared { t, vars, input, body, request_id }, pump, is_head).await
}

/// Runs the app on its alias's pool, streaming the request body to it meanwhile, and turns
/// its reply into the response.
async fn on_pool(host: Arc<Host>, p: Prepared, pump: Option<Pump>, is_head: bool) -> HttpResponse {
    let mount = p.t.mount;
    let alias = &host.mounts[mount].alias;
    let max_body = alias.max_body;
    let (tx, rx) = oneshot::channel();
    let job_host = Arc::clone(&host);
    let job = Box::new(move || {
        let Prepared { t, vars, input, body, request_id } = p;
        let m = &job_host.mounts[t.mount];
        match job_host.plugin(t.mount, &t.file, t.group_name.as_deref()) {
            Ok(loaded) => {
                let call = Call::new(&loaded, &vars, &input, m.alias.develop_mode, request_id);
                ffi::invoke(&loaded.plugin, &call, body, tx);
            }
            Err(u) => {
                let (status, message) = match u {
                    Unavailable::Missing(_) => (404, "no such app"),
                    // A directory group answers for a broken file as for a missing one.
                    Unavailable::Broken(_) if m.alias.kind == AliasKind::Group => {
                        (404, "no such app")
                    }
                    Unavailable::Broken(_) => {
                        (500, "the app could not be loaded; the error log says why")
                    }
                };
                let _ = tx.send(Reply::Refused { status, message });
            }
        }
    });
    if let Err(busy) = host.mounts[mount].pool.submit(job) {
        log::warn!("{}: {busy}; answered 503", alias.url);
        let mut resp = plain(503, "the app is busy; retry shortly");
        resp.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return resp;
    }
    let lost = || plain(500, "the app call was lost; the error log has the details");
    let Some(pump) = pump else {
        return match rx.await {
            Ok(reply) => response::from_reply(reply, is_head, None),
            Err(_) => lost(),
        };
    };
    // Stream the body to the app while waiting for its reply. A body that turns out too
    // large or malformed before the app answered is refused here.
    match futures_util::future::select(pump, rx).await {
        Either::Left((Ok(()), rx)) => match rx.await {
            Ok(reply) => response::from_reply(reply, is_head, None),
            Err(_) => lost(),
        },
        Either::Left((Err(e), _)) => {
            let e = e.refusal(max_body);
            plain(e.status, &e.message)
        }
        Either::Right((Ok(reply), pump)) => {
            // The app answered before the body ended: keep pumping while the reply streams.
            let pump: Pin<Box<dyn Future<Output = ()>>> = Box::pin(async move {
                let _ = pump.await;
            });
            response::from_reply(reply, is_head, Some(pump))
        }
        Either::Right((Err(_), _)) => lost(),
    }
}

/// Asks the listener loop to change what it listens on.
#[derive(Debug)]
pub enum Control {
    /// Listen on exactly these addresses now: keep those already bound, bind the new
    /// ones, stop the others (gracefully).
    Listen(Vec<SocketAddr>),
}

/// The signals the daemon acts on, installed before anything slow happens so that an early
/// SIGHUP is queued, not fatal.
#[derive(Debug)]
pub struct Signals {
    term: Signal,
    int: Signal,
    hup: Signal,
}

impl Signals {
    /// Installs the handlers (call inside the actix system).
    pub fn install() -> std::io::Result<Signals> {
        Ok(Signals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
            hup: signal(SignalKind::hangup())?,
        })
    }
}

/// One bound listen address, served by its own actix server.
struct Listener {
    /// The address as configured (port 0 stays 0).
    configured: SocketAddr,
    handle: actix_web::dev::ServerHandle,
}

fn start_listener(
    live: &web::Data<Live>,
    addr: SocketAddr,
) -> std::io::Result<(Listener, Vec<SocketAddr>)> {
    let data = live.clone();
    let server =
        HttpServer::new(move || App::new().app_data(data.clone()).default_service(web::to(handle)))
            .disable_signals()
            .bind(addr)
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    let bound = server.addrs();
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    Ok((Listener { configured: addr, handle }, bound))
}

/// What the serving loop is given.
#[derive(Debug)]
pub struct Hooks<B, H> {
    /// Called with the addresses bound, at start and whenever a reload binds more.
    pub on_bound: B,
    /// Called on SIGHUP.
    pub on_hangup: H,
}

/// Binds every listen address, reports the bound addresses, and serves until SIGINT or
/// SIGTERM (graceful: requests in flight finish). SIGHUP calls `on_hangup`; [`Control`]
/// messages change the listen addresses while serving.
pub async fn run<B: FnMut(&[SocketAddr]), H: FnMut()>(
    live: Arc<Live>,
    listen: &[SocketAddr],
    mut signals: Signals,
    mut control: mpsc::UnboundedReceiver<Control>,
    mut hooks: Hooks<B, H>,
) -> std::io::Result<()> {
    let live = web::Data::from(live);
    let mut listeners: Vec<Listener> = Vec::new();
    let mut bound = Vec::new();
    for addr in listen {
        match start_listener(&live, *addr) {
            Ok((l, addrs)) => {
                listeners.push(l);
                bound.extend(addrs);
            }
            Err(e) => {
                for l in &listeners {
                    l.handle.stop(false).await;
                }
                return Err(e);
            }
        }
    }
    (hooks.on_bound)(&bound);
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
            Some(Control::Listen(want)) = control.recv() => {
                let (keep, gone): (Vec<Listener>, Vec<Listener>) =
                    listeners.into_iter().partition(|l| want.contains(&l.configured));
                listeners = keep;
                for l in gone {
                    log::info!("no longer listening on {} (its requests in flight finish)", l.configured);
                    actix_web::rt::spawn(async move { l.handle.stop(true).await });
                }
                let mut added = Vec::new();
                for addr in want {
                    if listeners.iter().any(|l| l.configured == addr) {
                        continue;
                    }
                    match start_listener(&live, addr) {
                        Ok((l, addrs)) => {
                            listeners.push(l);
                            added.extend(addrs);
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
    let stops = listeners.iter().map(|l| l.handle.stop(true));
    futures_util::future::join_all(stops).await;
    Ok(())
}
