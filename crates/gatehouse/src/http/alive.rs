//! Whether the HTTP workers' event loops run: each loop beats a clock of its own, and the
//! daemon counts as alive while at least one loop has beaten recently. It is what the
//! systemd watchdog is pinged on, and it does not go through the public listeners, so a
//! listener that is full (every connection slot taken, the accept backlog queueing) is load,
//! not death: it never turns into a watchdog restart.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::clock::now_ms;

/// How often a loop beats.
pub(crate) const BEAT: Duration = Duration::from_millis(100);

/// The clocks of the loops that run now; a loop's clock is dropped with its task, when its
/// worker stops (a listener removed by a reload, a worker restarted after a panic).
fn clocks() -> &'static Mutex<Vec<Weak<AtomicU64>>> {
    static CLOCKS: Mutex<Vec<Weak<AtomicU64>>> = Mutex::new(Vec::new());
    &CLOCKS
}

/// Starts beating on the current thread's event loop (an HTTP worker's: called where the
/// worker builds its service).
pub(crate) fn beat_here() {
    let clock = Arc::new(AtomicU64::new(now_ms()));
    {
        let mut all = clocks().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        all.retain(|w| w.strong_count() > 0);
        all.push(Arc::downgrade(&clock));
    }
    actix_web::rt::spawn(async move {
        let mut ticks = actix_web::rt::time::interval(BEAT);
        loop {
            ticks.tick().await;
            clock.store(now_ms(), Ordering::Relaxed);
        }
    });
}

/// The age of the freshest beat of the loops that run (`None`: no loop runs).
pub(crate) fn freshest() -> Option<Duration> {
    let now = now_ms();
    let all = clocks().lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let ages =
        all.iter().filter_map(Weak::upgrade).map(|c| now.saturating_sub(c.load(Ordering::Relaxed)));
    ages.min().map(Duration::from_millis)
}

/// Whether the daemon counts as alive, given the freshest beat's age and the watchdog
/// interval: some loop beat within half the interval (systemd then still has half of it to
/// receive the ping), or within a few beats when the interval is shorter than that.
pub(crate) fn is_alive(freshest: Option<Duration>, interval: Duration) -> bool {
    let allowed = (interval / 2).max(BEAT * 5);
    freshest.is_some_and(|age| age <= allowed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn alive_while_some_loop_beat_within_half_the_interval() {
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        for (freshest, interval, want) in [
            (None, s(30), false),
            (Some(ms(0)), s(30), true),
            (Some(s(15)), s(30), true),
            (Some(s(15) + ms(1)), s(30), false),
            // A short interval still allows a few beats.
            (Some(ms(400)), ms(200), true),
            (Some(ms(600)), ms(200), false),
        ] {
            assert_eq!(is_alive(freshest, interval), want, "{freshest:?} of {interval:?}");
        }
    }

    #[test]
    fn a_loop_counts_while_its_task_runs_and_not_after() {
        let running = || clocks().lock().unwrap().iter().filter(|w| w.strong_count() > 0).count();
        let before = running();
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            beat_here();
            assert_eq!(running(), before + 1);
            actix_web::rt::time::sleep(BEAT * 2).await;
            let age = freshest().expect("a loop beats");
            assert!(age <= BEAT * 2, "{age:?}");
        });
        // The loop stops: its clock goes with its task.
        drop(local);
        drop(rt);
        assert_eq!(running(), before);
    }
}
