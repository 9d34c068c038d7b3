//! Generating a snapshot of a region.
//!
//! Everything comes from one RocksDB snapshot, so the index, the term, the
//! region and the data agree: the apply state and region state are written
//! in the same batch as the data they describe (`operation/apply.rs`).
//! 1. Read `RegionLocalState` (must be `Normal`) and `RaftApplyState`. The
//!    snapshot's index is the applied index; its term is the truncated
//!    term if nothing was applied since the last compaction, else the term
//!    of the log entry at that index (persisted before it was applied).
//! 2. Write one SST per data CF of the region's key range; an empty CF gets
//!    no file and size 0.
//! 3. The region's client sessions and session clock go into the
//!    snapshot's data (`RaftSnapshotData.sessions`), not into a file.
//! 4. Record sizes, CRC32s and CF checksums (the CRC32 of the CF's name and
//!    the file, tying the file to the CF it was built for) in the meta file,
//!    completing the snapshot.

use std::fs;

use kvproto::eraftpb::{Entry, Snapshot, SnapshotMetadata};
use kvproto::metapb;
use kvproto::raft_serverpb::{
    PeerState, RaftApplyState, RaftSnapshotData, RegionLocalState, SnapshotCfFile, SnapshotMeta,
};
use prost::Message as _;
use storage::{CF_DEFAULT, CF_RAFT, DATA_CFS, keys, write_sst};

use super::{SnapKey, SnapKind, SnapManager, file_sums, io_error, remove_file_if_exists};
use crate::errors::{Error, Result};
use crate::operation::session::SessionTable;
use crate::peer_storage::conf_state_of;

/// Generates a snapshot of `region_id` from `snap`, writing its files into
/// `mgr`, and returns the raft snapshot describing it. Blocking.
pub fn generate_snapshot(
    mgr: &SnapManager,
    snap: &storage::Snapshot,
    region_id: u64,
) -> Result<Snapshot> {
    let region_state = snap
        .get_msg_cf::<RegionLocalState>(CF_DEFAULT, &keys::region_state_key(region_id))?
        .ok_or(Error::RegionNotFound(region_id))?;
    if region_state.state() != PeerState::Normal {
        return Err(Error::InvalidSnapshot(format!(
            "region {region_id} is {:?}, cannot snapshot it",
            region_state.state()
        )));
    }
    let region = region_state.region.unwrap_or_default();
    let apply_state = snap
        .get_msg_cf::<RaftApplyState>(CF_DEFAULT, &keys::apply_state_key(region_id))?
        .ok_or_else(|| Error::CorruptState(format!("region {region_id} has no apply state")))?;
    let index = apply_state.applied_index;
    let truncated = apply_state.truncated_state.unwrap_or_default();
    let term = if index == truncated.index {
        truncated.term
    } else {
        snap.get_msg_cf::<Entry>(CF_RAFT, &keys::raft_log_key(region_id, index))?
            .ok_or_else(|| {
                Error::CorruptState(format!(
                    "region {region_id}: applied entry {index} is not in the raft log"
                ))
            })?
            .term
    };
    let key = SnapKey {
        region_id,
        term,
        index,
    };
    let _guard = mgr.register(SnapKind::Generated, key);
    let mut data = build_files(mgr, &key, snap, &region)?;
    data.sessions = SessionTable::states_at(snap, region_id)?;
    data.session_clock_ms = apply_state.session_clock_ms;
    mgr.save_meta(SnapKind::Generated, &key, &data, false)?;
    Ok(Snapshot {
        data: data.encode_to_vec(),
        metadata: Some(SnapshotMetadata {
            conf_state: Some(conf_state_of(&region)),
            index,
            term,
        }),
    })
}

fn build_files(
    mgr: &SnapManager,
    key: &SnapKey,
    snap: &storage::Snapshot,
    region: &metapb::Region,
) -> Result<RaftSnapshotData> {
    let start = keys::data_key(&region.start_key);
    let end = keys::data_end_key(&region.end_key);
    let mut cf_files = Vec::with_capacity(DATA_CFS.len());
    for cf in DATA_CFS {
        let path = mgr.cf_path(SnapKind::Generated, key, cf);
        let tmp = mgr.tmp_path(&path);
        let entries = write_sst(&tmp, |w| {
            let mut it = snap.iterator_cf(cf, &start, &end)?;
            it.seek_to_first();
            while it.valid() {
                w.put(it.key(), it.value())?;
                it.next();
            }
            it.status()
        });
        let entries = match entries {
            Ok(n) => n,
            Err(e) => {
                remove_file_if_exists(&tmp)?;
                return Err(e.into());
            }
        };
        if entries == 0 {
            remove_file_if_exists(&path)?;
            cf_files.push(SnapshotCfFile {
                cf: cf.to_owned(),
                size: 0,
                checksum: 0,
                cf_checksum: 0,
            });
            continue;
        }
        fs::rename(&tmp, &path).map_err(io_error(format!("rename {}", tmp.display())))?;
        // Summed as built for `cf`: the receiver checks the file against the
        // CF it ingests it into.
        let sums = file_sums(&path, cf)?;
        cf_files.push(SnapshotCfFile {
            cf: cf.to_owned(),
            size: sums.size,
            checksum: sums.checksum,
            cf_checksum: sums.cf_checksum,
        });
    }
    Ok(RaftSnapshotData {
        region: Some(region.clone()),
        file_size: cf_files.iter().map(|f| f.size).sum(),
        data: Vec::new(),
        meta: Some(SnapshotMeta { cf_files }),
        sessions: Vec::new(),
        session_clock_ms: 0,
    })
}
