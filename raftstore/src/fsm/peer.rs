//! `PeerActor`: the kameo shell around a `Peer`. Its mailbox is the only way
//! in; the router feeds it. Each message is dispatched by a
//! `PeerMsgHandler` (the peer plus the store context for this one message,
//! as TiKV's `PeerFsmDelegate`); then, once the raft messages and commands
//! queued behind it are dispatched too, the peer's `Ready` is handled
//! (persist → send → apply → advance), one for all of them: many
//! proposals and appends share one fsync. The router's count of queued
//! messages (`MailboxHandle::queued`) says whether more are waiting; a tick
//! or [`MAX_MESSAGES_PER_READY`] messages end a batch regardless, so a
//! steady stream cannot hold a Ready back.
//!
//! Lifecycle:
//!
//! ```text
//!  spawn_peer ─▶ running ─┬─ stale or removed: destroy on disk ──────┐ close the router entry,
//!                         └─ write error ────────────────────────────┴ stop gracefully: what was
//!                                                                      queued is answered or dropped
//!               running ─┬─ panic: on_panic closes the entry ─┐ kameo stops the actor,
//!                        └─ kill (store shutdown; the store   ┘ on_undelivered answers or drops
//!                           closed the entry)                   what was queued
//!   on_stop, every way: tell the store `PeerStopped { reason }`, leave the
//!   router (own incarnation only), answer the waiting proposals
//! ```
//!
//! The entry is closed before the actor takes its last message, so a
//! message either reached the queue the actor empties or came back to its
//! sender (see `router.rs`). What is left in the queue is not lost: a command
//! is answered `RegionNotFound` (it was never proposed), anything else
//! concerned only this incarnation and is dropped. The store recreates a
//! failed or panicked peer from its persisted state (`fsm/store.rs`).
//!
//! One gap is kameo's: what reaches an actor before it has started is held
//! in a start-up buffer, which a panic while emptying it discards (commands
//! there are answered by their callbacks' drop, `StaleCommand`). A voluntary
//! stop never discards it: it stops gracefully, after the buffer.
//!
//! The actor ticks itself through a timer task that holds only a weak
//! reference and ends with it (or is aborted when the actor stops).

use std::ops::ControlFlow;
use std::sync::Arc;

use kameo::Actor;
use kameo::actor::{ActorRef, WeakActorRef};
use kameo::error::{ActorStopReason, Infallible, PanicError};
use kameo::message::{BoxMessage, Context, Message};
use kvproto::raft_serverpb::RaftMessage;
use router::{MailboxHandle, PeerMsg, PeerStopReason, PeerTick, StoreMsg};
use slog::{debug, error, info};
use tokio::task::JoinHandle;

use crate::context::StoreContext;
use crate::errors::Error;
use crate::fsm::tick_loop;
use crate::operation::raft_message::Verdict;
use crate::peer::Peer;

/// The most messages dispatched before their Ready is handled.
pub const MAX_MESSAGES_PER_READY: usize = 256;

/// A region peer as an actor.
pub struct PeerActor {
    peer: Peer,
    /// Invariant: declared after `peer`, so it is dropped last: the store
    /// learns that every actor's state is gone from the context's last
    /// handle going (`Store::stop`), and the peer holds the engine too.
    ctx: Arc<StoreContext>,
    /// This incarnation's router entry.
    mailbox: MailboxHandle,
    ticker: Option<JoinHandle<()>>,
    /// Why the actor stops, once it decided to (a panic or a kill decides
    /// for it: `on_stop` gets the reason from kameo then).
    stop_reason: Option<PeerStopReason>,
    /// Messages dispatched since the last Ready was handled.
    unreadied: usize,
}

impl PeerActor {
    /// An actor for `peer`; `mailbox` is the handle its router entry shares.
    pub fn new(peer: Peer, ctx: Arc<StoreContext>, mailbox: MailboxHandle) -> Self {
        PeerActor {
            peer,
            ctx,
            mailbox,
            ticker: None,
            stop_reason: None,
            unreadied: 0,
        }
    }

    fn start_ticker(&mut self, actor_ref: &ActorRef<Self>) {
        if self.ticker.is_some() {
            return;
        }
        let weak = actor_ref.downgrade();
        let interval = self.ctx.cfg.raft_base_tick_interval;
        self.ticker = Some(tokio::spawn(tick_loop(weak, interval, || {
            PeerMsg::Tick(PeerTick::Raft)
        })));
    }

    /// Stops after destroying itself; waiting commands get `error`.
    fn stop(&mut self, ctx: &mut Context<Self, ()>, error: &Error) {
        self.stop_for(ctx, PeerStopReason::Destroyed, error);
    }

    /// Closes the router entry and stops for `reason`, gracefully: the
    /// messages already queued are taken first, as leftovers
    /// (`on_leftover`). Waiting commands get `error`. The rest of the way
    /// out is `on_stop`.
    fn stop_for(&mut self, ctx: &mut Context<Self, ()>, reason: PeerStopReason, error: &Error) {
        self.peer.fail_proposals(error);
        self.mailbox.close();
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        self.stop_reason = Some(reason);
        // The stop signal goes behind every message accepted before the
        // entry closed; only this actor's own ticker (just aborted) sends
        // past the router. A task, so that the callers need not await.
        let actor_ref = ctx.actor_ref().clone();
        tokio::spawn(async move {
            // Fails only if the actor is gone already.
            let _ = actor_ref.stop_gracefully().await;
        });
    }

    /// A message that reached the actor once it was stopping: a command is
    /// answered `RegionNotFound` (never proposed: safe to retry elsewhere);
    /// any other kind concerned only this incarnation and is dropped (raft
    /// traffic is droppable anyway). Returns whether it was dropped.
    fn on_leftover(&self, msg: PeerMsg) -> bool {
        match msg {
            PeerMsg::RaftCommand(cmd) => {
                cmd.callback
                    .respond_error(Error::RegionNotFound(self.peer.region_id).to_region_error());
                false
            }
            PeerMsg::RaftMessage(_)
            | PeerMsg::Tick(_)
            | PeerMsg::SnapshotStatus { .. }
            | PeerMsg::SnapshotGenerated
            | PeerMsg::SplitCheckResult(_)
            | PeerMsg::SplitIds(_) => true,
            // The split wrote the region's state: if this incarnation failed,
            // the store recreates the peer from it.
            PeerMsg::SplitInit { .. } => true,
        }
    }
}

/// What the actor does after a message is dispatched.
enum Flow {
    /// Handle the Ready, go on.
    Continue,
    /// Destroy the peer and stop.
    Destroy,
}

/// Handles one message for a peer: ticks, raft messages, commands, notices.
pub struct PeerMsgHandler<'a> {
    peer: &'a mut Peer,
    ctx: &'a StoreContext,
}

impl<'a> PeerMsgHandler<'a> {
    /// A handler for `peer` in the store `ctx` describes.
    pub fn new(peer: &'a mut Peer, ctx: &'a StoreContext) -> Self {
        PeerMsgHandler { peer, ctx }
    }

    /// The dispatcher: one call per message kind.
    fn handle(&mut self, msg: PeerMsg) -> Flow {
        match msg {
            PeerMsg::RaftMessage(m) => return self.on_raft_message(*m),
            PeerMsg::RaftCommand(cmd) => self.peer.propose_command(self.ctx, *cmd),
            PeerMsg::Tick(tick) => self.on_tick(tick),
            PeerMsg::SnapshotStatus { to_peer_id, status } => {
                self.on_snapshot_status(to_peer_id, status)
            }
            PeerMsg::SnapshotGenerated => self.peer.on_snapshot_generated(),
            PeerMsg::SplitCheckResult(result) => self.peer.on_split_check_result(self.ctx, *result),
            PeerMsg::SplitIds(ids) => self.peer.on_split_ids(*ids),
            PeerMsg::SplitInit { region, campaign } => self.on_split_init(*region, campaign),
        }
        Flow::Continue
    }

    /// Becomes the peer a split created, if this one is still waiting
    /// uninitialized (`Peer::split_init`).
    fn on_split_init(&mut self, region: kvproto::metapb::Region, campaign: bool) {
        match self.peer.split_init(self.ctx, region, campaign) {
            Ok(Some(mut peer)) => {
                info!(self.peer.logger, "initialized by a split"; "peer_id" => peer.peer_id(),
                    "term" => peer.term());
                peer.maybe_campaign();
                // An uninitialized peer proposes nothing; kept total anyway.
                self.peer.fail_proposals(&Error::StaleCommand);
                *self.peer = peer;
            }
            Ok(None) => {}
            Err(e) => error!(self.peer.logger, "cannot take the split's state"; "err" => %e),
        }
    }

    fn on_snapshot_status(&mut self, to_peer_id: u64, status: router::SnapshotStatus) {
        let status = match status {
            router::SnapshotStatus::Finish => raft::SnapshotStatus::Finish,
            router::SnapshotStatus::Failure => raft::SnapshotStatus::Failure,
        };
        self.peer.raft_group.report_snapshot(to_peer_id, status);
    }

    /// Steps a raft message that passed the ingress check
    /// (`operation/raft_message.rs`); a stale peer destroys itself.
    fn on_raft_message(&mut self, mut msg: RaftMessage) -> Flow {
        match self.peer.check_incoming(self.ctx, &msg) {
            Verdict::Accept => {}
            Verdict::Drop(_) | Verdict::TellSenderRemoved => return Flow::Continue,
            Verdict::DestroySelf => return Flow::Destroy,
        }
        let Some(message) = msg.message.take() else {
            return Flow::Continue;
        };
        if let Some(from) = msg.from_peer {
            self.peer.peer_cache.insert(from.id, from);
        }
        if let Err(e) = self.peer.raft_group.step(message) {
            debug!(self.peer.logger, "raft message not stepped"; "err" => %e);
        }
        Flow::Continue
    }

    fn on_tick(&mut self, tick: PeerTick) {
        match tick {
            PeerTick::Raft => {
                self.peer.raft_group.tick();
                self.peer.ticks += 1;
                self.peer
                    .expire_reads(self.ctx.cfg.raft_election_timeout_ticks as u64);
                let gc_every = self.ctx.cfg.raft_log_gc_tick_ticks.max(1) as u64;
                if self.peer.ticks.is_multiple_of(gc_every) {
                    self.peer.on_raft_log_gc_tick(self.ctx);
                }
                let heartbeat_every = self.ctx.cfg.scheduler_heartbeat_ticks.max(1) as u64;
                if self.peer.ticks.is_multiple_of(heartbeat_every) {
                    self.peer.heartbeat_scheduler(self.ctx);
                }
                let split_check_every = self.ctx.cfg.split_region_check_tick_interval.max(1) as u64;
                if self.peer.ticks.is_multiple_of(split_check_every) {
                    self.peer.on_split_region_check_tick(self.ctx);
                }
            }
            PeerTick::RaftLogGc => self.peer.on_raft_log_gc_tick(self.ctx),
            PeerTick::SchedulerHeartbeat => self.peer.heartbeat_scheduler(self.ctx),
            PeerTick::SplitCheck => self.peer.on_split_region_check_tick(self.ctx),
        }
    }
}

impl Actor for PeerActor {
    type Args = Self;
    type Error = Infallible;

    async fn on_start(mut state: Self, actor_ref: ActorRef<Self>) -> Result<Self, Self::Error> {
        state.start_ticker(&actor_ref);
        state.peer.gc_log_left_by_a_stop(&state.ctx);
        state.peer.maybe_campaign();
        Ok(state)
    }

    async fn on_panic(
        &mut self,
        _: WeakActorRef<Self>,
        err: PanicError,
    ) -> Result<ControlFlow<ActorStopReason>, Self::Error> {
        // Before kameo drains the mailbox: nothing may be accepted after it.
        self.mailbox.close();
        Ok(ControlFlow::Break(ActorStopReason::Panicked(err)))
    }

    async fn on_undelivered(
        &mut self,
        _: ActorStopReason,
        undelivered: Vec<BoxMessage<Self>>,
    ) -> Result<(), Self::Error> {
        let mut dropped = 0;
        for msg in undelivered {
            match msg.as_any().downcast::<PeerMsg>() {
                Ok(msg) => dropped += usize::from(self.on_leftover(*msg)),
                Err(_) => dropped += 1,
            }
        }
        if dropped > 0 {
            debug!(self.peer.logger, "dropped the messages left to a stopped peer"; "count" => dropped);
        }
        Ok(())
    }

    async fn on_stop(
        &mut self,
        _: WeakActorRef<Self>,
        reason: ActorStopReason,
    ) -> Result<(), Self::Error> {
        // Idempotent; covers a stop none of the paths above closed for.
        self.mailbox.close();
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        let reason = self.stop_reason.take().unwrap_or(match reason {
            ActorStopReason::Killed => PeerStopReason::Shutdown,
            ActorStopReason::Panicked(e) => PeerStopReason::Panicked(e.to_string()),
            other => PeerStopReason::Failed(format!("{other:?}")),
        });
        match &reason {
            PeerStopReason::Panicked(e) => {
                error!(self.peer.logger, "peer actor panicked"; "err" => %e)
            }
            PeerStopReason::Destroyed | PeerStopReason::Failed(_) | PeerStopReason::Shutdown => {
                debug!(self.peer.logger, "peer actor stopped"; "reason" => ?reason)
            }
        }
        let region_id = self.peer.region_id;
        // Told before the entry goes, so that whoever sees the entry gone
        // knows the store has the notice queued. The store ignores it if a
        // newer incarnation runs by then; that one's entry stays below.
        if let Err(e) = self.ctx.router.send_store(StoreMsg::PeerStopped {
            region_id,
            peer_id: self.peer.peer_id(),
            reason,
        }) {
            // Only when the store actor is gone: the store is stopping.
            debug!(self.peer.logger, "store not told of a stopped peer"; "err" => %e);
        }
        self.ctx
            .router
            .unregister(region_id, self.mailbox.incarnation());
        self.peer.fail_proposals(&Error::RegionNotFound(region_id));
        Ok(())
    }
}

impl Message<PeerMsg> for PeerActor {
    type Reply = ();

    async fn handle(&mut self, msg: PeerMsg, ctx: &mut Context<Self, ()>) {
        if msg.is_load() {
            self.mailbox.received();
        }
        if self.stop_reason.is_some() {
            if self.on_leftover(msg) {
                debug!(self.peer.logger, "dropped a message to a stopping peer");
            }
            return;
        }
        if self.peer.stopped {
            return;
        }
        #[cfg(test)]
        if self.ctx.test_hooks.take_panic(self.peer.region_id) {
            panic!(
                "panic injected by a test into region {}",
                self.peer.region_id
            );
        }
        let is_tick = matches!(msg, PeerMsg::Tick(_));
        if matches!(msg, PeerMsg::SplitInit { .. }) && self.unreadied > 0 {
            // It may replace the peer: what the old one decided goes first.
            if !self.flush_ready(ctx).await {
                return;
            }
        }
        let flow = PeerMsgHandler::new(&mut self.peer, &self.ctx).handle(msg);
        if let Flow::Destroy = flow {
            if let Err(e) = self.peer.destroy(&self.ctx).await {
                error!(self.peer.logger, "destroy failed"; "err" => %e);
            }
            self.stop(ctx, &Error::RegionNotFound(self.peer.region_id));
            return;
        }
        self.unreadied += 1;
        if !is_tick && self.mailbox.queued() > 0 && self.unreadied < MAX_MESSAGES_PER_READY {
            return;
        }
        self.flush_ready(ctx).await;
    }
}

impl PeerActor {
    /// Handles the Ready of everything dispatched so far. Returns false
    /// when the peer stopped (a disk error, or it was removed).
    async fn flush_ready(&mut self, ctx: &mut Context<Self, ()>) -> bool {
        self.unreadied = 0;
        if let Err(e) = self.peer.handle_ready(&self.ctx).await {
            error!(self.peer.logger, "peer stopped on an error it cannot recover from"; "err" => %e);
            self.peer.stopped = true;
            self.stop_for(ctx, PeerStopReason::Failed(e.to_string()), &e);
            return false;
        }
        if self.peer.pending_remove {
            if let Err(e) = self.peer.destroy(&self.ctx).await {
                error!(self.peer.logger, "destroy failed"; "err" => %e);
            }
            self.stop(ctx, &Error::RegionNotFound(self.peer.region_id));
            return false;
        }
        true
    }
}
