//! Writing: `WriteBatch`, mutations of any column families applied
//! atomically by [`Engine::write`], and the engine's write methods
//! ([`Engine::write_batch`], [`Engine::write`], [`Engine::sync_wal`] and the
//! one-key shortcuts `put_cf`, `delete_cf`, `delete_range_cf`).
//!
//! Keys go in as stored (see [`crate::keys`]); the batch adds no prefix.
//!
//! Invariants:
//! - A batch belongs to the engine that made it (it holds that database), and
//!   only that engine writes it; `Engine::write` refuses any other.
//! - A call that fails (unknown CF, bad range) adds nothing, so a batch never
//!   holds half of an operation.
//! - A range deletion `[start, end)` needs a real `end`: an empty `end` is
//!   refused with [`Error::InvalidArgument`], never taken as "no end" nor
//!   written as an empty range that deletes nothing. (Iterators read an empty
//!   end as unbounded; a range tombstone cannot, because no byte string sorts
//!   above every key.) To delete up to the end of the data key space, end at
//!   [`crate::keys::DATA_MAX_KEY`], which is what
//!   [`crate::keys::data_end_key`] maps a region's empty end key to. An
//!   inverted range (`start > end`) is refused too; `start == end` is the
//!   empty range and deletes nothing.

use std::sync::Arc;

use prost::Message;
use rocksdb::{ColumnFamily, DB, WriteOptions};

use crate::engine::Engine;
use crate::errors::{Error, Result};

/// An atomic batch of puts, deletes and range deletes over the engine's CFs.
pub struct WriteBatch {
    // The database resolves CF names to handles; the batch records CF ids that
    // are only meaningful in this database.
    db: Arc<DB>,
    wb: rocksdb::WriteBatch,
}

impl std::fmt::Debug for WriteBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBatch")
            .field("count", &self.count())
            .field("data_size", &self.data_size())
            .finish()
    }
}

impl WriteBatch {
    /// An empty batch for `engine`.
    pub fn new(engine: &Engine) -> WriteBatch {
        WriteBatch {
            db: Arc::clone(engine.db()),
            wb: rocksdb::WriteBatch::default(),
        }
    }

    /// Sets `key` to `value` in `cf`.
    pub fn put_cf(&mut self, cf: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let handle = cf_handle(&self.db, cf)?;
        self.wb.put_cf(handle, key, value);
        Ok(())
    }

    /// Sets `key` in `cf` to the protobuf encoding of `msg`.
    pub fn put_msg_cf<M: Message>(&mut self, cf: &str, key: &[u8], msg: &M) -> Result<()> {
        self.put_cf(cf, key, &msg.encode_to_vec())
    }

    /// Deletes `key` from `cf`.
    pub fn delete_cf(&mut self, cf: &str, key: &[u8]) -> Result<()> {
        let handle = cf_handle(&self.db, cf)?;
        self.wb.delete_cf(handle, key);
        Ok(())
    }

    /// Deletes every key of `cf` in `[start, end)` (one range tombstone).
    ///
    /// Fails with [`Error::InvalidArgument`] if `end` is empty or below
    /// `start` (see the module doc: an empty end is not "to the end" here).
    pub fn delete_range_cf(&mut self, cf: &str, start: &[u8], end: &[u8]) -> Result<()> {
        check_range(start, end)?;
        let handle = cf_handle(&self.db, cf)?;
        self.wb.delete_range_cf(handle, start, end);
        Ok(())
    }

    /// Whether the batch holds no operation.
    pub fn is_empty(&self) -> bool {
        self.wb.is_empty()
    }

    /// How many operations the batch holds.
    pub fn count(&self) -> usize {
        self.wb.len()
    }

    /// The size in bytes of the batch's encoded operations: what it will add
    /// to the WAL. An empty batch has a small nonzero header.
    pub fn data_size(&self) -> usize {
        self.wb.size_in_bytes()
    }

    /// Removes every operation, keeping the allocation.
    pub fn clear(&mut self) {
        self.wb.clear();
    }

    pub(crate) fn db(&self) -> &Arc<DB> {
        &self.db
    }

    pub(crate) fn into_inner(self) -> rocksdb::WriteBatch {
        self.wb
    }
}

/// Refuses the ranges a range tombstone cannot mean what the caller wants.
fn check_range(start: &[u8], end: &[u8]) -> Result<()> {
    if end.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "delete_range from \"{}\" has an empty end key; a range deletion needs \
             a real end (keys::DATA_MAX_KEY for the end of the data keys)",
            start.escape_ascii()
        )));
    }
    if start > end {
        return Err(Error::InvalidArgument(format!(
            "delete_range start \"{}\" is above its end \"{}\"",
            start.escape_ascii(),
            end.escape_ascii()
        )));
    }
    Ok(())
}

impl Engine {
    /// Puts one key, unsynced (see [`Engine::write`] for durability).
    pub fn put_cf(&self, cf: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let mut wb = self.write_batch();
        wb.put_cf(cf, key, value)?;
        self.write(wb, false)
    }

    /// Puts one protobuf message, unsynced.
    pub fn put_msg_cf<M: Message>(&self, cf: &str, key: &[u8], msg: &M) -> Result<()> {
        self.put_cf(cf, key, &msg.encode_to_vec())
    }

    /// Deletes one key, unsynced.
    pub fn delete_cf(&self, cf: &str, key: &[u8]) -> Result<()> {
        let mut wb = self.write_batch();
        wb.delete_cf(cf, key)?;
        self.write(wb, false)
    }

    /// Deletes every key of `cf` in `[start, end)` with one range tombstone,
    /// unsynced. Refuses an empty or inverted range end as
    /// [`WriteBatch::delete_range_cf`] does.
    pub fn delete_range_cf(&self, cf: &str, start: &[u8], end: &[u8]) -> Result<()> {
        let mut wb = self.write_batch();
        wb.delete_range_cf(cf, start, end)?;
        self.write(wb, false)
    }

    /// An empty write batch for this engine.
    pub fn write_batch(&self) -> WriteBatch {
        WriteBatch::new(self)
    }

    /// Writes `batch` atomically: after a crash either all of it is visible or
    /// none. With `sync`, returns only once the WAL is synced to disk (RocksDB
    /// `WriteOptions::set_sync(true)`); without, the batch may be lost in a
    /// power failure until a later synced write.
    ///
    /// This blocks the calling thread for the disk write: call it from a
    /// dedicated thread or `spawn_blocking`, not from an async task.
    pub fn write(&self, batch: WriteBatch, sync: bool) -> Result<()> {
        if !Arc::ptr_eq(batch.db(), self.db()) {
            return Err(Error::InvalidArgument(
                "write batch was built for another engine".to_owned(),
            ));
        }
        let mut opts = WriteOptions::default();
        opts.set_sync(sync);
        self.db().write_opt(batch.into_inner(), &opts)?;
        Ok(())
    }

    /// Syncs the write-ahead log: every write made before this call is on
    /// disk when it returns, including unsynced ones. Blocking, like `write`.
    pub fn sync_wal(&self) -> Result<()> {
        self.db().flush_wal(true)?;
        Ok(())
    }
}

// A free function, so that the handle borrows only the `db` field and `wb`
// stays free for the mutation.
fn cf_handle<'a>(db: &'a DB, name: &str) -> Result<&'a ColumnFamily> {
    db.cf_handle(name)
        .ok_or_else(|| Error::UnknownCf(name.to_owned()))
}

const _: fn() = || {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<WriteBatch>();
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{CF_DEFAULT, CF_RAFT, CF_WRITE};

    #[test]
    fn test_count_size_clear() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        let mut wb = engine.write_batch();
        assert!(wb.is_empty());
        assert_eq!(wb.count(), 0);
        let empty_size = wb.data_size();

        wb.put_cf(CF_DEFAULT, b"k", &[0; 100]).unwrap();
        wb.delete_cf(CF_WRITE, b"k").unwrap();
        wb.delete_range_cf(CF_RAFT, b"a", b"b").unwrap();
        wb.put_msg_cf(
            CF_RAFT,
            b"m",
            &kvproto::raft_serverpb::StoreIdent {
                cluster_id: 1,
                store_id: 2,
            },
        )
        .unwrap();
        assert!(!wb.is_empty());
        assert_eq!(wb.count(), 4);
        assert!(wb.data_size() > empty_size + 100);

        // A failed call adds nothing.
        assert!(wb.put_cf("nope", b"k", b"v").is_err());
        assert!(wb.delete_cf("nope", b"k").is_err());
        assert!(wb.delete_range_cf("nope", b"a", b"b").is_err());
        assert_eq!(wb.count(), 4);

        wb.clear();
        assert!(wb.is_empty());
        assert_eq!(wb.data_size(), empty_size);
    }

    /// An empty end key used to be written as the empty range `[start, "")`
    /// and deleted nothing, silently. It is refused, by the batch and by the
    /// engine's shortcut, and so is an inverted range; nothing is deleted.
    #[test]
    fn test_delete_range_refuses_an_empty_or_inverted_end() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path()).unwrap();
        for k in [&b"za"[..], b"zb", b"zc"] {
            engine.put_cf(CF_DEFAULT, k, b"v").unwrap();
        }

        let mut wb = engine.write_batch();
        let err = wb.delete_range_cf(CF_DEFAULT, b"zb", b"").unwrap_err();
        assert!(
            matches!(&err, Error::InvalidArgument(m) if m.contains("empty end key")),
            "{err}"
        );
        assert!(matches!(
            wb.delete_range_cf(CF_DEFAULT, b"zc", b"zb"),
            Err(Error::InvalidArgument(_))
        ));
        assert!(wb.is_empty(), "a refused range adds nothing");
        assert!(matches!(
            engine.delete_range_cf(CF_DEFAULT, b"zb", b""),
            Err(Error::InvalidArgument(_))
        ));

        // The empty range deletes nothing and is no error; a real end works.
        engine.delete_range_cf(CF_DEFAULT, b"zb", b"zb").unwrap();
        assert!(engine.get_cf(CF_DEFAULT, b"zb").unwrap().is_some());
        engine
            .delete_range_cf(CF_DEFAULT, b"zb", crate::keys::DATA_MAX_KEY)
            .unwrap();
        assert!(engine.get_cf(CF_DEFAULT, b"za").unwrap().is_some());
        assert_eq!(engine.get_cf(CF_DEFAULT, b"zb").unwrap(), None);
        assert_eq!(engine.get_cf(CF_DEFAULT, b"zc").unwrap(), None);
    }
}
