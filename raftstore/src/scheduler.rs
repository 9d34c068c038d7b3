//! What a store reports to the placement driver, and how the driver's
//! answers (operators) become admin commands.
//!
//! The raftstore does not depend on the scheduler crate (dependencies point
//! one way, DESIGN §1): it states what it needs as `SchedulerReporter`, and
//! whoever starts a store adapts a scheduler client to it.

use kvproto::metapb;
use kvproto::raft_cmdpb::{
    AdminCmdType, AdminRequest, ChangePeerRequest, RaftCmdRequest, RaftRequestHeader,
    TransferLeaderRequest,
};
use kvproto::schedulerpb::{DownPeer, RegionHeartbeatRequest, RegionHeartbeatResponse, StoreStats};

/// Receives a store's reports for the placement driver.
///
/// Contract: calls never block on the network; a remote implementation
/// queues. A lost report is harmless: the next one says the same, newer.
pub trait SchedulerReporter: Send + Sync + 'static {
    /// A region's state, from its leader.
    fn region_heartbeat(&self, request: RegionHeartbeatRequest);
    /// The store's statistics.
    fn store_heartbeat(&self, stats: StoreStats);
    /// Asks for the ids of a split of `region` (as its leader `leader` saw
    /// it when its data was checked) at `split_key`. The answer goes to the
    /// region's peer on the leader's store as `PeerMsg::SplitIds`, carrying
    /// `split_key` and the region's epoch back; a refusal or a failed call
    /// is dropped (logged), and the next split check asks again.
    fn ask_split(&self, region: metapb::Region, split_key: Vec<u8>, leader: metapb::Peer);
}

/// For a store run without a placement driver: reports go nowhere.
#[derive(Debug, Default)]
pub struct NoScheduler;

impl SchedulerReporter for NoScheduler {
    fn region_heartbeat(&self, _: RegionHeartbeatRequest) {}
    fn store_heartbeat(&self, _: StoreStats) {}
    fn ask_split(&self, _: metapb::Region, _: Vec<u8>, _: metapb::Peer) {}
}

/// The admin command that carries out an operator from a heartbeat
/// response, addressed to the leader the response names.
pub fn operator_command(resp: &RegionHeartbeatResponse) -> Option<RaftCmdRequest> {
    let admin = if let Some(change) = &resp.change_peer {
        AdminRequest {
            cmd_type: AdminCmdType::ChangePeer as i32,
            change_peer: Some(ChangePeerRequest {
                change_type: change.change_type,
                peer: change.peer,
            }),
            ..Default::default()
        }
    } else if let Some(transfer) = &resp.transfer_leader {
        AdminRequest {
            cmd_type: AdminCmdType::TransferLeader as i32,
            transfer_leader: Some(TransferLeaderRequest {
                peer: transfer.peer,
            }),
            ..Default::default()
        }
    } else {
        return None;
    };
    Some(RaftCmdRequest {
        header: Some(RaftRequestHeader {
            region_id: resp.region_id,
            peer: resp.target_peer,
            region_epoch: resp.region_epoch,
            ..Default::default()
        }),
        requests: Vec::new(),
        admin_request: Some(admin),
    })
}

/// What a leader measured of its region, for its heartbeats (0: not known).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegionStats {
    /// Bytes of keys and values.
    pub approximate_size: u64,
    /// Keys.
    pub approximate_keys: u64,
    /// Sessions in the region's client session table.
    pub client_sessions: u64,
}

/// The heartbeat a leader of `term` sends for `region`. The term lets the
/// scheduler ignore a deposed leader's late report; `down_peers` are the
/// followers it has not heard from for a while.
pub fn region_heartbeat_request(
    region: &metapb::Region,
    leader: metapb::Peer,
    term: u64,
    pending_peers: Vec<metapb::Peer>,
    down_peers: Vec<DownPeer>,
    stats: RegionStats,
) -> RegionHeartbeatRequest {
    RegionHeartbeatRequest {
        header: None,
        region: Some(region.clone()),
        leader: Some(leader),
        pending_peers,
        approximate_size: stats.approximate_size,
        term,
        down_peers,
        approximate_keys: stats.approximate_keys,
        client_sessions: stats.client_sessions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_heartbeat_request_carries_term_and_down_peers() {
        let leader = metapb::Peer { id: 1, store_id: 1 };
        let follower = metapb::Peer { id: 2, store_id: 2 };
        let region = metapb::Region {
            id: 7,
            peers: vec![leader, follower],
            ..Default::default()
        };
        let down = vec![DownPeer {
            peer: Some(follower),
            down_seconds: 400,
        }];
        let stats = RegionStats {
            approximate_size: 64,
            approximate_keys: 3,
            client_sessions: 2,
        };
        let req = region_heartbeat_request(&region, leader, 9, vec![follower], down.clone(), stats);
        assert_eq!(req.region.as_ref(), Some(&region));
        assert_eq!(req.leader, Some(leader));
        assert_eq!(req.term, 9);
        assert_eq!(req.pending_peers, vec![follower]);
        assert_eq!(req.down_peers, down);
        assert_eq!(req.approximate_size, 64);
        assert_eq!(req.approximate_keys, 3);
        assert_eq!(req.client_sessions, 2);
    }
}
