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
//! 6. With `max_raft_log`, every store's kept log must shrink to at most
//!    twice the limit.
//!
//! Every random choice (client operations, partitions, dropped messages)
//! comes from one seed, printed when the test fails; `CLUSTER_SEED` replays
//! it. Thread timing still varies from run to run.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use kvproto::raft_serverpb::RaftApplyState;
use raftstore::Config;
use storage::CF_DEFAULT;
use storage::keys;

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
    /// Compact the log beyond this many entries and check it stays within
    /// twice that (TinyKV's `maxraftlog`); `None` (TinyKV's `-1`) leaves
    /// log GC off.
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
}

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

/// Waits until every store keeps at most `2 * max` applied entries of each
/// region (TinyKV checks once after a one-second sleep).
fn must_trim_logs(cluster: &Cluster, max: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let mut untrimmed = Vec::new();
        let mut key = Vec::new();
        loop {
            let region = cluster.region_for_key(&key);
            for store_id in cluster.store_ids() {
                let engine = cluster
                    .store_engine(store_id)
                    .unwrap_or_else(|| panic!("store {store_id} is not running"));
                let state = engine
                    .get_msg_cf::<RaftApplyState>(CF_DEFAULT, &keys::apply_state_key(region.id))
                    .unwrap_or_else(|e| panic!("store {store_id}: read apply state: {e}"));
                let Some(state) = state else { continue };
                let truncated = state.truncated_state.map_or(0, |t| t.index);
                if state.applied_index - truncated > 2 * max {
                    untrimmed.push((store_id, region.id, state.applied_index, truncated));
                }
            }
            key = region.end_key;
            if key.is_empty() {
                break;
            }
        }
        if untrimmed.is_empty() {
            return;
        }
        if Instant::now() >= deadline {
            panic!(
                "logs were not trimmed to 2 * {max}: (store, region, applied, truncated) {untrimmed:?}"
            );
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
