//! The key space of the get and mixed workloads: its keys, the value each
//! key holds, and loading it into an in-process cluster.
//!
//! Key `i` of `0..key_space` is `bench-` + `i` in 10 decimal digits; its
//! value is a function of `i` and the value size only ([`value`]), so a
//! reader can check what it got and a mixed workload's puts rewrite a key
//! with the value it already has: after loading, every key of the space
//! reads as `value(size, i)` for the whole run.
//!
//! Invariant: a loaded key's value is never empty when `value_size > 0`;
//! an empty read of a loaded key therefore means "not found" (the
//! protocol's `GetResponse` has no not-found flag).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::BenchError;
use crate::cluster::Cluster;

/// The key of index `i`.
pub fn bench_key(i: u64) -> Vec<u8> {
    format!("bench-{i:010}").into_bytes()
}

/// The value of key `i`: `i` in hex and a dash, padded with `v` (or cut)
/// to `size` bytes.
pub fn value(size: usize, i: u64) -> Vec<u8> {
    let mut v = format!("{i:x}-").into_bytes();
    v.resize(size, b'v');
    v
}

/// Puts every key of `0..key_space` once into `cluster` (which must have a
/// leader) with `writers` tasks on the stores' runtime, as the put/get
/// clients run (`workload.rs`); each put may take `op_timeout`, retries
/// included. Called from a thread that is not one of that runtime's;
/// otherwise as [`load_with`].
pub fn load(
    cluster: &Cluster,
    key_space: u64,
    value_size: usize,
    writers: usize,
    op_timeout: Duration,
    progress: impl FnMut(u64),
) -> Result<(), BenchError> {
    let client = cluster.client().attempt_timeout(op_timeout).into_async();
    let put = move |i| {
        let client = client.clone();
        async move {
            client
                .put(bench_key(i), value(value_size, i), op_timeout)
                .await
                .map(drop)
        }
    };
    cluster
        .runtime()
        .block_on(load_with(key_space, writers, put, progress))
        .map_err(BenchError::from)
}

/// Puts every key of `0..key_space` once with `writers` tasks of the
/// current runtime, each with one `put(i)` in flight (`put` writes key `i`
/// with its value). `progress` hears the count done about once a second.
/// The first failed put stops the other writers and is returned; a writer
/// that panicked panics here.
pub(super) async fn load_with<P, F, E>(
    key_space: u64,
    writers: usize,
    put: P,
    mut progress: impl FnMut(u64),
) -> Result<(), E>
where
    P: Fn(u64) -> F + Clone + Send + 'static,
    F: Future<Output = Result<(), E>> + Send,
    E: Send + 'static,
{
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    // Set by the first writer that fails, so that the others stop early.
    let failed = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = (0..writers.max(1))
        .map(|_| {
            let (put, next, done, failed) =
                (put.clone(), next.clone(), done.clone(), failed.clone());
            tokio::spawn(async move {
                while !failed.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= key_space {
                        return Ok(());
                    }
                    if let Err(e) = put(i).await {
                        failed.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    // Progress while the writers run: poll often enough to return soon
    // after they finish, report once a second.
    let mut last_report = Instant::now();
    while !tasks.iter().all(tokio::task::JoinHandle::is_finished) {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if last_report.elapsed() >= Duration::from_secs(1) {
            last_report = Instant::now();
            progress(done.load(Ordering::Relaxed));
        }
    }
    for task in tasks {
        task.await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_sort_by_index_and_values_are_never_empty() {
        assert_eq!(bench_key(42), b"bench-0000000042");
        assert!(bench_key(9) < bench_key(10), "keys sort as their indexes");
        assert_eq!(value(8, 255), b"ff-vvvvv");
        assert_eq!(value(2, 255), b"ff");
        assert_eq!(value(1, 0), b"0");
    }
}
