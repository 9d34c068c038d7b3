//! Handing a command to a local peer: the one place where a command the
//! router refuses becomes the region error its caller sees.
//!
//! The router hands a refused command back instead of queueing it
//! (`router::RouterError`). Every caller that sends a client command to a
//! store in this process — the in-process cluster's client today, the gRPC
//! service later — goes through [`submit`], so a refusal is always answered
//! with a real region error:
//!
//! | router says | the caller gets | why |
//! |---|---|---|
//! | `Full` | `ServerIsBusy` | the peer is overloaded; retry after a back-off |
//! | `RegionNotFound` | `RegionNotFound` | no peer of the region on this store |
//! | `Stopped` | `RegionNotFound` | the peer is being destroyed or the store is stopping; for this store the region is gone |
//!
//! Never a default response: an empty `RaftCmdResponse` without an error
//! reads as success, and a client would count a write that never reached
//! the log.

use kvproto::errorpb;
use kvproto::raft_cmdpb::RaftCmdRequest;
use router::{Callback, CallbackReceiver, RaftCommand, Router, RouterError};

/// Sends `request` to the peer of `region_id` behind `router`. The answer
/// arrives on the returned receiver: the peer's, or, if the router refused
/// the command, the region error for the refusal ([`refusal_error`]).
pub fn submit(router: &Router, region_id: u64, request: RaftCmdRequest) -> CallbackReceiver {
    let (callback, answer) = Callback::new();
    if let Err(refused) =
        router.send_command(region_id, Box::new(RaftCommand { request, callback }))
    {
        let error = refusal_error(region_id, &refused);
        refused.into_inner().callback.respond_error(error);
    }
    answer
}

/// The region error that answers a command the router refused for
/// `region_id`.
pub fn refusal_error<M>(region_id: u64, refused: &RouterError<M>) -> errorpb::Error {
    let error = match refused {
        RouterError::Full(..) => raftstore::Error::ServerIsBusy(format!(
            "the mailbox of region {region_id}'s peer is full"
        )),
        RouterError::RegionNotFound(..) | RouterError::Stopped(_) => {
            raftstore::Error::RegionNotFound(region_id)
        }
    };
    error.to_region_error()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_become_their_region_errors() {
        let busy = refusal_error(3, &RouterError::Full(3, ()));
        assert!(busy.server_is_busy.is_some(), "{busy:?}");
        for refused in [RouterError::RegionNotFound(3, ()), RouterError::Stopped(())] {
            let gone = refusal_error(3, &refused);
            assert_eq!(
                gone.region_not_found.map(|e| e.region_id),
                Some(3),
                "{gone:?}"
            );
        }
    }

    /// A command for a region the router does not know is answered, with
    /// `RegionNotFound`, not dropped and not answered as a success.
    #[test]
    fn submit_answers_a_refused_command() {
        let router = Router::new(1);
        let mut answer = submit(&router, 9, RaftCmdRequest::default());
        let resp = answer.try_recv().expect("answered at once");
        assert_eq!(
            resp.region_error()
                .and_then(|e| e.region_not_found.as_ref())
                .map(|e| e.region_id),
            Some(9)
        );
    }
}
