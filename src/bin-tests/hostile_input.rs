//! Malformed and hostile requests over gRPC against a real store node:
//! every one gets a clear error answer, and afterwards the node still
//! serves, with every acknowledged write intact and the region's epoch
//! unchanged.
//!
//! The kinds sent (DESIGN §6, the node issue's list):
//! - Raw API: no context, unknown region, region id 0, missing/stale/future
//!   epoch, a peer of another store, a peer id not in the region, empty
//!   key, unknown column family, a value over the configured limit, scan
//!   limits of 0 and `u32::MAX`, bytes that are no protobuf, a message over
//!   the gRPC size limit; each also as `RawAppend`, and the context ones as
//!   `OpenSession`;
//! - client sessions: a write with `client_id` but sequence 0, a sequence
//!   without a client id, `OpenSession` without a client id;
//! - transactional calls and the coprocessor: `UNIMPLEMENTED`;
//! - `Raft` stream: messages for unknown regions, from unknown stores, to a
//!   peer of another store, with no inner message, with a runaway append,
//!   and bytes that are no `RaftMessage`;
//! - `Snapshot` stream: empty, data before the header, a header that does
//!   not parse, a file that never ends.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use kvproto::eraftpb::{Entry, Message as EraftMessage, MessageType};
use kvproto::kvrpcpb::{
    Context, GetRequest, OpenSessionRequest, PrewriteRequest, RawAppendRequest, RawDeleteRequest,
    RawGetRequest, RawPutRequest, RawScanRequest,
};
use kvproto::metapb::{Peer, Region, RegionEpoch};
use kvproto::raft_serverpb::{RaftMessage, SnapshotChunk};
use kvproto::tinykvpb::tiny_kv_client::TinyKvClient;
use prost::Message as _;
use scheduler_stub::{MemoryScheduler, SchedulerService};
use slog::{Logger, o};
use tempfile::TempDir;
use tinykv::node::{Node, NodeConfig};
use tinykv::server::service::ServiceOptions;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

const DEADLINE: Duration = Duration::from_secs(30);
const MAX_VALUE: usize = 1024;
const MAX_MESSAGE: usize = 64 * 1024;

fn logger() -> Logger {
    Logger::root(slog::Discard, o!())
}

struct TestNode {
    node: Node,
    _scheduler_stop: oneshot::Sender<()>,
    _dirs: (TempDir, TempDir),
}

async fn start_node() -> TestNode {
    let sched_dir = TempDir::new().expect("temp dir");
    let scheduler =
        Arc::new(MemoryScheduler::open(sched_dir.path(), &logger()).expect("open scheduler"));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr: SocketAddr = listener.local_addr().expect("bound address");
    let service = SchedulerService::new(scheduler, format!("http://{addr}"), &logger());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(scheduler_stub::serve(listener, service, async {
        let _ = stopped.await;
    }));

    let data = TempDir::new().expect("temp dir");
    let mut cfg = NodeConfig::new(
        addr.to_string(),
        "127.0.0.1:0".to_owned(),
        data.path().join("store"),
    );
    cfg.raftstore = raftstore::Config::for_tests();
    cfg.connect_deadline = Some(DEADLINE);
    cfg.service = ServiceOptions {
        max_value_size: MAX_VALUE,
        max_message_size: MAX_MESSAGE,
        max_scan_response_bytes: 16 * 1024,
        ..ServiceOptions::default()
    };
    let node = Node::start(cfg, &logger()).await.expect("start node");
    TestNode {
        node,
        _scheduler_stop: stop,
        _dirs: (sched_dir, data),
    }
}

async fn connect(node: &Node) -> TinyKvClient<Channel> {
    TinyKvClient::connect(format!("http://{}", node.local_addr()))
        .await
        .expect("connect to the node")
}

/// The first region, its leader's context once it serves a read.
async fn serving_context(node: &Node, kv: &mut TinyKvClient<Channel>) -> (Region, Context) {
    let deadline = Instant::now() + DEADLINE;
    let mut last = String::new();
    loop {
        if let Some((region, _)) = node.scheduler().get_region(b"").await.expect("GetRegion") {
            let peer = region
                .peers
                .iter()
                .find(|p| p.store_id == node.store_id())
                .copied();
            let ctx = Context {
                region_id: region.id,
                region_epoch: region.region_epoch,
                peer,
                ..Default::default()
            };
            let resp = get(kv, Some(ctx), b"probe").await;
            if resp.region_error.is_none() && resp.error.is_empty() {
                return (region, ctx);
            }
            last = format!("{resp:?}");
        }
        assert!(
            Instant::now() < deadline,
            "the node never served; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn get(
    kv: &mut TinyKvClient<Channel>,
    context: Option<Context>,
    key: &[u8],
) -> kvproto::kvrpcpb::RawGetResponse {
    kv.raw_get(RawGetRequest {
        context,
        key: key.to_vec(),
        cf: String::new(),
    })
    .await
    .expect("RawGet answers")
    .into_inner()
}

async fn put(
    kv: &mut TinyKvClient<Channel>,
    context: Option<Context>,
    key: &[u8],
    value: &[u8],
    cf: &str,
) -> kvproto::kvrpcpb::RawPutResponse {
    kv.raw_put(RawPutRequest {
        context,
        key: key.to_vec(),
        value: value.to_vec(),
        cf: cf.to_owned(),
    })
    .await
    .expect("RawPut answers")
    .into_inner()
}

/// What a refused call answered: a region error's kind, or the error text.
#[derive(Debug)]
enum Refusal {
    Region(Box<kvproto::errorpb::Error>),
    Error(#[allow(dead_code, reason = "read through Debug in failure messages")] String),
}

fn refusal(region_error: Option<kvproto::errorpb::Error>, error: &str) -> Option<Refusal> {
    match region_error {
        Some(e) => Some(Refusal::Region(Box::new(e))),
        None if !error.is_empty() => Some(Refusal::Error(error.to_owned())),
        None => None,
    }
}

/// Sends every bad Raw call and checks each answer. Returns the number sent.
async fn send_bad_raw_calls(
    kv: &mut TinyKvClient<Channel>,
    region: &Region,
    ctx: Context,
    store_id: u64,
) -> usize {
    let epoch = region.region_epoch.expect("a region has an epoch");
    let with = |f: &dyn Fn(&mut Context)| {
        let mut c = ctx;
        f(&mut c);
        Some(c)
    };
    let other_store_peer = Peer {
        id: 9_001,
        store_id: store_id + 100,
    };
    let stranger_peer = Peer {
        id: 9_002,
        store_id,
    };
    // (name, context, key, value, cf, what the answer must be)
    type Check = fn(&Refusal) -> bool;
    let region_not_found: Check =
        |r| matches!(r, Refusal::Region(e) if e.region_not_found.is_some());
    let epoch_not_match: Check = |r| matches!(r, Refusal::Region(e) if e.epoch_not_match.is_some());
    let store_not_match: Check = |r| matches!(r, Refusal::Region(e) if e.store_not_match.is_some());
    let peer_not_match: Check =
        |r| matches!(r, Refusal::Region(e) if e.message.contains("peer not match"));
    let any: Check = |_| true;
    let plain_error: Check = |r| matches!(r, Refusal::Error(_));
    type Case<'a> = (&'a str, Option<Context>, Vec<u8>, Vec<u8>, &'a str, Check);
    let cases: Vec<Case> = vec![
        ("no context", None, b"k".to_vec(), b"v".to_vec(), "", any),
        (
            "unknown region",
            with(&|c| c.region_id = 424_242),
            b"k".to_vec(),
            b"v".to_vec(),
            "",
            region_not_found,
        ),
        (
            "region 0",
            with(&|c| c.region_id = 0),
            b"k".to_vec(),
            b"v".to_vec(),
            "",
            any,
        ),
        (
            "no epoch",
            with(&|c| c.region_epoch = None),
            b"k".to_vec(),
            b"v".to_vec(),
            "",
            any,
        ),
        (
            "stale epoch",
            with(&|c| {
                c.region_epoch = Some(RegionEpoch {
                    conf_ver: 0,
                    version: 0,
                })
            }),
            b"k".to_vec(),
            b"v".to_vec(),
            "",
            epoch_not_match,
        ),
        (
            "future epoch",
            with(&|c| {
                c.region_epoch = Some(RegionEpoch {
                    conf_ver: epoch.conf_ver + 7,
                    version: epoch.version + 7,
                })
            }),
            b"k".to_vec(),
            b"v".to_vec(),
            "",
            epoch_not_match,
        ),
        (
            "peer of another store",
            with(&|c| c.peer = Some(other_store_peer)),
            b"k".to_vec(),
            b"v".to_vec(),
            "",
            store_not_match,
        ),
        (
            "peer id not in the region",
            with(&|c| c.peer = Some(stranger_peer)),
            b"k".to_vec(),
            b"v".to_vec(),
            "",
            peer_not_match,
        ),
        (
            "empty key",
            Some(ctx),
            Vec::new(),
            b"v".to_vec(),
            "",
            plain_error,
        ),
        (
            "unknown cf",
            Some(ctx),
            b"k".to_vec(),
            b"v".to_vec(),
            "no-such-cf",
            plain_error,
        ),
        (
            "cf with a NUL",
            Some(ctx),
            b"k".to_vec(),
            b"v".to_vec(),
            "default\0",
            plain_error,
        ),
        (
            "value over the limit",
            Some(ctx),
            b"k".to_vec(),
            vec![7; MAX_VALUE + 1],
            "",
            plain_error,
        ),
    ];
    let mut sent = 0;
    for (name, context, key, value, cf, check) in &cases {
        let resp = put(kv, *context, key, value, cf).await;
        let r = refusal(resp.region_error, &resp.error)
            .unwrap_or_else(|| panic!("RawPut with {name} was accepted"));
        assert!(check(&r), "RawPut with {name}: unexpected answer {r:?}");
        let resp = kv
            .raw_delete(RawDeleteRequest {
                context: *context,
                key: key.clone(),
                cf: cf.to_string(),
            })
            .await
            .expect("RawDelete answers")
            .into_inner();
        if *name != "value over the limit" {
            let r = refusal(resp.region_error, &resp.error)
                .unwrap_or_else(|| panic!("RawDelete with {name} was accepted"));
            assert!(check(&r), "RawDelete with {name}: unexpected answer {r:?}");
        }
        let resp = kv
            .raw_append(RawAppendRequest {
                context: *context,
                key: key.clone(),
                value: value.clone(),
                cf: cf.to_string(),
            })
            .await
            .expect("RawAppend answers")
            .into_inner();
        let r = refusal(resp.region_error, &resp.error)
            .unwrap_or_else(|| panic!("RawAppend with {name} was accepted"));
        assert!(check(&r), "RawAppend with {name}: unexpected answer {r:?}");
        sent += 1;
        if !matches!(
            *name,
            "value over the limit" | "empty key" | "unknown cf" | "cf with a NUL"
        ) {
            // The context cases, for a client opening its session.
            let with_client = context.map(|c| Context { client_id: 77, ..c });
            let resp = kv
                .open_session(OpenSessionRequest {
                    context: with_client,
                })
                .await
                .expect("OpenSession answers")
                .into_inner();
            let r = refusal(resp.region_error, &resp.error)
                .unwrap_or_else(|| panic!("OpenSession with {name} was accepted"));
            assert!(
                check(&r),
                "OpenSession with {name}: unexpected answer {r:?}"
            );
            sent += 1;
        }
        if !matches!(*name, "value over the limit" | "empty key") {
            let resp = kv
                .raw_get(RawGetRequest {
                    context: *context,
                    key: key.clone(),
                    cf: cf.to_string(),
                })
                .await
                .expect("RawGet answers")
                .into_inner();
            let r = refusal(resp.region_error, &resp.error)
                .unwrap_or_else(|| panic!("RawGet with {name} was accepted"));
            assert!(check(&r), "RawGet with {name}: unexpected answer {r:?}");
        }
        sent += 3;
    }
    sent + send_bad_sessions(kv, ctx).await
}

/// Session fields that name no write of a session: each a plain error,
/// before anything is proposed. Returns the number sent.
async fn send_bad_sessions(kv: &mut TinyKvClient<Channel>, ctx: Context) -> usize {
    let cases = [
        ("client id with sequence 0", 42, 0, "sequence 0"),
        ("sequence without a client id", 0, 5, "without a client id"),
    ];
    let mut sent = 0;
    for (name, client_id, sequence, want) in cases {
        let context = Some(Context {
            client_id,
            sequence,
            ..ctx
        });
        let resp = put(kv, context, b"k", b"v", "").await;
        assert!(
            resp.region_error.is_none() && resp.error.contains(want),
            "RawPut with {name}: {resp:?}"
        );
        let resp = kv
            .raw_append(RawAppendRequest {
                context,
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                cf: String::new(),
            })
            .await
            .expect("RawAppend answers")
            .into_inner();
        assert!(
            resp.region_error.is_none() && resp.error.contains(want),
            "RawAppend with {name}: {resp:?}"
        );
        let resp = kv
            .raw_delete(RawDeleteRequest {
                context,
                key: b"k".to_vec(),
                cf: String::new(),
            })
            .await
            .expect("RawDelete answers")
            .into_inner();
        assert!(
            resp.region_error.is_none() && resp.error.contains(want),
            "RawDelete with {name}: {resp:?}"
        );
        sent += 3;
    }
    let resp = kv
        .open_session(OpenSessionRequest { context: Some(ctx) })
        .await
        .expect("OpenSession answers")
        .into_inner();
    assert!(
        resp.region_error.is_none() && resp.error.contains("names no client"),
        "OpenSession without a client id: {resp:?}"
    );
    sent + 1
}

/// A scan's limit is capped, its answer bounded in bytes; a limit of 0
/// returns nothing.
async fn check_scan_limits(kv: &mut TinyKvClient<Channel>, ctx: Context) {
    for (limit, most) in [(0u32, 0usize), (u32::MAX, usize::MAX)] {
        let resp = kv
            .raw_scan(RawScanRequest {
                context: Some(ctx),
                start_key: Vec::new(),
                limit,
                cf: String::new(),
            })
            .await
            .expect("RawScan answers")
            .into_inner();
        assert!(
            resp.region_error.is_none() && resp.error.is_empty(),
            "RawScan limit {limit}: {resp:?}"
        );
        assert!(
            resp.kvs.len() <= most,
            "RawScan limit {limit}: {} pairs",
            resp.kvs.len()
        );
        let bytes: usize = resp.kvs.iter().map(|p| p.key.len() + p.value.len()).sum();
        assert!(
            bytes <= 16 * 1024 + MAX_VALUE + 64,
            "RawScan limit {limit}: {bytes} bytes, over the bound"
        );
    }
}

/// A codec that sends raw bytes and decodes any answer as empty.
#[derive(Clone, Copy)]
struct BytesCodec;

#[derive(Clone, PartialEq, prost::Message)]
struct Anything {}

impl tonic::codec::Codec for BytesCodec {
    type Encode = Vec<u8>;
    type Decode = Anything;
    type Encoder = BytesCodec;
    type Decoder = BytesCodec;

    fn encoder(&mut self) -> Self::Encoder {
        BytesCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        BytesCodec
    }
}

impl tonic::codec::Encoder for BytesCodec {
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

impl tonic::codec::Decoder for BytesCodec {
    type Item = Anything;
    type Error = Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Anything>, Status> {
        Anything::decode(src)
            .map(Some)
            .map_err(|e| Status::internal(e.to_string()))
    }
}

async fn raw_grpc(addr: SocketAddr) -> tonic::client::Grpc<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("address")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    grpc
}

/// Bytes that are no protobuf, and a message over the size limit, to a
/// unary method: a gRPC error status each, not a crash.
async fn check_garbage_unary(addr: SocketAddr) {
    for (name, body, codes) in [
        (
            "overlong varint",
            vec![0xff; 11],
            &[Code::Internal, Code::InvalidArgument][..],
        ),
        (
            "truncated field",
            vec![0x0a, 0x40, 1, 2],
            &[Code::Internal, Code::InvalidArgument],
        ),
        (
            "over the message limit",
            {
                let mut b = vec![0x1a]; // field 3 (value), length-delimited
                let len = MAX_MESSAGE + 1;
                prost::encoding::encode_varint(len as u64, &mut b);
                b.resize(b.len() + len, b'x');
                b
            },
            &[Code::ResourceExhausted, Code::OutOfRange],
        ),
    ] {
        let mut grpc = raw_grpc(addr).await;
        let answer = grpc
            .unary(
                Request::new(body),
                tonic::codegen::http::uri::PathAndQuery::from_static("/tinykvpb.TinyKv/RawPut"),
                BytesCodec,
            )
            .await;
        let status = answer.expect_err(name);
        assert!(codes.contains(&status.code()), "{name}: {status:?}");
    }
}

async fn check_unimplemented(kv: &mut TinyKvClient<Channel>) {
    let status = kv
        .kv_get(GetRequest::default())
        .await
        .expect_err("KvGet is not implemented yet");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    let status = kv
        .kv_prewrite(PrewriteRequest::default())
        .await
        .expect_err("KvPrewrite is not implemented yet");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    let status = kv
        .coprocessor(kvproto::coprocessor::Request::default())
        .await
        .expect_err("Coprocessor is not implemented yet");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
}

fn raft_message(
    region_id: u64,
    from: Peer,
    to: Peer,
    message: Option<EraftMessage>,
) -> RaftMessage {
    RaftMessage {
        region_id,
        from_peer: Some(from),
        to_peer: Some(to),
        message,
        region_epoch: Some(RegionEpoch {
            conf_ver: 1,
            version: 1,
        }),
        ..Default::default()
    }
}

/// Hostile raft traffic: each stream is taken or refused, never a crash.
async fn send_hostile_raft(addr: SocketAddr, region: &Region, local: Peer) {
    let stranger = Peer {
        id: 7_001,
        store_id: 7_000,
    };
    let vote = |term| {
        Some(EraftMessage {
            msg_type: MessageType::MsgRequestVote as i32,
            term,
            log_term: u64::MAX,
            index: u64::MAX,
            ..Default::default()
        })
    };
    let runaway_append = Some(EraftMessage {
        msg_type: MessageType::MsgAppend as i32,
        term: 1,
        log_term: 1,
        index: u64::MAX - 1,
        commit: u64::MAX,
        entries: vec![
            Entry {
                term: 1,
                index: u64::MAX,
                data: vec![0xff; 8],
                ..Default::default()
            },
            Entry {
                term: 0,
                index: 3,
                ..Default::default()
            },
        ],
        ..Default::default()
    });
    let heartbeat_commit_max = Some(EraftMessage {
        msg_type: MessageType::MsgHeartbeat as i32,
        term: u64::MAX,
        commit: u64::MAX,
        ..Default::default()
    });
    let messages = [
        // Unknown region, from an unknown store, claiming a huge term.
        raft_message(
            88_888,
            stranger,
            Peer {
                id: 7_002,
                store_id: local.store_id,
            },
            vote(u64::MAX),
        ),
        // Our region, from a store that is not a member.
        raft_message(region.id, stranger, local, vote(1_000_000)),
        raft_message(region.id, stranger, local, runaway_append),
        raft_message(region.id, stranger, local, heartbeat_commit_max),
        // Addressed to a peer of another store.
        raft_message(
            region.id,
            stranger,
            Peer {
                id: 5,
                store_id: 5_555,
            },
            vote(2),
        ),
        // No inner message at all; no peers at all.
        raft_message(region.id, stranger, local, None),
        RaftMessage {
            region_id: region.id,
            ..Default::default()
        },
    ];
    let mut grpc = raw_grpc(addr).await;
    let mut frames: Vec<Vec<u8>> = messages.iter().map(|m| m.encode_to_vec()).collect();
    frames.push(vec![0xff; 11]); // no RaftMessage at all: ends the stream
    let answer = tokio::time::timeout(
        DEADLINE,
        grpc.client_streaming(
            Request::new(tokio_stream::iter(frames)),
            tonic::codegen::http::uri::PathAndQuery::from_static("/tinykvpb.TinyKv/Raft"),
            BytesCodec,
        ),
    )
    .await
    .expect("the Raft stream is answered");
    assert!(answer.is_err(), "a stream ending in garbage was accepted");
}

/// Broken snapshot streams: each refused with an error status.
async fn send_broken_snapshots(addr: SocketAddr, region: &Region, local: Peer) {
    let stranger = Peer {
        id: 7_001,
        store_id: 7_000,
    };
    let header = |msg: RaftMessage| SnapshotChunk {
        message: Some(msg),
        data: Vec::new(),
    };
    let snap_msg = raft_message(
        region.id,
        stranger,
        local,
        Some(EraftMessage {
            msg_type: MessageType::MsgSnapshot as i32,
            term: 3,
            snapshot: Some(kvproto::eraftpb::Snapshot {
                data: vec![0xde, 0xad, 0xbe, 0xef],
                metadata: Some(kvproto::eraftpb::SnapshotMetadata {
                    index: 1_000,
                    term: 3,
                    conf_state: None,
                }),
            }),
            ..Default::default()
        }),
    );
    let data = |bytes: &[u8]| SnapshotChunk {
        message: None,
        data: bytes.to_vec(),
    };
    let cases: Vec<(&str, Vec<SnapshotChunk>)> = vec![
        ("empty", Vec::new()),
        (
            "data before the header",
            vec![data(b"abc"), header(snap_msg.clone())],
        ),
        (
            "header that does not parse",
            vec![header(snap_msg.clone()), data(b"x")],
        ),
        (
            "header without a snapshot",
            vec![header(raft_message(region.id, stranger, local, None))],
        ),
    ];
    for (name, chunks) in cases {
        let mut kv = TinyKvClient::connect(format!("http://{addr}"))
            .await
            .expect("connect");
        let answer = tokio::time::timeout(DEADLINE, kv.snapshot(tokio_stream::iter(chunks)))
            .await
            .unwrap_or_else(|_| panic!("snapshot stream {name}: no answer"));
        assert!(answer.is_err(), "snapshot stream {name}: accepted");
    }
}

fn no_leftovers(dir: &Path) -> Vec<String> {
    let snap = dir.join("snap");
    std::fs::read_dir(&snap)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_hostile_input_gets_clear_errors_and_the_node_still_serves() {
    let t = start_node().await;
    let node = &t.node;
    let mut kv = connect(node).await;
    let (region, ctx) = serving_context(node, &mut kv).await;
    let local = ctx.peer.expect("the context names the local peer");

    // Acknowledged before the storm: must survive it.
    for i in 0..20u32 {
        let resp = put(
            &mut kv,
            Some(ctx),
            format!("before-{i}").as_bytes(),
            &i.to_be_bytes(),
            "",
        )
        .await;
        assert!(
            resp.region_error.is_none() && resp.error.is_empty(),
            "{resp:?}"
        );
    }

    let sent = send_bad_raw_calls(&mut kv, &region, ctx, node.store_id()).await;
    assert!(sent >= 30, "only {sent} bad calls");
    check_scan_limits(&mut kv, ctx).await;
    check_garbage_unary(node.local_addr()).await;
    check_unimplemented(&mut kv).await;
    send_hostile_raft(node.local_addr(), &region, local).await;
    send_broken_snapshots(node.local_addr(), &region, local).await;

    // Still serving: old writes intact, new writes accepted, the region
    // unchanged (no hostile message moved its epoch or its members).
    let mut kv = connect(node).await;
    let (after, ctx) = serving_context(node, &mut kv).await;
    assert_eq!(after.region_epoch, region.region_epoch);
    assert_eq!(after.peers, region.peers);
    for i in 0..20u32 {
        let resp = get(&mut kv, Some(ctx), format!("before-{i}").as_bytes()).await;
        assert!(
            resp.region_error.is_none() && resp.error.is_empty(),
            "{resp:?}"
        );
        assert_eq!(resp.value, i.to_be_bytes(), "before-{i}");
    }
    let resp = put(&mut kv, Some(ctx), b"after", b"storm", "").await;
    assert!(
        resp.region_error.is_none() && resp.error.is_empty(),
        "{resp:?}"
    );
    assert_eq!(get(&mut kv, Some(ctx), b"after").await.value, b"storm");
    // None of the refused writes landed.
    let resp = get(&mut kv, Some(ctx), b"k").await;
    assert!(resp.not_found, "a refused write was applied: {resp:?}");
    // No half-received snapshot was left behind.
    let left: Vec<String> = no_leftovers(&t._dirs.1.path().join("store"))
        .into_iter()
        .filter(|f| f.ends_with(".tmp") || f.starts_with("rcv_"))
        .collect();
    assert!(left.is_empty(), "snapshot leftovers: {left:?}");

    // Stopped, not dropped: its engine closes before the test process
    // exits. Dropped, the store's threads would still be closing RocksDB
    // while the process tears down its statics, and RocksDB aborts.
    t.node.stop().await;
}
