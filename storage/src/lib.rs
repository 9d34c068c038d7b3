//! The store's storage engine (not built yet).
//!
//! This crate will own the single RocksDB instance of a store: the `default`,
//! `lock`, `write` and `raft` column families, atomic cross-CF write batches,
//! region-bounded iterators and readers, the local/meta key encoding of the
//! design's storage layout, and the `Storage` trait with its standalone engine.
//! Nothing here works yet; the crate exists so the workspace has its final shape.
