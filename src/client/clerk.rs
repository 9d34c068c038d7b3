//! [`Clerk`]: exactly-once `put` and `append`, and `get`, over a
//! [`Client`] — MIT 6.824's Clerk, on the client sessions of
//! `docs/PROTOCOL_EXTENSIONS.md` ("Client sessions").
//!
//! A Clerk owns one session: a client id from the scheduler's `AllocID`
//! (unique across clients and restarts) and a [`ClientSession`] (the next
//! sequence number, the regions the session is open in). It runs one
//! operation at a time (`&mut self`), so the sequence numbers it sends
//! grow with its operations, as the stores' session tables expect.
//!
//! One write (`put`, `append`), exactly the protocol's steps:
//! 1. it takes the next sequence number ([`ClientSession::next_write`]);
//! 2. in the region holding the key, unless the session was opened there
//!    before, `OpenSession` until it succeeds (idempotent); a region the
//!    Clerk has not seen before — a split's new half included — is opened
//!    first (the store copies the table on a split, so that open changes
//!    nothing there);
//! 3. it sends the write with `(client_id, sequence)` through the
//!    client's routing (`super::route`: the cached leader first, hints
//!    followed, timeouts and unreachable stores retried elsewhere), with
//!    the same sequence on every attempt, until it succeeds or the
//!    operation's deadline ([`super::ClientOptions::timeout`]) passes;
//! 4. on `SessionExpired`: if no attempt can have applied, it forgets the
//!    region, opens the session again and resends the same sequence;
//!    otherwise it returns [`Error::SessionExpired`].
//!
//! `get` reads through the leader like [`Client::raw_get`]; a missing key
//! is an empty value, as in 6.824. Reads carry no session: they change
//! nothing, so repeating one is harmless.
//!
//! What happens when a Clerk gives up and retries later: when the
//! deadline passes, the write's outcome is unknown ([`Error::Timeout`];
//! likewise [`Error::SessionExpired`]) — it may have applied, or not, or
//! still apply from a proposal in flight. The Clerk does not remember it:
//! the next operation, a retry by the caller included, takes a new
//! sequence and is a new write. A `put` retried so is harmless (the same
//! value again), but an `append` may then apply twice, if the first
//! attempt did apply. A caller that must not lose exactly-once should give
//! the Clerk a deadline long enough to ride out leader changes and
//! partitions instead of retrying itself. How late a retry of the same
//! sequence may still be deduplicated is bounded by the session's
//! time-to-live on the store: a session idle for longer is dropped, and
//! its next write gets `SessionExpired`.
//!
//! Invariant: a sequence number is sent for one write only; every
//! attempt of that write carries it.

use kvproto::kvrpcpb::{RawAppendRequest, RawPutRequest};
use slog::debug;

use super::Client;
use super::errors::{Error, Result};
use super::route::{InSession, RawRequest};
use super::session::ClientSession;

/// A client of a cluster with exactly-once writes; see the module docs.
#[derive(Debug)]
pub struct Clerk {
    client: Client,
    session: ClientSession,
}

impl Clerk {
    /// A Clerk writing through `client`, with a client id newly allocated
    /// by the scheduler (`AllocID`, retried until the client's timeout).
    pub async fn new(client: Client) -> Result<Clerk> {
        let client_id = client.alloc_id().await?;
        debug!(client.inner.logger, "clerk started"; "client_id" => client_id);
        Ok(Clerk {
            client,
            session: ClientSession::new(client_id),
        })
    }

    /// The Clerk's client (session) id.
    pub fn client_id(&self) -> u64 {
        self.session.client_id()
    }

    /// Sets `key` to `value` (column family `default`), exactly once.
    /// [`Error::Timeout`] and [`Error::SessionExpired`] leave the outcome
    /// unknown; see the module docs.
    pub async fn put(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let request = RawPutRequest {
            context: None,
            key: key.to_vec(),
            value: value.to_vec(),
            cf: String::new(),
        };
        self.write(key, &request).await
    }

    /// Appends `value` to `key`'s value (column family `default`; a
    /// missing key counts as empty), exactly once. [`Error::Timeout`] and
    /// [`Error::SessionExpired`] leave the outcome unknown; see the module
    /// docs.
    pub async fn append(&mut self, key: &[u8], value: &[u8]) -> Result<()> {
        let request = RawAppendRequest {
            context: None,
            key: key.to_vec(),
            value: value.to_vec(),
            cf: String::new(),
        };
        self.write(key, &request).await
    }

    /// `key`'s value (column family `default`); empty when it has none.
    pub async fn get(&mut self, key: &[u8]) -> Result<Vec<u8>> {
        Ok(self.client.raw_get("", key).await?.unwrap_or_default())
    }

    /// One write of the session (module docs, steps 1–4).
    async fn write<Q: RawRequest>(&mut self, key: &[u8], request: &Q) -> Result<()> {
        let mut write = self.session.next_write();
        let deadline = self.client.deadline();
        let in_session = InSession {
            session: &mut self.session,
            write: &mut write,
        };
        let result = self
            .client
            .call_region_in_session(key, request, deadline, in_session)
            .await;
        if let Err(e @ (Error::Timeout { .. } | Error::SessionExpired { .. })) = &result {
            debug!(self.client.inner.logger, "write outcome unknown"; "op" => Q::OP,
                "client_id" => self.session.client_id(), "sequence" => write.sequence(),
                "maybe_applied" => write.maybe_applied(), "err" => %e);
        }
        result.map(|_| ())
    }
}
