//! A peer's own removal from a two-member region waits until the member
//! that stays knows the removal is committed.
//!
//! Why: applying its removal makes a peer destroy itself. If the other
//! member holds the entry but not its commit, its membership is still both
//! peers: it needs the destroyed peer's vote to elect a leader, and the
//! region is stuck for good. Proposing such a removal is refused on a
//! leader (`command.rs`), but leadership can move between the proposal and
//! its commit, and a restarted follower may find the commit in its own
//! persisted hard state.
//!
//! Rule: a committed `RemoveNode` of this peer at index `i`, in a region
//! whose only other member is `other`, is applied only once `other` is
//! known to know that `i` is committed:
//! - on a leader, `other` reported a commit index of at least `i` (its
//!   answers carry it, `raft::Progress::committed`);
//! - otherwise, `other` is the leader and announced a commit of at least
//!   `i` (`raft::Raft::leader_commit`).
//!
//! Until then apply is held just before `i` (`RawNode::set_apply_limit`):
//! persisting, sending and voting go on, so `other` learns the commit from
//! this peer or wins an election with its vote. If `other` applies the
//! removal first it stops talking to this peer, which then campaigns and is
//! answered with a tombstone notice (`raft_message.rs`) that destroys it.
//! With more members the rest form a quorum of the old membership without
//! this peer, so nothing is held.

use kvproto::eraftpb::{ConfChange, ConfChangeType, Entry, EntryType};
use prost::Message as _;
use raft::StateRole;
use slog::info;

use crate::peer::Peer;

impl Peer {
    /// Keeps in `committed` (this Ready's entries to apply, in order) only
    /// what may be applied now: everything before this peer's own removal,
    /// when that removal has to wait; then holds apply there.
    pub(crate) fn hold_own_removal(&mut self, committed: &mut Vec<Entry>) {
        let Some(pos) = committed.iter().position(|e| self.removes_this_peer(e)) else {
            return;
        };
        let index = committed[pos].index;
        // An earlier conf change in the batch may change who stays: decide
        // once it is applied (`release_own_removal`, next round).
        let earlier_conf_change = committed[..pos]
            .iter()
            .any(|e| e.entry_type() == EntryType::EntryConfChange);
        if !earlier_conf_change && self.other_member_knows_committed(index) {
            return;
        }
        info!(self.logger, "holding own removal until the other member knows it is committed";
            "index" => index, "term" => self.term());
        committed.truncate(pos);
        self.raft_group.set_apply_limit(Some(index - 1));
    }

    /// Lifts the hold of `hold_own_removal` once the rule allows.
    pub(crate) fn release_own_removal(&mut self) {
        let Some(limit) = self.raft_group.apply_limit_index() else {
            return;
        };
        let index = limit + 1;
        if self.other_member_knows_committed(index) {
            info!(self.logger, "applying own removal: the other member knows it is committed";
                "index" => index, "term" => self.term());
            self.raft_group.set_apply_limit(None);
        }
    }

    fn removes_this_peer(&self, entry: &Entry) -> bool {
        entry.entry_type() == EntryType::EntryConfChange
            && ConfChange::decode(entry.data.as_slice()).is_ok_and(|cc| {
                cc.change_type() == ConfChangeType::RemoveNode && cc.node_id == self.meta.id
            })
    }

    /// Whether the members that stay after this peer's removal at `index`
    /// can go on without it.
    fn other_member_knows_committed(&self, index: u64) -> bool {
        let mut others = self.region().peers.iter().filter(|p| p.id != self.meta.id);
        let (Some(other), None) = (others.next(), others.next()) else {
            // None other (nothing to protect) or several (a quorum of the
            // old membership without this peer).
            return true;
        };
        let raft = self.raft_group.raft();
        match raft.state() {
            StateRole::Leader => raft
                .prs()
                .get(&other.id)
                .is_some_and(|pr| pr.committed() >= index),
            _ => raft.leader_id() == other.id && raft.leader_commit() >= index,
        }
    }
}
