//! TinyKV's part 2B scenarios (`kv/test_raftstore/test_test.go`, the
//! `Test…2B` functions), ported: a replicated store of five stores under
//! concurrent clients, message loss, partitions and restarts.
//!
//! All but `test_one_partition_2b` run the generic scenario
//! (`tinykv_tests::cluster::generic`); each names the options TinyKV passes
//! as flags. Log GC stays off (TinyKV's `maxraftlog = -1`). Clients work
//! 3 × 5 s per test, as in TinyKV, on a clock ten times faster (10 ms
//! ticks, a 100 ms election timeout), so a round sees about 25 partitions or
//! drop filters; `GENERIC_QUICK=1` shortens the rounds for local iteration.

use std::time::Duration;

use raftstore::Config;
use tinykv_tests::cluster::generic::{GenericTestOptions, run_generic_test};
use tinykv_tests::cluster::{Cluster, FIRST_REGION_ID};

/// How long a store may take to catch up with what the cluster committed.
const CATCH_UP: Duration = Duration::from_secs(10);

/// Test: one client (2B). TinyKV `TestBasic2B`.
#[test]
fn test_basic_2b() {
    run_generic_test("test_basic_2b", &GenericTestOptions::default());
}

/// Test: many clients (2B). TinyKV `TestConcurrent2B`.
#[test]
fn test_concurrent_2b() {
    run_generic_test(
        "test_concurrent_2b",
        &GenericTestOptions {
            clients: 5,
            ..Default::default()
        },
    );
}

/// Test: unreliable net, many clients (2B). TinyKV `TestUnreliable2B`.
#[test]
fn test_unreliable_2b() {
    run_generic_test(
        "test_unreliable_2b",
        &GenericTestOptions {
            clients: 5,
            unreliable: true,
            ..Default::default()
        },
    );
}

/// Submits requests with the leader first in the majority, then in the
/// minority: a minority must not change what the majority sees, and the old
/// leader catches up once the partition heals. TinyKV `TestOnePartition2B`.
#[test]
fn test_one_partition_2b() {
    let cluster = Cluster::new(5, Config::for_tests(), "test_one_partition_2b");
    cluster.start();

    let region = cluster.region_for_key(b"");
    assert_eq!(region.id, FIRST_REGION_ID);
    let leader = cluster.must_leader_by_read(region.id);
    let mut s1 = vec![leader.store_id];
    let mut s2 = Vec::new();
    for peer in region.peers.iter().filter(|p| p.id != leader.id) {
        if s1.len() < 3 {
            s1.push(peer.store_id);
        } else {
            s2.push(peer.store_id);
        }
    }

    // Leader in the majority: the partition changes nothing for clients,
    // and the minority never sees the write.
    cluster.partition(vec![s1.clone(), s2.clone()]);
    cluster.must_put(b"k1", b"v1");
    cluster.must_get(b"k1", b"v1");
    cluster.must_get_none_on_store(s2[0], b"k1", CATCH_UP);
    cluster.must_get_none_on_store(s2[1], b"k1", CATCH_UP);
    cluster.clear_filters();

    // Old leader in the minority: the majority elects a new one, and the
    // minority keeps the old value.
    s2.push(s1.pop().expect("s1 has three stores"));
    cluster.partition(vec![s1.clone(), s2.clone()]);
    cluster.must_get(b"k1", b"v1");
    cluster.must_put(b"k1", b"changed");
    cluster.must_get_equal_on_store(s1[0], b"k1", b"v1", CATCH_UP);
    cluster.must_get_equal_on_store(s1[1], b"k1", b"v1", CATCH_UP);
    cluster.clear_filters();

    // Healed: the old leader syncs.
    cluster.must_put(b"k2", b"v2");
    cluster.must_get_equal_on_store(s1[0], b"k2", b"v2", CATCH_UP);
    cluster.must_get_equal_on_store(s1[0], b"k1", b"changed", CATCH_UP);
}

/// Test: partitions, one client (2B). TinyKV `TestManyPartitionsOneClient2B`.
#[test]
fn test_many_partitions_one_client_2b() {
    run_generic_test(
        "test_many_partitions_one_client_2b",
        &GenericTestOptions {
            partitions: true,
            ..Default::default()
        },
    );
}

/// Test: partitions, many clients (2B). TinyKV `TestManyPartitionsManyClients2B`.
#[test]
fn test_many_partitions_many_clients_2b() {
    run_generic_test(
        "test_many_partitions_many_clients_2b",
        &GenericTestOptions {
            clients: 5,
            partitions: true,
            ..Default::default()
        },
    );
}

/// Test: restarts, one client (2B). TinyKV `TestPersistOneClient2B`.
#[test]
fn test_persist_one_client_2b() {
    run_generic_test(
        "test_persist_one_client_2b",
        &GenericTestOptions {
            crash: true,
            ..Default::default()
        },
    );
}

/// Test: restarts, many clients (2B). TinyKV `TestPersistConcurrent2B`.
#[test]
fn test_persist_concurrent_2b() {
    run_generic_test(
        "test_persist_concurrent_2b",
        &GenericTestOptions {
            clients: 5,
            crash: true,
            ..Default::default()
        },
    );
}

/// Test: unreliable net, restarts, many clients (2B). TinyKV
/// `TestPersistConcurrentUnreliable2B`.
#[test]
fn test_persist_concurrent_unreliable_2b() {
    run_generic_test(
        "test_persist_concurrent_unreliable_2b",
        &GenericTestOptions {
            clients: 5,
            unreliable: true,
            crash: true,
            ..Default::default()
        },
    );
}

/// Test: restarts, partitions, many clients (2B). TinyKV `TestPersistPartition2B`.
#[test]
fn test_persist_partition_2b() {
    run_generic_test(
        "test_persist_partition_2b",
        &GenericTestOptions {
            clients: 5,
            crash: true,
            partitions: true,
            ..Default::default()
        },
    );
}

/// Test: unreliable net, restarts, partitions, many clients (2B). TinyKV
/// `TestPersistPartitionUnreliable2B`.
#[test]
fn test_persist_partition_unreliable_2b() {
    run_generic_test(
        "test_persist_partition_unreliable_2b",
        &GenericTestOptions {
            clients: 5,
            unreliable: true,
            crash: true,
            partitions: true,
            ..Default::default()
        },
    );
}
