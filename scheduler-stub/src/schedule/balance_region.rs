//! Balance-region (TinyKV 3C's `balance_region.go` behaviour): move one
//! region's peer from a store with much region size to one with little.
//!
//! 1. Suitable stores are healthy (up, not down). Sort them by region size
//!    (each region counted at least 1), biggest first.
//! 2. From the biggest store that offers one, pick a region: those whose
//!    peer there is pending first, then those it follows, then those it
//!    leads; only regions with exactly `max_replicas` peers, all healthy, and
//!    no operator under way. Within a class, by region id.
//! 3. The target is the suitable store with the least region size without a
//!    peer of the region.
//! 4. Move only if `size(source) - size(target) > factor * size(region)`
//!    (factor 2): the move shrinks the difference by twice the region's
//!    size, so the source stays at least as big as the target and the region
//!    never moves back (no ping-pong).
//!
//! If no region of the biggest store can move, the next biggest is tried.

use super::{ClusterView, Plan, RegionView, StoreView};

/// One move that balances region size, if any is worth it.
pub(crate) fn schedule(view: &ClusterView, tolerance_factor: u64) -> Option<Plan> {
    let mut sources: Vec<&StoreView> = view.stores.values().filter(|s| s.is_healthy()).collect();
    if sources.len() < 2 {
        return None;
    }
    sources.sort_by_key(|s| (std::cmp::Reverse(s.region_size), s.id));
    for source in sources {
        for region in candidates(view, source.id) {
            let Some(from) = region.peer_on(source.id) else {
                continue;
            };
            let Some(target) = view.best_target_for(&region.region) else {
                continue;
            };
            let gap = source.region_size.saturating_sub(target.region_size);
            if gap > tolerance_factor.saturating_mul(region.size) {
                return Some(Plan::MovePeer {
                    from,
                    to_store: target.id,
                });
            }
        }
    }
    None
}

/// The regions of `store_id` that may move, in the order to try them:
/// pending there, then followed there, then led there.
fn candidates(view: &ClusterView, store_id: u64) -> Vec<&RegionView> {
    let mut found: Vec<(u8, &RegionView)> = view
        .regions
        .values()
        .filter(|r| !r.has_operator && r.region.peers.len() == view.max_replicas)
        .filter(|r| r.leader.is_some())
        .filter(|r| r.region.peers.iter().all(|p| view.is_peer_healthy(r, p)))
        .filter_map(|r| {
            let peer = r.peer_on(store_id)?;
            let class = if r.is_pending(&peer) {
                0
            } else if !r.is_leader(&peer) {
                1
            } else {
                2
            };
            Some((class, r))
        })
        .collect();
    // Stable: `regions` iterates by id, so each class stays in id order.
    found.sort_by_key(|(class, _)| *class);
    found.into_iter().map(|(_, r)| r).collect()
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

    /// `n` regions with peers on stores 1, 2, 3, led on store 1, ids from `first`.
    fn regions_on_123(first: u64, n: u64) -> Vec<RegionView> {
        (first..first + n)
            .map(|id| new_test_region(id, &[1, 2, 3], 1))
            .collect()
    }

    /// Applies a move to the view, as if the operator had finished.
    fn apply(view: &mut ClusterView, plan: &Plan) {
        let Plan::MovePeer { from, to_store } = plan else {
            panic!("not a move: {plan:?}");
        };
        let region = view
            .regions
            .values_mut()
            .find(|r| r.region.peers.contains(from))
            .expect("moved peer's region");
        let peers = &mut region.region.peers;
        peers.retain(|p| p != from);
        peers.push(kvproto::metapb::Peer {
            id: from.id + 10_000,
            store_id: *to_store,
        });
        let regions = std::mem::take(&mut view.regions).into_values().collect();
        let stores = view.stores.values().cloned().collect();
        *view = ClusterView::new(stores, regions, view.max_replicas);
    }

    #[test]
    fn test_moves_from_biggest_to_smallest_beyond_tolerance() {
        // Stores 1-3 hold 5 regions each, store 4 none: 5 - 0 > 2 * 1.
        let view = new_test_view(&[1, 2, 3, 4], regions_on_123(1, 5));
        assert_eq!(
            schedule(&view, 2),
            Some(Plan::MovePeer {
                from: peer(1, 1),
                to_store: 4
            }),
            "ties go to the lowest store id; store 1 leads all it has"
        );
        // Store 1 biggest, following regions 1-5 and leading region 6: a
        // followed region goes first.
        let mut regions: Vec<RegionView> = (1..=5)
            .map(|id| new_test_region(id, &[1, 2, 3], 2))
            .collect();
        regions.push(new_test_region(6, &[1, 4, 5], 1));
        let view = new_test_view(&[1, 2, 3, 4, 5, 6], regions);
        assert_eq!(
            schedule(&view, 2),
            Some(Plan::MovePeer {
                from: peer(1, 1),
                to_store: 6
            }),
            "a follower goes before a leader"
        );
    }

    #[test]
    fn test_no_move_within_tolerance() {
        // 2 - 0 is not more than 2 * 1.
        let view = new_test_view(&[1, 2, 3, 4], regions_on_123(1, 2));
        assert_eq!(schedule(&view, 2), None);
        // With big regions the gap in size is what counts.
        let mut regions = regions_on_123(1, 3);
        for r in &mut regions {
            r.size = 2;
        }
        // Store sizes 6, 6, 6, 0: 6 > 2 * 2, a move.
        let view = new_test_view(&[1, 2, 3, 4], regions.clone());
        assert!(schedule(&view, 2).is_some());
        // One region of size 3 on stores 1-3 and nothing else: 3 - 0 = 3, not > 6.
        let mut one = new_test_region(1, &[1, 2, 3], 1);
        one.size = 3;
        let view = new_test_view(&[1, 2, 3, 4], vec![one]);
        assert_eq!(schedule(&view, 2), None);
    }

    #[test]
    fn test_balancing_converges_without_ping_pong() {
        let mut view = new_test_view(&[1, 2, 3, 4], regions_on_123(1, 8));
        let mut moves = 0;
        while let Some(plan) = schedule(&view, 2) {
            let Plan::MovePeer { from, to_store } = plan else {
                panic!("{plan:?}");
            };
            apply(&mut view, &plan);
            moves += 1;
            assert!(moves < 50, "balancing does not converge");
            // The source is still at least as big as the target: the move
            // can never be undone by the same rule.
            let size = |id| view.stores[&id].region_size;
            assert!(
                size(from.store_id) >= size(to_store),
                "move {from:?} -> {to_store} overshot"
            );
        }
        let sizes: Vec<u64> = view.stores.values().map(|s| s.region_size).collect();
        // 8, 8, 8, 0 -> 6, 6, 7, 5: within the tolerance, after 5 moves.
        assert_eq!(sizes, vec![6, 6, 7, 5]);
        assert_eq!(moves, 5);
    }

    #[test]
    fn test_pending_then_followers_then_leaders() {
        let mut regions = regions_on_123(1, 5);
        regions[3].pending = vec![peer(4, 2)];
        // Store 2 is the biggest (it holds region 9 too).
        regions.push(new_test_region(9, &[2, 4, 5], 2));
        let view = new_test_view(&[1, 2, 3, 4, 5, 6], regions);
        assert_eq!(
            schedule(&view, 2),
            Some(Plan::MovePeer {
                from: peer(4, 2),
                to_store: 6
            }),
            "the pending peer's region first"
        );
    }

    #[test]
    fn test_skips_unsuitable_stores_and_regions() {
        let mut view = new_test_view(&[1, 2, 3, 4], regions_on_123(1, 5));
        view.stores.get_mut(&4).unwrap().is_down = true;
        assert_eq!(schedule(&view, 2), None, "a down store is no target");

        let mut view = new_test_view(&[1, 2, 3, 4], regions_on_123(1, 5));
        for r in view.regions.values_mut() {
            r.has_operator = true;
        }
        assert_eq!(schedule(&view, 2), None, "regions with operators stay");

        let regions = (1..=5).map(|id| new_test_region(id, &[1, 2], 1)).collect();
        let view = new_test_view(&[1, 2, 3, 4], regions);
        assert_eq!(
            schedule(&view, 2),
            None,
            "only regions with max_replicas peers"
        );
    }
}
