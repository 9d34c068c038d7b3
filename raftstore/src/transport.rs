//! `Transport`: how a store's raft messages reach other stores.
//!
//! Contract: `send` never blocks and never fails loudly for a lost message;
//! Raft tolerates loss. An error means the target is unknown or unreachable,
//! and the peer reports it to Raft (`report_unreachable`).

use kvproto::raft_serverpb::RaftMessage;

/// Delivers raft messages to other stores.
pub trait Transport: Send + Sync + 'static {
    /// Queues `msg` for `msg.to_peer.store_id`.
    fn send(&self, msg: RaftMessage) -> Result<(), TransportError>;
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
