//! `election_safety` and `leader_completeness` (Raft paper §5.2, §5.4.1).
//!
//! - `election_safety`: at most one leader per term, over the whole run.
//! - `leader_completeness`: an entry committed in term `t` is in the log of
//!   every leader of a term after `t`, from the moment it becomes leader
//!   on. An entry a leader compacted counts as held when the leader's
//!   snapshot covers its index (and, at the snapshot's own index, has its
//!   term).
//!
//! The term an entry was committed in is not known exactly: the record
//! (`CommittedLog`) keeps the lowest term a node was in when it held the
//! entry committed, an upper bound on it. So the check is: every entry
//! recorded with `observed_term < T` is in the log of the leader of `T`.
//!
//! Each leader's log is copied (as entry ids) when it becomes leader and
//! kept for the whole run, so the check runs both ways: a new leader
//! against every entry recorded so far, and an entry recorded later (or
//! found committed in an earlier term than recorded) against every leader
//! of a later term elected before. That a leader keeps those entries while
//! it leads is checked against its live log: incrementally from the lowest
//! index it rewrites on its disk, and over its whole log at checkpoints.

use std::collections::BTreeMap;

use super::committed::{CommittedLog, CommittedRec};
use super::matching::LogView;
use super::{EntryId, Observed, Violation};

/// A log as entry ids, the term of the entry before it, and whether
/// everything before it was compacted (so committed) or merely left out.
#[derive(Debug, Clone)]
pub(super) struct IdLog {
    before: (u64, Option<u64>),
    compacted_before: bool,
    ids: Vec<EntryId>,
}

/// What a log holds at an index.
enum Held {
    /// Nothing there to compare: compacted below the snapshot, or left out.
    Covered,
    /// Only a term: the snapshot's index.
    Term(u64),
    Entry(EntryId),
    Missing,
}

impl IdLog {
    pub fn of(view: &LogView) -> IdLog {
        IdLog {
            before: view.before,
            compacted_before: view.compacted_before,
            ids: view.entries.iter().map(EntryId::of).collect(),
        }
    }

    fn held(&self, index: u64) -> Held {
        if index < self.before.0 || (index == self.before.0 && !self.compacted_before) {
            return Held::Covered;
        }
        if index == self.before.0 {
            return self.before.1.map_or(Held::Covered, Held::Term);
        }
        let k = (index - self.before.0 - 1) as usize;
        self.ids.get(k).map_or(Held::Missing, |&id| Held::Entry(id))
    }

    /// Whether this log holds `rec` at `index`; the leader and what it is
    /// go into the violation.
    fn check_holds(
        &self,
        index: u64,
        rec: &CommittedRec,
        node: u64,
        term: u64,
        when: &str,
    ) -> Result<(), Violation> {
        let what = match self.held(index) {
            Held::Covered => return Ok(()),
            Held::Term(t) if t == rec.id.term => return Ok(()),
            Held::Entry(id) if id == rec.id => return Ok(()),
            Held::Term(t) => format!("a snapshot of term {t}"),
            Held::Entry(id) => format!("{id:?}"),
            Held::Missing => format!(
                "no entry (its log ends at {})",
                self.before.0 + self.ids.len() as u64
            ),
        };
        Err(Violation::new(
            "leader_completeness",
            format!(
                "node {node}, leader of term {term}, {when} {what} at {index}, where {:?} was \
                 committed (seen committed by node {} in term {})",
                rec.id, rec.observed_by, rec.observed_term
            ),
        ))
    }

    /// Whether this log, of the leader `node` of `term`, holds every entry
    /// recorded from `low` on as committed before `term`.
    fn check_complete(
        &self,
        committed: &CommittedLog,
        low: u64,
        node: u64,
        term: u64,
        when: &str,
    ) -> Result<(), Violation> {
        for (index, rec) in committed.from(low) {
            if rec.observed_term < term {
                self.check_holds(index, rec, node, term, when)?;
            }
        }
        Ok(())
    }
}

/// A leader and its log when it became leader.
#[derive(Debug, Clone)]
struct LeaderRec {
    node: u64,
    log: IdLog,
}

/// Every leader of the run, by term.
#[derive(Debug, Default)]
pub(super) struct Leaders {
    by_term: BTreeMap<u64, LeaderRec>,
}

impl Leaders {
    /// How many terms had a leader.
    pub fn len(&self) -> usize {
        self.by_term.len()
    }

    /// The highest term that had a leader.
    pub fn max_term(&self) -> Option<u64> {
        self.by_term.keys().next_back().copied()
    }

    /// The leader of `term`, if any.
    pub fn leader_of(&self, term: u64) -> Option<u64> {
        self.by_term.get(&term).map(|r| r.node)
    }

    /// `node` is leader of its current term: checks it is the only one, and,
    /// the first time, that its log holds every entry committed before.
    /// Returns the term when `node` is a leader not seen before.
    pub fn observe<N: Observed + ?Sized>(
        &mut self,
        node: &N,
        committed: &CommittedLog,
    ) -> Result<Option<u64>, Violation> {
        let term = node.current_term();
        match self.by_term.get(&term) {
            Some(other) if other.node == node.id() => return Ok(None),
            Some(other) => {
                return Err(Violation::new(
                    "election_safety",
                    format!(
                        "nodes {} and {} are both leaders of term {term}",
                        other.node,
                        node.id()
                    ),
                ));
            }
            None => {}
        }
        let log = IdLog::of(&LogView::whole(node)?);
        log.check_complete(
            committed,
            log.before.0,
            node.id(),
            term,
            "became leader with",
        )?;
        self.by_term.insert(
            term,
            LeaderRec {
                node: node.id(),
                log,
            },
        );
        Ok(Some(term))
    }

    /// `rec` was just recorded committed at `index`, in `rec.observed_term`
    /// (before: in `was`, or not at all): every leader of a term in between
    /// must have held it when it became leader.
    pub fn check_recorded(
        &self,
        index: u64,
        rec: &CommittedRec,
        was: Option<u64>,
    ) -> Result<(), Violation> {
        let low = rec.observed_term + 1;
        let terms = match was {
            Some(was) if was < low => return Ok(()),
            Some(was) => self.by_term.range(low..=was),
            None => self.by_term.range(low..),
        };
        for (&term, leader) in terms {
            leader
                .log
                .check_holds(index, rec, leader.node, term, "became leader with")?;
        }
        Ok(())
    }

    /// `view` is (part of) the live log of `node`, leader of `term`: it
    /// must hold every entry recorded from the view's start on as
    /// committed before `term`.
    pub fn check_live(
        &self,
        view: &LogView,
        term: u64,
        committed: &CommittedLog,
    ) -> Result<(), Violation> {
        let log = IdLog::of(view);
        log.check_complete(committed, view.before.0, view.node, term, "has")
    }
}

#[cfg(test)]
mod tests {
    use super::super::observed::fake::{FakeNode, entry};
    use super::*;

    /// Entries 6..=`last` of term 2 recorded committed, seen in `term`.
    fn committed_up_to(last: u64, term: u64) -> CommittedLog {
        let mut log = CommittedLog::default();
        for i in 6..=last {
            let id = EntryId::of(&entry(i, 2, &format!("{i}@2")));
            log.observe(1, i, id, term).unwrap();
        }
        log
    }

    #[test]
    fn two_leaders_of_one_term_are_rejected() {
        let committed = CommittedLog::default();
        let mut leaders = Leaders::default();
        let a = FakeNode::new(1, 3, (5, 5), &[]).leader();
        let b = FakeNode::new(2, 3, (5, 5), &[]).leader();
        assert_eq!(leaders.observe(&a, &committed), Ok(Some(3)));
        assert_eq!(leaders.observe(&a, &committed), Ok(None));
        let v = leaders.observe(&b, &committed).unwrap_err();
        assert_eq!(v.checker, "election_safety");
    }

    #[test]
    fn a_leader_missing_an_entry_committed_before_is_rejected() {
        let committed = committed_up_to(10, 2);
        let mut leaders = Leaders::default();
        // Its log ends at 9.
        let c = FakeNode::new(3, 3, (5, 5), &[2, 2, 2, 2]).leader();
        let v = leaders.observe(&c, &committed).unwrap_err();
        assert_eq!(v.checker, "leader_completeness");
        assert!(v.detail.contains("no entry"), "{}", v.detail);
        // A leader of the term the entries were seen committed in need not
        // have them: they may have been committed after it was elected.
        let d = FakeNode::new(4, 2, (5, 5), &[2, 2]).leader();
        assert_eq!(leaders.observe(&d, &committed), Ok(Some(2)));
    }

    #[test]
    fn every_committed_entry_is_checked_not_only_the_newest() {
        let committed = committed_up_to(20, 2);
        let mut leaders = Leaders::default();
        // It holds the newest committed entry but another one at 8.
        let mut c = FakeNode::new(3, 3, (5, 5), &[2; 15]).leader();
        c.set(entry(8, 2, "other"));
        let v = leaders.observe(&c, &committed).unwrap_err();
        assert_eq!(v.checker, "leader_completeness");
        assert!(v.detail.contains("at 8"), "{}", v.detail);
    }

    #[test]
    fn a_leader_that_compacted_committed_entries_holds_them() {
        let committed = committed_up_to(20, 2);
        let mut leaders = Leaders::default();
        let c = FakeNode::new(3, 3, (15, 2), &[2; 5]).leader();
        assert_eq!(leaders.observe(&c, &committed), Ok(Some(3)));
        // A snapshot of another term at a committed index does not.
        let d = FakeNode::new(4, 4, (15, 3), &[2; 5]).leader();
        let v = leaders.observe(&d, &committed).unwrap_err();
        assert_eq!(v.checker, "leader_completeness");
        assert!(v.detail.contains("snapshot of term 3"), "{}", v.detail);
    }

    #[test]
    fn an_entry_recorded_after_a_later_leader_was_elected_is_checked_against_it() {
        let mut committed = committed_up_to(9, 2);
        let mut leaders = Leaders::default();
        let c = FakeNode::new(3, 5, (5, 5), &[2, 2, 2, 2]).leader();
        assert_eq!(leaders.observe(&c, &committed), Ok(Some(5)));
        // Entry 10 is then seen committed by a node still in term 3: it was
        // committed in term 3 at the latest, before the leader of term 5.
        let id = EntryId::of(&entry(10, 2, "10@2"));
        committed.observe(2, 10, id, 3).unwrap();
        let rec = *committed.get(10).expect("recorded");
        let v = leaders.check_recorded(10, &rec, None).unwrap_err();
        assert_eq!(v.checker, "leader_completeness");
        assert!(v.detail.contains("term 5"), "{}", v.detail);
        // Seen first in term 7, then in term 4: only leaders of terms 5..=7
        // are concerned by the second sighting.
        let mut committed = committed_up_to(9, 2);
        committed.observe(2, 10, id, 7).unwrap();
        let lowered = committed.observe(2, 10, id, 4).unwrap();
        assert_eq!(
            lowered,
            super::super::committed::Recorded::Lowered { was: 7 }
        );
        let rec = *committed.get(10).expect("recorded");
        leaders
            .check_recorded(10, &rec, Some(7))
            .expect_err("the leader of term 5 lacks it");
        let rec6 = CommittedRec {
            observed_term: 5,
            ..rec
        };
        leaders
            .check_recorded(10, &rec6, Some(7))
            .expect("no leader of terms 6..=7");
    }

    #[test]
    fn a_leader_that_loses_a_committed_entry_later_is_rejected() {
        let committed = committed_up_to(10, 2);
        let mut leaders = Leaders::default();
        let mut c = FakeNode::new(3, 3, (5, 5), &[2; 5]).leader();
        assert_eq!(leaders.observe(&c, &committed), Ok(Some(3)));
        leaders
            .check_live(&LogView::whole(&c).unwrap(), 3, &committed)
            .expect("holds them all");
        c.truncate(9);
        let v = leaders
            .check_live(&LogView::whole(&c).unwrap(), 3, &committed)
            .unwrap_err();
        assert_eq!(v.checker, "leader_completeness");
        assert!(v.detail.contains("has no entry"), "{}", v.detail);
        // Checked from an index on, as after a disk write there.
        let v = leaders
            .check_live(&LogView::capture(&c, 8).unwrap(), 3, &committed)
            .unwrap_err();
        assert_eq!(v.checker, "leader_completeness");
    }
}
