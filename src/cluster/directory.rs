//! [`Directory`]: what a client of the in-process cluster knows — the
//! routers of the running stores, the regions and leaders it has seen, the
//! scheduler to ask when that is stale — shared by the [`super::Cluster`]
//! and every client, so that a client can outlive a borrow of the cluster
//! (a task on the store runtime, `super::client::AsyncClient`).
//!
//! Invariants: a region is only ever replaced by one with a newer epoch
//! (`version`, then `conf_ver`); a leader entry names the peer that last
//! answered a client successfully, and is written only when it changes.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard};

use kvproto::metapb;
use router::Router;
use scheduler_stub::{MemoryScheduler, SchedulerClient as _};

use super::transport::SimNetwork;

/// The cluster's address book, as its clients see it.
pub struct Directory {
    stores: u64,
    net: Arc<SimNetwork>,
    scheduler: Arc<MemoryScheduler>,
    /// The newest region (by epoch) clients have seen for each region id.
    /// An `RwLock`: every client attempt reads it; epoch errors write it.
    regions: RwLock<HashMap<u64, metapb::Region>>,
    /// The leader each region last answered from, which clients try first.
    /// Same locking as `regions`: written only when the leader changes.
    leaders: RwLock<HashMap<u64, metapb::Peer>>,
}

// Every lock above guards a map that each write leaves whole (one insert),
// so a lock poisoned by a panicking thread is still used.

impl Directory {
    /// An empty directory of `stores` stores (ids `1..=stores`).
    pub(super) fn new(stores: u64, net: Arc<SimNetwork>, scheduler: Arc<MemoryScheduler>) -> Self {
        Directory {
            stores,
            net,
            scheduler,
            regions: RwLock::new(HashMap::new()),
            leaders: RwLock::new(HashMap::new()),
        }
    }

    /// The router of running store `store_id`.
    pub fn router(&self, store_id: u64) -> Option<Router> {
        self.net.router(store_id)
    }

    /// The ids of the stores, running or not.
    pub fn store_ids(&self) -> Vec<u64> {
        (1..=self.stores).collect()
    }

    /// The in-process placement driver.
    pub fn scheduler(&self) -> &MemoryScheduler {
        &self.scheduler
    }

    /// The region containing `key`, as clients last saw it. Once regions
    /// split, an entry may be stale and overlap newer ones until a client
    /// learns better; among the regions covering `key` the one with the
    /// highest version (the latest split) wins: a region split off another
    /// has a higher version than the parent had before that split.
    pub fn region_for_key(&self, key: &[u8]) -> Option<metapb::Region> {
        self.read_regions()
            .values()
            .filter(|r| {
                key >= r.start_key.as_slice()
                    && (r.end_key.is_empty() || key < r.end_key.as_slice())
            })
            .max_by_key(|r| {
                let epoch = r.region_epoch.unwrap_or_default();
                (epoch.version, epoch.conf_ver)
            })
            .cloned()
    }

    /// Asks the scheduler which region holds `key` and records it (if its
    /// epoch is newer than the one known): what a client does when the
    /// region it tried no longer holds the key.
    pub fn refresh_region_for_key(&self, key: &[u8]) -> Option<metapb::Region> {
        let (region, leader) = self.scheduler.get_region(key).ok()?;
        self.note_region(&region);
        if let Some(leader) = leader
            && self.leader(region.id).is_none()
        {
            self.note_leader(region.id, leader);
        }
        Some(region)
    }

    /// Region `region_id` as clients last saw it.
    pub fn region(&self, region_id: u64) -> Option<metapb::Region> {
        self.read_regions().get(&region_id).cloned()
    }

    /// The peer of `region_id` that last answered a client successfully.
    pub fn leader(&self, region_id: u64) -> Option<metapb::Peer> {
        self.leaders
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&region_id)
            .copied()
    }

    /// Records `leader` as the peer of `region_id` to try first.
    pub(super) fn note_leader(&self, region_id: u64, leader: metapb::Peer) {
        if self.leader(region_id) != Some(leader) {
            self.leaders
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(region_id, leader);
        }
    }

    /// Records `region` if its epoch is newer than the one known.
    pub(super) fn note_region(&self, region: &metapb::Region) {
        let mut regions = self.regions.write().unwrap_or_else(PoisonError::into_inner);
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

    fn read_regions(&self) -> RwLockReadGuard<'_, HashMap<u64, metapb::Region>> {
        self.regions.read().unwrap_or_else(PoisonError::into_inner)
    }
}
