//! The 2C and 3A part of TinyKV's `raft/raft_test.go`: restoring from and
//! sending snapshots (Raft paper §7), single-member conf changes (§6) and
//! leader transfer (thesis §3.10). The 2AA/2AB part lives in `raft_test.rs`.
//!
//! Each test keeps the Go name in snake case with its part suffix; the
//! Go→Rust mapping is in `docs/ported/raft_test_2c3a.md`. Where Go keeps a
//! `*Raft` pointer into a network, these tests look the node up again with
//! `Network::raft` after every send, since the network owns its nodes.

use kvproto::eraftpb::{
    ConfChange, ConfChangeType, ConfState, Entry, EntryType, Message, MessageType, Snapshot,
    SnapshotMetadata,
};

use crate::test_util::{Network, new_entry, new_message, new_test_raft, next_ents};
use crate::{INVALID_ID, MemoryStorage, Raft, StateRole};

/// The sorted member ids of `r` (Go's `nodes`).
fn nodes(r: &Raft<MemoryStorage>) -> Vec<u64> {
    r.prs.keys().copied().collect()
}

/// A snapshot carrying no data, covering up to (`index`, `term`) with members `nodes`.
fn new_snapshot(index: u64, term: u64, nodes: Vec<u64>) -> Snapshot {
    Snapshot {
        data: Vec::new(),
        metadata: Some(SnapshotMetadata {
            conf_state: Some(ConfState { nodes }),
            index,
            term,
        }),
    }
}

/// A message carrying only `snapshot`, as Go's `pb.Message{Snapshot: &s}`.
fn snapshot_message(snapshot: Snapshot) -> Message {
    Message {
        snapshot: Some(snapshot),
        ..Default::default()
    }
}

/// A proposal of `entries` from `from` to `to`.
fn propose(from: u64, to: u64, entries: Vec<Entry>) -> Message {
    let mut m = new_message(from, to, MessageType::MsgPropose);
    m.entries = entries;
    m
}

/// A proposal of one empty entry from node 1 to itself.
fn propose_empty() -> Message {
    propose(1, 1, vec![Entry::default()])
}

fn hup(id: u64) -> Message {
    new_message(id, id, MessageType::MsgHup)
}

/// Asks `to` to hand leadership over to `transferee` (who is the `from`).
fn transfer_leader(transferee: u64, to: u64) -> Message {
    new_message(transferee, to, MessageType::MsgTransferLeader)
}

/// Go's `checkLeaderTransferState`, plus etcd's check that no transfer is
/// left pending (etcd `raft_test.go` has it; TinyKV dropped it).
fn must_leader_transfer_state(case: &str, r: &Raft<MemoryStorage>, state: StateRole, lead: u64) {
    assert!(
        r.state == state && r.lead == lead,
        "{case}: after transferring, node has state {:?} lead {}, want state {state:?} lead {lead}",
        r.state,
        r.lead
    );
    assert_eq!(
        r.lead_transferee, INVALID_ID,
        "{case}: after transferring, a transfer to {} is still pending",
        r.lead_transferee
    );
}

/// Elects node 1 in a fresh three-node network.
fn new_network_with_leader_1() -> Network {
    let mut nt = Network::new(vec![None, None, None]);
    nt.send(vec![hup(1)]);
    nt
}

/// Persists and applies node 1's log, then snapshots and compacts its
/// storage up to the applied index (Go's nextEnts + CreateSnapshot + Compact).
fn snapshot_and_compact_leader_1(nt: &mut Network) {
    let storage = nt.storage[&1].clone();
    next_ents(nt.raft_mut(1), &storage);
    let lead = nt.raft(1);
    let applied = lead.raft_log.applied;
    let cs = ConfState { nodes: nodes(lead) };
    storage
        .create_snapshot(applied, Some(cs), Vec::new())
        .expect("snapshot at the applied index");
    storage
        .compact(applied)
        .expect("compact to the applied index");
}

// ---- 2C: snapshots ----

/// A follower restored from a snapshot takes its last index and term and
/// its membership.
#[test]
fn test_restore_snapshot_2c() {
    let s = new_snapshot(11, 11, vec![1, 2, 3]);
    let mut sm = new_test_raft(1, vec![1, 2], 10, 1, MemoryStorage::new());
    sm.handle_snapshot(snapshot_message(s));

    assert_eq!(sm.raft_log.last_index(), 11, "log.last_index");
    assert_eq!(sm.raft_log.term(11).ok(), Some(11), "log.term(11)");
    assert_eq!(nodes(&sm), vec![1, 2, 3], "members");
}

/// A snapshot older than the commit index is ignored.
#[test]
fn test_restore_ignore_snapshot_2c() {
    let storage = MemoryStorage::new();
    storage
        .append(&[new_entry(1, 1), new_entry(2, 1), new_entry(3, 1)])
        .expect("append");
    let mut sm = new_test_raft(1, vec![1, 2], 10, 1, storage);
    sm.raft_log.committed = 3;

    let s = new_snapshot(1, 1, vec![1, 2]);
    sm.handle_snapshot(snapshot_message(s));
    assert_eq!(sm.raft_log.committed, 3, "commit after an old snapshot");
}

/// A leader whose follower needs compacted entries sends a snapshot.
#[test]
fn test_provide_snap_2c() {
    // Restoring from a snapshot leaves the log compacted below index 12.
    let s = new_snapshot(11, 11, vec![1, 2]);
    let mut sm = new_test_raft(1, vec![1], 10, 1, MemoryStorage::new());
    sm.handle_snapshot(snapshot_message(s));

    sm.become_candidate();
    sm.become_leader();
    sm.read_messages();

    // Node 2 now needs entry 10, which only the snapshot covers.
    sm.prs.get_mut(&2).expect("node 2 is a member").next = 10;
    let _ = sm.step(propose(
        2,
        1,
        vec![Entry {
            data: b"somedata".to_vec(),
            ..Default::default()
        }],
    ));

    let msgs = sm.read_messages();
    assert_eq!(msgs.len(), 1, "messages: {msgs:?}");
    assert_eq!(msgs[0].msg_type(), MessageType::MsgSnapshot, "message type");
}

/// A snapshot message from a higher term makes its sender the leader.
#[test]
fn test_restore_from_snap_msg_2c() {
    let s = new_snapshot(11, 11, vec![1, 2]);
    let mut m = new_message(1, 0, MessageType::MsgSnapshot);
    m.term = 2;
    m.snapshot = Some(s);

    let mut sm = new_test_raft(2, vec![1, 2], 10, 1, MemoryStorage::new());
    let _ = sm.step(m);
    assert_eq!(sm.lead, 1, "lead");
}

/// Restoring replaces the membership with the snapshot's, even when the two
/// only partly overlap.
#[test]
fn test_restore_from_snap_with_overlaping_peers_msg_2c() {
    let snap_nodes = vec![2, 3, 4];
    let s = new_snapshot(11, 11, snap_nodes.clone());
    let mut m = new_message(1, 0, MessageType::MsgSnapshot);
    m.term = 2;
    m.snapshot = Some(s);

    let mut sm = new_test_raft(2, vec![1, 2, 3], 10, 1, MemoryStorage::new());
    let _ = sm.step(m);
    assert_eq!(sm.lead, 1, "lead");

    assert_eq!(sm.prs.len(), snap_nodes.len(), "len(prs)");
    for p in snap_nodes {
        assert!(sm.prs.contains_key(&p), "missing peer {p}");
    }
}

/// A node cut off while the leader compacted its log catches up through a
/// snapshot and then follows the commit index again.
#[test]
fn test_slow_node_restore_2c() {
    let mut nt = new_network_with_leader_1();

    nt.isolate(3);
    for _ in 0..=100 {
        nt.send(vec![propose_empty()]);
    }
    snapshot_and_compact_leader_1(&mut nt);

    nt.recover();

    // Node 3's heartbeat response shows the leader it is behind.
    nt.send(vec![new_message(1, 1, MessageType::MsgBeat)]);

    // Entries node 3 lacks are compacted: this sends it the snapshot.
    nt.send(vec![propose_empty()]);

    // This commits a new entry everywhere.
    nt.send(vec![propose_empty()]);
    let (follower, lead) = (nt.raft(3), nt.raft(1));
    assert_eq!(
        follower.raft_log.committed, lead.raft_log.committed,
        "follower committed vs leader committed"
    );
}

// ---- 3A: membership change ----

/// `add_node` adds a member.
#[test]
fn test_add_node_3a() {
    let mut r = new_test_raft(1, vec![1], 10, 1, MemoryStorage::new());
    r.add_node(2);
    assert_eq!(nodes(&r), vec![1, 2], "members");
}

/// `remove_node` removes a member, down to none.
#[test]
fn test_remove_node_3a() {
    let mut r = new_test_raft(1, vec![1, 2], 10, 1, MemoryStorage::new());
    r.remove_node(2);
    assert_eq!(nodes(&r), vec![1], "members after removing 2");

    r.remove_node(1);
    assert_eq!(nodes(&r), Vec::<u64>::new(), "members after removing 1");
}

/// Removing a member lowers the quorum, so an entry waiting for it commits.
#[test]
fn test_commit_after_remove_node_3a() {
    let s = MemoryStorage::new();
    let mut r = new_test_raft(1, vec![1, 2], 5, 1, s.clone());
    r.become_candidate();
    r.become_leader();

    // Propose removing node 2.
    let cc = ConfChange {
        change_type: ConfChangeType::RemoveNode as i32,
        node_id: 2,
        ..Default::default()
    };
    r.step(propose(
        0,
        0,
        vec![Raft::<MemoryStorage>::conf_change_entry(&cc)],
    ))
    .expect("conf change proposal accepted");
    let ents = next_ents(&mut r, &s);
    assert!(ents.is_empty(), "unexpected committed entries: {ents:?}");
    let cc_index = r.raft_log.last_index();

    // Another proposal while the conf change is pending.
    r.step(propose(
        0,
        0,
        vec![Entry {
            entry_type: EntryType::EntryNormal as i32,
            data: b"hello".to_vec(),
            ..Default::default()
        }],
    ))
    .expect("normal proposal accepted");

    // Node 2 acknowledges up to the conf change, which commits it.
    let mut ack = new_message(2, 0, MessageType::MsgAppendResponse);
    ack.index = cc_index;
    ack.term = r.term;
    r.step(ack).expect("append response");
    let ents = next_ents(&mut r, &s);
    assert_eq!(
        ents.len(),
        2,
        "expected two committed entries, got {ents:?}"
    );
    assert!(
        ents[0].entry_type() == EntryType::EntryNormal && ents[0].data.is_empty(),
        "expected ents[0] to be the empty no-op, got {:?}",
        ents[0]
    );
    assert_eq!(
        ents[1].entry_type(),
        EntryType::EntryConfChange,
        "ents[1] type"
    );

    // Applying the removal leaves node 1 a quorum on its own.
    r.remove_node(2);
    let ents = next_ents(&mut r, &s);
    assert!(
        ents.len() == 1
            && ents[0].entry_type() == EntryType::EntryNormal
            && ents[0].data == b"hello",
        "expected one committed normal entry \"hello\", got {ents:?}"
    );
}

// ---- 3A: leader transfer ----

/// Transfer to an up-to-date node succeeds at once, and back again after
/// more replication.
#[test]
fn test_leader_transfer_to_up_to_date_node_3a() {
    let mut nt = new_network_with_leader_1();
    assert_eq!(nt.raft(1).lead, 1, "leader after election");

    nt.send(vec![transfer_leader(2, 1)]);
    must_leader_transfer_state("transfer to 2", nt.raft(1), StateRole::Follower, 2);

    nt.send(vec![propose_empty()]);
    nt.send(vec![transfer_leader(1, 2)]);
    must_leader_transfer_state("transfer back to 1", nt.raft(1), StateRole::Leader, 1);
}

/// As above, but each request goes to a follower, which forwards it to the leader.
#[test]
fn test_leader_transfer_to_up_to_date_node_from_follower_3a() {
    let mut nt = new_network_with_leader_1();
    assert_eq!(nt.raft(1).lead, 1, "leader after election");

    nt.send(vec![transfer_leader(2, 2)]);
    must_leader_transfer_state("transfer to 2", nt.raft(1), StateRole::Follower, 2);

    nt.send(vec![propose_empty()]);
    nt.send(vec![transfer_leader(1, 1)]);
    must_leader_transfer_state("transfer back to 1", nt.raft(1), StateRole::Leader, 1);
}

/// A transferee lacking entries is caught up first, then takes over.
#[test]
fn test_leader_transfer_to_slow_follower_3a() {
    let mut nt = new_network_with_leader_1();

    nt.isolate(3);
    nt.send(vec![propose_empty()]);

    nt.recover();
    assert_eq!(nt.raft(1).prs[&3].matched, 1, "node 1's match for node 3");

    nt.send(vec![transfer_leader(3, 1)]);
    must_leader_transfer_state("transfer to 3", nt.raft(1), StateRole::Follower, 3);
}

/// A transferee whose missing entries are compacted gets a snapshot first.
#[test]
fn test_leader_transfer_after_snapshot_3a() {
    let mut nt = new_network_with_leader_1();

    nt.isolate(3);

    nt.send(vec![propose_empty()]);
    snapshot_and_compact_leader_1(&mut nt);

    nt.recover();
    assert_eq!(nt.raft(1).prs[&3].matched, 1, "node 1's match for node 3");

    nt.send(vec![transfer_leader(3, 1)]);
    // A heartbeat response from node 3 makes the leader send it the snapshot.
    let mut resp = new_message(3, 1, MessageType::MsgHeartbeatResponse);
    resp.term = nt.raft(1).term;
    nt.send(vec![resp]);

    must_leader_transfer_state("transfer to 3", nt.raft(1), StateRole::Follower, 3);
}

/// A transfer to the leader itself changes nothing.
#[test]
fn test_leader_transfer_to_self_3a() {
    let mut nt = new_network_with_leader_1();

    nt.send(vec![transfer_leader(1, 1)]);
    must_leader_transfer_state("transfer to self", nt.raft(1), StateRole::Leader, 1);
}

/// A transfer to a node outside the group changes nothing.
#[test]
fn test_leader_transfer_to_non_existing_node_3a() {
    let mut nt = new_network_with_leader_1();

    nt.send(vec![transfer_leader(4, 1)]);
    must_leader_transfer_state("transfer to 4", nt.raft(1), StateRole::Leader, 1);
}

/// An election in a higher term ends a pending transfer.
#[test]
fn test_leader_transfer_receive_higher_term_vote_3a() {
    let mut nt = new_network_with_leader_1();

    nt.isolate(3);

    // The transfer to the unreachable node stays pending.
    nt.send(vec![transfer_leader(3, 1)]);
    let mut m = hup(2);
    m.index = 1;
    m.term = 2;
    nt.send(vec![m]);

    must_leader_transfer_state("election by 2", nt.raft(1), StateRole::Follower, 2);
}

/// A transfer to a node already removed is ignored.
#[test]
fn test_leader_transfer_remove_node_3a() {
    let mut nt = new_network_with_leader_1();

    nt.raft_mut(1).remove_node(3);

    nt.send(vec![transfer_leader(3, 1)]);
    must_leader_transfer_state("transfer to removed 3", nt.raft(1), StateRole::Leader, 1);
}

/// While a transfer is pending, transferring to the leader itself cancels it.
#[test]
fn test_leader_transfer_back_3a() {
    let mut nt = new_network_with_leader_1();

    nt.isolate(3);

    nt.send(vec![transfer_leader(3, 1)]);
    nt.send(vec![transfer_leader(1, 1)]);

    must_leader_transfer_state("transfer back to self", nt.raft(1), StateRole::Leader, 1);
}

/// While a transfer is pending, a transfer to another node replaces it.
#[test]
fn test_leader_transfer_second_transfer_to_another_node_3a() {
    let mut nt = new_network_with_leader_1();

    nt.isolate(3);

    nt.send(vec![transfer_leader(3, 1)]);
    nt.send(vec![transfer_leader(2, 1)]);

    must_leader_transfer_state("transfer to 2", nt.raft(1), StateRole::Follower, 2);
}

/// A node outside the group ignores MsgTimeoutNow, so votes that follow
/// cannot make it leader.
#[test]
fn test_transfer_non_member_3a() {
    let mut r = new_test_raft(1, vec![2, 3, 4], 5, 1, MemoryStorage::new());
    let mut timeout_now = new_message(2, 1, MessageType::MsgTimeoutNow);
    timeout_now.term = r.term;
    let _ = r.step(timeout_now);

    for from in [2, 3] {
        let mut resp = new_message(from, 1, MessageType::MsgRequestVoteResponse);
        resp.term = r.term;
        let _ = r.step(resp);
    }
    assert_eq!(r.state, StateRole::Follower, "state");
}
