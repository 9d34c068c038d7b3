//! `Transport`: how a store's raft messages reach other stores.
//!
//! Contract: `send` never blocks and never fails loudly for a lost message;
//! Raft tolerates loss. An error means the target is unknown or unreachable,
//! and the peer reports it to Raft (`report_unreachable`).
//!
//! A `MsgSnapshot` goes through `send_snapshot` instead: its message only
//! describes the snapshot; the files, in this store's `SnapManager`, move as
//! `SnapshotChunk`s (`snap::ChunkEncoder` on this side, a
//! `snap::SnapshotReceiver` into the target store's manager on the other),
//! and the message is delivered to the target peer once they are complete
//! and verified (TinyKV's `Snapshot` stream).

use kvproto::raft_serverpb::RaftMessage;
use slog::{Logger, debug};

/// Delivers raft messages to other stores.
pub trait Transport: Send + Sync + 'static {
    /// Queues `msg` for `msg.to_peer.store_id`.
    fn send(&self, msg: RaftMessage) -> Result<(), TransportError>;

    /// Queues the transfer of `msg`, a `MsgSnapshot` of a snapshot generated
    /// in this store's `SnapManager`, with its files. Never blocks on the
    /// transfer. Once queued, its outcome reaches the sending peer as
    /// `PeerMsg::SnapshotStatus` through this store's router: `Finish` when
    /// the message was delivered with its files, `Failure` otherwise. An
    /// error means nothing was queued and nothing will be reported.
    fn send_snapshot(&self, msg: RaftMessage) -> Result<(), TransportError>;
}

/// Why a message could not be queued.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The target store is not known or not reachable.
    #[error("store {0} unreachable")]
    Unreachable(u64),
    /// The message was dropped on purpose (a test filter, a full queue).
    #[error("message dropped")]
    Dropped,
}

/// The peer to report unreachable to Raft after a send to peer `to` ended
/// in `sent`, if any (logged). A dropped message is not reported: Raft
/// resends what it needs.
pub fn unreachable_peer(sent: Result<(), TransportError>, to: u64, logger: &Logger) -> Option<u64> {
    match sent {
        Ok(()) | Err(TransportError::Dropped) => None,
        Err(TransportError::Unreachable(store_id)) => {
            debug!(logger, "peer unreachable"; "to" => to, "store_id" => store_id);
            Some(to)
        }
    }
}
