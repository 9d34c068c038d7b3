//! `ProcessCluster`: a scheduler and N stores as child processes on one
//! folder, each of which can be stopped, killed (`kill -9`), paused and
//! started again on its own data.
//!
//! Invariant: the scheduler and store n always run with the same data dir
//! and address (the folder's [`Layout`]), however often they restart, so a
//! restarted process is the same member of the same cluster.

use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::Duration;

use super::PlaygroundError;
use super::layout::{ClusterDir, Layout};
use super::process::ChildProcess;

/// The binaries a cluster runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `tinykv-scheduler`.
    pub scheduler: PathBuf,
    /// `tinykv-server`.
    pub server: PathBuf,
}

impl Binaries {
    /// The binaries in `dir`, checked to exist.
    pub fn in_dir(dir: &Path) -> Result<Binaries, PlaygroundError> {
        let binaries = Binaries {
            scheduler: dir.join("tinykv-scheduler"),
            server: dir.join("tinykv-server"),
        };
        for path in [&binaries.scheduler, &binaries.server] {
            if !path.is_file() {
                return Err(PlaygroundError::MissingBinary(path.clone()));
            }
        }
        Ok(binaries)
    }

    /// The binaries beside the running executable — cargo puts every
    /// binary of a build in one directory — or one level up, where they are
    /// from a test executable (which lives in `deps/`).
    pub fn beside_current_exe() -> Result<Binaries, PlaygroundError> {
        let exe = std::env::current_exe().map_err(|source| PlaygroundError::Io {
            what: "find the running executable".to_owned(),
            source,
        })?;
        let dir = exe.parent().unwrap_or(Path::new("."));
        Binaries::in_dir(dir).or_else(|first| match dir.parent() {
            Some(up) if dir.ends_with("deps") => Binaries::in_dir(up),
            _ => Err(first),
        })
    }
}

/// How a [`ProcessCluster`] runs its processes.
#[derive(Debug, Clone)]
pub struct ProcessClusterOptions {
    /// The binaries to run.
    pub binaries: Binaries,
    /// Every process's log level (`--loglevel`/`--log-level`).
    pub log_level: String,
    /// A TOML config every store is started with (`--config`), if any.
    pub server_config: Option<String>,
    /// A TOML config the scheduler is started with (`--config`), if any.
    pub scheduler_config: Option<String>,
}

/// A scheduler and stores as processes. Dropping it kills every process
/// still running (use [`stop`](Self::stop) for a clean shutdown).
#[derive(Debug)]
pub struct ProcessCluster {
    dir: ClusterDir,
    layout: Layout,
    opts: ProcessClusterOptions,
    scheduler: Option<ChildProcess>,
    /// `stores[n - 1]` is store n's process, if started.
    stores: Vec<Option<ChildProcess>>,
    /// Flags every store gets after the cluster's own (`with_store_args`).
    store_args: Vec<String>,
}

const SERVER_CONFIG: &str = "server.toml";
const SCHEDULER_CONFIG: &str = "scheduler.toml";

impl ProcessCluster {
    /// A cluster on `dir` with `layout`; starts nothing yet.
    pub fn new(
        dir: ClusterDir,
        layout: Layout,
        opts: ProcessClusterOptions,
    ) -> Result<ProcessCluster, PlaygroundError> {
        let io_err = |what: String| move |source| PlaygroundError::Io { what, source };
        std::fs::create_dir_all(dir.root())
            .map_err(io_err(format!("create {}", dir.root().display())))?;
        for (name, text) in [
            (SERVER_CONFIG, &opts.server_config),
            (SCHEDULER_CONFIG, &opts.scheduler_config),
        ] {
            if let Some(text) = text {
                let path = dir.root().join(name);
                std::fs::write(&path, text).map_err(io_err(format!("write {}", path.display())))?;
            }
        }
        let stores = (0..layout.stores()).map(|_| None).collect();
        Ok(ProcessCluster {
            dir,
            layout,
            opts,
            scheduler: None,
            stores,
            store_args: Vec::new(),
        })
    }

    /// The same cluster, starting every store with `args` after the flags
    /// it always gets (e.g. `--enable-fault-injection` for a test).
    pub fn with_store_args(mut self, args: impl IntoIterator<Item = String>) -> Self {
        self.store_args = args.into_iter().collect();
        self
    }

    /// The cluster's folder.
    pub fn dir(&self) -> &ClusterDir {
        &self.dir
    }

    /// Its addresses.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Starts the scheduler and every store that is not running.
    pub fn start_all(&mut self) -> Result<(), PlaygroundError> {
        self.start_scheduler()?;
        for n in 1..=self.layout.stores() {
            self.start_store(n)?;
        }
        Ok(())
    }

    /// Starts the scheduler unless it runs.
    pub fn start_scheduler(&mut self) -> Result<(), PlaygroundError> {
        if is_running(&mut self.scheduler) {
            return Ok(());
        }
        let mut args = vec![
            "--client-urls".to_owned(),
            format!("http://{}", self.layout.scheduler_addr()),
            "--data-dir".to_owned(),
            path_arg(&self.dir.scheduler_data()),
            "--log-level".to_owned(),
            self.opts.log_level.clone(),
        ];
        if self.opts.scheduler_config.is_some() {
            args.push("--config".to_owned());
            args.push(path_arg(&self.dir.root().join(SCHEDULER_CONFIG)));
        }
        let log = self.dir.log("scheduler");
        self.scheduler = Some(spawn(
            "scheduler",
            &self.opts.binaries.scheduler,
            &args,
            &log,
        )?);
        Ok(())
    }

    /// Starts store n (from 1) unless it runs.
    ///
    /// # Panics
    /// If there is no store n.
    pub fn start_store(&mut self, n: usize) -> Result<(), PlaygroundError> {
        if is_running(&mut self.stores[n - 1]) {
            return Ok(());
        }
        let mut args = vec![
            "--scheduler".to_owned(),
            self.layout.scheduler_addr(),
            "--addr".to_owned(),
            self.layout.store_addr(n),
            "--path".to_owned(),
            path_arg(&self.dir.store_data(n)),
            "--loglevel".to_owned(),
            self.opts.log_level.clone(),
        ];
        if self.opts.server_config.is_some() {
            args.push("--config".to_owned());
            args.push(path_arg(&self.dir.root().join(SERVER_CONFIG)));
        }
        args.extend(self.store_args.iter().cloned());
        let name = format!("store-{n}");
        let log = self.dir.log(&name);
        self.stores[n - 1] = Some(spawn(&name, &self.opts.binaries.server, &args, &log)?);
        Ok(())
    }

    /// `kill -9` of store n; returns once it is gone.
    pub fn kill_store(&mut self, n: usize) -> io::Result<()> {
        kill9(&mut self.stores[n - 1])
    }

    /// `kill -9` of the scheduler; returns once it is gone.
    pub fn kill_scheduler(&mut self) -> io::Result<()> {
        kill9(&mut self.scheduler)
    }

    /// Freezes store n (`SIGSTOP`): it keeps its port but answers nothing.
    pub fn pause_store(&mut self, n: usize) -> io::Result<()> {
        match &mut self.stores[n - 1] {
            Some(p) => p.pause(),
            None => Ok(()),
        }
    }

    /// Lets a paused store n run again.
    pub fn resume_store(&mut self, n: usize) -> io::Result<()> {
        match &mut self.stores[n - 1] {
            Some(p) => p.resume(),
            None => Ok(()),
        }
    }

    /// Stops store n cleanly (`SIGTERM`, killed after `grace`).
    pub fn stop_store(&mut self, n: usize, grace: Duration) -> io::Result<Option<ExitStatus>> {
        self.stores[n - 1]
            .take()
            .map(|mut p| p.terminate(grace))
            .transpose()
    }

    /// Whether store n's process runs.
    pub fn is_store_running(&mut self, n: usize) -> bool {
        is_running(&mut self.stores[n - 1])
    }

    /// The process id of store n, if it runs.
    pub fn store_pid(&mut self, n: usize) -> Option<u32> {
        let slot = &mut self.stores[n - 1];
        if is_running(slot) {
            slot.as_ref().map(ChildProcess::pid)
        } else {
            None
        }
    }

    /// Processes that exited since they were started (and were not stopped
    /// through this cluster), with how they ended; each is reported once.
    pub fn take_exited(&mut self) -> Vec<(String, ExitStatus)> {
        let mut exited = Vec::new();
        for slot in std::iter::once(&mut self.scheduler).chain(self.stores.iter_mut()) {
            if let Some(p) = slot
                && let Ok(Some(status)) = p.try_exit()
            {
                exited.push((p.name().to_owned(), status));
                *slot = None;
            }
        }
        exited
    }

    /// Stops every process cleanly: all stores at once (each gets `grace`
    /// before it is killed), then the scheduler, so no store loses its
    /// scheduler while shutting down. Returns each process's exit status.
    pub fn stop(&mut self, grace: Duration) -> Vec<(String, io::Result<ExitStatus>)> {
        let mut results = Vec::new();
        let mut stopping: Vec<ChildProcess> =
            self.stores.iter_mut().filter_map(Option::take).collect();
        for p in &mut stopping {
            let _ = p.resume();
            let _ = p.signal(libc::SIGTERM);
        }
        for mut p in stopping {
            let status = p.terminate(grace);
            results.push((p.name().to_owned(), status));
        }
        if let Some(mut p) = self.scheduler.take() {
            let status = p.terminate(grace);
            results.push((p.name().to_owned(), status));
        }
        results
    }
}

fn path_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

fn spawn(
    name: &str,
    program: &Path,
    args: &[String],
    log: &Path,
) -> Result<ChildProcess, PlaygroundError> {
    ChildProcess::spawn(name, program, args, log).map_err(|source| PlaygroundError::Io {
        what: format!("start {name}"),
        source,
    })
}

fn is_running(slot: &mut Option<ChildProcess>) -> bool {
    match slot {
        Some(p) => matches!(p.try_exit(), Ok(None)),
        None => false,
    }
}

fn kill9(slot: &mut Option<ChildProcess>) -> io::Result<()> {
    if let Some(mut p) = slot.take() {
        p.kill9()?;
    }
    Ok(())
}
