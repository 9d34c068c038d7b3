//! ReadIndex (Raft thesis §6.4): linearizable reads without a log entry.
//!
//! The host asks with `RawNode::read_index(ctx)`, `ctx` being the request's
//! id, and gets a `ReadState { index, request_ctx }` in a later `Ready`: once
//! its applied index reaches `index`, a read of its state machine is
//! linearizable. The steps, on the leader:
//!
//! 1. A leader that has not committed an entry of its own term does not know
//!    the latest commit index yet (§6.4 step 1); it queues the request
//!    (`Raft::pending_read_index`) and handles it once it commits one.
//! 2. It records the request with its commit index as the read index.
//! 3. `Safe`: it confirms it is still the leader with a heartbeat round. The
//!    heartbeat's `context` is the leader's read round, the number of reads
//!    queued so far in its term; followers echo it; once a quorum (counting
//!    the leader) acked round `n`, the first `n` reads are confirmed, however
//!    many heartbeats were sent for them. So every read queued before a round
//!    shares it, and a duplicate `ctx` cannot confirm a later read early.
//!    This round counter is etcd's later design (`readOnly.heartbeatCtx`);
//!    its first design echoed the request's own id and mixed up retries.
//!    `LeaseBased`: the leader answers at once while its lease holds (below),
//!    and holds the read back until it does.
//! 4. A confirmed read becomes a `ReadState` on the leader, or a
//!    `MsgReadIndexResponse` to the follower that forwarded it.
//!
//! `Safe` reads need followers that echo `context` (field 101, an
//! extension): a TinyKV peer does not, so in a group with one a read is
//! confirmed only if the echoing members alone make a quorum.
//!
//! The lease (`LeaseBased`). A follower that heard from the leader ignores
//! vote requests for an election timeout of its own ticks (CheckQuorum's
//! rule), so no other leader can be elected until an election timeout after
//! a quorum last heard from this one. The leader counts its own ticks since
//! it was elected (`ReadOnly::clock`) and stamps each heartbeat with the
//! tick it was made at (`context` = `LEASE_TAG` + the tick, 9 bytes, so it
//! is never taken for a read round); followers echo it. The lease holds at
//! tick `now` while a quorum (the leader counting itself at `now`) echoed a
//! heartbeat made at a tick `t` with `now < t + election_timeout`: each of
//! them received it at or after `t`. Counting from when the heartbeat was
//! made, not from when its answer came back, is what keeps a late answer
//! (a slow network) from stretching the lease; etcd instead trusts the
//! leader until its next CheckQuorum check, up to two election timeouts
//! after its followers last heard from it, long after they may have
//! elected another leader. This holds if no node's clock runs faster than
//! the leader's and a restarted node (which forgets whom it heard) stays
//! down for an election timeout. A leader that sent `MsgTimeoutNow` gives
//! up its lease for the rest of its term (the transferee's campaign
//! overrides the followers' leases) and confirms reads as `Safe` does.
//!
//! A follower forwards its host's request to the leader it knows (dropped
//! when it knows none) and turns the answer into a `ReadState`. A request is
//! dropped, unanswered, when the leader steps down or the node is a
//! candidate: the host times it out and asks again.
//!
//! Invariants:
//! - Only a leader holds unconfirmed reads or queued requests; every role
//!   change clears them (a new term starts the rounds from zero, and answers
//!   from an older term never reach this state: the term check drops them).
//! - `confirmed` never decreases within a term; the reads in `unconfirmed`
//!   have rounds `confirmed + 1 ..= confirmed + unconfirmed.len()`.
//! - Every tick in `lease_acks` is at most `clock`.

use std::collections::{BTreeMap, VecDeque};

use kvproto::eraftpb::{Message, MessageType};
use slog::debug;

use crate::config::ReadOnlyOption;
use crate::raft::{INVALID_ID, Raft};
use crate::storage::Storage;

/// The first byte of a heartbeat context that carries the lease clock.
const LEASE_TAG: u8 = b'L';

/// A read index confirmed for the host: once the host applied `index`, a read
/// of its state machine reflects every write committed before the request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadState {
    /// The commit index when the leader took the request.
    pub index: u64,
    /// The request's id, as the host passed it to `RawNode::read_index`.
    pub request_ctx: Vec<u8>,
}

/// A read waiting for its heartbeat round to be confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReadIndexRequest {
    /// Who asked: this node (or `INVALID_ID`) for a local read, else the
    /// follower that forwarded it.
    pub(crate) from: u64,
    /// The request's id.
    pub(crate) ctx: Vec<u8>,
    /// The leader's commit index when it took the request.
    pub(crate) index: u64,
}

/// A leader's unconfirmed reads and the read rounds its peers acknowledged.
#[derive(Debug, Clone, Default)]
pub(crate) struct ReadOnly {
    pub(crate) option: ReadOnlyOption,
    /// The highest read round each peer echoed in this term.
    acks: BTreeMap<u64, u64>,
    /// Reads not confirmed yet, oldest first.
    pub(crate) unconfirmed: VecDeque<ReadIndexRequest>,
    /// How many reads of this term were confirmed.
    /// Invariant: never decreases within a term.
    confirmed: u64,
    /// The lease clock: ticks since this node became leader.
    pub(crate) clock: u64,
    /// For each peer, the latest lease clock tick of a heartbeat it echoed.
    lease_acks: BTreeMap<u64, u64>,
    /// Set once this leader sent `MsgTimeoutNow`: no more lease reads in
    /// this term.
    pub(crate) lease_revoked: bool,
}

impl ReadOnly {
    pub(crate) fn new(option: ReadOnlyOption) -> Self {
        ReadOnly {
            option,
            ..Default::default()
        }
    }

    /// Queues a read taken at commit index `index`.
    pub(crate) fn add_request(&mut self, index: u64, from: u64, ctx: Vec<u8>) {
        self.unconfirmed
            .push_back(ReadIndexRequest { from, ctx, index });
    }

    /// Whether reads are answered from the lease (`LeaseBased`, not revoked).
    pub(crate) fn uses_lease(&self) -> bool {
        self.option == ReadOnlyOption::LeaseBased && !self.lease_revoked
    }

    /// The `context` a heartbeat carries: with a lease, the lease clock now
    /// (`LEASE_TAG` and 8 bytes, little-endian); else the round of the
    /// latest read (8 bytes, little-endian), or nothing when no read waits.
    pub(crate) fn heartbeat_ctx(&self) -> Vec<u8> {
        if self.uses_lease() {
            let mut ctx = Vec::with_capacity(9);
            ctx.push(LEASE_TAG);
            ctx.extend_from_slice(&self.clock.to_le_bytes());
            return ctx;
        }
        if self.unconfirmed.is_empty() {
            return Vec::new();
        }
        let round = self.confirmed + self.unconfirmed.len() as u64;
        round.to_le_bytes().to_vec()
    }

    /// Records that `from` echoed `ctx`. A context that is not a round (it
    /// comes from the network) is ignored, and a round never sent counts as
    /// the newest one sent.
    pub(crate) fn recv_ack(&mut self, from: u64, ctx: &[u8]) {
        let Ok(bytes) = <[u8; 8]>::try_from(ctx) else {
            return;
        };
        let newest = self.confirmed + self.unconfirmed.len() as u64;
        let round = u64::from_le_bytes(bytes).min(newest);
        let acked = self.acks.entry(from).or_insert(0);
        *acked = (*acked).max(round);
    }

    /// Records that `from` echoed the lease clock in `ctx`. A context that
    /// is not a lease stamp is ignored, and a tick not reached yet counts as
    /// now.
    pub(crate) fn recv_lease_ack(&mut self, from: u64, ctx: &[u8]) {
        let Some((&LEASE_TAG, rest)) = ctx.split_first() else {
            return;
        };
        let Ok(bytes) = <[u8; 8]>::try_from(rest) else {
            return;
        };
        let tick = u64::from_le_bytes(bytes).min(self.clock);
        let acked = self.lease_acks.entry(from).or_insert(0);
        *acked = (*acked).max(tick);
    }

    /// Whether the lease holds now: a quorum of `voters` (`me` counting at
    /// `clock`) echoed a heartbeat made less than `election_timeout` ticks ago.
    pub(crate) fn lease_valid(
        &self,
        voters: impl Iterator<Item = u64>,
        me: u64,
        quorum: usize,
        election_timeout: u64,
    ) -> bool {
        if !self.uses_lease() || quorum == 0 {
            return false;
        }
        let mut stamps: Vec<u64> = voters
            .filter_map(|id| {
                if id == me {
                    Some(self.clock)
                } else {
                    self.lease_acks.get(&id).copied()
                }
            })
            .collect();
        if stamps.len() < quorum {
            return false;
        }
        stamps.sort_unstable_by(|a, b| b.cmp(a));
        self.clock < stamps[quorum - 1] + election_timeout
    }

    /// Takes the reads a quorum of `voters` confirmed, oldest first.
    pub(crate) fn maybe_advance(
        &mut self,
        voters: impl Iterator<Item = u64>,
        quorum: usize,
    ) -> Vec<ReadIndexRequest> {
        let mut acked: Vec<u64> = voters
            .map(|id| self.acks.get(&id).copied().unwrap_or(0))
            .collect();
        if acked.len() < quorum || quorum == 0 {
            return Vec::new();
        }
        acked.sort_unstable_by(|a, b| b.cmp(a));
        let quorum_round = acked[quorum - 1];
        if quorum_round <= self.confirmed {
            return Vec::new();
        }
        let n = (quorum_round - self.confirmed) as usize;
        self.confirmed = quorum_round;
        self.unconfirmed.drain(..n).collect()
    }
}

impl<S: Storage> Raft<S> {
    /// Whether the entry at the commit index is of the current term. A new
    /// leader's commit index may lag the true one until this holds (§6.4
    /// step 1; Figure 8 of the paper); a host keeping a lease of its own
    /// should not serve lease reads before it does.
    pub fn has_committed_in_term(&self) -> bool {
        self.raft_log
            .term(self.raft_log.committed)
            .is_ok_and(|t| t == self.term)
    }

    /// Reads confirmed and not yet handed to the host.
    pub fn read_states(&self) -> &[ReadState] {
        &self.read_states
    }

    /// A leader takes a read request, its own (`from` is this node or
    /// `INVALID_ID`) or a follower's.
    pub(crate) fn handle_read_index_as_leader(&mut self, m: Message) {
        if self.prs.len() == 1 && self.prs.contains_key(&self.id) {
            // Alone, this node is the quorum: its commit index is the truth.
            let committed = self.raft_log.committed;
            self.respond_to_read_index(m.from, m.context, committed);
            return;
        }
        if !self.has_committed_in_term() {
            debug!(self.logger, "read index postponed until an entry of this term commits";
                "term" => self.term, "commit" => self.raft_log.committed, "from" => m.from);
            self.pending_read_index.push(m);
            return;
        }
        self.take_read_index(m);
    }

    /// Step 2 onwards, once an entry of this term is committed.
    fn take_read_index(&mut self, m: Message) {
        let committed = self.raft_log.committed;
        if self.read_only.uses_lease() {
            if self.lease_valid() {
                self.respond_to_read_index(m.from, m.context, committed);
            } else {
                // Answered once a heartbeat round renews the lease.
                debug!(self.logger, "read index postponed until the lease is renewed";
                    "term" => self.term, "from" => m.from);
                self.pending_read_index.push(m);
            }
            return;
        }
        self.read_only.add_request(committed, m.from, m.context);
        let ctx = self.read_only.heartbeat_ctx();
        let id = self.id;
        self.read_only.recv_ack(id, &ctx);
        self.bcast_heartbeat();
        // A group whose only voter is another node needs its ack;
        // otherwise the leader's own ack may already be a quorum.
        self.confirm_reads();
    }

    /// Whether this leader's lease holds now (see the module doc).
    pub fn lease_valid(&self) -> bool {
        let quorum = self.prs.len() / 2 + 1;
        self.read_only.lease_valid(
            self.prs.keys().copied(),
            self.id,
            quorum,
            self.election_timeout as u64,
        )
    }

    /// Handles the requests queued while no entry of this term was
    /// committed or the lease had lapsed; called whenever a leader's commit
    /// index moves, a heartbeat answer may renew its lease, or it gives the
    /// lease up.
    pub(crate) fn release_pending_read_index(&mut self) {
        if self.pending_read_index.is_empty() || !self.has_committed_in_term() {
            return;
        }
        for m in std::mem::take(&mut self.pending_read_index) {
            self.take_read_index(m);
        }
    }

    /// A heartbeat response echoed `ctx`: the reads a quorum confirmed now
    /// are answered.
    pub(crate) fn handle_read_ack(&mut self, from: u64, ctx: &[u8]) {
        if ctx.is_empty() {
            return;
        }
        if self.read_only.uses_lease() {
            self.read_only.recv_lease_ack(from, ctx);
            self.release_pending_read_index();
            return;
        }
        self.read_only.recv_ack(from, ctx);
        self.confirm_reads();
    }

    /// Answers the reads a quorum confirmed.
    pub(crate) fn confirm_reads(&mut self) {
        let quorum = self.prs.len() / 2 + 1;
        let voters: Vec<u64> = self.prs.keys().copied().collect();
        for rs in self.read_only.maybe_advance(voters.into_iter(), quorum) {
            self.respond_to_read_index(rs.from, rs.ctx, rs.index);
        }
    }

    fn respond_to_read_index(&mut self, from: u64, ctx: Vec<u8>, index: u64) {
        if from == INVALID_ID || from == self.id {
            self.read_states.push(ReadState {
                index,
                request_ctx: ctx,
            });
            return;
        }
        self.send(Message {
            msg_type: MessageType::MsgReadIndexResponse as i32,
            to: from,
            index,
            context: ctx,
            ..Default::default()
        });
    }

    /// A follower forwards a read to the leader, or drops it when it knows
    /// none (the host asks again). The request keeps its `from`: a request
    /// that reached a deposed leader is passed on to the new one, which
    /// answers the node that asked (etcd `TestNodeReadIndexToOldLeader`).
    pub(crate) fn forward_read_index(&mut self, mut m: Message) {
        if self.lead == INVALID_ID {
            debug!(self.logger, "no leader; dropping read index"; "term" => self.term);
            return;
        }
        if m.from == INVALID_ID {
            m.from = self.id;
        }
        m.to = self.lead;
        // No term, as a proposal would carry none: whichever term the leader
        // is in when it arrives, it confirms the read itself.
        m.term = 0;
        self.msgs.push(m);
    }

    /// A follower turns its leader's answer into a `ReadState`. The term
    /// check already dropped answers of older terms, and a term has one
    /// leader, so the sender needs no further check.
    pub(crate) fn handle_read_index_response(&mut self, m: Message) {
        self.read_states.push(ReadState {
            index: m.index,
            request_ctx: m.context,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confirmed(rs: &[ReadIndexRequest]) -> Vec<&[u8]> {
        rs.iter().map(|r| r.ctx.as_slice()).collect()
    }

    /// One quorum ack of the latest round confirms every read before it.
    #[test]
    fn one_round_confirms_every_earlier_read() {
        let mut ro = ReadOnly::new(ReadOnlyOption::Safe);
        assert!(ro.heartbeat_ctx().is_empty(), "no read, no round");
        for (i, ctx) in [b"a", b"b", b"c"].iter().enumerate() {
            ro.add_request(10 + i as u64, 1, ctx.to_vec());
        }
        let ctx = ro.heartbeat_ctx();
        assert_eq!(ctx, 3u64.to_le_bytes());
        ro.recv_ack(1, &ctx);
        assert!(ro.maybe_advance([1, 2, 3].into_iter(), 2).is_empty());
        ro.recv_ack(3, &ctx);
        let rs = ro.maybe_advance([1, 2, 3].into_iter(), 2);
        assert_eq!(confirmed(&rs), vec![b"a", b"b", b"c"]);
        assert_eq!(rs.iter().map(|r| r.index).collect::<Vec<_>>(), [10, 11, 12]);
        assert!(ro.unconfirmed.is_empty());
        assert!(ro.maybe_advance([1, 2, 3].into_iter(), 2).is_empty());
    }

    /// An ack of an older round confirms only the reads up to it; a later
    /// read waits for a later round, even when its id repeats an earlier one.
    #[test]
    fn an_older_round_confirms_only_older_reads() {
        let mut ro = ReadOnly::new(ReadOnlyOption::Safe);
        ro.add_request(5, 1, b"x".to_vec());
        let first = ro.heartbeat_ctx();
        ro.add_request(6, 1, b"x".to_vec());
        ro.recv_ack(1, &ro.heartbeat_ctx());
        ro.recv_ack(2, &first);
        let rs = ro.maybe_advance([1, 2, 3].into_iter(), 2);
        assert_eq!(rs.iter().map(|r| r.index).collect::<Vec<_>>(), [5]);
        assert_eq!(ro.unconfirmed.len(), 1);
    }

    /// Garbage from the network neither panics nor confirms anything.
    #[test]
    fn malformed_or_future_acks_are_harmless() {
        let mut ro = ReadOnly::new(ReadOnlyOption::Safe);
        ro.add_request(5, 1, b"x".to_vec());
        ro.recv_ack(2, b"short");
        ro.recv_ack(1, &ro.heartbeat_ctx());
        assert!(ro.maybe_advance([1, 2, 3].into_iter(), 2).is_empty());
        // A round never sent counts as the newest one sent, not as later ones.
        ro.recv_ack(2, &u64::MAX.to_le_bytes());
        let rs = ro.maybe_advance([1, 2, 3].into_iter(), 2);
        assert_eq!(rs.len(), 1);
        ro.add_request(7, 1, b"y".to_vec());
        assert_eq!(ro.heartbeat_ctx(), 2u64.to_le_bytes());
        ro.recv_ack(1, &ro.heartbeat_ctx());
        assert!(
            ro.maybe_advance([1, 2, 3].into_iter(), 2).is_empty(),
            "node 2's earlier huge ack does not confirm round 2"
        );
    }
}
