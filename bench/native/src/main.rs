//! `native`: the benchmark's ceiling. The demo apps' answers written as plain actix-web
//! handlers, with no plugin layer: what Gatehouse would cost if it cost nothing.
//!
//! - `/sample` and `/wsgi/hello`: `apps/hello`, `Hello World!` as `Content-type: text/plain`.
//! - `/myapp`: `apps/products`, the product of `id` (a GET query parameter or a POST form
//!   field, urlencoded or multipart, as a browser sends it) as `{"name": "clock", "price":
//!   30}`, `Content-type: application/json`, looked up in SQLite with rusqlite the way the app
//!   does it (a pool of connections, a cached prepared statement), so that the comparison
//!   measures only the plugin layer. A POST appends `content_len: N` to the app's debug log
//!   (`LOG_DIR/myapp/debug.log`), as the app does on every POST.
//! - `/environ[/...]`: environ-like JSON: the request's CGI/WSGI variables as Gatehouse builds
//!   them (REQUEST_METHOD, SCRIPT_NAME, PATH_INFO, QUERY_STRING, SERVER_*, REMOTE_*, HTTP_*),
//!   the parameters and what the body held, as one JSON object with sorted keys, plus the
//!   `X-Environ-*` headers: the same work as `apps/environ`, not byte for byte the same reply
//!   (SERVER_SOFTWARE and SCRIPT_FILENAME differ).
//! - `/chat/ROOM`: `apps/chat`, a WebSocket broadcast room: every text message a client sends
//!   goes to every client connected to the same URL (actix-ws, the rooms behind one mutex, as
//!   the app keeps them).
//!
//! Prints `native listening on http://ADDR` once bound, like `gatehouse serve`.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use actix_multipart::Multipart;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use clap::Parser;
use futures_util::StreamExt;
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde_json::{Map, Value, json};

/// The benchmark's native baseline: the demo apps as plain actix-web handlers.
#[derive(Debug, Parser)]
#[command(name = "native")]
struct Cli {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: SocketAddr,
    /// actix worker threads (default: actix's default, as the daemon uses).
    #[arg(long)]
    workers: Option<usize>,
    /// The products store (created with the seed's two products when missing).
    #[arg(long, default_value = "var/native-products.sqlite3")]
    db: PathBuf,
    /// Debug logs go to LOG_DIR/myapp/debug.log.
    #[arg(long, default_value = "log/native")]
    log_dir: PathBuf,
    /// Run the app work (hello, the product lookup) on actix's blocking thread pool
    /// (`web::block`) instead of on the worker: a reference for a daemon that hands calls
    /// to a pool.
    #[arg(long)]
    offload: bool,
}

/// The seed's product table, written into a new store (as apps/products does).
const SEED: [(&str, &str, i64); 2] = [("A001", "clock", 30), ("A002", "watch", 120)];
/// Most connections kept open for reuse (as apps/products).
const POOL_SIZE: usize = 16;
/// The daemon's default `max_body`.
const MAX_BODY: usize = 10 * 1024 * 1024;

/// apps/products' store, the same code path: pooled connections, cached statement.
#[derive(Debug)]
struct Products {
    db: PathBuf,
    pool: Mutex<Vec<Connection>>,
}

impl Products {
    fn create(path: &Path) -> rusqlite::Result<Products> {
        if let Some(parent) = path.parent()
            && !parent.as_os_str().is_empty()
        {
            std::fs::create_dir_all(parent)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
        }
        let conn = Connection::open(path)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS products (
                 id TEXT PRIMARY KEY, name TEXT NOT NULL, price INTEGER NOT NULL)",
        )?;
        {
            let mut insert = conn
                .prepare("INSERT OR IGNORE INTO products (id, name, price) VALUES (?1, ?2, ?3)")?;
            for (id, name, price) in SEED {
                insert.execute((id, name, price))?;
            }
        }
        Ok(Products { db: path.to_owned(), pool: Mutex::new(vec![conn]) })
    }

    fn open(path: &Path) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        Ok(conn)
    }

    fn lookup(&self, id: &str) -> rusqlite::Result<Option<(String, i64)>> {
        let conn = self.pool.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let conn = match conn {
            Some(c) => c,
            None => Self::open(&self.db)?,
        };
        let found = conn
            .prepare_cached("SELECT name, price FROM products WHERE id = ?1")?
            .query_row([id], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional();
        let mut pool = self.pool.lock().unwrap_or_else(PoisonError::into_inner);
        if pool.len() < POOL_SIZE {
            pool.push(conn);
        }
        found
    }
}

/// apps/products' debug log: `LOG_DIR/myapp/debug.log`, one line per write.
#[derive(Debug)]
struct DebugLog {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl DebugLog {
    fn write(&self, message: &str) {
        let line = format!("{} {message}\n", chrono::Local::now().format("%Y-%m-%d %H:%M:%S"));
        let mut file = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if file.is_none() {
            if let Some(dir) = self.path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            *file = OpenOptions::new().create(true).append(true).open(&self.path).ok();
        }
        if let Some(f) = file.as_mut()
            && f.write_all(line.as_bytes()).is_err()
        {
            *file = None;
        }
    }
}

#[derive(Debug)]
struct State {
    products: Products,
    debug: DebugLog,
    offload: bool,
}

/// apps/hello's reply: content type and body.
fn hello_reply() -> (&'static str, web::Bytes) {
    ("text/plain", web::Bytes::from_static(b"Hello World!"))
}

/// `/sample`, `/wsgi/hello`.
async fn hello(state: web::Data<State>) -> HttpResponse {
    let (content_type, body) = if state.offload {
        match web::block(hello_reply).await {
            Ok(reply) => reply,
            Err(_) => return lost(),
        }
    } else {
        hello_reply()
    };
    HttpResponse::Ok().insert_header(("Content-type", content_type)).body(body)
}

fn lost() -> HttpResponse {
    HttpResponse::InternalServerError().body("the blocking call was lost")
}

/// `{"name": "clock", "price": 30}`: the seed's `json.dumps` layout.
fn product_json(name: &str, price: i64) -> String {
    let name = serde_json::to_string(name).unwrap_or_else(|_| "\"\"".to_owned());
    format!("{{\"name\": {name}, \"price\": {price}}}")
}

fn json_reply(status: u16, body: String) -> HttpResponse {
    let status = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(status).insert_header(("Content-type", "application/json")).body(body)
}

fn error_reply(status: u16, message: &str, id: Option<&str>) -> HttpResponse {
    let mut body = json!({ "error": message });
    if let Some(id) = id {
        body["id"] = Value::String(id.to_owned());
    }
    json_reply(status, body.to_string())
}

/// What kind of form body a request carries, from its Content-Type.
fn form_kind(req: &HttpRequest) -> Option<&'static str> {
    let ct = req.headers().get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = ct.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        Some("urlencoded")
    } else if essence.eq_ignore_ascii_case("multipart/form-data") {
        Some("multipart")
    } else {
        None
    }
}

/// The query parameters, then the form fields of a urlencoded or multipart body.
async fn params(
    req: &HttpRequest,
    mut payload: web::Payload,
) -> Result<Vec<(String, String)>, HttpResponse> {
    let mut out: Vec<(String, String)> = form_urlencoded::parse(req.query_string().as_bytes())
        .map(|(n, v)| (n.into_owned(), v.into_owned()))
        .collect();
    let bad = |m: &str| HttpResponse::BadRequest().body(m.to_owned());
    match form_kind(req) {
        Some("urlencoded") => {
            let mut body = web::BytesMut::new();
            while let Some(chunk) = payload.next().await {
                body.extend_from_slice(&chunk.map_err(|_| bad("bad body"))?);
                if body.len() > MAX_BODY {
                    return Err(HttpResponse::PayloadTooLarge().finish());
                }
            }
            out.extend(
                form_urlencoded::parse(&body).map(|(n, v)| (n.into_owned(), v.into_owned())),
            );
        }
        Some(_) => {
            let mut form = Multipart::new(req.headers(), payload);
            while let Some(field) = form.next().await {
                let mut field = field.map_err(|_| bad("malformed multipart body"))?;
                let name = field.name().unwrap_or_default().to_owned();
                let mut value = Vec::new();
                while let Some(chunk) = field.next().await {
                    value.extend_from_slice(&chunk.map_err(|_| bad("malformed multipart body"))?);
                    if value.len() > MAX_BODY {
                        return Err(HttpResponse::PayloadTooLarge().finish());
                    }
                }
                let value = String::from_utf8(value).map_err(|_| bad("field is not UTF-8"))?;
                out.push((name, value));
            }
        }
        None => {}
    }
    Ok(out)
}

/// `/myapp`: apps/products.
async fn products(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<State>,
) -> HttpResponse {
    let method = req.method().as_str();
    if !matches!(method, "GET" | "HEAD" | "POST") {
        let mut resp = error_reply(
            405,
            &format!("method {method} is not allowed here; use GET or POST"),
            None,
        );
        resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
        return resp;
    }
    let params = match params(&req, payload).await {
        Ok(p) => p,
        Err(resp) => return resp,
    };
    if method == "POST" {
        // As the app: `debug_log("content_len: N", must = true)` on every POST.
        let len = req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok());
        state.debug.write(&format!("content_len: {}", len.unwrap_or("0")));
    }
    let id = match params.into_iter().find(|(n, _)| n == "id") {
        Some((_, id)) if !id.is_empty() => id,
        _ => {
            return error_reply(
                400,
                "missing parameter id: send ?id=A001 or a form field id",
                None,
            );
        }
    };
    let found = if state.offload {
        let st = state.clone();
        let key = id.clone();
        match web::block(move || st.products.lookup(&key)).await {
            Ok(found) => found,
            Err(_) => return lost(),
        }
    } else {
        state.products.lookup(&id)
    };
    match found {
        Ok(Some((name, price))) => json_reply(200, product_json(&name, price)),
        Ok(None) => error_reply(404, &format!("no product with id {id:?}"), Some(&id)),
        Err(_) => error_reply(500, "the product store could not be read", Some(&id)),
    }
}

/// Decodes bytes as latin-1, as apps/environ does.
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

/// `/environ[/...]`: environ-like JSON (see the crate doc).
async fn environ(req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let mut out = Map::new();
    let mut var = |name: &str, value: &[u8]| {
        out.insert(name.to_owned(), Value::String(latin1(value)));
    };
    let uri = req.uri();
    let path = uri.path();
    let path_info = path.strip_prefix("/environ").unwrap_or("");
    var("REQUEST_METHOD", req.method().as_str().as_bytes());
    var("SCRIPT_NAME", b"/environ");
    var("PATH_INFO", path_info.as_bytes());
    var("QUERY_STRING", uri.query().unwrap_or("").as_bytes());
    var("REQUEST_URI", uri.path_and_query().map_or(path, |pq| pq.as_str()).as_bytes());
    let headers = req.headers();
    if let Some(v) = headers.get(header::CONTENT_TYPE) {
        var("CONTENT_TYPE", v.as_bytes());
    }
    if let Some(v) = headers.get(header::CONTENT_LENGTH) {
        var("CONTENT_LENGTH", v.as_bytes());
    }
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let (name, port) = host.rsplit_once(':').unwrap_or((host, "80"));
    var("SERVER_NAME", name.to_ascii_lowercase().as_bytes());
    var("SERVER_PORT", port.as_bytes());
    var("SERVER_ADDR", req.app_config().local_addr().ip().to_string().as_bytes());
    var("SERVER_PROTOCOL", b"HTTP/1.1");
    var("SERVER_SOFTWARE", b"native");
    var("GATEWAY_INTERFACE", b"CGI/1.1");
    if let Some(peer) = req.peer_addr() {
        var("REMOTE_ADDR", peer.ip().to_string().as_bytes());
        var("REMOTE_PORT", peer.port().to_string().as_bytes());
    }
    var("REQUEST_SCHEME", b"http");
    var("wsgi.url_scheme", b"http");
    var("SCRIPT_FILENAME", b"");
    for (name, value) in headers {
        let name = name.as_str();
        if matches!(name, "content-type" | "content-length" | "proxy" | "authorization") {
            continue;
        }
        let key: String = std::iter::once("HTTP_")
            .flat_map(str::chars)
            .chain(name.chars().map(|c| if c == '-' { '_' } else { c.to_ascii_uppercase() }))
            .collect();
        var(&key, value.as_bytes());
    }
    let params: Vec<Value> = form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(n, v)| json!([n, v]))
        .collect();
    out.insert("gatehouse.params".to_owned(), Value::Array(params));
    out.insert(
        "gatehouse.input".to_owned(),
        json!({"length": body.len(), "text": latin1(&body[..body.len().min(4096)])}),
    );
    let mut resp = HttpResponse::Ok();
    resp.insert_header(("Content-Type", "application/json"));
    for (header, var) in [
        ("X-Environ-Method", "REQUEST_METHOD"),
        ("X-Environ-Script-Name", "SCRIPT_NAME"),
        ("X-Environ-Path-Info", "PATH_INFO"),
        ("X-Environ-Query-String", "QUERY_STRING"),
    ] {
        let value = out.get(var).cloned().unwrap_or(Value::Null);
        resp.insert_header((header, value.to_string()));
    }
    resp.body(Value::Object(out).to_string())
}

/// The chat rooms: room → its sessions, by a number of their own.
#[derive(Default)]
struct Rooms {
    members: Mutex<std::collections::HashMap<String, Vec<(u64, actix_ws::Session)>>>,
    next: std::sync::atomic::AtomicU64,
}

/// `/chat/ROOM`: `apps/chat` as an actix-ws handler.
async fn chat(
    req: HttpRequest,
    body: web::Payload,
    rooms: web::Data<Rooms>,
) -> actix_web::Result<HttpResponse> {
    let room = req.path().to_owned();
    let (resp, session, mut stream) = actix_ws::handle(&req, body)?;
    let id = rooms.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    rooms
        .members
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(room.clone())
        .or_default()
        .push((id, session.clone()));
    let mut own = session;
    actix_web::rt::spawn(async move {
        while let Some(Ok(msg)) = stream.recv().await {
            match msg {
                actix_ws::Message::Text(text) => {
                    let members: Vec<actix_ws::Session> = rooms
                        .members
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get(&room)
                        .map(|m| m.iter().map(|(_, s)| s.clone()).collect())
                        .unwrap_or_default();
                    for mut member in members {
                        let _ = member.text(text.clone()).await;
                    }
                }
                actix_ws::Message::Ping(bytes) => {
                    let _ = own.pong(&bytes).await;
                }
                actix_ws::Message::Close(_) => break,
                _ => {}
            }
        }
        {
            let mut members = rooms.members.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(m) = members.get_mut(&room) {
                m.retain(|(i, _)| *i != id);
                if m.is_empty() {
                    members.remove(&room);
                }
            }
        }
        let _ = own.close(None).await;
    });
    Ok(resp)
}

fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    let store = Products::create(&cli.db).map_err(|e| {
        std::io::Error::other(format!("cannot set up the products store {}: {e}", cli.db.display()))
    })?;
    let state = web::Data::from(Arc::new(State {
        products: store,
        debug: DebugLog {
            path: cli.log_dir.join("myapp").join("debug.log"),
            file: Mutex::new(None),
        },
        offload: cli.offload,
    }));
    let rooms = web::Data::new(Rooms::default());
    actix_web::rt::System::new().block_on(async move {
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(rooms.clone())
                .service(web::resource("/chat/{room:.*}").to(chat))
                .app_data(web::PayloadConfig::new(MAX_BODY))
                .service(web::resource(["/sample", "/wsgi/hello"]).to(hello))
                .service(web::resource("/myapp").to(products))
                .service(web::resource(["/environ", "/environ/{tail:.*}"]).to(environ))
        });
        if let Some(n) = cli.workers {
            server = server.workers(n);
        }
        let server = server.bind(cli.listen)?;
        for a in server.addrs() {
            println!("native listening on http://{a}");
        }
        server.run().await
    })
}
