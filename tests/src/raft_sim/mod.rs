//! A deterministic randomized simulation of a Raft cluster, checking Raft's
//! safety properties after every step.
//!
//! `run(seed, &config)` builds a 3- or 5-node group of `Host`s over one
//! `Network` and drives it step by step from one `SimRng` seeded with
//! `seed`: the same seed replays the same run. Each step:
//!
//! ```text
//!  1. faults       partitions and healing, crashes and restarts, leader
//!                  transfers, membership changes, forced elections,
//!                  snapshot generation stalls, network weather changes
//!  2. deliver      messages due this step (lost, duplicated, delayed and
//!                  reordered by the network)
//!  3. tick         every running node (now and then one misses a tick)
//!  4. propose      a client proposes a unique payload, usually to a leader
//!  5. read         a client issues a read, usually to a leader
//!  6. ready        each host persists, applies and sends one Ready, and
//!                  answers the reads whose index it has applied (a host
//!                  may be slow and leave it for a later step, or crash
//!                  halfway through sending); hosts compact their logs
//!  7. check        the safety checkers (`checker`) over every host: the
//!                  incremental checks, and every `checkpoint_every` steps
//!                  every host's whole log
//! ```
//!
//! The checkers also run as things happen: the role checks after every
//! input to a node, the apply checks on what each Ready applied, the read
//! checks on each read issued and answered, and a leader's log from
//! wherever a Ready rewrote it. Every host's whole log is checked once more
//! at the end of the run, and before a removed node's disk is destroyed.
//! `checker`'s module doc lists which checker checks what, and when.
//!
//! Every run has PreVote and CheckQuorum on, as the store runs its peers:
//! the simulation checks the configuration that serves. (The core's
//! defaults, both off, are what TinyKV peers speak; the ported TinyKV and
//! etcd tests cover them. Without PreVote a member that missed the latest
//! membership change and cannot win, its known peers being gone, campaigns
//! forever at ever higher terms; in a two-member group the up-to-date
//! member then wins only in a round where its election timer fires first,
//! a random walk that failed the liveness bound in about one seed in
//! 20,000. PreVote keeps such a member from raising its term.)
//!
//! Reads. Each step a client may issue a read (at the run's read rate):
//! to the leader with the highest term most of the time, else to any
//! running node, which forwards it to the leader it knows. It goes through
//! `RawNode::read_index` with the read's id as context. A host keeps each
//! `ReadState` its Readies hand out and answers the read, once it has
//! applied up to the read index, with its state machine then (applied
//! index, digest, payload count). Reads are lost with a leadership, a
//! crash, a dropped message or an unknown leader; a lost read is never
//! answered, which is allowed. The checker `reads` holds every answer
//! against the committed history and the real-time order of the run (its
//! module doc defines both, and what counts as an acknowledged write).
//!
//! Each run reads with `Safe` ReadIndex, or (in `LEASE_RUNS` of them)
//! `LeaseBased`. A lease read is answered without a heartbeat round on the
//! strength of CheckQuorum's promise: a follower that heard from the
//! leader votes for no one else for an election timeout of its own ticks.
//! The core's lease runs an election timeout of the leader's ticks from
//! when the heartbeat a quorum answered was made (`raft::read_only`), so it
//! is sound only if:
//! - no clock runs slower on the leader than on a follower: a node that
//!   misses a tick is a slow clock, so in lease runs a leader never misses
//!   one (a follower still may: that only lengthens its promise);
//! - a node does not restart within its promise: a restarted node forgets
//!   whom it heard and votes at once, so in lease runs a crashed node stays
//!   down at least an election timeout, in the liveness phase too.
//!
//! Outside these bounds a stale lease read would be the lease working as
//! designed, not a bug, so the bounds keep the checker strict. (Rare all
//! the same: a new leader needs a few message delays past the end of the
//! promise to commit anything, and 8,000 lease seeds without either bound
//! showed none.) `Safe` runs, which need no clock, keep both faults as they
//! were. Network delays, loss, partitions, leader transfers and membership
//! changes are the same in both (a leader that starts a transfer gives its
//! lease up). Without the core's stamped lease, etcd's (valid until the
//! leader's next CheckQuorum check) failed here in one seed of 2,000.
//!
//! After `SimConfig::steps` such steps the faults stop: the network heals and
//! turns reliable, crashed nodes restart, removed nodes are garbage-collected
//! (as a store destroys a stale peer), and a new proposal must commit on a
//! majority of the members within `SimConfig::liveness_timeouts` election
//! timeouts (of `election_tick` ticks each).
//!
//! Membership changes go one at a time through `propose_conf_change` and are
//! applied on commit. A removed node's id is never reused: a slot whose node
//! was removed gets a fresh node with a new id and an empty disk, as TiKV
//! gives a re-added store a new peer id. (Reusing an id would be unsafe: the
//! fresh node forgets the vote its predecessor cast in the current term.)
//!
//! Modules, one job each:
//! - `rng`: the seeded generator.
//! - `network`: messages in flight, loss, duplication, delay, partitions.
//! - `node`: a host running a `RawNode` over a `MemoryStorage` disk, and
//!   answering reads.
//! - `checker`: the safety properties, reads included.
//! - `runner`: many seeds over threads, and their totals.

mod checker;
mod network;
mod node;
pub mod rng;
mod runner;

use std::collections::BTreeSet;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use kvproto::eraftpb::{ConfChange, ConfChangeType, EntryType, Message, MessageType};
use raft::{ReadOnlyOption, SnapshotStatus, StateRole};
use slog::{Drain, Logger, info, o};

pub use self::checker::{CheckConfig, Checkers, Observed, Violation};
pub use self::network::{NetFaults, NetStats, Network};
pub use self::node::{Applied, Host, Protocol, ReadAnswer, StateMachine, Timing};
pub use self::rng::SimRng;
pub use self::runner::{Batch, Totals, default_threads, run_seeds};

/// How a simulation run is shaped.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Steps with faults before the liveness phase (one tick each).
    pub steps: u64,
    /// Cluster size; `None` picks 3 or 5 from the seed.
    pub nodes: Option<usize>,
    /// Log the run (nodes and simulation events) to stderr.
    pub log: bool,
    /// How many latest log entries of each node `log_matching` compares
    /// every step.
    pub check_window: u64,
    /// Steps between checks of every node's whole log (0: only at the end
    /// of the run and before a node's disk is destroyed).
    pub checkpoint_every: u64,
    /// Election timeouts allowed for a proposal to commit once faults stop.
    pub liveness_timeouts: u64,
    /// How reads are confirmed; `None` draws it from the seed (`LeaseBased`
    /// in `LEASE_RUNS` of the seeds). Forcing it leaves the rest of a
    /// seed's run as drawn.
    pub read_only: Option<ReadOnlyOption>,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            steps: 3000,
            nodes: None,
            log: false,
            check_window: 24,
            // A whole-log check costs about as much as 4 to 5 steps: every
            // 10 steps they add about 40% to a run's time, and a change the
            // per-step checks cannot see is caught within 10 steps.
            checkpoint_every: 10,
            liveness_timeouts: 50,
            read_only: None,
        }
    }
}

/// What a run did, for the summary.
#[derive(Debug, Clone, Default)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Cluster size.
    pub nodes: usize,
    /// Steps run, the liveness phase included.
    pub steps: u64,
    /// Node ticks.
    pub ticks: u64,
    /// Leaders elected (distinct terms with a leader).
    pub elections: u64,
    /// The highest term reached.
    pub max_term: u64,
    /// Entries seen committed.
    pub commits: u64,
    /// Client proposals accepted by a leader.
    pub proposals: u64,
    /// Client proposals refused.
    pub proposals_dropped: u64,
    /// Whether reads were `LeaseBased` (else `Safe`).
    pub lease_reads: bool,
    /// Reads issued.
    pub reads_issued: u64,
    /// Reads answered (each checked).
    pub reads_answered: u64,
    /// Snapshot messages sent.
    pub snapshots_sent: u64,
    /// Snapshots received and applied by a host.
    pub snapshots_applied: u64,
    /// Log compactions.
    pub compactions: u64,
    /// Membership changes committed and applied.
    pub conf_changes: u64,
    /// Leader transfers requested.
    pub transfers: u64,
    /// Leader transfers that made the transferee leader.
    pub transfers_done: u64,
    /// Host crashes (each restarted later).
    pub crashes: u64,
    /// Partitions and one-way cuts.
    pub partitions: u64,
    /// Checks of every node's whole log.
    pub full_checks: u64,
    /// Network counters.
    pub net: NetStats,
    /// Ticks the liveness phase needed.
    pub liveness_ticks: u64,
}

/// A run that broke a property, or panicked.
#[derive(Debug, Clone)]
pub struct SimFailure {
    /// The seed to replay.
    pub seed: u64,
    /// The step it happened at.
    pub step: u64,
    /// The checker that caught it, or `panic`.
    pub checker: String,
    /// What was seen, and the cluster's state.
    pub description: String,
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} failed at step {}: {}: {}",
            self.seed, self.step, self.checker, self.description
        )
    }
}

/// Runs one seed. A panic inside the core or the host is caught and
/// reported as a failure of the `panic` checker.
pub fn run(seed: u64, config: &SimConfig) -> Result<SimReport, SimFailure> {
    let step = Arc::new(AtomicU64::new(0));
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut sim = Sim::new(seed, config, step.clone());
        sim.run()
    }));
    match result {
        Ok(r) => r,
        Err(payload) => {
            let message = payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "non-string panic".into());
            Err(SimFailure {
                seed,
                step: step.load(Ordering::Relaxed),
                checker: "panic".into(),
                description: message,
            })
        }
    }
}

/// The chances of each fault, drawn once per seed.
#[derive(Debug, Clone, Copy)]
struct Profile {
    /// Chance that a host handles its pending Ready this step.
    ready: f64,
    propose: f64,
    /// Chance that a client issues a read this step.
    read: f64,
    partition: f64,
    crash: f64,
    crash_mid_send: f64,
    /// Chance of a crash right after persisting a vote: the window where a
    /// lost vote would let the node vote twice in one term.
    crash_after_vote: f64,
    forced_campaign: f64,
    campaign_on_restart: f64,
    /// Chance that a host flushes its applied state with a Ready: low
    /// values make a restarted node replay (and re-apply conf changes from)
    /// far back, as TiKV persists its apply state lazily.
    flush_applied: f64,
    transfer: f64,
    conf_change: f64,
    compact_threshold: u64,
}

impl Profile {
    fn roll(rng: &mut SimRng) -> Self {
        Profile {
            ready: pick(rng, &[1.0, 0.9, 0.6, 0.3, 0.2]),
            propose: pick(rng, &[0.2, 0.5, 0.9]),
            read: pick(rng, &[0.05, 0.2, 0.5]),
            partition: pick(rng, &[0.0, 0.003, 0.01]),
            crash: pick(rng, &[0.0, 0.003, 0.01, 0.03, 0.05]),
            crash_mid_send: pick(rng, &[0.0, 0.002, 0.01]),
            crash_after_vote: pick(rng, &[0.0, 0.05, 0.2]),
            forced_campaign: pick(rng, &[0.001, 0.01]),
            campaign_on_restart: pick(rng, &[0.0, 0.2, 1.0]),
            flush_applied: pick(rng, &[0.5, 0.1, 0.02, 0.0]),
            transfer: pick(rng, &[0.0, 0.004, 0.015]),
            conf_change: pick(rng, &[0.0, 0.004, 0.015, 0.05, 0.1]),
            compact_threshold: rng.pick(&[2, 8, 30, 120, 1000]).expect("not empty"),
        }
    }
}

/// The share of runs whose reads are `LeaseBased` (the rest are `Safe`):
/// under a third, as lease runs bound two faults (see the module doc).
const LEASE_RUNS: f64 = 0.3;

fn pick(rng: &mut SimRng, items: &[f64]) -> f64 {
    rng.pick(items).expect("not empty")
}

fn roll_weather(rng: &mut SimRng) -> NetFaults {
    NetFaults {
        loss: pick(rng, &[0.0, 0.01, 0.05, 0.2]),
        duplicate: pick(rng, &[0.0, 0.01, 0.05]),
        max_delay: rng.pick(&[1, 2, 4, 8]).expect("not empty"),
        long_delay: pick(rng, &[0.0, 0.005, 0.02]),
    }
}

/// One position in the cluster. Its host changes when its node is removed
/// and a fresh one is added in its place.
struct Slot {
    host: Option<Host>,
    restart_at: Option<u64>,
    /// The step its host crashed at, while it is down.
    crashed_at: Option<u64>,
    snapshot_unavailable_until: Option<u64>,
}

struct Sim {
    seed: u64,
    config: SimConfig,
    rng: SimRng,
    timing: Timing,
    protocol: Protocol,
    logger: Logger,
    step_counter: Arc<AtomicU64>,
    step: u64,
    size: usize,
    slots: Vec<Slot>,
    next_id: u64,
    net: Network,
    checkers: Checkers,
    /// Whether faults are injected (false in the liveness phase).
    chaos: bool,
    profile: Profile,
    heal_at: Option<u64>,
    /// The membership after the latest conf change applied by any node.
    members: Vec<u64>,
    members_index: u64,
    /// Every node that was ever a member; ids are never reused.
    ever_member: BTreeSet<u64>,
    /// While a proposed conf change is not applied: the step after which
    /// another may be tried (the first may have been lost with its leader).
    pending_conf: Option<u64>,
    /// The transferee of the latest leader transfer request.
    pending_transfer: Option<u64>,
    next_payload: u64,
    /// Client payloads proposed so far (accepted or not), liveness probes
    /// included.
    proposed_payloads: u64,
    /// The id of the next read.
    next_read: u64,
    /// Index of the first liveness payload applied anywhere.
    liveness_index: Option<u64>,
    report: SimReport,
}

impl Sim {
    fn new(seed: u64, config: &SimConfig, step_counter: Arc<AtomicU64>) -> Self {
        let mut rng = SimRng::new(seed);
        let size = config
            .nodes
            .unwrap_or_else(|| if rng.chance(0.5) { 3 } else { 5 });
        let logger = sim_logger(config.log, seed, step_counter.clone());
        let timing = Timing {
            election_tick: 10,
            heartbeat_tick: 2,
        };
        let lease = rng.chance(LEASE_RUNS);
        let protocol = Protocol {
            pre_vote: true,
            check_quorum: true,
            read_only: config.read_only.unwrap_or(if lease {
                ReadOnlyOption::LeaseBased
            } else {
                ReadOnlyOption::Safe
            }),
        };
        let peers: Vec<u64> = (1..=size as u64).collect();
        let slots = peers
            .iter()
            .map(|&id| {
                let node_seed = rng.fork();
                Slot {
                    host: Some(Host::bootstrap(
                        id, &peers, timing, protocol, node_seed, &logger,
                    )),
                    restart_at: None,
                    crashed_at: None,
                    snapshot_unavailable_until: None,
                }
            })
            .collect();
        let profile = Profile::roll(&mut rng);
        let mut net = Network::new();
        net.set_faults(roll_weather(&mut rng));
        info!(logger, "sim: start"; "nodes" => size, "protocol" => ?protocol,
            "profile" => ?profile, "weather" => ?net.faults());
        Sim {
            seed,
            config: config.clone(),
            rng,
            timing,
            protocol,
            logger,
            step_counter,
            step: 0,
            size,
            slots,
            next_id: size as u64 + 1,
            net,
            checkers: Checkers::new(CheckConfig {
                window: config.check_window,
                checkpoint_every: config.checkpoint_every,
            }),
            chaos: true,
            profile,
            heal_at: None,
            members: peers.clone(),
            members_index: node::INIT_INDEX,
            ever_member: peers.into_iter().collect(),
            pending_conf: None,
            pending_transfer: None,
            next_payload: 0,
            proposed_payloads: 0,
            next_read: 0,
            liveness_index: None,
            report: SimReport {
                seed,
                nodes: size,
                lease_reads: protocol.read_only == ReadOnlyOption::LeaseBased,
                ..Default::default()
            },
        }
    }

    fn run(&mut self) -> Result<SimReport, SimFailure> {
        for _ in 0..self.config.steps {
            self.step().map_err(|v| self.failure(v))?;
        }
        let ticks = self.liveness().map_err(|v| self.failure(v))?;
        self.check_full().map_err(|v| self.failure(v))?;
        self.report.liveness_ticks = ticks;
        self.report.steps = self.step;
        self.report.elections = self.checkers.elections() as u64;
        self.report.max_term = self.checkers.max_leader_term().unwrap_or(0);
        self.report.commits = self.checkers.committed_count() as u64;
        self.report.full_checks = self.checkers.full_checks();
        self.report.reads_answered = self.checkers.reads_answered();
        self.report.net = self.net.stats();
        Ok(self.report.clone())
    }

    fn failure(&self, v: Violation) -> SimFailure {
        SimFailure {
            seed: self.seed,
            step: self.step,
            checker: v.checker.to_string(),
            description: format!("{}\ncluster:\n{}", v.detail, self.describe()),
        }
    }

    /// One line per host: its role, term, log and membership.
    fn describe(&self) -> String {
        let mut s = format!(
            "  members {:?} (as of index {})\n",
            self.members, self.members_index
        );
        for (i, slot) in self.slots.iter().enumerate() {
            let Some(h) = &slot.host else {
                s.push_str(&format!("  slot {i}: empty\n"));
                continue;
            };
            let (first, last) = h.log_bounds();
            match h.node() {
                Some(n) => {
                    let r = n.raft();
                    s.push_str(&format!(
                        "  slot {i}: node {} {:?} term {} vote {} lead {} log [{first}, {last}] \
                         committed {} applied {} prs {:?} reads waiting {}\n",
                        h.id(),
                        r.state(),
                        r.term(),
                        r.vote(),
                        r.leader_id(),
                        r.raft_log().committed(),
                        h.state_machine().applied,
                        r.prs().keys().collect::<Vec<_>>(),
                        h.pending_reads()
                    ));
                }
                None => s.push_str(&format!(
                    "  slot {i}: node {} crashed, disk log [{first}, {last}] hard state {:?}\n",
                    h.id(),
                    h.storage().hard_state()
                )),
            }
        }
        s
    }

    fn step(&mut self) -> Result<(), Violation> {
        self.step += 1;
        self.step_counter.store(self.step, Ordering::Relaxed);
        if self.chaos {
            self.inject_faults()?;
        }
        self.restart_due()?;
        self.deliver()?;
        self.tick_all()?;
        self.propose_client()?;
        self.read_client()?;
        self.process_readies()?;
        let hosts: Vec<&Host> = self.slots.iter().filter_map(|s| s.host.as_ref()).collect();
        self.checkers.check_hosts(&hosts, self.step)
    }

    /// The checks of every host's whole log.
    fn check_full(&mut self) -> Result<(), Violation> {
        let hosts: Vec<&Host> = self.slots.iter().filter_map(|s| s.host.as_ref()).collect();
        self.checkers.check_full(&hosts)
    }

    // ---- observation ----

    /// Runs the role checkers on slot `i`'s host after an input.
    fn observe(&mut self, i: usize) -> Result<(), Violation> {
        let Some(host) = &self.slots[i].host else {
            return Ok(());
        };
        if let Some(term) = self.checkers.observe_role(host)? {
            info!(self.logger, "sim: new leader"; "node" => host.id(), "term" => term);
            // The first leader elected after a transfer request settles it.
            if let Some(target) = self.pending_transfer.take()
                && target == host.id()
            {
                self.report.transfers_done += 1;
            }
        }
        Ok(())
    }

    fn slot_of(&self, id: u64) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.host.as_ref().is_some_and(|h| h.id() == id))
    }

    fn up_slots(&self) -> Vec<usize> {
        (0..self.slots.len())
            .filter(|&i| self.slots[i].host.as_ref().is_some_and(Host::is_up))
            .collect()
    }

    /// The running leader with the highest term.
    fn leader_slot(&self) -> Option<usize> {
        self.up_slots()
            .into_iter()
            .filter_map(|i| {
                let n = self.slots[i].host.as_ref()?.node()?;
                (n.raft().state() == StateRole::Leader).then_some((n.raft().term(), i))
            })
            .max()
            .map(|(_, i)| i)
    }

    /// Whether slot `i` runs a leader.
    fn is_leader(&self, i: usize) -> bool {
        self.slots[i]
            .host
            .as_ref()
            .and_then(Host::node)
            .is_some_and(|n| n.raft().state() == StateRole::Leader)
    }

    /// Whether this run's reads are `LeaseBased`.
    fn lease_reads(&self) -> bool {
        self.protocol.read_only == ReadOnlyOption::LeaseBased
    }

    fn node_mut(&mut self, i: usize) -> Option<&mut raft::RawNode<raft::MemoryStorage>> {
        self.slots[i].host.as_mut()?.node_mut()
    }

    // ---- faults ----

    fn inject_faults(&mut self) -> Result<(), Violation> {
        if self.rng.chance(0.003) {
            let weather = roll_weather(&mut self.rng);
            info!(self.logger, "sim: weather"; "faults" => ?weather);
            self.net.set_faults(weather);
        }
        match self.heal_at {
            Some(at) if self.step >= at => {
                info!(self.logger, "sim: heal");
                self.net.heal();
                self.heal_at = None;
            }
            None if self.rng.chance(self.profile.partition) => self.partition(),
            _ => {}
        }
        if self.rng.chance(self.profile.crash) {
            let up = self.up_slots();
            if let Some(i) = self.rng.pick(&up)
                && self.can_crash()
            {
                self.crash(i);
            }
        }
        if self.rng.chance(self.profile.transfer) {
            self.transfer_leader()?;
        }
        if self.rng.chance(self.profile.conf_change) {
            self.change_membership()?;
        }
        if self.rng.chance(self.profile.forced_campaign) {
            let up = self.up_slots();
            if let Some(i) = self.rng.pick(&up) {
                info!(self.logger, "sim: forced campaign"; "slot" => i);
                if let Some(n) = self.node_mut(i) {
                    let _ = n.campaign();
                }
                self.observe(i)?;
            }
        }
        if self.rng.chance(0.003) {
            let i = self.rng.below(self.slots.len() as u64) as usize;
            let until = self.step + self.rng.range(5, 100);
            if let Some(h) = &self.slots[i].host {
                info!(self.logger, "sim: snapshot generation stalls"; "node" => h.id(), "until" => until);
                h.set_snapshot_unavailable(true);
                self.slots[i].snapshot_unavailable_until = Some(until);
            }
        }
        // A store destroys a removed peer some time after the removal.
        for i in 0..self.slots.len() {
            let removed = self.slots[i]
                .host
                .as_ref()
                .is_some_and(|h| self.is_removed(h.id()));
            if removed && self.rng.chance(0.01) {
                self.destroy(i)?;
            }
        }
        if self
            .pending_conf
            .as_ref()
            .is_some_and(|&deadline| self.step >= deadline)
        {
            self.pending_conf = None;
        }
        Ok(())
    }

    fn is_removed(&self, id: u64) -> bool {
        self.ever_member.contains(&id) && !self.members.contains(&id)
    }

    /// Destroys slot `i`'s host, after a last look at its whole log.
    fn destroy(&mut self, i: usize) -> Result<(), Violation> {
        if self.slots[i].host.is_some() {
            self.check_full()?;
        }
        if let Some(h) = self.slots[i].host.take() {
            info!(self.logger, "sim: destroyed removed node"; "node" => h.id());
        }
        self.slots[i].restart_at = None;
        self.slots[i].crashed_at = None;
        self.slots[i].snapshot_unavailable_until = None;
        Ok(())
    }

    fn partition(&mut self) {
        let ids: Vec<u64> = self
            .slots
            .iter()
            .filter_map(|s| s.host.as_ref().map(Host::id))
            .collect();
        if ids.len() < 2 {
            return;
        }
        self.report.partitions += 1;
        let until = self.step + self.rng.range(10, 400);
        self.heal_at = Some(until);
        match self.rng.below(4) {
            0 | 1 => {
                let mut groups = vec![Vec::new(), Vec::new()];
                for &id in &ids {
                    groups[self.rng.below(2) as usize].push(id);
                }
                info!(self.logger, "sim: partition"; "groups" => ?groups, "until" => until);
                self.net.partition(&groups);
            }
            2 => {
                let id = self.rng.pick(&ids).expect("not empty");
                info!(self.logger, "sim: isolate"; "node" => id, "until" => until);
                self.net.partition(&[vec![id]]);
            }
            _ => {
                for _ in 0..self.rng.range(1, 3) {
                    let from = self.rng.pick(&ids).expect("not empty");
                    let to = self.rng.pick(&ids).expect("not empty");
                    if from != to {
                        info!(self.logger, "sim: one-way cut"; "from" => from, "to" => to, "until" => until);
                        self.net.cut_one_way(from, to);
                    }
                }
            }
        }
    }

    /// A crash keeps a majority of the slots running.
    fn can_crash(&self) -> bool {
        let down = self
            .slots
            .iter()
            .filter(|s| s.host.as_ref().is_some_and(|h| !h.is_up()))
            .count();
        down < (self.size - 1) / 2
    }

    fn crash(&mut self, i: usize) {
        // Quick restarts meet the messages sent before the crash still in
        // flight; long ones make the node fall far behind.
        let mut downtime = if self.rng.chance(0.5) {
            self.rng.range(1, 4)
        } else {
            self.rng.range(5, 300)
        };
        if self.lease_reads() {
            // A restarted node forgets the leader it heard and grants votes
            // at once: it must stay down until the lease it gave has run
            // out (see the module doc).
            downtime += self.timing.election_tick as u64;
        }
        let restart_at = self.step + downtime;
        if let Some(h) = self.slots[i].host.as_mut() {
            h.crash();
            self.report.crashes += 1;
            self.slots[i].restart_at = Some(restart_at);
            self.slots[i].crashed_at = Some(self.step);
        }
    }

    fn restart_due(&mut self) -> Result<(), Violation> {
        for i in 0..self.slots.len() {
            if let Some(at) = self.slots[i].snapshot_unavailable_until
                && at <= self.step
            {
                self.slots[i].snapshot_unavailable_until = None;
                if let Some(h) = &self.slots[i].host {
                    h.set_snapshot_unavailable(false);
                }
            }
            if self.slots[i].restart_at.is_some_and(|at| at <= self.step) {
                self.slots[i].restart_at = None;
                self.slots[i].crashed_at = None;
                if let Some(h) = self.slots[i].host.as_mut() {
                    h.restart();
                }
                // A host may campaign at once after a restart (TiKV does for
                // a region it creates): before its first Ready, so before it
                // re-applies what it committed but had not flushed as applied.
                if self.chaos && self.rng.chance(self.profile.campaign_on_restart) {
                    info!(self.logger, "sim: campaign on restart"; "slot" => i);
                    if let Some(n) = self.node_mut(i) {
                        let _ = n.campaign();
                    }
                }
                self.observe(i)?;
            }
        }
        Ok(())
    }

    fn transfer_leader(&mut self) -> Result<(), Violation> {
        let Some(l) = self.leader_slot() else {
            return Ok(());
        };
        let Some(node) = self.slots[l].host.as_ref().and_then(Host::node) else {
            return Ok(());
        };
        let leader_id = node.raft().id();
        let others: Vec<u64> = node
            .raft()
            .prs()
            .keys()
            .copied()
            .filter(|&id| id != leader_id)
            .collect();
        let Some(target) = self.rng.pick(&others) else {
            return Ok(());
        };
        // Now and then ask a follower, which forwards the request.
        let via = if self.rng.chance(0.2) {
            let up = self.up_slots();
            self.rng.pick(&up).unwrap_or(l)
        } else {
            l
        };
        info!(self.logger, "sim: transfer leader"; "leader" => leader_id, "to" => target, "via_slot" => via);
        self.report.transfers += 1;
        self.pending_transfer = Some(target);
        if let Some(n) = self.node_mut(via) {
            n.transfer_leader(target);
        }
        self.observe(via)
    }

    fn change_membership(&mut self) -> Result<(), Violation> {
        if self.pending_conf.is_some() {
            return Ok(());
        }
        let Some(l) = self.leader_slot() else {
            return Ok(());
        };
        let vacant = (0..self.slots.len()).find(|&i| {
            !self.slots[i]
                .host
                .as_ref()
                .is_some_and(|h| self.members.contains(&h.id()))
        });
        let cc = match vacant {
            Some(i) => {
                let joining = self.slots[i]
                    .host
                    .as_ref()
                    .map(Host::id)
                    .filter(|id| !self.ever_member.contains(id));
                let id = match joining {
                    Some(id) => id,
                    None => {
                        let id = self.next_id;
                        self.next_id += 1;
                        let node_seed = self.rng.fork();
                        info!(self.logger, "sim: fresh node"; "slot" => i, "node" => id);
                        self.destroy(i)?;
                        self.slots[i].host = Some(Host::fresh(
                            id,
                            self.timing,
                            self.protocol,
                            node_seed,
                            &self.logger,
                        ));
                        id
                    }
                };
                ConfChange {
                    change_type: ConfChangeType::AddNode as i32,
                    node_id: id,
                    ..Default::default()
                }
            }
            None if self.members.len() == self.size => {
                let id = self.rng.pick(&self.members).expect("not empty");
                ConfChange {
                    change_type: ConfChangeType::RemoveNode as i32,
                    node_id: id,
                    ..Default::default()
                }
            }
            None => return Ok(()),
        };
        let Some(node) = self.node_mut(l) else {
            return Ok(());
        };
        let proposed = node.propose_conf_change(cc.clone()).is_ok();
        info!(self.logger, "sim: propose conf change"; "change" => ?cc.change_type(),
            "node" => cc.node_id, "accepted" => proposed);
        if proposed {
            self.pending_conf = Some(self.step + 500);
        }
        self.observe(l)
    }

    // ---- delivery, ticks, proposals ----

    fn deliver(&mut self) -> Result<(), Violation> {
        let (delivered, dropped) = self.net.take_due(self.step);
        for m in &dropped {
            self.on_dropped(m);
        }
        for m in delivered {
            let (from, to, msg_type) = (m.from, m.to, m.msg_type());
            let target = self
                .slot_of(to)
                .filter(|&i| self.slots[i].host.as_ref().is_some_and(Host::is_up));
            let Some(i) = target else {
                self.on_dropped(&m);
                continue;
            };
            if let Some(n) = self.node_mut(i) {
                // Refused messages (responses from non-members) are part of
                // normal operation.
                let _ = n.step(m);
            }
            self.observe(i)?;
            if msg_type == MessageType::MsgSnapshot
                && self.rng.chance(0.5)
                && let Some(s) = self.slot_of(from)
                && let Some(n) = self.node_mut(s)
            {
                n.report_snapshot(to, SnapshotStatus::Finish);
            }
        }
        Ok(())
    }

    /// Tells the sender about a lost message as a transport would, sometimes.
    fn on_dropped(&mut self, m: &Message) {
        let report = match m.msg_type() {
            MessageType::MsgSnapshot => self.rng.chance(0.5),
            MessageType::MsgAppend => self.rng.chance(0.2),
            _ => false,
        };
        if !report {
            return;
        }
        let Some(i) = self.slot_of(m.from) else {
            return;
        };
        let Some(n) = self.node_mut(i) else {
            return;
        };
        if m.msg_type() == MessageType::MsgSnapshot {
            n.report_snapshot(m.to, SnapshotStatus::Failure);
        } else {
            n.report_unreachable(m.to);
        }
    }

    fn tick_all(&mut self) -> Result<(), Violation> {
        let lease = self.lease_reads();
        for i in self.up_slots() {
            // Clocks drift: now and then a node misses a tick. With lease
            // reads a leader's clock never runs slow (see the module doc);
            // a follower's may, which only lengthens the lease it gives.
            if self.chaos && self.rng.chance(0.02) && !(lease && self.is_leader(i)) {
                continue;
            }
            if let Some(n) = self.node_mut(i) {
                n.tick();
                self.report.ticks += 1;
            }
            self.observe(i)?;
        }
        Ok(())
    }

    fn propose_client(&mut self) -> Result<(), Violation> {
        if !self.rng.chance(self.profile.propose) {
            return Ok(());
        }
        let target = match self.leader_slot() {
            Some(l) if !self.rng.chance(0.1) => Some(l),
            _ => {
                let up = self.up_slots();
                self.rng.pick(&up)
            }
        };
        let Some(i) = target else {
            return Ok(());
        };
        let payload = format!("c{}", self.next_payload).into_bytes();
        self.next_payload += 1;
        self.propose(i, payload)
    }

    fn propose(&mut self, i: usize, payload: Vec<u8>) -> Result<(), Violation> {
        self.proposed_payloads += 1;
        let Some(n) = self.node_mut(i) else {
            return Ok(());
        };
        match n.propose(payload) {
            Ok(()) => self.report.proposals += 1,
            Err(_) => self.report.proposals_dropped += 1,
        }
        self.observe(i)
    }

    /// A client issues a read, usually to a leader, else to any running
    /// node (a follower forwards it to the leader it knows).
    fn read_client(&mut self) -> Result<(), Violation> {
        if !self.rng.chance(self.profile.read) {
            return Ok(());
        }
        let target = match self.leader_slot() {
            Some(l) if !self.rng.chance(0.4) => Some(l),
            _ => {
                let up = self.up_slots();
                self.rng.pick(&up)
            }
        };
        let Some(i) = target else {
            return Ok(());
        };
        let id = self.next_read;
        self.next_read += 1;
        let node = self.slots[i].host.as_ref().map_or(0, Host::id);
        let hosts: Vec<&Host> = self.slots.iter().filter_map(|s| s.host.as_ref()).collect();
        self.checkers.read_issued(id, node, self.step, &hosts)?;
        self.report.reads_issued += 1;
        if let Some(n) = self.node_mut(i) {
            n.read_index(node::read_ctx(id));
        }
        self.observe(i)
    }

    // ---- ready ----

    fn process_readies(&mut self) -> Result<(), Violation> {
        let n = self.slots.len();
        let start = self.rng.below(n as u64) as usize;
        for k in 0..n {
            let i = (start + k) % n;
            let up = self.slots[i].host.as_ref().is_some_and(Host::is_up);
            if !up {
                continue;
            }
            if self.chaos && !self.rng.chance(self.profile.ready) {
                continue;
            }
            let flush = self.rng.chance(self.profile.flush_applied);
            let host = self.slots[i].host.as_mut().expect("up");
            let out = host
                .process_ready(flush)
                .map_err(|d| Violation::new("apply_order", d))?;
            let voted = out.hard_state.is_some_and(|hs| hs.vote != 0);
            let crash_chance = if voted {
                self.profile.crash_after_vote
            } else {
                self.profile.crash_mid_send
            };
            let crash_mid_send = self.chaos && self.rng.chance(crash_chance) && self.can_crash();
            let host = self.slots[i].host.as_ref().expect("up");
            if let Some(index) = out.persisted_from {
                self.checkers.observe_persisted(host, index)?;
            }
            self.checkers.observe_applied(host, &out.applied)?;
            for a in &out.reads {
                self.checkers
                    .observe_read(host.id(), self.step, a, self.proposed_payloads)?;
            }
            self.on_applied(&out.applied);
            let sent = if crash_mid_send {
                self.rng.below(out.messages.len() as u64 + 1) as usize
            } else {
                out.messages.len()
            };
            for m in out.messages.into_iter().take(sent) {
                if m.msg_type() == MessageType::MsgSnapshot {
                    self.report.snapshots_sent += 1;
                }
                if !self.net.send(m.clone(), self.step, &mut self.rng) {
                    self.on_dropped(&m);
                }
            }
            if crash_mid_send {
                info!(self.logger, "sim: crash while sending"; "slot" => i, "sent" => sent);
                self.crash(i);
                continue;
            }
            let threshold = self.profile.compact_threshold;
            if let Some(h) = self.slots[i].host.as_mut()
                && h.maybe_compact(threshold).is_some()
            {
                self.report.compactions += 1;
            }
            self.observe(i)?;
        }
        Ok(())
    }

    /// Follows the membership and the liveness probe in what was applied.
    fn on_applied(&mut self, applied: &[Applied]) {
        for a in applied {
            match a {
                Applied::Entry {
                    entry, conf_state, ..
                } => {
                    if let Some(cs) = conf_state
                        && entry.index > self.members_index
                    {
                        info!(self.logger, "sim: membership"; "index" => entry.index, "members" => ?cs.nodes);
                        self.members = cs.nodes.clone();
                        self.members_index = entry.index;
                        self.ever_member.extend(cs.nodes.iter().copied());
                        self.report.conf_changes += 1;
                        self.pending_conf = None;
                    }
                    if entry.entry_type() == EntryType::EntryNormal
                        && entry.data.starts_with(b"L")
                        && self.liveness_index.is_none()
                    {
                        self.liveness_index = Some(entry.index);
                    }
                }
                Applied::Snapshot { .. } => self.report.snapshots_applied += 1,
            }
        }
    }

    // ---- liveness ----

    /// Stops the faults and waits for a proposal to commit on a majority.
    /// Returns the ticks it took.
    fn liveness(&mut self) -> Result<u64, Violation> {
        info!(self.logger, "sim: liveness phase");
        self.chaos = false;
        self.net.heal();
        self.heal_at = None;
        self.net.set_faults(NetFaults::reliable());
        for i in 0..self.slots.len() {
            let removed = self.slots[i]
                .host
                .as_ref()
                .is_some_and(|h| self.is_removed(h.id()));
            if removed {
                self.destroy(i)?;
                continue;
            }
            self.slots[i].snapshot_unavailable_until = None;
            if let Some(h) = &self.slots[i].host {
                h.set_snapshot_unavailable(false);
            }
            // Crashed hosts restart now; with lease reads, not before the
            // lease they gave ran out.
            let earliest = match self.slots[i].crashed_at {
                Some(at) if self.lease_reads() => at + self.timing.election_tick as u64,
                _ => self.step,
            };
            if self.slots[i].crashed_at.is_some() {
                self.slots[i].restart_at = Some(earliest.max(self.step));
            }
        }
        self.restart_due()?;
        let election = self.timing.election_tick as u64;
        let limit = self.config.liveness_timeouts * election;
        let start = self.step;
        let mut last_proposal: Option<u64> = None;
        let mut probes = 0u64;
        while self.step - start < limit {
            if self.liveness_done() {
                return Ok(self.step - start);
            }
            let due = last_proposal.is_none_or(|at| self.step >= at + 2 * election);
            if due && let Some(l) = self.leader_slot() {
                let payload = format!("L{probes}").into_bytes();
                probes += 1;
                self.proposed_payloads += 1;
                let accepted = self.node_mut(l).is_some_and(|n| n.propose(payload).is_ok());
                if accepted {
                    last_proposal = Some(self.step);
                }
                self.observe(l)?;
            }
            self.step()?;
        }
        Err(Violation::new(
            "liveness",
            format!(
                "no proposal committed on a majority of {:?} within {limit} ticks ({} election \
             timeouts) after the faults stopped; first probe applied at {:?}",
                self.members, self.config.liveness_timeouts, self.liveness_index
            ),
        ))
    }

    fn liveness_done(&self) -> bool {
        let Some(index) = self.liveness_index else {
            return false;
        };
        let applied = self
            .members
            .iter()
            .filter(|&&id| {
                self.slot_of(id)
                    .and_then(|i| self.slots[i].host.as_ref())
                    .is_some_and(|h| h.is_up() && h.state_machine().applied >= index)
            })
            .count();
        applied > self.members.len() / 2
    }
}

/// The run's logger: to stderr with the step number when `enabled`, else
/// discarding (cheaply: nothing is formatted).
fn sim_logger(enabled: bool, seed: u64, step: Arc<AtomicU64>) -> Logger {
    if !enabled {
        return Logger::root(slog::Discard, o!());
    }
    let decorator = slog_term::PlainSyncDecorator::new(std::io::stderr());
    let drain = slog_term::FullFormat::new(decorator)
        .use_custom_timestamp(|_: &mut dyn std::io::Write| Ok(()))
        .build()
        .fuse();
    Logger::root(
        drain,
        o!("seed" => seed, "step" => slog::FnValue(move |_| step.load(Ordering::Relaxed))),
    )
}

#[cfg(test)]
mod tests {
    use raft::Storage;

    use super::*;

    /// A committed entry changed on a host's disk, as a disk or core bug
    /// would, is caught by the whole-log check through `Host`.
    #[test]
    fn a_committed_entry_changed_on_disk_is_caught_by_the_whole_log_check() {
        let config = SimConfig {
            nodes: Some(3),
            ..SimConfig::default()
        };
        let mut sim = Sim::new(7, &config, Arc::new(AtomicU64::new(0)));
        // Run until some host holds on disk a committed entry past its
        // snapshot, with no faults in the way.
        sim.chaos = false;
        sim.net.set_faults(NetFaults::reliable());
        let deadline = 2000;
        let target = loop {
            sim.step().expect("a fault-free run is safe");
            let found = sim
                .slots
                .iter()
                .filter_map(|s| s.host.as_ref())
                .find_map(|h| {
                    let first = h.storage().first_index().ok()?;
                    let index = h.committed().min(h.storage().last_index().ok()?);
                    (index >= first).then_some((h.id(), index))
                });
            if let Some(found) = found {
                break found;
            }
            assert!(sim.step < deadline, "nothing committed in {deadline} steps");
        };
        sim.check_full().expect("nothing changed yet");
        let (id, index) = target;
        let host = sim
            .slots
            .iter()
            .filter_map(|s| s.host.as_ref())
            .find(|h| h.id() == id);
        let storage = host.expect("still there").storage();
        // Rewrite the disk from `index` on with only that entry changed.
        let last = storage.last_index().expect("a last index");
        let mut tail = storage
            .entries(index, last + 1)
            .expect("on disk from the first index");
        tail[0].data = b"corrupt".to_vec();
        storage.append(&tail).expect("replaces the tail");
        let v = sim.check_full().expect_err("a changed committed entry");
        assert_eq!(v.checker, "committed_stable", "{}", v.detail);
        assert!(v.detail.contains(&format!("at {index}")), "{}", v.detail);
    }

    /// Without faults, reads to leaders and followers are answered (and
    /// checked) with either option.
    #[test]
    fn reads_are_answered_with_either_option() {
        for option in [ReadOnlyOption::Safe, ReadOnlyOption::LeaseBased] {
            let config = SimConfig {
                nodes: Some(3),
                read_only: Some(option),
                ..SimConfig::default()
            };
            let mut sim = Sim::new(11, &config, Arc::new(AtomicU64::new(0)));
            sim.chaos = false;
            sim.net.set_faults(NetFaults::reliable());
            sim.profile.read = 1.0;
            for _ in 0..300 {
                sim.step().expect("a fault-free run is safe");
            }
            let (issued, answered) = (sim.report.reads_issued, sim.checkers.reads_answered());
            assert_eq!(sim.protocol.read_only, option);
            // All but those still in flight, and those asked before the
            // first leader was elected or had its lease.
            assert!(
                answered + 30 >= issued && answered > 200,
                "{option:?}: {answered} of {issued} reads answered"
            );
        }
    }
}
