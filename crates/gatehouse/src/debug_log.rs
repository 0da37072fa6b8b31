//! Per-app debug logs: the seed's `debugLog(msg, must)`, one file per app at
//! `LOGS_DIR/APP/debug.log`, lines like `2021-04-13 10:26:26 content_len: 137`.
//!
//! A message cannot forge extra lines: newlines and other control characters are written as
//! escapes (`\n`, `\x1b`). The folder is created on first write; a failure to write is
//! reported once to the error log (and again after it recovers and fails anew) and to the app
//! as a failed call, and the request goes on.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// One app's debug log file.
#[derive(Debug)]
pub struct DebugLog {
    path: PathBuf,
    file: Mutex<Option<File>>,
    failing: AtomicBool,
}

impl DebugLog {
    fn new(path: PathBuf) -> Self {
        DebugLog { path, file: Mutex::new(None), failing: AtomicBool::new(false) }
    }

    /// The file this log writes to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line: local time, a space, the message with control characters escaped.
    pub fn write(&self, message: &[u8]) -> io::Result<()> {
        let mut line = chrono::Local::now().format("%Y-%m-%d %H:%M:%S ").to_string().into_bytes();
        escape_into(message, &mut line);
        line.push(b'\n');
        let result = self.append(&line);
        match &result {
            Ok(()) => {
                if self.failing.swap(false, Ordering::Relaxed) {
                    log::info!("debug log {} is writable again", self.path.display());
                }
            }
            Err(e) => {
                if !self.failing.swap(true, Ordering::Relaxed) {
                    log::error!(
                        "cannot write debug log {}: {e} (hint: the daemon's user needs write \
                         access to that folder, e.g. `chmod g+w` it and `chgrp` it to the \
                         daemon's group)",
                        self.path.display()
                    );
                }
            }
        }
        result
    }

    fn append(&self, line: &[u8]) -> io::Result<()> {
        let mut guard = self.file.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.is_none() {
            if let Some(dir) = self.path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            *guard = Some(OpenOptions::new().create(true).append(true).open(&self.path)?);
        }
        let Some(file) = guard.as_mut() else { return Err(io::Error::other("log file not open")) };
        // One write call per line, so lines from several threads never interleave.
        let result = file.write_all(line);
        if result.is_err() {
            // Reopen next time: the file or its folder may have been removed or replaced.
            *guard = None;
        }
        result
    }
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

    /// The log of app `name` (`DIR/NAME/debug.log`), shared by every alias using that name.
    pub fn for_app(&self, name: &str) -> Arc<DebugLog> {
        let mut logs = self.logs.lock().unwrap_or_else(PoisonError::into_inner);
        logs.entry(name.to_owned())
            .or_insert_with(|| Arc::new(DebugLog::new(self.dir.join(name).join("debug.log"))))
            .clone()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

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
    fn lines_are_appended_with_a_timestamp() {
        let tmp = tempfile::tempdir().unwrap();
        let logs = DebugLogs::new(tmp.path().join("log"));
        let log = logs.for_app("myapp");
        log.write(b"first").unwrap();
        log.write(b"second\nline").unwrap();
        let text = std::fs::read_to_string(tmp.path().join("log/myapp/debug.log")).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].ends_with(" first"), "{text}");
        assert!(lines[1].ends_with(" second\\nline"), "{text}");
        // "YYYY-MM-DD HH:MM:SS " prefix.
        assert_eq!(lines[0].len(), "2021-04-13 10:26:26 first".len());
        assert!(Arc::ptr_eq(&log, &logs.for_app("myapp")));
    }
}
