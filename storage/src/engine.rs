//! `Engine`: the store's one RocksDB instance, and `Snapshot`: an owned,
//! thread-portable point-in-time view of it.
//!
//! The engine has exactly the column families of DESIGN §3:
//!
//! | CF        | holds                                                        |
//! |-----------|--------------------------------------------------------------|
//! | `default` | user values; apply state, region state, store ident (local)  |
//! | `lock`    | user locks (transactions)                                    |
//! | `write`   | user write records (transactions)                            |
//! | `raft`    | raft log entries and `RaftLocalState` (local)                |
//!
//! Keys are stored as [`crate::keys`] lays them out; this module neither adds
//! nor strips prefixes.
//!
//! This module is the bottom of the crate: it owns the database handle, the
//! column families, point reads and snapshots, and depends on no sibling but
//! [`crate::errors`]. The other operations on an [`Engine`] are defined next
//! to the types they hand out, on top of it:
//! - writes ([`Engine::write_batch`], [`Engine::write`], `put_cf`, ...) in
//!   [`crate::write_batch`];
//! - iterators and scans ([`Engine::iterator_cf`], [`Engine::scan_cf`], and
//!   the same on [`Snapshot`]) in [`crate::reader`];
//! - SST ingestion in [`crate::sst`].
//!
//! Invariants:
//! - Every CF in [`ALL_CFS`] exists from [`Engine::open`] until the last handle
//!   drops; CF lookups by one of those names cannot fail.
//! - The database closes when the last `Engine` clone, [`Snapshot`],
//!   [`crate::WriteBatch`] or iterator referring to it is gone, never earlier.
//! - `write(batch, sync = true)` returns only after RocksDB has synced its WAL
//!   (`WriteOptions::set_sync(true)`), so the batch survives a crash or power
//!   loss. Because the WAL is one ordered log, that sync also covers every
//!   earlier unsynced write.

use std::path::Path;
use std::sync::Arc;

use prost::Message;
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, DB, DBCompressionType, DBRawIteratorWithThreadMode,
    Options, ReadOptions,
};

use crate::errors::{Error, Result};

/// User values, and local metadata other than the raft log and raft state.
pub const CF_DEFAULT: &str = "default";
/// User locks.
pub const CF_LOCK: &str = "lock";
/// User write records.
pub const CF_WRITE: &str = "write";
/// The raft log and `RaftLocalState`.
pub const CF_RAFT: &str = "raft";
/// The column families that hold user data, addressed by data keys.
pub const DATA_CFS: [&str; 3] = [CF_DEFAULT, CF_LOCK, CF_WRITE];
/// Every column family of the engine.
pub const ALL_CFS: [&str; 4] = [CF_DEFAULT, CF_LOCK, CF_WRITE, CF_RAFT];

/// Whether `cf` names a column family that holds user data.
pub fn is_data_cf(cf: &str) -> bool {
    DATA_CFS.contains(&cf)
}

/// Fails with [`Error::UnknownCf`] or [`Error::NotDataCf`] unless `cf` is one
/// of [`DATA_CFS`].
pub fn check_data_cf(cf: &str) -> Result<()> {
    if is_data_cf(cf) {
        Ok(())
    } else if ALL_CFS.contains(&cf) {
        Err(Error::NotDataCf(cf.to_owned()))
    } else {
        Err(Error::UnknownCf(cf.to_owned()))
    }
}

/// The options every column family is opened with; SST files built for
/// ingestion use them too.
pub(crate) fn cf_options() -> Options {
    let mut opts = Options::default();
    // LZ4 is the only compression library built in (see the workspace
    // Cargo.toml); RocksDB's default, Snappy, is not.
    opts.set_compression_type(DBCompressionType::Lz4);
    opts
}

/// A handle to the store's RocksDB instance. Cheap to clone; all clones share
/// one database.
#[derive(Clone)]
pub struct Engine {
    db: Arc<DB>,
    path: Arc<Path>,
}

// Handles move between actors, workers and runtime threads.
const _: fn() = || {
    fn assert_shareable<T: Clone + Send + Sync + 'static>() {}
    fn assert_portable<T: Send + Sync + 'static>() {}
    assert_shareable::<Engine>();
    assert_portable::<Snapshot>();
};

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine").field("path", &self.path).finish()
    }
}

impl Engine {
    /// Opens the database at `path`, creating it and any missing column family.
    pub fn open(path: impl AsRef<Path>) -> Result<Engine> {
        let path = path.as_ref();
        let mut opts = cf_options();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let cfs = ALL_CFS
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, cf_options()));
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        Ok(Engine {
            db: Arc::new(db),
            path: Arc::from(path),
        })
    }

    /// The directory the database lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn db(&self) -> &Arc<DB> {
        &self.db
    }

    fn view(&self) -> View<'_> {
        View {
            db: &self.db,
            snap: None,
        }
    }

    /// The latest value of `key` in `cf`, or `None` if absent.
    pub fn get_cf(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.view().get_cf(cf, key)
    }

    /// The latest value of `key` in `cf` decoded as `M`, or `None` if absent.
    /// A value that does not decode is an [`Error::Decode`].
    pub fn get_msg_cf<M: Message + Default>(&self, cf: &str, key: &[u8]) -> Result<Option<M>> {
        self.view().get_msg_cf(cf, key)
    }

    /// A raw RocksDB iterator over the live keys of `cf` in `[start, end)`
    /// (an empty `end` is unbounded); [`crate::reader`] wraps it.
    pub(crate) fn raw_iterator_cf(
        &self,
        cf: &str,
        start: &[u8],
        end: &[u8],
    ) -> Result<DBRawIteratorWithThreadMode<'_, DB>> {
        self.view().raw_iterator_cf(cf, start, end)
    }

    /// A consistent view of the whole database as of now, independent of this
    /// handle's lifetime.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot::new(Arc::clone(&self.db))
    }
}

/// An owned RocksDB snapshot: a point-in-time view of every column family.
///
/// It can be moved across threads and channels and kept after every
/// [`Engine`] handle is dropped; it keeps the database open until it is
/// dropped itself. Reads through it never see writes made after
/// [`Engine::snapshot`] returned.
pub struct Snapshot {
    // Invariant: `snap` is declared before `db` and therefore dropped before
    // it; see the SAFETY comment in `Snapshot::new`.
    snap: rocksdb::Snapshot<'static>,
    db: Arc<DB>,
}

impl Snapshot {
    fn new(db: Arc<DB>) -> Snapshot {
        let snap = db.snapshot();
        // SAFETY: we extend the snapshot's borrow of the `DB` from the local
        // `db` to 'static. That is sound because the `DB` outlives every use of
        // the extended reference:
        // - The reference points into the `Arc`'s heap allocation, not at the
        //   `Arc` itself, so moving `db` (and later the `Snapshot`) leaves it
        //   valid; the allocation lives while any `Arc` clone does.
        // - `self.db` is such a clone, owned by the same struct, and no method
        //   moves or replaces it. Fields drop in declaration order, so `snap`,
        //   whose `Drop` releases the RocksDB snapshot through its `&DB`, drops
        //   first, while `db` still keeps the database open. (`Snapshot` has no
        //   `Drop` impl of its own; one must keep this order.)
        // - The 'static lifetime never escapes: `snap` is private and only lent
        //   out by `view`, which shortens it to the borrow of `self`. Every
        //   iterator or slice obtained from it therefore borrows the
        //   `Snapshot`, which cannot drop first. (`rocksdb::Snapshot::iterator`
        //   returns an iterator carrying the snapshot's lifetime parameter,
        //   'static here; it is reachable only through `view`'s shortened type.)
        // - The `DB` is never mutated through `&mut`: it is only reachable
        //   through shared `Arc`s.
        let snap = unsafe {
            std::mem::transmute::<rocksdb::Snapshot<'_>, rocksdb::Snapshot<'static>>(snap)
        };
        Snapshot { snap, db }
    }

    fn view(&self) -> View<'_> {
        View {
            db: &self.db,
            snap: Some(&self.snap),
        }
    }

    /// The value of `key` in `cf` at the snapshot, or `None` if absent.
    pub fn get_cf(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.view().get_cf(cf, key)
    }

    /// The value of `key` in `cf` at the snapshot decoded as `M`, or `None`.
    pub fn get_msg_cf<M: Message + Default>(&self, cf: &str, key: &[u8]) -> Result<Option<M>> {
        self.view().get_msg_cf(cf, key)
    }

    /// A raw RocksDB iterator over the snapshot's keys of `cf` in
    /// `[start, end)` (an empty `end` is unbounded); [`crate::reader`] wraps it.
    pub(crate) fn raw_iterator_cf(
        &self,
        cf: &str,
        start: &[u8],
        end: &[u8],
    ) -> Result<DBRawIteratorWithThreadMode<'_, DB>> {
        self.view().raw_iterator_cf(cf, start, end)
    }
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("sequence", &self.snap.sequence_number())
            .finish()
    }
}

/// Where a read looks: the live database, or a snapshot of it. Everything
/// read through a `View<'a>` borrows for `'a`, which covers both the database
/// and the snapshot the read options point at.
#[derive(Clone, Copy)]
struct View<'a> {
    db: &'a DB,
    snap: Option<&'a rocksdb::Snapshot<'a>>,
}

impl<'a> View<'a> {
    fn cf(&self, name: &str) -> Result<&'a ColumnFamily> {
        self.db
            .cf_handle(name)
            .ok_or_else(|| Error::UnknownCf(name.to_owned()))
    }

    fn read_opts(&self) -> ReadOptions {
        let mut opts = ReadOptions::default();
        if let Some(snap) = self.snap {
            opts.set_snapshot(snap);
        }
        opts
    }

    fn get_cf(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.db.get_cf_opt(self.cf(cf)?, key, &self.read_opts())?)
    }

    fn get_msg_cf<M: Message + Default>(&self, cf: &str, key: &[u8]) -> Result<Option<M>> {
        let Some(value) = self
            .db
            .get_pinned_cf_opt(self.cf(cf)?, key, &self.read_opts())?
        else {
            return Ok(None);
        };
        M::decode(value.as_ref())
            .map(Some)
            .map_err(|source| Error::Decode {
                key: key.to_vec(),
                source,
            })
    }

    fn raw_iterator_cf(
        &self,
        cf: &str,
        start: &[u8],
        end: &[u8],
    ) -> Result<DBRawIteratorWithThreadMode<'a, DB>> {
        let handle = self.cf(cf)?;
        let mut opts = self.read_opts();
        opts.set_iterate_lower_bound(start);
        if !end.is_empty() {
            opts.set_iterate_upper_bound(end);
        }
        Ok(self.db.raw_iterator_cf_opt(handle, opts))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use kvproto::raft_serverpb::{RaftApplyState, RaftLocalState, RaftTruncatedState};

    use super::*;
    use crate::keys;

    fn new_test_engine() -> (tempfile::TempDir, Engine) {
        let dir = tempfile::tempdir().expect("create temp dir");
        let engine = Engine::open(dir.path()).expect("open engine");
        (dir, engine)
    }

    fn scan_all(engine: &Engine, cf: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        let mut out = vec![];
        engine
            .scan_cf(cf, b"", b"", |k, v| {
                out.push((k.to_vec(), v.to_vec()));
                Ok(true)
            })
            .unwrap();
        out
    }

    #[test]
    fn test_cfs_exist_after_reopen() {
        let (dir, engine) = new_test_engine();
        for cf in ALL_CFS {
            engine.put_cf(cf, b"k", cf.as_bytes()).unwrap();
        }
        drop(engine);

        let engine = Engine::open(dir.path()).unwrap();
        for cf in ALL_CFS {
            assert_eq!(
                engine.get_cf(cf, b"k").unwrap().as_deref(),
                Some(cf.as_bytes())
            );
        }
        let mut listed = DB::list_cf(&Options::default(), dir.path()).unwrap();
        listed.sort();
        let mut expected: Vec<_> = ALL_CFS.iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(listed, expected);
    }

    #[test]
    fn test_unknown_cf() {
        let (_dir, engine) = new_test_engine();
        assert!(matches!(engine.get_cf("nope", b"k"), Err(Error::UnknownCf(cf)) if cf == "nope"));
        assert!(matches!(
            engine.write_batch().put_cf("nope", b"k", b"v"),
            Err(Error::UnknownCf(_))
        ));
        assert!(engine.iterator_cf("", b"", b"").is_err());
        assert!(matches!(check_data_cf(CF_RAFT), Err(Error::NotDataCf(_))));
        assert!(matches!(check_data_cf("nope"), Err(Error::UnknownCf(_))));
        for cf in DATA_CFS {
            check_data_cf(cf).unwrap();
        }
    }

    #[test]
    fn test_msg_round_trip_and_decode_error() {
        let (_dir, engine) = new_test_engine();
        let key = keys::apply_state_key(1);
        assert_eq!(
            engine
                .get_msg_cf::<RaftApplyState>(CF_DEFAULT, &key)
                .unwrap(),
            None
        );

        let state = RaftApplyState {
            applied_index: 7,
            truncated_state: Some(RaftTruncatedState { index: 5, term: 5 }),
            session_clock_ms: 0,
        };
        engine.put_msg_cf(CF_DEFAULT, &key, &state).unwrap();
        assert_eq!(engine.get_msg_cf(CF_DEFAULT, &key).unwrap(), Some(state));

        // Field 1 as a length-delimited value of 10 bytes, truncated.
        engine.put_cf(CF_RAFT, b"bad", &[0x0a, 10, 1]).unwrap();
        let err = engine
            .get_msg_cf::<RaftLocalState>(CF_RAFT, b"bad")
            .unwrap_err();
        assert!(
            matches!(err, Error::Decode { ref key, .. } if key == b"bad"),
            "{err}"
        );
    }

    #[test]
    fn test_write_batch_atomic_across_cfs() {
        let (_dir, engine) = new_test_engine();
        engine.put_cf(CF_LOCK, b"gone", b"x").unwrap();

        let snap = engine.snapshot();
        let mut wb = engine.write_batch();
        wb.put_cf(CF_DEFAULT, b"a", b"1").unwrap();
        wb.put_cf(CF_WRITE, b"b", b"2").unwrap();
        wb.delete_cf(CF_LOCK, b"gone").unwrap();
        wb.put_msg_cf(
            CF_RAFT,
            &keys::raft_state_key(1),
            &RaftLocalState::default(),
        )
        .unwrap();
        assert_eq!(wb.count(), 4);

        // Nothing is visible before the write ...
        assert_eq!(engine.get_cf(CF_DEFAULT, b"a").unwrap(), None);
        engine.write(wb, true).unwrap();
        // ... everything after it, and a snapshot taken before sees none of it.
        assert_eq!(
            engine.get_cf(CF_DEFAULT, b"a").unwrap().as_deref(),
            Some(&b"1"[..])
        );
        assert_eq!(
            engine.get_cf(CF_WRITE, b"b").unwrap().as_deref(),
            Some(&b"2"[..])
        );
        assert_eq!(engine.get_cf(CF_LOCK, b"gone").unwrap(), None);
        assert_eq!(snap.get_cf(CF_DEFAULT, b"a").unwrap(), None);
        assert_eq!(
            snap.get_cf(CF_LOCK, b"gone").unwrap().as_deref(),
            Some(&b"x"[..])
        );

        // A batch with a bad CF is refused while being built, so it is never
        // half-written.
        let mut wb = engine.write_batch();
        wb.put_cf(CF_DEFAULT, b"c", b"3").unwrap();
        assert!(wb.put_cf("nope", b"d", b"4").is_err());
        drop(wb);
        assert_eq!(engine.get_cf(CF_DEFAULT, b"c").unwrap(), None);

        // A batch built for another engine is refused.
        let other_dir = tempfile::tempdir().unwrap();
        let other = Engine::open(other_dir.path()).unwrap();
        let mut wb = other.write_batch();
        wb.put_cf(CF_DEFAULT, b"e", b"5").unwrap();
        assert!(matches!(
            engine.write(wb, false),
            Err(Error::InvalidArgument(_))
        ));
        assert_eq!(engine.get_cf(CF_DEFAULT, b"e").unwrap(), None);
    }

    #[test]
    fn test_sync_write_survives_reopen() {
        let (dir, engine) = new_test_engine();
        let mut wb = engine.write_batch();
        for i in 0u64..100 {
            wb.put_cf(CF_RAFT, &keys::raft_log_key(1, i), &i.to_be_bytes())
                .unwrap();
        }
        wb.put_cf(CF_DEFAULT, &keys::data_key(b"k"), b"v").unwrap();
        engine.write(wb, true).unwrap();
        drop(engine);

        let engine = Engine::open(dir.path()).unwrap();
        let (start, end) = keys::raft_log_range(1);
        let mut indexes = vec![];
        engine
            .scan_cf(CF_RAFT, &start, &end, |k, v| {
                let index = keys::raft_log_index(k)?;
                assert_eq!(v, index.to_be_bytes());
                indexes.push(index);
                Ok(true)
            })
            .unwrap();
        assert_eq!(indexes, (0..100).collect::<Vec<_>>());
        assert_eq!(
            engine.get_cf(CF_DEFAULT, b"zk").unwrap().as_deref(),
            Some(&b"v"[..])
        );
    }

    #[test]
    fn test_delete_range_cf() {
        let (_dir, engine) = new_test_engine();
        for i in 0u64..10 {
            engine
                .put_cf(CF_RAFT, &keys::raft_log_key(1, i), b"e")
                .unwrap();
            engine
                .put_cf(CF_RAFT, &keys::raft_log_key(2, i), b"e")
                .unwrap();
        }
        engine
            .put_cf(CF_DEFAULT, &keys::raft_log_key(1, 3), b"other cf")
            .unwrap();
        engine
            .delete_range_cf(
                CF_RAFT,
                &keys::raft_log_key(1, 2),
                &keys::raft_log_key(1, 8),
            )
            .unwrap();

        let left: Vec<_> = scan_all(&engine, CF_RAFT)
            .into_iter()
            .map(|(k, _)| keys::decode_raft_log_key(&k).unwrap())
            .collect();
        let expected: Vec<_> = [0, 1, 8, 9]
            .into_iter()
            .map(|i| (1, i))
            .chain((0..10).map(|i| (2, i)))
            .collect();
        assert_eq!(left, expected);
        assert!(
            engine
                .get_cf(CF_DEFAULT, &keys::raft_log_key(1, 3))
                .unwrap()
                .is_some()
        );
    }

    #[test]
    fn test_scan_cf_bounds_and_early_stop() {
        let (_dir, engine) = new_test_engine();
        for k in [&b"a"[..], b"b", b"c", b"d"] {
            engine.put_cf(CF_WRITE, k, k).unwrap();
        }
        let mut seen = vec![];
        engine
            .scan_cf(CF_WRITE, b"b", b"d", |k, _| {
                seen.push(k.to_vec());
                Ok(true)
            })
            .unwrap();
        assert_eq!(seen, [b"b".to_vec(), b"c".to_vec()]);

        let mut seen = vec![];
        engine
            .scan_cf(CF_WRITE, b"", b"", |k, _| {
                seen.push(k.to_vec());
                Ok(seen.len() < 2)
            })
            .unwrap();
        assert_eq!(seen, [b"a".to_vec(), b"b".to_vec()]);

        let err = engine
            .scan_cf(CF_WRITE, b"", b"", |_, _| Err(Error::Shutdown))
            .unwrap_err();
        assert!(matches!(err, Error::Shutdown));
    }

    /// The owned snapshot sees the data as of its creation after later writes,
    /// survives the engine handle that made it, works on another thread, and
    /// keeps the database open until it drops itself.
    #[test]
    fn test_owned_snapshot_outlives_engine() {
        let (dir, engine) = new_test_engine();
        engine.put_cf(CF_DEFAULT, b"k", b"old").unwrap();
        engine.put_cf(CF_RAFT, b"r", b"old").unwrap();

        let writer = engine.clone();
        let snap = engine.snapshot();
        drop(engine);

        writer.put_cf(CF_DEFAULT, b"k", b"new").unwrap();
        writer.put_cf(CF_DEFAULT, b"k2", b"new").unwrap();
        writer.delete_cf(CF_RAFT, b"r").unwrap();
        assert_eq!(
            writer.get_cf(CF_DEFAULT, b"k").unwrap().as_deref(),
            Some(&b"new"[..])
        );
        drop(writer);

        // Every Engine handle is gone; the snapshot still holds the DB open,
        // on another thread, reached through a channel.
        let (tx, rx) = mpsc::channel();
        tx.send(snap).unwrap();
        let reader = std::thread::spawn(move || {
            let snap = rx.recv().unwrap();
            assert_eq!(
                snap.get_cf(CF_DEFAULT, b"k").unwrap().as_deref(),
                Some(&b"old"[..])
            );
            assert_eq!(snap.get_cf(CF_DEFAULT, b"k2").unwrap(), None);
            assert_eq!(
                snap.get_cf(CF_RAFT, b"r").unwrap().as_deref(),
                Some(&b"old"[..])
            );
            let mut it = snap.iterator_cf(CF_DEFAULT, b"", b"").unwrap();
            it.seek_to_first();
            assert!(it.valid());
            assert_eq!((it.key(), it.value()), (&b"k"[..], &b"old"[..]));
            it.next();
            assert!(!it.valid());
            it.status().unwrap();
            // While the snapshot lives, the DB is open: this process holds its
            // lock, so a second open fails.
            assert!(Engine::open(dir.path()).is_err());
            drop(it);
            drop(snap);
            dir
        });
        let dir = reader.join().expect("reader thread");

        // The snapshot was the last holder; dropping it closed the DB, and the
        // later writes are all there.
        let engine = Engine::open(dir.path()).unwrap();
        assert_eq!(
            engine.get_cf(CF_DEFAULT, b"k").unwrap().as_deref(),
            Some(&b"new"[..])
        );
        assert_eq!(engine.get_cf(CF_RAFT, b"r").unwrap(), None);
    }

    #[test]
    fn test_many_snapshots_across_threads() {
        let (_dir, engine) = new_test_engine();
        let mut handles = vec![];
        for round in 0u8..8 {
            engine.put_cf(CF_DEFAULT, b"k", &[round]).unwrap();
            let snap = engine.snapshot();
            handles.push(std::thread::spawn(move || {
                assert_eq!(snap.get_cf(CF_DEFAULT, b"k").unwrap(), Some(vec![round]));
            }));
        }
        for h in handles {
            h.join().unwrap();
        }
    }
}
