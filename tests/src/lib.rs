//! Test harnesses of tinykv-rs.
//!
//! Modules:
//! - `raft_sim`: a deterministic randomized simulation of a Raft cluster
//!   over the core (`tinykv-raft`) alone, checking Raft's safety properties
//!   under loss, duplication, reordering, partitions, crashes, leader
//!   transfers and membership changes. Run by `tests/raft_sim.rs` and the
//!   `raft-sim` binary.
//!
//! To come: the region/leader test cluster (stores over RocksDB, a
//! simulated transport with filters, the placement driver in-process).

#![deny(missing_docs)]

pub mod raft_sim;
