//! The HTTP side: actix-web setup, and the one handler that takes every request through
//! mounts → input → environ → dispatch → response.
//!
//! Errors the daemon answers itself (400, 403, 404, 413, 500, 503) are short `text/plain`
//! bodies saying what was wrong; the detail an operator needs goes to the error log.

use std::net::SocketAddr;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderName};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use gatehouse_config::AliasKind;

use crate::environ::{self, RouteVars};
use crate::ffi::{self, Call};
use crate::host::{Host, Unavailable};
use crate::mounts::{self, GroupMiss, Route};

/// A plain-text error reply.
fn plain(status: u16, message: &str) -> HttpResponse {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
        .body(format!(
            "{} {}: {message}\n",
            status.as_u16(),
            status.canonical_reason().unwrap_or("")
        ))
}

/// Headers an app may not set: the connection is the daemon's business, and the body length
/// is computed from the body.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "upgrade"
            | "proxy-connection"
            | "te"
            | "trailer"
    )
}

fn into_response(reply: ffi::Reply, app: &str, request_id: u64) -> HttpResponse {
    let mut resp = HttpResponse::build(reply.status);
    for (name, value) in reply.headers {
        if name == header::CONTENT_LENGTH {
            let declared = value.to_str().ok().and_then(|v| v.trim().parse::<usize>().ok());
            if declared != Some(reply.body.len()) {
                log::warn!(
                    "app {app} (request {request_id}): Content-Length {value:?} does not match \
                     the {} body bytes it wrote; sent the real length",
                    reply.body.len()
                );
            }
            continue;
        }
        if hop_by_hop(&name) {
            continue;
        }
        resp.append_header((name, value));
    }
    resp.body(reply.body)
}

/// Where a routed request goes.
struct Target {
    mount: usize,
    file: std::path::PathBuf,
    group_name: Option<String>,
    script_name: Vec<u8>,
    path_info: Vec<u8>,
}

/// Routes a request to its alias and plugin file, or answers it.
fn target(host: &Host, raw_path: &str) -> Result<Target, (u16, &'static str)> {
    let path = mounts::normalize(raw_path.as_bytes()).map_err(|e| (e.status(), e.reason()))?;
    match host.table.route(&path) {
        Route::App { mount, script_name, path_info } => Ok(Target {
            mount,
            file: host.mounts[mount].alias.path.clone(),
            group_name: None,
            script_name: script_name.to_vec(),
            path_info: path_info.to_vec(),
        }),
        Route::Group { mount, name, script_name, path_info } => {
            let m = &host.mounts[mount];
            let Some(dir) = &m.group_dir else {
                log::error!(
                    "{}: the folder {} cannot be opened",
                    m.alias.url,
                    m.alias.path.display()
                );
                return Err((404, "no such app"));
            };
            match mounts::resolve_group_file(dir, name) {
                Ok(file) => Ok(Target {
                    mount,
                    file,
                    group_name: Some(String::from_utf8_lossy(name).into_owned()),
                    script_name: script_name.to_vec(),
                    path_info: path_info.to_vec(),
                }),
                Err(GroupMiss::Forbidden(why)) => {
                    log::info!("{}: 403: {why}", m.alias.url);
                    Err((403, "not an app"))
                }
                Err(GroupMiss::NotFound(why)) => {
                    log::info!("{}: 404: {why}", m.alias.url);
                    Err((404, "no such app"))
                }
            }
        }
        Route::GroupIndex { .. } => Err((403, "a directory group's folder is not an app")),
        Route::NoMatch => Err((404, "no alias matches this URL")),
    }
}

/// Serves every request.
pub async fn handle(
    req: HttpRequest,
    payload: web::Payload,
    host: web::Data<Host>,
) -> HttpResponse {
    let host: Arc<Host> = host.into_inner();
    let t = match target(&host, req.uri().path()) {
        Ok(t) => t,
        Err((status, message)) => return plain(status, message),
    };
    let mount = &host.mounts[t.mount];
    let input = match crate::input::read(&req, payload, mount.alias.max_body).await {
        Ok(input) => input,
        Err(e) => return plain(e.status, &e.message),
    };
    let file_bytes = {
        use std::os::unix::ffi::OsStrExt;
        t.file.as_os_str().as_bytes().to_vec()
    };
    let vars = environ::cgi_vars(
        &req,
        RouteVars {
            script_name: &t.script_name,
            path_info: &t.path_info,
            script_filename: &file_bytes,
        },
        &mount.alias.env,
    );
    let request_id = host.request_id();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job_host = Arc::clone(&host);
    let job = Box::new(move || {
        let m = &job_host.mounts[t.mount];
        let outcome = match job_host.plugin(t.mount, &t.file, t.group_name.as_deref()) {
            Ok(loaded) => {
                let call = Call {
                    vars: &vars,
                    input: &input,
                    debug: &loaded.debug,
                    develop_mode: m.alias.develop_mode,
                    app: &loaded.app,
                    request_id,
                };
                let result = ffi::invoke(&loaded.plugin, &call);
                if let Err(e) = &result {
                    log::error!("app {} (request {request_id}): {e}", loaded.app);
                }
                Ok((result, loaded.app))
            }
            Err(u) => Err(u),
        };
        // The receiver is gone only if the client left; nothing to do then.
        let _ = tx.send(outcome);
    });
    if let Err(busy) = mount.pool.submit(job) {
        log::warn!("{}: {busy}; answered 503", mount.alias.url);
        let mut resp = plain(503, "the app is busy; retry shortly");
        resp.headers_mut().insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        return resp;
    }
    let is_group = mount.alias.kind == AliasKind::Group;
    match rx.await {
        Ok(Ok((Ok(reply), app))) => into_response(reply, &app, request_id),
        Ok(Ok((Err(_), _))) => plain(500, "the app failed; the error log has the details"),
        Ok(Err(Unavailable::Missing(_))) => plain(404, "no such app"),
        Ok(Err(Unavailable::Broken(_))) if is_group => plain(404, "no such app"),
        Ok(Err(Unavailable::Broken(_))) => {
            plain(500, "the app could not be loaded; the error log says why")
        }
        Err(_) => plain(500, "the app call was lost; the error log has the details"),
    }
}

/// Binds every listen address, reports the bound addresses through `on_bound`, and serves
/// until SIGINT or SIGTERM (graceful: requests in flight finish).
pub async fn run(
    host: Arc<Host>,
    listen: &[SocketAddr],
    on_bound: impl FnOnce(&[SocketAddr]),
) -> std::io::Result<()> {
    let data = web::Data::from(host);
    let mut server =
        HttpServer::new(move || App::new().app_data(data.clone()).default_service(web::to(handle)));
    for addr in listen {
        server = server
            .bind(addr)
            .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))?;
    }
    on_bound(&server.addrs());
    server.run().await
}
