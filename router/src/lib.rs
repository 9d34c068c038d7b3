//! The messages between a store's actors and the router that delivers them.
//!
//! Modules:
//! - `msg`: `PeerMsg` and `StoreMsg`, with the loss policy of each kind.
//! - `callback`: `Callback`, the exactly-once answer to a client command.
//! - `router`: `Router`, region id → peer mailbox, plus the store mailbox.

#![deny(missing_docs)]

mod callback;
mod msg;
mod router;

pub use crate::callback::{Callback, CallbackReceiver, CmdResponse};
pub use crate::msg::{PeerMsg, PeerTick, RaftCommand, SnapshotStatus, StoreMsg, StoreTick};
pub use crate::router::{MailboxLoad, PeerMailbox, Router, RouterError};

/// The consistent view of a region a `Snap` command answers with.
pub use storage::RegionReader as ReadSnapshot;

#[cfg(test)]
mod tests;
