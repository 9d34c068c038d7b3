//! Fault injection for tests: network partitions between real store
//! processes, switched on by `tinykv-server --enable-fault-injection` (for
//! tests; never in production) and driven over gRPC (`debugpb.Debug`).
//!
//! What it owns:
//! - [`PartitionFilter`]: the set of stores this store is cut off from,
//!   shared by both directions of its raft traffic;
//! - the sending side lives in `super` (`TransportOptions::partition`): the
//!   gRPC transport drops every raft message and refuses every snapshot
//!   addressed to a blocked store, drops what was queued for it before the
//!   partition began, and stops a snapshot transfer under way before its
//!   next chunk;
//! - the receiving side lives in `super::service`: a raft message (on `Raft`
//!   or `BatchRaft`) whose sender is a blocked store is dropped before it
//!   reaches the router, and a snapshot stream from a blocked store is
//!   refused, or cut at its next chunk if the partition begins mid-transfer;
//! - [`FaultService`]: the `Debug` service, `SetPartition` replacing the set.
//!
//! The drop rule, both ways: a message from store X to store Y crosses only
//! if X does not block Y (X's sending side) and Y does not block X (Y's
//! receiving side). A partition set on one store alone thus already cuts
//! both directions of its links; a test partitioning store A from B and C
//! sets `[B, C]` on A and `[A]` on B and C, so each side drops what it
//! would send and what it receives.
//!
//! Dropping is silent loss, as on a cut network: raft retries. A dropped
//! send answers `TransportError::Dropped` (what a test filter answers, by
//! the `Transport` contract), so no `Unreachable` report and no snapshot
//! outcome is owed for it; a transfer cut under way reports `Failure`.
//! What HTTP/2 already carries when a partition begins is dropped by the
//! receiving side, if the partition is set there too.
//!
//! Invariant: the filter never holds 0 or the store's own id
//! ([`FaultService`] refuses both); a store never partitions itself.

use std::collections::BTreeSet;
use std::sync::{Arc, PoisonError, RwLock};

use kvproto::debugpb::debug_server::{Debug, DebugServer};
use kvproto::debugpb::{SetPartitionRequest, SetPartitionResponse};
use kvproto::raft_serverpb::RaftMessage;
use slog::{Logger, info};
use tonic::{Request, Response, Status};

/// The stores this store is cut off from. Cheap to clone; clones share the
/// set. Empty (nothing blocked) when created.
#[derive(Debug, Clone, Default)]
pub struct PartitionFilter {
    /// A `RwLock`: every raft message reads it, only `SetPartition` writes,
    /// and a write replaces the whole set at once.
    blocked: Arc<RwLock<BTreeSet<u64>>>,
}

impl PartitionFilter {
    /// A filter that blocks nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the blocked set with `store_ids`; returns the previous set,
    /// in ascending order.
    pub fn set(&self, store_ids: impl IntoIterator<Item = u64>) -> Vec<u64> {
        let new: BTreeSet<u64> = store_ids.into_iter().collect();
        let old = std::mem::replace(
            &mut *self.blocked.write().unwrap_or_else(PoisonError::into_inner),
            new,
        );
        old.into_iter().collect()
    }

    /// The blocked stores, in ascending order.
    pub fn blocked(&self) -> Vec<u64> {
        self.read().iter().copied().collect()
    }

    /// Whether traffic to or from `store_id` is dropped.
    pub fn blocks(&self, store_id: u64) -> bool {
        self.read().contains(&store_id)
    }

    /// Whether `msg`, received from another store, is dropped: its sender's
    /// store is blocked.
    pub fn blocks_incoming(&self, msg: &RaftMessage) -> bool {
        msg.from_peer.is_some_and(|p| self.blocks(p.store_id))
    }

    /// Whether `msg`, about to be sent, is dropped: its target's store is
    /// blocked.
    pub fn blocks_outgoing(&self, msg: &RaftMessage) -> bool {
        msg.to_peer.is_some_and(|p| self.blocks(p.store_id))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeSet<u64>> {
        self.blocked.read().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The `debugpb.Debug` service of one store: `SetPartition` over its
/// [`PartitionFilter`].
#[derive(Debug, Clone)]
pub struct FaultService {
    store_id: u64,
    filter: PartitionFilter,
    logger: Logger,
}

impl FaultService {
    /// The service of store `store_id`, setting `filter`.
    pub fn new(store_id: u64, filter: PartitionFilter, logger: Logger) -> Self {
        FaultService {
            store_id,
            filter,
            logger,
        }
    }

    /// The tonic service.
    pub fn into_grpc(self) -> DebugServer<Self> {
        DebugServer::new(self)
    }
}

#[tonic::async_trait]
impl Debug for FaultService {
    async fn set_partition(
        &self,
        request: Request<SetPartitionRequest>,
    ) -> Result<Response<SetPartitionResponse>, Status> {
        let ids = request.into_inner().blocked_store_ids;
        if let Some(bad) = ids.iter().find(|&&id| id == 0 || id == self.store_id) {
            return Err(Status::invalid_argument(format!(
                "cannot block store {bad}: blocked_store_ids must name other stores \
                 (this is store {}, and 0 is no store)",
                self.store_id
            )));
        }
        let was = self.filter.set(ids);
        let now = self.filter.blocked();
        if was != now {
            info!(self.logger, "fault injection: partition changed";
                "blocked_stores" => ?now, "was" => ?was);
        }
        Ok(Response::new(SetPartitionResponse {
            store_id: self.store_id,
            blocked_store_ids: now,
        }))
    }
}
