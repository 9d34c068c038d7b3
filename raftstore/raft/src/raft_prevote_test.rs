//! Ported from etcd raft `raft_test.go`: the PreVote (Raft thesis §9.6) and
//! CheckQuorum (§6.2, the lease of §4.2.3) tests, driven directly or over the
//! synchronous test `Network`.
//!
//! Go's `nopStepper` is `Peer::BlackHole`; Go's `setRandomizedElectionTimeout`
//! is `set_randomized_election_timeout`; Go flips `preVote`/`checkQuorum` on
//! a node it still holds a pointer to, these tests through `Network::raft_mut`.
//! Learner cases are left out: the core has no learners.
//! `docs/PORTED_TESTS.md` maps every Go test to its port.

use kvproto::eraftpb::{ConfChange, ConfChangeType, Entry, Message, MessageType};

use crate::test_util::{
    NONE, Network, Peer, ents_with_config, new_log, new_memory_storage_with_ents, new_message,
    new_test_raft, voted_with_config,
};
use crate::{Config, MemoryStorage, Raft, StateRole};

/// A node's own election trigger.
fn hup(id: u64) -> Message {
    new_message(id, id, MessageType::MsgHup)
}

/// A proposal of one entry, delivered to `to`.
fn propose(to: u64) -> Message {
    let mut m = new_message(to, to, MessageType::MsgPropose);
    m.entries = vec![Entry {
        data: b"somedata".to_vec(),
        ..Default::default()
    }];
    m
}

/// A heartbeat of `term` from `from` to `to`.
fn heartbeat(from: u64, to: u64, term: u64) -> Message {
    let mut m = new_message(from, to, MessageType::MsgHeartbeat);
    m.term = term;
    m
}

/// Go's `preVoteConfig`.
fn pre_vote_config(c: &mut Config) {
    c.pre_vote = true;
}

/// Go's `setRandomizedElectionTimeout`.
fn set_randomized_election_timeout(r: &mut Raft<MemoryStorage>, v: usize) {
    r.randomized_election_timeout = v;
}

/// A three-node test node with the given switches.
fn new_node(id: u64, pre_vote: bool, check_quorum: bool) -> Raft<MemoryStorage> {
    let mut r = new_test_raft(id, vec![1, 2, 3], 10, 1, MemoryStorage::new());
    r.pre_vote = pre_vote;
    r.check_quorum = check_quorum;
    r
}

/// Three nodes that all start as followers of term 1 with no leader.
fn new_followers_at_term_1(pre_vote: bool, check_quorum: bool) -> Network {
    let peers = (1..=3)
        .map(|id| {
            let mut r = new_node(id, pre_vote, check_quorum);
            r.become_follower(1, NONE);
            Some(r.into())
        })
        .collect();
    Network::new(peers)
}

fn states(nt: &Network) -> [StateRole; 3] {
    [1, 2, 3].map(|id| nt.raft(id).state)
}

fn terms(nt: &Network) -> [u64; 3] {
    [1, 2, 3].map(|id| nt.raft(id).term)
}

/// etcd `TestLeaderElectionPreVote`: as `TestLeaderElection`, but an
/// election that cannot complete leaves the node a pre-candidate at its old
/// term; and logs further along in the same term reject the pre-vote, which
/// makes the node a follower of that term.
#[test]
fn test_leader_election_pre_vote() {
    let cfg: Option<&dyn Fn(&mut Config)> = Some(&pre_vote_config);
    let bh = || Some(Peer::BlackHole);
    let ents = |id: u64, terms: &[u64]| Some(Peer::from(ents_with_config(cfg, id, terms)));
    let tests = vec![
        (
            Network::new_with_config(cfg, vec![None, None, None]),
            StateRole::Leader,
            1,
        ),
        (
            Network::new_with_config(cfg, vec![None, None, bh()]),
            StateRole::Leader,
            1,
        ),
        (
            Network::new_with_config(cfg, vec![None, bh(), bh()]),
            StateRole::PreCandidate,
            0,
        ),
        (
            Network::new_with_config(cfg, vec![None, bh(), bh(), None]),
            StateRole::PreCandidate,
            0,
        ),
        (
            Network::new_with_config(cfg, vec![None, bh(), bh(), None, None]),
            StateRole::Leader,
            1,
        ),
        // Three logs further along than 0, in the same term, so rejections
        // come back instead of the requests being ignored.
        (
            Network::new_with_config(
                cfg,
                vec![None, ents(2, &[1]), ents(3, &[1]), ents(4, &[1, 1]), None],
            ),
            StateRole::Follower,
            1,
        ),
    ];

    for (i, (mut nt, state, exp_term)) in tests.into_iter().enumerate() {
        nt.send(vec![hup(1)]);
        let sm = nt.raft(1);
        assert_eq!(sm.state, state, "#{i}: state");
        assert_eq!(sm.term, exp_term, "#{i}: term");
    }
}

/// etcd `TestLeaderCyclePreVote`: every node in turn can win, with
/// pre-votes, on a cluster that already had leaders.
#[test]
fn test_leader_cycle_pre_vote() {
    let cfg: Option<&dyn Fn(&mut Config)> = Some(&pre_vote_config);
    let mut nt = Network::new_with_config(cfg, vec![None, None, None]);
    for campaigner in 1..=3u64 {
        nt.send(vec![hup(campaigner)]);
        for id in 1..=3u64 {
            let want = if id == campaigner {
                StateRole::Leader
            } else {
                StateRole::Follower
            };
            assert_eq!(
                nt.raft(id).state,
                want,
                "campaign of node {campaigner}: node {id} state"
            );
        }
    }
}

/// etcd `TestLeaderElectionOverwriteNewerLogsPreVote`: a new leader whose
/// log lacks the highest-term entry wins, with pre-votes, and overwrites it.
#[test]
fn test_leader_election_overwrite_newer_logs_pre_vote() {
    let cfg = |c: &mut Config| {
        c.peers = vec![1, 2, 3, 4, 5];
        c.pre_vote = true;
    };
    let cfg: Option<&dyn Fn(&mut Config)> = Some(&cfg);
    // Node 1 led term 1 and got entry 1 only to node 2; node 3 led term 2
    // with the votes of 4 and 5 and wrote entry 1 only to itself.
    let mut nt = Network::new_with_config(
        cfg,
        vec![
            Some(ents_with_config(cfg, 1, &[1]).into()),
            Some(ents_with_config(cfg, 2, &[1]).into()),
            Some(ents_with_config(cfg, 3, &[2]).into()),
            Some(voted_with_config(cfg, 4, 3, 2).into()),
            Some(voted_with_config(cfg, 5, 3, 2).into()),
        ],
    );

    // A quorum knows of term 2: the pre-vote fails and node 1 learns term 2.
    nt.send(vec![hup(1)]);
    assert_eq!(nt.raft(1).state, StateRole::Follower, "first campaign");
    assert_eq!(nt.raft(1).term, 2, "first campaign: term");

    nt.send(vec![hup(1)]);
    assert_eq!(nt.raft(1).state, StateRole::Leader, "second campaign");
    assert_eq!(nt.raft(1).term, 3, "second campaign: term");

    for id in 1..=5u64 {
        let entries = nt.raft(id).raft_log.all_entries();
        assert_eq!(entries.len(), 2, "node {id}: entries {entries:?}");
        assert_eq!(entries[0].term, 1, "node {id}: term at index 1");
        assert_eq!(entries[1].term, 3, "node {id}: term at index 2");
    }
}

/// etcd `testVoteFromAnyState`: from every role, a request of a higher term
/// is granted. A real vote makes the node a follower of that term that voted
/// for the sender; a pre-vote changes nothing on the voter.
fn check_vote_from_any_state(vt: MessageType) {
    let roles = [
        StateRole::Follower,
        StateRole::PreCandidate,
        StateRole::Candidate,
        StateRole::Leader,
    ];
    for st in roles {
        let mut r = new_test_raft(1, vec![1, 2, 3], 10, 1, MemoryStorage::new());
        r.term = 1;
        match st {
            StateRole::Follower => r.become_follower(1, 3),
            StateRole::PreCandidate => r.become_pre_candidate(),
            StateRole::Candidate => r.become_candidate(),
            StateRole::Leader => {
                r.become_candidate();
                r.become_leader();
            }
        }
        r.read_messages();
        // Setting the role above may have moved the term on.
        let orig_term = r.term;
        let new_term = r.term + 1;

        let mut msg = new_message(2, 1, vt);
        msg.term = new_term;
        msg.log_term = new_term;
        msg.index = 42;
        r.step(msg)
            .unwrap_or_else(|e| panic!("{vt:?},{st:?}: step failed: {e}"));
        let msgs = r.read_messages();
        assert_eq!(msgs.len(), 1, "{vt:?},{st:?}: messages {msgs:?}");
        let resp = &msgs[0];
        assert_eq!(
            resp.msg_type(),
            crate::util::vote_resp_msg_type(vt),
            "{vt:?},{st:?}: response type"
        );
        assert!(!resp.reject, "{vt:?},{st:?}: unexpected rejection");
        assert_eq!(
            resp.term, new_term,
            "{vt:?},{st:?}: answered at the request's term"
        );

        if vt == MessageType::MsgRequestVote {
            assert_eq!(r.state, StateRole::Follower, "{vt:?},{st:?}: state");
            assert_eq!(r.term, new_term, "{vt:?},{st:?}: term");
            assert_eq!(r.vote, 2, "{vt:?},{st:?}: vote");
        } else {
            assert_eq!(r.state, st, "{vt:?},{st:?}: state");
            assert_eq!(r.term, orig_term, "{vt:?},{st:?}: term");
            // A follower or pre-candidate has not voted; a candidate or
            // leader voted for itself.
            assert!(
                r.vote == NONE || r.vote == 1,
                "{vt:?},{st:?}: vote {}",
                r.vote
            );
        }
    }
}

/// etcd `TestVoteFromAnyState` (with the pre-candidate role added to
/// TinyKV's version).
#[test]
fn test_vote_from_any_state() {
    check_vote_from_any_state(MessageType::MsgRequestVote);
}

/// etcd `TestPreVoteFromAnyState`.
#[test]
fn test_pre_vote_from_any_state() {
    check_vote_from_any_state(MessageType::MsgPreVote);
}

/// etcd `testRecvMsgVote`: who grants a (pre-)vote request of its own term,
/// by log and earlier vote, in every role.
fn check_recv_msg_vote(msg_type: MessageType) {
    use StateRole::{Candidate, Follower, Leader, PreCandidate};
    // (state, index, log_term, vote_for, wreject)
    let tests = [
        (Follower, 0, 0, NONE, true),
        (Follower, 0, 1, NONE, true),
        (Follower, 0, 2, NONE, true),
        (Follower, 0, 3, NONE, false),
        (Follower, 1, 0, NONE, true),
        (Follower, 1, 1, NONE, true),
        (Follower, 1, 2, NONE, true),
        (Follower, 1, 3, NONE, false),
        (Follower, 2, 0, NONE, true),
        (Follower, 2, 1, NONE, true),
        (Follower, 2, 2, NONE, false),
        (Follower, 2, 3, NONE, false),
        (Follower, 3, 0, NONE, true),
        (Follower, 3, 1, NONE, true),
        (Follower, 3, 2, NONE, false),
        (Follower, 3, 3, NONE, false),
        (Follower, 3, 2, 2, false),
        (Follower, 3, 2, 1, true),
        (Leader, 3, 3, 1, true),
        (PreCandidate, 3, 3, 1, true),
        (Candidate, 3, 3, 1, true),
    ];
    for (i, &(state, index, log_term, vote_for, wreject)) in tests.iter().enumerate() {
        let mut sm = new_test_raft(1, vec![1], 10, 1, MemoryStorage::new());
        sm.state = state;
        sm.vote = vote_for;
        let entry = |index, term| Entry {
            index,
            term,
            ..Default::default()
        };
        sm.raft_log = new_log(new_memory_storage_with_ents(vec![
            Entry::default(),
            entry(1, 2),
            entry(2, 2),
        ]));
        // Same term on both sides: only the logs and the earlier vote decide.
        let term = sm.raft_log.last_term().max(log_term);
        sm.term = term;
        let mut m = new_message(2, 1, msg_type);
        m.term = term;
        m.index = index;
        m.log_term = log_term;
        sm.step(m).expect("a vote request steps");

        let msgs = sm.read_messages();
        assert_eq!(msgs.len(), 1, "{msg_type:?} #{i}: messages {msgs:?}");
        assert_eq!(
            msgs[0].msg_type(),
            crate::util::vote_resp_msg_type(msg_type),
            "{msg_type:?} #{i}: response type"
        );
        assert_eq!(msgs[0].reject, wreject, "{msg_type:?} #{i}: reject");
    }
}

/// etcd `TestRecvMsgVote`, with the pre-candidate case.
#[test]
fn test_recv_msg_vote() {
    check_recv_msg_vote(MessageType::MsgRequestVote);
}

/// etcd `TestRecvMsgPreVote`.
#[test]
fn test_recv_msg_pre_vote() {
    check_recv_msg_vote(MessageType::MsgPreVote);
}

/// Not in etcd's suite, its rules in `Step` made explicit: a pre-vote never
/// moves the voter's term or vote, a lower-term pre-vote is rejected at the
/// voter's term, and a rejection of a higher term makes the pre-candidate a
/// follower of that term while a grant of a higher term does not.
#[test]
fn test_pre_vote_term_rules() {
    let mut voter = new_node(2, true, false);
    voter.become_follower(3, NONE);
    let mut pv = new_message(1, 2, MessageType::MsgPreVote);
    pv.term = 5;
    voter.step(pv.clone()).expect("pre-vote steps");
    assert_eq!(
        (voter.term, voter.vote),
        (3, NONE),
        "pre-vote binds nothing"
    );
    let resp = voter.read_messages().pop().expect("answered");
    assert_eq!(
        (resp.msg_type(), resp.term, resp.reject),
        (MessageType::MsgPreVoteResponse, 5, false)
    );

    pv.term = 2;
    voter.step(pv).expect("old pre-vote steps");
    let resp = voter.read_messages().pop().expect("answered");
    assert_eq!(
        (resp.msg_type(), resp.term, resp.reject),
        (MessageType::MsgPreVoteResponse, 3, true),
        "a lower-term pre-vote is rejected at the voter's term"
    );

    let mut pc = new_node(1, true, false);
    pc.step(hup(1)).expect("campaign");
    assert_eq!((pc.state, pc.term), (StateRole::PreCandidate, 0));
    let sent = pc.read_messages();
    assert_eq!(sent.len(), 2, "one pre-vote per peer: {sent:?}");
    assert!(
        sent.iter()
            .all(|m| m.msg_type() == MessageType::MsgPreVote && m.term == 1),
        "pre-votes ask for term + 1: {sent:?}"
    );
    let mut grant = new_message(2, 1, MessageType::MsgPreVoteResponse);
    grant.term = 1;
    pc.step(grant).expect("grant steps");
    assert_eq!(
        (pc.state, pc.term),
        (StateRole::Candidate, 1),
        "a quorum of pre-votes starts the real election"
    );

    let mut pc = new_node(1, true, false);
    pc.step(hup(1)).expect("campaign");
    let mut reject = new_message(2, 1, MessageType::MsgPreVoteResponse);
    reject.term = 7;
    reject.reject = true;
    pc.step(reject).expect("rejection steps");
    assert_eq!((pc.state, pc.term), (StateRole::Follower, 7));
}

/// etcd `TestLeaderElectionWithCheckQuorum`: votes are cast freely right
/// after start; later a node that heard from the leader within the election
/// timeout ignores vote requests, one whose timeout passed grants them.
#[test]
fn test_leader_election_with_check_quorum() {
    let mut nt = Network::new(
        (1..=3)
            .map(|id| Some(new_node(id, false, true).into()))
            .collect(),
    );
    let et = nt.raft(1).election_timeout;
    set_randomized_election_timeout(nt.raft_mut(1), et + 1);
    set_randomized_election_timeout(nt.raft_mut(2), et + 2);

    // Immediately after creation, votes are cast regardless of the lease.
    nt.send(vec![hup(1)]);
    assert_eq!(nt.raft(1).state, StateRole::Leader);
    assert_eq!(nt.raft(3).state, StateRole::Follower);

    // The role changes redrew the timeouts; set them above et again.
    set_randomized_election_timeout(nt.raft_mut(1), et + 1);
    set_randomized_election_timeout(nt.raft_mut(2), et + 2);
    for _ in 0..et {
        nt.raft_mut(1).tick();
    }
    for _ in 0..et {
        nt.raft_mut(2).tick();
    }
    nt.send(vec![hup(3)]);
    assert_eq!(nt.raft(1).state, StateRole::Follower);
    assert_eq!(nt.raft(3).state, StateRole::Leader);
}

/// etcd `TestFreeStuckCandidateWithCheckQuorum`: a candidate of a higher
/// term that the followers ignore (they are in the leader's lease) frees
/// itself by answering the leader's heartbeat, which deposes the leader.
#[test]
fn test_free_stuck_candidate_with_check_quorum() {
    let mut nt = Network::new(
        (1..=3)
            .map(|id| Some(new_node(id, false, true).into()))
            .collect(),
    );
    let et = nt.raft(2).election_timeout;
    set_randomized_election_timeout(nt.raft_mut(2), et + 1);
    for _ in 0..et {
        nt.raft_mut(2).tick();
    }
    nt.send(vec![hup(1)]);

    nt.isolate(1);
    nt.send(vec![hup(3)]);
    assert_eq!(nt.raft(2).state, StateRole::Follower);
    assert_eq!(nt.raft(3).state, StateRole::Candidate);
    assert_eq!(nt.raft(3).term, nt.raft(2).term + 1);

    // Again, for safety.
    nt.send(vec![hup(3)]);
    assert_eq!(nt.raft(2).state, StateRole::Follower);
    assert_eq!(nt.raft(3).state, StateRole::Candidate);
    assert_eq!(nt.raft(3).term, nt.raft(2).term + 2);

    nt.recover();
    let a_term = nt.raft(1).term;
    nt.send(vec![heartbeat(1, 3, a_term)]);
    // The leader is disrupted so the stuck node is freed.
    assert_eq!(nt.raft(1).state, StateRole::Follower);
    assert_eq!(nt.raft(3).term, nt.raft(1).term);

    // Vote again: this time node 3 wins.
    nt.send(vec![hup(3)]);
    assert_eq!(nt.raft(3).state, StateRole::Leader);
}

/// etcd `TestNonPromotableVoterWithCheckQuorum`: a node that is not a member
/// still votes, follows the leader and never campaigns.
#[test]
fn test_non_promotable_voter_with_check_quorum() {
    let mut a = new_test_raft(1, vec![1, 2], 10, 1, MemoryStorage::new());
    let mut b = new_test_raft(2, vec![1], 10, 1, MemoryStorage::new());
    a.check_quorum = true;
    b.check_quorum = true;
    let mut nt = Network::new(vec![Some(a.into()), Some(b.into())]);
    let et = nt.raft(2).election_timeout;
    set_randomized_election_timeout(nt.raft_mut(2), et + 1);
    assert!(!nt.raft(2).promotable());

    for _ in 0..et {
        nt.raft_mut(2).tick();
    }
    nt.send(vec![hup(1)]);
    assert_eq!(nt.raft(1).state, StateRole::Leader);
    assert_eq!(nt.raft(2).state, StateRole::Follower);
    assert_eq!(nt.raft(2).lead, 1);
}

/// etcd `TestDisruptiveFollower`: a follower that timed out while the
/// leader's messages were delayed becomes a candidate of a higher term; the
/// followers in the lease ignore its votes, but its answer to the stale
/// heartbeat deposes the leader (the price of freeing a stuck candidate).
#[test]
fn test_disruptive_follower() {
    let mut nt = new_followers_at_term_1(false, true);
    nt.send(vec![hup(1)]);
    assert_eq!(
        states(&nt),
        [StateRole::Leader, StateRole::Follower, StateRole::Follower]
    );

    // The leader's messages to node 3 are late while its ticks elapse.
    let et = nt.raft(3).election_timeout;
    set_randomized_election_timeout(nt.raft_mut(3), et + 2);
    for _ in 0..et + 1 {
        nt.raft_mut(3).tick();
    }
    // The last tick fires before any leader message arrives.
    nt.raft_mut(3).tick();
    assert_eq!(
        states(&nt),
        [StateRole::Leader, StateRole::Follower, StateRole::Candidate]
    );
    assert_eq!(terms(&nt), [2, 2, 3]);

    // With node 3's vote requests still queued, the leader's heartbeat of
    // term 2 arrives; node 3 answers at term 3 and the leader steps down.
    let term = nt.raft(1).term;
    nt.send(vec![heartbeat(1, 3, term)]);
    assert_eq!(
        states(&nt),
        [
            StateRole::Follower,
            StateRole::Follower,
            StateRole::Candidate
        ]
    );
    assert_eq!(terms(&nt), [3, 2, 3]);
}

/// etcd `TestDisruptiveFollowerPreVote`: with PreVote, the isolated
/// follower with a shorter log stays a pre-candidate at the old term, and
/// the late heartbeat does not depose the leader.
#[test]
fn test_disruptive_follower_pre_vote() {
    let mut nt = new_followers_at_term_1(false, true);
    nt.send(vec![hup(1)]);
    assert_eq!(
        states(&nt),
        [StateRole::Leader, StateRole::Follower, StateRole::Follower]
    );

    nt.isolate(3);
    for _ in 0..3 {
        nt.send(vec![propose(1)]);
    }
    for id in 1..=3 {
        nt.raft_mut(id).pre_vote = true;
    }
    nt.recover();
    nt.send(vec![hup(3)]);
    assert_eq!(
        states(&nt),
        [
            StateRole::Leader,
            StateRole::Follower,
            StateRole::PreCandidate
        ]
    );
    assert_eq!(terms(&nt), [2, 2, 2]);

    let term = nt.raft(1).term;
    nt.send(vec![heartbeat(1, 3, term)]);
    assert_eq!(nt.raft(1).state, StateRole::Leader);
}

/// etcd `TestLeaderStepdownWhenQuorumActive`: a leader that hears from a
/// quorum keeps leading past an election timeout.
#[test]
fn test_leader_stepdown_when_quorum_active() {
    let mut sm = new_test_raft(1, vec![1, 2, 3], 5, 1, MemoryStorage::new());
    sm.check_quorum = true;
    sm.become_candidate();
    sm.become_leader();
    for _ in 0..sm.election_timeout + 1 {
        let mut resp = new_message(2, 1, MessageType::MsgHeartbeatResponse);
        resp.term = sm.term;
        sm.step(resp).expect("heartbeat response steps");
        sm.tick();
    }
    assert_eq!(sm.state, StateRole::Leader);
}

/// etcd `TestLeaderStepdownWhenQuorumLost`: a leader that hears from nobody
/// steps down after an election timeout.
#[test]
fn test_leader_stepdown_when_quorum_lost() {
    let mut sm = new_test_raft(1, vec![1, 2, 3], 5, 1, MemoryStorage::new());
    sm.check_quorum = true;
    sm.become_candidate();
    sm.become_leader();
    for _ in 0..sm.election_timeout + 1 {
        sm.tick();
    }
    assert_eq!(sm.state, StateRole::Follower);
}

/// etcd `TestLeaderSupersedingWithCheckQuorum`: a candidate wins only once
/// a voter's lease has run out.
#[test]
fn test_leader_superseding_with_check_quorum() {
    let mut nt = Network::new(
        (1..=3)
            .map(|id| Some(new_node(id, false, true).into()))
            .collect(),
    );
    let et = nt.raft(2).election_timeout;
    set_randomized_election_timeout(nt.raft_mut(2), et + 1);
    for _ in 0..et {
        nt.raft_mut(2).tick();
    }
    nt.send(vec![hup(1)]);
    assert_eq!(nt.raft(1).state, StateRole::Leader);
    assert_eq!(nt.raft(3).state, StateRole::Follower);

    nt.send(vec![hup(3)]);
    // Node 2 ignored node 3's request: it heard from the leader within the
    // election timeout.
    assert_eq!(nt.raft(3).state, StateRole::Candidate);

    // Node 2's lease runs out.
    for _ in 0..et {
        nt.raft_mut(2).tick();
    }
    nt.send(vec![hup(3)]);
    assert_eq!(nt.raft(3).state, StateRole::Leader);
}

/// etcd `TestAddNodeCheckQuorum`: a member added just before a quorum check
/// counts as active once, so the leader does not step down at once; it does
/// after an election timeout without hearing from it.
#[test]
fn test_add_node_check_quorum() {
    let mut r = new_test_raft(1, vec![1], 10, 1, MemoryStorage::new());
    r.check_quorum = true;
    r.become_candidate();
    r.become_leader();
    for _ in 0..r.election_timeout - 1 {
        r.tick();
    }
    r.apply_conf_change(&ConfChange {
        change_type: ConfChangeType::AddNode as i32,
        node_id: 2,
        ..Default::default()
    });
    // This tick reaches the election timeout: a quorum check.
    r.tick();
    assert_eq!(r.state, StateRole::Leader);
    for _ in 0..r.election_timeout {
        r.tick();
    }
    assert_eq!(r.state, StateRole::Follower);
}

/// etcd `TestLeaderTransferWithCheckQuorum`: a transfer campaign passes the
/// voters' lease (`context == CampaignTransfer`), both ways.
#[test]
fn test_leader_transfer_with_check_quorum() {
    let mut nt = Network::new(vec![None, None, None]);
    for id in 1..=3u64 {
        let r = nt.raft_mut(id);
        r.check_quorum = true;
        let et = r.election_timeout;
        set_randomized_election_timeout(r, et + id as usize);
    }
    // Node 2's lease runs out so that it can vote for node 1.
    let et = nt.raft(2).election_timeout;
    for _ in 0..et {
        nt.raft_mut(2).tick();
    }
    nt.send(vec![hup(1)]);
    assert_eq!(nt.raft(1).state, StateRole::Leader);

    nt.send(vec![new_message(2, 1, MessageType::MsgTransferLeader)]);
    let r1 = nt.raft(1);
    assert_eq!(
        (r1.state, r1.lead, r1.lead_transferee),
        (StateRole::Follower, 2, NONE)
    );

    // After some replication, leadership goes back to node 1.
    nt.send(vec![propose(2)]);
    nt.send(vec![new_message(1, 2, MessageType::MsgTransferLeader)]);
    let r1 = nt.raft(1);
    assert_eq!(
        (r1.state, r1.lead, r1.lead_transferee),
        (StateRole::Leader, 1, NONE)
    );
}

/// etcd `TestPreVoteWithSplitVote`: after a split pre-vote and vote, the
/// next round completes.
#[test]
fn test_pre_vote_with_split_vote() {
    let mut nt = new_followers_at_term_1(true, false);
    nt.send(vec![hup(1)]);

    // The leader is down; both followers campaign at once.
    nt.isolate(1);
    nt.send(vec![hup(2), hup(3)]);
    assert_eq!(nt.raft(2).term, 3);
    assert_eq!(nt.raft(3).term, 3);
    assert_eq!(nt.raft(2).state, StateRole::Candidate);
    assert_eq!(nt.raft(3).state, StateRole::Candidate);

    // Node 2 times out first.
    nt.send(vec![hup(2)]);
    assert_eq!(nt.raft(2).term, 4);
    assert_eq!(nt.raft(3).term, 4);
    assert_eq!(nt.raft(2).state, StateRole::Leader);
    assert_eq!(nt.raft(3).state, StateRole::Follower);
}

/// etcd `TestPreVoteWithCheckQuorum`: with the leader isolated, the
/// followers' pre-votes are first ignored (lease) but an election completes.
#[test]
fn test_pre_vote_with_check_quorum() {
    let mut nt = new_followers_at_term_1(true, true);
    nt.send(vec![hup(1)]);
    nt.isolate(1);
    assert_eq!(
        states(&nt),
        [StateRole::Leader, StateRole::Follower, StateRole::Follower]
    );

    // Node 2 ignores node 3's pre-vote (lease), then campaigns itself.
    nt.send(vec![hup(3)]);
    nt.send(vec![hup(2)]);
    assert!(
        nt.raft(2).state == StateRole::Leader || nt.raft(3).state == StateRole::Follower,
        "no leader: states {:?}",
        states(&nt)
    );
}

/// etcd `TestNodeWithSmallerTermCanCompleteElection`: a node that fell
/// behind in terms rejoins as the leader is cut off, and an election still
/// completes (it once stalled with PreVote on).
#[test]
fn test_node_with_smaller_term_can_complete_election() {
    let mut nt = new_followers_at_term_1(true, false);
    nt.cut(1, 3);
    nt.cut(2, 3);

    nt.send(vec![hup(1)]);
    assert_eq!(nt.raft(1).state, StateRole::Leader);
    assert_eq!(nt.raft(2).state, StateRole::Follower);

    nt.send(vec![hup(3)]);
    assert_eq!(nt.raft(3).state, StateRole::PreCandidate);

    nt.send(vec![hup(2)]);
    assert_eq!(terms(&nt), [3, 3, 1]);
    assert_eq!(
        states(&nt),
        [
            StateRole::Follower,
            StateRole::Leader,
            StateRole::PreCandidate
        ]
    );

    // Node 3 comes back and node 2, the leader, is cut off at once.
    nt.recover();
    nt.cut(2, 1);
    nt.cut(2, 3);
    nt.send(vec![hup(3)]);
    nt.send(vec![hup(1)]);
    assert!(
        nt.raft(1).state == StateRole::Leader || nt.raft(3).state == StateRole::Leader,
        "no leader: states {:?}",
        states(&nt)
    );
}

/// etcd `newPreVoteMigrationCluster`: a rolling switch to PreVote. Node 1
/// leads term 2, node 2 follows, node 3 was partitioned without PreVote and
/// ran to term 4 as a candidate with a shorter log; then it gets PreVote and
/// the network heals.
fn new_pre_vote_migration_cluster() -> Network {
    let peers = (1..=3)
        .map(|id| {
            // Node 3 starts without PreVote, as a node not yet upgraded.
            let mut r = new_node(id, id != 3, false);
            r.become_follower(1, NONE);
            Some(r.into())
        })
        .collect();
    let mut nt = Network::new(peers);
    nt.send(vec![hup(1)]);

    nt.isolate(3);
    nt.send(vec![propose(1)]);
    nt.send(vec![hup(3)]);
    nt.send(vec![hup(3)]);
    assert_eq!(
        states(&nt),
        [StateRole::Leader, StateRole::Follower, StateRole::Candidate]
    );
    assert_eq!(terms(&nt), [2, 2, 4]);

    nt.raft_mut(3).pre_vote = true;
    nt.recover();
    nt
}

/// etcd `TestPreVoteMigrationCanCompleteElection`.
#[test]
fn test_pre_vote_migration_can_complete_election() {
    let mut nt = new_pre_vote_migration_cluster();
    // The leader goes down.
    nt.isolate(1);

    nt.send(vec![hup(3)]);
    nt.send(vec![hup(2)]);
    assert_eq!(nt.raft(2).state, StateRole::Follower);
    assert_eq!(nt.raft(3).state, StateRole::PreCandidate);

    nt.send(vec![hup(3)]);
    nt.send(vec![hup(2)]);
    assert!(
        nt.raft(2).state == StateRole::Leader || nt.raft(3).state == StateRole::Follower,
        "no leader: states {:?}",
        states(&nt)
    );
}

/// etcd `TestPreVoteMigrationWithFreeStuckPreCandidate`: the pre-candidate
/// stuck at a higher term frees itself by answering the leader's heartbeat.
#[test]
fn test_pre_vote_migration_with_free_stuck_pre_candidate() {
    let mut nt = new_pre_vote_migration_cluster();

    nt.send(vec![hup(3)]);
    assert_eq!(
        states(&nt),
        [
            StateRole::Leader,
            StateRole::Follower,
            StateRole::PreCandidate
        ]
    );

    // Again, for safety.
    nt.send(vec![hup(3)]);
    assert_eq!(
        states(&nt),
        [
            StateRole::Leader,
            StateRole::Follower,
            StateRole::PreCandidate
        ]
    );

    let term = nt.raft(1).term;
    nt.send(vec![heartbeat(1, 3, term)]);
    // The leader is disrupted so that the stuck peer is freed.
    assert_eq!(nt.raft(1).state, StateRole::Follower);
    assert_eq!(nt.raft(3).term, nt.raft(1).term);
}

/// etcd `TestStateTransition`: which role changes are allowed, and the term
/// and leader each leaves. A leader cannot become a (pre-)candidate, nor a
/// follower a leader; those panic.
#[test]
fn test_state_transition() {
    use StateRole::{Candidate, Follower, Leader, PreCandidate};
    // (from, to, allowed, term, lead)
    let tests = [
        (Follower, Follower, true, 1, NONE),
        (Follower, PreCandidate, true, 0, NONE),
        (Follower, Candidate, true, 1, NONE),
        (Follower, Leader, false, 0, NONE),
        (PreCandidate, Follower, true, 0, NONE),
        (PreCandidate, PreCandidate, true, 0, NONE),
        (PreCandidate, Candidate, true, 1, NONE),
        (PreCandidate, Leader, true, 0, 1),
        (Candidate, Follower, true, 0, NONE),
        (Candidate, PreCandidate, true, 0, NONE),
        (Candidate, Candidate, true, 1, NONE),
        (Candidate, Leader, true, 0, 1),
        (Leader, Follower, true, 1, NONE),
        (Leader, PreCandidate, false, 0, NONE),
        (Leader, Candidate, false, 1, NONE),
        (Leader, Leader, true, 0, 1),
    ];
    for (i, &(from, to, allowed, wterm, wlead)) in tests.iter().enumerate() {
        let mut sm = new_test_raft(1, vec![1], 10, 1, MemoryStorage::new());
        sm.state = from;
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            match to {
                Follower => sm.become_follower(wterm, wlead),
                PreCandidate => sm.become_pre_candidate(),
                Candidate => sm.become_candidate(),
                Leader => sm.become_leader(),
            }
            (sm.term, sm.lead)
        }));
        match result {
            Ok(got) => {
                assert!(allowed, "#{i}: {from:?} -> {to:?} must panic");
                assert_eq!(got, (wterm, wlead), "#{i}: {from:?} -> {to:?}");
            }
            Err(_) => assert!(!allowed, "#{i}: {from:?} -> {to:?} panicked"),
        }
    }
}

/// Ticks every node of `nt` until `done` holds, at most `limit` ticks;
/// returns the ticks taken, or panics with `what` and the last state seen.
fn tick_until(
    nt: &mut Network,
    limit: usize,
    what: &str,
    done: impl Fn(&Network) -> bool,
) -> usize {
    for ticks in 0..limit {
        if done(nt) {
            return ticks;
        }
        nt.tick_all();
    }
    let seen: Vec<_> = nt
        .peers
        .keys()
        .map(|&id| (id, nt.raft(id).state, nt.raft(id).term, nt.raft(id).lead))
        .collect();
    panic!("{what}: not within {limit} ticks; (id, role, term, leader): {seen:?}");
}

fn leaders(nt: &Network) -> Vec<u64> {
    nt.peers
        .keys()
        .copied()
        .filter(|&id| nt.raft(id).state == StateRole::Leader)
        .collect()
}

/// Not a port: the two features together, driven by ticks alone. A leader
/// cut off from its group steps down within two election timeouts
/// (CheckQuorum) without moving its term (PreVote: its pre-votes go
/// nowhere); the others elect a new leader; when the old one comes back it
/// follows that leader and the leader is not disturbed. Without PreVote the
/// returning node would carry a higher term and depose the new leader.
#[test]
fn test_isolated_leader_steps_down_and_rejoins_without_disruption() {
    let cfg = |c: &mut Config| {
        c.pre_vote = true;
        c.check_quorum = true;
    };
    let cfg: Option<&dyn Fn(&mut Config)> = Some(&cfg);
    let mut nt = Network::new_with_config(cfg, vec![None, None, None, None, None]);
    let et = nt.raft(1).election_timeout;

    tick_until(&mut nt, 100 * et, "first leader", |nt| {
        leaders(nt).len() == 1
    });
    let old = leaders(&nt)[0];
    let old_term = nt.raft(old).term;

    nt.isolate(old);
    let ticks = tick_until(&mut nt, 100 * et, "old leader steps down", |nt| {
        nt.raft(old).state != StateRole::Leader
    });
    // The check runs every election timeout; the period the cut fell in
    // still counts the answers from before it.
    assert!(
        ticks <= 2 * et,
        "CheckQuorum deposes within two election timeouts, took {ticks}"
    );
    tick_until(&mut nt, 100 * et, "new leader", |nt| {
        leaders(nt).iter().any(|&id| id != old)
    });
    // Let the isolated node time out a few more times.
    for _ in 0..5 * et {
        nt.tick_all();
    }
    assert_eq!(
        nt.raft(old).term,
        old_term,
        "an isolated pre-candidate never moves its term"
    );
    let new = leaders(&nt)
        .into_iter()
        .find(|&id| id != old)
        .expect("a new leader");
    let new_term = nt.raft(new).term;
    assert!(new_term > old_term);

    nt.recover();
    tick_until(&mut nt, 100 * et, "old leader follows the new one", |nt| {
        nt.raft(old).lead == new && nt.raft(old).term == new_term
    });
    for _ in 0..5 * et {
        nt.tick_all();
    }
    assert_eq!(leaders(&nt), vec![new], "the new leader was not disturbed");
    assert_eq!(nt.raft(new).term, new_term);
}
