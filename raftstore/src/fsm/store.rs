//! `StoreActor`: the store-level actor. It receives
//! - raft messages for regions this store has no running peer of, and
//!   decides whether to create one (a new member being added by its leader)
//!   or to recreate one from its persisted state (a peer that stopped);
//! - `PeerStopped` notices: a peer that failed or panicked is recreated from
//!   its persisted state if its region state is `Normal`, a tombstoned one
//!   stays dead;
//! - store ticks: the snapshot GC tick hands a sweep to the region worker;
//!   the scheduler heartbeat tick reports the region count and the data
//!   dir's disk (capacity and free space from statvfs, bytes used).
//!
//! A peer whose persisted state makes it fail again at once would be
//! recreated forever; the store recreates one at most `MAX_RESTARTS` times
//! per `RESTART_WINDOW`, then leaves it down (logged) until the store
//! restarts. Recreating needs no barrier against the old incarnation's
//! writes: a peer awaits every write it issues before its handler returns
//! or panics, and its router entry is closed before this store hears of it.

use std::collections::{HashMap, VecDeque};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kameo::Actor;
use kameo::actor::{ActorRef, Spawn, WeakActorRef};
use kameo::error::{ActorStopReason, Infallible};
use kameo::mailbox;
use kameo::message::{Context, Message};
use kvproto::eraftpb::MessageType;
use kvproto::metapb;
use kvproto::raft_serverpb::{PeerState, RaftMessage, RegionLocalState};
use kvproto::schedulerpb::StoreStats;
use router::{
    MailboxHandle, MailboxLoad, PeerMailbox, PeerMsg, PeerStopReason, StoreMsg, StoreTick,
};
use slog::{debug, error, info, warn};
use storage::CF_DEFAULT;
use storage::keys;
use tokio::task::JoinHandle;

use crate::context::StoreContext;
use crate::errors::{Error, Result};
use crate::fsm::peer::PeerActor;
use crate::fsm::tick_loop;
use crate::peer::Peer;
use crate::store_meta::StoreMeta;
use crate::worker::region::RegionTask;

/// How many times a region's peer is recreated within `RESTART_WINDOW`
/// before the store gives up on it.
pub(crate) const MAX_RESTARTS: usize = 3;
/// See `MAX_RESTARTS`.
const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// Disk space as a store reports it, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DiskStats {
    /// Size of the filesystem holding the data dir.
    capacity: u64,
    /// Free space on it that this process may use.
    available: u64,
    /// Bytes of the files under the data dir.
    used: u64,
}

/// Measures the filesystem holding `data_dir` (statvfs) and the files in it.
fn disk_stats(data_dir: &Path) -> std::io::Result<DiskStats> {
    let c_path = CString::new(data_dir.as_os_str().as_bytes())?;
    // SAFETY: `statvfs` is plain old data, so all zeroes is a valid value;
    // `c_path` is a NUL-terminated string that outlives the call, and the
    // call writes only into `stat`.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), &mut stat) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // The field types differ between platforms (u32 or u64); all fit in u64.
    #[allow(clippy::unnecessary_cast)]
    let (frsize, blocks, bavail) = (
        stat.f_frsize as u64,
        stat.f_blocks as u64,
        stat.f_bavail as u64,
    );
    Ok(DiskStats {
        capacity: blocks.saturating_mul(frsize),
        available: bavail.saturating_mul(frsize),
        used: dir_size(data_dir),
    })
}

/// Total size of the regular files under `dir`, following no symlinks;
/// entries that vanish or cannot be read (files come and go under a live
/// store) are skipped.
fn dir_size(dir: &Path) -> u64 {
    let mut total = 0u64;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() {
                total = total.saturating_add(meta.len());
            }
        }
    }
    total
}

/// The store's own actor.
pub struct StoreActor {
    ctx: Arc<StoreContext>,
    /// Counts the raft messages queued for this actor (the router bounds them).
    load: MailboxLoad,
    /// The store's tick timers, stopped with the actor.
    tickers: Vec<JoinHandle<()>>,
    /// When each region's peer was recreated lately (within `RESTART_WINDOW`).
    restarts: HashMap<u64, VecDeque<Instant>>,
}

impl StoreActor {
    /// An actor for the store `ctx` describes; `load` is the counter the
    /// router's store entry shares.
    pub fn new(ctx: Arc<StoreContext>, load: MailboxLoad) -> Self {
        StoreActor {
            ctx,
            load,
            tickers: Vec::new(),
            restarts: HashMap::new(),
        }
    }

    fn on_tick(&mut self, tick: StoreTick) {
        match tick {
            StoreTick::SnapshotGc => {
                self.ctx.region_worker.schedule(RegionTask::Gc);
            }
            StoreTick::SchedulerHeartbeat => self.on_store_heartbeat_tick(),
        }
    }

    /// Reports the store's region count and the disk space of its data dir.
    /// Measuring the disk is blocking I/O, so it runs on the blocking pool.
    fn on_store_heartbeat_tick(&self) {
        let store_id = self.ctx.store_id;
        let region_count = u32::try_from(self.ctx.router.region_ids().len()).unwrap_or(u32::MAX);
        let data_dir = self.ctx.engine.path().to_path_buf();
        let scheduler = Arc::clone(&self.ctx.scheduler);
        let logger = self.ctx.logger.clone();
        let report = move || {
            let mut stats = StoreStats {
                store_id,
                region_count,
                ..Default::default()
            };
            match disk_stats(&data_dir) {
                Ok(disk) => {
                    stats.capacity = disk.capacity;
                    stats.available = disk.available;
                    stats.used_size = disk.used;
                }
                Err(e) => {
                    warn!(logger, "cannot measure the data dir's disk"; "path" => %data_dir.display(), "err" => %e);
                }
            }
            scheduler.store_heartbeat(stats);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(report)),
            Err(_) => report(),
        }
    }

    fn on_raft_message(&mut self, msg: Box<RaftMessage>) {
        let region_id = msg.region_id;
        if !self.ctx.router.has_region(region_id) {
            // Held from the check to the registration: a peer applying a
            // split creates peers under the same lock (`operation/split.rs`).
            let ctx = Arc::clone(&self.ctx);
            let mut meta = ctx.store_meta();
            let created = if ctx.router.has_region(region_id) {
                Ok(true)
            } else {
                self.maybe_create_peer(&mut meta, &msg)
            };
            drop(meta);
            match created {
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

    /// Creates a peer for the region `msg` is addressed to: from its
    /// persisted state if the store holds the region (its peer stopped), or
    /// empty if the message is one a leader sends a brand-new member.
    /// Returns whether a peer now runs. The caller holds the store meta
    /// (`meta`) locked.
    fn maybe_create_peer(&mut self, meta: &mut StoreMeta, msg: &RaftMessage) -> Result<bool> {
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
        let local = self.region_state(region_id)?;
        if let Some(local) = &local {
            match local.state() {
                PeerState::Normal => return self.maybe_restart_peer(meta, region_id, local),
                PeerState::Applying => {
                    debug!(self.ctx.logger, "dropped a message for a region left applying";
                        "region_id" => region_id);
                    return Ok(false);
                }
                PeerState::Tombstone => {
                    let local_epoch = local
                        .region
                        .as_ref()
                        .and_then(|r| r.region_epoch)
                        .unwrap_or_default();
                    let msg_epoch = msg.region_epoch.unwrap_or_default();
                    // Only a newer membership can have added this store
                    // again; an older range (version) is stale as well.
                    if msg_epoch.conf_ver <= local_epoch.conf_ver
                        || msg_epoch.version < local_epoch.version
                    {
                        debug!(self.ctx.logger, "dropped a message for a destroyed peer"; "region_id" => region_id);
                        return Ok(false);
                    }
                }
            }
        }
        // Only a (pre-)vote request or a leader's first heartbeat (commit 0)
        // can come to a peer that does not exist yet; anything else is
        // stale. The pre-vote matters: a leader of a two-member region whose
        // new member never answered steps down (CheckQuorum), and from then
        // on sends only pre-votes, which must create the member.
        let initial = matches!(
            message.msg_type(),
            MessageType::MsgRequestVote | MessageType::MsgPreVote
        ) || (message.msg_type() == MessageType::MsgHeartbeat && message.commit == 0);
        if !initial {
            debug!(self.ctx.logger, "dropped a message for a missing peer"; "region_id" => region_id,
                "msg" => ?message.msg_type());
            return Ok(false);
        }
        // A region whose range this store still serves under another region
        // is one split off a region here whose split this store has not
        // applied yet: applying it creates the peer, initialized. An empty
        // peer now would only wait for a snapshot the overlap refuses.
        let range = metapb::Region {
            id: region_id,
            start_key: msg.start_key.clone(),
            end_key: msg.end_key.clone(),
            ..Default::default()
        };
        if let Some(other) = meta.overlapping(&range) {
            debug!(self.ctx.logger, "dropped a message for a region overlapping another";
                "region_id" => region_id, "other_region" => other);
            return Ok(false);
        }
        let region = metapb::Region {
            id: region_id,
            ..Default::default()
        };
        info!(self.ctx.logger, "creating peer for a new member"; "region_id" => region_id, "peer_id" => to_peer.id);
        spawn_peer(&self.ctx, meta, region, to_peer, false)?;
        Ok(true)
    }

    fn on_peer_stopped(&mut self, region_id: u64, peer_id: u64, reason: PeerStopReason) {
        match &reason {
            PeerStopReason::Destroyed | PeerStopReason::Shutdown => {
                debug!(self.ctx.logger, "peer stopped"; "region_id" => region_id,
                    "peer_id" => peer_id, "reason" => ?reason);
                return;
            }
            PeerStopReason::Failed(e) | PeerStopReason::Panicked(e) => {
                warn!(self.ctx.logger, "peer stopped abnormally"; "region_id" => region_id,
                    "peer_id" => peer_id, "err" => %e);
            }
        }
        let ctx = Arc::clone(&self.ctx);
        let mut meta = ctx.store_meta();
        if ctx.router.has_region(region_id) {
            // A newer incarnation runs already (created for a message).
            return;
        }
        let result = self.region_state(region_id).and_then(|local| match local {
            Some(local) if local.state() == PeerState::Normal => {
                self.maybe_restart_peer(&mut meta, region_id, &local)
            }
            Some(local) if local.state() == PeerState::Tombstone => {
                // Destroyed, though it could not finish (it failed or
                // panicked after writing its tombstone): its range is free.
                meta.remove(region_id);
                info!(self.ctx.logger, "stopped peer stays destroyed"; "region_id" => region_id);
                Ok(false)
            }
            // Applying: finished when the store restarts. None: it was never
            // initialized, and its leader recreates it with its next message.
            _ => Ok(false),
        });
        if let Err(e) = result {
            error!(self.ctx.logger, "cannot recreate a stopped peer"; "region_id" => region_id, "err" => %e);
        }
    }

    /// Recreates the peer of `region_id` from its persisted `Normal` state,
    /// unless it was recreated too often lately. Returns whether it runs.
    /// The caller holds the store meta (`meta`) locked.
    fn maybe_restart_peer(
        &mut self,
        meta: &mut StoreMeta,
        region_id: u64,
        local: &RegionLocalState,
    ) -> Result<bool> {
        let now = Instant::now();
        let recent = self.restarts.entry(region_id).or_default();
        while recent
            .front()
            .is_some_and(|t| now.duration_since(*t) > RESTART_WINDOW)
        {
            recent.pop_front();
        }
        if recent.len() >= MAX_RESTARTS {
            debug!(self.ctx.logger, "peer not recreated: it failed too often"; "region_id" => region_id,
                "restarts" => recent.len());
            return Ok(false);
        }
        let region = local.region.clone().unwrap_or_default();
        let Some(peer) = region
            .peers
            .iter()
            .find(|p| p.store_id == self.ctx.store_id)
            .copied()
        else {
            debug!(self.ctx.logger, "region lists no peer on this store"; "region_id" => region_id);
            return Ok(false);
        };
        recent.push_back(now);
        if recent.len() == MAX_RESTARTS {
            error!(self.ctx.logger, "peer recreated for the last time; if it fails again the region stays down on this store until it restarts";
                "region_id" => region_id);
        }
        info!(self.ctx.logger, "recreating a stopped peer from its persisted state";
            "region_id" => region_id, "peer_id" => peer.id);
        spawn_peer(&self.ctx, meta, region, peer, false)?;
        Ok(true)
    }

    fn region_state(&self, region_id: u64) -> Result<Option<RegionLocalState>> {
        Ok(self
            .ctx
            .engine
            .get_msg_cf::<RegionLocalState>(CF_DEFAULT, &keys::region_state_key(region_id))?)
    }
}

/// Creates the peer `meta` of `region` from the store's engine, spawns its
/// actor and routes the region to it; it campaigns as it starts if
/// `campaign` is set. The caller holds the store meta (`store_meta`)
/// locked from checking that no peer of the region runs until this
/// returns, so two creators never race.
pub fn spawn_peer(
    ctx: &Arc<StoreContext>,
    store_meta: &mut StoreMeta,
    region: metapb::Region,
    meta: metapb::Peer,
    campaign: bool,
) -> Result<()> {
    let region_id = region.id;
    let region_is_empty = region.peers.is_empty();
    let mut peer = Peer::new(
        &ctx.cfg,
        ctx.engine.clone(),
        region,
        meta,
        ctx.snapshot_source(region_id),
        &ctx.logger,
    )?;
    peer.campaign_on_start = campaign;
    if !region_is_empty {
        store_meta.set_region(peer.region());
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
    if ctx
        .router
        .try_register(
            region_id,
            PeerMailbox::new(actor.clone().recipient(), mailbox),
        )
        .is_err()
    {
        // The store is stopping and killed the actors it had: this one
        // would be left running, holding the engine open.
        actor.kill();
        return Err(Error::Stopped);
    }
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
            } => self.on_peer_stopped(region_id, peer_id, reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_disk_stats_of_a_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("a"), vec![0u8; 1000]).unwrap();
        std::fs::write(dir.path().join("sub").join("b"), vec![0u8; 24]).unwrap();
        let stats = disk_stats(dir.path()).unwrap();
        assert_eq!(stats.used, 1024, "files in the dir and below");
        assert!(stats.capacity > 0, "{stats:?}");
        assert!(stats.available <= stats.capacity, "{stats:?}");
        assert!(disk_stats(&dir.path().join("missing")).is_err());
    }
}
