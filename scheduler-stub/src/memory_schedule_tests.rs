//! Tests of scheduling inside `MemoryScheduler`: the replica checker on
//! heartbeats, operator validation and deadlines, store liveness, leader
//! terms, the periodic pass, lock poisoning and answer order.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kvproto::eraftpb::ConfChangeType;
use kvproto::metapb::{Peer, Region, RegionEpoch, Store, StoreState};
use kvproto::schedulerpb::{
    ChangePeer, DownPeer, RegionHeartbeatRequest, RegionHeartbeatResponse, StoreStats,
};
use slog::{Logger, o};

use super::super::MemoryScheduler;
use crate::client::SchedulerClient;
use crate::errors::Error;
use crate::operator::Operator;
use crate::schedule::ScheduleConfig;

const MAX_DOWN: Duration = Duration::from_secs(60);

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

fn peer(id: u64, store_id: u64) -> Peer {
    Peer { id, store_id }
}

fn new_test_region(id: u64, range: (&[u8], &[u8]), conf_ver: u64, peers: &[Peer]) -> Region {
    Region {
        id,
        start_key: range.0.to_vec(),
        end_key: range.1.to_vec(),
        region_epoch: Some(RegionEpoch {
            conf_ver,
            version: 1,
        }),
        peers: peers.to_vec(),
    }
}

/// A scheduler with stores `1..=stores`, no region yet, scheduling as
/// `config` says, and a handler per store recording answers.
struct TestCluster {
    scheduler: Arc<MemoryScheduler>,
    answers: Arc<Mutex<Vec<RegionHeartbeatResponse>>>,
}

fn new_test_cluster(stores: u64, config: ScheduleConfig) -> TestCluster {
    let scheduler =
        Arc::new(MemoryScheduler::new(7, &new_test_logger()).with_schedule_config(config));
    scheduler.bootstrap_store(new_test_store(1)).unwrap();
    {
        // Allocated ids above every hand-picked one in these tests.
        let mut state = scheduler.write();
        state.ids = state.ids.plan_seen([999]).unwrap();
    }
    let answers = Arc::new(Mutex::new(Vec::new()));
    for id in 1..=stores {
        scheduler.put_store(new_test_store(id)).unwrap();
        let answers = Arc::clone(&answers);
        scheduler.set_region_heartbeat_response_handler(
            id,
            Box::new(move |resp| answers.lock().unwrap().push(resp)),
        );
    }
    TestCluster { scheduler, answers }
}

fn enabled() -> ScheduleConfig {
    ScheduleConfig {
        max_store_down_time: MAX_DOWN,
        ..ScheduleConfig::enabled_default()
    }
}

impl TestCluster {
    fn must_heartbeat_with(&self, request: RegionHeartbeatRequest) -> RegionHeartbeatResponse {
        let region_id = request.region.as_ref().map_or(0, |r| r.id);
        self.scheduler
            .region_heartbeat(request)
            .unwrap_or_else(|e| panic!("heartbeat of region {region_id} refused: {e}"));
        let mut answers = std::mem::take(&mut *self.answers.lock().unwrap());
        assert_eq!(answers.len(), 1, "one answer per heartbeat: {answers:?}");
        answers.pop().unwrap()
    }

    fn must_heartbeat(
        &self,
        region: &Region,
        leader: Peer,
        pending: &[Peer],
    ) -> RegionHeartbeatResponse {
        self.must_heartbeat_with(RegionHeartbeatRequest {
            region: Some(region.clone()),
            leader: Some(leader),
            pending_peers: pending.to_vec(),
            ..Default::default()
        })
    }

    fn store_heartbeat(&self, store_ids: &[u64]) {
        for &store_id in store_ids {
            self.scheduler
                .store_heartbeat(StoreStats {
                    store_id,
                    ..Default::default()
                })
                .unwrap();
        }
    }
}

fn add_node(peer: Peer) -> Option<ChangePeer> {
    Some(ChangePeer {
        peer: Some(peer),
        change_type: ConfChangeType::AddNode as i32,
    })
}

fn remove_node(peer: Peer) -> Option<ChangePeer> {
    Some(ChangePeer {
        peer: Some(peer),
        change_type: ConfChangeType::RemoveNode as i32,
    })
}

/// The peer an AddNode answer asks for.
fn must_add_peer(answer: &RegionHeartbeatResponse) -> Peer {
    let change = answer.change_peer.as_ref().expect("a change peer");
    assert_eq!(change.change_type(), ConfChangeType::AddNode, "{answer:?}");
    change.peer.expect("a peer")
}

#[test]
fn test_one_replica_gets_add_peer_on_the_emptiest_store() {
    let cluster = new_test_cluster(3, enabled());
    // Store 2 already holds a region, store 3 none.
    let other = new_test_region(2, (b"m", b""), 1, &[peer(21, 2)]);
    cluster.must_heartbeat(&other, peer(21, 2), &[]);
    let region = new_test_region(1, (b"", b"m"), 1, &[peer(11, 1)]);
    let answer = cluster.must_heartbeat(&region, peer(11, 1), &[]);
    let added = must_add_peer(&answer);
    assert_eq!(added.store_id, 3, "the emptiest store");
    assert!(added.id > 999, "a fresh id from the allocator: {added:?}");
    assert_eq!(
        cluster.scheduler.operator(1),
        Some(Operator::AddPeer(added))
    );
    // Repeated until done; the peer catches up: done, and the next one comes.
    assert_eq!(
        cluster
            .must_heartbeat(&region, peer(11, 1), &[])
            .change_peer,
        add_node(added)
    );
    let grown = new_test_region(1, (b"", b"m"), 2, &[peer(11, 1), added]);
    assert_eq!(
        cluster
            .must_heartbeat(&grown, peer(11, 1), &[added])
            .change_peer,
        None
    );
    let next = must_add_peer(&cluster.must_heartbeat(&grown, peer(11, 1), &[]));
    assert_eq!(next.store_id, 2);
}

#[test]
fn test_scheduling_off_makes_no_operators() {
    let cluster = new_test_cluster(3, ScheduleConfig::default());
    let region = new_test_region(1, (b"", b""), 1, &[peer(11, 1)]);
    assert_eq!(
        cluster
            .must_heartbeat(&region, peer(11, 1), &[])
            .change_peer,
        None
    );
    assert_eq!(cluster.scheduler.run_schedule_pass(), 0);
    assert_eq!(cluster.scheduler.operator(1), None);
    // Turned on later, the next heartbeat gets the operator.
    cluster.scheduler.set_schedule_config(enabled());
    assert!(
        cluster
            .must_heartbeat(&region, peer(11, 1), &[])
            .change_peer
            .is_some()
    );
}

#[test]
fn test_down_store_peer_is_replaced() {
    let cluster = new_test_cluster(4, enabled());
    let (p1, p2, p3) = (peer(11, 1), peer(12, 2), peer(13, 3));
    let region = new_test_region(1, (b"", b""), 1, &[p1, p2, p3]);
    assert_eq!(cluster.must_heartbeat(&region, p1, &[]).change_peer, None);

    // Store 3 goes silent past max-store-down-time; the others report.
    cluster
        .scheduler
        .advance_clock(MAX_DOWN + Duration::from_secs(1));
    cluster.store_heartbeat(&[1, 2, 4]);
    let added = must_add_peer(&cluster.must_heartbeat(&region, p1, &[]));
    assert_eq!(added.store_id, 4);
    assert_eq!(
        cluster.scheduler.operator(1),
        Some(Operator::MovePeer {
            from: p3,
            to: added
        })
    );
    // Added and caught up: the down peer goes.
    let grown = new_test_region(1, (b"", b""), 2, &[p1, p2, p3, added]);
    assert_eq!(
        cluster.must_heartbeat(&grown, p1, &[]).change_peer,
        remove_node(p3)
    );
    let done = new_test_region(1, (b"", b""), 3, &[p1, p2, added]);
    assert_eq!(cluster.must_heartbeat(&done, p1, &[]).change_peer, None);
    assert_eq!(cluster.scheduler.operator(1), None);
}

#[test]
fn test_peer_reported_down_by_its_leader_is_replaced() {
    let cluster = new_test_cluster(4, enabled());
    let (p1, p2, p3) = (peer(11, 1), peer(12, 2), peer(13, 3));
    let region = new_test_region(1, (b"", b""), 1, &[p1, p2, p3]);
    let answer = cluster.must_heartbeat_with(RegionHeartbeatRequest {
        region: Some(region),
        leader: Some(p1),
        down_peers: vec![DownPeer {
            peer: Some(p2),
            down_seconds: 600,
        }],
        ..Default::default()
    });
    let added = must_add_peer(&answer);
    assert_eq!(added.store_id, 4);
    assert_eq!(
        cluster.scheduler.operator(1),
        Some(Operator::MovePeer {
            from: p2,
            to: added
        })
    );
}

#[test]
fn test_operator_whose_target_is_reported_down_is_cancelled() {
    // Scheduling off: only the scripted operators, nothing replaces them.
    let cluster = new_test_cluster(4, ScheduleConfig::default());
    let (p1, p2, p3) = (peer(11, 1), peer(12, 2), peer(13, 3));
    let region = new_test_region(1, (b"", b""), 1, &[p1, p2, p3]);
    let down = |peer: Peer| RegionHeartbeatRequest {
        region: Some(region.clone()),
        leader: Some(p1),
        down_peers: vec![DownPeer {
            peer: Some(peer),
            down_seconds: 10,
        }],
        ..Default::default()
    };

    // A transfer to a peer whose store stopped is asked for until the
    // leader reports the peer down, then dropped.
    cluster.must_heartbeat(&region, p1, &[]);
    cluster
        .scheduler
        .schedule_operator(1, Operator::TransferLeader(p2))
        .unwrap();
    assert!(
        cluster
            .must_heartbeat(&region, p1, &[])
            .transfer_leader
            .is_some()
    );
    let answer = cluster.must_heartbeat_with(down(p2));
    assert_eq!(answer.transfer_leader, None, "{answer:?}");
    assert_eq!(cluster.scheduler.operator(1), None);

    // An added peer that went down while catching up: the operator that
    // waits for it is dropped (the replica checker then removes the
    // surplus, unhealthy peer).
    let p4 = peer(14, 4);
    let grown = new_test_region(1, (b"", b""), 2, &[p1, p2, p3, p4]);
    cluster.scheduler.add_peer(1, p4);
    assert_eq!(
        cluster.must_heartbeat(&grown, p1, &[p4]).change_peer,
        None,
        "waits for the new peer to catch up"
    );
    assert_eq!(cluster.scheduler.operator(1), Some(Operator::AddPeer(p4)));
    let answer = cluster.must_heartbeat_with(RegionHeartbeatRequest {
        region: Some(grown.clone()),
        leader: Some(p1),
        pending_peers: vec![p4],
        down_peers: vec![DownPeer {
            peer: Some(p4),
            down_seconds: 10,
        }],
        ..Default::default()
    });
    assert_eq!(answer.change_peer, None, "{answer:?}");
    assert_eq!(cluster.scheduler.operator(1), None);

    // A removal names no target: a down peer does not stop it.
    cluster.scheduler.remove_peer(1, p4);
    let answer = cluster.must_heartbeat_with(RegionHeartbeatRequest {
        region: Some(grown),
        leader: Some(p1),
        down_peers: vec![DownPeer {
            peer: Some(p4),
            down_seconds: 10,
        }],
        ..Default::default()
    });
    assert_eq!(answer.change_peer, remove_node(p4));
}

#[test]
fn test_validation_refusals() {
    let cluster = new_test_cluster(
        4,
        ScheduleConfig {
            max_store_down_time: MAX_DOWN,
            ..ScheduleConfig::default()
        },
    );
    let scheduler = &cluster.scheduler;
    let (p1, p2) = (peer(11, 1), peer(12, 2));
    let region = new_test_region(1, (b"", b""), 1, &[p1, p2]);
    let refused = |op: Operator, part: &str| match scheduler.schedule_operator(1, op.clone()) {
        Err(Error::OperatorRefused {
            region_id: 1,
            reason,
        }) => {
            assert!(reason.contains(part), "{op:?}: {reason}");
        }
        other => panic!("{op:?}: expected a refusal naming {part:?}, got {other:?}"),
    };
    assert_eq!(
        scheduler.schedule_operator(1, Operator::AddPeer(peer(20, 3))),
        Err(Error::RegionNotFound(1))
    );
    cluster.must_heartbeat(&region, p1, &[]);

    // Store 4 is down, store 9 unknown.
    scheduler.advance_clock(MAX_DOWN + Duration::from_secs(1));
    cluster.store_heartbeat(&[1, 2, 3]);
    refused(Operator::AddPeer(peer(20, 4)), "down");
    refused(Operator::AddPeer(peer(20, 9)), "unknown store");
    refused(Operator::AddPeer(peer(20, 2)), "already holds");
    refused(Operator::RemovePeer(p1), "transfer the leader");
    refused(Operator::TransferLeader(peer(20, 3)), "voting member");
    refused(
        Operator::MovePeer {
            from: p2,
            to: peer(20, 4),
        },
        "down",
    );
    // A good one goes in; a second one for the region is refused.
    scheduler
        .schedule_operator(1, Operator::AddPeer(peer(20, 3)))
        .unwrap();
    refused(Operator::RemovePeer(p2), "under way");
    assert_eq!(
        cluster.must_heartbeat(&region, p1, &[]).change_peer,
        add_node(peer(20, 3))
    );
}

#[test]
fn test_operator_timeout_drops_it() {
    let config = ScheduleConfig {
        region_operator_timeout: Duration::from_secs(100),
        leader_operator_timeout: Duration::from_secs(10),
        ..ScheduleConfig::default()
    };
    let cluster = new_test_cluster(3, config);
    let scheduler = &cluster.scheduler;
    let (p1, p2) = (peer(11, 1), peer(12, 2));
    let region = new_test_region(1, (b"", b""), 1, &[p1, p2]);
    cluster.must_heartbeat(&region, p1, &[]);
    scheduler
        .schedule_operator(1, Operator::AddPeer(peer(20, 3)))
        .unwrap();
    scheduler.advance_clock(Duration::from_secs(99));
    assert!(
        cluster
            .must_heartbeat(&region, p1, &[])
            .change_peer
            .is_some()
    );
    scheduler.advance_clock(Duration::from_secs(2));
    // Past the deadline: dropped, nothing asked.
    assert_eq!(cluster.must_heartbeat(&region, p1, &[]).change_peer, None);
    assert_eq!(scheduler.operator(1), None);

    // A leader transfer has the short deadline; the periodic pass drops it
    // too (scheduling on for the pass to run).
    scheduler.transfer_leader(1, p2);
    scheduler.set_schedule_config(ScheduleConfig {
        enabled: true,
        leader_operator_timeout: Duration::from_secs(10),
        ..ScheduleConfig::default()
    });
    scheduler.advance_clock(Duration::from_secs(11));
    scheduler.run_schedule_pass();
    assert_ne!(scheduler.operator(1), Some(Operator::TransferLeader(p2)));
}

#[test]
fn test_stale_term_report_keeps_leader_and_transfer() {
    let cluster = new_test_cluster(3, ScheduleConfig::default());
    let scheduler = &cluster.scheduler;
    let (p1, p2, p3) = (peer(11, 1), peer(12, 2), peer(13, 3));
    let region = new_test_region(1, (b"", b""), 1, &[p1, p2, p3]);
    let report = |leader: Peer, term: u64| RegionHeartbeatRequest {
        region: Some(region.clone()),
        leader: Some(leader),
        term,
        ..Default::default()
    };
    cluster.must_heartbeat_with(report(p1, 7));
    scheduler.transfer_leader(1, p2);
    // p2 led in term 6 and reports late: neither leader nor operator move.
    let answer = cluster.must_heartbeat_with(report(p2, 6));
    assert_eq!(
        answer.transfer_leader, None,
        "no operator step for a stale report"
    );
    assert_eq!(scheduler.get_region_by_id(1).unwrap().unwrap().1, Some(p1));
    assert_eq!(scheduler.operator(1), Some(Operator::TransferLeader(p2)));
    // The current leader still gets the transfer.
    let answer = cluster.must_heartbeat_with(report(p1, 7));
    assert_eq!(answer.transfer_leader.and_then(|t| t.peer), Some(p2));
    // p2 leads in term 8: done.
    cluster.must_heartbeat_with(report(p2, 8));
    assert_eq!(scheduler.operator(1), None);
    assert_eq!(scheduler.get_region_by_id(1).unwrap().unwrap().1, Some(p2));
    // The deposed p1's late report (term 7) does not take it back...
    cluster.must_heartbeat_with(report(p1, 7));
    assert_eq!(scheduler.get_region_by_id(1).unwrap().unwrap().1, Some(p2));
    // ...but a store that sends no term (0) follows today's rule: last wins.
    cluster.must_heartbeat_with(report(p3, 0));
    assert_eq!(scheduler.get_region_by_id(1).unwrap().unwrap().1, Some(p3));
}

#[test]
fn test_region_dropped_takes_its_operator() {
    let cluster = new_test_cluster(3, ScheduleConfig::default());
    let scheduler = &cluster.scheduler;
    let region = new_test_region(1, (b"", b""), 1, &[peer(11, 1), peer(12, 2)]);
    cluster.must_heartbeat(&region, peer(11, 1), &[]);
    scheduler
        .schedule_operator(1, Operator::AddPeer(peer(20, 3)))
        .unwrap();
    let mut newer = new_test_region(5, (b"", b""), 1, &[peer(51, 1)]);
    newer.region_epoch = Some(RegionEpoch {
        conf_ver: 1,
        version: 2,
    });
    cluster.must_heartbeat(&newer, peer(51, 1), &[]);
    assert_eq!(scheduler.operator(1), None);
}

#[test]
fn test_periodic_pass_balances_regions_and_leaders() {
    let cluster = new_test_cluster(4, enabled());
    let scheduler = &cluster.scheduler;
    // Six regions on stores 1-3, all led from store 1; store 4 empty.
    let mut regions = Vec::new();
    for i in 0..6u64 {
        let id = 10 + i;
        let start = [b'a' + i as u8];
        let end = [b'a' + i as u8 + 1];
        let peers = [
            peer(id * 10 + 1, 1),
            peer(id * 10 + 2, 2),
            peer(id * 10 + 3, 3),
        ];
        let region = new_test_region(id, (&start, &end), 1, &peers);
        cluster.must_heartbeat(&region, peers[0], &[]);
        regions.push(region);
    }
    assert_eq!(
        scheduler.run_schedule_pass(),
        2,
        "one leader and one region move"
    );
    let ops: Vec<Operator> = regions
        .iter()
        .filter_map(|r| scheduler.operator(r.id))
        .collect();
    assert!(
        ops.iter()
            .any(|op| matches!(op, Operator::TransferLeader(p) if p.store_id != 1)),
        "{ops:?}"
    );
    assert!(
        ops.iter()
            .any(|op| matches!(op, Operator::MovePeer { to, .. } if to.store_id == 4)),
        "{ops:?}"
    );
    // Operators under way count as done: the next pass adds more, but only
    // while the stores are still out of balance.
    let mut total = 2;
    for _ in 0..10 {
        total += scheduler.run_schedule_pass();
    }
    // 18 replicas over 4 stores: sizes 6,6,6,0 move until the gap is at most 2.
    let moves = regions
        .iter()
        .filter(|r| matches!(scheduler.operator(r.id), Some(Operator::MovePeer { .. })))
        .count();
    assert_eq!(moves, 3, "operators {total}");
}

#[test]
fn test_schedule_loop_runs_and_stops() {
    let config = ScheduleConfig {
        balance_interval: Duration::from_millis(10),
        ..ScheduleConfig::default()
    };
    let cluster = new_test_cluster(3, config.clone());
    let scheduler = &cluster.scheduler;
    let region = new_test_region(1, (b"", b""), 1, &[peer(11, 1)]);
    cluster.must_heartbeat(&region, peer(11, 1), &[]);
    let schedule_loop = scheduler.start_schedule_loop();
    // Off: the loop runs but schedules nothing. Turned on: it does.
    scheduler.set_schedule_config(ScheduleConfig {
        enabled: true,
        ..config
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while scheduler.operator(1).is_none() {
        assert!(Instant::now() < deadline, "no operator from the loop");
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(schedule_loop);
}

#[test]
fn test_poisoned_lock_is_recovered() {
    let cluster = new_test_cluster(3, ScheduleConfig::default());
    let scheduler = &cluster.scheduler;
    let region = new_test_region(1, (b"", b""), 1, &[peer(11, 1), peer(12, 2)]);
    cluster.must_heartbeat(&region, peer(11, 1), &[]);
    // A panic in the middle of an update: the report map names a region
    // the map does not have, and the lock is poisoned.
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut state = scheduler.state.write().unwrap();
        let report = state.reports[&1].clone();
        state.reports.insert(77, report);
        panic!("a bug in the middle of an update");
    }));
    assert!(panicked.is_err());
    assert!(scheduler.state.is_poisoned());
    // The next call recovers, repairs and goes on.
    assert_eq!(
        scheduler.get_region_by_id(1).unwrap().map(|(_, l)| l),
        Some(Some(peer(11, 1)))
    );
    assert!(!scheduler.state.is_poisoned());
    assert!(
        !scheduler.read().reports.contains_key(&77),
        "stray report dropped"
    );
    scheduler.read().check_invariants();
    cluster.must_heartbeat(&region, peer(12, 2), &[]);
}

#[test]
fn test_overtaken_answer_is_not_delivered() {
    let cluster = new_test_cluster(1, ScheduleConfig::default());
    let answer = |n: u64| RegionHeartbeatResponse {
        region_id: 1,
        target_peer: Some(peer(n, 1)),
        ..Default::default()
    };
    cluster.scheduler.deliver(1, 2, answer(2));
    cluster.scheduler.deliver(1, 1, answer(1));
    cluster.scheduler.deliver(1, 3, answer(3));
    let got: Vec<u64> = cluster
        .answers
        .lock()
        .unwrap()
        .iter()
        .filter_map(|a| a.target_peer.map(|p| p.id))
        .collect();
    assert_eq!(got, vec![2, 3], "answer 1 was overtaken by answer 2");
}
