//! The MIT-6.824-style generic scenario (TinyKV `GenericTest`,
//! `kv/test_raftstore/test_test.go`): clients append to their own keys while
//! the network drops messages or partitions, the scheduler adds and removes
//! peers, and stores crash and restart; afterwards every client's appends
//! must all be there, once each, in order.
//!
//! One round (TinyKV runs three), at TinyKV's load and timing:
//! 1. Every client loops until told to stop. With even odds it appends —
//!    puts its next key `"{client} {j:08}"` = `"x {client} {j} y"` — or scans
//!    its keys `[0, j)` and checks that the values, concatenated, are exactly
//!    its appends so far (a read sees every acknowledged write, nothing else).
//! 2. With `unreliable` or `partitions`, after a calm spell ([`CALM_SPELL`])
//!    a chaos thread acts once per interval (an election timeout plus up to
//!    [`CHAOS_JITTER_MS`]): with `partitions` it clears the filters and
//!    splits the stores into two random groups; with `unreliable` it adds
//!    one more `DropFilter` (`drop_percent`). Without partitions nothing
//!    clears the drop filters, so they pile up as in TinyKV: after `k`
//!    intervals a message survives with probability `(1 - p)^k`; then the
//!    interval is TinyKV's election timeout, not ours
//!    ([`TINYKV_ELECTION_TIMEOUT`]), so the loss climbs as in TinyKV.
//! 3. With `confchange`, after a further [`CONF_CHANGE_CALM`] a conf-change
//!    thread (TinyKV's `confchanger`) loops: it picks a random region and a
//!    random store; if the region has a peer there (and another besides) it
//!    removes it, if not it adds one with a fresh id, through the
//!    scheduler's operators, waiting for each change; then it pauses up to
//!    [`CONF_CHANGE_PAUSE_MS`].
//! 4. `client_duration` after that, clients, chaos and conf changes stop.
//!    The network heals and gets an election timeout to find a leader, so
//!    a request stuck in a minority completes; then the clients are joined.
//! 5. With `confchange`, every store gets a peer of every region again.
//! 6. With `crash`, every store stops, and an election timeout later all
//!    restart from their data, in a random order.
//! 7. Each client scans its keys, checks them (`check_clnt_appends`), deletes
//!    them, and checks they are gone.
//! 8. With `max_raft_log`, every store's kept log of every region
//!    (`last_index - truncated_index`, from its engine's `RaftLocalState`
//!    and `RaftApplyState`, and the entries in its raft CF) must shrink to
//!    at most twice the limit, with no compacted entry left in the raft CF,
//!    within TinyKV's settle time ([`LOG_SETTLE`]).
//!
//! The election timeout is the test config's: `raft_base_tick_interval ×
//! raft_election_timeout_ticks`. Clients work `client_duration` per round,
//! 5 s as in TinyKV; `GENERIC_QUICK=1` in the environment shortens it for
//! local iteration (see [`Profile`]), and nothing else changes.
//!
//! Every random choice (client operations, partitions, dropped messages,
//! conf changes) comes from one seed, printed when the test fails;
//! `CLUSTER_SEED` replays it. Thread timing still varies from run to run.

use std::ffi::OsStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use kvproto::metapb;
use kvproto::raft_serverpb::{RaftApplyState, RaftLocalState};
use raftstore::Config;
use storage::{CF_DEFAULT, CF_RAFT, keys};

use super::Cluster;
use super::filter::{DropFilter, PartitionFilter};
use super::operators::find_peer;
use crate::raft_sim::rng::SimRng;

/// How long clients work undisturbed before the chaos starts (TinyKV
/// sleeps 300 ms before `networkchaos`).
pub const CALM_SPELL: Duration = Duration::from_millis(300);

/// How long after that the conf changes start (TinyKV sleeps 100 ms before
/// `confchanger`).
pub const CONF_CHANGE_CALM: Duration = Duration::from_millis(100);

/// The chaos interval is an election timeout plus a random `[0, this)` ms
/// (TinyKV: `electionTimeout + rand.Int63()%200` ms).
pub const CHAOS_JITTER_MS: u64 = 200;

/// TinyKV's test election timeout (50 ms ticks × 10), the pace at which
/// drop filters pile up when nothing clears them. Our test clock ticks five
/// times faster (10 ms) while a round lasts the same 5 s of wall time, so
/// one filter per *our* election timeout would pile about 25 of them in a
/// round (93 % loss, a network no request crosses within its deadline);
/// at TinyKV's pace a round ends with about 8 (57 % loss), the loss TinyKV's
/// scenarios are written for. Repartitions, which clear, keep our own
/// election timeout.
pub const TINYKV_ELECTION_TIMEOUT: Duration = Duration::from_millis(500);

/// The conf-change thread pauses a random `[0, this)` ms between changes
/// (TinyKV `confchanger`: `rand.Int63()%200` ms).
pub const CONF_CHANGE_PAUSE_MS: u64 = 200;

/// How long stores have, after the last delete, to trim their logs (TinyKV
/// sleeps one second, then checks once; we check until this deadline).
pub const LOG_SETTLE: Duration = Duration::from_secs(1);

/// The environment variable that selects [`Profile::Quick`].
pub const QUICK_ENV: &str = "GENERIC_QUICK";

/// How long clients work per round by default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// TinyKV's load: 5 s of client work per round. CI and
    /// `scripts/repeat-cluster-tests.sh` run this.
    Full,
    /// 0.8 s per round, for local iteration (`GENERIC_QUICK=1`). Loss piles
    /// up less and logs grow less in a round, so it proves less.
    Quick,
}

impl Profile {
    /// `Quick` if `GENERIC_QUICK` is set to anything but empty or `0`.
    pub fn from_env() -> Profile {
        Profile::from_value(std::env::var_os(QUICK_ENV).as_deref())
    }

    fn from_value(value: Option<&OsStr>) -> Profile {
        match value {
            Some(v) if !v.is_empty() && v != "0" => Profile::Quick,
            _ => Profile::Full,
        }
    }

    /// Clients' work per round.
    pub fn client_duration(self) -> Duration {
        match self {
            Profile::Full => Duration::from_secs(5),
            Profile::Quick => Duration::from_millis(800),
        }
    }
}

/// What a generic scenario does. TinyKV passes these as positional flags;
/// name the ones you want and take the rest from `Default`.
#[derive(Debug, Clone)]
pub struct GenericTestOptions {
    /// Concurrent clients, each appending to its own keys.
    pub clients: usize,
    /// Drop messages while clients run: one more `DropFilter` of
    /// `drop_percent` every chaos interval, piling up unless `partitions`
    /// clears them (TinyKV's `unreliable`).
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
    /// Add and remove peers at random through the scheduler while clients
    /// run, and give every store its peers back after each round (TinyKV's
    /// `confchange`).
    pub confchange: bool,
    /// Stores in the cluster (5 in TinyKV).
    pub stores: u64,
    /// Rounds (3 in TinyKV).
    pub rounds: usize,
    /// How long clients run each round after the calm spells (5 s in
    /// TinyKV; the default follows [`Profile::from_env`]).
    pub client_duration: Duration,
    /// With `unreliable`, the share of messages each `DropFilter` drops, in
    /// percent (TinyKV's `DropFilter` drops 10%).
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
            confchange: false,
            stores: 5,
            rounds: 3,
            client_duration: Profile::from_env().client_duration(),
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
pub(crate) struct SeedReport<'a> {
    pub(crate) name: &'a str,
    pub(crate) seed: u64,
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

/// What the chaos thread does in one interval (one turn of TinyKV's
/// `networkchaos` loop).
#[derive(Debug, Clone, PartialEq, Eq)]
struct ChaosStep {
    /// Remove every filter first. Only a repartition clears: without
    /// partitions the drop filters pile up.
    clear: bool,
    /// The two groups of a new partition.
    partition: Option<Vec<Vec<u64>>>,
    /// Add one more `DropFilter`.
    add_drop: bool,
    /// How long until the next step.
    interval: Duration,
}

/// Plans one chaos step over `store_ids`.
fn plan_chaos_step(
    opts: &GenericTestOptions,
    store_ids: &[u64],
    rng: &mut SimRng,
    election_timeout: Duration,
) -> ChaosStep {
    let partition = opts.partitions.then(|| {
        let mut groups = vec![Vec::new(), Vec::new()];
        for &store_id in store_ids {
            groups[rng.below(2) as usize].push(store_id);
        }
        groups
    });
    ChaosStep {
        clear: opts.partitions,
        partition,
        add_drop: opts.unreliable,
        interval: if opts.partitions {
            election_timeout
        } else {
            TINYKV_ELECTION_TIMEOUT.max(election_timeout)
        } + Duration::from_millis(rng.below(CHAOS_JITTER_MS)),
    }
}

/// What the chaos thread did in a round.
#[derive(Debug, Default, Clone, Copy)]
struct ChaosReport {
    /// Steps taken.
    steps: usize,
    /// Drop filters in place when it stopped.
    drop_filters: usize,
}

/// Repartitions and/or adds drop filters, one step per interval, until
/// `stop` is signalled (or dropped).
fn run_chaos(
    cluster: &Cluster,
    opts: &GenericTestOptions,
    mut rng: SimRng,
    election_timeout: Duration,
    stop: &mpsc::Receiver<()>,
) -> ChaosReport {
    let store_ids = cluster.store_ids();
    let mut report = ChaosReport::default();
    loop {
        let step = plan_chaos_step(opts, &store_ids, &mut rng, election_timeout);
        if step.clear {
            cluster.clear_filters();
            report.drop_filters = 0;
        }
        if let Some(groups) = step.partition {
            cluster.add_filter(Arc::new(PartitionFilter::new(groups)));
        }
        if step.add_drop {
            cluster.add_filter(Arc::new(DropFilter {
                percent: opts.drop_percent,
            }));
            report.drop_filters += 1;
        }
        report.steps += 1;
        match stop.recv_timeout(step.interval) {
            Err(RecvTimeoutError::Timeout) => continue,
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return report,
        }
    }
}

/// One conf change of TinyKV's `confchanger`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ConfChangeStep {
    /// The region has no peer on this store: add one.
    Add(u64),
    /// Remove the region's peer on the chosen store.
    Remove(metapb::Peer),
    /// The chosen store holds the region's only peer: leave it.
    Skip,
}

/// TinyKV's rule: remove the region's peer on `store_id` if it has one and
/// another besides, else add one there.
fn plan_conf_change(region: &metapb::Region, store_id: u64) -> ConfChangeStep {
    match find_peer(region, store_id) {
        Some(peer) if region.peers.len() > 1 => ConfChangeStep::Remove(peer),
        Some(_) => ConfChangeStep::Skip,
        None => ConfChangeStep::Add(store_id),
    }
}

/// What the conf-change thread did in a round.
#[derive(Debug, Default, Clone, Copy)]
struct ConfChangeReport {
    /// Peers added.
    added: usize,
    /// Peers removed.
    removed: usize,
}

/// Adds and removes peers at random, waiting for each change, until `stop`
/// is signalled (or dropped). A change under way when the stop comes is
/// finished first.
fn run_conf_changer(
    cluster: &Cluster,
    mut rng: SimRng,
    stop: &mpsc::Receiver<()>,
) -> ConfChangeReport {
    let store_count = cluster.store_ids().len() as u64;
    let mut report = ConfChangeReport::default();
    loop {
        let regions = cluster.scheduler_regions();
        let (region, _) = &regions[rng.below(regions.len() as u64) as usize];
        let store_id = rng.below(store_count) + 1;
        match plan_conf_change(region, store_id) {
            ConfChangeStep::Add(store_id) => {
                cluster.must_add_peer(region.id, cluster.alloc_peer(store_id));
                report.added += 1;
            }
            ConfChangeStep::Remove(peer) => {
                cluster.must_remove_peer(region.id, peer);
                report.removed += 1;
            }
            ConfChangeStep::Skip => {}
        }
        let pause = Duration::from_millis(rng.below(CONF_CHANGE_PAUSE_MS));
        match stop.recv_timeout(pause) {
            Err(RecvTimeoutError::Timeout) => continue,
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return report,
        }
    }
}

/// Gives every store a peer of every region again, one change at a time.
/// Returns how many peers were added.
fn restore_peers(cluster: &Cluster) -> usize {
    let mut added = 0;
    for (region, _) in cluster.scheduler_regions() {
        for store_id in cluster.store_ids() {
            if find_peer(&region, store_id).is_none() {
                cluster.must_add_peer(region.id, cluster.alloc_peer(store_id));
                added += 1;
            }
        }
    }
    added
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
    /// Their encoded size in bytes (MIT 6.824's raft-state size, less the
    /// few bytes of the hard state).
    pub bytes: u64,
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
            let (mut entries, mut bytes, mut first_entry) = (0, 0, None);
            snap.scan_cf(CF_RAFT, &start, &end, |key, value| {
                entries += 1;
                bytes += value.len() as u64;
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
                bytes,
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
        let (counts, chaos, changes) = thread::scope(|s| {
            let clients: Vec<_> = (0..opts.clients)
                .map(|client| {
                    let client_rng = SimRng::new(rng.fork());
                    let (cluster, done) = (&cluster, &done);
                    s.spawn(move || run_client(cluster, client, client_rng, done))
                })
                .collect();
            let chaos = (opts.unreliable || opts.partitions).then(|| {
                // Let the clients work undisturbed for a while first.
                thread::sleep(CALM_SPELL);
                let (stop_tx, stop_rx) = mpsc::channel();
                let chaos_rng = SimRng::new(rng.fork());
                let cluster = &cluster;
                let handle = s
                    .spawn(move || run_chaos(cluster, opts, chaos_rng, election_timeout, &stop_rx));
                (stop_tx, handle)
            });
            let changer = opts.confchange.then(|| {
                thread::sleep(CONF_CHANGE_CALM);
                let (stop_tx, stop_rx) = mpsc::channel();
                let changer_rng = SimRng::new(rng.fork());
                let cluster = &cluster;
                let handle = s.spawn(move || run_conf_changer(cluster, changer_rng, &stop_rx));
                (stop_tx, handle)
            });
            thread::sleep(opts.client_duration);
            // Clients, chaos and conf changes are told to stop together.
            done.store(true, Ordering::Release);
            let chaos_stop = chaos.map(|(stop_tx, handle)| {
                drop(stop_tx);
                handle
            });
            let changer_stop = changer.map(|(stop_tx, handle)| {
                drop(stop_tx);
                handle
            });
            let chaos = chaos_stop.map(|handle| {
                let report = handle.join().expect("chaos thread");
                // Heal, so that requests stuck in a minority complete, and
                // give the cluster an election timeout to settle on a
                // leader of a new term, as TinyKV does.
                cluster.clear_filters();
                thread::sleep(election_timeout);
                report
            });
            let counts: Vec<usize> = clients
                .into_iter()
                .enumerate()
                .map(|(client, h)| match h.join() {
                    Ok(Ok(j)) => j,
                    Ok(Err(e)) => panic!("{name}, round {round}: {e}"),
                    Err(_) => panic!("{name}, round {round}: client {client} panicked"),
                })
                .collect();
            let changes = changer_stop.map(|handle| match handle.join() {
                Ok(report) => report,
                Err(_) => panic!("{name}, round {round}: the conf-change thread panicked"),
            });
            (counts, chaos, changes)
        });

        // Shown with the test's output on failure (or with --nocapture).
        eprintln!(
            "{name}: round {round}: appends per client {counts:?} in {:?}; chaos {chaos:?}; \
             conf changes {changes:?}",
            round_start.elapsed()
        );

        if opts.confchange {
            let added = restore_peers(&cluster);
            eprintln!("{name}: round {round}: {added} peers added back");
        }

        if opts.crash {
            for store_id in cluster.store_ids() {
                cluster.stop_store(store_id);
            }
            // TinyKV waits an election timeout between stopping and
            // restarting; the peers' clocks start afresh either way.
            thread::sleep(election_timeout);
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
            must_trim_logs(&cluster, max, LOG_SETTLE);
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

    #[test]
    fn the_full_profile_is_tinykvs_load_unless_quick_is_asked_for() {
        assert_eq!(Profile::from_value(None), Profile::Full);
        assert_eq!(Profile::from_value(Some(OsStr::new(""))), Profile::Full);
        assert_eq!(Profile::from_value(Some(OsStr::new("0"))), Profile::Full);
        assert_eq!(Profile::from_value(Some(OsStr::new("1"))), Profile::Quick);
        assert_eq!(Profile::Full.client_duration(), Duration::from_secs(5));
        assert!(Profile::Quick.client_duration() < Profile::Full.client_duration());
    }

    const ELECTION_TIMEOUT: Duration = Duration::from_millis(100);
    const STORES: [u64; 5] = [1, 2, 3, 4, 5];

    fn assert_interval(step: &ChaosStep, base: Duration) {
        let max = base + Duration::from_millis(CHAOS_JITTER_MS);
        assert!(
            step.interval >= base && step.interval < max,
            "interval {:?} outside [{base:?}, {max:?})",
            step.interval
        );
    }

    /// TinyKV's `networkchaos` without partitions never clears its drop
    /// filters: every step adds one more.
    #[test]
    fn unreliable_chaos_piles_drop_filters_up() {
        let opts = GenericTestOptions {
            unreliable: true,
            ..Default::default()
        };
        let mut rng = SimRng::new(7);
        for _ in 0..50 {
            let step = plan_chaos_step(&opts, &STORES, &mut rng, ELECTION_TIMEOUT);
            assert!(!step.clear, "{step:?}");
            assert!(step.add_drop, "{step:?}");
            assert_eq!(step.partition, None);
            // At TinyKV's pace: about 8 filters in a 5 s round, not 25.
            assert_interval(&step, TINYKV_ELECTION_TIMEOUT);
        }
    }

    /// With partitions every step starts from a clean network: a new split
    /// of all stores into two groups, plus one drop filter if unreliable.
    #[test]
    fn partition_chaos_clears_and_splits_every_store() {
        for unreliable in [false, true] {
            let opts = GenericTestOptions {
                partitions: true,
                unreliable,
                ..Default::default()
            };
            let mut rng = SimRng::new(11);
            let mut splits = std::collections::HashSet::new();
            for _ in 0..50 {
                let step = plan_chaos_step(&opts, &STORES, &mut rng, ELECTION_TIMEOUT);
                assert!(step.clear, "{step:?}");
                assert_eq!(step.add_drop, unreliable);
                assert_interval(&step, ELECTION_TIMEOUT);
                let groups = step.partition.expect("a partition every step");
                assert_eq!(groups.len(), 2);
                let mut all: Vec<u64> = groups.concat();
                all.sort_unstable();
                assert_eq!(all, STORES);
                splits.insert(groups);
            }
            assert!(splits.len() > 5, "the splits vary: {splits:?}");
        }
    }

    /// Drop filters in place at once drop independently: after `k` of 10%
    /// a message survives with probability 0.9^k.
    #[test]
    fn stacked_drop_filters_compose() {
        use tinykv::cluster::filter::Filter;
        use tinykv::rng::SplitMix64;

        let filter = DropFilter { percent: 10 };
        let msg = kvproto::raft_serverpb::RaftMessage::default();
        let mut rng = SplitMix64::new(3);
        let trials = 100_000;
        for k in [1, 5, 10, 25] {
            let passed = (0..trials)
                .filter(|_| (0..k).all(|_| filter.allow(&msg, &mut rng)))
                .count();
            let survival = passed as f64 / trials as f64;
            let want = 0.9f64.powi(k);
            assert!(
                (survival - want).abs() < 0.01,
                "{k} filters: {survival} of messages passed, want {want}"
            );
        }
    }

    fn region(peers: &[(u64, u64)]) -> metapb::Region {
        metapb::Region {
            id: 1,
            peers: peers
                .iter()
                .map(|&(id, store_id)| metapb::Peer { id, store_id })
                .collect(),
            ..Default::default()
        }
    }

    /// TinyKV's `confchanger`: remove the peer on the chosen store if there
    /// is one and it is not the last, else add one there.
    #[test]
    fn conf_changes_follow_tinykvs_rule() {
        let three = region(&[(1, 1), (7, 2), (3, 3)]);
        assert_eq!(
            plan_conf_change(&three, 2),
            ConfChangeStep::Remove(metapb::Peer { id: 7, store_id: 2 })
        );
        assert_eq!(plan_conf_change(&three, 4), ConfChangeStep::Add(4));
        let one = region(&[(7, 2)]);
        assert_eq!(plan_conf_change(&one, 2), ConfChangeStep::Skip);
        assert_eq!(plan_conf_change(&one, 1), ConfChangeStep::Add(1));
    }
}
