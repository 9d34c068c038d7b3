//! The raftstore: region peers as actors over the Raft core (not built yet).
//!
//! The consensus core lives in the `tinykv-raft` crate beside this one
//! (`raftstore/raft`). This crate will hold the peer actor and its
//! `PeerMsgHandler`, `PeerStorage`, apply, the store actor, the workers
//! (region snapshots, raft-log GC, split check, scheduler heartbeats), the
//! snapshot manager and the `Transport` trait. Nothing here works yet.
