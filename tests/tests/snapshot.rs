//! Region snapshots end to end: a store that missed compacted entries
//! catches up by snapshot (over a reliable and a lossy network), an empty
//! peer is initialized by one, and a store that crashed in the middle of
//! applying one finishes it when it restarts, clearing the peer's previous
//! range too when the snapshot changed it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kvproto::eraftpb::{HardState, Message, MessageType};
use kvproto::metapb;
use kvproto::raft_cmdpb::{
    AdminCmdType, AdminRequest, RaftCmdRequest, RaftRequestHeader, TransferLeaderRequest,
};
use kvproto::raft_serverpb::{
    PeerState, RaftApplyState, RaftLocalState, RaftMessage, RaftTruncatedState, RegionLocalState,
};
use raft::{Ready, StorageError};
use raftstore::bootstrap::{bootstrap_store, write_initial_region};
use raftstore::peer_storage::PeerStorage;
use raftstore::snap::{ChunkEncoder, SnapKey, SnapKind, SnapshotReceiver, generate_snapshot};
use raftstore::snapshot::SnapshotSource;
use raftstore::{Config, NoScheduler, SnapManager, Store, Transport, TransportError};
use storage::{CF_DEFAULT, CF_LOCK, CF_RAFT, CF_WRITE, Engine, keys};
use tinykv_tests::cluster::filter::DropFilter;
use tinykv_tests::cluster::{Cluster, FIRST_REGION_ID, test_logger};

/// Waits until `done` holds, panicking after `timeout` with what `show`
/// says about the last state seen.
fn wait_until<T: std::fmt::Debug>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        let seen = probe();
        if done(&seen) {
            return seen;
        }
        if Instant::now() >= deadline {
            panic!("timed out waiting for {what}; last seen: {seen:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn truncated_index(state: &Option<RaftApplyState>) -> u64 {
    state
        .as_ref()
        .and_then(|s| s.truncated_state)
        .map_or(0, |t| t.index)
}

fn new_snapshot_config() -> Config {
    Config {
        raft_log_gc_count_limit: 10,
        raft_log_gc_tick_ticks: 5,
        ..Config::for_tests()
    }
}

/// Stops store 3, writes until the others compact their log past where it
/// stopped, restarts it, and checks it caught up by snapshot.
fn catch_up_by_snapshot(cluster: &Cluster) {
    cluster.must_put(b"k000", b"v000");
    cluster.must_get_equal_on_store(3, b"k000", b"v000", Duration::from_secs(10));
    let stopped_at = cluster
        .apply_state(3, FIRST_REGION_ID)
        .expect("store 3 has the region")
        .applied_index;
    cluster.stop_store(3);

    for i in 1..100u32 {
        let key = format!("k{i:03}");
        cluster.must_put(key.as_bytes(), format!("v{i:03}").as_bytes());
    }
    for store_id in [1, 2] {
        wait_until(
            Duration::from_secs(20),
            &format!("store {store_id} to compact its log past index {stopped_at}"),
            || cluster.apply_state(store_id, FIRST_REGION_ID),
            |state| truncated_index(state) > stopped_at + 1,
        );
    }

    cluster.start_store(3);
    for i in 0..100u32 {
        let key = format!("k{i:03}");
        cluster.must_get_equal_on_store(
            3,
            key.as_bytes(),
            format!("v{i:03}").as_bytes(),
            Duration::from_secs(30),
        );
    }
    let state = cluster.apply_state(3, FIRST_REGION_ID);
    assert!(
        truncated_index(&state) > stopped_at,
        "store 3 stopped at {stopped_at}; its log must have been replaced by a snapshot: {state:?}"
    );
    // Store 3 takes part in the region again.
    cluster.must_put(b"after", b"snapshot");
    cluster.must_get_equal_on_store(3, b"after", b"snapshot", Duration::from_secs(10));
}

#[test]
fn a_restarted_store_catches_up_by_snapshot() {
    let cluster = Cluster::new(
        3,
        new_snapshot_config(),
        "a_restarted_store_catches_up_by_snapshot",
    );
    cluster.start();
    catch_up_by_snapshot(&cluster);
}

#[test]
fn a_restarted_store_catches_up_by_snapshot_over_a_lossy_network() {
    let cluster = Cluster::new(
        3,
        new_snapshot_config(),
        "a_restarted_store_catches_up_by_snapshot_over_a_lossy_network",
    );
    cluster.start();
    cluster.add_filter(Arc::new(DropFilter { percent: 10 }));
    catch_up_by_snapshot(&cluster);
}

/// A transport for a store that talks to nobody.
struct NoNetwork;

impl Transport for NoNetwork {
    fn send(&self, msg: RaftMessage) -> Result<(), TransportError> {
        Err(TransportError::Unreachable(
            msg.to_peer.map_or(0, |p| p.store_id),
        ))
    }

    fn send_snapshot(&self, msg: RaftMessage) -> Result<(), TransportError> {
        self.send(msg)
    }
}

/// The crash: store 2 received a snapshot of region 1 at (20, 6), persisted
/// the new raft/apply state and the `Applying` mark, and stopped before
/// ingesting. Restarted, it must finish the apply before the peer starts.
#[test]
fn a_snapshot_apply_interrupted_by_a_crash_is_finished_on_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (index, term) = (20, 6);
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
    let region_state = |state: PeerState| RegionLocalState {
        state: state as i32,
        region: Some(region.clone()),
    };
    let apply_state = RaftApplyState {
        applied_index: index,
        truncated_state: Some(RaftTruncatedState { index, term }),
        session_clock_ms: 0,
    };

    // Store 1 generates the snapshot.
    let leader = Engine::open(dir.path().join("store-1/db")).expect("open engine 1");
    let leader_snaps = SnapManager::open(dir.path().join("store-1/snap")).expect("snap dir 1");
    let mut wb = leader.write_batch();
    wb.put_msg_cf(
        CF_DEFAULT,
        &keys::region_state_key(1),
        &region_state(PeerState::Normal),
    )
    .unwrap();
    wb.put_msg_cf(CF_DEFAULT, &keys::apply_state_key(1), &apply_state)
        .unwrap();
    for i in 0..30u32 {
        wb.put_cf(
            CF_DEFAULT,
            &keys::data_key(format!("key{i:02}").as_bytes()),
            format!("value{i}").as_bytes(),
        )
        .unwrap();
        wb.put_cf(
            CF_WRITE,
            &keys::data_key(format!("key{i:02}").as_bytes()),
            b"w",
        )
        .unwrap();
    }
    leader.write(wb, true).unwrap();
    let snapshot = generate_snapshot(&leader_snaps, &leader.snapshot(), 1).expect("generate");

    // Store 2 receives its files...
    let engine = Engine::open(dir.path().join("store-2/db")).expect("open engine 2");
    let snaps = SnapManager::open(dir.path().join("store-2/snap")).expect("snap dir 2");
    let msg = RaftMessage {
        region_id: 1,
        from_peer: Some(region.peers[0]),
        to_peer: Some(region.peers[1]),
        message: Some(Message {
            msg_type: MessageType::MsgSnapshot as i32,
            from: 1,
            to: 2,
            term,
            snapshot: Some(snapshot),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut chunks = ChunkEncoder::new(&leader_snaps, msg).expect("encode");
    let mut receiver = SnapshotReceiver::new(&snaps, chunks.next().unwrap().unwrap()).unwrap();
    for chunk in chunks {
        receiver.feed(chunk.unwrap()).unwrap();
    }
    receiver.finish().expect("receive");
    let key = SnapKey {
        region_id: 1,
        term,
        index,
    };
    assert!(snaps.exists(SnapKind::Received, &key));

    // ... persists what `PeerStorage::prepare_snapshot` writes, and crashes.
    bootstrap_store(&engine, 1, 2).unwrap();
    let mut wb = engine.write_batch();
    wb.put_msg_cf(
        CF_DEFAULT,
        &keys::region_state_key(1),
        &region_state(PeerState::Applying),
    )
    .unwrap();
    wb.put_msg_cf(CF_DEFAULT, &keys::apply_state_key(1), &apply_state)
        .unwrap();
    wb.put_msg_cf(
        CF_RAFT,
        &keys::raft_state_key(1),
        &RaftLocalState {
            hard_state: Some(HardState {
                term,
                vote: 0,
                commit: index,
            }),
            last_index: index,
            last_term: term,
        },
    )
    .unwrap();
    // Data the snapshot replaces.
    wb.put_cf(CF_DEFAULT, &keys::data_key(b"stale"), b"gone")
        .unwrap();
    engine.write(wb, true).unwrap();
    drop(engine);
    drop(snaps);

    // Restart.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let engine = Engine::open(dir.path().join("store-2/db")).expect("reopen engine 2");
    let snaps = SnapManager::open(dir.path().join("store-2/snap")).expect("reopen snap dir 2");
    let store = {
        let _guard = rt.enter();
        Store::start(
            2,
            Config::for_tests(),
            engine,
            snaps.clone(),
            Arc::new(NoNetwork),
            Arc::new(NoScheduler),
            &test_logger("a_snapshot_apply_interrupted_by_a_crash_is_finished_on_restart"),
        )
        .expect("start store 2")
    };
    assert!(store.router().has_region(1), "the peer started");
    let engine = store.engine().clone();
    for i in 0..30u32 {
        assert_eq!(
            engine
                .get_cf(CF_DEFAULT, &keys::data_key(format!("key{i:02}").as_bytes()))
                .unwrap(),
            Some(format!("value{i}").into_bytes())
        );
        assert_eq!(
            engine
                .get_cf(CF_WRITE, &keys::data_key(format!("key{i:02}").as_bytes()))
                .unwrap(),
            Some(b"w".to_vec())
        );
    }
    assert_eq!(
        engine
            .get_cf(CF_DEFAULT, &keys::data_key(b"stale"))
            .unwrap(),
        None
    );
    let state = engine
        .get_msg_cf::<RegionLocalState>(CF_DEFAULT, &keys::region_state_key(1))
        .unwrap();
    assert_eq!(state, Some(region_state(PeerState::Normal)));
    assert!(
        snaps.list().unwrap().is_empty(),
        "the received files are deleted once applied"
    );
    drop(engine);
    rt.block_on(store.stop());
}

/// A peer that never sends snapshots (the crashed store below only
/// receives one).
struct NoSnapshots;

impl SnapshotSource for NoSnapshots {
    fn snapshot(&self, _: &metapb::Region, _: u64) -> raft::Result<kvproto::eraftpb::Snapshot> {
        Err(StorageError::SnapshotTemporarilyUnavailable.into())
    }
}

/// The crash, once splits exist: store 2's peer of region 1 still has the
/// region's old range ["", ""), and receives a snapshot of region 1 after a
/// split, ["", "m"). `PeerStorage` persists the snapshot as a `Ready`
/// carrying it would be, and the store stops before anything is applied.
/// Restarted, it finishes the apply and clears the whole old range: no key
/// of ["m", "") survives, in any data CF, and the redo record is gone.
#[test]
fn an_interrupted_apply_that_shrinks_the_range_clears_the_old_range_on_restart() {
    let name = "an_interrupted_apply_that_shrinks_the_range_clears_the_old_range_on_restart";
    let dir = tempfile::tempdir().expect("temp dir");
    let (index, term) = (20, 6);
    let peers = vec![
        metapb::Peer { id: 1, store_id: 1 },
        metapb::Peer { id: 2, store_id: 2 },
    ];
    let old_region = metapb::Region {
        id: 1,
        start_key: Vec::new(),
        end_key: Vec::new(),
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version: 1,
        }),
        peers: peers.clone(),
    };
    let new_region = metapb::Region {
        end_key: b"m".to_vec(),
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version: 2,
        }),
        ..old_region.clone()
    };

    // Store 1 generates a snapshot of the split region.
    let leader = Engine::open(dir.path().join("store-1/db")).expect("open engine 1");
    let leader_snaps = SnapManager::open(dir.path().join("store-1/snap")).expect("snap dir 1");
    let mut wb = leader.write_batch();
    wb.put_msg_cf(
        CF_DEFAULT,
        &keys::region_state_key(1),
        &RegionLocalState {
            state: PeerState::Normal as i32,
            region: Some(new_region.clone()),
        },
    )
    .unwrap();
    wb.put_msg_cf(
        CF_DEFAULT,
        &keys::apply_state_key(1),
        &RaftApplyState {
            applied_index: index,
            truncated_state: Some(RaftTruncatedState { index, term }),
            session_clock_ms: 0,
        },
    )
    .unwrap();
    for i in 0..10u32 {
        let key = keys::data_key(format!("k{i}").as_bytes());
        wb.put_cf(CF_DEFAULT, &key, b"new").unwrap();
        wb.put_cf(CF_WRITE, &key, b"new").unwrap();
    }
    leader.write(wb, true).unwrap();
    let snapshot = generate_snapshot(&leader_snaps, &leader.snapshot(), 1).expect("generate");

    // Store 2 has the old range's data, on both sides of the split key ...
    let engine = Engine::open(dir.path().join("store-2/db")).expect("open engine 2");
    let snaps = SnapManager::open(dir.path().join("store-2/snap")).expect("snap dir 2");
    bootstrap_store(&engine, 1, 2).unwrap();
    write_initial_region(&engine, &old_region).unwrap();
    let old_keys: [(&str, &[u8]); 5] = [
        (CF_DEFAULT, b"a-old"),
        (CF_DEFAULT, b"x-old"),
        (CF_WRITE, b"y-old"),
        (CF_LOCK, b"n-old"),
        (CF_DEFAULT, b"\xff\xff"),
    ];
    for (cf, key) in old_keys {
        engine.put_cf(cf, &keys::data_key(key), b"old").unwrap();
    }
    // ... receives the snapshot's files ...
    let msg = RaftMessage {
        region_id: 1,
        from_peer: Some(peers[0]),
        to_peer: Some(peers[1]),
        message: Some(Message {
            msg_type: MessageType::MsgSnapshot as i32,
            from: 1,
            to: 2,
            term,
            snapshot: Some(snapshot.clone()),
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut chunks = ChunkEncoder::new(&leader_snaps, msg).expect("encode");
    let mut receiver = SnapshotReceiver::new(&snaps, chunks.next().unwrap().unwrap()).unwrap();
    for chunk in chunks {
        receiver.feed(chunk.unwrap()).unwrap();
    }
    receiver.finish().expect("receive");
    // ... persists the snapshot as its peer would, and crashes.
    let logger = test_logger(name);
    let storage = PeerStorage::new(
        engine.clone(),
        old_region.clone(),
        Box::new(NoSnapshots),
        &logger,
    )
    .expect("load peer storage");
    let ready = Ready {
        hard_state: Some(HardState {
            term,
            vote: 0,
            commit: index,
        }),
        snapshot: Some(snapshot),
        ..Default::default()
    };
    let mut wb = engine.write_batch();
    storage
        .prepare_persist(&ready, &mut wb)
        .expect("prepare persist");
    engine.write(wb, true).unwrap();
    drop(storage);
    drop(engine);
    drop(snaps);

    // Restart.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let engine = Engine::open(dir.path().join("store-2/db")).expect("reopen engine 2");
    let snaps = SnapManager::open(dir.path().join("store-2/snap")).expect("reopen snap dir 2");
    let store = {
        let _guard = rt.enter();
        Store::start(
            2,
            Config::for_tests(),
            engine,
            snaps.clone(),
            Arc::new(NoNetwork),
            Arc::new(NoScheduler),
            &logger,
        )
        .expect("start store 2")
    };
    assert!(store.router().has_region(1), "the peer started");
    let engine = store.engine().clone();
    for cf in [CF_DEFAULT, CF_LOCK, CF_WRITE] {
        let mut left = Vec::new();
        engine
            .scan_cf(cf, keys::DATA_MIN_KEY, keys::DATA_MAX_KEY, |k, v| {
                left.push((k.escape_ascii().to_string(), v.to_vec()));
                Ok(true)
            })
            .unwrap();
        let expected: Vec<_> = if cf == CF_LOCK {
            Vec::new()
        } else {
            (0..10u32)
                .map(|i| (format!("zk{i}"), b"new".to_vec()))
                .collect()
        };
        assert_eq!(left, expected, "cf {cf}: only the snapshot's data is left");
    }
    let state = engine
        .get_msg_cf::<RegionLocalState>(CF_DEFAULT, &keys::region_state_key(1))
        .unwrap();
    assert_eq!(
        state,
        Some(RegionLocalState {
            state: PeerState::Normal as i32,
            region: Some(new_region),
        })
    );
    assert_eq!(
        engine
            .get_cf(CF_DEFAULT, &keys::snapshot_previous_region_key(1))
            .unwrap(),
        None,
        "the redo record is deleted with the apply"
    );
    assert!(snaps.list().unwrap().is_empty());
    drop(engine);
    rt.block_on(store.stop());
}

/// Store 3 loses its disk. Its peer comes back empty, created by the first
/// message of a leader that knows nothing of it (after a leader change), and
/// is initialized by a snapshot: region, members and data.
#[test]
fn an_empty_peer_is_initialized_by_snapshot() {
    let cluster = Cluster::new(
        3,
        new_snapshot_config(),
        "an_empty_peer_is_initialized_by_snapshot",
    );
    cluster.start();
    for i in 0..30u32 {
        let key = format!("k{i:03}");
        cluster.must_put(key.as_bytes(), format!("v{i:03}").as_bytes());
    }
    cluster.stop_store(3);
    cluster.wipe_store(3);
    cluster.start_store(3);
    assert_eq!(cluster.apply_state(3, FIRST_REGION_ID), None);
    // A leader that has not heard from peer 3 yet starts from "knows
    // nothing": its first heartbeat creates the peer. Hand leadership to 1
    // then 2, so at least one of them is a new leader.
    for to in [1, 2] {
        let transfer = RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: FIRST_REGION_ID,
                ..Default::default()
            }),
            admin_request: Some(AdminRequest {
                cmd_type: AdminCmdType::TransferLeader as i32,
                transfer_leader: Some(TransferLeaderRequest {
                    peer: Some(metapb::Peer {
                        id: to,
                        store_id: to,
                    }),
                }),
                ..Default::default()
            }),
            requests: Vec::new(),
        };
        cluster
            .call_command_on_leader(transfer, Duration::from_secs(10))
            .expect("transfer leader answered");
        cluster.must_put(format!("after-transfer-{to}").as_bytes(), b"x");
    }
    for i in 0..30u32 {
        let key = format!("k{i:03}");
        cluster.must_get_equal_on_store(
            3,
            key.as_bytes(),
            format!("v{i:03}").as_bytes(),
            Duration::from_secs(30),
        );
    }
    let state = cluster
        .apply_state(3, FIRST_REGION_ID)
        .expect("apply state");
    assert!(state.applied_index > 0, "{state:?}");
    cluster.must_put(b"after", b"init");
    cluster.must_get_equal_on_store(3, b"after", b"init", Duration::from_secs(10));
}
