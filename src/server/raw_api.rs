//! The Raw API: non-transactional get, put, delete and scan of single keys in
//! one column family, with TinyKV's semantics.
//!
//! - `RawGet`: the value, or `not_found = true` (not an error) if absent.
//! - `RawPut` / `RawDelete`: one durable write; deleting an absent key
//!   succeeds.
//! - `RawScan`: up to `limit` pairs from `start_key` (inclusive) in key order,
//!   from one consistent snapshot; `limit = 0` returns none. Two bounds
//!   ([`ScanLimits`]): `limit` is capped, and pairs are added while their
//!   bytes (key + value) stay within a byte bound; the first pair is always
//!   returned, however large, so a client paging through keys always makes
//!   progress (a response is at most one pair over the bound). A client
//!   that gets fewer pairs than it asked for continues after the last key.
//!   A start key outside the reader's range (a region's) answers
//!   `KeyNotInRegion`: the reader would otherwise start at the range's first
//!   key, and the client would get keys it did not ask for without knowing.
//!
//! Input checks, before touching storage:
//! - `cf` must be a data column family (`default`, `lock`, `write`). An empty
//!   `cf` means `default`, as in TiKV; any other name, and the internal `raft`
//!   CF, is refused with an error naming it.
//! - `RawPut`, `RawDelete` and `RawAppend` refuse an empty key: no such key
//!   can exist.
//!
//! Writes and client sessions (`docs/PROTOCOL_EXTENSIONS.md`, "Client
//! sessions"; [`super::session`]):
//! - `RawPut`, `RawDelete`, `RawAppend`: each is one command of its own. A
//!   context with `client_id != 0` carries the session `(client_id,
//!   sequence)` into the command, which the state machine applies at most
//!   once; `client_id != 0` with `sequence == 0`, or a sequence without a
//!   client id, is refused (sequences start at 1, and a sequence alone
//!   names no session).
//! - `RawAppend`: appends `value` to the key's value (a missing key counts
//!   as empty). Over the raft store the state machine appends; over a
//!   storage without one (standalone) the handler reads, concatenates and
//!   writes while holding the server's write lock exclusively, and every
//!   other write holds it shared, so no write lands between an append's
//!   read and its write and concurrent appends all count.
//! - `OpenSession`: opens `context.client_id`'s session in the context's
//!   region (its `sequence` is ignored); a context without a client id is
//!   refused.
//! - Over a storage that keeps no sessions, a request with a session and
//!   `OpenSession` are refused with [`super::session::NO_SESSIONS`].
//! - A region error from the store (`SessionExpired` included) comes back
//!   in `region_error`, unchanged.

use kvproto::kvrpcpb::{
    Context, KvPair, OpenSessionRequest, OpenSessionResponse, RawAppendRequest, RawAppendResponse,
    RawDeleteRequest, RawDeleteResponse, RawGetRequest, RawGetResponse, RawPutRequest,
    RawPutResponse, RawScanRequest, RawScanResponse,
};
use kvproto::metapb;
use kvproto::raft_cmdpb::ClientSession;
use raftstore::operation::command::check_key_in_region;
use storage::{CF_DEFAULT, Modify, StorageReader, check_data_cf};

use super::session::{NO_SESSIONS, RawWrite, SessionStorage};
use super::{ResponseError, Server};

type Result<T> = std::result::Result<T, ResponseError>;

/// The bounds of one `RawScan` (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanLimits {
    /// The most pairs one scan returns, whatever `limit` asks for.
    pub max_pairs: u32,
    /// The bytes (keys + values) after which a scan stops adding pairs.
    pub max_bytes: usize,
}

impl Default for ScanLimits {
    /// 10,000 pairs, 4 MiB.
    fn default() -> Self {
        ScanLimits {
            max_pairs: 10_000,
            max_bytes: 4 * 1024 * 1024,
        }
    }
}

/// `KeyNotInRegion` unless `key` is in `range` (of region `region_id`):
/// the raftstore's own check and error, over the reader's range.
fn check_in_range(region_id: u64, key: &[u8], range: (&[u8], &[u8])) -> Result<()> {
    let (start_key, end_key) = range;
    let region = metapb::Region {
        id: region_id,
        start_key: start_key.to_vec(),
        end_key: end_key.to_vec(),
        ..Default::default()
    };
    check_key_in_region(key, &region)
        .map_err(|e| ResponseError::Region(Box::new(e.to_region_error())))
}

/// The column family a request names, checked: empty means `default`.
fn request_cf(cf: &str) -> Result<&str> {
    let cf = if cf.is_empty() { CF_DEFAULT } else { cf };
    check_data_cf(cf).map_err(|e| ResponseError::Other(format!("invalid cf: {e}")))?;
    Ok(cf)
}

/// The client session a write's context carries: `None` without a client
/// id; refused when the pair cannot name one write of a session.
fn session_of(ctx: &Context) -> Result<Option<ClientSession>> {
    match (ctx.client_id, ctx.sequence) {
        (0, 0) => Ok(None),
        (0, sequence) => Err(ResponseError::Other(format!(
            "invalid session: sequence {sequence} without a client id (client_id 0 means no \
             session; a session write needs both)"
        ))),
        (client_id, 0) => Err(ResponseError::Other(format!(
            "invalid session: client {client_id} sent a write with sequence 0 (sequences \
             start at 1 and grow by one per write)"
        ))),
        (client_id, sequence) => Ok(Some(ClientSession {
            client_id,
            sequence,
        })),
    }
}

fn non_empty_key(key: &[u8]) -> Result<()> {
    if key.is_empty() {
        return Err(ResponseError::Other(
            "invalid key: the key is empty".to_owned(),
        ));
    }
    Ok(())
}

/// Responses that carry a `region_error` and an `error` string.
trait ErrorResponse: Default {
    fn set_error(&mut self, e: ResponseError);

    fn from_error(e: ResponseError) -> Self {
        let mut resp = Self::default();
        resp.set_error(e);
        resp
    }
}

macro_rules! impl_error_response {
    ($($resp:ty),*) => {$(
        impl ErrorResponse for $resp {
            fn set_error(&mut self, e: ResponseError) {
                match e {
                    ResponseError::Region(region_error) => self.region_error = Some(*region_error),
                    ResponseError::Other(error) => self.error = error,
                }
            }
        }
    )*};
}

impl_error_response!(
    RawGetResponse,
    RawPutResponse,
    RawDeleteResponse,
    RawScanResponse,
    RawAppendResponse,
    OpenSessionResponse
);

impl<S: SessionStorage> Server<S> {
    /// `RawGet`: the value of `key` in `cf`, or `not_found`.
    pub async fn raw_get(&self, req: RawGetRequest) -> RawGetResponse {
        let ctx = req.context.unwrap_or_default();
        match self.get(&ctx, &req.cf, &req.key).await {
            Ok(Some(value)) => RawGetResponse {
                value,
                ..Default::default()
            },
            Ok(None) => RawGetResponse {
                not_found: true,
                ..Default::default()
            },
            Err(e) => RawGetResponse::from_error(e),
        }
    }

    /// `RawPut`: sets `key` to `value` in `cf`, durably.
    pub async fn raw_put(&self, req: RawPutRequest) -> RawPutResponse {
        let ctx = req.context.unwrap_or_default();
        let write = request_cf(&req.cf).and_then(|cf| {
            non_empty_key(&req.key)?;
            Ok(RawWrite::Put {
                cf: cf.to_owned(),
                key: req.key,
                value: req.value,
            })
        });
        match self.write(&ctx, write).await {
            Ok(()) => RawPutResponse::default(),
            Err(e) => RawPutResponse::from_error(e),
        }
    }

    /// `RawDelete`: removes `key` from `cf`, durably.
    pub async fn raw_delete(&self, req: RawDeleteRequest) -> RawDeleteResponse {
        let ctx = req.context.unwrap_or_default();
        let write = request_cf(&req.cf).and_then(|cf| {
            non_empty_key(&req.key)?;
            Ok(RawWrite::Delete {
                cf: cf.to_owned(),
                key: req.key,
            })
        });
        match self.write(&ctx, write).await {
            Ok(()) => RawDeleteResponse::default(),
            Err(e) => RawDeleteResponse::from_error(e),
        }
    }

    /// `RawAppend`: appends `value` to `key`'s value in `cf` (a missing key
    /// counts as empty), durably; see the module docs.
    pub async fn raw_append(&self, req: RawAppendRequest) -> RawAppendResponse {
        let ctx = req.context.unwrap_or_default();
        let write = request_cf(&req.cf).and_then(|cf| {
            non_empty_key(&req.key)?;
            Ok(RawWrite::Append {
                cf: cf.to_owned(),
                key: req.key,
                value: req.value,
            })
        });
        match self.write(&ctx, write).await {
            Ok(()) => RawAppendResponse::default(),
            Err(e) => RawAppendResponse::from_error(e),
        }
    }

    /// `OpenSession`: opens the context's client session in its region.
    pub async fn open_session(&self, req: OpenSessionRequest) -> OpenSessionResponse {
        let ctx = req.context.unwrap_or_default();
        match self.open(&ctx).await {
            Ok(()) => OpenSessionResponse::default(),
            Err(e) => OpenSessionResponse::from_error(e),
        }
    }

    /// `RawScan`: up to `limit` pairs of `cf` from `start_key`, in key order.
    pub async fn raw_scan(&self, req: RawScanRequest) -> RawScanResponse {
        let ctx = req.context.unwrap_or_default();
        match self.scan(&ctx, &req.cf, &req.start_key, req.limit).await {
            Ok(kvs) => RawScanResponse {
                kvs,
                ..Default::default()
            },
            Err(e) => RawScanResponse::from_error(e),
        }
    }

    async fn get(&self, ctx: &Context, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let cf = request_cf(cf)?;
        let reader = self.storage.reader(ctx).await?;
        // Checked here to name the region: the reader knows only its range.
        check_in_range(ctx.region_id, key, reader.key_range())?;
        Ok(reader.get_cf(cf, key)?)
    }

    /// Runs one checked write; see the module docs.
    async fn write(&self, ctx: &Context, write: Result<RawWrite>) -> Result<()> {
        let write = write?;
        let session = session_of(ctx)?;
        if S::KEEPS_SESSIONS {
            return Ok(self.storage.write_command(ctx, write, session).await?);
        }
        if session.is_some() {
            return Err(ResponseError::Other(NO_SESSIONS.to_owned()));
        }
        let modify = match write {
            RawWrite::Put { cf, key, value } => Modify::Put { cf, key, value },
            RawWrite::Delete { cf, key } => Modify::Delete { cf, key },
            RawWrite::Append { cf, key, value } => {
                return self.append_locally(ctx, cf, key, value).await;
            }
        };
        let _shared = self.local_writes.read().await;
        Ok(self.storage.write(ctx, vec![modify]).await?)
    }

    /// `Append` over a storage that does not apply it itself: a read and a
    /// write, exclusive from one to the other (see the module docs).
    async fn append_locally(
        &self,
        ctx: &Context,
        cf: String,
        key: Vec<u8>,
        value: Vec<u8>,
    ) -> Result<()> {
        let _exclusive = self.local_writes.write().await;
        let reader = self.storage.reader(ctx).await?;
        check_in_range(ctx.region_id, &key, reader.key_range())?;
        let mut current = reader.get_cf(&cf, &key)?.unwrap_or_default();
        drop(reader);
        current.extend_from_slice(&value);
        let put = Modify::Put {
            cf,
            key,
            value: current,
        };
        Ok(self.storage.write(ctx, vec![put]).await?)
    }

    async fn open(&self, ctx: &Context) -> Result<()> {
        if ctx.client_id == 0 {
            return Err(ResponseError::Other(
                "invalid session: OpenSession names no client (client_id is 0)".to_owned(),
            ));
        }
        if !S::KEEPS_SESSIONS {
            return Err(ResponseError::Other(NO_SESSIONS.to_owned()));
        }
        Ok(self.storage.open_session(ctx, ctx.client_id).await?)
    }

    async fn scan(&self, ctx: &Context, cf: &str, start: &[u8], limit: u32) -> Result<Vec<KvPair>> {
        let cf = request_cf(cf)?;
        let limit = limit.min(self.scan_limits.max_pairs);
        if limit == 0 {
            return Ok(vec![]);
        }
        let reader = self.storage.reader(ctx).await?;
        check_in_range(ctx.region_id, start, reader.key_range())?;
        let mut it = reader.iter_cf(cf)?;
        let mut kvs = vec![];
        let mut bytes = 0usize;
        it.seek(start);
        while let Some((key, value)) = it.item() {
            let size = key.len() + value.len();
            if !kvs.is_empty() && bytes.saturating_add(size) > self.scan_limits.max_bytes {
                break;
            }
            bytes += size;
            kvs.push(KvPair {
                error: None,
                key: key.to_vec(),
                value: value.to_vec(),
            });
            if kvs.len() >= limit as usize {
                break;
            }
            it.next();
        }
        it.status()?;
        Ok(kvs)
    }
}
