//! The one owner of a request's deadline, for the in-process pool and the worker relay
//! alike: one timer per request (on the HTTP side, from when the whole body has arrived),
//! the 504, the count of threads still running past it, and the kill of a worker process
//! that holds such a request.
//!
//! Two sides race for the end of a call: the timer (the client gets 504) and the call itself
//! (it returns, or its relay hands over a reply). Each claims the request's one flag with a
//! swap; only the side that set it first decides. The timer, first, tells the call's
//! [`Runner`] that a call is overdue (the pool counts it, worker processes kill the one
//! serving it); the call, ending second, counts itself out ([`Deadline::ended`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::logs::per_request;
use crate::request::answer::Answer;

/// What runs a request's call: the alias's thread pool, or its worker processes.
pub(crate) trait Runner {
    /// The client of `deadline`'s request got 504 while its call still runs: count it, or
    /// kill the worker serving it. Returns the end of the log line (what was done).
    fn overdue(&self, deadline: &Deadline, request_id: u64) -> String;
    /// An overdue call has ended (or was dropped before it ran).
    fn overdue_done(&self);
}

#[derive(Debug)]
struct State {
    at: Instant,
    timeout: Duration,
    /// Set by the first of the timer and the call's end.
    claimed: AtomicBool,
    /// The worker process serving the request (0: none, or in process).
    pid: AtomicU32,
}

/// A request's deadline, shared by the HTTP side and the call.
#[derive(Debug, Clone)]
pub(crate) struct Deadline(Arc<State>);

impl Deadline {
    /// A deadline `timeout` from now.
    pub(crate) fn start(timeout: Duration) -> Deadline {
        Deadline(Arc::new(State {
            at: Instant::now() + timeout,
            timeout,
            claimed: AtomicBool::new(false),
            pid: AtomicU32::new(0),
        }))
    }

    /// When the client gets 504 if no reply has started.
    pub(crate) fn at(&self) -> Instant {
        self.0.at
    }

    /// The alias's timeout.
    pub(crate) fn timeout(&self) -> Duration {
        self.0.timeout
    }

    /// Whether the client already got 504 (the timer claimed the request).
    pub(crate) fn expired(&self) -> bool {
        self.0.claimed.load(Ordering::Acquire)
    }

    /// Claims the request for its end; true if this side was first.
    pub(crate) fn claim(&self) -> bool {
        !self.0.claimed.swap(true, Ordering::AcqRel)
    }

    /// The worker process now serving the request (0 when none does).
    pub(crate) fn serving(&self, pid: u32) {
        self.0.pid.store(pid, Ordering::Release);
    }

    /// The worker process serving the request, if one is.
    pub(crate) fn worker(&self) -> Option<u32> {
        Some(self.0.pid.load(Ordering::Acquire)).filter(|&p| p != 0)
    }

    /// The call has ended: true when its client already got 504, in which case the call is
    /// counted out of `runner`'s overdue ones.
    pub(crate) fn ended(&self, runner: &dyn Runner) -> bool {
        if self.claim() {
            return false;
        }
        runner.overdue_done();
        true
    }

    /// The 504, now: claims the request (a call still running is overdue: `runner` counts
    /// or kills it), logs one line for `who` and `request_id`, and gives the answer.
    pub(crate) fn expire(&self, runner: &dyn Runner, who: &str, request_id: u64) -> Answer {
        if self.claim() {
            let done = runner.overdue(self, request_id);
            per_request!(Warn, who, request_id;
                "the app did not answer within {:?}; answered 504{done}", self.0.timeout);
        }
        Answer::timed_out()
    }

    /// Waits for the call's reply until the deadline: the one timer of the request.
    pub(crate) async fn wait<T>(
        &self,
        reply: oneshot::Receiver<T>,
        runner: &dyn Runner,
        who: &str,
        request_id: u64,
    ) -> Result<T, Answer> {
        match tokio::time::timeout_at(self.0.at.into(), reply).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(Answer::call_lost()),
            Err(_) => Err(self.expire(runner, who, request_id)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicIsize;

    /// Counts like the pool does.
    #[derive(Default)]
    struct Count(AtomicIsize);

    impl Runner for Count {
        fn overdue(&self, _: &Deadline, _: u64) -> String {
            let n = self.0.fetch_add(1, Ordering::AcqRel) + 1;
            format!(" ({n} overdue)")
        }
        fn overdue_done(&self) {
            self.0.fetch_sub(1, Ordering::AcqRel);
        }
    }

    #[test]
    fn the_first_side_decides_and_the_count_returns_to_zero() {
        // (the timer first?, expected "ended" result)
        for timer_first in [true, false] {
            let runner = Count::default();
            let d = Deadline::start(Duration::from_secs(60));
            if timer_first {
                assert_eq!(d.expire(&runner, "/a", 1).status, 504);
                assert_eq!(runner.0.load(Ordering::Acquire), 1, "counted while it runs");
                assert!(d.ended(&runner), "the call learns it was overdue");
            } else {
                assert!(!d.ended(&runner));
                assert_eq!(d.expire(&runner, "/a", 1).status, 504);
            }
            assert_eq!(runner.0.load(Ordering::Acquire), 0, "timer first: {timer_first}");
            assert!(d.expired());
        }
    }

    #[test]
    fn a_worker_is_named_only_while_it_serves() {
        let d = Deadline::start(Duration::from_secs(1));
        assert_eq!(d.worker(), None);
        d.serving(42);
        assert_eq!(d.worker(), Some(42));
        d.serving(0);
        assert_eq!(d.worker(), None);
    }

    #[test]
    fn waiting_past_the_deadline_is_a_504_and_a_dropped_sender_a_500() {
        let rt = actix_web::rt::System::new();
        let runner = Count::default();
        let d = Deadline::start(Duration::from_millis(1));
        let (_tx, rx) = oneshot::channel::<u8>();
        let got = rt.block_on(d.wait(rx, &runner, "/a", 1));
        assert_eq!(got.map_err(|a| a.status), Err(504));
        assert_eq!(runner.0.load(Ordering::Acquire), 1);
        let d = Deadline::start(Duration::from_secs(60));
        let (tx, rx) = oneshot::channel::<u8>();
        drop(tx);
        assert_eq!(rt.block_on(d.wait(rx, &runner, "/a", 2)).map_err(|a| a.status), Err(500));
        let (tx, rx) = oneshot::channel::<u8>();
        let _ = tx.send(7);
        assert_eq!(rt.block_on(d.wait(rx, &runner, "/a", 3)).ok(), Some(7));
    }
}
