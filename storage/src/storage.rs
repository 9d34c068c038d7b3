//! The `Storage` trait: what the server's request handlers need from a store,
//! whether standalone (this crate) or replicated through Raft (raftstore).
//!
//! Contract:
//! - [`Storage::write`] applies a batch of [`Modify`]s atomically, or not at
//!   all, and resolves only when the batch is durable (standalone: fsynced;
//!   replicated: committed by a quorum and applied).
//! - [`Storage::reader`] resolves to a reader over one consistent point in
//!   time that includes every write that resolved before the call.
//! - Keys in `Modify`s and readers are *user* keys; encoding them for the
//!   engine ([`crate::keys::data_key`]) is the storage's business. Only the
//!   data CFs ([`crate::DATA_CFS`]) are addressable.
//! - Errors come back as values, never panics. A refusal the client must
//!   react to (not leader, epoch changed, ...) is [`Error::Region`](crate::Error::Region), which
//!   the server returns in the response's `region_error`.
//!
//! Why the methods return `impl Future + Send` (return-position `impl Trait`
//! in traits) rather than blocking:
//! the replicated storage answers a write only after a round of Raft, and a
//! read only after the leader confirmed it still leads. Both are waits on a
//! callback, which an async method expresses without tying up a thread per
//! request. The explicit `+ Send` lets tonic handlers, which must be `Send`,
//! await them (a plain `async fn` in a public trait would not promise that).
//! Implementations may still be written as `async fn`. The cost is that
//! `Storage` is not object-safe; the server is generic over it instead.
//!
//! Why the reader is an owned associated type (`Storage::Reader`) rather than a
//! borrow of the storage: a read's snapshot must outlive the call that made it,
//! cross `.await` points and move to a blocking thread, so it owns its RocksDB
//! snapshot (see [`crate::Snapshot`]). Both storages hand out a
//! [`crate::RegionReader`], so an associated type costs no allocation or
//! dynamic dispatch; a storage that needs several reader types can still pick
//! `Box<dyn StorageReader + Send>`, which implements `StorageReader` too.

use std::future::Future;

use kvproto::kvrpcpb::Context;

use crate::errors::Result;
use crate::reader::{DbIterator, RegionReader};

/// One change to user data: the unit of a [`Storage::write`] batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Modify {
    /// Set `key` to `value` in `cf`.
    Put {
        /// A data CF.
        cf: String,
        /// A user key.
        key: Vec<u8>,
        /// The new value.
        value: Vec<u8>,
    },
    /// Delete `key` from `cf`.
    Delete {
        /// A data CF.
        cf: String,
        /// A user key.
        key: Vec<u8>,
    },
}

impl Modify {
    /// The column family changed.
    pub fn cf(&self) -> &str {
        match self {
            Modify::Put { cf, .. } | Modify::Delete { cf, .. } => cf,
        }
    }

    /// The user key changed.
    pub fn key(&self) -> &[u8] {
        match self {
            Modify::Put { key, .. } | Modify::Delete { key, .. } => key,
        }
    }

    /// The new value of a put; `None` for a delete.
    pub fn value(&self) -> Option<&[u8]> {
        match self {
            Modify::Put { value, .. } => Some(value),
            Modify::Delete { .. } => None,
        }
    }
}

/// Reads over one consistent point in time, in user keys.
pub trait StorageReader {
    /// The value of `key` in `cf`, or `None` if absent.
    fn get_cf(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// An iterator over `cf` in key order, seeking and yielding user keys.
    fn iter_cf(&self, cf: &str) -> Result<DbIterator<'_>>;

    /// The user keys this reader covers: `[start, end)`, an empty `end`
    /// unbounded.
    fn key_range(&self) -> (&[u8], &[u8]);
}

impl<R: StorageReader + ?Sized> StorageReader for Box<R> {
    fn get_cf(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        (**self).get_cf(cf, key)
    }

    fn iter_cf(&self, cf: &str) -> Result<DbIterator<'_>> {
        (**self).iter_cf(cf)
    }

    fn key_range(&self) -> (&[u8], &[u8]) {
        (**self).key_range()
    }
}

impl StorageReader for RegionReader {
    fn get_cf(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        RegionReader::get_cf(self, cf, key)
    }

    fn iter_cf(&self, cf: &str) -> Result<DbIterator<'_>> {
        RegionReader::iter_cf(self, cf)
    }

    fn key_range(&self) -> (&[u8], &[u8]) {
        (self.start_key(), self.end_key())
    }
}

/// A store's data, as the request handlers see it. See the module docs for
/// the contract.
pub trait Storage: Send + Sync + 'static {
    /// The reader [`Storage::reader`] hands out.
    type Reader: StorageReader + Send + 'static;

    /// Applies `batch` atomically for the request context `ctx` and resolves
    /// once it is durable.
    fn write(&self, ctx: &Context, batch: Vec<Modify>) -> impl Future<Output = Result<()>> + Send;

    /// Resolves to a reader over a point in time that includes every write
    /// resolved before this call.
    fn reader(&self, ctx: &Context) -> impl Future<Output = Result<Self::Reader>> + Send;
}
