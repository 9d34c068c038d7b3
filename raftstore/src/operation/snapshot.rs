//! Snapshots on the peer's side.
//!
//! Receiving (follower):
//! 1. `check_snapshot_message`, before Raft sees a `MsgSnapshot`: the
//!    snapshot is of this region, not of an older membership, does not
//!    overlap another region of this store, and its files arrived here
//!    complete (the transport delivers the message only after that).
//! 2. Raft restores from it; the `Ready` carries it, and `PeerStorage`
//!    persists the new raft/apply state with the region `Applying` and, if
//!    the peer's range changes, its previous region (the redo record).
//! 3. `apply_snapshot`: the region worker replaces the data (`snap/apply.rs`
//!    clears the new and the recorded previous range, checks and ingests the
//!    files); then the peer takes the region's members and range, and
//!    answers the proposals the snapshot overtook. An uninitialized peer is
//!    initialized from here on.
//!
//! Sending (leader): `PeerStorage::snapshot` asks the region worker to
//! generate (`worker/region.rs`); `on_snapshot_generated` retries at once
//! the followers that wait for it; `operation/ready.rs` hands `MsgSnapshot`
//! to `Transport::send_snapshot`.
//!
//! This is one of four places with snapshot logic; `snapshot.rs` has the
//! map.

use kvproto::eraftpb::{Message, MessageType};
use slog::{debug, info, warn};

use crate::context::StoreContext;
use crate::errors::{Error, Result};
use crate::operation::session::SessionTable;
use crate::peer::Peer;
use crate::peer_storage::SnapshotInstall;
use crate::snap::{SnapKey, SnapKind};

impl Peer {
    /// Whether `msg`, a `MsgSnapshot` for this peer, may be stepped.
    pub(crate) fn check_snapshot_message(&self, ctx: &StoreContext, msg: &Message) -> bool {
        let Some(snapshot) = msg.snapshot.as_ref() else {
            return false;
        };
        let (key, data) = match SnapKey::from_snapshot(snapshot) {
            Ok(parsed) => parsed,
            Err(e) => {
                warn!(self.logger, "dropped an undecodable snapshot"; "err" => %e);
                return false;
            }
        };
        let region = data.region.unwrap_or_default();
        if region.id != self.region_id {
            warn!(self.logger, "dropped a snapshot of another region"; "snapshot_region" => region.id);
            return false;
        }
        let conf_ver = |r: &kvproto::metapb::Region| r.region_epoch.map_or(0, |e| e.conf_ver);
        if conf_ver(&region) < conf_ver(self.region()) {
            debug!(self.logger, "dropped a snapshot of an older membership"; "key" => %key);
            return false;
        }
        if let Some(other) = ctx.store_meta().overlapping(&region) {
            info!(self.logger, "dropped a snapshot overlapping another region";
                "key" => %key, "other_region" => other);
            return false;
        }
        if !ctx.snap_mgr.exists(SnapKind::Received, &key) {
            warn!(self.logger, "dropped a snapshot whose files did not arrive"; "key" => %key);
            return false;
        }
        true
    }

    /// Replaces the region's data with the snapshot whose state was just
    /// persisted, and takes its region. An error leaves the region
    /// `Applying`: the peer must stop, and the store finishes the apply
    /// when it starts again.
    pub(crate) async fn apply_snapshot(
        &mut self,
        ctx: &StoreContext,
        install: SnapshotInstall,
    ) -> Result<()> {
        let (key, _) = SnapKey::from_snapshot(&install.snapshot)?;
        let region = install.region;
        // The ranges to clear are read back from what `prepare_persist`
        // wrote, as a restart would, so both paths clear the same ones.
        ctx.region_worker.apply(key, region.clone()).await?;
        // The snapshot's sessions were persisted with its apply state.
        self.sessions = SessionTable::load(
            &ctx.engine,
            self.region_id,
            install.apply_state.session_clock_ms,
        )?;
        for p in &region.peers {
            self.peer_cache.insert(p.id, *p);
        }
        ctx.store_meta().set_region(&region);
        // Entries up to the snapshot will not be applied here: their
        // proposals (from a former leadership) are overtaken.
        for callback in self.proposals.take_covered_by_snapshot(key.index) {
            callback.respond_error(Error::StaleCommand.to_region_error());
        }
        info!(self.logger, "snapshot applied"; "index" => key.index, "term" => key.term,
            "peers" => ?region.peers.iter().map(|p| p.id).collect::<Vec<_>>());
        Ok(())
    }

    /// A snapshot of this region is ready: followers waiting for one are
    /// retried now rather than at their next heartbeat response.
    pub(crate) fn on_snapshot_generated(&mut self) {
        if !self.is_leader() {
            return;
        }
        let truncated = self.raft_group.store().truncated_index();
        let waiting: Vec<u64> = self
            .raft_group
            .raft()
            .prs()
            .iter()
            .filter(|(id, pr)| **id != self.meta.id && pr.next_idx() <= truncated)
            .map(|(id, _)| *id)
            .collect();
        let term = self.term();
        for id in waiting {
            // The leader's reaction to a heartbeat response is exactly
            // "probe again and send what the follower lacks".
            let _ = self.raft_group.step(Message {
                msg_type: MessageType::MsgHeartbeatResponse as i32,
                from: id,
                to: self.meta.id,
                term,
                ..Default::default()
            });
        }
    }
}
