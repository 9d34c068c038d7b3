//! Raft-log GC: when the log kept since the last compaction grows past a
//! count or size limit, the leader proposes `CompactLog`; applying it moves
//! the truncated state (in the same batch as the data), and the GC worker
//! deletes the entries off the hot path.
//!
//! The GC range starts where the previous one ended (`Peer::last_compacted_index`).
//! GC tasks live only in memory, so a crash or a stop after the truncated
//! state was written but before the worker deleted the entries leaves them
//! behind: a peer that starts deletes everything up to its truncated index
//! at once (a range delete costs the same whatever its start), not at its
//! next compaction, which an idle region may never make.
//!
//! The compact index is the lowest index every follower has (so none of them
//! needs a snapshot for it) unless a follower lags so far that keeping the
//! log for it would break the limits; then it is the applied index.

use kvproto::raft_cmdpb::{
    AdminCmdType, AdminRequest, CompactLogRequest, RaftCmdRequest, RaftRequestHeader,
};
use prost::Message as _;
use slog::{debug, error};

use crate::context::StoreContext;
use crate::errors::{Error, Result};
use crate::peer::Peer;
use crate::worker::raftlog_gc::GcTask;

impl Peer {
    /// On a GC tick: proposes `CompactLog` if the log is over its limits.
    pub fn on_raft_log_gc_tick(&mut self, ctx: &StoreContext) {
        if !self.is_leader() {
            return;
        }
        let store = self.raft_group.store();
        let applied = store.applied_index();
        let first = store.truncated_index() + 1;
        if applied < first {
            return;
        }
        let kept = applied - first + 1;
        let over_count = kept >= ctx.cfg.raft_log_gc_count_limit;
        let over_size = self.approximate_log_size >= ctx.cfg.raft_log_gc_size_limit;
        if !over_count && !over_size {
            return;
        }
        let replicated = self
            .raft_group
            .raft()
            .prs()
            .values()
            .map(|pr| pr.matched())
            .min()
            .unwrap_or(applied);
        let compact_index =
            compact_index(applied, first, replicated, ctx.cfg.raft_log_gc_count_limit);
        if compact_index < first {
            return;
        }
        let log = self.raft_group.raft().raft_log();
        let Ok(compact_term) = log.term(compact_index) else {
            return;
        };
        if let Err(e) = check_compact_log(compact_index, compact_term, applied, |index| {
            log.term(index).ok()
        }) {
            // Built from the log just now: only a bug gets here.
            error!(self.logger, "not proposing an unsound log compaction"; "err" => %e);
            return;
        }
        let request = RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: self.region_id,
                peer: Some(self.meta),
                ..Default::default()
            }),
            admin_request: Some(AdminRequest {
                cmd_type: AdminCmdType::CompactLog as i32,
                compact_log: Some(CompactLogRequest {
                    compact_index,
                    compact_term,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        debug!(self.logger, "proposing log compaction"; "compact_index" => compact_index,
            "kept" => kept, "approximate_size" => self.approximate_log_size);
        // Nobody waits for this command; a dropped proposal is retried next tick.
        let _ = self.raft_group.propose(request.encode_to_vec());
    }

    /// At start: deletes what a stop left of the log below the truncated
    /// index (module doc).
    pub(crate) fn gc_log_left_by_a_stop(&mut self, ctx: &StoreContext) {
        let store = self.raft_group.store();
        if store.is_initialized() && store.truncated_index() > 0 {
            let truncated = store.truncated_index();
            self.schedule_log_gc(ctx, truncated);
        }
    }

    /// Hands the deletion of entries `[last_compacted_index, truncated_index]`
    /// to the GC worker.
    pub(crate) fn schedule_log_gc(&mut self, ctx: &StoreContext, truncated_index: u64) {
        self.approximate_log_size = 0;
        ctx.raftlog_gc.schedule(GcTask {
            region_id: self.region_id,
            start_index: self.last_compacted_index,
            end_index: truncated_index + 1,
        });
        self.last_compacted_index = truncated_index + 1;
    }
}

/// Where to compact the log of a leader that applied up to `applied`,
/// whose log starts at `first`, and whose slowest follower has
/// `replicated`: there, so no follower needs a snapshot, unless that keeps
/// `count_limit` entries or more (a follower lagging that far gets a
/// snapshot anyway); then at `applied`.
///
/// A follower may have more of the log than the leader applied
/// (`replicated > applied`): the compaction then stops at `applied`.
pub(crate) fn compact_index(applied: u64, first: u64, replicated: u64, count_limit: u64) -> u64 {
    if replicated >= first && applied.saturating_sub(replicated) < count_limit {
        replicated.min(applied)
    } else {
        applied
    }
}

/// Whether compacting the log up to (`index`, `term`) is sound: only
/// applied entries are compacted, and `term` is the one the log holds at
/// `index` (`log_term`), or the truncated state would carry a false term
/// and break log matching for whoever probes at the truncation point.
/// Checked before proposing and again at apply.
pub(crate) fn check_compact_log(
    index: u64,
    term: u64,
    applied: u64,
    log_term: impl Fn(u64) -> Option<u64>,
) -> Result<()> {
    if index > applied {
        return Err(Error::InvalidRequest(format!(
            "CompactLog to index {index} beyond the applied index {applied}"
        )));
    }
    match log_term(index) {
        Some(t) if t == term => Ok(()),
        found => Err(Error::InvalidRequest(format!(
            "CompactLog names term {term} at index {index}, the log holds {found:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A follower whose match index is above the leader's applied index:
    /// `applied - replicated` underflowed (a debug build panicked, a
    /// release build wrapped and compacted at `applied` for no reason).
    #[test]
    fn compact_index_with_a_follower_ahead_of_applied() {
        assert_eq!(compact_index(100, 50, 120, 1000), 100);
        assert_eq!(compact_index(100, 50, u64::MAX, 1000), 100);
    }

    #[test]
    fn compact_index_keeps_the_slowest_follower_served() {
        // Within the limit: compact only what every follower has.
        assert_eq!(compact_index(100, 50, 80, 1000), 80);
        // A follower lagging past the limit gets a snapshot.
        assert_eq!(compact_index(2000, 50, 80, 1000), 2000);
        // A follower behind the log's start needs a snapshot anyway.
        assert_eq!(compact_index(100, 50, 10, 1000), 100);
    }

    #[test]
    fn compact_log_must_name_the_logs_term_at_an_applied_index() {
        let log_term = |index: u64| (index <= 30).then_some(if index <= 10 { 2 } else { 3 });
        assert!(check_compact_log(20, 3, 25, log_term).is_ok());
        assert!(
            check_compact_log(20, 2, 25, log_term).is_err(),
            "false term"
        );
        assert!(
            check_compact_log(26, 3, 25, log_term).is_err(),
            "not applied"
        );
        assert!(
            check_compact_log(40, 3, 45, log_term).is_err(),
            "not in the log"
        );
    }
}
