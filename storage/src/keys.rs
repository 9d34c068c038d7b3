//! The byte layout of every key the store writes (DESIGN §3).
//!
//! Two disjoint key spaces share the engine:
//!
//! ```text
//!  0x01 ...             local keys: store and region metadata, raft state, raft log
//!  'z' (0x7A) user_key  data keys: user keys in the default/lock/write CFs
//! ```
//!
//! Local keys (first byte [`LOCAL_PREFIX`]):
//!
//! ```text
//!  0x01 0x01                                   PREPARE_BOOTSTRAP_KEY   default CF
//!  0x01 0x02                                   STORE_IDENT_KEY         default CF
//!  0x01 0x02 region_id 0x01 log_index          raft log entry          raft CF
//!  0x01 0x02 region_id 0x02                    RaftLocalState          raft CF
//!  0x01 0x02 region_id 0x03                    RaftApplyState          default CF
//!  0x01 0x03 region_id 0x01                    RegionLocalState        default CF
//!  0x01 0x03 region_id 0x02                    previous metapb.Region  default CF
//! ```
//!
//! The last one is the redo record of a snapshot apply
//! ([`snapshot_previous_region_key`]): while a region is `Applying` a
//! snapshot, the region it had before (when the peer was initialized and
//! its key range differs from the snapshot's) is kept there, written in the
//! same synced batch as the `Applying` mark and deleted in the batch that
//! marks the region `Normal` again. A store that restarts in between clears
//! that range as well as the new one before it ingests the snapshot's files
//! again. It is absent at all other times.
//!
//! `region_id` and `log_index` are u64 big-endian, so byte order is numeric
//! order: a region's log keys sort by index, and regions sort by id.
//!
//! Invariants:
//! - Every local key starts with `0x01`; every data key starts with
//!   [`DATA_PREFIX`] (`b'z'`, as in TiKV). `0x01 < b'z'`, so all local keys sort
//!   before all data keys and no user key, whatever its bytes, can be encoded to
//!   a local key. The raw user key space `[b"", ∞)` maps onto
//!   `[DATA_MIN_KEY, DATA_MAX_KEY)`.
//! - Encoding preserves order: `a < b` ⇔ `data_key(a) < data_key(b)`.
//! - [`STORE_IDENT_KEY`] is a proper prefix of every region raft key (the layout
//!   is TinyKV's). It sorts before all of them and is never inside a single
//!   region's raft range, but a scan over *all* region raft keys must start
//!   after it; [`REGION_RAFT_MIN_KEY`] is chosen that way.

use crate::errors::{Error, Result};

/// First byte of every local (non-user) key.
pub const LOCAL_PREFIX: u8 = 0x01;
/// Lower bound of the local key space (inclusive).
pub const LOCAL_MIN_KEY: &[u8] = &[LOCAL_PREFIX];
/// Upper bound of the local key space (exclusive).
pub const LOCAL_MAX_KEY: &[u8] = &[LOCAL_PREFIX + 1];

/// Second byte of a region's raft keys: raft log, raft state, apply state.
pub const REGION_RAFT_PREFIX: u8 = 0x02;
/// Second byte of a region's meta keys: region state.
pub const REGION_META_PREFIX: u8 = 0x03;

/// Suffix (after the region id) of raft log entries.
pub const RAFT_LOG_SUFFIX: u8 = 0x01;
/// Suffix of `RaftLocalState`.
pub const RAFT_STATE_SUFFIX: u8 = 0x02;
/// Suffix of `RaftApplyState`.
pub const APPLY_STATE_SUFFIX: u8 = 0x03;
/// Suffix (after the region id, under the meta prefix) of `RegionLocalState`.
pub const REGION_STATE_SUFFIX: u8 = 0x01;
/// Suffix (under the meta prefix) of the region a snapshot being applied
/// replaces (see the module doc).
pub const SNAPSHOT_PREVIOUS_REGION_SUFFIX: u8 = 0x02;
/// Suffix (under the meta prefix) of a client session's record, followed by
/// the client id: one key per session (a `ClientSessionState`).
pub const CLIENT_SESSION_SUFFIX: u8 = 0x03;

/// Key of the region a store wrote before asking the scheduler to bootstrap
/// the cluster.
pub const PREPARE_BOOTSTRAP_KEY: &[u8] = &[LOCAL_PREFIX, 0x01];
/// Key of the store's `StoreIdent`.
pub const STORE_IDENT_KEY: &[u8] = &[LOCAL_PREFIX, 0x02];

/// Lower bound (inclusive) of all region raft keys of all regions. It is one
/// byte past [`STORE_IDENT_KEY`], which shares the `0x01 0x02` prefix.
pub const REGION_RAFT_MIN_KEY: &[u8] = &[LOCAL_PREFIX, REGION_RAFT_PREFIX, 0x00];
/// Upper bound (exclusive) of all region raft keys.
pub const REGION_RAFT_MAX_KEY: &[u8] = &[LOCAL_PREFIX, REGION_RAFT_PREFIX + 1];
/// Lower bound (inclusive) of all region meta keys, e.g. to load every
/// region's state at startup.
pub const REGION_META_MIN_KEY: &[u8] = &[LOCAL_PREFIX, REGION_META_PREFIX];
/// Upper bound (exclusive) of all region meta keys.
pub const REGION_META_MAX_KEY: &[u8] = &[LOCAL_PREFIX, REGION_META_PREFIX + 1];

/// The first index of a bootstrapped region's raft log (DESIGN §3). A peer
/// created by a message starts at index 0 instead, which tells the two apart.
pub const RAFT_INIT_LOG_INDEX: u64 = 5;
/// The term of the entry at [`RAFT_INIT_LOG_INDEX`].
pub const RAFT_INIT_LOG_TERM: u64 = 5;

/// First byte of every data key.
pub const DATA_PREFIX: u8 = b'z';
/// The data prefix as a key; also the smallest data key (the empty user key).
pub const DATA_PREFIX_KEY: &[u8] = &[DATA_PREFIX];
/// Lower bound (inclusive) of the data key space.
pub const DATA_MIN_KEY: &[u8] = DATA_PREFIX_KEY;
/// Upper bound (exclusive) of the data key space: no data key reaches it.
pub const DATA_MAX_KEY: &[u8] = &[DATA_PREFIX + 1];

/// Length of a region raft or meta prefix: local prefix, kind, region id.
const REGION_PREFIX_LEN: usize = 2 + 8;
/// Length of a key made of a region prefix and a one-byte suffix.
const REGION_KEY_LEN: usize = REGION_PREFIX_LEN + 1;
/// Length of a raft log key: region key plus the u64 index.
const RAFT_LOG_KEY_LEN: usize = REGION_KEY_LEN + 8;
/// Length of a client session key: region key plus the u64 client id.
const CLIENT_SESSION_KEY_LEN: usize = REGION_KEY_LEN + 8;

fn region_prefix(kind: u8, region_id: u64) -> [u8; REGION_PREFIX_LEN] {
    let mut key = [0; REGION_PREFIX_LEN];
    key[0] = LOCAL_PREFIX;
    key[1] = kind;
    key[2..].copy_from_slice(&region_id.to_be_bytes());
    key
}

fn region_key(kind: u8, region_id: u64, suffix: u8) -> [u8; REGION_KEY_LEN] {
    let mut key = [0; REGION_KEY_LEN];
    key[..REGION_PREFIX_LEN].copy_from_slice(&region_prefix(kind, region_id));
    key[REGION_PREFIX_LEN] = suffix;
    key
}

/// The smallest key above every key that starts with `prefix`: the prefix
/// with trailing 0xff bytes dropped and its last byte incremented. Empty if
/// `prefix` is empty or all 0xff (no such key: the range is unbounded).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            break;
        }
    }
    end
}

/// `0x01 0x02 region_id`: the prefix of all of a region's raft keys.
pub fn region_raft_prefix(region_id: u64) -> [u8; REGION_PREFIX_LEN] {
    region_prefix(REGION_RAFT_PREFIX, region_id)
}

/// `[start, end)` covering all raft keys of `region_id` (log, raft state,
/// apply state) and nothing else.
pub fn region_raft_range(region_id: u64) -> (Vec<u8>, Vec<u8>) {
    let start = region_raft_prefix(region_id);
    (start.to_vec(), prefix_end(&start))
}

/// `0x01 0x03 region_id`: the prefix of all of a region's meta keys.
pub fn region_meta_prefix(region_id: u64) -> [u8; REGION_PREFIX_LEN] {
    region_prefix(REGION_META_PREFIX, region_id)
}

/// `[start, end)` covering all meta keys of `region_id` and nothing else.
pub fn region_meta_range(region_id: u64) -> (Vec<u8>, Vec<u8>) {
    let start = region_meta_prefix(region_id);
    (start.to_vec(), prefix_end(&start))
}

/// The key of log entry `index` of `region_id`, in the raft CF.
pub fn raft_log_key(region_id: u64, index: u64) -> [u8; RAFT_LOG_KEY_LEN] {
    let mut key = [0; RAFT_LOG_KEY_LEN];
    key[..REGION_KEY_LEN].copy_from_slice(&region_key(
        REGION_RAFT_PREFIX,
        region_id,
        RAFT_LOG_SUFFIX,
    ));
    key[REGION_KEY_LEN..].copy_from_slice(&index.to_be_bytes());
    key
}

/// `[start, end)` covering exactly the raft log entries of `region_id`:
/// `raft_log_key(region_id, i)` is inside for every `i`.
pub fn raft_log_range(region_id: u64) -> ([u8; REGION_KEY_LEN], [u8; REGION_KEY_LEN]) {
    (
        region_key(REGION_RAFT_PREFIX, region_id, RAFT_LOG_SUFFIX),
        region_key(REGION_RAFT_PREFIX, region_id, RAFT_LOG_SUFFIX + 1),
    )
}

/// The key of `region_id`'s `RaftLocalState`, in the raft CF.
pub fn raft_state_key(region_id: u64) -> [u8; REGION_KEY_LEN] {
    region_key(REGION_RAFT_PREFIX, region_id, RAFT_STATE_SUFFIX)
}

/// The key of `region_id`'s `RaftApplyState`, in the default CF (written in
/// the same batch as the applied data).
pub fn apply_state_key(region_id: u64) -> [u8; REGION_KEY_LEN] {
    region_key(REGION_RAFT_PREFIX, region_id, APPLY_STATE_SUFFIX)
}

/// The key of `region_id`'s `RegionLocalState`, in the default CF.
pub fn region_state_key(region_id: u64) -> [u8; REGION_KEY_LEN] {
    region_key(REGION_META_PREFIX, region_id, REGION_STATE_SUFFIX)
}

/// The key of the region `region_id` had before the snapshot it is applying
/// (a `metapb::Region`, default CF): the redo record of the module doc.
pub fn snapshot_previous_region_key(region_id: u64) -> [u8; REGION_KEY_LEN] {
    region_key(
        REGION_META_PREFIX,
        region_id,
        SNAPSHOT_PREVIOUS_REGION_SUFFIX,
    )
}

/// The key of client `client_id`'s session record in `region_id`, in the
/// default CF, under the region's meta prefix.
pub fn client_session_key(region_id: u64, client_id: u64) -> [u8; CLIENT_SESSION_KEY_LEN] {
    let mut key = [0; CLIENT_SESSION_KEY_LEN];
    key[..REGION_KEY_LEN].copy_from_slice(&region_key(
        REGION_META_PREFIX,
        region_id,
        CLIENT_SESSION_SUFFIX,
    ));
    key[REGION_KEY_LEN..].copy_from_slice(&client_id.to_be_bytes());
    key
}

/// `[start, end)` covering exactly the client session records of
/// `region_id`.
pub fn client_session_range(region_id: u64) -> ([u8; REGION_KEY_LEN], [u8; REGION_KEY_LEN]) {
    (
        region_key(REGION_META_PREFIX, region_id, CLIENT_SESSION_SUFFIX),
        region_key(REGION_META_PREFIX, region_id, CLIENT_SESSION_SUFFIX + 1),
    )
}

/// Decodes a raft log key into `(region_id, index)`.
///
/// Fails with [`Error::MalformedKey`] unless `key` has exactly the shape
/// [`raft_log_key`] produces.
pub fn decode_raft_log_key(key: &[u8]) -> Result<(u64, u64)> {
    let malformed = || Error::MalformedKey {
        kind: "raft log",
        key: key.to_vec(),
    };
    if key.len() != RAFT_LOG_KEY_LEN
        || key[0] != LOCAL_PREFIX
        || key[1] != REGION_RAFT_PREFIX
        || key[REGION_PREFIX_LEN] != RAFT_LOG_SUFFIX
    {
        return Err(malformed());
    }
    let region_id = u64::from_be_bytes(
        key[2..REGION_PREFIX_LEN]
            .try_into()
            .map_err(|_| malformed())?,
    );
    let index = u64::from_be_bytes(key[REGION_KEY_LEN..].try_into().map_err(|_| malformed())?);
    Ok((region_id, index))
}

/// The log index in a raft log key made by [`raft_log_key`].
pub fn raft_log_index(key: &[u8]) -> Result<u64> {
    decode_raft_log_key(key).map(|(_, index)| index)
}

/// Decodes a region meta key into `(region_id, suffix)`, e.g. while loading
/// every region's state at startup. Keys that go on after the suffix (a
/// client session's) decode too: a scan of the meta keys picks the suffixes
/// it wants and skips the others.
pub fn decode_region_meta_key(key: &[u8]) -> Result<(u64, u8)> {
    let malformed = || Error::MalformedKey {
        kind: "region meta",
        key: key.to_vec(),
    };
    if key.len() < REGION_KEY_LEN || key[0] != LOCAL_PREFIX || key[1] != REGION_META_PREFIX {
        return Err(malformed());
    }
    let region_id = u64::from_be_bytes(
        key[2..REGION_PREFIX_LEN]
            .try_into()
            .map_err(|_| malformed())?,
    );
    Ok((region_id, key[REGION_PREFIX_LEN]))
}

/// Encodes a user key as the key stored in a data CF.
pub fn data_key(key: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(key.len() + 1);
    v.push(DATA_PREFIX);
    v.extend_from_slice(key);
    v
}

/// The user key inside a data key. Fails with [`Error::MalformedKey`] if `key`
/// does not carry the data prefix.
pub fn origin_key(key: &[u8]) -> Result<&[u8]> {
    match key.split_first() {
        Some((&DATA_PREFIX, user_key)) => Ok(user_key),
        _ => Err(Error::MalformedKey {
            kind: "data",
            key: key.to_vec(),
        }),
    }
}

/// The stored form of a region's (exclusive) end key. An empty end key means
/// "no end" and maps to [`DATA_MAX_KEY`], above every data key.
pub fn data_end_key(region_end_key: &[u8]) -> Vec<u8> {
    if region_end_key.is_empty() {
        DATA_MAX_KEY.to_vec()
    } else {
        data_key(region_end_key)
    }
}

/// Whether `key` is a data key (rather than a local key).
pub fn is_data_key(key: &[u8]) -> bool {
    key.first() == Some(&DATA_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDS: [u64; 6] = [0, 1, 2, 255, 256, u64::MAX];

    fn local_keys(region_id: u64) -> Vec<Vec<u8>> {
        vec![
            PREPARE_BOOTSTRAP_KEY.to_vec(),
            STORE_IDENT_KEY.to_vec(),
            raft_log_key(region_id, 0).to_vec(),
            raft_log_key(region_id, u64::MAX).to_vec(),
            raft_state_key(region_id).to_vec(),
            apply_state_key(region_id).to_vec(),
            region_state_key(region_id).to_vec(),
            snapshot_previous_region_key(region_id).to_vec(),
            region_raft_prefix(region_id).to_vec(),
            region_meta_prefix(region_id).to_vec(),
        ]
    }

    #[test]
    fn test_layout_matches_design() {
        assert_eq!(
            raft_log_key(0x0102, 0x0a0b).to_vec(),
            [
                1, 2, 0, 0, 0, 0, 0, 0, 1, 2, 1, 0, 0, 0, 0, 0, 0, 0x0a, 0x0b
            ]
        );
        assert_eq!(
            raft_state_key(7).to_vec(),
            [1, 2, 0, 0, 0, 0, 0, 0, 0, 7, 2]
        );
        assert_eq!(
            apply_state_key(7).to_vec(),
            [1, 2, 0, 0, 0, 0, 0, 0, 0, 7, 3]
        );
        assert_eq!(
            region_state_key(7).to_vec(),
            [1, 3, 0, 0, 0, 0, 0, 0, 0, 7, 1]
        );
        assert_eq!(
            snapshot_previous_region_key(7).to_vec(),
            [1, 3, 0, 0, 0, 0, 0, 0, 0, 7, 2]
        );
        assert_eq!(PREPARE_BOOTSTRAP_KEY, [1, 1]);
        assert_eq!(STORE_IDENT_KEY, [1, 2]);
        assert_eq!(data_key(b"k"), b"zk");
    }

    #[test]
    fn test_raft_log_key_round_trip() {
        for region_id in IDS {
            for index in [0, 1, RAFT_INIT_LOG_INDEX, 1 << 32, u64::MAX] {
                let key = raft_log_key(region_id, index);
                assert_eq!(decode_raft_log_key(&key).unwrap(), (region_id, index));
                assert_eq!(raft_log_index(&key).unwrap(), index);
            }
        }
    }

    #[test]
    fn test_raft_log_keys_sort_by_index() {
        let indexes = [
            0,
            1,
            2,
            255,
            256,
            65_535,
            65_536,
            1 << 40,
            u64::MAX - 1,
            u64::MAX,
        ];
        for region_id in IDS {
            let keys: Vec<_> = indexes
                .iter()
                .map(|&i| raft_log_key(region_id, i))
                .collect();
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "region {region_id}");
        }
    }

    #[test]
    fn test_malformed_raft_log_key() {
        let good = raft_log_key(3, 9);
        let mut cases: Vec<Vec<u8>> = vec![
            vec![],
            good[..good.len() - 1].to_vec(),
            [&good[..], &[0][..]].concat(),
            raft_state_key(3).to_vec(),
            data_key(&good),
        ];
        for (pos, byte) in [
            (0, 0x02),
            (1, REGION_META_PREFIX),
            (REGION_PREFIX_LEN, RAFT_STATE_SUFFIX),
        ] {
            let mut bad = good.to_vec();
            bad[pos] = byte;
            cases.push(bad);
        }
        for key in cases {
            assert!(
                matches!(
                    raft_log_index(&key),
                    Err(Error::MalformedKey {
                        kind: "raft log",
                        ..
                    })
                ),
                "{key:?} accepted"
            );
        }
    }

    #[test]
    fn test_region_meta_key_round_trip() {
        for region_id in IDS {
            assert_eq!(
                decode_region_meta_key(&region_state_key(region_id)).unwrap(),
                (region_id, REGION_STATE_SUFFIX)
            );
        }
        assert!(decode_region_meta_key(&raft_state_key(1)).is_err());
        assert!(decode_region_meta_key(&region_meta_prefix(1)).is_err());
        assert!(decode_region_meta_key(b"").is_err());
    }

    #[test]
    fn test_client_session_keys_sit_under_their_region_meta_only() {
        for region_id in IDS {
            let key = client_session_key(region_id, 42);
            assert_eq!(
                decode_region_meta_key(&key).unwrap(),
                (region_id, CLIENT_SESSION_SUFFIX)
            );
            let (start, end) = client_session_range(region_id);
            let inside = |k: &[u8]| start.as_slice() <= k && k < end.as_slice();
            assert!(inside(&client_session_key(region_id, 0)));
            assert!(inside(&client_session_key(region_id, u64::MAX)));
            assert!(!inside(&region_state_key(region_id)));
            assert!(!inside(&snapshot_previous_region_key(region_id)));
            let (meta_start, meta_end) = region_meta_range(region_id);
            assert!(meta_start.as_slice() <= &start[..] && &end[..] <= meta_end.as_slice());
            for other in [region_id.wrapping_sub(1), region_id.wrapping_add(1)] {
                if other != region_id {
                    assert!(!inside(&client_session_key(other, 42)));
                }
            }
        }
    }

    #[test]
    fn test_region_ranges_hold_exactly_their_keys() {
        for region_id in IDS {
            let (start, end) = region_raft_range(region_id);
            let inside = |k: &[u8]| start.as_slice() <= k && k < end.as_slice();
            assert!(inside(&raft_log_key(region_id, 0)));
            assert!(inside(&raft_log_key(region_id, u64::MAX)));
            assert!(inside(&raft_state_key(region_id)));
            assert!(inside(&apply_state_key(region_id)));
            assert!(!inside(&region_state_key(region_id)));
            assert!(!inside(STORE_IDENT_KEY));
            assert!(REGION_RAFT_MIN_KEY <= &start[..] && &end[..] <= REGION_RAFT_MAX_KEY);

            let (log_start, log_end) = raft_log_range(region_id);
            let in_log = |k: &[u8]| log_start.as_slice() <= k && k < log_end.as_slice();
            assert!(in_log(&raft_log_key(region_id, 0)));
            assert!(in_log(&raft_log_key(region_id, u64::MAX)));
            assert!(!in_log(&raft_state_key(region_id)));

            let (meta_start, meta_end) = region_meta_range(region_id);
            let in_meta = |k: &[u8]| meta_start.as_slice() <= k && k < meta_end.as_slice();
            assert!(in_meta(&region_state_key(region_id)));
            assert!(in_meta(&snapshot_previous_region_key(region_id)));
            assert!(!in_meta(&raft_state_key(region_id)));
            assert!(REGION_META_MIN_KEY <= &meta_start[..] && &meta_end[..] <= REGION_META_MAX_KEY);

            // Neighbouring regions' keys stay outside.
            for other in [region_id.wrapping_sub(1), region_id.wrapping_add(1)] {
                if other != region_id {
                    assert!(!inside(&raft_log_key(other, 0)));
                    assert!(!inside(&apply_state_key(other)));
                    assert!(!in_meta(&region_state_key(other)));
                }
            }
        }
        assert!(STORE_IDENT_KEY < REGION_RAFT_MIN_KEY);
    }

    #[test]
    fn test_prefix_end() {
        assert_eq!(prefix_end(b"ab"), b"ac");
        assert_eq!(prefix_end(b"a\xff\xff"), b"b");
        assert_eq!(prefix_end(b"\xff"), b"");
        assert_eq!(prefix_end(b""), b"");
        assert_eq!(
            prefix_end(&region_raft_prefix(u64::MAX)),
            REGION_RAFT_MAX_KEY
        );
        assert_eq!(prefix_end(&region_raft_prefix(1)), region_raft_prefix(2));
    }

    #[test]
    fn test_data_key_round_trip() {
        for key in [&b""[..], b"a", b"\x00", b"\x01\x02", b"z", b"\xff\xff"] {
            let dk = data_key(key);
            assert!(is_data_key(&dk));
            assert_eq!(origin_key(&dk).unwrap(), key);
        }
    }

    #[test]
    fn test_origin_key_rejects_non_data_keys() {
        for key in [
            &b""[..],
            b"a",
            &raft_state_key(1)[..],
            STORE_IDENT_KEY,
            DATA_MAX_KEY,
        ] {
            assert!(
                matches!(
                    origin_key(key),
                    Err(Error::MalformedKey { kind: "data", .. })
                ),
                "{key:?}"
            );
        }
    }

    #[test]
    fn test_data_keys_preserve_order() {
        let keys: [&[u8]; 7] = [b"", b"\x00", b"\x00\x00", b"a", b"ab", b"b", b"\xff"];
        for a in keys {
            for b in keys {
                assert_eq!(a.cmp(b), data_key(a).cmp(&data_key(b)), "{a:?} vs {b:?}");
            }
        }
    }

    #[test]
    fn test_data_end_key() {
        assert_eq!(data_end_key(b""), DATA_MAX_KEY);
        assert_eq!(data_end_key(b"k"), b"zk");
        // The unbounded end is above every data key, however long.
        assert!(data_key(&[0xff; 64]).as_slice() < data_end_key(b"").as_slice());
    }

    /// All local keys sort before all data keys, and no user key encodes to a
    /// local key: the spaces cannot collide.
    #[test]
    fn test_local_keys_sort_before_data_keys() {
        let user_keys: [&[u8]; 6] = [
            b"",
            b"\x00",
            b"\x01",
            b"\x01\x02",
            &raft_state_key(1),
            b"\xff\xff",
        ];
        for region_id in IDS {
            for local in local_keys(region_id) {
                assert!(local.as_slice() >= LOCAL_MIN_KEY && local.as_slice() < LOCAL_MAX_KEY);
                assert!(!is_data_key(&local));
                for user in user_keys {
                    let dk = data_key(user);
                    assert!(local < dk, "{local:?} vs {dk:?}");
                    assert!(dk.as_slice() >= DATA_MIN_KEY && dk.as_slice() < DATA_MAX_KEY);
                }
            }
        }
        assert!(LOCAL_MAX_KEY <= DATA_MIN_KEY);
    }
}
