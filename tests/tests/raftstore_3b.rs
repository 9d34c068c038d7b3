//! TinyKV's part 3B scenarios that need no region split
//! (`kv/test_raftstore/test_test.go`, the `Test…3B` functions without
//! `Split` in their name), ported: leader transfer and membership change
//! scripted through the scheduler's operators, and the generic scenario
//! with random conf changes under restarts, message loss, partitions and
//! log compaction.
//!
//! `test_transfer_leader_3b` and `test_basic_conf_change_3b` are written
//! out; the rest run the generic scenario (`tinykv_tests::cluster::generic`)
//! with `confchange`, at TinyKV's load (3 rounds of 5 s of client work).

use std::time::Duration;

use kvproto::metapb::Peer;
use raftstore::Config;
use tinykv_tests::cluster::generic::{GenericTestOptions, run_generic_test};
use tinykv_tests::cluster::{Cluster, FIRST_REGION_ID};

/// How long a store may take to catch up with what the cluster committed.
const CATCH_UP: Duration = Duration::from_secs(10);

/// The log limit of the snapshot scenarios: 20 entries, as in the 2C suite
/// (TinyKV passes 100; see `raftstore_2c.rs` for why we compact sooner).
const MAX_RAFT_LOG: u64 = 20;

/// TinyKV `NewPeer(storeID, peerID)`.
fn new_peer(store_id: u64, id: u64) -> Peer {
    Peer { id, store_id }
}

/// Leadership moves to each store's peer in turn, through the scheduler's
/// transfer-leader operator. TinyKV `TestTransferLeader3B`.
#[test]
fn test_transfer_leader_3b() {
    let cluster = Cluster::new(5, Config::for_tests(), "test_transfer_leader_3b");
    cluster.start();

    let region_id = cluster.region_for_key(b"").id;
    for id in 1..=5 {
        let peer = new_peer(id, id);
        cluster.must_transfer_leader(region_id, peer);
        // Beyond TinyKV, which trusts the scheduler's view: the peer that
        // answers a linearizable read is the new leader.
        assert_eq!(cluster.must_leader_by_read(region_id), peer);
    }
}

/// Peers removed down to one, then added back (one with a reused id, one
/// with a new id on a store that had another): each store's engine holds
/// the region's data exactly while it holds a peer. TinyKV
/// `TestBasicConfChange3B`.
#[test]
fn test_basic_conf_change_3b() {
    let cluster = Cluster::new(5, Config::for_tests(), "test_basic_conf_change_3b");
    cluster.start();
    let region_id = FIRST_REGION_ID;

    cluster.must_transfer_leader(region_id, new_peer(1, 1));
    for id in 2..=5 {
        cluster.must_remove_peer(region_id, new_peer(id, id));
    }

    // Region 1 has only peer (1, 1) now.
    cluster.must_put(b"k1", b"v1");
    cluster.must_get_none_on_store(2, b"k1", CATCH_UP);

    // Add peer (2, 2) back.
    cluster.must_add_peer(region_id, new_peer(2, 2));
    cluster.must_put(b"k2", b"v2");
    cluster.must_get(b"k2", b"v2");
    cluster.must_get_equal_on_store(2, b"k1", b"v1", CATCH_UP);
    cluster.must_get_equal_on_store(2, b"k2", b"v2", CATCH_UP);

    let (region, _) = cluster
        .scheduler_region(region_id)
        .expect("the scheduler knows the region");
    let conf_ver = region.region_epoch.unwrap_or_default().conf_ver;
    assert!(conf_ver > 1, "conf_ver {conf_ver} after five conf changes");

    // Store 5 has no peer.
    cluster.must_get_none_on_store(5, b"k1", CATCH_UP);

    // Add peer (3, 3), remove peer (2, 2).
    cluster.must_add_peer(region_id, new_peer(3, 3));
    cluster.must_remove_peer(region_id, new_peer(2, 2));

    cluster.must_put(b"k3", b"v3");
    cluster.must_get(b"k3", b"v3");
    cluster.must_get_equal_on_store(3, b"k1", b"v1", CATCH_UP);
    cluster.must_get_equal_on_store(3, b"k2", b"v2", CATCH_UP);
    cluster.must_get_equal_on_store(3, b"k3", b"v3", CATCH_UP);

    // Store 2's removed peer took its data with it.
    cluster.must_get_none_on_store(2, b"k1", CATCH_UP);
    cluster.must_get_none_on_store(2, b"k2", CATCH_UP);

    // Peer (2, 2) again: a removed peer's id comes back on its store.
    cluster.must_add_peer(region_id, new_peer(2, 2));
    cluster.must_get_equal_on_store(2, b"k1", b"v1", CATCH_UP);
    cluster.must_get_equal_on_store(2, b"k2", b"v2", CATCH_UP);
    cluster.must_get_equal_on_store(2, b"k3", b"v3", CATCH_UP);

    // Replace peer (2, 2) with peer (2, 4), then remove peer (3, 3).
    cluster.must_remove_peer(region_id, new_peer(2, 2));
    cluster.must_add_peer(region_id, new_peer(2, 4));
    cluster.must_remove_peer(region_id, new_peer(3, 3));

    cluster.must_put(b"k4", b"v4");
    cluster.must_get_equal_on_store(2, b"k1", b"v1", CATCH_UP);
    cluster.must_get_equal_on_store(2, b"k4", b"v4", CATCH_UP);
    cluster.must_get_none_on_store(3, b"k1", CATCH_UP);
    cluster.must_get_none_on_store(3, b"k4", CATCH_UP);
}

/// Test: restarts, snapshots, conf change, one client (3B). TinyKV
/// `TestConfChangeRecover3B`.
#[test]
fn test_conf_change_recover_3b() {
    run_generic_test(
        "test_conf_change_recover_3b",
        &GenericTestOptions {
            crash: true,
            confchange: true,
            ..Default::default()
        },
    );
}

/// Test: restarts, snapshots, conf change, many clients (3B). TinyKV
/// `TestConfChangeRecoverManyClients3B`.
#[test]
fn test_conf_change_recover_many_clients_3b() {
    run_generic_test(
        "test_conf_change_recover_many_clients_3b",
        &GenericTestOptions {
            clients: 20,
            crash: true,
            confchange: true,
            ..Default::default()
        },
    );
}

/// Test: unreliable net, snapshots, conf change, many clients (3B). TinyKV
/// `TestConfChangeUnreliable3B`.
#[test]
fn test_conf_change_unreliable_3b() {
    run_generic_test(
        "test_conf_change_unreliable_3b",
        &GenericTestOptions {
            clients: 5,
            unreliable: true,
            confchange: true,
            ..Default::default()
        },
    );
}

/// Test: unreliable net, restarts, snapshots, conf change, many clients
/// (3B). TinyKV `TestConfChangeUnreliableRecover3B`.
#[test]
fn test_conf_change_unreliable_recover_3b() {
    run_generic_test(
        "test_conf_change_unreliable_recover_3b",
        &GenericTestOptions {
            clients: 5,
            unreliable: true,
            crash: true,
            confchange: true,
            ..Default::default()
        },
    );
}

/// Test: unreliable net, restarts, snapshots, conf change, many clients
/// (3B), with log compaction. TinyKV
/// `TestConfChangeSnapshotUnreliableRecover3B`.
#[test]
fn test_conf_change_snapshot_unreliable_recover_3b() {
    run_generic_test(
        "test_conf_change_snapshot_unreliable_recover_3b",
        &GenericTestOptions {
            clients: 5,
            unreliable: true,
            crash: true,
            max_raft_log: Some(MAX_RAFT_LOG),
            confchange: true,
            ..Default::default()
        },
    );
}

/// Test: unreliable net, restarts, partitions, snapshots, conf change, many
/// clients (3B). TinyKV
/// `TestConfChangeSnapshotUnreliableRecoverConcurrentPartition3B`.
#[test]
fn test_conf_change_snapshot_unreliable_recover_concurrent_partition_3b() {
    run_generic_test(
        "test_conf_change_snapshot_unreliable_recover_concurrent_partition_3b",
        &GenericTestOptions {
            clients: 5,
            unreliable: true,
            crash: true,
            partitions: true,
            max_raft_log: Some(MAX_RAFT_LOG),
            confchange: true,
            ..Default::default()
        },
    );
}
