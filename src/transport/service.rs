//! The receiving side of the `Raft`, `BatchRaft` and `Snapshot` streams, as
//! plain async functions a `TinyKv` service delegates to.
//!
//! Invariants:
//! - nothing a peer store sends can panic here: a message that does not
//!   decode ends its stream with tonic's error status, a raft message the
//!   router cannot take (full mailbox, stopped store) is dropped, as raft
//!   tolerates.
//! - a `BatchRaft` message is its entries, in order, each handed to the
//!   router exactly as one message of a `Raft` stream is (the same
//!   function); an entry that does not decode is skipped (logged, counted by
//!   `BatchRaftMessage::malformed`) and the others are delivered. A batch
//!   whose framing is broken ends the stream, as on `Raft`. The size limit
//!   is the service's, per gRPC message, for both calls.
//! - a snapshot message reaches the router only after every byte of its
//!   files arrived, was checked and is durable (`SnapshotReceiver::finish`);
//!   a stream that is truncated, corrupt or broken answers an error status,
//!   and the receiver, dropped, removes what it wrote, so no half snapshot
//!   can be applied.
//! - with fault injection on (a [`PartitionFilter`]), a raft message whose
//!   sender's store is blocked is dropped before the router, on both raft
//!   streams alike; a snapshot stream from a blocked store is refused
//!   (`UNAVAILABLE`) at its first chunk, or at the first chunk after the
//!   partition begins, and what it wrote is removed.
//! - at most `SnapshotReceiveLimit`'s count of snapshot streams are
//!   received at once; more are refused with `RESOURCE_EXHAUSTED` (the
//!   sender reports `Failure` and raft sends the snapshot again later),
//!   so disk and memory use stays bounded however many stores send.

use std::sync::Arc;

use kvproto::raft_serverpb::{BatchRaftMessage, Done, RaftMessage, SnapshotChunk};
use raftstore::SnapManager;
use raftstore::snap::SnapshotReceiver;
use router::Router;
use slog::{Logger, debug, info, warn};
use tokio::sync::Semaphore;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

use super::faults::PartitionFilter;

/// The bound on snapshot streams received at once. Cheap to clone; clones
/// share the bound.
#[derive(Debug, Clone)]
pub struct SnapshotReceiveLimit {
    permits: Arc<Semaphore>,
}

impl SnapshotReceiveLimit {
    /// Allows `max` concurrent receives (at least one).
    pub fn new(max: usize) -> Self {
        SnapshotReceiveLimit {
            permits: Arc::new(Semaphore::new(max.max(1))),
        }
    }
}

/// Feeds every raft message of a `Raft` stream to `router` (but those
/// `partition` blocks), until the sender ends the stream (`Done`) or it
/// fails (its status).
pub async fn handle_raft_stream<S>(
    router: &Router,
    partition: Option<&PartitionFilter>,
    stream: S,
    logger: &Logger,
) -> Result<Done, Status>
where
    S: Stream<Item = Result<RaftMessage, Status>>,
{
    tokio::pin!(stream);
    while let Some(msg) = stream.next().await {
        deliver(router, partition, msg?, logger);
    }
    Ok(Done {})
}

/// Feeds every raft message of every batch of a `BatchRaft` stream to
/// `router` (but those `partition` blocks), in order, until the sender ends
/// the stream (`Done`) or it fails (its status). An empty stream is how a
/// sender asks whether this call is served: it is answered `Done` at once.
pub async fn handle_batch_raft_stream<S>(
    router: &Router,
    partition: Option<&PartitionFilter>,
    stream: S,
    logger: &Logger,
) -> Result<Done, Status>
where
    S: Stream<Item = Result<BatchRaftMessage, Status>>,
{
    tokio::pin!(stream);
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        if batch.malformed > 0 {
            // The sender is broken or hostile; its other messages are
            // still raft traffic worth having.
            warn!(logger, "raft batch entries skipped, not decodable";
                "skipped" => batch.malformed, "delivered" => batch.msgs.len());
        }
        for msg in batch.msgs {
            deliver(router, partition, msg, logger);
        }
    }
    Ok(Done {})
}

/// Hands one received raft message to `router`, unless `partition` blocks
/// its sender: the one path of both raft streams.
fn deliver(
    router: &Router,
    partition: Option<&PartitionFilter>,
    msg: RaftMessage,
    logger: &Logger,
) {
    let region_id = msg.region_id;
    if partition.is_some_and(|p| p.blocks_incoming(&msg)) {
        debug!(logger, "raft message dropped: partitioned"; "region_id" => region_id,
            "from_store" => msg.from_peer.map_or(0, |p| p.store_id));
        return;
    }
    if let Err(e) = router.send_raft_message(Box::new(msg)) {
        // Dropped, as a lost message: raft retries.
        debug!(logger, "raft message dropped"; "region_id" => region_id, "err" => %e);
    }
}

/// Receives one snapshot from a `Snapshot` stream into `snap_mgr` and, once
/// it is complete, delivers its message to `router`. A snapshot from a
/// store `partition` blocks is refused, also when the partition begins
/// while it is received.
pub async fn handle_snapshot_stream<S>(
    snap_mgr: &SnapManager,
    router: &Router,
    limit: &SnapshotReceiveLimit,
    partition: Option<&PartitionFilter>,
    stream: S,
    logger: &Logger,
) -> Result<Done, Status>
where
    S: Stream<Item = Result<SnapshotChunk, Status>>,
{
    let _permit = Arc::clone(&limit.permits)
        .try_acquire_owned()
        .map_err(|_| Status::resource_exhausted("too many snapshots being received"))?;
    tokio::pin!(stream);
    let first = stream
        .next()
        .await
        .ok_or_else(|| Status::invalid_argument("empty snapshot stream"))??;
    let from_store = first
        .message
        .as_ref()
        .and_then(|m| m.from_peer)
        .map_or(0, |p| p.store_id);
    let partitioned = || {
        partition
            .filter(|p| p.blocks(from_store))
            .map(|_| Status::unavailable(format!("partitioned from store {from_store}")))
    };
    if let Some(refused) = partitioned() {
        debug!(logger, "snapshot refused: partitioned"; "from_store" => from_store);
        return Err(refused);
    }
    let mgr = snap_mgr.clone();
    let mut receiver = blocking(move || SnapshotReceiver::new(&mgr, first)).await?;
    let key = receiver.key();
    while let Some(chunk) = stream.next().await {
        // A broken stream drops `receiver`, which removes its files.
        let chunk = chunk?;
        if let Some(cut) = partitioned() {
            debug!(logger, "snapshot cut: partitioned"; "from_store" => from_store, "snap" => %key);
            return Err(cut);
        }
        receiver = blocking(move || receiver.feed(chunk).map(|()| receiver)).await?;
    }
    let msg = blocking(move || receiver.finish()).await?;
    let region_id = msg.region_id;
    router.send_raft_message(Box::new(msg)).map_err(|e| {
        warn!(logger, "received snapshot not delivered"; "region_id" => region_id, "snap" => %key, "err" => %e);
        Status::unavailable(format!("snapshot {key} received but not delivered: {e}"))
    })?;
    info!(logger, "snapshot received"; "region_id" => region_id, "snap" => %key);
    Ok(Done {})
}

/// Runs snapshot file work off the async threads; its error becomes the
/// stream's answer.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> raftstore::Result<T> + Send + 'static,
) -> Result<T, Status> {
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(match e {
            raftstore::Error::InvalidSnapshot(_) => Status::invalid_argument(e.to_string()),
            _ => Status::internal(e.to_string()),
        }),
        Err(_) => Err(Status::internal("snapshot receive task panicked")),
    }
}
