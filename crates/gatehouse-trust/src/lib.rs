//! Trust: the suexec / sshd `StrictModes` checks a file of code passes before the daemon
//! runs it: a plugin before its bytes are loaded (the daemon's staging), a script before a
//! handler plugin runs it (the WSGI bridge, on each import).
//!
//! Running that code makes it the daemon's user, so whoever can write the file, or
//! replace it through its folder, owns the daemon. A file is trusted when:
//! - it is a regular file (symlinks are followed; a directory group has already refused a
//!   symlink that leaves its folder);
//! - it is owned by root or by the process's effective user, and not writable by its group
//!   or by others;
//! - its folder is owned by root or that user and not writable by group or others (anyone
//!   who can write the folder can rename another file over it);
//! - every folder above is owned by root or that user and not writable by group or others,
//!   unless it has the sticky bit (`/tmp`: others cannot rename or remove what is not
//!   theirs there).
//!
//! A failure names the path, the rule and the command that fixes it. `check_plugins: false`
//! turns the refusal into a warning, for development.

use std::fs::Metadata;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Whose files may be run: root's and the process's effective user's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owners {
    /// The daemon's effective uid.
    pub euid: u32,
}

impl Owners {
    /// The running process's.
    pub fn current() -> Owners {
        Owners { euid: rustix::process::geteuid().as_raw() }
    }

    fn allowed(self, uid: u32) -> bool {
        uid == 0 || uid == self.euid
    }
}

/// What a checked file is, for the messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// A plugin (`.so`) the daemon loads.
    Plugin,
    /// A script a handler plugin runs (`.py`).
    Script,
}

impl Code {
    fn noun(self) -> &'static str {
        match self {
            Code::Plugin => "plugin",
            Code::Script => "script",
        }
    }

    fn replacement(self) -> &'static str {
        match self {
            Code::Plugin => "the plugin's .so file: install -m 0644 NEW.so",
            Code::Script => "the script itself: install -m 0644 NEW.py",
        }
    }
}

/// Why a file is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{path} {rule} (fix: `{fix}`; or set `check_plugins: false` on the alias, for development only)"
)]
pub struct Untrusted {
    /// The file or folder that breaks a rule.
    pub path: PathBuf,
    /// The rule it breaks.
    pub rule: String,
    /// The command that fixes it.
    pub fix: String,
}

const GROUP_OR_OTHER_WRITE: u32 = 0o022;
const STICKY: u32 = 0o1000;

/// Checks the file of code `file` (resolved: no symlinks in it), whose metadata `meta` was
/// taken from the open file, and the folders above it.
pub fn check(file: &Path, meta: &Metadata, owners: Owners, code: Code) -> Result<(), Untrusted> {
    check_file(file, meta.is_file(), meta.uid(), meta.permissions().mode(), owners, code)?;
    let mut parent = file.parent();
    let mut first = true;
    while let Some(dir) = parent {
        if dir.as_os_str().is_empty() {
            break;
        }
        let m = std::fs::metadata(dir).map_err(|e| Untrusted {
            path: dir.to_owned(),
            rule: format!("cannot be examined: {e}"),
            fix: format!("ls -ld {}", dir.display()),
        })?;
        check_dir(dir, m.uid(), m.permissions().mode(), first, owners, code)?;
        first = false;
        parent = dir.parent();
    }
    Ok(())
}

/// The rules for the file itself.
fn check_file(
    path: &Path,
    regular: bool,
    uid: u32,
    mode: u32,
    owners: Owners,
    code: Code,
) -> Result<(), Untrusted> {
    let p = path.display();
    if !regular {
        return Err(Untrusted {
            path: path.to_owned(),
            rule: "is not a regular file".into(),
            fix: format!("replace it with {} {p}", code.replacement()),
        });
    }
    if !owners.allowed(uid) {
        return Err(Untrusted {
            path: path.to_owned(),
            rule: format!(
                "is owned by uid {uid}, not by root or the daemon's user (uid {})",
                owners.euid
            ),
            fix: format!("chown root {p}"),
        });
    }
    if mode & GROUP_OR_OTHER_WRITE != 0 {
        return Err(Untrusted {
            path: path.to_owned(),
            rule: format!("is writable by {} (mode {:04o})", writers(mode), mode & 0o7777),
            fix: format!("chmod go-w {p}"),
        });
    }
    Ok(())
}

/// The rules for a folder: the file's own (`own`) or one above it.
fn check_dir(
    path: &Path,
    uid: u32,
    mode: u32,
    own: bool,
    owners: Owners,
    code: Code,
) -> Result<(), Untrusted> {
    let p = path.display();
    let noun = code.noun();
    let what =
        if own { format!("the {noun}'s folder") } else { format!("a folder above the {noun}") };
    if !owners.allowed(uid) {
        return Err(Untrusted {
            path: path.to_owned(),
            rule: format!(
                "({what}) is owned by uid {uid}, not by root or the daemon's user (uid {}): its \
                 owner can replace the {noun}",
                owners.euid
            ),
            fix: format!("chown root {p}"),
        });
    }
    let sticky_ok = !own && mode & STICKY != 0;
    if mode & GROUP_OR_OTHER_WRITE != 0 && !sticky_ok {
        return Err(Untrusted {
            path: path.to_owned(),
            rule: format!(
                "({what}) is writable by {} (mode {:04o}): they can rename another file over \
                 the {noun}",
                writers(mode),
                mode & 0o7777
            ),
            fix: format!("chmod go-w {p}"),
        });
    }
    Ok(())
}

fn writers(mode: u32) -> &'static str {
    match (mode & 0o020 != 0, mode & 0o002 != 0) {
        (true, true) => "its group and everyone",
        (true, false) => "its group",
        _ => "everyone",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ME: Owners = Owners { euid: 1000 };

    #[test]
    fn file_rules() {
        let f = Path::new("/srv/apps/libx.so");
        // (regular, uid, mode, expected rule fragment or None)
        let cases: [(bool, u32, u32, Option<&str>); 8] = [
            (true, 0, 0o644, None),
            (true, 1000, 0o755, None),
            (true, 1000, 0o600, None),
            (false, 0, 0o644, Some("not a regular file")),
            (true, 1001, 0o644, Some("owned by uid 1001")),
            (true, 0, 0o664, Some("writable by its group (mode 0664)")),
            (true, 0, 0o646, Some("writable by everyone (mode 0646)")),
            (true, 0, 0o666, Some("its group and everyone")),
        ];
        for (regular, uid, mode, want) in cases {
            let got = check_file(f, regular, uid, mode, ME, Code::Plugin);
            match want {
                None => assert_eq!(got, Ok(()), "{uid} {mode:o}"),
                Some(w) => {
                    let e = got.expect_err(w).to_string();
                    assert!(e.contains(w), "{e}");
                    assert!(e.contains("/srv/apps/libx.so") && e.contains("fix: `"), "{e}");
                }
            }
        }
        let e = check_file(f, true, 0, 0o666, ME, Code::Plugin).expect_err("world-writable");
        assert_eq!(e.fix, "chmod go-w /srv/apps/libx.so");
        let e = check_file(Path::new("/srv/py/a.py"), false, 0, 0o644, ME, Code::Script)
            .expect_err("a fifo");
        assert_eq!(e.fix, "replace it with the script itself: install -m 0644 NEW.py /srv/py/a.py");
    }

    #[test]
    fn folder_rules() {
        let d = Path::new("/srv/apps");
        // (own folder?, uid, mode, expected rule fragment or None)
        let cases: [(bool, u32, u32, Option<&str>); 7] = [
            (true, 0, 0o755, None),
            (true, 1000, 0o700, None),
            (false, 0, 0o1777, None), // /tmp above the plugin
            (true, 0, 0o1777, Some("writable by its group and everyone")),
            (true, 0, 0o775, Some("(the plugin's folder) is writable by its group")),
            (false, 0, 0o777, Some("(a folder above the plugin) is writable")),
            (false, 42, 0o755, Some("owned by uid 42")),
        ];
        for (own, uid, mode, want) in cases {
            let got = check_dir(d, uid, mode, own, ME, Code::Plugin);
            match want {
                None => assert_eq!(got, Ok(()), "{own} {uid} {mode:o}"),
                Some(w) => {
                    let e = got.expect_err(w).to_string();
                    assert!(e.contains(w), "{e}");
                }
            }
        }
        let e = check_dir(d, 0, 0o777, true, ME, Code::Script).expect_err("world-writable");
        assert!(e.rule.contains("(the script's folder)"), "{e}");
        assert!(e.rule.ends_with("rename another file over the script"), "{e}");
    }
}
