//! Test harness for the Raft core (the ported TinyKV/etcd suites): builders
//! and a synchronous in-memory network whose messages move only inside
//! `Network::send`, with seeded drops, cuts, isolation and ignored types.

// Each suite uses a different subset of these helpers.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap, HashSet};

use kvproto::eraftpb::{Entry, HardState, Message, MessageType};
use slog::{Drain, Logger, o};

use crate::util::SplitMix64;
use crate::{Config, MemoryStorage, Raft, RaftLog, Storage};

/// "No node", as TinyKV's `None`.
pub const NONE: u64 = 0;

/// A logger for tests: off unless `RAFT_TEST_LOG` is set, then to stderr.
pub fn test_logger() -> Logger {
    if std::env::var_os("RAFT_TEST_LOG").is_some() {
        let decorator = slog_term::PlainSyncDecorator::new(std::io::stderr());
        let drain = slog_term::FullFormat::new(decorator).build().fuse();
        Logger::root(drain, o!())
    } else {
        Logger::root(slog::Discard, o!())
    }
}

/// TinyKV's `newTestConfig`, with the election seed fixed to the id.
pub fn new_test_config(id: u64, peers: Vec<u64>, election: usize, heartbeat: usize) -> Config {
    Config {
        id,
        peers,
        election_tick: election,
        heartbeat_tick: heartbeat,
        applied: 0,
        rng_seed: Some(id),
        ..Default::default()
    }
}

/// TinyKV's `newTestRaft`.
pub fn new_test_raft(
    id: u64,
    peers: Vec<u64>,
    election: usize,
    heartbeat: usize,
    storage: MemoryStorage,
) -> Raft<MemoryStorage> {
    new_test_raft_with_config(&new_test_config(id, peers, election, heartbeat), storage)
}

/// A node from an explicit config.
pub fn new_test_raft_with_config(config: &Config, storage: MemoryStorage) -> Raft<MemoryStorage> {
    Raft::new(config, storage, &test_logger()).expect("test config is valid")
}

/// A `RaftLog` over `storage`, as TinyKV's `newLog`.
pub fn new_log(storage: MemoryStorage) -> RaftLog<MemoryStorage> {
    RaftLog::new(storage).expect("memory storage never fails")
}

/// TinyKV's `newMemoryStorageWithEnts`: `entries[0]` is the dummy entry.
pub fn new_memory_storage_with_ents(entries: Vec<Entry>) -> MemoryStorage {
    MemoryStorage::new_with_entries(entries)
}

/// An entry with only index and term set.
pub fn new_entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        ..Default::default()
    }
}

/// A message with only type, from and to set.
pub fn new_message(from: u64, to: u64, t: MessageType) -> Message {
    Message {
        msg_type: t as i32,
        from,
        to,
        ..Default::default()
    }
}

/// `[1, 2, ..., size]`.
pub fn ids_by_size(size: usize) -> Vec<u64> {
    (1..=size as u64).collect()
}

impl<S: Storage> Raft<S> {
    /// Takes the queued messages (TinyKV's `readMessages`).
    pub fn read_messages(&mut self) -> Vec<Message> {
        self.take_messages()
    }
}

/// TinyKV's `nextEnts`: persists the unstable entries into `storage`, then
/// takes the committed entries and marks them applied.
pub fn next_ents(r: &mut Raft<MemoryStorage>, storage: &MemoryStorage) -> Vec<Entry> {
    persist_unstable(r, storage);
    let ents = r.raft_log.next_entries();
    r.raft_log.applied = r.raft_log.committed;
    ents
}

/// Writes the node's unstable entries to `storage` and marks them stable.
pub fn persist_unstable(r: &mut Raft<MemoryStorage>, storage: &MemoryStorage) {
    let unstable = r.raft_log.unstable_entries().to_vec();
    storage.append(&unstable).expect("append to memory storage");
    if let Some(last) = unstable.last() {
        r.raft_log.stable_to(last.index, last.term);
    }
}

/// TinyKV's `entsWithConfig`: a node whose log has one entry per term given.
pub fn ents_with_config(
    config_fn: Option<&dyn Fn(&mut Config)>,
    id: u64,
    terms: &[u64],
) -> Raft<MemoryStorage> {
    let storage = MemoryStorage::new();
    for (i, &term) in terms.iter().enumerate() {
        storage
            .append(&[new_entry(i as u64 + 1, term)])
            .expect("append to memory storage");
    }
    let mut cfg = new_test_config(id, vec![], 5, 1);
    if let Some(f) = config_fn {
        f(&mut cfg);
    }
    let mut sm = new_test_raft_with_config(&cfg, storage);
    sm.term = *terms.last().expect("at least one term");
    sm
}

/// TinyKV's `votedWithConfig`: a node that voted for `vote` in `term` and
/// has no log.
pub fn voted_with_config(
    config_fn: Option<&dyn Fn(&mut Config)>,
    id: u64,
    vote: u64,
    term: u64,
) -> Raft<MemoryStorage> {
    let storage = MemoryStorage::new();
    storage.set_hard_state(HardState {
        term,
        vote,
        commit: 0,
    });
    let mut cfg = new_test_config(id, vec![], 5, 1);
    if let Some(f) = config_fn {
        f(&mut cfg);
    }
    let mut sm = new_test_raft_with_config(&cfg, storage);
    sm.term = term;
    sm
}

/// Inspects a message in flight; false drops it.
pub type MsgHook = Box<dyn Fn(&Message) -> bool>;

/// A member of a test network.
pub enum Peer {
    /// A real node.
    Raft(Box<Raft<MemoryStorage>>),
    /// Swallows every message (TinyKV's `nopStepper`/`blackHole`).
    BlackHole,
}

impl Peer {
    fn step(&mut self, m: Message) {
        if let Peer::Raft(r) = self {
            // Errors (dropped proposals) are part of what tests observe
            // through state, as in TinyKV's network.
            let _ = r.step(m);
        }
    }

    fn read_messages(&mut self) -> Vec<Message> {
        match self {
            Peer::Raft(r) => r.read_messages(),
            Peer::BlackHole => Vec::new(),
        }
    }
}

impl From<Raft<MemoryStorage>> for Peer {
    fn from(r: Raft<MemoryStorage>) -> Self {
        Peer::Raft(Box::new(r))
    }
}

/// A synchronous network of test nodes with ids `1..=n`.
pub struct Network {
    /// The members by id.
    pub peers: BTreeMap<u64, Peer>,
    /// The storage of each node the network created itself.
    pub storage: BTreeMap<u64, MemoryStorage>,
    dropm: HashMap<(u64, u64), f64>,
    ignorem: HashSet<MessageType>,
    /// Called for each message; returns false to drop it.
    pub msg_hook: Option<MsgHook>,
    rng: SplitMix64,
}

impl Network {
    /// TinyKV's `newNetwork`: `None` entries become fresh nodes.
    pub fn new(peers: Vec<Option<Peer>>) -> Network {
        Network::new_with_config(None, peers)
    }

    /// TinyKV's `newNetworkWithConfig`.
    pub fn new_with_config(
        config_fn: Option<&dyn Fn(&mut Config)>,
        peers: Vec<Option<Peer>>,
    ) -> Network {
        let ids = ids_by_size(peers.len());
        let mut npeers = BTreeMap::new();
        let mut nstorage = BTreeMap::new();
        for (peer, &id) in peers.into_iter().zip(ids.iter()) {
            match peer {
                None => {
                    let storage = MemoryStorage::new();
                    let mut cfg = new_test_config(id, ids.clone(), 10, 1);
                    if let Some(f) = config_fn {
                        f(&mut cfg);
                    }
                    let r = new_test_raft_with_config(&cfg, storage.clone());
                    nstorage.insert(id, storage);
                    npeers.insert(id, Peer::from(r));
                }
                Some(Peer::Raft(mut r)) => {
                    r.id = id;
                    let ids_for_prs = ids.clone();
                    if r.prs.is_empty() {
                        let next = r.raft_log.last_index() + 1;
                        for pid in ids_for_prs {
                            r.prs.insert(pid, crate::Progress::new(0, next));
                        }
                    }
                    npeers.insert(id, Peer::Raft(r));
                }
                Some(Peer::BlackHole) => {
                    npeers.insert(id, Peer::BlackHole);
                }
            }
        }
        Network {
            peers: npeers,
            storage: nstorage,
            dropm: HashMap::new(),
            ignorem: HashSet::new(),
            msg_hook: None,
            rng: SplitMix64::new(0x5eed),
        }
    }

    /// The node `id`.
    ///
    /// # Panics
    /// If `id` is not a real node.
    pub fn raft(&self, id: u64) -> &Raft<MemoryStorage> {
        match self.peers.get(&id) {
            Some(Peer::Raft(r)) => r,
            _ => panic!("peer {id} is not a raft node"),
        }
    }

    /// The node `id`, mutably.
    pub fn raft_mut(&mut self, id: u64) -> &mut Raft<MemoryStorage> {
        match self.peers.get_mut(&id) {
            Some(Peer::Raft(r)) => r,
            _ => panic!("peer {id} is not a raft node"),
        }
    }

    /// Delivers `msgs` and everything they cause, until the network is quiet.
    pub fn send(&mut self, msgs: Vec<Message>) {
        let mut queue: std::collections::VecDeque<Message> = msgs.into();
        while let Some(m) = queue.pop_front() {
            let Some(p) = self.peers.get_mut(&m.to) else {
                continue;
            };
            p.step(m);
            let out = p.read_messages();
            let out = self.filter(out);
            queue.extend(out);
        }
    }

    /// Lets every real node tick once, then delivers what they sent
    /// (through the drops and cuts) and everything that causes.
    pub fn tick_all(&mut self) {
        let mut out = Vec::new();
        for p in self.peers.values_mut() {
            if let Peer::Raft(r) = p {
                r.tick();
                out.extend(r.read_messages());
            }
        }
        let out = self.filter(out);
        self.send(out);
    }

    /// Drops a share `perc` of messages from `from` to `to`.
    pub fn drop(&mut self, from: u64, to: u64, perc: f64) {
        self.dropm.insert((from, to), perc);
    }

    /// Drops everything between `one` and `other`.
    pub fn cut(&mut self, one: u64, other: u64) {
        self.drop(one, other, 2.0);
        self.drop(other, one, 2.0);
    }

    /// Drops everything to and from `id`.
    pub fn isolate(&mut self, id: u64) {
        for nid in 1..=self.peers.len() as u64 {
            if nid != id {
                self.drop(id, nid, 1.0);
                self.drop(nid, id, 1.0);
            }
        }
    }

    /// Drops every message of type `t`.
    pub fn ignore(&mut self, t: MessageType) {
        self.ignorem.insert(t);
    }

    /// Lifts every drop, cut, isolation and ignore.
    pub fn recover(&mut self) {
        self.dropm.clear();
        self.ignorem.clear();
    }

    fn filter(&mut self, msgs: Vec<Message>) -> Vec<Message> {
        let mut out = Vec::with_capacity(msgs.len());
        for m in msgs {
            if self.ignorem.contains(&m.msg_type()) {
                continue;
            }
            assert_ne!(
                m.msg_type(),
                MessageType::MsgHup,
                "MsgHup never goes over the network"
            );
            let perc = self.dropm.get(&(m.from, m.to)).copied().unwrap_or(0.0);
            let n = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
            if n < perc {
                continue;
            }
            if let Some(hook) = &self.msg_hook
                && !hook(&m)
            {
                continue;
            }
            out.push(m);
        }
        out
    }
}

/// TinyKV's `ltoa`: the log as text, for diffs in failure messages.
pub fn ltoa(l: &RaftLog<MemoryStorage>) -> String {
    let mut s = format!("committed: {}\napplied:  {}\n", l.committed, l.applied);
    for (i, e) in l.all_entries().iter().enumerate() {
        s.push_str(&format!("#{i}: {e:?}\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StateRole;

    /// The harness itself: three fresh nodes elect node 1 and replicate a proposal.
    #[test]
    fn network_elects_and_replicates() {
        let mut nt = Network::new(vec![None, None, None]);
        nt.send(vec![new_message(1, 1, MessageType::MsgHup)]);
        assert_eq!(nt.raft(1).state, StateRole::Leader);
        let mut prop = new_message(1, 1, MessageType::MsgPropose);
        prop.entries = vec![Entry {
            data: b"x".to_vec(),
            ..Default::default()
        }];
        nt.send(vec![prop]);
        for id in 1..=3 {
            assert_eq!(nt.raft(id).raft_log.committed, 2, "node {id}");
            assert_eq!(nt.raft(id).term, 1, "node {id}");
        }
    }
}
