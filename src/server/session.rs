//! [`SessionStorage`]: what the Raw write handlers need beyond
//! [`Storage`] — one write per command with the client's session,
//! `Append`, and `OpenSession` (`docs/PROTOCOL_EXTENSIONS.md`, "Client
//! sessions").
//!
//! Two kinds of storage implement it:
//! - one with a replicated state machine that keeps the session table and
//!   applies `Append` itself ([`SessionStorage::KEEPS_SESSIONS`]; the raft
//!   store, [`super::raft_storage::RaftStorage`]): every Raw write goes
//!   to it as one command, with the session in the command's header when
//!   the request carries one, and the state machine decides whether it
//!   applies (exactly once per client and sequence);
//! - one without (the standalone storage): there is no session table, so
//!   a request with a session is refused ([`NO_SESSIONS`]) rather than
//!   served without the guarantee it asks for; `Append` is run by the
//!   handlers as a read and a write under the server's lock
//!   ([`super::raw_api`]).
//!
//! Invariant: a storage that keeps sessions never sees a session write
//! with sequence 0 or client id 0, nor an `OpenSession` of client 0: the
//! handlers refuse those first ([`super::raw_api`]).

use std::future::Future;

use kvproto::kvrpcpb::Context;
use kvproto::raft_cmdpb::ClientSession;
use storage::{Error, Modify, Result, StandaloneStorage, Storage};

/// Why a request with a client session is refused by a storage without a
/// session table.
pub const NO_SESSIONS: &str = "client sessions need the raft store: this server runs a \
     standalone storage, which keeps no session table (send the request without client_id \
     and sequence, or send it to a store of a cluster)";

/// One Raw write, proposed as a command of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RawWrite {
    /// Set `key` to `value` in `cf`.
    Put {
        /// A data column family, checked by the handler.
        cf: String,
        /// A non-empty user key.
        key: Vec<u8>,
        /// The new value.
        value: Vec<u8>,
    },
    /// Delete `key` from `cf`.
    Delete {
        /// A data column family, checked by the handler.
        cf: String,
        /// A non-empty user key.
        key: Vec<u8>,
    },
    /// Append `value` to `key`'s value in `cf` (a missing key counts as
    /// empty).
    Append {
        /// A data column family, checked by the handler.
        cf: String,
        /// A non-empty user key.
        key: Vec<u8>,
        /// What to append.
        value: Vec<u8>,
    },
}

impl RawWrite {
    /// The write as a plain storage change, if it is one (`Append` is not:
    /// it depends on the current value).
    pub fn into_modify(self) -> std::result::Result<Modify, RawWrite> {
        match self {
            RawWrite::Put { cf, key, value } => Ok(Modify::Put { cf, key, value }),
            RawWrite::Delete { cf, key } => Ok(Modify::Delete { cf, key }),
            append @ RawWrite::Append { .. } => Err(append),
        }
    }
}

/// A [`Storage`] the Raw write handlers can run `RawAppend`, `OpenSession`
/// and session writes on; see the module docs.
pub trait SessionStorage: Storage {
    /// Whether the storage keeps client sessions and applies `Append` in
    /// its own state machine. When `false`, the handlers refuse session
    /// requests with [`NO_SESSIONS`] and run `Append` as a read and a
    /// write under the server's lock.
    const KEEPS_SESSIONS: bool;

    /// Applies `write` as one command for `ctx`'s region and resolves once
    /// it is durable. With `session`, the state machine applies it at most
    /// once per (client, sequence): a repeat gets the first answer, a
    /// session the region does not hold gets `SessionExpired` (a region
    /// error, [`Error::Region`]). A storage that does not keep sessions
    /// refuses a session, and an `Append`, with [`Error::InvalidArgument`].
    fn write_command(
        &self,
        ctx: &Context,
        write: RawWrite,
        session: Option<ClientSession>,
    ) -> impl Future<Output = Result<()>> + Send;

    /// Opens client `client_id`'s session in `ctx`'s region (a no-op when
    /// it is open). A storage that does not keep sessions refuses with
    /// [`Error::InvalidArgument`].
    fn open_session(
        &self,
        ctx: &Context,
        client_id: u64,
    ) -> impl Future<Output = Result<()>> + Send;
}

impl SessionStorage for StandaloneStorage {
    const KEEPS_SESSIONS: bool = false;

    async fn write_command(
        &self,
        ctx: &Context,
        write: RawWrite,
        session: Option<ClientSession>,
    ) -> Result<()> {
        if session.is_some() {
            return Err(Error::InvalidArgument(NO_SESSIONS.to_owned()));
        }
        match write.into_modify() {
            Ok(modify) => self.write(ctx, vec![modify]).await,
            Err(_) => Err(Error::InvalidArgument(
                "a standalone storage does not apply Append itself: the server reads, \
                 concatenates and writes under its lock"
                    .to_owned(),
            )),
        }
    }

    async fn open_session(&self, _: &Context, _: u64) -> Result<()> {
        Err(Error::InvalidArgument(NO_SESSIONS.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_put_and_delete_are_plain_modifies() {
        let put = RawWrite::Put {
            cf: "default".into(),
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        };
        assert_eq!(
            put.into_modify(),
            Ok(Modify::Put {
                cf: "default".into(),
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            })
        );
        let append = RawWrite::Append {
            cf: "default".into(),
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        };
        assert_eq!(append.clone().into_modify(), Err(append));
    }

    #[tokio::test]
    async fn a_standalone_storage_refuses_sessions() {
        let dir = tempfile::tempdir().expect("create temp dir");
        let storage = StandaloneStorage::open(dir.path()).expect("open standalone storage");
        let put = RawWrite::Put {
            cf: "default".into(),
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        };
        let session = ClientSession {
            client_id: 3,
            sequence: 1,
        };
        let refused = storage
            .write_command(&Context::default(), put.clone(), Some(session))
            .await;
        assert!(
            matches!(&refused, Err(Error::InvalidArgument(m)) if m.contains("raft store")),
            "{refused:?}"
        );
        let refused = SessionStorage::open_session(&storage, &Context::default(), 3).await;
        assert!(
            matches!(&refused, Err(Error::InvalidArgument(m)) if m.contains("raft store")),
            "{refused:?}"
        );
        storage
            .write_command(&Context::default(), put, None)
            .await
            .expect("a write without a session");
    }
}
