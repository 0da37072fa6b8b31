//! An alias's `isolation` and the keys of its worker processes (`processes`, `user`,
//! `group`, `maximum_requests`, `memory_limit`), like mod_wsgi's `WSGIDaemonProcess`.
//!
//! ```yaml
//! - url: /crashy
//!   path: target/release/libcrashy.so
//!   isolation: process      # `in-process` (the default) or `process`
//!   processes: 2            # worker processes, 1..=64 (default 2)
//!   threads: 4              # app threads per worker
//!   user: www-data          # run the workers as this user (the daemon must start as root)
//!   group: www-data         # ... and group (default: the user's primary group)
//!   maximum_requests: 10000 # recycle a worker after this many requests
//!   memory_limit: 512MiB    # recycle a worker whose resident memory passes this
//!   startup_timeout: 60s    # a worker not ready (its apps loaded) by then is killed and
//!                           # started again (mod_wsgi's startup-timeout)
//! ```
//!
//! `user` and `group` are resolved against the system's user and group database when the
//! file is read (so `gatehouse check` reports them, like every other error, at their line
//! and column), into [`ProcessSettings::uid`] and [`ProcessSettings::gid`]:
//! - a name must exist (getpwnam_r / getgrnam_r); a number is taken as the id;
//! - without `group`, the workers' group is the user's primary group: a numeric `user`
//!   with no entry in the user database then needs a `group` (the workers would otherwise
//!   keep the daemon's group, root's);
//! - 4294967295 is not an id (it means "unchanged" to setuid and setgid).

use crate::accounts::Accounts;
use crate::diagnostic::{Diags, Pos};
use crate::limits::count;
use crate::node::Value;
use crate::validate::{Fields, size_value, text_value};
use crate::{Dispatch, Isolation};

/// `processes` when not written.
pub const DEFAULT_PROCESSES: usize = 2;
/// The largest accepted `processes`.
pub const MAX_PROCESSES: usize = 64;

/// The keys that only mean something with `isolation: process`.
pub(crate) const PROCESS_KEYS: &[&str] = &[
    "processes",
    "user",
    "group",
    "maximum_requests",
    "memory_limit",
    "startup_timeout",
    "inactivity_timeout",
    "restart_interval",
    "home",
    "umask",
    "lang",
    "locale",
    "display_name",
    "supplementary_groups",
    "deadlock_timeout",
];

/// The worker processes of an alias with `isolation: process`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProcessSettings {
    /// How many worker processes (`processes`); each runs the alias's `threads`.
    pub processes: usize,
    /// The user the workers run as (`user`), by name or number, as written; the daemon's
    /// when absent. For messages: [`ProcessSettings::uid`] is what to switch to.
    pub user: Option<String>,
    /// The group the workers run as (`group`), as written; the user's primary group when
    /// absent. For messages: [`ProcessSettings::gid`] is what to switch to.
    pub group: Option<String>,
    /// `user` resolved when the file was read: a name's uid (getpwnam_r), or the number as
    /// written. `None` when `user` is absent (the workers keep the daemon's user).
    pub uid: Option<u32>,
    /// The workers' group, resolved when the file was read: `group` (a name's gid, or the
    /// number as written) if given, else the primary group of `user`'s entry. Always `Some`
    /// when [`ProcessSettings::uid`] is (a numeric `user` with no entry needs a `group`);
    /// `None` when neither key is written (the workers keep the daemon's group).
    pub gid: Option<u32>,
    /// A worker is recycled after this many requests (`maximum_requests`).
    pub maximum_requests: Option<u64>,
    /// A worker whose resident memory passes this many bytes is recycled (`memory_limit`).
    pub memory_limit: Option<u64>,
    /// A worker not ready this long after it started (its apps not loaded: a hung `init`)
    /// is killed and started again (`startup_timeout`, default 60 s).
    pub startup_timeout: std::time::Duration,
    /// A worker that served no request this long is replaced (`inactivity_timeout`,
    /// mod_wsgi's `inactivity-timeout`): what it held is given back.
    pub inactivity_timeout: Option<std::time::Duration>,
    /// A worker is replaced once it has run this long, after its requests in flight
    /// (`restart_interval`).
    pub restart_interval: Option<std::time::Duration>,
    /// The workers' working directory (`home`), absolute; the daemon's when absent.
    pub home: Option<std::path::PathBuf>,
    /// The workers' umask (`umask`, octal); the daemon's when absent.
    pub umask: Option<u32>,
    /// The workers' `LANG` (`lang`).
    pub lang: Option<String>,
    /// The workers' `LC_ALL` (`locale`).
    pub locale: Option<String>,
    /// What `ps` shows for a worker (`display_name`); `gatehouse worker /URL` when absent.
    pub display_name: Option<String>,
    /// Groups the workers get beside their user's own (`supplementary_groups`, resolved to
    /// gids when the file was read); only with `user`.
    pub supplementary_groups: Vec<u32>,
    /// For the WSGI bridge: a worker whose Python interpreter is held (its GIL not given up)
    /// this long is ended and replaced (`deadlock_timeout`, mod_wsgi's `deadlock-timeout`).
    pub deadlock_timeout: Option<std::time::Duration>,
}

/// `startup_timeout` when not written: how long a new worker may take to load its apps.
pub const DEFAULT_STARTUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Reads an alias's isolation keys; `dispatch` is the alias's (inline cannot be isolated).
/// `accounts` resolves `user` and `group`.
pub(crate) fn read(
    f: &Fields<'_>,
    dispatch: Dispatch,
    dir: &std::path::Path,
    accounts: &dyn Accounts,
    d: &mut Diags,
) -> Isolation {
    let mode = f.get("isolation").and_then(|n| {
        let text = text_value(n, "isolation", d)?;
        match text {
            "in-process" => Some(false),
            "process" => Some(true),
            other => {
                d.error_hint(
                    n.pos,
                    format!("`isolation` must be `in-process` or `process`, found `{other}`"),
                    "`process` runs the alias's apps in worker processes (a crash fails only their \
                     requests); `in-process` (the default) runs them in the daemon, fastest",
                );
                None
            }
        }
    });
    if mode != Some(true) {
        // Unknown or in-process: the process keys are errors (unless the mode itself was).
        if mode == Some(false) || f.get("isolation").is_none() {
            for key in PROCESS_KEYS {
                if let Some(n) = f.get(key) {
                    d.error_hint(
                        n.pos,
                        format!(
                            "`{key}` applies to worker processes, and this alias runs in-process"
                        ),
                        "add `isolation: process` to the alias, or remove the key",
                    );
                }
            }
        }
        return Isolation::InProcess;
    }
    // Only the alias's own `dispatch: inline` is an error: an inherited one does not apply
    // to an isolated alias (see `alias::one`).
    if let (Dispatch::Inline, Some(n)) = (dispatch, f.get("dispatch")) {
        d.error_hint(
            n.pos,
            "`dispatch: inline` runs apps on the daemon's HTTP workers, which `isolation: process` rules out",
            "remove `dispatch: inline` from this alias (or write `dispatch: pool`)",
        );
    }
    let processes = f
        .get("processes")
        .and_then(|n| count(n, "processes", 1, MAX_PROCESSES as u64, d))
        .map_or(DEFAULT_PROCESSES, |n| n as usize);
    let name = |key: &str, d: &mut Diags| {
        let n = f.get(key)?;
        let text = text_value(n, key, d)?;
        let valid = !text.is_empty()
            && text.len() <= 64
            && !text.starts_with('-')
            && text.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-$".contains(&b));
        if !valid {
            d.error_hint(
                n.pos,
                format!("`{key}` must be a {key} name or a number, found `{text}`"),
                format!("write an existing {key}, like `www-data`"),
            );
            return None;
        }
        Some((text, n.pos))
    };
    let user = name("user", d);
    let group = name("group", d);
    let (uid, gid) = ids(user, group, accounts, d);
    let maximum_requests = f
        .get("maximum_requests")
        .and_then(|n| count(n, "maximum_requests", 1, u64::from(u32::MAX), d));
    let memory_limit = f.get("memory_limit").and_then(|n| {
        let bytes = size_value(n, "memory_limit", d)?;
        if bytes < 16 * 1024 * 1024 {
            d.error_hint(
                n.pos,
                format!("`memory_limit` must be at least 16MiB, found {bytes} bytes"),
                "a worker process needs a few MiB before any app runs; write e.g. `512MiB`",
            );
            return None;
        }
        Some(bytes)
    });
    let startup_timeout = f
        .get("startup_timeout")
        .and_then(|n| crate::limits::duration(n, "startup_timeout", d))
        .unwrap_or(DEFAULT_STARTUP_TIMEOUT);
    let duration =
        |key: &str, d: &mut Diags| f.get(key).and_then(|n| crate::limits::duration(n, key, d));
    let inactivity_timeout = duration("inactivity_timeout", d);
    let restart_interval = duration("restart_interval", d);
    let deadlock_timeout = duration("deadlock_timeout", d);
    let home = f.get("home").and_then(|n| {
        let written = crate::validate::path_value(n, "home", d)?;
        let home = crate::validate::resolve(dir, written);
        if home.is_dir() {
            Some(home)
        } else {
            d.error_hint(
                n.pos,
                format!("`home` {} is not a folder", home.display()),
                "give the folder the workers start in (their working directory)",
            );
            None
        }
    });
    let umask = f.get("umask").and_then(|n| {
        let text = n.text()?;
        match u32::from_str_radix(text.trim_start_matches("0o"), 8) {
            Ok(mask) if mask <= 0o777 => Some(mask),
            _ => {
                d.error_hint(
                    n.pos,
                    format!("`umask` must be an octal mask like 0027, found `{text}`"),
                    "write the mask in octal, as for the shell's umask: `0027`, `0077`",
                );
                None
            }
        }
    });
    let text = |key: &str, d: &mut Diags| {
        let n = f.get(key)?;
        let t = text_value(n, key, d)?;
        if t.is_empty() || t.len() > 128 || t.chars().any(char::is_control) {
            d.error(n.pos, format!("`{key}` must be a short line of text, found {t:?}"));
            return None;
        }
        Some(t.to_owned())
    };
    let supplementary_groups = f.get("supplementary_groups").map_or_else(Vec::new, |n| {
        let Value::Seq(items) = &n.value else {
            d.error_hint(
                n.pos,
                format!("`supplementary_groups` must be a list, found {}", n.kind()),
                "write `supplementary_groups: [ssl-cert, 1001]`",
            );
            return Vec::new();
        };
        if user.is_none() {
            d.error_hint(
                n.pos,
                "`supplementary_groups` applies to workers that run as another `user`",
                "add `user:` to the alias, or remove the key",
            );
        }
        items
            .iter()
            .filter_map(|item| {
                let text = text_value(item, "supplementary_groups", d)?;
                match id(text, "group", item.pos, d)? {
                    Some(gid) => Some(gid),
                    None => match accounts.group_by_name(text) {
                        Ok(Some(gid)) => Some(gid),
                        Ok(None) => {
                            d.error_hint(
                                item.pos,
                                format!("group `{text}` does not exist"),
                                format!("create it (`groupadd --system {text}`), or fix the list"),
                            );
                            None
                        }
                        Err(e) => {
                            lookup_failed(item.pos, &format!("group `{text}`"), &e, d);
                            None
                        }
                    },
                }
            })
            .collect()
    });
    let lang = text("lang", d);
    let locale = text("locale", d);
    let display_name = text("display_name", d);
    Isolation::Process(ProcessSettings {
        processes,
        user: user.map(|(text, _)| text.to_owned()),
        group: group.map(|(text, _)| text.to_owned()),
        uid,
        gid,
        maximum_requests,
        memory_limit,
        startup_timeout,
        inactivity_timeout,
        restart_interval,
        home,
        umask,
        lang,
        locale,
        display_name,
        supplementary_groups,
        deadlock_timeout,
    })
}

/// `user` and `group` (each with its value's position) as `(uid, gid)`: the gid is the
/// group's, else the user's primary group. Reports what does not resolve (then the ids
/// are meaningless, as the file has errors).
fn ids(
    user: Option<(&str, Pos)>,
    group: Option<(&str, Pos)>,
    accounts: &dyn Accounts,
    d: &mut Diags,
) -> (Option<u32>, Option<u32>) {
    let gid = group.and_then(|(text, pos)| match id(text, "group", pos, d)? {
        Some(gid) => Some(gid),
        None => match accounts.group_by_name(text) {
            Ok(Some(gid)) => Some(gid),
            Ok(None) => {
                d.error_hint(
                    pos,
                    format!("group `{text}` does not exist"),
                    format!("create it (`groupadd --system {text}`), or fix `group`"),
                );
                None
            }
            Err(e) => {
                lookup_failed(pos, &format!("group `{text}`"), &e, d);
                None
            }
        },
    });
    let Some((text, pos)) = user else { return (None, gid) };
    let Some(number) = id(text, "user", pos, d) else { return (None, gid) };
    let entry = match (number, group) {
        // A number with a `group`: nothing to look up.
        (Some(uid), Some(_)) => return (Some(uid), gid),
        (Some(uid), None) => accounts.user_by_uid(uid),
        (None, _) => accounts.user_by_name(text),
    };
    match (entry, number) {
        (Ok(Some(entry)), _) => (Some(entry.uid), gid.or(group.is_none().then_some(entry.gid))),
        (Ok(None), Some(uid)) => {
            d.error_hint(
                pos,
                format!(
                    "uid {uid} has no entry in the user database, so the workers' group is \
                     unknown: they would keep the daemon's group (root's)"
                ),
                "add `group: GID`, or create the user",
            );
            (Some(uid), gid)
        }
        (Ok(None), None) => {
            d.error_hint(
                pos,
                format!("user `{text}` does not exist"),
                format!("create it (`useradd --system {text}`), or fix `user`"),
            );
            (None, gid)
        }
        (Err(e), _) => {
            lookup_failed(pos, &format!("user `{text}`"), &e, d);
            (None, gid)
        }
    }
}

/// A `user` or `group` written as a number: `Some(Some(id))`; a name: `Some(None)`; a
/// number that is not an id (past 4294967294): `None`, reported.
fn id(text: &str, key: &str, pos: Pos, d: &mut Diags) -> Option<Option<u32>> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Some(None);
    }
    match text.parse::<u32>() {
        Ok(id) if id != u32::MAX => Some(Some(id)),
        _ => {
            d.error_hint(
                pos,
                format!("`{key}` must be a {key} name or an id below 4294967295, found `{text}`"),
                format!(
                    "4294967295 means \"unchanged\" to setuid and setgid: write the {key}'s \
                     name or id"
                ),
            );
            None
        }
    }
}

/// Reports a user or group database lookup that failed (not one that found nothing).
fn lookup_failed(pos: Pos, what: &str, error: &str, d: &mut Diags) {
    d.error_hint(
        pos,
        format!("cannot look up {what}: {error}"),
        "check the system's user and group database (`getent passwd`, `getent group`, \
         /etc/nsswitch.conf)",
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use crate::testutil::{Expected, check_errors_table, fixture};
    use crate::{Isolation, ProcessSettings};

    fn alias(keys: &str) -> String {
        format!("aliases:\n  - url: /a\n    path: lib/app.so\n{keys}")
    }

    #[test]
    fn defaults_and_values() {
        let fx = fixture();
        let c = fx.ok(&alias("")).config;
        assert_eq!(c.aliases[0].isolation, Isolation::InProcess);
        let c = fx.ok(&alias("    isolation: process\n")).config;
        assert_eq!(
            c.aliases[0].isolation,
            Isolation::Process(ProcessSettings {
                processes: 2,
                user: None,
                group: None,
                uid: None,
                gid: None,
                maximum_requests: None,
                memory_limit: None,
                startup_timeout: super::DEFAULT_STARTUP_TIMEOUT,
                inactivity_timeout: None,
                restart_interval: None,
                home: None,
                umask: None,
                lang: None,
                locale: None,
                display_name: None,
                supplementary_groups: Vec::new(),
                deadlock_timeout: None,
            })
        );
        // A global `dispatch: inline` is not an isolated alias's.
        let c = fx.ok(&format!("dispatch: inline\n{}", alias("    isolation: process\n"))).config;
        assert_eq!(c.aliases[0].dispatch, crate::Dispatch::Pool);
        let c = fx
            .ok(&alias(
                "    isolation: process\n    processes: 3\n    threads: 2\n    user: www-data\n    \
                 group: \"33\"\n    maximum_requests: 100\n    memory_limit: 64MiB\n    \
                 startup_timeout: 5s\n    inactivity_timeout: 10m\n    restart_interval: 1h\n    \
                 home: lib\n    umask: \"0027\"\n    lang: en_US.UTF-8\n    locale: C.UTF-8\n    \
                 display_name: \"(wsgi:app)\"\n",
            ))
            .config;
        assert_eq!(c.aliases[0].threads, 2);
        assert_eq!(
            c.aliases[0].isolation,
            Isolation::Process(ProcessSettings {
                processes: 3,
                user: Some("www-data".into()),
                group: Some("33".into()),
                uid: Some(33),
                gid: Some(33),
                maximum_requests: Some(100),
                memory_limit: Some(64 * 1024 * 1024),
                startup_timeout: std::time::Duration::from_secs(5),
                inactivity_timeout: Some(std::time::Duration::from_secs(600)),
                restart_interval: Some(std::time::Duration::from_secs(3600)),
                home: Some(fx.tmp.path().join("lib")),
                umask: Some(0o027),
                lang: Some("en_US.UTF-8".into()),
                locale: Some("C.UTF-8".into()),
                display_name: Some("(wsgi:app)".into()),
                supplementary_groups: Vec::new(),
                deadlock_timeout: None,
            })
        );
    }

    #[test]
    fn errors_table() {
        let cases: Vec<(String, Expected)> = vec![
            (
                alias("    isolation: thread\n"),
                &[(4, 16, "`in-process` or `process`, found `thread`")],
            ),
            (alias("    isolation: [process]\n"), &[(4, 16, "isolation")]),
            (alias("    processes: 2\n"), &[(4, 16, "`processes` applies to worker processes")]),
            (
                alias("    isolation: in-process\n    user: nobody\n    memory_limit: 1G\n"),
                &[(5, 11, "`user` applies"), (6, 19, "`memory_limit` applies")],
            ),
            // In-process, `user` is only misplaced: it is not looked up.
            (alias("    user: gatehouse-no-such-user\n"), &[(4, 11, "`user` applies")]),
            (alias("    isolation: process\n    processes: 0\n"), &[(5, 16, "between 1 and 64")]),
            (alias("    isolation: process\n    processes: 65\n"), &[(5, 16, "between 1 and 64")]),
            (alias("    isolation: process\n    user: \"a b\"\n"), &[(5, 11, "a user name")]),
            (alias("    isolation: process\n    group: \"\"\n"), &[(5, 12, "a group name")]),
            (
                alias("    isolation: process\n    maximum_requests: 0\n"),
                &[(5, 23, "between 1 and")],
            ),
            (
                alias("    isolation: process\n    memory_limit: 1MiB\n"),
                &[(5, 19, "at least 16MiB")],
            ),
            (
                alias("    isolation: process\n    dispatch: inline\n"),
                &[(5, 15, "`dispatch: inline` runs apps on the daemon's HTTP workers")],
            ),
        ];
        check_errors_table(&cases);
    }

    /// A (uid, gid) pair of [`ProcessSettings`].
    type Ids = (Option<u32>, Option<u32>);

    /// The settings' (uid, gid) for an isolated alias with `keys`.
    fn ids(fx: &crate::testutil::Fixture, keys: &str) -> Ids {
        let text = alias(&format!("    isolation: process\n{keys}"));
        match fx.ok(&text).config.aliases[0].isolation.clone() {
            Isolation::Process(p) => (p.uid, p.gid),
            Isolation::InProcess => panic!("in-process: {text}"),
        }
    }

    #[test]
    fn user_and_group_resolve_to_ids() {
        // Against the test database (`accounts::table`): www-data 33/33, app 1000 with
        // primary group 1001, group staff 50, nogroup 65534; no user 1234.
        let cases: &[(&str, Ids)] = &[
            ("", (None, None)),
            ("    user: www-data\n", (Some(33), Some(33))),
            // without `group`: the user's primary group
            ("    user: app\n", (Some(1000), Some(1001))),
            ("    user: app\n    group: staff\n", (Some(1000), Some(50))),
            ("    user: app\n    group: \"7\"\n", (Some(1000), Some(7))),
            // a number with an entry: its primary group
            ("    user: \"1000\"\n", (Some(1000), Some(1001))),
            ("    user: 0\n", (Some(0), Some(0))),
            // a number without an entry is accepted with a group (looked up or not)
            ("    user: \"1234\"\n    group: \"1234\"\n", (Some(1234), Some(1234))),
            ("    user: 1234\n    group: staff\n", (Some(1234), Some(50))),
            // with a group, the uid is not looked up (this one's lookup would fail)
            ("    user: 4040\n    group: \"5\"\n", (Some(4040), Some(5))),
            // a group alone: the workers keep the daemon's user
            ("    group: nogroup\n", (None, Some(65534))),
            ("    group: 4294967294\n", (None, Some(4_294_967_294))),
        ];
        let fx = fixture();
        for (keys, expected) in cases {
            assert_eq!(ids(&fx, keys), *expected, "{keys}");
        }
    }

    #[test]
    fn unresolved_user_and_group_are_positioned_errors() {
        // (keys of an isolated alias from line 5, the errors: line, column, part of the
        // message, part of the hint)
        type Case = (&'static str, &'static [(usize, usize, &'static str, &'static str)]);
        let cases: &[Case] = &[
            (
                "    user: gatehouse-no-such-user\n",
                &[(
                    5,
                    11,
                    "user `gatehouse-no-such-user` does not exist",
                    "create it (`useradd --system gatehouse-no-such-user`), or fix `user`",
                )],
            ),
            (
                "    user: www-data\n    group: gatehouse-no-such-group\n",
                &[(
                    6,
                    12,
                    "group `gatehouse-no-such-group` does not exist",
                    "create it (`groupadd --system gatehouse-no-such-group`), or fix `group`",
                )],
            ),
            // both reported at once
            (
                "    group: nosuchgroup\n    user: nosuchuser\n",
                &[
                    (5, 12, "group `nosuchgroup` does not exist", "groupadd"),
                    (6, 11, "user `nosuchuser` does not exist", "useradd"),
                ],
            ),
            // a number without an entry and without a group: the group would be the daemon's
            (
                "    user: \"1234\"\n",
                &[(
                    5,
                    11,
                    "uid 1234 has no entry in the user database, so the workers' group is unknown",
                    "add `group: GID`, or create the user",
                )],
            ),
            ("    processes: 1\n    user: 1234\n", &[(6, 11, "uid 1234 has no entry", "group")]),
            // ... with a group that does not exist, only the group is wrong
            (
                "    user: \"1234\"\n    group: nosuchgroup\n",
                &[(6, 12, "group `nosuchgroup` does not exist", "groupadd")],
            ),
            // (uid_t)-1 and numbers past it
            (
                "    user: 4294967295\n    group: \"1\"\n",
                &[(5, 11, "`user` must be a user name or an id below 4294967295", "unchanged")],
            ),
            (
                "    group: \"99999999999\"\n",
                &[(5, 12, "`group` must be a group name or an id below 4294967295", "unchanged")],
            ),
            // a lookup that fails is not a missing entry
            (
                "    user: broken\n",
                &[(5, 11, "cannot look up user `broken`: Input/output error", "getent passwd")],
            ),
            (
                "    user: www-data\n    group: broken\n",
                &[(6, 12, "cannot look up group `broken`: Input/output error", "getent group")],
            ),
            (
                "    user: \"4040\"\n",
                &[(5, 11, "cannot look up user `4040`: Input/output error", "nsswitch")],
            ),
        ];
        let fx = fixture();
        for (keys, expected) in cases {
            let text = alias(&format!("    isolation: process\n{keys}"));
            let errors = fx.errors(&text);
            let got: Vec<_> = errors
                .iter()
                .map(|e| {
                    let pos = e.pos.unwrap();
                    (pos.line, pos.column, e.message.as_str(), e.hint.as_deref().unwrap_or(""))
                })
                .collect();
            assert_eq!(got.len(), expected.len(), "{text}\n{got:#?}");
            for (g, e) in got.iter().zip(expected.iter()) {
                assert!(
                    (g.0, g.1) == (e.0, e.1) && g.2.contains(e.2) && g.3.contains(e.3),
                    "{text}\nexpected {e:?}\ngot {g:?}"
                );
            }
        }
    }

    /// The machine's database (root exists everywhere; a Debian `nobody` is 65534:65534).
    #[test]
    fn system_database() {
        let fx = fixture();
        let parse =
            |keys: &str| crate::parse(&alias(&format!("    isolation: process\n{keys}")), &fx.file);
        let ids = |keys: &str| match parse(keys).unwrap().config.aliases[0].isolation.clone() {
            Isolation::Process(p) => (p.uid, p.gid),
            Isolation::InProcess => panic!("in-process"),
        };
        assert_eq!(ids("    user: root\n"), (Some(0), Some(0)));
        assert_eq!(ids("    user: \"0\"\n    group: root\n"), (Some(0), Some(0)));
        let nobody = nix::unistd::User::from_name("nobody").unwrap().unwrap();
        assert_eq!(
            ids("    user: nobody\n"),
            (Some(nobody.uid.as_raw()), Some(nobody.gid.as_raw()))
        );
        let errors: Vec<_> =
            parse("    user: gatehouse-no-such-user\n    group: gatehouse-no-such-group\n")
                .unwrap_err()
                .errors()
                .map(|e| (e.pos.unwrap().line, e.pos.unwrap().column, e.message.clone()))
                .collect();
        assert_eq!(
            errors,
            [
                (5, 11, "user `gatehouse-no-such-user` does not exist".to_owned()),
                (6, 12, "group `gatehouse-no-such-group` does not exist".to_owned())
            ]
        );
    }
}
