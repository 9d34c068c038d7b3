//! `RegionMap`: the scheduler's picture of which region owns which keys, and
//! the epoch rules that keep it fresh.
//!
//! Regions are indexed twice: by id, and by start key in a `BTreeMap` so that
//! "the region containing key k" is the greatest start key <= k, provided that
//! region's end key is empty (unbounded) or > k.
//!
//! An update (bootstrap or a region heartbeat) runs in two steps, so a refused
//! update leaves the map untouched:
//! 1. [`RegionMap::check_update`] validates the reported region against the map
//!    and returns the ids of the older regions it replaces;
//! 2. [`RegionMap::apply_update`] removes those and stores the new region.
//!
//! The epoch rules (as TinyKV's `util.IsEpochStale` and its mock scheduler's
//! heartbeat handling):
//! - Against the stored region with the same id, the report is stale if
//!   either epoch component is older. Both components only grow along a
//!   region's Raft log, so a report with a newer `version` but an older
//!   `conf_ver` is out of order, not newer, and is refused.
//! - With the same epoch, the report must describe the same range and peers
//!   (anything else means a store changed them without bumping the epoch).
//! - Against an overlapping region with another id only `version` is
//!   comparable (splits and merges bump it; `conf_ver` counts another group's
//!   membership changes). The report wins if its `version` is strictly newer,
//!   and the overlapped region is dropped; otherwise the report is stale.
//!
//! A dropped region's range may stay uncovered until the regions now owning it
//! report: after region 1 `[a, c)` splits into 1 `[a, b)` and 2 `[b, c)`, a
//! report from 2 drops the old 1, and `[a, b)` is unknown until 1 reports.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Bound::{Excluded, Included, Unbounded};

use kvproto::metapb::{Region, RegionEpoch};

use crate::errors::{Error, Result};

/// Whether `epoch` is older than `current` in either component.
pub(crate) fn is_epoch_stale(epoch: &RegionEpoch, current: &RegionEpoch) -> bool {
    epoch.version < current.version || epoch.conf_ver < current.conf_ver
}

/// Checks what a region must look like before the scheduler stores it: a
/// non-zero id, an epoch, `start_key < end_key` unless `end_key` is empty, and
/// at least one peer, with non-zero and distinct peer ids and store ids.
pub(crate) fn check_region_shape(region: &Region) -> Result<()> {
    let invalid = |what: &str| {
        Err(Error::InvalidRequest(format!(
            "region {}: {what}",
            region.id
        )))
    };
    if region.id == 0 {
        return invalid("region id is 0");
    }
    if region.region_epoch.is_none() {
        return invalid("no region epoch");
    }
    if !region.end_key.is_empty() && region.start_key >= region.end_key {
        return invalid("start key is not below end key");
    }
    if region.peers.is_empty() {
        return invalid("no peers");
    }
    let mut peer_ids = HashSet::new();
    let mut store_ids = HashSet::new();
    for peer in &region.peers {
        if peer.id == 0 || peer.store_id == 0 {
            return invalid("a peer has id 0 or store id 0");
        }
        if !peer_ids.insert(peer.id) || !store_ids.insert(peer.store_id) {
            return invalid("two peers share an id or a store");
        }
    }
    Ok(())
}

/// Whether `region` contains `key`: start inclusive, end exclusive, an empty
/// end unbounded.
pub(crate) fn region_contains(region: &Region, key: &[u8]) -> bool {
    region.start_key.as_slice() <= key
        && (region.end_key.is_empty() || key < region.end_key.as_slice())
}

fn epoch_of(region: &Region) -> RegionEpoch {
    region.region_epoch.unwrap_or_default()
}

/// The regions the scheduler knows, by id and by start key.
#[derive(Debug, Default)]
pub(crate) struct RegionMap {
    /// Start key -> region id.
    /// Invariant: holds exactly the regions of `by_id`, each under its own
    /// start key; their ranges do not overlap. Changes only in `apply_update`.
    by_start: BTreeMap<Vec<u8>, u64>,
    /// Region id -> region, as last accepted.
    /// Invariant: every region passed `check_region_shape`.
    by_id: HashMap<u64, Region>,
}

impl RegionMap {
    /// The region with this id.
    pub(crate) fn get(&self, region_id: u64) -> Option<&Region> {
        self.by_id.get(&region_id)
    }

    /// How many regions are known.
    pub(crate) fn len(&self) -> usize {
        self.by_id.len()
    }

    /// The region containing `key`.
    pub(crate) fn find(&self, key: &[u8]) -> Option<&Region> {
        let (_, id) = self
            .by_start
            .range::<[u8], _>((Unbounded, Included(key)))
            .next_back()?;
        let region = &self.by_id[id];
        region_contains(region, key).then_some(region)
    }

    /// The region just before `region` in key order (the one with the
    /// greatest start key below its start key), adjacent or not.
    pub(crate) fn prev(&self, region: &Region) -> Option<&Region> {
        let (_, id) = self
            .by_start
            .range::<[u8], _>((Unbounded, Excluded(region.start_key.as_slice())))
            .next_back()?;
        Some(&self.by_id[id])
    }

    /// Every region, in key order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Region> + '_ {
        self.by_start.values().map(|id| &self.by_id[id])
    }

    /// The regions overlapping `[start, end)` (an empty `end` is unbounded), in
    /// key order.
    pub(crate) fn overlapping<'a>(
        &'a self,
        start: &'a [u8],
        end: &'a [u8],
    ) -> impl Iterator<Item = &'a Region> + 'a {
        // The region containing `start`, if any, begins at or before it; every
        // other overlapping region begins inside the range.
        let head = self.find(start);
        let tail = self
            .by_start
            .range::<[u8], _>((Excluded(start), Unbounded))
            .map(|(_, id)| &self.by_id[id])
            .take_while(move |r| end.is_empty() || r.start_key.as_slice() < end);
        head.into_iter().chain(tail)
    }

    /// Validates `region` as a new report and returns the ids of the regions
    /// (other than its own id) it would replace. Changes nothing.
    ///
    /// The caller has checked the shape with [`check_region_shape`].
    pub(crate) fn check_update(&self, region: &Region) -> Result<Vec<u64>> {
        let epoch = epoch_of(region);
        let stale = |current: &Region| Error::StaleRegion {
            region_id: region.id,
            epoch,
            current_id: current.id,
            current_epoch: epoch_of(current),
        };
        if let Some(current) = self.by_id.get(&region.id) {
            let current_epoch = epoch_of(current);
            if is_epoch_stale(&epoch, &current_epoch) {
                return Err(stale(current));
            }
            if epoch == current_epoch && !same_range_and_peers(region, current) {
                return Err(Error::InvalidRequest(format!(
                    "region {}: range or peers changed without an epoch change (epoch {epoch:?})",
                    region.id
                )));
            }
        }
        let mut replaced = Vec::new();
        for other in self.overlapping(&region.start_key, &region.end_key) {
            if other.id == region.id {
                continue;
            }
            if epoch_of(other).version >= epoch.version {
                return Err(stale(other));
            }
            replaced.push(other.id);
        }
        Ok(replaced)
    }

    /// Stores `region`, dropping the regions in `replaced` and the older
    /// version of `region` itself. Returns the dropped regions (the older
    /// version of `region` first, if there was one).
    ///
    /// # Panics
    ///
    /// If `replaced` did not come from `check_update(&region)` on the current
    /// map and the result would overlap (checked in debug builds).
    pub(crate) fn apply_update(&mut self, region: Region, replaced: &[u64]) -> Vec<Region> {
        let mut dropped = Vec::with_capacity(replaced.len() + 1);
        for id in std::iter::once(&region.id).chain(replaced) {
            if let Some(old) = self.remove(*id) {
                dropped.push(old);
            }
        }
        self.by_start.insert(region.start_key.clone(), region.id);
        self.by_id.insert(region.id, region);
        if cfg!(debug_assertions) {
            self.check_invariants();
        }
        dropped
    }

    fn remove(&mut self, region_id: u64) -> Option<Region> {
        let region = self.by_id.remove(&region_id)?;
        let removed = self.by_start.remove(&region.start_key);
        debug_assert_eq!(removed, Some(region_id), "by_start out of step with by_id");
        Some(region)
    }

    /// What is wrong with the map, if anything: `check_invariants` without
    /// the panic.
    pub(crate) fn validate(&self) -> std::result::Result<(), String> {
        if self.by_start.len() != self.by_id.len() {
            return Err(format!(
                "region indexes differ in size: {} by start key, {} by id",
                self.by_start.len(),
                self.by_id.len()
            ));
        }
        let mut prev: Option<&Region> = None;
        for (start, id) in &self.by_start {
            let Some(region) = self.by_id.get(id) else {
                return Err(format!("start key {start:02x?} names unknown region {id}"));
            };
            if &region.start_key != start {
                return Err(format!("region {id} filed under another start key"));
            }
            if let Some(prev) = prev
                && (prev.end_key.is_empty() || prev.end_key > region.start_key)
            {
                return Err(format!("regions {} and {id} overlap", prev.id));
            }
            prev = Some(region);
        }
        Ok(())
    }

    /// Rebuilds the start-key index from the regions by id, newest
    /// `version` first, dropping any region that overlaps one already kept.
    /// Returns the dropped ids. For repairs after a panic interrupted an
    /// update; a consistent map comes out unchanged.
    pub(crate) fn rebuild(&mut self) -> Vec<u64> {
        let mut regions: Vec<Region> = std::mem::take(&mut self.by_id).into_values().collect();
        self.by_start.clear();
        regions.sort_by_key(|r| (std::cmp::Reverse(epoch_of(r).version), r.id));
        let mut dropped = Vec::new();
        for region in regions {
            if self
                .overlapping(&region.start_key, &region.end_key)
                .next()
                .is_some()
            {
                dropped.push(region.id);
                continue;
            }
            self.by_start.insert(region.start_key.clone(), region.id);
            self.by_id.insert(region.id, region);
        }
        dropped
    }

    /// Panics with context if the two indexes disagree or ranges overlap.
    pub(crate) fn check_invariants(&self) {
        assert_eq!(
            self.by_start.len(),
            self.by_id.len(),
            "region indexes differ in size: {:?} vs ids {:?}",
            self.by_start,
            self.by_id.keys().collect::<Vec<_>>()
        );
        let mut prev: Option<&Region> = None;
        for (start, id) in &self.by_start {
            let region = self
                .by_id
                .get(id)
                .unwrap_or_else(|| panic!("start key {start:02x?} names unknown region {id}"));
            assert_eq!(
                &region.start_key, start,
                "region {id} filed under another start key"
            );
            if let Some(prev) = prev {
                assert!(
                    !prev.end_key.is_empty() && prev.end_key <= region.start_key,
                    "regions overlap: {prev:?} and {region:?}"
                );
            }
            prev = Some(region);
        }
    }
}

/// Whether two regions have the same range and the same set of peers (in any
/// order).
fn same_range_and_peers(a: &Region, b: &Region) -> bool {
    a.start_key == b.start_key
        && a.end_key == b.end_key
        && a.peers.len() == b.peers.len()
        && a.peers.iter().all(|p| b.peers.contains(p))
}

#[cfg(test)]
mod tests {
    use kvproto::metapb::Peer;

    use super::*;

    fn new_test_region(id: u64, start: &[u8], end: &[u8], version: u64, conf_ver: u64) -> Region {
        Region {
            id,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            region_epoch: Some(RegionEpoch { conf_ver, version }),
            peers: vec![Peer {
                id: id * 10 + 1,
                store_id: 1,
            }],
        }
    }

    fn must_update(map: &mut RegionMap, region: Region) -> Vec<u64> {
        let replaced = map
            .check_update(&region)
            .unwrap_or_else(|e| panic!("update with {region:?} refused: {e}"));
        map.apply_update(region, &replaced);
        replaced
    }

    fn ids_in_order(map: &RegionMap) -> Vec<u64> {
        map.overlapping(b"", b"").map(|r| r.id).collect()
    }

    #[test]
    fn test_find_respects_boundaries() {
        let mut map = RegionMap::default();
        must_update(&mut map, new_test_region(1, b"", b"b", 1, 1));
        must_update(&mut map, new_test_region(2, b"b", b"d", 1, 1));
        must_update(&mut map, new_test_region(3, b"f", b"", 1, 1));
        let id_at = |key: &[u8]| map.find(key).map(|r| r.id);
        assert_eq!(id_at(b""), Some(1), "empty start key is the smallest key");
        assert_eq!(id_at(b"a"), Some(1));
        assert_eq!(id_at(b"b"), Some(2), "start key is inclusive");
        assert_eq!(id_at(b"c\xff"), Some(2));
        assert_eq!(id_at(b"d"), None, "end key is exclusive, [d, f) is a gap");
        assert_eq!(id_at(b"e"), None);
        assert_eq!(id_at(b"f"), Some(3));
        assert_eq!(
            id_at(b"\xff\xff\xff"),
            Some(3),
            "empty end key is unbounded"
        );
    }

    #[test]
    fn test_prev_and_iter() {
        let mut map = RegionMap::default();
        must_update(&mut map, new_test_region(1, b"", b"b", 1, 1));
        must_update(&mut map, new_test_region(2, b"b", b"d", 1, 1));
        must_update(&mut map, new_test_region(3, b"f", b"", 1, 1));
        let prev_id = |id| map.prev(map.get(id).unwrap()).map(|r| r.id);
        assert_eq!(prev_id(1), None, "the first region has none");
        assert_eq!(prev_id(2), Some(1));
        assert_eq!(prev_id(3), Some(2), "not adjacent: [d, f) is a gap");
        assert_eq!(map.iter().map(|r| r.id).collect::<Vec<_>>(), vec![1, 2, 3]);
    }

    #[test]
    fn test_overlapping() {
        let mut map = RegionMap::default();
        must_update(&mut map, new_test_region(1, b"", b"b", 1, 1));
        must_update(&mut map, new_test_region(2, b"b", b"d", 1, 1));
        must_update(&mut map, new_test_region(3, b"f", b"", 1, 1));
        let ids = |start: &[u8], end: &[u8]| {
            map.overlapping(start, end)
                .map(|r| r.id)
                .collect::<Vec<_>>()
        };
        assert_eq!(ids(b"", b""), vec![1, 2, 3]);
        assert_eq!(ids(b"a", b"b"), vec![1], "end is exclusive");
        assert_eq!(ids(b"a", b"b\x00"), vec![1, 2]);
        assert_eq!(ids(b"d", b"f"), Vec::<u64>::new(), "a gap overlaps nothing");
        assert_eq!(ids(b"e", b""), vec![3]);
        assert_eq!(ids(b"c", b"g"), vec![2, 3]);
    }

    #[test]
    fn test_same_id_epoch_rules() {
        let mut map = RegionMap::default();
        must_update(&mut map, new_test_region(1, b"", b"", 2, 2));
        for (version, conf_ver) in [(1, 2), (2, 1), (3, 1), (1, 3)] {
            let err = map
                .check_update(&new_test_region(1, b"", b"", version, conf_ver))
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
                "({version}, {conf_ver}): {err}"
            );
        }
        // The same epoch again is accepted and changes nothing.
        assert_eq!(
            must_update(&mut map, new_test_region(1, b"", b"", 2, 2)),
            Vec::<u64>::new()
        );
        // The same epoch with other peers is a broken report.
        let mut changed = new_test_region(1, b"", b"", 2, 2);
        changed.peers.push(Peer {
            id: 99,
            store_id: 9,
        });
        assert!(matches!(
            map.check_update(&changed),
            Err(Error::InvalidRequest(_))
        ));
        // A conf change replaces the peers.
        let mut grown = new_test_region(1, b"", b"", 2, 3);
        grown.peers.push(Peer {
            id: 99,
            store_id: 9,
        });
        must_update(&mut map, grown.clone());
        assert_eq!(map.get(1), Some(&grown));
    }

    #[test]
    fn test_split_reports_in_either_order() {
        for right_first in [false, true] {
            let mut map = RegionMap::default();
            must_update(&mut map, new_test_region(1, b"a", b"c", 1, 1));
            let left = new_test_region(1, b"a", b"b", 2, 1);
            let right = new_test_region(2, b"b", b"c", 2, 1);
            if right_first {
                assert_eq!(
                    must_update(&mut map, right.clone()),
                    vec![1],
                    "old region 1 dropped"
                );
                assert_eq!(
                    map.find(b"a"),
                    None,
                    "[a, b) unknown until region 1 reports"
                );
                assert_eq!(must_update(&mut map, left.clone()), Vec::<u64>::new());
            } else {
                assert_eq!(must_update(&mut map, left.clone()), Vec::<u64>::new());
                assert_eq!(
                    map.find(b"b"),
                    None,
                    "[b, c) unknown until region 2 reports"
                );
                assert_eq!(must_update(&mut map, right.clone()), Vec::<u64>::new());
            }
            assert_eq!(ids_in_order(&map), vec![1, 2]);
            assert_eq!(map.find(b"b").map(|r| r.id), Some(2));
            // The pre-split region reporting late is stale against both halves.
            let late = new_test_region(1, b"a", b"c", 1, 1);
            assert!(matches!(
                map.check_update(&late),
                Err(Error::StaleRegion { .. })
            ));
        }
    }

    #[test]
    fn test_newer_region_replaces_every_overlap() {
        let mut map = RegionMap::default();
        must_update(&mut map, new_test_region(1, b"", b"b", 2, 1));
        must_update(&mut map, new_test_region(2, b"b", b"d", 2, 1));
        must_update(&mut map, new_test_region(3, b"d", b"", 2, 1));
        // An overlapping region with the same version is stale.
        let err = map
            .check_update(&new_test_region(4, b"a", b"c", 2, 1))
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::StaleRegion {
                    region_id: 4,
                    current_id: 1,
                    ..
                }
            ),
            "{err}"
        );
        // A newer one covering [a, e) drops all three.
        let mut replaced = must_update(&mut map, new_test_region(4, b"a", b"e", 3, 1));
        replaced.sort_unstable();
        assert_eq!(replaced, vec![1, 2, 3]);
        assert_eq!(ids_in_order(&map), vec![4]);
        assert_eq!(map.len(), 1);
        assert!(map.get(1).is_none());
    }

    #[test]
    fn test_refused_update_changes_nothing() {
        let mut map = RegionMap::default();
        must_update(&mut map, new_test_region(1, b"", b"m", 5, 1));
        must_update(&mut map, new_test_region(2, b"m", b"", 1, 1));
        // Newer than region 2 but not than region 1: refused as a whole.
        assert!(
            map.check_update(&new_test_region(3, b"k", b"z", 3, 1))
                .is_err()
        );
        assert_eq!(ids_in_order(&map), vec![1, 2]);
    }

    #[test]
    fn test_region_shape() {
        let good = new_test_region(1, b"a", b"b", 1, 1);
        check_region_shape(&good).unwrap();
        check_region_shape(&new_test_region(1, b"a", b"", 1, 1)).unwrap();
        let twice = Peer { id: 5, store_id: 1 };
        let bad = [
            Region {
                id: 0,
                ..good.clone()
            },
            Region {
                region_epoch: None,
                ..good.clone()
            },
            Region {
                end_key: b"a".to_vec(),
                ..good.clone()
            },
            Region {
                start_key: b"c".to_vec(),
                ..good.clone()
            },
            Region {
                peers: vec![],
                ..good.clone()
            },
            Region {
                peers: vec![Peer { id: 0, store_id: 1 }],
                ..good.clone()
            },
            Region {
                peers: vec![twice, twice],
                ..good.clone()
            },
            Region {
                peers: vec![twice, Peer { id: 6, store_id: 1 }],
                ..good.clone()
            },
        ];
        for region in bad {
            assert!(
                matches!(check_region_shape(&region), Err(Error::InvalidRequest(_))),
                "{region:?} accepted"
            );
        }
    }
}
