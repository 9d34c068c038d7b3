//! The inter-store raft transport over gRPC (`tinykvpb.TinyKv`'s
//! `BatchRaft`, `Raft` and `Snapshot` streams): [`GrpcTransport`] sends,
//! [`service`] receives, and [`resolver`] finds a store's address through
//! the scheduler; [`faults`] drops traffic to and from chosen stores when
//! fault injection is on (tests only).
//!
//! Sending raft messages, per target store:
//!
//! ```text
//!   send ──try_send──▶ bounded queue ──▶ store worker ──▶ one stream per connection:
//!                       (full: Dropped)    │   resolve (cached) → connect → probe BatchRaft
//!                                          │     served: `BatchRaft`, many messages per gRPC message
//!                                          │     UNIMPLEMENTED (TinyKV): `Raft`, one per gRPC message
//!                                          │   stream broke: re-resolve, reconnect, probe again
//!                                          │   connect failed: Unreachable, back off
//! ```
//!
//! Batching (`BatchRaft`, this project's protocol extension): the worker
//! forms a batch when the stream can take one, from everything queued for
//! the store at that moment, up to `max_batch_messages` messages and
//! `max_batch_bytes` bytes; it never waits for more. The heartbeats that
//! many regions queue in one tick thus leave as one gRPC message, and under
//! load batches grow while the stream is busy. Both bounds matter: the
//! count bounds one batch's work at the receiver, the bytes keep a batch of
//! large appends under the receivers' gRPC message limit (a message alone
//! over the budget goes in a batch of its own, as it would on `Raft`).
//!
//! Invariants:
//! - `send` and `send_snapshot` never block and never await: they only push
//!   into a bounded queue or spawn a task.
//! - one worker, hence at most one raft stream, per target store; messages
//!   leave in the order they were queued, as they come (never one RPC per
//!   message), in batches on `BatchRaft` or one by one on `Raft`.
//! - each connection starts with an empty `BatchRaft` call (the probe,
//!   answered within `connect_timeout`): `Done` means the store serves
//!   batches, `UNIMPLEMENTED` that it does not (a TinyKV store), and the
//!   worker uses `Raft` for the life of that connection; any other answer
//!   is a broken connection. The next connection probes again. No raft
//!   message is ever sent on a call that may turn out unserved, so the
//!   fallback itself loses nothing: messages queued during the probe wait
//!   in the queue and leave on whichever stream follows.
//! - a store whose address cannot be resolved or connected to is marked
//!   unreachable: `send` answers `Unreachable` (the peer reports it to raft)
//!   and the messages queued meanwhile are dropped, until a later connection
//!   succeeds. Reconnects back off exponentially between
//!   `reconnect_backoff_min` and `reconnect_backoff_max`.
//! - the address of a store is cached by its worker and forgotten after any
//!   connection or stream failure (a failed probe included), so a store
//!   that moved is found again.
//! - a snapshot transfer runs on its own task and its own `Snapshot` stream,
//!   at most `max_concurrent_snapshot_sends` at a time; every transfer that
//!   `send_snapshot` accepted reports exactly one `PeerMsg::SnapshotStatus`
//!   (`Finish` once the receiver answered `Done`, `Failure` otherwise) to
//!   the sending peer through this store's router.
//! - with a partition filter (`TransportOptions::partition`, fault
//!   injection for tests), nothing reaches a blocked store: `send` and
//!   `send_snapshot` answer `Dropped`, the worker drops what was queued
//!   before the partition began (and does not connect for it), and a
//!   snapshot transfer under way stops before its next chunk (`Failure`).
//!
//! Messages lost in a stream that breaks are not reported: raft tolerates
//! loss, and the next `send` to a store that stays down answers
//! `Unreachable`. Exactly what a break loses: the message the worker holds
//! (the one that woke it, or the one left over from a batch's byte budget),
//! what waits in the buffer between the worker and HTTP/2 (one batch on
//! `BatchRaft`, up to 64 messages on `Raft`), and what HTTP/2 had taken but
//! the receiver had not handed to its router; a failed probe loses the one
//! message held. What is still in the queue is kept for the next
//! connection (and dropped if that connection fails, as above).

pub mod faults;
pub mod resolver;
pub mod service;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use kvproto::raft_serverpb::{BatchRaftMessage, Done, RaftMessage, SnapshotChunk};
use kvproto::tinykvpb::tiny_kv_client::TinyKvClient;
use prost::Message as _;
use raftstore::snap::ChunkEncoder;
use raftstore::{SnapManager, Transport, TransportError};
use router::{PeerMsg, Router, SnapshotStatus};
use slog::{Logger, debug, info, warn};
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};

pub use self::faults::{FaultService, PartitionFilter};
pub use self::resolver::SchedulerResolver;
pub use self::service::{
    SnapshotReceiveLimit, handle_batch_raft_stream, handle_raft_stream, handle_snapshot_stream,
};

/// The knobs of the transport, with defaults for a small cluster.
#[derive(Debug, Clone)]
pub struct TransportOptions {
    /// Raft messages queued per target store before `send` drops them.
    pub queue_capacity: usize,
    /// Snapshot transfers sent at once; later ones wait their turn.
    pub max_concurrent_snapshot_sends: usize,
    /// Snapshot streams received at once; more are refused
    /// (`RESOURCE_EXHAUSTED`) and the sender retries through raft.
    pub max_concurrent_snapshot_receives: usize,
    /// The first wait before reconnecting to a store.
    pub reconnect_backoff_min: Duration,
    /// The longest wait between reconnects (the doubling stops there).
    pub reconnect_backoff_max: Duration,
    /// How long one connection attempt may take; also how long a new
    /// connection waits for the answer to its `BatchRaft` probe.
    pub connect_timeout: Duration,
    /// The most raft messages one `BatchRaft` message carries. Bounds the
    /// work one batch costs the receiver before it reads the next, and what
    /// one broken batch loses.
    pub max_batch_messages: usize,
    /// The most bytes (encoded entries) one `BatchRaft` message carries; a
    /// single message over it goes alone. It must stay below the receivers'
    /// gRPC message limit (`ServiceOptions::max_message_size`, 16 MiB by
    /// default), which refuses a larger batch whole, breaking the stream.
    pub max_batch_bytes: usize,
    /// With fault injection on (tests only): the stores nothing is sent to
    /// while they are blocked (`faults`). Default: none.
    pub partition: Option<PartitionFilter>,
}

impl Default for TransportOptions {
    fn default() -> Self {
        TransportOptions {
            queue_capacity: 4096,
            max_concurrent_snapshot_sends: 4,
            max_concurrent_snapshot_receives: 4,
            reconnect_backoff_min: Duration::from_millis(100),
            reconnect_backoff_max: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            // A heartbeat is ~30 bytes: 256 regions' heartbeats are ~8 KiB,
            // one HTTP/2 frame's worth, per tick.
            max_batch_messages: 256,
            // Well under the receivers' default limit, so a batch of
            // appends full of entries is never refused for its size.
            max_batch_bytes: 1024 * 1024,
            partition: None,
        }
    }
}

/// Why a store's address is not known.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolveError {
    /// No such store (yet).
    #[error("store {0} not found")]
    NotFound(u64),
    /// The lookup itself failed (e.g. the scheduler is not reachable).
    #[error("resolving store {0}: {1}")]
    Failed(u64, String),
}

/// The future a [`StoreResolver`] answers with.
pub type ResolveFuture<'a> =
    Pin<Box<dyn Future<Output = Result<String, ResolveError>> + Send + 'a>>;

/// Store id → the address (`host:port`) its `TinyKv` service listens on.
pub trait StoreResolver: Send + Sync + 'static {
    /// Looks up the address of `store_id`. Called again after a failure
    /// with the previous address, so it should not cache failures itself.
    fn resolve(&self, store_id: u64) -> ResolveFuture<'_>;
}

/// A resolver over a map the owner fills in (tests, static configs).
#[derive(Debug, Default)]
pub struct StaticResolver {
    /// A `RwLock`: lookups read it, only `insert`/`remove` write, and every
    /// write is one map operation.
    addrs: RwLock<HashMap<u64, String>>,
}

impl StaticResolver {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the address of `store_id`.
    pub fn insert(&self, store_id: u64, addr: impl Into<String>) {
        self.addrs
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(store_id, addr.into());
    }

    /// Forgets `store_id`.
    pub fn remove(&self, store_id: u64) {
        self.addrs
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&store_id);
    }
}

impl StoreResolver for StaticResolver {
    fn resolve(&self, store_id: u64) -> ResolveFuture<'_> {
        let addr = self
            .addrs
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&store_id)
            .cloned();
        Box::pin(async move { addr.ok_or(ResolveError::NotFound(store_id)) })
    }
}

/// Why connecting to a store failed.
#[derive(Debug, thiserror::Error)]
enum ConnectError {
    #[error(transparent)]
    Resolve(#[from] ResolveError),
    #[error("bad address {addr:?}: {source}")]
    BadAddress {
        addr: String,
        source: tonic::transport::Error,
    },
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        source: tonic::transport::Error,
    },
}

/// The sending side of one target store's worker.
struct StoreConn {
    queue: mpsc::Sender<RaftMessage>,
    /// Set by the worker: true while the store cannot be connected to.
    unreachable: watch::Receiver<bool>,
    worker: tokio::task::AbortHandle,
}

struct Inner {
    resolver: Arc<dyn StoreResolver>,
    /// This store's router, where snapshot outcomes are reported.
    router: Router,
    /// This store's snapshot files, to send from.
    snap_mgr: SnapManager,
    opts: TransportOptions,
    runtime: Handle,
    /// One entry per target store ever sent to. A `Mutex`: `send` looks up
    /// and inserts as one step, so two callers never start two workers for
    /// one store; it is held for a map operation, never across an await.
    conns: Mutex<HashMap<u64, StoreConn>>,
    snapshot_sends: Arc<Semaphore>,
    logger: Logger,
}

impl Drop for Inner {
    fn drop(&mut self) {
        for conn in self
            .conns
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
        {
            conn.worker.abort();
        }
    }
}

/// A store's [`Transport`] over gRPC. Cheap to clone; clones share the
/// streams. Dropping the last clone stops every store worker (snapshot
/// transfers already started finish and report).
#[derive(Clone)]
pub struct GrpcTransport {
    inner: Arc<Inner>,
}

impl GrpcTransport {
    /// A transport that resolves stores through `resolver`, sends snapshots
    /// from `snap_mgr`, reports snapshot outcomes to `router`, and runs its
    /// tasks on `runtime`.
    pub fn new(
        resolver: Arc<dyn StoreResolver>,
        router: Router,
        snap_mgr: SnapManager,
        opts: TransportOptions,
        runtime: Handle,
        logger: Logger,
    ) -> GrpcTransport {
        let snapshot_sends = Arc::new(Semaphore::new(opts.max_concurrent_snapshot_sends.max(1)));
        GrpcTransport {
            inner: Arc::new(Inner {
                resolver,
                router,
                snap_mgr,
                opts,
                runtime,
                conns: Mutex::new(HashMap::new()),
                snapshot_sends,
                logger,
            }),
        }
    }

    fn start_worker(&self, store_id: u64) -> StoreConn {
        let inner = &self.inner;
        let (queue, rx) = mpsc::channel(inner.opts.queue_capacity.max(1));
        let (unreachable_tx, unreachable) = watch::channel(false);
        let worker = StoreWorker {
            store_id,
            resolver: Arc::clone(&inner.resolver),
            opts: inner.opts.clone(),
            queue: rx,
            unreachable: unreachable_tx,
            logger: inner.logger.new(slog::o!("to_store" => store_id)),
        };
        let handle = inner.runtime.spawn(worker.run());
        StoreConn {
            queue,
            unreachable,
            worker: handle.abort_handle(),
        }
    }
}

impl Transport for GrpcTransport {
    fn send(&self, msg: RaftMessage) -> Result<(), TransportError> {
        let store_id = msg.to_peer.map_or(0, |p| p.store_id);
        if store_id == 0 {
            return Err(TransportError::Unreachable(0));
        }
        self.inner.drop_if_blocked(&msg)?;
        let mut conns = self
            .inner
            .conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let conn = conns
            .entry(store_id)
            .or_insert_with(|| self.start_worker(store_id));
        if *conn.unreachable.borrow() {
            return Err(TransportError::Unreachable(store_id));
        }
        match conn.queue.try_send(msg) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(TransportError::Dropped),
            // The worker is gone (it panicked): start over next time.
            Err(mpsc::error::TrySendError::Closed(_)) => {
                conns.remove(&store_id);
                Err(TransportError::Unreachable(store_id))
            }
        }
    }

    fn send_snapshot(&self, msg: RaftMessage) -> Result<(), TransportError> {
        let store_id = msg.to_peer.map_or(0, |p| p.store_id);
        if store_id == 0 {
            return Err(TransportError::Unreachable(0));
        }
        // Refused before any chunk leaves; the peer lets raft probe again.
        self.inner.drop_if_blocked(&msg)?;
        let inner = Arc::clone(&self.inner);
        self.inner.runtime.spawn(async move {
            let region_id = msg.region_id;
            let to_peer_id = msg.to_peer.map_or(0, |p| p.id);
            let logger = inner.logger.new(slog::o!(
                "region_id" => region_id,
                "to_store" => store_id,
                "to_peer" => to_peer_id,
            ));
            let status = match inner.transfer_snapshot(store_id, msg).await {
                Ok(()) => {
                    info!(logger, "snapshot sent");
                    SnapshotStatus::Finish
                }
                Err(e) => {
                    warn!(logger, "snapshot transfer failed"; "err" => %e);
                    SnapshotStatus::Failure
                }
            };
            let _ = inner
                .router
                .send(region_id, PeerMsg::SnapshotStatus { to_peer_id, status });
        });
        Ok(())
    }
}

/// Why a snapshot transfer failed.
#[derive(Debug, thiserror::Error)]
enum SnapshotSendError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("reading the snapshot: {0}")]
    Encode(#[from] raftstore::Error),
    #[error("the receiver refused: {0}")]
    Rpc(#[from] tonic::Status),
    #[error("the transfer stopped: {0}")]
    Closed(&'static str),
}

impl Inner {
    /// `Dropped` if `msg` goes to a store the partition filter blocks.
    fn drop_if_blocked(&self, msg: &RaftMessage) -> Result<(), TransportError> {
        if self
            .opts
            .partition
            .as_ref()
            .is_some_and(|p| p.blocks_outgoing(msg))
        {
            debug!(self.logger, "raft message dropped: partitioned";
                "region_id" => msg.region_id,
                "to_store" => msg.to_peer.map_or(0, |p| p.store_id));
            return Err(TransportError::Dropped);
        }
        Ok(())
    }

    async fn transfer_snapshot(
        &self,
        store_id: u64,
        msg: RaftMessage,
    ) -> Result<(), SnapshotSendError> {
        let _permit = Arc::clone(&self.snapshot_sends)
            .acquire_owned()
            .await
            .map_err(|_| SnapshotSendError::Closed("the send limit was closed"))?;
        let channel = connect(self.resolver.as_ref(), store_id, &self.opts).await?;
        // The files are read on a blocking thread, a few chunks ahead of
        // the stream: memory stays bounded by the channel's capacity.
        let mut chunks = ChunkEncoder::new(&self.snap_mgr, msg)?;
        let (tx, rx) = mpsc::channel::<SnapshotChunk>(2);
        let partition = self.opts.partition.clone();
        // Ok(true): cut by a partition that began during the transfer.
        let reader = tokio::task::spawn_blocking(move || -> raftstore::Result<bool> {
            for chunk in chunks.by_ref() {
                if partition.as_ref().is_some_and(|p| p.blocks(store_id)) {
                    return Ok(true);
                }
                if tx.blocking_send(chunk?).is_err() {
                    // The RPC ended early; its status tells why.
                    break;
                }
            }
            Ok(false)
        });
        let answer = TinyKvClient::new(channel)
            .snapshot(ReceiverStream::new(rx))
            .await;
        // A read error or a cut ends the stream early; the receiver then
        // refuses it, but the read error or the cut is the cause worth
        // reporting.
        match reader.await {
            Ok(Ok(false)) => {}
            Ok(Ok(true)) => return Err(SnapshotSendError::Closed("cut by a partition")),
            Ok(Err(e)) => return Err(e.into()),
            Err(_) => return Err(SnapshotSendError::Closed("the snapshot reader panicked")),
        }
        answer?;
        Ok(())
    }
}

/// Resolves `store_id` and opens a channel to it.
async fn connect(
    resolver: &dyn StoreResolver,
    store_id: u64,
    opts: &TransportOptions,
) -> Result<Channel, ConnectError> {
    let addr = resolver.resolve(store_id).await?;
    connect_addr(&addr, opts).await
}

async fn connect_addr(addr: &str, opts: &TransportOptions) -> Result<Channel, ConnectError> {
    let uri = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    };
    Endpoint::from_shared(uri)
        .map_err(|source| ConnectError::BadAddress {
            addr: addr.to_string(),
            source,
        })?
        .connect_timeout(opts.connect_timeout)
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|source| ConnectError::Connect {
            addr: addr.to_string(),
            source,
        })
}

/// Owns the `BatchRaft` (or `Raft`) stream to one store; see the module doc.
struct StoreWorker {
    store_id: u64,
    resolver: Arc<dyn StoreResolver>,
    opts: TransportOptions,
    queue: mpsc::Receiver<RaftMessage>,
    /// Invariant: true exactly while the last connection attempt failed.
    unreachable: watch::Sender<bool>,
    logger: Logger,
}

/// How a stream ended.
enum StreamEnd {
    /// Every sender is gone: the transport was dropped.
    Shutdown,
    /// The connection or the RPC failed; reconnect.
    Broken(String),
}

impl StoreWorker {
    async fn run(mut self) {
        let mut backoff = self.opts.reconnect_backoff_min;
        let mut addr: Option<String> = None;
        loop {
            // Wait for traffic before connecting: a store nobody sends to
            // costs no connection.
            let Some(first) = self.queue.recv().await else {
                return;
            };
            if self.blocked() {
                self.drop_blocked(first);
                continue;
            }
            let channel = match self.open(&mut addr).await {
                Ok(channel) => channel,
                Err(e) => {
                    addr = None;
                    debug!(self.logger, "store unreachable"; "err" => %e, "retry_in" => ?backoff);
                    self.unreachable.send_replace(true);
                    // What was queued for a store we cannot reach is lost;
                    // raft resends.
                    drop(first);
                    while self.queue.try_recv().is_ok() {}
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(self.opts.reconnect_backoff_max);
                    // Let senders queue again: the next message tries the
                    // connection anew.
                    self.unreachable.send_replace(false);
                    continue;
                }
            };
            backoff = self.opts.reconnect_backoff_min;
            match self.stream(channel, first).await {
                StreamEnd::Shutdown => return,
                StreamEnd::Broken(why) => {
                    info!(self.logger, "raft stream broke, reconnecting"; "why" => why);
                    addr = None;
                }
            }
        }
    }

    /// Whether the partition filter blocks this worker's store: what it
    /// dequeues meanwhile is dropped.
    fn blocked(&self) -> bool {
        self.opts
            .partition
            .as_ref()
            .is_some_and(|p| p.blocks(self.store_id))
    }

    /// Drops `msg`, dequeued while [`StoreWorker::blocked`].
    fn drop_blocked(&self, msg: RaftMessage) {
        debug!(self.logger, "raft message dropped: partitioned"; "region_id" => msg.region_id);
    }

    /// The cached address, or a fresh one, connected.
    async fn open(&self, addr: &mut Option<String>) -> Result<Channel, ConnectError> {
        let target = match addr {
            Some(a) => a.clone(),
            None => {
                let a = self.resolver.resolve(self.store_id).await?;
                *addr = Some(a.clone());
                a
            }
        };
        connect_addr(&target, &self.opts).await
    }

    /// Runs one connection's stream, `BatchRaft` or, if the store does not
    /// serve it, `Raft`, until it breaks or the transport is dropped.
    async fn stream(&mut self, channel: Channel, first: RaftMessage) -> StreamEnd {
        match self.probe_batch_raft(channel.clone()).await {
            Ok(true) => self.batch_stream(channel, first).await,
            Ok(false) => {
                info!(
                    self.logger,
                    "store does not serve BatchRaft, sending Raft until it reconnects"
                );
                self.single_stream(channel, first).await
            }
            Err(why) => StreamEnd::Broken(why),
        }
    }

    /// Asks the store whether it serves `BatchRaft`, with an empty call:
    /// `Ok(false)` if it answers `UNIMPLEMENTED` (a TinyKV store). Nothing
    /// is sent on the probe, so a store that does not know the call loses
    /// nothing; what queues meanwhile waits in the queue.
    async fn probe_batch_raft(&self, channel: Channel) -> Result<bool, String> {
        let mut client = TinyKvClient::new(channel);
        let probe = client.batch_raft(tokio_stream::empty::<BatchRaftMessage>());
        match tokio::time::timeout(self.opts.connect_timeout, probe).await {
            Ok(Ok(_)) => Ok(true),
            Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => Ok(false),
            Ok(Err(status)) => Err(format!("BatchRaft probe: {status}")),
            Err(_) => Err(format!(
                "BatchRaft probe unanswered after {:?}",
                self.opts.connect_timeout
            )),
        }
    }

    /// Runs one `BatchRaft` stream until it breaks or the transport is
    /// dropped: each gRPC message carries what was queued when it was
    /// formed (see [`StoreWorker::fill_batch`]).
    async fn batch_stream(&mut self, channel: Channel, first: RaftMessage) -> StreamEnd {
        // Room for one batch ahead of the one HTTP/2 is sending: while the
        // stream is busy, messages wait in the queue and leave together in
        // the next batch. What this buffer holds when the stream breaks is
        // lost, like any in-flight message.
        let (tx, rx) = mpsc::channel::<BatchRaftMessage>(1);
        let mut client = TinyKvClient::new(channel);
        let call = client.batch_raft(ReceiverStream::new(rx));
        tokio::pin!(call);
        let mut next = Some(first);
        loop {
            let first = match next_message(&mut self.queue, &mut next, call.as_mut()).await {
                Ok(msg) => msg,
                Err(end) => return end,
            };
            if self.blocked() {
                self.drop_blocked(first);
                continue;
            }
            // The batch is formed once the stream can take it, so it holds
            // everything that queued while it could not.
            let permit = tokio::select! {
                biased;
                end = &mut call => return broken(end),
                permit = tx.reserve() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return StreamEnd::Broken("the request stream closed".into()),
                },
            };
            let (batch, rest) = self.fill_batch(first);
            next = rest;
            if self.blocked() {
                // The partition began while the batch waited for room.
                batch.msgs.into_iter().for_each(|m| self.drop_blocked(m));
                continue;
            }
            permit.send(batch);
        }
    }

    /// `first` and what is queued behind it, in order, up to
    /// `max_batch_messages` messages and `max_batch_bytes` bytes (`first`
    /// always goes, however large). Never waits: the message that did not
    /// fit the byte budget is handed back to start the next batch.
    fn fill_batch(&mut self, first: RaftMessage) -> (BatchRaftMessage, Option<RaftMessage>) {
        let mut bytes = batch_entry_len(&first);
        let mut msgs = vec![first];
        while msgs.len() < self.opts.max_batch_messages {
            let Ok(msg) = self.queue.try_recv() else {
                break;
            };
            let len = batch_entry_len(&msg);
            if bytes + len > self.opts.max_batch_bytes {
                return (batch(msgs), Some(msg));
            }
            bytes += len;
            msgs.push(msg);
        }
        (batch(msgs), None)
    }

    /// Runs one `Raft` stream, one gRPC message per raft message, until it
    /// breaks or the transport is dropped.
    async fn single_stream(&mut self, channel: Channel, first: RaftMessage) -> StreamEnd {
        // A small buffer between the queue and the HTTP/2 stream: what it
        // holds when the stream breaks is lost, like any in-flight message.
        let (tx, rx) = mpsc::channel::<RaftMessage>(64);
        let mut client = TinyKvClient::new(channel);
        let call = client.raft(ReceiverStream::new(rx));
        tokio::pin!(call);
        let mut next = Some(first);
        loop {
            let msg = match next_message(&mut self.queue, &mut next, call.as_mut()).await {
                Ok(msg) => msg,
                Err(end) => return end,
            };
            if self.blocked() {
                self.drop_blocked(msg);
                continue;
            }
            tokio::select! {
                biased;
                end = &mut call => return broken(end),
                sent = tx.send(msg) => {
                    if sent.is_err() {
                        return StreamEnd::Broken("the request stream closed".into());
                    }
                }
            }
        }
    }
}

/// The message to send next on a stream: the one held back in `next`, or
/// the next queued one; the stream's end if its call ends first (or the
/// transport was dropped).
async fn next_message<F>(
    queue: &mut mpsc::Receiver<RaftMessage>,
    next: &mut Option<RaftMessage>,
    call: Pin<&mut F>,
) -> Result<RaftMessage, StreamEnd>
where
    F: Future<Output = Result<tonic::Response<Done>, tonic::Status>>,
{
    if let Some(msg) = next.take() {
        return Ok(msg);
    }
    tokio::select! {
        biased;
        end = call => Err(broken(end)),
        msg = queue.recv() => msg.ok_or(StreamEnd::Shutdown),
    }
}

fn batch(msgs: Vec<RaftMessage>) -> BatchRaftMessage {
    BatchRaftMessage { msgs, malformed: 0 }
}

/// The bytes `msg` takes as one entry of a `BatchRaftMessage`: its key, its
/// length and itself.
fn batch_entry_len(msg: &RaftMessage) -> usize {
    let len = msg.encoded_len();
    1 + prost::length_delimiter_len(len) + len
}

fn broken(end: Result<tonic::Response<Done>, tonic::Status>) -> StreamEnd {
    StreamEnd::Broken(match end {
        Ok(_) => "the receiver ended the stream".into(),
        Err(status) => status.to_string(),
    })
}
