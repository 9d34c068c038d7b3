//! The in-process placement driver wired to the cluster's stores: reports go
//! straight into the `MemoryScheduler`, and its operators come back as admin
//! commands through the target store's router.

use std::sync::Arc;

use kvproto::schedulerpb::{RegionHeartbeatRequest, RegionHeartbeatResponse, StoreStats};
use raftstore::SchedulerReporter;
use raftstore::scheduler::operator_command;
use router::{Callback, RaftCommand};
use scheduler_stub::{MemoryScheduler, RegionHeartbeatResponseHandler, SchedulerClient};

use super::transport::SimNetwork;

/// Hands a store's reports to the in-memory scheduler.
pub struct Reporter(pub Arc<MemoryScheduler>);

impl SchedulerReporter for Reporter {
    fn region_heartbeat(&self, request: RegionHeartbeatRequest) {
        // A stale report is refused by the scheduler; the next one is newer.
        let _ = self.0.region_heartbeat(request);
    }

    fn store_heartbeat(&self, stats: StoreStats) {
        let _ = self.0.store_heartbeat(stats);
    }
}

/// Turns heartbeat responses for `store_id` into admin commands sent to
/// that store, if it is running. Nobody waits for their answers: the
/// scheduler repeats an operator until the region shows it done.
pub fn operator_handler(net: Arc<SimNetwork>, store_id: u64) -> RegionHeartbeatResponseHandler {
    Box::new(move |resp: RegionHeartbeatResponse| {
        let (Some(request), Some(router)) = (operator_command(&resp), net.router(store_id)) else {
            return;
        };
        let (callback, _answer) = Callback::new();
        let _ = router.send_command(resp.region_id, Box::new(RaftCommand { request, callback }));
    })
}
