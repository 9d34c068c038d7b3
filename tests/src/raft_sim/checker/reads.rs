//! `linearizable_reads`: every answered read returns a state of the
//! committed history no older than what was acknowledged before the read
//! was issued, and no newer than what exists when it is answered.
//!
//! Real time is the order in which the simulation does things: its step
//! counter, and within a step the order it runs its phases and hosts in (it
//! is sequential, so "before" is exact). A read is *issued* when the client
//! hands it to a node (`RawNode::read_index`) and *answered* when a host
//! serves it with its state machine (`ReadAnswer`).
//!
//! A write is *acknowledged* once some node has seen it committed: it was
//! at or below a node's commit index (in memory while running, on disk
//! while crashed), or a node applied it. When a read is issued, the writes
//! acknowledged before it are every index up to the highest of: every
//! host's commit index at that moment, the highest index in the record of
//! committed entries (every entry any node was seen holding committed, at
//! the end of a step or when it applied it, over the whole run, so nodes
//! since crashed or destroyed count), and the highest index any node
//! applied. A client learns that its write committed no earlier than some
//! node does. Every log entry counts as a write (no-ops and conf changes
//! too): the state a read returns is the applied prefix of the log, so it
//! includes them all exactly when its index is at or past that bound.
//!
//! `ReadLog` takes at issue the two lower bounds a read must meet, and
//! checks each answer:
//! 1. It is a state some node reached by applying the committed log: the
//!    state machine digest at the answered index is the one recorded for
//!    that index (`AppliedLog`), which exists only once a node applied it:
//!    no read returns a state from the future.
//! 2. It holds no more client payloads than were proposed when it was
//!    answered: nothing not yet proposed is visible.
//! 3. Its index is at or past every write acknowledged before the read was
//!    issued (no stale read).
//! 4. Its index is at or past the state of every read answered before it
//!    was issued (reads do not go back in time).
//! 5. (`read_index`) The read index the node handed out for it covers
//!    every write acknowledged before it was issued, and the state is at or
//!    past the read index: the core's and the host's contract, which makes
//!    3 hold. Checked after 1 to 4, so it names a read whose state was
//!    right but whose read index was not.
//!
//! A read never answered (lost with its node's leadership, a crash or the
//! network) is fine: the client gives up. Only the first answer counts: a
//! duplicated request may be answered again, later, and that later answer
//! reaches no client.

use std::collections::BTreeMap;

use super::Violation;
use crate::raft_sim::node::ReadAnswer;

/// What a read must see, fixed when it is issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Issued {
    /// The node it was handed to.
    pub node: u64,
    /// The step it was issued at.
    pub step: u64,
    /// The highest index acknowledged committed before it was issued.
    pub acked: u64,
    /// The latest state a read answered before it was issued returned:
    /// (that read's id, its answer step, its index).
    pub after: Option<(u64, u64, u64)>,
}

/// The reads issued and the latest answered state.
#[derive(Debug, Default)]
pub(super) struct ReadLog {
    /// Reads issued and not answered yet, by id.
    pending: BTreeMap<u64, Issued>,
    /// Ids below this were issued.
    next_id: u64,
    /// The answered read with the highest index: (id, answer step, index).
    latest: Option<(u64, u64, u64)>,
    answered: u64,
}

impl ReadLog {
    /// How many reads were answered.
    pub fn answered(&self) -> u64 {
        self.answered
    }

    /// Read `id` (ids are issued in increasing order) was handed to `node`
    /// at `step`, when the highest acknowledged index was `acked`.
    pub fn issue(&mut self, id: u64, node: u64, step: u64, acked: u64) -> Result<(), Violation> {
        if id < self.next_id {
            return Err(Violation::new(
                "linearizable_reads",
                format!("read {id} issued twice, or after read {}", self.next_id - 1),
            ));
        }
        self.next_id = id + 1;
        let issued = Issued {
            node,
            step,
            acked,
            after: self.latest,
        };
        self.pending.insert(id, issued);
        Ok(())
    }

    /// Node `node` answered `a` at `step`, when `proposed` client payloads
    /// had been proposed; `state_at(i)` is the digest recorded for index
    /// `i`, if any node applied it.
    pub fn answer(
        &mut self,
        node: u64,
        step: u64,
        a: &ReadAnswer,
        proposed: u64,
        state_at: impl Fn(u64) -> Option<u64>,
    ) -> Result<(), Violation> {
        let Some(r) = self.pending.remove(&a.id) else {
            if a.id < self.next_id {
                // Answered already: a duplicated request's second answer.
                return Ok(());
            }
            return Err(Violation::new(
                "linearizable_reads",
                format!("node {node} answered read {}, which was never issued", a.id),
            ));
        };
        let what = format!(
            "read {} (issued to node {} at step {}, answered by node {node} at step {step} \
             with index {} from read index {})",
            a.id, r.node, r.step, a.applied, a.read_index
        );
        match state_at(a.applied) {
            Some(digest) if digest == a.digest => {}
            Some(digest) => {
                return Err(Violation::new(
                    "linearizable_reads",
                    format!(
                        "{what} returned state {:#x}, but the state at {} is {digest:#x}",
                        a.digest, a.applied
                    ),
                ));
            }
            None => {
                return Err(Violation::new(
                    "linearizable_reads",
                    format!("{what} returned a state no node has applied"),
                ));
            }
        }
        if a.payloads > proposed {
            return Err(Violation::new(
                "linearizable_reads",
                format!(
                    "{what} sees {} client writes, but only {proposed} were proposed",
                    a.payloads
                ),
            ));
        }
        if a.applied < r.acked {
            return Err(Violation::new(
                "linearizable_reads",
                format!(
                    "{what} is stale: writes up to {} were acknowledged before it was issued",
                    r.acked
                ),
            ));
        }
        if let Some((prev, at, index)) = r.after
            && a.applied < index
        {
            return Err(Violation::new(
                "linearizable_reads",
                format!(
                    "{what} went back in time: read {prev}, answered at step {at} before it \
                     was issued, returned index {index}"
                ),
            ));
        }
        if a.read_index < r.acked || a.applied < a.read_index {
            return Err(Violation::new(
                "read_index",
                format!(
                    "{what}: the read index must cover the writes acknowledged before the read \
                     (up to {}) and the state must be at or past it",
                    r.acked
                ),
            ));
        }
        self.answered += 1;
        if self.latest.is_none_or(|(_, _, index)| a.applied > index) {
            self.latest = Some((a.id, step, a.applied));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Digests of a history applied up to 20: index `i` has state `100 + i`.
    fn history(i: u64) -> Option<u64> {
        (i <= 20).then_some(100 + i)
    }

    fn answer(id: u64, read_index: u64, applied: u64) -> ReadAnswer {
        ReadAnswer {
            id,
            read_index,
            applied,
            digest: 100 + applied,
            payloads: applied / 2,
        }
    }

    #[test]
    fn a_linearizable_history_passes() {
        let mut log = ReadLog::default();
        log.issue(0, 1, 10, 12).unwrap();
        log.issue(1, 2, 11, 13).unwrap();
        // Concurrent reads may be answered in any order, with any state
        // past their own bounds.
        log.answer(2, 14, &answer(1, 13, 15), 20, history).unwrap();
        log.answer(1, 15, &answer(0, 12, 12), 20, history).unwrap();
        // Issued after both answered: at least 15.
        log.issue(2, 3, 16, 14).unwrap();
        log.answer(3, 17, &answer(2, 15, 15), 20, history).unwrap();
        // A duplicate answer of read 0, later: no client waits for it.
        log.answer(1, 18, &answer(0, 16, 16), 20, history).unwrap();
        assert_eq!(log.answered(), 3);
    }

    #[test]
    fn a_stale_read_is_rejected() {
        let mut log = ReadLog::default();
        log.issue(0, 1, 10, 12).unwrap();
        // A state that misses write 12, acknowledged before the read.
        let v = log
            .answer(1, 11, &answer(0, 11, 11), 20, history)
            .unwrap_err();
        assert_eq!(v.checker, "linearizable_reads");
        assert!(v.detail.contains("is stale"), "{}", v.detail);
        assert!(v.detail.contains("up to 12"), "{}", v.detail);
    }

    #[test]
    fn a_read_index_missing_an_acknowledged_write_is_rejected() {
        let mut log = ReadLog::default();
        // The host happened to apply past it, but the read index itself
        // misses write 12.
        log.issue(0, 1, 10, 12).unwrap();
        let v = log
            .answer(1, 11, &answer(0, 11, 13), 20, history)
            .unwrap_err();
        assert_eq!(v.checker, "read_index");
        // A state answered before its read index was applied.
        log.issue(1, 1, 12, 12).unwrap();
        let v = log
            .answer(1, 13, &answer(1, 15, 13), 20, history)
            .unwrap_err();
        assert_eq!(v.checker, "read_index");
    }

    #[test]
    fn a_read_of_a_future_state_is_rejected() {
        let mut log = ReadLog::default();
        log.issue(0, 1, 10, 12).unwrap();
        // Index 25: no node has applied it.
        let v = log
            .answer(1, 11, &answer(0, 12, 25), 30, history)
            .unwrap_err();
        assert_eq!(v.checker, "linearizable_reads");
        assert!(v.detail.contains("no node has applied"), "{}", v.detail);
        // A known index, but a state no node had there.
        log.issue(1, 1, 12, 12).unwrap();
        let a = ReadAnswer {
            digest: 7,
            ..answer(1, 12, 14)
        };
        let v = log.answer(1, 13, &a, 30, history).unwrap_err();
        assert!(v.detail.contains("the state at 14"), "{}", v.detail);
        // Writes not yet proposed when the read was answered.
        log.issue(2, 1, 14, 12).unwrap();
        let v = log
            .answer(1, 15, &answer(2, 12, 14), 6, history)
            .unwrap_err();
        assert_eq!(v.checker, "linearizable_reads");
        assert!(v.detail.contains("only 6 were proposed"), "{}", v.detail);
    }

    #[test]
    fn reads_going_back_in_time_are_rejected() {
        let mut log = ReadLog::default();
        log.issue(0, 1, 10, 12).unwrap();
        log.answer(1, 11, &answer(0, 12, 18), 20, history).unwrap();
        // Issued after read 0 returned 18, with only 12 acknowledged: 18 is
        // still its floor.
        log.issue(1, 2, 12, 12).unwrap();
        let v = log
            .answer(2, 13, &answer(1, 12, 15), 20, history)
            .unwrap_err();
        assert_eq!(v.checker, "linearizable_reads");
        assert!(v.detail.contains("went back in time"), "{}", v.detail);
        assert!(v.detail.contains("read 0"), "{}", v.detail);
        // A read issued before read 0 was answered may return less.
        let mut log = ReadLog::default();
        log.issue(0, 1, 10, 12).unwrap();
        log.issue(1, 2, 10, 12).unwrap();
        log.answer(1, 11, &answer(0, 12, 18), 20, history).unwrap();
        log.answer(2, 12, &answer(1, 12, 15), 20, history).unwrap();
    }

    #[test]
    fn answers_to_reads_never_issued_are_rejected() {
        let mut log = ReadLog::default();
        log.issue(0, 1, 10, 12).unwrap();
        let v = log
            .answer(1, 11, &answer(3, 12, 12), 20, history)
            .unwrap_err();
        assert!(v.detail.contains("never issued"), "{}", v.detail);
        assert!(log.issue(0, 1, 12, 12).is_err(), "an id issued twice");
    }
}
