//! The placement-driver stub (not built yet).
//!
//! This crate will hold the `SchedulerClient` trait, an in-memory scheduler
//! (ids, stores, region map kept fresh by heartbeats, operators) usable
//! in-process by tests, and its gRPC service. Nothing here works yet.
