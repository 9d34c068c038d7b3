//! Ported from TinyKV `raft/raft_test.go`: the part-2A tests (`*2AA`
//! elections, `*2AB` log replication) of the Raft state machine, driven
//! directly or over the synchronous test `Network`.
//!
//! The 2C (snapshot) and 3A (membership, leader transfer) tests of the same Go
//! file live in another module. Go keeps `*Raft` pointers to nodes it handed
//! to a network; here the network owns them and tests read them back with
//! `Network::raft`. Where Go compares logs with `diffu(ltoa(..))`, these tests
//! compare the `ltoa` strings, so a failure prints both logs.
//! `docs/ported/raft_test_2ab.md` maps every Go test to its port.

use kvproto::eraftpb::{Entry, Message, MessageType};

use crate::test_util::{
    NONE, Network, Peer, ents_with_config, ltoa, new_log, new_memory_storage_with_ents,
    new_message, new_test_config, new_test_raft, new_test_raft_with_config, next_ents,
    voted_with_config,
};
use crate::{Config, MemoryStorage, StateRole};

/// A node's own election trigger.
fn hup(id: u64) -> Message {
    new_message(id, id, MessageType::MsgHup)
}

/// A leader's own heartbeat trigger.
fn beat(id: u64) -> Message {
    new_message(id, id, MessageType::MsgBeat)
}

/// A proposal of one entry carrying `data`, delivered to `to`.
fn propose(from: u64, to: u64, data: &[u8]) -> Message {
    let mut m = new_message(from, to, MessageType::MsgPropose);
    m.entries = vec![Entry {
        data: data.to_vec(),
        ..Default::default()
    }];
    m
}

/// An entry with index, term and payload.
fn data_entry(index: u64, term: u64, data: &[u8]) -> Entry {
    Entry {
        index,
        term,
        data: data.to_vec(),
        ..Default::default()
    }
}

/// An append from an unnamed leader, as the handler-level tests send it.
fn append(term: u64, log_term: u64, index: u64, commit: u64, entries: Vec<Entry>) -> Message {
    Message {
        msg_type: MessageType::MsgAppend as i32,
        term,
        log_term,
        index,
        commit,
        entries,
        ..Default::default()
    }
}

/// Asserts that every real node of `nt` has exactly the log `want` (as text).
fn must_all_logs_eq(nt: &Network, want: &str, case: &str) {
    for (&id, p) in &nt.peers {
        if let Peer::Raft(sm) = p {
            assert_eq!(ltoa(&sm.raft_log), want, "{case} node {id}: log differs");
        }
    }
}

/// A leader's own progress tracks its log as proposals are appended.
#[test]
fn test_progress_leader_2ab() {
    let mut r = new_test_raft(1, vec![1, 2], 5, 1, MemoryStorage::new());
    r.become_candidate();
    r.become_leader();

    // The no-op is index 1; each proposal adds one more.
    for i in 0..5u64 {
        let pr = &r.prs[&r.id];
        assert!(
            pr.matched == i + 1 && pr.next == pr.matched + 1,
            "#{i}: unexpected progress {pr:?}"
        );
        r.step(propose(1, 1, b"foo"))
            .unwrap_or_else(|e| panic!("#{i}: proposal failed: {e}"));
    }
}

/// An election succeeds only with a quorum of live voters.
#[test]
fn test_leader_election_2aa() {
    let cfg: Option<&dyn Fn(&mut Config)> = None;
    let bh = || Some(Peer::BlackHole);
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
            StateRole::Candidate,
            1,
        ),
        (
            Network::new_with_config(cfg, vec![None, bh(), bh(), None]),
            StateRole::Candidate,
            1,
        ),
        (
            Network::new_with_config(cfg, vec![None, bh(), bh(), None, None]),
            StateRole::Leader,
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

/// Every node in turn can campaign and win, so elections work on a cluster
/// that already had leaders, not only from a clean start.
#[test]
fn test_leader_cycle_2aa() {
    let cfg: Option<&dyn Fn(&mut Config)> = None;
    let mut nt = Network::new_with_config(cfg, vec![None, None, None]);
    for campaigner in 1..=3u64 {
        nt.send(vec![hup(campaigner)]);
        for id in 1..=3u64 {
            let sm = nt.raft(id);
            let want = if id == campaigner {
                StateRole::Leader
            } else {
                StateRole::Follower
            };
            assert_eq!(
                sm.state, want,
                "after campaign of node {campaigner}: node {id} state"
            );
        }
    }
}

/// A new leader whose log lacks the highest-term (uncommitted) entry wins
/// and overwrites that entry on the nodes that have it (§5.3, §5.4.1).
#[test]
fn test_leader_election_overwrite_newer_logs_2ab() {
    let cfg = |c: &mut Config| c.peers = vec![1, 2, 3, 4, 5];
    let cfg: Option<&dyn Fn(&mut Config)> = Some(&cfg);
    // History: node 1 led term 1 and got entry 1 only to node 2; node 3 led
    // term 2 with the votes of 4 and 5 and wrote entry 1 only to itself.
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

    // Term 2 is already taken by a quorum: node 1 loses but learns term 2.
    nt.send(vec![hup(1)]);
    assert_eq!(
        nt.raft(1).state,
        StateRole::Follower,
        "first campaign: state"
    );
    assert_eq!(nt.raft(1).term, 2, "first campaign: term");

    // In term 3 its log (last term 1) is as good as those of 2, 4 and 5.
    nt.send(vec![hup(1)]);
    assert_eq!(
        nt.raft(1).state,
        StateRole::Leader,
        "second campaign: state"
    );
    assert_eq!(nt.raft(1).term, 3, "second campaign: term");

    // Everyone now holds (1, term 1) and the new leader's no-op (2, term 3).
    for id in 1..=5u64 {
        let entries = nt.raft(id).raft_log.all_entries();
        assert_eq!(entries.len(), 2, "node {id}: entries {entries:?}");
        assert_eq!(entries[0].term, 1, "node {id}: term at index 1");
        assert_eq!(entries[1].term, 3, "node {id}: term at index 2");
    }
}

/// A vote request of a higher term is granted from any role, and the voter
/// becomes a follower of that term.
#[test]
fn test_vote_from_any_state_2aa() {
    let vt = MessageType::MsgRequestVote;
    let vt_resp = MessageType::MsgRequestVoteResponse;
    for st in [StateRole::Follower, StateRole::Candidate, StateRole::Leader] {
        let mut r = new_test_raft(1, vec![1, 2, 3], 10, 1, MemoryStorage::new());
        r.term = 1;
        match st {
            StateRole::Follower => {
                let term = r.term;
                r.become_follower(term, 3);
            }
            StateRole::Candidate => r.become_candidate(),
            StateRole::PreCandidate => r.become_pre_candidate(),
            StateRole::Leader => {
                r.become_candidate();
                r.become_leader();
            }
        }
        r.read_messages();

        // Becoming candidate or leader above moved the term on.
        let new_term = r.term + 1;
        let mut msg = new_message(2, 1, vt);
        msg.term = new_term;
        msg.log_term = new_term;
        msg.index = 42;
        r.step(msg)
            .unwrap_or_else(|e| panic!("{vt:?},{st:?}: step failed: {e}"));

        assert_eq!(
            r.msgs.len(),
            1,
            "{vt:?},{st:?}: response messages {:?}",
            r.msgs
        );
        let resp = &r.msgs[0];
        assert_eq!(resp.msg_type(), vt_resp, "{vt:?},{st:?}: response type");
        assert!(!resp.reject, "{vt:?},{st:?}: unexpected rejection");

        assert_eq!(r.state, StateRole::Follower, "{vt:?},{st:?}: state");
        assert_eq!(r.term, new_term, "{vt:?},{st:?}: term");
        assert_eq!(r.vote, 2, "{vt:?},{st:?}: vote");
    }
}

/// Proposals reach every node and commit, also across a change of leader.
#[test]
fn test_log_replication_2ab() {
    let tests: Vec<(Network, Vec<Message>, u64)> = vec![
        (
            Network::new(vec![None, None, None]),
            vec![propose(1, 1, b"somedata")],
            2,
        ),
        (
            Network::new(vec![None, None, None]),
            vec![
                propose(1, 1, b"somedata"),
                hup(2),
                propose(1, 2, b"somedata"),
            ],
            4,
        ),
    ];

    for (i, (mut nt, msgs, wcommitted)) in tests.into_iter().enumerate() {
        nt.send(vec![hup(1)]);
        for m in &msgs {
            nt.send(vec![m.clone()]);
        }

        let props: Vec<&Message> = msgs
            .iter()
            .filter(|m| m.msg_type() == MessageType::MsgPropose)
            .collect();
        for j in 1..=3u64 {
            let storage = nt.storage[&j].clone();
            let sm = nt.raft_mut(j);
            assert_eq!(sm.raft_log.committed, wcommitted, "#{i}.{j}: committed");

            // The no-ops carry no data; what is left are the proposals, in order.
            let ents: Vec<Entry> = next_ents(sm, &storage)
                .into_iter()
                .filter(|e| !e.data.is_empty())
                .collect();
            assert_eq!(ents.len(), props.len(), "#{i}.{j}: applied {ents:?}");
            for (k, m) in props.iter().enumerate() {
                assert_eq!(ents[k].data, m.entries[0].data, "#{i}.{j}.{k}: data");
            }
        }
    }
}

/// A single node commits its own proposals at once.
#[test]
fn test_single_node_commit_2ab() {
    let mut nt = Network::new(vec![None]);
    nt.send(vec![hup(1)]);
    nt.send(vec![propose(1, 1, b"some data")]);
    nt.send(vec![propose(1, 1, b"some data")]);

    assert_eq!(nt.raft(1).raft_log.committed, 3, "committed");
}

/// Entries of an earlier term commit once the new leader's no-op of its own
/// term commits, with no new proposal (§5.4.2).
#[test]
fn test_commit_without_new_term_entry_2ab() {
    let mut nt = Network::new(vec![None, None, None, None, None]);
    nt.send(vec![hup(1)]);

    // Node 1 reaches only node 2: no quorum for its new entries.
    nt.cut(1, 3);
    nt.cut(1, 4);
    nt.cut(1, 5);

    nt.send(vec![propose(1, 1, b"some data")]);
    nt.send(vec![propose(1, 1, b"some data")]);
    assert_eq!(
        nt.raft(1).raft_log.committed,
        1,
        "before recovery: committed"
    );

    nt.recover();

    // Node 2 wins term 2; its no-op at index 4 commits indices 2 and 3 with it.
    nt.send(vec![hup(2)]);
    assert_eq!(
        nt.raft(1).raft_log.committed,
        4,
        "after recovery: committed"
    );
}

/// A heartbeat response from a follower that is behind makes the leader
/// send it the entries it lacks, and with them the commit index.
#[test]
fn test_commit_with_heartbeat_2ab() {
    let mut nt = Network::new(vec![None, None, None, None, None]);
    nt.send(vec![hup(1)]);

    nt.isolate(5);
    nt.send(vec![propose(1, 1, b"some data")]);
    nt.send(vec![propose(1, 1, b"some data")]);
    assert_eq!(
        nt.raft(5).raft_log.committed,
        1,
        "while isolated: committed"
    );

    nt.recover();
    nt.send(vec![beat(1)]);
    assert_eq!(
        nt.raft(5).raft_log.committed,
        3,
        "after heartbeat: committed"
    );
}

/// Two candidates of one term: one wins, the other stays candidate; its next
/// campaign disrupts the leader's term but fails for its shorter log.
#[test]
fn test_dueling_candidates_2ab() {
    let a = new_test_raft(1, vec![1, 2, 3], 10, 1, MemoryStorage::new());
    let b = new_test_raft(2, vec![1, 2, 3], 10, 1, MemoryStorage::new());
    let c = new_test_raft(3, vec![1, 2, 3], 10, 1, MemoryStorage::new());

    let mut nt = Network::new(vec![Some(a.into()), Some(b.into()), Some(c.into())]);
    nt.cut(1, 3);

    nt.send(vec![hup(1)]);
    nt.send(vec![hup(3)]);

    // Node 1 has its own vote and node 2's.
    assert_eq!(nt.raft(1).state, StateRole::Leader, "node 1 state");
    // Node 3 has its own vote and node 2's refusal.
    assert_eq!(nt.raft(3).state, StateRole::Candidate, "node 3 state");

    nt.recover();

    // Term 2 reaches nodes 1 and 2, who refuse node 3 for its empty log.
    nt.send(vec![hup(3)]);

    let mut wlog = new_log(new_memory_storage_with_ents(vec![
        Entry::default(),
        data_entry(1, 1, b""),
    ]));
    wlog.committed = 1;
    let tests = [
        (StateRole::Follower, 2, ltoa(&wlog)),
        (StateRole::Follower, 2, ltoa(&wlog)),
        (StateRole::Follower, 2, ltoa(&new_log(MemoryStorage::new()))),
    ];

    for (i, (state, term, want_log)) in tests.iter().enumerate() {
        let sm = nt.raft(i as u64 + 1);
        assert_eq!(sm.state, *state, "#{i}: state");
        assert_eq!(sm.term, *term, "#{i}: term");
        assert_eq!(&ltoa(&sm.raft_log), want_log, "#{i}: log differs");
    }
}

/// A stale candidate gives up when it hears from the leader of its term and
/// then receives the leader's log.
#[test]
fn test_candidate_concede_2ab() {
    let mut nt = Network::new(vec![None, None, None]);
    nt.isolate(1);

    nt.send(vec![hup(1)]);
    nt.send(vec![hup(3)]);

    nt.recover();
    // The heartbeat makes candidate 1 a follower of 3.
    nt.send(vec![beat(3)]);

    let data = b"force follower";
    // The proposal brings an append to node 1.
    nt.send(vec![propose(3, 3, data)]);
    // The heartbeat spreads the commit index.
    nt.send(vec![beat(3)]);

    let a = nt.raft(1);
    assert_eq!(a.state, StateRole::Follower, "node 1 state");
    assert_eq!(a.term, 1, "node 1 term");

    let mut wlog = new_log(new_memory_storage_with_ents(vec![
        Entry::default(),
        data_entry(1, 1, b""),
        data_entry(2, 1, data),
    ]));
    wlog.committed = 2;
    must_all_logs_eq(&nt, &ltoa(&wlog), "concede");
}

/// A single node elects itself.
#[test]
fn test_single_node_candidate_2aa() {
    let mut nt = Network::new(vec![None]);
    nt.send(vec![hup(1)]);

    assert_eq!(nt.raft(1).state, StateRole::Leader, "state");
}

/// An append from an old leader's term is ignored.
#[test]
fn test_old_messages_2ab() {
    let mut nt = Network::new(vec![None, None, None]);
    // Node 1 leads term 3 after node 2 led term 2.
    nt.send(vec![hup(1)]);
    nt.send(vec![hup(2)]);
    nt.send(vec![hup(1)]);
    // The leader of term 2 tries to append: ignored.
    let mut old = new_message(2, 1, MessageType::MsgAppend);
    old.term = 2;
    old.entries = vec![data_entry(3, 2, b"")];
    nt.send(vec![old]);
    nt.send(vec![propose(1, 1, b"somedata")]);

    let mut ilog = new_log(new_memory_storage_with_ents(vec![
        Entry::default(),
        data_entry(1, 1, b""),
        data_entry(2, 2, b""),
        data_entry(3, 3, b""),
        data_entry(4, 3, b"somedata"),
    ]));
    ilog.committed = 4;
    must_all_logs_eq(&nt, &ltoa(&ilog), "old messages");
}

/// A proposal commits only if node 1 could win the election with the live
/// nodes; otherwise nothing is appended anywhere.
#[test]
fn test_proposal_2ab() {
    let bh = || Some(Peer::BlackHole);
    let tests = vec![
        (Network::new(vec![None, None, None]), true),
        (Network::new(vec![None, None, bh()]), true),
        (Network::new(vec![None, bh(), bh()]), false),
        (Network::new(vec![None, bh(), bh(), None]), false),
        (Network::new(vec![None, bh(), bh(), None, None]), true),
    ];

    for (i, (mut nt, success)) in tests.into_iter().enumerate() {
        let data = b"somedata";

        nt.send(vec![hup(1)]);
        // On a candidate the proposal is dropped (the network ignores the
        // error, as TinyKV's does).
        nt.send(vec![propose(1, 1, data)]);

        let want_log = if success {
            let mut l = new_log(new_memory_storage_with_ents(vec![
                Entry::default(),
                data_entry(1, 1, b""),
                data_entry(2, 1, data),
            ]));
            l.committed = 2;
            l
        } else {
            new_log(MemoryStorage::new())
        };
        must_all_logs_eq(&nt, &ltoa(&want_log), &format!("#{i}"));
        assert_eq!(nt.raft(1).term, 1, "#{i}: term");
    }
}

/// The follower's side of AppendEntries (Figure 2, receiver steps 2-5):
/// reject without a matching previous entry; replace a conflicting suffix;
/// commit up to min(leader commit, index of the last new entry).
#[test]
fn test_handle_message_type_msg_append_2ab() {
    let e = |index, term| data_entry(index, term, b"");
    let tests = vec![
        // Previous entry: term mismatch, then missing.
        (append(3, 3, 2, 3, vec![]), 2, 0, true),
        (append(3, 3, 3, 3, vec![]), 2, 0, true),
        // Matching previous entry: append, truncating on conflict.
        (append(2, 1, 1, 1, vec![]), 2, 1, false),
        (append(2, 0, 0, 1, vec![e(1, 2)]), 1, 1, false),
        (append(2, 2, 2, 3, vec![e(3, 2), e(4, 2)]), 4, 3, false),
        (append(2, 2, 2, 4, vec![e(3, 2)]), 3, 3, false),
        (append(2, 1, 1, 4, vec![e(2, 2)]), 2, 2, false),
        // Commit: bounded by the last entry this append vouches for.
        (append(2, 1, 1, 3, vec![]), 2, 1, false),
        (append(2, 1, 1, 3, vec![e(2, 2)]), 2, 2, false),
        (append(2, 2, 2, 3, vec![]), 2, 2, false),
        (append(2, 2, 2, 4, vec![]), 2, 2, false),
    ];

    for (i, (m, w_index, w_commit, w_reject)) in tests.into_iter().enumerate() {
        let storage = MemoryStorage::new();
        storage
            .append(&[e(1, 1), e(2, 2)])
            .expect("append to memory storage");
        let mut sm = new_test_raft(1, vec![1], 10, 1, storage);
        sm.become_follower(2, NONE);

        sm.handle_append_entries(m);
        assert_eq!(sm.raft_log.last_index(), w_index, "#{i}: last index");
        assert_eq!(sm.raft_log.committed, w_commit, "#{i}: committed");
        let msgs = sm.read_messages();
        assert_eq!(msgs.len(), 1, "#{i}: messages {msgs:?}");
        assert_eq!(msgs[0].reject, w_reject, "#{i}: reject");
    }
}

/// The voter's side of RequestVote (§5.2, §5.4.1): grant only to a log at
/// least as up to date, and at most once per term.
#[test]
fn test_recv_message_type_msg_request_vote_2ab() {
    let msg_type = MessageType::MsgRequestVote;
    let msg_resp_type = MessageType::MsgRequestVoteResponse;
    use StateRole::{Candidate, Follower, Leader};
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
        (Candidate, 3, 3, 1, true),
    ];

    for (i, &(state, index, log_term, vote_for, wreject)) in tests.iter().enumerate() {
        let mut sm = new_test_raft(1, vec![1, 2], 10, 1, MemoryStorage::new());
        sm.state = state;
        sm.vote = vote_for;
        sm.raft_log = new_log(new_memory_storage_with_ents(vec![
            Entry::default(),
            data_entry(1, 2, b""),
            data_entry(2, 2, b""),
        ]));

        // Same term on both sides: only the logs and the earlier vote decide.
        let lterm = sm
            .raft_log
            .term(sm.raft_log.last_index())
            .unwrap_or_else(|e| panic!("#{i}: last term: {e}"));
        let term = lterm.max(log_term);
        sm.term = term;
        let mut m = new_message(2, 0, msg_type);
        m.term = term;
        m.index = index;
        m.log_term = log_term;
        let _ = sm.step(m);

        let msgs = sm.read_messages();
        assert_eq!(msgs.len(), 1, "#{i}: messages {msgs:?}");
        assert_eq!(msgs[0].msg_type(), msg_resp_type, "#{i}: response type");
        assert_eq!(msgs[0].reject, wreject, "#{i}: reject");
    }
}

/// Any role steps down to follower on a vote request or an append of a
/// higher term (§5.1); only the append names a leader.
#[test]
fn test_all_server_stepdown_2ab() {
    // (state, wstate, wterm, windex)
    let tests = [
        (StateRole::Follower, StateRole::Follower, 3, 0),
        (StateRole::Candidate, StateRole::Follower, 3, 0),
        (StateRole::Leader, StateRole::Follower, 3, 1),
    ];
    let tmsg_types = [MessageType::MsgRequestVote, MessageType::MsgAppend];
    let tterm = 3;

    for (i, &(state, wstate, wterm, windex)) in tests.iter().enumerate() {
        let mut sm = new_test_raft(1, vec![1, 2, 3], 10, 1, MemoryStorage::new());
        match state {
            StateRole::Follower => sm.become_follower(1, NONE),
            StateRole::Candidate => sm.become_candidate(),
            StateRole::PreCandidate => sm.become_pre_candidate(),
            StateRole::Leader => {
                sm.become_candidate();
                sm.become_leader();
            }
        }

        for (j, &msg_type) in tmsg_types.iter().enumerate() {
            let mut m = new_message(2, 0, msg_type);
            m.term = tterm;
            m.log_term = tterm;
            let _ = sm.step(m);

            assert_eq!(sm.state, wstate, "#{i}.{j}: state");
            assert_eq!(sm.term, wterm, "#{i}.{j}: term");
            assert_eq!(sm.raft_log.last_index(), windex, "#{i}.{j}: last index");
            assert_eq!(
                sm.raft_log.all_entries().len() as u64,
                windex,
                "#{i}.{j}: number of entries"
            );
            let wlead = if msg_type == MessageType::MsgRequestVote {
                NONE
            } else {
                2
            };
            assert_eq!(sm.lead, wlead, "#{i}.{j}: lead");
        }
    }
}

#[test]
fn test_candidate_reset_term_message_type_msg_heartbeat_2aa() {
    check_candidate_reset_term(MessageType::MsgHeartbeat);
}

#[test]
fn test_candidate_reset_term_message_type_msg_append_2aa() {
    check_candidate_reset_term(MessageType::MsgAppend);
}

/// A candidate that hears a heartbeat or append (`mt`) from the leader of a
/// higher term takes that term and becomes its follower.
fn check_candidate_reset_term(mt: MessageType) {
    let a = new_test_raft(1, vec![1, 2, 3], 10, 1, MemoryStorage::new());
    let b = new_test_raft(2, vec![1, 2, 3], 10, 1, MemoryStorage::new());
    let c = new_test_raft(3, vec![1, 2, 3], 10, 1, MemoryStorage::new());

    let mut nt = Network::new(vec![Some(a.into()), Some(b.into()), Some(c.into())]);

    nt.send(vec![hup(1)]);
    assert_eq!(nt.raft(1).state, StateRole::Leader, "{mt:?}: node 1 state");
    assert_eq!(
        nt.raft(2).state,
        StateRole::Follower,
        "{mt:?}: node 2 state"
    );
    assert_eq!(
        nt.raft(3).state,
        StateRole::Follower,
        "{mt:?}: node 3 state"
    );

    // Nodes 1 and 2 move to term 3 without node 3.
    nt.isolate(3);
    nt.send(vec![hup(2)]);
    nt.send(vec![hup(1)]);
    assert_eq!(
        nt.raft(1).state,
        StateRole::Leader,
        "{mt:?}: node 1 state after re-election"
    );
    assert_eq!(
        nt.raft(2).state,
        StateRole::Follower,
        "{mt:?}: node 2 state after re-election"
    );

    // Node 3 times out on its own; its vote requests wait in its queue.
    while nt.raft(3).state != StateRole::Candidate {
        nt.raft_mut(3).tick();
    }

    nt.recover();

    let mut m = new_message(1, 3, mt);
    m.term = nt.raft(1).term;
    nt.send(vec![m]);

    assert_eq!(
        nt.raft(3).state,
        StateRole::Follower,
        "{mt:?}: node 3 state"
    );
    assert_eq!(
        nt.raft(3).term,
        nt.raft(1).term,
        "{mt:?}: node 3 takes the leader's term"
    );
}

/// A follower that timed out while the leader's messages were delayed
/// campaigns in a higher term, and that term reaches and unseats the leader
/// once the stale heartbeat arrives.
#[test]
fn test_disruptive_follower_2aa() {
    let mut n1 = new_test_raft(1, vec![1, 2, 3], 10, 1, MemoryStorage::new());
    let mut n2 = new_test_raft(2, vec![1, 2, 3], 10, 1, MemoryStorage::new());
    let mut n3 = new_test_raft(3, vec![1, 2, 3], 10, 1, MemoryStorage::new());

    n1.become_follower(1, NONE);
    n2.become_follower(1, NONE);
    n3.become_follower(1, NONE);

    let mut nt = Network::new(vec![Some(n1.into()), Some(n2.into()), Some(n3.into())]);

    nt.send(vec![hup(1)]);

    let states = |nt: &Network| [1, 2, 3].map(|id| nt.raft(id).state);
    assert_eq!(
        states(&nt),
        [StateRole::Leader, StateRole::Follower, StateRole::Follower],
        "states after the first election"
    );

    // Node 3 hears nothing while its ticks elapse and becomes a candidate;
    // its vote requests wait in its queue.
    while nt.raft(3).state != StateRole::Candidate {
        nt.raft_mut(3).tick();
    }

    assert_eq!(
        states(&nt),
        [StateRole::Leader, StateRole::Follower, StateRole::Candidate],
        "states after node 3 timed out"
    );
    assert_eq!(
        [1, 2, 3].map(|id| nt.raft(id).term),
        [2, 2, 3],
        "terms after node 3 timed out"
    );

    // The leader's heartbeat of term 2 finally reaches node 3 (term 3); what
    // node 3 sends from here carries term 3, which unseats the leader.
    let mut m = new_message(1, 3, MessageType::MsgHeartbeat);
    m.term = nt.raft(1).term;
    nt.send(vec![m]);

    assert_eq!(nt.raft(1).state, StateRole::Follower, "node 1 state");
    assert_eq!(nt.raft(1).term, 3, "node 1 term");
}

/// A heartbeat never makes a follower commit entries it is not known to
/// share with the leader: the deposed leader's uncommitted tail stays
/// uncommitted.
#[test]
fn test_heartbeat_update_commit_2ab() {
    // (fail_cnt, success_cnt)
    let tests = [(1, 1), (5, 3), (5, 10)];
    for (i, &(fail_cnt, success_cnt)) in tests.iter().enumerate() {
        let sm1 = new_test_raft(1, vec![1, 2, 3], 10, 1, MemoryStorage::new());
        let sm2 = new_test_raft(2, vec![1, 2, 3], 10, 1, MemoryStorage::new());
        let sm3 = new_test_raft(3, vec![1, 2, 3], 10, 1, MemoryStorage::new());
        let mut nt = Network::new(vec![Some(sm1.into()), Some(sm2.into()), Some(sm3.into())]);
        nt.send(vec![hup(1)]);
        nt.isolate(1);
        // The isolated leader appends but cannot commit.
        for _ in 0..fail_cnt {
            nt.send(vec![propose(1, 1, b"")]);
        }
        let c1 = nt.raft(1).raft_log.committed;
        assert!(c1 <= 1, "#{i}: unexpected commit on node 1: {c1}");

        // The other two elect node 2 and commit.
        nt.send(vec![hup(2)]);
        for _ in 0..success_cnt {
            nt.send(vec![propose(2, 2, b"")]);
        }
        // Two no-ops, one per election.
        let w_commit = 2 + success_cnt;
        assert_eq!(
            nt.raft(2).raft_log.committed,
            w_commit,
            "#{i}: node 2 commit"
        );
        assert_eq!(
            nt.raft(3).raft_log.committed,
            w_commit,
            "#{i}: node 3 commit"
        );

        // Heartbeats reach node 1, appends do not.
        nt.recover();
        nt.ignore(MessageType::MsgAppend);
        nt.send(vec![beat(2)]);
        let c1 = nt.raft(1).raft_log.committed;
        assert!(c1 <= 1, "#{i}: node 1 commit {c1}, want at most 1");
    }
}

/// Only a leader answers `MsgBeat`, with a heartbeat to each follower.
#[test]
fn test_recv_message_type_msg_beat_2aa() {
    // (state, number of messages)
    let tests = [
        (StateRole::Leader, 2),
        (StateRole::Candidate, 0),
        (StateRole::Follower, 0),
    ];

    for (i, &(state, w_msg)) in tests.iter().enumerate() {
        let mut sm = new_test_raft(1, vec![1, 2, 3], 10, 1, MemoryStorage::new());
        sm.raft_log = new_log(new_memory_storage_with_ents(vec![
            Entry::default(),
            data_entry(1, 0, b""),
            data_entry(2, 1, b""),
        ]));
        sm.term = 1;
        sm.state = state;
        let _ = sm.step(beat(1));

        let msgs = sm.read_messages();
        assert_eq!(msgs.len(), w_msg, "#{i}: messages {msgs:?}");
        for m in &msgs {
            assert_eq!(
                m.msg_type(),
                MessageType::MsgHeartbeat,
                "#{i}: message type"
            );
        }
    }
}

/// Once a follower acknowledged, the leader's `next` for it moves past each
/// appended entry.
#[test]
fn test_leader_increase_next_2ab() {
    let previous_ents = [
        data_entry(1, 1, b""),
        data_entry(2, 1, b""),
        data_entry(3, 1, b""),
    ];
    // The earlier entries, the no-op, the proposal, plus one.
    let wnext = previous_ents.len() as u64 + 1 + 1 + 1;

    let storage = MemoryStorage::new();
    storage
        .append(&previous_ents)
        .expect("append to memory storage");
    // Node 1 knows only of node 2, as in the Go test; node 3 is a bystander.
    let sm = new_test_raft(1, vec![1, 2], 10, 1, storage);
    let mut nt = Network::new(vec![Some(sm.into()), None, None]);
    nt.send(vec![hup(1)]);

    nt.send(vec![propose(1, 1, b"somedata")]);

    let p = &nt.raft(1).prs[&2];
    assert_eq!(p.next, wnext, "next of node 2 ({p:?})");
}

/// A leader ignores `MsgHup`: it neither campaigns again nor moves its term.
#[test]
fn test_campaign_while_leader_2aa() {
    let cfg = new_test_config(1, vec![1], 5, 1);
    let mut r = new_test_raft_with_config(&cfg, MemoryStorage::new());
    assert_eq!(r.state, StateRole::Follower, "new node's state");
    // Through `step`, so the leader check before campaigning is exercised.
    let _ = r.step(hup(1));
    assert_eq!(r.state, StateRole::Leader, "single-node election");
    let term = r.term;
    let _ = r.step(hup(1));
    assert_eq!(r.state, StateRole::Leader, "state after a second MsgHup");
    assert_eq!(r.term, term, "term after a second MsgHup");
}

/// Two candidates split the vote of a term; the one that times out first
/// wins the next term.
#[test]
fn test_split_vote_2aa() {
    let mut n1 = new_test_raft(1, vec![1, 2, 3], 10, 1, MemoryStorage::new());
    let mut n2 = new_test_raft(2, vec![1, 2, 3], 10, 1, MemoryStorage::new());
    let mut n3 = new_test_raft(3, vec![1, 2, 3], 10, 1, MemoryStorage::new());

    n1.become_follower(1, NONE);
    n2.become_follower(1, NONE);
    n3.become_follower(1, NONE);

    let mut nt = Network::new(vec![Some(n1.into()), Some(n2.into()), Some(n3.into())]);
    nt.send(vec![hup(1)]);

    // The leader goes away; nodes 2 and 3 campaign at once and each votes
    // for itself.
    nt.isolate(1);
    nt.send(vec![hup(2), hup(3)]);

    assert_eq!(nt.raft(2).term, 3, "node 2 term after the split vote");
    assert_eq!(nt.raft(3).term, 3, "node 3 term after the split vote");
    assert_eq!(
        nt.raft(2).state,
        StateRole::Candidate,
        "node 2 state after the split vote"
    );
    assert_eq!(
        nt.raft(3).state,
        StateRole::Candidate,
        "node 3 state after the split vote"
    );

    // Node 2 times out first and wins term 4.
    nt.send(vec![hup(2)]);

    assert_eq!(nt.raft(2).term, 4, "node 2 term after re-election");
    assert_eq!(nt.raft(3).term, 4, "node 3 term after re-election");
    assert_eq!(
        nt.raft(2).state,
        StateRole::Leader,
        "node 2 state after re-election"
    );
    assert_eq!(
        nt.raft(3).state,
        StateRole::Follower,
        "node 3 state after re-election"
    );
}
