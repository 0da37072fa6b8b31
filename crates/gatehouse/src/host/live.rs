//! [`Live`]: the host serving requests now, behind one atomic pointer, and the certificates
//! of its HTTPS listeners. The reloader replaces both; a request loads the host once. It
//! also says whether the daemon is draining (stopping soon: `/readyz` fails).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use arc_swap::ArcSwap;

use super::Host;

/// The host serving requests now, and the certificates of its HTTPS listeners.
#[derive(Debug)]
pub struct Live {
    host: ArcSwap<Host>,
    certs: Arc<crate::tls::Certs>,
    draining: AtomicBool,
}

impl Live {
    /// Starts with `host` (and no certificates: see [`Live::certs`]).
    pub fn new(host: Arc<Host>) -> Live {
        Live { host: ArcSwap::new(host), certs: Arc::default(), draining: AtomicBool::new(false) }
    }

    /// The certificates HTTPS listeners serve; the reloader replaces them with the host.
    pub fn certs(&self) -> &Arc<crate::tls::Certs> {
        &self.certs
    }

    /// The current host (a request keeps it until it is answered).
    pub fn host(&self) -> Arc<Host> {
        self.host.load_full()
    }

    pub(crate) fn store(&self, host: Arc<Host>) {
        self.host.store(host);
    }

    /// From now on the daemon is stopping (`drain_delay` runs): still serving, not ready.
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    /// Whether [`Live::start_draining`] was called.
    pub(crate) fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}
