//! `Callback`: how the answer to a proposed command gets back to its caller.
//!
//! Invariant: every callback is answered exactly once. `respond` consumes it;
//! a callback dropped unanswered still answers, with a `StaleCommand` region
//! error (the client retries), so no caller ever waits forever. That is the
//! fallback for a callback lost to a kill or a bug: a stopping peer answers
//! every command it holds itself, `RegionNotFound`.

use std::any::Any;
use std::fmt;

use kvproto::errorpb;
use kvproto::raft_cmdpb::{RaftCmdResponse, RaftResponseHeader};
use tokio::sync::oneshot;

/// A consistent read view of a region at a `Snap` command's position in the
/// log. Opaque here: the raftstore builds it and documents what it holds; the
/// caller takes that out with `downcast`.
pub struct ReadSnapshot(Box<dyn Any + Send>);

impl ReadSnapshot {
    /// Wraps `view`.
    pub fn new<T: Any + Send>(view: T) -> ReadSnapshot {
        ReadSnapshot(Box::new(view))
    }

    /// The view, if it is a `T`; otherwise the snapshot comes back.
    pub fn downcast<T: Any>(self) -> Result<T, ReadSnapshot> {
        self.0.downcast::<T>().map(|v| *v).map_err(ReadSnapshot)
    }
}

impl fmt::Debug for ReadSnapshot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReadSnapshot(..)")
    }
}

/// The answer to a `RaftCmdRequest`.
#[derive(Debug, Default)]
pub struct CmdResponse {
    /// The response, with a region error in its header on failure.
    pub response: RaftCmdResponse,
    /// For a `Snap` request: a consistent view of the region at the
    /// command's position in the log.
    pub snapshot: Option<ReadSnapshot>,
}

impl CmdResponse {
    /// A response carrying only a region error.
    pub fn from_error(error: errorpb::Error) -> Self {
        CmdResponse {
            response: RaftCmdResponse {
                header: Some(RaftResponseHeader {
                    error: Some(error),
                    ..Default::default()
                }),
                ..Default::default()
            },
            snapshot: None,
        }
    }

    /// The region error, if the command failed.
    pub fn region_error(&self) -> Option<&errorpb::Error> {
        self.response.header.as_ref().and_then(|h| h.error.as_ref())
    }
}

/// The sending half of a command's answer.
#[derive(Debug)]
pub struct Callback {
    tx: Option<oneshot::Sender<CmdResponse>>,
}

/// The receiving half: await it for the answer.
pub type CallbackReceiver = oneshot::Receiver<CmdResponse>;

impl Callback {
    /// A callback and the receiver its answer arrives on.
    pub fn new() -> (Callback, CallbackReceiver) {
        let (tx, rx) = oneshot::channel();
        (Callback { tx: Some(tx) }, rx)
    }

    /// Answers the caller. A caller that stopped waiting is not an error.
    pub fn respond(mut self, response: CmdResponse) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(response);
        }
    }

    /// Answers with a region error.
    pub fn respond_error(self, error: errorpb::Error) {
        self.respond(CmdResponse::from_error(error));
    }

    /// Whether the caller has stopped waiting.
    pub fn is_canceled(&self) -> bool {
        self.tx.as_ref().is_none_or(|tx| tx.is_closed())
    }
}

impl Drop for Callback {
    fn drop(&mut self) {
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(CmdResponse::from_error(errorpb::Error {
                message: "command dropped without an answer: the peer stopped".into(),
                stale_command: Some(errorpb::StaleCommand {}),
                ..Default::default()
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn respond_delivers_once() {
        let (cb, mut rx) = Callback::new();
        cb.respond(CmdResponse::default());
        assert!(rx.try_recv().expect("answered").region_error().is_none());
    }

    #[test]
    fn respond_error_sets_header() {
        let (cb, mut rx) = Callback::new();
        cb.respond_error(errorpb::Error {
            message: "boom".into(),
            ..Default::default()
        });
        let resp = rx.try_recv().expect("answered");
        assert_eq!(
            resp.region_error().map(|e| e.message.as_str()),
            Some("boom")
        );
    }

    #[test]
    fn dropping_unanswered_still_answers() {
        let (cb, mut rx) = Callback::new();
        drop(cb);
        let resp = rx.try_recv().expect("answered on drop");
        assert!(
            resp.region_error()
                .is_some_and(|e| e.stale_command.is_some())
        );
    }
}
