//! Uploads: files of a multipart form are spooled
//! to `upload_dir` and shown to the app with field, filename, content type, size and path,
//! then removed after the request; a file past `max_upload`, a text field past 1 MiB and a
//! malformed or truncated body are refused (413 / 400) before the app runs, and leave nothing
//! in `upload_dir` even when a file had already been spooled.

use serde_json::{Value, json};

use crate::harness::{Daemon, Response, multipart};
use crate::streaming::{Conn, noise};

/// 1 MiB: the daemon's largest multipart text field.
const MAX_FIELD: usize = 1024 * 1024;

const UPLOADS: &str = "\
upload_dir: spool
aliases:
  - url: /probe
    path: {probe}
    max_body: 4MiB
    max_upload: 1KiB
";

const BOUNDARY: &str = "----GatehouseUploadBoundary7MA4YWxk";

fn start() -> Daemon {
    Daemon::start_with(UPLOADS, |root| {
        std::fs::create_dir_all(root.join("spool")).expect("create spool/");
    })
}

fn form_type() -> String {
    format!("multipart/form-data; boundary={BOUNDARY}")
}

/// What is in `upload_dir` now.
fn spooled(d: &Daemon) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(d.path("spool"))
        .expect("list spool/")
        .map(|e| e.expect("spool entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[track_caller]
fn assert_spool_empty(d: &Daemon, after: &str) {
    assert_eq!(spooled(d), Vec::<String>::new(), "files left in upload_dir after {after}");
}

/// Asserts a refusal by the daemon itself (its `STATUS REASON: message` text, not the app's
/// JSON) whose message contains every one of `needles`.
#[track_caller]
fn assert_refused(r: &Response, status: u16, needles: &[&str], what: &str) {
    assert_eq!(r.status, status, "{what}: {r}");
    let text = r.text();
    assert!(text.starts_with(&format!("{status} ")), "{what}: not the daemon's refusal: {r}");
    for needle in needles {
        assert!(text.contains(needle), "{what}: the message does not say {needle:?}: {r}");
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn file_part(field: &str, filename: &str, content_type: &str) -> String {
    format!(
        "Content-Disposition: form-data; name=\"{field}\"; filename=\"{filename}\"\r\n\
         Content-Type: {content_type}"
    )
}

fn text_part(field: &str) -> String {
    format!("Content-Disposition: form-data; name=\"{field}\"")
}

#[test]
fn uploads_reach_the_app_on_disk_and_are_removed_after_the_request() {
    let d = start();
    let first = b"hello\r\n--not the boundary\r\n".to_vec();
    // Exactly max_upload: accepted.
    let second = noise(1024, 7);
    let (title, a, b, empty) = (
        text_part("title"),
        file_part("first", "a.txt", "text/plain"),
        file_part("second", "b b.bin", "application/octet-stream"),
        // What a browser sends for a file input left empty.
        file_part("empty", "", "application/octet-stream"),
    );
    let body =
        multipart(BOUNDARY, &[(&title, b"two files"), (&a, &first), (&b, &second), (&empty, b"")]);
    let r = d.post("/probe/uploads?q=1", &form_type(), &body);
    r.expect_status(200);
    let j = r.json();
    assert_eq!(j["params"], json!([["q", "1"], ["title", "two files"]]), "{r}");
    let uploads = j["uploads"].as_array().unwrap_or_else(|| panic!("no uploads list: {r}"));
    let spool = d.path("spool");
    let want = [
        ("first", "a.txt", "text/plain", &first[..]),
        ("second", "b b.bin", "application/octet-stream", &second[..]),
        ("empty", "", "application/octet-stream", &b""[..]),
    ];
    assert_eq!(uploads.len(), want.len(), "{r}");
    let mut paths = Vec::new();
    for (u, (field, filename, content_type, content)) in uploads.iter().zip(want) {
        assert_eq!(
            (&u["field"], &u["filename"], &u["content_type"], &u["size"]),
            (&json!(field), &json!(filename), &json!(content_type), &json!(content.len())),
            "{u}"
        );
        assert_eq!(u["exists"], Value::Bool(true), "the file is not there during the request: {u}");
        assert_eq!(u["content_hex"], json!(hex(content)), "{field}: content differs");
        let path = std::path::PathBuf::from(u["path"].as_str().expect("a path"));
        assert_eq!(path.parent(), Some(spool.as_path()), "{field}: not spooled to upload_dir: {u}");
        paths.push(path);
    }
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), want.len(), "two uploads share a file: {paths:?}");

    // Removed after the request. The files go when the app's call ends, which may be a moment
    // after the client has the reply: wait for it (the deadline is only a failure guard).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !spooled(&d).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_spool_empty(&d, "a served request");
    for p in &paths {
        assert!(!p.exists(), "{} still exists", p.display());
    }
}

#[test]
fn upload_limits_are_413_and_leave_nothing_behind() {
    let d = start();
    let small = file_part("ok", "ok.txt", "text/plain");
    let big = file_part("big", "big.bin", "application/octet-stream");
    let note = text_part("note");
    let over = noise(1025, 3);
    let long_text = vec![b'n'; MAX_FIELD + 1];
    let cases: [(&str, Vec<u8>, &[&str]); 3] = [
        (
            "a file one byte past max_upload",
            multipart(BOUNDARY, &[(&big, &over)]),
            &["big.bin", "max_upload", "1024"],
        ),
        (
            "a file past max_upload after a spooled one",
            multipart(BOUNDARY, &[(&small, b"fine"), (&big, &over)]),
            &["big.bin", "max_upload"],
        ),
        (
            "a text field past 1 MiB after a spooled file",
            multipart(BOUNDARY, &[(&small, b"fine"), (&note, &long_text)]),
            &["note"],
        ),
    ];
    for (what, body, needles) in &cases {
        let r = d.post("/probe/uploads", &form_type(), body);
        assert_refused(&r, 413, needles, what);
        // The daemon refused before answering: nothing may be left even for a moment.
        assert_spool_empty(&d, what);
    }
    // A text field of exactly 1 MiB is accepted.
    let at_limit = vec![b'n'; MAX_FIELD];
    let r = d.post("/probe/uploads", &form_type(), &multipart(BOUNDARY, &[(&note, &at_limit)]));
    r.expect_status(200);
    assert_eq!(r.json()["params"][0][1].as_str().map(str::len), Some(MAX_FIELD));
}

#[test]
fn malformed_multipart_after_a_spooled_file_is_400_and_leaves_nothing_behind() {
    let d = start();
    let file = file_part("f", "f.txt", "text/plain");
    let spooled_first = format!("--{BOUNDARY}\r\n{file}\r\n\r\nspooled content\r\n");
    let mut not_utf8 = spooled_first.clone().into_bytes();
    not_utf8.extend_from_slice(format!("--{BOUNDARY}\r\n{}\r\n\r\n", text_part("id")).as_bytes());
    not_utf8.extend_from_slice(b"A0\xff2\r\n");
    not_utf8.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    let cases: [(&str, Vec<u8>, String, &str); 4] = [
        (
            "a part without Content-Disposition",
            format!(
                "{spooled_first}--{BOUNDARY}\r\nContent-Type: text/plain\r\n\r\nx\r\n--{BOUNDARY}--\r\n"
            )
            .into_bytes(),
            form_type(),
            "multipart",
        ),
        ("a text field that is not UTF-8", not_utf8, form_type(), "UTF-8"),
        (
            "no closing delimiter (the last one misspelled)",
            format!("{spooled_first}--{BOUNDARY}X--\r\n").into_bytes(),
            form_type(),
            "multipart",
        ),
        (
            "a boundary other than the header's",
            format!("{spooled_first}--{BOUNDARY}--\r\n").into_bytes(),
            "multipart/form-data; boundary=SomethingElse".to_owned(),
            "multipart",
        ),
    ];
    for (what, body, content_type, needle) in &cases {
        let r = d.post("/probe/uploads", content_type, body);
        assert_refused(&r, 400, &[needle], what);
        assert_spool_empty(&d, what);
    }
}

#[test]
fn a_multipart_body_cut_short_is_400_and_leaves_nothing_behind() {
    let d = start();
    let (a, b) =
        (file_part("a", "a.bin", "application/octet-stream"), file_part("b", "b.bin", "x/y"));
    let body = multipart(BOUNDARY, &[(&a, &noise(900, 1)), (&b, &noise(900, 2))]);
    // The first file whole and half of the second, then the client stops sending.
    let cut = body.len() * 3 / 4;
    let mut c = Conn::request(
        &d,
        "POST",
        "/probe/uploads",
        &[
            &format!("Content-Type: {}", form_type()),
            &format!("Content-Length: {}", body.len()),
            "Connection: close",
        ],
    );
    c.send(&body[..cut]);
    c.shutdown_write();
    let head = c.head();
    let reply = c.finish(&head);
    let text = String::from_utf8_lossy(&reply.bytes);
    assert_eq!(head.status, 400, "{head}\n{text}");
    assert!(
        text.starts_with("400 ") && text.contains("shorter than its Content-Length"),
        "not the daemon's refusal saying what was wrong: {text}"
    );
    assert_spool_empty(&d, "a truncated body");
}

#[test]
fn stale_uploads_of_a_crashed_daemon_are_swept_at_start() {
    // Left by daemons that are gone (one named before spool files carried a pid, one of a
    // pid that is no process); a file of a running process (pid 1) and any other file stay.
    let leftovers = ["gatehouse-upload-abc123", "gatehouse-upload-4000000000-x7Yz"];
    let kept = ["gatehouse-upload-1-live", "notes.txt"];
    let d = Daemon::start_with(UPLOADS, |root| {
        let spool = root.join("spool");
        std::fs::create_dir_all(&spool).expect("create spool/");
        for name in leftovers.iter().chain(&kept) {
            std::fs::write(spool.join(name), b"a half-received upload").expect("write");
        }
    });
    assert_eq!(spooled(&d), kept, "{}", d.log());
    assert_eq!(d.log_count("removed 2 upload file(s) left in"), 1, "{}", d.log());
    // The daemon's own spool files carry its pid, so a second daemon on the folder spares them.
    let body = multipart(BOUNDARY, &[(&file_part("f", "a.txt", "text/plain"), b"0123456789")]);
    let r = d.post("/probe/uploads", &form_type(), &body);
    r.expect_status(200);
    let path = r.json()["uploads"][0]["path"].as_str().unwrap_or_default().to_owned();
    let name = std::path::Path::new(&path).file_name().unwrap_or_default().to_string_lossy();
    assert!(name.starts_with(&format!("gatehouse-upload-{}-", d.pid())), "{path}");
}

#[test]
fn form_bodies_past_upload_budget_are_503_until_the_held_ones_end() {
    let yaml = "\
upload_budget: 1MiB
aliases:
  - url: /probe
    path: {probe}
    max_body: 4MiB
    max_upload: 4MiB
";
    let d = Daemon::start_with(yaml, |_| {});
    // A 700 KiB upload whose client sends its head and stops: it holds 700 KiB.
    let len = 700 * 1024;
    let head = |len: usize| {
        format!(
            "POST /probe/uploads HTTP/1.1\r\nHost: x\r\nContent-Type: {}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n",
            form_type()
        )
    };
    let part = file_part("f", "big.bin", "application/octet-stream");
    let mut held = std::net::TcpStream::connect(d.addr).expect("connect");
    let first = format!("{}--{BOUNDARY}\r\n{part}\r\n\r\nxxxx", head(len));
    std::io::Write::write_all(&mut held, first.as_bytes()).expect("send");
    std::thread::sleep(std::time::Duration::from_millis(300));
    // Another 700 KiB would pass 1 MiB: 503 with Retry-After, before its body is read.
    let body = multipart(BOUNDARY, &[(&part, &vec![b'x'; len - 400])]);
    assert!(body.len() < len && body.len() > len - 400, "{}", body.len());
    let r = d.post("/probe/uploads", &form_type(), &body);
    assert_refused(&r, 503, &["too many uploads"], "a form past upload_budget");
    assert_eq!(r.header("retry-after"), Some("1"), "{r}");
    assert_eq!(d.log_count("upload_budget of 1048576 bytes"), 1, "{}", d.log());
    // The held request ends (its client leaves): the budget is free again.
    drop(held);
    let mut status = 0;
    crate::harness::wait_until("the held upload to be given back", || {
        status = d.post("/probe/uploads", &form_type(), &body).status;
        status != 503
    });
    assert_eq!(status, 200);
}
