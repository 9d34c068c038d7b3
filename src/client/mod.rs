//! The client library ("Clerk"): the Raw API of a tinykv-rs (or TinyKV)
//! cluster over gRPC, routed by region, and the scheduler's view of the
//! cluster for inspection.
//!
//! A [`Client`] connects to the scheduler (`GetMembers` gives the cluster
//! id every later request names), then sends each request to the region
//! holding its key:
//! - [`cache`]: the regions it knows, by start key, with the peer to try
//!   first; filled from `GetRegion` and from the stores' region errors;
//! - `stores`: each store's address (`GetStore`) and one channel per
//!   address, reused;
//! - `route`: one request, retried by the region error it gets until it
//!   succeeds or the operation's deadline passes (the table of what each
//!   error does is there);
//! - `raw`: `raw_get`, `raw_put`, `raw_delete`, `raw_append`, and
//!   `raw_scan` across regions;
//! - [`clerk`]: [`Clerk`], exactly-once writes through a client session
//!   ([`session`]: the session's sequence numbers and open regions);
//! - `retry`: the backoff and the failures worth a retry;
//! - `scheduler`: the scheduler calls, one attempt each;
//! - `errors`: [`Error`].
//!
//! Every operation has one deadline ([`ClientOptions::timeout`]); each
//! gRPC attempt within it has its own ([`ClientOptions::attempt_timeout`]).
//! A client is cheap to clone; clones share the caches and channels, and
//! operations may run concurrently.

pub mod cache;
pub mod clerk;
mod errors;
mod raw;
mod retry;
mod route;
mod scheduler;
pub mod session;
mod stores;

#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use kvproto::metapb::{Peer, Region, Store};
use slog::{Logger, debug, o};
use tokio::time::Instant;

use self::cache::RegionCache;
use self::retry::{Backoff, Failure, Failures, attempt_timeout};
use self::scheduler::{SchedulerConn, endpoint};
use self::stores::StorePool;

pub use self::clerk::Clerk;
pub use self::errors::{Error, Result};
pub use self::raw::KvPair;

/// How a [`Client`] retries and how long it waits.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The deadline of one operation (a get, a whole scan, a connect),
    /// retries included. Default: 20 s.
    pub timeout: Duration,
    /// The first wait before a retry. Default: 20 ms.
    pub backoff_min: Duration,
    /// The longest wait before a retry; waits double up to it. Default: 1 s.
    pub backoff_max: Duration,
    /// How long one gRPC call (to a store or the scheduler) may take before
    /// it is given up and retried, elsewhere if possible. Default: 5 s.
    pub attempt_timeout: Duration,
    /// The largest gRPC message sent or received. Default: 16 MiB, the
    /// store's own default.
    pub max_message_size: usize,
    /// Where retries are logged (at debug). Default: nowhere.
    pub logger: Logger,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            timeout: Duration::from_secs(20),
            backoff_min: Duration::from_millis(20),
            backoff_max: Duration::from_secs(1),
            attempt_timeout: Duration::from_secs(5),
            max_message_size: 16 * 1024 * 1024,
            logger: Logger::root(slog::Discard, o!()),
        }
    }
}

impl ClientOptions {
    fn validate(&self) -> Result<()> {
        let invalid = |reason: &str| Err(Error::InvalidOptions(reason.to_owned()));
        if self.timeout.is_zero() {
            return invalid("timeout must be positive");
        }
        if self.attempt_timeout.is_zero() {
            return invalid("attempt_timeout must be positive");
        }
        if self.backoff_min.is_zero() || self.backoff_min > self.backoff_max {
            return invalid("backoff_min must be positive and at most backoff_max");
        }
        if self.max_message_size == 0 {
            return invalid("max_message_size must be positive");
        }
        Ok(())
    }
}

/// A region as the scheduler knows it, with its leader if one reported.
#[derive(Debug, Clone, PartialEq)]
pub struct RegionInfo {
    /// The region: id, range, epoch, peers.
    pub region: Region,
    /// Its leader, as last reported to the scheduler.
    pub leader: Option<Peer>,
    /// The size of its client session table as the leader last reported it
    /// (from `ScanRegions`; `None` from `GetRegion` or a scheduler that
    /// does not report it).
    pub client_sessions: Option<u64>,
}

/// A client of one cluster; see the module docs. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    opts: ClientOptions,
    scheduler: SchedulerConn,
    /// The region cache. A std mutex: every use is a few map operations,
    /// never held across an await.
    cache: Mutex<RegionCache>,
    stores: StorePool,
    logger: Logger,
}

impl Client {
    /// Connects to the scheduler at `scheduler_addr` (`HOST:PORT` or
    /// `http://HOST:PORT`) and learns its cluster id, retrying while it is
    /// unreachable until [`ClientOptions::timeout`].
    pub async fn connect(scheduler_addr: &str, opts: ClientOptions) -> Result<Client> {
        opts.validate()?;
        let channel = endpoint(scheduler_addr, opts.attempt_timeout)?.connect_lazy();
        let deadline = Instant::now() + opts.timeout;
        let mut backoff = Backoff::new(opts.backoff_min, opts.backoff_max);
        let mut failures = Failures::default();
        let scheduler = loop {
            let timeout = attempt_timeout(deadline, opts.attempt_timeout);
            let connected =
                SchedulerConn::connect(channel.clone(), opts.max_message_size, timeout).await;
            let reason = match connected {
                Ok(scheduler) => break scheduler,
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry(reason)) => reason,
            };
            debug!(opts.logger, "scheduler not reachable yet"; "addr" => scheduler_addr, "err" => &reason);
            failures.record(&reason, deadline);
            if !backoff.wait(deadline, Duration::ZERO).await {
                return Err(failures.timeout("connect", opts.timeout));
            }
        };
        let logger = opts.logger.new(o!("cluster_id" => scheduler.cluster_id()));
        debug!(logger, "connected to the scheduler"; "addr" => scheduler_addr);
        Ok(Client {
            inner: Arc::new(Inner {
                stores: StorePool::new(opts.attempt_timeout, opts.max_message_size),
                opts,
                scheduler,
                cache: Mutex::new(RegionCache::new()),
                logger,
            }),
        })
    }

    /// The id of the cluster this client talks to.
    pub fn cluster_id(&self) -> u64 {
        self.inner.scheduler.cluster_id()
    }

    /// Every store the scheduler knows (`GetAllStores`), tombstones
    /// included, ordered by id.
    pub async fn stores(&self) -> Result<Vec<Store>> {
        let scheduler = &self.inner.scheduler;
        let mut stores = self
            .with_scheduler("GetAllStores", |timeout| scheduler.get_all_stores(timeout))
            .await?;
        stores.sort_by_key(|s| s.id);
        Ok(stores)
    }

    /// The regions overlapping `[start, end)` (an empty `end` is unbounded)
    /// in key order, at most `limit` of them (0: all), with their leaders
    /// (`ScanRegions`).
    pub async fn regions(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<RegionInfo>> {
        let scheduler = &self.inner.scheduler;
        let found = self
            .with_scheduler("ScanRegions", |timeout| {
                scheduler.scan_regions(start, end, limit, timeout)
            })
            .await?;
        Ok(found
            .into_iter()
            .map(|((region, leader), client_sessions)| RegionInfo {
                region,
                leader,
                client_sessions,
            })
            .collect())
    }

    /// The region holding `key` and its leader (`GetRegion`); `None` if no
    /// region covers it.
    pub async fn region(&self, key: &[u8]) -> Result<Option<RegionInfo>> {
        let scheduler = &self.inner.scheduler;
        let found = self
            .with_scheduler("GetRegion", |timeout| scheduler.get_region(key, timeout))
            .await?;
        Ok(found.map(|(region, leader)| RegionInfo {
            region,
            leader,
            client_sessions: None,
        }))
    }

    /// A new id from the scheduler (`AllocID`), unique in the cluster and
    /// never handed out again: a Clerk's client id.
    pub(crate) async fn alloc_id(&self) -> Result<u64> {
        let scheduler = &self.inner.scheduler;
        self.with_scheduler("AllocID", |timeout| scheduler.alloc_id(timeout))
            .await
    }

    /// Runs one scheduler call per attempt until it succeeds, fails for
    /// good, or the operation's deadline passes.
    async fn with_scheduler<T, F>(
        &self,
        op: &'static str,
        mut call: impl FnMut(Duration) -> F,
    ) -> Result<T>
    where
        F: Future<Output = std::result::Result<T, Failure>>,
    {
        let opts = &self.inner.opts;
        let deadline = self.deadline();
        let mut backoff = Backoff::new(opts.backoff_min, opts.backoff_max);
        let mut failures = Failures::default();
        loop {
            let reason = match call(attempt_timeout(deadline, opts.attempt_timeout)).await {
                Ok(found) => return Ok(found),
                Err(Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry(reason)) => reason,
            };
            debug!(self.inner.logger, "retrying"; "op" => op, "reason" => &reason);
            failures.record(&reason, deadline);
            if !backoff.wait(deadline, Duration::ZERO).await {
                return Err(failures.timeout(op, opts.timeout));
            }
        }
    }

    /// The deadline of an operation starting now.
    fn deadline(&self) -> Instant {
        Instant::now() + self.inner.opts.timeout
    }

    fn lock_cache(&self) -> MutexGuard<'_, RegionCache> {
        // Cache updates assert their invariants (debug builds); a panic
        // there is a bug, and the cache may be wrong, not unsafe: at worst
        // it routes a request to a peer that redirects it.
        self.inner
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The cached region holding `key`, if any (for tests of the routing).
    #[cfg(test)]
    fn cached_region(&self, key: &[u8]) -> Option<cache::CachedRegion> {
        self.lock_cache().locate(key).cloned()
    }
}
