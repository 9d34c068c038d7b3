//! Applying committed entries: executing each command against the KV column
//! families, advancing the apply state in the same batch, and answering the
//! commands' callbacks.
//!
//! Steps for one `Ready`'s committed entries:
//! 1. Each entry is decoded and executed into one write batch; the apply
//!    state's `applied_index` follows it into the same batch, so data and
//!    apply state can never disagree after a crash.
//! 2. Reads (`Get`, `Snap`) see every earlier entry: the batch is written
//!    before a read executes.
//! 3. The batch is written (not synced: the entries are durable in the raft
//!    log already, and a crash re-applies them from there).
//! 4. Results that change the peer (membership, log truncation, a split)
//!    are handed back as `ExecResult`s; callbacks are answered last.
//!
//! A command whose epoch or keys no longer fit the region at apply time
//! (the region changed after it was proposed) fails as a whole, writing nothing.
//! A command of a client session goes through the region's session table
//! first (`operation/session.rs`): a retry of an applied write is answered
//! from it and writes nothing but the session's activity.

use kvproto::eraftpb::{ConfChange, ConfChangeType, Entry, EntryType};
use kvproto::metapb;
use kvproto::raft_cmdpb::{
    AdminCmdType, AdminResponse, AppendResponse, ChangePeerResponse, ClientSession, CmdType,
    CompactLogResponse, DeleteResponse, OpenSessionResponse, PutResponse, RaftCmdRequest,
    RaftCmdResponse, RaftResponseHeader, Response, SessionClock,
};
use kvproto::raft_serverpb::{PeerState, RaftApplyState, RaftTruncatedState};
use prost::Message as _;
use router::{CmdResponse, ReadSnapshot};
use slog::{error, info};
use storage::keys;
use storage::{CF_DEFAULT, WriteBatch};

use crate::context::StoreContext;
use crate::errors::{Error, Result};
use crate::operation::command::{
    DataRequest, check_command_kind, check_region_epoch, parse_requests,
};
use std::sync::Arc;

use crate::operation::log_gc::check_compact_log;
use crate::operation::read::read_into;
use crate::operation::ready::RaftOp;
use crate::operation::session::{SessionVerdict, check_session_command};
use crate::peer::Peer;
use crate::peer_storage::write_region_state;

/// A change to the peer that applying an entry decided.
#[derive(Debug)]
pub enum ExecResult {
    /// The membership changed.
    ChangePeer {
        /// The change, to hand to Raft.
        cc: ConfChange,
        /// The region after it.
        region: metapb::Region,
    },
    /// The log up to `truncated_index` may be deleted.
    CompactLog {
        /// The new truncated index.
        truncated_index: u64,
    },
    /// The region split (`operation/split.rs`).
    SplitRegion {
        /// This peer's region after the split: the left half.
        derived: metapb::Region,
        /// The new region, the right half; `None` when this store keeps a
        /// record of that region already (a tombstone of an earlier peer),
        /// so no peer of it is created here.
        new_region: Option<metapb::Region>,
    },
}

/// The state one round of applying works on.
pub(crate) struct ApplyBatch {
    pub(crate) wb: WriteBatch,
    pub(crate) apply_state: RaftApplyState,
    pub(crate) region: metapb::Region,
    pub(crate) results: Vec<ExecResult>,
}

pub(crate) fn header(term: u64) -> RaftResponseHeader {
    RaftResponseHeader {
        current_term: term,
        ..Default::default()
    }
}

pub(crate) fn error_response(e: &Error, term: u64) -> CmdResponse {
    let mut resp = CmdResponse::from_error(e.to_region_error());
    if let Some(h) = resp.response.header.as_mut() {
        h.current_term = term;
    }
    resp
}

impl Peer {
    /// Applies `entries` (committed, in order) and answers their proposals.
    /// `first`, if given, is written ahead of them in the same batch (the
    /// unsynced raft state that committed them), or alone if there are none.
    pub async fn apply_committed(
        &mut self,
        ctx: &Arc<StoreContext>,
        entries: Vec<Entry>,
        first: Option<WriteBatch>,
    ) -> Result<()> {
        if entries.is_empty() {
            if let Some(wb) = first {
                ctx.writer.write(wb, false).await?;
            }
            return Ok(());
        }
        let mut batch = ApplyBatch {
            wb: first.unwrap_or_else(|| ctx.engine.write_batch()),
            apply_state: *self.raft_group.store().apply_state(),
            region: self.region().clone(),
            results: Vec::new(),
        };
        let mut answers = Vec::new();
        for entry in entries {
            self.approximate_log_size += entry.data.len() as u64;
            let term = entry.term;
            let index = entry.index;
            let response = match entry.entry_type() {
                EntryType::EntryNormal if entry.data.is_empty() => None,
                EntryType::EntryNormal => Some(self.apply_normal(ctx, &mut batch, &entry).await?),
                EntryType::EntryConfChange => Some(self.apply_conf_change(&mut batch, &entry)?),
            };
            batch.apply_state.applied_index = index;
            let matched = self.proposals.take_applied(index, term);
            for stale in matched.stale {
                stale.respond(error_response(&Error::StaleCommand, term));
            }
            if let Some(callback) = matched.proposal {
                let response = response.unwrap_or_else(|| CmdResponse {
                    response: RaftCmdResponse {
                        header: Some(header(term)),
                        ..Default::default()
                    },
                    snapshot: None,
                });
                answers.push((callback, response));
            }
        }
        let region_id = self.region_id;
        batch.wb.put_msg_cf(
            CF_DEFAULT,
            &keys::apply_state_key(region_id),
            &batch.apply_state,
        )?;
        ctx.writer.write(batch.wb, false).await?;
        self.raft_group
            .store_mut()
            .set_apply_state(batch.apply_state);
        for result in batch.results {
            self.on_exec_result(ctx, result);
        }
        for (callback, response) in answers {
            callback.respond(response);
        }
        Ok(())
    }

    async fn apply_normal(
        &mut self,
        ctx: &StoreContext,
        batch: &mut ApplyBatch,
        entry: &Entry,
    ) -> Result<CmdResponse> {
        let req = match RaftCmdRequest::decode(entry.data.as_slice()) {
            Ok(req) => req,
            Err(e) => {
                // Only our own proposals enter the log, so this is corruption.
                error!(self.logger, "cannot decode a committed command"; "index" => entry.index, "err" => %e);
                return Ok(error_response(
                    &Error::InvalidRequest(format!("undecodable command at index {}", entry.index)),
                    entry.term,
                ));
            }
        };
        if let Err(e) =
            check_command_kind(&req).and_then(|()| check_region_epoch(&req, &batch.region))
        {
            let e = self.with_split_siblings(ctx, batch, e);
            return Ok(error_response(&e, entry.term));
        }
        if let Some(admin) = &req.admin_request {
            return Ok(match admin.cmd_type() {
                AdminCmdType::CompactLog => self.apply_compact_log(batch, &req, entry.term),
                AdminCmdType::Split => self.apply_split(ctx, batch, &req, entry.term)?,
                other => error_response(
                    &Error::InvalidRequest(format!(
                        "admin command {other:?} cannot be applied as a normal entry"
                    )),
                    entry.term,
                ),
            });
        }
        // Checked before proposing, checked again: an entry's content must
        // never make apply panic, and every replica decides the same.
        let requests = match check_session_command(&req)
            .and_then(|()| parse_requests(&req, &batch.region, None))
        {
            Ok(requests) => requests,
            Err(e) => return Ok(error_response(&e, entry.term)),
        };
        let cmd_header = req.header.unwrap_or_default();
        let (responses, snapshot) = match cmd_header.session {
            Some(session) => {
                let stamp = cmd_header.session_clock.unwrap_or_default();
                match self
                    .apply_session_command(ctx, batch, &req, requests, session, &stamp)
                    .await?
                {
                    Ok(responses) => (responses, None),
                    Err(e) => return Ok(error_response(&e, entry.term)),
                }
            }
            None => self.execute_requests(ctx, batch, &req, requests).await?,
        };
        Ok(CmdResponse {
            response: RaftCmdResponse {
                header: Some(header(entry.term)),
                responses,
                admin_response: None,
            },
            snapshot,
        })
    }

    /// Applies a command of a client session (`operation/session.rs`):
    /// moves the session clock, then opens the session, or applies the
    /// write once, or answers a retry from the cache. `Err` inside: the
    /// answer is that error, and nothing but the clock's effects is written.
    async fn apply_session_command(
        &mut self,
        ctx: &StoreContext,
        batch: &mut ApplyBatch,
        req: &RaftCmdRequest,
        requests: Vec<DataRequest<'_>>,
        session: ClientSession,
        stamp: &SessionClock,
    ) -> Result<std::result::Result<Vec<Response>, Error>> {
        let region_id = self.region_id;
        self.sessions.advance(stamp, &mut batch.wb, region_id)?;
        batch.apply_state.session_clock_ms = self.sessions.clock_ms();
        let cmd_type = req
            .requests
            .first()
            .map_or(CmdType::Invalid, |r| r.cmd_type());
        if cmd_type == CmdType::OpenSession {
            self.sessions.open(
                session.client_id,
                stamp.max_sessions,
                &mut batch.wb,
                region_id,
            )?;
            return Ok(Ok(vec![Response {
                cmd_type: CmdType::OpenSession as i32,
                open_session: Some(OpenSessionResponse {}),
                ..Default::default()
            }]));
        }
        let verdict = self.sessions.check(
            session.client_id,
            session.sequence,
            cmd_type,
            &mut batch.wb,
            region_id,
        )?;
        match verdict {
            Err(e) => Ok(Err(e)),
            Ok(SessionVerdict::Duplicate(answer)) => Ok(Ok(vec![answer])),
            Ok(SessionVerdict::Apply) => {
                let (responses, _) = self.execute_requests(ctx, batch, req, requests).await?;
                if let Some(answer) = responses.first() {
                    self.sessions.record(
                        session.client_id,
                        session.sequence,
                        answer,
                        &mut batch.wb,
                        region_id,
                    )?;
                }
                Ok(Ok(responses))
            }
        }
    }

    /// Executes checked data requests into the batch, in order.
    async fn execute_requests(
        &mut self,
        ctx: &StoreContext,
        batch: &mut ApplyBatch,
        req: &RaftCmdRequest,
        requests: Vec<DataRequest<'_>>,
    ) -> Result<(Vec<Response>, Option<ReadSnapshot>)> {
        let mut responses = Vec::with_capacity(requests.len());
        let mut snapshot: Option<ReadSnapshot> = None;
        for (r, request) in req.requests.iter().zip(requests) {
            let mut resp = Response {
                cmd_type: r.cmd_type,
                ..Default::default()
            };
            match request {
                DataRequest::Put { cf, key, value } => {
                    batch.wb.put_cf(cf, &keys::data_key(key), value)?;
                    self.size_diff_hint += (key.len() + value.len()) as u64;
                    resp.put = Some(PutResponse {});
                }
                DataRequest::Delete { cf, key } => {
                    batch.wb.delete_cf(cf, &keys::data_key(key))?;
                    self.size_diff_hint += key.len() as u64;
                    resp.delete = Some(DeleteResponse {});
                }
                DataRequest::Append { cf, key, value } => {
                    // Read-modify-write: the current value must include
                    // every write before it in this batch.
                    self.flush(ctx, batch).await?;
                    let data_key = keys::data_key(key);
                    let mut current = ctx.engine.get_cf(cf, &data_key)?.unwrap_or_default();
                    current.extend_from_slice(value);
                    batch.wb.put_cf(cf, &data_key, &current)?;
                    self.size_diff_hint += (key.len() + value.len()) as u64;
                    resp.append = Some(AppendResponse {});
                }
                // Refused without a session and handled before this with
                // one (`apply_session_command`); answered, never executed.
                DataRequest::OpenSession => resp.open_session = Some(OpenSessionResponse {}),
                read @ (DataRequest::Get { .. } | DataRequest::Snap) => {
                    // A read sees every write before it in this batch.
                    self.flush(ctx, batch).await?;
                    read_into(ctx, &batch.region, read, &mut resp, &mut snapshot)?;
                }
            }
            responses.push(resp);
        }
        Ok((responses, snapshot))
    }

    /// Writes what the batch holds so far, so a read sees it.
    ///
    /// The apply state goes with it, still naming the previous entry: after
    /// a crash the entry being applied is applied again, and writes are
    /// idempotent, so data and apply state never disagree.
    async fn flush(&self, ctx: &StoreContext, batch: &mut ApplyBatch) -> Result<()> {
        if batch.wb.is_empty() {
            return Ok(());
        }
        batch.wb.put_msg_cf(
            CF_DEFAULT,
            &keys::apply_state_key(self.region_id),
            &batch.apply_state,
        )?;
        let wb = std::mem::replace(&mut batch.wb, ctx.engine.write_batch());
        ctx.writer.write(wb, false).await
    }

    /// Moves the truncated state, in the apply batch, if the command is
    /// sound (`log_gc::check_compact_log`). One that compacts nothing new
    /// (a snapshot overtook it) is a successful no-op; an unsound one is an
    /// error answer and changes nothing, the same on every replica: they
    /// hold the same entries up to the applied index (Log Matching).
    fn apply_compact_log(
        &self,
        batch: &mut ApplyBatch,
        req: &RaftCmdRequest,
        term: u64,
    ) -> CmdResponse {
        let Some(compact) = req.admin_request.as_ref().and_then(|a| a.compact_log) else {
            return error_response(
                &Error::InvalidRequest("CompactLog without body".into()),
                term,
            );
        };
        let truncated = batch.apply_state.truncated_state.unwrap_or_default();
        if compact.compact_index > truncated.index {
            let log = self.raft_group.raft().raft_log();
            if let Err(e) = check_compact_log(
                compact.compact_index,
                compact.compact_term,
                batch.apply_state.applied_index,
                |index| log.term(index).ok(),
            ) {
                error!(self.logger, "refused an unsound log compaction"; "err" => %e);
                return error_response(&e, term);
            }
            batch.apply_state.truncated_state = Some(RaftTruncatedState {
                index: compact.compact_index,
                term: compact.compact_term,
            });
            batch.results.push(ExecResult::CompactLog {
                truncated_index: compact.compact_index,
            });
        }
        CmdResponse {
            response: RaftCmdResponse {
                header: Some(header(term)),
                admin_response: Some(AdminResponse {
                    cmd_type: AdminCmdType::CompactLog as i32,
                    compact_log: Some(CompactLogResponse {}),
                    ..Default::default()
                }),
                ..Default::default()
            },
            snapshot: None,
        }
    }

    fn apply_conf_change(&mut self, batch: &mut ApplyBatch, entry: &Entry) -> Result<CmdResponse> {
        let cc = match ConfChange::decode(entry.data.as_slice()) {
            Ok(cc) => cc,
            Err(e) => {
                error!(self.logger, "cannot decode a committed conf change"; "index" => entry.index, "err" => %e);
                return Ok(error_response(
                    &Error::InvalidRequest(format!(
                        "undecodable conf change at index {}",
                        entry.index
                    )),
                    entry.term,
                ));
            }
        };
        // Refused as a whole, on every replica alike, when its command does
        // not describe it; then it is not applied to Raft either and the
        // membership stays as it is.
        let req = RaftCmdRequest::decode(cc.context.as_slice()).unwrap_or_default();
        if let Err(e) = check_region_epoch(&req, &batch.region) {
            return Ok(error_response(&e, entry.term));
        }
        let Some(change) = req
            .admin_request
            .as_ref()
            .and_then(|a| a.change_peer.as_ref())
            .filter(|c| c.change_type == cc.change_type)
        else {
            return Ok(error_response(
                &Error::InvalidRequest("conf change without a matching ChangePeer".into()),
                entry.term,
            ));
        };
        let Some(peer) = change.peer.filter(|p| p.id == cc.node_id && p.id != 0) else {
            return Ok(error_response(
                &Error::InvalidRequest("conf change without a matching peer".into()),
                entry.term,
            ));
        };
        let region = &mut batch.region;
        let position = region.peers.iter().position(|p| p.id == peer.id);
        let changed = match (cc.change_type(), position) {
            (ConfChangeType::AddNode, None) => {
                region.peers.push(peer);
                true
            }
            (ConfChangeType::RemoveNode, Some(i)) => {
                region.peers.remove(i);
                true
            }
            _ => false,
        };
        if changed {
            let epoch = region.region_epoch.get_or_insert_with(Default::default);
            epoch.conf_ver += 1;
            write_region_state(&mut batch.wb, region, PeerState::Normal)?;
        }
        info!(self.logger, "apply conf change"; "change" => ?cc.change_type(), "peer" => peer.id,
            "changed" => changed, "index" => entry.index,
            "peers" => ?region.peers.iter().map(|p| p.id).collect::<Vec<_>>());
        batch.results.push(ExecResult::ChangePeer {
            cc,
            region: region.clone(),
        });
        Ok(CmdResponse {
            response: RaftCmdResponse {
                header: Some(header(entry.term)),
                admin_response: Some(AdminResponse {
                    cmd_type: AdminCmdType::ChangePeer as i32,
                    change_peer: Some(ChangePeerResponse {
                        region: Some(batch.region.clone()),
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            },
            snapshot: None,
        })
    }

    /// Installs what applying decided.
    fn on_exec_result(&mut self, ctx: &Arc<StoreContext>, result: ExecResult) {
        match result {
            ExecResult::ChangePeer { cc, region } => {
                for p in &region.peers {
                    self.peer_cache.insert(p.id, *p);
                }
                ctx.store_meta().set_region(&region);
                self.raft_group.store_mut().set_region(region);
                // Into the node after `advance()` (operation/ready.rs).
                self.raft_ops.push(RaftOp::ApplyConfChange(cc.clone()));
                if cc.change_type() == ConfChangeType::RemoveNode && cc.node_id == self.meta.id {
                    info!(self.logger, "removed from the region; will destroy");
                    self.pending_remove = true;
                }
                self.heartbeat_scheduler(ctx);
            }
            ExecResult::CompactLog { truncated_index } => {
                self.schedule_log_gc(ctx, truncated_index);
            }
            ExecResult::SplitRegion {
                derived,
                new_region,
            } => self.on_split_applied(ctx, derived, new_region),
        }
    }
}
