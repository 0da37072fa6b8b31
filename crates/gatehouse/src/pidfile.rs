//! The daemon's pid file (`pid_file`), for `gatehouse reload` and `reopen-logs`: refused
//! when it names a live daemon (a second `serve` of the same configuration must not take
//! it over), written once serving, and removed at exit only when it still holds this
//! process's pid (never another daemon's).

use std::path::Path;

/// The live daemon a pid file names: its pid, when that process is a `gatehouse` other
/// than this one.
pub fn running_daemon(path: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(path).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    if pid == std::process::id() {
        return None;
    }
    // A pid reused by another program is not a daemon: its name says.
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    (comm.trim() == "gatehouse").then_some(pid)
}

/// Writes this process's pid (into a new file renamed over the path: a link planted there
/// is replaced, never followed); a failure is logged, not fatal.
pub fn write(path: &Path) {
    let written = path.parent().map_or(Ok(()), std::fs::create_dir_all).and_then(|()| {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let tmp = path.with_extension(format!("pid.{}", std::process::id()));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(format!("{}\n", std::process::id()).as_bytes())?;
        std::fs::rename(&tmp, path).inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    });
    if let Err(e) = written {
        log::warn!(
            "cannot write the pid file {}: {e}; `gatehouse reload` will not find this daemon \
             (use `kill -HUP {}`)",
            path.display(),
            std::process::id()
        );
    }
}

/// Removes the pid file if it is this process's.
pub fn remove(path: &Path) {
    let ours = std::fs::read_to_string(path)
        .is_ok_and(|t| t.trim().parse::<u32>().ok() == Some(std::process::id()));
    if ours {
        let _ = std::fs::remove_file(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_live_gatehouse_other_than_this_one_counts() {
        let Ok(dir) = tempfile::tempdir() else { panic!("temp dir") };
        let file = dir.path().join("gatehouse.pid");
        // (content, names a running daemon?) -- this test binary is not named gatehouse.
        let table = [
            (String::new(), false),
            ("not a pid\n".to_owned(), false),
            (format!("{}\n", std::process::id()), false),
            ("4194304\n".to_owned(), false),
            ("1\n".to_owned(), false),
        ];
        for (text, running) in table {
            std::fs::write(&file, &text).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(running_daemon(&file).is_some(), running, "{text:?}");
        }
        assert_eq!(running_daemon(&dir.path().join("absent.pid")), None);
    }

    #[test]
    fn remove_leaves_another_process_pid_file_alone() {
        let Ok(dir) = tempfile::tempdir() else { panic!("temp dir") };
        let file = dir.path().join("gatehouse.pid");
        std::fs::write(&file, "1\n").unwrap_or_else(|e| panic!("{e}"));
        remove(&file);
        assert!(file.exists(), "another process's pid file was removed");
        write(&file);
        remove(&file);
        assert!(!file.exists(), "this process's pid file stayed");
        // A link planted at the path is replaced, not followed.
        let target = dir.path().join("target");
        std::fs::write(&target, "keep").unwrap_or_else(|e| panic!("{e}"));
        std::os::unix::fs::symlink(&target, &file).unwrap_or_else(|e| panic!("{e}"));
        write(&file);
        assert_eq!(std::fs::read_to_string(&target).ok().as_deref(), Some("keep"));
        assert!(running_daemon(&file).is_none() && !file.is_symlink());
    }
}
