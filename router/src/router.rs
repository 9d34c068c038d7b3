//! `Router`: region id → the peer actor's mailbox, plus the store's mailbox.
//!
//! This is TinyKV's `peerSender` made one mailbox per peer. Mailboxes are
//! kameo's unbounded ones, so a send never blocks and no sender can deadlock
//! on a full mailbox; load is bounded by the router instead. The store and
//! each peer have a `MailboxLoad`, the number of droppable/refusable messages
//! queued: the router increments it on send and the actor decrements it on
//! receipt.
//!
//! Policy (see `msg.rs` for the kinds):
//! - raft message, load at the limit → dropped (`Full`); unknown region, or
//!   a peer that has stopped → forwarded to the store actor, which may
//!   (re)create the peer. The store's own load is bounded the same way, so
//!   no amount of traffic for regions this store lacks grows its memory.
//! - client command, load at the limit → handed back (`Full`) for the caller
//!   to answer `ServerIsBusy`; unknown region → `RegionNotFound`.
//! - must-deliver messages ignore the limit. A stopped actor hands any message
//!   back (`Stopped`).
//!
//! The life of a peer's entry (one `MailboxHandle` per actor incarnation):
//!
//! ```text
//!   register ──▶ open ──close()──▶ closed ──unregister(own incarnation)──▶ gone
//!                 │                  │
//!           sends accepted     every send handed back (`Stopped`);
//!                              raft traffic goes to the store actor
//! ```
//!
//! `close` is what makes a stop lossless: a send checks the entry is open and
//! pushes into the actor's queue under the entry's read lock, and `close`
//! takes the write lock. Once `close` returns, every message accepted so far
//! is in the actor's queue, where the stopping actor finds it (kameo hands a
//! stopping actor its leftover messages), and every later one comes back to
//! its sender. The actor closes its entry before it stops for any reason,
//! panics included, and leaves the router from its stop hook.
//!
//! Invariants:
//! - a region id maps to at most one mailbox; registering a new incarnation
//!   replaces the old one, and `unregister` removes an entry only for the
//!   incarnation that registered it, so a stopping actor never removes its
//!   successor.
//! - a closed entry never reopens and never reads `Full`: load counted by a
//!   dead actor is meaningless.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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

    /// Maps the handed-back message.
    pub fn map<N>(self, f: impl FnOnce(M) -> N) -> RouterError<N> {
        match self {
            RouterError::RegionNotFound(id, m) => RouterError::RegionNotFound(id, f(m)),
            RouterError::Full(id, m) => RouterError::Full(id, f(m)),
            RouterError::Stopped(m) => RouterError::Stopped(f(m)),
        }
    }
}

/// The count of droppable/refusable messages queued for one actor.
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

/// Where incarnation ids come from: unique in the process, so two stores
/// in one test process never share one either.
static NEXT_INCARNATION: AtomicU64 = AtomicU64::new(1);

/// A peer actor's side of its router entry: it counts the messages the actor
/// takes (`received`) and closes the entry when the actor stops (`close`).
/// Cheap to clone; every clone is the same entry.
#[derive(Debug, Clone)]
pub struct MailboxHandle {
    inner: Arc<MailboxState>,
}

#[derive(Debug)]
struct MailboxState {
    /// Tells this actor incarnation's entry from a successor's.
    incarnation: u64,
    load: MailboxLoad,
    /// Whether sends are accepted. A `RwLock` rather than an atomic flag
    /// because a send must check it and push into the actor's queue as one
    /// step with respect to `close` (see the module doc); senders share the
    /// read side, so they do not contend with each other. Never held across
    /// an await.
    /// Invariant: once false, stays false.
    open: RwLock<bool>,
}

impl MailboxHandle {
    /// A fresh entry: open, nothing queued, a new incarnation id.
    pub fn new() -> Self {
        MailboxHandle {
            inner: Arc::new(MailboxState {
                incarnation: NEXT_INCARNATION.fetch_add(1, Ordering::Relaxed),
                load: MailboxLoad::new(),
                open: RwLock::new(true),
            }),
        }
    }

    /// This entry's incarnation id.
    pub fn incarnation(&self) -> u64 {
        self.inner.incarnation
    }

    /// Called by the actor for every raft message and command it receives.
    pub fn received(&self) {
        self.inner.load.received();
    }

    /// The number of counted messages queued.
    pub fn queued(&self) -> usize {
        self.inner.load.queued()
    }

    /// Refuses every later send (`Stopped`). When this returns, no send is
    /// in progress: whatever was accepted is in the actor's queue.
    pub fn close(&self) {
        *self.inner.open.write().unwrap_or_else(|e| e.into_inner()) = false;
    }

    /// Whether sends are still accepted.
    pub fn is_open(&self) -> bool {
        *self.inner.open.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl Default for MailboxHandle {
    fn default() -> Self {
        Self::new()
    }
}

/// A peer actor's mailbox as the router holds it.
#[derive(Debug, Clone)]
pub struct PeerMailbox {
    recipient: Recipient<PeerMsg>,
    handle: MailboxHandle,
}

/// How a send to a peer mailbox failed; the message comes back.
enum SendFailure {
    Full(PeerMsg),
    Stopped(PeerMsg),
}

impl PeerMailbox {
    /// A mailbox for `recipient`, whose actor calls `handle.received()` for
    /// every raft message and command it takes and `handle.close()` before
    /// it stops.
    pub fn new(recipient: Recipient<PeerMsg>, handle: MailboxHandle) -> Self {
        PeerMailbox { recipient, handle }
    }

    /// Whether the entry is open and its actor alive.
    fn is_running(&self) -> bool {
        self.handle.is_open() && self.recipient.is_alive()
    }

    /// Pushes `msg` into the actor's queue if the entry is open; a counted
    /// message also needs a free slot under `limit`.
    fn try_send(&self, msg: PeerMsg, limit: Option<usize>) -> Result<(), SendFailure> {
        let open = self
            .handle
            .inner
            .open
            .read()
            .unwrap_or_else(|e| e.into_inner());
        if !*open {
            return Err(SendFailure::Stopped(msg));
        }
        let load = &self.handle.inner.load;
        if let Some(limit) = limit
            && !load.try_reserve(limit)
        {
            // An actor that died without closing its entry (it cannot: a
            // kill) reads `Stopped`, not `Full` forever.
            if !self.recipient.is_alive() {
                return Err(SendFailure::Stopped(msg));
            }
            return Err(SendFailure::Full(msg));
        }
        tell(&self.recipient, msg).map_err(|m| {
            if limit.is_some() {
                load.received();
            }
            SendFailure::Stopped(m)
        })
    }
}

/// Pushes `msg` into `recipient`'s queue without waiting, or hands it back.
fn tell<M: Send + 'static>(recipient: &Recipient<M>, msg: M) -> Result<(), M> {
    recipient.tell(msg).try_send().map_err(|e| match e {
        SendError::ActorNotRunning(m)
        | SendError::MailboxFull(m)
        | SendError::ActorRestarting(m) => m,
        // A tell's try_send fails only by handing the message back.
        other => unreachable!("tell try_send cannot fail with {other:?}"),
    })
}

/// The store actor's mailbox as the router holds it.
#[derive(Debug, Clone)]
struct StoreMailbox {
    recipient: Recipient<StoreMsg>,
    load: MailboxLoad,
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
    store: RwLock<Option<StoreMailbox>>,
    /// Set by `close_all` (the store is stopping): `try_register` refuses
    /// from then on. Written and read with `peers`' write lock held, so a
    /// registration is either drained by `close_all` or refused.
    closed: AtomicBool,
    /// Counted messages an actor may have queued before more are dropped or refused.
    mailbox_limit: usize,
}

impl Router {
    /// A router allowing `mailbox_limit` queued raft messages and commands
    /// per peer, and as many raft messages for regions the store lacks.
    pub fn new(mailbox_limit: usize) -> Router {
        Router {
            inner: Arc::new(RouterInner {
                peers: RwLock::new(HashMap::new()),
                store: RwLock::new(None),
                closed: AtomicBool::new(false),
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

    /// Routes `region_id` to `mailbox`, replacing any earlier one, unless
    /// `close_all` ran: then the mailbox comes back, for the caller to stop
    /// its actor. A peer that creates another (a split) registers it this
    /// way, so no actor is left running behind a stopping store.
    pub fn try_register(&self, region_id: u64, mailbox: PeerMailbox) -> Result<(), PeerMailbox> {
        let mut peers = self.inner.peers.write().unwrap_or_else(|e| e.into_inner());
        if self.inner.closed.load(Ordering::SeqCst) {
            return Err(mailbox);
        }
        peers.insert(region_id, mailbox);
        Ok(())
    }

    /// Stops routing to `region_id` if its entry is still the one of
    /// `incarnation` (a successor's entry stays). Returns whether it was.
    pub fn unregister(&self, region_id: u64, incarnation: u64) -> bool {
        let mut peers = self.inner.peers.write().unwrap_or_else(|e| e.into_inner());
        if peers
            .get(&region_id)
            .is_some_and(|m| m.handle.incarnation() == incarnation)
        {
            peers.remove(&region_id);
            return true;
        }
        false
    }

    /// Removes and closes every peer mailbox, and returns their actors for
    /// the caller to stop (when stopping a store). Every message accepted
    /// before is in an actor's queue; every later one is handed back, and
    /// `try_register` refuses from now on.
    pub fn close_all(&self) -> Vec<Recipient<PeerMsg>> {
        let mailboxes: Vec<PeerMailbox> = {
            let mut peers = self.inner.peers.write().unwrap_or_else(|e| e.into_inner());
            self.inner.closed.store(true, Ordering::SeqCst);
            peers.drain().map(|(_, mailbox)| mailbox).collect()
        };
        mailboxes
            .into_iter()
            .map(|mailbox| {
                mailbox.handle.close();
                mailbox.recipient
            })
            .collect()
    }

    /// Routes store messages to `recipient`, whose actor calls
    /// `load.received()` for every raft message it takes.
    pub fn register_store(&self, recipient: Recipient<StoreMsg>, load: MailboxLoad) {
        *self.inner.store.write().unwrap_or_else(|e| e.into_inner()) =
            Some(StoreMailbox { recipient, load });
    }

    /// Whether this store has a running peer of `region_id`: registered,
    /// its entry open and its actor alive.
    pub fn has_region(&self, region_id: u64) -> bool {
        self.read_peers()
            .get(&region_id)
            .is_some_and(PeerMailbox::is_running)
    }

    /// The regions with a running peer.
    pub fn region_ids(&self) -> Vec<u64> {
        self.read_peers()
            .iter()
            .filter(|(_, m)| m.is_running())
            .map(|(id, _)| *id)
            .collect()
    }

    /// The incarnation registered for `region_id`, open or closing.
    pub fn incarnation(&self, region_id: u64) -> Option<u64> {
        self.read_peers()
            .get(&region_id)
            .map(|m| m.handle.incarnation())
    }

    fn read_peers(&self) -> std::sync::RwLockReadGuard<'_, HashMap<u64, PeerMailbox>> {
        // A poisoned lock only means a panic elsewhere; the map itself is
        // always consistent (single inserts/removes).
        self.inner.peers.read().unwrap_or_else(|e| e.into_inner())
    }

    fn mailbox(&self, region_id: u64) -> Option<PeerMailbox> {
        self.read_peers().get(&region_id).cloned()
    }

    fn store_mailbox(&self) -> Option<StoreMailbox> {
        self.inner
            .store
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Delivers raft traffic: to the region's peer, or to the store actor
    /// when this store has no running peer of the region. Dropped when the
    /// mailbox it goes to is full.
    pub fn send_raft_message(
        &self,
        msg: Box<RaftMessage>,
    ) -> Result<(), RouterError<Box<RaftMessage>>> {
        let region_id = msg.region_id;
        let mut msg = PeerMsg::RaftMessage(msg);
        if let Some(mailbox) = self.mailbox(region_id) {
            match mailbox.try_send(msg, Some(self.inner.mailbox_limit)) {
                Ok(()) => return Ok(()),
                Err(SendFailure::Full(m)) => {
                    return Err(RouterError::Full(region_id, into_raft_message(m)));
                }
                // The peer has stopped: the store decides whether to
                // recreate it, as for a region it never had.
                Err(SendFailure::Stopped(m)) => msg = m,
            }
        }
        self.send_store(StoreMsg::RaftMessage(into_raft_message(msg)))
            .map_err(|e| {
                e.map(|m| match m {
                    StoreMsg::RaftMessage(m) => m,
                    _ => unreachable!("the store message handed back is the one sent"),
                })
            })
    }

    /// Delivers a client command; refused when the region is unknown, its
    /// peer has stopped or its mailbox is full, with the command handed back
    /// to be answered.
    pub fn send_command(
        &self,
        region_id: u64,
        cmd: Box<RaftCommand>,
    ) -> Result<(), RouterError<Box<RaftCommand>>> {
        self.send(region_id, PeerMsg::RaftCommand(cmd))
            .map_err(|e| {
                e.map(|m| match m {
                    PeerMsg::RaftCommand(c) => c,
                    _ => unreachable!("the message handed back is the one sent"),
                })
            })
    }

    /// Delivers a message to a region's peer, without forwarding anything to
    /// the store: raft messages and commands count against the limit, every
    /// other kind is must-deliver and refused only by a stopped peer.
    pub fn send(&self, region_id: u64, msg: PeerMsg) -> Result<(), RouterError<PeerMsg>> {
        let Some(mailbox) = self.mailbox(region_id) else {
            return Err(RouterError::RegionNotFound(region_id, msg));
        };
        let limit = msg.is_load().then_some(self.inner.mailbox_limit);
        mailbox.try_send(msg, limit).map_err(|e| match e {
            SendFailure::Full(m) => RouterError::Full(region_id, m),
            SendFailure::Stopped(m) => RouterError::Stopped(m),
        })
    }

    /// Delivers a message to the store actor. Raft messages count against
    /// the limit (`Full(region_id, _)` beyond it); every other kind is
    /// must-deliver.
    pub fn send_store(&self, msg: StoreMsg) -> Result<(), RouterError<StoreMsg>> {
        let Some(store) = self.store_mailbox() else {
            return Err(RouterError::Stopped(msg));
        };
        let counted = msg.is_load();
        if counted && !store.load.try_reserve(self.inner.mailbox_limit) {
            let region_id = match &msg {
                StoreMsg::RaftMessage(m) => m.region_id,
                _ => 0,
            };
            return Err(RouterError::Full(region_id, msg));
        }
        tell(&store.recipient, msg).map_err(|m| {
            if counted {
                store.load.received();
            }
            RouterError::Stopped(m)
        })
    }

    /// Sends every running peer the message `make` builds for it.
    pub fn broadcast(&self, make: impl Fn() -> PeerMsg) {
        let mailboxes: Vec<PeerMailbox> = self.read_peers().values().cloned().collect();
        for mailbox in mailboxes {
            // A peer that has stopped has nothing to do with it.
            let _ = mailbox.try_send(make(), None);
        }
    }
}

fn into_raft_message(msg: PeerMsg) -> Box<RaftMessage> {
    match msg {
        PeerMsg::RaftMessage(m) => m,
        _ => unreachable!("the message handed back is the one sent"),
    }
}
