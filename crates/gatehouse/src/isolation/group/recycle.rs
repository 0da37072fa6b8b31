//! Replacing a group's workers while it serves: all of them, gracefully (a changed script,
//! an explicit reload), or one past its `memory_limit`.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{Group, Inner, State};
use crate::isolation::proto::Kind;
use crate::isolation::sockets::Worker;
use crate::isolation::spec::{Spec, resident_bytes};

impl Group {
    /// Replaces every running worker, gracefully: each gets no new request, stops once its
    /// requests in flight are done, and its slot starts a fresh one at once (which imports
    /// everything anew: a script's own modules too, as mod_wsgi daemon mode restarts its
    /// processes). Workers still starting are left alone: they load what is there now.
    /// Returns how many were told.
    pub(crate) fn recycle(&self, why: &str) -> usize {
        let mut state = self.inner.lock();
        if state.stopping {
            return 0;
        }
        let ready: Vec<Arc<Worker>> =
            state.workers.iter().filter(|w| state.serving(w)).cloned().collect();
        for w in &ready {
            w.retiring.store(true, Ordering::Release);
            state.let_go(w);
        }
        drop(state);
        if !ready.is_empty() {
            let pids: Vec<String> = ready.iter().map(|w| w.pid.to_string()).collect();
            log::info!(
                "{}: {why}: replacing worker(s) {} after their requests in flight",
                self.inner.label,
                pids.join(", ")
            );
        }
        ready.len()
    }

    /// Records `fingerprint` of the scripts the workers serve; true when it differs from
    /// the one recorded before (not on the first).
    pub(crate) fn scripts_changed(&self, fingerprint: u64) -> bool {
        let fingerprint = fingerprint.max(1);
        let before = self.inner.scripts.swap(fingerprint, Ordering::AcqRel);
        before != 0 && before != fingerprint
    }
}

impl Inner {
    pub(super) fn check_memory(&self, spec: &Spec, worker: &Arc<Worker>) {
        let Some(limit) = spec.settings.memory_limit else { return };
        let rss = match resident_bytes(worker.pid) {
            Ok(rss) => rss,
            Err(why) => {
                if let Some(why) = why.filter(|_| !worker.unmeasured.swap(true, Ordering::AcqRel)) {
                    log::warn!("{}: {why}", self.label);
                }
                return;
            }
        };
        if rss > limit && !worker.retiring.swap(true, Ordering::AcqRel) {
            log::warn!(
                "{}: worker {} uses {} MiB, past its memory_limit of {} MiB; recycling it \
                 after its requests in flight",
                self.label,
                worker.pid,
                rss >> 20,
                limit >> 20
            );
            self.lock().let_go(worker);
        }
    }

    /// Replaces a ready worker, after its requests in flight, that has run past
    /// `restart_interval` or served nothing for `inactivity_timeout` (`activity`: the
    /// requests it had been given, and when that count last moved or it was busy).
    pub(super) fn check_age(
        &self,
        spec: &Spec,
        worker: &Arc<Worker>,
        activity: &mut (u64, std::time::Instant),
    ) {
        let settings = &spec.settings;
        let served = worker.served.load(Ordering::Acquire);
        if served != activity.0 || worker.busy.load(Ordering::Acquire) > 0 {
            *activity = (served, std::time::Instant::now());
        }
        let why = match (settings.restart_interval, settings.inactivity_timeout) {
            (Some(every), _) if worker.started.elapsed() >= every => {
                format!("it has run for its restart_interval of {every:?}")
            }
            (_, Some(idle)) if activity.1.elapsed() >= idle => {
                format!("it served no request for its inactivity_timeout of {idle:?}")
            }
            _ => return,
        };
        if worker.retiring.swap(true, Ordering::AcqRel) {
            return;
        }
        log::info!(
            "{}: worker {}: {why}; replacing it after its requests in flight",
            self.label,
            worker.pid
        );
        self.lock().let_go(worker);
    }
}

impl State {
    /// Whether `w` serves requests now: alive, ready (its sockets lent out or idle), and not
    /// being replaced.
    pub(super) fn serving(&self, w: &Arc<Worker>) -> bool {
        !w.dead.load(Ordering::Acquire)
            && !w.retiring.load(Ordering::Acquire)
            && (w.busy.load(Ordering::Acquire) > 0
                || self.idle.iter().any(|c| Arc::ptr_eq(&c.worker, w)))
    }

    /// Lets go of retiring worker `w`: its idle sockets get no new request, and it is told
    /// to stop now if it serves none (else when its last request is done, in `release`).
    pub(super) fn let_go(&mut self, w: &Arc<Worker>) {
        self.idle.retain(|c| !Arc::ptr_eq(&c.worker, w));
        if w.busy.load(Ordering::Acquire) == 0 {
            w.send_control(Kind::Stop);
        }
    }
}
