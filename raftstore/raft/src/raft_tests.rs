//! Unit tests of `Raft` found by the cluster scenarios (snapshot pacing,
//! probing, commit reporting), kept apart so `raft.rs` holds the state
//! machine only.

use kvproto::eraftpb::{ConfState, Entry, MessageType, Snapshot, SnapshotMetadata};

use crate::MemoryStorage;
use crate::progress::ProgressState;
use crate::test_util::{new_entry, new_message, new_test_raft};

fn propose(r: &mut super::Raft<MemoryStorage>) {
    let mut m = new_message(1, 1, MessageType::MsgPropose);
    m.entries = vec![Entry {
        data: b"x".to_vec(),
        ..Default::default()
    }];
    r.step(m).expect("leader accepts proposals");
}

fn appends_to(msgs: &[kvproto::eraftpb::Message], to: u64) -> usize {
    msgs.iter()
        .filter(|m| m.to == to && m.msg_type() == MessageType::MsgAppend)
        .count()
}

/// A leader that needs a snapshot for node 2: its log starts after the
/// snapshot at index 11, node 2 needs index 10, and node 2 has not
/// answered yet (its probe is marked sent, as after a heartbeat).
fn new_leader_needing_a_snapshot() -> super::Raft<MemoryStorage> {
    let storage = MemoryStorage::new();
    storage
        .apply_snapshot(Snapshot {
            data: Vec::new(),
            metadata: Some(SnapshotMetadata {
                conf_state: Some(ConfState { nodes: vec![1, 2] }),
                index: 11,
                term: 11,
            }),
        })
        .expect("apply snapshot");
    let mut r = new_test_raft(1, vec![1, 2], 10, 1, storage);
    r.become_candidate();
    r.become_leader();
    r.take_messages();
    let pr = r.prs.get_mut(&2).expect("node 2 is a member");
    pr.next = 10;
    pr.probe_sent = false;
    r
}

fn snapshots_to(msgs: &[kvproto::eraftpb::Message], to: u64) -> usize {
    msgs.iter()
        .filter(|m| m.to == to && m.msg_type() == MessageType::MsgSnapshot)
        .count()
}

/// A failed snapshot is not sent again on every append while the peer
/// stays silent: the leader waits for a heartbeat response (etcd
/// `MsgSnapStatus`). Found by the 2C cluster scenarios: a leader sent a
/// snapshot to a partitioned follower on every proposal, hundreds of
/// failed transfers a second.
#[test]
fn failed_snapshot_waits_for_a_heartbeat_response() {
    let mut r = new_leader_needing_a_snapshot();
    propose(&mut r);
    assert_eq!(snapshots_to(&r.take_messages(), 2), 1);
    r.report_snapshot(2, true);
    let pr = &r.prs[&2];
    assert_eq!((pr.state, pr.pending_snapshot), (ProgressState::Probe, 0));
    for _ in 0..3 {
        propose(&mut r);
    }
    let msgs = r.take_messages();
    assert_eq!(
        snapshots_to(&msgs, 2) + appends_to(&msgs, 2),
        0,
        "paused after a failed snapshot: {msgs:?}"
    );
    let mut resp = new_message(2, 1, MessageType::MsgHeartbeatResponse);
    resp.term = r.term;
    r.step(resp).expect("heartbeat response steps");
    assert_eq!(
        snapshots_to(&r.take_messages(), 2),
        1,
        "a heartbeat response resumes: the snapshot is sent again"
    );
}

/// After a delivered snapshot the leader waits for the peer's append
/// response before sending entries after it (etcd `MsgSnapStatus`).
#[test]
fn delivered_snapshot_waits_for_the_append_response() {
    let mut r = new_leader_needing_a_snapshot();
    propose(&mut r);
    assert_eq!(snapshots_to(&r.take_messages(), 2), 1);
    r.report_snapshot(2, false);
    assert_eq!(r.prs[&2].next, 12, "probing from after the snapshot");
    propose(&mut r);
    let msgs = r.take_messages();
    assert_eq!(
        snapshots_to(&msgs, 2) + appends_to(&msgs, 2),
        0,
        "paused until the peer answers: {msgs:?}"
    );
    let mut resp = new_message(2, 1, MessageType::MsgAppendResponse);
    resp.term = r.term;
    resp.index = 11;
    r.step(resp).expect("append response steps");
    assert_eq!(r.prs[&2].state, ProgressState::Replicate);
    assert_eq!(
        appends_to(&r.take_messages(), 2),
        1,
        "the answer resumes appending after the snapshot"
    );
}

/// A leader probing a silent follower sends it one append, not one per
/// proposal, until the follower answers (here: a heartbeat response).
#[test]
fn probe_sends_one_append_until_answered() {
    let mut r = new_test_raft(1, vec![1, 2], 10, 1, MemoryStorage::new());
    r.become_candidate();
    r.become_leader();
    r.bcast_append();
    assert_eq!(appends_to(&r.take_messages(), 2), 1);
    for _ in 0..3 {
        propose(&mut r);
    }
    assert_eq!(
        appends_to(&r.take_messages(), 2),
        0,
        "paused while the probe is unanswered"
    );
    let mut resp = new_message(2, 1, MessageType::MsgHeartbeatResponse);
    resp.term = r.term;
    r.step(resp).expect("heartbeat response steps");
    let msgs = r.take_messages();
    assert_eq!(
        appends_to(&msgs, 2),
        1,
        "a heartbeat response resumes probing"
    );
    let append = msgs.iter().find(|m| m.to == 2).expect("append to 2");
    assert_eq!(
        append.entries.len(),
        4,
        "the probe carries everything from next"
    );
}

/// Followers report their commit index in their answers; the leader
/// keeps the highest per peer, so it knows which committed entries a
/// peer knows are committed (what a leader waits for before applying
/// its own removal from a two-member region).
#[test]
fn answers_carry_the_commit_index_to_the_leader() {
    let mut follower = new_test_raft(2, vec![1, 2], 10, 1, MemoryStorage::new());
    let mut append = new_message(1, 2, MessageType::MsgAppend);
    append.term = 1;
    append.entries = vec![new_entry(1, 1), new_entry(2, 1)];
    append.commit = 2;
    follower.step(append).expect("append steps");
    assert_eq!(follower.leader_commit(), 2);
    let answer = follower.take_messages().pop().expect("append answered");
    assert_eq!(
        (answer.msg_type(), answer.index, answer.commit),
        (MessageType::MsgAppendResponse, 2, 2)
    );
    let mut heartbeat = new_message(1, 2, MessageType::MsgHeartbeat);
    heartbeat.term = 1;
    heartbeat.commit = 1;
    follower.step(heartbeat).expect("heartbeat steps");
    assert_eq!(follower.leader_commit(), 2, "never decreases in a term");
    let answer = follower.take_messages().pop().expect("heartbeat answered");
    assert_eq!(answer.commit, 2);
    let mut vote = new_message(3, 2, MessageType::MsgRequestVote);
    vote.term = 2;
    follower.step(vote).expect("vote request steps");
    assert_eq!(
        follower.leader_commit(),
        0,
        "a new term forgets the old leader's word"
    );

    let mut leader = new_test_raft(1, vec![1, 2], 10, 1, MemoryStorage::new());
    leader.become_candidate();
    leader.become_leader();
    assert_eq!(leader.prs[&2].committed(), 0);
    let mut resp = new_message(2, 1, MessageType::MsgHeartbeatResponse);
    resp.term = leader.term;
    resp.commit = 1;
    leader.step(resp).expect("heartbeat response steps");
    assert_eq!(leader.prs[&2].committed(), 1);
    let mut resp = new_message(2, 1, MessageType::MsgAppendResponse);
    resp.term = leader.term;
    resp.index = 1;
    resp.commit = 0;
    leader.step(resp).expect("append response steps");
    assert_eq!(
        leader.prs[&2].committed(),
        1,
        "an older report does not lower it"
    );
}
