//! `Router`: region id → the peer actor's mailbox, plus the store's mailbox.
//!
//! This is TinyKV's `peerSender` made one mailbox per peer. Mailboxes are
//! kameo's unbounded ones, so a send never blocks and no sender can deadlock
//! on a full mailbox; load is bounded by the router instead. Each peer has a
//! `MailboxLoad`, the number of droppable/refusable messages queued: the
//! router increments it on send and the actor decrements it on receipt.
//!
//! Policy (see `msg.rs` for the kinds):
//! - raft message, load at the limit → dropped (`Full`); unknown region →
//!   forwarded to the store actor, which may create the peer.
//! - client command, load at the limit → handed back (`Full`) for the caller
//!   to answer `ServerIsBusy`; unknown region → `RegionNotFound`.
//! - must-deliver messages ignore the limit. A stopped actor hands any message
//!   back (`Stopped`).
//!
//! Invariant: a region id maps to at most one mailbox; registering a new
//! incarnation of a peer replaces the old one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use kameo::actor::Recipient;
use kameo::error::SendError;
use kvproto::raft_serverpb::RaftMessage;
use thiserror::Error;

use crate::msg::{PeerMsg, RaftCommand, StoreMsg};

/// Why a message could not be delivered; the message comes back.
#[derive(Debug, Error)]
pub enum RouterError<M> {
    /// No peer of this region on this store.
    #[error("region {0} not found")]
    RegionNotFound(u64, M),
    /// The mailbox is over its limit.
    #[error("mailbox of region {0} is full")]
    Full(u64, M),
    /// The actor has stopped (or the store actor is not registered).
    #[error("actor has stopped")]
    Stopped(M),
}

impl<M> RouterError<M> {
    /// The message that was not delivered.
    pub fn into_inner(self) -> M {
        match self {
            RouterError::RegionNotFound(_, m)
            | RouterError::Full(_, m)
            | RouterError::Stopped(m) => m,
        }
    }
}

/// The count of droppable/refusable messages queued for one peer.
#[derive(Debug, Clone, Default)]
pub struct MailboxLoad(Arc<AtomicUsize>);

impl MailboxLoad {
    /// A fresh, empty count.
    pub fn new() -> Self {
        Self::default()
    }

    /// Called by the actor for every counted message it receives.
    pub fn received(&self) {
        // Saturating: a message counted before a re-registration may arrive
        // after the count was replaced.
        let _ = self
            .0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                Some(n.saturating_sub(1))
            });
    }

    /// The number of counted messages queued.
    pub fn queued(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }

    /// Reserves a slot if fewer than `limit` are queued.
    fn try_reserve(&self, limit: usize) -> bool {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }
}

/// A peer actor's mailbox as the router holds it.
#[derive(Debug, Clone)]
pub struct PeerMailbox {
    recipient: Recipient<PeerMsg>,
    load: MailboxLoad,
}

impl PeerMailbox {
    /// A mailbox for `recipient`, whose actor calls `load.received()` for
    /// every raft message and command it takes.
    pub fn new(recipient: Recipient<PeerMsg>, load: MailboxLoad) -> Self {
        PeerMailbox { recipient, load }
    }

    fn try_send(&self, msg: PeerMsg) -> Result<(), PeerMsg> {
        self.recipient.tell(msg).try_send().map_err(|e| match e {
            SendError::ActorNotRunning(m)
            | SendError::MailboxFull(m)
            | SendError::ActorRestarting(m) => m,
            // A tell's try_send fails only by handing the message back.
            other => unreachable!("tell try_send cannot fail with {other:?}"),
        })
    }
}

/// Delivers messages to the actors of one store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Router {
    inner: Arc<RouterInner>,
}

#[derive(Debug)]
struct RouterInner {
    /// Guards the region → mailbox map. A `RwLock` because sends (reads)
    /// vastly outnumber peer creation and removal; never held across an await.
    peers: RwLock<HashMap<u64, PeerMailbox>>,
    /// The store actor, set once it starts. Same locking reasons.
    store: RwLock<Option<Recipient<StoreMsg>>>,
    /// Counted messages a peer may have queued before more are dropped or refused.
    mailbox_limit: usize,
}

impl Router {
    /// A router allowing `mailbox_limit` queued raft messages and commands per peer.
    pub fn new(mailbox_limit: usize) -> Router {
        Router {
            inner: Arc::new(RouterInner {
                peers: RwLock::new(HashMap::new()),
                store: RwLock::new(None),
                mailbox_limit: mailbox_limit.max(1),
            }),
        }
    }

    /// Routes `region_id` to `mailbox`, replacing any earlier one.
    pub fn register(&self, region_id: u64, mailbox: PeerMailbox) {
        self.inner
            .peers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(region_id, mailbox);
    }

    /// Stops routing to `region_id`.
    pub fn unregister(&self, region_id: u64) {
        self.inner
            .peers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&region_id);
    }

    /// Removes every peer mailbox and returns them (for stopping a store).
    pub fn take_all(&self) -> Vec<Recipient<PeerMsg>> {
        let mut peers = self.inner.peers.write().unwrap_or_else(|e| e.into_inner());
        peers
            .drain()
            .map(|(_, mailbox)| mailbox.recipient)
            .collect()
    }

    /// Routes store messages to `recipient`.
    pub fn register_store(&self, recipient: Recipient<StoreMsg>) {
        *self.inner.store.write().unwrap_or_else(|e| e.into_inner()) = Some(recipient);
    }

    /// Whether this store has a peer of `region_id`.
    pub fn has_region(&self, region_id: u64) -> bool {
        self.read_peers().contains_key(&region_id)
    }

    /// The regions with a registered peer.
    pub fn region_ids(&self) -> Vec<u64> {
        self.read_peers().keys().copied().collect()
    }

    fn read_peers(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u64, PeerMailbox>> {
        // A poisoned lock only means a panic elsewhere; the map itself is
        // always consistent (single inserts/removes).
        self.inner.peers.read().unwrap_or_else(|e| e.into_inner())
    }

    fn mailbox(&self, region_id: u64) -> Option<PeerMailbox> {
        self.read_peers().get(&region_id).cloned()
    }

    /// Delivers raft traffic: to the region's peer, or to the store actor
    /// when this store has no peer of the region yet. Dropped when full.
    pub fn send_raft_message(
        &self,
        msg: Box<RaftMessage>,
    ) -> Result<(), RouterError<Box<RaftMessage>>> {
        let region_id = msg.region_id;
        let Some(mailbox) = self.mailbox(region_id) else {
            return self
                .send_store(StoreMsg::RaftMessage(msg))
                .map_err(|e| match e.into_inner() {
                    StoreMsg::RaftMessage(m) => RouterError::Stopped(m),
                    _ => unreachable!("the store message handed back is the one sent"),
                });
        };
        self.send_counted(region_id, &mailbox, PeerMsg::RaftMessage(msg))
            .map_err(|e| {
                e.map(|m| match m {
                    PeerMsg::RaftMessage(m) => m,
                    _ => unreachable!("the message handed back is the one sent"),
                })
            })
    }

    /// Delivers a client command; refused when the region is unknown or its
    /// mailbox is full, with the command handed back to be answered.
    pub fn send_command(
        &self,
        region_id: u64,
        cmd: Box<RaftCommand>,
    ) -> Result<(), RouterError<Box<RaftCommand>>> {
        let Some(mailbox) = self.mailbox(region_id) else {
            return Err(RouterError::RegionNotFound(region_id, cmd));
        };
        self.send_counted(region_id, &mailbox, PeerMsg::RaftCommand(cmd))
            .map_err(|e| {
                e.map(|m| match m {
                    PeerMsg::RaftCommand(c) => c,
                    _ => unreachable!("the message handed back is the one sent"),
                })
            })
    }

    fn send_counted(
        &self,
        region_id: u64,
        mailbox: &PeerMailbox,
        msg: PeerMsg,
    ) -> Result<(), RouterError<PeerMsg>> {
        if !mailbox.load.try_reserve(self.inner.mailbox_limit) {
            return Err(RouterError::Full(region_id, msg));
        }
        mailbox.try_send(msg).map_err(|m| {
            mailbox.load.received();
            RouterError::Stopped(m)
        })
    }

    /// Delivers a must-deliver message to a region's peer.
    pub fn send(&self, region_id: u64, msg: PeerMsg) -> Result<(), RouterError<PeerMsg>> {
        let Some(mailbox) = self.mailbox(region_id) else {
            return Err(RouterError::RegionNotFound(region_id, msg));
        };
        if msg.is_load() {
            return self.send_counted(region_id, &mailbox, msg);
        }
        mailbox.try_send(msg).map_err(RouterError::Stopped)
    }

    /// Delivers a message to the store actor.
    pub fn send_store(&self, msg: StoreMsg) -> Result<(), RouterError<StoreMsg>> {
        let store = self
            .inner
            .store
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let Some(store) = store else {
            return Err(RouterError::Stopped(msg));
        };
        store.tell(msg).try_send().map_err(|e| match e {
            SendError::ActorNotRunning(m)
            | SendError::MailboxFull(m)
            | SendError::ActorRestarting(m) => RouterError::Stopped(m),
            other => unreachable!("tell try_send cannot fail with {other:?}"),
        })
    }

    /// Sends every registered peer the message `make` builds for it.
    pub fn broadcast(&self, make: impl Fn() -> PeerMsg) {
        let mailboxes: Vec<PeerMailbox> = self.read_peers().values().cloned().collect();
        for mailbox in mailboxes {
            // A peer that stopped meanwhile is about to leave the router.
            let _ = mailbox.try_send(make());
        }
    }
}

impl<M> RouterError<M> {
    /// Maps the handed-back message.
    pub fn map<N>(self, f: impl FnOnce(M) -> N) -> RouterError<N> {
        match self {
            RouterError::RegionNotFound(id, m) => RouterError::RegionNotFound(id, f(m)),
            RouterError::Full(id, m) => RouterError::Full(id, f(m)),
            RouterError::Stopped(m) => RouterError::Stopped(f(m)),
        }
    }
}
