//! `Raft`: the consensus state machine of one node (Raft paper §5, §6 one
//! member at a time, leader transfer from the thesis §3.10, PreVote §9.6,
//! CheckQuorum §6.2, ReadIndex §6.4 in `read_only`).
//!
//! ```text
//!                 times out,          receives votes
//!  start ──▶ Follower ──────▶ Candidate ──────────────▶ Leader
//!              ▲  ▲  discovers leader │ ▲  times out,     │
//!              │  └───────────────────┘ └─ new election   │
//!              └──────── discovers a higher term ─────────┘
//!
//!  with pre_vote:      times out              a quorum grants
//!            Follower ──────────▶ PreCandidate ──────────────▶ Candidate
//!              ▲   rejected by a quorum, or hears     │
//!              └──────── from a leader of its term ───┘
//! ```
//!
//! PreVote and CheckQuorum follow etcd raft (`raft.go`, `Step`,
//! `stepCandidate`, `stepLeader`), rule for rule:
//! - A pre-candidate keeps its term and vote; it asks for `term + 1`
//!   (`MsgPreVote`) and becomes a candidate only when a quorum grants.
//! - A voter grants a pre-vote for a future term even after voting in its
//!   own, and answers at the request's term without changing its own (it
//!   answers a real vote at the request's term too: the same term then).
//!   A rejection carries the voter's term.
//! - A higher-term `MsgPreVote` never changes the receiver's term; neither
//!   does a granted `MsgPreVoteResponse` (the term grows once a quorum
//!   grants). A rejecting response of a higher term does make the
//!   pre-candidate a follower of that term.
//! - A lower-term `MsgPreVote` is rejected at the receiver's term, so a node
//!   that ran ahead in terms before PreVote was switched on gets back
//!   (etcd's migration rule).
//! - The lease (etcd `inLease`): with CheckQuorum, a node that heard from a
//!   leader less than an election timeout ago (`lead` known and
//!   `election_elapsed < election_timeout`) ignores higher-term vote and
//!   pre-vote requests, unless the request is a leader-transfer campaign
//!   (`context == "CampaignTransfer"`, sent after `MsgTimeoutNow`).
//! - A leader-transfer campaign skips the pre-vote.
//! - CheckQuorum: every election timeout a leader checks that a quorum
//!   (itself included) answered since the last check, else it steps down.
//!
//! Ours, not etcd's: a lower-term append, heartbeat or snapshot is always
//! answered with a rejection carrying our term, and a lower-term vote
//! request with a rejection (etcd answers only with CheckQuorum or PreVote
//! on): a member lagging behind a membership change may be heard by no one
//! else. A vote is lost once a quorum rejects (TinyKV's rule).
//!
//! The node does no I/O and keeps no clock: the host calls `tick` and `step`,
//! and collects what to persist, apply and send through `RawNode::ready`.
//! Outgoing messages queue in `msgs` until then.
//!
//! Invariants:
//! - `term` never decreases; `vote` is reset only when `term` grows.
//! - A leader's own `Progress` has `matched == raft_log.last_index()`.
//! - Only entries of the current term are committed by counting replicas
//!   (§5.4.2); earlier ones commit with them.
//! - A leader with a `lead_transferee` accepts no proposals.
//! - A conf change is accepted only when the previous one is applied
//!   (`pending_conf_index <= applied`), so membership changes one node at a time.
//!
//! - Only a leader holds unconfirmed reads (`read_only`) or postponed read
//!   requests; every role change clears them.

use std::collections::BTreeMap;

use kvproto::eraftpb::{
    ConfChange, ConfState, Entry, EntryType, HardState, Message, MessageType, Snapshot,
};
use prost::Message as _;
use slog::{Logger, debug, info, o, warn};

use crate::config::Config;
use crate::errors::{Error, Result, StorageError};
use crate::log::RaftLog;
use crate::progress::{Progress, ProgressState};
use crate::read_only::{ReadOnly, ReadState};
use crate::storage::Storage;
use crate::util::{SplitMix64, vote_resp_msg_type};

/// "No node": used for an unknown leader or an absent vote.
pub const INVALID_ID: u64 = 0;

/// The `context` of a vote request sent for a leader transfer: voters grant
/// it even within a leader's lease (etcd's `campaignTransfer`).
pub const CAMPAIGN_TRANSFER: &[u8] = b"CampaignTransfer";

/// Why a node campaigns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CampaignType {
    /// The pre-vote round (§9.6): asks without changing the term.
    PreElection,
    /// A real election.
    Election,
    /// A real election for a leader transfer (`MsgTimeoutNow`).
    Transfer,
}

/// The role a node plays in its current term.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum StateRole {
    /// Follows a leader (or waits for one).
    #[default]
    Follower,
    /// Asks for votes to become leader.
    Candidate,
    /// Asks whether it could win an election, before starting one (PreVote).
    PreCandidate,
    /// Replicates its log to the others.
    Leader,
}

/// The volatile state a host may want to observe; it need not be persisted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SoftState {
    /// The leader this node knows of, or `INVALID_ID`.
    pub leader_id: u64,
    /// This node's role.
    pub raft_state: StateRole,
}

/// The consensus state machine of one node.
pub struct Raft<S: Storage> {
    pub(crate) id: u64,
    /// Invariant: never decreases.
    pub(crate) term: u64,
    /// Whom this node voted for in `term`, or `INVALID_ID`.
    pub(crate) vote: u64,
    pub(crate) raft_log: RaftLog<S>,
    /// Replication progress of every member, this node included when it is
    /// a member. Meaningful only on a leader; membership on every node.
    pub(crate) prs: BTreeMap<u64, Progress>,
    pub(crate) state: StateRole,
    /// Votes received in this term's election (true = granted).
    pub(crate) votes: BTreeMap<u64, bool>,
    /// Messages waiting to be handed to the host.
    pub(crate) msgs: Vec<Message>,
    /// The leader of `term` as far as this node knows, or `INVALID_ID`.
    pub(crate) lead: u64,
    /// The highest commit index `lead` announced to this follower in
    /// `term` (0 until it does): entries up to it are known committed by
    /// the leader itself, not only by this node.
    pub(crate) leader_commit: u64,
    pub(crate) heartbeat_timeout: usize,
    pub(crate) election_timeout: usize,
    /// Invariant: in `[election_timeout, 2 * election_timeout)`, redrawn at
    /// every role change.
    pub(crate) randomized_election_timeout: usize,
    /// Ticks since the last heartbeat (leader only).
    pub(crate) heartbeat_elapsed: usize,
    /// Ticks since the last election timeout reset: for followers and
    /// candidates the election clock, for a leader the leader-transfer clock.
    pub(crate) election_elapsed: usize,
    /// The node leadership is being transferred to, or `INVALID_ID`.
    pub(crate) lead_transferee: u64,
    /// Index of the latest conf-change entry this leader proposed; a new one
    /// is accepted only once it is applied.
    pub(crate) pending_conf_index: u64,
    /// Campaign with a pre-vote round first.
    pub(crate) pre_vote: bool,
    /// Step down without a quorum's answers; ignore votes within a lease.
    pub(crate) check_quorum: bool,
    /// A leader's unconfirmed reads.
    pub(crate) read_only: ReadOnly,
    /// Read requests a leader took before committing an entry of its term,
    /// or (`LeaseBased`) while its lease had lapsed.
    pub(crate) pending_read_index: Vec<Message>,
    /// Confirmed reads waiting to be handed to the host.
    pub(crate) read_states: Vec<ReadState>,
    rng: SplitMix64,
    pub(crate) logger: Logger,
}

impl<S: Storage> Raft<S> {
    /// A node over `storage`, restarted from its persisted state if it has
    /// one. `logger` should carry the host's context (region, peer).
    pub fn new(config: &Config, storage: S, logger: &Logger) -> Result<Self> {
        config.validate()?;
        let raft_state = storage.initial_state()?;
        let peers = if raft_state.conf_state.nodes.is_empty() {
            config.peers.clone()
        } else {
            raft_state.conf_state.nodes.clone()
        };
        let raft_log = RaftLog::new(storage)?;
        let seed = config.rng_seed.unwrap_or_else(|| {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            nanos ^ config.id.rotate_left(32)
        });
        let mut raft = Raft {
            id: config.id,
            term: 0,
            vote: INVALID_ID,
            raft_log,
            prs: BTreeMap::new(),
            state: StateRole::Follower,
            votes: BTreeMap::new(),
            msgs: Vec::new(),
            lead: INVALID_ID,
            leader_commit: 0,
            heartbeat_timeout: config.heartbeat_tick,
            election_timeout: config.election_tick,
            randomized_election_timeout: config.election_tick,
            heartbeat_elapsed: 0,
            election_elapsed: 0,
            lead_transferee: INVALID_ID,
            pending_conf_index: 0,
            pre_vote: config.pre_vote,
            check_quorum: config.check_quorum,
            read_only: ReadOnly::new(config.read_only_option),
            pending_read_index: Vec::new(),
            read_states: Vec::new(),
            rng: SplitMix64::new(seed),
            logger: logger.new(o!("raft_id" => config.id)),
        };
        let last_index = raft.raft_log.last_index();
        for id in peers {
            raft.prs.insert(id, Progress::new(0, last_index + 1));
        }
        let hs = raft_state.hard_state;
        if hs != HardState::default() {
            raft.load_state(&hs)?;
        }
        if config.applied > 0 {
            if config.applied > raft.raft_log.committed {
                return Err(Error::ConfigInvalid(format!(
                    "applied {} is past committed {}",
                    config.applied, raft.raft_log.committed
                )));
            }
            raft.raft_log.applied = config.applied.max(raft.raft_log.applied);
        }
        let term = raft.term;
        raft.become_follower(term, INVALID_ID);
        info!(raft.logger, "raft node started";
            "term" => raft.term, "commit" => raft.raft_log.committed,
            "pre_vote" => raft.pre_vote, "check_quorum" => raft.check_quorum,
            "applied" => raft.raft_log.applied, "last_index" => raft.raft_log.last_index(),
            "peers" => ?raft.prs.keys().collect::<Vec<_>>());
        Ok(raft)
    }

    fn load_state(&mut self, hs: &HardState) -> Result<()> {
        let last = self.raft_log.last_index();
        if hs.commit < self.raft_log.committed || hs.commit > last {
            return Err(StorageError::Other(format!(
                "persisted commit {} is outside [{}, {}]",
                hs.commit, self.raft_log.committed, last
            ))
            .into());
        }
        self.raft_log.committed = hs.commit;
        self.term = hs.term;
        self.vote = hs.vote;
        Ok(())
    }

    /// This node's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The current term.
    pub fn term(&self) -> u64 {
        self.term
    }

    /// The vote cast in the current term, or `INVALID_ID`.
    pub fn vote(&self) -> u64 {
        self.vote
    }

    /// This node's role.
    pub fn state(&self) -> StateRole {
        self.state
    }

    /// The leader this node knows of, or `INVALID_ID`.
    pub fn leader_id(&self) -> u64 {
        self.lead
    }

    /// The highest commit index the current leader announced to this
    /// follower in this term; 0 on a leader or candidate.
    pub fn leader_commit(&self) -> u64 {
        self.leader_commit
    }

    /// The log.
    pub fn raft_log(&self) -> &RaftLog<S> {
        &self.raft_log
    }

    /// Replication progress by member id (only meaningful on a leader).
    pub fn prs(&self) -> &BTreeMap<u64, Progress> {
        &self.prs
    }

    /// The node leadership is being transferred to, or `INVALID_ID`.
    pub fn lead_transferee(&self) -> u64 {
        self.lead_transferee
    }

    /// Index of the latest conf change proposed by this leader.
    pub fn pending_conf_index(&self) -> u64 {
        self.pending_conf_index
    }

    /// The current members, sorted.
    pub fn conf_state(&self) -> ConfState {
        ConfState {
            nodes: self.prs.keys().copied().collect(),
        }
    }

    /// Whether this node is a member and so may campaign.
    pub fn promotable(&self) -> bool {
        self.prs.contains_key(&self.id)
    }

    /// The volatile state.
    pub fn soft_state(&self) -> SoftState {
        SoftState {
            leader_id: self.lead,
            raft_state: self.state,
        }
    }

    /// The state to persist.
    pub fn hard_state(&self) -> HardState {
        HardState {
            term: self.term,
            vote: self.vote,
            commit: self.raft_log.committed,
        }
    }

    /// Takes the queued outgoing messages.
    pub fn take_messages(&mut self) -> Vec<Message> {
        std::mem::take(&mut self.msgs)
    }

    fn quorum(&self) -> usize {
        self.prs.len() / 2 + 1
    }

    pub(crate) fn send(&mut self, mut m: Message) {
        m.from = self.id;
        match m.msg_type() {
            // Vote traffic names its term: a pre-vote asks about a future
            // term, and a grant answers at the request's term.
            MessageType::MsgRequestVote
            | MessageType::MsgRequestVoteResponse
            | MessageType::MsgPreVote
            | MessageType::MsgPreVoteResponse
                if m.term != 0 => {}
            // A forwarded read carries no term, as a proposal would not:
            // the leader it reaches serves it whatever its term.
            MessageType::MsgReadIndex => m.term = 0,
            _ => m.term = self.term,
        }
        if matches!(
            m.msg_type(),
            MessageType::MsgAppendResponse | MessageType::MsgHeartbeatResponse
        ) {
            // Tells the leader which entries this node knows are committed
            // (`Progress::committed`); a peer that ignores it loses nothing.
            m.commit = self.raft_log.committed;
        }
        self.msgs.push(m);
    }

    // ---- time ----

    /// Advances the logical clock by one tick.
    pub fn tick(&mut self) {
        match self.state {
            StateRole::Leader => self.tick_heartbeat(),
            StateRole::Follower | StateRole::Candidate | StateRole::PreCandidate => {
                self.tick_election()
            }
        }
    }

    fn tick_election(&mut self) {
        self.election_elapsed += 1;
        if self.promotable() && self.election_elapsed >= self.randomized_election_timeout {
            self.election_elapsed = 0;
            let hup = Message {
                msg_type: MessageType::MsgHup as i32,
                from: self.id,
                ..Default::default()
            };
            // A local message cannot fail to step.
            let _ = self.step(hup);
        }
    }

    fn tick_heartbeat(&mut self) {
        self.read_only.clock += 1;
        self.heartbeat_elapsed += 1;
        self.election_elapsed += 1;
        if self.election_elapsed >= self.election_timeout {
            self.election_elapsed = 0;
            if self.check_quorum {
                self.check_quorum_active();
                if self.state != StateRole::Leader {
                    return;
                }
            }
            if self.lead_transferee != INVALID_ID {
                info!(self.logger, "leader transfer timed out";
                    "term" => self.term, "transferee" => self.lead_transferee);
                self.abort_leader_transfer();
            }
        }
        let election_timeout = self.election_timeout;
        let mut retry = Vec::new();
        for (&id, pr) in self.prs.iter_mut() {
            if pr.state == ProgressState::Snapshot {
                pr.snapshot_elapsed += 1;
                if pr.snapshot_elapsed >= election_timeout {
                    pr.become_probe();
                    retry.push(id);
                }
            }
        }
        for id in retry {
            debug!(self.logger, "snapshot not acknowledged in time, probing again"; "to" => id);
            self.send_append(id);
        }
        if self.heartbeat_elapsed >= self.heartbeat_timeout {
            self.heartbeat_elapsed = 0;
            self.bcast_heartbeat();
        }
    }

    /// CheckQuorum: steps down unless a quorum (this node included) answered
    /// within the last election timeout, then starts the next period.
    fn check_quorum_active(&mut self) {
        let id = self.id;
        let active = self
            .prs
            .iter()
            .filter(|&(&pid, pr)| pid == id || pr.recent_active)
            .count();
        if active < self.quorum() {
            warn!(self.logger, "stepping down: quorum not active";
                "term" => self.term, "active" => active, "members" => self.prs.len());
            let term = self.term;
            self.become_follower(term, INVALID_ID);
            return;
        }
        for (&pid, pr) in self.prs.iter_mut() {
            if pid != id {
                pr.recent_active = false;
            }
        }
    }

    // ---- role changes ----

    fn reset(&mut self, term: u64) {
        if self.term != term {
            self.term = term;
            self.vote = INVALID_ID;
        }
        self.lead = INVALID_ID;
        self.leader_commit = 0;
        self.election_elapsed = 0;
        self.heartbeat_elapsed = 0;
        self.reset_randomized_election_timeout();
        self.lead_transferee = INVALID_ID;
        self.votes.clear();
        // Reads and their rounds belong to one leadership; the host asks
        // again for those dropped here.
        self.read_only = ReadOnly::new(self.read_only.option);
        self.pending_read_index.clear();
        let last_index = self.raft_log.last_index();
        let id = self.id;
        for (&pid, pr) in self.prs.iter_mut() {
            *pr = Progress::new(0, last_index + 1);
            if pid == id {
                pr.matched = last_index;
            }
        }
    }

    fn reset_randomized_election_timeout(&mut self) {
        self.randomized_election_timeout = self
            .rng
            .in_range(self.election_timeout, 2 * self.election_timeout);
    }

    /// Becomes a follower of `lead` (or of nobody) in `term`.
    pub fn become_follower(&mut self, term: u64, lead: u64) {
        let was = self.state;
        self.reset(term);
        self.lead = lead;
        self.state = StateRole::Follower;
        if was != StateRole::Follower {
            info!(self.logger, "became follower"; "term" => term, "leader" => lead);
        }
    }

    /// Becomes a candidate: a new term and a vote for itself.
    ///
    /// # Panics
    /// If this node is the leader.
    pub fn become_candidate(&mut self) {
        assert_ne!(
            self.state,
            StateRole::Leader,
            "a leader cannot become candidate directly"
        );
        let term = self.term + 1;
        self.reset(term);
        self.vote = self.id;
        self.votes.insert(self.id, true);
        self.state = StateRole::Candidate;
        info!(self.logger, "became candidate"; "term" => term);
    }

    /// Becomes a pre-candidate (§9.6): only the role changes; term, vote and
    /// the election clock stay, so a failed pre-vote leaves no trace.
    ///
    /// # Panics
    /// If this node is the leader.
    pub fn become_pre_candidate(&mut self) {
        assert_ne!(
            self.state,
            StateRole::Leader,
            "a leader cannot become pre-candidate directly"
        );
        self.votes.clear();
        self.lead = INVALID_ID;
        self.leader_commit = 0;
        self.state = StateRole::PreCandidate;
        info!(self.logger, "became pre-candidate"; "term" => self.term);
    }

    /// Becomes the leader of the current term and appends a no-op entry, so
    /// entries of earlier terms can commit with one of this term (§5.4.2, §8).
    ///
    /// # Panics
    /// If this node is a follower: only a candidate can win an election.
    pub fn become_leader(&mut self) {
        assert_ne!(
            self.state,
            StateRole::Follower,
            "a follower cannot become leader directly"
        );
        let term = self.term;
        self.reset(term);
        self.lead = self.id;
        self.state = StateRole::Leader;
        let id = self.id;
        if let Some(pr) = self.prs.get_mut(&id) {
            pr.recent_active = true;
        }
        // Entries past the commit may hold a conf change of an earlier
        // leader; refuse new ones until everything up to here is applied.
        self.pending_conf_index = self.raft_log.last_index();
        let noop = Entry {
            term,
            index: self.raft_log.last_index() + 1,
            ..Default::default()
        };
        self.append_entries(vec![noop]);
        info!(self.logger, "became leader"; "term" => term, "last_index" => self.raft_log.last_index());
    }

    // ---- elections ----

    /// Starts an election (or its pre-vote round) unless this node leads or
    /// is not a member.
    fn hup(&mut self, t: CampaignType) {
        if self.state == StateRole::Leader {
            debug!(self.logger, "ignored campaign: already leader"; "term" => self.term);
            return;
        }
        if !self.promotable() {
            return;
        }
        self.campaign(t);
    }

    fn campaign(&mut self, t: CampaignType) {
        let (vote_msg, term) = if t == CampaignType::PreElection {
            self.become_pre_candidate();
            self.votes.insert(self.id, true);
            // Asked for the next term before this node moves to it.
            (MessageType::MsgPreVote, self.term + 1)
        } else {
            self.become_candidate();
            (MessageType::MsgRequestVote, self.term)
        };
        if self.count_votes().0 >= self.quorum() {
            // A group of one: its own vote wins.
            if t == CampaignType::PreElection {
                self.campaign(CampaignType::Election);
            } else {
                self.become_leader();
            }
            return;
        }
        let last_index = self.raft_log.last_index();
        let last_term = self.raft_log.last_term();
        let context = if t == CampaignType::Transfer {
            CAMPAIGN_TRANSFER.to_vec()
        } else {
            Vec::new()
        };
        let peers: Vec<u64> = self
            .prs
            .keys()
            .copied()
            .filter(|&id| id != self.id)
            .collect();
        for to in peers {
            self.send(Message {
                msg_type: vote_msg as i32,
                to,
                term,
                index: last_index,
                log_term: last_term,
                context: context.clone(),
                ..Default::default()
            });
        }
    }

    /// (granted, rejected) among current members.
    fn count_votes(&self) -> (usize, usize) {
        self.prs
            .keys()
            .fold((0, 0), |(yes, no), id| match self.votes.get(id) {
                Some(true) => (yes + 1, no),
                Some(false) => (yes, no + 1),
                None => (yes, no),
            })
    }

    /// Answers a vote or pre-vote request of this term or (pre-vote only) a
    /// later one.
    fn handle_vote_request(&mut self, m: &Message) {
        let pre_vote = m.msg_type() == MessageType::MsgPreVote;
        // A repeat of our vote, or no vote and no leader in this term, or
        // a pre-vote for a future term (which binds nothing).
        let can_vote = self.vote == m.from
            || (self.vote == INVALID_ID && self.lead == INVALID_ID)
            || (pre_vote && m.term > self.term);
        let grant = can_vote && self.raft_log.is_up_to_date(m.index, m.log_term);
        if grant && !pre_vote {
            self.vote = m.from;
            self.election_elapsed = 0;
        }
        debug!(self.logger, "vote request"; "term" => self.term, "from" => m.from,
            "pre_vote" => pre_vote, "granted" => grant, "index" => m.index,
            "log_term" => m.log_term, "msg_term" => m.term);
        // A grant answers at the request's term: a voter behind in terms
        // would otherwise answer a pre-vote at a term its asker ignores.
        let term = if grant {
            m.term.max(self.term)
        } else {
            self.term
        };
        self.send(Message {
            msg_type: vote_resp_msg_type(m.msg_type()) as i32,
            to: m.from,
            term,
            reject: !grant,
            ..Default::default()
        });
    }

    // ---- stepping ----

    /// Handles one message, local or from a peer.
    pub fn step(&mut self, m: Message) -> Result<()> {
        let msg_type = m.msg_type();
        if m.term > self.term {
            if matches!(
                msg_type,
                MessageType::MsgRequestVote | MessageType::MsgPreVote
            ) && m.context != CAMPAIGN_TRANSFER
                && self.in_lease()
            {
                // CheckQuorum's lease (etcd `inLease`, thesis §4.2.3): a
                // leader was heard within the minimum election timeout, so
                // neither the term nor the vote moves. Only a transfer the
                // leader itself started gets through.
                info!(self.logger, "ignored vote request within the leader's lease";
                    "term" => self.term, "msg_term" => m.term, "from" => m.from,
                    "msg" => ?msg_type, "leader" => self.lead,
                    "remaining_ticks" => self.election_timeout - self.election_elapsed);
                return Ok(());
            }
            match msg_type {
                // A pre-vote never changes the receiver's term (§9.6).
                MessageType::MsgPreVote => {}
                // Granted for the term after ours: the term grows once a
                // quorum grants. A rejection's term is real: we follow it.
                MessageType::MsgPreVoteResponse if !m.reject => {}
                _ => {
                    // §5.1: a higher term makes anyone a follower. The sender
                    // of an append, heartbeat or snapshot is that term's leader.
                    let lead = match msg_type {
                        MessageType::MsgAppend
                        | MessageType::MsgHeartbeat
                        | MessageType::MsgSnapshot => m.from,
                        _ => INVALID_ID,
                    };
                    debug!(self.logger, "higher term seen"; "term" => self.term, "msg_term" => m.term,
                        "from" => m.from, "msg" => ?msg_type);
                    self.become_follower(m.term, lead);
                }
            }
        } else if m.term != 0 && m.term < self.term {
            if msg_type == MessageType::MsgPreVote {
                // etcd's migration rule: a node that ran ahead in terms
                // without PreVote would otherwise never hear an answer, and
                // a cluster switching PreVote on could deadlock.
                debug!(self.logger, "rejected pre-vote from an older term"; "term" => self.term,
                    "msg_term" => m.term, "from" => m.from);
                self.send(Message {
                    msg_type: MessageType::MsgPreVoteResponse as i32,
                    to: m.from,
                    term: self.term,
                    reject: true,
                    ..Default::default()
                });
                return Ok(());
            }
            if msg_type == MessageType::MsgRequestVote {
                // Figure 2, RequestVote: "reply false if term < currentTerm",
                // carrying currentTerm so the candidate catches up (§5.1).
                // Other traffic may never tell it: a member lagging behind a
                // membership change campaigns only among the members it
                // knows, so a candidate it does not know would stay behind
                // its term forever, and neither could win.
                debug!(self.logger, "rejected vote request from an older term"; "term" => self.term,
                    "msg_term" => m.term, "from" => m.from);
                self.send(Message {
                    msg_type: MessageType::MsgRequestVoteResponse as i32,
                    to: m.from,
                    term: self.term,
                    reject: true,
                    ..Default::default()
                });
                return Ok(());
            }
            if matches!(
                msg_type,
                MessageType::MsgAppend | MessageType::MsgHeartbeat | MessageType::MsgSnapshot
            ) {
                // Figure 2, AppendEntries: "reply false if term < currentTerm",
                // so a leader of an older term steps down (§5.1). It may never
                // learn otherwise: a member lagging behind a membership change
                // sends its vote requests only to the members it knows, maybe
                // not to this leader, which then keeps its followers while we
                // refuse it. The rejection names index 0, which a leader of
                // our own term ignores as a stale answer.
                debug!(self.logger, "rejected message from an older leader"; "term" => self.term,
                    "msg_term" => m.term, "from" => m.from, "msg" => ?msg_type);
                self.send(Message {
                    msg_type: MessageType::MsgAppendResponse as i32,
                    to: m.from,
                    reject: true,
                    ..Default::default()
                });
                return Ok(());
            }
            // Stale: the sender will learn the new term from other traffic.
            debug!(self.logger, "ignored message from an older term"; "term" => self.term,
                "msg_term" => m.term, "from" => m.from, "msg" => ?msg_type);
            return Ok(());
        }

        match msg_type {
            MessageType::MsgHup => {
                let t = if self.pre_vote {
                    CampaignType::PreElection
                } else {
                    CampaignType::Election
                };
                self.hup(t);
                Ok(())
            }
            MessageType::MsgRequestVote | MessageType::MsgPreVote => {
                self.handle_vote_request(&m);
                Ok(())
            }
            _ => match self.state {
                StateRole::Follower => self.step_follower(m),
                StateRole::Candidate | StateRole::PreCandidate => self.step_candidate(m),
                StateRole::Leader => self.step_leader(m),
            },
        }
    }

    /// CheckQuorum's lease: a leader was heard (or, on a leader, the quorum
    /// check passed) less than an election timeout ago.
    fn in_lease(&self) -> bool {
        self.check_quorum
            && self.lead != INVALID_ID
            && self.election_elapsed < self.election_timeout
    }

    fn step_follower(&mut self, mut m: Message) -> Result<()> {
        match m.msg_type() {
            MessageType::MsgPropose => return Err(Error::ProposalDropped),
            MessageType::MsgAppend => {
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_append_entries(m);
            }
            MessageType::MsgHeartbeat => {
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_heartbeat(m);
            }
            MessageType::MsgSnapshot => {
                self.election_elapsed = 0;
                self.lead = m.from;
                self.handle_snapshot(m);
            }
            MessageType::MsgTransferLeader if self.lead != INVALID_ID => {
                m.to = self.lead;
                // Forwarded as is: `from` names the transferee.
                m.term = self.term;
                self.msgs.push(m);
            }
            MessageType::MsgTimeoutNow if self.promotable() => {
                // No pre-vote: the leader asked for this election, so this
                // node is not coming back from a partition.
                info!(self.logger, "campaigning for a leader transfer"; "term" => self.term, "from" => m.from);
                self.hup(CampaignType::Transfer);
            }
            MessageType::MsgReadIndex => self.forward_read_index(m),
            MessageType::MsgReadIndexResponse => self.handle_read_index_response(m),
            _ => {}
        }
        Ok(())
    }

    fn step_candidate(&mut self, m: Message) -> Result<()> {
        // Only answers to this candidacy count: a candidate may still get
        // answers to its pre-vote of the same term.
        let my_vote_resp = if self.state == StateRole::PreCandidate {
            MessageType::MsgPreVoteResponse
        } else {
            MessageType::MsgRequestVoteResponse
        };
        match m.msg_type() {
            MessageType::MsgPropose => return Err(Error::ProposalDropped),
            MessageType::MsgAppend => {
                self.become_follower(self.term, m.from);
                self.handle_append_entries(m);
            }
            MessageType::MsgHeartbeat => {
                self.become_follower(self.term, m.from);
                self.handle_heartbeat(m);
            }
            MessageType::MsgSnapshot => {
                self.become_follower(self.term, m.from);
                self.handle_snapshot(m);
            }
            t if t == my_vote_resp => {
                self.votes.entry(m.from).or_insert(!m.reject);
                let (granted, rejected) = self.count_votes();
                debug!(self.logger, "vote response"; "term" => self.term, "from" => m.from,
                    "msg" => ?t, "rejected" => m.reject, "granted_total" => granted,
                    "rejected_total" => rejected);
                if granted >= self.quorum() {
                    if self.state == StateRole::PreCandidate {
                        self.campaign(CampaignType::Election);
                    } else {
                        self.become_leader();
                        self.bcast_append();
                    }
                } else if rejected >= self.quorum() {
                    // A pre-vote response's term is ours + 1: keep ours.
                    self.become_follower(self.term, INVALID_ID);
                }
            }
            MessageType::MsgTimeoutNow => {
                debug!(self.logger, "ignored timeout-now while campaigning";
                    "term" => self.term, "from" => m.from);
            }
            MessageType::MsgReadIndex => {
                debug!(self.logger, "no leader; dropping read index"; "term" => self.term);
            }
            _ => {}
        }
        Ok(())
    }

    fn step_leader(&mut self, m: Message) -> Result<()> {
        match m.msg_type() {
            MessageType::MsgBeat => self.bcast_heartbeat(),
            MessageType::MsgPropose => return self.handle_propose(m),
            MessageType::MsgAppendResponse => {
                self.mark_recent_active(m.from);
                self.handle_append_response(&m);
            }
            MessageType::MsgHeartbeatResponse => {
                self.mark_recent_active(m.from);
                let last_index = self.raft_log.last_index();
                let behind = self.prs.get_mut(&m.from).is_some_and(|pr| {
                    pr.update_committed(m.commit);
                    pr.resume_probe();
                    pr.matched < last_index
                });
                if behind {
                    self.send_append(m.from);
                }
                if self.prs.contains_key(&m.from) {
                    self.handle_read_ack(m.from, &m.context);
                }
            }
            MessageType::MsgReadIndex => self.handle_read_index_as_leader(m),
            MessageType::MsgTransferLeader => self.handle_transfer_leader(m.from),
            _ => {}
        }
        Ok(())
    }

    /// CheckQuorum: a member was heard from in this period.
    fn mark_recent_active(&mut self, from: u64) {
        if let Some(pr) = self.prs.get_mut(&from) {
            pr.recent_active = true;
        }
    }

    // ---- leader: proposals and replication ----

    fn handle_propose(&mut self, mut m: Message) -> Result<()> {
        if self.lead_transferee != INVALID_ID {
            debug!(self.logger, "proposal dropped during leader transfer";
                "term" => self.term, "transferee" => self.lead_transferee);
            return Err(Error::ProposalDropped);
        }
        if !self.promotable() {
            return Err(Error::ProposalDropped);
        }
        let has_conf_change = m
            .entries
            .iter()
            .any(|e| e.entry_type() == EntryType::EntryConfChange);
        if has_conf_change && self.pending_conf_index > self.raft_log.applied {
            info!(self.logger, "conf change refused: the previous one is not applied yet";
                "term" => self.term, "pending_conf_index" => self.pending_conf_index,
                "applied" => self.raft_log.applied);
            return Err(Error::ProposalDropped);
        }
        if m.entries
            .iter()
            .filter(|e| e.entry_type() == EntryType::EntryConfChange)
            .count()
            > 1
        {
            return Err(Error::ProposalDropped);
        }
        let mut index = self.raft_log.last_index();
        for e in m.entries.iter_mut() {
            index += 1;
            e.index = index;
            e.term = self.term;
            if e.entry_type() == EntryType::EntryConfChange {
                self.pending_conf_index = index;
            }
        }
        self.append_entries(std::mem::take(&mut m.entries));
        self.bcast_append();
        Ok(())
    }

    /// Appends entries (index and term already set) to the leader's log and
    /// counts them as replicated on the leader itself.
    fn append_entries(&mut self, entries: Vec<Entry>) {
        let last = self.raft_log.append(&entries);
        let id = self.id;
        if let Some(pr) = self.prs.get_mut(&id) {
            pr.maybe_update(last);
        }
        if self.maybe_commit() {
            self.release_pending_read_index();
        }
    }

    /// Commits the highest index a quorum has replicated, if it is of the
    /// current term. Returns whether the commit index moved.
    fn maybe_commit(&mut self) -> bool {
        if self.prs.is_empty() {
            return false;
        }
        let mut matched: Vec<u64> = self.prs.values().map(|pr| pr.matched).collect();
        matched.sort_unstable_by(|a, b| b.cmp(a));
        let quorum_index = matched[self.quorum() - 1];
        self.raft_log.maybe_commit(quorum_index, self.term)
    }

    /// Sends every follower what it lacks.
    pub(crate) fn bcast_append(&mut self) {
        let peers: Vec<u64> = self
            .prs
            .keys()
            .copied()
            .filter(|&id| id != self.id)
            .collect();
        for to in peers {
            self.send_append(to);
        }
    }

    /// Sends every follower a heartbeat carrying the latest read round.
    /// A heartbeat not yet handed to the host is replaced, not repeated: the
    /// new one carries everything the old one did, a commit index at least
    /// as high and a read round at least as late, so many reads taken
    /// between two `Ready`s share one heartbeat per follower.
    pub(crate) fn bcast_heartbeat(&mut self) {
        let ctx = self.read_only.heartbeat_ctx();
        self.msgs
            .retain(|m| m.msg_type() != MessageType::MsgHeartbeat);
        let peers: Vec<u64> = self
            .prs
            .keys()
            .copied()
            .filter(|&id| id != self.id)
            .collect();
        for to in peers {
            self.send_heartbeat(to, ctx.clone());
        }
    }

    fn send_heartbeat(&mut self, to: u64, context: Vec<u8>) {
        // Never tell a follower to commit past what it is known to hold.
        let matched = self.prs.get(&to).map_or(0, |pr| pr.matched);
        let commit = matched.min(self.raft_log.committed);
        self.send(Message {
            msg_type: MessageType::MsgHeartbeat as i32,
            to,
            commit,
            context,
            ..Default::default()
        });
    }

    /// Sends `to` the entries from its `next`, or a snapshot if they are
    /// compacted. Returns whether a message was queued.
    pub(crate) fn send_append(&mut self, to: u64) -> bool {
        let Some(pr) = self.prs.get(&to) else {
            return false;
        };
        if pr.is_paused() {
            return false;
        }
        let next = pr.next;
        let prev_index = next - 1;
        let prev_term = self.raft_log.term(prev_index);
        let entries = self.raft_log.entries_from(next);
        match (prev_term, entries) {
            (Ok(log_term), Ok(entries)) => {
                let last = entries.last().map_or(prev_index, |e| e.index);
                self.send(Message {
                    msg_type: MessageType::MsgAppend as i32,
                    to,
                    index: prev_index,
                    log_term,
                    entries,
                    commit: self.raft_log.committed,
                    ..Default::default()
                });
                if let Some(pr) = self.prs.get_mut(&to) {
                    pr.sent_to(last);
                }
                true
            }
            (Err(Error::Store(StorageError::Compacted)), _)
            | (_, Err(Error::Store(StorageError::Compacted))) => self.send_snapshot(to),
            (Err(e), _) | (_, Err(e)) => {
                warn!(self.logger, "cannot read entries to send"; "to" => to, "next" => next, "err" => %e);
                false
            }
        }
    }

    fn send_snapshot(&mut self, to: u64) -> bool {
        let snapshot = match self.raft_log.snapshot() {
            Ok(s) => s,
            Err(Error::Store(StorageError::SnapshotTemporarilyUnavailable)) => {
                debug!(self.logger, "snapshot not ready yet, will retry"; "to" => to);
                return false;
            }
            Err(e) => {
                warn!(self.logger, "cannot get a snapshot to send"; "to" => to, "err" => %e);
                return false;
            }
        };
        let Some(index) = snapshot
            .metadata
            .as_ref()
            .map(|m| m.index)
            .filter(|&i| i > 0)
        else {
            warn!(self.logger, "storage returned an empty snapshot"; "to" => to);
            return false;
        };
        info!(self.logger, "sending snapshot"; "term" => self.term, "to" => to, "index" => index);
        self.send(Message {
            msg_type: MessageType::MsgSnapshot as i32,
            to,
            snapshot: Some(snapshot),
            ..Default::default()
        });
        if let Some(pr) = self.prs.get_mut(&to) {
            pr.become_snapshot(index);
        }
        true
    }

    fn handle_append_response(&mut self, m: &Message) {
        let Some(pr) = self.prs.get_mut(&m.from) else {
            return;
        };
        pr.update_committed(m.commit);
        if m.reject {
            if pr.maybe_decr_to(m.index, m.reject_hint) {
                debug!(self.logger, "append rejected, backing off"; "term" => self.term,
                    "from" => m.from, "rejected" => m.index, "hint" => m.reject_hint);
                self.send_append(m.from);
            }
            return;
        }
        let was_paused = pr.is_paused();
        if !pr.maybe_update(m.index) && !was_paused {
            return;
        }
        let (matched, next) = (pr.matched, pr.next);
        if self.maybe_commit() {
            // Reads postponed until an entry of this term committed may go.
            self.release_pending_read_index();
            // Tell everyone about the new commit index.
            self.bcast_append();
        } else if was_paused || next <= self.raft_log.last_index() {
            // More to send, or a paused peer missed the commit broadcast.
            self.send_append(m.from);
        }
        if m.from == self.lead_transferee && matched == self.raft_log.last_index() {
            info!(self.logger, "transferee caught up, sending timeout-now";
                "term" => self.term, "transferee" => m.from);
            self.send_timeout_now(m.from);
        }
    }

    // ---- follower: receiving the leader's log ----

    /// Handles a leader's append (§5.3): accept if our log has the entry
    /// before the new ones, then commit what the leader says is committed
    /// among the entries we now know match.
    pub(crate) fn handle_append_entries(&mut self, m: Message) {
        self.leader_commit = self.leader_commit.max(m.commit);
        if m.index < self.raft_log.committed {
            // Everything up to our commit is already known to match.
            let committed = self.raft_log.committed;
            self.send_append_response(m.from, committed, false);
            return;
        }
        match self.raft_log.maybe_append(m.index, m.log_term, &m.entries) {
            Some(last_new) => {
                self.raft_log.commit_to(m.commit.min(last_new));
                self.send_append_response(m.from, last_new, false);
            }
            None => {
                debug!(self.logger, "append rejected: log does not match"; "term" => self.term,
                    "index" => m.index, "log_term" => m.log_term, "last_index" => self.raft_log.last_index());
                let hint = self.raft_log.reject_hint(m.index);
                self.send_reject(m.from, m.index, hint);
            }
        }
    }

    fn send_append_response(&mut self, to: u64, index: u64, reject: bool) {
        let reject_hint = if reject {
            self.raft_log.last_index()
        } else {
            0
        };
        self.send(Message {
            msg_type: MessageType::MsgAppendResponse as i32,
            to,
            index,
            reject,
            reject_hint,
            ..Default::default()
        });
    }

    /// Rejects an append whose previous entry `index` we do not hold; the
    /// leader retries from after `hint` (see `RaftLog::reject_hint`).
    fn send_reject(&mut self, to: u64, index: u64, hint: u64) {
        self.send(Message {
            msg_type: MessageType::MsgAppendResponse as i32,
            to,
            index,
            reject: true,
            reject_hint: hint,
            ..Default::default()
        });
    }

    /// Handles a heartbeat: learn the commit index, answer.
    pub(crate) fn handle_heartbeat(&mut self, m: Message) {
        self.leader_commit = self.leader_commit.max(m.commit);
        let commit = m.commit.min(self.raft_log.last_index());
        self.raft_log.commit_to(commit);
        // The read round is echoed so the leader knows its reads confirmed.
        self.send(Message {
            msg_type: MessageType::MsgHeartbeatResponse as i32,
            to: m.from,
            context: m.context,
            ..Default::default()
        });
    }

    /// Handles a leader's snapshot: restore from it unless our log already
    /// covers it.
    pub(crate) fn handle_snapshot(&mut self, m: Message) {
        let snapshot = m.snapshot.unwrap_or_default();
        let (index, term) = snapshot
            .metadata
            .as_ref()
            .map_or((0, 0), |md| (md.index, md.term));
        if self.restore(snapshot) {
            info!(self.logger, "restored from snapshot"; "term" => self.term, "index" => index, "snap_term" => term);
            let last = self.raft_log.last_index();
            self.send_append_response(m.from, last, false);
        } else {
            let committed = self.raft_log.committed;
            self.send_append_response(m.from, committed, false);
        }
    }

    /// Restores the log and membership from `snapshot`. Returns false when
    /// the snapshot is not newer than what is committed here.
    fn restore(&mut self, snapshot: Snapshot) -> bool {
        let Some(meta) = snapshot.metadata.clone() else {
            return false;
        };
        if meta.index <= self.raft_log.committed {
            return false;
        }
        if self.raft_log.match_term(meta.index, meta.term) {
            // Our log already has the snapshot's last entry: just commit up to it.
            self.raft_log.commit_to(meta.index);
            return false;
        }
        self.raft_log.restore(snapshot);
        let last_index = self.raft_log.last_index();
        let nodes = meta.conf_state.map(|cs| cs.nodes).unwrap_or_default();
        self.prs = nodes
            .into_iter()
            .map(|id| (id, Progress::new(0, last_index + 1)))
            .collect();
        true
    }

    // ---- leader transfer ----

    fn handle_transfer_leader(&mut self, transferee: u64) {
        if transferee == self.id {
            // Handing leadership to itself means keeping it: a pending
            // transfer is called off so proposals are accepted again (etcd
            // `stepLeader` aborts before its self check).
            if self.lead_transferee != INVALID_ID {
                info!(self.logger, "leader transfer cancelled by a transfer to self";
                    "term" => self.term, "previous" => self.lead_transferee);
                self.abort_leader_transfer();
            }
            return;
        }
        if !self.prs.contains_key(&transferee) {
            debug!(self.logger, "ignored transfer to a non-member"; "transferee" => transferee);
            return;
        }
        if self.lead_transferee == transferee {
            return;
        }
        if self.lead_transferee != INVALID_ID {
            info!(self.logger, "abandoning previous leader transfer";
                "term" => self.term, "previous" => self.lead_transferee);
        }
        self.lead_transferee = transferee;
        // The transfer must finish within an election timeout (§3.10).
        self.election_elapsed = 0;
        info!(self.logger, "transferring leadership"; "term" => self.term, "transferee" => transferee);
        let caught_up = self.prs[&transferee].matched == self.raft_log.last_index();
        if caught_up {
            self.send_timeout_now(transferee);
        } else {
            self.send_append(transferee);
        }
    }

    fn send_timeout_now(&mut self, to: u64) {
        // The transferee's campaign overrides the followers' leases: from
        // now on this leadership confirms reads with a heartbeat round.
        self.read_only.lease_revoked = true;
        self.send(Message {
            msg_type: MessageType::MsgTimeoutNow as i32,
            to,
            ..Default::default()
        });
        self.release_pending_read_index();
    }

    fn abort_leader_transfer(&mut self) {
        self.lead_transferee = INVALID_ID;
    }

    // ---- membership ----

    /// Applies a committed conf change and returns the new membership.
    pub fn apply_conf_change(&mut self, cc: &ConfChange) -> ConfState {
        match cc.change_type() {
            kvproto::eraftpb::ConfChangeType::AddNode => self.add_node(cc.node_id),
            kvproto::eraftpb::ConfChangeType::RemoveNode => self.remove_node(cc.node_id),
        }
        self.conf_state()
    }

    /// Adds `id` as a member (no-op if it is one already).
    pub fn add_node(&mut self, id: u64) {
        if self.prs.contains_key(&id) {
            return;
        }
        let next = self.raft_log.last_index() + 1;
        let mut pr = Progress::new(0, next);
        // A new member counts as active, or CheckQuorum could depose the
        // leader before the newcomer had a chance to answer (etcd does so).
        pr.recent_active = true;
        self.prs.insert(id, pr);
        info!(self.logger, "added node"; "term" => self.term, "node" => id,
            "members" => ?self.prs.keys().collect::<Vec<_>>());
    }

    /// Removes `id` from the members. A leader or candidate that removes
    /// itself steps down; with fewer members, a smaller quorum may commit
    /// pending entries.
    pub fn remove_node(&mut self, id: u64) {
        if self.prs.remove(&id).is_none() {
            return;
        }
        self.votes.remove(&id);
        info!(self.logger, "removed node"; "term" => self.term, "node" => id,
            "members" => ?self.prs.keys().collect::<Vec<_>>());
        if id == self.id && self.state != StateRole::Follower {
            // A non-member must not lead: it refuses proposals, yet its
            // heartbeats keep the members from electing anyone else. A
            // candidate steps down too, or the votes still in flight would
            // make it such a leader.
            let term = self.term;
            self.become_follower(term, INVALID_ID);
            return;
        }
        if self.state != StateRole::Leader {
            return;
        }
        if self.lead_transferee == id {
            self.abort_leader_transfer();
        }
        if self.maybe_commit() {
            self.release_pending_read_index();
            self.bcast_append();
        }
        // With one voter fewer, a quorum may already have confirmed reads.
        self.confirm_reads();
    }

    // ---- host feedback ----

    /// The host reports whether a snapshot sent to `id` was applied.
    pub fn report_snapshot(&mut self, id: u64, failed: bool) {
        if self.state != StateRole::Leader {
            return;
        }
        if let Some(pr) = self.prs.get_mut(&id)
            && pr.state == ProgressState::Snapshot
        {
            if failed {
                pr.pending_snapshot = 0;
            }
            pr.become_probe();
            // Paused until the peer answers, as etcd does on `MsgSnapStatus`:
            // after a delivered snapshot its append response resumes us; after
            // a failed one a heartbeat response does, showing it reachable.
            // Probing at once would send the same snapshot again on the next
            // append, to a peer that could not take the last one: a failing
            // transfer per proposal while it stays unreachable.
            pr.probe_sent = true;
            info!(self.logger, "snapshot reported"; "to" => id, "failed" => failed, "next" => pr.next);
        }
    }

    /// The host reports that `id` could not be reached: stop streaming to it
    /// optimistically.
    pub fn report_unreachable(&mut self, id: u64) {
        if let Some(pr) = self.prs.get_mut(&id)
            && pr.state == ProgressState::Replicate
        {
            pr.become_probe();
        }
    }

    /// Encodes a conf change as the payload of a conf-change entry.
    pub(crate) fn conf_change_entry(cc: &ConfChange) -> Entry {
        Entry {
            entry_type: EntryType::EntryConfChange as i32,
            data: cc.encode_to_vec(),
            ..Default::default()
        }
    }

    /// Panics if an invariant of the module doc is broken (debug builds and tests).
    pub fn check_invariants(&self) {
        self.raft_log.check_invariants();
        if self.state == StateRole::Leader
            && let Some(pr) = self.prs.get(&self.id)
        {
            assert_eq!(
                pr.matched,
                self.raft_log.last_index(),
                "leader's own progress matches its log"
            );
        }
        let t = self.randomized_election_timeout;
        assert!(
            t >= self.election_timeout && t < 2 * self.election_timeout,
            "randomized election timeout {t} out of range"
        );
        if self.state != StateRole::Leader {
            assert!(
                self.read_only.unconfirmed.is_empty() && self.pending_read_index.is_empty(),
                "only a leader holds reads"
            );
        }
    }
}

#[cfg(test)]
#[path = "raft_tests.rs"]
mod tests;
