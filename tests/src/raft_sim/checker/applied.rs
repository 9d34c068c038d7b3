//! `state_machine_safety`: no two nodes apply different entries, or reach
//! different states, at one index (Raft paper §5.4.3).
//!
//! `AppliedLog` keeps, for every index any node applied, the entry and the
//! state machine digest after it, for the whole run. A snapshot a node
//! installs must be of a state some node reached by applying entries.

use std::collections::BTreeMap;

use super::{EntryId, Violation};
use crate::raft_sim::node::{INIT_INDEX, INIT_TERM};

/// The entry applied at each index, and the state after it.
#[derive(Debug)]
pub(super) struct AppliedLog {
    applied: BTreeMap<u64, (EntryId, u64)>,
}

impl Default for AppliedLog {
    fn default() -> Self {
        let mut applied = BTreeMap::new();
        // Every initial member starts from the same bootstrap snapshot.
        applied.insert(
            INIT_INDEX,
            (
                EntryId {
                    term: INIT_TERM,
                    hash: 0,
                },
                0,
            ),
        );
        AppliedLog { applied }
    }
}

impl AppliedLog {
    /// The highest index applied by any node.
    pub fn max_index(&self) -> u64 {
        self.applied.last_key_value().map_or(0, |(&i, _)| i)
    }

    /// The state digest some node reached at `index`, if one applied it.
    pub fn digest_at(&self, index: u64) -> Option<u64> {
        self.applied.get(&index).map(|&(_, digest)| digest)
    }

    /// Node `node` applied `id` at `index`, reaching state `digest`.
    pub fn entry(
        &mut self,
        node: u64,
        index: u64,
        id: EntryId,
        digest: u64,
    ) -> Result<(), Violation> {
        match self.applied.get(&index) {
            Some(&(seen, seen_digest)) if seen != id || seen_digest != digest => {
                Err(Violation::new(
                    "state_machine_safety",
                    format!(
                        "node {node} applied at {index} entry {id:?} (state {digest:#x}), \
                         another node applied {seen:?} (state {seen_digest:#x})"
                    ),
                ))
            }
            Some(_) => Ok(()),
            None => {
                self.applied.insert(index, (id, digest));
                Ok(())
            }
        }
    }

    /// Node `node` installed a snapshot at `index` of `term`, of state `digest`.
    pub fn snapshot(&self, node: u64, index: u64, term: u64, digest: u64) -> Result<(), Violation> {
        match self.applied.get(&index) {
            Some(&(seen, seen_digest)) if seen.term == term && seen_digest == digest => Ok(()),
            Some(&(seen, seen_digest)) => Err(Violation::new(
                "state_machine_safety",
                format!(
                    "node {node} applied a snapshot at {index} (term {term}, state \
                     {digest:#x}), but entry {index} applied elsewhere has term {} and state \
                     {seen_digest:#x}",
                    seen.term
                ),
            )),
            None => Err(Violation::new(
                "state_machine_safety",
                format!(
                    "node {node} applied a snapshot at {index} (term {term}) of a state no \
                     node applied"
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn different_entries_or_states_at_one_index_are_rejected() {
        let mut log = AppliedLog::default();
        let id = EntryId { term: 6, hash: 1 };
        log.entry(1, 6, id, 11).unwrap();
        log.entry(2, 6, id, 11).unwrap();
        let v = log.entry(3, 6, id, 12).unwrap_err();
        assert_eq!(v.checker, "state_machine_safety");
        let v = log
            .entry(3, 6, EntryId { term: 6, hash: 2 }, 11)
            .unwrap_err();
        assert_eq!(v.checker, "state_machine_safety");
        log.snapshot(4, 6, 6, 11).expect("a state node 1 reached");
        log.snapshot(4, INIT_INDEX, INIT_TERM, 0)
            .expect("the bootstrap state");
        assert!(log.snapshot(4, 6, 6, 12).is_err());
        assert!(log.snapshot(4, 7, 6, 11).is_err());
    }
}
