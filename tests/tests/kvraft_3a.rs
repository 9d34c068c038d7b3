//! MIT 6.824's Lab 3A (kvraft without snapshots, `src/kvraft/test_test.go`,
//! 2020), ported onto the region/leader test cluster with the Clerk
//! (`tinykv::cluster::Clerk`): the lab's servers are our stores, its Clerk
//! ours, `maxraftstate = -1` is log GC off.
//!
//! All but `test_unreliable_one_key_3a` and `test_one_partition_3a` run
//! the lab's `GenericTest` or `GenericTestLinearizability`
//! (`tinykv_tests::cluster::kvraft`), naming the flags the lab passes.
//! `TestSpeed3A` is a benchmark (`tinykv-bench --workload clerk`), not a
//! test. `GENERIC_QUICK=1` shortens the rounds for local iteration.

use std::sync::Arc;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use tinykv::cluster::ClientLink;
use tinykv_tests::cluster::FIRST_REGION_ID;
use tinykv_tests::cluster::generic::{check_concurrent_appends, client_value, seed_from_env};
use tinykv_tests::cluster::kvraft::{
    KvraftTestOptions, must_append, must_check, must_get, must_put, new_clerk, new_clerk_to,
    new_kvraft_cluster, new_link, run_generic_test, run_linearizability_test, set_network,
};
use tinykv_tests::raft_sim::rng::SimRng;

/// How long a request stuck in a minority may take to complete once the
/// partition heals (the lab allows its election timeout plus 3 s).
const AFTER_HEAL: Duration = Duration::from_secs(15);

/// How long requests in a minority must stay unanswered (the lab's 1 s).
const NO_PROGRESS: Duration = Duration::from_secs(1);

/// Test: one client (3A). Lab `TestBasic3A`.
#[test]
fn test_basic_3a() {
    run_generic_test("test_basic_3a", &KvraftTestOptions::default());
}

/// Test: many clients (3A). Lab `TestConcurrent3A`.
#[test]
fn test_concurrent_3a() {
    run_generic_test(
        "test_concurrent_3a",
        &KvraftTestOptions {
            clients: 5,
            ..Default::default()
        },
    );
}

/// Test: unreliable net, many clients (3A). Lab `TestUnreliable3A`.
#[test]
fn test_unreliable_3a() {
    run_generic_test(
        "test_unreliable_3a",
        &KvraftTestOptions {
            clients: 5,
            unreliable: true,
            ..Default::default()
        },
    );
}

/// Test: concurrent append to same key, unreliable (3A): five clients
/// append ten values each to one key over an unreliable network (3 stores,
/// as the lab); each client's values must all be there, once, in order.
/// Lab `TestUnreliableOneKey3A`.
#[test]
fn test_unreliable_one_key_3a() {
    const CLIENTS: usize = 5;
    const UPTO: usize = 10;
    let seed = seed_from_env();
    eprintln!("test_unreliable_one_key_3a: seed {seed}");
    let mut rng = SimRng::new(seed);
    let cluster = new_kvraft_cluster(3, None, "test_unreliable_one_key_3a");
    cluster.reseed_network(rng.fork());
    set_network(&cluster, true, None);
    let mut ck = new_clerk(&cluster, new_link(true, &mut rng));
    must_put(&mut ck, "k", "");

    thread::scope(|s| {
        for client in 0..CLIENTS {
            let link = new_link(true, &mut rng);
            let cluster = &cluster;
            s.spawn(move || {
                let mut ck = new_clerk(cluster, link);
                for n in 0..UPTO {
                    must_append(&mut ck, "k", &client_value(client, n));
                }
            });
        }
    });

    let value = must_get(&mut ck, "k");
    if let Err(e) = check_concurrent_appends(&value, &[UPTO; CLIENTS]) {
        panic!("seed {seed}: {e}");
    }
}

/// Test: progress in majority, no progress in minority, completion after
/// heal (3A). The old leader ends up in the minority with two Clerks that
/// reach only the minority: their Put and Get must not complete while the
/// majority goes on, and both complete once the partition heals and the
/// Clerks reach every store. Lab `TestOnePartition3A`.
#[test]
fn test_one_partition_3a() {
    let cluster = new_kvraft_cluster(5, None, "test_one_partition_3a");
    let mut ck = new_clerk(&cluster, Arc::new(ClientLink::new()));
    must_put(&mut ck, "1", "13");

    // The lab's `make_partition`: the leader in the minority.
    let leader = cluster.must_leader_by_read(FIRST_REGION_ID).store_id;
    let others: Vec<u64> = cluster
        .store_ids()
        .into_iter()
        .filter(|&s| s != leader)
        .collect();
    let p1 = others[..3].to_vec();
    let p2 = vec![others[3], leader];
    cluster.partition(vec![p1.clone(), p2.clone()]);

    let mut ckp1 = new_clerk_to(&cluster, &p1);
    let mut ckp2a = new_clerk_to(&cluster, &p2);
    let mut ckp2b = new_clerk_to(&cluster, &p2);
    let (link2a, link2b) = (ckp2a.link(), ckp2b.link());

    // Progress in the majority.
    must_put(&mut ckp1, "1", "14");
    must_check(&mut ckp1, "1", "14");

    thread::scope(|s| {
        let (done_tx, done_rx) = mpsc::channel();
        let done_put = done_tx.clone();
        s.spawn(move || {
            must_put(&mut ckp2a, "1", "15");
            let _ = done_put.send("Put");
        });
        s.spawn(move || {
            must_get(&mut ckp2b, "1");
            let _ = done_tx.send("Get");
        });

        // No progress in the minority.
        if let Ok(what) = done_rx.recv_timeout(NO_PROGRESS) {
            panic!("{what} in the minority completed");
        }
        must_check(&mut ckp1, "1", "14");
        must_put(&mut ckp1, "1", "16");
        must_check(&mut ckp1, "1", "16");
        if let Ok(what) = done_rx.try_recv() {
            panic!("{what} in the minority completed");
        }

        // Completion after heal.
        cluster.clear_filters();
        link2a.connect_all();
        link2b.connect_all();
        let mut completed = Vec::new();
        while completed.len() < 2 {
            match done_rx.recv_timeout(AFTER_HEAL) {
                Ok(what) => completed.push(what),
                Err(_) => panic!(
                    "after the heal only {completed:?} of the minority's Put and Get completed \
                     within {AFTER_HEAL:?}"
                ),
            }
        }
    });

    must_check(&mut ck, "1", "15");
}

/// Test: partitions, one client (3A). Lab `TestManyPartitionsOneClient3A`.
#[test]
fn test_many_partitions_one_client_3a() {
    run_generic_test(
        "test_many_partitions_one_client_3a",
        &KvraftTestOptions {
            partitions: true,
            ..Default::default()
        },
    );
}

/// Test: partitions, many clients (3A). Lab
/// `TestManyPartitionsManyClients3A`.
#[test]
fn test_many_partitions_many_clients_3a() {
    run_generic_test(
        "test_many_partitions_many_clients_3a",
        &KvraftTestOptions {
            clients: 5,
            partitions: true,
            ..Default::default()
        },
    );
}

/// Test: restarts, one client (3A). Lab `TestPersistOneClient3A`.
#[test]
fn test_persist_one_client_3a() {
    run_generic_test(
        "test_persist_one_client_3a",
        &KvraftTestOptions {
            crash: true,
            ..Default::default()
        },
    );
}

/// Test: restarts, many clients (3A). Lab `TestPersistConcurrent3A`.
#[test]
fn test_persist_concurrent_3a() {
    run_generic_test(
        "test_persist_concurrent_3a",
        &KvraftTestOptions {
            clients: 5,
            crash: true,
            ..Default::default()
        },
    );
}

/// Test: unreliable net, restarts, many clients (3A). Lab
/// `TestPersistConcurrentUnreliable3A`.
#[test]
fn test_persist_concurrent_unreliable_3a() {
    run_generic_test(
        "test_persist_concurrent_unreliable_3a",
        &KvraftTestOptions {
            clients: 5,
            unreliable: true,
            crash: true,
            ..Default::default()
        },
    );
}

/// Test: restarts, partitions, many clients (3A). Lab
/// `TestPersistPartition3A`.
#[test]
fn test_persist_partition_3a() {
    run_generic_test(
        "test_persist_partition_3a",
        &KvraftTestOptions {
            clients: 5,
            crash: true,
            partitions: true,
            ..Default::default()
        },
    );
}

/// Test: unreliable net, restarts, partitions, many clients (3A). Lab
/// `TestPersistPartitionUnreliable3A`.
#[test]
fn test_persist_partition_unreliable_3a() {
    run_generic_test(
        "test_persist_partition_unreliable_3a",
        &KvraftTestOptions {
            clients: 5,
            unreliable: true,
            crash: true,
            partitions: true,
            ..Default::default()
        },
    );
}

/// Test: unreliable net, restarts, partitions, linearizability checks
/// (3A): 15 clients on 7 stores, as the lab. Lab
/// `TestPersistPartitionUnreliableLinearizable3A`.
#[test]
fn test_persist_partition_unreliable_linearizable_3a() {
    run_linearizability_test(
        "test_persist_partition_unreliable_linearizable_3a",
        &KvraftTestOptions {
            clients: 15,
            stores: 7,
            unreliable: true,
            crash: true,
            partitions: true,
            ..Default::default()
        },
    );
}
