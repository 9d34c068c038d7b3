//! `RaftLog`: the log as Raft sees it, the stable part in `Storage` plus the
//! unstable tail and an unpersisted snapshot in memory.
//!
//! ```text
//!  snapshot/first_index-1   applied      committed        stabled       last_index
//!  ----------|------------------|------------|---------------|----------------|
//!            |<------ in Storage (persisted) --------------->|<- `entries` -->|
//! ```
//!
//! Invariants (checked by `check_invariants` in debug builds):
//! - `applied <= committed <= last_index()`; `stabled <= last_index()`.
//! - `entries` is contiguous and `entries[0].index == stabled + 1`.
//! - With a pending snapshot `s`: `stabled == s.index` and `committed >= s.index`.
//!
//! `stabled` moves back when a new leader overwrites an unpersisted or
//! persisted-but-uncommitted tail; the host then overwrites Storage from the
//! next `Ready`'s entries.

use kvproto::eraftpb::{Entry, Snapshot};

use crate::errors::{Result, StorageError};
use crate::storage::Storage;

/// The Raft log of one node.
pub struct RaftLog<S: Storage> {
    /// The persisted part of the log.
    pub(crate) storage: S,
    /// The highest index known to be committed by a quorum.
    /// Invariant: never decreases.
    pub(crate) committed: u64,
    /// The highest index the host reported applied (through `advance`).
    /// Invariant: `applied <= committed`.
    pub(crate) applied: u64,
    /// The highest index persisted in `storage` (or covered by the pending snapshot).
    pub(crate) stabled: u64,
    /// Entries not yet persisted. Invariant: `entries[0].index == stabled + 1`.
    pub(crate) entries: Vec<Entry>,
    /// A snapshot received from the leader and not yet persisted by the host.
    pub(crate) pending_snapshot: Option<Snapshot>,
}

impl<S: Storage> RaftLog<S> {
    /// A log over `storage`, everything in it stable, nothing applied past
    /// the storage's snapshot.
    pub fn new(storage: S) -> Result<Self> {
        let first = storage.first_index()?;
        let last = storage.last_index()?;
        Ok(RaftLog {
            storage,
            committed: first - 1,
            applied: first - 1,
            stabled: last,
            entries: Vec::new(),
            pending_snapshot: None,
        })
    }

    /// The storage behind the log.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The committed index.
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// The applied index.
    pub fn applied(&self) -> u64 {
        self.applied
    }

    /// The last index persisted by the host.
    pub fn stabled(&self) -> u64 {
        self.stabled
    }

    /// The snapshot waiting to be persisted, if any.
    pub fn pending_snapshot(&self) -> Option<&Snapshot> {
        self.pending_snapshot.as_ref()
    }

    fn pending_snapshot_index(&self) -> Option<(u64, u64)> {
        self.pending_snapshot.as_ref().map(|s| {
            let meta = s.metadata.as_ref();
            (meta.map_or(0, |m| m.index), meta.map_or(0, |m| m.term))
        })
    }

    /// The index of the first entry still available.
    pub fn first_index(&self) -> u64 {
        match self.pending_snapshot_index() {
            Some((index, _)) => index + 1,
            None => self.storage.first_index().unwrap_or(1),
        }
    }

    /// The index of the last entry.
    pub fn last_index(&self) -> u64 {
        if let Some(last) = self.entries.last() {
            return last.index;
        }
        if let Some((index, _)) = self.pending_snapshot_index() {
            return index;
        }
        self.stabled
    }

    /// The term of the last entry.
    pub fn last_term(&self) -> u64 {
        self.term(self.last_index())
            .expect("the last entry's term is always known")
    }

    /// The term of entry `idx`. `Compacted` below the first index less one,
    /// `Unavailable` past the last index.
    pub fn term(&self, idx: u64) -> Result<u64> {
        if idx > self.last_index() {
            return Err(StorageError::Unavailable.into());
        }
        if idx > self.stabled {
            return Ok(self.entries[(idx - self.stabled - 1) as usize].term);
        }
        if let Some((index, term)) = self.pending_snapshot_index() {
            return match idx.cmp(&index) {
                std::cmp::Ordering::Equal => Ok(term),
                _ => Err(StorageError::Compacted.into()),
            };
        }
        self.storage.term(idx)
    }

    /// The snapshot to send a follower whose next entry is compacted: the
    /// pending one while the host has not persisted it (the entries it
    /// covers are in neither `storage` nor `entries`), else the storage's.
    /// As etcd's `raftLog.snapshot`.
    pub fn snapshot(&self) -> Result<Snapshot> {
        match &self.pending_snapshot {
            Some(s) => Ok(s.clone()),
            None => self.storage.snapshot(),
        }
    }

    /// Whether entry `idx` exists with term `term`.
    pub fn match_term(&self, idx: u64, term: u64) -> bool {
        self.term(idx).is_ok_and(|t| t == term)
    }

    /// Entries in `[low, high)`, from storage and the unstable tail.
    pub fn slice(&self, low: u64, high: u64) -> Result<Vec<Entry>> {
        if low > high || high > self.last_index() + 1 {
            return Err(StorageError::Unavailable.into());
        }
        if low < self.first_index() {
            return Err(StorageError::Compacted.into());
        }
        let mut out = Vec::with_capacity((high - low) as usize);
        if low <= self.stabled {
            out = self.storage.entries(low, high.min(self.stabled + 1))?;
        }
        if high > self.stabled + 1 {
            let from = low.max(self.stabled + 1);
            let base = self.stabled + 1;
            out.extend_from_slice(&self.entries[(from - base) as usize..(high - base) as usize]);
        }
        Ok(out)
    }

    /// Entries from `low` to the end of the log.
    pub fn entries_from(&self, low: u64) -> Result<Vec<Entry>> {
        self.slice(low, self.last_index() + 1)
    }

    /// Every entry still available (stable and unstable), for tests and debugging.
    pub fn all_entries(&self) -> Vec<Entry> {
        self.entries_from(self.first_index())
            .expect("entries from the first index are available")
    }

    /// Entries the host has not persisted yet.
    pub fn unstable_entries(&self) -> &[Entry] {
        &self.entries
    }

    /// Committed entries the host has not applied yet.
    pub fn next_entries(&self) -> Vec<Entry> {
        self.next_entries_up_to(u64::MAX)
    }

    /// Like `next_entries`, but none past `limit`.
    pub fn next_entries_up_to(&self, limit: u64) -> Vec<Entry> {
        let low = (self.applied + 1).max(self.first_index());
        let high = self.committed.min(limit);
        if high < low {
            return Vec::new();
        }
        self.slice(low, high + 1)
            .expect("committed entries past applied are available")
    }

    /// Whether there are committed entries to apply.
    pub fn has_next_entries(&self) -> bool {
        self.has_next_entries_up_to(u64::MAX)
    }

    /// Whether there are committed entries up to `limit` to apply.
    pub fn has_next_entries_up_to(&self, limit: u64) -> bool {
        self.committed.min(limit) + 1 > (self.applied + 1).max(self.first_index())
    }

    /// Whether the log of a candidate whose last entry is
    /// (`last_index`, `last_term`) is at least as up to date as ours (§5.4.1).
    pub fn is_up_to_date(&self, last_index: u64, last_term: u64) -> bool {
        let our_term = self.last_term();
        last_term > our_term || (last_term == our_term && last_index >= self.last_index())
    }

    /// The first index in `entries` whose term differs from ours, or 0 when
    /// all of them match entries we have (entries past our end count as conflicts).
    fn find_conflict(&self, entries: &[Entry]) -> u64 {
        entries
            .iter()
            .find(|e| !self.match_term(e.index, e.term))
            .map_or(0, |e| e.index)
    }

    /// Where a leader should look next after we rejected an append whose
    /// previous entry is `index`: the last index below the run of entries
    /// of the same term that holds `index` (not below `committed`, which
    /// matches any leader), or our last index when we lack `index`.
    ///
    /// The whole run has the term that conflicts with the leader's, so
    /// skipping it costs one round trip per term of a divergent tail instead
    /// of one per entry (the optimisation at the end of §5.3). The leader
    /// may then resend entries it did not need to; `maybe_append` keeps those
    /// that match.
    pub fn reject_hint(&self, index: u64) -> u64 {
        let last = self.last_index();
        if index > last {
            return last;
        }
        let Ok(term) = self.term(index) else {
            return self.committed.min(last);
        };
        let mut first = index;
        while first > self.committed + 1 && self.term(first - 1) == Ok(term) {
            first -= 1;
        }
        // 0 only for a (malformed) append after entry 0 of a nonzero term.
        first.saturating_sub(1)
    }

    /// Appends entries sent by a leader after our entry (`index`, `log_term`).
    /// Returns the index of the last new entry, or `None` if our log does not
    /// contain (`index`, `log_term`). Matching entries are kept; a conflicting
    /// suffix is replaced. Committed entries never conflict (Log Matching).
    pub fn maybe_append(&mut self, index: u64, log_term: u64, entries: &[Entry]) -> Option<u64> {
        if !self.match_term(index, log_term) {
            return None;
        }
        let last_new = index + entries.len() as u64;
        let conflict = self.find_conflict(entries);
        if conflict != 0 {
            assert!(
                conflict > self.committed,
                "entry {conflict} conflicts with committed entry (committed {})",
                self.committed
            );
            let start = (conflict - index - 1) as usize;
            self.append(&entries[start..]);
        }
        Some(last_new)
    }

    /// Appends `entries` (contiguous) at their indices, truncating whatever
    /// follows the first of them. Returns the new last index.
    pub fn append(&mut self, entries: &[Entry]) -> u64 {
        let Some(first) = entries.first() else {
            return self.last_index();
        };
        let after = first.index - 1;
        assert!(
            after >= self.committed,
            "cannot overwrite committed entry {} (committed {})",
            after + 1,
            self.committed
        );
        if after < self.stabled {
            // Overwriting persisted entries: they are unstable again.
            self.stabled = after;
            self.entries.clear();
        } else {
            self.entries.truncate((after - self.stabled) as usize);
        }
        assert_eq!(
            self.last_index(),
            after,
            "appending entry {} leaves a gap after {}",
            first.index,
            self.last_index()
        );
        self.entries.extend_from_slice(entries);
        self.last_index()
    }

    /// Raises the committed index to `to_commit` if that is an advance.
    pub fn commit_to(&mut self, to_commit: u64) {
        if to_commit > self.committed {
            assert!(
                to_commit <= self.last_index(),
                "commit {to_commit} is past the last index {}",
                self.last_index()
            );
            self.committed = to_commit;
        }
    }

    /// Commits `index` if entry `index` has term `term` (only entries of the
    /// leader's current term are committed by counting, §5.4.2).
    pub fn maybe_commit(&mut self, index: u64, term: u64) -> bool {
        if index > self.committed && self.match_term(index, term) {
            self.commit_to(index);
            return true;
        }
        false
    }

    /// Records that the host applied everything up to `index`.
    pub fn applied_to(&mut self, index: u64) {
        if index == 0 {
            return;
        }
        assert!(
            index <= self.committed && index >= self.applied,
            "applied {index} is out of range [{}, {}]",
            self.applied,
            self.committed
        );
        self.applied = index;
    }

    /// Records that the host persisted entries up to (`index`, `term`).
    /// Ignored if that entry was overwritten in the meantime.
    pub fn stable_to(&mut self, index: u64, term: u64) {
        if index <= self.stabled || !self.match_term(index, term) {
            return;
        }
        let persisted = (index - self.stabled) as usize;
        self.entries.drain(..persisted);
        self.stabled = index;
    }

    /// Records that the host persisted the pending snapshot at `index`.
    pub fn stable_snapshot_to(&mut self, index: u64) {
        if self
            .pending_snapshot_index()
            .is_some_and(|(i, _)| i == index)
        {
            self.pending_snapshot = None;
        }
    }

    /// Replaces the log with `snapshot`: all entries are dropped, and the
    /// snapshot's index becomes committed and stable (pending until persisted).
    pub fn restore(&mut self, snapshot: Snapshot) {
        let index = snapshot.metadata.as_ref().map_or(0, |m| m.index);
        self.committed = index;
        self.stabled = index;
        self.entries.clear();
        self.pending_snapshot = Some(snapshot);
    }

    /// Panics if an invariant of the module doc is broken.
    pub fn check_invariants(&self) {
        let last = self.last_index();
        assert!(
            self.applied <= self.committed,
            "applied {} > committed {}",
            self.applied,
            self.committed
        );
        assert!(
            self.committed <= last,
            "committed {} > last {}",
            self.committed,
            last
        );
        if let Some(first) = self.entries.first() {
            assert_eq!(
                first.index,
                self.stabled + 1,
                "unstable entries start after stabled"
            );
        }
        for pair in self.entries.windows(2) {
            assert_eq!(
                pair[0].index + 1,
                pair[1].index,
                "unstable entries are contiguous"
            );
        }
        if let Some((index, _)) = self.pending_snapshot_index() {
            assert_eq!(self.stabled, index, "stabled sits at a pending snapshot");
        }
    }
}
