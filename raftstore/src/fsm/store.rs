//! `StoreActor`: the store-level actor. It receives raft messages for regions
//! this store has no peer of yet and decides whether to create one (a new
//! member being added by its leader), and store ticks: the snapshot GC tick
//! hands a sweep to the region worker.

use std::sync::Arc;

use kameo::Actor;
use kameo::actor::{ActorRef, Spawn, WeakActorRef};
use kameo::error::{ActorStopReason, Infallible};
use kameo::mailbox;
use kameo::message::{Context, Message};
use kvproto::eraftpb::MessageType;
use kvproto::metapb;
use kvproto::raft_serverpb::{PeerState, RaftMessage, RegionLocalState};
use kvproto::schedulerpb::StoreStats;
use router::{MailboxHandle, MailboxLoad, PeerMailbox, PeerMsg, StoreMsg, StoreTick};
use slog::{debug, info, warn};
use storage::CF_DEFAULT;
use storage::keys;
use tokio::task::JoinHandle;

use crate::context::StoreContext;
use crate::errors::Result;
use crate::fsm::peer::PeerActor;
use crate::fsm::tick_loop;
use crate::peer::Peer;
use crate::worker::region::RegionTask;

/// The store's own actor.
pub struct StoreActor {
    ctx: Arc<StoreContext>,
    /// Counts the raft messages queued for this actor (the router bounds them).
    load: MailboxLoad,
    /// The store's tick timers, stopped with the actor.
    tickers: Vec<JoinHandle<()>>,
}

impl StoreActor {
    /// An actor for the store `ctx` describes; `load` is the counter the
    /// router's store entry shares.
    pub fn new(ctx: Arc<StoreContext>, load: MailboxLoad) -> Self {
        StoreActor {
            ctx,
            load,
            tickers: Vec::new(),
        }
    }

    fn on_tick(&mut self, tick: StoreTick) {
        match tick {
            StoreTick::SnapshotGc => {
                self.ctx.region_worker.schedule(RegionTask::Gc);
            }
            StoreTick::SchedulerHeartbeat => {
                self.ctx.scheduler.store_heartbeat(StoreStats {
                    store_id: self.ctx.store_id,
                    region_count: self.ctx.router.region_ids().len() as u32,
                    ..Default::default()
                });
            }
        }
    }

    fn on_raft_message(&mut self, msg: Box<RaftMessage>) {
        let region_id = msg.region_id;
        if !self.ctx.router.has_region(region_id) {
            match self.maybe_create_peer(&msg) {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    warn!(self.ctx.logger, "cannot create peer"; "region_id" => region_id, "err" => %e);
                    return;
                }
            }
        }
        // Straight to the peer: should it have stopped meanwhile, the
        // message is dropped rather than sent back here.
        let _ = self.ctx.router.send(region_id, PeerMsg::RaftMessage(msg));
    }

    /// Creates an empty peer for the region `msg` is addressed to, if the
    /// message is one a leader sends a brand-new member. Returns whether a
    /// peer now exists.
    fn maybe_create_peer(&mut self, msg: &RaftMessage) -> Result<bool> {
        let region_id = msg.region_id;
        let Some(to_peer) = msg.to_peer else {
            return Ok(false);
        };
        if to_peer.store_id != self.ctx.store_id || msg.is_tombstone {
            return Ok(false);
        }
        let Some(message) = &msg.message else {
            return Ok(false);
        };
        // Only a vote request or a leader's first heartbeat (commit 0) can
        // come to a peer that does not exist yet; anything else is stale.
        let initial = message.msg_type() == MessageType::MsgRequestVote
            || (message.msg_type() == MessageType::MsgHeartbeat && message.commit == 0);
        if !initial {
            debug!(self.ctx.logger, "dropped a message for a missing peer"; "region_id" => region_id,
                "msg" => ?message.msg_type());
            return Ok(false);
        }
        let local = self
            .ctx
            .engine
            .get_msg_cf::<RegionLocalState>(CF_DEFAULT, &keys::region_state_key(region_id))?;
        if let Some(local) = local
            && local.state() == PeerState::Tombstone
        {
            let local_conf_ver = local
                .region
                .and_then(|r| r.region_epoch)
                .map_or(0, |e| e.conf_ver);
            let msg_conf_ver = msg.region_epoch.map_or(0, |e| e.conf_ver);
            if msg_conf_ver <= local_conf_ver {
                debug!(self.ctx.logger, "dropped a message for a destroyed peer"; "region_id" => region_id);
                return Ok(false);
            }
        }
        let region = metapb::Region {
            id: region_id,
            ..Default::default()
        };
        info!(self.ctx.logger, "creating peer for a new member"; "region_id" => region_id, "peer_id" => to_peer.id);
        spawn_peer(&self.ctx, region, to_peer)?;
        Ok(true)
    }
}

/// Creates the peer `meta` of `region` from the store's engine, spawns its
/// actor and routes the region to it.
pub fn spawn_peer(
    ctx: &Arc<StoreContext>,
    region: metapb::Region,
    meta: metapb::Peer,
) -> Result<()> {
    let region_id = region.id;
    let region_is_empty = region.peers.is_empty();
    let peer = Peer::new(
        &ctx.cfg,
        ctx.engine.clone(),
        region,
        meta,
        ctx.snapshot_source(region_id),
        &ctx.logger,
    )?;
    if !region_is_empty {
        ctx.store_meta().set_region(peer.region());
    }
    let mailbox = MailboxHandle::new();
    // Unbounded, as the router expects: it bounds the droppable and refusable
    // messages itself, and every other message must get through. kameo's
    // default mailbox holds 64; when full it refused ticks (the ticker then
    // stopped for good, and a peer that never ticks never campaigns) and
    // must-deliver messages alike.
    let actor = PeerActor::spawn_with_mailbox(
        PeerActor::new(peer, Arc::clone(ctx), mailbox.clone()),
        mailbox::unbounded(),
    );
    ctx.router
        .register(region_id, PeerMailbox::new(actor.recipient(), mailbox));
    Ok(())
}

impl Actor for StoreActor {
    type Args = Self;
    type Error = Infallible;

    async fn on_start(
        mut state: Self,
        actor_ref: ActorRef<Self>,
    ) -> std::result::Result<Self, Self::Error> {
        let cfg = &state.ctx.cfg;
        for (tick, interval) in [
            (StoreTick::SchedulerHeartbeat, cfg.store_heartbeat_interval),
            (StoreTick::SnapshotGc, cfg.snap_gc_interval),
        ] {
            let weak = actor_ref.downgrade();
            state
                .tickers
                .push(tokio::spawn(tick_loop(weak, interval, move || {
                    StoreMsg::Tick(tick)
                })));
        }
        Ok(state)
    }

    async fn on_stop(
        &mut self,
        _: WeakActorRef<Self>,
        _: ActorStopReason,
    ) -> std::result::Result<(), Self::Error> {
        for ticker in self.tickers.drain(..) {
            ticker.abort();
        }
        Ok(())
    }
}

impl Message<StoreMsg> for StoreActor {
    type Reply = ();

    async fn handle(&mut self, msg: StoreMsg, _: &mut Context<Self, ()>) {
        if msg.is_load() {
            self.load.received();
        }
        match msg {
            StoreMsg::RaftMessage(m) => self.on_raft_message(m),
            StoreMsg::Tick(tick) => self.on_tick(tick),
            StoreMsg::PeerStopped {
                region_id,
                peer_id,
                reason,
            } => {
                debug!(self.ctx.logger, "peer stopped"; "region_id" => region_id,
                    "peer_id" => peer_id, "reason" => ?reason);
            }
        }
    }
}
