//! The messages of a store's actors: `PeerMsg` for a region peer, `StoreMsg`
//! for the store.
//!
//! Loss policy, per kind (the router enforces it, see `router.rs`):
//! - droppable: raft traffic from other stores. Raft tolerates loss, so a
//!   peer (or the store, for regions it lacks) whose mailbox is over its
//!   limit simply drops it.
//! - refusable: client commands. Over the limit they are handed back, and the
//!   caller answers `ServerIsBusy`; never silently lost.
//! - must-deliver: everything else (ticks, results of background work,
//!   lifecycle). Never dropped for load; only a stopped actor refuses them,
//!   and then the sender gets the message back.
//!
//! A message an actor accepted but had not handled when it stopped is not
//! lost either: the stopping peer answers a command `RegionNotFound` (it was
//! never proposed); every other kind concerned only that actor incarnation
//! and is dropped with it (a raft message is droppable anyway).

use kvproto::metapb;
use kvproto::raft_cmdpb::RaftCmdRequest;
use kvproto::raft_serverpb::RaftMessage;

use crate::callback::Callback;

/// A periodic duty of a region peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerTick {
    /// Drive the Raft clock.
    Raft,
    /// Check whether the Raft log should be compacted.
    RaftLogGc,
    /// Report the region to the scheduler (leader only).
    SchedulerHeartbeat,
    /// Check whether the region should split.
    SplitCheck,
}

/// A periodic duty of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StoreTick {
    /// Report store statistics to the scheduler.
    SchedulerHeartbeat,
    /// Remove snapshot files no peer needs any more.
    SnapshotGc,
}

/// A command proposed by a client, with the callback that answers it.
#[derive(Debug)]
pub struct RaftCommand {
    /// The request.
    pub request: RaftCmdRequest,
    /// Answered exactly once, after the command is applied or refused.
    pub callback: Callback,
}

/// Whether a snapshot sent to a peer arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotStatus {
    /// It reached the target peer with its files complete and verified.
    Finish,
    /// It was lost or rejected; Raft will probe again.
    Failure,
}

/// What the split checker found scanning a region's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitCheckResult {
    /// The region's epoch when the check was scheduled: a split key found
    /// for another epoch (the range may have changed) is not used.
    pub epoch: metapb::RegionEpoch,
    /// Bytes of keys and values in the region's default CF.
    pub approximate_size: u64,
    /// Keys in the region's default CF.
    pub approximate_keys: u64,
    /// Where to split (a user key strictly inside the region), when the
    /// region is larger than the split limit.
    pub split_key: Option<Vec<u8>>,
}

/// The scheduler's answer to a leader's split request: the ids the new
/// region and its peers get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitIds {
    /// The user key the new region starts at.
    pub split_key: Vec<u8>,
    /// The region's epoch the split was asked for.
    pub epoch: metapb::RegionEpoch,
    /// The new region's id.
    pub new_region_id: u64,
    /// The new region's peer ids, one per peer of the region, in the order
    /// of its peers.
    pub new_peer_ids: Vec<u64>,
}

/// A message for a region peer's actor.
#[derive(Debug)]
pub enum PeerMsg {
    /// Raft traffic from another store. Droppable.
    RaftMessage(Box<RaftMessage>),
    /// A client command. Refusable.
    RaftCommand(Box<RaftCommand>),
    /// A tick. Must-deliver.
    Tick(PeerTick),
    /// The fate of a snapshot this peer sent. Must-deliver.
    SnapshotStatus {
        /// The peer the snapshot went to.
        to_peer_id: u64,
        /// What became of it.
        status: SnapshotStatus,
    },
    /// A snapshot of this region finished generating and waits in the
    /// peer's snapshot source: followers waiting for one can be sent it now.
    /// Must-deliver (but losing it only delays them to the next probe).
    SnapshotGenerated,
    /// The split checker's findings. Must-deliver (losing it only delays
    /// a split to the next check).
    SplitCheckResult(Box<SplitCheckResult>),
    /// Ids for a split this peer asked the scheduler for: propose it.
    /// Must-deliver (losing it only delays a split to the next check).
    SplitIds(Box<SplitIds>),
    /// A split on this store created this peer's region, initialized, while
    /// this peer ran uninitialized (created by a message from the new
    /// region's leader): load the persisted region and state and go on as
    /// the split-born peer, keeping the vote this peer cast.
    /// Must-deliver.
    SplitInit {
        /// The new region, as the split wrote it.
        region: Box<metapb::Region>,
        /// Whether to campaign at once (the splitting peer led its region).
        campaign: bool,
    },
}

impl PeerMsg {
    /// Whether the router counts this message against the mailbox limit.
    pub fn is_load(&self) -> bool {
        matches!(self, PeerMsg::RaftMessage(_) | PeerMsg::RaftCommand(_))
    }
}

impl StoreMsg {
    /// Whether the router counts this message against the store's limit.
    pub fn is_load(&self) -> bool {
        matches!(self, StoreMsg::RaftMessage(_))
    }
}

/// Why a peer actor stopped, as its store learns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerStopReason {
    /// It destroyed itself: removed from its region, or replaced by a newer
    /// incarnation. Its state on disk is `Tombstone`.
    Destroyed,
    /// It met an error it cannot recover from in memory (a failed write).
    /// Its state on disk is intact: every write it made was atomic.
    Failed(String),
    /// It panicked. Its state on disk is intact, as for `Failed`.
    Panicked(String),
    /// The store is shutting down.
    Shutdown,
}

/// A message for the store actor.
#[derive(Debug)]
pub enum StoreMsg {
    /// Raft traffic for a region this store has no running peer of: the
    /// store decides whether to create (or recreate) one. Droppable.
    RaftMessage(Box<RaftMessage>),
    /// A store tick. Must-deliver.
    Tick(StoreTick),
    /// A peer actor has stopped; its router entry is closed and leaves the
    /// router right after this is sent. Must-deliver.
    PeerStopped {
        /// Its region.
        region_id: u64,
        /// Its peer id.
        peer_id: u64,
        /// Why it stopped: the store recreates a failed or panicked peer
        /// from its persisted state.
        reason: PeerStopReason,
    },
}
