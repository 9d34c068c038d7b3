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
//! A synced write may carry raft messages that report what it persists (a
//! follower's append acknowledgement, a vote): the thread sends them once
//! the fsync is done, before it answers the peer. Persist → send holds, and
//! the acknowledgement leaves without first waking the peer's actor, which
//! on an idle machine is a thread wake-up on the path of every write.
//! While this thread has a runtime to enter (the store's), it enters it, so
//! a transport may spawn work from here as it does from a peer.
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

use kvproto::raft_serverpb::RaftMessage;
use slog::{Logger, error};
use storage::{Engine, WriteBatch};
use tokio::sync::oneshot;

use crate::errors::{Error, Result};
use crate::transport::{Transport, unreachable_peer};
use crate::worker::WorkerThread;
use crate::worker::parking_queue::{Consumer, Producer, parking_queue};

/// The most batches written as one group.
const MAX_GROUP: usize = 256;

struct WriteTask {
    batch: WriteBatch,
    sync: bool,
    /// Sent once the batch is durable (only with `sync`).
    messages: Vec<RaftMessage>,
    /// Answered with the peers (ids) that `messages` found unreachable.
    done: oneshot::Sender<Result<Vec<u64>>>,
}

/// A handle for submitting writes. Cheap to clone.
#[derive(Clone)]
pub struct RaftWriter {
    tx: Producer<WriteTask>,
    engine: Engine,
    /// Held by the thread while it writes a group (module doc).
    writing: Arc<Mutex<()>>,
}

impl RaftWriter {
    /// Starts the writer thread for `engine`, sending through `transport`.
    /// It ends when every handle is dropped; the `WorkerThread` joins it.
    pub fn start(
        engine: Engine,
        transport: Arc<dyn Transport>,
        logger: &Logger,
    ) -> std::io::Result<(RaftWriter, WorkerThread)> {
        let (tx, rx) = parking_queue();
        let logger = logger.clone();
        let writing = Arc::new(Mutex::new(()));
        let runtime = tokio::runtime::Handle::try_current().ok();
        let thread = {
            let (engine, writing) = (engine.clone(), writing.clone());
            WorkerThread::spawn("raft-writer", move || {
                let _runtime = runtime.as_ref().map(tokio::runtime::Handle::enter);
                run(engine, rx, &writing, transport.as_ref(), logger)
            })?
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
        self.queue(batch, sync, Vec::new()).await.map(drop)
    }

    /// Writes `batch` synced, then sends `messages`, which report what it
    /// persists (module doc). Returns the peers (ids) found unreachable; a
    /// failed write sends nothing.
    pub async fn write_synced_then_send(
        &self,
        batch: WriteBatch,
        messages: Vec<RaftMessage>,
    ) -> Result<Vec<u64>> {
        self.queue(batch, true, messages).await
    }

    async fn queue(
        &self,
        batch: WriteBatch,
        sync: bool,
        messages: Vec<RaftMessage>,
    ) -> Result<Vec<u64>> {
        let (done, rx) = oneshot::channel();
        self.tx.push(WriteTask {
            batch,
            sync,
            messages,
            done,
        });
        // A task still queued when the thread ends is dropped unanswered.
        rx.await.map_err(|_| Error::Stopped)?
    }
}

fn run(
    engine: Engine,
    rx: Consumer<WriteTask>,
    writing: &Mutex<()>,
    transport: &dyn Transport,
    logger: Logger,
) {
    let mut group = Vec::with_capacity(MAX_GROUP);
    while rx.pop_group(MAX_GROUP, &mut group) {
        let _writing = writing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
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
                let _ = task.done.send(Ok(Vec::new()));
            } else {
                waiting_for_sync.push((task.messages, task.done));
            }
        }
        // The synced ones only now: the sync at the end covers the whole
        // group. A failure fails every task not answered yet, written or
        // not, since none of them is known to be durable.
        for (messages, done) in waiting_for_sync {
            let answer = match &outcome {
                Ok(()) => Ok(send_all(transport, messages, &logger)),
                Err(e) => Err(Error::Storage(e.clone())),
            };
            let _ = done.send(answer);
        }
    }
}

/// Sends `messages`; returns the peers (ids) whose store is unreachable.
fn send_all(transport: &dyn Transport, messages: Vec<RaftMessage>, logger: &Logger) -> Vec<u64> {
    messages
        .into_iter()
        .filter_map(|msg| {
            let to = msg.to_peer.map_or(0, |p| p.id);
            unreachable_peer(transport.send(msg), to, logger)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    use super::*;
    use crate::transport::TransportError;
    use storage::CF_DEFAULT;

    /// Records what is sent, and whether key `a` was readable by then;
    /// store 9 is unreachable.
    struct Recorder {
        engine: Engine,
        sent: Mutex<Vec<(u64, bool)>>,
    }

    impl Transport for Recorder {
        fn send(&self, msg: RaftMessage) -> std::result::Result<(), TransportError> {
            let to = msg.to_peer.expect("addressed");
            let written = self.engine.get_cf(CF_DEFAULT, b"a").expect("get").is_some();
            self.sent
                .lock()
                .expect("not poisoned")
                .push((to.id, written));
            if to.store_id == 9 {
                return Err(TransportError::Unreachable(9));
            }
            Ok(())
        }

        fn send_snapshot(&self, _: RaftMessage) -> std::result::Result<(), TransportError> {
            Err(TransportError::Dropped)
        }
    }

    fn writer_with_recorder() -> (
        tempfile::TempDir,
        Engine,
        RaftWriter,
        WorkerThread,
        Arc<Recorder>,
    ) {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = Engine::open(dir.path()).expect("open engine");
        let recorder = Arc::new(Recorder {
            engine: engine.clone(),
            sent: Mutex::new(Vec::new()),
        });
        let (writer, thread) = RaftWriter::start(
            engine.clone(),
            recorder.clone(),
            &slog::Logger::root(slog::Discard, slog::o!()),
        )
        .expect("start writer");
        (dir, engine, writer, thread, recorder)
    }

    fn writer() -> (tempfile::TempDir, Engine, RaftWriter, WorkerThread) {
        let (dir, engine, writer, thread, _) = writer_with_recorder();
        (dir, engine, writer, thread)
    }

    fn message_to(peer_id: u64, store_id: u64) -> RaftMessage {
        RaftMessage {
            to_peer: Some(kvproto::metapb::Peer {
                id: peer_id,
                store_id,
            }),
            ..Default::default()
        }
    }

    /// Messages carried by a synced write leave after its batch is written,
    /// in order, and the unreachable ones come back to the caller.
    #[tokio::test]
    async fn messages_of_a_synced_write_leave_once_it_is_written() {
        let (_dir, engine, writer, _thread, recorder) = writer_with_recorder();
        let unreachable = writer
            .write_synced_then_send(
                one_put(&engine, b"a"),
                vec![message_to(2, 2), message_to(3, 9), message_to(4, 4)],
            )
            .await
            .expect("write");
        assert_eq!(unreachable, vec![3]);
        assert_eq!(
            *recorder.sent.lock().expect("not poisoned"),
            vec![(2, true), (3, true), (4, true)]
        );
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
