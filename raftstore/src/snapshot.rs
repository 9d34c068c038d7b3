//! Where a peer's snapshots come from.
//!
//! Raft asks `PeerStorage::snapshot` when a follower needs entries that are
//! compacted away. Building a snapshot of a region means reading its whole
//! range, so it happens off the peer (in the region worker); until it is
//! ready the source answers `SnapshotTemporarilyUnavailable` and Raft asks
//! again later (on the next heartbeat response, or at once when the worker
//! nudges the peer).
//!
//! ```text
//!            snapshot() with nothing usable        worker done
//!   Relax ───────────────────────────────────▶ Generating ───────▶ Generated(s)
//!     ▲   ◀──────────── worker failed ─────────────┘                   │
//!     └──────────── s stale: generate again (→ Generating) ◀──────────┘
//! ```
//!
//! A generated snapshot is kept and handed out again (to another follower,
//! or after a failed send) while it is usable: not older than the truncated
//! index (else the follower would need compacted entries right after
//! applying it), not of an older membership than the region's, and its files
//! still there.

use std::sync::{Arc, Mutex, MutexGuard};

use kvproto::eraftpb::Snapshot;
use kvproto::metapb;
use slog::{Logger, debug, o};

use crate::snap::{SnapKey, SnapKind, SnapManager};
use crate::worker::region::{RegionTask, RegionWorker};

/// Produces snapshots of one region for its leader to send.
pub trait SnapshotSource: Send + Sync {
    /// A snapshot of `region` at or after `min_index` (the truncated
    /// index), or `SnapshotTemporarilyUnavailable` while one is being built.
    fn snapshot(&self, region: &metapb::Region, min_index: u64) -> raft::Result<Snapshot>;
}

/// The generation state of one peer's snapshots.
#[derive(Debug, Default)]
enum GenState {
    /// Nothing in progress, nothing kept.
    #[default]
    Relax,
    /// The region worker is building one.
    Generating,
    /// The last one built.
    Generated(Box<Snapshot>),
}

fn lock(state: &Mutex<GenState>) -> MutexGuard<'_, GenState> {
    // Every update is a single assignment: a panic elsewhere cannot leave
    // the state half-changed.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Hands a generation's result back to the source that asked for it.
/// Dropped without `finish` (the worker stopped), it reports a failure.
pub struct GenNotifier {
    state: Option<Arc<Mutex<GenState>>>,
}

impl GenNotifier {
    /// Records the snapshot built, or `None` if it failed (the next request
    /// tries again).
    pub fn finish(mut self, snapshot: Option<Snapshot>) {
        if let Some(state) = self.state.take() {
            *lock(&state) = match snapshot {
                Some(s) => GenState::Generated(Box::new(s)),
                None => GenState::Relax,
            };
        }
    }
}

impl Drop for GenNotifier {
    fn drop(&mut self) {
        if let Some(state) = self.state.take() {
            *lock(&state) = GenState::Relax;
        }
    }
}

/// The `SnapshotSource` of one region peer: generation in the region
/// worker, files in the store's snapshot manager.
pub struct RegionSnapshots {
    region_id: u64,
    /// Shared with the worker's notifier while generating. A `Mutex`: Raft
    /// reads it through `&self` from the peer, the worker writes it from its
    /// thread; each access is a short, non-blocking step.
    state: Arc<Mutex<GenState>>,
    worker: RegionWorker,
    mgr: SnapManager,
    logger: Logger,
}

impl RegionSnapshots {
    /// The source of `region_id`'s snapshots.
    pub fn new(
        region_id: u64,
        worker: RegionWorker,
        mgr: SnapManager,
        logger: &Logger,
    ) -> RegionSnapshots {
        RegionSnapshots {
            region_id,
            state: Arc::new(Mutex::new(GenState::Relax)),
            worker,
            mgr,
            logger: logger.new(o!("region_id" => region_id)),
        }
    }

    fn is_usable(&self, snapshot: &Snapshot, region: &metapb::Region, min_index: u64) -> bool {
        let Ok((key, data)) = SnapKey::from_snapshot(snapshot) else {
            return false;
        };
        let conf_ver =
            |r: Option<&metapb::Region>| r.and_then(|r| r.region_epoch).map_or(0, |e| e.conf_ver);
        let fresh =
            key.index >= min_index && conf_ver(data.region.as_ref()) >= conf_ver(Some(region));
        fresh && self.mgr.exists(SnapKind::Generated, &key)
    }
}

impl SnapshotSource for RegionSnapshots {
    fn snapshot(&self, region: &metapb::Region, min_index: u64) -> raft::Result<Snapshot> {
        let unavailable = || Err(raft::StorageError::SnapshotTemporarilyUnavailable.into());
        let mut state = lock(&self.state);
        match &*state {
            GenState::Generating => return unavailable(),
            GenState::Generated(s) if self.is_usable(s, region, min_index) => {
                return Ok((**s).clone());
            }
            GenState::Generated(_) | GenState::Relax => {}
        }
        debug!(self.logger, "requesting a snapshot"; "min_index" => min_index);
        *state = GenState::Generating;
        drop(state);
        let notifier = GenNotifier {
            state: Some(Arc::clone(&self.state)),
        };
        // A stopped worker drops the task, and the notifier resets the state.
        self.worker.schedule(RegionTask::Generate {
            region_id: self.region_id,
            notifier,
        });
        unavailable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_notifier_dropped_unfinished_resets_the_state() {
        let state = Arc::new(Mutex::new(GenState::Generating));
        drop(GenNotifier {
            state: Some(Arc::clone(&state)),
        });
        assert!(matches!(*lock(&state), GenState::Relax));

        *lock(&state) = GenState::Generating;
        GenNotifier {
            state: Some(Arc::clone(&state)),
        }
        .finish(Some(Snapshot::default()));
        assert!(matches!(*lock(&state), GenState::Generated(_)));
    }
}
