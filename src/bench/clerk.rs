//! The Clerk's speed (MIT 6.824's `TestSpeed3A`/`TestSpeed3B` as a
//! figure, not an assert): one Clerk ([`crate::cluster::Clerk`]) puts `""`
//! to one key, then appends to it `appends` times in a row, each append
//! waiting for the previous one (the lab's Clerk has one operation in
//! flight), then reads the key back and checks that every append is there
//! once, in order. The lab requires the appends to average under 33 ms
//! ([`LAB_MAX_MEAN`], a third of its heartbeat interval: a server must
//! not wait for a heartbeat to commit).
//!
//! Every append is an exactly-once session write (`OpenSession` once, then
//! one `Append` command with the session per operation); its latency runs
//! from the call to the Clerk's return, retries included.

use std::time::{Duration, Instant};

use super::{BenchError, Latencies};
use crate::cluster::{Clerk, Cluster};

/// The lab's bound on the mean time of one append (`TestSpeed3A`: 1,000
/// appends within 33 s).
pub const LAB_MAX_MEAN: Duration = Duration::from_millis(33);

/// The key the Clerk appends to (the lab's `"x"`).
const KEY: &[u8] = b"x";

/// What one Clerk run measured.
#[derive(Debug, Clone)]
pub struct ClerkReport {
    /// Appends made.
    pub appends: usize,
    /// From the first append's call to the last one's return.
    pub elapsed: Duration,
    /// Each append's latency.
    pub latencies: Latencies,
}

impl ClerkReport {
    /// Appends per second over the whole run.
    pub fn ops_per_sec(&self) -> f64 {
        self.appends as f64 / self.elapsed.as_secs_f64()
    }

    /// Whether the mean append is within the lab's bound.
    pub fn within_lab_bound(&self) -> bool {
        self.latencies.mean() < LAB_MAX_MEAN
    }
}

/// The `i`-th appended value (the lab's `"x 0 {i} y"`).
fn value(i: usize) -> String {
    format!("x 0 {i} y")
}

/// Runs one Clerk's `appends` appends against `cluster`, which must be
/// started; each operation may take up to `op_timeout`.
///
/// # Errors
/// If the Clerk gives up on an operation, or the value read back is not
/// every append once, in order.
pub fn run(
    cluster: &Cluster,
    appends: usize,
    op_timeout: Duration,
) -> Result<ClerkReport, BenchError> {
    let mut ck = Clerk::new(cluster)?.op_timeout(op_timeout);
    ck.put(KEY, b"")?;
    let mut samples = Vec::with_capacity(appends);
    let started = Instant::now();
    for i in 0..appends {
        let call = Instant::now();
        ck.append(KEY, value(i).as_bytes())?;
        samples.push(call.elapsed());
    }
    let elapsed = started.elapsed();
    let got = ck.get(KEY)?;
    let want: String = (0..appends).map(value).collect();
    if got != want.as_bytes() {
        return Err(BenchError::Check(format!(
            "the key reads {} bytes, not the {} bytes of the {appends} appends in order",
            got.len(),
            want.len()
        )));
    }
    Ok(ClerkReport {
        appends,
        elapsed,
        latencies: Latencies::from_unsorted(samples),
    })
}

#[cfg(test)]
mod tests {
    use raftstore::Config;

    use super::*;
    use crate::cluster::ClusterOptions;

    #[test]
    fn a_clerk_run_checks_and_measures_its_appends() {
        let cluster =
            Cluster::new(ClusterOptions::new(3, Config::for_tests())).expect("build the cluster");
        cluster.start().expect("start the cluster");
        let report = run(&cluster, 20, Duration::from_secs(30)).expect("the run");
        assert_eq!(report.appends, 20);
        assert_eq!(report.latencies.len(), 20);
        assert!(report.ops_per_sec() > 0.0);
        assert!(report.latencies.max() <= report.elapsed);
    }
}
