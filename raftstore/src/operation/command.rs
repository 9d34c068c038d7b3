//! Proposing client commands: the checks before a command enters the log
//! (store, leadership, epoch, keys), and the proposal itself.
//!
//! Validate before mutating: a command that fails a check is answered at
//! once and leaves no trace in the log.

use kvproto::eraftpb::{ConfChange, ConfChangeType};
use kvproto::metapb;
use kvproto::raft_cmdpb::{
    AdminCmdType, AdminResponse, CmdType, RaftCmdRequest, RaftCmdResponse, RaftResponseHeader,
    TransferLeaderResponse,
};
use prost::Message as _;
use router::{CmdResponse, RaftCommand};
use slog::debug;
use storage::is_data_cf;

use crate::context::StoreContext;
use crate::errors::{Error, Result};
use crate::peer::{Peer, Proposal};

/// Which epoch fields a command depends on (TinyKV's rules): data commands
/// on the key range (`version`), membership changes on `conf_ver`, splits on both.
fn epoch_checks(req: &RaftCmdRequest) -> (bool, bool) {
    match req.admin_request.as_ref().map(|a| a.cmd_type()) {
        Some(
            AdminCmdType::CompactLog | AdminCmdType::TransferLeader | AdminCmdType::InvalidAdmin,
        ) => (false, false),
        Some(AdminCmdType::ChangePeer) => (true, false),
        Some(AdminCmdType::Split) => (true, true),
        None => (false, true),
    }
}

/// Fails with `EpochNotMatch` if `req` was built for another epoch of `region`.
pub fn check_region_epoch(req: &RaftCmdRequest, region: &metapb::Region) -> Result<()> {
    let (check_conf_ver, check_version) = epoch_checks(req);
    if !check_conf_ver && !check_version {
        return Ok(());
    }
    let Some(from) = req.header.as_ref().and_then(|h| h.region_epoch) else {
        return Err(Error::InvalidRequest("request has no region epoch".into()));
    };
    let current = region.region_epoch.unwrap_or_default();
    if (check_conf_ver && from.conf_ver != current.conf_ver)
        || (check_version && from.version != current.version)
    {
        return Err(Error::EpochNotMatch {
            message: format!(
                "region {} epoch is (conf_ver {}, version {}), request has (conf_ver {}, version {})",
                region.id, current.conf_ver, current.version, from.conf_ver, from.version
            ),
            regions: vec![region.clone()],
        });
    }
    Ok(())
}

/// Fails with `KeyNotInRegion` unless `key` is in `[start_key, end_key)`.
pub fn check_key_in_region(key: &[u8], region: &metapb::Region) -> Result<()> {
    let after_start = key >= region.start_key.as_slice();
    let before_end = region.end_key.is_empty() || key < region.end_key.as_slice();
    if after_start && before_end {
        Ok(())
    } else {
        Err(Error::KeyNotInRegion {
            key: key.to_vec(),
            region: Box::new(region.clone()),
        })
    }
}

/// Checks the shape of a data command: every request well formed, its CF
/// and key valid, its value not too large.
fn check_requests(
    req: &RaftCmdRequest,
    region: &metapb::Region,
    max_value_size: usize,
) -> Result<()> {
    for r in &req.requests {
        let (cf, key) = match r.cmd_type() {
            CmdType::Get => {
                let get = r
                    .get
                    .as_ref()
                    .ok_or_else(|| Error::InvalidRequest("Get without body".into()))?;
                (get.cf.as_str(), get.key.as_slice())
            }
            CmdType::Put => {
                let put = r
                    .put
                    .as_ref()
                    .ok_or_else(|| Error::InvalidRequest("Put without body".into()))?;
                if put.value.len() > max_value_size {
                    return Err(Error::InvalidRequest(format!(
                        "value of {} bytes exceeds the limit of {max_value_size}",
                        put.value.len()
                    )));
                }
                (put.cf.as_str(), put.key.as_slice())
            }
            CmdType::Delete => {
                let delete = r
                    .delete
                    .as_ref()
                    .ok_or_else(|| Error::InvalidRequest("Delete without body".into()))?;
                (delete.cf.as_str(), delete.key.as_slice())
            }
            CmdType::Snap => continue,
            CmdType::Invalid => return Err(Error::InvalidRequest("invalid command type".into())),
        };
        let cf = if cf.is_empty() {
            storage::CF_DEFAULT
        } else {
            cf
        };
        if !is_data_cf(cf) {
            return Err(Error::InvalidRequest(format!(
                "unknown column family {cf:?}"
            )));
        }
        check_key_in_region(key, region)?;
    }
    Ok(())
}

impl Peer {
    /// The checks every command passes before it is proposed.
    fn pre_propose_check(&self, ctx: &StoreContext, req: &RaftCmdRequest) -> Result<()> {
        let header = req
            .header
            .as_ref()
            .ok_or_else(|| Error::InvalidRequest("request has no header".into()))?;
        let store_id = header.peer.map_or(0, |p| p.store_id);
        if store_id != ctx.store_id {
            return Err(Error::StoreNotMatch {
                request: store_id,
                actual: ctx.store_id,
            });
        }
        if header.region_id != self.region_id {
            return Err(Error::RegionNotFound(header.region_id));
        }
        if !self.is_leader() {
            return Err(Error::NotLeader {
                region_id: self.region_id,
                leader: self.leader(),
            });
        }
        if req.requests.is_empty() == req.admin_request.is_none() {
            return Err(Error::InvalidRequest(
                "a command holds either data requests or one admin request".into(),
            ));
        }
        check_region_epoch(req, self.region())?;
        check_requests(req, self.region(), ctx.cfg.max_value_size)
    }

    /// Proposes a client command, or answers it at once if it cannot be.
    pub fn propose_command(&mut self, ctx: &StoreContext, cmd: RaftCommand) {
        let RaftCommand { request, callback } = cmd;
        if let Err(e) = self.pre_propose_check(ctx, &request) {
            debug!(self.logger, "command refused"; "err" => %e);
            callback.respond_error(e.to_region_error());
            return;
        }
        let result = match request.admin_request.as_ref().map(|a| a.cmd_type()) {
            Some(AdminCmdType::TransferLeader) => {
                self.transfer_leader(&request);
                callback.respond(CmdResponse {
                    response: RaftCmdResponse {
                        header: Some(RaftResponseHeader {
                            current_term: self.term(),
                            ..Default::default()
                        }),
                        admin_response: Some(AdminResponse {
                            cmd_type: AdminCmdType::TransferLeader as i32,
                            transfer_leader: Some(TransferLeaderResponse {}),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                    snapshot: None,
                });
                return;
            }
            Some(AdminCmdType::ChangePeer) => self.propose_conf_change(&request),
            Some(AdminCmdType::Split | AdminCmdType::InvalidAdmin) => Err(Error::InvalidRequest(
                "this admin command is not supported".into(),
            )),
            Some(AdminCmdType::CompactLog) | None => self
                .raft_group
                .propose(request.encode_to_vec())
                .map_err(Error::from),
        };
        match result {
            Ok(()) => {
                let index = self.raft_group.raft().raft_log().last_index();
                let term = self.term();
                self.proposals.push_back(Proposal {
                    index,
                    term,
                    callback,
                });
            }
            Err(e) => {
                let e = match e {
                    Error::Raft(raft::Error::ProposalDropped) => Error::NotLeader {
                        region_id: self.region_id,
                        leader: self.leader(),
                    },
                    e => e,
                };
                callback.respond_error(e.to_region_error());
            }
        }
    }

    fn transfer_leader(&mut self, req: &RaftCmdRequest) {
        let target = req
            .admin_request
            .as_ref()
            .and_then(|a| a.transfer_leader.as_ref())
            .and_then(|t| t.peer);
        if let Some(target) = target {
            self.raft_group.transfer_leader(target.id);
        }
    }

    fn propose_conf_change(&mut self, req: &RaftCmdRequest) -> Result<()> {
        let change = req
            .admin_request
            .as_ref()
            .and_then(|a| a.change_peer.as_ref())
            .ok_or_else(|| Error::InvalidRequest("ChangePeer without body".into()))?;
        let peer = change
            .peer
            .ok_or_else(|| Error::InvalidRequest("ChangePeer without a peer".into()))?;
        let change_type = ConfChangeType::try_from(change.change_type)
            .map_err(|_| Error::InvalidRequest("unknown conf change type".into()))?;
        if change_type == ConfChangeType::RemoveNode
            && peer.id == self.meta.id
            && self.region().peers.len() == 2
        {
            // Removing the leader of a two-member region could leave the
            // other member unable to learn the commit; move leadership first.
            return Err(Error::InvalidRequest(
                "transfer leadership before removing the leader of a two-member region".into(),
            ));
        }
        let cc = ConfChange {
            change_type: change_type as i32,
            node_id: peer.id,
            context: req.encode_to_vec(),
        };
        self.raft_group.propose_conf_change(cc).map_err(Error::from)
    }
}
