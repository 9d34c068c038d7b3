//! The region worker: a kameo actor that generates, applies and
//! garbage-collects region snapshots, and the generation state of each
//! peer's snapshots (`RegionSnapshots`, the peer's `SnapshotSource`).
//!
//! The files themselves (building, verifying, ingesting) are `snap`'s; the
//! peer's side is `operation/snapshot.rs`; `snapshot.rs` has the map.
//!
//! Every task is blocking file and RocksDB I/O, so the actor runs each one
//! with `spawn_blocking` and awaits it before taking the next: tasks run one
//! at a time, in order, and never on a runtime worker thread. Stopping is
//! graceful (queued tasks finish) and `RegionWorkerStopper::stop` returns
//! only once the worker's engine handle is released, so the store can close
//! RocksDB.
//!
//! Tasks, one at a time, in order:
//! - `Generate`: builds a snapshot from a fresh RocksDB snapshot
//!   (`snap::generate_snapshot`), hands it to the peer's `SnapshotSource`
//!   through the notifier, and nudges the peer (`PeerMsg::SnapshotGenerated`).
//!   The peer never waits for it.
//! - `Apply`: `snap::apply_snapshot`; the peer awaits the answer (it can do
//!   nothing useful before its data is in place) without blocking a runtime
//!   thread. The ranges it clears come from the state persisted with the
//!   `Applying` mark, so the task carries none.
//! - `Gc`: deletes snapshot files nobody needs (see `gc`).
//!
//! Generation state, per peer (`RegionSnapshots`):
//!
//! ```text
//!            snapshot() with nothing usable        worker done
//!   Relax ───────────────────────────────────▶ Generating ───────▶ Generated(s)
//!     ▲   ◀──────────── worker failed ─────────────┘                   │
//!     └──────────── s stale: generate again (→ Generating) ◀──────────┘
//! ```
//!
//! Raft asks `PeerStorage::snapshot` when a follower needs entries that are
//! compacted away. Building one means reading the region's whole range, so
//! it happens here, off the peer; until it is ready the source answers
//! `SnapshotTemporarilyUnavailable` and Raft asks again later (on the next
//! heartbeat response, or at once when the worker nudges the peer). A
//! generated snapshot is kept and handed out again (to another follower, or
//! after a failed send) while it is usable: not older than the truncated
//! index (else the follower would need compacted entries right after
//! applying it), not of an older membership than the region's, and its
//! files still there.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kameo::Actor;
use kameo::actor::{ActorRef, Spawn};
use kameo::error::Infallible;
use kameo::mailbox;
use kameo::message::{Context, Message};
use kvproto::eraftpb::Snapshot;
use kvproto::metapb;
use kvproto::raft_serverpb::{PeerState, RaftApplyState, RegionLocalState};
use router::{PeerMsg, Router};
use slog::{Logger, debug, info, o, warn};
use storage::{CF_DEFAULT, Engine, keys};
use tokio::sync::oneshot;

use crate::errors::{Error, Result};
use crate::snap::{SnapKey, SnapKind, SnapManager, apply_snapshot, generate_snapshot};
use crate::snapshot::SnapshotSource;

/// The generation state of one peer's snapshots.
#[derive(Debug, Default)]
enum GenState {
    /// Nothing in progress, nothing kept.
    #[default]
    Relax,
    /// The region worker is building one.
    Generating,
    /// The last one built.
    Generated(Box<Snapshot>),
}

fn lock(state: &Mutex<GenState>) -> MutexGuard<'_, GenState> {
    // Every update is a single assignment: a panic elsewhere cannot leave
    // the state half-changed.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Hands a generation's result back to the source that asked for it.
/// Dropped without `finish` (the worker stopped), it reports a failure.
pub struct GenNotifier {
    state: Option<Arc<Mutex<GenState>>>,
}

impl GenNotifier {
    /// Records the snapshot built, or `None` if it failed (the next request
    /// tries again).
    pub fn finish(mut self, snapshot: Option<Snapshot>) {
        if let Some(state) = self.state.take() {
            *lock(&state) = match snapshot {
                Some(s) => GenState::Generated(Box::new(s)),
                None => GenState::Relax,
            };
        }
    }
}

impl Drop for GenNotifier {
    fn drop(&mut self) {
        if let Some(state) = self.state.take() {
            *lock(&state) = GenState::Relax;
        }
    }
}

/// The `SnapshotSource` of one region peer: generation in the region
/// worker, files in the store's snapshot manager.
pub struct RegionSnapshots {
    region_id: u64,
    /// Shared with the worker's notifier while generating. A `Mutex`: Raft
    /// reads it through `&self` from the peer, the worker writes it from its
    /// thread; each access is a short, non-blocking step.
    state: Arc<Mutex<GenState>>,
    worker: RegionWorker,
    mgr: SnapManager,
    logger: Logger,
}

impl RegionSnapshots {
    /// The source of `region_id`'s snapshots.
    pub fn new(
        region_id: u64,
        worker: RegionWorker,
        mgr: SnapManager,
        logger: &Logger,
    ) -> RegionSnapshots {
        RegionSnapshots {
            region_id,
            state: Arc::new(Mutex::new(GenState::Relax)),
            worker,
            mgr,
            logger: logger.new(o!("region_id" => region_id)),
        }
    }

    fn is_usable(&self, snapshot: &Snapshot, region: &metapb::Region, min_index: u64) -> bool {
        let Ok((key, data)) = SnapKey::from_snapshot(snapshot) else {
            return false;
        };
        let conf_ver =
            |r: Option<&metapb::Region>| r.and_then(|r| r.region_epoch).map_or(0, |e| e.conf_ver);
        let fresh =
            key.index >= min_index && conf_ver(data.region.as_ref()) >= conf_ver(Some(region));
        fresh && self.mgr.exists(SnapKind::Generated, &key)
    }
}

impl SnapshotSource for RegionSnapshots {
    fn snapshot(&self, region: &metapb::Region, min_index: u64) -> raft::Result<Snapshot> {
        let unavailable = || Err(raft::StorageError::SnapshotTemporarilyUnavailable.into());
        let mut state = lock(&self.state);
        match &*state {
            GenState::Generating => return unavailable(),
            GenState::Generated(s) if self.is_usable(s, region, min_index) => {
                return Ok((**s).clone());
            }
            GenState::Generated(_) | GenState::Relax => {}
        }
        debug!(self.logger, "requesting a snapshot"; "min_index" => min_index);
        *state = GenState::Generating;
        drop(state);
        let notifier = GenNotifier {
            state: Some(Arc::clone(&self.state)),
        };
        // A stopped worker drops the task, and the notifier resets the state.
        self.worker.schedule(RegionTask::Generate {
            region_id: self.region_id,
            notifier,
        });
        unavailable()
    }
}

/// Work for the region worker.
pub enum RegionTask {
    /// Generate a snapshot of the region for its leader to send.
    Generate {
        /// The region.
        region_id: u64,
        /// Receives the result.
        notifier: GenNotifier,
    },
    /// Apply a received snapshot whose states are persisted.
    Apply {
        /// The snapshot.
        key: SnapKey,
        /// The region it installs.
        region: metapb::Region,
        /// Answered once applied or failed.
        done: oneshot::Sender<Result<()>>,
    },
    /// Delete snapshot files nobody needs any more.
    Gc,
}

/// A handle for scheduling region tasks. Cheap to clone.
#[derive(Clone)]
pub struct RegionWorker {
    actor: ActorRef<RegionActor>,
}

/// Stops the region worker when the store stops.
pub struct RegionWorkerStopper {
    actor: ActorRef<RegionActor>,
    runner: Arc<Runner>,
}

impl RegionWorkerStopper {
    /// Lets queued tasks finish, stops the actor and waits (up to `timeout`)
    /// until its engine handle is released. False if it was not in time.
    pub async fn stop(self, timeout: Duration) -> bool {
        let RegionWorkerStopper { actor, runner } = self;
        let _ = actor.stop_gracefully().await;
        actor.wait_for_shutdown().await;
        drop(actor);
        // The actor's state (another `Arc` of the runner) is dropped as its
        // task ends, just after the shutdown notice.
        let deadline = tokio::time::Instant::now() + timeout;
        while Arc::strong_count(&runner) > 1 {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        true
    }
}

impl RegionWorker {
    /// Spawns the worker actor. Must run inside a tokio runtime.
    pub fn start(
        engine: Engine,
        mgr: SnapManager,
        router: Router,
        logger: &Logger,
    ) -> (RegionWorker, RegionWorkerStopper) {
        let runner = Arc::new(Runner {
            engine,
            mgr,
            router,
            logger: logger.clone(),
        });
        // Unbounded: a task is never refused for load (the router's policy
        // for must-deliver work); tasks are few and small.
        let actor = RegionActor::spawn_with_mailbox(
            RegionActor {
                runner: Arc::clone(&runner),
            },
            mailbox::unbounded(),
        );
        let stopper = RegionWorkerStopper {
            actor: actor.clone(),
            runner,
        };
        (RegionWorker { actor }, stopper)
    }

    /// Queues `task`; false if the worker has stopped (the task is dropped,
    /// and a `Generate` notifier reports the failure).
    pub fn schedule(&self, task: RegionTask) -> bool {
        self.actor.tell(task).try_send().is_ok()
    }

    /// Applies received snapshot `key` of `region`, whose states are
    /// persisted, and waits for it.
    pub async fn apply(&self, key: SnapKey, region: metapb::Region) -> Result<()> {
        let (done, rx) = oneshot::channel();
        if !self.schedule(RegionTask::Apply { key, region, done }) {
            return Err(Error::Stopped);
        }
        rx.await.map_err(|_| Error::Stopped)?
    }
}

/// The actor shell: runs each task on the blocking pool and waits for it.
struct RegionActor {
    runner: Arc<Runner>,
}

impl Actor for RegionActor {
    type Args = Self;
    type Error = Infallible;

    async fn on_start(state: Self, _: ActorRef<Self>) -> std::result::Result<Self, Infallible> {
        Ok(state)
    }
}

impl Message<RegionTask> for RegionActor {
    type Reply = ();

    async fn handle(&mut self, task: RegionTask, _: &mut Context<Self, ()>) {
        let runner = Arc::clone(&self.runner);
        if let Err(e) = tokio::task::spawn_blocking(move || runner.handle(task)).await {
            warn!(self.runner.logger, "region task panicked"; "err" => %e);
        }
    }
}

struct Runner {
    engine: Engine,
    mgr: SnapManager,
    router: Router,
    logger: Logger,
}

impl Runner {
    fn handle(&self, task: RegionTask) {
        match task {
            RegionTask::Generate {
                region_id,
                notifier,
            } => self.generate(region_id, notifier),
            RegionTask::Apply { key, region, done } => {
                let result = apply_snapshot(&self.engine, &self.mgr, &key, &region);
                match &result {
                    Ok(()) => {
                        info!(self.logger, "snapshot applied"; "region_id" => key.region_id,
                            "index" => key.index, "term" => key.term)
                    }
                    Err(e) => {
                        warn!(self.logger, "snapshot apply failed"; "region_id" => key.region_id,
                            "index" => key.index, "err" => %e)
                    }
                }
                let _ = done.send(result);
            }
            RegionTask::Gc => {
                if let Err(e) = self.gc() {
                    warn!(self.logger, "snapshot gc failed"; "err" => %e);
                }
            }
        }
    }

    fn generate(&self, region_id: u64, notifier: GenNotifier) {
        match generate_snapshot(&self.mgr, &self.engine.snapshot(), region_id) {
            Ok(snapshot) => {
                let meta = snapshot.metadata.clone().unwrap_or_default();
                info!(self.logger, "snapshot generated"; "region_id" => region_id,
                    "index" => meta.index, "term" => meta.term);
                notifier.finish(Some(snapshot.clone()));
                // A nudge only: the snapshot is in the peer's source already.
                let _ = self.router.send(region_id, PeerMsg::SnapshotGenerated);
            }
            Err(e) => {
                warn!(self.logger, "snapshot generation failed"; "region_id" => region_id, "err" => %e);
                notifier.finish(None);
            }
        }
    }

    /// Deletes the snapshots no one needs, unless in use:
    /// - generated: all but the newest of each region, and every one of a
    ///   region this store has no peer of (a leader only ever sends its
    ///   newest one: its source replaces older ones);
    /// - received: those of a region without a peer here, and those at or
    ///   below the applied index unless the region is `Applying` them
    ///   (applied ones are deleted by `apply_snapshot` already; these were
    ///   rejected as stale or dropped).
    fn gc(&self) -> Result<()> {
        let snaps = self.mgr.list()?;
        let mut newest_generated: HashMap<u64, SnapKey> = HashMap::new();
        for (kind, key) in &snaps {
            if *kind == SnapKind::Generated {
                let newest = newest_generated.entry(key.region_id).or_insert(*key);
                if (key.index, key.term) > (newest.index, newest.term) {
                    *newest = *key;
                }
            }
        }
        for (kind, key) in snaps {
            let has_peer = self.router.has_region(key.region_id);
            let obsolete = match kind {
                SnapKind::Generated => !has_peer || newest_generated[&key.region_id] != key,
                SnapKind::Received => {
                    let region_state = self.engine.get_msg_cf::<RegionLocalState>(
                        CF_DEFAULT,
                        &keys::region_state_key(key.region_id),
                    )?;
                    let applied = self
                        .engine
                        .get_msg_cf::<RaftApplyState>(
                            CF_DEFAULT,
                            &keys::apply_state_key(key.region_id),
                        )?
                        .map_or(0, |s| s.applied_index);
                    let applying = region_state.is_some_and(|s| s.state() == PeerState::Applying)
                        && applied == key.index;
                    !applying && (!has_peer || applied >= key.index)
                }
            };
            if obsolete && self.mgr.delete_idle(kind, &key)? {
                debug!(self.logger, "snapshot deleted"; "kind" => ?kind, "key" => %key);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::peer_storage::write_region_state;
    use std::time::{Duration, Instant};

    use kameo::Actor;
    use kameo::actor::{ActorRef, Spawn};
    use kameo::error::Infallible;
    use kameo::message::{Context, Message};
    use kvproto::raft_serverpb::{RaftSnapshotData, RaftTruncatedState, SnapshotMeta};
    use router::{MailboxHandle, PeerMailbox};

    use super::*;

    /// A peer stand-in that ignores what it gets.
    struct Sink;

    impl Actor for Sink {
        type Args = Self;
        type Error = Infallible;

        async fn on_start(state: Self, _: ActorRef<Self>) -> std::result::Result<Self, Infallible> {
            Ok(state)
        }
    }

    impl Message<PeerMsg> for Sink {
        type Reply = ();

        async fn handle(&mut self, _: PeerMsg, _: &mut Context<Self, ()>) {}
    }

    fn register_peer(router: &Router, region_id: u64) {
        let actor = Sink::spawn(Sink);
        router.register(
            region_id,
            PeerMailbox::new(actor.recipient(), MailboxHandle::new()),
        );
    }

    fn region(id: u64, conf_ver: u64) -> metapb::Region {
        metapb::Region {
            id,
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver,
                version: 1,
            }),
            peers: vec![metapb::Peer { id: 1, store_id: 1 }],
            ..Default::default()
        }
    }

    fn put_states(engine: &Engine, region: &metapb::Region, state: PeerState, applied: u64) {
        let mut wb = engine.write_batch();
        write_region_state(&mut wb, region, state).expect("known CF");
        wb.put_msg_cf(
            CF_DEFAULT,
            &keys::apply_state_key(region.id),
            &RaftApplyState {
                applied_index: applied,
                truncated_state: Some(RaftTruncatedState {
                    index: applied,
                    term: 5,
                }),
                ..Default::default()
            },
        )
        .unwrap();
        engine.write(wb, false).unwrap();
    }

    fn new_test_worker() -> (tempfile::TempDir, Engine, SnapManager, Router) {
        let dir = tempfile::tempdir().unwrap();
        let engine = Engine::open(dir.path().join("db")).unwrap();
        let mgr = SnapManager::open(dir.path().join("snap")).unwrap();
        (dir, engine, mgr, Router::new(16))
    }

    fn logger() -> Logger {
        Logger::root(slog::Discard, slog::o!())
    }

    /// Asks `source` until it answers, within a deadline.
    fn must_get_snapshot(
        source: &RegionSnapshots,
        region: &metapb::Region,
        min_index: u64,
    ) -> kvproto::eraftpb::Snapshot {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match source.snapshot(region, min_index) {
                Ok(s) => return s,
                Err(raft::Error::Store(raft::StorageError::SnapshotTemporarilyUnavailable))
                    if Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("no snapshot of region {} at {min_index}: {e}", region.id),
            }
        }
    }

    fn index_of(s: &kvproto::eraftpb::Snapshot) -> u64 {
        s.metadata.as_ref().unwrap().index
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn test_source_generates_reuses_and_regenerates() {
        let (_dir, engine, mgr, router) = new_test_worker();
        let (worker, stopper) = RegionWorker::start(engine.clone(), mgr.clone(), router, &logger());
        let source = RegionSnapshots::new(1, worker.clone(), mgr.clone(), &logger());
        let r = region(1, 1);
        put_states(&engine, &r, PeerState::Normal, 10);

        // First ask: being generated.
        assert!(matches!(
            source.snapshot(&r, 10),
            Err(raft::Error::Store(
                raft::StorageError::SnapshotTemporarilyUnavailable
            ))
        ));
        let first = must_get_snapshot(&source, &r, 10);
        assert_eq!(index_of(&first), 10);
        // Still usable: handed out again, nothing new generated.
        put_states(&engine, &r, PeerState::Normal, 12);
        assert_eq!(source.snapshot(&r, 10).unwrap(), first);
        assert_eq!(mgr.list().unwrap().len(), 1);
        // Older than the truncated index: generated again.
        let second = must_get_snapshot(&source, &r, 11);
        assert_eq!(index_of(&second), 12);
        // Of an older membership than the region's: generated again.
        let newer_members = region(1, 2);
        put_states(&engine, &newer_members, PeerState::Normal, 12);
        let third = must_get_snapshot(&source, &newer_members, 11);
        let (_, data) = SnapKey::from_snapshot(&third).unwrap();
        assert_eq!(data.region, Some(newer_members.clone()));
        // Files gone: generated again.
        let (key, _) = SnapKey::from_snapshot(&third).unwrap();
        mgr.delete_idle(SnapKind::Generated, &key).unwrap();
        assert!(source.snapshot(&newer_members, 11).is_err());
        assert_eq!(
            index_of(&must_get_snapshot(&source, &newer_members, 11)),
            12
        );

        // A failed generation is retried on the next ask.
        let missing = RegionSnapshots::new(9, worker.clone(), mgr.clone(), &logger());
        assert!(missing.snapshot(&region(9, 1), 0).is_err());
        put_states(&engine, &region(9, 1), PeerState::Normal, 7);
        assert_eq!(index_of(&must_get_snapshot(&missing, &region(9, 1), 0)), 7);

        drop((source, missing, worker));
        assert!(
            stopper.stop(Duration::from_secs(10)).await,
            "the worker releases the engine"
        );
    }

    fn put_received(mgr: &SnapManager, key: SnapKey) {
        let data = RaftSnapshotData {
            region: Some(region(key.region_id, 1)),
            file_size: 0,
            data: Vec::new(),
            meta: Some(SnapshotMeta {
                cf_files: Vec::new(),
            }),
            ..Default::default()
        };
        mgr.save_meta(SnapKind::Received, &key, &data, false)
            .unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn test_gc_keeps_only_what_is_needed() {
        let (_dir, engine, mgr, router) = new_test_worker();
        let key = |region_id, index| SnapKey {
            region_id,
            term: 5,
            index,
        };
        // Region 1: a peer here, applied up to 15.
        register_peer(&router, 1);
        put_states(&engine, &region(1, 1), PeerState::Normal, 10);
        let old = generate_snapshot(&mgr, &engine.snapshot(), 1).unwrap();
        put_states(&engine, &region(1, 1), PeerState::Normal, 15);
        let newest = generate_snapshot(&mgr, &engine.snapshot(), 1).unwrap();
        put_received(&mgr, key(1, 12));
        put_received(&mgr, key(1, 20));
        // Region 2: no peer here.
        put_states(&engine, &region(2, 1), PeerState::Normal, 3);
        generate_snapshot(&mgr, &engine.snapshot(), 2).unwrap();
        put_received(&mgr, key(2, 9));
        // Region 3: no peer (the store is starting), applying at 7.
        put_states(&engine, &region(3, 1), PeerState::Applying, 7);
        put_received(&mgr, key(3, 7));
        // Region 4: obsolete but in use.
        put_received(&mgr, key(4, 1));
        let guard = mgr.register(SnapKind::Received, key(4, 1));

        let runner = Runner {
            engine: engine.clone(),
            mgr: mgr.clone(),
            router: router.clone(),
            logger: logger(),
        };
        runner.gc().unwrap();
        let (newest_key, _) = SnapKey::from_snapshot(&newest).unwrap();
        let (old_key, _) = SnapKey::from_snapshot(&old).unwrap();
        assert_ne!(newest_key, old_key);
        assert_eq!(
            mgr.list().unwrap(),
            vec![
                (SnapKind::Generated, newest_key),
                (SnapKind::Received, key(1, 20)),
                (SnapKind::Received, key(3, 7)),
                (SnapKind::Received, key(4, 1)),
            ]
        );
        drop(guard);
        runner.gc().unwrap();
        assert!(!mgr.exists(SnapKind::Received, &key(4, 1)));
    }

    #[test]
    fn test_notifier_dropped_unfinished_resets_the_state() {
        let state = Arc::new(Mutex::new(GenState::Generating));
        drop(GenNotifier {
            state: Some(Arc::clone(&state)),
        });
        assert!(matches!(*lock(&state), GenState::Relax));

        *lock(&state) = GenState::Generating;
        GenNotifier {
            state: Some(Arc::clone(&state)),
        }
        .finish(Some(Snapshot::default()));
        assert!(matches!(*lock(&state), GenState::Generated(_)));
    }
}
