//! Snapshots of a region: the contract between a peer's storage and the
//! place snapshots come from, and the map of where snapshot logic lives.
//!
//! This module owns only [`SnapshotSource`]: what `PeerStorage::snapshot`
//! asks when Raft needs a snapshot to send. Everything else about snapshots
//! lives in four places, each with one job:
//!
//! - `snap` (`SnapManager`): the files. Naming them, building a snapshot
//!   from a RocksDB snapshot (`snap/build.rs`), streaming it as chunks
//!   (`snap/transfer.rs`), verifying and ingesting it (`snap/apply.rs`).
//!   Blocking functions; no actor, no peer state.
//! - `worker::region`: the region worker actor, which runs generate, apply
//!   and GC tasks off the async runtime, and each peer's generation state
//!   (`RegionSnapshots`, the implementation of this trait: relax,
//!   generating, generated).
//! - `operation::snapshot`: the peer's side. Checking an incoming
//!   `MsgSnapshot`, applying a persisted one through the worker, retrying
//!   the followers that wait when one was generated.
//! - `peer_storage` and `store`: persisting a snapshot's states with the
//!   `Applying` mark and the redo record in one synced batch
//!   (`PeerStorage::prepare_persist`); finishing on start-up an apply a
//!   crash interrupted (`store.rs`, `finish_applying`).
//!
//! Dependencies point one way: `peer_storage` needs only this trait;
//! `worker::region` implements it over `snap`; `operation::snapshot` and
//! `store` drive `worker::region` and `snap`. The life of a snapshot:
//!
//! ```text
//!  leader store                                 follower store
//!  raft needs one ─▶ PeerStorage::snapshot
//!    ─▶ SnapshotSource (worker::region) ─▶ snap::build (files + meta)
//!  ready: MsgSnapshot ─▶ Transport ─chunks (snap::transfer)─▶ received files
//!                                    operation::snapshot checks the message
//!                                    raft restores; PeerStorage persists
//!                                      states + Applying + redo record
//!                                    worker::region ─▶ snap::apply
//!                                      (verify, check keys, clear, ingest,
//!                                       Normal)     crash? store redoes it
//! ```

use kvproto::eraftpb::Snapshot;
use kvproto::metapb;

/// Produces snapshots of one region for its leader to send.
pub trait SnapshotSource: Send + Sync {
    /// A snapshot of `region` at or after `min_index` (the truncated
    /// index), or `SnapshotTemporarilyUnavailable` while one is being built.
    fn snapshot(&self, region: &metapb::Region, min_index: u64) -> raft::Result<Snapshot>;
}
