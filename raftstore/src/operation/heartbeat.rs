//! Region heartbeats: a leader tells the placement driver its region's
//! state (epoch, members, its term, which members still lag behind and
//! which it has not heard from for a while) on becoming leader, after a
//! membership change, and every few ticks.
//!
//! Down peers: the leader remembers when it last heard from each peer
//! ([`PeerLiveness`], updated by the ingress check for every accepted
//! message, `operation/raft_message.rs`). A follower silent for longer than
//! `max_peer_down_duration` is reported down, so the scheduler can replace
//! it. Silence counts only from when this peer started leading in its term
//! (or from when a member joined): a new leader has heard nothing from its
//! followers yet and must not report them all down at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use kvproto::metapb;
use kvproto::schedulerpb::DownPeer;

use crate::context::StoreContext;
use crate::peer::Peer;
use crate::scheduler::{RegionStats, region_heartbeat_request};

/// When this peer last heard from each other peer of its region.
#[derive(Debug, Default)]
pub struct PeerLiveness {
    /// The term the entries were started in. Invariant: when it differs
    /// from the current term, every entry is reset before use.
    term: u64,
    /// Peer id -> last heard (or when counting started).
    last_heard: HashMap<u64, Instant>,
}

impl PeerLiveness {
    /// A message from `peer_id` passed the ingress check at `now`.
    pub fn on_message(&mut self, peer_id: u64, now: Instant) {
        self.last_heard.insert(peer_id, now);
    }

    /// When `peer_id` was last heard from (or, for a peer never heard from
    /// since silence started counting, when it started); `None` if unknown.
    pub fn last_heard(&self, peer_id: u64) -> Option<Instant> {
        self.last_heard.get(&peer_id).copied()
    }

    /// The peers of `region` other than `self_id` not heard from for longer
    /// than `max_down` at `now`, as leader of `term`.
    pub fn down_peers(
        &mut self,
        region: &metapb::Region,
        self_id: u64,
        term: u64,
        now: Instant,
        max_down: Duration,
    ) -> Vec<DownPeer> {
        if self.term != term {
            // A new leadership: count from now.
            self.term = term;
            self.last_heard.clear();
        }
        self.last_heard
            .retain(|id, _| region.peers.iter().any(|p| p.id == *id));
        let mut down = Vec::new();
        for peer in region.peers.iter().filter(|p| p.id != self_id) {
            let heard = *self.last_heard.entry(peer.id).or_insert(now);
            let silent = now.saturating_duration_since(heard);
            if silent > max_down {
                down.push(DownPeer {
                    peer: Some(*peer),
                    down_seconds: silent.as_secs(),
                });
            }
        }
        down
    }
}

impl Peer {
    /// Reports the region to the scheduler if this peer leads it.
    pub fn heartbeat_scheduler(&mut self, ctx: &StoreContext) {
        if !self.is_leader() {
            return;
        }
        let truncated = self.raft_group.store().truncated_index();
        let pending: Vec<metapb::Peer> = self
            .raft_group
            .raft()
            .prs()
            .iter()
            .filter(|(id, pr)| **id != self.meta.id && pr.matched() < truncated)
            .filter_map(|(id, _)| self.peer_cache.get(id).copied())
            .collect();
        let term = self.term();
        let region = self.raft_group.store().region().clone();
        let down = self.peer_liveness.down_peers(
            &region,
            self.meta.id,
            term,
            Instant::now(),
            ctx.cfg.max_peer_down_duration,
        );
        ctx.scheduler.region_heartbeat(region_heartbeat_request(
            &region,
            self.meta,
            term,
            pending,
            down,
            RegionStats {
                approximate_size: self.approximate_size.unwrap_or(0),
                approximate_keys: self.approximate_keys.unwrap_or(0),
                client_sessions: self.sessions.len() as u64,
            },
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(ids: &[u64]) -> metapb::Region {
        metapb::Region {
            id: 1,
            peers: ids
                .iter()
                .map(|&id| metapb::Peer { id, store_id: id })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn test_silent_follower_is_down_after_the_limit() {
        let start = Instant::now();
        let max = Duration::from_secs(10);
        let region = region(&[1, 2, 3]);
        let mut liveness = PeerLiveness::default();
        assert!(liveness.down_peers(&region, 1, 5, start, max).is_empty());
        liveness.on_message(2, start + Duration::from_secs(8));
        let down = liveness.down_peers(&region, 1, 5, start + Duration::from_secs(11), max);
        assert_eq!(
            down,
            vec![DownPeer {
                peer: Some(metapb::Peer { id: 3, store_id: 3 }),
                down_seconds: 11,
            }],
            "3 was never heard from; 2 was, 3 s ago"
        );
    }

    #[test]
    fn test_new_term_and_new_members_start_counting_afresh() {
        let start = Instant::now();
        let max = Duration::from_secs(10);
        let mut liveness = PeerLiveness::default();
        // Heard from 2 long ago, while following in term 4.
        liveness.on_message(2, start);
        let later = start + Duration::from_secs(60);
        assert!(
            liveness
                .down_peers(&region(&[1, 2]), 1, 5, later, max)
                .is_empty(),
            "a new leader has not had time to hear from anyone"
        );
        // Peer 3 joins later: counted from its first check.
        let later2 = later + Duration::from_secs(5);
        assert!(
            liveness
                .down_peers(&region(&[1, 2, 3]), 1, 5, later2, max)
                .is_empty()
        );
        let down = liveness.down_peers(&region(&[1, 2, 3]), 1, 5, later2 + max, max);
        let ids: Vec<u64> = down.iter().filter_map(|d| d.peer).map(|p| p.id).collect();
        assert_eq!(ids, vec![2], "2 silent for 15 s, 3 for exactly 10 s");
    }
}
