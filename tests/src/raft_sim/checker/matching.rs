//! `log_matching`: if two logs hold an entry with the same index and term,
//! they are identical up to it (Raft paper §5.3).
//!
//! A `LogView` is a copy of one node's log, or of its latest entries, with
//! the term of the entry just before it. `check_pair` finds the highest
//! index where two views agree on the term and compares everything below,
//! down to the higher of the two starts. Where one node compacted its log
//! (its view starts right after its snapshot), the entries it compacted were
//! committed, so the other node's entries there must be the committed ones
//! in the record.
//!
//! `check_against_record` treats the record of committed entries as one
//! more log: a node holding a committed entry's index and term must hold
//! the committed entries below it, even where every node that committed
//! them has since compacted them or is gone.
//!
//! `Windows` runs the check every step over each node's latest entries,
//! re-reading a node's window only when a fingerprint of its terms changed;
//! `Checkers::check_full` runs it over every node's whole log at every
//! checkpoint and at the end of a run.

use std::collections::BTreeMap;

use kvproto::eraftpb::Entry;

use super::committed::CommittedLog;
use super::{EntryId, Observed, Violation};

/// A copy of (part of) one node's log.
#[derive(Debug, Clone)]
pub(super) struct LogView {
    pub node: u64,
    /// The index just before the first entry copied, and its term there.
    pub before: (u64, Option<u64>),
    /// Whether everything up to `before` is a compacted, committed prefix
    /// (the view is the whole log), rather than entries left out.
    pub compacted_before: bool,
    /// Entries from `before.0 + 1` on, contiguous.
    pub entries: Vec<Entry>,
}

impl LogView {
    /// `node`'s log from `low` (or its first index, if later) to its end.
    pub fn capture<N: Observed + ?Sized>(node: &N, low: u64) -> Result<LogView, Violation> {
        let (first, last) = node.log_bounds();
        let low = low.max(first);
        let entries = if low <= last {
            node.entries(low, last + 1)
                .map_err(|e| Violation::new("log_matching", e))?
        } else {
            Vec::new()
        };
        Ok(LogView {
            node: node.id(),
            before: (low - 1, node.entry_term(low - 1)),
            compacted_before: low == first,
            entries,
        })
    }

    /// The whole of `node`'s log.
    pub fn whole<N: Observed + ?Sized>(node: &N) -> Result<LogView, Violation> {
        Self::capture(node, 0)
    }

    pub fn last(&self) -> u64 {
        self.before.0 + self.entries.len() as u64
    }

    pub fn get(&self, index: u64) -> Option<&Entry> {
        let k = index.checked_sub(self.before.0 + 1)?;
        self.entries.get(k as usize)
    }

    /// The term at `index`, which may be `before`'s.
    pub fn term(&self, index: u64) -> Option<u64> {
        if index == self.before.0 {
            return self.before.1;
        }
        self.get(index).map(|e| e.term)
    }
}

/// `log_matching` for two views of two nodes.
pub(super) fn check_pair(
    a: &LogView,
    b: &LogView,
    committed: &CommittedLog,
) -> Result<(), Violation> {
    let low = a.before.0.max(b.before.0);
    let high = a.last().min(b.last());
    if low > high {
        return Ok(());
    }
    // The highest index where both hold an entry (or snapshot) of one term.
    let Some(matched) = (low..=high)
        .rev()
        .find(|&i| matches!((a.term(i), b.term(i)), (Some(x), Some(y)) if x == y))
    else {
        return Ok(());
    };
    for index in low..=matched {
        match (a.get(index), b.get(index)) {
            (Some(ea), Some(eb)) if ea != eb => {
                return Err(mismatch(a, b, matched, index, &short(ea), &short(eb)));
            }
            (Some(_), Some(_)) => {}
            // `low` is the start of one view: compare the terms there.
            _ => {
                if let (Some(ta), Some(tb)) = (a.term(index), b.term(index))
                    && ta != tb
                {
                    return Err(mismatch(
                        a,
                        b,
                        matched,
                        index,
                        &format!("term {ta}"),
                        &format!("term {tb}"),
                    ));
                }
            }
        }
    }
    // Below `low`, the view starting later compacted committed entries the
    // other still holds: those must be the committed ones.
    let (early, late) = if a.before.0 <= b.before.0 {
        (a, b)
    } else {
        (b, a)
    };
    if !late.compacted_before {
        return Ok(());
    }
    for index in early.before.0 + 1..=low {
        let (Some(e), Some(rec)) = (early.get(index), committed.get(index)) else {
            continue;
        };
        if EntryId::of(e) != rec.id {
            return Err(Violation::new(
                "log_matching",
                format!(
                    "nodes {} and {} agree on the term at {matched}, and node {} compacted its \
                     log up to {low}, but node {} has {} at {index} where {:?} was committed \
                     (seen by node {})",
                    early.node,
                    late.node,
                    late.node,
                    early.node,
                    short(e),
                    rec.id,
                    rec.observed_by
                ),
            ));
        }
    }
    Ok(())
}

fn mismatch(a: &LogView, b: &LogView, matched: u64, index: u64, ea: &str, eb: &str) -> Violation {
    Violation::new(
        "log_matching",
        format!(
            "nodes {} and {} hold entries of the same term at {matched}, but differ at \
             {index}: {ea} vs {eb}",
            a.node, b.node
        ),
    )
}

/// `log_matching` between `view` (a whole log) and the record of committed
/// entries: below the highest index where the view holds a committed
/// entry's term, every entry must be the committed one. (At or below the
/// node's own commit index `committed_stable` already compares them.)
pub(super) fn check_against_record(
    view: &LogView,
    node_committed: u64,
    committed: &CommittedLog,
) -> Result<(), Violation> {
    let low = view.before.0.max(node_committed) + 1;
    let Some(matched) = committed
        .between(low, view.last())
        .rev()
        .find(|(i, rec)| view.term(*i) == Some(rec.id.term))
        .map(|(i, _)| i)
    else {
        return Ok(());
    };
    for (index, rec) in committed.between(low, matched) {
        let Some(e) = view.get(index) else {
            continue;
        };
        if EntryId::of(e) != rec.id {
            return Err(Violation::new(
                "log_matching",
                format!(
                    "node {} holds the committed entry's term at {matched}, but has {} at \
                     {index} where {:?} was committed (seen by node {})",
                    view.node,
                    short(e),
                    rec.id,
                    rec.observed_by
                ),
            ));
        }
    }
    Ok(())
}

pub(super) fn short(e: &Entry) -> String {
    format!(
        "(index {}, term {}, {:?}, {:?})",
        e.index,
        e.term,
        e.entry_type(),
        String::from_utf8_lossy(&e.data)
    )
}

/// Each node's latest entries, re-read when they may have changed.
#[derive(Debug, Default)]
pub(super) struct Windows {
    /// By node: a fingerprint of the window's bounds and terms, and the window.
    views: BTreeMap<u64, (u64, LogView)>,
}

impl Windows {
    /// `log_matching` over the last `window` entries of every node, for
    /// each pair of which one changed since the last call.
    pub fn check<N: Observed + ?Sized>(
        &mut self,
        nodes: &[&N],
        window: u64,
        committed: &CommittedLog,
    ) -> Result<(), Violation> {
        let mut changed = Vec::with_capacity(nodes.len());
        for &node in nodes {
            changed.push(self.refresh(node, window)?);
        }
        for (i, a) in nodes.iter().enumerate() {
            for (j, b) in nodes.iter().enumerate().skip(i + 1) {
                if changed[i] || changed[j] {
                    check_pair(&self.views[&a.id()].1, &self.views[&b.id()].1, committed)?;
                }
            }
        }
        Ok(())
    }

    /// Re-reads `node`'s window if it may have changed; returns whether it
    /// did. The fingerprint covers the term of every entry in the window, so
    /// an entry replaced by one of another term anywhere in it is noticed.
    fn refresh<N: Observed + ?Sized>(&mut self, node: &N, window: u64) -> Result<bool, Violation> {
        let (first, last) = node.log_bounds();
        let low = first.max(last.saturating_sub(window) + 1);
        let mut fingerprint = (node.incarnation() << 1 | u64::from(node.is_up()))
            ^ first.rotate_left(20)
            ^ last.rotate_left(40);
        for i in low - 1..=last {
            let term = node.entry_term(i).unwrap_or(u64::MAX);
            fingerprint = (fingerprint ^ term).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
        if self
            .views
            .get(&node.id())
            .is_some_and(|(f, _)| *f == fingerprint)
        {
            return Ok(false);
        }
        let view = LogView::capture(node, low)?;
        self.views.insert(node.id(), (fingerprint, view));
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::super::observed::fake::{FakeNode, entry};
    use super::*;

    fn check(a: &FakeNode, b: &FakeNode, committed: &CommittedLog) -> Result<(), Violation> {
        check_pair(
            &LogView::whole(a).unwrap(),
            &LogView::whole(b).unwrap(),
            committed,
        )
    }

    #[test]
    fn logs_that_agree_or_diverge_after_their_last_common_term_pass() {
        let none = CommittedLog::default();
        let a = FakeNode::new(1, 3, (5, 5), &[5, 5, 6, 6, 6]);
        let b = FakeNode::new(2, 3, (5, 5), &[5, 5, 6, 7]);
        check(&a, &b, &none).expect("agree up to 8, differ at 9 only");
        let c = FakeNode::new(3, 3, (5, 5), &[5, 5, 6]);
        check(&a, &c, &none).expect("a prefix");
    }

    #[test]
    fn a_mismatch_below_the_latest_entries_is_rejected() {
        // 100 entries of one term; the two logs differ at index 10 only,
        // far below any window of their latest entries.
        let terms = vec![2; 100];
        let a = FakeNode::new(1, 2, (0, 0), &terms);
        let mut b = FakeNode::new(2, 2, (0, 0), &terms);
        b.set(entry(10, 2, "other"));
        let v = check(&a, &b, &CommittedLog::default()).unwrap_err();
        assert_eq!(v.checker, "log_matching");
        assert!(v.detail.contains("differ at 10"), "{}", v.detail);
    }

    #[test]
    fn a_snapshot_of_another_term_below_a_match_is_rejected() {
        // `b` compacted up to 8 (term 3); `a` holds 8 with term 2, yet both
        // hold 9 with term 3.
        let a = FakeNode::new(1, 3, (5, 5), &[2, 2, 2, 3]);
        let b = FakeNode::new(2, 3, (8, 3), &[3]);
        let v = check(&a, &b, &CommittedLog::default()).unwrap_err();
        assert_eq!(v.checker, "log_matching");
        assert!(v.detail.contains("differ at 8"), "{}", v.detail);
    }

    #[test]
    fn entries_another_node_compacted_must_be_the_committed_ones() {
        let mut committed = CommittedLog::default();
        for i in 1..=50 {
            committed
                .observe(2, i, EntryId::of(&entry(i, 2, &format!("{i}@2"))), 2)
                .unwrap();
        }
        // `b` compacted up to 50; `a` holds 1..60 uncommitted, agreeing with
        // `b` from 50 on but not at 20.
        let mut a = FakeNode::new(1, 2, (0, 0), &[2; 60]);
        a.set(entry(20, 2, "stale"));
        let b = FakeNode::new(2, 2, (50, 2), &[2; 10]).committed_to(60);
        let v = check(&a, &b, &committed).unwrap_err();
        assert_eq!(v.checker, "log_matching");
        assert!(v.detail.contains("at 20"), "{}", v.detail);
        // Only a compacted prefix is known committed: a view that merely
        // leaves the early entries out proves nothing about them.
        let window = LogView::capture(&b, 55).unwrap();
        check_pair(&LogView::whole(&a).unwrap(), &window, &committed)
            .expect("a window says nothing below itself");
    }

    #[test]
    fn a_log_disagreeing_with_the_record_below_a_committed_entry_is_rejected() {
        let mut committed = CommittedLog::default();
        for i in 6..=50 {
            committed
                .observe(2, i, EntryId::of(&entry(i, 2, &format!("{i}@2"))), 2)
                .unwrap();
        }
        // No other log left to compare with: `a` committed up to 10 only,
        // holds committed entry 40, but a stale entry at 20.
        let mut a = FakeNode::new(1, 2, (5, 5), &[2; 45]).committed_to(10);
        a.set(entry(20, 2, "stale"));
        let v = check_against_record(&LogView::whole(&a).unwrap(), a.committed, &committed)
            .unwrap_err();
        assert_eq!(v.checker, "log_matching");
        assert!(v.detail.contains("at 20"), "{}", v.detail);
        // A stale tail of an older term past its commit index is allowed.
        let mut terms = vec![2; 10];
        terms.extend([1; 35]);
        let b = FakeNode::new(2, 2, (5, 5), &terms).committed_to(10);
        check_against_record(&LogView::whole(&b).unwrap(), b.committed, &committed)
            .expect("no committed term held past its commit index");
    }
}
