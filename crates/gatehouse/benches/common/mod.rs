//! Requests shared by the benchmarks: the seed's browser multipart POST (its body and
//! Chrome's headers, as tests/e2e/seed_apps.rs sends them) and the in-memory payload of a
//! test request. Each bench binary uses part of it.
#![allow(dead_code)]

use actix_web::test::TestRequest;
use actix_web::{FromRequest, HttpRequest, web};
use futures_util::FutureExt;

/// The boundary Chrome chose in the seed's capture.
pub(crate) const BOUNDARY: &str = "----WebKitFormBoundary8iNBS40xtXFszuZN";

/// The seed's form (`id=A002`) as a multipart body.
pub(crate) fn multipart_body() -> String {
    format!(
        "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"id\"\r\n\r\nA002\r\n--{BOUNDARY}--\r\n"
    )
}

/// A POST to `uri` with the seed browser's headers and the multipart body (Content-Length
/// not set: `TestRequest::set_payload` or the caller adds it).
pub(crate) fn browser_post(uri: &str) -> TestRequest {
    TestRequest::post()
        .uri(uri)
        .insert_header(("Host", "127.0.0.1:8080"))
        .insert_header(("Connection", "keep-alive"))
        .insert_header(("Cache-Control", "max-age=0"))
        .insert_header(("Origin", "http://127.0.0.1:8080"))
        .insert_header(("Content-Type", format!("multipart/form-data; boundary={BOUNDARY}")))
        .insert_header((
            "User-Agent",
            "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) \
             Chrome/89.0.4389.114 Safari/537.36",
        ))
        .insert_header((
            "Accept",
            "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8",
        ))
        .insert_header(("Referer", "http://127.0.0.1:8080/form.html"))
        .insert_header(("Accept-Encoding", "gzip, deflate"))
        .insert_header(("Accept-Language", "ja,en-US;q=0.9,en;q=0.8"))
        .peer_addr(([127, 0, 0, 1], 40000).into())
}

/// A GET as wrk sends it: a Host header only.
pub(crate) fn wrk_get(uri: &str) -> TestRequest {
    TestRequest::get()
        .uri(uri)
        .insert_header(("Host", "127.0.0.1:8080"))
        .peer_addr(([127, 0, 0, 1], 40000).into())
}

/// The request and its payload, as the daemon's handler gets them.
pub(crate) fn parts(request: TestRequest) -> (HttpRequest, web::Payload) {
    let (req, mut payload) = request.to_http_parts();
    let payload = web::Payload::from_request(&req, &mut payload)
        .now_or_never()
        .and_then(Result::ok)
        .unwrap_or_else(|| panic!("no payload"));
    (req, payload)
}
