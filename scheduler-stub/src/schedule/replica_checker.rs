//! The replica checker: keeps every region at `max_replicas` healthy peers.
//!
//! For one region, in this order:
//! 1. An unhealthy peer (its store is down, offline, tombstone or unknown,
//!    or its leader reports it down) goes first; one that is gone (down,
//!    unknown store, reported down) before one on an offline store. With more peers than
//!    `max_replicas` it is just removed; otherwise it is replaced: a peer is
//!    added on the best healthy store (least region size, then fewest
//!    regions), then the bad one is removed (`Plan::MovePeer`). With no
//!    store to move to, it stays (removing it would leave fewer replicas).
//! 2. Fewer than `max_replicas` peers: add one on the best healthy store.
//! 3. More than `max_replicas`: remove one, preferring a pending peer, then
//!    the one on the store with the most region size. The leader is never
//!    removed: if it is the one to go, the leadership moves to a healthy,
//!    caught-up follower first, and the next check removes it.
//!
//! A region without a reported leader is left alone: nobody could carry an
//! operator out.

use kvproto::metapb::Peer;

use super::{ClusterView, Plan, RegionView};

/// What region `region` needs, if anything.
pub(crate) fn check(view: &ClusterView, region: &RegionView) -> Option<Plan> {
    let leader = region.leader?;
    let max = view.max_replicas.max(1);
    let peers = &region.region.peers;
    let unhealthy: Vec<Peer> = peers
        .iter()
        .filter(|p| !view.is_peer_healthy(region, p))
        .copied()
        .collect();
    let target = view.best_target_for(&region.region).map(|s| s.id);

    // Never "replace" the leader: it just reported, so it is alive; a
    // store-down verdict on it is stale.
    // A peer that is gone (down, unknown store) before one on an offline
    // store that still serves, as PD orders them.
    let bad = unhealthy
        .iter()
        .filter(|p| p.id != leader.id)
        .min_by_key(|p| is_only_offline(view, region, p));
    if let Some(bad) = bad {
        // With a surplus the bad peer just goes; otherwise it is replaced.
        if peers.len() > max {
            return Some(Plan::RemovePeer(*bad));
        }
        if let Some(to_store) = target {
            return Some(Plan::MovePeer {
                from: *bad,
                to_store,
            });
        }
    }
    if peers.len() < max {
        return target.map(|store_id| Plan::AddPeer { store_id });
    }
    if peers.len() > max {
        let victim = removal_candidate(view, region)?;
        if victim.id != leader.id {
            return Some(Plan::RemovePeer(victim));
        }
        return new_leader_among_followers(view, region).map(Plan::TransferLeader);
    }
    None
}

/// Whether `peer` is unhealthy only because its store is offline (the store
/// is known and not down, the leader does not report the peer down).
fn is_only_offline(view: &ClusterView, region: &RegionView, peer: &Peer) -> bool {
    view.stores
        .get(&peer.store_id)
        .is_some_and(|s| !s.is_up && !s.is_down)
        && !region.is_reported_down(peer)
}

/// The peer to remove from a region with too many: pending first, then the
/// one on the store with the most region size (ties: highest store id, so
/// the choice is deterministic).
fn removal_candidate(view: &ClusterView, region: &RegionView) -> Option<Peer> {
    region
        .region
        .peers
        .iter()
        .max_by_key(|p| {
            let size = view.stores.get(&p.store_id).map_or(0, |s| s.region_size);
            (region.is_pending(p), size, p.store_id)
        })
        .copied()
}

/// A follower that can take over the leadership: healthy and caught up
/// (the one on the store with the fewest leaders).
pub(crate) fn new_leader_among_followers(view: &ClusterView, region: &RegionView) -> Option<Peer> {
    region
        .region
        .peers
        .iter()
        .filter(|p| !region.is_leader(p) && !region.is_pending(p))
        .filter(|p| view.is_peer_healthy(region, p))
        .min_by_key(|p| {
            let leaders = view.stores.get(&p.store_id).map_or(0, |s| s.leader_count);
            (leaders, p.store_id)
        })
        .copied()
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    fn new_test_view(stores: &[u64], regions: Vec<RegionView>) -> ClusterView {
        ClusterView::new(
            stores.iter().map(|&s| new_test_store(s)).collect(),
            regions,
            3,
        )
    }

    #[test]
    fn test_one_replica_gets_a_peer_on_the_emptiest_store() {
        // Store 2 holds two regions, store 3 one, store 4 none.
        let view = new_test_view(
            &[1, 2, 3, 4],
            vec![
                new_test_region(1, &[1], 1),
                new_test_region(2, &[2, 3], 2),
                new_test_region(3, &[2], 2),
            ],
        );
        let region = &view.regions[&1];
        assert_eq!(check(&view, region), Some(Plan::AddPeer { store_id: 4 }));
    }

    #[test]
    fn test_size_wins_over_count_when_picking_the_target() {
        let mut heavy = new_test_region(2, &[2], 2);
        heavy.size = 50;
        let view = new_test_view(
            &[1, 2, 3],
            vec![
                new_test_region(1, &[1], 1),
                heavy,
                new_test_region(3, &[3], 3),
                new_test_region(4, &[3], 3),
            ],
        );
        assert_eq!(
            check(&view, &view.regions[&1]),
            Some(Plan::AddPeer { store_id: 3 })
        );
    }

    #[test]
    fn test_full_region_is_left_alone() {
        let view = new_test_view(&[1, 2, 3, 4], vec![new_test_region(1, &[1, 2, 3], 1)]);
        assert_eq!(check(&view, &view.regions[&1]), None);
    }

    #[test]
    fn test_no_leader_no_plan() {
        let mut region = new_test_region(1, &[1], 1);
        region.leader = None;
        let view = new_test_view(&[1, 2, 3], vec![region]);
        assert_eq!(check(&view, &view.regions[&1]), None);
    }

    #[test]
    fn test_down_store_peer_is_replaced() {
        let mut view = new_test_view(&[1, 2, 3, 4], vec![new_test_region(1, &[1, 2, 3], 1)]);
        view.stores.get_mut(&3).unwrap().is_down = true;
        assert_eq!(
            check(&view, &view.regions[&1]),
            Some(Plan::MovePeer {
                from: peer(1, 3),
                to_store: 4
            })
        );
    }

    #[test]
    fn test_peer_reported_down_by_the_leader_is_replaced() {
        let mut region = new_test_region(1, &[1, 2, 3], 1);
        region.down = vec![peer(1, 2)];
        let view = new_test_view(&[1, 2, 3, 4], vec![region]);
        assert_eq!(
            check(&view, &view.regions[&1]),
            Some(Plan::MovePeer {
                from: peer(1, 2),
                to_store: 4
            })
        );
    }

    #[test]
    fn test_down_peer_without_a_spare_store_waits_unless_surplus() {
        let mut view = new_test_view(&[1, 2, 3], vec![new_test_region(1, &[1, 2, 3], 1)]);
        view.stores.get_mut(&2).unwrap().is_down = true;
        assert_eq!(check(&view, &view.regions[&1]), None);

        let mut view = new_test_view(&[1, 2, 3, 4], vec![new_test_region(1, &[1, 2, 3, 4], 1)]);
        view.stores.get_mut(&2).unwrap().is_down = true;
        assert_eq!(
            check(&view, &view.regions[&1]),
            Some(Plan::RemovePeer(peer(1, 2)))
        );
        // A surplus with a spare store: still just removed, not moved.
        let mut view = new_test_view(&[1, 2, 3, 4, 5], vec![new_test_region(1, &[1, 2, 3, 4], 1)]);
        view.stores.get_mut(&2).unwrap().is_down = true;
        assert_eq!(
            check(&view, &view.regions[&1]),
            Some(Plan::RemovePeer(peer(1, 2)))
        );
    }

    #[test]
    fn test_surplus_prefers_pending_then_fullest_store() {
        let mut region = new_test_region(1, &[1, 2, 3, 4], 1);
        let view = new_test_view(
            &[1, 2, 3, 4],
            vec![region.clone(), new_test_region(2, &[3], 3)],
        );
        assert_eq!(
            check(&view, &view.regions[&1]),
            Some(Plan::RemovePeer(peer(1, 3))),
            "store 3 holds the most"
        );
        region.pending = vec![peer(1, 2)];
        let view = new_test_view(&[1, 2, 3, 4], vec![region, new_test_region(2, &[3], 3)]);
        assert_eq!(
            check(&view, &view.regions[&1]),
            Some(Plan::RemovePeer(peer(1, 2))),
            "pending first"
        );
    }

    #[test]
    fn test_surplus_never_removes_the_leader() {
        // The leader's store is the fullest: its leadership moves first.
        let view = new_test_view(
            &[1, 2, 3, 4],
            vec![
                new_test_region(1, &[1, 2, 3, 4], 4),
                new_test_region(2, &[4], 4),
                new_test_region(3, &[2], 2),
            ],
        );
        assert_eq!(
            check(&view, &view.regions[&1]),
            Some(Plan::TransferLeader(peer(1, 1))),
            "to the follower on the store with the fewest leaders"
        );
    }
}
