//! Operators: the scheduling steps a region is asked to take, handed to its
//! leader in heartbeat responses. Tests script them; with scheduling on, the
//! checkers and balancers (`schedule`) make them.
//!
//! A region has at most one operator. On every accepted heartbeat the
//! scheduler asks the operator for its next step given the region's state as
//! just reported; the operator is repeated until that state shows it done, then
//! dropped. The store must therefore treat a repeated step as a no-op.
//!
//! ```text
//! AddPeer(p):        p not in region ──ChangePeer(AddNode p)──▶ p in region, pending ──(wait)──▶ p in region, caught up: done
//! RemovePeer(p):     p in region ──ChangePeer(RemoveNode p)──▶ p not in region: done
//! TransferLeader(p): leader != p ──TransferLeader(p)──▶ leader == p: done
//!                    p not in region: cancelled
//! MovePeer(f, t):    t not in region ──AddNode t──▶ t pending ──(wait)──▶ t caught up
//!                      ──[f leads: TransferLeader t]──▶ ──RemoveNode f──▶ f not in region: done
//!                    f gone before t was added: cancelled
//! ```
//!
//! Peers are matched by peer id, which is unique in the cluster.
//!
//! [`Operator::validate`] is what an operator must satisfy when it is
//! scheduled (the checkers' operators and `MemoryScheduler::schedule_operator`;
//! the scripted test hooks skip it, since TinyKV's scenarios script steps a
//! checker never takes, such as removing the leader itself).

use kvproto::eraftpb::ConfChangeType;
use kvproto::metapb::{Peer, Region};
use kvproto::schedulerpb::{ChangePeer, TransferLeader};

/// A scheduling step for one region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Operator {
    /// Add this peer to the region; done once it is a member and no longer
    /// pending (it has caught up with the leader's log).
    AddPeer(Peer),
    /// Remove this peer from the region; done once it is not a member.
    RemovePeer(Peer),
    /// Make this peer the region's leader; done once a heartbeat comes from it.
    TransferLeader(Peer),
    /// Add `to`, wait until it caught up, move the leadership to it if
    /// `from` leads, then remove `from`; done once `from` is not a member.
    MovePeer {
        /// The peer that goes.
        from: Peer,
        /// The new peer (a fresh id) on the store the replica moves to.
        to: Peer,
    },
}

/// What the operator asks for, given the region's latest state.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OperatorStep {
    /// The region's state shows the operator done: drop it.
    Finished,
    /// Under way, nothing to ask this time (an added peer is catching up).
    Wait,
    /// Ask the leader to add or remove a peer.
    ChangePeer(ChangePeer),
    /// Ask the leader to hand leadership to a peer.
    TransferLeader(TransferLeader),
    /// The region's state makes the operator impossible: drop it.
    Cancel(&'static str),
}

impl Operator {
    /// The next step, from the region, its leader and its pending peers as the
    /// leader just reported them.
    pub(crate) fn next_step(
        &self,
        region: &Region,
        leader: &Peer,
        pending: &[Peer],
    ) -> OperatorStep {
        let is_member = |peer: &Peer| region.peers.iter().any(|p| p.id == peer.id);
        match self {
            Operator::AddPeer(peer) if !is_member(peer) => OperatorStep::ChangePeer(ChangePeer {
                peer: Some(*peer),
                change_type: ConfChangeType::AddNode as i32,
            }),
            Operator::AddPeer(peer) if pending.iter().any(|p| p.id == peer.id) => {
                OperatorStep::Wait
            }
            Operator::AddPeer(_) => OperatorStep::Finished,
            Operator::RemovePeer(peer) if is_member(peer) => OperatorStep::ChangePeer(ChangePeer {
                peer: Some(*peer),
                change_type: ConfChangeType::RemoveNode as i32,
            }),
            Operator::RemovePeer(_) => OperatorStep::Finished,
            Operator::TransferLeader(peer) if leader.id == peer.id => OperatorStep::Finished,
            Operator::TransferLeader(peer) if !is_member(peer) => {
                OperatorStep::Cancel("the new leader is not a member")
            }
            Operator::TransferLeader(peer) => {
                OperatorStep::TransferLeader(TransferLeader { peer: Some(*peer) })
            }
            Operator::MovePeer { from, to } if !is_member(to) => {
                if is_member(from) {
                    OperatorStep::ChangePeer(ChangePeer {
                        peer: Some(*to),
                        change_type: ConfChangeType::AddNode as i32,
                    })
                } else {
                    OperatorStep::Cancel("the peer to move left before its replacement came")
                }
            }
            // Done once the old peer is gone, whatever the new one does
            // afterwards: if it falls behind for good (its store failed),
            // replacing it is the replica checker's job, which an operator
            // still waiting for it would block until its deadline.
            Operator::MovePeer { from, .. } if !is_member(from) => OperatorStep::Finished,
            Operator::MovePeer { to, .. } if pending.iter().any(|p| p.id == to.id) => {
                OperatorStep::Wait
            }
            Operator::MovePeer { from, to } if leader.id == from.id => {
                OperatorStep::TransferLeader(TransferLeader { peer: Some(*to) })
            }
            Operator::MovePeer { from, .. } => OperatorStep::ChangePeer(ChangePeer {
                peer: Some(*from),
                change_type: ConfChangeType::RemoveNode as i32,
            }),
        }
    }

    /// The peer the operator needs to answer: the one it adds, or the one
    /// it makes leader (`None` for a removal).
    pub(crate) fn target(&self) -> Option<&Peer> {
        match self {
            Operator::AddPeer(peer) | Operator::TransferLeader(peer) => Some(peer),
            Operator::MovePeer { to, .. } => Some(to),
            Operator::RemovePeer(_) => None,
        }
    }

    /// Whether the operator only moves the leadership (its timeout is the
    /// short one).
    pub(crate) fn is_leader_only(&self) -> bool {
        matches!(self, Operator::TransferLeader(_))
    }

    /// Checks the operator against the region as last reported, before it is
    /// scheduled. `store_ok` says whether a store may receive a new peer (it
    /// exists, is up and not down), and why not.
    ///
    /// Refused: adding a peer whose id is 0 or already a member, or on a store
    /// that is unusable or already holds a peer of the region; removing a
    /// non-member or the leader (the leadership must move away first);
    /// transferring to a non-member or a pending (not caught up) peer; moving
    /// a peer that is not a member.
    pub(crate) fn validate(
        &self,
        region: &Region,
        leader: Option<&Peer>,
        pending: &[Peer],
        store_ok: impl Fn(u64) -> Result<(), String>,
    ) -> Result<(), String> {
        let is_member = |peer: &Peer| region.peers.iter().any(|p| p.id == peer.id);
        let check_new = |peer: &Peer| {
            if peer.id == 0 {
                return Err("the new peer has id 0".to_owned());
            }
            if is_member(peer) {
                return Err(format!("peer {} is already a member", peer.id));
            }
            if region.peers.iter().any(|p| p.store_id == peer.store_id) {
                return Err(format!(
                    "store {} already holds a peer of the region",
                    peer.store_id
                ));
            }
            store_ok(peer.store_id).map_err(|why| format!("store {}: {why}", peer.store_id))
        };
        match self {
            Operator::AddPeer(peer) => check_new(peer),
            Operator::RemovePeer(peer) => {
                if !is_member(peer) {
                    Err(format!("peer {} is not a member", peer.id))
                } else if leader.is_some_and(|l| l.id == peer.id) {
                    Err(format!(
                        "peer {} leads the region: transfer the leader away first",
                        peer.id
                    ))
                } else {
                    Ok(())
                }
            }
            Operator::TransferLeader(peer) => {
                if !is_member(peer) {
                    Err(format!("peer {} is not a voting member", peer.id))
                } else if pending.iter().any(|p| p.id == peer.id) {
                    Err(format!("peer {} has not caught up", peer.id))
                } else {
                    Ok(())
                }
            }
            Operator::MovePeer { from, to } => {
                if !is_member(from) {
                    return Err(format!("peer {} is not a member", from.id));
                }
                check_new(to)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use kvproto::metapb::RegionEpoch;

    use super::*;

    fn new_test_region(peers: &[Peer]) -> Region {
        Region {
            id: 1,
            region_epoch: Some(RegionEpoch {
                conf_ver: 1,
                version: 1,
            }),
            peers: peers.to_vec(),
            ..Default::default()
        }
    }

    const P1: Peer = Peer { id: 1, store_id: 1 };
    const P2: Peer = Peer { id: 2, store_id: 2 };

    #[test]
    fn test_add_peer_steps() {
        let op = Operator::AddPeer(P2);
        let want = OperatorStep::ChangePeer(ChangePeer {
            peer: Some(P2),
            change_type: ConfChangeType::AddNode as i32,
        });
        assert_eq!(op.next_step(&new_test_region(&[P1]), &P1, &[]), want);
        assert_eq!(
            op.next_step(&new_test_region(&[P1, P2]), &P1, &[P2]),
            OperatorStep::Wait
        );
        assert_eq!(
            op.next_step(&new_test_region(&[P1, P2]), &P1, &[]),
            OperatorStep::Finished
        );
    }

    #[test]
    fn test_remove_peer_steps() {
        let op = Operator::RemovePeer(P2);
        let want = OperatorStep::ChangePeer(ChangePeer {
            peer: Some(P2),
            change_type: ConfChangeType::RemoveNode as i32,
        });
        assert_eq!(op.next_step(&new_test_region(&[P1, P2]), &P1, &[P2]), want);
        assert_eq!(
            op.next_step(&new_test_region(&[P1]), &P1, &[]),
            OperatorStep::Finished
        );
    }

    #[test]
    fn test_transfer_leader_steps() {
        let op = Operator::TransferLeader(P2);
        let region = new_test_region(&[P1, P2]);
        let want = OperatorStep::TransferLeader(TransferLeader { peer: Some(P2) });
        assert_eq!(op.next_step(&region, &P1, &[]), want);
        assert_eq!(op.next_step(&region, &P2, &[]), OperatorStep::Finished);
    }

    const P3: Peer = Peer { id: 3, store_id: 3 };

    #[test]
    fn test_transfer_to_a_non_member_is_cancelled() {
        let op = Operator::TransferLeader(P3);
        let step = op.next_step(&new_test_region(&[P1, P2]), &P1, &[]);
        assert!(matches!(step, OperatorStep::Cancel(_)), "{step:?}");
    }

    #[test]
    fn test_move_peer_steps() {
        // Move the leader's replica from store 1 to store 3.
        let op = Operator::MovePeer { from: P1, to: P3 };
        let add = OperatorStep::ChangePeer(ChangePeer {
            peer: Some(P3),
            change_type: ConfChangeType::AddNode as i32,
        });
        assert_eq!(op.next_step(&new_test_region(&[P1, P2]), &P1, &[]), add);
        let grown = new_test_region(&[P1, P2, P3]);
        assert_eq!(op.next_step(&grown, &P1, &[P3]), OperatorStep::Wait);
        assert_eq!(
            op.next_step(&grown, &P1, &[]),
            OperatorStep::TransferLeader(TransferLeader { peer: Some(P3) }),
            "the leader moves away before its peer is removed"
        );
        let remove = OperatorStep::ChangePeer(ChangePeer {
            peer: Some(P1),
            change_type: ConfChangeType::RemoveNode as i32,
        });
        assert_eq!(op.next_step(&grown, &P3, &[]), remove);
        assert_eq!(op.next_step(&grown, &P2, &[]), remove);
        assert_eq!(
            op.next_step(&new_test_region(&[P2, P3]), &P3, &[]),
            OperatorStep::Finished
        );
        // The peer to move left before the new one came: nothing to do.
        let step = op.next_step(&new_test_region(&[P2]), &P2, &[]);
        assert!(matches!(step, OperatorStep::Cancel(_)), "{step:?}");
    }

    #[test]
    fn test_move_peer_is_finished_once_the_old_peer_left_even_if_the_new_one_lags() {
        // The new peer caught up, the old one was removed, then the new
        // one's store failed and its leader reports it pending: the move is
        // over, so the replica checker is free to replace the lagging peer.
        let op = Operator::MovePeer { from: P1, to: P3 };
        assert_eq!(
            op.next_step(&new_test_region(&[P2, P3]), &P2, &[P3]),
            OperatorStep::Finished
        );
    }

    #[test]
    fn test_validation_refusals() {
        let region = new_test_region(&[P1, P2]);
        let all_ok = |_| Ok(());
        let must_refuse =
            |op: Operator, store_ok: &dyn Fn(u64) -> Result<(), String>, part: &str| {
                let err = op
                    .validate(&region, Some(&P1), &[P2], store_ok)
                    .expect_err("refused");
                assert!(err.contains(part), "{op:?}: {err}");
            };
        let down = |id: u64| Err(format!("store {id} is down"));
        must_refuse(Operator::AddPeer(P3), &down, "is down");
        must_refuse(
            Operator::AddPeer(Peer { id: 4, store_id: 2 }),
            &all_ok,
            "already holds",
        );
        must_refuse(Operator::AddPeer(P2), &all_ok, "already a member");
        must_refuse(
            Operator::AddPeer(Peer { id: 0, store_id: 3 }),
            &all_ok,
            "id 0",
        );
        must_refuse(Operator::RemovePeer(P1), &all_ok, "transfer the leader");
        must_refuse(Operator::RemovePeer(P3), &all_ok, "not a member");
        must_refuse(Operator::TransferLeader(P3), &all_ok, "voting member");
        must_refuse(Operator::TransferLeader(P2), &all_ok, "caught up");
        must_refuse(
            Operator::MovePeer {
                from: P3,
                to: Peer { id: 9, store_id: 9 },
            },
            &all_ok,
            "not a member",
        );
        must_refuse(
            Operator::MovePeer {
                from: P1,
                to: Peer { id: 9, store_id: 2 },
            },
            &all_ok,
            "already holds",
        );

        let ok = |op: Operator| op.validate(&region, Some(&P1), &[], all_ok);
        ok(Operator::AddPeer(P3)).unwrap();
        ok(Operator::RemovePeer(P2)).unwrap();
        ok(Operator::TransferLeader(P2)).unwrap();
        ok(Operator::MovePeer { from: P1, to: P3 }).unwrap();
    }

    #[test]
    fn test_peers_match_by_id() {
        // A peer on the same store with another id is not the one to add.
        let op = Operator::AddPeer(Peer { id: 4, store_id: 2 });
        let step = op.next_step(&new_test_region(&[P1, P2]), &P1, &[]);
        assert!(matches!(step, OperatorStep::ChangePeer(_)), "{step:?}");
    }
}
