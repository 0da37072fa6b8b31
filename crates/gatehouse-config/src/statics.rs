//! `static: [{url, path}]`: folders of files the daemon serves itself, beside the apps (the
//! `Alias /static/ DIR` of an Apache setup, mod_wsgi-express's `--url-alias`).

use std::path::{Path, PathBuf};

use crate::diagnostic::{Diags, Pos};
use crate::node::{Node, Value};
use crate::url::normalize_url;

/// One folder of static files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticDir {
    /// The URL prefix, normalized as an alias's (no trailing slash but for `/`).
    pub url: String,
    /// The folder, absolute.
    pub path: PathBuf,
    /// Where its entry starts in the file.
    pub pos: Pos,
}

/// Reads the `static` list.
pub(crate) fn read(n: &Node, dir: &Path, d: &mut Diags) -> Vec<StaticDir> {
    let Value::Seq(items) = &n.value else {
        d.error_hint(
            n.pos,
            format!("`static` must be a list, found {}", n.kind()),
            "write `static: [{url: /static, path: static/}]`",
        );
        return Vec::new();
    };
    let mut out: Vec<StaticDir> = Vec::new();
    for item in items {
        let Value::Map(entries) = &item.value else {
            d.error_hint(
                item.pos,
                format!("a `static` entry must be a mapping, found {}", item.kind()),
                "write `- url: /static` and `path: static/` on the next line",
            );
            continue;
        };
        let get = |key: &str| entries.iter().find(|(k, _)| k.text() == Some(key)).map(|(_, v)| v);
        for (k, _) in entries {
            if !matches!(k.text(), Some("url" | "path")) {
                d.error_hint(
                    k.pos,
                    format!("unknown key `{}` in a `static` entry", k.text().unwrap_or("?")),
                    "a static entry has `url` and `path` only",
                );
            }
        }
        let url = match get("url").map(|n| (n, n.text())) {
            Some((n, Some(text))) => match normalize_url(text) {
                Ok((url, _)) => Some(url),
                Err(p) => {
                    d.error_hint(n.pos, p.message, p.hint);
                    None
                }
            },
            Some((n, None)) => {
                d.error(n.pos, "`url` must be a string");
                None
            }
            None => {
                d.error_hint(item.pos, "this `static` entry has no `url`", "add `url: /static`");
                None
            }
        };
        let path = match get("path") {
            Some(n) => crate::validate::path_value(n, "path", d).and_then(|written| {
                let path = crate::validate::resolve(dir, written);
                if path.is_dir() {
                    Some(path)
                } else {
                    d.error_hint(
                        n.pos,
                        format!("the static folder {} does not exist", path.display()),
                        "create it, or fix the path (relative to the folder of hosting.yaml)",
                    );
                    None
                }
            }),
            None => {
                d.error_hint(item.pos, "this `static` entry has no `path`", "add `path: static/`");
                None
            }
        };
        if let (Some(url), Some(path)) = (url, path) {
            if out.iter().any(|s| s.url == url) {
                d.error(item.pos, format!("`{url}` is already a static url"));
                continue;
            }
            out.push(StaticDir { url, path, pos: item.pos });
        }
    }
    out
}
