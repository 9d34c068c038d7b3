//! `RegionCache`: what the client believes about the cluster's regions —
//! each region's range, epoch and peers, and the peer to try first (its
//! leader, or the next guess). Pure: no I/O, no clock, no locks; the client
//! wraps it in a mutex and fills it from the scheduler and from the hints in
//! the stores' region errors.
//!
//! Invariants:
//! - cached regions never overlap: [`RegionCache::insert`] drops every
//!   cached region the new one overlaps (and any older entry of the same
//!   id) before it stores the new one;
//! - `by_id` and `regions` describe the same set: `by_id[id]` is the start
//!   key under which region `id` is stored;
//! - a cached leader, when set, is one of its region's peers.
//!
//! A region older than what the cache knows is refused (see
//! [`RegionCache::insert`]), so a scheduler that has not heard of a split
//! yet cannot undo what a store's `EpochNotMatch` taught the client.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;

use kvproto::metapb::{Peer, Region};

/// A cached region and the peer the client sends its requests to first.
#[derive(Debug, Clone, PartialEq)]
pub struct CachedRegion {
    /// The region as last learned (range, epoch, peers).
    pub region: Region,
    /// Where requests go first: the leader as last learned, or, after a
    /// failure, the next peer to try. Invariant: one of `region.peers`.
    pub leader: Option<Peer>,
}

impl CachedRegion {
    /// Whether `key` lies in this region's range (an empty end key is
    /// unbounded).
    pub fn contains(&self, key: &[u8]) -> bool {
        key_in_range(key, &self.region.start_key, &self.region.end_key)
    }

    /// The peer to send a request to: the cached leader, else the first
    /// peer; `None` for a region without peers.
    pub fn target(&self) -> Option<Peer> {
        self.leader.or_else(|| self.region.peers.first().copied())
    }
}

/// Whether `key` is in `[start, end)`, an empty `end` being unbounded.
pub fn key_in_range(key: &[u8], start: &[u8], end: &[u8]) -> bool {
    key >= start && (end.is_empty() || key < end)
}

/// Whether `[a_start, a_end)` and `[b_start, b_end)` share a key (empty
/// ends unbounded).
fn ranges_overlap(a_start: &[u8], a_end: &[u8], b_start: &[u8], b_end: &[u8]) -> bool {
    (a_end.is_empty() || b_start < a_end) && (b_end.is_empty() || a_start < b_end)
}

/// The regions the client knows, by start key; see the module docs.
#[derive(Debug, Default)]
pub struct RegionCache {
    /// Start key -> region. Invariant: no two entries overlap.
    regions: BTreeMap<Vec<u8>, CachedRegion>,
    /// Region id -> its key in `regions`. Invariant: the same set as `regions`.
    by_id: HashMap<u64, Vec<u8>>,
}

impl RegionCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of cached regions.
    pub fn len(&self) -> usize {
        self.regions.len()
    }

    /// Whether no region is cached.
    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }

    /// The cached region containing `key`, if any.
    pub fn locate(&self, key: &[u8]) -> Option<&CachedRegion> {
        let (_, cached) = self
            .regions
            .range::<[u8], _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()?;
        cached.contains(key).then_some(cached)
    }

    /// Region `region_id`, if cached.
    pub fn get(&self, region_id: u64) -> Option<&CachedRegion> {
        self.regions.get(self.by_id.get(&region_id)?)
    }

    /// Caches `region` with `leader` (ignored unless it is one of the
    /// region's peers), replacing every cached region it overlaps and any
    /// older entry of the same id. Returns `false`, changing nothing, if
    /// the cache knows better: an overlapping region with a newer
    /// `version` (the range changed since), or the same region with a newer
    /// `conf_ver` (its peers changed since).
    ///
    /// Keeps the cached leader of the same region when `leader` is `None`
    /// and that peer is still a member: a scheduler that has not heard from
    /// the leader yet should not erase what a store told the client.
    pub fn insert(&mut self, region: Region, leader: Option<Peer>) -> bool {
        let epoch = region.region_epoch.unwrap_or_default();
        let overlapping = self.overlapping_ids(&region.start_key, &region.end_key);
        for id in overlapping
            .iter()
            .chain(self.by_id.get(&region.id).map(|_| &region.id))
        {
            let Some(cached) = self.get(*id) else {
                continue;
            };
            let cached_epoch = cached.region.region_epoch.unwrap_or_default();
            if cached_epoch.version > epoch.version
                || (cached.region.id == region.id && cached_epoch.conf_ver > epoch.conf_ver)
            {
                return false;
            }
        }
        let previous_leader = self.get(region.id).and_then(|c| c.leader);
        for id in overlapping {
            self.remove(id);
        }
        self.remove(region.id);
        let leader = leader
            .or(previous_leader)
            .filter(|l| region.peers.contains(l));
        self.by_id.insert(region.id, region.start_key.clone());
        self.regions
            .insert(region.start_key.clone(), CachedRegion { region, leader });
        self.check_invariants();
        true
    }

    /// Records `leader` as region `region_id`'s leader. Returns `false`,
    /// changing nothing, if the region is not cached or `leader` is not one
    /// of its cached peers (then the cached region is out of date).
    pub fn update_leader(&mut self, region_id: u64, leader: Peer) -> bool {
        let Some(start) = self.by_id.get(&region_id) else {
            return false;
        };
        let cached = self
            .regions
            .get_mut(start)
            .expect("invariant: by_id names a cached region");
        if !cached.region.peers.contains(&leader) {
            return false;
        }
        cached.leader = Some(leader);
        true
    }

    /// Moves region `region_id`'s target from `failed` to the peer after it
    /// in the region's peer list (wrapping around): the next guess when
    /// `failed` is not the leader and names none, or cannot be reached.
    /// Returns the new target; `None` if the region is not cached.
    pub fn switch_peer(&mut self, region_id: u64, failed: Peer) -> Option<Peer> {
        let start = self.by_id.get(&region_id)?;
        let cached = self
            .regions
            .get_mut(start)
            .expect("invariant: by_id names a cached region");
        let peers = &cached.region.peers;
        let next = match peers.iter().position(|p| *p == failed) {
            Some(i) => peers.get((i + 1) % peers.len()).copied(),
            None => peers.first().copied(),
        };
        cached.leader = next;
        next
    }

    /// Forgets region `region_id`; `true` if it was cached.
    pub fn remove(&mut self, region_id: u64) -> bool {
        let Some(start) = self.by_id.remove(&region_id) else {
            return false;
        };
        self.regions.remove(&start);
        true
    }

    /// The ids of the cached regions overlapping `[start, end)`.
    fn overlapping_ids(&self, start: &[u8], end: &[u8]) -> Vec<u64> {
        // The region containing `start` may begin before it; every other
        // overlapping region begins inside the range.
        let before = self
            .regions
            .range::<[u8], _>((Bound::Unbounded, Bound::Excluded(start)))
            .next_back()
            .map(|(_, c)| c);
        let from = self
            .regions
            .range::<[u8], _>((Bound::Included(start), Bound::Unbounded))
            .map(|(_, c)| c)
            .take_while(|c| end.is_empty() || c.region.start_key.as_slice() < end);
        before
            .into_iter()
            .chain(from)
            .filter(|c| ranges_overlap(start, end, &c.region.start_key, &c.region.end_key))
            .map(|c| c.region.id)
            .collect()
    }

    /// Checks the module's invariants (debug builds only).
    fn check_invariants(&self) {
        if !cfg!(debug_assertions) {
            return;
        }
        assert_eq!(self.regions.len(), self.by_id.len(), "by_id out of step");
        let mut prev_end: Option<&[u8]> = None;
        for (start, cached) in &self.regions {
            assert_eq!(start, &cached.region.start_key, "keyed by start key");
            assert_eq!(self.by_id.get(&cached.region.id), Some(start), "by_id");
            if let Some(end) = prev_end {
                assert!(
                    !end.is_empty() && end <= start.as_slice(),
                    "cached regions overlap at {start:?}"
                );
            }
            if let Some(leader) = cached.leader {
                assert!(cached.region.peers.contains(&leader), "leader not a peer");
            }
            prev_end = Some(&cached.region.end_key);
        }
    }
}

#[cfg(test)]
mod tests {
    use kvproto::metapb::RegionEpoch;

    use super::*;

    fn peer(id: u64) -> Peer {
        Peer { id, store_id: id }
    }

    /// Region `id` over `[start, end)` at `version`, with peers 1, 2, 3.
    fn new_test_region(id: u64, start: &[u8], end: &[u8], version: u64) -> Region {
        Region {
            id,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            region_epoch: Some(RegionEpoch {
                conf_ver: 1,
                version,
            }),
            peers: vec![peer(1), peer(2), peer(3)],
        }
    }

    fn located(cache: &RegionCache, key: &[u8]) -> Option<u64> {
        cache.locate(key).map(|c| c.region.id)
    }

    #[test]
    fn test_locate_finds_the_region_containing_the_key() {
        let mut cache = RegionCache::new();
        assert!(cache.insert(new_test_region(1, b"", b"b", 1), None));
        assert!(cache.insert(new_test_region(2, b"b", b"d", 1), Some(peer(2))));
        assert!(cache.insert(new_test_region(3, b"f", b"", 1), None));
        assert_eq!(located(&cache, b""), Some(1));
        assert_eq!(located(&cache, b"a"), Some(1));
        assert_eq!(located(&cache, b"b"), Some(2), "start key inclusive");
        assert_eq!(located(&cache, b"c\xff"), Some(2));
        assert_eq!(located(&cache, b"d"), None, "end key exclusive, gap");
        assert_eq!(located(&cache, b"e"), None, "gap between regions");
        assert_eq!(located(&cache, b"f"), Some(3));
        assert_eq!(located(&cache, b"zzzz"), Some(3), "empty end unbounded");
        assert_eq!(
            cache.locate(b"c").and_then(CachedRegion::target),
            Some(peer(2))
        );
        assert_eq!(
            cache.locate(b"a").and_then(CachedRegion::target),
            Some(peer(1)),
            "no leader known: the first peer"
        );
    }

    #[test]
    fn test_insert_replaces_the_regions_it_overlaps() {
        let mut cache = RegionCache::new();
        cache.insert(new_test_region(1, b"", b"b", 1), None);
        cache.insert(new_test_region(2, b"b", b"d", 1), None);
        cache.insert(new_test_region(3, b"d", b"f", 1), None);
        cache.insert(new_test_region(4, b"f", b"", 1), None);
        // A region over [c, e) at a newer version overlaps 2 and 3.
        assert!(cache.insert(new_test_region(5, b"c", b"e", 2), None));
        assert_eq!(cache.len(), 3);
        assert_eq!(located(&cache, b"a"), Some(1));
        assert_eq!(located(&cache, b"b"), None, "region 2 dropped");
        assert_eq!(located(&cache, b"c"), Some(5));
        assert_eq!(located(&cache, b"e"), None, "region 3 dropped");
        assert_eq!(located(&cache, b"f"), Some(4));
        assert!(cache.get(2).is_none() && cache.get(3).is_none());

        // One region over everything replaces all of them.
        assert!(cache.insert(new_test_region(6, b"", b"", 3), None));
        assert_eq!(cache.len(), 1);
        assert_eq!(located(&cache, b"zz"), Some(6));
    }

    #[test]
    fn test_insert_of_a_split_region_moves_its_start_key() {
        let mut cache = RegionCache::new();
        cache.insert(new_test_region(1, b"", b"", 1), Some(peer(3)));
        // The split: region 1 keeps [m, ..), region 7 takes [.., m).
        assert!(cache.insert(new_test_region(1, b"m", b"", 2), None));
        assert!(cache.insert(new_test_region(7, b"", b"m", 2), None));
        assert_eq!(located(&cache, b"a"), Some(7));
        assert_eq!(located(&cache, b"x"), Some(1));
        assert_eq!(
            cache.get(1).and_then(|c| c.leader),
            Some(peer(3)),
            "the leader of the same region is kept"
        );
    }

    #[test]
    fn test_insert_refuses_a_region_older_than_the_cache() {
        let mut cache = RegionCache::new();
        cache.insert(new_test_region(1, b"", b"m", 2), None);
        cache.insert(new_test_region(7, b"m", b"", 2), None);
        // A scheduler that missed the split still has region 1 over all keys.
        assert!(!cache.insert(new_test_region(1, b"", b"", 1), None));
        assert_eq!(cache.len(), 2);
        assert_eq!(located(&cache, b"x"), Some(7));
        // The same region with an older membership is refused as well.
        let mut old_conf = new_test_region(1, b"", b"m", 2);
        cache.insert(
            Region {
                region_epoch: Some(RegionEpoch {
                    conf_ver: 5,
                    version: 2,
                }),
                ..old_conf.clone()
            },
            None,
        );
        old_conf.peers.pop();
        assert!(!cache.insert(old_conf, None));
        assert_eq!(cache.get(1).map(|c| c.region.peers.len()), Some(3));
    }

    #[test]
    fn test_leader_updates_are_checked_against_the_peers() {
        let mut cache = RegionCache::new();
        cache.insert(new_test_region(1, b"", b"", 1), None);
        assert!(cache.update_leader(1, peer(2)));
        assert_eq!(
            cache.locate(b"k").and_then(CachedRegion::target),
            Some(peer(2))
        );
        assert!(!cache.update_leader(1, peer(9)), "not a peer of the region");
        assert!(!cache.update_leader(4, peer(1)), "not cached");
        assert_eq!(cache.get(1).and_then(|c| c.leader), Some(peer(2)));
        // A leader that is not a peer is not cached on insert either.
        cache.insert(new_test_region(2, b"", b"", 2), Some(peer(9)));
        assert_eq!(cache.get(2).and_then(|c| c.leader), None);
    }

    #[test]
    fn test_switch_peer_goes_round_the_peers() {
        let mut cache = RegionCache::new();
        cache.insert(new_test_region(1, b"", b"", 1), Some(peer(2)));
        assert_eq!(cache.switch_peer(1, peer(2)), Some(peer(3)));
        assert_eq!(cache.switch_peer(1, peer(3)), Some(peer(1)), "wraps around");
        assert_eq!(
            cache.switch_peer(1, peer(9)),
            Some(peer(1)),
            "unknown: first"
        );
        assert_eq!(cache.switch_peer(5, peer(1)), None, "not cached");
        assert_eq!(cache.get(1).and_then(|c| c.leader), Some(peer(1)));
    }

    #[test]
    fn test_remove_invalidates_one_region() {
        let mut cache = RegionCache::new();
        cache.insert(new_test_region(1, b"", b"b", 1), None);
        cache.insert(new_test_region(2, b"b", b"", 1), None);
        assert!(cache.remove(1));
        assert!(!cache.remove(1), "already gone");
        assert_eq!(located(&cache, b"a"), None);
        assert_eq!(located(&cache, b"c"), Some(2));
        assert!(cache.update_leader(2, peer(1)));
        assert!(cache.remove(2));
        assert!(cache.is_empty());
        // Removed regions do not block newer inserts of older epochs.
        assert!(cache.insert(new_test_region(1, b"", b"", 1), None));
    }
}
