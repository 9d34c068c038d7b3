//! The in-process cluster's network: every store's `Transport` delivers
//! straight into the target store's router, after the filters agree. With
//! no filter installed (the bench), a message costs one read of the filter
//! list and one of the router map on top of the router's own send.
//!
//! A snapshot message takes the real path: on a thread of its own, its files
//! are encoded as `SnapshotChunk`s from the sender's snapshot manager, each
//! chunk goes through protobuf bytes (the wire), the receiver store's
//! manager writes and checks them, and only then is the message delivered.
//! The sending peer hears `SnapshotStatus` (`Finish` or `Failure`).
//!
//! Locks here guard maps and a generator that every write leaves whole (one
//! insert, remove or draw), so a lock poisoned by a panicking thread is
//! still used: the network keeps working for the stores that did not panic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use kvproto::raft_serverpb::{RaftMessage, SnapshotChunk};
use prost::Message as _;
use raftstore::snap::{ChunkEncoder, SnapshotReceiver};
use raftstore::{SnapManager, Transport, TransportError};
use router::{PeerMsg, Router, SnapshotStatus};

use super::filter::Filter;
use crate::rng::SplitMix64;

/// The stores of one in-process cluster and the filters between them.
pub struct SimNetwork {
    /// Routers of the running stores. A `RwLock`: sends read it, only store
    /// start and stop write.
    routers: RwLock<HashMap<u64, Router>>,
    /// Snapshot managers of the stores that ever ran (their directories
    /// outlive a stop). Same locking as `routers`.
    snap_mgrs: RwLock<HashMap<u64, SnapManager>>,
    /// Active filters; a message must pass them all.
    filters: RwLock<Vec<Arc<dyn Filter>>>,
    /// The seeded generator filters draw from. A `Mutex`: draws mutate it.
    rng: Mutex<SplitMix64>,
}

impl SimNetwork {
    /// An empty network whose random choices follow `seed`.
    pub fn new(seed: u64) -> Arc<SimNetwork> {
        Arc::new(SimNetwork {
            routers: RwLock::new(HashMap::new()),
            snap_mgrs: RwLock::new(HashMap::new()),
            filters: RwLock::new(Vec::new()),
            rng: Mutex::new(SplitMix64::new(seed)),
        })
    }

    /// Restarts the filters' random stream from `seed`.
    pub fn reseed(&self, seed: u64) {
        *self.rng.lock().unwrap_or_else(PoisonError::into_inner) = SplitMix64::new(seed);
    }

    /// Connects store `store_id`, whose snapshot files are in `snap_mgr`.
    pub fn register(&self, store_id: u64, router: Router, snap_mgr: SnapManager) {
        self.routers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(store_id, router);
        self.snap_mgrs
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(store_id, snap_mgr);
    }

    /// Disconnects store `store_id` (it stopped).
    pub fn unregister(&self, store_id: u64) {
        self.routers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&store_id);
    }

    /// The router of store `store_id`, if it is running.
    pub fn router(&self, store_id: u64) -> Option<Router> {
        self.routers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&store_id)
            .cloned()
    }

    /// Adds a filter.
    pub fn add_filter(&self, filter: Arc<dyn Filter>) {
        self.filters
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .push(filter);
    }

    /// Removes every filter.
    pub fn clear_filters(&self) {
        self.filters
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Runs the filters: `Dropped` if one refuses `msg`, else the longest
    /// delay any of them asks for.
    fn check_filters(&self, msg: &RaftMessage) -> Result<Duration, TransportError> {
        let filters = self.filters.read().unwrap_or_else(PoisonError::into_inner);
        let mut delay = Duration::ZERO;
        if !filters.is_empty() {
            let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
            for filter in filters.iter() {
                if !filter.allow(msg, &mut rng) {
                    return Err(TransportError::Dropped);
                }
                delay = delay.max(filter.delay(msg, &mut rng));
            }
        }
        Ok(delay)
    }

    fn deliver(&self, msg: RaftMessage) -> Result<(), TransportError> {
        let delay = self.check_filters(&msg)?;
        let to_store = msg.to_peer.map_or(0, |p| p.store_id);
        let router = self
            .router(to_store)
            .ok_or(TransportError::Unreachable(to_store))?;
        let runtime = if delay.is_zero() {
            None
        } else {
            tokio::runtime::Handle::try_current().ok()
        };
        match runtime {
            Some(runtime) => {
                // Held in flight like a slow link; it may arrive after a
                // later message, or to a store that stopped meanwhile.
                runtime.spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = router.send_raft_message(Box::new(msg));
                });
                Ok(())
            }
            None => router
                .send_raft_message(Box::new(msg))
                .map_err(|_| TransportError::Dropped),
        }
    }

    /// Starts moving snapshot `msg` with its files from `sender`'s directory
    /// to the target store's.
    fn send_snapshot(
        self: &Arc<Self>,
        sender: &SnapManager,
        msg: RaftMessage,
    ) -> Result<(), TransportError> {
        self.check_filters(&msg)?;
        let to_store = msg.to_peer.map_or(0, |p| p.store_id);
        if self.router(to_store).is_none() {
            return Err(TransportError::Unreachable(to_store));
        }
        let receiver = self
            .snap_mgrs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&to_store)
            .cloned()
            .ok_or(TransportError::Unreachable(to_store))?;
        let net = Arc::clone(self);
        let sender = sender.clone();
        std::thread::Builder::new()
            .name("snap-transfer".into())
            .spawn(move || net.transfer_snapshot(&sender, &receiver, msg))
            .map(|_| ())
            .map_err(|_| TransportError::Dropped)
    }

    fn transfer_snapshot(&self, sender: &SnapManager, receiver: &SnapManager, msg: RaftMessage) {
        let region_id = msg.region_id;
        let from_store = msg.from_peer.map_or(0, |p| p.store_id);
        let to_store = msg.to_peer.map_or(0, |p| p.store_id);
        let to_peer_id = msg.to_peer.map_or(0, |p| p.id);
        let delivered = stream_snapshot(sender, receiver, msg)
            .ok()
            .and_then(|msg| self.router(to_store)?.send_raft_message(Box::new(msg)).ok());
        let status = if delivered.is_some() {
            SnapshotStatus::Finish
        } else {
            SnapshotStatus::Failure
        };
        if let Some(router) = self.router(from_store) {
            let _ = router.send(region_id, PeerMsg::SnapshotStatus { to_peer_id, status });
        }
    }
}

/// The two ends of one `Snapshot` stream, with every chunk through its wire
/// encoding.
fn stream_snapshot(
    sender: &SnapManager,
    receiver: &SnapManager,
    msg: RaftMessage,
) -> raftstore::Result<RaftMessage> {
    let wire = |chunk: SnapshotChunk| {
        SnapshotChunk::decode(chunk.encode_to_vec().as_slice())
            .map_err(|e| raftstore::Error::InvalidSnapshot(e.to_string()))
    };
    let mut chunks = ChunkEncoder::new(sender, msg)?;
    let first = chunks.next().ok_or_else(|| {
        raftstore::Error::InvalidSnapshot("a snapshot stream without chunks".into())
    })??;
    let mut incoming = SnapshotReceiver::new(receiver, wire(first)?)?;
    for chunk in chunks {
        incoming.feed(wire(chunk?)?)?;
    }
    incoming.finish()
}

/// One store's view of the network.
pub struct StoreTransport {
    net: Arc<SimNetwork>,
    /// The store's snapshot files, to send from.
    snap_mgr: SnapManager,
}

impl StoreTransport {
    /// A transport sending over `net`, snapshots from `snap_mgr`.
    pub fn new(net: Arc<SimNetwork>, snap_mgr: SnapManager) -> Self {
        StoreTransport { net, snap_mgr }
    }
}

impl Transport for StoreTransport {
    fn send(&self, msg: RaftMessage) -> Result<(), TransportError> {
        self.net.deliver(msg)
    }

    fn send_snapshot(&self, msg: RaftMessage) -> Result<(), TransportError> {
        self.net.send_snapshot(&self.snap_mgr, msg)
    }
}
