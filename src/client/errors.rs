//! The client's [`Error`]: what an operation returns when it gives up.
//!
//! Region errors, unreachable stores and a busy scheduler are retried inside
//! the operation and never reach the caller as such; when the deadline
//! passes, the caller gets [`Error::Timeout`] naming the last of them.
//! Everything a retry cannot fix is returned at once, `SessionExpired`
//! included ([`Error::SessionExpired`]: only the session's owner, the
//! Clerk, knows whether re-opening the session is safe).

use std::time::Duration;

/// Why a client operation failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// An address the client was given cannot be used.
    #[error("invalid address {addr:?}: {reason}")]
    InvalidAddress {
        /// The address as given.
        addr: String,
        /// Why it is refused.
        reason: String,
    },
    /// [`super::ClientOptions`] that cannot work (a zero timeout, ...).
    #[error("invalid client options: {0}")]
    InvalidOptions(String),
    /// The operation did not succeed within its deadline.
    #[error("{op} timed out after {timeout:?}; last error: {last}")]
    Timeout {
        /// The operation (`RawGet`, `GetRegion`, ...).
        op: &'static str,
        /// The deadline it had.
        timeout: Duration,
        /// What the last attempt got.
        last: String,
    },
    /// The scheduler refused a request (its response header's error).
    #[error("scheduler refused {call}: {message}")]
    Scheduler {
        /// The scheduler call.
        call: &'static str,
        /// The error type and message from the response header.
        message: String,
    },
    /// The store answered with an error that is not a region error (the
    /// response's `error` field): bad input, such as an unknown column
    /// family or an empty key.
    #[error("store {store_id} refused {op}: {message}")]
    Store {
        /// The operation.
        op: &'static str,
        /// The store that answered.
        store_id: u64,
        /// The store's message.
        message: String,
    },
    /// A region error no retry can fix (one of a kind this client does not
    /// know, e.g. a request the store refuses as invalid).
    #[error("{op} on region {region_id}: region error: {message}")]
    Region {
        /// The operation.
        op: &'static str,
        /// The region the request went to.
        region_id: u64,
        /// The error's message.
        message: String,
    },
    /// A gRPC call failed with a status a retry cannot fix
    /// (`INVALID_ARGUMENT`, `UNIMPLEMENTED`, `RESOURCE_EXHAUSTED`, ...).
    #[error("{call} failed: {code:?}: {message}")]
    Grpc {
        /// The gRPC call.
        call: &'static str,
        /// The status code.
        code: tonic::Code,
        /// The status message.
        message: String,
    },
    /// A write of a client session got `SessionExpired` after an earlier
    /// attempt of it may have applied (`docs/PROTOCOL_EXTENSIONS.md`,
    /// "Client sessions", step 4), or a request without a session got it
    /// (a store's refusal no retry fixes). The write's outcome is unknown:
    /// it applied once or not at all.
    #[error(
        "the session of client {client_id} expired in the region during write {sequence}; \
         the write may or may not have been applied"
    )]
    SessionExpired {
        /// The client (session) id.
        client_id: u64,
        /// The sequence number of the write.
        sequence: u64,
    },
    /// A response broke the protocol (e.g. a region without an id).
    #[error("{call}: invalid response: {reason}")]
    InvalidResponse {
        /// The gRPC call.
        call: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// A `Result` with the client's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
