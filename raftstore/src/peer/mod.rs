//! `Peer`: the runtime-free state of one region peer — its Raft node over
//! `PeerStorage`, the region, the proposals waiting for their entries to
//! apply. The actor in `fsm/peer.rs` owns one and feeds it messages; the
//! behaviour lives in `operation/`, one file per feature.
//!
//! Invariants:
//! - `proposals` is ordered by `(term, index)`; each is answered exactly
//!   once: when its entry applies, when an entry that rules it out applies
//!   (`StaleCommand`, see `proposal.rs`), or when the peer stops.
//! - `peer_cache` knows every member of the region (it may know more); a
//!   sender enters it only after its message passed the ingress check
//!   (`operation/raft_message.rs`).

pub mod proposal;

use std::collections::HashMap;

use kvproto::metapb;
use raft::{Config as RaftConfig, RawNode, StateRole};
use slog::{Logger, info, o};
use storage::Engine;

use crate::config::Config;
use crate::errors::Result;
use crate::operation::batch::PendingWrites;
use crate::operation::heartbeat::PeerLiveness;
use crate::operation::lease::LeaderLease;
use crate::operation::read::PendingReads;
use crate::operation::ready::RaftOp;
use crate::operation::session::SessionTable;
use crate::peer_storage::PeerStorage;
use crate::snapshot::SnapshotSource;

pub use self::proposal::{Answer, Proposal, ProposalQueue};

/// One region peer.
pub struct Peer {
    pub(crate) region_id: u64,
    /// This peer's identity in the region.
    pub(crate) meta: metapb::Peer,
    pub(crate) raft_group: RawNode<PeerStorage>,
    /// Members by peer id, to address raft messages.
    pub(crate) peer_cache: HashMap<u64, metapb::Peer>,
    pub(crate) proposals: ProposalQueue,
    /// Write commands checked and waiting to share one entry, proposed
    /// before the next Ready (`operation/batch.rs`).
    pub(crate) pending_writes: Option<PendingWrites>,
    /// Reads waiting for their read index (`operation/read.rs`).
    pub(crate) reads: PendingReads,
    /// While it covers now, reads need no heartbeat round (`operation/lease.rs`).
    pub(crate) lease: LeaderLease,
    /// Raft ticks since start, to derive the slower ticks from.
    pub(crate) ticks: u64,
    /// Bytes of log entries applied since the last compaction (an estimate
    /// for the size limit of log GC).
    pub(crate) approximate_log_size: u64,
    /// Where the next raft-log GC starts: one past the last index a GC task
    /// of this run covered. 0 after a start: the first GC deletes whatever
    /// an earlier run compacted and had not deleted when it stopped.
    /// Invariant: entries below it are deleted or queued for deletion.
    pub(crate) last_compacted_index: u64,
    /// Calls into the raft node decided while handling a Ready, made after
    /// its `advance()`. Invariant: empty outside `handle_ready`.
    pub(crate) raft_ops: Vec<RaftOp>,
    /// The region's data size (bytes of keys and values) and key count as
    /// the split checker last measured them; `None` until it has, and again
    /// after the region split.
    pub(crate) approximate_size: Option<u64>,
    /// See `approximate_size`.
    pub(crate) approximate_keys: Option<u64>,
    /// Bytes written to the region (keys and values) since the last split
    /// check was scheduled: TinyKV's hint for whether another is worth it.
    pub(crate) size_diff_hint: u64,
    /// Campaign as soon as the actor starts: set on a peer born from a
    /// split its region's leader applied, so the new region gets a leader
    /// without waiting an election timeout.
    pub(crate) campaign_on_start: bool,
    /// Set once this peer was removed from its region: destroy after this Ready.
    pub(crate) pending_remove: bool,
    /// Set once destroyed: nothing more is processed.
    pub(crate) stopped: bool,
    /// When each other peer was last heard from, for the down peers a
    /// leader reports (`operation/heartbeat.rs`).
    pub(crate) peer_liveness: PeerLiveness,
    /// The region's client sessions as of the applied index
    /// (`operation/session.rs`).
    pub(crate) sessions: SessionTable,
    pub(crate) logger: Logger,
}

impl Peer {
    /// Loads the peer `meta` of `region` from `engine` (or starts it empty
    /// when it was just created by a message).
    pub fn new(
        cfg: &Config,
        engine: Engine,
        region: metapb::Region,
        meta: metapb::Peer,
        snapshots: Box<dyn SnapshotSource>,
        logger: &Logger,
    ) -> Result<Peer> {
        let logger = logger.new(o!("region_id" => region.id, "peer_id" => meta.id));
        let region_id = region.id;
        let peer_cache = region.peers.iter().map(|p| (p.id, *p)).collect();
        let storage = PeerStorage::new(engine.clone(), region, snapshots, &logger)?;
        let sessions =
            SessionTable::load(&engine, region_id, storage.apply_state().session_clock_ms)?;
        let raft_cfg = RaftConfig {
            id: meta.id,
            peers: Vec::new(),
            election_tick: cfg.raft_election_timeout_ticks,
            heartbeat_tick: cfg.raft_heartbeat_ticks,
            applied: storage.applied_index(),
            rng_seed: None,
            // Reads confirm leadership with a heartbeat round
            // (`operation/read.rs`), or rely on the lease CheckQuorum makes
            // safe (`operation/lease.rs`); PreVote keeps a member that was
            // cut off from deposing a working leader when it returns.
            read_only_option: raft::ReadOnlyOption::Safe,
            pre_vote: true,
            check_quorum: true,
        };
        let raft_group = RawNode::new(&raft_cfg, storage, &logger)?;
        info!(logger, "create peer"; "applied" => raft_cfg.applied,
            "initialized" => raft_group.store().is_initialized());
        Ok(Peer {
            region_id,
            meta,
            raft_group,
            peer_cache,
            proposals: ProposalQueue::default(),
            pending_writes: None,
            reads: PendingReads::default(),
            lease: LeaderLease::default(),
            ticks: 0,
            approximate_log_size: 0,
            last_compacted_index: 0,
            raft_ops: Vec::new(),
            approximate_size: None,
            approximate_keys: None,
            size_diff_hint: 0,
            campaign_on_start: false,
            pending_remove: false,
            stopped: false,
            peer_liveness: PeerLiveness::default(),
            sessions,
            logger,
        })
    }

    /// The region as this peer knows it.
    pub fn region(&self) -> &metapb::Region {
        self.raft_group.store().region()
    }

    /// This peer's id.
    pub fn peer_id(&self) -> u64 {
        self.meta.id
    }

    /// Whether this peer leads its region.
    pub fn is_leader(&self) -> bool {
        self.raft_group.raft().state() == StateRole::Leader
    }

    /// The leader this peer knows of.
    pub fn leader(&self) -> Option<metapb::Peer> {
        let id = self.raft_group.raft().leader_id();
        self.peer_cache.get(&id).copied()
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.raft_group.raft().term()
    }

    /// A single-member region needs no votes, and a peer born from its
    /// leader's split is the natural leader of the new region: either
    /// campaigns at once instead of waiting an election timeout.
    pub fn maybe_campaign(&mut self) {
        let region = self.region();
        let alone = region.peers.len() == 1 && region.peers[0].id == self.meta.id;
        if alone || std::mem::take(&mut self.campaign_on_start) {
            let _ = self.raft_group.campaign();
        }
    }
}
