//! `Progress`: what a leader knows of one follower's log.
//!
//! ```text
//!            matched       next
//!  follower: ...|...........|            entries the leader believes it has
//!  leader:   ...|...........|.........|  last_index
//! ```
//!
//! A follower's progress is in one of three states:
//!
//! ```text
//!            append acked                    snapshot needed
//!   Probe ----------------------> Replicate ---------------> Snapshot
//!     ^  <-- append rejected ------'                            |
//!     '----- snapshot acked, reported failed or timed out -------'
//! ```
//!
//! - `Probe`: the leader does not know where the logs meet; it sends one
//!   append from `next` and waits for an answer (or the next heartbeat
//!   response) before sending again, so an unreachable follower does not
//!   get a growing batch re-sent with every proposal.
//! - `Replicate`: the logs meet at `matched`; the leader streams new entries
//!   and moves `next` past what it sent without waiting.
//! - `Snapshot`: a snapshot is in flight; no appends are sent until it lands,
//!   fails, or an election timeout passes (a lost snapshot is retried).
//!
//! Invariant: `matched < next`; `matched` never decreases within a term.

/// The replication state of one follower, as its leader sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ProgressState {
    /// Looking for the point where the logs meet.
    #[default]
    Probe,
    /// Streaming entries optimistically.
    Replicate,
    /// Waiting for a snapshot to be applied.
    Snapshot,
}

/// A leader's view of one peer's replication.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Progress {
    /// The highest index known to be replicated on the peer.
    pub(crate) matched: u64,
    /// The index of the next entry to send.
    pub(crate) next: u64,
    /// The replication state.
    pub(crate) state: ProgressState,
    /// In `Probe` state: an append was sent and not answered yet.
    pub(crate) probe_sent: bool,
    /// In `Snapshot` state: the index of the snapshot in flight.
    pub(crate) pending_snapshot: u64,
    /// In `Snapshot` state: ticks since the snapshot was sent.
    pub(crate) snapshot_elapsed: usize,
    /// The highest commit index the peer reported in its answers (0 until
    /// it answers in this term). A peer that leaves it unset reads as 0.
    pub(crate) committed: u64,
    /// CheckQuorum: the peer answered since the leader's last quorum check
    /// (an append or heartbeat response; a read request is not proof, as a
    /// follower may pass on another node's). The leader clears it every
    /// election timeout; its own entry stays true.
    pub(crate) recent_active: bool,
}

impl Progress {
    /// A peer assumed to be at `matched`, to be sent `next` first.
    pub fn new(matched: u64, next: u64) -> Self {
        Progress {
            matched,
            next,
            ..Default::default()
        }
    }

    /// The highest index known to be replicated on the peer.
    pub fn matched(&self) -> u64 {
        self.matched
    }

    /// The index of the next entry to send.
    pub fn next_idx(&self) -> u64 {
        self.next
    }

    /// The replication state.
    pub fn state(&self) -> ProgressState {
        self.state
    }

    /// The highest commit index the peer reported, so the leader knows
    /// which committed entries the peer knows to be committed.
    pub fn committed(&self) -> u64 {
        self.committed
    }

    /// Whether the peer answered since the leader's last quorum check.
    pub fn recent_active(&self) -> bool {
        self.recent_active
    }

    /// Records the commit index carried by the peer's answer.
    pub(crate) fn update_committed(&mut self, committed: u64) {
        self.committed = self.committed.max(committed);
    }

    /// Records an acknowledged append up to `index`. Returns whether `matched` grew.
    pub(crate) fn maybe_update(&mut self, index: u64) -> bool {
        let updated = index > self.matched;
        if updated {
            self.matched = index;
        }
        self.probe_sent = false;
        self.next = self.next.max(index + 1);
        match self.state {
            ProgressState::Probe => self.state = ProgressState::Replicate,
            ProgressState::Snapshot if self.matched >= self.pending_snapshot => {
                self.become_probe();
                self.state = ProgressState::Replicate;
            }
            _ => {}
        }
        updated
    }

    /// Records that entries up to `last` were sent (optimistic in `Replicate`).
    pub(crate) fn sent_to(&mut self, last: u64) {
        match self.state {
            ProgressState::Replicate => self.next = self.next.max(last + 1),
            ProgressState::Probe => self.probe_sent = true,
            ProgressState::Snapshot => {}
        }
    }

    /// Handles a rejected append whose previous entry was `rejected`; the
    /// follower's last index is `hint`. Returns false for a stale rejection
    /// (an answer to an append already superseded) that needs no action.
    pub(crate) fn maybe_decr_to(&mut self, rejected: u64, hint: u64) -> bool {
        if rejected <= self.matched {
            return false;
        }
        match self.state {
            ProgressState::Replicate => {
                self.next = rejected.min(hint + 1).max(self.matched + 1);
                self.state = ProgressState::Probe;
                self.probe_sent = false;
                true
            }
            ProgressState::Probe if rejected + 1 == self.next => {
                self.next = rejected.min(hint + 1).max(self.matched + 1);
                self.probe_sent = false;
                true
            }
            _ => false,
        }
    }

    /// Records a snapshot at `index` sent to the peer.
    pub(crate) fn become_snapshot(&mut self, index: u64) {
        self.state = ProgressState::Snapshot;
        self.pending_snapshot = index;
        self.snapshot_elapsed = 0;
    }

    /// Back to probing: after a snapshot lands, fails or times out, or a
    /// rejection shows the logs diverge.
    pub(crate) fn become_probe(&mut self) {
        if self.state == ProgressState::Snapshot {
            self.next = (self.matched + 1).max(self.pending_snapshot + 1);
        } else {
            self.next = self.matched + 1;
        }
        self.state = ProgressState::Probe;
        self.probe_sent = false;
        self.pending_snapshot = 0;
        self.snapshot_elapsed = 0;
    }

    /// Whether the leader should hold appends to this peer.
    pub(crate) fn is_paused(&self) -> bool {
        match self.state {
            ProgressState::Probe => self.probe_sent,
            ProgressState::Replicate => false,
            ProgressState::Snapshot => true,
        }
    }

    /// A heartbeat response shows the peer is reachable: probe again.
    pub(crate) fn resume_probe(&mut self) {
        self.probe_sent = false;
    }
}
