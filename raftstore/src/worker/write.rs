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
//!
//! An unsynced write (an apply batch, a Ready that only moved the commit
//! index) is written by the caller itself when the writer thread is idle:
//! it costs a memtable insert and a buffered WAL append, far less than the
//! two thread hand-offs of a queued task, and it is on the path of every
//! answer. "Idle" is the write lock: the thread holds it while it writes a
//! group, the caller only tries it, so a caller never waits behind an
//! fsync here (RocksDB may still queue it behind a synced write of another
//! worker, which is rare and short). Under load the lock is mostly taken
//! and unsynced writes join the group as before. A caller has at most one
//! write outstanding, so its own writes stay in order either way.

use std::sync::{Arc, Mutex, TryLockError};

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
    engine: Engine,
    /// Held by the thread while it writes a group (module doc).
    writing: Arc<Mutex<()>>,
}

impl RaftWriter {
    /// Starts the writer thread for `engine`. It ends when every handle is
    /// dropped; the `WorkerThread` joins it.
    pub fn start(engine: Engine, logger: &Logger) -> std::io::Result<(RaftWriter, WorkerThread)> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let logger = logger.clone();
        let writing = Arc::new(Mutex::new(()));
        let thread = {
            let (engine, writing) = (engine.clone(), writing.clone());
            WorkerThread::spawn("raft-writer", move || run(engine, rx, &writing, logger))?
        };
        Ok((
            RaftWriter {
                tx,
                engine,
                writing,
            },
            thread,
        ))
    }

    /// Writes `batch` atomically; with `sync`, it is on disk when this returns.
    pub async fn write(&self, batch: WriteBatch, sync: bool) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        if !sync {
            let idle = match self.writing.try_lock() {
                Ok(guard) => Some(guard),
                // A panic while writing poisons nothing the lock guards.
                Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
                Err(TryLockError::WouldBlock) => None,
            };
            if let Some(_guard) = idle {
                return self.engine.write(batch, false).map_err(Error::Storage);
            }
        }
        let (done, rx) = oneshot::channel();
        self.tx
            .send(WriteTask { batch, sync, done })
            .map_err(|_| Error::Stopped)?;
        rx.await.map_err(|_| Error::Stopped)?
    }
}

fn run(engine: Engine, rx: Receiver<WriteTask>, writing: &Mutex<()>, logger: Logger) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while let Ok(first) = rx.recv() {
        let _writing = writing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;
    use storage::CF_DEFAULT;

    fn writer() -> (tempfile::TempDir, Engine, RaftWriter, WorkerThread) {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = Engine::open(dir.path()).expect("open engine");
        let (writer, thread) = RaftWriter::start(
            engine.clone(),
            &slog::Logger::root(slog::Discard, slog::o!()),
        )
        .expect("start writer");
        (dir, engine, writer, thread)
    }

    fn one_put(engine: &Engine, key: &[u8]) -> WriteBatch {
        let mut wb = engine.write_batch();
        wb.put_cf(CF_DEFAULT, key, b"v").expect("put");
        wb
    }

    /// An unsynced write to an idle writer is done by the caller: it is
    /// finished at its first poll, with no thread to wait for.
    #[test]
    fn an_unsynced_write_to_an_idle_writer_is_written_inline() {
        let (_dir, engine, writer, _thread) = writer();
        let mut cx = Context::from_waker(Waker::noop());
        let write = pin!(writer.write(one_put(&engine, b"a"), false));
        assert!(matches!(write.poll(&mut cx), Poll::Ready(Ok(()))));
        assert_eq!(
            engine.get_cf(CF_DEFAULT, b"a").expect("get"),
            Some(b"v".to_vec())
        );
    }

    /// While the thread writes a group, an unsynced write queues behind it
    /// instead of writing beside it; it is answered once the group is done.
    #[tokio::test]
    async fn an_unsynced_write_to_a_busy_writer_joins_the_queue() {
        let (_dir, engine, writer, _thread) = writer();
        let busy = writer.writing.lock().expect("not poisoned");
        let mut write = Box::pin(writer.write(one_put(&engine, b"a"), false));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(write.as_mut().poll(&mut cx).is_pending());
        assert_eq!(engine.get_cf(CF_DEFAULT, b"a").expect("get"), None);
        drop(busy);
        write.await.expect("write");
        assert_eq!(
            engine.get_cf(CF_DEFAULT, b"a").expect("get"),
            Some(b"v".to_vec())
        );
    }

    #[tokio::test]
    async fn writes_are_visible_and_grouped_writes_all_answer() {
        let (_dir, engine, writer, thread) = writer();
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
