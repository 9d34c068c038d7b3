//! [`Clerk`]: MIT 6.824's key/value client (Lab 3's `Clerk`) over the
//! in-process cluster: `put`, `append` and `get` on string-like keys, each
//! retried until it succeeds, writes applied exactly once.
//!
//! A Clerk sends its commands as a [`Client`] does (into the stores'
//! routers, through [`Client::call_on_leader`], trying the region's known
//! leader first and following `NotLeader` hints), optionally through a
//! [`ClientLink`] that limits the stores it reaches and loses requests and
//! replies.
//!
//! A write (`Put`, `Append`) runs the client side of a session
//! (`docs/PROTOCOL_EXTENSIONS.md`, "Client sessions"; the state is
//! [`ClientSession`]):
//! 1. it takes the next sequence number;
//! 2. in the region holding the key, unless the session was opened there:
//!    `OpenSession` until it succeeds (idempotent);
//! 3. the write goes out as a command of one request whose header carries
//!    `{client_id, sequence}`, retried with the same sequence until it is
//!    answered; each failed attempt is recorded ([`SessionWrite`]): one
//!    without an answer, or refused after it may have been proposed, may
//!    have been applied;
//! 4. `SessionExpired`: if no attempt can have applied, the session is
//!    opened again and the write goes on with the same sequence; otherwise
//!    the write's outcome is unknown and the caller gets
//!    [`ClusterError::SessionLost`].
//!
//! A read is a `Get` through the leader ([`Client::get`]): linearizable,
//! outside the session (it changes nothing, so a repeat is harmless).
//!
//! Invariants:
//! - one operation in flight per Clerk (the lab's assumption; the methods
//!   take `&mut self`): sequence numbers are used in order, so the region
//!   can tell a retry from a new write. Many Clerks run at once.
//! - the client id is the scheduler's `AllocID`, never reused.
//! - an operation is retried until it succeeds or its deadline passes
//!   ([`DEFAULT_OP_TIMEOUT`], generous: the lab's Clerk never gives up).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kvproto::metapb;
use kvproto::raft_cmdpb::{
    self, AppendRequest, CmdType, OpenSessionRequest, PutRequest, RaftCmdRequest,
    RaftRequestHeader, Request,
};
use scheduler_stub::SchedulerClient as _;
use slog::{Logger, debug, o};
use storage::CF_DEFAULT;

use super::client::{Attempt, RETRY_BACKOFF, Retries, TimedOut};
use super::link::ClientLink;
use super::{Client, Cluster, ClusterError};
use crate::client::session::{ClientSession, OnSessionExpired, SessionWrite};

/// How long one operation is retried by default before the Clerk gives up.
pub const DEFAULT_OP_TIMEOUT: Duration = Duration::from_secs(60);

/// A key/value client of one [`Cluster`] with an exactly-once session.
pub struct Clerk<'c> {
    cluster: &'c Cluster,
    session: ClientSession,
    /// What the Clerk's connection lets through; shared with whoever
    /// reconnects it while an operation runs.
    link: Arc<ClientLink>,
    op_timeout: Duration,
    logger: Logger,
}

impl<'c> Clerk<'c> {
    /// A Clerk with a fresh client id from the cluster's scheduler,
    /// reaching every store reliably.
    pub fn new(cluster: &'c Cluster) -> Result<Self, ClusterError> {
        let client_id = cluster.scheduler().alloc_id()?;
        Ok(Clerk {
            cluster,
            session: ClientSession::new(client_id),
            link: Arc::new(ClientLink::new()),
            op_timeout: DEFAULT_OP_TIMEOUT,
            logger: cluster.opts.logger.new(o!("client_id" => client_id)),
        })
    }

    /// Sends through `link` instead (keep a clone to reconnect the Clerk).
    pub fn with_link(mut self, link: Arc<ClientLink>) -> Self {
        self.link = link;
        self
    }

    /// Gives up an operation after `timeout` ([`DEFAULT_OP_TIMEOUT`] unless
    /// set).
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// The Clerk's client id.
    pub fn client_id(&self) -> u64 {
        self.session.client_id()
    }

    /// The Clerk's connection, to reconnect it (MIT 6.824's
    /// `ConnectClient`).
    pub fn link(&self) -> Arc<ClientLink> {
        Arc::clone(&self.link)
    }

    fn client(&self) -> Client {
        self.cluster.client().with_link(Arc::clone(&self.link))
    }

    /// Sets `key` to `value`, exactly once.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), ClusterError> {
        self.write(
            key,
            Request {
                cmd_type: CmdType::Put as i32,
                put: Some(PutRequest {
                    cf: CF_DEFAULT.to_owned(),
                    key: key.to_vec(),
                    value: value.to_vec(),
                }),
                ..Default::default()
            },
        )
    }

    /// Appends `value` to `key`'s value (a missing key counts as empty),
    /// exactly once.
    pub fn append(&mut self, key: &[u8], value: &[u8]) -> Result<(), ClusterError> {
        self.write(
            key,
            Request {
                cmd_type: CmdType::Append as i32,
                append: Some(AppendRequest {
                    cf: CF_DEFAULT.to_owned(),
                    key: key.to_vec(),
                    value: value.to_vec(),
                }),
                ..Default::default()
            },
        )
    }

    /// `key`'s value, read linearizably through the leader; a missing key
    /// reads as empty (as the lab's `Get` returns "").
    pub fn get(&mut self, key: &[u8]) -> Result<Vec<u8>, ClusterError> {
        let (value, _) = self.client().get(key.to_vec(), self.op_timeout)?;
        Ok(value.unwrap_or_default())
    }

    /// Runs the session write `request` about `key` (module doc, steps
    /// 1–4) until it succeeds or the operation's deadline passes.
    fn write(&mut self, key: &[u8], request: Request) -> Result<(), ClusterError> {
        let deadline = Instant::now() + self.op_timeout;
        let mut write = self.session.next_write();
        let mut retries = Retries::default();
        let mut last = String::from("no attempt made");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(self.timed_out(retries, last));
            }
            let Some(region) = self
                .cluster
                .region_for_key(key)
                .or_else(|| self.cluster.refresh_region_for_key(key))
            else {
                last = "no region holding the key is known".to_owned();
                std::thread::sleep(RETRY_BACKOFF.min(left));
                continue;
            };
            if !self.session.is_open(region.id) {
                self.open_session(&region, deadline, &mut retries)?;
                continue;
            }
            let command = self.session_command(&region, write.sequence(), request.clone());
            let answer = self
                .client()
                .call_on_leader_observed(command, left, &mut |attempt| {
                    record_attempt(&mut write, attempt)
                })
                .map_err(|e| {
                    retries.add(&e.retries);
                    self.timed_out(retries, e.last)
                })?;
            retries.add(&answer.retries);
            let Some(error) = answer.response.region_error() else {
                return Ok(());
            };
            last = error.message.clone();
            if error.key_not_in_region.is_some() {
                // The region split: find the one holding the key now.
                write.attempt_failed(error);
                retries.other += 1;
                self.cluster.refresh_region_for_key(key);
                std::thread::sleep(RETRY_BACKOFF.min(left));
                continue;
            }
            if error.session_expired.is_some() {
                write.attempt_failed(error);
                self.session.forget(region.id);
                match write.on_session_expired() {
                    OnSessionExpired::Reopen => {
                        debug!(self.logger, "session expired, opening it again";
                            "region_id" => region.id, "sequence" => write.sequence());
                        continue;
                    }
                    OnSessionExpired::GiveUp => {
                        return Err(ClusterError::SessionLost {
                            client_id: self.client_id(),
                            sequence: write.sequence(),
                            region_id: region.id,
                        });
                    }
                }
            }
            return Err(ClusterError::Failed(Box::new(error.clone())));
        }
    }

    /// Opens the session in `region` (step 2), retrying until it succeeds
    /// or `deadline` passes.
    fn open_session(
        &mut self,
        region: &metapb::Region,
        deadline: Instant,
        retries: &mut Retries,
    ) -> Result<(), ClusterError> {
        let request = Request {
            cmd_type: CmdType::OpenSession as i32,
            open_session: Some(OpenSessionRequest {}),
            ..Default::default()
        };
        // Opening names no write: sequence 0, below every write's.
        let command = self.session_command(region, 0, request);
        let left = deadline.saturating_duration_since(Instant::now());
        let answer = self.client().call_on_leader(command, left).map_err(|e| {
            retries.add(&e.retries);
            self.timed_out(*retries, e.last)
        })?;
        retries.add(&answer.retries);
        match answer.response.region_error() {
            None => {
                debug!(self.logger, "session opened"; "region_id" => region.id);
                self.session.opened(region.id);
                Ok(())
            }
            Some(error) => Err(ClusterError::Failed(Box::new(error.clone()))),
        }
    }

    /// A command of one `request` in `region` carrying the session.
    fn session_command(
        &self,
        region: &metapb::Region,
        sequence: u64,
        request: Request,
    ) -> RaftCmdRequest {
        RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: region.id,
                region_epoch: region.region_epoch,
                session: Some(raft_cmdpb::ClientSession {
                    client_id: self.client_id(),
                    sequence,
                }),
                ..Default::default()
            }),
            requests: vec![request],
            admin_request: None,
        }
    }

    fn timed_out(&self, retries: Retries, last: String) -> ClusterError {
        ClusterError::TimedOut(TimedOut {
            timeout: self.op_timeout,
            retries,
            last,
        })
    }
}

/// Records what one failed attempt of `write` says about whether it may
/// have been applied.
fn record_attempt(write: &mut SessionWrite, attempt: Attempt<'_>) {
    match attempt {
        Attempt::NotSent => {}
        Attempt::Unanswered => write.attempt_unanswered(),
        Attempt::Failed(error) => write.attempt_failed(error),
    }
}

#[cfg(test)]
mod tests {
    use kvproto::errorpb;
    use raftstore::Config;
    use storage::keys;

    use super::*;
    use crate::cluster::{ClusterOptions, FIRST_REGION_ID};

    fn new_test_cluster_with(cfg: Config) -> Cluster {
        let cluster = Cluster::new(ClusterOptions::new(3, cfg)).expect("build the cluster");
        cluster.start().expect("start the cluster");
        cluster
    }

    fn new_test_cluster() -> Cluster {
        new_test_cluster_with(Config::for_tests())
    }

    /// Whether any store holds `client_id`'s session in the first region.
    fn session_held(cluster: &Cluster, client_id: u64) -> bool {
        cluster.store_ids().into_iter().any(|store_id| {
            cluster.store_engine(store_id).is_some_and(|engine| {
                engine
                    .get_cf(
                        CF_DEFAULT,
                        &keys::client_session_key(FIRST_REGION_ID, client_id),
                    )
                    .expect("read the session")
                    .is_some()
            })
        })
    }

    #[test]
    fn attempts_that_may_have_applied_are_told_from_refused_ones() {
        let refused = errorpb::Error {
            not_leader: Some(Default::default()),
            ..Default::default()
        };
        let stale = errorpb::Error {
            stale_command: Some(Default::default()),
            ..Default::default()
        };
        let mut session = ClientSession::new(1);
        let mut write = session.next_write();
        record_attempt(&mut write, Attempt::NotSent);
        record_attempt(&mut write, Attempt::Failed(&refused));
        assert!(!write.maybe_applied(), "refused attempts cannot apply");
        record_attempt(&mut write, Attempt::Unanswered);
        assert!(write.maybe_applied(), "an unanswered attempt may apply");
        let mut write = session.next_write();
        record_attempt(&mut write, Attempt::Failed(&stale));
        assert!(write.maybe_applied(), "a dropped proposal may still commit");
    }

    /// A session the region dropped (idle past its time-to-live) is
    /// opened again by the next write, which then applies once.
    #[test]
    fn an_expired_session_is_opened_again_when_no_attempt_can_have_applied() {
        let mut cfg = Config::for_tests();
        cfg.client_session_ttl = Duration::from_millis(200);
        let cluster = new_test_cluster_with(cfg);
        let mut idle = Clerk::new(&cluster).expect("a client id");
        idle.append(b"k", b"a").expect("append");
        assert!(session_held(&cluster, idle.client_id()));
        // Time moves with the session commands the log carries: another
        // client writes until every store dropped the idle session.
        let mut busy = Clerk::new(&cluster).expect("a client id");
        let deadline = Instant::now() + Duration::from_secs(30);
        while session_held(&cluster, idle.client_id()) {
            assert!(Instant::now() < deadline, "the idle session never expired");
            busy.put(b"other", b"x").expect("put");
        }
        idle.append(b"k", b"b")
            .expect("the session is opened again");
        assert!(session_held(&cluster, idle.client_id()));
        assert_eq!(idle.get(b"k").expect("get"), b"ab");
    }

    #[test]
    fn a_clerk_puts_appends_and_reads_a_missing_key_as_empty() {
        let cluster = new_test_cluster();
        let mut ck = Clerk::new(&cluster).expect("a client id");
        assert_eq!(ck.get(b"k").expect("get"), b"");
        ck.append(b"k", b"a").expect("append to a missing key");
        ck.append(b"k", b"b").expect("append");
        assert_eq!(ck.get(b"k").expect("get"), b"ab");
        ck.put(b"k", b"c").expect("put");
        ck.append(b"k", b"d").expect("append");
        assert_eq!(ck.get(b"k").expect("get"), b"cd");
    }

    #[test]
    fn clerks_get_distinct_client_ids() {
        let cluster = new_test_cluster();
        let a = Clerk::new(&cluster).expect("a client id");
        let b = Clerk::new(&cluster).expect("a client id");
        assert_ne!(a.client_id(), b.client_id());
    }

    /// A lost reply to an append that applied makes the Clerk send it
    /// again: the session must keep it from applying twice.
    #[test]
    fn lost_replies_do_not_apply_an_append_twice() {
        let cluster = new_test_cluster();
        let link = Arc::new(ClientLink::unreliable(30, 0x5e55));
        let mut ck = Clerk::new(&cluster).expect("a client id").with_link(link);
        let mut want = Vec::new();
        for i in 0..40 {
            let value = format!("[{i}]");
            ck.append(b"k", value.as_bytes()).expect("append");
            want.extend_from_slice(value.as_bytes());
        }
        let mut reader = Clerk::new(&cluster).expect("a client id");
        assert_eq!(
            String::from_utf8_lossy(&reader.get(b"k").expect("get")),
            String::from_utf8_lossy(&want)
        );
    }

    #[test]
    fn a_clerk_that_reaches_no_store_gives_up_at_its_deadline() {
        let cluster = new_test_cluster();
        let link = Arc::new(ClientLink::new());
        link.connect_only(&[]);
        let mut ck = Clerk::new(&cluster)
            .expect("a client id")
            .with_link(link)
            .op_timeout(Duration::from_millis(300));
        let started = Instant::now();
        let err = ck.put(b"k", b"v").expect_err("no store is reachable");
        assert!(matches!(err, ClusterError::TimedOut(_)), "{err}");
        assert!(started.elapsed() >= Duration::from_millis(300));
        let err = ck.get(b"k").expect_err("no store is reachable");
        assert!(matches!(err, ClusterError::TimedOut(_)), "{err}");
    }
}
