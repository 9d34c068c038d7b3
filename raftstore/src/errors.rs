//! The raftstore's errors, and the one conversion into `errorpb::Error` that
//! clients receive in a response header.

use kvproto::{errorpb, metapb};
use thiserror::Error;

/// Everything a raftstore operation can fail with.
#[derive(Debug, Error)]
pub enum Error {
    /// This peer is not the leader; `leader` is the one it knows of.
    #[error("peer is not leader of region {region_id}")]
    NotLeader {
        /// The region.
        region_id: u64,
        /// The leader this peer believes in, if any.
        leader: Option<metapb::Peer>,
    },
    /// No peer of the region on this store.
    #[error("region {0} not found")]
    RegionNotFound(u64),
    /// A key lies outside the region's range.
    #[error("key {} is not in region {}", .key.escape_ascii(), .region.id)]
    KeyNotInRegion {
        /// The key.
        key: Vec<u8>,
        /// The region.
        region: Box<metapb::Region>,
    },
    /// The request's region epoch is stale.
    #[error("epoch not match: {message}")]
    EpochNotMatch {
        /// What differs.
        message: String,
        /// The regions the client should know about now.
        regions: Vec<metapb::Region>,
    },
    /// The proposal was overtaken (another leader's entry took its place).
    #[error("stale command")]
    StaleCommand,
    /// The request was sent to the wrong store.
    #[error("store not match: request for store {request}, this is store {actual}")]
    StoreNotMatch {
        /// The store the request names.
        request: u64,
        /// This store.
        actual: u64,
    },
    /// The request names another peer of the region than this store's
    /// (TinyKV's "mismatch peer id"): the client's view of the region is
    /// stale, e.g. the peer was removed and added again under a new id.
    #[error("peer not match: request for peer {request}, this is peer {actual}")]
    PeerNotMatch {
        /// The peer the request names.
        request: u64,
        /// This store's peer of the region.
        actual: u64,
    },
    /// The peer's mailbox is full; retry later.
    #[error("server is busy: {0}")]
    ServerIsBusy(String),
    /// A write of a client session the region does not hold (it expired,
    /// was evicted, or was never opened): it may be a retry of a write
    /// applied before, so it is refused, never applied again.
    #[error("session of client {client_id} is not open in this region (write {sequence})")]
    SessionExpired {
        /// The client.
        client_id: u64,
        /// The refused write's sequence number.
        sequence: u64,
    },
    /// A request that makes no sense (empty, malformed, mixed kinds).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A snapshot that cannot be applied.
    #[error("invalid snapshot: {0}")]
    InvalidSnapshot(String),
    /// A file outside RocksDB (a snapshot file) could not be used.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, naming the file.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// Persisted state breaks an invariant; the peer cannot run.
    #[error("corrupt raft state: {0}")]
    CorruptState(String),
    /// The storage engine failed.
    #[error(transparent)]
    Storage(#[from] storage::Error),
    /// The Raft core refused.
    #[error(transparent)]
    Raft(#[from] raft::Error),
    /// The store is shutting down.
    #[error("store is stopping")]
    Stopped,
}

/// The raftstore's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The region error a client receives for this error.
    pub fn to_region_error(&self) -> errorpb::Error {
        let mut e = errorpb::Error {
            message: self.to_string(),
            ..Default::default()
        };
        match self {
            Error::NotLeader { region_id, leader } => {
                e.not_leader = Some(errorpb::NotLeader {
                    region_id: *region_id,
                    leader: *leader,
                });
            }
            Error::RegionNotFound(region_id) => {
                e.region_not_found = Some(errorpb::RegionNotFound {
                    region_id: *region_id,
                });
            }
            Error::KeyNotInRegion { key, region } => {
                e.key_not_in_region = Some(errorpb::KeyNotInRegion {
                    key: key.clone(),
                    region_id: region.id,
                    start_key: region.start_key.clone(),
                    end_key: region.end_key.clone(),
                });
            }
            Error::EpochNotMatch { regions, .. } => {
                e.epoch_not_match = Some(errorpb::EpochNotMatch {
                    current_regions: regions.clone(),
                });
            }
            Error::StaleCommand => {
                e.stale_command = Some(errorpb::StaleCommand {});
            }
            Error::StoreNotMatch { request, actual } => {
                e.store_not_match = Some(errorpb::StoreNotMatch {
                    request_store_id: *request,
                    actual_store_id: *actual,
                });
            }
            Error::ServerIsBusy(reason) => {
                e.server_is_busy = Some(errorpb::ServerIsBusy {
                    reason: reason.clone(),
                    backoff_ms: 0,
                });
            }
            Error::SessionExpired {
                client_id,
                sequence,
            } => {
                e.session_expired = Some(errorpb::SessionExpired {
                    client_id: *client_id,
                    sequence: *sequence,
                });
            }
            Error::Storage(s) => {
                if let Some(region_error) = s.to_region_error() {
                    return region_error;
                }
            }
            _ => {}
        }
        e
    }
}
