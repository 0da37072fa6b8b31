//! The conformance and debugging app: replies a JSON object whose keys are the environ
//! variable names, each with its value as a string (bytes decoded as latin-1, as PEP 3333
//! does for WSGI's native strings), plus `"gatehouse.params"`, the parameters as a list of
//! `[name, value]` pairs, `"gatehouse.input"`, what the body reader yielded (`length`, and
//! `text`: the first 4096 bytes as latin-1), and `"gatehouse.uploads"` when files were
//! uploaded.
//!
//! Like the seed's `environ.py`, it also sets `X-Environ-Method`, `X-Environ-Script-Name`,
//! `X-Environ-Path-Info` and `X-Environ-Query-String` to those values JSON-encoded (ASCII),
//! so that a HEAD request, whose body is not sent, still shows what the app saw.

use std::io::Read;

use gatehouse_app::{Request, Response};
use serde_json::{Map, Value, json};

/// Decodes bytes as latin-1: every byte is the code point of the same value.
fn latin1(bytes: &[u8]) -> String {
    bytes.iter().map(|&b| char::from(b)).collect()
}

fn environ(req: &Request<'_>) -> Response {
    let mut out = Map::new();
    for (name, value) in req.vars() {
        out.insert(latin1(name), Value::String(latin1(value)));
    }
    let params: Vec<Value> = req.params().map(|(n, v)| json!([n, v])).collect();
    out.insert("gatehouse.params".to_owned(), Value::Array(params));
    let uploads: Vec<Value> = req
        .uploads()
        .map(|u| {
            json!({
                "field": u.field(),
                "filename": u.filename(),
                "content_type": u.content_type(),
                "size": u.size(),
            })
        })
        .collect();
    if !uploads.is_empty() {
        out.insert("gatehouse.uploads".to_owned(), Value::Array(uploads));
    }
    // As environ.py: read(CONTENT_LENGTH) when the request has one, else read to the end.
    let mut body = Vec::new();
    let read = match req.var("CONTENT_LENGTH").and_then(|n| n.trim().parse::<u64>().ok()) {
        Some(n) => req.body_reader().take(n).read_to_end(&mut body),
        None => req.body_reader().read_to_end(&mut body),
    };
    let input = match read {
        Ok(_) => json!({"length": body.len(), "text": latin1(&body[..body.len().min(4096)])}),
        Err(e) => json!({"length": body.len(), "error": e.to_string()}),
    };
    out.insert("gatehouse.input".to_owned(), input);
    let mut resp = Response::json(&out);
    for (header, var) in [
        ("X-Environ-Method", "REQUEST_METHOD"),
        ("X-Environ-Script-Name", "SCRIPT_NAME"),
        ("X-Environ-Path-Info", "PATH_INFO"),
        ("X-Environ-Query-String", "QUERY_STRING"),
    ] {
        let value = req.var_bytes(var).map_or(Value::Null, |v| Value::String(latin1(v)));
        resp = resp.header(header, ascii_json(&value));
    }
    resp
}

/// JSON with every non-ASCII character escaped, as Python's `json.dumps` writes it.
fn ascii_json(value: &Value) -> String {
    let mut out = String::new();
    for c in value.to_string().chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        }
    }
    out
}

gatehouse_app::export!(environ, never_blocks);
