//! The region/leader test cluster (TinyKV's `test_raftstore`, rebuilt for
//! the actor store): the in-process cluster of the root package
//! (`tinykv::cluster`: stores over RocksDB in temp dirs, the simulated
//! network with filters, the scheduler in-process, the retrying client),
//! with the `must_*` assertions and waits the scenario suites use.
//!
//! [`Cluster`] wraps `tinykv::cluster::Cluster`: the shared cluster returns
//! errors, the test cluster panics with what it last saw. Its methods
//! block, so tests are plain `#[test]` functions and may drive it from
//! several threads at once, like TinyKV's clients. Every wait is on a
//! condition with a deadline and says what it last saw when it gives up.
//! [`Cluster::inner`] reaches the shared cluster for what a test needs
//! unwrapped (one attempt, an answer that is an error).
//!
//! Submodules: `operators` adds and removes peers and moves leadership
//! through the in-process scheduler (TinyKV's `MustAddPeer`,
//! `MustRemovePeer`, `MustTransferLeader`); `generic` is TinyKV's
//! `GenericTest` scenario; `kvraft` is MIT 6.824's Lab 3 (`GenericTest`,
//! `GenericTestLinearizability` and their helpers) over the Clerk.

pub mod generic;
pub mod kvraft;
pub mod operators;

pub use tinykv::cluster::{CLUSTER_ID, FIRST_REGION_ID, filter};

use std::sync::Arc;
use std::time::{Duration, Instant};

use kvproto::metapb;
use kvproto::raft_cmdpb::{
    CmdType, DeleteRequest, GetRequest, PutRequest, RaftCmdRequest, RaftRequestHeader, Request,
    SnapRequest,
};
use kvproto::raft_serverpb::{RaftApplyState, RaftLocalState, RegionLocalState};
use raftstore::Config;
use router::CmdResponse;
use scheduler_stub::{MemoryScheduler, SchedulerClient};
use slog::{Drain, Logger, o};
use storage::{CF_DEFAULT, Engine, keys};
use tinykv::cluster::ClusterOptions;

use self::filter::Filter;

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

/// N stores in one process, with assertions.
pub struct Cluster {
    inner: tinykv::cluster::Cluster,
}

impl Cluster {
    /// A cluster of `count` stores (ids 1..=count) with `cfg`, not started;
    /// `name` labels its logs.
    pub fn new(count: u64, cfg: Config, name: &str) -> Cluster {
        let opts = ClusterOptions::new(count, cfg).logger(test_logger(name));
        Cluster {
            inner: tinykv::cluster::Cluster::new(opts).expect("build the cluster"),
        }
    }

    /// A cluster built from `opts` (scheduling, a single-replica bootstrap,
    /// …), not started; `name` labels its logs.
    pub fn with_options(opts: ClusterOptions, name: &str) -> Cluster {
        Cluster {
            inner: tinykv::cluster::Cluster::new(opts.logger(test_logger(name)))
                .expect("build the cluster"),
        }
    }

    /// Bootstraps as [`Cluster::start`] does, then starts only the stores
    /// in `store_ids`.
    pub fn start_with(&self, store_ids: &[u64]) {
        self.inner
            .start_with(store_ids)
            .unwrap_or_else(|e| panic!("bootstrap and start stores {store_ids:?}: {e}"));
    }

    /// The shared cluster underneath, whose calls return what they got
    /// instead of asserting.
    pub fn inner(&self) -> &tinykv::cluster::Cluster {
        &self.inner
    }

    /// Bootstraps every store and the first region (a peer on each store,
    /// peer id = store id), then starts them all.
    pub fn start(&self) {
        self.inner.start().expect("bootstrap and start the cluster");
    }

    /// Starts (or restarts) store `store_id` from its data directory.
    pub fn start_store(&self, store_id: u64) {
        self.inner
            .start_store(store_id)
            .unwrap_or_else(|e| panic!("start store {store_id}: {e}"));
    }

    /// Replaces stopped store `store_id`'s data with an empty, freshly
    /// bootstrapped store (a replaced disk): its peers come back only when
    /// a leader sends them a snapshot.
    pub fn wipe_store(&self, store_id: u64) {
        self.inner
            .wipe_store(store_id)
            .unwrap_or_else(|e| panic!("wipe store {store_id}: {e}"));
    }

    /// Opens stopped store `store_id`'s engine, to look at or tamper with
    /// its data as a crash could have left it. Drop the engine before the
    /// store starts again.
    pub fn open_stopped_engine(&self, store_id: u64) -> Engine {
        self.inner
            .open_stopped_engine(store_id)
            .unwrap_or_else(|e| panic!("open store {store_id}'s engine: {e}"))
    }

    /// Stops store `store_id`, keeping its data.
    pub fn stop_store(&self, store_id: u64) {
        self.inner.stop_store(store_id);
    }

    /// The ids of the stores, running or not.
    pub fn store_ids(&self) -> Vec<u64> {
        self.inner.store_ids()
    }

    /// The in-process placement driver.
    pub fn scheduler(&self) -> &MemoryScheduler {
        self.inner.scheduler()
    }

    /// The leader of `region_id` as the scheduler last heard, if any.
    pub fn reported_leader(&self, region_id: u64) -> Option<metapb::Peer> {
        self.inner.reported_leader(region_id)
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
        self.inner.add_filter(filter);
    }

    /// Removes every network filter.
    pub fn clear_filters(&self) {
        self.inner.clear_filters();
    }

    /// The region containing `key`: the newest of what clients last saw
    /// and what the scheduler knows (regions split while tests run, and
    /// either view may lag).
    ///
    /// Right after a split, neither view may cover `key` yet (the client
    /// learned the narrowed region, the new one has not reported): then it
    /// waits for the scheduler to learn it.
    ///
    /// # Panics
    /// If no region covering `key` is known within 15 s (before the cluster
    /// has started, none is).
    pub fn region_for_key(&self, key: &[u8]) -> metapb::Region {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            self.inner.refresh_region_for_key(key);
            if let Some(region) = self.inner.region_for_key(key) {
                return region;
            }
            assert!(
                Instant::now() < deadline,
                "no region covering key {:?} is known",
                key.escape_ascii().to_string()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Region `region_id` as clients last saw it, or as the scheduler
    /// knows it if that is newer.
    pub fn region(&self, region_id: u64) -> Option<metapb::Region> {
        let reported = self
            .scheduler()
            .get_region_by_id(region_id)
            .ok()
            .flatten()
            .map(|(region, _)| region);
        let seen = self.inner.region(region_id);
        match (seen, reported) {
            (Some(a), Some(b)) => {
                let version = |r: &metapb::Region| {
                    let e = r.region_epoch.unwrap_or_default();
                    (e.version, e.conf_ver)
                };
                Some(if version(&b) > version(&a) { b } else { a })
            }
            (a, b) => a.or(b),
        }
    }

    /// Sends `request` to the peer it names and waits up to `timeout` for
    /// the answer; `None` if the store is down or no answer came.
    pub fn call_command(&self, request: RaftCmdRequest, timeout: Duration) -> Option<CmdResponse> {
        self.inner.client().call(request, timeout)
    }

    /// Sends `request` to its region's leader, following `NotLeader` hints
    /// and retrying retryable errors (`tinykv::cluster::client`), until
    /// `timeout`. `None` on timeout; otherwise a success or an error no
    /// retry can fix.
    pub fn call_command_on_leader(
        &self,
        request: RaftCmdRequest,
        timeout: Duration,
    ) -> Option<CmdResponse> {
        self.inner
            .client()
            .call_on_leader(request, timeout)
            .ok()
            .map(|answer| answer.response)
    }

    /// Runs `requests` on the region holding `key`, retrying until `timeout`.
    ///
    /// # Panics
    /// If no successful answer came in time, with the last answer seen.
    pub fn request(&self, key: &[u8], requests: Vec<Request>, timeout: Duration) -> CmdResponse {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no attempt made");
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
            match self.inner.client().call_on_leader(request, left) {
                Ok(answer) if answer.response.region_error().is_none() => return answer.response,
                Ok(answer) => last = format!("{:?}", answer.response.response),
                Err(timed_out) => {
                    last = format!(
                        "no success, retries {:?}, last attempt: {}",
                        timed_out.retries, timed_out.last
                    )
                }
            }
        }
        let region_id = self.region_for_key(key).id;
        panic!(
            "request on key {:?} timed out; last answer: {last}; region {region_id}'s \
             replicas:\n{}",
            key.escape_ascii().to_string(),
            self.describe_replicas(region_id)
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
    /// no bound), read from a linearizable snapshot of each region, region
    /// after region.
    ///
    /// A `Snap` names no key, so the store cannot refuse one sent to a
    /// region that no longer holds the key the scan is at (it split, and
    /// the client retried with the region's new epoch): such an answer is
    /// dropped and the key routed again.
    ///
    /// # Panics
    /// If no region holding the scan's position answers within 15 s.
    pub fn scan(&self, start: &[u8], end: &[u8]) -> Vec<Vec<u8>> {
        let mut values = Vec::new();
        let mut key = start.to_vec();
        let mut deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let req = Request {
                cmd_type: CmdType::Snap as i32,
                snap: Some(SnapRequest {}),
                ..Default::default()
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let resp = self.request(&key, vec![req], left.max(Duration::from_millis(1)));
            let region = resp.response.responses[0]
                .snap
                .clone()
                .and_then(|s| s.region)
                .expect("a snap response names its region");
            let holds_key = key.as_slice() >= region.start_key.as_slice()
                && (region.end_key.is_empty() || key.as_slice() < region.end_key.as_slice());
            if !holds_key {
                assert!(
                    Instant::now() < deadline,
                    "scan at key {:?}: no region holding it answered; last: {region:?}",
                    key.escape_ascii().to_string()
                );
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
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
            deadline = Instant::now() + Duration::from_secs(15);
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

    /// Waits until store `store_id`'s engine holds `key` = `value` in `cf`,
    /// read directly (TinyKV `MustGetCfEqual`); panics after `timeout` with
    /// the last value seen.
    pub fn must_get_cf_equal_on_store(
        &self,
        store_id: u64,
        cf: &str,
        key: &[u8],
        value: &[u8],
        timeout: Duration,
    ) {
        self.must_get_cf_on_store(store_id, cf, key, Some(value), timeout);
    }

    /// Waits until store `store_id`'s engine has no `key` in `cf`, read
    /// directly (TinyKV `MustGetCfNone`); panics after `timeout` with the
    /// last value seen.
    pub fn must_get_cf_none_on_store(
        &self,
        store_id: u64,
        cf: &str,
        key: &[u8],
        timeout: Duration,
    ) {
        self.must_get_cf_on_store(store_id, cf, key, None, timeout);
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

    /// The leader of `region_id` confirmed by a linearizable read (only a
    /// leader a quorum still follows answers one), unlike the
    /// scheduler's possibly stale view (`leader_of_region`). Panics if no
    /// leader answers within 15 s.
    pub fn must_leader_by_read(&self, region_id: u64) -> metapb::Peer {
        let region = self
            .inner
            .region(region_id)
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
                .inner
                .leader(region_id)
                .expect("a successful answer records its leader"),
            other => panic!(
                "region {region_id} has no leader; last answer: {:?}",
                other.map(|r| r.response)
            ),
        }
    }

    /// The ids of the stores holding a peer of `region_id`, as last seen.
    pub fn store_ids_of_region(&self, region_id: u64) -> Vec<u64> {
        self.inner.store_ids_of_region(region_id)
    }

    /// Cuts the network into `groups` (a `PartitionFilter`): messages cross
    /// no group boundary until the filters are cleared.
    pub fn partition(&self, groups: Vec<Vec<u64>>) {
        self.inner.partition(groups);
    }

    /// Makes the network filters' random choices follow `seed`.
    pub fn reseed_network(&self, seed: u64) {
        self.inner.reseed_network(seed);
    }

    /// Store `store_id`'s `RaftApplyState` of `region_id`, read from its
    /// engine; `None` while the store is down or has no such region.
    pub fn apply_state(&self, store_id: u64, region_id: u64) -> Option<RaftApplyState> {
        self.inner.apply_state(store_id, region_id)
    }

    /// Store `store_id`'s truncated log index of `region_id`; 0 while the
    /// store is down or has no such region.
    pub fn truncated_index(&self, store_id: u64, region_id: u64) -> u64 {
        self.apply_state(store_id, region_id)
            .and_then(|s| s.truncated_state)
            .map_or(0, |t| t.index)
    }

    /// Waits until every store of `stores` has compacted its log of
    /// `region_id` past `index`, so that a peer whose log ends at `index`
    /// can catch up from them only by snapshot; returns the lowest of their
    /// truncated indexes then. Compaction runs on a GC tick, which a burst
    /// of writes can outrun: a test cutting a peer off waits here before it
    /// heals the partition.
    pub fn must_compact_past(
        &self,
        stores: &[u64],
        region_id: u64,
        index: u64,
        timeout: Duration,
    ) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let truncated: Vec<u64> = stores
                .iter()
                .map(|&s| self.truncated_index(s, region_id))
                .collect();
            if truncated.iter().all(|&t| t > index) {
                return truncated.into_iter().min().unwrap_or(index);
            }
            assert!(
                Instant::now() < deadline,
                "stores {stores:?} did not compact their log of region {region_id} past \
                 index {index} within {timeout:?}: truncated at {truncated:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Store `store_id`'s `RaftLocalState` of `region_id` (hard state, last
    /// index and term), read from its engine; `None` while the store is down
    /// or has no such region.
    pub fn raft_local_state(&self, store_id: u64, region_id: u64) -> Option<RaftLocalState> {
        self.inner.raft_local_state(store_id, region_id)
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
        self.inner.router(store_id)
    }

    /// The engine of running store `store_id`.
    pub fn store_engine(&self, store_id: u64) -> Option<Engine> {
        self.inner.store_engine(store_id)
    }

    /// Stops every store, keeping their data (dropping the cluster also
    /// removes it).
    pub fn shutdown(&self) {
        self.inner.shutdown();
    }
}
