//! Bounded reads: `DbIterator` over one column family and key range, the
//! iterators and scans of [`Engine`] and [`Snapshot`] that hand it out, and
//! `RegionReader`, a snapshot reader restricted to a range of user keys.
//!
//! This module sits on top of [`crate::engine`] (it wraps the raw RocksDB
//! iterators the engine opens) and nothing in the engine refers back to it.
//! [`crate::storage`] implements its `StorageReader` trait for
//! [`RegionReader`].
//!
//! A `DbIterator` speaks one of two key forms, fixed when it is made:
//! - *stored* keys, exactly as in the engine (from [`Engine::iterator_cf`] and
//!   [`Snapshot::iterator_cf`]), for local keys and the raft CF;
//! - *user* keys (from [`RegionReader::iter_cf`] and hence
//!   [`StorageReader::iter_cf`]): `seek` takes a user key and `key` returns
//!   one; the data prefix of [`crate::keys`] is added and stripped inside.
//!
//! Invariants:
//! - An iterator never yields a key outside the range it was made for: the
//!   bounds are RocksDB iterate bounds, so a `seek` below the range lands on
//!   its first key and iteration stops at the end.
//! - A user-key iterator ranges over data keys only, so every key it sees
//!   carries the data prefix and stripping it is exact.
//! - A `RegionReader` reads its snapshot and nothing else: writes made after
//!   the snapshot are invisible to it and to its iterators.
//!
//! [`Engine::iterator_cf`]: crate::Engine::iterator_cf
//! [`StorageReader::iter_cf`]: crate::StorageReader::iter_cf

use kvproto::metapb;
use rocksdb::{DB, DBRawIteratorWithThreadMode};

use crate::engine::{Engine, Snapshot, check_data_cf};
use crate::errors::{Error, Result};
use crate::keys;

/// Which key form a [`DbIterator`] speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeyMode {
    /// Keys as stored.
    Stored,
    /// User keys: data keys without their prefix.
    User,
}

/// A forward iterator over one column family, bounded to a key range.
///
/// Use it as RocksDB's: position with [`seek`](Self::seek) or
/// [`seek_to_first`](Self::seek_to_first), then read [`key`](Self::key) and
/// [`value`](Self::value) while [`valid`](Self::valid), moving with
/// [`next`](Self::next). When `valid` turns false, [`status`](Self::status)
/// tells the end of the range from an I/O error.
pub struct DbIterator<'a> {
    inner: DBRawIteratorWithThreadMode<'a, DB>,
    keys: KeyMode,
}

impl<'a> DbIterator<'a> {
    fn new(inner: DBRawIteratorWithThreadMode<'a, DB>, keys: KeyMode) -> Self {
        DbIterator { inner, keys }
    }

    /// Moves to the first key at or after `key` (in this iterator's key form),
    /// or to the first key of the range if `key` is below it.
    pub fn seek(&mut self, key: &[u8]) {
        match self.keys {
            KeyMode::Stored => self.inner.seek(key),
            KeyMode::User => self.inner.seek(keys::data_key(key)),
        }
    }

    /// Moves to the first key of the range.
    pub fn seek_to_first(&mut self) {
        self.inner.seek_to_first();
    }

    /// Whether the iterator is at a key. False past the end of the range, and
    /// after an error (see [`status`](Self::status)).
    pub fn valid(&self) -> bool {
        self.inner.valid()
    }

    /// Moves to the next key; does nothing if not [`valid`](Self::valid).
    #[allow(clippy::should_implement_trait)] // RocksDB's (and TinyKV's) cursor API, not an Iterator
    pub fn next(&mut self) {
        self.inner.next();
    }

    /// The current key, in this iterator's key form.
    ///
    /// # Panics
    ///
    /// If the iterator is not [`valid`](Self::valid).
    pub fn key(&self) -> &[u8] {
        let key = self
            .inner
            .key()
            .expect("DbIterator::key called on an invalid iterator");
        match self.keys {
            KeyMode::Stored => key,
            KeyMode::User => {
                debug_assert!(keys::is_data_key(key), "user-key iterator saw a local key");
                &key[1..]
            }
        }
    }

    /// The current value.
    ///
    /// # Panics
    ///
    /// If the iterator is not [`valid`](Self::valid).
    pub fn value(&self) -> &[u8] {
        self.inner
            .value()
            .expect("DbIterator::value called on an invalid iterator")
    }

    /// The current key and value, or `None` if not [`valid`](Self::valid).
    pub fn item(&self) -> Option<(&[u8], &[u8])> {
        self.valid().then(|| (self.key(), self.value()))
    }

    /// The error that invalidated the iterator, if any. `Ok` while valid and
    /// at the end of the range.
    pub fn status(&self) -> Result<()> {
        Ok(self.inner.status()?)
    }
}

impl Engine {
    /// An iterator over the keys of `cf` in `[start, end)`, as stored. An empty
    /// `end` means no upper bound.
    pub fn iterator_cf(&self, cf: &str, start: &[u8], end: &[u8]) -> Result<DbIterator<'_>> {
        Ok(DbIterator::new(
            self.raw_iterator_cf(cf, start, end)?,
            KeyMode::Stored,
        ))
    }

    /// Calls `f(key, value)` for the keys of `cf` in `[start, end)` in order,
    /// as stored, until `f` returns `Ok(false)` or an error (which is
    /// returned). An empty `end` means no upper bound.
    pub fn scan_cf<F>(&self, cf: &str, start: &[u8], end: &[u8], f: F) -> Result<()>
    where
        F: FnMut(&[u8], &[u8]) -> Result<bool>,
    {
        scan(self.iterator_cf(cf, start, end)?, f)
    }
}

impl Snapshot {
    /// An iterator over the snapshot's keys of `cf` in `[start, end)`, as
    /// stored. An empty `end` means no upper bound.
    pub fn iterator_cf(&self, cf: &str, start: &[u8], end: &[u8]) -> Result<DbIterator<'_>> {
        Ok(DbIterator::new(
            self.raw_iterator_cf(cf, start, end)?,
            KeyMode::Stored,
        ))
    }

    /// An iterator over the data keys of `cf` in `[start, end)` (stored keys)
    /// that returns and seeks user keys.
    pub(crate) fn data_iterator_cf(
        &self,
        cf: &str,
        start: &[u8],
        end: &[u8],
    ) -> Result<DbIterator<'_>> {
        Ok(DbIterator::new(
            self.raw_iterator_cf(cf, start, end)?,
            KeyMode::User,
        ))
    }

    /// [`Engine::scan_cf`] at the snapshot.
    pub fn scan_cf<F>(&self, cf: &str, start: &[u8], end: &[u8], f: F) -> Result<()>
    where
        F: FnMut(&[u8], &[u8]) -> Result<bool>,
    {
        scan(self.iterator_cf(cf, start, end)?, f)
    }
}

/// Feeds every entry of `it` (not yet positioned) to `f` until `f` returns
/// `Ok(false)` or an error.
fn scan<F>(mut it: DbIterator<'_>, mut f: F) -> Result<()>
where
    F: FnMut(&[u8], &[u8]) -> Result<bool>,
{
    it.seek_to_first();
    while it.valid() {
        if !f(it.key(), it.value())? {
            return Ok(());
        }
        it.next();
    }
    it.status()
}

/// Reads over an owned [`Snapshot`], restricted to the user keys
/// `[start_key, end_key)` of the data CFs (an empty `end_key` is unbounded).
///
/// This is what a region read sees: one consistent point in time, only the
/// region's keys. Owned and `Send`, so it can be held across `.await`s and
/// moved to a blocking thread.
pub struct RegionReader {
    snap: Snapshot,
    // Invariant: user keys; `end_key` empty means no end.
    start_key: Vec<u8>,
    end_key: Vec<u8>,
}

impl std::fmt::Debug for RegionReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionReader")
            .field("snap", &self.snap)
            .field("start_key", &self.start_key.escape_ascii().to_string())
            .field("end_key", &self.end_key.escape_ascii().to_string())
            .finish()
    }
}

impl RegionReader {
    /// A reader of `snap` restricted to the user keys `[start_key, end_key)`.
    pub fn new(snap: Snapshot, start_key: &[u8], end_key: &[u8]) -> RegionReader {
        RegionReader {
            snap,
            start_key: start_key.to_vec(),
            end_key: end_key.to_vec(),
        }
    }

    /// A reader of `snap` restricted to `region`'s key range.
    pub fn for_region(snap: Snapshot, region: &metapb::Region) -> RegionReader {
        RegionReader::new(snap, &region.start_key, &region.end_key)
    }

    /// The snapshot read.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snap
    }

    /// The first user key in range.
    pub fn start_key(&self) -> &[u8] {
        &self.start_key
    }

    /// The end (exclusive) of the range; empty means unbounded.
    pub fn end_key(&self) -> &[u8] {
        &self.end_key
    }

    fn check_key_in_range(&self, key: &[u8]) -> Result<()> {
        if key >= self.start_key.as_slice()
            && (self.end_key.is_empty() || key < self.end_key.as_slice())
        {
            Ok(())
        } else {
            Err(Error::KeyNotInRange {
                key: key.to_vec(),
                start: self.start_key.clone(),
                end: self.end_key.clone(),
            })
        }
    }

    /// The value of user key `key` in data CF `cf`, or `None` if absent.
    /// Fails with [`Error::KeyNotInRange`] for a key outside the range.
    pub fn get_cf(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        check_data_cf(cf)?;
        self.check_key_in_range(key)?;
        self.snap.get_cf(cf, &keys::data_key(key))
    }

    /// An iterator over data CF `cf` within the range, in user keys.
    pub fn iter_cf(&self, cf: &str) -> Result<DbIterator<'_>> {
        check_data_cf(cf)?;
        self.snap.data_iterator_cf(
            cf,
            &keys::data_key(&self.start_key),
            &keys::data_end_key(&self.end_key),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{CF_DEFAULT, CF_LOCK, CF_RAFT, CF_WRITE, Engine};

    fn new_test_engine() -> (tempfile::TempDir, Engine) {
        let dir = tempfile::tempdir().expect("create temp dir");
        let engine = Engine::open(dir.path()).expect("open engine");
        (dir, engine)
    }

    fn put_user(engine: &Engine, cf: &str, key: &[u8], value: &[u8]) {
        engine.put_cf(cf, &keys::data_key(key), value).unwrap();
    }

    fn collect(mut it: DbIterator<'_>, from: Option<&[u8]>) -> Vec<Vec<u8>> {
        match from {
            Some(k) => it.seek(k),
            None => it.seek_to_first(),
        }
        let mut out = vec![];
        while let Some((k, _)) = it.item() {
            out.push(k.to_vec());
            it.next();
        }
        it.status().unwrap();
        out
    }

    fn ks(keys: &[&[u8]]) -> Vec<Vec<u8>> {
        keys.iter().map(|k| k.to_vec()).collect()
    }

    /// A region's iterator starts at the region start, stops at the region end,
    /// and never sees local keys, other CFs, or keys beyond the range.
    #[test]
    fn test_iteration_bounded_to_region() {
        let (_dir, engine) = new_test_engine();
        for k in [&b"a"[..], b"b", b"c", b"d", b"e"] {
            put_user(&engine, CF_DEFAULT, k, k);
        }
        put_user(&engine, CF_WRITE, b"c2", b"other cf");
        put_user(&engine, CF_LOCK, b"b2", b"other cf");
        engine
            .put_cf(CF_DEFAULT, &keys::apply_state_key(1), b"local")
            .unwrap();
        engine
            .put_cf(CF_DEFAULT, keys::STORE_IDENT_KEY, b"local")
            .unwrap();
        engine
            .put_cf(CF_RAFT, &keys::data_key(b"c"), b"raft cf")
            .unwrap();

        let reader = RegionReader::new(engine.snapshot(), b"b", b"d");
        assert_eq!(
            collect(reader.iter_cf(CF_DEFAULT).unwrap(), None),
            ks(&[b"b", b"c"])
        );
        // Seeking below the start lands on the start; past the end, nothing.
        assert_eq!(
            collect(reader.iter_cf(CF_DEFAULT).unwrap(), Some(b"")),
            ks(&[b"b", b"c"])
        );
        assert_eq!(
            collect(reader.iter_cf(CF_DEFAULT).unwrap(), Some(b"bb")),
            ks(&[b"c"])
        );
        assert!(collect(reader.iter_cf(CF_DEFAULT).unwrap(), Some(b"d")).is_empty());
        assert_eq!(
            collect(reader.iter_cf(CF_WRITE).unwrap(), None),
            ks(&[b"c2"])
        );
        assert_eq!(
            collect(reader.iter_cf(CF_LOCK).unwrap(), None),
            ks(&[b"b2"])
        );

        // The whole key space: every user key, no local key.
        let all = RegionReader::new(engine.snapshot(), b"", b"");
        assert_eq!(
            collect(all.iter_cf(CF_DEFAULT).unwrap(), None),
            ks(&[b"a", b"b", b"c", b"d", b"e"])
        );
        assert_eq!(
            collect(all.iter_cf(CF_DEFAULT).unwrap(), Some(b"d")),
            ks(&[b"d", b"e"])
        );

        // An empty range yields nothing.
        let empty = RegionReader::new(engine.snapshot(), b"c", b"c");
        assert!(collect(empty.iter_cf(CF_DEFAULT).unwrap(), None).is_empty());
    }

    #[test]
    fn test_get_checks_range_and_cf() {
        let (_dir, engine) = new_test_engine();
        put_user(&engine, CF_DEFAULT, b"a", b"1");
        put_user(&engine, CF_DEFAULT, b"m", b"2");
        let reader = RegionReader::new(engine.snapshot(), b"b", b"n");

        assert_eq!(
            reader.get_cf(CF_DEFAULT, b"m").unwrap(),
            Some(b"2".to_vec())
        );
        assert_eq!(reader.get_cf(CF_DEFAULT, b"c").unwrap(), None);
        assert_eq!(reader.get_cf(CF_WRITE, b"m").unwrap(), None);
        for key in [&b"a"[..], b"n", b"z"] {
            assert!(
                matches!(
                    reader.get_cf(CF_DEFAULT, key),
                    Err(Error::KeyNotInRange { .. })
                ),
                "{key:?}"
            );
        }
        assert!(matches!(
            reader.get_cf(CF_RAFT, b"m"),
            Err(Error::NotDataCf(_))
        ));
        assert!(matches!(
            reader.get_cf("nope", b"m"),
            Err(Error::UnknownCf(_))
        ));
        assert!(matches!(reader.iter_cf(CF_RAFT), Err(Error::NotDataCf(_))));
        assert!(matches!(reader.iter_cf(""), Err(Error::UnknownCf(_))));
    }

    #[test]
    fn test_reader_is_a_snapshot() {
        let (_dir, engine) = new_test_engine();
        put_user(&engine, CF_DEFAULT, b"a", b"old");
        let reader = RegionReader::new(engine.snapshot(), b"", b"");
        let mut it = reader.iter_cf(CF_DEFAULT).unwrap();

        put_user(&engine, CF_DEFAULT, b"a", b"new");
        put_user(&engine, CF_DEFAULT, b"b", b"new");
        assert_eq!(
            reader.get_cf(CF_DEFAULT, b"a").unwrap(),
            Some(b"old".to_vec())
        );
        assert_eq!(reader.get_cf(CF_DEFAULT, b"b").unwrap(), None);
        it.seek_to_first();
        assert_eq!(it.item(), Some((&b"a"[..], &b"old"[..])));
        it.next();
        assert_eq!(it.item(), None);
    }

    /// User keys that look like local keys stay user keys: they are stored
    /// with the data prefix, never overwrite or reveal local state.
    #[test]
    fn test_user_keys_never_collide_with_local_keys() {
        let (_dir, engine) = new_test_engine();
        let local = keys::apply_state_key(1);
        engine.put_cf(CF_DEFAULT, &local, b"local state").unwrap();
        engine
            .put_cf(CF_DEFAULT, keys::STORE_IDENT_KEY, b"ident")
            .unwrap();

        put_user(&engine, CF_DEFAULT, &local, b"user value");
        put_user(&engine, CF_DEFAULT, keys::STORE_IDENT_KEY, b"user ident");

        assert_eq!(
            engine.get_cf(CF_DEFAULT, &local).unwrap(),
            Some(b"local state".to_vec())
        );
        assert_eq!(
            engine.get_cf(CF_DEFAULT, keys::STORE_IDENT_KEY).unwrap(),
            Some(b"ident".to_vec())
        );
        let reader = RegionReader::new(engine.snapshot(), b"", b"");
        assert_eq!(
            reader.get_cf(CF_DEFAULT, &local).unwrap(),
            Some(b"user value".to_vec())
        );
        assert_eq!(
            collect(reader.iter_cf(CF_DEFAULT).unwrap(), None),
            ks(&[keys::STORE_IDENT_KEY, &local])
        );
    }

    #[test]
    fn test_stored_key_iterator_seek() {
        let (_dir, engine) = new_test_engine();
        for i in 0u64..5 {
            engine
                .put_cf(CF_RAFT, &keys::raft_log_key(1, i), b"e")
                .unwrap();
        }
        let (start, end) = keys::raft_log_range(1);
        let mut it = engine.iterator_cf(CF_RAFT, &start, &end).unwrap();
        it.seek(&keys::raft_log_key(1, 3));
        assert_eq!(keys::raft_log_index(it.key()).unwrap(), 3);
        it.next();
        assert_eq!(keys::raft_log_index(it.key()).unwrap(), 4);
        it.next();
        assert!(!it.valid());
        it.next(); // a no-op past the end
        assert!(!it.valid());
        it.status().unwrap();
    }

    #[test]
    fn test_reader_is_send() {
        fn assert_send<T: Send + 'static>(_: &T) {}
        let (_dir, engine) = new_test_engine();
        let reader = RegionReader::for_region(
            engine.snapshot(),
            &metapb::Region {
                start_key: b"a".to_vec(),
                end_key: b"b".to_vec(),
                ..Default::default()
            },
        );
        assert_send(&reader);
        assert_eq!(
            (reader.start_key(), reader.end_key()),
            (&b"a"[..], &b"b"[..])
        );
    }
}
