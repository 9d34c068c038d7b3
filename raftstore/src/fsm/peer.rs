//! `PeerActor`: the kameo shell around a `Peer`. Its mailbox is the only way
//! in; the router feeds it. Each message is dispatched by a
//! `PeerMsgHandler` (the peer plus the store context for this one message,
//! as TiKV's `PeerFsmDelegate`), then the peer's `Ready` is handled
//! (persist → apply → send → advance) before the next message.
//!
//! Lifecycle: spawned by the store, ticks itself through a timer task that
//! holds only a weak reference, and stops after `Destroy`, after its own
//! removal from the region, or after a disk error (which it cannot recover
//! from safely). On stop, it leaves the router and answers every waiting
//! command.

use std::sync::Arc;

use kameo::Actor;
use kameo::actor::{ActorRef, WeakActorRef};
use kameo::error::{ActorStopReason, Infallible};
use kameo::message::{Context, Message};
use kvproto::eraftpb::MessageType;
use kvproto::raft_serverpb::RaftMessage;
use router::{MailboxLoad, PeerMsg, PeerTick, StoreMsg};
use slog::{debug, error};
use tokio::task::JoinHandle;

use crate::context::StoreContext;
use crate::errors::Error;
use crate::fsm::tick_loop;
use crate::peer::Peer;

/// A region peer as an actor.
pub struct PeerActor {
    peer: Peer,
    ctx: Arc<StoreContext>,
    load: MailboxLoad,
    ticker: Option<JoinHandle<()>>,
}

impl PeerActor {
    /// An actor for `peer`; `load` is the counter its router entry shares.
    pub fn new(peer: Peer, ctx: Arc<StoreContext>, load: MailboxLoad) -> Self {
        PeerActor {
            peer,
            ctx,
            load,
            ticker: None,
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

    /// Leaves the router and stops; waiting commands get `error`.
    fn stop(&mut self, ctx: &mut Context<Self, ()>, error: &Error) {
        self.peer.fail_proposals(error);
        self.ctx.router.unregister(self.peer.region_id);
        let _ = self.ctx.router.send_store(StoreMsg::PeerStopped {
            region_id: self.peer.region_id,
            peer_id: self.peer.peer_id(),
        });
        ctx.stop();
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
            PeerMsg::RaftMessage(m) => self.on_raft_message(*m),
            PeerMsg::RaftCommand(cmd) => self.peer.propose_command(self.ctx, *cmd),
            PeerMsg::Tick(tick) => self.on_tick(tick),
            PeerMsg::SnapshotStatus { to_peer_id, status } => {
                self.on_snapshot_status(to_peer_id, status)
            }
            PeerMsg::SnapshotGenerated => self.peer.on_snapshot_generated(),
            PeerMsg::Destroy => return Flow::Destroy,
        }
        Flow::Continue
    }

    fn on_snapshot_status(&mut self, to_peer_id: u64, status: router::SnapshotStatus) {
        let status = match status {
            router::SnapshotStatus::Finish => raft::SnapshotStatus::Finish,
            router::SnapshotStatus::Failure => raft::SnapshotStatus::Failure,
        };
        self.peer.raft_group.report_snapshot(to_peer_id, status);
    }

    fn on_raft_message(&mut self, mut msg: RaftMessage) {
        let Some(message) = msg.message.take() else {
            return;
        };
        let to_me = msg.to_peer.is_some_and(|p| p.id == self.peer.peer_id());
        if !to_me {
            debug!(self.peer.logger, "dropped a raft message for another peer"; "to" => ?msg.to_peer);
            return;
        }
        if message.msg_type() == MessageType::MsgSnapshot
            && !self.peer.check_snapshot_message(self.ctx, &message)
        {
            return;
        }
        if let Some(from) = msg.from_peer {
            self.peer.peer_cache.insert(from.id, from);
        }
        if let Err(e) = self.peer.raft_group.step(message) {
            debug!(self.peer.logger, "raft message not stepped"; "err" => %e);
        }
    }

    fn on_tick(&mut self, tick: PeerTick) {
        match tick {
            PeerTick::Raft => {
                self.peer.raft_group.tick();
                self.peer.ticks += 1;
                let gc_every = self.ctx.cfg.raft_log_gc_tick_ticks.max(1) as u64;
                if self.peer.ticks.is_multiple_of(gc_every) {
                    self.peer.on_raft_log_gc_tick(self.ctx);
                }
                let heartbeat_every = self.ctx.cfg.scheduler_heartbeat_ticks.max(1) as u64;
                if self.peer.ticks.is_multiple_of(heartbeat_every) {
                    self.peer.heartbeat_scheduler(self.ctx);
                }
            }
            PeerTick::RaftLogGc => self.peer.on_raft_log_gc_tick(self.ctx),
            PeerTick::SchedulerHeartbeat => self.peer.heartbeat_scheduler(self.ctx),
            PeerTick::SplitCheck => {}
        }
    }
}

impl Actor for PeerActor {
    type Args = Self;
    type Error = Infallible;

    async fn on_start(mut state: Self, actor_ref: ActorRef<Self>) -> Result<Self, Self::Error> {
        state.start_ticker(&actor_ref);
        state.peer.maybe_campaign();
        Ok(state)
    }

    async fn on_stop(
        &mut self,
        _: WeakActorRef<Self>,
        _: ActorStopReason,
    ) -> Result<(), Self::Error> {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        self.peer
            .fail_proposals(&Error::RegionNotFound(self.peer.region_id));
        Ok(())
    }
}

impl Message<PeerMsg> for PeerActor {
    type Reply = ();

    async fn handle(&mut self, msg: PeerMsg, ctx: &mut Context<Self, ()>) {
        if msg.is_load() {
            self.load.received();
        }
        if self.peer.stopped {
            return;
        }
        let flow = PeerMsgHandler::new(&mut self.peer, &self.ctx).handle(msg);
        if let Flow::Destroy = flow {
            if let Err(e) = self.peer.destroy(&self.ctx).await {
                error!(self.peer.logger, "destroy failed"; "err" => %e);
            }
            self.stop(ctx, &Error::RegionNotFound(self.peer.region_id));
            return;
        }
        if let Err(e) = self.peer.handle_ready(&self.ctx).await {
            error!(self.peer.logger, "peer stopped on an error it cannot recover from"; "err" => %e);
            self.peer.stopped = true;
            self.stop(ctx, &e);
            return;
        }
        if self.peer.pending_remove {
            if let Err(e) = self.peer.destroy(&self.ctx).await {
                error!(self.peer.logger, "destroy failed"; "err" => %e);
            }
            self.stop(ctx, &Error::RegionNotFound(self.peer.region_id));
        }
    }
}
