//! The limits on every request and the plugin trust settings: the keys that exist at the top
//! level (as defaults) and per alias (as overrides), their value types (counts, durations)
//! and their defaults.
//!
//! Apache's names are the model: `max_headers` is `LimitRequestFields`, `max_header_size`
//! `LimitRequestFieldSize`, `header_timeout` / `body_timeout` / `body_timeout_max` /
//! `body_min_rate` mod_reqtimeout's `header=`, `body=20-60` and `MinRate=`, `timeout`
//! mod_wsgi's `request-timeout`.

use std::time::Duration;

use crate::diagnostic::Diags;
use crate::node::{Node, Value};
use crate::validate::{Fields, bool_value, found, text_value};

/// The most headers a request may have: actix-web's parser stops at 96.
pub const MAX_HEADERS_CEILING: usize = 96;
/// The longest header line accepted at most (actix-web's request head buffer is 32 KiB).
pub const MAX_HEADER_SIZE_CEILING: usize = 16384;
/// The longest duration any timeout may be set to.
const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);

/// The limits applied to each request of an alias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most header fields (`max_headers`, default 96); past it 400.
    pub max_headers: usize,
    /// Longest header line, name and value (`max_header_size`, default 8190 as Apache);
    /// past it 400.
    pub max_header_size: usize,
    /// How long the app may take to start its reply (`timeout`, default 60 s); past it the
    /// client gets 504 and the app's thread is counted busy until the app returns. Also how
    /// long a streamed write may wait on a client that takes nothing: past it the write
    /// fails as if the client had left, and the connection is cut.
    pub timeout: Duration,
    /// How long a client may send nothing of a request body, and the window over which its
    /// rate is measured (`body_timeout`, default 20 s); past it 408.
    pub body_timeout: Duration,
    /// The least rate a request body must keep over every `body_timeout` window once its
    /// first `body_timeout` is over, in bytes per second (`body_min_rate`, default 500; 0:
    /// `body_timeout` is a fixed deadline for the whole body).
    pub body_min_rate: u64,
    /// The longest a request body may take however fast it comes (`body_timeout_max`,
    /// default 60 s, mod_reqtimeout's `body=20-60`): past it 408, and the app's read fails.
    pub body_timeout_max: Duration,
    /// Requests that may wait for a busy pool before 503 (`queue`, default 128 per thread).
    pub queue: Option<usize>,
    /// WebSockets the alias may hold open at once (`max_websockets`, default 1000); an
    /// accept past it is answered 503.
    pub max_websockets: usize,
    /// The largest WebSocket message a client may send, reassembled from its fragments
    /// (`websocket_max_message`, default 1 MiB); past it the socket is closed with 1009.
    pub websocket_max_message: u64,
    /// How long a WebSocket may carry nothing either way (`websocket_idle_timeout`,
    /// default 5 min); then it is closed with 1001.
    pub websocket_idle_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_headers: MAX_HEADERS_CEILING,
            max_header_size: 8190,
            timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(20),
            body_min_rate: 500,
            body_timeout_max: Duration::from_secs(60),
            queue: None,
            max_websockets: 1000,
            websocket_max_message: 1 << 20,
            websocket_idle_timeout: Duration::from_secs(300),
        }
    }
}

/// Reads the limit keys present in `f` over `base` (the defaults, or the global values).
pub(crate) fn read(f: &Fields<'_>, base: Limits, d: &mut Diags) -> Limits {
    let mut l = base;
    if let Some(v) =
        f.get("max_headers").and_then(|n| count(n, "max_headers", 1, MAX_HEADERS_CEILING as u64, d))
    {
        l.max_headers = v as usize;
    }
    if let Some(v) = f
        .get("max_header_size")
        .and_then(|n| count(n, "max_header_size", 64, MAX_HEADER_SIZE_CEILING as u64, d))
    {
        l.max_header_size = v as usize;
    }
    if let Some(v) = f.get("timeout").and_then(|n| duration(n, "timeout", d)) {
        l.timeout = v;
    }
    if let Some(v) = f.get("body_timeout").and_then(|n| duration(n, "body_timeout", d)) {
        l.body_timeout = v;
    }
    if let Some(v) = f.get("body_min_rate").and_then(|n| count(n, "body_min_rate", 0, 1 << 40, d)) {
        l.body_min_rate = v;
    }
    let max = f.get("body_timeout_max");
    if let Some(v) = max.and_then(|n| duration(n, "body_timeout_max", d)) {
        l.body_timeout_max = v;
    }
    // The cap is over the whole body, the initial timeout a part of it (mod_reqtimeout refuses
    // `body=60-20` too). Reported where this mapping wrote one of the two.
    if l.body_timeout_max < l.body_timeout
        && let Some(n) = max.or_else(|| f.get("body_timeout"))
    {
        d.error_hint(
            n.pos,
            format!(
                "`body_timeout_max` ({:?}) is shorter than `body_timeout` ({:?})",
                l.body_timeout_max, l.body_timeout
            ),
            "set `body_timeout_max` to at least `body_timeout`: it caps the whole body",
        );
    }
    if let Some(v) = f.get("queue").and_then(|n| count(n, "queue", 1, 1_000_000, d)) {
        l.queue = Some(v as usize);
    }
    if let Some(v) =
        f.get("max_websockets").and_then(|n| count(n, "max_websockets", 0, 1_000_000, d))
    {
        l.max_websockets = v as usize;
    }
    if let Some(n) = f.get("websocket_max_message")
        && let Some(v) = crate::validate::size_value(n, "websocket_max_message", d)
    {
        if v > MAX_WEBSOCKET_MESSAGE {
            d.error_hint(
                n.pos,
                format!("`websocket_max_message` must be at most 1GiB, found {v} bytes"),
                "a message is held whole in memory before the app gets it: keep it small",
            );
        } else {
            l.websocket_max_message = v;
        }
    }
    if let Some(v) =
        f.get("websocket_idle_timeout").and_then(|n| duration(n, "websocket_idle_timeout", d))
    {
        l.websocket_idle_timeout = v;
    }
    l
}

/// The largest `websocket_max_message` accepted.
const MAX_WEBSOCKET_MESSAGE: u64 = 1 << 30;

/// `check_plugins` (default true).
pub(crate) fn check_plugins(f: &Fields<'_>, base: bool, d: &mut Diags) -> bool {
    f.get("check_plugins").and_then(|n| bool_value(n, "check_plugins", d)).unwrap_or(base)
}

/// A whole number in `min..=max`.
pub(crate) fn count(n: &Node, key: &str, min: u64, max: u64, d: &mut Diags) -> Option<u64> {
    let hint = format!("write a whole number from {min} to {max}");
    let value = match &n.value {
        Value::Int(i, _) => u64::try_from(*i).ok().filter(|v| (min..=max).contains(v)),
        _ => {
            d.error_hint(
                n.pos,
                format!("`{key}` must be a whole number, found {}", found(n)),
                hint,
            );
            return None;
        }
    };
    if value.is_none() {
        d.error_hint(
            n.pos,
            format!("`{key}` must be between {min} and {max}, found {}", n.text().unwrap_or("?")),
            hint,
        );
    }
    value
}

/// A duration: `30s`, `500ms`, `2m`, `1h`, or a whole number of seconds; more than zero and
/// at most a day.
/// Like [`duration`], but `0` (as `0`, `0s` or `0ms`) is a valid value: none.
pub(crate) fn duration_or_zero(n: &Node, key: &str, d: &mut Diags) -> Option<Duration> {
    let zero = matches!(&n.value, Value::Int(0, _))
        || n.text().is_some_and(|t| matches!(t.trim(), "0" | "0s" | "0ms"));
    if zero { Some(Duration::ZERO) } else { duration(n, key, d) }
}

pub(crate) fn duration(n: &Node, key: &str, d: &mut Diags) -> Option<Duration> {
    const HINT: &str =
        "write a duration like `30s`, `500ms`, `2m` or `1h` (a bare number is seconds)";
    let parsed = match &n.value {
        Value::Int(i, _) => {
            u64::try_from(*i).map(Duration::from_secs).map_err(|_| "it is negative".to_owned())
        }
        Value::Str(_) => parse_duration(text_value(n, key, d)?),
        _ => Err(format!("found {}", found(n))),
    };
    match parsed {
        Ok(v) if !v.is_zero() && v <= MAX_DURATION => Some(v),
        Ok(v) => {
            d.error_hint(
                n.pos,
                format!("`{key}` must be more than 0 and at most 24h, found {v:?}"),
                HINT,
            );
            None
        }
        Err(why) => {
            d.error_hint(n.pos, format!("`{key}` is not a duration: {why}"), HINT);
            None
        }
    }
}

/// Parses `30s`, `500ms`, `2m`, `1h`, `45` (seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(end);
    let n: u64 = digits.parse().map_err(|_| format!("`{text}` must start with a whole number"))?;
    let ms = match unit.trim() {
        "" | "s" | "sec" => n.checked_mul(1000),
        "ms" => Some(n),
        "m" | "min" => n.checked_mul(60_000),
        "h" => n.checked_mul(3_600_000),
        other => return Err(format!("`{other}` is not a unit; use ms, s, m or h")),
    };
    ms.map(Duration::from_millis).ok_or_else(|| format!("`{text}` is too large"))
}

/// `sha256`: 64 hexadecimal digits, returned lower-case.
pub(crate) fn sha256(n: &Node, d: &mut Diags) -> Option<String> {
    let text = text_value(n, "sha256", d)?;
    let hex = text.trim().to_ascii_lowercase();
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(hex);
    }
    d.error_hint(
        n.pos,
        format!(
            "`sha256` must be 64 hexadecimal digits, found {} characters",
            text.chars().count()
        ),
        "write the output of `sha256sum FILE` (its first field)",
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{Expected, check_errors_table, fixture};

    #[test]
    fn durations() {
        for (text, ms) in [
            ("30s", 30_000),
            ("500ms", 500),
            ("2m", 120_000),
            ("1h", 3_600_000),
            ("45", 45_000),
            (" 7 s ", 7000),
        ] {
            assert_eq!(parse_duration(text), Ok(Duration::from_millis(ms)), "{text}");
        }
        for text in ["", "s", "1.5s", "10 parsecs", "99999999999999999999h"] {
            assert!(parse_duration(text).is_err(), "{text}");
        }
    }

    #[test]
    fn errors_table() {
        let cases: &[(&str, Expected)] = &[
            ("aliases: []\nmax_headers: 0\n", &[(2, 14, "between 1 and 96, found 0")]),
            ("aliases: []\nmax_headers: 200\n", &[(2, 14, "between 1 and 96, found 200")]),
            (
                "aliases: []\nmax_header_size: 8k\n",
                &[(2, 18, "must be a whole number, found a string")],
            ),
            ("aliases: []\ntimeout: 0\n", &[(2, 10, "more than 0")]),
            ("aliases: []\ntimeout: 2d\n", &[(2, 10, "`d` is not a unit")]),
            ("aliases: []\ntimeout: 25h\n", &[(2, 10, "at most 24h")]),
            ("aliases: []\nbody_timeout: [1]\n", &[(2, 15, "not a duration: found a list")]),
            ("aliases: []\nbody_min_rate: -1\n", &[(2, 16, "between 0 and")]),
            ("aliases: []\nbody_timeout_max: 0\n", &[(2, 19, "more than 0")]),
            (
                "aliases: []\nbody_timeout: 30s\nbody_timeout_max: 20s\n",
                &[(3, 19, "`body_timeout_max` (20s) is shorter than `body_timeout` (30s)")],
            ),
            (
                "aliases:\n  - url: /a\n    path: lib/app.so\n    body_timeout: 2m\n",
                &[(4, 19, "shorter than `body_timeout` (120s)")],
            ),
            ("aliases: []\nheader_timeout: soon\n", &[(2, 17, "must start with a whole number")]),
            ("aliases: []\ncheck_plugins: maybe\n", &[(2, 16, "true or false")]),
            (
                "aliases:\n  - url: /a\n    path: lib/app.so\n    sha256: abc\n",
                &[(4, 13, "64 hexadecimal digits, found 3")],
            ),
            (
                "aliases:\n  - url: /a\n    path: apps/\n    sha256: 0000000000000000000000000000000000000000000000000000000000000000\n",
                &[(4, 13, "`sha256` pins one file")],
            ),
            (
                "aliases:\n  - url: /a\n    path: lib/app.so\n    queue: many\n",
                &[(4, 12, "whole number")],
            ),
            ("aliases: []\nmax_websockets: -1\n", &[(2, 17, "between 0 and 1000000")]),
            ("aliases: []\nwebsocket_max_message: 2GiB\n", &[(2, 24, "at most 1GiB")]),
            ("aliases: []\nwebsocket_max_message: 0\n", &[(2, 24, "at least 1 byte")]),
            (
                "aliases:\n  - url: /a\n    path: lib/app.so\n    websocket_idle_timeout: 0\n",
                &[(4, 29, "more than 0")],
            ),
        ];
        check_errors_table(cases);
    }

    #[test]
    fn defaults_and_overrides() {
        let fx = fixture();
        let c = fx.ok("aliases:\n  - url: /a\n    path: lib/app.so\n").config;
        assert_eq!(c.limits, Limits::default());
        assert_eq!(c.header_timeout, Duration::from_secs(10));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(30));
        assert!(c.check_plugins && c.aliases[0].check_plugins);
        assert_eq!(c.aliases[0].limits, Limits::default());
        let c = fx
            .ok("timeout: 5s\nmax_headers: 50\nheader_timeout: 2s\ncheck_plugins: off\nqueue: 10\naliases:\n  - url: /a\n    path: lib/app.so\n    timeout: 1m\n    body_timeout: 3s\n    body_min_rate: 0\n    sha256: ABCDEF0123456789abcdef0123456789ABCDEF0123456789abcdef0123456789\n  - url: /b\n    path: lib/app.so\n    check_plugins: on\n")
            .config;
        assert_eq!(c.header_timeout, Duration::from_secs(2));
        let (a, b) = (&c.aliases[0], &c.aliases[1]);
        assert_eq!(a.limits.timeout, Duration::from_secs(60));
        assert_eq!((a.limits.max_headers, a.limits.queue), (50, Some(10)));
        assert_eq!((a.limits.body_timeout, a.limits.body_min_rate), (Duration::from_secs(3), 0));
        assert_eq!(a.limits.body_timeout_max, Duration::from_secs(60));
        let c = fx
            .ok("max_websockets: 5\naliases:\n  - url: /a\n    path: lib/app.so\n    websocket_max_message: 64KiB\n    websocket_idle_timeout: 1m\n  - url: /b\n    path: lib/app.so\n    max_websockets: 0\n")
            .config;
        let (w, v) = (&c.aliases[0].limits, &c.aliases[1].limits);
        assert_eq!((w.max_websockets, w.websocket_max_message), (5, 64 << 10));
        assert_eq!(w.websocket_idle_timeout, Duration::from_secs(60));
        assert_eq!((v.max_websockets, v.websocket_max_message), (0, 1 << 20));
        let c = fx
            .ok("body_timeout_max: 5m\naliases:\n  - url: /a\n    path: lib/app.so\n  - url: /b\n    path: lib/app.so\n    body_timeout_max: 2s\n    body_timeout: 1s\n")
            .config;
        assert_eq!(c.limits.body_timeout_max, Duration::from_secs(300));
        assert_eq!(c.aliases[0].limits.body_timeout_max, Duration::from_secs(300));
        assert_eq!(c.aliases[1].limits.body_timeout_max, Duration::from_secs(2));
        assert_eq!(b.limits.timeout, Duration::from_secs(5));
        assert_eq!(
            a.sha256.as_deref(),
            Some("abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789")
        );
        assert!(!a.check_plugins && b.check_plugins);
    }
}
