//! What plugins and worker processes write to stderr, into the error log.
//!
//! A plugin and the libraries it uses write to file descriptor 2: Python's tracebacks and
//! `print()` from threads the WSGI bridge does not serve a request on, a C plugin's
//! `fprintf(stderr, ...)`, a Rust plugin's panic message, a fatal error just before an
//! `abort`. Both paths below are crash-safe: nothing written waits in a buffer of the
//! process that dies.
//!
//! - **In the daemon** ([`follow`]): when `logs.error_log` is a file, the daemon's fds 1 and
//!   2 are that file, opened for appending, as Apache points its stderr at `ErrorLog`. The
//!   lines are as the plugin wrote them (no time stamp; C's stdio buffers a `printf` to a
//!   file until its buffer fills or the plugin flushes). After the error log rotates, is
//!   reopened (SIGUSR1) or is created again, fds 1 and 2 follow it at the next error log
//!   line. With `error_log: stderr`, they stay the daemon's own (the journal under systemd).
//! - **From a worker process** ([`worker_pipe`], [`read_worker`]): its stdout and stderr are
//!   a pipe the daemon reads on one thread per worker, logging each line as `ERROR LABEL
//!   (worker PID): stderr: LINE`. The daemon holds the read end, so what a worker wrote just
//!   before it crashed is still read and logged.
//!
//! The daemon's own writes to "stderr" (the error log's `stderr` destination and its
//! fall-backs when the file cannot be written) go to the original stderr, and its
//! listening lines to the original stdout, both kept aside by [`install`]: [`stderr`],
//! [`stdout`].
//!
//! A line longer than [`MAX_LINE`] bytes is logged in pieces; bytes that are not UTF-8 are
//! replaced.

use std::io::{self, BufRead as _, Read as _, Write};
use std::os::fd::{AsFd as _, OwnedFd};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::Path;
use std::sync::{Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;

/// The longest line logged as one.
pub(crate) const MAX_LINE: usize = 8 * 1024;

/// The daemon's stderr as it was before [`install`].
static ORIGINAL: OnceLock<OwnedFd> = OnceLock::new();

/// The daemon's stdout as it was before [`install`].
static ORIGINAL_OUT: OnceLock<OwnedFd> = OnceLock::new();

/// The (device, inode) of the error log file fds 1 and 2 are now, if they are one.
static FOLLOWING: Mutex<Option<(u64, u64)>> = Mutex::new(None);

/// The daemon's real stderr, whatever fd 2 is now.
pub(crate) fn stderr() -> Original {
    Original(false)
}

/// The daemon's real stdout, whatever fd 1 is now (unbuffered).
pub fn stdout() -> Original {
    Original(true)
}

/// A writer to the original stdout or stderr (see [`stdout`], [`stderr`]).
#[derive(Debug)]
pub struct Original(bool);

impl Write for Original {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match (if self.0 { &ORIGINAL_OUT } else { &ORIGINAL }).get() {
            Some(fd) => rustix::io::write(fd, buf).map_err(io::Error::from),
            None if self.0 => io::stdout().write(buf),
            None => io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match (if self.0 { &ORIGINAL_OUT } else { &ORIGINAL }).get() {
            Some(_) => Ok(()),
            None if self.0 => io::stdout().flush(),
            None => io::stderr().flush(),
        }
    }
}

/// Lets fds 1 and 2 follow the error log file until dropped; then they are the original
/// stdout and stderr again (so that a fatal error at exit reaches the terminal or the
/// journal).
#[derive(Debug)]
#[must_use = "dropping it points fds 1 and 2 back at the original stdout and stderr"]
pub struct Capture(());

/// Keeps the original stdout and stderr aside, so that [`follow`] may point fds 1 and 2 at
/// the error log file. Call once, from `serve`, before the configured logs are applied.
pub fn install() -> io::Result<Capture> {
    io::stdout().flush()?;
    // Close-on-exec: no process the daemon starts (a worker, or a program an app runs)
    // inherits them.
    let out = rustix::io::fcntl_dupfd_cloexec(io::stdout(), 3)?;
    let err = rustix::io::fcntl_dupfd_cloexec(io::stderr(), 3)?;
    ORIGINAL_OUT.set(out).map_err(|_| io::Error::other("stdout is already kept aside"))?;
    ORIGINAL.set(err).map_err(|_| io::Error::other("stderr is already kept aside"))?;
    Ok(Capture(()))
}

impl Drop for Capture {
    fn drop(&mut self) {
        restore();
    }
}

/// Points fds 1 and 2 at the error log file `path`, whose open file is `file` (device,
/// inode), unless they already are; does nothing before [`install`]. The path is opened
/// again and checked to be that file (it may have moved on since).
pub(crate) fn follow(path: &Path, file: Option<(u64, u64)>) {
    let Some(file) = file else { return };
    if ORIGINAL.get().is_none() {
        return;
    }
    let mut following = FOLLOWING.lock().unwrap_or_else(PoisonError::into_inner);
    if *following == Some(file) {
        return;
    }
    // Not through a link, nor blocking on a FIFO: a file that is not the sink's is not
    // followed anyway (below), but opening it must not wait or reach elsewhere.
    let Ok(opened) = std::fs::OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
    else {
        return;
    };
    let same = opened.metadata().is_ok_and(|m| (m.dev(), m.ino()) == file);
    if same && rustix::stdio::dup2_stderr(&opened).is_ok() {
        let _ = rustix::stdio::dup2_stdout(&opened);
        *following = Some(file);
    }
}

/// Points fds 1 and 2 back at the original stdout and stderr, if they follow a file.
pub(crate) fn restore() {
    let (Some(out), Some(err)) = (ORIGINAL_OUT.get(), ORIGINAL.get()) else { return };
    let mut following = FOLLOWING.lock().unwrap_or_else(PoisonError::into_inner);
    if following.take().is_some() {
        let _ = rustix::stdio::dup2_stderr(err.as_fd());
        let _ = rustix::stdio::dup2_stdout(out.as_fd());
    }
}

/// A pipe for a worker process's stdout and stderr: (read end, write end), both
/// close-on-exec (the child gets the write end as its fds 1 and 2).
pub(crate) fn worker_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?)
}

/// Logs what worker `pid` of `label` writes into `read` (see [`worker_pipe`]), line by
/// line, until every writer is gone: the worker, and any child it left behind.
pub(crate) fn read_worker(read: OwnedFd, label: &str, pid: u32) -> io::Result<JoinHandle<()>> {
    let label = label.to_owned();
    std::thread::Builder::new().name(format!("gatehouse-out-{pid}")).stack_size(128 * 1024).spawn(
        move || {
            forward(read, &mut |line| {
                // An app's own lines, as its `log_error` ones: its alias's budget. (No
                // request id: the pipe is the process's, whatever request it serves.)
                super::per_request!(app: &label, target: "gatehouse::stderr", Error,
                    format_args!("{label} (worker {pid})"), None; "stderr: {line}");
            });
        },
    )
}

/// Reads `from` to its end, giving each line (without its line ending; at most
/// [`MAX_LINE`] bytes, a longer line in pieces) to `emit`.
fn forward(from: impl Into<std::fs::File>, emit: &mut dyn FnMut(&str)) {
    let mut from = io::BufReader::with_capacity(64 * 1024, from.into());
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        match (&mut from).take(MAX_LINE as u64).read_until(b'\n', &mut line) {
            Ok(0) => return,
            Ok(_) => {
                let text = line.strip_suffix(b"\n").unwrap_or(&line);
                let text = text.strip_suffix(b"\r").unwrap_or(text);
                emit(&String::from_utf8_lossy(text));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::warn!("cannot read a worker process's output: {e}");
                return;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_split_on_newlines_and_cut_at_max_line() {
        let long = "x".repeat(MAX_LINE + 10);
        // (written to the pipe, the lines logged)
        let table: Vec<(Vec<u8>, Vec<String>)> = vec![
            (b"one\ntwo\n".to_vec(), vec!["one".into(), "two".into()]),
            (
                b"crlf\r\n\nlast without newline".to_vec(),
                vec!["crlf".into(), String::new(), "last without newline".into()],
            ),
            (b"bad \xff byte\n".to_vec(), vec!["bad \u{fffd} byte".into()]),
            (format!("{long}\n").into_bytes(), vec!["x".repeat(MAX_LINE), "x".repeat(10)]),
        ];
        for (written, want) in table {
            let (read, write) = worker_pipe().unwrap();
            let writer = std::thread::spawn(move || {
                std::fs::File::from(write).write_all(&written).unwrap();
            });
            let mut got = Vec::new();
            forward(read, &mut |l| got.push(l.to_owned()));
            writer.join().unwrap();
            assert_eq!(got, want);
        }
    }
}
