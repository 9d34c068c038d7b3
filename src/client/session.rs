//! The client side of an exactly-once session (`docs/PROTOCOL_EXTENSIONS.md`,
//! "Client sessions"), shared by the gRPC Clerk and the
//! in-process cluster's Clerk: which sequence number a write carries, in
//! which regions the session is open, and what a `SessionExpired` answer
//! means for the write in flight.
//!
//! Invariants:
//! - sequence numbers start at 1 and grow by one per write, never reused:
//!   a write keeps its number through every retry, the next write takes the
//!   next one even when the previous gave up;
//! - a write is re-sent after re-opening its session only while no attempt
//!   of it can have been applied; once one may have been, a
//!   `SessionExpired` ends it with an unknown outcome.

use std::collections::HashSet;

use kvproto::errorpb;

/// One client's session: its id and the state of its writes.
#[derive(Debug, Clone)]
pub struct ClientSession {
    client_id: u64,
    last_sequence: u64,
    open_regions: HashSet<u64>,
}

impl ClientSession {
    /// A session for `client_id` (unique across clients and restarts: the
    /// scheduler's `AllocID`), with no write yet and open in no region.
    pub fn new(client_id: u64) -> Self {
        Self {
            client_id,
            last_sequence: 0,
            open_regions: HashSet::new(),
        }
    }

    /// The client id.
    pub fn client_id(&self) -> u64 {
        self.client_id
    }

    /// Starts the next write: it takes the next sequence number.
    pub fn next_write(&mut self) -> SessionWrite {
        self.last_sequence += 1;
        SessionWrite {
            sequence: self.last_sequence,
            maybe_applied: false,
        }
    }

    /// Whether the session was opened in `region_id` (and not forgotten
    /// since).
    pub fn is_open(&self, region_id: u64) -> bool {
        self.open_regions.contains(&region_id)
    }

    /// Records that `OpenSession` succeeded in `region_id`.
    pub fn opened(&mut self, region_id: u64) {
        self.open_regions.insert(region_id);
    }

    /// Forgets that the session is open in `region_id` (the region answered
    /// `SessionExpired`): the next write there opens it first.
    pub fn forget(&mut self, region_id: u64) {
        self.open_regions.remove(&region_id);
    }
}

/// One write of a session, through its attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionWrite {
    sequence: u64,
    maybe_applied: bool,
}

/// What to do after an attempt of a write got `SessionExpired`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnSessionExpired {
    /// No attempt can have applied: open the session again and send the
    /// write again with the same sequence.
    Reopen,
    /// An earlier attempt may have applied before the session ended: the
    /// write's outcome is unknown and the caller must be told.
    GiveUp,
}

impl SessionWrite {
    /// The write's sequence number.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// Whether an attempt of this write may have been applied.
    pub fn maybe_applied(&self) -> bool {
        self.maybe_applied
    }

    /// Records an attempt that got no answer (a timeout, a broken
    /// connection): it may have been proposed, and so may apply.
    pub fn attempt_unanswered(&mut self) {
        self.maybe_applied = true;
    }

    /// Records an attempt answered with `error`: unless the error says the
    /// store refused it before proposing ([`refused_before_proposal`]), it
    /// may have applied.
    pub fn attempt_failed(&mut self, error: &errorpb::Error) {
        if !refused_before_proposal(error) {
            self.maybe_applied = true;
        }
    }

    /// What a `SessionExpired` answer to the current attempt means.
    pub fn on_session_expired(&self) -> OnSessionExpired {
        if self.maybe_applied {
            OnSessionExpired::GiveUp
        } else {
            OnSessionExpired::Reopen
        }
    }
}

/// Whether a region error says the command was refused before it was
/// proposed, so it cannot apply: a peer that does not lead, a stale epoch,
/// a key outside the region, an unknown region, a full mailbox, or a session
/// the region does not hold (refused at apply, applying nothing).
/// `StaleCommand` is not among them: a proposal dropped by a peer that
/// stopped may still commit through another.
pub fn refused_before_proposal(error: &errorpb::Error) -> bool {
    error.not_leader.is_some()
        || error.epoch_not_match.is_some()
        || error.key_not_in_region.is_some()
        || error.region_not_found.is_some()
        || error.server_is_busy.is_some()
        || error.session_expired.is_some()
        || error.store_not_match.is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sequences_grow_by_one_per_write_and_survive_retries() {
        let mut session = ClientSession::new(7);
        let mut first = session.next_write();
        assert_eq!(first.sequence(), 1);
        first.attempt_unanswered();
        assert_eq!(first.sequence(), 1, "a retry keeps its sequence");
        assert_eq!(session.next_write().sequence(), 2);
        assert_eq!(session.client_id(), 7);
    }

    #[test]
    fn a_write_refused_before_proposal_may_reopen_its_session() {
        let mut write = ClientSession::new(1).next_write();
        write.attempt_failed(&errorpb::Error {
            not_leader: Some(Default::default()),
            ..Default::default()
        });
        write.attempt_failed(&errorpb::Error {
            session_expired: Some(Default::default()),
            ..Default::default()
        });
        assert!(!write.maybe_applied());
        assert_eq!(write.on_session_expired(), OnSessionExpired::Reopen);
    }

    #[test]
    fn a_write_that_may_have_applied_gives_up_on_session_expired() {
        let mut unanswered = ClientSession::new(1).next_write();
        unanswered.attempt_unanswered();
        assert_eq!(unanswered.on_session_expired(), OnSessionExpired::GiveUp);

        let mut stale = ClientSession::new(1).next_write();
        stale.attempt_failed(&errorpb::Error {
            stale_command: Some(Default::default()),
            ..Default::default()
        });
        assert_eq!(stale.on_session_expired(), OnSessionExpired::GiveUp);
    }

    #[test]
    fn regions_are_open_until_forgotten() {
        let mut session = ClientSession::new(1);
        assert!(!session.is_open(3));
        session.opened(3);
        assert!(session.is_open(3));
        session.forget(3);
        assert!(!session.is_open(3));
    }
}
