//! `StoreContext`: what every actor of one store shares.

use std::sync::Arc;

use router::Router;
use slog::Logger;
use storage::Engine;

use crate::config::Config;
use crate::scheduler::SchedulerReporter;
use crate::snapshot::{SnapshotSource, UnavailableSnapshots};
use crate::transport::Transport;
use crate::worker::raftlog_gc::RaftLogGcWorker;
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
    /// The store's logger (carries `store_id`).
    pub logger: Logger,
}

impl StoreContext {
    /// Where a new peer of this store gets its snapshots from.
    pub fn snapshot_source(&self) -> Box<dyn SnapshotSource> {
        Box::new(UnavailableSnapshots)
    }
}
