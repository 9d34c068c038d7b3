//! The Raft consensus core of tinykv-rs.
//!
//! Tick-driven and free of I/O: no clock, threads, disk or network. The host
//! (the raftstore's peer actor, or a test) drives a node through `RawNode`,
//! persists and applies what each `Ready` hands out, and sends its messages.
//!
//! Modules:
//! - `raw_node`: `RawNode` and `Ready`, the host's interface.
//! - `raft`: the state machine: elections (with optional PreVote and
//!   CheckQuorum), replication, snapshots, leader transfer, membership change.
//! - `log`: `RaftLog`, the stable log in `Storage` plus the unstable tail.
//! - `progress`: a leader's view of each follower.
//! - `read_only`: ReadIndex, linearizable reads confirmed by a heartbeat
//!   round (or the leader's lease) instead of a log entry.
//! - `storage`: the `Storage` trait and `MemoryStorage`.
//! - `config`, `errors`, `util`.

#![deny(missing_docs)]

mod config;
mod errors;
mod log;
mod progress;
mod raft;
mod raw_node;
mod read_only;
mod storage;
mod util;

#[cfg(test)]
mod raft_paper_test;
#[cfg(test)]
mod raft_prevote_test;
#[cfg(test)]
mod raft_snap_conf_test;
#[cfg(test)]
mod raft_test;
#[cfg(test)]
mod rawnode_test;
#[cfg(test)]
mod read_only_test;
#[cfg(test)]
mod sim_regressions_test;
#[cfg(test)]
mod test_util;

pub use kvproto::eraftpb;

pub use crate::config::{Config, ReadOnlyOption};
pub use crate::errors::{Error, Result, StorageError};
pub use crate::log::RaftLog;
pub use crate::progress::{Progress, ProgressState};
pub use crate::raft::{CAMPAIGN_TRANSFER, INVALID_ID, Raft, SoftState, StateRole};
pub use crate::raw_node::{RawNode, Ready, SnapshotStatus};
pub use crate::read_only::ReadState;
pub use crate::storage::{MemoryStorage, RaftState, Storage};
pub use crate::util::{is_local_msg, is_response_msg};

/// Compile-time check that a node can move between threads with its host actor.
#[allow(dead_code)]
fn assert_send() {
    fn is_send<T: Send>() {}
    is_send::<RawNode<MemoryStorage>>();
}
