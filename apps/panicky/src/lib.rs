//! A test plugin for the end-to-end tests (not a demo app): on PATH_INFO `/panic` its handler
//! panics, which the SDK must turn into a 500 without taking the daemon down; on any other
//! path it answers `ok` as `text/plain`.

use gatehouse_app::{Request, Response};

fn panicky(req: &Request<'_>) -> Response {
    if req.path_info() == "/panic" {
        panic!("panicky: asked to panic by {}", req.path());
    }
    Response::new(200).header("Content-Type", "text/plain").body(&b"ok"[..])
}

gatehouse_app::export!(panicky);
