//! `PeerStorage`: a region peer's Raft log and state over the store's RocksDB,
//! implementing the Raft core's `Storage`.
//!
//! What lives where (DESIGN §3):
//! - raft CF: the log entries and `RaftLocalState` (hard state, last index
//!   and term), written by `persist` in one synced batch per `Ready`.
//! - default CF: `RaftApplyState` (applied index, truncated state) and
//!   `RegionLocalState`, written with the applied data in one batch; while
//!   a snapshot is being applied, also the region it replaces (the redo
//!   record, see `prepare_snapshot` and `snapshot.rs` for the map of
//!   snapshot logic).
//!
//! ```text
//!   truncated.index    first_index                        last_index
//!   ------|-----------------|---------------------------------|
//!         | compacted       | entries in the raft CF          |
//! ```
//!
//! Invariants (checked when loading and in debug builds after each change):
//! - `truncated.index <= applied_index <= commit <= last_index`.
//! - Entries `first_index ..= last_index` are in the raft CF, contiguous.
//! - A bootstrapped region starts at `RAFT_INIT_LOG_INDEX`/`TERM` (5, 5);
//!   a peer created by a message starts empty (index 0), uninitialized
//!   (its region has no peers) until a snapshot arrives.
//!
//! In-memory state changes only after the batch describing it is written:
//! `prepare_persist` builds the batch and the new state, the caller writes
//! the batch, then `commit_persist` installs the state. The log's tail is
//! also kept in memory (`entry_cache.rs`), so reads of entries just
//! persisted do not go back to RocksDB; debug builds check every cached
//! read against the raft CF.

use kvproto::eraftpb::{ConfState, Entry, HardState, Snapshot};
use kvproto::metapb;
use kvproto::raft_serverpb::{
    PeerState, RaftApplyState, RaftLocalState, RaftTruncatedState, RegionLocalState,
};
use prost::Message as _;
use raft::{RaftState, Ready, StorageError};
use slog::{Logger, debug};
use storage::keys::{self, RAFT_INIT_LOG_INDEX, RAFT_INIT_LOG_TERM};
use storage::{CF_DEFAULT, CF_RAFT, Engine, WriteBatch};

use crate::entry_cache::EntryCache;
use crate::errors::{Error, Result};
use crate::operation::session::SessionTable;
use crate::snapshot::SnapshotSource;

/// The persisted Raft state of one peer, plus the region it serves.
pub struct PeerStorage {
    engine: Engine,
    region: metapb::Region,
    raft_state: RaftLocalState,
    apply_state: RaftApplyState,
    /// The persisted log's tail, past the applied index.
    cache: EntryCache,
    /// Where snapshots of this region come from (the region worker).
    snapshots: Box<dyn SnapshotSource>,
    logger: Logger,
}

/// What `prepare_persist` decided; installed by `commit_persist` once written.
#[derive(Debug)]
pub struct PendingPersist {
    raft_state: RaftLocalState,
    /// The entries the batch writes, for the cache.
    entries: Vec<Entry>,
    /// Set when the `Ready` carried a snapshot: the states it installs.
    snapshot: Option<SnapshotInstall>,
}

/// The states a snapshot installs when persisted.
///
/// The region before the snapshot is not carried here: when its range
/// differs, it is persisted as the redo record (see `prepare_snapshot`) and
/// the apply reads it from there, on the peer and after a crash alike.
#[derive(Debug, Clone)]
pub struct SnapshotInstall {
    /// The region the snapshot describes.
    pub region: metapb::Region,
    /// The apply state after it (applied = truncated = snapshot index).
    pub apply_state: RaftApplyState,
    /// The snapshot itself, for the region worker to ingest.
    pub snapshot: Snapshot,
}

fn storage_error(e: impl std::fmt::Display) -> raft::Error {
    raft::Error::Store(StorageError::Other(e.to_string()))
}

impl PeerStorage {
    /// Loads (or initializes) the state of `region`'s peer on this store.
    pub fn new(
        engine: Engine,
        region: metapb::Region,
        snapshots: Box<dyn SnapshotSource>,
        logger: &Logger,
    ) -> Result<PeerStorage> {
        let region_id = region.id;
        let initialized = !region.peers.is_empty();
        let raft_state =
            match engine.get_msg_cf::<RaftLocalState>(CF_RAFT, &keys::raft_state_key(region_id))? {
                // An initialized region over a log-less raft state: a split
                // created the region while an uninitialized peer of it ran
                // here, and that peer wrote its hard state after the split's
                // (or the split kept it). Its vote stands; the log is the
                // split's initial one.
                Some(state) if initialized && state.last_index == 0 => {
                    split_raft_state(state.hard_state)
                }
                Some(state) => state,
                None if initialized => init_raft_state(),
                None => RaftLocalState::default(),
            };
        let apply_state = match engine
            .get_msg_cf::<RaftApplyState>(CF_DEFAULT, &keys::apply_state_key(region_id))?
        {
            Some(state) => state,
            None if initialized => init_apply_state(),
            None => RaftApplyState::default(),
        };
        let storage = PeerStorage {
            engine,
            region,
            raft_state,
            apply_state,
            cache: EntryCache::default(),
            snapshots,
            logger: logger.clone(),
        };
        storage.check_state()?;
        Ok(storage)
    }

    /// Checks the invariants of the module doc on loaded or changed state.
    pub fn check_state(&self) -> Result<()> {
        let truncated = self.truncated_index();
        let applied = self.apply_state.applied_index;
        let commit = self.hard_state().commit;
        let last = self.raft_state.last_index;
        if !(truncated <= applied && applied <= commit && commit <= last) {
            return Err(Error::CorruptState(format!(
                "region {}: want truncated {truncated} <= applied {applied} <= commit {commit} <= last {last}",
                self.region.id
            )));
        }
        Ok(())
    }

    /// The region this peer serves.
    pub fn region(&self) -> &metapb::Region {
        &self.region
    }

    /// Replaces the region (after a conf change or split is applied).
    pub fn set_region(&mut self, region: metapb::Region) {
        self.region = region;
    }

    /// Whether the peer has a region with members (created by bootstrap or
    /// a snapshot), as opposed to one created by a message and still empty.
    pub fn is_initialized(&self) -> bool {
        !self.region.peers.is_empty()
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The persisted hard state.
    pub fn hard_state(&self) -> HardState {
        self.raft_state.hard_state.unwrap_or_default()
    }

    /// The apply state as last written.
    pub fn apply_state(&self) -> &RaftApplyState {
        &self.apply_state
    }

    /// Records the apply state written with the latest applied batch.
    pub fn set_apply_state(&mut self, state: RaftApplyState) {
        self.apply_state = state;
        // Applied entries are read again only by a lagging follower's
        // append, which the raft CF serves.
        self.cache.compact_to(state.applied_index);
    }

    /// The applied index.
    pub fn applied_index(&self) -> u64 {
        self.apply_state.applied_index
    }

    /// The index of the last entry compacted away.
    pub fn truncated_index(&self) -> u64 {
        self.apply_state.truncated_state.map_or(0, |t| t.index)
    }

    /// The term of the last entry compacted away.
    pub fn truncated_term(&self) -> u64 {
        self.apply_state.truncated_state.map_or(0, |t| t.term)
    }

    /// The last index persisted.
    pub fn last_index(&self) -> u64 {
        self.raft_state.last_index
    }

    fn first_index_inner(&self) -> u64 {
        self.truncated_index() + 1
    }

    /// The entries `[low, high)`: the cached ones from the cache, the rest
    /// from the raft CF.
    fn read_entries(&self, low: u64, high: u64) -> std::result::Result<Vec<Entry>, raft::Error> {
        let cached_from = self
            .cache
            .first_index()
            .map_or(high, |first| first.clamp(low, high));
        let mut entries = if low < cached_from {
            self.read_stored_entries(low, cached_from)?
        } else {
            Vec::with_capacity((high - low) as usize)
        };
        self.cache.copy_from(cached_from, high, &mut entries);
        if entries.len() as u64 != high - low {
            // Not reached while the cache ends at the last index (its
            // invariant); the raft CF answers regardless.
            return self.read_stored_entries(low, high);
        }
        debug_assert_eq!(
            entries,
            self.read_stored_entries(low, high)?,
            "region {}: cached entries [{low}, {high}) differ from the raft CF",
            self.region.id
        );
        Ok(entries)
    }

    /// The entries `[low, high)` read from the raft CF.
    fn read_stored_entries(
        &self,
        low: u64,
        high: u64,
    ) -> std::result::Result<Vec<Entry>, raft::Error> {
        let region_id = self.region.id;
        let mut entries = Vec::with_capacity((high - low) as usize);
        let start = keys::raft_log_key(region_id, low);
        let end = keys::raft_log_key(region_id, high);
        let mut next = low;
        self.engine
            .scan_cf(CF_RAFT, &start, &end, |_, value| {
                let entry = Entry::decode(value).map_err(|e| storage::Error::Decode {
                    key: keys::raft_log_key(region_id, next).to_vec(),
                    source: e,
                })?;
                if entry.index != next {
                    // A hole: stop, reported below as a gap.
                    return Ok(false);
                }
                next += 1;
                entries.push(entry);
                Ok(true)
            })
            .map_err(storage_error)?;
        if next != high {
            return Err(storage_error(format!(
                "region {region_id}: raft log has a gap at {next} reading [{low}, {high})"
            )));
        }
        Ok(entries)
    }

    /// Whether persisting `ready` needs an fsync (etcd's `MustSync`): a
    /// snapshot, new entries, or a new term or vote must be on disk before
    /// anything that depends on them leaves; a commit index alone need not
    /// (a crash only forgets how far the log was known committed, which the
    /// leader tells again; apply writes that follow it share the WAL, so
    /// none survives a crash that loses it).
    pub fn must_sync(&self, ready: &Ready) -> bool {
        if ready.snapshot.is_some() || !ready.entries.is_empty() {
            return true;
        }
        let persisted = self.raft_state.hard_state.unwrap_or_default();
        ready
            .hard_state
            .is_some_and(|hs| hs.term != persisted.term || hs.vote != persisted.vote)
    }

    /// Builds the raft-CF batch that persists `ready` (its snapshot, entries
    /// and hard state), and the state it leads to. Nothing changes until
    /// `commit_persist`.
    pub fn prepare_persist(&self, ready: &Ready, wb: &mut WriteBatch) -> Result<PendingPersist> {
        let region_id = self.region.id;
        let mut raft_state = self.raft_state;
        let mut install = None;
        if let Some(snapshot) = &ready.snapshot {
            let snapshot_install = self.prepare_snapshot(snapshot, wb)?;
            raft_state.last_index = snapshot_install.apply_state.applied_index;
            raft_state.last_term = snapshot_install
                .apply_state
                .truncated_state
                .map_or(0, |t| t.term);
            install = Some(snapshot_install);
        }
        // Entries at or below the truncated index are compacted: what they
        // did is in the applied state, and writing them back would leave log
        // keys no GC range covers. Raft never hands them over, but TinyKV's
        // `Append` drops them too, and so do we.
        let truncated = install
            .as_ref()
            .map_or(self.truncated_index(), |i| i.apply_state.applied_index);
        let skip = ready
            .entries
            .iter()
            .take_while(|e| e.index <= truncated)
            .count();
        let entries = &ready.entries[skip..];
        if let (Some(first), Some(last)) = (entries.first(), entries.last()) {
            for entry in entries {
                wb.put_msg_cf(CF_RAFT, &keys::raft_log_key(region_id, entry.index), entry)?;
            }
            // Entries past the new end were overwritten by a new leader: delete them.
            let previous_last = raft_state.last_index;
            if previous_last > last.index {
                wb.delete_range_cf(
                    CF_RAFT,
                    &keys::raft_log_key(region_id, last.index + 1),
                    &keys::raft_log_key(region_id, previous_last + 1),
                )?;
            }
            debug_assert!(first.index <= previous_last + 1, "entries leave no gap");
            raft_state.last_index = last.index;
            raft_state.last_term = last.term;
        }
        if let Some(hs) = ready.hard_state {
            raft_state.hard_state = Some(hs);
        }
        if raft_state != self.raft_state {
            wb.put_msg_cf(CF_RAFT, &keys::raft_state_key(region_id), &raft_state)?;
        }
        Ok(PendingPersist {
            raft_state,
            entries: entries.to_vec(),
            snapshot: install,
        })
    }

    /// Installs the state `prepare_persist` computed, once its batch is written.
    /// Returns the snapshot to ingest, if the `Ready` carried one.
    pub fn commit_persist(&mut self, pending: PendingPersist) -> Option<SnapshotInstall> {
        self.raft_state = pending.raft_state;
        if let Some(install) = &pending.snapshot {
            self.region = install.region.clone();
            self.apply_state = install.apply_state;
            self.cache.clear();
        }
        self.cache.append(pending.entries);
        self.cache.compact_to(self.apply_state.applied_index);
        debug_assert!(self.check_state().is_ok(), "{:?}", self.check_state());
        pending.snapshot
    }

    /// Adds to `wb` what persisting `snapshot` means for the metadata: the
    /// old log goes, apply and region state jump to the snapshot, and the
    /// region is marked `Applying` until its data is ingested (a crash in
    /// between is finished on restart).
    ///
    /// The redo record goes in the same batch: if the peer was initialized
    /// with another key range (the region split or merged since), that
    /// previous region, whose data the apply must clear too, is written
    /// under `keys::snapshot_previous_region_key`; otherwise any record left
    /// from an earlier incarnation is deleted. `snap/apply.rs` reads it and
    /// deletes it when it marks the region `Normal`.
    fn prepare_snapshot(
        &self,
        snapshot: &Snapshot,
        wb: &mut WriteBatch,
    ) -> Result<SnapshotInstall> {
        let region_id = self.region.id;
        let meta = snapshot.metadata.clone().unwrap_or_default();
        let data = kvproto::raft_serverpb::RaftSnapshotData::decode(snapshot.data.as_slice())
            .map_err(|e| Error::InvalidSnapshot(format!("region {region_id}: {e}")))?;
        let region = data.region.ok_or_else(|| {
            Error::InvalidSnapshot(format!("region {region_id}: snapshot has no region"))
        })?;
        if region.id != region_id {
            return Err(Error::InvalidSnapshot(format!(
                "snapshot of region {} sent to region {region_id}",
                region.id
            )));
        }
        if self.is_initialized() {
            // Everything of the old log goes; entries after the snapshot are
            // written by this same Ready if any.
            wb.delete_range_cf(
                CF_RAFT,
                &keys::raft_log_key(region_id, 0),
                &keys::raft_log_key(region_id, self.raft_state.last_index.max(meta.index) + 1),
            )?;
        }
        let apply_state = RaftApplyState {
            applied_index: meta.index,
            truncated_state: Some(RaftTruncatedState {
                index: meta.index,
                term: meta.term,
            }),
            session_clock_ms: data.session_clock_ms,
        };
        wb.put_msg_cf(CF_DEFAULT, &keys::apply_state_key(region_id), &apply_state)?;
        // The sessions as of the snapshot's index, with the state that
        // names that index (`operation/session.rs`).
        SessionTable::replace_all(wb, region_id, &data.sessions)?;
        write_region_state(wb, &region, PeerState::Applying)?;
        let redo_key = keys::snapshot_previous_region_key(region_id);
        let previous = &self.region;
        if self.is_initialized()
            && (&previous.start_key, &previous.end_key) != (&region.start_key, &region.end_key)
        {
            wb.put_msg_cf(CF_DEFAULT, &redo_key, previous)?;
        } else {
            wb.delete_cf(CF_DEFAULT, &redo_key)?;
        }
        debug!(self.logger, "persisting snapshot"; "index" => meta.index, "term" => meta.term);
        Ok(SnapshotInstall {
            region,
            apply_state,
            snapshot: snapshot.clone(),
        })
    }

    /// Adds to `wb` the deletion of everything this peer keeps about its
    /// region besides the data: the raft log, the raft state, the apply state,
    /// the region state (TinyKV `PeerStorage.clearMeta`) and the client
    /// sessions. Destroying a
    /// peer writes a `Tombstone` region state after it in the same batch.
    pub fn clear_meta(&self, wb: &mut WriteBatch) -> Result<()> {
        let region_id = self.region.id;
        let (log_start, log_end) = keys::raft_log_range(region_id);
        wb.delete_range_cf(CF_RAFT, &log_start, &log_end)?;
        wb.delete_cf(CF_RAFT, &keys::raft_state_key(region_id))?;
        wb.delete_cf(CF_DEFAULT, &keys::apply_state_key(region_id))?;
        wb.delete_cf(CF_DEFAULT, &keys::region_state_key(region_id))?;
        let (sessions_start, sessions_end) = keys::client_session_range(region_id);
        wb.delete_range_cf(CF_DEFAULT, &sessions_start, &sessions_end)?;
        Ok(())
    }

    /// The region's conf state as Raft sees it.
    pub fn conf_state(&self) -> ConfState {
        conf_state_of(&self.region)
    }
}

/// Adds `region`'s local state (`state` and the region itself) to `wb`.
pub fn write_region_state(
    wb: &mut WriteBatch,
    region: &metapb::Region,
    state: PeerState,
) -> storage::Result<()> {
    wb.put_msg_cf(
        CF_DEFAULT,
        &keys::region_state_key(region.id),
        &RegionLocalState {
            state: state as i32,
            region: Some(region.clone()),
        },
    )
}

/// The member ids of `region`.
pub fn conf_state_of(region: &metapb::Region) -> ConfState {
    ConfState {
        nodes: region.peers.iter().map(|p| p.id).collect(),
    }
}

/// The raft state of a freshly bootstrapped region.
pub fn init_raft_state() -> RaftLocalState {
    RaftLocalState {
        hard_state: Some(HardState {
            term: RAFT_INIT_LOG_TERM,
            vote: 0,
            commit: RAFT_INIT_LOG_INDEX,
        }),
        last_index: RAFT_INIT_LOG_INDEX,
        last_term: RAFT_INIT_LOG_TERM,
    }
}

/// The raft state of a region a split creates on this store: the initial
/// one, except that a term and vote an uninitialized peer of the region
/// cast here before the split applied are kept (a vote must never be lost,
/// or this store could vote twice in one term).
pub fn split_raft_state(existing: Option<HardState>) -> RaftLocalState {
    let mut state = init_raft_state();
    if let (Some(existing), Some(hs)) = (existing, state.hard_state.as_mut())
        && existing.term > hs.term
    {
        hs.term = existing.term;
        hs.vote = existing.vote;
    }
    state
}

/// The apply state of a freshly bootstrapped region.
pub fn init_apply_state() -> RaftApplyState {
    RaftApplyState {
        applied_index: RAFT_INIT_LOG_INDEX,
        truncated_state: Some(RaftTruncatedState {
            index: RAFT_INIT_LOG_INDEX,
            term: RAFT_INIT_LOG_TERM,
        }),
        session_clock_ms: 0,
    }
}

impl raft::Storage for PeerStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState {
            hard_state: self.hard_state(),
            conf_state: self.conf_state(),
        })
    }

    fn entries(&self, low: u64, high: u64) -> raft::Result<Vec<Entry>> {
        if low <= self.truncated_index() {
            return Err(StorageError::Compacted.into());
        }
        if high > self.last_index() + 1 || low > high {
            return Err(StorageError::Unavailable.into());
        }
        if low == high {
            return Ok(Vec::new());
        }
        self.read_entries(low, high)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx == self.truncated_index() {
            return Ok(self.truncated_term());
        }
        if idx < self.truncated_index() {
            return Err(StorageError::Compacted.into());
        }
        if idx > self.last_index() {
            return Err(StorageError::Unavailable.into());
        }
        if idx == self.last_index() {
            return Ok(self.raft_state.last_term);
        }
        Ok(self.read_entries(idx, idx + 1)?[0].term)
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.first_index_inner())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.raft_state.last_index)
    }

    fn snapshot(&self) -> raft::Result<Snapshot> {
        self.snapshots
            .snapshot(&self.region, self.truncated_index())
    }
}
