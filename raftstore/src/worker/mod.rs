//! Background work off the peers' hot path: the group-commit writer (fed by
//! a `parking_queue`), the raft-log GC and the split checker (fed by
//! channels) on threads of their own, and the region worker actor.
//!
//! A worker thread holds a handle to the engine, and ends once every sender
//! feeding it is dropped. The store keeps each thread's `WorkerThread` and
//! joins it on stop: only then is the engine closed, so the same directory
//! can be opened again.

use std::thread::JoinHandle;
use std::time::Duration;

mod parking_queue;
pub mod raftlog_gc;
pub mod region;
pub mod split_check;
pub mod write;

/// A running worker thread, to join when the store stops.
#[derive(Debug)]
pub struct WorkerThread {
    name: &'static str,
    handle: JoinHandle<()>,
}

impl WorkerThread {
    /// Spawns `body` on a thread called `name`.
    pub(crate) fn spawn(
        name: &'static str,
        body: impl FnOnce() + Send + 'static,
    ) -> std::io::Result<WorkerThread> {
        let handle = std::thread::Builder::new().name(name.into()).spawn(body)?;
        Ok(WorkerThread { name, handle })
    }

    /// The thread's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Waits up to `timeout` for the thread to end (its senders must be gone
    /// already), without blocking the async runtime. False if it did not.
    pub async fn join(self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.handle.is_finished() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Finished: joining does not block. A panic was reported by the
        // thread itself already.
        let _ = self.handle.join();
        true
    }
}
