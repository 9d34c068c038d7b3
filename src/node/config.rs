//! The `tinykv-server` binary's settings: command-line [`Flags`] (clap) over
//! an optional TOML file over defaults, resolved into a checked
//! [`ServerConfig`].
//!
//! Flags keep the names of TinyKV's `kv/main.go` (`--scheduler`, `--addr`,
//! `--path`, `--loglevel`); `--advertise-addr`, `--log-format` and
//! `--config` are ours. A flag given on the command line wins over the
//! file's key, which wins over the default.
//!
//! The file (every key optional; an unknown key is an error, so a typo is
//! not silently ignored):
//!
//! ```toml
//! scheduler = "127.0.0.1:2379"
//! addr = "127.0.0.1:20160"
//! advertise-addr = "10.0.0.5:20160"
//! path = "tinykv-data"
//!
//! [log]
//! level = "info"       # trace, debug, info, warn, error, fatal
//! format = "human"     # human, json
//!
//! [raftstore]
//! raft-base-tick-interval-ms = 100
//! raft-heartbeat-ticks = 2
//! raft-election-timeout-ticks = 10
//! raft-log-gc-tick-ticks = 10
//! raft-log-gc-count-limit = 10000
//! raft-log-gc-size-limit = 67108864
//! max-value-size = 8388608
//! region-max-size = 150994944          # split a region past this many bytes
//! region-split-size = 100663296        # ... at the key where this many are passed
//! split-region-check-tick-interval = 100   # raft ticks between split checks
//! client-session-ttl-secs = 3600     # an idle client session ends (log time)
//! max-client-sessions = 10000        # sessions a region keeps, at most
//!
//! [server]
//! max-message-size = 16777216        # largest gRPC message, bytes
//! max-scan-limit = 10000             # most pairs one RawScan returns
//! max-scan-response-bytes = 4194304  # a RawScan stops adding pairs past it
//!
//! [transport]
//! queue-capacity = 4096                  # raft messages queued per store
//! max-concurrent-snapshot-sends = 4
//! max-concurrent-snapshot-receives = 4   # more are refused; raft retries
//! reconnect-backoff-min-ms = 100
//! reconnect-backoff-max-ms = 5000
//! connect-timeout-ms = 3000
//! ```
//!
//! Every error names the flag or key (`raftstore.raft-heartbeat-ticks`) and
//! the reason.
//!
//! `--enable-fault-injection` has no file key, so a config file copied from
//! a test cannot switch it on: it serves `debugpb.Debug`, which cuts a store
//! off from others (`crate::transport::faults`). For tests; never in
//! production.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

pub use scheduler_stub::logging::LogFormat;
use scheduler_stub::logging::{parse_format, parse_level};

use super::NodeConfig;
use crate::transport::TransportOptions;

/// The scheduler when neither flag nor file names one (TinyKV's default).
pub const DEFAULT_SCHEDULER: &str = "127.0.0.1:2379";
/// The listen address when neither flag nor file gives one (TinyKV's default).
pub const DEFAULT_ADDR: &str = "127.0.0.1:20160";
/// The data dir when neither flag nor file gives one: relative to the
/// working directory, like `tinykv-scheduler`'s.
pub const DEFAULT_PATH: &str = "tinykv-data";

/// A refused setting: the flag or key, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    /// The flag or config file key, as the user wrote it.
    pub key: String,
    /// Why it is refused.
    pub reason: String,
}

fn config_error(key: &str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

/// Command-line flags of `tinykv-server`.
#[derive(Debug, Default, Parser)]
#[command(
    name = "tinykv-server",
    version,
    about = "A tinykv-rs store: serves TinyKV's tinykvpb.TinyKv over gRPC, replicated by Raft",
    long_about = "A tinykv-rs store node. Connects to the scheduler (waiting until it is up), \
        bootstraps its store id and, in a new cluster, the first region, registers its \
        advertised address, and serves TinyKV's tinykvpb.TinyKv gRPC service (the Raw API and \
        the store-to-store Raft and Snapshot streams). Its data (RocksDB and snapshot files) \
        lives in --path; a restart on the same path is the same store with the same regions.\n\n\
        Settings come from flags, then the --config file, then defaults; a flag wins over the \
        file. SIGINT or SIGTERM shuts it down gracefully (exit code 0)."
)]
pub struct Flags {
    /// The scheduler's address, `HOST:PORT` (or `http://HOST:PORT`).
    /// File key `scheduler`. [default: 127.0.0.1:2379]
    #[arg(long, value_name = "ADDR")]
    pub scheduler: Option<String>,

    /// Address to listen on for clients and other stores, `HOST:PORT`.
    /// File key `addr`. [default: 127.0.0.1:20160]
    #[arg(long, value_name = "ADDR")]
    pub addr: Option<String>,

    /// Address the scheduler and other stores are told, for a store behind
    /// a proxy or NAT or listening on 0.0.0.0. File key `advertise-addr`.
    /// [default: the listen address]
    #[arg(long, value_name = "ADDR")]
    pub advertise_addr: Option<String>,

    /// Data directory (RocksDB in `db/`, snapshot files in `snap/`), created
    /// if missing. File key `path`. [default: tinykv-data, in the working
    /// directory]
    #[arg(long, value_name = "DIR")]
    pub path: Option<PathBuf>,

    /// TOML config file; its keys are the long flag names (`scheduler`,
    /// `addr`, `advertise-addr`, `path`), a `[log]` table (`level`,
    /// `format`) and a `[raftstore]` table (`raft-base-tick-interval-ms`,
    /// `raft-heartbeat-ticks`, `raft-election-timeout-ticks`,
    /// `raft-log-gc-tick-ticks`, `raft-log-gc-count-limit`,
    /// `raft-log-gc-size-limit`, `max-value-size`, `client-session-ttl-secs`,
    /// `max-client-sessions`, ...) and a `[server]` table
    /// (`max-message-size`, `max-scan-limit`, `max-scan-response-bytes`).
    /// Flags win over it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log level: trace, debug, info, warn, error or fatal.
    /// File key `log.level`. [default: info]
    #[arg(
        short = 'L',
        long = "loglevel",
        alias = "log-level",
        value_name = "LEVEL"
    )]
    pub log_level: Option<String>,

    /// Log format: `human` (readable lines) or `json` (one JSON object per
    /// line). File key `log.format`. [default: human]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// Serve the fault-injection service (`debugpb.Debug`: cut this store
    /// off from chosen stores) — for tests; never in production. Flag only,
    /// no file key. [default: off]
    #[arg(long)]
    pub enable_fault_injection: bool,
}

/// The resolved, checked settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// What the node starts with.
    pub node: NodeConfig,
    /// The most verbose level logged.
    pub log_level: slog::Level,
    /// How log lines look.
    pub log_format: LogFormat,
}

/// The file's keys, each optional.
#[derive(Debug, Default)]
struct FileConfig {
    scheduler: Option<String>,
    addr: Option<String>,
    advertise_addr: Option<String>,
    path: Option<PathBuf>,
    log_level: Option<String>,
    log_format: Option<String>,
    raftstore: RaftstoreKeys,
    server: ServerKeys,
    transport: TransportKeys,
}

/// The `[transport]` table: the streams to other stores.
#[derive(Debug, Default)]
struct TransportKeys {
    queue_capacity: Option<u64>,
    max_concurrent_snapshot_sends: Option<u64>,
    max_concurrent_snapshot_receives: Option<u64>,
    reconnect_backoff_min_ms: Option<u64>,
    reconnect_backoff_max_ms: Option<u64>,
    connect_timeout_ms: Option<u64>,
}

/// The `[server]` table: the gRPC service's limits.
#[derive(Debug, Default)]
struct ServerKeys {
    max_message_size: Option<u64>,
    max_scan_limit: Option<u64>,
    max_scan_response_bytes: Option<u64>,
}

/// The `[raftstore]` table.
#[derive(Debug, Default)]
struct RaftstoreKeys {
    tick_interval_ms: Option<u64>,
    heartbeat_ticks: Option<u64>,
    election_timeout_ticks: Option<u64>,
    log_gc_tick_ticks: Option<u64>,
    log_gc_count_limit: Option<u64>,
    log_gc_size_limit: Option<u64>,
    max_value_size: Option<u64>,
    region_max_size: Option<u64>,
    region_split_size: Option<u64>,
    split_check_ticks: Option<u64>,
    client_session_ttl_secs: Option<u64>,
    max_client_sessions: Option<u64>,
}

fn string_value(key: &str, value: toml::Value) -> Result<String, ConfigError> {
    value
        .try_into::<String>()
        .map_err(|e| config_error(key, e.message().to_owned()))
}

fn positive(key: &str, value: toml::Value) -> Result<u64, ConfigError> {
    match value {
        toml::Value::Integer(n) if n > 0 => Ok(n.unsigned_abs()),
        toml::Value::Integer(n) => Err(config_error(key, format!("{n}: must be positive"))),
        other => Err(config_error(
            key,
            format!("expected a positive integer, found {}", other.type_str()),
        )),
    }
}

fn table(key: &str, value: toml::Value) -> Result<toml::Table, ConfigError> {
    match value {
        toml::Value::Table(table) => Ok(table),
        _ => Err(config_error(key, format!("expected a table ([{key}])"))),
    }
}

impl FileConfig {
    fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            config_error("--config", format!("cannot read {}: {e}", path.display()))
        })?;
        FileConfig::parse(&text)
            .map_err(|e| config_error(&e.key, format!("{} (in {})", e.reason, path.display())))
    }

    fn parse(text: &str) -> Result<FileConfig, ConfigError> {
        let root: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            let line = e
                .span()
                .and_then(|span| text.get(..span.start))
                .map_or(1, |before| before.matches('\n').count() + 1);
            config_error(
                "(file)",
                format!("not valid TOML at line {line}: {}", e.message()),
            )
        })?;
        let mut config = FileConfig::default();
        for (key, value) in root {
            match key.as_str() {
                "scheduler" => config.scheduler = Some(string_value(&key, value)?),
                "addr" => config.addr = Some(string_value(&key, value)?),
                "advertise-addr" => config.advertise_addr = Some(string_value(&key, value)?),
                "path" => config.path = Some(PathBuf::from(string_value(&key, value)?)),
                "log" => {
                    for (sub, value) in table(&key, value)? {
                        let full = format!("log.{sub}");
                        match sub.as_str() {
                            "level" => config.log_level = Some(string_value(&full, value)?),
                            "format" => config.log_format = Some(string_value(&full, value)?),
                            _ => {
                                return Err(config_error(
                                    &full,
                                    "unknown key (known: level, format)",
                                ));
                            }
                        }
                    }
                }
                "raftstore" => {
                    let rs = &mut config.raftstore;
                    for (sub, value) in table(&key, value)? {
                        let full = format!("raftstore.{sub}");
                        let slot = match sub.as_str() {
                            "raft-base-tick-interval-ms" => &mut rs.tick_interval_ms,
                            "raft-heartbeat-ticks" => &mut rs.heartbeat_ticks,
                            "raft-election-timeout-ticks" => &mut rs.election_timeout_ticks,
                            "raft-log-gc-tick-ticks" => &mut rs.log_gc_tick_ticks,
                            "raft-log-gc-count-limit" => &mut rs.log_gc_count_limit,
                            "raft-log-gc-size-limit" => &mut rs.log_gc_size_limit,
                            "max-value-size" => &mut rs.max_value_size,
                            "region-max-size" => &mut rs.region_max_size,
                            "region-split-size" => &mut rs.region_split_size,
                            "split-region-check-tick-interval" => &mut rs.split_check_ticks,
                            "client-session-ttl-secs" => &mut rs.client_session_ttl_secs,
                            "max-client-sessions" => &mut rs.max_client_sessions,
                            _ => {
                                return Err(config_error(
                                    &full,
                                    "unknown key (known: raft-base-tick-interval-ms, \
                                     raft-heartbeat-ticks, raft-election-timeout-ticks, \
                                     raft-log-gc-tick-ticks, raft-log-gc-count-limit, \
                                     raft-log-gc-size-limit, max-value-size, region-max-size, \
                                     region-split-size, split-region-check-tick-interval, \
                                     client-session-ttl-secs, max-client-sessions)",
                                ));
                            }
                        };
                        *slot = Some(positive(&full, value)?);
                    }
                }
                "server" => {
                    let sv = &mut config.server;
                    for (sub, value) in table(&key, value)? {
                        let full = format!("server.{sub}");
                        let slot = match sub.as_str() {
                            "max-message-size" => &mut sv.max_message_size,
                            "max-scan-limit" => &mut sv.max_scan_limit,
                            "max-scan-response-bytes" => &mut sv.max_scan_response_bytes,
                            _ => {
                                return Err(config_error(
                                    &full,
                                    "unknown key (known: max-message-size, max-scan-limit, \
                                     max-scan-response-bytes)",
                                ));
                            }
                        };
                        *slot = Some(positive(&full, value)?);
                    }
                }
                "transport" => {
                    let tp = &mut config.transport;
                    for (sub, value) in table(&key, value)? {
                        let full = format!("transport.{sub}");
                        let slot = match sub.as_str() {
                            "queue-capacity" => &mut tp.queue_capacity,
                            "max-concurrent-snapshot-sends" => {
                                &mut tp.max_concurrent_snapshot_sends
                            }
                            "max-concurrent-snapshot-receives" => {
                                &mut tp.max_concurrent_snapshot_receives
                            }
                            "reconnect-backoff-min-ms" => &mut tp.reconnect_backoff_min_ms,
                            "reconnect-backoff-max-ms" => &mut tp.reconnect_backoff_max_ms,
                            "connect-timeout-ms" => &mut tp.connect_timeout_ms,
                            _ => {
                                return Err(config_error(
                                    &full,
                                    "unknown key (known: queue-capacity, \
                                     max-concurrent-snapshot-sends, \
                                     max-concurrent-snapshot-receives, reconnect-backoff-min-ms, \
                                     reconnect-backoff-max-ms, connect-timeout-ms)",
                                ));
                            }
                        };
                        *slot = Some(positive(&full, value)?);
                    }
                }
                _ => {
                    return Err(config_error(
                        &key,
                        "unknown key (known: scheduler, addr, advertise-addr, path, [log], \
                         [raftstore], [server], [transport])",
                    ));
                }
            }
        }
        Ok(config)
    }
}

/// Checks `HOST:PORT` (an `http://` prefix allowed for the scheduler).
fn check_addr(key: &str, addr: &str) -> Result<(), ConfigError> {
    let authority = addr.strip_prefix("http://").unwrap_or(addr);
    let valid = authority
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if valid {
        Ok(())
    } else {
        Err(config_error(key, format!("{addr:?}: expected HOST:PORT")))
    }
}

fn to_usize(key: &str, n: u64) -> Result<usize, ConfigError> {
    usize::try_from(n).map_err(|_| config_error(key, format!("{n}: too large")))
}

impl ServerConfig {
    /// Resolves flags over the config file (if `--config` names one) over
    /// defaults, and checks every value.
    pub fn from_flags(flags: Flags) -> Result<ServerConfig, ConfigError> {
        let file = match &flags.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        Self::resolve(flags, file)
    }

    fn resolve(flags: Flags, file: FileConfig) -> Result<ServerConfig, ConfigError> {
        // Each setting: the flag's value and name, else the file's and its key.
        fn pick<T>(
            flag: Option<T>,
            flag_name: &'static str,
            value: Option<T>,
            key: &'static str,
        ) -> Option<(T, &'static str)> {
            flag.map(|v| (v, flag_name)).or(value.map(|v| (v, key)))
        }

        let (scheduler, key) = pick(flags.scheduler, "--scheduler", file.scheduler, "scheduler")
            .unwrap_or((DEFAULT_SCHEDULER.to_owned(), "scheduler"));
        check_addr(key, &scheduler)?;
        let (addr, key) = pick(flags.addr, "--addr", file.addr, "addr")
            .unwrap_or((DEFAULT_ADDR.to_owned(), "addr"));
        check_addr(key, &addr)?;
        let advertise_addr = match pick(
            flags.advertise_addr,
            "--advertise-addr",
            file.advertise_addr,
            "advertise-addr",
        ) {
            Some((advertise, key)) => {
                check_addr(key, &advertise)?;
                Some(advertise)
            }
            None => None,
        };
        let (path, key) = pick(flags.path, "--path", file.path, "path")
            .unwrap_or((PathBuf::from(DEFAULT_PATH), "path"));
        if path.as_os_str().is_empty() {
            return Err(config_error(key, "must not be empty"));
        }
        let log_level = match pick(flags.log_level, "--loglevel", file.log_level, "log.level") {
            Some((level, key)) => parse_level(&level).map_err(|e| config_error(key, e))?,
            None => slog::Level::Info,
        };
        let log_format = match pick(
            flags.log_format,
            "--log-format",
            file.log_format,
            "log.format",
        ) {
            Some((format, key)) => parse_format(&format).map_err(|e| config_error(key, e))?,
            None => LogFormat::Human,
        };

        let mut node = NodeConfig::new(scheduler, addr, path);
        node.advertise_addr = advertise_addr;
        node.enable_fault_injection = flags.enable_fault_injection;
        let rs = file.raftstore;
        let cfg = &mut node.raftstore;
        if let Some(ms) = rs.tick_interval_ms {
            cfg.raft_base_tick_interval = Duration::from_millis(ms);
        }
        if let Some(n) = rs.heartbeat_ticks {
            cfg.raft_heartbeat_ticks = to_usize("raftstore.raft-heartbeat-ticks", n)?;
        }
        if let Some(n) = rs.election_timeout_ticks {
            cfg.raft_election_timeout_ticks = to_usize("raftstore.raft-election-timeout-ticks", n)?;
        }
        if cfg.raft_election_timeout_ticks <= cfg.raft_heartbeat_ticks {
            return Err(config_error(
                "raftstore.raft-election-timeout-ticks",
                format!(
                    "{} must be greater than raft-heartbeat-ticks ({})",
                    cfg.raft_election_timeout_ticks, cfg.raft_heartbeat_ticks
                ),
            ));
        }
        if let Some(n) = rs.log_gc_tick_ticks {
            cfg.raft_log_gc_tick_ticks = to_usize("raftstore.raft-log-gc-tick-ticks", n)?;
        }
        if let Some(n) = rs.log_gc_count_limit {
            cfg.raft_log_gc_count_limit = n;
        }
        if let Some(n) = rs.log_gc_size_limit {
            cfg.raft_log_gc_size_limit = n;
        }
        if let Some(n) = rs.region_max_size {
            cfg.region_max_size = n;
        }
        if let Some(n) = rs.region_split_size {
            cfg.region_split_size = n;
        }
        if cfg.region_split_size > cfg.region_max_size {
            return Err(config_error(
                "raftstore.region-split-size",
                format!(
                    "{} must not exceed region-max-size ({})",
                    cfg.region_split_size, cfg.region_max_size
                ),
            ));
        }
        if let Some(n) = rs.client_session_ttl_secs {
            cfg.client_session_ttl = Duration::from_secs(n);
        }
        if let Some(n) = rs.max_client_sessions {
            cfg.max_client_sessions = n;
        }
        if let Some(n) = rs.split_check_ticks {
            cfg.split_region_check_tick_interval =
                to_usize("raftstore.split-region-check-tick-interval", n)?;
        }
        let sv = &file.server;
        if let Some(n) = sv.max_message_size {
            node.service.max_message_size = to_usize("server.max-message-size", n)?;
        }
        if let Some(n) = sv.max_scan_limit {
            node.service.max_scan_limit = u32::try_from(n).map_err(|_| {
                config_error(
                    "server.max-scan-limit",
                    format!("{n}: at most {}", u32::MAX),
                )
            })?;
        }
        if let Some(n) = sv.max_scan_response_bytes {
            node.service.max_scan_response_bytes = to_usize("server.max-scan-response-bytes", n)?;
        }
        if let Some(n) = rs.max_value_size {
            let key = "raftstore.max-value-size";
            let n = to_usize(key, n)?;
            // A value must fit in a gRPC message with its key and framing.
            if n >= node.service.max_message_size {
                return Err(config_error(
                    key,
                    format!(
                        "{n} must be below the gRPC message limit ({})",
                        node.service.max_message_size
                    ),
                ));
            }
            cfg.max_value_size = n;
            node.service.max_value_size = n;
        }
        if rs.max_value_size.is_none()
            && node.service.max_value_size >= node.service.max_message_size
        {
            return Err(config_error(
                "server.max-message-size",
                format!(
                    "{} must exceed the largest value ({}; lower raftstore.max-value-size too)",
                    node.service.max_message_size, node.service.max_value_size
                ),
            ));
        }
        apply_transport_keys(&file.transport, &mut node.transport)?;
        Ok(ServerConfig {
            node,
            log_level,
            log_format,
        })
    }
}

/// The `[transport]` table over the transport's defaults.
fn apply_transport_keys(
    keys: &TransportKeys,
    opts: &mut TransportOptions,
) -> Result<(), ConfigError> {
    if let Some(n) = keys.queue_capacity {
        opts.queue_capacity = to_usize("transport.queue-capacity", n)?;
    }
    if let Some(n) = keys.max_concurrent_snapshot_sends {
        opts.max_concurrent_snapshot_sends =
            to_usize("transport.max-concurrent-snapshot-sends", n)?;
    }
    if let Some(n) = keys.max_concurrent_snapshot_receives {
        opts.max_concurrent_snapshot_receives =
            to_usize("transport.max-concurrent-snapshot-receives", n)?;
    }
    if let Some(ms) = keys.reconnect_backoff_min_ms {
        opts.reconnect_backoff_min = Duration::from_millis(ms);
    }
    if let Some(ms) = keys.reconnect_backoff_max_ms {
        opts.reconnect_backoff_max = Duration::from_millis(ms);
    }
    if opts.reconnect_backoff_max < opts.reconnect_backoff_min {
        return Err(config_error(
            "transport.reconnect-backoff-max-ms",
            format!(
                "{:?} is below reconnect-backoff-min-ms ({:?})",
                opts.reconnect_backoff_max, opts.reconnect_backoff_min
            ),
        ));
    }
    if let Some(ms) = keys.connect_timeout_ms {
        opts.connect_timeout = Duration::from_millis(ms);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Flags {
        Flags::try_parse_from(std::iter::once("tinykv-server").chain(args.iter().copied()))
            .expect("the test's flags parse")
    }

    fn must_config_error<T: std::fmt::Debug>(
        result: Result<T, ConfigError>,
        key: &str,
        reason_part: &str,
    ) {
        match result {
            Err(e) => {
                assert_eq!(e.key, key, "{}", e.reason);
                assert!(e.reason.contains(reason_part), "{key}: {}", e.reason);
            }
            Ok(other) => panic!("expected a config error on {key}, got {other:?}"),
        }
    }

    #[test]
    fn test_defaults() {
        let config = ServerConfig::from_flags(Flags::default()).expect("defaults are valid");
        assert_eq!(config.node.scheduler_addr, DEFAULT_SCHEDULER);
        assert_eq!(config.node.listen_addr, DEFAULT_ADDR);
        assert_eq!(config.node.advertise_addr, None);
        assert_eq!(config.node.data_dir, PathBuf::from(DEFAULT_PATH));
        assert_eq!(config.log_level, slog::Level::Info);
        assert_eq!(config.log_format, LogFormat::Human);
    }

    #[test]
    fn test_flag_wins_over_file_wins_over_default() {
        let file = FileConfig::parse(
            "addr = \"127.0.0.1:3000\"\n\
             path = \"from-file\"\n\
             [log]\nlevel = \"debug\"\nformat = \"json\"\n\
             [raftstore]\nraft-base-tick-interval-ms = 50\nmax-value-size = 1024\n",
        )
        .expect("valid file");
        let config = ServerConfig::resolve(
            flags(&[
                "--path",
                "from-flag",
                "--loglevel",
                "warn",
                "--advertise-addr",
                "h:1",
            ]),
            file,
        )
        .expect("valid settings");
        assert_eq!(
            config.node.listen_addr, "127.0.0.1:3000",
            "file over default"
        );
        assert_eq!(
            config.node.data_dir,
            PathBuf::from("from-flag"),
            "flag over file"
        );
        assert_eq!(config.node.advertise_addr.as_deref(), Some("h:1"));
        assert_eq!(config.log_level, slog::Level::Warning, "flag over file");
        assert_eq!(config.log_format, LogFormat::Json, "file over default");
        assert_eq!(
            config.node.raftstore.raft_base_tick_interval,
            Duration::from_millis(50)
        );
        assert_eq!(config.node.raftstore.max_value_size, 1024);
        assert_eq!(config.node.service.max_value_size, 1024);
    }

    #[test]
    fn test_fault_injection_is_off_unless_flagged() {
        let off = ServerConfig::from_flags(Flags::default()).expect("defaults are valid");
        assert!(!off.node.enable_fault_injection);
        let on = ServerConfig::from_flags(flags(&["--enable-fault-injection"])).expect("valid");
        assert!(on.node.enable_fault_injection);
        must_config_error(
            FileConfig::parse("enable-fault-injection = true\n"),
            "enable-fault-injection",
            "unknown key",
        );
    }

    #[test]
    fn test_server_limits_come_from_the_file() {
        let file = FileConfig::parse(
            "[server]\nmax-message-size = 65536\nmax-scan-limit = 50\n\
             max-scan-response-bytes = 4096\n[raftstore]\nmax-value-size = 1024\n",
        )
        .expect("valid");
        let config = ServerConfig::resolve(Flags::default(), file).expect("resolves");
        assert_eq!(config.node.service.max_message_size, 65536);
        assert_eq!(config.node.service.max_scan_limit, 50);
        assert_eq!(config.node.service.max_scan_response_bytes, 4096);
    }

    #[test]
    fn test_transport_settings_come_from_the_file() {
        let file = FileConfig::parse(
            "[transport]\nqueue-capacity = 10\nmax-concurrent-snapshot-receives = 2\n\
             reconnect-backoff-min-ms = 50\nreconnect-backoff-max-ms = 800\n",
        )
        .expect("parse");
        let cfg = ServerConfig::resolve(flags(&[]), file).expect("resolve");
        let t = &cfg.node.transport;
        assert_eq!(t.queue_capacity, 10);
        assert_eq!(t.max_concurrent_snapshot_receives, 2);
        assert_eq!(t.reconnect_backoff_min, Duration::from_millis(50));
        assert_eq!(t.reconnect_backoff_max, Duration::from_millis(800));
        assert_eq!(
            t.max_concurrent_snapshot_sends,
            TransportOptions::default().max_concurrent_snapshot_sends
        );

        let file = FileConfig::parse("[transport]\nreconnect-backoff-max-ms = 1\n").expect("parse");
        let err = ServerConfig::resolve(flags(&[]), file).expect_err("max below min");
        assert!(
            err.to_string()
                .contains("transport.reconnect-backoff-max-ms"),
            "{err}"
        );
        let err = FileConfig::parse("[transport]\nqueue-capacity = 0\n").expect_err("zero");
        assert!(
            err.to_string().contains("transport.queue-capacity"),
            "{err}"
        );
        let err = FileConfig::parse("[transport]\nspeed = 1\n").expect_err("unknown");
        assert!(err.to_string().contains("transport.speed"), "{err}");
    }

    #[test]
    fn test_split_sizes_come_from_the_file() {
        let file = FileConfig::parse(
            "[raftstore]\nregion-max-size = 4000\nregion-split-size = 3000\n\
             split-region-check-tick-interval = 7\n",
        )
        .expect("valid");
        let config = ServerConfig::resolve(Flags::default(), file).expect("resolves");
        assert_eq!(config.node.raftstore.region_max_size, 4000);
        assert_eq!(config.node.raftstore.region_split_size, 3000);
        assert_eq!(config.node.raftstore.split_region_check_tick_interval, 7);
        let inverted =
            FileConfig::parse("[raftstore]\nregion-max-size = 10\nregion-split-size = 20\n")
                .expect("valid");
        must_config_error(
            ServerConfig::resolve(Flags::default(), inverted),
            "raftstore.region-split-size",
            "must not exceed",
        );
    }

    #[test]
    fn test_client_session_limits_come_from_the_file() {
        let file = FileConfig::parse(
            "[raftstore]\nclient-session-ttl-secs = 90\nmax-client-sessions = 12\n",
        )
        .expect("valid");
        let config = ServerConfig::resolve(Flags::default(), file).expect("resolves");
        assert_eq!(
            config.node.raftstore.client_session_ttl,
            Duration::from_secs(90)
        );
        assert_eq!(config.node.raftstore.max_client_sessions, 12);
        must_config_error(
            FileConfig::parse("[raftstore]\nmax-client-sessions = 0"),
            "raftstore.max-client-sessions",
            "positive",
        );
    }

    #[test]
    fn test_errors_name_the_key_and_reason() {
        must_config_error(FileConfig::parse("adr = \"x\""), "adr", "unknown key");
        must_config_error(FileConfig::parse("path = 5"), "path", "string");
        must_config_error(
            FileConfig::parse("[log]\nlevle = \"x\""),
            "log.levle",
            "unknown key",
        );
        must_config_error(
            FileConfig::parse("[raftstore]\nraft-heartbeat-ticks = 0"),
            "raftstore.raft-heartbeat-ticks",
            "positive",
        );
        must_config_error(
            FileConfig::parse("[raftstore]\nraft-heartbeat-ticks = \"2\""),
            "raftstore.raft-heartbeat-ticks",
            "integer",
        );
        must_config_error(
            ServerConfig::resolve(flags(&["--addr", "nohost"]), FileConfig::default()),
            "--addr",
            "HOST:PORT",
        );
        must_config_error(
            ServerConfig::resolve(flags(&["--loglevel", "loud"]), FileConfig::default()),
            "--loglevel",
            "expected",
        );
        must_config_error(
            FileConfig::parse("[server]\nmax-scan-limt = 5"),
            "server.max-scan-limt",
            "unknown key",
        );
        let small = FileConfig::parse("[server]\nmax-message-size = 1024").expect("valid");
        must_config_error(
            ServerConfig::resolve(Flags::default(), small),
            "server.max-message-size",
            "largest value",
        );
        let file =
            FileConfig::parse("[raftstore]\nraft-election-timeout-ticks = 2").expect("valid");
        must_config_error(
            ServerConfig::resolve(Flags::default(), file),
            "raftstore.raft-election-timeout-ticks",
            "greater",
        );
    }
}
