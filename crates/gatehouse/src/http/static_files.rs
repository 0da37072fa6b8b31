//! Static files beside the apps (`static: [{url, path}]`), served by the daemon before any
//! alias is tried: GET and HEAD, ranges, conditional requests (ETag, Last-Modified), the
//! type from the file name (actix-files' `NamedFile`). The same path rules as a directory
//! group: the path is decoded and normalized first (no `..` above the URL), a hidden name
//! (a segment starting with `.`) is 403, a link that leads out of the folder is 404, a
//! folder is 403 (no listings).

use std::path::{Path, PathBuf};

use actix_web::{HttpRequest, HttpResponse};
use gatehouse_config::StaticDir;

use crate::request::answer::Answer;
use crate::request::route::GroupMiss;

/// The static folder serving `path` (normalized, decoded) and the file's path relative to
/// it, if one covers it. The longest URL wins, as with Apache's `Alias` for nested URLs.
pub(crate) fn covering<'a, 'p>(
    statics: &'a [StaticDir],
    path: &'p [u8],
) -> Option<(&'a StaticDir, &'p [u8])> {
    statics
        .iter()
        .filter_map(|s| under(&s.url, path).map(|rest| (s, rest)))
        .max_by_key(|(s, _)| s.url.len())
}

/// `path` under `url` (whole segments): the rest, without its leading `/`.
fn under<'p>(url: &str, path: &'p [u8]) -> Option<&'p [u8]> {
    let url = url.as_bytes();
    if url == b"/" {
        return Some(path.strip_prefix(b"/").unwrap_or(path));
    }
    let rest = path.strip_prefix(url)?;
    match rest {
        [] => Some(rest),
        [b'/', tail @ ..] => Some(tail),
        _ => None,
    }
}

/// The file for `rest` in `dir`, or the answer that refuses it.
pub(crate) fn resolve(dir: &Path, rest: &[u8]) -> Result<PathBuf, Answer> {
    use std::os::unix::ffi::OsStrExt as _;
    if rest.split(|&b| b == b'/').any(|s| s.first() == Some(&b'.')) {
        return Err(Answer::new(403, "hidden files are not served"));
    }
    if rest.contains(&0) {
        return Err(Answer::new(404, "no such file"));
    }
    let root = std::fs::canonicalize(dir).map_err(|_| Answer::new(404, "no such file"))?;
    crate::request::route::file_inside(&root, &root.join(std::ffi::OsStr::from_bytes(rest)))
        .map_err(|miss| match miss {
            GroupMiss::Forbidden(_) => Answer::new(403, "folders are not listed"),
            GroupMiss::NotFound(_) => Answer::new(404, "no such file"),
        })
}

/// Serves `file` for `req` (GET or HEAD; other methods 405).
pub(crate) fn serve(req: &HttpRequest, file: &Path) -> Result<HttpResponse, Answer> {
    use actix_web::http::Method;
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return Err(Answer::method_not_allowed("a static file takes GET and HEAD", "GET, HEAD"));
    }
    let named = actix_files::NamedFile::open(file).map_err(|_| Answer::new(404, "no such file"))?;
    Ok(named.use_etag(true).use_last_modified(true).prefer_utf8(true).into_response(req))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_static_url_covers_whole_segments_and_the_longest_wins() {
        let dir = |url: &str| StaticDir {
            url: url.to_owned(),
            path: PathBuf::from("/x"),
            pos: gatehouse_config::Pos::new(1, 1),
        };
        let statics = [dir("/static"), dir("/static/img"), dir("/s")];
        for (path, want) in [
            (&b"/static/app.css"[..], Some(("/static", &b"app.css"[..]))),
            (b"/static/img/a.png", Some(("/static/img", b"a.png"))),
            (b"/static", Some(("/static", b""))),
            (b"/staticx/a", None),
            (b"/s/a/b", Some(("/s", b"a/b"))),
            (b"/other", None),
        ] {
            let got = covering(&statics, path).map(|(s, rest)| (s.url.as_str(), rest));
            assert_eq!(got, want, "{}", String::from_utf8_lossy(path));
        }
    }
}
