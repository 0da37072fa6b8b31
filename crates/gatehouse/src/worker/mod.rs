//! Process isolation (`isolation: process`): an alias's apps run in worker processes, the
//! same `gatehouse` binary started as `gatehouse worker`, like mod_wsgi's daemon mode.
//!
//! - [`proto`]: the framing over the Unix sockets between the daemon and a worker.
pub mod boundary;
pub mod child;
pub mod group;
pub mod messages;
pub mod proto;
pub mod relay;
