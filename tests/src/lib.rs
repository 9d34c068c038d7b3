//! Test harnesses of tinykv-rs.
//!
//! Modules:
//! - `raft_sim`: a deterministic randomized simulation of a Raft cluster
//!   over the core (`tinykv-raft`) alone, checking Raft's safety properties
//!   under loss, duplication, reordering, partitions, crashes, leader
//!   transfers and membership changes. Run by `tests/raft_sim.rs` and the
//!   `raft-sim` binary.
//!
//! - `cluster`: the region/leader test cluster: the root package's
//!   in-process cluster (`tinykv::cluster`: stores over RocksDB in temp
//!   dirs, a simulated transport with filters, stop/restart of stores, a
//!   retrying client) with the `must_*` helpers the scenario suites use;
//!   `cluster::operators` scripts membership and leadership changes
//!   through the in-process scheduler; `cluster::generic` is TinyKV's
//!   `GenericTest` scenario (clients appending under partitions, message
//!   loss, conf changes and restarts), run by `tests/raftstore_2b.rs`,
//!   `raftstore_2c.rs` and `raftstore_3b.rs`; `cluster::kvraft` is MIT
//!   6.824's Lab 3 over the Clerk, run by `tests/kvraft_3a.rs` and
//!   `kvraft_3b.rs`.

//!
//! - `linearizability`: a checker for key/value histories (Put, Append,
//!   Get), per key, with a report of the smallest window that fails.

#![deny(missing_docs)]

pub mod cluster;
pub mod linearizability;
pub mod raft_sim;
