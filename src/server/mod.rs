//! The store's request handlers, over any [`Storage`].
//!
//! [`Server`] holds the handlers of the `TinyKv` service, written as plain
//! async methods from request to response so they can be tested without gRPC;
//! the tonic service wraps them. Handler families live in their own files:
//! - [`raw_api`]: `RawGet`, `RawPut`, `RawDelete`, `RawScan`, and the
//!   extensions `RawAppend` and `OpenSession` (client sessions).
//! - [`session`]: [`session::SessionStorage`], what those writes need from
//!   a storage beyond [`Storage`]: one command per write with the client's
//!   session, `Append`, `OpenSession`.
//! - [`raft_storage`]: [`raft_storage::RaftStorage`], the `Storage` over a
//!   store's Raft-replicated regions (commands through its router).
//! - [`service`]: [`service::TinyKvService`], the `TinyKv` gRPC service over
//!   these handlers, with its limits ([`service::ServiceOptions`]).
//!
//! Handlers never fail at the gRPC level and never panic on input: a bad
//! request or a storage failure becomes the response's `error` string, and a
//! refusal the client must route around (not leader, wrong region, ...)
//! becomes its `region_error`, as TinyKV does.

pub mod raft_storage;
pub mod raw_api;
pub mod service;
pub mod session;

#[cfg(test)]
mod server_test;

use kvproto::errorpb;
use storage::Storage;

pub use self::raw_api::ScanLimits;

/// The `TinyKv` service's handlers over a storage `S`.
#[derive(Debug)]
pub struct Server<S: Storage> {
    storage: S,
    scan_limits: ScanLimits,
    /// Makes `RawAppend` atomic over a storage that does not apply it
    /// itself (see [`raw_api`]): an append holds it exclusively from its
    /// read to its write, every other write holds it shared. Unused over a
    /// storage that keeps sessions, whose state machine orders writes. A
    /// tokio lock: it is held across the storage's awaits.
    local_writes: tokio::sync::RwLock<()>,
}

impl<S: Storage> Server<S> {
    /// A server answering from `storage`.
    pub fn new(storage: S) -> Self {
        Server {
            storage,
            scan_limits: ScanLimits::default(),
            local_writes: tokio::sync::RwLock::new(()),
        }
    }

    /// The same server with other `RawScan` bounds.
    pub fn with_scan_limits(self, scan_limits: ScanLimits) -> Self {
        Server {
            scan_limits,
            ..self
        }
    }

    /// The storage underneath.
    pub fn storage(&self) -> &S {
        &self.storage
    }
}

/// Where an error goes in a response: the `region_error` field for region
/// errors, the `error` string for everything else.
pub(crate) enum ResponseError {
    // Boxed: an `errorpb::Error` is large, and this travels in every `Result`.
    Region(Box<errorpb::Error>),
    Other(String),
}

impl From<storage::Error> for ResponseError {
    fn from(e: storage::Error) -> Self {
        match e.to_region_error() {
            Some(region_error) => ResponseError::Region(Box::new(region_error)),
            None => ResponseError::Other(e.to_string()),
        }
    }
}
