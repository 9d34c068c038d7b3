//! The benchmark of the replicated store, behind `tinykv-bench`.
//!
//! The stores run in the in-process cluster ([`crate::cluster`]), the one
//! the test suites use: N stores of the real raftstore, each with its own
//! RocksDB in a temp dir on the disk being measured, one region, a network
//! with no filter installed, and the cluster's [`crate::cluster::Client`]
//! (straight into the leader's router, no gRPC).
//!
//! Modules:
//! - [`workload`]: closed-loop clients issuing puts, gets or both, how a
//!   run is measured ([`RunReport`]) and how much the raft log grew in its
//!   window.
//! - [`keyspace`]: the keys and values of the get and mixed workloads, and
//!   loading them before a run.
//! - [`remote`]: the same against a running cluster, through the client
//!   library over gRPC: put, get or mixed requests over a key space.
//! - [`clerk`]: one Clerk's sequential appends to one key (MIT 6.824's
//!   `TestSpeed3A`/`3B` as a figure).
//! - [`baseline`]: the raw cost of one durable write on the same disk
//!   (append + `fdatasync`, and a synced RocksDB put), to read the figures
//!   against, and the disk's share of a replicated write (synced puts of
//!   several engines at once, until a majority is durable).
//! - [`output`]: the `--json` lines, one JSON object per run and per
//!   baseline, for scripts that compare runs.

pub mod baseline;
pub mod clerk;
pub mod keyspace;
pub mod output;
pub mod remote;
pub mod workload;

pub use self::workload::{RunReport, WorkloadOptions};

use std::time::Duration;

/// What can stop a benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The cluster could not be started, or its first put failed.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
    /// The client gave up on a request (`--remote` mode).
    #[error("client: {0}")]
    Client(#[from] crate::client::Error),
    /// An engine could not be opened or written.
    #[error("storage: {0}")]
    Storage(#[from] storage::Error),
    /// What a run wrote did not read back as written.
    #[error("check failed: {0}")]
    Check(String),
    /// A file-system or thread operation failed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The cause.
        source: std::io::Error,
    },
}

/// What the requests of a run are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mix {
    /// Puts only.
    Put,
    /// Gets only (of keys loaded first).
    Get,
    /// Gets and puts, half each.
    Mixed,
}

impl Mix {
    /// The flag's name of this mix.
    pub fn name(self) -> &'static str {
        match self {
            Mix::Put => "put",
            Mix::Get => "get",
            Mix::Mixed => "mixed",
        }
    }

    /// Whether the mix reads keys, so that the key space is loaded first.
    pub fn reads(self) -> bool {
        self != Mix::Put
    }
}

/// The latencies of a run, sorted ascending, with nearest-rank percentiles.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    /// Invariant: sorted ascending (set once, in `from_unsorted`).
    sorted: Vec<Duration>,
}

impl Latencies {
    /// Sorts `samples`.
    pub fn from_unsorted(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        Latencies { sorted: samples }
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.sorted.len()
    }

    /// Whether there are no samples.
    pub fn is_empty(&self) -> bool {
        self.sorted.is_empty()
    }

    /// The nearest-rank `p`-th percentile (`0 < p <= 100`): the smallest
    /// sample with at least `p`% of the samples at or below it. Zero when
    /// there are no samples.
    pub fn percentile(&self, p: f64) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let n = self.sorted.len();
        // `p / 100 * n` is a whole number more often than binary floating
        // point can say (99.9 / 100 * 1000 = 999.0000000000001): without
        // the slack, ceil would skip to the next rank.
        let rank = ((p / 100.0) * n as f64 - 1e-9).ceil() as usize;
        self.sorted[rank.clamp(1, n) - 1]
    }

    /// The largest sample.
    pub fn max(&self) -> Duration {
        self.sorted.last().copied().unwrap_or_default()
    }

    /// The arithmetic mean.
    pub fn mean(&self) -> Duration {
        if self.sorted.is_empty() {
            return Duration::ZERO;
        }
        let total: Duration = self.sorted.iter().sum();
        total / self.sorted.len() as u32
    }
}

/// `d` in milliseconds with a precision that suits it, for tables.
pub fn fmt_ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms < 10.0 {
        format!("{ms:.2}")
    } else if ms < 100.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let samples = (1..=100).rev().map(Duration::from_millis).collect();
        let l = Latencies::from_unsorted(samples);
        assert_eq!(l.percentile(50.0), Duration::from_millis(50));
        assert_eq!(l.percentile(99.0), Duration::from_millis(99));
        assert_eq!(l.percentile(100.0), Duration::from_millis(100));
        assert_eq!(l.max(), Duration::from_millis(100));
        assert_eq!(l.mean(), Duration::from_micros(50_500));
    }

    #[test]
    fn a_whole_rank_is_not_rounded_up() {
        let l = Latencies::from_unsorted((1..=1000).map(Duration::from_micros).collect());
        assert_eq!(l.percentile(99.9), Duration::from_micros(999));
        assert_eq!(l.percentile(99.0), Duration::from_micros(990));
        assert_eq!(l.percentile(50.0), Duration::from_micros(500));
        assert_eq!(l.percentile(100.0), Duration::from_micros(1000));
        let l = Latencies::from_unsorted((1..=7).map(Duration::from_micros).collect());
        assert_eq!(l.percentile(50.0), Duration::from_micros(4));
    }

    #[test]
    fn one_sample_and_none() {
        let l = Latencies::from_unsorted(vec![Duration::from_millis(7)]);
        assert_eq!(l.percentile(50.0), Duration::from_millis(7));
        assert_eq!(l.percentile(99.0), Duration::from_millis(7));
        assert_eq!(Latencies::default().percentile(99.0), Duration::ZERO);
    }
}
