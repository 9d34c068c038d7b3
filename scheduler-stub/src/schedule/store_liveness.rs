//! Store liveness: a store is down once it has not been heard from for
//! longer than `max_store_down_time`.
//!
//! "Heard from" is its last store heartbeat. A store that never sent one
//! counts from when this scheduler learned of it (put, or loaded at start),
//! so a restarted scheduler gives every store a full `max_store_down_time`
//! to report before replacing its peers, instead of declaring the whole
//! cluster down at once.

use std::time::{Duration, Instant};

/// When a store was last heard from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Liveness {
    /// Invariant: never moves backwards (`on_heartbeat` keeps the later of
    /// the two instants).
    last_seen: Instant,
}

impl Liveness {
    /// A store first known at `now`.
    pub fn new(now: Instant) -> Self {
        Liveness { last_seen: now }
    }

    /// The store sent a heartbeat at `now`.
    pub fn on_heartbeat(&mut self, now: Instant) {
        self.last_seen = self.last_seen.max(now);
    }

    /// Whether the store is down at `now`.
    pub fn is_down(&self, now: Instant, max_store_down_time: Duration) -> bool {
        now.saturating_duration_since(self.last_seen) > max_store_down_time
    }

    /// How long the store has been silent at `now`.
    pub fn silent_for(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.last_seen)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_down_after_max_store_down_time_without_heartbeat() {
        let start = Instant::now();
        let max = Duration::from_secs(30);
        let mut liveness = Liveness::new(start);
        assert!(
            !liveness.is_down(start + max, max),
            "exactly at the limit: up"
        );
        assert!(liveness.is_down(start + max + Duration::from_millis(1), max));
        liveness.on_heartbeat(start + max);
        assert!(!liveness.is_down(start + max + Duration::from_millis(1), max));
        assert_eq!(
            liveness.silent_for(start + max + Duration::from_secs(2)),
            Duration::from_secs(2)
        );
    }

    #[test]
    fn test_late_heartbeat_does_not_move_back() {
        let start = Instant::now();
        let mut liveness = Liveness::new(start + Duration::from_secs(10));
        liveness.on_heartbeat(start);
        assert_eq!(
            liveness.silent_for(start + Duration::from_secs(10)),
            Duration::ZERO
        );
    }
}
