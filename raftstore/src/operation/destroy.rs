//! Destroying a peer: it was removed from its region, or a newer incarnation
//! replaces it. Its raft state and log go, its region state becomes
//! `Tombstone` (so a restart does not revive it), its data range is cleared,
//! and every waiting command is answered `RegionNotFound`.

use kvproto::raft_serverpb::PeerState;
use slog::info;
use storage::DATA_CFS;
use storage::keys;

use crate::context::StoreContext;
use crate::errors::{Error, Result};
use crate::peer::Peer;
use crate::peer_storage::write_region_state;

impl Peer {
    /// Removes this peer's state from the store and answers its proposals.
    pub async fn destroy(&mut self, ctx: &StoreContext) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let region_id = self.region_id;
        let region = self.region().clone();
        let mut wb = ctx.engine.write_batch();
        self.raft_group.store().clear_meta(&mut wb)?;
        if self.raft_group.store().is_initialized() {
            let start = keys::data_key(&region.start_key);
            let end = keys::data_end_key(&region.end_key);
            for cf in DATA_CFS {
                wb.delete_range_cf(cf, &start, &end)?;
            }
        }
        write_region_state(&mut wb, &region, PeerState::Tombstone)?;
        let written = ctx.writer.write(wb, true).await;
        ctx.store_meta().remove(region_id);
        self.fail_proposals(&Error::RegionNotFound(region_id));
        info!(self.logger, "peer destroyed");
        written
    }

    /// Answers every waiting proposal with `error`.
    pub fn fail_proposals(&mut self, error: &Error) {
        self.fail_pending_writes(error);
        self.fail_reads(error);
        for callback in self.proposals.take_all() {
            callback.respond_error(error.to_region_error());
        }
    }
}
