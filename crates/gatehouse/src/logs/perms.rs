//! Permission checks of every log folder and file the daemon will write: the seed's
//! `chmod g+w log; chgrp www-data log`, checked instead of assumed.
//!
//! For each folder (`logs.dir`, each app's folder in it, the folders of `access_log` and
//! `error_log`): it exists, or its nearest existing parent lets the daemon create it; the
//! daemon's effective user and groups may write and enter it; it is not world-writable.
//! For each existing log file (the current and the rotated ones): it is a regular file the
//! daemon may write; nobody else may write it; others may not read it unless `file_mode`
//! lets them. Every problem comes with the command that fixes it, written for the user
//! and group the daemon runs as (`chgrp gatehouse /var/log/gatehouse && chmod g+w
//! /var/log/gatehouse`).
//!
//! The decisions ([`check_dir`], [`check_missing_dir`], [`check_file`]) are pure functions
//! of a path's owner and mode and of who the daemon is ([`Who`]), tested in a table; the
//! kernel has the last word ([`access_problem`]: ACLs, read-only mounts, parent folders).
//! Root passes every "may write" check, as the kernel lets it.

use std::fmt;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use gatehouse_config::{Config, ErrorLog};

/// One thing wrong with a log folder or file, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The folder or file.
    pub path: PathBuf,
    /// What is wrong.
    pub message: String,
    /// A shell command that fixes it, when there is one.
    pub fix: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)?;
        if let Some(fix) = &self.fix {
            write!(f, "\n  fix: {fix}")?;
        }
        Ok(())
    }
}

/// Who the daemon is: effective user and groups, with names for messages and commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Who {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    /// Supplementary groups.
    pub(crate) groups: Vec<u32>,
    /// The user's name, or the uid as text.
    pub(crate) user: String,
    /// The effective group's name, or the gid as text.
    pub(crate) group: String,
}

impl Who {
    /// This process.
    pub(crate) fn current() -> Who {
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        let groups = rustix::process::getgroups()
            .map(|g| g.into_iter().map(|g| g.as_raw()).collect())
            .unwrap_or_default();
        let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
        let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
        Who {
            uid,
            gid,
            groups,
            user: name_for_id(&passwd, uid).unwrap_or_else(|| uid.to_string()),
            group: name_for_id(&group, gid).unwrap_or_else(|| gid.to_string()),
        }
    }

    fn describe(&self) -> String {
        format!("user {} (uid {}, group {})", self.user, self.uid, self.group)
    }
}

/// The name of `id` in an `/etc/passwd` or `/etc/group` text (`name:x:id:...`).
pub(crate) fn name_for_id(text: &str, id: u32) -> Option<String> {
    text.lines().find_map(|line| {
        let mut parts = line.split(':');
        let name = parts.next()?;
        let _password = parts.next()?;
        let found: u32 = parts.next()?.parse().ok()?;
        (found == id && !name.is_empty()).then(|| name.to_owned())
    })
}

/// What a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
    Other,
}

/// What is known about an existing path (after symlinks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Facts {
    pub(crate) kind: Kind,
    /// Permission bits (`0o777`).
    pub(crate) mode: u32,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

impl Facts {
    fn of(m: &std::fs::Metadata) -> Facts {
        let kind = if m.is_dir() {
            Kind::Dir
        } else if m.is_file() {
            Kind::File
        } else {
            Kind::Other
        };
        Facts { kind, mode: m.mode() & 0o777, uid: m.uid(), gid: m.gid() }
    }
}

/// Which of owner, group, others applies to `who` for a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Owner,
    Group,
    Other,
}

fn class(who: &Who, f: &Facts) -> Class {
    if f.uid == who.uid {
        Class::Owner
    } else if f.gid == who.gid || who.groups.contains(&f.gid) {
        Class::Group
    } else {
        Class::Other
    }
}

/// The `rwx` bits (0o7) that apply to `who`.
fn bits_for(who: &Who, f: &Facts) -> u32 {
    match class(who, f) {
        Class::Owner => (f.mode >> 6) & 7,
        Class::Group => (f.mode >> 3) & 7,
        Class::Other => f.mode & 7,
    }
}

/// Whether `who` has all of `need` (rwx bits, 0o7) on the path.
fn can(who: &Who, f: &Facts, need: u32) -> bool {
    who.uid == 0 || bits_for(who, f) & need == need
}

fn letters(bits: u32) -> String {
    [(4, 'r'), (2, 'w'), (1, 'x')].iter().filter(|(b, _)| bits & b != 0).map(|(_, c)| c).collect()
}

/// `path` quoted for a POSIX shell when it needs to be.
pub(crate) fn quote(path: &Path) -> String {
    let s = path.to_string_lossy();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-+:@%,=".contains(&b)) {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The command giving `who` the `need` bits on `path`.
fn grant(path: &Path, f: &Facts, who: &Who, need: u32) -> String {
    let p = quote(path);
    let group_missing = letters(need & !((f.mode >> 3) & 7));
    match class(who, f) {
        Class::Owner => format!("chmod u+{} {p}", letters(need & !((f.mode >> 6) & 7))),
        Class::Group => format!("chmod g+{group_missing} {p}"),
        Class::Other if group_missing.is_empty() => format!("chgrp {} {p}", who.group),
        Class::Other => format!("chgrp {} {p} && chmod g+{group_missing} {p}", who.group),
    }
}

fn owner_of(f: &Facts) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let group = std::fs::read_to_string("/etc/group").unwrap_or_default();
    format!(
        "{}:{}",
        name_for_id(&passwd, f.uid).unwrap_or_else(|| f.uid.to_string()),
        name_for_id(&group, f.gid).unwrap_or_else(|| f.gid.to_string())
    )
}

/// Checks an existing log folder.
pub(crate) fn check_dir(path: &Path, f: &Facts, who: &Who) -> Vec<Problem> {
    let mut out = Vec::new();
    let problem =
        |message: String, fix: Option<String>| Problem { path: path.to_owned(), message, fix };
    if f.kind != Kind::Dir {
        out.push(problem(
            "is not a folder, but the daemon writes log files into it (move it away, or \
             configure another folder)"
                .to_owned(),
            Some(format!("mv {0} {0}.old", quote(path))),
        ));
        return out;
    }
    if f.mode & 0o002 != 0 {
        out.push(problem(
            format!(
                "is writable by everyone (mode {:04o}): anyone could delete, replace or plant log files",
                f.mode
            ),
            Some(format!("chmod o-w {}", quote(path))),
        ));
    }
    if !can(who, f, 0o3) {
        out.push(problem(
            format!(
                "the daemon's {} cannot write to it: it belongs to {} with mode {:04o}",
                who.describe(),
                owner_of(f),
                f.mode
            ),
            Some(grant(path, f, who, 0o3)),
        ));
    }
    out
}

/// Checks a log folder that does not exist yet, from its nearest existing parent.
pub(crate) fn check_missing_dir(
    path: &Path,
    parent: &Path,
    pf: &Facts,
    who: &Who,
    dir_mode: u32,
) -> Vec<Problem> {
    if pf.kind == Kind::Dir && can(who, pf, 0o3) {
        return Vec::new();
    }
    let why = if pf.kind == Kind::Dir {
        format!("{} is not writable by the daemon's {}", parent.display(), who.describe())
    } else {
        format!("{} is not a folder", parent.display())
    };
    vec![Problem {
        path: path.to_owned(),
        message: format!("does not exist and cannot be created: {why}"),
        fix: Some(format!(
            "install -d -o {} -g {} -m {dir_mode:04o} {}",
            who.user,
            who.group,
            quote(path)
        )),
    }]
}

/// Checks an existing log file.
pub(crate) fn check_file(path: &Path, f: &Facts, who: &Who, file_mode: u32) -> Vec<Problem> {
    let mut out = Vec::new();
    let problem =
        |message: String, fix: Option<String>| Problem { path: path.to_owned(), message, fix };
    if f.kind != Kind::File {
        out.push(problem(
            "is not a regular file, but the daemon writes a log there".to_owned(),
            Some(format!("mv {0} {0}.old", quote(path))),
        ));
        return out;
    }
    let world_writable = f.mode & 0o002 != 0;
    let world_readable = f.mode & 0o004 != 0 && file_mode & 0o004 == 0;
    if world_writable || world_readable {
        let (what, bits) = match (world_readable, world_writable) {
            (true, true) => ("readable and writable by everyone", "rw"),
            (true, false) => ("readable by everyone (logs.file_mode does not allow it)", "r"),
            _ => ("writable by everyone: anyone could forge or erase log lines", "w"),
        };
        out.push(problem(
            format!("is {what} (mode {:04o})", f.mode),
            Some(format!("chmod o-{bits} {}", quote(path))),
        ));
    }
    if !can(who, f, 0o2) {
        out.push(problem(
            format!(
                "the daemon's {} cannot write to it: it belongs to {} with mode {:04o}",
                who.describe(),
                owner_of(f),
                f.mode
            ),
            Some(grant(path, f, who, 0o2)),
        ));
    }
    out
}

/// Asks the kernel whether this process may write (and, for a folder, enter) `path`:
/// catches what the mode bits do not show (read-only mounts, ACLs, a parent folder the
/// daemon cannot enter).
fn access_problem(path: &Path, dir: bool) -> Option<Problem> {
    use rustix::fs::{Access, AtFlags, CWD};
    if let Some(fs) = pseudo_filesystem(path) {
        return Some(Problem {
            path: path.to_owned(),
            message: format!("is on the kernel's {fs} filesystem, where no log can be written"),
            fix: Some("set `logs.dir` (or the log file) to a folder on a disk".to_owned()),
        });
    }
    let need = if dir { Access::WRITE_OK | Access::EXEC_OK } else { Access::WRITE_OK };
    let e = rustix::fs::accessat(CWD, path, need, AtFlags::EACCESS).err()?;
    let e = io::Error::from(e);
    let (message, fix) = match e.kind() {
        io::ErrorKind::ReadOnlyFilesystem => (
            "is on a read-only filesystem".to_owned(),
            Some(format!(
                "remount it read-write, or under systemd with ProtectSystem= add \
                 `ReadWritePaths={}` to the unit",
                path.display()
            )),
        ),
        _ => (
            format!(
                "is not writable by the daemon: {e} (an ACL, or a parent folder it cannot enter?)"
            ),
            Some(format!("namei -l {}   # shows the mode of each parent", quote(path))),
        ),
    };
    Some(Problem { path: path.to_owned(), message, fix })
}

/// The kernel filesystem `path` is on when it is one that holds no files of ours (`proc`,
/// `sysfs`, ...): permission bits there say nothing of what can be created (root passes
/// `access(2)` on `/proc`, yet `mkdir /proc/x` fails).
fn pseudo_filesystem(path: &Path) -> Option<&'static str> {
    let kind = rustix::fs::statfs(path).ok()?.f_type;
    [
        (0x9fa0, "proc"),
        (0x6265_6572, "sysfs"),
        (0x6367_7270, "cgroup2"),
        (0x0027_e0eb, "cgroup"),
        (0x1cd1, "devpts"),
        (0x6462_6720, "debugfs"),
        (0x7363_6673, "securityfs"),
    ]
    .into_iter()
    .find(|&(magic, _)| kind as i64 == magic)
    .map(|(_, name)| name)
}

fn facts(path: &Path) -> io::Result<Option<Facts>> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(Facts::of(&m))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Checks one folder the daemon will write, and the log files in it named `STEM.EXT` or
/// `STEM_r*` for each of `stems`.
fn check_dir_tree(
    dir: &Path,
    stems: &[String],
    who: &Who,
    dir_mode: u32,
    file_mode: u32,
    out: &mut Vec<Problem>,
) {
    let f = match facts(dir) {
        Ok(f) => f,
        Err(e) => {
            out.push(Problem {
                path: dir.to_owned(),
                message: format!("cannot be examined: {e}"),
                fix: Some(format!("namei -l {}", quote(dir))),
            });
            return;
        }
    };
    let Some(f) = f else {
        let mut parent = dir;
        loop {
            let Some(p) = parent.parent() else { return };
            parent = p;
            if let Ok(Some(pf)) = facts(parent) {
                let found = check_missing_dir(dir, parent, &pf, who, dir_mode);
                if found.is_empty()
                    && let Some(p) = access_problem(parent, true)
                {
                    out.push(Problem {
                        message: format!("cannot be created: {} {}", parent.display(), p.message),
                        path: dir.to_owned(),
                        fix: p.fix,
                    });
                }
                out.extend(found);
                return;
            }
        }
    };
    let found = check_dir(dir, &f, who);
    let clean = found.is_empty();
    out.extend(found);
    if f.kind != Kind::Dir {
        return;
    }
    if clean && let Some(p) = access_problem(dir, true) {
        out.push(p);
    }
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    let mut names: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    names.sort();
    for path in names {
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let ours = stems.iter().any(|stem| {
            name.strip_prefix(stem.as_str())
                .is_some_and(|rest| rest.starts_with('.') || rest.starts_with("_r"))
        });
        if !ours {
            continue;
        }
        if let Ok(Some(ff)) = facts(&path) {
            let found = check_file(&path, &ff, who, file_mode);
            if found.is_empty()
                && ff.kind == Kind::File
                && let Some(p) = access_problem(&path, false)
            {
                out.push(p);
            }
            out.extend(found);
        }
    }
}

/// The stem of a log file's name (`access` for `access.log`).
fn stem(path: &Path) -> String {
    path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Checks every log folder and file `config` makes the daemon write (see the module docs).
/// `gatehouse check` and `serve` print the problems and fail; a reload keeps the running
/// configuration.
pub fn check_log_dirs(config: &Config) -> Result<(), Vec<Problem>> {
    check_log_dirs_as(config, &Who::current())
}

pub(crate) fn check_log_dirs_as(config: &Config, who: &Who) -> Result<(), Vec<Problem>> {
    let logs = &config.logs;
    let mut out = Vec::new();
    // File logs outside of logs.dir, grouped by folder.
    let mut extra: Vec<(PathBuf, Vec<String>)> = Vec::new();
    let mut logs_dir_stems = Vec::new();
    let files = logs.access_log.file().into_iter().chain(match &logs.error_log {
        ErrorLog::File(p) => Some(p),
        ErrorLog::Stderr => None,
    });
    for file in files {
        let Some(dir) = file.parent() else { continue };
        if dir == config.logs_dir {
            logs_dir_stems.push(stem(file));
        } else if let Some((_, stems)) = extra.iter_mut().find(|(d, _)| d == dir) {
            stems.push(stem(file));
        } else {
            extra.push((dir.to_owned(), vec![stem(file)]));
        }
    }
    check_dir_tree(&config.logs_dir, &logs_dir_stems, who, logs.dir_mode, logs.file_mode, &mut out);
    // Each app's folder in logs.dir.
    if let Ok(entries) = std::fs::read_dir(&config.logs_dir) {
        let mut dirs: Vec<PathBuf> =
            entries.flatten().map(|e| e.path()).filter(|p| p.is_dir()).collect();
        dirs.sort();
        for dir in dirs {
            check_dir_tree(
                &dir,
                &["debug".to_owned()],
                who,
                logs.dir_mode,
                logs.file_mode,
                &mut out,
            );
        }
    }
    for (dir, stems) in &extra {
        check_dir_tree(dir, stems, who, logs.dir_mode, logs.file_mode, &mut out);
    }
    if out.is_empty() { Ok(()) } else { Err(out) }
}

/// The command that would let the daemon write into `dir`, if a mode or owner is why it
/// cannot (for the hint of a write failure).
pub(crate) fn fix_for_dir(dir: &Path) -> Option<String> {
    let who = Who::current();
    let mut out = Vec::new();
    check_dir_tree(dir, &[], &who, gatehouse_config::DEFAULT_DIR_MODE, 0o640, &mut out);
    out.into_iter().find_map(|p| p.fix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(uid: u32, gid: u32, groups: &[u32]) -> Who {
        Who {
            uid,
            gid,
            groups: groups.to_vec(),
            user: "gatehouse".to_owned(),
            group: "gatehouse".to_owned(),
        }
    }

    fn dir(mode: u32, uid: u32, gid: u32) -> Facts {
        Facts { kind: Kind::Dir, mode, uid, gid }
    }

    fn file(mode: u32, uid: u32, gid: u32) -> Facts {
        Facts { kind: Kind::File, mode, uid, gid }
    }

    /// (facts, who, expected (message part, fix) per problem)
    type Case = (Facts, Who, &'static [(&'static str, &'static str)]);

    #[test]
    fn folders_table() {
        let p = Path::new("/var/log/gatehouse");
        let cases: &[Case] = &[
            // Ours, 0750: fine.
            (dir(0o750, 998, 998), who(998, 998, &[]), &[]),
            // The seed's case: root's folder, the daemon in neither owner nor group.
            (
                dir(0o755, 0, 0),
                who(998, 998, &[]),
                &[(
                    "cannot write to it: it belongs to",
                    "chgrp gatehouse /var/log/gatehouse && chmod g+w /var/log/gatehouse",
                )],
            ),
            // Our group (supplementary), but no group write.
            (
                dir(0o750, 0, 33),
                who(998, 998, &[33]),
                &[("mode 0750", "chmod g+w /var/log/gatehouse")],
            ),
            // Our group, neither write nor enter.
            (
                dir(0o700, 0, 998),
                who(998, 998, &[]),
                &[("mode 0700", "chmod g+wx /var/log/gatehouse")],
            ),
            // Our group with write: fine.
            (dir(0o770, 0, 998), who(998, 998, &[]), &[]),
            // Ours but read-only.
            (
                dir(0o550, 998, 998),
                who(998, 998, &[]),
                &[("mode 0550", "chmod u+w /var/log/gatehouse")],
            ),
            // Root writes anywhere; world-writable is still refused.
            (dir(0o555, 1, 1), who(0, 0, &[]), &[]),
            (
                dir(0o777, 0, 0),
                who(0, 0, &[]),
                &[("writable by everyone (mode 0777)", "chmod o-w /var/log/gatehouse")],
            ),
            (
                dir(0o1777, 0, 0),
                who(998, 998, &[]),
                &[("writable by everyone", "chmod o-w /var/log/gatehouse")],
            ),
            (
                Facts { kind: Kind::File, mode: 0o644, uid: 0, gid: 0 },
                who(998, 998, &[]),
                &[("is not a folder", "mv /var/log/gatehouse /var/log/gatehouse.old")],
            ),
        ];
        for (facts, w, expected) in cases {
            let got = check_dir(p, facts, w);
            assert_problems(&got, expected, &format!("{facts:?} {w:?}"));
        }
    }

    #[test]
    fn missing_folders_table() {
        let p = Path::new("/var/log/gatehouse");
        let parent = Path::new("/var/log");
        let cases: &[Case] = &[
            (dir(0o775, 0, 998), who(998, 998, &[]), &[]),
            (
                dir(0o755, 0, 0),
                who(998, 998, &[]),
                &[(
                    "does not exist and cannot be created: /var/log is not writable",
                    "install -d -o gatehouse -g gatehouse -m 0750 /var/log/gatehouse",
                )],
            ),
            (dir(0o755, 0, 0), who(0, 0, &[]), &[]),
            (file(0o644, 0, 0), who(0, 0, &[]), &[("/var/log is not a folder", "install -d")]),
        ];
        for (facts, w, expected) in cases {
            let got = check_missing_dir(p, parent, facts, w, 0o750);
            assert_problems(&got, expected, &format!("{facts:?} {w:?}"));
        }
    }

    #[test]
    fn files_table() {
        let p = Path::new("/var/log/gatehouse/my app/debug.log");
        let q = "'/var/log/gatehouse/my app/debug.log'";
        type FileCase<'a> = (Facts, u32, &'a [(&'a str, String)]);
        let cases: &[FileCase<'_>] = &[
            (file(0o640, 998, 998), 0o640, &[]),
            (file(0o600, 998, 998), 0o640, &[]),
            (file(0o644, 998, 998), 0o640, &[("readable by everyone", format!("chmod o-r {q}"))]),
            // Configured to be world-readable: fine.
            (file(0o644, 998, 998), 0o644, &[]),
            (
                file(0o646, 998, 998),
                0o640,
                &[("readable and writable by everyone", format!("chmod o-rw {q}"))],
            ),
            (file(0o662, 998, 998), 0o644, &[("writable by everyone", format!("chmod o-w {q}"))]),
            (
                file(0o640, 0, 0),
                0o640,
                &[("cannot write to it", format!("chgrp gatehouse {q} && chmod g+w {q}"))],
            ),
            (
                Facts { kind: Kind::Other, mode: 0o640, uid: 998, gid: 998 },
                0o640,
                &[("is not a regular file", format!("mv {q} {q}.old"))],
            ),
        ];
        let w = who(998, 998, &[]);
        for (facts, file_mode, expected) in cases {
            let got = check_file(p, facts, &w, *file_mode);
            let expected: Vec<(&str, &str)> =
                expected.iter().map(|(m, f)| (*m, f.as_str())).collect();
            assert_problems(&got, &expected, &format!("{facts:?} {file_mode:o}"));
        }
    }

    fn assert_problems(got: &[Problem], expected: &[(&str, &str)], case: &str) {
        assert_eq!(got.len(), expected.len(), "{case}: {got:#?}");
        for (p, (message, fix)) in got.iter().zip(expected) {
            assert!(p.message.contains(message), "{case}: {p}");
            assert!(p.fix.as_deref().is_some_and(|f| f.starts_with(fix)), "{case}: {p}");
        }
    }

    #[test]
    fn names_and_quoting() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\ngatehouse:x:998:998::/nonexistent:/usr/sbin/nologin\n";
        assert_eq!(name_for_id(passwd, 998).as_deref(), Some("gatehouse"));
        assert_eq!(name_for_id(passwd, 0).as_deref(), Some("root"));
        assert_eq!(name_for_id(passwd, 5), None);
        assert_eq!(name_for_id("broken line\n::7:\n", 7), None);
        assert_eq!(quote(Path::new("/var/log/g-h_1.x")), "/var/log/g-h_1.x");
        assert_eq!(quote(Path::new("/a b/it's")), r"'/a b/it'\''s'");
        assert_eq!(letters(0o7), "rwx");
        assert_eq!(letters(0o3), "wx");
    }

    #[test]
    fn a_real_tree_is_checked_with_the_files_that_are_ours() {
        use std::os::unix::fs::PermissionsExt as _;
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("log");
        std::fs::create_dir_all(root.join("myapp")).expect("mkdir");
        std::fs::write(root.join("myapp/debug.log"), "x\n").expect("write");
        std::fs::write(root.join("myapp/debug_r2024-01-01_00-00-00.log"), "x\n").expect("write");
        std::fs::write(root.join("myapp/notes.txt"), "not ours\n").expect("write");
        for f in ["myapp/debug.log", "myapp/debug_r2024-01-01_00-00-00.log", "myapp/notes.txt"] {
            std::fs::set_permissions(root.join(f), std::fs::Permissions::from_mode(0o644))
                .expect("chmod");
        }
        std::fs::set_permissions(root.join("myapp"), std::fs::Permissions::from_mode(0o777))
            .expect("chmod");
        let text = format!("logs: {{dir: {}}}\naliases: []\n", root.display());
        let config =
            gatehouse_config::parse(&text, &tmp.path().join("hosting.yaml")).expect("valid").config;
        let me = Who::current();
        let problems = check_log_dirs_as(&config, &me).expect_err("problems");
        let shown: Vec<String> = problems.iter().map(ToString::to_string).collect();
        assert_eq!(problems.len(), 3, "{shown:#?}");
        assert!(shown[0].contains("myapp: is writable by everyone"), "{shown:#?}");
        assert!(shown[1].contains("debug.log: is readable by everyone"), "{shown:#?}");
        assert!(shown[2].contains("debug_r2024-01-01_00-00-00.log: is readable"), "{shown:#?}");
        // A missing logs.dir under a writable folder is fine: it will be created.
        let text =
            format!("logs: {{dir: {}}}\naliases: []\n", tmp.path().join("new/log").display());
        let config =
            gatehouse_config::parse(&text, &tmp.path().join("hosting.yaml")).expect("valid").config;
        assert_eq!(check_log_dirs_as(&config, &me), Ok(()));
    }
}
