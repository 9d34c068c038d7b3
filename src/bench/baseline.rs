//! The cost of one durable write on the bench's disk, without Raft: what
//! the replicated figures are read against.
//!
//! - `append + fdatasync`: one thread appends `value_size` bytes to a file
//!   and calls `fdatasync` (`File::sync_data`), as a WAL does.
//! - `RocksDB put, sync`: one thread puts a fresh key into an engine opened
//!   like a store's, `sync = true` — the primitive under every raft-log
//!   write of the store.
//!
//! Both run one write at a time, so their rate is 1 / fsync latency; group
//! commit in the store can beat it only by covering many writes per fsync.

use std::io::Write as _;
use std::path::Path;
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
    let tmp = tempfile::Builder::new()
        .prefix("tinykv-bench-fsync-")
        .tempdir_in(dir)
        .map_err(io("create the baseline's temp dir"))?;
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
    let tmp = tempfile::Builder::new()
        .prefix("tinykv-bench-rocksdb-")
        .tempdir_in(dir)
        .map_err(|source| BenchError::Io {
            what: "create the baseline's temp dir",
            source,
        })?;
    let engine = Engine::open(tmp.path())?;
    let mut rng = SplitMix64::new(2);
    let mut value = vec![0u8; value_size];
    let mut samples = Vec::new();
    let start = Instant::now();
    while start.elapsed() < duration {
        let key = format!("k{:016x}", rng.next_u64());
        rng.fill(&mut value);
        let t = Instant::now();
        let mut wb = engine.write_batch();
        wb.put_cf(CF_DEFAULT, key.as_bytes(), &value)?;
        engine.write(wb, true)?;
        samples.push(t.elapsed());
    }
    Ok(BaselineReport {
        what: "RocksDB put, sync=true",
        elapsed: start.elapsed(),
        latencies: Latencies::from_unsorted(samples),
    })
}
