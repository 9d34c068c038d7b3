//! Balance-leader: move one leadership from a store with many leaders to a
//! store with fewer that holds a follower of one of its regions.
//!
//! Sources are the stores not down, offline ones included: an offline store
//! still serves, and handing its leaders away helps it drain (PD does the
//! same). Targets are healthy stores (up, not down). Sources are tried from
//! the most leaders down, and for each, targets from the fewest up, so that
//! when the fullest store has no follower on an emptier one, a leader still
//! moves into the emptiest store from another (PD's "transfer in"). A leader
//! moves only if the two counts differ by more than the tolerance (1 by
//! default): the move changes the difference by 2, so with a difference of
//! at least 2 it never reverses and leaders do not move back and forth. The
//! new leader must be a healthy, caught-up follower of a region with no
//! operator under way.

use std::cmp::Reverse;

use super::{ClusterView, Plan, StoreView};

/// One leader transfer that balances leader counts, if any is worth it.
pub(crate) fn schedule(view: &ClusterView, tolerance: u64) -> Option<Plan> {
    let mut sources: Vec<&StoreView> = view.stores.values().filter(|s| !s.is_down).collect();
    sources.sort_by_key(|s| (Reverse(s.leader_count), s.id));
    let mut targets: Vec<&StoreView> = view.stores.values().filter(|s| s.is_healthy()).collect();
    targets.sort_by_key(|s| (s.leader_count, s.id));
    for source in sources {
        for target in targets.iter().filter(|t| t.id != source.id) {
            if source.leader_count.saturating_sub(target.leader_count) <= tolerance {
                // Targets only get fuller from here.
                break;
            }
            let follower = view
                .regions
                .values()
                .filter(|r| !r.has_operator)
                .filter(|r| r.leader.is_some_and(|l| l.store_id == source.id))
                .find_map(|r| {
                    let peer = r.peer_on(target.id)?;
                    (!r.is_pending(&peer) && view.is_peer_healthy(r, &peer)).then_some(peer)
                });
            if let Some(peer) = follower {
                return Some(Plan::TransferLeader(peer));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;
    use crate::schedule::RegionView;

    fn new_test_view(stores: &[u64], regions: Vec<RegionView>) -> ClusterView {
        ClusterView::new(
            stores.iter().map(|&s| new_test_store(s)).collect(),
            regions,
            3,
        )
    }

    #[test]
    fn test_moves_from_most_to_fewest_beyond_tolerance() {
        // Store 1 leads 3 regions, stores 2 and 3 none.
        let regions = (1..=3)
            .map(|id| new_test_region(id, &[1, 2, 3], 1))
            .collect();
        let view = new_test_view(&[1, 2, 3], regions);
        assert_eq!(schedule(&view, 1), Some(Plan::TransferLeader(peer(1, 2))));
    }

    #[test]
    fn test_tolerance_stops_back_and_forth() {
        // 2 leaders against 1: a difference of 1 is within the tolerance.
        let regions = vec![
            new_test_region(1, &[1, 2], 1),
            new_test_region(2, &[1, 2], 1),
            new_test_region(3, &[1, 2], 2),
        ];
        let view = new_test_view(&[1, 2], regions);
        assert_eq!(schedule(&view, 1), None);
        // 2 against 0 moves one; then 1 against 1 stays.
        let regions = vec![
            new_test_region(1, &[1, 2], 1),
            new_test_region(2, &[1, 2], 1),
        ];
        let view = new_test_view(&[1, 2], regions);
        assert_eq!(schedule(&view, 1), Some(Plan::TransferLeader(peer(1, 2))));
        let regions = vec![
            new_test_region(1, &[1, 2], 2),
            new_test_region(2, &[1, 2], 1),
        ];
        let view = new_test_view(&[1, 2], regions);
        assert_eq!(schedule(&view, 1), None, "balanced: no move back");
    }

    #[test]
    fn test_target_needs_a_follower_of_the_source() {
        // Store 3 has no leaders but no follower of store 1's regions either;
        // store 2 has one leader and a follower: it gets the leadership.
        let regions = vec![
            new_test_region(1, &[1, 2], 1),
            new_test_region(2, &[1, 2], 1),
            new_test_region(3, &[1, 2], 1),
            new_test_region(4, &[1, 2], 1),
            new_test_region(5, &[2], 2),
            new_test_region(6, &[3, 4], 4),
        ];
        let view = new_test_view(&[1, 2, 3, 4], regions);
        assert_eq!(schedule(&view, 1), Some(Plan::TransferLeader(peer(1, 2))));
    }

    #[test]
    fn test_pending_or_down_followers_do_not_lead() {
        let mut a = new_test_region(1, &[1, 2], 1);
        a.pending = vec![peer(1, 2)];
        let mut b = new_test_region(2, &[1, 2], 1);
        b.down = vec![peer(2, 2)];
        let view = new_test_view(&[1, 2], vec![a, b]);
        assert_eq!(schedule(&view, 1), None);
    }
}
