//! The raft-log GC worker: deletes compacted log entries on its own thread,
//! off the peers' hot path.
//!
//! Deleting entries is safe once the truncated state that covers them is
//! written; the data they produced is then in the KV CFs. That data was
//! written unsynced, so the worker syncs the WAL first: otherwise a crash
//! could lose applied data whose log entries are already gone.
//!
//! Tasks queued together (every peer of a store after a restart, many
//! regions compacting at once) share one WAL sync and one write batch.

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

/// The most tasks deleted under one WAL sync.
const MAX_TASKS_PER_SYNC: usize = 256;

fn run(engine: Engine, rx: Receiver<GcTask>, logger: Logger) {
    while let Ok(first) = rx.recv() {
        let mut tasks = vec![first];
        tasks.extend(rx.try_iter().take(MAX_TASKS_PER_SYNC - 1));
        match delete_entries(&engine, &tasks) {
            Ok(()) => {
                for task in &tasks {
                    debug!(logger, "raft log deleted"; "region_id" => task.region_id,
                        "start" => task.start_index, "end" => task.end_index);
                }
            }
            Err(e) => error!(logger, "raft log gc failed"; "regions" => ?tasks.iter()
                .map(|t| t.region_id).collect::<Vec<_>>(), "err" => %e),
        }
    }
}

/// Syncs the WAL once, then deletes every task's entries in one batch.
fn delete_entries(engine: &Engine, tasks: &[GcTask]) -> storage::Result<()> {
    let mut wb = engine.write_batch();
    for task in tasks.iter().filter(|t| t.start_index < t.end_index) {
        let start = keys::raft_log_key(task.region_id, task.start_index);
        let end = keys::raft_log_key(task.region_id, task.end_index);
        wb.delete_range_cf(CF_RAFT, &start, &end)?;
    }
    if wb.is_empty() {
        return Ok(());
    }
    engine.sync_wal()?;
    engine.write(wb, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tasks of many regions, one of them empty, go in one pass: each
    /// deletes exactly its range, and other entries stay.
    #[test]
    fn tasks_queued_together_are_deleted_in_one_batch() {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = Engine::open(dir.path()).expect("open engine");
        let mut wb = engine.write_batch();
        for region_id in 1..=3 {
            for index in 1..=10 {
                wb.put_cf(CF_RAFT, &keys::raft_log_key(region_id, index), b"e")
                    .expect("put");
            }
        }
        engine.write(wb, true).expect("write");
        let task = |region_id, start_index, end_index| GcTask {
            region_id,
            start_index,
            end_index,
        };
        let tasks = [task(1, 1, 5), task(2, 3, 11), task(3, 7, 7)];
        delete_entries(&engine, &tasks).expect("delete");
        let kept = |region_id| -> Vec<u64> {
            (1..=10)
                .filter(|&i| {
                    engine
                        .get_cf(CF_RAFT, &keys::raft_log_key(region_id, i))
                        .expect("get")
                        .is_some()
                })
                .collect()
        };
        assert_eq!(kept(1), (5..=10).collect::<Vec<_>>());
        assert_eq!(kept(2), vec![1, 2]);
        assert_eq!(kept(3), (1..=10).collect::<Vec<_>>());
    }
}
