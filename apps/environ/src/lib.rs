//! The conformance and debugging app: replies a JSON object whose keys are the environ
//! variable names, each with its value as a string (bytes decoded as latin-1, as PEP 3333
//! does for WSGI's native strings), plus `"gatehouse.params"`, the parameters as a list of
//! `[name, value]` pairs, and `"gatehouse.uploads"` when files were uploaded.

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
    Response::json(&out)
}

gatehouse_app::export!(environ);
