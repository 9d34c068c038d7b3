//! The client against a real scheduler and a real store node, both served
//! over gRPC on loopback in this process: the Raw API, and the Clerk's
//! exactly-once writes over the raft store's session table.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use scheduler_stub::{MemoryScheduler, SchedulerService};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::fake::logger;
use kvproto::kvrpcpb::{Context, OpenSessionRequest, RawAppendRequest, RawGetRequest};
use kvproto::tinykvpb::tiny_kv_client::TinyKvClient;

use crate::client::{Clerk, Client, ClientOptions, Error};
use crate::node::{Node, NodeConfig};

const TIMEOUT: Duration = Duration::from_secs(30);

/// A scheduler served on a loopback port; dropping it stops the server.
struct TestScheduler {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
    _dir: TempDir,
}

async fn start_scheduler() -> TestScheduler {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let dir = TempDir::new().expect("temp dir");
    let scheduler = Arc::new(MemoryScheduler::open(dir.path(), &logger()).expect("open scheduler"));
    let addr = listener.local_addr().expect("bound address");
    let service = SchedulerService::new(scheduler, format!("http://{addr}"), &logger());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(scheduler_stub::serve(listener, service, async {
        let _ = stopped.await;
    }));
    TestScheduler {
        addr,
        _stop: stop,
        _dir: dir,
    }
}

async fn start_node(scheduler: SocketAddr, data: &TempDir) -> Node {
    let mut cfg = NodeConfig::new(
        scheduler.to_string(),
        "127.0.0.1:0".to_owned(),
        data.path().to_path_buf(),
    );
    cfg.raftstore = raftstore::Config::for_tests();
    cfg.connect_deadline = Some(TIMEOUT);
    Node::start(cfg, &logger()).await.expect("node starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_raw_api_through_a_real_node() {
    let scheduler = start_scheduler().await;
    let data = TempDir::new().expect("temp dir");
    let node = start_node(scheduler.addr, &data).await;
    let opts = ClientOptions {
        timeout: TIMEOUT,
        ..ClientOptions::default()
    };
    let client = Client::connect(&scheduler.addr.to_string(), opts)
        .await
        .expect("connect");

    // The first put waits (retrying) until the region's first heartbeat
    // reaches the scheduler and its peer leads.
    for i in 0..5 {
        let key = format!("k{i}");
        client
            .raw_put("", key.as_bytes(), format!("v{i}").as_bytes())
            .await
            .expect("put");
    }
    client
        .raw_put("lock", b"k1", b"locked")
        .await
        .expect("put in lock cf");
    assert_eq!(
        client.raw_get("default", b"k3").await.expect("get"),
        Some(b"v3".to_vec())
    );
    assert_eq!(
        client.raw_get("lock", b"k1").await.expect("get lock cf"),
        Some(b"locked".to_vec())
    );
    assert_eq!(client.raw_get("", b"nope").await.expect("get"), None);

    client.raw_delete("", b"k2").await.expect("delete");
    assert_eq!(client.raw_get("", b"k2").await.expect("get"), None);

    let pairs = client.raw_scan("", b"k1", b"k4", 10).await.expect("scan");
    assert_eq!(
        pairs,
        vec![
            (b"k1".to_vec(), b"v1".to_vec()),
            (b"k3".to_vec(), b"v3".to_vec())
        ]
    );
    let first_two = client.raw_scan("", b"", b"", 2).await.expect("scan");
    assert_eq!(
        first_two
            .iter()
            .map(|(k, _)| k.as_slice())
            .collect::<Vec<_>>(),
        vec![b"k0".as_slice(), b"k1".as_slice()]
    );

    // Bad input is the store's answer, at once.
    match client.raw_put("raft", b"k", b"v").await {
        Err(Error::Store { message, .. }) => assert!(message.contains("cf"), "{message}"),
        other => panic!("expected the store to refuse the raft cf, got {other:?}"),
    }
    match client.raw_put("", b"", b"v").await {
        Err(Error::Store { message, .. }) => assert!(message.contains("empty"), "{message}"),
        other => panic!("expected the store to refuse an empty key, got {other:?}"),
    }

    let stores = client.stores().await.expect("stores");
    assert_eq!(stores.len(), 1);
    assert_eq!(stores[0].id, node.store_id());
    let region = client
        .region(b"k1")
        .await
        .expect("region")
        .expect("a region holds k1");
    assert_eq!(
        region.leader.map(|l| l.store_id),
        Some(node.store_id()),
        "the node's peer leads"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_clerk_through_a_real_node() {
    let scheduler = start_scheduler().await;
    let data = TempDir::new().expect("temp dir");
    let node = start_node(scheduler.addr, &data).await;
    let opts = ClientOptions {
        timeout: TIMEOUT,
        ..ClientOptions::default()
    };
    let client = Client::connect(&scheduler.addr.to_string(), opts)
        .await
        .expect("connect");
    let mut clerk = Clerk::new(client.clone()).await.expect("a clerk");
    let mut other = Clerk::new(client.clone()).await.expect("a second clerk");
    assert_ne!(clerk.client_id(), other.client_id());

    assert_eq!(clerk.get(b"k").await.expect("get"), b"", "missing = empty");
    clerk.put(b"k", b"a").await.expect("put");
    clerk.append(b"k", b"b").await.expect("append");
    other
        .append(b"k", b"c")
        .await
        .expect("append by another clerk");
    clerk.append(b"k", b"d").await.expect("append");
    assert_eq!(clerk.get(b"k").await.expect("get"), b"abcd");
    assert_eq!(other.get(b"k").await.expect("get"), b"abcd");
    assert_eq!(
        client.raw_get("", b"k").await.expect("raw get"),
        Some(b"abcd".to_vec())
    );
    node.stop().await;
}

/// `key`'s value through `RawGet` with `ctx`.
async fn value_of(
    kv: &mut TinyKvClient<tonic::transport::Channel>,
    ctx: Context,
    key: &[u8],
) -> Vec<u8> {
    let resp = kv
        .raw_get(RawGetRequest {
            context: Some(ctx),
            key: key.to_vec(),
            cf: String::new(),
        })
        .await
        .expect("RawGet answers")
        .into_inner();
    assert!(
        resp.region_error.is_none() && resp.error.is_empty(),
        "{resp:?}"
    );
    resp.value
}

/// The store's session table over real gRPC: the same `RawAppend` (same
/// client and sequence) sent twice applies once — what a Clerk's retry
/// after a lost answer sends; an older sequence is refused; a
/// client that opened no session gets `SessionExpired`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_repeated_session_append_applies_once_over_grpc() {
    let scheduler = start_scheduler().await;
    let data = TempDir::new().expect("temp dir");
    let node = start_node(scheduler.addr, &data).await;
    let opts = ClientOptions {
        timeout: TIMEOUT,
        ..ClientOptions::default()
    };
    let client = Client::connect(&scheduler.addr.to_string(), opts)
        .await
        .expect("connect");
    // Waits (retrying) until the region leads and its heartbeat is in.
    client.raw_put("", b"warm", b"up").await.expect("put");
    let info = client
        .region(b"k")
        .await
        .expect("region")
        .expect("a region holds k");
    let client_id = client.alloc_id().await.expect("a client id");
    let ctx = |sequence| Context {
        region_id: info.region.id,
        region_epoch: info.region.region_epoch,
        peer: info.leader,
        term: 0,
        client_id,
        sequence,
    };
    let mut kv = TinyKvClient::connect(format!("http://{}", node.local_addr()))
        .await
        .expect("connect to the node");
    let append = |sequence, value: &[u8]| RawAppendRequest {
        context: Some(ctx(sequence)),
        key: b"k".to_vec(),
        value: value.to_vec(),
        cf: String::new(),
    };

    let resp = kv
        .raw_append(append(1, b"x"))
        .await
        .expect("RawAppend answers")
        .into_inner();
    let expired = resp.region_error.and_then(|e| e.session_expired);
    assert!(expired.is_some(), "a write before OpenSession: {expired:?}");

    let resp = kv
        .open_session(OpenSessionRequest {
            context: Some(ctx(0)),
        })
        .await
        .expect("OpenSession answers")
        .into_inner();
    assert!(
        resp.region_error.is_none() && resp.error.is_empty(),
        "{resp:?}"
    );
    for attempt in 0..2 {
        let resp = kv
            .raw_append(append(1, b"x"))
            .await
            .expect("RawAppend answers")
            .into_inner();
        assert!(
            resp.region_error.is_none() && resp.error.is_empty(),
            "attempt {attempt}: {resp:?}"
        );
    }
    assert_eq!(value_of(&mut kv, ctx(0), b"k").await, b"x", "applied once");

    let resp = kv
        .raw_append(append(2, b"y"))
        .await
        .expect("RawAppend answers")
        .into_inner();
    assert!(
        resp.region_error.is_none() && resp.error.is_empty(),
        "{resp:?}"
    );
    let resp = kv
        .raw_append(append(1, b"z"))
        .await
        .expect("RawAppend answers")
        .into_inner();
    // A late copy of a write the client has moved past: refused with a
    // message only, which no retry helps.
    assert!(
        resp.region_error
            .as_ref()
            .is_some_and(|e| e.message.contains("older than")
                && e.stale_command.is_none()
                && e.session_expired.is_none()),
        "a sequence below the last applied one: {resp:?}"
    );
    assert_eq!(value_of(&mut kv, ctx(0), b"k").await, b"xy");
    node.stop().await;
}
