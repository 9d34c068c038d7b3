//! TinyKV's `kv/raftstore/peer_storage_test.go`, ported: `PeerStorage` over a
//! real RocksDB in a temp dir.
//!
//! Differences in form (see `docs/PORTED_TESTS.md`):
//! - Go builds a storage "from zero" and pokes its in-memory states; ours
//!   writes the log and the states to the engine and lets `PeerStorage::new`
//!   load them, so loading is exercised too.
//! - Go's fixture has `applied = last index` with a zero hard state; our
//!   storage checks `truncated <= applied <= commit <= last` on every change,
//!   so the fixture has `applied = commit = truncated index`: appends may then
//!   overwrite every entry after it, as the Go cases do.
//! - Appends go through `prepare_persist` (with a `Ready` holding only
//!   entries), a synced write, and `commit_persist`.

use kvproto::eraftpb::{Entry, HardState};
use kvproto::metapb;
use kvproto::raft_serverpb::{RaftApplyState, RaftLocalState, RaftTruncatedState};
use raft::{Ready, Storage as _, StorageError};
use slog::{Logger, o};
use storage::keys;
use storage::{CF_DEFAULT, CF_RAFT, Engine};

use crate::bootstrap::{bootstrap_store, new_first_region, write_initial_region};
use crate::peer_storage::PeerStorage;
use crate::snapshot::SnapshotSource;

/// These tests never need a snapshot: Raft would be told to retry.
struct NoSnapshots;

impl SnapshotSource for NoSnapshots {
    fn snapshot(&self, _: &metapb::Region, _: u64) -> raft::Result<kvproto::eraftpb::Snapshot> {
        Err(StorageError::SnapshotTemporarilyUnavailable.into())
    }
}

/// A storage and the temp dir its engine lives in (dropped after it).
struct TestStorage {
    storage: PeerStorage,
    _dir: tempfile::TempDir,
}

fn new_test_entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: vec![0],
        ..Default::default()
    }
}

fn test_logger() -> Logger {
    Logger::root(slog::Discard, o!())
}

/// A storage of region 1 on store 1 whose log is `ents`: `ents[0]` is the
/// truncated entry, the rest are in the raft CF. Applied and committed up to
/// the truncated index (see the module doc).
fn new_test_peer_storage_from_ents(ents: &[Entry]) -> TestStorage {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = Engine::open(dir.path()).expect("open engine");
    bootstrap_store(&engine, 1, 1).expect("bootstrap store");
    let region = new_first_region(1, vec![metapb::Peer { id: 1, store_id: 1 }]);
    write_initial_region(&engine, &region).expect("write region");

    let truncated = &ents[0];
    let last = ents.last().expect("at least the truncated entry");
    let mut wb = engine.write_batch();
    for entry in &ents[1..] {
        wb.put_msg_cf(CF_RAFT, &keys::raft_log_key(region.id, entry.index), entry)
            .expect("put entry");
    }
    let raft_state = RaftLocalState {
        hard_state: Some(HardState {
            term: last.term,
            vote: 0,
            commit: truncated.index,
        }),
        last_index: last.index,
        last_term: last.term,
    };
    wb.put_msg_cf(CF_RAFT, &keys::raft_state_key(region.id), &raft_state)
        .expect("put raft state");
    let apply_state = RaftApplyState {
        applied_index: truncated.index,
        truncated_state: Some(RaftTruncatedState {
            index: truncated.index,
            term: truncated.term,
        }),
        ..Default::default()
    };
    wb.put_msg_cf(CF_DEFAULT, &keys::apply_state_key(region.id), &apply_state)
        .expect("put apply state");
    engine.write(wb, true).expect("write fixture");

    let storage = PeerStorage::new(engine, region, Box::new(NoSnapshots), &test_logger())
        .expect("load peer storage");
    TestStorage { storage, _dir: dir }
}

/// Persists `ents` as a `Ready` carrying them would.
fn append_ents(storage: &mut PeerStorage, ents: &[Entry]) {
    let ready = Ready {
        entries: ents.to_vec(),
        ..Default::default()
    };
    let mut wb = storage.engine().write_batch();
    let pending = storage
        .prepare_persist(&ready, &mut wb)
        .expect("prepare persist");
    storage.engine().write(wb, true).expect("write entries");
    assert!(
        storage.commit_persist(pending).is_none(),
        "no snapshot to install"
    );
}

/// The number of keys the storage's region has outside its data: raft log,
/// raft state, apply state (region raft range, raft and default CFs) and
/// region state (region meta range).
fn get_meta_key_count(storage: &PeerStorage) -> usize {
    let region_id = storage.region().id;
    let engine = storage.engine();
    let mut count = 0;
    let (raft_start, raft_end) = keys::region_raft_range(region_id);
    let (meta_start, meta_end) = keys::region_meta_range(region_id);
    for (cf, start, end) in [
        (CF_RAFT, &raft_start, &raft_end),
        (CF_DEFAULT, &raft_start, &raft_end),
        (CF_DEFAULT, &meta_start, &meta_end),
    ] {
        engine
            .scan_cf(cf, start, end, |_, _| {
                count += 1;
                Ok(true)
            })
            .expect("scan");
    }
    count
}

fn compacted<T>() -> raft::Result<T> {
    Err(StorageError::Compacted.into())
}

#[test]
fn test_peer_storage_term() {
    let ents = [
        new_test_entry(3, 3),
        new_test_entry(4, 4),
        new_test_entry(5, 5),
    ];
    let cases: [(u64, raft::Result<u64>); 4] =
        [(2, compacted()), (3, Ok(3)), (4, Ok(4)), (5, Ok(5))];
    for (idx, want) in cases {
        let t = new_test_peer_storage_from_ents(&ents);
        assert_eq!(t.storage.term(idx), want, "term({idx})");
    }
}

#[test]
fn test_peer_storage_clear_meta() {
    let mut t = new_test_peer_storage_from_ents(&[new_test_entry(3, 3), new_test_entry(4, 4)]);
    append_ents(
        &mut t.storage,
        &[new_test_entry(5, 5), new_test_entry(6, 6)],
    );
    // Entries 4, 5, 6, the raft state, the apply state and the region state.
    assert_eq!(get_meta_key_count(&t.storage), 6);
    let mut wb = t.storage.engine().write_batch();
    t.storage.clear_meta(&mut wb).expect("clear meta");
    t.storage.engine().write(wb, true).expect("write");
    assert_eq!(get_meta_key_count(&t.storage), 0);
}

#[test]
fn test_peer_storage_entries() {
    let ents = [
        new_test_entry(3, 3),
        new_test_entry(4, 4),
        new_test_entry(5, 5),
        new_test_entry(6, 6),
    ];
    let cases: [(u64, u64, raft::Result<Vec<Entry>>); 4] = [
        (2, 6, compacted()),
        (3, 4, compacted()),
        (4, 5, Ok(vec![new_test_entry(4, 4)])),
        (4, 6, Ok(vec![new_test_entry(4, 4), new_test_entry(5, 5)])),
    ];
    for (i, (low, high, want)) in cases.into_iter().enumerate() {
        let t = new_test_peer_storage_from_ents(&ents);
        assert_eq!(
            t.storage.entries(low, high),
            want,
            "case {i}: entries({low}, {high})"
        );
    }
}

#[test]
fn test_peer_storage_append() {
    let ents = [
        new_test_entry(3, 3),
        new_test_entry(4, 4),
        new_test_entry(5, 5),
    ];
    let e = new_test_entry;
    let cases: [(Vec<Entry>, Vec<Entry>); 6] = [
        (vec![e(3, 3), e(4, 4), e(5, 5)], vec![e(4, 4), e(5, 5)]),
        (vec![e(3, 3), e(4, 6), e(5, 6)], vec![e(4, 6), e(5, 6)]),
        (
            vec![e(3, 3), e(4, 4), e(5, 5), e(6, 5)],
            vec![e(4, 4), e(5, 5), e(6, 5)],
        ),
        // Truncate incoming entries, truncate the existing entries and append.
        (vec![e(2, 3), e(3, 3), e(4, 5)], vec![e(4, 5)]),
        // Truncate the existing entries and append.
        (vec![e(4, 5)], vec![e(4, 5)]),
        // Direct append.
        (vec![e(6, 5)], vec![e(4, 4), e(5, 5), e(6, 5)]),
    ];
    for (i, (appends, want)) in cases.into_iter().enumerate() {
        let mut t = new_test_peer_storage_from_ents(&ents);
        append_ents(&mut t.storage, &appends);
        let last = t.storage.last_index();
        assert_eq!(
            t.storage.entries(4, last + 1).expect("entries"),
            want,
            "case {i}"
        );
        // Nothing at or below the truncated index was written back, and
        // nothing past the new last index survives.
        let region_id = t.storage.region().id;
        let mut indexes = Vec::new();
        let (start, end) = keys::raft_log_range(region_id);
        t.storage
            .engine()
            .scan_cf(CF_RAFT, &start, &end, |key, _| {
                indexes.push(keys::raft_log_index(key)?);
                Ok(true)
            })
            .expect("scan log");
        let want_indexes: Vec<u64> = want.iter().map(|e| e.index).collect();
        assert_eq!(indexes, want_indexes, "case {i}: log keys in the raft CF");
    }
}
