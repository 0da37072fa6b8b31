//! `error_documents` and `error_override` (global and per alias): the bodies of the error
//! answers, like Apache's `ErrorDocument` and mod_wsgi's `WSGIErrorOverride`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::diagnostic::Diags;
use crate::node::{Node, Value};

/// The error documents in effect for an alias: status to file, absolute.
pub type ErrorDocuments = BTreeMap<u16, PathBuf>;

/// Reads `error_documents: {404: FILE, ...}`: each key an HTTP error status (400 to 599),
/// each value a file (relative to the configuration's folder) that exists and can be read.
pub(crate) fn documents(n: &Node, dir: &Path, d: &mut Diags) -> ErrorDocuments {
    let mut out = ErrorDocuments::new();
    let Value::Map(entries) = &n.value else {
        d.error_hint(
            n.pos,
            format!("`error_documents` must be a mapping of STATUS: FILE, found {}", n.kind()),
            "write `error_documents: {404: errors/404.html, 500: errors/500.html}`",
        );
        return out;
    };
    for (key, value) in entries {
        let status = match &key.value {
            Value::Int(i, _) => u16::try_from(*i).ok().filter(|s| (400..=599).contains(s)),
            _ => None,
        };
        let Some(status) = status else {
            d.error_hint(
                key.pos,
                format!("`{}` is not an HTTP error status", key.text().unwrap_or("?")),
                "use a status from 400 to 599, as `404` or `503`",
            );
            continue;
        };
        let Some(written) = crate::validate::path_value(value, "error_documents", d) else {
            continue;
        };
        let file = crate::validate::resolve(dir, written);
        match std::fs::metadata(&file) {
            Ok(m) if m.is_file() => {
                out.insert(status, file);
            }
            Ok(_) => {
                d.error(value.pos, format!("the error document {} is not a file", file.display()))
            }
            Err(e) => d.error_hint(
                value.pos,
                format!("the error document {} cannot be read: {e}", file.display()),
                "write the file, or fix the path (relative to the folder of hosting.yaml)",
            ),
        }
    }
    out
}

/// The alias's documents: the global ones, with the alias's own over them.
pub(crate) fn merged(global: &ErrorDocuments, own: ErrorDocuments) -> ErrorDocuments {
    let mut all = global.clone();
    all.extend(own);
    all
}
