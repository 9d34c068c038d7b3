//! `Network`: the messages in flight between simulated nodes.
//!
//! A message handed to `send` is dropped, or queued (once, or twice when
//! duplicated) for delivery at a random later step; different delays reorder
//! messages between any two nodes. A partition splits the nodes into groups,
//! and a one-way cut blocks one direction of one link: a message crossing
//! either is lost, whether it is cut when sent or while in flight.
//!
//! ```text
//!  send(m) ──▶ lost? ──▶ in_flight[(deliver_at, seq)] ──▶ take_due(now) ──▶ still connected? ──▶ delivered
//!               │ (loss, cut)        │ duplicated: a second copy, own delay        │ no
//!               ▼                                                                  ▼
//!             dropped                                                            dropped
//! ```
//!
//! Every choice comes from the `SimRng` the caller passes, and `in_flight`
//! is ordered by (delivery step, send order), so a seed replays exactly.

use std::collections::{BTreeMap, BTreeSet};

use raft::eraftpb::Message;

use super::rng::SimRng;

/// How unreliable the network is right now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NetFaults {
    /// Probability that a message is lost.
    pub loss: f64,
    /// Probability that a message is delivered twice.
    pub duplicate: f64,
    /// Largest delay of a message, in steps (at least 1).
    pub max_delay: u64,
    /// Probability that a message is held back ten times longer than usual,
    /// to arrive long after the state it describes has moved on.
    pub long_delay: f64,
}

impl NetFaults {
    /// A reliable network: nothing lost or duplicated, delivered next step.
    pub fn reliable() -> Self {
        NetFaults {
            loss: 0.0,
            duplicate: 0.0,
            max_delay: 1,
            long_delay: 0.0,
        }
    }
}

/// Counters of what happened to messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetStats {
    /// Messages handed to `send`.
    pub sent: u64,
    /// Messages delivered (duplicates count twice).
    pub delivered: u64,
    /// Messages lost to loss or cuts.
    pub dropped: u64,
    /// Extra copies queued.
    pub duplicated: u64,
}

/// The simulated network.
#[derive(Debug)]
pub struct Network {
    /// Messages in flight by (delivery step, send sequence number).
    in_flight: BTreeMap<(u64, u64), Message>,
    seq: u64,
    /// Partition group of each node; nodes not listed are in group 0.
    /// Empty when there is no partition.
    groups: BTreeMap<u64, u32>,
    /// Directed links (from, to) that lose everything.
    cut: BTreeSet<(u64, u64)>,
    faults: NetFaults,
    stats: NetStats,
}

impl Default for Network {
    fn default() -> Self {
        Self::new()
    }
}

impl Network {
    /// An empty, reliable network.
    pub fn new() -> Self {
        Network {
            in_flight: BTreeMap::new(),
            seq: 0,
            groups: BTreeMap::new(),
            cut: BTreeSet::new(),
            faults: NetFaults::reliable(),
            stats: NetStats::default(),
        }
    }

    /// Sets how unreliable the network is from now on.
    pub fn set_faults(&mut self, faults: NetFaults) {
        self.faults = faults;
    }

    /// The current unreliability.
    pub fn faults(&self) -> NetFaults {
        self.faults
    }

    /// The counters so far.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// How many messages are in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// Splits the nodes into `groups`; nodes in no group form one more.
    pub fn partition(&mut self, groups: &[Vec<u64>]) {
        self.groups.clear();
        for (g, members) in groups.iter().enumerate() {
            for &id in members {
                self.groups.insert(id, g as u32 + 1);
            }
        }
    }

    /// Blocks messages from `from` to `to` (one direction only).
    pub fn cut_one_way(&mut self, from: u64, to: u64) {
        self.cut.insert((from, to));
    }

    /// Whether a partition or a cut is in force.
    pub fn is_split(&self) -> bool {
        !self.groups.is_empty() || !self.cut.is_empty()
    }

    /// Lifts every partition and cut.
    pub fn heal(&mut self) {
        self.groups.clear();
        self.cut.clear();
    }

    /// Whether a message from `from` can reach `to` now.
    pub fn connected(&self, from: u64, to: u64) -> bool {
        let group = |id| self.groups.get(&id).copied().unwrap_or(0);
        group(from) == group(to) && !self.cut.contains(&(from, to))
    }

    /// Sends `m` sent at step `now`. Returns false if it was lost at once.
    pub fn send(&mut self, m: Message, now: u64, rng: &mut SimRng) -> bool {
        self.stats.sent += 1;
        if !self.connected(m.from, m.to) || rng.chance(self.faults.loss) {
            self.stats.dropped += 1;
            return false;
        }
        if rng.chance(self.faults.duplicate) {
            self.stats.duplicated += 1;
            let at = self.delivery_step(now, rng);
            self.enqueue(at, m.clone());
        }
        let at = self.delivery_step(now, rng);
        self.enqueue(at, m);
        true
    }

    fn delivery_step(&self, now: u64, rng: &mut SimRng) -> u64 {
        let max = self.faults.max_delay.max(1);
        let max = if rng.chance(self.faults.long_delay) {
            max * 10
        } else {
            max
        };
        now + rng.range(1, max)
    }

    fn enqueue(&mut self, at: u64, m: Message) {
        self.seq += 1;
        self.in_flight.insert((at, self.seq), m);
    }

    /// Takes the messages due at or before step `now`, in delivery order.
    /// Returns (delivered, dropped because a cut now separates the ends).
    pub fn take_due(&mut self, now: u64) -> (Vec<Message>, Vec<Message>) {
        let mut delivered = Vec::new();
        let mut dropped = Vec::new();
        while let Some(entry) = self.in_flight.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let m = entry.remove();
            if self.connected(m.from, m.to) {
                self.stats.delivered += 1;
                delivered.push(m);
            } else {
                self.stats.dropped += 1;
                dropped.push(m);
            }
        }
        (delivered, dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(from: u64, to: u64) -> Message {
        Message {
            from,
            to,
            ..Default::default()
        }
    }

    #[test]
    fn reliable_network_delivers_next_step() {
        let mut net = Network::new();
        let mut rng = SimRng::new(1);
        assert!(net.send(msg(1, 2), 0, &mut rng));
        assert!(net.take_due(0).0.is_empty());
        let (delivered, dropped) = net.take_due(1);
        assert_eq!(delivered.len(), 1);
        assert!(dropped.is_empty());
    }

    #[test]
    fn partition_drops_in_flight_and_new_messages() {
        let mut net = Network::new();
        let mut rng = SimRng::new(1);
        assert!(net.send(msg(1, 2), 0, &mut rng));
        net.partition(&[vec![1]]);
        assert!(!net.send(msg(2, 1), 0, &mut rng));
        assert!(net.send(msg(2, 3), 0, &mut rng));
        let (delivered, dropped) = net.take_due(1);
        assert_eq!(delivered.len(), 1);
        assert_eq!(dropped.len(), 1);
        net.heal();
        net.cut_one_way(1, 2);
        assert!(!net.send(msg(1, 2), 1, &mut rng));
        assert!(net.send(msg(2, 1), 1, &mut rng));
    }
}
