//! Multi-raft scenarios with the scheduler scheduling by itself: its replica
//! checker (on every region heartbeat) and balancers (on its periodic pass)
//! decide where peers and leaders go, and stores split their regions as
//! data grows. No test scripts a membership change.
//!
//! - `test_scheduler_grows_a_bootstrapped_region_to_three_replicas`: one
//!   store bootstraps the only region and serves alone; two stores join and
//!   the scheduler brings the region to three replicas; the data survives
//!   the bootstrapping store's loss.
//! - `test_region_splits_into_many_under_writes_with_moving_leaders`:
//!   clients write and scan across regions while the region splits into
//!   many, leaders move and a store restarts; every scan sees exactly the
//!   writes acknowledged before it, once each and in order.
//! - `test_replicas_of_a_store_stopped_for_good_are_replaced`: a store is
//!   lost for good; the scheduler replaces every replica it held, as the
//!   stores themselves then report.
//! - `test_leader_transfer_to_a_stopped_store_does_not_block_writes`: a
//!   regression the second scenario found (the balancer moves leaders to a
//!   store that has just stopped): a leader transfer the scheduler keeps
//!   repeating towards an unreachable peer must not keep the region from
//!   taking writes.
//!
//! Every wait is on a condition with a deadline; on failure a test prints
//! its seed (`CLUSTER_SEED` replays the random choices) and the cluster's
//! state as the scheduler and each running store see it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use kvproto::metapb;
use kvproto::raft_serverpb::PeerState;
use raftstore::Config;
use scheduler_stub::{Operator, ScheduleConfig};
use tinykv::cluster::ClusterOptions;
use tinykv_tests::cluster::generic::seed_from_env;
use tinykv_tests::cluster::{Cluster, FIRST_REGION_ID};
use tinykv_tests::raft_sim::rng::SimRng;

/// How long the cluster may take to reach a state the scheduler works
/// towards (replicas added or replaced: snapshots, catch-up, conf changes
/// on a loaded 2-core machine).
const CONVERGE: Duration = Duration::from_secs(60);

/// Scheduling on, with a periodic pass every 100 ms, and stores that are
/// silent for `max_store_down_time` counted down. Operator deadlines stay
/// at their defaults (minutes): no scenario relies on one passing.
fn schedule_config(max_store_down_time: Duration) -> ScheduleConfig {
    ScheduleConfig {
        max_store_down_time,
        balance_interval: Duration::from_millis(100),
        ..ScheduleConfig::enabled_default()
    }
}

/// The value written for `key`: it names its key, so a scan's values say
/// which keys it saw.
fn value_of(key: &[u8]) -> Vec<u8> {
    [b"v:".as_slice(), key].concat()
}

/// The key a value of [`value_of`] was written for.
fn key_of(value: &[u8]) -> Vec<u8> {
    value
        .strip_prefix(b"v:")
        .unwrap_or_else(|| panic!("value {:?} was not written by this test", show(value)))
        .to_vec()
}

fn show(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// Calls `check` until it returns `Ok`, for up to `timeout`; panics with
/// `what` and the last `Err` it returned.
fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match check() {
            Ok(value) => return value,
            Err(last) if Instant::now() >= deadline => {
                panic!("{what}: not reached within {timeout:?}; last seen: {last}")
            }
            Err(_) => thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Prints the seed and the cluster's state if the test panics while this
/// is alive.
struct FailureReport<'a> {
    name: &'a str,
    seed: Option<u64>,
    cluster: &'a Cluster,
}

impl Drop for FailureReport<'_> {
    fn drop(&mut self) {
        if !thread::panicking() {
            return;
        }
        if let Some(seed) = self.seed {
            eprintln!(
                "{}: failed with seed {seed}; replay with CLUSTER_SEED={seed}",
                self.name
            );
        }
        eprintln!(
            "{}: state at failure:\n{}",
            self.name,
            describe(self.cluster)
        );
    }
}

/// The cluster as the scheduler and every running store see it.
fn describe(cluster: &Cluster) -> String {
    let mut out = String::from("scheduler's regions:\n");
    match cluster.scheduler().scan_regions(b"", b"", 0) {
        Ok(regions) => {
            for (region, leader) in regions {
                out += &format!(
                    "  region {} [{:?}, {:?}) epoch {:?} peers {:?} leader {:?} operator {:?}\n",
                    region.id,
                    show(&region.start_key),
                    show(&region.end_key),
                    region.region_epoch.unwrap_or_default(),
                    region.peers,
                    leader,
                    cluster.scheduler().operator(region.id),
                );
            }
        }
        Err(e) => out += &format!("  cannot scan: {e}\n"),
    }
    for store_id in cluster.store_ids() {
        match cluster.inner().region_states(store_id) {
            None => out += &format!("store {store_id}: not running\n"),
            Some(Err(e)) => out += &format!("store {store_id}: cannot read: {e}\n"),
            Some(Ok(states)) => {
                out += &format!("store {store_id}:\n");
                for (region_id, state) in states {
                    let peer_state = state.state();
                    let region = state.region.unwrap_or_default();
                    out += &format!(
                        "  region {region_id} {peer_state:?} [{:?}, {:?}) epoch {:?} peers {:?}\n",
                        show(&region.start_key),
                        show(&region.end_key),
                        region.region_epoch.unwrap_or_default(),
                        region.peers,
                    );
                }
            }
        }
    }
    out
}

/// The regions held by the running stores (Normal peers only), as those
/// stores report them: region id -> store id -> the region as that store
/// has it.
fn regions_on_stores(cluster: &Cluster) -> BTreeMap<u64, BTreeMap<u64, metapb::Region>> {
    let mut regions: BTreeMap<u64, BTreeMap<u64, metapb::Region>> = BTreeMap::new();
    for store_id in cluster.store_ids() {
        let Some(states) = cluster.inner().region_states(store_id) else {
            continue;
        };
        let states = states.unwrap_or_else(|e| panic!("store {store_id}: {e}"));
        for (region_id, state) in states {
            if state.state() == PeerState::Normal
                && let Some(region) = state.region
            {
                regions
                    .entry(region_id)
                    .or_default()
                    .insert(store_id, region);
            }
        }
    }
    regions
}

fn epoch(region: &metapb::Region) -> (u64, u64) {
    let e = region.region_epoch.unwrap_or_default();
    (e.version, e.conf_ver)
}

/// Checks that the running stores agree on a layout of regions that covers
/// the key space once, each region with `replicas` peers on distinct
/// running stores, each of which holds the region at the same epoch, and
/// that the scheduler knows the same regions with the same peers. Returns
/// the regions in key order, or what is not so yet.
fn check_replicated(cluster: &Cluster, replicas: usize) -> Result<Vec<metapb::Region>, String> {
    let on_stores = regions_on_stores(cluster);
    let mut layout = Vec::new();
    for (region_id, views) in &on_stores {
        // The newest view; the stores must all have caught up to it.
        let newest = views
            .values()
            .max_by_key(|r| epoch(r))
            .expect("a region in the map is held by a store");
        let stores: BTreeSet<u64> = newest.peers.iter().map(|p| p.store_id).collect();
        if newest.peers.len() != replicas || stores.len() != replicas {
            return Err(format!(
                "region {region_id} has peers {:?}, want {replicas} on distinct stores",
                newest.peers
            ));
        }
        for store_id in &stores {
            if !cluster.inner().is_running(*store_id) {
                return Err(format!(
                    "region {region_id} has a peer on stopped store {store_id}"
                ));
            }
            match views.get(store_id) {
                Some(view) if epoch(view) == epoch(newest) => {}
                other => {
                    return Err(format!(
                        "region {region_id}: store {store_id} has {:?}, the newest is epoch {:?}",
                        other.map(|r| r.region_epoch),
                        newest.region_epoch
                    ));
                }
            }
        }
        layout.push(newest.clone());
    }
    layout.sort_by(|a, b| a.start_key.cmp(&b.start_key));
    let mut expected_start: &[u8] = b"";
    for (i, region) in layout.iter().enumerate() {
        if region.start_key.as_slice() != expected_start {
            return Err(format!(
                "regions do not tile the key space: region {} starts at {:?}, want {:?}",
                region.id,
                show(&region.start_key),
                show(expected_start)
            ));
        }
        if region.end_key.is_empty() && i + 1 != layout.len() {
            return Err(format!("region {} ends the key space early", region.id));
        }
        expected_start = &region.end_key;
    }
    if !expected_start.is_empty() || layout.is_empty() {
        return Err("the regions do not reach the end of the key space".to_owned());
    }
    let known = cluster
        .scheduler()
        .scan_regions(b"", b"", 0)
        .map_err(|e| e.to_string())?;
    let known: Vec<(u64, (u64, u64))> = known.iter().map(|(r, _)| (r.id, epoch(r))).collect();
    let held: Vec<(u64, (u64, u64))> = layout.iter().map(|r| (r.id, epoch(r))).collect();
    if known != held {
        return Err(format!(
            "the scheduler knows {known:?}, the stores hold {held:?}"
        ));
    }
    Ok(layout)
}

/// Asserts the whole key space reads as exactly `written` (key -> value).
fn must_scan_all(cluster: &Cluster, written: &BTreeMap<Vec<u8>, Vec<u8>>) {
    let values = cluster.scan(b"", b"");
    let got: Vec<Vec<u8>> = values.iter().map(|v| key_of(v)).collect();
    let want: Vec<Vec<u8>> = written.keys().cloned().collect();
    if got != want {
        let got_set: BTreeSet<&Vec<u8>> = got.iter().collect();
        let missing: Vec<String> = want
            .iter()
            .filter(|k| !got_set.contains(k))
            .map(|k| show(k))
            .collect();
        panic!(
            "scan of everything: {} keys, want {}; missing {missing:?}",
            got.len(),
            want.len()
        );
    }
}

/// One store bootstraps the only region (one replica) and serves writes
/// alone; two more stores join and the scheduler, unasked, adds peers on
/// them until the region has three replicas on three stores, as every one
/// of them reports. With the bootstrapping store then stopped, a new leader
/// on another store serves every key written before and after the region
/// grew.
#[test]
fn test_scheduler_grows_a_bootstrapped_region_to_three_replicas() {
    let name = "test_scheduler_grows_a_bootstrapped_region_to_three_replicas";
    let opts = ClusterOptions::new(3, Config::for_tests())
        .bootstrap_single_replica()
        .schedule(schedule_config(Duration::from_secs(30 * 60)));
    let cluster = Cluster::with_options(opts, name);
    let _report = FailureReport {
        name,
        seed: None,
        cluster: &cluster,
    };
    cluster.start_with(&[1]);

    let mut written = BTreeMap::new();
    for i in 0..50 {
        let key = format!("before-{i:03}").into_bytes();
        cluster.must_put(&key, &value_of(&key));
        written.insert(key.clone(), value_of(&key));
    }
    // Alone, store 1 served every write: the region was not grown onto
    // stores that never started (they are unknown to the scheduler).
    let region = cluster.region(FIRST_REGION_ID).expect("the first region");
    assert_eq!(
        region.peers,
        vec![metapb::Peer { id: 1, store_id: 1 }],
        "before the other stores join"
    );

    cluster.start_store(2);
    cluster.start_store(3);
    let layout = wait_until("region 1 on three stores", CONVERGE, || {
        check_replicated(&cluster, 3)
    });
    assert_eq!(layout.len(), 1, "no split was asked for: {layout:?}");
    let stores: BTreeSet<u64> = layout[0].peers.iter().map(|p| p.store_id).collect();
    assert_eq!(stores, BTreeSet::from([1, 2, 3]));

    for i in 0..50 {
        let key = format!("after-{i:03}").into_bytes();
        cluster.must_put(&key, &value_of(&key));
        written.insert(key.clone(), value_of(&key));
    }

    cluster.stop_store(1);
    let leader = cluster.must_leader_by_read(FIRST_REGION_ID);
    assert_ne!(leader.store_id, 1, "store 1 is stopped");
    for (key, value) in &written {
        cluster.must_get(key, value);
    }
    must_scan_all(&cluster, &written);
}

/// What the clients of `test_region_splits_into_many_under_writes_with_moving_leaders`
/// share: the keys whose put started, and those acknowledged.
#[derive(Default)]
struct Writes {
    /// Keys whose put was started (acknowledged or not).
    started: Mutex<BTreeSet<Vec<u8>>>,
    /// Keys whose put was acknowledged.
    acked: Mutex<BTreeSet<Vec<u8>>>,
    acked_count: AtomicU64,
}

impl Writes {
    fn start(&self, key: &[u8]) {
        lock(&self.started).insert(key.to_vec());
    }

    fn ack(&self, key: &[u8]) {
        lock(&self.acked).insert(key.to_vec());
        self.acked_count.fetch_add(1, Ordering::SeqCst);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sets `stop` if the thread it lives on panics, so the others end too.
struct StopOnPanic<'a>(&'a AtomicBool);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}

/// Checks one scan (the values it returned) against the writes: keys in
/// strictly increasing order (none twice), every key acknowledged before
/// the scan started present, and no key whose put had not started by the
/// time the scan ended.
fn check_scan(
    values: &[Vec<u8>],
    acked_before: &BTreeSet<Vec<u8>>,
    started_after: &BTreeSet<Vec<u8>>,
) -> Result<(), String> {
    let keys: Vec<Vec<u8>> = values.iter().map(|v| key_of(v)).collect();
    if let Some(w) = keys.windows(2).find(|w| w[0] >= w[1]) {
        return Err(format!(
            "keys out of order or repeated: {:?} then {:?}",
            show(&w[0]),
            show(&w[1])
        ));
    }
    let seen: BTreeSet<&Vec<u8>> = keys.iter().collect();
    if let Some(missing) = acked_before.iter().find(|k| !seen.contains(k)) {
        return Err(format!(
            "acknowledged key {:?} missing ({} keys seen, {} acknowledged before the scan)",
            show(missing),
            keys.len(),
            acked_before.len()
        ));
    }
    if let Some(unknown) = keys.iter().find(|k| !started_after.contains(*k)) {
        return Err(format!("key {:?} was never written", show(unknown)));
    }
    Ok(())
}

/// Clients keep writing unique keys spread over the key space (regions
/// split past 1000 bytes) and scanning all of it, across region boundaries,
/// while the first region splits into at least 8; meanwhile the test moves
/// leaders (`TransferLeader` operators through the scheduler, which also
/// balances leaders by itself) and stops a store for a while. Every scan
/// returns each key acknowledged before it started, in order, none twice,
/// and no key nobody wrote; a final scan returns exactly the acknowledged
/// keys.
#[test]
fn test_region_splits_into_many_under_writes_with_moving_leaders() {
    let name = "test_region_splits_into_many_under_writes_with_moving_leaders";
    let seed = seed_from_env();
    eprintln!("{name}: seed {seed}");
    let mut rng = SimRng::new(seed);
    let cfg = Config::for_tests().with_small_regions(1000, 600);
    let opts = ClusterOptions::new(3, cfg)
        .network_seed(rng.fork())
        .schedule(schedule_config(Duration::from_secs(30 * 60)));
    let cluster = Cluster::with_options(opts, name);
    let _report = FailureReport {
        name,
        seed: Some(seed),
        cluster: &cluster,
    };
    cluster.start();

    const WRITERS: usize = 3;
    const SCANNERS: usize = 2;
    const MIN_REGIONS: usize = 8;
    /// Leader transfers asked for, and seen done (the scheduler hears from
    /// the new leader).
    const MIN_TRANSFERS: u64 = 6;
    const MIN_TRANSFERS_DONE: u64 = 3;
    let writes = Writes::default();
    let stop = AtomicBool::new(false);
    let scans = AtomicU64::new(0);
    let writer_seeds: Vec<u64> = (0..WRITERS).map(|_| rng.fork()).collect();

    thread::scope(|s| {
        for (client, writer_seed) in writer_seeds.into_iter().enumerate() {
            let (cluster, writes, stop) = (&cluster, &writes, &stop);
            s.spawn(move || {
                let _guard = StopOnPanic(stop);
                let mut rng = SimRng::new(writer_seed);
                let mut j = 0u64;
                while !stop.load(Ordering::SeqCst) {
                    // A random prefix spreads the keys, so every region
                    // keeps growing and splitting.
                    let key = format!("{:04x}-{client}-{j:06}", rng.below(0x1_0000)).into_bytes();
                    writes.start(&key);
                    cluster.must_put(&key, &value_of(&key));
                    writes.ack(&key);
                    j += 1;
                }
            });
        }
        for _ in 0..SCANNERS {
            let (cluster, writes, stop, scans) = (&cluster, &writes, &stop, &scans);
            s.spawn(move || {
                let _guard = StopOnPanic(stop);
                while !stop.load(Ordering::SeqCst) {
                    let acked_before = lock(&writes.acked).clone();
                    let values = cluster.scan(b"", b"");
                    let started_after = lock(&writes.started).clone();
                    if let Err(e) = check_scan(&values, &acked_before, &started_after) {
                        panic!("scan {}: {e}", scans.load(Ordering::SeqCst));
                    }
                    scans.fetch_add(1, Ordering::SeqCst);
                }
            });
        }

        // The chaos, paced by the clients' progress: an action every few
        // acknowledged writes, so it never outruns a slowed-down cluster.
        let _guard = StopOnPanic(&stop);
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut transfers = 0u64;
        let mut refused = 0u64;
        // Transfers asked for and not yet seen done: (region id, new leader).
        let mut under_way: Vec<(u64, u64)> = Vec::new();
        let mut transfers_done = 0u64;
        // None: no store stopped yet; Some((store, acked then)): stopped.
        let mut stopped: Option<(u64, u64)> = None;
        let mut restarted = false;
        let mut next_action = 0u64;
        loop {
            if stop.load(Ordering::SeqCst) {
                // A client failed; its panic is what the scope reports.
                break;
            }
            let acked = writes.acked_count.load(Ordering::SeqCst);
            let regions = cluster
                .scheduler()
                .scan_regions(b"", b"", 0)
                .expect("scan the scheduler's regions");
            under_way.retain(|&(region_id, to)| {
                let done = regions
                    .iter()
                    .any(|(r, leader)| r.id == region_id && leader.is_some_and(|l| l.id == to));
                transfers_done += u64::from(done);
                !done
            });
            if regions.len() >= MIN_REGIONS
                && transfers >= MIN_TRANSFERS
                && transfers_done >= MIN_TRANSFERS_DONE
                && restarted
                && scans.load(Ordering::SeqCst) >= 5
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "after {acked} writes: {} regions (want {MIN_REGIONS}), {transfers} leader \
                 transfers ({transfers_done} done, {refused} refused), store restarted: \
                 {restarted}, {} scans",
                regions.len(),
                scans.load(Ordering::SeqCst)
            );
            if acked < next_action {
                thread::sleep(Duration::from_millis(10));
                continue;
            }
            next_action = acked + 15;
            match stopped {
                None if regions.len() >= 3 => {
                    let store_id = 1 + rng.below(3);
                    eprintln!("{name}: stopping store {store_id} after {acked} writes");
                    cluster.stop_store(store_id);
                    stopped = Some((store_id, acked));
                    continue;
                }
                Some((store_id, at)) if !restarted && acked >= at + 60 => {
                    eprintln!("{name}: restarting store {store_id} after {acked} writes");
                    cluster.start_store(store_id);
                    restarted = true;
                    continue;
                }
                _ => {}
            }
            // Move the leader of a random region to a random follower on a
            // running store.
            let i = rng.below(regions.len() as u64) as usize;
            let (region, leader) = &regions[i];
            let Some(leader) = leader else { continue };
            let followers: Vec<metapb::Peer> = region
                .peers
                .iter()
                .filter(|p| p.id != leader.id && cluster.inner().is_running(p.store_id))
                .copied()
                .collect();
            if followers.is_empty() {
                continue;
            }
            let to = followers[rng.below(followers.len() as u64) as usize];
            match cluster
                .scheduler()
                .schedule_operator(region.id, Operator::TransferLeader(to))
            {
                Ok(()) => {
                    transfers += 1;
                    under_way.push((region.id, to.id));
                }
                // Another operator is under way, or the region changed.
                Err(_) => refused += 1,
            }
        }
        eprintln!(
            "{name}: {} writes, {} scans, {} regions, {transfers} leader transfers \
             ({transfers_done} seen done, {refused} refused)",
            writes.acked_count.load(Ordering::SeqCst),
            scans.load(Ordering::SeqCst),
            cluster
                .scheduler()
                .scan_regions(b"", b"", 0)
                .map_or(0, |r| r.len()),
        );
        stop.store(true, Ordering::SeqCst);
    });

    let acked = lock(&writes.acked).clone();
    assert_eq!(
        acked,
        *lock(&writes.started),
        "every started put was acknowledged or its client panicked"
    );
    let written: BTreeMap<Vec<u8>, Vec<u8>> = acked
        .into_iter()
        .map(|k| {
            let v = value_of(&k);
            (k, v)
        })
        .collect();
    must_scan_all(&cluster, &written);
    let regions = cluster
        .scheduler()
        .scan_regions(b"", b"", 0)
        .expect("scan the scheduler's regions");
    assert!(regions.len() >= MIN_REGIONS, "{} regions", regions.len());
}

/// Five stores, the data split over several regions of three replicas
/// each (the scheduler grows them from one and balances them). One store
/// holding replicas is stopped for good; once it has been silent for
/// `max_store_down_time` (3 s) the scheduler replaces every replica it
/// held. The running stores then report every region with three peers, all
/// on running stores, at one epoch, tiling the key space, and all the data
/// reads back.
#[test]
fn test_replicas_of_a_store_stopped_for_good_are_replaced() {
    let name = "test_replicas_of_a_store_stopped_for_good_are_replaced";
    let cfg = Config::for_tests().with_small_regions(1000, 600);
    let opts = ClusterOptions::new(5, cfg)
        .bootstrap_single_replica()
        .schedule(schedule_config(Duration::from_secs(3)));
    let cluster = Cluster::with_options(opts, name);
    let _report = FailureReport {
        name,
        seed: None,
        cluster: &cluster,
    };
    cluster.start();

    let mut written = BTreeMap::new();
    let mut i = 0u64;
    let deadline = Instant::now() + CONVERGE;
    loop {
        let regions = cluster
            .scheduler()
            .scan_regions(b"", b"", 0)
            .expect("scan the scheduler's regions");
        if regions.len() >= 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} regions after {i} writes",
            regions.len()
        );
        // Keys spread over the key space (a multiplicative hash of `i`), so
        // more than one region grows.
        let key = format!("{:08x}-{i:06}", i.wrapping_mul(0x9e37_79b9) as u32).into_bytes();
        cluster.must_put(&key, &value_of(&key));
        written.insert(key.clone(), value_of(&key));
        i += 1;
    }
    let layout = wait_until("every region with three replicas", CONVERGE, || {
        check_replicated(&cluster, 3)
    });

    // The store with the most replicas goes.
    let mut held: HashMap<u64, usize> = HashMap::new();
    for region in &layout {
        for peer in &region.peers {
            *held.entry(peer.store_id).or_default() += 1;
        }
    }
    let (&victim, &count) = held
        .iter()
        .max_by_key(|(store_id, count)| (**count, **store_id))
        .expect("some store holds replicas");
    eprintln!(
        "{name}: {} regions; stopping store {victim} for good, it holds {count} replicas",
        layout.len()
    );
    cluster.stop_store(victim);

    let layout = wait_until(
        "every replica of the stopped store replaced",
        CONVERGE,
        || check_replicated(&cluster, 3),
    );
    for region in &layout {
        assert!(
            region.peers.iter().all(|p| p.store_id != victim),
            "region {} still has a peer on store {victim}: {:?}",
            region.id,
            region.peers
        );
    }
    must_scan_all(&cluster, &written);
    for (key, value) in written.iter().step_by(7) {
        cluster.must_get(key, value);
    }
}

/// A leader told to hand its leadership to a peer whose store has stopped
/// keeps serving writes. The scheduler repeats a leader transfer with every
/// region heartbeat until its deadline, and a leader accepts no proposal
/// while a transfer is under way (Raft §3.10): if it started a transfer
/// each time, to a peer that can never take over, the region would refuse
/// writes until the operator's deadline. (The balancer does ask this: a
/// store that just stopped holds no leaders, and counts as up until
/// `max_store_down_time` has passed.)
#[test]
fn test_leader_transfer_to_a_stopped_store_does_not_block_writes() {
    let name = "test_leader_transfer_to_a_stopped_store_does_not_block_writes";
    // The leader does not report the stopped peer down during the test
    // (which would make the scheduler drop the transfer): the leader alone
    // must keep the region writable.
    let cfg = Config {
        max_peer_down_duration: Duration::from_secs(120),
        ..Config::for_tests()
    };
    let cluster = Cluster::new(3, cfg, name);
    let _report = FailureReport {
        name,
        seed: None,
        cluster: &cluster,
    };
    cluster.start();
    cluster.must_put(b"k0", b"v0");
    let leader = cluster.must_leader_by_read(FIRST_REGION_ID);
    let region = cluster.region(FIRST_REGION_ID).expect("the first region");
    let target = *region
        .peers
        .iter()
        .find(|p| p.id != leader.id)
        .expect("a follower");
    cluster.stop_store(target.store_id);
    cluster.scheduler().transfer_leader(FIRST_REGION_ID, target);

    // Writes for 3 s, from before the leader is first asked to transfer
    // (with its next region heartbeat) until it has been asked many times;
    // each gets 2 s, far less than the operator's deadline (30 s).
    let started = Instant::now();
    let mut i = 0;
    while started.elapsed() < Duration::from_secs(3) {
        i += 1;
        let key = format!("k{i}");
        cluster
            .inner()
            .client()
            .put(
                key.clone().into_bytes(),
                b"v".to_vec(),
                Duration::from_secs(2),
            )
            .unwrap_or_else(|e| {
                panic!(
                    "put {key} {:?} after the transfer was asked for: {e}",
                    started.elapsed()
                )
            });
    }
    assert_eq!(
        cluster.scheduler().operator(FIRST_REGION_ID),
        Some(Operator::TransferLeader(target)),
        "the transfer is still asked for while the writes went through"
    );
}
