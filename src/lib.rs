//! tinykv: a TinyKV-compatible, actor-based, multi-raft key-value store.
//!
//! This root package will hold the store server (`tinykv-server`), the client
//! library ("Clerk"), `tinykv-ctl` and `tinykv-bench`. They arrive with the
//! replicated store; until then the package only anchors the workspace.
//!
//! The crates of the workspace:
//! - `kvproto`: TinyKV's protocol, generated from our own `.proto` files.
//! - `raftstore/raft` (`tinykv-raft`): the Raft consensus core, free of I/O.
//! - `storage`, `router`, `raftstore`: the replicated store (in progress).
//! - `scheduler-stub`: the placement-driver stub (in progress).
//! - `tests`: the raft simulation and, later, the region/leader test cluster.
