//! Unit tests of `MemoryScheduler` (kept apart: the module and its tests
//! together passed 1,500 lines).

use std::collections::HashSet;
use std::sync::Mutex;
use std::thread;

use kvproto::eraftpb::ConfChangeType;
use kvproto::metapb::RegionEpoch;

use super::*;

fn new_test_logger() -> Logger {
    Logger::root(slog::Discard, o!())
}

fn new_test_store(id: u64) -> Store {
    Store {
        id,
        address: format!("127.0.0.1:{}", 20160 + id),
        state: StoreState::Up as i32,
    }
}

fn new_test_peer(id: u64, store_id: u64) -> Peer {
    Peer { id, store_id }
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

/// The first region, `["", "")` at epoch (version 1, conf_ver 1), with
/// peer i on store i for the given stores.
fn new_test_first_region(store_ids: &[u64]) -> Region {
    let peers = store_ids
        .iter()
        .map(|&s| new_test_peer(s, s))
        .collect::<Vec<_>>();
    new_test_region(1, (b"", b""), (1, 1), &peers)
}

/// A scheduler bootstrapped with store 1 and the first region, stores
/// `1..=stores` put, and a handler per store recording responses.
struct TestCluster {
    scheduler: Arc<MemoryScheduler>,
    responses: Arc<Mutex<Vec<(u64, RegionHeartbeatResponse)>>>,
}

fn new_test_cluster(stores: u64) -> TestCluster {
    let scheduler = Arc::new(MemoryScheduler::new(7, &new_test_logger()));
    let store_ids = (1..=stores).collect::<Vec<_>>();
    scheduler
        .bootstrap(new_test_store(1), new_test_first_region(&store_ids))
        .unwrap();
    let responses = Arc::new(Mutex::new(Vec::new()));
    for id in store_ids {
        scheduler.put_store(new_test_store(id)).unwrap();
        let responses = Arc::clone(&responses);
        scheduler.set_region_heartbeat_response_handler(
            id,
            Box::new(move |resp| responses.lock().unwrap().push((id, resp))),
        );
    }
    TestCluster {
        scheduler,
        responses,
    }
}

impl TestCluster {
    fn take_responses(&self) -> Vec<(u64, RegionHeartbeatResponse)> {
        std::mem::take(&mut *self.responses.lock().unwrap())
    }

    fn must_heartbeat(
        &self,
        region: &Region,
        leader: Peer,
        pending: &[Peer],
    ) -> RegionHeartbeatResponse {
        self.scheduler
            .region_heartbeat(RegionHeartbeatRequest {
                region: Some(region.clone()),
                leader: Some(leader),
                pending_peers: pending.to_vec(),
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("heartbeat of {region:?} refused: {e}"));
        let mut responses = self.take_responses();
        assert_eq!(
            responses.len(),
            1,
            "one response per heartbeat: {responses:?}"
        );
        let (store_id, response) = responses.pop().unwrap();
        assert_eq!(
            store_id, leader.store_id,
            "response goes to the leader's store"
        );
        response
    }

    fn region_by_id(&self, region_id: u64) -> Option<(Region, Option<Peer>)> {
        self.scheduler.get_region_by_id(region_id).unwrap()
    }
}

fn new_test_heartbeat(region: &Region, leader: Peer) -> RegionHeartbeatRequest {
    RegionHeartbeatRequest {
        region: Some(region.clone()),
        leader: Some(leader),
        ..Default::default()
    }
}

#[test]
fn test_bootstrap_once() {
    let scheduler = MemoryScheduler::new(7, &new_test_logger());
    assert_eq!(scheduler.cluster_id(), 7);
    assert!(!scheduler.is_bootstrapped().unwrap());
    assert_eq!(scheduler.get_store(1), Err(Error::NotBootstrapped));
    assert_eq!(
        scheduler.put_store(new_test_store(1)),
        Err(Error::NotBootstrapped)
    );
    assert_eq!(scheduler.get_region(b""), Err(Error::NotBootstrapped));

    let first = new_test_first_region(&[1, 2, 3]);
    scheduler
        .bootstrap(new_test_store(1), first.clone())
        .unwrap();
    assert!(scheduler.is_bootstrapped().unwrap());
    assert_eq!(
        scheduler.bootstrap(new_test_store(2), new_test_first_region(&[2])),
        Err(Error::AlreadyBootstrapped)
    );
    // The first call's store and region stand; the second changed nothing.
    assert_eq!(scheduler.get_all_stores().unwrap(), vec![new_test_store(1)]);
    assert_eq!(scheduler.get_region(b"any").unwrap(), (first, None));
}

#[test]
fn test_bootstrap_refuses_bad_input() {
    let scheduler = MemoryScheduler::new(7, &new_test_logger());
    let first = new_test_first_region(&[1]);
    let mut tombstone = new_test_store(1);
    tombstone.set_state(StoreState::Tombstone);
    for (store, region) in [
        (new_test_store(0), first.clone()),
        (tombstone, first.clone()),
        (
            new_test_store(1),
            Region {
                region_epoch: None,
                ..first.clone()
            },
        ),
    ] {
        let err = scheduler.bootstrap(store, region).unwrap_err();
        assert!(matches!(err, Error::InvalidRequest(_)), "{err}");
    }
    assert!(!scheduler.is_bootstrapped().unwrap());
}

#[test]
fn test_alloc_ids_unique_increasing_and_above_bootstrap() {
    let scheduler = MemoryScheduler::new(7, &new_test_logger());
    // Peer ids 1..=3, store 12 in the bootstrap call: ids start at 13.
    scheduler
        .bootstrap(new_test_store(12), new_test_first_region(&[1, 2, 3]))
        .unwrap();
    let ids = (0..100)
        .map(|_| scheduler.alloc_id().unwrap())
        .collect::<Vec<_>>();
    assert_eq!(ids[0], 13);
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    // A hand-picked store id or added peer id is never handed out later.
    scheduler.put_store(new_test_store(500)).unwrap();
    assert_eq!(scheduler.alloc_id().unwrap(), 501);
    scheduler.add_peer(1, new_test_peer(900, 2));
    assert_eq!(scheduler.alloc_id().unwrap(), 901);
}

#[test]
fn test_huge_client_ids_do_not_move_the_allocator() {
    let cluster = new_test_cluster(2);
    let scheduler = &cluster.scheduler;
    let before = scheduler.alloc_id().unwrap();
    let huge = u64::MAX - 1;
    let err = scheduler
        .put_store(Store {
            id: huge,
            ..new_test_store(3)
        })
        .unwrap_err();
    assert!(matches!(err, Error::InvalidRequest(_)), "{err}");
    for region in [
        new_test_region(huge, (b"", b""), (2, 1), &[new_test_peer(1, 1)]),
        new_test_region(
            1,
            (b"", b""),
            (1, 2),
            &[new_test_peer(1, 1), new_test_peer(huge, 2)],
        ),
    ] {
        let err = scheduler
            .region_heartbeat(new_test_heartbeat(&region, new_test_peer(1, 1)))
            .unwrap_err();
        assert!(matches!(err, Error::InvalidRequest(_)), "{err}");
    }
    assert_eq!(
        cluster.region_by_id(1).unwrap().0,
        new_test_first_region(&[1, 2]),
        "nothing changed"
    );
    assert_eq!(scheduler.alloc_id().unwrap(), before + 1);

    // Ids a heartbeat brings in within bounds are reserved.
    let region = new_test_region(
        1,
        (b"", b""),
        (1, 2),
        &[new_test_peer(1, 1), new_test_peer(before + 50, 2)],
    );
    cluster.must_heartbeat(&region, new_test_peer(1, 1), &[]);
    assert_eq!(scheduler.alloc_id().unwrap(), before + 51);
}

#[test]
fn test_alloc_id_exhaustion_is_an_error() {
    let scheduler = MemoryScheduler::new(7, &new_test_logger());
    scheduler.write().ids = IdAllocator::new(u64::MAX - 2);
    assert_eq!(scheduler.alloc_id(), Ok(u64::MAX - 2));
    assert!(matches!(scheduler.alloc_id(), Err(Error::Other(_))));
    assert!(
        matches!(scheduler.alloc_id(), Err(Error::Other(_))),
        "stays exhausted"
    );
}

#[test]
fn test_alloc_id_concurrently() {
    let scheduler = Arc::new(MemoryScheduler::new(7, &new_test_logger()));
    let threads = (0..4)
        .map(|_| {
            let scheduler = Arc::clone(&scheduler);
            thread::spawn(move || {
                let ids = (0..2000)
                    .map(|_| scheduler.alloc_id().unwrap())
                    .collect::<Vec<_>>();
                assert!(
                    ids.windows(2).all(|w| w[0] < w[1]),
                    "ids increase within a thread"
                );
                ids
            })
        })
        .collect::<Vec<_>>();
    let mut all = HashSet::new();
    for handle in threads {
        for id in handle.join().unwrap() {
            assert!(all.insert(id), "id {id} handed out twice");
        }
    }
    assert_eq!(all.len(), 8000);
}

#[test]
fn test_put_get_store() {
    let cluster = new_test_cluster(3);
    let scheduler = &cluster.scheduler;
    assert_eq!(scheduler.get_store(2).unwrap(), new_test_store(2));
    assert_eq!(scheduler.get_store(9), Err(Error::StoreNotFound(9)));
    let ids = scheduler
        .get_all_stores()
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect::<Vec<_>>();
    assert_eq!(ids, vec![1, 2, 3]);

    // Updating keeps the stats; a tombstone cannot come back.
    let stats = StoreStats {
        store_id: 2,
        capacity: 100,
        ..Default::default()
    };
    scheduler.store_heartbeat(stats.clone()).unwrap();
    let mut moved = new_test_store(2);
    moved.address = "10.0.0.2:20160".to_owned();
    scheduler.put_store(moved.clone()).unwrap();
    assert_eq!(scheduler.get_store(2).unwrap(), moved);
    assert_eq!(scheduler.store_stats(2).unwrap(), Some(stats));
    let mut tombstone = moved;
    tombstone.set_state(StoreState::Tombstone);
    scheduler.put_store(tombstone.clone()).unwrap();
    assert_eq!(
        scheduler.put_store(new_test_store(2)),
        Err(Error::StoreTombstone(2))
    );
    assert_eq!(scheduler.get_store(2).unwrap(), tombstone);
    assert!(matches!(
        scheduler.put_store(new_test_store(0)),
        Err(Error::InvalidRequest(_))
    ));
}

#[test]
fn test_store_heartbeat() {
    let cluster = new_test_cluster(1);
    let scheduler = &cluster.scheduler;
    assert_eq!(scheduler.store_stats(1).unwrap(), None);
    let stats = StoreStats {
        store_id: 1,
        region_count: 4,
        ..Default::default()
    };
    scheduler.store_heartbeat(stats.clone()).unwrap();
    assert_eq!(scheduler.store_stats(1).unwrap(), Some(stats));
    let unknown = StoreStats {
        store_id: 5,
        ..Default::default()
    };
    assert_eq!(
        scheduler.store_heartbeat(unknown),
        Err(Error::StoreNotFound(5))
    );
    assert_eq!(scheduler.store_stats(5), Err(Error::StoreNotFound(5)));
}

#[test]
fn test_region_lookup_boundaries() {
    let cluster = new_test_cluster(1);
    let p = |id| new_test_peer(id, 1);
    // The first region splits into [, b) [b, d) [d, ); then [d, ) is
    // replaced by [f, ) after a (test-made) merge-like change, leaving [d, f) empty.
    cluster.must_heartbeat(&new_test_region(1, (b"", b"b"), (2, 1), &[p(1)]), p(1), &[]);
    cluster.must_heartbeat(
        &new_test_region(2, (b"b", b"d"), (2, 1), &[p(2)]),
        p(2),
        &[],
    );
    cluster.must_heartbeat(&new_test_region(3, (b"d", b""), (2, 1), &[p(3)]), p(3), &[]);
    cluster.must_heartbeat(&new_test_region(4, (b"f", b""), (3, 1), &[p(4)]), p(4), &[]);
    let scheduler = &cluster.scheduler;
    let id_at = |key: &[u8]| scheduler.get_region(key).map(|(r, _)| r.id);
    assert_eq!(id_at(b""), Ok(1));
    assert_eq!(id_at(b"a\xff"), Ok(1));
    assert_eq!(id_at(b"b"), Ok(2), "start key inclusive");
    assert_eq!(
        id_at(b"d"),
        Err(Error::NoRegionForKey { key: b"d".to_vec() }),
        "end key exclusive"
    );
    assert_eq!(id_at(b"f"), Ok(4));
    assert_eq!(id_at(b"\xff\xff"), Ok(4), "empty end key is unbounded");

    let ids = |start: &[u8], end: &[u8], limit| {
        scheduler
            .scan_regions(start, end, limit)
            .unwrap()
            .into_iter()
            .map(|(r, _)| r.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids(b"", b"", 0), vec![1, 2, 4]);
    assert_eq!(ids(b"a", b"", 2), vec![1, 2]);
    assert_eq!(ids(b"c", b"f", 0), vec![2], "end exclusive");
    assert_eq!(ids(b"e", b"g", 0), vec![4]);
    let (_, leader) = &scheduler.scan_regions(b"b", b"c", 0).unwrap()[0];
    assert_eq!(*leader, Some(p(2)));
}

#[test]
fn test_heartbeat_epoch_rules() {
    let cluster = new_test_cluster(3);
    let (p1, p2, p3) = (
        new_test_peer(1, 1),
        new_test_peer(2, 2),
        new_test_peer(3, 3),
    );
    let scheduler = &cluster.scheduler;

    // Split: region 1 [, ) at version 1 becomes 1 [, m) and 2 [m, ) at
    // version 2. Region 2 reports first and drops the old region 1.
    let (n1, n2, n3) = (
        new_test_peer(11, 1),
        new_test_peer(12, 2),
        new_test_peer(13, 3),
    );
    let right = new_test_region(2, (b"m", b""), (2, 1), &[n1, n2, n3]);
    cluster.must_heartbeat(&right, n1, &[]);
    assert_eq!(cluster.region_by_id(1), None, "old region 1 dropped");
    assert!(matches!(
        scheduler.get_region(b"a"),
        Err(Error::NoRegionForKey { .. })
    ));

    // The pre-split region reporting late is stale and gets no response.
    let old = new_test_first_region(&[1, 2, 3]);
    let err = scheduler
        .region_heartbeat(new_test_heartbeat(&old, p1))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::StaleRegion {
                region_id: 1,
                current_id: 2,
                ..
            }
        ),
        "{err}"
    );
    assert!(cluster.take_responses().is_empty());

    let left = new_test_region(1, (b"", b"m"), (2, 1), &[p1, p2, p3]);
    cluster.must_heartbeat(&left, p1, &[]);
    assert_eq!(
        scheduler.get_region(b"a").unwrap(),
        (left.clone(), Some(p1))
    );

    // A conf change (conf_ver 1 -> 2) replaces the peers.
    let shrunk = new_test_region(1, (b"", b"m"), (2, 2), &[p1, p2]);
    cluster.must_heartbeat(&shrunk, p1, &[]);
    assert_eq!(cluster.region_by_id(1).unwrap().0, shrunk);
    // The report from before the conf change is now stale.
    let err = scheduler
        .region_heartbeat(new_test_heartbeat(&left, p1))
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::StaleRegion {
                region_id: 1,
                current_id: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        cluster.region_by_id(1).unwrap().0,
        shrunk,
        "refused heartbeat changed nothing"
    );
}

#[test]
fn test_heartbeat_refuses_bad_input() {
    let cluster = new_test_cluster(2);
    let scheduler = &cluster.scheduler;
    let p1 = new_test_peer(1, 1);
    let region = new_test_first_region(&[1, 2]);
    let cases = [
        RegionHeartbeatRequest {
            leader: Some(p1),
            ..Default::default()
        },
        RegionHeartbeatRequest {
            region: Some(region.clone()),
            ..Default::default()
        },
        new_test_heartbeat(&region, new_test_peer(7, 1)),
        new_test_heartbeat(
            &Region {
                start_key: b"z".to_vec(),
                end_key: b"a".to_vec(),
                ..region.clone()
            },
            p1,
        ),
    ];
    for request in cases {
        let err = scheduler.region_heartbeat(request.clone()).unwrap_err();
        assert!(
            matches!(err, Error::InvalidRequest(_)),
            "{request:?}: {err}"
        );
    }
    // A leader on a store nobody put.
    let region9 = new_test_region(1, (b"", b""), (1, 1), &[p1, new_test_peer(9, 9)]);
    let err = scheduler
        .region_heartbeat(new_test_heartbeat(&region9, new_test_peer(9, 9)))
        .unwrap_err();
    assert_eq!(err, Error::StoreNotFound(9));
    assert!(cluster.take_responses().is_empty());
    assert_eq!(
        cluster.region_by_id(1).unwrap(),
        (region, None),
        "nothing changed"
    );
}

#[test]
fn test_leader_tracking() {
    let cluster = new_test_cluster(3);
    let region = new_test_first_region(&[1, 2, 3]);
    assert_eq!(
        cluster.region_by_id(1).unwrap().1,
        None,
        "no leader before a heartbeat"
    );
    for leader in [new_test_peer(2, 2), new_test_peer(3, 3)] {
        let response = cluster.must_heartbeat(&region, leader, &[]);
        assert_eq!(response.target_peer, Some(leader));
        assert_eq!(response.region_id, 1);
        assert_eq!(response.region_epoch, region.region_epoch);
        assert_eq!(response.header.unwrap().cluster_id, 7);
        assert_eq!(cluster.region_by_id(1).unwrap().1, Some(leader));
        assert_eq!(cluster.scheduler.get_region(b"k").unwrap().1, Some(leader));
    }
    // A region dropped for a newer one takes its leader with it.
    let newer = new_test_region(5, (b"", b""), (2, 1), &[new_test_peer(50, 1)]);
    cluster.must_heartbeat(&newer, new_test_peer(50, 1), &[]);
    assert_eq!(cluster.region_by_id(1), None);
    assert_eq!(
        cluster.region_by_id(5).unwrap().1,
        Some(new_test_peer(50, 1))
    );
}

#[test]
fn test_add_peer_operator() {
    // As TinyKV's conf change tests: store 2's first peer was removed, and
    // a new peer (a fresh id) goes back onto store 2.
    let cluster = new_test_cluster(2);
    let (p1, p2) = (new_test_peer(1, 1), new_test_peer(4, 2));
    let scheduler = &cluster.scheduler;
    let mut region = new_test_region(1, (b"", b""), (1, 2), &[p1]);
    cluster.must_heartbeat(&region, p1, &[]);
    scheduler.add_peer(1, p2);

    // Repeated until the conf change shows up in a heartbeat.
    for _ in 0..2 {
        let response = cluster.must_heartbeat(&region, p1, &[]);
        let change = response.change_peer.expect("add peer asked for");
        assert_eq!(
            (change.peer, change.change_type()),
            (Some(p2), ConfChangeType::AddNode)
        );
        assert_eq!(response.transfer_leader, None);
    }
    // Added but still catching up: nothing asked, operator kept.
    region = new_test_region(1, (b"", b""), (1, 3), &[p1, p2]);
    let response = cluster.must_heartbeat(&region, p1, &[p2]);
    assert_eq!(response.change_peer, None);
    assert_eq!(scheduler.operator(1), Some(Operator::AddPeer(p2)));
    // Caught up: done and cleared.
    let response = cluster.must_heartbeat(&region, p1, &[]);
    assert_eq!(response.change_peer, None);
    assert_eq!(scheduler.operator(1), None);
    assert_eq!(cluster.must_heartbeat(&region, p1, &[]).change_peer, None);
}

#[test]
fn test_remove_peer_and_transfer_leader_operators() {
    let cluster = new_test_cluster(3);
    let (p1, p2, p3) = (
        new_test_peer(1, 1),
        new_test_peer(2, 2),
        new_test_peer(3, 3),
    );
    let scheduler = &cluster.scheduler;
    let region = new_test_first_region(&[1, 2, 3]);

    scheduler.transfer_leader(1, p2);
    let response = cluster.must_heartbeat(&region, p1, &[]);
    assert_eq!(response.transfer_leader.and_then(|t| t.peer), Some(p2));
    assert_eq!(response.change_peer, None);
    // The new leader reports: done; the response goes to its store.
    let response = cluster.must_heartbeat(&region, p2, &[]);
    assert_eq!(response.transfer_leader, None);
    assert_eq!(scheduler.operator(1), None);

    // A later operator replaces an unfinished one.
    scheduler.transfer_leader(1, p1);
    scheduler.remove_peer(1, p3);
    let response = cluster.must_heartbeat(&region, p2, &[]);
    assert_eq!(response.transfer_leader, None);
    let change = response.change_peer.expect("remove peer asked for");
    assert_eq!(
        (change.peer, change.change_type()),
        (Some(p3), ConfChangeType::RemoveNode)
    );
    let shrunk = new_test_region(1, (b"", b""), (1, 2), &[p1, p2]);
    let response = cluster.must_heartbeat(&shrunk, p2, &[]);
    assert_eq!(response.change_peer, None);
    assert_eq!(scheduler.operator(1), None);
}

#[test]
fn test_operator_scheduled_before_region_reports() {
    let cluster = new_test_cluster(2);
    let (p1, p2) = (new_test_peer(21, 1), new_test_peer(22, 2));
    cluster.scheduler.transfer_leader(2, p2);
    let region = new_test_region(2, (b"", b""), (2, 1), &[p1, p2]);
    let response = cluster.must_heartbeat(&region, p1, &[]);
    assert_eq!(response.transfer_leader.and_then(|t| t.peer), Some(p2));
}

#[test]
fn test_handler_may_call_back_and_missing_handler_drops() {
    let scheduler = Arc::new(MemoryScheduler::new(7, &new_test_logger()));
    scheduler
        .bootstrap(new_test_store(1), new_test_first_region(&[1]))
        .unwrap();
    let region = new_test_first_region(&[1]);
    // No handler for store 1 yet: the response is dropped, the heartbeat accepted.
    scheduler
        .region_heartbeat(new_test_heartbeat(&region, new_test_peer(1, 1)))
        .unwrap();
    assert_eq!(
        scheduler.get_region_by_id(1).unwrap().unwrap().1,
        Some(new_test_peer(1, 1))
    );

    let seen = Arc::new(Mutex::new(None));
    let (inner, seen_in) = (Arc::clone(&scheduler), Arc::clone(&seen));
    scheduler.set_region_heartbeat_response_handler(
        1,
        Box::new(move |resp| {
            // Re-entering the scheduler must not deadlock.
            let (_, leader) = inner.get_region_by_id(resp.region_id).unwrap().unwrap();
            *seen_in.lock().unwrap() = leader;
        }),
    );
    scheduler
        .region_heartbeat(new_test_heartbeat(&region, new_test_peer(1, 1)))
        .unwrap();
    assert_eq!(*seen.lock().unwrap(), Some(new_test_peer(1, 1)));
}

#[test]
fn test_ask_split() {
    let cluster = new_test_cluster(3);
    let scheduler = &cluster.scheduler;
    let region = new_test_first_region(&[1, 2, 3]);
    let split = scheduler.ask_split(&region).unwrap();
    assert_eq!(split.new_peer_ids.len(), 3);
    let mut ids = split.new_peer_ids.clone();
    ids.push(split.new_region_id);
    assert!(
        ids.iter().all(|&id| id > 3),
        "ids above bootstrap's: {ids:?}"
    );
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        4,
        "ids distinct: {ids:?}"
    );

    assert_eq!(
        scheduler.ask_split(&Region {
            id: 9,
            ..region.clone()
        }),
        Err(Error::RegionNotFound(9))
    );
    let newer = new_test_region(
        1,
        (b"", b""),
        (1, 2),
        &[new_test_peer(1, 1), new_test_peer(2, 2)],
    );
    cluster.must_heartbeat(&newer, new_test_peer(1, 1), &[]);
    let err = scheduler.ask_split(&region).unwrap_err();
    assert!(
        matches!(err, Error::StaleRegion { region_id: 1, .. }),
        "{err}"
    );
}

#[test]
fn test_concurrent_heartbeats_and_lookups() {
    // Stores heartbeat their own regions while a reader looks them up:
    // every lookup sees a consistent map (checked in debug builds on each
    // update) and every heartbeat is answered.
    let cluster = new_test_cluster(4);
    let scheduler = &cluster.scheduler;
    // Split the key space into four regions, one led from each store.
    let regions = (1..=4u64)
        .map(|i| {
            let start = if i == 1 { vec![] } else { vec![b'a' + i as u8] };
            let end = if i == 4 {
                vec![]
            } else {
                vec![b'a' + i as u8 + 1]
            };
            new_test_region(
                i * 10,
                (&start, &end),
                (2, 1),
                &[new_test_peer(i * 10 + 1, i)],
            )
        })
        .collect::<Vec<_>>();
    thread::scope(|s| {
        for region in &regions {
            s.spawn(move || {
                let leader = region.peers[0];
                for _ in 0..200 {
                    // Whichever reports first drops the first region (version
                    // 1); the four do not overlap, so none is ever refused.
                    if let Err(e) = scheduler.region_heartbeat(new_test_heartbeat(region, leader)) {
                        panic!("heartbeat of region {} refused: {e}", region.id);
                    }
                }
            });
        }
        s.spawn(|| {
            for _ in 0..200 {
                let _ = scheduler.scan_regions(b"", b"", 0).unwrap();
                let _ = scheduler.get_region(b"c");
            }
        });
    });
    let ids = scheduler
        .scan_regions(b"", b"", 0)
        .unwrap()
        .into_iter()
        .map(|(r, _)| r.id)
        .collect::<Vec<_>>();
    assert_eq!(ids, vec![10, 20, 30, 40]);
    assert_eq!(cluster.take_responses().len(), 800);
}
