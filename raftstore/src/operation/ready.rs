//! Handling a `Ready`: persist, then apply, then send, then advance.
//!
//! The order is the durability argument: a vote or an append acknowledgement
//! leaves this store only after the state it reports is fsynced; an applied
//! entry is one the raft log already holds durably.
//!
//! The raw node's rule holds: nothing touches the raft node between
//! `ready()` and `advance()`. What handling a Ready decides for the node
//! (a conf change applied, a snapshot or an unreachable peer to report) is
//! queued as a `RaftOp` and handed to the node right after `advance()`; the
//! work that produces (a new leader's messages, a retried probe) is handled
//! in another round at once, not when the next mailbox message comes.

use std::sync::Arc;

use kvproto::eraftpb::{ConfChange, Message, MessageType};
use kvproto::raft_serverpb::RaftMessage;
use raft::StateRole;
use slog::{debug, info, warn};

use crate::context::StoreContext;
use crate::errors::Result;
use crate::peer::Peer;
use crate::transport::TransportError;

/// Rounds of Ready handling one call does at most. Each round is driven by
/// what the previous one queued (a conf change, a report); a bound keeps a
/// peer from starving its mailbox, and what is left waits for the next tick.
const MAX_READY_ROUNDS: usize = 4;

/// A call into the raft node decided while handling a Ready, made after
/// `advance()`.
#[derive(Debug)]
pub(crate) enum RaftOp {
    /// A committed membership change was applied to the region.
    ApplyConfChange(ConfChange),
    /// A snapshot sent to this peer id was lost.
    SnapshotFailed(u64),
    /// This peer id could not be reached.
    Unreachable(u64),
}

impl Peer {
    /// Processes everything Raft has ready. On a disk error the peer cannot
    /// go on safely: the error is returned and the caller stops the peer.
    pub async fn handle_ready(&mut self, ctx: &Arc<StoreContext>) -> Result<()> {
        for _ in 0..MAX_READY_ROUNDS {
            self.release_own_removal();
            if self.stopped || !self.raft_group.has_ready() {
                break;
            }
            self.handle_one_ready(ctx).await?;
            for op in std::mem::take(&mut self.raft_ops) {
                self.run_raft_op(op);
            }
        }
        Ok(())
    }

    fn run_raft_op(&mut self, op: RaftOp) {
        match op {
            RaftOp::ApplyConfChange(cc) => {
                self.raft_group.apply_conf_change(&cc);
            }
            RaftOp::SnapshotFailed(to) => self
                .raft_group
                .report_snapshot(to, raft::SnapshotStatus::Failure),
            RaftOp::Unreachable(to) => self.raft_group.report_unreachable(to),
        }
    }

    async fn handle_one_ready(&mut self, ctx: &Arc<StoreContext>) -> Result<()> {
        let mut rd = self.raft_group.ready();

        // 1. Persist the snapshot, entries and hard state, synced.
        let mut wb = ctx.engine.write_batch();
        let pending = self.raft_group.store().prepare_persist(&rd, &mut wb)?;
        ctx.writer.write(wb, true).await?;
        if let Some(install) = self.raft_group.store_mut().commit_persist(pending) {
            // Its data before any entry after it (operation/snapshot.rs).
            self.apply_snapshot(ctx, install).await?;
        }
        if let Some(ss) = rd.soft_state {
            self.on_role_changed(ctx, ss.raft_state);
        }

        // 2. Apply what is committed (a removal of this peer may wait,
        // operation/own_removal.rs; `advance` then covers what was kept).
        self.hold_own_removal(&mut rd.committed_entries);
        let committed = rd.committed_entries.clone();
        self.apply_committed(ctx, committed).await?;

        // 3. Send.
        for msg in &rd.messages {
            self.send_raft_message(ctx, msg.clone());
        }

        // 4. Advance.
        self.raft_group.advance(rd);
        Ok(())
    }

    /// Proposals stay on a role change: their entries may still commit
    /// under the new leader, and are answered when their index applies.
    fn on_role_changed(&mut self, ctx: &StoreContext, role: StateRole) {
        info!(self.logger, "role changed"; "role" => ?role, "term" => self.term(),
            "leader" => self.raft_group.raft().leader_id());
        if role == StateRole::Leader {
            self.heartbeat_scheduler(ctx);
        }
    }

    fn send_raft_message(&mut self, ctx: &StoreContext, msg: Message) {
        let Some(to_peer) = self.peer_cache.get(&msg.to).copied() else {
            warn!(self.logger, "no address for peer"; "to" => msg.to);
            return;
        };
        let to = msg.to;
        let raft_msg = RaftMessage {
            region_id: self.region_id,
            from_peer: Some(self.meta),
            to_peer: Some(to_peer),
            message: Some(msg),
            region_epoch: self.region().region_epoch,
            // The range lets a store that lacks this region tell whether it
            // still serves the range under another one (a split it has not
            // applied yet), before it creates a peer (`fsm/store.rs`).
            start_key: self.region().start_key.clone(),
            end_key: self.region().end_key.clone(),
            ..Default::default()
        };
        let is_snapshot = raft_msg
            .message
            .as_ref()
            .is_some_and(|m| m.msg_type() == MessageType::MsgSnapshot);
        let sent = if is_snapshot {
            ctx.transport.send_snapshot(raft_msg)
        } else {
            ctx.transport.send(raft_msg)
        };
        if is_snapshot && sent.is_err() {
            // Nothing will be reported for it: let Raft probe again.
            self.raft_ops.push(RaftOp::SnapshotFailed(to));
        }
        match sent {
            Ok(()) => {}
            Err(TransportError::Unreachable(store_id)) => {
                debug!(self.logger, "peer unreachable"; "to" => to, "store_id" => store_id);
                self.raft_ops.push(RaftOp::Unreachable(to));
            }
            Err(TransportError::Dropped) => {}
        }
    }
}
