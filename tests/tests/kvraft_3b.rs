//! MIT 6.824's Lab 3B (kvraft with snapshots, `src/kvraft/test_test.go`,
//! 2020), ported onto the region/leader test cluster with the Clerk. The
//! lab's `maxraftstate` (the raft state size past which a server
//! snapshots) is the size limit of log GC (`kvraft_config`): a leader
//! compacts the log past it, and a follower behind the compacted log gets
//! the region's snapshot.
//!
//! `TestSpeed3B` is a benchmark (`tinykv-bench --workload clerk`), not a
//! test. `GENERIC_QUICK=1` shortens the generic rounds for local iteration.

use tinykv_tests::cluster::FIRST_REGION_ID;
use tinykv_tests::cluster::kvraft::{
    KvraftTestOptions, LOG_BOUND_FACTOR, LOG_SETTLE, must_check, must_put, must_trim_logs_to,
    new_clerk_to, new_kvraft_cluster, region_data_bytes, run_generic_test,
    run_linearizability_test, session_table_bytes, set_network,
};

/// The lab's `maxraftstate` in the 3B tests.
const MAX_RAFT_STATE: u64 = 1000;

/// The lab's bound on a snapshot in `TestSnapshotSize3B`.
const MAX_SNAPSHOT_STATE: u64 = 500;

/// Test: InstallSnapshot RPC (3B): a store partitioned away while the
/// majority writes and compacts its log must catch up by snapshot when it
/// is needed for a majority again (3 stores, as the lab). Also checks that
/// the majority trims its log although the minority does not answer. Lab
/// `TestSnapshotRPC3B`.
#[test]
fn test_snapshot_rpc_3b() {
    let cluster = new_kvraft_cluster(3, Some(MAX_RAFT_STATE), "test_snapshot_rpc_3b");
    let mut ck = new_clerk_to(&cluster, &cluster.store_ids());
    must_put(&mut ck, "a", "A");
    must_check(&mut ck, "a", "A");

    // A bunch of puts into the majority partition.
    set_network(&cluster, false, Some(vec![vec![1, 2], vec![3]]));
    {
        let mut ck1 = new_clerk_to(&cluster, &[1, 2]);
        for i in 0..50 {
            must_put(&mut ck1, &i.to_string(), &i.to_string());
        }
        must_put(&mut ck1, "b", "B");
    }

    // The majority has thrown away most of its log entries.
    must_trim_logs_to(&cluster, LOG_BOUND_FACTOR * MAX_RAFT_STATE, LOG_SETTLE);
    let lagging_last = cluster
        .raft_local_state(3, FIRST_REGION_ID)
        .expect("store 3 holds the region")
        .last_index;
    cluster.must_compact_past(&[1, 2], FIRST_REGION_ID, lagging_last, LOG_SETTLE);

    // A group that needs the lagging store, which must catch up.
    set_network(&cluster, false, Some(vec![vec![1, 3], vec![2]]));
    {
        let mut ck1 = new_clerk_to(&cluster, &[1, 3]);
        must_put(&mut ck1, "c", "C");
        must_put(&mut ck1, "d", "D");
        must_check(&mut ck1, "a", "A");
        must_check(&mut ck1, "b", "B");
        must_check(&mut ck1, "1", "1");
        must_check(&mut ck1, "49", "49");
    }
    cluster.must_get_equal_on_store(3, b"49", b"49", LOG_SETTLE);

    // Now everybody.
    set_network(&cluster, false, None);
    must_put(&mut ck, "e", "E");
    must_check(&mut ck, "c", "C");
    must_check(&mut ck, "e", "E");
    must_check(&mut ck, "1", "1");
}

/// Test: snapshot size is reasonable (3B): 800 writes and reads of one
/// small key leave a small log and a small snapshot (3 stores, as the
/// lab). The snapshot is measured as what one would carry on each store:
/// the region's keys and values in the data column families plus its
/// session table. Lab `TestSnapshotSize3B`.
#[test]
fn test_snapshot_size_3b() {
    let cluster = new_kvraft_cluster(3, Some(MAX_RAFT_STATE), "test_snapshot_size_3b");
    let mut ck = new_clerk_to(&cluster, &cluster.store_ids());
    for _ in 0..200 {
        must_put(&mut ck, "x", "0");
        must_check(&mut ck, "x", "0");
        must_put(&mut ck, "x", "1");
        must_check(&mut ck, "x", "1");
    }

    // The stores have thrown away most of their log entries.
    must_trim_logs_to(&cluster, LOG_BOUND_FACTOR * MAX_RAFT_STATE, LOG_SETTLE);

    // The snapshots are not unreasonably large.
    for store_id in cluster.store_ids() {
        let data = region_data_bytes(&cluster, store_id, FIRST_REGION_ID);
        let sessions = session_table_bytes(&cluster, store_id, FIRST_REGION_ID);
        eprintln!(
            "store {store_id}: snapshot payload {data} bytes of data, {sessions} of sessions"
        );
        assert!(
            data + sessions <= MAX_SNAPSHOT_STATE,
            "store {store_id}: snapshot too large ({data} + {sessions} > {MAX_SNAPSHOT_STATE})"
        );
    }
}

/// Test: restarts, snapshots, one client (3B). Lab `TestSnapshotRecover3B`.
#[test]
fn test_snapshot_recover_3b() {
    run_generic_test(
        "test_snapshot_recover_3b",
        &KvraftTestOptions {
            crash: true,
            max_raft_state: Some(MAX_RAFT_STATE),
            ..Default::default()
        },
    );
}

/// Test: restarts, snapshots, many clients (3B). Lab
/// `TestSnapshotRecoverManyClients3B`.
#[test]
fn test_snapshot_recover_many_clients_3b() {
    run_generic_test(
        "test_snapshot_recover_many_clients_3b",
        &KvraftTestOptions {
            clients: 20,
            crash: true,
            max_raft_state: Some(MAX_RAFT_STATE),
            ..Default::default()
        },
    );
}

/// Test: unreliable net, snapshots, many clients (3B). Lab
/// `TestSnapshotUnreliable3B`.
#[test]
fn test_snapshot_unreliable_3b() {
    run_generic_test(
        "test_snapshot_unreliable_3b",
        &KvraftTestOptions {
            clients: 5,
            unreliable: true,
            max_raft_state: Some(MAX_RAFT_STATE),
            ..Default::default()
        },
    );
}

/// Test: unreliable net, restarts, snapshots, many clients (3B). Lab
/// `TestSnapshotUnreliableRecover3B`.
#[test]
fn test_snapshot_unreliable_recover_3b() {
    run_generic_test(
        "test_snapshot_unreliable_recover_3b",
        &KvraftTestOptions {
            clients: 5,
            unreliable: true,
            crash: true,
            max_raft_state: Some(MAX_RAFT_STATE),
            ..Default::default()
        },
    );
}

/// Test: unreliable net, restarts, partitions, snapshots, many clients
/// (3B). Lab `TestSnapshotUnreliableRecoverConcurrentPartition3B`.
#[test]
fn test_snapshot_unreliable_recover_concurrent_partition_3b() {
    run_generic_test(
        "test_snapshot_unreliable_recover_concurrent_partition_3b",
        &KvraftTestOptions {
            clients: 5,
            unreliable: true,
            crash: true,
            partitions: true,
            max_raft_state: Some(MAX_RAFT_STATE),
            ..Default::default()
        },
    );
}

/// Test: unreliable net, restarts, partitions, snapshots, linearizability
/// checks (3B): 15 clients on 7 stores, as the lab. Lab
/// `TestSnapshotUnreliableRecoverConcurrentPartitionLinearizable3B`.
#[test]
fn test_snapshot_unreliable_recover_concurrent_partition_linearizable_3b() {
    run_linearizability_test(
        "test_snapshot_unreliable_recover_concurrent_partition_linearizable_3b",
        &KvraftTestOptions {
            clients: 15,
            stores: 7,
            unreliable: true,
            crash: true,
            partitions: true,
            max_raft_state: Some(MAX_RAFT_STATE),
            ..Default::default()
        },
    );
}
