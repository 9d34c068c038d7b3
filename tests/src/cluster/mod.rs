//! The region/leader test cluster: N stores in one process, each with a real
//! RocksDB in a temp dir, connected by a simulated network with filters
//! (TinyKV's `test_raftstore`, rebuilt for the actor store).
//!
//! The cluster owns a tokio runtime; its methods block, so tests are plain
//! `#[test]` functions and may drive it from several threads at once, like
//! TinyKV's clients. Every wait is on a condition with a deadline and says
//! what it last saw when it gives up.

pub mod filter;
pub mod generic;
pub mod scheduler;
pub mod transport;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kvproto::metapb;
use kvproto::raft_cmdpb::{
    CmdType, DeleteRequest, GetRequest, PutRequest, RaftCmdRequest, RaftRequestHeader, Request,
    SnapRequest,
};
use kvproto::raft_serverpb::{RaftApplyState, RaftLocalState, RegionLocalState};
use raftstore::bootstrap::{bootstrap_store, new_first_region, write_initial_region};
use raftstore::{Config, SnapManager, Store};
use router::{Callback, CmdResponse, RaftCommand};
use scheduler_stub::{MemoryScheduler, SchedulerClient};
use slog::{Drain, Logger, o};
use storage::{CF_DEFAULT, CF_RAFT, Engine, keys};

use self::filter::{Filter, PartitionFilter};
use self::transport::{SimNetwork, StoreTransport};

/// The id of the region a cluster starts with.
pub const FIRST_REGION_ID: u64 = 1;
/// The cluster id every test cluster uses.
pub const CLUSTER_ID: u64 = 1;

/// A logger for cluster tests: silent unless `TINYKV_TEST_LOG` is set.
pub fn test_logger(name: &str) -> Logger {
    if std::env::var_os("TINYKV_TEST_LOG").is_some() {
        let decorator = slog_term::PlainSyncDecorator::new(std::io::stderr());
        let drain = slog_term::FullFormat::new(decorator).build().fuse();
        Logger::root(drain, o!("test" => name.to_owned()))
    } else {
        Logger::root(slog::Discard, o!())
    }
}

/// N stores in one process.
pub struct Cluster {
    rt: tokio::runtime::Runtime,
    count: u64,
    cfg: Config,
    /// Holds every store's data directory for the cluster's lifetime.
    dir: tempfile::TempDir,
    /// Running stores. A `Mutex`: start/stop from the test thread only, but
    /// client threads read routers through it.
    stores: Mutex<HashMap<u64, Store>>,
    net: Arc<SimNetwork>,
    /// The placement driver, in-process.
    scheduler: Arc<MemoryScheduler>,
    /// The leader each region last answered from, to try first.
    leaders: Mutex<HashMap<u64, metapb::Peer>>,
    /// The newest region (epoch) seen for each region id.
    regions: Mutex<HashMap<u64, metapb::Region>>,
    logger: Logger,
}

impl Cluster {
    /// A cluster of `count` stores (ids 1..=count) with `cfg`, not started.
    pub fn new(count: u64, cfg: Config, name: &str) -> Cluster {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        Cluster {
            rt,
            count,
            cfg,
            dir: tempfile::tempdir().expect("temp dir"),
            stores: Mutex::new(HashMap::new()),
            net: SimNetwork::new(0x7e57),
            scheduler: Arc::new(MemoryScheduler::new(CLUSTER_ID, &test_logger(name))),
            leaders: Mutex::new(HashMap::new()),
            regions: Mutex::new(HashMap::new()),
            logger: test_logger(name),
        }
    }

    /// Store `store_id`'s directory: its engine in `db`, its snapshot files
    /// in `snap`.
    fn store_path(&self, store_id: u64) -> PathBuf {
        self.dir.path().join(format!("store-{store_id}"))
    }

    fn engine_path(&self, store_id: u64) -> PathBuf {
        self.store_path(store_id).join("db")
    }

    /// Bootstraps every store and the first region (a peer on each store,
    /// peer id = store id), then starts them all.
    pub fn start(&self) {
        let peers: Vec<metapb::Peer> = (1..=self.count)
            .map(|id| metapb::Peer { id, store_id: id })
            .collect();
        let region = new_first_region(FIRST_REGION_ID, peers);
        for store_id in 1..=self.count {
            let engine = Engine::open(self.engine_path(store_id)).expect("open engine");
            bootstrap_store(&engine, CLUSTER_ID, store_id).expect("bootstrap store");
            write_initial_region(&engine, &region).expect("write first region");
        }
        let store = |id| metapb::Store {
            id,
            ..Default::default()
        };
        self.scheduler
            .bootstrap(store(1), region.clone())
            .expect("bootstrap the scheduler");
        for store_id in 1..=self.count {
            self.scheduler
                .put_store(store(store_id))
                .expect("register store");
            self.scheduler.set_region_heartbeat_response_handler(
                store_id,
                scheduler::operator_handler(Arc::clone(&self.net), store_id),
            );
        }
        self.regions
            .lock()
            .expect("regions lock")
            .insert(region.id, region);
        for store_id in 1..=self.count {
            self.start_store(store_id);
        }
    }

    /// Starts (or restarts) store `store_id` from its data directory.
    pub fn start_store(&self, store_id: u64) {
        let engine = Engine::open(self.engine_path(store_id)).expect("reopen engine");
        let snap_mgr =
            SnapManager::open(self.store_path(store_id).join("snap")).expect("open snapshot dir");
        let transport = Arc::new(StoreTransport::new(Arc::clone(&self.net), snap_mgr.clone()));
        let store = {
            let _guard = self.rt.enter();
            Store::start(
                store_id,
                self.cfg.clone(),
                engine,
                snap_mgr.clone(),
                transport,
                Arc::new(scheduler::Reporter(Arc::clone(&self.scheduler))),
                &self.logger,
            )
            .expect("start store")
        };
        self.net.register(store_id, store.router(), snap_mgr);
        self.stores
            .lock()
            .expect("stores lock")
            .insert(store_id, store);
    }

    /// Replaces stopped store `store_id`'s data with an empty, freshly
    /// bootstrapped store (a replaced disk): its peers come back only when
    /// a leader sends them a snapshot.
    pub fn wipe_store(&self, store_id: u64) {
        assert!(
            !self
                .stores
                .lock()
                .expect("stores lock")
                .contains_key(&store_id),
            "store {store_id} must be stopped before it is wiped"
        );
        std::fs::remove_dir_all(self.store_path(store_id)).expect("remove store dir");
        let engine = Engine::open(self.engine_path(store_id)).expect("open engine");
        bootstrap_store(&engine, 1, store_id).expect("bootstrap store");
    }

    /// Opens stopped store `store_id`'s engine, to look at or tamper with
    /// its data as a crash could have left it. Drop the engine before the
    /// store starts again.
    pub fn open_stopped_engine(&self, store_id: u64) -> Engine {
        assert!(
            !self
                .stores
                .lock()
                .expect("stores lock")
                .contains_key(&store_id),
            "store {store_id} must be stopped before its engine is opened"
        );
        Engine::open(self.engine_path(store_id)).expect("open engine")
    }

    /// Stops store `store_id`, keeping its data.
    pub fn stop_store(&self, store_id: u64) {
        self.net.unregister(store_id);
        let store = self.stores.lock().expect("stores lock").remove(&store_id);
        if let Some(store) = store {
            self.rt.block_on(store.stop());
        }
    }

    /// The ids of the stores, running or not.
    pub fn store_ids(&self) -> Vec<u64> {
        (1..=self.count).collect()
    }

    /// The in-process placement driver.
    pub fn scheduler(&self) -> &MemoryScheduler {
        &self.scheduler
    }

    /// The leader of `region_id` as the scheduler last heard, if any.
    pub fn reported_leader(&self, region_id: u64) -> Option<metapb::Peer> {
        self.scheduler
            .get_region_by_id(region_id)
            .ok()
            .flatten()
            .and_then(|(_, leader)| leader)
    }

    /// Waits until the scheduler knows a leader of `region_id`.
    ///
    /// # Panics
    /// If none is known after `timeout`.
    pub fn must_reported_leader(&self, region_id: u64, timeout: Duration) -> metapb::Peer {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Some(leader) = self.reported_leader(region_id) {
                return leader;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("no leader of region {region_id} reported within {timeout:?}");
    }

    /// Adds a network filter.
    pub fn add_filter(&self, filter: Arc<dyn Filter>) {
        self.net.add_filter(filter);
    }

    /// Removes every network filter.
    pub fn clear_filters(&self) {
        self.net.clear_filters();
    }

    /// The region containing `key` as last seen (the cluster has one region
    /// until splits exist).
    pub fn region_for_key(&self, key: &[u8]) -> metapb::Region {
        let regions = self.regions.lock().expect("regions lock");
        regions
            .values()
            .find(|r| {
                key >= r.start_key.as_slice()
                    && (r.end_key.is_empty() || key < r.end_key.as_slice())
            })
            .cloned()
            .expect("some region covers every key")
    }

    fn note_region(&self, region: &metapb::Region) {
        let mut regions = self.regions.lock().expect("regions lock");
        let newer = regions.get(&region.id).is_none_or(|known| {
            let (a, b) = (
                known.region_epoch.unwrap_or_default(),
                region.region_epoch.unwrap_or_default(),
            );
            (b.version, b.conf_ver) > (a.version, a.conf_ver)
        });
        if newer {
            regions.insert(region.id, region.clone());
        }
    }

    /// Sends `request` to the peer it names and waits up to `timeout` for
    /// the answer; `None` if the store is down or no answer came.
    pub fn call_command(&self, request: RaftCmdRequest, timeout: Duration) -> Option<CmdResponse> {
        let header = request.header.unwrap_or_default();
        let store_id = header.peer.map_or(0, |p| p.store_id);
        let router = self
            .stores
            .lock()
            .expect("stores lock")
            .get(&store_id)
            .map(|s| s.router())?;
        let (callback, rx) = Callback::new();
        if let Err(e) = router.send_command(
            header.region_id,
            Box::new(RaftCommand { request, callback }),
        ) {
            let cmd = e.into_inner();
            cmd.callback.respond(CmdResponse::default());
            return None;
        }
        self.rt
            .block_on(async { tokio::time::timeout(timeout, rx).await })
            .ok()
            .and_then(|r| r.ok())
    }

    /// Sends `request` to its region's leader, following `NotLeader` hints
    /// and retrying retryable errors, until `timeout`. `None` on timeout.
    pub fn call_command_on_leader(
        &self,
        mut request: RaftCmdRequest,
        timeout: Duration,
    ) -> Option<CmdResponse> {
        let deadline = Instant::now() + timeout;
        let region_id = request.header.as_ref().map_or(0, |h| h.region_id);
        let mut candidates = self.store_ids().into_iter().cycle();
        let mut leader = self
            .leaders
            .lock()
            .expect("leaders lock")
            .get(&region_id)
            .copied();
        while Instant::now() < deadline {
            let target = leader.unwrap_or_else(|| {
                let store_id = candidates.next().expect("cycle never ends");
                self.region_peer_on(region_id, store_id)
                    .unwrap_or(metapb::Peer {
                        id: store_id,
                        store_id,
                    })
            });
            if let Some(header) = request.header.as_mut() {
                header.peer = Some(target);
                header.region_epoch = self
                    .regions
                    .lock()
                    .expect("regions lock")
                    .get(&region_id)
                    .and_then(|r| r.region_epoch);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(resp) = self.call_command(request.clone(), left.min(Duration::from_secs(1)))
            else {
                leader = None;
                continue;
            };
            let Some(error) = resp.region_error() else {
                self.leaders
                    .lock()
                    .expect("leaders lock")
                    .insert(region_id, target);
                return Some(resp);
            };
            if let Some(not_leader) = &error.not_leader {
                leader = not_leader.leader.filter(|l| *l != target);
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            if let Some(epoch) = &error.epoch_not_match {
                for region in &epoch.current_regions {
                    self.note_region(region);
                }
                continue;
            }
            if error.stale_command.is_some()
                || error.server_is_busy.is_some()
                || error.region_not_found.is_some()
            {
                leader = None;
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
            return Some(resp);
        }
        None
    }

    fn region_peer_on(&self, region_id: u64, store_id: u64) -> Option<metapb::Peer> {
        self.regions
            .lock()
            .expect("regions lock")
            .get(&region_id)
            .and_then(|r| r.peers.iter().find(|p| p.store_id == store_id).copied())
    }

    /// Runs `requests` on the region holding `key`, retrying until `timeout`.
    ///
    /// # Panics
    /// If no successful answer came in time, with the last answer seen.
    pub fn request(&self, key: &[u8], requests: Vec<Request>, timeout: Duration) -> CmdResponse {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        while Instant::now() < deadline {
            let region = self.region_for_key(key);
            let request = RaftCmdRequest {
                header: Some(RaftRequestHeader {
                    region_id: region.id,
                    region_epoch: region.region_epoch,
                    ..Default::default()
                }),
                requests: requests.clone(),
                admin_request: None,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            match self.call_command_on_leader(request, left) {
                Some(resp) if resp.region_error().is_none() => return resp,
                other => last = other.map(|r| r.response),
            }
        }
        panic!(
            "request on key {:?} timed out; last answer: {last:?}",
            key.escape_ascii().to_string()
        );
    }

    /// Puts `key` = `value` in the default CF.
    pub fn must_put(&self, key: &[u8], value: &[u8]) {
        self.must_put_cf(CF_DEFAULT, key, value);
    }

    /// Puts `key` = `value` in `cf`.
    pub fn must_put_cf(&self, cf: &str, key: &[u8], value: &[u8]) {
        let req = Request {
            cmd_type: CmdType::Put as i32,
            put: Some(PutRequest {
                cf: cf.to_owned(),
                key: key.to_vec(),
                value: value.to_vec(),
            }),
            ..Default::default()
        };
        let resp = self.request(key, vec![req], Duration::from_secs(15));
        assert_eq!(resp.response.responses.len(), 1, "one response to one put");
    }

    /// Reads `key` from the default CF through the leader (linearizable).
    pub fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.get_cf(CF_DEFAULT, key)
    }

    /// Reads `key` from `cf` through the leader (linearizable).
    pub fn get_cf(&self, cf: &str, key: &[u8]) -> Option<Vec<u8>> {
        let req = Request {
            cmd_type: CmdType::Get as i32,
            get: Some(GetRequest {
                cf: cf.to_owned(),
                key: key.to_vec(),
            }),
            ..Default::default()
        };
        let resp = self.request(key, vec![req], Duration::from_secs(15));
        let value = resp.response.responses[0]
            .get
            .clone()
            .unwrap_or_default()
            .value;
        (!value.is_empty()).then_some(value)
    }

    /// Asserts `key` reads as `value`.
    pub fn must_get(&self, key: &[u8], value: &[u8]) {
        self.must_get_cf(CF_DEFAULT, key, value);
    }

    /// Asserts `key` reads as `value` in `cf`.
    pub fn must_get_cf(&self, cf: &str, key: &[u8], value: &[u8]) {
        let got = self.get_cf(cf, key);
        assert_eq!(
            got.as_deref(),
            Some(value),
            "cf {cf}, key {:?}",
            key.escape_ascii().to_string()
        );
    }

    /// Asserts `key` is absent.
    pub fn must_get_none(&self, key: &[u8]) {
        let got = self.get(key);
        assert_eq!(
            got,
            None,
            "key {:?} should be absent",
            key.escape_ascii().to_string()
        );
    }

    /// Deletes `key` from the default CF.
    pub fn must_delete(&self, key: &[u8]) {
        self.must_delete_cf(CF_DEFAULT, key);
    }

    /// Deletes `key` from `cf`.
    pub fn must_delete_cf(&self, cf: &str, key: &[u8]) {
        let req = Request {
            cmd_type: CmdType::Delete as i32,
            delete: Some(DeleteRequest {
                cf: cf.to_owned(),
                key: key.to_vec(),
            }),
            ..Default::default()
        };
        self.request(key, vec![req], Duration::from_secs(15));
    }

    /// The values of the default CF for keys in `[start, end)` (empty `end`:
    /// no bound), read from a linearizable snapshot of each region.
    pub fn scan(&self, start: &[u8], end: &[u8]) -> Vec<Vec<u8>> {
        let mut values = Vec::new();
        let mut key = start.to_vec();
        loop {
            let req = Request {
                cmd_type: CmdType::Snap as i32,
                snap: Some(SnapRequest {}),
                ..Default::default()
            };
            let resp = self.request(&key, vec![req], Duration::from_secs(15));
            let region = resp.response.responses[0]
                .snap
                .clone()
                .and_then(|s| s.region)
                .expect("a snap response names its region");
            let reader = resp
                .snapshot
                .and_then(|s| s.downcast::<raftstore::RegionSnapshot>().ok())
                .expect("a snap response carries a region snapshot");
            let mut iter = reader.iter_cf(CF_DEFAULT).expect("iterate the snapshot");
            iter.seek(&key);
            while iter.valid() {
                if !end.is_empty() && iter.key() >= end {
                    break;
                }
                values.push(iter.value().to_vec());
                iter.next();
            }
            if region.end_key.is_empty() || (!end.is_empty() && region.end_key.as_slice() >= end) {
                return values;
            }
            key = region.end_key.clone();
        }
    }

    /// Waits until store `store_id`'s engine holds `key` = `value` (default
    /// CF), read directly; panics after `timeout` with the last value seen.
    pub fn must_get_equal_on_store(
        &self,
        store_id: u64,
        key: &[u8],
        value: &[u8],
        timeout: Duration,
    ) {
        self.must_get_cf_on_store(store_id, CF_DEFAULT, key, Some(value), timeout);
    }

    /// Waits until store `store_id`'s engine has no `key` (default CF), read
    /// directly; panics after `timeout` with the last value seen.
    pub fn must_get_none_on_store(&self, store_id: u64, key: &[u8], timeout: Duration) {
        self.must_get_cf_on_store(store_id, CF_DEFAULT, key, None, timeout);
    }

    /// Waits until store `store_id`'s engine reads `want` for `key` in `cf`
    /// (`None`: absent); panics after `timeout` with the last value seen, or
    /// at once if the store is not running.
    pub fn must_get_cf_on_store(
        &self,
        store_id: u64,
        cf: &str,
        key: &[u8],
        want: Option<&[u8]>,
        timeout: Duration,
    ) {
        let deadline = Instant::now() + timeout;
        loop {
            let engine = self
                .store_engine(store_id)
                .unwrap_or_else(|| panic!("store {store_id} is not running"));
            let got = engine
                .get_cf(cf, &keys::data_key(key))
                .unwrap_or_else(|e| panic!("store {store_id}: read failed: {e}"));
            if got.as_deref() == want {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "store {store_id}: cf {cf}, key {:?} is {:?}, want {:?}",
                    key.escape_ascii().to_string(),
                    got.map(|v| v.escape_ascii().to_string()),
                    want.map(|v| v.escape_ascii().to_string()),
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The leader of `region_id` confirmed by a linearizable read (a read
    /// goes through the log, so only a leader answers it), unlike the
    /// scheduler's possibly stale view (`leader_of_region`). Panics if no
    /// leader answers within 15 s.
    pub fn must_leader_by_read(&self, region_id: u64) -> metapb::Peer {
        let region = self
            .regions
            .lock()
            .expect("regions lock")
            .get(&region_id)
            .cloned()
            .unwrap_or_else(|| panic!("region {region_id} is unknown"));
        let request = RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id,
                region_epoch: region.region_epoch,
                ..Default::default()
            }),
            requests: vec![Request {
                cmd_type: CmdType::Snap as i32,
                snap: Some(SnapRequest {}),
                ..Default::default()
            }],
            admin_request: None,
        };
        match self.call_command_on_leader(request, Duration::from_secs(15)) {
            Some(resp) if resp.region_error().is_none() => self
                .leaders
                .lock()
                .expect("leaders lock")
                .get(&region_id)
                .copied()
                .expect("a successful answer records its leader"),
            other => panic!(
                "region {region_id} has no leader; last answer: {:?}",
                other.map(|r| r.response)
            ),
        }
    }

    /// The ids of the stores holding a peer of `region_id`, as last seen.
    pub fn store_ids_of_region(&self, region_id: u64) -> Vec<u64> {
        self.regions
            .lock()
            .expect("regions lock")
            .get(&region_id)
            .map(|r| r.peers.iter().map(|p| p.store_id).collect())
            .unwrap_or_default()
    }

    /// Cuts the network into `groups` (a `PartitionFilter`): messages cross
    /// no group boundary until the filters are cleared.
    pub fn partition(&self, groups: Vec<Vec<u64>>) {
        self.add_filter(Arc::new(PartitionFilter::new(groups)));
    }

    /// Makes the network filters' random choices follow `seed`.
    pub fn reseed_network(&self, seed: u64) {
        self.net.reseed(seed);
    }

    /// Store `store_id`'s `RaftApplyState` of `region_id`, read from its
    /// engine; `None` while the store is down or has no such region.
    pub fn apply_state(&self, store_id: u64, region_id: u64) -> Option<RaftApplyState> {
        self.store_engine(store_id)?
            .get_msg_cf(CF_DEFAULT, &keys::apply_state_key(region_id))
            .ok()
            .flatten()
    }

    /// Store `store_id`'s `RaftLocalState` of `region_id` (hard state, last
    /// index and term), read from its engine; `None` while the store is down
    /// or has no such region.
    pub fn raft_local_state(&self, store_id: u64, region_id: u64) -> Option<RaftLocalState> {
        self.store_engine(store_id)?
            .get_msg_cf(CF_RAFT, &keys::raft_state_key(region_id))
            .ok()
            .flatten()
    }

    /// Store `store_id`'s `RegionLocalState` of `region_id`, read from its
    /// engine; `None` while the store is down or has no such region.
    pub fn region_local_state(&self, store_id: u64, region_id: u64) -> Option<RegionLocalState> {
        self.store_engine(store_id)?
            .get_msg_cf(CF_DEFAULT, &keys::region_state_key(region_id))
            .ok()
            .flatten()
    }

    /// The router of store `store_id`, while it runs: to hand its actors
    /// messages as if they came from the network.
    pub fn router(&self, store_id: u64) -> Option<router::Router> {
        self.stores
            .lock()
            .expect("stores lock")
            .get(&store_id)
            .map(|s| s.router())
    }

    fn store_engine(&self, store_id: u64) -> Option<Engine> {
        self.stores
            .lock()
            .expect("stores lock")
            .get(&store_id)
            .map(|s| s.engine().clone())
    }

    /// Stops every store.
    pub fn shutdown(&self) {
        for store_id in self.store_ids() {
            self.stop_store(store_id);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown();
    }
}
