//! The region worker: generates, applies and garbage-collects region
//! snapshots on its own thread.
//!
//! A thread fed by a crossbeam channel, like the other workers, rather than a
//! kameo actor: every task is blocking file and RocksDB I/O (an actor would
//! only wrap each one in `spawn_blocking`), and `Store::stop` must know the
//! engine handle is released, which joining a thread tells and killing an
//! actor with a detached blocking job in flight does not.
//!
//! Tasks, one at a time, in order:
//! - `Generate`: builds a snapshot from a fresh RocksDB snapshot
//!   (`snap::generate_snapshot`), hands it to the peer's `SnapshotSource`
//!   through the notifier, and nudges the peer (`PeerMsg::SnapshotGenerated`).
//!   The peer never waits for it.
//! - `Apply`: `snap::apply_snapshot`; the peer awaits the answer (it can do
//!   nothing useful before its data is in place) without blocking a runtime
//!   thread.
//! - `Gc`: deletes snapshot files nobody needs (see `gc`).

use std::collections::HashMap;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender};
use kvproto::metapb;
use kvproto::raft_serverpb::{PeerState, RaftApplyState, RegionLocalState};
use router::{PeerMsg, Router};
use slog::{Logger, debug, info, warn};
use storage::{CF_DEFAULT, Engine, keys};
use tokio::sync::oneshot;

use crate::errors::{Error, Result};
use crate::snap::{SnapKey, SnapKind, SnapManager, apply_snapshot, generate_snapshot};
use crate::snapshot::GenNotifier;

/// Work for the region worker.
pub enum RegionTask {
    /// Generate a snapshot of the region for its leader to send.
    Generate {
        /// The region.
        region_id: u64,
        /// Receives the result.
        notifier: GenNotifier,
    },
    /// Apply a received snapshot.
    Apply {
        /// The snapshot.
        key: SnapKey,
        /// The region it installs.
        region: metapb::Region,
        /// User-key ranges to clear first.
        clear: Vec<(Vec<u8>, Vec<u8>)>,
        /// Answered once applied or failed.
        done: oneshot::Sender<Result<()>>,
    },
    /// Delete snapshot files nobody needs any more.
    Gc,
}

/// A handle for scheduling region tasks. Cheap to clone.
#[derive(Clone)]
pub struct RegionWorker {
    tx: Sender<RegionTask>,
}

impl RegionWorker {
    /// Starts the worker thread; it ends when every handle is dropped.
    pub fn start(
        engine: Engine,
        mgr: SnapManager,
        router: Router,
        logger: &Logger,
    ) -> std::io::Result<(RegionWorker, JoinHandle<()>)> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let runner = Runner {
            engine,
            mgr,
            router,
            logger: logger.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("region-worker".into())
            .spawn(move || runner.run(rx))?;
        Ok((RegionWorker { tx }, thread))
    }

    /// Queues `task`; false if the worker has stopped (the task is dropped,
    /// and a `Generate` notifier reports the failure).
    pub fn schedule(&self, task: RegionTask) -> bool {
        self.tx.send(task).is_ok()
    }

    /// Applies received snapshot `key` of `region`, clearing `clear` first,
    /// and waits for it.
    pub async fn apply(
        &self,
        key: SnapKey,
        region: metapb::Region,
        clear: Vec<(Vec<u8>, Vec<u8>)>,
    ) -> Result<()> {
        let (done, rx) = oneshot::channel();
        if !self.schedule(RegionTask::Apply {
            key,
            region,
            clear,
            done,
        }) {
            return Err(Error::Stopped);
        }
        rx.await.map_err(|_| Error::Stopped)?
    }
}

struct Runner {
    engine: Engine,
    mgr: SnapManager,
    router: Router,
    logger: Logger,
}

impl Runner {
    fn run(self, rx: Receiver<RegionTask>) {
        while let Ok(task) = rx.recv() {
            match task {
                RegionTask::Generate {
                    region_id,
                    notifier,
                } => self.generate(region_id, notifier),
                RegionTask::Apply {
                    key,
                    region,
                    clear,
                    done,
                } => {
                    let result = apply_snapshot(&self.engine, &self.mgr, &key, &region, &clear);
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
    }

    fn generate(&self, region_id: u64, notifier: GenNotifier) {
        match generate_snapshot(&self.mgr, &self.engine.snapshot(), region_id) {
            Ok(snapshot) => {
                let meta = snapshot.metadata.clone().unwrap_or_default();
                info!(self.logger, "snapshot generated"; "region_id" => region_id,
                    "index" => meta.index, "term" => meta.term);
                notifier.finish(Some(snapshot.clone()));
                // A nudge only: the snapshot is in the peer's source already.
                let _ = self
                    .router
                    .send(region_id, PeerMsg::SnapshotGenerated(Box::new(snapshot)));
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
