//! `Config`: how a Raft node is set up.

use crate::errors::{Error, Result};

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
        if self.peers.contains(&0) {
            return Err(Error::ConfigInvalid("peer id 0 is reserved".into()));
        }
        Ok(())
    }
}
