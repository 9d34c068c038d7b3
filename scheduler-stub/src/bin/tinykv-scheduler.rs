//! `tinykv-scheduler`: the placement driver as a process.
//!
//! Reads its settings (`config`: flags over a TOML file over defaults), opens
//! or creates the state in `--data-dir`, listens on `--client-urls` and serves
//! `schedulerpb.Scheduler` until SIGINT or SIGTERM. Scheduling is on unless
//! `[schedule] enable = false` or `--disable-schedule`: the replica checker
//! runs on every region heartbeat, and a background thread runs the periodic
//! pass (balancers) every `balance-interval`. Then it stops accepting,
//! ends the open streams, lets calls in flight finish (for at most
//! `SHUTDOWN_GRACE`) and exits 0. Every change is durable before it is
//! answered, so there is nothing to flush at exit, and a `kill -9` loses
//! nothing that was answered.
//!
//! Exit codes: 0 after a signal, 1 if the state cannot be opened or the
//! server fails, 2 for a bad flag or config file.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use slog::{Logger, error, info, warn};
use tinykv_scheduler_stub::config::{Config, Flags};
use tinykv_scheduler_stub::logging::new_logger;
use tinykv_scheduler_stub::{Error, MemoryScheduler, SchedulerClient, SchedulerService, serve};
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};

/// How long calls in flight may take to finish after a shutdown signal.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let config = match Config::from_flags(Flags::parse()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("tinykv-scheduler: {e}");
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
        Ok(()) => {
            info!(logger, "tinykv-scheduler stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!(logger, "tinykv-scheduler failed"; "err" => %e);
            ExitCode::FAILURE
        }
    }
}

async fn run(config: Config, logger: &Logger) -> Result<(), Error> {
    let scheduler = Arc::new(
        MemoryScheduler::open(&config.data_dir, logger)?
            .with_schedule_config(config.schedule.clone()),
    );
    // Stopped when dropped, at the end of `run`.
    let _schedule_loop = config
        .schedule
        .enabled
        .then(|| scheduler.start_schedule_loop());
    let listener = TcpListener::bind(config.listen_addr)
        .await
        .map_err(|e| Error::Other(format!("cannot listen on {}: {e}", config.client_url)))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::Other(format!("cannot read the listen address: {e}")))?;
    // With no advertised URL, report the address actually bound (which
    // differs from the configured one when it asked for port 0).
    let advertise = config
        .advertise_client_url
        .clone()
        .unwrap_or_else(|| format!("http://{local}"));
    info!(logger, "tinykv-scheduler serving";
        "listen" => %local, "advertise" => &advertise,
        "cluster_id" => scheduler.cluster_id(), "data_dir" => %config.data_dir.display(),
        "schedule" => config.schedule.enabled,
        "max_store_down_time" => ?config.schedule.max_store_down_time);
    let service = SchedulerService::new(scheduler, advertise, logger);

    let (signalled_tx, signalled_rx) = tokio::sync::oneshot::channel();
    let shutdown = {
        let logger = logger.clone();
        async move {
            wait_for_signal(&logger).await;
            let _ = signalled_tx.send(());
        }
    };
    let server = serve(listener, service, shutdown);
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => result,
        () = async {
            // Only once the signal came does the grace period start.
            if signalled_rx.await.is_err() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {
            warn!(logger, "calls still in flight after the grace period, exiting anyway";
                "grace" => ?SHUTDOWN_GRACE);
            Ok(())
        }
    }
}

/// Resolves on the first SIGINT or SIGTERM.
async fn wait_for_signal(logger: &Logger) {
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => info!(logger, "SIGINT received, shutting down"),
                _ = term.recv() => info!(logger, "SIGTERM received, shutting down"),
            }
        }
        Err(e) => {
            warn!(logger, "cannot watch for SIGTERM, only SIGINT stops the scheduler"; "err" => %e);
            if let Err(e) = tokio::signal::ctrl_c().await {
                error!(logger, "cannot watch for SIGINT either"; "err" => %e);
                std::future::pending::<()>().await;
            }
            info!(logger, "SIGINT received, shutting down");
        }
    }
}
