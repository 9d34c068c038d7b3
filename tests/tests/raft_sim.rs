//! The Raft cluster simulation over many seeds (`tinykv_tests::raft_sim`).
//!
//! - `SIM_SEEDS=N` runs seeds `0..N` (default 500).
//! - `SIM_SEED=K` replays seed K alone; add `RAFT_SIM_LOG=1` for its log.
//! - `SIM_CHECKPOINT_EVERY=S` checks every node's whole log every S steps
//!   (default `SimConfig::default().checkpoint_every`; 0: only at the end
//!   of each run).
//! - `SIM_LEASE=1` makes every seed read with `LeaseBased`, `SIM_LEASE=0`
//!   with `Safe` (default: each seed draws one).
//!
//! A failure prints each failing seed, what broke, and the command that
//! replays it.

use raft::ReadOnlyOption;
use tinykv_tests::raft_sim::{SimConfig, Totals, default_threads, run, run_seeds};

fn env_u64(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {value:?}")),
    )
}

fn replay_command(seed: u64) -> String {
    let lease = std::env::var("SIM_LEASE")
        .map(|v| format!("SIM_LEASE={v} "))
        .unwrap_or_default();
    format!("{lease}SIM_SEED={seed} RAFT_SIM_LOG=1 cargo test -p tinykv-tests --test raft_sim")
}

#[test]
fn raft_sim_seeds() {
    let log = std::env::var_os("RAFT_SIM_LOG").is_some();
    let defaults = SimConfig::default();
    let config = SimConfig {
        log,
        checkpoint_every: env_u64("SIM_CHECKPOINT_EVERY").unwrap_or(defaults.checkpoint_every),
        read_only: env_u64("SIM_LEASE").map(|lease| {
            if lease != 0 {
                ReadOnlyOption::LeaseBased
            } else {
                ReadOnlyOption::Safe
            }
        }),
        ..defaults
    };
    if let Some(seed) = env_u64("SIM_SEED") {
        match run(seed, &config) {
            Ok(report) => println!("seed {seed} passed: {report:?}"),
            Err(f) => panic!("{f}\nreplay: {}", replay_command(seed)),
        }
        return;
    }
    let seeds = env_u64("SIM_SEEDS").unwrap_or(500);
    let started = std::time::Instant::now();
    let batch = run_seeds(0..seeds, &config, default_threads());
    println!(
        "raft simulation: {} of {seeds} seeds passed in {:.1?}\n{}",
        batch.passed.len(),
        started.elapsed(),
        Totals::of(&batch.passed)
    );
    if !batch.failed.is_empty() {
        for f in batch.failed.iter().take(10) {
            eprintln!("{f}\nreplay: {}\n", replay_command(f.seed));
        }
        panic!(
            "{} of {seeds} seeds failed: {:?}",
            batch.failed.len(),
            batch.failed.iter().map(|f| f.seed).collect::<Vec<_>>()
        );
    }
}
