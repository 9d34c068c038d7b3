//! `tinykv-bench`: puts/s and put latency of the replicated store.
//!
//! Starts an in-process cluster (3 stores by default, one region, real
//! RocksDB with synced raft-log writes in a temp dir), waits until a put
//! succeeds (a leader is elected), then runs closed-loop put clients for a
//! warm-up and a measured window, once per client count, each on a fresh
//! cluster. Ends with a one-thread durable-write baseline on the same disk.
//! `--help` lists the flags; `docs/BENCHMARKS.md` has results and how to
//! read them.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use raftstore::Config;
use slog::{Drain, Logger, o};
use tinykv::bench::baseline::{self, BaselineReport};
use tinykv::bench::{RunReport, WorkloadOptions, fmt_ms, workload};
use tinykv::cluster::{Cluster, ClusterOptions};

const USAGE: &str = "\
tinykv-bench: put throughput and latency of an in-process replicated cluster

USAGE: tinykv-bench [FLAGS]

  --clients N[,N...]      concurrent closed-loop clients; one run (fresh cluster) per
                          count                                      [default: 1,64]
  --duration-secs S       length of the measured window per run     [default: 20]
  --warmup-secs S         unmeasured time before the window         [default: 5]
  --value-size B          bytes per value                           [default: 100]
  --stores N              stores, each with a peer of the region    [default: 3]
  --seed N                seed of keys and values                   [default: 42]
  --data-dir PATH         parent of the temp data dirs (the disk being measured)
                                                                   [default: system temp dir]
  --runtime-threads N     worker threads of the store runtime   [default: available cores]
  --baseline-secs S       one-thread fdatasync / RocksDB sync baseline per kind, 0 = skip
                                                                   [default: 3]
  -h, --help              this text

Timing is raftstore's Config::default(): 100 ms base tick, heartbeat 2 ticks,
election timeout 10 ticks. TINYKV_BENCH_LOG=LEVEL (e.g. warn, info) logs the stores
 on stderr.
";

/// The parsed command line.
struct Args {
    clients: Vec<usize>,
    duration: Duration,
    warmup: Duration,
    value_size: usize,
    stores: u64,
    seed: u64,
    data_dir: PathBuf,
    runtime_threads: usize,
    baseline: Duration,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        clients: vec![1, 64],
        duration: Duration::from_secs(20),
        warmup: Duration::from_secs(5),
        value_size: 100,
        stores: 3,
        seed: 42,
        data_dir: std::env::temp_dir(),
        runtime_threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
        baseline: Duration::from_secs(3),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "-h" || flag == "--help" {
            return Ok(None);
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value}: {e}");
        let secs = |v: &str| {
            v.parse::<f64>()
                .ok()
                .filter(|s| s.is_finite() && *s >= 0.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| format!("{flag} {v}: not a number of seconds"))
        };
        match flag.as_str() {
            "--clients" => {
                args.clients = value
                    .split(',')
                    .map(|c| c.trim().parse::<usize>().map_err(|e| bad(&e)))
                    .collect::<Result<_, _>>()?;
                if args.clients.contains(&0) {
                    return Err(bad(&"client counts must be at least 1"));
                }
            }
            "--duration-secs" => args.duration = secs(&value)?,
            "--warmup-secs" => args.warmup = secs(&value)?,
            "--baseline-secs" => args.baseline = secs(&value)?,
            "--value-size" => args.value_size = value.parse().map_err(|e| bad(&e))?,
            "--stores" => args.stores = value.parse().map_err(|e| bad(&e))?,
            "--seed" => args.seed = value.parse().map_err(|e| bad(&e))?,
            "--data-dir" => args.data_dir = PathBuf::from(value),
            "--runtime-threads" => args.runtime_threads = value.parse().map_err(|e| bad(&e))?,
            _ => return Err(format!("unknown flag {flag}; see --help")),
        }
    }
    if args.duration.is_zero() {
        return Err("--duration-secs must be more than 0".into());
    }
    if args.stores == 0 {
        return Err("--stores must be at least 1".into());
    }
    Ok(Some(args))
}

fn logger() -> Logger {
    if let Some(level) = std::env::var_os("TINYKV_BENCH_LOG") {
        let level = level
            .to_str()
            .and_then(|l| l.parse::<slog::Level>().ok())
            .unwrap_or(slog::Level::Warning);
        let decorator = slog_term::PlainSyncDecorator::new(std::io::stderr());
        let drain = slog_term::FullFormat::new(decorator).build().fuse();
        let drain = slog::LevelFilter::new(drain, level).fuse();
        Logger::root(drain, o!())
    } else {
        Logger::root(slog::Discard, o!())
    }
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("tinykv-bench: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tinykv-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<(), tinykv::bench::BenchError> {
    let cfg = Config::default();
    let logger = logger();
    println!(
        "tinykv-bench: {} stores in one process, 1 region, in-memory transport, RocksDB \
         with synced raft-log writes",
        args.stores
    );
    println!(
        "config: Config::default() (tick {:?}, heartbeat {} ticks, election {} ticks); \
         store runtime {} threads",
        cfg.raft_base_tick_interval,
        cfg.raft_heartbeat_ticks,
        cfg.raft_election_timeout_ticks,
        args.runtime_threads
    );
    println!(
        "workload: puts of {} B values to fresh keys, seed {}, warm-up {:?}, measured {:?} per run",
        args.value_size, args.seed, args.warmup, args.duration
    );
    println!("data under: {}", args.data_dir.display());
    println!();
    let opts = ClusterOptions::new(args.stores, cfg)
        .data_parent(&args.data_dir)
        .runtime_threads(args.runtime_threads)
        .logger(logger);
    let mut reports = Vec::new();
    for &clients in &args.clients {
        let cluster = Cluster::new(opts.clone())?;
        cluster.start()?;
        let (elected, leader) = cluster.wait_for_leader(Duration::from_secs(30))?;
        // Progress goes to stderr; keep it after the header when both go
        // to one file.
        let _ = std::io::stdout().flush();
        eprintln!(
            "clients {clients}: leader (store {leader}) ready after {:.2} s; running {:?} + {:?} ...",
            elected.as_secs_f64(),
            args.warmup,
            args.duration
        );
        let report = workload::run(
            &cluster,
            &WorkloadOptions {
                clients,
                warmup: args.warmup,
                duration: args.duration,
                value_size: args.value_size,
                seed: args.seed,
                op_timeout: Duration::from_secs(10),
            },
        );
        // The stores stop and their data goes before the next run; data
        // left behind is worth a warning, not a lost report.
        let dir = cluster.path().to_owned();
        if let Err(e) = cluster.destroy() {
            eprintln!("tinykv-bench: {}: {e}", dir.display());
        }
        reports.push(report);
    }
    print_runs(&reports);
    if !args.baseline.is_zero() {
        let baselines = [
            baseline::fdatasync(&args.data_dir, args.value_size, args.baseline)?,
            baseline::rocksdb_sync_put(&args.data_dir, args.value_size, args.baseline)?,
        ];
        println!();
        print_baselines(&baselines);
    }
    Ok(())
}

fn print_runs(reports: &[RunReport]) {
    println!(
        "{:>7} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>6}",
        "clients",
        "puts",
        "puts/s",
        "mean ms",
        "p50 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "retries",
        "failed"
    );
    for r in reports {
        let l = &r.latencies;
        println!(
            "{:>7} {:>8} {:>9.1} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>6}",
            r.clients,
            r.ops(),
            r.ops_per_sec(),
            fmt_ms(l.mean()),
            fmt_ms(l.percentile(50.0)),
            fmt_ms(l.percentile(99.0)),
            fmt_ms(l.percentile(99.9)),
            fmt_ms(l.max()),
            r.retries.total(),
            r.failures
        );
    }
    for r in reports.iter().filter(|r| r.retries.total() > 0) {
        let t = &r.retries;
        println!(
            "  retries at {} clients: not leader {}, stale command {}, server busy {}, \
             no answer {}, other {}",
            r.clients, t.not_leader, t.stale_command, t.server_is_busy, t.no_answer, t.other
        );
    }
}

fn print_baselines(reports: &[BaselineReport]) {
    println!("durable-write baseline, one writer, same disk:");
    println!(
        "{:<24} {:>8} {:>9} {:>8} {:>8} {:>8}",
        "what", "writes", "writes/s", "p50 ms", "p99 ms", "max ms"
    );
    for r in reports {
        let l = &r.latencies;
        println!(
            "{:<24} {:>8} {:>9.1} {:>8} {:>8} {:>8}",
            r.what,
            l.len(),
            r.ops_per_sec(),
            fmt_ms(l.percentile(50.0)),
            fmt_ms(l.percentile(99.0)),
            fmt_ms(l.max())
        );
    }
}
