//! Running many seeds: spread over threads, gathered in seed order, and
//! summed up for a summary line.
//!
//! Seeds are independent runs, so threads change only the wall time, never
//! a seed's outcome.

use std::ops::Range;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{SimConfig, SimFailure, SimReport, run};

/// The outcome of a batch of seeds, each list in seed order.
#[derive(Debug, Default)]
pub struct Batch {
    /// Reports of the seeds that passed.
    pub passed: Vec<SimReport>,
    /// The seeds that failed.
    pub failed: Vec<SimFailure>,
}

/// Runs every seed of `seeds` on `threads` threads (at least one).
pub fn run_seeds(seeds: Range<u64>, config: &SimConfig, threads: usize) -> Batch {
    let next = AtomicU64::new(seeds.start);
    let batch = Mutex::new(Batch::default());
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                loop {
                    let seed = next.fetch_add(1, Ordering::Relaxed);
                    if seed >= seeds.end {
                        break;
                    }
                    let result = run(seed, config);
                    let mut b = batch.lock().unwrap_or_else(|e| e.into_inner());
                    match result {
                        Ok(r) => b.passed.push(r),
                        Err(f) => b.failed.push(f),
                    }
                }
            });
        }
    });
    let mut batch = batch.into_inner().unwrap_or_else(|e| e.into_inner());
    batch.passed.sort_by_key(|r| r.seed);
    batch.failed.sort_by_key(|f| f.seed);
    batch
}

/// The threads to use: the machine's parallelism.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Totals over the reports of a batch.
#[derive(Debug, Default, Clone)]
pub struct Totals {
    /// Seeds that passed.
    pub seeds: u64,
    /// Of them, 3-node and 5-node runs.
    pub three_node: u64,
    /// See `three_node`.
    pub five_node: u64,
    /// Sum of each report's field of the same name.
    pub steps: u64,
    /// See `steps`.
    pub ticks: u64,
    /// See `steps`.
    pub elections: u64,
    /// See `steps`.
    pub commits: u64,
    /// See `steps`.
    pub proposals: u64,
    /// See `steps`.
    pub snapshots_sent: u64,
    /// See `steps`.
    pub snapshots_applied: u64,
    /// See `steps`.
    pub compactions: u64,
    /// See `steps`.
    pub conf_changes: u64,
    /// See `steps`.
    pub transfers: u64,
    /// See `steps`.
    pub transfers_done: u64,
    /// See `steps`.
    pub crashes: u64,
    /// See `steps`.
    pub partitions: u64,
    /// See `steps`.
    pub full_checks: u64,
    /// See `steps`.
    pub reads_issued: u64,
    /// See `steps`.
    pub reads_answered: u64,
    /// Seeds whose reads were `LeaseBased`.
    pub lease_runs: u64,
    /// Messages sent, dropped and duplicated.
    pub messages: u64,
    /// See `messages`.
    pub dropped: u64,
    /// See `messages`.
    pub duplicated: u64,
    /// The slowest liveness phase, in ticks, and its seed.
    pub max_liveness_ticks: u64,
    /// See `max_liveness_ticks`.
    pub slowest_seed: u64,
}

impl Totals {
    /// Sums `reports`.
    pub fn of(reports: &[SimReport]) -> Totals {
        let mut t = Totals::default();
        for r in reports {
            t.seeds += 1;
            if r.nodes == 3 {
                t.three_node += 1;
            } else {
                t.five_node += 1;
            }
            t.steps += r.steps;
            t.ticks += r.ticks;
            t.elections += r.elections;
            t.commits += r.commits;
            t.proposals += r.proposals;
            t.snapshots_sent += r.snapshots_sent;
            t.snapshots_applied += r.snapshots_applied;
            t.compactions += r.compactions;
            t.conf_changes += r.conf_changes;
            t.transfers += r.transfers;
            t.transfers_done += r.transfers_done;
            t.crashes += r.crashes;
            t.partitions += r.partitions;
            t.full_checks += r.full_checks;
            t.reads_issued += r.reads_issued;
            t.reads_answered += r.reads_answered;
            t.lease_runs += u64::from(r.lease_reads);
            t.messages += r.net.sent;
            t.dropped += r.net.dropped;
            t.duplicated += r.net.duplicated;
            if r.liveness_ticks > t.max_liveness_ticks {
                t.max_liveness_ticks = r.liveness_ticks;
                t.slowest_seed = r.seed;
            }
        }
        t
    }
}

impl std::fmt::Display for Totals {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "seeds {} ({} with 3 nodes, {} with 5), steps {}, node ticks {}",
            self.seeds, self.three_node, self.five_node, self.steps, self.ticks
        )?;
        writeln!(
            f,
            "elections {}, committed entries {}, proposals accepted {}",
            self.elections, self.commits, self.proposals
        )?;
        writeln!(
            f,
            "snapshots sent {}, applied {}, compactions {}, conf changes {}",
            self.snapshots_sent, self.snapshots_applied, self.compactions, self.conf_changes
        )?;
        writeln!(
            f,
            "leader transfers {} ({} made the transferee leader), crashes {}, partitions {}",
            self.transfers, self.transfers_done, self.crashes, self.partitions
        )?;
        writeln!(
            f,
            "messages {} ({} dropped, {} duplicated), slowest recovery {} ticks (seed {})",
            self.messages,
            self.dropped,
            self.duplicated,
            self.max_liveness_ticks,
            self.slowest_seed
        )?;
        writeln!(
            f,
            "reads issued {}, answered and checked {} ({} seeds with lease reads)",
            self.reads_issued, self.reads_answered, self.lease_runs
        )?;
        write!(f, "whole-log checks {}", self.full_checks)
    }
}
