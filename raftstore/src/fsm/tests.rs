//! The actors' lifecycle against a real one-region store: a peer that
//! panics is recreated from its persisted state or stays down, nothing it
//! held is left unanswered, and the store's mailbox is bounded.

use std::sync::Arc;
use std::time::Duration;

use kvproto::eraftpb::{Message as RaftMsg, MessageType};
use kvproto::metapb;
use kvproto::raft_cmdpb::{
    CmdType, GetRequest, PutRequest, RaftCmdRequest, RaftRequestHeader, Request,
};
use kvproto::raft_serverpb::{PeerState, RaftMessage};
use router::{
    Callback, CmdResponse, PeerMsg, PeerTick, RaftCommand, RouterError, StoreMsg, StoreTick,
};
use slog::{Logger, o};
use storage::Engine;
use tempfile::TempDir;
use tokio::time::Instant;

use crate::bootstrap::{bootstrap_store, new_first_region, write_initial_region};
use crate::peer_storage::write_region_state;
use crate::transport::TransportError;
use crate::{Config, SnapManager, Store, Transport};

const REGION: u64 = 1;
const TIMEOUT: Duration = Duration::from_secs(20);

struct NoNetwork;

impl Transport for NoNetwork {
    fn send(&self, _: RaftMessage) -> Result<(), TransportError> {
        Err(TransportError::Dropped)
    }

    fn send_snapshot(&self, _: RaftMessage) -> Result<(), TransportError> {
        Err(TransportError::Dropped)
    }
}

/// Store 1 with region 1, whose only peer (1) is on it.
fn new_test_store(cfg: Config) -> (TempDir, Store, metapb::Region) {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = Engine::open(dir.path().join("db")).expect("open engine");
    bootstrap_store(&engine, 1, 1).expect("bootstrap store");
    let region = new_first_region(REGION, vec![metapb::Peer { id: 1, store_id: 1 }]);
    write_initial_region(&engine, &region).expect("write region");
    let logger = Logger::root(slog::Discard, o!());
    let snap_mgr = SnapManager::open(dir.path().join("snap")).expect("snap dir");
    let store = Store::start(
        1,
        cfg,
        engine,
        snap_mgr,
        Arc::new(NoNetwork),
        Arc::new(crate::NoScheduler),
        &logger,
    )
    .expect("start store");
    (dir, store, region)
}

fn command(
    region: &metapb::Region,
    request: Request,
) -> (Box<RaftCommand>, router::CallbackReceiver) {
    let (callback, rx) = Callback::new();
    let request = RaftCmdRequest {
        header: Some(RaftRequestHeader {
            region_id: region.id,
            peer: Some(metapb::Peer { id: 1, store_id: 1 }),
            region_epoch: region.region_epoch,
            ..Default::default()
        }),
        requests: vec![request],
        admin_request: None,
    };
    (Box::new(RaftCommand { request, callback }), rx)
}

fn put(key: &[u8], value: &[u8]) -> Request {
    Request {
        cmd_type: CmdType::Put as i32,
        put: Some(PutRequest {
            cf: String::new(),
            key: key.to_vec(),
            value: value.to_vec(),
        }),
        ..Default::default()
    }
}

fn get(key: &[u8]) -> Request {
    Request {
        cmd_type: CmdType::Get as i32,
        get: Some(GetRequest {
            cf: String::new(),
            key: key.to_vec(),
        }),
        ..Default::default()
    }
}

/// Runs `request` on region 1 until it succeeds (the peer may not lead
/// yet); panics at the deadline with the last answer.
async fn must_run(store: &Store, region: &metapb::Region, request: Request) -> CmdResponse {
    let deadline = Instant::now() + TIMEOUT;
    let mut last = None;
    while Instant::now() < deadline {
        let (cmd, rx) = command(region, request.clone());
        match store.router().send_command(REGION, cmd) {
            Ok(()) => match rx.await {
                Ok(resp) if resp.region_error().is_none() => return resp,
                Ok(resp) => last = Some(format!("{:?}", resp.region_error())),
                Err(_) => last = Some("callback dropped".into()),
            },
            Err(e) => last = Some(e.to_string()),
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("request on region {REGION} did not succeed; last answer: {last:?}");
}

/// Waits until `cond` holds; panics at the deadline naming `what`.
async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Makes region 1's peer panic on its next message, and sends it one (its
/// ticker may get there first: then this one is handed back).
fn inject_panic(store: &Store) {
    store.context().test_hooks.panic_next(REGION);
    let _ = store
        .router()
        .send(REGION, PeerMsg::Tick(PeerTick::SchedulerHeartbeat));
}

/// Returns once the store actor has handled everything sent to it so far.
async fn flush_store(store: &Store) {
    store
        .store_actor()
        .ask(StoreMsg::Tick(StoreTick::SnapshotGc))
        .await
        .expect("the store actor runs");
}

fn whole_range_region() -> metapb::Region {
    metapb::Region {
        id: 99,
        ..Default::default()
    }
}

/// A panicking peer used to leave its dead entry in the router and its store
/// uninformed: the region was dead on the store until it restarted. Now the
/// store recreates it from its persisted state, and the data is there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicked_peer_is_recreated_from_its_persisted_state() {
    let (_dir, store, region) = new_test_store(Config::for_tests());
    must_run(&store, &region, put(b"k", b"v")).await;
    let router = store.router();
    let old = router.incarnation(REGION).expect("registered");
    inject_panic(&store);
    wait_until("a new incarnation of the peer runs", || {
        router.has_region(REGION) && router.incarnation(REGION) != Some(old)
    })
    .await;
    let resp = must_run(&store, &region, get(b"k")).await;
    let value = resp.response.responses[0]
        .get
        .clone()
        .unwrap_or_default()
        .value;
    assert_eq!(value, b"v");
    store.stop().await;
}

/// Commands queued behind the message a peer panicked on are answered
/// `RegionNotFound` (never proposed, so safe to retry), not dropped.
#[tokio::test]
async fn commands_queued_behind_a_panic_are_answered_region_not_found() {
    let (_dir, store, region) = new_test_store(Config::for_tests());
    // Past its start-up: kameo holds what arrives before in a buffer of
    // its own, which a panic discards.
    must_run(&store, &region, put(b"k", b"v")).await;
    // Nothing runs between these on a current-thread runtime: the command
    // is queued behind the message the peer panics on.
    inject_panic(&store);
    let (cmd, rx) = command(&region, put(b"k", b"v"));
    store
        .router()
        .send_command(REGION, cmd)
        .expect("the peer still runs");
    let resp = tokio::time::timeout(TIMEOUT, rx)
        .await
        .expect("answered in time")
        .expect("answered");
    assert!(
        resp.region_error()
            .is_some_and(|e| e.region_not_found.is_some()),
        "expected RegionNotFound, got {:?}",
        resp.region_error()
    );
    store.stop().await;
}

/// A peer that stops abnormally over a tombstone stays dead: the store does
/// not recreate it, and its range is free for another region.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_peer_over_a_tombstone_stays_down() {
    let (_dir, store, region) = new_test_store(Config::for_tests());
    let router = store.router();
    let engine = store.engine().clone();
    let mut wb = engine.write_batch();
    write_region_state(&mut wb, &region, PeerState::Tombstone).expect("encode state");
    engine.write(wb, true).expect("write tombstone");
    assert!(
        store
            .context()
            .store_meta()
            .overlapping(&whole_range_region())
            .is_some()
    );
    inject_panic(&store);
    // The entry goes after the store was told (`on_stop`).
    wait_until("the peer left the router", || {
        router.incarnation(REGION).is_none()
    })
    .await;
    flush_store(&store).await;
    assert!(!router.has_region(REGION), "a tombstoned peer stays down");
    assert!(
        store
            .context()
            .store_meta()
            .overlapping(&whole_range_region())
            .is_none(),
        "its range is free"
    );
    store.stop().await;
}

/// A peer that keeps failing is recreated a bounded number of times, then
/// left down; raft traffic for it does not bring it back either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_that_keeps_failing_is_left_down() {
    let (_dir, store, _region) = new_test_store(Config::for_tests());
    let router = store.router();
    for _ in 0..super::store::MAX_RESTARTS {
        let old = router.incarnation(REGION).expect("registered");
        inject_panic(&store);
        wait_until("a new incarnation of the peer runs", || {
            router.has_region(REGION) && router.incarnation(REGION) != Some(old)
        })
        .await;
    }
    inject_panic(&store);
    wait_until("the peer left the router", || {
        router.incarnation(REGION).is_none()
    })
    .await;
    flush_store(&store).await;
    assert!(!router.has_region(REGION));
    router
        .send_raft_message(Box::new(raft_message(REGION, MessageType::MsgHeartbeat)))
        .expect("taken by the store");
    flush_store(&store).await;
    assert!(!router.has_region(REGION), "not brought back by a message");
    store.stop().await;
}

fn raft_message(region_id: u64, msg_type: MessageType) -> RaftMessage {
    RaftMessage {
        region_id,
        from_peer: Some(metapb::Peer { id: 2, store_id: 2 }),
        to_peer: Some(metapb::Peer { id: 1, store_id: 1 }),
        message: Some(RaftMsg {
            msg_type: msg_type as i32,
            from: 2,
            to: 1,
            term: 6,
            commit: 7,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Raft messages for regions the store lacks are bounded: the store actor
/// takes them off its count as it handles them, so past the limit they are
/// dropped only until it catches up.
#[tokio::test]
async fn the_store_bounds_raft_messages_for_regions_it_lacks() {
    let mut cfg = Config::for_tests();
    cfg.mailbox_limit = 4;
    let (_dir, store, _region) = new_test_store(cfg);
    let router = store.router();
    // Nothing runs between these on a current-thread runtime.
    for i in 0..4 {
        router
            .send_raft_message(Box::new(raft_message(50 + i, MessageType::MsgHeartbeat)))
            .expect("under the limit");
    }
    assert!(matches!(
        router.send_raft_message(Box::new(raft_message(60, MessageType::MsgHeartbeat))),
        Err(RouterError::Full(60, _))
    ));
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match router.send_raft_message(Box::new(raft_message(61, MessageType::MsgHeartbeat))) {
            Ok(()) => break,
            Err(RouterError::Full(..)) => {
                assert!(
                    Instant::now() < deadline,
                    "the store never took its messages off its count"
                );
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Err(e) => panic!("unexpected refusal: {e}"),
        }
    }
    store.stop().await;
}

/// `stop` returns only once every actor's state is gone: the engine can be
/// opened again at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_releases_the_engine() {
    let (dir, store, region) = new_test_store(Config::for_tests());
    must_run(&store, &region, put(b"k", b"v")).await;
    store.stop().await;
    Engine::open(dir.path().join("db")).expect("the engine is closed after stop");
}

/// Waits for region `region_id`'s persisted state until `cond` holds.
async fn wait_region_state(
    store: &Store,
    region_id: u64,
    what: &str,
    cond: impl Fn(&kvproto::raft_serverpb::RegionLocalState) -> bool,
) -> kvproto::raft_serverpb::RegionLocalState {
    let engine = store.engine().clone();
    let read = || {
        engine
            .get_msg_cf::<kvproto::raft_serverpb::RegionLocalState>(
                storage::CF_DEFAULT,
                &storage::keys::region_state_key(region_id),
            )
            .expect("read region state")
    };
    wait_until(what, || read().is_some_and(|s| cond(&s))).await;
    read().expect("present")
}

fn split_ids(key: &[u8], epoch: metapb::RegionEpoch, region_id: u64, peer_id: u64) -> PeerMsg {
    PeerMsg::SplitIds(Box::new(router::SplitIds {
        split_key: key.to_vec(),
        epoch,
        new_region_id: region_id,
        new_peer_ids: vec![peer_id],
    }))
}

/// A split the leader proposes applies on its single-member region: the
/// old region keeps the left half, a peer of the new region starts on the
/// store and leads at once, and each region serves only its own keys. Ids
/// for a split of the old epoch are not used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_applies_and_a_stale_one_is_not_proposed() {
    let (_dir, store, region) = new_test_store(Config::for_tests());
    for key in [&b"a"[..], b"c", b"m", b"x"] {
        must_run(&store, &region, put(key, key)).await;
    }
    let router = store.router();
    let epoch = region.region_epoch.expect("epoch");
    router
        .send(REGION, split_ids(b"m", epoch, 10, 11))
        .expect("the peer runs");
    let left = wait_region_state(&store, REGION, "region 1 splits", |s| {
        s.region.as_ref().is_some_and(|r| r.end_key == b"m")
    })
    .await
    .region
    .expect("region");
    assert_eq!(
        left.region_epoch.map(|e| e.version),
        Some(epoch.version + 1)
    );
    let right = wait_region_state(&store, 10, "region 10 exists", |_| true)
        .await
        .region
        .expect("region");
    assert_eq!(
        (&right.start_key[..], &right.end_key[..]),
        (&b"m"[..], &b""[..])
    );
    assert_eq!(
        right.peers,
        vec![metapb::Peer {
            id: 11,
            store_id: 1
        }]
    );
    wait_until("the new region's peer runs", || router.has_region(10)).await;

    // The new region serves its keys; the old one refuses them.
    let deadline = Instant::now() + TIMEOUT;
    let value = loop {
        let (cmd, rx) = command(&right, get(b"x"));
        let cmd = {
            let mut cmd = cmd;
            if let Some(h) = cmd.request.header.as_mut() {
                h.peer = Some(metapb::Peer {
                    id: 11,
                    store_id: 1,
                });
            }
            cmd
        };
        router.send_command(10, cmd).expect("region 10 runs");
        let resp = rx.await.expect("answered");
        if resp.region_error().is_none() {
            break resp.response.responses[0]
                .get
                .clone()
                .unwrap_or_default()
                .value;
        }
        assert!(
            Instant::now() < deadline,
            "region 10 never served: {:?}",
            resp.region_error()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(value, b"x");
    let (cmd, rx) = command(&left, get(b"x"));
    router.send_command(REGION, cmd).expect("region 1 runs");
    let error = rx.await.expect("answered").region_error().cloned();
    assert!(
        error
            .as_ref()
            .is_some_and(|e| e.key_not_in_region.is_some()),
        "{error:?}"
    );
    // The pre-split epoch: EpochNotMatch naming both halves.
    let (cmd, rx) = command(&region, get(b"a"));
    router.send_command(REGION, cmd).expect("region 1 runs");
    let error = rx.await.expect("answered").region_error().cloned();
    let regions: Vec<u64> = error
        .as_ref()
        .and_then(|e| e.epoch_not_match.as_ref())
        .map(|e| e.current_regions.iter().map(|r| r.id).collect())
        .unwrap_or_else(|| panic!("want EpochNotMatch, got {error:?}"));
    assert_eq!(regions, vec![REGION, 10]);

    // Ids asked for the old epoch: dropped, nothing is proposed.
    router
        .send(REGION, split_ids(b"c", epoch, 20, 21))
        .expect("the peer runs");
    must_run(&store, &left, get(b"a")).await;
    let state = wait_region_state(&store, REGION, "region 1 is read", |_| true).await;
    assert_eq!(state.region.map(|r| r.end_key), Some(b"m".to_vec()));
    let twenty = store
        .engine()
        .get_msg_cf::<kvproto::raft_serverpb::RegionLocalState>(
            storage::CF_DEFAULT,
            &storage::keys::region_state_key(20),
        )
        .expect("read");
    assert!(twenty.is_none(), "the stale split was applied: {twenty:?}");
    assert!(!router.has_region(20));
    store.stop().await;
}

/// A store lacking a region does not create a peer for a message whose
/// range it still serves under another region: that is a region split off
/// one here, whose split this store has not applied yet.
#[tokio::test]
async fn no_peer_is_created_for_a_range_another_region_serves() {
    let (_dir, store, _region) = new_test_store(Config::for_tests());
    let mut msg = raft_message(70, MessageType::MsgRequestVote);
    msg.start_key = b"m".to_vec();
    store
        .router()
        .send_raft_message(Box::new(msg))
        .expect("under the limit");
    flush_store(&store).await;
    assert!(!store.router().has_region(70));
    store.stop().await;
}

/// A peer of the new region that a message created here before the split
/// applied (uninitialized, with a vote cast in term 7) is initialized in
/// place by the split: the same router entry, the region's split state,
/// and the term it voted in kept, so it campaigns in term 8, not 6.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_initializes_a_waiting_peer_and_keeps_its_vote() {
    let (_dir, store, region) = new_test_store(Config::for_tests());
    must_run(&store, &region, put(b"x", b"x")).await;
    let router = store.router();
    let engine = store.engine().clone();
    let raft_state = |region_id| {
        engine
            .get_msg_cf::<kvproto::raft_serverpb::RaftLocalState>(
                storage::CF_RAFT,
                &storage::keys::raft_state_key(region_id),
            )
            .expect("read raft state")
            .and_then(|s| s.hard_state)
            .unwrap_or_default()
    };
    // Region 1 no longer in the store meta: the store takes the range as
    // free, as it would if region 1's peer here were uninitialized.
    store.context().store_meta().remove(REGION);
    let vote = RaftMessage {
        region_id: 10,
        from_peer: Some(metapb::Peer {
            id: 12,
            store_id: 2,
        }),
        to_peer: Some(metapb::Peer {
            id: 11,
            store_id: 1,
        }),
        message: Some(RaftMsg {
            msg_type: MessageType::MsgRequestVote as i32,
            from: 12,
            to: 11,
            term: 7,
            log_term: 5,
            index: 5,
            ..Default::default()
        }),
        start_key: b"m".to_vec(),
        ..Default::default()
    };
    router
        .send_raft_message(Box::new(vote))
        .expect("under the limit");
    wait_until("the waiting peer votes", || raft_state(10).vote == 12).await;
    let waiting = router.incarnation(10).expect("a peer of region 10 runs");
    store.context().store_meta().set_region(&region);

    router
        .send(
            REGION,
            split_ids(b"m", region.region_epoch.expect("epoch"), 10, 11),
        )
        .expect("the peer runs");
    let right = wait_region_state(&store, 10, "region 10 is split off", |_| true)
        .await
        .region
        .expect("region");
    assert_eq!(
        right.peers,
        vec![metapb::Peer {
            id: 11,
            store_id: 1
        }]
    );
    // The split's campaign, from the kept term.
    wait_until("the split-born peer campaigns in term 8", || {
        raft_state(10).term == 8 && raft_state(10).vote == 11
    })
    .await;
    assert_eq!(
        router.incarnation(10),
        Some(waiting),
        "replaced, not initialized in place"
    );
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let (mut cmd, rx) = command(&right, get(b"x"));
        if let Some(h) = cmd.request.header.as_mut() {
            h.peer = Some(metapb::Peer {
                id: 11,
                store_id: 1,
            });
        }
        router.send_command(10, cmd).expect("region 10 runs");
        let resp = rx.await.expect("answered");
        if resp.region_error().is_none() {
            assert_eq!(
                resp.response.responses[0]
                    .get
                    .clone()
                    .unwrap_or_default()
                    .value,
                b"x"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "region 10 never served: {:?}",
            resp.region_error()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    store.stop().await;
}

/// A message for a region this store holds a tombstone of creates a peer
/// only if its epoch is newer in membership and not older in range: one
/// from before a split (a lower version) is stale however its conf_ver
/// reads.
#[tokio::test]
async fn a_stale_epoch_does_not_revive_a_tombstoned_region() {
    let (_dir, store, _region) = new_test_store(Config::for_tests());
    let tombstoned = metapb::Region {
        id: 30,
        start_key: b"m".to_vec(),
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 2,
            version: 3,
        }),
        peers: vec![metapb::Peer { id: 1, store_id: 1 }],
        ..Default::default()
    };
    let mut wb = store.engine().write_batch();
    write_region_state(&mut wb, &tombstoned, PeerState::Tombstone).expect("encode");
    store.engine().write(wb, true).expect("write");
    // Region 1's range is taken as free, so only the epoch decides.
    store.context().store_meta().remove(REGION);
    let vote = |conf_ver, version| {
        let mut msg = raft_message(30, MessageType::MsgRequestVote);
        msg.region_epoch = Some(metapb::RegionEpoch { conf_ver, version });
        msg.start_key = b"m".to_vec();
        Box::new(msg)
    };
    let router = store.router();
    router
        .send_raft_message(vote(3, 2))
        .expect("under the limit");
    flush_store(&store).await;
    assert!(!router.has_region(30), "an older range revived the region");
    router
        .send_raft_message(vote(3, 3))
        .expect("under the limit");
    flush_store(&store).await;
    assert!(router.has_region(30), "a newer membership is a new peer");
    store.stop().await;
}
