//! The environ of a request: any method, target and headers give CGI variables without a
//! panic, with the names mod_wsgi always sets, and no NUL or newline in a generated name.
#![no_main]

use std::sync::OnceLock;

use actix_web::test::TestRequest;
use gatehouse::request::environ::{RouteVars, cgi_vars};
use gatehouse::request::forwarded::Origin;
use gatehouse_config::Alias;
use libfuzzer_sys::fuzz_target;

fn alias() -> &'static Alias {
    static ALIAS: OnceLock<Alias> = OnceLock::new();
    ALIAS.get_or_init(|| {
        let dir = std::env::temp_dir().join("gatehouse-fuzz-environ");
        let _ = std::fs::create_dir_all(&dir);
        let _ = std::fs::write(dir.join("app.so"), b"x");
        let yaml = "aliases:\n  - url: /e\n    path: app.so\n    pass_authorization: true\n";
        match gatehouse_config::parse(yaml, &dir.join("hosting.yaml")) {
            Ok(l) => l.config.aliases[0].clone(),
            Err(e) => panic!("{e}"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    // Lines: method, target, then `name: value` headers.
    let mut lines = data.split(|&b| b == b'\n');
    let method = lines.next().unwrap_or_default();
    let target = lines.next().unwrap_or_default();
    let Ok(method) = actix_web::http::Method::from_bytes(method) else { return };
    let Ok(target) = std::str::from_utf8(target) else { return };
    // TestRequest::uri panics on what is not a URI: only valid targets go in.
    let Ok(uri) = target.parse::<actix_web::http::Uri>() else { return };
    let _ = uri;
    let mut req = TestRequest::default().method(method).uri(target);
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let Ok(name) = actix_web::http::header::HeaderName::from_bytes(name) else { continue };
        let Ok(value) = actix_web::http::header::HeaderValue::from_bytes(value) else { continue };
        req = req.append_header((name, value));
    }
    let req = req.to_http_request();
    let path = req.path().as_bytes().to_vec();
    let split = path.len().min(2);
    let vars = cgi_vars(
        &req,
        RouteVars { script_name: &path[..split], path_info: &path[split..], script_filename: b"/x/app.so" },
        alias(),
        Origin::direct(&req),
    );
    let names: Vec<&[u8]> = vars.iter().map(|(n, _)| n).collect();
    for must in [&b"REQUEST_METHOD"[..], b"SCRIPT_NAME", b"PATH_INFO", b"QUERY_STRING", b"SERVER_NAME", b"SERVER_PORT"] {
        assert!(names.contains(&must), "{:?} missing", String::from_utf8_lossy(must));
    }
    for n in names {
        assert!(!n.contains(&0) && !n.contains(&b'\n'), "{n:?}");
    }
});
