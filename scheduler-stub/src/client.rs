//! `SchedulerClient`: what a store (and the test cluster) asks of the
//! placement driver.
//!
//! The calls mirror TinyKV's scheduler client (`kv/raftstore/scheduler_client`):
//! ids, bootstrap, stores, region lookup, split ids and heartbeats. The one
//! asymmetric call is the region heartbeat: the request goes in, but the
//! answer (an operator: change a peer, transfer the leader) comes back later
//! through a handler the store registers, because on the wire it travels on a
//! long-lived stream, not as the call's reply.

use kvproto::metapb::{Peer, Region, Store};
use kvproto::schedulerpb::{RegionHeartbeatRequest, RegionHeartbeatResponse, SplitId, StoreStats};

use crate::errors::Result;

/// Receives the responses to one store's region heartbeats.
///
/// Contract: it may run on the thread that sent the heartbeat (the in-memory
/// scheduler calls it there, after releasing its state locks, so it may call
/// back into the client -- but not send a region heartbeat from inside: the
/// in-memory scheduler delivers one answer at a time, to keep each region's
/// answers in order) or on a background thread (a remote client). It should
/// hand the response on (a channel, a mailbox) rather than block. A response
/// may repeat an operator that is already under way, or arrive after the
/// region moved on; the store treats those as no-ops (the epoch in the
/// response tells which state it was computed from).
pub type RegionHeartbeatResponseHandler = Box<dyn Fn(RegionHeartbeatResponse) + Send + Sync>;

/// The placement driver as seen by a store.
///
/// Synchronous and object safe, so a store holds an
/// `Arc<dyn SchedulerClient>` and the test cluster hands every store the same
/// in-memory scheduler. Calls never panic on bad input; they return
/// [`Error`](crate::Error). Every call except [`cluster_id`](Self::cluster_id),
/// [`alloc_id`](Self::alloc_id), [`bootstrap`](Self::bootstrap),
/// [`is_bootstrapped`](Self::is_bootstrapped) and
/// [`set_region_heartbeat_response_handler`](Self::set_region_heartbeat_response_handler)
/// fails with `NotBootstrapped` before the cluster is bootstrapped.
pub trait SchedulerClient: Send + Sync {
    /// The id of the cluster this scheduler serves; stores persist it and
    /// refuse to join another cluster.
    fn cluster_id(&self) -> u64;

    /// A fresh id for a region, peer or store. Ids are unique cluster-wide and
    /// increase; none equals an id the scheduler has already seen (in
    /// `bootstrap`, `put_store` or a heartbeat).
    fn alloc_id(&self) -> Result<u64>;

    /// Bootstraps the cluster with its first store and first region. Exactly
    /// one call succeeds; later ones fail with `AlreadyBootstrapped` and change
    /// nothing (a store that lost the race or retries compares
    /// `get_region(b"")` with its own first region, as TinyKV's node does).
    fn bootstrap(&self, store: Store, region: Region) -> Result<()>;

    /// Whether `bootstrap` has succeeded.
    fn is_bootstrapped(&self) -> Result<bool>;

    /// Adds or updates a store's metadata. A tombstone store cannot come back
    /// (`StoreTombstone`).
    fn put_store(&self, store: Store) -> Result<()>;

    /// One store's metadata, or `StoreNotFound`.
    fn get_store(&self, store_id: u64) -> Result<Store>;

    /// Every store, tombstones included, ordered by id.
    fn get_all_stores(&self) -> Result<Vec<Store>>;

    /// The region containing `key` (start inclusive, end exclusive, an empty
    /// end key unbounded) and its last reported leader, or `NoRegionForKey`.
    fn get_region(&self, key: &[u8]) -> Result<(Region, Option<Peer>)>;

    /// The region with this id and its last reported leader, if known.
    fn get_region_by_id(&self, region_id: u64) -> Result<Option<(Region, Option<Peer>)>>;

    /// Ids for splitting `region`: a new region id and one new peer id per
    /// peer of `region`, in the same order. Fails with `RegionNotFound` or
    /// `StaleRegion` if the scheduler knows a newer epoch of the region.
    fn ask_split(&self, region: &Region) -> Result<SplitId>;

    /// Reports a store's load. The store must have been put.
    fn store_heartbeat(&self, stats: StoreStats) -> Result<()>;

    /// Reports a region's state from its leader. A stale or malformed report
    /// is refused and changes nothing. Stale means: the scheduler has this
    /// region with an epoch newer in `version` or `conf_ver`, or an
    /// overlapping region whose `version` is not older. An accepted report
    /// replaces the stored region and drops the overlapping ones, records the
    /// leader and pending and down peers (unless it carries a lower term than
    /// the leader report on record: a deposed leader's), and its response
    /// (possibly carrying an operator) goes to the handler registered for
    /// the leader's store.
    fn region_heartbeat(&self, request: RegionHeartbeatRequest) -> Result<()>;

    /// Registers where the responses to `store_id`'s region heartbeats go,
    /// replacing any earlier handler. Responses for a store without a handler
    /// are dropped.
    fn set_region_heartbeat_response_handler(
        &self,
        store_id: u64,
        handler: RegionHeartbeatResponseHandler,
    );
}

/// Compile-time check: the trait stays object safe, as stores hold it as
/// `Arc<dyn SchedulerClient>`.
const _: Option<&dyn SchedulerClient> = None;
