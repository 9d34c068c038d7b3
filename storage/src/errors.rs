//! The storage crate's one error type, and its conversion to a region error.
//!
//! Keys in messages are printed with [`escape_ascii`](slice::escape_ascii):
//! printable bytes as they are, the rest as `\xNN`.

use std::sync::Arc;

use kvproto::errorpb;

/// Everything that can go wrong in the storage crate.
///
/// `Clone`, so that one failed group write can answer every waiting writer.
#[derive(Clone, Debug, thiserror::Error)]
pub enum Error {
    /// RocksDB failed: I/O error, corruption, a bad option at open.
    #[error("rocksdb: {0}")]
    RocksDb(#[from] rocksdb::Error),

    /// A stored value is not the protobuf message the caller expected.
    #[error("cannot decode the value at key \"{}\": {source}", key.escape_ascii())]
    Decode {
        /// The key whose value failed to decode.
        key: Vec<u8>,
        /// What prost reported.
        #[source]
        source: prost::DecodeError,
    },

    /// A key does not have the layout of its kind (see [`crate::keys`]).
    #[error("malformed {kind} key \"{}\"", key.escape_ascii())]
    MalformedKey {
        /// The kind of key expected: "raft log", "region meta", "data".
        kind: &'static str,
        /// The offending key.
        key: Vec<u8>,
    },

    /// The engine has no column family of this name.
    #[error("unknown column family {0:?}")]
    UnknownCf(String),

    /// The column family exists but does not hold user data (e.g. `raft`), so a
    /// user-facing reader or write refuses it.
    #[error("column family {0:?} does not hold user data (expected default, lock or write)")]
    NotDataCf(String),

    /// A read asked for a user key outside the reader's range.
    #[error(
        "key \"{}\" is not in range [\"{}\", \"{}\")",
        key.escape_ascii(),
        start.escape_ascii(),
        end.escape_ascii()
    )]
    KeyNotInRange {
        /// The user key asked for.
        key: Vec<u8>,
        /// The range's first user key.
        start: Vec<u8>,
        /// The range's end user key (exclusive; empty means unbounded).
        end: Vec<u8>,
    },

    /// A region-level refusal from a replicated storage (not leader, epoch
    /// changed, ...), passed to the client unchanged in `region_error`.
    #[error("region error: {}", .0.message)]
    Region(Box<errorpb::Error>),

    /// The storage has shut down (its writer thread is gone); nothing was
    /// written.
    #[error("storage is shut down")]
    Shutdown,

    /// An operating-system failure outside RocksDB, e.g. starting a thread.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        #[source]
        source: Arc<std::io::Error>,
    },

    /// A caller broke a precondition, e.g. an empty key in a write.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// The storage crate's result type.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The region error a client should receive for this error, if it is one.
    ///
    /// This is the single place that maps storage errors onto `errorpb::Error`;
    /// every other error belongs in a response's plain `error` string.
    pub fn to_region_error(&self) -> Option<errorpb::Error> {
        match self {
            Error::Region(e) => Some((**e).clone()),
            Error::KeyNotInRange { key, start, end } => Some(errorpb::Error {
                message: self.to_string(),
                key_not_in_region: Some(errorpb::KeyNotInRegion {
                    key: key.clone(),
                    // A range reader does not know its region; a region-backed
                    // storage reports its own `KeyNotInRegion` as `Region`.
                    region_id: 0,
                    start_key: start.clone(),
                    end_key: end.clone(),
                }),
                ..Default::default()
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_messages_escape_keys() {
        let e = Error::MalformedKey {
            kind: "data",
            key: vec![0x01, b'a', 0xff],
        };
        assert_eq!(e.to_string(), r#"malformed data key "\x01a\xff""#);
        assert_eq!(
            Error::UnknownCf("nope".into()).to_string(),
            r#"unknown column family "nope""#
        );
    }

    #[test]
    fn test_region_error_mapping() {
        let e = Error::KeyNotInRange {
            key: b"k".to_vec(),
            start: b"a".to_vec(),
            end: b"b".to_vec(),
        };
        let re = e.to_region_error().unwrap();
        let knir = re.key_not_in_region.unwrap();
        assert_eq!(
            (knir.key, knir.start_key, knir.end_key),
            (b"k".to_vec(), b"a".to_vec(), b"b".to_vec())
        );

        let not_leader = errorpb::Error {
            message: "not leader".into(),
            not_leader: Some(errorpb::NotLeader {
                region_id: 3,
                leader: None,
            }),
            ..Default::default()
        };
        let e = Error::Region(Box::new(not_leader.clone()));
        assert_eq!(e.to_region_error(), Some(not_leader));
        assert_eq!(Error::Shutdown.to_region_error(), None);
        assert_eq!(Error::UnknownCf("x".into()).to_region_error(), None);
    }
}
