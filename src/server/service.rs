//! `TinyKvService`: the `tinykvpb.TinyKv` gRPC service over a [`Server`]'s
//! handlers, with the limits a network-facing store needs.
//!
//! What each call does:
//! - `RawGet`, `RawPut`, `RawDelete`: the [`Server`] handlers; `RawPut`
//!   first refuses a value over [`ServiceOptions::max_value_size`] (in the
//!   response's `error`, before anything is proposed).
//! - `RawAppend`, `OpenSession` (extensions: client sessions,
//!   [`super::raw_api`]): the handlers; `RawAppend` refuses a value over
//!   [`ServiceOptions::max_value_size`] as `RawPut` does (the limit bounds
//!   what one request carries; the value it grows is bounded by the
//!   raftstore's own entry limits). A request with a client session to a
//!   standalone server is refused: it keeps no session table.
//! - `RawScan`: the handler, with its bounds ([`super::ScanLimits`]) set
//!   from [`ServiceOptions::max_scan_limit`] and
//!   [`ServiceOptions::max_scan_response_bytes`] (see [`super::raw_api`]:
//!   a capped `limit`, a byte bound the first pair may cross, and
//!   `KeyNotInRegion` for a start key outside the region).
//! - `Raft`, `BatchRaft`, `Snapshot` (the store-to-store streams; `BatchRaft`
//!   is this project's extension, many raft messages per gRPC message): on a store
//!   ([`TinyKvService::with_store_streams`]), handed to the store's router
//!   and snapshot manager (`crate::transport::service`), and ended when the
//!   server shuts down; on a standalone server `UNIMPLEMENTED`.
//! - Every `Kv*` call and `Coprocessor`: `UNIMPLEMENTED`, with a message
//!   naming what is missing.
//!
//! Every answer to a bad request is a response with `error` or
//! `region_error` set (as the handlers do), never a gRPC failure or a panic;
//! gRPC statuses are left for what the service does not serve at all and for
//! messages over [`ServiceOptions::max_message_size`] (tonic refuses those,
//! `RESOURCE_EXHAUSTED`, before they are decoded).

use std::future::Future;

use kvproto::coprocessor;
use kvproto::kvrpcpb::{
    BatchRollbackRequest, BatchRollbackResponse, CheckTxnStatusRequest, CheckTxnStatusResponse,
    CommitRequest, CommitResponse, GetRequest, GetResponse, OpenSessionRequest,
    OpenSessionResponse, PrewriteRequest, PrewriteResponse, RawAppendRequest, RawAppendResponse,
    RawDeleteRequest, RawDeleteResponse, RawGetRequest, RawGetResponse, RawPutRequest,
    RawPutResponse, RawScanRequest, RawScanResponse, ResolveLockRequest, ResolveLockResponse,
    ScanRequest, ScanResponse,
};
use kvproto::raft_serverpb::{BatchRaftMessage, Done, RaftMessage, SnapshotChunk};
use kvproto::tinykvpb::tiny_kv_server::{TinyKv, TinyKvServer};
use storage::Storage;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status, Streaming};

use raftstore::SnapManager;
use router::Router;
use slog::Logger;
use tokio::sync::watch;

use super::session::SessionStorage;
use super::{ScanLimits, Server};
use crate::transport::faults::PartitionFilter;
use crate::transport::service::{
    SnapshotReceiveLimit, handle_batch_raft_stream, handle_raft_stream, handle_snapshot_stream,
};

/// The limits of a [`TinyKvService`]. [`Default`] gives values that fit
/// together: a largest value fits in a message, and so does a scan
/// response at its byte bound plus one largest pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceOptions {
    /// The most pairs one `RawScan` returns, whatever `limit` asks for.
    /// Default: 10,000.
    pub max_scan_limit: u32,
    /// The bytes (keys + values) after which a `RawScan` stops adding
    /// pairs; see the module docs. Default: 4 MiB.
    pub max_scan_response_bytes: usize,
    /// The largest value a `RawPut` may carry. Default: 8 MiB, the
    /// raftstore's own default limit.
    pub max_value_size: usize,
    /// The largest gRPC message decoded or encoded. Default: 16 MiB.
    pub max_message_size: usize,
}

impl Default for ServiceOptions {
    fn default() -> Self {
        ServiceOptions {
            max_scan_limit: 10_000,
            max_scan_response_bytes: 4 * 1024 * 1024,
            max_value_size: 8 * 1024 * 1024,
            max_message_size: 16 * 1024 * 1024,
        }
    }
}

/// The `TinyKv` service over the handlers of a [`Server`] on `S`.
#[derive(Debug)]
pub struct TinyKvService<S: Storage> {
    server: Server<S>,
    opts: ServiceOptions,
    /// Set on a store; a standalone server takes no raft traffic.
    streams: Option<StoreStreams>,
}

/// What a store's service needs to take the `Raft` and `Snapshot` streams
/// of other stores (`crate::transport::service`).
#[derive(Debug, Clone)]
pub struct StoreStreams {
    /// Where raft messages go.
    pub router: Router,
    /// Where received snapshot files go.
    pub snap_mgr: SnapManager,
    /// The bound on concurrent snapshot receives.
    pub receive_limit: SnapshotReceiveLimit,
    /// Turns `true` when the server shuts down: a `Raft` stream never ends
    /// by itself, and a graceful shutdown waits for every open call.
    pub closing: watch::Receiver<bool>,
    /// For the streams' logs.
    pub logger: Logger,
    /// With fault injection on: the stores whose raft traffic is dropped.
    pub partition: Option<PartitionFilter>,
}

impl<S: Storage> TinyKvService<S> {
    /// The service answering from `storage` within `opts`.
    pub fn new(storage: S, opts: ServiceOptions) -> Self {
        let scan_limits = ScanLimits {
            max_pairs: opts.max_scan_limit,
            max_bytes: opts.max_scan_response_bytes,
        };
        TinyKvService {
            server: Server::new(storage).with_scan_limits(scan_limits),
            opts,
            streams: None,
        }
    }

    /// The same service taking other stores' raft traffic into `streams`.
    pub fn with_store_streams(self, streams: StoreStreams) -> Self {
        TinyKvService {
            streams: Some(streams),
            ..self
        }
    }

    /// The handlers underneath.
    pub fn server(&self) -> &Server<S> {
        &self.server
    }

    /// The tonic service, with the message size limits set.
    pub fn into_grpc(self) -> TinyKvServer<Self> {
        let max = self.opts.max_message_size;
        TinyKvServer::new(self)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max)
    }
}

fn unimplemented<T>(what: &str) -> Result<Response<T>, Status> {
    Err(Status::unimplemented(what.to_owned()))
}

const NO_RAFT_STORE: &str =
    "this server has no raft store (standalone storage): it takes no raft traffic";

const TXN_UNIMPLEMENTED: &str =
    "the transactional API (Kv*) is not implemented by this store yet; use the Raw API";

/// The error of a value over `limit`, or `None`.
fn value_too_large(value: &[u8], limit: usize) -> Option<String> {
    (value.len() > limit).then(|| {
        format!(
            "value too large: {} bytes, the limit is {limit} bytes",
            value.len()
        )
    })
}

#[tonic::async_trait]
impl<S: SessionStorage> TinyKv for TinyKvService<S> {
    async fn kv_get(&self, _: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        unimplemented(TXN_UNIMPLEMENTED)
    }

    async fn kv_scan(&self, _: Request<ScanRequest>) -> Result<Response<ScanResponse>, Status> {
        unimplemented(TXN_UNIMPLEMENTED)
    }

    async fn kv_prewrite(
        &self,
        _: Request<PrewriteRequest>,
    ) -> Result<Response<PrewriteResponse>, Status> {
        unimplemented(TXN_UNIMPLEMENTED)
    }

    async fn kv_commit(
        &self,
        _: Request<CommitRequest>,
    ) -> Result<Response<CommitResponse>, Status> {
        unimplemented(TXN_UNIMPLEMENTED)
    }

    async fn kv_check_txn_status(
        &self,
        _: Request<CheckTxnStatusRequest>,
    ) -> Result<Response<CheckTxnStatusResponse>, Status> {
        unimplemented(TXN_UNIMPLEMENTED)
    }

    async fn kv_batch_rollback(
        &self,
        _: Request<BatchRollbackRequest>,
    ) -> Result<Response<BatchRollbackResponse>, Status> {
        unimplemented(TXN_UNIMPLEMENTED)
    }

    async fn kv_resolve_lock(
        &self,
        _: Request<ResolveLockRequest>,
    ) -> Result<Response<ResolveLockResponse>, Status> {
        unimplemented(TXN_UNIMPLEMENTED)
    }

    async fn raw_get(
        &self,
        req: Request<RawGetRequest>,
    ) -> Result<Response<RawGetResponse>, Status> {
        Ok(Response::new(self.server.raw_get(req.into_inner()).await))
    }

    async fn raw_put(
        &self,
        req: Request<RawPutRequest>,
    ) -> Result<Response<RawPutResponse>, Status> {
        let req = req.into_inner();
        if let Some(error) = value_too_large(&req.value, self.opts.max_value_size) {
            return Ok(Response::new(RawPutResponse {
                error,
                ..Default::default()
            }));
        }
        Ok(Response::new(self.server.raw_put(req).await))
    }

    async fn raw_delete(
        &self,
        req: Request<RawDeleteRequest>,
    ) -> Result<Response<RawDeleteResponse>, Status> {
        Ok(Response::new(
            self.server.raw_delete(req.into_inner()).await,
        ))
    }

    async fn raw_scan(
        &self,
        req: Request<RawScanRequest>,
    ) -> Result<Response<RawScanResponse>, Status> {
        Ok(Response::new(self.server.raw_scan(req.into_inner()).await))
    }

    async fn raw_append(
        &self,
        req: Request<RawAppendRequest>,
    ) -> Result<Response<RawAppendResponse>, Status> {
        let req = req.into_inner();
        if let Some(error) = value_too_large(&req.value, self.opts.max_value_size) {
            return Ok(Response::new(RawAppendResponse {
                error,
                ..Default::default()
            }));
        }
        Ok(Response::new(self.server.raw_append(req).await))
    }

    async fn open_session(
        &self,
        req: Request<OpenSessionRequest>,
    ) -> Result<Response<OpenSessionResponse>, Status> {
        Ok(Response::new(
            self.server.open_session(req.into_inner()).await,
        ))
    }

    async fn raft(
        &self,
        request: Request<Streaming<RaftMessage>>,
    ) -> Result<Response<Done>, Status> {
        let Some(streams) = &self.streams else {
            return unimplemented(NO_RAFT_STORE);
        };
        let mut closing = streams.closing.clone();
        let partition = streams.partition.as_ref();
        tokio::select! {
            done = handle_raft_stream(&streams.router, partition, request.into_inner(), &streams.logger) => {
                done.map(Response::new)
            }
            _ = closing.wait_for(|closing| *closing) => Err(Status::unavailable("the store is shutting down")),
        }
    }

    async fn batch_raft(
        &self,
        request: Request<Streaming<BatchRaftMessage>>,
    ) -> Result<Response<Done>, Status> {
        let Some(streams) = &self.streams else {
            return unimplemented(NO_RAFT_STORE);
        };
        let mut closing = streams.closing.clone();
        let receive = handle_batch_raft_stream(
            &streams.router,
            streams.partition.as_ref(),
            request.into_inner(),
            &streams.logger,
        );
        tokio::select! {
            done = receive => done.map(Response::new),
            _ = closing.wait_for(|closing| *closing) => Err(Status::unavailable("the store is shutting down")),
        }
    }

    async fn snapshot(
        &self,
        request: Request<Streaming<SnapshotChunk>>,
    ) -> Result<Response<Done>, Status> {
        let Some(streams) = &self.streams else {
            return unimplemented(NO_RAFT_STORE);
        };
        let mut closing = streams.closing.clone();
        let receive = handle_snapshot_stream(
            &streams.snap_mgr,
            &streams.router,
            &streams.receive_limit,
            streams.partition.as_ref(),
            request.into_inner(),
            &streams.logger,
        );
        tokio::select! {
            done = receive => done.map(Response::new),
            _ = closing.wait_for(|closing| *closing) => Err(Status::unavailable("the store is shutting down")),
        }
    }

    async fn coprocessor(
        &self,
        _: Request<coprocessor::Request>,
    ) -> Result<Response<coprocessor::Response>, Status> {
        unimplemented("the Coprocessor API is not implemented by this store")
    }
}

/// Serves `service` on `listener` until `shutdown` completes, then stops
/// accepting and lets in-flight calls finish.
pub async fn serve<S: SessionStorage>(
    listener: TcpListener,
    service: TinyKvService<S>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    tonic::transport::Server::builder()
        .add_service(service.into_grpc())
        .serve_with_incoming_shutdown(scheduler_stub::incoming(listener), shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use kvproto::kvrpcpb::Context;
    use kvproto::metapb;
    use kvproto::tinykvpb::tiny_kv_client::TinyKvClient;
    use storage::{Modify, RegionReader, StandaloneStorage};
    use tempfile::TempDir;
    use tokio::sync::oneshot;
    use tonic::Code;
    use tonic::transport::Channel;

    use super::*;

    /// A service on a loopback port; dropping it stops the server.
    struct TestService {
        client: TinyKvClient<Channel>,
        _stop: oneshot::Sender<()>,
        _dir: TempDir,
    }

    async fn serve_on_loopback<S: SessionStorage>(
        storage: S,
        opts: ServiceOptions,
        dir: TempDir,
    ) -> TestService {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr: SocketAddr = listener.local_addr().expect("bound address");
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(serve(listener, TinyKvService::new(storage, opts), async {
            let _ = stopped.await;
        }));
        // The listener is bound already: the connection waits in its backlog
        // until the server accepts it.
        let client = TinyKvClient::connect(format!("http://{addr}"))
            .await
            .expect("connect to the service")
            .max_decoding_message_size(opts.max_message_size)
            .max_encoding_message_size(usize::MAX);
        TestService {
            client,
            _stop: stop,
            _dir: dir,
        }
    }

    async fn new_test_service(opts: ServiceOptions) -> TestService {
        let dir = tempfile::tempdir().expect("create temp dir");
        let storage = StandaloneStorage::open(dir.path()).expect("open standalone storage");
        serve_on_loopback(storage, opts, dir).await
    }

    fn put_req(key: &[u8], value: &[u8]) -> RawPutRequest {
        RawPutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            ..Default::default()
        }
    }

    fn get_req(key: &[u8]) -> RawGetRequest {
        RawGetRequest {
            key: key.to_vec(),
            ..Default::default()
        }
    }

    fn scan_req(start: &[u8], limit: u32) -> RawScanRequest {
        RawScanRequest {
            start_key: start.to_vec(),
            limit,
            ..Default::default()
        }
    }

    async fn must_put(client: &mut TinyKvClient<Channel>, key: &[u8], value: &[u8]) {
        let resp = client
            .raw_put(put_req(key, value))
            .await
            .expect("RawPut answered")
            .into_inner();
        assert!(
            resp.error.is_empty() && resp.region_error.is_none(),
            "{resp:?}"
        );
    }

    /// Keys `k00`, `k01`, ... each with a `value_len`-byte value.
    async fn must_put_keys(client: &mut TinyKvClient<Channel>, n: usize, value_len: usize) {
        for i in 0..n {
            must_put(
                client,
                format!("k{i:02}").as_bytes(),
                &vec![b'v'; value_len],
            )
            .await;
        }
    }

    #[tokio::test]
    async fn raw_put_get_delete_round_trip() {
        let mut svc = new_test_service(ServiceOptions::default()).await;
        must_put(&mut svc.client, b"k", b"v").await;
        let got = svc.client.raw_get(get_req(b"k")).await.expect("RawGet");
        assert_eq!(got.into_inner().value, b"v");
        let deleted = svc
            .client
            .raw_delete(RawDeleteRequest {
                key: b"k".to_vec(),
                ..Default::default()
            })
            .await
            .expect("RawDelete")
            .into_inner();
        assert!(deleted.error.is_empty(), "{deleted:?}");
        let got = svc.client.raw_get(get_req(b"k")).await.expect("RawGet");
        assert!(got.into_inner().not_found);
    }

    #[tokio::test]
    async fn raw_scan_limit_is_capped() {
        let opts = ServiceOptions {
            max_scan_limit: 5,
            ..Default::default()
        };
        let mut svc = new_test_service(opts).await;
        must_put_keys(&mut svc.client, 8, 4).await;
        let resp = svc
            .client
            .raw_scan(scan_req(b"k", 1000))
            .await
            .expect("RawScan")
            .into_inner();
        let keys: Vec<_> = resp.kvs.iter().map(|kv| kv.key.clone()).collect();
        let want: Vec<Vec<u8>> = (0..5).map(|i| format!("k{i:02}").into_bytes()).collect();
        assert_eq!(keys, want, "{resp:?}");
        // Below the cap, `limit` rules.
        let resp = svc
            .client
            .raw_scan(scan_req(b"k", 2))
            .await
            .expect("RawScan");
        assert_eq!(resp.into_inner().kvs.len(), 2);
    }

    #[tokio::test]
    async fn raw_scan_stops_at_the_byte_bound() {
        let opts = ServiceOptions {
            max_scan_response_bytes: 100,
            ..Default::default()
        };
        let mut svc = new_test_service(opts).await;
        // 3 + 30 = 33 bytes a pair: three fit in 100, a fourth would not.
        must_put_keys(&mut svc.client, 8, 30).await;
        let resp = svc
            .client
            .raw_scan(scan_req(b"k", 10))
            .await
            .expect("RawScan")
            .into_inner();
        let keys: Vec<_> = resp.kvs.iter().map(|kv| kv.key.clone()).collect();
        assert_eq!(
            keys,
            vec![b"k00".to_vec(), b"k01".to_vec(), b"k02".to_vec()]
        );
        // A pair over the bound alone still comes back, so paging progresses.
        must_put(&mut svc.client, b"big", &[b'x'; 500]).await;
        let resp = svc
            .client
            .raw_scan(scan_req(b"big", 10))
            .await
            .expect("RawScan")
            .into_inner();
        let keys: Vec<_> = resp.kvs.iter().map(|kv| kv.key.clone()).collect();
        assert_eq!(keys, vec![b"big".to_vec()], "{resp:?}");
    }

    #[tokio::test]
    async fn an_oversized_value_is_refused_before_writing() {
        let opts = ServiceOptions {
            max_value_size: 16,
            max_message_size: 1024,
            ..Default::default()
        };
        let mut svc = new_test_service(opts).await;
        let resp = svc
            .client
            .raw_put(put_req(b"k", &[0; 17]))
            .await
            .expect("RawPut answered")
            .into_inner();
        assert!(resp.error.contains("value too large"), "{resp:?}");
        let got = svc.client.raw_get(get_req(b"k")).await.expect("RawGet");
        assert!(got.into_inner().not_found, "the refused value was written");
        must_put(&mut svc.client, b"k", &[0; 16]).await;
        // Over the message size: refused by gRPC before decoding.
        let status = svc
            .client
            .raw_put(put_req(b"k", &[0; 2048]))
            .await
            .expect_err("a message over the limit is refused");
        assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
    }

    #[tokio::test]
    async fn unserved_calls_answer_unimplemented() {
        let mut svc = new_test_service(ServiceOptions::default()).await;
        let status = svc
            .client
            .kv_get(GetRequest::default())
            .await
            .expect_err("KvGet is not served");
        assert_eq!(status.code(), Code::Unimplemented);
        assert!(status.message().contains("not implemented"), "{status:?}");
        let status = svc
            .client
            .coprocessor(coprocessor::Request::default())
            .await
            .expect_err("Coprocessor is not served");
        assert_eq!(status.code(), Code::Unimplemented);
        let status = svc
            .client
            .raft(tokio_stream::iter(vec![RaftMessage::default()]))
            .await
            .expect_err("a standalone server takes no raft traffic");
        assert_eq!(status.code(), Code::Unimplemented);
        assert!(status.message().contains("no raft store"), "{status:?}");
        let status = svc
            .client
            .batch_raft(tokio_stream::iter(vec![BatchRaftMessage::default()]))
            .await
            .expect_err("a standalone server takes no batched raft traffic");
        assert_eq!(status.code(), Code::Unimplemented);
        assert!(status.message().contains("no raft store"), "{status:?}");
    }

    #[tokio::test]
    async fn garbage_input_is_a_clear_error() {
        let mut svc = new_test_service(ServiceOptions::default()).await;
        let resp = svc
            .client
            .raw_put(put_req(b"", b"v"))
            .await
            .expect("answered")
            .into_inner();
        assert!(resp.error.contains("empty"), "{resp:?}");
        for cf in ["nope", "raft"] {
            let resp = svc
                .client
                .raw_get(RawGetRequest {
                    cf: cf.into(),
                    ..get_req(b"k")
                })
                .await
                .expect("answered")
                .into_inner();
            assert!(resp.error.contains("invalid cf"), "{cf}: {resp:?}");
            let resp = svc
                .client
                .raw_scan(RawScanRequest {
                    cf: cf.into(),
                    ..scan_req(b"", 10)
                })
                .await
                .expect("answered")
                .into_inner();
            assert!(resp.error.contains("invalid cf"), "{cf}: {resp:?}");
        }
        // The service still serves.
        must_put(&mut svc.client, b"k", b"v").await;
    }

    fn append_req(ctx: Option<Context>, key: &[u8], value: &[u8]) -> RawAppendRequest {
        RawAppendRequest {
            context: ctx,
            key: key.to_vec(),
            value: value.to_vec(),
            cf: String::new(),
        }
    }

    async fn must_get(client: &mut TinyKvClient<Channel>, key: &[u8]) -> Vec<u8> {
        let resp = client
            .raw_get(get_req(key))
            .await
            .expect("RawGet answered")
            .into_inner();
        assert!(
            resp.error.is_empty() && resp.region_error.is_none() && !resp.not_found,
            "{resp:?}"
        );
        resp.value
    }

    #[tokio::test]
    async fn raw_append_on_a_standalone_server_concatenates() {
        let mut svc = new_test_service(ServiceOptions::default()).await;
        for part in [&b"ab"[..], b"", b"cd"] {
            let resp = svc
                .client
                .raw_append(append_req(None, b"k", part))
                .await
                .expect("RawAppend answered")
                .into_inner();
            assert!(
                resp.error.is_empty() && resp.region_error.is_none(),
                "{resp:?}"
            );
        }
        assert_eq!(must_get(&mut svc.client, b"k").await, b"abcd");
        // Onto a value a put set.
        must_put(&mut svc.client, b"k", b"x").await;
        let resp = svc
            .client
            .raw_append(append_req(None, b"k", b"y"))
            .await
            .expect("RawAppend answered")
            .into_inner();
        assert!(resp.error.is_empty(), "{resp:?}");
        assert_eq!(must_get(&mut svc.client, b"k").await, b"xy");
    }

    #[tokio::test]
    async fn bad_appends_and_sessions_get_clear_errors() {
        let opts = ServiceOptions {
            max_value_size: 4,
            ..Default::default()
        };
        let mut svc = new_test_service(opts).await;
        let session = |client_id, sequence| {
            Some(Context {
                client_id,
                sequence,
                ..Default::default()
            })
        };
        let cases: Vec<(&str, RawAppendRequest, &str)> = vec![
            ("empty key", append_req(None, b"", b"v"), "empty"),
            (
                "unknown cf",
                RawAppendRequest {
                    cf: "nope".into(),
                    ..append_req(None, b"k", b"v")
                },
                "invalid cf",
            ),
            (
                "value over the limit",
                append_req(None, b"k", b"12345"),
                "value too large",
            ),
            (
                "sequence 0",
                append_req(session(5, 0), b"k", b"v"),
                "sequence 0",
            ),
            (
                "sequence without a client",
                append_req(session(0, 3), b"k", b"v"),
                "without a client id",
            ),
            (
                "a session on a standalone server",
                append_req(session(5, 1), b"k", b"v"),
                "raft store",
            ),
        ];
        for (name, req, want) in cases {
            let resp = svc
                .client
                .raw_append(req)
                .await
                .expect("RawAppend answered")
                .into_inner();
            assert!(resp.error.contains(want), "{name}: {resp:?}");
            assert!(resp.region_error.is_none(), "{name}: {resp:?}");
        }
        let resp = svc
            .client
            .raw_put(RawPutRequest {
                context: session(5, 0),
                ..put_req(b"k", b"v")
            })
            .await
            .expect("RawPut answered")
            .into_inner();
        assert!(resp.error.contains("sequence 0"), "{resp:?}");
        let resp = svc
            .client
            .raw_delete(RawDeleteRequest {
                context: session(5, 2),
                key: b"k".to_vec(),
                cf: String::new(),
            })
            .await
            .expect("RawDelete answered")
            .into_inner();
        assert!(resp.error.contains("raft store"), "{resp:?}");
        let resp = svc
            .client
            .open_session(OpenSessionRequest { context: None })
            .await
            .expect("OpenSession answered")
            .into_inner();
        assert!(resp.error.contains("names no client"), "{resp:?}");
        let resp = svc
            .client
            .open_session(OpenSessionRequest {
                context: session(5, 0),
            })
            .await
            .expect("OpenSession answered")
            .into_inner();
        assert!(resp.error.contains("raft store"), "{resp:?}");
        // Nothing refused was written.
        let got = svc.client.raw_get(get_req(b"k")).await.expect("RawGet");
        assert!(got.into_inner().not_found, "a refused write was applied");
    }

    /// Concurrent appends and puts on a standalone server: every append
    /// counts (none reads a value another is about to replace).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_appends_on_a_standalone_server_all_count() {
        let dir = tempfile::tempdir().expect("create temp dir");
        let storage = StandaloneStorage::open(dir.path()).expect("open standalone storage");
        let server = std::sync::Arc::new(Server::new(storage));
        let mut tasks = Vec::new();
        for i in 0..8u8 {
            let server = std::sync::Arc::clone(&server);
            tasks.push(tokio::spawn(async move {
                for _ in 0..10 {
                    let resp = server.raw_append(append_req(None, b"k", &[b'a' + i])).await;
                    assert!(resp.error.is_empty(), "{resp:?}");
                    // A put of another key between appends takes the shared side.
                    let resp = server.raw_put(put_req(&[b'p', i], b"v")).await;
                    assert!(resp.error.is_empty(), "{resp:?}");
                }
            }));
        }
        for task in tasks {
            task.await.expect("an appending task");
        }
        let value = server.raw_get(get_req(b"k")).await.value;
        assert_eq!(value.len(), 80, "{value:?}");
        for i in 0..8u8 {
            let count = value.iter().filter(|&&b| b == b'a' + i).count();
            assert_eq!(count, 10, "task {i}'s appends in {value:?}");
        }
    }

    /// A standalone storage whose reads see only the keys `[b, y)`, as a
    /// region's reader does.
    struct NarrowStorage(StandaloneStorage);

    impl Storage for NarrowStorage {
        type Reader = RegionReader;

        async fn write(&self, ctx: &Context, batch: Vec<Modify>) -> storage::Result<()> {
            self.0.write(ctx, batch).await
        }

        async fn reader(&self, _: &Context) -> storage::Result<RegionReader> {
            Ok(RegionReader::new(self.0.engine().snapshot(), b"b", b"y"))
        }
    }

    impl SessionStorage for NarrowStorage {
        const KEEPS_SESSIONS: bool = false;

        async fn write_command(
            &self,
            ctx: &Context,
            write: crate::server::session::RawWrite,
            session: Option<kvproto::raft_cmdpb::ClientSession>,
        ) -> storage::Result<()> {
            self.0.write_command(ctx, write, session).await
        }

        async fn open_session(&self, ctx: &Context, client_id: u64) -> storage::Result<()> {
            SessionStorage::open_session(&self.0, ctx, client_id).await
        }
    }

    /// A storage that keeps sessions as far as the handlers can tell: it
    /// records what it is asked and answers `SessionExpired` to client 13.
    #[derive(Default)]
    struct RecordingStorage {
        seen: std::sync::Mutex<Vec<String>>,
    }

    impl RecordingStorage {
        fn answer(&self, what: String, client_id: u64) -> storage::Result<()> {
            self.seen.lock().expect("record lock").push(what);
            if client_id == 13 {
                let mut expired = kvproto::errorpb::Error {
                    message: "session expired".to_owned(),
                    ..Default::default()
                };
                expired.session_expired = Some(kvproto::errorpb::SessionExpired {
                    client_id,
                    sequence: 2,
                });
                return Err(storage::Error::Region(Box::new(expired)));
            }
            Ok(())
        }
    }

    impl Storage for RecordingStorage {
        type Reader = RegionReader;

        async fn write(&self, _: &Context, _: Vec<Modify>) -> storage::Result<()> {
            Err(storage::Error::InvalidArgument("not used".to_owned()))
        }

        async fn reader(&self, _: &Context) -> storage::Result<RegionReader> {
            Err(storage::Error::InvalidArgument("not used".to_owned()))
        }
    }

    impl SessionStorage for RecordingStorage {
        const KEEPS_SESSIONS: bool = true;

        async fn write_command(
            &self,
            _: &Context,
            write: crate::server::session::RawWrite,
            session: Option<kvproto::raft_cmdpb::ClientSession>,
        ) -> storage::Result<()> {
            let client_id = session.map_or(0, |s| s.client_id);
            self.answer(format!("{write:?} {session:?}"), client_id)
        }

        async fn open_session(&self, _: &Context, client_id: u64) -> storage::Result<()> {
            self.answer(format!("open {client_id}"), client_id)
        }
    }

    /// Over a storage that keeps sessions, a write's session reaches it
    /// with the write, and its region error (`SessionExpired`) comes back
    /// unchanged in `region_error`.
    #[tokio::test]
    async fn sessions_reach_the_storage_and_its_region_errors_come_back() {
        let server = Server::new(RecordingStorage::default());
        let ctx = |client_id, sequence| {
            Some(Context {
                client_id,
                sequence,
                ..Default::default()
            })
        };
        let resp = server.raw_append(append_req(ctx(4, 7), b"k", b"v")).await;
        assert!(
            resp.error.is_empty() && resp.region_error.is_none(),
            "{resp:?}"
        );
        let resp = server.raw_put(RawPutRequest {
            context: ctx(0, 0),
            ..put_req(b"k", b"v")
        });
        assert!(resp.await.error.is_empty());
        let resp = server
            .open_session(OpenSessionRequest {
                context: ctx(4, 99),
            })
            .await;
        assert!(resp.error.is_empty(), "{resp:?}");
        let resp = server.raw_append(append_req(ctx(13, 2), b"k", b"v")).await;
        let expired = resp
            .region_error
            .as_ref()
            .and_then(|e| e.session_expired.as_ref())
            .unwrap_or_else(|| panic!("expected SessionExpired, got {resp:?}"));
        assert_eq!((expired.client_id, expired.sequence), (13, 2));
        let resp = server
            .open_session(OpenSessionRequest {
                context: ctx(13, 0),
            })
            .await;
        assert!(
            resp.region_error
                .is_some_and(|e| e.session_expired.is_some()),
            "passed back unchanged"
        );
        // Refused before the storage: sequence 0, OpenSession of no client.
        let resp = server.raw_append(append_req(ctx(4, 0), b"k", b"v")).await;
        assert!(resp.error.contains("sequence 0"), "{resp:?}");
        let resp = server
            .open_session(OpenSessionRequest { context: ctx(0, 0) })
            .await;
        assert!(resp.error.contains("names no client"), "{resp:?}");
        let seen = server.storage().seen.lock().expect("record lock").clone();
        assert_eq!(
            seen,
            vec![
                r#"Append { cf: "default", key: [107], value: [118] } Some(ClientSession { client_id: 4, sequence: 7 })"#
                    .to_owned(),
                r#"Put { cf: "default", key: [107], value: [118] } None"#.to_owned(),
                "open 4".to_owned(),
                r#"Append { cf: "default", key: [107], value: [118] } Some(ClientSession { client_id: 13, sequence: 2 })"#
                    .to_owned(),
                "open 13".to_owned(),
            ]
        );
    }

    /// A key outside the region names the region it was sent to (the
    /// reader alone knows only its range).
    #[tokio::test]
    async fn a_get_outside_the_region_names_the_region() {
        let dir = tempfile::tempdir().expect("create temp dir");
        let storage = StandaloneStorage::open(dir.path()).expect("open standalone storage");
        let mut svc =
            serve_on_loopback(NarrowStorage(storage), ServiceOptions::default(), dir).await;
        let resp = svc
            .client
            .raw_get(RawGetRequest {
                context: Some(Context {
                    region_id: 4,
                    ..Default::default()
                }),
                key: b"z".to_vec(),
                ..Default::default()
            })
            .await
            .expect("answered")
            .into_inner();
        let e = resp
            .region_error
            .as_ref()
            .and_then(|e| e.key_not_in_region.as_ref())
            .unwrap_or_else(|| panic!("expected KeyNotInRegion, got {resp:?}"));
        assert_eq!((e.key.as_slice(), e.region_id), (&b"z"[..], 4));
    }

    #[tokio::test]
    async fn a_scan_starting_outside_the_region_is_key_not_in_region() {
        let dir = tempfile::tempdir().expect("create temp dir");
        let storage = StandaloneStorage::open(dir.path()).expect("open standalone storage");
        let mut svc =
            serve_on_loopback(NarrowStorage(storage), ServiceOptions::default(), dir).await;
        must_put(&mut svc.client, b"c", b"1").await;
        let ctx = Context {
            region_id: 4,
            ..Default::default()
        };
        for start in [&b"a"[..], b"", b"y", b"z"] {
            let resp = svc
                .client
                .raw_scan(RawScanRequest {
                    context: Some(ctx),
                    ..scan_req(start, 10)
                })
                .await
                .expect("answered")
                .into_inner();
            let e = resp
                .region_error
                .as_ref()
                .and_then(|e| e.key_not_in_region.as_ref())
                .unwrap_or_else(|| panic!("expected KeyNotInRegion for {start:?}, got {resp:?}"));
            assert_eq!(
                (
                    e.key.as_slice(),
                    e.region_id,
                    e.start_key.as_slice(),
                    e.end_key.as_slice()
                ),
                (start, 4, &b"b"[..], &b"y"[..])
            );
            assert!(resp.kvs.is_empty());
        }
        let resp = svc
            .client
            .raw_scan(scan_req(b"b", 10))
            .await
            .expect("answered")
            .into_inner();
        assert_eq!(resp.kvs.len(), 1, "{resp:?}");
    }

    /// The service over `RaftStorage` on a cluster's leader store: a round
    /// trip through Raft, and a request without a context refused plainly.
    #[test]
    fn over_raft_storage_on_the_leader() {
        use std::time::Duration;

        use raftstore::Config;

        use crate::cluster::{Cluster, ClusterOptions, FIRST_REGION_ID};
        use crate::server::raft_storage::{RaftStorage, RaftStorageOptions};

        let cluster =
            Cluster::new(ClusterOptions::new(3, Config::for_tests())).expect("build the cluster");
        cluster.start().expect("start the cluster");
        let (_, leader) = cluster
            .wait_for_leader(Duration::from_secs(20))
            .expect("a leader");
        let region = cluster.region(FIRST_REGION_ID).expect("the first region");
        let ctx = Context {
            region_id: region.id,
            region_epoch: region.region_epoch,
            peer: Some(metapb::Peer {
                id: leader,
                store_id: leader,
            }),
            ..Default::default()
        };
        let storage = RaftStorage::new(
            cluster.router(leader).expect("the leader's store runs"),
            leader,
            RaftStorageOptions::default(),
        );
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build a test runtime");
        rt.block_on(async {
            let dir = tempfile::tempdir().expect("create temp dir");
            let mut svc = serve_on_loopback(storage, ServiceOptions::default(), dir).await;
            let resp = svc
                .client
                .raw_put(RawPutRequest {
                    context: Some(ctx),
                    ..put_req(b"k", b"v")
                })
                .await
                .expect("RawPut answered")
                .into_inner();
            assert!(
                resp.error.is_empty() && resp.region_error.is_none(),
                "{resp:?}"
            );
            let resp = svc
                .client
                .raw_get(RawGetRequest {
                    context: Some(ctx),
                    ..get_req(b"k")
                })
                .await
                .expect("RawGet answered")
                .into_inner();
            assert_eq!(resp.value, b"v", "{resp:?}");
            let resp = svc
                .client
                .raw_put(put_req(b"k", b"w"))
                .await
                .expect("RawPut answered")
                .into_inner();
            assert!(resp.error.contains("no region"), "{resp:?}");
            let resp = svc
                .client
                .raw_scan(scan_req(b"k", 10))
                .await
                .expect("RawScan answered")
                .into_inner();
            assert!(resp.error.contains("no region"), "{resp:?}");
        });
    }
}
