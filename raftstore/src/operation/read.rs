//! Linearizable reads that write nothing to the log: ReadIndex (Raft
//! thesis §6.4).
//!
//! A command made only of `Get`/`Snap` requests is a read. The leader does
//! not propose it; it asks its raft node for a read index, and every read
//! dispatched in the same actor batch shares that one request (one
//! heartbeat round confirms them all). The raft node answers with a
//! `ReadState` once a quorum confirmed this peer still leads at that
//! commit index; the reads then wait until this peer has applied up to the
//! index, and run against the engine.
//!
//! Under the leader's lease (`operation/lease.rs`, renewed by each
//! confirmed round) a read is answered at once instead, if this peer has
//! applied everything it knows committed and no read waits before it.
//!
//! Why that is linearizable: the commit index taken while leadership was
//! confirmed covers every write acknowledged before the read arrived (an
//! acknowledged write was committed), and the raft node hands out a read
//! index only once this leader committed an entry of its own term, so its
//! commit index is not behind an earlier leader's.
//!
//! Invariants:
//! - Batches wait in the order they were issued; their indexes never
//!   decrease, so they run in that order too.
//! - Each read is answered exactly once: with its result, with `NotLeader`
//!   when this peer stops leading (the raft node forgets its pending read
//!   requests then) or when no quorum confirmed it within
//!   [`READ_TIMEOUT_ELECTIONS`] election timeouts (a leader cut off from
//!   its quorum is as good as gone: the client should try the others, not
//!   wait here), or with the peer's stop error.
//! - A read is checked against the region again when it runs: a split or a
//!   membership change may have come in between.

use std::collections::VecDeque;
use std::time::Instant;

use kvproto::metapb;
use kvproto::raft_cmdpb::{
    CmdType, GetResponse, RaftCmdRequest, RaftCmdResponse, Response, SnapResponse,
};
use raft::ReadState;
use router::{Callback, CmdResponse, ReadSnapshot};
use slog::debug;
use storage::keys;

use crate::context::StoreContext;
use crate::errors::{Error, Result};
use crate::operation::apply::{error_response, header};
use crate::operation::command::{DataRequest, check_region_epoch, parse_requests};
use crate::operation::lease::lease_length;
use crate::peer::Peer;

/// Election timeouts a read waits for its confirmation before it is
/// refused as `NotLeader` (the client tries the other peers).
pub const READ_TIMEOUT_ELECTIONS: u64 = 2;

/// Reads sharing one read-index request.
#[derive(Debug)]
struct ReadBatch {
    /// The request's id, sent as its context.
    id: u64,
    /// The confirmed read index, once the raft node gave it.
    index: Option<u64>,
    /// The peer's tick count when the request went out.
    issued_at_tick: u64,
    /// When the request went out, and in which term: a confirmation
    /// renews the lease from then (`operation/lease.rs`).
    issued_at: Instant,
    term: u64,
    reads: Vec<(RaftCmdRequest, Callback)>,
}

/// The reads of one peer, from dispatch to answer.
#[derive(Debug, Default)]
pub(crate) struct PendingReads {
    next_id: u64,
    /// Dispatched since the last request went out.
    unsent: Vec<(RaftCmdRequest, Callback)>,
    /// Sent, in order.
    waiting: VecDeque<ReadBatch>,
}

/// The commands a read is made of (`command::only_commands`).
pub(crate) const READ_COMMANDS: &[CmdType] = &[CmdType::Get, CmdType::Snap];

impl Peer {
    /// Answers a checked read at once under the leader's lease, when this
    /// peer applied everything it knows committed; otherwise queues it for
    /// the next read-index request.
    pub(crate) fn queue_read(
        &mut self,
        ctx: &StoreContext,
        request: RaftCmdRequest,
        callback: Callback,
    ) {
        let raft = self.raft_group.raft();
        let by_lease = self.reads.unsent.is_empty()
            && self.reads.waiting.is_empty()
            && raft.lead_transferee() == 0
            && raft.has_committed_in_term()
            && self.raft_group.store().applied_index() >= raft.raft_log().committed()
            && self.lease.covers(Instant::now(), self.term());
        if !by_lease {
            self.reads.unsent.push((request, callback));
            return;
        }
        match self.execute_read(ctx, &request, self.term()) {
            Ok(response) => callback.respond(response),
            Err(e) => callback.respond_error(e.to_region_error()),
        }
    }

    /// Sends one read-index request for the reads queued since the last.
    pub(crate) fn request_read_index(&mut self) {
        if self.reads.unsent.is_empty() {
            return;
        }
        let reads = std::mem::take(&mut self.reads.unsent);
        if !self.is_leader() {
            let e = Error::NotLeader {
                region_id: self.region_id,
                leader: self.leader(),
            };
            for (_, callback) in reads {
                callback.respond_error(e.to_region_error());
            }
            return;
        }
        self.reads.next_id += 1;
        let id = self.reads.next_id;
        self.raft_group.read_index(id.to_be_bytes().to_vec());
        self.reads.waiting.push_back(ReadBatch {
            id,
            index: None,
            issued_at_tick: self.ticks,
            issued_at: Instant::now(),
            term: self.term(),
            reads,
        });
    }

    /// Records the read indexes the raft node confirmed, and renews the
    /// lease from when their rounds were sent.
    pub(crate) fn on_read_states(&mut self, ctx: &StoreContext, states: &[ReadState]) {
        let length = lease_length(
            ctx.cfg.raft_election_timeout_ticks,
            ctx.cfg.raft_base_tick_interval,
        );
        let (term, leading) = (self.term(), self.is_leader());
        for state in states {
            let Ok(id) = <[u8; 8]>::try_from(state.request_ctx.as_slice()).map(u64::from_be_bytes)
            else {
                continue;
            };
            if let Some(batch) = self.reads.waiting.iter_mut().find(|b| b.id == id) {
                batch.index = Some(state.index);
                if leading && batch.term == term {
                    self.lease.renew(batch.issued_at, term, length);
                }
            }
        }
    }

    /// Runs, in order, every batch whose index is applied.
    pub(crate) fn run_ready_reads(&mut self, ctx: &StoreContext) -> Result<()> {
        let applied = self.raft_group.store().applied_index();
        while let Some(batch) = self.reads.waiting.front() {
            match batch.index {
                Some(index) if index <= applied => {}
                _ => break,
            }
            let batch = self.reads.waiting.pop_front().expect("front exists");
            let term = self.term();
            for (request, callback) in batch.reads {
                callback.respond(self.execute_read(ctx, &request, term)?);
            }
        }
        Ok(())
    }

    /// Answers every read: this peer no longer leads, so its raft node
    /// dropped their requests.
    pub(crate) fn fail_reads_on_step_down(&mut self) {
        let e = Error::NotLeader {
            region_id: self.region_id,
            leader: self.leader(),
        };
        self.fail_reads(&e);
    }

    /// Answers every read with `error`.
    pub(crate) fn fail_reads(&mut self, error: &Error) {
        let unsent = std::mem::take(&mut self.reads.unsent);
        let waiting = std::mem::take(&mut self.reads.waiting);
        for (_, callback) in unsent
            .into_iter()
            .chain(waiting.into_iter().flat_map(|b| b.reads))
        {
            callback.respond_error(error.to_region_error());
        }
    }

    /// Refuses the reads whose confirmation is overdue (a quorum did not
    /// answer) as `NotLeader` without a hint: the client tries the others.
    pub(crate) fn expire_reads(&mut self, election_ticks: u64) {
        let limit = election_ticks.max(1) * READ_TIMEOUT_ELECTIONS;
        while let Some(batch) = self.reads.waiting.front() {
            if batch.index.is_some() || self.ticks - batch.issued_at_tick < limit {
                break;
            }
            let batch = self.reads.waiting.pop_front().expect("front exists");
            debug!(self.logger, "read index not confirmed in time"; "reads" => batch.reads.len(),
                "term" => self.term());
            let e = Error::NotLeader {
                region_id: self.region_id,
                leader: None,
            };
            for (_, callback) in batch.reads {
                callback.respond_error(e.to_region_error());
            }
        }
    }

    /// Runs a read against the engine, as applied now.
    fn execute_read(
        &self,
        ctx: &StoreContext,
        request: &RaftCmdRequest,
        term: u64,
    ) -> Result<CmdResponse> {
        let region = self.region();
        if let Err(e) = check_region_epoch(request, region) {
            return Ok(error_response(&e, term));
        }
        let parsed = match parse_requests(request, region, None) {
            Ok(parsed) => parsed,
            Err(e) => return Ok(error_response(&e, term)),
        };
        let mut responses = Vec::with_capacity(parsed.len());
        let mut snapshot = None;
        for (r, parsed) in request.requests.iter().zip(parsed) {
            let mut resp = Response {
                cmd_type: r.cmd_type,
                ..Default::default()
            };
            if let Err(e) = read_into(ctx, region, parsed, &mut resp, &mut snapshot) {
                return match e {
                    Error::InvalidRequest(_) => Ok(error_response(&e, term)),
                    e => Err(e),
                };
            }
            responses.push(resp);
        }
        Ok(CmdResponse {
            response: RaftCmdResponse {
                header: Some(header(term)),
                responses,
                admin_response: None,
            },
            snapshot,
        })
    }
}

/// Runs one read request against the engine as it is now: a `Get` fills
/// `resp.get`, a `Snap` fills `resp.snap` and takes `snapshot`. Shared by
/// reads served outside the log and by reads that come through it
/// (`operation/apply.rs`, after flushing what the entry batch holds so
/// far). A write is refused as `InvalidRequest`.
pub(crate) fn read_into(
    ctx: &StoreContext,
    region: &metapb::Region,
    request: DataRequest<'_>,
    resp: &mut Response,
    snapshot: &mut Option<ReadSnapshot>,
) -> Result<()> {
    match request {
        DataRequest::Get { cf, key } => {
            let value = ctx
                .engine
                .get_cf(cf, &keys::data_key(key))?
                .unwrap_or_default();
            resp.get = Some(GetResponse { value });
        }
        DataRequest::Snap => {
            *snapshot = Some(ReadSnapshot::new(crate::RegionSnapshot::for_region(
                ctx.engine.snapshot(),
                region,
            )));
            resp.snap = Some(SnapResponse {
                region: Some(region.clone()),
            });
        }
        DataRequest::Put { .. }
        | DataRequest::Delete { .. }
        | DataRequest::Append { .. }
        | DataRequest::OpenSession => {
            return Err(Error::InvalidRequest("a write is not a read".into()));
        }
    }
    Ok(())
}
