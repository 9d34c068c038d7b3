//! Small client writes that arrive together share one raft entry.
//!
//! Between two Readies a leader may dispatch many commands (the actor takes
//! everything queued before it builds a Ready, `fsm/peer.rs`). Those made
//! only of puts and deletes, with the same header (region, epoch, peer),
//! are merged into one `RaftCmdRequest`: one entry to encode, persist,
//! replicate and apply, whose result is split back to each caller
//! (`Answer::Many`).
//!
//! Invariants:
//! - Order is kept: a command that cannot join (a read, an admin command,
//!   another header) first proposes the batch waiting before it.
//! - The batch is proposed before the Ready is built (`handle_ready`), so
//!   no write waits for a later Ready than it would alone.
//! - A batch holds at most [`MAX_BATCH_REQUESTS`] requests and
//!   [`MAX_BATCH_BYTES`] bytes of keys and values.
//! - Every command in it passed `pre_propose_check` on its own, against the
//!   region the batch is proposed in (the region changes only in a Ready).
//!   Apply checks the merged command again; if that fails (the region
//!   changed before it applied), every caller gets the error, as each would
//!   have alone. Being atomic, it then writes nothing for any of them.

use kvproto::raft_cmdpb::{CmdType, RaftCmdRequest};
use router::Callback;

use crate::errors::Error;
use crate::peer::{Answer, Peer};

/// The most requests one shared entry carries.
pub const MAX_BATCH_REQUESTS: usize = 256;

/// The most bytes of keys and values one shared entry carries.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;

/// Writes waiting to be proposed as one entry.
#[derive(Debug)]
pub(crate) struct PendingWrites {
    request: RaftCmdRequest,
    callers: Vec<(Callback, usize)>,
    bytes: usize,
}

/// Whether `request` may share an entry: only puts and deletes.
pub(crate) fn is_batchable(request: &RaftCmdRequest) -> bool {
    request.admin_request.is_none()
        && !request.requests.is_empty()
        && request
            .requests
            .iter()
            .all(|r| matches!(r.cmd_type(), CmdType::Put | CmdType::Delete))
}

fn payload_bytes(request: &RaftCmdRequest) -> usize {
    request
        .requests
        .iter()
        .map(|r| {
            r.put.as_ref().map_or(0, |p| p.key.len() + p.value.len())
                + r.delete.as_ref().map_or(0, |d| d.key.len())
        })
        .sum()
}

impl Peer {
    /// Adds a checked write command to the batch, proposing the batch
    /// first if the command cannot join it.
    pub(crate) fn batch_write(&mut self, request: RaftCmdRequest, callback: Callback) {
        let bytes = payload_bytes(&request);
        let count = request.requests.len();
        if let Some(pending) = &self.pending_writes {
            let fits = pending.request.header == request.header
                && pending.request.requests.len() + count <= MAX_BATCH_REQUESTS
                && pending.bytes + bytes <= MAX_BATCH_BYTES;
            if !fits {
                self.propose_pending_writes();
            }
        }
        match &mut self.pending_writes {
            Some(pending) => {
                pending.request.requests.extend(request.requests);
                pending.callers.push((callback, count));
                pending.bytes += bytes;
            }
            None => {
                self.pending_writes = Some(PendingWrites {
                    request,
                    callers: vec![(callback, count)],
                    bytes,
                });
            }
        }
    }

    /// Proposes the waiting batch, if any, as one entry.
    pub(crate) fn propose_pending_writes(&mut self) {
        let Some(pending) = self.pending_writes.take() else {
            return;
        };
        let mut callers = pending.callers;
        let answer = if callers.len() == 1 {
            let (callback, _) = callers.pop().expect("one caller");
            Answer::One(callback)
        } else {
            Answer::Many(callers)
        };
        if !self.is_leader() {
            // Lost the leadership to a message dispatched since.
            let e = Error::NotLeader {
                region_id: self.region_id,
                leader: self.leader(),
            };
            answer.respond_error(e.to_region_error());
            return;
        }
        self.propose_entry(pending.request, answer);
    }

    /// Answers every waiting write with `error`.
    pub(crate) fn fail_pending_writes(&mut self, error: &Error) {
        if let Some(pending) = self.pending_writes.take() {
            Answer::Many(pending.callers).respond_error(error.to_region_error());
        }
    }
}

#[cfg(test)]
mod tests {
    use kvproto::raft_cmdpb::{
        AdminCmdType, AdminRequest, DeleteRequest, GetRequest, PutRequest, Request,
    };

    use super::*;

    fn request(cmd_types: &[CmdType]) -> RaftCmdRequest {
        RaftCmdRequest {
            requests: cmd_types
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
    fn only_puts_and_deletes_share_an_entry() {
        assert!(is_batchable(&request(&[CmdType::Put, CmdType::Delete])));
        assert!(!is_batchable(&request(&[])));
        assert!(!is_batchable(&request(&[CmdType::Put, CmdType::Get])));
        assert!(!is_batchable(&request(&[CmdType::Snap])));
        let mut admin = request(&[CmdType::Put]);
        admin.admin_request = Some(AdminRequest {
            cmd_type: AdminCmdType::ChangePeer as i32,
            ..Default::default()
        });
        assert!(!is_batchable(&admin));
        assert_eq!(payload_bytes(&request(&[CmdType::Put, CmdType::Delete])), 4);
    }
}
