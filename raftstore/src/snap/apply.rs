//! Applying a received snapshot to the engine.
//!
//! The peer has already persisted the snapshot's raft and apply state and
//! marked its region `Applying` (`PeerStorage::prepare_snapshot`). Here:
//! 1. Verify every file (size, CRC32) against the meta file.
//! 2. Delete the old data: the ranges given (the region's new range, and its
//!    old one if the peer had data), in every data CF.
//! 3. Ingest the SST files (copied into RocksDB).
//! 4. Write `RegionLocalState { Normal, region }`, synced: the snapshot is
//!    applied.
//! 5. Delete the received files.
//!
//! Every step may be redone: a crash before step 4 leaves the region
//! `Applying` with its files in place, and the store runs this again on
//! start-up before the peer starts.

use kvproto::metapb;
use kvproto::raft_serverpb::PeerState;
use storage::{DATA_CFS, Engine, keys};

use super::{SnapKey, SnapKind, SnapManager};
use crate::errors::{Error, Result};
use crate::peer_storage::write_region_state;

/// Applies received snapshot `key` of `region` to `engine`, clearing
/// `clear` (user-key ranges `[start, end)`, empty end unbounded) first.
/// Blocking.
pub fn apply_snapshot(
    engine: &Engine,
    mgr: &SnapManager,
    key: &SnapKey,
    region: &metapb::Region,
    clear: &[(Vec<u8>, Vec<u8>)],
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

    let mut wb = engine.write_batch();
    for (start, end) in clear {
        let (start, end) = (keys::data_key(start), keys::data_end_key(end));
        for cf in DATA_CFS {
            wb.delete_range_cf(cf, &start, &end)?;
        }
    }
    engine.write(wb, false)?;

    for file in &data.meta.as_ref().expect("verified").cf_files {
        if file.size == 0 {
            continue;
        }
        let path = mgr.cf_path(SnapKind::Received, key, &file.cf);
        engine.ingest_external_file_cf(&file.cf, &[path.as_path()])?;
    }

    let mut wb = engine.write_batch();
    write_region_state(&mut wb, region, PeerState::Normal)?;
    engine.write(wb, true)?;

    mgr.delete_files(SnapKind::Received, key)?;
    Ok(())
}
