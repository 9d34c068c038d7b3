//! A local cluster of real processes — `tinykv-scheduler` and N
//! `tinykv-server`s on loopback, all data under one folder — as
//! `tinykv-playground` runs it for a user and the black-box tests run it
//! to kill and restart stores.
//!
//! - `layout`: the folder (data dirs, logs, lock) and the ports, fixed
//!   when the folder is first used so a re-run is the same cluster;
//! - `process`: one child process: output to a log file, signals, never
//!   leaked;
//! - `cluster`: [`ProcessCluster`], the scheduler and stores as processes,
//!   each started, stopped, killed or paused on its own;
//! - `probe`: [`wait_until_serving`], the cluster seen through its public
//!   protocol until it answers.

mod cluster;
mod layout;
mod probe;
mod process;

use std::path::PathBuf;
use std::time::Duration;

pub use cluster::{Binaries, ProcessCluster, ProcessClusterOptions};
pub use layout::{ClusterDir, DirLock, Layout};
pub use probe::{Serving, wait_until_serving};
pub use process::ChildProcess;

/// What can go wrong running a local cluster.
#[derive(Debug, thiserror::Error)]
pub enum PlaygroundError {
    /// A file or process operation failed.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// The folder's layout file cannot be read.
    #[error("{}: {reason}", path.display())]
    Layout {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The flags ask for another layout than the folder was made with.
    #[error("{0}")]
    LayoutMismatch(String),
    /// Another cluster runs on the folder.
    #[error("{} is in use by another running cluster", .0.display())]
    InUse(PathBuf),
    /// A binary the cluster runs is not where it was looked for.
    #[error(
        "{} not found; build the workspace's binaries first (`cargo build --workspace --bins`) \
         or point --bin-dir at them",
        .0.display()
    )]
    MissingBinary(PathBuf),
    /// The cluster did not come up in time.
    #[error("the cluster is not serving after {after:?}; last seen: {last}")]
    NotServing {
        /// How long it was given.
        after: Duration,
        /// The probe's last finding.
        last: String,
    },
    /// A process exited while it should run.
    #[error("{name} exited ({status}); see {}", log.display())]
    ProcessExited {
        /// Which process.
        name: String,
        /// How it ended.
        status: std::process::ExitStatus,
        /// Its log file.
        log: PathBuf,
    },
}
