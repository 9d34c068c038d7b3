//! TinyKV's `raft/rawnode_test.go`: the host's view of a node through
//! `RawNode`: proposals, conf changes, and the `Ready` of a fresh or
//! restarted node.

use kvproto::eraftpb::{
    ConfChange, ConfChangeType, ConfState, Entry, EntryType, HardState, Snapshot, SnapshotMetadata,
};
use prost::Message as _;

use crate::test_util::{new_entry, new_test_config, test_logger};
use crate::{MemoryStorage, RawNode, Ready};

/// A node over `storage` with the test config (election 10, heartbeat 1).
fn new_test_raw_node(id: u64, peers: Vec<u64>, storage: &MemoryStorage) -> RawNode<MemoryStorage> {
    RawNode::new(
        &new_test_config(id, peers, 10, 1),
        storage.clone(),
        &test_logger(),
    )
    .expect("test config is valid")
}

fn conf_change(change_type: ConfChangeType, node_id: u64) -> ConfChange {
    ConfChange {
        change_type: change_type as i32,
        node_id,
        ..Default::default()
    }
}

/// `propose` and `propose_conf_change` hand the proposal and the conf change
/// to the Raft node, which appends them to its log.
#[test]
fn test_raw_node_propose_and_conf_change_3a() {
    let s = MemoryStorage::new();
    let mut raw_node = new_test_raw_node(1, vec![1], &s);
    let rd = raw_node.ready();
    s.append(&rd.entries).expect("append to memory storage");
    raw_node.advance(rd);

    let d = raw_node.ready();
    assert!(
        d.hard_state.is_none() && d.entries.is_empty(),
        "expected no hard state and no entries: {d:?}"
    );

    raw_node.campaign().expect("campaign");
    let rd = raw_node.ready();
    assert_eq!(
        rd.soft_state.map(|ss| ss.leader_id),
        Some(raw_node.raft().id),
        "expected to become leader: {rd:?}"
    );

    // Propose a command and a conf change.
    raw_node
        .propose(b"somedata".to_vec())
        .expect("leader accepts the proposal");
    let cc = conf_change(ConfChangeType::AddNode, 1);
    let ccdata = cc.encode_to_vec();
    raw_node
        .propose_conf_change(cc)
        .expect("leader accepts the conf change");

    let entries = raw_node.raft().raft_log.all_entries();
    let l = entries.len();
    assert!(l >= 2, "len(entries) = {l}, want >= 2");
    let entries = &entries[l - 2..];
    assert_eq!(entries[0].data, b"somedata", "entries[0].data");
    assert_eq!(
        entries[1].entry_type(),
        EntryType::EntryConfChange,
        "entries[1] type"
    );
    assert_eq!(entries[1].data, ccdata, "entries[1].data");
}

/// Proposing to add the same node twice does not get in the way of a later
/// proposal to add a new node.
#[test]
fn test_raw_node_propose_add_duplicate_node_3a() {
    let s = MemoryStorage::new();
    let mut raw_node = new_test_raw_node(1, vec![1], &s);
    let rd = raw_node.ready();
    s.append(&rd.entries).expect("append to memory storage");
    raw_node.advance(rd);

    raw_node.campaign().expect("campaign");
    loop {
        let rd = raw_node.ready();
        s.append(&rd.entries).expect("append to memory storage");
        let is_leader = rd
            .soft_state
            .is_some_and(|ss| ss.leader_id == raw_node.raft().id);
        raw_node.advance(rd);
        if is_leader {
            break;
        }
    }

    let mut propose_conf_change_and_apply = |cc: ConfChange| {
        raw_node
            .propose_conf_change(cc)
            .expect("leader accepts the conf change");
        let rd = raw_node.ready();
        s.append(&rd.entries).expect("append to memory storage");
        for entry in &rd.committed_entries {
            if entry.entry_type() == EntryType::EntryConfChange {
                let cc = ConfChange::decode(entry.data.as_slice()).expect("decode conf change");
                raw_node.apply_conf_change(&cc);
            }
        }
        raw_node.advance(rd);
    };

    let cc1 = conf_change(ConfChangeType::AddNode, 1);
    let ccdata1 = cc1.encode_to_vec();
    propose_conf_change_and_apply(cc1.clone());

    // Add the same node again.
    propose_conf_change_and_apply(cc1);

    // Adding a new node still works.
    let cc2 = conf_change(ConfChangeType::AddNode, 2);
    let ccdata2 = cc2.encode_to_vec();
    propose_conf_change_and_apply(cc2);

    let last_index = crate::Storage::last_index(&s).expect("last index");

    // The last three entries are the conf changes cc1, cc1, cc2.
    let entries = crate::Storage::entries(&s, last_index - 2, last_index + 1).expect("entries");
    assert_eq!(entries.len(), 3, "entries: {entries:?}");
    assert_eq!(entries[0].data, ccdata1, "entries[0].data");
    assert_eq!(entries[2].data, ccdata2, "entries[2].data");
}

/// A node starts, and accepts and commits a proposal.
#[test]
fn test_raw_node_start_2ac() {
    let storage = MemoryStorage::new();
    let mut raw_node = new_test_raw_node(1, vec![1], &storage);
    raw_node.campaign().expect("campaign");
    let rd = raw_node.ready();
    storage
        .append(&rd.entries)
        .expect("append to memory storage");
    raw_node.advance(rd);

    raw_node
        .propose(b"foo".to_vec())
        .expect("leader accepts the proposal");
    let rd = raw_node.ready();
    assert!(
        rd.entries.len() == 1 && rd.committed_entries.len() == 1,
        "got {} entries and {} committed entries, want 1 each: {rd:?}",
        rd.entries.len(),
        rd.committed_entries.len()
    );
    assert!(
        rd.entries[0].data == rd.committed_entries[0].data && rd.entries[0].data == b"foo",
        "got {:?} {:?}, want \"foo\"",
        rd.entries[0].data,
        rd.committed_entries[0].data
    );
    storage
        .append(&rd.entries)
        .expect("append to memory storage");
    raw_node.advance(rd);

    assert!(
        !raw_node.has_ready(),
        "unexpected ready: {:?}",
        raw_node.ready()
    );
}

/// A restarted node hands out the entries committed before the restart and
/// nothing else.
#[test]
fn test_raw_node_restart_2ac() {
    let entries = vec![
        new_entry(1, 1),
        Entry {
            data: b"foo".to_vec(),
            ..new_entry(2, 1)
        },
    ];
    let st = HardState {
        term: 1,
        commit: 1,
        ..Default::default()
    };

    let want = Ready {
        entries: vec![],
        // Committed up to the commit index of the hard state.
        committed_entries: entries[..st.commit as usize].to_vec(),
        ..Default::default()
    };

    let storage = MemoryStorage::new();
    storage.set_hard_state(st);
    storage.append(&entries).expect("append to memory storage");
    let mut raw_node = new_test_raw_node(1, vec![], &storage);
    let rd = raw_node.ready();
    assert_eq!(rd, want, "first ready");
    raw_node.advance(rd);
    assert!(
        !raw_node.has_ready(),
        "unexpected ready: {:?}",
        raw_node.ready()
    );
}

/// A node restarted over a snapshot hands out the committed entries after
/// the snapshot and nothing else.
#[test]
fn test_raw_node_restart_from_snapshot_2c() {
    let snap = Snapshot {
        metadata: Some(SnapshotMetadata {
            conf_state: Some(ConfState { nodes: vec![1, 2] }),
            index: 2,
            term: 1,
        }),
        ..Default::default()
    };
    let entries = vec![Entry {
        data: b"foo".to_vec(),
        ..new_entry(3, 1)
    }];
    let st = HardState {
        term: 1,
        commit: 3,
        ..Default::default()
    };

    let want = Ready {
        entries: vec![],
        // Committed up to the commit index of the hard state.
        committed_entries: entries.clone(),
        ..Default::default()
    };

    let s = MemoryStorage::new();
    s.set_hard_state(st);
    s.apply_snapshot(snap).expect("apply snapshot");
    s.append(&entries).expect("append to memory storage");
    let mut raw_node = new_test_raw_node(1, vec![], &s);
    let rd = raw_node.ready();
    assert_eq!(rd, want, "first ready");
    raw_node.advance(rd);
    assert!(
        !raw_node.has_ready(),
        "unexpected ready: {:?}",
        raw_node.ready()
    );
}
