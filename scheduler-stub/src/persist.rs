//! The scheduler's state file: what survives a restart, and how it is written
//! so that a crash (`kill -9`, power loss) at any instant leaves either the
//! old or the new state, never a mix and never nothing.
//!
//! What is kept (a [`PersistedState`]): the cluster id, whether the cluster
//! is bootstrapped, the end of the reserved id range, every store, every
//! region, the cluster config and the end of the reserved timestamp window.
//! Leaders, pending peers, store stats and operators are not kept: stores
//! report them again within a heartbeat interval, and an operator is only a
//! hint the scheduler may repeat or drop.
//!
//! Format of `<data-dir>/scheduler.state` (all integers little endian):
//!
//! ```text
//! 0       8          12            16        20
//! +-------+----------+-------------+---------+---------------------------+
//! | magic | version  | payload len | crc32   | payload: PersistedState   |
//! | 8 B   | u32 (=1) | u32         | (IEEE)  | (protobuf, `len` bytes)   |
//! +-------+----------+-------------+---------+---------------------------+
//! ```
//!
//! Writing a new state (`StateFile::save`):
//! 1. write the whole file to `scheduler.state.tmp`, fsync it;
//! 2. rename it over `scheduler.state` (atomic on POSIX file systems);
//! 3. fsync the data dir, so the rename itself is durable.
//!
//! Only after step 3 does the caller answer the request that caused it.
//!
//! Invariants:
//! - `scheduler.state`, once it exists, always holds a complete state that
//!   was fully fsynced before it got that name. A leftover
//!   `scheduler.state.tmp` is a write that crashed before step 2 and is
//!   ignored (and removed) at start-up.
//! - A state file that is short, has trailing bytes, the wrong magic or an
//!   unknown version, a checksum mismatch, or a payload that does not decode or
//!   describes an impossible cluster (overlapping regions, ids at or above the
//!   reserved id end, ...) is an error at start-up naming the file and the
//!   reason: never silently replaced by an empty state, which would forget the
//!   cluster and hand its ids out again.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

use kvproto::metapb::{Cluster, Region, Store};
use prost::Message;

use crate::errors::{Error, Result};

/// The state file's name inside the data dir.
pub(crate) const STATE_FILE: &str = "scheduler.state";
/// Where a new state is written before it replaces the old one.
const TMP_FILE: &str = "scheduler.state.tmp";
/// The file whose `flock` marks the data dir as in use.
const LOCK_FILE: &str = "LOCK";
/// Identifies the file as ours.
const MAGIC: &[u8; 8] = b"TKVSCHED";
/// The only format version so far.
const VERSION: u32 = 1;
/// Bytes before the payload: magic, version, length, checksum.
const HEADER_LEN: usize = 8 + 4 + 4 + 4;

/// Everything the scheduler keeps across restarts.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct PersistedState {
    /// The cluster this scheduler serves; never 0.
    #[prost(uint64, tag = "1")]
    pub cluster_id: u64,
    /// Whether `Bootstrap` succeeded.
    #[prost(bool, tag = "2")]
    pub bootstrapped: bool,
    /// Ids below this may have been handed out or seen; the next start
    /// allocates from here.
    #[prost(uint64, tag = "3")]
    pub id_end: u64,
    /// Every store, by id.
    #[prost(message, repeated, tag = "4")]
    pub stores: Vec<Store>,
    /// Every known region, in key order.
    #[prost(message, repeated, tag = "5")]
    pub regions: Vec<Region>,
    /// The cluster config (`PutClusterConfig`).
    #[prost(message, optional, tag = "6")]
    pub cluster_config: Option<Cluster>,
    /// No timestamp at or above this physical time (ms) has been handed out;
    /// the next start's timestamps begin at or above it.
    #[prost(int64, tag = "7")]
    pub tso_limit_ms: i64,
}

/// The state file of one data dir.
///
/// Invariant: while a `StateFile` lives, its process holds an exclusive
/// `flock` on the dir's `LOCK` file, so two schedulers never write one
/// state file (the second refuses to start). The OS drops the lock with the
/// process, however it ends.
#[derive(Debug)]
pub(crate) struct StateFile {
    dir: PathBuf,
    _lock: fs::File,
}

/// Takes the data dir's lock, failing at once if another process holds it.
fn lock_dir(dir: &Path) -> Result<fs::File> {
    use std::os::fd::AsRawFd as _;
    let path = dir.join(LOCK_FILE);
    let refused = |reason: String| Error::State {
        path: path.display().to_string(),
        reason,
    };
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| refused(format!("cannot open the lock file: {e}")))?;
    // SAFETY: `flock` takes a descriptor we own for the call's duration.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(refused(if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            "the data dir is in use by another running scheduler".to_owned()
        } else {
            format!("cannot lock the data dir: {e}")
        }));
    }
    Ok(file)
}

impl StateFile {
    /// Opens the data dir `dir`, creating it if missing, and reads its state:
    /// `None` if the dir has never held one. A leftover temporary file from a
    /// crashed write is removed.
    pub(crate) fn open(dir: &Path) -> Result<(StateFile, Option<PersistedState>)> {
        let io_err = |path: &Path, what: &str, e: std::io::Error| Error::State {
            path: path.display().to_string(),
            reason: format!("{what}: {e}"),
        };
        fs::create_dir_all(dir).map_err(|e| io_err(dir, "cannot create the data dir", e))?;
        let file = StateFile {
            dir: dir.to_path_buf(),
            _lock: lock_dir(dir)?,
        };
        let tmp = dir.join(TMP_FILE);
        match fs::remove_file(&tmp) {
            Ok(()) => file.sync_dir()?,
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&tmp, "cannot remove an unfinished write", e)),
        }
        let path = file.path();
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok((file, None)),
            Err(e) => return Err(io_err(&path, "cannot read", e)),
        };
        let state = decode(&bytes).map_err(|reason| Error::State {
            path: path.display().to_string(),
            reason,
        })?;
        Ok((file, Some(state)))
    }

    /// The state file's path.
    pub(crate) fn path(&self) -> PathBuf {
        self.dir.join(STATE_FILE)
    }

    /// Replaces the state on disk with `state`, durably (see the module
    /// docs). On error the change counts as not made; the file holds the old
    /// state, or (if only the final dir fsync failed) possibly the new one,
    /// which is harmless for what it protects: it only reserves more ids and
    /// timestamps, and regions are reported again by their leaders.
    pub(crate) fn save(&self, state: &PersistedState) -> Result<()> {
        let tmp = self.dir.join(TMP_FILE);
        let io_err = |path: &Path, what: &str, e: std::io::Error| Error::State {
            path: path.display().to_string(),
            reason: format!("{what}: {e}"),
        };
        let bytes = encode(state)?;
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| io_err(&tmp, "cannot create", e))?;
        f.write_all(&bytes)
            .map_err(|e| io_err(&tmp, "cannot write", e))?;
        f.sync_all().map_err(|e| io_err(&tmp, "cannot fsync", e))?;
        drop(f);
        let path = self.path();
        fs::rename(&tmp, &path)
            .map_err(|e| io_err(&path, "cannot rename the new state into place", e))?;
        self.sync_dir()
    }

    /// Makes the dir's entries (a rename, a removal) durable.
    fn sync_dir(&self) -> Result<()> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| Error::State {
                path: self.dir.display().to_string(),
                reason: format!("cannot fsync the data dir: {e}"),
            })
    }
}

/// The file's bytes for `state`.
fn encode(state: &PersistedState) -> Result<Vec<u8>> {
    let payload = state.encode_to_vec();
    let len = u32::try_from(payload.len()).map_err(|_| Error::State {
        path: STATE_FILE.to_owned(),
        reason: format!("state of {} bytes is too large", payload.len()),
    })?;
    let mut bytes = Vec::with_capacity(HEADER_LEN + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&VERSION.to_le_bytes());
    bytes.extend_from_slice(&len.to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    bytes.extend_from_slice(&payload);
    Ok(bytes)
}

/// Parses the file's bytes; the error says what is wrong with them.
fn decode(bytes: &[u8]) -> std::result::Result<PersistedState, String> {
    if bytes.len() < HEADER_LEN {
        return Err(format!(
            "torn or truncated: {} bytes, shorter than the {HEADER_LEN}-byte header",
            bytes.len()
        ));
    }
    let (header, payload) = bytes.split_at(HEADER_LEN);
    if &header[..8] != MAGIC {
        return Err("not a scheduler state file (bad magic)".to_owned());
    }
    let word = |at: usize| u32::from_le_bytes(header[at..at + 4].try_into().expect("4-byte slice"));
    let version = word(8);
    if version != VERSION {
        return Err(format!(
            "unknown format version {version} (this build reads {VERSION})"
        ));
    }
    let len = word(12) as usize;
    if payload.len() != len {
        return Err(format!(
            "torn or corrupt: header says {len} payload bytes, file has {}",
            payload.len()
        ));
    }
    let crc = word(16);
    let actual = crc32fast::hash(payload);
    if crc != actual {
        return Err(format!(
            "corrupt: checksum {actual:08x} does not match the recorded {crc:08x}"
        ));
    }
    let state = PersistedState::decode(payload).map_err(|e| format!("corrupt payload: {e}"))?;
    if state.cluster_id == 0 {
        return Err("corrupt payload: cluster id 0".to_owned());
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_test_state() -> PersistedState {
        PersistedState {
            cluster_id: 7,
            bootstrapped: true,
            id_end: 1000,
            stores: vec![Store {
                id: 1,
                address: "127.0.0.1:20160".to_owned(),
                state: 0,
            }],
            regions: vec![Region {
                id: 2,
                ..Default::default()
            }],
            cluster_config: None,
            tso_limit_ms: 5,
        }
    }

    #[test]
    fn test_save_then_open_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let (file, none) = StateFile::open(dir.path()).unwrap();
        assert_eq!(none, None, "a new dir has no state");
        let state = new_test_state();
        file.save(&state).unwrap();
        let mut later = state.clone();
        later.id_end = 2000;
        file.save(&later).unwrap();
        drop(file); // a restart: the old process is gone
        let (_, loaded) = StateFile::open(dir.path()).unwrap();
        assert_eq!(loaded, Some(later));
        assert!(!dir.path().join(TMP_FILE).exists());
    }

    #[test]
    fn test_a_data_dir_in_use_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (first, _) = StateFile::open(dir.path()).unwrap();
        let err = StateFile::open(dir.path()).expect_err("a second scheduler on the dir");
        assert!(err.to_string().contains("in use"), "{err}");
        drop(first);
        StateFile::open(dir.path()).expect("free again once the first is gone");
    }

    #[test]
    fn test_unfinished_write_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let (file, _) = StateFile::open(dir.path()).unwrap();
        let state = new_test_state();
        file.save(&state).unwrap();
        // A crash while writing the next state leaves a partial temp file.
        fs::write(dir.path().join(TMP_FILE), &encode(&state).unwrap()[..10]).unwrap();
        drop(file);
        let (_, loaded) = StateFile::open(dir.path()).unwrap();
        assert_eq!(loaded, Some(state));
        assert!(!dir.path().join(TMP_FILE).exists(), "leftover removed");
    }

    #[test]
    fn test_every_damage_is_an_error_naming_the_file() {
        let good = encode(&new_test_state()).unwrap();
        let mut flipped = good.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 0x40;
        let mut bad_version = good.clone();
        bad_version[8] = 9;
        let mut trailing = good.clone();
        trailing.push(0);
        let cases: [(&str, Vec<u8>, &str); 7] = [
            ("empty", vec![], "truncated"),
            ("short header", good[..HEADER_LEN - 1].to_vec(), "truncated"),
            ("torn payload", good[..good.len() - 3].to_vec(), "torn"),
            ("trailing bytes", trailing, "torn"),
            ("bit flip", flipped, "checksum"),
            ("bad magic", b"XXXXXXXX".repeat(4), "magic"),
            ("bad version", bad_version, "version"),
        ];
        for (name, bytes, want) in cases {
            let dir = tempfile::tempdir().unwrap();
            fs::write(dir.path().join(STATE_FILE), &bytes).unwrap();
            let err = StateFile::open(dir.path()).unwrap_err();
            let msg = err.to_string();
            assert!(
                msg.contains(STATE_FILE) && msg.contains(want),
                "{name}: {msg}"
            );
            // The damaged file is left alone for a person to look at.
            assert_eq!(
                fs::read(dir.path().join(STATE_FILE)).unwrap(),
                bytes,
                "{name}"
            );
        }
    }
}
