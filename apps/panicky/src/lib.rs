//! A test plugin for the end-to-end tests, not a demo app. By PATH_INFO:
//! - `/panic`: the handler panics; the SDK must turn that into a 500 without taking the
//!   daemon down;
//! - `/sleep/MS`: sleeps MS milliseconds, then answers `slept`: a slow app, to show that it
//!   stalls nobody else;
//! - `/echo`: answers the raw request body (read through the host's body reader) with the
//!   request's Content-Type;
//! - `/thread`: answers the name of the thread running the handler (pool or HTTP worker);
//! - anything else: `ok`.
//!
//! With `env: {PANICKY_MARKS: FILE}` on its alias, `init` and `shutdown` each append a line
//! (`init ALIAS`, `shutdown ALIAS`) to FILE (relative to the configuration's folder), so a
//! test can see that each runs exactly once and with the alias's `env`; `/sleep/MS` appends
//! `sleep ALIAS` before it sleeps (and `woke ALIAS` after), so a test knows the slow request
//! is in the app (rather than guessing with a pause).

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use gatehouse_app::{App, Init, Request, Response};

struct Panicky {
    alias: String,
    marks: Option<PathBuf>,
}

impl Panicky {
    fn mark(&self, what: &str) -> Result<(), String> {
        let Some(path) = &self.marks else { return Ok(()) };
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| writeln!(f, "{what} {}", self.alias))
            .map_err(|e| format!("cannot write PANICKY_MARKS {}: {e}", path.display()))
    }
}

fn text(status: u16, body: &str) -> Response {
    Response::new(status).header("Content-Type", "text/plain").body(body.as_bytes().to_vec())
}

impl App for Panicky {
    fn init(init: &Init<'_>) -> Result<Self, String> {
        let app = Panicky {
            alias: init.alias().to_owned(),
            marks: init.env("PANICKY_MARKS").map(|p| init.resolve(p)),
        };
        app.mark("init")?;
        // A hung `init`, for the tests of `startup_timeout`.
        if let Some(ms) = init.env("PANICKY_INIT_SLEEP_MS").and_then(|v| v.parse().ok()) {
            std::thread::sleep(Duration::from_millis(ms));
        }
        Ok(app)
    }

    fn handle(&self, req: &Request<'_>) -> Response {
        let path_info = req.path_info();
        if path_info == "/panic" {
            panic!("panicky: asked to panic by {}", req.path());
        }
        if let Some(ms) = path_info.strip_prefix("/sleep/") {
            let Ok(ms) = ms.parse::<u64>() else { return text(400, "bad /sleep/MS") };
            if let Err(e) = self.mark("sleep") {
                return text(500, &e);
            }
            std::thread::sleep(Duration::from_millis(ms));
            if let Err(e) = self.mark("woke") {
                return text(500, &e);
            }
            return text(200, "slept");
        }
        if path_info == "/echo" {
            return match req.body() {
                Ok(body) => Response::new(200)
                    .header(
                        "Content-Type",
                        req.var("CONTENT_TYPE").unwrap_or("application/octet-stream").to_owned(),
                    )
                    .body(body),
                Err(e) => text(500, &format!("cannot read the body: {e}")),
            };
        }
        if path_info == "/thread" {
            // Which thread runs the app: a pool thread (`app ALIAS#N`) or, with
            // `dispatch: inline`, the HTTP worker that took the request. The kernel's name
            // for the thread: this plugin's own std does not know the daemon's thread names.
            let name = std::fs::read_to_string("/proc/thread-self/comm").unwrap_or_default();
            return text(200, name.trim_end());
        }
        text(200, "ok")
    }

    fn shutdown(&self) {
        if let Err(e) = self.mark("shutdown") {
            eprintln!("panicky: {e}");
        }
    }
}

gatehouse_app::export!(app: Panicky);
