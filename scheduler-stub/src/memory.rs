//! `MemoryScheduler`: the placement driver's state in memory, behind
//! [`SchedulerClient`], optionally written through to a state file.
//!
//! It owns the cluster id, the id allocator (`ids`), the stores (with when
//! each was last heard from), the region map (kept fresh by heartbeats;
//! `region_map` has the epoch rules), each region's last leader report
//! (leader, term, pending and down peers, size), the cluster config, the
//! timestamp oracle (`tso`), the operators (scripted by tests, or made by
//! the checkers in `schedule` when scheduling is on; the glue is in
//! `memory_schedule.rs`) and the [`ScheduleConfig`]. The test cluster shares
//! one `Arc<MemoryScheduler>` (made with [`MemoryScheduler::new`], nothing on
//! disk, scheduling off) between its stores; the `tinykv-scheduler` binary
//! serves one made with [`MemoryScheduler::open`] and
//! [`MemoryScheduler::with_schedule_config`] over gRPC (`service`).
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
//! 3. store the region, drop the older regions it replaces (with their
//!    reports and operators), reserve its ids, record its leader report --
//!    unless the report carries a lower term than the one recorded (a deposed
//!    leader's late report): then the leader and operator are left as they are;
//! 4. drop the region's operator if its deadline passed; otherwise ask it for
//!    its next step and drop it if done or impossible; with scheduling on and
//!    no operator, run the replica checker on the region;
//! 5. release the lock, then hand the response to the handler registered for
//!    the leader's store, unless an answer computed later for the same region
//!    was already handed over (answers for a region go out in the order of
//!    its updates; an overtaken one is dropped, which is harmless since
//!    operators are repeated).
//!
//! Locks: `state` and `handlers` are never held together, and no handler runs
//! under either, so a handler may call back into the scheduler (but must not
//! send a region heartbeat from inside: handlers run under `delivered`).
//! `tso` may be taken before `state`, never after; `delivered` is taken
//! after `state` is released. State file writes happen only under the
//! `state` write lock, so they are ordered like the changes they record.
//!
//! Poisoned locks: a panic under a lock (a bug) must not take the scheduler
//! down. Every lock is taken through a helper that recovers the guard; for
//! `state`, it first repairs what a half-done update can leave behind
//! (`ClusterState::repair`) and logs it.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use kvproto::metapb::{Cluster, Peer, Region, Store, StoreState};
use kvproto::schedulerpb::{
    RegionHeartbeatRequest, RegionHeartbeatResponse, ResponseHeader, SplitId, StoreStats, Timestamp,
};
use slog::{Logger, debug, error, info, o};

use crate::client::{RegionHeartbeatResponseHandler, SchedulerClient};
use crate::errors::{Error, Result};
use crate::ids::IdAllocator;
use crate::operator::Operator;
use crate::persist::{PersistedState, StateFile};
use crate::region_map::{RegionMap, check_region_shape, is_epoch_stale};
use crate::schedule::ScheduleConfig;
use crate::schedule::store_liveness::Liveness;
use crate::tso::TsoOracle;

#[path = "memory_schedule.rs"]
mod scheduling;

pub use self::scheduling::ScheduleLoop;

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
    /// When it was last heard from (`schedule::store_liveness`).
    liveness: Liveness,
}

impl StoreRecord {
    fn new(meta: Store, now: Instant) -> Self {
        StoreRecord {
            meta,
            stats: None,
            liveness: Liveness::new(now),
        }
    }
}

/// The regions of one store as the scheduler knows them
/// ([`MemoryScheduler::store_region_stats`]): peers from the region map,
/// leaders, pending peers and sizes from the leaders' last reports.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreRegionStats {
    /// Regions with a peer on the store.
    pub region_count: u64,
    /// Regions whose last reported leader is the store's peer.
    pub leader_count: u64,
    /// The sum of those regions' reported sizes, in bytes.
    pub region_size: u64,
    /// The sum of the led regions' reported sizes, in bytes.
    pub leader_size: u64,
    /// Regions whose leader reports the store's peer as pending.
    pub pending_peer_count: u64,
}

/// What a region's leader last reported about it.
#[derive(Debug, Clone, PartialEq)]
struct LeaderReport {
    /// Invariant: a member of the region as stored.
    leader: Peer,
    /// The leader's Raft term; 0 if its store does not report terms.
    term: u64,
    /// Peers the leader does not count as caught up.
    pending: Vec<Peer>,
    /// Peers the leader has not heard from for a while.
    down: Vec<Peer>,
    /// Bytes, as reported (0: unknown).
    approximate_size: u64,
    /// Sessions in the region's client session table, as reported.
    client_sessions: u64,
}

/// An operator with its bookkeeping.
#[derive(Debug, Clone)]
struct ScheduledOperator {
    operator: Operator,
    /// When it is dropped if still unfinished.
    deadline: Instant,
    /// Who made it, for the logs.
    source: &'static str,
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
    /// Region id -> the last accepted leader report.
    /// Invariant: keys are ids in `regions`, and the leader is a member of
    /// the stored region; an entry goes when its region is dropped. A report
    /// with a lower term than the recorded one does not replace it (a
    /// deposed leader's late report); term 0 (a store that does not send
    /// terms) always does.
    reports: HashMap<u64, LeaderReport>,
    /// Region id -> the operator scheduled for it. Not tied to `regions`: a
    /// test may schedule before the region reports. Dropped with its region
    /// when a newer overlapping region replaces it, when its deadline
    /// passes, and when the region's state makes it impossible.
    operators: HashMap<u64, ScheduledOperator>,
    /// The scheduling settings; nothing is scheduled while not `enabled`.
    schedule: ScheduleConfig,
    /// Numbers heartbeat answers in the order they were computed, so that
    /// an answer overtaken by a later one for the same region is not
    /// delivered after it.
    answer_seq: u64,
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
            reports: HashMap::new(),
            operators: HashMap::new(),
            schedule: ScheduleConfig::default(),
            answer_seq: 0,
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
            // Every store gets a full `max_store_down_time` from start-up.
            state
                .stores
                .insert(store.id, StoreRecord::new(store, Instant::now()));
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
        (
            region.clone(),
            self.reports.get(&region.id).map(|r| r.leader),
        )
    }

    /// Panics with context if the maps disagree. (The region map checks
    /// itself on every update.)
    fn check_invariants(&self) {
        if let Err(broken) = self.validate() {
            panic!("scheduler state broken: {broken}");
        }
    }

    /// What is wrong with the state, if anything (`check_invariants` without
    /// the panic, for the repair after a poisoned lock).
    fn validate(&self) -> std::result::Result<(), String> {
        for (id, report) in &self.reports {
            let Some(region) = self.regions.get(*id) else {
                return Err(format!("leader report kept for dropped region {id}"));
            };
            if !region.peers.contains(&report.leader) {
                return Err(format!(
                    "region {id}: leader {:?} is not a member",
                    report.leader
                ));
            }
        }
        if !(self.bootstrapped || (self.stores.is_empty() && self.regions.len() == 0)) {
            return Err("stores or regions before bootstrap".to_owned());
        }
        let next = self.ids.next();
        let max_seen = self
            .regions
            .iter()
            .flat_map(region_ids)
            .chain(self.stores.keys().copied())
            .max();
        if max_seen.is_some_and(|id| id >= next) {
            return Err(format!(
                "id {max_seen:?} in use but not below the allocator's next id {next}"
            ));
        }
        self.regions.validate()
    }

    /// Brings a state that a panic may have left half-updated back to one
    /// that satisfies its invariants; returns what was fixed. Only in-memory
    /// bookkeeping is touched: the regions keep their newest versions, the
    /// allocator only moves up.
    fn repair(&mut self) -> Vec<String> {
        let mut fixed = Vec::new();
        for id in self.regions.rebuild() {
            fixed.push(format!("region {id} overlapped a newer one: dropped"));
        }
        let regions = &self.regions;
        self.reports.retain(|id, report| {
            let keep = regions
                .get(*id)
                .is_some_and(|r| r.peers.contains(&report.leader));
            if !keep {
                fixed.push(format!("region {id}: stale leader report dropped"));
            }
            keep
        });
        if !self.bootstrapped && (!self.stores.is_empty() || self.regions.len() > 0) {
            self.bootstrapped = true;
            fixed.push("stores or regions without bootstrap: marked bootstrapped".to_owned());
        }
        let max_seen = self
            .regions
            .iter()
            .flat_map(region_ids)
            .chain(self.stores.keys().copied())
            .max();
        if let Some(max) = max_seen
            && max >= self.ids.next()
        {
            // In memory only: the ids were accepted, so they are at most a
            // bounded step ahead, and the next reservation persists `end`.
            self.ids = IdAllocator::new(max.saturating_add(1).max(self.ids.end()));
            fixed.push(format!("id allocator moved above id {max}"));
        }
        fixed
    }
}

/// The placement driver's state. Thread safe; share it as
/// `Arc<MemoryScheduler>` (or `Arc<dyn SchedulerClient>`).
pub struct MemoryScheduler {
    /// Fixed at creation (or read from the state file), so read without a lock.
    cluster_id: u64,
    /// The cluster's metadata. One lock over all of it because a heartbeat's
    /// check-then-update spans the region map, leader reports, operators,
    /// the id allocator and the stores' liveness and must be atomic, and
    /// because the
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
    /// Region id -> the sequence number (`ClusterState::answer_seq`) of the
    /// last answer handed to a handler. A `Mutex` held while the handler
    /// runs, so that the check and the delivery are one step and answers for
    /// a region cannot overtake each other.
    delivered: Mutex<HashMap<u64, u64>>,
    /// Added to `Instant::now()`: lets tests move the scheduler's clock
    /// (store liveness, operator deadlines) without sleeping. Milliseconds.
    clock_offset_ms: AtomicU64,
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
            delivered: Mutex::new(HashMap::new()),
            clock_offset_ms: AtomicU64::new(0),
            logger: logger.new(o!("cluster_id" => cluster_id)),
        }
    }

    /// The scheduler's clock: monotonic, moved forward by tests.
    fn now(&self) -> Instant {
        Instant::now() + Duration::from_millis(self.clock_offset_ms.load(Ordering::Relaxed))
    }

    /// Moves the scheduler's clock forward by `by` (tests of store liveness
    /// and operator deadlines).
    #[cfg(test)]
    pub(crate) fn advance_clock(&self, by: Duration) {
        let ms = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        self.clock_offset_ms.fetch_add(ms, Ordering::Relaxed);
    }

    fn read(&self) -> RwLockReadGuard<'_, ClusterState> {
        match self.state.read() {
            Ok(guard) => guard,
            Err(poisoned) => {
                drop(poisoned);
                // Repair under the write lock, then read.
                drop(self.write());
                self.state.read().unwrap_or_else(PoisonError::into_inner)
            }
        }
    }

    fn write(&self) -> RwLockWriteGuard<'_, ClusterState> {
        match self.state.write() {
            Ok(guard) => guard,
            Err(poisoned) => {
                // A thread panicked while holding the lock (a bug): recover
                // the guard and repair what a half-done update can leave,
                // rather than take every later call down with it.
                let mut guard = poisoned.into_inner();
                let fixed = guard.repair();
                error!(self.logger, "scheduler state lock was poisoned by a panic; state repaired";
                    "fixed" => ?fixed);
                if let Err(broken) = guard.validate() {
                    error!(self.logger, "scheduler state still inconsistent after repair";
                        "err" => broken);
                }
                self.state.clear_poison();
                guard
            }
        }
    }

    /// The handler map, even if a panic poisoned its lock (a map of
    /// independent entries has no invariant a panic can break).
    fn handlers_read(&self) -> RwLockReadGuard<'_, HashMap<u64, SharedHandler>> {
        self.handlers.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn delivered(&self) -> MutexGuard<'_, HashMap<u64, u64>> {
        // A handler that panicked while delivering leaves the map as it was
        // before or after its one insert: both consistent.
        self.delivered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
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
        let now = self.now();
        state.stores.insert(store.id, StoreRecord::new(store, now));
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

    /// The size of region `region_id`'s client session table as its leader
    /// last reported it (0: no report, or none).
    pub fn client_sessions(&self, region_id: u64) -> u64 {
        self.read()
            .reports
            .get(&region_id)
            .map_or(0, |r| r.client_sessions)
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

    /// What the region map and the leaders' last reports say about the
    /// regions with a peer on `store_id` (all zero for a store holding none,
    /// known or not). Read-only; for tests and diagnostics.
    pub fn store_region_stats(&self, store_id: u64) -> Result<StoreRegionStats> {
        let state = self.read();
        state.check_bootstrapped()?;
        let mut stats = StoreRegionStats::default();
        for region in state.regions.iter() {
            let Some(peer) = region.peers.iter().find(|p| p.store_id == store_id) else {
                continue;
            };
            let report = state.reports.get(&region.id);
            let size = report.map_or(0, |r| r.approximate_size);
            stats.region_count += 1;
            stats.region_size += size;
            if report.is_some_and(|r| r.leader.id == peer.id) {
                stats.leader_count += 1;
                stats.leader_size += size;
            }
            if report.is_some_and(|r| r.pending.iter().any(|p| p.id == peer.id)) {
                stats.pending_peer_count += 1;
            }
        }
        Ok(stats)
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
        // The oracle is replaced whole (`*oracle = next`) only after its
        // limit is durable, so a panic cannot leave it half-changed.
        let mut oracle = self.tso.lock().unwrap_or_else(PoisonError::into_inner);
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
    /// A test hook: not validated (see `operator`).
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
        self.script(region_id, Operator::AddPeer(peer));
    }

    /// Schedules removing `peer` from region `region_id`, replacing the
    /// region's operator. A test hook: not validated (TinyKV's scenarios
    /// remove the leader itself).
    pub fn remove_peer(&self, region_id: u64, peer: Peer) {
        self.script(region_id, Operator::RemovePeer(peer));
    }

    /// Schedules moving region `region_id`'s leadership to `peer`, replacing
    /// the region's operator. A test hook: not validated.
    pub fn transfer_leader(&self, region_id: u64, peer: Peer) {
        self.script(region_id, Operator::TransferLeader(peer));
    }

    /// The operator still scheduled for region `region_id`, if any.
    pub fn operator(&self, region_id: u64) -> Option<Operator> {
        self.read()
            .operators
            .get(&region_id)
            .map(|s| s.operator.clone())
    }

    /// Installs a scripted operator, replacing the region's one.
    fn script(&self, region_id: u64, operator: Operator) {
        info!(self.logger, "schedule operator"; "region_id" => region_id, "operator" => ?operator);
        let now = self.now();
        let mut state = self.write();
        let deadline = now + operator_timeout(&state.schedule, &operator);
        state.operators.insert(
            region_id,
            ScheduledOperator {
                operator,
                deadline,
                source: "test",
            },
        );
    }

    /// A region heartbeat as a gRPC stream handles it: applied as
    /// [`SchedulerClient::region_heartbeat`] does, but the response is
    /// returned, for the stream the heartbeat came on, instead of handed to a
    /// registered handler.
    pub(crate) fn heartbeat_response(
        &self,
        request: RegionHeartbeatRequest,
    ) -> Result<RegionHeartbeatResponse> {
        Ok(self.update_from_heartbeat(request)?.2)
    }

    /// Steps 1 to 4 of a heartbeat (see the module docs): the store the
    /// response goes to, the response's sequence number and the response.
    fn update_from_heartbeat(
        &self,
        request: RegionHeartbeatRequest,
    ) -> Result<(u64, u64, RegionHeartbeatResponse)> {
        let now = self.now();
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
            state.reports.remove(id);
            if let Some(dropped) = state.operators.remove(id) {
                info!(self.logger, "operator dropped with its region";
                    "region_id" => id, "operator" => ?dropped.operator, "by" => region_id);
            }
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

        let region = state
            .regions
            .get(region_id)
            .expect("region stored just above");
        // A report from a lower term than recorded comes from a deposed
        // leader: it may not name the leader nor move an operator on. (Its
        // region part obeyed the epoch rules above, like any report.)
        let recorded = state.reports.get(&region_id);
        let stale_leader = recorded.is_some_and(|r| {
            request.term != 0 && request.term < r.term && region.peers.contains(&r.leader)
        });
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
        if stale_leader {
            debug!(self.logger, "leader report from an older term, leader kept";
                "region_id" => region_id, "peer_id" => leader.id, "term" => request.term,
                "recorded_term" => recorded.map_or(0, |r| r.term));
        } else {
            let report = LeaderReport {
                leader,
                term: request.term,
                pending: request.pending_peers,
                down: request.down_peers.iter().filter_map(|d| d.peer).collect(),
                approximate_size: request.approximate_size,
                client_sessions: request.client_sessions,
            };
            if let Some(old) = state.reports.get(&region_id)
                && old.leader != leader
            {
                info!(self.logger, "region leader changed"; "region_id" => region_id,
                    "from" => old.leader.id, "to" => leader.id, "term" => report.term);
            }
            state.reports.insert(region_id, report);
            self.step_operator(&mut state, region_id, now, &mut response);
        }
        if cfg!(debug_assertions) {
            state.check_invariants();
        }
        state.answer_seq += 1;
        Ok((leader.store_id, state.answer_seq, response))
    }
}

impl MemoryScheduler {
    /// Step 5 of a heartbeat: hands answer number `seq` to `store_id`'s
    /// handler, unless a later answer for the same region went out already.
    fn deliver(&self, store_id: u64, seq: u64, response: RegionHeartbeatResponse) {
        let handler = self.handlers_read().get(&store_id).cloned();
        let Some(handler) = handler else {
            debug!(self.logger, "no heartbeat response handler, dropping response";
                "store_id" => store_id, "region_id" => response.region_id);
            return;
        };
        let mut delivered = self.delivered();
        let last = delivered.entry(response.region_id).or_insert(0);
        if *last > seq {
            debug!(self.logger, "heartbeat answer overtaken by a newer one, dropping it";
                "region_id" => response.region_id, "store_id" => store_id);
            return;
        }
        *last = seq;
        handler(response);
    }
}

/// How long `operator` may take under `config`.
fn operator_timeout(config: &ScheduleConfig, operator: &Operator) -> Duration {
    if operator.is_leader_only() {
        config.leader_operator_timeout
    } else {
        config.region_operator_timeout
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
            let now = self.now();
            state.stores.insert(store.id, StoreRecord::new(store, now));
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
        let now = self.now();
        let mut state = self.write();
        state.check_bootstrapped()?;
        let record = state
            .stores
            .get_mut(&stats.store_id)
            .ok_or(Error::StoreNotFound(stats.store_id))?;
        if is_tombstone(&record.meta) {
            return Err(Error::StoreTombstone(stats.store_id));
        }
        record.liveness.on_heartbeat(now);
        record.stats = Some(stats);
        Ok(())
    }

    fn region_heartbeat(&self, request: RegionHeartbeatRequest) -> Result<()> {
        let (store_id, seq, response) = self.update_from_heartbeat(request)?;
        self.deliver(store_id, seq, response);
        Ok(())
    }

    fn set_region_heartbeat_response_handler(
        &self,
        store_id: u64,
        handler: RegionHeartbeatResponseHandler,
    ) {
        self.handlers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
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
#[path = "memory_tests.rs"]
mod tests;
