//! `Checkers`: Raft's safety properties (Raft paper §5.2–§5.4, Figure 3),
//! each a named check run against every host after every simulation step,
//! or against every event as it happens.
//!
//! | checker | property |
//! |---|---|
//! | `election_safety` | at most one leader per term, over the whole run |
//! | `leader_completeness` | a leader of term T holds every entry known committed before T |
//! | `log_matching` | two logs with an entry of the same index and term agree on everything before it |
//! | `committed_stable` | an entry once committed never changes, and a node's commit index never moves back |
//! | `state_machine_safety` | no two nodes apply different entries (or states) at one index |
//! | `apply_order` | a node applies committed entries once each, in index order (checked by `Host`) |
//!
//! The history (leaders by term, committed and applied entries by index)
//! spans the whole run, so a violation is caught whenever its two sides are
//! observed, however far apart. Logs are compared over a window of their
//! latest entries to keep each step cheap; committed entries are recorded
//! as soon as any node reports them, and re-checked over a window.

use std::collections::BTreeMap;

use kvproto::eraftpb::Entry;
use raft::StateRole;

use super::node::{Applied, Host, INIT_INDEX, INIT_TERM, chain_digest};

/// A broken property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The checker that caught it.
    pub checker: &'static str,
    /// What was seen.
    pub detail: String,
}

impl Violation {
    /// A violation of `checker`.
    pub fn new(checker: &'static str, detail: String) -> Self {
        Violation { checker, detail }
    }
}

/// What identifies an entry's content: its term and a hash of everything in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct EntryId {
    term: u64,
    hash: u64,
}

impl EntryId {
    fn of(e: &Entry) -> Self {
        EntryId {
            term: e.term,
            hash: chain_digest(0, e),
        }
    }
}

/// A committed entry as first observed.
#[derive(Debug, Clone, Copy)]
struct CommittedRec {
    id: EntryId,
    /// The observer's term then: the entry was committed in this term or
    /// earlier, so every leader of a later term must hold it.
    observed_term: u64,
    observed_by: u64,
}

/// What the checkers last saw of one node incarnation.
#[derive(Debug, Clone, Copy, Default)]
struct NodeMark {
    incarnation: u64,
    committed: u64,
    /// The highest committed index already compared with the record.
    checked: u64,
}

/// The safety checkers and the history they compare against.
#[derive(Debug)]
pub struct Checkers {
    /// Log window compared by `log_matching` and re-checked by `committed_stable`.
    window: u64,
    leaders: BTreeMap<u64, u64>,
    committed: BTreeMap<u64, CommittedRec>,
    /// Digest of the state machine after applying each index.
    applied: BTreeMap<u64, (EntryId, u64)>,
    marks: BTreeMap<u64, NodeMark>,
    /// Each node's latest entries, with a fingerprint of their terms.
    windows: BTreeMap<u64, (u64, LogWindow)>,
}

impl Checkers {
    /// Checkers comparing logs over their last `window` entries.
    pub fn new(window: u64) -> Self {
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
        Checkers {
            window: window.max(1),
            leaders: BTreeMap::new(),
            committed: BTreeMap::new(),
            applied,
            marks: BTreeMap::new(),
            windows: BTreeMap::new(),
        }
    }

    /// Leaders seen, by term.
    pub fn leaders(&self) -> &BTreeMap<u64, u64> {
        &self.leaders
    }

    /// How many entries are known committed.
    pub fn committed_count(&self) -> usize {
        self.committed.len()
    }

    /// The highest index known applied.
    pub fn max_applied(&self) -> u64 {
        self.applied.last_key_value().map_or(0, |(&i, _)| i)
    }

    /// `election_safety` and `leader_completeness`, after any input to
    /// `host`. Returns `Some(term)` when `host` is a leader not seen before.
    pub fn observe_role(&mut self, host: &Host) -> Result<Option<u64>, Violation> {
        let Some(node) = host.node() else {
            return Ok(None);
        };
        let raft = node.raft();
        if raft.state() != StateRole::Leader {
            return Ok(None);
        }
        let term = raft.term();
        match self.leaders.get(&term) {
            Some(&other) if other == host.id() => return Ok(None),
            Some(&other) => {
                return Err(Violation::new(
                    "election_safety",
                    format!(
                        "nodes {other} and {} are both leaders of term {term}",
                        host.id()
                    ),
                ));
            }
            None => {}
        }
        self.leaders.insert(term, host.id());
        self.check_leader_completeness(host, term)?;
        Ok(Some(term))
    }

    fn check_leader_completeness(&self, host: &Host, term: u64) -> Result<(), Violation> {
        // The newest entry known committed before `term`; by Log Matching,
        // holding it means holding all before it.
        let Some((&index, rec)) = self
            .committed
            .iter()
            .rev()
            .find(|(_, rec)| rec.observed_term < term)
        else {
            return Ok(());
        };
        let (first, last) = host.log_bounds();
        if index + 1 < first {
            // Compacted: it was applied here, hence committed here.
            return Ok(());
        }
        let held = index <= last && host.term(index) == Some(rec.id.term);
        if !held {
            return Err(Violation::new(
                "leader_completeness",
                format!(
                    "node {} became leader of term {term} without entry {index} (term {}), \
                     seen committed by node {} in term {}; its log ends at {last} (term {:?})",
                    host.id(),
                    rec.id.term,
                    rec.observed_by,
                    rec.observed_term,
                    host.term(last)
                ),
            ));
        }
        Ok(())
    }

    /// `state_machine_safety` for what `host` just applied.
    pub fn observe_applied(&mut self, host: &Host, applied: &[Applied]) -> Result<(), Violation> {
        let host_id = host.id();
        // The node's term now bounds the term the entries were committed in.
        let term = host.node().map_or(0, |n| n.raft().term()).max(1);
        for a in applied {
            match a {
                Applied::Entry { entry, digest, .. } => {
                    let id = EntryId::of(entry);
                    self.check_committed(host_id, entry.index, id, term)?;
                    match self.applied.get(&entry.index) {
                        Some(&(seen, seen_digest)) if seen != id || seen_digest != *digest => {
                            return Err(Violation::new(
                                "state_machine_safety",
                                format!(
                                    "node {host_id} applied at {} entry {id:?} (state {digest:#x}), \
                                     another node applied {seen:?} (state {seen_digest:#x})",
                                    entry.index
                                ),
                            ));
                        }
                        Some(_) => {}
                        None => {
                            self.applied.insert(entry.index, (id, *digest));
                        }
                    }
                }
                Applied::Snapshot {
                    index,
                    term,
                    digest,
                    ..
                } => match self.applied.get(index) {
                    Some(&(seen, seen_digest)) if seen.term == *term && seen_digest == *digest => {}
                    Some(&(seen, seen_digest)) => {
                        return Err(Violation::new(
                            "state_machine_safety",
                            format!(
                                "node {host_id} applied a snapshot at {index} (term {term}, state \
                                 {digest:#x}), but entry {index} applied elsewhere has term {} and \
                                 state {seen_digest:#x}",
                                seen.term
                            ),
                        ));
                    }
                    None => {
                        return Err(Violation::new(
                            "state_machine_safety",
                            format!(
                                "node {host_id} applied a snapshot at {index} (term {term}) of a \
                                 state no node applied"
                            ),
                        ));
                    }
                },
            }
        }
        Ok(())
    }

    fn check_committed(
        &mut self,
        host_id: u64,
        index: u64,
        id: EntryId,
        observed_term: u64,
    ) -> Result<(), Violation> {
        match self.committed.get(&index) {
            Some(rec) if rec.id != id => Err(Violation::new(
                "committed_stable",
                format!(
                    "node {host_id} has {id:?} committed at {index}, but node {} saw {:?} \
                     committed there (in term {})",
                    rec.observed_by, rec.id, rec.observed_term
                ),
            )),
            Some(_) => Ok(()),
            None => {
                self.committed.insert(
                    index,
                    CommittedRec {
                        id,
                        observed_term,
                        observed_by: host_id,
                    },
                );
                Ok(())
            }
        }
    }

    /// `committed_stable` and `log_matching` over all hosts, after step `step`.
    pub fn check_hosts(&mut self, hosts: &[&Host], step: u64) -> Result<(), Violation> {
        let mut changed = Vec::with_capacity(hosts.len());
        for &host in hosts {
            // Newly committed entries are checked at once; the window below
            // them is re-checked every few steps, which keeps the cost per
            // step low and still catches an entry that changes later.
            let recheck = (step + host.id()).is_multiple_of(RECHECK_EVERY);
            self.check_host_committed(host, recheck)?;
            changed.push(self.refresh_window(host)?);
        }
        for (i, a) in hosts.iter().enumerate() {
            for (j, b) in hosts.iter().enumerate().skip(i + 1) {
                if changed[i] || changed[j] {
                    check_log_matching(&self.windows[&a.id()].1, &self.windows[&b.id()].1)?;
                }
            }
        }
        Ok(())
    }

    fn check_host_committed(&mut self, host: &Host, recheck: bool) -> Result<(), Violation> {
        let id = host.id();
        let committed = host.committed();
        let term = match host.node() {
            Some(n) => n.raft().term(),
            None => host.storage().hard_state().term,
        };
        let incarnation = host.incarnation();
        let mark = self.marks.entry(id).or_default();
        if host.is_up() && mark.incarnation == incarnation && committed < mark.committed {
            return Err(Violation::new(
                "committed_stable",
                format!(
                    "node {id}'s commit index went back from {} to {committed}",
                    mark.committed
                ),
            ));
        }
        let (first, _) = host.log_bounds();
        let mut low = mark.checked + 1;
        if recheck {
            low = low.min(committed.saturating_sub(self.window) + 1);
        }
        let low = low.max(first);
        *mark = NodeMark {
            incarnation,
            committed,
            checked: mark.checked.max(committed),
        };
        if low > committed {
            return Ok(());
        }
        let entries = host.entries(low, committed + 1).map_err(|e| {
            Violation::new(
                "committed_stable",
                format!("node {id} lost committed entries: {e}"),
            )
        })?;
        for e in &entries {
            self.check_committed(id, e.index, EntryId::of(e), term.max(1))?;
        }
        Ok(())
    }

    /// Re-reads `host`'s latest entries if they may have changed since the
    /// last step; returns whether they did. The fingerprint covers the term
    /// of every entry in the window, so an entry replaced by one of another
    /// term anywhere in it is noticed.
    fn refresh_window(&mut self, host: &Host) -> Result<bool, Violation> {
        let (first, last) = host.log_bounds();
        let low = first.max(last.saturating_sub(self.window) + 1);
        let mut fingerprint = (host.incarnation() << 1 | u64::from(host.is_up()))
            ^ first.rotate_left(20)
            ^ last.rotate_left(40);
        for i in low..=last {
            let term = host.term(i).unwrap_or(u64::MAX);
            fingerprint = (fingerprint ^ term).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
        if self
            .windows
            .get(&host.id())
            .is_some_and(|(f, _)| *f == fingerprint)
        {
            return Ok(false);
        }
        let entries = if low <= last {
            host.entries(low, last + 1)
                .map_err(|e| Violation::new("log_matching", e))?
        } else {
            Vec::new()
        };
        let window = LogWindow {
            node: host.id(),
            entries,
        };
        self.windows.insert(host.id(), (fingerprint, window));
        Ok(true)
    }
}

/// How often (in steps) a node's committed window is re-checked.
const RECHECK_EVERY: u64 = 4;

/// The latest entries of one node's log.
#[derive(Debug)]
struct LogWindow {
    node: u64,
    entries: Vec<Entry>,
}

impl LogWindow {
    fn get(&self, index: u64) -> Option<&Entry> {
        let first = self.entries.first()?.index;
        self.entries.get(index.checked_sub(first)? as usize)
    }
}

/// `log_matching` for two windows: find the highest index where both have
/// an entry of the same term; everything from there down must be identical.
fn check_log_matching(a: &LogWindow, b: &LogWindow) -> Result<(), Violation> {
    let (Some(fa), Some(fb)) = (a.entries.first(), b.entries.first()) else {
        return Ok(());
    };
    let low = fa.index.max(fb.index);
    let high = a
        .entries
        .last()
        .map_or(0, |e| e.index)
        .min(b.entries.last().map_or(0, |e| e.index));
    let mut matched = false;
    let mut index = high;
    while index >= low && index > 0 {
        let (ea, eb) = (a.get(index), b.get(index));
        if let (Some(ea), Some(eb)) = (ea, eb) {
            if ea.term == eb.term {
                matched = true;
            }
            if matched && ea != eb {
                return Err(Violation::new(
                    "log_matching",
                    format!(
                        "nodes {} and {} share an entry of the same index and term at or after {index}, \
                         but differ at {index}: {:?} vs {:?}",
                        a.node,
                        b.node,
                        short(ea),
                        short(eb)
                    ),
                ));
            }
        }
        index -= 1;
    }
    Ok(())
}

fn short(e: &Entry) -> String {
    format!(
        "(index {}, term {}, {:?}, {:?})",
        e.index,
        e.term,
        e.entry_type(),
        String::from_utf8_lossy(&e.data)
    )
}
