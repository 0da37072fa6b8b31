//! Mounts: from a request's URL path to the alias that serves it, split into SCRIPT_NAME and
//! PATH_INFO exactly as mod_wsgi splits them.
//!
//! Two steps, both pure apart from [`resolve_group_file`]:
//! 1. [`normalize`] the raw path as Apache does: percent-decode once, merge `//`, resolve `.`
//!    and `..`. A path that climbs above `/` or has a bad escape is 400; an encoded slash
//!    (`%2F`) or NUL is 404.
//! 2. [`Table::route`] tries the aliases in the order declared; the first that matches wins
//!    (not the longest). Aliases match whole path segments, case-sensitively.
//!
//! Architecture Invariant: nothing here loads a plugin or touches HTTP types; the server asks,
//! this module answers.

use std::collections::HashMap;
use std::os::unix::ffi::OsStringExt as _;
use std::path::{Path, PathBuf};

use gatehouse_config::{AliasKind, Config};

/// Why a raw URL path was refused before routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// The path does not start with `/` (400).
    NotAbsolute,
    /// A `%` not followed by two hex digits (400).
    BadEscape,
    /// `..` would climb above `/` (400).
    AboveRoot,
    /// `%2F` in the path: an encoded slash is not served (404, as Apache's
    /// `AllowEncodedSlashes Off`).
    EncodedSlash,
    /// A NUL byte, raw or encoded (404).
    Nul,
}

impl PathError {
    /// The HTTP status this refusal answers with.
    pub(crate) fn status(self) -> u16 {
        match self {
            PathError::NotAbsolute | PathError::BadEscape | PathError::AboveRoot => 400,
            PathError::EncodedSlash | PathError::Nul => 404,
        }
    }

    /// What was wrong, for the client and the log.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "the request path must start with /",
            PathError::BadEscape => "the request path has a % not followed by two hex digits",
            PathError::AboveRoot => "the request path climbs above / with ..",
            PathError::EncodedSlash => "the request path has an encoded slash (%2F)",
            PathError::Nul => "the request path has a NUL byte",
        }
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes a URL path once, refusing bad escapes, encoded slashes and NULs.
fn decode(raw: &[u8]) -> Result<Vec<u8>, PathError> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == b'%' {
            let (Some(hi), Some(lo)) =
                (raw.get(i + 1).copied().and_then(hex), raw.get(i + 2).copied().and_then(hex))
            else {
                return Err(PathError::BadEscape);
            };
            let d = hi << 4 | lo;
            match d {
                b'/' => return Err(PathError::EncodedSlash),
                0 => return Err(PathError::Nul),
                _ => out.push(d),
            }
            i += 3;
        } else if b == 0 {
            return Err(PathError::Nul);
        } else {
            out.push(b);
            i += 1;
        }
    }
    Ok(out)
}

/// Whether a raw path that starts with `/` is already normal: no escape, no NUL, no empty,
/// `.` or `..` segment (a trailing slash is fine).
fn is_normal(raw: &[u8]) -> bool {
    if raw.iter().any(|&b| b == b'%' || b == 0) {
        return false;
    }
    let mut segments = raw[1..].split(|&b| b == b'/').peekable();
    while let Some(seg) = segments.next() {
        let last = segments.peek().is_none();
        if seg == b"." || seg == b".." || (seg.is_empty() && !last) {
            return false;
        }
    }
    true
}

/// Normalises a raw URL path (no query string) as Apache does before mapping it: decode once,
/// merge repeated slashes, resolve `.` and `..`. A trailing slash is kept (`/a/b/..` is `/a/`).
pub fn normalize(raw: &[u8]) -> Result<Vec<u8>, PathError> {
    if raw.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if is_normal(raw) {
        // The common case: nothing to decode or resolve.
        return Ok(raw.to_vec());
    }
    let decoded = decode(raw)?;
    let mut segments: Vec<&[u8]> = Vec::new();
    let mut trailing = false;
    for seg in decoded.split(|&b| b == b'/').skip(1) {
        trailing = false;
        match seg {
            b"" => trailing = true,
            b"." => trailing = true,
            b".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing = true;
            }
            s => segments.push(s),
        }
    }
    let mut out = Vec::with_capacity(decoded.len());
    for s in &segments {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if trailing || segments.is_empty() {
        out.push(b'/');
    }
    Ok(out)
}

/// One alias as the router sees it.
#[derive(Debug, Clone)]
pub struct Mount {
    /// Normalised URL: no trailing slash, `/` for the root.
    pub url: String,
    /// Whether a single app's URL was written with a trailing slash (then only `URL/...`
    /// matches, not `URL` itself).
    pub trailing_slash: bool,
    /// Single app or directory group.
    pub kind: AliasKind,
    /// The plugin file (single app) or folder (group), absolute.
    pub path: PathBuf,
}

/// The outcome of routing a normalised path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'p> {
    /// A single app serves it.
    App {
        /// Index of the alias in declaration order.
        mount: usize,
        /// SCRIPT_NAME (the alias URL; empty for the root alias).
        script_name: &'p [u8],
        /// PATH_INFO: empty or starting with `/`.
        path_info: &'p [u8],
    },
    /// A directory group serves it with plugin `name`.
    Group {
        /// Index of the alias in declaration order.
        mount: usize,
        /// The plugin name: the first path segment under the group's URL.
        name: &'p [u8],
        /// SCRIPT_NAME: the group's URL plus `/NAME`.
        script_name: &'p [u8],
        /// PATH_INFO: empty or starting with `/`.
        path_info: &'p [u8],
    },
    /// A directory group's own URL with a trailing slash (`/wsgi/`): a directory is not an
    /// app (403).
    GroupIndex {
        /// Index of the alias in declaration order.
        mount: usize,
    },
    /// A `url_match` alias matches: its `path` template named `file`.
    Match {
        /// Index of the alias in declaration order.
        mount: usize,
        /// SCRIPT_NAME: the matched part.
        script_name: &'p [u8],
        /// PATH_INFO: empty or starting with `/`.
        path_info: &'p [u8],
        /// The file the captures name.
        file: PathBuf,
    },
    /// No alias matches (404).
    NoMatch,
}

/// Up to this many aliases a linear scan beats hashing the path's prefixes.
const LINEAR_SCAN_MAX: usize = 8;

/// The aliases in declaration order, indexed by URL so that routing costs the same for 1 or
/// 1,000 aliases.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Every alias, in the order declared.
    pub mounts: Vec<Mount>,
    /// Alias URL (never `/`) → the aliases with that URL, in declaration order.
    by_url: HashMap<Box<[u8]>, Vec<usize>>,
    /// The aliases at `/`, which match every path.
    at_root: Vec<usize>,
    /// The `url_match` aliases: index → expression and file template. With any, routing
    /// tries every alias in order.
    patterns: HashMap<usize, Pattern>,
}

/// A `url_match` alias's expression and its `path` template.
#[derive(Debug, Clone)]
struct Pattern {
    re: regex::bytes::Regex,
    template: String,
}

impl Pattern {
    fn matches<'p>(&self, mount: usize, path: &'p [u8]) -> Option<Route<'p>> {
        let caps = self.re.captures(path)?;
        let whole = caps.get(0)?;
        let end = whole.end();
        // Anchored at the start; SCRIPT_NAME ends where a segment does.
        if whole.start() != 0
            || end == 0
            || (end < path.len() && path[end] != b'/' && path[end - 1] != b'/')
        {
            return None;
        }
        let groups: Vec<&[u8]> =
            (0..caps.len()).map(|i| caps.get(i).map_or(&b""[..], |m| m.as_bytes())).collect();
        let file = gatehouse_config::expand_url_match(&self.template, &groups);
        let file = PathBuf::from(std::ffi::OsString::from_vec(file));
        let (script_name, path_info) = path.split_at(end);
        Some(Route::Match { mount, script_name, path_info, file })
    }
}

impl Table {
    /// Builds the table from mounts in declaration order.
    pub fn new(mounts: Vec<Mount>) -> Table {
        let mut by_url: HashMap<Box<[u8]>, Vec<usize>> = HashMap::new();
        let mut at_root = Vec::new();
        for (i, m) in mounts.iter().enumerate() {
            if m.url == "/" {
                at_root.push(i);
            } else {
                by_url.entry(m.url.as_bytes().into()).or_default().push(i);
            }
        }
        Table { mounts, by_url, at_root, patterns: HashMap::new() }
    }

    /// Builds the table from a validated configuration.
    pub(crate) fn from_config(config: &Config) -> Table {
        let mut table = Table::new(
            config
                .aliases
                .iter()
                .map(|a| Mount {
                    url: a.url.clone(),
                    trailing_slash: a.trailing_slash,
                    kind: a.kind,
                    path: a.path.clone(),
                })
                .collect(),
        );
        for (i, a) in config.aliases.iter().enumerate() {
            // Checked when the configuration was read; one that does not compile (it
            // cannot) matches nothing.
            if let Some(re) = a.url_match.as_deref().and_then(|s| regex::bytes::Regex::new(s).ok())
            {
                let template = a.path.to_string_lossy().into_owned();
                table.patterns.insert(i, Pattern { re, template });
            }
        }
        table
    }

    /// Finds the first alias (in declaration order) that matches a normalised path.
    pub fn route<'p>(&self, path: &'p [u8]) -> Route<'p> {
        if !self.patterns.is_empty() {
            return self
                .mounts
                .iter()
                .enumerate()
                .find_map(|(i, m)| match self.patterns.get(&i) {
                    Some(p) => p.matches(i, path),
                    None => m.matches(i, path),
                })
                .unwrap_or(Route::NoMatch);
        }
        if self.mounts.len() <= LINEAR_SCAN_MAX {
            return self
                .mounts
                .iter()
                .enumerate()
                .find_map(|(i, m)| m.matches(i, path))
                .unwrap_or(Route::NoMatch);
        }
        // Only an alias whose URL is `/` or one of the path's segment prefixes can match
        // ("/a", "/a/b", ... for "/a/b/c"): the first declared of those that matches wins.
        let mut best: Option<Route<'p>> = None;
        let mut best_index = usize::MAX;
        let mut consider = |indices: &[usize]| {
            // Each list is in declaration order: its first match is its best.
            for &i in indices.iter().take_while(|&&i| i < best_index) {
                if let Some(r) = self.mounts[i].matches(i, path) {
                    best = Some(r);
                    best_index = i;
                    break;
                }
            }
        };
        consider(&self.at_root);
        let mut end = 1;
        while end <= path.len() {
            let next = path[end..].iter().position(|&b| b == b'/').map_or(path.len(), |i| end + i);
            if let Some(found) = self.by_url.get(&path[..next]) {
                consider(found);
            }
            end = next + 1;
        }
        best.unwrap_or(Route::NoMatch)
    }
}

impl Mount {
    /// The route if this alias matches `path`, else `None`.
    fn matches<'p>(&self, mount: usize, path: &'p [u8]) -> Option<Route<'p>> {
        let url = self.url.as_bytes();
        // `rest` is what follows the alias URL: empty, or starting with `/`.
        let (prefix_len, rest) = if url == b"/" {
            (0, path)
        } else {
            let rest = path.strip_prefix(url)?;
            if !rest.is_empty() && rest[0] != b'/' {
                return None;
            }
            (url.len(), rest)
        };
        match self.kind {
            AliasKind::App => {
                if self.trailing_slash && rest.is_empty() {
                    return None;
                }
                Some(Route::App { mount, script_name: &path[..prefix_len], path_info: rest })
            }
            AliasKind::Group => {
                // `rest` is "" (the group URL itself: not a match, as under Apache),
                // "/" (the folder: 403) or "/NAME[/more]".
                let under = rest.strip_prefix(b"/")?;
                if under.is_empty() {
                    return Some(Route::GroupIndex { mount });
                }
                let name_len = under.iter().position(|&b| b == b'/').unwrap_or(under.len());
                let script_len = prefix_len + 1 + name_len;
                Some(Route::Group {
                    mount,
                    name: &under[..name_len],
                    script_name: &path[..script_len],
                    path_info: &path[script_len..],
                })
            }
        }
    }
}

/// Why a directory group could not serve a plugin name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupMiss {
    /// 403: a hidden name or a subdirectory.
    Forbidden(String),
    /// 404: no such plugin, or one that escapes the folder or is not a regular file.
    NotFound(String),
}

/// Finds the plugin file for `name` in a directory group's folder: the first existing of
/// `DIR/NAME`, `DIR/libNAME.so`, `DIR/NAME.so`, with no fall-through past the first that
/// exists. `dir` must be canonical. The file must resolve inside `dir`.
pub fn resolve_group_file(dir: &Path, name: &[u8]) -> Result<PathBuf, GroupMiss> {
    use std::os::unix::ffi::OsStrExt;
    let shown = String::from_utf8_lossy(name);
    if name.first() == Some(&b'.') {
        return Err(GroupMiss::Forbidden(format!("{shown:?} is a hidden name")));
    }
    let name = std::ffi::OsStr::from_bytes(name);
    let mut lib = std::ffi::OsString::from("lib");
    lib.push(name);
    lib.push(".so");
    let mut so = name.to_os_string();
    so.push(".so");
    let candidate = [dir.join(name), dir.join(lib), dir.join(so)]
        .into_iter()
        .find(|p| std::fs::symlink_metadata(p).is_ok())
        .ok_or_else(|| {
            GroupMiss::NotFound(format!(
                "no plugin {shown:?} in {} (looked for {shown}, lib{shown}.so, {shown}.so)",
                dir.display()
            ))
        })?;
    file_inside(dir, &candidate)
}

/// `candidate` resolved (links followed) if it is a regular file inside the canonical folder
/// `dir`: the rule a directory group's names and a static folder's paths both follow. A
/// folder is [`GroupMiss::Forbidden`]; anything else that is not a file inside, `NotFound`.
pub(crate) fn file_inside(dir: &Path, candidate: &Path) -> Result<PathBuf, GroupMiss> {
    let real = std::fs::canonicalize(candidate).map_err(|e| {
        GroupMiss::NotFound(format!("{} cannot be resolved: {e}", candidate.display()))
    })?;
    if !real.starts_with(dir) {
        return Err(GroupMiss::NotFound(format!(
            "{} points outside the folder {} (to {})",
            candidate.display(),
            dir.display(),
            real.display()
        )));
    }
    let meta = std::fs::metadata(&real)
        .map_err(|e| GroupMiss::NotFound(format!("{} cannot be read: {e}", real.display())))?;
    if meta.is_dir() {
        return Err(GroupMiss::Forbidden(format!(
            "{} is a folder, not an app",
            candidate.display()
        )));
    }
    if !meta.is_file() {
        return Err(GroupMiss::NotFound(format!("{} is not a regular file", candidate.display())));
    }
    Ok(real)
}

/// The app name of a single-app alias: its URL's last segment (`/myapp` gives `myapp`),
/// `root` for `/`.
pub(crate) fn alias_app_name(url: &str) -> &str {
    match url.rsplit('/').next() {
        Some(s) if !s.is_empty() => s,
        _ => "root",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn app_names_from_alias_urls() {
        for (url, name) in [("/myapp", "myapp"), ("/a/b/sample", "sample"), ("/", "root")] {
            assert_eq!(alias_app_name(url), name);
        }
    }

    #[test]
    fn normalize_table() {
        let ok: &[(&str, &str)] = &[
            ("/", "/"),
            ("/myapp", "/myapp"),
            ("/myapp/", "/myapp/"),
            ("//myapp//a///b", "/myapp/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a/../b", "/b"),
            ("/a/%2e%2e/b", "/b"),
            ("/%41%62c", "/Abc"),
            ("/a%20b", "/a b"),
            ("/a/b/../../", "/"),
            ("/..a/b..", "/..a/b.."),
        ];
        for (raw, want) in ok {
            let got = normalize(raw.as_bytes()).unwrap();
            assert_eq!(String::from_utf8(got).unwrap(), *want, "{raw}");
        }
        let bad: &[(&str, PathError)] = &[
            ("/..", PathError::AboveRoot),
            ("/a/../..", PathError::AboveRoot),
            ("/%2e%2e/etc", PathError::AboveRoot),
            ("/a%2fb", PathError::EncodedSlash),
            ("/a%2Fb", PathError::EncodedSlash),
            ("/a%00", PathError::Nul),
            ("/a%zz", PathError::BadEscape),
            ("/a%4", PathError::BadEscape),
            ("a", PathError::NotAbsolute),
        ];
        for (raw, want) in bad {
            assert_eq!(normalize(raw.as_bytes()), Err(*want), "{raw}");
        }
        assert_eq!(normalize(b"/a\0b"), Err(PathError::Nul));
        for raw in ["/", "/a", "/a/", "/a/b", "/a.b/c..d/.e", "/a//b", "//", "/./", "/a/..", "/%41"]
        {
            // The fast path agrees with the full normalisation.
            if is_normal(raw.as_bytes()) {
                assert_eq!(normalize(raw.as_bytes()).unwrap(), raw.as_bytes(), "{raw}");
            }
        }
        assert!(is_normal(b"/a/b/") && is_normal(b"/"));
        assert!(
            !is_normal(b"/a//b") && !is_normal(b"//") && !is_normal(b"/a/.") && !is_normal(b"/%41")
        );
        assert_eq!(normalize(b"/%ff").unwrap(), b"/\xff");
    }

    fn table(mounts: &[(&str, AliasKind, bool)]) -> Table {
        Table::new(
            mounts
                .iter()
                .map(|(url, kind, trailing_slash)| Mount {
                    url: (*url).to_owned(),
                    trailing_slash: *trailing_slash,
                    kind: *kind,
                    path: PathBuf::from("/x"),
                })
                .collect(),
        )
    }

    /// (path, expected) where expected is "app M SCRIPT|INFO", "group M NAME SCRIPT|INFO",
    /// "index M" or "none".
    fn check(t: &Table, cases: &[(&str, &str)]) {
        for (path, want) in cases {
            let got = match t.route(path.as_bytes()) {
                Route::App { mount, script_name, path_info } => format!(
                    "app {mount} {}|{}",
                    String::from_utf8_lossy(script_name),
                    String::from_utf8_lossy(path_info)
                ),
                Route::Group { mount, name, script_name, path_info } => format!(
                    "group {mount} {} {}|{}",
                    String::from_utf8_lossy(name),
                    String::from_utf8_lossy(script_name),
                    String::from_utf8_lossy(path_info)
                ),
                Route::GroupIndex { mount } => format!("index {mount}"),
                Route::Match { mount, script_name, path_info, file } => format!(
                    "match {mount} {}|{} {}",
                    String::from_utf8_lossy(script_name),
                    String::from_utf8_lossy(path_info),
                    file.display()
                ),
                Route::NoMatch => "none".to_owned(),
            };
            assert_eq!(&got, want, "{path}");
        }
    }

    #[test]
    fn route_table_mod_wsgi_split() {
        let t = table(&[
            ("/sample", AliasKind::App, false),
            ("/myapp", AliasKind::App, false),
            ("/wsgi", AliasKind::Group, false),
            ("/myapp/inner", AliasKind::App, false),
            ("/slash", AliasKind::App, true),
        ]);
        check(
            &t,
            &[
                ("/myapp", "app 1 /myapp|"),
                ("/myapp/", "app 1 /myapp|/"),
                ("/myapp/a/b", "app 1 /myapp|/a/b"),
                ("/myapp/inner", "app 1 /myapp|/inner"),
                ("/myappx", "none"),
                ("/MYAPP", "none"),
                ("/sample", "app 0 /sample|"),
                ("/wsgi", "none"),
                ("/wsgi/", "index 2"),
                ("/wsgi/hello", "group 2 hello /wsgi/hello|"),
                ("/wsgi/hello/", "group 2 hello /wsgi/hello|/"),
                ("/wsgi/hello/x/y", "group 2 hello /wsgi/hello|/x/y"),
                ("/wsgix/hello", "none"),
                ("/slash", "none"),
                ("/slash/", "app 4 /slash|/"),
                ("/", "none"),
            ],
        );
    }

    #[test]
    fn indexed_routing_agrees_with_declaration_order() {
        // Over LINEAR_SCAN_MAX aliases the index is used; the answers must not change.
        let mut spec: Vec<(String, AliasKind, bool)> =
            (0..20).map(|i| (format!("/filler{i}"), AliasKind::App, false)).collect();
        spec.extend([
            ("/myapp".to_owned(), AliasKind::App, false),
            ("/wsgi".to_owned(), AliasKind::Group, false),
            ("/myapp/inner".to_owned(), AliasKind::App, false),
            ("/wsgi/special".to_owned(), AliasKind::App, false),
            ("/slash".to_owned(), AliasKind::App, true),
            ("/".to_owned(), AliasKind::App, false),
        ]);
        let spec: Vec<(&str, AliasKind, bool)> =
            spec.iter().map(|(u, k, t)| (u.as_str(), *k, *t)).collect();
        let t = table(&spec);
        assert!(t.mounts.len() > LINEAR_SCAN_MAX);
        check(
            &t,
            &[
                ("/filler7", "app 7 /filler7|"),
                ("/filler7/x", "app 7 /filler7|/x"),
                ("/myapp/inner/x", "app 20 /myapp|/inner/x"),
                ("/wsgi/special", "group 21 special /wsgi/special|"),
                ("/wsgi", "app 25 |/wsgi"),
                ("/wsgi/", "index 21"),
                ("/slash", "app 25 |/slash"),
                ("/slash/", "app 24 /slash|/"),
                ("/nothing/here", "app 25 |/nothing/here"),
                ("/", "app 25 |/"),
            ],
        );
        // The same table without the root alias: no match instead.
        let t = table(&spec[..spec.len() - 1]);
        check(
            &t,
            &[
                ("/nothing/here", "none"),
                ("/wsgi", "none"),
                ("/filler19/a/b", "app 19 /filler19|/a/b"),
            ],
        );
    }

    #[test]
    fn route_root_aliases() {
        let app = table(&[("/", AliasKind::App, false)]);
        check(&app, &[("/", "app 0 |/"), ("/a/b", "app 0 |/a/b")]);
        let group = table(&[("/", AliasKind::Group, false)]);
        check(&group, &[("/", "index 0"), ("/hello/x", "group 0 hello /hello|/x")]);
    }

    #[test]
    fn group_files_resolve_inside_the_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = std::fs::canonicalize(tmp.path()).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(dir.join("libhello.so"), b"x").unwrap();
        std::fs::write(dir.join("plain"), b"x").unwrap();
        std::fs::write(dir.join("plain.so"), b"x").unwrap();
        std::fs::write(dir.join("other.so"), b"x").unwrap();
        std::fs::create_dir(dir.join("sub")).unwrap();
        std::fs::write(outside.path().join("evil.so"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.path().join("evil.so"), dir.join("evil.so")).unwrap();
        std::os::unix::fs::symlink(dir.join("other.so"), dir.join("alias.so")).unwrap();

        assert_eq!(resolve_group_file(&dir, b"hello").unwrap(), dir.join("libhello.so"));
        assert_eq!(resolve_group_file(&dir, b"plain").unwrap(), dir.join("plain"));
        assert_eq!(resolve_group_file(&dir, b"other").unwrap(), dir.join("other.so"));
        assert_eq!(resolve_group_file(&dir, b"alias").unwrap(), dir.join("other.so"));
        assert!(matches!(resolve_group_file(&dir, b"sub"), Err(GroupMiss::Forbidden(_))));
        assert!(matches!(resolve_group_file(&dir, b".hidden"), Err(GroupMiss::Forbidden(_))));
        assert!(matches!(resolve_group_file(&dir, b"missing"), Err(GroupMiss::NotFound(_))));
        assert!(matches!(resolve_group_file(&dir, b"evil"), Err(GroupMiss::NotFound(_))));
    }
}
