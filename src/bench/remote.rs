//! The workload against a running cluster, through the client library
//! over gRPC: what a user of the cluster would see.
//!
//! One run = `concurrency` tasks, each with one request in flight (a
//! closed loop), for a warm-up and a measured window:
//! - `put`: a value of `value_size` bytes to a key drawn uniformly from the
//!   key space; `get`: a read of such a key; `mixed`: a get or a put with
//!   even odds. Before a run with gets, the whole key space is loaded
//!   (`load`), so every get finds its key.
//! - A request counts if it *completes* inside the window (as in
//!   `workload`); its latency runs from the client call to its answer,
//!   the client's retries included. A request the client gives up on counts
//!   as an error, never as a latency sample.
//! - Progress: once a second, the requests completed in the last second.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::Latencies;
use super::keyspace::{bench_key, load_with, value};
use crate::client::Client;
use crate::rng::SplitMix64;

pub use super::Mix;

/// One run's settings.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Time before the measured window.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// Bytes per value.
    pub value_size: usize,
    /// Keys are drawn from `0..key_space`.
    pub key_space: u64,
    /// What the requests are.
    pub mix: Mix,
    /// Seed of the key choice.
    pub seed: u64,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct RemoteReport {
    /// Requests in flight at once.
    pub concurrency: usize,
    /// What the requests were.
    pub mix: Mix,
    /// The measured window.
    pub window: Duration,
    /// Latencies of the requests that succeeded in the window.
    pub latencies: Latencies,
    /// Requests that failed in the window.
    pub errors: u64,
    /// The first failure seen, for the report.
    pub first_error: Option<String>,
}

impl RemoteReport {
    /// Successful requests per second of the window.
    pub fn ops_per_sec(&self) -> f64 {
        self.latencies.len() as f64 / self.window.as_secs_f64()
    }
}

/// Writes every key of `0..key_space` once (with `concurrency` tasks),
/// calling `progress` with the count done about once a second; the first
/// failed write stops the others and is returned
/// ([`super::keyspace::load_with`]).
pub async fn load(
    client: &Client,
    key_space: u64,
    value_size: usize,
    concurrency: usize,
    progress: impl FnMut(u64),
) -> Result<(), crate::client::Error> {
    let client = client.clone();
    let put = move |i| {
        let client = client.clone();
        async move {
            client
                .raw_put("", &bench_key(i), &value(value_size, i))
                .await
        }
    };
    load_with(key_space, concurrency, put, progress).await
}

struct Tally {
    samples: Vec<Duration>,
    errors: u64,
    first_error: Option<String>,
}

/// Runs one measured workload; `progress` hears, once a second, the
/// seconds elapsed, whether the window is open, and the requests of the
/// last second.
pub async fn run(
    client: &Client,
    opts: &RemoteOptions,
    mut progress: impl FnMut(f64, bool, u64),
) -> RemoteReport {
    let start = Instant::now();
    let window_start = start + opts.warmup;
    let window_end = window_start + opts.duration;
    let stop = Arc::new(AtomicBool::new(false));
    let completed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for t in 0..opts.concurrency.max(1) {
        let client = client.clone();
        let opts = opts.clone();
        let (stop, completed) = (Arc::clone(&stop), Arc::clone(&completed));
        tasks.push(tokio::spawn(async move {
            let mut rng = SplitMix64::new(opts.seed ^ (t as u64).wrapping_mul(0x9e37_79b9));
            let mut tally = Tally {
                samples: Vec::new(),
                errors: 0,
                first_error: None,
            };
            while !stop.load(Ordering::Relaxed) {
                let i = rng.below(opts.key_space.max(1));
                let key = bench_key(i);
                let is_get = match opts.mix {
                    Mix::Put => false,
                    Mix::Get => true,
                    Mix::Mixed => rng.below(2) == 0,
                };
                let began = Instant::now();
                let outcome = if is_get {
                    client.raw_get("", &key).await.map(|_| ())
                } else {
                    client.raw_put("", &key, &value(opts.value_size, i)).await
                };
                let ended = Instant::now();
                completed.fetch_add(1, Ordering::Relaxed);
                if ended < window_start || ended > window_end {
                    continue;
                }
                match outcome {
                    Ok(()) => tally.samples.push(ended - began),
                    Err(e) => {
                        tally.errors += 1;
                        tally.first_error.get_or_insert_with(|| e.to_string());
                    }
                }
            }
            tally
        }));
    }
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let mut last = 0;
    while Instant::now() < window_end {
        tick.tick().await;
        let now = completed.load(Ordering::Relaxed);
        let elapsed = start.elapsed().as_secs_f64();
        progress(elapsed, Instant::now() >= window_start, now - last);
        last = now;
    }
    stop.store(true, Ordering::Relaxed);
    let mut samples = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for task in tasks {
        let tally = task
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()));
        samples.extend(tally.samples);
        errors += tally.errors;
        if first_error.is_none() {
            first_error = tally.first_error;
        }
    }
    RemoteReport {
        concurrency: opts.concurrency,
        mix: opts.mix,
        window: opts.duration,
        latencies: Latencies::from_unsorted(samples),
        errors,
        first_error,
    }
}
