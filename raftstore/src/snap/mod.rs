//! The snapshot manager: a store's directory of region snapshot files.
//!
//! This module owns the files and the blocking steps over them; it runs no
//! actor and keeps no peer state. Who calls it: the region worker
//! (`worker/region.rs`: generate, apply, GC), the transport (transfer), the
//! store at start-up (`store.rs`: an interrupted apply); `snapshot.rs` has
//! the map of all snapshot logic.
//!
//! A snapshot of a region at (index, term) is one SST file per non-empty
//! data CF plus a meta file, the encoded `RaftSnapshotData` (region, total
//! size, and per CF file: size, CRC32, and the CF checksum that ties the
//! file to the CF it was built for):
//!
//! ```text
//!   <store dir>/snap/gen_<region>_<term>_<index>_<cf>.sst   generated here, to send
//!   <store dir>/snap/gen_<region>_<term>_<index>.meta
//!   <store dir>/snap/rcv_<region>_<term>_<index>_<cf>.sst   received, to apply
//!   <store dir>/snap/rcv_<region>_<term>_<index>.meta
//!   <any of these>.<n>.tmp                                   being written
//!   rcv_<region>_<term>_<index>_<cf>.sst.<n>.tmp/            scratch dir of a key-range check
//! ```
//!
//! Protocol steps, each in its own file:
//! - `build`: generate a snapshot from a RocksDB snapshot (region worker).
//! - `transfer`: stream its files as `SnapshotChunk`s, and receive them.
//! - `apply`: verify received files (sums, CF, key range) and ingest them
//!   (region worker, or the store at start-up when a crash interrupted an
//!   apply).
//!
//! Invariants:
//! - A snapshot is complete iff its meta file exists: files are written
//!   under a `.tmp` name and renamed, the meta file last. Received files are
//!   fsynced before their rename, so a complete received snapshot survives a
//!   crash (the peer persists `Applying` only after it is complete).
//! - `.tmp` files belong to a writer in progress; only `open` (no writer is
//!   running yet) removes them. A unique sequence number in each tmp name
//!   lets two transfers of the same snapshot run side by side.
//! - A snapshot registered as in use (generating, sending, receiving,
//!   applying) is never deleted by `delete_idle`.

mod apply;
mod build;
mod transfer;

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use kvproto::eraftpb::Snapshot;
use kvproto::raft_serverpb::RaftSnapshotData;
use prost::Message as _;
use storage::is_data_cf;

use crate::errors::{Error, Result};

pub use self::apply::apply_snapshot;
pub use self::build::generate_snapshot;
pub use self::transfer::{ChunkEncoder, SNAPSHOT_CHUNK_SIZE, SnapshotReceiver};

const SST_SUFFIX: &str = ".sst";
const META_SUFFIX: &str = ".meta";
const TMP_SUFFIX: &str = ".tmp";

/// Which side of a transfer a snapshot's files are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SnapKind {
    /// Generated on this store, to send.
    Generated,
    /// Received from another store, to apply.
    Received,
}

impl SnapKind {
    fn prefix(self) -> &'static str {
        match self {
            SnapKind::Generated => "gen",
            SnapKind::Received => "rcv",
        }
    }
}

/// Names one snapshot of a region: the index and term it was taken at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SnapKey {
    /// The region.
    pub region_id: u64,
    /// The term of the entry at `index`.
    pub term: u64,
    /// The applied index the snapshot reflects.
    pub index: u64,
}

impl SnapKey {
    /// The key of `snapshot`, whose data names its region.
    pub fn from_snapshot(snapshot: &Snapshot) -> Result<(SnapKey, RaftSnapshotData)> {
        let data = RaftSnapshotData::decode(snapshot.data.as_slice())
            .map_err(|e| Error::InvalidSnapshot(format!("undecodable snapshot data: {e}")))?;
        let region_id = data
            .region
            .as_ref()
            .map(|r| r.id)
            .ok_or_else(|| Error::InvalidSnapshot("snapshot data names no region".into()))?;
        let meta = snapshot
            .metadata
            .as_ref()
            .ok_or_else(|| Error::InvalidSnapshot("snapshot has no metadata".into()))?;
        Ok((
            SnapKey {
                region_id,
                term: meta.term,
                index: meta.index,
            },
            data,
        ))
    }

    fn stem(&self, kind: SnapKind) -> String {
        format!(
            "{}_{}_{}_{}",
            kind.prefix(),
            self.region_id,
            self.term,
            self.index
        )
    }

    /// Parses a meta file name back into its kind and key.
    fn parse_meta_name(name: &str) -> Option<(SnapKind, SnapKey)> {
        let stem = name.strip_suffix(META_SUFFIX)?;
        let mut parts = stem.split('_');
        let kind = match parts.next()? {
            "gen" => SnapKind::Generated,
            "rcv" => SnapKind::Received,
            _ => return None,
        };
        let region_id = parts.next()?.parse().ok()?;
        let term = parts.next()?.parse().ok()?;
        let index = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some((
            kind,
            SnapKey {
                region_id,
                term,
                index,
            },
        ))
    }
}

impl std::fmt::Display for SnapKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}_{}_{}", self.region_id, self.term, self.index)
    }
}

pub(crate) fn io_error(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    move |source| Error::Io {
        what: what.into(),
        source,
    }
}

/// What a snapshot's description records of one CF file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileSums {
    /// The file's length.
    pub size: u64,
    /// CRC32 (IEEE) of the file: `SnapshotCfFile::checksum`.
    pub checksum: u32,
    /// CRC32 of the CF's name, a 0 byte and the file:
    /// `SnapshotCfFile::cf_checksum`, which ties the file to its CF.
    pub cf_checksum: u32,
}

/// The sums of the file at `path`, built for (or offered for) `cf`.
pub(crate) fn file_sums(path: &Path, cf: &str) -> Result<FileSums> {
    let mut file = File::open(path).map_err(io_error(format!("open {}", path.display())))?;
    let mut plain = crc32fast::Hasher::new();
    let mut keyed = crc32fast::Hasher::new();
    keyed.update(cf.as_bytes());
    keyed.update(&[0]);
    let mut buf = vec![0; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(io_error(format!("read {}", path.display())))?;
        if n == 0 {
            return Ok(FileSums {
                size,
                checksum: plain.finalize(),
                cf_checksum: keyed.finalize(),
            });
        }
        plain.update(&buf[..n]);
        keyed.update(&buf[..n]);
        size += n as u64;
    }
}

/// Checks that `data` describes a well-formed set of files: data CFs only,
/// each at most once, sizes adding up to `file_size`, empty files without a
/// checksum.
pub(crate) fn check_snapshot_data(data: &RaftSnapshotData) -> Result<()> {
    let meta = data
        .meta
        .as_ref()
        .ok_or_else(|| Error::InvalidSnapshot("snapshot data has no file meta".into()))?;
    let mut total = 0u64;
    for (i, file) in meta.cf_files.iter().enumerate() {
        if !is_data_cf(&file.cf) {
            return Err(Error::InvalidSnapshot(format!(
                "snapshot file of unknown cf {:?}",
                file.cf
            )));
        }
        if meta.cf_files[..i].iter().any(|f| f.cf == file.cf) {
            return Err(Error::InvalidSnapshot(format!(
                "cf {} appears twice in the snapshot",
                file.cf
            )));
        }
        total = total
            .checked_add(file.size)
            .ok_or_else(|| Error::InvalidSnapshot("snapshot file sizes overflow".into()))?;
    }
    if total != data.file_size {
        return Err(Error::InvalidSnapshot(format!(
            "snapshot files add up to {total} bytes, data says {}",
            data.file_size
        )));
    }
    Ok(())
}

/// A store's snapshot files. Cheap to clone; clones share one registry.
#[derive(Clone)]
pub struct SnapManager {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    /// Snapshots in use, with a count of users. A `Mutex`: registration and
    /// the idle check before deleting must be one step, and both are short.
    in_use: Mutex<HashMap<(SnapKind, SnapKey), usize>>,
    /// Makes tmp file names unique.
    tmp_seq: AtomicU64,
}

impl std::fmt::Debug for SnapManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapManager")
            .field("dir", &self.inner.dir)
            .finish()
    }
}

/// Marks a snapshot in use until dropped.
pub struct SnapGuard {
    inner: Arc<Inner>,
    id: (SnapKind, SnapKey),
}

impl Drop for SnapGuard {
    fn drop(&mut self) {
        let mut in_use = lock(&self.inner.in_use);
        if let Some(count) = in_use.get_mut(&self.id) {
            *count -= 1;
            if *count == 0 {
                in_use.remove(&self.id);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // The registry is a plain map updated in single steps: a panic elsewhere
    // cannot leave it half-changed.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl SnapManager {
    /// The manager of `dir`, created if missing. Leftover `.tmp` files of
    /// writers interrupted by a crash are removed.
    pub fn open(dir: impl Into<PathBuf>) -> Result<SnapManager> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(io_error(format!("create {}", dir.display())))?;
        for entry in fs::read_dir(&dir).map_err(io_error(format!("list {}", dir.display())))? {
            let entry = entry.map_err(io_error(format!("list {}", dir.display())))?;
            if entry.file_name().to_string_lossy().ends_with(TMP_SUFFIX) {
                let path = entry.path();
                // Scratch directories of an interrupted key-range check
                // (`apply`) end in `.tmp` too.
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    fs::remove_dir_all(&path)
                        .map_err(io_error(format!("remove {}", path.display())))?;
                } else {
                    remove_file_if_exists(&path)?;
                }
            }
        }
        Ok(SnapManager {
            inner: Arc::new(Inner {
                dir,
                in_use: Mutex::new(HashMap::new()),
                tmp_seq: AtomicU64::new(0),
            }),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The SST file of `cf` in snapshot `key`.
    pub fn cf_path(&self, kind: SnapKind, key: &SnapKey, cf: &str) -> PathBuf {
        self.inner
            .dir
            .join(format!("{}_{cf}{SST_SUFFIX}", key.stem(kind)))
    }

    /// The meta file of snapshot `key`.
    pub fn meta_path(&self, kind: SnapKind, key: &SnapKey) -> PathBuf {
        self.inner
            .dir
            .join(format!("{}{META_SUFFIX}", key.stem(kind)))
    }

    /// A fresh name to write `path` under before renaming it into place.
    pub(crate) fn tmp_path(&self, path: &Path) -> PathBuf {
        let seq = self.inner.tmp_seq.fetch_add(1, Ordering::Relaxed);
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{seq}{TMP_SUFFIX}"));
        PathBuf::from(name)
    }

    /// Marks snapshot `key` in use until the guard drops.
    pub fn register(&self, kind: SnapKind, key: SnapKey) -> SnapGuard {
        *lock(&self.inner.in_use).entry((kind, key)).or_insert(0) += 1;
        SnapGuard {
            inner: Arc::clone(&self.inner),
            id: (kind, key),
        }
    }

    /// Whether snapshot `key` is in use.
    pub fn is_in_use(&self, kind: SnapKind, key: &SnapKey) -> bool {
        lock(&self.inner.in_use).contains_key(&(kind, *key))
    }

    /// Whether snapshot `key` is complete (its meta file exists).
    pub fn exists(&self, kind: SnapKind, key: &SnapKey) -> bool {
        self.meta_path(kind, key).exists()
    }

    /// The description of complete snapshot `key`, read from its meta file.
    pub fn load_meta(&self, kind: SnapKind, key: &SnapKey) -> Result<RaftSnapshotData> {
        let path = self.meta_path(kind, key);
        let bytes = fs::read(&path).map_err(io_error(format!("read {}", path.display())))?;
        let data = RaftSnapshotData::decode(bytes.as_slice()).map_err(|e| {
            Error::InvalidSnapshot(format!("meta file {} is corrupt: {e}", path.display()))
        })?;
        check_snapshot_data(&data)?;
        Ok(data)
    }

    /// Writes the meta file of snapshot `key`, completing it. With `sync`,
    /// it is durable (with the directory entry) when this returns.
    pub(crate) fn save_meta(
        &self,
        kind: SnapKind,
        key: &SnapKey,
        data: &RaftSnapshotData,
        sync: bool,
    ) -> Result<()> {
        let path = self.meta_path(kind, key);
        let tmp = self.tmp_path(&path);
        let written = (|| {
            let mut file =
                File::create(&tmp).map_err(io_error(format!("create {}", tmp.display())))?;
            file.write_all(&data.encode_to_vec())
                .map_err(io_error(format!("write {}", tmp.display())))?;
            if sync {
                file.sync_all()
                    .map_err(io_error(format!("sync {}", tmp.display())))?;
            }
            fs::rename(&tmp, &path).map_err(io_error(format!("rename {}", tmp.display())))?;
            if sync {
                self.sync_dir()?;
            }
            Ok(())
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written
    }

    /// Syncs the directory, making renames in it durable.
    pub(crate) fn sync_dir(&self) -> Result<()> {
        File::open(&self.inner.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error(format!("sync {}", self.inner.dir.display())))
    }

    /// Checks every file of snapshot `key` against `data`: present with the
    /// recorded size and CRC32, and built for the CF it is described as
    /// (`cf_checksum`), or absent when empty.
    pub fn verify(&self, kind: SnapKind, key: &SnapKey, data: &RaftSnapshotData) -> Result<()> {
        check_snapshot_data(data)?;
        for file in &data.meta.as_ref().expect("checked above").cf_files {
            if file.size == 0 {
                continue;
            }
            let path = self.cf_path(kind, key, &file.cf);
            let sums = file_sums(&path, &file.cf)?;
            if sums.size != file.size || sums.checksum != file.checksum {
                return Err(Error::InvalidSnapshot(format!(
                    "{}: size {}, crc32 {:#010x}; expected size {}, crc32 {:#010x}",
                    path.display(),
                    sums.size,
                    sums.checksum,
                    file.size,
                    file.checksum
                )));
            }
            if sums.cf_checksum != file.cf_checksum {
                return Err(Error::InvalidSnapshot(format!(
                    "snapshot {key}: {} was not built for cf {} (cf checksum {:#010x}, \
                     recorded {:#010x})",
                    path.display(),
                    file.cf,
                    sums.cf_checksum,
                    file.cf_checksum
                )));
            }
        }
        Ok(())
    }

    /// Every complete snapshot in the directory, sorted by kind and key.
    pub fn list(&self) -> Result<Vec<(SnapKind, SnapKey)>> {
        let dir = &self.inner.dir;
        let mut snaps = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_error(format!("list {}", dir.display())))? {
            let entry = entry.map_err(io_error(format!("list {}", dir.display())))?;
            if let Some(id) = SnapKey::parse_meta_name(&entry.file_name().to_string_lossy()) {
                snaps.push(id);
            }
        }
        snaps.sort();
        Ok(snaps)
    }

    /// Deletes snapshot `key` unless it is in use. Returns whether it was
    /// deleted. The meta file goes first, so a crash midway leaves an
    /// incomplete snapshot, never a complete one with files missing.
    pub fn delete_idle(&self, kind: SnapKind, key: &SnapKey) -> Result<bool> {
        let in_use = lock(&self.inner.in_use);
        if in_use.contains_key(&(kind, *key)) {
            return Ok(false);
        }
        self.delete_files(kind, key)?;
        drop(in_use);
        Ok(true)
    }

    /// Deletes snapshot `key`, which the caller holds registered.
    pub(crate) fn delete_files(&self, kind: SnapKind, key: &SnapKey) -> Result<()> {
        remove_file_if_exists(&self.meta_path(kind, key))?;
        for cf in storage::DATA_CFS {
            remove_file_if_exists(&self.cf_path(kind, key, cf))?;
        }
        Ok(())
    }
}

pub(crate) fn remove_file_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(format!("remove {}", path.display()))(e)),
    }
}

#[cfg(test)]
mod tests;
