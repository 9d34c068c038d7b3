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
use slog::{debug, info};
use storage::is_data_cf;

use crate::context::StoreContext;
use crate::errors::{Error, Result};
use crate::operation::batch::BATCHABLE_COMMANDS;
use crate::operation::read::READ_COMMANDS;
use crate::operation::session::{check_session_command, session_clock};
use crate::operation::split::add_regions;
use crate::peer::{Answer, Peer, Proposal};

/// Whether `request` holds data commands only, at least one, each of a
/// kind in `kinds`.
pub(crate) fn only_commands(request: &RaftCmdRequest, kinds: &[CmdType]) -> bool {
    request.admin_request.is_none()
        && !request.requests.is_empty()
        && request
            .requests
            .iter()
            .all(|r| kinds.contains(&r.cmd_type()))
}

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

/// One data request of a command, its shape checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataRequest<'a> {
    /// Read `key` of `cf`.
    Get {
        /// A data column family.
        cf: &'a str,
        /// The user key.
        key: &'a [u8],
    },
    /// Write `value` at `key` of `cf`.
    Put {
        /// A data column family.
        cf: &'a str,
        /// The user key.
        key: &'a [u8],
        /// The value.
        value: &'a [u8],
    },
    /// Delete `key` of `cf`.
    Delete {
        /// A data column family.
        cf: &'a str,
        /// The user key.
        key: &'a [u8],
    },
    /// Append `value` to the value at `key` of `cf` (missing: empty).
    Append {
        /// A data column family.
        cf: &'a str,
        /// The user key.
        key: &'a [u8],
        /// What to append.
        value: &'a [u8],
    },
    /// Open the command's client session (`operation/session.rs`).
    OpenSession,
    /// Take a consistent view of the region.
    Snap,
}

fn data_cf(cf: &str) -> Result<&str> {
    let cf = if cf.is_empty() {
        storage::CF_DEFAULT
    } else {
        cf
    };
    if is_data_cf(cf) {
        Ok(cf)
    } else {
        Err(Error::InvalidRequest(format!(
            "unknown column family {cf:?}"
        )))
    }
}

/// Fails if a value of `len` bytes exceeds `limit`, when there is one.
/// An append's argument is limited, not the value it makes: apply cannot
/// refuse by a limit that replicas may have configured differently.
fn check_value_size(len: usize, limit: Option<usize>) -> Result<()> {
    match limit {
        Some(limit) if len > limit => Err(Error::InvalidRequest(format!(
            "value of {len} bytes exceeds the limit of {limit}"
        ))),
        _ => Ok(()),
    }
}

fn missing_body(kind: &str) -> Error {
    Error::InvalidRequest(format!("{kind} without body"))
}

/// Checks the shape of a data command and returns its requests: every
/// request has the body its type needs, a data column family and a key of
/// `region`. The same check runs before proposing and again at apply (an
/// entry's content never makes apply panic); `max_value_size` only before
/// proposing, since replicas may be configured differently and apply must
/// decide the same everywhere.
pub fn parse_requests<'a>(
    req: &'a RaftCmdRequest,
    region: &metapb::Region,
    max_value_size: Option<usize>,
) -> Result<Vec<DataRequest<'a>>> {
    let mut parsed = Vec::with_capacity(req.requests.len());
    for r in &req.requests {
        let request = match r.cmd_type() {
            CmdType::Get => {
                let get = r.get.as_ref().ok_or_else(|| missing_body("Get"))?;
                DataRequest::Get {
                    cf: data_cf(&get.cf)?,
                    key: &get.key,
                }
            }
            CmdType::Put => {
                let put = r.put.as_ref().ok_or_else(|| missing_body("Put"))?;
                check_value_size(put.value.len(), max_value_size)?;
                DataRequest::Put {
                    cf: data_cf(&put.cf)?,
                    key: &put.key,
                    value: &put.value,
                }
            }
            CmdType::Delete => {
                let delete = r.delete.as_ref().ok_or_else(|| missing_body("Delete"))?;
                DataRequest::Delete {
                    cf: data_cf(&delete.cf)?,
                    key: &delete.key,
                }
            }
            CmdType::Snap => DataRequest::Snap,
            CmdType::Append => {
                let append = r.append.as_ref().ok_or_else(|| missing_body("Append"))?;
                check_value_size(append.value.len(), max_value_size)?;
                DataRequest::Append {
                    cf: data_cf(&append.cf)?,
                    key: &append.key,
                    value: &append.value,
                }
            }
            CmdType::OpenSession => DataRequest::OpenSession,
            CmdType::Invalid => return Err(Error::InvalidRequest("invalid command type".into())),
        };
        if let DataRequest::Get { key, .. }
        | DataRequest::Put { key, .. }
        | DataRequest::Delete { key, .. }
        | DataRequest::Append { key, .. } = request
        {
            check_key_in_region(key, region)?;
        }
        parsed.push(request);
    }
    Ok(parsed)
}

/// Fails unless `req` holds either data requests or one admin request.
pub fn check_command_kind(req: &RaftCmdRequest) -> Result<()> {
    if req.requests.is_empty() == req.admin_request.is_none() {
        return Err(Error::InvalidRequest(
            "a command holds either data requests or one admin request".into(),
        ));
    }
    Ok(())
}

/// Admin commands a client may send: membership changes and leader
/// transfers (TinyKV's scheduler and tests issue them). `CompactLog` (and
/// `Split`) are the store's own: a client-made one could name any index
/// and term, and a wrong term truncates the log under a false term.
fn check_client_admin(req: &RaftCmdRequest) -> Result<()> {
    match req.admin_request.as_ref().map(|a| a.cmd_type()) {
        None | Some(AdminCmdType::ChangePeer | AdminCmdType::TransferLeader) => Ok(()),
        Some(other) => Err(Error::InvalidRequest(format!(
            "admin command {other:?} is issued by the store itself, not by clients"
        ))),
    }
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
        check_command_kind(req)?;
        check_client_admin(req)?;
        // The epoch before the peer id: a client with a stale view of the
        // region learns the current one (EpochNotMatch carries it, peers
        // included), where "peer not match" alone would teach it nothing.
        check_region_epoch(req, self.region()).map_err(|e| {
            // After a split, name the region the keys went to as well.
            let sibling = ctx.store_meta().right_sibling(self.region());
            add_regions(e, sibling)
        })?;
        let peer_id = header.peer.map_or(0, |p| p.id);
        if peer_id != self.meta.id {
            return Err(Error::PeerNotMatch {
                request: peer_id,
                actual: self.meta.id,
            });
        }
        check_session_command(req)?;
        parse_requests(req, self.region(), Some(ctx.cfg.max_value_size)).map(|_| ())
    }

    /// Proposes a client command, or answers it at once if it cannot be.
    pub fn propose_command(&mut self, ctx: &StoreContext, cmd: RaftCommand) {
        let RaftCommand {
            mut request,
            callback,
        } = cmd;
        if let Err(e) = self.pre_propose_check(ctx, &request) {
            debug!(self.logger, "command refused"; "err" => %e);
            callback.respond_error(e.to_region_error());
            return;
        }
        if let Some(header) = request.header.as_mut().filter(|h| h.session.is_some()) {
            // A session command is an entry of its own, with the leader's
            // time and session limits (`operation/session.rs`).
            header.session_clock = Some(session_clock(&ctx.cfg));
            self.propose_pending_writes();
            return self.propose_entry(request, callback.into());
        }
        if only_commands(&request, READ_COMMANDS) {
            self.queue_read(ctx, request, callback);
            return;
        }
        if only_commands(&request, BATCHABLE_COMMANDS) {
            self.batch_write(request, callback);
            return;
        }
        // Order: the writes batched before this command enter the log first.
        self.propose_pending_writes();
        let result = match request.admin_request.as_ref().map(|a| a.cmd_type()) {
            Some(AdminCmdType::TransferLeader) => {
                self.transfer_leader(ctx, &request);
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
            // Refused by `check_client_admin` already; kept total, not a panic.
            Some(other) => Err(Error::InvalidRequest(format!(
                "admin command {other:?} cannot be proposed by a client"
            ))),
            None => return self.propose_entry(request, callback.into()),
        };
        self.on_proposed(result, callback.into());
    }

    /// Proposes a normal command; `answer` gets its result.
    pub(crate) fn propose_entry(&mut self, request: RaftCmdRequest, answer: Answer) {
        let result = self
            .raft_group
            .propose(request.encode_to_vec())
            .map_err(Error::from);
        self.on_proposed(result, answer);
    }

    /// Queues a proposal the raft node took, or answers why it did not.
    fn on_proposed(&mut self, result: Result<()>, callback: Answer) {
        match result {
            Ok(()) => {
                let index = self.raft_group.raft().raft_log().last_index();
                let term = self.term();
                self.proposals.push(Proposal {
                    index,
                    term,
                    callback,
                });
            }
            Err(Error::Raft(raft::Error::ProposalDropped)) => {
                let e = self.proposal_dropped_error();
                debug!(self.logger, "proposal dropped"; "err" => %e);
                callback.respond_error(e.to_region_error());
            }
            Err(e) => callback.respond_error(e.to_region_error()),
        }
    }

    /// Why the leader's raft node refused a proposal, as a retryable error.
    /// Not `NotLeader`: this peer does lead, and naming itself as the
    /// leader would send the client straight back here.
    fn proposal_dropped_error(&self) -> Error {
        let raft = self.raft_group.raft();
        let reason = if raft.lead_transferee() != 0 {
            format!(
                "proposal dropped: leadership is being transferred to peer {}",
                raft.lead_transferee()
            )
        } else if raft.pending_conf_index() > raft.raft_log().applied() {
            format!(
                "proposal dropped: the membership change at index {} is not applied yet",
                raft.pending_conf_index()
            )
        } else {
            "proposal dropped by raft".to_owned()
        };
        Error::ServerIsBusy(reason)
    }

    /// Starts moving the leadership to the peer `req` names, unless that
    /// peer has not been heard from within an election timeout.
    ///
    /// Why the check: while a transfer is under way the leader accepts no
    /// proposal (Raft §3.10), for up to an election timeout, and the
    /// scheduler repeats a transfer with every region heartbeat until its
    /// operator's deadline. A transferee that cannot answer (its store is
    /// down, or cut off) would keep the region from taking writes all that
    /// time. TiKV refuses such transfers the same way; the scheduler's
    /// operator then times out.
    fn transfer_leader(&mut self, ctx: &StoreContext, req: &RaftCmdRequest) {
        let target = req
            .admin_request
            .as_ref()
            .and_then(|a| a.transfer_leader.as_ref())
            .and_then(|t| t.peer);
        let Some(target) = target else {
            return;
        };
        let ticks = u32::try_from(ctx.cfg.raft_election_timeout_ticks).unwrap_or(u32::MAX);
        let window = ctx.cfg.raft_base_tick_interval.saturating_mul(ticks);
        let silent_for = self
            .peer_liveness
            .last_heard(target.id)
            .map(|heard| heard.elapsed());
        if target.id != self.meta.id && silent_for.is_none_or(|silent| silent > window) {
            info!(self.logger, "leader transfer refused: the transferee is silent";
                "term" => self.term(), "transferee" => target.id, "silent_for" => ?silent_for);
            return;
        }
        // The transferee's campaign ignores the members' leases.
        let election =
            ctx.cfg.raft_base_tick_interval * (ctx.cfg.raft_election_timeout_ticks as u32);
        self.lease.suspend(std::time::Instant::now() + 2 * election);
        self.raft_group.transfer_leader(target.id);
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

#[cfg(test)]
pub(crate) mod tests {
    use kvproto::raft_cmdpb::{AdminRequest, DeleteRequest, GetRequest, PutRequest, Request};

    use super::*;
    use crate::operation::batch::BATCHABLE_COMMANDS;
    use crate::operation::read::READ_COMMANDS;

    /// A command of one request per kind in `kinds`; a put writes `k` =
    /// `vv`, a delete removes `k`.
    pub(crate) fn request_of(kinds: &[CmdType]) -> RaftCmdRequest {
        RaftCmdRequest {
            requests: kinds
                .iter()
                .map(|&t| Request {
                    cmd_type: t as i32,
                    put: (t == CmdType::Put).then(|| PutRequest {
                        cf: String::new(),
                        key: b"k".to_vec(),
                        value: b"vv".to_vec(),
                    }),
                    delete: (t == CmdType::Delete).then(|| DeleteRequest {
                        cf: String::new(),
                        key: b"k".to_vec(),
                    }),
                    get: (t == CmdType::Get).then(GetRequest::default),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn only_commands_needs_one_command_and_every_one_of_the_kinds() {
        let reads = |kinds: &[CmdType]| only_commands(&request_of(kinds), READ_COMMANDS);
        assert!(reads(&[CmdType::Get, CmdType::Snap]));
        assert!(reads(&[CmdType::Get]));
        assert!(!reads(&[]));
        assert!(!reads(&[CmdType::Get, CmdType::Put]));
        assert!(!reads(&[CmdType::Delete]));
        let mut admin = request_of(&[CmdType::Put]);
        admin.admin_request = Some(AdminRequest {
            cmd_type: AdminCmdType::ChangePeer as i32,
            ..Default::default()
        });
        assert!(!only_commands(&admin, BATCHABLE_COMMANDS));
    }

    fn region() -> metapb::Region {
        metapb::Region {
            id: 1,
            start_key: b"b".to_vec(),
            end_key: b"y".to_vec(),
            ..Default::default()
        }
    }

    fn command(requests: Vec<Request>) -> RaftCmdRequest {
        RaftCmdRequest {
            requests,
            ..Default::default()
        }
    }

    fn put(cf: &str, key: &[u8], value: &[u8]) -> Request {
        Request {
            cmd_type: CmdType::Put as i32,
            put: Some(PutRequest {
                cf: cf.into(),
                key: key.to_vec(),
                value: value.to_vec(),
            }),
            ..Default::default()
        }
    }

    /// Apply re-checks every command with `parse_requests` instead of
    /// `expect()`ing bodies: malformed content is an error, never a panic.
    #[test]
    fn malformed_requests_are_errors() {
        let bodiless = |t: CmdType| Request {
            cmd_type: t as i32,
            ..Default::default()
        };
        for t in [
            CmdType::Get,
            CmdType::Put,
            CmdType::Delete,
            CmdType::Invalid,
        ] {
            let cmd = command(vec![bodiless(t)]);
            assert!(parse_requests(&cmd, &region(), None).is_err(), "{t:?}");
        }
        let unknown_type = command(vec![Request {
            cmd_type: 77,
            ..Default::default()
        }]);
        assert!(parse_requests(&unknown_type, &region(), None).is_err());
        let bad_cf = command(vec![put("raft", b"c", b"v")]);
        assert!(parse_requests(&bad_cf, &region(), None).is_err());
        let outside = command(vec![put("", b"z", b"v")]);
        assert!(matches!(
            parse_requests(&outside, &region(), None),
            Err(Error::KeyNotInRegion { .. })
        ));
    }

    #[test]
    fn well_formed_requests_parse() {
        let cmd = command(vec![
            put("", b"c", b"v"),
            Request {
                cmd_type: CmdType::Get as i32,
                get: Some(GetRequest {
                    cf: "write".into(),
                    key: b"d".to_vec(),
                }),
                ..Default::default()
            },
        ]);
        let parsed = parse_requests(&cmd, &region(), Some(10)).expect("valid");
        assert_eq!(
            parsed,
            vec![
                DataRequest::Put {
                    cf: storage::CF_DEFAULT,
                    key: b"c",
                    value: b"v",
                },
                DataRequest::Get {
                    cf: "write",
                    key: b"d",
                },
            ]
        );
        // The value limit applies before proposing only.
        let big = command(vec![put("", b"c", &[0; 11])]);
        assert!(parse_requests(&big, &region(), Some(10)).is_err());
        assert!(parse_requests(&big, &region(), None).is_ok());
    }

    #[test]
    fn only_membership_and_leader_admin_commands_come_from_clients() {
        let admin = |t: AdminCmdType| RaftCmdRequest {
            admin_request: Some(AdminRequest {
                cmd_type: t as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(check_client_admin(&admin(AdminCmdType::ChangePeer)).is_ok());
        assert!(check_client_admin(&admin(AdminCmdType::TransferLeader)).is_ok());
        assert!(check_client_admin(&admin(AdminCmdType::CompactLog)).is_err());
        assert!(check_client_admin(&admin(AdminCmdType::Split)).is_err());
        assert!(check_client_admin(&admin(AdminCmdType::InvalidAdmin)).is_err());
        assert!(check_client_admin(&command(vec![put("", b"c", b"v")])).is_ok());
    }
}
