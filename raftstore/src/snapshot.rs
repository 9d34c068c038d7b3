//! Where a peer's snapshots come from.
//!
//! Raft asks `PeerStorage::snapshot` when a follower needs entries that are
//! compacted away. Building a snapshot of a region means reading its whole
//! range, so it happens off the peer (in the region worker); until it is
//! ready the source answers `SnapshotTemporarilyUnavailable` and Raft asks
//! again later.

use kvproto::eraftpb::Snapshot;
use kvproto::metapb;

/// Produces snapshots of one region for its leader to send.
pub trait SnapshotSource: Send + Sync {
    /// A snapshot of `region` at or after `applied`, or
    /// `SnapshotTemporarilyUnavailable` while one is being built.
    fn snapshot(&self, region: &metapb::Region, applied: u64) -> raft::Result<Snapshot>;
}

/// A source for stores that cannot build snapshots yet: Raft keeps retrying,
/// so a follower that needs one waits until it can be served.
#[derive(Debug, Default)]
pub struct UnavailableSnapshots;

impl SnapshotSource for UnavailableSnapshots {
    fn snapshot(&self, _: &metapb::Region, _: u64) -> raft::Result<Snapshot> {
        Err(raft::StorageError::SnapshotTemporarilyUnavailable.into())
    }
}
