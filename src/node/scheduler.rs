//! `RemoteScheduler`: the placement driver over gRPC, as a store uses it.
//!
//! Two sides:
//! - the start-up calls (`GetMembers` for the cluster id, `IsBootstrapped`,
//!   `AllocID`, `Bootstrap`, `PutStore`, `GetStore`, `GetRegion`), async and
//!   answered in order;
//! - [`RemoteReporter`], the raftstore's [`SchedulerReporter`]. Its calls
//!   never block (the trait's contract): region heartbeats go into a bounded
//!   queue drained by one task over one long-lived `RegionHeartbeat` stream,
//!   re-opened with backoff when it fails; store heartbeats go into a queue
//!   of one, sent as unary calls by another task. A full queue drops the
//!   report: the next one says the same, newer.
//!
//! Every `RegionHeartbeatResponse` carrying an operator becomes an admin
//! command sent to the store's router; nobody waits for its answer, and a
//! refused one is dropped, since the scheduler repeats an operator until a
//! heartbeat shows it done.
//!
//! A split request (`ask_split`) is a unary `AskSplit` call on a task of its
//! own; its answer goes to the asking peer as `PeerMsg::SplitIds`. A failed
//! call is dropped (logged): the leader's next split check asks again. At
//! most `MAX_SPLIT_ASKS` calls run at once; more are dropped the same way.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kvproto::metapb;
use kvproto::schedulerpb::scheduler_client::SchedulerClient;
use kvproto::schedulerpb::{
    AllocIdRequest, AskSplitRequest, BootstrapRequest, ErrorType, GetMembersRequest,
    GetRegionRequest, GetStoreRequest, IsBootstrappedRequest, PutStoreRequest,
    RegionHeartbeatRequest, RegionHeartbeatResponse, RequestHeader, ResponseHeader,
    StoreHeartbeatRequest, StoreStats,
};
use raftstore::SchedulerReporter;
use raftstore::scheduler::operator_command;
use router::{Callback, PeerMsg, RaftCommand, Router, SplitIds};
use slog::{Logger, debug, info, warn};
use tokio::runtime::Handle;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

use super::NodeError;

/// Region heartbeats queued for the stream before more are dropped.
const REGION_HEARTBEAT_QUEUE: usize = 1024;
/// Region heartbeats handed to the open stream but not yet sent.
const REGION_HEARTBEAT_STREAM_QUEUE: usize = 64;
/// The shortest and longest wait before re-opening the heartbeat stream.
const RECONNECT_BACKOFF_MIN: Duration = Duration::from_millis(100);
const RECONNECT_BACKOFF_MAX: Duration = Duration::from_secs(3);
/// `AskSplit` calls in flight at most; a leader asks again at its next check.
const MAX_SPLIT_ASKS: usize = 16;
/// How long one `AskSplit` call may take.
const ASK_SPLIT_TIMEOUT: Duration = Duration::from_secs(5);

/// A gRPC client of the scheduler, bound to its cluster. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RemoteScheduler {
    client: SchedulerClient<Channel>,
    channel: Channel,
    cluster_id: u64,
}

fn scheduler_error(what: &str, e: impl std::fmt::Display) -> NodeError {
    NodeError::Scheduler(format!("{what}: {e}"))
}

/// The error in a response header, if any.
fn header_error(header: Option<&ResponseHeader>) -> Option<(ErrorType, String)> {
    let error = header?.error.as_ref()?;
    if error.r#type() == ErrorType::Ok {
        return None;
    }
    Some((error.r#type(), error.message.clone()))
}

fn check(what: &str, header: Option<&ResponseHeader>) -> Result<(), NodeError> {
    match header_error(header) {
        None => Ok(()),
        Some((kind, message)) => Err(scheduler_error(what, format!("{kind:?}: {message}"))),
    }
}

impl RemoteScheduler {
    /// Connects to the scheduler at `addr` (`HOST:PORT` or `http://HOST:PORT`)
    /// and learns its cluster id, retrying with backoff while it is not up;
    /// gives up after `deadline` if one is given.
    pub async fn connect(
        addr: &str,
        deadline: Option<Duration>,
        logger: &Logger,
    ) -> Result<RemoteScheduler, NodeError> {
        let url = if addr.starts_with("http://") {
            addr.to_owned()
        } else {
            format!("http://{addr}")
        };
        let endpoint = Endpoint::from_shared(url.clone())
            .map_err(|e| scheduler_error("bad scheduler address", e))?
            .connect_timeout(Duration::from_secs(3));
        let give_up = deadline.map(|d| tokio::time::Instant::now() + d);
        let mut backoff = RECONNECT_BACKOFF_MIN;
        loop {
            match Self::try_connect(&endpoint).await {
                Ok(scheduler) => {
                    info!(logger, "connected to the scheduler";
                        "addr" => &url, "cluster_id" => scheduler.cluster_id);
                    return Ok(scheduler);
                }
                Err(e) => {
                    if give_up.is_some_and(|t| tokio::time::Instant::now() + backoff > t) {
                        return Err(e);
                    }
                    warn!(logger, "scheduler not reachable yet, retrying";
                        "addr" => &url, "err" => %e, "retry_in" => ?backoff);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
                }
            }
        }
    }

    async fn try_connect(endpoint: &Endpoint) -> Result<RemoteScheduler, NodeError> {
        let channel = endpoint
            .connect()
            .await
            .map_err(|e| scheduler_error("connect", e))?;
        let mut client = SchedulerClient::new(channel.clone());
        let members = client
            .get_members(GetMembersRequest { header: None })
            .await
            .map_err(|e| scheduler_error("GetMembers", e))?
            .into_inner();
        check("GetMembers", members.header.as_ref())?;
        let cluster_id = members.header.map_or(0, |h| h.cluster_id);
        if cluster_id == 0 {
            return Err(scheduler_error("GetMembers", "the answer names no cluster"));
        }
        Ok(RemoteScheduler {
            client,
            channel,
            cluster_id,
        })
    }

    /// The cluster this scheduler serves.
    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// The channel underneath, for other clients of the same scheduler.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    fn header(&self) -> Option<RequestHeader> {
        Some(RequestHeader {
            cluster_id: self.cluster_id,
        })
    }

    /// Whether the cluster has been bootstrapped.
    pub async fn is_bootstrapped(&self) -> Result<bool, NodeError> {
        let resp = self
            .client
            .clone()
            .is_bootstrapped(IsBootstrappedRequest {
                header: self.header(),
            })
            .await
            .map_err(|e| scheduler_error("IsBootstrapped", e))?
            .into_inner();
        check("IsBootstrapped", resp.header.as_ref())?;
        Ok(resp.bootstrapped)
    }

    /// A new unique id.
    pub async fn alloc_id(&self) -> Result<u64, NodeError> {
        let resp = self
            .client
            .clone()
            .alloc_id(AllocIdRequest {
                header: self.header(),
            })
            .await
            .map_err(|e| scheduler_error("AllocID", e))?
            .into_inner();
        check("AllocID", resp.header.as_ref())?;
        if resp.id == 0 {
            return Err(scheduler_error("AllocID", "the answer is id 0"));
        }
        Ok(resp.id)
    }

    /// Bootstraps the cluster with `store`: `true` if this call did,
    /// `false` if the cluster already was.
    pub async fn bootstrap(&self, store: metapb::Store) -> Result<bool, NodeError> {
        let resp = self
            .client
            .clone()
            .bootstrap(BootstrapRequest {
                header: self.header(),
                store: Some(store),
            })
            .await
            .map_err(|e| scheduler_error("Bootstrap", e))?
            .into_inner();
        match header_error(resp.header.as_ref()) {
            None => Ok(true),
            Some((ErrorType::AlreadyBootstrapped, _)) => Ok(false),
            Some((kind, message)) => {
                Err(scheduler_error("Bootstrap", format!("{kind:?}: {message}")))
            }
        }
    }

    /// Registers (or updates) `store`.
    pub async fn put_store(&self, store: metapb::Store) -> Result<(), NodeError> {
        let resp = self
            .client
            .clone()
            .put_store(PutStoreRequest {
                header: self.header(),
                store: Some(store),
            })
            .await
            .map_err(|e| scheduler_error("PutStore", e))?
            .into_inner();
        check("PutStore", resp.header.as_ref())
    }

    /// Store `store_id` as the scheduler knows it, if it does.
    pub async fn get_store(&self, store_id: u64) -> Result<Option<metapb::Store>, NodeError> {
        let resp = self
            .client
            .clone()
            .get_store(GetStoreRequest {
                header: self.header(),
                store_id,
            })
            .await
            .map_err(|e| scheduler_error("GetStore", e))?
            .into_inner();
        if header_error(resp.header.as_ref()).is_some() {
            return Ok(None);
        }
        Ok(resp.store.filter(|s| s.id == store_id))
    }

    /// The region containing `key` and its leader, if the scheduler knows one.
    pub async fn get_region(
        &self,
        key: &[u8],
    ) -> Result<Option<(metapb::Region, Option<metapb::Peer>)>, NodeError> {
        let resp = self
            .client
            .clone()
            .get_region(GetRegionRequest {
                header: self.header(),
                region_key: key.to_vec(),
            })
            .await
            .map_err(|e| scheduler_error("GetRegion", e))?
            .into_inner();
        check("GetRegion", resp.header.as_ref())?;
        // TinyKV's scheduler answers an uncovered key with an empty region.
        Ok(resp.region.filter(|r| r.id != 0).map(|r| (r, resp.leader)))
    }

    /// The store's reporter: its tasks run on `runtime` and send operators
    /// to the router set in `router` (none are sent before it is set).
    pub fn reporter(
        &self,
        router: Arc<OnceLock<Router>>,
        runtime: &Handle,
        logger: &Logger,
    ) -> RemoteReporter {
        let (regions, regions_rx) = mpsc::channel(REGION_HEARTBEAT_QUEUE);
        let (stores, stores_rx) = mpsc::channel(1);
        let region_task = runtime.spawn(region_heartbeat_loop(
            self.clone(),
            regions_rx,
            Arc::clone(&router),
            logger.clone(),
        ));
        let store_task = runtime.spawn(store_heartbeat_loop(
            self.clone(),
            stores_rx,
            logger.clone(),
        ));
        RemoteReporter {
            regions,
            stores,
            tasks: vec![region_task.abort_handle(), store_task.abort_handle()],
            splits: SplitAsker {
                scheduler: self.clone(),
                router,
                runtime: runtime.clone(),
                in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_SPLIT_ASKS)),
                logger: logger.clone(),
            },
        }
    }

    /// Fresh ids for a split of `region`.
    pub async fn ask_split(&self, region: metapb::Region) -> Result<(u64, Vec<u64>), NodeError> {
        let resp = self
            .client
            .clone()
            .ask_split(AskSplitRequest {
                header: self.header(),
                region: Some(region),
            })
            .await
            .map_err(|e| scheduler_error("AskSplit", e))?
            .into_inner();
        check("AskSplit", resp.header.as_ref())?;
        if resp.new_region_id == 0 {
            return Err(scheduler_error("AskSplit", "the answer names region 0"));
        }
        Ok((resp.new_region_id, resp.new_peer_ids))
    }
}

/// Runs `AskSplit` calls for a [`RemoteReporter`] (see the module docs).
#[derive(Debug)]
struct SplitAsker {
    scheduler: RemoteScheduler,
    router: Arc<OnceLock<Router>>,
    runtime: Handle,
    /// Bounds the calls in flight.
    in_flight: Arc<tokio::sync::Semaphore>,
    logger: Logger,
}

impl SplitAsker {
    fn ask(&self, region: metapb::Region, split_key: Vec<u8>, leader: metapb::Peer) {
        let Ok(permit) = Arc::clone(&self.in_flight).try_acquire_owned() else {
            debug!(self.logger, "too many split asks in flight, dropped"; "region_id" => region.id);
            return;
        };
        let scheduler = self.scheduler.clone();
        let router = Arc::clone(&self.router);
        let logger = self.logger.clone();
        self.runtime.spawn(async move {
            let _permit = permit;
            let region_id = region.id;
            let epoch = region.region_epoch.unwrap_or_default();
            let asked = tokio::time::timeout(ASK_SPLIT_TIMEOUT, scheduler.ask_split(region)).await;
            let (new_region_id, new_peer_ids) = match asked {
                Ok(Ok(ids)) => ids,
                Ok(Err(e)) => {
                    warn!(logger, "ask split failed"; "region_id" => region_id, "err" => %e);
                    return;
                }
                Err(_) => {
                    warn!(logger, "ask split timed out"; "region_id" => region_id);
                    return;
                }
            };
            let Some(router) = router.get() else {
                return;
            };
            debug!(logger, "split ids from the scheduler"; "region_id" => region_id,
                "new_region_id" => new_region_id, "leader" => leader.id);
            let msg = PeerMsg::SplitIds(Box::new(SplitIds {
                split_key,
                epoch,
                new_region_id,
                new_peer_ids,
            }));
            // A peer gone meanwhile has no use for it.
            let _ = router.send(region_id, msg);
        });
    }
}

/// The [`SchedulerReporter`] over a [`RemoteScheduler`]; see the module docs.
#[derive(Debug)]
pub struct RemoteReporter {
    regions: mpsc::Sender<RegionHeartbeatRequest>,
    stores: mpsc::Sender<StoreStats>,
    tasks: Vec<tokio::task::AbortHandle>,
    splits: SplitAsker,
}

impl RemoteReporter {
    /// Stops the heartbeat tasks (they also end once the reporter is dropped).
    pub fn stop(&self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl SchedulerReporter for RemoteReporter {
    fn region_heartbeat(&self, request: RegionHeartbeatRequest) {
        // Full or closed: dropped, the next heartbeat repeats it.
        let _ = self.regions.try_send(request);
    }

    fn store_heartbeat(&self, stats: StoreStats) {
        let _ = self.stores.try_send(stats);
    }

    fn ask_split(&self, region: metapb::Region, split_key: Vec<u8>, leader: metapb::Peer) {
        self.splits.ask(region, split_key, leader);
    }
}

/// Drains `queue` into a `RegionHeartbeat` stream, re-opening it with
/// backoff when it fails; ends when the reporter is gone.
async fn region_heartbeat_loop(
    scheduler: RemoteScheduler,
    mut queue: mpsc::Receiver<RegionHeartbeatRequest>,
    router: Arc<OnceLock<Router>>,
    logger: Logger,
) {
    let mut backoff = RECONNECT_BACKOFF_MIN;
    loop {
        let (stream_tx, stream_rx) = mpsc::channel(REGION_HEARTBEAT_STREAM_QUEUE);
        let opened = scheduler
            .client
            .clone()
            .region_heartbeat(ReceiverStream::new(stream_rx))
            .await;
        let mut responses = match opened {
            Ok(responses) => responses.into_inner(),
            Err(e) => {
                warn!(logger, "cannot open the region heartbeat stream"; "err" => %e, "retry_in" => ?backoff);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
                continue;
            }
        };
        debug!(logger, "region heartbeat stream open");
        backoff = RECONNECT_BACKOFF_MIN;
        loop {
            tokio::select! {
                request = queue.recv() => {
                    let Some(mut request) = request else { return };
                    request.header = scheduler.header();
                    // Not awaited: a stream slow to take heartbeats must not
                    // stop this loop from reading the responses. A dropped
                    // heartbeat is repeated by the next one.
                    match stream_tx.try_send(request) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(_)) => {
                            debug!(logger, "region heartbeat stream busy, heartbeat dropped");
                        }
                        Err(mpsc::error::TrySendError::Closed(_)) => break,
                    }
                }
                response = responses.message() => match response {
                    Ok(Some(response)) => handle_operator(&router, &response, &logger),
                    Ok(None) => {
                        warn!(logger, "the scheduler ended the region heartbeat stream");
                        break;
                    }
                    Err(e) => {
                        warn!(logger, "region heartbeat stream failed"; "err" => %e);
                        break;
                    }
                },
            }
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(RECONNECT_BACKOFF_MAX);
    }
}

/// Sends the operator in `response`, if any, to its region's leader.
fn handle_operator(router: &OnceLock<Router>, response: &RegionHeartbeatResponse, logger: &Logger) {
    let (Some(request), Some(router)) = (operator_command(response), router.get()) else {
        return;
    };
    debug!(logger, "operator from the scheduler"; "region_id" => response.region_id);
    let (callback, _answer) = Callback::new();
    let _ = router.send_command(
        response.region_id,
        Box::new(RaftCommand { request, callback }),
    );
}

/// Sends each store heartbeat as a unary call; ends when the reporter is gone.
async fn store_heartbeat_loop(
    scheduler: RemoteScheduler,
    mut queue: mpsc::Receiver<StoreStats>,
    logger: Logger,
) {
    while let Some(stats) = queue.recv().await {
        let result = scheduler
            .client
            .clone()
            .store_heartbeat(StoreHeartbeatRequest {
                header: scheduler.header(),
                stats: Some(stats),
            })
            .await;
        match result {
            Ok(resp) => {
                if let Some((kind, message)) = header_error(resp.get_ref().header.as_ref()) {
                    warn!(logger, "store heartbeat refused"; "kind" => ?kind, "err" => message);
                }
            }
            Err(e) => warn!(logger, "store heartbeat failed"; "err" => %e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use kvproto::kvrpcpb::{Context, RawPutRequest};
    use kvproto::tinykvpb::tiny_kv_client::TinyKvClient;
    use scheduler_stub::{MemoryScheduler, SchedulerClient as _, SchedulerService};
    use slog::o;
    use tempfile::TempDir;
    use tokio::net::TcpListener;
    use tokio::time::Instant;

    use super::*;
    use crate::node::{Node, NodeConfig};

    const DEADLINE: Duration = Duration::from_secs(20);

    /// A node whose regions split past 200 bytes splits its first region
    /// through the scheduler's `AskSplit` over gRPC: the ids come back to
    /// the leader, which proposes the split, and the new region's leader
    /// reports it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_node_splits_a_region_through_ask_split() {
        let logger = Logger::root(slog::Discard, o!());
        let dir = TempDir::new().expect("temp dir");
        let inner =
            Arc::new(MemoryScheduler::open(&dir.path().join("sched"), &logger).expect("scheduler"));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let service = SchedulerService::new(Arc::clone(&inner), format!("http://{addr}"), &logger);
        let (_stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(scheduler_stub::serve(listener, service, async {
            let _ = stopped.await;
        }));

        let mut cfg = NodeConfig::new(
            addr.to_string(),
            "127.0.0.1:0".to_owned(),
            dir.path().join("node"),
        );
        cfg.raftstore = raftstore::Config::for_tests().with_small_regions(200, 100);
        cfg.connect_deadline = Some(DEADLINE);
        let node = Node::start(cfg, &logger).await.expect("node starts");
        let mut kv = TinyKvClient::connect(format!("http://{}", node.local_addr()))
            .await
            .expect("connect to the node");

        let deadline = Instant::now() + DEADLINE;
        let mut i = 0;
        loop {
            let regions: Vec<u64> = [&b""[..], b"k99"]
                .iter()
                .filter_map(|key| inner.get_region(key).ok().map(|(r, _)| r.id))
                .collect();
            if regions.len() == 2 && regions[0] != regions[1] {
                break;
            }
            assert!(Instant::now() < deadline, "no split reported: {regions:?}");
            // Into the first region, whichever epoch it is at now.
            if let Ok((region, _)) = inner.get_region(b"") {
                let peer = region.peers.first().copied();
                let put = RawPutRequest {
                    context: Some(Context {
                        region_id: region.id,
                        region_epoch: region.region_epoch,
                        peer,
                        ..Default::default()
                    }),
                    key: format!("k{i:02}").into_bytes(),
                    value: vec![b'v'; 20],
                    cf: String::new(),
                };
                // Refused while there is no leader or the region just split:
                // the next round routes again.
                let _ = kv.raw_put(put).await;
                i = (i + 1) % 100;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        node.stop().await;
    }
}
