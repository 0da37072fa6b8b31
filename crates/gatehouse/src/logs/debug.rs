//! Per-app debug logs: the seed's `debugLog(msg, must)`, one file per app at
//! `LOGS_DIR/APP/debug.log`.
//!
//! A line is the seed's line with the request id after the time:
//!
//! ```text
//! 2021-04-13 10:26:26 [req 42] content_len: 137
//! ```
//!
//! (local time `YYYY-MM-DD HH:MM:SS`, a space, `[req ID]`, a space, the message). The id is
//! the one in the error log's messages about that request and in the access log's `req=`
//! field. A message cannot forge extra lines: newlines and other control characters are
//! written as escapes (`\n`, `\x1b`), a backslash as `\\`.
//!
//! Lines are queued for the log writer thread (see [`crate::logs`]): a request never waits
//! for the disk. The file is rotated, kept, compressed and given its mode as `logs`
//! configures; if it cannot be written (a full disk, a deleted folder), the error log says
//! so once, the app's `debug_log` call returns an error, and writing resumes by itself
//! once it can (the folder is created again).

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use crate::logs::{self, Sink, sink::Reports};

/// One app's debug log file.
#[derive(Debug)]
pub struct DebugLog {
    sink: Arc<Sink>,
}

impl DebugLog {
    /// The file this log writes to.
    #[cfg(test)]
    pub(crate) fn path(&self) -> &std::path::Path {
        self.sink.path()
    }

    /// Appends one line for request `request_id`: local time, the request id, the message
    /// with control characters escaped. `Err` when the line was dropped (the disk does not
    /// keep up) or the file cannot be written at the moment.
    pub(crate) fn write(&self, request_id: u64, message: &[u8]) -> io::Result<()> {
        logs::submit(&self.sink, line(chrono::Local::now(), request_id, message))
    }
}

/// The line for `message` of request `request_id` at `time`, newline included.
fn line(time: chrono::DateTime<chrono::Local>, request_id: u64, message: &[u8]) -> Vec<u8> {
    let mut line = Vec::with_capacity(message.len() + 40);
    line.extend_from_slice(
        format!("{} [req {request_id}] ", time.format("%Y-%m-%d %H:%M:%S")).as_bytes(),
    );
    escape_into(message, &mut line);
    line.push(b'\n');
    line
}

/// Escapes control characters (and backslash) so one message is exactly one line.
pub(crate) fn escape_into(message: &[u8], out: &mut Vec<u8>) {
    for &b in message {
        match b {
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0..=0x1f | 0x7f => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
            _ => out.push(b),
        }
    }
}

/// Every app's debug log under one folder, shared by name.
#[derive(Debug)]
pub struct DebugLogs {
    dir: PathBuf,
    logs: Mutex<HashMap<String, Arc<DebugLog>>>,
}

impl DebugLogs {
    /// Logs under `dir` (the configuration's `logs.dir`).
    pub fn new(dir: PathBuf) -> Self {
        DebugLogs { dir, logs: Mutex::new(HashMap::new()) }
    }

    /// The log of app `name` (`DIR/NAME/debug.log`), shared by every alias using that name
    /// (and by any other [`DebugLogs`] of the same folder, such as a reloaded host's).
    pub fn for_app(&self, name: &str) -> Arc<DebugLog> {
        let mut logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        logs.entry(name.to_owned())
            .or_insert_with(|| {
                let path = self.dir.join(name).join("debug.log");
                let sink =
                    logs::sink(&path, || format!("debug log of app {name}"), Reports::ErrorLog);
                Arc::new(DebugLog { sink })
            })
            .clone()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    #[test]
    fn control_characters_cannot_forge_lines() {
        for (input, want) in [
            (&b"plain"[..], "plain"),
            (b"a\nb", "a\\nb"),
            (b"a\r\nfake 2021-01-01 line", "a\\r\\nfake 2021-01-01 line"),
            (b"tab\there", "tab\\there"),
            (b"esc\x1b[31m", "esc\\x1b[31m"),
            (b"back\\slash", "back\\\\slash"),
            ("caf\u{e9}".as_bytes(), "caf\u{e9}"),
        ] {
            let mut out = Vec::new();
            escape_into(input, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), want);
        }
    }

    #[test]
    fn the_line_is_the_seeds_with_the_request_id() {
        let t = chrono::Local.with_ymd_and_hms(2021, 4, 13, 10, 26, 26).single().unwrap();
        assert_eq!(
            line(t, 42, b"content_len: 137"),
            b"2021-04-13 10:26:26 [req 42] content_len: 137\n"
        );
        assert_eq!(line(t, 7, b"a\nb"), b"2021-04-13 10:26:26 [req 7] a\\nb\n");
    }

    #[test]
    fn lines_are_appended_with_a_timestamp() {
        let tmp = tempfile::tempdir().unwrap();
        let logs = DebugLogs::new(tmp.path().join("log"));
        let log = logs.for_app("myapp");
        log.write(1, b"first").unwrap();
        log.write(2, b"second\nline").unwrap();
        assert!(crate::logs::flush());
        let text = std::fs::read_to_string(tmp.path().join("log/myapp/debug.log")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with(" [req 1] first"), "{text}");
        assert!(lines[1].ends_with(" [req 2] second\\nline"), "{text}");
        // "YYYY-MM-DD HH:MM:SS " prefix.
        assert_eq!(lines[0].len(), "2021-04-13 10:26:26 [req 1] first".len());
        assert!(Arc::ptr_eq(&log, &logs.for_app("myapp")));
        // Another host's logs of the same folder share the file.
        let again = DebugLogs::new(tmp.path().join("log")).for_app("myapp");
        assert_eq!(again.path(), log.path());
        assert!(Arc::ptr_eq(&again.sink, &log.sink));
    }

    /// Debug-log lines per second through rotation at 1 MiB (the default settings are
    /// 10 MiB; this rotates ~20 times). `cargo test --release -p gatehouse --lib --
    /// --ignored --nocapture debug_lines_per_second`.
    #[test]
    #[ignore = "a measurement, not a test"]
    fn debug_lines_per_second() {
        use std::time::Instant;
        let tmp = tempfile::tempdir().unwrap();
        let settings = crate::logs::Settings {
            rotate: Some(gatehouse_config::Rotate {
                size: Some(1 << 20),
                age: None,
                keep: None,
                compress: false,
            }),
            dir_mode: 0o750,
            file_mode: 0o640,
        };
        crate::logs::set_settings_for_test(settings);
        let log = DebugLogs::new(tmp.path().join("log")).for_app("bench");
        const N: u64 = 300_000;
        let started = Instant::now();
        let mut dropped = 0;
        for i in 0..N {
            if log
                .write(i, b"content_len: 137 and some more text to make a realistic line")
                .is_err()
            {
                dropped += 1;
            }
        }
        let queued = started.elapsed();
        assert!(crate::logs::flush());
        let written = started.elapsed();
        let files = std::fs::read_dir(tmp.path().join("log/bench")).unwrap().count();
        let lines: usize = std::fs::read_dir(tmp.path().join("log/bench"))
            .unwrap()
            .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap().lines().count())
            .sum();
        println!(
            "debug log: {:.2} us per line on the request path; {:.0} lines/s to disk with \
             rotation at 1 MiB ({files} files, {lines} lines, {dropped} dropped)",
            queued.as_secs_f64() * 1e6 / N as f64,
            N as f64 / written.as_secs_f64()
        );
        assert_eq!(lines as u64 + dropped, N);
    }
}
