//! The cost of one durable write on the bench's disk, without Raft: what
//! the replicated figures are read against.
//!
//! - `append + fdatasync`: one thread appends `value_size` bytes to a file
//!   and calls `fdatasync` (`File::sync_data`), as a WAL does.
//! - `RocksDB put, sync`: one thread puts a fresh key into an engine opened
//!   like a store's, `sync = true` — the primitive under every raft-log
//!   write of the store.
//!
//! - `RocksDB put, sync, N at once`: N engines opened like stores', each
//!   written by its own thread with a synced put, all N starting together,
//!   round after round; a round's latency is the time until a majority of
//!   the N writes is durable. That is the least a raft commit of one entry
//!   waits for when N stores share this disk (as the in-process cluster's
//!   do), before any message, wake-up or apply: it shows how much of a
//!   replicated put's latency is the disk alone. It is reported beside the
//!   one-writer figures, never instead of them.
//!
//! All run one write (or one round) at a time, so their rate is 1 / fsync
//! latency; group commit in the store can beat it only by covering many
//! writes per fsync.

use std::io::Write as _;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use storage::{CF_DEFAULT, Engine};

use super::{BenchError, Latencies};
use crate::rng::SplitMix64;

/// One baseline's figures.
#[derive(Debug, Clone)]
pub struct BaselineReport {
    /// What was measured.
    pub what: &'static str,
    /// The time it ran.
    pub elapsed: Duration,
    /// Latency of every write.
    pub latencies: Latencies,
}

impl BaselineReport {
    /// Writes per second.
    pub fn ops_per_sec(&self) -> f64 {
        self.latencies.len() as f64 / self.elapsed.as_secs_f64()
    }
}

/// Appends `value_size` bytes and `fdatasync`s, repeatedly, for `duration`,
/// in a file under `dir` that is removed afterwards.
pub fn fdatasync(
    dir: &Path,
    value_size: usize,
    duration: Duration,
) -> Result<BaselineReport, BenchError> {
    let io = |what: &'static str| move |source| BenchError::Io { what, source };
    let tmp = temp_dir(dir, "tinykv-bench-fsync-")?;
    let mut file =
        std::fs::File::create(tmp.path().join("wal")).map_err(io("create the baseline file"))?;
    let mut rng = SplitMix64::new(1);
    let mut buf = vec![0u8; value_size];
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < duration {
        rng.fill(&mut buf);
        let t = Instant::now();
        file.write_all(&buf)
            .map_err(io("append to the baseline file"))?;
        file.sync_data()
            .map_err(io("fdatasync the baseline file"))?;
        samples.push(t.elapsed());
    }
    Ok(BaselineReport {
        what: "append + fdatasync",
        elapsed: start.elapsed(),
        latencies: Latencies::from_unsorted(samples),
    })
}

/// Puts fresh keys with `sync = true` into a new engine under `dir`, one at
/// a time, for `duration`.
pub fn rocksdb_sync_put(
    dir: &Path,
    value_size: usize,
    duration: Duration,
) -> Result<BaselineReport, BenchError> {
    let tmp = temp_dir(dir, "tinykv-bench-rocksdb-")?;
    let engine = Engine::open(tmp.path())?;
    let mut rng = SplitMix64::new(2);
    let mut value = vec![0u8; value_size];
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < duration {
        samples.push(timed_sync_put(&engine, &mut rng, &mut value)?);
    }
    Ok(BaselineReport {
        what: "RocksDB put, sync=true",
        elapsed: start.elapsed(),
        latencies: Latencies::from_unsorted(samples),
    })
}

/// Runs rounds of `writers` synced puts at once, one per engine and thread,
/// each engine opened like a store's under `dir`, for `duration`; a
/// round's latency is the [`majority`]-th fastest of its writes.
pub fn rocksdb_quorum_sync_put(
    dir: &Path,
    value_size: usize,
    duration: Duration,
    writers: usize,
) -> Result<BaselineReport, BenchError> {
    let writers = writers.max(1);
    let tmp = temp_dir(dir, "tinykv-bench-quorum-")?;
    let engines = (0..writers)
        .map(|i| Engine::open(tmp.path().join(format!("engine-{i}"))))
        .collect::<Result<Vec<_>, _>>()?;
    std::thread::scope(|scope| {
        let (done_tx, done_rx) = mpsc::channel::<Result<Duration, storage::Error>>();
        // One "write now" channel per writer; dropping the senders (on
        // return, or early on an error) ends every writer's loop.
        let mut go = Vec::with_capacity(writers);
        for (i, engine) in engines.iter().enumerate() {
            let (go_tx, go_rx) = mpsc::channel::<()>();
            let done_tx = done_tx.clone();
            std::thread::Builder::new()
                .name(format!("quorum-writer-{i}"))
                .spawn_scoped(scope, move || {
                    let mut rng = SplitMix64::new(3 + i as u64);
                    let mut value = vec![0u8; value_size];
                    while go_rx.recv().is_ok() {
                        let written = timed_sync_put(engine, &mut rng, &mut value);
                        if done_tx.send(written).is_err() {
                            return;
                        }
                    }
                })
                .map_err(|source| BenchError::Io {
                    what: "spawn a quorum baseline writer",
                    source,
                })?;
            go.push(go_tx);
        }
        // Only the writers hold senders now, so a writer that is gone shows
        // as a closed channel, not a hang.
        drop(done_tx);
        let mut samples = Vec::new();
        let mut round = Vec::with_capacity(writers);
        let began = Instant::now();
        while began.elapsed() < duration {
            for tx in &go {
                tx.send(()).map_err(|_| writer_gone())?;
            }
            round.clear();
            for _ in 0..writers {
                round.push(done_rx.recv().map_err(|_| writer_gone())??);
            }
            round.sort_unstable();
            samples.push(round[majority(writers) - 1]);
        }
        Ok(BaselineReport {
            what: "RocksDB put, sync, N at once",
            elapsed: began.elapsed(),
            latencies: Latencies::from_unsorted(samples),
        })
    })
}

/// Puts a fresh key (from `rng`) with a fresh `value` into `engine`,
/// `sync = true`, and returns how long the write took (the key and value
/// are made before the clock starts).
fn timed_sync_put(
    engine: &Engine,
    rng: &mut SplitMix64,
    value: &mut [u8],
) -> Result<Duration, storage::Error> {
    let key = format!("k{:016x}", rng.next_u64());
    rng.fill(value);
    let t = Instant::now();
    let mut wb = engine.write_batch();
    wb.put_cf(CF_DEFAULT, key.as_bytes(), value)?;
    engine.write(wb, true)?;
    Ok(t.elapsed())
}

/// A fresh directory under `dir` for one baseline's files, removed when
/// the returned handle drops.
fn temp_dir(dir: &Path, prefix: &str) -> Result<tempfile::TempDir, BenchError> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in(dir)
        .map_err(|source| BenchError::Io {
            what: "create a baseline's temp dir",
            source,
        })
}

/// How many of `n` voters make a quorum.
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// A writer thread ended before the run did, which only a panic in it can
/// cause (its errors are sent back as results).
fn writer_gone() -> BenchError {
    BenchError::Io {
        what: "run the quorum baseline",
        source: std::io::Error::other("a writer thread ended early"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_majority_is_more_than_half() {
        let majorities: Vec<usize> = (1..=6).map(majority).collect();
        assert_eq!(majorities, [1, 2, 2, 3, 3, 4]);
    }

    #[test]
    fn the_quorum_baseline_times_rounds_and_leaves_no_files() {
        let dir = tempfile::tempdir().expect("temp dir");
        let report = rocksdb_quorum_sync_put(dir.path(), 100, Duration::from_millis(200), 3)
            .expect("three engines on a temp dir can be written");
        assert!(!report.latencies.is_empty(), "at least one round ran");
        assert!(report.elapsed >= Duration::from_millis(200));
        let left: Vec<_> = std::fs::read_dir(dir.path()).expect("readable").collect();
        assert!(left.is_empty(), "the engines' dir is removed: {left:?}");
    }
}
