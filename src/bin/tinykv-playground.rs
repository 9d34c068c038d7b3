//! `tinykv-playground`: a local tinykv-rs cluster in one command.
//!
//! Starts `tinykv-scheduler` and N `tinykv-server`s (default 3) as child
//! processes on loopback, all data and logs under one folder; waits until
//! the cluster serves (every store registered, the first region at its
//! replica count with a leader that answers); prints the endpoints and a
//! first `tinykv-ctl` command; stays in the foreground reporting processes
//! that exit. Ctrl-C (or SIGTERM) stops every store, then the scheduler,
//! each cleanly. Run again on the same folder, it restarts the same cluster
//! with its data.
//!
//! Exit codes: 0 after a clean stop, 1 if the cluster cannot start or
//! serve, 2 for bad flags.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use tinykv::playground::{
    Binaries, ClusterDir, Layout, PlaygroundError, ProcessCluster, ProcessClusterOptions,
    wait_until_serving,
};
use tokio::signal::unix::{SignalKind, signal};

/// The scheduler's default replica count (`max-peer-count`).
const MAX_REPLICAS: usize = 3;
/// How often a running cluster's processes are checked for exits.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

#[derive(Debug, Parser)]
#[command(
    name = "tinykv-playground",
    version,
    about = "Start a local tinykv-rs cluster (a scheduler and N stores) in one command",
    long_about = "Starts tinykv-scheduler and N tinykv-server stores as child processes on \
        loopback, with all data and logs under one folder, waits until the cluster serves, \
        prints the endpoints and a first tinykv-ctl command, and stays in the foreground. \
        Ctrl-C stops every process cleanly. Run again on the same folder, it restarts the \
        same cluster with its data (the folder remembers its ports and store count).\n\n\
        The cluster grows to its replica count by itself: the first store bootstraps the \
        only region, the scheduler adds replicas on the other stores."
)]
struct Flags {
    /// Folder for every process's data dir and log (created if missing).
    #[arg(long, value_name = "DIR", default_value = "tinykv-playground")]
    dir: PathBuf,

    /// Number of stores. A folder keeps the count it was first run with.
    /// [default: 3, or the folder's]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    stores: Option<u16>,

    /// Host to listen on and advertise. [default: 127.0.0.1, or the folder's]
    #[arg(long, value_name = "HOST")]
    host: Option<String>,

    /// The scheduler's port. [default: 2379, or the folder's]
    #[arg(long, value_name = "PORT")]
    scheduler_port: Option<u16>,

    /// The first store's port; store n listens on PORT + n - 1.
    /// [default: 20160, or the folder's]
    #[arg(long, value_name = "PORT")]
    store_port: Option<u16>,

    /// Directory holding tinykv-scheduler and tinykv-server.
    /// [default: beside this executable]
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,

    /// Log level of every process: trace, debug, info, warn, error.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    loglevel: String,

    /// How long to wait for the cluster to serve, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 120)]
    wait_timeout: u64,
}

fn main() -> ExitCode {
    let flags = Flags::parse();
    match run(flags) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tinykv-playground: {e}");
            ExitCode::FAILURE
        }
    }
}

fn say(line: &str) {
    eprintln!("[playground] {line}");
}

/// The layout for the folder: the one it was made with (flags must agree
/// with it), else a new one from the flags.
fn resolve_layout(dir: &ClusterDir, flags: &Flags) -> Result<Layout, PlaygroundError> {
    let Some(existing) = dir.read_layout()? else {
        let layout = Layout::new(
            flags.host.as_deref().unwrap_or("127.0.0.1"),
            flags.scheduler_port.unwrap_or(2379),
            flags.store_port.unwrap_or(20160),
            usize::from(flags.stores.unwrap_or(3)),
        );
        dir.write_layout(&layout)?;
        return Ok(layout);
    };
    let mut clashes = Vec::new();
    if flags
        .stores
        .is_some_and(|n| usize::from(n) != existing.stores())
    {
        clashes.push(format!("--stores (the folder has {})", existing.stores()));
    }
    if flags.host.as_ref().is_some_and(|h| *h != existing.host) {
        clashes.push(format!("--host (the folder has {})", existing.host));
    }
    if flags
        .scheduler_port
        .is_some_and(|p| p != existing.scheduler_port)
    {
        clashes.push(format!(
            "--scheduler-port (the folder has {})",
            existing.scheduler_port
        ));
    }
    if flags
        .store_port
        .is_some_and(|p| Some(&p) != existing.store_ports.first())
    {
        clashes.push(format!(
            "--store-port (the folder has {})",
            existing.store_ports[0]
        ));
    }
    if !clashes.is_empty() {
        return Err(PlaygroundError::LayoutMismatch(format!(
            "{} was first run with another layout; drop {} or use another --dir",
            dir.root().display(),
            clashes.join(", ")
        )));
    }
    Ok(existing)
}

fn run(flags: Flags) -> Result<(), PlaygroundError> {
    let dir = ClusterDir::new(&flags.dir);
    let _lock = dir.lock()?;
    let layout = resolve_layout(&dir, &flags)?;
    let binaries = match &flags.bin_dir {
        Some(bin_dir) => Binaries::in_dir(bin_dir)?,
        None => Binaries::beside_current_exe()?,
    };
    let ctl = binaries.server.with_file_name("tinykv-ctl");
    let opts = ProcessClusterOptions {
        binaries,
        log_level: flags.loglevel.clone(),
        server_config: None,
        scheduler_config: None,
    };
    let mut cluster = ProcessCluster::new(dir.clone(), layout.clone(), opts)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|source| PlaygroundError::Io {
            what: "start the async runtime".to_owned(),
            source,
        })?;
    // Children are started from this (the main) thread, which lives as long
    // as they do: see `process` on the parent-death signal.
    let result = runtime.block_on(serve(&mut cluster, &dir, &layout, &ctl, &flags));
    say("stopping the stores, then the scheduler");
    for (name, status) in cluster.stop(Duration::from_secs(30)) {
        match status {
            Ok(status) if status.success() => say(&format!("{name} stopped")),
            Ok(status) => say(&format!("{name} ended: {status}")),
            Err(e) => say(&format!("{name}: cannot stop it: {e}")),
        }
    }
    result
}

async fn serve(
    cluster: &mut ProcessCluster,
    dir: &ClusterDir,
    layout: &Layout,
    ctl: &Path,
    flags: &Flags,
) -> Result<(), PlaygroundError> {
    let mut signals = Signals::new()?;
    say(&format!(
        "starting a scheduler and {} stores in {} (logs in {})",
        layout.stores(),
        dir.root().display(),
        dir.root().join("logs").display()
    ));
    cluster.start_all()?;

    let replicas = layout.stores().min(MAX_REPLICAS);
    let timeout = Duration::from_secs(flags.wait_timeout);
    let scheduler_addr = layout.scheduler_addr();
    let serving = {
        let wait = wait_until_serving(&scheduler_addr, layout.stores(), replicas, timeout, say);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                serving = &mut wait => break serving?,
                () = signals.recv() => {
                    say("interrupted before the cluster served");
                    return Ok(());
                }
                () = tokio::time::sleep(WATCH_INTERVAL) => {
                    if let Some((name, status)) = cluster.take_exited().into_iter().next() {
                        let log = dir.log(&name);
                        return Err(PlaygroundError::ProcessExited { name, status, log });
                    }
                }
            }
        }
    };

    println!();
    println!("tinykv cluster {} is serving", serving.cluster_id);
    println!("  scheduler  {scheduler_addr}");
    for n in 1..=layout.stores() {
        let addr = layout.store_addr(n);
        let id = serving
            .store_id_at(&addr)
            .map_or_else(|| "?".to_owned(), |id| id.to_string());
        println!(
            "  store-{n:<4} {addr}   store id {id:<4} data {}",
            dir.store_data(n).display()
        );
    }
    println!("  logs       {}", dir.root().join("logs").display());
    println!();
    let ctl_cmd = if ctl.is_file() {
        ctl.display().to_string()
    } else {
        "tinykv-ctl".to_owned()
    };
    println!("Try:  {ctl_cmd} --scheduler {scheduler_addr} put hello world");
    println!("      {ctl_cmd} --scheduler {scheduler_addr} get hello");
    println!("Press Ctrl-C to stop the cluster.");
    println!();

    loop {
        tokio::select! {
            () = signals.recv() => return Ok(()),
            () = tokio::time::sleep(WATCH_INTERVAL) => {
                for (name, status) in cluster.take_exited() {
                    say(&format!(
                        "{name} exited ({status}); the others keep running; its log: {}",
                        dir.log(&name).display()
                    ));
                }
            }
        }
    }
}

/// SIGINT and SIGTERM.
struct Signals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals, PlaygroundError> {
        let watch = |kind: SignalKind| {
            signal(kind).map_err(|source| PlaygroundError::Io {
                what: "watch for Ctrl-C".to_owned(),
                source,
            })
        };
        Ok(Signals {
            int: watch(SignalKind::interrupt())?,
            term: watch(SignalKind::terminate())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => say("Ctrl-C received"),
            _ = self.term.recv() => say("SIGTERM received"),
        }
    }
}
