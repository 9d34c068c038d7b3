//! `StoreContext`: what every actor of one store shares.
//!
//! Every actor of the store holds one `Arc` of it, and nothing else does
//! once the store is stopping: its last handle going is how `Store::stop`
//! learns that every actor's state is gone (`_released`).

use std::sync::{Arc, Mutex, MutexGuard};

use router::Router;
use slog::Logger;
use storage::Engine;

use crate::config::Config;
use crate::scheduler::SchedulerReporter;
use crate::snap::SnapManager;
use crate::snapshot::SnapshotSource;
use crate::store_meta::StoreMeta;
use crate::transport::Transport;
use crate::worker::raftlog_gc::RaftLogGcWorker;
use crate::worker::region::{RegionSnapshots, RegionWorker};
use crate::worker::split_check::SplitCheckWorker;
use crate::worker::write::RaftWriter;

/// The shared, read-only environment of a store's actors.
pub struct StoreContext {
    /// This store's id.
    pub store_id: u64,
    /// Tunables.
    pub cfg: Config,
    /// The store's RocksDB.
    pub engine: Engine,
    /// Delivers messages to this store's actors.
    pub router: Router,
    /// Delivers raft messages to other stores.
    pub transport: Arc<dyn Transport>,
    /// Writes batches off the async runtime, with group commit.
    pub writer: RaftWriter,
    /// Where region and store heartbeats go.
    pub scheduler: Arc<dyn SchedulerReporter>,
    /// Deletes compacted raft log entries.
    pub raftlog_gc: RaftLogGcWorker,
    /// Generates, applies and cleans up region snapshots.
    pub region_worker: RegionWorker,
    /// Measures regions and finds their split keys.
    pub split_checker: SplitCheckWorker,
    /// The store's snapshot files.
    pub snap_mgr: SnapManager,
    /// The ranges of the store's initialized regions. A `Mutex`: peers
    /// read and update it from their actors; never held across an await.
    /// Whoever creates a peer (the store actor for a raft message, a peer
    /// applying a split) holds it from checking that the region has no
    /// peer to registering the new one, so two creators never race.
    pub store_meta: Mutex<StoreMeta>,
    /// The store's logger (carries `store_id`).
    pub logger: Logger,
    /// Never sent on: dropped with the context, which closes the channel
    /// `Store::stop` waits on.
    pub(crate) _released: tokio::sync::mpsc::Sender<()>,
    /// Failures tests inject.
    #[cfg(test)]
    pub(crate) test_hooks: TestHooks,
}

/// Failures a test injects into a store's actors. No network input reaches
/// these: they exist only in test builds.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct TestHooks {
    /// Regions whose peer panics on the next message it handles. A `Mutex`:
    /// set by the test, taken by a peer actor; never held across an await.
    panic_regions: Mutex<std::collections::HashSet<u64>>,
}

#[cfg(test)]
impl TestHooks {
    /// Makes region `region_id`'s peer panic on its next message.
    pub(crate) fn panic_next(&self, region_id: u64) {
        self.panic_regions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(region_id);
    }

    /// Whether the peer of `region_id` must panic now (once).
    pub(crate) fn take_panic(&self, region_id: u64) -> bool {
        self.panic_regions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&region_id)
    }
}

impl StoreContext {
    /// Where a new peer of `region_id` gets its snapshots from.
    pub fn snapshot_source(&self, region_id: u64) -> Box<dyn SnapshotSource> {
        Box::new(RegionSnapshots::new(
            region_id,
            self.region_worker.clone(),
            self.snap_mgr.clone(),
            &self.logger,
        ))
    }

    /// The store meta, locked.
    pub fn store_meta(&self) -> MutexGuard<'_, StoreMeta> {
        // Single-step updates: a panic elsewhere leaves it consistent.
        self.store_meta.lock().unwrap_or_else(|e| e.into_inner())
    }
}
