//! `Checkers`: Raft's safety properties (Raft paper §5.2–§5.4, Figure 3),
//! each a named check over every node, run as the simulation goes and over
//! every node's whole log at checkpoints.
//!
//! | checker | property | module |
//! |---|---|---|
//! | `election_safety` | at most one leader per term, over the whole run | `leaders` |
//! | `leader_completeness` | an entry committed in term t is in the log of every leader of a term after t, from its election on | `leaders` |
//! | `log_matching` | two logs with an entry of the same index and term agree on everything up to it | `matching` |
//! | `committed_stable` | an entry once committed never changes on any node that committed it, and a node's commit index never moves back | `committed` |
//! | `state_machine_safety` | no two nodes apply different entries (or states) at one index | `applied` |
//! | `apply_order` | a node applies committed entries once each, in index order (checked by `Host`) | |
//! | `linearizable_reads` | an answered read returns a state some node applied, with no write not yet proposed, at or past every write acknowledged and every read answered before it was issued | `reads` |
//! | `read_index` | a read's `ReadState` index covers every write acknowledged before the read was issued, and the host answers at or past it | `reads` |
//!
//! When each runs:
//!
//! | event | checks |
//! |---|---|
//! | any input to a node (`observe_role`) | `election_safety`; a new leader's whole log against every entry committed before its term (`leader_completeness`) |
//! | a node applies (`observe_applied`) | the entries against the record (`committed_stable`, which records them) and against what others applied (`state_machine_safety`); a snapshot against both |
//! | a node writes entries to its disk (`observe_persisted`) | remembered for the step's check; a leader's log from the lowest index written on (`leader_completeness`) |
//! | every step (`check_hosts`) | commit index monotonic; each node's newly committed entries, and its rewritten ones at or below its commit index (`committed_stable`); `log_matching` over each node's latest `window` entries |
//! | a client issues a read (`read_issued`) | records the highest index acknowledged committed (every node's commit index, the record's, the applied history's) and the latest read answered |
//! | a host answers a read (`observe_read`) | `linearizable_reads`, `read_index` against what was recorded at issue and the applied history (after that Ready's apply checks) |
//! | every `checkpoint_every` steps, the end of a run, before a node's disk is destroyed (`check_full`) | over every node's whole log: `committed_stable` (with the snapshot a compacted log starts after), `log_matching` for every pair and against the record of committed entries, `leader_completeness` for every current leader |
//!
//! `committed_stable` holds a node to the record only up to its own commit
//! index: a node cut off from the leader may still hold a stale entry at an
//! index committed elsewhere, until the leader overwrites it. Past its
//! commit index, `log_matching` against the record still rejects a log
//! that holds a committed entry but not the committed entries below it.
//!
//! Recording a committed entry also checks it against every leader of a
//! later term already elected, as that leader's log was when it became
//! leader: so the order in which the simulation happens to observe commits
//! and elections does not matter.
//!
//! The history (leaders by term with their logs at election, committed and
//! applied entries by index) spans the whole run, so a violation is caught
//! whenever its two sides are observed, however far apart. The per-step
//! work is incremental so that a run stays cheap (every step, whole logs
//! would make a run about seven times slower); the checkpoints bound how
//! long a change the incremental checks cannot see (one in a node's memory
//! that never reaches its disk, or a log mismatch below the window) goes
//! unnoticed, and the end of the run catches whatever is still there.
//!
//! Checkers read nodes through `Observed`, so each can be run on a
//! hand-built history in its unit tests; a new checker is a module with its
//! own history, fed by a new `observe_*` hook or run from `check_hosts` /
//! `check_full`. `reads` is one: its module doc defines real time and an
//! acknowledged write.

mod applied;
mod committed;
mod leaders;
mod matching;
mod observed;
mod reads;

use kvproto::eraftpb::Entry;

use self::applied::AppliedLog;
use self::committed::{CommitMarks, CommittedLog, Recorded};
use self::leaders::Leaders;
use self::matching::{LogView, Windows, check_against_record, check_pair};
pub use self::observed::Observed;
use self::reads::ReadLog;
use super::node::{Applied, ReadAnswer, chain_digest};

/// A broken property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The checker that caught it.
    pub checker: &'static str,
    /// What was seen.
    pub detail: String,
}

impl Violation {
    /// A violation of `checker`.
    pub fn new(checker: &'static str, detail: String) -> Self {
        Violation { checker, detail }
    }
}

/// What identifies an entry's content: its term and a hash of everything in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EntryId {
    term: u64,
    hash: u64,
}

impl EntryId {
    fn of(e: &Entry) -> Self {
        EntryId {
            term: e.term,
            hash: chain_digest(0, e),
        }
    }
}

/// How often the checkers look how far.
#[derive(Debug, Clone, Copy)]
pub struct CheckConfig {
    /// Latest entries of each node compared by `log_matching` every step.
    pub window: u64,
    /// Steps between checks of every node's whole log; 0 checks the whole
    /// logs only when `check_full` is called.
    pub checkpoint_every: u64,
}

/// The safety checkers and the history they compare against.
#[derive(Debug)]
pub struct Checkers {
    config: CheckConfig,
    leaders: Leaders,
    committed: CommittedLog,
    marks: CommitMarks,
    applied: AppliedLog,
    windows: Windows,
    reads: ReadLog,
    full_checks: u64,
}

impl Checkers {
    /// Checkers with the given schedule.
    pub fn new(config: CheckConfig) -> Self {
        Checkers {
            config: CheckConfig {
                window: config.window.max(1),
                ..config
            },
            leaders: Leaders::default(),
            committed: CommittedLog::default(),
            marks: CommitMarks::default(),
            applied: AppliedLog::default(),
            windows: Windows::default(),
            reads: ReadLog::default(),
            full_checks: 0,
        }
    }

    /// How many terms had a leader.
    pub fn elections(&self) -> usize {
        self.leaders.len()
    }

    /// The highest term that had a leader.
    pub fn max_leader_term(&self) -> Option<u64> {
        self.leaders.max_term()
    }

    /// The leader of `term`, if one was seen.
    pub fn leader_of(&self, term: u64) -> Option<u64> {
        self.leaders.leader_of(term)
    }

    /// How many entries are known committed.
    pub fn committed_count(&self) -> usize {
        self.committed.len()
    }

    /// The highest index known applied.
    pub fn max_applied(&self) -> u64 {
        self.applied.max_index()
    }

    /// How many reads were answered (and checked).
    pub fn reads_answered(&self) -> u64 {
        self.reads.answered()
    }

    /// Read `id` was handed to node `node` at `step`; `nodes` are every
    /// host, whose commit indexes count as acknowledged writes.
    pub fn read_issued<N: Observed + ?Sized>(
        &mut self,
        id: u64,
        node: u64,
        step: u64,
        nodes: &[&N],
    ) -> Result<(), Violation> {
        let acked = nodes
            .iter()
            .map(|n| n.committed())
            .chain([self.committed.max_index(), self.applied.max_index()])
            .max()
            .unwrap_or(0);
        self.reads.issue(id, node, step, acked)
    }

    /// `linearizable_reads` and `read_index` for a read `node` answered at
    /// `step`, when `proposed` client payloads had been proposed. What the
    /// node applied in the same Ready must be observed first.
    pub fn observe_read(
        &mut self,
        node: u64,
        step: u64,
        answer: &ReadAnswer,
        proposed: u64,
    ) -> Result<(), Violation> {
        let applied = &self.applied;
        self.reads
            .answer(node, step, answer, proposed, |i| applied.digest_at(i))
    }

    /// How many times every node's whole log was checked.
    pub fn full_checks(&self) -> u64 {
        self.full_checks
    }

    /// `election_safety` and `leader_completeness`, after any input to
    /// `node`. Returns `Some(term)` when `node` is a leader not seen before.
    pub fn observe_role<N: Observed + ?Sized>(
        &mut self,
        node: &N,
    ) -> Result<Option<u64>, Violation> {
        if !node.is_leader() {
            return Ok(None);
        }
        self.leaders.observe(node, &self.committed)
    }

    /// `state_machine_safety` and `committed_stable` for what `node` just
    /// applied.
    pub fn observe_applied<N: Observed + ?Sized>(
        &mut self,
        node: &N,
        applied: &[Applied],
    ) -> Result<(), Violation> {
        let node_id = node.id();
        // The node's term now bounds the term the entries were committed in.
        let term = node.current_term().max(1);
        for a in applied {
            match a {
                Applied::Entry { entry, digest, .. } => {
                    let id = EntryId::of(entry);
                    self.record(node_id, entry.index, id, term)?;
                    self.applied.entry(node_id, entry.index, id, *digest)?;
                }
                Applied::Snapshot {
                    index,
                    term: snap_term,
                    digest,
                    ..
                } => {
                    self.committed.check_snapshot(node_id, *index, *snap_term)?;
                    self.applied
                        .snapshot(node_id, *index, *snap_term, *digest)?;
                }
            }
        }
        Ok(())
    }

    /// `node` wrote entries from `index` on to its disk (replacing any it
    /// held there). A leader must still hold every entry committed before
    /// its term; the rest is checked at the end of the step.
    pub fn observe_persisted<N: Observed + ?Sized>(
        &mut self,
        node: &N,
        index: u64,
    ) -> Result<(), Violation> {
        self.marks.rewritten(node.id(), index);
        if node.is_leader() {
            let view = LogView::capture(node, index)?;
            self.leaders
                .check_live(&view, node.current_term(), &self.committed)?;
        }
        Ok(())
    }

    /// The checks of every step (after step `step`), and of every node's
    /// whole log when `step` is a checkpoint.
    pub fn check_hosts<N: Observed + ?Sized>(
        &mut self,
        nodes: &[&N],
        step: u64,
    ) -> Result<(), Violation> {
        for &node in nodes {
            if let Some((low, high)) = self.marks.due(node)? {
                self.check_committed(node, low, high)?;
            }
        }
        self.windows
            .check(nodes, self.config.window, &self.committed)?;
        let every = self.config.checkpoint_every;
        if every > 0 && step.is_multiple_of(every) {
            self.check_full(nodes)?;
        }
        Ok(())
    }

    /// `committed_stable`, `log_matching` and `leader_completeness` over
    /// every node's whole log.
    pub fn check_full<N: Observed + ?Sized>(&mut self, nodes: &[&N]) -> Result<(), Violation> {
        self.full_checks += 1;
        let mut views = Vec::with_capacity(nodes.len());
        for &node in nodes {
            let view = LogView::whole(node)?;
            let term = node.current_term().max(1);
            if let (index, Some(snap_term)) = view.before {
                self.committed.check_snapshot(node.id(), index, snap_term)?;
            }
            let committed = node.committed();
            for e in view.entries.iter().take_while(|e| e.index <= committed) {
                self.record(node.id(), e.index, EntryId::of(e), term)?;
            }
            if committed > view.last() {
                return Err(lost_committed(node.id(), committed, view.last()));
            }
            check_against_record(&view, committed, &self.committed)?;
            views.push(view);
        }
        for (i, a) in views.iter().enumerate() {
            for b in &views[i + 1..] {
                check_pair(a, b, &self.committed)?;
            }
        }
        for (&node, view) in nodes.iter().zip(&views) {
            if node.is_leader() {
                self.leaders
                    .check_live(view, node.current_term(), &self.committed)?;
            }
        }
        Ok(())
    }

    /// Compares `node`'s committed entries `[low, high]` with the record.
    fn check_committed<N: Observed + ?Sized>(
        &mut self,
        node: &N,
        low: u64,
        high: u64,
    ) -> Result<(), Violation> {
        let (_, last) = node.log_bounds();
        if high > last {
            return Err(lost_committed(node.id(), high, last));
        }
        let entries = node
            .entries(low, high + 1)
            .map_err(|e| Violation::new("committed_stable", e))?;
        let term = node.current_term().max(1);
        for e in &entries {
            self.record(node.id(), e.index, EntryId::of(e), term)?;
        }
        Ok(())
    }

    /// Node `node`, in `term`, holds `id` committed at `index`: checks it
    /// against the record and, if that learns something, against the
    /// leaders elected since.
    fn record(&mut self, node: u64, index: u64, id: EntryId, term: u64) -> Result<(), Violation> {
        let was = match self.committed.observe(node, index, id, term)? {
            Recorded::Known => return Ok(()),
            Recorded::New => None,
            Recorded::Lowered { was } => Some(was),
        };
        let rec = *self.committed.get(index).expect("just recorded");
        self.leaders.check_recorded(index, &rec, was)
    }
}

fn lost_committed(node: u64, committed: u64, last: u64) -> Violation {
    Violation::new(
        "committed_stable",
        format!("node {node} has committed up to {committed}, but its log ends at {last}"),
    )
}

#[cfg(test)]
mod tests {
    use super::observed::fake::{FakeNode, entry};
    use super::*;

    fn checkers() -> Checkers {
        Checkers::new(CheckConfig {
            window: 24,
            checkpoint_every: 0,
        })
    }

    #[test]
    fn a_consistent_history_passes() {
        let mut c = checkers();
        let mut terms = vec![2; 10];
        terms.extend([3; 30]);
        let mut a = FakeNode::new(1, 3, (5, 5), &terms)
            .committed_to(40)
            .leader();
        // A follower behind, and one still holding a stale tail of term 2
        // past what it committed, which the leader will overwrite.
        let b = FakeNode::new(2, 3, (5, 5), &terms[..25]).committed_to(30);
        let s = FakeNode::new(3, 2, (5, 5), &[2; 15]).committed_to(15);
        assert_eq!(c.observe_role(&a), Ok(Some(3)));
        c.check_hosts(&[&a, &b, &s], 1).unwrap();
        c.check_full(&[&a, &b, &s]).unwrap();
        // A leader of term 4 that compacted what it applied.
        a.leader = false;
        let l = FakeNode::new(4, 4, (35, 3), &[3; 5])
            .committed_to(40)
            .leader();
        assert_eq!(c.observe_role(&l), Ok(Some(4)));
        c.check_hosts(&[&a, &b, &s, &l], 2).unwrap();
        c.check_full(&[&a, &b, &s, &l]).unwrap();
        assert_eq!(c.committed_count(), 35);
        assert_eq!(c.full_checks(), 2);
    }

    #[test]
    fn a_divergent_committed_entry_is_rejected() {
        let mut c = checkers();
        let a = FakeNode::new(1, 2, (5, 5), &[2; 10]).committed_to(15);
        c.check_hosts(&[&a], 1).unwrap();
        let mut b = FakeNode::new(2, 3, (5, 5), &[2; 10]).committed_to(15);
        b.set(entry(12, 2, "other"));
        let v = c.check_hosts(&[&b], 2).unwrap_err();
        assert_eq!(v.checker, "committed_stable");
        assert!(v.detail.contains("at 12"), "{}", v.detail);
    }

    #[test]
    fn a_committed_entry_changed_below_the_window_is_caught_at_a_checkpoint() {
        let mut c = Checkers::new(CheckConfig {
            window: 24,
            checkpoint_every: 10,
        });
        let mut a = FakeNode::new(1, 2, (0, 0), &[2; 100]).committed_to(100);
        for step in 1..9 {
            c.check_hosts(&[&a], step).unwrap();
        }
        // Entry 10 changes in memory, far below the latest entries; the
        // steps in between do not see it, the checkpoint does.
        a.set(entry(10, 2, "changed"));
        c.check_hosts(&[&a], 9).unwrap();
        let v = c.check_hosts(&[&a], 10).unwrap_err();
        assert_eq!(v.checker, "committed_stable");
        assert!(v.detail.contains("at 10"), "{}", v.detail);
    }

    #[test]
    fn a_committed_entry_rewritten_on_disk_is_caught_at_once() {
        let mut c = checkers();
        let mut a = FakeNode::new(1, 2, (0, 0), &[2; 100]).committed_to(100);
        c.check_hosts(&[&a], 1).unwrap();
        a.set(entry(10, 2, "changed"));
        c.observe_persisted(&a, 10).unwrap();
        let v = c.check_hosts(&[&a], 2).unwrap_err();
        assert_eq!(v.checker, "committed_stable");
        assert!(v.detail.contains("at 10"), "{}", v.detail);
    }

    #[test]
    fn a_commit_index_moving_back_or_past_the_log_is_rejected() {
        let mut c = checkers();
        let mut a = FakeNode::new(1, 2, (5, 5), &[2; 10]).committed_to(15);
        c.check_hosts(&[&a], 1).unwrap();
        a.committed = 12;
        let v = c.check_hosts(&[&a], 2).unwrap_err();
        assert_eq!(v.checker, "committed_stable");
        assert!(v.detail.contains("went back"), "{}", v.detail);
        // After a restart it may (the node relearns it from the leader).
        a.incarnation += 1;
        c.check_hosts(&[&a], 3).unwrap();
        a.committed = 16;
        let v = c.check_hosts(&[&a], 4).unwrap_err();
        assert_eq!(v.checker, "committed_stable");
        assert!(v.detail.contains("log ends at 15"), "{}", v.detail);
    }

    #[test]
    fn a_snapshot_of_another_term_at_a_committed_index_is_rejected() {
        let mut c = checkers();
        let a = FakeNode::new(1, 2, (5, 5), &[2; 10]).committed_to(15);
        c.check_hosts(&[&a], 1).unwrap();
        let b = FakeNode::new(2, 3, (12, 3), &[3; 3]).committed_to(12);
        let v = c.check_full(&[&a, &b]).unwrap_err();
        assert_eq!(v.checker, "committed_stable");
        assert!(v.detail.contains("snapshot at 12"), "{}", v.detail);
    }

    #[test]
    fn a_log_mismatch_below_the_window_is_caught_at_a_checkpoint() {
        let mut c = Checkers::new(CheckConfig {
            window: 24,
            checkpoint_every: 5,
        });
        // Nothing committed past the bootstrap snapshot: only log matching
        // can tell these logs apart.
        let a = FakeNode::new(1, 2, (5, 5), &[2; 100]);
        let mut b = FakeNode::new(2, 2, (5, 5), &[2; 100]);
        b.set(entry(30, 2, "other"));
        for step in 1..5 {
            c.check_hosts(&[&a, &b], step).unwrap();
        }
        let v = c.check_hosts(&[&a, &b], 5).unwrap_err();
        assert_eq!(v.checker, "log_matching");
        assert!(v.detail.contains("differ at 30"), "{}", v.detail);
    }

    #[test]
    fn a_leader_missing_an_earlier_committed_entry_is_rejected() {
        let mut c = checkers();
        let a = FakeNode::new(1, 2, (5, 5), &[2; 10]).committed_to(15);
        c.check_hosts(&[&a], 1).unwrap();
        let l = FakeNode::new(3, 3, (5, 5), &[2; 8]).leader();
        let v = c.observe_role(&l).unwrap_err();
        assert_eq!(v.checker, "leader_completeness");
        assert!(v.detail.contains("at 14"), "{}", v.detail);
    }

    #[test]
    fn a_commit_seen_after_a_later_election_is_checked_against_that_leader() {
        let mut c = checkers();
        let l = FakeNode::new(3, 4, (5, 5), &[2; 8]).leader();
        assert_eq!(c.observe_role(&l), Ok(Some(4)));
        // A node in term 2 then holds entries up to 15 committed.
        let a = FakeNode::new(1, 2, (5, 5), &[2; 10]).committed_to(15);
        let v = c.check_hosts(&[&a], 1).unwrap_err();
        assert_eq!(v.checker, "leader_completeness");
        assert!(v.detail.contains("leader of term 4"), "{}", v.detail);
        assert_eq!(c.leader_of(4), Some(3));
    }

    #[test]
    fn a_leader_losing_a_committed_entry_is_rejected() {
        let mut c = checkers();
        let a = FakeNode::new(1, 2, (5, 5), &[2; 10]).committed_to(15);
        c.check_hosts(&[&a], 1).unwrap();
        let mut l = FakeNode::new(3, 3, (5, 5), &[2; 10]).leader();
        assert_eq!(c.observe_role(&l), Ok(Some(3)));
        // Its log is cut and refilled with entries of its own term, and
        // written to disk: caught at once.
        l.truncate(11);
        l.entries.extend((11..=15).map(|i| entry(i, 3, "new")));
        let v = c.observe_persisted(&l, 11).unwrap_err();
        assert_eq!(v.checker, "leader_completeness");
        // The same change never written to disk: caught at a checkpoint.
        let v = c.check_full(&[&a, &l]).unwrap_err();
        assert_eq!(v.checker, "leader_completeness");
    }
}
