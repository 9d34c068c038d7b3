use kvproto::eraftpb::{Entry, Message, MessageType, Snapshot};
use kvproto::metapb;
use kvproto::raft_serverpb::{
    PeerState, RaftApplyState, RaftMessage, RaftSnapshotData, RaftTruncatedState, RegionLocalState,
    SnapshotCfFile, SnapshotChunk, SnapshotMeta,
};
use prost::Message as _;
use storage::{CF_DEFAULT, CF_LOCK, CF_RAFT, CF_WRITE, DATA_CFS, Engine, keys, write_sst};

use super::*;

struct TestStore {
    _dir: tempfile::TempDir,
    engine: Engine,
    mgr: SnapManager,
}

fn new_test_store() -> TestStore {
    let dir = tempfile::tempdir().expect("temp dir");
    let engine = Engine::open(dir.path().join("db")).expect("open engine");
    let mgr = SnapManager::open(dir.path().join("snap")).expect("open snap manager");
    TestStore {
        _dir: dir,
        engine,
        mgr,
    }
}

fn new_test_region(id: u64, start: &[u8], end: &[u8]) -> metapb::Region {
    metapb::Region {
        id,
        start_key: start.to_vec(),
        end_key: end.to_vec(),
        region_epoch: Some(metapb::RegionEpoch {
            conf_ver: 1,
            version: 1,
        }),
        peers: vec![
            metapb::Peer { id: 1, store_id: 1 },
            metapb::Peer { id: 2, store_id: 2 },
        ],
    }
}

/// Writes `region` as a Normal region applied up to `applied`, compacted
/// up to `truncated` (index, term); the entry at `applied` has `term`.
fn put_region(
    engine: &Engine,
    region: &metapb::Region,
    applied: u64,
    term: u64,
    truncated: (u64, u64),
) {
    let mut wb = engine.write_batch();
    wb.put_msg_cf(
        CF_DEFAULT,
        &keys::region_state_key(region.id),
        &RegionLocalState {
            state: PeerState::Normal as i32,
            region: Some(region.clone()),
        },
    )
    .unwrap();
    wb.put_msg_cf(
        CF_DEFAULT,
        &keys::apply_state_key(region.id),
        &RaftApplyState {
            applied_index: applied,
            truncated_state: Some(RaftTruncatedState {
                index: truncated.0,
                term: truncated.1,
            }),
            ..Default::default()
        },
    )
    .unwrap();
    if applied > truncated.0 {
        wb.put_msg_cf(
            CF_RAFT,
            &keys::raft_log_key(region.id, applied),
            &Entry {
                index: applied,
                term,
                ..Default::default()
            },
        )
        .unwrap();
    }
    engine.write(wb, true).unwrap();
}

/// Deterministic bytes that do not compress much.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn put_data(engine: &Engine, cf: &str, key: &[u8], value: &[u8]) {
    engine.put_cf(cf, &keys::data_key(key), value).unwrap();
}

fn scan_data(engine: &Engine, cf: &str, start: &[u8], end: &[u8]) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut out = Vec::new();
    engine
        .scan_cf(
            cf,
            &keys::data_key(start),
            &keys::data_end_key(end),
            |k, v| {
                out.push((k.to_vec(), v.to_vec()));
                Ok(true)
            },
        )
        .unwrap();
    out
}

fn snapshot_message(region_id: u64, snapshot: Snapshot) -> RaftMessage {
    RaftMessage {
        region_id,
        from_peer: Some(metapb::Peer { id: 1, store_id: 1 }),
        to_peer: Some(metapb::Peer { id: 2, store_id: 2 }),
        message: Some(Message {
            msg_type: MessageType::MsgSnapshot as i32,
            to: 2,
            from: 1,
            snapshot: Some(snapshot),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Sends `msg` from `from` to `to` through encoded chunks (as on the wire).
fn transfer(from: &SnapManager, to: &SnapManager, msg: RaftMessage) -> Result<RaftMessage> {
    let wire = |chunk: SnapshotChunk| {
        SnapshotChunk::decode(chunk.encode_to_vec().as_slice()).expect("decode a chunk")
    };
    let mut chunks = ChunkEncoder::new(from, msg)?;
    let first = chunks.next().expect("a first chunk")?;
    let mut receiver = SnapshotReceiver::new(to, wire(first))?;
    for chunk in chunks {
        receiver.feed(wire(chunk?))?;
    }
    receiver.finish()
}

#[test]
fn test_snapshot_file_names() {
    let store = new_test_store();
    let key = SnapKey {
        region_id: 3,
        term: 7,
        index: 42,
    };
    let name = |p: PathBuf| p.file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(
        name(store.mgr.cf_path(SnapKind::Generated, &key, CF_WRITE)),
        "gen_3_7_42_write.sst"
    );
    assert_eq!(
        name(store.mgr.cf_path(SnapKind::Received, &key, CF_DEFAULT)),
        "rcv_3_7_42_default.sst"
    );
    assert_eq!(
        name(store.mgr.meta_path(SnapKind::Received, &key)),
        "rcv_3_7_42.meta"
    );
    for kind in [SnapKind::Generated, SnapKind::Received] {
        let meta = name(store.mgr.meta_path(kind, &key));
        assert_eq!(SnapKey::parse_meta_name(&meta), Some((kind, key)));
    }
    for bad in [
        "gen_3_7_42_write.sst",
        "gen_3_7.meta",
        "xyz_3_7_42.meta",
        "gen_3_7_42_1.meta",
        "gen_a_7_42.meta",
        "rcv_3_7_42.meta.0.tmp",
    ] {
        assert_eq!(SnapKey::parse_meta_name(bad), None, "{bad}");
    }
    let tmp = name(
        store
            .mgr
            .tmp_path(&store.mgr.meta_path(SnapKind::Generated, &key)),
    );
    assert!(
        tmp.starts_with("gen_3_7_42.meta.") && tmp.ends_with(".tmp"),
        "{tmp}"
    );
}

#[test]
fn test_generate_reads_index_term_region_from_one_snapshot() {
    let store = new_test_store();
    let region = new_test_region(1, b"", b"");
    // Nothing applied since the compaction: the term is the truncated term.
    put_region(&store.engine, &region, 10, 0, (10, 6));
    put_data(&store.engine, CF_DEFAULT, b"k", b"v");
    let snap = store.engine.snapshot();
    // Written after the snapshot: invisible to it.
    put_region(&store.engine, &region, 12, 7, (10, 6));
    put_data(&store.engine, CF_LOCK, b"k", b"lock");
    let snapshot = generate_snapshot(&store.mgr, &snap, 1).unwrap();
    let meta = snapshot.metadata.clone().unwrap();
    assert_eq!((meta.index, meta.term), (10, 6));
    assert_eq!(meta.conf_state.unwrap().nodes, vec![1, 2]);
    let (key, data) = SnapKey::from_snapshot(&snapshot).unwrap();
    assert_eq!(data.region.as_ref(), Some(&region));
    let sizes: Vec<_> = data
        .meta
        .as_ref()
        .unwrap()
        .cf_files
        .iter()
        .map(|f| (f.cf.as_str(), f.size > 0))
        .collect();
    assert_eq!(
        sizes,
        vec![(CF_DEFAULT, true), (CF_LOCK, false), (CF_WRITE, false)]
    );
    assert!(
        !store
            .mgr
            .cf_path(SnapKind::Generated, &key, CF_LOCK)
            .exists()
    );
    store.mgr.verify(SnapKind::Generated, &key, &data).unwrap();
    assert_eq!(
        store.mgr.load_meta(SnapKind::Generated, &key).unwrap(),
        data
    );

    // Applied past the compaction: the term comes from the log entry.
    let snapshot = generate_snapshot(&store.mgr, &store.engine.snapshot(), 1).unwrap();
    let meta = snapshot.metadata.unwrap();
    assert_eq!((meta.index, meta.term), (12, 7));
    assert_eq!(
        store.mgr.list().unwrap(),
        vec![
            (
                SnapKind::Generated,
                SnapKey {
                    region_id: 1,
                    term: 6,
                    index: 10
                }
            ),
            (
                SnapKind::Generated,
                SnapKey {
                    region_id: 1,
                    term: 7,
                    index: 12
                }
            ),
        ]
    );
}

#[test]
fn test_generate_refuses_a_region_not_normal() {
    let store = new_test_store();
    let region = new_test_region(1, b"", b"");
    put_region(&store.engine, &region, 10, 0, (10, 6));
    store
        .engine
        .put_msg_cf(
            CF_DEFAULT,
            &keys::region_state_key(1),
            &RegionLocalState {
                state: PeerState::Applying as i32,
                region: Some(region),
            },
        )
        .unwrap();
    assert!(generate_snapshot(&store.mgr, &store.engine.snapshot(), 1).is_err());
    assert!(matches!(
        generate_snapshot(&store.mgr, &store.engine.snapshot(), 9),
        Err(Error::RegionNotFound(9))
    ));
}

#[test]
fn test_verify_detects_corruption() {
    let store = new_test_store();
    put_region(&store.engine, &new_test_region(1, b"", b""), 10, 0, (10, 6));
    for i in 0..100u32 {
        put_data(&store.engine, CF_WRITE, &i.to_be_bytes(), b"value");
    }
    let snapshot = generate_snapshot(&store.mgr, &store.engine.snapshot(), 1).unwrap();
    let (key, data) = SnapKey::from_snapshot(&snapshot).unwrap();
    store.mgr.verify(SnapKind::Generated, &key, &data).unwrap();
    let path = store.mgr.cf_path(SnapKind::Generated, &key, CF_WRITE);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();
    assert!(matches!(
        store.mgr.verify(SnapKind::Generated, &key, &data),
        Err(Error::InvalidSnapshot(_))
    ));
    bytes.pop();
    std::fs::write(&path, &bytes).unwrap();
    assert!(store.mgr.verify(SnapKind::Generated, &key, &data).is_err());
    std::fs::remove_file(&path).unwrap();
    assert!(store.mgr.verify(SnapKind::Generated, &key, &data).is_err());
}

#[test]
fn test_chunk_round_trip() {
    let (a, b) = (new_test_store(), new_test_store());
    put_region(&a.engine, &new_test_region(1, b"", b""), 10, 0, (10, 6));
    // About 3 MiB that does not compress: several chunks, split across files.
    for i in 0..1500u32 {
        put_data(
            &a.engine,
            CF_DEFAULT,
            &i.to_be_bytes(),
            &noise(i.into(), 1024),
        );
        put_data(
            &a.engine,
            CF_WRITE,
            &i.to_be_bytes(),
            &noise((i + 7).into(), 1024),
        );
    }
    put_data(&a.engine, CF_LOCK, b"lock", b"l");
    let snapshot = generate_snapshot(&a.mgr, &a.engine.snapshot(), 1).unwrap();
    let (key, data) = SnapKey::from_snapshot(&snapshot).unwrap();
    assert!(data.file_size > 2 * SNAPSHOT_CHUNK_SIZE as u64);
    let msg = snapshot_message(1, snapshot);

    let chunks: Vec<_> = ChunkEncoder::new(&a.mgr, msg.clone())
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    assert_eq!(chunks[0].message.as_ref(), Some(&msg));
    assert!(
        chunks[1..].iter().all(|c| c.message.is_none()
            && !c.data.is_empty()
            && c.data.len() <= SNAPSHOT_CHUNK_SIZE)
    );
    let total: usize = chunks[1..].iter().map(|c| c.data.len()).sum();
    assert_eq!(total as u64, data.file_size);
    assert_eq!(
        chunks.len() - 1,
        (total).div_ceil(SNAPSHOT_CHUNK_SIZE),
        "chunks are full but the last"
    );

    let delivered = transfer(&a.mgr, &b.mgr, msg.clone()).unwrap();
    assert_eq!(delivered, msg);
    assert!(b.mgr.exists(SnapKind::Received, &key));
    assert_eq!(b.mgr.load_meta(SnapKind::Received, &key).unwrap(), data);
    b.mgr.verify(SnapKind::Received, &key, &data).unwrap();
    for cf in DATA_CFS {
        assert_eq!(
            std::fs::read(a.mgr.cf_path(SnapKind::Generated, &key, cf)).unwrap(),
            std::fs::read(b.mgr.cf_path(SnapKind::Received, &key, cf)).unwrap(),
        );
    }
    // Receiving a snapshot that is already complete keeps it and still
    // hands the message back.
    assert_eq!(transfer(&a.mgr, &b.mgr, msg.clone()).unwrap(), msg);
    b.mgr.verify(SnapKind::Received, &key, &data).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(b.mgr.dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn test_corrupted_chunk_is_rejected() {
    let (a, b) = (new_test_store(), new_test_store());
    put_region(&a.engine, &new_test_region(1, b"", b""), 10, 0, (10, 6));
    for i in 0..1500u32 {
        put_data(
            &a.engine,
            CF_DEFAULT,
            &i.to_be_bytes(),
            &noise(i.into(), 1024),
        );
    }
    let snapshot = generate_snapshot(&a.mgr, &a.engine.snapshot(), 1).unwrap();
    let (key, _) = SnapKey::from_snapshot(&snapshot).unwrap();
    let msg = snapshot_message(1, snapshot);
    let chunks: Vec<_> = ChunkEncoder::new(&a.mgr, msg)
        .unwrap()
        .map(|c| c.unwrap())
        .collect();
    assert!(chunks.len() > 2);

    let no_files_left = |mgr: &SnapManager| {
        let names: Vec<_> = std::fs::read_dir(mgr.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert!(names.is_empty(), "{names:?}");
    };
    let receive = |chunks: Vec<SnapshotChunk>| -> Result<RaftMessage> {
        let mut it = chunks.into_iter();
        let mut receiver = SnapshotReceiver::new(&b.mgr, it.next().unwrap())?;
        for chunk in it {
            receiver.feed(chunk)?;
        }
        receiver.finish()
    };

    // A flipped byte: the file's checksum does not match.
    let mut corrupt = chunks.clone();
    corrupt[1].data[100] ^= 1;
    assert!(matches!(receive(corrupt), Err(Error::InvalidSnapshot(_))));
    assert!(!b.mgr.exists(SnapKind::Received, &key));
    no_files_left(&b.mgr);
    // A lost chunk: the stream ends short.
    let mut short = chunks.clone();
    short.pop();
    assert!(receive(short).is_err());
    no_files_left(&b.mgr);
    // A duplicated chunk: more bytes than announced.
    let mut long = chunks.clone();
    long.push(chunks[1].clone());
    assert!(receive(long).is_err());
    no_files_left(&b.mgr);
    // No message first.
    assert!(receive(chunks[1..].to_vec()).is_err());
    no_files_left(&b.mgr);
    // The intact stream still works.
    receive(chunks).unwrap();
    assert!(b.mgr.exists(SnapKind::Received, &key));
}

#[test]
fn test_generate_and_apply_round_trip() {
    let (a, b) = (new_test_store(), new_test_store());
    let left = new_test_region(1, b"", b"m");
    let right = new_test_region(2, b"m", b"");
    put_region(&a.engine, &left, 20, 8, (15, 7));
    put_region(&a.engine, &right, 9, 3, (9, 3));
    for i in 0..50u32 {
        let key = format!("a{i:02}");
        for cf in DATA_CFS {
            put_data(&a.engine, cf, key.as_bytes(), format!("{cf}{i}").as_bytes());
        }
        put_data(
            &a.engine,
            CF_DEFAULT,
            format!("x{i:02}").as_bytes(),
            b"a's right",
        );
    }
    // B has stale data of the left region, and data of the right one.
    put_data(&b.engine, CF_DEFAULT, b"a00", b"stale");
    put_data(&b.engine, CF_LOCK, b"b-gone", b"stale");
    put_data(&b.engine, CF_DEFAULT, b"x00", b"b's right");
    put_data(&b.engine, CF_WRITE, b"y", b"b's right");

    let snapshot = generate_snapshot(&a.mgr, &a.engine.snapshot(), 1).unwrap();
    let (key, _) = SnapKey::from_snapshot(&snapshot).unwrap();
    assert_eq!((key.index, key.term), (20, 8));
    transfer(&a.mgr, &b.mgr, snapshot_message(1, snapshot)).unwrap();
    apply_snapshot(&b.engine, &b.mgr, &key, &left).unwrap();

    for cf in DATA_CFS {
        let want = scan_data(&a.engine, cf, b"", b"m");
        assert_eq!(want.len(), 50);
        assert_eq!(scan_data(&b.engine, cf, b"", b"m"), want, "cf {cf}");
    }
    assert_eq!(
        scan_data(&b.engine, CF_DEFAULT, b"m", b""),
        vec![(keys::data_key(b"x00"), b"b's right".to_vec())]
    );
    assert_eq!(
        scan_data(&b.engine, CF_WRITE, b"m", b""),
        vec![(keys::data_key(b"y"), b"b's right".to_vec())]
    );
    let state = b
        .engine
        .get_msg_cf::<RegionLocalState>(CF_DEFAULT, &keys::region_state_key(1))
        .unwrap()
        .unwrap();
    assert_eq!(state.state(), PeerState::Normal);
    assert_eq!(state.region, Some(left));
    // The received files are gone once applied.
    assert!(b.mgr.list().unwrap().is_empty());
    assert!(!b.mgr.cf_path(SnapKind::Received, &key, CF_DEFAULT).exists());
}

#[test]
fn test_open_removes_tmp_files_and_delete_respects_use() {
    let store = new_test_store();
    put_region(&store.engine, &new_test_region(1, b"", b""), 10, 0, (10, 6));
    put_data(&store.engine, CF_DEFAULT, b"k", b"v");
    let snapshot = generate_snapshot(&store.mgr, &store.engine.snapshot(), 1).unwrap();
    let (key, _) = SnapKey::from_snapshot(&snapshot).unwrap();
    let tmp = store
        .mgr
        .tmp_path(&store.mgr.cf_path(SnapKind::Received, &key, CF_DEFAULT));
    std::fs::write(&tmp, b"partial").unwrap();

    let mgr = SnapManager::open(store.mgr.dir()).unwrap();
    assert!(!tmp.exists());
    assert_eq!(mgr.list().unwrap(), vec![(SnapKind::Generated, key)]);

    let guard = mgr.register(SnapKind::Generated, key);
    assert!(mgr.is_in_use(SnapKind::Generated, &key));
    assert!(!mgr.delete_idle(SnapKind::Generated, &key).unwrap());
    assert!(mgr.exists(SnapKind::Generated, &key));
    drop(guard);
    assert!(!mgr.is_in_use(SnapKind::Generated, &key));
    assert!(mgr.delete_idle(SnapKind::Generated, &key).unwrap());
    assert!(!mgr.exists(SnapKind::Generated, &key));
    assert!(!mgr.cf_path(SnapKind::Generated, &key, CF_DEFAULT).exists());
    assert!(mgr.list().unwrap().is_empty());
}

/// The states `PeerStorage::prepare_persist` leaves for a snapshot of
/// `region` at (index, term): apply state at the snapshot, region
/// `Applying`. Returns them to compare with later.
fn put_applying(
    engine: &Engine,
    region: &metapb::Region,
    index: u64,
    term: u64,
) -> (RegionLocalState, RaftApplyState) {
    let region_state = RegionLocalState {
        state: PeerState::Applying as i32,
        region: Some(region.clone()),
    };
    let apply_state = RaftApplyState {
        applied_index: index,
        truncated_state: Some(RaftTruncatedState { index, term }),
        ..Default::default()
    };
    let mut wb = engine.write_batch();
    wb.put_msg_cf(
        CF_DEFAULT,
        &keys::region_state_key(region.id),
        &region_state,
    )
    .unwrap();
    wb.put_msg_cf(CF_DEFAULT, &keys::apply_state_key(region.id), &apply_state)
        .unwrap();
    engine.write(wb, true).unwrap();
    (region_state, apply_state)
}

fn states_of(engine: &Engine, region_id: u64) -> (RegionLocalState, RaftApplyState) {
    (
        engine
            .get_msg_cf(CF_DEFAULT, &keys::region_state_key(region_id))
            .unwrap()
            .expect("region state"),
        engine
            .get_msg_cf(CF_DEFAULT, &keys::apply_state_key(region_id))
            .unwrap()
            .expect("apply state"),
    )
}

/// A stored key and its value.
type KeyValue = (Vec<u8>, Vec<u8>);

/// Writes a received snapshot `key` of `region` by hand: one `cf` file
/// holding `entries` (stored keys, in order), described with correct sums,
/// so only what the file holds can be wrong with it.
fn craft_received(
    mgr: &SnapManager,
    key: &SnapKey,
    region: &metapb::Region,
    cf: &str,
    entries: &[KeyValue],
) {
    let path = mgr.cf_path(SnapKind::Received, key, cf);
    write_sst(&path, |w| {
        for (k, v) in entries {
            w.put(k, v)?;
        }
        Ok(())
    })
    .unwrap();
    let sums = file_sums(&path, cf).unwrap();
    let cf_files = DATA_CFS
        .iter()
        .map(|&c| {
            if c == cf {
                SnapshotCfFile {
                    cf: c.to_owned(),
                    size: sums.size,
                    checksum: sums.checksum,
                    cf_checksum: sums.cf_checksum,
                }
            } else {
                SnapshotCfFile {
                    cf: c.to_owned(),
                    ..Default::default()
                }
            }
        })
        .collect();
    let data = RaftSnapshotData {
        region: Some(region.clone()),
        file_size: sums.size,
        data: Vec::new(),
        meta: Some(SnapshotMeta { cf_files }),
        ..Default::default()
    };
    mgr.save_meta(SnapKind::Received, key, &data, true).unwrap();
}

/// A snapshot file holding a local key (here the region's apply state, set
/// to a bogus value) or a data key outside the region is refused before
/// anything is written: the apply and region state stay as persisted with
/// the `Applying` mark, the region's old data stays, nothing of the file is
/// ingested, and the files stay for a later attempt.
#[test]
fn test_a_file_with_keys_outside_the_region_data_is_refused() {
    let region = new_test_region(1, b"b", b"m");
    let key = SnapKey {
        region_id: 1,
        term: 6,
        index: 20,
    };
    let bogus_apply_state = RaftApplyState {
        applied_index: 999,
        truncated_state: Some(RaftTruncatedState {
            index: 999,
            term: 99,
        }),
        ..Default::default()
    };
    let local = (
        keys::apply_state_key(1).to_vec(),
        bogus_apply_state.encode_to_vec(),
    );
    let inside = (keys::data_key(b"c"), b"from the snapshot".to_vec());
    // (case, the file's entries, what the refusal says)
    let cases: Vec<(&str, Vec<KeyValue>, &str)> = vec![
        (
            "local key",
            vec![local.clone(), inside.clone()],
            "local key",
        ),
        (
            "region state key",
            vec![
                (keys::region_state_key(1).to_vec(), b"bogus".to_vec()),
                inside.clone(),
            ],
            "local key",
        ),
        (
            "key past the end",
            vec![
                inside.clone(),
                (keys::data_key(b"x"), b"other region".to_vec()),
            ],
            "outside region 1",
        ),
        (
            "key before the start",
            vec![
                (keys::data_key(b"a"), b"other region".to_vec()),
                inside.clone(),
            ],
            "outside region 1",
        ),
    ];
    for (case, entries, why) in cases {
        let store = new_test_store();
        let persisted = put_applying(&store.engine, &region, key.index, key.term);
        put_data(&store.engine, CF_DEFAULT, b"d", b"old data of the region");
        craft_received(&store.mgr, &key, &region, CF_DEFAULT, &entries);

        let err = apply_snapshot(&store.engine, &store.mgr, &key, &region).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidSnapshot(m) if m.contains(why)),
            "{case}: {err}"
        );
        assert_eq!(states_of(&store.engine, 1), persisted, "{case}");
        assert_eq!(
            scan_data(&store.engine, CF_DEFAULT, b"", b""),
            vec![(keys::data_key(b"d"), b"old data of the region".to_vec())],
            "{case}: nothing cleared, nothing ingested"
        );
        assert!(store.mgr.exists(SnapKind::Received, &key), "{case}");
        let leftovers: Vec<_> = std::fs::read_dir(store.mgr.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{case}: {leftovers:?}");
    }

    // The same file with only the region's data goes in.
    let store = new_test_store();
    put_applying(&store.engine, &region, key.index, key.term);
    craft_received(
        &store.mgr,
        &key,
        &region,
        CF_DEFAULT,
        std::slice::from_ref(&inside),
    );
    apply_snapshot(&store.engine, &store.mgr, &key, &region).unwrap();
    assert_eq!(scan_data(&store.engine, CF_DEFAULT, b"", b""), vec![inside]);
    assert_eq!(
        states_of(&store.engine, 1).0.state(),
        PeerState::Normal,
        "applied"
    );
}

/// A snapshot whose `default` entry describes the file built for `write`
/// (moved there with its size and CRC32, which still match) is refused:
/// the CF checksum says which CF the file was built for.
#[test]
fn test_a_file_built_for_another_cf_is_refused() {
    let (a, b) = (new_test_store(), new_test_store());
    let region = new_test_region(1, b"", b"");
    put_region(&a.engine, &region, 20, 6, (20, 6));
    for i in 0..20u32 {
        put_data(&a.engine, CF_WRITE, &i.to_be_bytes(), b"a write record");
    }
    let snapshot = generate_snapshot(&a.mgr, &a.engine.snapshot(), 1).unwrap();
    let (key, _) = SnapKey::from_snapshot(&snapshot).unwrap();
    transfer(&a.mgr, &b.mgr, snapshot_message(1, snapshot)).unwrap();
    let persisted = put_applying(&b.engine, &region, key.index, key.term);

    // Offer the write file as the default one.
    let mut data = b.mgr.load_meta(SnapKind::Received, &key).unwrap();
    let files = &mut data.meta.as_mut().unwrap().cf_files;
    let write = files.iter().find(|f| f.cf == CF_WRITE).unwrap().clone();
    for file in files.iter_mut() {
        *file = if file.cf == CF_DEFAULT {
            SnapshotCfFile {
                cf: CF_DEFAULT.to_owned(),
                ..write.clone()
            }
        } else {
            SnapshotCfFile {
                cf: file.cf.clone(),
                ..Default::default()
            }
        };
    }
    std::fs::rename(
        b.mgr.cf_path(SnapKind::Received, &key, CF_WRITE),
        b.mgr.cf_path(SnapKind::Received, &key, CF_DEFAULT),
    )
    .unwrap();
    b.mgr
        .save_meta(SnapKind::Received, &key, &data, true)
        .unwrap();

    let err = apply_snapshot(&b.engine, &b.mgr, &key, &region).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidSnapshot(m) if m.contains("not built for cf default")),
        "{err}"
    );
    assert!(scan_data(&b.engine, CF_DEFAULT, b"", b"").is_empty());
    assert!(scan_data(&b.engine, CF_WRITE, b"", b"").is_empty());
    assert_eq!(states_of(&b.engine, 1), persisted);
}
