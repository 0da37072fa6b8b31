//! Process isolation (`isolation: process`): an alias's apps run in worker processes, the
//! same `gatehouse` binary started as `gatehouse worker`, like mod_wsgi's daemon mode.
//!
//! - [`proto`]: the framing over the Unix sockets between the daemon and a worker.
pub mod boundary;
pub(crate) mod group;
pub(crate) mod messages;
pub(crate) mod proto;
pub(crate) mod relay;
pub(crate) mod sockets;
mod spec;
pub(crate) mod websocket;

/// The time slice of the daemon's threads (set by `gatehouse serve` before it starts any;
/// its workers take the kernel's default back, 0.7-2.8 ms). Longer than a worker's, so a
/// daemon thread woken by a worker's reply lets the worker go on to wait for its next
/// request instead of preempting it and being preempted back: on one CPU, a relayed
/// request then costs 4 context switches instead of 5: by hand the bridge in worker
/// processes served 2-20% more, and in `bench/run` 0-4% more against mod_wsgi at one
/// connection, the same at 64 (docs/benchmarks.md, "Where a relayed request's time
/// goes"). The CPU share is the same (that is the nice value's business); the daemon only
/// waits its turn more patiently.
pub const DAEMON_SLICE: std::time::Duration = std::time::Duration::from_millis(10);
