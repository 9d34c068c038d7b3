//! `Config`: the raftstore's tunables, with defaults that suit a laptop.

use std::time::Duration;

/// The raftstore's configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// How often a peer's Raft clock ticks.
    pub raft_base_tick_interval: Duration,
    /// Ticks between a leader's heartbeats.
    pub raft_heartbeat_ticks: usize,
    /// Ticks without a leader before a follower campaigns (randomized up to 2x).
    pub raft_election_timeout_ticks: usize,
    /// Raft ticks between checks whether the log should be compacted.
    pub raft_log_gc_tick_ticks: usize,
    /// Compact when more than this many applied entries are kept.
    pub raft_log_gc_count_limit: u64,
    /// Compact when the kept log is larger than this many bytes (estimated).
    pub raft_log_gc_size_limit: u64,
    /// Raft ticks between region heartbeats to the scheduler (leaders only).
    pub scheduler_heartbeat_ticks: usize,
    /// Interval of the store's heartbeat to the scheduler.
    pub store_heartbeat_interval: Duration,
    /// Raft messages and commands a peer may have queued before more are
    /// dropped (raft) or refused with `ServerIsBusy` (commands).
    pub mailbox_limit: usize,
    /// Largest value (bytes) a Put may carry; bigger ones are refused.
    pub max_value_size: usize,
    /// Interval of the store's sweep for snapshot files nobody needs.
    pub snap_gc_interval: Duration,
    /// A leader reports a follower it has not heard from for longer than
    /// this as down in its region heartbeats (the scheduler replaces it).
    pub max_peer_down_duration: Duration,
    /// A region whose data (keys plus values of the default CF) grows past
    /// this many bytes is split (TinyKV: 144 MiB).
    pub region_max_size: u64,
    /// Where a split cuts: the first key at which the running size of the
    /// region's data passes this many bytes (TinyKV: 96 MiB). Below
    /// `region_max_size`, so both halves are smaller than the whole.
    pub region_split_size: u64,
    /// Raft ticks between a leader's checks whether its region should split.
    pub split_region_check_tick_interval: usize,
    /// A client session idle for longer than this (by the session clock the
    /// log carries, `operation/session.rs`) is dropped; its client's next
    /// write gets `SessionExpired`. The leader's value is stamped into each
    /// session command, so replicas configured differently still agree.
    pub client_session_ttl: Duration,
    /// The most client sessions a region keeps; opening one more drops the
    /// least recently active. Stamped like `client_session_ttl`.
    pub max_client_sessions: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            raft_base_tick_interval: Duration::from_millis(100),
            raft_heartbeat_ticks: 2,
            raft_election_timeout_ticks: 10,
            raft_log_gc_tick_ticks: 10,
            raft_log_gc_count_limit: 10_000,
            raft_log_gc_size_limit: 64 * 1024 * 1024,
            scheduler_heartbeat_ticks: 10,
            store_heartbeat_interval: Duration::from_secs(10),
            mailbox_limit: 4096,
            max_value_size: 8 * 1024 * 1024,
            snap_gc_interval: Duration::from_secs(60),
            max_peer_down_duration: Duration::from_secs(5 * 60),
            region_max_size: 144 * 1024 * 1024,
            region_split_size: 96 * 1024 * 1024,
            split_region_check_tick_interval: 100,
            client_session_ttl: Duration::from_secs(60 * 60),
            max_client_sessions: 10_000,
        }
    }
}

impl Config {
    /// A configuration for tests: fast ticks, small limits. The region
    /// sizes stay at their defaults, far above what a test writes, so no
    /// region splits unless a test lowers them (`with_small_regions`).
    pub fn for_tests() -> Self {
        Config {
            raft_base_tick_interval: Duration::from_millis(10),
            raft_log_gc_count_limit: 1000,
            raft_log_gc_size_limit: 8 * 1024 * 1024,
            store_heartbeat_interval: Duration::from_millis(200),
            snap_gc_interval: Duration::from_millis(500),
            max_peer_down_duration: Duration::from_secs(2),
            split_region_check_tick_interval: 10,
            ..Default::default()
        }
    }

    /// This configuration with regions split at `split_size` bytes once
    /// they pass `max_size` (TinyKV's split tests use 400 / 300 bytes), and
    /// checked every few ticks.
    pub fn with_small_regions(mut self, max_size: u64, split_size: u64) -> Self {
        self.region_max_size = max_size;
        self.region_split_size = split_size;
        self.split_region_check_tick_interval = 5;
        self
    }
}
