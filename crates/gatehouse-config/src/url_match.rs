//! `url_match: REGEX` (mod_wsgi's `WSGIScriptAliasMatch`): an alias whose URL is a regular
//! expression matched at the start of the normalized path, and whose `path` is a template
//! naming the file with the captures (`$1` .. `$9`): `url_match: ^/apps/([^/]+)` with
//! `path: /srv/apps/lib$1.so` serves `/apps/shop/...` from `lib shop.so`. SCRIPT_NAME is the
//! matched part, which must end at a segment's end.

use crate::diagnostic::{Diags, Pos};
use crate::node::Node;
use crate::validate::text_value;

/// A checked `url_match`.
#[derive(Debug, Clone)]
pub(crate) struct Pattern {
    /// The expression as matched: anchored with `^` when written without.
    pub(crate) source: String,
    /// Its capture groups.
    pub(crate) groups: usize,
}

/// Reads `url_match` (`n`); `url` is the alias's `url`, which must not be there too.
pub(crate) fn pattern(n: &Node, url: Option<&Node>, d: &mut Diags) -> Option<Pattern> {
    if let Some(u) = url {
        d.error_hint(
            u.pos,
            "an alias has `url` or `url_match`, not both",
            "keep `url` for a prefix, `url_match` for a regular expression",
        );
    }
    let text = text_value(n, "url_match", d)?;
    let source = if text.starts_with('^') { text.to_owned() } else { format!("^{text}") };
    if !source[1..].starts_with('/')
        && !source[1..].starts_with("\\/")
        && !source[1..].starts_with('(')
    {
        d.error_hint(
            n.pos,
            format!("`url_match` {text:?} must match from the path's first `/`"),
            "start it with `/` (`^/apps/([^/]+)`)",
        );
        return None;
    }
    match regex::Regex::new(&source) {
        Ok(re) => Some(Pattern { source, groups: re.captures_len() - 1 }),
        Err(e) => {
            d.error_hint(
                n.pos,
                format!("`url_match` is not a valid regular expression: {e}"),
                "write the expression in Rust's regex syntax (as Perl's, without look-around)",
            );
            None
        }
    }
}

/// Checks that every `$N` of `template` names one of the `groups` captures (and that
/// there is at least one: a match must name a file of its own). Returns whether it passed.
pub(crate) fn check_template(template: &str, groups: usize, pos: Pos, d: &mut Diags) -> bool {
    let mut used = 0;
    let bytes = template.as_bytes();
    for (i, b) in bytes.iter().enumerate() {
        if *b == b'$'
            && let Some(digit) = bytes.get(i + 1).filter(|c| c.is_ascii_digit())
        {
            let n = usize::from(digit - b'0');
            if n == 0 || n > groups {
                d.error_hint(
                    pos,
                    format!("`path` uses ${n}, and `url_match` has {groups} capture group(s)"),
                    "refer to the captures as $1 .. $9, each a `( )` group of `url_match`",
                );
                return false;
            }
            used += 1;
        }
    }
    if used == 0 {
        d.error_hint(
            pos,
            "`path` of a `url_match` alias uses no capture",
            "name the file with a capture, as `path: /srv/apps/lib$1.so`",
        );
        return false;
    }
    true
}

/// `template` with `$1` .. `$9` replaced by `captures` (index 0 is the whole match).
pub fn expand(template: &str, captures: &[&[u8]]) -> Vec<u8> {
    let bytes = template.as_bytes();
    let mut out = Vec::with_capacity(bytes.len() + 32);
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1)) {
            (b'$', Some(d)) if d.is_ascii_digit() => {
                out.extend_from_slice(
                    captures.get(usize::from(d - b'0')).copied().unwrap_or_default(),
                );
                i += 2;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_take_the_captures() {
        for (template, captures, want) in [
            ("/srv/lib$1.so", &[&b"/apps/shop"[..], b"shop"][..], "/srv/libshop.so"),
            ("/srv/$2/$1.py", &[&b"x"[..], b"a", b"b"][..], "/srv/b/a.py"),
            ("/srv/$1$1", &[&b"x"[..], b"z"][..], "/srv/zz"),
            ("/srv/cost$", &[&b"x"[..]][..], "/srv/cost$"),
            ("/srv/$9", &[&b"x"[..]][..], "/srv/"),
        ] {
            assert_eq!(expand(template, captures), want.as_bytes(), "{template}");
        }
    }
}
