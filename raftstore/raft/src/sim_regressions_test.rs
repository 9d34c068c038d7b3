//! Regressions found by the cluster simulation (`tinykv-tests`, `raft_sim`):
//! each test replays, on a few nodes stepped by hand, the core of the run
//! that broke, and names the seed that found it.

use kvproto::eraftpb::{Message, MessageType};

use crate::test_util::*;
use crate::{MemoryStorage, ReadOnlyOption, StateRole};

/// Seed 186: after a membership change, node 7 lagged behind it and knew
/// only the removed node 2, so it campaigned only there; node 8 held the
/// whole log but trailed node 7's term, and node 7 dropped its vote
/// requests as stale without answering. Neither could ever win. Figure 2:
/// a RequestVote with an older term is rejected with the current term, and
/// the candidate adopts that term (§5.1).
#[test]
fn stale_vote_request_is_answered_with_the_current_term() {
    // Node 1 (the lagging voter) knows members {1, 3}; node 2 knows {1, 2}.
    let mut voter = new_test_raft(1, vec![1, 3], 10, 1, MemoryStorage::new());
    let mut candidate = new_test_raft(2, vec![1, 2], 10, 1, MemoryStorage::new());
    for _ in 0..10 {
        voter.become_candidate();
    }
    assert_eq!(voter.term, 10);

    campaign(&mut candidate);
    assert_eq!(candidate.term, 1);
    let requests = candidate.read_messages();
    assert_eq!(requests.len(), 1);
    voter.step(requests[0].clone()).expect("step vote request");
    let answers = voter.read_messages();
    assert_eq!(answers.len(), 1, "a stale vote request must be answered");
    let answer = &answers[0];
    assert_eq!(answer.msg_type(), MessageType::MsgRequestVoteResponse);
    assert!(answer.reject);
    assert_eq!((answer.term, answer.to), (10, 2));

    // The candidate learns the term, and its next campaign can win.
    candidate.step(answer.clone()).expect("step vote response");
    assert_eq!(candidate.state, StateRole::Follower);
    assert_eq!(candidate.term, 10);
    campaign(&mut candidate);
    let requests = candidate.read_messages();
    voter.step(requests[0].clone()).expect("step vote request");
    let answers = voter.read_messages();
    assert!(!answers[0].reject, "the voter grants the vote at term 11");
    candidate
        .step(answers[0].clone())
        .expect("step vote response");
    assert_eq!(candidate.state, StateRole::Leader);
}

fn campaign(r: &mut crate::Raft<MemoryStorage>) {
    let id = r.id;
    r.step(new_message(id, id, MessageType::MsgHup))
        .expect("step MsgHup");
}

/// Seed 15087: node 4 led term 62 with members {2, 3, 4}; node 2 had not
/// applied node 4's addition, knew only {2, 3} (3 was removed and gone) and
/// campaigned towards 3 alone, at terms far above 62. Node 2 dropped node
/// 4's heartbeats as stale without answering, so node 4 never learned the
/// higher term: it led forever without a quorum, and node 2 could not win.
/// Figure 2: an AppendEntries of an older term is rejected with the current
/// term, and the leader steps down (§5.1).
#[test]
fn stale_leader_learns_the_current_term_from_a_follower() {
    let mut leader = new_test_raft(4, vec![2, 3, 4], 10, 1, MemoryStorage::new());
    let mut follower = new_test_raft(2, vec![2, 3], 10, 1, MemoryStorage::new());
    campaign(&mut leader);
    leader
        .step(vote_response(2, 4, leader.term))
        .expect("step vote");
    assert_eq!(leader.state, StateRole::Leader);
    leader.read_messages();
    for _ in 0..5 {
        follower.become_candidate();
    }
    assert!(follower.term > leader.term);

    for t in [MessageType::MsgHeartbeat, MessageType::MsgAppend] {
        let mut m = new_message(4, 2, t);
        m.term = leader.term;
        follower.step(m).expect("step stale message");
        let answers = follower.read_messages();
        assert_eq!(answers.len(), 1, "a stale {t:?} must be answered");
        assert_eq!(answers[0].msg_type(), MessageType::MsgAppendResponse);
        assert_eq!(answers[0].term, follower.term);
    }

    let mut m = new_message(4, 2, MessageType::MsgHeartbeat);
    m.term = leader.term;
    follower.step(m).expect("step heartbeat");
    let answer = follower.read_messages().remove(0);
    leader.step(answer).expect("step answer");
    assert_eq!(leader.state, StateRole::Follower);
    assert_eq!(leader.term, follower.term);

    // Node 4 can now win node 2's vote and lead {2, 3, 4} with it.
    campaign(&mut leader);
    let request = leader
        .read_messages()
        .into_iter()
        .find(|m| m.to == 2)
        .expect("a vote request to node 2");
    follower.step(request).expect("step vote request");
    let answer = follower.read_messages().remove(0);
    assert!(!answer.reject);
    leader.step(answer).expect("step vote");
    assert_eq!(leader.state, StateRole::Leader);
}

/// A leader of the same term ignores the rejection a follower sends to a
/// stale leader: it names index 0, below anything matched.
#[test]
fn stale_rejection_leaves_a_current_leader_alone() {
    let mut leader = new_test_raft(1, vec![1, 2], 10, 1, MemoryStorage::new());
    campaign(&mut leader);
    leader
        .step(vote_response(2, 1, leader.term))
        .expect("step vote");
    assert_eq!(leader.state, StateRole::Leader);
    leader.read_messages();
    let mut m = new_message(2, 1, MessageType::MsgAppendResponse);
    m.term = leader.term;
    m.reject = true;
    leader.step(m).expect("step rejection");
    assert_eq!(leader.state, StateRole::Leader);
    assert!(leader.read_messages().is_empty());
}

fn vote_response(from: u64, to: u64, term: u64) -> Message {
    let mut m = new_message(from, to, MessageType::MsgRequestVoteResponse);
    m.term = term;
    m
}

/// Stale messages other than vote requests and a leader's are still
/// dropped without an answer.
#[test]
fn other_stale_messages_are_ignored() {
    let mut r = new_test_raft(1, vec![1, 2], 10, 1, MemoryStorage::new());
    r.become_follower(5, NONE);
    for t in [
        MessageType::MsgAppendResponse,
        MessageType::MsgHeartbeatResponse,
        MessageType::MsgTimeoutNow,
    ] {
        let mut m = new_message(2, 1, t);
        m.term = 3;
        r.step(m).expect("step stale message");
        assert!(r.read_messages().is_empty(), "{t:?}");
    }
}

/// Seed 4747 (with crash-heavy settings): a follower held ~300 entries of
/// older terms that the new leader's log did not have. It rejected each
/// probe naming only its last index, so the leader moved back one entry
/// per round trip and the group took longer than 50 election timeouts to
/// commit again. The follower now names the last index before the run of
/// entries of the conflicting term (§5.3, last paragraph): one round trip
/// per divergent term.
#[test]
fn divergent_tail_is_repaired_in_a_few_round_trips() {
    let mut leader_terms = vec![1, 1, 1];
    leader_terms.extend(std::iter::repeat_n(3, 57));
    let mut follower_terms = vec![1, 1, 1];
    follower_terms.extend(std::iter::repeat_n(2, 47));
    let mut nt = Network::new(vec![
        Some(ents_with_config(None, 1, &leader_terms).into()),
        Some(ents_with_config(None, 2, &follower_terms).into()),
        Some(ents_with_config(None, 3, &leader_terms).into()),
    ]);
    let rejections = std::rc::Rc::new(std::cell::Cell::new(0));
    let counter = rejections.clone();
    nt.msg_hook = Some(Box::new(move |m: &Message| {
        if m.msg_type() == MessageType::MsgAppendResponse && m.from == 2 && m.reject {
            counter.set(counter.get() + 1);
        }
        true
    }));
    nt.send(vec![new_message(1, 1, MessageType::MsgHup)]);
    assert_eq!(nt.raft(1).state, StateRole::Leader);
    assert!(
        rejections.get() <= 3,
        "{} rejections to repair one divergent term",
        rejections.get()
    );
    let leader_log = nt.raft(1).raft_log.all_entries();
    assert_eq!(nt.raft(2).raft_log.all_entries(), leader_log);
    assert_eq!(nt.raft(2).raft_log.committed, 61);
}

/// The hint never goes below the committed index, which matches any leader,
/// and is the last index when the probed entry is missing.
#[test]
fn reject_hint_bounds() {
    let storage = new_memory_storage_with_ents(
        [0, 1, 1, 2, 2, 2]
            .iter()
            .enumerate()
            .map(|(i, &t)| new_entry(i as u64, t))
            .collect(),
    );
    let mut log = new_log(storage);
    assert_eq!(log.reject_hint(9), 5, "missing entry: our last index");
    assert_eq!(log.reject_hint(5), 2, "skips the run of term 2");
    assert_eq!(log.reject_hint(2), 0, "skips the run of term 1");
    assert_eq!(log.reject_hint(0), 0, "entry 0 has no run before it");
    log.commit_to(3);
    assert_eq!(log.reject_hint(5), 3, "stops at the committed index");
}

/// Seed 7000 (with crash-heavy settings): node 4 got a leader transfer's
/// MsgTimeoutNow and campaigned, then applied its own removal while its
/// vote requests were out. The votes made it leader of a group it was not
/// in: it refused every proposal, and its heartbeats kept the members from
/// electing anyone else. A candidate that removes itself steps down, as a
/// leader does.
#[test]
fn removed_candidate_does_not_become_leader() {
    let mut nt = Network::new(vec![None, None, None]);
    let r = nt.raft_mut(1);
    campaign(r);
    assert_eq!(r.state, StateRole::Candidate);
    let requests = r.read_messages();
    r.apply_conf_change(&kvproto::eraftpb::ConfChange {
        change_type: kvproto::eraftpb::ConfChangeType::RemoveNode as i32,
        node_id: 1,
        ..Default::default()
    });
    assert_eq!(r.state, StateRole::Follower);
    nt.send(requests);
    let r = nt.raft(1);
    assert_ne!(r.state, StateRole::Leader, "a removed node became leader");
    assert!(!r.promotable());
}

/// Seed 1272 (lease reads): leader 8 was isolated just after its followers
/// last heard from it; they elected node 3 an election timeout later and
/// committed through it, while node 8, whose CheckQuorum check had passed
/// on their earlier answers, kept its lease until its next check (up to two
/// election timeouts after they last heard from it) and answered a read at
/// its old commit index: stale. The lease must run from when the heartbeat
/// a quorum answered was made, as long as the followers' promise not to
/// vote (an election timeout after they hear from the leader).
#[test]
fn lease_ends_when_the_followers_stop_honouring_it() {
    let config = |c: &mut crate::Config| {
        c.pre_vote = true;
        c.check_quorum = true;
        c.read_only_option = ReadOnlyOption::LeaseBased;
    };
    let mut nt = Network::new_with_config(Some(&config), vec![None, None, None]);
    campaign(nt.raft_mut(1));
    let msgs = nt.raft_mut(1).read_messages();
    nt.send(msgs);
    assert_eq!(nt.raft(1).state, StateRole::Leader);
    let et = nt.raft(1).election_timeout;
    // Node 2 campaigns as soon as its promise runs out; node 3 later.
    nt.raft_mut(2).randomized_election_timeout = et;
    nt.raft_mut(3).randomized_election_timeout = 2 * et - 1;

    // One heartbeat round, answered; then node 1 is cut off.
    nt.tick_all();
    assert!(nt.raft(1).lease_valid());
    nt.isolate(1);
    let mut ticks = 0;
    while nt.raft(2).state != StateRole::Leader {
        nt.tick_all();
        ticks += 1;
        assert!(
            ticks < 2 * et,
            "node 2 is elected within two election timeouts"
        );
    }
    let new_commit = nt.raft(2).raft_log.committed;
    let old = nt.raft_mut(1);
    // CheckQuorum has not stepped node 1 down yet: its check after the
    // isolation counted the answers from before it.
    assert_eq!(old.state, StateRole::Leader);
    assert!(new_commit > old.raft_log.committed, "node 2 committed more");
    assert!(!old.lease_valid(), "the followers' promise ran out");
    let mut read = new_message(1, 1, MessageType::MsgReadIndex);
    read.context = b"stale?".to_vec();
    old.step(read).expect("step read");
    assert!(
        old.read_states.is_empty(),
        "a lease read at {} would miss index {new_commit}",
        old.raft_log.committed
    );
}
