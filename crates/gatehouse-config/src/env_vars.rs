//! `${VAR}` and `${VAR:-default}` in `hosting.yaml`'s values, replaced by the daemon's
//! environment variables before anything reads them: a Secret passed to a container as
//! environment, or an `Environment=` of the systemd unit, reaches an alias's `env` without
//! being written into the file.
//!
//! - Only values are expanded, never keys. `$${` is a literal `${`; a `$` before anything
//!   but `{` is left as it is, so existing values with a `$` keep working.
//! - A variable that is not set, with no default, is an error at the value's position (as
//!   `check` prints every error). `${VAR:-default}` uses the default when `VAR` is unset or
//!   empty, as the shell does.
//! - A value that is exactly one `${...}` takes the type its result has as a plain scalar:
//!   `threads: ${THREADS}` with `THREADS=16` is the number 16.

use crate::diagnostic::Diags;
use crate::node::{Node, Value};

/// Replaces every `${...}` in the string values under `node` with `lookup`'s values,
/// reporting what cannot be replaced to `d`.
pub(crate) fn expand(node: &mut Node, lookup: &dyn Fn(&str) -> Option<String>, d: &mut Diags) {
    match &mut node.value {
        Value::Str(s) if s.contains('$') => match substitute(s, lookup) {
            Ok(Some(new)) => {
                let whole = is_one_reference(s);
                node.value = if whole { typed(new) } else { Value::Str(new) };
            }
            Ok(None) => {}
            Err((message, hint)) => d.error_hint(node.pos, message, hint),
        },
        Value::Seq(items) => {
            for item in items {
                expand(item, lookup, d);
            }
        }
        Value::Map(entries) => {
            for (_, value) in entries {
                expand(value, lookup, d);
            }
        }
        _ => {}
    }
}

/// Makes the string values under `node` literal again for a reader that expands them (a
/// worker reading its configuration text): each `${` becomes `$${`.
pub(crate) fn escape(node: &mut Node) {
    match &mut node.value {
        Value::Str(s) if s.contains("${") => *s = s.replace("${", "$${"),
        Value::Seq(items) => items.iter_mut().for_each(escape),
        Value::Map(entries) => entries.iter_mut().for_each(|(_, v)| escape(v)),
        _ => {}
    }
}

/// The daemon's environment, as [`expand`] reads it.
pub(crate) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn is_one_reference(s: &str) -> bool {
    s.starts_with("${") && s.ends_with('}') && s[2..].find('}') == Some(s.len() - 3)
}

/// A plain scalar's type, as YAML's core schema gives it (what `threads: 16` would be).
fn typed(text: String) -> Value {
    let t = text.as_str();
    if let Ok(i) = t.parse::<i128>()
        && !t.starts_with('+')
    {
        return Value::Int(i, text);
    }
    match t {
        "true" | "True" | "TRUE" | "yes" | "Yes" | "on" | "On" => Value::Bool(true, text),
        "false" | "False" | "FALSE" | "no" | "No" | "off" | "Off" => Value::Bool(false, text),
        "" | "~" | "null" => Value::Null,
        _ => match t.parse::<f64>() {
            Ok(f) if t.contains('.') && !t.chars().any(char::is_alphabetic) => {
                Value::Float(f, text)
            }
            _ => Value::Str(text),
        },
    }
}

/// `s` with its references replaced (`None`: nothing to replace), or why not (message,
/// hint).
fn substitute(
    s: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<String>, (String, String)> {
    if !s.contains("${") {
        return Ok(None);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail.find('}').ok_or_else(|| {
                (
                    format!("`${{` without its closing `}}` in {s:?}"),
                    "write `${NAME}` or `${NAME:-default}`; `$${` is a literal `${`".to_owned(),
                )
            })?;
            let inner = &tail[..end];
            let (name, default) = match inner.split_once(":-") {
                Some((n, dflt)) => (n, Some(dflt)),
                None => (inner, None),
            };
            let valid = name.chars().next().is_some_and(|c| c == '_' || c.is_ascii_alphabetic())
                && name.chars().all(|c| c == '_' || c.is_ascii_alphanumeric());
            if !valid {
                return Err((
                    format!("`${{{inner}}}` does not name an environment variable"),
                    "a name is letters, digits and `_`, not starting with a digit: `${DB_URL}`"
                        .to_owned(),
                ));
            }
            match (lookup(name).filter(|v| !v.is_empty() || default.is_none()), default) {
                (Some(v), _) => out.push_str(&v),
                (None, Some(dflt)) => out.push_str(dflt),
                (None, None) => {
                    return Err((
                        format!("`${{{name}}}` is not set in the daemon's environment"),
                        format!(
                            "set {name} where the daemon starts (systemd: `Environment=` or \
                             `EnvironmentFile=` in `systemctl edit gatehouse`; Kubernetes: \
                             `env` or `envFrom` of the container), or give a default: \
                             `${{{name}:-VALUE}}`"
                        ),
                    ));
                }
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(Some(out))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "DB" => Some("postgres://db".to_owned()),
            "EMPTY" => Some(String::new()),
            "N" => Some("16".to_owned()),
            "WEIRD" => Some("a${b}".to_owned()),
            _ => None,
        }
    }

    #[test]
    fn references_are_replaced_and_the_rest_left_alone() {
        for (input, want) in [
            ("${DB}", Some("postgres://db")),
            ("url=${DB}/x", Some("url=postgres://db/x")),
            ("${UNSET:-fallback}", Some("fallback")),
            ("${EMPTY:-fallback}", Some("fallback")),
            ("${EMPTY}", Some("")),
            ("${DB:-unused}", Some("postgres://db")),
            ("${UNSET:-}", Some("")),
            ("$${DB}", Some("${DB}")),
            ("${WEIRD}", Some("a${b}")),
            ("pa$$word", None),
            ("cost: $5", None),
            ("$ {DB}", None),
        ] {
            assert_eq!(substitute(input, &env).unwrap().as_deref(), want, "{input}");
        }
    }

    #[test]
    fn what_cannot_be_replaced_says_how_to_fix_it() {
        for (input, message, hint) in [
            ("${UNSET}", "`${UNSET}` is not set in the daemon's environment", "`${UNSET:-VALUE}`"),
            ("x${DB", "`${` without its closing `}`", "`$${` is a literal"),
            ("${1X}", "`${1X}` does not name an environment variable", "letters, digits"),
            ("${}", "`${}` does not name", "letters"),
        ] {
            let (m, h) = substitute(input, &env).unwrap_err();
            assert!(m.contains(message), "{input}: {m}");
            assert!(h.contains(hint), "{input}: {h}");
        }
    }

    #[test]
    fn a_whole_reference_takes_the_type_of_its_value() {
        for (text, want) in [
            ("16", Value::Int(16, "16".into())),
            ("on", Value::Bool(true, "on".into())),
            ("1.5", Value::Float(1.5, "1.5".into())),
            ("127.0.0.1:8080", Value::Str("127.0.0.1:8080".into())),
            ("10MiB", Value::Str("10MiB".into())),
            ("inf", Value::Str("inf".into())),
        ] {
            assert_eq!(typed(text.to_owned()), want, "{text}");
        }
        assert!(is_one_reference("${N}"));
        assert!(!is_one_reference("${N}x"));
        assert!(!is_one_reference("${A}${B}"));
    }
}
