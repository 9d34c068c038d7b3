//! Sending one Raw API request to the region that holds its key, retried
//! until it succeeds, fails for good, or the operation's deadline passes.
//!
//! One attempt: locate the key's region (cache, else `GetRegion`), pick
//! the peer to try (the cached leader, else the first peer), find its
//! store's address (cache, else `GetStore`), send the request with a
//! `Context` naming the region, its epoch and the peer, and sort the
//! answer:
//!
//! | answer | cache | next attempt |
//! |---|---|---|
//! | success, no `error` | the peer is the leader | none: done |
//! | `error` string, a gRPC status other than a transport failure | — | none: returned |
//! | `NotLeader` naming a leader | the leader (or, if it is no peer the cache knows, the region is dropped) | at once |
//! | `NotLeader` naming none | the next peer | after a backoff |
//! | `EpochNotMatch` | `current_regions` replace what they overlap; the stale region is dropped | at once (re-located) |
//! | `RegionNotFound`, `KeyNotInRegion` | the region is dropped | at once (re-located) |
//! | `ServerIsBusy` | — | after a backoff, at least what the store asks |
//! | `StaleCommand` | — | after a backoff |
//! | `StoreNotMatch` | the store's address is dropped | after a backoff |
//! | transport failure, no answer in time | the next peer; on a transport failure the store's address is dropped too | at once |
//! | the store's "peer not match" (the cached peer ids are stale; errorpb has no field for it) | the region is dropped | after a backoff (re-located) |
//! | `SessionExpired` | — | none: [`Error::SessionExpired`] (a session write decides for itself, below) |
//! | another region error | — | none: returned |
//!
//! Resending a request whose answer was lost (a broken connection, no
//! answer in time) is safe for `RawGet`, `RawScan` and `OpenSession`. A
//! resent `RawPut` or `RawDelete` without a session has the same effect
//! as the first on its own, but both may apply, and another client's write
//! to the key in between is then undone; a resent `RawAppend` may append
//! twice. Exactly once takes a session (the Clerk, `super::clerk`).
//!
//! A write of a client session (`call_region_in_session`,
//! `docs/PROTOCOL_EXTENSIONS.md` "Client sessions" steps 2–4) goes through
//! the same loop, with its sequence fixed for every attempt:
//! - an attempt first sends `OpenSession` to the same peer unless the
//!   session is open in the located region (a new region id, after a split
//!   too, is opened first); that request is routed like any other, and
//!   the write goes only once it succeeded;
//! - the write carries `client_id` and its sequence in its context; an
//!   attempt with no answer, or answered with a region error that does not
//!   say it was refused before proposal
//!   ([`super::session::refused_before_proposal`]), marks the write as
//!   possibly applied;
//! - `SessionExpired`: while no attempt can have applied, the session is
//!   forgotten in the region and the next attempt (at once) opens it again
//!   and resends the same sequence; otherwise the write ends with
//!   [`Error::SessionExpired`], its outcome unknown.
//!
//! "At once" is at most one attempt in a row: an attempt that would go at
//! once right after one that did waits a backoff instead, so two stores
//! pointing at each other, or every peer down, cannot spin the client.
//! The backoff doubles from [`super::ClientOptions::backoff_min`] to
//! [`super::ClientOptions::backoff_max`]; a wait that would end past the
//! deadline ends the operation with [`Error::Timeout`] naming the last
//! failure.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use kvproto::errorpb;
use kvproto::kvrpcpb::{
    Context, OpenSessionRequest, OpenSessionResponse, RawAppendRequest, RawAppendResponse,
    RawDeleteRequest, RawDeleteResponse, RawGetRequest, RawGetResponse, RawPutRequest,
    RawPutResponse, RawScanRequest, RawScanResponse,
};
use kvproto::metapb::{Peer, Region, StoreState};
use slog::debug;
use tokio::time::Instant;

use super::Client;
use super::errors::{Error, Result};
use super::retry::{Backoff, Failure, Failures, attempt_timeout, is_transport_error};
use super::session::{ClientSession, OnSessionExpired, SessionWrite};
use super::stores::KvClient;

/// A boxed response future: the requests' `send`s differ only in the
/// method they call.
type ResponseFuture<R> =
    Pin<Box<dyn Future<Output = std::result::Result<tonic::Response<R>, tonic::Status>> + Send>>;

/// A request of the Raw API, sent to one region.
pub(crate) trait RawRequest: Clone + Send + Sync + 'static {
    /// Its response.
    type Response: RawResponse + Send + 'static;
    /// The gRPC method, for errors and logs.
    const OP: &'static str;
    /// Sets the region, epoch and peer the request is for.
    fn set_context(&mut self, ctx: Context);
    /// Sends it over `client`.
    fn send(client: KvClient, request: Self) -> ResponseFuture<Self::Response>;
}

/// A response of the Raw API: a region error, an error string, or the answer.
pub(crate) trait RawResponse {
    /// Takes the region error out, if any.
    fn take_region_error(&mut self) -> Option<errorpb::Error>;
    /// The error string (empty: none).
    fn error(&self) -> &str;
}

macro_rules! raw_request {
    ($request:ty, $response:ty, $op:literal, $method:ident) => {
        impl RawRequest for $request {
            type Response = $response;
            const OP: &'static str = $op;

            fn set_context(&mut self, ctx: Context) {
                self.context = Some(ctx);
            }

            fn send(mut client: KvClient, request: Self) -> ResponseFuture<Self::Response> {
                Box::pin(async move { client.$method(request).await })
            }
        }

        impl RawResponse for $response {
            fn take_region_error(&mut self) -> Option<errorpb::Error> {
                self.region_error.take()
            }

            fn error(&self) -> &str {
                &self.error
            }
        }
    };
}

raw_request!(RawGetRequest, RawGetResponse, "RawGet", raw_get);
raw_request!(RawPutRequest, RawPutResponse, "RawPut", raw_put);
raw_request!(RawDeleteRequest, RawDeleteResponse, "RawDelete", raw_delete);
raw_request!(RawScanRequest, RawScanResponse, "RawScan", raw_scan);
raw_request!(RawAppendRequest, RawAppendResponse, "RawAppend", raw_append);
raw_request!(
    OpenSessionRequest,
    OpenSessionResponse,
    "OpenSession",
    open_session
);

/// A write of a client session through the attempts of one call: the
/// session (the regions it is open in) and the write (its sequence, and
/// whether an attempt of it may have applied).
pub(crate) struct InSession<'a> {
    /// The client's session.
    pub(crate) session: &'a mut ClientSession,
    /// The write being sent.
    pub(crate) write: &'a mut SessionWrite,
}

impl InSession<'_> {
    /// Records a failed attempt of the write to `region_id` and decides
    /// the next step: `SessionExpired` re-opens the session only while no
    /// attempt can have applied (`ClientSession` docs); otherwise `step`,
    /// as for any request.
    fn after_failure(&mut self, region_id: u64, failed: Failed, step: Step) -> Step {
        match failed {
            Failed::Unanswered => {
                self.write.attempt_unanswered();
                step
            }
            Failed::Region(error) => {
                self.write.attempt_failed(&error);
                if error.session_expired.is_none() {
                    return step;
                }
                let (client_id, sequence) = (self.session.client_id(), self.write.sequence());
                match self.write.on_session_expired() {
                    OnSessionExpired::Reopen => {
                        self.session.forget(region_id);
                        Step::now(format!(
                            "region {region_id}: the session of client {client_id} expired \
                             before write {sequence} was proposed; opening it again"
                        ))
                    }
                    OnSessionExpired::GiveUp => Step::Fatal(Error::SessionExpired {
                        client_id,
                        sequence,
                    }),
                }
            }
            Failed::Refused => step,
        }
    }
}

/// What became of an attempt that failed, for a session's accounting.
#[derive(Debug)]
enum Failed {
    /// No answer: a broken connection or none in time. The request may
    /// have been proposed.
    Unanswered,
    /// The store answered this region error (boxed: it is large, and
    /// travels in every failed attempt's result).
    Region(Box<errorpb::Error>),
    /// Refused for good: an error string, or a gRPC status other than a
    /// transport failure. Nothing was proposed.
    Refused,
}

/// When the next attempt goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// At once (unless the previous attempt also went at once).
    Now,
    /// After the next backoff, and at least this long.
    Backoff(Duration),
}

/// Why an attempt did not answer the operation.
#[derive(Debug)]
enum Step {
    Retry { reason: String, wait: Wait },
    Fatal(Error),
}

impl Step {
    fn now(reason: String) -> Step {
        Step::Retry {
            reason,
            wait: Wait::Now,
        }
    }

    fn backoff(reason: String) -> Step {
        Step::Retry {
            reason,
            wait: Wait::Backoff(Duration::ZERO),
        }
    }
}

/// A successful answer and the region that gave it.
#[derive(Debug)]
pub(crate) struct Answered<R> {
    /// The region as the client knew it when it sent the request.
    pub(crate) region: Region,
    /// The peer that answered.
    pub(crate) peer: Peer,
    /// The answer, with no region error and no error string.
    pub(crate) response: R,
}

/// A key as text for messages: printable ASCII as is, other bytes escaped.
pub(crate) fn show_key(key: &[u8]) -> String {
    key.escape_ascii().to_string()
}

/// The peer tried next, for messages.
fn show_next(peer: Option<Peer>) -> String {
    match peer {
        Some(peer) => format!("next: peer {} on store {}", peer.id, peer.store_id),
        None => "the region is no longer cached".to_owned(),
    }
}

impl Client {
    /// Sends `request` for `key`'s region until it succeeds, fails for
    /// good, or `deadline` passes; see the module docs.
    pub(crate) async fn call_region<Q: RawRequest>(
        &self,
        key: &[u8],
        request: &Q,
        deadline: Instant,
    ) -> Result<Answered<Q::Response>> {
        self.call(key, request, deadline, None).await
    }

    /// [`Self::call_region`] for a write of `session`: each attempt opens
    /// the session in the key's region first unless it is open there, and
    /// carries the write's sequence; see the module docs.
    pub(crate) async fn call_region_in_session<Q: RawRequest>(
        &self,
        key: &[u8],
        request: &Q,
        deadline: Instant,
        session: InSession<'_>,
    ) -> Result<Answered<Q::Response>> {
        self.call(key, request, deadline, Some(session)).await
    }

    async fn call<Q: RawRequest>(
        &self,
        key: &[u8],
        request: &Q,
        deadline: Instant,
        mut session: Option<InSession<'_>>,
    ) -> Result<Answered<Q::Response>> {
        let opts = &self.inner.opts;
        let mut backoff = Backoff::new(opts.backoff_min, opts.backoff_max);
        let mut went_at_once = false;
        let mut failures = Failures::default();
        loop {
            let attempt = self.attempt(key, request, deadline, session.as_mut()).await;
            let (reason, wait) = match attempt {
                Ok(answered) => return Ok(answered),
                Err(Step::Fatal(e)) => return Err(e),
                Err(Step::Retry { reason, wait }) => (reason, wait),
            };
            debug!(self.inner.logger, "retrying"; "op" => Q::OP, "key" => show_key(key),
                "reason" => &reason, "wait" => ?wait);
            failures.record(&reason, deadline);
            let waited = match wait {
                Wait::Now if !went_at_once => {
                    went_at_once = true;
                    Instant::now() < deadline
                }
                Wait::Now => {
                    went_at_once = false;
                    backoff.wait(deadline, Duration::ZERO).await
                }
                Wait::Backoff(at_least) => {
                    went_at_once = false;
                    backoff.wait(deadline, at_least).await
                }
            };
            if !waited {
                return Err(failures.timeout(Q::OP, opts.timeout));
            }
        }
    }

    async fn attempt<Q: RawRequest>(
        &self,
        key: &[u8],
        request: &Q,
        deadline: Instant,
        session: Option<&mut InSession<'_>>,
    ) -> std::result::Result<Answered<Q::Response>, Step> {
        let (region, peer) = self.locate(key, deadline).await?;
        let addr = self.store_address(&region, peer, deadline).await?;
        let client = self.inner.stores.client(&addr).map_err(Step::Fatal)?;
        let mut ctx = Context {
            region_id: region.id,
            region_epoch: region.region_epoch,
            peer: Some(peer),
            term: 0,
            client_id: 0,
            sequence: 0,
        };
        let Some(session) = session else {
            let response = self
                .send_once(&region, peer, &addr, client, request.clone(), ctx, deadline)
                .await
                .map_err(|(step, _)| step)?;
            return Ok(Answered {
                region,
                peer,
                response,
            });
        };
        ctx.client_id = session.session.client_id();
        if !session.session.is_open(region.id) {
            // Step 2 of a session write: open it in the region first (an
            // idempotent command). Its failures are routed as any
            // request's; the write itself has not been sent.
            let open = OpenSessionRequest { context: None };
            self.send_once(&region, peer, &addr, client.clone(), open, ctx, deadline)
                .await
                .map_err(|(step, _)| step)?;
            session.session.opened(region.id);
            debug!(self.inner.logger, "session opened"; "region_id" => region.id,
                "client_id" => ctx.client_id);
        }
        ctx.sequence = session.write.sequence();
        match self
            .send_once(&region, peer, &addr, client, request.clone(), ctx, deadline)
            .await
        {
            Ok(response) => Ok(Answered {
                region,
                peer,
                response,
            }),
            Err((step, failed)) => Err(session.after_failure(region.id, failed, step)),
        }
    }

    /// Sends `request` with `ctx` to `peer` of `region` at `addr`, once,
    /// and sorts the answer (module docs); a failure comes with what became
    /// of the attempt.
    #[allow(
        clippy::too_many_arguments,
        reason = "one attempt's facts, each from a different step of it"
    )]
    async fn send_once<Q: RawRequest>(
        &self,
        region: &Region,
        peer: Peer,
        addr: &str,
        client: KvClient,
        mut request: Q,
        ctx: Context,
        deadline: Instant,
    ) -> std::result::Result<Q::Response, (Step, Failed)> {
        request.set_context(ctx);
        let timeout = attempt_timeout(deadline, self.inner.opts.attempt_timeout);
        let mut response = match tokio::time::timeout(timeout, Q::send(client, request)).await {
            Ok(Ok(response)) => response.into_inner(),
            Ok(Err(status)) if is_transport_error(&status) => {
                self.inner.stores.forget(peer.store_id);
                let next = self.lock_cache().switch_peer(region.id, peer);
                let step = Step::now(format!(
                    "store {} at {addr} unreachable ({:?}: {}); {}",
                    peer.store_id,
                    status.code(),
                    status.message(),
                    show_next(next)
                ));
                return Err((step, Failed::Unanswered));
            }
            Ok(Err(status)) => {
                let step = Step::Fatal(Error::Grpc {
                    call: Q::OP,
                    code: status.code(),
                    message: status.message().to_owned(),
                });
                return Err((step, Failed::Refused));
            }
            Err(_) => {
                let next = self.lock_cache().switch_peer(region.id, peer);
                let step = Step::now(format!(
                    "no answer from store {} at {addr} within {timeout:?}; {}",
                    peer.store_id,
                    show_next(next)
                ));
                return Err((step, Failed::Unanswered));
            }
        };
        if let Some(error) = response.take_region_error() {
            let step = self.on_region_error(Q::OP, region, peer, error.clone());
            return Err((step, Failed::Region(Box::new(error))));
        }
        if !response.error().is_empty() {
            let step = Step::Fatal(Error::Store {
                op: Q::OP,
                store_id: peer.store_id,
                message: response.error().to_owned(),
            });
            return Err((step, Failed::Refused));
        }
        // It answered, so it leads (Raw requests are served by the leader).
        self.lock_cache().update_leader(region.id, peer);
        Ok(response)
    }

    /// The region holding `key` and the peer to try: from the cache, or
    /// from the scheduler (then cached).
    async fn locate(
        &self,
        key: &[u8],
        deadline: Instant,
    ) -> std::result::Result<(Region, Peer), Step> {
        let cached = self
            .lock_cache()
            .locate(key)
            .map(|c| (c.region.clone(), c.target()));
        if let Some((region, target)) = cached {
            return match target {
                Some(peer) => Ok((region, peer)),
                None => {
                    self.lock_cache().remove(region.id);
                    Err(Step::backoff(format!("region {} has no peers", region.id)))
                }
            };
        }
        let timeout = attempt_timeout(deadline, self.inner.opts.attempt_timeout);
        let (region, leader) = match self.inner.scheduler.get_region(key, timeout).await {
            Ok(Some(found)) => found,
            Ok(None) => {
                return Err(Step::backoff(format!(
                    "no region covers key {:?} yet",
                    show_key(key)
                )));
            }
            Err(Failure::Retry(reason)) => return Err(Step::backoff(reason)),
            Err(Failure::Fatal(e)) => return Err(Step::Fatal(e)),
        };
        if !super::cache::key_in_range(key, &region.start_key, &region.end_key) {
            return Err(Step::backoff(format!(
                "the scheduler answered region {} for key {:?}, which it does not hold",
                region.id,
                show_key(key)
            )));
        }
        let mut cache = self.lock_cache();
        // A refused region (the cache knows a newer overlapping one) is
        // still tried once: its store's `EpochNotMatch` then fills the gap.
        let target = if cache.insert(region.clone(), leader) {
            cache.get(region.id).and_then(|c| c.target())
        } else {
            leader.or_else(|| region.peers.first().copied())
        };
        drop(cache);
        match target {
            Some(peer) => Ok((region, peer)),
            None => Err(Step::backoff(format!("region {} has no peers", region.id))),
        }
    }

    /// The address of `peer`'s store: from the pool, or from the scheduler
    /// (then cached). A store without a usable address moves the region's
    /// target to its next peer.
    async fn store_address(
        &self,
        region: &Region,
        peer: Peer,
        deadline: Instant,
    ) -> std::result::Result<String, Step> {
        if let Some(addr) = self.inner.stores.address(peer.store_id) {
            return Ok(addr);
        }
        let timeout = attempt_timeout(deadline, self.inner.opts.attempt_timeout);
        let unusable = match self.inner.scheduler.get_store(peer.store_id, timeout).await {
            Ok(store) if store.state() == StoreState::Tombstone => {
                format!("store {} is a tombstone", store.id)
            }
            Ok(store) if store.address.is_empty() => format!("store {} has no address", store.id),
            Ok(store) => {
                self.inner
                    .stores
                    .set_address(store.id, store.address.clone());
                return Ok(store.address);
            }
            Err(Failure::Retry(reason)) => reason,
            Err(Failure::Fatal(e)) => return Err(Step::Fatal(e)),
        };
        let next = self.lock_cache().switch_peer(region.id, peer);
        Err(Step::now(format!("{unusable}; {}", show_next(next))))
    }

    /// What a region error means for the cache and the next attempt; see
    /// the module docs.
    fn on_region_error(
        &self,
        op: &'static str,
        region: &Region,
        peer: Peer,
        error: errorpb::Error,
    ) -> Step {
        let id = region.id;
        let mut cache = self.lock_cache();
        if let Some(not_leader) = error.not_leader {
            return match not_leader.leader.filter(|l| l.id != 0) {
                Some(leader) if leader == peer => Step::backoff(format!(
                    "region {id}: peer {} is not the leader yet names itself",
                    peer.id
                )),
                Some(leader) if cache.update_leader(id, leader) => Step::now(format!(
                    "region {id}: peer {} is not the leader; peer {} on store {} is",
                    peer.id, leader.id, leader.store_id
                )),
                Some(leader) => {
                    // The leader is a peer the cached region does not have:
                    // its membership changed; look it up again.
                    cache.remove(id);
                    Step::now(format!(
                        "region {id}: the leader is peer {} on store {}, unknown to the cached region",
                        leader.id, leader.store_id
                    ))
                }
                None => {
                    let next = cache.switch_peer(id, peer);
                    Step::backoff(format!(
                        "region {id}: peer {} is not the leader and knows none; {}",
                        peer.id,
                        show_next(next)
                    ))
                }
            };
        }
        if let Some(epoch) = error.epoch_not_match {
            let current = epoch.current_regions.len();
            for region in epoch.current_regions {
                cache.insert(region, None);
            }
            if cache.get(id).map(|c| c.region.region_epoch) == Some(region.region_epoch) {
                cache.remove(id);
            }
            return Step::now(format!(
                "region {id}: epoch {:?} is stale ({current} current regions)",
                region.region_epoch.unwrap_or_default()
            ));
        }
        if error.region_not_found.is_some() {
            cache.remove(id);
            return Step::now(format!("region {id}: not found on store {}", peer.store_id));
        }
        if error.key_not_in_region.is_some() {
            cache.remove(id);
            return Step::now(format!(
                "region {id}: key not in region ({})",
                error.message
            ));
        }
        drop(cache);
        if let Some(expired) = error.session_expired {
            // Only the session's owner knows whether opening the session
            // again is safe (`InSession::after_failure`); a retry here
            // would get the same answer.
            return Step::Fatal(Error::SessionExpired {
                client_id: expired.client_id,
                sequence: expired.sequence,
            });
        }
        if let Some(busy) = error.server_is_busy {
            return Step::Retry {
                reason: format!(
                    "store {} is busy: {}",
                    peer.store_id,
                    if busy.reason.is_empty() {
                        &error.message
                    } else {
                        &busy.reason
                    }
                ),
                wait: Wait::Backoff(Duration::from_millis(busy.backoff_ms)),
            };
        }
        if error.stale_command.is_some() {
            return Step::backoff(format!("region {id}: stale command"));
        }
        if let Some(mismatch) = error.store_not_match {
            self.inner.stores.forget(peer.store_id);
            return Step::backoff(format!(
                "store mismatch: the request was for store {}, store {} answered",
                mismatch.request_store_id, mismatch.actual_store_id
            ));
        }
        if error.message.starts_with("peer not match") {
            // The store's peer of the region has another id than the cached
            // one (removed and added again): errorpb has no field for this
            // error, so it is known by its message. Look the region up
            // again, after a pause.
            self.lock_cache().remove(id);
            return Step::backoff(format!("region {id}: {}", error.message));
        }
        Step::Fatal(Error::Region {
            op,
            region_id: id,
            message: error.message,
        })
    }
}
