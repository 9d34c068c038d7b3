//! Operators: the scheduling steps a test (later, the binary's checkers)
//! asks of a region, handed to its leader in heartbeat responses.
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
//! ```
//!
//! Peers are matched by peer id, which is unique in the cluster.

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
            Operator::TransferLeader(peer) if leader.id != peer.id => {
                OperatorStep::TransferLeader(TransferLeader { peer: Some(*peer) })
            }
            Operator::TransferLeader(_) => OperatorStep::Finished,
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

    #[test]
    fn test_peers_match_by_id() {
        // A peer on the same store with another id is not the one to add.
        let op = Operator::AddPeer(Peer { id: 4, store_id: 2 });
        let step = op.next_step(&new_test_region(&[P1, P2]), &P1, &[]);
        assert!(matches!(step, OperatorStep::ChangePeer(_)), "{step:?}");
    }
}
