//! The transport between two stores over loopback gRPC: the store's own
//! `TinyKv` service (`server::service`, with its store streams) on the
//! receiving side, routers whose mailboxes are recording actors.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kameo::Actor;
use kameo::actor::{ActorRef, Spawn};
use kameo::error::Infallible;
use kameo::mailbox;
use kameo::message::{Context, Message};
use kvproto::eraftpb::{Entry, Message as EraftMessage, MessageType, Snapshot};
use kvproto::metapb;
use kvproto::raft_serverpb::{
    BatchRaftMessage, Done, PeerState, RaftApplyState, RaftMessage, RaftTruncatedState,
    RegionLocalState, SnapshotChunk,
};
use raftstore::snap::{ChunkEncoder, SnapKey, SnapKind, generate_snapshot};
use raftstore::{SnapManager, Transport, TransportError};
use router::{MailboxHandle, MailboxLoad, PeerMailbox, PeerMsg, Router, SnapshotStatus, StoreMsg};
use slog::Logger;
use storage::{CF_DEFAULT, CF_RAFT, CF_WRITE, Engine, keys};
use tokio::sync::{mpsc, watch};
use tonic::{Request, Status};

use super::*;
use crate::server::service::{ServiceOptions, StoreStreams, TinyKvService, serve};
use crate::transport::service::SnapshotReceiveLimit;
use storage::StandaloneStorage;

const DEADLINE: Duration = Duration::from_secs(20);

fn logger() -> Logger {
    Logger::root(slog::Discard, slog::o!())
}

/// What the recording actors saw.
#[derive(Debug)]
enum Seen {
    /// A raft message that reached the store actor.
    StoreRaft(Box<RaftMessage>),
    /// A raft message that reached a registered peer.
    PeerRaft(Box<RaftMessage>),
    /// A snapshot outcome reported to a peer.
    SnapshotStatus(u64, SnapshotStatus),
}

/// Stands in for both the store actor and the peers of one store.
struct Recorder {
    store_load: MailboxLoad,
    peer_handle: MailboxHandle,
    seen: mpsc::UnboundedSender<Seen>,
}

impl Actor for Recorder {
    type Args = Self;
    type Error = Infallible;

    async fn on_start(state: Self, _: ActorRef<Self>) -> Result<Self, Self::Error> {
        Ok(state)
    }
}

impl Message<StoreMsg> for Recorder {
    type Reply = ();

    async fn handle(&mut self, msg: StoreMsg, _: &mut Context<Self, ()>) {
        if msg.is_load() {
            self.store_load.received();
        }
        if let StoreMsg::RaftMessage(m) = msg {
            let _ = self.seen.send(Seen::StoreRaft(m));
        }
    }
}

impl Message<PeerMsg> for Recorder {
    type Reply = ();

    async fn handle(&mut self, msg: PeerMsg, _: &mut Context<Self, ()>) {
        if msg.is_load() {
            self.peer_handle.received();
        }
        match msg {
            PeerMsg::RaftMessage(m) => {
                let _ = self.seen.send(Seen::PeerRaft(m));
            }
            PeerMsg::SnapshotStatus { to_peer_id, status } => {
                let _ = self.seen.send(Seen::SnapshotStatus(to_peer_id, status));
            }
            _ => {}
        }
    }
}

/// A router whose store mailbox, and the peer of each of `regions`, record
/// into the returned receiver.
fn new_test_router(regions: &[u64]) -> (Router, mpsc::UnboundedReceiver<Seen>) {
    let router = Router::new(1 << 16);
    let (tx, rx) = mpsc::unbounded_channel();
    let store_load = MailboxLoad::new();
    let peer_handle = MailboxHandle::new();
    let actor = Recorder::spawn_with_mailbox(
        Recorder {
            store_load: store_load.clone(),
            peer_handle: peer_handle.clone(),
            seen: tx,
        },
        mailbox::unbounded(),
    );
    router.register_store(actor.clone().recipient(), store_load);
    for &region_id in regions {
        router.register(
            region_id,
            PeerMailbox::new(actor.clone().recipient(), peer_handle.clone()),
        );
    }
    (router, rx)
}

/// Waits for the next thing seen, failing the test after `DEADLINE`.
async fn must_see(rx: &mut mpsc::UnboundedReceiver<Seen>, what: &str) -> Seen {
    tokio::time::timeout(DEADLINE, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("nothing seen within {DEADLINE:?} while waiting for {what}"))
        .expect("the recorder lives as long as the router")
}

/// A running test server.
struct TestServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl TestServer {
    async fn start(router: Router, snap_mgr: SnapManager) -> TestServer {
        Self::start_with(router, snap_mgr, ServiceOptions::default()).await
    }

    async fn start_with(router: Router, snap_mgr: SnapManager, opts: ServiceOptions) -> TestServer {
        Self::start_partitioned(router, snap_mgr, opts, None).await
    }

    /// A server whose store streams drop what `partition` blocks.
    async fn start_partitioned(
        router: Router,
        snap_mgr: SnapManager,
        opts: ServiceOptions,
        partition: Option<PartitionFilter>,
    ) -> TestServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let (stop, stop_rx) = watch::channel(false);
        // The real service, over a standalone storage nothing reads here:
        // only its store-to-store streams are under test.
        let data = tempfile::tempdir().expect("temp dir");
        let storage = StandaloneStorage::open(data.path()).expect("open standalone storage");
        let service = TinyKvService::new(storage, opts).with_store_streams(StoreStreams {
            router,
            snap_mgr,
            receive_limit: SnapshotReceiveLimit::new(2),
            closing: stop_rx.clone(),
            logger: logger(),
            partition,
        });
        let mut shutdown = stop_rx;
        let task = tokio::spawn(async move {
            let _data = data;
            serve(listener, service, async move {
                let _ = shutdown.wait_for(|stopped| *stopped).await;
            })
            .await
            .expect("test server runs");
        });
        TestServer { addr, stop, task }
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("the server stops in time")
            .expect("the server task does not panic");
    }
}

fn fast_options() -> TransportOptions {
    TransportOptions {
        reconnect_backoff_min: Duration::from_millis(10),
        reconnect_backoff_max: Duration::from_millis(200),
        connect_timeout: Duration::from_secs(2),
        ..TransportOptions::default()
    }
}

fn new_test_transport(
    resolver: Arc<dyn StoreResolver>,
    router: Router,
    snap_mgr: SnapManager,
    opts: TransportOptions,
) -> GrpcTransport {
    GrpcTransport::new(
        resolver,
        router,
        snap_mgr,
        opts,
        Handle::current(),
        logger(),
    )
}

fn raft_message(region_id: u64, to_store: u64) -> RaftMessage {
    RaftMessage {
        region_id,
        from_peer: Some(metapb::Peer { id: 1, store_id: 1 }),
        to_peer: Some(metapb::Peer {
            id: to_store,
            store_id: to_store,
        }),
        message: Some(EraftMessage {
            msg_type: MessageType::MsgHeartbeat as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Sends `make(i)` for i = 0, 1, … until `pred` accepts something seen,
/// polling the receiver between sends (a condition wait, not a sleep: the
/// sends are what make progress possible).
async fn send_until_seen(
    transport: &GrpcTransport,
    rx: &mut mpsc::UnboundedReceiver<Seen>,
    make: impl Fn(u64) -> RaftMessage,
    pred: impl Fn(&Seen) -> bool,
) {
    let deadline = Instant::now() + DEADLINE;
    let mut i = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "nothing accepted within {DEADLINE:?}"
        );
        let _ = transport.send(make(i));
        i += 1;
        if let Ok(Some(seen)) = tokio::time::timeout(Duration::from_millis(20), rx.recv()).await
            && pred(&seen)
        {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_raft_messages_arrive_in_order_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let snap_b = SnapManager::open(dir.path().join("b")).expect("snap dir");
    let (router_b, mut seen_b) = new_test_router(&[7]);
    let server = TestServer::start(router_b.clone(), snap_b.clone()).await;
    let resolver = Arc::new(StaticResolver::new());
    resolver.insert(2, server.addr.to_string());
    let (router_a, _seen_a) = new_test_router(&[]);
    let snap_a = SnapManager::open(dir.path().join("a")).expect("snap dir");
    let transport = new_test_transport(resolver.clone(), router_a, snap_a, fast_options());

    // Region 7 has a peer on store 2; the others go to its store actor.
    for i in 0..200u64 {
        let region_id = if i % 2 == 0 { 7 } else { 1000 + i };
        transport.send(raft_message(region_id, 2)).expect("queued");
    }
    let mut peer = Vec::new();
    let mut store = Vec::new();
    while peer.len() + store.len() < 200 {
        match must_see(&mut seen_b, "the 200 messages").await {
            Seen::PeerRaft(m) => peer.push(m.region_id),
            Seen::StoreRaft(m) => store.push(m.region_id),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(peer, vec![7; 100]);
    assert_eq!(
        store,
        (0..200)
            .filter(|i| i % 2 == 1)
            .map(|i| 1000 + i)
            .collect::<Vec<_>>()
    );

    // The store restarts on another port; the transport finds it again
    // through the resolver once its old address fails.
    server.stop().await;
    let server = TestServer::start(router_b, snap_b).await;
    resolver.insert(2, server.addr.to_string());
    send_until_seen(
        &transport,
        &mut seen_b,
        |i| raft_message(5000 + i, 2),
        |seen| matches!(seen, Seen::StoreRaft(m) if m.region_id >= 5000),
    )
    .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_unknown_store_is_unreachable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (router, _seen) = new_test_router(&[]);
    let snap = SnapManager::open(dir.path()).expect("snap dir");
    let transport = new_test_transport(
        Arc::new(StaticResolver::new()),
        router,
        snap,
        TransportOptions {
            reconnect_backoff_min: Duration::from_secs(30),
            ..fast_options()
        },
    );
    assert!(matches!(
        transport.send(RaftMessage::default()),
        Err(TransportError::Unreachable(0))
    ));
    // The first message goes to the worker; once it failed to resolve the
    // store, sends are refused (for the 30 s of back-off).
    let deadline = Instant::now() + DEADLINE;
    loop {
        match transport.send(raft_message(1, 9)) {
            Err(TransportError::Unreachable(9)) => break,
            // Queued (or, on a slow machine, the queue filled first).
            Ok(()) | Err(TransportError::Dropped) => {}
            Err(e) => panic!("unexpected {e}"),
        }
        assert!(
            Instant::now() < deadline,
            "store 9 never reported unreachable"
        );
        tokio::task::yield_now().await;
    }
}

/// Never answers: the worker stays stuck resolving.
struct PendingResolver;

impl StoreResolver for PendingResolver {
    fn resolve(&self, _: u64) -> ResolveFuture<'_> {
        Box::pin(std::future::pending())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_full_queue_drops() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (router, _seen) = new_test_router(&[]);
    let snap = SnapManager::open(dir.path()).expect("snap dir");
    let transport = new_test_transport(
        Arc::new(PendingResolver),
        router,
        snap,
        TransportOptions {
            queue_capacity: 1,
            ..fast_options()
        },
    );
    // The worker takes at most one message before it blocks resolving, and
    // the queue holds one: of three sends, at least one is dropped, without
    // blocking.
    let results: Vec<_> = (0..3).map(|_| transport.send(raft_message(1, 2))).collect();
    assert!(results[0].is_ok(), "{results:?}");
    assert!(
        matches!(results[2], Err(TransportError::Dropped)),
        "{results:?}"
    );
}

/// A store with a region's data, to generate a snapshot from.
struct SnapStore {
    _dir: tempfile::TempDir,
    engine: Engine,
    mgr: SnapManager,
}

fn new_snap_store() -> SnapStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = Engine::open(dir.path().join("db")).expect("open engine");
    let mgr = SnapManager::open(dir.path().join("snap")).expect("open snap manager");
    SnapStore {
        _dir: dir,
        engine,
        mgr,
    }
}

/// Writes region 1 (stores 1 and 2), applied at 10, with ~2.5 MiB of data
/// (several chunks), and generates its snapshot; returns its message from
/// peer 1 to peer 2.
fn must_generate_snapshot(store: &SnapStore) -> (SnapKey, RaftMessage) {
    let region = metapb::Region {
        id: 1,
        start_key: Vec::new(),
        end_key: Vec::new(),
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version: 1,
        }),
        peers: vec![
            metapb::Peer { id: 1, store_id: 1 },
            metapb::Peer { id: 2, store_id: 2 },
        ],
    };
    let mut wb = store.engine.write_batch();
    wb.put_msg_cf(
        CF_DEFAULT,
        &keys::region_state_key(1),
        &RegionLocalState {
            state: PeerState::Normal as i32,
            region: Some(region),
        },
    )
    .expect("put region state");
    wb.put_msg_cf(
        CF_DEFAULT,
        &keys::apply_state_key(1),
        &RaftApplyState {
            applied_index: 10,
            truncated_state: Some(RaftTruncatedState { index: 5, term: 5 }),
            ..Default::default()
        },
    )
    .expect("put apply state");
    wb.put_msg_cf(
        CF_RAFT,
        &keys::raft_log_key(1, 10),
        &Entry {
            index: 10,
            term: 6,
            ..Default::default()
        },
    )
    .expect("put entry");
    store.engine.write(wb, true).expect("write region");
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in 0..1200u32 {
        // Incompressible values, so the files span several chunks.
        let value: Vec<u8> = (0..1024)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for cf in [CF_DEFAULT, CF_WRITE] {
            store
                .engine
                .put_cf(cf, &keys::data_key(&i.to_be_bytes()), &value)
                .expect("put data");
        }
    }
    let snapshot: Snapshot =
        generate_snapshot(&store.mgr, &store.engine.snapshot(), 1).expect("generate snapshot");
    let (key, _) = SnapKey::from_snapshot(&snapshot).expect("snapshot key");
    let msg = RaftMessage {
        region_id: 1,
        from_peer: Some(metapb::Peer { id: 1, store_id: 1 }),
        to_peer: Some(metapb::Peer { id: 2, store_id: 2 }),
        message: Some(EraftMessage {
            msg_type: MessageType::MsgSnapshot as i32,
            from: 1,
            to: 2,
            snapshot: Some(snapshot),
            ..Default::default()
        }),
        ..Default::default()
    };
    (key, msg)
}

fn tmp_files(mgr: &SnapManager) -> Vec<String> {
    std::fs::read_dir(mgr.dir())
        .expect("read snap dir")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".tmp"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_snapshot_arrives_complete_and_reports_finish() {
    let a = new_snap_store();
    let b = new_snap_store();
    let (key, msg) = must_generate_snapshot(&a);
    let (router_b, mut seen_b) = new_test_router(&[]);
    let server = TestServer::start(router_b, b.mgr.clone()).await;
    let resolver = Arc::new(StaticResolver::new());
    resolver.insert(2, server.addr.to_string());
    let (router_a, mut seen_a) = new_test_router(&[1]);
    let transport = new_test_transport(resolver, router_a, a.mgr.clone(), fast_options());

    transport.send_snapshot(msg.clone()).expect("queued");
    match must_see(&mut seen_a, "the snapshot status").await {
        Seen::SnapshotStatus(2, SnapshotStatus::Finish) => {}
        other => panic!("expected Finish for peer 2, got {other:?}"),
    }
    match must_see(&mut seen_b, "the snapshot message").await {
        Seen::StoreRaft(m) => assert_eq!(*m, msg),
        other => panic!("expected the snapshot message, got {other:?}"),
    }
    assert!(b.mgr.exists(SnapKind::Received, &key));
    let (_, data) = SnapKey::from_snapshot(
        msg.message
            .as_ref()
            .and_then(|m| m.snapshot.as_ref())
            .expect("a snapshot"),
    )
    .expect("snapshot data");
    b.mgr
        .verify(SnapKind::Received, &key, &data)
        .expect("the received files check");
    assert!(tmp_files(&b.mgr).is_empty());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_snapshot_to_a_dead_address_reports_failure() {
    let a = new_snap_store();
    let (_, msg) = must_generate_snapshot(&a);
    // A port that was just free: nothing listens there.
    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("local addr")
    };
    let resolver = Arc::new(StaticResolver::new());
    resolver.insert(2, dead.to_string());
    let (router_a, mut seen_a) = new_test_router(&[1]);
    let transport = new_test_transport(resolver, router_a, a.mgr.clone(), fast_options());
    transport.send_snapshot(msg).expect("queued");
    match must_see(&mut seen_a, "the snapshot status").await {
        Seen::SnapshotStatus(2, SnapshotStatus::Failure) => {}
        other => panic!("expected Failure for peer 2, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_truncated_or_corrupt_snapshot_stream_is_refused() {
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

    let truncated = chunks[..chunks.len() - 1].to_vec();
    let mut corrupt = chunks.clone();
    let last = corrupt.last_mut().expect("a chunk");
    last.data[0] ^= 0xff;
    let broken = chunks[..2]
        .iter()
        .cloned()
        .map(Ok)
        .chain(std::iter::once(Err(Status::cancelled("sender went away"))));
    let cases: Vec<(&str, Vec<Result<SnapshotChunk, Status>>)> = vec![
        ("truncated", truncated.into_iter().map(Ok).collect()),
        ("corrupt", corrupt.into_iter().map(Ok).collect()),
        ("broken", broken.collect()),
        ("empty", Vec::new()),
        ("data first", chunks[1..].iter().cloned().map(Ok).collect()),
    ];
    for (name, stream) in cases {
        let answer = handle_snapshot_stream(
            &b.mgr,
            &router_b,
            &limit,
            None,
            tokio_stream::iter(stream),
            &logger(),
        )
        .await;
        assert!(answer.is_err(), "{name}: accepted");
        assert!(
            !b.mgr.exists(SnapKind::Received, &key),
            "{name}: a snapshot was left"
        );
        assert!(
            tmp_files(&b.mgr).is_empty(),
            "{name}: {:?}",
            tmp_files(&b.mgr)
        );
    }
    assert!(seen_b.try_recv().is_err(), "nothing was delivered");

    // The limit was released each time: a whole stream still goes through.
    handle_snapshot_stream(
        &b.mgr,
        &router_b,
        &limit,
        None,
        tokio_stream::iter(chunks.into_iter().map(Ok)),
        &logger(),
    )
    .await
    .expect("a whole stream is accepted");
    assert!(b.mgr.exists(SnapKind::Received, &key));
    assert!(matches!(
        must_see(&mut seen_b, "the snapshot message").await,
        Seen::StoreRaft(_)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_concurrent_snapshot_receives_are_bounded() {
    let a = new_snap_store();
    let b = new_snap_store();
    let (key, msg) = must_generate_snapshot(&a);
    let mut chunks = ChunkEncoder::new(&a.mgr, msg).expect("encoder");
    let first = chunks.next().expect("a first chunk").expect("chunk");
    let (router_b, _seen_b) = new_test_router(&[]);
    let limit = SnapshotReceiveLimit::new(1);

    // A receive that holds the only permit: it took its first chunk and
    // waits for more.
    let (tx, rx) = mpsc::channel::<Result<SnapshotChunk, Status>>(1);
    tx.send(Ok(first)).await.expect("the receive is running");
    let held = tokio::spawn({
        let (mgr, router, limit) = (b.mgr.clone(), router_b.clone(), limit.clone());
        async move {
            let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
            handle_snapshot_stream(&mgr, &router, &limit, None, stream, &logger()).await
        }
    });
    let deadline = Instant::now() + DEADLINE;
    while tx.capacity() == 0 {
        assert!(Instant::now() < deadline, "the first chunk was never taken");
        tokio::task::yield_now().await;
    }

    let refused = handle_snapshot_stream(
        &b.mgr,
        &router_b,
        &limit,
        None,
        tokio_stream::iter(Vec::<Result<SnapshotChunk, Status>>::new()),
        &logger(),
    )
    .await
    .expect_err("over the limit");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);

    // The held receive ends truncated and leaves nothing behind.
    drop(tx);
    let answer = tokio::time::timeout(DEADLINE, held)
        .await
        .expect("the held receive ends")
        .expect("no panic");
    assert!(answer.is_err());
    assert!(!b.mgr.exists(SnapKind::Received, &key));
    assert!(tmp_files(&b.mgr).is_empty());
}

/// Sends raw bytes as the messages of a streaming call and decodes the
/// answer as `Done`: what a hostile or broken peer puts on the wire.
#[derive(Clone, Copy)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Done;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), Status> {
        prost::bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawCodec {
    type Item = Done;
    type Error = Status;

    fn decode(&mut self, src: &mut tonic::codec::DecodeBuf<'_>) -> Result<Option<Done>, Status> {
        use prost::Message as _;
        Done::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

/// A test server (snapshots under `dir/b`), what reaches its router, and a
/// raw gRPC client to it, ready: for streams no typed client would send.
async fn raw_client_to_test_server(
    dir: &std::path::Path,
) -> (
    TestServer,
    mpsc::UnboundedReceiver<Seen>,
    tonic::client::Grpc<Channel>,
) {
    let snap_b = SnapManager::open(dir.join("b")).expect("snap dir");
    let (router_b, seen_b) = new_test_router(&[]);
    let server = TestServer::start(router_b, snap_b).await;
    let channel = connect_addr(&server.addr.to_string(), &fast_options())
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    (server, seen_b, grpc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_garbage_on_the_raft_stream_is_refused_and_the_server_still_serves() {
    use prost::Message as _;

    let dir = tempfile::tempdir().expect("temp dir");
    let (server, mut seen_b, mut grpc) = raw_client_to_test_server(dir.path()).await;
    // A valid message, then bytes that are no RaftMessage (an overlong
    // varint tag).
    let stream = tokio_stream::iter(vec![raft_message(11, 2).encode_to_vec(), vec![0xff; 11]]);
    let call = grpc.client_streaming(
        Request::new(stream),
        tonic::codegen::http::uri::PathAndQuery::from_static("/tinykvpb.TinyKv/Raft"),
        RawCodec,
    );
    let answer = tokio::time::timeout(DEADLINE, call)
        .await
        .expect("the server answers the stream");
    assert!(answer.is_err(), "garbage accepted: {answer:?}");
    match must_see(&mut seen_b, "the valid message").await {
        Seen::StoreRaft(m) => assert_eq!(m.region_id, 11),
        other => panic!("unexpected {other:?}"),
    }

    // The server still takes raft traffic.
    let resolver = Arc::new(StaticResolver::new());
    resolver.insert(2, server.addr.to_string());
    let (router_a, _seen_a) = new_test_router(&[]);
    let snap_a = SnapManager::open(dir.path().join("a")).expect("snap dir");
    let transport = new_test_transport(resolver, router_a, snap_a, fast_options());
    transport.send(raft_message(12, 2)).expect("queued");
    match must_see(&mut seen_b, "a message after the garbage").await {
        Seen::StoreRaft(m) => assert_eq!(m.region_id, 12),
        other => panic!("unexpected {other:?}"),
    }
    server.stop().await;
}

/// Answers `resolve` with `addr` once the gate opens: messages sent before
/// that wait in the worker's queue, all of them, deterministically.
struct GatedResolver {
    addr: String,
    open: watch::Receiver<bool>,
}

impl StoreResolver for GatedResolver {
    fn resolve(&self, _: u64) -> ResolveFuture<'_> {
        let mut open = self.open.clone();
        let addr = self.addr.clone();
        Box::pin(async move {
            // A dropped gate counts as open.
            let _ = open.wait_for(|open| *open).await;
            Ok(addr)
        })
    }
}

/// A gated resolver to `addr` and the gate.
fn new_gated_resolver(addr: SocketAddr) -> (Arc<GatedResolver>, watch::Sender<bool>) {
    let (gate, open) = watch::channel(false);
    let resolver = GatedResolver {
        addr: addr.to_string(),
        open,
    };
    (Arc::new(resolver), gate)
}

/// A heartbeat of `region_id` to store `to_store`, numbered `n` (in its
/// `index`) so the receiver can check order.
fn numbered(region_id: u64, to_store: u64, n: u64) -> RaftMessage {
    let mut msg = raft_message(region_id, to_store);
    if let Some(m) = msg.message.as_mut() {
        m.index = n;
    }
    msg
}

fn number_of(msg: &RaftMessage) -> u64 {
    msg.message.as_ref().map_or(u64::MAX, |m| m.index)
}

/// What a test receiver saw on the wire: one item per gRPC message.
#[derive(Debug, PartialEq)]
enum Wire {
    /// A `BatchRaft` message: the numbers of its raft messages, and its
    /// encoded size.
    Batch(Vec<u64>, usize),
    /// A `Raft` message: its number.
    Single(u64),
    /// A `BatchRaft` call answered `UNIMPLEMENTED`.
    BatchRefused,
}

/// A `TinyKv` service that records raft traffic per gRPC message. With
/// `serve_batch` false it is a TinyKV store: `BatchRaft` is UNIMPLEMENTED.
struct WireRecorder {
    serve_batch: bool,
    seen: mpsc::UnboundedSender<Wire>,
}

fn not_served<T>() -> Result<tonic::Response<T>, Status> {
    Err(Status::unimplemented("not served by this test service"))
}

#[tonic::async_trait]
impl kvproto::tinykvpb::tiny_kv_server::TinyKv for WireRecorder {
    async fn kv_get(
        &self,
        _: Request<kvproto::kvrpcpb::GetRequest>,
    ) -> Result<tonic::Response<kvproto::kvrpcpb::GetResponse>, Status> {
        not_served()
    }

    async fn kv_scan(
        &self,
        _: Request<kvproto::kvrpcpb::ScanRequest>,
    ) -> Result<tonic::Response<kvproto::kvrpcpb::ScanResponse>, Status> {
        not_served()
    }

    async fn kv_prewrite(
        &self,
        _: Request<kvproto::kvrpcpb::PrewriteRequest>,
    ) -> Result<tonic::Response<kvproto::kvrpcpb::PrewriteResponse>, Status> {
        not_served()
    }

    async fn kv_commit(
        &self,
        _: Request<kvproto::kvrpcpb::CommitRequest>,
    ) -> Result<tonic::Response<kvproto::kvrpcpb::CommitResponse>, Status> {
        not_served()
    }

    async fn kv_check_txn_status(
        &self,
        _: Request<kvproto::kvrpcpb::CheckTxnStatusRequest>,
    ) -> Result<tonic::Response<kvproto::kvrpcpb::CheckTxnStatusResponse>, Status> {
        not_served()
    }

    async fn kv_batch_rollback(
        &self,
        _: Request<kvproto::kvrpcpb::BatchRollbackRequest>,
    ) -> Result<tonic::Response<kvproto::kvrpcpb::BatchRollbackResponse>, Status> {
        not_served()
    }

    async fn kv_resolve_lock(
        &self,
        _: Request<kvproto::kvrpcpb::ResolveLockRequest>,
    ) -> Result<tonic::Response<kvproto::kvrpcpb::ResolveLockResponse>, Status> {
        not_served()
    }

    async fn raw_get(
        &self,
        _: Request<kvproto::kvrpcpb::RawGetRequest>,
    ) -> Result<tonic::Response<kvproto::kvrpcpb::RawGetResponse>, Status> {
        not_served()
    }

    async fn raw_put(
        &self,
        _: Request<kvproto::kvrpcpb::RawPutRequest>,
    ) -> Result<tonic::Response<kvproto::kvrpcpb::RawPutResponse>, Status> {
        not_served()
    }

    async fn raw_delete(
        &self,
        _: Request<kvproto::kvrpcpb::RawDeleteRequest>,
    ) -> Result<tonic::Response<kvproto::kvrpcpb::RawDeleteResponse>, Status> {
        not_served()
    }

    async fn raw_scan(
        &self,
        _: Request<kvproto::kvrpcpb::RawScanRequest>,
    ) -> Result<tonic::Response<kvproto::kvrpcpb::RawScanResponse>, Status> {
        not_served()
    }

    async fn raw_append(
        &self,
        _: Request<kvproto::kvrpcpb::RawAppendRequest>,
    ) -> Result<tonic::Response<kvproto::kvrpcpb::RawAppendResponse>, Status> {
        not_served()
    }

    async fn open_session(
        &self,
        _: Request<kvproto::kvrpcpb::OpenSessionRequest>,
    ) -> Result<tonic::Response<kvproto::kvrpcpb::OpenSessionResponse>, Status> {
        not_served()
    }

    async fn raft(
        &self,
        request: Request<tonic::Streaming<RaftMessage>>,
    ) -> Result<tonic::Response<Done>, Status> {
        let mut stream = request.into_inner();
        while let Some(msg) = stream.message().await? {
            let _ = self.seen.send(Wire::Single(number_of(&msg)));
        }
        Ok(tonic::Response::new(Done {}))
    }

    async fn batch_raft(
        &self,
        request: Request<tonic::Streaming<BatchRaftMessage>>,
    ) -> Result<tonic::Response<Done>, Status> {
        if !self.serve_batch {
            let _ = self.seen.send(Wire::BatchRefused);
            return not_served();
        }
        let mut stream = request.into_inner();
        while let Some(batch) = stream.message().await? {
            use prost::Message as _;
            let numbers = batch.msgs.iter().map(number_of).collect();
            let _ = self.seen.send(Wire::Batch(numbers, batch.encoded_len()));
        }
        Ok(tonic::Response::new(Done {}))
    }

    async fn snapshot(
        &self,
        _: Request<tonic::Streaming<SnapshotChunk>>,
    ) -> Result<tonic::Response<Done>, Status> {
        not_served()
    }

    async fn coprocessor(
        &self,
        _: Request<kvproto::coprocessor::Request>,
    ) -> Result<tonic::Response<kvproto::coprocessor::Response>, Status> {
        not_served()
    }
}

/// Serves a [`WireRecorder`] on loopback until the returned sender drops.
async fn start_wire_recorder(
    serve_batch: bool,
) -> (
    SocketAddr,
    mpsc::UnboundedReceiver<Wire>,
    tokio::sync::oneshot::Sender<()>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().expect("local addr");
    let (seen, rx) = mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service =
        kvproto::tinykvpb::tiny_kv_server::TinyKvServer::new(WireRecorder { serve_batch, seen });
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming_shutdown(
                tokio_stream::wrappers::TcpListenerStream::new(listener),
                async {
                    let _ = stopped.await;
                },
            ),
    );
    (addr, rx, stop)
}

/// What `rx` sees until it has carried `n` raft messages, in order.
async fn must_see_wire(rx: &mut mpsc::UnboundedReceiver<Wire>, n: usize) -> Vec<Wire> {
    let mut wires = Vec::new();
    let mut carried = 0;
    while carried < n {
        let wire = tokio::time::timeout(DEADLINE, rx.recv())
            .await
            .unwrap_or_else(|_| {
                panic!("{carried} of {n} messages within {DEADLINE:?}; saw {wires:?}")
            })
            .expect("the recorder lives as long as its server");
        carried += match &wire {
            Wire::Batch(numbers, _) => numbers.len(),
            Wire::Single(_) => 1,
            Wire::BatchRefused => 0,
        };
        wires.push(wire);
    }
    wires
}

/// The numbers of the raft messages `wires` carried, in order.
fn carried(wires: &[Wire]) -> Vec<u64> {
    wires
        .iter()
        .flat_map(|w| match w {
            Wire::Batch(numbers, _) => numbers.clone(),
            Wire::Single(n) => vec![*n],
            Wire::BatchRefused => Vec::new(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_batches_of_many_regions_arrive_in_order_and_complete() {
    let dir = tempfile::tempdir().expect("temp dir");
    let snap_b = SnapManager::open(dir.path().join("b")).expect("snap dir");
    // Odd regions have a peer on store 2; the others go to its store actor.
    let peers: Vec<u64> = (1..=300).filter(|r| r % 2 == 1).collect();
    let (router_b, mut seen_b) = new_test_router(&peers);
    let server = TestServer::start(router_b, snap_b).await;
    let (resolver, gate) = new_gated_resolver(server.addr);
    let (router_a, _seen_a) = new_test_router(&[]);
    let snap_a = SnapManager::open(dir.path().join("a")).expect("snap dir");
    let transport = new_test_transport(resolver, router_a, snap_a, fast_options());

    // Two rounds of heartbeats of 300 regions, queued before the store is
    // found: they leave in batches.
    let sent: Vec<RaftMessage> = (0..600u64).map(|n| numbered(1 + n % 300, 2, n)).collect();
    for msg in &sent {
        transport.send(msg.clone()).expect("queued");
    }
    gate.send_replace(true);
    let mut got = Vec::new();
    while got.len() < sent.len() {
        match must_see(&mut seen_b, "the 600 messages").await {
            Seen::PeerRaft(m) => {
                assert!(m.region_id % 2 == 1, "region {} has no peer", m.region_id);
                got.push(*m);
            }
            Seen::StoreRaft(m) => {
                assert!(m.region_id % 2 == 0, "region {} has a peer", m.region_id);
                got.push(*m);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, sent, "delivered whole and in order");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_queued_messages_leave_in_fewer_grpc_messages() {
    let (addr, mut wire, _stop) = start_wire_recorder(true).await;
    let (resolver, gate) = new_gated_resolver(addr);
    let dir = tempfile::tempdir().expect("temp dir");
    let (router, _seen) = new_test_router(&[]);
    let snap = SnapManager::open(dir.path()).expect("snap dir");
    let opts = fast_options();
    assert_eq!(opts.max_batch_messages, 256);
    let transport = new_test_transport(resolver, router, snap, opts);

    // One tick's heartbeats of 500 regions, queued together.
    for n in 0..500u64 {
        transport.send(numbered(1 + n, 2, n)).expect("queued");
    }
    gate.send_replace(true);
    let wires = must_see_wire(&mut wire, 500).await;
    assert_eq!(carried(&wires), (0..500).collect::<Vec<_>>(), "{wires:?}");
    // The worker held the first while it connected; the batches take it
    // and everything queued behind it, 256 at most: two gRPC messages for
    // 500 raft messages (one each before batching).
    let sizes: Vec<usize> = wires
        .iter()
        .map(|w| match w {
            Wire::Batch(numbers, _) => numbers.len(),
            other => panic!("not a batch: {other:?}"),
        })
        .collect();
    assert_eq!(sizes, vec![256, 244]);

    // A message sent alone later leaves alone, at once.
    transport.send(numbered(7, 2, 500)).expect("queued");
    let wires = must_see_wire(&mut wire, 1).await;
    assert!(
        matches!(&wires[..], [Wire::Batch(n, _)] if n == &[500]),
        "{wires:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_batches_keep_to_the_byte_budget() {
    let (addr, mut wire, _stop) = start_wire_recorder(true).await;
    let (resolver, gate) = new_gated_resolver(addr);
    let dir = tempfile::tempdir().expect("temp dir");
    let (router, _seen) = new_test_router(&[]);
    let snap = SnapManager::open(dir.path()).expect("snap dir");
    let budget = 10 * batch_entry_len(&numbered(1000, 2, 1000));
    let opts = TransportOptions {
        max_batch_bytes: budget,
        ..fast_options()
    };
    let transport = new_test_transport(resolver, router, snap, opts);

    // Heartbeats, and one append over the budget by itself in the middle.
    let sent: Vec<RaftMessage> = (0..100u64)
        .map(|n| {
            let mut msg = numbered(1000 + n, 2, n);
            if n == 50
                && let Some(m) = msg.message.as_mut()
            {
                m.msg_type = MessageType::MsgAppend as i32;
                m.entries = vec![Entry {
                    data: vec![7; 2 * budget],
                    ..Default::default()
                }];
            }
            msg
        })
        .collect();
    for msg in &sent {
        transport.send(msg.clone()).expect("queued");
    }
    gate.send_replace(true);
    let wires = must_see_wire(&mut wire, sent.len()).await;
    assert_eq!(carried(&wires), (0..100).collect::<Vec<_>>(), "{wires:?}");
    let batches: Vec<(&Vec<u64>, usize)> = wires
        .iter()
        .map(|w| match w {
            Wire::Batch(numbers, bytes) => (numbers, *bytes),
            other => panic!("not a batch: {other:?}"),
        })
        .collect();
    assert!(batches.len() < 20, "{batches:?}");
    for (i, (numbers, bytes)) in batches.iter().enumerate() {
        if numbers.contains(&50) {
            assert_eq!(numbers.as_slice(), &[50], "the large message goes alone");
            continue;
        }
        assert!(*bytes <= budget, "batch {i} over budget: {batches:?}");
        // Nothing waited that would have fitted: every batch but the last
        // was full when the next message came.
        if let Some((next, _)) = batches.get(i + 1) {
            let next = &sent[next[0] as usize];
            assert!(
                bytes + batch_entry_len(next) > budget,
                "batch {i} left room: {batches:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_store_without_batch_raft_gets_raft_and_everything() {
    let (addr, mut wire, _stop) = start_wire_recorder(false).await;
    let (resolver, gate) = new_gated_resolver(addr);
    let dir = tempfile::tempdir().expect("temp dir");
    let (router, _seen) = new_test_router(&[]);
    let snap = SnapManager::open(dir.path()).expect("snap dir");
    let transport = new_test_transport(resolver, router, snap, fast_options());

    for n in 0..300u64 {
        transport.send(numbered(1 + n % 30, 2, n)).expect("queued");
    }
    gate.send_replace(true);
    let wires = must_see_wire(&mut wire, 300).await;
    // One refused probe, then every message on `Raft`, none lost.
    assert_eq!(wires[0], Wire::BatchRefused, "{wires:?}");
    assert_eq!(wires.len(), 301, "{wires:?}");
    assert!(wires[1..].iter().all(|w| matches!(w, Wire::Single(_))));
    assert_eq!(carried(&wires), (0..300).collect::<Vec<_>>());

    // The connection remembers: later messages go on `Raft` without
    // asking again.
    transport.send(numbered(1, 2, 300)).expect("queued");
    let wires = must_see_wire(&mut wire, 1).await;
    assert_eq!(wires, vec![Wire::Single(300)]);
}

/// `0x0a len bytes`: one entry of a `BatchRaftMessage` on the wire.
fn batch_entry(bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![0x0a];
    prost::encode_length_delimiter(bytes.len(), &mut out).expect("a Vec grows");
    out.extend_from_slice(bytes);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_malformed_entry_in_a_batch_is_skipped_and_the_rest_delivered() {
    use prost::Message as _;

    let dir = tempfile::tempdir().expect("temp dir");
    let (server, mut seen_b, mut grpc) = raw_client_to_test_server(dir.path()).await;
    // A batch with an entry that is no RaftMessage (an overlong varint
    // tag) between two good ones, then a good batch.
    let mut bad_batch = batch_entry(&raft_message(21, 2).encode_to_vec());
    bad_batch.extend(batch_entry(&[0xff; 11]));
    bad_batch.extend(batch_entry(&raft_message(22, 2).encode_to_vec()));
    let good_batch = batch_entry(&raft_message(23, 2).encode_to_vec());
    let call = grpc.client_streaming(
        Request::new(tokio_stream::iter(vec![bad_batch, good_batch])),
        tonic::codegen::http::uri::PathAndQuery::from_static("/tinykvpb.TinyKv/BatchRaft"),
        RawCodec,
    );
    let answer = tokio::time::timeout(DEADLINE, call)
        .await
        .expect("the server answers the stream");
    assert!(answer.is_ok(), "the stream was refused: {answer:?}");
    for want in [21, 22, 23] {
        match must_see(&mut seen_b, "the good messages").await {
            Seen::StoreRaft(m) => assert_eq!(m.region_id, want),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(seen_b.try_recv().is_err(), "nothing else was delivered");
    server.stop().await;
}

/// The gain, counted rather than timed: `N` regions' heartbeats to one
/// store, sent as one tick sends them (a burst, on a connected stream), in
/// gRPC messages per tick. On `Raft` it is `N` per tick. How many batches
/// a burst takes depends on scheduling, so only delivery is asserted; run
/// with `--nocapture` for the figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_measure_grpc_messages_per_tick_of_heartbeats() {
    const REGIONS: u64 = 1000;
    const TICKS: u64 = 5;
    let (addr, mut wire, _stop) = start_wire_recorder(true).await;
    let resolver = Arc::new(StaticResolver::new());
    resolver.insert(2, addr.to_string());
    let dir = tempfile::tempdir().expect("temp dir");
    let (router, _seen) = new_test_router(&[]);
    let snap = SnapManager::open(dir.path()).expect("snap dir");
    let transport = new_test_transport(resolver, router, snap, fast_options());
    // Connected first: a message through, so the bursts below meet a
    // stream that is already open.
    transport
        .send(numbered(1, 2, u64::MAX - 1))
        .expect("queued");
    must_see_wire(&mut wire, 1).await;

    let mut per_tick = Vec::new();
    for tick in 0..TICKS {
        let first = tick * REGIONS;
        for n in first..first + REGIONS {
            transport
                .send(numbered(1 + n % REGIONS, 2, n))
                .expect("queued");
        }
        let wires = must_see_wire(&mut wire, REGIONS as usize).await;
        assert_eq!(
            carried(&wires),
            (first..first + REGIONS).collect::<Vec<_>>(),
            "tick {tick}"
        );
        per_tick.push(wires.len());
    }
    println!(
        "{REGIONS} regions' heartbeats per tick: {per_tick:?} gRPC messages per tick \
         on BatchRaft ({REGIONS} each on Raft)"
    );
}

/// A heartbeat turned into an append of `bytes` bytes of entry data.
fn append_of(region_id: u64, to_store: u64, n: u64, bytes: usize) -> RaftMessage {
    let mut msg = numbered(region_id, to_store, n);
    if let Some(m) = msg.message.as_mut() {
        m.msg_type = MessageType::MsgAppend as i32;
        m.entries = vec![Entry {
            data: vec![7; bytes],
            ..Default::default()
        }];
    }
    msg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_the_message_size_limit_holds_per_batch_and_the_budget_keeps_under_it() {
    use prost::Message as _;

    const LIMIT: usize = 64 * 1024;
    let dir = tempfile::tempdir().expect("temp dir");
    let snap_b = SnapManager::open(dir.path().join("b")).expect("snap dir");
    let (router_b, mut seen_b) = new_test_router(&[]);
    let opts = ServiceOptions {
        max_message_size: LIMIT,
        ..ServiceOptions::default()
    };
    let server = TestServer::start_with(router_b, snap_b, opts).await;

    // A batch over the limit, each of its messages under it: refused whole,
    // as `Raft` refuses one message over it.
    let channel = connect_addr(&server.addr.to_string(), &fast_options())
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let oversized: Vec<u8> = (0..4u64)
        .flat_map(|n| batch_entry(&append_of(30 + n, 2, n, LIMIT / 3).encode_to_vec()))
        .collect();
    let call = grpc.client_streaming(
        Request::new(tokio_stream::iter(vec![oversized])),
        tonic::codegen::http::uri::PathAndQuery::from_static("/tinykvpb.TinyKv/BatchRaft"),
        RawCodec,
    );
    let answer = tokio::time::timeout(DEADLINE, call)
        .await
        .expect("the server answers the stream");
    let status = answer.expect_err("a batch over the limit is refused");
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");

    // The sender's byte budget, under the limit, splits the same traffic
    // into batches the store takes.
    let resolver = Arc::new(StaticResolver::new());
    resolver.insert(2, server.addr.to_string());
    let (router_a, _seen_a) = new_test_router(&[]);
    let snap_a = SnapManager::open(dir.path().join("a")).expect("snap dir");
    let transport = new_test_transport(
        resolver,
        router_a,
        snap_a,
        TransportOptions {
            max_batch_bytes: LIMIT / 2,
            ..fast_options()
        },
    );
    let sent: Vec<RaftMessage> = (0..12u64)
        .map(|n| append_of(40 + n, 2, n, LIMIT / 3))
        .collect();
    for msg in &sent {
        transport.send(msg.clone()).expect("queued");
    }
    let mut got = Vec::new();
    while got.len() < sent.len() {
        match must_see(&mut seen_b, "the appends").await {
            Seen::StoreRaft(m) => got.push(*m),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(got, sent);
    server.stop().await;
}

mod faults;
