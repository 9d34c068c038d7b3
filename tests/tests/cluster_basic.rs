//! The replicated store end to end: three stores in one process.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kvproto::metapb;
use kvproto::raft_cmdpb::{
    CmdType, GetRequest, PutRequest, RaftCmdRequest, RaftRequestHeader, Request,
};
use raftstore::Config;
use storage::CF_DEFAULT;
use tinykv_tests::cluster::filter::IsolateFilter;
use tinykv_tests::cluster::{Cluster, FIRST_REGION_ID};

#[test]
fn put_get_delete_scan_on_three_stores() {
    let cluster = Cluster::new(
        3,
        Config::for_tests(),
        "put_get_delete_scan_on_three_stores",
    );
    cluster.start();
    cluster.must_put(b"k1", b"v1");
    cluster.must_put(b"k2", b"v2");
    cluster.must_get(b"k1", b"v1");
    cluster.must_delete(b"k1");
    cluster.must_get_none(b"k1");
    assert_eq!(cluster.scan(b"", b""), vec![b"v2".to_vec()]);
    for store_id in cluster.store_ids() {
        cluster.must_get_equal_on_store(store_id, b"k2", b"v2", std::time::Duration::from_secs(10));
    }
}

#[test]
fn writes_survive_restart_of_every_store() {
    let cluster = Cluster::new(
        3,
        Config::for_tests(),
        "writes_survive_restart_of_every_store",
    );
    cluster.start();
    for i in 0..20u32 {
        cluster.must_put(
            format!("key{i:02}").as_bytes(),
            format!("value{i}").as_bytes(),
        );
    }
    for store_id in cluster.store_ids() {
        cluster.stop_store(store_id);
    }
    for store_id in cluster.store_ids() {
        cluster.start_store(store_id);
    }
    for i in 0..20u32 {
        cluster.must_get(
            format!("key{i:02}").as_bytes(),
            format!("value{i}").as_bytes(),
        );
    }
}

#[test]
fn an_isolated_store_catches_up_after_healing() {
    let cluster = Cluster::new(
        3,
        Config::for_tests(),
        "an_isolated_store_catches_up_after_healing",
    );
    cluster.start();
    cluster.must_put(b"a", b"1");
    cluster.add_filter(Arc::new(IsolateFilter(3)));
    cluster.must_put(b"b", b"2");
    cluster.clear_filters();
    cluster.must_get_equal_on_store(3, b"b", b"2", std::time::Duration::from_secs(10));
}

#[test]
fn the_scheduler_learns_the_leader() {
    let cluster = Cluster::new(3, Config::for_tests(), "the_scheduler_learns_the_leader");
    cluster.start();
    cluster.must_put(b"k", b"v");
    let leader = cluster.must_reported_leader(
        tinykv_tests::cluster::FIRST_REGION_ID,
        std::time::Duration::from_secs(10),
    );
    assert!((1..=3).contains(&leader.store_id), "leader {leader:?}");
}

#[test]
fn delayed_and_reordered_messages_lose_nothing() {
    let cluster = Cluster::new(
        3,
        Config::for_tests(),
        "delayed_and_reordered_messages_lose_nothing",
    );
    cluster.start();
    cluster.add_filter(Arc::new(tinykv_tests::cluster::filter::DelayFilter {
        max: std::time::Duration::from_millis(30),
    }));
    for i in 0..30u32 {
        cluster.must_put(format!("d{i:02}").as_bytes(), format!("{i}").as_bytes());
    }
    let expected: Vec<Vec<u8>> = (0..30u32).map(|i| format!("{i}").into_bytes()).collect();
    assert_eq!(cluster.scan(b"d", b"e"), expected);
}

/// A put of `key` = `value` for `region`, addressed to `peer`.
fn put_request(
    region: &metapb::Region,
    peer: metapb::Peer,
    key: &[u8],
    value: &[u8],
) -> RaftCmdRequest {
    RaftCmdRequest {
        header: Some(RaftRequestHeader {
            region_id: region.id,
            peer: Some(peer),
            region_epoch: region.region_epoch,
            ..Default::default()
        }),
        requests: vec![Request {
            cmd_type: CmdType::Put as i32,
            put: Some(PutRequest {
                cf: CF_DEFAULT.to_owned(),
                key: key.to_vec(),
                value: value.to_vec(),
            }),
            ..Default::default()
        }],
        admin_request: None,
    }
}

/// A burst of puts handed to the leader faster than it takes them off its
/// mailbox: those over `mailbox_limit` are refused by the router, and each
/// refused one must be answered `ServerIsBusy` — never with an empty
/// response that reads as success — and must not be applied.
#[test]
fn a_burst_over_the_mailbox_limit_is_answered_server_is_busy() {
    let mut cfg = Config::for_tests();
    cfg.mailbox_limit = 4;
    let cluster = Cluster::new(
        3,
        cfg,
        "a_burst_over_the_mailbox_limit_is_answered_server_is_busy",
    );
    cluster.start();
    let leader = cluster.must_leader_by_read(FIRST_REGION_ID);
    let region = cluster.region_for_key(b"burst");
    let client = cluster.inner().client();
    let (mut applied, mut refused) = (Vec::new(), Vec::new());
    // A burst of 64 sends takes microseconds, far less than the peer needs
    // to take 64 commands off its mailbox; repeat only if scheduling let it
    // keep up anyway.
    let deadline = Instant::now() + Duration::from_secs(30);
    for round in 0.. {
        if !refused.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no command of {round} bursts was refused"
        );
        let answers: Vec<_> = (0..64)
            .map(|i| {
                let key = format!("burst-{round}-{i:02}").into_bytes();
                let answer = client
                    .send(put_request(&region, leader, &key, b"v"))
                    .expect("the leader's store is running");
                (key, answer)
            })
            .collect();
        for (key, answer) in answers {
            let key_str = key.escape_ascii().to_string();
            let resp = client
                .wait(answer, Duration::from_secs(10))
                .unwrap_or_else(|| panic!("{key_str}: no answer"));
            match resp.region_error() {
                Some(e) if e.server_is_busy.is_some() => refused.push(key),
                // Leadership may move under load; such answers say so.
                Some(e) => assert!(
                    e.not_leader.is_some() || e.stale_command.is_some(),
                    "{key_str}: unexpected error {e:?}"
                ),
                None => {
                    assert_eq!(
                        resp.response.responses.len(),
                        1,
                        "{key_str}: answered as a success without a put's response: {:?}",
                        resp.response
                    );
                    applied.push(key);
                }
            }
        }
    }
    for key in &applied {
        cluster.must_get(key, b"v");
    }
    for key in &refused {
        cluster.must_get_none(key);
    }
}

/// Under the same load, the cluster's client retries `ServerIsBusy` after a
/// back-off instead of taking it for an answer: every put it reports done
/// is there, and at least one of them was retried for it.
#[test]
fn the_client_retries_server_is_busy() {
    let mut cfg = Config::for_tests();
    cfg.mailbox_limit = 2;
    let cluster = Cluster::new(3, cfg, "the_client_retries_server_is_busy");
    cluster.start();
    cluster.must_leader_by_read(FIRST_REGION_ID);
    let saw_busy = AtomicBool::new(false);
    let deadline = Instant::now() + Duration::from_secs(30);
    let done: Vec<Vec<Vec<u8>>> = std::thread::scope(|s| {
        let threads: Vec<_> = (0..16)
            .map(|t| {
                let (cluster, saw_busy) = (&cluster, &saw_busy);
                s.spawn(move || {
                    let client = cluster.inner().client();
                    let mut done = Vec::new();
                    for i in 0.. {
                        if saw_busy.load(Ordering::Relaxed) || Instant::now() >= deadline {
                            break;
                        }
                        let key = format!("retry-{t:02}-{i:04}").into_bytes();
                        let retries = client
                            .put(key.clone(), b"v".to_vec(), Duration::from_secs(15))
                            .unwrap_or_else(|e| panic!("put {t}/{i}: {e}"));
                        if retries.server_is_busy > 0 {
                            saw_busy.store(true, Ordering::Relaxed);
                        }
                        done.push(key);
                    }
                    done
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|h| h.join().expect("client thread panicked"))
            .collect()
    });
    assert!(
        saw_busy.load(Ordering::Relaxed),
        "no put was retried for ServerIsBusy in 30 s"
    );
    for key in done.iter().flatten() {
        cluster.must_get(key, b"v");
    }
}

/// Reads go through ReadIndex, not the log: under a read-only load no
/// store's last log index moves, and every read sees the last write, also
/// right after a leader change.
#[test]
fn reads_write_nothing_to_the_log() {
    let cluster = Cluster::new(3, Config::for_tests(), "reads_write_nothing_to_the_log");
    cluster.start();
    cluster.must_put(b"k", b"v1");
    for store_id in cluster.store_ids() {
        cluster.must_get_equal_on_store(store_id, b"k", b"v1", Duration::from_secs(10));
    }
    let last_indexes = || -> Vec<u64> {
        cluster
            .store_ids()
            .into_iter()
            .map(|s| {
                cluster
                    .raft_local_state(s, FIRST_REGION_ID)
                    .map_or(0, |r| r.last_index)
            })
            .collect()
    };
    // Wait until the last write's commit reached every store's log.
    let deadline = Instant::now() + Duration::from_secs(10);
    let before = loop {
        let seen = last_indexes();
        if seen.iter().all(|&i| i == seen[0]) || Instant::now() > deadline {
            break seen;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    for _ in 0..200 {
        cluster.must_get(b"k", b"v1");
    }
    assert_eq!(cluster.scan(b"", b""), vec![b"v1".to_vec()]);
    assert_eq!(last_indexes(), before, "a read wrote to the log");

    // After a leader change the new leader's reads see the last write too.
    let leader = cluster.must_leader_by_read(FIRST_REGION_ID);
    let other = cluster
        .region_for_key(b"k")
        .peers
        .into_iter()
        .find(|p| p.store_id != leader.store_id)
        .expect("another peer");
    cluster.must_put(b"k", b"v2");
    cluster.must_transfer_leader(FIRST_REGION_ID, other);
    cluster.must_get(b"k", b"v2");
}

/// A leader cut off from the others never serves a stale read: its lease
/// runs out before anyone else can be elected, then its reads wait for a
/// heartbeat round no quorum answers, and CheckQuorum makes it step down.
#[test]
fn a_cut_off_leader_serves_no_stale_read() {
    let cluster = Cluster::new(
        3,
        Config::for_tests(),
        "a_cut_off_leader_serves_no_stale_read",
    );
    cluster.start();
    cluster.must_put(b"k", b"v1");
    cluster.must_get(b"k", b"v1");
    let old = cluster.must_leader_by_read(FIRST_REGION_ID);
    let region = cluster.region_for_key(b"k");
    cluster.add_filter(Arc::new(IsolateFilter(old.store_id)));
    // Through the others: they elect a new leader and take the write.
    cluster.must_put(b"k", b"v2");

    let get = RaftCmdRequest {
        header: Some(RaftRequestHeader {
            region_id: region.id,
            peer: Some(old),
            region_epoch: region.region_epoch,
            ..Default::default()
        }),
        requests: vec![Request {
            cmd_type: CmdType::Get as i32,
            get: Some(GetRequest {
                cf: CF_DEFAULT.to_owned(),
                key: b"k".to_vec(),
            }),
            ..Default::default()
        }],
        admin_request: None,
    };
    match cluster.call_command(get, Duration::from_secs(5)) {
        Some(resp) if resp.region_error().is_none() => {
            let value = resp
                .response
                .responses
                .first()
                .and_then(|r| r.get.as_ref())
                .map(|g| g.value.clone());
            panic!("the cut-off leader answered a read: {value:?}");
        }
        // Refused (no longer leader, or not confirmed in time), or no answer.
        _ => {}
    }
    cluster.clear_filters();
    cluster.must_get(b"k", b"v2");
}
