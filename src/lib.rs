//! tinykv: a TinyKV-compatible, actor-based, multi-raft key-value store.
//!
//! This root package holds the store node (`tinykv-server`: the `TinyKv`
//! gRPC service over the replicated store, started against a scheduler),
//! the client library ("Clerk") behind `tinykv-ctl`, and the benchmark
//! `tinykv-bench`.
//!
//! Modules:
//! - [`server`]: the `TinyKv` request handlers over a `Storage` (the Raw
//!   API), the `Storage` over the replicated store (`RaftStorage`) and the
//!   tonic service with its limits.
//! - [`node`]: a store node's start-up against a remote scheduler (store id,
//!   cluster bootstrap, `PutStore`), its heartbeats and operators over gRPC,
//!   and its graceful stop; `tinykv-server` runs one.
//! - [`client`]: the client library over gRPC — the Raw API routed by
//!   region through a region/leader cache, following the stores' region
//!   errors with backoff under a deadline, and the scheduler's view of
//!   stores and regions; `tinykv-ctl` is its command line.
//! - [`transport`]: raft messages and snapshots between stores over gRPC
//!   (`GrpcTransport`), and the receiving side of the `Raft` and `Snapshot`
//!   streams.
//! - [`command`]: handing a command to a local peer; the one place a
//!   command the router refuses becomes a region error (`ServerIsBusy`,
//!   `RegionNotFound`).
//! - [`playground`]: a local cluster of real processes (the scheduler and
//!   N stores on loopback, data under one folder) with start, stop,
//!   `kill -9` and pause of each; `tinykv-playground` and the black-box
//!   tests run it.
//! - [`cluster`]: the in-process cluster — N stores over RocksDB in temp
//!   dirs, a simulated network with filters, the scheduler in-process, and
//!   a client that follows `NotLeader` and retries. The test cluster of
//!   `tinykv-tests` and `tinykv-bench` are both built on it.
//! - [`bench`](mod@bench): the put workload and durable-write baseline behind
//!   `tinykv-bench`.
//! - [`rng`]: a small seeded generator (the bench's keys, the network's
//!   filters).
//!
//! The crates of the workspace:
//! - `kvproto`: TinyKV's protocol, generated from our own `.proto` files.
//! - `raftstore/raft` (`tinykv-raft`): the Raft consensus core, free of I/O.
//! - `storage` (`tinykv-storage`): the RocksDB engine, key layout, the
//!   `Storage` trait and its standalone implementation.
//! - `router`, `raftstore`: the replicated store.
//! - `scheduler-stub`: the placement-driver stub.
//! - `tests`: the raft simulation and the region/leader test cluster with
//!   its scenario suites (over [`cluster`]).

#![deny(missing_docs)]

pub mod bench;
pub mod client;
pub mod cluster;
pub mod command;
pub mod node;
pub mod playground;
pub mod rng;
pub mod server;
pub mod transport;
