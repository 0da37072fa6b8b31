//! `access_script`, `auth_user_script` and `auth_realm` (per alias): mod_wsgi's
//! `WSGIAccessScript` and `WSGIAuthUserScript` with Apache's `AuthName`. Each script is a
//! plugin exporting the hook, or a file a handler serves (a Python script defining
//! `allow_access(environ, host)` or `check_password(environ, user, password)`).

use std::path::{Path, PathBuf};

use crate::diagnostic::Diags;
use crate::validate::{Fields, path_value, resolve, text_value};

/// The keys read here.
pub(crate) const HOOK_KEYS: &[&str] = &["access_script", "auth_user_script", "auth_realm"];

/// Longest realm accepted (it is sent in every 401).
const MAX_REALM: usize = 200;

/// An alias's access and authentication hooks.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Hooks {
    /// The access hook's file (`access_script`), absolute: asked before the app whether the
    /// client may reach it (403 if not).
    pub access_script: Option<PathBuf>,
    /// The authentication hook's file (`auth_user_script`), absolute: asked to check the
    /// credentials of HTTP Basic authentication (401 until they pass).
    pub auth_user_script: Option<PathBuf>,
    /// The realm of the 401's `WWW-Authenticate` (`auth_realm`; default: the alias's URL).
    pub auth_realm: String,
}

impl Hooks {
    /// Whether any hook is set.
    pub fn any(&self) -> bool {
        self.access_script.is_some() || self.auth_user_script.is_some()
    }
}

/// Reads the hook keys of one alias; `url` is the alias's (the default realm).
pub(crate) fn read(f: &Fields<'_>, url: &str, dir: &Path, d: &mut Diags) -> Hooks {
    let script = |key: &str, d: &mut Diags| {
        let n = f.get(key)?;
        let written = path_value(n, key, d)?;
        let path = resolve(dir, written);
        if path.is_file() {
            Some(path)
        } else {
            d.error_hint(
                n.pos,
                format!("the {key} {} does not exist", path.display()),
                "create it, or fix the path (relative to the folder of hosting.yaml); \
                 without it every request of this alias would be refused",
            );
            None
        }
    };
    let access_script = script("access_script", d);
    let auth_user_script = script("auth_user_script", d);
    let mut auth_realm = url.to_owned();
    if let Some(n) = f.get("auth_realm")
        && let Some(text) = text_value(n, "auth_realm", d)
    {
        if f.get("auth_user_script").is_none() {
            d.error_hint(
                n.pos,
                "`auth_realm` names the realm of `auth_user_script`, and this alias has none",
                "add `auth_user_script: FILE`, or remove `auth_realm`",
            );
        } else if let Some(why) = bad_realm(text) {
            d.error_hint(n.pos, format!("`auth_realm` {why}"), "write a short plain name: `Staff`");
        } else {
            text.clone_into(&mut auth_realm);
        }
    }
    Hooks { access_script, auth_user_script, auth_realm }
}

/// Why `realm` cannot be sent in a `WWW-Authenticate` quoted string, if it cannot.
fn bad_realm(realm: &str) -> Option<String> {
    if realm.is_empty() {
        return Some("must not be empty".into());
    }
    if realm.len() > MAX_REALM {
        return Some(format!("is longer than {MAX_REALM} bytes"));
    }
    if let Some(c) = realm.chars().find(|&c| c == '"' || c == '\\' || c.is_control()) {
        return Some(format!("must not contain {c:?}"));
    }
    if !realm.is_ascii() {
        return Some("must be ASCII: it is sent in a header, where browsers read no UTF-8".into());
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::testutil::{Expected, check_errors_table};

    #[test]
    fn errors_table() {
        let cases: &[(&str, Expected)] = &[
            (
                "aliases:\n  - url: /a\n    path: lib/app.so\n    access_script: nope.so\n",
                &[(4, 20, "the access_script")],
            ),
            (
                "aliases:\n  - url: /a\n    path: lib/app.so\n    auth_user_script: ''\n",
                &[(4, 23, "`auth_user_script` must not be empty")],
            ),
            (
                "aliases:\n  - url: /a\n    path: lib/app.so\n    auth_realm: Staff\n",
                &[(4, 17, "this alias has none")],
            ),
        ];
        check_errors_table(cases);
    }

    #[test]
    fn realms() {
        for (realm, ok) in [
            ("Staff", true),
            ("Staff only, please", true),
            ("", false),
            ("a\"b", false),
            ("a\\b", false),
            ("a\nb", false),
            ("Área", false),
        ] {
            assert_eq!(super::bad_realm(realm).is_none(), ok, "{realm:?}");
        }
        assert!(super::bad_realm(&"x".repeat(201)).is_some());
    }
}
