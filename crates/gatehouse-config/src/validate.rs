//! The validator: walks the YAML [`Node`] tree into a [`Config`], collecting every
//! error it can find in one pass (unknown and duplicate keys, wrong types, bad values),
//! each at the position of the offending node. Owns the top-level keys, `listen`,
//! and the shared helpers for reading mappings and typed scalars; the aliases
//! themselves are in `alias`, the `logs` mapping in `logs`.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use crate::alias::{self, Globals};
use crate::diagnostic::{Diags, Pos};
use crate::handler;
use crate::node::{Node, Value};
use crate::size::parse_size;
use crate::{Config, DEFAULT_MAX_BODY, DEFAULT_THREADS, MAX_THREADS};

/// The keys of the top level, in the order the docs list them.
pub(crate) const TOP_KEYS: &[&str] = &[
    "listen",
    "develop_mode",
    "max_body",
    "max_upload",
    "upload_dir",
    "upload_budget",
    "pass_authorization",
    "trace_enable",
    "error_documents",
    "error_override",
    "static",
    "threads",
    "dispatch",
    "reloading",
    "cache_dir",
    "pid_file",
    "max_headers",
    "max_header_size",
    "header_timeout",
    "shutdown_timeout",
    "drain_delay",
    "keep_alive",
    "max_connections",
    "timeout",
    "body_timeout",
    "body_min_rate",
    "body_timeout_max",
    "queue",
    "max_websockets",
    "websocket_max_message",
    "websocket_idle_timeout",
    "check_plugins",
    "trusted_proxies",
    "metrics",
    "logs",
    "handlers",
    "aliases",
];
/// Builds the configuration from the document's root node. Always returns a value
/// (defaults stand in for whatever was wrong); it is only meaningful when `d` holds
/// no errors afterwards. `accounts` resolves the aliases' `user` and `group`.
pub(crate) fn build(
    root: &Node,
    file: &Path,
    dir: &Path,
    accounts: &dyn crate::accounts::Accounts,
    d: &mut Diags,
) -> Config {
    let mut config = Config {
        file: file.to_path_buf(),
        dir: dir.to_path_buf(),
        listen: vec![default_listen()],
        text: std::sync::Arc::from(""),
        tls: Vec::new(),
        keep_alive: crate::DEFAULT_KEEP_ALIVE,
        max_connections: crate::DEFAULT_MAX_CONNECTIONS,
        trusted_proxies: Vec::new(),
        metrics: None,
        develop_mode: false,
        max_body: DEFAULT_MAX_BODY,
        max_upload: DEFAULT_MAX_BODY,
        upload_dir: std::env::temp_dir(),
        upload_budget: crate::DEFAULT_UPLOAD_BUDGET,
        pass_authorization: false,
        trace_enable: false,
        error_documents: crate::ErrorDocuments::new(),
        error_override: false,
        statics: Vec::new(),
        threads: DEFAULT_THREADS,
        dispatch: crate::Dispatch::Auto,
        reloading: true,
        limits: crate::Limits::default(),
        header_timeout: std::time::Duration::from_secs(10),
        shutdown_timeout: std::time::Duration::from_secs(30),
        drain_delay: std::time::Duration::ZERO,
        check_plugins: true,
        cache_dir: dir.join("var/cache"),
        pid_file: dir.join("var/run/gatehouse.pid"),
        logs_dir: dir.join("log"),
        logs: crate::Logs::defaults(&dir.join("log")),
        handlers: Vec::new(),
        python_home: None,
        aliases: Vec::new(),
    };
    // An empty file is an empty mapping (and so misses `aliases`).
    let empty = Node { pos: root.pos, value: Value::Map(Vec::new()) };
    let root = if root.value == Value::Null { &empty } else { root };
    let Some(f) = fields(root, "the top level", TOP_KEYS, d) else {
        return config;
    };
    if let Some(n) = f.get("listen") {
        (config.listen, config.tls) = listen(n, dir, d);
    }
    if let Some(t) = f.get("keep_alive").and_then(|n| crate::limits::duration(n, "keep_alive", d)) {
        config.keep_alive = t;
    }
    if let Some(m) = f.get("max_connections").and_then(|n| crate::net::max_connections(n, d)) {
        config.max_connections = m;
    }
    if let Some(n) = f.get("trusted_proxies") {
        config.trusted_proxies = crate::net::trusted_proxies(n, d);
    }
    config.metrics = f.get("metrics").and_then(|n| crate::net::metrics(n, d));
    if let Some(b) = f.get("develop_mode").and_then(|n| bool_value(n, "develop_mode", d)) {
        config.develop_mode = b;
    }
    if let Some(size) = f.get("max_body").and_then(|n| size_value(n, "max_body", d)) {
        config.max_body = size;
    }
    // `max_upload` defaults to `max_body`: one file can be as large as the whole body.
    config.max_upload =
        f.get("max_upload").and_then(|n| size_value(n, "max_upload", d)).unwrap_or(config.max_body);
    let max_upload_set = f.get("max_upload").is_some();
    if let Some(written) = f.get("upload_dir").and_then(|n| path_value(n, "upload_dir", d)) {
        config.upload_dir = resolve(dir, written);
    }
    if let Some(size) = f.get("upload_budget").and_then(|n| size_value(n, "upload_budget", d)) {
        config.upload_budget = size;
    }
    if let Some(b) =
        f.get("pass_authorization").and_then(|n| bool_value(n, "pass_authorization", d))
    {
        config.pass_authorization = b;
    }
    if let Some(b) = f.get("trace_enable").and_then(|n| bool_value(n, "trace_enable", d)) {
        config.trace_enable = b;
    }
    if let Some(n) = f.get("error_documents") {
        config.error_documents = crate::errors::documents(n, dir, d);
    }
    if let Some(b) = f.get("error_override").and_then(|n| bool_value(n, "error_override", d)) {
        config.error_override = b;
    }
    if let Some(n) = f.get("static") {
        config.statics = crate::statics::read(n, dir, d);
    }
    if let Some(t) = f.get("threads").and_then(|n| threads_value(n, "threads", d)) {
        config.threads = t;
    }
    if let Some(v) = f.get("dispatch").and_then(|n| crate::alias::dispatch_value(n, "dispatch", d))
    {
        config.dispatch = v;
    }
    if let Some(b) = f.get("reloading").and_then(|n| bool_value(n, "reloading", d)) {
        config.reloading = b;
    }
    if let Some(written) = f.get("cache_dir").and_then(|n| path_value(n, "cache_dir", d)) {
        config.cache_dir = resolve(dir, written);
    }
    if let Some(written) = f.get("pid_file").and_then(|n| path_value(n, "pid_file", d)) {
        config.pid_file = resolve(dir, written);
    }
    config.limits = crate::limits::read(&f, config.limits, d);
    if let Some(t) =
        f.get("header_timeout").and_then(|n| crate::limits::duration(n, "header_timeout", d))
    {
        config.header_timeout = t;
    }
    if let Some(t) =
        f.get("shutdown_timeout").and_then(|n| crate::limits::duration(n, "shutdown_timeout", d))
    {
        config.shutdown_timeout = t;
    }
    if let Some(t) =
        f.get("drain_delay").and_then(|n| crate::limits::duration_or_zero(n, "drain_delay", d))
    {
        config.drain_delay = t;
    }
    config.check_plugins = crate::limits::check_plugins(&f, config.check_plugins, d);
    (config.logs_dir, config.logs) = crate::logs::logs(f.get("logs"), dir, d);

    let globals = Globals {
        develop_mode: config.develop_mode,
        max_body: config.max_body,
        max_upload: max_upload_set.then_some(config.max_upload),
        pass_authorization: config.pass_authorization,
        threads: config.threads,
        dispatch: config.dispatch,
        reloading: config.reloading,
        limits: config.limits,
        check_plugins: config.check_plugins,
        error_documents: config.error_documents.clone(),
        error_override: config.error_override,
    };
    let handlers = f.get("handlers").map(|n| handler::handlers(n, dir, d)).unwrap_or_default();
    let mut homes: Vec<(PathBuf, Pos)> =
        handlers.iter().filter_map(|h| h.python_home.clone()).collect();
    config.handlers = handlers.into_iter().map(|h| h.handler).collect();
    match f.get("aliases") {
        None => d.error_hint(
            root.pos,
            "missing required key `aliases`",
            "add `aliases: []` (no apps yet) or a list of `- url: /myapp` / `path: ...` entries",
        ),
        Some(Node { value: Value::Seq(items), .. }) => {
            let (aliases, alias_homes) =
                alias::aliases(items, &globals, &config.handlers, dir, accounts, d);
            config.aliases = aliases;
            homes.extend(alias_homes);
        }
        Some(n) => d.error_hint(
            n.pos,
            format!("`aliases` must be a list, found {}", found(n)),
            "write `aliases: []` for none, or one `- url: ...` entry per alias",
        ),
    }
    config.python_home = handler::python_home_conflicts(&homes, d);
    config
}

/// `127.0.0.1:8080`.
pub(crate) fn default_listen() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 8080))
}

/// The keys of a `listen` entry written as a mapping.
const LISTEN_KEYS: &[&str] = &["address", "tls"];
/// The keys of its `tls`.
const TLS_KEYS: &[&str] = &["cert", "key"];

/// `listen`: a list whose entries are `IP:PORT` strings (plain HTTP) or mappings
/// `{address: IP:PORT, tls: {cert: PEM, key: PEM}}` (HTTPS). Returns the addresses and,
/// for those with `tls`, their certificate files (resolved against `dir`).
fn listen(n: &Node, dir: &Path, d: &mut Diags) -> (Vec<SocketAddr>, Vec<crate::TlsListen>) {
    let Value::Seq(items) = &n.value else {
        d.error_hint(
            n.pos,
            format!("`listen` must be a list of addresses, found {}", found(n)),
            "write `listen: [\"127.0.0.1:8080\"]`",
        );
        return (vec![default_listen()], Vec::new());
    };
    if items.is_empty() {
        d.error_hint(
            n.pos,
            "`listen` is empty: the daemon would listen nowhere",
            "list at least one address, like `listen: [\"127.0.0.1:8080\"]`, or remove the key for that default",
        );
    }
    let mut seen: Vec<(SocketAddr, Pos)> = Vec::new();
    let mut tls = Vec::new();
    for item in items {
        let (addr_node, tls_node) = if let Value::Map(_) = item.value {
            let Some(f) = fields(item, "a `listen` entry", LISTEN_KEYS, d) else { continue };
            let Some(a) = f.get("address") else {
                d.error_hint(
                    item.pos,
                    "a `listen` entry needs `address`",
                    "write `{address: \"127.0.0.1:8443\", tls: {cert: cert.pem, key: key.pem}}`",
                );
                continue;
            };
            (a, f.get("tls"))
        } else {
            (item, None)
        };
        let files = tls_node.and_then(|t| tls_files(t, dir, d));
        let Some(text) = addr_node.text() else {
            d.error_hint(
                addr_node.pos,
                format!("a `listen` address must be a string, found {}", found(addr_node)),
                "write `\"127.0.0.1:8080\"`, or `{address: \"127.0.0.1:8443\", tls: {cert: cert.pem, key: key.pem}}` for HTTPS",
            );
            continue;
        };
        match text.trim().parse::<SocketAddr>() {
            Ok(addr) => {
                if let Some((_, first)) = seen.iter().find(|(a, _)| *a == addr) {
                    d.error_hint(
                        addr_node.pos,
                        format!("address {addr} is listed twice (first at {})", at(*first)),
                        "remove one of them",
                    );
                } else {
                    seen.push((addr, addr_node.pos));
                    if let Some((cert, key)) = files {
                        tls.push(crate::TlsListen { addr, cert, key });
                    }
                }
            }
            Err(_) => d.error_hint(
                addr_node.pos,
                format!("`{}` is not a socket address", text.escape_debug()),
                "write IP:PORT, like `127.0.0.1:8080`, `0.0.0.0:80` or `[::1]:8080` (host names are not resolved; port 0 picks a free port)",
            ),
        }
    }
    (seen.into_iter().map(|(a, _)| a).collect(), tls)
}

/// A listen entry's `tls: {cert: PATH, key: PATH}` (both required; read by the daemon).
fn tls_files(n: &Node, dir: &Path, d: &mut Diags) -> Option<(PathBuf, PathBuf)> {
    let f = fields(n, "`tls`", TLS_KEYS, d)?;
    let mut get = |key: &str| match f.get(key) {
        Some(v) => path_value(v, &format!("tls.{key}"), d).map(|p| resolve(dir, p)),
        None => {
            d.error_hint(
                n.pos,
                format!("`tls` needs `{key}`"),
                "write `tls: {cert: fullchain.pem, key: privkey.pem}` (PEM files; relative to this file's folder)",
            );
            None
        }
    };
    let cert = get("cert");
    let key = get("key");
    Some((cert?, key?))
}

/// `written` resolved against the config folder: absolute paths stay, relative ones are
/// joined; `.` components, repeated and trailing slashes are dropped (no symlinks are
/// resolved, `..` is kept).
pub(crate) fn resolve(dir: &Path, written: &str) -> PathBuf {
    dir.join(written).components().collect()
}

/// "line 3, column 5", for messages that refer to another place in the file.
pub(crate) fn at(pos: Pos) -> String {
    format!("line {}, column {}", pos.line, pos.column)
}

/// What a node is, for "found ..." in messages: its kind and, for a scalar, its text.
pub(crate) fn found(n: &Node) -> String {
    match n.text() {
        Some(text) => format!("{} `{}`", n.kind(), text.escape_debug()),
        None => n.kind().to_owned(),
    }
}

/// The entries of a mapping with a fixed set of keys, after unknown and duplicate keys
/// have been reported.
#[derive(Debug)]
pub(crate) struct Fields<'a> {
    entries: Vec<(&'static str, &'a Node)>,
}

impl<'a> Fields<'a> {
    /// The value of key `name`, if given (the first one, if given twice).
    pub(crate) fn get(&self, name: &str) -> Option<&'a Node> {
        self.entries.iter().find(|(k, _)| *k == name).map(|(_, v)| *v)
    }
}

/// Reads `node` as a mapping whose keys must be among `allowed`. Reports a non-mapping
/// (and returns `None`), non-scalar keys, duplicate keys (at the later one, naming the
/// first) and unknown keys (listing the valid ones). `what` names the mapping in
/// messages ("an alias").
pub(crate) fn fields<'a>(
    node: &'a Node,
    what: &str,
    allowed: &[&'static str],
    d: &mut Diags,
) -> Option<Fields<'a>> {
    let Value::Map(entries) = &node.value else {
        d.error_hint(
            node.pos,
            format!("{what} must be a mapping of keys, found {}", found(node)),
            format!("valid keys: {}", allowed.join(", ")),
        );
        return None;
    };
    let mut out = Fields { entries: Vec::new() };
    let mut seen: Vec<(&str, Pos)> = Vec::new();
    for (key, value) in entries {
        let Some(name) = key.text() else {
            d.error(key.pos, format!("a key must be a plain name, found {}", key.kind()));
            continue;
        };
        if let Some((_, first)) = seen.iter().find(|(k, _)| *k == name) {
            d.error_hint(
                key.pos,
                format!(
                    "duplicate key `{}` in {what} (first at {})",
                    name.escape_debug(),
                    at(*first)
                ),
                "remove one of them",
            );
            continue;
        }
        seen.push((name, key.pos));
        match allowed.iter().find(|a| **a == name) {
            Some(known) => out.entries.push((known, value)),
            None => {
                let message = format!(
                    "unknown key `{}` in {what}; valid keys are: {}",
                    name.escape_debug(),
                    allowed.join(", ")
                );
                match suggest(name, allowed) {
                    Some(s) => d.error_hint(key.pos, message, format!("did you mean `{s}`?")),
                    None => d.error(key.pos, message),
                }
            }
        }
    }
    Some(out)
}

/// The allowed key closest to a misspelled one, if it is close enough to be a typo.
fn suggest<'a>(name: &str, allowed: &[&'a str]) -> Option<&'a str> {
    let lower = name.to_ascii_lowercase().replace('-', "_");
    allowed
        .iter()
        .map(|a| (edit_distance(&lower, a), *a))
        .filter(|&(dist, a)| dist <= 2.min(a.len() / 2))
        .min_by_key(|&(dist, _)| dist)
        .map(|(_, a)| a)
}

/// Levenshtein distance, by characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = substitute.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// A boolean (`true`/`false`, or the YAML 1.1 `yes`/`no`/`on`/`off`).
pub(crate) fn bool_value(n: &Node, key: &str, d: &mut Diags) -> Option<bool> {
    if let Value::Bool(b, _) = n.value {
        return Some(b);
    }
    d.error_hint(
        n.pos,
        format!("`{key}` must be true or false, found {}", found(n)),
        "write `true` or `false`, without quotes",
    );
    None
}

/// A byte size for `max_body`: a positive integer or a string like `10MiB`.
pub(crate) fn size_value(n: &Node, key: &str, d: &mut Diags) -> Option<u64> {
    const HINT: &str = "write a number of bytes (`10485760`) or a size with a unit: `10MiB`, `512K`, `1G` (all units are binary: K = KB = KiB = 1024)";
    let size = match &n.value {
        Value::Int(i, _) => match u64::try_from(*i) {
            Ok(size) => size,
            Err(_) if *i < 0 => {
                d.error_hint(n.pos, format!("`{key}` must be at least 1 byte, found {i}"), HINT);
                return None;
            }
            Err(_) => {
                d.error_hint(n.pos, format!("`{key}`: `{i}` is too large"), HINT);
                return None;
            }
        },
        // YAML hands integers beyond 64 bits over as floats.
        Value::Float(_, text) if is_integer_text(text) => {
            d.error_hint(n.pos, format!("`{key}`: `{text}` is too large"), HINT);
            return None;
        }
        Value::Str(s) => match parse_size(s) {
            Ok(size) => size,
            Err(e) => {
                d.error_hint(n.pos, format!("`{key}`: {e}"), HINT);
                return None;
            }
        },
        _ => {
            d.error_hint(
                n.pos,
                format!(
                    "`{key}` must be a whole number of bytes or a size like `10MiB`, found {}",
                    found(n)
                ),
                HINT,
            );
            return None;
        }
    };
    if size == 0 {
        d.error_hint(n.pos, format!("`{key}` must be at least 1 byte, found 0"), HINT);
        return None;
    }
    Some(size)
}

/// A thread count in `1..=MAX_THREADS`.
pub(crate) fn threads_value(n: &Node, key: &str, d: &mut Diags) -> Option<usize> {
    let hint =
        format!("write a whole number from 1 to {MAX_THREADS} (the default is {DEFAULT_THREADS})");
    let i = match &n.value {
        Value::Int(i, _) => *i,
        // YAML hands integers beyond 64 bits over as floats: out of range all the same.
        Value::Float(_, text) if is_integer_text(text) => {
            d.error_hint(
                n.pos,
                format!("`{key}` must be between 1 and {MAX_THREADS}, found {text}"),
                hint,
            );
            return None;
        }
        _ => {
            d.error_hint(
                n.pos,
                format!("`{key}` must be a whole number, found {}", found(n)),
                hint,
            );
            return None;
        }
    };
    match usize::try_from(i) {
        Ok(t) if (1..=MAX_THREADS).contains(&t) => Some(t),
        _ => {
            d.error_hint(
                n.pos,
                format!("`{key}` must be between 1 and {MAX_THREADS}, found {i}"),
                hint,
            );
            None
        }
    }
}

/// Whether a scalar's text is a (possibly signed) decimal integer.
fn is_integer_text(text: &str) -> bool {
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// A string (or a number or boolean, taken as written).
pub(crate) fn text_value<'a>(n: &'a Node, key: &str, d: &mut Diags) -> Option<&'a str> {
    let text = n.text();
    if text.is_none() {
        d.error(n.pos, format!("`{key}` must be a string, found {}", found(n)));
    }
    text
}

/// A non-empty path string without NUL.
pub(crate) fn path_value<'a>(n: &'a Node, key: &str, d: &mut Diags) -> Option<&'a str> {
    let text = text_value(n, key, d)?;
    if text.is_empty() {
        d.error(n.pos, format!("`{key}` must not be empty"));
        return None;
    }
    if text.contains('\0') {
        d.error(n.pos, format!("`{key}` must not contain a NUL character"));
        return None;
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::{Expected, check_errors_table, fixture};

    /// Each snippet has exactly the expected errors (all of them: several per snippet
    /// check that the pass goes on after the first), at (line, column, message part).
    #[test]
    fn errors_table() {
        let cases: &[(&str, Expected)] = &[
            // top level
            ("", &[(1, 1, "missing required key `aliases`")]),
            ("threads: 2\n", &[(1, 1, "missing required key `aliases`")]),
            ("- a\n- b\n", &[(1, 1, "the top level must be a mapping")]),
            ("just text\n", &[(1, 1, "the top level must be a mapping")]),
            ("aliases:\n", &[(1, 8, "`aliases` must be a list, found null")]),
            ("aliases: {}\n", &[(1, 10, "`aliases` must be a list, found a mapping")]),
            (
                "aliases: []\nlisten: []\nthreds: 3\n",
                &[(2, 9, "`listen` is empty"), (3, 1, "unknown key `threds`")],
            ),
            ("aliases: []\nListen: []\n", &[(2, 1, "valid keys are: listen, develop_mode")]),
            (
                "aliases: []\nthreads: 2\nthreads: 3\n",
                &[(3, 1, "duplicate key `threads` in the top level (first at line 2, column 1)")],
            ),
            ("aliases: []\n[a]: 1\n", &[(2, 1, "a key must be a plain name, found a list")]),
            // listen
            ("aliases: []\nlisten: 127.0.0.1:80\n", &[(2, 9, "`listen` must be a list")]),
            (
                "aliases: []\nlisten:\n  - 127.0.0.1:80\n  - localhost:80\n  - \"1.2.3.4\"\n  - ~\n  - 127.0.0.1:80\n",
                &[
                    (4, 5, "`localhost:80` is not a socket address"),
                    (5, 5, "`1.2.3.4` is not a socket address"),
                    (6, 5, "must be a string, found null"),
                    (7, 5, "address 127.0.0.1:80 is listed twice (first at line 3, column 5)"),
                ],
            ),
            ("aliases: []\nlisten: [\"[::1]\"]\n", &[(2, 10, "not a socket address")]),
            (
                "aliases: []\nlisten:\n  - {address: \"127.0.0.1:8443\", tls: {cert: c.pem}}\n  - {tls: {cert: c, key: k}}\n  - {address: x, tls: {cert: c, key: k}}\n  - {address: \"127.0.0.1:8443\"}\n",
                &[
                    (3, 38, "`tls` needs `key`"),
                    (4, 5, "a `listen` entry needs `address`"),
                    (5, 15, "`x` is not a socket address"),
                    (6, 15, "address 127.0.0.1:8443 is listed twice (first at line 3, column 15)"),
                ],
            ),
            (
                "aliases: []\nlisten:\n  - {address: [1], tls: {cert: \"\", key: k, ca: x}}\n  - {adress: \"127.0.0.1:1\"}\n  - {address: \"127.0.0.1:2\", tls: on}\n",
                &[
                    (3, 15, "a `listen` address must be a string, found a list"),
                    (3, 32, "`tls.cert` must not be empty"),
                    (3, 44, "unknown key `ca` in `tls`"),
                    (4, 6, "unknown key `adress` in a `listen` entry"),
                    (4, 5, "a `listen` entry needs `address`"),
                    (5, 35, "`tls` must be a mapping of keys"),
                ],
            ),
            ("aliases: []\nlisten: [\"1.2.3.4:99999\"]\n", &[(2, 10, "not a socket address")]),
            // develop_mode
            (
                "aliases: []\ndevelop_mode: \"true\"\n",
                &[(2, 15, "must be true or false, found a string `true`")],
            ),
            (
                "aliases: []\ndevelop_mode: 1\n",
                &[(2, 15, "must be true or false, found an integer `1`")],
            ),
            ("aliases: []\ndevelop_mode:\n", &[(2, 13, "must be true or false, found null")]),
            // max_body
            ("aliases: []\nmax_body: 0\n", &[(2, 11, "at least 1 byte, found 0")]),
            ("aliases: []\nmax_body: 0MiB\n", &[(2, 11, "at least 1 byte, found 0")]),
            ("aliases: []\nmax_body: -5\n", &[(2, 11, "at least 1 byte, found -5")]),
            ("aliases: []\nmax_body: 1.5\n", &[(2, 11, "whole number of bytes")]),
            ("aliases: []\nmax_body: 1.5MiB\n", &[(2, 11, "not a whole number")]),
            ("aliases: []\nmax_body: 10 parsecs\n", &[(2, 11, "`parsecs` is not a size unit")]),
            ("aliases: []\nmax_body: 99999999999999999999\n", &[(2, 11, "too large")]),
            ("aliases: []\nmax_body: 99999999999GiB\n", &[(2, 11, "too large")]),
            ("aliases: []\nmax_body: [1]\n", &[(2, 11, "found a list")]),
            // threads
            ("aliases: []\nthreads: 0\n", &[(2, 10, "between 1 and 1024, found 0")]),
            ("aliases: []\nthreads: 1025\n", &[(2, 10, "between 1 and 1024, found 1025")]),
            ("aliases: []\nthreads: -1\n", &[(2, 10, "between 1 and 1024, found -1")]),
            (
                "aliases: []\nthreads: 99999999999999999999999\n",
                &[(2, 10, "between 1 and 1024, found 99999999999999999999999")],
            ),
            (
                "aliases: []\nthreads: \"8\"\n",
                &[(2, 10, "must be a whole number, found a string `8`")],
            ),
            ("aliases: []\nthreads: 2.0\n", &[(2, 10, "must be a whole number")]),
            // logs
            ("aliases: []\nlogs: log\n", &[(2, 7, "`logs` must be a mapping of keys")]),
            ("aliases: []\nlogs:\n  dir: \"\"\n", &[(3, 8, "`logs.dir` must not be empty")]),
            (
                "aliases: []\nlogs:\n  dir: [a]\n",
                &[(3, 8, "`logs.dir` must be a string, found a list")],
            ),
            (
                "aliases: []\nlogs:\n  dir: x\n  lvl: 3\n",
                &[(4, 3, "unknown key `lvl` in `logs`; valid keys are: dir, level, error_log")],
            ),
        ];
        check_errors_table(cases);
    }

    #[test]
    fn unknown_key_lists_valid_ones_and_suggests() {
        let fx = fixture();
        let errors = fx.errors("aliases: []\nmax-body: 3\n");
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].message,
            "unknown key `max-body` in the top level; valid keys are: listen, develop_mode, max_body, max_upload, upload_dir, upload_budget, pass_authorization, trace_enable, error_documents, error_override, static, threads, dispatch, reloading, cache_dir, pid_file, max_headers, max_header_size, header_timeout, shutdown_timeout, drain_delay, keep_alive, max_connections, timeout, body_timeout, body_min_rate, body_timeout_max, queue, max_websockets, websocket_max_message, websocket_idle_timeout, check_plugins, trusted_proxies, metrics, logs, handlers, aliases"
        );
        assert_eq!(errors[0].hint.as_deref(), Some("did you mean `max_body`?"));
    }

    #[test]
    fn listen_entries_plain_and_tls() {
        let fx = fixture();
        let c = fx
            .ok("aliases: []\nlisten:\n  - \"127.0.0.1:8080\"\n  - address: \"[::1]:8443\"\n    tls: {cert: tls/cert.pem, key: /etc/k.pem}\n")
            .config;
        let https: SocketAddr = "[::1]:8443".parse().expect("a test address");
        assert_eq!(c.listen, vec!["127.0.0.1:8080".parse().expect("a test address"), https]);
        assert_eq!(
            c.tls,
            vec![crate::TlsListen {
                addr: https,
                cert: fx.tmp.path().join("tls/cert.pem"),
                key: PathBuf::from("/etc/k.pem"),
            }]
        );
        assert!(c.tls_for("127.0.0.1:8080".parse().expect("a test address")).is_none());
        assert!(c.tls_for(https).is_some());
    }

    #[test]
    fn yaml_1_1_booleans_and_sizes_accepted() {
        let fx = fixture();
        let cases: &[(&str, bool, u64)] = &[
            ("develop_mode: yes\nmax_body: 1k\n", true, 1024),
            ("develop_mode: On\nmax_body: 1KB\n", true, 1024),
            ("develop_mode: off\nmax_body: \"2 MiB\"\n", false, 2 << 20),
            ("develop_mode: TRUE\nmax_body: 0x10\n", true, 16),
            ("develop_mode: false\nmax_body: 1g\n", false, 1 << 30),
        ];
        for &(text, develop, size) in cases {
            let c = fx.ok(&format!("aliases: []\n{text}")).config;
            assert_eq!((c.develop_mode, c.max_body), (develop, size), "{text}");
        }
    }

    #[test]
    fn upload_budget_is_a_size() {
        let fx = fixture();
        assert_eq!(fx.ok("aliases: []\n").config.upload_budget, 1 << 30);
        assert_eq!(fx.ok("aliases: []\nupload_budget: 256MiB\n").config.upload_budget, 256 << 20);
        let e = fx.errors("aliases: []\nupload_budget: lots\n");
        assert!(e[0].message.contains("upload_budget"), "{e:?}");
    }

    #[test]
    fn trace_enable_is_off_unless_written() {
        let fx = fixture();
        assert!(!fx.ok("aliases: []\n").config.trace_enable);
        assert!(fx.ok("aliases: []\ntrace_enable: on\n").config.trace_enable);
        assert!(!fx.ok("aliases: []\ntrace_enable: false\n").config.trace_enable);
        let e = fx.errors("aliases:\n  - url: /a\n    path: lib/app.so\n    trace_enable: true\n");
        assert!(e[0].message.contains("unknown key `trace_enable` in an alias"), "{e:?}");
    }

    #[test]
    fn suggestions() {
        let keys = ["url", "path", "develop_mode", "env", "max_body", "threads"];
        let cases: &[(&str, Option<&str>)] = &[
            ("pth", Some("path")),
            ("Path", Some("path")),
            ("develop-mode", Some("develop_mode")),
            ("developmode", Some("develop_mode")),
            ("max_bdy", Some("max_body")),
            ("thread", Some("threads")),
            ("urls", Some("url")),
            ("zzz", None),
            ("environment", None),
            ("x", None),
        ];
        for &(name, want) in cases {
            assert_eq!(suggest(name, &keys), want, "{name}");
        }
    }

    #[test]
    fn edit_distances() {
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("path", "path"), 0);
    }

    #[test]
    fn resolve_paths() {
        let dir = Path::new("/etc/gatehouse");
        let cases = [
            ("log", "/etc/gatehouse/log"),
            ("./target//release/", "/etc/gatehouse/target/release"),
            ("../apps/x.so", "/etc/gatehouse/../apps/x.so"),
            ("/var/log/gatehouse", "/var/log/gatehouse"),
        ];
        for (written, want) in cases {
            assert_eq!(resolve(dir, written), PathBuf::from(want), "{written}");
        }
    }
}
