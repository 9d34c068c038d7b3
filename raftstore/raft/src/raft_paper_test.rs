//! TinyKV's `raft/raft_paper_test.go`: one test per group of sentences of the
//! Raft paper (https://raft.github.io/raft.pdf), each set up directly
//! through the node's fields and role changes, driven with `step` and
//! `tick`, then checked on the queued messages and the node's state.

use kvproto::eraftpb::{Entry, Message, MessageType};

use crate::test_util::{
    NONE, Network, Peer, ids_by_size, ltoa, new_entry, new_message, new_test_raft, persist_unstable,
};
use crate::{MemoryStorage, Raft, StateRole};

/// A stable order for messages queued in one step (Go sorts by their text).
fn sort_messages(msgs: &mut [Message]) {
    msgs.sort_by_key(|m| {
        (
            m.to, m.msg_type, m.from, m.term, m.index, m.log_term, m.commit,
        )
    });
}

/// A message of type `t` from `from` to `to` in `term`.
fn new_term_message(from: u64, to: u64, t: MessageType, term: u64) -> Message {
    Message {
        term,
        ..new_message(from, to, t)
    }
}

/// An entry carrying `data`.
fn data_entry(index: u64, term: u64, data: &[u8]) -> Entry {
    Entry {
        data: data.to_vec(),
        ..new_entry(index, term)
    }
}

/// A proposal of `entries` stepped into the node itself.
fn new_propose(entries: Vec<Entry>) -> Message {
    Message {
        entries,
        ..new_message(1, 1, MessageType::MsgPropose)
    }
}

/// The follower's acceptance of append `m` (TinyKV's `acceptAndReply`);
/// like a real response it carries no log term.
fn accept_and_reply(m: &Message) -> Message {
    assert_eq!(
        m.msg_type(),
        MessageType::MsgAppend,
        "only appends are accepted: {m:?}"
    );
    Message {
        index: m.index + m.entries.len() as u64,
        ..new_term_message(m.to, m.from, MessageType::MsgAppendResponse, m.term)
    }
}

/// Replicates a new leader's no-op entry to every follower, persists it and
/// marks it applied (TinyKV's `commitNoopEntry`).
fn commit_noop_entry(r: &mut Raft<MemoryStorage>, s: &MemoryStorage) {
    assert_eq!(
        r.state,
        StateRole::Leader,
        "only a leader commits its no-op"
    );
    let peers: Vec<u64> = r.prs.keys().copied().filter(|&id| id != r.id).collect();
    for id in peers {
        r.send_append(id);
    }
    for m in r.read_messages() {
        assert!(
            m.msg_type() == MessageType::MsgAppend
                && m.entries.len() == 1
                && m.entries[0].data.is_empty(),
            "not a message appending the no-op entry: {m:?}"
        );
        r.step(accept_and_reply(&m)).expect("step append response");
    }
    // Drop the appends that refresh the followers' commit index.
    r.read_messages();
    persist_unstable(r, s);
    r.raft_log.applied = r.raft_log.committed;
}

/// §5.1 for a follower; see `test_update_term_from_message`.
#[test]
fn test_follower_update_term_from_message_2aa() {
    test_update_term_from_message(StateRole::Follower);
}

/// §5.1 for a candidate; see `test_update_term_from_message`.
#[test]
fn test_candidate_update_term_from_message_2aa() {
    test_update_term_from_message(StateRole::Candidate);
}

/// §5.1 for a leader; see `test_update_term_from_message`.
#[test]
fn test_leader_update_term_from_message_2aa() {
    test_update_term_from_message(StateRole::Leader);
}

/// §5.1: a node seeing a larger term adopts it, and a candidate or leader
/// with a stale term falls back to follower.
fn test_update_term_from_message(state: StateRole) {
    let mut r = new_test_raft(1, vec![1, 2, 3], 10, 1, MemoryStorage::new());
    match state {
        StateRole::Follower => r.become_follower(1, 2),
        StateRole::Candidate => r.become_candidate(),
        StateRole::PreCandidate => r.become_pre_candidate(),
        StateRole::Leader => {
            r.become_candidate();
            r.become_leader();
        }
    }

    r.step(Message {
        term: 2,
        ..new_message(NONE, NONE, MessageType::MsgAppend)
    })
    .expect("step append");

    assert_eq!(r.term, 2, "{state:?}: term");
    assert_eq!(r.state, StateRole::Follower, "{state:?}: state");
}

/// §5.2: every node starts as a follower.
#[test]
fn test_start_as_follower_2aa() {
    let r = new_test_raft(1, vec![1, 2, 3], 10, 1, MemoryStorage::new());
    assert_eq!(r.state, StateRole::Follower);
}

/// §5.2: on its heartbeat tick a leader sends every follower an empty
/// heartbeat (no index, log term or entries).
#[test]
fn test_leader_bcast_beat_2aa() {
    // The heartbeat interval.
    let hi = 1;
    let mut r = new_test_raft(1, vec![1, 2, 3], 10, hi, MemoryStorage::new());
    r.become_candidate();
    r.become_leader();
    r.step(Message {
        entries: vec![Entry::default()],
        ..new_message(NONE, NONE, MessageType::MsgPropose)
    })
    .expect("leader accepts the proposal");
    r.read_messages();

    for _ in 0..hi {
        r.tick();
    }

    let mut msgs = r.read_messages();
    sort_messages(&mut msgs);
    let wmsgs = vec![
        new_term_message(1, 2, MessageType::MsgHeartbeat, 1),
        new_term_message(1, 3, MessageType::MsgHeartbeat, 1),
    ];
    assert_eq!(msgs, wmsgs);
}

/// §5.2 for a follower; see `test_nonleader_start_election`.
#[test]
fn test_follower_start_election_2aa() {
    test_nonleader_start_election(StateRole::Follower);
}

/// §5.2 for a candidate; see `test_nonleader_start_election`.
#[test]
fn test_candidate_start_new_election_2aa() {
    test_nonleader_start_election(StateRole::Candidate);
}

/// §5.2: a follower (or a candidate short of a majority) that hears nothing
/// for an election timeout starts an election: a new term, a vote for
/// itself, and a vote request to each other node.
fn test_nonleader_start_election(state: StateRole) {
    // The election timeout.
    let et = 10;
    let mut r = new_test_raft(1, vec![1, 2, 3], et, 1, MemoryStorage::new());
    match state {
        StateRole::Follower => r.become_follower(1, 2),
        StateRole::Candidate => r.become_candidate(),
        StateRole::PreCandidate => r.become_pre_candidate(),
        StateRole::Leader => unreachable!("only non-leaders time out"),
    }

    for _ in 1..2 * et {
        r.tick();
    }

    assert_eq!(r.term, 2, "{state:?}: term");
    assert_eq!(r.state, StateRole::Candidate, "{state:?}: state");
    assert_eq!(r.votes.get(&r.id), Some(&true), "{state:?}: vote for self");
    let mut msgs = r.read_messages();
    sort_messages(&mut msgs);
    let wmsgs = vec![
        new_term_message(1, 2, MessageType::MsgRequestVote, 2),
        new_term_message(1, 3, MessageType::MsgRequestVote, 2),
    ];
    assert_eq!(msgs, wmsgs, "{state:?}: messages");
}

/// §5.2: within one round of vote requests a candidate either wins with a
/// majority, or stays candidate when the result is lost or still open.
#[test]
fn test_leader_election_in_one_round_rpc_2aa() {
    // (cluster size, votes received, resulting state)
    let tests = vec![
        // A majority of votes wins.
        (1, vec![], StateRole::Leader),
        (3, vec![(2, true), (3, true)], StateRole::Leader),
        (3, vec![(2, true)], StateRole::Leader),
        (
            5,
            vec![(2, true), (3, true), (4, true), (5, true)],
            StateRole::Leader,
        ),
        (5, vec![(2, true), (3, true), (4, true)], StateRole::Leader),
        (5, vec![(2, true), (3, true)], StateRole::Leader),
        // Without a majority the node stays candidate.
        (3, vec![], StateRole::Candidate),
        (5, vec![(2, true)], StateRole::Candidate),
        (5, vec![(2, false), (3, false)], StateRole::Candidate),
        (5, vec![], StateRole::Candidate),
    ];
    for (i, (size, votes, wstate)) in tests.into_iter().enumerate() {
        let mut r = new_test_raft(1, ids_by_size(size), 10, 1, MemoryStorage::new());

        r.step(new_message(1, 1, MessageType::MsgHup))
            .expect("step hup");
        for (id, vote) in votes {
            let term = r.term;
            r.step(Message {
                reject: !vote,
                ..new_term_message(id, 1, MessageType::MsgRequestVoteResponse, term)
            })
            .expect("step vote response");
        }

        assert_eq!(r.state, wstate, "#{i}: state");
        assert_eq!(r.term, 1, "#{i}: term");
    }
}

/// §5.2: a follower votes for at most one candidate per term, first come
/// first served.
#[test]
fn test_follower_vote_2aa() {
    let tests = [
        (NONE, 1, false),
        (NONE, 2, false),
        (1, 1, false),
        (2, 2, false),
        (1, 2, true),
        (2, 1, true),
    ];
    for (i, &(vote, nvote, wreject)) in tests.iter().enumerate() {
        let mut r = new_test_raft(1, vec![1, 2, 3], 10, 1, MemoryStorage::new());
        r.term = 1;
        r.vote = vote;

        r.step(new_term_message(nvote, 1, MessageType::MsgRequestVote, 1))
            .expect("step vote request");

        let msgs = r.read_messages();
        let wmsgs = vec![Message {
            reject: wreject,
            ..new_term_message(1, nvote, MessageType::MsgRequestVoteResponse, 1)
        }];
        assert_eq!(msgs, wmsgs, "#{i}: messages");
    }
}

/// §5.2: a candidate receiving an append from a leader of at least its own
/// term accepts that leader and returns to follower.
#[test]
fn test_candidate_fallback_2aa() {
    let tests = [
        new_term_message(2, 1, MessageType::MsgAppend, 1),
        new_term_message(2, 1, MessageType::MsgAppend, 2),
    ];
    for (i, tt) in tests.into_iter().enumerate() {
        let mut r = new_test_raft(1, vec![1, 2, 3], 10, 1, MemoryStorage::new());
        r.step(new_message(1, 1, MessageType::MsgHup))
            .expect("step hup");
        assert_eq!(r.state, StateRole::Candidate, "#{i}: state after hup");

        let term = tt.term;
        r.step(tt).expect("step append");

        assert_eq!(r.state, StateRole::Follower, "#{i}: state");
        assert_eq!(r.term, term, "#{i}: term");
    }
}

/// §5.2 for a follower; see `test_nonleader_election_timeout_randomized`.
#[test]
fn test_follower_election_timeout_randomized_2aa() {
    test_nonleader_election_timeout_randomized(StateRole::Follower);
}

/// §5.2 for a candidate; see `test_nonleader_election_timeout_randomized`.
#[test]
fn test_candidate_election_timeout_randomized_2aa() {
    test_nonleader_election_timeout_randomized(StateRole::Candidate);
}

/// §5.2: followers and candidates draw their election timeout at random.
fn test_nonleader_election_timeout_randomized(state: StateRole) {
    let et = 10;
    let mut r = new_test_raft(1, vec![1, 2, 3], et, 1, MemoryStorage::new());
    let mut timeouts = std::collections::BTreeSet::new();
    for _ in 0..50 * et {
        match state {
            StateRole::Follower => {
                let term = r.term + 1;
                r.become_follower(term, 2);
            }
            StateRole::Candidate => r.become_candidate(),
            StateRole::PreCandidate => r.become_pre_candidate(),
            StateRole::Leader => unreachable!("only non-leaders time out"),
        }

        let mut ticks = 0;
        while r.read_messages().is_empty() {
            r.tick();
            ticks += 1;
        }
        timeouts.insert(ticks);
    }

    for d in et + 1..2 * et {
        assert!(
            timeouts.contains(&d),
            "{state:?}: a timeout of {d} ticks never happened; seen {timeouts:?}"
        );
    }
}

/// §5.2 for followers; see `test_nonleaders_election_timeout_nonconflict`.
#[test]
fn test_followers_election_timeout_nonconflict_2aa() {
    test_nonleaders_election_timeout_nonconflict(StateRole::Follower);
}

/// §5.2 for candidates; see `test_nonleaders_election_timeout_nonconflict`.
#[test]
fn test_candidates_election_timeout_nonconflict_2aa() {
    test_nonleaders_election_timeout_nonconflict(StateRole::Candidate);
}

/// §5.2: randomized timeouts make it likely that only one node times out
/// at a time, which keeps split votes rare.
fn test_nonleaders_election_timeout_nonconflict(state: StateRole) {
    let et = 10;
    let size = 5;
    let ids = ids_by_size(size);
    let mut rs: Vec<Raft<MemoryStorage>> = ids
        .iter()
        .map(|&id| new_test_raft(id, ids.clone(), et, 1, MemoryStorage::new()))
        .collect();
    let mut conflicts = 0;
    for _ in 0..1000 {
        for r in rs.iter_mut() {
            match state {
                StateRole::Follower => {
                    let term = r.term + 1;
                    r.become_follower(term, NONE);
                }
                StateRole::Candidate => r.become_candidate(),
                StateRole::PreCandidate => r.become_pre_candidate(),
                StateRole::Leader => unreachable!("only non-leaders time out"),
            }
        }

        let mut timeout_num = 0;
        while timeout_num == 0 {
            for r in rs.iter_mut() {
                r.tick();
                if !r.read_messages().is_empty() {
                    timeout_num += 1;
                }
            }
        }
        // Several nodes timed out on the same tick.
        if timeout_num > 1 {
            conflicts += 1;
        }
    }

    let g = conflicts as f64 / 1000.0;
    assert!(
        g <= 0.3,
        "{state:?}: probability of conflicts = {g}, want <= 0.3"
    );
}

/// §5.3: a leader appends a proposal to its log, then sends it to every
/// follower with the index and term of the entry before it; the new entry
/// is unstable until the host persists it.
#[test]
fn test_leader_start_replication_2ab() {
    let s = MemoryStorage::new();
    let mut r = new_test_raft(1, vec![1, 2, 3], 10, 1, s.clone());
    r.become_candidate();
    r.become_leader();
    commit_noop_entry(&mut r, &s);
    let li = r.raft_log.last_index();

    r.step(new_propose(vec![data_entry(0, 0, b"some data")]))
        .expect("leader accepts the proposal");

    assert_eq!(r.raft_log.last_index(), li + 1, "last index");
    assert_eq!(r.raft_log.committed, li, "committed");
    let mut msgs = r.read_messages();
    sort_messages(&mut msgs);
    let ent = data_entry(li + 1, 1, b"some data");
    let wmsgs: Vec<Message> = [2, 3]
        .into_iter()
        .map(|to| Message {
            index: li,
            log_term: 1,
            entries: vec![ent.clone()],
            commit: li,
            ..new_term_message(1, to, MessageType::MsgAppend, 1)
        })
        .collect();
    assert_eq!(msgs, wmsgs, "messages");
    assert_eq!(r.raft_log.unstable_entries(), &[ent], "unstable entries");
}

/// §5.3: once an entry is replicated safely the leader hands it out to be
/// applied, and tells the followers the new commit index in its next appends.
#[test]
fn test_leader_commit_entry_2ab() {
    let s = MemoryStorage::new();
    let mut r = new_test_raft(1, vec![1, 2, 3], 10, 1, s.clone());
    r.become_candidate();
    r.become_leader();
    commit_noop_entry(&mut r, &s);
    let li = r.raft_log.last_index();
    r.step(new_propose(vec![data_entry(0, 0, b"some data")]))
        .expect("leader accepts the proposal");

    for m in r.read_messages() {
        r.step(accept_and_reply(&m)).expect("step append response");
    }

    assert_eq!(r.raft_log.committed, li + 1, "committed");
    let wents = vec![data_entry(li + 1, 1, b"some data")];
    assert_eq!(r.raft_log.next_entries(), wents, "next entries");
    let mut msgs = r.read_messages();
    sort_messages(&mut msgs);
    for (i, m) in msgs.iter().enumerate() {
        assert_eq!(m.to, i as u64 + 2, "#{i}: to");
        assert_eq!(m.msg_type(), MessageType::MsgAppend, "#{i}: type");
        assert_eq!(m.commit, li + 1, "#{i}: commit");
    }
}

/// §5.3: an entry is committed once its leader has it replicated on a
/// majority of the nodes.
#[test]
fn test_leader_acknowledge_commit_2ab() {
    let tests: Vec<(usize, Vec<u64>, bool)> = vec![
        (1, vec![], true),
        (3, vec![], false),
        (3, vec![2], true),
        (3, vec![2, 3], true),
        (5, vec![], false),
        (5, vec![2], false),
        (5, vec![2, 3], true),
        (5, vec![2, 3, 4], true),
        (5, vec![2, 3, 4, 5], true),
    ];
    for (i, (size, acceptors, wack)) in tests.into_iter().enumerate() {
        let s = MemoryStorage::new();
        let mut r = new_test_raft(1, ids_by_size(size), 10, 1, s.clone());
        r.become_candidate();
        r.become_leader();
        commit_noop_entry(&mut r, &s);
        let li = r.raft_log.last_index();
        r.step(new_propose(vec![data_entry(0, 0, b"some data")]))
            .expect("leader accepts the proposal");

        for m in r.read_messages() {
            if acceptors.contains(&m.to) {
                r.step(accept_and_reply(&m)).expect("step append response");
            }
        }

        assert_eq!(r.raft_log.committed > li, wack, "#{i}: ack commit");
    }
}

/// §5.3: committing an entry commits every entry before it, those of earlier
/// leaders included, and they are applied in log order.
#[test]
fn test_leader_commit_preceding_entries_2ab() {
    let tests: Vec<Vec<Entry>> = vec![
        vec![],
        vec![new_entry(1, 2)],
        vec![new_entry(1, 1), new_entry(2, 2)],
        vec![new_entry(1, 1)],
    ];
    for (i, tt) in tests.into_iter().enumerate() {
        let storage = MemoryStorage::new();
        storage.append(&tt).expect("append to memory storage");
        let mut r = new_test_raft(1, vec![1, 2, 3], 10, 1, storage);
        r.term = 2;
        r.become_candidate();
        r.become_leader();
        r.step(new_propose(vec![data_entry(0, 0, b"some data")]))
            .expect("leader accepts the proposal");

        for m in r.read_messages() {
            r.step(accept_and_reply(&m)).expect("step append response");
        }

        let li = tt.len() as u64;
        let mut wents = tt;
        wents.push(new_entry(li + 1, 3));
        wents.push(data_entry(li + 2, 3, b"some data"));
        assert_eq!(r.raft_log.next_entries(), wents, "#{i}: entries");
    }
}

/// §5.3: a follower that learns an entry is committed applies it, in log order.
#[test]
fn test_follower_commit_entry_2ab() {
    let tests: Vec<(Vec<Entry>, u64)> = vec![
        (vec![data_entry(1, 1, b"some data")], 1),
        (
            vec![
                data_entry(1, 1, b"some data"),
                data_entry(2, 1, b"some data2"),
            ],
            2,
        ),
        (
            vec![
                data_entry(1, 1, b"some data2"),
                data_entry(2, 1, b"some data"),
            ],
            2,
        ),
        (
            vec![
                data_entry(1, 1, b"some data"),
                data_entry(2, 1, b"some data2"),
            ],
            1,
        ),
    ];
    for (i, (ents, commit)) in tests.into_iter().enumerate() {
        let mut r = new_test_raft(1, vec![1, 2, 3], 10, 1, MemoryStorage::new());
        r.become_follower(1, 2);

        r.step(Message {
            entries: ents.clone(),
            commit,
            ..new_term_message(2, 1, MessageType::MsgAppend, 1)
        })
        .expect("step append");

        assert_eq!(r.raft_log.committed, commit, "#{i}: committed");
        let wents = ents[..commit as usize].to_vec();
        assert_eq!(r.raft_log.next_entries(), wents, "#{i}: next entries");
    }
}

/// §5.3: a follower refuses an append unless its log has an entry with the
/// index and term the leader says precede the new entries.
#[test]
fn test_follower_check_message_type_msg_append_2ab() {
    let ents = [new_entry(1, 1), new_entry(2, 2)];
    // (log term, index, reject)
    let tests = [
        // Matches a committed entry.
        (0, 0, false),
        (ents[0].term, ents[0].index, false),
        // Matches an uncommitted entry.
        (ents[1].term, ents[1].index, false),
        // Differs from the entry at that index.
        (ents[0].term, ents[1].index, true),
        // No entry at that index.
        (ents[1].term + 1, ents[1].index + 1, true),
    ];
    for (i, &(term, index, wreject)) in tests.iter().enumerate() {
        let storage = MemoryStorage::new();
        storage.append(&ents).expect("append to memory storage");
        let mut r = new_test_raft(1, vec![1, 2, 3], 10, 1, storage);
        r.raft_log.committed = 1;
        r.become_follower(2, 2);
        r.read_messages();

        r.step(Message {
            log_term: term,
            index,
            ..new_term_message(2, 1, MessageType::MsgAppend, 2)
        })
        .expect("step append");

        let msgs = r.read_messages();
        assert_eq!(msgs.len(), 1, "#{i}: message count: {msgs:?}");
        assert_eq!(msgs[0].term, 2, "#{i}: term");
        assert_eq!(msgs[0].reject, wreject, "#{i}: reject");
    }
}

/// §5.3: a valid append deletes the first conflicting entry and everything
/// after it, then adds the entries the log lacks, which stay unstable until
/// persisted.
#[test]
fn test_follower_append_entries_2ab() {
    struct Case {
        /// The index and term of the entry before `ents`.
        index: u64,
        term: u64,
        /// The leader's term.
        lterm: u64,
        ents: Vec<Entry>,
        /// The whole log afterwards.
        wents: Vec<Entry>,
        /// The unstable entries afterwards.
        wunstable: Vec<Entry>,
    }
    let tests = vec![
        Case {
            index: 2,
            term: 2,
            lterm: 3,
            ents: vec![new_entry(3, 3)],
            wents: vec![new_entry(1, 1), new_entry(2, 2), new_entry(3, 3)],
            wunstable: vec![new_entry(3, 3)],
        },
        Case {
            index: 1,
            term: 1,
            lterm: 4,
            ents: vec![new_entry(2, 3), new_entry(3, 4)],
            wents: vec![new_entry(1, 1), new_entry(2, 3), new_entry(3, 4)],
            wunstable: vec![new_entry(2, 3), new_entry(3, 4)],
        },
        Case {
            index: 0,
            term: 0,
            lterm: 2,
            ents: vec![new_entry(1, 1)],
            wents: vec![new_entry(1, 1), new_entry(2, 2)],
            wunstable: vec![],
        },
        Case {
            index: 0,
            term: 0,
            lterm: 3,
            ents: vec![new_entry(1, 3)],
            wents: vec![new_entry(1, 3)],
            wunstable: vec![new_entry(1, 3)],
        },
    ];
    for (i, tt) in tests.into_iter().enumerate() {
        let Case {
            index,
            term,
            lterm,
            ents,
            wents,
            wunstable,
        } = tt;
        let storage = MemoryStorage::new();
        storage
            .append(&[new_entry(1, 1), new_entry(2, 2)])
            .expect("append to memory storage");
        let mut r = new_test_raft(1, vec![1, 2, 3], 10, 1, storage);
        r.become_follower(2, 2);

        r.step(Message {
            log_term: term,
            index,
            entries: ents,
            ..new_term_message(2, 1, MessageType::MsgAppend, lterm)
        })
        .expect("step append");

        assert_eq!(r.raft_log.all_entries(), wents, "#{i}: entries");
        assert_eq!(
            r.raft_log.unstable_entries(),
            wunstable.as_slice(),
            "#{i}: unstable entries"
        );
    }
}

/// §5.3 and figure 7: a new leader brings each follower's log, however it
/// diverges, into line with its own.
#[test]
fn test_leader_sync_follower_log_2ab() {
    let ents = vec![
        Entry::default(),
        new_entry(1, 1),
        new_entry(2, 1),
        new_entry(3, 1),
        new_entry(4, 4),
        new_entry(5, 4),
        new_entry(6, 5),
        new_entry(7, 5),
        new_entry(8, 6),
        new_entry(9, 6),
        new_entry(10, 6),
    ];
    let term = 8;
    // Follower logs (a)-(f) of figure 7, each as (index, term) pairs after
    // the dummy entry.
    let logs: Vec<Vec<(u64, u64)>> = vec![
        vec![
            (1, 1),
            (2, 1),
            (3, 1),
            (4, 4),
            (5, 4),
            (6, 5),
            (7, 5),
            (8, 6),
            (9, 6),
        ],
        vec![(1, 1), (2, 1), (3, 1), (4, 4)],
        vec![
            (1, 1),
            (2, 1),
            (3, 1),
            (4, 4),
            (5, 4),
            (6, 5),
            (7, 5),
            (8, 6),
            (9, 6),
            (10, 6),
            (11, 6),
        ],
        vec![
            (1, 1),
            (2, 1),
            (3, 1),
            (4, 4),
            (5, 4),
            (6, 5),
            (7, 5),
            (8, 6),
            (9, 6),
            (10, 6),
            (11, 7),
            (12, 7),
        ],
        vec![(1, 1), (2, 1), (3, 1), (4, 4), (5, 4), (6, 4), (7, 4)],
        vec![
            (1, 1),
            (2, 1),
            (3, 1),
            (4, 2),
            (5, 2),
            (6, 2),
            (7, 3),
            (8, 3),
            (9, 3),
            (10, 3),
            (11, 3),
        ],
    ];
    for (i, log) in logs.into_iter().enumerate() {
        let mut tt = vec![Entry::default()];
        tt.extend(log.into_iter().map(|(index, term)| new_entry(index, term)));

        let lead_storage = MemoryStorage::new();
        lead_storage
            .append(&ents)
            .expect("append to memory storage");
        let mut lead = new_test_raft(1, vec![1, 2, 3], 10, 1, lead_storage);
        lead.term = term;
        lead.raft_log.committed = lead.raft_log.last_index();
        let follower_storage = MemoryStorage::new();
        follower_storage
            .append(&tt)
            .expect("append to memory storage");
        let mut follower = new_test_raft(2, vec![1, 2, 3], 10, 1, follower_storage);
        follower.term = term - 1;
        // Three nodes are needed: the follower's log may be more up to date
        // than the leader's, so the leader needs the third node's vote.
        let mut n = Network::new(vec![
            Some(Peer::from(lead)),
            Some(Peer::from(follower)),
            Some(Peer::BlackHole),
        ]);
        n.send(vec![new_message(1, 1, MessageType::MsgHup)]);
        // The election runs in the term after the one the leader was loaded with.
        n.send(vec![new_term_message(
            3,
            1,
            MessageType::MsgRequestVoteResponse,
            term + 1,
        )]);

        n.send(vec![new_propose(vec![Entry::default()])]);

        let (lead_log, follower_log) = (ltoa(&n.raft(1).raft_log), ltoa(&n.raft(2).raft_log));
        assert_eq!(
            lead_log, follower_log,
            "#{i}: leader log (left) and follower log (right) differ"
        );
    }
}

/// §5.4.1: a vote request carries the index and term of the candidate's
/// last entry, and goes to every other node.
#[test]
fn test_vote_request_2ab() {
    let tests: Vec<(Vec<Entry>, u64)> = vec![
        (vec![new_entry(1, 1)], 2),
        (vec![new_entry(1, 1), new_entry(2, 2)], 3),
    ];
    for (j, (ents, wterm)) in tests.into_iter().enumerate() {
        let mut r = new_test_raft(1, vec![1, 2, 3], 10, 1, MemoryStorage::new());
        r.step(Message {
            log_term: 0,
            index: 0,
            entries: ents.clone(),
            ..new_term_message(2, 1, MessageType::MsgAppend, wterm - 1)
        })
        .expect("step append");
        r.read_messages();

        while r.state != StateRole::Candidate {
            r.tick();
        }

        let mut msgs = r.read_messages();
        sort_messages(&mut msgs);
        assert_eq!(msgs.len(), 2, "#{j}: message count: {msgs:?}");
        let last = ents.last().expect("cases have entries");
        for (i, m) in msgs.iter().enumerate() {
            assert_eq!(m.msg_type(), MessageType::MsgRequestVote, "#{j}.{i}: type");
            assert_eq!(m.to, i as u64 + 2, "#{j}.{i}: to");
            assert_eq!(m.term, wterm, "#{j}.{i}: term");
            assert_eq!(m.index, last.index, "#{j}.{i}: index");
            assert_eq!(m.log_term, last.term, "#{j}.{i}: log term");
        }
    }
}

/// §5.4.1: a voter refuses its vote to a candidate whose log is less up to
/// date than its own.
#[test]
fn test_voter_2ab() {
    // (voter's log, candidate's last log term, candidate's last index, reject)
    let tests: Vec<(Vec<Entry>, u64, u64, bool)> = vec![
        // Same last term.
        (vec![new_entry(1, 1)], 1, 1, false),
        (vec![new_entry(1, 1)], 1, 2, false),
        (vec![new_entry(1, 1), new_entry(2, 1)], 1, 1, true),
        // The candidate's last term is higher.
        (vec![new_entry(1, 1)], 2, 1, false),
        (vec![new_entry(1, 1)], 2, 2, false),
        (vec![new_entry(1, 1), new_entry(2, 1)], 2, 1, false),
        // The voter's last term is higher.
        (vec![new_entry(1, 2)], 1, 1, true),
        (vec![new_entry(1, 2)], 1, 2, true),
        (vec![new_entry(1, 2), new_entry(2, 1)], 1, 1, true),
    ];
    for (i, (ents, logterm, index, wreject)) in tests.into_iter().enumerate() {
        let storage = MemoryStorage::new();
        storage.append(&ents).expect("append to memory storage");
        let mut r = new_test_raft(1, vec![1, 2], 10, 1, storage);

        r.step(Message {
            log_term: logterm,
            index,
            ..new_term_message(2, 1, MessageType::MsgRequestVote, 3)
        })
        .expect("step vote request");

        let msgs = r.read_messages();
        assert_eq!(msgs.len(), 1, "#{i}: message count: {msgs:?}");
        let m = &msgs[0];
        assert_eq!(
            m.msg_type(),
            MessageType::MsgRequestVoteResponse,
            "#{i}: type"
        );
        assert_eq!(m.reject, wreject, "#{i}: reject");
    }
}

/// §5.4.2: a leader commits by counting replicas only entries of its own
/// term.
#[test]
fn test_leader_only_commits_log_from_current_term_2ab() {
    let ents = [new_entry(1, 1), new_entry(2, 2)];
    // (index acknowledged by the follower, commit)
    let tests = [
        // Entries of earlier terms are not committed by counting.
        (1, 0),
        (2, 0),
        // An entry of the current term is.
        (3, 3),
    ];
    for (i, &(index, wcommit)) in tests.iter().enumerate() {
        let storage = MemoryStorage::new();
        storage.append(&ents).expect("append to memory storage");
        let mut r = new_test_raft(1, vec![1, 2], 10, 1, storage);
        r.term = 2;
        // Leader of term 3.
        r.become_candidate();
        r.become_leader();
        r.read_messages();
        // An entry of the current term.
        r.step(new_propose(vec![Entry::default()]))
            .expect("leader accepts the proposal");

        let term = r.term;
        r.step(Message {
            index,
            ..new_term_message(2, 1, MessageType::MsgAppendResponse, term)
        })
        .expect("step append response");
        assert_eq!(r.raft_log.committed, wcommit, "#{i}: commit");
    }
}
