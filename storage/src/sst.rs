//! External SST files: building one from sorted keys ([`write_sst`]),
//! reading back the key range of one ([`inspect_sst`]) and ingesting files
//! into a column family ([`Engine::ingest_external_file_cf`]).
//!
//! Region snapshots move data between stores this way: the sender writes one
//! SST per data CF from a RocksDB snapshot, the receiver ingests them, which
//! costs no write-ahead-log traffic and no per-key writes.
//!
//! Invariants:
//! - A file is written with the engine's own CF options (LZ4), so the
//!   engine can read what it ingests.
//! - Keys go in as stored (see [`crate::keys`]), strictly increasing.
//! - An SST holds at least one entry: RocksDB cannot finish an empty one, so
//!   [`write_sst`] leaves no file when nothing was put.
//! - Ingestion trusts the file: RocksDB puts whatever keys it holds into the
//!   CF, local keys included. A caller ingesting a file it did not build
//!   checks its key range with [`inspect_sst`] first.
//!
//! Why [`inspect_sst`] goes through a scratch database: the RocksDB binding
//! offers no SST reader (RocksDB's C API has none), so the only way to read
//! a file back is to ingest it somewhere. A throwaway database in a scratch
//! directory takes it by hard link (no copy of the data), reports the
//! file's smallest and largest key from its metadata (range tombstones
//! included, so a tombstone cannot hide outside the range), and is deleted.

use std::path::Path;
use std::sync::Arc;

use rocksdb::{DB, IngestExternalFileOptions, SstFileWriter};

use crate::engine::{Engine, cf_options};
use crate::errors::{Error, Result};

/// Puts keys into one SST file being built by [`write_sst`].
pub struct SstWriter<'a> {
    inner: SstFileWriter<'a>,
    entries: u64,
}

impl SstWriter<'_> {
    /// Adds `key` = `value`; keys must come in strictly increasing order.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        self.inner.put(key, value)?;
        self.entries += 1;
        Ok(())
    }

    /// How many entries were put so far.
    pub fn entries(&self) -> u64 {
        self.entries
    }
}

/// Builds the SST file `path` from what `fill` puts. Returns the number of
/// entries; with none, no file is left at `path`.
pub fn write_sst<F>(path: &Path, fill: F) -> Result<u64>
where
    F: FnOnce(&mut SstWriter<'_>) -> Result<()>,
{
    let opts = cf_options();
    let mut writer = SstWriter {
        inner: SstFileWriter::create(&opts),
        entries: 0,
    };
    writer.inner.open(path)?;
    let filled = fill(&mut writer);
    let entries = writer.entries;
    let finished = match filled {
        Ok(()) if entries > 0 => writer.inner.finish().map_err(Error::from),
        Ok(()) => Ok(()),
        Err(e) => Err(e),
    };
    drop(writer);
    if entries == 0 || finished.is_err() {
        remove_if_exists(path)?;
    }
    finished.map(|()| entries)
}

/// The keys an SST file spans, as stored: every key in it, and every range
/// tombstone's bounds, lie in `[smallest, largest]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SstKeyRange {
    /// The smallest key (inclusive).
    pub smallest: Vec<u8>,
    /// The largest key (inclusive).
    pub largest: Vec<u8>,
}

/// Reads the key range of the SST file `path` without touching any engine.
///
/// `scratch` is a directory this call owns: it is created (replacing a
/// leftover of an interrupted call), holds a throwaway database that takes
/// the file by hard link (a copy if linking fails), and is removed before
/// returning. The file at `path` is only read. A file RocksDB cannot open
/// is an error. Blocking.
pub fn inspect_sst(path: &Path, scratch: &Path) -> Result<SstKeyRange> {
    remove_dir_if_exists(scratch)?;
    std::fs::create_dir_all(scratch).map_err(|e| Error::Io {
        what: "create a scratch directory to inspect an sst file",
        source: Arc::new(e),
    })?;
    let inspected = inspect_in(path, scratch);
    let removed = remove_dir_if_exists(scratch);
    let range = inspected?;
    removed?;
    Ok(range)
}

fn inspect_in(path: &Path, scratch: &Path) -> Result<SstKeyRange> {
    let linked = scratch.join("inspected.sst");
    if std::fs::hard_link(path, &linked).is_err() {
        std::fs::copy(path, &linked).map_err(|e| Error::Io {
            what: "copy an sst file to inspect it",
            source: Arc::new(e),
        })?;
    }
    let mut opts = cf_options();
    opts.create_if_missing(true);
    let db = DB::open(&opts, scratch.join("db"))?;
    // Moving consumes only our link; the file at `path` keeps its name and
    // contents (RocksDB does not rewrite ingested files by default).
    let mut ingest = IngestExternalFileOptions::default();
    ingest.set_move_files(true);
    db.ingest_external_file_opts(&ingest, vec![linked.as_path()])?;
    let files = db.live_files()?;
    let [file] = files.as_slice() else {
        return Err(Error::InvalidArgument(format!(
            "{}: ingesting it made {} files, expected 1",
            path.display(),
            files.len()
        )));
    };
    match (&file.start_key, &file.end_key) {
        (Some(smallest), Some(largest)) => Ok(SstKeyRange {
            smallest: smallest.clone(),
            largest: largest.clone(),
        }),
        _ => Err(Error::InvalidArgument(format!(
            "{}: rocksdb reports no key range for it",
            path.display()
        ))),
    }
}

fn remove_dir_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io {
            what: "remove a scratch directory",
            source: Arc::new(e),
        }),
    }
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Io {
            what: "remove an unfinished sst file",
            source: Arc::new(e),
        }),
    }
}

impl Engine {
    /// Ingests the SST files `paths` into `cf`. The files are copied, not
    /// moved, so the caller still has them if a crash interrupts what
    /// follows. Ingested keys are newer than every earlier write, including
    /// range deletions, so "delete the range, then ingest" replaces a range.
    ///
    /// Blocking (file copies, possibly a memtable flush): call it from a
    /// dedicated thread, not from an async task.
    pub fn ingest_external_file_cf(&self, cf: &str, paths: &[&Path]) -> Result<()> {
        if paths.is_empty() {
            return Ok(());
        }
        let handle = self
            .db()
            .cf_handle(cf)
            .ok_or_else(|| Error::UnknownCf(cf.to_owned()))?;
        let mut opts = IngestExternalFileOptions::default();
        opts.set_move_files(false);
        self.db()
            .ingest_external_file_cf_opts(handle, &opts, paths.to_vec())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CF_DEFAULT, CF_WRITE};

    #[test]
    fn test_write_and_ingest_sst() {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path().join("db")).unwrap();
        engine.put_cf(CF_WRITE, b"a", b"old").unwrap();
        engine.put_cf(CF_WRITE, b"z", b"kept").unwrap();

        let path = dir.path().join("write.sst");
        let entries = write_sst(&path, |w| {
            w.put(b"a", b"1")?;
            w.put(b"b", b"2")
        })
        .unwrap();
        assert_eq!(entries, 2);
        assert!(path.exists());

        let mut wb = engine.write_batch();
        wb.delete_range_cf(CF_WRITE, b"a", b"c").unwrap();
        engine.write(wb, false).unwrap();
        engine
            .ingest_external_file_cf(CF_WRITE, &[path.as_path()])
            .unwrap();
        assert_eq!(engine.get_cf(CF_WRITE, b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(engine.get_cf(CF_WRITE, b"b").unwrap(), Some(b"2".to_vec()));
        assert_eq!(
            engine.get_cf(CF_WRITE, b"z").unwrap(),
            Some(b"kept".to_vec())
        );
        assert_eq!(engine.get_cf(CF_DEFAULT, b"a").unwrap(), None);
        // Copied, not moved.
        assert!(path.exists());
    }

    #[test]
    fn test_inspect_sst_reports_the_key_range_and_leaves_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.sst");
        write_sst(&path, |w| {
            w.put(b"\x01local", b"1")?;
            w.put(b"zb", b"2")?;
            w.put(b"zy", b"3")
        })
        .unwrap();
        let before = std::fs::read(&path).unwrap();
        let scratch = dir.path().join("scratch");
        // A leftover of an interrupted call is replaced.
        std::fs::create_dir_all(scratch.join("db")).unwrap();
        std::fs::write(scratch.join("db/CURRENT"), b"garbage").unwrap();

        let range = inspect_sst(&path, &scratch).unwrap();
        assert_eq!(
            range,
            SstKeyRange {
                smallest: b"\x01local".to_vec(),
                largest: b"zy".to_vec(),
            }
        );
        assert_eq!(std::fs::read(&path).unwrap(), before, "only read");
        assert!(!scratch.exists(), "the scratch directory is removed");
        // The file can still be ingested.
        let engine = Engine::open(dir.path().join("db")).unwrap();
        engine
            .ingest_external_file_cf(CF_DEFAULT, &[path.as_path()])
            .unwrap();
        assert_eq!(
            engine.get_cf(CF_DEFAULT, b"zb").unwrap(),
            Some(b"2".to_vec())
        );

        // Not an SST file: an error, and no scratch left.
        let junk = dir.path().join("junk.sst");
        std::fs::write(&junk, b"not an sst file").unwrap();
        assert!(inspect_sst(&junk, &scratch).is_err());
        assert!(!scratch.exists());
    }

    #[test]
    fn test_empty_sst_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.sst");
        assert_eq!(write_sst(&path, |_| Ok(())).unwrap(), 0);
        assert!(!path.exists());
        // Out-of-order keys fail and leave no file either.
        let err = write_sst(&path, |w| {
            w.put(b"b", b"1")?;
            w.put(b"a", b"2")
        });
        assert!(err.is_err());
        assert!(!path.exists());
    }
}
