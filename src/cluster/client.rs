//! [`Client`]: commands to the in-process cluster's stores, one attempt at
//! a time or retried until the region's leader answers.
//!
//! A command goes straight into the target store's router with a callback
//! (through [`crate::command::submit`], so a refusal comes back as a region
//! error), and the client waits for the answer: what a caller measures is
//! the store's work — proposal, replication, fsync on a quorum, apply,
//! answer. No gRPC is involved.
//!
//! Retrying ([`Client::call_on_leader`]), by the region error an attempt
//! gets:
//!
//! | answer | next attempt |
//! |---|---|
//! | success | none: the answering peer becomes the region's known leader |
//! | `NotLeader` with a new hint | the hinted peer, at once (unless the previous attempt also followed a hint: then after the back-off) |
//! | `NotLeader` without one, `StaleCommand`, `RegionNotFound`, no answer | the next store, after the back-off |
//! | `ServerIsBusy` | the same peer (it leads, it is only loaded), after the back-off or the `backoff_ms` it asks for, whichever is longer |
//! | `EpochNotMatch` | the same peer with the newer epoch the error carries, after the back-off |
//! | `KeyNotInRegion` (from [`Client::put`], [`Client::get`]) | the region the scheduler says holds the key, after the back-off |
//! | any other error | none: the answer is returned, a retry cannot fix it |
//!
//! Every attempt and every wait is bounded by the call's deadline.
//!
//! Two faces of one client: [`AsyncClient`] does the work and is what a
//! task on the store runtime uses (the bench's clients, which stand where
//! the gRPC service's handlers do); [`Client`] blocks on it, for tests and
//! tools on plain threads. Both are cheap to clone and own what they use
//! (the cluster's [`Directory`]), so a task may outlive any borrow.
//!
//! A client may go through a [`ClientLink`] ([`Client::with_link`]): a
//! store out of its reach is skipped as if it were down, and a request or
//! a reply the link loses counts as an attempt without an answer.
//! [`Client::call_on_leader_observed`] reports every failed attempt, so
//! that a caller can tell whether an attempt may have been applied (a
//! session write, `super::clerk`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kvproto::errorpb;
use kvproto::metapb;
use kvproto::raft_cmdpb::{
    CmdType, GetRequest, PutRequest, RaftCmdRequest, RaftRequestHeader, Request,
};
use router::{CallbackReceiver, CmdResponse};
use scheduler_stub::SchedulerClient as _;
use storage::CF_DEFAULT;

use super::ClusterError;
use super::directory::Directory;
use super::link::ClientLink;
use crate::command;

/// How long a retry waits when no leader hint says where to go.
pub const RETRY_BACKOFF: Duration = Duration::from_millis(10);
/// How long one attempt waits for its answer, unless set otherwise: a
/// proposal held by a leader cut off from its quorum is never answered
/// until it loses leadership, and the client should try elsewhere.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(1);

/// How raftstore's `PeerNotMatch` error message begins (errorpb has no field
/// for it).
const PEER_NOT_MATCH: &str = "peer not match";

/// Attempts of a call that were retried, by the reason they failed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Retries {
    /// `NotLeader`: the target was not the leader (a hint is followed).
    pub not_leader: u64,
    /// `StaleCommand`: the entry was overwritten or the peer stopped.
    pub stale_command: u64,
    /// `ServerIsBusy`: the peer's mailbox was full.
    pub server_is_busy: u64,
    /// No answer: the store was not running or the attempt timed out.
    pub no_answer: u64,
    /// Any other retryable region error (`RegionNotFound`, `EpochNotMatch`).
    pub other: u64,
}

impl Retries {
    /// Every retried attempt.
    pub fn total(&self) -> u64 {
        self.not_leader + self.stale_command + self.server_is_busy + self.no_answer + self.other
    }

    /// Adds `other`'s counts to these.
    pub fn add(&mut self, other: &Retries) {
        self.not_leader += other.not_leader;
        self.stale_command += other.stale_command;
        self.server_is_busy += other.server_is_busy;
        self.no_answer += other.no_answer;
        self.other += other.other;
    }
}

/// The answer a retried call ended with.
#[derive(Debug)]
pub struct Answer {
    /// A success, or a region error no retry can fix.
    pub response: CmdResponse,
    /// The attempts retried before it.
    pub retries: Retries,
}

/// A retried call got no answer worth returning in time.
#[derive(Debug, Clone, thiserror::Error)]
#[error("no answer within {timeout:?} ({} retries; last: {last})", .retries.total())]
pub struct TimedOut {
    /// The time allowed.
    pub timeout: Duration,
    /// The attempts retried.
    pub retries: Retries,
    /// What the last attempt got.
    pub last: String,
}

/// How one failed attempt of [`Client::call_on_leader_observed`] ended.
#[derive(Debug, Clone, Copy)]
pub enum Attempt<'a> {
    /// Never handed to a store (it is down, or out of the client's reach):
    /// it cannot be applied.
    NotSent,
    /// Handed over (or lost on the way: the client cannot tell), and no
    /// answer came back: it may be applied.
    Unanswered,
    /// Answered with a region error the client retries.
    Failed(&'a errorpb::Error),
}

/// What a caller learns of each attempt that is retried.
pub type Observer<'o> = dyn FnMut(Attempt<'_>) + Send + 'o;

/// A client of one [`super::Cluster`] whose calls are futures: for tasks
/// on a tokio runtime with a timer (the store runtime,
/// [`super::Cluster::runtime`]).
#[derive(Clone)]
pub struct AsyncClient {
    directory: Arc<Directory>,
    attempt_timeout: Duration,
    /// What the client's connection lets through; `None`: everything.
    link: Option<Arc<ClientLink>>,
}

/// A client of one [`super::Cluster`] whose calls block: an [`AsyncClient`]
/// driven on the calling thread. Call it from plain threads, never from
/// inside an async task.
#[derive(Clone)]
pub struct Client {
    inner: AsyncClient,
    runtime: tokio::runtime::Handle,
}

impl Client {
    pub(super) fn new(directory: Arc<Directory>, runtime: tokio::runtime::Handle) -> Self {
        Client {
            inner: AsyncClient {
                directory,
                attempt_timeout: ATTEMPT_TIMEOUT,
                link: None,
            },
            runtime,
        }
    }

    /// The same client, for tasks on the store runtime.
    pub fn into_async(self) -> AsyncClient {
        self.inner
    }

    /// Sends every command through `link`: only to the stores it reaches,
    /// losing what it loses.
    pub fn with_link(mut self, link: Arc<ClientLink>) -> Self {
        self.inner.link = Some(link);
        self
    }

    /// How long one attempt of [`Client::call_on_leader`] waits for its
    /// answer ([`ATTEMPT_TIMEOUT`] unless set).
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.inner.attempt_timeout = timeout;
        self
    }

    /// Hands `request` to the peer its header names, without waiting. The
    /// answer arrives on the receiver (a region error if the router refused
    /// the command); `None` if that store is not running or out of the
    /// client's reach.
    pub fn send(&self, request: RaftCmdRequest) -> Option<CallbackReceiver> {
        self.inner.send(request)
    }

    /// Waits up to `timeout` for the answer of a command [`Client::send`]
    /// sent.
    pub fn wait(&self, answer: CallbackReceiver, timeout: Duration) -> Option<CmdResponse> {
        // The timer must be made inside the runtime: in the future.
        self.runtime.block_on(AsyncClient::wait(answer, timeout))
    }

    /// Sends `request` to the peer it names and waits up to `timeout` for
    /// the answer; `None` if the store is down or no answer came.
    pub fn call(&self, request: RaftCmdRequest, timeout: Duration) -> Option<CmdResponse> {
        let answer = self.send(request)?;
        self.wait(answer, timeout)
    }

    /// [`AsyncClient::call_on_leader`], blocking.
    pub fn call_on_leader(
        &self,
        request: RaftCmdRequest,
        timeout: Duration,
    ) -> Result<Answer, TimedOut> {
        self.runtime
            .block_on(self.inner.call_on_leader(request, timeout))
    }

    /// [`AsyncClient::call_on_leader_observed`], blocking.
    pub fn call_on_leader_observed(
        &self,
        request: RaftCmdRequest,
        timeout: Duration,
        observe: &mut Observer<'_>,
    ) -> Result<Answer, TimedOut> {
        self.runtime.block_on(
            self.inner
                .call_on_leader_observed(request, timeout, observe),
        )
    }

    /// [`AsyncClient::put`], blocking.
    pub fn put(
        &self,
        key: Vec<u8>,
        value: Vec<u8>,
        timeout: Duration,
    ) -> Result<Retries, ClusterError> {
        self.runtime.block_on(self.inner.put(key, value, timeout))
    }

    /// [`AsyncClient::get`], blocking.
    pub fn get(
        &self,
        key: Vec<u8>,
        timeout: Duration,
    ) -> Result<(Option<Vec<u8>>, Retries), ClusterError> {
        self.runtime.block_on(self.inner.get(key, timeout))
    }
}

impl AsyncClient {
    fn reaches(&self, store_id: u64) -> bool {
        self.link.as_ref().is_none_or(|link| link.reaches(store_id))
    }

    fn loses_request(&self) -> bool {
        self.link.as_ref().is_some_and(|link| link.loses_request())
    }

    fn loses_reply(&self) -> bool {
        self.link.as_ref().is_some_and(|link| link.loses_reply())
    }

    /// [`Client::send`].
    fn send(&self, request: RaftCmdRequest) -> Option<CallbackReceiver> {
        let header = request.header.unwrap_or_default();
        let store_id = header.peer.map_or(0, |p| p.store_id);
        if !self.reaches(store_id) {
            return None;
        }
        let router = self.directory.router(store_id)?;
        Some(command::submit(&router, header.region_id, request))
    }

    /// The answer of a sent command, if it comes within `timeout`.
    async fn wait(answer: CallbackReceiver, timeout: Duration) -> Option<CmdResponse> {
        tokio::time::timeout(timeout, answer)
            .await
            .ok()
            .and_then(Result::ok)
    }

    /// Sends `request` to its region's leader, retrying as the module doc
    /// says, until `timeout`.
    pub async fn call_on_leader(
        &self,
        request: RaftCmdRequest,
        timeout: Duration,
    ) -> Result<Answer, TimedOut> {
        self.call_on_leader_observed(request, timeout, &mut |_| {})
            .await
    }

    /// [`AsyncClient::call_on_leader`], telling `observe` how each attempt
    /// that is retried ended (the last attempt's answer is the result).
    pub async fn call_on_leader_observed(
        &self,
        mut request: RaftCmdRequest,
        timeout: Duration,
        observe: &mut Observer<'_>,
    ) -> Result<Answer, TimedOut> {
        let deadline = Instant::now() + timeout;
        let region_id = request.header.as_ref().map_or(0, |h| h.region_id);
        let stores = self.directory.store_ids();
        // Index into `stores` of the next candidate.
        let mut candidate = 0;
        let mut retries = Retries::default();
        let mut last = String::from("no attempt made");
        // The peer to try next; `None`: the next candidate store.
        let mut next = self.directory.leader(region_id);
        // Whether the attempt just made followed a `NotLeader` hint.
        let mut followed_hint = false;
        while Instant::now() < deadline {
            let target = next.take().unwrap_or_else(|| {
                let store_id = self.next_candidate(&stores, &mut candidate);
                self.peer_on(region_id, store_id).unwrap_or(metapb::Peer {
                    id: store_id,
                    store_id,
                })
            });
            let header = request
                .header
                .get_or_insert_with(RaftRequestHeader::default);
            header.peer = Some(target);
            header.region_epoch = self
                .directory
                .region(region_id)
                .and_then(|r| r.region_epoch);
            if self.reaches(target.store_id) && self.loses_request() {
                // The client cannot tell a lost request from a lost reply
                // (a store out of reach is never sent anything: below).
                retries.no_answer += 1;
                last = format!("request to store {} lost", target.store_id);
                observe(Attempt::Unanswered);
                followed_hint = false;
                back_off(RETRY_BACKOFF, deadline).await;
                continue;
            }
            let Some(answer) = self.send(request.clone()) else {
                retries.no_answer += 1;
                last = format!("store {} is not running or not reachable", target.store_id);
                observe(Attempt::NotSent);
                followed_hint = false;
                back_off(RETRY_BACKOFF, deadline).await;
                continue;
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let answered = Self::wait(answer, left.min(self.attempt_timeout)).await;
            let Some(response) = answered.filter(|_| !self.loses_reply()) else {
                retries.no_answer += 1;
                last = format!("no answer from store {}", target.store_id);
                observe(Attempt::Unanswered);
                followed_hint = false;
                continue;
            };
            let Some(error) = response.region_error() else {
                self.directory.note_leader(region_id, target);
                return Ok(Answer { response, retries });
            };
            last = error.message.clone();
            let backoff = if let Some(not_leader) = &error.not_leader {
                retries.not_leader += 1;
                next = not_leader.leader.filter(|l| *l != target);
                // Two hints in a row: an election is likely running, and
                // waiting for it is cheaper than bouncing between peers.
                let at_once = next.is_some() && !followed_hint;
                followed_hint = next.is_some();
                if at_once {
                    Duration::ZERO
                } else {
                    RETRY_BACKOFF
                }
            } else {
                followed_hint = false;
                match self.retry_after(region_id, error, target, &mut retries, &mut next) {
                    Some(backoff) => backoff,
                    None => return Ok(Answer { response, retries }),
                }
            };
            observe(Attempt::Failed(error));
            back_off(backoff, deadline).await;
        }
        Err(TimedOut {
            timeout,
            retries,
            last,
        })
    }

    /// The next store to try without a hint, round robin over `stores`
    /// from `*index`, skipping those out of the client's reach (all of
    /// them out of reach: the next one anyway, whose attempt then fails).
    fn next_candidate(&self, stores: &[u64], index: &mut usize) -> u64 {
        for _ in 0..stores.len() {
            let store_id = stores[*index % stores.len()];
            *index += 1;
            if self.reaches(store_id) {
                return store_id;
            }
        }
        let store_id = stores.get(*index % stores.len().max(1)).copied();
        *index += 1;
        store_id.unwrap_or_default()
    }

    /// For a region error other than `NotLeader`: counts it and returns the
    /// back-off before the next attempt (setting `next` to its target), or
    /// `None` if retrying cannot help.
    fn retry_after(
        &self,
        region_id: u64,
        error: &errorpb::Error,
        target: metapb::Peer,
        retries: &mut Retries,
        next: &mut Option<metapb::Peer>,
    ) -> Option<Duration> {
        if let Some(busy) = &error.server_is_busy {
            retries.server_is_busy += 1;
            *next = Some(target);
            return Some(RETRY_BACKOFF.max(Duration::from_millis(busy.backoff_ms)));
        }
        if let Some(epoch) = &error.epoch_not_match {
            retries.other += 1;
            for region in &epoch.current_regions {
                self.directory.note_region(region);
            }
            *next = Some(target);
            return Some(RETRY_BACKOFF);
        }
        if error.stale_command.is_some() {
            retries.stale_command += 1;
            return Some(RETRY_BACKOFF);
        }
        if error.region_not_found.is_some() {
            retries.other += 1;
            return Some(RETRY_BACKOFF);
        }
        if error.message.starts_with(PEER_NOT_MATCH) {
            // The cached peer ids are stale (the peer was removed and added
            // again under a new id). errorpb has no field for this error,
            // so it is known by its message (raftstore's `PeerNotMatch`).
            // Re-learn the region from the scheduler and try that store's
            // current peer next.
            retries.other += 1;
            if let Ok(Some((region, _))) = self.directory.scheduler().get_region_by_id(region_id) {
                self.directory.note_region(&region);
            }
            *next = self.peer_on(region_id, target.store_id);
            return Some(RETRY_BACKOFF);
        }
        None
    }

    fn peer_on(&self, region_id: u64, store_id: u64) -> Option<metapb::Peer> {
        self.directory
            .region(region_id)
            .and_then(|r| r.peers.iter().find(|p| p.store_id == store_id).copied())
    }

    /// Puts `key` = `value` in the default CF through the leader of the
    /// region holding `key`, retrying until `timeout`; when the region it
    /// tried no longer holds the key (it split), the client learns the
    /// region that does and tries there. Returns the attempts retried, by
    /// reason.
    pub async fn put(
        &self,
        key: Vec<u8>,
        value: Vec<u8>,
        timeout: Duration,
    ) -> Result<Retries, ClusterError> {
        let request = Request {
            cmd_type: CmdType::Put as i32,
            put: Some(PutRequest {
                cf: CF_DEFAULT.to_owned(),
                key: key.clone(),
                value,
            }),
            ..Default::default()
        };
        self.call_for_key(&key, request, timeout)
            .await
            .map(|(_, retries)| retries)
    }

    /// Reads `key` from the default CF through the leader of the region
    /// holding `key`, retrying as [`Client::put`] does. The read is a
    /// command of one `Get` request with the same header as a put: the
    /// leader serves it linearizably (lease or ReadIndex) without writing
    /// to the log. Returns the value (`None` when the key is absent: the
    /// protocol's `GetResponse` has no not-found flag, an absent key reads
    /// as an empty value) and the attempts retried.
    pub async fn get(
        &self,
        key: Vec<u8>,
        timeout: Duration,
    ) -> Result<(Option<Vec<u8>>, Retries), ClusterError> {
        let request = Request {
            cmd_type: CmdType::Get as i32,
            get: Some(GetRequest {
                cf: CF_DEFAULT.to_owned(),
                key: key.clone(),
            }),
            ..Default::default()
        };
        let (response, retries) = self.call_for_key(&key, request, timeout).await?;
        let value = response
            .response
            .responses
            .into_iter()
            .next()
            .and_then(|r| r.get)
            .map(|g| g.value)
            .filter(|v| !v.is_empty());
        Ok((value, retries))
    }

    /// Sends the one-request command `request` about `key` to the leader of
    /// the region holding `key`, retrying until `timeout`, and moving to
    /// the region the scheduler names when the one tried no longer holds
    /// the key. Returns the successful answer and the attempts retried.
    async fn call_for_key(
        &self,
        key: &[u8],
        request: Request,
        timeout: Duration,
    ) -> Result<(CmdResponse, Retries), ClusterError> {
        let deadline = Instant::now() + timeout;
        let mut retries = Retries::default();
        loop {
            let region = self.directory.region_for_key(key).ok_or_else(|| TimedOut {
                timeout,
                retries,
                last: "no region known: the cluster is not started".to_owned(),
            })?;
            let command = RaftCmdRequest {
                header: Some(RaftRequestHeader {
                    region_id: region.id,
                    region_epoch: region.region_epoch,
                    ..Default::default()
                }),
                requests: vec![request.clone()],
                admin_request: None,
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = self.call_on_leader(command, left).await.map_err(|mut e| {
                e.timeout = timeout;
                e.retries.add(&retries);
                e
            })?;
            retries.add(&answer.retries);
            match answer.response.region_error() {
                None => return Ok((answer.response, retries)),
                Some(error) if error.key_not_in_region.is_some() && Instant::now() < deadline => {
                    retries.other += 1;
                    self.directory.refresh_region_for_key(key);
                    back_off(RETRY_BACKOFF, deadline).await;
                }
                Some(error) => return Err(ClusterError::Failed(Box::new(error.clone()))),
            }
        }
    }
}

/// Waits `backoff`, or until `deadline` if that comes first.
async fn back_off(backoff: Duration, deadline: Instant) {
    let left = deadline.saturating_duration_since(Instant::now());
    tokio::time::sleep(backoff.min(left)).await;
}

#[cfg(test)]
mod tests {
    use raftstore::Config;

    use super::*;
    use crate::cluster::{Cluster, ClusterOptions, FIRST_REGION_ID};

    fn put_command(cluster: &Cluster) -> RaftCmdRequest {
        RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: FIRST_REGION_ID,
                region_epoch: cluster.region(FIRST_REGION_ID).and_then(|r| r.region_epoch),
                ..Default::default()
            }),
            requests: vec![Request {
                cmd_type: CmdType::Put as i32,
                put: Some(PutRequest {
                    cf: CF_DEFAULT.to_owned(),
                    key: b"k".to_vec(),
                    value: b"v".to_vec(),
                }),
                ..Default::default()
            }],
            admin_request: None,
        }
    }

    /// What `link` makes of every attempt of a put, as observed.
    fn observed(cluster: &Cluster, link: &Arc<ClientLink>) -> Vec<&'static str> {
        let mut seen = Vec::new();
        let result = cluster
            .client()
            .with_link(Arc::clone(link))
            .call_on_leader_observed(
                put_command(cluster),
                Duration::from_millis(200),
                &mut |attempt| {
                    seen.push(match attempt {
                        Attempt::NotSent => "not sent",
                        Attempt::Unanswered => "unanswered",
                        Attempt::Failed(_) => "failed",
                    })
                },
            );
        assert!(result.is_err(), "nothing can succeed through this link");
        seen
    }

    #[test]
    fn attempts_out_of_reach_are_not_sent_and_lost_ones_are_unanswered() {
        let cluster =
            Cluster::new(ClusterOptions::new(3, Config::for_tests())).expect("build the cluster");
        cluster.start().expect("start the cluster");

        let unreachable = Arc::new(ClientLink::unreliable(100, 1));
        unreachable.connect_only(&[]);
        let seen = observed(&cluster, &unreachable);
        assert!(
            !seen.is_empty() && seen.iter().all(|&a| a == "not sent"),
            "{seen:?}"
        );

        let lossy = Arc::new(ClientLink::unreliable(100, 1));
        let seen = observed(&cluster, &lossy);
        assert!(
            !seen.is_empty() && seen.iter().all(|&a| a == "unanswered"),
            "{seen:?}"
        );
    }
}
