//! [`ClientLink`]: what one client's connection to the stores lets through,
//! as MIT 6.824's `labrpc` does for a Clerk: which stores the client can
//! reach at all (`makeClient(servers)`, `ConnectClient`), and, on an
//! unreliable network, the share of requests and of replies lost on the
//! way.
//!
//! The stores' raft traffic has its own filters (`filter`); a link only
//! affects the client's commands. A lost request never reaches the store;
//! a lost reply is dropped after the store answered, so the command may
//! have been applied although the client saw nothing: exactly what an
//! exactly-once session must absorb.
//!
//! Invariant: every random choice comes from the link's own seeded
//! generator, so a seed replays which attempts were lost (thread timing
//! still decides which attempt draws which number).

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError, RwLock};

use crate::rng::SplitMix64;

/// One client's connection to the stores. Shared (behind an `Arc` or a
/// reference) between the client and whoever reconnects it.
#[derive(Debug)]
pub struct ClientLink {
    /// The stores the client can reach; `None`: every store. A `RwLock`:
    /// every attempt reads it, only a reconnect writes it.
    reach: RwLock<Option<HashSet<u64>>>,
    /// Share of requests, and separately of replies, lost, in percent.
    loss_percent: u32,
    /// The generator loss draws from. A `Mutex`: each draw mutates it, and
    /// a draw leaves it whole, so a poisoned lock is still used.
    rng: Mutex<SplitMix64>,
}

impl ClientLink {
    /// A reliable link to every store.
    pub fn new() -> Self {
        ClientLink {
            reach: RwLock::new(None),
            loss_percent: 0,
            rng: Mutex::new(SplitMix64::new(0)),
        }
    }

    /// A link to every store that loses `percent` % of requests and, of
    /// the requests that get through, `percent` % of replies (`labrpc`'s
    /// unreliable network loses 10 % each way), drawing from `seed`.
    pub fn unreliable(percent: u32, seed: u64) -> Self {
        ClientLink {
            reach: RwLock::new(None),
            loss_percent: percent.min(100),
            rng: Mutex::new(SplitMix64::new(seed)),
        }
    }

    /// Limits the link to `stores` (MIT 6.824's `ConnectClient(ck, to)`).
    pub fn connect_only(&self, stores: &[u64]) {
        *self.reach.write().unwrap_or_else(PoisonError::into_inner) =
            Some(stores.iter().copied().collect());
    }

    /// Lets the link reach every store again.
    pub fn connect_all(&self) {
        *self.reach.write().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Whether the client can reach store `store_id` now.
    pub fn reaches(&self, store_id: u64) -> bool {
        self.reach
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_none_or(|stores| stores.contains(&store_id))
    }

    /// Whether the next request is lost on the way to the store.
    pub fn loses_request(&self) -> bool {
        self.draw_loss()
    }

    /// Whether the reply to a request that got through is lost on the way
    /// back.
    pub fn loses_reply(&self) -> bool {
        self.draw_loss()
    }

    fn draw_loss(&self) -> bool {
        if self.loss_percent == 0 {
            return false;
        }
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        rng.below(100) < u64::from(self.loss_percent)
    }
}

impl Default for ClientLink {
    fn default() -> Self {
        ClientLink::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_reaches_the_stores_it_is_connected_to() {
        let link = ClientLink::new();
        assert!(link.reaches(1) && link.reaches(5));
        link.connect_only(&[2, 3]);
        assert!(link.reaches(2) && link.reaches(3));
        assert!(!link.reaches(1) && !link.reaches(5));
        link.connect_all();
        assert!(link.reaches(1));
    }

    #[test]
    fn a_reliable_link_loses_nothing() {
        let link = ClientLink::new();
        assert!((0..1000).all(|_| !link.loses_request() && !link.loses_reply()));
    }

    #[test]
    fn an_unreliable_link_loses_its_share_replayably() {
        let draws = |seed| {
            let link = ClientLink::unreliable(10, seed);
            (0..10_000)
                .map(|_| link.loses_request())
                .collect::<Vec<_>>()
        };
        let lost = draws(7).iter().filter(|&&l| l).count();
        assert!((800..1200).contains(&lost), "{lost} of 10000 lost at 10%");
        assert_eq!(draws(7), draws(7), "a seed replays the losses");
        assert_ne!(draws(7), draws(8));
    }
}
