//! `Store`: starting and stopping one store — its workers, its store actor,
//! and a peer actor for every region it holds.
//!
//! Start-up loads every `RegionLocalState`: `Normal` regions get a peer,
//! `Tombstone` ones stay dead, and `Applying` ones (a crash interrupted a
//! snapshot apply) are applied again from their received files, which are
//! kept until then, before their peer starts. The redo clears what the
//! interrupted apply would have: the snapshot's range and the previous
//! region's, recorded with the `Applying` mark (`snap/apply.rs`).
//!
//! Stop closes every router entry and kills every actor, waits until the
//! last actor's state (each holds the store context) is gone, then joins the
//! worker threads, so the engine is closed when `stop` returns and the same
//! directory can be opened again.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kameo::actor::{ActorRef, Spawn};
use kameo::mailbox;
use kvproto::metapb;
use kvproto::raft_serverpb::{PeerState, RaftApplyState, RegionLocalState};
use prost::Message as _;
use router::{MailboxLoad, Router};
use slog::{Logger, info, o, warn};
use storage::keys;
use storage::{CF_DEFAULT, Engine};

use crate::config::Config;
use crate::context::StoreContext;
use crate::errors::{Error, Result};
use crate::fsm::store::{StoreActor, spawn_peer};
use crate::scheduler::SchedulerReporter;
use crate::snap::{SnapKey, SnapManager, apply_snapshot};
use crate::store_meta::StoreMeta;
use crate::transport::Transport;
use crate::worker::WorkerThread;
use crate::worker::raftlog_gc::RaftLogGcWorker;
use crate::worker::region::{RegionWorker, RegionWorkerStopper};
use crate::worker::split_check::{SplitCheckWorker, SplitSizes};
use crate::worker::write::RaftWriter;

/// A running store.
pub struct Store {
    ctx: Arc<StoreContext>,
    /// Closed once the last handle on `ctx` is gone (`StoreContext`).
    released: tokio::sync::mpsc::Receiver<()>,
    store_actor: ActorRef<StoreActor>,
    /// The region worker actor, stopped after the peers.
    region_stopper: RegionWorkerStopper,
    /// The writer and GC threads, joined on stop after the last handle
    /// feeding them (in `ctx`) is gone: they hold the engine open.
    workers: Vec<WorkerThread>,
}

impl Store {
    /// Starts store `store_id` over `engine`, with its snapshot files in
    /// `snap_mgr` (the transport shares it). Must run inside a tokio runtime
    /// context but not on an async task: it reads every region's state and
    /// may finish an interrupted snapshot apply, blocking.
    pub fn start(
        store_id: u64,
        cfg: Config,
        engine: Engine,
        snap_mgr: SnapManager,
        transport: Arc<dyn Transport>,
        scheduler: Arc<dyn SchedulerReporter>,
        logger: &Logger,
    ) -> Result<Store> {
        let logger = logger.new(o!("store_id" => store_id));
        let io_error = |what: &'static str| {
            move |e: std::io::Error| {
                Error::Storage(storage::Error::Io {
                    what,
                    source: Arc::new(e),
                })
            }
        };
        let (writer, writer_thread) = RaftWriter::start(engine.clone(), transport.clone(), &logger)
            .map_err(io_error("start the raft writer"))?;
        let (raftlog_gc, raftlog_gc_thread) = RaftLogGcWorker::start(engine.clone(), &logger)
            .map_err(io_error("start the raft log gc worker"))?;
        let router = Router::new(cfg.mailbox_limit);
        let sizes = SplitSizes {
            max_size: cfg.region_max_size,
            split_size: cfg.region_split_size,
        };
        let (split_checker, split_check_thread) =
            SplitCheckWorker::start(engine.clone(), router.clone(), sizes, &logger)
                .map_err(io_error("start the split checker"))?;
        let (region_worker, region_stopper) =
            RegionWorker::start(engine.clone(), snap_mgr.clone(), router.clone(), &logger);
        let workers = vec![writer_thread, raftlog_gc_thread, split_check_thread];
        let (released_tx, released) = tokio::sync::mpsc::channel(1);
        let ctx = Arc::new(StoreContext {
            store_id,
            cfg,
            engine,
            router: router.clone(),
            transport,
            scheduler,
            writer,
            raftlog_gc,
            region_worker,
            split_checker,
            snap_mgr,
            store_meta: Mutex::new(StoreMeta::default()),
            logger,
            _released: released_tx,
            #[cfg(test)]
            test_hooks: Default::default(),
        });
        // Unbounded like the peers' (see `spawn_peer`): the router decides
        // what may be dropped.
        let store_load = MailboxLoad::new();
        let store_actor = StoreActor::spawn_with_mailbox(
            StoreActor::new(Arc::clone(&ctx), store_load.clone()),
            mailbox::unbounded(),
        );
        router.register_store(store_actor.clone().recipient(), store_load);
        let mut count = 0;
        for (region_id, state) in load_regions(&ctx.engine)? {
            let region = state.region.clone().unwrap_or_default();
            match state.state() {
                // A `Normal` state always names its region and members (a
                // peer created by a message writes none until its snapshot
                // makes it `Applying`); without them the peer would start
                // empty and wait for a snapshot with the region's data on disk.
                PeerState::Normal if region.id != region_id || region.peers.is_empty() => {
                    return Err(Error::CorruptState(format!(
                        "the Normal state of region {region_id} names region {} with {} members",
                        region.id,
                        region.peers.len()
                    )));
                }
                PeerState::Normal => {}
                PeerState::Tombstone => continue,
                PeerState::Applying => {
                    if let Err(e) = finish_applying(&ctx, &region) {
                        warn!(ctx.logger, "cannot finish applying a snapshot; region not started";
                            "region_id" => region.id, "err" => %e);
                        continue;
                    }
                }
            }
            let Some(meta) = region
                .peers
                .iter()
                .find(|p| p.store_id == store_id)
                .copied()
            else {
                warn!(ctx.logger, "region lists no peer on this store"; "region_id" => region.id);
                continue;
            };
            spawn_peer(&ctx, &mut ctx.store_meta(), region, meta, false)?;
            count += 1;
        }
        info!(ctx.logger, "store started"; "regions" => count);
        Ok(Store {
            ctx,
            released,
            store_actor,
            workers,
            region_stopper,
        })
    }

    /// Routes messages to this store's actors.
    pub fn router(&self) -> Router {
        self.ctx.router.clone()
    }

    /// This store's id.
    pub fn store_id(&self) -> u64 {
        self.ctx.store_id
    }

    /// The store's engine.
    pub fn engine(&self) -> &Engine {
        &self.ctx.engine
    }

    /// Stops every actor and worker and closes the engine.
    pub async fn stop(self) {
        let Store {
            ctx,
            mut released,
            store_actor,
            workers,
            region_stopper,
        } = self;
        // The store actor first: it would recreate the peers stopping below.
        store_actor.kill();
        store_actor.wait_for_shutdown().await;
        for recipient in ctx.router.close_all() {
            recipient.kill();
            recipient.wait_for_shutdown().await;
        }
        let logger = ctx.logger.clone();
        // An actor's state (holding the context) is dropped as its task
        // ends, just after the shutdown notice; the channel closes with the
        // last one. The last handles to the workers go with the context;
        // each thread then drains its queue and ends, dropping its engine
        // handle.
        drop(ctx);
        if tokio::time::timeout(Duration::from_secs(10), released.recv())
            .await
            .is_err()
        {
            warn!(logger, "store context still referenced after stop");
        }
        // Peers are gone: nothing schedules region work any more.
        if !region_stopper.stop(Duration::from_secs(10)).await {
            warn!(logger, "region worker still holds the engine after stop");
        }
        for worker in workers {
            let name = worker.name();
            if !worker.join(Duration::from_secs(10)).await {
                warn!(logger, "worker thread still running after stop"; "thread" => name);
            }
        }
        info!(logger, "store stopped");
    }
}

#[cfg(test)]
impl Store {
    /// The context its actors share.
    pub(crate) fn context(&self) -> &Arc<StoreContext> {
        &self.ctx
    }

    /// The store actor.
    pub(crate) fn store_actor(&self) -> &ActorRef<StoreActor> {
        &self.store_actor
    }
}

/// Applies again the snapshot `region` was `Applying` when the store
/// stopped. The snapshot's index and term are those of the apply state
/// persisted with the `Applying` mark; the ranges to clear (the region's,
/// and the previous region's if the apply was to change it) come from the
/// same batch, read by `apply_snapshot`.
fn finish_applying(ctx: &StoreContext, region: &metapb::Region) -> Result<()> {
    let apply_state = ctx
        .engine
        .get_msg_cf::<RaftApplyState>(CF_DEFAULT, &keys::apply_state_key(region.id))?
        .ok_or_else(|| {
            Error::CorruptState(format!(
                "region {} is applying without apply state",
                region.id
            ))
        })?;
    let key = SnapKey {
        region_id: region.id,
        term: apply_state.truncated_state.map_or(0, |t| t.term),
        index: apply_state.applied_index,
    };
    info!(ctx.logger, "finishing an interrupted snapshot apply"; "region_id" => region.id,
        "index" => key.index, "term" => key.term);
    apply_snapshot(&ctx.engine, &ctx.snap_mgr, &key, region)
}

/// Every region state this store holds, with the region id of its key.
fn load_regions(engine: &Engine) -> Result<Vec<(u64, RegionLocalState)>> {
    let mut states = Vec::new();
    engine.scan_cf(
        CF_DEFAULT,
        keys::REGION_META_MIN_KEY,
        keys::REGION_META_MAX_KEY,
        |key, value| {
            let (region_id, suffix) = keys::decode_region_meta_key(key)?;
            if suffix == keys::REGION_STATE_SUFFIX {
                let state =
                    RegionLocalState::decode(value).map_err(|e| storage::Error::Decode {
                        key: key.to_vec(),
                        source: e,
                    })?;
                states.push((region_id, state));
            }
            Ok(true)
        },
    )?;
    Ok(states)
}

#[cfg(test)]
mod tests {
    use kvproto::metapb;
    use kvproto::raft_serverpb::RaftMessage;
    use router::{PeerMsg, PeerTick};

    use super::*;
    use crate::bootstrap::{bootstrap_store, new_first_region, write_initial_region};
    use crate::transport::TransportError;

    struct NoNetwork;

    impl Transport for NoNetwork {
        fn send(&self, _: RaftMessage) -> std::result::Result<(), TransportError> {
            Err(TransportError::Dropped)
        }

        fn send_snapshot(&self, _: RaftMessage) -> std::result::Result<(), TransportError> {
            Err(TransportError::Dropped)
        }
    }

    /// The router bounds only raft messages and commands; every other
    /// message must reach a peer however busy it is (`router.rs`). On a
    /// current-thread runtime nothing runs between these sends, so the
    /// peer's mailbox has to hold them all.
    #[tokio::test]
    async fn a_busy_peer_takes_every_must_deliver_message() {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = Engine::open(dir.path()).expect("open engine");
        bootstrap_store(&engine, 1, 1).expect("bootstrap store");
        let region = new_first_region(1, vec![metapb::Peer { id: 1, store_id: 1 }]);
        write_initial_region(&engine, &region).expect("write region");
        let logger = Logger::root(slog::Discard, o!());
        let snap_mgr = SnapManager::open(dir.path().join("snap")).expect("snap dir");
        let store = Store::start(
            1,
            Config::for_tests(),
            engine,
            snap_mgr,
            Arc::new(NoNetwork),
            Arc::new(crate::NoScheduler),
            &logger,
        )
        .expect("start");
        let router = store.router();
        for i in 0..1000 {
            if router.send(1, PeerMsg::Tick(PeerTick::RaftLogGc)).is_err() {
                panic!("must-deliver message {i} was refused");
            }
        }
        store.stop().await;
    }

    /// A `Normal` region state without its region would start a peer with
    /// an empty region, waiting for a snapshot while the region's data sits
    /// on disk. The store refuses to start instead, naming the region.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn a_normal_state_without_its_region_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = Engine::open(dir.path()).expect("open engine");
        bootstrap_store(&engine, 1, 1).expect("bootstrap store");
        let mut wb = engine.write_batch();
        crate::peer_storage::write_region_state(
            &mut wb,
            &metapb::Region {
                id: 7,
                ..Default::default()
            },
            PeerState::Normal,
        )
        .expect("encode region state");
        engine.write(wb, true).expect("write region state");
        let logger = Logger::root(slog::Discard, o!());
        let snap_mgr = SnapManager::open(dir.path().join("snap")).expect("snap dir");
        let started = tokio::task::block_in_place(|| {
            Store::start(
                1,
                Config::for_tests(),
                engine,
                snap_mgr,
                Arc::new(NoNetwork),
                Arc::new(crate::NoScheduler),
                &logger,
            )
        });
        match started {
            Err(Error::CorruptState(message)) => assert!(message.contains("region 7"), "{message}"),
            Err(e) => panic!("wrong error: {e}"),
            Ok(store) => {
                store.stop().await;
                panic!("a store with an empty Normal region started");
            }
        }
    }
}
