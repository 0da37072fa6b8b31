//! Tidy tests of the daemon crate's shape, in the manner of rust-analyzer's: they read the
//! sources, not the compiled code.
//!
//! - Every `crate::` path in `src/` names a top-level module of the importing module's own
//!   layer or a lower one ([`gatehouse::LAYERS`]), and the top-level modules do not import
//!   each other in a cycle. (`super::` paths stay inside their top-level module: the folders
//!   are one level deep.)
//! - Every top-level module is in the layer table, and every entry of the table exists.
//! - `unsafe` is allowed only in the boundary modules.
//! - No source file of any crate is longer than [`MAX_LINES`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The longest a source file may be.
const MAX_LINES: usize = 800;

/// The modules that may allow `unsafe_code`: the ABI shims, the loader, and the OS glue of
/// worker processes.
const UNSAFE_ALLOWED: &[&str] = &["call/abi.rs", "plugin/load.rs", "isolation/boundary.rs"];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("read_dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

/// The top-level module a file under `src/` belongs to (`None` for `lib.rs` and `main.rs`).
fn top_module(rel: &Path) -> Option<String> {
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    match first.strip_suffix(".rs") {
        Some("lib" | "main") => None,
        Some(stem) => Some(stem.to_owned()),
        None => Some(first),
    }
}

/// The code of a line: without a `//` comment (a `//` inside a string cuts it short, which
/// can only hide a path, never invent one).
fn code(line: &str) -> &str {
    line.find("//").map_or(line, |i| &line[..i])
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The top-level modules a line of code names with `crate::`: `crate::a::b` gives `a`,
/// `crate::{a::x, b}` gives `a` and `b`.
fn crate_paths(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        let before = rest[..i].chars().next_back();
        rest = &rest[i + "crate::".len()..];
        if before.is_some_and(|c| is_ident(c) || c == ':') {
            continue; // `gatehouse_crate::`, `$crate::`-like: not ours
        }
        if let Some(group) = rest.strip_prefix('{') {
            // The names at the group's top level, each up to its first `::`.
            let mut depth = 0usize;
            let mut piece = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => piece = String::new(),
                    _ if depth > 0 => {}
                    c => piece.push(c),
                }
                let name: String =
                    piece.trim_start().chars().take_while(|&c| is_ident(c)).collect();
                if c == ':' && !name.is_empty() && !out.contains(&name) {
                    out.push(name);
                }
            }
            let last: String = piece.trim_start().chars().take_while(|&c| is_ident(c)).collect();
            if !last.is_empty() && !out.contains(&last) {
                out.push(last);
            }
        } else {
            let name: String = rest.chars().take_while(|&c| is_ident(c)).collect();
            if !name.is_empty() {
                out.push(name);
            }
        }
    }
    out
}

#[test]
fn crate_paths_are_read_as_written() {
    let cases: &[(&str, &[&str])] = &[
        ("use crate::logs::sink::Sink;", &["logs"]),
        ("    crate::metrics::inc(&g.reloads);", &["metrics"]),
        ("use crate::{host::Host, request};", &["host", "request"]),
        ("use crate::{call::{Reply, Call}, plugin::load::Plugin};", &["call", "plugin"]),
        ("let x = gatehouse_crate::y;", &[]),
        ("use super::proto::Kind;", &[]),
    ];
    for (line, want) in cases {
        assert_eq!(crate_paths(line), *want, "{line}");
    }
}

#[test]
fn a_module_uses_only_its_own_layer_or_lower_ones() {
    let layers: BTreeMap<&str, u8> = gatehouse::LAYERS.iter().copied().collect();
    let src = src();
    let mut problems = Vec::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for file in rust_files(&src) {
        let rel = file.strip_prefix(&src).expect("under src").to_owned();
        let Some(module) = top_module(&rel) else { continue };
        seen.insert(module.clone());
        let Some(&layer) = layers.get(module.as_str()) else {
            problems.push(format!("{}: module `{module}` is not in LAYERS", rel.display()));
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("read source");
        for (n, line) in text.lines().enumerate() {
            let line = code(line);
            if line.contains("super::super::") {
                problems.push(format!(
                    "{}:{}: `super::super::` leaves the top-level module; write `crate::`",
                    rel.display(),
                    n + 1
                ));
            }
            for dep in crate_paths(line) {
                if dep == module {
                    continue;
                }
                match layers.get(dep.as_str()) {
                    None => problems.push(format!(
                        "{}:{}: `crate::{dep}` is not a module in LAYERS",
                        rel.display(),
                        n + 1
                    )),
                    Some(&l) if l > layer => problems.push(format!(
                        "{}:{}: `{module}` (layer {layer}) uses `crate::{dep}` (layer {l}): \
                         an upward import; move what it needs down, or pass it in",
                        rel.display(),
                        n + 1
                    )),
                    Some(_) => {
                        edges.entry(module.clone()).or_default().insert(dep);
                    }
                }
            }
        }
    }
    for (name, _) in gatehouse::LAYERS {
        if !seen.contains(*name) {
            problems.push(format!("LAYERS names `{name}`, which has no file under src/"));
        }
    }
    if let Some(cycle) = find_cycle(&edges) {
        problems.push(format!("the top-level modules import each other: {}", cycle.join(" -> ")));
    }
    assert!(problems.is_empty(), "layer rule broken:\n{}", problems.join("\n"));
}

/// A cycle in `edges`, as the modules along it (first repeated last).
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            let mut cycle = path[i..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|start| visit(start, edges, &mut Vec::new(), &mut done))
}

#[test]
fn cycles_are_found() {
    let edges = |list: &[(&str, &str)]| {
        let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in list {
            m.entry((*a).to_owned()).or_default().insert((*b).to_owned());
        }
        m
    };
    assert_eq!(find_cycle(&edges(&[("a", "b"), ("b", "c")])), None);
    assert_eq!(
        find_cycle(&edges(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}

#[test]
fn unsafe_lives_in_the_boundary_modules_only() {
    let src = src();
    let mut problems = Vec::new();
    for file in rust_files(&src) {
        let rel = file.strip_prefix(&src).expect("under src");
        let text = std::fs::read_to_string(&file).expect("read source");
        let allowed = UNSAFE_ALLOWED.iter().any(|a| rel == Path::new(a));
        if text.contains("allow(unsafe_code)") && !allowed {
            problems.push(format!("{}: allows unsafe_code", rel.display()));
        }
    }
    assert!(problems.is_empty(), "unsafe outside the boundary modules:\n{}", problems.join("\n"));
}

#[test]
fn no_source_file_is_longer_than_the_limit() {
    let crates = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("crates/").to_owned();
    let mut long = Vec::new();
    for entry in std::fs::read_dir(&crates).expect("read crates/") {
        let src = entry.expect("entry").path().join("src");
        if !src.is_dir() {
            continue;
        }
        for file in rust_files(&src) {
            let lines = std::fs::read_to_string(&file).expect("read source").lines().count();
            if lines > MAX_LINES {
                long.push(format!("{}: {lines} lines", file.display()));
            }
        }
    }
    assert!(
        long.is_empty(),
        "longer than {MAX_LINES} lines (split by concern):\n{}",
        long.join("\n")
    );
}
