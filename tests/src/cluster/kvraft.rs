//! MIT 6.824's Lab 3 (kvraft, `src/kvraft/test_test.go`, 2020) on the
//! region/leader test cluster: the lab's `Clerk` is
//! `tinykv::cluster::Clerk` (`Put`, `Append`, `Get`, writes exactly once
//! through a client session), the lab's servers are our stores, all peers
//! of the one region.
//!
//! [`run_generic_test`] is the lab's `GenericTest`, one round (the lab runs
//! three):
//! 1. every client (a fresh Clerk each round) puts `""` to its own key
//!    (`"0"`, `"1"`, …), then loops until told to stop: with even odds it
//!    appends `"x {client} {j} y"` (`j`: its appends so far) or gets the key
//!    and checks it reads exactly its appends so far;
//! 2. with `partitions`, after a calm spell, a partitioner splits the
//!    stores into two random groups every election timeout plus a random
//!    jitter ([`PARTITION_JITTER_MS`]; the lab: its 1 s election timeout
//!    plus up to 200 ms);
//! 3. `client_duration` later the clients are told to stop; the network
//!    heals; with `crash` every store stops and all restart from their
//!    data, while clients may still be waiting for an answer;
//! 4. once every client has returned, a checking Clerk gets each client's
//!    key: every append of that client must be there exactly once and in
//!    order (`check_clnt_appends`);
//! 5. with `max_raft_state`, every store's kept log of the region must be
//!    at most 8 × `max_raft_state` bytes (waiting up to [`LOG_SETTLE`] for
//!    log GC); without, no store may have compacted its log (the lab: "no
//!    snapshot is used").
//!
//! `unreliable` is the lab's unreliable network, on both paths: the stores'
//! raft messages are dropped (10 %, `DropFilter`) and delayed (up to
//! [`RAFT_DELAY_MAX`], `DelayFilter`), and every Clerk's link loses 10 % of
//! its requests and 10 % of the replies (`ClientLink::unreliable`): a lost
//! reply to a write that applied is what the session must absorb. The
//! partitioner keeps the loss in place whenever it repartitions, and
//! healing leaves the network unreliable, as in the lab.
//!
//! [`run_linearizability_test`] is `GenericTestLinearizability`: clients
//! pick one of `clients` keys at random for every operation (append with
//! odds 1/2, else put with odds 1/10, else get), every call and return is
//! recorded, and the whole history must be linearizable
//! (`crate::linearizability`).
//!
//! Time: the lab's clock is about ten times slower than our test config's
//! (its election timeout is 1 s, ours 100 ms); client work per round is the
//! lab's 5 s of wall time (`GENERIC_QUICK=1` shortens it), and the
//! partition interval follows our election timeout. Every random choice
//! (operations, partitions, losses) comes from one seed, printed when the
//! test fails; `CLUSTER_SEED` replays it (thread timing still varies).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use raftstore::Config;
use storage::{CF_DEFAULT, CF_LOCK, CF_WRITE, keys};
use tinykv::cluster::{Clerk, ClientLink};

use super::Cluster;
use super::filter::{DelayFilter, DropFilter, PartitionFilter};
use super::generic::{
    CALM_SPELL, KeptLog, Profile, SeedReport, check_clnt_appends, client_value, kept_logs,
    seed_from_env,
};
use crate::linearizability::{self, Input, Operation};
use crate::raft_sim::rng::SimRng;

/// The share of messages the unreliable network loses, in percent, on each
/// path (labrpc drops 10 % of requests and 10 % of replies).
pub const LOSS_PERCENT: u32 = 10;

/// The longest delay of a raft message on the unreliable network: labrpc
/// delays up to 27 ms against a 1 s election timeout; ours is 100 ms.
pub const RAFT_DELAY_MAX: Duration = Duration::from_millis(3);

/// The partition interval is an election timeout plus a random `[0, this)`
/// ms (the lab: `electionTimeout + rand.Int63()%200` ms).
pub const PARTITION_JITTER_MS: u64 = 200;

/// How long stores have, once clients are done, to trim their logs below
/// the bound (the lab checks at once; log GC here runs on a tick).
pub const LOG_SETTLE: Duration = Duration::from_secs(10);

/// The lab's bound on the kept log: 8 × `maxraftstate`.
pub const LOG_BOUND_FACTOR: u64 = 8;

/// The encoded size of one Clerk write of the lab's short keys and values
/// in the log, roughly (header with epoch, session and session clock, one
/// request: about 45 bytes). The count limit of log GC is
/// `max_raft_state` over this: a leader holds back at most about
/// `max_raft_state` bytes of log for a follower it cannot reach before it
/// compacts past it (that follower then catches up by snapshot), so the
/// kept log stays near 2 × `max_raft_state`, inside the lab's 8 ×.
pub const WRITE_ENTRY_BYTES: u64 = 50;

/// The raftstore config of a Lab 3 cluster: the test config, with log GC
/// by size at `max_raft_state` bytes (the lab's `maxraftstate`, the raft
/// state size past which a server snapshots) and by count as
/// [`WRITE_ENTRY_BYTES`] says; `None` (the lab's `-1`): no log GC at all.
pub fn kvraft_config(max_raft_state: Option<u64>) -> Config {
    let mut cfg = Config::for_tests();
    match max_raft_state {
        Some(bytes) => {
            cfg.raft_log_gc_size_limit = bytes;
            cfg.raft_log_gc_count_limit = (bytes / WRITE_ENTRY_BYTES).max(1);
        }
        None => {
            cfg.raft_log_gc_size_limit = u64::MAX;
            cfg.raft_log_gc_count_limit = u64::MAX;
        }
    }
    cfg
}

/// The election timeout of `cfg`.
pub fn election_timeout(cfg: &Config) -> Duration {
    cfg.raft_base_tick_interval * cfg.raft_election_timeout_ticks as u32
}

/// What a Lab 3 generic scenario does (the lab's `GenericTest` flags).
#[derive(Debug, Clone)]
pub struct KvraftTestOptions {
    /// Concurrent clients.
    pub clients: usize,
    /// The lab's unreliable network (module doc).
    pub unreliable: bool,
    /// Stop and restart every store at the end of each round.
    pub crash: bool,
    /// Repartition the stores at random while clients run.
    pub partitions: bool,
    /// The lab's `maxraftstate` in bytes; `None` is its `-1` (no log GC,
    /// and none may happen).
    pub max_raft_state: Option<u64>,
    /// Stores (the lab's servers: 5, or 7 for the linearizability tests).
    pub stores: u64,
    /// Rounds (3 in the lab).
    pub rounds: usize,
    /// How long clients run each round (5 s in the lab; the default
    /// follows `generic::Profile::from_env`).
    pub client_duration: Duration,
}

impl Default for KvraftTestOptions {
    fn default() -> Self {
        KvraftTestOptions {
            clients: 1,
            unreliable: false,
            crash: false,
            partitions: false,
            max_raft_state: None,
            stores: 5,
            rounds: 3,
            client_duration: Profile::from_env().client_duration(),
        }
    }
}

/// A started Lab 3 cluster of `stores` stores with `max_raft_state`.
pub fn new_kvraft_cluster(stores: u64, max_raft_state: Option<u64>, name: &str) -> Cluster {
    let cluster = Cluster::new(stores, kvraft_config(max_raft_state), name);
    cluster.start();
    cluster
}

/// A Clerk with a fresh client id, through `link`.
///
/// # Panics
/// If the scheduler cannot allocate an id.
pub fn new_clerk(cluster: &Cluster, link: Arc<ClientLink>) -> Clerk<'_> {
    Clerk::new(cluster.inner())
        .unwrap_or_else(|e| panic!("allocate a client id: {e}"))
        .with_link(link)
}

/// A Clerk reaching only `stores` (the lab's `makeClient(servers)`), over
/// a reliable link.
pub fn new_clerk_to<'c>(cluster: &'c Cluster, stores: &[u64]) -> Clerk<'c> {
    let link = Arc::new(ClientLink::new());
    link.connect_only(stores);
    new_clerk(cluster, link)
}

/// The lab's `Put(cfg, ck, key, value)`.
///
/// # Panics
/// If the Clerk gives up (its deadline passed, or the write's outcome
/// became unknown).
pub fn must_put(ck: &mut Clerk<'_>, key: &str, value: &str) {
    if let Err(e) = ck.put(key.as_bytes(), value.as_bytes()) {
        panic!(
            "client {}: Put({key:?}, {value:?}) failed: {e}",
            ck.client_id()
        );
    }
}

/// The lab's `Append(cfg, ck, key, value)`.
///
/// # Panics
/// As [`must_put`].
pub fn must_append(ck: &mut Clerk<'_>, key: &str, value: &str) {
    if let Err(e) = ck.append(key.as_bytes(), value.as_bytes()) {
        panic!(
            "client {}: Append({key:?}, {value:?}) failed: {e}",
            ck.client_id()
        );
    }
}

/// The lab's `Get(cfg, ck, key)`.
///
/// # Panics
/// If the Clerk gives up, or the value is not UTF-8.
pub fn must_get(ck: &mut Clerk<'_>, key: &str) -> String {
    match ck.get(key.as_bytes()) {
        Ok(value) => String::from_utf8(value)
            .unwrap_or_else(|e| panic!("client {}: Get({key:?}): not UTF-8: {e}", ck.client_id())),
        Err(e) => panic!("client {}: Get({key:?}) failed: {e}", ck.client_id()),
    }
}

/// The lab's `check(cfg, t, ck, key, value)`.
///
/// # Panics
/// If `key` does not read `want`.
pub fn must_check(ck: &mut Clerk<'_>, key: &str, want: &str) {
    let got = must_get(ck, key);
    assert_eq!(
        got, want,
        "Get({key:?}): expected {want:?}, received {got:?}"
    );
}

/// Sets the stores' network: `partition` (if any), and on an unreliable
/// network the loss and delay filters.
pub fn set_network(cluster: &Cluster, unreliable: bool, partition: Option<Vec<Vec<u64>>>) {
    cluster.clear_filters();
    if let Some(groups) = partition {
        cluster.add_filter(Arc::new(PartitionFilter::new(groups)));
    }
    if unreliable {
        cluster.add_filter(Arc::new(DropFilter {
            percent: LOSS_PERCENT,
        }));
        cluster.add_filter(Arc::new(DelayFilter {
            max: RAFT_DELAY_MAX,
        }));
    }
}

/// A client link: unreliable (with its own seed from `rng`) or not.
pub fn new_link(unreliable: bool, rng: &mut SimRng) -> Arc<ClientLink> {
    Arc::new(if unreliable {
        ClientLink::unreliable(LOSS_PERCENT, rng.fork())
    } else {
        ClientLink::new()
    })
}

/// Splits the stores into two random groups (the lab's `partitioner`), one
/// split per interval, until `stop` is signalled or dropped. Returns how
/// many splits it made.
fn run_partitioner(
    cluster: &Cluster,
    unreliable: bool,
    mut rng: SimRng,
    election_timeout: Duration,
    stop: &mpsc::Receiver<()>,
) -> usize {
    let mut splits = 0;
    loop {
        let mut groups = vec![Vec::new(), Vec::new()];
        for store_id in cluster.store_ids() {
            groups[rng.below(2) as usize].push(store_id);
        }
        set_network(cluster, unreliable, Some(groups));
        splits += 1;
        let interval = election_timeout + Duration::from_millis(rng.below(PARTITION_JITTER_MS));
        match stop.recv_timeout(interval) {
            Err(RecvTimeoutError::Timeout) => continue,
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return splits,
        }
    }
}

/// Stops every store, then restarts them all from their data in a random
/// order (the lab's `ShutdownServer` + `StartServer` for every server).
pub fn crash_and_restart(cluster: &Cluster, rng: &mut SimRng) {
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

/// The kept logs larger than `max_bytes`, or still holding compacted
/// entries.
pub fn oversized_logs(cluster: &Cluster, max_bytes: u64) -> Vec<KeptLog> {
    kept_logs(cluster)
        .into_iter()
        .filter(|log| log.bytes > max_bytes || log.holds_compacted())
        .collect()
}

/// Waits until every store keeps at most `max_bytes` of every region's log
/// (and no compacted entries): the lab's `LogSize() <= 8 * maxraftstate`.
///
/// # Panics
/// After `timeout`, with the logs still too large.
pub fn must_trim_logs_to(cluster: &Cluster, max_bytes: u64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let oversized = oversized_logs(cluster, max_bytes);
        if oversized.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "logs were not trimmed to {max_bytes} bytes within {timeout:?}: {oversized:?}"
        );
        thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts that no store compacted any log (the lab's check that
/// snapshots are not used when `maxraftstate` is -1).
pub fn must_not_compact(cluster: &Cluster) {
    let compacted: Vec<KeptLog> = kept_logs(cluster)
        .into_iter()
        .filter(|log| log.truncated != keys::RAFT_INIT_LOG_INDEX)
        .collect();
    assert!(
        compacted.is_empty(),
        "logs were compacted with log GC off: {compacted:?}"
    );
}

/// What a snapshot of region `region_id` on store `store_id` would carry
/// now, in bytes: every key and value of its data in the data column
/// families. The lab's `SnapshotSize()` is the persisted snapshot, which
/// holds the key/value map and the duplicate table; the session table is
/// measured by [`session_table_bytes`].
///
/// # Panics
/// If the store is down or its engine cannot be read.
pub fn region_data_bytes(cluster: &Cluster, store_id: u64, region_id: u64) -> u64 {
    let region = cluster
        .region(region_id)
        .unwrap_or_else(|| panic!("region {region_id} is unknown"));
    let snap = cluster
        .store_engine(store_id)
        .unwrap_or_else(|| panic!("store {store_id} is not running"))
        .snapshot();
    let start = keys::data_key(&region.start_key);
    let end = keys::data_end_key(&region.end_key);
    let mut bytes = 0;
    for cf in [CF_DEFAULT, CF_LOCK, CF_WRITE] {
        snap.scan_cf(cf, &start, &end, |key, value| {
            bytes += (key.len() + value.len()) as u64;
            Ok(true)
        })
        .unwrap_or_else(|e| panic!("store {store_id}: scan {cf}: {e}"));
    }
    bytes
}

/// The bytes of region `region_id`'s session table on store `store_id`
/// (every session's key and encoded state, `keys::client_session_range`):
/// what a snapshot of the region carries besides its data.
///
/// # Panics
/// If the store is down or its engine cannot be read.
pub fn session_table_bytes(cluster: &Cluster, store_id: u64, region_id: u64) -> u64 {
    let snap = cluster
        .store_engine(store_id)
        .unwrap_or_else(|| panic!("store {store_id} is not running"))
        .snapshot();
    let (start, end) = keys::client_session_range(region_id);
    let mut bytes = 0;
    snap.scan_cf(CF_DEFAULT, &start, &end, |key, value| {
        bytes += (key.len() + value.len()) as u64;
        Ok(true)
    })
    .unwrap_or_else(|e| panic!("store {store_id}: scan the region's sessions: {e}"));
    bytes
}

/// One client's round of the generic test: put `""`, then appends and
/// checking gets until `done`. Returns how many appends were acknowledged.
///
/// # Panics
/// If a get reads anything but the client's appends so far, or the Clerk
/// gives up.
fn run_append_client(
    ck: &mut Clerk<'_>,
    client: usize,
    mut rng: SimRng,
    done: &AtomicBool,
) -> usize {
    let key = client.to_string();
    let mut last = String::new();
    must_put(ck, &key, &last);
    let mut j = 0;
    while !done.load(Ordering::Acquire) {
        if rng.chance(0.5) {
            let value = client_value(client, j);
            must_append(ck, &key, &value);
            last.push_str(&value);
            j += 1;
        } else {
            let got = must_get(ck, &key);
            assert_eq!(
                got, last,
                "client {client}: get wrong value of key {key:?} after {j} appends"
            );
        }
    }
    j
}

/// One client's round of the linearizability test: random operations on
/// random keys until `done`, each recorded into `history` with its call
/// and return time (nanoseconds since `begin`). Returns how many writes
/// it made.
fn run_random_client(
    ck: &mut Clerk<'_>,
    client: usize,
    keys: usize,
    mut rng: SimRng,
    done: &AtomicBool,
    begin: Instant,
    history: &Mutex<Vec<Operation>>,
) -> usize {
    let now = || begin.elapsed().as_nanos() as u64;
    let mut j = 0;
    while !done.load(Ordering::Acquire) {
        let key = rng.below(keys as u64).to_string();
        let value = client_value(client, j);
        let call = now();
        let (input, output) = if rng.chance(0.5) {
            must_append(ck, &key, &value);
            j += 1;
            (Input::Append(value), None)
        } else if rng.chance(0.1) {
            must_put(ck, &key, &value);
            j += 1;
            (Input::Put(value), None)
        } else {
            (Input::Get, Some(must_get(ck, &key)))
        };
        let op = Operation {
            client: client as u64,
            key,
            input,
            output,
            call,
            ret: Some(now()),
        };
        history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(op);
    }
    j
}

/// What one client thread does in a round.
enum ClientWork<'h> {
    /// The generic test's appends to the client's own key.
    Appends,
    /// The linearizability test's random operations, recorded.
    Random {
        begin: Instant,
        history: &'h Mutex<Vec<Operation>>,
    },
}

/// Runs one round: clients (with partitions, a partitioner) for
/// `client_duration`, then heal and (with `crash`) restart every store,
/// then wait for the clients. Returns each client's acknowledged writes
/// (for the generic test, its appends).
fn run_round(
    cluster: &Cluster,
    opts: &KvraftTestOptions,
    rng: &mut SimRng,
    work: &ClientWork<'_>,
    name: &str,
    round: usize,
) -> Vec<usize> {
    let election_timeout = election_timeout(&kvraft_config(opts.max_raft_state));
    let done = AtomicBool::new(false);
    thread::scope(|s| {
        let clients: Vec<_> = (0..opts.clients)
            .map(|client| {
                let client_rng = SimRng::new(rng.fork());
                let link = new_link(opts.unreliable, rng);
                let done = &done;
                s.spawn(move || {
                    let mut ck = new_clerk(cluster, link);
                    match work {
                        ClientWork::Appends => run_append_client(&mut ck, client, client_rng, done),
                        ClientWork::Random { begin, history } => run_random_client(
                            &mut ck,
                            client,
                            opts.clients,
                            client_rng,
                            done,
                            *begin,
                            history,
                        ),
                    }
                })
            })
            .collect();
        let partitioner = opts.partitions.then(|| {
            // Let the clients work undisturbed for a while first.
            thread::sleep(CALM_SPELL);
            let (stop_tx, stop_rx) = mpsc::channel();
            let partitioner_rng = SimRng::new(rng.fork());
            let unreliable = opts.unreliable;
            let handle = s.spawn(move || {
                run_partitioner(
                    cluster,
                    unreliable,
                    partitioner_rng,
                    election_timeout,
                    &stop_rx,
                )
            });
            (stop_tx, handle)
        });
        thread::sleep(opts.client_duration);
        done.store(true, Ordering::Release);
        let splits = partitioner.map(|(stop_tx, handle)| {
            drop(stop_tx);
            let splits = handle.join().expect("the partitioner panicked");
            // Heal: a request stuck in a minority completes once its
            // store hears of the new term.
            set_network(cluster, opts.unreliable, None);
            splits
        });
        if opts.crash {
            crash_and_restart(cluster, rng);
        }
        let counts: Vec<usize> = clients
            .into_iter()
            .enumerate()
            .map(|(client, handle)| {
                handle.join().unwrap_or_else(|_| {
                    panic!("{name}, round {round}: client {client} failed (see its panic above)")
                })
            })
            .collect();
        eprintln!("{name}: round {round}: writes per client {counts:?}; partitions {splits:?}");
        counts
    })
}

/// The checks after a round that depend on `max_raft_state`: with it,
/// the logs are trimmed to the lab's bound, and (a round writes far more
/// than `max_raft_state`) some store did compact; without, none did.
fn check_log_size(cluster: &Cluster, max_raft_state: Option<u64>) {
    match max_raft_state {
        Some(max) => {
            must_trim_logs_to(cluster, LOG_BOUND_FACTOR * max, LOG_SETTLE);
            let logs = kept_logs(cluster);
            assert!(
                logs.iter()
                    .any(|log| log.truncated > keys::RAFT_INIT_LOG_INDEX),
                "no store compacted its log past {max} bytes: {logs:?}"
            );
        }
        None => must_not_compact(cluster),
    }
}

/// Runs the lab's `GenericTest` as `opts` says on a fresh cluster; `name`
/// labels logs and failure reports.
///
/// # Panics
/// On any failed check, with the seed that replays the choices.
pub fn run_generic_test(name: &str, opts: &KvraftTestOptions) {
    let seed = seed_from_env();
    let _report = SeedReport { name, seed };
    let mut rng = SimRng::new(seed);
    eprintln!("{name}: seed {seed}");

    let cluster = Cluster::new(opts.stores, kvraft_config(opts.max_raft_state), name);
    cluster.reseed_network(rng.fork());
    cluster.start();
    set_network(&cluster, opts.unreliable, None);
    let mut ck = new_clerk(&cluster, new_link(opts.unreliable, &mut rng));

    for round in 0..opts.rounds {
        let counts = run_round(&cluster, opts, &mut rng, &ClientWork::Appends, name, round);
        for (client, &count) in counts.iter().enumerate() {
            let value = must_get(&mut ck, &client.to_string());
            if let Err(e) = check_clnt_appends(client, &value, count) {
                panic!("{name}, round {round}: {e}");
            }
        }
        check_log_size(&cluster, opts.max_raft_state);
    }
}

/// Runs the lab's `GenericTestLinearizability` as `opts` says on a fresh
/// cluster: `opts.clients` clients over as many keys, every operation
/// recorded, the history checked once all rounds are done.
///
/// # Panics
/// If the history is not linearizable (with the window that fails), or
/// on any other failed check, with the seed.
pub fn run_linearizability_test(name: &str, opts: &KvraftTestOptions) {
    let seed = seed_from_env();
    let _report = SeedReport { name, seed };
    let mut rng = SimRng::new(seed);
    eprintln!("{name}: seed {seed}");

    let cluster = Cluster::new(opts.stores, kvraft_config(opts.max_raft_state), name);
    cluster.reseed_network(rng.fork());
    cluster.start();
    set_network(&cluster, opts.unreliable, None);

    let begin = Instant::now();
    let history = Mutex::new(Vec::new());
    let work = ClientWork::Random {
        begin,
        history: &history,
    };
    for round in 0..opts.rounds {
        run_round(&cluster, opts, &mut rng, &work, name, round);
        check_log_size(&cluster, opts.max_raft_state);
    }

    let history = history.into_inner().unwrap_or_else(PoisonError::into_inner);
    let started = Instant::now();
    let checked = linearizability::check(&history);
    eprintln!(
        "{name}: checked {} operations in {:?}",
        history.len(),
        started.elapsed()
    );
    if let Err(violation) = checked {
        panic!("{name}: history is not linearizable:\n{violation}");
    }
}
