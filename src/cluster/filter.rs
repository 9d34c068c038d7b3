//! Network filters of the in-process cluster: each decides, per raft
//! message, whether it gets through. They wrap the real transport path (a message
//! that passes is delivered through the target store's router), in the
//! spirit of TinyKV's `filter.go` — with every random choice seeded.

use std::collections::HashSet;
use std::time::Duration;

use kvproto::eraftpb::MessageType;
use kvproto::raft_serverpb::RaftMessage;

use crate::rng::SplitMix64;

/// Decides whether one message passes, and how late.
pub trait Filter: Send + Sync {
    /// True lets `msg` through. `rng` is the network's seeded generator.
    fn allow(&self, msg: &RaftMessage, rng: &mut SplitMix64) -> bool;

    /// How long a message that passes is held before delivery.
    fn delay(&self, _msg: &RaftMessage, _rng: &mut SplitMix64) -> Duration {
        Duration::ZERO
    }
}

fn stores(msg: &RaftMessage) -> (u64, u64) {
    (
        msg.from_peer.map_or(0, |p| p.store_id),
        msg.to_peer.map_or(0, |p| p.store_id),
    )
}

/// Splits the stores into groups; messages cross no group boundary.
pub struct PartitionFilter {
    groups: Vec<HashSet<u64>>,
}

impl PartitionFilter {
    /// Stores in the same inner list can talk; stores in no list talk to nobody.
    pub fn new(groups: Vec<Vec<u64>>) -> Self {
        PartitionFilter {
            groups: groups
                .into_iter()
                .map(|g| g.into_iter().collect())
                .collect(),
        }
    }
}

impl Filter for PartitionFilter {
    fn allow(&self, msg: &RaftMessage, _: &mut SplitMix64) -> bool {
        let (from, to) = stores(msg);
        self.groups
            .iter()
            .any(|g| g.contains(&from) && g.contains(&to))
    }
}

/// Cuts one store off from everyone.
pub struct IsolateFilter(pub u64);

impl Filter for IsolateFilter {
    fn allow(&self, msg: &RaftMessage, _: &mut SplitMix64) -> bool {
        let (from, to) = stores(msg);
        from != self.0 && to != self.0
    }
}

/// Drops each message with probability `percent`/100.
pub struct DropFilter {
    /// Share of messages dropped, in percent.
    pub percent: u32,
}

impl Filter for DropFilter {
    fn allow(&self, _: &RaftMessage, rng: &mut SplitMix64) -> bool {
        rng.below(100) >= u64::from(self.percent)
    }
}

/// Drops every message of one type.
pub struct DropTypeFilter(pub MessageType);

impl Filter for DropTypeFilter {
    fn allow(&self, msg: &RaftMessage, _: &mut SplitMix64) -> bool {
        msg.message.as_ref().is_none_or(|m| m.msg_type() != self.0)
    }
}

/// Delays every message by a random time up to `max`, so messages overtake
/// each other; none is dropped.
pub struct DelayFilter {
    /// The longest delay.
    pub max: Duration,
}

impl Filter for DelayFilter {
    fn allow(&self, _: &RaftMessage, _: &mut SplitMix64) -> bool {
        true
    }

    fn delay(&self, _: &RaftMessage, rng: &mut SplitMix64) -> Duration {
        let max_micros = self.max.as_micros().max(1) as u64;
        Duration::from_micros(rng.below(max_micros + 1))
    }
}
