//! The test cluster's network: every store's `Transport` delivers straight
//! into the target store's router, after the filters agree.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use kvproto::raft_serverpb::RaftMessage;
use raftstore::{Transport, TransportError};
use router::Router;

use super::filter::Filter;
use crate::raft_sim::rng::SimRng;

/// The stores of one test cluster and the filters between them.
pub struct SimNetwork {
    /// Routers of the running stores. A `RwLock`: sends read it, only store
    /// start and stop write.
    routers: RwLock<HashMap<u64, Router>>,
    /// Active filters; a message must pass them all.
    filters: RwLock<Vec<Arc<dyn Filter>>>,
    /// The seeded generator filters draw from. A `Mutex`: draws mutate it.
    rng: Mutex<SimRng>,
}

impl SimNetwork {
    /// An empty network whose random choices follow `seed`.
    pub fn new(seed: u64) -> Arc<SimNetwork> {
        Arc::new(SimNetwork {
            routers: RwLock::new(HashMap::new()),
            filters: RwLock::new(Vec::new()),
            rng: Mutex::new(SimRng::new(seed)),
        })
    }

    /// Connects store `store_id`.
    pub fn register(&self, store_id: u64, router: Router) {
        self.routers
            .write()
            .expect("routers lock")
            .insert(store_id, router);
    }

    /// Disconnects store `store_id` (it stopped).
    pub fn unregister(&self, store_id: u64) {
        self.routers
            .write()
            .expect("routers lock")
            .remove(&store_id);
    }

    /// The router of store `store_id`, if it is running.
    pub fn router(&self, store_id: u64) -> Option<Router> {
        self.routers
            .read()
            .expect("routers lock")
            .get(&store_id)
            .cloned()
    }

    /// Adds a filter.
    pub fn add_filter(&self, filter: Arc<dyn Filter>) {
        self.filters.write().expect("filters lock").push(filter);
    }

    /// Removes every filter.
    pub fn clear_filters(&self) {
        self.filters.write().expect("filters lock").clear();
    }

    fn deliver(&self, msg: RaftMessage) -> Result<(), TransportError> {
        {
            let filters = self.filters.read().expect("filters lock");
            if !filters.is_empty() {
                let mut rng = self.rng.lock().expect("rng lock");
                if !filters.iter().all(|f| f.allow(&msg, &mut rng)) {
                    return Err(TransportError::Dropped);
                }
            }
        }
        let to_store = msg.to_peer.map_or(0, |p| p.store_id);
        let router = self
            .routers
            .read()
            .expect("routers lock")
            .get(&to_store)
            .cloned()
            .ok_or(TransportError::Unreachable(to_store))?;
        router
            .send_raft_message(Box::new(msg))
            .map_err(|_| TransportError::Dropped)
    }
}

/// One store's view of the network.
pub struct StoreTransport {
    net: Arc<SimNetwork>,
}

impl StoreTransport {
    /// A transport sending over `net`.
    pub fn new(net: Arc<SimNetwork>) -> Self {
        StoreTransport { net }
    }
}

impl Transport for StoreTransport {
    fn send(&self, msg: RaftMessage) -> Result<(), TransportError> {
        self.net.deliver(msg)
    }
}
