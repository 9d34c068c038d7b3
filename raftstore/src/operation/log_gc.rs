//! Raft-log GC: when the log kept since the last compaction grows past a
//! count or size limit, the leader proposes `CompactLog`; applying it moves
//! the truncated state (in the same batch as the data), and the GC worker
//! deletes the entries off the hot path.
//!
//! The GC range starts where the previous one ended, and at index 0 for the
//! first compaction after the peer starts (`Peer::last_compacted_index`):
//! GC tasks live only in memory, so a crash after the truncated state was
//! written but before the worker deleted the entries leaves them behind, and
//! the first GC after the restart deletes them too (a range delete costs the
//! same whatever its start; TiKV starts its first GC at 0 as well).
//!
//! The compact index is the lowest index every follower has (so none of them
//! needs a snapshot for it) unless a follower lags so far that keeping the
//! log for it would break the limits; then it is the applied index.

use kvproto::raft_cmdpb::{
    AdminCmdType, AdminRequest, CompactLogRequest, RaftCmdRequest, RaftRequestHeader,
};
use prost::Message as _;
use slog::debug;

use crate::context::StoreContext;
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
            if replicated >= first && applied - replicated < ctx.cfg.raft_log_gc_count_limit {
                replicated.min(applied)
            } else {
                applied
            };
        if compact_index < first {
            return;
        }
        let Ok(compact_term) = self.raft_group.raft().raft_log().term(compact_index) else {
            return;
        };
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
