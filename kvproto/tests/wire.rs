//! Wire-format checks for the generated protocol.
//!
//! - `golden_*`: messages encoded to byte strings derived by hand from the
//!   protobuf encoding rules, and decoded back. A key is `field << 3 | wire_type`
//!   as a varint; wire type 0 is a varint, 2 is length-delimited (length varint,
//!   then the bytes). Proto3 leaves out fields that hold their default value, and
//!   prost writes fields in field-number order, so each encoding is unique.
//! - `round_trip_*`: encode then decode gives back the same message, for a few
//!   messages of every package.
//! - `services_*`: the tonic clients and servers exist, with the gRPC paths a
//!   client generated from TinyKV's files calls.

use kvproto::{
    coprocessor, eraftpb, errorpb, kvrpcpb, metapb, raft_cmdpb, raft_serverpb, schedulerpb,
    tinykvpb,
};
use prost::Message;

/// Asserts that `msg` encodes to exactly `expected` and that `expected`
/// decodes back to `msg`.
fn must_encode_to<M: Message + Default + PartialEq + std::fmt::Debug>(msg: &M, expected: &[u8]) {
    let encoded = msg.encode_to_vec();
    assert_eq!(
        encoded,
        expected,
        "encoding of {msg:?}\n   got: {}\nwanted: {}",
        hex(&encoded),
        hex(expected)
    );
    assert_eq!(msg.encoded_len(), expected.len());
    let decoded = M::decode(expected).expect("golden bytes decode");
    assert_eq!(&decoded, msg);
}

fn must_round_trip<M: Message + Default + PartialEq + std::fmt::Debug>(msg: M) {
    let bytes = msg.encode_to_vec();
    let decoded = M::decode(bytes.as_slice())
        .unwrap_or_else(|e| panic!("decoding {msg:?} from {}: {e}", hex(&bytes)));
    assert_eq!(decoded, msg);
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn peer(id: u64, store_id: u64) -> metapb::Peer {
    metapb::Peer { id, store_id }
}

fn epoch(conf_ver: u64, version: u64) -> metapb::RegionEpoch {
    metapb::RegionEpoch { conf_ver, version }
}

#[test]
fn golden_raft_message_append() {
    let msg = raft_serverpb::RaftMessage {
        region_id: 1,
        from_peer: Some(peer(1, 1)),
        to_peer: Some(peer(2, 2)),
        message: Some(eraftpb::Message {
            msg_type: eraftpb::MessageType::MsgAppend as i32,
            to: 2,
            from: 1,
            term: 5,
            log_term: 4,
            index: 300,
            entries: vec![
                eraftpb::Entry {
                    entry_type: eraftpb::EntryType::EntryNormal as i32,
                    term: 5,
                    index: 301,
                    data: vec![],
                },
                eraftpb::Entry {
                    entry_type: eraftpb::EntryType::EntryNormal as i32,
                    term: 5,
                    index: 302,
                    data: b"put".to_vec(),
                },
            ],
            commit: 300,
            ..Default::default()
        }),
        region_epoch: Some(epoch(1, 2)),
        ..Default::default()
    };
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0x08, 0x01,             // 1 region_id, varint: 1
        0x12, 0x04,             // 2 from_peer, len 4: Peer
            0x08, 0x01,         //   1 id: 1
            0x10, 0x01,         //   2 store_id: 1
        0x1a, 0x04,             // 3 to_peer, len 4: Peer
            0x08, 0x02,         //   1 id: 2
            0x10, 0x02,         //   2 store_id: 2
        0x22, 0x23,             // 4 message, len 35 = 13 + 19 + 3: eraftpb.Message
            0x08, 0x03,         //   1 msg_type: MsgAppend = 3
            0x10, 0x02,         //   2 to: 2
            0x18, 0x01,         //   3 from: 1
            0x20, 0x05,         //   4 term: 5
            0x28, 0x04,         //   5 log_term: 4
            0x30, 0xac, 0x02,   //   6 index: 300 = 0b10_0101100 -> 0xac 0x02
            0x3a, 0x05,         //   7 entries, len 5: Entry (entry_type 0 left out)
                0x10, 0x05,     //     2 term: 5
                0x18, 0xad, 0x02, //   3 index: 301 -> 0xad 0x02
            0x3a, 0x0a,         //   7 entries, len 10: Entry
                0x10, 0x05,     //     2 term: 5
                0x18, 0xae, 0x02, //   3 index: 302 -> 0xae 0x02
                0x22, 0x03, b'p', b'u', b't', // 4 data, len 3: "put"
            0x40, 0xac, 0x02,   //   8 commit: 300
        0x2a, 0x04,             // 5 region_epoch, len 4: RegionEpoch
            0x08, 0x01,         //   1 conf_ver: 1
            0x10, 0x02,         //   2 version: 2
    ];
    must_encode_to(&msg, expected);
}

#[test]
fn golden_raw_put_request() {
    let req = kvrpcpb::RawPutRequest {
        context: Some(kvrpcpb::Context {
            region_id: 1,
            region_epoch: Some(epoch(1, 1)),
            peer: Some(peer(1, 1)),
            term: 6,
            ..Default::default()
        }),
        key: b"k1".to_vec(),
        value: b"v1".to_vec(),
        cf: "default".to_string(),
    };
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0x0a, 0x10,             // 1 context, len 16: Context
            0x08, 0x01,         //   1 region_id: 1
            0x12, 0x04,         //   2 region_epoch, len 4
                0x08, 0x01,     //     1 conf_ver: 1
                0x10, 0x01,     //     2 version: 1
            0x1a, 0x04,         //   3 peer, len 4
                0x08, 0x01,     //     1 id: 1
                0x10, 0x01,     //     2 store_id: 1
            0x28, 0x06,         //   5 term (field 4 is unused): 6
        0x12, 0x02, b'k', b'1', // 2 key, len 2
        0x1a, 0x02, b'v', b'1', // 3 value, len 2
        0x22, 0x07,             // 4 cf, len 7: "default"
            b'd', b'e', b'f', b'a', b'u', b'l', b't',
    ];
    must_encode_to(&req, expected);
}

#[test]
fn golden_message_reject_hint_extension() {
    let msg = eraftpb::Message {
        msg_type: eraftpb::MessageType::MsgAppendResponse as i32,
        to: 1,
        from: 2,
        term: 5,
        index: 7,
        reject: true,
        reject_hint: 100,
        ..Default::default()
    };
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0x08, 0x04,             // 1 msg_type: MsgAppendResponse = 4
        0x10, 0x01,             // 2 to: 1
        0x18, 0x02,             // 3 from: 2
        0x20, 0x05,             // 4 term: 5
        0x30, 0x07,             // 6 index: 7
        0x50, 0x01,             // 10 reject: true (10 << 3 = 0x50)
        0xa0, 0x06, 0x64,       // 100 reject_hint: key 100 << 3 = 800 -> 0xa0 0x06; value 100
    ];
    must_encode_to(&msg, expected);
}

/// A peer built from TinyKV's own files never sends `reject_hint`; its
/// messages decode here with the hint at zero.
#[test]
fn golden_message_without_extension() {
    let plain = [0x08, 0x04, 0x50, 0x01];
    let msg = eraftpb::Message::decode(&plain[..]).unwrap();
    assert_eq!(msg.msg_type(), eraftpb::MessageType::MsgAppendResponse);
    assert!(msg.reject);
    assert_eq!(msg.reject_hint, 0);
}

/// The region heartbeat's extensions (term, down peers, key count) travel in
/// fields 100 to 102, after TinyKV's own fields.
#[test]
fn golden_region_heartbeat_extensions() {
    let req = schedulerpb::RegionHeartbeatRequest {
        leader: Some(peer(1, 1)),
        term: 7,
        down_peers: vec![schedulerpb::DownPeer {
            peer: Some(peer(2, 2)),
            down_seconds: 300,
        }],
        approximate_keys: 5,
        ..Default::default()
    };
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0x1a, 0x04,             // 3 leader, len 4
            0x08, 0x01,         //   1 id: 1
            0x10, 0x01,         //   2 store_id: 1
        0xa0, 0x06, 0x07,       // 100 term: key 800 -> 0xa0 0x06; value 7
        0xaa, 0x06, 0x09,       // 101 down_peers: key 810 -> 0xaa 0x06; len 9
            0x0a, 0x04,         //   1 peer, len 4
                0x08, 0x02,     //     1 id: 2
                0x10, 0x02,     //     2 store_id: 2
            0x10, 0xac, 0x02,   //   2 down_seconds: 300
        0xb0, 0x06, 0x05,       // 102 approximate_keys: key 816 -> 0xb0 0x06; value 5
    ];
    must_encode_to(&req, expected);
}

/// A store built from TinyKV's files sends no extensions: its heartbeat
/// decodes with term 0 and no down peers ("not reported").
#[test]
fn golden_region_heartbeat_without_extensions() {
    let plain = [0x1a, 0x04, 0x08, 0x01, 0x10, 0x01, 0x50, 0x40];
    let req = schedulerpb::RegionHeartbeatRequest::decode(&plain[..]).unwrap();
    assert_eq!(req.leader, Some(peer(1, 1)));
    assert_eq!(req.approximate_size, 64);
    assert_eq!(req.term, 0);
    assert!(req.down_peers.is_empty());
    assert_eq!(req.approximate_keys, 0);
}

#[test]
fn golden_raft_cmd_request_put() {
    let req = raft_cmdpb::RaftCmdRequest {
        header: Some(raft_cmdpb::RaftRequestHeader {
            region_id: 2,
            peer: Some(peer(3, 1)),
            region_epoch: Some(epoch(1, 1)),
            term: 0,
            ..Default::default()
        }),
        requests: vec![raft_cmdpb::Request {
            cmd_type: raft_cmdpb::CmdType::Put as i32,
            put: Some(raft_cmdpb::PutRequest {
                cf: "lock".to_string(),
                key: b"a".to_vec(),
                value: b"".to_vec(),
            }),
            ..Default::default()
        }],
        admin_request: None,
    };
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0x0a, 0x0e,             // 1 header, len 14: RaftRequestHeader
            0x08, 0x02,         //   1 region_id: 2
            0x12, 0x04,         //   2 peer, len 4
                0x08, 0x03,     //     1 id: 3
                0x10, 0x01,     //     2 store_id: 1
            0x22, 0x04,         //   4 region_epoch, len 4 (term 0 left out)
                0x08, 0x01,     //     1 conf_ver: 1
                0x10, 0x01,     //     2 version: 1
        0x12, 0x0d,             // 2 requests, len 13 = 2 + 2 + 9: Request
            0x08, 0x03,         //   1 cmd_type: Put = 3
            0x22, 0x09,         //   4 put, len 9 = 6 + 3: PutRequest (empty value left out)
                0x0a, 0x04, b'l', b'o', b'c', b'k', // 1 cf: "lock"
                0x12, 0x01, b'a', //                   2 key: "a"
    ];
    must_encode_to(&req, expected);
}

#[test]
fn golden_region_heartbeat_response_enum_and_wide_varint() {
    let resp = schedulerpb::RegionHeartbeatResponse {
        header: Some(schedulerpb::ResponseHeader {
            cluster_id: 1 << 32,
            error: None,
        }),
        change_peer: Some(schedulerpb::ChangePeer {
            peer: Some(peer(5, 3)),
            change_type: eraftpb::ConfChangeType::RemoveNode as i32,
        }),
        region_id: 9,
        ..Default::default()
    };
    #[rustfmt::skip]
    let expected: &[u8] = &[
        0x0a, 0x06,             // 1 header, len 6: ResponseHeader
            0x08,               //   1 cluster_id: 2^32, 7 bits per byte, low first:
            0x80, 0x80, 0x80, 0x80, 0x10, // 4 x 0 with continuation, then 2^(32-28) = 0x10
        0x12, 0x08,             // 2 change_peer, len 8: ChangePeer
            0x0a, 0x04,         //   1 peer, len 4
                0x08, 0x05,     //     1 id: 5
                0x10, 0x03,     //     2 store_id: 3
            0x10, 0x01,         //   2 change_type: RemoveNode = 1
        0x20, 0x09,             // 4 region_id: 9
    ];
    must_encode_to(&resp, expected);
}

#[test]
fn round_trip_eraftpb() {
    must_round_trip(eraftpb::Entry {
        entry_type: eraftpb::EntryType::EntryConfChange as i32,
        term: u64::MAX,
        index: 1,
        data: vec![0, 1, 2, 255],
    });
    must_round_trip(eraftpb::Message {
        msg_type: eraftpb::MessageType::MsgSnapshot as i32,
        to: 3,
        from: 1,
        term: 9,
        snapshot: Some(eraftpb::Snapshot {
            data: b"snap".to_vec(),
            metadata: Some(eraftpb::SnapshotMetadata {
                conf_state: Some(eraftpb::ConfState {
                    nodes: vec![1, 2, 3],
                }),
                index: 100,
                term: 8,
            }),
        }),
        reject_hint: 42,
        ..Default::default()
    });
    must_round_trip(eraftpb::HardState {
        term: 3,
        vote: 2,
        commit: 10,
    });
    must_round_trip(eraftpb::ConfChange {
        change_type: eraftpb::ConfChangeType::AddNode as i32,
        node_id: 4,
        context: b"ctx".to_vec(),
    });
}

#[test]
fn round_trip_metapb_and_errorpb() {
    let region = metapb::Region {
        id: 7,
        start_key: b"a".to_vec(),
        end_key: vec![],
        region_epoch: Some(epoch(3, 4)),
        peers: vec![peer(1, 1), peer(2, 2), peer(3, 3)],
    };
    must_round_trip(region.clone());
    must_round_trip(metapb::Store {
        id: 1,
        address: "127.0.0.1:20160".to_string(),
        state: metapb::StoreState::Tombstone as i32,
    });
    must_round_trip(metapb::Cluster {
        id: 1,
        max_peer_count: 3,
    });
    must_round_trip(errorpb::Error {
        message: "epoch not match".to_string(),
        epoch_not_match: Some(errorpb::EpochNotMatch {
            current_regions: vec![region],
        }),
        ..Default::default()
    });
    must_round_trip(errorpb::Error {
        not_leader: Some(errorpb::NotLeader {
            region_id: 7,
            leader: Some(peer(2, 2)),
        }),
        stale_command: Some(errorpb::StaleCommand {}),
        store_not_match: Some(errorpb::StoreNotMatch {
            request_store_id: 1,
            actual_store_id: 2,
        }),
        key_not_in_region: Some(errorpb::KeyNotInRegion {
            key: b"z".to_vec(),
            region_id: 7,
            start_key: b"a".to_vec(),
            end_key: b"m".to_vec(),
        }),
        region_not_found: Some(errorpb::RegionNotFound { region_id: 8 }),
        ..Default::default()
    });
}

#[test]
fn round_trip_kvrpcpb_and_coprocessor() {
    let ctx = kvrpcpb::Context {
        region_id: 1,
        region_epoch: Some(epoch(1, 1)),
        peer: Some(peer(1, 1)),
        term: 2,
        ..Default::default()
    };
    must_round_trip(kvrpcpb::PrewriteRequest {
        context: Some(ctx),
        mutations: vec![
            kvrpcpb::Mutation {
                op: kvrpcpb::Op::Put as i32,
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            },
            kvrpcpb::Mutation {
                op: kvrpcpb::Op::Del as i32,
                key: b"d".to_vec(),
                value: vec![],
            },
        ],
        primary_lock: b"k".to_vec(),
        start_version: 10,
        lock_ttl: 3000,
    });
    must_round_trip(kvrpcpb::ScanResponse {
        region_error: None,
        pairs: vec![
            kvrpcpb::KvPair {
                error: None,
                key: b"a".to_vec(),
                value: b"1".to_vec(),
            },
            kvrpcpb::KvPair {
                error: Some(kvrpcpb::KeyError {
                    locked: Some(kvrpcpb::LockInfo {
                        primary_lock: b"p".to_vec(),
                        lock_version: 5,
                        key: b"b".to_vec(),
                        lock_ttl: 10,
                    }),
                    conflict: Some(kvrpcpb::WriteConflict {
                        start_ts: 1,
                        conflict_ts: 2,
                        key: b"b".to_vec(),
                        primary: b"p".to_vec(),
                    }),
                    ..Default::default()
                }),
                key: b"b".to_vec(),
                value: vec![],
            },
        ],
    });
    must_round_trip(kvrpcpb::CheckTxnStatusResponse {
        region_error: Some(errorpb::Error {
            region_not_found: Some(errorpb::RegionNotFound { region_id: 1 }),
            ..Default::default()
        }),
        lock_ttl: 0,
        commit_version: 0,
        action: kvrpcpb::Action::TtlExpireRollback as i32,
    });
    must_round_trip(kvrpcpb::RawScanRequest {
        context: Some(ctx),
        start_key: b"a".to_vec(),
        limit: 10,
        cf: "write".to_string(),
    });
    must_round_trip(coprocessor::Request {
        context: Some(ctx),
        tp: -1,
        data: b"dag".to_vec(),
        start_ts: 99,
        ranges: vec![coprocessor::KeyRange {
            start: b"a".to_vec(),
            end: b"b".to_vec(),
        }],
    });
}

#[test]
fn round_trip_raft_cmdpb() {
    must_round_trip(raft_cmdpb::RaftCmdRequest {
        header: Some(raft_cmdpb::RaftRequestHeader {
            region_id: 1,
            peer: Some(peer(1, 1)),
            region_epoch: Some(epoch(1, 1)),
            term: 5,
            ..Default::default()
        }),
        requests: vec![],
        admin_request: Some(raft_cmdpb::AdminRequest {
            cmd_type: raft_cmdpb::AdminCmdType::Split as i32,
            split: Some(raft_cmdpb::SplitRequest {
                split_key: b"m".to_vec(),
                new_region_id: 2,
                new_peer_ids: vec![4, 5, 6],
            }),
            ..Default::default()
        }),
    });
    must_round_trip(raft_cmdpb::RaftCmdResponse {
        header: Some(raft_cmdpb::RaftResponseHeader {
            error: None,
            uuid: vec![1; 16],
            current_term: 5,
        }),
        responses: vec![
            raft_cmdpb::Response {
                cmd_type: raft_cmdpb::CmdType::Get as i32,
                get: Some(raft_cmdpb::GetResponse {
                    value: b"v".to_vec(),
                }),
                ..Default::default()
            },
            raft_cmdpb::Response {
                cmd_type: raft_cmdpb::CmdType::Delete as i32,
                delete: Some(raft_cmdpb::DeleteResponse {}),
                ..Default::default()
            },
        ],
        admin_response: Some(raft_cmdpb::AdminResponse {
            cmd_type: raft_cmdpb::AdminCmdType::CompactLog as i32,
            compact_log: Some(raft_cmdpb::CompactLogResponse {}),
            ..Default::default()
        }),
    });
    must_round_trip(raft_cmdpb::AdminRequest {
        cmd_type: raft_cmdpb::AdminCmdType::ChangePeer as i32,
        change_peer: Some(raft_cmdpb::ChangePeerRequest {
            change_type: eraftpb::ConfChangeType::RemoveNode as i32,
            peer: Some(peer(3, 3)),
        }),
        transfer_leader: Some(raft_cmdpb::TransferLeaderRequest {
            peer: Some(peer(2, 2)),
        }),
        ..Default::default()
    });
}

#[test]
fn round_trip_raft_serverpb() {
    must_round_trip(raft_serverpb::RaftLocalState {
        hard_state: Some(eraftpb::HardState {
            term: 5,
            vote: 1,
            commit: 9,
        }),
        last_index: 12,
        last_term: 5,
    });
    must_round_trip(raft_serverpb::RaftApplyState {
        applied_index: 9,
        truncated_state: Some(raft_serverpb::RaftTruncatedState { index: 5, term: 5 }),
        ..Default::default()
    });
    must_round_trip(raft_serverpb::RaftApplyState {
        applied_index: 9,
        truncated_state: None,
        session_clock_ms: 1 << 41,
    });
    must_round_trip(raft_serverpb::ClientSessionState {
        client_id: 1 << 40,
        sequence: 7,
        last_active_ms: 1 << 41,
        answer: vec![8, 3],
    });
    must_round_trip(raft_cmdpb::RaftRequestHeader {
        region_id: 1,
        session: Some(raft_cmdpb::ClientSession {
            client_id: 3,
            sequence: 4,
        }),
        session_clock: Some(raft_cmdpb::SessionClock {
            now_ms: 1 << 41,
            ttl_ms: 3_600_000,
            max_sessions: 10_000,
        }),
        ..Default::default()
    });
    must_round_trip(raft_serverpb::RegionLocalState {
        state: raft_serverpb::PeerState::Tombstone as i32,
        region: Some(metapb::Region {
            id: 1,
            ..Default::default()
        }),
    });
    must_round_trip(raft_serverpb::SnapshotChunk {
        message: Some(raft_serverpb::RaftMessage {
            region_id: 1,
            is_tombstone: true,
            start_key: b"a".to_vec(),
            end_key: b"z".to_vec(),
            ..Default::default()
        }),
        data: vec![7; 300],
    });
    must_round_trip(raft_serverpb::RaftSnapshotData {
        region: None,
        file_size: 1024,
        data: vec![raft_serverpb::KeyValue {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        }],
        meta: Some(raft_serverpb::SnapshotMeta {
            cf_files: vec![raft_serverpb::SnapshotCfFile {
                cf: "default".to_string(),
                size: 1024,
                checksum: 0xdead_beef,
                cf_checksum: 0xfeed_f00d,
            }],
        }),
        ..Default::default()
    });
    must_round_trip(raft_serverpb::StoreIdent {
        cluster_id: 1,
        store_id: 2,
    });
}

#[test]
fn round_trip_schedulerpb() {
    must_round_trip(schedulerpb::TsoResponse {
        header: Some(schedulerpb::ResponseHeader {
            cluster_id: 1,
            error: Some(schedulerpb::Error {
                r#type: schedulerpb::ErrorType::NotBootstrapped as i32,
                message: "not bootstrapped".to_string(),
            }),
        }),
        count: 1,
        timestamp: Some(schedulerpb::Timestamp {
            physical: -1,
            logical: 1 << 40,
        }),
    });
    must_round_trip(schedulerpb::RegionHeartbeatRequest {
        header: Some(schedulerpb::RequestHeader { cluster_id: 1 }),
        region: Some(metapb::Region {
            id: 1,
            peers: vec![peer(1, 1)],
            ..Default::default()
        }),
        leader: Some(peer(1, 1)),
        pending_peers: vec![peer(2, 2)],
        approximate_size: 96 << 20,
        term: 9,
        down_peers: vec![schedulerpb::DownPeer {
            peer: Some(peer(3, 3)),
            down_seconds: 1 << 20,
        }],
        approximate_keys: 1 << 33,
        client_sessions: 12,
    });
    must_round_trip(schedulerpb::StoreStats {
        store_id: 1,
        capacity: 1 << 40,
        available: 1 << 39,
        region_count: 3,
        is_busy: true,
        interval: Some(schedulerpb::TimeInterval {
            start_timestamp: 1,
            end_timestamp: 2,
        }),
        cpu_usages: vec![schedulerpb::RecordPair {
            key: "raftstore".to_string(),
            value: 50,
        }],
        ..Default::default()
    });
    must_round_trip(schedulerpb::ScanRegionsRequest {
        header: None,
        start_key: b"".to_vec(),
        limit: -1,
        end_key: b"z".to_vec(),
    });
    must_round_trip(schedulerpb::GetOperatorResponse {
        header: None,
        region_id: 1,
        desc: b"add peer".to_vec(),
        status: schedulerpb::OperatorStatus::Running as i32,
        kind: b"region".to_vec(),
    });
    must_round_trip(schedulerpb::GetMembersResponse {
        header: None,
        members: vec![schedulerpb::Member {
            name: "pd".to_string(),
            member_id: 1,
            peer_urls: vec!["http://127.0.0.1:2380".to_string()],
            client_urls: vec!["http://127.0.0.1:2379".to_string()],
            leader_priority: -5,
        }],
        leader: None,
        etcd_leader: None,
    });
}

/// Enum values keep their `.proto` names, which text and JSON forms use.
#[test]
fn enum_names_match_proto() {
    assert_eq!(
        kvrpcpb::Action::TtlExpireRollback.as_str_name(),
        "TTLExpireRollback"
    );
    assert_eq!(
        schedulerpb::ErrorType::NotBootstrapped.as_str_name(),
        "NOT_BOOTSTRAPPED"
    );
    assert_eq!(
        eraftpb::MessageType::MsgTimeoutNow.as_str_name(),
        "MsgTimeoutNow"
    );
    assert_eq!(raft_cmdpb::AdminCmdType::Split as i32, 10);
    assert_eq!(raft_serverpb::PeerState::Tombstone as i32, 2);
}

// The services exist with client and server halves; these only need to compile.
#[allow(dead_code)]
fn services_exist() {
    use tonic::transport::Channel;
    fn tinykv_server<S: tinykvpb::tiny_kv_server::TinyKv>(
        svc: S,
    ) -> tinykvpb::tiny_kv_server::TinyKvServer<S> {
        tinykvpb::tiny_kv_server::TinyKvServer::new(svc)
    }
    fn scheduler_server<S: schedulerpb::scheduler_server::Scheduler>(
        svc: S,
    ) -> schedulerpb::scheduler_server::SchedulerServer<S> {
        schedulerpb::scheduler_server::SchedulerServer::new(svc)
    }
    let _: Option<tinykvpb::tiny_kv_client::TinyKvClient<Channel>> = None;
    let _: Option<schedulerpb::scheduler_client::SchedulerClient<Channel>> = None;
}

/// Every RPC is routed under the path a TinyKV-generated client calls:
/// `/<package>.<Service>/<Method>`.
#[test]
fn services_use_tinykv_paths() {
    let tinykv = include_str!(concat!(env!("OUT_DIR"), "/tinykvpb.rs"));
    for method in [
        "KvGet",
        "KvScan",
        "KvPrewrite",
        "KvCommit",
        "KvCheckTxnStatus",
        "KvBatchRollback",
        "KvResolveLock",
        "RawGet",
        "RawPut",
        "RawDelete",
        "RawScan",
        "Raft",
        "Snapshot",
        "Coprocessor",
    ] {
        let path = format!("\"/tinykvpb.TinyKv/{method}\"");
        assert!(tinykv.contains(&path), "no route {path}");
    }
    let scheduler = include_str!(concat!(env!("OUT_DIR"), "/schedulerpb.rs"));
    for method in [
        "GetMembers",
        "Tso",
        "Bootstrap",
        "IsBootstrapped",
        "AllocID",
        "GetStore",
        "PutStore",
        "GetAllStores",
        "StoreHeartbeat",
        "RegionHeartbeat",
        "GetRegion",
        "GetPrevRegion",
        "GetRegionByID",
        "ScanRegions",
        "AskSplit",
        "GetClusterConfig",
        "PutClusterConfig",
        "ScatterRegion",
        "GetGCSafePoint",
        "UpdateGCSafePoint",
        "GetOperator",
    ] {
        let path = format!("\"/schedulerpb.Scheduler/{method}\"");
        assert!(scheduler.contains(&path), "no route {path}");
    }
}
