//! `RaftStorage`: the [`Storage`] contract over a store's regions, each
//! replicated through its own Raft group.
//!
//! Every call turns into one `RaftCmdRequest` for the region the request's
//! [`Context`] names, handed to the store's router with [`command::submit`]:
//! - `write`: the whole `Modify` batch as one command of `Put`/`Delete`
//!   requests, so it is applied atomically at one log index; it resolves once
//!   the command is committed and applied.
//! - `reader`: a `Snap` command; its answer carries a [`RegionSnapshot`] taken
//!   at the command's position in the log, which sees every write that
//!   resolved before.
//! - `write_command` ([`SessionStorage`]): one `Put`, `Delete` or `Append`
//!   request as a command of its own, with the client's session in the
//!   header's `session` when the request carries one (a command with a
//!   session holds exactly one request); `open_session`: one `OpenSession`
//!   request with the session `(client_id, 0)`. The state machine keeps
//!   the session table and decides what applies; its `SessionExpired`
//!   comes back as a region error like any other.
//!
//! The command's header is built from the context unchanged: region id,
//! region epoch and peer. The raftstore's pre-propose check, not this file,
//! decides whether they are right — the peer's store must be this store
//! (`StoreNotMatch`), the peer must lead (`NotLeader` with the leader), the
//! epoch must be current (`EpochNotMatch` with the current region), the
//! keys must be in the region (`KeyNotInRegion`) — so there is one judge of a
//! command for every client. A region error in the answer comes back as
//! [`storage::Error::Region`], unchanged, which the handlers put in the
//! response's `region_error`. Only what the raftstore cannot judge is
//! refused here: a context without a region id or without an epoch.
//!
//! Waits are bounded ([`RaftStorageOptions::timeout`]): a command that is not
//! answered in time resolves to an error that says its outcome is unknown
//! (a write may still be applied later), never to a success.

use std::sync::Arc;
use std::time::Duration;

use kvproto::kvrpcpb::Context;
use kvproto::raft_cmdpb::{
    AppendRequest, ClientSession, CmdType, DeleteRequest, OpenSessionRequest, PutRequest,
    RaftCmdRequest, RaftRequestHeader, Request,
};
use raftstore::RegionSnapshot;
use router::{CmdResponse, Router};
use storage::{Error, Modify, Result, Storage};

use super::session::{RawWrite, SessionStorage};
use crate::command;

/// How a [`RaftStorage`] waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RaftStorageOptions {
    /// The longest wait for a command's answer. Default: 10 s, well above an
    /// election (a command proposed just before a leader change is answered
    /// `StaleCommand` or `NotLeader` once the new term is known).
    pub timeout: Duration,
}

impl Default for RaftStorageOptions {
    fn default() -> Self {
        RaftStorageOptions {
            timeout: Duration::from_secs(10),
        }
    }
}

/// The [`Storage`] of one store: commands for its regions go through Raft.
#[derive(Debug, Clone)]
pub struct RaftStorage {
    router: Router,
    store_id: u64,
    opts: RaftStorageOptions,
}

impl RaftStorage {
    /// A storage sending commands into `router`, the router of store
    /// `store_id`.
    pub fn new(router: Router, store_id: u64, opts: RaftStorageOptions) -> Self {
        RaftStorage {
            router,
            store_id,
            opts,
        }
    }

    /// The id of the store this storage's commands go to.
    pub fn store_id(&self) -> u64 {
        self.store_id
    }

    /// The command for `ctx`'s region holding `requests`, or why the context
    /// cannot address a region.
    fn command(ctx: &Context, requests: Vec<Request>) -> Result<RaftCmdRequest> {
        Self::command_in_session(ctx, requests, None)
    }

    /// [`Self::command`] with `session` in its header.
    fn command_in_session(
        ctx: &Context,
        requests: Vec<Request>,
        session: Option<ClientSession>,
    ) -> Result<RaftCmdRequest> {
        if ctx.region_id == 0 {
            return Err(Error::InvalidArgument(
                "the request's context names no region (region id 0 or no context)".into(),
            ));
        }
        let Some(region_epoch) = ctx.region_epoch else {
            return Err(Error::InvalidArgument(format!(
                "the request's context for region {} has no region epoch",
                ctx.region_id
            )));
        };
        Ok(RaftCmdRequest {
            header: Some(RaftRequestHeader {
                region_id: ctx.region_id,
                // A missing peer is store 0, which the raftstore answers
                // with `StoreNotMatch`, as for any other store.
                peer: ctx.peer,
                region_epoch: Some(region_epoch),
                term: 0,
                session,
                // The leader stamps it when it proposes.
                session_clock: None,
            }),
            requests,
            admin_request: None,
        })
    }

    /// Submits `request` for `region_id` and waits, within the timeout, for
    /// an answer without a region error.
    async fn run(&self, region_id: u64, request: RaftCmdRequest) -> Result<CmdResponse> {
        let answer = command::submit(&self.router, region_id, request);
        let response = match tokio::time::timeout(self.opts.timeout, answer).await {
            Ok(Ok(response)) => response,
            // `Callback` answers even when dropped, so a closed channel
            // means the answer was lost some other way: say so, retryable.
            Ok(Err(_)) => {
                return Err(Error::Region(Box::new(
                    raftstore::Error::StaleCommand.to_region_error(),
                )));
            }
            Err(_) => {
                return Err(Error::Io {
                    what: "wait for the answer of the region's command",
                    source: Arc::new(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!(
                            "region {region_id} on store {} did not answer within {:?}; \
                             the command's outcome is unknown",
                            self.store_id, self.opts.timeout
                        ),
                    )),
                });
            }
        };
        if let Some(region_error) = response.region_error() {
            return Err(Error::Region(Box::new(region_error.clone())));
        }
        Ok(response)
    }
}

fn request_of(modify: Modify) -> Request {
    match modify {
        Modify::Put { cf, key, value } => Request {
            cmd_type: CmdType::Put as i32,
            put: Some(PutRequest { cf, key, value }),
            ..Default::default()
        },
        Modify::Delete { cf, key } => Request {
            cmd_type: CmdType::Delete as i32,
            delete: Some(DeleteRequest { cf, key }),
            ..Default::default()
        },
    }
}

fn request_of_write(write: RawWrite) -> Request {
    match write {
        RawWrite::Put { cf, key, value } => request_of(Modify::Put { cf, key, value }),
        RawWrite::Delete { cf, key } => request_of(Modify::Delete { cf, key }),
        RawWrite::Append { cf, key, value } => Request {
            cmd_type: CmdType::Append as i32,
            append: Some(AppendRequest { cf, key, value }),
            ..Default::default()
        },
    }
}

impl Storage for RaftStorage {
    type Reader = RegionSnapshot;

    async fn write(&self, ctx: &Context, batch: Vec<Modify>) -> Result<()> {
        if batch.is_empty() {
            // Nothing to replicate; a command without requests is refused
            // by the raftstore as malformed.
            return Ok(());
        }
        let request = Self::command(ctx, batch.into_iter().map(request_of).collect())?;
        self.run(ctx.region_id, request).await.map(|_| ())
    }

    async fn reader(&self, ctx: &Context) -> Result<RegionSnapshot> {
        let snap = Request {
            cmd_type: CmdType::Snap as i32,
            ..Default::default()
        };
        let request = Self::command(ctx, vec![snap])?;
        let response = self.run(ctx.region_id, request).await?;
        let missing = || {
            Error::InvalidArgument(format!(
                "region {}'s answer to a read carries no snapshot",
                ctx.region_id
            ))
        };
        response
            .snapshot
            .ok_or_else(missing)?
            .downcast::<RegionSnapshot>()
            .map_err(|_| missing())
    }
}

impl SessionStorage for RaftStorage {
    const KEEPS_SESSIONS: bool = true;

    async fn write_command(
        &self,
        ctx: &Context,
        write: RawWrite,
        session: Option<ClientSession>,
    ) -> Result<()> {
        let request = Self::command_in_session(ctx, vec![request_of_write(write)], session)?;
        self.run(ctx.region_id, request).await.map(|_| ())
    }

    async fn open_session(&self, ctx: &Context, client_id: u64) -> Result<()> {
        let open = Request {
            cmd_type: CmdType::OpenSession as i32,
            open_session: Some(OpenSessionRequest {}),
            ..Default::default()
        };
        let session = ClientSession {
            client_id,
            sequence: 0,
        };
        let request = Self::command_in_session(ctx, vec![open], Some(session))?;
        self.run(ctx.region_id, request).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use kvproto::metapb;

    use super::*;

    fn ctx() -> Context {
        Context {
            region_id: 7,
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 1,
                version: 1,
            }),
            peer: Some(metapb::Peer { id: 7, store_id: 1 }),
            ..Default::default()
        }
    }

    fn storage() -> RaftStorage {
        RaftStorage::new(Router::new(1), 1, RaftStorageOptions::default())
    }

    #[tokio::test]
    async fn a_context_without_region_or_epoch_is_refused() {
        let put = vec![Modify::Put {
            cf: "default".into(),
            key: b"k".to_vec(),
            value: b"v".to_vec(),
        }];
        let no_region = storage().write(&Context::default(), put.clone()).await;
        assert!(
            matches!(&no_region, Err(Error::InvalidArgument(m)) if m.contains("no region")),
            "{no_region:?}"
        );
        let no_epoch = Context {
            region_epoch: None,
            ..ctx()
        };
        let r = storage().reader(&no_epoch).await;
        assert!(
            matches!(&r, Err(Error::InvalidArgument(m)) if m.contains("epoch")),
            "{r:?}"
        );
    }

    /// A region the store does not hold is the router's refusal, passed on
    /// as `RegionNotFound`.
    #[tokio::test]
    async fn an_unknown_region_is_region_not_found() {
        let r = storage().reader(&ctx()).await;
        match r {
            Err(Error::Region(e)) => {
                assert_eq!(e.region_not_found.map(|n| n.region_id), Some(7), "{e:?}")
            }
            other => panic!("expected RegionNotFound, got {other:?}"),
        }
    }

    #[test]
    fn a_batch_becomes_one_command() {
        let batch = vec![
            Modify::Put {
                cf: "write".into(),
                key: b"a".to_vec(),
                value: b"1".to_vec(),
            },
            Modify::Delete {
                cf: "lock".into(),
                key: b"b".to_vec(),
            },
        ];
        let cmd =
            RaftStorage::command(&ctx(), batch.into_iter().map(request_of).collect()).expect("ok");
        let header = cmd.header.expect("header");
        assert_eq!(
            (header.region_id, header.peer, header.region_epoch),
            (7, ctx().peer, ctx().region_epoch)
        );
        assert_eq!(cmd.requests.len(), 2);
        assert_eq!(cmd.requests[0].cmd_type(), CmdType::Put);
        assert_eq!(cmd.requests[1].cmd_type(), CmdType::Delete);
        assert_eq!(
            cmd.requests[1].delete.as_ref().map(|d| d.key.as_slice()),
            Some(&b"b"[..])
        );
    }

    #[test]
    fn a_session_write_is_one_request_with_the_session_in_the_header() {
        let session = ClientSession {
            client_id: 9,
            sequence: 4,
        };
        let append = RawWrite::Append {
            cf: "default".into(),
            key: b"k".to_vec(),
            value: b"x".to_vec(),
        };
        let cmd =
            RaftStorage::command_in_session(&ctx(), vec![request_of_write(append)], Some(session))
                .expect("ok");
        let header = cmd.header.expect("header");
        assert_eq!(header.session, Some(session));
        assert_eq!(header.session_clock, None, "the leader stamps it");
        assert_eq!(cmd.requests.len(), 1);
        assert_eq!(cmd.requests[0].cmd_type(), CmdType::Append);
        let body = cmd.requests[0].append.as_ref().expect("an append body");
        assert_eq!(
            (body.key.as_slice(), body.value.as_slice()),
            (&b"k"[..], &b"x"[..])
        );

        let plain = RaftStorage::command(&ctx(), vec![]).expect("ok");
        assert_eq!(plain.header.expect("header").session, None);
    }

    /// The Raw API handlers over `RaftStorage`, against the stores of an
    /// in-process cluster.
    mod over_cluster {
        use std::time::{Duration, Instant};

        use kvproto::kvrpcpb::{
            OpenSessionRequest, RawAppendRequest, RawDeleteRequest, RawGetRequest, RawGetResponse,
            RawPutRequest, RawScanRequest,
        };
        use raftstore::Config;

        use super::*;
        use crate::cluster::{Cluster, ClusterOptions, FIRST_REGION_ID};
        use crate::server::Server;

        const DEADLINE: Duration = Duration::from_secs(20);

        /// A started 3-store cluster, its leader's store id, and a runtime
        /// for the handlers (the cluster's own methods block).
        fn new_test_cluster() -> (Cluster, u64, tokio::runtime::Runtime) {
            let cluster = Cluster::new(ClusterOptions::new(3, Config::for_tests()))
                .expect("build the cluster");
            cluster.start().expect("start the cluster");
            let (_, leader) = cluster.wait_for_leader(DEADLINE).expect("a leader");
            assert_ne!(leader, 0, "the cluster reported no leader");
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("build a test runtime");
            (cluster, leader, rt)
        }

        fn server_on(cluster: &Cluster, store_id: u64) -> Server<RaftStorage> {
            let router = cluster.router(store_id).expect("the store runs");
            Server::new(RaftStorage::new(
                router,
                store_id,
                RaftStorageOptions::default(),
            ))
        }

        /// The context addressing the first region through store
        /// `store_id`'s peer (peer id = store id in the cluster).
        fn ctx_on(cluster: &Cluster, store_id: u64) -> Context {
            let region = cluster.region(FIRST_REGION_ID).expect("the first region");
            Context {
                region_id: region.id,
                region_epoch: region.region_epoch,
                peer: Some(metapb::Peer {
                    id: store_id,
                    store_id,
                }),
                ..Default::default()
            }
        }

        fn get(ctx: &Context, key: &[u8]) -> RawGetRequest {
            RawGetRequest {
                context: Some(*ctx),
                key: key.to_vec(),
                cf: String::new(),
            }
        }

        #[test]
        fn put_get_delete_scan_on_the_leader() {
            let (cluster, leader, rt) = new_test_cluster();
            let server = server_on(&cluster, leader);
            let ctx = ctx_on(&cluster, leader);
            rt.block_on(async {
                for (k, v) in [(b"k1", b"v1"), (b"k2", b"v2"), (b"k3", b"v3")] {
                    let resp = server
                        .raw_put(RawPutRequest {
                            context: Some(ctx),
                            key: k.to_vec(),
                            value: v.to_vec(),
                            cf: "default".into(),
                        })
                        .await;
                    assert!(
                        resp.region_error.is_none() && resp.error.is_empty(),
                        "{resp:?}"
                    );
                }
                let resp = server.raw_get(get(&ctx, b"k2")).await;
                assert_eq!(resp.value, b"v2", "{resp:?}");
                let resp = server
                    .raw_delete(RawDeleteRequest {
                        context: Some(ctx),
                        key: b"k2".to_vec(),
                        cf: String::new(),
                    })
                    .await;
                assert!(
                    resp.region_error.is_none() && resp.error.is_empty(),
                    "{resp:?}"
                );
                let resp = server.raw_get(get(&ctx, b"k2")).await;
                assert!(resp.not_found, "{resp:?}");
                let resp = server
                    .raw_scan(RawScanRequest {
                        context: Some(ctx),
                        start_key: b"k".to_vec(),
                        limit: 10,
                        cf: String::new(),
                    })
                    .await;
                let keys: Vec<_> = resp.kvs.iter().map(|kv| kv.key.as_slice()).collect();
                assert_eq!(keys, vec![&b"k1"[..], b"k3"], "{resp:?}");
            });
        }

        /// Session writes through the handlers on the leader: `OpenSession`,
        /// a `RawAppend` sent twice with one sequence applied once, a put
        /// of the session, and `SessionExpired` for a client that opened
        /// nothing, passed back in `region_error`.
        #[test]
        fn session_writes_apply_once_on_the_leader() {
            let (cluster, leader, rt) = new_test_cluster();
            let server = server_on(&cluster, leader);
            let ctx = ctx_on(&cluster, leader);
            let session = |client_id, sequence| Context {
                client_id,
                sequence,
                ..ctx
            };
            let append = |ctx: Context, value: &[u8]| RawAppendRequest {
                context: Some(ctx),
                key: b"k".to_vec(),
                value: value.to_vec(),
                cf: String::new(),
            };
            rt.block_on(async {
                let resp = server.raw_append(append(session(21, 1), b"a")).await;
                assert!(
                    resp.region_error
                        .as_ref()
                        .and_then(|e| e.session_expired.as_ref())
                        .is_some_and(|e| (e.client_id, e.sequence) == (21, 1)),
                    "a session never opened: {resp:?}"
                );
                let resp = server
                    .open_session(OpenSessionRequest {
                        context: Some(session(21, 0)),
                    })
                    .await;
                assert!(
                    resp.region_error.is_none() && resp.error.is_empty(),
                    "{resp:?}"
                );
                for _ in 0..2 {
                    let resp = server.raw_append(append(session(21, 1), b"a")).await;
                    assert!(
                        resp.region_error.is_none() && resp.error.is_empty(),
                        "{resp:?}"
                    );
                }
                assert_eq!(server.raw_get(get(&ctx, b"k")).await.value, b"a");
                // A write without a session appends every time.
                let resp = server.raw_append(append(ctx, b"b")).await;
                assert!(resp.error.is_empty(), "{resp:?}");
                let resp = server.raw_append(append(ctx, b"b")).await;
                assert!(resp.error.is_empty(), "{resp:?}");
                assert_eq!(server.raw_get(get(&ctx, b"k")).await.value, b"abb");
                let resp = server
                    .raw_put(RawPutRequest {
                        context: Some(session(21, 2)),
                        key: b"k".to_vec(),
                        value: b"put".to_vec(),
                        cf: String::new(),
                    })
                    .await;
                assert!(
                    resp.region_error.is_none() && resp.error.is_empty(),
                    "{resp:?}"
                );
                assert_eq!(server.raw_get(get(&ctx, b"k")).await.value, b"put");
            });
        }

        /// A follower refuses with `NotLeader` naming the leader once it
        /// has heard from it (one follower may not have yet: a quorum of
        /// three is two).
        #[test]
        fn a_follower_answers_not_leader_with_the_leader() {
            let (cluster, leader, rt) = new_test_cluster();
            let follower = cluster
                .store_ids()
                .into_iter()
                .find(|&id| id != leader)
                .expect("a follower");
            let server = server_on(&cluster, follower);
            let ctx = ctx_on(&cluster, follower);
            let deadline = Instant::now() + DEADLINE;
            let last: RawGetResponse = rt.block_on(async {
                loop {
                    let resp = server.raw_get(get(&ctx, b"k")).await;
                    let named = resp
                        .region_error
                        .as_ref()
                        .and_then(|e| e.not_leader.as_ref())
                        .is_some_and(|n| n.leader.is_some());
                    if named || Instant::now() >= deadline {
                        break resp;
                    }
                    // A poll interval, not a wait for the condition: the loop ends
                    // as soon as the follower names the leader.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            });
            let not_leader = last
                .region_error
                .as_ref()
                .and_then(|e| e.not_leader.as_ref())
                .unwrap_or_else(|| panic!("expected NotLeader, last answer {last:?}"));
            assert_eq!(not_leader.region_id, FIRST_REGION_ID);
            assert_eq!(
                not_leader.leader.map(|p| p.store_id),
                Some(leader),
                "{last:?}"
            );
            // A write is refused the same way, and is not applied.
            let put = rt.block_on(server.raw_put(RawPutRequest {
                context: Some(ctx),
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                cf: String::new(),
            }));
            assert!(
                put.region_error
                    .as_ref()
                    .is_some_and(|e| e.not_leader.is_some()),
                "{put:?}"
            );
        }

        #[test]
        fn a_wrong_epoch_or_region_or_store_is_a_region_error() {
            let (cluster, leader, rt) = new_test_cluster();
            let server = server_on(&cluster, leader);
            let ctx = ctx_on(&cluster, leader);
            let region = cluster.region(FIRST_REGION_ID).expect("the first region");

            let mut stale = ctx;
            let mut epoch = stale.region_epoch.unwrap_or_default();
            epoch.version += 1;
            stale.region_epoch = Some(epoch);
            let resp = rt.block_on(server.raw_get(get(&stale, b"k")));
            let current = resp
                .region_error
                .as_ref()
                .and_then(|e| e.epoch_not_match.as_ref())
                .unwrap_or_else(|| panic!("expected EpochNotMatch, got {resp:?}"));
            assert_eq!(current.current_regions, vec![region], "{resp:?}");

            let unknown = Context {
                region_id: 99,
                ..ctx
            };
            let resp = rt.block_on(server.raw_get(get(&unknown, b"k")));
            assert_eq!(
                resp.region_error
                    .as_ref()
                    .and_then(|e| e.region_not_found.as_ref())
                    .map(|e| e.region_id),
                Some(99),
                "{resp:?}"
            );

            // The peer of another store, sent to this one.
            let other = leader % 3 + 1;
            let wrong_store = Context {
                peer: Some(metapb::Peer {
                    id: other,
                    store_id: other,
                }),
                ..ctx
            };
            let resp = rt.block_on(server.raw_get(get(&wrong_store, b"k")));
            let mismatch = resp
                .region_error
                .as_ref()
                .and_then(|e| e.store_not_match.as_ref())
                .unwrap_or_else(|| panic!("expected StoreNotMatch, got {resp:?}"));
            assert_eq!(
                (mismatch.request_store_id, mismatch.actual_store_id),
                (other, leader)
            );

            // No context at all: a plain error, nothing proposed.
            let resp = rt.block_on(server.raw_get(RawGetRequest {
                context: None,
                key: b"k".to_vec(),
                cf: String::new(),
            }));
            assert!(
                resp.region_error.is_none() && resp.error.contains("no region"),
                "{resp:?}"
            );
        }

        /// A leader cut off from its followers cannot commit (CheckQuorum
        /// soon makes it step down; its proposal stays, unanswered): the
        /// wait ends at the deadline with an error that says the outcome is
        /// unknown, never a success. A read there cannot be confirmed by a
        /// quorum: it is refused (`NotLeader`) or times out, never answered
        /// as if the key were absent.
        #[test]
        fn an_unanswered_command_times_out() {
            let (cluster, leader, rt) = new_test_cluster();
            let others = cluster
                .store_ids()
                .into_iter()
                .filter(|&id| id != leader)
                .collect();
            cluster.partition(vec![vec![leader], others]);
            let storage = RaftStorage::new(
                cluster.router(leader).expect("the store runs"),
                leader,
                RaftStorageOptions {
                    timeout: Duration::from_millis(300),
                },
            );
            let ctx = ctx_on(&cluster, leader);
            let put = vec![Modify::Put {
                cf: "default".into(),
                key: b"k".to_vec(),
                value: b"v".to_vec(),
            }];
            let result = rt.block_on(storage.write(&ctx, put));
            match &result {
                Err(e @ Error::Io { source, .. }) => {
                    assert_eq!(source.kind(), std::io::ErrorKind::TimedOut, "{e}");
                    assert!(e.to_string().contains("outcome is unknown"), "{e}");
                }
                other => panic!("expected a timeout, got {other:?}"),
            }
            let server = Server::new(storage);
            let resp = rt.block_on(server.raw_get(get(&ctx, b"k")));
            let refused = resp
                .region_error
                .as_ref()
                .is_some_and(|e| e.not_leader.is_some());
            let timed_out = resp.region_error.is_none() && resp.error.contains("did not answer");
            assert!(refused || timed_out, "{resp:?}");
            assert!(!resp.not_found && resp.value.is_empty(), "{resp:?}");
        }
    }
}
