//! Splitting a region (TinyKV Project 3B): the leader measures, asks the
//! scheduler for ids, proposes `Split`; every replica applies it and creates
//! the new region's peer on its store.
//!
//! Steps:
//! 1. Check (leader, every `split_region_check_tick_interval` ticks, unless
//!    fewer than `region_split_size / 8` bytes were written since the last
//!    check): the split checker (`worker/split_check.rs`) measures the
//!    region off the hot path and answers `SplitCheckResult`; the peer keeps
//!    the size for its heartbeats.
//! 2. Ask: with a split key for the region's current epoch, the leader asks
//!    the scheduler (`SchedulerReporter::ask_split`), which answers
//!    `SplitIds` (a new region id and one peer id per member).
//! 3. Propose: the leader proposes the `Split` admin command itself (clients
//!    may not: `command.rs`), with the epoch the ids were asked for.
//! 4. Apply (every replica, the same decision everywhere): the epoch must
//!    match, the split key lie strictly inside the region and the ids count
//!    equal the members; otherwise an error answer and nothing changes.
//!    The old region keeps `[start, split_key)`, the new one gets
//!    `[split_key, end)`, the same members' stores with the new ids, and
//!    both `version + 1`. Both region states, and the new region's initial
//!    apply and raft state, go into the apply batch, with the apply state.
//! 5. Install (`on_split_applied`): the peer takes its new range; under the
//!    store-meta lock it records both ranges and creates the new region's
//!    peer, or hands the split-born state to an uninitialized peer of the
//!    new region already running here (`PeerMsg::SplitInit`), or leaves an
//!    initialized one the store created from the persisted state meanwhile.
//!    A leader's new peer campaigns at once; both regions heartbeat.
//!
//! Invariant: a new region's state is written only where this store holds
//! no record of that region; a tombstone of an earlier peer of it means the
//! region moved on without this store, and reviving it would be wrong.

use std::sync::Arc;

use kvproto::metapb;
use kvproto::raft_cmdpb::{
    AdminCmdType, AdminRequest, AdminResponse, RaftCmdRequest, RaftCmdResponse, RaftRequestHeader,
    SplitRequest, SplitResponse,
};
use kvproto::raft_serverpb::{PeerState, RaftApplyState, RaftLocalState, RegionLocalState};
use prost::Message as _;
use router::{CmdResponse, PeerMsg, SplitCheckResult, SplitIds};
use slog::{debug, info, warn};
use storage::{CF_DEFAULT, CF_RAFT, Engine, WriteBatch, keys};

use crate::context::StoreContext;
use crate::errors::{Error, Result};
use crate::fsm::store::spawn_peer;
use crate::operation::apply::{ApplyBatch, ExecResult, error_response, header};
use crate::operation::command::check_key_in_region;
use crate::operation::session::SessionTable;
use crate::peer::Peer;
use crate::peer_storage::{init_apply_state, split_raft_state, write_region_state};
use crate::store_meta::StoreMeta;
use crate::worker::split_check::SplitCheckTask;

/// Fails unless `split_key` may cut `region`: strictly after its start key
/// and before its end key, so both halves hold keys.
pub fn check_split_key(split_key: &[u8], region: &metapb::Region) -> Result<()> {
    if split_key.is_empty() || split_key == region.start_key.as_slice() {
        return Err(Error::InvalidRequest(format!(
            "split key {} is the start of region {}",
            split_key.escape_ascii(),
            region.id
        )));
    }
    check_key_in_region(split_key, region)
}

/// The two halves of `region` split as `split` says (step 4 of the module
/// doc): the region keeping its id, then the new one.
pub fn split_region(
    region: &metapb::Region,
    split: &SplitRequest,
) -> Result<(metapb::Region, metapb::Region)> {
    check_split_key(&split.split_key, region)?;
    if split.new_peer_ids.len() != region.peers.len() {
        return Err(Error::InvalidRequest(format!(
            "split of region {} names {} new peer ids for {} peers",
            region.id,
            split.new_peer_ids.len(),
            region.peers.len()
        )));
    }
    if split.new_region_id == 0
        || split.new_region_id == region.id
        || split.new_peer_ids.contains(&0)
    {
        return Err(Error::InvalidRequest(format!(
            "split of region {} with invalid ids: region {}, peers {:?}",
            region.id, split.new_region_id, split.new_peer_ids
        )));
    }
    let mut epoch = region.region_epoch.unwrap_or_default();
    epoch.version += 1;
    let mut derived = region.clone();
    derived.end_key = split.split_key.clone();
    derived.region_epoch = Some(epoch);
    let new_region = metapb::Region {
        id: split.new_region_id,
        start_key: split.split_key.clone(),
        end_key: region.end_key.clone(),
        region_epoch: Some(epoch),
        peers: region
            .peers
            .iter()
            .zip(&split.new_peer_ids)
            .map(|(p, &id)| metapb::Peer {
                id,
                store_id: p.store_id,
            })
            .collect(),
    };
    Ok((derived, new_region))
}

impl Peer {
    /// Step 1: schedules a split check if this peer leads and enough was
    /// written since the last one.
    pub(crate) fn on_split_region_check_tick(&mut self, ctx: &StoreContext) {
        if !self.is_leader() {
            return;
        }
        if self.approximate_size.is_some() && self.size_diff_hint < ctx.cfg.region_split_size / 8 {
            return;
        }
        ctx.split_checker.schedule(SplitCheckTask {
            region: self.region().clone(),
        });
        self.size_diff_hint = 0;
    }

    /// Step 2: keeps the measured size and asks for ids if the checker
    /// found a split key. Both only if the range is still the one measured
    /// (same `version`; a membership change since does not matter: the
    /// split is asked for with the current epoch).
    pub(crate) fn on_split_check_result(&mut self, ctx: &StoreContext, result: SplitCheckResult) {
        let current = self.region().region_epoch.unwrap_or_default();
        if current.version != result.epoch.version {
            debug!(self.logger, "split check of an earlier range dropped"; "checked" => ?result.epoch);
            return;
        }
        self.approximate_size = Some(result.approximate_size);
        self.approximate_keys = Some(result.approximate_keys);
        let Some(split_key) = result.split_key else {
            return;
        };
        if !self.is_leader() {
            return;
        }
        if let Err(e) = check_split_key(&split_key, self.region()) {
            warn!(self.logger, "split checker found an unusable key"; "err" => %e);
            return;
        }
        info!(self.logger, "asking to split"; "split_key" => %split_key.escape_ascii(),
            "size" => result.approximate_size);
        ctx.scheduler
            .ask_split(self.region().clone(), split_key, self.meta);
    }

    /// Step 3: proposes the split the scheduler gave ids for, if this peer
    /// still leads the region at the epoch they were asked for.
    pub(crate) fn on_split_ids(&mut self, ids: SplitIds) {
        if !self.is_leader() {
            debug!(self.logger, "split ids dropped: not leader");
            return;
        }
        if self.region().region_epoch != Some(ids.epoch) {
            debug!(self.logger, "split ids of an earlier epoch dropped"; "asked" => ?ids.epoch);
            return;
        }
        let split = SplitRequest {
            split_key: ids.split_key,
            new_region_id: ids.new_region_id,
            new_peer_ids: ids.new_peer_ids,
        };
        // The checks apply makes, made before the entry takes a log slot.
        if let Err(e) = split_region(self.region(), &split) {
            warn!(self.logger, "split not proposed"; "err" => %e);
            return;
        }
        let request = RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: self.region_id,
                peer: Some(self.meta),
                region_epoch: Some(ids.epoch),
                ..Default::default()
            }),
            requests: Vec::new(),
            admin_request: Some(AdminRequest {
                cmd_type: AdminCmdType::Split as i32,
                split: Some(split),
                ..Default::default()
            }),
        };
        // No callback: nobody waits; the split shows in the region.
        match self.raft_group.propose(request.encode_to_vec()) {
            Ok(()) => info!(self.logger, "split proposed"; "new_region_id" => ids.new_region_id,
                "index" => self.raft_group.raft().raft_log().last_index()),
            Err(e) => debug!(self.logger, "split proposal dropped"; "err" => %e),
        }
    }

    /// Step 4: applies a `Split` whose epoch matched (checked by the caller).
    pub(crate) fn apply_split(
        &self,
        ctx: &StoreContext,
        batch: &mut ApplyBatch,
        req: &RaftCmdRequest,
        term: u64,
    ) -> Result<CmdResponse> {
        let Some(split) = req.admin_request.as_ref().and_then(|a| a.split.as_ref()) else {
            return Ok(error_response(
                &Error::InvalidRequest("Split without body".into()),
                term,
            ));
        };
        let (derived, new_region) = match split_region(&batch.region, split) {
            Ok(halves) => halves,
            Err(e) => {
                warn!(self.logger, "refused a split"; "err" => %e);
                return Ok(error_response(&e, term));
            }
        };
        let created = write_split_states(
            &ctx.engine,
            &mut batch.wb,
            &derived,
            &new_region,
            &self.sessions,
        )?;
        if !created {
            info!(self.logger, "split: the new region has a record on this store; no peer created";
                "new_region_id" => new_region.id);
        }
        info!(self.logger, "split applied"; "new_region_id" => new_region.id,
            "split_key" => %split.split_key.escape_ascii(),
            "epoch" => ?derived.region_epoch);
        batch.region = derived.clone();
        batch.results.push(ExecResult::SplitRegion {
            derived: derived.clone(),
            new_region: created.then(|| new_region.clone()),
        });
        Ok(CmdResponse {
            response: RaftCmdResponse {
                header: Some(header(term)),
                admin_response: Some(AdminResponse {
                    cmd_type: AdminCmdType::Split as i32,
                    split: Some(SplitResponse {
                        regions: vec![derived, new_region],
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
            snapshot: None,
        })
    }

    /// An `EpochNotMatch` at apply also names the regions a split in this
    /// batch, or an earlier one still adjacent, made: the client learns
    /// where its keys went.
    pub(crate) fn with_split_siblings(
        &self,
        ctx: &StoreContext,
        batch: &ApplyBatch,
        e: Error,
    ) -> Error {
        let split_off = batch.results.iter().filter_map(|result| match result {
            ExecResult::SplitRegion {
                new_region: Some(r),
                ..
            } => Some(r.clone()),
            _ => None,
        });
        let sibling = ctx.store_meta().right_sibling(&batch.region);
        add_regions(e, split_off.chain(sibling))
    }

    /// Step 5: installs a split applied (and written) on this replica.
    pub(crate) fn on_split_applied(
        &mut self,
        ctx: &Arc<StoreContext>,
        derived: metapb::Region,
        new_region: Option<metapb::Region>,
    ) {
        let was_leader = self.is_leader();
        self.raft_group.store_mut().set_region(derived.clone());
        // Measured for the old range: the next tick measures again.
        self.approximate_size = None;
        self.approximate_keys = None;
        {
            let mut meta = ctx.store_meta();
            meta.set_region(&derived);
            if let Some(new_region) = new_region {
                create_split_peer(ctx, &mut meta, new_region, was_leader, &self.logger);
            }
        }
        if was_leader {
            self.heartbeat_scheduler(ctx);
        }
    }
}

/// `e` naming `more` regions too, if it is an `EpochNotMatch` (each once).
pub(crate) fn add_regions(e: Error, more: impl IntoIterator<Item = metapb::Region>) -> Error {
    let Error::EpochNotMatch {
        message,
        mut regions,
    } = e
    else {
        return e;
    };
    for region in more {
        if !regions.iter().any(|known| known.id == region.id) {
            regions.push(region);
        }
    }
    Error::EpochNotMatch { message, regions }
}

/// Adds to `wb` (the apply batch, which carries the apply state too) the
/// `derived` region's state and the new region's `Normal` state with its
/// initial apply and raft state, the latter unless this store has a record
/// of the new region already (see the module's invariant). Returns whether
/// the new region's states were added.
pub(crate) fn write_split_states(
    engine: &Engine,
    wb: &mut WriteBatch,
    derived: &metapb::Region,
    new_region: &metapb::Region,
    sessions: &SessionTable,
) -> Result<bool> {
    write_region_state(wb, derived, PeerState::Normal)?;
    let region_id = new_region.id;
    if engine
        .get_msg_cf::<RegionLocalState>(CF_DEFAULT, &keys::region_state_key(region_id))?
        .is_some()
    {
        return Ok(false);
    }
    // An uninitialized peer of the new region may have voted here already.
    let existing = engine
        .get_msg_cf::<RaftLocalState>(CF_RAFT, &keys::raft_state_key(region_id))?
        .and_then(|s| s.hard_state);
    write_region_state(wb, new_region, PeerState::Normal)?;
    // Both halves start with the parent's sessions: a client's next write
    // may go to either, and must be deduplicated there.
    wb.put_msg_cf(
        CF_DEFAULT,
        &keys::apply_state_key(region_id),
        &RaftApplyState {
            session_clock_ms: sessions.clock_ms(),
            ..init_apply_state()
        },
    )?;
    sessions.write_all(wb, region_id)?;
    wb.put_msg_cf(
        CF_RAFT,
        &keys::raft_state_key(region_id),
        &split_raft_state(existing),
    )?;
    Ok(true)
}

/// Creates the peer of `region` (just split off, its state written) on this
/// store, with the store-meta lock held (`meta`): the store actor creates
/// peers under the same lock, so exactly one peer of the region runs.
fn create_split_peer(
    ctx: &Arc<StoreContext>,
    meta: &mut StoreMeta,
    region: metapb::Region,
    campaign: bool,
    logger: &slog::Logger,
) {
    let region_id = region.id;
    let Some(peer) = region
        .peers
        .iter()
        .find(|p| p.store_id == ctx.store_id)
        .copied()
    else {
        warn!(logger, "split region has no peer on this store"; "new_region_id" => region_id);
        return;
    };
    if meta.contains(region_id) {
        // The store created it from the state the split wrote, for a
        // message that came first.
        info!(logger, "split peer runs already"; "new_region_id" => region_id);
        return;
    }
    meta.set_region(&region);
    if ctx.router.has_region(region_id) {
        info!(logger, "split initializes the waiting peer"; "new_region_id" => region_id);
        let msg = PeerMsg::SplitInit {
            region: Box::new(region),
            campaign,
        };
        if let Err(e) = ctx.router.send(region_id, msg) {
            // It stopped meanwhile: the store recreates it from the state
            // the split wrote if it failed (registering the range again);
            // a destroyed one stays destroyed.
            meta.remove(region_id);
            warn!(logger, "split could not reach the waiting peer"; "new_region_id" => region_id,
                "err" => %e);
        }
        return;
    }
    match spawn_peer(ctx, meta, region, peer, campaign) {
        Ok(()) => info!(logger, "split peer created"; "new_region_id" => region_id,
            "peer_id" => peer.id, "campaign" => campaign),
        Err(e) => {
            meta.remove(region_id);
            warn!(logger, "cannot create the split peer"; "new_region_id" => region_id, "err" => %e);
        }
    }
}

impl Peer {
    /// `PeerMsg::SplitInit` for this uninitialized peer: the split-born peer
    /// that replaces it, built from the persisted state (which keeps this
    /// peer's vote: `PeerStorage::new`). `None` if this peer is initialized
    /// or a newer incarnation than the split's peer (it keeps waiting for
    /// its snapshot then).
    pub(crate) fn split_init(
        &self,
        ctx: &StoreContext,
        region: metapb::Region,
        campaign: bool,
    ) -> Result<Option<Peer>> {
        if self.raft_group.store().is_initialized() || region.id != self.region_id {
            return Ok(None);
        }
        let Some(meta) = region
            .peers
            .iter()
            .find(|p| p.store_id == ctx.store_id)
            .copied()
        else {
            return Ok(None);
        };
        if meta.id < self.meta.id {
            info!(self.logger, "split peer is older than this one; waiting for a snapshot";
                "split_peer_id" => meta.id);
            return Ok(None);
        }
        let mut peer = Peer::new(
            &ctx.cfg,
            ctx.engine.clone(),
            region,
            meta,
            ctx.snapshot_source(self.region_id),
            &ctx.logger,
        )?;
        peer.campaign_on_start = campaign;
        Ok(Some(peer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(id: u64, store_id: u64) -> metapb::Peer {
        metapb::Peer { id, store_id }
    }

    fn region() -> metapb::Region {
        metapb::Region {
            id: 1,
            start_key: b"b".to_vec(),
            end_key: b"y".to_vec(),
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 3,
                version: 2,
            }),
            peers: vec![peer(1, 1), peer(2, 2), peer(3, 3)],
        }
    }

    fn split(key: &[u8], new_region_id: u64, ids: &[u64]) -> SplitRequest {
        SplitRequest {
            split_key: key.to_vec(),
            new_region_id,
            new_peer_ids: ids.to_vec(),
        }
    }

    #[test]
    fn a_split_makes_two_adjacent_regions_one_version_up() {
        let (derived, new) = split_region(&region(), &split(b"m", 10, &[11, 12, 13])).expect("ok");
        assert_eq!(
            (derived.id, &derived.start_key[..], &derived.end_key[..]),
            (1, &b"b"[..], &b"m"[..])
        );
        assert_eq!(
            (new.id, &new.start_key[..], &new.end_key[..]),
            (10, &b"m"[..], &b"y"[..])
        );
        let epoch = metapb::RegionEpoch {
            conf_ver: 3,
            version: 3,
        };
        assert_eq!(derived.region_epoch, Some(epoch));
        assert_eq!(new.region_epoch, Some(epoch));
        assert_eq!(derived.peers, region().peers);
        // The same stores, the new ids in order.
        assert_eq!(new.peers, vec![peer(11, 1), peer(12, 2), peer(13, 3)]);
    }

    #[test]
    fn a_split_key_outside_or_at_the_edges_is_refused() {
        let ids = [11, 12, 13];
        for key in [&b"b"[..], b"a", b"y", b"z", b""] {
            assert!(
                split_region(&region(), &split(key, 10, &ids)).is_err(),
                "key {:?}",
                key.escape_ascii().to_string()
            );
        }
        assert!(split_region(&region(), &split(b"ba", 10, &ids)).is_ok());
    }

    /// Apply checks a split's epoch (both parts) before anything else, as
    /// the leader did when proposing: a split proposed before another one
    /// (or a membership change) applied is refused.
    #[test]
    fn a_split_of_another_epoch_is_refused() {
        let request = |conf_ver, version| RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: 1,
                region_epoch: Some(metapb::RegionEpoch { conf_ver, version }),
                ..Default::default()
            }),
            requests: Vec::new(),
            admin_request: Some(AdminRequest {
                cmd_type: AdminCmdType::Split as i32,
                split: Some(split(b"m", 10, &[11, 12, 13])),
                ..Default::default()
            }),
        };
        use crate::operation::command::check_region_epoch;
        assert!(check_region_epoch(&request(3, 2), &region()).is_ok());
        assert!(matches!(
            check_region_epoch(&request(3, 1), &region()),
            Err(Error::EpochNotMatch { .. })
        ));
        assert!(matches!(
            check_region_epoch(&request(2, 2), &region()),
            Err(Error::EpochNotMatch { .. })
        ));
    }

    #[test]
    fn the_new_ids_must_fit_the_members() {
        assert!(split_region(&region(), &split(b"m", 10, &[11, 12])).is_err());
        assert!(split_region(&region(), &split(b"m", 10, &[11, 12, 13, 14])).is_err());
        assert!(split_region(&region(), &split(b"m", 0, &[11, 12, 13])).is_err());
        assert!(split_region(&region(), &split(b"m", 1, &[11, 12, 13])).is_err());
        assert!(split_region(&region(), &split(b"m", 10, &[11, 0, 13])).is_err());
    }

    fn read<M: prost::Message + Default>(engine: &Engine, cf: &str, key: &[u8]) -> Option<M> {
        engine.get_msg_cf(cf, key).expect("read")
    }

    /// Both regions' states and the new region's initial raft and apply
    /// state go into the one batch: nothing reaches the engine before it
    /// is written, everything after. A vote an uninitialized peer of the
    /// new region persisted here survives.
    #[test]
    fn the_split_states_go_into_the_apply_batch() {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = Engine::open(dir.path()).expect("open engine");
        let mut wb = engine.write_batch();
        let voted = RaftLocalState {
            hard_state: Some(kvproto::eraftpb::HardState {
                term: 9,
                vote: 12,
                commit: 0,
            }),
            last_index: 0,
            last_term: 0,
        };
        wb.put_msg_cf(CF_RAFT, &keys::raft_state_key(10), &voted)
            .expect("put");
        engine.write(wb, true).expect("write");

        let (derived, new) = split_region(&region(), &split(b"m", 10, &[11, 12, 13])).expect("ok");
        let mut wb = engine.write_batch();
        assert!(
            write_split_states(&engine, &mut wb, &derived, &new, &SessionTable::default())
                .expect("states")
        );
        let state = |id| read::<RegionLocalState>(&engine, CF_DEFAULT, &keys::region_state_key(id));
        assert!(
            state(1).is_none() && state(10).is_none(),
            "written before the batch"
        );
        engine.write(wb, true).expect("write");

        let left = state(1).expect("derived state");
        assert_eq!(
            (left.state(), left.region),
            (PeerState::Normal, Some(derived))
        );
        let right = state(10).expect("new state");
        assert_eq!(
            (right.state(), right.region),
            (PeerState::Normal, Some(new.clone()))
        );
        let apply: kvproto::raft_serverpb::RaftApplyState =
            read(&engine, CF_DEFAULT, &keys::apply_state_key(10)).expect("apply state");
        assert_eq!(apply, init_apply_state());
        let raft: RaftLocalState =
            read(&engine, CF_RAFT, &keys::raft_state_key(10)).expect("raft state");
        assert_eq!(raft.last_index, storage::keys::RAFT_INIT_LOG_INDEX);
        let hs = raft.hard_state.expect("hard state");
        assert_eq!((hs.term, hs.vote, hs.commit), (9, 12, 5));

        // A region this store has a record of (here: the one just written)
        // is not written again; the derived region still is.
        let mut wb = engine.write_batch();
        assert!(
            !write_split_states(&engine, &mut wb, &region(), &new, &SessionTable::default())
                .expect("states")
        );
        engine.write(wb, true).expect("write");
        assert_eq!(state(1).and_then(|s| s.region), Some(region()));
    }

    #[test]
    fn the_split_raft_state_keeps_a_newer_vote() {
        let fresh = split_raft_state(None);
        assert_eq!(fresh.last_index, storage::keys::RAFT_INIT_LOG_INDEX);
        let voted = kvproto::eraftpb::HardState {
            term: 7,
            vote: 4,
            commit: 0,
        };
        let kept = split_raft_state(Some(voted))
            .hard_state
            .expect("hard state");
        assert_eq!((kept.term, kept.vote, kept.commit), (7, 4, 5));
        let older = kvproto::eraftpb::HardState {
            term: 2,
            vote: 4,
            commit: 0,
        };
        let init = split_raft_state(Some(older))
            .hard_state
            .expect("hard state");
        assert_eq!((init.term, init.vote), (5, 0));
    }
}
