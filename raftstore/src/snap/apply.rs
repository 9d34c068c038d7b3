//! Applying a received snapshot to the engine.
//!
//! Before this runs, the peer has persisted in one synced batch
//! (`PeerStorage::prepare_persist`) the snapshot's raft and apply state, its
//! region marked `Applying`, and, if the peer had a region of another key
//! range before, that previous region under
//! `keys::snapshot_previous_region_key` (the redo record). Here:
//! 1. Verify every file against the meta file: size, CRC32, and the CF
//!    checksum, so a file built for another column family is refused.
//! 2. Check every file's key range (`storage::inspect_sst`): data keys of
//!    the region's range only. A file holding local keys (apply, region or
//!    raft state, ...) or keys of another range is refused.
//!
//!    Nothing is written before 1 and 2 pass: a refused snapshot leaves the
//!    region `Applying` with its states as they were.
//! 3. Delete the old data, in every data CF: the region's new range and the
//!    previous region's range, both read from the persisted state.
//! 4. Ingest the SST files (copied into RocksDB).
//! 5. One synced batch: `RegionLocalState { Normal, region }`, and the redo
//!    record deleted. The snapshot is applied.
//! 6. Delete the received files.
//!
//! Every step may be redone: a crash before step 5 leaves the region
//! `Applying` with its files and redo record in place, and the store runs
//! this again on start-up (`store.rs`) before the peer starts. Because the
//! ranges to clear come from what was persisted with the `Applying` mark,
//! not from the caller, the redo clears exactly what the first run would
//! have: after a split, the part of the old range the snapshot's region no
//! longer covers too.

use std::path::Path;

use kvproto::metapb;
use kvproto::raft_serverpb::{PeerState, SnapshotCfFile};
use storage::{CF_DEFAULT, DATA_CFS, Engine, inspect_sst, keys};

use super::{SnapKey, SnapKind, SnapManager};
use crate::errors::{Error, Result};
use crate::peer_storage::write_region_state;

/// Applies received snapshot `key` of `region` to `engine`. Blocking.
pub fn apply_snapshot(
    engine: &Engine,
    mgr: &SnapManager,
    key: &SnapKey,
    region: &metapb::Region,
) -> Result<()> {
    if region.id != key.region_id {
        return Err(Error::InvalidSnapshot(format!(
            "snapshot {key} applied to region {}",
            region.id
        )));
    }
    let _guard = mgr.register(SnapKind::Received, *key);
    if !mgr.exists(SnapKind::Received, key) {
        return Err(Error::InvalidSnapshot(format!(
            "received snapshot {key} is missing from {}",
            mgr.dir().display()
        )));
    }
    let data = mgr.load_meta(SnapKind::Received, key)?;
    mgr.verify(SnapKind::Received, key, &data)?;
    let files: Vec<&SnapshotCfFile> = data
        .meta
        .as_ref()
        .expect("verified")
        .cf_files
        .iter()
        .filter(|f| f.size > 0)
        .collect();
    for file in &files {
        let path = mgr.cf_path(SnapKind::Received, key, &file.cf);
        check_key_range(mgr, key, region, &file.cf, &path)?;
    }

    let mut wb = engine.write_batch();
    for (start, end) in ranges_to_clear(engine, region)? {
        let (start, end) = (keys::data_key(&start), keys::data_end_key(&end));
        for cf in DATA_CFS {
            wb.delete_range_cf(cf, &start, &end)?;
        }
    }
    engine.write(wb, false)?;

    for file in &files {
        let path = mgr.cf_path(SnapKind::Received, key, &file.cf);
        engine.ingest_external_file_cf(&file.cf, &[path.as_path()])?;
    }

    let mut wb = engine.write_batch();
    write_region_state(&mut wb, region, PeerState::Normal)?;
    wb.delete_cf(CF_DEFAULT, &keys::snapshot_previous_region_key(region.id))?;
    engine.write(wb, true)?;

    mgr.delete_files(SnapKind::Received, key)?;
    Ok(())
}

/// The user-key ranges `[start, end)` (empty end: unbounded) whose data the
/// snapshot replaces: `region`'s, and the previous region's recorded with
/// the `Applying` mark if it differs.
fn ranges_to_clear(engine: &Engine, region: &metapb::Region) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut ranges = vec![(region.start_key.clone(), region.end_key.clone())];
    let previous = engine
        .get_msg_cf::<metapb::Region>(CF_DEFAULT, &keys::snapshot_previous_region_key(region.id))?;
    if let Some(previous) = previous
        && (&previous.start_key, &previous.end_key) != (&region.start_key, &region.end_key)
    {
        ranges.push((previous.start_key, previous.end_key));
    }
    Ok(ranges)
}

/// Refuses a file holding any key that is not a data key of `region`'s
/// range: local keys would overwrite this store's metadata (the apply or
/// region state written with the `Applying` mark), other ranges another
/// region's data.
fn check_key_range(
    mgr: &SnapManager,
    key: &SnapKey,
    region: &metapb::Region,
    cf: &str,
    path: &Path,
) -> Result<()> {
    let range = inspect_sst(path, &mgr.tmp_path(path))?;
    let start = keys::data_key(&region.start_key);
    let end = keys::data_end_key(&region.end_key);
    // Every key below the data key space is a local key (or none of ours);
    // if the file has one, its smallest key is one.
    if range.smallest.as_slice() < keys::DATA_MIN_KEY {
        return Err(Error::InvalidSnapshot(format!(
            "snapshot {key}: the {cf} file holds the local key \"{}\"; \
             a snapshot carries data keys only",
            range.smallest.escape_ascii()
        )));
    }
    if range.smallest < start || range.largest >= end {
        return Err(Error::InvalidSnapshot(format!(
            "snapshot {key}: the {cf} file holds keys [\"{}\", \"{}\"], outside region {}'s \
             data range [\"{}\", \"{}\")",
            range.smallest.escape_ascii(),
            range.largest.escape_ascii(),
            region.id,
            start.escape_ascii(),
            end.escape_ascii()
        )));
    }
    Ok(())
}
