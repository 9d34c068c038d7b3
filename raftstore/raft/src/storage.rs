//! The `Storage` trait, through which Raft reads what the host persisted, and
//! `MemoryStorage`, an in-memory implementation for tests and simulations.
//!
//! Storage holds the *stable* part of the log: entries the host wrote to disk
//! after a `Ready`. Raft keeps the unstable tail itself (see `log.rs`).
//!
//! ```text
//!   snapshot.index = first_index - 1    first_index            last_index
//!   |  compacted (in the snapshot)  |   | stable entries ...   |
//! ```
//!
//! `term(first_index - 1)` must still answer: it is the snapshot's term, needed
//! to check the entry before the first kept one.

use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use kvproto::eraftpb::{ConfState, Entry, HardState, Snapshot, SnapshotMetadata};

use crate::errors::{Result, StorageError};

/// The persisted state Raft needs to start: the hard state and the membership.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RaftState {
    /// Term, vote and commit as last persisted.
    pub hard_state: HardState,
    /// The membership as last persisted (empty for a brand-new node).
    pub conf_state: ConfState,
}

/// Read access to the persisted Raft log and state.
///
/// Contract: the host writes the entries, hard state and snapshot of each
/// `Ready` before it calls `RawNode::advance`; from then on they are visible
/// here. Implementations must not panic on indices out of range; they return
/// `Compacted` or `Unavailable` instead.
pub trait Storage {
    /// The hard state and membership to start from.
    fn initial_state(&self) -> Result<RaftState>;

    /// Entries in `[low, high)`. `Compacted` if `low` is at or below the
    /// snapshot index, `Unavailable` if `high > last_index() + 1`.
    fn entries(&self, low: u64, high: u64) -> Result<Vec<Entry>>;

    /// The term of entry `idx`, for `first_index() - 1 <= idx <= last_index()`.
    fn term(&self, idx: u64) -> Result<u64>;

    /// The index of the first entry still kept (snapshot index + 1).
    fn first_index(&self) -> Result<u64>;

    /// The index of the last stable entry (the snapshot index if none).
    fn last_index(&self) -> Result<u64>;

    /// The most recent snapshot. `SnapshotTemporarilyUnavailable` means it is
    /// being built: Raft asks again later instead of failing.
    fn snapshot(&self) -> Result<Snapshot>;
}

/// The state behind a `MemoryStorage`.
#[derive(Debug)]
struct MemoryStorageCore {
    hard_state: HardState,
    snapshot: Snapshot,
    conf_state: ConfState,
    /// Invariant: `entries[0]` is a dummy holding the snapshot's index and
    /// term; real entries follow contiguously.
    entries: Vec<Entry>,
    /// When set, `snapshot()` answers `SnapshotTemporarilyUnavailable`, as a
    /// host still generating one would.
    snapshot_unavailable: bool,
}

impl MemoryStorageCore {
    fn offset(&self) -> u64 {
        self.entries[0].index
    }

    fn last_index(&self) -> u64 {
        self.offset() + self.entries.len() as u64 - 1
    }
}

/// An in-memory `Storage`, shared by cloning (all clones see one log).
#[derive(Debug, Clone)]
pub struct MemoryStorage {
    core: Arc<RwLock<MemoryStorageCore>>,
}

impl Default for MemoryStorage {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStorage {
    /// An empty storage: no entries, no membership.
    pub fn new() -> Self {
        MemoryStorage {
            core: Arc::new(RwLock::new(MemoryStorageCore {
                hard_state: HardState::default(),
                snapshot: Snapshot::default(),
                conf_state: ConfState::default(),
                entries: vec![Entry::default()],
                snapshot_unavailable: false,
            })),
        }
    }

    /// A storage whose membership is `nodes`, as if bootstrapped with them.
    pub fn new_with_conf_state(nodes: Vec<u64>) -> Self {
        let storage = Self::new();
        storage.set_conf_state(ConfState { nodes });
        storage
    }

    /// A storage holding exactly `entries`, the first of which is the dummy
    /// entry (its index and term stand for the snapshot's).
    ///
    /// # Panics
    /// If `entries` is empty or not contiguous.
    pub fn new_with_entries(entries: Vec<Entry>) -> Self {
        assert!(!entries.is_empty(), "entries must start with a dummy entry");
        for pair in entries.windows(2) {
            assert_eq!(
                pair[0].index + 1,
                pair[1].index,
                "entries must be contiguous"
            );
        }
        let storage = Self::new();
        storage.wl().entries = entries;
        storage
    }

    fn rl(&self) -> RwLockReadGuard<'_, MemoryStorageCore> {
        // A poisoned lock means a test thread panicked mid-write; the data is
        // still consistent because every write below is a single assignment.
        self.core.read().unwrap_or_else(|e| e.into_inner())
    }

    fn wl(&self) -> RwLockWriteGuard<'_, MemoryStorageCore> {
        self.core.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Persists a hard state.
    pub fn set_hard_state(&self, hs: HardState) {
        self.wl().hard_state = hs;
    }

    /// The persisted hard state.
    pub fn hard_state(&self) -> HardState {
        self.rl().hard_state
    }

    /// Persists the membership (the host does this when it applies a conf change).
    pub fn set_conf_state(&self, cs: ConfState) {
        self.wl().conf_state = cs;
    }

    /// Makes `snapshot()` answer `SnapshotTemporarilyUnavailable` while set.
    pub fn set_snapshot_unavailable(&self, unavailable: bool) {
        self.wl().snapshot_unavailable = unavailable;
    }

    /// Replaces the whole log with `snap`'s contents.
    pub fn apply_snapshot(&self, snap: Snapshot) -> Result<()> {
        let mut core = self.wl();
        let meta = snap.metadata.clone().unwrap_or_default();
        let current = core.snapshot.metadata.as_ref().map_or(0, |m| m.index);
        if current >= meta.index {
            return Err(StorageError::SnapshotOutOfDate.into());
        }
        core.entries = vec![Entry {
            term: meta.term,
            index: meta.index,
            ..Default::default()
        }];
        if let Some(cs) = meta.conf_state.clone() {
            core.conf_state = cs;
        }
        core.snapshot = snap;
        Ok(())
    }

    /// Records a snapshot at `idx` (which must be stored) with `data`, and
    /// `cs` as its membership (the current one when `None`).
    pub fn create_snapshot(
        &self,
        idx: u64,
        cs: Option<ConfState>,
        data: Vec<u8>,
    ) -> Result<Snapshot> {
        let mut core = self.wl();
        let current = core.snapshot.metadata.as_ref().map_or(0, |m| m.index);
        if idx <= current {
            return Err(StorageError::SnapshotOutOfDate.into());
        }
        if idx > core.last_index() {
            return Err(StorageError::Unavailable.into());
        }
        let term = core.entries[(idx - core.offset()) as usize].term;
        let conf_state = cs.unwrap_or_else(|| core.conf_state.clone());
        core.snapshot = Snapshot {
            data,
            metadata: Some(SnapshotMetadata {
                conf_state: Some(conf_state),
                index: idx,
                term,
            }),
        };
        Ok(core.snapshot.clone())
    }

    /// Discards entries before `compact_index`; entry `compact_index` becomes
    /// the dummy. The host must have a snapshot covering them.
    pub fn compact(&self, compact_index: u64) -> Result<()> {
        let mut core = self.wl();
        let offset = core.offset();
        if compact_index <= offset {
            return Err(StorageError::Compacted.into());
        }
        if compact_index > core.last_index() {
            return Err(StorageError::Unavailable.into());
        }
        let i = (compact_index - offset) as usize;
        let dummy = Entry {
            index: core.entries[i].index,
            term: core.entries[i].term,
            ..Default::default()
        };
        core.entries.drain(..i);
        core.entries[0] = dummy;
        Ok(())
    }

    /// Appends `entries`, replacing any stored entries from the first new
    /// index on (a new leader may overwrite an uncommitted tail). Entries
    /// already compacted are skipped.
    ///
    /// # Panics
    /// If `entries` would leave a gap after the last stored entry: the host
    /// must persist `Ready` entries in order.
    pub fn append(&self, entries: &[Entry]) -> Result<()> {
        let Some(first_new) = entries.first() else {
            return Ok(());
        };
        let mut core = self.wl();
        let first_kept = core.offset() + 1;
        let last_new = first_new.index + entries.len() as u64 - 1;
        if last_new < first_kept {
            return Ok(());
        }
        let entries = if first_new.index < first_kept {
            &entries[(first_kept - first_new.index) as usize..]
        } else {
            entries
        };
        let at = (entries[0].index - core.offset()) as usize;
        assert!(
            at <= core.entries.len(),
            "missing log entries: last stored {}, appending at {}",
            core.last_index(),
            entries[0].index
        );
        core.entries.truncate(at);
        core.entries.extend_from_slice(entries);
        Ok(())
    }
}

impl Storage for MemoryStorage {
    fn initial_state(&self) -> Result<RaftState> {
        let core = self.rl();
        Ok(RaftState {
            hard_state: core.hard_state,
            conf_state: core.conf_state.clone(),
        })
    }

    fn entries(&self, low: u64, high: u64) -> Result<Vec<Entry>> {
        let core = self.rl();
        let offset = core.offset();
        if low <= offset {
            return Err(StorageError::Compacted.into());
        }
        if high > core.last_index() + 1 || low > high {
            return Err(StorageError::Unavailable.into());
        }
        Ok(core.entries[(low - offset) as usize..(high - offset) as usize].to_vec())
    }

    fn term(&self, idx: u64) -> Result<u64> {
        let core = self.rl();
        let offset = core.offset();
        if idx < offset {
            return Err(StorageError::Compacted.into());
        }
        core.entries
            .get((idx - offset) as usize)
            .map(|e| e.term)
            .ok_or_else(|| StorageError::Unavailable.into())
    }

    fn first_index(&self) -> Result<u64> {
        Ok(self.rl().offset() + 1)
    }

    fn last_index(&self) -> Result<u64> {
        Ok(self.rl().last_index())
    }

    fn snapshot(&self) -> Result<Snapshot> {
        let core = self.rl();
        if core.snapshot_unavailable {
            return Err(StorageError::SnapshotTemporarilyUnavailable.into());
        }
        Ok(core.snapshot.clone())
    }
}
