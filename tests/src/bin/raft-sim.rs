//! `raft-sim`: runs the Raft cluster simulation over many seeds and prints
//! a summary.
//!
//! ```text
//! raft-sim [--seeds N] [--seed K] [--nodes 3|5] [--steps S] [--log]
//! ```
//!
//! `--seeds N` runs seeds `0..N` (default 200); `--seed K` runs seed K alone
//! (with `--log`, its full log goes to stderr). Exits 1 if any seed fails.

use std::process::ExitCode;
use std::time::Instant;

use tinykv_tests::raft_sim::{SimConfig, Totals, default_threads, run_seeds};

struct Args {
    seeds: u64,
    seed: Option<u64>,
    config: SimConfig,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        seeds: 200,
        seed: None,
        config: SimConfig::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or_else(|| format!("{name} needs a value"))?;
            v.parse().map_err(|_| format!("{name}: not a number: {v}"))
        };
        match flag.as_str() {
            "--seeds" => args.seeds = value("--seeds")?,
            "--seed" => args.seed = Some(value("--seed")?),
            "--steps" => args.config.steps = value("--steps")?,
            "--nodes" => {
                let n = value("--nodes")?;
                if n != 3 && n != 5 {
                    return Err("--nodes must be 3 or 5".into());
                }
                args.config.nodes = Some(n as usize);
            }
            "--log" => args.config.log = true,
            "-h" | "--help" => {
                return Err(
                    "usage: raft-sim [--seeds N] [--seed K] [--nodes 3|5] [--steps S] [--log]"
                        .into(),
                );
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let range = match args.seed {
        Some(k) => k..k + 1,
        None => 0..args.seeds,
    };
    let started = Instant::now();
    let batch = run_seeds(range.clone(), &args.config, default_threads());
    let elapsed = started.elapsed();
    println!(
        "raft-sim: seeds {}..{} ({} steps each before recovery): {} passed, {} failed, wall time {:.2?}",
        range.start,
        range.end,
        args.config.steps,
        batch.passed.len(),
        batch.failed.len(),
        elapsed
    );
    println!("{}", Totals::of(&batch.passed));
    if batch.failed.is_empty() {
        return ExitCode::SUCCESS;
    }
    for f in &batch.failed {
        println!("\nFAILED {f}");
        println!(
            "replay: cargo run --release -p tinykv-tests --bin raft-sim -- --seed {} --log",
            f.seed
        );
    }
    ExitCode::FAILURE
}
