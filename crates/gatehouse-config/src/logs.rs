//! The `logs` mapping: the debug-log folder (`dir`), the daemon's own log (`level`,
//! `error_log`), the access log (`access_log`), rotation (`rotate`) and the modes of what
//! the daemon creates (`dir_mode`, `file_mode`), each checked at its position.
//!
//! Relative `access_log` and `error_log` paths resolve against the logs folder (`dir`),
//! which itself resolves against the configuration file's folder.

use std::path::{Path, PathBuf};

use crate::diagnostic::Diags;
use crate::node::{Node, Value};
use crate::validate::{fields, found, path_value, resolve, size_value, text_value};
use crate::{DEFAULT_DIR_MODE, DEFAULT_FILE_MODE, DEFAULT_KEEP, DEFAULT_ROTATE_SIZE};

/// The `logs` mapping beyond `dir`: the daemon's own log, the access log, rotation and
/// the modes of created folders and files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logs {
    /// The error log's level spec in `RUST_LOG` syntax, lower-cased (`logs.level`,
    /// default `info`). A `RUST_LOG` variable in the daemon's environment wins over it.
    pub level: String,
    /// Where the daemon's own log goes (`logs.error_log`, default stderr).
    pub error_log: ErrorLog,
    /// Where the access log goes (`logs.access_log`, default the file
    /// `LOGS_DIR/access.log`).
    pub access_log: AccessLog,
    /// How every log file (debug, access, error) is rotated; `None` for `rotate: off`
    /// (default: at 10 MiB, 7 kept).
    pub rotate: Option<Rotate>,
    /// The mode of log folders the daemon creates (`logs.dir_mode`, default 0750).
    pub dir_mode: u32,
    /// The mode of log files the daemon creates (`logs.file_mode`, default 0640). Existing
    /// files that others may read are refused unless this mode lets others read.
    pub file_mode: u32,
}

impl Logs {
    /// The values used for keys that are not written, with the logs folder `logs_dir`.
    #[must_use]
    pub fn defaults(logs_dir: &Path) -> Logs {
        Logs {
            level: "info".to_owned(),
            error_log: ErrorLog::Stderr,
            access_log: AccessLog::File(logs_dir.join("access.log")),
            rotate: Some(Rotate {
                size: Some(DEFAULT_ROTATE_SIZE),
                age: None,
                keep: Some(DEFAULT_KEEP),
                compress: false,
            }),
            dir_mode: DEFAULT_DIR_MODE,
            file_mode: DEFAULT_FILE_MODE,
        }
    }
}

/// Where the access log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessLog {
    /// Nowhere (`access_log: off`).
    Off,
    /// Standard output (`access_log: stdout`): beside the error log on stderr, what
    /// `kubectl logs` and the journal show. Never rotated.
    Stdout,
    /// A file, absolute (rotated like the other logs). The default.
    File(PathBuf),
}

impl AccessLog {
    /// The file, when it is one.
    #[must_use]
    pub fn file(&self) -> Option<&PathBuf> {
        match self {
            AccessLog::File(p) => Some(p),
            AccessLog::Off | AccessLog::Stdout => None,
        }
    }
}

/// Where the daemon's own log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorLog {
    /// Standard error (under systemd: the journal). The default.
    Stderr,
    /// A file, absolute (rotated like the other logs).
    File(PathBuf),
}

/// When a log file is rotated, and what is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotate {
    /// Rotate once the file is larger than this many bytes.
    pub size: Option<u64>,
    /// Rotate once the local clock has started a new period since the file was started.
    pub age: Option<RotateAge>,
    /// How many rotated files are kept per log; `None` keeps all.
    pub keep: Option<usize>,
    /// Whether rotated files are gzipped (`FILE_rTIMESTAMP.log.gz`).
    pub compress: bool,
}

/// The period of age-based rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RotateAge {
    /// A new local day.
    Day,
    /// A new local hour.
    Hour,
    /// A new local minute (for tests and very busy logs).
    Minute,
}

/// The keys of `logs`.
pub(crate) const LOGS_KEYS: &[&str] =
    &["dir", "level", "error_log", "access_log", "rotate", "dir_mode", "file_mode"];
/// The keys of `logs.rotate`.
pub(crate) const ROTATE_KEYS: &[&str] = &["size", "age", "keep", "compress"];

/// The levels of a level spec, least verbose first.
const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

/// Reads the `logs` mapping: the logs folder and the rest. Absent keys keep their defaults
/// ([`Logs::defaults`]).
pub(crate) fn logs(n: Option<&Node>, dir: &Path, d: &mut Diags) -> (PathBuf, Logs) {
    let default_dir = dir.join("log");
    let Some(n) = n.filter(|n| n.value != Value::Null) else {
        return (default_dir.clone(), Logs::defaults(&default_dir));
    };
    let Some(f) = fields(n, "`logs`", LOGS_KEYS, d) else {
        return (default_dir.clone(), Logs::defaults(&default_dir));
    };
    let logs_dir = f
        .get("dir")
        .and_then(|n| path_value(n, "logs.dir", d))
        .map_or(default_dir, |written| resolve(dir, written));
    let mut logs = Logs::defaults(&logs_dir);
    if let Some(level) = f.get("level").and_then(|n| level_value(n, d)) {
        logs.level = level;
    }
    if let Some(n) = f.get("error_log") {
        match &n.value {
            Value::Str(s) if s == "stderr" => logs.error_log = ErrorLog::Stderr,
            _ => {
                if let Some(written) = path_value(n, "logs.error_log", d) {
                    logs.error_log = ErrorLog::File(resolve(&logs_dir, written));
                }
            }
        }
    }
    if let Some(n) = f.get("access_log") {
        match &n.value {
            Value::Bool(false, _) => logs.access_log = AccessLog::Off,
            Value::Bool(true, _) => {}
            Value::Str(s) if s == "stdout" => logs.access_log = AccessLog::Stdout,
            _ => {
                if let Some(written) = path_value(n, "logs.access_log", d) {
                    logs.access_log = AccessLog::File(resolve(&logs_dir, written));
                }
            }
        }
    }
    if let (ErrorLog::File(e), Some(a), Some(n)) =
        (&logs.error_log, logs.access_log.file(), f.get("access_log"))
        && e == a
    {
        d.error_hint(
            n.pos,
            format!("`logs.access_log` is the same file as `logs.error_log`: {}", a.display()),
            "give each log its own file, like `access.log` and `error.log`",
        );
    }
    if let Some(n) = f.get("rotate") {
        match &n.value {
            Value::Bool(false, _) => logs.rotate = None,
            _ => {
                if let Some(r) = rotate(n, d) {
                    logs.rotate = Some(r);
                }
            }
        }
    }
    if let Some(mode) = f.get("dir_mode").and_then(|n| mode_value(n, "logs.dir_mode", d)) {
        if mode & 0o700 != 0o700 {
            d.error_hint(
                f.get("dir_mode").map_or(n.pos, |n| n.pos),
                format!("`logs.dir_mode` {mode:04o} does not let the daemon itself use the folders it creates"),
                "the owner needs rwx: write 0750 (the default) or 0770",
            );
        } else if mode & 0o002 != 0 {
            d.error_hint(
                f.get("dir_mode").map_or(n.pos, |n| n.pos),
                format!("`logs.dir_mode` {mode:04o} makes log folders world-writable"),
                "anyone could then remove or replace log files: write 0750 (the default) or 0770",
            );
        } else {
            logs.dir_mode = mode;
        }
    }
    if let Some(mode) = f.get("file_mode").and_then(|n| mode_value(n, "logs.file_mode", d)) {
        if mode & 0o600 != 0o600 {
            d.error_hint(
                f.get("file_mode").map_or(n.pos, |n| n.pos),
                format!("`logs.file_mode` {mode:04o} does not let the daemon read and write its own log files"),
                "the owner needs rw: write 0640 (the default) or 0600",
            );
        } else if mode & 0o002 != 0 {
            d.error_hint(
                f.get("file_mode").map_or(n.pos, |n| n.pos),
                format!("`logs.file_mode` {mode:04o} makes log files world-writable"),
                "anyone could then forge log lines: write 0640 (the default), 0600 or 0644",
            );
        } else if mode & 0o111 != 0 {
            d.error_hint(
                f.get("file_mode").map_or(n.pos, |n| n.pos),
                format!("`logs.file_mode` {mode:04o} makes log files executable"),
                "write 0640 (the default), 0600 or 0644",
            );
        } else {
            logs.file_mode = mode;
        }
    }
    (logs_dir, logs)
}

/// `logs.rotate`: a mapping with `size` and/or `age`, `keep`, `compress`.
fn rotate(n: &Node, d: &mut Diags) -> Option<Rotate> {
    const HINT: &str = "write e.g. `rotate: {size: 10MiB, keep: 7}`, `rotate: {age: day, keep: 30, compress: true}`, or `rotate: off` to leave rotation to logrotate";
    if n.value == Value::Null {
        d.error_hint(n.pos, "`logs.rotate` is empty", HINT);
        return None;
    }
    let f = fields(n, "`logs.rotate`", ROTATE_KEYS, d)?;
    let size = f.get("size").and_then(|n| size_value(n, "logs.rotate.size", d));
    let age = f.get("age").and_then(|n| age_value(n, d));
    let keep = match f.get("keep") {
        None => Some(crate::DEFAULT_KEEP),
        Some(n) => keep_value(n, d)?,
    };
    let compress = match f.get("compress") {
        None => false,
        Some(n) => crate::validate::bool_value(n, "logs.rotate.compress", d)?,
    };
    if f.get("size").is_none() && f.get("age").is_none() {
        d.error_hint(n.pos, "`logs.rotate` needs `size`, `age` or both: when to rotate", HINT);
        return None;
    }
    if (f.get("size").is_some() && size.is_none()) || (f.get("age").is_some() && age.is_none()) {
        return None;
    }
    Some(Rotate { size, age, keep, compress })
}

fn age_value(n: &Node, d: &mut Diags) -> Option<RotateAge> {
    match text_value(n, "logs.rotate.age", d)? {
        "day" => Some(RotateAge::Day),
        "hour" => Some(RotateAge::Hour),
        "minute" => Some(RotateAge::Minute),
        other => {
            d.error_hint(
                n.pos,
                format!("`logs.rotate.age` must be `day`, `hour` or `minute`, found `{}`", other.escape_debug()),
                "a file is rotated when the local clock has started a new day (hour, minute) since the file was started",
            );
            None
        }
    }
}

/// `keep`: a count, or `all`. `Some(None)` is `all`.
fn keep_value(n: &Node, d: &mut Diags) -> Option<Option<usize>> {
    const HINT: &str =
        "write how many rotated files to keep per log (7 by default), or `all` to never delete any";
    match &n.value {
        Value::Str(s) if s == "all" => Some(None),
        Value::Int(i, _) => match usize::try_from(*i) {
            Ok(k) if k <= crate::MAX_KEEP => Some(Some(k)),
            _ => {
                d.error_hint(
                    n.pos,
                    format!(
                        "`logs.rotate.keep` must be between 0 and {}, found {i}",
                        crate::MAX_KEEP
                    ),
                    HINT,
                );
                None
            }
        },
        _ => {
            d.error_hint(
                n.pos,
                format!("`logs.rotate.keep` must be a whole number or `all`, found {}", found(n)),
                HINT,
            );
            None
        }
    }
}

/// A file mode in octal, as `chmod` takes it: `0640`, `640`, `0o640` (or quoted).
fn mode_value(n: &Node, key: &str, d: &mut Diags) -> Option<u32> {
    let hint = "write the mode in octal as for chmod, like `0640` or `0750`";
    let text = match &n.value {
        // The YAML parser may read `0770` as a float; the text as written is what counts.
        Value::Int(_, text) | Value::Float(_, text) | Value::Str(text) => text.as_str(),
        _ => {
            d.error_hint(n.pos, format!("`{key}` must be an octal mode, found {}", found(n)), hint);
            return None;
        }
    };
    match parse_mode(text) {
        Some(mode) => Some(mode),
        None => {
            d.error_hint(
                n.pos,
                format!(
                    "`{key}`: `{}` is not an octal mode from 0000 to 0777",
                    text.escape_debug()
                ),
                hint,
            );
            None
        }
    }
}

/// Parses an octal mode (`0640`, `640`, `0o640`) of at most 0777.
pub(crate) fn parse_mode(text: &str) -> Option<u32> {
    let digits = text.trim();
    let digits = digits.strip_prefix("0o").unwrap_or(digits);
    if digits.is_empty() || digits.len() > 4 || !digits.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return None;
    }
    u32::from_str_radix(digits, 8).ok().filter(|m| *m <= 0o777)
}

/// `logs.level`: a `RUST_LOG`-style spec (`info`, `warn,gatehouse::host=debug`).
fn level_value(n: &Node, d: &mut Diags) -> Option<String> {
    let text = text_value(n, "logs.level", d)?;
    match check_level_spec(text) {
        Ok(()) => Some(text.trim().to_ascii_lowercase()),
        Err(e) => {
            d.error_hint(
                n.pos,
                format!("`logs.level`: {e}"),
                "write a level (off, error, warn, info, debug, trace), optionally followed by \
                 MODULE=LEVEL pairs, comma-separated: `info` or `warn,gatehouse::host=debug`",
            );
            None
        }
    }
}

/// Checks a level spec: comma-separated `LEVEL` or `MODULE=LEVEL` items, at most one bare
/// level.
pub(crate) fn check_level_spec(text: &str) -> Result<(), String> {
    let mut bare = 0;
    let mut items = 0;
    for item in text.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        items += 1;
        let (module, level) = match item.split_once('=') {
            Some((m, l)) => (Some(m.trim()), l.trim()),
            None => (None, item),
        };
        if !LEVELS.contains(&level.to_ascii_lowercase().as_str()) {
            return Err(format!("`{}` is not a level", level.escape_debug()));
        }
        match module {
            None => bare += 1,
            Some(m) => {
                let valid = !m.is_empty()
                    && m.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':');
                if !valid {
                    return Err(format!("`{}` is not a module path", m.escape_debug()));
                }
            }
        }
    }
    if items == 0 {
        return Err("the spec is empty".to_owned());
    }
    if bare > 1 {
        return Err("more than one default level".to_owned());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{Expected, assert_has, fixture};

    #[test]
    fn values_table() {
        let fx = fixture();
        let dir = fx.tmp.path();
        let logs = dir.join("log");
        // (the `logs` mapping, check of the result)
        type Check = fn(&Path, &PathBuf, &Logs) -> bool;
        let cases: &[(&str, Check)] = &[
            ("{}", |_, d, l| *l == Logs::defaults(d)),
            ("{dir: x}", |root, d, l| {
                *d == root.join("x") && l.access_log == AccessLog::File(root.join("x/access.log"))
            }),
            ("{level: WARN}", |_, _, l| l.level == "warn"),
            ("{level: \"warn, gatehouse::host=debug\"}", |_, _, l| {
                l.level == "warn, gatehouse::host=debug"
            }),
            ("{error_log: stderr}", |_, _, l| l.error_log == ErrorLog::Stderr),
            ("{error_log: error.log}", |root, _, l| {
                l.error_log == ErrorLog::File(root.join("log/error.log"))
            }),
            ("{error_log: /var/log/g/e.log}", |_, _, l| {
                l.error_log == ErrorLog::File("/var/log/g/e.log".into())
            }),
            ("{access_log: off}", |_, _, l| l.access_log == AccessLog::Off),
            ("{access_log: stdout}", |_, _, l| l.access_log == AccessLog::Stdout),
            ("{access_log: true}", |root, _, l| {
                l.access_log == AccessLog::File(root.join("log/access.log"))
            }),
            ("{dir: /v, access_log: web/a.log}", |_, _, l| {
                l.access_log == AccessLog::File("/v/web/a.log".into())
            }),
            ("{rotate: off}", |_, _, l| l.rotate.is_none()),
            ("{rotate: {size: 1k}}", |_, _, l| {
                l.rotate
                    == Some(Rotate { size: Some(1024), age: None, keep: Some(7), compress: false })
            }),
            ("{rotate: {age: hour, keep: all, compress: yes}}", |_, _, l| {
                l.rotate
                    == Some(Rotate {
                        size: None,
                        age: Some(RotateAge::Hour),
                        keep: None,
                        compress: true,
                    })
            }),
            ("{rotate: {size: 1M, age: day, keep: 0}}", |_, _, l| {
                l.rotate
                    == Some(Rotate {
                        size: Some(1 << 20),
                        age: Some(RotateAge::Day),
                        keep: Some(0),
                        compress: false,
                    })
            }),
            ("{dir_mode: 0770, file_mode: 0600}", |_, _, l| {
                (l.dir_mode, l.file_mode) == (0o770, 0o600)
            }),
            ("{dir_mode: 700, file_mode: \"0o644\"}", |_, _, l| {
                (l.dir_mode, l.file_mode) == (0o700, 0o644)
            }),
        ];
        for (text, check) in cases {
            let c = fx.ok(&format!("aliases: []\nlogs: {text}\n")).config;
            assert!(check(dir, &c.logs_dir, &c.logs), "{text}: {:#?}", c.logs);
        }
        let defaults = fx.ok("aliases: []\n").config;
        assert_eq!(defaults.logs, Logs::defaults(&logs));
        assert_eq!(defaults.logs.level, "info");
        assert_eq!(defaults.logs.error_log, ErrorLog::Stderr);
        assert_eq!(defaults.logs.access_log, AccessLog::File(logs.join("access.log")));
        assert_eq!(
            defaults.logs.rotate,
            Some(Rotate { size: Some(10 << 20), age: None, keep: Some(7), compress: false })
        );
        assert_eq!((defaults.logs.dir_mode, defaults.logs.file_mode), (0o750, 0o640));
    }

    #[test]
    fn errors_table() {
        let cases: &[(&str, Expected)] = &[
            (
                "logs:\n  error_log: x.log\n  access_log: x.log\n",
                &[(4, 15, "`logs.access_log` is the same file as `logs.error_log`")],
            ),
            (
                "logs:\n  levl: info\n",
                &[(3, 3, "unknown key `levl` in `logs`; valid keys are: dir, level")],
            ),
            ("logs:\n  level: loud\n", &[(3, 10, "`logs.level`: `loud` is not a level")]),
            ("logs:\n  level: \"info,warn\"\n", &[(3, 10, "more than one default level")]),
            ("logs:\n  level: \"a b=info\"\n", &[(3, 10, "`a b` is not a module path")]),
            ("logs:\n  level: \",\"\n", &[(3, 10, "the spec is empty")]),
            ("logs:\n  level: [info]\n", &[(3, 10, "`logs.level` must be a string, found a list")]),
            ("logs:\n  error_log: \"\"\n", &[(3, 14, "`logs.error_log` must not be empty")]),
            ("logs:\n  access_log: [a]\n", &[(3, 15, "`logs.access_log` must be a string")]),
            ("logs:\n  rotate: yes\n", &[(3, 11, "`logs.rotate` must be a mapping of keys")]),
            ("logs:\n  rotate:\n", &[(3, 9, "`logs.rotate` is empty")]),
            ("logs:\n  rotate: {keep: 3}\n", &[(3, 11, "needs `size`, `age` or both")]),
            (
                "logs:\n  rotate: {size: 0}\n",
                &[(3, 18, "`logs.rotate.size` must be at least 1 byte")],
            ),
            (
                "logs:\n  rotate: {age: week}\n",
                &[(3, 17, "must be `day`, `hour` or `minute`, found `week`")],
            ),
            (
                "logs:\n  rotate: {size: 1k, keep: -1}\n",
                &[(3, 28, "between 0 and 100000, found -1")],
            ),
            (
                "logs:\n  rotate: {size: 1k, keep: some}\n",
                &[(3, 28, "a whole number or `all`, found a string `some`")],
            ),
            (
                "logs:\n  rotate: {size: 1k, compress: 1}\n",
                &[(3, 32, "`logs.rotate.compress` must be true or false")],
            ),
            (
                "logs:\n  rotate: {size: 1k, every: day}\n",
                &[(3, 22, "unknown key `every` in `logs.rotate`")],
            ),
            ("logs:\n  dir_mode: 0780\n", &[(3, 13, "`0780` is not an octal mode")]),
            (
                "logs:\n  dir_mode: 01777\n",
                &[(3, 13, "`01777` is not an octal mode from 0000 to 0777")],
            ),
            (
                "logs:\n  dir_mode: 0640\n",
                &[(3, 13, "does not let the daemon itself use the folders")],
            ),
            ("logs:\n  dir_mode: 0777\n", &[(3, 13, "makes log folders world-writable")]),
            ("logs:\n  file_mode: 0400\n", &[(3, 14, "does not let the daemon read and write")]),
            ("logs:\n  file_mode: 0666\n", &[(3, 14, "makes log files world-writable")]),
            ("logs:\n  file_mode: 0750\n", &[(3, 14, "makes log files executable")]),
            ("logs:\n  file_mode: yes\n", &[(3, 14, "must be an octal mode, found a boolean")]),
        ];
        let fx = fixture();
        for (text, expected) in cases {
            let text = format!("aliases: []\n{text}");
            let errors = fx.errors(&text);
            for &(line, column, needle) in *expected {
                assert_has(&errors, line, column, needle);
            }
            assert_eq!(errors.len(), expected.len(), "for {text:?}: {errors:#?}");
        }
    }

    #[test]
    fn modes_and_level_specs() {
        for (text, want) in [
            ("0640", Some(0o640)),
            ("640", Some(0o640)),
            ("0o750", Some(0o750)),
            ("0", Some(0)),
            ("0777", Some(0o777)),
            ("1000", None),
            ("0888", None),
            ("", None),
            ("-640", None),
            ("06400", None),
        ] {
            assert_eq!(parse_mode(text), want, "{text}");
        }
        for (spec, ok) in [
            ("info", true),
            ("Info", true),
            ("warn,gatehouse=debug", true),
            ("gatehouse::host=trace, actix_http=off", true),
            ("info,", true),
            ("verbose", false),
            ("info,debug", false),
            ("=info", false),
            ("a-b=info", false),
            ("gatehouse=loud", false),
        ] {
            assert_eq!(check_level_spec(spec).is_ok(), ok, "{spec}");
        }
    }
}
