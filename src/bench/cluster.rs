//! `LocalCluster`: the stores of one region, in one process, for measuring.
//!
//! The same building blocks as the test cluster (`tinykv-tests`): every
//! store is a real `raftstore::Store` over its own RocksDB in a temp dir,
//! bootstrapped with the first region (peer id = store id), and raft
//! messages travel through each target store's `Router`. What the test
//! cluster adds (filters, restarts, region bookkeeping) is left out: the
//! bench runs one region on a healthy network.
//!
//! Clients (`Client`) call the leader's router directly with a callback and
//! wait for the answer, so a measured latency is the store's: proposal,
//! replication, fsync on a quorum, apply, answer. No gRPC is involved.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use kvproto::raft_cmdpb::{CmdType, PutRequest, RaftCmdRequest, RaftRequestHeader, Request};
use kvproto::raft_serverpb::RaftMessage;
use kvproto::{errorpb, metapb};
use raftstore::bootstrap::{bootstrap_store, new_first_region, write_initial_region};
use raftstore::{Config, NoScheduler, SnapManager, Store, Transport, TransportError};
use router::{Callback, CmdResponse, RaftCommand, Router};
use slog::Logger;
use storage::{CF_DEFAULT, Engine};

use super::BenchError;

/// The id of the cluster's one region.
pub const REGION_ID: u64 = 1;
/// The cluster id written into every store's identity.
const CLUSTER_ID: u64 = 1;

/// The routers of the running stores. A `RwLock`: every raft message reads
/// it; it is written only while the stores start and stop.
type Routers = Arc<RwLock<HashMap<u64, Router>>>;

/// How to build a [`LocalCluster`].
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Number of stores (each holds a peer of the one region).
    pub stores: u64,
    /// The raftstore configuration of every store.
    pub cfg: Config,
    /// The directory under which the cluster's temp dir is made. Its disk
    /// is the one being measured.
    pub data_parent: std::path::PathBuf,
    /// Worker threads of the runtime the store actors run on.
    pub runtime_threads: usize,
}

/// Delivers a raft message straight into the target store's router.
struct DirectTransport {
    routers: Routers,
}

impl Transport for DirectTransport {
    fn send(&self, msg: RaftMessage) -> Result<(), TransportError> {
        let to_store = msg.to_peer.map_or(0, |p| p.store_id);
        let router = self
            .routers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&to_store)
            .cloned()
            .ok_or(TransportError::Unreachable(to_store))?;
        router
            .send_raft_message(Box::new(msg))
            .map_err(|_| TransportError::Dropped)
    }

    /// The bench's followers keep up with the leader, so no snapshot is
    /// ever due; this transport does not move snapshot files. Should one be
    /// needed, Raft hears the target is unreachable and retries, and the
    /// stall shows in the latency figures.
    fn send_snapshot(&self, msg: RaftMessage) -> Result<(), TransportError> {
        Err(TransportError::Unreachable(
            msg.to_peer.map_or(0, |p| p.store_id),
        ))
    }
}

/// N running stores holding one region.
pub struct LocalCluster {
    /// The runtime every store actor runs on.
    rt: tokio::runtime::Runtime,
    /// Running stores; emptied by `shutdown`.
    stores: Vec<Store>,
    routers: Routers,
    region: metapb::Region,
    /// The store new clients try first: the leader `wait_for_leader` found.
    leader_hint: AtomicU64,
    /// Every store's data, removed once the stores have stopped.
    dir: PathBuf,
}

impl LocalCluster {
    /// Bootstraps and starts `opts.stores` stores with the first region.
    pub fn start(opts: &ClusterOptions, logger: &Logger) -> Result<LocalCluster, BenchError> {
        let io = |what: &'static str| move |source| BenchError::Io { what, source };
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(opts.runtime_threads.max(1))
            .thread_name("store-rt")
            .enable_all()
            .build()
            .map_err(io("build the store runtime"))?;
        std::fs::create_dir_all(&opts.data_parent).map_err(io("create the data directory"))?;
        // Kept, not removed on drop: `stop_stores` removes it once the
        // engines are closed.
        let dir = tempfile::Builder::new()
            .prefix("tinykv-bench-")
            .tempdir_in(&opts.data_parent)
            .map_err(io("create the cluster's temp dir"))?
            .keep();
        let peers: Vec<metapb::Peer> = (1..=opts.stores)
            .map(|id| metapb::Peer { id, store_id: id })
            .collect();
        let region = new_first_region(REGION_ID, peers);
        // Built first so that a failure below drops it: that stops the
        // stores already started and removes the data.
        let mut cluster = LocalCluster {
            rt,
            stores: Vec::new(),
            routers: Arc::default(),
            region,
            leader_hint: AtomicU64::new(1),
            dir,
        };
        for store_id in 1..=opts.stores {
            cluster.start_store(store_id, &opts.cfg, logger)?;
        }
        Ok(cluster)
    }

    fn start_store(
        &mut self,
        store_id: u64,
        cfg: &Config,
        logger: &Logger,
    ) -> Result<(), BenchError> {
        let engine = Engine::open(self.dir.join(format!("store-{store_id}")))?;
        bootstrap_store(&engine, CLUSTER_ID, store_id)?;
        write_initial_region(&engine, &self.region)?;
        let transport = Arc::new(DirectTransport {
            routers: Arc::clone(&self.routers),
        });
        let store = {
            let _guard = self.rt.enter();
            let snap_mgr = SnapManager::open(self.dir.join(format!("snap-{store_id}")))?;
            Store::start(
                store_id,
                cfg.clone(),
                engine,
                snap_mgr,
                transport,
                Arc::new(NoScheduler),
                logger,
            )?
        };
        self.routers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(store_id, store.router());
        self.stores.push(store);
        Ok(())
    }

    /// Where the stores keep their data.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// A client that first tries the last leader found.
    pub fn client(&self) -> Client {
        Client {
            routers: Arc::clone(&self.routers),
            rt: self.rt.handle().clone(),
            region: self.region.clone(),
            target: self.leader_hint.load(Ordering::Relaxed),
        }
    }

    /// Puts a probe key until a put succeeds: a leader is elected and its
    /// first entry of the term is committed. Returns the time it took and
    /// the leader's store id (which later clients try first).
    pub fn wait_for_leader(&self, timeout: Duration) -> Result<(Duration, u64), BenchError> {
        let start = Instant::now();
        let mut client = self.client();
        client.put(b"bench-probe".to_vec(), b"ready".to_vec(), timeout)?;
        self.leader_hint.store(client.target, Ordering::Relaxed);
        Ok((start.elapsed(), client.target))
    }

    /// Stops every store (their engines close) and removes the data.
    pub fn shutdown(mut self) {
        self.stop_stores();
    }

    fn stop_stores(&mut self) {
        self.routers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
        for store in self.stores.drain(..) {
            self.rt.block_on(store.stop());
        }
        remove_when_closed(&self.dir);
    }
}

/// Removes the cluster's data. `Store::stop` returns before its writer and
/// log-GC threads have dropped their engine handles, so a RocksDB may still
/// be closing (and writing its manifest) for a moment: a removal racing it
/// fails, and is retried.
fn remove_when_closed(dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::fs::remove_dir_all(dir) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(e) if Instant::now() >= deadline => {
                eprintln!("tinykv-bench: cannot remove {}: {e}", dir.display());
                return;
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop_stores();
    }
}

/// Attempts of a put that were retried, by the reason they failed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Retries {
    /// `NotLeader`: the target was not the leader (the hint is followed).
    pub not_leader: u64,
    /// `StaleCommand`: the entry was overwritten or the peer stopped.
    pub stale_command: u64,
    /// `ServerIsBusy` answered by the peer.
    pub server_is_busy: u64,
    /// No answer: the router refused the command (mailbox full, actor
    /// stopped, region unknown), the store was not running, or the
    /// deadline passed.
    pub no_answer: u64,
    /// Any other region error.
    pub other: u64,
}

impl Retries {
    /// Every retried attempt.
    pub fn total(&self) -> u64 {
        self.not_leader + self.stale_command + self.server_is_busy + self.no_answer + self.other
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Retries) {
        self.not_leader += other.not_leader;
        self.stale_command += other.stale_command;
        self.server_is_busy += other.server_is_busy;
        self.no_answer += other.no_answer;
        self.other += other.other;
    }

    fn count(&mut self, error: &errorpb::Error) {
        if error.not_leader.is_some() {
            self.not_leader += 1;
        } else if error.stale_command.is_some() {
            self.stale_command += 1;
        } else if error.server_is_busy.is_some() {
            self.server_is_busy += 1;
        } else {
            self.other += 1;
        }
    }
}

/// One client: sends puts to the store it believes leads, follows
/// `NotLeader` hints, and retries until the put succeeds or times out.
#[derive(Clone)]
pub struct Client {
    routers: Routers,
    /// The store runtime's handle: its timers bound each wait.
    rt: tokio::runtime::Handle,
    region: metapb::Region,
    /// The store tried first: the last leader seen.
    target: u64,
}

impl Client {
    /// Puts `key` = `value` in the default CF, blocking until it is applied
    /// on the leader. Returns the attempts that were retried, by reason.
    /// Must not be called from inside an async context.
    pub fn put(
        &mut self,
        key: Vec<u8>,
        value: Vec<u8>,
        timeout: Duration,
    ) -> Result<Retries, BenchError> {
        let deadline = Instant::now() + timeout;
        let put = Request {
            cmd_type: CmdType::Put as i32,
            put: Some(PutRequest {
                cf: CF_DEFAULT.to_owned(),
                key,
                value,
            }),
            ..Default::default()
        };
        let mut retries = Retries::default();
        loop {
            let request = RaftCmdRequest {
                header: Some(RaftRequestHeader {
                    region_id: self.region.id,
                    peer: Some(metapb::Peer {
                        id: self.target,
                        store_id: self.target,
                    }),
                    region_epoch: self.region.region_epoch,
                    ..Default::default()
                }),
                requests: vec![put.clone()],
                admin_request: None,
            };
            let mut hinted = false;
            let last = match self.call(request, deadline) {
                Some(resp) => match resp.region_error() {
                    None => return Ok(retries),
                    Some(e) => {
                        retries.count(e);
                        let hint = e.not_leader.as_ref().and_then(|n| n.leader);
                        match hint {
                            Some(leader) if leader.store_id != self.target => {
                                self.target = leader.store_id;
                                hinted = true;
                            }
                            _ => self.next_target(),
                        }
                        e.message.clone()
                    }
                },
                None => {
                    retries.no_answer += 1;
                    self.next_target();
                    "no answer".to_owned()
                }
            };
            if Instant::now() >= deadline {
                return Err(BenchError::PutTimedOut {
                    timeout,
                    retries: retries.total(),
                    last,
                });
            }
            if !hinted {
                // No leader known (an election may be running): do not spin.
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    fn next_target(&mut self) {
        let stores = self.region.peers.len() as u64;
        self.target = self.target % stores.max(1) + 1;
    }

    /// Sends one command to the target store; `None` if it is not running
    /// or did not answer by `deadline`.
    fn call(&self, request: RaftCmdRequest, deadline: Instant) -> Option<CmdResponse> {
        let router = self
            .routers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&self.target)
            .cloned()?;
        let (callback, rx) = Callback::new();
        if let Err(e) =
            router.send_command(self.region.id, Box::new(RaftCommand { request, callback }))
        {
            // Answered (and discarded) here: every callback is answered once.
            e.into_inner().callback.respond(CmdResponse::default());
            return None;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        self.rt
            // The timer must be made inside the runtime: in the async block.
            .block_on(async { tokio::time::timeout(left, rx).await })
            .ok()
            .and_then(|r| r.ok())
    }
}
