//! tinykv: a TinyKV-compatible, actor-based, multi-raft key-value store.
//!
//! This root package holds the store server (`tinykv-server`), the
//! benchmark `tinykv-bench` and, to come, the client library ("Clerk") and
//! `tinykv-ctl`.
//!
//! Modules:
//! - [`server`]: the `TinyKv` request handlers over a `Storage` (so far the
//!   Raw API).
//! - [`bench`]: the in-process cluster and put workload behind
//!   `tinykv-bench`.
//!
//! The crates of the workspace:
//! - `kvproto`: TinyKV's protocol, generated from our own `.proto` files.
//! - `raftstore/raft` (`tinykv-raft`): the Raft consensus core, free of I/O.
//! - `storage` (`tinykv-storage`): the RocksDB engine, key layout, the
//!   `Storage` trait and its standalone implementation.
//! - `router`, `raftstore`: the replicated store (in progress).
//! - `scheduler-stub`: the placement-driver stub (in progress).
//! - `tests`: the raft simulation and, later, the region/leader test cluster.

#![deny(missing_docs)]

pub mod bench;
pub mod server;
