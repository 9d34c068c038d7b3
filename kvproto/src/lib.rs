//! TinyKV's wire protocol, generated with prost from this crate's `proto/` files.
//!
//! The packages, message names, field numbers and types match TinyKV's kvproto,
//! so clients and stores built from TinyKV's own files talk to ours unchanged.
//! Extensions only add fields numbered 100 and up.

#![allow(missing_docs)]

/// Raft messages, log entries, snapshots and persisted Raft state.
pub mod eraftpb {
    include!(concat!(env!("OUT_DIR"), "/eraftpb.rs"));
}
