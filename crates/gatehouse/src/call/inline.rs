//! `dispatch: auto`: whether a call of an app whose plugin promises it never blocks runs on
//! the HTTP worker, and what happens when a call breaks the promise.
//!
//! A call on the HTTP worker holds every other connection of that worker until it returns,
//! and nothing can take it back. So the promise is checked after each such call. A call is
//! *slow* when it took longer than [`BUDGET`] and either waited (a voluntary context switch:
//! a sleep, I/O, a lock) or computed for longer than the budget; one only slowed by the
//! machine (preempted: involuntary switches) is not. Until one of its calls has kept the
//! promise (at first, and after each probation), an app runs one call at a time on the
//! workers, the others on its pool; later, while a call of it has run on a worker for longer
//! than the budget, its next calls take the pool (so one app that blocks does not hold every
//! worker at once); one still running after [`LONG`] breaks the promise
//! there and then, and the app stays off the workers until that call returns, so a call
//! that never returns holds one worker, not all of them. A slow call longer than [`LONG`], or
//! the
//! [`SLOW_CALLS`]th slow call within [`WINDOW`] calls of the app, breaks the promise: the
//! app's later calls go to its thread pool for a probation (1 s, doubling with each broken
//! promise up to [`MAX_PROBATION`]; a promise kept for [`FORGIVEN_AFTER`] starts the count
//! again), with a warning. A few short slow calls are forgiven: under load, a thread holding
//! an app's lock for nanoseconds is sometimes preempted, and the call waiting for it looks like
//! one that blocked, for a few milliseconds (about one call in 250,000 of the demo `products`
//! at 64 connections on two cores, 2-12 ms, sometimes two close together). So an app that
//! blocks for long stalls a worker once, one that blocks briefly on every call a few times,
//! and then once per probation at most.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::resource::{UsageWho, getrusage};

use crate::clock::now_ms;
use crate::logs::per_request;

/// The longest a call on an HTTP worker may take and still keep its app's promise.
pub(crate) const BUDGET: Duration = Duration::from_millis(2);
/// The first probation on the pool.
const FIRST_PROBATION: Duration = Duration::from_secs(1);
/// The longest probation: 2^10 s, about 17 minutes.
const MAX_PROBATION: Duration = Duration::from_secs(1024);
/// A reply still being written this long after its call started on an HTTP worker is cut
/// (`ReplySink::cut_at`): a stream, which belongs on the pool.
pub(crate) const CUT_AFTER: Duration = Duration::from_secs(1);
/// A slow call this long breaks the promise at once.
pub(crate) const LONG: Duration = Duration::from_millis(20);
/// This many slow calls within [`WINDOW`] calls of the app break its promise.
pub(crate) const SLOW_CALLS: u32 = 4;
/// See [`SLOW_CALLS`].
pub(crate) const WINDOW: u64 = 1000;
/// A broken promise this long after the last one counts as the first again.
const FORGIVEN_AFTER: Duration = Duration::from_secs(3600);

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What this thread had spent when a call started: (voluntary context switches, CPU time).
fn thread_usage() -> Option<(i64, Duration)> {
    let u = getrusage(UsageWho::RUSAGE_THREAD).ok()?;
    let micros = |t: nix::sys::time::TimeVal| {
        Duration::from_secs(u64::try_from(t.tv_sec()).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec()).unwrap_or(0))
    };
    Some((u.voluntary_context_switches(), micros(u.user_time()) + micros(u.system_time())))
}

/// Calls of one app tracked while they run on HTTP workers (one per worker at most; a call
/// past them is only judged when it returns).
const SLOTS: usize = 16;
/// Marks a running call's slot once the call broke the promise by running too long.
const JUDGED: u64 = 1 << 63;

/// What a call of an app still running on a worker after `ran` ms means for its next call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Running {
    /// Within the budget: the next call may run on a worker too.
    Fine,
    /// Past the budget: the next call takes the pool.
    Slow,
    /// Past [`LONG`]: the promise is broken.
    TooLong,
}

fn running_for(ran: u64) -> Running {
    if ran > ms(LONG) {
        Running::TooLong
    } else if ran > ms(BUDGET) {
        Running::Slow
    } else {
        Running::Fine
    }
}

/// One call on the HTTP worker, being timed; its slot in the gate is freed when dropped.
pub(crate) struct Timed<'a> {
    gate: &'a InlineGate,
    slot: Option<usize>,
    started: Instant,
    usage: Option<(i64, Duration)>,
}

impl Timed<'_> {
    /// When a reply still being written is cut (see [`CUT_AFTER`]).
    pub(crate) fn cut_at(&self) -> Instant {
        self.started + CUT_AFTER
    }

    /// Frees the call's slot; whether the call was already judged while it ran.
    fn finish(&mut self) -> bool {
        let Some(slot) = self.slot.take() else { return false };
        self.gate.running[slot].swap(0, Ordering::AcqRel) & JUDGED != 0
    }

    /// Marks the call judged, its slot kept until it is dropped (so no other call finds the
    /// app free to run before the judgment is in force); false when it was judged already.
    fn claim_judgment(&self) -> bool {
        let Some(slot) = self.slot else { return true };
        self.gate.running[slot].fetch_or(JUDGED, Ordering::AcqRel) & JUDGED == 0
    }
}

impl Drop for Timed<'_> {
    fn drop(&mut self) {
        self.finish();
    }
}

/// How a call on the HTTP worker broke its app's promise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Broken {
    /// It waited (`n` voluntary context switches).
    Waited(i64),
    /// It computed for this long.
    Computed(Duration),
}

/// Whether a call that took `took` broke the promise, from the thread's usage at its start
/// and end; `None` when within the budget or only preempted.
fn judge(took: Duration, before: (i64, Duration), after: (i64, Duration)) -> Option<Broken> {
    if took <= BUDGET {
        return None;
    }
    let waits = after.0 - before.0;
    let cpu = after.1.saturating_sub(before.1);
    if waits > 0 {
        Some(Broken::Waited(waits))
    } else if cpu > BUDGET {
        Some(Broken::Computed(cpu))
    } else {
        None
    }
}

/// One app instance's standing: on the HTTP worker, or on its pool until a moment.
#[derive(Debug)]
pub(crate) struct InlineGate {
    /// 0 while admitted; else the [`now_ms`] at which the probation ends.
    probation_until: AtomicU64,
    /// Promises broken since the count last started.
    broken: AtomicU32,
    /// Promises broken in all.
    total_broken: AtomicU64,
    /// When the last promise was broken ([`now_ms`], 0 for never).
    last_broken: AtomicU64,
    /// The app's calls running on HTTP workers now: when each started ([`now_ms`] + 1, and
    /// [`JUDGED`] once it ran too long), 0 for a free slot.
    running: [AtomicU64; SLOTS],
    /// The app's call count at the first slow call of the current window (0 for none).
    window_start: AtomicU64,
    /// Slow calls in the current window.
    slow: AtomicU32,
    /// Set until a call has kept the promise (and again at each probation's start): meanwhile
    /// one call at a time runs on a worker, so an app that blocks holds one worker, not all.
    unproven: AtomicBool,
}

impl Default for InlineGate {
    fn default() -> Self {
        InlineGate {
            probation_until: AtomicU64::new(0),
            broken: AtomicU32::new(0),
            total_broken: AtomicU64::new(0),
            last_broken: AtomicU64::new(0),
            running: Default::default(),
            window_start: AtomicU64::new(0),
            slow: AtomicU32::new(0),
            unproven: AtomicBool::new(true),
        }
    }
}

impl InlineGate {
    /// Promises broken in all (the status page's `promises_broken`).
    pub(crate) fn broken(&self) -> u64 {
        self.total_broken.load(Ordering::Relaxed)
    }

    /// Whether a call may run on the HTTP worker now: not on probation, and no call of the
    /// app still running there past [`BUDGET`] (finding one past [`LONG`] breaks the
    /// promise: `app` and `request_id` name the request that found it).
    pub(crate) fn admits(&self, app: &str, request_id: u64) -> bool {
        let until = self.probation_until.load(Ordering::Relaxed);
        if until != 0 && !self.admits_after(until, now_ms()) {
            return false;
        }
        let unproven = self.unproven.load(Ordering::Relaxed);
        let mut now = None;
        for slot in &self.running {
            let started = slot.load(Ordering::Acquire);
            if started == 0 {
                continue;
            }
            if started & JUDGED != 0 {
                // It broke the promise and still runs: keep off the workers until it returns.
                return false;
            }
            let now = *now.get_or_insert_with(now_ms);
            let ran = now.saturating_sub(started - 1);
            match running_for(ran) {
                // One call at a time until one kept the promise.
                Running::Fine if unproven => return false,
                Running::Fine => continue,
                // Another call of it is slow right now: this one takes the pool, and the
                // workers are not all held by one app that blocks.
                Running::Slow => return false,
                Running::TooLong => {}
            }
            if slot
                .compare_exchange(started, started | JUDGED, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                let probation = self.broke(now);
                per_request!(Warn, format_args!("app {app}"), request_id;
                    "promises its calls never block, but a call of it has run on an HTTP worker \
                     for {ran} ms and not returned, holding that worker's other connections; \
                     its calls run on its threads until it returns, and for {} s (hint: if it \
                     may block, drop the promise, App::NEVER_BLOCKS or \
                     gh_AppFlags_NEVER_BLOCKS, or set `dispatch: pool` on the alias)",
                    probation.as_secs());
            }
            // (Judged here, or by another thread at the same moment.)
            return false;
        }
        true
    }

    /// Starts timing a call about to run on this thread (an HTTP worker).
    pub(crate) fn start(&self) -> Timed<'_> {
        let now = now_ms();
        let slot = self.running.iter().position(|s| {
            s.compare_exchange(0, now + 1, Ordering::AcqRel, Ordering::Relaxed).is_ok()
        });
        Timed { gate: self, slot, usage: thread_usage(), started: Instant::now() }
    }

    fn admits_after(&self, until: u64, now: u64) -> bool {
        if now < until {
            return false;
        }
        // Over: one caller clears it (a lost race only means a second clear).
        let _ =
            self.probation_until.compare_exchange(until, 0, Ordering::Relaxed, Ordering::Relaxed);
        true
    }

    /// Records a call that ran on the HTTP worker, the app's `nth` call; if it broke the
    /// promise, starts a probation and says so.
    pub(crate) fn ran(&self, mut call: Timed<'_>, nth: u64, app: &str, request_id: u64) {
        let took = call.started.elapsed();
        if took <= BUDGET {
            if !call.finish() {
                self.unproven.store(false, Ordering::Relaxed);
            }
            return;
        }
        // Slow: the slot stays taken (and marked) until the judgment below is in force;
        // `call` frees it when dropped, at the end.
        if !call.claim_judgment() {
            // (Judged already, while it ran.)
            return;
        }
        // Without the thread's usage (never seen on Linux), any slow call counts as waiting.
        let (before, after) = match (call.usage, thread_usage()) {
            (Some(b), Some(a)) => (b, a),
            _ => ((0, Duration::ZERO), (1, Duration::ZERO)),
        };
        let Some(how) = judge(took, before, after) else { return };
        if took <= LONG && !self.one_too_many(nth) {
            return;
        }
        let probation = self.broke(now_ms());
        let how = match how {
            Broken::Waited(n) => format!("waited {n} time(s)"),
            Broken::Computed(cpu) => format!("computed for {:.1} ms", cpu.as_secs_f64() * 1000.0),
        };
        per_request!(Warn, format_args!("app {app}"), request_id;
            "promises its calls never block, but this one {how} and took {:.1} ms on an HTTP \
             worker (the budget is {} ms), holding that worker's other connections; its calls \
             run on its threads for the next {} s (hint: if it may block, drop the promise, \
             App::NEVER_BLOCKS or gh_AppFlags_NEVER_BLOCKS, or set `dispatch: pool` on the \
             alias)",
            took.as_secs_f64() * 1000.0,
            BUDGET.as_millis(),
            probation.as_secs());
    }

    /// Counts a short slow call, the app's `nth` call; whether it is the one too many in its
    /// window (the count then starts again). Two threads counting at once may miscount by
    /// one: the rule is a rate, not an exact tally.
    fn one_too_many(&self, nth: u64) -> bool {
        let start = self.window_start.load(Ordering::Relaxed);
        if start == 0 || nth.saturating_sub(start) > WINDOW {
            self.window_start.store(nth.max(1), Ordering::Relaxed);
            self.slow.store(1, Ordering::Relaxed);
            return SLOW_CALLS <= 1;
        }
        if self.slow.fetch_add(1, Ordering::Relaxed) + 1 >= SLOW_CALLS {
            self.window_start.store(0, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// Starts the probation for a promise broken at `now`; returns its length.
    fn broke(&self, now: u64) -> Duration {
        let last = self.last_broken.swap(now.max(1), Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) >= ms(FORGIVEN_AFTER) {
            self.broken.store(0, Ordering::Relaxed);
        }
        self.total_broken.fetch_add(1, Ordering::Relaxed);
        self.unproven.store(true, Ordering::Relaxed);
        let n = self.broken.fetch_add(1, Ordering::Relaxed);
        let probation = FIRST_PROBATION.saturating_mul(1 << n.min(10)).min(MAX_PROBATION);
        self.probation_until.store(now.saturating_add(ms(probation)).max(1), Ordering::Relaxed);
        probation
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_promise_sends_calls_to_the_pool_for_a_doubling_probation() {
        let gate = InlineGate::default();
        assert!(gate.admits("t", 1), "a new app is admitted");
        // (at ms, what happens, admitted after it at that moment, probation it started)
        enum Step {
            Break(u64),
            Ask(u64, bool),
        }
        let table = [
            Step::Break(1_000),
            Step::Ask(1_000, false),
            Step::Ask(1_999, false),
            Step::Ask(2_000, true),
            Step::Ask(2_001, true),
            Step::Break(5_000),
            Step::Ask(6_999, false),
            Step::Ask(7_000, true),
            Step::Break(10_000),
            Step::Ask(13_999, false),
            Step::Ask(14_000, true),
        ];
        let mut probations = Vec::new();
        for (i, step) in table.iter().enumerate() {
            match *step {
                Step::Break(at) => probations.push(gate.broke(at).as_secs()),
                Step::Ask(at, want) => {
                    let until = gate.probation_until.load(Ordering::Relaxed);
                    let got = until == 0 || gate.admits_after(until, at);
                    assert_eq!(got, want, "step {i} at {at} ms");
                }
            }
        }
        assert_eq!(probations, [1, 2, 4]);
    }

    #[test]
    fn probations_stop_growing_at_the_maximum() {
        let gate = InlineGate::default();
        let lengths: Vec<u64> = (0..14).map(|_| gate.broke(0).as_secs()).collect();
        assert_eq!(&lengths[..3], &[1, 2, 4]);
        assert_eq!(lengths[10], 1024);
        assert_eq!(lengths[13], 1024);
    }

    #[test]
    fn a_promise_is_forgiven_an_hour_after_it_was_last_broken() {
        let gate = InlineGate::default();
        let hour = ms(FORGIVEN_AFTER);
        let lengths: Vec<u64> =
            [0, 10, 20, 20 + hour, 30 + hour].iter().map(|&at| gate.broke(at).as_secs()).collect();
        assert_eq!(lengths, [1, 2, 4, 1, 2]);
    }

    #[test]
    fn only_a_slow_call_that_waited_or_computed_breaks_the_promise() {
        let ms = Duration::from_millis;
        // (took, voluntary switches, CPU during the call, verdict)
        let table = [
            (ms(1), 3, ms(1), None),
            (BUDGET, 1, ms(0), None),
            (ms(8), 0, ms(1), None),
            (ms(8), 2, ms(1), Some(Broken::Waited(2))),
            (ms(8), 0, ms(3), Some(Broken::Computed(ms(3)))),
            (ms(300), 1, ms(0), Some(Broken::Waited(1))),
        ];
        for (i, &(took, waits, cpu, want)) in table.iter().enumerate() {
            let before = (7, ms(40));
            let after = (7 + waits, ms(40) + cpu);
            assert_eq!(judge(took, before, after), want, "row {i}");
        }
    }

    #[test]
    fn the_fourth_short_slow_call_within_the_window_breaks_the_promise() {
        // (call number, one too many)
        let table = [
            (10, false),
            (20, false),
            (30, false),
            (40, true),
            // The count starts again.
            (50, false),
            (60, false),
            (70, false),
            // Outside the window of the slow call at 50: a new window.
            (51 + WINDOW, false),
            (52 + WINDOW, false),
            (53 + WINDOW, false),
            (54 + WINDOW, true),
        ];
        let gate = InlineGate::default();
        for (i, &(nth, want)) in table.iter().enumerate() {
            assert_eq!(gate.one_too_many(nth), want, "row {i}: call {nth}");
        }
    }

    #[test]
    fn a_call_that_sleeps_long_on_the_worker_starts_a_probation_at_once() {
        let gate = InlineGate::default();
        gate.ran(gate.start(), 1, "t", 1);
        assert!(gate.admits("t", 1), "a quick call keeps the app admitted");
        let slow = gate.start();
        std::thread::sleep(LONG + BUDGET);
        gate.ran(slow, 2, "t", 2);
        assert!(!gate.admits("t", 3), "a call that slept past LONG starts a probation");
        assert_eq!(gate.broken(), 1);
    }

    #[test]
    fn a_call_still_running_past_long_keeps_the_app_off_the_workers_until_it_returns() {
        let gate = InlineGate::default();
        let stuck = gate.start();
        std::thread::sleep(LONG * 2);
        assert!(!gate.admits("t", 2), "found running past LONG");
        assert_eq!(gate.broken(), 1);
        // Its probation over, the app stays off while the call still runs...
        gate.probation_until.store(0, Ordering::Relaxed);
        assert!(!gate.admits("t", 3));
        assert_eq!(gate.broken(), 1, "judged once");
        // ...and when it returns, it is not judged again.
        gate.ran(stuck, 1, "t", 1);
        assert_eq!(gate.broken(), 1, "judged once");
        gate.probation_until.store(0, Ordering::Relaxed);
        assert!(gate.admits("t", 4));
    }

    #[test]
    fn a_call_running_past_the_budget_sends_the_next_to_the_pool_past_long_breaks_it() {
        let (budget, long) = (ms(BUDGET), ms(LONG));
        let table = [
            (0, Running::Fine),
            (budget, Running::Fine),
            (budget + 1, Running::Slow),
            (long, Running::Slow),
            (long + 1, Running::TooLong),
        ];
        for (ran, want) in table {
            assert_eq!(running_for(ran), want, "running for {ran} ms");
        }
        // A call dated in the future has run for no time: the next one is admitted.
        let gate = InlineGate::default();
        gate.unproven.store(false, Ordering::Relaxed);
        gate.running[3].store(now_ms() + 60_000, Ordering::Relaxed);
        assert!(gate.admits("t", 1));
        assert_eq!(gate.broken(), 0);
    }

    #[test]
    fn an_unproven_app_runs_one_call_at_a_time_on_the_workers() {
        let gate = InlineGate::default();
        let first = gate.start();
        assert!(!gate.admits("t", 2), "a second call while the first runs takes the pool");
        gate.ran(first, 1, "t", 1);
        assert!(gate.admits("t", 3), "nothing running");
        // The first call kept the promise: calls run side by side from now on.
        let a = gate.start();
        // (Unless this thread was held up for longer than the budget meanwhile.)
        assert!(gate.admits("t", 4) || a.started.elapsed() > BUDGET / 2);
        drop(a);
        // A probation makes it unproven again.
        gate.broke(now_ms());
        gate.probation_until.store(0, Ordering::Relaxed);
        let b = gate.start();
        assert!(!gate.admits("t", 5), "after a probation, one at a time again");
        drop(b);
    }

    #[test]
    fn a_dropped_call_frees_its_slot() {
        let gate = InlineGate::default();
        for _ in 0..SLOTS * 2 {
            drop(gate.start());
        }
        assert!(gate.running.iter().all(|s| s.load(Ordering::Relaxed) == 0));
    }
}
