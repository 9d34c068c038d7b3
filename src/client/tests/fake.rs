//! Fake stores for the routing tests: `TinyKv` services on loopback ports
//! over one shared [`World`] — the regions as they really are, which store
//! leads each, and the data — next to the real `SchedulerService`, whose
//! view the test keeps in step with the world, or deliberately not.
//!
//! A fake store answers a Raw request as a store would: `RegionNotFound`
//! if it has no peer of the request's region, `EpochNotMatch` (with the
//! world's regions) for a stale epoch, `NotLeader` (with or without a hint)
//! if another store leads, `KeyNotInRegion` for a key outside the range,
//! an `error` string for a bad column family or an empty key to write.
//! A test's hook sees every request first and may change the world or
//! script the answer — instead of serving it, or after serving it
//! ([`Answer::Lost`]: the write applies, its answer is lost). Scans
//! return at most [`World::page_size`] pairs, as a store's byte bound
//! would. Every method the client does not use answers `UNIMPLEMENTED`.
//!
//! Client sessions, as `docs/PROTOCOL_EXTENSIONS.md` describes the state
//! machine: each region keeps a table client id → last applied sequence
//! ([`World::sessions`]), copied to the new region on a split.
//! `OpenSession` opens a session (a no-op when open). A write with a
//! session applies when its sequence is above the last applied one; at
//! it, it applies nothing and succeeds (the cached answer); below it, a
//! region error with only a message; a session the region does not hold,
//! `SessionExpired`.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kvproto::coprocessor;
use kvproto::errorpb;
use kvproto::kvrpcpb::{
    BatchRollbackRequest, BatchRollbackResponse, CheckTxnStatusRequest, CheckTxnStatusResponse,
    CommitRequest, CommitResponse, Context, GetRequest, GetResponse, KvPair, OpenSessionRequest,
    OpenSessionResponse, PrewriteRequest, PrewriteResponse, RawAppendRequest, RawAppendResponse,
    RawDeleteRequest, RawDeleteResponse, RawGetRequest, RawGetResponse, RawPutRequest,
    RawPutResponse, RawScanRequest, RawScanResponse, ResolveLockRequest, ResolveLockResponse,
    ScanRequest, ScanResponse,
};
use kvproto::metapb::{Peer, Region, RegionEpoch, Store};
use kvproto::raft_serverpb::{Done, RaftMessage, SnapshotChunk};
use kvproto::schedulerpb::{RegionHeartbeatRequest, RequestHeader};
use kvproto::tinykvpb::tiny_kv_server::{TinyKv, TinyKvServer};
use scheduler_stub::{MemoryScheduler, SchedulerClient, SchedulerService};
use slog::{Logger, o};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Request, Response, Status, Streaming};

use crate::client::{Client, ClientOptions};

/// The cluster id of the fake environments.
const CLUSTER_ID: u64 = 7;

pub(super) fn logger() -> Logger {
    Logger::root(slog::Discard, o!())
}

/// Peer of region `region_id` on store `store_id`: ids `10 * region + store`.
pub(super) fn peer(region_id: u64, store_id: u64) -> Peer {
    Peer {
        id: region_id * 10 + store_id,
        store_id,
    }
}

/// Region `id` over `[start, end)` at epoch `(conf_ver, version)` with a
/// peer on each of `stores`.
pub(super) fn new_test_region(
    id: u64,
    range: (&[u8], &[u8]),
    epoch: (u64, u64),
    stores: &[u64],
) -> Region {
    Region {
        id,
        start_key: range.0.to_vec(),
        end_key: range.1.to_vec(),
        region_epoch: Some(RegionEpoch {
            conf_ver: epoch.0,
            version: epoch.1,
        }),
        peers: stores.iter().map(|s| peer(id, *s)).collect(),
    }
}

/// A scripted answer from a hook.
pub(super) enum Answer {
    /// A response carrying this region error.
    RegionError(Box<errorpb::Error>),
    /// A gRPC failure.
    Status(Status),
    /// Serve the request (a write applies), then answer with this gRPC
    /// failure instead of the response: a lost answer.
    Lost(Status),
}

/// One request a fake store received.
#[derive(Debug, Clone)]
pub(super) struct Recorded {
    /// The store that received it.
    pub store_id: u64,
    /// `RawGet`, `RawPut`, `RawDelete`, `RawScan`, `RawAppend` or
    /// `OpenSession`.
    pub op: &'static str,
    /// Its context.
    pub ctx: Context,
    /// Its key (a scan's start key; empty for `OpenSession`).
    pub key: Vec<u8>,
}

/// What a hook sees of a request, and may change.
pub(super) type Hook = Box<dyn FnMut(&mut World, &Recorded) -> Option<Answer> + Send>;

/// The truth behind the fake stores; see the module docs.
#[derive(Debug, Default)]
pub(super) struct World {
    /// Region id -> the region as it really is.
    pub regions: BTreeMap<u64, Region>,
    /// Region id -> the store of its leader; a region without one is
    /// served by any of its peers.
    pub leaders: HashMap<u64, u64>,
    /// Whether `NotLeader` names the leader.
    pub hint_leader: bool,
    /// The `default` column family of every store (replication is perfect).
    pub data: BTreeMap<Vec<u8>, Vec<u8>>,
    /// The most pairs one scan returns.
    pub page_size: usize,
    /// Every request received, in order.
    pub requests: Vec<Recorded>,
    /// Region id -> client id -> the sequence of the client's last applied
    /// write there (0: none yet); see the module docs.
    pub sessions: HashMap<u64, HashMap<u64, u64>>,
}

impl World {
    /// The region with `id`, split at `key`: it keeps `[start, key)` and
    /// region `new_id` (same stores) takes `[key, end)`, both at the next
    /// version.
    pub(super) fn split(&mut self, id: u64, key: &[u8], new_id: u64) {
        let region = self.regions.get_mut(&id).expect("the region to split");
        let epoch = region.region_epoch.as_mut().expect("epoch");
        epoch.version += 1;
        let stores: Vec<u64> = region.peers.iter().map(|p| p.store_id).collect();
        let (epoch, end) = ((epoch.conf_ver, epoch.version), region.end_key.clone());
        region.end_key = key.to_vec();
        let right = new_test_region(new_id, (key, &end), epoch, &stores);
        self.regions.insert(new_id, right);
        if let Some(leader) = self.leaders.get(&id).copied() {
            self.leaders.insert(new_id, leader);
        }
        if let Some(table) = self.sessions.get(&id).cloned() {
            self.sessions.insert(new_id, table);
        }
    }

    /// Drops client `client_id`'s session in region `region_id`, as an
    /// expiry or an eviction would.
    pub(super) fn expire_session(&mut self, region_id: u64, client_id: u64) {
        if let Some(table) = self.sessions.get_mut(&region_id) {
            table.remove(&client_id);
        }
    }

    /// The requests of kind `op`, in order.
    pub(super) fn requests_of(&self, op: &str) -> Vec<Recorded> {
        self.requests
            .iter()
            .filter(|r| r.op == op)
            .cloned()
            .collect()
    }

    /// Whether the write with `ctx`'s session applies in `region_id`, by
    /// the session table (module docs): `Ok(true)` applies it, `Ok(false)`
    /// answers the repeat without applying it.
    fn session_write(&mut self, region_id: u64, ctx: &Context) -> Result<bool, Refusal> {
        if ctx.client_id == 0 {
            return Ok(true);
        }
        let table = self.sessions.entry(region_id).or_default();
        match table.get(&ctx.client_id).copied() {
            None => Err(Refusal::Region(Box::new(region_error(|e| {
                e.message = format!("session of client {} expired", ctx.client_id);
                e.session_expired = Some(errorpb::SessionExpired {
                    client_id: ctx.client_id,
                    sequence: ctx.sequence,
                });
            })))),
            Some(last) if ctx.sequence > last => {
                table.insert(ctx.client_id, ctx.sequence);
                Ok(true)
            }
            Some(last) if ctx.sequence == last => Ok(false),
            Some(last) => Err(Refusal::Region(Box::new(region_error(|e| {
                e.message = format!(
                    "write {} of client {} is older than its last applied write {last}",
                    ctx.sequence, ctx.client_id
                );
            })))),
        }
    }

    /// The stores the requests went to, in order.
    pub(super) fn stores_asked(&self) -> Vec<u64> {
        self.requests.iter().map(|r| r.store_id).collect()
    }
}

struct Shared {
    world: World,
    hook: Option<Hook>,
}

/// A region error set by `f`.
pub(super) fn region_error(f: impl FnOnce(&mut errorpb::Error)) -> errorpb::Error {
    let mut error = errorpb::Error::default();
    f(&mut error);
    error
}

/// Responses a fake store builds from an error.
trait FakeResponse: Default {
    fn with_region_error(error: errorpb::Error) -> Self;
    fn with_error(error: String) -> Self;
}

macro_rules! fake_response {
    ($($resp:ty),*) => {$(
        impl FakeResponse for $resp {
            fn with_region_error(error: errorpb::Error) -> Self {
                Self { region_error: Some(error), ..Default::default() }
            }

            fn with_error(error: String) -> Self {
                Self { error, ..Default::default() }
            }
        }
    )*};
}

fake_response!(
    RawGetResponse,
    RawPutResponse,
    RawDeleteResponse,
    RawScanResponse,
    RawAppendResponse,
    OpenSessionResponse
);

/// Why a request is not served: an answer to give instead.
enum Refusal {
    Region(Box<errorpb::Error>),
    Error(String),
    Status(Status),
}

fn refuse<R: FakeResponse>(refusal: Refusal) -> Result<Response<R>, Status> {
    match refusal {
        Refusal::Region(e) => Ok(Response::new(R::with_region_error(*e))),
        Refusal::Error(e) => Ok(Response::new(R::with_error(e))),
        Refusal::Status(s) => Err(s),
    }
}

/// One fake store.
struct FakeStore {
    store_id: u64,
    shared: Arc<Mutex<Shared>>,
}

impl FakeStore {
    /// Records the request, runs the hook, and checks it as a store would
    /// (the key is checked against the region unless it is `None`); on
    /// success, the world (locked), the region, and the failure to answer
    /// with instead of the response, if the hook asked to lose it.
    fn admit(
        &self,
        op: &'static str,
        ctx: Option<Context>,
        key: Option<&[u8]>,
        cf: &str,
    ) -> Result<Admitted<'_>, Refusal> {
        let mut shared = self.shared.lock().expect("fake world lock");
        let ctx = ctx.unwrap_or_default();
        let recorded = Recorded {
            store_id: self.store_id,
            op,
            ctx,
            key: key.unwrap_or_default().to_vec(),
        };
        shared.world.requests.push(recorded.clone());
        let mut hook = shared.hook.take();
        let scripted = hook.as_mut().and_then(|h| h(&mut shared.world, &recorded));
        shared.hook = hook;
        let lose = match scripted {
            Some(Answer::RegionError(e)) => return Err(Refusal::Region(e)),
            Some(Answer::Status(s)) => return Err(Refusal::Status(s)),
            Some(Answer::Lost(s)) => Some(s),
            None => None,
        };
        if !cf.is_empty() && cf != "default" {
            return Err(Refusal::Error(format!("invalid cf: {cf:?}")));
        }
        let world = &shared.world;
        let region = match world.regions.get(&ctx.region_id) {
            Some(r) if r.peers.iter().any(|p| p.store_id == self.store_id) => r.clone(),
            _ => {
                return Err(Refusal::Region(Box::new(region_error(|e| {
                    e.message = format!("region {} not found", ctx.region_id);
                    e.region_not_found = Some(errorpb::RegionNotFound {
                        region_id: ctx.region_id,
                    });
                }))));
            }
        };
        if ctx.region_epoch != region.region_epoch {
            let current_regions = world.regions.values().cloned().collect();
            return Err(Refusal::Region(Box::new(region_error(|e| {
                e.message = "epoch not match".to_owned();
                e.epoch_not_match = Some(errorpb::EpochNotMatch { current_regions });
            }))));
        }
        if let Some(&leader_store) = world.leaders.get(&region.id)
            && leader_store != self.store_id
        {
            let leader = world.hint_leader.then(|| peer(region.id, leader_store));
            return Err(Refusal::Region(Box::new(region_error(|e| {
                e.message = "not leader".to_owned();
                e.not_leader = Some(errorpb::NotLeader {
                    region_id: region.id,
                    leader,
                });
            }))));
        }
        if let Some(key) = key
            && !crate::client::cache::key_in_range(key, &region.start_key, &region.end_key)
        {
            return Err(Refusal::Region(Box::new(region_error(|e| {
                e.message = "key not in region".to_owned();
                e.key_not_in_region = Some(errorpb::KeyNotInRegion {
                    key: key.to_vec(),
                    region_id: region.id,
                    start_key: region.start_key.clone(),
                    end_key: region.end_key.clone(),
                });
            }))));
        }
        Ok(Admitted {
            shared,
            region,
            lose,
        })
    }

    /// Serves a write of `key` with `ctx`'s session, if any: `apply` runs
    /// unless the request is refused or the session table says it applied
    /// before; then the answer, or the failure the hook asked for.
    fn serve_write<R: FakeResponse>(
        &self,
        op: &'static str,
        ctx: Option<Context>,
        key: &[u8],
        cf: &str,
        apply: impl FnOnce(&mut World),
    ) -> Result<Response<R>, Status> {
        let Admitted {
            mut shared,
            region,
            lose,
        } = match self.admit(op, ctx, Some(key), cf) {
            Ok(admitted) => admitted,
            Err(refusal) => return refuse(refusal),
        };
        if key.is_empty() {
            return refuse(Refusal::Error("empty key".to_owned()));
        }
        let world = &mut shared.world;
        match world.session_write(region.id, &ctx.unwrap_or_default()) {
            Ok(true) => apply(world),
            Ok(false) => {}
            Err(refusal) => return refuse(refusal),
        }
        match lose {
            Some(status) => Err(status),
            None => Ok(Response::new(R::default())),
        }
    }
}

/// A request a fake store serves.
struct Admitted<'a> {
    shared: MutexGuard<'a, Shared>,
    region: Region,
    /// Answer this instead, once served.
    lose: Option<Status>,
}

fn unimplemented<T>(what: &str) -> Result<Response<T>, Status> {
    Err(Status::unimplemented(format!(
        "{what} is not implemented by the fake store"
    )))
}

#[tonic::async_trait]
impl TinyKv for FakeStore {
    async fn kv_get(&self, _: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        unimplemented("KvGet")
    }

    async fn kv_scan(&self, _: Request<ScanRequest>) -> Result<Response<ScanResponse>, Status> {
        unimplemented("KvScan")
    }

    async fn kv_prewrite(
        &self,
        _: Request<PrewriteRequest>,
    ) -> Result<Response<PrewriteResponse>, Status> {
        unimplemented("KvPrewrite")
    }

    async fn kv_commit(
        &self,
        _: Request<CommitRequest>,
    ) -> Result<Response<CommitResponse>, Status> {
        unimplemented("KvCommit")
    }

    async fn kv_check_txn_status(
        &self,
        _: Request<CheckTxnStatusRequest>,
    ) -> Result<Response<CheckTxnStatusResponse>, Status> {
        unimplemented("KvCheckTxnStatus")
    }

    async fn kv_batch_rollback(
        &self,
        _: Request<BatchRollbackRequest>,
    ) -> Result<Response<BatchRollbackResponse>, Status> {
        unimplemented("KvBatchRollback")
    }

    async fn kv_resolve_lock(
        &self,
        _: Request<ResolveLockRequest>,
    ) -> Result<Response<ResolveLockResponse>, Status> {
        unimplemented("KvResolveLock")
    }

    async fn raw_get(
        &self,
        request: Request<RawGetRequest>,
    ) -> Result<Response<RawGetResponse>, Status> {
        let request = request.into_inner();
        match self.admit("RawGet", request.context, Some(&request.key), &request.cf) {
            Ok(Admitted {
                lose: Some(status), ..
            }) => Err(status),
            Ok(Admitted { shared, .. }) => {
                Ok(Response::new(match shared.world.data.get(&request.key) {
                    Some(value) => RawGetResponse {
                        value: value.clone(),
                        ..Default::default()
                    },
                    None => RawGetResponse {
                        not_found: true,
                        ..Default::default()
                    },
                }))
            }
            Err(refusal) => refuse(refusal),
        }
    }

    async fn raw_put(
        &self,
        request: Request<RawPutRequest>,
    ) -> Result<Response<RawPutResponse>, Status> {
        let request = request.into_inner();
        let (key, value) = (request.key.clone(), request.value);
        self.serve_write(
            "RawPut",
            request.context,
            &request.key,
            &request.cf,
            |world| {
                world.data.insert(key, value);
            },
        )
    }

    async fn raw_delete(
        &self,
        request: Request<RawDeleteRequest>,
    ) -> Result<Response<RawDeleteResponse>, Status> {
        let request = request.into_inner();
        let key = request.key.clone();
        self.serve_write(
            "RawDelete",
            request.context,
            &request.key,
            &request.cf,
            |world| {
                world.data.remove(&key);
            },
        )
    }

    async fn raw_scan(
        &self,
        request: Request<RawScanRequest>,
    ) -> Result<Response<RawScanResponse>, Status> {
        let request = request.into_inner();
        match self.admit(
            "RawScan",
            request.context,
            Some(&request.start_key),
            &request.cf,
        ) {
            Ok(Admitted {
                lose: Some(status), ..
            }) => Err(status),
            Ok(Admitted { shared, region, .. }) => {
                let world = &shared.world;
                let take = world.page_size.min(request.limit as usize);
                let kvs = world
                    .data
                    .range(request.start_key.clone()..)
                    .take_while(|(k, _)| region.end_key.is_empty() || **k < region.end_key)
                    .take(take)
                    .map(|(key, value)| KvPair {
                        error: None,
                        key: key.clone(),
                        value: value.clone(),
                    })
                    .collect();
                Ok(Response::new(RawScanResponse {
                    kvs,
                    ..Default::default()
                }))
            }
            Err(refusal) => refuse(refusal),
        }
    }

    async fn raft(&self, _: Request<Streaming<RaftMessage>>) -> Result<Response<Done>, Status> {
        unimplemented("Raft")
    }

    async fn batch_raft(
        &self,
        _: Request<Streaming<kvproto::raft_serverpb::BatchRaftMessage>>,
    ) -> Result<Response<Done>, Status> {
        unimplemented("BatchRaft")
    }

    async fn snapshot(
        &self,
        _: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<Done>, Status> {
        unimplemented("Snapshot")
    }

    async fn raw_append(
        &self,
        request: Request<RawAppendRequest>,
    ) -> Result<Response<RawAppendResponse>, Status> {
        let request = request.into_inner();
        let (key, value) = (request.key.clone(), request.value);
        self.serve_write(
            "RawAppend",
            request.context,
            &request.key,
            &request.cf,
            |world| world.data.entry(key).or_default().extend_from_slice(&value),
        )
    }

    async fn open_session(
        &self,
        request: Request<OpenSessionRequest>,
    ) -> Result<Response<OpenSessionResponse>, Status> {
        let ctx = request.into_inner().context;
        let Admitted {
            mut shared,
            region,
            lose,
        } = match self.admit("OpenSession", ctx, None, "") {
            Ok(admitted) => admitted,
            Err(refusal) => return refuse(refusal),
        };
        let client_id = ctx.unwrap_or_default().client_id;
        if client_id == 0 {
            return refuse(Refusal::Error("OpenSession names no client".to_owned()));
        }
        let table = shared.world.sessions.entry(region.id).or_default();
        table.entry(client_id).or_insert(0);
        match lose {
            Some(status) => Err(status),
            None => Ok(Response::new(OpenSessionResponse::default())),
        }
    }

    async fn coprocessor(
        &self,
        _: Request<coprocessor::Request>,
    ) -> Result<Response<coprocessor::Response>, Status> {
        unimplemented("Coprocessor")
    }
}

/// Serves `service` on `listener` until the returned sender is dropped.
fn serve_kv(listener: TcpListener, service: FakeStore) -> oneshot::Sender<()> {
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TinyKvServer::new(service))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stopped.await;
            }),
    );
    stop
}

/// A loopback address nothing listens on (bound, then closed).
async fn dead_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    listener.local_addr().expect("bound address")
}

/// What a fake environment starts with.
pub(super) struct FakeSetup {
    /// Stores `1..=stores` are started.
    pub stores: u64,
    /// Stores registered with an address nothing listens on.
    pub dead: Vec<u64>,
    /// The regions, in the world and the scheduler.
    pub regions: Vec<Region>,
    /// Region id -> leader store, in the world and the scheduler (which
    /// takes the first peer for a region not listed).
    pub leaders: HashMap<u64, u64>,
}

/// Fake stores, the real scheduler service, and the world behind both.
pub(super) struct FakeEnv {
    pub scheduler: Arc<MemoryScheduler>,
    pub scheduler_addr: SocketAddr,
    shared: Arc<Mutex<Shared>>,
    _stops: Vec<oneshot::Sender<()>>,
}

impl FakeEnv {
    /// Starts the stores and the scheduler of `setup`.
    pub(super) async fn start(setup: FakeSetup) -> FakeEnv {
        let world = World {
            regions: setup.regions.iter().map(|r| (r.id, r.clone())).collect(),
            leaders: setup.leaders.clone(),
            hint_leader: true,
            page_size: usize::MAX,
            ..Default::default()
        };
        let shared = Arc::new(Mutex::new(Shared { world, hook: None }));
        let mut stops = Vec::new();
        let mut stores = Vec::new();
        for store_id in 1..=setup.stores {
            let address = if setup.dead.contains(&store_id) {
                dead_address().await
            } else {
                let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let addr = listener.local_addr().expect("bound address");
                let service = FakeStore {
                    store_id,
                    shared: Arc::clone(&shared),
                };
                stops.push(serve_kv(listener, service));
                addr
            };
            stores.push(Store {
                id: store_id,
                address: address.to_string(),
                ..Default::default()
            });
        }

        let scheduler = Arc::new(MemoryScheduler::new(CLUSTER_ID, &logger()));
        let (first, rest) = setup.regions.split_first().expect("at least one region");
        scheduler
            .bootstrap(stores[0].clone(), first.clone())
            .expect("bootstrap");
        for store in &stores[1..] {
            scheduler.put_store(store.clone()).expect("put store");
        }
        let env_leaders = setup.leaders;
        for region in std::iter::once(first).chain(rest) {
            let leader = env_leaders
                .get(&region.id)
                .map(|s| peer(region.id, *s))
                .unwrap_or(region.peers[0]);
            must_heartbeat(&scheduler, region, leader);
        }
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let scheduler_addr = listener.local_addr().expect("bound address");
        let service = SchedulerService::new(
            Arc::clone(&scheduler),
            format!("http://{scheduler_addr}"),
            &logger(),
        );
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(scheduler_stub::serve(listener, service, async {
            let _ = stopped.await;
        }));
        stops.push(stop);
        FakeEnv {
            scheduler,
            scheduler_addr,
            shared,
            _stops: stops,
        }
    }

    /// Runs `f` on the world, locked.
    pub(super) fn with_world<T>(&self, f: impl FnOnce(&mut World) -> T) -> T {
        f(&mut self.shared.lock().expect("fake world lock").world)
    }

    /// Sets the hook every request passes first.
    pub(super) fn set_hook(
        &self,
        hook: impl FnMut(&mut World, &Recorded) -> Option<Answer> + Send + 'static,
    ) {
        self.shared.lock().expect("fake world lock").hook = Some(Box::new(hook));
    }

    /// A client of this environment with `timeout` per operation and short
    /// backoffs.
    pub(super) async fn client(&self, timeout: Duration) -> Client {
        let opts = ClientOptions {
            timeout,
            backoff_min: Duration::from_millis(5),
            backoff_max: Duration::from_millis(50),
            attempt_timeout: Duration::from_secs(5),
            ..ClientOptions::default()
        };
        Client::connect(&self.scheduler_addr.to_string(), opts)
            .await
            .expect("connect to the fake environment's scheduler")
    }
}

/// Tells the scheduler that `leader` leads `region` as it is now.
pub(super) fn must_heartbeat(scheduler: &MemoryScheduler, region: &Region, leader: Peer) {
    scheduler
        .region_heartbeat(RegionHeartbeatRequest {
            header: Some(RequestHeader {
                cluster_id: CLUSTER_ID,
            }),
            region: Some(region.clone()),
            leader: Some(leader),
            ..Default::default()
        })
        .expect("the scheduler takes the heartbeat");
}
