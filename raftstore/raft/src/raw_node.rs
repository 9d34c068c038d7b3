//! `RawNode`: the host's handle on a Raft node, and `Ready`, the batch of
//! work the host takes from it.
//!
//! The host's loop, all on one thread of control:
//!
//! ```text
//! loop {
//!     tick() / step(msg) / propose(..)        as time passes and input arrives
//!     if has_ready() {
//!         let rd = ready();
//!         1. persist rd.snapshot, rd.entries, rd.hard_state (fsync)
//!         2. apply rd.snapshot, then rd.committed_entries
//!         3. send rd.messages
//!         advance(rd);
//!     }
//! }
//! ```
//!
//! Persist comes before send: a vote or an append acknowledgement must never
//! leave before the state it reports is durable. Nothing may be stepped into
//! the node between `ready` and `advance`.
//!
//! Reads: `read_index(ctx)` asks for a read index; the answer comes as a
//! `ReadState` in a later `Ready` (see `read_only`). The host serves the read
//! once it has applied up to `ReadState::index`. A read may be dropped (no
//! leader, or the leader stepped down): the host times it out and asks again.
//!
//! The host may hold apply at an index (`set_apply_limit`): committed
//! entries past it are not handed out, and do not make `has_ready` true,
//! until the limit is lifted. A host that truncates `committed_entries`
//! before `advance` sets the limit to the last entry it kept.

use kvproto::eraftpb::{ConfChange, ConfState, Entry, HardState, Message, MessageType, Snapshot};
use slog::Logger;

use crate::config::Config;
use crate::errors::{Error, Result};
use crate::raft::{Raft, SoftState};
use crate::read_only::ReadState;
use crate::storage::Storage;
use crate::util::{is_local_msg, is_response_msg};

/// What the host must do next: persist, apply, send.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Ready {
    /// The volatile state, when it changed since the last `Ready`.
    pub soft_state: Option<SoftState>,
    /// The hard state to persist, when it changed since the last `Ready`.
    pub hard_state: Option<HardState>,
    /// Entries to persist (they may replace persisted entries from their
    /// first index on).
    pub entries: Vec<Entry>,
    /// A snapshot to persist and apply, if one arrived.
    pub snapshot: Option<Snapshot>,
    /// Committed entries to apply, in order.
    pub committed_entries: Vec<Entry>,
    /// Messages to send once everything above is persisted.
    pub messages: Vec<Message>,
    /// Reads confirmed since the last `Ready`, in the order confirmed; each
    /// is handed out once.
    pub read_states: Vec<ReadState>,
}

/// Whether a snapshot sent to a peer was applied there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotStatus {
    /// The peer received and applied it.
    Finish,
    /// Sending or applying it failed; the leader probes again.
    Failure,
}

/// A Raft node driven by its host.
pub struct RawNode<S: Storage> {
    raft: Raft<S>,
    prev_soft_state: SoftState,
    prev_hard_state: HardState,
    /// Committed entries past this index are held back from apply.
    apply_limit: Option<u64>,
}

impl<S: Storage> RawNode<S> {
    /// A node over `storage`; see `Raft::new`.
    pub fn new(config: &Config, storage: S, logger: &Logger) -> Result<Self> {
        let raft = Raft::new(config, storage, logger)?;
        let prev_soft_state = raft.soft_state();
        let prev_hard_state = raft.hard_state();
        Ok(RawNode {
            raft,
            prev_soft_state,
            prev_hard_state,
            apply_limit: None,
        })
    }

    /// The node inside.
    pub fn raft(&self) -> &Raft<S> {
        &self.raft
    }

    /// The node inside, for tests that set up a state directly.
    #[cfg(test)]
    pub(crate) fn raft_mut(&mut self) -> &mut Raft<S> {
        &mut self.raft
    }

    /// The storage, for the host to read what it persisted.
    pub fn store(&self) -> &S {
        &self.raft.raft_log.storage
    }

    /// The storage, for the host to persist a `Ready` into.
    pub fn store_mut(&mut self) -> &mut S {
        &mut self.raft.raft_log.storage
    }

    /// Advances the logical clock by one tick.
    pub fn tick(&mut self) {
        self.raft.tick();
    }

    /// Starts an election now.
    pub fn campaign(&mut self) -> Result<()> {
        self.raft.step(Message {
            msg_type: MessageType::MsgHup as i32,
            from: self.raft.id,
            ..Default::default()
        })
    }

    /// Proposes `data` to be appended to the log. `ProposalDropped` unless
    /// this node is a leader accepting proposals.
    pub fn propose(&mut self, data: Vec<u8>) -> Result<()> {
        self.raft.step(Message {
            msg_type: MessageType::MsgPropose as i32,
            from: self.raft.id,
            entries: vec![Entry {
                data,
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    /// Proposes a membership change. `ProposalDropped` also while an earlier
    /// change is not applied yet.
    pub fn propose_conf_change(&mut self, cc: ConfChange) -> Result<()> {
        self.raft.step(Message {
            msg_type: MessageType::MsgPropose as i32,
            from: self.raft.id,
            entries: vec![Raft::<S>::conf_change_entry(&cc)],
            ..Default::default()
        })
    }

    /// Applies a committed conf change; returns the new membership, which
    /// the host persists with the apply state.
    pub fn apply_conf_change(&mut self, cc: &ConfChange) -> ConfState {
        self.raft.apply_conf_change(cc)
    }

    /// Handles a message from a peer. Local-only kinds (`MsgHup`, `MsgBeat`,
    /// `MsgPropose`: see `is_local_msg`) and responses from non-members are
    /// refused.
    pub fn step(&mut self, m: Message) -> Result<()> {
        if is_local_msg(m.msg_type()) {
            return Err(Error::StepLocalMsg);
        }
        if is_response_msg(m.msg_type()) && !self.raft.prs.contains_key(&m.from) {
            return Err(Error::StepPeerNotFound(m.from));
        }
        self.raft.step(m)
    }

    /// Asks for a read index; `ctx` identifies the request in the
    /// `ReadState` that answers it and should be unique among the host's
    /// pending reads. On a follower the request goes to the leader; without
    /// a known leader it is dropped.
    pub fn read_index(&mut self, ctx: Vec<u8>) {
        // Stepping a read request never fails.
        let _ = self.raft.step(Message {
            msg_type: MessageType::MsgReadIndex as i32,
            from: self.raft.id,
            context: ctx,
            ..Default::default()
        });
    }

    /// Asks the leader to hand leadership to `transferee`.
    pub fn transfer_leader(&mut self, transferee: u64) {
        // Stepping a transfer request never fails.
        let _ = self.raft.step(Message {
            msg_type: MessageType::MsgTransferLeader as i32,
            from: transferee,
            ..Default::default()
        });
    }

    /// Reports the fate of a snapshot sent to `id`.
    pub fn report_snapshot(&mut self, id: u64, status: SnapshotStatus) {
        self.raft
            .report_snapshot(id, status == SnapshotStatus::Failure);
    }

    /// Reports that `id` could not be reached.
    pub fn report_unreachable(&mut self, id: u64) {
        self.raft.report_unreachable(id);
    }

    /// Whether there is anything to persist, apply or send.
    pub fn has_ready(&self) -> bool {
        let raft = &self.raft;
        raft.soft_state() != self.prev_soft_state
            || raft.hard_state() != self.prev_hard_state
            || !raft.raft_log.unstable_entries().is_empty()
            || raft.raft_log.pending_snapshot().is_some()
            || raft.raft_log.has_next_entries_up_to(self.apply_limit())
            || !raft.msgs.is_empty()
            || !raft.read_states.is_empty()
    }

    /// Holds committed entries past `limit` back from apply (`None`: hand
    /// out everything committed). Holding never blocks persisting, sending
    /// or a snapshot; a snapshot lifts the limit.
    pub fn set_apply_limit(&mut self, limit: Option<u64>) {
        self.apply_limit = limit;
    }

    /// The index past which apply is held, if it is.
    pub fn apply_limit_index(&self) -> Option<u64> {
        self.apply_limit
    }

    fn apply_limit(&self) -> u64 {
        self.apply_limit.unwrap_or(u64::MAX)
    }

    /// Takes the work to do. Hand it back with `advance` once done, before
    /// calling `ready` again: the messages are handed out only once.
    pub fn ready(&mut self) -> Ready {
        let limit = self.apply_limit();
        let raft = &mut self.raft;
        let soft_state = raft.soft_state();
        let hard_state = raft.hard_state();
        Ready {
            soft_state: (soft_state != self.prev_soft_state).then_some(soft_state),
            hard_state: (hard_state != self.prev_hard_state).then_some(hard_state),
            entries: raft.raft_log.unstable_entries().to_vec(),
            snapshot: raft.raft_log.pending_snapshot().cloned(),
            committed_entries: raft.raft_log.next_entries_up_to(limit),
            messages: raft.take_messages(),
            read_states: raft.read_states.clone(),
        }
    }

    /// Records that the host persisted, applied and sent everything in `rd`.
    pub fn advance(&mut self, rd: Ready) {
        if let Some(ss) = rd.soft_state {
            self.prev_soft_state = ss;
        }
        if let Some(hs) = rd.hard_state {
            self.prev_hard_state = hs;
        }
        let log = &mut self.raft.raft_log;
        if let Some(snapshot) = &rd.snapshot {
            let index = snapshot.metadata.as_ref().map_or(0, |m| m.index);
            log.stable_snapshot_to(index);
            if index > log.applied {
                log.applied_to(index);
            }
            // The snapshot replaced whatever entry apply was held at.
            self.apply_limit = None;
        }
        if let Some(last) = rd.entries.last() {
            log.stable_to(last.index, last.term);
        }
        if let Some(last) = rd.committed_entries.last() {
            log.applied_to(last.index);
        }
        // Nothing was stepped since `ready`: these are exactly the ones
        // handed out.
        let handed_out = rd.read_states.len().min(self.raft.read_states.len());
        self.raft.read_states.drain(..handed_out);
        if cfg!(debug_assertions) {
            self.raft.check_invariants();
        }
    }
}

#[cfg(test)]
mod tests {
    use kvproto::eraftpb::{Entry, Message, MessageType};

    use super::*;
    use crate::storage::MemoryStorage;
    use crate::test_util::{new_test_config, test_logger};

    /// A proposal that arrives from the network skips every check a local
    /// one passes; a leader must refuse it and leave its log as it was.
    #[test]
    fn a_proposal_from_the_network_is_refused() {
        let storage = MemoryStorage::new();
        let mut node = RawNode::new(
            &new_test_config(1, vec![1], 10, 1),
            storage.clone(),
            &test_logger(),
        )
        .expect("test config is valid");
        node.campaign().expect("campaign");
        let rd = node.ready();
        storage.append(&rd.entries).expect("append");
        node.advance(rd);
        let last = node.raft().raft_log().last_index();

        for msg_type in [
            MessageType::MsgPropose,
            MessageType::MsgHup,
            MessageType::MsgBeat,
        ] {
            let msg = Message {
                msg_type: msg_type as i32,
                from: 2,
                to: 1,
                entries: vec![Entry::default()],
                ..Default::default()
            };
            assert_eq!(node.step(msg), Err(Error::StepLocalMsg), "{msg_type:?}");
        }
        assert_eq!(node.raft().raft_log().last_index(), last);
        assert!(!node.has_ready());
    }

    /// A node whose log holds entries 1..=3, all committed, none applied.
    fn node_with_three_committed_entries() -> RawNode<MemoryStorage> {
        let storage = MemoryStorage::new();
        let mut node = RawNode::new(
            &new_test_config(1, vec![1], 10, 1),
            storage.clone(),
            &test_logger(),
        )
        .expect("test config is valid");
        node.campaign().expect("campaign");
        for _ in 0..2 {
            node.propose(b"x".to_vec()).expect("leader proposes");
        }
        let mut rd = node.ready();
        storage.append(&rd.entries).expect("append");
        // Applied later, by the test.
        rd.committed_entries.clear();
        node.advance(rd);
        assert_eq!(node.raft().raft_log().committed, 3);
        node
    }

    /// Entries past the apply limit are neither handed out nor make the
    /// node ready; lifting the limit hands them out.
    #[test]
    fn apply_limit_holds_committed_entries_back() {
        let mut node = node_with_three_committed_entries();
        node.set_apply_limit(Some(1));
        let rd = node.ready();
        let applied: Vec<u64> = rd.committed_entries.iter().map(|e| e.index).collect();
        assert_eq!(applied, vec![1]);
        node.advance(rd);
        assert!(!node.has_ready(), "only held entries are left");
        assert!(node.ready().committed_entries.is_empty());

        node.set_apply_limit(None);
        assert!(node.has_ready());
        let rd = node.ready();
        let applied: Vec<u64> = rd.committed_entries.iter().map(|e| e.index).collect();
        assert_eq!(applied, vec![2, 3]);
        node.advance(rd);
        assert!(!node.has_ready());
    }
}
