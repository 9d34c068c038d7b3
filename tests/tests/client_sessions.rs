//! Client sessions in the replicated state machine (`raftstore`'s
//! `operation/session.rs`, `docs/PROTOCOL_EXTENSIONS.md` "Client
//! sessions"), end to end on the test cluster: a retried write applies
//! once; a session must be open; the table is bounded and expires idle
//! sessions by the time the log carries; it survives restarts, travels in
//! snapshots and is copied to both halves of a split; every replica holds
//! the same table, and the leader reports its size to the scheduler.

use std::time::{Duration, Instant};

use kvproto::raft_cmdpb::{
    AppendRequest, ClientSession, CmdType, OpenSessionRequest, RaftCmdRequest, RaftRequestHeader,
    Request,
};
use kvproto::raft_serverpb::ClientSessionState;
use prost::Message as _;
use raftstore::Config;
use router::CmdResponse;
use storage::{CF_DEFAULT, keys};
use tinykv_tests::cluster::operators::find_peer;
use tinykv_tests::cluster::{Cluster, FIRST_REGION_ID};

const WAIT: Duration = Duration::from_secs(20);

fn append(key: &[u8], value: &[u8]) -> Request {
    Request {
        cmd_type: CmdType::Append as i32,
        append: Some(AppendRequest {
            cf: CF_DEFAULT.to_owned(),
            key: key.to_vec(),
            value: value.to_vec(),
        }),
        ..Default::default()
    }
}

fn open() -> Request {
    Request {
        cmd_type: CmdType::OpenSession as i32,
        open_session: Some(OpenSessionRequest {}),
        ..Default::default()
    }
}

/// Sends `request` with session `(client_id, sequence)` to the leader of
/// the region holding `key`, retrying what a retry can fix; returns the
/// first success or error no retry fixes.
fn session_call(
    cluster: &Cluster,
    key: &[u8],
    client_id: u64,
    sequence: u64,
    request: Request,
) -> CmdResponse {
    let deadline = Instant::now() + WAIT;
    loop {
        let region = cluster.region_for_key(key);
        let command = RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: region.id,
                region_epoch: region.region_epoch,
                session: Some(ClientSession {
                    client_id,
                    sequence,
                }),
                ..Default::default()
            }),
            requests: vec![request.clone()],
            admin_request: None,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if let Some(answer) = cluster.call_command_on_leader(command, left) {
            // A key that moved to another region is retried there.
            let moved = answer
                .response
                .header
                .as_ref()
                .and_then(|h| h.error.as_ref())
                .is_some_and(|e| e.epoch_not_match.is_some() || e.key_not_in_region.is_some());
            if !moved {
                return answer;
            }
        }
        assert!(
            Instant::now() < deadline,
            "session command for client {client_id} seq {sequence} on {:?} got no answer",
            key.escape_ascii().to_string()
        );
    }
}

fn must_succeed(answer: CmdResponse, what: &str) {
    if let Some(e) = answer
        .response
        .header
        .as_ref()
        .and_then(|h| h.error.as_ref())
    {
        panic!("{what}: {e:?}");
    }
}

fn must_open(cluster: &Cluster, key: &[u8], client_id: u64) {
    must_succeed(
        session_call(cluster, key, client_id, 0, open()),
        &format!("open session {client_id}"),
    );
}

fn must_append(cluster: &Cluster, key: &[u8], value: &[u8], client_id: u64, sequence: u64) {
    must_succeed(
        session_call(cluster, key, client_id, sequence, append(key, value)),
        &format!("append {sequence} of client {client_id}"),
    );
}

/// The session table store `store_id` holds for `region_id`, by client id.
fn sessions_on(cluster: &Cluster, store_id: u64, region_id: u64) -> Vec<ClientSessionState> {
    let engine = cluster
        .inner()
        .store_engine(store_id)
        .expect("the store runs");
    let (start, end) = keys::client_session_range(region_id);
    let mut states = Vec::new();
    engine
        .scan_cf(CF_DEFAULT, &start, &end, |_, value| {
            states.push(ClientSessionState::decode(value).expect("a session record"));
            Ok(true)
        })
        .expect("scan sessions");
    states
}

/// Waits until every store in `stores` holds the same session table for
/// `region_id` as the first, and it satisfies `check`; returns it.
fn must_agree_on_sessions(
    cluster: &Cluster,
    stores: &[u64],
    region_id: u64,
    check: impl Fn(&[ClientSessionState]) -> bool,
) -> Vec<ClientSessionState> {
    let deadline = Instant::now() + WAIT;
    loop {
        let tables: Vec<_> = stores
            .iter()
            .map(|&s| sessions_on(cluster, s, region_id))
            .collect();
        if tables.windows(2).all(|w| w[0] == w[1]) && check(&tables[0]) {
            return tables[0].clone();
        }
        assert!(
            Instant::now() < deadline,
            "stores {stores:?} do not agree on region {region_id}'s sessions: {tables:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn sequences(table: &[ClientSessionState]) -> Vec<(u64, u64)> {
    table.iter().map(|s| (s.client_id, s.sequence)).collect()
}

fn error_of(answer: &CmdResponse) -> kvproto::errorpb::Error {
    answer
        .response
        .header
        .as_ref()
        .and_then(|h| h.error.clone())
        .unwrap_or_else(|| panic!("expected an error, got {:?}", answer.response))
}

/// An append retried with the same sequence (its answer lost) applies
/// once and gets the first answer again; a late copy of an older write
/// applies nothing.
#[test]
fn a_retried_append_applies_once() {
    let cluster = Cluster::new(3, Config::for_tests(), "sessions_retried_append");
    cluster.start();
    must_open(&cluster, b"k", 11);
    must_append(&cluster, b"k", b"a", 11, 1);
    must_append(&cluster, b"k", b"a", 11, 1);
    cluster.must_get(b"k", b"a");
    must_append(&cluster, b"k", b"b", 11, 2);
    cluster.must_get(b"k", b"ab");
    let late = session_call(&cluster, b"k", 11, 1, append(b"k", b"a"));
    let late = error_of(&late);
    assert!(
        late.message.contains("older than its last applied"),
        "{late:?}"
    );
    cluster.must_get(b"k", b"ab");
    // Appends without a session are plain (not exactly-once) appends.
    let plain = cluster.request(b"k", vec![append(b"k", b"c")], WAIT);
    assert_eq!(plain.response.responses.len(), 1);
    cluster.must_get(b"k", b"abc");
    let table = must_agree_on_sessions(&cluster, &[1, 2, 3], FIRST_REGION_ID, |t| !t.is_empty());
    assert_eq!(sequences(&table), vec![(11, 2)]);
    // The leader reports the table's size to the scheduler.
    let deadline = Instant::now() + WAIT;
    while cluster.scheduler().client_sessions(FIRST_REGION_ID) != 1 {
        assert!(
            Instant::now() < deadline,
            "no heartbeat reported one session"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A write of a session the region does not hold is refused, applying
/// nothing, with `SessionExpired` naming it.
#[test]
fn a_write_without_an_open_session_is_refused() {
    let cluster = Cluster::new(3, Config::for_tests(), "sessions_not_open");
    cluster.start();
    let refused = session_call(&cluster, b"k", 12, 1, append(b"k", b"a"));
    let expired = error_of(&refused)
        .session_expired
        .unwrap_or_else(|| panic!("{refused:?}"));
    assert_eq!((expired.client_id, expired.sequence), (12, 1));
    cluster.must_get_none(b"k");
    must_open(&cluster, b"k", 12);
    must_append(&cluster, b"k", b"a", 12, 1);
    cluster.must_get(b"k", b"a");
}

/// The table keeps at most `max_client_sessions`, dropping the least
/// recently active; sessions idle longer than the time-to-live (by the
/// leaders' stamps in the log) are dropped when a session command applies.
/// Every replica drops the same ones.
#[test]
fn sessions_are_bounded_and_expire_by_log_time() {
    let mut cfg = Config::for_tests();
    cfg.max_client_sessions = 2;
    cfg.client_session_ttl = Duration::from_millis(300);
    let cluster = Cluster::new(3, cfg, "sessions_bounded");
    cluster.start();
    must_open(&cluster, b"k", 1);
    must_open(&cluster, b"k", 2);
    must_open(&cluster, b"k", 3);
    let table = must_agree_on_sessions(&cluster, &[1, 2, 3], FIRST_REGION_ID, |t| t.len() == 2);
    assert_eq!(sequences(&table), vec![(2, 0), (3, 0)]);
    let refused = session_call(&cluster, b"k", 1, 1, append(b"k", b"a"));
    assert!(error_of(&refused).session_expired.is_some(), "{refused:?}");

    // Client 3 stays active; client 2 idles past the time-to-live.
    let deadline = Instant::now() + WAIT;
    let mut sequence = 0;
    while sessions_on(&cluster, 1, FIRST_REGION_ID)
        .iter()
        .any(|s| s.client_id == 2)
    {
        assert!(
            Instant::now() < deadline,
            "client 2's session never expired"
        );
        sequence += 1;
        must_append(&cluster, b"k3", b"x", 3, sequence);
    }
    let table = must_agree_on_sessions(&cluster, &[1, 2, 3], FIRST_REGION_ID, |t| t.len() == 1);
    assert_eq!(sequences(&table), vec![(3, sequence)]);
    let refused = session_call(&cluster, b"k", 2, 1, append(b"k", b"a"));
    assert!(error_of(&refused).session_expired.is_some(), "{refused:?}");
    cluster.must_get_none(b"k");
}

/// A follower cut off while the log is compacted past it gets the table
/// with the snapshot; the table survives a restart of every store (the
/// start-up scan of the meta keys passes over the session keys); a retry
/// served by that follower, now the leader, is still deduplicated.
#[test]
fn sessions_travel_in_snapshots_and_survive_restarts() {
    let mut cfg = Config::for_tests();
    cfg.raft_log_gc_count_limit = 10;
    let cluster = Cluster::new(3, cfg, "sessions_snapshot_restart");
    cluster.start();
    must_open(&cluster, b"k", 21);
    must_append(&cluster, b"k", b"x", 21, 1);
    let leader = cluster.must_reported_leader(FIRST_REGION_ID, WAIT);
    let cut_off = [1, 2, 3]
        .into_iter()
        .find(|&s| s != leader.store_id)
        .expect("a follower");
    let others: Vec<u64> = [1, 2, 3].into_iter().filter(|&s| s != cut_off).collect();
    cluster.partition(vec![others.clone(), vec![cut_off]]);
    for i in 0..50 {
        cluster.must_put(format!("fill{i:02}").as_bytes(), b"v");
    }
    must_append(&cluster, b"k", b"y", 21, 2);
    // Compaction runs on a GC tick, which the writes above may outrun: heal
    // the partition only once the majority dropped what the cut-off store
    // lacks, so it can catch up by snapshot alone.
    let cut_off_last = cluster
        .raft_local_state(cut_off, FIRST_REGION_ID)
        .map_or(0, |s| s.last_index);
    let compacted_to = cluster.must_compact_past(&others, FIRST_REGION_ID, cut_off_last, WAIT);
    cluster.clear_filters();
    cluster.must_get_equal_on_store(cut_off, b"k", b"xy", WAIT);
    let table = must_agree_on_sessions(&cluster, &[1, 2, 3], FIRST_REGION_ID, |t| {
        sequences(t) == vec![(21, 2)]
    });
    assert!(table[0].last_active_ms > 0, "{table:?}");
    let truncated = cluster.truncated_index(cut_off, FIRST_REGION_ID);
    assert!(
        truncated >= compacted_to,
        "store {cut_off} caught up without a snapshot (truncated {truncated} < {compacted_to})"
    );

    for store in [1, 2, 3] {
        cluster.stop_store(store);
    }
    for store in [1, 2, 3] {
        cluster.start_store(store);
    }
    let region = cluster.region_for_key(b"k");
    let peer = find_peer(&region, cut_off).expect("a peer on the cut-off store");
    cluster.must_transfer_leader(FIRST_REGION_ID, peer);
    must_append(&cluster, b"k", b"y", 21, 2);
    cluster.must_get(b"k", b"xy");
    must_append(&cluster, b"k", b"z", 21, 3);
    cluster.must_get(b"k", b"xyz");
}

/// A split copies the table to the new region: a retry of a write applied
/// before the split is deduplicated in whichever half now holds its key.
#[test]
fn a_split_copies_the_sessions_to_both_halves() {
    let cfg = Config::for_tests().with_small_regions(300, 200);
    let cluster = Cluster::new(3, cfg, "sessions_split");
    cluster.start();
    must_open(&cluster, b"k9", 31);
    must_append(&cluster, b"k9", b"a", 31, 1);
    let deadline = Instant::now() + WAIT;
    let mut i = 0;
    while cluster.region_for_key(b"k0").id == cluster.region_for_key(b"k9").id {
        assert!(Instant::now() < deadline, "the region did not split");
        cluster.must_put(format!("k5-{i:03}").as_bytes(), b"0123456789");
        i += 1;
    }
    let (left, right) = (cluster.region_for_key(b"k0"), cluster.region_for_key(b"k9"));
    for region in [left.id, right.id] {
        let table = must_agree_on_sessions(&cluster, &[1, 2, 3], region, |t| !t.is_empty());
        assert_eq!(sequences(&table), vec![(31, 1)], "region {region}");
    }
    must_append(&cluster, b"k9", b"a", 31, 1);
    cluster.must_get(b"k9", b"a");
    must_append(&cluster, b"k0", b"b", 31, 2);
    must_append(&cluster, b"k9", b"c", 31, 3);
    cluster.must_get(b"k0", b"b");
    cluster.must_get(b"k9", b"ac");
}
