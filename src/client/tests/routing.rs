//! The routing and retry rules of `route` and the scan of `raw`, each
//! against fake stores scripted for one case.

use std::collections::HashMap;
use std::time::Duration;

use kvproto::errorpb;
use tokio::time::Instant;

use super::fake::{
    Answer, FakeEnv, FakeSetup, Recorded, World, must_heartbeat, new_test_region, peer,
    region_error,
};
use crate::client::{Error, RegionInfo};

/// The deadline of operations expected to succeed: long enough for a
/// loaded machine, never reached by a passing test.
const TIMEOUT: Duration = Duration::from_secs(20);

/// One region over all keys with a peer on each of stores 1, 2, 3.
fn one_region_setup(leaders: &[(u64, u64)]) -> FakeSetup {
    FakeSetup {
        stores: 3,
        dead: vec![],
        regions: vec![new_test_region(1, (b"", b""), (1, 1), &[1, 2, 3])],
        leaders: leaders.iter().copied().collect(),
    }
}

/// Regions `[.., b)`, `[b, c)`, `[c, ..)` (ids 1, 2, 3) on stores 1, 2, 3
/// respectively, holding `a1..a3`, `b1..b3`, `c1..c3`.
async fn three_region_env() -> FakeEnv {
    let env = FakeEnv::start(FakeSetup {
        stores: 3,
        dead: vec![],
        regions: vec![
            new_test_region(1, (b"", b"b"), (1, 1), &[1]),
            new_test_region(2, (b"b", b"c"), (1, 1), &[2]),
            new_test_region(3, (b"c", b""), (1, 1), &[3]),
        ],
        leaders: HashMap::new(),
    })
    .await;
    env.with_world(|w| {
        for prefix in ["a", "b", "c"] {
            for i in 1..=3 {
                let key = format!("{prefix}{i}");
                w.data
                    .insert(key.clone().into_bytes(), format!("v-{key}").into_bytes());
            }
        }
    });
    env
}

fn keys(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<String> {
    pairs
        .iter()
        .map(|(k, _)| String::from_utf8_lossy(k).into_owned())
        .collect()
}

fn requests(env: &FakeEnv) -> Vec<Recorded> {
    env.with_world(|w| w.requests.clone())
}

fn clear_requests(env: &FakeEnv) {
    env.with_world(|w| w.requests.clear());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_not_leader_hint_is_followed_and_cached() {
    // The scheduler thinks store 1 leads (the first peer); store 2 does.
    let env = FakeEnv::start(one_region_setup(&[])).await;
    env.with_world(|w| {
        w.leaders.insert(1, 2);
    });
    let client = env.client(TIMEOUT).await;
    client.raw_put("", b"k", b"v").await.expect("put");
    assert_eq!(env.with_world(|w| w.stores_asked()), vec![1, 2]);
    let put = &requests(&env)[1];
    assert_eq!(put.op, "RawPut");
    assert_eq!(
        put.ctx.peer,
        Some(peer(1, 2)),
        "the context names the peer tried"
    );
    assert_eq!(put.ctx.region_id, 1);
    assert_eq!(put.ctx.region_epoch.map(|e| e.version), Some(1));

    clear_requests(&env);
    assert_eq!(
        client.raw_get("", b"k").await.expect("get"),
        Some(b"v".to_vec())
    );
    assert_eq!(
        env.with_world(|w| w.stores_asked()),
        vec![2],
        "the leader is cached"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_not_leader_without_hint_tries_the_other_peers() {
    let env = FakeEnv::start(one_region_setup(&[])).await;
    env.with_world(|w| {
        w.leaders.insert(1, 3);
        w.hint_leader = false;
    });
    let client = env.client(TIMEOUT).await;
    client.raw_put("", b"k", b"v").await.expect("put");
    assert_eq!(env.with_world(|w| w.stores_asked()), vec![1, 2, 3]);
    assert_eq!(
        client.cached_region(b"k").and_then(|c| c.leader),
        Some(peer(1, 3))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_stores_naming_each_other_leader_do_not_spin_the_client() {
    // Stores 1 and 2 each name the other leader, for ever.
    let env = FakeEnv::start(one_region_setup(&[])).await;
    env.set_hook(|_, request| {
        let other = if request.store_id == 1 { 2 } else { 1 };
        Some(Answer::RegionError(Box::new(region_error(|e| {
            e.not_leader = Some(errorpb::NotLeader {
                region_id: 1,
                leader: Some(peer(1, other)),
            })
        }))))
    });
    let timeout = Duration::from_millis(600);
    let client = env.client(timeout).await;
    match client.raw_get("", b"k").await {
        Err(Error::Timeout { last, .. }) => assert!(last.contains("not the leader"), "{last}"),
        other => panic!("expected a timeout, got {other:?}"),
    }
    // At most one hint is followed at once; then a backoff (5 ms doubling
    // to 50 ms) comes between: about two requests per backoff, not a spin.
    let sent = env.with_world(|w| w.requests.len());
    assert!((4..=80).contains(&sent), "{sent} requests in {timeout:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_epoch_not_match_refreshes_the_cache() {
    let env = FakeEnv::start(one_region_setup(&[])).await;
    env.with_world(|w| {
        w.data.insert(b"a".to_vec(), b"1".to_vec());
        w.data.insert(b"x".to_vec(), b"2".to_vec());
        // Region 1 splits; the scheduler does not hear of it.
        w.split(1, b"m", 5);
    });
    let client = env.client(TIMEOUT).await;
    assert_eq!(
        client.raw_get("", b"a").await.expect("get a"),
        Some(b"1".to_vec())
    );
    let seen = requests(&env);
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].ctx.region_epoch.map(|e| e.version), Some(1));
    assert_eq!(
        (
            seen[1].ctx.region_id,
            seen[1].ctx.region_epoch.map(|e| e.version)
        ),
        (1, Some(2)),
        "retried with the epoch from EpochNotMatch"
    );

    // The other half came with the error: no scheduler round, no error.
    clear_requests(&env);
    assert_eq!(
        client.raw_get("", b"x").await.expect("get x"),
        Some(b"2".to_vec())
    );
    let seen = requests(&env);
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].ctx.region_id, 5);
    assert_eq!(seen[0].ctx.region_epoch.map(|e| e.version), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_region_not_found_relocates_through_the_scheduler() {
    let env = FakeEnv::start(FakeSetup {
        stores: 3,
        dead: vec![],
        regions: vec![new_test_region(1, (b"", b""), (1, 1), &[1, 2])],
        leaders: [(1, 1)].into_iter().collect(),
    })
    .await;
    let client = env.client(TIMEOUT).await;
    client.raw_put("", b"k", b"v").await.expect("put");
    assert_eq!(env.with_world(|w| w.stores_asked()), vec![1]);

    // The region moves to stores 2 and 3, led by 3; the scheduler knows.
    let moved = new_test_region(1, (b"", b""), (3, 1), &[2, 3]);
    env.with_world(|w| {
        w.regions.insert(1, moved.clone());
        w.leaders.insert(1, 3);
    });
    must_heartbeat(&env.scheduler, &moved, peer(1, 3));
    clear_requests(&env);
    assert_eq!(
        client.raw_get("", b"k").await.expect("get"),
        Some(b"v".to_vec())
    );
    let seen = requests(&env);
    assert_eq!(
        seen.iter().map(|r| r.store_id).collect::<Vec<_>>(),
        vec![1, 3],
        "{seen:?}"
    );
    assert_eq!(seen[1].ctx.region_epoch.map(|e| e.conf_ver), Some(3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_busy_and_stale_answers_are_retried_until_they_clear() {
    let env = FakeEnv::start(one_region_setup(&[(1, 1)])).await;
    let mut script = vec![
        region_error(|e| {
            e.server_is_busy = Some(errorpb::ServerIsBusy {
                reason: "mailbox full".to_owned(),
                backoff_ms: 0,
            })
        }),
        region_error(|e| e.stale_command = Some(errorpb::StaleCommand {})),
        region_error(|e| {
            e.server_is_busy = Some(errorpb::ServerIsBusy {
                reason: "mailbox full".to_owned(),
                backoff_ms: 30,
            })
        }),
    ]
    .into_iter();
    env.set_hook(move |_, _| script.next().map(|e| Answer::RegionError(Box::new(e))));
    let client = env.client(TIMEOUT).await;
    let start = Instant::now();
    client.raw_put("", b"k", b"v").await.expect("put");
    assert_eq!(
        env.with_world(|w| w.stores_asked()),
        vec![1, 1, 1, 1],
        "the busy leader is asked again, not another peer"
    );
    assert!(
        start.elapsed() >= Duration::from_millis(30),
        "the store's backoff_ms is honoured"
    );
}

/// A region error of no kind the client knows — a store's "peer not
/// match" when the cached peer ids are stale — re-locates the region and
/// retries; it is not the caller's failure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_a_region_error_of_unknown_kind_relocates_and_retries() {
    let env = FakeEnv::start(one_region_setup(&[(1, 1)])).await;
    let mut script = vec![region_error(|e| {
        e.message = "peer not match: request for peer 9, this is peer 1".to_owned();
    })]
    .into_iter();
    env.set_hook(move |_, _| script.next().map(|e| Answer::RegionError(Box::new(e))));
    let client = env.client(TIMEOUT).await;
    client
        .raw_put("", b"k", b"v")
        .await
        .expect("put after the retry");
    assert_eq!(env.with_world(|w| w.stores_asked()), vec![1, 1]);
}

/// Any other region error of no known kind (a request the store refuses
/// as invalid) is returned at once: no retry fixes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_an_unknown_region_error_is_returned_at_once() {
    let env = FakeEnv::start(one_region_setup(&[(1, 1)])).await;
    env.set_hook(|_, _| {
        Some(Answer::RegionError(Box::new(region_error(|e| {
            e.message = "invalid request: no such thing".to_owned();
        }))))
    });
    let client = env.client(TIMEOUT).await;
    match client.raw_put("", b"k", b"v").await {
        Err(Error::Region { op, message, .. }) => {
            assert_eq!(op, "RawPut");
            assert!(message.contains("no such thing"), "{message}");
        }
        other => panic!("expected the region error, got {other:?}"),
    }
    assert_eq!(env.with_world(|w| w.stores_asked()), vec![1], "not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_busy_until_the_deadline_is_a_timeout_naming_it() {
    let env = FakeEnv::start(one_region_setup(&[(1, 1)])).await;
    env.set_hook(|_, _| {
        Some(Answer::RegionError(Box::new(region_error(|e| {
            e.server_is_busy = Some(errorpb::ServerIsBusy {
                reason: "mailbox full".to_owned(),
                backoff_ms: 0,
            })
        }))))
    });
    let timeout = Duration::from_millis(800);
    let client = env.client(timeout).await;
    let start = Instant::now();
    let err = client.raw_get("", b"k").await.expect_err("never served");
    let elapsed = start.elapsed();
    match &err {
        Error::Timeout {
            op,
            timeout: t,
            last,
        } => {
            assert_eq!(*op, "RawGet");
            assert_eq!(*t, timeout);
            assert!(
                last.contains("busy") && last.contains("mailbox full"),
                "{last}"
            );
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(err.to_string().contains("mailbox full"), "{err}");
    // It gives up once the next backoff (at most 50 ms) would pass the deadline.
    assert!(
        elapsed >= timeout - Duration::from_millis(60),
        "gave up early: {elapsed:?}"
    );
    assert!(elapsed < timeout + Duration::from_secs(5), "{elapsed:?}");
    assert!(env.with_world(|w| w.requests.len()) >= 5, "retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_dead_store_is_skipped_for_another_peer() {
    // Store 1 is registered but not running; the scheduler names it leader.
    let env = FakeEnv::start(FakeSetup {
        dead: vec![1],
        ..one_region_setup(&[])
    })
    .await;
    let client = env.client(TIMEOUT).await;
    client.raw_put("", b"k", b"v").await.expect("put");
    assert_eq!(env.with_world(|w| w.stores_asked()), vec![2]);
    clear_requests(&env);
    assert_eq!(
        client.raw_get("", b"k").await.expect("get"),
        Some(b"v".to_vec())
    );
    assert_eq!(
        env.with_world(|w| w.stores_asked()),
        vec![2],
        "the peer that answered is remembered"
    );
    assert!(
        client.inner.stores.address(1).is_none(),
        "the dead store's address is dropped"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_every_peer_dead_is_a_timeout() {
    let env = FakeEnv::start(FakeSetup {
        stores: 2,
        dead: vec![1, 2],
        regions: vec![new_test_region(1, (b"", b""), (1, 1), &[1, 2])],
        leaders: HashMap::new(),
    })
    .await;
    let client = env.client(Duration::from_secs(1)).await;
    match client.raw_put("", b"k", b"v").await {
        Err(Error::Timeout { op, last, .. }) => {
            assert_eq!(op, "RawPut");
            // The last attempt may be cut short by the deadline; the
            // failure before it is named first.
            assert!(last.starts_with("store "), "{last}");
            assert!(last.contains("unreachable"), "{last}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_errors_no_retry_fixes_are_returned_at_once() {
    let env = FakeEnv::start(one_region_setup(&[(1, 1)])).await;
    let client = env.client(TIMEOUT).await;
    match client.raw_get("bogus", b"k").await {
        Err(Error::Store {
            op,
            store_id,
            message,
        }) => {
            assert_eq!((op, store_id), ("RawGet", 1));
            assert!(message.contains("bogus"), "{message}");
        }
        other => panic!("expected the store's error, got {other:?}"),
    }
    assert_eq!(env.with_world(|w| w.requests.len()), 1);

    clear_requests(&env);
    env.set_hook(|_, _| {
        Some(Answer::Status(tonic::Status::invalid_argument(
            "no such thing",
        )))
    });
    match client.raw_put("", b"k", b"v").await {
        Err(Error::Grpc {
            call,
            code,
            message,
        }) => {
            assert_eq!((call, code), ("RawPut", tonic::Code::InvalidArgument));
            assert_eq!(message, "no such thing");
        }
        other => panic!("expected the gRPC status, got {other:?}"),
    }
    assert_eq!(env.with_world(|w| w.requests.len()), 1, "not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_scan_joins_regions_in_order_within_limit_and_end() {
    let env = three_region_env().await;
    env.with_world(|w| w.page_size = 2);
    let client = env.client(TIMEOUT).await;
    let all = client.raw_scan("", b"", b"", 100).await.expect("scan all");
    assert_eq!(
        keys(&all),
        ["a1", "a2", "a3", "b1", "b2", "b3", "c1", "c2", "c3"]
    );
    assert_eq!(all[4].1, b"v-b2");
    let stores: Vec<u64> = env.with_world(|w| w.stores_asked());
    assert!(
        stores.windows(2).all(|w| w[0] <= w[1]) && stores.contains(&2),
        "region by region: {stores:?}"
    );

    // (start, end, limit, the keys expected)
    type Case = (&'static [u8], &'static [u8], usize, &'static [&'static str]);
    let cases: [Case; 5] = [
        (b"a2", b"c2", 100, &["a2", "a3", "b1", "b2", "b3", "c1"]),
        (b"", b"", 4, &["a1", "a2", "a3", "b1"]),
        (b"a3", b"b2", 2, &["a3", "b1"]),
        (b"b", b"", 0, &[]),
        (b"b3\0", b"c", 10, &[]),
    ];
    for (start, end, limit, want) in cases {
        let got = client.raw_scan("", start, end, limit).await.expect("scan");
        assert_eq!(
            keys(&got),
            want,
            "scan from {start:?} to {end:?} limit {limit}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_scan_resumes_after_the_last_key_when_a_region_splits() {
    let env = three_region_env().await;
    env.with_world(|w| w.page_size = 2);
    // The second scan request to region 2 finds it split at b25.
    let mut seen_region_2 = 0;
    env.set_hook(move |world: &mut World, request: &Recorded| {
        if request.ctx.region_id == 2 {
            seen_region_2 += 1;
            if seen_region_2 == 2 {
                world.split(2, b"b25", 4);
            }
        }
        None
    });
    let client = env.client(TIMEOUT).await;
    let all = client.raw_scan("", b"", b"", 100).await.expect("scan");
    assert_eq!(
        keys(&all),
        ["a1", "a2", "a3", "b1", "b2", "b3", "c1", "c2", "c3"],
        "in order, no key twice"
    );
    let seen = requests(&env);
    let refused = seen
        .iter()
        .position(|r| {
            r.ctx.region_id == 2
                && r.ctx.region_epoch.map(|e| e.version) == Some(1)
                && r.key == b"b2\0"
        })
        .expect("the request that met the split");
    let retry = &seen[refused + 1];
    assert_eq!(retry.key, b"b2\0", "resumed after the last key, not at b");
    assert_eq!(
        (
            retry.ctx.region_id,
            retry.ctx.region_epoch.map(|e| e.version)
        ),
        (2, Some(2))
    );
    assert!(
        seen.iter().any(|r| r.ctx.region_id == 4 && r.key == b"b25"),
        "the new region is scanned: {seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_inspection_shows_the_schedulers_view() {
    let env = three_region_env().await;
    let client = env.client(TIMEOUT).await;
    let stores = client.stores().await.expect("stores");
    assert_eq!(
        stores.iter().map(|s| s.id).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert!(stores.iter().all(|s| !s.address.is_empty()));

    let regions = client.regions(b"", b"", 0).await.expect("regions");
    assert_eq!(
        regions.iter().map(|r| r.region.id).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(regions[1].leader, Some(peer(2, 2)));
    let some = client.regions(b"b5", b"", 1).await.expect("regions");
    assert_eq!(some.len(), 1);
    assert_eq!(some[0].region.id, 2, "the first region overlapping b5");

    let found: Option<RegionInfo> = client.region(b"c7").await.expect("region");
    let found = found.expect("a region holds c7");
    assert_eq!(found.region.id, 3);
    assert_eq!(found.leader, Some(peer(3, 3)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_connect_to_no_scheduler_times_out() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("bound address");
    drop(listener);
    let opts = crate::client::ClientOptions {
        timeout: Duration::from_millis(300),
        ..Default::default()
    };
    match crate::client::Client::connect(&addr.to_string(), opts).await {
        Err(Error::Timeout { op, last, .. }) => {
            assert_eq!(op, "connect");
            assert!(last.contains("GetMembers"), "{last}");
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
}
