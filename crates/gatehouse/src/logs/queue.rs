//! The hand-off between request threads and the disk: a bounded queue and one writer
//! thread (`gatehouse-log-writer`) for every debug log and the access log.
//!
//! A request formats its line and queues it ([`Queue::submit`]); it never waits for the
//! disk. The queue is bounded by bytes ([`QUEUE_LIMIT`], all logs together): when the disk
//! stalls and the queue is full, further lines are dropped (never waited for), counted per
//! file, reported once in the error log, and the count is reported again when the writer
//! catches up. The writer takes whatever is queued (up to [`BATCH_BYTES`]), groups it by
//! file in arrival order, and writes each group with one `write(2)`, so the lines of one
//! file keep their order and are never split or interleaved.
//!
//! After writing, the writer lingers [`LINGER`] before it takes more: lines that come
//! meanwhile queue without waking it, and go out together. A line that comes to an idle
//! writer is written at once. (Waking the writer for every line cost a thread switch and a
//! `write(2)` per line: at one connection, a quarter of the server core for an app that logs
//! on every request.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::sink::Sink;

/// The most bytes of lines that may wait for the disk, all logs together.
pub(crate) const QUEUE_LIMIT: usize = 8 << 20;
/// The most bytes the writer takes in one go.
const BATCH_BYTES: usize = 256 << 10;
/// How long the writer waits after a write before it takes the next lines: the most a line
/// waits for the disk behind another.
const LINGER: Duration = Duration::from_millis(1);
/// How often the idle writer wakes up to report suppressed messages.
const TICK: Duration = Duration::from_secs(1);

enum Msg {
    Line(Arc<Sink>, Vec<u8>),
    Flush(Sender<()>),
}

/// Why a line was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Full;

/// The queue and its writer thread.
pub(crate) struct Queue {
    tx: Sender<Msg>,
    queued: Arc<AtomicUsize>,
    limit: usize,
}

impl std::fmt::Debug for Queue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("queued", &self.queued).finish_non_exhaustive()
    }
}

/// The process's queue, started on first use.
pub(crate) fn global() -> &'static Queue {
    static QUEUE: OnceLock<Queue> = OnceLock::new();
    QUEUE.get_or_init(|| Queue::start(QUEUE_LIMIT))
}

impl Queue {
    /// Starts a writer thread behind a queue of at most `limit` bytes.
    pub(crate) fn start(limit: usize) -> Queue {
        let (tx, rx) = crossbeam_channel::unbounded();
        let queued = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&queued);
        let spawned = std::thread::Builder::new()
            .name("gatehouse-log-writer".to_owned())
            .spawn(move || run(&rx, &counter));
        if let Err(e) = spawned {
            // Without a writer nothing is written; every line will count as dropped.
            log::error!("cannot start the log writer thread: {e}");
        }
        Queue { tx, queued, limit }
    }

    /// Queues one line (or several whole lines) for `sink`, unless the queue is full.
    pub(crate) fn submit(&self, sink: &Arc<Sink>, line: Vec<u8>) -> Result<(), Full> {
        let len = line.len();
        let before = self.queued.fetch_add(len, Ordering::Relaxed);
        if before + len > self.limit && before > 0 {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            sink.note_dropped(self.limit);
            return Err(Full);
        }
        if self.tx.send(Msg::Line(Arc::clone(sink), line)).is_err() {
            self.queued.fetch_sub(len, Ordering::Relaxed);
            sink.note_dropped(self.limit);
            return Err(Full);
        }
        Ok(())
    }

    /// Waits (at most `timeout`) until every line queued before this call is written.
    /// Returns false on timeout.
    pub(crate) fn flush(&self, timeout: Duration) -> bool {
        let (tx, rx) = crossbeam_channel::bounded(1);
        if self.tx.send(Msg::Flush(tx)).is_err() {
            return false;
        }
        rx.recv_timeout(timeout).is_ok()
    }
}

/// The writer thread.
fn run(rx: &Receiver<Msg>, queued: &AtomicUsize) {
    let mut groups: Vec<(Arc<Sink>, Vec<u8>, u64)> = Vec::new();
    let mut flushes: Vec<Sender<()>> = Vec::new();
    loop {
        let first = match rx.recv_timeout(TICK) {
            Ok(msg) => msg,
            Err(RecvTimeoutError::Timeout) => {
                super::error_log::tick();
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut taken = 0;
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Line(sink, line) => {
                    taken += line.len();
                    match groups.iter_mut().find(|(s, _, _)| Arc::ptr_eq(s, &sink)) {
                        Some((_, buf, n)) => {
                            buf.extend_from_slice(&line);
                            *n += 1;
                        }
                        None => groups.push((sink, line, 1)),
                    }
                }
                // Everything before the flush request is in `groups`: written below.
                Msg::Flush(done) => flushes.push(done),
            }
            if taken < BATCH_BYTES && flushes.is_empty() {
                next = rx.try_recv().ok();
            }
        }
        let settings = super::settings();
        for (sink, buf, lines) in groups.drain(..) {
            // Errors are the sink's to report; the lines are lost either way.
            let _ = sink.write(&buf, lines, &settings);
            queued.fetch_sub(buf.len(), Ordering::Relaxed);
        }
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
        std::thread::sleep(LINGER);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::sink::Reports;
    use std::time::Instant;

    #[test]
    fn a_stalled_disk_never_blocks_a_writer_beyond_the_bound() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let queue = Queue::start(1000);
        let sink =
            Arc::new(Sink::new(tmp.path().join("a.log"), "test log".into(), Reports::Stderr));
        let stalled = sink.stall();
        let line = |i: usize| format!("{i:099}\n").into_bytes();
        let mut accepted = 0;
        let mut dropped = 0;
        for i in 0..100 {
            let started = Instant::now();
            match queue.submit(&sink, line(i)) {
                Ok(()) => accepted += 1,
                Err(Full) => dropped += 1,
            }
            assert!(started.elapsed() < Duration::from_millis(100), "submit waited");
        }
        // 1000 bytes of 100-byte lines wait; the rest are dropped, not waited for.
        assert_eq!((accepted, dropped), (10, 90));
        drop(stalled);
        assert!(queue.flush(Duration::from_secs(5)));
        let text = std::fs::read_to_string(tmp.path().join("a.log")).expect("read");
        assert_eq!(text.lines().count(), 10);
        // Once caught up, lines are taken again.
        assert_eq!(queue.submit(&sink, line(100)), Ok(()));
        assert!(queue.flush(Duration::from_secs(5)));
    }
}
