//! The Raw API of [`Client`]: get, put, delete and append of one key, and
//! a scan that crosses regions.
//!
//! A scan walks the key space region by region from `start`, up to `end`
//! (exclusive; empty: unbounded) and `limit` pairs. Each request asks the
//! region for what is left of `limit` from the next key `next`:
//! - an answer with pairs moves `next` to the last pair's key followed by
//!   a 0 byte (the smallest key after it), in the same region: a store may
//!   return fewer pairs than asked (its byte bound) without being done;
//! - an empty answer means the region has nothing from `next` on; `next`
//!   becomes the region's end key, and the scan ends at the last region.
//!
//! Invariant: `next` only grows and every pair returned is at or above it,
//! so the result is in key order with no key twice. A region that changes
//! under the scan (`EpochNotMatch`) is re-located from `next` — the key
//! after the last one returned, never the region's start — by the retry of
//! that one request ([`super::route`]). The whole scan shares one deadline.

use kvproto::kvrpcpb::{
    RawAppendRequest, RawDeleteRequest, RawGetRequest, RawPutRequest, RawScanRequest,
};

use super::Client;
use super::cache::key_in_range;
use super::errors::{Error, Result};
use super::route::show_key;

/// A key and its value.
pub type KvPair = (Vec<u8>, Vec<u8>);

/// The smallest key after `key`.
fn next_key(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

impl Client {
    /// The value of `key` in column family `cf` (empty: `default`), or
    /// `None` if it has none.
    pub async fn raw_get(&self, cf: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let request = RawGetRequest {
            context: None,
            key: key.to_vec(),
            cf: cf.to_owned(),
        };
        let answered = self.call_region(key, &request, self.deadline()).await?;
        let response = answered.response;
        Ok((!response.not_found).then_some(response.value))
    }

    /// Sets `key` to `value` in column family `cf` (empty: `default`).
    pub async fn raw_put(&self, cf: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let request = RawPutRequest {
            context: None,
            key: key.to_vec(),
            value: value.to_vec(),
            cf: cf.to_owned(),
        };
        self.call_region(key, &request, self.deadline()).await?;
        Ok(())
    }

    /// Removes `key` from column family `cf` (empty: `default`); removing
    /// an absent key succeeds.
    pub async fn raw_delete(&self, cf: &str, key: &[u8]) -> Result<()> {
        let request = RawDeleteRequest {
            context: None,
            key: key.to_vec(),
            cf: cf.to_owned(),
        };
        self.call_region(key, &request, self.deadline()).await?;
        Ok(())
    }

    /// Appends `value` to `key`'s value in column family `cf` (empty:
    /// `default`); a missing key counts as empty.
    ///
    /// Not exactly once: an attempt whose answer is lost (a broken
    /// connection, no answer in time) is sent again, and may then apply
    /// twice. A [`super::Clerk`] appends exactly once.
    pub async fn raw_append(&self, cf: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let request = RawAppendRequest {
            context: None,
            key: key.to_vec(),
            value: value.to_vec(),
            cf: cf.to_owned(),
        };
        self.call_region(key, &request, self.deadline()).await?;
        Ok(())
    }

    /// Up to `limit` pairs of column family `cf` (empty: `default`) with
    /// keys in `[start, end)` (an empty `end` is unbounded), in key order,
    /// across regions; see the module docs. A `limit` of 0 returns none.
    pub async fn raw_scan(
        &self,
        cf: &str,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<KvPair>> {
        let deadline = self.deadline();
        let mut pairs: Vec<KvPair> = Vec::new();
        let mut next = start.to_vec();
        while pairs.len() < limit && (end.is_empty() || next.as_slice() < end) {
            let want = u32::try_from(limit - pairs.len()).unwrap_or(u32::MAX);
            let request = RawScanRequest {
                context: None,
                start_key: next.clone(),
                limit: want,
                cf: cf.to_owned(),
            };
            let mut answered = self.call_region(&next, &request, deadline).await?;
            let region = &answered.region;
            let mut kvs = std::mem::take(&mut answered.response.kvs);
            kvs.truncate(want as usize);
            let mut past_end = false;
            let mut last = None;
            for kv in kvs {
                if let Some(error) = kv.error {
                    return Err(Error::Store {
                        op: "RawScan",
                        store_id: answered.peer.store_id,
                        message: format!("key {:?}: {error:?}", show_key(&kv.key)),
                    });
                }
                // A well-behaved store returns keys from `next` on, inside
                // its region, in order; anything else is skipped rather
                // than returned out of order or twice.
                if kv.key < next
                    || !key_in_range(&kv.key, &region.start_key, &region.end_key)
                    || last.as_ref().is_some_and(|l: &Vec<u8>| kv.key <= *l)
                {
                    continue;
                }
                if !end.is_empty() && kv.key.as_slice() >= end {
                    past_end = true;
                    break;
                }
                last = Some(kv.key.clone());
                pairs.push((kv.key, kv.value));
            }
            if past_end {
                break;
            }
            match last {
                Some(last) => next = next_key(&last),
                None if region.end_key.is_empty() => break,
                None => next = region.end_key.clone(),
            }
        }
        Ok(pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_next_key_is_the_smallest_key_after() {
        assert_eq!(next_key(b"a"), b"a\0");
        assert_eq!(next_key(b""), b"\0");
        assert!(next_key(b"a").as_slice() < b"a\x01".as_slice());
        assert!(next_key(b"a").as_slice() > b"a".as_slice());
    }
}
