//! Region heartbeats: a leader tells the placement driver its region's
//! state (epoch, members, which members still lag behind) on becoming
//! leader, after a membership change, and every few ticks.

use kvproto::metapb;

use crate::context::StoreContext;
use crate::peer::Peer;
use crate::scheduler::region_heartbeat_request;

impl Peer {
    /// Reports the region to the scheduler if this peer leads it.
    pub fn heartbeat_scheduler(&self, ctx: &StoreContext) {
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
        ctx.scheduler.region_heartbeat(region_heartbeat_request(
            self.region(),
            self.meta,
            pending,
            self.approximate_size.unwrap_or(0),
        ));
    }
}
