//! The placement-driver ("scheduler") stub of tinykv-rs.
//!
//! Stores ask the scheduler for ids, register themselves, look regions up and
//! report heartbeats; the scheduler answers region heartbeats with operators
//! (add or remove a peer, transfer the leader). Tests run it in-process; the
//! `tinykv-scheduler` binary serves the same state over gRPC
//! (`schedulerpb.Scheduler`), persisted in its data dir.
//!
//! Modules:
//! - `client`: the [`SchedulerClient`] trait a store uses, and the heartbeat
//!   response handler type.
//! - `memory`: [`MemoryScheduler`], the implementation: state in memory,
//!   optionally written through to a state file, with the operator hooks
//!   tests use.
//! - `persist`: the state file's format and its crash-safe writes.
//! - `ids`: the write-ahead id allocator and its bounds on client ids.
//! - `tso`: the timestamp oracle.
//! - `region_map`: the region map by start key and by id, and the epoch rules
//!   heartbeats must pass.
//! - `operator`: [`Operator`], the steps it asks of a region's leader, and
//!   its validation.
//! - `schedule`: [`ScheduleConfig`] and the checkers and balancers that make
//!   operators when scheduling is on (replica checker, balance-region,
//!   balance-leader, store liveness); [`ScheduleLoop`] runs them periodically.
//! - `service`: [`SchedulerService`], the tonic service over a
//!   `MemoryScheduler`, and [`serve`].
//! - `config`: [`Config`], the binary's settings from flags and a TOML file.
//! - `logging`: log level and format names, and the binaries' root logger
//!   (`tinykv-server` uses it too).
//! - `errors`: [`Error`] and its wire form.

#![deny(missing_docs)]

mod client;
pub mod config;
mod errors;
mod ids;
pub mod logging;
mod memory;
mod operator;
mod persist;
mod region_map;
mod schedule;
mod service;
mod tso;

pub use crate::client::{RegionHeartbeatResponseHandler, SchedulerClient};
pub use crate::config::Config;
pub use crate::errors::{Error, Result};
pub use crate::memory::{MemoryScheduler, ScheduleLoop, StoreRegionStats};
pub use crate::operator::Operator;
pub use crate::schedule::ScheduleConfig;
pub use crate::service::{SchedulerService, incoming, serve};
