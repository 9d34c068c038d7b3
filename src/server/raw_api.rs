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
//! - `RawPut` and `RawDelete` refuse an empty key: no such key can exist.

use kvproto::kvrpcpb::{
    Context, KvPair, RawDeleteRequest, RawDeleteResponse, RawGetRequest, RawGetResponse,
    RawPutRequest, RawPutResponse, RawScanRequest, RawScanResponse,
};
use kvproto::metapb;
use raftstore::operation::command::check_key_in_region;
use storage::{CF_DEFAULT, Modify, Storage, StorageReader, check_data_cf};

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
    RawScanResponse
);

impl<S: Storage> Server<S> {
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
        let modify = request_cf(&req.cf).and_then(|cf| {
            non_empty_key(&req.key)?;
            Ok(Modify::Put {
                cf: cf.to_owned(),
                key: req.key,
                value: req.value,
            })
        });
        match self.write(&ctx, modify).await {
            Ok(()) => RawPutResponse::default(),
            Err(e) => RawPutResponse::from_error(e),
        }
    }

    /// `RawDelete`: removes `key` from `cf`, durably.
    pub async fn raw_delete(&self, req: RawDeleteRequest) -> RawDeleteResponse {
        let ctx = req.context.unwrap_or_default();
        let modify = request_cf(&req.cf).and_then(|cf| {
            non_empty_key(&req.key)?;
            Ok(Modify::Delete {
                cf: cf.to_owned(),
                key: req.key,
            })
        });
        match self.write(&ctx, modify).await {
            Ok(()) => RawDeleteResponse::default(),
            Err(e) => RawDeleteResponse::from_error(e),
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

    async fn write(&self, ctx: &Context, modify: Result<Modify>) -> Result<()> {
        Ok(self.storage.write(ctx, vec![modify?]).await?)
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
