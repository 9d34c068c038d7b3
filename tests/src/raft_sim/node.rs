//! `Host`: one simulated server running one Raft node.
//!
//! The host owns a `MemoryStorage` as its disk and a state machine, and runs
//! the node as `RawNode`'s contract asks, one `Ready` at a time:
//!
//! ```text
//!  ready() ─▶ 1. persist: snapshot, entries, hard state (into storage)
//!          ─▶ 2. apply:   snapshot, then committed entries (conf changes
//!                         through apply_conf_change); maybe flush the
//!                         applied state to disk
//!          ─▶ 3. send:    the messages (handed back to the driver)
//!          ─▶ advance()
//! ```
//!
//! A crash drops the `RawNode` and the in-memory state machine: whatever the
//! node did since its last processed `Ready` is lost, which Raft allows only
//! because nothing of it was sent. A restart builds a new `RawNode` from the
//! storage, and the state machine from the applied state last flushed
//! (`durable`), passing its index as `Config::applied` so committed entries
//! after it are applied again.
//!
//! The state machine is a digest chained over every applied entry, so two
//! hosts agree on their state exactly when they applied the same entries.
//! Snapshots carry it; the host compacts its log behind one now and then.
//!
//! Reads: the driver asks through `RawNode::read_index` with the read's id
//! as the context. Each `ReadState` a `Ready` hands out waits in the host's
//! memory until the host has applied up to its index; the host then answers
//! it with its state machine at that moment (`ReadAnswer`), after applying
//! that Ready's entries. A crash loses the waiting reads, as it loses a
//! real server's pending requests; a `ReadState` the node gets after a
//! restart for a read asked before the crash is answered all the same
//! (its index was taken after the read was asked, so the answer is still
//! linearizable).
//!
//! Invariants:
//! - `durable.applied >= ` the storage's snapshot index: the log is compacted
//!   only behind a flushed applied state.
//! - The storage's `ConfState` is `durable.conf_state` (both are written on a
//!   flush, or by a snapshot).

use kvproto::eraftpb::{
    ConfChange, ConfState, Entry, EntryType, HardState, Message, Snapshot, SnapshotMetadata,
};
use prost::Message as _;
use raft::{Config, MemoryStorage, RawNode, ReadOnlyOption, ReadState, Storage};
use slog::{Logger, info, o};

/// The term and index of the bootstrap snapshot every initial member starts
/// from, as TinyKV's `RAFT_INIT_LOG_TERM` / `RAFT_INIT_LOG_INDEX`. Nodes
/// added later start empty and get it (or a newer one) from the leader.
pub const INIT_INDEX: u64 = 5;
/// See `INIT_INDEX`.
pub const INIT_TERM: u64 = 5;

/// Election and heartbeat ticks of every simulated node (TinyKV's defaults).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// `Config::election_tick`.
    pub election_tick: usize,
    /// `Config::heartbeat_tick`.
    pub heartbeat_tick: usize,
}

/// The protocol options every node of a run shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Protocol {
    /// `Config::pre_vote`.
    pub pre_vote: bool,
    /// `Config::check_quorum`.
    pub check_quorum: bool,
    /// `Config::read_only_option`.
    pub read_only: ReadOnlyOption,
}

/// A read the host answered: its id and the state it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadAnswer {
    /// The read's id (the context it was asked with).
    pub id: u64,
    /// The read index the node handed out for it.
    pub read_index: u64,
    /// The host's last applied index when it answered.
    pub applied: u64,
    /// The state machine digest at `applied`.
    pub digest: u64,
    /// Client payloads applied up to `applied`.
    pub payloads: u64,
}

/// The context a read with id `id` is asked with.
pub fn read_ctx(id: u64) -> Vec<u8> {
    id.to_le_bytes().to_vec()
}

/// The id of the read asked with `ctx`, if it is one.
pub fn read_id(ctx: &[u8]) -> Option<u64> {
    <[u8; 8]>::try_from(ctx).ok().map(u64::from_le_bytes)
}

/// The replicated state: what a host applied, condensed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StateMachine {
    /// The last applied index.
    pub applied: u64,
    /// A digest chained over every entry applied up to `applied`.
    pub digest: u64,
    /// Client payloads applied.
    pub payloads: u64,
    /// The membership after the last applied conf change.
    pub conf_state: ConfState,
}

impl StateMachine {
    /// The snapshot data for this state (the membership goes in the metadata).
    pub fn encode(&self) -> Vec<u8> {
        let mut data = Vec::with_capacity(24);
        data.extend_from_slice(&self.applied.to_le_bytes());
        data.extend_from_slice(&self.digest.to_le_bytes());
        data.extend_from_slice(&self.payloads.to_le_bytes());
        data
    }

    /// The state a snapshot carries, or a description of what is wrong with it.
    pub fn decode(snap: &Snapshot) -> Result<StateMachine, String> {
        let meta = snap.metadata.clone().unwrap_or_default();
        let word = |i: usize| -> Result<u64, String> {
            let bytes = snap.data.get(i * 8..i * 8 + 8).ok_or_else(|| {
                format!("snapshot at {} has {} bytes", meta.index, snap.data.len())
            })?;
            Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
        };
        let sm = StateMachine {
            applied: word(0)?,
            digest: word(1)?,
            payloads: word(2)?,
            conf_state: meta.conf_state.unwrap_or_default(),
        };
        if sm.applied != meta.index {
            return Err(format!(
                "snapshot metadata index {} but data applied {}",
                meta.index, sm.applied
            ));
        }
        Ok(sm)
    }

    /// Applies one entry, which must be the next one.
    fn apply(&mut self, e: &Entry) {
        self.applied = e.index;
        self.digest = chain_digest(self.digest, e);
        if e.entry_type() == EntryType::EntryNormal && !e.data.is_empty() {
            self.payloads += 1;
        }
    }
}

/// The digest after applying `e` to a state whose digest is `prev`: a
/// multiply-xorshift mix of the entry's fields, word by word, and of its
/// data eight bytes at a time.
pub fn chain_digest(prev: u64, e: &Entry) -> u64 {
    fn mix(h: u64, word: u64) -> u64 {
        let h = (h ^ word).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^ (h >> 29)
    }
    let mut h = mix(prev, e.index);
    h = mix(h, e.term);
    h = mix(h, e.entry_type as u64 ^ (e.data.len() as u64) << 8);
    for chunk in e.data.chunks(8) {
        let mut word = [0u8; 8];
        word[..chunk.len()].copy_from_slice(chunk);
        h = mix(h, u64::from_le_bytes(word));
    }
    h
}

/// Something the host applied, for the checkers.
#[derive(Debug, Clone)]
pub enum Applied {
    /// A committed entry, with the digest after it.
    Entry {
        /// The entry.
        entry: Entry,
        /// The state machine digest after applying it.
        digest: u64,
        /// The membership after it, for a conf change.
        conf_state: Option<ConfState>,
    },
    /// A snapshot received from the leader.
    Snapshot {
        /// Its index.
        index: u64,
        /// Its term.
        term: u64,
        /// The digest it carries.
        digest: u64,
        /// The membership it carries.
        conf_state: ConfState,
    },
}

/// What one processed `Ready` produced.
#[derive(Debug, Default)]
pub struct ReadyOutput {
    /// Messages to send, in order.
    pub messages: Vec<Message>,
    /// What was applied, in order.
    pub applied: Vec<Applied>,
    /// The hard state persisted, if it changed.
    pub hard_state: Option<HardState>,
    /// The index of the first entry written to disk (replacing any there
    /// from it on), if any was.
    pub persisted_from: Option<u64>,
    /// Reads answered, in the order their read states came.
    pub reads: Vec<ReadAnswer>,
}

/// Everything a host's processing of a `Ready` can find wrong.
pub type HostError = String;

/// A simulated server.
pub struct Host {
    id: u64,
    /// The disk: log, hard state, snapshot, membership. Survives crashes.
    storage: MemoryStorage,
    /// The applied state last flushed to disk. Survives crashes.
    durable: StateMachine,
    /// `None` while crashed.
    node: Option<RawNode<MemoryStorage>>,
    /// The in-memory state machine; reset to `durable` on restart.
    sm: StateMachine,
    /// Read states handed out and not answered yet, in the order handed
    /// out. Lost on a crash.
    /// Invariant: after each processed `Ready`, every one has an index
    /// above `sm.applied`.
    pending_reads: Vec<ReadState>,
    timing: Timing,
    protocol: Protocol,
    rng_seed: u64,
    incarnation: u64,
    logger: Logger,
}

impl Host {
    /// An initial member of a group of `peers`, started.
    pub fn bootstrap(
        id: u64,
        peers: &[u64],
        timing: Timing,
        protocol: Protocol,
        rng_seed: u64,
        logger: &Logger,
    ) -> Host {
        let storage = MemoryStorage::new();
        let conf_state = ConfState {
            nodes: peers.to_vec(),
        };
        let sm = StateMachine {
            applied: INIT_INDEX,
            digest: 0,
            payloads: 0,
            conf_state: conf_state.clone(),
        };
        let snap = Snapshot {
            data: sm.encode(),
            metadata: Some(SnapshotMetadata {
                conf_state: Some(conf_state),
                index: INIT_INDEX,
                term: INIT_TERM,
            }),
        };
        storage
            .apply_snapshot(snap)
            .expect("an empty storage takes any snapshot");
        storage.set_hard_state(HardState {
            term: INIT_TERM,
            vote: 0,
            commit: INIT_INDEX,
        });
        Self::start_new(id, storage, sm, timing, protocol, rng_seed, logger)
    }

    /// A node just added to the group: empty disk, no membership; it waits
    /// for the leader to send it a snapshot.
    pub fn fresh(
        id: u64,
        timing: Timing,
        protocol: Protocol,
        rng_seed: u64,
        logger: &Logger,
    ) -> Host {
        Self::start_new(
            id,
            MemoryStorage::new(),
            StateMachine::default(),
            timing,
            protocol,
            rng_seed,
            logger,
        )
    }

    fn start_new(
        id: u64,
        storage: MemoryStorage,
        sm: StateMachine,
        timing: Timing,
        protocol: Protocol,
        rng_seed: u64,
        logger: &Logger,
    ) -> Host {
        let mut host = Host {
            id,
            storage,
            durable: sm.clone(),
            node: None,
            sm,
            pending_reads: Vec::new(),
            timing,
            protocol,
            rng_seed,
            incarnation: 0,
            logger: logger.new(o!("node" => id)),
        };
        host.restart();
        host
    }

    /// The node id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// How many times the node was started.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Whether the host is running.
    pub fn is_up(&self) -> bool {
        self.node.is_some()
    }

    /// The running node.
    pub fn node(&self) -> Option<&RawNode<MemoryStorage>> {
        self.node.as_ref()
    }

    /// The running node, to step, tick or propose through.
    pub fn node_mut(&mut self) -> Option<&mut RawNode<MemoryStorage>> {
        self.node.as_mut()
    }

    /// The disk.
    pub fn storage(&self) -> &MemoryStorage {
        &self.storage
    }

    /// The in-memory state machine (the durable one while crashed).
    pub fn state_machine(&self) -> &StateMachine {
        &self.sm
    }

    /// Crashes the host: the node and everything not on disk are lost.
    pub fn crash(&mut self) {
        info!(self.logger, "sim: crash"; "applied" => self.sm.applied, "durable_applied" => self.durable.applied);
        self.node = None;
        self.sm = self.durable.clone();
        self.pending_reads.clear();
    }

    /// Starts the node from what is on disk.
    ///
    /// # Panics
    /// If the core refuses the persisted state: that is a bug the simulation
    /// reports (the driver catches the panic).
    pub fn restart(&mut self) {
        self.incarnation += 1;
        self.sm = self.durable.clone();
        let config = Config {
            id: self.id,
            peers: Vec::new(),
            election_tick: self.timing.election_tick,
            heartbeat_tick: self.timing.heartbeat_tick,
            applied: self.durable.applied,
            rng_seed: Some(self.rng_seed ^ self.incarnation.wrapping_mul(0x9E37_79B9_7F4A_7C15)),
            pre_vote: self.protocol.pre_vote,
            check_quorum: self.protocol.check_quorum,
            read_only_option: self.protocol.read_only,
        };
        let node = RawNode::new(&config, self.storage.clone(), &self.logger)
            .unwrap_or_else(|e| panic!("node {} cannot restart from its disk: {e}", self.id));
        info!(self.logger, "sim: started"; "incarnation" => self.incarnation, "applied" => self.durable.applied);
        self.node = Some(node);
    }

    /// Handles one `Ready` if there is one: persist, apply, and return what
    /// to send. `flush_applied` also writes the applied state to disk.
    pub fn process_ready(&mut self, flush_applied: bool) -> Result<ReadyOutput, HostError> {
        let Some(node) = self.node.as_mut() else {
            return Ok(ReadyOutput::default());
        };
        if !node.has_ready() {
            return Ok(ReadyOutput::default());
        }
        let mut rd = node.ready();
        let mut out = ReadyOutput::default();

        // 1. Persist.
        if let Some(snap) = &rd.snapshot {
            let sm = StateMachine::decode(snap)?;
            let meta = snap.metadata.clone().unwrap_or_default();
            self.storage.apply_snapshot(snap.clone()).map_err(|e| {
                format!(
                    "node {} cannot persist snapshot at {}: {e}",
                    self.id, meta.index
                )
            })?;
            if sm.applied <= self.sm.applied {
                return Err(format!(
                    "node {} was handed snapshot at {} but already applied {}",
                    self.id, sm.applied, self.sm.applied
                ));
            }
            // The snapshot's state is persisted with it.
            self.durable = sm.clone();
            self.sm = sm;
            out.applied.push(Applied::Snapshot {
                index: meta.index,
                term: meta.term,
                digest: self.sm.digest,
                conf_state: self.sm.conf_state.clone(),
            });
        }
        self.storage
            .append(&rd.entries)
            .map_err(|e| format!("node {} cannot persist entries: {e}", self.id))?;
        out.persisted_from = rd.entries.first().map(|e| e.index);
        if let Some(hs) = rd.hard_state {
            self.storage.set_hard_state(hs);
            out.hard_state = Some(hs);
        }

        // 2. Apply.
        // `advance` reads `committed_entries` (and the rest) back: only the
        // messages may be taken out of `rd`.
        for e in &rd.committed_entries {
            if e.index != self.sm.applied + 1 {
                return Err(format!(
                    "node {} handed entry {} to apply after applying {}",
                    self.id, e.index, self.sm.applied
                ));
            }
            self.sm.apply(e);
            let mut conf_state = None;
            if e.entry_type() == EntryType::EntryConfChange {
                let cc = ConfChange::decode(e.data.as_slice())
                    .map_err(|err| format!("conf change at {} does not decode: {err}", e.index))?;
                let cs = node.apply_conf_change(&cc);
                info!(self.logger, "sim: applied conf change"; "index" => e.index,
                    "change" => ?cc.change_type(), "node_id" => cc.node_id, "members" => ?cs.nodes);
                self.sm.conf_state = cs.clone();
                conf_state = Some(cs);
            }
            out.applied.push(Applied::Entry {
                digest: self.sm.digest,
                entry: e.clone(),
                conf_state,
            });
        }
        if flush_applied {
            self.flush_applied();
        }
        // Reads, once the state they must see is applied.
        // (Cloned: `advance` counts them in `rd` to drop them from the node.)
        self.pending_reads.extend(rd.read_states.iter().cloned());
        out.reads = self.answer_reads()?;

        // 3. Send (the driver does), then tell the node it is all done.
        out.messages = std::mem::take(&mut rd.messages);
        let node = self.node.as_mut().expect("still running");
        node.advance(rd);
        Ok(out)
    }

    /// Answers the pending reads whose index is applied, with the state
    /// now; the rest keep waiting.
    fn answer_reads(&mut self) -> Result<Vec<ReadAnswer>, HostError> {
        let applied = self.sm.applied;
        let mut answers = Vec::new();
        let mut waiting = Vec::new();
        for rs in std::mem::take(&mut self.pending_reads) {
            if rs.index > applied {
                waiting.push(rs);
                continue;
            }
            let id = read_id(&rs.request_ctx).ok_or_else(|| {
                format!(
                    "node {} got a read state with context {:?}, which no read was asked with",
                    self.id, rs.request_ctx
                )
            })?;
            answers.push(ReadAnswer {
                id,
                read_index: rs.index,
                applied,
                digest: self.sm.digest,
                payloads: self.sm.payloads,
            });
        }
        self.pending_reads = waiting;
        Ok(answers)
    }

    /// Reads waiting for their index to be applied.
    pub fn pending_reads(&self) -> usize {
        self.pending_reads.len()
    }

    fn flush_applied(&mut self) {
        if self.durable != self.sm {
            self.durable = self.sm.clone();
            self.storage.set_conf_state(self.sm.conf_state.clone());
        }
    }

    /// Compacts the log behind a snapshot of the applied state once more
    /// than `threshold` applied entries sit in it. Returns the snapshot index.
    pub fn maybe_compact(&mut self, threshold: u64) -> Option<u64> {
        self.node.as_ref()?;
        let first = self.storage.first_index().ok()?;
        if self.sm.applied < first + threshold {
            return None;
        }
        self.flush_applied();
        let index = self.sm.applied;
        self.storage
            .create_snapshot(index, Some(self.sm.conf_state.clone()), self.sm.encode())
            .ok()?;
        self.storage
            .compact(index)
            .unwrap_or_else(|e| panic!("node {} cannot compact to {index}: {e}", self.id));
        info!(self.logger, "sim: compacted"; "index" => index);
        Some(index)
    }

    /// Makes the storage answer `SnapshotTemporarilyUnavailable` or not.
    pub fn set_snapshot_unavailable(&self, unavailable: bool) {
        self.storage.set_snapshot_unavailable(unavailable);
    }

    /// The node's committed index: the in-memory one while running, the
    /// persisted one while crashed.
    pub fn committed(&self) -> u64 {
        match &self.node {
            Some(n) => n.raft().raft_log().committed(),
            None => self.storage.hard_state().commit,
        }
    }

    /// The first and last index of the node's log (in-memory while running,
    /// on disk while crashed).
    pub fn log_bounds(&self) -> (u64, u64) {
        match &self.node {
            Some(n) => {
                let log = n.raft().raft_log();
                (log.first_index(), log.last_index())
            }
            None => (
                self.storage.first_index().unwrap_or(1),
                self.storage.last_index().unwrap_or(0),
            ),
        }
    }

    /// Entries `[low, high)` of the node's log; `low >= log_bounds().0`.
    pub fn entries(&self, low: u64, high: u64) -> Result<Vec<Entry>, HostError> {
        let r = match &self.node {
            Some(n) => n.raft().raft_log().slice(low, high),
            None => self.storage.entries(low, high),
        };
        r.map_err(|e| format!("node {} cannot read entries [{low}, {high}): {e}", self.id))
    }

    /// The term of entry `idx` in the node's log, if it has it.
    pub fn term(&self, idx: u64) -> Option<u64> {
        match &self.node {
            Some(n) => n.raft().raft_log().term(idx).ok(),
            None => self.storage.term(idx).ok(),
        }
    }
}
