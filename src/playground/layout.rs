//! Where a local cluster lives: its folder, the processes' data dirs and
//! logs, and the ports they listen on.
//!
//! ```text
//! DIR/playground.toml   the layout below, written when the folder is new
//! DIR/scheduler/        the scheduler's data dir
//! DIR/store-<n>/        store n's data dir (n = 1, 2, ...)
//! DIR/logs/<name>.log   each process's output, appended across runs
//! DIR/LOCK              locked while a cluster runs on the folder
//! ```
//!
//! Invariant: a folder's layout never changes once written. Stores
//! advertise their address to the scheduler and to each other, and keep it
//! in the cluster's metadata; restarting the same folder on other ports or
//! with fewer stores would strand regions. So a re-run reads the layout back
//! and refuses flags that contradict it.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};

use super::PlaygroundError;

const LAYOUT_FILE: &str = "playground.toml";
const LOCK_FILE: &str = "LOCK";

/// The processes of a local cluster and their addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The host every process listens on and advertises.
    pub host: String,
    /// The scheduler's port.
    pub scheduler_port: u16,
    /// One port per store; store n (from 1) listens on `store_ports[n - 1]`.
    pub store_ports: Vec<u16>,
}

impl Layout {
    /// `stores` stores on consecutive ports from `first_store_port`.
    pub fn new(host: &str, scheduler_port: u16, first_store_port: u16, stores: usize) -> Layout {
        Layout {
            host: host.to_owned(),
            scheduler_port,
            store_ports: (0..stores)
                .map(|i| first_store_port.saturating_add(i as u16))
                .collect(),
        }
    }

    /// `stores` stores (on consecutive ports) and a scheduler on ports
    /// free right now, for tests, where fixed ports would collide.
    ///
    /// The ports come from below the OS's ephemeral range (Linux's default
    /// starts at 32768): a port the OS hands out for outgoing connections
    /// could be taken by one while a store is down, and the store could not
    /// listen on it again when it restarts.
    pub fn on_free_ports(stores: usize) -> io::Result<Layout> {
        const LOW: u64 = 10_000;
        const HIGH: u64 = 32_000;
        let span = stores as u64 + 1;
        // A start that differs between processes and calls, so tests run
        // side by side do not all try the same ports first.
        let mut x = u64::from(std::process::id())
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
        for _ in 0..1_000 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let base = LOW + (x >> 33) % (HIGH - LOW - span);
            let ports: Vec<u16> = (base..base + span)
                .map(|p| u16::try_from(p).expect("below 32000"))
                .collect();
            // Hold every listener until all are bound, so none repeats.
            let bound: io::Result<Vec<std::net::TcpListener>> = ports
                .iter()
                .map(|p| std::net::TcpListener::bind(("127.0.0.1", *p)))
                .collect();
            if bound.is_ok() {
                return Ok(Layout {
                    host: "127.0.0.1".to_owned(),
                    scheduler_port: ports[0],
                    store_ports: ports[1..].to_vec(),
                });
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("no {span} consecutive free ports between {LOW} and {HIGH}"),
        ))
    }

    /// The number of stores.
    pub fn stores(&self) -> usize {
        self.store_ports.len()
    }

    /// The scheduler's `HOST:PORT`.
    pub fn scheduler_addr(&self) -> String {
        format!("{}:{}", self.host, self.scheduler_port)
    }

    /// Store n's `HOST:PORT` (n from 1).
    ///
    /// # Panics
    /// If there is no store n.
    pub fn store_addr(&self, n: usize) -> String {
        format!("{}:{}", self.host, self.store_ports[n - 1])
    }

    fn to_toml(&self) -> String {
        let ports: Vec<String> = self.store_ports.iter().map(u16::to_string).collect();
        format!(
            "# Written when this folder was first used; a re-run keeps it.\n\
             host = \"{}\"\nscheduler-port = {}\nstore-ports = [{}]\n",
            self.host,
            self.scheduler_port,
            ports.join(", ")
        )
    }

    fn from_toml(text: &str) -> Result<Layout, String> {
        let table: toml::Table = text.parse().map_err(|e| format!("{e}"))?;
        let port = |v: &toml::Value, key: &str| -> Result<u16, String> {
            v.as_integer()
                .and_then(|p| u16::try_from(p).ok())
                .ok_or_else(|| format!("`{key}`: {v} is not a port"))
        };
        let host = table
            .get("host")
            .and_then(toml::Value::as_str)
            .ok_or("`host` missing or not a string")?
            .to_owned();
        let scheduler_port = port(
            table
                .get("scheduler-port")
                .ok_or("`scheduler-port` missing")?,
            "scheduler-port",
        )?;
        let store_ports = table
            .get("store-ports")
            .and_then(toml::Value::as_array)
            .ok_or("`store-ports` missing or not a list")?
            .iter()
            .map(|v| port(v, "store-ports"))
            .collect::<Result<Vec<u16>, String>>()?;
        if store_ports.is_empty() {
            return Err("`store-ports` is empty".to_owned());
        }
        Ok(Layout {
            host,
            scheduler_port,
            store_ports,
        })
    }
}

/// A cluster's folder.
#[derive(Debug, Clone)]
pub struct ClusterDir {
    root: PathBuf,
}

impl ClusterDir {
    /// The folder at `root` (created when needed).
    pub fn new(root: impl Into<PathBuf>) -> ClusterDir {
        ClusterDir { root: root.into() }
    }

    /// The folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The scheduler's data dir.
    pub fn scheduler_data(&self) -> PathBuf {
        self.root.join("scheduler")
    }

    /// Store n's data dir.
    pub fn store_data(&self, n: usize) -> PathBuf {
        self.root.join(format!("store-{n}"))
    }

    /// The log file of the process called `name`.
    pub fn log(&self, name: &str) -> PathBuf {
        self.root.join("logs").join(format!("{name}.log"))
    }

    /// The layout this folder was first run with, if any.
    pub fn read_layout(&self) -> Result<Option<Layout>, PlaygroundError> {
        let path = self.root.join(LAYOUT_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => Layout::from_toml(&text)
                .map(Some)
                .map_err(|reason| PlaygroundError::Layout { path, reason }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(PlaygroundError::Io {
                what: format!("read {}", path.display()),
                source,
            }),
        }
    }

    /// Records `layout` as this folder's (crash-safe: a torn write leaves
    /// no file, and the next run writes it again).
    pub fn write_layout(&self, layout: &Layout) -> Result<(), PlaygroundError> {
        let io_err = |what: String| move |source| PlaygroundError::Io { what, source };
        std::fs::create_dir_all(&self.root)
            .map_err(io_err(format!("create {}", self.root.display())))?;
        let path = self.root.join(LAYOUT_FILE);
        let tmp = self.root.join(format!("{LAYOUT_FILE}.tmp"));
        std::fs::write(&tmp, layout.to_toml())
            .map_err(io_err(format!("write {}", tmp.display())))?;
        File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(io_err(format!("sync {}", tmp.display())))?;
        std::fs::rename(&tmp, &path).map_err(io_err(format!("rename to {}", path.display())))?;
        File::open(&self.root)
            .and_then(|d| d.sync_all())
            .map_err(io_err(format!("sync {}", self.root.display())))
    }

    /// Takes the folder's lock for as long as the returned guard lives;
    /// fails at once if another cluster runs on the folder.
    pub fn lock(&self) -> Result<DirLock, PlaygroundError> {
        std::fs::create_dir_all(&self.root).map_err(|source| PlaygroundError::Io {
            what: format!("create {}", self.root.display()),
            source,
        })?;
        let path = self.root.join(LOCK_FILE);
        let file = File::create(&path).map_err(|source| PlaygroundError::Io {
            what: format!("open {}", path.display()),
            source,
        })?;
        // SAFETY: `flock` takes a descriptor we own for the call's duration.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(PlaygroundError::InUse(self.root.clone()));
            }
            return Err(PlaygroundError::Io {
                what: format!("lock {}", path.display()),
                source: e,
            });
        }
        Ok(DirLock { _file: file })
    }
}

/// Holds a folder's lock; the lock goes with the file when this drops
/// (or when the process dies, however it dies).
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_round_trips_through_its_file() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let cluster = ClusterDir::new(dir.path().join("c"));
        assert_eq!(cluster.read_layout().expect("read"), None);
        let layout = Layout::new("127.0.0.1", 2379, 20160, 3);
        assert_eq!(layout.store_addr(3), "127.0.0.1:20162");
        cluster.write_layout(&layout).expect("write");
        assert_eq!(cluster.read_layout().expect("read"), Some(layout));
    }

    #[test]
    fn a_damaged_layout_file_is_an_error_naming_the_key() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let cluster = ClusterDir::new(dir.path());
        std::fs::write(
            dir.path().join(LAYOUT_FILE),
            "host = \"h\"\nscheduler-port = 70000\nstore-ports = [1]\n",
        )
        .expect("write");
        let err = cluster.read_layout().expect_err("port out of range");
        assert!(err.to_string().contains("scheduler-port"), "{err}");
    }

    #[test]
    fn a_locked_folder_cannot_be_locked_again() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let cluster = ClusterDir::new(dir.path());
        let guard = cluster.lock().expect("first lock");
        assert!(matches!(cluster.lock(), Err(PlaygroundError::InUse(_))));
        drop(guard);
        cluster.lock().expect("lock again after release");
    }

    #[test]
    fn free_ports_are_distinct_and_below_the_ephemeral_range() {
        let layout = Layout::on_free_ports(3).expect("ports");
        assert!(layout.scheduler_port < 32_768, "{layout:?}");
        assert!(layout.store_ports.iter().all(|p| *p < 32_768), "{layout:?}");
        assert_eq!(layout.store_ports[0], layout.scheduler_port + 1);
        let mut ports = layout.store_ports.clone();
        ports.push(layout.scheduler_port);
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 4);
    }
}
