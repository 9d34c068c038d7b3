//! TinyKV's wire protocol, generated with prost and tonic from this crate's
//! `proto/` files.
//!
//! The packages, message names, field numbers and types match TinyKV's kvproto,
//! so clients and stores built from TinyKV's own files talk to ours unchanged.
//! Extensions only add fields numbered 100 and up, or new messages and
//! methods (`BatchRaftMessage`, `TinyKv.BatchRaft`).
//! `scripts/compare_descriptors.py` checks that claim against a second set of
//! `.proto` files, field by field.
//!
//! Each package is a module at the crate root, because generated code refers to
//! other packages as `super::<package>`:
//!
//! - [`eraftpb`], [`raft_serverpb`], [`raft_cmdpb`]: Raft and the raftstore.
//! - [`metapb`], [`errorpb`]: shared metadata and region errors.
//! - [`kvrpcpb`], [`coprocessor`], [`tinykvpb`]: the store's client-facing service.
//! - [`schedulerpb`]: the placement driver's service.
//! - [`debugpb`]: this project's fault-injection service for tests (not
//!   TinyKV's; a store serves it only when started with
//!   `--enable-fault-injection`).
//!
//! One message is written by hand instead of generated:
//! `raft_serverpb::BatchRaftMessage` (see `batch_raft`), wire-identical to
//! its `.proto` definition but decoding each entry on its own, so one bad
//! entry does not cost the others.

#![allow(missing_docs)]

mod batch_raft;

/// Raft messages, log entries, snapshots and persisted Raft state.
pub mod eraftpb {
    include!(concat!(env!("OUT_DIR"), "/eraftpb.rs"));
}

/// Cluster metadata: stores, regions, peers and region epochs.
pub mod metapb {
    include!(concat!(env!("OUT_DIR"), "/metapb.rs"));
}

/// Region errors returned inside responses (`errorpb::Error`).
pub mod errorpb {
    include!(concat!(env!("OUT_DIR"), "/errorpb.rs"));
}

/// Client requests and responses: raw and transactional key-value commands.
pub mod kvrpcpb {
    include!(concat!(env!("OUT_DIR"), "/kvrpcpb.rs"));
}

/// Commands proposed through a region's Raft log, plain and admin.
pub mod raft_cmdpb {
    include!(concat!(env!("OUT_DIR"), "/raft_cmdpb.rs"));
}

/// Store-to-store Raft messages and snapshots, and the state a store persists.
pub mod raft_serverpb {
    include!(concat!(env!("OUT_DIR"), "/raft_serverpb.rs"));

    pub use crate::batch_raft::BatchRaftMessage;
}

/// The placement driver's messages and its `Scheduler` gRPC service.
pub mod schedulerpb {
    include!(concat!(env!("OUT_DIR"), "/schedulerpb.rs"));
}

/// The store's `TinyKv` gRPC service (client and server).
pub mod tinykvpb {
    include!(concat!(env!("OUT_DIR"), "/tinykvpb.rs"));
}

/// Coprocessor requests and responses.
pub mod coprocessor {
    include!(concat!(env!("OUT_DIR"), "/coprocessor.rs"));
}

/// Fault injection for tests (`Debug.SetPartition`): this project's own
/// package, served only by a store started with `--enable-fault-injection`.
pub mod debugpb {
    include!(concat!(env!("OUT_DIR"), "/debugpb.rs"));
}
