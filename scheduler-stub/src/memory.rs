//! `MemoryScheduler`: the placement driver's state in memory, behind
//! [`SchedulerClient`], optionally written through to a state file.
//!
//! It owns the cluster id, the id allocator (`ids`), the stores, the region
//! map (kept fresh by heartbeats; `region_map` has the epoch rules), each
//! region's last reported leader and pending peers, the cluster config, the
//! timestamp oracle (`tso`) and the operators tests schedule. The test cluster
//! shares one `Arc<MemoryScheduler>` (made with [`MemoryScheduler::new`],
//! nothing on disk) between its stores; the `tinykv-scheduler` binary serves
//! one made with [`MemoryScheduler::open`] over gRPC (`service`).
//!
//! Persistence (`open`): every change to what the state file keeps (see
//! `persist`) is written there, fsynced, before it is applied in memory and
//! answered. A change whose write fails is refused and changes nothing.
//! Changes that only touch what is not kept (leaders, pending peers, store
//! stats, operators) write nothing, so the steady stream of heartbeats from an
//! idle cluster costs no fsync.
//!
//! A region heartbeat, step by step:
//! 1. under the state lock, validate everything (bootstrapped, region shape,
//!    leader is a member, leader's store known and not tombstone, epoch rules,
//!    ids within the allocator's bounds) before changing anything: a refused
//!    heartbeat changes nothing;
//! 2. if the region's range, peers or epoch changed, or its ids move the
//!    allocator's reservation, write the new state file;
//! 3. store the region, drop the older regions it replaces, reserve its ids,
//!    record its leader and pending peers;
//! 4. ask the region's operator for its next step; drop it if done;
//! 5. release the lock, then hand the response to the handler registered for
//!    the leader's store.
//!
//! Locks: `state` and `handlers` are never held together, and no handler runs
//! under either, so a handler may call back into the scheduler. `tso` may be
//! taken before `state`, never after. State file writes happen only under the
//! `state` write lock, so they are ordered like the changes they record.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use kvproto::metapb::{Cluster, Peer, Region, Store, StoreState};
use kvproto::schedulerpb::{
    RegionHeartbeatRequest, RegionHeartbeatResponse, ResponseHeader, SplitId, StoreStats, Timestamp,
};
use slog::{Logger, debug, error, info, o};

use crate::client::{RegionHeartbeatResponseHandler, SchedulerClient};
use crate::errors::{Error, Result};
use crate::ids::IdAllocator;
use crate::operator::{Operator, OperatorStep};
use crate::persist::{PersistedState, StateFile};
use crate::region_map::{RegionMap, check_region_shape, is_epoch_stale};
use crate::tso::TsoOracle;

/// The replica count of a new cluster's config, as TinyKV's scheduler.
const DEFAULT_MAX_PEER_COUNT: u32 = 3;

/// The most peers `ask_split` hands ids out for.
const MAX_SPLIT_PEERS: usize = 256;

/// A store as the scheduler keeps it.
#[derive(Debug, Clone)]
struct StoreRecord {
    meta: Store,
    /// The last `store_heartbeat`, if any.
    stats: Option<StoreStats>,
}

fn is_tombstone(store: &Store) -> bool {
    store.state() == StoreState::Tombstone
}

/// Every id a region carries: its own, its peers' and their stores'.
fn region_ids(region: &Region) -> impl Iterator<Item = u64> + '_ {
    region
        .peers
        .iter()
        .flat_map(|p| [p.id, p.store_id])
        .chain([region.id])
}

/// A registered [`RegionHeartbeatResponseHandler`], shared so it can be
/// called after the handler lock is released.
type SharedHandler = Arc<dyn Fn(RegionHeartbeatResponse) + Send + Sync>;

/// Everything a heartbeat may change, so one lock makes each call atomic.
#[derive(Debug)]
struct ClusterState {
    /// Invariant: false until `bootstrap` succeeds, then true for good.
    bootstrapped: bool,
    /// Store id -> store; ordered so `get_all_stores` lists by id.
    stores: BTreeMap<u64, StoreRecord>,
    regions: RegionMap,
    /// Region id -> the leader of the last accepted heartbeat.
    /// Invariant: keys are ids in `regions`; an entry goes when its region is
    /// dropped. Last writer wins: heartbeats carry no term, so a deposed
    /// leader's late report can name it until the new leader reports.
    leaders: HashMap<u64, Peer>,
    /// Region id -> pending peers of the last accepted heartbeat (peers the
    /// leader does not count as caught up); no entry when none.
    /// Invariant: keys are ids in `regions`, as for `leaders`.
    pending_peers: HashMap<u64, Vec<Peer>>,
    /// Region id -> the operator scheduled for it. Not tied to `regions`: a
    /// test may schedule before the region reports, and a region dropped for a
    /// newer overlapping one keeps its operator until it reports again.
    operators: HashMap<u64, Operator>,
    /// The id allocator.
    /// Invariant: above every id handed out and every store, region and peer
    /// id in `stores` and `regions`; with a state file, its `end` is the one
    /// on disk. Replaced (never changed in place) after the file is written.
    ids: IdAllocator,
    /// Invariant: `cluster_config.id` is the cluster id.
    cluster_config: Cluster,
    /// The durable timestamp limit, as on disk; the oracle keeps a copy.
    tso_limit_ms: i64,
}

impl ClusterState {
    fn new(cluster_id: u64) -> ClusterState {
        ClusterState {
            bootstrapped: false,
            stores: BTreeMap::new(),
            regions: RegionMap::default(),
            leaders: HashMap::new(),
            pending_peers: HashMap::new(),
            operators: HashMap::new(),
            ids: IdAllocator::new(0),
            cluster_config: Cluster {
                id: cluster_id,
                max_peer_count: DEFAULT_MAX_PEER_COUNT,
            },
            tso_limit_ms: 0,
        }
    }

    /// What the state file keeps of this state.
    fn to_persisted(&self) -> PersistedState {
        PersistedState {
            cluster_id: self.cluster_config.id,
            bootstrapped: self.bootstrapped,
            id_end: self.ids.end(),
            stores: self.stores.values().map(|r| r.meta.clone()).collect(),
            regions: self.regions.iter().cloned().collect(),
            cluster_config: Some(self.cluster_config),
            tso_limit_ms: self.tso_limit_ms,
        }
    }

    /// The state a state file describes, checked as thoroughly as a live
    /// update would be: a file that passed its checksum but describes an
    /// impossible cluster is refused, with the reason.
    fn from_persisted(persisted: PersistedState) -> std::result::Result<ClusterState, String> {
        let cluster_id = persisted.cluster_id;
        let mut state = ClusterState::new(cluster_id);
        state.bootstrapped = persisted.bootstrapped;
        state.ids = IdAllocator::new(persisted.id_end);
        state.tso_limit_ms = persisted.tso_limit_ms;
        if let Some(config) = persisted.cluster_config {
            if config.id != cluster_id {
                return Err(format!(
                    "cluster config names cluster {}, the file cluster {cluster_id}",
                    config.id
                ));
            }
            state.cluster_config = config;
        }
        if !state.bootstrapped && (!persisted.stores.is_empty() || !persisted.regions.is_empty()) {
            return Err("stores or regions in a cluster that is not bootstrapped".to_owned());
        }
        let id_end = persisted.id_end;
        let check_id = |what: &str, id: u64| {
            if id >= id_end {
                Err(format!(
                    "{what} id {id} is not below the reserved id end {id_end}"
                ))
            } else {
                Ok(())
            }
        };
        for store in persisted.stores {
            if store.id == 0 || state.stores.contains_key(&store.id) {
                return Err(format!("store id {} is 0 or repeated", store.id));
            }
            check_id("store", store.id)?;
            state.stores.insert(
                store.id,
                StoreRecord {
                    meta: store,
                    stats: None,
                },
            );
        }
        for region in persisted.regions {
            check_region_shape(&region).map_err(|e| e.to_string())?;
            for id in region_ids(&region) {
                check_id("region, peer or store", id)?;
            }
            if state.regions.get(region.id).is_some() {
                return Err(format!("region {} is listed twice", region.id));
            }
            match state.regions.check_update(&region) {
                Ok(replaced) if replaced.is_empty() => {}
                _ => return Err(format!("region {} overlaps another region", region.id)),
            }
            state.regions.apply_update(region, &[]);
        }
        Ok(state)
    }

    fn check_bootstrapped(&self) -> Result<()> {
        if self.bootstrapped {
            Ok(())
        } else {
            Err(Error::NotBootstrapped)
        }
    }

    /// A region with its leader, for lookups.
    fn with_leader(&self, region: &Region) -> (Region, Option<Peer>) {
        (region.clone(), self.leaders.get(&region.id).copied())
    }

    /// Panics with context if the maps disagree. (The region map checks
    /// itself on every update.)
    fn check_invariants(&self) {
        for id in self.leaders.keys() {
            assert!(
                self.regions.get(*id).is_some(),
                "leader kept for dropped region {id}"
            );
        }
        for id in self.pending_peers.keys() {
            assert!(
                self.regions.get(*id).is_some(),
                "pending peers kept for dropped region {id}"
            );
        }
        assert!(
            self.bootstrapped || (self.stores.is_empty() && self.regions.len() == 0),
            "stores or regions before bootstrap"
        );
        let next = self.ids.next();
        let max_seen = self
            .regions
            .iter()
            .flat_map(region_ids)
            .chain(self.stores.keys().copied())
            .max();
        assert!(
            max_seen.is_none_or(|id| id < next),
            "id {max_seen:?} in use but not below the allocator's next id {next}"
        );
    }
}

/// The placement driver's state. Thread safe; share it as
/// `Arc<MemoryScheduler>` (or `Arc<dyn SchedulerClient>`).
pub struct MemoryScheduler {
    /// Fixed at creation (or read from the state file), so read without a lock.
    cluster_id: u64,
    /// The cluster's metadata. One lock over all of it because a heartbeat's
    /// check-then-update spans the region map, leaders, pending peers,
    /// operators and the id allocator and must be atomic, and because the
    /// state file is written under it; a `RwLock` because lookups (routing,
    /// tests polling for a leader) far outnumber updates.
    state: RwLock<ClusterState>,
    /// Where the state is written through; `None` for a scheduler in memory
    /// only. Invariant: saved only under the `state` write lock.
    file: Option<StateFile>,
    /// The timestamp oracle. A `Mutex` of its own so timestamps do not wait
    /// behind heartbeats; it takes the `state` lock only to move its durable
    /// limit.
    tso: Mutex<TsoOracle>,
    /// Store id -> where that store's heartbeat responses go. Apart from
    /// `state` so handlers run with no scheduler lock held; a `RwLock` because
    /// every heartbeat reads it and only a store starting writes it. `Arc` so
    /// a handler can be cloned out and called after the lock is released.
    handlers: RwLock<HashMap<u64, SharedHandler>>,
    logger: Logger,
}

impl std::fmt::Debug for MemoryScheduler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryScheduler")
            .field("cluster_id", &self.cluster_id)
            .field("file", &self.file)
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

/// Wall-clock milliseconds since the Unix epoch (0 if the clock is before it).
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// A fresh cluster id: the creation time in seconds in the high half, random
/// bits in the low half (as TinyKV's scheduler does), so two clusters set up
/// independently do not share an id.
fn new_cluster_id() -> u64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // `RandomState` is seeded from the OS's randomness per process.
    let random = RandomState::new().hash_one(now_ms()) & 0xffff_ffff;
    ((secs << 32) | random).max(1)
}

impl MemoryScheduler {
    /// An empty, not yet bootstrapped scheduler for cluster `cluster_id`,
    /// kept in memory only. Ids start at 1 (0 means "no id" in TinyKV), and
    /// above any id `bootstrap` sees.
    pub fn new(cluster_id: u64, logger: &Logger) -> Self {
        Self::with_state(ClusterState::new(cluster_id), None, logger)
    }

    /// The scheduler whose state lives in `data_dir` (created if missing): the
    /// state the dir holds, or, for a dir that never held one, a new cluster
    /// with a fresh cluster id, written out before this returns.
    ///
    /// Fails, naming the file and the reason, if the state cannot be read or
    /// is torn or corrupt: a cluster is never silently forgotten.
    pub fn open(data_dir: &Path, logger: &Logger) -> Result<Self> {
        let (file, loaded) = StateFile::open(data_dir)?;
        let state = match loaded {
            Some(persisted) => {
                ClusterState::from_persisted(persisted).map_err(|reason| Error::State {
                    path: file.path().display().to_string(),
                    reason: format!("corrupt state: {reason}"),
                })?
            }
            None => {
                let state = ClusterState::new(new_cluster_id());
                file.save(&state.to_persisted())?;
                state
            }
        };
        let scheduler = Self::with_state(state, Some(file), logger);
        {
            let state = scheduler.read();
            info!(scheduler.logger, "scheduler state loaded";
                "path" => %data_dir.display(), "bootstrapped" => state.bootstrapped,
                "stores" => state.stores.len(), "regions" => state.regions.len(),
                "next_id" => state.ids.next());
        }
        Ok(scheduler)
    }

    fn with_state(state: ClusterState, file: Option<StateFile>, logger: &Logger) -> Self {
        let cluster_id = state.cluster_config.id;
        MemoryScheduler {
            cluster_id,
            tso: Mutex::new(TsoOracle::new(state.tso_limit_ms)),
            state: RwLock::new(state),
            file,
            handlers: RwLock::new(HashMap::new()),
            logger: logger.new(o!("cluster_id" => cluster_id)),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, ClusterState> {
        // Poisoned only if a thread panicked mid-update, i.e. an invariant
        // check failed: the state cannot be trusted any more.
        self.state
            .read()
            .expect("scheduler state lock poisoned by a panic during an update")
    }

    fn write(&self) -> RwLockWriteGuard<'_, ClusterState> {
        self.state
            .write()
            .expect("scheduler state lock poisoned by a panic during an update")
    }

    /// Writes the state `state` will be after `change` to the state file, if
    /// there is one. The caller holds the state write lock (so writes are
    /// ordered like changes) and applies the same change in memory only if
    /// this succeeds.
    fn persist(
        &self,
        state: &ClusterState,
        change: impl FnOnce(&mut PersistedState),
    ) -> Result<()> {
        let Some(file) = &self.file else {
            return Ok(());
        };
        let mut persisted = state.to_persisted();
        change(&mut persisted);
        file.save(&persisted).inspect_err(|e| {
            error!(self.logger, "cannot write the scheduler state, change refused"; "err" => %e);
        })
    }

    /// Hands out `count` consecutive ids, reserving a new batch durably first
    /// if needed.
    fn alloc_ids(&self, count: u64) -> Result<Range<u64>> {
        let mut state = self.write();
        let (ids, range) = state.ids.plan_alloc(count)?;
        if ids.end() != state.ids.end() {
            self.persist(&state, |p| p.id_end = ids.end())?;
        }
        state.ids = ids;
        Ok(range)
    }

    /// Bootstraps with the first store and, if given, the first region.
    fn bootstrap_with(&self, store: Store, region: Option<Region>) -> Result<()> {
        let mut state = self.write();
        if state.bootstrapped {
            return Err(Error::AlreadyBootstrapped);
        }
        if store.id == 0 || is_tombstone(&store) {
            return Err(Error::InvalidRequest(format!(
                "bootstrap with store {store:?}"
            )));
        }
        if let Some(region) = &region {
            check_region_shape(region)?;
        }
        let seen = region.iter().flat_map(region_ids).chain([store.id]);
        let ids = state.ids.plan_seen(seen)?;
        self.persist(&state, |p| {
            p.bootstrapped = true;
            p.id_end = ids.end();
            p.stores = vec![store.clone()];
            p.regions = region.iter().cloned().collect();
        })?;
        info!(self.logger, "bootstrap cluster"; "store_id" => store.id, "region" => ?region);
        state.ids = ids;
        state.bootstrapped = true;
        state.stores.insert(
            store.id,
            StoreRecord {
                meta: store,
                stats: None,
            },
        );
        if let Some(region) = region {
            state.regions.apply_update(region, &[]);
        }
        if cfg!(debug_assertions) {
            state.check_invariants();
        }
        Ok(())
    }

    /// Bootstraps as the wire's `Bootstrap` does: with the first store only.
    /// The first region arrives with its first heartbeat (TinyKV's scheduler
    /// works the same way); until then `get_region` finds nothing.
    pub fn bootstrap_store(&self, store: Store) -> Result<()> {
        self.bootstrap_with(store, None)
    }

    /// The regions overlapping `[start, end)` (an empty `end` is unbounded)
    /// with their leaders, in key order, at most `limit` of them (0: no
    /// limit). The first may begin before `start`.
    pub fn scan_regions(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<(Region, Option<Peer>)>> {
        let state = self.read();
        state.check_bootstrapped()?;
        let limit = if limit == 0 { usize::MAX } else { limit };
        Ok(state
            .regions
            .overlapping(start, end)
            .take(limit)
            .map(|r| state.with_leader(r))
            .collect())
    }

    /// The region before the one containing `key` in key order, with its
    /// leader; `None` if no region contains `key` or it is the first.
    pub fn get_prev_region(&self, key: &[u8]) -> Result<Option<(Region, Option<Peer>)>> {
        let state = self.read();
        state.check_bootstrapped()?;
        Ok(state
            .regions
            .find(key)
            .and_then(|region| state.regions.prev(region))
            .map(|r| state.with_leader(r)))
    }

    /// The last stats `store_id` reported, if any.
    pub fn store_stats(&self, store_id: u64) -> Result<Option<StoreStats>> {
        let state = self.read();
        state.check_bootstrapped()?;
        let record = state
            .stores
            .get(&store_id)
            .ok_or(Error::StoreNotFound(store_id))?;
        Ok(record.stats.clone())
    }

    /// The cluster config (cluster id and replica count).
    pub fn cluster_config(&self) -> Result<Cluster> {
        let state = self.read();
        state.check_bootstrapped()?;
        Ok(state.cluster_config)
    }

    /// Replaces the cluster config. Its id must be this cluster's.
    pub fn put_cluster_config(&self, config: Cluster) -> Result<()> {
        let mut state = self.write();
        state.check_bootstrapped()?;
        if config.id != self.cluster_id {
            return Err(Error::InvalidRequest(format!(
                "cluster config for cluster {}, this scheduler serves cluster {}",
                config.id, self.cluster_id
            )));
        }
        if config == state.cluster_config {
            return Ok(());
        }
        self.persist(&state, |p| p.cluster_config = Some(config))?;
        info!(self.logger, "cluster config changed"; "from" => ?state.cluster_config, "to" => ?config);
        state.cluster_config = config;
        Ok(())
    }

    /// The last of `count` fresh timestamps (see `tso`): strictly above every
    /// timestamp handed out before, by this process or an earlier one on the
    /// same data dir.
    pub fn tso(&self, count: u32) -> Result<Timestamp> {
        let mut oracle = self
            .tso
            .lock()
            .expect("tso lock poisoned by a panic while handing out a timestamp");
        let (next, ts, new_limit) = oracle.plan(now_ms(), count)?;
        if let Some(limit) = new_limit {
            let mut state = self.write();
            self.persist(&state, |p| p.tso_limit_ms = limit)?;
            state.tso_limit_ms = limit;
        }
        *oracle = next;
        Ok(ts)
    }

    /// Schedules adding `peer` to region `region_id`, replacing the region's
    /// operator. The peer id is reserved, so hand-picked ids are safe.
    pub fn add_peer(&self, region_id: u64, peer: Peer) {
        {
            let mut state = self.write();
            // A local call with no way to report an error: a refused id (far
            // beyond the allocator, or a failed write) is a caller's bug, logged.
            let reserved = state.ids.plan_seen([peer.id]).and_then(|ids| {
                if ids.end() != state.ids.end() {
                    self.persist(&state, |p| p.id_end = ids.end())?;
                }
                Ok(ids)
            });
            match reserved {
                Ok(ids) => state.ids = ids,
                Err(e) => error!(self.logger, "cannot reserve the id of a peer to add";
                    "region_id" => region_id, "peer_id" => peer.id, "err" => %e),
            }
        }
        self.schedule(region_id, Operator::AddPeer(peer));
    }

    /// Schedules removing `peer` from region `region_id`, replacing the
    /// region's operator.
    pub fn remove_peer(&self, region_id: u64, peer: Peer) {
        self.schedule(region_id, Operator::RemovePeer(peer));
    }

    /// Schedules moving region `region_id`'s leadership to `peer`, replacing
    /// the region's operator.
    pub fn transfer_leader(&self, region_id: u64, peer: Peer) {
        self.schedule(region_id, Operator::TransferLeader(peer));
    }

    /// The operator still scheduled for region `region_id`, if any.
    pub fn operator(&self, region_id: u64) -> Option<Operator> {
        self.read().operators.get(&region_id).cloned()
    }

    fn schedule(&self, region_id: u64, operator: Operator) {
        info!(self.logger, "schedule operator"; "region_id" => region_id, "operator" => ?operator);
        self.write().operators.insert(region_id, operator);
    }

    /// A region heartbeat as a gRPC stream handles it: applied as
    /// [`SchedulerClient::region_heartbeat`] does, but the response is
    /// returned, for the stream the heartbeat came on, instead of handed to a
    /// registered handler.
    pub(crate) fn heartbeat_response(
        &self,
        request: RegionHeartbeatRequest,
    ) -> Result<RegionHeartbeatResponse> {
        Ok(self.update_from_heartbeat(request)?.1)
    }

    /// Steps 1 to 4 of a heartbeat (see the module docs): the response and the
    /// store it goes to.
    fn update_from_heartbeat(
        &self,
        request: RegionHeartbeatRequest,
    ) -> Result<(u64, RegionHeartbeatResponse)> {
        let mut state = self.write();
        state.check_bootstrapped()?;
        let region = request
            .region
            .ok_or_else(|| Error::InvalidRequest("region heartbeat without a region".to_owned()))?;
        check_region_shape(&region)?;
        let leader = request.leader.ok_or_else(|| {
            Error::InvalidRequest(format!("region {}: heartbeat without a leader", region.id))
        })?;
        if !region.peers.contains(&leader) {
            return Err(Error::InvalidRequest(format!(
                "region {}: leader {leader:?} is not one of its peers",
                region.id
            )));
        }
        let store = state
            .stores
            .get(&leader.store_id)
            .ok_or(Error::StoreNotFound(leader.store_id))?;
        if is_tombstone(&store.meta) {
            return Err(Error::StoreTombstone(leader.store_id));
        }
        let replaced = state.regions.check_update(&region).inspect_err(|e| {
            debug!(self.logger, "refuse region heartbeat"; "region_id" => region.id, "err" => %e);
        })?;
        let ids = state.ids.plan_seen(region_ids(&region))?;
        let changed = !replaced.is_empty() || state.regions.get(region.id) != Some(&region);
        if changed || ids.end() != state.ids.end() {
            self.persist(&state, |p| {
                p.id_end = ids.end();
                p.regions
                    .retain(|r| r.id != region.id && !replaced.contains(&r.id));
                p.regions.push(region.clone());
                p.regions.sort_by(|a, b| a.start_key.cmp(&b.start_key));
            })?;
        }

        // Everything is checked and written; from here on the heartbeat is accepted.
        state.ids = ids;
        let region_id = region.id;
        let epoch = region.region_epoch;
        for id in &replaced {
            state.leaders.remove(id);
            state.pending_peers.remove(id);
        }
        let dropped = state.regions.apply_update(region, &replaced);
        match dropped.first() {
            Some(old) if old.id == region_id => {
                if old.region_epoch != epoch {
                    info!(self.logger, "region updated"; "region_id" => region_id,
                        "from" => ?old.region_epoch, "to" => ?epoch);
                }
            }
            _ => info!(self.logger, "region added"; "region_id" => region_id, "epoch" => ?epoch),
        }
        for old in dropped.iter().filter(|r| r.id != region_id) {
            info!(self.logger, "region dropped for a newer overlapping one";
                "region_id" => old.id, "epoch" => ?old.region_epoch, "by" => region_id);
        }
        state.leaders.insert(region_id, leader);
        if request.pending_peers.is_empty() {
            state.pending_peers.remove(&region_id);
        } else {
            state.pending_peers.insert(region_id, request.pending_peers);
        }

        let mut response = RegionHeartbeatResponse {
            header: Some(ResponseHeader {
                cluster_id: self.cluster_id,
                error: None,
            }),
            region_id,
            region_epoch: epoch,
            target_peer: Some(leader),
            ..Default::default()
        };
        if let Some(operator) = state.operators.get(&region_id) {
            let region = state
                .regions
                .get(region_id)
                .expect("region stored just above");
            let pending = state
                .pending_peers
                .get(&region_id)
                .map_or(&[][..], Vec::as_slice);
            match operator.next_step(region, &leader, pending) {
                OperatorStep::Finished => {
                    info!(self.logger, "operator finished"; "region_id" => region_id, "operator" => ?operator);
                    state.operators.remove(&region_id);
                }
                OperatorStep::Wait => {}
                OperatorStep::ChangePeer(change) => response.change_peer = Some(change),
                OperatorStep::TransferLeader(transfer) => response.transfer_leader = Some(transfer),
            }
        }
        if cfg!(debug_assertions) {
            state.check_invariants();
        }
        Ok((leader.store_id, response))
    }
}

impl SchedulerClient for MemoryScheduler {
    fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    fn alloc_id(&self) -> Result<u64> {
        Ok(self.alloc_ids(1)?.start)
    }

    fn bootstrap(&self, store: Store, region: Region) -> Result<()> {
        self.bootstrap_with(store, Some(region))
    }

    fn is_bootstrapped(&self) -> Result<bool> {
        Ok(self.read().bootstrapped)
    }

    fn put_store(&self, store: Store) -> Result<()> {
        let mut state = self.write();
        state.check_bootstrapped()?;
        if store.id == 0 {
            return Err(Error::InvalidRequest("put store with id 0".to_owned()));
        }
        match state.stores.get(&store.id) {
            Some(record) if is_tombstone(&record.meta) => {
                return Err(Error::StoreTombstone(store.id));
            }
            Some(record) if record.meta == store => return Ok(()),
            _ => {}
        }
        let ids = state.ids.plan_seen([store.id])?;
        self.persist(&state, |p| {
            p.id_end = ids.end();
            match p.stores.binary_search_by_key(&store.id, |s| s.id) {
                Ok(i) => p.stores[i] = store.clone(),
                Err(i) => p.stores.insert(i, store.clone()),
            }
        })?;
        state.ids = ids;
        if let Some(record) = state.stores.get_mut(&store.id) {
            info!(self.logger, "store updated"; "store_id" => store.id,
                "address" => &store.address, "state" => ?store.state());
            record.meta = store;
        } else {
            info!(self.logger, "store added"; "store_id" => store.id, "address" => &store.address);
            state.stores.insert(
                store.id,
                StoreRecord {
                    meta: store,
                    stats: None,
                },
            );
        }
        Ok(())
    }

    fn get_store(&self, store_id: u64) -> Result<Store> {
        let state = self.read();
        state.check_bootstrapped()?;
        let record = state
            .stores
            .get(&store_id)
            .ok_or(Error::StoreNotFound(store_id))?;
        Ok(record.meta.clone())
    }

    fn get_all_stores(&self) -> Result<Vec<Store>> {
        let state = self.read();
        state.check_bootstrapped()?;
        Ok(state.stores.values().map(|r| r.meta.clone()).collect())
    }

    fn get_region(&self, key: &[u8]) -> Result<(Region, Option<Peer>)> {
        let state = self.read();
        state.check_bootstrapped()?;
        let region = state
            .regions
            .find(key)
            .ok_or_else(|| Error::NoRegionForKey { key: key.to_vec() })?;
        Ok(state.with_leader(region))
    }

    fn get_region_by_id(&self, region_id: u64) -> Result<Option<(Region, Option<Peer>)>> {
        let state = self.read();
        state.check_bootstrapped()?;
        Ok(state.regions.get(region_id).map(|r| state.with_leader(r)))
    }

    fn ask_split(&self, region: &Region) -> Result<SplitId> {
        {
            let state = self.read();
            state.check_bootstrapped()?;
            let epoch = region.region_epoch.ok_or_else(|| {
                Error::InvalidRequest(format!("region {}: ask split without an epoch", region.id))
            })?;
            let current = state
                .regions
                .get(region.id)
                .ok_or(Error::RegionNotFound(region.id))?;
            let current_epoch = current.region_epoch.unwrap_or_default();
            if is_epoch_stale(&epoch, &current_epoch) {
                return Err(Error::StaleRegion {
                    region_id: region.id,
                    epoch,
                    current_id: current.id,
                    current_epoch,
                });
            }
        }
        // One id for the new region, one per peer; bounded, so that a request
        // cannot use up the id space.
        if region.peers.len() > MAX_SPLIT_PEERS {
            return Err(Error::InvalidRequest(format!(
                "region {}: ask split for {} peers, at most {MAX_SPLIT_PEERS}",
                region.id,
                region.peers.len()
            )));
        }
        let count = region.peers.len() as u64 + 1;
        let mut ids = self.alloc_ids(count)?;
        let new_region_id = ids.next().expect("count is at least 1");
        let new_peer_ids = ids.collect::<Vec<_>>();
        debug!(self.logger, "ask split"; "region_id" => region.id, "new_region_id" => new_region_id);
        Ok(SplitId {
            new_region_id,
            new_peer_ids,
        })
    }

    fn store_heartbeat(&self, stats: StoreStats) -> Result<()> {
        let mut state = self.write();
        state.check_bootstrapped()?;
        let record = state
            .stores
            .get_mut(&stats.store_id)
            .ok_or(Error::StoreNotFound(stats.store_id))?;
        if is_tombstone(&record.meta) {
            return Err(Error::StoreTombstone(stats.store_id));
        }
        record.stats = Some(stats);
        Ok(())
    }

    fn region_heartbeat(&self, request: RegionHeartbeatRequest) -> Result<()> {
        let (store_id, response) = self.update_from_heartbeat(request)?;
        let handler = self
            .handlers
            .read()
            .expect("handler lock poisoned: a panic while registering a handler")
            .get(&store_id)
            .cloned();
        match handler {
            Some(handler) => handler(response),
            None => debug!(self.logger, "no heartbeat response handler, dropping response";
                "store_id" => store_id, "region_id" => response.region_id),
        }
        Ok(())
    }

    fn set_region_heartbeat_response_handler(
        &self,
        store_id: u64,
        handler: RegionHeartbeatResponseHandler,
    ) {
        self.handlers
            .write()
            .expect("handler lock poisoned: a panic while registering a handler")
            .insert(store_id, Arc::from(handler));
    }
}

/// Compile-time checks: the scheduler is shareable across threads and usable
/// as `Arc<dyn SchedulerClient>`.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<MemoryScheduler>();
    fn _object_safe(scheduler: Arc<MemoryScheduler>) -> Arc<dyn SchedulerClient> {
        scheduler
    }
};

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Mutex;
    use std::thread;

    use kvproto::eraftpb::ConfChangeType;
    use kvproto::metapb::RegionEpoch;

    use super::*;

    fn new_test_logger() -> Logger {
        Logger::root(slog::Discard, o!())
    }

    fn new_test_store(id: u64) -> Store {
        Store {
            id,
            address: format!("127.0.0.1:{}", 20160 + id),
            state: StoreState::Up as i32,
        }
    }

    fn new_test_peer(id: u64, store_id: u64) -> Peer {
        Peer { id, store_id }
    }

    fn new_test_region(
        id: u64,
        range: (&[u8], &[u8]),
        epoch: (u64, u64),
        peers: &[Peer],
    ) -> Region {
        let (version, conf_ver) = epoch;
        Region {
            id,
            start_key: range.0.to_vec(),
            end_key: range.1.to_vec(),
            region_epoch: Some(RegionEpoch { conf_ver, version }),
            peers: peers.to_vec(),
        }
    }

    /// The first region, `["", "")` at epoch (version 1, conf_ver 1), with
    /// peer i on store i for the given stores.
    fn new_test_first_region(store_ids: &[u64]) -> Region {
        let peers = store_ids
            .iter()
            .map(|&s| new_test_peer(s, s))
            .collect::<Vec<_>>();
        new_test_region(1, (b"", b""), (1, 1), &peers)
    }

    /// A scheduler bootstrapped with store 1 and the first region, stores
    /// `1..=stores` put, and a handler per store recording responses.
    struct TestCluster {
        scheduler: Arc<MemoryScheduler>,
        responses: Arc<Mutex<Vec<(u64, RegionHeartbeatResponse)>>>,
    }

    fn new_test_cluster(stores: u64) -> TestCluster {
        let scheduler = Arc::new(MemoryScheduler::new(7, &new_test_logger()));
        let store_ids = (1..=stores).collect::<Vec<_>>();
        scheduler
            .bootstrap(new_test_store(1), new_test_first_region(&store_ids))
            .unwrap();
        let responses = Arc::new(Mutex::new(Vec::new()));
        for id in store_ids {
            scheduler.put_store(new_test_store(id)).unwrap();
            let responses = Arc::clone(&responses);
            scheduler.set_region_heartbeat_response_handler(
                id,
                Box::new(move |resp| responses.lock().unwrap().push((id, resp))),
            );
        }
        TestCluster {
            scheduler,
            responses,
        }
    }

    impl TestCluster {
        fn take_responses(&self) -> Vec<(u64, RegionHeartbeatResponse)> {
            std::mem::take(&mut *self.responses.lock().unwrap())
        }

        fn must_heartbeat(
            &self,
            region: &Region,
            leader: Peer,
            pending: &[Peer],
        ) -> RegionHeartbeatResponse {
            self.scheduler
                .region_heartbeat(RegionHeartbeatRequest {
                    region: Some(region.clone()),
                    leader: Some(leader),
                    pending_peers: pending.to_vec(),
                    ..Default::default()
                })
                .unwrap_or_else(|e| panic!("heartbeat of {region:?} refused: {e}"));
            let mut responses = self.take_responses();
            assert_eq!(
                responses.len(),
                1,
                "one response per heartbeat: {responses:?}"
            );
            let (store_id, response) = responses.pop().unwrap();
            assert_eq!(
                store_id, leader.store_id,
                "response goes to the leader's store"
            );
            response
        }

        fn region_by_id(&self, region_id: u64) -> Option<(Region, Option<Peer>)> {
            self.scheduler.get_region_by_id(region_id).unwrap()
        }
    }

    fn new_test_heartbeat(region: &Region, leader: Peer) -> RegionHeartbeatRequest {
        RegionHeartbeatRequest {
            region: Some(region.clone()),
            leader: Some(leader),
            ..Default::default()
        }
    }

    #[test]
    fn test_bootstrap_once() {
        let scheduler = MemoryScheduler::new(7, &new_test_logger());
        assert_eq!(scheduler.cluster_id(), 7);
        assert!(!scheduler.is_bootstrapped().unwrap());
        assert_eq!(scheduler.get_store(1), Err(Error::NotBootstrapped));
        assert_eq!(
            scheduler.put_store(new_test_store(1)),
            Err(Error::NotBootstrapped)
        );
        assert_eq!(scheduler.get_region(b""), Err(Error::NotBootstrapped));

        let first = new_test_first_region(&[1, 2, 3]);
        scheduler
            .bootstrap(new_test_store(1), first.clone())
            .unwrap();
        assert!(scheduler.is_bootstrapped().unwrap());
        assert_eq!(
            scheduler.bootstrap(new_test_store(2), new_test_first_region(&[2])),
            Err(Error::AlreadyBootstrapped)
        );
        // The first call's store and region stand; the second changed nothing.
        assert_eq!(scheduler.get_all_stores().unwrap(), vec![new_test_store(1)]);
        assert_eq!(scheduler.get_region(b"any").unwrap(), (first, None));
    }

    #[test]
    fn test_bootstrap_refuses_bad_input() {
        let scheduler = MemoryScheduler::new(7, &new_test_logger());
        let first = new_test_first_region(&[1]);
        let mut tombstone = new_test_store(1);
        tombstone.set_state(StoreState::Tombstone);
        for (store, region) in [
            (new_test_store(0), first.clone()),
            (tombstone, first.clone()),
            (
                new_test_store(1),
                Region {
                    region_epoch: None,
                    ..first.clone()
                },
            ),
        ] {
            let err = scheduler.bootstrap(store, region).unwrap_err();
            assert!(matches!(err, Error::InvalidRequest(_)), "{err}");
        }
        assert!(!scheduler.is_bootstrapped().unwrap());
    }

    #[test]
    fn test_alloc_ids_unique_increasing_and_above_bootstrap() {
        let scheduler = MemoryScheduler::new(7, &new_test_logger());
        // Peer ids 1..=3, store 12 in the bootstrap call: ids start at 13.
        scheduler
            .bootstrap(new_test_store(12), new_test_first_region(&[1, 2, 3]))
            .unwrap();
        let ids = (0..100)
            .map(|_| scheduler.alloc_id().unwrap())
            .collect::<Vec<_>>();
        assert_eq!(ids[0], 13);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        // A hand-picked store id or added peer id is never handed out later.
        scheduler.put_store(new_test_store(500)).unwrap();
        assert_eq!(scheduler.alloc_id().unwrap(), 501);
        scheduler.add_peer(1, new_test_peer(900, 2));
        assert_eq!(scheduler.alloc_id().unwrap(), 901);
    }

    #[test]
    fn test_huge_client_ids_do_not_move_the_allocator() {
        let cluster = new_test_cluster(2);
        let scheduler = &cluster.scheduler;
        let before = scheduler.alloc_id().unwrap();
        let huge = u64::MAX - 1;
        let err = scheduler
            .put_store(Store {
                id: huge,
                ..new_test_store(3)
            })
            .unwrap_err();
        assert!(matches!(err, Error::InvalidRequest(_)), "{err}");
        for region in [
            new_test_region(huge, (b"", b""), (2, 1), &[new_test_peer(1, 1)]),
            new_test_region(
                1,
                (b"", b""),
                (1, 2),
                &[new_test_peer(1, 1), new_test_peer(huge, 2)],
            ),
        ] {
            let err = scheduler
                .region_heartbeat(new_test_heartbeat(&region, new_test_peer(1, 1)))
                .unwrap_err();
            assert!(matches!(err, Error::InvalidRequest(_)), "{err}");
        }
        assert_eq!(
            cluster.region_by_id(1).unwrap().0,
            new_test_first_region(&[1, 2]),
            "nothing changed"
        );
        assert_eq!(scheduler.alloc_id().unwrap(), before + 1);

        // Ids a heartbeat brings in within bounds are reserved.
        let region = new_test_region(
            1,
            (b"", b""),
            (1, 2),
            &[new_test_peer(1, 1), new_test_peer(before + 50, 2)],
        );
        cluster.must_heartbeat(&region, new_test_peer(1, 1), &[]);
        assert_eq!(scheduler.alloc_id().unwrap(), before + 51);
    }

    #[test]
    fn test_alloc_id_exhaustion_is_an_error() {
        let scheduler = MemoryScheduler::new(7, &new_test_logger());
        scheduler.write().ids = IdAllocator::new(u64::MAX - 2);
        assert_eq!(scheduler.alloc_id(), Ok(u64::MAX - 2));
        assert!(matches!(scheduler.alloc_id(), Err(Error::Other(_))));
        assert!(
            matches!(scheduler.alloc_id(), Err(Error::Other(_))),
            "stays exhausted"
        );
    }

    #[test]
    fn test_alloc_id_concurrently() {
        let scheduler = Arc::new(MemoryScheduler::new(7, &new_test_logger()));
        let threads = (0..4)
            .map(|_| {
                let scheduler = Arc::clone(&scheduler);
                thread::spawn(move || {
                    let ids = (0..2000)
                        .map(|_| scheduler.alloc_id().unwrap())
                        .collect::<Vec<_>>();
                    assert!(
                        ids.windows(2).all(|w| w[0] < w[1]),
                        "ids increase within a thread"
                    );
                    ids
                })
            })
            .collect::<Vec<_>>();
        let mut all = HashSet::new();
        for handle in threads {
            for id in handle.join().unwrap() {
                assert!(all.insert(id), "id {id} handed out twice");
            }
        }
        assert_eq!(all.len(), 8000);
    }

    #[test]
    fn test_put_get_store() {
        let cluster = new_test_cluster(3);
        let scheduler = &cluster.scheduler;
        assert_eq!(scheduler.get_store(2).unwrap(), new_test_store(2));
        assert_eq!(scheduler.get_store(9), Err(Error::StoreNotFound(9)));
        let ids = scheduler
            .get_all_stores()
            .unwrap()
            .iter()
            .map(|s| s.id)
            .collect::<Vec<_>>();
        assert_eq!(ids, vec![1, 2, 3]);

        // Updating keeps the stats; a tombstone cannot come back.
        let stats = StoreStats {
            store_id: 2,
            capacity: 100,
            ..Default::default()
        };
        scheduler.store_heartbeat(stats.clone()).unwrap();
        let mut moved = new_test_store(2);
        moved.address = "10.0.0.2:20160".to_owned();
        scheduler.put_store(moved.clone()).unwrap();
        assert_eq!(scheduler.get_store(2).unwrap(), moved);
        assert_eq!(scheduler.store_stats(2).unwrap(), Some(stats));
        let mut tombstone = moved;
        tombstone.set_state(StoreState::Tombstone);
        scheduler.put_store(tombstone.clone()).unwrap();
        assert_eq!(
            scheduler.put_store(new_test_store(2)),
            Err(Error::StoreTombstone(2))
        );
        assert_eq!(scheduler.get_store(2).unwrap(), tombstone);
        assert!(matches!(
            scheduler.put_store(new_test_store(0)),
            Err(Error::InvalidRequest(_))
        ));
    }

    #[test]
    fn test_store_heartbeat() {
        let cluster = new_test_cluster(1);
        let scheduler = &cluster.scheduler;
        assert_eq!(scheduler.store_stats(1).unwrap(), None);
        let stats = StoreStats {
            store_id: 1,
            region_count: 4,
            ..Default::default()
        };
        scheduler.store_heartbeat(stats.clone()).unwrap();
        assert_eq!(scheduler.store_stats(1).unwrap(), Some(stats));
        let unknown = StoreStats {
            store_id: 5,
            ..Default::default()
        };
        assert_eq!(
            scheduler.store_heartbeat(unknown),
            Err(Error::StoreNotFound(5))
        );
        assert_eq!(scheduler.store_stats(5), Err(Error::StoreNotFound(5)));
    }

    #[test]
    fn test_region_lookup_boundaries() {
        let cluster = new_test_cluster(1);
        let p = |id| new_test_peer(id, 1);
        // The first region splits into [, b) [b, d) [d, ); then [d, ) is
        // replaced by [f, ) after a (test-made) merge-like change, leaving [d, f) empty.
        cluster.must_heartbeat(&new_test_region(1, (b"", b"b"), (2, 1), &[p(1)]), p(1), &[]);
        cluster.must_heartbeat(
            &new_test_region(2, (b"b", b"d"), (2, 1), &[p(2)]),
            p(2),
            &[],
        );
        cluster.must_heartbeat(&new_test_region(3, (b"d", b""), (2, 1), &[p(3)]), p(3), &[]);
        cluster.must_heartbeat(&new_test_region(4, (b"f", b""), (3, 1), &[p(4)]), p(4), &[]);
        let scheduler = &cluster.scheduler;
        let id_at = |key: &[u8]| scheduler.get_region(key).map(|(r, _)| r.id);
        assert_eq!(id_at(b""), Ok(1));
        assert_eq!(id_at(b"a\xff"), Ok(1));
        assert_eq!(id_at(b"b"), Ok(2), "start key inclusive");
        assert_eq!(
            id_at(b"d"),
            Err(Error::NoRegionForKey { key: b"d".to_vec() }),
            "end key exclusive"
        );
        assert_eq!(id_at(b"f"), Ok(4));
        assert_eq!(id_at(b"\xff\xff"), Ok(4), "empty end key is unbounded");

        let ids = |start: &[u8], end: &[u8], limit| {
            scheduler
                .scan_regions(start, end, limit)
                .unwrap()
                .into_iter()
                .map(|(r, _)| r.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(b"", b"", 0), vec![1, 2, 4]);
        assert_eq!(ids(b"a", b"", 2), vec![1, 2]);
        assert_eq!(ids(b"c", b"f", 0), vec![2], "end exclusive");
        assert_eq!(ids(b"e", b"g", 0), vec![4]);
        let (_, leader) = &scheduler.scan_regions(b"b", b"c", 0).unwrap()[0];
        assert_eq!(*leader, Some(p(2)));
    }

    #[test]
    fn test_heartbeat_epoch_rules() {
        let cluster = new_test_cluster(3);
        let (p1, p2, p3) = (
            new_test_peer(1, 1),
            new_test_peer(2, 2),
            new_test_peer(3, 3),
        );
        let scheduler = &cluster.scheduler;

        // Split: region 1 [, ) at version 1 becomes 1 [, m) and 2 [m, ) at
        // version 2. Region 2 reports first and drops the old region 1.
        let (n1, n2, n3) = (
            new_test_peer(11, 1),
            new_test_peer(12, 2),
            new_test_peer(13, 3),
        );
        let right = new_test_region(2, (b"m", b""), (2, 1), &[n1, n2, n3]);
        cluster.must_heartbeat(&right, n1, &[]);
        assert_eq!(cluster.region_by_id(1), None, "old region 1 dropped");
        assert!(matches!(
            scheduler.get_region(b"a"),
            Err(Error::NoRegionForKey { .. })
        ));

        // The pre-split region reporting late is stale and gets no response.
        let old = new_test_first_region(&[1, 2, 3]);
        let err = scheduler
            .region_heartbeat(new_test_heartbeat(&old, p1))
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::StaleRegion {
                    region_id: 1,
                    current_id: 2,
                    ..
                }
            ),
            "{err}"
        );
        assert!(cluster.take_responses().is_empty());

        let left = new_test_region(1, (b"", b"m"), (2, 1), &[p1, p2, p3]);
        cluster.must_heartbeat(&left, p1, &[]);
        assert_eq!(
            scheduler.get_region(b"a").unwrap(),
            (left.clone(), Some(p1))
        );

        // A conf change (conf_ver 1 -> 2) replaces the peers.
        let shrunk = new_test_region(1, (b"", b"m"), (2, 2), &[p1, p2]);
        cluster.must_heartbeat(&shrunk, p1, &[]);
        assert_eq!(cluster.region_by_id(1).unwrap().0, shrunk);
        // The report from before the conf change is now stale.
        let err = scheduler
            .region_heartbeat(new_test_heartbeat(&left, p1))
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::StaleRegion {
                    region_id: 1,
                    current_id: 1,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            cluster.region_by_id(1).unwrap().0,
            shrunk,
            "refused heartbeat changed nothing"
        );
    }

    #[test]
    fn test_heartbeat_refuses_bad_input() {
        let cluster = new_test_cluster(2);
        let scheduler = &cluster.scheduler;
        let p1 = new_test_peer(1, 1);
        let region = new_test_first_region(&[1, 2]);
        let cases = [
            RegionHeartbeatRequest {
                leader: Some(p1),
                ..Default::default()
            },
            RegionHeartbeatRequest {
                region: Some(region.clone()),
                ..Default::default()
            },
            new_test_heartbeat(&region, new_test_peer(7, 1)),
            new_test_heartbeat(
                &Region {
                    start_key: b"z".to_vec(),
                    end_key: b"a".to_vec(),
                    ..region.clone()
                },
                p1,
            ),
        ];
        for request in cases {
            let err = scheduler.region_heartbeat(request.clone()).unwrap_err();
            assert!(
                matches!(err, Error::InvalidRequest(_)),
                "{request:?}: {err}"
            );
        }
        // A leader on a store nobody put.
        let region9 = new_test_region(1, (b"", b""), (1, 1), &[p1, new_test_peer(9, 9)]);
        let err = scheduler
            .region_heartbeat(new_test_heartbeat(&region9, new_test_peer(9, 9)))
            .unwrap_err();
        assert_eq!(err, Error::StoreNotFound(9));
        assert!(cluster.take_responses().is_empty());
        assert_eq!(
            cluster.region_by_id(1).unwrap(),
            (region, None),
            "nothing changed"
        );
    }

    #[test]
    fn test_leader_tracking() {
        let cluster = new_test_cluster(3);
        let region = new_test_first_region(&[1, 2, 3]);
        assert_eq!(
            cluster.region_by_id(1).unwrap().1,
            None,
            "no leader before a heartbeat"
        );
        for leader in [new_test_peer(2, 2), new_test_peer(3, 3)] {
            let response = cluster.must_heartbeat(&region, leader, &[]);
            assert_eq!(response.target_peer, Some(leader));
            assert_eq!(response.region_id, 1);
            assert_eq!(response.region_epoch, region.region_epoch);
            assert_eq!(response.header.unwrap().cluster_id, 7);
            assert_eq!(cluster.region_by_id(1).unwrap().1, Some(leader));
            assert_eq!(cluster.scheduler.get_region(b"k").unwrap().1, Some(leader));
        }
        // A region dropped for a newer one takes its leader with it.
        let newer = new_test_region(5, (b"", b""), (2, 1), &[new_test_peer(50, 1)]);
        cluster.must_heartbeat(&newer, new_test_peer(50, 1), &[]);
        assert_eq!(cluster.region_by_id(1), None);
        assert_eq!(
            cluster.region_by_id(5).unwrap().1,
            Some(new_test_peer(50, 1))
        );
    }

    #[test]
    fn test_add_peer_operator() {
        // As TinyKV's conf change tests: store 2's first peer was removed, and
        // a new peer (a fresh id) goes back onto store 2.
        let cluster = new_test_cluster(2);
        let (p1, p2) = (new_test_peer(1, 1), new_test_peer(4, 2));
        let scheduler = &cluster.scheduler;
        let mut region = new_test_region(1, (b"", b""), (1, 2), &[p1]);
        cluster.must_heartbeat(&region, p1, &[]);
        scheduler.add_peer(1, p2);

        // Repeated until the conf change shows up in a heartbeat.
        for _ in 0..2 {
            let response = cluster.must_heartbeat(&region, p1, &[]);
            let change = response.change_peer.expect("add peer asked for");
            assert_eq!(
                (change.peer, change.change_type()),
                (Some(p2), ConfChangeType::AddNode)
            );
            assert_eq!(response.transfer_leader, None);
        }
        // Added but still catching up: nothing asked, operator kept.
        region = new_test_region(1, (b"", b""), (1, 3), &[p1, p2]);
        let response = cluster.must_heartbeat(&region, p1, &[p2]);
        assert_eq!(response.change_peer, None);
        assert_eq!(scheduler.operator(1), Some(Operator::AddPeer(p2)));
        // Caught up: done and cleared.
        let response = cluster.must_heartbeat(&region, p1, &[]);
        assert_eq!(response.change_peer, None);
        assert_eq!(scheduler.operator(1), None);
        assert_eq!(cluster.must_heartbeat(&region, p1, &[]).change_peer, None);
    }

    #[test]
    fn test_remove_peer_and_transfer_leader_operators() {
        let cluster = new_test_cluster(3);
        let (p1, p2, p3) = (
            new_test_peer(1, 1),
            new_test_peer(2, 2),
            new_test_peer(3, 3),
        );
        let scheduler = &cluster.scheduler;
        let region = new_test_first_region(&[1, 2, 3]);

        scheduler.transfer_leader(1, p2);
        let response = cluster.must_heartbeat(&region, p1, &[]);
        assert_eq!(response.transfer_leader.and_then(|t| t.peer), Some(p2));
        assert_eq!(response.change_peer, None);
        // The new leader reports: done; the response goes to its store.
        let response = cluster.must_heartbeat(&region, p2, &[]);
        assert_eq!(response.transfer_leader, None);
        assert_eq!(scheduler.operator(1), None);

        // A later operator replaces an unfinished one.
        scheduler.transfer_leader(1, p1);
        scheduler.remove_peer(1, p3);
        let response = cluster.must_heartbeat(&region, p2, &[]);
        assert_eq!(response.transfer_leader, None);
        let change = response.change_peer.expect("remove peer asked for");
        assert_eq!(
            (change.peer, change.change_type()),
            (Some(p3), ConfChangeType::RemoveNode)
        );
        let shrunk = new_test_region(1, (b"", b""), (1, 2), &[p1, p2]);
        let response = cluster.must_heartbeat(&shrunk, p2, &[]);
        assert_eq!(response.change_peer, None);
        assert_eq!(scheduler.operator(1), None);
    }

    #[test]
    fn test_operator_scheduled_before_region_reports() {
        let cluster = new_test_cluster(2);
        let (p1, p2) = (new_test_peer(21, 1), new_test_peer(22, 2));
        cluster.scheduler.transfer_leader(2, p2);
        let region = new_test_region(2, (b"", b""), (2, 1), &[p1, p2]);
        let response = cluster.must_heartbeat(&region, p1, &[]);
        assert_eq!(response.transfer_leader.and_then(|t| t.peer), Some(p2));
    }

    #[test]
    fn test_handler_may_call_back_and_missing_handler_drops() {
        let scheduler = Arc::new(MemoryScheduler::new(7, &new_test_logger()));
        scheduler
            .bootstrap(new_test_store(1), new_test_first_region(&[1]))
            .unwrap();
        let region = new_test_first_region(&[1]);
        // No handler for store 1 yet: the response is dropped, the heartbeat accepted.
        scheduler
            .region_heartbeat(new_test_heartbeat(&region, new_test_peer(1, 1)))
            .unwrap();
        assert_eq!(
            scheduler.get_region_by_id(1).unwrap().unwrap().1,
            Some(new_test_peer(1, 1))
        );

        let seen = Arc::new(Mutex::new(None));
        let (inner, seen_in) = (Arc::clone(&scheduler), Arc::clone(&seen));
        scheduler.set_region_heartbeat_response_handler(
            1,
            Box::new(move |resp| {
                // Re-entering the scheduler must not deadlock.
                let (_, leader) = inner.get_region_by_id(resp.region_id).unwrap().unwrap();
                *seen_in.lock().unwrap() = leader;
            }),
        );
        scheduler
            .region_heartbeat(new_test_heartbeat(&region, new_test_peer(1, 1)))
            .unwrap();
        assert_eq!(*seen.lock().unwrap(), Some(new_test_peer(1, 1)));
    }

    #[test]
    fn test_ask_split() {
        let cluster = new_test_cluster(3);
        let scheduler = &cluster.scheduler;
        let region = new_test_first_region(&[1, 2, 3]);
        let split = scheduler.ask_split(&region).unwrap();
        assert_eq!(split.new_peer_ids.len(), 3);
        let mut ids = split.new_peer_ids.clone();
        ids.push(split.new_region_id);
        assert!(
            ids.iter().all(|&id| id > 3),
            "ids above bootstrap's: {ids:?}"
        );
        assert_eq!(
            ids.iter().collect::<HashSet<_>>().len(),
            4,
            "ids distinct: {ids:?}"
        );

        assert_eq!(
            scheduler.ask_split(&Region {
                id: 9,
                ..region.clone()
            }),
            Err(Error::RegionNotFound(9))
        );
        let newer = new_test_region(
            1,
            (b"", b""),
            (1, 2),
            &[new_test_peer(1, 1), new_test_peer(2, 2)],
        );
        cluster.must_heartbeat(&newer, new_test_peer(1, 1), &[]);
        let err = scheduler.ask_split(&region).unwrap_err();
        assert!(
            matches!(err, Error::StaleRegion { region_id: 1, .. }),
            "{err}"
        );
    }

    #[test]
    fn test_concurrent_heartbeats_and_lookups() {
        // Stores heartbeat their own regions while a reader looks them up:
        // every lookup sees a consistent map (checked in debug builds on each
        // update) and every heartbeat is answered.
        let cluster = new_test_cluster(4);
        let scheduler = &cluster.scheduler;
        // Split the key space into four regions, one led from each store.
        let regions = (1..=4u64)
            .map(|i| {
                let start = if i == 1 { vec![] } else { vec![b'a' + i as u8] };
                let end = if i == 4 {
                    vec![]
                } else {
                    vec![b'a' + i as u8 + 1]
                };
                new_test_region(
                    i * 10,
                    (&start, &end),
                    (2, 1),
                    &[new_test_peer(i * 10 + 1, i)],
                )
            })
            .collect::<Vec<_>>();
        thread::scope(|s| {
            for region in &regions {
                s.spawn(move || {
                    let leader = region.peers[0];
                    for _ in 0..200 {
                        // Whichever reports first drops the first region (version
                        // 1); the four do not overlap, so none is ever refused.
                        if let Err(e) =
                            scheduler.region_heartbeat(new_test_heartbeat(region, leader))
                        {
                            panic!("heartbeat of region {} refused: {e}", region.id);
                        }
                    }
                });
            }
            s.spawn(|| {
                for _ in 0..200 {
                    let _ = scheduler.scan_regions(b"", b"", 0).unwrap();
                    let _ = scheduler.get_region(b"c");
                }
            });
        });
        let ids = scheduler
            .scan_regions(b"", b"", 0)
            .unwrap()
            .into_iter()
            .map(|(r, _)| r.id)
            .collect::<Vec<_>>();
        assert_eq!(ids, vec![10, 20, 30, 40]);
        assert_eq!(cluster.take_responses().len(), 800);
    }
}
