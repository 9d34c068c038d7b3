//! Regressions found by the cluster simulation (`tinykv-tests`, `raft_sim`):
//! each test replays, on a few nodes stepped by hand, the core of the run
//! that broke, and names the seed that found it.

use kvproto::eraftpb::{Message, MessageType};

use crate::test_util::*;
use crate::{MemoryStorage, StateRole};

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
    candidate.step(answers[0].clone()).expect("step vote response");
    assert_eq!(candidate.state, StateRole::Leader);
}

fn campaign(r: &mut crate::Raft<MemoryStorage>) {
    let id = r.id;
    r.step(new_message(id, id, MessageType::MsgHup))
        .expect("step MsgHup");
}

/// A stale message of any other type is still dropped without an answer.
#[test]
fn stale_append_is_ignored() {
    let mut r = new_test_raft(1, vec![1, 2], 10, 1, MemoryStorage::new());
    r.become_follower(5, NONE);
    r.step(Message {
        msg_type: MessageType::MsgAppend as i32,
        from: 2,
        to: 1,
        term: 3,
        ..Default::default()
    })
    .expect("step append");
    assert!(r.read_messages().is_empty());
}
