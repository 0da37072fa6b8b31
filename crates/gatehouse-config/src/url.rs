//! Alias URLs: checking and normalizing the `url` of an alias, and [`url_covers`], the
//! pure predicate behind the "shadowed alias" warning.
//!
//! Matching semantics (mod_wsgi's: aliases are tried in declared order, the first match
//! wins; matching is on whole path segments, so `/myapp` does not match `/myappx`):
//! - a single app at `U` matches `U` itself and every path under `U/`;
//! - a directory group at `U` matches only paths strictly under `U/`, i.e. `U/NAME...`
//!   with a non-empty `NAME`, never `U` itself;
//! - so the root single app `/` matches every path, and a root group every path but `/`.

/// A problem with a `url`: what is wrong, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UrlProblem {
    pub(crate) message: String,
    pub(crate) hint: String,
}

/// Checks an alias `url` and returns it normalized (trailing slash removed, except for
/// the root `/`) with whether it was written with a trailing slash.
pub(crate) fn normalize_url(url: &str) -> Result<(String, bool), UrlProblem> {
    let problem = |message: String, hint: &str| UrlProblem { message, hint: hint.to_owned() };
    if !url.starts_with('/') {
        return Err(problem(
            format!("url `{}` must start with `/`", url.escape_debug()),
            "a url is the path part only, like `/myapp` (no scheme, no host)",
        ));
    }
    if let Some(c) = url.chars().find(|&c| matches!(c, '?' | '#' | '%') || c.is_whitespace()) {
        let what = match c {
            '?' => "a query string (`?`)".to_owned(),
            '#' => "a fragment (`#`)".to_owned(),
            '%' => "a percent-escape (`%`)".to_owned(),
            _ => format!("whitespace ({})", c.escape_debug()),
        };
        return Err(problem(
            format!("url `{}` contains {what}", url.escape_debug()),
            "a url is a plain path prefix: remove it (write characters unescaped)",
        ));
    }
    if let Some(c) = url.chars().find(|c| c.is_control()) {
        return Err(problem(
            format!(
                "url `{}` contains the control character {}",
                url.escape_debug(),
                c.escape_debug()
            ),
            "remove it",
        ));
    }
    if url.contains("//") {
        return Err(problem(
            format!("url `{url}` has an empty segment (`//`)"),
            "use single slashes between segments",
        ));
    }
    let trailing_slash = url.len() > 1 && url.ends_with('/');
    let body = if trailing_slash { &url[..url.len() - 1] } else { url };
    if let Some(segment) = body.split('/').find(|s| matches!(*s, "." | "..")) {
        return Err(problem(
            format!("url `{url}` has a `{segment}` segment"),
            "write the path without `.` and `..` segments",
        ));
    }
    Ok((body.to_owned(), trailing_slash))
}

/// Whether alias A covers alias B: every URL path that B matches is also matched by A.
/// If A is declared before B, B is never reached (the first matching alias wins).
///
/// The urls are as in [`crate::Alias::url`] (normalized; a trailing slash is ignored
/// here anyway); `*_is_group` tells a directory group from a single app. See the module
/// docs for the matching rules. Examples:
///
/// ```
/// use gatehouse_config::url_covers;
/// assert!(url_covers("/", false, "/anything", true)); // root app matches everything
/// assert!(url_covers("/a", false, "/a/b", false));
/// assert!(!url_covers("/a", false, "/ab", false)); // segment boundary
/// assert!(!url_covers("/a", true, "/a", false)); // a group never matches its own url
/// assert!(url_covers("/a", true, "/a/b", false));
/// ```
#[must_use]
pub fn url_covers(a_url: &str, a_is_group: bool, b_url: &str, b_is_group: bool) -> bool {
    let a = trim_slash(a_url);
    let b = trim_slash(b_url);
    if a_is_group && !b_is_group {
        // A group matches only strictly below its url; B's own url must be down there.
        b != a && at_or_under(b, a)
    } else {
        // A single app matches its url and below; B (app or group) matches at most
        // its url and below, all of which must be at or under A.
        at_or_under(b, a)
    }
}

fn trim_slash(url: &str) -> &str {
    let trimmed = url.trim_end_matches('/');
    if trimmed.is_empty() { "/" } else { trimmed }
}

/// `path` is `base` or below it, on a segment boundary.
fn at_or_under(path: &str, base: &str) -> bool {
    if base == "/" {
        return path.starts_with('/');
    }
    path == base || path.strip_prefix(base).is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_urls_normalize() {
        let cases: &[(&str, &str, bool)] = &[
            ("/", "/", false),
            ("/sample", "/sample", false),
            ("/sample/", "/sample", true),
            ("/wsgi/", "/wsgi", true),
            ("/a/b/c", "/a/b/c", false),
            ("/a.b/c-d_e~f", "/a.b/c-d_e~f", false),
            ("/.well-known", "/.well-known", false),
            ("/...", "/...", false),
            ("/ünïcode", "/ünïcode", false),
        ];
        for &(url, want, slash) in cases {
            assert_eq!(normalize_url(url), Ok((want.to_owned(), slash)), "{url:?}");
        }
    }

    #[test]
    fn invalid_urls() {
        let cases: &[(&str, &str)] = &[
            ("", "must start with `/`"),
            ("sample", "must start with `/`"),
            ("/a?b=1", "query string"),
            ("/a#top", "fragment"),
            ("/a%20b", "percent-escape"),
            ("/a b", "whitespace"),
            ("/a\tb", "whitespace"),
            ("/a\u{0}b", "control character"),
            ("/a\u{7f}", "control character"),
            ("//", "empty segment"),
            ("/a//b", "empty segment"),
            ("/a//", "empty segment"),
            ("/./a", "`.` segment"),
            ("/a/..", "`..` segment"),
            ("/a/../b/", "`..` segment"),
        ];
        for &(url, needle) in cases {
            match normalize_url(url) {
                Ok(ok) => panic!("{url:?} accepted as {ok:?}"),
                Err(p) => assert!(p.message.contains(needle), "{url:?}: {p:?}"),
            }
        }
    }

    #[test]
    fn covers_table() {
        // (A url, A is group, B url, B is group, A covers B)
        let cases: &[(&str, bool, &str, bool, bool)] = &[
            // same url, same kind: the later is shadowed
            ("/a", false, "/a", false, true),
            ("/a", true, "/a", true, true),
            // same url, other kind
            ("/a", false, "/a", true, true), // app /a matches /a/x too
            ("/a", true, "/a", false, false), // group /a does not match /a itself
            // below
            ("/a", false, "/a/b", false, true),
            ("/a", false, "/a/b", true, true),
            ("/a", true, "/a/b", false, true),
            ("/a", true, "/a/b", true, true),
            ("/a", true, "/a/b/c", false, true),
            // above: never covered
            ("/a/b", false, "/a", false, false),
            ("/a/b", true, "/a", true, false),
            ("/a/b", false, "/a", true, false),
            // segment boundary
            ("/a", false, "/ab", false, false),
            ("/a", true, "/ab/c", false, false),
            ("/ab", false, "/a", false, false),
            // siblings
            ("/a", false, "/b", false, false),
            // root single app covers everything
            ("/", false, "/", false, true),
            ("/", false, "/", true, true),
            ("/", false, "/x", false, true),
            ("/", false, "/x/y", true, true),
            // root group covers everything but `/` itself
            ("/", true, "/x", false, true),
            ("/", true, "/x", true, true),
            ("/", true, "/", true, true),
            ("/", true, "/", false, false),
            // nothing but the root covers the root
            ("/x", false, "/", false, false),
            ("/x", true, "/", true, false),
            // trailing slashes are ignored
            ("/a/", true, "/a/b/", false, true),
            ("/a/", false, "/ab/", false, false),
        ];
        for &(a, ag, b, bg, want) in cases {
            assert_eq!(url_covers(a, ag, b, bg), want, "A={a} group={ag}, B={b} group={bg}");
        }
    }
}
