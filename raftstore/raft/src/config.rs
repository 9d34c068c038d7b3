//! `Config`: how a Raft node is set up.
//!
//! PreVote, CheckQuorum and ReadIndex's lease mode are off by default, so a
//! node behaves as TinyKV's raft does and talks to TinyKV peers unchanged.

use crate::errors::{Error, Result};

/// How a leader confirms a read index (Raft thesis §6.4).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ReadOnlyOption {
    /// A quorum answers a heartbeat round sent after the request: correct
    /// whatever the clocks do. One round confirms every read queued before it.
    #[default]
    Safe,
    /// The leader answers at once while its lease holds: a quorum echoed a
    /// heartbeat it made less than an election timeout ago, so CheckQuorum
    /// keeps them from electing anyone else yet (see `read_only`). Correct
    /// only if no node's clock runs faster than the leader's and a restarted
    /// node stays down for an election timeout; needs followers that echo
    /// heartbeat contexts, and requires `check_quorum`.
    LeaseBased,
}

/// The parameters of one Raft node.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// This node's id; never 0.
    pub id: u64,
    /// The group's members for a brand-new node. Ignored when the storage
    /// already has a membership: a restarted node takes it from storage.
    pub peers: Vec<u64>,
    /// Ticks a follower waits without hearing from a leader before it
    /// campaigns; the actual timeout is drawn from
    /// `[election_tick, 2 * election_tick)` at every reset.
    pub election_tick: usize,
    /// Ticks between a leader's heartbeats; smaller than `election_tick`.
    pub heartbeat_tick: usize,
    /// The last index the host applied before a restart; entries up to it
    /// are not handed out again.
    pub applied: u64,
    /// Seed for the randomized election timeout. `None` derives one from the
    /// node id and the clock; tests and simulations pass a seed to be repeatable.
    pub rng_seed: Option<u64>,
    /// PreVote (Raft thesis §9.6): a node whose election timer fires first
    /// asks whether it could win, without changing its term, so a node that
    /// was partitioned away does not unseat a working leader on its return.
    pub pre_vote: bool,
    /// CheckQuorum: a leader that has not heard from a quorum within an
    /// election timeout steps down, and a node that heard from a leader
    /// within an election timeout ignores vote requests (the leader's lease).
    pub check_quorum: bool,
    /// How read-index requests are confirmed.
    pub read_only_option: ReadOnlyOption,
}

impl Config {
    /// A config for node `id` with the default tick counts (election 10, heartbeat 2).
    pub fn new(id: u64) -> Self {
        Config {
            id,
            election_tick: 10,
            heartbeat_tick: 2,
            ..Default::default()
        }
    }

    /// Checks the config, saying what is wrong.
    pub fn validate(&self) -> Result<()> {
        if self.id == 0 {
            return Err(Error::ConfigInvalid("id must not be 0".into()));
        }
        if self.heartbeat_tick == 0 {
            return Err(Error::ConfigInvalid(
                "heartbeat_tick must be greater than 0".into(),
            ));
        }
        if self.election_tick <= self.heartbeat_tick {
            return Err(Error::ConfigInvalid(format!(
                "election_tick ({}) must be greater than heartbeat_tick ({})",
                self.election_tick, self.heartbeat_tick
            )));
        }
        if self.read_only_option == ReadOnlyOption::LeaseBased && !self.check_quorum {
            // Without CheckQuorum a deposed leader never learns it lost its
            // lease, and would answer reads from a stale state.
            return Err(Error::ConfigInvalid(
                "read_only_option LeaseBased requires check_quorum".into(),
            ));
        }
        if self.peers.contains(&0) {
            return Err(Error::ConfigInvalid("peer id 0 is reserved".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lease-based read without CheckQuorum is refused with a clear error;
    /// with it the config is valid.
    #[test]
    fn lease_based_reads_require_check_quorum() {
        let mut cfg = Config {
            read_only_option: ReadOnlyOption::LeaseBased,
            ..Config::new(1)
        };
        match cfg.validate() {
            Err(Error::ConfigInvalid(msg)) => assert!(msg.contains("check_quorum"), "{msg}"),
            other => panic!("expected ConfigInvalid, got {other:?}"),
        }
        cfg.check_quorum = true;
        assert_eq!(cfg.validate(), Ok(()));
        assert_eq!(Config::new(1).read_only_option, ReadOnlyOption::Safe);
        assert!(!Config::new(1).pre_vote && !Config::new(1).check_quorum);
    }
}
