//! Scheduling: the checkers and balancers that decide, by themselves, which
//! operators the scheduler hands to region leaders (TinyKV Project 3C, after
//! PD's behaviour).
//!
//! Everything here is pure: it reads a [`ClusterView`] (a snapshot of stores
//! and regions the scheduler builds under its state lock) and returns a
//! [`Plan`], or nothing. The scheduler (`memory`) turns a plan into an
//! [`Operator`](crate::Operator) (allocating the new peer id a plan needs),
//! validates it and installs it; so unit tests drive every decision on
//! hand-built views, with no clock or threads.
//!
//! Modules, one job each:
//! - `store_liveness`: when a store counts as down (no store heartbeat for
//!   `max_store_down_time`).
//! - `replica_checker`: keep each region at `max_replicas` healthy peers
//!   (add, replace a down peer, remove a surplus one). Runs on every accepted
//!   region heartbeat and on the periodic pass.
//! - `balance_region`: move a region's peer from the store with the most
//!   region size to the one with the least, beyond a tolerance.
//! - `balance_leader`: move a leader from the store with the most leaders to
//!   one with fewer, beyond a tolerance.
//!
//! The periodic pass (`MemoryScheduler::run_schedule_pass`, called every
//! `balance_interval` by [`ScheduleLoop`](crate::ScheduleLoop) or the binary)
//! drops timed-out operators, runs the replica checker over every region and
//! then each balancer once. Nothing runs while [`ScheduleConfig::enabled`] is
//! false.

pub(crate) mod balance_leader;
pub(crate) mod balance_region;
pub(crate) mod replica_checker;
pub(crate) mod store_liveness;

#[cfg(test)]
mod balance_test;

use std::collections::BTreeMap;
use std::time::Duration;

use kvproto::metapb::{Peer, Region};

/// The scheduling settings. `Default` is scheduling off with PD's defaults
/// for everything else; [`ScheduleConfig::enabled_default`] turns it on.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduleConfig {
    /// Whether the scheduler makes operators by itself. Off, only operators
    /// scripted through the test hooks are handed out.
    pub enabled: bool,
    /// A store not heard from (no store heartbeat) for longer than this is
    /// down: its peers are replaced and nothing is moved onto it. PD's
    /// default is 30 minutes.
    pub max_store_down_time: Duration,
    /// How often the periodic pass runs the balancers.
    pub balance_interval: Duration,
    /// How long an operator that adds, removes or moves a peer may take
    /// before it is dropped (PD: 10 minutes).
    pub region_operator_timeout: Duration,
    /// How long a leader transfer may take before it is dropped (PD: 10 s,
    /// ours is wider for loaded machines).
    pub leader_operator_timeout: Duration,
    /// Balance-leader moves a leader only if the two stores' leader counts
    /// differ by more than this.
    pub leader_tolerance: u64,
    /// Balance-region moves a region only if the two stores' region sizes
    /// differ by more than this many times the region's size (2 in TinyKV:
    /// the move shrinks the difference by twice the size, so it never
    /// reverses and regions do not ping-pong).
    pub region_tolerance_factor: u64,
}

impl Default for ScheduleConfig {
    fn default() -> Self {
        ScheduleConfig {
            enabled: false,
            max_store_down_time: Duration::from_secs(30 * 60),
            balance_interval: Duration::from_secs(10),
            region_operator_timeout: Duration::from_secs(10 * 60),
            leader_operator_timeout: Duration::from_secs(30),
            leader_tolerance: 1,
            region_tolerance_factor: 2,
        }
    }
}

impl ScheduleConfig {
    /// The defaults with scheduling on (what `tinykv-scheduler` runs with).
    pub fn enabled_default() -> Self {
        ScheduleConfig {
            enabled: true,
            ..ScheduleConfig::default()
        }
    }
}

/// One store as scheduling sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StoreView {
    /// The store's id.
    pub id: u64,
    /// Its state is `Up` (not offline, not tombstone).
    pub is_up: bool,
    /// Not heard from for `max_store_down_time` (`store_liveness`).
    pub is_down: bool,
    /// Peers of regions on it.
    pub region_count: u64,
    /// The sum of its regions' sizes ([`RegionView::size`]).
    pub region_size: u64,
    /// Regions it leads.
    pub leader_count: u64,
}

impl StoreView {
    /// Whether peers may live here and regions and leaders may move here.
    pub fn is_healthy(&self) -> bool {
        self.is_up && !self.is_down
    }
}

/// One region as scheduling sees it: as its leader last reported it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RegionView {
    pub region: Region,
    /// The last reported leader; `None` before the first heartbeat.
    pub leader: Option<Peer>,
    /// Peers the leader counts as lagging.
    pub pending: Vec<Peer>,
    /// Peers the leader has not heard from for a while.
    pub down: Vec<Peer>,
    /// Size for balancing, in MiB, at least 1 so that region counts matter
    /// while sizes are unknown (0 reported).
    pub size: u64,
    /// An operator is under way for it: balancers leave it alone.
    pub has_operator: bool,
}

impl RegionView {
    /// The region's peer on `store_id`.
    pub fn peer_on(&self, store_id: u64) -> Option<Peer> {
        self.region
            .peers
            .iter()
            .find(|p| p.store_id == store_id)
            .copied()
    }

    /// Whether `peer` is the leader.
    pub fn is_leader(&self, peer: &Peer) -> bool {
        self.leader.is_some_and(|l| l.id == peer.id)
    }

    /// Whether `peer` is pending.
    pub fn is_pending(&self, peer: &Peer) -> bool {
        self.pending.iter().any(|p| p.id == peer.id)
    }

    /// Whether the leader reports `peer` down.
    pub fn is_reported_down(&self, peer: &Peer) -> bool {
        self.down.iter().any(|p| p.id == peer.id)
    }
}

/// Balancing size of a region from its reported size in bytes: MiB, at
/// least 1.
pub(crate) fn region_size_units(approximate_size: u64) -> u64 {
    (approximate_size >> 20).max(1)
}

/// Stores and regions, as scheduling sees them at one moment.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClusterView {
    /// Store id -> store (tombstones left out).
    pub stores: BTreeMap<u64, StoreView>,
    /// Region id -> region (those that reported a leader or are in the map).
    pub regions: BTreeMap<u64, RegionView>,
    /// The cluster config's `max_peer_count`.
    pub max_replicas: usize,
}

impl ClusterView {
    /// A view of these stores and regions; store counts and sizes are
    /// computed from the regions.
    pub fn new(stores: Vec<StoreView>, regions: Vec<RegionView>, max_replicas: usize) -> Self {
        let mut view = ClusterView {
            stores: stores.into_iter().map(|s| (s.id, s)).collect(),
            regions: regions.into_iter().map(|r| (r.region.id, r)).collect(),
            max_replicas,
        };
        view.recount();
        view
    }

    /// Recomputes every store's region count, size and leader count.
    fn recount(&mut self) {
        for store in self.stores.values_mut() {
            store.region_count = 0;
            store.region_size = 0;
            store.leader_count = 0;
        }
        for region in self.regions.values() {
            for peer in &region.region.peers {
                if let Some(store) = self.stores.get_mut(&peer.store_id) {
                    store.region_count += 1;
                    store.region_size += region.size;
                    if region.is_leader(peer) {
                        store.leader_count += 1;
                    }
                }
            }
        }
    }

    /// Whether the peer is healthy: its store is known, up and not down, and
    /// its leader does not report it down.
    pub fn is_peer_healthy(&self, region: &RegionView, peer: &Peer) -> bool {
        self.stores
            .get(&peer.store_id)
            .is_some_and(StoreView::is_healthy)
            && !region.is_reported_down(peer)
    }

    /// The healthy store without a peer of `region` with the least region
    /// size (then fewest regions, then lowest id): where a new replica goes.
    pub fn best_target_for(&self, region: &Region) -> Option<&StoreView> {
        self.stores
            .values()
            .filter(|s| s.is_healthy())
            .filter(|s| !region.peers.iter().any(|p| p.store_id == s.id))
            .min_by_key(|s| (s.region_size, s.region_count, s.id))
    }

    /// Counts an operator under way as if done, so a balancer does not pile
    /// more moves onto a store already receiving one: a replica of `size`
    /// leaves `from_store` and arrives on `to_store` (0 for neither).
    pub fn add_influence(&mut self, from_store: u64, to_store: u64, size: u64) {
        if let Some(s) = self.stores.get_mut(&from_store) {
            s.region_size = s.region_size.saturating_sub(size);
            s.region_count = s.region_count.saturating_sub(1);
        }
        if let Some(s) = self.stores.get_mut(&to_store) {
            s.region_size += size;
            s.region_count += 1;
        }
    }

    /// As `add_influence`, for a leadership moving between stores.
    pub fn add_leader_influence(&mut self, from_store: u64, to_store: u64) {
        if let Some(s) = self.stores.get_mut(&from_store) {
            s.leader_count = s.leader_count.saturating_sub(1);
        }
        if let Some(s) = self.stores.get_mut(&to_store) {
            s.leader_count += 1;
        }
    }
}

/// What a checker or balancer wants done to a region. New peers are named by
/// store only: the scheduler allocates their ids when it makes the operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Add a peer on this store.
    AddPeer { store_id: u64 },
    /// Add a peer on `to_store`, then remove `from` (moving the leadership
    /// away from `from` first if it leads).
    MovePeer { from: Peer, to_store: u64 },
    /// Remove this peer (never the leader).
    RemovePeer(Peer),
    /// Hand the leadership to this peer.
    TransferLeader(Peer),
}

/// Why a plan was made, for the logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlanSource {
    ReplicaChecker,
    BalanceRegion,
    BalanceLeader,
}

#[cfg(test)]
pub(crate) mod test_util {
    //! Hand-built views for the checkers' and balancers' tests.

    use kvproto::metapb::RegionEpoch;

    use super::*;

    /// A healthy store; counts are filled in by `ClusterView::new`.
    pub fn new_test_store(id: u64) -> StoreView {
        StoreView {
            id,
            is_up: true,
            is_down: false,
            region_count: 0,
            region_size: 0,
            leader_count: 0,
        }
    }

    /// Region `id` with peer `id * 100 + store` on each store, led by the
    /// peer on `leader_store`, size 1.
    pub fn new_test_region(id: u64, stores: &[u64], leader_store: u64) -> RegionView {
        let peers: Vec<Peer> = stores
            .iter()
            .map(|&s| Peer {
                id: id * 100 + s,
                store_id: s,
            })
            .collect();
        let leader = peers.iter().find(|p| p.store_id == leader_store).copied();
        RegionView {
            region: Region {
                id,
                start_key: id.to_be_bytes().to_vec(),
                end_key: (id + 1).to_be_bytes().to_vec(),
                region_epoch: Some(RegionEpoch {
                    conf_ver: 1,
                    version: 1,
                }),
                peers,
            },
            leader,
            pending: Vec::new(),
            down: Vec::new(),
            size: 1,
            has_operator: false,
        }
    }

    /// The peer of region `region_id` on `store_id`, as `new_test_region`
    /// names it.
    pub fn peer(region_id: u64, store_id: u64) -> Peer {
        Peer {
            id: region_id * 100 + store_id,
            store_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;

    #[test]
    fn test_view_counts_regions_sizes_and_leaders() {
        let mut big = new_test_region(2, &[1, 3], 3);
        big.size = 10;
        let view = ClusterView::new(
            vec![new_test_store(1), new_test_store(2), new_test_store(3)],
            vec![new_test_region(1, &[1, 2], 1), big],
            3,
        );
        let counts = |id| {
            let s = &view.stores[&id];
            (s.region_count, s.region_size, s.leader_count)
        };
        assert_eq!(counts(1), (2, 11, 1));
        assert_eq!(counts(2), (1, 1, 0));
        assert_eq!(counts(3), (1, 10, 1));
    }

    #[test]
    fn test_region_size_units_count_unknown_as_one() {
        assert_eq!(region_size_units(0), 1);
        assert_eq!(region_size_units(1000), 1);
        assert_eq!(region_size_units(96 << 20), 96);
    }

    #[test]
    fn test_best_target_skips_unhealthy_and_members() {
        let mut down = new_test_store(4);
        down.is_down = true;
        let mut offline = new_test_store(5);
        offline.is_up = false;
        let view = ClusterView::new(
            vec![
                new_test_store(1),
                new_test_store(2),
                new_test_store(3),
                down,
                offline,
            ],
            vec![new_test_region(1, &[1], 1), new_test_region(2, &[2], 2)],
            3,
        );
        let region = new_test_region(9, &[1], 1).region;
        assert_eq!(view.best_target_for(&region).map(|s| s.id), Some(3));
        let everywhere = new_test_region(9, &[1, 2, 3], 1).region;
        assert_eq!(view.best_target_for(&everywhere), None);
    }
}
