//! `EntryCache`: the tail of a peer's persisted raft log, kept in memory so
//! that applying committed entries and looking up terms do not read RocksDB.
//!
//! Without it every `Ready` that commits entries reads them back from the
//! raft CF (an iterator and a decode per entry) although they were written
//! moments before; that read sits on the critical path of every write.
//!
//! Invariants:
//! - The cached entries are contiguous and each equals the entry persisted
//!   at its index: entries are added only after the batch that persisted
//!   them was written, and a tail a new leader overwrote is dropped in the
//!   same step that caches its replacement.
//! - The cache never holds an entry past the log's last index nor at or
//!   below its truncated index (`compact_to` runs whenever the apply state
//!   moves; a snapshot clears it).
//! - It is bounded ([`MAX_ENTRIES`], [`MAX_BYTES`]): entries already applied
//!   go first, then the oldest. A miss is never wrong, only slower: the
//!   caller reads the raft CF instead.

use std::collections::VecDeque;

use kvproto::eraftpb::Entry;

/// The most entries kept.
pub const MAX_ENTRIES: usize = 1024;
/// The most entry payload bytes kept.
pub const MAX_BYTES: usize = 4 << 20;

/// Recently persisted raft log entries of one peer (module doc).
#[derive(Debug, Default)]
pub struct EntryCache {
    entries: VecDeque<Entry>,
    bytes: usize,
}

impl EntryCache {
    /// The index of the first cached entry, if any.
    pub fn first_index(&self) -> Option<u64> {
        self.entries.front().map(|e| e.index)
    }

    /// Records `persisted`, a contiguous run just written to the log. Entries
    /// at or after its first index are replaced (a new leader overwrote
    /// them); a run that does not continue the cache starts it afresh.
    pub fn append(&mut self, persisted: Vec<Entry>) {
        let Some(first) = persisted.first() else {
            return;
        };
        while self.entries.back().is_some_and(|e| e.index >= first.index) {
            self.pop_back();
        }
        if self
            .entries
            .back()
            .is_some_and(|e| e.index + 1 != first.index)
        {
            self.clear();
        }
        for entry in persisted {
            self.bytes += entry.data.len();
            self.entries.push_back(entry);
        }
        while self.entries.len() > MAX_ENTRIES || self.bytes > MAX_BYTES {
            self.pop_front();
        }
    }

    /// Drops every entry at or below `index` (applied or compacted).
    pub fn compact_to(&mut self, index: u64) {
        while self.entries.front().is_some_and(|e| e.index <= index) {
            self.pop_front();
        }
    }

    /// Forgets everything (a snapshot replaced the log).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }

    /// Copies of the cached entries in `[low, high)`, starting at the first
    /// cached index `>= low`. The caller reads what lies before that.
    pub fn copy_from(&self, low: u64, high: u64, out: &mut Vec<Entry>) {
        let Some(first) = self.first_index() else {
            return;
        };
        let from = low.max(first);
        if from >= high {
            return;
        }
        let skip = (from - first) as usize;
        let take = (high - from) as usize;
        out.extend(self.entries.iter().skip(skip).take(take).cloned());
    }

    fn pop_front(&mut self) {
        if let Some(e) = self.entries.pop_front() {
            self.bytes -= e.data.len();
        }
    }

    fn pop_back(&mut self) {
        if let Some(e) = self.entries.pop_back() {
            self.bytes -= e.data.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(indexes: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
        indexes
            .map(|index| Entry {
                index,
                term,
                data: vec![0; 10],
                ..Default::default()
            })
            .collect()
    }

    fn shape(cache: &EntryCache, low: u64, high: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        cache.copy_from(low, high, &mut out);
        out.iter().map(|e| (e.index, e.term)).collect()
    }

    #[test]
    fn an_overwritten_tail_is_replaced_and_a_gap_starts_afresh() {
        let mut cache = EntryCache::default();
        cache.append(entries(5..=9, 1));
        cache.append(entries(8..=8, 2));
        assert_eq!(shape(&cache, 0, 100), vec![(5, 1), (6, 1), (7, 1), (8, 2)]);
        assert_eq!(cache.bytes, 40);
        cache.append(entries(12..=13, 2));
        assert_eq!(shape(&cache, 0, 100), vec![(12, 2), (13, 2)]);
        assert_eq!(cache.bytes, 20);
    }

    #[test]
    fn reads_return_the_cached_suffix_of_the_range() {
        let mut cache = EntryCache::default();
        cache.append(entries(5..=9, 1));
        assert_eq!(shape(&cache, 3, 7), vec![(5, 1), (6, 1)]);
        assert_eq!(shape(&cache, 7, 8), vec![(7, 1)]);
        assert!(shape(&cache, 1, 5).is_empty());
        assert!(shape(&cache, 10, 11).is_empty());
        cache.compact_to(6);
        assert_eq!(cache.first_index(), Some(7));
        cache.compact_to(100);
        assert_eq!(cache.first_index(), None);
        assert_eq!(cache.bytes, 0);
    }

    #[test]
    fn the_cache_stays_within_its_bounds() {
        let mut cache = EntryCache::default();
        let n = MAX_ENTRIES as u64 + 10;
        cache.append(entries(1..=n, 1));
        assert_eq!(cache.entries.len(), MAX_ENTRIES);
        assert_eq!(cache.first_index(), Some(11));
        let big = Entry {
            index: n + 1,
            term: 1,
            data: vec![0; MAX_BYTES],
            ..Default::default()
        };
        cache.append(vec![big]);
        assert_eq!(cache.first_index(), Some(n + 1));
        assert_eq!(cache.bytes, MAX_BYTES);
    }
}
