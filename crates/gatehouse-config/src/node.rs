//! The YAML layer: parses `hosting.yaml` with serde-saphyr into a small tree of
//! positioned nodes ([`Node`]), and turns YAML syntax errors into a [`Diagnostic`].
//!
//! Why a tree and not `#[derive(Deserialize)]` structs: serde stops at the first unknown
//! key or wrong type, and the operator should see every mistake of a file in one go. So
//! serde-saphyr only builds the tree (each node wrapped in `Spanned` for its line and
//! column) and `validate` walks it, collecting all problems. The tree also keeps each
//! scalar's text as written, so `env: {N: 1.0, B: on}` hands the app `1.0` and `on`.
//!
//! This is the only module that knows the YAML crate; swapping it is a one-file change.

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{DuplicateKeyPolicy, Location, MessageFormatter, Spanned, UserMessageFormatter};

use crate::diagnostic::Pos;

/// One YAML node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    /// Where the node starts (for a block mapping: its first key).
    pub(crate) pos: Pos,
    /// The node itself.
    pub(crate) value: Value,
}

/// A YAML value with scalars typed the YAML 1.2 core way (plus the YAML 1.1 booleans
/// `yes`/`no`/`on`/`off`, which serde-saphyr accepts unless `strict_booleans` is set).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    /// `~`, `null` or nothing.
    Null,
    /// A boolean, and its text as written (`true`, `yes`, `On` ...).
    Bool(bool, String),
    /// An integer, and its text as written (`10`, `0x1F` ...).
    Int(i128, String),
    /// A float, and its text as written.
    Float(f64, String),
    /// A string (quoted or plain).
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order, duplicates kept (the validator reports them).
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// The text of a non-null scalar: a string's value, or a number's or boolean's
    /// spelling as written. `None` for null, sequences and mappings.
    pub(crate) fn text(&self) -> Option<&str> {
        match &self.value {
            Value::Str(s) | Value::Bool(_, s) | Value::Int(_, s) | Value::Float(_, s) => Some(s),
            Value::Null | Value::Seq(_) | Value::Map(_) => None,
        }
    }

    /// "a string", "an integer" ... for messages like "expected X, found Y".
    pub(crate) fn kind(&self) -> &'static str {
        match self.value {
            Value::Null => "null (an empty value)",
            Value::Bool(..) => "a boolean",
            Value::Int(..) => "an integer",
            Value::Float(..) => "a number with a fraction",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

/// Parses one YAML document into a [`Node`] tree. Duplicate keys are kept (not an
/// error here) so that the validator can report all of them with both positions.
///
/// An empty document (or one with only comments) is a [`Value::Null`] node at 1:1.
pub(crate) fn parse_yaml(text: &str) -> Result<Node, SyntaxError> {
    let options = serde_saphyr::options! {
        duplicate_keys: DuplicateKeyPolicy::PassThrough,
    };
    let raw: Spanned<RawNode> =
        serde_saphyr::from_str_with_options(text, options).map_err(|e| SyntaxError::from(&e))?;
    Ok(convert(raw, text))
}

/// A YAML error that stopped parsing: bare message (no position, no snippet) and its
/// position when the parser knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub(crate) pos: Option<Pos>,
    pub(crate) message: String,
}

impl SyntaxError {
    /// What to do about it, in words an operator who writes YAML rarely can follow: the
    /// parser's own text names the rule, not the fix.
    pub(crate) fn hint(&self) -> &'static str {
        let m = self.message.to_ascii_lowercase();
        if m.contains("tab") {
            "YAML indents with spaces only: replace the tab here with spaces (`expand -t 2 FILE` \
             does it for a whole file)"
        } else if m.contains("indicator")
            || m.contains("indentation")
            || m.contains("mapping values are not allowed")
            || m.contains("expected key")
            || m.contains("block")
        {
            "check the indentation: the keys of one mapping start in the same column, and a \
             list item (`- url: ...`) and its other keys line up under the first key"
        } else if m.contains("quote") || m.contains("scalar") || m.contains("flow") {
            "a value holding `: `, `#`, or starting with `{`, `[`, `*`, `&`, `!`, `%`, `@` or a \
             quote must be quoted whole: `key: \"a value: like this\"`"
        } else {
            "this is not valid YAML here; compare the line with the examples in README.md's \
             configuration reference"
        }
    }
}

impl From<&serde_saphyr::Error> for SyntaxError {
    fn from(e: &serde_saphyr::Error) -> Self {
        let message = UserMessageFormatter.format_message(e.without_snippet());
        // The formatter's text is raw: keep it on one line and free of control bytes.
        let message: String = message
            .chars()
            .flat_map(|c| if c.is_control() { c.escape_debug().collect() } else { vec![c] })
            .collect();
        Self { pos: e.location().and_then(pos_of), message }
    }
}

fn pos_of(loc: Location) -> Option<Pos> {
    let line = usize::try_from(loc.line()).ok()?;
    let column = usize::try_from(loc.column()).ok()?;
    (line > 0 && column > 0).then_some(Pos { line, column })
}

/// The scalar's spelling in the source, from the span of its definition (so an alias
/// `*a` yields the anchored text). Only plain spellings are used: a quoted or tagged
/// scalar, or a missing span, falls back to `fallback`.
fn spelling(loc: Location, text: &str, fallback: impl FnOnce() -> String) -> String {
    let span = loc.span();
    let slice = span.byte_offset().zip(span.byte_len()).and_then(|(start, len)| {
        let start = usize::try_from(start).ok()?;
        let end = start.checked_add(usize::try_from(len).ok()?)?;
        text.get(start..end)
    });
    match slice {
        Some(s) if !s.is_empty() && !s.starts_with(['"', '\'', '!', '*', '&', '[', '{']) => {
            s.trim_end().to_owned()
        }
        _ => fallback(),
    }
}

fn convert(raw: Spanned<RawNode>, text: &str) -> Node {
    let pos = pos_of(raw.referenced).or_else(|| pos_of(raw.defined)).unwrap_or(Pos::new(1, 1));
    let defined = raw.defined;
    let value = match raw.value {
        RawNode::Null => Value::Null,
        RawNode::Bool(b) => Value::Bool(b, spelling(defined, text, || b.to_string())),
        RawNode::Int(i) => Value::Int(i, spelling(defined, text, || i.to_string())),
        RawNode::Float(f) => Value::Float(f, spelling(defined, text, || f.to_string())),
        RawNode::Str(s) => Value::Str(s),
        RawNode::Seq(items) => Value::Seq(items.into_iter().map(|n| convert(n, text)).collect()),
        RawNode::Map(entries) => Value::Map(
            entries.into_iter().map(|(k, v)| (convert(k, text), convert(v, text))).collect(),
        ),
    };
    Node { pos, value }
}

/// What serde-saphyr hands us: a value whose children carry their own spans.
#[derive(Debug)]
enum RawNode {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<RawNode>>),
    Map(Vec<(Spanned<RawNode>, Spanned<RawNode>)>),
}

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = RawNode;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<RawNode, D::Error> {
        RawNode::deserialize(deserializer)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawNode, E> {
        Ok(RawNode::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawNode, E> {
        Ok(RawNode::Int(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawNode, E> {
        Ok(RawNode::Int(v.into()))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<RawNode, E> {
        Ok(RawNode::Int(v))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<RawNode, E> {
        // Beyond i128: keep it as a float; the validator rejects it as out of range.
        Ok(i128::try_from(v).map_or(RawNode::Float(f64::MAX), RawNode::Int))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawNode, E> {
        Ok(RawNode::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawNode, E> {
        Ok(RawNode::Str(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<RawNode, E> {
        Ok(RawNode::Str(v))
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<RawNode, E> {
        Ok(RawNode::Str(String::from_utf8_lossy(v).into_owned()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawNode, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<RawNode>>()? {
            items.push(item);
        }
        Ok(RawNode::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawNode, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<RawNode>>()? {
            let value = map.next_value::<Spanned<RawNode>>()?;
            entries.push((key, value));
        }
        Ok(RawNode::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Node {
        match parse_yaml(text) {
            Ok(n) => n,
            Err(e) => panic!("unexpected syntax error {e:?} for {text:?}"),
        }
    }

    fn map(node: &Node) -> &[(Node, Node)] {
        match &node.value {
            Value::Map(m) => m,
            other => panic!("expected a map, got {other:?}"),
        }
    }

    #[test]
    fn scalars_keep_their_spelling_and_position() {
        let root = parse("a: 1.0\nb: On\nc: 0x1F\nd: 'q'\ne:\nf: ~\ng: -5\nN: x\n");
        let entries = map(&root);
        let got: Vec<(Option<&str>, Option<&str>, Pos)> =
            entries.iter().map(|(k, v)| (k.text(), v.text(), v.pos)).collect();
        assert_eq!(
            got,
            [
                (Some("a"), Some("1.0"), Pos::new(1, 4)),
                (Some("b"), Some("On"), Pos::new(2, 4)),
                (Some("c"), Some("0x1F"), Pos::new(3, 4)),
                (Some("d"), Some("q"), Pos::new(4, 4)),
                // an empty value is placed at its key's colon
                (Some("e"), None, Pos::new(5, 2)),
                (Some("f"), None, Pos::new(6, 4)),
                (Some("g"), Some("-5"), Pos::new(7, 4)),
                // `N` is a YAML 1.1 boolean, but its text is still `N`.
                (Some("N"), Some("x"), Pos::new(8, 4)),
            ]
        );
        assert!(matches!(entries[1].1.value, Value::Bool(true, _)));
        assert!(matches!(entries[2].1.value, Value::Int(31, _)));
        assert!(matches!(entries[6].1.value, Value::Int(-5, _)));
    }

    #[test]
    fn duplicates_are_kept_for_the_validator() {
        let root = parse("a: 1\nb: 2\na: 3\n");
        let keys: Vec<_> = map(&root).iter().map(|(k, _)| (k.text(), k.pos)).collect();
        assert_eq!(
            keys,
            [(Some("a"), Pos::new(1, 1)), (Some("b"), Pos::new(2, 1)), (Some("a"), Pos::new(3, 1))]
        );
    }

    #[test]
    fn alias_points_at_use_site_with_anchored_text() {
        let root = parse("x: &n 42\ny: *n\n");
        let (_, y) = &map(&root)[1];
        assert_eq!(y.pos, Pos::new(2, 4));
        assert_eq!(y.text(), Some("42"));
    }

    #[test]
    fn empty_document_is_null() {
        assert_eq!(parse("").value, Value::Null);
        assert_eq!(parse("# nothing\n").value, Value::Null);
    }

    #[test]
    fn syntax_errors_have_positions() {
        let cases = [
            ("a: 1\n  b: 2\n", Pos::new(2, 4), "mapping values are not allowed"),
            ("a:\n\t- x\n", Pos::new(2, 2), "tabs"),
            ("a: [1, 2\n", Pos::new(1, 4), "unclosed bracket"),
            ("a: \"open\n", Pos::new(1, 4), "unclosed quote"),
            ("a: *nope\n", Pos::new(1, 4), "unknown"),
            ("a: 1\n---\nb: 2\n", Pos::new(3, 1), "multiple"),
            // A lone CR (old Mac line ends) breaks lines as LF does: positions count it
            // (the fuzzer's first finding was a check that did not).
            ("a: 1\r  b: 2\r", Pos::new(2, 4), "mapping values are not allowed"),
            ("x: 1\r\ra: 1\r  b: 2\r", Pos::new(4, 4), "mapping values are not allowed"),
        ];
        for (text, pos, needle) in cases {
            let err = match parse_yaml(text) {
                Ok(n) => panic!("expected an error for {text:?}, got {n:?}"),
                Err(e) => e,
            };
            assert_eq!(err.pos, Some(pos), "{text:?}: {err:?}");
            assert!(err.message.contains(needle), "{text:?}: {err:?}");
            assert!(!err.message.contains('\n'), "{err:?}");
        }
    }

    #[test]
    fn syntax_errors_have_a_hint_that_says_what_to_fix() {
        let cases = [
            ("aliases:\n\t- url: /a\n", "replace the tab"),
            ("aliases:\n  - url: /a\n   path: x\n", "check the indentation"),
            ("a: 1\n  b: 2\n", "check the indentation"),
        ];
        for (text, want) in cases {
            let Err(err) = parse_yaml(text) else { panic!("expected an error for {text:?}") };
            assert!(err.hint().contains(want), "{text:?}: {err:?} -> {}", err.hint());
        }
    }
}
