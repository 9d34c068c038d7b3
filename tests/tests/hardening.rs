//! Regressions of the raftstore hardening: bugs a review found that the
//! ported suites do not reach, each driven end to end on a 3-store cluster.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kvproto::eraftpb::{ConfChangeType, Entry, Message, MessageType};
use kvproto::metapb;
use kvproto::raft_cmdpb::{
    AdminCmdType, AdminRequest, ChangePeerRequest, CmdType, CompactLogRequest, RaftCmdRequest,
    RaftRequestHeader, Request, TransferLeaderRequest,
};
use kvproto::raft_serverpb::{PeerState, RaftMessage};
use prost::Message as _;
use raftstore::Config;
use tinykv_tests::cluster::filter::IsolateFilter;
use tinykv_tests::cluster::{Cluster, FIRST_REGION_ID};

const TIMEOUT: Duration = Duration::from_secs(20);

fn admin_request(region: &metapb::Region, admin: AdminRequest) -> RaftCmdRequest {
    RaftCmdRequest {
        header: Some(RaftRequestHeader {
            region_id: region.id,
            region_epoch: region.region_epoch,
            ..Default::default()
        }),
        requests: Vec::new(),
        admin_request: Some(admin),
    }
}

/// Waits until `check` holds, or panics with what it last saw.
fn must_wait<T: std::fmt::Debug>(
    what: &str,
    mut probe: impl FnMut() -> T,
    check: impl Fn(&T) -> bool,
) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let seen = probe();
        if check(&seen) {
            return;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}; last seen: {seen:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Bug 5: a peer removed while it was cut off was never told. It kept
/// campaigning with ever higher terms and, with no PreVote, deposed the
/// leader again and again. Now its (pre-)vote requests are answered with a
/// tombstone notice and it destroys itself; with PreVote its campaigns no
/// longer raise anyone's term meanwhile: nothing it sends, from its cut-off
/// campaigns to its end, carries a term above the leader's at the cut
/// (only a pre-vote names the next term, and a pre-vote changes no term).
/// Checked on its messages, not on the leader's term afterwards: under
/// CheckQuorum a starved leader on a loaded machine may step down on its
/// own, which says nothing about the removed peer.
#[test]
fn a_peer_removed_while_cut_off_destroys_itself() {
    let cluster = Cluster::new(
        3,
        Config::for_tests(),
        "a_peer_removed_while_cut_off_destroys_itself",
    );
    cluster.start();
    cluster.must_put(b"k1", b"v1");
    // Cut off a follower: a leader cut off would stay leader of its old
    // term (no CheckQuorum) and never campaign.
    let leader = cluster.must_leader_by_read(FIRST_REGION_ID);
    let region = cluster.region_for_key(b"k1");
    let removed = region
        .peers
        .iter()
        .find(|p| p.store_id != leader.store_id)
        .copied()
        .expect("a follower");
    let victim = removed.store_id;
    cluster.must_get_equal_on_store(victim, b"k1", b"v1", TIMEOUT);
    let others: Vec<u64> = cluster
        .store_ids()
        .into_iter()
        .filter(|s| *s != victim)
        .collect();
    let term_of = |store_id: u64| {
        cluster
            .raft_local_state(store_id, FIRST_REGION_ID)
            .and_then(|s| s.hard_state)
            .map_or(0, |h| h.term)
    };
    let leader_term = term_of(leader.store_id);
    let watch = Arc::new(WatchFrom::new(victim));
    // First: it must see what the partition then drops.
    cluster.add_filter(watch.clone());
    cluster.partition(vec![others, vec![victim]]);
    let remove = admin_request(
        &region,
        AdminRequest {
            cmd_type: AdminCmdType::ChangePeer as i32,
            change_peer: Some(ChangePeerRequest {
                change_type: ConfChangeType::RemoveNode as i32,
                peer: Some(removed),
            }),
            ..Default::default()
        },
    );
    let resp = cluster
        .call_command_on_leader(remove, TIMEOUT)
        .expect("the removal is answered");
    assert!(
        resp.region_error().is_none(),
        "removal failed: {:?}",
        resp.response
    );

    // The cut-off peer campaigns meanwhile (pre-votes no one hears); once
    // it can talk again it must learn that it was removed.
    must_wait(
        "the cut-off peer to campaign a few times",
        || watch.campaigns(),
        |&n| n >= 3,
    );
    assert_eq!(
        term_of(victim),
        leader_term,
        "the cut-off peer raised its own term"
    );
    cluster.clear_filters();
    cluster.add_filter(watch.clone());
    must_wait(
        "the removed peer to destroy itself",
        || {
            cluster
                .region_local_state(victim, FIRST_REGION_ID)
                .map(|s| s.state())
        },
        |state| *state == Some(PeerState::Tombstone),
    );
    cluster.must_put(b"k2", b"v2");
    cluster.must_get(b"k2", b"v2");
    let highest = watch.highest_term_but_pre_votes();
    assert!(
        highest <= leader_term,
        "the removed peer sent term {highest}, above the leader's {leader_term}"
    );
}

/// Lets everything through, and records what one store sends: its
/// campaign messages (pre-votes and votes), and the highest term of anything but pre-votes and their
/// answers (a pre-vote names the term it would campaign at, and an answer
/// may echo another's; neither changes a receiver's term).
struct WatchFrom {
    store_id: u64,
    campaigns: std::sync::atomic::AtomicU64,
    highest_term: std::sync::atomic::AtomicU64,
}

impl WatchFrom {
    fn new(store_id: u64) -> Self {
        WatchFrom {
            store_id,
            campaigns: Default::default(),
            highest_term: Default::default(),
        }
    }

    fn campaigns(&self) -> u64 {
        self.campaigns.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn highest_term_but_pre_votes(&self) -> u64 {
        self.highest_term.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl tinykv_tests::cluster::filter::Filter for WatchFrom {
    fn allow(&self, msg: &RaftMessage, _: &mut tinykv::rng::SplitMix64) -> bool {
        use std::sync::atomic::Ordering::SeqCst;
        if msg.from_peer.map_or(0, |p| p.store_id) != self.store_id {
            return true;
        }
        if let Some(m) = &msg.message {
            if matches!(
                m.msg_type(),
                MessageType::MsgPreVote | MessageType::MsgRequestVote
            ) {
                self.campaigns.fetch_add(1, SeqCst);
            }
            if m.msg_type() != MessageType::MsgPreVote
                && m.msg_type() != MessageType::MsgPreVoteResponse
            {
                self.highest_term.fetch_max(m.term, SeqCst);
            }
        }
        true
    }
}

/// Bug 2: a leader stepped a `MsgPropose` from the network, skipping every
/// check; a command without a body then reached an `expect()` in apply and
/// panicked every replica (and again on every restart). Such a message is
/// now refused at the peer's door, and nothing of it reaches the log.
#[test]
fn a_proposal_from_the_network_is_refused() {
    let cluster = Cluster::new(
        3,
        Config::for_tests(),
        "a_proposal_from_the_network_is_refused",
    );
    cluster.start();
    cluster.must_put(b"k1", b"v1");
    let leader = cluster.must_leader_by_read(FIRST_REGION_ID);
    let region = cluster.region_for_key(b"k1");
    let sender = region
        .peers
        .iter()
        .find(|p| p.id != leader.id)
        .copied()
        .expect("a follower");
    // A Put without its body: apply used to `expect()` it.
    let malformed = RaftCmdRequest {
        header: Some(RaftRequestHeader {
            region_id: region.id,
            region_epoch: region.region_epoch,
            peer: Some(leader),
            ..Default::default()
        }),
        requests: vec![Request {
            cmd_type: CmdType::Put as i32,
            ..Default::default()
        }],
        admin_request: None,
    };
    let before = cluster
        .raft_local_state(leader.store_id, FIRST_REGION_ID)
        .expect("leader's raft state")
        .last_index;
    let router = cluster
        .router(leader.store_id)
        .expect("leader's store runs");
    let term = cluster
        .raft_local_state(leader.store_id, FIRST_REGION_ID)
        .and_then(|s| s.hard_state)
        .map_or(0, |h| h.term);
    for _ in 0..3 {
        let msg = RaftMessage {
            region_id: region.id,
            from_peer: Some(sender),
            to_peer: Some(leader),
            region_epoch: region.region_epoch,
            message: Some(Message {
                msg_type: MessageType::MsgPropose as i32,
                from: sender.id,
                to: leader.id,
                term,
                entries: vec![Entry {
                    data: malformed.encode_to_vec(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        router
            .send_raft_message(Box::new(msg))
            .expect("the leader's mailbox takes it");
    }
    // The region still serves, on every store, and the log grew only by
    // what the client wrote.
    cluster.must_put(b"k2", b"v2");
    for store_id in cluster.store_ids() {
        cluster.must_get_equal_on_store(store_id, b"k2", b"v2", TIMEOUT);
    }
    let leader_now = cluster.must_leader_by_read(FIRST_REGION_ID);
    if leader_now == leader {
        let after = cluster
            .raft_local_state(leader.store_id, FIRST_REGION_ID)
            .expect("leader's raft state")
            .last_index;
        // must_put (1 entry); reads write nothing to the log.
        assert!(after <= before + 1, "the log grew from {before} to {after}");
    }
}

/// Bug 3: any client could propose `CompactLog`, and its term was never
/// checked, so a crafted one truncated the log under a false term. Now it
/// is refused from clients, and the truncated state stays as it was.
#[test]
fn a_client_cannot_compact_the_log() {
    let cluster = Cluster::new(3, Config::for_tests(), "a_client_cannot_compact_the_log");
    cluster.start();
    for i in 0..10u32 {
        cluster.must_put(format!("k{i}").as_bytes(), b"v");
    }
    let leader = cluster.must_leader_by_read(FIRST_REGION_ID);
    let truncated_before = cluster
        .apply_state(leader.store_id, FIRST_REGION_ID)
        .and_then(|s| s.truncated_state)
        .expect("truncated state");
    let region = cluster.region_for_key(b"k1");
    let compact = admin_request(
        &region,
        AdminRequest {
            cmd_type: AdminCmdType::CompactLog as i32,
            compact_log: Some(CompactLogRequest {
                compact_index: truncated_before.index + 5,
                compact_term: 999,
            }),
            ..Default::default()
        },
    );
    let resp = cluster
        .call_command_on_leader(compact, TIMEOUT)
        .expect("the command is answered");
    let error = resp
        .region_error()
        .expect("a client's CompactLog is refused");
    assert!(
        error.message.contains("CompactLog"),
        "unexpected error: {error:?}"
    );
    cluster.must_put(b"after", b"v");
    for store_id in cluster.store_ids() {
        let truncated = cluster
            .apply_state(store_id, FIRST_REGION_ID)
            .and_then(|s| s.truncated_state)
            .expect("truncated state");
        assert_ne!(truncated.term, 999, "store {store_id} took a false term");
    }
}

/// A proposal the leader's raft node drops (a leader transfer in
/// progress) was answered `NotLeader` naming the leader itself, so a
/// client went straight back to it. It is now a retryable `ServerIsBusy`
/// that says what happened.
#[test]
fn a_dropped_proposal_is_busy_not_not_leader() {
    let cluster = Cluster::new(
        3,
        Config::for_tests(),
        "a_dropped_proposal_is_busy_not_not_leader",
    );
    cluster.start();
    cluster.must_put(b"k1", b"v1");
    let deadline = Instant::now() + TIMEOUT;
    let mut busy_seen = false;
    while !busy_seen && Instant::now() < deadline {
        let leader = cluster.must_leader_by_read(FIRST_REGION_ID);
        let region = cluster.region_for_key(b"k1");
        let target = region
            .peers
            .iter()
            .find(|p| p.id != leader.id)
            .copied()
            .expect("a follower");
        // Cut the target off so the transfer stays pending for an election
        // timeout; a put in that window is dropped by raft.
        cluster.add_filter(Arc::new(IsolateFilter(target.store_id)));
        let mut transfer = admin_request(
            &region,
            AdminRequest {
                cmd_type: AdminCmdType::TransferLeader as i32,
                transfer_leader: Some(TransferLeaderRequest { peer: Some(target) }),
                ..Default::default()
            },
        );
        transfer.header.as_mut().expect("header").peer = Some(leader);
        let _ = cluster.call_command(transfer, Duration::from_secs(2));
        let mut put = RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: region.id,
                region_epoch: region.region_epoch,
                peer: Some(leader),
                ..Default::default()
            }),
            requests: vec![Request {
                cmd_type: CmdType::Put as i32,
                put: Some(kvproto::raft_cmdpb::PutRequest {
                    cf: String::new(),
                    key: b"k2".to_vec(),
                    value: b"v2".to_vec(),
                }),
                ..Default::default()
            }],
            admin_request: None,
        };
        put.header.as_mut().expect("header").peer = Some(leader);
        if let Some(resp) = cluster.call_command(put, Duration::from_millis(300))
            && let Some(error) = resp.region_error()
        {
            if let Some(not_leader) = &error.not_leader {
                assert_ne!(
                    not_leader.leader,
                    Some(leader),
                    "a dropped proposal named its own leader: {error:?}"
                );
            }
            if let Some(busy) = &error.server_is_busy {
                assert!(busy.reason.contains("transfer"), "unclear reason: {busy:?}");
                busy_seen = true;
            }
        }
        cluster.clear_filters();
    }
    assert!(
        busy_seen,
        "no proposal was refused during a leader transfer"
    );
    cluster.must_put(b"k3", b"v3");
}

/// Drops messages of `types` from store `from` to store `to` whose commit
/// index is at least `min_commit`.
struct DropCommitAbove {
    from: u64,
    to: u64,
    types: Vec<MessageType>,
    min_commit: u64,
}

impl tinykv_tests::cluster::filter::Filter for DropCommitAbove {
    fn allow(&self, msg: &RaftMessage, _: &mut tinykv::rng::SplitMix64) -> bool {
        let route = (
            msg.from_peer.map_or(0, |p| p.store_id),
            msg.to_peer.map_or(0, |p| p.store_id),
        );
        let Some(m) = &msg.message else {
            return true;
        };
        route != (self.from, self.to)
            || !self.types.contains(&m.msg_type())
            || m.commit < self.min_commit
    }
}

/// Found by the unreliable conf-change scenario: in a two-member region a
/// peer won leadership after its own removal was proposed, committed it,
/// applied it and destroyed itself before the other member learned the
/// commit. The survivor, still counting both members, could never elect a
/// leader again. Now the removed leader applies its removal only once the
/// survivor reports that it knows the commit (operation/own_removal.rs).
#[test]
fn own_removal_of_a_leader_waits_for_the_survivor() {
    let cluster = Cluster::new(
        2,
        Config::for_tests(),
        "own_removal_of_a_leader_waits_for_the_survivor",
    );
    cluster.start();
    let (p1, p2) = (
        metapb::Peer { id: 1, store_id: 1 },
        metapb::Peer { id: 2, store_id: 2 },
    );
    cluster.must_put(b"k1", b"v1");
    cluster.must_transfer_leader(FIRST_REGION_ID, p1);
    let region = cluster.region_for_key(b"k1");
    let hard_state = |store_id: u64| {
        cluster
            .raft_local_state(store_id, FIRST_REGION_ID)
            .map(|s| (s.last_index, s.hard_state.unwrap_or_default().commit))
    };
    let (before, _) = hard_state(1).expect("store 1 holds the region");

    // 1. Store 2's acknowledgements are lost: store 1 appends the removal
    // of peer 2 but never commits it.
    cluster.add_filter(Arc::new(DropCommitAbove {
        from: 2,
        to: 1,
        types: vec![MessageType::MsgAppendResponse],
        min_commit: 0,
    }));
    let mut remove = admin_request(
        &region,
        AdminRequest {
            cmd_type: AdminCmdType::ChangePeer as i32,
            change_peer: Some(ChangePeerRequest {
                change_type: ConfChangeType::RemoveNode as i32,
                peer: Some(p2),
            }),
            ..Default::default()
        },
    );
    remove.header.as_mut().expect("header").peer = Some(p1);
    std::thread::scope(|scope| {
        // Not waited for: store 1 stops before the removal commits.
        scope.spawn(|| cluster.call_command(remove, Duration::from_secs(1)));
        must_wait(
            "peer 2 to hold the removal in its log",
            || hard_state(2),
            |seen| seen.is_some_and(|(last, _)| last > before),
        );

        // 2. Store 1 restarts and cannot campaign (its pre-votes and votes
        // are lost), so peer 2 wins with peer 1's vote and commits the
        // removal of itself; no message telling store 1 of a commit past
        // `before` gets through.
        cluster.stop_store(1);
        cluster.add_filter(Arc::new(DropCommitAbove {
            from: 1,
            to: 2,
            types: vec![MessageType::MsgPreVote, MessageType::MsgRequestVote],
            min_commit: 0,
        }));
        cluster.add_filter(Arc::new(DropCommitAbove {
            from: 2,
            to: 1,
            types: vec![MessageType::MsgAppend, MessageType::MsgHeartbeat],
            min_commit: before + 1,
        }));
        cluster.start_store(1);
        must_wait(
            "peer 2 to commit its own removal (or, unfixed, to be destroyed)",
            || hard_state(2),
            |seen| seen.is_none_or(|(_, commit)| commit > before),
        );
        cluster.clear_filters();
    });

    // The region goes on with peer 1 alone; peer 2 is gone.
    cluster.must_put(b"k2", b"v2");
    must_wait(
        "store 1 to apply the removal",
        || cluster.region_local_state(1, FIRST_REGION_ID),
        |state| {
            state
                .as_ref()
                .and_then(|s| s.region.as_ref())
                .is_some_and(|r| r.peers == vec![p1])
        },
    );
    must_wait(
        "peer 2 to destroy itself",
        || {
            cluster
                .region_local_state(2, FIRST_REGION_ID)
                .map(|s| s.state())
        },
        |state| *state == Some(PeerState::Tombstone),
    );
    cluster.must_get(b"k2", b"v2");
}
