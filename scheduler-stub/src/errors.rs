//! The errors of the scheduler stub, and their wire form.
//!
//! Every call that can be refused returns [`Error`]; none panics on bad input.
//! [`Error::to_pb`] is the one place that turns an error into the
//! `schedulerpb::Error` a gRPC response header carries.

use kvproto::metapb::RegionEpoch;
use kvproto::schedulerpb::{self, ErrorType};
use thiserror::Error;

/// What a scheduler call can fail with.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Error {
    /// The call needs a bootstrapped cluster and `bootstrap` has not run yet.
    #[error("cluster is not bootstrapped")]
    NotBootstrapped,
    /// `bootstrap` was called on a cluster that already has its first region.
    #[error("cluster is already bootstrapped")]
    AlreadyBootstrapped,
    /// No store with this id has been put.
    #[error("store {0} not found")]
    StoreNotFound(u64),
    /// The store was removed for good (state `Tombstone`) and may not return.
    #[error("store {0} is tombstone")]
    StoreTombstone(u64),
    /// No region with this id is known.
    #[error("region {0} not found")]
    RegionNotFound(u64),
    /// No known region contains this key: the range is not reported yet, or its
    /// old region was dropped in favour of a newer one that has not reported.
    #[error("no region contains key {key:02x?}")]
    NoRegionForKey {
        /// The key that was looked up.
        key: Vec<u8>,
    },
    /// The reported region is older than what the scheduler has: a region with
    /// the same id and a newer epoch, or an overlapping region with the same or
    /// a newer `version`. The caller's view is out of date.
    #[error(
        "region {region_id} with epoch {epoch:?} is stale: region {current_id} has epoch {current_epoch:?}"
    )]
    StaleRegion {
        /// The region that was reported.
        region_id: u64,
        /// Its epoch as reported.
        epoch: RegionEpoch,
        /// The region the scheduler keeps instead (the same id or an overlapping one).
        current_id: u64,
        /// That region's epoch.
        current_epoch: RegionEpoch,
    },
    /// The request is malformed (a zero id, a range whose start is not below
    /// its end, a missing epoch or leader, ...). Nothing was changed.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The state file in the data dir could not be read, is torn or corrupt,
    /// or could not be written. At start-up the scheduler refuses to run
    /// rather than reset a cluster it cannot read; while serving, the change
    /// that could not be written is refused and nothing else changes.
    #[error("scheduler state file {path}: {reason}")]
    State {
        /// The file (or directory) involved.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// An operator failed validation when it was scheduled (a target store
    /// that is down or already holds a peer, removing the leader, ...).
    #[error("operator for region {region_id} refused: {reason}")]
    OperatorRefused {
        /// The region the operator was for.
        region_id: u64,
        /// Why it was refused.
        reason: String,
    },
    /// A configuration value (flag or config file key) is invalid.
    #[error("config `{key}`: {reason}")]
    Config {
        /// The flag or config file key, as the user wrote it.
        key: String,
        /// Why it is refused.
        reason: String,
    },
    /// Anything else: the id space ran out, or (for a remote client) the
    /// transport failed.
    #[error("{0}")]
    Other(String),
}

/// The result of a scheduler call.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The error as a gRPC response header carries it, with the `ErrorType`
    /// TinyKV's stores and clients branch on (`ALREADY_BOOTSTRAPPED`,
    /// `NOT_BOOTSTRAPPED`, `REGION_NOT_FOUND`, `STORE_TOMBSTONE`); everything
    /// else is `UNKNOWN` with the message.
    pub fn to_pb(&self) -> schedulerpb::Error {
        let error_type = match self {
            Error::NotBootstrapped => ErrorType::NotBootstrapped,
            Error::AlreadyBootstrapped => ErrorType::AlreadyBootstrapped,
            Error::StoreTombstone(_) => ErrorType::StoreTombstone,
            Error::RegionNotFound(_) | Error::NoRegionForKey { .. } => ErrorType::RegionNotFound,
            Error::StoreNotFound(_)
            | Error::StaleRegion { .. }
            | Error::InvalidRequest(_)
            | Error::OperatorRefused { .. }
            | Error::State { .. }
            | Error::Config { .. }
            | Error::Other(_) => ErrorType::Unknown,
        };
        schedulerpb::Error {
            r#type: error_type as i32,
            message: self.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_to_pb_keeps_the_types_clients_branch_on() {
        let cases = [
            (Error::NotBootstrapped, ErrorType::NotBootstrapped),
            (Error::AlreadyBootstrapped, ErrorType::AlreadyBootstrapped),
            (Error::StoreTombstone(3), ErrorType::StoreTombstone),
            (Error::RegionNotFound(7), ErrorType::RegionNotFound),
            (
                Error::NoRegionForKey { key: b"k".to_vec() },
                ErrorType::RegionNotFound,
            ),
            (Error::StoreNotFound(2), ErrorType::Unknown),
            (Error::Other("boom".to_owned()), ErrorType::Unknown),
        ];
        for (err, want) in cases {
            let pb = err.to_pb();
            assert_eq!(pb.r#type(), want, "{err}");
            assert_eq!(pb.message, err.to_string());
        }
    }

    #[test]
    fn test_messages_name_ids_and_epochs() {
        let err = Error::StaleRegion {
            region_id: 2,
            epoch: RegionEpoch {
                conf_ver: 1,
                version: 1,
            },
            current_id: 1,
            current_epoch: RegionEpoch {
                conf_ver: 1,
                version: 3,
            },
        };
        let msg = err.to_string();
        assert!(
            msg.contains("region 2") && msg.contains("region 1"),
            "{msg}"
        );
        assert!(msg.contains("version: 3"), "{msg}");
        let msg = Error::NoRegionForKey {
            key: vec![0xab, 0x01],
        }
        .to_string();
        assert!(msg.contains("ab") && msg.contains("01"), "{msg}");
    }
}
