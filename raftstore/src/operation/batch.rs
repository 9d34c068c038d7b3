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

/// The commands that may share an entry (`command::only_commands`).
pub(crate) const BATCHABLE_COMMANDS: &[CmdType] = &[CmdType::Put, CmdType::Delete];

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
    use crate::operation::command::only_commands;
    use crate::operation::command::tests::request_of;

    use super::*;

    #[test]
    fn only_puts_and_deletes_share_an_entry() {
        let batchable = |kinds: &[CmdType]| only_commands(&request_of(kinds), BATCHABLE_COMMANDS);
        assert!(batchable(&[CmdType::Put, CmdType::Delete]));
        assert!(!batchable(&[CmdType::Put, CmdType::Get]));
        assert!(!batchable(&[CmdType::Snap]));
        assert_eq!(
            payload_bytes(&request_of(&[CmdType::Put, CmdType::Delete])),
            4
        );
    }
}
