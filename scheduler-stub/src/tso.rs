//! The timestamp oracle behind `Tso`: strictly increasing `(physical,
//! logical)` timestamps, physical in milliseconds of wall-clock time.
//!
//! A request for `count` timestamps gets the last of a batch of `count`
//! consecutive logical values, as TinyKV's client expects; the batch is
//! `(physical, logical - count + 1) ..= (physical, logical)`.
//!
//! Invariants: `(physical, logical)` only grows; `logical < MAX_LOGICAL`.
//! When the wall clock stands still or goes back, physical stays and logical
//! counts up; when logical would overflow, physical moves one millisecond
//! ahead of the clock.
//!
//! Across restarts (as PD does): timestamps are only handed out below a
//! durable limit (`tso_limit_ms` in the state file). When a timestamp would
//! reach it, the caller first makes `physical + TSO_WINDOW_MS` durable; a
//! restarted oracle starts at the old limit, so it never repeats a timestamp
//! even if the clock went back while it was down.

use kvproto::schedulerpb::Timestamp;

use crate::errors::{Error, Result};

/// Logical values per millisecond (TinyKV's and PD's 18 bits).
pub(crate) const MAX_LOGICAL: i64 = 1 << 18;

/// How far ahead of the last timestamp the durable limit is moved.
pub(crate) const TSO_WINDOW_MS: i64 = 3000;

/// The oracle's position. See the module docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TsoOracle {
    physical: i64,
    logical: i64,
    /// The durable limit: no timestamp handed out has `physical` at or
    /// above it.
    limit_ms: i64,
}

impl TsoOracle {
    /// An oracle resuming below no timestamp at or above `limit_ms` (the
    /// limit loaded from the state file; 0 for a new cluster).
    pub(crate) fn new(limit_ms: i64) -> TsoOracle {
        TsoOracle {
            physical: limit_ms,
            logical: 0,
            limit_ms,
        }
    }

    /// The oracle after handing out `count` timestamps at wall-clock time
    /// `now_ms`, the last of them, and the new durable limit to write first
    /// if the batch reaches the current one.
    pub(crate) fn plan(
        &self,
        now_ms: i64,
        count: u32,
    ) -> Result<(TsoOracle, Timestamp, Option<i64>)> {
        let count = i64::from(count);
        if count == 0 || count >= MAX_LOGICAL {
            return Err(Error::InvalidRequest(format!(
                "tso count {count} is not in 1..{MAX_LOGICAL}"
            )));
        }
        let mut next = *self;
        if now_ms > next.physical {
            next.physical = now_ms;
            next.logical = 0;
        }
        if next.logical + count >= MAX_LOGICAL {
            next.physical = next
                .physical
                .checked_add(1)
                .ok_or_else(|| Error::Other("timestamp space exhausted".to_owned()))?;
            next.logical = 0;
        }
        next.logical += count;
        let new_limit = if next.physical >= next.limit_ms {
            let limit = next.physical.saturating_add(TSO_WINDOW_MS);
            next.limit_ms = limit;
            Some(limit)
        } else {
            None
        };
        let ts = Timestamp {
            physical: next.physical,
            logical: next.logical,
        };
        Ok((next, ts, new_limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ts: &Timestamp) -> (i64, i64) {
        (ts.physical, ts.logical)
    }

    #[test]
    fn test_timestamps_increase_whatever_the_clock_does() {
        let mut oracle = TsoOracle::new(0);
        let mut last = (i64::MIN, 0);
        for (now, count) in [
            (100, 1),
            (100, 5),
            (90, 1),
            (101, 3),
            (50, MAX_LOGICAL as u32 - 1),
        ] {
            let (next, ts, _) = oracle.plan(now, count).unwrap();
            assert!(key(&ts) > last, "{ts:?} after {last:?}");
            assert!(ts.logical >= i64::from(count) && ts.logical < MAX_LOGICAL);
            last = key(&ts);
            oracle = next;
        }
    }

    #[test]
    fn test_limit_moves_ahead_and_restart_resumes_above_it() {
        let oracle = TsoOracle::new(0);
        let (oracle, ts, limit) = oracle.plan(1000, 1).unwrap();
        assert_eq!(
            limit,
            Some(1000 + TSO_WINDOW_MS),
            "first timestamp writes a limit"
        );
        let (_, _, again) = oracle.plan(1001, 1).unwrap();
        assert_eq!(again, None, "within the window: nothing to write");
        // Restart with the clock gone back: still above everything handed out.
        let restarted = TsoOracle::new(1000 + TSO_WINDOW_MS);
        let (_, after, _) = restarted.plan(10, 1).unwrap();
        assert!(key(&after) > key(&ts));
    }

    #[test]
    fn test_bad_counts_are_refused() {
        let oracle = TsoOracle::new(0);
        assert!(oracle.plan(1, 0).is_err());
        assert!(oracle.plan(1, MAX_LOGICAL as u32).is_err());
        assert!(oracle.plan(1, u32::MAX).is_err());
    }
}
