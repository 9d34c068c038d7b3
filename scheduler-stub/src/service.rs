//! `SchedulerService`: `schedulerpb.Scheduler` over gRPC (tonic), answering
//! from a [`MemoryScheduler`].
//!
//! Served calls: `GetMembers`, `Tso` (stream), `Bootstrap`, `IsBootstrapped`,
//! `AllocID`, `GetStore`, `PutStore`, `GetAllStores`, `StoreHeartbeat`,
//! `RegionHeartbeat` (stream), `GetRegion`, `GetPrevRegion`, `GetRegionByID`,
//! `ScanRegions`, `AskSplit`, `GetClusterConfig`, `PutClusterConfig`. The
//! others (`ScatterRegion`, the GC safe point calls, `GetOperator`) answer
//! `UNIMPLEMENTED`. (TinyKV's protocol has `ReportSplit` messages but no such
//! call; the regions of a split arrive with their heartbeats.)
//!
//! Conventions, as TinyKV's scheduler:
//! - Every request but `GetMembers` must carry a header naming this
//!   cluster's id; otherwise the call fails with `FAILED_PRECONDITION` and a
//!   message naming both ids (a client learns the id from `GetMembers`).
//! - A refused request gets an answer whose `header.error` says why
//!   (`Error::to_pb`: `NOT_BOOTSTRAPPED`, `ALREADY_BOOTSTRAPPED`,
//!   `STORE_TOMBSTONE`, `REGION_NOT_FOUND`, otherwise `UNKNOWN` with the
//!   message); the gRPC status stays OK.
//! - A lookup that finds no region (`GetRegion` for a key no region covers,
//!   `GetRegionByID` for an unknown id, `GetPrevRegion` at the first region)
//!   answers an OK header and no region.
//!
//! `RegionHeartbeat`: each store keeps one stream open and sends the
//! heartbeats of the regions it leads. Requests on a stream are handled one
//! at a time, in order, and each gets its answer (possibly an operator, or an
//! error header) on the same stream, so the answers for a region arrive in the
//! order of its updates. Answers are buffered up to `STREAM_BUFFER`; past
//! that (a client that stopped reading) they are dropped, which is harmless
//! because the next heartbeat gets the operator again.
//!
//! Scheduler calls may write and fsync the state file, so they run on
//! tokio's blocking pool, never on the async workers.
//!
//! Shutdown: [`serve`] stops accepting, ends every open stream (so no
//! long-lived stream holds the graceful shutdown up), lets unary calls in
//! flight finish and returns.

use std::future::Future;
use std::sync::Arc;

use kvproto::metapb::StoreState;
use kvproto::schedulerpb::scheduler_server::{Scheduler, SchedulerServer};
use kvproto::schedulerpb::{
    AllocIdRequest, AllocIdResponse, AskSplitRequest, AskSplitResponse, BootstrapRequest,
    BootstrapResponse, GetAllStoresRequest, GetAllStoresResponse, GetClusterConfigRequest,
    GetClusterConfigResponse, GetGcSafePointRequest, GetGcSafePointResponse, GetMembersRequest,
    GetMembersResponse, GetOperatorRequest, GetOperatorResponse, GetRegionByIdRequest,
    GetRegionRequest, GetRegionResponse, GetStoreRequest, GetStoreResponse, IsBootstrappedRequest,
    IsBootstrappedResponse, Member, PutClusterConfigRequest, PutClusterConfigResponse,
    PutStoreRequest, PutStoreResponse, RegionHeartbeatRequest, RegionHeartbeatResponse,
    RequestHeader, ResponseHeader, ScanRegionsRequest, ScanRegionsResponse, ScatterRegionRequest,
    ScatterRegionResponse, StoreHeartbeatRequest, StoreHeartbeatResponse, TsoRequest, TsoResponse,
    UpdateGcSafePointRequest, UpdateGcSafePointResponse,
};
use slog::{Logger, debug, info, o};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status, Streaming};

use crate::client::SchedulerClient;
use crate::errors::{Error, Result};
use crate::memory::MemoryScheduler;

/// Answers buffered per stream before further ones are dropped.
const STREAM_BUFFER: usize = 256;

/// The name and id `GetMembers` reports for this single-member scheduler.
const MEMBER_NAME: &str = "tinykv-scheduler";
const MEMBER_ID: u64 = 1;

/// The `schedulerpb.Scheduler` service over one [`MemoryScheduler`]. Cheap to
/// clone (the clones share everything).
#[derive(Clone)]
pub struct SchedulerService {
    inner: Arc<Inner>,
}

struct Inner {
    scheduler: Arc<MemoryScheduler>,
    /// The client URL `GetMembers` reports.
    advertise_url: String,
    /// Flips to true once, when the server shuts down; every stream watches
    /// it and ends. A `watch` so a stream opened afterwards sees it too.
    closing: watch::Sender<bool>,
    logger: Logger,
}

impl SchedulerService {
    /// A service answering from `scheduler`; `GetMembers` reports
    /// `advertise_url` as the (only) member's client URL.
    pub fn new(scheduler: Arc<MemoryScheduler>, advertise_url: String, logger: &Logger) -> Self {
        let logger = logger.new(o!("cluster_id" => scheduler.cluster_id()));
        SchedulerService {
            inner: Arc::new(Inner {
                scheduler,
                advertise_url,
                closing: watch::Sender::new(false),
                logger,
            }),
        }
    }

    /// Ends every open stream, now and for streams opened from now on.
    pub fn close_streams(&self) {
        self.inner.closing.send_replace(true);
    }

    fn cluster_id(&self) -> u64 {
        self.inner.scheduler.cluster_id()
    }

    /// Refuses a request for another cluster (or with no header).
    fn check_header(&self, header: Option<&RequestHeader>) -> std::result::Result<(), Status> {
        let got = header.map_or(0, |h| h.cluster_id);
        let want = self.cluster_id();
        if got == want {
            Ok(())
        } else {
            Err(Status::failed_precondition(format!(
                "mismatched cluster id: this scheduler serves cluster {want}, the request names cluster {got}"
            )))
        }
    }

    /// The response header for an outcome: OK, or the error.
    fn header(&self, error: Option<&Error>) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.cluster_id(),
            error: error.map(Error::to_pb),
        })
    }

    /// Runs a scheduler call on the blocking pool (it may fsync).
    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&MemoryScheduler) -> T + Send + 'static,
    ) -> std::result::Result<T, Status> {
        let scheduler = Arc::clone(&self.inner.scheduler);
        tokio::task::spawn_blocking(move || f(&scheduler))
            .await
            .map_err(|e| Status::internal(format!("scheduler call failed: {e}")))
    }

    /// The next request of a stream whose header names this cluster, or
    /// `None` when the stream ends: the client closed it, it failed, the
    /// server is shutting down, or the header is foreign (then the client
    /// is told why first).
    async fn next_request<Req, Resp>(
        &self,
        inbound: &mut Streaming<Req>,
        closing: &mut watch::Receiver<bool>,
        tx: &mpsc::Sender<std::result::Result<Resp, Status>>,
        stream: &'static str,
        header: impl Fn(&Req) -> Option<&RequestHeader>,
    ) -> Option<Req> {
        let request = tokio::select! {
            _ = closing.wait_for(|closing| *closing) => return None,
            message = inbound.message() => match message {
                Ok(Some(request)) => request,
                Ok(None) => return None,
                Err(status) => {
                    debug!(self.inner.logger, "stream failed"; "stream" => stream, "status" => %status);
                    return None;
                }
            },
        };
        if let Err(status) = self.check_header(header(&request)) {
            let _ = tx.send(Err(status)).await;
            return None;
        }
        Some(request)
    }

    /// Serves one `RegionHeartbeat` stream until the client closes it, it
    /// fails, or the server shuts down.
    async fn run_heartbeat_stream(
        self,
        mut inbound: Streaming<RegionHeartbeatRequest>,
        tx: mpsc::Sender<std::result::Result<RegionHeartbeatResponse, Status>>,
    ) {
        let mut closing = self.inner.closing.subscribe();
        loop {
            let Some(request) = self
                .next_request(&mut inbound, &mut closing, &tx, "region heartbeat", |r| {
                    r.header.as_ref()
                })
                .await
            else {
                break;
            };
            let region_id = request.region.as_ref().map_or(0, |r| r.id);
            let result = match self.call(move |s| s.heartbeat_response(request)).await {
                Ok(result) => result,
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    break;
                }
            };
            let response = result.unwrap_or_else(|e| {
                debug!(self.inner.logger, "region heartbeat refused"; "region_id" => region_id, "err" => %e);
                RegionHeartbeatResponse {
                    header: self.header(Some(&e)),
                    region_id,
                    ..Default::default()
                }
            });
            match tx.try_send(Ok(response)) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(_)) => {
                    debug!(self.inner.logger, "region heartbeat answers not read, dropping one";
                        "region_id" => region_id);
                }
                Err(mpsc::error::TrySendError::Closed(_)) => break,
            }
        }
    }

    /// Serves one `Tso` stream until the client closes it, it fails, or the
    /// server shuts down.
    async fn run_tso_stream(
        self,
        mut inbound: Streaming<TsoRequest>,
        tx: mpsc::Sender<std::result::Result<TsoResponse, Status>>,
    ) {
        let mut closing = self.inner.closing.subscribe();
        loop {
            let Some(request) = self
                .next_request(&mut inbound, &mut closing, &tx, "tso", |r| {
                    r.header.as_ref()
                })
                .await
            else {
                break;
            };
            let count = request.count;
            let result = match self.call(move |s| s.tso(count)).await {
                Ok(result) => result,
                Err(status) => {
                    let _ = tx.send(Err(status)).await;
                    break;
                }
            };
            let response = match result {
                Ok(timestamp) => TsoResponse {
                    header: self.header(None),
                    count,
                    timestamp: Some(timestamp),
                },
                Err(e) => TsoResponse {
                    header: self.header(Some(&e)),
                    ..Default::default()
                },
            };
            // A client that stopped reading loses the stream rather than an
            // answer it is waiting for; it reconnects.
            if let Err(e) = tx.try_send(Ok(response)) {
                debug!(self.inner.logger, "tso answers not read, ending the stream"; "err" => %e);
                break;
            }
        }
    }
}

type ServiceResult<T> = std::result::Result<Response<T>, Status>;

#[tonic::async_trait]
impl Scheduler for SchedulerService {
    async fn get_members(
        &self,
        _request: Request<GetMembersRequest>,
    ) -> ServiceResult<GetMembersResponse> {
        let member = Member {
            name: MEMBER_NAME.to_owned(),
            member_id: MEMBER_ID,
            peer_urls: Vec::new(),
            client_urls: vec![self.inner.advertise_url.clone()],
            leader_priority: 0,
        };
        Ok(Response::new(GetMembersResponse {
            header: self.header(None),
            members: vec![member.clone()],
            leader: Some(member.clone()),
            etcd_leader: Some(member),
        }))
    }

    type TsoStream = ReceiverStream<std::result::Result<TsoResponse, Status>>;

    async fn tso(&self, request: Request<Streaming<TsoRequest>>) -> ServiceResult<Self::TsoStream> {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(self.clone().run_tso_stream(request.into_inner(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn bootstrap(
        &self,
        request: Request<BootstrapRequest>,
    ) -> ServiceResult<BootstrapResponse> {
        let request = request.into_inner();
        self.check_header(request.header.as_ref())?;
        let result = match request.store {
            Some(store) => self.call(move |s| s.bootstrap_store(store)).await?,
            None => Err(Error::InvalidRequest(
                "bootstrap without a store".to_owned(),
            )),
        };
        if result.is_ok() {
            info!(self.inner.logger, "cluster bootstrapped over gRPC");
        }
        Ok(Response::new(BootstrapResponse {
            header: self.header(result.err().as_ref()),
        }))
    }

    async fn is_bootstrapped(
        &self,
        request: Request<IsBootstrappedRequest>,
    ) -> ServiceResult<IsBootstrappedResponse> {
        self.check_header(request.get_ref().header.as_ref())?;
        let result = self.call(|s| s.is_bootstrapped()).await?;
        Ok(Response::new(IsBootstrappedResponse {
            header: self.header(result.as_ref().err()),
            bootstrapped: result.unwrap_or(false),
        }))
    }

    async fn alloc_id(&self, request: Request<AllocIdRequest>) -> ServiceResult<AllocIdResponse> {
        self.check_header(request.get_ref().header.as_ref())?;
        let result = self.call(|s| s.alloc_id()).await?;
        Ok(Response::new(AllocIdResponse {
            header: self.header(result.as_ref().err()),
            id: result.unwrap_or(0),
        }))
    }

    async fn get_store(
        &self,
        request: Request<GetStoreRequest>,
    ) -> ServiceResult<GetStoreResponse> {
        let request = request.into_inner();
        self.check_header(request.header.as_ref())?;
        let store_id = request.store_id;
        let result = self
            .call(move |s| Ok((s.get_store(store_id)?, s.store_stats(store_id)?)))
            .await?;
        Ok(Response::new(match result {
            Ok((store, stats)) => GetStoreResponse {
                header: self.header(None),
                store: Some(store),
                stats,
            },
            Err(e) => GetStoreResponse {
                header: self.header(Some(&e)),
                ..Default::default()
            },
        }))
    }

    async fn put_store(
        &self,
        request: Request<PutStoreRequest>,
    ) -> ServiceResult<PutStoreResponse> {
        let request = request.into_inner();
        self.check_header(request.header.as_ref())?;
        let result = match request.store {
            Some(store) => self.call(move |s| s.put_store(store)).await?,
            None => Err(Error::InvalidRequest(
                "put store without a store".to_owned(),
            )),
        };
        Ok(Response::new(PutStoreResponse {
            header: self.header(result.err().as_ref()),
        }))
    }

    async fn get_all_stores(
        &self,
        request: Request<GetAllStoresRequest>,
    ) -> ServiceResult<GetAllStoresResponse> {
        let request = request.into_inner();
        self.check_header(request.header.as_ref())?;
        let result = self.call(|s| s.get_all_stores()).await?;
        Ok(Response::new(match result {
            Ok(mut stores) => {
                if request.exclude_tombstone_stores {
                    stores.retain(|s| s.state() != StoreState::Tombstone);
                }
                GetAllStoresResponse {
                    header: self.header(None),
                    stores,
                }
            }
            Err(e) => GetAllStoresResponse {
                header: self.header(Some(&e)),
                stores: Vec::new(),
            },
        }))
    }

    async fn store_heartbeat(
        &self,
        request: Request<StoreHeartbeatRequest>,
    ) -> ServiceResult<StoreHeartbeatResponse> {
        let request = request.into_inner();
        self.check_header(request.header.as_ref())?;
        let result = match request.stats {
            Some(stats) => self.call(move |s| s.store_heartbeat(stats)).await?,
            None => Err(Error::InvalidRequest(
                "store heartbeat without stats".to_owned(),
            )),
        };
        Ok(Response::new(StoreHeartbeatResponse {
            header: self.header(result.err().as_ref()),
        }))
    }

    type RegionHeartbeatStream =
        ReceiverStream<std::result::Result<RegionHeartbeatResponse, Status>>;

    async fn region_heartbeat(
        &self,
        request: Request<Streaming<RegionHeartbeatRequest>>,
    ) -> ServiceResult<Self::RegionHeartbeatStream> {
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(self.clone().run_heartbeat_stream(request.into_inner(), tx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn get_region(
        &self,
        request: Request<GetRegionRequest>,
    ) -> ServiceResult<GetRegionResponse> {
        let request = request.into_inner();
        self.check_header(request.header.as_ref())?;
        let key = request.region_key;
        let result = self
            .call(move |s| match s.get_region(&key) {
                Ok(found) => Ok(Some(found)),
                Err(Error::NoRegionForKey { .. }) => Ok(None),
                Err(e) => Err(e),
            })
            .await?;
        Ok(Response::new(self.region_response(result)))
    }

    async fn get_prev_region(
        &self,
        request: Request<GetRegionRequest>,
    ) -> ServiceResult<GetRegionResponse> {
        let request = request.into_inner();
        self.check_header(request.header.as_ref())?;
        let key = request.region_key;
        let result = self.call(move |s| s.get_prev_region(&key)).await?;
        Ok(Response::new(self.region_response(result)))
    }

    async fn get_region_by_id(
        &self,
        request: Request<GetRegionByIdRequest>,
    ) -> ServiceResult<GetRegionResponse> {
        let request = request.into_inner();
        self.check_header(request.header.as_ref())?;
        let region_id = request.region_id;
        let result = self.call(move |s| s.get_region_by_id(region_id)).await?;
        Ok(Response::new(self.region_response(result)))
    }

    async fn scan_regions(
        &self,
        request: Request<ScanRegionsRequest>,
    ) -> ServiceResult<ScanRegionsResponse> {
        let request = request.into_inner();
        self.check_header(request.header.as_ref())?;
        // As TinyKV: a limit <= 0 means no limit.
        let limit = usize::try_from(request.limit).unwrap_or(0);
        let (start, end) = (request.start_key, request.end_key);
        let result = self
            .call(move |s| {
                s.scan_regions(&start, &end, limit).map(|found| {
                    found
                        .into_iter()
                        .map(|(region, leader)| {
                            let sessions = s.client_sessions(region.id);
                            (region, leader, sessions)
                        })
                        .collect::<Vec<_>>()
                })
            })
            .await?;
        Ok(Response::new(match result {
            Ok(found) => {
                let mut response = ScanRegionsResponse {
                    header: self.header(None),
                    ..Default::default()
                };
                for (region, leader, sessions) in found {
                    response.regions.push(region);
                    response.leaders.push(leader.unwrap_or_default());
                    response.client_sessions.push(sessions);
                }
                response
            }
            Err(e) => ScanRegionsResponse {
                header: self.header(Some(&e)),
                ..Default::default()
            },
        }))
    }

    async fn ask_split(
        &self,
        request: Request<AskSplitRequest>,
    ) -> ServiceResult<AskSplitResponse> {
        let request = request.into_inner();
        self.check_header(request.header.as_ref())?;
        let result = match request.region {
            Some(region) => self.call(move |s| s.ask_split(&region)).await?,
            None => Err(Error::InvalidRequest(
                "ask split without a region".to_owned(),
            )),
        };
        Ok(Response::new(match result {
            Ok(split) => AskSplitResponse {
                header: self.header(None),
                new_region_id: split.new_region_id,
                new_peer_ids: split.new_peer_ids,
            },
            Err(e) => AskSplitResponse {
                header: self.header(Some(&e)),
                ..Default::default()
            },
        }))
    }

    async fn get_cluster_config(
        &self,
        request: Request<GetClusterConfigRequest>,
    ) -> ServiceResult<GetClusterConfigResponse> {
        self.check_header(request.get_ref().header.as_ref())?;
        let result = self.call(|s| s.cluster_config()).await?;
        Ok(Response::new(GetClusterConfigResponse {
            header: self.header(result.as_ref().err()),
            cluster: result.ok(),
        }))
    }

    async fn put_cluster_config(
        &self,
        request: Request<PutClusterConfigRequest>,
    ) -> ServiceResult<PutClusterConfigResponse> {
        let request = request.into_inner();
        self.check_header(request.header.as_ref())?;
        let result = match request.cluster {
            Some(cluster) => self.call(move |s| s.put_cluster_config(cluster)).await?,
            None => Err(Error::InvalidRequest(
                "put cluster config without a config".to_owned(),
            )),
        };
        Ok(Response::new(PutClusterConfigResponse {
            header: self.header(result.err().as_ref()),
        }))
    }

    async fn scatter_region(
        &self,
        _request: Request<ScatterRegionRequest>,
    ) -> ServiceResult<ScatterRegionResponse> {
        Err(Status::unimplemented(
            "ScatterRegion is not implemented by this scheduler",
        ))
    }

    async fn get_gc_safe_point(
        &self,
        _request: Request<GetGcSafePointRequest>,
    ) -> ServiceResult<GetGcSafePointResponse> {
        Err(Status::unimplemented(
            "GetGCSafePoint is not implemented by this scheduler",
        ))
    }

    async fn update_gc_safe_point(
        &self,
        _request: Request<UpdateGcSafePointRequest>,
    ) -> ServiceResult<UpdateGcSafePointResponse> {
        Err(Status::unimplemented(
            "UpdateGCSafePoint is not implemented by this scheduler",
        ))
    }

    async fn get_operator(
        &self,
        _request: Request<GetOperatorRequest>,
    ) -> ServiceResult<GetOperatorResponse> {
        Err(Status::unimplemented(
            "GetOperator is not implemented by this scheduler",
        ))
    }
}

impl SchedulerService {
    /// The answer to a region lookup: the region and its leader, an OK
    /// header and no region when none was found, or the error.
    fn region_response(
        &self,
        result: Result<Option<(kvproto::metapb::Region, Option<kvproto::metapb::Peer>)>>,
    ) -> GetRegionResponse {
        match result {
            Ok(Some((region, leader))) => GetRegionResponse {
                header: self.header(None),
                region: Some(region),
                leader,
                slaves: Vec::new(),
            },
            Ok(None) => GetRegionResponse {
                header: self.header(None),
                ..Default::default()
            },
            Err(e) => GetRegionResponse {
                header: self.header(Some(&e)),
                ..Default::default()
            },
        }
    }
}

/// Serves `service` on `listener` until `shutdown` completes, then shuts down
/// gracefully (see the module docs).
pub async fn serve(
    listener: TcpListener,
    service: SchedulerService,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<()> {
    let closer = service.clone();
    tonic::transport::Server::builder()
        .add_service(SchedulerServer::new(service))
        .serve_with_incoming_shutdown(incoming(listener), async move {
            shutdown.await;
            closer.close_streams();
        })
        .await
        .map_err(|e| Error::Other(format!("gRPC server failed: {e}")))
}

/// The connections `listener` accepts, with `TCP_NODELAY` set, for a gRPC
/// server handed a bound listener (this one and the store's). Without it a
/// small answer may wait behind the previous one for the client's delayed
/// ACK (40 ms on Linux): a client with one request in flight then sees a
/// p99 of 40 ms. tonic sets it only on listeners it binds itself.
pub fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener).with_nodelay(Some(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_do_not_delay_small_answers() {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("bound address");
        let mut connections = incoming(listener);
        let _client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let accepted = tokio_stream::StreamExt::next(&mut connections)
            .await
            .expect("the listener is open")
            .expect("a connection");
        assert!(accepted.nodelay().expect("read TCP_NODELAY"));
    }
}
