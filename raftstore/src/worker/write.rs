//! `RaftWriter`: the store's one thread that writes to RocksDB on behalf of
//! every peer, merging what arrives together into one fsync (group commit).
//!
//! Peers run on the async runtime and must never block it on disk I/O, so a
//! peer hands its batch to this thread and awaits the answer. Batches that
//! queue up while a write is in progress are written back to back, and only
//! the last of a group is synced when any of them asked for sync: RocksDB has
//! one WAL, so syncing it covers every earlier write. Each batch stays atomic.
//!
//! Invariant: a task is answered only after its batch is written, and after
//! the WAL is synced if it asked for that. A task that did not ask is
//! answered as soon as its own batch is written, not after the group's
//! fsync: an apply write never waits for another peer's raft-log sync.

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use slog::{Logger, error};
use storage::{Engine, WriteBatch};
use tokio::sync::oneshot;

use crate::errors::{Error, Result};
use crate::worker::WorkerThread;

/// The most batches written as one group.
const MAX_GROUP: usize = 256;

struct WriteTask {
    batch: WriteBatch,
    sync: bool,
    done: oneshot::Sender<Result<()>>,
}

/// A handle for submitting writes. Cheap to clone.
#[derive(Clone)]
pub struct RaftWriter {
    tx: Sender<WriteTask>,
}

impl RaftWriter {
    /// Starts the writer thread for `engine`. It ends when every handle is
    /// dropped; the `WorkerThread` joins it.
    pub fn start(engine: Engine, logger: &Logger) -> std::io::Result<(RaftWriter, WorkerThread)> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let logger = logger.clone();
        let thread = WorkerThread::spawn("raft-writer", move || run(engine, rx, logger))?;
        Ok((RaftWriter { tx }, thread))
    }

    /// Writes `batch` atomically; with `sync`, it is on disk when this returns.
    pub async fn write(&self, batch: WriteBatch, sync: bool) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let (done, rx) = oneshot::channel();
        self.tx
            .send(WriteTask { batch, sync, done })
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }
}

fn run(engine: Engine, rx: Receiver<WriteTask>, logger: Logger) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while let Ok(first) = rx.recv() {
        group.push(first);
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(task) => group.push(task),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        let sync = group.iter().any(|t| t.sync);
        let last = group.len() - 1;
        let mut outcome: std::result::Result<(), storage::Error> = Ok(());
        let mut waiting_for_sync = Vec::with_capacity(group.len());
        for (i, task) in group.drain(..).enumerate() {
            if outcome.is_ok() {
                outcome = engine.write(task.batch, sync && i == last);
                if let Err(e) = &outcome {
                    error!(logger, "raft write failed"; "err" => %e);
                }
            }
            if !task.sync && outcome.is_ok() {
                let _ = task.done.send(Ok(()));
            } else {
                waiting_for_sync.push(task.done);
            }
        }
        // The synced ones only now: the sync at the end covers the whole
        // group. A failure fails every task not answered yet, written or
        // not, since none of them is known to be durable.
        for done in waiting_for_sync {
            let answer = match &outcome {
                Ok(()) => Ok(()),
                Err(e) => Err(Error::Storage(e.clone())),
            };
            let _ = done.send(answer);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage::CF_DEFAULT;

    #[tokio::test]
    async fn writes_are_visible_and_grouped_writes_all_answer() {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = Engine::open(dir.path()).expect("open engine");
        let (writer, thread) = RaftWriter::start(
            engine.clone(),
            &slog::Logger::root(slog::Discard, slog::o!()),
        )
        .expect("start writer");
        let mut waits = Vec::new();
        for i in 0..50u8 {
            let mut wb = engine.write_batch();
            wb.put_cf(CF_DEFAULT, &[b'k', i], &[i]).expect("put");
            let writer = writer.clone();
            waits.push(tokio::spawn(
                async move { writer.write(wb, i % 2 == 0).await },
            ));
        }
        for w in waits {
            w.await.expect("task").expect("write");
        }
        for i in 0..50u8 {
            assert_eq!(
                engine.get_cf(CF_DEFAULT, &[b'k', i]).expect("get"),
                Some(vec![i])
            );
        }
        drop(writer);
        assert!(
            thread.join(std::time::Duration::from_secs(10)).await,
            "the writer ends once its last handle is dropped"
        );
    }
}
