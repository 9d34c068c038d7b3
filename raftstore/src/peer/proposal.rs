//! `ProposalQueue`: the commands a peer proposed, waiting for their entries
//! to apply, matched to applied entries by `(term, index)`.
//!
//! Matching by index alone is wrong: a leader that loses leadership and is
//! elected again can hold `[13 @ term 6, 12 @ term 8]` (its term-6 entries
//! were overwritten from 12 on), and an index-ordered search for 12 stops at
//! 13 and misses it. Proposals are pushed in the order they are made, so
//! the queue is sorted by `(term, index)`: terms never decrease, and within
//! one term a leader's indices only grow.
//!
//! The rule when entry `(index, term)` applies (TiKV's, in its apply loop):
//! - the proposal with exactly that `(term, index)` gets the result;
//! - every proposal ordered before it can never commit any more and is
//!   answered `StaleCommand`: one of a lower term, whatever its index, since
//!   a log holds only entries of term >= `term` after this one, and entries
//!   up to `index` are applied already; one of the same term and a lower
//!   index had its entry applied earlier (so it cannot be waiting);
//! - proposals ordered after it wait on.
//!
//! Invariant: sorted by `(term, index)`, strictly; each proposal leaves the
//! queue exactly once, answered.

use std::collections::VecDeque;

use kvproto::errorpb;
use kvproto::raft_cmdpb::RaftCmdResponse;
use router::{Callback, CmdResponse};

/// A command waiting for its log entry to be applied.
#[derive(Debug)]
pub struct Proposal {
    /// The index its entry was given.
    pub index: u64,
    /// The term it was proposed in.
    pub term: u64,
    /// Answers the client(s).
    pub callback: Answer,
}

/// Whom an entry's result goes to: one caller, or the callers whose writes
/// share the entry (`operation/batch.rs`), each with its count of requests.
#[derive(Debug)]
pub enum Answer {
    /// One command, one caller.
    One(Callback),
    /// Callers in the order of their requests in the entry.
    Many(Vec<(Callback, usize)>),
}

impl From<Callback> for Answer {
    fn from(callback: Callback) -> Self {
        Answer::One(callback)
    }
}

impl Answer {
    /// Answers every caller: an error goes to each; otherwise each caller
    /// gets the header and its own slice of the responses.
    pub fn respond(self, response: CmdResponse) {
        match self {
            Answer::One(callback) => callback.respond(response),
            Answer::Many(callers) => {
                let CmdResponse { response, .. } = response;
                let failed = response.header.as_ref().is_some_and(|h| h.error.is_some());
                let mut responses = response.responses.into_iter();
                for (callback, count) in callers {
                    let own = if failed {
                        Vec::new()
                    } else {
                        responses.by_ref().take(count).collect()
                    };
                    callback.respond(CmdResponse {
                        response: RaftCmdResponse {
                            header: response.header.clone(),
                            responses: own,
                            admin_response: None,
                        },
                        snapshot: None,
                    });
                }
            }
        }
    }

    /// Answers every caller with a region error.
    pub fn respond_error(self, error: errorpb::Error) {
        self.respond(CmdResponse::from_error(error));
    }
}

/// What applying one entry means for the waiting proposals.
#[derive(Debug, Default)]
pub struct Matched {
    /// The proposal whose entry this is, if it waits here.
    pub proposal: Option<Answer>,
    /// Proposals that can no longer commit: to be answered `StaleCommand`.
    pub stale: Vec<Answer>,
}

/// The waiting proposals of one peer.
#[derive(Debug, Default)]
pub struct ProposalQueue {
    queue: VecDeque<Proposal>,
}

impl ProposalQueue {
    /// Adds a proposal made after every one already queued.
    ///
    /// # Panics
    /// In debug builds, if it is not ordered after the last one (a host bug:
    /// terms never go back and a leader's indices only grow).
    pub fn push(&mut self, proposal: Proposal) {
        debug_assert!(
            self.queue
                .back()
                .is_none_or(|b| (b.term, b.index) < (proposal.term, proposal.index)),
            "proposal {}@{} queued after {:?}",
            proposal.index,
            proposal.term,
            self.queue.back().map(|b| (b.index, b.term))
        );
        self.queue.push_back(proposal);
    }

    /// Takes what entry (`index`, `term`) settles; see the module doc.
    pub fn take_applied(&mut self, index: u64, term: u64) -> Matched {
        let mut matched = Matched::default();
        while let Some(front) = self.queue.front() {
            if (front.term, front.index) > (term, index) {
                break;
            }
            let proposal = self.queue.pop_front().expect("front exists");
            if (proposal.term, proposal.index) == (term, index) {
                matched.proposal = Some(proposal.callback);
                break;
            }
            matched.stale.push(proposal.callback);
        }
        matched
    }

    /// Takes every proposal whose entry a snapshot up to `index` overtook:
    /// this peer will not apply those entries itself, so their results are
    /// unknown here.
    pub fn take_covered_by_snapshot(&mut self, index: u64) -> Vec<Answer> {
        let (covered, kept): (Vec<_>, Vec<_>) =
            self.queue.drain(..).partition(|p| p.index <= index);
        self.queue = kept.into();
        covered.into_iter().map(|p| p.callback).collect()
    }

    /// Takes every proposal.
    pub fn take_all(&mut self) -> Vec<Answer> {
        self.queue.drain(..).map(|p| p.callback).collect()
    }

    /// How many proposals wait.
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use kvproto::raft_cmdpb::{CmdType, RaftResponseHeader, Response};
    use router::CallbackReceiver;

    use super::*;

    fn proposal(index: u64, term: u64) -> (Proposal, CallbackReceiver) {
        let (callback, rx) = Callback::new();
        (
            Proposal {
                index,
                term,
                callback: callback.into(),
            },
            rx,
        )
    }

    /// Answers every callback with an empty success, to see who got what.
    fn answer(callbacks: impl IntoIterator<Item = Answer>) {
        for cb in callbacks {
            cb.respond(CmdResponse::default());
        }
    }

    fn answered(rx: &mut CallbackReceiver) -> bool {
        rx.try_recv().is_ok()
    }

    /// The case: a leader re-elected in term 8 after its term-6
    /// entries from 12 on were overwritten holds `[13 @ 6, 12 @ 8]`. When
    /// 12 @ 8 applies, its own proposal gets the result (by index order
    /// alone it was missed, and later told `StaleCommand` although it had
    /// been applied), and 13 @ 6 is answered stale, once.
    #[test]
    fn re_elected_leader_matches_by_term_and_index() {
        let mut queue = ProposalQueue::default();
        let (p13, mut rx13) = proposal(13, 6);
        let (p12, _rx12) = proposal(12, 8);
        queue.push(p13);
        queue.push(p12);

        let matched = queue.take_applied(12, 8);
        assert!(matched.proposal.is_some(), "12 @ 8 must match its proposal");
        assert_eq!(matched.stale.len(), 1);
        answer(matched.stale);
        assert!(answered(&mut rx13));
        assert!(queue.is_empty());
        // Nothing is left to answer twice.
        assert!(queue.take_applied(13, 8).stale.is_empty());
    }

    #[test]
    fn an_entry_of_a_newer_term_settles_every_older_proposal() {
        let mut queue = ProposalQueue::default();
        let (a, mut rx_a) = proposal(20, 3);
        let (b, mut rx_b) = proposal(21, 3);
        let (c, mut rx_c) = proposal(15, 5);
        queue.push(a);
        queue.push(b);
        queue.push(c);

        // Entry 14 @ 4 (another leader's): both term-3 proposals can never
        // commit, whatever their index; 15 @ 5 waits on.
        let matched = queue.take_applied(14, 4);
        assert!(matched.proposal.is_none());
        assert_eq!(matched.stale.len(), 2);
        answer(matched.stale);
        assert!(answered(&mut rx_a) && answered(&mut rx_b));
        assert!(!answered(&mut rx_c));
        assert_eq!(queue.len(), 1);

        let matched = queue.take_applied(15, 5);
        assert!(matched.proposal.is_some() && matched.stale.is_empty());
    }

    #[test]
    fn later_proposals_wait_for_their_entries() {
        let mut queue = ProposalQueue::default();
        let (a, _rx_a) = proposal(7, 2);
        let (b, _rx_b) = proposal(8, 2);
        queue.push(a);
        queue.push(b);
        let matched = queue.take_applied(6, 2);
        assert!(matched.proposal.is_none() && matched.stale.is_empty());
        assert_eq!(queue.len(), 2);
        assert!(queue.take_applied(7, 2).proposal.is_some());
        assert!(queue.take_applied(8, 2).proposal.is_some());
        assert!(queue.is_empty());
    }

    #[test]
    fn a_snapshot_takes_the_proposals_it_covers() {
        let mut queue = ProposalQueue::default();
        let (a, _rx_a) = proposal(13, 6);
        let (b, _rx_b) = proposal(12, 8);
        let (c, _rx_c) = proposal(14, 8);
        queue.push(a);
        queue.push(b);
        queue.push(c);
        assert_eq!(queue.take_covered_by_snapshot(13).len(), 2);
        assert_eq!(queue.len(), 1);
        assert!(queue.take_applied(14, 8).proposal.is_some());
    }

    fn put_response() -> Response {
        Response {
            cmd_type: CmdType::Put as i32,
            ..Default::default()
        }
    }

    /// Callers sharing an entry each get their own responses, in order; an
    /// error reaches every one of them.
    #[test]
    fn a_shared_entry_answers_each_caller_with_its_part() {
        let (a, mut rx_a) = Callback::new();
        let (b, mut rx_b) = Callback::new();
        Answer::Many(vec![(a, 1), (b, 2)]).respond(CmdResponse {
            response: RaftCmdResponse {
                header: Some(RaftResponseHeader {
                    current_term: 7,
                    ..Default::default()
                }),
                responses: vec![put_response(), put_response(), put_response()],
                admin_response: None,
            },
            snapshot: None,
        });
        let a = rx_a.try_recv().expect("a answered");
        let b = rx_b.try_recv().expect("b answered");
        assert_eq!(
            (a.response.responses.len(), b.response.responses.len()),
            (1, 2)
        );
        assert_eq!(b.response.header.map(|h| h.current_term), Some(7));

        let (a, mut rx_a) = Callback::new();
        let (b, mut rx_b) = Callback::new();
        Answer::Many(vec![(a, 1), (b, 1)]).respond_error(errorpb::Error {
            message: "epoch not match".into(),
            ..Default::default()
        });
        for rx in [&mut rx_a, &mut rx_b] {
            let resp = rx.try_recv().expect("answered");
            assert_eq!(
                resp.region_error().map(|e| e.message.as_str()),
                Some("epoch not match")
            );
        }
    }
}
