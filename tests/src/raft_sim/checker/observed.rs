//! `Observed`: what the checkers may read of one node, so that they run on
//! a simulated `Host` and, in their unit tests, on a hand-built history.
//!
//! A running node shows its in-memory state (log with its unstable tail,
//! committed index, term); a crashed one shows what is on its disk.
//!
//! Invariants an implementation keeps (the core's `RaftLog` keeps them):
//! - `log_bounds() = (first, last)` with `first >= 1` and `first <= last + 1`.
//! - `entry_term(first - 1)` is the term of the snapshot the log starts
//!   after (the compacted prefix, all of it committed); `entry_term(i)` for
//!   `first <= i <= last` is entry `i`'s term; other indexes give `None`.

use kvproto::eraftpb::Entry;
use raft::StateRole;

use crate::raft_sim::node::Host;

/// One node as the checkers see it.
pub trait Observed {
    /// The node id.
    fn id(&self) -> u64;
    /// How many times the node was started; the commit index may move back
    /// only across a restart.
    fn incarnation(&self) -> u64;
    /// Whether it is running.
    fn is_up(&self) -> bool;
    /// Its current term (the persisted one while crashed).
    fn current_term(&self) -> u64;
    /// Whether it is running as leader (of `current_term`).
    fn is_leader(&self) -> bool;
    /// Its committed index.
    fn committed(&self) -> u64;
    /// The first and last index of its log.
    fn log_bounds(&self) -> (u64, u64);
    /// The term of entry `index`, or of the snapshot at `first - 1`.
    fn entry_term(&self, index: u64) -> Option<u64>;
    /// Entries `[low, high)`, with `first <= low` and `high <= last + 1`.
    fn entries(&self, low: u64, high: u64) -> Result<Vec<Entry>, String>;
}

impl Observed for Host {
    fn id(&self) -> u64 {
        Host::id(self)
    }

    fn incarnation(&self) -> u64 {
        Host::incarnation(self)
    }

    fn is_up(&self) -> bool {
        Host::is_up(self)
    }

    fn current_term(&self) -> u64 {
        match self.node() {
            Some(n) => n.raft().term(),
            None => self.storage().hard_state().term,
        }
    }

    fn is_leader(&self) -> bool {
        self.node()
            .is_some_and(|n| n.raft().state() == StateRole::Leader)
    }

    fn committed(&self) -> u64 {
        Host::committed(self)
    }

    fn log_bounds(&self) -> (u64, u64) {
        Host::log_bounds(self)
    }

    fn entry_term(&self, index: u64) -> Option<u64> {
        self.term(index)
    }

    fn entries(&self, low: u64, high: u64) -> Result<Vec<Entry>, String> {
        Host::entries(self, low, high)
    }
}

/// Hand-built nodes for the checkers' unit tests.
#[cfg(test)]
pub(super) mod fake {
    use kvproto::eraftpb::Entry;

    use super::Observed;

    /// A node whose every field the test sets.
    #[derive(Debug, Clone)]
    pub struct FakeNode {
        pub id: u64,
        pub incarnation: u64,
        pub up: bool,
        pub term: u64,
        pub leader: bool,
        pub committed: u64,
        /// The snapshot the log starts after: (index, term).
        pub snapshot: (u64, u64),
        /// Entries from `snapshot.0 + 1` on.
        pub entries: Vec<Entry>,
    }

    /// An entry with a payload naming it.
    pub fn entry(index: u64, term: u64, payload: &str) -> Entry {
        Entry {
            index,
            term,
            data: payload.as_bytes().to_vec(),
            ..Default::default()
        }
    }

    impl FakeNode {
        /// Node `id` in `term`, its log after snapshot `snapshot` holding
        /// entries of the given terms (payloads `"<index>@<term>"`).
        pub fn new(id: u64, term: u64, snapshot: (u64, u64), terms: &[u64]) -> FakeNode {
            let entries = terms
                .iter()
                .enumerate()
                .map(|(k, &t)| {
                    let index = snapshot.0 + 1 + k as u64;
                    entry(index, t, &format!("{index}@{t}"))
                })
                .collect();
            FakeNode {
                id,
                incarnation: 1,
                up: true,
                term,
                leader: false,
                committed: snapshot.0,
                snapshot,
                entries,
            }
        }

        /// The same node, committed up to `index`.
        pub fn committed_to(mut self, index: u64) -> FakeNode {
            self.committed = index;
            self
        }

        /// The same node as leader of its term.
        pub fn leader(mut self) -> FakeNode {
            self.leader = true;
            self
        }

        /// Replaces entry `index` (which must be in the log).
        pub fn set(&mut self, e: Entry) {
            let k = (e.index - self.snapshot.0 - 1) as usize;
            self.entries[k] = e;
        }

        /// Drops every entry from `index` on.
        pub fn truncate(&mut self, index: u64) {
            self.entries
                .truncate((index - self.snapshot.0 - 1) as usize);
        }
    }

    impl Observed for FakeNode {
        fn id(&self) -> u64 {
            self.id
        }
        fn incarnation(&self) -> u64 {
            self.incarnation
        }
        fn is_up(&self) -> bool {
            self.up
        }
        fn current_term(&self) -> u64 {
            self.term
        }
        fn is_leader(&self) -> bool {
            self.up && self.leader
        }
        fn committed(&self) -> u64 {
            self.committed
        }
        fn log_bounds(&self) -> (u64, u64) {
            (
                self.snapshot.0 + 1,
                self.snapshot.0 + self.entries.len() as u64,
            )
        }
        fn entry_term(&self, index: u64) -> Option<u64> {
            if index == self.snapshot.0 {
                return Some(self.snapshot.1);
            }
            let k = index.checked_sub(self.snapshot.0 + 1)?;
            self.entries.get(k as usize).map(|e| e.term)
        }
        fn entries(&self, low: u64, high: u64) -> Result<Vec<Entry>, String> {
            let (first, last) = self.log_bounds();
            if low < first || high > last + 1 || low > high {
                return Err(format!(
                    "node {} cannot read entries [{low}, {high}) of [{first}, {last}]",
                    self.id
                ));
            }
            let k = (low - first) as usize;
            Ok(self.entries[k..k + (high - low) as usize].to_vec())
        }
    }
}
