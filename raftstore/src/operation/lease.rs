//! The leader's lease: a time in which no other peer can have become
//! leader, so a read is answered from the applied state at once, without a
//! heartbeat round (Raft thesis §6.4.1).
//!
//! Why it holds: with CheckQuorum on, a member that heard from the leader
//! within an election timeout ignores vote and pre-vote requests (the raft
//! core's `in_lease`). A read-index round the leader sent at `t` and a
//! quorum confirmed means each member of that quorum heard from it at or
//! after `t`, and counts an election timeout of its own ticks from then;
//! ticks never come closer than the base interval (`tick_loop` delays a
//! missed tick, never bursts), and one may fire right after the message.
//! Every quorum that could elect someone else shares a member with the
//! confirming one, so none can before `t + (election_ticks - 1) × tick`.
//! The lease runs to `t + (election_ticks - 2) × tick`: one tick of margin
//! for clock drift and scheduling.
//!
//! The one campaign that ignores a member's lease is a leader transfer, and
//! only this leader starts it: starting one ends the lease, and none is
//! taken again for two election timeouts (a late `MsgTimeoutNow` can still
//! make the transferee campaign; the lease assumes no message is delayed
//! longer than that, as TiKV's does). A role or term change ends it too.
//!
//! Invariant: `until` is only ever set from a round this peer sent as
//! leader in `term`, after `suspended_until`.

use std::time::{Duration, Instant};

/// A leader's lease.
#[derive(Debug, Default)]
pub(crate) struct LeaderLease {
    until: Option<Instant>,
    term: u64,
    /// No lease is taken from a round sent before this (a leader transfer).
    suspended_until: Option<Instant>,
}

impl LeaderLease {
    /// The lease a round sent at `sent_at` and confirmed gives, in `term`.
    pub(crate) fn renew(&mut self, sent_at: Instant, term: u64, length: Duration) {
        if length.is_zero() || self.suspended_until.is_some_and(|s| sent_at < s) {
            return;
        }
        if term != self.term {
            self.term = term;
            self.until = None;
        }
        let until = sent_at + length;
        self.until = Some(self.until.map_or(until, |u| u.max(until)));
    }

    /// Whether the lease covers `now` in `term`.
    pub(crate) fn covers(&self, now: Instant, term: u64) -> bool {
        self.term == term && self.until.is_some_and(|u| now < u)
    }

    /// Ends the lease (a role or term change).
    pub(crate) fn expire(&mut self) {
        self.until = None;
    }

    /// Ends the lease and takes none from rounds sent before `until` (a
    /// leader transfer started).
    pub(crate) fn suspend(&mut self, until: Instant) {
        self.until = None;
        self.suspended_until = Some(self.suspended_until.map_or(until, |s| s.max(until)));
    }
}

/// How long a confirmed round makes the lease: see the module doc.
pub(crate) fn lease_length(election_ticks: usize, tick: Duration) -> Duration {
    tick * (election_ticks.saturating_sub(2) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEN: Duration = Duration::from_millis(80);

    #[test]
    fn a_confirmed_round_gives_a_lease_of_its_term_from_when_it_was_sent() {
        let t0 = Instant::now();
        let mut lease = LeaderLease::default();
        assert!(!lease.covers(t0, 3));
        lease.renew(t0, 3, LEN);
        assert!(lease.covers(t0 + Duration::from_millis(79), 3));
        assert!(!lease.covers(t0 + LEN, 3));
        assert!(!lease.covers(t0, 4), "another term has no lease");
        // An older round never shortens it.
        lease.renew(t0 - Duration::from_millis(50), 3, LEN);
        assert!(lease.covers(t0 + Duration::from_millis(79), 3));
        lease.expire();
        assert!(!lease.covers(t0, 3));
        assert_eq!(lease_length(10, Duration::from_millis(10)), LEN);
        assert_eq!(lease_length(2, Duration::from_millis(10)), Duration::ZERO);
    }

    #[test]
    fn a_transfer_ends_the_lease_and_blocks_rounds_sent_before_the_suspension_ends() {
        let t0 = Instant::now();
        let mut lease = LeaderLease::default();
        lease.renew(t0, 3, LEN);
        let resume = t0 + Duration::from_millis(200);
        lease.suspend(resume);
        assert!(!lease.covers(t0, 3));
        lease.renew(t0 + Duration::from_millis(100), 3, LEN);
        assert!(!lease.covers(t0 + Duration::from_millis(110), 3));
        lease.renew(resume, 3, LEN);
        assert!(lease.covers(resume + Duration::from_millis(10), 3));
    }
}
