//! The `handlers` list: file suffixes served by a handler plugin, like Apache's
//! `AddHandler wsgi-script .py` (or `SetHandler wsgi-script` on a folder), and the Python
//! settings that go with them (`python_home`, `python_path`, mirroring mod_wsgi's
//! `WSGIPythonHome` and `WSGIPythonPath`).
//!
//! A single app whose `path` ends in a handled suffix, or a directory-group file that does,
//! is served by the handler's plugin, with `SCRIPT_FILENAME` set to the file. What the
//! plugin does with the file is its business (the WSGI bridge imports it).
//!
//! One interpreter serves the whole process, so `python_home` is one value for the whole
//! file: every handler and alias that sets it must agree ([`python_home_conflicts`]).

use std::path::{Path, PathBuf};

use crate::alias::env;
use crate::diagnostic::{Diags, Pos};
use crate::node::{Node, Value};
use crate::validate::{at, fields, found, path_value, resolve, text_value};
use crate::{Alias, AliasKind, Handler};

/// The keys of one handler.
pub(crate) const HANDLER_KEYS: &[&str] = &["suffix", "plugin", "env", "python_home", "python_path"];

/// A handler as read, with the positions later checks report at.
pub(crate) struct Read {
    pub(crate) handler: Handler,
    suffix_pos: Pos,
    /// `python_home` and where its value is.
    pub(crate) python_home: Option<(PathBuf, Pos)>,
}

/// Checks and resolves every handler. A handler whose suffix or plugin could not be read
/// is left out (its errors are in `d`).
pub(crate) fn handlers(n: &Node, dir: &Path, d: &mut Diags) -> Vec<Read> {
    let items = match &n.value {
        Value::Null => return Vec::new(),
        Value::Seq(items) => items,
        _ => {
            d.error_hint(
                n.pos,
                format!("`handlers` must be a list, found {}", found(n)),
                "write one `- suffix: .py` / `plugin: target/release/libwsgi.so` entry per handler",
            );
            return Vec::new();
        }
    };
    let mut out: Vec<Read> = Vec::new();
    for item in items {
        let Some(h) = one(item, dir, d) else { continue };
        if let Some(first) = out.iter().find(|o| o.handler.suffix == h.handler.suffix) {
            d.error_hint(
                h.suffix_pos,
                format!(
                    "suffix `{}` is already handled by the handler at {}",
                    h.handler.suffix.escape_debug(),
                    at(first.handler.pos)
                ),
                "remove one of them: a file is served by the first handler whose suffix it has",
            );
            continue;
        }
        out.push(h);
    }
    out
}

/// One handler; `None` when its suffix or plugin is unusable. Every key is checked first.
fn one(item: &Node, dir: &Path, d: &mut Diags) -> Option<Read> {
    let f = fields(item, "a handler", HANDLER_KEYS, d)?;
    let suffix_node = f.get("suffix");
    if suffix_node.is_none() {
        d.error_hint(
            item.pos,
            "this handler has no `suffix`",
            "add `suffix: .py` (the file names it serves end with it)",
        );
    }
    let suffix = suffix_node.and_then(|n| Some((suffix_value(n, d)?, n.pos)));
    let plugin_node = f.get("plugin");
    if plugin_node.is_none() {
        d.error_hint(
            item.pos,
            "this handler has no `plugin`",
            "add `plugin: target/release/libwsgi.so` (the plugin that serves such files)",
        );
    }
    let plugin = plugin_node.and_then(|n| Some((path_value(n, "plugin", d)?, n.pos)));
    let plugin = plugin.and_then(|(written, pos)| plugin_file(dir, written, pos, d));
    let env = f.get("env").map(|n| env(n, d)).unwrap_or_default();
    let python_home = f.get("python_home").and_then(|n| Some((python_home(n, dir, d)?, n.pos)));
    let python_path = f.get("python_path").map(|n| python_path(n, dir, d)).unwrap_or_default();
    let (suffix, suffix_pos) = suffix?;
    let (plugin, plugin_as_written) = plugin?;
    Some(Read {
        handler: Handler {
            suffix,
            plugin,
            plugin_as_written,
            env,
            python_home: python_home.as_ref().map(|(p, _)| p.clone()),
            python_path,
            pos: item.pos,
        },
        suffix_pos,
        python_home,
    })
}

/// A suffix: `.` and at least one more character, no `/`, whitespace or NUL.
fn suffix_value(n: &Node, d: &mut Diags) -> Option<String> {
    let text = text_value(n, "suffix", d)?;
    let problem = if !text.starts_with('.') || text.len() < 2 {
        Some(format!("suffix `{}` must start with `.` and name an extension", text.escape_debug()))
    } else if text.contains('/') {
        Some(format!("suffix `{}` must not contain `/`", text.escape_debug()))
    } else if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some(format!(
            "suffix `{}` must not contain whitespace or control characters",
            text.escape_debug()
        ))
    } else {
        None
    };
    if let Some(message) = problem {
        d.error_hint(n.pos, message, "write the file name ending it serves, like `.py` or `.wsgi`");
        return None;
    }
    Some(text.to_owned())
}

/// The handler's plugin file: resolved; a folder is an error, a missing file a warning.
fn plugin_file(dir: &Path, written: &str, pos: Pos, d: &mut Diags) -> Option<(PathBuf, String)> {
    let resolved = resolve(dir, written);
    match std::fs::metadata(&resolved) {
        Ok(meta) if meta.is_dir() => {
            d.error_hint(
                pos,
                format!("the handler plugin `{written}` is a folder"),
                "point `plugin` at the plugin file, like `target/release/libwsgi.so`",
            );
            None
        }
        Ok(_) => Some((resolved, written.to_owned())),
        Err(_) => {
            d.warning_hint(
                pos,
                format!(
                    "the handler plugin `{written}` ({}) does not exist (yet); the files it \
                     serves answer 404 until it appears",
                    resolved.display()
                ),
                "build it (`cargo build --release -p wsgi`) or fix the path",
            );
            Some((resolved, written.to_owned()))
        }
    }
}

/// `python_home`: an existing folder (a virtualenv, or a Python installation's prefix).
pub(crate) fn python_home(n: &Node, dir: &Path, d: &mut Diags) -> Option<PathBuf> {
    let written = path_value(n, "python_home", d)?;
    let resolved = resolve(dir, written);
    if resolved.is_dir() {
        return Some(resolved);
    }
    d.error_hint(
        n.pos,
        format!("python_home `{written}` ({}) is not a folder", resolved.display()),
        format!(
            "point it at a virtualenv (create one with `python3 -m venv {written}`) or at a \
             Python installation's prefix (sys.prefix)"
        ),
    );
    None
}

/// `python_path`: a list of folders, or one string of folders separated by `:` (as
/// mod_wsgi's `python-path=`). Relative entries resolve against the config's folder; a
/// missing folder is a warning.
pub(crate) fn python_path(n: &Node, dir: &Path, d: &mut Diags) -> Vec<PathBuf> {
    let entries: Vec<(&str, Pos)> = match &n.value {
        Value::Null => return Vec::new(),
        Value::Seq(items) => items
            .iter()
            .filter_map(|item| Some((path_value(item, "python_path", d)?, item.pos)))
            .collect(),
        _ => match text_value(n, "python_path", d) {
            Some(text) => text.split(':').filter(|s| !s.is_empty()).map(|s| (s, n.pos)).collect(),
            None => return Vec::new(),
        },
    };
    let mut out = Vec::new();
    for (written, pos) in entries {
        if written.contains(':') || written.contains('\0') {
            d.error_hint(
                pos,
                format!("python_path entry `{}` must not contain `:`", written.escape_debug()),
                "list the folders one per item; `:` separates entries, as in PYTHONPATH",
            );
            continue;
        }
        let resolved = resolve(dir, written);
        if !resolved.is_dir() {
            d.warning_hint(
                pos,
                format!(
                    "python_path entry `{written}` ({}) is not a folder (yet)",
                    resolved.display()
                ),
                "create it or fix the path; imports from it fail until then",
            );
        }
        out.push(resolved);
    }
    out
}

/// The one `python_home` of the process: every handler and alias that sets one must give
/// the same folder (`homes`: each value written, in file order, with its position).
/// Reports each disagreement at the later place.
pub(crate) fn python_home_conflicts(homes: &[(PathBuf, Pos)], d: &mut Diags) -> Option<PathBuf> {
    let (first, first_pos) = homes.first()?;
    for (path, pos) in &homes[1..] {
        if path != first {
            d.error_hint(
                *pos,
                format!(
                    "python_home {} differs from {} (at {}): one Python interpreter serves the \
                     whole daemon, so there is one python_home",
                    path.display(),
                    first.display(),
                    at(*first_pos)
                ),
                "give every handler and alias the same python_home (or set it once, on the \
                 handler); apps that need different virtualenvs need separate daemons until \
                 worker processes (`isolation: process`) are available",
            );
        }
    }
    Some(first.clone())
}

/// Refuses `python_home`/`python_path` on an alias that no handler serves: they would
/// mean nothing there.
pub(crate) fn check_alias_python(
    alias: &Alias,
    keys: &[(&str, Pos)],
    handlers: &[Handler],
    d: &mut Diags,
) {
    let served = match alias.kind {
        AliasKind::App => crate::handler_for(handlers, &alias.path).is_some(),
        AliasKind::Group => !handlers.is_empty(),
    };
    if served {
        return;
    }
    for (key, pos) in keys {
        let why = match alias.kind {
            AliasKind::App => format!("no handler's suffix matches `{}`", alias.path_as_written),
            AliasKind::Group => "no handlers are configured".to_owned(),
        };
        d.error_hint(
            *pos,
            format!("`{key}` applies only to files served by a handler, and {why}"),
            "remove it, or add a handler: `handlers: [{suffix: .py, plugin: target/release/libwsgi.so}]`",
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{Expected, assert_has, fixture};
    use crate::{AliasKind, Severity};

    /// Each snippet (after `aliases: []` on line 1) has exactly the expected errors.
    #[test]
    fn errors_table() {
        let cases: &[(&str, Expected)] = &[
            ("handlers: {}\n", &[(2, 11, "`handlers` must be a list, found a mapping")]),
            ("handlers: [.py]\n", &[(2, 12, "a handler must be a mapping of keys")]),
            ("handlers:\n  - plugin: lib/app.so\n", &[(3, 5, "this handler has no `suffix`")]),
            ("handlers:\n  - suffix: .py\n", &[(3, 5, "this handler has no `plugin`")]),
            (
                "handlers:\n  - suffix: py\n    plugin: lib/app.so\n",
                &[(3, 13, "suffix `py` must start with `.`")],
            ),
            (
                "handlers:\n  - suffix: .\n    plugin: lib/app.so\n",
                &[(3, 13, "must start with `.` and name an extension")],
            ),
            (
                "handlers:\n  - suffix: .a/b\n    plugin: lib/app.so\n",
                &[(3, 13, "must not contain `/`")],
            ),
            (
                "handlers:\n  - suffix: \". py\"\n    plugin: lib/app.so\n",
                &[(3, 13, "must not contain whitespace")],
            ),
            (
                "handlers:\n  - suffix: .py\n    plugin: lib/app.so\n  - suffix: .py\n    plugin: lib/app.so\n",
                &[(5, 13, "suffix `.py` is already handled by the handler at line 3, column 5")],
            ),
            (
                "handlers:\n  - suffix: .py\n    plugin: apps\n",
                &[(4, 13, "the handler plugin `apps` is a folder")],
            ),
            (
                "handlers:\n  - suffix: .py\n    plugin: lib/app.so\n    callable: app\n",
                &[(
                    5,
                    5,
                    "unknown key `callable` in a handler; valid keys are: suffix, plugin, env, python_home, python_path",
                )],
            ),
            (
                "handlers:\n  - suffix: .py\n    plugin: lib/app.so\n    env: [callable]\n",
                &[(5, 10, "`env` must be a mapping of NAME: value")],
            ),
            (
                "handlers:\n  - suffix: .py\n    plugin: lib/app.so\n    python_home: nothere\n",
                &[(5, 18, "python_home `nothere` (")],
            ),
            (
                "handlers:\n  - suffix: .py\n    plugin: lib/app.so\n    python_path: [\"a:b\"]\n",
                &[(5, 19, "python_path entry `a:b` must not contain `:`")],
            ),
            (
                "handlers:\n  - suffix: .py\n    plugin: lib/app.so\n    python_path: {a: 1}\n",
                &[(5, 18, "`python_path` must be a string, found a mapping")],
            ),
            // one python_home per process
            (
                "handlers:\n  - suffix: .py\n    plugin: lib/app.so\n    python_home: apps\n  - suffix: .wsgi\n    plugin: lib/app.so\n    python_home: lib\n",
                &[(8, 18, "differs from")],
            ),
            // python settings where no handler serves
            (
                "aliases:\n  - url: /a\n    path: lib/app.so\n    python_path: apps\n",
                &[(
                    5,
                    18,
                    "`python_path` applies only to files served by a handler, and no handler's suffix matches `lib/app.so`",
                )],
            ),
            (
                "aliases:\n  - url: /g/\n    path: apps/\n    python_home: apps\n",
                &[(
                    5,
                    18,
                    "`python_home` applies only to files served by a handler, and no handlers are configured",
                )],
            ),
            (
                "handlers:\n  - suffix: .py\n    plugin: lib/app.so\n    python_home: apps\naliases:\n  - url: /a\n    path: x.py\n    python_home: lib\n",
                &[(9, 18, "differs from")],
            ),
        ];
        let fx = fixture();
        for (snippet, expected) in cases {
            // Line 1 is `threads: 8` (or `aliases: []` when the snippet has none).
            let text = if snippet.contains("aliases:") {
                format!("threads: 8\n{snippet}")
            } else {
                format!("aliases: []\n{snippet}")
            };
            let errors = fx.errors(&text);
            for &(line, column, needle) in *expected {
                assert_has(&errors, line, column, needle);
            }
            assert_eq!(errors.len(), expected.len(), "for {text:?}: {errors:#?}");
        }
    }

    #[test]
    fn handlers_resolve_and_serve_by_suffix() {
        let fx = fixture();
        let dir = fx.tmp.path();
        std::fs::write(dir.join("apps/sample.py"), b"").expect("write sample.py");
        let loaded = fx.ok(
            "handlers:\n  - suffix: .py\n    plugin: lib/app.so\n    env: {callable: app}\n    python_home: apps\n    python_path: \"lib:apps\"\n  - suffix: .wsgi\n    plugin: lib/app.so\n    python_path: [lib]\naliases:\n  - url: /sample\n    path: apps/sample.py\n    python_path: apps\n  - url: /wsgi/\n    path: apps/\n",
        );
        assert_eq!(loaded.warnings, []);
        let c = &loaded.config;
        assert_eq!(c.handlers.len(), 2);
        let h = &c.handlers[0];
        assert_eq!(
            (h.suffix.as_str(), h.plugin.as_path()),
            (".py", dir.join("lib/app.so").as_path())
        );
        assert_eq!(h.env, [("callable".to_owned(), "app".to_owned())]);
        assert_eq!(h.python_path, [dir.join("lib"), dir.join("apps")]);
        assert_eq!(c.python_home.as_deref(), Some(dir.join("apps").as_path()));
        assert_eq!(c.handlers[1].python_path, [dir.join("lib")]);
        let sample = &c.aliases[0];
        assert_eq!(sample.kind, AliasKind::App);
        assert_eq!(sample.python_path, [dir.join("apps")]);
        let cases: &[(&str, Option<&str>)] = &[
            ("apps/sample.py", Some(".py")),
            ("apps/x.wsgi", Some(".wsgi")),
            ("apps/x.py.txt", None),
            ("lib/app.so", None),
            ("apps/.py", None),
            ("apps/py", None),
        ];
        for (file, want) in cases {
            let got = c.handler_for(&dir.join(file)).map(|h| h.suffix.as_str());
            assert_eq!(got, *want, "{file}");
        }
    }

    #[test]
    fn missing_plugin_and_python_path_are_warnings() {
        let fx = fixture();
        let loaded = fx.ok(
            "handlers:\n  - suffix: .py\n    plugin: lib/wsgi.so\n    python_path: [nothere]\naliases: []\n",
        );
        let got: Vec<_> = loaded.warnings.iter().map(|w| (w.severity, w.pos)).collect();
        assert_eq!(
            got,
            [
                (Severity::Warning, Some(crate::Pos::new(3, 13))),
                (Severity::Warning, Some(crate::Pos::new(4, 19)))
            ]
        );
        assert!(loaded.warnings[0].message.contains("does not exist (yet)"));
        assert!(loaded.warnings[1].message.contains("is not a folder (yet)"));
        // the same python_home everywhere is fine; so is none
        fx.ok("handlers:\n  - suffix: .py\n    plugin: lib/app.so\n    python_home: apps\naliases:\n  - url: /g/\n    path: apps/\n    python_home: ./apps/\n");
        assert_eq!(fx.ok("handlers:\naliases: []\n").config.handlers, []);
    }
}
