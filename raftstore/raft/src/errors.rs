//! The errors of the Raft core.

use thiserror::Error;

/// What a `Storage` implementation can fail with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StorageError {
    /// The requested index is at or below the first index kept: it was
    /// compacted into a snapshot.
    #[error("log index is compacted")]
    Compacted,
    /// The requested index is past the last index stored.
    #[error("log index is unavailable")]
    Unavailable,
    /// The snapshot is older than the one the storage already has.
    #[error("snapshot is out of date")]
    SnapshotOutOfDate,
    /// A snapshot is being generated; ask again later. Raft retries rather
    /// than failing.
    #[error("snapshot is temporarily unavailable")]
    SnapshotTemporarilyUnavailable,
    /// The underlying store failed (I/O, corruption), described for the operator.
    #[error("storage failure: {0}")]
    Other(String),
}

/// The errors of the Raft core.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    /// A storage call failed.
    #[error(transparent)]
    Store(#[from] StorageError),
    /// A proposal was not accepted: this node is not the leader, the leader is
    /// transferring leadership, or the node was removed from the group.
    #[error("raft proposal dropped")]
    ProposalDropped,
    /// A local-only message (`MsgHup`, `MsgBeat`, `MsgPropose`) was handed
    /// to `RawNode::step`.
    #[error("cannot step a local message through RawNode::step")]
    StepLocalMsg,
    /// A response came from a peer that is not in the group.
    #[error("cannot step a response from unknown peer {0}")]
    StepPeerNotFound(u64),
    /// The configuration is invalid.
    #[error("invalid raft config: {0}")]
    ConfigInvalid(String),
}

/// The result type of the Raft core.
pub type Result<T> = std::result::Result<T, Error>;
