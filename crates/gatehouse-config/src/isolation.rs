//! An alias's `isolation` and the keys of its worker processes (`processes`, `user`,
//! `group`, `maximum_requests`, `memory_limit`), like mod_wsgi's `WSGIDaemonProcess`.
//!
//! ```yaml
//! - url: /crashy
//!   path: target/release/libcrashy.so
//!   isolation: process      # `in-process` (the default) or `process`
//!   processes: 2            # worker processes, 1..=64 (default 2)
//!   threads: 4              # app threads per worker
//!   user: www-data          # run the workers as this user (the daemon must start as root)
//!   group: www-data         # ... and group (default: the user's primary group)
//!   maximum_requests: 10000 # recycle a worker after this many requests
//!   memory_limit: 512MiB    # recycle a worker whose resident memory passes this
//! ```

use crate::diagnostic::Diags;
use crate::limits::count;
use crate::validate::{Fields, size_value, text_value};
use crate::{Dispatch, Isolation, ProcessSettings};

/// `processes` when not written.
pub const DEFAULT_PROCESSES: usize = 2;
/// The largest accepted `processes`.
pub const MAX_PROCESSES: usize = 64;

/// The keys that only mean something with `isolation: process`.
const PROCESS_KEYS: &[&str] = &["processes", "user", "group", "maximum_requests", "memory_limit"];

/// Reads an alias's isolation keys; `dispatch` is the alias's (inline cannot be isolated).
pub(crate) fn read(f: &Fields<'_>, dispatch: Dispatch, d: &mut Diags) -> Isolation {
    let mode = f.get("isolation").and_then(|n| {
        let text = text_value(n, "isolation", d)?;
        match text {
            "in-process" => Some(false),
            "process" => Some(true),
            other => {
                d.error_hint(
                    n.pos,
                    format!("`isolation` must be `in-process` or `process`, found `{other}`"),
                    "`process` runs the alias's apps in worker processes (a crash fails only their \
                     requests); `in-process` (the default) runs them in the daemon, fastest",
                );
                None
            }
        }
    });
    if mode != Some(true) {
        // Unknown or in-process: the process keys are errors (unless the mode itself was).
        if mode == Some(false) || f.get("isolation").is_none() {
            for key in PROCESS_KEYS {
                if let Some(n) = f.get(key) {
                    d.error_hint(
                        n.pos,
                        format!(
                            "`{key}` applies to worker processes, and this alias runs in-process"
                        ),
                        "add `isolation: process` to the alias, or remove the key",
                    );
                }
            }
        }
        return Isolation::InProcess;
    }
    // Only the alias's own `dispatch: inline` is an error: an inherited one does not apply
    // to an isolated alias (see `alias::one`).
    if let (Dispatch::Inline, Some(n)) = (dispatch, f.get("dispatch")) {
        d.error_hint(
            n.pos,
            "`dispatch: inline` runs apps on the daemon's HTTP workers, which `isolation: process` rules out",
            "remove `dispatch: inline` from this alias (or write `dispatch: pool`)",
        );
    }
    let processes = f
        .get("processes")
        .and_then(|n| count(n, "processes", 1, MAX_PROCESSES as u64, d))
        .map_or(DEFAULT_PROCESSES, |n| n as usize);
    let name = |key: &str, d: &mut Diags| {
        let n = f.get(key)?;
        let text = text_value(n, key, d)?;
        let valid = !text.is_empty()
            && text.len() <= 64
            && !text.starts_with('-')
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-$".contains(&b));
        if !valid {
            d.error_hint(
                n.pos,
                format!("`{key}` must be a {key} name or a number, found `{text}`"),
                format!("write an existing {key}, like `www-data`"),
            );
            return None;
        }
        Some(text.to_owned())
    };
    let user = name("user", d);
    let group = name("group", d);
    let maximum_requests = f
        .get("maximum_requests")
        .and_then(|n| count(n, "maximum_requests", 1, u64::from(u32::MAX), d));
    let memory_limit = f.get("memory_limit").and_then(|n| {
        let bytes = size_value(n, "memory_limit", d)?;
        if bytes < 16 * 1024 * 1024 {
            d.error_hint(
                n.pos,
                format!("`memory_limit` must be at least 16MiB, found {bytes} bytes"),
                "a worker process needs a few MiB before any app runs; write e.g. `512MiB`",
            );
            return None;
        }
        Some(bytes)
    });
    Isolation::Process(ProcessSettings { processes, user, group, maximum_requests, memory_limit })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::testutil::{Expected, check_errors_table, fixture};
    use crate::{Isolation, ProcessSettings};

    fn alias(keys: &str) -> String {
        format!("aliases:\n  - url: /a\n    path: lib/app.so\n{keys}")
    }

    #[test]
    fn defaults_and_values() {
        let fx = fixture();
        let c = fx.ok(&alias("")).config;
        assert_eq!(c.aliases[0].isolation, Isolation::InProcess);
        let c = fx.ok(&alias("    isolation: process\n")).config;
        assert_eq!(
            c.aliases[0].isolation,
            Isolation::Process(ProcessSettings {
                processes: 2,
                user: None,
                group: None,
                maximum_requests: None,
                memory_limit: None
            })
        );
        // A global `dispatch: inline` is not an isolated alias's.
        let c = fx.ok(&format!("dispatch: inline\n{}", alias("    isolation: process\n"))).config;
        assert_eq!(c.aliases[0].dispatch, crate::Dispatch::Pool);
        let c = fx
            .ok(&alias(
                "    isolation: process\n    processes: 3\n    threads: 2\n    user: www-data\n    \
                 group: \"33\"\n    maximum_requests: 100\n    memory_limit: 64MiB\n",
            ))
            .config;
        assert_eq!(c.aliases[0].threads, 2);
        assert_eq!(
            c.aliases[0].isolation,
            Isolation::Process(ProcessSettings {
                processes: 3,
                user: Some("www-data".into()),
                group: Some("33".into()),
                maximum_requests: Some(100),
                memory_limit: Some(64 * 1024 * 1024)
            })
        );
    }

    #[test]
    fn errors_table() {
        let cases: Vec<(String, Expected)> = vec![
            (
                alias("    isolation: thread\n"),
                &[(4, 16, "`in-process` or `process`, found `thread`")],
            ),
            (alias("    isolation: [process]\n"), &[(4, 16, "isolation")]),
            (alias("    processes: 2\n"), &[(4, 16, "`processes` applies to worker processes")]),
            (
                alias("    isolation: in-process\n    user: nobody\n    memory_limit: 1G\n"),
                &[(5, 11, "`user` applies"), (6, 19, "`memory_limit` applies")],
            ),
            (alias("    isolation: process\n    processes: 0\n"), &[(5, 16, "between 1 and 64")]),
            (alias("    isolation: process\n    processes: 65\n"), &[(5, 16, "between 1 and 64")]),
            (alias("    isolation: process\n    user: \"a b\"\n"), &[(5, 11, "a user name")]),
            (alias("    isolation: process\n    group: \"\"\n"), &[(5, 12, "a group name")]),
            (
                alias("    isolation: process\n    maximum_requests: 0\n"),
                &[(5, 23, "between 1 and")],
            ),
            (
                alias("    isolation: process\n    memory_limit: 1MiB\n"),
                &[(5, 19, "at least 16MiB")],
            ),
            (
                alias("    isolation: process\n    dispatch: inline\n"),
                &[(5, 15, "`dispatch: inline` runs apps on the daemon's HTTP workers")],
            ),
        ];
        check_errors_table(&cases);
    }
}
