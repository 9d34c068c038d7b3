//! The gRPC service over a real loopback socket, with the generated tonic
//! client, and its persistence across restarts on the same data dir.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kvproto::eraftpb::ConfChangeType;
use kvproto::metapb::{Cluster, Peer, Region, RegionEpoch, Store, StoreState};
use kvproto::schedulerpb::scheduler_client::SchedulerClient as GrpcClient;
use kvproto::schedulerpb::{
    AllocIdRequest, AskSplitRequest, BootstrapRequest, ErrorType, GetAllStoresRequest,
    GetClusterConfigRequest, GetMembersRequest, GetOperatorRequest, GetRegionByIdRequest,
    GetRegionRequest, GetStoreRequest, IsBootstrappedRequest, PutClusterConfigRequest,
    PutStoreRequest, RegionHeartbeatRequest, RegionHeartbeatResponse, RequestHeader,
    ResponseHeader, ScanRegionsRequest, StoreHeartbeatRequest, StoreStats, TsoRequest,
};
use slog::{Logger, o};
use tinykv_scheduler_stub::{
    MemoryScheduler, ScheduleConfig, SchedulerClient, SchedulerService, serve,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;
use tonic::transport::Channel;

/// How long any single wait in these tests may take before it fails.
const DEADLINE: Duration = Duration::from_secs(20);

fn new_test_logger() -> Logger {
    Logger::root(slog::Discard, o!())
}

/// A scheduler served on a loopback port, over a data dir.
struct TestServer {
    scheduler: Arc<MemoryScheduler>,
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<tinykv_scheduler_stub::Result<()>>,
}

async fn start_server(dir: &Path) -> TestServer {
    start_server_with(dir, ScheduleConfig::default()).await
}

/// As `start_server`, with these scheduling settings.
async fn start_server_with(dir: &Path, schedule: ScheduleConfig) -> TestServer {
    let logger = new_test_logger();
    let scheduler = Arc::new(
        MemoryScheduler::open(dir, &logger)
            .expect("open the data dir")
            .with_schedule_config(schedule),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let service = SchedulerService::new(Arc::clone(&scheduler), format!("http://{addr}"), &logger);
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, service, async move {
        let _ = stopped.await;
    }));
    TestServer {
        scheduler,
        addr,
        stop,
        task,
    }
}

impl TestServer {
    async fn client(&self) -> GrpcClient<Channel> {
        tokio::time::timeout(
            DEADLINE,
            GrpcClient::connect(format!("http://{}", self.addr)),
        )
        .await
        .expect("connect in time")
        .expect("connect")
    }

    fn header(&self) -> Option<RequestHeader> {
        Some(RequestHeader {
            cluster_id: self.scheduler.cluster_id(),
        })
    }

    /// Graceful stop; fails if the server does not stop in time (e.g. an
    /// open stream holds it up).
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("server stops in time")
            .expect("server task")
            .expect("server ran cleanly");
    }
}

fn error_type(header: &Option<ResponseHeader>) -> ErrorType {
    header
        .as_ref()
        .and_then(|h| h.error.as_ref())
        .map_or(ErrorType::Ok, |e| e.r#type())
}

fn must_ok(header: &Option<ResponseHeader>) {
    assert_eq!(error_type(header), ErrorType::Ok, "{header:?}");
}

fn new_test_store(id: u64) -> Store {
    Store {
        id,
        address: format!("127.0.0.1:{}", 20160 + id),
        state: StoreState::Up as i32,
    }
}

fn new_test_region(id: u64, range: (&[u8], &[u8]), epoch: (u64, u64), peers: &[Peer]) -> Region {
    let (version, conf_ver) = epoch;
    Region {
        id,
        start_key: range.0.to_vec(),
        end_key: range.1.to_vec(),
        region_epoch: Some(RegionEpoch { conf_ver, version }),
        peers: peers.to_vec(),
    }
}

/// Bootstraps with store 1 and puts stores `2..=stores`, over gRPC.
async fn must_bootstrap(server: &TestServer, client: &mut GrpcClient<Channel>, stores: u64) {
    let response = client
        .bootstrap(BootstrapRequest {
            header: server.header(),
            store: Some(new_test_store(1)),
        })
        .await
        .unwrap()
        .into_inner();
    must_ok(&response.header);
    for id in 2..=stores {
        let response = client
            .put_store(PutStoreRequest {
                header: server.header(),
                store: Some(new_test_store(id)),
            })
            .await
            .unwrap()
            .into_inner();
        must_ok(&response.header);
    }
}

/// An open region heartbeat stream.
struct HeartbeatStream {
    tx: mpsc::Sender<RegionHeartbeatRequest>,
    rx: tonic::Streaming<RegionHeartbeatResponse>,
    header: Option<RequestHeader>,
}

impl HeartbeatStream {
    async fn open(server: &TestServer, client: &mut GrpcClient<Channel>) -> HeartbeatStream {
        let (tx, rx) = mpsc::channel(16);
        let rx = client
            .region_heartbeat(ReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        HeartbeatStream {
            tx,
            rx,
            header: server.header(),
        }
    }

    /// Sends a heartbeat and returns the answer to it.
    async fn must_heartbeat(&mut self, region: &Region, leader: Peer) -> RegionHeartbeatResponse {
        self.tx
            .send(RegionHeartbeatRequest {
                header: self.header,
                region: Some(region.clone()),
                leader: Some(leader),
                ..Default::default()
            })
            .await
            .unwrap();
        tokio::time::timeout(DEADLINE, self.rx.message())
            .await
            .expect("heartbeat answered in time")
            .expect("stream healthy")
            .expect("stream open")
    }
}

#[tokio::test]
async fn test_members_bootstrap_ids_and_stores() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let mut client = server.client().await;
    let header = server.header();

    // GetMembers needs no cluster id: it is how a client learns it.
    let members = client
        .get_members(GetMembersRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        members.header.unwrap().cluster_id,
        server.scheduler.cluster_id()
    );
    let leader = members.leader.expect("a leader");
    assert_eq!(leader.client_urls, vec![format!("http://{}", server.addr)]);

    let bootstrapped = client
        .is_bootstrapped(IsBootstrappedRequest { header })
        .await
        .unwrap()
        .into_inner();
    must_ok(&bootstrapped.header);
    assert!(!bootstrapped.bootstrapped);
    let before = client
        .get_store(GetStoreRequest {
            header,
            store_id: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&before.header), ErrorType::NotBootstrapped);

    // A store allocates its id before bootstrapping, as TinyKV's does.
    let mut ids = Vec::new();
    for _ in 0..5 {
        let response = client
            .alloc_id(AllocIdRequest { header })
            .await
            .unwrap()
            .into_inner();
        must_ok(&response.header);
        ids.push(response.id);
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]) && ids[0] > 0, "{ids:?}");

    must_bootstrap(&server, &mut client, 2).await;
    let again = client
        .bootstrap(BootstrapRequest {
            header,
            store: Some(new_test_store(1)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&again.header), ErrorType::AlreadyBootstrapped);
    let no_store = client
        .bootstrap(BootstrapRequest {
            header,
            store: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(error_type(&no_store.header), ErrorType::Ok);

    let store = client
        .get_store(GetStoreRequest {
            header,
            store_id: 2,
        })
        .await
        .unwrap()
        .into_inner();
    must_ok(&store.header);
    assert_eq!(store.store, Some(new_test_store(2)));
    let stats = StoreStats {
        store_id: 2,
        region_count: 3,
        ..Default::default()
    };
    let response = client
        .store_heartbeat(StoreHeartbeatRequest {
            header,
            stats: Some(stats.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    must_ok(&response.header);
    let store = client
        .get_store(GetStoreRequest {
            header,
            store_id: 2,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(store.stats, Some(stats));
    let unknown = client
        .get_store(GetStoreRequest {
            header,
            store_id: 99,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&unknown.header), ErrorType::Unknown);
    assert!(
        unknown
            .header
            .unwrap()
            .error
            .unwrap()
            .message
            .contains("99")
    );

    // A tombstone store cannot come back, and can be left out of listings.
    let tombstone = Store {
        state: StoreState::Tombstone as i32,
        ..new_test_store(2)
    };
    let response = client
        .put_store(PutStoreRequest {
            header,
            store: Some(tombstone),
        })
        .await
        .unwrap()
        .into_inner();
    must_ok(&response.header);
    let back = client
        .put_store(PutStoreRequest {
            header,
            store: Some(new_test_store(2)),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&back.header), ErrorType::StoreTombstone);
    let all = client
        .get_all_stores(GetAllStoresRequest {
            header,
            exclude_tombstone_stores: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        all.stores.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![1, 2]
    );
    let live = client
        .get_all_stores(GetAllStoresRequest {
            header,
            exclude_tombstone_stores: true,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        live.stores.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![1]
    );

    // The cluster config: the default, replaced, and refused for another cluster.
    let config = client
        .get_cluster_config(GetClusterConfigRequest { header })
        .await
        .unwrap()
        .into_inner();
    must_ok(&config.header);
    let mut cluster = config.cluster.expect("a config");
    assert_eq!(cluster.id, server.scheduler.cluster_id());
    cluster.max_peer_count = 5;
    let put = client
        .put_cluster_config(PutClusterConfigRequest {
            header,
            cluster: Some(cluster),
        })
        .await
        .unwrap()
        .into_inner();
    must_ok(&put.header);
    let wrong = client
        .put_cluster_config(PutClusterConfigRequest {
            header,
            cluster: Some(Cluster {
                id: cluster.id + 1,
                max_peer_count: 1,
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&wrong.header), ErrorType::Unknown);
    let config = client
        .get_cluster_config(GetClusterConfigRequest { header })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(config.cluster, Some(cluster));

    drop(client);
    server.stop().await;
}

/// With scheduling on (as in the binary), a region reported with one
/// replica is answered, on its heartbeat stream, with an AddPeer for a fresh
/// peer on a store that reported and holds none of the region.
#[tokio::test]
async fn test_scheduler_adds_replicas_by_itself() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server_with(dir.path(), ScheduleConfig::enabled_default()).await;
    let mut client = server.client().await;
    must_bootstrap(&server, &mut client, 3).await;
    for store_id in 1..=3 {
        let response = client
            .store_heartbeat(StoreHeartbeatRequest {
                header: server.header(),
                stats: Some(StoreStats {
                    store_id,
                    capacity: 1 << 30,
                    available: 1 << 29,
                    ..Default::default()
                }),
            })
            .await
            .unwrap()
            .into_inner();
        must_ok(&response.header);
    }
    let mut stream = HeartbeatStream::open(&server, &mut client).await;
    let p1 = Peer { id: 1, store_id: 1 };
    let region = new_test_region(1, (b"", b""), (1, 1), &[p1]);
    let response = stream.must_heartbeat(&region, p1).await;
    must_ok(&response.header);
    let change = response
        .change_peer
        .expect("the replica checker adds a peer");
    assert_eq!(change.change_type(), ConfChangeType::AddNode);
    let added = change.peer.expect("a peer to add");
    assert!(
        added.store_id == 2 || added.store_id == 3,
        "on a store without the region: {added:?}"
    );
    assert!(added.id > 1, "a fresh id: {added:?}");
    // Repeated on the next heartbeat, not replaced by another plan.
    let again = stream.must_heartbeat(&region, p1).await;
    assert_eq!(again.change_peer.and_then(|c| c.peer), Some(added));

    drop(stream);
    drop(client);
    server.stop().await;
}

#[tokio::test]
async fn test_region_heartbeat_stream_carries_operators() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let mut client = server.client().await;
    must_bootstrap(&server, &mut client, 2).await;
    let mut stream = HeartbeatStream::open(&server, &mut client).await;
    let p1 = Peer { id: 1, store_id: 1 };
    let region = new_test_region(1, (b"", b""), (1, 1), &[p1]);

    let response = stream.must_heartbeat(&region, p1).await;
    must_ok(&response.header);
    assert_eq!(response.region_id, 1);
    assert_eq!(response.change_peer, None);

    // A test scripts an operator; the next heartbeat carries it.
    let p2 = Peer {
        id: 10,
        store_id: 2,
    };
    server.scheduler.add_peer(1, p2);
    let response = stream.must_heartbeat(&region, p1).await;
    let change = response.change_peer.expect("add peer asked for");
    assert_eq!(change.peer, Some(p2));
    assert_eq!(change.change_type(), ConfChangeType::AddNode);

    // Answers come in the order of the region's updates, each with its epoch.
    let mut updates = Vec::new();
    for conf_ver in 2..=6 {
        let region = new_test_region(1, (b"", b""), (1, conf_ver), &[p1, p2]);
        updates.push(region);
    }
    for region in &updates {
        stream
            .tx
            .send(RegionHeartbeatRequest {
                header: server.header(),
                region: Some(region.clone()),
                leader: Some(p1),
                ..Default::default()
            })
            .await
            .unwrap();
    }
    for region in &updates {
        let response = tokio::time::timeout(DEADLINE, stream.rx.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        must_ok(&response.header);
        assert_eq!(response.region_epoch, region.region_epoch);
    }
    assert_eq!(
        server.scheduler.operator(1),
        None,
        "operator done once p2 is in"
    );

    // A stale heartbeat is answered with an error, and the stream stays up.
    let response = stream.must_heartbeat(&region, p1).await;
    assert_eq!(error_type(&response.header), ErrorType::Unknown);
    assert!(
        response
            .header
            .unwrap()
            .error
            .unwrap()
            .message
            .contains("stale")
    );
    let response = stream.must_heartbeat(&updates[4], p1).await;
    must_ok(&response.header);

    drop(stream);
    drop(client);
    server.stop().await;
}

#[tokio::test]
async fn test_region_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let mut client = server.client().await;
    let header = server.header();
    must_bootstrap(&server, &mut client, 2).await;
    let get = |key: &[u8]| GetRegionRequest {
        header,
        region_key: key.to_vec(),
    };

    // Bootstrapped, but no region reported yet: OK and empty, as TinyKV.
    let response = client.get_region(get(b"a")).await.unwrap().into_inner();
    must_ok(&response.header);
    assert_eq!(response.region, None);

    let (p1, p2) = (Peer { id: 3, store_id: 1 }, Peer { id: 4, store_id: 2 });
    let left = new_test_region(1, (b"", b"m"), (2, 1), &[p1]);
    let right = new_test_region(2, (b"m", b"t"), (2, 1), &[p2]);
    let mut stream = HeartbeatStream::open(&server, &mut client).await;
    must_ok(&stream.must_heartbeat(&left, p1).await.header);
    must_ok(&stream.must_heartbeat(&right, p2).await.header);

    let response = client.get_region(get(b"c")).await.unwrap().into_inner();
    must_ok(&response.header);
    assert_eq!(response.region, Some(left.clone()));
    assert_eq!(response.leader, Some(p1));
    // A key no region covers: OK header, no region.
    let response = client.get_region(get(b"x")).await.unwrap().into_inner();
    must_ok(&response.header);
    assert_eq!(response.region, None);

    let response = client
        .get_prev_region(get(b"n"))
        .await
        .unwrap()
        .into_inner();
    must_ok(&response.header);
    assert_eq!(response.region, Some(left.clone()));
    let response = client
        .get_prev_region(get(b"a"))
        .await
        .unwrap()
        .into_inner();
    must_ok(&response.header);
    assert_eq!(
        response.region, None,
        "the first region has no previous one"
    );

    let by_id = |region_id| GetRegionByIdRequest { header, region_id };
    let response = client
        .get_region_by_id(by_id(2))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.region, Some(right.clone()));
    let response = client
        .get_region_by_id(by_id(77))
        .await
        .unwrap()
        .into_inner();
    must_ok(&response.header);
    assert_eq!(response.region, None);

    let response = client
        .scan_regions(ScanRegionsRequest {
            header,
            start_key: b"b".to_vec(),
            end_key: Vec::new(),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    must_ok(&response.header);
    assert_eq!(response.regions, vec![left.clone(), right.clone()]);
    assert_eq!(response.leaders, vec![p1, p2]);
    assert_eq!(
        response.client_sessions,
        vec![0, 0],
        "one count per region; no heartbeat reported sessions"
    );
    let response = client
        .scan_regions(ScanRegionsRequest {
            header,
            start_key: Vec::new(),
            end_key: Vec::new(),
            limit: 1,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.regions, vec![left.clone()]);

    let split = client
        .ask_split(AskSplitRequest {
            header,
            region: Some(left.clone()),
        })
        .await
        .unwrap()
        .into_inner();
    must_ok(&split.header);
    assert_eq!(split.new_peer_ids.len(), 1);
    assert!(split.new_region_id > 4 && split.new_peer_ids[0] > split.new_region_id);
    let unknown = client
        .ask_split(AskSplitRequest {
            header,
            region: Some(new_test_region(9, (b"", b""), (1, 1), &[p1])),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(error_type(&unknown.header), ErrorType::RegionNotFound);

    drop(stream);
    drop(client);
    server.stop().await;
}

#[tokio::test]
async fn test_tso_stream_increases() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let mut client = server.client().await;
    let (tx, rx) = mpsc::channel(16);
    let mut answers = client
        .tso(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let mut last = (0, 0);
    for count in [1, 10, 1, 100] {
        tx.send(TsoRequest {
            header: server.header(),
            count,
        })
        .await
        .unwrap();
        let answer = tokio::time::timeout(DEADLINE, answers.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        must_ok(&answer.header);
        assert_eq!(answer.count, count);
        let ts = answer.timestamp.unwrap();
        assert!((ts.physical, ts.logical) > last, "{ts:?} after {last:?}");
        assert!(ts.logical >= i64::from(count));
        last = (ts.physical, ts.logical);
    }
    tx.send(TsoRequest {
        header: server.header(),
        count: 0,
    })
    .await
    .unwrap();
    let answer = answers.message().await.unwrap().unwrap();
    assert_ne!(error_type(&answer.header), ErrorType::Ok, "count 0 refused");

    // The stream outliving the server's shutdown does not hold it up.
    server.stop().await;
    drop(tx);
}

#[tokio::test]
async fn test_unimplemented_and_foreign_cluster_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let mut client = server.client().await;
    let status = client
        .get_operator(GetOperatorRequest {
            header: server.header(),
            region_id: 1,
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unimplemented);

    let cluster_id = server.scheduler.cluster_id();
    let foreign = Some(RequestHeader {
        cluster_id: cluster_id + 1,
    });
    for header in [foreign, None] {
        let status = client
            .alloc_id(AllocIdRequest { header })
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert!(
            status.message().contains(&cluster_id.to_string()),
            "{status:?}"
        );
    }
    let status = client
        .bootstrap(BootstrapRequest {
            header: foreign,
            store: Some(new_test_store(1)),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert!(
        !server.scheduler.is_bootstrapped().unwrap(),
        "refused call changed nothing"
    );

    // On a stream, a request for another cluster ends the stream with the error.
    let mut stream = HeartbeatStream::open(&server, &mut client).await;
    stream.header = foreign;
    stream
        .tx
        .send(RegionHeartbeatRequest {
            header: foreign,
            ..Default::default()
        })
        .await
        .unwrap();
    let status = tokio::time::timeout(DEADLINE, stream.rx.message())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);

    drop(stream);
    drop(client);
    server.stop().await;
}

#[tokio::test]
async fn test_garbage_heartbeats_get_error_answers() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let mut client = server.client().await;
    must_bootstrap(&server, &mut client, 2).await;
    let mut stream = HeartbeatStream::open(&server, &mut client).await;
    let p1 = Peer { id: 1, store_id: 1 };
    let huge = u64::MAX - 1;
    let garbage = [
        RegionHeartbeatRequest::default(),
        RegionHeartbeatRequest {
            region: Some(Region::default()),
            leader: Some(p1),
            ..Default::default()
        },
        RegionHeartbeatRequest {
            region: Some(new_test_region(1, (b"z", b"a"), (1, 1), &[p1])),
            leader: Some(p1),
            ..Default::default()
        },
        RegionHeartbeatRequest {
            region: Some(new_test_region(huge, (b"", b""), (1, 1), &[p1])),
            leader: Some(p1),
            ..Default::default()
        },
        RegionHeartbeatRequest {
            region: Some(new_test_region(
                1,
                (b"", b""),
                (1, 1),
                &[
                    p1,
                    Peer {
                        id: huge,
                        store_id: 2,
                    },
                ],
            )),
            leader: Some(p1),
            ..Default::default()
        },
    ];
    for request in garbage {
        stream
            .tx
            .send(RegionHeartbeatRequest {
                header: server.header(),
                ..request.clone()
            })
            .await
            .unwrap();
        let response = tokio::time::timeout(DEADLINE, stream.rx.message())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(
            error_type(&response.header),
            ErrorType::Unknown,
            "{request:?}"
        );
    }
    // The allocator was not moved by the huge ids.
    let id = client
        .alloc_id(AllocIdRequest {
            header: server.header(),
        })
        .await
        .unwrap()
        .into_inner()
        .id;
    assert!(id < 10_000, "allocator moved to {id}");
    let region = client
        .get_region_by_id(GetRegionByIdRequest {
            header: server.header(),
            region_id: huge,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(region.region, None);

    drop(stream);
    drop(client);
    server.stop().await;
}

#[tokio::test]
async fn test_restart_keeps_ids_stores_regions_and_bootstrap() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_server(dir.path()).await;
    let cluster_id = server.scheduler.cluster_id();
    let mut client = server.client().await;
    must_bootstrap(&server, &mut client, 2).await;
    let p1 = Peer { id: 1, store_id: 1 };
    let region = new_test_region(1, (b"", b""), (1, 1), &[p1]);
    let mut stream = HeartbeatStream::open(&server, &mut client).await;
    must_ok(&stream.must_heartbeat(&region, p1).await.header);
    let mut cluster = server.scheduler.cluster_config().unwrap();
    cluster.max_peer_count = 1;
    server.scheduler.put_cluster_config(cluster).unwrap();
    let mut handed_out = Vec::new();
    for _ in 0..3 {
        handed_out.push(server.scheduler.alloc_id().unwrap());
    }
    let ts = server.scheduler.tso(1).unwrap();
    drop(stream);
    drop(client);
    server.stop().await;

    let server = start_server(dir.path()).await;
    let scheduler = &server.scheduler;
    assert_eq!(scheduler.cluster_id(), cluster_id);
    assert!(scheduler.is_bootstrapped().unwrap());
    assert_eq!(scheduler.get_store(2).unwrap(), new_test_store(2));
    assert_eq!(
        scheduler.get_region(b"k").unwrap(),
        (region, None),
        "leader is relearned"
    );
    assert_eq!(scheduler.cluster_config().unwrap(), cluster);
    let after = scheduler.tso(1).unwrap();
    assert!(
        (after.physical, after.logical) > (ts.physical, ts.logical),
        "{after:?} after {ts:?}"
    );
    let next = scheduler.alloc_id().unwrap();
    assert!(
        handed_out.iter().all(|&id| id < next),
        "{next} after {handed_out:?}"
    );
    server.stop().await;
}

#[test]
fn test_crash_never_hands_out_an_id_twice() {
    // Ids handed out from an already durable reservation are not written one
    // by one; dropping the scheduler without any shutdown is a crash at that
    // point. Each restart must resume above all of them.
    let dir = tempfile::tempdir().unwrap();
    let logger = new_test_logger();
    let mut seen = std::collections::HashSet::new();
    for round in 0..4 {
        let scheduler = MemoryScheduler::open(dir.path(), &logger).unwrap();
        for _ in 0..(700 * round + 1) {
            let id = scheduler.alloc_id().unwrap();
            assert!(seen.insert(id), "id {id} handed out twice (round {round})");
        }
        drop(scheduler);
    }
}

#[test]
fn test_huge_ids_do_not_survive_as_allocator_damage() {
    let dir = tempfile::tempdir().unwrap();
    let logger = new_test_logger();
    let scheduler = MemoryScheduler::open(dir.path(), &logger).unwrap();
    scheduler
        .bootstrap(
            new_test_store(1),
            new_test_region(1, (b"", b""), (1, 1), &[Peer { id: 2, store_id: 1 }]),
        )
        .unwrap();
    let huge = new_test_region(
        1,
        (b"", b""),
        (1, 2),
        &[
            Peer { id: 2, store_id: 1 },
            Peer {
                id: u64::MAX - 1,
                store_id: 1,
            },
        ],
    );
    assert!(
        scheduler
            .region_heartbeat(RegionHeartbeatRequest {
                region: Some(huge),
                leader: Some(Peer { id: 2, store_id: 1 }),
                ..Default::default()
            })
            .is_err()
    );
    drop(scheduler);
    let scheduler = MemoryScheduler::open(dir.path(), &logger).unwrap();
    let id = scheduler.alloc_id().unwrap();
    assert!((3..10_000).contains(&id), "{id}");
}

#[test]
fn test_damaged_state_file_is_an_error_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let logger = new_test_logger();
    let scheduler = MemoryScheduler::open(dir.path(), &logger).unwrap();
    scheduler.bootstrap_store(new_test_store(1)).unwrap();
    drop(scheduler);
    let path = dir.path().join("scheduler.state");
    let good = std::fs::read(&path).unwrap();

    for (name, bytes) in [
        ("torn", good[..good.len() / 2].to_vec()),
        ("empty", Vec::new()),
        ("flipped", {
            let mut bytes = good.clone();
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
            bytes
        }),
    ] {
        std::fs::write(&path, &bytes).unwrap();
        let err = MemoryScheduler::open(dir.path(), &logger).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("scheduler.state"), "{name}: {msg}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "{name}: file left as it was"
        );
    }
    std::fs::write(&path, &good).unwrap();
    let scheduler = MemoryScheduler::open(dir.path(), &logger).unwrap();
    assert!(scheduler.is_bootstrapped().unwrap());
}
