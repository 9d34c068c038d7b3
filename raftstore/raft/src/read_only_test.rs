//! ReadIndex (Raft thesis §6.4): etcd raft's read-only tests
//! (`raft_test.go`, `node_test.go`, `rawnode_test.go`) ported, plus our own
//! for the host interface and for reads sharing a heartbeat round.
//!
//! Go passes the request id as `Entries[0].Data` of `MsgReadIndex`; here it
//! travels in `Message::context`. Learner cases are left out: the core has
//! no learners. `docs/PORTED_TESTS.md` maps every Go test to its port.

use std::cell::RefCell;
use std::rc::Rc;

use kvproto::eraftpb::{Entry, HardState, Message, MessageType};

use crate::test_util::{
    Network, new_message, new_test_config, new_test_raft, new_test_raft_with_config, test_logger,
};
use crate::{Config, MemoryStorage, Raft, RawNode, ReadOnlyOption, ReadState, Ready, StateRole};

fn hup(id: u64) -> Message {
    new_message(id, id, MessageType::MsgHup)
}

/// An empty proposal delivered to `to`.
fn propose(to: u64) -> Message {
    let mut m = new_message(to, to, MessageType::MsgPropose);
    m.entries = vec![Entry::default()];
    m
}

/// A read request with id `ctx`, stepped on `to` as if `from` asked.
fn read_index(from: u64, to: u64, ctx: &[u8]) -> Message {
    let mut m = new_message(from, to, MessageType::MsgReadIndex);
    m.context = ctx.to_vec();
    m
}

fn set_randomized_election_timeout(r: &mut Raft<MemoryStorage>, v: usize) {
    r.randomized_election_timeout = v;
}

/// Three nodes with `config` applied, node 1 elected (node 2's election
/// clock is run out first, as the Go tests do, so it votes with a lease on).
fn new_cluster_with_leader_1(config: &dyn Fn(&mut Config)) -> Network {
    let mut nt = Network::new_with_config(Some(config), vec![None, None, None]);
    let et = nt.raft(2).election_timeout;
    set_randomized_election_timeout(nt.raft_mut(2), et + 1);
    for _ in 0..et {
        nt.raft_mut(2).tick();
    }
    nt.send(vec![hup(1)]);
    assert_eq!(nt.raft(1).state, StateRole::Leader);
    nt
}

/// Go's `TestReadOnlyOptionSafe` / `TestReadOnlyOptionLease` body: reads on
/// the leader and on followers, each after ten more proposals, are answered
/// at the commit index of the moment.
fn check_read_only_option(nt: &mut Network) {
    // (node asked, proposals before, read index, ctx)
    let tests: [(u64, usize, u64, &[u8]); 6] = [
        (1, 10, 11, b"ctx1"),
        (2, 10, 21, b"ctx2"),
        (3, 10, 31, b"ctx3"),
        (1, 10, 41, b"ctx4"),
        (2, 10, 51, b"ctx5"),
        (3, 10, 61, b"ctx6"),
    ];
    for (i, &(id, proposals, wri, wctx)) in tests.iter().enumerate() {
        for _ in 0..proposals {
            nt.send(vec![propose(1)]);
        }
        nt.send(vec![read_index(id, id, wctx)]);
        let r = nt.raft_mut(id);
        assert_eq!(
            r.read_states,
            vec![ReadState {
                index: wri,
                request_ctx: wctx.to_vec()
            }],
            "#{i}: read states of node {id}"
        );
        r.read_states.clear();
    }
}

/// etcd `TestReadOnlyOptionSafe`.
#[test]
fn test_read_only_option_safe() {
    let mut nt = new_cluster_with_leader_1(&|_| {});
    check_read_only_option(&mut nt);
}

/// One heartbeat round from node 1, answered: a `LeaseBased` leader's lease
/// starts there, not at its election (see `read_only`).
fn renew_lease(nt: &mut Network) {
    nt.send(vec![new_message(1, 1, MessageType::MsgBeat)]);
    assert!(nt.raft(1).lease_valid(), "a quorum answered the heartbeat");
}

/// etcd `TestReadOnlyOptionLease`, after one heartbeat round.
#[test]
fn test_read_only_option_lease() {
    let mut nt = new_cluster_with_leader_1(&|c| {
        c.read_only_option = ReadOnlyOption::LeaseBased;
        c.check_quorum = true;
    });
    renew_lease(&mut nt);
    check_read_only_option(&mut nt);
}

/// A lease-based read is answered without a heartbeat round while the
/// lease holds; a safe one waits for one.
#[test]
fn test_lease_read_needs_no_round_trip() {
    for (option, wait) in [
        (ReadOnlyOption::Safe, true),
        (ReadOnlyOption::LeaseBased, false),
    ] {
        let mut nt = new_cluster_with_leader_1(&|c| {
            c.read_only_option = option;
            c.check_quorum = true;
        });
        nt.send(vec![new_message(1, 1, MessageType::MsgBeat)]);
        let leader = nt.raft_mut(1);
        leader.step(read_index(1, 1, b"r")).expect("read steps");
        let heartbeats = leader
            .read_messages()
            .iter()
            .filter(|m| m.msg_type() == MessageType::MsgHeartbeat)
            .count();
        assert_eq!(leader.read_states.is_empty(), wait, "{option:?}");
        assert_eq!(heartbeats, if wait { 2 } else { 0 }, "{option:?}");
    }
}

/// etcd `TestReadOnlyForNewLeader`: a leader that has not committed an
/// entry of its term holds reads back, and answers them once it does.
#[test]
fn test_read_only_for_new_leader() {
    // (id, committed, applied, compact_index)
    let node_configs = [(1, 1, 1, 0), (2, 2, 2, 2), (3, 2, 2, 2)];
    let peers = node_configs
        .iter()
        .map(|&(id, committed, applied, compact_index)| {
            let storage = MemoryStorage::new_with_conf_state(vec![1, 2, 3]);
            storage
                .append(&[entry(1, 1), entry(2, 1)])
                .expect("append to memory storage");
            storage.set_hard_state(HardState {
                term: 1,
                vote: 0,
                commit: committed,
            });
            if compact_index != 0 {
                storage.compact(compact_index).expect("compact");
            }
            let mut cfg = new_test_config(id, vec![1, 2, 3], 10, 1);
            cfg.applied = applied;
            Some(new_test_raft_with_config(&cfg, storage).into())
        })
        .collect();
    let mut nt = Network::new(peers);

    // No append gets through: node 1 cannot commit an entry of its term.
    nt.ignore(MessageType::MsgAppend);
    nt.send(vec![hup(1)]);
    assert_eq!(nt.raft(1).state, StateRole::Leader);
    assert!(!nt.raft(1).has_committed_in_term());

    let windex = 4;
    let wctx = b"ctx";
    nt.send(vec![read_index(1, 1, wctx)]);
    assert!(nt.raft(1).read_states.is_empty(), "read held back");
    assert_eq!(nt.raft(1).pending_read_index.len(), 1);

    nt.recover();
    // Heartbeats bring the followers' answers; the next proposal commits.
    for _ in 0..nt.raft(1).heartbeat_timeout {
        nt.raft_mut(1).tick();
    }
    nt.send(vec![propose(1)]);
    let sm = nt.raft(1);
    assert_eq!(sm.raft_log.committed, 4);
    assert_eq!(sm.raft_log.term(4), Ok(sm.term));
    assert!(sm.has_committed_in_term());

    // The held-back read was answered at the commit index of its release.
    let want = ReadState {
        index: windex,
        request_ctx: wctx.to_vec(),
    };
    assert_eq!(sm.read_states, vec![want.clone()]);

    // Now reads are taken at once.
    nt.send(vec![read_index(1, 1, wctx)]);
    assert_eq!(nt.raft(1).read_states, vec![want.clone(), want]);
}

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        ..Default::default()
    }
}

/// etcd `TestRaftFreesReadOnlyMem`: a confirmed read leaves nothing behind.
#[test]
fn test_raft_frees_read_only_mem() {
    let mut sm = new_test_raft(1, vec![1, 2], 5, 1, MemoryStorage::new());
    sm.become_candidate();
    sm.become_leader();
    let last = sm.raft_log.last_index();
    sm.raft_log.commit_to(last);

    // The leader starts a read (thesis §6.4 step 2).
    sm.step(read_index(2, 1, b"ctx")).expect("read steps");
    let msgs = sm.read_messages();
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert_eq!(msgs[0].msg_type(), MessageType::MsgHeartbeat);
    assert_eq!(sm.read_only.unconfirmed.len(), 1);

    // A quorum's answers confirm the leadership (step 3).
    let mut resp = new_message(2, 1, MessageType::MsgHeartbeatResponse);
    resp.term = sm.term;
    resp.context = msgs[0].context.clone();
    sm.step(resp).expect("heartbeat response steps");
    assert!(sm.read_only.unconfirmed.is_empty());
    let answer = sm.read_messages();
    assert!(
        answer
            .iter()
            .any(|m| m.msg_type() == MessageType::MsgReadIndexResponse
                && m.to == 2
                && m.index == last
                && m.context == b"ctx"),
        "the follower gets its answer: {answer:?}"
    );
}

/// etcd `TestReadOnlyDuplicateRequest`: a retried request id, answered late
/// heartbeats and a deposed leader never yield a read index lower than the
/// commit index when the read was asked.
#[test]
fn test_read_only_duplicate_request() {
    let mut net = Network::new(vec![None, None, None]);
    // Heartbeat responses held back until the end.
    let delayed: Rc<RefCell<Vec<Message>>> = Rc::default();

    net.send(vec![hup(1)]);

    let read_a = read_index(2, 1, b"A");
    let min_a = net.raft(1).raft_log.committed;
    // A duplicate of A for later, as a network or a retrying client makes.
    delayed.borrow_mut().push(read_a.clone());

    let sink = Rc::clone(&delayed);
    net.msg_hook = Some(Box::new(move |m: &Message| {
        if m.msg_type() == MessageType::MsgHeartbeatResponse {
            sink.borrow_mut().push(m.clone());
            return false;
        }
        true
    }));
    net.send(vec![read_a]);
    net.msg_hook = None;

    // The next heartbeat round confirms A.
    net.raft_mut(1).tick();
    let msgs = net.raft_mut(1).read_messages();
    net.send(msgs);

    net.isolate(1);
    // Node 2 is elected and commits a new entry.
    net.send(vec![hup(2)]);
    net.send(vec![propose(2)]);

    // A read on the isolated, stale leader 1.
    let min_b = net.raft(2).raft_log.committed;
    net.send(vec![read_index(1, 1, b"B")]);
    net.recover();
    // The duplicate A, then the delayed heartbeat responses: B must not be
    // confirmed by them.
    let late = delayed.borrow_mut().drain(..).collect();
    net.send(late);

    let mut seen_a = false;
    for id in 1..=3 {
        for rs in &net.raft(id).read_states {
            match rs.request_ctx.as_slice() {
                b"A" => {
                    seen_a = true;
                    assert!(rs.index >= min_a, "A read at {} < {min_a}", rs.index);
                }
                b"B" => assert!(rs.index >= min_b, "B read at {} < {min_b}", rs.index),
                other => panic!("unexpected read {other:?}"),
            }
        }
    }
    assert!(seen_a, "A was confirmed by the second round");
}

/// etcd `TestNodeReadIndexToOldLeader`: followers forward reads to the
/// leader without a term; a deposed leader passes them on to the new one
/// keeping the node that asked as the sender.
#[test]
fn test_node_read_index_to_old_leader() {
    let mut nt = Network::new(vec![None, None, None]);
    nt.send(vec![hup(1)]);

    let forwarded = |from: u64, to: u64| Message {
        msg_type: MessageType::MsgReadIndex as i32,
        from,
        to,
        term: 0,
        context: b"testdata".to_vec(),
        ..Default::default()
    };

    // Node 2, a follower, forwards its read to node 1 with no term.
    nt.raft_mut(2)
        .step(read_index(2, 2, b"testdata"))
        .expect("read steps");
    assert_eq!(nt.raft_mut(2).read_messages(), vec![forwarded(2, 1)]);
    nt.raft_mut(3)
        .step(read_index(3, 3, b"testdata"))
        .expect("read steps");
    assert_eq!(nt.raft_mut(3).read_messages(), vec![forwarded(3, 1)]);

    // Node 3 becomes the leader; the two reads reach node 1 late.
    nt.send(vec![hup(3)]);
    let r1 = nt.raft_mut(1);
    r1.step(forwarded(2, 1)).expect("read steps");
    r1.step(forwarded(3, 1)).expect("read steps");
    assert_eq!(
        r1.read_messages(),
        vec![forwarded(2, 3), forwarded(3, 3)],
        "passed on to the new leader, for the nodes that asked"
    );
}

/// Not a port; the follower side of etcd's `stepFollower`: a follower turns
/// its leader's answer into a `ReadState`, and drops reads while it knows
/// no leader; a candidate drops them too (etcd `stepCandidate`).
#[test]
fn test_read_index_on_followers_and_candidates() {
    let mut follower = new_test_raft(2, vec![1, 2, 3], 10, 1, MemoryStorage::new());
    follower.become_follower(1, 1);
    let mut resp = new_message(1, 2, MessageType::MsgReadIndexResponse);
    resp.term = 1;
    resp.index = 7;
    resp.context = b"r".to_vec();
    follower.step(resp).expect("answer steps");
    assert_eq!(
        follower.read_states,
        vec![ReadState {
            index: 7,
            request_ctx: b"r".to_vec()
        }]
    );

    let mut lost = new_test_raft(2, vec![1, 2, 3], 10, 1, MemoryStorage::new());
    lost.become_follower(1, crate::INVALID_ID);
    lost.step(read_index(2, 2, b"r")).expect("read steps");
    assert!(lost.read_messages().is_empty(), "no leader: dropped");

    let mut candidate = new_test_raft(2, vec![1, 2, 3], 10, 1, MemoryStorage::new());
    candidate.become_candidate();
    candidate.read_messages();
    candidate.step(read_index(2, 2, b"r")).expect("read steps");
    assert!(candidate.read_messages().is_empty(), "candidate: dropped");
    assert!(candidate.read_states.is_empty());
}

/// A leader that steps down drops its unconfirmed reads: late answers to
/// its heartbeat round confirm nothing.
#[test]
fn test_reads_are_dropped_when_the_leader_steps_down() {
    let mut sm = new_test_raft(1, vec![1, 2, 3], 10, 1, MemoryStorage::new());
    sm.become_candidate();
    sm.become_leader();
    let last = sm.raft_log.last_index();
    sm.raft_log.commit_to(last);
    sm.step(read_index(1, 1, b"r")).expect("read steps");
    let round = sm.read_messages()[0].context.clone();

    let mut append = new_message(2, 1, MessageType::MsgAppend);
    append.term = sm.term + 1;
    sm.step(append).expect("append steps");
    assert_eq!(sm.state, StateRole::Follower);
    assert!(sm.read_only.unconfirmed.is_empty());
    sm.check_invariants();

    for from in [2, 3] {
        let mut resp = new_message(from, 1, MessageType::MsgHeartbeatResponse);
        resp.term = sm.term;
        resp.context = round.clone();
        sm.step(resp).expect("late answer steps");
    }
    assert!(sm.read_states.is_empty(), "{:?}", sm.read_states);
}

/// A three-node leader as a `RawNode`, its first Ready handled.
fn new_raw_leader_of_three() -> (RawNode<MemoryStorage>, MemoryStorage) {
    let storage = MemoryStorage::new();
    let mut node = RawNode::new(
        &new_test_config(1, vec![1, 2, 3], 10, 1),
        storage.clone(),
        &test_logger(),
    )
    .expect("test config is valid");
    node.campaign().expect("campaign");
    for from in [2, 3] {
        let mut vote = new_message(from, 1, MessageType::MsgRequestVoteResponse);
        vote.term = 1;
        node.step(vote).expect("vote steps");
    }
    assert_eq!(node.raft().state(), StateRole::Leader);
    let rd = node.ready();
    storage.append(&rd.entries).expect("append");
    node.advance(rd);
    // The followers take the no-op; it commits.
    for from in [2, 3] {
        let mut ack = new_message(from, 1, MessageType::MsgAppendResponse);
        ack.term = 1;
        ack.index = 1;
        node.step(ack).expect("append response steps");
    }
    assert!(node.raft().has_committed_in_term());
    let rd = node.ready();
    storage.append(&rd.entries).expect("append");
    node.advance(rd);
    (node, storage)
}

/// Many reads asked before one heartbeat round all go out in one heartbeat
/// per follower, and one quorum answer releases every one of them, in order.
#[test]
fn test_many_reads_share_one_heartbeat_round() {
    let (mut node, _storage) = new_raw_leader_of_three();
    let ctxs: Vec<Vec<u8>> = (0..20u8).map(|i| vec![b'r', i]).collect();
    for ctx in &ctxs {
        node.read_index(ctx.clone());
    }
    assert!(node.has_ready());
    let rd = node.ready();
    assert!(rd.read_states.is_empty(), "a quorum has not answered yet");
    let heartbeats: Vec<&Message> = rd
        .messages
        .iter()
        .filter(|m| m.msg_type() == MessageType::MsgHeartbeat)
        .collect();
    assert_eq!(
        heartbeats.iter().map(|m| m.to).collect::<Vec<_>>(),
        vec![2, 3],
        "one heartbeat per follower: {:?}",
        rd.messages
    );
    let round = heartbeats[0].context.clone();
    node.advance(rd);

    // Node 2 echoes the round: with the leader, a quorum.
    let mut resp = new_message(2, 1, MessageType::MsgHeartbeatResponse);
    resp.term = 1;
    resp.context = round;
    node.step(resp).expect("heartbeat response steps");
    let rd = node.ready();
    let want: Vec<ReadState> = ctxs
        .iter()
        .map(|ctx| ReadState {
            index: 1,
            request_ctx: ctx.clone(),
        })
        .collect();
    assert_eq!(rd.read_states, want);
    node.advance(rd);
    assert!(!node.has_ready(), "each read state is handed out once");
}

/// etcd `TestRawNodeReadIndex`: read states make the node ready, are handed
/// out in a `Ready` and cleared by `advance`; a leader alone answers a read
/// at once, at its commit index.
#[test]
fn test_raw_node_read_index() {
    let storage = MemoryStorage::new();
    let mut node = RawNode::new(
        &new_test_config(1, vec![1], 10, 1),
        storage.clone(),
        &test_logger(),
    )
    .expect("test config is valid");
    let wrs = vec![ReadState {
        index: 1,
        request_ctx: b"somedata".to_vec(),
    }];
    node.raft_mut().read_states = wrs.clone();
    assert!(node.has_ready());
    let rd = node.ready();
    assert_eq!(rd.read_states, wrs);
    storage.append(&rd.entries).expect("append");
    node.advance(rd);
    assert!(node.raft().read_states().is_empty(), "cleared by advance");

    node.campaign().expect("campaign");
    let rd = node.ready();
    storage.append(&rd.entries).expect("append");
    node.advance(rd);
    assert_eq!(node.raft().state(), StateRole::Leader);

    node.read_index(b"somedata2".to_vec());
    let rd: Ready = node.ready();
    assert_eq!(
        rd.read_states,
        vec![ReadState {
            index: node.raft().raft_log().committed,
            request_ctx: b"somedata2".to_vec()
        }]
    );
    assert!(rd.messages.is_empty(), "alone, no heartbeat round");
    node.advance(rd);
}

/// Three nodes with lease reads, node 1 elected.
fn new_lease_cluster() -> Network {
    new_cluster_with_leader_1(&|c| {
        c.read_only_option = ReadOnlyOption::LeaseBased;
        c.check_quorum = true;
    })
}

/// Heartbeat answers from `from` (to node 1) carrying `ctx`.
fn heartbeat_response(from: u64, term: u64, ctx: &[u8]) -> Message {
    let mut m = new_message(from, 1, MessageType::MsgHeartbeatResponse);
    m.term = term;
    m.context = ctx.to_vec();
    m
}

/// The lease runs an election timeout from when the heartbeat a quorum
/// answered was made; a read asked after it lapsed waits for the next
/// answered round, then is answered at the commit index of that moment.
#[test]
fn test_lease_lapses_an_election_timeout_after_the_heartbeat_was_made() {
    let mut nt = new_lease_cluster();
    assert!(!nt.raft(1).lease_valid(), "no heartbeat answered yet");
    renew_lease(&mut nt);
    let et = nt.raft(1).election_timeout;
    let leader = nt.raft_mut(1);
    for _ in 0..et - 1 {
        leader.tick();
        assert!(leader.lease_valid(), "tick {}", leader.read_only.clock);
    }
    leader.tick();
    assert!(!leader.lease_valid(), "an election timeout after the round");
    leader.read_messages();
    leader.step(read_index(1, 1, b"r")).expect("read steps");
    assert!(
        leader.read_states.is_empty(),
        "held back while the lease lapsed"
    );
    assert_eq!(leader.pending_read_index.len(), 1);
    // Node 2 answers a heartbeat made now: with the leader, a quorum.
    let term = leader.term;
    let mut ctx = vec![b'L'];
    ctx.extend_from_slice(&leader.read_only.clock.to_le_bytes());
    leader
        .step(heartbeat_response(2, term, &ctx))
        .expect("answer steps");
    assert!(leader.lease_valid());
    let committed = leader.raft_log.committed;
    assert_eq!(
        leader.read_states,
        vec![ReadState {
            index: committed,
            request_ctx: b"r".to_vec()
        }]
    );
}

/// A late answer to an old heartbeat does not renew the lease, and neither
/// do malformed or future stamps; Safe round acks are not lease stamps.
#[test]
fn test_late_or_malformed_heartbeat_answers_do_not_renew_the_lease() {
    let mut nt = new_lease_cluster();
    let et = nt.raft(1).election_timeout as u64;
    let leader = nt.raft_mut(1);
    let term = leader.term;
    for _ in 0..et + 5 {
        leader.tick();
    }
    // Answers to the heartbeat made at tick 0 arrive now: too old.
    let old = [b'L', 0, 0, 0, 0, 0, 0, 0, 0];
    leader
        .step(heartbeat_response(2, term, &old))
        .expect("answer steps");
    leader
        .step(heartbeat_response(3, term, &old))
        .expect("answer steps");
    assert!(!leader.lease_valid(), "a late answer renews nothing");
    for ctx in [&b"short"[..], &5u64.to_le_bytes(), &[b'L', 1, 2]] {
        leader
            .step(heartbeat_response(2, term, ctx))
            .expect("answer steps");
    }
    assert!(!leader.lease_valid(), "malformed stamps renew nothing");
    // A stamp from the future counts as now, no later.
    let mut future = vec![b'L'];
    future.extend_from_slice(&u64::MAX.to_le_bytes());
    leader
        .step(heartbeat_response(2, term, &future))
        .expect("answer steps");
    assert!(leader.lease_valid());
    for _ in 0..et {
        leader.tick();
    }
    assert!(!leader.lease_valid(), "it lapses an election timeout later");
}

/// A leader that sent `MsgTimeoutNow` serves no more lease reads in its
/// term: the transferee's campaign ignores the followers' leases. Its reads
/// are confirmed by a heartbeat round instead.
#[test]
fn test_leader_transfer_revokes_the_lease() {
    let mut nt = new_lease_cluster();
    renew_lease(&mut nt);
    // Node 2 is up to date: the transfer sends MsgTimeoutNow at once. Keep
    // it from arriving, so node 1 stays leader.
    nt.ignore(MessageType::MsgTimeoutNow);
    nt.send(vec![new_message(2, 1, MessageType::MsgTransferLeader)]);
    assert_eq!(nt.raft(1).state, StateRole::Leader);
    assert!(!nt.raft(1).lease_valid(), "revoked by the transfer");
    nt.raft_mut(1).read_messages();
    nt.raft_mut(1)
        .step(read_index(1, 1, b"r"))
        .expect("read steps");
    let leader = nt.raft_mut(1);
    assert!(leader.read_states.is_empty(), "not from the lease");
    let heartbeats: Vec<Message> = leader
        .read_messages()
        .into_iter()
        .filter(|m| m.msg_type() == MessageType::MsgHeartbeat)
        .collect();
    assert_eq!(heartbeats.len(), 2, "a Safe round instead");
    nt.send(heartbeats);
    assert_eq!(nt.raft(1).read_states.len(), 1, "confirmed by the round");
}
