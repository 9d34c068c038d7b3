//! What a peer does, one feature per file.

pub mod apply;
pub mod batch;
pub mod command;
pub mod destroy;
pub mod heartbeat;
pub mod lease;
pub mod log_gc;
pub mod own_removal;
pub mod raft_message;
pub mod read;
pub mod ready;
pub mod session;
pub mod snapshot;
pub mod split;
