//! `StoreMeta`: the key ranges of the initialized peers of one store, to
//! refuse a snapshot that would put a region over another one's data.
//!
//! Invariant: holds the range of every initialized peer registered on the
//! store (inserted when it starts initialized or applies a snapshot, removed
//! when it is destroyed). Ranges change only by snapshot (splits do not
//! exist yet), so conf changes need not update it.

use std::collections::HashMap;

use kvproto::metapb;

/// The ranges of a store's initialized regions.
#[derive(Debug, Default)]
pub struct StoreMeta {
    /// Region id → `[start_key, end_key)` (empty end: unbounded).
    ranges: HashMap<u64, (Vec<u8>, Vec<u8>)>,
}

fn overlaps(a: &(Vec<u8>, Vec<u8>), b: &(Vec<u8>, Vec<u8>)) -> bool {
    let a_before_b_end = b.1.is_empty() || a.0 < b.1;
    let b_before_a_end = a.1.is_empty() || b.0 < a.1;
    a_before_b_end && b_before_a_end
}

impl StoreMeta {
    /// Records `region`'s range.
    pub fn set_region(&mut self, region: &metapb::Region) {
        self.ranges.insert(
            region.id,
            (region.start_key.clone(), region.end_key.clone()),
        );
    }

    /// Forgets region `region_id`.
    pub fn remove(&mut self, region_id: u64) {
        self.ranges.remove(&region_id);
    }

    /// Another region whose range overlaps `region`'s, if any.
    pub fn overlapping(&self, region: &metapb::Region) -> Option<u64> {
        let range = (region.start_key.clone(), region.end_key.clone());
        self.ranges
            .iter()
            .find(|(id, other)| **id != region.id && overlaps(&range, other))
            .map(|(id, _)| *id)
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
    }
}
