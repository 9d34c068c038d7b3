//! Fault injection (`super::super::faults`): the partition drop rule on the
//! sending side (the gRPC transport with `TransportOptions::partition`), on
//! the receiving side (both raft streams and the snapshot stream), and the
//! `Debug` service that sets it.

use std::sync::atomic::{AtomicUsize, Ordering};

use kvproto::debugpb::SetPartitionRequest;
use kvproto::debugpb::debug_server::Debug;

use super::*;
use crate::transport::faults::{FaultService, PartitionFilter};

/// A heartbeat for region `region_id` from store `from` to store `to`.
fn message_between(region_id: u64, from: u64, to: u64) -> RaftMessage {
    RaftMessage {
        from_peer: Some(metapb::Peer {
            id: from,
            store_id: from,
        }),
        ..raft_message(region_id, to)
    }
}

/// Counts the log records with one message, to wait for what a worker did.
struct CountingDrain {
    message: &'static str,
    count: Arc<AtomicUsize>,
}

impl slog::Drain for CountingDrain {
    type Ok = ();
    type Err = slog::Never;

    fn log(&self, record: &slog::Record<'_>, _: &slog::OwnedKVList) -> Result<(), slog::Never> {
        if record.msg().to_string() == self.message {
            self.count.fetch_add(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_nothing_is_sent_to_a_blocked_store_not_even_what_was_queued() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (router_b, mut seen_b) = new_test_router(&[]);
    let server = TestServer::start(
        router_b,
        SnapManager::open(dir.path().join("b")).expect("snap dir"),
    )
    .await;
    let (resolver, gate) = new_gated_resolver(server.addr);
    let filter = PartitionFilter::new();
    let dropped = Arc::new(AtomicUsize::new(0));
    let logger = Logger::root(
        CountingDrain {
            message: "raft message dropped: partitioned",
            count: Arc::clone(&dropped),
        },
        slog::o!(),
    );
    let (router_a, _seen_a) = new_test_router(&[]);
    let transport = GrpcTransport::new(
        resolver,
        router_a,
        SnapManager::open(dir.path().join("a")).expect("snap dir"),
        TransportOptions {
            partition: Some(filter.clone()),
            ..fast_options()
        },
        Handle::current(),
        logger,
    );

    // Queued before the partition: the worker waits for the address.
    for i in 0..10 {
        transport.send(raft_message(100 + i, 2)).expect("queued");
    }
    filter.set([2]);
    assert!(matches!(
        transport.send(raft_message(200, 2)),
        Err(TransportError::Dropped)
    ));
    assert!(matches!(
        transport.send_snapshot(raft_message(1, 2)),
        Err(TransportError::Dropped)
    ));
    gate.send_replace(true);
    // The two refused at `send` and `send_snapshot`, and the ten the worker
    // dequeues.
    let deadline = Instant::now() + DEADLINE;
    while dropped.load(Ordering::SeqCst) < 12 {
        assert!(
            Instant::now() < deadline,
            "only {} of 12 messages dropped",
            dropped.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    // Healed: what is sent now arrives, and it is the first thing that does.
    filter.set([]);
    transport.send(raft_message(300, 2)).expect("queued");
    match must_see(&mut seen_b, "the message sent after healing").await {
        Seen::StoreRaft(m) => assert_eq!(m.region_id, 300, "a dropped message arrived"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(drain(&mut seen_b), Vec::new());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_snapshot_transfer_stops_when_a_partition_begins() {
    let a = new_snap_store();
    let b = new_snap_store();
    let (key, msg) = must_generate_snapshot(&a);
    let (router_b, mut seen_b) = new_test_router(&[]);
    let server = TestServer::start(router_b, b.mgr.clone()).await;
    let (resolver, gate) = new_gated_resolver(server.addr);
    let filter = PartitionFilter::new();
    let (router_a, mut seen_a) = new_test_router(&[1]);
    let transport = new_test_transport(
        resolver,
        router_a,
        a.mgr.clone(),
        TransportOptions {
            partition: Some(filter.clone()),
            ..fast_options()
        },
    );

    // Accepted before the partition; its connection waits for the address.
    transport.send_snapshot(msg).expect("queued");
    filter.set([2]);
    gate.send_replace(true);
    match must_see(&mut seen_a, "the snapshot status").await {
        Seen::SnapshotStatus(2, SnapshotStatus::Failure) => {}
        other => panic!("expected Failure for peer 2, got {other:?}"),
    }
    assert!(!b.mgr.exists(SnapKind::Received, &key));
    assert!(seen_b.try_recv().is_err(), "nothing was delivered");
    server.stop().await;
}

/// What reached the router, as (region, sender store), in order.
fn drain(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Vec<(u64, u64)> {
    let mut seen = Vec::new();
    while let Ok(s) = rx.try_recv() {
        match s {
            Seen::StoreRaft(m) | Seen::PeerRaft(m) => {
                seen.push((m.region_id, m.from_peer.map_or(0, |p| p.store_id)));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_both_raft_streams_drop_messages_from_a_blocked_store() {
    let (router, mut seen) = new_test_router(&[]);
    let filter = PartitionFilter::new();
    filter.set([1]);
    // Stores 1 and 3 take turns; store 1 is blocked.
    let msgs: Vec<RaftMessage> = (0..6)
        .map(|i| message_between(100 + i, if i % 2 == 0 { 1 } else { 3 }, 2))
        .collect();
    let want = vec![(101, 3), (103, 3), (105, 3)];

    handle_raft_stream(
        &router,
        Some(&filter),
        tokio_stream::iter(msgs.clone().into_iter().map(Ok)),
        &logger(),
    )
    .await
    .expect("the Raft stream ends cleanly");
    // The router's mailbox is an actor: wait for the last delivery.
    must_see_count(&mut seen, &want).await;

    let batch = BatchRaftMessage {
        msgs: msgs.clone(),
        malformed: 0,
    };
    handle_batch_raft_stream(
        &router,
        Some(&filter),
        tokio_stream::iter(vec![Ok(batch)]),
        &logger(),
    )
    .await
    .expect("the BatchRaft stream ends cleanly");
    must_see_count(&mut seen, &want).await;

    // Healed: everything is delivered.
    filter.set([]);
    handle_raft_stream(
        &router,
        Some(&filter),
        tokio_stream::iter(msgs.into_iter().map(Ok)),
        &logger(),
    )
    .await
    .expect("the Raft stream ends cleanly");
    let all: Vec<(u64, u64)> = (0..6)
        .map(|i| (100 + i, if i % 2 == 0 { 1 } else { 3 }))
        .collect();
    must_see_count(&mut seen, &all).await;
}

/// Waits until `want.len()` messages reached the router and checks they are
/// exactly `want`, then that nothing else follows them.
async fn must_see_count(rx: &mut mpsc::UnboundedReceiver<Seen>, want: &[(u64, u64)]) {
    let mut got = Vec::new();
    while got.len() < want.len() {
        match must_see(rx, "the delivered messages").await {
            Seen::StoreRaft(m) | Seen::PeerRaft(m) => {
                got.push((m.region_id, m.from_peer.map_or(0, |p| p.store_id)));
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, want);
    assert_eq!(drain(rx), Vec::new(), "more than expected was delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_partitioned_server_drops_what_a_blocked_store_sends_over_grpc() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (router_b, mut seen_b) = new_test_router(&[]);
    let filter = PartitionFilter::new();
    filter.set([1]);
    let server = TestServer::start_partitioned(
        router_b,
        SnapManager::open(dir.path().join("b")).expect("snap dir"),
        ServiceOptions::default(),
        Some(filter.clone()),
    )
    .await;
    let resolver = Arc::new(StaticResolver::new());
    resolver.insert(2, server.addr.to_string());
    let (router_a, _seen_a) = new_test_router(&[]);
    let snap_a = SnapManager::open(dir.path().join("a")).expect("snap dir");
    let transport = new_test_transport(resolver, router_a, snap_a, fast_options());

    // One stream carries both senders' messages in order: once the last
    // message (from store 3) is seen, every store-1 message before it was
    // received and dropped.
    for i in 0..40u64 {
        let from = if i % 2 == 0 { 1 } else { 3 };
        transport
            .send(message_between(1000 + i, from, 2))
            .expect("queued");
    }
    let want: Vec<(u64, u64)> = (0..40u64)
        .filter(|i| i % 2 == 1)
        .map(|i| (1000 + i, 3))
        .collect();
    must_see_count(&mut seen_b, &want).await;

    filter.set([]);
    send_until_seen(
        &transport,
        &mut seen_b,
        |i| message_between(5000 + i, 1, 2),
        |seen| matches!(seen, Seen::StoreRaft(m) if m.from_peer.is_some_and(|p| p.store_id == 1)),
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_snapshot_from_a_blocked_store_is_refused_or_cut() {
    let a = new_snap_store();
    let b = new_snap_store();
    let (key, msg) = must_generate_snapshot(&a);
    let chunks: Vec<SnapshotChunk> = ChunkEncoder::new(&a.mgr, msg)
        .expect("encoder")
        .map(|c| c.expect("chunk"))
        .collect();
    assert!(chunks.len() > 2, "several data chunks");
    let (router_b, mut seen_b) = new_test_router(&[]);
    let limit = SnapshotReceiveLimit::new(1);
    let filter = PartitionFilter::new();

    // Blocked before it starts: refused at its first chunk.
    filter.set([1]);
    let refused = handle_snapshot_stream(
        &b.mgr,
        &router_b,
        &limit,
        Some(&filter),
        tokio_stream::iter(chunks.clone().into_iter().map(Ok)),
        &logger(),
    )
    .await
    .expect_err("store 1 is blocked");
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(!b.mgr.exists(SnapKind::Received, &key));

    // Blocked while it is received: cut at the next chunk, nothing left.
    filter.set([]);
    let (tx, rx) = mpsc::channel::<Result<SnapshotChunk, Status>>(1);
    let receive = tokio::spawn({
        let (mgr, router, limit, filter) = (
            b.mgr.clone(),
            router_b.clone(),
            limit.clone(),
            filter.clone(),
        );
        async move {
            let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
            handle_snapshot_stream(&mgr, &router, &limit, Some(&filter), stream, &logger()).await
        }
    });
    tx.send(Ok(chunks[0].clone())).await.expect("receiving");
    tx.send(Ok(chunks[1].clone())).await.expect("receiving");
    // The first data chunk was taken once the channel has room again.
    let deadline = Instant::now() + DEADLINE;
    while tx.capacity() == 0 {
        assert!(Instant::now() < deadline, "the chunks were never taken");
        tokio::task::yield_now().await;
    }
    filter.set([1]);
    // The receive may already have failed on the cut; a closed channel is
    // fine then.
    let _ = tx.send(Ok(chunks[2].clone())).await;
    drop(tx);
    let cut = tokio::time::timeout(DEADLINE, receive)
        .await
        .expect("the receive ends")
        .expect("no panic")
        .expect_err("cut by the partition");
    assert_eq!(cut.code(), tonic::Code::Unavailable, "{cut:?}");
    assert!(!b.mgr.exists(SnapKind::Received, &key));
    assert!(tmp_files(&b.mgr).is_empty(), "{:?}", tmp_files(&b.mgr));
    assert!(seen_b.try_recv().is_err(), "nothing was delivered");

    // Healed: the whole snapshot goes through.
    filter.set([]);
    handle_snapshot_stream(
        &b.mgr,
        &router_b,
        &limit,
        Some(&filter),
        tokio_stream::iter(chunks.into_iter().map(Ok)),
        &logger(),
    )
    .await
    .expect("healed");
    assert!(b.mgr.exists(SnapKind::Received, &key));
}

#[tokio::test]
async fn test_set_partition_replaces_the_set_and_refuses_bad_ids() {
    let filter = PartitionFilter::new();
    let service = FaultService::new(7, filter.clone(), logger());
    let set = |ids: Vec<u64>| {
        service.set_partition(Request::new(SetPartitionRequest {
            blocked_store_ids: ids,
        }))
    };

    let answer = set(vec![3, 2, 3]).await.expect("set").into_inner();
    assert_eq!(answer.store_id, 7);
    assert_eq!(answer.blocked_store_ids, vec![2, 3]);
    assert!(filter.blocks(2) && filter.blocks(3) && !filter.blocks(4));

    for bad in [vec![7], vec![4, 0]] {
        let status = set(bad.clone()).await.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::InvalidArgument, "{bad:?}");
        assert_eq!(filter.blocked(), vec![2, 3], "{bad:?} changed the set");
    }

    let answer = set(vec![4]).await.expect("replace").into_inner();
    assert_eq!(answer.blocked_store_ids, vec![4]);
    let answer = set(Vec::new()).await.expect("heal").into_inner();
    assert!(answer.blocked_store_ids.is_empty());
    assert!(!filter.blocks(4));
}
