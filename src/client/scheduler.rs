//! `SchedulerConn`: the scheduler calls a client makes (`GetMembers` for
//! the cluster id, `GetRegion`, `GetStore`, `GetAllStores`,
//! `ScanRegions`, and `AllocID` for a Clerk's client id), one attempt each.
//!
//! Each call is bounded by the timeout it is given and sorts its failure
//! ([`Failure`]): an unreachable scheduler and a cluster not bootstrapped
//! yet are worth retrying; a refused request or any other gRPC status is
//! not. The retry loops live with the callers, which own the deadline.

use std::time::Duration;

use kvproto::metapb::{Peer, Region, Store};
use kvproto::schedulerpb::scheduler_client::SchedulerClient;
use kvproto::schedulerpb::{
    AllocIdRequest, ErrorType, GetAllStoresRequest, GetMembersRequest, GetRegionRequest,
    GetStoreRequest, RequestHeader, ResponseHeader, ScanRegionsRequest,
};
use tonic::transport::{Channel, Endpoint};

use super::errors::Error;
use super::retry::{Failure, is_transport_error};

/// `http://` + `addr`, unless `addr` names its scheme already.
pub(crate) fn endpoint_url(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("http://{addr}")
    }
}

/// The endpoint for `addr`, or [`Error::InvalidAddress`].
pub(crate) fn endpoint(addr: &str, connect_timeout: Duration) -> Result<Endpoint, Error> {
    Endpoint::from_shared(endpoint_url(addr))
        .map(|e| e.connect_timeout(connect_timeout))
        .map_err(|e| Error::InvalidAddress {
            addr: addr.to_owned(),
            reason: e.to_string(),
        })
}

/// A failed gRPC call as a [`Failure`].
fn status_failure(call: &'static str, status: tonic::Status) -> Failure {
    if is_transport_error(&status) {
        Failure::Retry(format!(
            "{call}: scheduler unreachable: {}",
            status.message()
        ))
    } else {
        Failure::Fatal(Error::Grpc {
            call,
            code: status.code(),
            message: status.message().to_owned(),
        })
    }
}

/// The error in a response header as a [`Failure`]; `Ok` if there is none.
fn check_header(call: &'static str, header: Option<&ResponseHeader>) -> Result<(), Failure> {
    let Some(error) = header.and_then(|h| h.error.as_ref()) else {
        return Ok(());
    };
    match error.r#type() {
        ErrorType::Ok => Ok(()),
        // A cluster being set up: its first store bootstraps it soon.
        ErrorType::NotBootstrapped => Err(Failure::Retry(format!(
            "{call}: the cluster is not bootstrapped yet"
        ))),
        kind => Err(Failure::Fatal(Error::Scheduler {
            call,
            message: format!("{kind:?}: {}", error.message),
        })),
    }
}

/// Runs `call` with a timeout; a timeout is a retryable failure.
async fn timed<T>(
    call: &'static str,
    timeout: Duration,
    future: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(timeout, future).await {
        Ok(Ok(response)) => Ok(response.into_inner()),
        Ok(Err(status)) => Err(status_failure(call, status)),
        Err(_) => Err(Failure::Retry(format!(
            "{call}: no answer from the scheduler within {timeout:?}"
        ))),
    }
}

/// A region and its leader, as the scheduler last heard.
pub(crate) type RegionAndLeader = (Region, Option<Peer>);

/// A connection to the scheduler, bound to its cluster. Cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct SchedulerConn {
    client: SchedulerClient<Channel>,
    cluster_id: u64,
}

impl SchedulerConn {
    /// Connects over `channel` (lazy: the connection is made by the first
    /// call) and learns the cluster id with `GetMembers`.
    pub(crate) async fn connect(
        channel: Channel,
        max_message_size: usize,
        timeout: Duration,
    ) -> Result<SchedulerConn, Failure> {
        let mut client = SchedulerClient::new(channel)
            .max_decoding_message_size(max_message_size)
            .max_encoding_message_size(max_message_size);
        let members = timed(
            "GetMembers",
            timeout,
            client.get_members(GetMembersRequest { header: None }),
        )
        .await?;
        check_header("GetMembers", members.header.as_ref())?;
        let cluster_id = members.header.map_or(0, |h| h.cluster_id);
        if cluster_id == 0 {
            return Err(Failure::Fatal(Error::InvalidResponse {
                call: "GetMembers",
                reason: "the answer names no cluster".to_owned(),
            }));
        }
        Ok(SchedulerConn { client, cluster_id })
    }

    /// The cluster this scheduler serves.
    pub(crate) fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    fn header(&self) -> Option<RequestHeader> {
        Some(RequestHeader {
            cluster_id: self.cluster_id,
        })
    }

    /// The region containing `key` and its leader; `None` if no region
    /// covers it (the scheduler answers an empty region then).
    pub(crate) async fn get_region(
        &self,
        key: &[u8],
        timeout: Duration,
    ) -> Result<Option<RegionAndLeader>, Failure> {
        let request = GetRegionRequest {
            header: self.header(),
            region_key: key.to_vec(),
        };
        let resp = timed(
            "GetRegion",
            timeout,
            self.client.clone().get_region(request),
        )
        .await?;
        // TinyKV's scheduler may say "region not found" in the header for
        // an uncovered key; ours answers an empty region. Both mean none.
        if resp
            .header
            .as_ref()
            .and_then(|h| h.error.as_ref())
            .map(|e| e.r#type())
            == Some(ErrorType::RegionNotFound)
        {
            return Ok(None);
        }
        check_header("GetRegion", resp.header.as_ref())?;
        Ok(resp
            .region
            .filter(|r| r.id != 0)
            .map(|r| (r, resp.leader.filter(|l| l.id != 0))))
    }

    /// Store `store_id`. A store the scheduler does not know is a
    /// retryable failure: the caller tries another peer.
    pub(crate) async fn get_store(
        &self,
        store_id: u64,
        timeout: Duration,
    ) -> Result<Store, Failure> {
        let request = GetStoreRequest {
            header: self.header(),
            store_id,
        };
        let resp = timed("GetStore", timeout, self.client.clone().get_store(request)).await?;
        if let Some(error) = resp.header.as_ref().and_then(|h| h.error.as_ref())
            && error.r#type() == ErrorType::StoreTombstone
        {
            return Err(Failure::Retry(format!("store {store_id} is a tombstone")));
        }
        match check_header("GetStore", resp.header.as_ref()) {
            // `StoreNotFound` comes back as `UNKNOWN` with a message.
            Err(Failure::Fatal(Error::Scheduler { message, .. })) => {
                return Err(Failure::Retry(format!(
                    "GetStore {store_id}: scheduler: {message}"
                )));
            }
            other => other?,
        }
        resp.store
            .filter(|s| s.id == store_id)
            .ok_or_else(|| Failure::Retry(format!("the scheduler does not know store {store_id}")))
    }

    /// A new id, unique in the cluster and never handed out again, also
    /// across scheduler restarts (`AllocID`).
    pub(crate) async fn alloc_id(&self, timeout: Duration) -> Result<u64, Failure> {
        let request = AllocIdRequest {
            header: self.header(),
        };
        let resp = timed("AllocID", timeout, self.client.clone().alloc_id(request)).await?;
        check_header("AllocID", resp.header.as_ref())?;
        if resp.id == 0 {
            return Err(Failure::Fatal(Error::InvalidResponse {
                call: "AllocID",
                reason: "the answer is id 0, which names nothing".to_owned(),
            }));
        }
        Ok(resp.id)
    }

    /// Every store the scheduler knows, tombstones included.
    pub(crate) async fn get_all_stores(&self, timeout: Duration) -> Result<Vec<Store>, Failure> {
        let request = GetAllStoresRequest {
            header: self.header(),
            exclude_tombstone_stores: false,
        };
        let resp = timed(
            "GetAllStores",
            timeout,
            self.client.clone().get_all_stores(request),
        )
        .await?;
        check_header("GetAllStores", resp.header.as_ref())?;
        Ok(resp.stores)
    }

    /// The regions overlapping `[start, end)` (empty `end`: unbounded), at
    /// most `limit` (0: all), with their leaders and the size of their
    /// client session tables (`None`: the scheduler does not report it).
    pub(crate) async fn scan_regions(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
        timeout: Duration,
    ) -> Result<Vec<(RegionAndLeader, Option<u64>)>, Failure> {
        let request = ScanRegionsRequest {
            header: self.header(),
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            limit: i32::try_from(limit).unwrap_or(i32::MAX),
        };
        let resp = timed(
            "ScanRegions",
            timeout,
            self.client.clone().scan_regions(request),
        )
        .await?;
        check_header("ScanRegions", resp.header.as_ref())?;
        if !resp.leaders.is_empty() && resp.leaders.len() != resp.regions.len() {
            return Err(Failure::Fatal(Error::InvalidResponse {
                call: "ScanRegions",
                reason: format!(
                    "{} regions but {} leaders",
                    resp.regions.len(),
                    resp.leaders.len()
                ),
            }));
        }
        // A TinyKV scheduler does not send the extension: no counts at all.
        let mut sessions = resp.client_sessions.into_iter();
        let mut leaders = resp.leaders.into_iter();
        Ok(resp
            .regions
            .into_iter()
            .map(|region| {
                let leader = leaders.next().filter(|l| l.id != 0);
                ((region, leader), sessions.next())
            })
            .collect())
    }
}
