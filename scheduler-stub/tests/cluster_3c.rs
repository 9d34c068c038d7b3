//! TinyKV's 3C cluster tests (`scheduler/server/cluster_test.go`, the `…3C`
//! ones), ported onto `MemoryScheduler`: region heartbeats go in, and what
//! the scheduler then reports (lookups by id and by key, per-store region,
//! leader and pending-peer counts and sizes) must match what was sent.
//!
//! Differences from the Go tests, all forced by rules the scheduler keeps
//! and PD's test cluster does not:
//! - Ids start at 1 (0 is refused), so Go's store, region and key `i` is
//!   `i + 1` here.
//! - Every region has at least one peer and a leader (a heartbeat without
//!   them is refused); where Go's regions have none, a peer on store 1 leads.
//! - Peers never change without a `conf_ver` change (a real store bumps it
//!   with every membership change; the scheduler refuses the change
//!   otherwise), so removing peers bumps `conf_ver` and adding them back
//!   bumps it again.
//! - A region overlapping one of the same `version` is refused as stale, so
//!   the split halves in `test_heartbeat_split_3c` carry the version a real
//!   split gives both halves (the parent's plus one).
//! - Go's random pending peer is picked by index here, so runs repeat.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::thread;

use kvproto::metapb::{Peer, Region, RegionEpoch, Store, StoreState};
use kvproto::schedulerpb::RegionHeartbeatRequest;
use slog::{Logger, o};
use tinykv_scheduler_stub::{Error, MemoryScheduler, SchedulerClient, StoreRegionStats};

/// Go's `initEpochVersion` and `initEpochConfVer`.
const INIT_EPOCH: RegionEpoch = RegionEpoch {
    conf_ver: 1,
    version: 1,
};

/// A region as a heartbeat reports it, and so as the scheduler must report
/// it back (Go's `core.RegionInfo` as far as these tests use it).
#[derive(Debug, Clone, PartialEq)]
struct TestRegion {
    meta: Region,
    leader: Peer,
    pending: Vec<Peer>,
    /// Bytes.
    approximate_size: u64,
    approximate_keys: u64,
}

impl TestRegion {
    fn new(meta: Region) -> TestRegion {
        let leader = meta.peers[0];
        TestRegion {
            meta,
            leader,
            pending: Vec::new(),
            approximate_size: 0,
            approximate_keys: 0,
        }
    }

    fn epoch(&self) -> RegionEpoch {
        self.meta.region_epoch.expect("test regions have an epoch")
    }

    fn with_epoch(&self, version: u64, conf_ver: u64) -> TestRegion {
        let mut r = self.clone();
        let e = self.epoch();
        r.meta.region_epoch = Some(RegionEpoch {
            version: e.version + version,
            conf_ver: e.conf_ver + conf_ver,
        });
        r
    }

    fn request(&self) -> RegionHeartbeatRequest {
        RegionHeartbeatRequest {
            region: Some(self.meta.clone()),
            leader: Some(self.leader),
            pending_peers: self.pending.clone(),
            approximate_size: self.approximate_size,
            approximate_keys: self.approximate_keys,
            ..Default::default()
        }
    }
}

fn new_test_logger() -> Logger {
    Logger::root(slog::Discard, o!())
}

fn new_test_store(id: u64) -> Store {
    Store {
        id,
        address: format!("127.0.0.1:{}", 20160 + id),
        state: StoreState::Up as i32,
    }
}

/// A bootstrapped scheduler with stores `1..=n` and no region.
fn new_test_scheduler(n: u64) -> MemoryScheduler {
    let scheduler = MemoryScheduler::new(1, &new_test_logger());
    scheduler
        .bootstrap_store(new_test_store(1))
        .expect("bootstrap");
    for id in 1..=n {
        scheduler.put_store(new_test_store(id)).expect("put store");
    }
    scheduler
}

/// Go's `newTestRegions(n, np)` shifted by one: region `i` covers
/// `[i, i + 1)`, has peer `i * np + j` on store `(i + j) % n + 1`, is led by
/// its first peer and is at epoch (2, 2).
fn new_test_regions(n: u64, np: u64) -> Vec<TestRegion> {
    (1..=n)
        .map(|i| {
            let peers = (0..np)
                .map(|j| Peer {
                    id: i * np + j,
                    store_id: (i + j) % n + 1,
                })
                .collect();
            TestRegion::new(Region {
                id: i,
                start_key: vec![i as u8],
                end_key: vec![i as u8 + 1],
                region_epoch: Some(RegionEpoch {
                    conf_ver: 2,
                    version: 2,
                }),
                peers,
            })
        })
        .collect()
}

fn heartbeat(
    scheduler: &MemoryScheduler,
    region: &TestRegion,
) -> tinykv_scheduler_stub::Result<()> {
    scheduler.region_heartbeat(region.request())
}

fn must_heartbeat(scheduler: &MemoryScheduler, region: &TestRegion) {
    heartbeat(scheduler, region)
        .unwrap_or_else(|e| panic!("heartbeat of {:?} refused: {e}", region.meta));
}

/// Go's `checkRegion`: the scheduler's answer is the region and leader
/// sent.
fn check_region(found: Option<(Region, Option<Peer>)>, want: &TestRegion) {
    assert_eq!(found, Some((want.meta.clone(), Some(want.leader))));
}

/// The stats `store_region_stats` must give for `store_id` if `regions` are
/// all the scheduler knows.
fn expected_stats(regions: &[TestRegion], store_id: u64) -> StoreRegionStats {
    let mut stats = StoreRegionStats::default();
    for r in regions {
        let Some(peer) = r.meta.peers.iter().find(|p| p.store_id == store_id) else {
            continue;
        };
        stats.region_count += 1;
        stats.region_size += r.approximate_size;
        if peer.id == r.leader.id {
            stats.leader_count += 1;
            stats.leader_size += r.approximate_size;
        }
        if r.pending.contains(peer) {
            stats.pending_peer_count += 1;
        }
    }
    stats
}

/// Go's `checkRegions`: the scheduler knows exactly `regions`, finds each
/// by id and by key, and counts regions, leaders, followers and pending
/// peers per store as they say.
fn check_regions(scheduler: &MemoryScheduler, regions: &[TestRegion]) {
    let all = scheduler.scan_regions(b"", b"", 0).expect("scan");
    assert_eq!(all.len(), regions.len(), "region count: {all:?}");
    let by_id: BTreeMap<u64, &TestRegion> = regions.iter().map(|r| (r.meta.id, r)).collect();
    for (meta, leader) in all {
        let want = by_id
            .get(&meta.id)
            .unwrap_or_else(|| panic!("unexpected region {meta:?}"));
        assert_eq!((meta, leader), (want.meta.clone(), Some(want.leader)));
    }
    for r in regions {
        check_region(scheduler.get_region_by_id(r.meta.id).unwrap(), r);
        check_region(scheduler.get_region(&r.meta.start_key).ok(), r);
    }
    let store_ids: Vec<u64> = scheduler
        .get_all_stores()
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    for store_id in store_ids {
        let got = scheduler.store_region_stats(store_id).unwrap();
        let want = expected_stats(regions, store_id);
        assert_eq!(got, want, "store {store_id}");
        // Go's `GetStoreFollowerCount`.
        assert_eq!(
            got.region_count - got.leader_count,
            want.region_count - want.leader_count
        );
    }
}

/// Go's `checkPendingPeerCount`: store `i + 1` has `expect[i]` pending peers.
fn check_pending_peer_count(scheduler: &MemoryScheduler, expect: &[u64]) {
    for (i, &want) in expect.iter().enumerate() {
        let stats = scheduler.store_region_stats(i as u64 + 1).unwrap();
        assert_eq!(stats.pending_peer_count, want, "store {}", i + 1);
    }
}

/// Go's `setUpTestCluster`: 3 stores, then 3 regions of 3 peers
/// heartbeated one by one, checking after each.
fn set_up_test_cluster() -> (MemoryScheduler, Vec<TestRegion>) {
    let scheduler = new_test_scheduler(3);
    let regions = new_test_regions(3, 3);
    for (i, region) in regions.iter().enumerate() {
        must_heartbeat(&scheduler, region);
        check_regions(&scheduler, &regions[..=i]);
    }
    (scheduler, regions)
}

/// `TestRegionNotUpdate3C`: the same heartbeat again changes nothing.
#[test]
fn test_region_not_update_3c() {
    let (scheduler, regions) = set_up_test_cluster();
    for region in &regions {
        must_heartbeat(&scheduler, region);
        check_regions(&scheduler, &regions);
    }
}

/// `TestRegionUpdateVersion3C`: a higher version is taken.
#[test]
fn test_region_update_version_3c() {
    let (scheduler, mut regions) = set_up_test_cluster();
    for i in 0..regions.len() {
        regions[i] = regions[i].with_epoch(1, 0);
        must_heartbeat(&scheduler, &regions[i]);
        check_regions(&scheduler, &regions);
    }
}

/// `TestRegionWithStaleVersion3C`: after a version bump, the old version
/// (even with a higher conf_ver) is refused and changes nothing.
#[test]
fn test_region_with_stale_version_3c() {
    let (scheduler, mut regions) = set_up_test_cluster();
    for i in 0..regions.len() {
        let origin = regions[i].clone();
        regions[i] = origin.with_epoch(1, 0);
        must_heartbeat(&scheduler, &regions[i]);
        check_regions(&scheduler, &regions);

        let stale = origin.with_epoch(0, 1);
        let err = heartbeat(&scheduler, &stale).unwrap_err();
        assert!(matches!(err, Error::StaleRegion { .. }), "{err}");
        check_regions(&scheduler, &regions);
    }
}

/// `TestRegionUpdateVersionAndConfver3C`: both components bumped is taken.
#[test]
fn test_region_update_version_and_confver_3c() {
    let (scheduler, mut regions) = set_up_test_cluster();
    for i in 0..regions.len() {
        regions[i] = regions[i].with_epoch(1, 1);
        must_heartbeat(&scheduler, &regions[i]);
        check_regions(&scheduler, &regions);
    }
}

/// `TestRegionWithStaleConfVer3C`: after a conf_ver bump, the old epoch is
/// refused and changes nothing.
#[test]
fn test_region_with_stale_conf_ver_3c() {
    let (scheduler, mut regions) = set_up_test_cluster();
    for i in 0..regions.len() {
        let origin = regions[i].clone();
        regions[i] = origin.with_epoch(0, 1);
        must_heartbeat(&scheduler, &regions[i]);
        check_regions(&scheduler, &regions);

        let err = heartbeat(&scheduler, &origin).unwrap_err();
        assert!(matches!(err, Error::StaleRegion { .. }), "{err}");
        check_regions(&scheduler, &regions);
    }
}

/// `TestRegionAddPendingPeer3C`: pending peers are recorded and counted per
/// store.
#[test]
fn test_region_add_pending_peer_3c() {
    let (scheduler, mut regions) = set_up_test_cluster();
    let mut pending_counts = [0u64; 3];
    for i in 0..regions.len() {
        // Go picks one at random; any peer will do, so pick by index.
        let peers = &regions[i].meta.peers;
        let pending = peers[(i + 1) % peers.len()];
        pending_counts[pending.store_id as usize - 1] += 1;
        regions[i].pending = vec![pending];
        must_heartbeat(&scheduler, &regions[i]);
        check_regions(&scheduler, &regions);
    }
    assert_eq!(pending_counts.iter().sum::<u64>(), 3);
    check_pending_peer_count(&scheduler, &pending_counts);
}

/// `TestRegionRemovePendingPeer3C`: a later heartbeat without pending peers
/// clears them.
#[test]
fn test_region_remove_pending_peer_3c() {
    let (scheduler, mut regions) = set_up_test_cluster();
    for i in 0..regions.len() {
        let peers = &regions[i].meta.peers;
        regions[i].pending = vec![peers[i % peers.len()]];
        must_heartbeat(&scheduler, &regions[i]);
        check_regions(&scheduler, &regions);
        check_pending_peer_count(
            &scheduler,
            &(1..=3)
                .map(|s| expected_stats(&regions, s).pending_peer_count)
                .collect::<Vec<_>>(),
        );

        regions[i].pending.clear();
        must_heartbeat(&scheduler, &regions[i]);
        check_regions(&scheduler, &regions);
    }
    check_pending_peer_count(&scheduler, &[0, 0, 0]);
}

/// `TestRegionRemovePeers3C`: a region down to its leader is taken (with
/// the `conf_ver` bump a real removal carries).
#[test]
fn test_region_remove_peers_3c() {
    let (scheduler, mut regions) = set_up_test_cluster();
    for i in 0..regions.len() {
        let mut region = regions[i].with_epoch(0, 2);
        region.meta.peers.truncate(1);
        regions[i] = region;
        must_heartbeat(&scheduler, &regions[i]);
        check_regions(&scheduler, &regions);
    }
}

/// `TestRegionAddBackPeers3C`: peers removed and then added back are both
/// taken (each with its `conf_ver` bump).
#[test]
fn test_region_add_back_peers_3c() {
    let (scheduler, mut regions) = set_up_test_cluster();
    for i in 0..regions.len() {
        let origin = regions[i].clone();
        let mut removed = origin.with_epoch(0, 2);
        removed.meta.peers.truncate(1);
        regions[i] = removed;
        must_heartbeat(&scheduler, &regions[i]);
        check_regions(&scheduler, &regions);

        regions[i] = origin.with_epoch(0, 4);
        must_heartbeat(&scheduler, &regions[i]);
        check_regions(&scheduler, &regions);
    }
}

/// `TestRegionChangeLeader3C`: a new leader moves the leader counts.
#[test]
fn test_region_change_leader_3c() {
    let (scheduler, mut regions) = set_up_test_cluster();
    for i in 0..regions.len() {
        regions[i].leader = regions[i].meta.peers[1];
        must_heartbeat(&scheduler, &regions[i]);
        check_regions(&scheduler, &regions);
    }
}

/// `TestRegionChangeApproximateSize3C`: a new size is taken (144 MiB).
#[test]
fn test_region_change_approximate_size_3c() {
    let (scheduler, mut regions) = set_up_test_cluster();
    for i in 0..regions.len() {
        regions[i].approximate_size = 144 << 20;
        must_heartbeat(&scheduler, &regions[i]);
        check_regions(&scheduler, &regions);
    }
}

/// `TestRegionChangeApproximateKeys3C`: a new key count is accepted and
/// changes nothing else (the scheduler does not keep key counts).
#[test]
fn test_region_change_approximate_keys_3c() {
    let (scheduler, mut regions) = set_up_test_cluster();
    for i in 0..regions.len() {
        regions[i].approximate_keys = 144_000;
        must_heartbeat(&scheduler, &regions[i]);
        check_regions(&scheduler, &regions);
    }
}

/// `TestRegionCounts3C`: each store's region count is its peers'.
#[test]
fn test_region_counts_3c() {
    let (scheduler, regions) = set_up_test_cluster();
    let mut counts: BTreeMap<u64, u64> = BTreeMap::new();
    for r in &regions {
        for p in &r.meta.peers {
            *counts.entry(p.store_id).or_default() += 1;
        }
    }
    assert_eq!(counts.len(), 3);
    for (store_id, count) in counts {
        assert_eq!(
            scheduler.store_region_stats(store_id).unwrap().region_count,
            count
        );
    }
}

/// `TestRegionGetRegions3C`: listing all regions gives each as sent.
#[test]
fn test_region_get_regions_3c() {
    let (scheduler, regions) = set_up_test_cluster();
    let all = scheduler.scan_regions(b"", b"", 0).unwrap();
    assert_eq!(all.len(), regions.len());
    for (meta, leader) in all {
        let want = &regions[meta.id as usize - 1];
        assert_eq!(meta, want.meta);
        assert_eq!(leader, Some(want.leader));
    }
}

/// `TestRegionGetStores3C`: a region's stores are those of its peers, its
/// follower stores those of its non-leader peers.
#[test]
fn test_region_get_stores_3c() {
    let (scheduler, regions) = set_up_test_cluster();
    for r in &regions {
        let (meta, leader) = scheduler.get_region_by_id(r.meta.id).unwrap().unwrap();
        let leader = leader.expect("reported leader");
        for peer in &meta.peers {
            let store = scheduler.get_store(peer.store_id).unwrap();
            assert!(r.meta.peers.iter().any(|p| p.store_id == store.id));
        }
        let followers: Vec<_> = meta.peers.iter().filter(|p| p.id != leader.id).collect();
        assert_eq!(followers.len(), 2);
        for peer in followers {
            assert_ne!(peer.id, r.leader.id);
            assert_ne!(peer.store_id, r.leader.store_id);
        }
    }
}

/// `TestRegionGetStoresInfo3C`: each store's leader and region counts and
/// sizes agree with its regions (sizes here are 10, 20 and 30 MiB).
#[test]
fn test_region_get_stores_info_3c() {
    let scheduler = new_test_scheduler(3);
    let mut regions = new_test_regions(3, 3);
    for (i, r) in regions.iter_mut().enumerate() {
        r.approximate_size = ((i as u64 + 1) * 10) << 20;
        must_heartbeat(&scheduler, r);
    }
    for store in scheduler.get_all_stores().unwrap() {
        let got = scheduler.store_region_stats(store.id).unwrap();
        assert_eq!(got, expected_stats(&regions, store.id));
        // Every store holds a peer of every region and leads one of them.
        assert_eq!(got.region_count, 3);
        assert_eq!(got.region_size, 60 << 20);
        assert_eq!(got.leader_count, 1);
    }
}

/// Go's `heartbeatRegions`: heartbeat the regions one by one, each found by
/// id, by its start key and by the key just below its end; then all of them
/// again, and the key just past each end is another region's.
fn heartbeat_regions(scheduler: &MemoryScheduler, regions: &[TestRegion]) {
    let check = |r: &TestRegion| {
        check_region(scheduler.get_region_by_id(r.meta.id).unwrap(), r);
        check_region(scheduler.get_region(&r.meta.start_key).ok(), r);
        if let Some(&end) = r.meta.end_key.first() {
            check_region(scheduler.get_region(&[end - 1]).ok(), r);
        }
    };
    for r in regions {
        must_heartbeat(scheduler, r);
        check(r);
    }
    for r in regions {
        check(r);
        if let Some(&end) = r.meta.end_key.first() {
            let next = scheduler.get_region(&[end.wrapping_add(1)]).ok();
            assert_ne!(next.map(|(m, _)| m.id), Some(r.meta.id));
        }
    }
}

/// A region `[start, end)` at epoch (1, 1) led by peer `id` on store 1.
fn new_single_peer_region(id: u64, start: &[u8], end: &[u8], version: u64) -> TestRegion {
    TestRegion::new(Region {
        id,
        start_key: start.to_vec(),
        end_key: end.to_vec(),
        region_epoch: Some(RegionEpoch {
            conf_ver: 1,
            version,
        }),
        peers: vec![Peer { id, store_id: 1 }],
    })
}

/// `TestHeartbeatSplit3C`: split halves reported in either order; the range
/// not yet reported is found in no region.
#[test]
fn test_heartbeat_split_3c() {
    let scheduler = new_test_scheduler(1);
    let key_region = |key: &[u8]| scheduler.get_region(key).ok();

    // 1: ["", "").
    let mut region1 = new_single_peer_region(1, b"", b"", 1);
    must_heartbeat(&scheduler, &region1);
    check_region(key_region(b"foo"), &region1);

    // Split 1 into 2: ["", "m") and 1: ["m", ""); 2 reports first.
    region1.meta.start_key = b"m".to_vec();
    region1 = region1.with_epoch(1, 0);
    let region2 = new_single_peer_region(2, b"", b"m", 2);
    must_heartbeat(&scheduler, &region2);
    check_region(key_region(b"a"), &region2);
    // ["m", "") is missing before region 1's report.
    assert!(matches!(
        scheduler.get_region(b"z"),
        Err(Error::NoRegionForKey { .. })
    ));
    must_heartbeat(&scheduler, &region1);
    check_region(key_region(b"z"), &region1);

    // Split 1 into 3: ["m", "q") and 1: ["q", ""); 1 reports first.
    region1.meta.start_key = b"q".to_vec();
    region1 = region1.with_epoch(1, 0);
    let region3 = new_single_peer_region(3, b"m", b"q", 3);
    must_heartbeat(&scheduler, &region1);
    check_region(key_region(b"z"), &region1);
    check_region(key_region(b"a"), &region2);
    // ["m", "q") is missing before region 3's report.
    assert!(matches!(
        scheduler.get_region(b"n"),
        Err(Error::NoRegionForKey { .. })
    ));
    must_heartbeat(&scheduler, &region3);
    check_region(key_region(b"n"), &region3);
}

/// Go's `core.SplitRegions`: each region splits at the middle of its
/// one-byte range, both halves one version up, with new ids.
fn split_regions(regions: &[TestRegion]) -> Vec<TestRegion> {
    let n = regions.len() as u64;
    let mut out = Vec::with_capacity(regions.len() * 2);
    for r in regions {
        let start = r.meta.start_key.first().copied().unwrap_or(0);
        let end = r.meta.end_key.first().copied().unwrap_or(u8::MAX);
        let middle = vec![start / 2 + end / 2];
        let mut left = r.with_epoch(1, 0);
        left.meta.id = r.meta.id + n;
        left.meta.end_key = middle.clone();
        let mut right = r.with_epoch(1, 0);
        right.meta.id = r.meta.id + 2 * n;
        right.meta.start_key = middle;
        for half in [&mut left, &mut right] {
            half.meta.peers[0].id = half.meta.id;
            half.leader = half.meta.peers[0];
        }
        out.push(left);
        out.push(right);
    }
    out
}

/// Go's `core.MergeRegions`: neighbours pairwise into one region with a new
/// id, one version above the newer of the two.
fn merge_regions(regions: &[TestRegion]) -> Vec<TestRegion> {
    let n = regions.len() as u64;
    regions
        .chunks(2)
        .map(|pair| {
            let (left, right) = (&pair[0], pair.last().expect("chunks are not empty"));
            let base = if left.epoch().version > right.epoch().version {
                left
            } else {
                right
            };
            let mut merged = base.with_epoch(1, 0);
            merged.meta.id = left.meta.id + n;
            merged.meta.start_key = left.meta.start_key.clone();
            merged.meta.end_key = right.meta.end_key.clone();
            merged.meta.peers = vec![Peer {
                id: merged.meta.id,
                store_id: 1,
            }];
            merged.leader = merged.meta.peers[0];
            merged
        })
        .collect()
}

/// `TestRegionSplitAndMerge3C`: 7 rounds of splits, 7 of merges, then 14
/// of two splits to one merge; after each round every region is found by
/// id and by key.
#[test]
fn test_region_split_and_merge_3c() {
    let scheduler = new_test_scheduler(1);
    let mut regions = vec![new_single_peer_region(1, b"", b"", 0)];
    // A byte range: more than 7 rounds of splits would underflow.
    let n = 7;
    for _ in 0..n {
        regions = split_regions(&regions);
        heartbeat_regions(&scheduler, &regions);
    }
    assert_eq!(regions.len(), 128);
    for _ in 0..n {
        regions = merge_regions(&regions);
        heartbeat_regions(&scheduler, &regions);
    }
    assert_eq!(regions.len(), 1);
    for i in 0..n * 2 {
        regions = if (i + 1) % 3 == 0 {
            merge_regions(&regions)
        } else {
            split_regions(&regions)
        };
        heartbeat_regions(&scheduler, &regions);
    }
    assert_eq!(
        scheduler.scan_regions(b"", b"", 0).unwrap().len(),
        regions.len()
    );
}

/// `TestConcurrentHandleRegion3C`: 2,000 heartbeats of distinct regions
/// from many threads at once are all accepted, and every region is then
/// found by id and by key.
#[test]
fn test_concurrent_handle_region_3c() {
    const CONCURRENT: u64 = 2000;
    const THREADS: u64 = 16;
    let scheduler = Arc::new(new_test_scheduler(3));
    // Each store has a response handler, as Go's stores bind their
    // heartbeat streams. (Go's stores also report a keyless region each;
    // here it would overlap the last region, so they do not.)
    for store_id in 1..=3 {
        scheduler.set_region_heartbeat_response_handler(store_id, Box::new(|_| {}));
    }
    // Regions [i, i + 1) in `%5d` keys, the first from "" and the last to
    // "", each with its peer on store 1.
    let regions: Vec<TestRegion> = (0..CONCURRENT)
        .map(|i| {
            let start = if i == 0 {
                Vec::new()
            } else {
                format!("{i:5}").into_bytes()
            };
            let end = if i == CONCURRENT - 1 {
                Vec::new()
            } else {
                format!("{:5}", i + 1).into_bytes()
            };
            let id = scheduler.alloc_id().unwrap();
            let peer = Peer {
                id: scheduler.alloc_id().unwrap(),
                store_id: 1,
            };
            let mut region = TestRegion::new(Region {
                id,
                start_key: start,
                end_key: end,
                region_epoch: Some(INIT_EPOCH),
                peers: vec![peer],
            });
            region.leader = peer;
            region
        })
        .collect();
    let regions = Arc::new(regions);
    thread::scope(|s| {
        for t in 0..THREADS {
            let scheduler = Arc::clone(&scheduler);
            let regions = Arc::clone(&regions);
            s.spawn(move || {
                for r in regions.iter().skip(t as usize).step_by(THREADS as usize) {
                    must_heartbeat(&scheduler, r);
                }
            });
        }
    });
    for r in regions.iter() {
        check_region(scheduler.get_region_by_id(r.meta.id).unwrap(), r);
        check_region(scheduler.get_region(&r.meta.start_key).ok(), r);
    }
}
