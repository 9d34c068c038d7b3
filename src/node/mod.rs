//! `Node`: one store of a cluster as a process runs it — started against a
//! remote scheduler, serving `TinyKv` over gRPC, stopped gracefully.
//!
//! Start-up ([`Node::start`]), in this order:
//! 1. bind the listen address (so a port-0 listen can be advertised);
//! 2. connect to the scheduler, retrying with backoff while it is not up,
//!    and learn the cluster id (`GetMembers`);
//! 3. open the engine in `<data dir>/db`; without a `StoreIdent`, allocate a
//!    store id and persist it. An engine of another cluster is refused;
//! 4. if the cluster is not bootstrapped, bootstrap it (below);
//! 5. `PutStore` with the advertised address;
//! 6. start the raftstore (`Store`) over a [`GrpcTransport`] resolving
//!    stores through the scheduler, reporting through a [`RemoteReporter`];
//! 7. serve `TinyKvService<RaftStorage>`, with the store's `Raft` and
//!    `Snapshot` streams, on the listener; with
//!    [`NodeConfig::enable_fault_injection`] also the `debugpb.Debug`
//!    service, whose partitions the store's transport and streams obey
//!    (`crate::transport::faults`; for tests, never in production). Without
//!    it, `Debug` calls answer `UNIMPLEMENTED`.
//!
//! Bootstrapping the cluster survives a crash at any point: the first
//! region is written to the engine under the prepare-bootstrap key (and as
//! this store's region) *before* `Bootstrap` is asked, and the key is
//! cleared only after. A start-up that finds the key finishes the job: it
//! asks `Bootstrap` again; if the cluster is already bootstrapped, the
//! prepared region is ours when the scheduler knows this store (`Bootstrap`
//! registers the bootstrapping store, and nothing else registers it before
//! the key is cleared) and is removed otherwise (another store won the race).
//!
//! Invariant: a started node's store id and regions are those its engine
//! held, so a restart on the same data dir is the same store.
//!
//! [`Node::stop`]: stop accepting, end the open `Raft`/`Snapshot` streams
//! (the `closing` watch), let calls in flight finish (bounded by
//! [`NodeConfig::shutdown_grace`]), stop the heartbeats, then stop the store,
//! which closes the engine.

pub mod config;
pub mod scheduler;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use kvproto::metapb;
use kvproto::raft_serverpb::RaftMessage;
use raftstore::bootstrap::{
    bootstrap_store, load_store_ident, new_first_region, write_initial_region,
};
use raftstore::{SnapManager, Store, Transport, TransportError};
use router::Router;
use slog::{Logger, info, o, warn};
use storage::{CF_DEFAULT, CF_RAFT, Engine, keys};
use tokio::net::TcpListener;
use tokio::runtime::Handle;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use crate::server::raft_storage::{RaftStorage, RaftStorageOptions};
use crate::server::service::{ServiceOptions, StoreStreams, TinyKvService};
use crate::transport::{
    FaultService, GrpcTransport, PartitionFilter, SchedulerResolver, SnapshotReceiveLimit,
    TransportOptions,
};

pub use self::scheduler::{RemoteReporter, RemoteScheduler};

/// Why a node could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// The scheduler could not be reached or refused a call.
    #[error("scheduler: {0}")]
    Scheduler(String),
    /// The raftstore refused to bootstrap or start.
    #[error("raftstore: {0}")]
    Raftstore(#[from] raftstore::Error),
    /// The engine failed.
    #[error("storage: {0}")]
    Storage(#[from] storage::Error),
    /// A file or socket operation failed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The data dir belongs to another cluster or is otherwise unusable.
    #[error("{0}")]
    Invalid(String),
}

/// What a [`Node`] needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The scheduler, `HOST:PORT` or `http://HOST:PORT`.
    pub scheduler_addr: String,
    /// Where to listen, `HOST:PORT` (port 0 picks a free one).
    pub listen_addr: String,
    /// What the scheduler and other stores are told; `None`: the address
    /// actually bound.
    pub advertise_addr: Option<String>,
    /// The data dir: the engine in `db/`, snapshot files in `snap/`.
    pub data_dir: PathBuf,
    /// The raftstore's tunables.
    pub raftstore: raftstore::Config,
    /// The gRPC service's limits.
    pub service: ServiceOptions,
    /// The inter-store transport's settings.
    pub transport: TransportOptions,
    /// How long a request waits for the raftstore's answer.
    pub request_timeout: Duration,
    /// Give up connecting to the scheduler after this long; `None`: retry
    /// for ever (a store waits for its scheduler).
    pub connect_deadline: Option<Duration>,
    /// How long calls in flight may take to finish on stop.
    pub shutdown_grace: Duration,
    /// Serve the fault-injection service (`debugpb.Debug`) and obey the
    /// partitions it sets. For tests; never in production. Default: off.
    pub enable_fault_injection: bool,
}

impl NodeConfig {
    /// Defaults for everything but the addresses and the data dir.
    pub fn new(scheduler_addr: String, listen_addr: String, data_dir: PathBuf) -> NodeConfig {
        NodeConfig {
            scheduler_addr,
            listen_addr,
            advertise_addr: None,
            data_dir,
            raftstore: raftstore::Config::default(),
            service: ServiceOptions::default(),
            transport: TransportOptions::default(),
            request_timeout: RaftStorageOptions::default().timeout,
            connect_deadline: None,
            shutdown_grace: Duration::from_secs(10),
            enable_fault_injection: false,
        }
    }
}

/// A running store node; see the module docs.
pub struct Node {
    store: Store,
    reporter: Arc<RemoteReporter>,
    scheduler: RemoteScheduler,
    local_addr: SocketAddr,
    advertise_addr: String,
    closing: watch::Sender<bool>,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<Result<(), tonic::transport::Error>>,
    shutdown_grace: Duration,
    logger: Logger,
}

/// Runs blocking engine work off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, NodeError> + Send + 'static,
) -> Result<T, NodeError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| NodeError::Invalid(format!("a start-up task failed: {e}")))?
}

impl Node {
    /// Starts the node; see the module docs. Must run on a multi-threaded
    /// tokio runtime.
    pub async fn start(cfg: NodeConfig, logger: &Logger) -> Result<Node, NodeError> {
        let listener = TcpListener::bind(&cfg.listen_addr)
            .await
            .map_err(|source| NodeError::Io {
                what: format!("listen on {}", cfg.listen_addr),
                source,
            })?;
        let local_addr = listener.local_addr().map_err(|source| NodeError::Io {
            what: "read the listen address".to_owned(),
            source,
        })?;
        let advertise_addr = cfg
            .advertise_addr
            .clone()
            .unwrap_or_else(|| local_addr.to_string());

        let scheduler =
            RemoteScheduler::connect(&cfg.scheduler_addr, cfg.connect_deadline, logger).await?;
        let cluster_id = scheduler.cluster_id();

        std::fs::create_dir_all(&cfg.data_dir).map_err(|source| NodeError::Io {
            what: format!("create the data dir {}", cfg.data_dir.display()),
            source,
        })?;
        let db_path = cfg.data_dir.join("db");
        let engine = blocking(move || Ok(Engine::open(db_path)?)).await?;
        let store_id = ensure_store_ident(&scheduler, &engine, logger).await?;
        let logger = logger.new(o!("store_id" => store_id));
        bootstrap_cluster(&scheduler, &engine, store_id, &advertise_addr, &logger).await?;
        scheduler
            .put_store(metapb::Store {
                id: store_id,
                address: advertise_addr.clone(),
                ..Default::default()
            })
            .await?;

        let snap_dir = cfg.data_dir.join("snap");
        let snap_mgr = blocking(move || Ok(SnapManager::open(snap_dir)?)).await?;
        let router_cell = Arc::new(OnceLock::new());
        let transport = Arc::new(LateTransport::default());
        let partition = cfg.enable_fault_injection.then(PartitionFilter::new);
        if partition.is_some() {
            warn!(
                logger,
                "fault injection is on: for tests, never in production"
            );
        }
        let reporter =
            Arc::new(scheduler.reporter(Arc::clone(&router_cell), &Handle::current(), &logger));
        let store = {
            let (cfg, snap_mgr, transport, reporter, logger) = (
                cfg.raftstore.clone(),
                snap_mgr.clone(),
                Arc::clone(&transport),
                Arc::clone(&reporter),
                logger.clone(),
            );
            blocking(move || {
                Ok(Store::start(
                    store_id, cfg, engine, snap_mgr, transport, reporter, &logger,
                )?)
            })
            .await?
        };
        let router = store.router();
        let _ = router_cell.set(router.clone());
        // Peer stores are taken to run with this store's gRPC message limit
        // (one cluster, one config): a batch of raft messages over it would
        // be refused whole.
        let mut transport_opts = cfg.transport.clone();
        transport_opts.max_batch_bytes = transport_opts
            .max_batch_bytes
            .min(cfg.service.max_message_size);
        transport_opts.partition = partition.clone();
        let _ = transport.0.set(GrpcTransport::new(
            Arc::new(SchedulerResolver::new(scheduler.channel(), cluster_id)),
            router.clone(),
            snap_mgr.clone(),
            transport_opts,
            Handle::current(),
            logger.clone(),
        ));

        let (closing, closing_rx) = watch::channel(false);
        let storage = RaftStorage::new(
            router.clone(),
            store_id,
            RaftStorageOptions {
                timeout: cfg.request_timeout,
            },
        );
        let service = TinyKvService::new(storage, cfg.service).with_store_streams(StoreStreams {
            router,
            snap_mgr,
            receive_limit: SnapshotReceiveLimit::new(
                cfg.transport.max_concurrent_snapshot_receives,
            ),
            closing: closing_rx,
            logger: logger.clone(),
            partition: partition.clone(),
        });
        let faults = partition.map(|filter| FaultService::new(store_id, filter, logger.clone()));
        let (shutdown, shutdown_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(serve_node(listener, service, faults, async {
            let _ = shutdown_rx.await;
        }));
        info!(logger, "tinykv-server serving";
            "listen" => %local_addr, "advertise" => &advertise_addr,
            "cluster_id" => cluster_id, "data_dir" => %cfg.data_dir.display());
        Ok(Node {
            store,
            reporter,
            scheduler,
            local_addr,
            advertise_addr,
            closing,
            shutdown,
            server,
            shutdown_grace: cfg.shutdown_grace,
            logger,
        })
    }

    /// This node's store id.
    pub fn store_id(&self) -> u64 {
        self.store.store_id()
    }

    /// The address the service is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the scheduler and other stores are told.
    pub fn advertise_addr(&self) -> &str {
        &self.advertise_addr
    }

    /// The scheduler client the node uses.
    pub fn scheduler(&self) -> &RemoteScheduler {
        &self.scheduler
    }

    /// The store's router.
    pub fn router(&self) -> Router {
        self.store.router()
    }

    /// Stops gracefully; see the module docs. Resolves once the engine is
    /// closed.
    pub async fn stop(self) {
        let Node {
            store,
            reporter,
            closing,
            shutdown,
            mut server,
            shutdown_grace,
            logger,
            ..
        } = self;
        info!(logger, "tinykv-server stopping");
        let _ = closing.send(true);
        let _ = shutdown.send(());
        match tokio::time::timeout(shutdown_grace, &mut server).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => warn!(logger, "the gRPC server failed"; "err" => %e),
            Ok(Err(e)) => warn!(logger, "the gRPC server task failed"; "err" => %e),
            Err(_) => {
                warn!(logger, "calls still in flight after the grace period, cutting them";
                    "grace" => ?shutdown_grace);
                server.abort();
            }
        }
        reporter.stop();
        store.stop().await;
        info!(logger, "tinykv-server stopped");
    }
}

/// Serves the store's `TinyKv` service, and the fault-injection service if
/// given, on `listener` until `shutdown` completes (as
/// `crate::server::service::serve` does for `TinyKv` alone). A service not
/// served answers `UNIMPLEMENTED`.
async fn serve_node(
    listener: TcpListener,
    service: TinyKvService<RaftStorage>,
    faults: Option<FaultService>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(service.into_grpc())
        .add_optional_service(faults.map(FaultService::into_grpc))
        .serve_with_incoming_shutdown(scheduler_stub::incoming(listener), shutdown)
        .await
}

/// The store id in `engine`, allocating and persisting one if it has none.
async fn ensure_store_ident(
    scheduler: &RemoteScheduler,
    engine: &Engine,
    logger: &Logger,
) -> Result<u64, NodeError> {
    let cluster_id = scheduler.cluster_id();
    let ident = {
        let engine = engine.clone();
        blocking(move || Ok(load_store_ident(&engine)?)).await?
    };
    if let Some(ident) = ident {
        if ident.cluster_id != cluster_id {
            return Err(NodeError::Invalid(format!(
                "the data dir belongs to store {} of cluster {}, the scheduler serves cluster {cluster_id}",
                ident.store_id, ident.cluster_id
            )));
        }
        return Ok(ident.store_id);
    }
    let store_id = scheduler.alloc_id().await?;
    let engine = engine.clone();
    blocking(move || Ok(bootstrap_store(&engine, cluster_id, store_id)?)).await?;
    info!(logger, "store bootstrapped"; "store_id" => store_id, "cluster_id" => cluster_id);
    Ok(store_id)
}

/// Bootstraps the cluster with this store's first region if nobody has;
/// see the module docs for the crash-safe protocol.
async fn bootstrap_cluster(
    scheduler: &RemoteScheduler,
    engine: &Engine,
    store_id: u64,
    advertise_addr: &str,
    logger: &Logger,
) -> Result<(), NodeError> {
    let prepared = {
        let engine = engine.clone();
        blocking(move || {
            Ok(engine.get_msg_cf::<metapb::Region>(CF_DEFAULT, keys::PREPARE_BOOTSTRAP_KEY)?)
        })
        .await?
    };
    let region = match prepared {
        Some(region) => {
            info!(logger, "finishing an interrupted cluster bootstrap"; "region_id" => region.id);
            region
        }
        None => {
            if scheduler.is_bootstrapped().await? {
                return Ok(());
            }
            let region_id = scheduler.alloc_id().await?;
            let peer_id = scheduler.alloc_id().await?;
            let region = new_first_region(
                region_id,
                vec![metapb::Peer {
                    id: peer_id,
                    store_id,
                }],
            );
            let engine = engine.clone();
            let to_write = region.clone();
            blocking(move || {
                let mut wb = engine.write_batch();
                wb.put_msg_cf(CF_DEFAULT, keys::PREPARE_BOOTSTRAP_KEY, &to_write)?;
                engine.write(wb, true)?;
                Ok(())
            })
            .await?;
            region
        }
    };
    // The region itself: written after the key, so it may be missing.
    {
        let engine = engine.clone();
        let region = region.clone();
        blocking(move || {
            let written = engine
                .get_cf(CF_DEFAULT, &keys::region_state_key(region.id))?
                .is_some();
            if !written {
                write_initial_region(&engine, &region)?;
            }
            Ok(())
        })
        .await?;
    }
    let store = metapb::Store {
        id: store_id,
        address: advertise_addr.to_owned(),
        ..Default::default()
    };
    let won = scheduler.bootstrap(store).await?;
    let ours = won || scheduler.get_store(store_id).await?.is_some();
    let engine = engine.clone();
    let region_id = region.id;
    blocking(move || {
        let mut wb = engine.write_batch();
        if !ours {
            wb.delete_cf(CF_DEFAULT, &keys::region_state_key(region_id))?;
            wb.delete_cf(CF_DEFAULT, &keys::apply_state_key(region_id))?;
            wb.delete_cf(CF_RAFT, &keys::raft_state_key(region_id))?;
        }
        wb.delete_cf(CF_DEFAULT, keys::PREPARE_BOOTSTRAP_KEY)?;
        engine.write(wb, true)?;
        Ok(())
    })
    .await?;
    if ours {
        info!(logger, "cluster bootstrapped"; "region_id" => region_id);
    } else {
        info!(logger, "another store bootstrapped the cluster; prepared region removed";
            "region_id" => region_id);
    }
    Ok(())
}

/// The store's transport, set once the store's router exists (the
/// `GrpcTransport` reports snapshot outcomes to it, and the store creates it
/// on start). Until then messages are dropped; raft sends them again.
#[derive(Default)]
struct LateTransport(OnceLock<GrpcTransport>);

impl Transport for LateTransport {
    fn send(&self, msg: RaftMessage) -> Result<(), TransportError> {
        match self.0.get() {
            Some(transport) => transport.send(msg),
            None => Err(TransportError::Dropped),
        }
    }

    fn send_snapshot(&self, msg: RaftMessage) -> Result<(), TransportError> {
        match self.0.get() {
            Some(transport) => transport.send_snapshot(msg),
            None => Err(TransportError::Dropped),
        }
    }
}

#[cfg(test)]
mod tests;
