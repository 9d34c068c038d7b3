//! `StoreMeta`: the initialized regions of one store, with their key
//! ranges: to refuse a snapshot that would put a region over another one's
//! data, to refuse creating a peer for a region whose range this store
//! still serves under another region (a split not applied here yet), and
//! to name a split-off region in an `EpochNotMatch`.
//!
//! Invariant: holds the region of every initialized peer registered on the
//! store (inserted when it starts initialized, applies a snapshot or is
//! born from a split; updated when a split or a membership change applies;
//! removed when it is destroyed). Its ranges do not overlap, with one
//! short-lived exception: when the store creates a split-born peer from
//! the state a split wrote (for a message that came first) before the
//! splitting peer records its narrowed range, both are in for a moment.

use std::collections::HashMap;

use kvproto::metapb;

/// The initialized regions of a store.
#[derive(Debug, Default)]
pub struct StoreMeta {
    /// Region id → the region as its peer last recorded it.
    regions: HashMap<u64, metapb::Region>,
}

/// Whether `[a_start, a_end)` and `[b_start, b_end)` (empty end: unbounded)
/// share a key.
fn overlaps(a: &metapb::Region, b: &metapb::Region) -> bool {
    let a_before_b_end = b.end_key.is_empty() || a.start_key < b.end_key;
    let b_before_a_end = a.end_key.is_empty() || b.start_key < a.end_key;
    a_before_b_end && b_before_a_end
}

impl StoreMeta {
    /// Records `region` (its range, epoch and members).
    pub fn set_region(&mut self, region: &metapb::Region) {
        self.regions.insert(region.id, region.clone());
    }

    /// Forgets region `region_id`.
    pub fn remove(&mut self, region_id: u64) {
        self.regions.remove(&region_id);
    }

    /// Whether an initialized peer of `region_id` is registered.
    pub fn contains(&self, region_id: u64) -> bool {
        self.regions.contains_key(&region_id)
    }

    /// Another region whose range overlaps `region`'s, if any.
    pub fn overlapping(&self, region: &metapb::Region) -> Option<u64> {
        self.regions
            .values()
            .find(|other| other.id != region.id && overlaps(region, other))
            .map(|other| other.id)
    }

    /// The region that starts where `region` ends (the one a split of
    /// `region` made last, while neither changed since), if this store
    /// serves it.
    pub fn right_sibling(&self, region: &metapb::Region) -> Option<metapb::Region> {
        if region.end_key.is_empty() {
            return None;
        }
        self.regions
            .values()
            .find(|other| other.id != region.id && other.start_key == region.end_key)
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(id: u64, start: &[u8], end: &[u8]) -> metapb::Region {
        metapb::Region {
            id,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            ..Default::default()
        }
    }

    #[test]
    fn test_overlapping_regions() {
        let mut meta = StoreMeta::default();
        meta.set_region(&region(1, b"", b"c"));
        meta.set_region(&region(2, b"f", b""));
        assert_eq!(meta.overlapping(&region(1, b"", b"")), Some(2));
        assert_eq!(meta.overlapping(&region(3, b"c", b"f")), None);
        assert_eq!(meta.overlapping(&region(3, b"b", b"d")), Some(1));
        assert_eq!(meta.overlapping(&region(3, b"e", b"g")), Some(2));
        assert_eq!(meta.overlapping(&region(3, b"x", b"")), Some(2));
        assert!(meta.overlapping(&region(3, b"", b"")).is_some());
        // A region never overlaps itself.
        assert_eq!(meta.overlapping(&region(2, b"d", b"")), None);
        meta.remove(2);
        assert_eq!(meta.overlapping(&region(3, b"x", b"")), None);
        assert!(meta.contains(1) && !meta.contains(2));
    }

    #[test]
    fn test_right_sibling() {
        let mut meta = StoreMeta::default();
        meta.set_region(&region(1, b"", b"c"));
        meta.set_region(&region(2, b"c", b"f"));
        assert_eq!(
            meta.right_sibling(&region(1, b"", b"c")).map(|r| r.id),
            Some(2)
        );
        assert_eq!(meta.right_sibling(&region(2, b"c", b"f")), None);
        assert_eq!(meta.right_sibling(&region(3, b"x", b"")), None);
    }
}
