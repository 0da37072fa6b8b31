//! What a group's workers are started with ([`Spec`]: the binary, the `Init` message, the
//! user and group, the cache folder a worker of another user may write), which worker takes
//! the next request ([`pick`]), and how a worker's end reads in the log ([`describe_exit`]).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitStatus;

use gatehouse_config::ProcessSettings;

use super::messages::Init;

/// Who the workers run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Ids {
    pub(super) uid: Option<u32>,
    pub(super) gid: Option<u32>,
}

/// What every worker of a group is started with.
#[derive(Debug)]
pub(super) struct Spec {
    pub(super) exe: PathBuf,
    pub(super) init: Init,
    pub(super) ids: Ids,
    /// The supplementary groups the workers get when `ids` change anything (see
    /// [`worker_groups`]).
    pub(super) groups: Option<Vec<u32>>,
    /// The workers' environment ([`worker_env`]), besides the daemon's own variables.
    pub(super) env: Vec<(OsString, OsString)>,
    pub(super) threads: usize,
    pub(super) settings: ProcessSettings,
    /// Requests that may wait for a socket (the alias's `queue`).
    pub(super) queue: usize,
    /// The CPUs the daemon may run on: requests in flight are spread over no more workers
    /// than that (see [`Group::try_acquire`]).
    pub(super) spread: usize,
}

/// How a process ended, in words: `died of signal 11 (SIGSEGV)`, `exited with status 3`.
pub(super) fn describe_exit(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    if let Some(sig) = status.signal() {
        let name = signal_name(sig);
        let core = if status.core_dumped() { ", core dumped" } else { "" };
        format!("died of signal {sig} ({name}{core})")
    } else {
        format!("exited with status {}", status.code().unwrap_or(-1))
    }
}

pub(super) fn signal_name(sig: i32) -> &'static str {
    match sig {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        15 => "SIGTERM",
        24 => "SIGXCPU",
        25 => "SIGXFSZ",
        31 => "SIGSYS",
        _ => "signal",
    }
}

/// A process's resident memory, from `/proc/PID/statm`. `Err(None)`: the process has
/// ended; `Err(Some(why))`: it runs, but its memory cannot be read (a `/proc` mounted with
/// `hidepid`, as systemd's `ProtectProc=invisible` does, hides other users' processes).
pub(super) fn resident_bytes(pid: u32) -> Result<u64, Option<String>> {
    let path = format!("/proc/{pid}/statm");
    let statm = std::fs::read_to_string(&path).map_err(|e| {
        let exists =
            rustix::process::Pid::from_raw(i32::try_from(pid).unwrap_or(0)).is_some_and(|p| {
                !matches!(rustix::process::test_kill_process(p), Err(rustix::io::Errno::SRCH))
            });
        exists.then(|| {
            format!(
                "cannot read the memory of worker {pid} ({path}: {e}), so its memory_limit is \
                 not enforced (hint: the daemon must see its workers in /proc; under systemd, \
                 add `ProtectProc=default` for workers of another user, docs/isolation.md)"
            )
        })
    })?;
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).ok_or(None)?;
    Ok(pages * rustix::param::page_size() as u64)
}

/// Which idle socket a request gets. `idle` gives, for each idle socket in the order they
/// were given back, its worker's rank (in start order) and that worker's requests in
/// flight. Of the first `spread` workers (by rank) that have an idle socket (all of them
/// when `None`), the least busy; of its sockets, the one given back last.
pub(super) fn pick(
    idle: impl Iterator<Item = (usize, usize)> + Clone,
    spread: Option<usize>,
) -> Option<usize> {
    // The rank of the `spread`-th worker that has an idle socket: those after it wait.
    let mut last: Option<usize> = None;
    for _ in 0..spread.unwrap_or(0) {
        let next = idle.clone().map(|(r, _)| r).filter(|&r| last.is_none_or(|l| r > l)).min();
        match next {
            Some(r) => last = Some(r),
            None => break,
        }
    }
    let mut best: Option<(usize, usize)> = None;
    for (i, (rank, busy)) in idle.enumerate() {
        if last.is_some_and(|l| rank > l) {
            continue;
        }
        if best.is_none_or(|(_, b)| busy <= b) {
            best = Some((i, busy));
        }
    }
    best.map(|(i, _)| i)
}

/// Over how many workers requests are spread: the CPUs this process may run on (its
/// affinity and its cgroup's CPU quota, as the standard library reads them), and at
/// least one. Workers inherit the daemon's affinity.
pub(super) fn spread_over() -> usize {
    std::thread::available_parallelism().map_or(usize::MAX, std::num::NonZero::get)
}

/// The daemon's own executable, opened once (read-only, close-on-exec): workers are started
/// from this descriptor (`/proc/self/fd/N` in the child), so the binary need not be
/// reachable by path for the workers' user (a daemon installed or built under a folder
/// that user cannot enter, such as a clone in a `mktemp -d` folder or root's home).
/// `None` when it cannot be opened: workers are then started by path.
pub(super) fn exe_fd() -> Option<&'static std::os::fd::OwnedFd> {
    static EXE: std::sync::OnceLock<Option<std::os::fd::OwnedFd>> = std::sync::OnceLock::new();
    EXE.get_or_init(|| match std::fs::File::open("/proc/self/exe") {
        Ok(f) => Some(f.into()),
        Err(e) => {
            log::warn!("cannot open the daemon's own binary ({e}): workers start by its path");
            None
        }
    })
    .as_ref()
}

/// What to start the workers of alias `index` with; `Err` says why they cannot start.
pub(super) fn spec(
    config: &gatehouse_config::Config,
    index: usize,
    threads: usize,
    settings: &ProcessSettings,
) -> Result<Spec, String> {
    let exe = std::env::current_exe()
        .ok()
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("/proc/self/exe"));
    let ids = resolve_ids(settings)?;
    let groups = worker_groups(ids)?.map(|mut groups| {
        for &gid in &settings.supplementary_groups {
            if !groups.contains(&gid) {
                groups.push(gid);
            }
        }
        groups
    });
    let env = worker_env(std::env::vars_os(), ids.uid)?;
    let cache_dir = match ids.uid {
        Some(uid) if uid != rustix::process::geteuid().as_raw() => {
            worker_cache(&config.cache_dir, uid, ids.gid)?
        }
        _ => config.cache_dir.clone(),
    };
    let level = match log::max_level() {
        log::LevelFilter::Off => 0,
        l => l.to_level().map_or(0, super::proto::level_byte),
    };
    let config_file = config.dir.join(config.file.file_name().unwrap_or_default());
    // Only the globals and this alias: other aliases' settings (their `env` may hold
    // secrets) never reach this alias's workers.
    let text = gatehouse_config::worker_text(config, index)
        .map_err(|e| format!("cannot write the configuration for its workers: {e}"))?;
    Ok(Spec {
        exe,
        init: Init { config_file, text, alias: 0, cache_dir, level },
        ids,
        groups,
        env,
        threads,
        settings: settings.clone(),
        queue: config.aliases[index]
            .limits
            .queue
            .unwrap_or(threads * settings.processes * crate::call::pool::QUEUE_PER_THREAD),
        spread: spread_over(),
    })
}

/// `user` and `group` as ids; an error says what to fix.
pub(super) fn resolve_ids(settings: &ProcessSettings) -> Result<Ids, String> {
    // Resolved (and refused when unknown) where the configuration is read.
    let (uid, gid) = (settings.uid, settings.gid);
    let me = rustix::process::geteuid().as_raw();
    let my_gid = rustix::process::getegid().as_raw();
    let changes = uid.is_some_and(|u| u != me) || gid.is_some_and(|g| g != my_gid);
    if changes && !may_switch_ids() {
        return Err(format!(
            "`user`/`group` ask for uid {} gid {}, and the daemon runs as uid {me}, not root, \
             without CAP_SETUID and CAP_SETGID (hint: start the daemon as root, or give it \
             those capabilities (the packaged unit: its per-app-users drop-in, \
             docs/isolation.md), or remove `user` and `group`)",
            uid.map_or_else(|| "-".to_owned(), |u| u.to_string()),
            gid.map_or_else(|| "-".to_owned(), |g| g.to_string()),
        ));
    }
    Ok(Ids { uid: uid.filter(|&u| u != me), gid: gid.filter(|&g| g != my_gid || uid.is_some()) })
}

/// Whether this process may set a worker's user, group and groups: it has CAP_SETUID and
/// CAP_SETGID in its effective set (root has them, unless a bounding set took them away;
/// a service may be given them as ambient capabilities).
fn may_switch_ids() -> bool {
    use rustix::thread::CapabilitySet;
    rustix::thread::capabilities(None)
        .is_ok_and(|c| c.effective.contains(CapabilitySet::SETUID | CapabilitySet::SETGID))
}

/// The supplementary groups of workers that run as `ids`, as initgroups(3) would make them
/// (Apache's and mod_wsgi's daemon processes get those): for a user with an entry in the
/// user database, its groups in the group database and the workers' group; for a user
/// without one, or a change of group only, the workers' group alone (never the daemon's
/// groups). `None` when `ids` change nothing. Looked up here, not in the child between fork
/// and exec, where NSS may not be called.
pub(super) fn worker_groups(ids: Ids) -> Result<Option<Vec<u32>>, String> {
    let gid = match (ids.uid, ids.gid) {
        (None, None) => return Ok(None),
        (_, Some(gid)) => gid,
        (Some(_), None) => rustix::process::getegid().as_raw(),
    };
    let Some(uid) = ids.uid else { return Ok(Some(vec![gid])) };
    let user = nix::unistd::User::from_uid(uid.into())
        .map_err(|e| format!("cannot look up uid {uid} in the user database: {e}"))?;
    let Some(user) = user else { return Ok(Some(vec![gid])) };
    let name = std::ffi::CString::new(user.name.as_bytes())
        .map_err(|_| format!("the name of uid {uid} holds a NUL byte"))?;
    let groups = nix::unistd::getgrouplist(&name, gid.into())
        .map_err(|e| format!("cannot list the groups of user {} (uid {uid}): {e}", user.name))?;
    let mut groups: Vec<u32> = groups.into_iter().map(nix::unistd::Gid::as_raw).collect();
    if !groups.contains(&gid) {
        groups.push(gid);
    }
    Ok(Some(groups))
}

/// The variables of the daemon's environment its workers get (the rest, secrets an
/// operator or a service manager gave the daemon, and systemd's `NOTIFY_SOCKET` or
/// `LISTEN_FDS`, stay in the daemon): what sets up a process's runtime, read by the
/// worker's libraries as by the daemon's.
const PASSED: &[&str] = &[
    "PATH",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "LD_LIBRARY_PATH",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "RUST_LOG",
    "RUST_BACKTRACE",
    "RUST_LIB_BACKTRACE",
];

/// ... and the variables starting with these: the locale's categories, and Python's
/// settings (the WSGI bridge's interpreter reads them, in a worker as in the daemon).
const PASSED_PREFIXES: &[&str] = &["LC_", "PYTHON"];

/// Who the process is (`HOME`, `USER`, `LOGNAME`): the daemon's values for workers of its own
/// user, else those of the workers' user's entry in the user database.
const IDENTITY: &[&str] = &["HOME", "USER", "LOGNAME"];

/// A worker's environment, from the daemon's `vars`: the variables of [`PASSED`] and
/// [`PASSED_PREFIXES`], and [`IDENTITY`] for its user `uid` (when it is not the daemon's).
/// An app's own settings go in its alias's `env` (handed to `init` and in the environ).
pub(super) fn worker_env(
    vars: impl Iterator<Item = (OsString, OsString)>,
    uid: Option<u32>,
) -> Result<Vec<(OsString, OsString)>, String> {
    use std::os::unix::ffi::OsStrExt as _;
    let passed = |name: &OsString| {
        let name = name.as_bytes();
        PASSED.iter().any(|p| name == p.as_bytes())
            || PASSED_PREFIXES.iter().any(|p| name.starts_with(p.as_bytes()))
            || (uid.is_none() && IDENTITY.iter().any(|p| name == p.as_bytes()))
    };
    let mut env: Vec<(OsString, OsString)> = vars.filter(|(name, _)| passed(name)).collect();
    if let Some(uid) = uid {
        let user = nix::unistd::User::from_uid(uid.into())
            .map_err(|e| format!("cannot look up uid {uid} in the user database: {e}"))?;
        if let Some(user) = user {
            env.push(("HOME".into(), user.dir.into_os_string()));
            env.push(("USER".into(), user.name.clone().into()));
            env.push(("LOGNAME".into(), user.name.into()));
        }
    }
    Ok(env)
}

/// A cache folder the workers of `uid` may write: `cache_dir/uid-UID`, theirs, 0700.
pub(super) fn worker_cache(
    base: &std::path::Path,
    uid: u32,
    gid: Option<u32>,
) -> Result<PathBuf, String> {
    use std::os::unix::fs::DirBuilderExt as _;
    use std::os::unix::fs::PermissionsExt as _;
    // The workers must pass through the daemon's cache folder (not list it).
    if let Ok(meta) = std::fs::metadata(base)
        && meta.permissions().mode() & 0o001 == 0
    {
        let mode = meta.permissions().mode() | 0o001;
        std::fs::set_permissions(base, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot let the workers through {}: {e}", base.display()))?;
    }
    // ... nor through the folders above it, which are the operator's: say what to change.
    use std::os::unix::fs::MetadataExt as _;
    for dir in base.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(dir) else { continue };
        let mode = meta.mode();
        let passes = mode & 0o001 != 0
            || (meta.uid() == uid && mode & 0o100 != 0)
            || (gid == Some(meta.gid()) && mode & 0o010 != 0);
        if !passes {
            return Err(format!(
                "the workers' user (uid {uid}) cannot pass through {} to reach cache_dir \
                 (hint: `chmod o+x {}`, or set `cache_dir` to a folder it can reach)",
                dir.display(),
                dir.display()
            ));
        }
    }
    let dir = base.join(format!("uid-{uid}"));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .and_then(|()| std::os::unix::fs::chown(&dir, Some(uid), gid))
        .map_err(|e| format!("cannot prepare {} for the workers: {e}", dir.display()))?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt as _;

    #[test]
    fn a_worker_is_sent_its_own_alias_and_no_other() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let file = tmp.path().join("hosting.yaml");
        let text = "\
max_body: 1MiB
aliases:
  - url: /a
    path: a.so
    env: {A_SETTING: a-value}
    isolation: process
  - url: /b
    path: b.so
    env: {B_SECRET: hunter2-of-b}
  - url: /c
    path: c.so
    env: {C_SECRET: hunter2-of-c}
    isolation: process
";
        let config = gatehouse_config::parse(text, &file).expect("valid").config;
        for (index, own, others) in [
            (0, "a-value", ["hunter2-of-b", "hunter2-of-c"]),
            (2, "hunter2-of-c", ["hunter2-of-b", "a-value"]),
        ] {
            let gatehouse_config::Isolation::Process(settings) = &config.aliases[index].isolation
            else {
                panic!("alias {index} is isolated")
            };
            let init = spec(&config, index, 1, settings).expect("a spec").init;
            for secret in others {
                assert!(!init.text.contains(secret), "{secret} in\n{}", init.text);
            }
            // What the worker reads: that one alias, with the daemon's values.
            let worker =
                gatehouse_config::parse(&init.text, &init.config_file).expect("valid").config;
            assert_eq!(worker.aliases.len(), 1, "{}", init.text);
            let alias = &worker.aliases[init.alias as usize];
            assert_eq!(alias.url, config.aliases[index].url);
            assert_eq!(alias.env, config.aliases[index].env);
            assert!(init.text.contains(own));
            assert_eq!(worker.max_body, 1024 * 1024);
        }
    }

    #[test]
    fn workers_get_their_users_groups_or_only_their_group() {
        let ids = |uid, gid| Ids { uid, gid };
        assert_eq!(worker_groups(ids(None, None)), Ok(None));
        // Only the group changes: that group alone, not the daemon's groups.
        assert_eq!(worker_groups(ids(None, Some(4242))), Ok(Some(vec![4242])));
        // A uid without an entry: its group alone.
        assert_eq!(worker_groups(ids(Some(3_999_999_999), Some(4242))), Ok(Some(vec![4242])));
        // root (uid 0) is in the user database everywhere: the groups that list it as a
        // member (often none), and the one given.
        let root = worker_groups(ids(Some(0), Some(4242))).expect("lookup").expect("groups");
        assert!(root.contains(&4242), "{root:?}");
    }

    #[test]
    fn workers_get_the_runtimes_variables_and_no_others() {
        let daemon = [
            ("PATH", "/usr/bin:/bin"),
            ("LANG", "C.UTF-8"),
            ("LC_TIME", "en_GB.UTF-8"),
            ("TZ", "Europe/Paris"),
            ("PYTHONPATH", "/srv/lib"),
            ("RUST_LOG", "debug"),
            ("HOME", "/root"),
            ("USER", "root"),
            ("DATABASE_PASSWORD", "hunter2"),
            ("AWS_SECRET_ACCESS_KEY", "xyz"),
            ("NOTIFY_SOCKET", "/run/systemd/notify"),
            ("LISTEN_FDS", "1"),
            ("WATCHDOG_USEC", "30000000"),
            ("XPATH", "no"),
            ("PYTHON", "yes: a prefix"),
        ];
        let vars = || daemon.iter().map(|(n, v)| (OsString::from(n), OsString::from(v)));
        let names = |env: Vec<(OsString, OsString)>| -> Vec<String> {
            env.into_iter().map(|(n, _)| n.to_string_lossy().into_owned()).collect()
        };
        let own = names(worker_env(vars(), None).expect("env"));
        assert_eq!(
            own,
            ["PATH", "LANG", "LC_TIME", "TZ", "PYTHONPATH", "RUST_LOG", "HOME", "USER", "PYTHON"]
        );
        // Another user (root's entry, uid 0, exists everywhere): its own HOME, USER, LOGNAME.
        let other = worker_env(vars(), Some(0)).expect("env");
        let home = other.iter().find(|(n, _)| n == "HOME").map(|(_, v)| v.clone());
        assert!(home.is_some(), "{other:?}");
        assert_eq!(
            names(other),
            [
                "PATH",
                "LANG",
                "LC_TIME",
                "TZ",
                "PYTHONPATH",
                "RUST_LOG",
                "PYTHON",
                "HOME",
                "USER",
                "LOGNAME"
            ]
        );
        // A user without an entry: no identity at all.
        let nobody = names(worker_env(vars(), Some(3_999_999_999)).expect("env"));
        assert!(!nobody.iter().any(|n| n == "HOME" || n == "USER"), "{nobody:?}");
    }

    #[test]
    fn exits_in_words() {
        let table = [
            (ExitStatus::from_raw(11), "died of signal 11 (SIGSEGV)"),
            (ExitStatus::from_raw(6 | 0x80), "died of signal 6 (SIGABRT, core dumped)"),
            (ExitStatus::from_raw(3 << 8), "exited with status 3"),
            (ExitStatus::from_raw(9), "died of signal 9 (SIGKILL)"),
        ];
        for (status, words) in table {
            assert_eq!(describe_exit(status), words);
        }
    }

    #[test]
    fn which_idle_socket_a_request_gets() {
        // (idle sockets as (worker rank, its requests in flight), in the order given back;
        // spread; the socket picked)
        type Idle = &'static [(usize, usize)];
        let table: &[(Idle, Option<usize>, Option<usize>)] = &[
            (&[], None, None),
            (&[], Some(1), None),
            // Spread over all: the least busy worker, its socket given back last.
            (&[(0, 1), (1, 0), (0, 1), (1, 0)], None, Some(3)),
            (&[(0, 0), (1, 2), (0, 0)], None, Some(2)),
            // Packed on one: the first worker that has a socket, however busy.
            (&[(0, 3), (1, 0), (0, 3), (1, 0)], Some(1), Some(2)),
            // ...and the next one only when the first has none left.
            (&[(1, 0), (2, 0), (1, 0)], Some(1), Some(2)),
            (&[(2, 0), (1, 5)], Some(1), Some(1)),
            // Packed on two of three: the less busy of the first two.
            (&[(2, 0), (0, 4), (1, 2), (2, 0)], Some(2), Some(2)),
            (&[(2, 0), (0, 1), (1, 2), (2, 0)], Some(2), Some(1)),
            // A spread wider than the workers with a socket: all of them.
            (&[(3, 1), (5, 0)], Some(4), Some(1)),
        ];
        for &(idle, spread, want) in table {
            assert_eq!(pick(idle.iter().copied(), spread), want, "{idle:?} spread {spread:?}");
        }
    }
}
