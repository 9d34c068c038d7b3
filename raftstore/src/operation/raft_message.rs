//! The ingress check: what a raft message from another store must satisfy
//! before the peer steps it (DESIGN §2, "checked at the peer's door").
//!
//! In order:
//! 1. A tombstone notice (`is_tombstone`) for this peer from a newer epoch
//!    means this peer was removed: it destroys itself.
//! 2. Addressing: `from_peer`/`to_peer` present and consistent with the
//!    inner message; a message for an older incarnation of this peer (a
//!    lower peer id) is dropped; one for a newer incarnation (a higher id on
//!    this store) means this peer is stale: it destroys itself, and the
//!    store creates the new one on the next message.
//! 3. No local-only kinds (`MsgHup`, `MsgBeat`, `MsgPropose`): a proposal
//!    from the network would skip every check a local one passes.
//! 4. Membership and epoch, once this peer is initialized (an uninitialized
//!    peer knows no members yet and takes what its leader sends):
//!    - a sender that is not a member, with a stale epoch, was removed:
//!      dropped, and a vote or pre-vote request is answered with a
//!      tombstone notice so the removed peer destroys itself rather than
//!      campaigning forever;
//!    - a sender that is not a member, with a newer epoch, is one this peer
//!      has not learned of yet (it lags a membership change): accepted;
//!    - any other non-member is dropped.
//!
//!    A member's message is accepted even with a stale epoch: a follower
//!    that lags a membership change keeps answering with its old epoch
//!    until it applies the change, and dropping its answers would keep the
//!    leader from learning its progress, and so from telling it the commit
//!    that lets it catch up (TiKV's rule too).
//! 5. Well-formed content: a `MsgAppend`'s entries follow its index one by
//!    one, with terms that never decrease, from its `log_term` up to its
//!    `term`; an append answer acknowledges no index past this log's end.
//!    The log's own `assert!`s stay invariants, never reachable from the
//!    network.
//!
//! Only a message that passes may teach the peer its sender's address
//! (`Peer::peer_cache`).

use std::time::Instant;

use kvproto::eraftpb::{Message, MessageType};
use kvproto::metapb;
use kvproto::raft_serverpb::RaftMessage;
use raft::is_local_msg;
use slog::{debug, info};

use crate::context::StoreContext;
use crate::peer::Peer;

/// What to do with a raft message from the network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Step it.
    Accept,
    /// Drop it, for the reason given.
    Drop(String),
    /// Drop it and tell its sender it is no longer a member.
    TellSenderRemoved,
    /// This peer is stale (removed, or replaced by a newer incarnation).
    DestroySelf,
}

fn drop(reason: impl Into<String>) -> Verdict {
    Verdict::Drop(reason.into())
}

/// Whether epoch `a` is older than `b` in either dimension.
fn is_epoch_stale(a: &metapb::RegionEpoch, b: &metapb::RegionEpoch) -> bool {
    a.conf_ver < b.conf_ver || a.version < b.version
}

/// Whether epoch `a` is newer than `b` in either dimension.
fn is_epoch_newer(a: &metapb::RegionEpoch, b: &metapb::RegionEpoch) -> bool {
    a.conf_ver > b.conf_ver || a.version > b.version
}

/// The ingress check for `msg`, addressed to peer `me` of `region` (see
/// the module doc), whose raft log ends at `last_index`.
pub fn check_raft_message(
    region: &metapb::Region,
    me: &metapb::Peer,
    last_index: u64,
    msg: &RaftMessage,
) -> Verdict {
    let my_epoch = region.region_epoch.unwrap_or_default();
    let msg_epoch = msg.region_epoch.unwrap_or_default();
    let (Some(from), Some(to)) = (msg.from_peer, msg.to_peer) else {
        return drop("no sender or no target");
    };
    if msg.is_tombstone {
        if to.id != me.id {
            return drop("tombstone notice for another peer");
        }
        // Only a newer membership can have removed this peer; an older or
        // equal one is a stale or crafted notice.
        return if msg_epoch.conf_ver > my_epoch.conf_ver {
            Verdict::DestroySelf
        } else {
            drop("tombstone notice from an epoch not newer than ours")
        };
    }
    if to.store_id != me.store_id {
        return drop("message for another store");
    }
    if to.id < me.id {
        return drop("message for an older incarnation of this peer");
    }
    if to.id > me.id {
        return Verdict::DestroySelf;
    }
    let Some(message) = &msg.message else {
        return drop("no raft message");
    };
    if message.from != from.id || message.to != to.id {
        return drop("raft message addressed unlike its envelope");
    }
    if is_local_msg(message.msg_type()) {
        return drop(format!(
            "local-only message kind {:?} from the network",
            message.msg_type()
        ));
    }
    let initialized = !region.peers.is_empty();
    if initialized {
        let is_member = region
            .peers
            .iter()
            .any(|p| p.id == from.id && p.store_id == from.store_id);
        if !is_member {
            if is_epoch_stale(&msg_epoch, &my_epoch) {
                return if matches!(
                    message.msg_type(),
                    MessageType::MsgRequestVote | MessageType::MsgPreVote
                ) {
                    Verdict::TellSenderRemoved
                } else {
                    drop("stale epoch from a peer no longer in the region")
                };
            }
            if !is_epoch_newer(&msg_epoch, &my_epoch) {
                return drop("sender is not a member of the region");
            }
        }
    }
    check_content(message, last_index)
}

/// Step 5 of the module doc.
fn check_content(message: &Message, last_index: u64) -> Verdict {
    match message.msg_type() {
        MessageType::MsgAppend => {
            if message.log_term > message.term {
                return drop("append whose previous entry is of a later term");
            }
            if message
                .index
                .checked_add(message.entries.len() as u64)
                .is_none()
            {
                return drop("append past the end of the index space");
            }
            let mut expected_index = message.index;
            let mut previous_term = message.log_term;
            for entry in &message.entries {
                expected_index += 1;
                if entry.index != expected_index {
                    return drop(format!(
                        "append entries not contiguous: entry {} where {expected_index} belongs",
                        entry.index
                    ));
                }
                if entry.term < previous_term || entry.term > message.term {
                    return drop(format!(
                        "append entry {} of term {} out of order (previous term {previous_term}, message term {})",
                        entry.index, entry.term, message.term
                    ));
                }
                previous_term = entry.term;
            }
            Verdict::Accept
        }
        MessageType::MsgAppendResponse if !message.reject && message.index > last_index => {
            drop("append answer acknowledges entries this log does not have")
        }
        _ => Verdict::Accept,
    }
}

impl Peer {
    /// Runs the ingress check on `msg` (plus, for a snapshot, the checks
    /// that need the store: `check_snapshot_message`), and answers a
    /// removed sender. An accepted message counts as hearing from its
    /// sender (the down peers a leader reports). Returns the verdict for the
    /// caller to act on.
    pub(crate) fn check_incoming(&mut self, ctx: &StoreContext, msg: &RaftMessage) -> Verdict {
        let last_index = self.raft_group.raft().raft_log().last_index();
        let verdict = check_raft_message(self.region(), &self.meta, last_index, msg);
        match &verdict {
            Verdict::Accept => {
                if let Some(from) = msg.from_peer {
                    self.peer_liveness.on_message(from.id, Instant::now());
                }
                if let Some(message) = &msg.message
                    && message.msg_type() == MessageType::MsgSnapshot
                    && !self.check_snapshot_message(ctx, message)
                {
                    return drop("snapshot refused");
                }
            }
            Verdict::Drop(reason) => {
                debug!(self.logger, "dropped a raft message"; "reason" => reason,
                    "from" => ?msg.from_peer, "to" => ?msg.to_peer,
                    "msg" => ?msg.message.as_ref().map(|m| m.msg_type()));
            }
            Verdict::TellSenderRemoved => self.send_tombstone_notice(ctx, msg),
            Verdict::DestroySelf => {
                info!(self.logger, "peer is stale; destroying it";
                    "from" => ?msg.from_peer, "to" => ?msg.to_peer,
                    "is_tombstone" => msg.is_tombstone, "msg_epoch" => ?msg.region_epoch);
            }
        }
        verdict
    }

    /// Tells the sender of `msg` that it is no longer in the region: a
    /// message without a raft message, `is_tombstone` set, carrying our
    /// (newer) epoch.
    fn send_tombstone_notice(&self, ctx: &StoreContext, msg: &RaftMessage) {
        info!(self.logger, "telling a removed peer to destroy itself"; "peer" => ?msg.from_peer);
        let notice = RaftMessage {
            region_id: self.region_id,
            from_peer: Some(self.meta),
            to_peer: msg.from_peer,
            region_epoch: self.region().region_epoch,
            is_tombstone: true,
            ..Default::default()
        };
        // Best effort: the removed peer asks again with its next vote.
        let _ = ctx.transport.send(notice);
    }
}

#[cfg(test)]
mod tests {
    use kvproto::eraftpb::Entry;

    use super::*;

    fn peer(id: u64) -> metapb::Peer {
        metapb::Peer { id, store_id: id }
    }

    fn epoch(conf_ver: u64, version: u64) -> metapb::RegionEpoch {
        metapb::RegionEpoch { conf_ver, version }
    }

    /// Region 1 with members 1, 2, 3 (peer id = store id) at epoch (5, 1).
    fn region() -> metapb::Region {
        metapb::Region {
            id: 1,
            region_epoch: Some(epoch(5, 1)),
            peers: vec![peer(1), peer(2), peer(3)],
            ..Default::default()
        }
    }

    fn message(from: u64, to: u64, t: MessageType, msg_epoch: metapb::RegionEpoch) -> RaftMessage {
        RaftMessage {
            region_id: 1,
            from_peer: Some(peer(from)),
            to_peer: Some(peer(to)),
            region_epoch: Some(msg_epoch),
            message: Some(Message {
                msg_type: t as i32,
                from,
                to,
                term: 7,
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn is_drop(v: &Verdict) -> bool {
        matches!(v, Verdict::Drop(_))
    }

    #[test]
    fn local_only_kinds_are_refused() {
        for t in [
            MessageType::MsgPropose,
            MessageType::MsgHup,
            MessageType::MsgBeat,
        ] {
            let msg = message(2, 1, t, epoch(5, 1));
            assert!(is_drop(&check_raft_message(&region(), &peer(1), 10, &msg)));
        }
        let heartbeat = message(2, 1, MessageType::MsgHeartbeat, epoch(5, 1));
        assert_eq!(
            check_raft_message(&region(), &peer(1), 10, &heartbeat),
            Verdict::Accept
        );
    }

    /// A peer removed while cut off campaigns with a stale epoch: it is
    /// told to destroy itself; its other messages are dropped.
    #[test]
    fn a_removed_sender_is_told() {
        let vote = message(4, 1, MessageType::MsgRequestVote, epoch(4, 1));
        assert_eq!(
            check_raft_message(&region(), &peer(1), 10, &vote),
            Verdict::TellSenderRemoved
        );
        let heartbeat = message(4, 1, MessageType::MsgHeartbeat, epoch(4, 1));
        assert!(is_drop(&check_raft_message(
            &region(),
            &peer(1),
            10,
            &heartbeat
        )));
        // A non-member at our own epoch is dropped too.
        let same = message(4, 1, MessageType::MsgRequestVote, epoch(5, 1));
        assert!(is_drop(&check_raft_message(&region(), &peer(1), 10, &same)));
    }

    /// A member lagging a membership change answers with its old epoch; a
    /// new member this peer has not learned of yet has a newer one.
    #[test]
    fn lagging_members_and_newer_members_are_heard() {
        let lagging = message(2, 1, MessageType::MsgAppendResponse, epoch(4, 1));
        assert_eq!(
            check_raft_message(&region(), &peer(1), 10, &lagging),
            Verdict::Accept
        );
        let newer = message(4, 1, MessageType::MsgAppend, epoch(6, 1));
        assert_eq!(
            check_raft_message(&region(), &peer(1), 10, &newer),
            Verdict::Accept
        );
        // An uninitialized peer takes its first leader's messages.
        let empty = metapb::Region {
            id: 1,
            ..Default::default()
        };
        let first = message(2, 5, MessageType::MsgHeartbeat, epoch(6, 1));
        let me = metapb::Peer { id: 5, store_id: 5 };
        let first = RaftMessage {
            to_peer: Some(me),
            ..first
        };
        assert_eq!(check_raft_message(&empty, &me, 0, &first), Verdict::Accept);
    }

    #[test]
    fn tombstone_notices_need_a_newer_epoch() {
        let mut notice = message(2, 1, MessageType::MsgHeartbeat, epoch(6, 1));
        notice.message = None;
        notice.is_tombstone = true;
        assert_eq!(
            check_raft_message(&region(), &peer(1), 10, &notice),
            Verdict::DestroySelf
        );
        notice.region_epoch = Some(epoch(5, 1));
        assert!(is_drop(&check_raft_message(
            &region(),
            &peer(1),
            10,
            &notice
        )));
    }

    #[test]
    fn addressing_must_be_consistent() {
        // For a newer incarnation of this peer: this one is stale.
        let mut newer = message(2, 1, MessageType::MsgHeartbeat, epoch(6, 1));
        newer.to_peer = Some(metapb::Peer { id: 9, store_id: 1 });
        if let Some(m) = newer.message.as_mut() {
            m.to = 9;
        }
        assert_eq!(
            check_raft_message(&region(), &peer(1), 10, &newer),
            Verdict::DestroySelf
        );
        // The inner message names another sender than the envelope.
        let mut forged = message(2, 1, MessageType::MsgHeartbeat, epoch(5, 1));
        if let Some(m) = forged.message.as_mut() {
            m.from = 3;
        }
        assert!(is_drop(&check_raft_message(
            &region(),
            &peer(1),
            10,
            &forged
        )));
        let mut anonymous = message(2, 1, MessageType::MsgHeartbeat, epoch(5, 1));
        anonymous.from_peer = None;
        assert!(is_drop(&check_raft_message(
            &region(),
            &peer(1),
            10,
            &anonymous
        )));
    }

    fn append(index: u64, log_term: u64, entries: &[(u64, u64)]) -> RaftMessage {
        let mut msg = message(2, 1, MessageType::MsgAppend, epoch(5, 1));
        if let Some(m) = msg.message.as_mut() {
            m.index = index;
            m.log_term = log_term;
            m.entries = entries
                .iter()
                .map(|&(index, term)| Entry {
                    index,
                    term,
                    ..Default::default()
                })
                .collect();
        }
        msg
    }

    #[test]
    fn malformed_appends_are_dropped() {
        let check = |msg: &RaftMessage| check_raft_message(&region(), &peer(1), 10, msg);
        assert_eq!(check(&append(5, 6, &[(6, 6), (7, 7)])), Verdict::Accept);
        // A gap, a repeat, a term going back, a term past the message's.
        assert!(is_drop(&check(&append(5, 6, &[(6, 6), (8, 7)]))));
        assert!(is_drop(&check(&append(5, 6, &[(6, 6), (6, 6)]))));
        assert!(is_drop(&check(&append(5, 6, &[(6, 6), (7, 5)]))));
        assert!(is_drop(&check(&append(5, 6, &[(6, 8)]))));
        assert!(is_drop(&check(&append(5, 5, &[(6, 4)]))));
        // A previous entry of a later term than the message.
        assert!(is_drop(&check(&append(5, 9, &[]))));
        // Index arithmetic that would overflow.
        assert!(is_drop(&check(&append(u64::MAX, 6, &[(0, 6)]))));
    }

    #[test]
    fn append_answers_past_the_log_are_dropped() {
        let mut answer = message(2, 1, MessageType::MsgAppendResponse, epoch(5, 1));
        if let Some(m) = answer.message.as_mut() {
            m.index = 11;
        }
        assert!(is_drop(&check_raft_message(
            &region(),
            &peer(1),
            10,
            &answer
        )));
        if let Some(m) = answer.message.as_mut() {
            m.index = 10;
        }
        assert_eq!(
            check_raft_message(&region(), &peer(1), 10, &answer),
            Verdict::Accept
        );
    }
}
