//! The in-process placement driver wired to the cluster's stores: reports go
//! straight into the `MemoryScheduler`, and its operators and split ids
//! come back through the target store's router.

use std::sync::Arc;

use kvproto::metapb;
use kvproto::schedulerpb::{RegionHeartbeatRequest, RegionHeartbeatResponse, StoreStats};
use raftstore::SchedulerReporter;
use raftstore::scheduler::operator_command;
use router::{Callback, PeerMsg, RaftCommand, SplitIds};
use scheduler_stub::{MemoryScheduler, RegionHeartbeatResponseHandler, SchedulerClient};
use slog::{Logger, debug};

use super::transport::SimNetwork;

/// Hands a store's reports to the in-memory scheduler, and the answers to
/// its split requests back to the asking peer through the network's view
/// of the stores' routers.
pub struct Reporter {
    scheduler: Arc<MemoryScheduler>,
    net: Arc<SimNetwork>,
    logger: Logger,
}

impl Reporter {
    /// A reporter into `scheduler`, answering through `net`.
    pub fn new(scheduler: Arc<MemoryScheduler>, net: Arc<SimNetwork>, logger: &Logger) -> Self {
        Reporter {
            scheduler,
            net,
            logger: logger.clone(),
        }
    }
}

impl SchedulerReporter for Reporter {
    fn region_heartbeat(&self, request: RegionHeartbeatRequest) {
        // A stale report is refused by the scheduler; the next one is newer.
        let _ = self.scheduler.region_heartbeat(request);
    }

    fn store_heartbeat(&self, stats: StoreStats) {
        let _ = self.scheduler.store_heartbeat(stats);
    }

    fn ask_split(&self, region: metapb::Region, split_key: Vec<u8>, leader: metapb::Peer) {
        // In memory: answered at once, without blocking on anything.
        let ids = match self.scheduler.ask_split(&region) {
            Ok(ids) => ids,
            Err(e) => {
                debug!(self.logger, "ask split refused"; "region_id" => region.id, "err" => %e);
                return;
            }
        };
        let Some(router) = self.net.router(leader.store_id) else {
            return;
        };
        let msg = PeerMsg::SplitIds(Box::new(SplitIds {
            split_key,
            epoch: region.region_epoch.unwrap_or_default(),
            new_region_id: ids.new_region_id,
            new_peer_ids: ids.new_peer_ids,
        }));
        // A peer gone meanwhile has no use for it; the next check asks again.
        let _ = router.send(region.id, msg);
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
