//! Raft-log GC end to end: compacted entries leave the raft CF, also those
//! a crash left behind.

use std::time::{Duration, Instant};

use kvproto::eraftpb::Entry;
use raftstore::Config;
use storage::{CF_RAFT, keys};
use tinykv_tests::cluster::generic::{KeptLog, kept_logs};
use tinykv_tests::cluster::{Cluster, FIRST_REGION_ID};

const TIMEOUT: Duration = Duration::from_secs(10);

/// Store 1's log of the first region, once `done` holds for it.
fn wait_for_log(cluster: &Cluster, what: &str, done: impl Fn(&KeptLog) -> bool) -> KeptLog {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let log = kept_logs(cluster)
            .into_iter()
            .find(|l| l.store_id == 1 && l.region_id == FIRST_REGION_ID)
            .expect("store 1 has the first region");
        if done(&log) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; last seen: {log:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A crash between writing a moved truncated state and the GC worker's
/// delete leaves compacted entries in the raft CF (the GC task was only in
/// memory). The restarted peer deletes them at once — an idle region may
/// never compact again (the 3B split scenario caught one such leftover) —
/// and later compactions go on from there.
#[test]
fn entries_a_crash_left_behind_are_deleted_at_restart() {
    let mut cfg = Config::for_tests();
    cfg.raft_log_gc_count_limit = 10;
    let cluster = Cluster::new(1, cfg, "log_gc_after_crash");
    cluster.start();

    for i in 0..30 {
        cluster.must_put(format!("k{i:02}").as_bytes(), b"v");
    }
    let compacted = wait_for_log(&cluster, "a compaction and its GC", |l| {
        l.truncated > keys::RAFT_INIT_LOG_INDEX && !l.holds_compacted()
    });

    // Put the compacted entries back, as if the GC task was lost.
    cluster.stop_store(1);
    {
        let engine = cluster.open_stopped_engine(1);
        let mut wb = engine.write_batch();
        for index in keys::RAFT_INIT_LOG_INDEX + 1..=compacted.truncated {
            let entry = Entry {
                index,
                term: 6,
                ..Default::default()
            };
            wb.put_msg_cf(CF_RAFT, &keys::raft_log_key(FIRST_REGION_ID, index), &entry)
                .expect("put entry");
        }
        engine.write(wb, true).expect("write entries");
    }
    cluster.start_store(1);
    wait_for_log(
        &cluster,
        "the restarted peer to delete every compacted entry",
        |l| l.truncated == compacted.truncated && !l.holds_compacted(),
    );

    for i in 30..60 {
        cluster.must_put(format!("k{i:02}").as_bytes(), b"v");
    }
    wait_for_log(
        &cluster,
        "the next compaction to delete every compacted entry",
        |l| l.truncated > compacted.truncated && !l.holds_compacted(),
    );
}
