//! Waiting until a local cluster serves: the scheduler answers, every
//! store has registered, the first region has its replicas and a leader,
//! and that leader answers a read.
//!
//! Only the public protocol is used (the scheduler's `GetMembers`,
//! `GetAllStores`, `GetRegion`; the store's `RawGet`), so the probe sees the
//! cluster exactly as a client would.

use std::time::Duration;

use kvproto::kvrpcpb::{Context, RawGetRequest};
use kvproto::metapb::StoreState;
use kvproto::schedulerpb::scheduler_client::SchedulerClient;
use kvproto::schedulerpb::{
    GetAllStoresRequest, GetMembersRequest, GetRegionRequest, RequestHeader,
};
use kvproto::tinykvpb::tiny_kv_client::TinyKvClient;
use tokio::time::Instant;
use tonic::transport::Endpoint;

use super::PlaygroundError;

/// The key the probe reads (a read changes nothing).
const PROBE_KEY: &[u8] = b"tinykv-playground-probe";
/// How long one probe call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
/// Pause between probes.
const PROBE_INTERVAL: Duration = Duration::from_millis(100);

/// What a serving cluster looks like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serving {
    /// The scheduler's cluster id.
    pub cluster_id: u64,
    /// The region covering the probe key.
    pub region_id: u64,
    /// How many replicas it has.
    pub replicas: usize,
    /// The store of its leader.
    pub leader_store_id: u64,
    /// Every up store: its id and advertised address.
    pub stores: Vec<(u64, String)>,
}

impl Serving {
    /// The id of the store advertising `addr`, if it is up.
    pub fn store_id_at(&self, addr: &str) -> Option<u64> {
        self.stores
            .iter()
            .find(|(_, a)| a == addr)
            .map(|(id, _)| *id)
    }
}

/// Probes `scheduler_addr` until `stores` stores are up and the region
/// covering the probe key has at least `replicas` peers and a leader that
/// answers a read, or `timeout` passes. `progress` hears each new state
/// (one short line) as it changes.
pub async fn wait_until_serving(
    scheduler_addr: &str,
    stores: usize,
    replicas: usize,
    timeout: Duration,
    mut progress: impl FnMut(&str),
) -> Result<Serving, PlaygroundError> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let state = probe_once(scheduler_addr, stores, replicas).await;
        let line = match &state {
            Ok(serving) => format!(
                "serving: region {} has {} replicas, leader on store id {}",
                serving.region_id, serving.replicas, serving.leader_store_id
            ),
            Err(waiting) => waiting.clone(),
        };
        if line != last {
            progress(&line);
            last = line;
        }
        if let Ok(serving) = state {
            return Ok(serving);
        }
        if Instant::now() >= deadline {
            return Err(PlaygroundError::NotServing {
                after: timeout,
                last,
            });
        }
        tokio::time::sleep(PROBE_INTERVAL).await;
    }
}

/// One look at the cluster: `Ok` if it serves, else what it waits for.
async fn probe_once(
    scheduler_addr: &str,
    stores: usize,
    replicas: usize,
) -> Result<Serving, String> {
    let endpoint = Endpoint::from_shared(format!("http://{scheduler_addr}"))
        .map_err(|e| format!("bad scheduler address {scheduler_addr}: {e}"))?
        .connect_timeout(CALL_TIMEOUT)
        .timeout(CALL_TIMEOUT);
    let channel = endpoint
        .connect()
        .await
        .map_err(|_| format!("waiting for the scheduler at {scheduler_addr}"))?;
    let mut scheduler = SchedulerClient::new(channel);
    let members = scheduler
        .get_members(GetMembersRequest { header: None })
        .await
        .map_err(|e| format!("scheduler not answering yet: {}", e.message()))?
        .into_inner();
    let cluster_id = members.header.map_or(0, |h| h.cluster_id);
    let header = Some(RequestHeader { cluster_id });

    let all = scheduler
        .get_all_stores(GetAllStoresRequest {
            header,
            exclude_tombstone_stores: true,
        })
        .await
        .map_err(|e| format!("GetAllStores failed: {}", e.message()))?
        .into_inner();
    let up: Vec<_> = all
        .stores
        .iter()
        .filter(|s| s.state() == StoreState::Up && !s.address.is_empty())
        .collect();
    if up.len() < stores {
        return Err(format!("{} of {stores} stores registered", up.len()));
    }

    let found = scheduler
        .get_region(GetRegionRequest {
            header,
            region_key: PROBE_KEY.to_vec(),
        })
        .await
        .map_err(|e| format!("GetRegion failed: {}", e.message()))?
        .into_inner();
    let region = found
        .region
        .filter(|r| r.id != 0)
        .ok_or("waiting for the first region")?;
    if region.peers.len() < replicas {
        return Err(format!(
            "region {} has {} of {replicas} replicas",
            region.id,
            region.peers.len()
        ));
    }
    let leader = found
        .leader
        .filter(|l| l.id != 0)
        .ok_or_else(|| format!("region {} has no leader yet", region.id))?;
    let addr = up
        .iter()
        .find(|s| s.id == leader.store_id)
        .map(|s| s.address.clone())
        .ok_or_else(|| format!("the leader's store {} is not up", leader.store_id))?;

    let store_channel = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("bad store address {addr}: {e}"))?
        .connect_timeout(CALL_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        .connect()
        .await
        .map_err(|_| format!("store {} at {addr} not reachable", leader.store_id))?;
    let answer = TinyKvClient::new(store_channel)
        .raw_get(RawGetRequest {
            context: Some(Context {
                region_id: region.id,
                region_epoch: region.region_epoch,
                peer: Some(leader),
                ..Default::default()
            }),
            key: PROBE_KEY.to_vec(),
            cf: String::new(),
        })
        .await
        .map_err(|e| format!("store {} not answering: {}", leader.store_id, e.message()))?
        .into_inner();
    if let Some(e) = answer.region_error {
        return Err(format!("region {} not ready: {}", region.id, e.message));
    }
    if !answer.error.is_empty() {
        return Err(format!(
            "region {} read failed: {}",
            region.id, answer.error
        ));
    }
    Ok(Serving {
        cluster_id,
        region_id: region.id,
        replicas: region.peers.len(),
        leader_store_id: leader.store_id,
        stores: up.iter().map(|s| (s.id, s.address.clone())).collect(),
    })
}
