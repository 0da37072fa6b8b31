//! The HTTP side: actix-web setup, and the one handler that takes every request through
//! mounts → input → environ → dispatch → response.
//!
//! Errors the daemon answers itself (400, 403, 404, 413, 500, 503) are short `text/plain`
//! bodies saying what was wrong; the detail an operator needs goes to the error log.

use std::sync::Arc;

use std::future::Future;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::future::Either;
use gatehouse_config::{Alias, AliasKind, Dispatch};
use tokio::sync::{mpsc, oneshot};

use crate::call::{self, BodySource, Reply};
use crate::host::Live;
use crate::host::{Host, Unavailable};
use crate::http::response::{self, plain};
use crate::logs::per_request;
use crate::request::environ::{self, PairBuf, RouteVars};
use crate::request::input::{self, BodyError, BodyKind, Input, Limits};
use crate::request::route::{self, GroupMiss, Route};

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

/// A request the host answers itself: status, reason, and the alias it counts under.
type Answer = (u16, &'static str, Option<usize>);

/// Routes a request to its alias and plugin file, or answers it (with the alias, when one
/// matched: a directory group's missing app counts as its alias's request).
fn target(host: &Host, raw_path: &str) -> Result<Target, Answer> {
    target_of(host, raw_path).map_err(|(status, message)| (status, message, None))?
}

/// [`target`], with the routing answers; an alias's own answers come as `Ok(Err(..))`.
fn target_of(host: &Host, raw_path: &str) -> Result<Result<Target, Answer>, (u16, &'static str)> {
    let path = route::normalize(raw_path.as_bytes()).map_err(|e| (e.status(), e.reason()))?;
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
                per_request!(Info, m.alias.url, None; "403: {why}");
                return Ok(Err((403, "not an app", Some(mount))));
            }
            Err(GroupMiss::NotFound(why)) => {
                per_request!(Info, m.alias.url, None; "404: {why}");
                return Ok(Err((404, "no such app", Some(mount))));
            }
        },
    };
    Ok(Ok(Target { mount, file, group_name, path, script_len }))
}

/// Apache's `LimitRequestLine` default.
const MAX_REQUEST_LINE: usize = 8190;

/// Apache's `LimitRequestLine`: `METHOD TARGET HTTP/1.1` of at most 8190 bytes, else 414,
/// checked before anything else looks at the request.
fn check_request_line(req: &HttpRequest) -> Result<(), (u16, String)> {
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    let line = req.method().as_str().len() + 1 + target + " HTTP/1.1".len();
    if line > MAX_REQUEST_LINE {
        return Err((414, format!("the request line is longer than {MAX_REQUEST_LINE} bytes")));
    }
    Ok(())
}

/// Refuses what Apache refuses before calling an app: more header fields than the alias's
/// `max_headers` (`LimitRequestFields`), or a header line longer than its
/// `max_header_size` (`LimitRequestFieldSize`); both 400, as Apache answers (actix-web's own
/// parser answers 431 past 96 fields). (A `#fragment` never gets here:
/// the HTTP parser drops it; malformed request lines and headers are refused by it with
/// 400 before any of this runs.)
fn check_request(
    req: &HttpRequest,
    limits: &gatehouse_config::Limits,
) -> Result<(), (u16, String)> {
    let headers = req.headers();
    if headers.len() > limits.max_headers {
        return Err((
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
            return Err((
                400,
                format!("the {name} header is longer than {} bytes", limits.max_header_size),
            ));
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
    let limits = Limits {
        max_body: alias.max_body,
        max_upload: alias.max_upload,
        upload_dir,
        body_timeout: alias.limits.body_timeout,
        min_rate: alias.limits.body_min_rate,
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

/// Serves every request, on the host current when it arrives, and counts it (in flight,
/// then by alias and status class, with its time to the response head).
pub async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    live: web::Data<Live>,
) -> HttpResponse {
    let started = Instant::now();
    let _in_flight = crate::metrics::InFlight::start();
    let host: Arc<Host> = live.host();
    let mut mount = None;
    let resp = respond(req, payload, Arc::clone(&host), &mut mount).await;
    let stats = mount.map_or(&crate::metrics::UNROUTED, |m| &*host.mounts[m].stats);
    stats.record(resp.status().as_u16(), started.elapsed());
    resp
}

/// Answers a request on `host`; sets `mount` once it is routed to an alias.
async fn respond(
    req: HttpRequest,
    payload: web::Payload,
    host: Arc<Host>,
    mount: &mut Option<usize>,
) -> HttpResponse {
    if let Err((status, message)) = check_request_line(&req) {
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
        Err((status, message, alias)) => {
            *mount = alias;
            return plain(status, message);
        }
    };
    *mount = Some(t.mount);
    let alias = &host.mounts[t.mount].alias;
    crate::http::access::note_app(&req, &alias.url, t.group_name.as_deref()); // access log
    if let Err((status, message)) = check_request(&req, &alias.limits) {
        return plain(status, &message);
    }
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
        &host.config.trusted_proxies,
    );
    let request_id = host.request_id();
    crate::http::access::note(&req, request_id); // access log
    let is_head = req.method() == actix_web::http::Method::HEAD;
    // Inline dispatch: call the app right here, on the HTTP worker, when it is loaded and
    // there is no body to stream (reading one would wait).
    if alias.dispatch == Dispatch::Inline
        && pump.is_none()
        && let Some(loaded) = host.loaded(t.mount, &t.file)
    {
        let call = loaded.call(&vars, &input, alias.develop_mode, request_id);
        return response::from_reply(
            call::invoke_inline(&loaded.plugin, &call),
            request_id,
            is_head,
            None,
        );
    }
    on_pool(Arc::clone(&host), Prepared { t, vars, input, body, request_id }, pump, is_head).await
}

/// Runs the app on its alias's pool, streaming the request body to it meanwhile, and turns
/// its reply into the response.
async fn on_pool(host: Arc<Host>, p: Prepared, pump: Option<Pump>, is_head: bool) -> HttpResponse {
    let mount = p.t.mount;
    let request_id = p.request_id;
    let alias = &host.mounts[mount].alias;
    let max_body = alias.max_body;
    let (tx, rx) = oneshot::channel();
    let job_host = Arc::clone(&host);
    // Set when the client got 504: the job then reports when the app finally returns. In
    // process, the job sets it too when its call is over: whichever of the two sets it first
    // decides whether the call was overdue (and counted in `pool.overdue`).
    let overdue = Arc::new(AtomicBool::new(false));
    let job_overdue = Arc::clone(&overdue);
    // With worker processes: the pid of the one serving the request (killed past the timeout).
    let worker_pid = Arc::new(AtomicU32::new(0));
    let job_pid = Arc::clone(&worker_pid);
    let deadline = Instant::now() + alias.limits.timeout;
    let pool = &host.mounts[mount].pool;
    if host.mounts[mount].workers.is_some() {
        // Isolated: a task on this HTTP worker relays the request to a worker process.
        let task_host = Arc::clone(&host);
        actix_web::rt::spawn(async move {
            let Prepared { t, vars, input, body, request_id } = p;
            let m = &task_host.mounts[t.mount];
            let Some(workers) = &m.workers else { return };
            let app = t
                .group_name
                .as_deref()
                .unwrap_or_else(|| crate::request::route::alias_app_name(&m.alias.url));
            let debug = task_host.debug_log(app);
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
                deadline,
                timeout: m.alias.limits.timeout,
            };
            crate::isolation::relay::relay(&relay, body, tx, &job_pid, &job_overdue).await;
        });
    } else {
        let job = Box::new(move || {
            let started = Instant::now();
            let Prepared { t, vars, input, body, request_id } = p;
            let m = &job_host.mounts[t.mount];
            // Still queued when its client got 504, or left: nobody will read the reply, and
            // the app's time goes to the requests behind it.
            // (Only the 504 can have set it yet.)
            let overdue_now = job_overdue.load(Ordering::Acquire);
            if overdue_now || tx.is_closed() {
                if overdue_now {
                    m.pool.overdue_done();
                }
                per_request!(Info, m.alias.url, request_id;
                    "not run: its client got 504 or left while it waited for a thread");
                return;
            }
            match job_host.plugin(t.mount, &t.file, t.group_name.as_deref()) {
                Ok(loaded) => {
                    let call = loaded.call(&vars, &input, m.alias.develop_mode, request_id);
                    call::invoke(&loaded.plugin, &call, body, tx, m.alias.limits.timeout);
                    if job_overdue.swap(true, Ordering::AcqRel) {
                        m.pool.overdue_done();
                        per_request!(Warn, format_args!("app {}", loaded.app), request_id;
                            "returned after {:.1} s, past its timeout of {:?}; its thread is \
                             free again",
                            started.elapsed().as_secs_f64(),
                            m.alias.limits.timeout);
                    }
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
                    // (A first load can outlast the timeout: a Python interpreter starting.)
                    if job_overdue.swap(true, Ordering::AcqRel) {
                        m.pool.overdue_done();
                    }
                }
            }
        });
        if let Err(busy) = pool.submit(job) {
            per_request!(Warn, alias.url, request_id; "{busy}; answered 503");
            let mut resp = plain(503, "the app is busy; retry shortly");
            resp.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            return resp;
        }
    }
    // The app's time to answer counts from when the whole request body has been received
    // (a slow upload is `body_timeout`'s business, not the app's).
    let timeout = alias.limits.timeout;
    let answer = |rx: oneshot::Receiver<Reply>| async move {
        match actix_web::rt::time::timeout(timeout, rx).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(None),
            Err(_) => Err(Some(timeout)),
        }
    };
    let failed = |why: Option<Duration>| match why {
        None => plain(500, "the app call was lost; the error log has the details"),
        Some(timeout) => {
            // First to set it: the call is still running (in process, counted overdue below).
            let first = !overdue.swap(true, Ordering::AcqRel);
            if let Some(workers) = &host.mounts[mount].workers {
                let pid = worker_pid.load(Ordering::Acquire);
                if pid != 0 {
                    per_request!(Warn, alias.url, request_id;
                        "the app did not answer within {timeout:?}; answered 504 and killed its \
                         worker process {pid} (a new one starts)");
                    workers.kill_overdue(pid, request_id, timeout);
                } else {
                    per_request!(Warn, alias.url, request_id;
                        "no worker process took the request within {timeout:?}; answered 504");
                }
                return plain(504, call::TIMED_OUT);
            }
            let busy = if first { pool.overdue_started() } else { pool.overdue() };
            per_request!(Warn, alias.url, request_id;
                "the app did not answer within {timeout:?}; answered 504 ({busy} of its {} \
                 threads busy past their timeout)",
                alias.threads);
            plain(504, call::TIMED_OUT)
        }
    };
    let Some(pump) = pump else {
        return match answer(rx).await {
            Ok(reply) => response::from_reply(reply, request_id, is_head, None),
            Err(why) => failed(why),
        };
    };
    // Stream the body to the app while waiting for its reply. A body that turns out too
    // large or malformed before the app answered is refused here.
    match futures_util::future::select(pump, rx).await {
        Either::Left((Ok(()), rx)) => match answer(rx).await {
            Ok(reply) => response::from_reply(reply, request_id, is_head, None),
            Err(why) => failed(why),
        },
        Either::Left((Err(BodyError::AppStalled), _)) => failed(Some(timeout)),
        Either::Left((Err(e), _)) => {
            let e = e.refusal(max_body);
            plain(e.status, &e.message)
        }
        Either::Right((Ok(reply), pump)) => {
            // The app answered before the body ended: keep pumping while the reply streams.
            let pump: Pin<Box<dyn Future<Output = ()>>> = Box::pin(async move {
                let _ = pump.await;
            });
            response::from_reply(reply, request_id, is_head, Some(pump))
        }
        Either::Right((Err(_), _)) => failed(None),
    }
}
