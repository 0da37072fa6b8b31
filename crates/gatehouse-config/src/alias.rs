//! The `aliases` list: each entry checked and resolved into an [`Alias`] (url, kind
//! found on disk, per-alias options falling back to the global ones, `env`), plus the
//! two warnings that concern aliases: an app file that does not exist yet, and an alias
//! shadowed by an earlier one.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use crate::accounts::Accounts;
use crate::diagnostic::{Diags, Pos};
use crate::node::{Node, Value};
use crate::url::{normalize_url, url_covers};
use crate::validate::{
    at, bool_value, fields, found, path_value, resolve, size_value, text_value, threads_value,
};
use crate::{Alias, AliasKind, Handler};

/// The keys of one alias.
pub(crate) const ALIAS_KEYS: &[&str] = &[
    "url",
    "url_match",
    "path",
    "develop_mode",
    "env",
    "max_body",
    "max_upload",
    "pass_authorization",
    "threads",
    "dispatch",
    "reloading",
    "preload",
    "error_documents",
    "error_override",
    "max_headers",
    "max_header_size",
    "timeout",
    "body_timeout",
    "body_min_rate",
    "body_timeout_max",
    "queue",
    "max_websockets",
    "websocket_max_message",
    "websocket_idle_timeout",
    "check_plugins",
    "sha256",
    "python_home",
    "python_path",
    "isolation",
];

/// Every key an alias accepts: [`ALIAS_KEYS`], the hooks ([`crate::hooks::HOOK_KEYS`]),
/// then the worker settings ([`crate::isolation::PROCESS_KEYS`]).
fn all_alias_keys() -> &'static [&'static str] {
    static ALL: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    ALL.get_or_init(|| {
        ALIAS_KEYS
            .iter()
            .chain(crate::hooks::HOOK_KEYS)
            .chain(crate::isolation::PROCESS_KEYS)
            .copied()
            .collect()
    })
}

/// The global values an alias inherits when it does not set its own.
#[derive(Debug, Clone)]
pub(crate) struct Globals {
    pub(crate) develop_mode: bool,
    pub(crate) max_body: u64,
    /// The top level's `max_upload` when written there; otherwise each alias's own
    /// `max_body` is its upload limit.
    pub(crate) max_upload: Option<u64>,
    pub(crate) pass_authorization: bool,
    pub(crate) threads: usize,
    pub(crate) dispatch: crate::Dispatch,
    pub(crate) reloading: bool,
    pub(crate) limits: crate::Limits,
    pub(crate) check_plugins: bool,
    pub(crate) error_documents: crate::ErrorDocuments,
    pub(crate) error_override: bool,
}

/// Checks and resolves every alias, then warns about the shadowed ones. An alias whose
/// url or kind could not be determined is left out (its errors are in `d`). Also returns
/// each `python_home` written, with its position (one per process: the caller checks
/// that they agree). `accounts` resolves `user` and `group`.
pub(crate) fn aliases(
    items: &[Node],
    globals: &Globals,
    handlers: &[Handler],
    dir: &Path,
    accounts: &dyn Accounts,
    d: &mut Diags,
) -> (Vec<Alias>, Vec<(PathBuf, Pos)>) {
    let mut out: Vec<Alias> = Vec::new();
    let mut url_pos: Vec<Pos> = Vec::new();
    let mut homes = Vec::new();
    for item in items {
        let Some((alias, pos, home)) = one(item, globals, handlers, dir, accounts, d) else {
            continue;
        };
        homes.extend(home);
        warn_if_shadowed(&alias, pos, &out, &url_pos, d);
        out.push(alias);
        url_pos.push(pos);
    }
    (out, homes)
}

/// Warns at `pos` (the url of `b`) if an earlier alias matches every URL `b` matches.
fn warn_if_shadowed(b: &Alias, pos: Pos, earlier: &[Alias], earlier_pos: &[Pos], d: &mut Diags) {
    let b_group = b.kind == AliasKind::Group;
    if b.url_match.is_some() {
        return;
    }
    let Some((a, a_pos)) = earlier
        .iter()
        .zip(earlier_pos)
        .filter(|(a, _)| a.url_match.is_none())
        .find(|(a, _)| url_covers(&a.url, a.kind == AliasKind::Group, &b.url, b_group))
    else {
        return;
    };
    let message = if a.url == b.url && a.kind == b.kind {
        format!(
            "alias `{}` is never reached: the same url is already served by the alias on line {}",
            b.url, a_pos.line
        )
    } else {
        format!(
            "alias `{}` is never reached: every URL it matches is matched first by the alias `{}` on line {}",
            b.url, a.url, a_pos.line
        )
    };
    d.warning_hint(
        pos,
        message,
        format!(
            "aliases are tried in order and the first match wins: move this one above line {}, or remove it",
            a_pos.line
        ),
    );
}

/// An alias as read: the alias, where its url is, and its `python_home` with the value's
/// position.
type Read = (Alias, Pos, Option<(PathBuf, Pos)>);

/// One alias; `None` when its url or kind is unknown. Every key is checked before
/// giving up, so that all of an alias's errors are reported at once.
fn one(
    item: &Node,
    globals: &Globals,
    handlers: &[Handler],
    dir: &Path,
    accounts: &dyn Accounts,
    d: &mut Diags,
) -> Option<Read> {
    let f = fields(item, "an alias", all_alias_keys(), d)?;
    // `url_match: REGEX` (WSGIScriptAliasMatch) instead of `url`: see `url_match`.
    let pattern = f.get("url_match").map(|n| (n, crate::url_match::pattern(n, f.get("url"), d)));
    let url_node = f.get("url");
    if url_node.is_none() && pattern.is_none() {
        d.error_hint(
            item.pos,
            "this alias has no `url`",
            "add `url: /myapp` (the URL prefix it serves)",
        );
    }
    let url_text = url_node.and_then(|n| text_value(n, "url", d));
    let url = match (url_node, url_text) {
        _ if pattern.is_some() => {
            pattern.as_ref().and_then(|(n, p)| p.as_ref().map(|p| (p.source.clone(), false, n.pos)))
        }
        (Some(n), Some(text)) => match normalize_url(text) {
            Ok((url, trailing_slash)) => Some((url, trailing_slash, n.pos)),
            Err(problem) => {
                d.error_hint(n.pos, problem.message, problem.hint);
                None
            }
        },
        _ => None,
    };

    let path_node = f.get("path");
    if path_node.is_none() {
        d.error_hint(
            item.pos,
            "this alias has no `path`",
            "add `path: target/release/libmyapp.so` (one app) or `path: target/release/` (a folder of apps)",
        );
    }
    let path = path_node.and_then(|n| Some((path_value(n, "path", d)?, n.pos)));
    let url_slash = url_text.is_some_and(|u| u.len() > 1 && u.ends_with('/'));
    let kind = match &pattern {
        // Each match names its own file: the alias serves many, as a directory group.
        Some((_, Some(p))) => path.and_then(|(written, pos)| {
            crate::url_match::check_template(written, p.groups, pos, d).then_some(AliasKind::Group)
        }),
        Some((_, None)) => None,
        None => path.and_then(|(written, pos)| kind(dir, written, url_slash, pos, d)),
    };

    let develop_mode = f
        .get("develop_mode")
        .and_then(|n| bool_value(n, "develop_mode", d))
        .unwrap_or(globals.develop_mode);
    let max_body =
        f.get("max_body").and_then(|n| size_value(n, "max_body", d)).unwrap_or(globals.max_body);
    let max_upload = f
        .get("max_upload")
        .and_then(|n| size_value(n, "max_upload", d))
        .or(globals.max_upload)
        .unwrap_or(max_body);
    let pass_authorization = f
        .get("pass_authorization")
        .and_then(|n| bool_value(n, "pass_authorization", d))
        .unwrap_or(globals.pass_authorization);
    let threads =
        f.get("threads").and_then(|n| threads_value(n, "threads", d)).unwrap_or(globals.threads);
    let dispatch = f
        .get("dispatch")
        .and_then(|n| dispatch_value(n, "dispatch", d))
        .unwrap_or(globals.dispatch);
    let reloading =
        f.get("reloading").and_then(|n| bool_value(n, "reloading", d)).unwrap_or(globals.reloading);
    let preload = f.get("preload").and_then(|n| bool_value(n, "preload", d)).unwrap_or(false);
    if let (Some(n), Some(AliasKind::App)) = (f.get("preload").filter(|_| preload), kind) {
        d.error_hint(
            n.pos,
            "`preload` is for directory groups: a single app is loaded at start already",
            "remove `preload` from this alias, or point its `path` at a folder of apps",
        );
    }
    let error_documents = crate::errors::merged(
        &globals.error_documents,
        f.get("error_documents").map(|n| crate::errors::documents(n, dir, d)).unwrap_or_default(),
    );
    let error_override = f
        .get("error_override")
        .and_then(|n| bool_value(n, "error_override", d))
        .unwrap_or(globals.error_override);
    let limits = crate::limits::read(&f, globals.limits, d);
    let isolation = crate::isolation::read(&f, dispatch, dir, accounts, d);
    // A global `dispatch: inline` does not apply to an isolated alias: its apps run in its
    // workers, relayed like a pool's.
    let dispatch = match (&isolation, f.get("dispatch")) {
        (crate::Isolation::Process(_), None) => crate::Dispatch::Pool,
        _ => dispatch,
    };
    let check_plugins = crate::limits::check_plugins(&f, globals.check_plugins, d);
    let sha256 = f.get("sha256").and_then(|n| Some((crate::limits::sha256(n, d)?, n.pos)));
    let env = f.get("env").map(|n| env(n, d)).unwrap_or_default();
    let python_home =
        f.get("python_home").and_then(|n| Some((crate::handler::python_home(n, dir, d)?, n.pos)));
    let python_path =
        f.get("python_path").map(|n| crate::handler::python_path(n, dir, d)).unwrap_or_default();
    let python_keys: Vec<(&str, Pos)> = ["python_home", "python_path"]
        .into_iter()
        .filter_map(|k| f.get(k).map(|n| (k, n.pos)))
        .collect();

    if let (Some((_, pos)), Some(AliasKind::Group)) = (&sha256, kind) {
        d.error_hint(
            *pos,
            "`sha256` pins one file, and this alias is a directory group",
            "pin single-app aliases only (one `url` per plugin file)",
        );
    }
    let (url, trailing_slash, url_pos) = url?;
    let hooks = crate::hooks::read(&f, &url, dir, d);
    let (written, _) = path?;
    let alias = Alias {
        url,
        url_match: pattern.and_then(|(_, p)| p).map(|p| p.source),
        trailing_slash,
        kind: kind?,
        path: resolve(dir, written),
        path_as_written: written.to_owned(),
        develop_mode,
        env,
        max_body,
        max_upload,
        pass_authorization,
        threads,
        dispatch,
        reloading,
        preload,
        error_documents,
        error_override,
        hooks,
        limits,
        check_plugins,
        sha256: sha256.map(|(hex, _)| hex),
        python_path,
        isolation,
        pos: item.pos,
    };
    crate::handler::check_alias_python(&alias, &python_keys, handlers, d);
    Some((alias, url_pos, python_home))
}

/// Looks at the disk to tell a directory group from a single app (see the crate docs
/// for the rules). Reports the missing-folder error and the missing-file warning;
/// `None` when the kind cannot be told (the error is reported).
fn kind(dir: &Path, written: &str, url_slash: bool, pos: Pos, d: &mut Diags) -> Option<AliasKind> {
    let resolved = resolve(dir, written);
    let shown = if Path::new(written) == resolved {
        format!("`{written}`")
    } else {
        format!("`{written}` ({})", resolved.display())
    };
    let wants_dir = written.ends_with('/');
    match std::fs::metadata(&resolved) {
        Ok(meta) if meta.is_dir() => Some(AliasKind::Group),
        Ok(meta) if meta.is_file() && wants_dir => {
            d.error_hint(
                pos,
                format!("{shown} is a file, but the trailing `/` asks for a folder of apps"),
                "remove the trailing `/` to serve this file as a single app",
            );
            None
        }
        Ok(meta) if meta.is_file() => Some(AliasKind::App),
        Ok(_) => {
            d.error_hint(
                pos,
                format!("{shown} is neither a file nor a directory"),
                "point `path` at an app file (a .so) or at a folder of apps",
            );
            None
        }
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            if wants_dir || url_slash {
                d.error_hint(
                    pos,
                    format!("the folder {shown} of this directory group does not exist"),
                    "create the folder or fix the path",
                );
                Some(AliasKind::Group)
            } else {
                d.warning_hint(
                    pos,
                    format!(
                        "the app file {shown} does not exist (yet); the alias answers 404 until the file appears"
                    ),
                    "build the app or fix the path (a folder of apps is written with a trailing `/`)",
                );
                Some(AliasKind::App)
            }
        }
        Err(e) => {
            d.error_hint(
                pos,
                format!("cannot inspect {shown}: {e}"),
                "check the path and the permissions of the folders on it",
            );
            None
        }
    }
}

/// `env`: a mapping of names to strings (numbers and booleans are taken as written),
/// in declaration order. `env:` with nothing is no variables.
pub(crate) fn env(n: &Node, d: &mut Diags) -> Vec<(String, String)> {
    let entries = match &n.value {
        Value::Null => return Vec::new(),
        Value::Map(entries) => entries,
        _ => {
            d.error_hint(
                n.pos,
                format!("`env` must be a mapping of NAME: value, found {}", found(n)),
                "write `env: {NAME: value, OTHER: value}`, or one `NAME: value` per line below `env:`",
            );
            return Vec::new();
        }
    };
    let mut out: Vec<(String, String)> = Vec::new();
    let mut first: Vec<Pos> = Vec::new();
    for (key, value) in entries {
        let Some(name) = key.text() else {
            d.error(key.pos, format!("an env name must be a string, found {}", key.kind()));
            continue;
        };
        let shown = name.escape_debug();
        let bad_name = if name.is_empty() {
            Some("an env name must not be empty".to_owned())
        } else if name.contains('=') {
            Some(format!("env name `{shown}` must not contain `=`"))
        } else if name.contains('\0') {
            Some(format!("env name `{shown}` must not contain a NUL character"))
        } else {
            None
        };
        if let Some(message) = bad_name {
            d.error(key.pos, message);
            continue;
        }
        if let Some(i) = out.iter().position(|(k, _)| k == name) {
            d.error_hint(
                key.pos,
                format!("duplicate env name `{shown}` (first at {})", at(first[i])),
                "remove one of them",
            );
            continue;
        }
        let Some(text) = value.text() else {
            let hint = if value.value == Value::Null {
                format!("write `{shown}: \"\"` for an empty value")
            } else {
                "write the value as a string; quote it if needed".to_owned()
            };
            d.error_hint(
                value.pos,
                format!(
                    "env value of `{shown}` must be a string, number or boolean, found {}",
                    found(value)
                ),
                hint,
            );
            continue;
        };
        if text.contains('\0') {
            d.error(value.pos, format!("env value of `{shown}` must not contain a NUL character"));
            continue;
        }
        out.push((name.to_owned(), text.to_owned()));
        first.push(key.pos);
    }
    out
}

/// `dispatch`: `auto`, `pool` or `inline`.
pub(crate) fn dispatch_value(n: &Node, key: &str, d: &mut Diags) -> Option<crate::Dispatch> {
    match text_value(n, key, d)? {
        "auto" => Some(crate::Dispatch::Auto),
        "pool" => Some(crate::Dispatch::Pool),
        "inline" => Some(crate::Dispatch::Inline),
        other => {
            d.error_hint(
                n.pos,
                format!("`{key}` must be `auto`, `pool` or `inline`, found `{other}`"),
                "`auto` (the default): on the HTTP worker if the plugin promises it never blocks, \
                 else on the alias's threads; `pool`: on its threads; `inline`: on the worker",
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{Expected, assert_has, fixture};
    use crate::{AliasKind, Pos, Severity};

    /// Wraps alias lines (already indented by 2) into a minimal valid file.
    fn file(aliases: &str) -> String {
        format!("aliases:\n{aliases}")
    }

    /// Each snippet has exactly the expected errors, at (line, column, message part).
    /// Line 1 is `aliases:`; the first alias starts on line 2, column 5.
    #[test]
    fn errors_table() {
        let cases: &[(&str, Expected)] = &[
            // the item itself
            ("  - /x\n", &[(2, 5, "an alias must be a mapping of keys, found a string `/x`")]),
            ("  - path: lib/app.so\n", &[(2, 5, "this alias has no `url`")]),
            ("  - url: /a\n", &[(2, 5, "this alias has no `path`")]),
            (
                "  - url: /a\n    pth: lib/app.so\n",
                &[
                    (2, 5, "has no `path`"),
                    (
                        3,
                        5,
                        "unknown key `pth` in an alias; valid keys are: url, url_match, path, develop_mode, env, max_body, max_upload, pass_authorization, threads, dispatch, reloading, preload, error_documents, error_override, max_headers, max_header_size, timeout, body_timeout, body_min_rate, body_timeout_max, queue, max_websockets, websocket_max_message, websocket_idle_timeout, check_plugins, sha256, python_home, python_path",
                    ),
                ],
            ),
            (
                "  - url: /a\n    path: lib/app.so\n    url: /b\n",
                &[(4, 5, "duplicate key `url` in an alias (first at line 2, column 5)")],
            ),
            // url
            (
                "  - url: sample\n    path: lib/app.so\n",
                &[(2, 10, "url `sample` must start with `/`")],
            ),
            ("  - url: /a?b=1\n    path: lib/app.so\n", &[(2, 10, "query string")]),
            ("  - url: \"/a#b\"\n    path: lib/app.so\n", &[(2, 10, "fragment")]),
            ("  - url: /a%20b\n    path: lib/app.so\n", &[(2, 10, "percent-escape")]),
            ("  - url: \"/a b\"\n    path: lib/app.so\n", &[(2, 10, "whitespace")]),
            ("  - url: \"/a\\x01\"\n    path: lib/app.so\n", &[(2, 10, "control character")]),
            ("  - url: \"/a\\0\"\n    path: lib/app.so\n", &[(2, 10, "control character")]),
            ("  - url: /a//b\n    path: lib/app.so\n", &[(2, 10, "empty segment")]),
            ("  - url: /a/./b\n    path: lib/app.so\n", &[(2, 10, "`.` segment")]),
            ("  - url: /a/..\n    path: lib/app.so\n", &[(2, 10, "`..` segment")]),
            (
                "  - url: [/a]\n    path: lib/app.so\n",
                &[(2, 10, "`url` must be a string, found a list")],
            ),
            ("  - url:\n    path: lib/app.so\n", &[(2, 8, "`url` must be a string, found null")]),
            // path
            ("  - url: /a\n    path: \"\"\n", &[(3, 11, "`path` must not be empty")]),
            ("  - url: /a\n    path:\n", &[(3, 9, "`path` must be a string, found null")]),
            (
                "  - url: /a\n    path: {x: 1}\n",
                &[(3, 11, "`path` must be a string, found a mapping")],
            ),
            // kind on disk
            ("  - url: /wsgi\n    path: nothere/\n", &[(3, 11, "the folder `nothere/` (")]),
            (
                "  - url: /wsgi/\n    path: nothere\n",
                &[(3, 11, "of this directory group does not exist")],
            ),
            ("  - url: /a\n    path: lib/app.so/\n", &[(3, 11, "is a file, but the trailing `/`")]),
            ("  - url: /a\n    path: lib/app.so/x.so\n", &[]), // NotADirectory: a missing app
            (
                "  - url: /a\n    path: /dev/null\n",
                &[(3, 11, "`/dev/null` is neither a file nor a directory")],
            ),
            // per-alias overrides
            (
                "  - url: /a\n    path: lib/app.so\n    develop_mode: maybe\n    max_body: 0\n    threads: 0\n",
                &[
                    (4, 19, "`develop_mode` must be true or false"),
                    (5, 15, "`max_body` must be at least 1 byte"),
                    (6, 14, "`threads` must be between 1 and 1024"),
                ],
            ),
            (
                "  - url: /a\n    path: lib/app.so\n    preload: true\n",
                &[(4, 14, "`preload` is for directory groups")],
            ),
            // env
            (
                "  - url: /a\n    path: lib/app.so\n    env: [A]\n",
                &[(4, 10, "`env` must be a mapping of NAME: value, found a list")],
            ),
            (
                "  - url: /a\n    path: lib/app.so\n    env: {\"\": x}\n",
                &[(4, 11, "an env name must not be empty")],
            ),
            (
                "  - url: /a\n    path: lib/app.so\n    env: {\"A=B\": x}\n",
                &[(4, 11, "env name `A=B` must not contain `=`")],
            ),
            (
                "  - url: /a\n    path: lib/app.so\n    env: {\"A\\0\": x}\n",
                &[(4, 11, "must not contain a NUL")],
            ),
            (
                "  - url: /a\n    path: lib/app.so\n    env: {~: x}\n",
                &[(4, 11, "an env name must be a string, found null")],
            ),
            (
                "  - url: /a\n    path: lib/app.so\n    env: {A: ~}\n",
                &[(4, 14, "env value of `A` must be a string, number or boolean, found null")],
            ),
            ("  - url: /a\n    path: lib/app.so\n    env: {A: [1]}\n", &[(4, 14, "found a list")]),
            (
                "  - url: /a\n    path: lib/app.so\n    env: {A: {b: 1}}\n",
                &[(4, 14, "found a mapping")],
            ),
            (
                "  - url: /a\n    path: lib/app.so\n    env: {A: \"x\\0\"}\n",
                &[(4, 14, "env value of `A` must not contain a NUL")],
            ),
            (
                "  - url: /a\n    path: lib/app.so\n    env:\n      A: 1\n      B: 2\n      A: 3\n",
                &[(7, 7, "duplicate env name `A` (first at line 5, column 7)")],
            ),
            // errors in several aliases are all reported
            (
                "  - url: a\n    path: lib/app.so\n  - url: /b\n    path: lib/app.so\n    threads: 2000\n  - url: /c\n    path: gone/\n",
                &[
                    (2, 10, "must start with `/`"),
                    (6, 14, "between 1 and 1024"),
                    (8, 11, "does not exist"),
                ],
            ),
        ];
        let fx = fixture();
        for (aliases, expected) in cases {
            let text = file(aliases);
            if expected.is_empty() {
                fx.ok(&text);
                continue;
            }
            let errors = fx.errors(&text);
            for &(line, column, needle) in *expected {
                assert_has(&errors, line, column, needle);
            }
            assert_eq!(errors.len(), expected.len(), "for {text:?}: {errors:#?}");
        }
    }

    #[test]
    fn missing_group_folder_has_the_hint() {
        let fx = fixture();
        let errors = fx.errors(&file("  - url: /wsgi/\n    path: nothere/\n"));
        assert_eq!(errors[0].hint.as_deref(), Some("create the folder or fix the path"));
    }

    #[test]
    fn missing_app_file_is_a_warning() {
        let fx = fixture();
        let loaded = fx.ok(&file(
            "  - url: /a\n    path: lib/app.so\n  - url: /later\n    path: lib/later.so\n",
        ));
        assert_eq!(loaded.warnings.len(), 1, "{:#?}", loaded.warnings);
        let w = &loaded.warnings[0];
        assert_eq!((w.severity, w.pos), (Severity::Warning, Some(Pos::new(5, 11))));
        assert!(w.message.contains("`lib/later.so`"), "{w}");
        assert!(w.message.contains("the alias answers 404 until the file appears"), "{w}");
        let alias = &loaded.config.aliases[1];
        assert_eq!(alias.kind, AliasKind::App);
        assert_eq!(alias.path, fx.tmp.path().join("lib/later.so"));
    }

    #[test]
    fn group_url_with_or_without_slash_is_the_same() {
        let fx = fixture();
        let loaded = fx.ok(&file("  - url: /w\n    path: apps\n  - url: /v/\n    path: apps/\n"));
        let got: Vec<_> = loaded
            .config
            .aliases
            .iter()
            .map(|a| (a.url.as_str(), a.trailing_slash, a.kind))
            .collect();
        assert_eq!(got, [("/w", false, AliasKind::Group), ("/v", true, AliasKind::Group)]);
    }

    /// (aliases, expected shadow warnings as (line, column, message part)). `A` is an
    /// app file, `G` a folder; every alias's `url` is on an even line, column 10.
    #[test]
    fn shadowed_aliases() {
        let cases: &[(&[(&str, char)], Expected)] = &[
            (
                &[("/a", 'A'), ("/a", 'A')],
                &[(
                    4,
                    10,
                    "alias `/a` is never reached: the same url is already served by the alias on line 2",
                )],
            ),
            (
                &[("/a", 'G'), ("/a/", 'G')],
                &[(4, 10, "the same url is already served by the alias on line 2")],
            ),
            (
                &[("/", 'A'), ("/x", 'A'), ("/y", 'G')],
                &[
                    (
                        4,
                        10,
                        "alias `/x` is never reached: every URL it matches is matched first by the alias `/` on line 2",
                    ),
                    (
                        6,
                        10,
                        "alias `/y` is never reached: every URL it matches is matched first by the alias `/` on line 2",
                    ),
                ],
            ),
            (&[("/a", 'A'), ("/a/b", 'A')], &[(4, 10, "by the alias `/a` on line 2")]),
            (&[("/a", 'A'), ("/a", 'G')], &[(4, 10, "by the alias `/a` on line 2")]),
            (&[("/a", 'G'), ("/a/b", 'A')], &[(4, 10, "by the alias `/a` on line 2")]),
            (
                &[("/x", 'A'), ("/a", 'G'), ("/a/b/c", 'G')],
                &[(6, 10, "by the alias `/a` on line 4")],
            ),
            // the first covering alias is named
            (&[("/a", 'A'), ("/", 'A'), ("/a/b", 'A')], &[(6, 10, "by the alias `/a` on line 2")]),
            // not shadowed
            (&[("/a", 'G'), ("/a", 'A')], &[]),
            (&[("/a", 'A'), ("/ab", 'A')], &[]),
            (&[("/a/b", 'A'), ("/a", 'A')], &[]),
            (&[("/a/b", 'G'), ("/a", 'G')], &[]),
            (&[("/", 'G'), ("/", 'A')], &[]),
            (&[("/x", 'A'), ("/", 'A')], &[]),
        ];
        let fx = fixture();
        for (aliases, expected) in cases {
            let mut text = String::from("aliases:\n");
            for (url, kind) in *aliases {
                let path = if *kind == 'G' { "apps/" } else { "lib/app.so" };
                text.push_str(&format!("  - url: {url}\n    path: {path}\n"));
            }
            let warnings = fx.ok(&text).warnings;
            for &(line, column, needle) in *expected {
                assert_has(&warnings, line, column, needle);
            }
            assert_eq!(warnings.len(), expected.len(), "for {text}: {warnings:#?}");
            assert!(warnings.iter().all(|w| w.severity == Severity::Warning));
        }
    }

    #[test]
    fn shadow_warning_has_a_hint() {
        let fx = fixture();
        let text = file("  - url: /\n    path: lib/app.so\n  - url: /x\n    path: lib/app.so\n");
        let warnings = fx.ok(&text).warnings;
        assert_eq!(
            warnings[0].hint.as_deref(),
            Some(
                "aliases are tried in order and the first match wins: move this one above line 2, or remove it"
            )
        );
    }
}
