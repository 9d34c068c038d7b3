//! `SchedulerResolver`: store addresses from the placement driver, by its
//! `GetStore` call, as TinyKV and TiKV stores resolve each other.
//!
//! No cache here: the transport keeps the address it resolved for as long as
//! the connection works and asks again after a failure (`StoreResolver`'s
//! contract), which is when a store may have moved. A tombstone store never
//! resolves: nothing may be sent to a store that left the cluster.

use kvproto::metapb::StoreState;
use kvproto::schedulerpb::scheduler_client::SchedulerClient;
use kvproto::schedulerpb::{GetStoreRequest, RequestHeader};
use tonic::transport::Channel;

use super::{ResolveError, ResolveFuture, StoreResolver};

/// Resolves store ids through a scheduler's `GetStore`.
#[derive(Debug, Clone)]
pub struct SchedulerResolver {
    /// Cheap to clone: each lookup takes its own handle on the channel.
    client: SchedulerClient<Channel>,
    cluster_id: u64,
}

impl SchedulerResolver {
    /// A resolver asking the scheduler behind `channel`, in cluster `cluster_id`.
    pub fn new(channel: Channel, cluster_id: u64) -> Self {
        SchedulerResolver {
            client: SchedulerClient::new(channel),
            cluster_id,
        }
    }
}

impl StoreResolver for SchedulerResolver {
    fn resolve(&self, store_id: u64) -> ResolveFuture<'_> {
        let mut client = self.client.clone();
        let request = GetStoreRequest {
            header: Some(RequestHeader {
                cluster_id: self.cluster_id,
            }),
            store_id,
        };
        Box::pin(async move {
            let response = client
                .get_store(request)
                .await
                .map_err(|status| ResolveError::Failed(store_id, status.to_string()))?
                .into_inner();
            if let Some(error) = response.header.and_then(|h| h.error) {
                return Err(ResolveError::Failed(store_id, error.message));
            }
            let store = response.store.ok_or(ResolveError::NotFound(store_id))?;
            if store.state() == StoreState::Tombstone {
                return Err(ResolveError::Failed(
                    store_id,
                    "the store is a tombstone".to_owned(),
                ));
            }
            if store.address.is_empty() {
                return Err(ResolveError::NotFound(store_id));
            }
            Ok(store.address)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use kvproto::metapb;
    use scheduler_stub::{MemoryScheduler, SchedulerClient as _, SchedulerService, serve};
    use slog::{Logger, o};
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;

    use super::*;

    const DEADLINE: Duration = Duration::from_secs(20);

    #[tokio::test]
    async fn stores_resolve_through_the_scheduler() {
        let dir = tempfile::tempdir().expect("temp dir");
        let logger = Logger::root(slog::Discard, o!());
        let scheduler =
            Arc::new(MemoryScheduler::open(dir.path(), &logger).expect("open the scheduler"));
        let store = |id: u64, address: &str| metapb::Store {
            id,
            address: address.to_owned(),
            ..Default::default()
        };
        scheduler
            .bootstrap(
                store(1, "127.0.0.1:20161"),
                metapb::Region {
                    id: 2,
                    peers: vec![metapb::Peer { id: 3, store_id: 1 }],
                    region_epoch: Some(metapb::RegionEpoch {
                        conf_ver: 1,
                        version: 1,
                    }),
                    ..Default::default()
                },
            )
            .expect("bootstrap");
        scheduler
            .put_store(store(4, "127.0.0.1:20162"))
            .expect("put store 4");
        scheduler.put_store(store(5, "")).expect("put store 5");
        let cluster_id = scheduler.cluster_id();
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let service =
            SchedulerService::new(Arc::clone(&scheduler), format!("http://{addr}"), &logger);
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, service, async move {
            let _ = stopped.await;
        }));
        let channel = tokio::time::timeout(
            DEADLINE,
            Channel::from_shared(format!("http://{addr}"))
                .expect("a valid uri")
                .connect(),
        )
        .await
        .expect("connect in time")
        .expect("connect");

        let resolver = SchedulerResolver::new(channel.clone(), cluster_id);
        assert_eq!(
            resolver.resolve(1).await.expect("store 1"),
            "127.0.0.1:20161"
        );
        assert_eq!(
            resolver.resolve(4).await.expect("store 4"),
            "127.0.0.1:20162"
        );
        assert!(
            resolver.resolve(5).await.is_err(),
            "a store without an address"
        );
        assert!(resolver.resolve(99).await.is_err(), "an unknown store");
        let foreign = SchedulerResolver::new(channel, cluster_id + 1);
        assert!(
            matches!(foreign.resolve(1).await, Err(ResolveError::Failed(1, _))),
            "another cluster's scheduler must not answer"
        );

        let _ = stop.send(());
        let _ = tokio::time::timeout(DEADLINE, server).await;
    }
}
