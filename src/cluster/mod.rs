//! The in-process cluster: N stores of the real raftstore in one process,
//! each over its own RocksDB in a temp dir, connected by a simulated network,
//! with the placement driver in-process. The region/leader test cluster of
//! `tinykv-tests` and `tinykv-bench` are both built on it.
//!
//! Modules:
//! - [`transport`]: [`SimNetwork`], every store's `Transport`: raft
//!   messages go straight into the target store's router, snapshots take
//!   the chunked path through their wire encoding.
//! - [`filter`]: what the network lets through (partitions, loss, delay),
//!   with every random choice seeded.
//! - [`scheduler`]: the stores' reports into a `MemoryScheduler`, and its
//!   operators back to the stores as admin commands.
//! - [`directory`]: the [`Directory`] clients share with the cluster: the
//!   stores' routers, the regions and leaders seen, the scheduler.
//! - [`client`]: a [`Client`] that finds a region's leader, follows
//!   `NotLeader` hints and retries what can be retried, with a back-off;
//!   [`AsyncClient`] is the same client for tasks on the store runtime.
//! - [`link`]: a [`ClientLink`], what one client's connection lets through
//!   (the stores it reaches, requests and replies lost).
//! - [`clerk`]: a [`Clerk`], MIT 6.824's key/value client over [`Client`]:
//!   `put`, `append`, `get`, writes exactly once through a client session.
//!
//! Lifecycle: [`Cluster::new`] makes the runtime, the temp dir and the
//! scheduler; [`Cluster::bootstrap`] writes every store's ident and the
//! first region (by default a peer on each store, peer id = store id; with
//! [`ClusterOptions::bootstrap_single_replica`] one peer, on store 1), and
//! bootstraps the scheduler; [`Cluster::start`] does that and starts every
//! store, [`Cluster::start_with`] only the stores named. Stores then start,
//! stop, restart, or are wiped one at a time. A store registers with the
//! scheduler (`PutStore`) each time it starts, as a store node does: a
//! store never started is unknown to the scheduler, so scheduling never
//! places a peer on it. Dropping the cluster stops the schedule loop and
//! the stores, and removes the data.
//!
//! What differs between users is an option, not a fork: the number of
//! stores, the raftstore `Config`, the disk the data goes to, the runtime's
//! threads, the network's seed, the logger, how the first region is
//! bootstrapped and whether the scheduler schedules by itself
//! ([`ClusterOptions`]). The cluster's methods block (they wait on the
//! store runtime): call them from plain threads, never from inside an async
//! task.

pub mod clerk;
pub mod client;
pub mod directory;
pub mod filter;
pub mod link;
pub mod scheduler;
pub mod transport;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use kvproto::raft_serverpb::{RaftApplyState, RaftLocalState, RegionLocalState};
use kvproto::{errorpb, metapb};
use prost::Message;
use raftstore::bootstrap::{bootstrap_store, new_first_region, write_initial_region};
use raftstore::{Config, SnapManager, Store};
use router::Router;
use scheduler_stub::{MemoryScheduler, ScheduleConfig, ScheduleLoop, SchedulerClient};
use slog::Logger;
use storage::{CF_DEFAULT, CF_RAFT, Engine, keys};

pub use self::clerk::Clerk;
pub use self::client::{Answer, AsyncClient, Attempt, Client, Retries, TimedOut};
pub use self::directory::Directory;
use self::filter::{Filter, PartitionFilter};
pub use self::link::ClientLink;
use self::transport::{SimNetwork, StoreTransport};

/// The id of the region a cluster starts with.
pub const FIRST_REGION_ID: u64 = 1;
/// The cluster id every in-process cluster uses.
pub const CLUSTER_ID: u64 = 1;

/// What can fail while a cluster is built, run or called.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// A store could not be bootstrapped or started.
    #[error("raftstore: {0}")]
    Raftstore(#[from] raftstore::Error),
    /// An engine could not be opened or written.
    #[error("storage: {0}")]
    Storage(#[from] storage::Error),
    /// The in-process scheduler refused to bootstrap or register a store.
    #[error("scheduler: {0}")]
    Scheduler(#[from] scheduler_stub::Error),
    /// A file-system or thread operation failed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The cause.
        source: std::io::Error,
    },
    /// The operation needs store `0` stopped.
    #[error("store {0} is running")]
    StoreRunning(u64),
    /// No answer that a retry could not improve came in time.
    #[error(transparent)]
    TimedOut(#[from] TimedOut),
    /// The command was answered with a region error no retry can fix.
    #[error("request failed: {}", .0.message)]
    Failed(Box<errorpb::Error>),
    /// A session write may have been applied by an earlier attempt, and its
    /// session ended in the region before the write was confirmed: whether
    /// it took effect is unknown, and sending it again could apply it twice.
    #[error(
        "write {sequence} of client {client_id} has an unknown outcome: its session \
         expired in region {region_id} after an attempt that may have applied"
    )]
    SessionLost {
        /// The client.
        client_id: u64,
        /// The write's sequence number.
        sequence: u64,
        /// The region that no longer holds the session.
        region_id: u64,
    },
    /// A store id outside `1..=stores`.
    #[error("store {store_id} is not one of this cluster's stores (1..={stores})")]
    UnknownStore {
        /// The id asked for.
        store_id: u64,
        /// How many stores the cluster has.
        stores: u64,
    },
    /// [`Cluster::bootstrap`] was called on a bootstrapped cluster.
    #[error("the cluster is already bootstrapped")]
    AlreadyBootstrapped,
}

/// How to build a [`Cluster`]: [`ClusterOptions::new`] with the store count
/// and config, then the builder methods for whatever differs from the
/// defaults.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    stores: u64,
    cfg: Config,
    data_parent: PathBuf,
    runtime_threads: usize,
    network_seed: u64,
    logger: Logger,
    /// `Some`: the scheduler schedules by itself with these settings.
    schedule: Option<ScheduleConfig>,
    /// The first region has one peer, on store 1, instead of one per store.
    single_replica: bool,
}

impl ClusterOptions {
    /// `stores` stores (ids `1..=stores`, each with a peer of the first
    /// region) running `cfg`; data under the system temp dir, a 2-thread
    /// runtime, network seed `0x7e57`, no logs, a scheduler that only hands
    /// out the operators it is told to.
    pub fn new(stores: u64, cfg: Config) -> Self {
        ClusterOptions {
            stores,
            cfg,
            data_parent: std::env::temp_dir(),
            runtime_threads: 2,
            network_seed: 0x7e57,
            logger: Logger::root(slog::Discard, slog::o!()),
            schedule: None,
            single_replica: false,
        }
    }

    /// The scheduler schedules by itself with `config` (its replica checker
    /// on every region heartbeat, its periodic pass on a thread started with
    /// the cluster and stopped when the cluster is dropped). `config.enabled`
    /// is what it says: off, only operators asked for are handed out.
    pub fn schedule(mut self, config: ScheduleConfig) -> Self {
        self.schedule = Some(config);
        self
    }

    /// The first region is bootstrapped with a single peer (id 1) on store
    /// 1; the other stores get their store ident but hold no region until
    /// the scheduler (or a test) adds peers on them. As a fresh TinyKV
    /// cluster starts.
    pub fn bootstrap_single_replica(mut self) -> Self {
        self.single_replica = true;
        self
    }

    /// The directory the cluster's temp dir is made in: its disk is the one
    /// the stores write to.
    pub fn data_parent(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_parent = dir.into();
        self
    }

    /// Worker threads of the runtime the store actors run on (at least 1).
    pub fn runtime_threads(mut self, threads: usize) -> Self {
        self.runtime_threads = threads.max(1);
        self
    }

    /// The seed of the network filters' random choices.
    pub fn network_seed(mut self, seed: u64) -> Self {
        self.network_seed = seed;
        self
    }

    /// The logger of the stores and the scheduler.
    pub fn logger(mut self, logger: Logger) -> Self {
        self.logger = logger;
        self
    }
}

/// N stores in one process. `Sync`: clients on many threads share it.
pub struct Cluster {
    rt: tokio::runtime::Runtime,
    opts: ClusterOptions,
    /// Every store's data: `store-{id}/db` (the engine) and
    /// `store-{id}/snap` (snapshot files). Removed on drop, once the stores
    /// have stopped.
    dir: PathBuf,
    /// Running stores. A `Mutex`: stores start and stop one at a time, and
    /// readers only clone an engine handle out of it.
    stores: Mutex<HashMap<u64, Store>>,
    net: Arc<SimNetwork>,
    /// The placement driver, in-process.
    scheduler: Arc<MemoryScheduler>,
    /// The scheduler's periodic pass, running from bootstrap (with
    /// [`ClusterOptions::schedule`]) until the cluster is dropped. A
    /// `Mutex`: set once by `bootstrap`, taken once by `drop`.
    schedule_loop: Mutex<Option<ScheduleLoop>>,
    /// What clients know of the stores, regions and leaders.
    directory: Arc<Directory>,
}

// Every lock above guards a map that each write leaves whole (one insert or
// remove), so a lock poisoned by a panicking thread is still used.

impl Cluster {
    /// A cluster as `opts` says, not started: its runtime, temp dir and
    /// scheduler exist, no store does.
    pub fn new(opts: ClusterOptions) -> Result<Cluster, ClusterError> {
        let io = |what: &'static str| move |source| ClusterError::Io { what, source };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.runtime_threads)
            .thread_name("store-rt")
            .enable_all()
            .build()
            .map_err(io("build the store runtime"))?;
        std::fs::create_dir_all(&opts.data_parent).map_err(io("create the data directory"))?;
        // Kept, not removed on drop: `Drop` removes it once the engines
        // are closed.
        let dir = tempfile::Builder::new()
            .prefix("tinykv-cluster-")
            .tempdir_in(&opts.data_parent)
            .map_err(io("create the cluster's temp dir"))?
            .keep();
        let mut scheduler = MemoryScheduler::new(CLUSTER_ID, &opts.logger);
        if let Some(config) = &opts.schedule {
            scheduler = scheduler.with_schedule_config(config.clone());
        }
        let net = SimNetwork::new(opts.network_seed);
        let scheduler = Arc::new(scheduler);
        Ok(Cluster {
            rt,
            dir,
            stores: Mutex::new(HashMap::new()),
            directory: Arc::new(Directory::new(
                opts.stores,
                Arc::clone(&net),
                Arc::clone(&scheduler),
            )),
            net,
            scheduler,
            schedule_loop: Mutex::new(None),
            opts,
        })
    }

    /// Store `store_id`'s directory: its engine in `db`, its snapshot files
    /// in `snap`.
    fn store_path(&self, store_id: u64) -> PathBuf {
        self.dir.join(format!("store-{store_id}"))
    }

    fn engine_path(&self, store_id: u64) -> PathBuf {
        self.store_path(store_id).join("db")
    }

    /// Where the stores keep their data.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Bootstraps every store and the first region (a peer on each store,
    /// peer id = store id, or with [`ClusterOptions::bootstrap_single_replica`]
    /// one peer on store 1) and the scheduler, then starts every store.
    pub fn start(&self) -> Result<(), ClusterError> {
        self.start_with(&self.store_ids())
    }

    /// Bootstraps as [`Cluster::start`] does, then starts only the stores
    /// in `store_ids` (the others with [`Cluster::start_store`] later).
    pub fn start_with(&self, store_ids: &[u64]) -> Result<(), ClusterError> {
        for &store_id in store_ids {
            self.check_store_id(store_id)?;
        }
        self.bootstrap()?;
        for &store_id in store_ids {
            self.start_store(store_id)?;
        }
        Ok(())
    }

    /// Writes every store's ident and the first region into the stores'
    /// engines, bootstraps the scheduler with store 1 and the region, and
    /// starts the scheduler's periodic pass if scheduling is configured.
    /// Starts no store. Fails if the cluster is already bootstrapped.
    pub fn bootstrap(&self) -> Result<(), ClusterError> {
        if self.scheduler.is_bootstrapped()? {
            return Err(ClusterError::AlreadyBootstrapped);
        }
        let members: Vec<u64> = if self.opts.single_replica {
            vec![1]
        } else {
            self.store_ids()
        };
        let peers: Vec<metapb::Peer> = members
            .iter()
            .map(|&id| metapb::Peer { id, store_id: id })
            .collect();
        let region = new_first_region(FIRST_REGION_ID, peers);
        for store_id in self.store_ids() {
            let engine = Engine::open(self.engine_path(store_id))?;
            bootstrap_store(&engine, CLUSTER_ID, store_id)?;
            if members.contains(&store_id) {
                write_initial_region(&engine, &region)?;
            }
        }
        self.scheduler.bootstrap(new_store(1), region.clone())?;
        for store_id in self.store_ids() {
            // Answers for a store that is not running are dropped by the
            // handler, so registering them all now is harmless.
            self.scheduler.set_region_heartbeat_response_handler(
                store_id,
                scheduler::operator_handler(Arc::clone(&self.net), store_id),
            );
        }
        self.directory.note_region(&region);
        if self.opts.schedule.is_some() {
            let schedule_loop = self.scheduler.start_schedule_loop();
            *self
                .schedule_loop
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(schedule_loop);
        }
        Ok(())
    }

    fn check_store_id(&self, store_id: u64) -> Result<(), ClusterError> {
        if (1..=self.opts.stores).contains(&store_id) {
            Ok(())
        } else {
            Err(ClusterError::UnknownStore {
                store_id,
                stores: self.opts.stores,
            })
        }
    }

    /// Starts (or restarts) store `store_id` from its data directory and
    /// registers it with the scheduler (`PutStore`, as a store node does on
    /// every start; a repeat changes nothing).
    pub fn start_store(&self, store_id: u64) -> Result<(), ClusterError> {
        self.check_store_id(store_id)?;
        self.scheduler.put_store(new_store(store_id))?;
        let engine = Engine::open(self.engine_path(store_id))?;
        let snap_mgr = SnapManager::open(self.store_path(store_id).join("snap"))?;
        let transport = Arc::new(StoreTransport::new(Arc::clone(&self.net), snap_mgr.clone()));
        let store = {
            let _guard = self.rt.enter();
            Store::start(
                store_id,
                self.opts.cfg.clone(),
                engine,
                snap_mgr.clone(),
                transport,
                Arc::new(scheduler::Reporter::new(
                    Arc::clone(&self.scheduler),
                    Arc::clone(&self.net),
                    &self.opts.logger,
                )),
                &self.opts.logger,
            )?
        };
        self.net.register(store_id, store.router(), snap_mgr);
        self.lock_stores().insert(store_id, store);
        Ok(())
    }

    /// Stops store `store_id`, keeping its data. Nothing happens if it is
    /// not running.
    pub fn stop_store(&self, store_id: u64) {
        self.net.unregister(store_id);
        let store = self.lock_stores().remove(&store_id);
        if let Some(store) = store {
            self.rt.block_on(store.stop());
        }
    }

    /// Stops every store, keeping their data.
    pub fn shutdown(&self) {
        for store_id in self.store_ids() {
            self.stop_store(store_id);
        }
    }

    /// Stops every store and removes the cluster's data, saying whether the
    /// removal failed (dropping the cluster does the same, and can only log
    /// a failure).
    pub fn destroy(self) -> Result<(), ClusterError> {
        self.shutdown();
        // `Drop` then finds nothing left to stop or remove.
        remove_when_closed(&self.dir).map_err(|source| ClusterError::Io {
            what: "remove the cluster's data",
            source,
        })
    }

    /// Whether store `store_id` is running.
    pub fn is_running(&self, store_id: u64) -> bool {
        self.lock_stores().contains_key(&store_id)
    }

    fn must_be_stopped(&self, store_id: u64) -> Result<(), ClusterError> {
        if self.is_running(store_id) {
            return Err(ClusterError::StoreRunning(store_id));
        }
        Ok(())
    }

    /// Replaces stopped store `store_id`'s data with an empty, freshly
    /// bootstrapped store (a replaced disk): its peers come back only when
    /// a leader sends them a snapshot.
    pub fn wipe_store(&self, store_id: u64) -> Result<(), ClusterError> {
        self.must_be_stopped(store_id)?;
        remove_when_closed(&self.store_path(store_id)).map_err(|source| ClusterError::Io {
            what: "remove the store's data",
            source,
        })?;
        let engine = Engine::open(self.engine_path(store_id))?;
        bootstrap_store(&engine, CLUSTER_ID, store_id)?;
        Ok(())
    }

    /// Opens stopped store `store_id`'s engine, to look at or tamper with
    /// its data as a crash could have left it. Drop the engine before the
    /// store starts again.
    pub fn open_stopped_engine(&self, store_id: u64) -> Result<Engine, ClusterError> {
        self.must_be_stopped(store_id)?;
        Ok(Engine::open(self.engine_path(store_id))?)
    }

    /// Every region state running store `store_id` holds (tombstones
    /// included), by region id, read from its engine: what the store itself
    /// knows of its regions, whatever the scheduler last heard. `None` while
    /// the store is down; an error if its engine cannot be read.
    pub fn region_states(
        &self,
        store_id: u64,
    ) -> Option<Result<Vec<(u64, RegionLocalState)>, ClusterError>> {
        let engine = self.store_engine(store_id)?;
        let mut states = Vec::new();
        let scanned = engine.scan_cf(
            CF_DEFAULT,
            keys::REGION_META_MIN_KEY,
            keys::REGION_META_MAX_KEY,
            |key, value| {
                let (region_id, suffix) = keys::decode_region_meta_key(key)?;
                if suffix == keys::REGION_STATE_SUFFIX {
                    let state = RegionLocalState::decode(value).map_err(|source| {
                        storage::Error::Decode {
                            key: key.to_vec(),
                            source,
                        }
                    })?;
                    states.push((region_id, state));
                }
                Ok(true)
            },
        );
        Some(scanned.map(|()| states).map_err(ClusterError::from))
    }

    /// The engine of running store `store_id`.
    pub fn store_engine(&self, store_id: u64) -> Option<Engine> {
        self.lock_stores()
            .get(&store_id)
            .map(|s| s.engine().clone())
    }

    /// The router of running store `store_id`.
    pub fn router(&self, store_id: u64) -> Option<Router> {
        self.directory.router(store_id)
    }

    /// The ids of the stores, running or not.
    pub fn store_ids(&self) -> Vec<u64> {
        self.directory.store_ids()
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

    /// Adds a network filter.
    pub fn add_filter(&self, filter: Arc<dyn Filter>) {
        self.net.add_filter(filter);
    }

    /// Removes every network filter.
    pub fn clear_filters(&self) {
        self.net.clear_filters();
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

    /// A client of this cluster, for plain threads.
    pub fn client(&self) -> Client {
        Client::new(Arc::clone(&self.directory), self.rt.handle().clone())
    }

    /// The runtime the stores run on: where [`AsyncClient`] tasks go.
    pub fn runtime(&self) -> &tokio::runtime::Handle {
        self.rt.handle()
    }

    /// Puts a probe key until a put succeeds: a leader of the first region
    /// is elected and its first entry of the term is committed. Returns the
    /// time it took and the leader's store id, which clients try first.
    pub fn wait_for_leader(&self, timeout: Duration) -> Result<(Duration, u64), ClusterError> {
        let start = Instant::now();
        self.client()
            .put(b"cluster-probe".to_vec(), b"ready".to_vec(), timeout)?;
        let leader = self.leader(FIRST_REGION_ID).map_or(0, |p| p.store_id);
        Ok((start.elapsed(), leader))
    }

    /// The region containing `key`, as clients last saw it
    /// ([`Directory::region_for_key`]).
    pub fn region_for_key(&self, key: &[u8]) -> Option<metapb::Region> {
        self.directory.region_for_key(key)
    }

    /// Asks the scheduler which region holds `key` and records it
    /// ([`Directory::refresh_region_for_key`]).
    pub fn refresh_region_for_key(&self, key: &[u8]) -> Option<metapb::Region> {
        self.directory.refresh_region_for_key(key)
    }

    /// Region `region_id` as clients last saw it.
    pub fn region(&self, region_id: u64) -> Option<metapb::Region> {
        self.directory.region(region_id)
    }

    /// The ids of the stores holding a peer of `region_id`, as last seen.
    pub fn store_ids_of_region(&self, region_id: u64) -> Vec<u64> {
        self.region(region_id)
            .map(|r| r.peers.iter().map(|p| p.store_id).collect())
            .unwrap_or_default()
    }

    /// The peer of `region_id` that last answered a client successfully.
    pub fn leader(&self, region_id: u64) -> Option<metapb::Peer> {
        self.directory.leader(region_id)
    }

    fn lock_stores(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Store>> {
        self.stores.lock().unwrap_or_else(PoisonError::into_inner)
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
}

/// The scheduler's record of store `id` (in-process stores have no address).
fn new_store(id: u64) -> metapb::Store {
    metapb::Store {
        id,
        ..Default::default()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Stop scheduling first: no operator is planned against stores that
        // are going away.
        drop(
            self.schedule_loop
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(),
        );
        self.shutdown();
        if let Err(e) = remove_when_closed(&self.dir) {
            // Nothing to return to from a drop; the data is only left behind.
            slog::warn!(self.opts.logger, "cannot remove the cluster's data";
                "dir" => %self.dir.display(), "err" => %e);
        }
    }
}

/// Removes `dir`. `Store::stop` returns before its writer and log-GC
/// threads have dropped their engine handles, so a RocksDB may still be
/// closing (and writing its manifest) for a moment: a removal racing it
/// fails, and is retried for a while.
fn remove_when_closed(dir: &Path) -> std::io::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
