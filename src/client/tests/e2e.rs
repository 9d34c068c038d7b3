//! The client against a real scheduler and a real store node, both served
//! over gRPC on loopback in this process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use scheduler_stub::{MemoryScheduler, SchedulerService};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

use super::fake::logger;
use crate::client::{Client, ClientOptions, Error};
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
