//! Membership and leadership changes through the in-process scheduler, as
//! TinyKV's `cluster.go` drives them (`MustAddPeer`, `MustRemovePeer`,
//! `MustTransferLeader`, `AllocPeer`): the test schedules an operator, the
//! scheduler hands it to the region's leader in heartbeat answers until the
//! region shows it done, and the test waits, on the scheduler's view of the
//! region, until it sees the change.
//!
//! The scheduler's view is what the leader last reported (a heartbeat every
//! `scheduler_heartbeat_ticks`), so a change shows up there once the leader
//! has applied it, which is when TinyKV's waits return too.
//!
//! One rule beyond TinyKV's helpers: the raftstore refuses to remove the
//! leader of a two-member region (the survivor might never learn that the
//! removal committed), so `must_remove_peer` first moves leadership to the
//! other member, as TiKV's placement driver does before such a removal.

use std::time::{Duration, Instant};

use kvproto::metapb;
use scheduler_stub::{Operator, SchedulerClient};

use super::Cluster;

/// How long a scripted membership or leadership change may take. Generous:
/// under the generic scenario's message loss a change may only complete
/// once the network heals at the end of a round.
pub const OPERATOR_TIMEOUT: Duration = Duration::from_secs(60);

/// How often the waits below look at the scheduler again.
const POLL: Duration = Duration::from_millis(10);

/// The peer of `region` on `store_id`, if any (TinyKV `FindPeer`).
pub fn find_peer(region: &metapb::Region, store_id: u64) -> Option<metapb::Peer> {
    region
        .peers
        .iter()
        .find(|p| p.store_id == store_id)
        .copied()
}

impl Cluster {
    /// Region `region_id` and its leader as the scheduler last heard from
    /// the leader; `None` if the scheduler does not know the region.
    pub fn scheduler_region(
        &self,
        region_id: u64,
    ) -> Option<(metapb::Region, Option<metapb::Peer>)> {
        self.scheduler()
            .get_region_by_id(region_id)
            .unwrap_or_else(|e| panic!("the scheduler cannot look region {region_id} up: {e}"))
    }

    /// The regions the scheduler knows, in key order, with their leaders.
    pub fn scheduler_regions(&self) -> Vec<(metapb::Region, Option<metapb::Peer>)> {
        self.scheduler()
            .scan_regions(b"", b"", 0)
            .unwrap_or_else(|e| panic!("the scheduler cannot list its regions: {e}"))
    }

    /// A new peer on `store_id` with a fresh id from the scheduler (TinyKV
    /// `AllocPeer`).
    pub fn alloc_peer(&self, store_id: u64) -> metapb::Peer {
        let id = self
            .scheduler()
            .alloc_id()
            .unwrap_or_else(|e| panic!("the scheduler cannot allocate a peer id: {e}"));
        metapb::Peer { id, store_id }
    }

    /// Adds `peer` to region `region_id` through the scheduler and waits
    /// until the scheduler's view of the region has it (TinyKV
    /// `MustAddPeer`, then `MustHavePeer`). The peer may still be catching
    /// up when this returns.
    ///
    /// # Panics
    /// If the region does not have the peer after [`OPERATOR_TIMEOUT`].
    pub fn must_add_peer(&self, region_id: u64, peer: metapb::Peer) {
        self.scheduler().add_peer(region_id, peer);
        self.wait_for_region(region_id, &format!("adding peer {peer:?}"), |region, _| {
            region.peers.contains(&peer)
        });
    }

    /// Removes `peer` from region `region_id` through the scheduler and
    /// waits until the scheduler's view of the region no longer has it
    /// (TinyKV `MustRemovePeer`, then `MustNonePeer`). If `peer` leads a
    /// two-member region, leadership moves to the other member first.
    ///
    /// # Panics
    /// If the region still has the peer after [`OPERATOR_TIMEOUT`].
    pub fn must_remove_peer(&self, region_id: u64, peer: metapb::Peer) {
        self.wait_for_region(
            region_id,
            &format!("removing peer {peer:?}"),
            |region, leader| {
                if !region.peers.iter().any(|p| p.id == peer.id) {
                    return true;
                }
                let other = region.peers.iter().find(|p| p.id != peer.id).copied();
                let want = match other {
                    Some(other) if region.peers.len() == 2 && leader == Some(peer) => {
                        Operator::TransferLeader(other)
                    }
                    _ => Operator::RemovePeer(peer),
                };
                // Scheduled only when it changes: scheduling replaces the
                // region's operator and logs it.
                if self.scheduler().operator(region_id).as_ref() != Some(&want) {
                    match want {
                        Operator::TransferLeader(to) => {
                            self.scheduler().transfer_leader(region_id, to)
                        }
                        _ => self.scheduler().remove_peer(region_id, peer),
                    }
                }
                false
            },
        );
    }

    /// Moves region `region_id`'s leadership to `peer` through the
    /// scheduler and waits until the scheduler hears from it as the leader
    /// (TinyKV `MustTransferLeader`, which waits on the scheduler's leader
    /// too).
    ///
    /// # Panics
    /// If `peer` has not reported as leader after [`OPERATOR_TIMEOUT`].
    pub fn must_transfer_leader(&self, region_id: u64, peer: metapb::Peer) {
        self.scheduler().transfer_leader(region_id, peer);
        self.wait_for_region(
            region_id,
            &format!("moving leadership to {peer:?}"),
            |_, leader| leader == Some(peer),
        );
    }

    /// What every running store persisted of region `region_id`, one line
    /// each: region state, hard state, last and applied index. For failure
    /// reports, where logs may be off.
    pub fn describe_replicas(&self, region_id: u64) -> String {
        self.store_ids()
            .into_iter()
            .map(|store_id| {
                if self.store_engine(store_id).is_none() {
                    return format!("  store {store_id}: not running");
                }
                let region = self.region_local_state(store_id, region_id).map(|s| {
                    let r = s.region.clone().unwrap_or_default();
                    let peers: Vec<_> = r.peers.iter().map(|p| (p.id, p.store_id)).collect();
                    format!(
                        "{:?} conf_ver {} peers {peers:?}",
                        s.state(),
                        r.region_epoch.unwrap_or_default().conf_ver
                    )
                });
                let raft = self.raft_local_state(store_id, region_id).map(|s| {
                    let h = s.hard_state.unwrap_or_default();
                    format!(
                        "term {} vote {} commit {} last {}",
                        h.term, h.vote, h.commit, s.last_index
                    )
                });
                let applied = self
                    .apply_state(store_id, region_id)
                    .map(|s| s.applied_index);
                format!("  store {store_id}: region {region:?}; raft {raft:?}; applied {applied:?}")
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Polls the scheduler's view of region `region_id` until `done` holds.
    fn wait_for_region(
        &self,
        region_id: u64,
        what: &str,
        mut done: impl FnMut(&metapb::Region, Option<metapb::Peer>) -> bool,
    ) {
        let deadline = Instant::now() + OPERATOR_TIMEOUT;
        loop {
            let (region, leader) = self
                .scheduler_region(region_id)
                .unwrap_or_else(|| panic!("the scheduler does not know region {region_id}"));
            if done(&region, leader) {
                return;
            }
            if Instant::now() >= deadline {
                panic!(
                    "region {region_id}: {what} not done within {OPERATOR_TIMEOUT:?}; the \
                     scheduler sees {region:?} led by {leader:?}, operator {:?}; the stores \
                     hold:\n{}",
                    self.scheduler().operator(region_id),
                    self.describe_replicas(region_id)
                );
            }
            std::thread::sleep(POLL);
        }
    }
}
