//! The replicated store end to end: three stores in one process.

use std::sync::Arc;

use raftstore::Config;
use tinykv_tests::cluster::Cluster;
use tinykv_tests::cluster::filter::IsolateFilter;

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
