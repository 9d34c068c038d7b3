//! A node against a scheduler served over gRPC on loopback: start-up,
//! serving, restart on the same data dir, and the crash-safe bootstrap.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kvproto::debugpb::SetPartitionRequest;
use kvproto::debugpb::debug_client::DebugClient;
use kvproto::kvrpcpb::{Context, RawGetRequest, RawPutRequest};
use kvproto::metapb;
use kvproto::tinykvpb::tiny_kv_client::TinyKvClient;
use scheduler_stub::{MemoryScheduler, SchedulerClient, SchedulerService};
use slog::{Drain as _, Logger, o};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::*;

const DEADLINE: Duration = Duration::from_secs(20);

fn logger() -> Logger {
    Logger::root(slog::Discard, o!())
}

/// A scheduler served on a loopback port; dropping it stops the server.
struct TestScheduler {
    addr: SocketAddr,
    inner: Arc<MemoryScheduler>,
    _stop: oneshot::Sender<()>,
    _dir: TempDir,
}

async fn start_scheduler() -> TestScheduler {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    start_scheduler_on(listener)
}

fn start_scheduler_on(listener: TcpListener) -> TestScheduler {
    let dir = TempDir::new().expect("temp dir");
    let inner = Arc::new(MemoryScheduler::open(dir.path(), &logger()).expect("open scheduler"));
    let addr = listener.local_addr().expect("bound address");
    let service = SchedulerService::new(Arc::clone(&inner), format!("http://{addr}"), &logger());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(scheduler_stub::serve(listener, service, async {
        let _ = stopped.await;
    }));
    TestScheduler {
        addr,
        inner,
        _stop: stop,
        _dir: dir,
    }
}

fn node_config(scheduler: SocketAddr, data_dir: &Path) -> NodeConfig {
    let mut cfg = NodeConfig::new(
        scheduler.to_string(),
        "127.0.0.1:0".to_owned(),
        data_dir.to_path_buf(),
    );
    cfg.raftstore = raftstore::Config::for_tests();
    cfg.connect_deadline = Some(DEADLINE);
    cfg
}

/// The first region and its peer on `node`, once the scheduler knows them
/// (from the leader's first heartbeat).
async fn first_region_context(node: &Node) -> Context {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some((region, _)) = node.scheduler().get_region(b"").await.expect("GetRegion") {
            let peer = region
                .peers
                .iter()
                .find(|p| p.store_id == node.store_id())
                .copied()
                .expect("the first region has a peer on the node");
            return Context {
                region_id: region.id,
                region_epoch: region.region_epoch,
                peer: Some(peer),
                ..Default::default()
            };
        }
        assert!(
            Instant::now() < deadline,
            "no region heartbeat reached the scheduler"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn client(node: &Node) -> TinyKvClient<tonic::transport::Channel> {
    TinyKvClient::connect(format!("http://{}", node.local_addr()))
        .await
        .expect("connect to the node")
}

/// RawGet, retried while the region has no leader yet (after a restart).
async fn raw_get(
    client: &mut TinyKvClient<tonic::transport::Channel>,
    ctx: &Context,
    key: &[u8],
) -> Option<Vec<u8>> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let resp = client
            .raw_get(RawGetRequest {
                context: Some(*ctx),
                key: key.to_vec(),
                cf: String::new(),
            })
            .await
            .expect("RawGet answers")
            .into_inner();
        match resp.region_error {
            None => {
                assert!(resp.error.is_empty(), "RawGet: {}", resp.error);
                return (!resp.not_found).then_some(resp.value);
            }
            Some(e) if e.not_leader.is_some() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Some(e) => panic!("RawGet: {e:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_node_serves_and_restarts_as_the_same_store() {
    let scheduler = start_scheduler().await;
    let data = TempDir::new().expect("temp dir");
    let cfg = node_config(scheduler.addr, data.path());

    let node = Node::start(cfg.clone(), &logger())
        .await
        .expect("node starts");
    let store_id = node.store_id();
    let registered = scheduler
        .inner
        .get_store(store_id)
        .expect("the node registered its store");
    assert_eq!(registered.id, store_id);
    assert_eq!(registered.address, node.local_addr().to_string());
    let ctx = first_region_context(&node).await;
    let mut kv = client(&node).await;
    let put = kv
        .raw_put(RawPutRequest {
            context: Some(ctx),
            key: b"k1".to_vec(),
            value: b"v1".to_vec(),
            cf: String::new(),
        })
        .await
        .expect("RawPut answers")
        .into_inner();
    assert!(
        put.region_error.is_none() && put.error.is_empty(),
        "{put:?}"
    );
    assert_eq!(raw_get(&mut kv, &ctx, b"k1").await, Some(b"v1".to_vec()));
    node.stop().await;

    let node = Node::start(cfg, &logger()).await.expect("node restarts");
    assert_eq!(node.store_id(), store_id, "a restart keeps the store id");
    let mut kv = client(&node).await;
    assert_eq!(
        raw_get(&mut kv, &ctx, b"k1").await,
        Some(b"v1".to_vec()),
        "a restart keeps the data"
    );
    node.stop().await;
}

/// A drain passing each record's message on, to wait for a log line.
struct MessageDrain(tokio::sync::mpsc::UnboundedSender<String>);

impl slog::Drain for MessageDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record<'_>, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
        let _ = self.0.send(record.msg().to_string());
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_node_waits_for_the_scheduler_to_come_up() {
    // A loopback port held by a socket that does not listen yet: connections
    // to it are refused until it does.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .bind("127.0.0.1:0".parse().expect("address"))
        .expect("bind");
    let addr = socket.local_addr().expect("bound address");
    let data = TempDir::new().expect("temp dir");
    let (messages_tx, mut messages) = tokio::sync::mpsc::unbounded_channel();
    let node_logger = Logger::root(
        std::sync::Mutex::new(MessageDrain(messages_tx)).fuse(),
        o!(),
    );
    let cfg = node_config(addr, data.path());
    let starting = tokio::spawn(async move { Node::start(cfg, &node_logger).await });
    // Only once an attempt has failed does the scheduler come up.
    tokio::time::timeout(DEADLINE, async {
        while let Some(message) = messages.recv().await {
            if message.contains("not reachable yet") {
                return;
            }
        }
        panic!("the node's log ended without a failed connection attempt");
    })
    .await
    .expect("a failed connection attempt is logged");
    let scheduler = start_scheduler_on(socket.listen(64).expect("listen"));
    let node = tokio::time::timeout(DEADLINE, starting)
        .await
        .expect("the node starts once the scheduler is up")
        .expect("start-up task")
        .expect("node starts");
    assert!(scheduler.inner.is_bootstrapped().expect("IsBootstrapped"));
    node.stop().await;
}

/// Writes what a node that crashed just before `Bootstrap` leaves behind:
/// a store ident and the prepared first region. Returns the region.
fn crash_before_bootstrap(scheduler: &MemoryScheduler, data_dir: &Path) -> metapb::Region {
    let engine = Engine::open(data_dir.join("db")).expect("open engine");
    let store_id = scheduler.alloc_id().expect("alloc");
    bootstrap_store(&engine, scheduler.cluster_id(), store_id).expect("bootstrap store");
    let region = new_first_region(
        scheduler.alloc_id().expect("alloc"),
        vec![metapb::Peer {
            id: scheduler.alloc_id().expect("alloc"),
            store_id,
        }],
    );
    let mut wb = engine.write_batch();
    wb.put_msg_cf(CF_DEFAULT, keys::PREPARE_BOOTSTRAP_KEY, &region)
        .expect("batch");
    engine.write(wb, true).expect("write");
    region
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_interrupted_bootstrap_is_finished_with_the_prepared_region() {
    let scheduler = start_scheduler().await;
    let data = TempDir::new().expect("temp dir");
    let prepared = crash_before_bootstrap(&scheduler.inner, data.path());

    let node = Node::start(node_config(scheduler.addr, data.path()), &logger())
        .await
        .expect("node starts");
    assert!(scheduler.inner.is_bootstrapped().expect("IsBootstrapped"));
    let ctx = first_region_context(&node).await;
    assert_eq!(
        ctx.region_id, prepared.id,
        "the prepared region is the first"
    );
    assert!(
        node.router().has_region(prepared.id),
        "the prepared region runs on the store"
    );
    node.stop().await;
    let engine = Engine::open(data.path().join("db")).expect("reopen");
    assert!(
        engine
            .get_cf(CF_DEFAULT, keys::PREPARE_BOOTSTRAP_KEY)
            .expect("read")
            .is_none(),
        "the prepare key is cleared once bootstrapped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_prepared_region_is_removed_when_another_store_bootstrapped() {
    let scheduler = start_scheduler().await;
    let data = TempDir::new().expect("temp dir");
    let prepared = crash_before_bootstrap(&scheduler.inner, data.path());
    // Another store wins the race meanwhile.
    let winner = scheduler.inner.alloc_id().expect("alloc");
    scheduler
        .inner
        .bootstrap_store(metapb::Store {
            id: winner,
            address: "127.0.0.1:1".to_owned(),
            ..Default::default()
        })
        .expect("the other store bootstraps");

    let node = Node::start(node_config(scheduler.addr, data.path()), &logger())
        .await
        .expect("node starts");
    assert!(
        !node.router().has_region(prepared.id),
        "the losing store does not run its prepared region"
    );
    node.stop().await;
    let engine = Engine::open(data.path().join("db")).expect("reopen");
    assert!(
        engine
            .get_cf(CF_DEFAULT, &keys::region_state_key(prepared.id))
            .expect("read")
            .is_none(),
        "the prepared region is removed"
    );
    assert!(
        engine
            .get_cf(CF_DEFAULT, keys::PREPARE_BOOTSTRAP_KEY)
            .expect("read")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_operators_reach_the_store_and_replicate_over_grpc() {
    let scheduler = start_scheduler().await;
    let (dir_a, dir_b) = (
        TempDir::new().expect("temp dir"),
        TempDir::new().expect("temp dir"),
    );
    let a = Node::start(node_config(scheduler.addr, dir_a.path()), &logger())
        .await
        .expect("node a starts");
    let ctx = first_region_context(&a).await;
    let mut kv_a = client(&a).await;
    let put = kv_a
        .raw_put(RawPutRequest {
            context: Some(ctx),
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            cf: String::new(),
        })
        .await
        .expect("RawPut answers")
        .into_inner();
    assert!(
        put.region_error.is_none() && put.error.is_empty(),
        "{put:?}"
    );

    let b = Node::start(node_config(scheduler.addr, dir_b.path()), &logger())
        .await
        .expect("node b starts");
    assert_ne!(b.store_id(), a.store_id());
    assert!(
        b.router().region_ids().is_empty(),
        "a store joining a bootstrapped cluster starts with no region"
    );
    // The operator travels in a's heartbeat responses; a's peer adds b's,
    // which gets the region by snapshot over gRPC.
    let peer_b = metapb::Peer {
        id: scheduler.inner.alloc_id().expect("alloc"),
        store_id: b.store_id(),
    };
    scheduler.inner.add_peer(ctx.region_id, peer_b);
    let deadline = Instant::now() + DEADLINE;
    while !b.router().has_region(ctx.region_id) || scheduler.inner.operator(ctx.region_id).is_some()
    {
        assert!(
            Instant::now() < deadline,
            "the peer was not added to store b"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Then b's peer leads, and serves the value written before it joined.
    scheduler.inner.transfer_leader(ctx.region_id, peer_b);
    let mut kv_b = client(&b).await;
    let deadline = Instant::now() + DEADLINE;
    loop {
        let (region, leader) = scheduler.inner.get_region(b"").expect("GetRegion");
        if leader == Some(peer_b) {
            let ctx_b = Context {
                region_id: region.id,
                region_epoch: region.region_epoch,
                peer: Some(peer_b),
                ..Default::default()
            };
            assert_eq!(raw_get(&mut kv_b, &ctx_b, b"k").await, Some(b"v".to_vec()));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "leadership did not move to store b"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.stop().await;
    a.stop().await;
}

/// Calls `SetPartition` on `node`.
async fn set_partition(node: &Node, blocked: Vec<u64>) -> Result<Vec<u64>, tonic::Status> {
    let mut debug = DebugClient::connect(format!("http://{}", node.local_addr()))
        .await
        .expect("connect to the node");
    debug
        .set_partition(SetPartitionRequest {
            blocked_store_ids: blocked,
        })
        .await
        .map(|r| r.into_inner().blocked_store_ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_the_debug_service_is_served_only_with_fault_injection_on() {
    let scheduler = start_scheduler().await;
    let data = TempDir::new().expect("temp dir");
    let mut cfg = node_config(scheduler.addr, data.path());

    let node = Node::start(cfg.clone(), &logger())
        .await
        .expect("node starts");
    let off = set_partition(&node, vec![99])
        .await
        .expect_err("not served by default");
    assert_eq!(off.code(), tonic::Code::Unimplemented, "{off:?}");
    node.stop().await;

    cfg.enable_fault_injection = true;
    let node = Node::start(cfg, &logger()).await.expect("node restarts");
    assert_eq!(
        set_partition(&node, vec![99]).await.expect("served"),
        vec![99]
    );
    let own = set_partition(&node, vec![node.store_id()])
        .await
        .expect_err("a store cannot partition itself");
    assert_eq!(own.code(), tonic::Code::InvalidArgument, "{own:?}");
    assert!(
        set_partition(&node, Vec::new())
            .await
            .expect("healed")
            .is_empty()
    );
    // The store still serves its clients.
    let ctx = first_region_context(&node).await;
    let mut kv = client(&node).await;
    assert_eq!(raw_get(&mut kv, &ctx, b"absent").await, None);
    node.stop().await;
}
