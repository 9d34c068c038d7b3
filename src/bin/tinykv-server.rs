//! `tinykv-server`: one store of a tinykv-rs cluster as a process.
//!
//! Reads its settings (`tinykv::node::config`: flags over a TOML file over
//! defaults), starts a [`Node`] against the scheduler (waiting until the
//! scheduler is up) and serves until SIGINT or SIGTERM. Then it stops
//! accepting, ends the store-to-store streams, lets calls in flight finish
//! (bounded), stops the raftstore and closes RocksDB, and exits 0. Every
//! acknowledged write is synced before it is answered, so a `kill -9` loses
//! nothing that was acknowledged.
//!
//! Exit codes: 0 after a signal, 1 if the node cannot start or the runtime
//! fails, 2 for a bad flag or config file.

use std::process::ExitCode;

use clap::Parser;
use scheduler_stub::logging::new_logger;
use slog::{Logger, error, info, warn};
use tinykv::node::Node;
use tinykv::node::config::{Flags, ServerConfig};
use tokio::signal::unix::{SignalKind, signal};

fn main() -> ExitCode {
    let config = match ServerConfig::from_flags(Flags::parse()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("tinykv-server: {e}");
            return ExitCode::from(2);
        }
    };
    let (logger, _flush_on_exit) = new_logger(config.log_level, config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            error!(logger, "cannot start the async runtime"; "err" => %e);
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(config, &logger)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!(logger, "tinykv-server failed"; "err" => %e);
            ExitCode::FAILURE
        }
    }
}

async fn run(config: ServerConfig, logger: &Logger) -> Result<(), tinykv::node::NodeError> {
    // A signal during start-up (e.g. while waiting for the scheduler) stops
    // the process as well; nothing is half-written by stopping there, the
    // bootstrap steps being crash-safe.
    let signalled = wait_for_signal(logger.clone());
    tokio::pin!(signalled);
    let node = tokio::select! {
        node = Node::start(config.node, logger) => node?,
        () = &mut signalled => {
            info!(logger, "stopped before start-up finished");
            return Ok(());
        }
    };
    signalled.await;
    node.stop().await;
    Ok(())
}

/// Resolves on the first SIGINT or SIGTERM.
async fn wait_for_signal(logger: Logger) {
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => info!(logger, "SIGINT received, shutting down"),
                _ = term.recv() => info!(logger, "SIGTERM received, shutting down"),
            }
        }
        Err(e) => {
            warn!(logger, "cannot watch for SIGTERM, only SIGINT stops the server"; "err" => %e);
            if let Err(e) = tokio::signal::ctrl_c().await {
                error!(logger, "cannot watch for SIGINT either"; "err" => %e);
                std::future::pending::<()>().await;
            }
            info!(logger, "SIGINT received, shutting down");
        }
    }
}
