//! What plugins write to standard error, captured into the error log.
//!
//! A plugin and the libraries it uses write to file descriptor 2: Python's `print()` and
//! tracebacks from the WSGI bridge (its `sys.stdout` is `sys.stderr`), a C plugin's
//! `fprintf(stderr, ...)`, a Rust plugin's panic message, a worker process's own last words.
//! Like Apache, which points its stderr at `ErrorLog`, `gatehouse serve` makes fd 2 the
//! write end of a pipe ([`install`]); a thread reads it line by line and logs each line at
//! `ERROR` as `stderr: LINE`, so the lines land where the operator looks (`logs.error_log`:
//! a file or stderr), time-stamped, rotated with it, and never interleaved mid-line with
//! the daemon's own. Worker processes get the same pipe as their stdout and stderr.
//!
//! The daemon's own writes to "stderr" (the error log's `stderr` destination and its
//! fall-backs when the file cannot be written) go to the original stderr, kept aside:
//! [`stderr`]. They must: through the pipe they would come back to the error log.
//!
//! A line longer than [`MAX_LINE`] bytes is logged in pieces; bytes that are not UTF-8 are
//! replaced. Standard output is left alone: `gatehouse serve` prints its listening line
//! there.

use std::io::{self, BufRead as _, Read as _, Write};
use std::os::fd::{AsFd as _, OwnedFd};
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest line logged as one.
pub const MAX_LINE: usize = 8 * 1024;

/// The daemon's stderr as it was before [`install`].
static ORIGINAL: OnceLock<OwnedFd> = OnceLock::new();

/// The daemon's real stderr: where it was before [`install`] pointed fd 2 at the pipe.
pub(crate) fn stderr() -> Stderr {
    Stderr
}

/// A writer to the original stderr (see [`stderr`]).
#[derive(Debug)]
pub(crate) struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match ORIGINAL.get() {
            Some(fd) => rustix::io::write(fd, buf).map_err(io::Error::from),
            None => io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match ORIGINAL.get() {
            Some(_) => Ok(()),
            None => io::stderr().flush(),
        }
    }
}

/// The capture, while it runs. Dropping it points fd 2 back at the original stderr and
/// logs what is still in the pipe (waiting up to [`DRAIN`] for it: a worker process that
/// outlives the daemon keeps the pipe open).
#[derive(Debug)]
#[must_use = "dropping it ends the capture"]
pub struct Capture {
    reader: Option<JoinHandle<()>>,
}

/// How long the end of the capture waits for the reader to log what is left.
const DRAIN: Duration = Duration::from_secs(1);

/// Points fd 2 at a pipe read by a thread that logs each line. Call once, from `serve`,
/// after the configured logs are applied.
pub fn install() -> io::Result<Capture> {
    let original = rustix::io::dup(io::stderr())?;
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let reader = std::thread::Builder::new()
        .name("gatehouse-stderr".to_owned())
        .spawn(move || forward(read, &mut |line| log_line(line)))?;
    if ORIGINAL.set(original).is_err() {
        return Err(io::Error::other("the stderr capture is already installed"));
    }
    rustix::stdio::dup2_stderr(&write)?;
    Ok(Capture { reader: Some(reader) })
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(original) = ORIGINAL.get() {
            // Closes the daemon's write end (fd 2); the reader ends at the pipe's end.
            let _ = rustix::stdio::dup2_stderr(original.as_fd());
        }
        let Some(reader) = self.reader.take() else { return };
        let until = Instant::now() + DRAIN;
        while !reader.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        if reader.is_finished() {
            let _ = reader.join();
        }
    }
}

fn log_line(line: &str) {
    log::error!(target: "gatehouse::stderr", "stderr: {line}");
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
                let _ = writeln!(stderr(), "gatehouse: cannot read the stderr capture: {e}");
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
            let (read, write) = rustix::pipe::pipe().unwrap();
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
