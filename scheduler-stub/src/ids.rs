//! The id allocator: unique ids for stores, regions and peers, allocated
//! write-ahead as PD does.
//!
//! ```text
//!   1                next                 end
//!   |  handed out or  |  reserved, durable  |  free
//!   |  seen           |  not handed out yet |
//! ```
//!
//! Invariants: `1 <= next <= end`. Every id below `next` was handed out or
//! seen in a request (bootstrap, put store, heartbeat), and `end` is durable
//! (fsynced in the state file) before any id below it is answered. A restart
//! starts with `next = end`: the reserved ids that were never handed out are
//! skipped rather than risk handing one out twice.
//!
//! Growing `end` costs one state-file write, so it grows a batch
//! ([`ID_BATCH`]) at a time. The allocator never changes in place: `plan_*`
//! return the allocator as it would be, the caller makes its `end` durable if
//! it grew, and only then installs it.
//!
//! Ids chosen by clients: an id seen in a request must be at most
//! [`MAX_ID_AHEAD`] beyond `next`. Legitimate ids all came from this
//! allocator (or, in tests, are picked small by hand), so anything further is
//! garbage; accepting it would let one request move the allocator to
//! `u64::MAX` and make every later `AllocID` fail. With the bound, exhausting
//! the id space through requests takes 2^40 of them.

use std::ops::Range;

use crate::errors::{Error, Result};

/// How many ids one durable reservation covers.
pub(crate) const ID_BATCH: u64 = 1000;

/// How far beyond the next free id a client-supplied id may lie.
pub(crate) const MAX_ID_AHEAD: u64 = 1 << 24;

/// The allocator's position. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IdAllocator {
    /// The next id to hand out.
    next: u64,
    /// Ids in `[next, end)` are reserved durably.
    end: u64,
}

impl IdAllocator {
    /// An allocator whose durable reservation ended at `end` (0 or 1 for a
    /// new cluster: ids start at 1, as 0 means "no id" in TinyKV).
    pub(crate) fn new(end: u64) -> IdAllocator {
        let start = end.max(1);
        IdAllocator {
            next: start,
            end: start,
        }
    }

    /// The end of the reserved range: what must be durable.
    pub(crate) fn end(&self) -> u64 {
        self.end
    }

    /// The next id that would be handed out.
    pub(crate) fn next(&self) -> u64 {
        self.next
    }

    /// The allocator after handing out `count` ids, and those ids.
    pub(crate) fn plan_alloc(&self, count: u64) -> Result<(IdAllocator, Range<u64>)> {
        // `u64::MAX` is never handed out, so "next == u64::MAX" means exhausted.
        let next = self
            .next
            .checked_add(count)
            .filter(|next| *next < u64::MAX)
            .ok_or_else(|| Error::Other("id space exhausted".to_owned()))?;
        let end = if next <= self.end {
            self.end
        } else {
            next.saturating_add(ID_BATCH)
        };
        Ok((IdAllocator { next, end }, self.next..next))
    }

    /// The allocator after seeing `ids` in a request: none of them is handed
    /// out later. Refuses (changing nothing) an id more than
    /// [`MAX_ID_AHEAD`] beyond `next`.
    pub(crate) fn plan_seen(&self, ids: impl IntoIterator<Item = u64>) -> Result<IdAllocator> {
        let limit = self.next.saturating_add(MAX_ID_AHEAD);
        let mut planned = *self;
        for id in ids {
            if id > limit {
                return Err(Error::InvalidRequest(format!(
                    "id {id} is beyond any id this scheduler allocated \
                     (next id {}; at most {MAX_ID_AHEAD} ahead is accepted)",
                    self.next
                )));
            }
            // `id <= limit < u64::MAX` unless `next` is near the top already.
            planned.next = planned.next.max(id.saturating_add(1));
            planned.end = planned.end.max(planned.next);
        }
        Ok(planned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_alloc_reserves_a_batch_ahead() {
        let ids = IdAllocator::new(0);
        let (ids, got) = ids.plan_alloc(1).unwrap();
        assert_eq!(got, 1..2, "ids start at 1");
        assert_eq!(ids.end(), 2 + ID_BATCH);
        let (ids2, got) = ids.plan_alloc(3).unwrap();
        assert_eq!(got, 2..5);
        assert_eq!(
            ids2.end(),
            ids.end(),
            "inside the reservation: nothing to write"
        );
        // A restart resumes at the durable end, skipping unused reserved ids.
        let restarted = IdAllocator::new(ids2.end());
        let (_, got) = restarted.plan_alloc(1).unwrap();
        assert_eq!(got.start, ids2.end());
    }

    #[test]
    fn test_seen_ids_are_skipped_within_bounds() {
        let ids = IdAllocator::new(0);
        let seen = ids.plan_seen([5, 3]).unwrap();
        assert_eq!(seen.next(), 6);
        assert!(seen.end() >= 6);
        let (_, got) = seen.plan_alloc(1).unwrap();
        assert_eq!(got, 6..7);
        assert_eq!(
            ids.plan_seen([ids.next() + MAX_ID_AHEAD]).unwrap().next(),
            1 + MAX_ID_AHEAD + 1
        );
    }

    #[test]
    fn test_huge_seen_id_is_refused_and_moves_nothing() {
        let ids = IdAllocator::new(100);
        for huge in [u64::MAX, u64::MAX - 1, 100 + MAX_ID_AHEAD + 1] {
            let err = ids.plan_seen([7, huge]).unwrap_err();
            assert!(matches!(err, Error::InvalidRequest(_)), "{huge}: {err}");
            assert!(err.to_string().contains(&huge.to_string()), "{err}");
        }
        let (_, got) = ids.plan_alloc(1).unwrap();
        assert_eq!(got, 100..101);
    }

    #[test]
    fn test_exhaustion_is_an_error_not_a_wrap() {
        let ids = IdAllocator::new(u64::MAX - 2);
        let (ids, got) = ids.plan_alloc(1).unwrap();
        assert_eq!(got, u64::MAX - 2..u64::MAX - 1);
        assert!(ids.plan_alloc(1).is_err(), "u64::MAX is never handed out");
        assert!(ids.plan_alloc(u64::MAX).is_err());
    }
}
