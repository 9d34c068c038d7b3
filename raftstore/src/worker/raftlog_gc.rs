//! The raft-log GC worker: deletes compacted log entries on its own thread,
//! off the peers' hot path.
//!
//! Deleting entries is safe once the truncated state that covers them is
//! written; the data they produced is then in the KV CFs. That data was
//! written unsynced, so the worker syncs the WAL first: otherwise a crash
//! could lose applied data whose log entries are already gone.

use crossbeam_channel::{Receiver, Sender};
use slog::{Logger, debug, error};
use storage::keys;
use storage::{CF_RAFT, Engine};

use crate::worker::WorkerThread;

/// Delete the entries `[start_index, end_index)` of a region's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcTask {
    /// The region.
    pub region_id: u64,
    /// First index to delete.
    pub start_index: u64,
    /// One past the last index to delete.
    pub end_index: u64,
}

/// A handle for scheduling GC tasks. Cheap to clone.
#[derive(Clone)]
pub struct RaftLogGcWorker {
    tx: Sender<GcTask>,
}

impl RaftLogGcWorker {
    /// Starts the worker thread; it ends when every handle is dropped, and
    /// the `WorkerThread` joins it.
    pub fn start(
        engine: Engine,
        logger: &Logger,
    ) -> std::io::Result<(RaftLogGcWorker, WorkerThread)> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let logger = logger.clone();
        let thread = WorkerThread::spawn("raftlog-gc", move || run(engine, rx, logger))?;
        Ok((RaftLogGcWorker { tx }, thread))
    }

    /// Queues a task. A stopped worker is not an error: the entries are
    /// deleted by the next compaction or when the region is destroyed.
    pub fn schedule(&self, task: GcTask) {
        let _ = self.tx.send(task);
    }
}

fn run(engine: Engine, rx: Receiver<GcTask>, logger: Logger) {
    while let Ok(task) = rx.recv() {
        if task.start_index >= task.end_index {
            continue;
        }
        let mut wb = engine.write_batch();
        let start = keys::raft_log_key(task.region_id, task.start_index);
        let end = keys::raft_log_key(task.region_id, task.end_index);
        let result = engine.sync_wal().and_then(|()| {
            wb.delete_range_cf(CF_RAFT, &start, &end)?;
            engine.write(wb, false)
        });
        match result {
            Ok(()) => debug!(logger, "raft log deleted"; "region_id" => task.region_id,
                "start" => task.start_index, "end" => task.end_index),
            Err(e) => {
                error!(logger, "raft log gc failed"; "region_id" => task.region_id, "err" => %e)
            }
        }
    }
}
