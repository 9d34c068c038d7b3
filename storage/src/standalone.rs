//! `StandaloneStorage`: [`Storage`] over one local [`Engine`], without Raft.
//!
//! User keys are stored as data keys ([`keys::data_key`]) in the data CFs;
//! requests' contexts are ignored (there is one region: all keys).
//!
//! Writes protocol:
//! 1. `write` checks the batch (data CFs only) on the caller's task; a bad
//!    batch fails there and never reaches the disk.
//! 2. It queues the batch to the writer thread and awaits the answer.
//! 3. The writer takes every batch queued so far (up to [`MAX_GROUP`]), puts
//!    them into one RocksDB write batch and writes it with fsync: one fsync
//!    per group (group commit), off the async runtime (DESIGN §2).
//! 4. It answers each batch of the group with the group's result.
//!
//! Invariants:
//! - A write resolved `Ok` is on disk. A batch is applied whole or not at
//!   all: groups are written as one RocksDB batch.
//! - Writes resolve in queue order, and a reader made after a write resolved
//!   sees it (the write is in the engine before its answer is sent).
//! - Dropping the storage stops the writer after it has written everything
//!   already queued; callers still waiting then get their answers.

use std::sync::mpsc;
use std::thread::JoinHandle;

use kvproto::kvrpcpb::Context;
use tokio::sync::oneshot;

use crate::engine::{Engine, check_data_cf};
use crate::errors::{Error, Result};
use crate::keys;
use crate::reader::RegionReader;
use crate::storage::{Modify, Storage};
use crate::write_batch::WriteBatch;

/// At most this many queued batches share one fsync, to bound a group's size.
pub const MAX_GROUP: usize = 256;

struct WriteTask {
    batch: Vec<Modify>,
    done: oneshot::Sender<Result<()>>,
}

/// A single-node [`Storage`]: one RocksDB, fsynced writes, snapshot reads.
pub struct StandaloneStorage {
    engine: Engine,
    // Invariant: `Some` until `drop`, which takes it first so the writer sees
    // the channel close, then joins `thread`.
    writer: Option<mpsc::Sender<WriteTask>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for StandaloneStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandaloneStorage")
            .field("engine", &self.engine)
            .finish()
    }
}

impl StandaloneStorage {
    /// Opens (or creates) the engine at `path` and starts the writer.
    pub fn open(path: impl AsRef<std::path::Path>) -> Result<StandaloneStorage> {
        StandaloneStorage::new(Engine::open(path)?)
    }

    /// A standalone storage over `engine`, with its writer thread started.
    pub fn new(engine: Engine) -> Result<StandaloneStorage> {
        let (tx, rx) = mpsc::channel();
        let writer_engine = engine.clone();
        let thread = std::thread::Builder::new()
            .name("standalone-writer".to_owned())
            .spawn(move || run_writer(&writer_engine, &rx))
            .map_err(|e| Error::Io {
                what: "start the writer thread",
                source: e.into(),
            })?;
        Ok(StandaloneStorage {
            engine,
            writer: Some(tx),
            thread: Some(thread),
        })
    }

    /// The engine underneath.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

impl Drop for StandaloneStorage {
    fn drop(&mut self) {
        drop(self.writer.take());
        if let Some(thread) = self.thread.take() {
            // The writer only fails by panicking inside RocksDB; there is
            // nothing left to clean up then, and `drop` must not panic.
            let _ = thread.join();
        }
    }
}

impl Storage for StandaloneStorage {
    type Reader = RegionReader;

    async fn write(&self, _ctx: &Context, batch: Vec<Modify>) -> Result<()> {
        for m in &batch {
            check_data_cf(m.cf())?;
        }
        if batch.is_empty() {
            return Ok(());
        }
        let (done, answer) = oneshot::channel();
        self.writer
            .as_ref()
            .ok_or(Error::Shutdown)?
            .send(WriteTask { batch, done })
            .map_err(|_| Error::Shutdown)?;
        answer.await.map_err(|_| Error::Shutdown)?
    }

    async fn reader(&self, _ctx: &Context) -> Result<RegionReader> {
        Ok(RegionReader::new(self.engine.snapshot(), b"", b""))
    }
}

fn run_writer(engine: &Engine, tasks: &mpsc::Receiver<WriteTask>) {
    while let Ok(first) = tasks.recv() {
        let mut group = vec![first];
        group.extend(tasks.try_iter().take(MAX_GROUP - 1));
        let result = write_group(engine, &group);
        for task in group {
            // A caller that stopped waiting still had its batch written.
            let _ = task.done.send(result.clone());
        }
    }
}

fn write_group(engine: &Engine, group: &[WriteTask]) -> Result<()> {
    let mut wb = engine.write_batch();
    for task in group {
        for m in &task.batch {
            add_modify(&mut wb, m)?;
        }
    }
    engine.write(wb, true)
}

fn add_modify(wb: &mut WriteBatch, m: &Modify) -> Result<()> {
    match m {
        Modify::Put { cf, key, value } => wb.put_cf(cf, &keys::data_key(key), value),
        Modify::Delete { cf, key } => wb.delete_cf(cf, &keys::data_key(key)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::engine::{CF_DEFAULT, CF_LOCK, CF_RAFT, CF_WRITE};

    fn put(cf: &str, key: &[u8], value: &[u8]) -> Modify {
        Modify::Put {
            cf: cf.to_owned(),
            key: key.to_vec(),
            value: value.to_vec(),
        }
    }

    fn delete(cf: &str, key: &[u8]) -> Modify {
        Modify::Delete {
            cf: cf.to_owned(),
            key: key.to_vec(),
        }
    }

    #[tokio::test]
    async fn test_write_then_read_user_keys() {
        let dir = tempfile::tempdir().unwrap();
        let s = StandaloneStorage::open(dir.path()).unwrap();
        let ctx = Context::default();
        s.write(
            &ctx,
            vec![
                put(CF_DEFAULT, b"a", b"1"),
                put(CF_LOCK, b"a", b"2"),
                put(CF_WRITE, b"b", b"3"),
            ],
        )
        .await
        .unwrap();
        s.write(&ctx, vec![delete(CF_LOCK, b"a")]).await.unwrap();

        let r = s.reader(&ctx).await.unwrap();
        assert_eq!(r.get_cf(CF_DEFAULT, b"a").unwrap(), Some(b"1".to_vec()));
        assert_eq!(r.get_cf(CF_LOCK, b"a").unwrap(), None);
        assert_eq!(r.get_cf(CF_WRITE, b"b").unwrap(), Some(b"3".to_vec()));
        // Stored under the data prefix.
        assert_eq!(
            s.engine().get_cf(CF_DEFAULT, b"za").unwrap(),
            Some(b"1".to_vec())
        );
        assert_eq!(s.engine().get_cf(CF_DEFAULT, b"a").unwrap(), None);
    }

    #[tokio::test]
    async fn test_bad_batch_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let s = StandaloneStorage::open(dir.path()).unwrap();
        let ctx = Context::default();
        for bad in [CF_RAFT, "nope", ""] {
            let err = s
                .write(
                    &ctx,
                    vec![put(CF_DEFAULT, b"a", b"1"), put(bad, b"b", b"2")],
                )
                .await;
            assert!(
                matches!(err, Err(Error::NotDataCf(_) | Error::UnknownCf(_))),
                "{err:?}"
            );
        }
        let r = s.reader(&ctx).await.unwrap();
        assert_eq!(r.get_cf(CF_DEFAULT, b"a").unwrap(), None);
        s.write(&ctx, vec![]).await.unwrap();
    }

    #[tokio::test]
    async fn test_writes_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context::default();
        {
            let s = StandaloneStorage::open(dir.path()).unwrap();
            s.write(&ctx, vec![put(CF_DEFAULT, b"k", b"v")])
                .await
                .unwrap();
        }
        let s = StandaloneStorage::open(dir.path()).unwrap();
        let r = s.reader(&ctx).await.unwrap();
        assert_eq!(r.get_cf(CF_DEFAULT, b"k").unwrap(), Some(b"v".to_vec()));
    }

    /// Many concurrent writers: every write resolves, each is visible once it
    /// resolved, and groups keep each batch whole.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn test_concurrent_writes_group_commit() {
        let dir = tempfile::tempdir().unwrap();
        let s = Arc::new(StandaloneStorage::open(dir.path()).unwrap());
        let mut tasks = vec![];
        for i in 0u32..64 {
            let s = Arc::clone(&s);
            tasks.push(tokio::spawn(async move {
                let ctx = Context::default();
                let key = i.to_be_bytes();
                s.write(
                    &ctx,
                    vec![put(CF_DEFAULT, &key, b"v"), put(CF_WRITE, &key, b"w")],
                )
                .await
                .unwrap();
                let r = s.reader(&ctx).await.unwrap();
                assert_eq!(r.get_cf(CF_DEFAULT, &key).unwrap(), Some(b"v".to_vec()));
                assert_eq!(r.get_cf(CF_WRITE, &key).unwrap(), Some(b"w".to_vec()));
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let r = s.reader(&Context::default()).await.unwrap();
        let mut it = r.iter_cf(CF_DEFAULT).unwrap();
        it.seek_to_first();
        let mut n = 0u32;
        while it.valid() {
            assert_eq!(it.key(), n.to_be_bytes());
            n += 1;
            it.next();
        }
        assert_eq!(n, 64);
    }

    #[test]
    fn test_storage_is_send_sync() {
        fn assert_storage<S: Storage>() {}
        assert_storage::<StandaloneStorage>();
    }
}
