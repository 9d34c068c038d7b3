//! The messages between a store's actors and the router that delivers them.
//!
//! Modules:
//! - `msg`: `PeerMsg` and `StoreMsg`, with the loss policy of each kind.
//! - `callback`: `Callback`, the exactly-once answer to a client command,
//!   and `ReadSnapshot`, the opaque read view a `Snap` command answers with.
//! - `router`: `Router`, region id → peer mailbox, plus the store mailbox.
//!
//! This crate depends on `kvproto` only (DESIGN §1): what a read view holds
//! is the raftstore's business.

#![deny(missing_docs)]

mod callback;
mod msg;
mod router;

pub use crate::callback::{Callback, CallbackReceiver, CmdResponse, ReadSnapshot};
pub use crate::msg::{
    PeerMsg, PeerStopReason, PeerTick, RaftCommand, SnapshotStatus, SplitCheckResult, SplitIds,
    StoreMsg, StoreTick,
};
pub use crate::router::{MailboxHandle, MailboxLoad, PeerMailbox, Router, RouterError};

#[cfg(test)]
mod tests;
