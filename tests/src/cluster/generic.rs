//! The MIT-6.824-style generic scenario (TinyKV `GenericTest`,
//! `kv/test_raftstore/test_test.go`): clients append to their own keys while
//! the network drops messages or partitions and stores crash and restart;
//! afterwards every client's appends must all be there, once each, in order.
//!
//! One round (TinyKV runs three):
//! 1. Every client loops until told to stop. With even odds it appends —
//!    puts its next key `"{client} {j:08}"` = `"x {client} {j} y"` — or scans
//!    its keys `[0, j)` and checks that the values, concatenated, are exactly
//!    its appends so far (a read sees every acknowledged write, nothing else).
//! 2. With `unreliable` or `partitions`, after a calm spell a chaos thread
//!    splits the stores into two random groups and/or drops a share of the
//!    messages, anew every election timeout or so.
//! 3. After `client_duration` the clients and the chaos stop and the network
//!    heals, so a request stuck in a minority completes.
//! 4. With `crash`, every store stops and restarts from its data.
//! 5. Each client scans its keys, checks them (`check_clnt_appends`), deletes
//!    them, and checks they are gone.
//! 6. With `max_raft_log`, every store's kept log of every region
//!    (`last_index - truncated_index`, from its engine's `RaftLocalState`
//!    and `RaftApplyState`, and the entries in its raft CF) must shrink to
//!    at most twice the limit, with no compacted entry left in the raft CF.
//!
//! Every random choice (client operations, partitions, dropped messages)
//! comes from one seed, printed when the test fails; `CLUSTER_SEED` replays
//! it. Thread timing still varies from run to run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use kvproto::raft_serverpb::{RaftApplyState, RaftLocalState};
use raftstore::Config;
use storage::{CF_DEFAULT, CF_RAFT, keys};

use super::Cluster;
use super::filter::{DropFilter, PartitionFilter};
use crate::raft_sim::rng::SimRng;

/// What a generic scenario does. TinyKV passes these as positional flags;
/// name the ones you want and take the rest from `Default`.
#[derive(Debug, Clone)]
pub struct GenericTestOptions {
    /// Concurrent clients, each appending to its own keys.
    pub clients: usize,
    /// Drop a share (`drop_percent`) of the raft messages while clients run.
    pub unreliable: bool,
    /// Stop and restart every store after each round, before the checks.
    pub crash: bool,
    /// Repartition the stores at random while clients run.
    pub partitions: bool,
    /// Compact the log beyond this many entries (`raft_log_gc_count_limit`)
    /// and check every store keeps at most twice that after each round
    /// (TinyKV's `maxraftlog`). The size limit (`raft_log_gc_size_limit`)
    /// stays at the test config's, far above what a scenario writes, so
    /// the count decides. `None` (TinyKV's `-1`) turns log GC off: both
    /// limits unbounded.
    pub max_raft_log: Option<u64>,
    /// Stores in the cluster (5 in TinyKV).
    pub stores: u64,
    /// Rounds (3 in TinyKV).
    pub rounds: usize,
    /// How long clients run each round (5 s in TinyKV).
    pub client_duration: Duration,
    /// With `unreliable`, the share of messages dropped, in percent (TinyKV's
    /// `DropFilter` drops 10%).
    pub drop_percent: u32,
    /// Split regions small (TinyKV's `split`: a region splits past
    /// `SPLIT_REGION_MAX_SIZE` bytes), so clients work across many regions.
    pub split: bool,
}

/// With `split`, regions split once past this many bytes (TinyKV's 300)...
pub const SPLIT_REGION_MAX_SIZE: u64 = 300;
/// ... at the key where this many are passed (TinyKV's 200).
pub const SPLIT_REGION_SPLIT_SIZE: u64 = 200;

impl Default for GenericTestOptions {
    fn default() -> Self {
        GenericTestOptions {
            clients: 1,
            unreliable: false,
            crash: false,
            partitions: false,
            max_raft_log: None,
            stores: 5,
            rounds: 3,
            client_duration: Duration::from_millis(800),
            drop_percent: 10,
            split: false,
        }
    }
}

/// The seed of a randomized cluster test: `CLUSTER_SEED` if set, else fresh.
pub fn seed_from_env() -> u64 {
    if let Some(seed) = std::env::var_os("CLUSTER_SEED") {
        let seed = seed.to_string_lossy();
        return seed
            .parse()
            .unwrap_or_else(|e| panic!("CLUSTER_SEED={seed:?} is not a u64: {e}"));
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    // Mix, so tests started in the same instant differ.
    SimRng::new(nanos ^ u64::from(std::process::id())).next_u64()
}

/// Prints the seed if the test panics while this is alive.
struct SeedReport<'a> {
    name: &'a str,
    seed: u64,
}

impl Drop for SeedReport<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!(
                "{}: failed with seed {}; replay with CLUSTER_SEED={}",
                self.name, self.seed, self.seed
            );
        }
    }
}

/// The key of client `client`'s `j`-th append.
pub fn client_key(client: usize, j: usize) -> Vec<u8> {
    format!("{client} {j:08}").into_bytes()
}

/// The value of client `client`'s `j`-th append.
pub fn client_value(client: usize, j: usize) -> String {
    format!("x {client} {j} y")
}

/// Checks that `v` holds client `client`'s appends `0..count`, each exactly
/// once and in order (TinyKV `checkClntAppends`).
pub fn check_clnt_appends(client: usize, v: &str, count: usize) -> Result<(), String> {
    let mut last_off = None;
    for j in 0..count {
        let wanted = client_value(client, j);
        let Some(off) = v.find(&wanted) else {
            return Err(format!(
                "client {client}: missing element {wanted:?} in append result {v:?}"
            ));
        };
        if v.rfind(&wanted) != Some(off) {
            return Err(format!(
                "client {client}: duplicate element {wanted:?} in append result {v:?}"
            ));
        }
        if last_off.is_some_and(|last| off <= last) {
            return Err(format!(
                "client {client}: wrong order for element {wanted:?} in append result {v:?}"
            ));
        }
        last_off = Some(off);
    }
    Ok(())
}

/// Checks that `v` holds every client's appends, each client's in order
/// (TinyKV `checkConcurrentAppends`); `counts[i]` is client `i`'s count.
pub fn check_concurrent_appends(v: &str, counts: &[usize]) -> Result<(), String> {
    counts
        .iter()
        .enumerate()
        .try_for_each(|(client, &count)| check_clnt_appends(client, v, count))
}

/// Client `client`'s values in `[0, j)`, concatenated, read linearizably.
fn scan_client(cluster: &Cluster, client: usize, j: usize) -> String {
    let values = cluster.scan(&client_key(client, 0), &client_key(client, j));
    String::from_utf8(values.concat()).expect("client values are UTF-8")
}

/// One client's round: appends and checking scans until `done`. Returns how
/// many appends were acknowledged.
fn run_client(
    cluster: &Cluster,
    client: usize,
    mut rng: SimRng,
    done: &AtomicBool,
) -> Result<usize, String> {
    let mut j = 0;
    let mut last = String::new();
    while !done.load(Ordering::Acquire) {
        if rng.chance(0.5) {
            let value = client_value(client, j);
            cluster.must_put(&client_key(client, j), value.as_bytes());
            last.push_str(&value);
            j += 1;
        } else {
            let got = scan_client(cluster, client, j);
            if got != last {
                return Err(format!(
                    "client {client}: scan after {j} appends read a wrong value\nwant: {last:?}\ngot:  {got:?}"
                ));
            }
        }
    }
    Ok(j)
}

/// Repartitions and/or drops messages, anew every election timeout or so,
/// until `stop` is signalled (or dropped).
fn run_chaos(
    cluster: &Cluster,
    opts: &GenericTestOptions,
    mut rng: SimRng,
    election_timeout: Duration,
    stop: &mpsc::Receiver<()>,
) {
    loop {
        cluster.clear_filters();
        if opts.partitions {
            let mut groups = vec![Vec::new(), Vec::new()];
            for store_id in cluster.store_ids() {
                groups[rng.below(2) as usize].push(store_id);
            }
            cluster.add_filter(Arc::new(PartitionFilter::new(groups)));
        }
        if opts.unreliable {
            cluster.add_filter(Arc::new(DropFilter {
                percent: opts.drop_percent,
            }));
        }
        let spread = election_timeout.as_millis() as u64 * 2;
        let interval = election_timeout + Duration::from_millis(rng.below(spread + 1));
        match stop.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => continue,
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// What one store keeps of one region's log, read from its engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeptLog {
    /// The store.
    pub store_id: u64,
    /// The region.
    pub region_id: u64,
    /// The last index compacted away (`RaftApplyState.truncated_state`).
    pub truncated: u64,
    /// The applied index (`RaftApplyState`).
    pub applied: u64,
    /// The last index in the log (`RaftLocalState`).
    pub last: u64,
    /// Log entries actually in the raft CF (the GC worker deletes compacted
    /// ones after the truncated state moves).
    pub entries: u64,
    /// The lowest index among them.
    pub first_entry: Option<u64>,
}

impl KeptLog {
    /// The log the states describe: `(truncated, last]`.
    pub fn kept(&self) -> u64 {
        self.last.saturating_sub(self.truncated)
    }

    /// Whether the raft CF still holds compacted entries (at or below the
    /// truncated index).
    pub fn holds_compacted(&self) -> bool {
        self.first_entry
            .is_some_and(|first| first <= self.truncated)
    }
}

/// Every running store's `KeptLog` of every region (as last seen by the
/// cluster) the store has a peer of.
///
/// # Panics
/// If a store is down, or its engine cannot be read.
pub fn kept_logs(cluster: &Cluster) -> Vec<KeptLog> {
    let mut logs = Vec::new();
    let mut key = Vec::new();
    loop {
        let region = cluster.region_for_key(&key);
        for store_id in cluster.store_ids() {
            // One point in time for the states and the log.
            let snap = cluster
                .store_engine(store_id)
                .unwrap_or_else(|| panic!("store {store_id} is not running"))
                .snapshot();
            let apply = snap
                .get_msg_cf::<RaftApplyState>(CF_DEFAULT, &keys::apply_state_key(region.id))
                .unwrap_or_else(|e| panic!("store {store_id}: read apply state: {e}"));
            let raft = snap
                .get_msg_cf::<RaftLocalState>(CF_RAFT, &keys::raft_state_key(region.id))
                .unwrap_or_else(|e| panic!("store {store_id}: read raft state: {e}"));
            let (Some(apply), Some(raft)) = (apply, raft) else {
                continue;
            };
            let (start, end) = keys::raft_log_range(region.id);
            let (mut entries, mut first_entry) = (0, None);
            snap.scan_cf(CF_RAFT, &start, &end, |key, _| {
                entries += 1;
                first_entry.get_or_insert(keys::raft_log_index(key)?);
                Ok(true)
            })
            .unwrap_or_else(|e| panic!("store {store_id}: scan the raft log: {e}"));
            logs.push(KeptLog {
                store_id,
                region_id: region.id,
                truncated: apply.truncated_state.map_or(0, |t| t.index),
                applied: apply.applied_index,
                last: raft.last_index,
                entries,
                first_entry,
            });
        }
        key = region.end_key;
        if key.is_empty() {
            return logs;
        }
    }
}

/// The kept logs longer than `2 * max` entries: TinyKV's bound on
/// `applied - truncated`, applied here to the whole log the states describe
/// (`last - truncated`, never smaller) and to the entries really in the
/// raft CF; and the logs whose raft CF still holds compacted entries.
pub fn untrimmed_logs(cluster: &Cluster, max: u64) -> Vec<KeptLog> {
    kept_logs(cluster)
        .into_iter()
        .filter(|log| log.kept() > 2 * max || log.entries > 2 * max || log.holds_compacted())
        .collect()
}

/// Waits until every store keeps at most `2 * max` entries of each region's
/// log, and no compacted ones (TinyKV checks once after a one-second sleep).
///
/// # Panics
/// After `timeout`, with the logs still too long.
pub fn must_trim_logs(cluster: &Cluster, max: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let untrimmed = untrimmed_logs(cluster, max);
        if untrimmed.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            panic!("logs were not trimmed to 2 * {max} entries: {untrimmed:?}");
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// Runs the generic scenario `opts` on a fresh cluster; `name` labels logs
/// and failure reports.
///
/// # Panics
/// On any failed check, with the seed that replays the choices.
pub fn run_generic_test(name: &str, opts: &GenericTestOptions) {
    let seed = seed_from_env();
    let _report = SeedReport { name, seed };
    let mut rng = SimRng::new(seed);
    eprintln!("{name}: seed {seed}");

    let mut cfg = Config::for_tests();
    match opts.max_raft_log {
        Some(max) => cfg.raft_log_gc_count_limit = max,
        None => {
            cfg.raft_log_gc_count_limit = u64::MAX;
            cfg.raft_log_gc_size_limit = u64::MAX;
        }
    }
    if opts.split {
        cfg = cfg.with_small_regions(SPLIT_REGION_MAX_SIZE, SPLIT_REGION_SPLIT_SIZE);
    }
    let election_timeout = cfg.raft_base_tick_interval * cfg.raft_election_timeout_ticks as u32;
    let cluster = Cluster::new(opts.stores, cfg, name);
    cluster.reseed_network(rng.fork());
    cluster.start();

    for round in 0..opts.rounds {
        let done = AtomicBool::new(false);
        let round_start = Instant::now();
        let counts: Vec<usize> = thread::scope(|s| {
            let clients: Vec<_> = (0..opts.clients)
                .map(|client| {
                    let client_rng = SimRng::new(rng.fork());
                    let (cluster, done) = (&cluster, &done);
                    s.spawn(move || run_client(cluster, client, client_rng, done))
                })
                .collect();
            let chaos = (opts.unreliable || opts.partitions).then(|| {
                // Let the clients work undisturbed for a while first.
                thread::sleep(opts.client_duration / 8);
                let (stop_tx, stop_rx) = mpsc::channel();
                let chaos_rng = SimRng::new(rng.fork());
                let cluster = &cluster;
                let handle = s
                    .spawn(move || run_chaos(cluster, opts, chaos_rng, election_timeout, &stop_rx));
                (stop_tx, handle)
            });
            thread::sleep(opts.client_duration.saturating_sub(round_start.elapsed()));
            done.store(true, Ordering::Release);
            if let Some((stop_tx, handle)) = chaos {
                drop(stop_tx);
                handle.join().expect("chaos thread");
                // Heal, so that requests stuck in a minority complete.
                cluster.clear_filters();
            }
            clients
                .into_iter()
                .enumerate()
                .map(|(client, h)| match h.join() {
                    Ok(Ok(j)) => j,
                    Ok(Err(e)) => panic!("{name}, round {round}: {e}"),
                    Err(_) => panic!("{name}, round {round}: client {client} panicked"),
                })
                .collect()
        });

        // Shown with the test's output on failure (or with --nocapture).
        eprintln!(
            "{name}: round {round}: appends per client {counts:?} in {:?}",
            round_start.elapsed()
        );

        if opts.crash {
            for store_id in cluster.store_ids() {
                cluster.stop_store(store_id);
            }
            let mut order = cluster.store_ids();
            for i in (1..order.len()).rev() {
                order.swap(i, rng.below(i as u64 + 1) as usize);
            }
            for store_id in order {
                cluster.start_store(store_id);
            }
        }

        thread::scope(|s| {
            for (client, &j) in counts.iter().enumerate() {
                let cluster = &cluster;
                s.spawn(move || {
                    let v = scan_client(cluster, client, j);
                    if let Err(e) = check_clnt_appends(client, &v, j) {
                        panic!("{name}, round {round}: {e}");
                    }
                    for k in 0..j {
                        cluster.must_delete(&client_key(client, k));
                    }
                    let left = scan_client(cluster, client, j);
                    assert!(
                        left.is_empty(),
                        "{name}, round {round}: client {client}'s keys survived deletion: {left:?}"
                    );
                });
            }
        });

        if let Some(max) = opts.max_raft_log {
            must_trim_logs(&cluster, max, Duration::from_secs(10));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn appends(client: usize, js: &[usize]) -> String {
        js.iter().map(|&j| client_value(client, j)).collect()
    }

    #[test]
    fn check_clnt_appends_finds_missing_duplicate_and_reordered_appends() {
        assert!(check_clnt_appends(1, &appends(1, &[0, 1, 2]), 3).is_ok());
        assert!(check_clnt_appends(1, &appends(1, &[0, 2]), 3).is_err());
        assert!(check_clnt_appends(1, &appends(1, &[0, 1, 1, 2]), 3).is_err());
        assert!(check_clnt_appends(1, &appends(1, &[0, 2, 1]), 3).is_err());
        // Client 1's tenth append is not mistaken for its first.
        assert!(check_clnt_appends(1, &appends(1, &[10]), 2).is_err());
    }

    #[test]
    fn check_concurrent_appends_checks_every_client() {
        let v = appends(0, &[0, 1]) + &appends(1, &[0]);
        assert!(check_concurrent_appends(&v, &[2, 1]).is_ok());
        assert!(check_concurrent_appends(&v, &[2, 2]).is_err());
    }
}
