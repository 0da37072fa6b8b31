//! The one handler every request goes through, top to bottom as ARCHITECTURE.md draws it:
//! route → environ → hooks → input → call (in process or relayed) → response.
//!
//! It loads the live host once and serves the whole request on that snapshot; it works out
//! the client (behind `trusted_proxies`) once and hands it, the app and the request id to
//! the access log in one request extension. Every answer the daemon makes itself is an
//! [`Answer`]; the app's deadline is the request's [`Deadline`].

use std::future::Future;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::future::Either;
use gatehouse_config::{AliasKind, Dispatch};
use tokio::sync::{mpsc, oneshot};

use crate::call::deadline::{Deadline, Runner};
use crate::call::{self, BodySource, Reply};
use crate::host::{Host, Live, Loaded, Mount, Unavailable};
use crate::http::access::{self, Served};
use crate::http::response;
use crate::logs::per_request;
use crate::request::answer::Answer;
use crate::request::environ::{self, PairBuf, RouteVars};
use crate::request::forwarded::Origin;
use crate::request::input::{self, BodyError, BodyKind, Input, Limits};
use crate::request::route::{self, GroupMiss, Route, alias_app_name};

/// Chunks of a streamed request body that may wait between the client and the app.
const REQUEST_CHUNKS_IN_FLIGHT: usize = 4;

/// Apache's `LimitRequestLine` default.
const MAX_REQUEST_LINE: usize = 8190;

/// The methods a 405 of the daemon's own names: what apps may get (any other method
/// reaches them too, but these are the ones a client should try).
const ALLOW: &str = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS";
/// The same with `trace_enable`.
const ALLOW_TRACE: &str = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS, TRACE";

/// Serves every request, on the host current when it arrives, and counts it (in flight,
/// then by alias and status class, with its time to the response head).
pub async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    live: web::Data<Live>,
) -> HttpResponse {
    let started = Instant::now();
    let _in_flight = crate::metrics::InFlight::start();
    let host = live.host();
    let origin = origin(&req, &host);
    let mut served = Served::new(origin.ip);
    let resp = match serve(&req, payload, &host, origin, &mut served).await {
        Ok(resp) => resp,
        Err(answer) => answer.response(),
    };
    let mut resp = response::with_error_page(&host, served.mount, resp);
    response::frame_for(req.version(), &mut resp);
    let stats = served.mount.map_or(&crate::metrics::UNROUTED, |m| &*host.mounts[m].stats);
    stats.record(resp.status().as_u16(), started.elapsed());
    access::note(&req, served);
    resp
}

/// The client as the app and the access log see it: the peer, or the client a trusted
/// proxy names (its `Forwarded` / `X-Forwarded-*` headers are read here, once).
fn origin(req: &HttpRequest, host: &Host) -> Origin {
    let proxies = &host.config.trusted_proxies;
    match req.peer_addr() {
        Some(peer) if !proxies.is_empty() => {
            crate::request::forwarded::origin_of(peer.ip(), proxies, req.headers())
        }
        _ => Origin::direct(req),
    }
}

/// Route → input → environ → call → response.
async fn serve(
    req: &HttpRequest,
    payload: web::Payload,
    host: &Arc<Host>,
    origin: Origin,
    served: &mut Served,
) -> Result<HttpResponse, Answer> {
    check_request_line(req)?;
    check_method(req.method(), host.config.trace_enable)?;
    if req.uri().path() == "*" && req.method() == actix_web::http::Method::OPTIONS {
        // `OPTIONS *` asks about the server, not a resource: Apache answers it itself.
        return Ok(HttpResponse::Ok()
            .insert_header((header::ALLOW, "GET, HEAD, POST, OPTIONS"))
            .finish());
    }

    // Static files (`static`) come before the aliases.
    let path = route::normalize(req.uri().path().as_bytes()).map_err(Answer::from)?;
    if !host.config.statics.is_empty()
        && let Some(resp) = static_file(req, &path, host, served)
    {
        return resp;
    }

    // Route: URL → alias → plugin file.
    let mut t = target(host, path, served)?;
    let m = &host.mounts[t.mount];
    let alias = &m.alias;
    served.app = Some(Arc::from(t.app_name(m)));
    check_headers(req, &alias.limits)?;

    // Environ: the CGI/WSGI variables.
    let mut vars = environ::cgi_vars(
        req,
        RouteVars {
            script_name: &t.path[..t.script_len],
            path_info: &t.path[t.script_len..],
            script_filename: t.file.as_os_str().as_bytes(),
        },
        alias,
        origin,
    );
    let request_id = host.request_id();
    served.request_id = Some(request_id);

    // Access and authentication hooks, before a byte of the body is read.
    served.user = super::hooks::check(req, host, t.mount, &mut vars, request_id).await?;
    if let Some(answer) = t.missing.take() {
        return Err(answer);
    }

    // A WebSocket handshake: its app may accept it (`http::websocket`).
    if super::websocket::asked(req) {
        let group_name = t.group_name.as_deref();
        let r = super::websocket::Routed { mount: t.mount, file: &t.file, group_name, vars };
        return super::websocket::serve(req, payload, host, r, request_id).await;
    }

    // Input: query and form parameters, uploads; any other body streams to the app.
    let raw = host.config.handler_for(&t.file).is_some();
    let (input, body, pump) = read_input(req, payload, m, &host.config, raw).await?;
    let is_head = req.method() == actix_web::http::Method::HEAD;

    // Call: inline on this HTTP worker (loaded, nothing to stream; under `auto` only while
    // its plugin keeps its promise never to block), relayed to a worker process, or on the
    // alias's pool.
    // The plugin, when it may run here; a call that goes to the pool takes it along.
    let loaded = (alias.dispatch != Dispatch::Pool && pump.is_none() && m.workers.is_none())
        .then(|| host.loaded(t.mount, &t.file))
        .flatten();
    let checked = alias.dispatch == Dispatch::Auto;
    if let Some(loaded) = &loaded
        && (!checked
            || (loaded.plugin.never_blocks() && loaded.inline.admits(&loaded.app, request_id)))
    {
        let call = loaded.call(&vars, &input, alias.develop_mode, request_id);
        let timed = checked.then(|| loaded.inline.start());
        let reply = call::invoke_inline(&loaded.plugin, &call, timed.as_ref().map(|t| t.cut_at()));
        if let Some(timed) = timed {
            let nth = loaded.requests.load(std::sync::atomic::Ordering::Relaxed);
            loaded.inline.ran(timed, nth, &loaded.app, request_id);
        }
        return Ok(response::from_reply(reply, request_id, is_head, None));
    }
    let deadline = Deadline::start(alias.limits.timeout);
    let call = Prepared { t, vars, input, body, request_id, deadline: deadline.clone(), loaded };
    let (reply, runner): (_, &dyn Runner) = match &m.workers {
        Some(workers) => (relay(Arc::clone(host), call), &**workers),
        None => (on_pool(Arc::clone(host), call)?, &*m.pool),
    };

    // Response: the app's reply, while the rest of the body streams to it.
    let who = alias.url.as_str();
    let Some(pump) = pump else {
        let reply = deadline.wait(reply, runner, who, request_id).await?;
        return Ok(response::from_reply(reply, request_id, is_head, None));
    };
    match futures_util::future::select(pump, reply).await {
        Either::Left((Ok(()), reply)) => {
            let reply = deadline.wait(reply, runner, who, request_id).await?;
            Ok(response::from_reply(reply, request_id, is_head, None))
        }
        Either::Left((Err(BodyError::AppStalled), _)) => {
            Err(deadline.expire(runner, who, request_id))
        }
        // A body that turned out too large or malformed before the app answered.
        Either::Left((Err(e), _)) => Err(Answer::body(e, alias.max_body)),
        Either::Right((Ok(reply), pump)) => {
            // The app answered before the body ended: keep pumping while the reply streams.
            let pump: Pin<Box<dyn Future<Output = ()>>> = Box::pin(async move {
                let _ = pump.await;
            });
            Ok(response::from_reply(reply, request_id, is_head, Some(pump)))
        }
        Either::Right((Err(_), _)) => Err(Answer::call_lost()),
    }
}

/// Where a routed request goes.
struct Target {
    mount: usize,
    file: Arc<Path>,
    /// For a directory group, the plugin NAME.
    group_name: Option<Arc<str>>,
    /// The normalised path: SCRIPT_NAME is its first `script_len` bytes, PATH_INFO the rest.
    path: Vec<u8>,
    script_len: usize,
    /// The answer for a group name (or `url_match` file) that serves nothing, under an alias
    /// with hooks: given only after they passed the request, as Apache authenticates before
    /// its handler finds the file missing, so that a client the hooks refuse cannot tell
    /// names that exist from names that do not.
    missing: Option<Answer>,
}

impl Target {
    /// The app's name in logs: a group's plugin NAME, else the alias URL's last segment.
    fn app_name<'a>(&'a self, m: &'a Mount) -> &'a str {
        self.group_name.as_deref().unwrap_or_else(|| alias_app_name(&m.alias.url))
    }
}

/// The answer for a request under a `static` URL (`None`: no static folder covers it);
/// `path` is the request's, normalized.
fn static_file(
    req: &HttpRequest,
    path: &[u8],
    host: &Host,
    served: &mut Served,
) -> Option<Result<HttpResponse, Answer>> {
    let (dir, rest) = super::static_files::covering(&host.config.statics, path)?;
    served.app = Some(Arc::from("static"));
    Some(
        super::static_files::resolve(&dir.path, rest)
            .and_then(|f| super::static_files::serve(req, &f)),
    )
}

/// Routes a request (its normalized `path`) to its alias and plugin file, or answers it.
/// `served.mount` is set once an alias matched: a directory group's missing app counts as
/// its alias's request.
fn target(host: &Host, path: Vec<u8>, served: &mut Served) -> Result<Target, Answer> {
    let (mount, script_len, group) = match host.table.route(&path) {
        Route::App { mount, script_name, .. } => (mount, script_name.len(), None),
        Route::Group { mount, name, script_name, .. } => (mount, script_name.len(), Some(name)),
        Route::Match { mount, script_name, file, .. } => {
            // The file the captures name, served as a group's plugin named by the match.
            served.mount = Some(mount);
            let mut missing = None;
            if !file.is_file() {
                per_request!(Info, &host.mounts[mount].alias.url, None;
                    "404: {} (for {}) does not exist", file.display(), String::from_utf8_lossy(script_name));
                missing = after_hooks(host, mount, Answer::new(404, "no such app"))?;
            }
            let script_len = script_name.len();
            let name = Arc::from(String::from_utf8_lossy(script_name).as_ref());
            let file = Arc::from(file.as_path());
            return Ok(Target { mount, file, group_name: Some(name), path, script_len, missing });
        }
        Route::GroupIndex { .. } => {
            return Err(Answer::new(403, "a directory group's folder is not an app"));
        }
        Route::NoMatch => return Err(Answer::new(404, "no alias matches this URL")),
    };
    served.mount = Some(mount);
    let m = &host.mounts[mount];
    let (file, group_name) = match group {
        None => (Arc::clone(&m.app_file), None),
        Some(name) => match host.group_file(mount, name) {
            Ok((file, name)) => (file, Some(name)),
            Err(miss) => {
                let answer = match miss {
                    GroupMiss::Forbidden(why) => {
                        per_request!(Info, &m.alias.url, None; "403: {why}");
                        Answer::new(403, "not an app")
                    }
                    GroupMiss::NotFound(why) => {
                        per_request!(Info, &m.alias.url, None; "404: {why}");
                        Answer::new(404, "no such app")
                    }
                };
                let missing = after_hooks(host, mount, answer)?;
                let file = Arc::from(m.alias.path.join(std::ffi::OsStr::from_bytes(name)));
                let name = Arc::from(String::from_utf8_lossy(name).as_ref());
                return Ok(Target {
                    mount,
                    file,
                    group_name: Some(name),
                    path,
                    script_len,
                    missing,
                });
            }
        },
    };
    Ok(Target { mount, file, group_name, path, script_len, missing: None })
}

/// `answer`, for a URL of alias `mount` that serves nothing: at once (`Err`) unless the
/// alias has hooks, which must pass the request first (see [`Target::missing`]).
fn after_hooks(host: &Host, mount: usize, answer: Answer) -> Result<Option<Answer>, Answer> {
    if host.mounts[mount].hooks.is_some() { Ok(Some(answer)) } else { Err(answer) }
}

/// The listener's `Expect: 100-continue` hook, run before actix would send `100 Continue`
/// (which asks the client for its body): the answer the handler gives without reading a
/// byte of the body, when it refuses the request that way: a method it refuses, missing
/// credentials for an alias with an `auth_user_script` (401), or a declared Content-Length
/// past the routed alias's `max_body` (413). Counted and logged like
/// the handler's answers, and the connection is closed after it (the client may send its
/// body anyway; nobody will read it). `None`: `100 Continue`, and [`handle`] serves it.
pub(crate) fn before_continue(
    live: &Live,
    head: &actix_web::dev::RequestHead,
    peer: Option<std::net::SocketAddr>,
) -> Option<HttpResponse> {
    let started = Instant::now();
    let host = live.host();
    let (mount, answer) = refused_before_body(&host, head)?;
    let mut resp = response::with_error_page(&host, mount, answer.response());
    resp.head_mut().set_connection_type(actix_web::http::ConnectionType::Close);
    let stats = mount.map_or(&crate::metrics::UNROUTED, |m| &*host.mounts[m].stats);
    stats.record(resp.status().as_u16(), started.elapsed());
    // A single app's name; a group's plugin NAME is not looked up for this (`-`).
    let app = mount
        .map(|m| &host.mounts[m].alias)
        .filter(|alias| alias.kind == AliasKind::App)
        .map(|alias| Arc::from(alias_app_name(&alias.url)));
    let bytes = match actix_web::body::MessageBody::size(resp.body()) {
        actix_web::body::BodySize::Sized(n) => n,
        _ => 0,
    };
    access::refused(head, peer, answer.status, bytes, app);
    Some(resp)
}

/// What [`before_continue`] refuses, and the alias it counts under.
fn refused_before_body(
    host: &Host,
    head: &actix_web::dev::RequestHead,
) -> Option<(Option<usize>, Answer)> {
    if let Err(answer) = check_method(&head.method, host.config.trace_enable) {
        return Some((None, answer));
    }
    let path = route::normalize(head.uri.path().as_bytes()).ok()?;
    let mount = match host.table.route(&path) {
        Route::App { mount, .. } | Route::Group { mount, .. } | Route::Match { mount, .. } => mount,
        Route::GroupIndex { .. } | Route::NoMatch => return None,
    };
    if let Some(answer) = super::hooks::refused_before_body(host, mount, &head.headers) {
        return Some((Some(mount), answer));
    }
    let len = head.headers.get(header::CONTENT_LENGTH)?.to_str().ok()?.trim().parse().ok()?;
    let max_body = host.mounts[mount].alias.max_body;
    (len > max_body).then(|| (Some(mount), input::declared_too_large(len, max_body)))
}

/// Apache's `LimitRequestLine`: `METHOD TARGET HTTP/1.1` of at most 8190 bytes, else 414,
/// checked before anything else looks at the request.
fn check_request_line(req: &HttpRequest) -> Result<(), Answer> {
    let target = crate::request::environ::raw_target(req)
        .map_or_else(|| req.uri().path_and_query().map_or(0, |p| p.as_str().len()), |t| t.len());
    let line = req.method().as_str().len() + 1 + target + " HTTP/1.1".len();
    if line > MAX_REQUEST_LINE {
        return Err(Answer::owned(
            414,
            format!("the request line is longer than {MAX_REQUEST_LINE} bytes"),
        ));
    }
    Ok(())
}

/// Refuses, before any app sees them, the methods a hardened Apache refuses: `TRACE` (it
/// echoes the request, cookies and credentials included, to whoever sent it: cross-site
/// tracing) unless `trace_enable` says otherwise, as Apache's `TraceEnable off`; and
/// `CONNECT` (Gatehouse is no proxy), both 405 with `Allow`.
fn check_method(method: &actix_web::http::Method, trace_enable: bool) -> Result<(), Answer> {
    use actix_web::http::Method;
    let allow = if trace_enable { ALLOW_TRACE } else { ALLOW };
    match *method {
        Method::TRACE if !trace_enable => {
            Err(Answer::method_not_allowed("TRACE is not allowed (trace_enable is off)", allow))
        }
        Method::CONNECT => {
            Err(Answer::method_not_allowed("CONNECT is not allowed: this is not a proxy", allow))
        }
        _ => Ok(()),
    }
}

/// Refuses what Apache refuses before calling an app: more header fields than the alias's
/// `max_headers` (`LimitRequestFields`), or a header line longer than its
/// `max_header_size` (`LimitRequestFieldSize`); both 400, as Apache answers (actix-web's own
/// parser answers 431 past 96 fields). (A `#fragment` never gets here: the HTTP parser drops
/// it; malformed request lines and headers are refused by it with 400 before any of this
/// runs.)
fn check_headers(req: &HttpRequest, limits: &gatehouse_config::Limits) -> Result<(), Answer> {
    let headers = req.headers();
    if headers.len() > limits.max_headers {
        return Err(Answer::owned(
            400,
            format!(
                "the request has {} header fields, more than {}",
                headers.len(),
                limits.max_headers
            ),
        ));
    }
    for (name, value) in headers {
        if name.as_str().len() + 2 + value.len() > limits.max_header_size {
            return Err(Answer::owned(
                400,
                format!("the {name} header is longer than {} bytes", limits.max_header_size),
            ));
        }
    }
    Ok(())
}

/// The request-body pump still running while the app works.
type Pump = Pin<Box<dyn Future<Output = Result<(), BodyError>>>>;

/// Reads a request's parameters (and form body), and sets up the stream of any other body.
/// With `raw` (a script served by a handler: a WSGI app parses its own forms from
/// `wsgi.input`), a form body is streamed as it is, like any other.
async fn read_input(
    req: &HttpRequest,
    payload: web::Payload,
    m: &Mount,
    config: &gatehouse_config::Config,
    raw: bool,
) -> Result<(Input, BodySource, Option<Pump>), Answer> {
    let alias = &m.alias;
    let limits = Limits {
        max_body: alias.max_body,
        max_upload: alias.max_upload,
        upload_dir: &config.upload_dir,
        upload_owner: m.workers.as_ref().and_then(|w| w.uid()),
        body_timeout: alias.limits.body_timeout,
        min_rate: alias.limits.body_min_rate,
        body_timeout_max: alias.limits.body_timeout_max,
        budget: &crate::spool::UPLOADS,
        upload_budget: config.upload_budget,
    };
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
            let pump: Pump =
                Box::pin(input::pump(payload, tx, limits.body(), alias.limits.timeout));
            (input, BodySource::Stream(rx), Some(pump))
        }
        BodyKind::None => (input, BodySource::Empty, None),
    })
}

/// A request read and routed, ready for its app.
struct Prepared {
    t: Target,
    vars: PairBuf,
    input: Input,
    body: BodySource,
    request_id: u64,
    deadline: Deadline,
    /// The plugin, when the handler already looked it up (the pool job does otherwise).
    loaded: Option<Loaded>,
}

/// Relays the request to one of the alias's worker processes, on a task of this HTTP
/// worker (it finishes the exchange with the worker even if the client leaves).
fn relay(host: Arc<Host>, p: Prepared) -> oneshot::Receiver<Reply> {
    let (tx, rx) = oneshot::channel();
    actix_web::rt::spawn(async move {
        let Prepared { t, vars, input, body, request_id, deadline, .. } = p;
        let m = &host.mounts[t.mount];
        let Some(workers) = &m.workers else { return };
        let app = t.app_name(m);
        let debug = host.debug_log(app);
        let relay = crate::isolation::relay::Relay {
            group: workers,
            kind: m.alias.kind,
            app,
            debug: &debug,
            request_id,
            develop_mode: m.alias.develop_mode,
            file: &t.file,
            group_name: t.group_name.as_deref(),
            vars: &vars,
            input: &input,
            deadline: &deadline,
            websocket: None,
        };
        crate::isolation::relay::relay(&relay, body, tx).await;
    });
    rx
}

/// Queues the call on the alias's pool; its reply comes on the receiver. A full pool
/// answers 503 at once.
fn on_pool(host: Arc<Host>, p: Prepared) -> Result<oneshot::Receiver<Reply>, Answer> {
    let (tx, rx) = oneshot::channel();
    let (mount, p_request_id) = (p.t.mount, p.request_id);
    let job_host = Arc::clone(&host);
    let job = Box::new(move || {
        let started = Instant::now();
        let Prepared { t, vars, input, body, request_id, deadline, loaded } = p;
        let m = &job_host.mounts[t.mount];
        // Still queued when its client got 504, or left: nobody will read the reply, and
        // the app's time goes to the requests behind it.
        if deadline.expired() || tx.is_closed() {
            deadline.ended(&*m.pool);
            per_request!(Info, &m.alias.url, request_id;
                "not run: its client got 504 or left while it waited for a thread");
            return;
        }
        let plugin = match loaded {
            Some(loaded) => Ok(loaded),
            None => job_host.plugin(t.mount, &t.file, t.group_name.as_deref()),
        };
        match plugin {
            Ok(loaded) => {
                let call = loaded.call(&vars, &input, m.alias.develop_mode, request_id);
                call::invoke(&loaded.plugin, &call, body, tx, deadline.timeout());
                if deadline.ended(&*m.pool) {
                    per_request!(Warn, format_args!("app {}", loaded.app), request_id;
                        "returned after {:.1} s, past its timeout of {:?}; its thread is free \
                         again",
                        started.elapsed().as_secs_f64(),
                        deadline.timeout());
                }
            }
            Err(u) => {
                let group = m.alias.kind == AliasKind::Group;
                let answer = Answer::unavailable(matches!(u, Unavailable::Missing), group);
                let _ = tx.send(Reply::Refused(answer));
                // (A first load can outlast the timeout: a Python interpreter starting.)
                deadline.ended(&*m.pool);
            }
        }
    });
    let m = &host.mounts[mount];
    if let Err(busy) = m.pool.submit(job) {
        per_request!(Warn, &m.alias.url, p_request_id; "{busy}; answered 503");
        return Err(Answer::busy());
    }
    Ok(rx)
}
