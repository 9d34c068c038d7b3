//! `StorePool`: where each store is (its address, from the scheduler's
//! `GetStore`) and one `TinyKv` channel per address, reused by every
//! request to it.
//!
//! A store's address is forgotten when a request to it fails in transport
//! (the store may have moved; the next request asks the scheduler again),
//! and so is the channel to that address, so a store restarted elsewhere
//! or on the same port gets a fresh connection.
//!
//! Invariant: every channel in `channels` is for an address some store had
//! when it was created; channels are created lazily and connect on their
//! first call, so creating one never blocks.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kvproto::tinykvpb::tiny_kv_client::TinyKvClient;
use tonic::transport::Channel;

use super::errors::Error;
use super::scheduler::endpoint;

/// A `TinyKv` client on a shared channel.
pub(crate) type KvClient = TinyKvClient<Channel>;

#[derive(Debug, Default)]
struct PoolState {
    /// Store id -> its address, as the scheduler last said.
    addrs: HashMap<u64, String>,
    /// Address -> the client over its channel.
    channels: HashMap<String, KvClient>,
}

/// Store addresses and their channels; see the module docs.
#[derive(Debug)]
pub(crate) struct StorePool {
    /// Guards the two maps together (an address and its channel are
    /// dropped at once). A std mutex: held only for map operations, never
    /// across an await.
    state: Mutex<PoolState>,
    connect_timeout: Duration,
    max_message_size: usize,
}

impl StorePool {
    /// An empty pool; channels connect within `connect_timeout` and carry
    /// messages up to `max_message_size` bytes.
    pub(crate) fn new(connect_timeout: Duration, max_message_size: usize) -> Self {
        StorePool {
            state: Mutex::new(PoolState::default()),
            connect_timeout,
            max_message_size,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState> {
        // Only map operations run under the lock; a panic there leaves the
        // maps consistent, so a poisoned lock is still usable.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Store `store_id`'s cached address.
    pub(crate) fn address(&self, store_id: u64) -> Option<String> {
        self.lock().addrs.get(&store_id).cloned()
    }

    /// Caches store `store_id`'s address.
    pub(crate) fn set_address(&self, store_id: u64, addr: String) {
        self.lock().addrs.insert(store_id, addr);
    }

    /// Forgets store `store_id`'s address and the channel to it.
    pub(crate) fn forget(&self, store_id: u64) {
        let mut state = self.lock();
        if let Some(addr) = state.addrs.remove(&store_id) {
            state.channels.remove(&addr);
        }
    }

    /// The client for `addr`, over the channel already open to it or a new
    /// one.
    pub(crate) fn client(&self, addr: &str) -> Result<KvClient, Error> {
        if let Some(client) = self.lock().channels.get(addr) {
            return Ok(client.clone());
        }
        let channel = endpoint(addr, self.connect_timeout)?.connect_lazy();
        let client = TinyKvClient::new(channel)
            .max_decoding_message_size(self.max_message_size)
            .max_encoding_message_size(self.max_message_size);
        // Two callers may race to create one; the first to insert wins and
        // the other's channel, never used, is dropped.
        Ok(self
            .lock()
            .channels
            .entry(addr.to_owned())
            .or_insert(client)
            .clone())
    }

    /// The number of open channels.
    #[cfg(test)]
    pub(crate) fn channel_count(&self) -> usize {
        self.lock().channels.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn test_channels_are_reused_per_address_and_dropped_with_it() {
        let pool = StorePool::new(Duration::from_secs(1), 1024);
        pool.set_address(1, "127.0.0.1:1".to_owned());
        pool.set_address(2, "127.0.0.1:1".to_owned());
        pool.set_address(3, "127.0.0.1:2".to_owned());
        for store in [1, 2, 3, 1] {
            let addr = pool.address(store).expect("cached");
            pool.client(&addr).expect("client");
        }
        assert_eq!(pool.channel_count(), 2, "one channel per address");
        pool.forget(3);
        assert_eq!(pool.address(3), None);
        assert_eq!(pool.channel_count(), 1);
        assert_eq!(pool.address(1).as_deref(), Some("127.0.0.1:1"));
    }

    #[test]
    fn test_a_bad_address_is_refused() {
        let pool = StorePool::new(Duration::from_secs(1), 1024);
        assert!(matches!(
            pool.client("bad address with spaces"),
            Err(Error::InvalidAddress { .. })
        ));
    }
}
