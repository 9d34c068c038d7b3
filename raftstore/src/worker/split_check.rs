//! The split checker: measures a region's data on its own thread, off the
//! peers' hot path, and tells the region's peer where to split it.
//!
//! A leader schedules a check on its split-check tick (`operation/split.rs`)
//! with the region as it knows it. The worker takes a snapshot of the
//! engine, walks the region's keys in the default CF, and answers the peer
//! with `PeerMsg::SplitCheckResult`: the size (user key plus value bytes)
//! and key count it saw, and, when the size passes `region_max_size`, the
//! split key — the first key at which the running size passes
//! `region_split_size` (TinyKV's size checker).
//!
//! Invariants of a split key: a user key (no data prefix, as
//! `SplitRequest.split_key` carries it), strictly after the region's start
//! key and before its end key, so both halves are non-empty ranges.
//!
//! Once a split key is found and the size is past `region_max_size`, the
//! walk stops: the region is going to split anyway, and the size reported
//! is then a lower bound.

use crossbeam_channel::{Receiver, Sender};
use kvproto::metapb;
use router::{PeerMsg, Router, SplitCheckResult};
use slog::{Logger, debug, error};
use storage::{CF_DEFAULT, Engine, Snapshot, keys};

use crate::errors::Result;
use crate::worker::WorkerThread;

/// Check region `region` (as its leader knows it).
#[derive(Debug, Clone)]
pub struct SplitCheckTask {
    /// The region, with the range and epoch to check.
    pub region: metapb::Region,
}

/// The sizes the checker works with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitSizes {
    /// Split a region whose data passes this many bytes.
    pub max_size: u64,
    /// Cut where the running size passes this many bytes.
    pub split_size: u64,
}

/// A handle for scheduling split checks. Cheap to clone.
#[derive(Clone)]
pub struct SplitCheckWorker {
    tx: Sender<SplitCheckTask>,
}

impl SplitCheckWorker {
    /// Starts the worker thread; it answers through `router`, ends when
    /// every handle is dropped, and the `WorkerThread` joins it.
    pub fn start(
        engine: Engine,
        router: Router,
        sizes: SplitSizes,
        logger: &Logger,
    ) -> std::io::Result<(SplitCheckWorker, WorkerThread)> {
        let (tx, rx) = crossbeam_channel::unbounded();
        let logger = logger.clone();
        let thread = WorkerThread::spawn("split-check", move || {
            run(engine, router, sizes, rx, logger)
        })?;
        Ok((SplitCheckWorker { tx }, thread))
    }

    /// Queues a check. A stopped worker is not an error: the store is
    /// stopping, and the next run checks again.
    pub fn schedule(&self, task: SplitCheckTask) {
        let _ = self.tx.send(task);
    }
}

fn run(
    engine: Engine,
    router: Router,
    sizes: SplitSizes,
    rx: Receiver<SplitCheckTask>,
    logger: Logger,
) {
    while let Ok(task) = rx.recv() {
        let region_id = task.region.id;
        match check_region(&engine.snapshot(), &task.region, sizes) {
            Ok(result) => {
                debug!(logger, "split check done"; "region_id" => region_id,
                    "size" => result.approximate_size, "keys" => result.approximate_keys,
                    "split_key" => ?result.split_key.as_ref().map(|k| k.escape_ascii().to_string()));
                // A peer gone meanwhile has no use for it.
                let _ = router.send(region_id, PeerMsg::SplitCheckResult(Box::new(result)));
            }
            Err(e) => error!(logger, "split check failed"; "region_id" => region_id, "err" => %e),
        }
    }
}

/// Walks `region`'s default-CF data in `snap` (see the module doc).
pub fn check_region(
    snap: &Snapshot,
    region: &metapb::Region,
    sizes: SplitSizes,
) -> Result<SplitCheckResult> {
    let start = keys::data_key(&region.start_key);
    let end = keys::data_end_key(&region.end_key);
    let mut size = 0u64;
    let mut count = 0u64;
    let mut split_key: Option<Vec<u8>> = None;
    snap.scan_cf(CF_DEFAULT, &start, &end, |key, value| {
        let user_key = keys::origin_key(key)?;
        size += (user_key.len() + value.len()) as u64;
        count += 1;
        // Never the start key: the left half would be empty.
        if split_key.is_none() && size > sizes.split_size && user_key > region.start_key.as_slice()
        {
            split_key = Some(user_key.to_vec());
        }
        Ok(!(split_key.is_some() && size > sizes.max_size))
    })?;
    Ok(SplitCheckResult {
        epoch: region.region_epoch.unwrap_or_default(),
        approximate_size: size,
        approximate_keys: count,
        split_key: split_key.filter(|_| size > sizes.max_size),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(start: &[u8], end: &[u8]) -> metapb::Region {
        metapb::Region {
            id: 1,
            start_key: start.to_vec(),
            end_key: end.to_vec(),
            region_epoch: Some(metapb::RegionEpoch {
                conf_ver: 1,
                version: 3,
            }),
            peers: vec![metapb::Peer { id: 1, store_id: 1 }],
        }
    }

    /// An engine with `k00`..`k{n-1}` (3-byte keys) = 7-byte values, so
    /// each pair counts 10 bytes.
    fn engine_with_keys(n: usize) -> (tempfile::TempDir, Engine) {
        let dir = tempfile::tempdir().expect("temp dir");
        let engine = Engine::open(dir.path()).expect("open engine");
        let mut wb = engine.write_batch();
        for i in 0..n {
            let key = format!("k{i:02}");
            wb.put_cf(CF_DEFAULT, &keys::data_key(key.as_bytes()), b"vvvvvvv")
                .expect("put");
        }
        // Not data: must not be counted.
        wb.put_cf(CF_DEFAULT, &keys::region_state_key(1), b"meta")
            .expect("put meta");
        engine.write(wb, true).expect("write");
        (dir, engine)
    }

    #[test]
    fn a_small_region_is_measured_and_not_split() {
        let (_dir, engine) = engine_with_keys(10);
        let sizes = SplitSizes {
            max_size: 100,
            split_size: 60,
        };
        let result = check_region(&engine.snapshot(), &region(b"", b""), sizes).expect("check");
        assert_eq!(result.approximate_size, 100);
        assert_eq!(result.approximate_keys, 10);
        assert_eq!(result.split_key, None, "at the limit, not past it");
        assert_eq!(result.epoch.version, 3);
    }

    #[test]
    fn the_split_key_is_where_the_split_size_is_passed() {
        let (_dir, engine) = engine_with_keys(20);
        let sizes = SplitSizes {
            max_size: 100,
            split_size: 60,
        };
        let result = check_region(&engine.snapshot(), &region(b"", b""), sizes).expect("check");
        // 60 bytes after k05; k06 passes it.
        assert_eq!(result.split_key.as_deref(), Some(&b"k06"[..]));
        // The walk stops once past the max size with a key: a lower bound.
        assert!(result.approximate_size > 100 && result.approximate_size < 200);
    }

    #[test]
    fn only_the_regions_range_counts() {
        let (_dir, engine) = engine_with_keys(20);
        let sizes = SplitSizes {
            max_size: 50,
            split_size: 30,
        };
        let result =
            check_region(&engine.snapshot(), &region(b"k10", b"k15"), sizes).expect("check");
        assert_eq!(result.approximate_keys, 5);
        assert_eq!(result.approximate_size, 50);
        assert_eq!(result.split_key, None);
        let result =
            check_region(&engine.snapshot(), &region(b"k10", b"k17"), sizes).expect("check");
        assert_eq!(result.split_key.as_deref(), Some(&b"k13"[..]));
    }

    /// One pair larger than the split size right at the start key: the cut
    /// goes after it, never at the start key (an empty left half).
    #[test]
    fn the_start_key_is_never_the_split_key() {
        let (_dir, engine) = engine_with_keys(5);
        let mut wb = engine.write_batch();
        wb.put_cf(CF_DEFAULT, &keys::data_key(b"k00"), &[b'v'; 100])
            .expect("put");
        engine.write(wb, true).expect("write");
        let sizes = SplitSizes {
            max_size: 50,
            split_size: 30,
        };
        let result = check_region(&engine.snapshot(), &region(b"k00", b""), sizes).expect("check");
        assert_eq!(result.split_key.as_deref(), Some(&b"k01"[..]));
        // A region holding only its start key cannot split.
        let result =
            check_region(&engine.snapshot(), &region(b"k00", b"k01"), sizes).expect("check");
        assert_eq!(result.split_key, None);
        assert_eq!(result.approximate_keys, 1);
    }
}
