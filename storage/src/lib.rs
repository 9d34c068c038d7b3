//! The store's storage engine: one RocksDB instance per store.
//!
//! Modules, bottom up (each depends only on those above it):
//! - [`errors`]: the crate's error enum and its mapping to region errors.
//! - [`keys`]: the byte layout of local keys (raft log, raft/apply/region
//!   state, store ident, snapshot-apply redo record) and of data keys (user
//!   keys, prefixed with `z`).
//! - [`engine`]: [`Engine`], the database with its `default`, `lock`,
//!   `write` and `raft` column families, and point reads; [`Snapshot`], an
//!   owned point-in-time view that can cross threads.
//! - [`write_batch`]: [`WriteBatch`], atomic writes across column families,
//!   and the engine's write methods.
//! - [`reader`]: [`DbIterator`], a range-bounded iterator, the engine's and
//!   snapshot's iterators and scans, and [`RegionReader`], snapshot reads
//!   restricted to a range of user keys.
//! - [`sst`]: building external SST files, inspecting their key range, and
//!   ingesting them (region snapshots).
//! - [`storage`]: the [`Storage`] and [`StorageReader`] traits the server
//!   programs against, and [`Modify`].
//! - [`standalone`]: [`StandaloneStorage`], `Storage` without Raft.
//!
//! The replicated (Raft) storage lives in `raftstore` and implements the same
//! [`Storage`] trait over this crate's engine.

#![deny(missing_docs)]

pub mod engine;
pub mod errors;
pub mod keys;
pub mod reader;
pub mod sst;
pub mod standalone;
pub mod storage;
pub mod write_batch;

pub use engine::{
    ALL_CFS, CF_DEFAULT, CF_LOCK, CF_RAFT, CF_WRITE, DATA_CFS, Engine, Snapshot, check_data_cf,
    is_data_cf,
};
pub use errors::{Error, Result};
pub use reader::{DbIterator, RegionReader};
pub use sst::{SstKeyRange, SstWriter, inspect_sst, write_sst};
pub use standalone::StandaloneStorage;
pub use storage::{Modify, Storage, StorageReader};
pub use write_batch::WriteBatch;
