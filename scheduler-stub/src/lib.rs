//! The placement-driver ("scheduler") stub of tinykv-rs.
//!
//! Stores ask the scheduler for ids, register themselves, look regions up and
//! report heartbeats; the scheduler answers region heartbeats with operators
//! (add or remove a peer, transfer the leader). Tests run it in-process; the
//! `tinykv-scheduler` binary will serve the same state over gRPC
//! (`schedulerpb.Scheduler`).
//!
//! Modules:
//! - `client`: the [`SchedulerClient`] trait a store uses, and the heartbeat
//!   response handler type.
//! - `memory`: [`MemoryScheduler`], the in-memory implementation, with the
//!   operator hooks tests use.
//! - `region_map`: the region map by start key and by id, and the epoch rules
//!   heartbeats must pass.
//! - `operator`: [`Operator`] and the steps it asks of a region's leader.
//! - `errors`: [`Error`] and its wire form.

#![deny(missing_docs)]

mod client;
mod errors;
mod memory;
mod operator;
mod region_map;

pub use crate::client::{RegionHeartbeatResponseHandler, SchedulerClient};
pub use crate::errors::{Error, Result};
pub use crate::memory::MemoryScheduler;
pub use crate::operator::Operator;
