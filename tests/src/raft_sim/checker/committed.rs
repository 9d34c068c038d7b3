//! `committed_stable`: an entry once seen committed anywhere never changes,
//! on any node, at any later point; and a running node's commit index never
//! moves back.
//!
//! `CommittedLog` is the record: every committed entry ever observed, by
//! index, with the lowest term it was observed committed in (an upper bound
//! on the term it was committed in, which `leader_completeness` uses). It is
//! never pruned, so a change is caught however long after the commit it
//! happens. Where a node compacted its log, the record is compared with the
//! snapshot's term at the snapshot's index.
//!
//! `CommitMarks` follows each node: its commit index (to catch it moving
//! back within one incarnation), the highest committed index already
//! compared with the record, and the lowest index the node rewrote on its
//! disk since it was last compared. Each step compares only the entries that
//! became committed and those rewritten at or below the commit index; the
//! whole log is compared at checkpoints (`Checkers::check_full`).
//!
//! Invariant: every record's `observed_term` only decreases, and is at least
//! the term the entry was committed in.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::{EntryId, Observed, Violation};

/// A committed entry as observed.
#[derive(Debug, Clone, Copy)]
pub(super) struct CommittedRec {
    pub id: EntryId,
    /// The lowest term of a node seen holding it committed: the entry was
    /// committed in this term or earlier, so every leader of a later term
    /// must hold it.
    pub observed_term: u64,
    pub observed_by: u64,
}

/// What recording an observation changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Recorded {
    /// Known already, in an earlier or the same term.
    Known,
    /// First seen.
    New,
    /// Known, but now seen committed in an earlier term than before (`was`).
    Lowered { was: u64 },
}

/// Every committed entry ever observed.
#[derive(Debug, Default)]
pub(super) struct CommittedLog {
    entries: BTreeMap<u64, CommittedRec>,
}

impl CommittedLog {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The highest index seen committed, 0 if none.
    pub fn max_index(&self) -> u64 {
        self.entries.last_key_value().map_or(0, |(&i, _)| i)
    }

    pub fn get(&self, index: u64) -> Option<&CommittedRec> {
        self.entries.get(&index)
    }

    /// Records from `low` on, in index order.
    pub fn from(&self, low: u64) -> impl Iterator<Item = (u64, &CommittedRec)> {
        self.entries.range(low..).map(|(&i, r)| (i, r))
    }

    /// Records of `[low, high]`, in index order.
    pub fn between(
        &self,
        low: u64,
        high: u64,
    ) -> impl DoubleEndedIterator<Item = (u64, &CommittedRec)> {
        // `BTreeMap::range` refuses a start past the end: an empty range
        // is `low..low`.
        let end = if low <= high {
            Bound::Included(high)
        } else {
            Bound::Excluded(low)
        };
        self.entries
            .range((Bound::Included(low), end))
            .map(|(&i, r)| (i, r))
    }

    /// Node `node`, in term `term`, holds `id` committed at `index`.
    pub fn observe(
        &mut self,
        node: u64,
        index: u64,
        id: EntryId,
        term: u64,
    ) -> Result<Recorded, Violation> {
        let Some(rec) = self.entries.get_mut(&index) else {
            self.entries.insert(
                index,
                CommittedRec {
                    id,
                    observed_term: term,
                    observed_by: node,
                },
            );
            return Ok(Recorded::New);
        };
        if rec.id != id {
            return Err(Violation::new(
                "committed_stable",
                format!(
                    "node {node} has {id:?} committed at {index}, but node {} saw {:?} \
                     committed there (in term {})",
                    rec.observed_by, rec.id, rec.observed_term
                ),
            ));
        }
        if term < rec.observed_term {
            let was = rec.observed_term;
            rec.observed_term = term;
            rec.observed_by = node;
            return Ok(Recorded::Lowered { was });
        }
        Ok(Recorded::Known)
    }

    /// Node `node`'s log starts after a snapshot at `index` of term `term`:
    /// everything up to it is committed, and the snapshot stands for it.
    pub fn check_snapshot(&self, node: u64, index: u64, term: u64) -> Result<(), Violation> {
        match self.entries.get(&index) {
            Some(rec) if rec.id.term != term => Err(Violation::new(
                "committed_stable",
                format!(
                    "node {node}'s log starts after a snapshot at {index} of term {term}, but \
                     node {} saw {:?} committed there (in term {})",
                    rec.observed_by, rec.id, rec.observed_term
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// What the checkers last saw of one node incarnation.
#[derive(Debug, Clone, Copy, Default)]
struct NodeMark {
    incarnation: u64,
    committed: u64,
    /// The highest committed index already compared with the record.
    checked: u64,
    /// The lowest index the node wrote to its disk since the last step.
    rewritten: Option<u64>,
}

/// Per-node progress of the incremental `committed_stable` check.
#[derive(Debug, Default)]
pub(super) struct CommitMarks {
    marks: BTreeMap<u64, NodeMark>,
}

impl CommitMarks {
    /// Node `node` wrote entries from `index` on to its disk.
    pub fn rewritten(&mut self, node: u64, index: u64) {
        let mark = self.marks.entry(node).or_default();
        mark.rewritten = Some(mark.rewritten.map_or(index, |r| r.min(index)));
    }

    /// Checks that `node`'s commit index did not move back, and returns
    /// the committed entries to compare with the record this step: those
    /// newly committed and those rewritten at or below the commit index.
    pub fn due<N: Observed + ?Sized>(&mut self, node: &N) -> Result<Option<(u64, u64)>, Violation> {
        let id = node.id();
        let committed = node.committed();
        let incarnation = node.incarnation();
        let mark = self.marks.entry(id).or_default();
        if node.is_up() && mark.incarnation == incarnation && committed < mark.committed {
            return Err(Violation::new(
                "committed_stable",
                format!(
                    "node {id}'s commit index went back from {} to {committed}",
                    mark.committed
                ),
            ));
        }
        let (first, _) = node.log_bounds();
        let mut low = mark.checked + 1;
        if let Some(r) = mark.rewritten.take() {
            low = low.min(r);
        }
        let low = low.max(first);
        mark.incarnation = incarnation;
        mark.committed = committed;
        mark.checked = mark.checked.max(committed);
        Ok((low <= committed).then_some((low, committed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(term: u64, hash: u64) -> EntryId {
        EntryId { term, hash }
    }

    #[test]
    fn a_different_entry_at_a_committed_index_is_rejected() {
        let mut log = CommittedLog::default();
        assert_eq!(log.observe(1, 10, id(2, 7), 2), Ok(Recorded::New));
        assert_eq!(log.observe(2, 10, id(2, 7), 3), Ok(Recorded::Known));
        let v = log.observe(3, 10, id(3, 8), 3).unwrap_err();
        assert_eq!(v.checker, "committed_stable");
        // Same term, other content: still a different entry.
        let v = log.observe(3, 10, id(2, 9), 2).unwrap_err();
        assert_eq!(v.checker, "committed_stable");
    }

    #[test]
    fn between_is_empty_when_low_passes_high() {
        let mut log = CommittedLog::default();
        for i in 1..=5 {
            log.observe(1, i, id(2, i), 2).unwrap();
        }
        let indexes = |low, high| log.between(low, high).map(|(i, _)| i).collect::<Vec<_>>();
        assert_eq!(indexes(2, 4), vec![2, 3, 4]);
        assert_eq!(indexes(4, 4), vec![4]);
        assert!(indexes(4, 3).is_empty());
        assert!(indexes(9, 0).is_empty());
    }

    #[test]
    fn the_observed_term_only_goes_down() {
        let mut log = CommittedLog::default();
        log.observe(1, 10, id(2, 7), 5).unwrap();
        assert_eq!(
            log.observe(2, 10, id(2, 7), 3),
            Ok(Recorded::Lowered { was: 5 })
        );
        assert_eq!(log.observe(1, 10, id(2, 7), 4), Ok(Recorded::Known));
        let rec = log.get(10).expect("recorded");
        assert_eq!((rec.observed_term, rec.observed_by), (3, 2));
    }

    #[test]
    fn a_snapshot_of_another_term_at_a_committed_index_is_rejected() {
        let mut log = CommittedLog::default();
        log.observe(1, 10, id(2, 7), 2).unwrap();
        log.check_snapshot(2, 10, 2).expect("same term");
        log.check_snapshot(2, 11, 9)
            .expect("nothing recorded at 11");
        let v = log.check_snapshot(2, 10, 3).unwrap_err();
        assert_eq!(v.checker, "committed_stable");
    }
}
