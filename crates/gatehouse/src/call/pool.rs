//! Dispatch: the bounded thread pool each alias runs its app calls on, so that app code never
//! stalls the actix async workers and a slow app never stalls the others.
//!
//! Threads are started on demand, up to the alias's `threads`, and then kept. Jobs wait in a
//! bounded queue; past it the pool says busy and the client gets 503.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use super::deadline::{Deadline, Runner};
use crate::logs::per_request;

/// A unit of work: load the plugin if needed, call it, send the reply.
pub(crate) type Job = Box<dyn FnOnce() + Send + 'static>;

/// Jobs that may wait per thread before the pool refuses more.
pub(crate) const QUEUE_PER_THREAD: usize = 128;

/// The pool is saturated: every thread is busy and the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("all {threads} app threads are busy and {queued} requests are waiting")]
pub struct Busy {
    /// The pool's thread limit.
    pub threads: usize,
    /// The queue's capacity.
    pub queued: usize,
}

#[derive(Debug)]
struct Shared {
    rx: Receiver<Job>,
    idle: AtomicUsize,
}

/// A bounded pool of app threads.
#[derive(Debug)]
pub struct Pool {
    name: String,
    tx: Sender<Job>,
    shared: Arc<Shared>,
    spawned: AtomicUsize,
    max: usize,
    queue: usize,
    /// Threads still running a call whose client already got 504. Signed: a call may end
    /// (and count itself out) just before the 504 counts it in.
    overdue: AtomicIsize,
}

impl Pool {
    /// A pool of at most `threads` threads, named after `name` (the alias), where at most
    /// `queue` jobs wait (default: 128 per thread).
    pub fn new(name: &str, threads: usize, queue: Option<usize>) -> Pool {
        let max = threads.max(1);
        let queue = queue.unwrap_or(max * QUEUE_PER_THREAD);
        let (tx, rx) = crossbeam_channel::bounded(queue.max(1));
        Pool {
            name: name.to_owned(),
            tx,
            shared: Arc::new(Shared { rx, idle: AtomicUsize::new(0) }),
            spawned: AtomicUsize::new(0),
            max,
            queue,
            overdue: AtomicIsize::new(0),
        }
    }

    /// Counts a call whose client got 504 while its thread still runs it; returns how many
    /// there are now. Pair each with one [`Pool::overdue_done`], in either order: claim the
    /// call first (see [`Deadline`]), so that only one side decides it was overdue.
    pub(crate) fn overdue_started(&self) -> usize {
        usize::try_from(self.overdue.fetch_add(1, Ordering::AcqRel) + 1).unwrap_or(0)
    }

    /// An overdue call has returned (or was dropped before it ran).
    pub(crate) fn overdue_done(&self) {
        self.overdue.fetch_sub(1, Ordering::AcqRel);
    }

    /// Threads still running a call whose client already got 504.
    #[cfg(test)]
    pub(crate) fn overdue(&self) -> usize {
        usize::try_from(self.overdue.load(Ordering::Acquire)).unwrap_or(0)
    }

    /// Queues a job, starting a thread when none is free and the limit allows.
    pub fn submit(&self, job: Job) -> Result<(), Busy> {
        match self.tx.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                return Err(Busy { threads: self.max, queued: self.queue });
            }
        }
        if self.shared.rx.len() > self.shared.idle.load(Ordering::Acquire) {
            self.spawn_one();
        }
        Ok(())
    }

    fn spawn_one(&self) {
        let n = self.spawned.fetch_add(1, Ordering::AcqRel);
        if n >= self.max {
            self.spawned.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let shared = Arc::clone(&self.shared);
        let spawned = std::thread::Builder::new()
            .name(format!("app {}#{n}", self.name))
            .spawn(move || worker(&shared));
        if let Err(e) = spawned {
            self.spawned.fetch_sub(1, Ordering::AcqRel);
            per_request!(Error, self.name, None; "cannot start an app thread: {e}");
        }
    }

    /// Threads started so far.
    #[cfg(test)]
    pub(crate) fn threads(&self) -> usize {
        self.spawned.load(Ordering::Acquire)
    }
}

impl Runner for Pool {
    fn overdue(&self, _: &Deadline, _: u64) -> String {
        let busy = self.overdue_started();
        format!(" ({busy} of its {} threads busy past their timeout)", self.max)
    }

    fn overdue_done(&self) {
        Pool::overdue_done(self);
    }
}

fn worker(shared: &Shared) {
    loop {
        shared.idle.fetch_add(1, Ordering::AcqRel);
        let job = shared.rx.recv();
        shared.idle.fetch_sub(1, Ordering::AcqRel);
        let Ok(job) = job else { return };
        // A job that panics (a bug of ours, not the app's: the SDK catches those) drops its
        // reply sender, so its request answers 500; the thread lives on.
        if catch_unwind(AssertUnwindSafe(job)).is_err() {
            per_request!(Error, "an app job", None;
                "panicked in the daemon; its request got a 500");
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::sync::Barrier;

    #[test]
    fn runs_jobs_concurrently_up_to_the_limit() {
        let pool = Pool::new("t", 3, None);
        let barrier = Arc::new(Barrier::new(4));
        for _ in 0..3 {
            let b = Arc::clone(&barrier);
            pool.submit(Box::new(move || {
                b.wait();
            }))
            .unwrap();
        }
        // Returns only if three jobs run at once.
        barrier.wait();
        assert_eq!(pool.threads(), 3);
    }

    #[test]
    fn overdue_calls_are_counted_out_in_either_order() {
        let pool = Pool::new("t", 2, None);
        // (counted in or out, the count then)
        let table: &[(bool, usize)] = &[
            // A call that ended just before its 504 counted it in: back to none.
            (false, 0),
            (true, 0),
            // The usual order, twice over.
            (true, 1),
            (true, 2),
            (false, 1),
            (false, 0),
        ];
        for (step, &(started, want)) in table.iter().enumerate() {
            if started {
                assert_eq!(pool.overdue_started(), want, "step {step}");
            } else {
                pool.overdue_done();
            }
            assert_eq!(pool.overdue(), want, "step {step}");
        }
    }

    #[test]
    fn refuses_past_the_queue() {
        let pool = Pool::new("t", 1, None);
        let (block_tx, block_rx) = crossbeam_channel::bounded::<()>(0);
        let (started_tx, started_rx) = crossbeam_channel::bounded::<()>(1);
        pool.submit(Box::new(move || {
            started_tx.send(()).unwrap();
            let _ = block_rx.recv();
        }))
        .unwrap();
        started_rx.recv().unwrap();
        for _ in 0..QUEUE_PER_THREAD {
            pool.submit(Box::new(|| {})).unwrap();
        }
        assert!(pool.submit(Box::new(|| {})).is_err());
        drop(block_tx);
    }
}
