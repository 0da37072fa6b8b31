//! The README's configuration reference against the keys this crate accepts: every key the
//! validator knows is documented, and every documented key is accepted.

use crate::alias::ALIAS_KEYS;
use crate::handler::HANDLER_KEYS;
use crate::isolation::PROCESS_KEYS;
use crate::logs::{LOGS_KEYS, ROTATE_KEYS};
use crate::validate::TOP_KEYS;

/// The YAML block under `## Configuration reference` in the workspace's README.md.
fn reference() -> String {
    let readme = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md");
    let text = std::fs::read_to_string(&readme).unwrap_or_else(|e| panic!("{e}"));
    let Some(at) = text.find("## Configuration reference") else { panic!("no reference") };
    let rest = &text[at..];
    let Some(open) = rest.find("```yaml\n") else { panic!("no yaml block") };
    let body = &rest[open + "```yaml\n".len()..];
    let Some(close) = body.find("\n```") else { panic!("unclosed yaml block") };
    body[..close].to_owned()
}

/// The keys written at `indent` spaces (after an optional `- `), in the lines of `block`.
fn keys_at(block: &str, indent: usize) -> Vec<String> {
    block
        .lines()
        .filter_map(|line| {
            let rest = line.get(indent..)?;
            if line[..indent].chars().any(|c| c != ' ') {
                return None;
            }
            let rest = rest.strip_prefix("- ").unwrap_or(rest);
            let key: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            (!key.is_empty() && rest[key.len()..].starts_with(':')).then_some(key)
        })
        .collect()
}

/// The lines of `block` from the one starting with `start` to the next line at column 0.
fn section(block: &str, start: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in block.lines() {
        if line.starts_with(start) {
            inside = true;
        } else if inside && !line.starts_with(' ') {
            break;
        }
        if inside {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[track_caller]
fn same(what: &str, documented: &[String], accepted: &[&str], in_text: Option<&str>) {
    let mut problems = Vec::new();
    for key in accepted {
        let written = documented.iter().any(|d| d == key)
            || in_text.is_some_and(|t| {
                t.split(|c: char| !(c.is_ascii_lowercase() || c == '_')).any(|w| w == *key)
            });
        if !written {
            problems.push(format!("{what}: `{key}` is accepted but not in README.md's reference"));
        }
    }
    for key in documented {
        if !accepted.contains(&key.as_str()) {
            problems.push(format!("{what}: README.md documents `{key}`, which is refused"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_readme_reference_documents_exactly_the_accepted_keys() {
    let block = reference();
    same("top level", &keys_at(&block, 0), TOP_KEYS, None);
    let logs = section(&block, "logs:");
    same("logs", &keys_at(&logs, 2), LOGS_KEYS, None);
    same("logs.rotate", &keys_at(&logs, 4), ROTATE_KEYS, None);
    let handlers = section(&block, "handlers:");
    // A handler's other keys are described in the text below the block.
    let handler_keys: Vec<String> =
        keys_at(&handlers, 2).into_iter().chain(keys_at(&handlers, 4)).collect();
    let readme_text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"),
    )
    .unwrap_or_default();
    same("handlers", &handler_keys, HANDLER_KEYS, Some(&readme_text));
    // An alias: its keys as written, or named elsewhere in the block (its comment says which
    // global settings an alias may set too).
    let aliases = section(&block, "aliases:");
    let alias_keys: Vec<String> =
        keys_at(&aliases, 2).into_iter().chain(keys_at(&aliases, 4)).collect();
    let accepted: Vec<&str> =
        ALIAS_KEYS.iter().chain(crate::hooks::HOOK_KEYS).chain(PROCESS_KEYS).copied().collect();
    same("an alias", &alias_keys, &accepted, Some(&block));
}
