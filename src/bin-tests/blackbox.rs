//! The real binaries as processes — `tinykv-scheduler` and three
//! `tinykv-server`s on loopback, each in its own temp dir — driven only
//! through the client and `kill -9`:
//!
//! 1. the first store bootstraps the only region; the scheduler grows it to
//!    3 replicas;
//! 2. 1,000 writes are acknowledged through the client;
//! 3. `kill -9` of the leader's store; writes go on once a new leader is
//!    elected; the killed store restarts and catches up;
//! 4. `kill -9` of a follower while it receives a snapshot (it was down
//!    while the log was compacted past it); it restarts and catches up;
//! 5. `kill -9` of the scheduler; after its restart no id is handed out
//!    twice and no store or region is forgotten;
//! 6. every store stops and starts again; every acknowledged write reads
//!    back with its last value.
//!
//! "Caught up" is checked from outside: with the caught-up store and one
//! other alive and the third killed, reads (which go through the raft log)
//! succeed, so the store's log matches the leader's up to the commit index.
//!
//! The binaries are found beside this test's executable: `cargo test
//! --workspace` builds every package's binaries first; run alone, build
//! them with `cargo build --workspace --bins` so none is stale.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use kvproto::schedulerpb::scheduler_client::SchedulerClient;
use kvproto::schedulerpb::{AllocIdRequest, GetMembersRequest, RequestHeader};
use tempfile::TempDir;
use tinykv::client::{Client, ClientOptions};
use tinykv::playground::{
    Binaries, ClusterDir, Layout, ProcessCluster, ProcessClusterOptions, wait_until_serving,
};
use tokio::time::Instant;

const STORES: usize = 3;
const SERVE_TIMEOUT: Duration = Duration::from_secs(120);
const WAIT: Duration = Duration::from_secs(60);
/// The same key is written again now and then, so "its last value" means
/// something.
const KEY_SPACE: usize = 600;

/// Fast ticks so elections take a fraction of a second; a short log kept,
/// so a store down for a few hundred writes catches up by snapshot.
const SERVER_CONFIG: &str = "\
[raftstore]
raft-base-tick-interval-ms = 20
raft-log-gc-tick-ticks = 5
raft-log-gc-count-limit = 100
";

fn progress(step: &str) {
    eprintln!("[blackbox] {step}");
}

fn key(i: usize) -> Vec<u8> {
    format!("bb-{i:05}").into_bytes()
}

/// What every key may hold: its last acknowledged value, and values whose
/// write failed (outcome unknown) after it.
#[derive(Default)]
struct Model {
    acked: HashMap<Vec<u8>, Vec<u8>>,
    unknown: HashMap<Vec<u8>, Vec<Vec<u8>>>,
    writes: usize,
}

impl Model {
    fn acked(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.unknown.remove(&key);
        self.acked.insert(key, value);
        self.writes += 1;
    }

    fn unknown(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.unknown.entry(key).or_default().push(value);
    }

    fn check(&self, key: &[u8], got: Option<&[u8]>) -> Result<(), String> {
        let want = self.acked.get(key);
        if got == want.map(Vec::as_slice) {
            return Ok(());
        }
        if let Some(got) = got
            && self
                .unknown
                .get(key)
                .is_some_and(|vs| vs.iter().any(|v| v == got))
        {
            return Ok(());
        }
        Err(format!(
            "{}: read {:?}, last acknowledged {:?}",
            String::from_utf8_lossy(key),
            got.map(String::from_utf8_lossy),
            want.map(|v| String::from_utf8_lossy(v))
        ))
    }
}

/// Writes `count` values from `writers` concurrent tasks, each on its own
/// keys (so a key's last acknowledged value is well defined), and records
/// every outcome. Returns how many writes failed.
async fn write_batch(
    client: &Client,
    model: &mut Model,
    round: &str,
    start: usize,
    count: usize,
    value_size: usize,
    writers: usize,
) -> usize {
    let mut tasks = Vec::new();
    for w in 0..writers {
        let client = client.clone();
        let round = round.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for n in (start + w..start + count).step_by(writers) {
                let k = key(n % KEY_SPACE);
                let mut v = format!("{round}-{n}-").into_bytes();
                v.resize(value_size.max(v.len()), b'.');
                let ok = client.raw_put("", &k, &v).await.is_ok();
                outcomes.push((k, v, ok));
            }
            outcomes
        }));
    }
    let mut failed = 0;
    for task in tasks {
        for (k, v, ok) in task.await.expect("writer task") {
            if ok {
                model.acked(k, v);
            } else {
                failed += 1;
                model.unknown(k, v);
            }
        }
    }
    failed
}

/// Reads every key the model knows and checks it.
async fn check_all(client: &Client, model: &Model, when: &str) {
    let keys: HashSet<&Vec<u8>> = model.acked.keys().chain(model.unknown.keys()).collect();
    for k in keys {
        let got = client
            .raw_get("", k)
            .await
            .unwrap_or_else(|e| panic!("{when}: reading {}: {e}", String::from_utf8_lossy(k)));
        if let Err(e) = model.check(k, got.as_deref()) {
            panic!("{when}: {e}");
        }
    }
    progress(&format!("{when}: all {} keys read back", model.acked.len()));
}

/// The store (1-based) leading the region, as the scheduler last heard.
async fn leader_store(client: &Client, layout: &Layout) -> usize {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Ok(Some(info)) = client.region(b"").await
            && let Some(leader) = info.leader
            && let Ok(stores) = client.stores().await
            && let Some(store) = stores.iter().find(|s| s.id == leader.store_id)
            && let Some(n) = (1..=layout.stores()).find(|&n| layout.store_addr(n) == store.address)
        {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "no leader known to the scheduler"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether store n's snapshot dir holds a snapshot being received or
/// applied (TinyKV's receive-side files: `rcv_…`).
fn receiving_snapshot(data: &Path) -> bool {
    std::fs::read_dir(data.join("snap")).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|e| e.file_name().to_string_lossy().starts_with("rcv_"))
    })
}

/// Every id the scheduler has handed out so far, as far as a client sees
/// them: stores, regions, peers.
async fn ids_in_use(client: &Client) -> (Vec<u64>, u64, u64) {
    let stores: Vec<u64> = client
        .stores()
        .await
        .expect("GetAllStores")
        .iter()
        .map(|s| s.id)
        .collect();
    let info = client
        .region(b"")
        .await
        .expect("GetRegion")
        .expect("a region");
    let max_peer = info.region.peers.iter().map(|p| p.id).max().unwrap_or(0);
    (stores, info.region.id, max_peer)
}

async fn alloc_id(scheduler_addr: &str) -> u64 {
    let deadline = Instant::now() + WAIT;
    loop {
        let attempt = async {
            let mut c = SchedulerClient::connect(format!("http://{scheduler_addr}"))
                .await
                .ok()?;
            let members = c
                .get_members(GetMembersRequest { header: None })
                .await
                .ok()?;
            let cluster_id = members.into_inner().header.map(|h| h.cluster_id)?;
            let resp = c
                .alloc_id(AllocIdRequest {
                    header: Some(RequestHeader { cluster_id }),
                })
                .await
                .ok()?;
            Some(resp.into_inner().id)
        };
        if let Some(id) = attempt.await.filter(|id| *id != 0) {
            return id;
        }
        assert!(Instant::now() < deadline, "AllocID never answered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Kills store `victim` and checks every key reads back, which needs the
/// other two (one of them the store under test) to form a quorum; then
/// restarts it.
async fn prove_caught_up(
    cluster: &mut ProcessCluster,
    client: &Client,
    model: &Model,
    victim: usize,
    what: &str,
) {
    cluster.kill_store(victim).expect("kill -9");
    check_all(client, model, &format!("{what} (store {victim} killed)")).await;
    cluster.start_store(victim).expect("restart");
}

/// Keeps the cluster's folder, and prints the tail of every process's log,
/// if the test panics; deletes it otherwise.
struct KeepLogsOnPanic {
    tmp: Option<TempDir>,
    logs: std::path::PathBuf,
}

impl Drop for KeepLogsOnPanic {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        if let Some(tmp) = self.tmp.take() {
            let _ = tmp.keep();
        }
        let Ok(entries) = std::fs::read_dir(&self.logs) else {
            return;
        };
        for entry in entries.filter_map(Result::ok) {
            let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("----- last lines of {} -----", entry.path().display());
            for line in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{line}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn test_processes_survive_kill_9_of_leader_follower_and_scheduler() {
    let binaries = Binaries::beside_current_exe().expect("the workspace's binaries are built");
    let tmp = TempDir::new().expect("temp dir");
    let dir = ClusterDir::new(tmp.path().join("cluster"));
    let _keep = KeepLogsOnPanic {
        logs: dir.root().join("logs"),
        tmp: Some(tmp),
    };
    let layout = Layout::on_free_ports(STORES).expect("free ports");
    let opts = ProcessClusterOptions {
        binaries,
        log_level: "info".to_owned(),
        server_config: Some(SERVER_CONFIG.to_owned()),
        scheduler_config: None,
    };
    // Started from the test's own thread, which outlives every child; a
    // panic drops the cluster first, which kills every process.
    let mut cluster = ProcessCluster::new(dir.clone(), layout.clone(), opts).expect("cluster");
    scenario(&mut cluster, &dir, &layout).await;
}

async fn scenario(cluster: &mut ProcessCluster, dir: &ClusterDir, layout: &Layout) {
    let scheduler_addr = layout.scheduler_addr();
    cluster.start_all().expect("start the processes");
    let serving = wait_until_serving(&scheduler_addr, STORES, STORES, SERVE_TIMEOUT, progress)
        .await
        .expect("the region reaches 3 replicas and serves");
    assert_eq!(serving.replicas, STORES);

    let client = Client::connect(&scheduler_addr, ClientOptions::default())
        .await
        .expect("connect the client");
    let mut model = Model::default();

    // 2. 1,000 acknowledged writes.
    let failed = write_batch(&client, &mut model, "first", 0, 1_000, 100, 8).await;
    assert_eq!(failed, 0, "writes failed on a healthy cluster");
    assert_eq!(model.writes, 1_000);
    progress("1,000 writes acknowledged");

    // 3. kill -9 of the leader's store; writes go on; it comes back.
    let leader = leader_store(&client, layout).await;
    cluster.kill_store(leader).expect("kill -9 the leader");
    progress(&format!("killed the leader, store {leader}"));
    let failed = write_batch(&client, &mut model, "no-leader", 1_000, 300, 100, 8).await;
    assert_eq!(failed, 0, "writes failed after the leader was killed");
    let new_leader = leader_store(&client, layout).await;
    assert_ne!(new_leader, leader, "the killed store still leads");
    progress(&format!(
        "300 writes acknowledged under the new leader, store {new_leader}"
    ));
    cluster.start_store(leader).expect("restart the old leader");
    prove_caught_up(cluster, &client, &model, new_leader, "old leader caught up").await;

    // 4. kill -9 of a follower in the middle of a snapshot.
    let leader = leader_store(&client, layout).await;
    let follower = (1..=STORES).find(|&n| n != leader).expect("a follower");
    let follower_data = dir.store_data(follower);
    let mut caught_mid_snapshot = false;
    for attempt in 1..=5 {
        cluster.kill_store(follower).expect("kill -9 the follower");
        // Big values past the log limit: the follower falls behind the
        // compacted log and needs a snapshot of several MiB.
        let failed = write_batch(
            &client,
            &mut model,
            &format!("snap{attempt}"),
            2_000 + attempt * 1_000,
            300,
            16 * 1024,
            8,
        )
        .await;
        assert_eq!(failed, 0, "writes failed with one follower down");
        cluster.start_store(follower).expect("restart the follower");
        let deadline = Instant::now() + WAIT;
        while Instant::now() < deadline && cluster.is_store_running(follower) {
            if receiving_snapshot(&follower_data) {
                cluster.kill_store(follower).expect("kill -9 mid-snapshot");
                caught_mid_snapshot = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if caught_mid_snapshot {
            progress(&format!(
                "killed store {follower} while it received a snapshot (attempt {attempt})"
            ));
            break;
        }
        progress(&format!(
            "attempt {attempt}: store {follower} caught up before it could be killed mid-snapshot"
        ));
    }
    assert!(
        caught_mid_snapshot,
        "never caught store {follower} receiving a snapshot"
    );
    cluster
        .start_store(follower)
        .expect("restart after the mid-snapshot kill");
    let leader = leader_store(&client, layout).await;
    let third = (1..=STORES)
        .find(|&n| n != follower && n != leader)
        .expect("three stores");
    prove_caught_up(
        cluster,
        &client,
        &model,
        third,
        "follower recovered from a torn snapshot",
    )
    .await;

    // 5. kill -9 of the scheduler.
    let (stores_before, region_before, max_peer_before) = ids_in_use(&client).await;
    let id_before = alloc_id(&scheduler_addr).await;
    cluster.kill_scheduler().expect("kill -9 the scheduler");
    progress("killed the scheduler");
    cluster.start_scheduler().expect("restart the scheduler");
    let id_after = alloc_id(&scheduler_addr).await;
    let highest_before = *[id_before, region_before, max_peer_before]
        .iter()
        .chain(stores_before.iter())
        .max()
        .expect("ids");
    assert!(
        id_after > highest_before,
        "id {id_after} handed out again (had {highest_before})"
    );
    let (stores_after, region_after, _) = ids_in_use(&client).await;
    let (mut a, mut b) = (stores_before.clone(), stores_after.clone());
    a.sort_unstable();
    b.sort_unstable();
    assert_eq!(a, b, "the scheduler forgot a store");
    assert_eq!(
        region_after, region_before,
        "the scheduler forgot the region"
    );
    let failed = write_batch(&client, &mut model, "after-scheduler", 9_000, 200, 100, 8).await;
    assert_eq!(failed, 0, "writes failed after the scheduler restarted");
    progress("scheduler restarted: no id reused, stores and region kept, writes go on");

    // 6. Everything stops and starts again; every acknowledged write is there.
    for (name, status) in cluster.stop(Duration::from_secs(20)) {
        let status = status.expect("stop");
        assert!(status.success(), "{name} did not stop cleanly: {status}");
    }
    cluster.start_all().expect("start again");
    wait_until_serving(&scheduler_addr, STORES, STORES, SERVE_TIMEOUT, progress)
        .await
        .expect("serves after a full restart");
    check_all(&client, &model, "after a full restart").await;
    progress(&format!(
        "{} acknowledged writes, every one readable",
        model.writes
    ));
}
