//! `tinykv-bench`: requests/s and latency of the replicated store.
//!
//! With `--remote SCHEDULER`: closed-loop requests (put, get or mixed over
//! a key space) through the client library against a running cluster, one
//! run per concurrency, a progress line a second (`bench::remote`).
//!
//! Without it: starts an in-process cluster (3 stores by default, one region, real
//! RocksDB with synced raft-log writes in a temp dir), waits until a put
//! succeeds (a leader is elected), loads the key space for get and mixed
//! workloads, then runs closed-loop clients (put, get or mixed,
//! `bench::workload`) for a warm-up and a measured window, once per client
//! count, each on a fresh cluster. Ends with a one-thread durable-write
//! baseline on the same disk.
//!
//! `--workload clerk`: MIT 6.824's `TestSpeed3A`/`3B` as a figure: on an
//! in-process cluster, one Clerk appends `--appends` values to one key in
//! a row, exactly once each through its session, and reports appends/s
//! and the mean latency against the lab's 33 ms (`bench::clerk`);
//! `--max-raft-state BYTES` turns log GC on at that size, as in 3B.
//!
//! Output: tables (the default), or with `--json` one JSON object per line
//! (`bench::output`). Progress always goes to stderr. `--help` lists the
//! flags; `docs/BENCHMARKS.md` has results and how to read them.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use raftstore::Config;
use slog::{Drain, Logger, o};
use tinykv::bench::baseline::{self, BaselineReport};
use tinykv::bench::clerk::{self, ClerkReport};
use tinykv::bench::remote::{self, RemoteOptions, RemoteReport};
use tinykv::bench::{
    BenchError, Mix, RunReport, WorkloadOptions, fmt_ms, keyspace, output, workload,
};
use tinykv::client::{Client, ClientOptions};
use tinykv::cluster::{Cluster, ClusterOptions};

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    /// Aligned tables.
    Table,
    /// One JSON object per line on stdout, per run and for the baseline
    /// (progress stays on stderr); the same as --json.
    Json,
}

/// What the requests are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum MixFlag {
    /// Puts only.
    Put,
    /// Linearizable gets only, of keys loaded before the runs.
    Get,
    /// Gets and puts, half each.
    Mixed,
    /// One Clerk's sequential appends to one key, exactly once each (MIT
    /// 6.824's TestSpeed3A/3B); in-process only.
    Clerk,
}

#[derive(Debug, Parser)]
#[command(
    name = "tinykv-bench",
    version,
    about = "Throughput and latency of a tinykv-rs cluster: in-process, or a running one over gRPC",
    long_about = "Measures requests/s and latency percentiles of the replicated store.\n\n\
        Without --remote: starts an in-process cluster (N stores, one region, real RocksDB \
        with synced raft-log writes in a temp dir under --data-dir), and runs closed-loop \
        clients (tasks on the stores' runtime, where a node's gRPC handlers run) straight into \
        the leader's router, one fresh cluster per client count: puts \
        of fresh keys, or (--workload get|mixed) linearizable gets, or half gets and half \
        puts, of keys drawn from --key-space keys loaded first. Runs report the raft-log \
        entries appended during the window (log growth; 0 for gets).\n\n\
        --workload clerk (MIT 6.824's TestSpeed3A/3B as a figure): one Clerk appends \
        --appends values to one key in a row, each an exactly-once session write, on a fresh \
        in-process cluster (--clients does not apply); reports appends/s and latency against \
        the lab's 33 ms mean; --max-raft-state BYTES turns log GC on at that raft-log size \
        (TestSpeed3B).\n\n\
        With --remote SCHEDULER: runs closed-loop requests through the client library over \
        gRPC against a running cluster (e.g. tinykv-playground), put/get/mixed over a key \
        space, one run per concurrency.\n\n\
        Both end with a one-writer durable-write baseline (fdatasync and a synced RocksDB \
        put) on the --data-dir disk, and beside it the disk's share of a replicated write: \
        --stores synced puts at once on separate engines, each round timed until a majority \
        is durable.\n\n\
        Output: aligned tables by default. --json (or --format json) prints one JSON object \
        per line on stdout instead, `kind` first: per run {\"kind\":\"run\",\"workload\",\
        \"clients\",\"ops_per_sec\",\"p50_ms\",\"p99_ms\",\"p999_ms\",\"failed\",...}, and \
        for the baseline {\"kind\":\"baseline\",\"sync_writes_per_sec\",\
        \"sync_write_p50_ms\",...} (the synced RocksDB put; fdatasync_* fields for the \
        append + fdatasync; quorum_* fields for the majority of --stores writers). Progress \
        goes to stderr.\n\n\
        TINYKV_BENCH_LOG=LEVEL logs in-process stores on stderr. \
        docs/BENCHMARKS.md has results and how to read them."
)]
struct Args {
    /// Concurrent closed-loop clients (requests in flight); one run per count.
    #[arg(long, value_name = "N[,N...]", value_delimiter = ',', default_value = "1,64",
          value_parser = clap::value_parser!(u32).range(1..))]
    clients: Vec<u32>,
    /// Length of the measured window per run, in seconds.
    #[arg(long, value_name = "S", default_value_t = 20.0)]
    duration_secs: f64,
    /// Unmeasured time before the window, in seconds.
    #[arg(long, value_name = "S", default_value_t = 5.0)]
    warmup_secs: f64,
    /// Bytes per value.
    #[arg(long, value_name = "B", default_value_t = 100)]
    value_size: usize,
    /// In-process: stores, each with a peer of the region. Also the writers
    /// of the quorum baseline (synced puts at once, done at a majority).
    #[arg(long, value_name = "N", default_value_t = 3,
          value_parser = clap::value_parser!(u64).range(1..))]
    stores: u64,
    /// Seed of keys and values.
    #[arg(long, value_name = "N", default_value_t = 42)]
    seed: u64,
    /// Parent of the in-process cluster's data and of the baseline's files
    /// (the disk being measured). [default: the system temp dir]
    #[arg(long, value_name = "PATH")]
    data_dir: Option<PathBuf>,
    /// In-process: worker threads of the store runtime. [default: available cores]
    #[arg(long, value_name = "N")]
    runtime_threads: Option<usize>,
    /// Seconds of each durable-write baseline; 0 skips it.
    #[arg(long, value_name = "S", default_value_t = 3.0)]
    baseline_secs: f64,
    /// Run against the cluster whose scheduler is at this address
    /// (HOST:PORT) instead of an in-process one.
    #[arg(long, value_name = "SCHEDULER")]
    remote: Option<String>,
    /// What the requests are; get and mixed load --key-space keys first.
    #[arg(long, value_enum, default_value = "put")]
    workload: MixFlag,
    /// Gets, and the puts of --remote and mixed runs, draw keys uniformly
    /// from this many (in-process put runs write fresh keys instead).
    #[arg(long, value_name = "N", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..))]
    key_space: u64,
    /// How results are printed.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Print one JSON object per line on stdout (a line per run, `kind`
    /// "run", and one for the baseline, `kind` "baseline") instead of
    /// tables: the same as --format json. --help describes the fields.
    #[arg(long, conflicts_with = "format")]
    json: bool,
    /// --workload clerk: appends the Clerk makes.
    #[arg(long, value_name = "N", default_value_t = 1000,
          value_parser = clap::value_parser!(u64).range(1..))]
    appends: u64,
    /// --workload clerk: compact the raft log past this many bytes (MIT
    /// 6.824's maxraftstate; TestSpeed3B uses 1000). [default: the
    /// config's limits]
    #[arg(long, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(1..))]
    max_raft_state: Option<u64>,
}

impl Args {
    /// The request mix of a put/get/mixed run; `None` for a Clerk run.
    fn mix(&self) -> Option<Mix> {
        match self.workload {
            MixFlag::Put => Some(Mix::Put),
            MixFlag::Get => Some(Mix::Get),
            MixFlag::Mixed => Some(Mix::Mixed),
            MixFlag::Clerk => None,
        }
    }

    fn table(&self) -> bool {
        !self.json && self.format == Format::Table
    }
}

fn secs(flag: &str, s: f64) -> Result<Duration, String> {
    if s.is_finite() && s >= 0.0 {
        Ok(Duration::from_secs_f64(s))
    } else {
        Err(format!("{flag} {s}: not a number of seconds"))
    }
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
    let args = Args::parse();
    let checked = secs("--duration-secs", args.duration_secs).and_then(|d| {
        if d.is_zero() {
            Err("--duration-secs must be more than 0".to_owned())
        } else {
            Ok(d)
        }
    });
    let (duration, warmup, baseline) = match (
        checked,
        secs("--warmup-secs", args.warmup_secs),
        secs("--baseline-secs", args.baseline_secs),
    ) {
        (Ok(d), Ok(w), Ok(b)) => (d, w, b),
        (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
            eprintln!("tinykv-bench: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(mix) = args.mix().filter(|m| m.reads())
        && args.value_size == 0
    {
        // A loaded key must read back non-empty: the protocol has no
        // not-found flag, an absent key reads as an empty value.
        eprintln!(
            "tinykv-bench: --workload {} needs --value-size of at least 1",
            mix.name()
        );
        return ExitCode::from(2);
    }
    let timing = Timing {
        duration,
        warmup,
        baseline,
        data_dir: args.data_dir.clone().unwrap_or_else(std::env::temp_dir),
    };
    let result = match (&args.remote, args.mix()) {
        (Some(_), None) => {
            eprintln!("tinykv-bench: --workload clerk runs in-process only, not with --remote");
            return ExitCode::from(2);
        }
        (Some(addr), Some(mix)) => run_remote(&args, addr, mix, &timing),
        (None, Some(mix)) => run(&args, mix, &timing),
        (None, None) => run_clerk(&args, &timing),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tinykv-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The checked durations and the disk.
struct Timing {
    duration: Duration,
    warmup: Duration,
    baseline: Duration,
    data_dir: PathBuf,
}

fn runtime_threads(args: &Args) -> usize {
    args.runtime_threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
}

fn run(args: &Args, mix: Mix, t: &Timing) -> Result<(), BenchError> {
    let cfg = Config::default();
    let logger = logger();
    let runtime_threads = runtime_threads(args);
    let table = args.table();
    if table {
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
            runtime_threads
        );
        match mix {
            Mix::Put => println!(
                "workload: puts of {} B values to fresh keys, seed {}, warm-up {:?}, measured {:?} per run",
                args.value_size, args.seed, t.warmup, t.duration
            ),
            Mix::Get | Mix::Mixed => println!(
                "workload: {} ({}) over {} loaded keys of {} B values, seed {}, warm-up {:?}, \
                 measured {:?} per run",
                mix.name(),
                if mix == Mix::Get {
                    "linearizable gets through the leader"
                } else {
                    "half gets, half puts"
                },
                args.key_space,
                args.value_size,
                args.seed,
                t.warmup,
                t.duration
            ),
        }
        println!("data under: {}", t.data_dir.display());
        println!();
    }
    let opts = ClusterOptions::new(args.stores, cfg)
        .data_parent(&t.data_dir)
        .runtime_threads(runtime_threads)
        .logger(logger);
    let mut reports = Vec::new();
    for &clients in &args.clients {
        let clients = clients as usize;
        let cluster = Cluster::new(opts.clone())?;
        cluster.start()?;
        let (elected, leader) = cluster.wait_for_leader(Duration::from_secs(30))?;
        // Progress goes to stderr; keep it after the header when both go
        // to one file.
        let _ = std::io::stdout().flush();
        eprintln!(
            "clients {clients}: leader (store {leader}) ready after {:.2} s",
            elected.as_secs_f64(),
        );
        let op_timeout = Duration::from_secs(10);
        if mix.reads() {
            eprintln!(
                "  loading {} keys with {LOAD_WRITERS} writers ...",
                args.key_space
            );
            let key_space = args.key_space;
            keyspace::load(
                &cluster,
                key_space,
                args.value_size,
                LOAD_WRITERS,
                op_timeout,
                |done| eprintln!("  loaded {done}/{key_space}"),
            )?;
        }
        eprintln!(
            "  running {} clients: {:?} + {:?} ...",
            mix.name(),
            t.warmup,
            t.duration
        );
        let report = workload::run(
            &cluster,
            &WorkloadOptions {
                clients,
                mix,
                key_space: args.key_space,
                warmup: t.warmup,
                duration: t.duration,
                value_size: args.value_size,
                seed: args.seed,
                op_timeout,
            },
        );
        if !table {
            println!(
                "{}",
                output::in_process_run(&report, args.stores, args.value_size, args.key_space)
            );
        }
        // The stores stop and their data goes before the next run; data
        // left behind is worth a warning, not a lost report.
        let dir = cluster.path().to_owned();
        if let Err(e) = cluster.destroy() {
            eprintln!("tinykv-bench: {}: {e}", dir.display());
        }
        reports.push(report);
    }
    let baselines = run_baselines(args, t)?;
    if table {
        print_runs(&reports);
        if let Some(b) = &baselines {
            println!();
            print_baselines(b);
        }
    } else if let Some(b) = &baselines {
        println!("{}", b.json_line());
    }
    Ok(())
}

/// Threads that load the key space, each with one put in flight.
const LOAD_WRITERS: usize = 64;

/// The durable-write baselines.
struct Baselines {
    fdatasync: BaselineReport,
    rocksdb_sync_put: BaselineReport,
    /// `quorum_writers` synced puts at once, until a majority is durable.
    quorum: BaselineReport,
    /// `--stores`: the writers of `quorum`.
    quorum_writers: usize,
}

impl Baselines {
    /// The `--json` line of these baselines.
    fn json_line(&self) -> output::JsonLine {
        output::baseline(
            &self.rocksdb_sync_put,
            &self.fdatasync,
            &self.quorum,
            self.quorum_writers,
        )
    }
}

fn run_baselines(args: &Args, t: &Timing) -> Result<Option<Baselines>, BenchError> {
    if t.baseline.is_zero() {
        return Ok(None);
    }
    eprintln!("durable-write baseline on {} ...", t.data_dir.display());
    let quorum_writers = usize::try_from(args.stores).unwrap_or(usize::MAX);
    Ok(Some(Baselines {
        fdatasync: baseline::fdatasync(&t.data_dir, args.value_size, t.baseline)?,
        rocksdb_sync_put: baseline::rocksdb_sync_put(&t.data_dir, args.value_size, t.baseline)?,
        quorum: baseline::rocksdb_quorum_sync_put(
            &t.data_dir,
            args.value_size,
            t.baseline,
            quorum_writers,
        )?,
        quorum_writers,
    }))
}

/// How long the Clerk may take over one operation (the lab's Clerk never
/// gives up; a run that needs this long has failed anyway).
const CLERK_OP_TIMEOUT: Duration = Duration::from_secs(60);

/// A Clerk's log entry of the lab's short values is about this many bytes:
/// with `--max-raft-state`, the count limit of log GC is that size over
/// this, as in the Lab 3 test ports.
const CLERK_ENTRY_BYTES: u64 = 50;

fn run_clerk(args: &Args, t: &Timing) -> Result<(), BenchError> {
    let mut cfg = Config::default();
    if let Some(bytes) = args.max_raft_state {
        cfg.raft_log_gc_size_limit = bytes;
        cfg.raft_log_gc_count_limit = (bytes / CLERK_ENTRY_BYTES).max(1);
    }
    let runtime_threads = runtime_threads(args);
    let table = args.table();
    if table {
        println!(
            "tinykv-bench: {} stores in one process, 1 region, in-memory transport, RocksDB \
             with synced raft-log writes",
            args.stores
        );
        println!(
            "config: Config::default() (tick {:?}, heartbeat {} ticks, election {} ticks), \
             log GC at {} entries / {} bytes; store runtime {} threads",
            cfg.raft_base_tick_interval,
            cfg.raft_heartbeat_ticks,
            cfg.raft_election_timeout_ticks,
            cfg.raft_log_gc_count_limit,
            cfg.raft_log_gc_size_limit,
            runtime_threads
        );
        println!(
            "workload: one Clerk, {} sequential appends to one key, each an exactly-once \
             session write (MIT 6.824 TestSpeed3{})",
            args.appends,
            if args.max_raft_state.is_some() {
                "B"
            } else {
                "A"
            }
        );
        println!("data under: {}", t.data_dir.display());
        println!();
    }
    let opts = ClusterOptions::new(args.stores, cfg)
        .data_parent(&t.data_dir)
        .runtime_threads(runtime_threads)
        .logger(logger());
    let cluster = Cluster::new(opts)?;
    cluster.start()?;
    let (elected, leader) = cluster.wait_for_leader(Duration::from_secs(30))?;
    let _ = std::io::stdout().flush();
    eprintln!(
        "leader (store {leader}) ready after {:.2} s; {} appends ...",
        elected.as_secs_f64(),
        args.appends
    );
    let appends = usize::try_from(args.appends).unwrap_or(usize::MAX);
    let report = clerk::run(&cluster, appends, CLERK_OP_TIMEOUT)?;
    let dir = cluster.path().to_owned();
    if let Err(e) = cluster.destroy() {
        eprintln!("tinykv-bench: {}: {e}", dir.display());
    }
    if table {
        print_clerk_run(&report);
    } else {
        println!(
            "{}",
            output::clerk_run(&report, args.stores, args.max_raft_state)
        );
    }
    Ok(())
}

fn print_clerk_run(r: &ClerkReport) {
    let l = &r.latencies;
    println!(
        "{:>7} {:>9} {:>8} {:>8} {:>8} {:>8} {:>10}",
        "appends", "appends/s", "mean ms", "p50 ms", "p99 ms", "max ms", "lab bound"
    );
    println!(
        "{:>7} {:>9.1} {:>8} {:>8} {:>8} {:>8} {:>10}",
        r.appends,
        r.ops_per_sec(),
        fmt_ms(l.mean()),
        fmt_ms(l.percentile(50.0)),
        fmt_ms(l.percentile(99.0)),
        fmt_ms(l.max()),
        if r.within_lab_bound() {
            format!("< {} ms", fmt_ms(clerk::LAB_MAX_MEAN))
        } else {
            format!(">= {} ms", fmt_ms(clerk::LAB_MAX_MEAN))
        }
    );
}

fn run_remote(args: &Args, addr: &str, mix: Mix, t: &Timing) -> Result<(), BenchError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|source| BenchError::Io {
            what: "start the async runtime",
            source,
        })?;
    let table = args.table();
    let reports = runtime.block_on(async {
        let client = Client::connect(addr, ClientOptions::default()).await?;
        if table {
            println!(
                "tinykv-bench: cluster {} at {addr}, through the client over gRPC",
                client.cluster_id()
            );
            println!(
                "workload: {} of {} B values, {} keys, seed {}, warm-up {:?}, measured {:?} per run",
                mix.name(),
                args.value_size,
                args.key_space,
                args.seed,
                t.warmup,
                t.duration
            );
            println!();
        }
        if mix != Mix::Put {
            eprintln!("loading {} keys ...", args.key_space);
            let key_space = args.key_space;
            remote::load(&client, key_space, args.value_size, 64, |done| {
                eprintln!("  loaded {done}/{key_space}");
            })
            .await?;
        }
        let mut reports = Vec::new();
        for &concurrency in &args.clients {
            eprintln!("concurrency {concurrency}: {:?} + {:?} ...", t.warmup, t.duration);
            let opts = RemoteOptions {
                concurrency: concurrency as usize,
                warmup: t.warmup,
                duration: t.duration,
                value_size: args.value_size,
                key_space: args.key_space,
                mix,
                seed: args.seed,
            };
            let report = remote::run(&client, &opts, |elapsed, measuring, last| {
                eprintln!(
                    "  {elapsed:5.1} s  {:<8} {last:>7} req/s",
                    if measuring { "measured" } else { "warm-up" }
                );
            })
            .await;
            if !table {
                println!(
                    "{}",
                    output::remote_run(&report, args.value_size, args.key_space)
                );
            }
            reports.push(report);
        }
        Ok::<_, BenchError>(reports)
    })?;
    let baselines = run_baselines(args, t)?;
    if table {
        print_remote_runs(&reports);
        if let Some(b) = &baselines {
            println!();
            print_baselines(b);
        }
    } else if let Some(b) = &baselines {
        println!("{}", b.json_line());
    }
    Ok(())
}

fn print_runs(reports: &[RunReport]) {
    println!(
        "{:>7} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>6} {:>10}",
        "clients",
        "workload",
        "ops",
        "ops/s",
        "mean ms",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "retries",
        "failed",
        "log growth"
    );
    for r in reports {
        let l = &r.latencies;
        println!(
            "{:>7} {:>8} {:>8} {:>9.1} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>6} {:>10}",
            r.clients,
            r.mix.name(),
            r.ops(),
            r.ops_per_sec(),
            fmt_ms(l.mean()),
            fmt_ms(l.percentile(50.0)),
            fmt_ms(l.percentile(90.0)),
            fmt_ms(l.percentile(99.0)),
            fmt_ms(l.percentile(99.9)),
            fmt_ms(l.max()),
            r.retries.total(),
            r.failures,
            r.log_growth
        );
    }
    for r in reports.iter().filter(|r| r.first_failure.is_some()) {
        println!(
            "  first failure at {} clients: {}",
            r.clients,
            r.first_failure.as_deref().unwrap_or_default()
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

fn print_remote_runs(reports: &[RemoteReport]) {
    println!(
        "{:>11} {:>8} {:>8} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6}",
        "concurrency",
        "workload",
        "ops",
        "ops/s",
        "mean ms",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "p99.9 ms",
        "max ms",
        "errors"
    );
    for r in reports {
        let l = &r.latencies;
        println!(
            "{:>11} {:>8} {:>8} {:>9.1} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6}",
            r.concurrency,
            r.mix.name(),
            l.len(),
            r.ops_per_sec(),
            fmt_ms(l.mean()),
            fmt_ms(l.percentile(50.0)),
            fmt_ms(l.percentile(90.0)),
            fmt_ms(l.percentile(99.0)),
            fmt_ms(l.percentile(99.9)),
            fmt_ms(l.max()),
            r.errors
        );
    }
    for r in reports.iter().filter(|r| r.first_error.is_some()) {
        println!(
            "  first error at concurrency {}: {}",
            r.concurrency,
            r.first_error.as_deref().unwrap_or_default()
        );
    }
}

fn print_baselines(b: &Baselines) {
    let reports = [&b.fdatasync, &b.rocksdb_sync_put, &b.quorum];
    println!(
        "durable-write baseline, same disk (one writer; the last row: {} writers at once, \
         a round done when a majority is durable):",
        b.quorum_writers
    );
    println!(
        "{:<28} {:>8} {:>9} {:>8} {:>8} {:>8}",
        "what", "writes", "writes/s", "p50 ms", "p99 ms", "max ms"
    );
    for r in reports {
        let l = &r.latencies;
        println!(
            "{:<28} {:>8} {:>9.1} {:>8} {:>8} {:>8}",
            r.what,
            l.len(),
            r.ops_per_sec(),
            fmt_ms(l.percentile(50.0)),
            fmt_ms(l.percentile(99.0)),
            fmt_ms(l.max())
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    fn parse(args: &[&str]) -> Result<Args, clap::Error> {
        Args::try_parse_from(std::iter::once("tinykv-bench").chain(args.iter().copied()))
    }

    #[test]
    fn the_flags_are_consistent() {
        Args::command().debug_assert();
    }

    #[test]
    fn json_and_format_json_both_print_lines() {
        let defaults = parse(&[]).expect("no flags");
        assert!(defaults.table(), "tables are the default");
        assert_eq!(defaults.mix(), Some(Mix::Put));
        for flags in [&["--json"][..], &["--format", "json"]] {
            assert!(!parse(flags).expect("parses").table(), "{flags:?}");
        }
        let both = parse(&["--json", "--format", "table"]).map(|_| ());
        assert!(both.is_err(), "--json and --format table contradict");
    }

    #[test]
    fn the_workload_applies_without_remote() {
        let args = parse(&["--workload", "get", "--key-space", "500", "--json"]).expect("parses");
        assert_eq!(args.mix(), Some(Mix::Get));
        assert!(args.remote.is_none());
        assert_eq!(args.key_space, 500);
        assert_eq!(
            parse(&["--workload", "mixed"]).expect("parses").mix(),
            Some(Mix::Mixed)
        );
        assert!(parse(&["--workload", "scan"]).is_err());
        assert!(parse(&["--key-space", "0"]).is_err());
    }

    #[test]
    fn the_clerk_workload_takes_appends_and_a_log_limit() {
        let args = parse(&["--workload", "clerk"]).expect("parses");
        assert_eq!(args.mix(), None);
        assert_eq!(args.appends, 1000, "the lab's 1,000 appends by default");
        assert_eq!(args.max_raft_state, None);
        let args = parse(&[
            "--workload",
            "clerk",
            "--appends",
            "50",
            "--max-raft-state",
            "1000",
        ])
        .expect("parses");
        assert_eq!((args.appends, args.max_raft_state), (50, Some(1000)));
        assert!(parse(&["--appends", "0"]).is_err());
        assert!(parse(&["--max-raft-state", "0"]).is_err());
    }

    #[test]
    fn help_explains_json() {
        let help = Args::command().render_long_help().to_string();
        assert!(help.contains("--json"), "{help}");
        assert!(help.contains("\"kind\":\"run\""), "{help}");
        assert!(help.contains("sync_writes_per_sec"), "{help}");
    }
}
