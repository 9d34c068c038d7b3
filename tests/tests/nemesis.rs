//! The nemesis test: real processes — `tinykv-scheduler` and three
//! `tinykv-server`s with fault injection on, each in its own temp dir —
//! under a random client workload while a nemesis breaks them; the history
//! the clients saw must be linearizable.
//!
//! - Clients: [`CLIENTS`] tasks, each its own gRPC client with one
//!   operation in flight, for [`WORKLOAD`], over [`KEYS`] keys: a random
//!   `Put`/`Append`/`Get` mix in which every write is followed by a read of
//!   the same client, so the checker's search stays small (a read pins the
//!   state). Every operation is recorded with its call and return time; a
//!   write whose answer did not come (an error: timed out, session expired,
//!   ...) is recorded with its outcome unknown, a read without an answer
//!   is left out (it constrains nothing).
//! - Nemesis, one fault at a time, each held until the clients made
//!   progress under it (a condition, bounded by [`FAULT_HOLD`]), then
//!   healed and followed by progress on the healed cluster:
//!   `kill -9` of a store, restarted after; `SIGSTOP` of a store, `SIGCONT`
//!   after; one store partitioned from the other two (`debugpb.Debug`'s
//!   `SetPartition` on both sides), healed after. The victim is the
//!   region's leader half of the time, a random store otherwise.
//! - No store may exit by itself meanwhile (a crash fails the test).
//! - At the end every store runs and nothing is partitioned; one final read
//!   of each key joins the history. Then (a) the history must be
//!   linearizable (the checker's report, the smallest failing window, is
//!   printed otherwise), which covers (b) no acknowledged write lost: the
//!   final reads must agree with every acknowledged write before them.
//!   Unknown writes no read saw are left out first
//!   (`without_unobserved_unknown_writes`: the verdict is the same, the
//!   search smaller), and the search has a budget: running out fails the
//!   test as inconclusive, never passes it.
//!
//! Progress lines go to stderr, with the seed (`NEMESIS_SEED=<n>` replays
//! the same choices; the timing of real processes still differs) and the
//! figures at the end: operations, faults by kind, history size, check
//! time. On failure the cluster's folder is kept and each log's tail
//! printed.
//!
//! The binaries are found beside this test's executable: build them first
//! with `cargo build --workspace --bins` (or `-p tinykv --bins -p
//! tinykv-scheduler-stub --bins`) so none is stale.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use kvproto::debugpb::SetPartitionRequest;
use kvproto::debugpb::debug_client::DebugClient;
use tempfile::TempDir;
use tinykv::client::{Clerk, Client, ClientOptions};
use tinykv::playground::{
    Binaries, ClusterDir, Layout, ProcessCluster, ProcessClusterOptions, wait_until_serving,
};
use tinykv::rng::SplitMix64;
use tinykv_tests::linearizability::{
    CheckError, Input, Operation, check_within, without_unobserved_unknown_writes,
};
use tokio::time::Instant;

const STORES: usize = 3;
const CLIENTS: usize = 5;
const KEYS: usize = 3;
/// How long the clients run while the nemesis works.
const WORKLOAD: Duration = Duration::from_secs(25);
/// How many operations the clients must complete under a fault before it
/// is healed, and on the healed cluster before the next fault.
const PROGRESS_OPS: u64 = 25;
/// The longest a fault is held waiting for that progress.
const FAULT_HOLD: Duration = Duration::from_secs(8);
/// The longest the healed cluster may take to make progress again.
const RECOVERY: Duration = Duration::from_secs(30);
const SERVE_TIMEOUT: Duration = Duration::from_secs(120);
/// The final reads' deadline, everything healed.
const FINAL_READS: Duration = Duration::from_secs(60);
/// One `SetPartition` call's deadline (a paused store never answers).
const DEBUG_CALL: Duration = Duration::from_secs(3);
/// The checker's search budget, in steps; past it the test fails as
/// inconclusive (never passes).
const CHECK_BUDGET: u64 = 20_000_000;

/// Fast ticks (elections in a fraction of a second) and a short log, so a
/// store down or cut off for a while catches up by snapshot.
const SERVER_CONFIG: &str = "\
[raftstore]
raft-base-tick-interval-ms = 20
raft-log-gc-tick-ticks = 5
raft-log-gc-count-limit = 100
";

fn progress(line: &str) {
    eprintln!("[nemesis] {line}");
}

fn key(i: usize) -> String {
    format!("nemesis-{i}")
}

/// The workload's client: the Clerk (exactly-once writes over a client
/// session; an `Err` from a write means its outcome is unknown).
type KvClient = Clerk;

/// Short deadlines, so a client whose store froze moves on to another peer
/// quickly and an operation that cannot finish ends as "unknown" soon.
fn client_options() -> ClientOptions {
    ClientOptions {
        timeout: Duration::from_secs(6),
        attempt_timeout: Duration::from_secs(1),
        backoff_max: Duration::from_millis(200),
        ..ClientOptions::default()
    }
}

/// What the clients did, shared with the nemesis.
#[derive(Default)]
struct Counters {
    /// Operations answered (writes acknowledged, reads answered).
    answered: AtomicU64,
    /// Writes with an unknown outcome.
    unknown_writes: AtomicU64,
    /// Reads that got no answer.
    failed_reads: AtomicU64,
}

/// The shared clock: nanoseconds since the test began.
#[derive(Clone, Copy)]
struct Clock(Instant);

impl Clock {
    fn now(self) -> u64 {
        u64::try_from(self.0.elapsed().as_nanos()).expect("the test runs for less than 500 years")
    }
}

/// One client's loop: until `stop`, a write (if the last operation was a
/// read) or a read, on a random key; returns its part of the history.
async fn run_client(
    id: u64,
    mut kv: KvClient,
    seed: u64,
    clock: Clock,
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
) -> Vec<Operation> {
    let mut rng = SplitMix64::new(seed ^ id.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut history = Vec::new();
    let mut last_was_write = false;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let k = key(rng.below(KEYS as u64) as usize);
        // After a write, always a read; otherwise a write two times in three.
        let write = !last_was_write && rng.below(3) != 0;
        last_was_write = write;
        if !write {
            let call = clock.now();
            let got = kv.get(k.as_bytes()).await;
            let ret = clock.now();
            match got {
                Ok(value) => {
                    counters.answered.fetch_add(1, Ordering::Relaxed);
                    history.push(Operation {
                        client: id,
                        key: k,
                        input: Input::Get,
                        output: Some(String::from_utf8_lossy(&value).into_owned()),
                        call,
                        ret: Some(ret),
                    });
                }
                Err(_) => {
                    counters.failed_reads.fetch_add(1, Ordering::Relaxed);
                }
            }
            continue;
        }
        n += 1;
        let append = rng.below(2) == 0;
        // Unique values, so every read tells which writes it saw.
        let (input, value) = if append {
            let v = format!("a{id}.{n};");
            (Input::Append(v.clone()), v)
        } else {
            let v = format!("p{id}.{n};");
            (Input::Put(v.clone()), v)
        };
        let call = clock.now();
        let done = if append {
            kv.append(k.as_bytes(), value.as_bytes()).await
        } else {
            kv.put(k.as_bytes(), value.as_bytes()).await
        };
        let ret = clock.now();
        let ret = match done {
            Ok(()) => {
                counters.answered.fetch_add(1, Ordering::Relaxed);
                Some(ret)
            }
            Err(_) => {
                counters.unknown_writes.fetch_add(1, Ordering::Relaxed);
                None
            }
        };
        history.push(Operation {
            client: id,
            key: k,
            input,
            output: None,
            call,
            ret,
        });
    }
    history
}

/// Waits until the clients answered `ops` more operations, or `within`
/// passes; returns whether they did.
async fn wait_for_progress(counters: &Counters, ops: u64, within: Duration) -> bool {
    let target = counters.answered.load(Ordering::Relaxed) + ops;
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if counters.answered.load(Ordering::Relaxed) >= target {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

/// `SetPartition(blocked)` on the store at `addr`, retried until it answers
/// or `within` passes; returns the store's id.
async fn set_partition(addr: &str, blocked: &[u64], within: Duration) -> Result<u64, String> {
    let deadline = Instant::now() + within;
    let mut last = String::new();
    while Instant::now() < deadline {
        let attempt = async {
            let mut debug = DebugClient::connect(format!("http://{addr}"))
                .await
                .map_err(|e| e.to_string())?;
            let answer = debug
                .set_partition(SetPartitionRequest {
                    blocked_store_ids: blocked.to_vec(),
                })
                .await
                .map_err(|e| e.to_string())?
                .into_inner();
            Ok::<u64, String>(answer.store_id)
        };
        match tokio::time::timeout(DEBUG_CALL, attempt).await {
            Ok(Ok(store_id)) => return Ok(store_id),
            Ok(Err(e)) => last = e,
            Err(_) => last = format!("no answer within {DEBUG_CALL:?}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(format!("SetPartition on {addr}: {last}"))
}

/// The store (1-based) leading the region, as the scheduler last heard.
async fn leader_store(client: &Client, ids: &[u64]) -> Option<usize> {
    let leader = client.region(b"").await.ok()??.leader?;
    ids.iter()
        .position(|&id| id == leader.store_id)
        .map(|i| i + 1)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    Kill,
    Pause,
    Partition,
}

/// Keeps the cluster's folder, and prints the tail of every process's log,
/// if the test panics; deletes it otherwise.
struct KeepLogsOnPanic {
    tmp: Option<TempDir>,
    logs: std::path::PathBuf,
}

impl Drop for KeepLogsOnPanic {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        if let Some(tmp) = self.tmp.take() {
            eprintln!("[nemesis] cluster folder kept: {}", tmp.path().display());
            let _ = tmp.keep();
        }
        let Ok(entries) = std::fs::read_dir(&self.logs) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("----- last lines of {} -----", entry.path().display());
            for line in &lines[lines.len().saturating_sub(30)..] {
                eprintln!("{line}");
            }
        }
    }
}

/// Writes every operation on `key`, by call time, into the cluster's folder
/// (kept on failure) for a closer look than the report's window.
fn dump_history(root: &std::path::Path, key: &str, history: &[Operation]) -> std::path::PathBuf {
    let mut ops: Vec<&Operation> = history.iter().filter(|op| op.key == key).collect();
    ops.sort_by_key(|op| op.call);
    let text: String = ops
        .iter()
        .map(|op| {
            let ret = op.ret.map_or("?".to_owned(), |r| r.to_string());
            let what = match &op.input {
                Input::Get => format!("get -> {:?}", op.output.as_deref().unwrap_or("")),
                Input::Put(v) => format!("put {v:?}"),
                Input::Append(v) => format!("append {v:?}"),
            };
            format!("client {} [{}, {ret}] {what}\n", op.client, op.call)
        })
        .collect();
    let path = root.join(format!("history-{key}.txt"));
    if let Err(e) = std::fs::write(&path, text) {
        eprintln!("[nemesis] cannot write {}: {e}", path.display());
    }
    path
}

fn seed() -> u64 {
    match std::env::var("NEMESIS_SEED") {
        Ok(s) => s.parse().expect("NEMESIS_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_history_under_kills_pauses_and_partitions_is_linearizable() {
    let seed = seed();
    progress(&format!(
        "seed {seed} (NEMESIS_SEED={seed} replays the nemesis's choices)"
    ));
    let binaries = Binaries::beside_current_exe().expect(
        "the workspace's binaries are built (cargo build -p tinykv --bins -p tinykv-scheduler-stub --bins)",
    );
    let tmp = TempDir::new().expect("temp dir");
    let dir = ClusterDir::new(tmp.path().join("cluster"));
    let _keep = KeepLogsOnPanic {
        logs: dir.root().join("logs"),
        tmp: Some(tmp),
    };
    let layout = Layout::on_free_ports(STORES).expect("free ports");
    let opts = ProcessClusterOptions {
        binaries,
        log_level: "info".to_owned(),
        server_config: Some(SERVER_CONFIG.to_owned()),
        scheduler_config: None,
    };
    // Started from the test's own thread, which outlives every child; a
    // panic drops the cluster first, which kills every process.
    let mut cluster = ProcessCluster::new(dir, layout.clone(), opts)
        .expect("cluster")
        .with_store_args(["--enable-fault-injection".to_owned()]);
    scenario(&mut cluster, &layout, seed).await;
}

async fn scenario(cluster: &mut ProcessCluster, layout: &Layout, seed: u64) {
    let started = Instant::now();
    let scheduler_addr = layout.scheduler_addr();
    cluster.start_all().expect("start the processes");
    wait_until_serving(&scheduler_addr, STORES, STORES, SERVE_TIMEOUT, progress)
        .await
        .expect("the region reaches 3 replicas and serves");
    // Store n's id, from its own fault service (which also proves it on).
    let mut ids = Vec::new();
    for n in 1..=STORES {
        let id = set_partition(&layout.store_addr(n), &[], RECOVERY)
            .await
            .expect("every store serves the fault service");
        ids.push(id);
    }
    progress(&format!("serving; store ids {ids:?}"));

    let clock = Clock(Instant::now());
    let stop = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(Counters::default());
    let mut clients = Vec::new();
    for id in 0..CLIENTS as u64 {
        let client = Client::connect(&scheduler_addr, client_options())
            .await
            .expect("connect a client");
        let kv = KvClient::new(client).await.expect("a client");
        clients.push(tokio::spawn(run_client(
            id,
            kv,
            seed,
            clock,
            Arc::clone(&stop),
            Arc::clone(&counters),
        )));
    }
    let observer = Client::connect(&scheduler_addr, client_options())
        .await
        .expect("connect the nemesis's client");

    let mut rng = SplitMix64::new(seed);
    let mut faults: BTreeMap<Fault, usize> = BTreeMap::new();
    let mut stalls = 0usize;
    let workload_end = Instant::now() + WORKLOAD;
    // Rounds of one fault of each kind, in a random order; at least one
    // round, however slow the machine.
    let mut round: Vec<Fault> = Vec::new();
    while Instant::now() < workload_end || faults.values().sum::<usize>() < 3 {
        if round.is_empty() {
            round = vec![Fault::Kill, Fault::Pause, Fault::Partition];
            for i in (1..round.len()).rev() {
                round.swap(i, rng.below(i as u64 + 1) as usize);
            }
        }
        let fault = round.pop().expect("refilled when empty");
        let exited = cluster.take_exited();
        assert!(exited.is_empty(), "a process exited by itself: {exited:?}");
        let leader = leader_store(&observer, &ids).await;
        let (victim, role) = match leader {
            Some(n) if rng.below(2) == 0 => (n, "leader"),
            _ => {
                let n = 1 + rng.below(STORES as u64) as usize;
                (
                    n,
                    if Some(n) == leader {
                        "leader"
                    } else {
                        "follower"
                    },
                )
            }
        };
        let before = counters.answered.load(Ordering::Relaxed);
        let held = Instant::now();
        let made_progress = match fault {
            Fault::Kill => {
                cluster.kill_store(victim).expect("kill -9");
                let ok = wait_for_progress(&counters, PROGRESS_OPS, FAULT_HOLD).await;
                cluster.start_store(victim).expect("restart");
                set_partition(&layout.store_addr(victim), &[], RECOVERY)
                    .await
                    .expect("the restarted store serves again");
                ok
            }
            Fault::Pause => {
                cluster.pause_store(victim).expect("SIGSTOP");
                let ok = wait_for_progress(&counters, PROGRESS_OPS, FAULT_HOLD).await;
                cluster.resume_store(victim).expect("SIGCONT");
                ok
            }
            Fault::Partition => {
                let others: Vec<u64> = (1..=STORES)
                    .filter(|&n| n != victim)
                    .map(|n| ids[n - 1])
                    .collect();
                set_partition(&layout.store_addr(victim), &others, RECOVERY)
                    .await
                    .expect("partition the victim");
                for n in (1..=STORES).filter(|&n| n != victim) {
                    set_partition(&layout.store_addr(n), &[ids[victim - 1]], RECOVERY)
                        .await
                        .expect("partition the others from the victim");
                }
                let ok = wait_for_progress(&counters, PROGRESS_OPS, FAULT_HOLD).await;
                for n in 1..=STORES {
                    set_partition(&layout.store_addr(n), &[], RECOVERY)
                        .await
                        .expect("heal");
                }
                ok
            }
        };
        *faults.entry(fault).or_default() += 1;
        let during = counters.answered.load(Ordering::Relaxed) - before;
        progress(&format!(
            "{fault:?} of store {victim} ({role}) for {:.1?}: {during} operations answered meanwhile{}",
            held.elapsed(),
            if made_progress {
                ""
            } else {
                " (held to the limit)"
            }
        ));
        if !wait_for_progress(&counters, PROGRESS_OPS, RECOVERY).await {
            stalls += 1;
            progress(&format!(
                "no progress within {RECOVERY:?} after healing {fault:?} of store {victim}"
            ));
        }
    }

    // Everything healed and running, then the clients stop.
    stop.store(true, Ordering::Relaxed);
    let mut history: Vec<Operation> = Vec::new();
    for task in clients {
        history.extend(task.await.expect("a client task"));
    }
    let exited = cluster.take_exited();
    assert!(exited.is_empty(), "a process exited by itself: {exited:?}");
    cluster.start_all().expect("every process runs");
    for n in 1..=STORES {
        cluster.resume_store(n).expect("SIGCONT");
        set_partition(&layout.store_addr(n), &[], RECOVERY)
            .await
            .expect("heal");
    }
    let workload_ops = history.len();

    // (b) One final read of each key, in the history: it must agree with
    // every acknowledged write.
    let mut reader = KvClient::new(
        Client::connect(&scheduler_addr, client_options())
            .await
            .expect("connect the final reader"),
    )
    .await
    .expect("a client");
    let deadline = Instant::now() + FINAL_READS;
    for i in 0..KEYS {
        let k = key(i);
        loop {
            let call = clock.now();
            match reader.get(k.as_bytes()).await {
                Ok(value) => {
                    history.push(Operation {
                        client: CLIENTS as u64,
                        key: k.clone(),
                        input: Input::Get,
                        output: Some(String::from_utf8_lossy(&value).into_owned()),
                        call,
                        ret: Some(clock.now()),
                    });
                    break;
                }
                Err(e) => assert!(
                    Instant::now() < deadline,
                    "the healed cluster does not answer a read of {k}: {e}"
                ),
            }
        }
    }

    // (a) The whole history is linearizable.
    let recorded = history.len();
    let history = without_unobserved_unknown_writes(&history);
    let checked = Instant::now();
    let outcome = check_within(&history, CHECK_BUDGET);
    let check_time = checked.elapsed();
    let writes = history.iter().filter(|op| op.input != Input::Get).count();
    let unknown = counters.unknown_writes.load(Ordering::Relaxed);
    progress(&format!(
        "operations: {workload_ops} recorded by {CLIENTS} clients over {KEYS} keys \
         ({writes} writes, {unknown} of them with unknown outcome; {} reads unanswered, \
         not recorded), plus {KEYS} final reads",
        counters.failed_reads.load(Ordering::Relaxed)
    ));
    progress(&format!(
        "faults: {} ({}); {stalls} slow recoveries",
        faults.values().sum::<usize>(),
        faults
            .iter()
            .map(|(kind, n)| format!("{kind:?} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    progress(&format!(
        "history: {} operations checked ({} unknown writes no read saw left out); \
         checked in {check_time:.2?}; wall time {:.1?}",
        history.len(),
        recorded - history.len(),
        started.elapsed()
    ));
    match outcome {
        Ok(()) => progress("result: linearizable, no acknowledged write lost"),
        Err(CheckError::NotLinearizable(violation)) => {
            let file = dump_history(cluster.dir().root(), &violation.key, &history);
            panic!(
                "seed {seed}: the history is not linearizable (every operation on the key: {}):\n{violation}",
                file.display()
            )
        }
        Err(e @ CheckError::Inconclusive { .. }) => {
            panic!("seed {seed}: {e}")
        }
    }
    assert_eq!(faults.len(), 3, "every kind of fault ran: {faults:?}");
}
