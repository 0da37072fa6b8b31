//! The configuration a worker process is started with ([`worker_text`]): the file's text cut
//! down to its global keys and the one alias the worker serves, so that no worker reads
//! another alias's settings (its `env` may hold secrets).
//!
//! The text is written again from the positioned tree (`node`), not cut out of the file: the
//! tree already has anchors and aliases (`*name`) resolved and every scalar's spelling as
//! written, so the worker reads the same values the daemon did. The output is block YAML
//! with every string double-quoted and every number and boolean as written (`1.0`, `On`),
//! which parses back to the same tree (see the tests).

use std::fmt::Write as _;

use crate::Config;
use crate::hooks::HOOK_KEYS;
use crate::node::{Node, Value, parse_yaml};

/// The text a worker of alias `index` of `config` reads its configuration from: `config`'s
/// global keys (listen, limits, logs, handlers ...) and, under `aliases`, only that alias.
/// Read with the file's path, it gives the daemon's values for the globals and that alias.
///
/// One value depends on other aliases: the process's one `python_home`, which another alias
/// may have set. When no handler sets it, it is added to the first handler, so the worker
/// starts the same interpreter as the daemon would.
///
/// `Err` says why the text cannot be made (not a configuration that passed validation).
pub fn worker_text(config: &Config, index: usize) -> Result<String, String> {
    let mut root = parse_yaml(&config.text)
        .map_err(|e| format!("the configuration text does not parse again: {}", e.message))?;
    // The daemon's `${VAR}` values, written literally: a worker's environment is not the
    // daemon's (it gets only its alias's `env`).
    let mut ignored = crate::diagnostic::Diags::new(std::path::Path::new("worker"));
    crate::env_vars::expand(&mut root, &crate::env_vars::process_env, &mut ignored);
    crate::env_vars::escape(&mut root);
    let Value::Map(entries) = &root.value else {
        return Err("the configuration is not a mapping".to_owned());
    };
    let home_for_handlers = config
        .python_home
        .as_ref()
        .filter(|_| config.handlers.iter().all(|h| h.python_home.is_none()))
        .map(|home| {
            home.to_str()
                .map(str::to_owned)
                .ok_or_else(|| format!("python_home {} is not UTF-8", home.display()))
        })
        .transpose()?;
    let mut out = String::with_capacity(config.text.len().min(64 * 1024));
    let mut found = false;
    for (key, value) in entries {
        let kept;
        let value = match (key.text(), &value.value) {
            (Some("aliases"), Value::Seq(items)) => {
                let item = items.get(index).ok_or_else(|| {
                    format!("the configuration has {} aliases, not {}", items.len(), index + 1)
                })?;
                found = true;
                // The hooks run in the daemon: a worker neither reads nor checks their files
                // (its user may not be able to).
                let mut item = item.clone();
                if let Value::Map(keys) = &mut item.value {
                    keys.retain(|(k, _)| !k.text().is_some_and(|k| HOOK_KEYS.contains(&k)));
                }
                kept = Node { pos: value.pos, value: Value::Seq(vec![item]) };
                &kept
            }
            (Some("handlers"), Value::Seq(items)) if home_for_handlers.is_some() => {
                let mut items = items.clone();
                if let (Some(home), Some(Node { value: Value::Map(first), pos })) =
                    (&home_for_handlers, items.first_mut())
                {
                    let scalar = |value| Node { pos: *pos, value };
                    first.push((
                        scalar(Value::Str("python_home".to_owned())),
                        scalar(Value::Str(home.clone())),
                    ));
                }
                kept = Node { pos: value.pos, value: Value::Seq(items) };
                &kept
            }
            _ => value,
        };
        entry(key, value, 0, &mut out)?;
    }
    if !found {
        return Err("the configuration has no list of aliases".to_owned());
    }
    Ok(out)
}

/// `key: value` at `indent`, ending with a newline.
fn entry(key: &Node, value: &Node, indent: usize, out: &mut String) -> Result<(), String> {
    out.extend(std::iter::repeat_n(' ', indent));
    scalar(key, out)?;
    out.push(':');
    after(value, indent + 2, out)
}

/// A value whose line is started (`key:` or `-`): a scalar on that line, or a non-empty
/// mapping or list on the lines below it, at `indent`.
fn after(value: &Node, indent: usize, out: &mut String) -> Result<(), String> {
    match &value.value {
        Value::Map(entries) if !entries.is_empty() => {
            out.push('\n');
            for (k, v) in entries {
                entry(k, v, indent, out)?;
            }
        }
        Value::Seq(items) if !items.is_empty() => {
            out.push('\n');
            for item in items {
                out.extend(std::iter::repeat_n(' ', indent));
                out.push('-');
                after(item, indent + 2, out)?;
            }
        }
        Value::Map(_) => out.push_str(" {}\n"),
        Value::Seq(_) => out.push_str(" []\n"),
        _ => {
            out.push(' ');
            scalar(value, out)?;
            out.push('\n');
        }
    }
    Ok(())
}

/// A scalar: strings double-quoted, numbers and booleans as written when that is a plain
/// spelling that reads back the same (else as Rust writes the value).
fn scalar(n: &Node, out: &mut String) -> Result<(), String> {
    match &n.value {
        Value::Null => out.push_str("null"),
        Value::Str(s) => quoted(s, out),
        Value::Bool(b, text) => out.push_str(if plain(text) { text } else { bool_text(*b) }),
        Value::Int(i, text) => {
            if plain(text) {
                out.push_str(text);
            } else {
                let _ = write!(out, "{i}");
            }
        }
        Value::Float(f, text) => {
            if plain(text) {
                out.push_str(text);
            } else if f.is_nan() {
                out.push_str(".nan");
            } else if f.is_infinite() {
                out.push_str(if *f > 0.0 { ".inf" } else { "-.inf" });
            } else {
                let _ = write!(out, "{f:?}");
            }
        }
        Value::Seq(_) | Value::Map(_) => {
            return Err(format!("a list or mapping used as a key at {}", n.pos));
        }
    }
    Ok(())
}

fn bool_text(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// Whether a number's or boolean's spelling can be written as a plain scalar as is.
fn plain(text: &str) -> bool {
    !text.is_empty()
        && text.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '-' | '_'))
}

/// `s` as a YAML double-quoted scalar: `"` and `\` escaped, and every control or line
/// separator character as `\uXXXX`.
fn quoted(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}') => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::fixture;
    use crate::{Alias, Pos};

    /// The tree without positions (they differ between the file and the worker's text).
    fn unplaced(n: &Node) -> Node {
        let value = match &n.value {
            Value::Seq(items) => Value::Seq(items.iter().map(unplaced).collect()),
            Value::Map(entries) => {
                Value::Map(entries.iter().map(|(k, v)| (unplaced(k), unplaced(v))).collect())
            }
            other => other.clone(),
        };
        Node { pos: Pos::new(1, 1), value }
    }

    fn unplaced_alias(a: &Alias) -> Alias {
        Alias { pos: Pos::new(1, 1), ..a.clone() }
    }

    const FILE: &str = "\
listen: [\"127.0.0.1:8080\", {address: \"127.0.0.1:8443\", tls: {cert: c.pem, key: k.pem}}]
develop_mode: On
max_body: 1MiB
timeout: 5s
logs: {dir: log, level: \"warn,gatehouse=debug\", rotate: {size: 1K, keep: all}, file_mode: 0640}
handlers:
  - suffix: .py
    plugin: lib/app.so
    env: {callable: app}
aliases:
  - url: /a
    path: lib/app.so
    env: {A_SETTING: 1.0, A_FLAG: on, A_QUOTED: \"tab\\there \\\"q\\\" \\\\ \\u0085 é\", A_EMPTY: \"\"}
    isolation: process
    user: www-data
    max_upload: 512
  - url: /b
    path: apps/b.py
    env: &common {B_SECRET: hunter2-of-b, SHARED: \"from an anchor\"}
    python_home: apps
    python_path: [lib]
  - url: /c/
    path: apps/
    env: *common
    isolation: process
    processes: 3
    threads: 2
";

    #[test]
    fn a_worker_reads_the_globals_and_its_own_alias_only() {
        let fx = fixture();
        let config = fx.ok(FILE).config;
        assert_eq!(config.aliases.len(), 3);
        for (index, alias) in config.aliases.iter().enumerate() {
            let text = worker_text(&config, index).expect("worker text");
            let worker = fx.ok(&text).config;
            assert_eq!(worker.aliases.len(), 1, "{text}");
            assert_eq!(unplaced_alias(&worker.aliases[0]), unplaced_alias(alias), "{text}");
            let mut want = config.clone();
            want.aliases = vec![unplaced_alias(alias)];
            want.text = worker.text.clone();
            want.handlers = worker.handlers.clone();
            let mut got = worker.clone();
            got.aliases = vec![unplaced_alias(&worker.aliases[0])];
            // Every global the same (python_home included), handlers but for their positions
            // and the python_home they may carry for it.
            assert_eq!(got, want, "{text}");
            assert_eq!(worker.handlers.len(), config.handlers.len());
            for (w, c) in worker.handlers.iter().zip(&config.handlers) {
                assert_eq!((&w.suffix, &w.plugin, &w.env), (&c.suffix, &c.plugin, &c.env));
            }
            // No other alias's settings, however they were written (an alias `*common` in
            // /c reads B's values: there, they are its own).
            if index != 1 {
                assert!(!text.contains("/b"), "{text}");
            }
            if index == 0 {
                assert!(!text.contains("hunter2"), "{text}");
                assert!(!text.contains("SHARED"), "{text}");
            }
        }
        assert_eq!(config.aliases[2].env, config.aliases[1].env);
    }

    #[test]
    fn a_worker_gets_no_hooks_the_daemon_runs() {
        let fx = fixture();
        let text = "aliases:\n  - url: /a\n    path: lib/app.so\n    isolation: process\n    \
                    access_script: lib/app.so\n    auth_user_script: lib/app.so\n    \
                    auth_realm: Staff\n";
        let config = fx.ok(text).config;
        assert!(config.aliases[0].hooks.any());
        assert_eq!(config.aliases[0].hooks.auth_realm, "Staff");
        let worker_text = worker_text(&config, 0).expect("worker text");
        assert!(!worker_text.contains("script"), "{worker_text}");
        let worker = fx.ok(&worker_text).config;
        assert!(!worker.aliases[0].hooks.any());
    }

    #[test]
    fn the_text_reads_back_as_the_same_tree() {
        let texts = [
            FILE,
            "aliases: []\n",
            "a: {}\nb: []\nc: ~\nd: [[1, [2]], {x: [y]}]\ne: -0x1F\nf: +1.5e3\nh: NO\n",
            "'quoted key': \"\\u2028\\t\\r\\n\\x7f\\\\\"\n\"1\": 1\n2: '2'\nk: |\n  two\n  lines\n",
        ];
        for text in texts {
            let tree = parse_yaml(text).expect("valid YAML");
            let Value::Map(entries) = &tree.value else { panic!("{text}") };
            let mut out = String::new();
            for (k, v) in entries {
                entry(k, v, 0, &mut out).expect("rendered");
            }
            let again = parse_yaml(&out).unwrap_or_else(|e| panic!("{out}\n{e:?}"));
            assert_eq!(unplaced(&again), unplaced(&tree), "{text}\n---\n{out}");
        }
    }

    #[test]
    fn python_home_set_by_another_alias_reaches_the_worker() {
        let fx = fixture();
        let config = fx.ok(FILE).config;
        let home = config.python_home.clone().expect("B's python_home");
        let text = worker_text(&config, 0).expect("worker text");
        assert_eq!(fx.ok(&text).config.python_home, Some(home), "{text}");
        assert!(worker_text(&config, 3).is_err());
    }
}
