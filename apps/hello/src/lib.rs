//! The seed's `sample.py` as a Gatehouse app: `Hello World!` as `text/plain`, with
//! Content-Length.

use gatehouse_app::{Request, Response};

fn hello(_req: &Request<'_>) -> Response {
    Response::new(200).header("Content-type", "text/plain").body(&b"Hello World!"[..])
}

gatehouse_app::export!(hello, never_blocks);
