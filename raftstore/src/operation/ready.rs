//! Handling a `Ready`: persist, then send, then apply, then advance.
//!
//! The order is the durability argument: a vote or an append acknowledgement
//! leaves this store only after the state it reports is fsynced; an applied
//! entry is one the raft log already holds durably. Messages go before the
//! apply, as etcd orders it: raft built them from its log and hard state,
//! never from the state machine, so no message depends on the entries this
//! Ready applies (a snapshot this Ready installs is installed during the
//! persist, before anything is sent). A follower's acknowledgement thus
//! does not wait for the entries the same append told it were committed.
//!
//! One exception, a leader's replication (Raft thesis §10.2.1): `MsgAppend`
//! and `MsgHeartbeat` leave *before* the persist, so the followers write
//! while the leader does. They report nothing about this node's disk, and
//! only leaders send them. The leader still counts itself toward a quorum
//! only once its own write is durable: the actor awaits the persist before
//! it steps anything else, so no follower's answer is counted before then.
//! A Ready that changes nothing but the commit index is written without an
//! fsync (`PeerStorage::must_sync`), in the same batch as the entries it
//! lets apply.
//!
//! When a synced Ready installs no snapshot, its other messages (a
//! follower's acknowledgements, votes) go with its batch to the store's
//! writer, which sends them right after the fsync (`worker/write.rs`):
//! still after the persist, but without waiting for this actor to wake.
//! A `MsgSnapshot` among them keeps them all here, since its failure is
//! reported differently.
//!
//! Appends to one peer that follow each other (many proposals between two
//! Readies) are sent as one message (`coalesce_appends`).
//!
//! The raw node's rule holds: nothing touches the raft node between
//! `ready()` and `advance()`. What handling a Ready decides for the node
//! (a conf change applied, a snapshot or an unreachable peer to report) is
//! queued as a `RaftOp` and handed to the node right after `advance()`; the
//! work that produces (a new leader's messages, a retried probe) is handled
//! in another round at once, not when the next mailbox message comes.

use std::collections::HashMap;
use std::sync::Arc;

use kvproto::eraftpb::{ConfChange, Message, MessageType};
use kvproto::raft_serverpb::RaftMessage;
use raft::StateRole;
use slog::{info, warn};

use crate::context::StoreContext;
use crate::errors::Result;
use crate::peer::Peer;
use crate::transport::unreachable_peer;

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
        self.propose_pending_writes();
        self.request_read_index();
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

        let (early, mut late): (Vec<Message>, Vec<Message>) =
            coalesce_appends(std::mem::take(&mut rd.messages))
                .into_iter()
                .partition(|m| {
                    matches!(
                        m.msg_type(),
                        MessageType::MsgAppend | MessageType::MsgHeartbeat
                    )
                });
        // 0. A leader's replication goes out first (module doc).
        for msg in early {
            self.send_raft_message(ctx, msg);
        }

        // 1. Persist the snapshot, entries and hard state; synced when
        // anything but the commit index changed.
        let mut wb = ctx.engine.write_batch();
        let store = self.raft_group.store();
        let pending = store.prepare_persist(&rd, &mut wb)?;
        // Unsynced, it rides in the apply batch: one write, not two.
        let unsynced_state = if store.must_sync(&rd) || rd.snapshot.is_some() {
            // The writer sends them once the batch is durable (module doc).
            let hand_over = rd.snapshot.is_none()
                && late
                    .iter()
                    .all(|m| m.msg_type() != MessageType::MsgSnapshot);
            let messages = if hand_over {
                std::mem::take(&mut late)
                    .into_iter()
                    .filter_map(|m| self.raft_message(m))
                    .collect()
            } else {
                Vec::new()
            };
            let unreachable = ctx.writer.write_synced_then_send(wb, messages).await?;
            self.raft_ops
                .extend(unreachable.into_iter().map(RaftOp::Unreachable));
            None
        } else {
            Some(wb)
        };
        if let Some(install) = self.raft_group.store_mut().commit_persist(pending) {
            // Its data before any entry after it (operation/snapshot.rs).
            self.apply_snapshot(ctx, install).await?;
        }
        if let Some(ss) = rd.soft_state {
            self.on_role_changed(ctx, ss.raft_state);
        }

        // 2. Send (module doc).
        for msg in late {
            self.send_raft_message(ctx, msg);
        }

        // 3. Apply what is committed (a removal of this peer may wait,
        // operation/own_removal.rs; `advance` then covers what was kept).
        self.hold_own_removal(&mut rd.committed_entries);
        let committed = rd.committed_entries.clone();
        self.apply_committed(ctx, committed, unsynced_state).await?;
        self.on_read_states(ctx, &rd.read_states);
        self.run_ready_reads(ctx)?;

        // 4. Advance.
        self.raft_group.advance(rd);
        Ok(())
    }

    /// Proposals stay on a role change: their entries may still commit
    /// under the new leader, and are answered when their index applies.
    fn on_role_changed(&mut self, ctx: &StoreContext, role: StateRole) {
        info!(self.logger, "role changed"; "role" => ?role, "term" => self.term(),
            "leader" => self.raft_group.raft().leader_id());
        self.lease.expire();
        if role == StateRole::Leader {
            self.heartbeat_scheduler(ctx);
        } else {
            self.fail_reads_on_step_down();
        }
    }

    fn send_raft_message(&mut self, ctx: &StoreContext, msg: Message) {
        let to = msg.to;
        let Some(raft_msg) = self.raft_message(msg) else {
            return;
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
        if let Some(to) = unreachable_peer(sent, to, &self.logger) {
            self.raft_ops.push(RaftOp::Unreachable(to));
        }
    }

    /// `msg` addressed for the transport, or `None` (logged) when the
    /// target peer's store is not known.
    fn raft_message(&self, msg: Message) -> Option<RaftMessage> {
        let Some(to_peer) = self.peer_cache.get(&msg.to).copied() else {
            warn!(self.logger, "no address for peer"; "to" => msg.to);
            return None;
        };
        Some(RaftMessage {
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
        })
    }
}

/// Merges each `MsgAppend` into the append before it when both go to the
/// same peer, nothing else to that peer lies between them, and the second
/// continues the first (same term, its previous entry is the first's last).
/// The merged message carries the later commit index. Order per peer is kept.
fn coalesce_appends(msgs: Vec<Message>) -> Vec<Message> {
    let mut out: Vec<Message> = Vec::with_capacity(msgs.len());
    // Per peer: where its last message so far sits in `out`.
    let mut last_to: HashMap<u64, usize> = HashMap::new();
    for msg in msgs {
        if msg.msg_type() == MessageType::MsgAppend
            && let Some(&pos) = last_to.get(&msg.to)
            && continues(&out[pos], &msg)
        {
            let prev = &mut out[pos];
            prev.commit = prev.commit.max(msg.commit);
            prev.entries.extend(msg.entries);
            continue;
        }
        last_to.insert(msg.to, out.len());
        out.push(msg);
    }
    out
}

/// Whether append `next` picks up exactly where append `prev` ends.
fn continues(prev: &Message, next: &Message) -> bool {
    let Some(last) = prev.entries.last() else {
        return false;
    };
    prev.msg_type() == MessageType::MsgAppend
        && prev.term == next.term
        && next.index == last.index
        && next.log_term == last.term
}

#[cfg(test)]
mod tests {
    use kvproto::eraftpb::Entry;

    use super::*;

    fn append(to: u64, index: u64, log_term: u64, entries: &[(u64, u64)], commit: u64) -> Message {
        Message {
            msg_type: MessageType::MsgAppend as i32,
            to,
            term: 2,
            index,
            log_term,
            commit,
            entries: entries
                .iter()
                .map(|&(index, term)| Entry {
                    index,
                    term,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn shape(msgs: &[Message]) -> Vec<(u64, MessageType, u64, Vec<u64>, u64)> {
        msgs.iter()
            .map(|m| {
                (
                    m.to,
                    m.msg_type(),
                    m.index,
                    m.entries.iter().map(|e| e.index).collect(),
                    m.commit,
                )
            })
            .collect()
    }

    #[test]
    fn consecutive_appends_to_one_peer_become_one() {
        let msgs = vec![
            append(2, 5, 2, &[(6, 2)], 5),
            append(3, 5, 2, &[(6, 2)], 5),
            append(2, 6, 2, &[(7, 2)], 5),
            append(3, 6, 2, &[(7, 2), (8, 2)], 6),
            append(2, 7, 2, &[(8, 2)], 6),
        ];
        assert_eq!(
            shape(&coalesce_appends(msgs)),
            vec![
                (2, MessageType::MsgAppend, 5, vec![6, 7, 8], 6),
                (3, MessageType::MsgAppend, 5, vec![6, 7, 8], 6),
            ]
        );
    }

    #[test]
    fn appends_that_do_not_continue_or_are_separated_stay_apart() {
        let heartbeat = Message {
            msg_type: MessageType::MsgHeartbeat as i32,
            to: 2,
            term: 2,
            ..Default::default()
        };
        let msgs = vec![
            append(2, 5, 2, &[(6, 2)], 5),
            // A probe from an earlier index: does not continue.
            append(2, 3, 1, &[(4, 1)], 5),
            heartbeat,
            // Continues the probe, but a heartbeat lies between.
            append(2, 4, 1, &[(5, 2)], 5),
            // An empty append (commit only) is never merged into.
            append(3, 6, 2, &[], 6),
            append(3, 6, 2, &[(7, 2)], 6),
        ];
        assert_eq!(shape(&coalesce_appends(msgs.clone())).len(), msgs.len());
    }
}
