//! The raftstore: every region peer a kameo actor over the Raft core, with
//! its log and state in the store's RocksDB.
//!
//! Modules (STYLE: runtime-free state in `peer/`, the actor shells in `fsm/`,
//! one file per feature in `operation/`, background work in `worker/`):
//! - `peer`: `Peer`, the state of one region peer.
//! - `peer_storage`: `PeerStorage`, the Raft `Storage` over RocksDB
//!   (TinyKV's `peer_storage_test.go` is ported in `peer_storage_test`),
//!   including persisting a snapshot's states and its redo record.
//! - `operation`: proposing commands, applying entries, handling a `Ready`,
//!   snapshots (the peer's side), log GC, region heartbeats, splitting a
//!   region, destroying a peer.
//! - `fsm`: `PeerActor` (with its `PeerMsgHandler`) and `StoreActor`.
//! - `worker`: the group-commit writer thread, the raft-log GC thread, the
//!   split-check thread (measures regions, finds split keys) and the region
//!   worker actor (generates, applies and cleans up snapshots, and keeps
//!   each peer's snapshot generation state).
//! - `store`: starting and stopping a store (and finishing a snapshot apply
//!   a crash interrupted).
//! - `store_meta`: the store's initialized regions and their key ranges;
//!   its lock also serializes creating peers.
//! - `bootstrap`: a new store's identity and a cluster's first region.
//! - `snap`: the snapshot manager: snapshot files, building, verifying and
//!   ingesting, chunked transfer.
//! - `snapshot`: the `SnapshotSource` trait `PeerStorage` asks for
//!   snapshots, and the map of the four places with snapshot logic
//!   (`snap`, `worker::region`, `operation::snapshot`, `peer_storage`).
//! - `transport`, `scheduler`: what the store needs from its surroundings.
//! - `config`, `context`, `errors`.
//!
//! The consensus core is the `tinykv-raft` crate beside this one.

#![deny(missing_docs)]

pub mod bootstrap;
pub mod config;
pub mod context;
pub mod entry_cache;
pub mod errors;
pub mod fsm;
pub mod operation;
pub mod peer;
pub mod peer_storage;
#[cfg(test)]
mod peer_storage_test;
pub mod scheduler;
pub mod snap;
pub mod snapshot;
pub mod store;
pub mod store_meta;
pub mod transport;
pub mod worker;

pub use crate::config::Config;
pub use crate::errors::{Error, Result};
pub use crate::scheduler::{NoScheduler, SchedulerReporter};
pub use crate::snap::SnapManager;
pub use crate::store::Store;
pub use crate::transport::{Transport, TransportError};

/// What the `router::ReadSnapshot` a `Snap` command answers with holds:
/// take it out with `ReadSnapshot::downcast::<RegionSnapshot>()`.
pub type RegionSnapshot = storage::RegionReader;
