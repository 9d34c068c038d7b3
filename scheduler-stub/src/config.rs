//! The `tinykv-scheduler` binary's settings: command-line [`Flags`] (clap)
//! over an optional TOML file, resolved into a checked [`Config`].
//!
//! Precedence: a flag given on the command line wins over the file's key,
//! which wins over the default. Flags keep the names TinyKV's scheduler uses
//! (`--client-urls`, `--advertise-client-urls`, `--data-dir`, `--config`,
//! `--log-level`).
//!
//! The file (every key optional; an unknown key is an error, so a typo is
//! not silently ignored):
//!
//! ```toml
//! client-urls = "http://127.0.0.1:2379"
//! advertise-client-urls = "http://10.0.0.5:2379"
//! data-dir = "scheduler-data"
//!
//! [log]
//! level = "info"      # trace, debug, info, warn, error, fatal
//! format = "human"    # human, json
//!
//! [schedule]
//! enable = true                    # make operators by itself (replica checker, balancers)
//! max-store-down-time = "30m"      # a store silent this long is down: its peers are replaced
//! balance-interval = "10s"         # how often the balancers run
//! region-operator-timeout = "10m"  # an add/remove/move peer operator is dropped after this
//! leader-operator-timeout = "30s"  # a leader transfer is dropped after this
//! leader-tolerance = 1             # move a leader only if counts differ by more
//! region-tolerance-factor = 2      # move a region only if sizes differ by more than this x its size
//! ```
//!
//! Durations are a whole number with a unit: `ms`, `s`, `m` or `h`.
//!
//! Every error names the flag or key (`log.level`) and the reason.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use clap::Parser;

use std::time::Duration;

use crate::errors::{Error, Result};
pub use crate::logging::LogFormat;
use crate::logging::{parse_format, parse_level};
use crate::schedule::ScheduleConfig;

/// The listen URL when neither flag nor file gives one (TinyKV's default).
pub const DEFAULT_CLIENT_URL: &str = "http://127.0.0.1:2379";
/// The data dir when neither flag nor file gives one.
pub const DEFAULT_DATA_DIR: &str = "scheduler-data";

/// Command-line flags of `tinykv-scheduler`.
#[derive(Debug, Default, Parser)]
#[command(
    name = "tinykv-scheduler",
    version,
    about = "The tinykv-rs placement driver: serves TinyKV's schedulerpb.Scheduler over gRPC",
    long_about = "The tinykv-rs placement driver. Serves TinyKV's schedulerpb.Scheduler gRPC \
        service (ids, bootstrap, stores, regions, heartbeats, timestamps) to tinykv-server \
        stores and clients, and keeps its state (cluster id, ids, stores, regions, cluster \
        config) in --data-dir so that a restart forgets nothing.\n\n\
        Settings come from flags, then the --config file, then defaults; a flag wins over \
        the file. SIGINT or SIGTERM shuts it down gracefully."
)]
pub struct Flags {
    /// URL to listen on for gRPC clients (stores, tinykv-ctl), `http://HOST:PORT`.
    /// File key `client-urls`. [default: http://127.0.0.1:2379]
    #[arg(long, value_name = "URL")]
    pub client_urls: Option<String>,

    /// URL reported to clients by GetMembers, for when they must reach this
    /// scheduler through another address (a proxy, NAT, 0.0.0.0 listen).
    /// File key `advertise-client-urls`. [default: the listen URL]
    #[arg(long, value_name = "URL")]
    pub advertise_client_urls: Option<String>,

    /// Directory of the scheduler's state file, created if missing.
    /// File key `data-dir`. [default: scheduler-data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// TOML config file; its keys are the long flag names (`client-urls`,
    /// `advertise-client-urls`, `data-dir`) and a `[log]` table (`level`,
    /// `format`). Flags given on the command line win over it.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log level: trace, debug, info, warn, error or fatal.
    /// File key `log.level`. [default: info]
    #[arg(short = 'L', long, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Log format: `human` (readable lines) or `json` (one JSON object per
    /// line). File key `log.format`. [default: human]
    #[arg(long, value_name = "FORMAT")]
    pub log_format: Option<String>,

    /// How long a store may stay silent (no store heartbeat) before it is
    /// down and its peers are replaced, e.g. `30m`, `90s`.
    /// File key `schedule.max-store-down-time`. [default: 30m]
    #[arg(long, value_name = "DURATION")]
    pub max_store_down_time: Option<String>,

    /// How often the balancers run, e.g. `10s`.
    /// File key `schedule.balance-interval`. [default: 10s]
    #[arg(long, value_name = "DURATION")]
    pub balance_interval: Option<String>,

    /// Make no operators by itself (no replica checker, no balancing).
    /// File key `schedule.enable = false`.
    #[arg(long)]
    pub disable_schedule: bool,
}

/// The resolved, checked settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The listen URL as given.
    pub client_url: String,
    /// The address the listen URL resolves to.
    pub listen_addr: SocketAddr,
    /// The URL `GetMembers` reports, if set; otherwise the listen URL (with
    /// the actual port, when listening on port 0).
    pub advertise_client_url: Option<String>,
    /// Where the state file lives.
    pub data_dir: PathBuf,
    /// The most verbose level logged.
    pub log_level: slog::Level,
    /// How log lines look.
    pub log_format: LogFormat,
    /// Scheduling: on by default in the binary.
    pub schedule: ScheduleConfig,
}

/// The file's keys, each optional. Read key by key (each value through
/// serde) rather than derived, so that every error can name its key.
#[derive(Debug, Default)]
struct FileConfig {
    client_urls: Option<String>,
    advertise_client_urls: Option<String>,
    data_dir: Option<PathBuf>,
    log: Option<FileLogConfig>,
    schedule: FileScheduleConfig,
}

/// The `[schedule]` table, each key optional.
#[derive(Debug, Default)]
struct FileScheduleConfig {
    enable: Option<bool>,
    max_store_down_time: Option<Duration>,
    balance_interval: Option<Duration>,
    region_operator_timeout: Option<Duration>,
    leader_operator_timeout: Option<Duration>,
    leader_tolerance: Option<u64>,
    region_tolerance_factor: Option<u64>,
}

/// Parses a duration: a whole number and a unit, `ms`, `s`, `m` or `h`
/// (`500ms`, `30s`, `30m`, `1h`).
pub fn parse_duration(text: &str) -> std::result::Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?}: no unit (use ms, s, m or h, e.g. \"30s\")"))?;
    let (number, unit) = text.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?}: expected a whole number and a unit, e.g. \"30s\""))?;
    let secs = |factor: u64| {
        n.checked_mul(factor)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{text:?}: too long"))
    };
    match unit {
        "ms" => Ok(Duration::from_millis(n)),
        "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3600),
        _ => Err(format!(
            "{text:?}: unknown unit {unit:?} (use ms, s, m or h)"
        )),
    }
}

#[derive(Debug, Default)]
struct FileLogConfig {
    level: Option<String>,
    format: Option<String>,
}

fn config_error(key: &str, reason: impl Into<String>) -> Error {
    Error::Config {
        key: key.to_owned(),
        reason: reason.into(),
    }
}

impl FileConfig {
    /// Reads and parses the file; errors name the key where one is at fault.
    fn load(path: &Path) -> Result<FileConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            config_error("--config", format!("cannot read {}: {e}", path.display()))
        })?;
        FileConfig::parse(&text).map_err(|e| match e {
            Error::Config { key, reason } => {
                config_error(&key, format!("{reason} (in {})", path.display()))
            }
            other => other,
        })
    }

    /// Parses the text key by key, so an error can name its key.
    fn parse(text: &str) -> Result<FileConfig> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
            // The line, so the user finds the offending key.
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
        for (key, value) in table {
            let field = |value: toml::Value| {
                value
                    .try_into::<String>()
                    .map_err(|e| config_error(&key, e.message().to_owned()))
            };
            match key.as_str() {
                "client-urls" => config.client_urls = Some(field(value)?),
                "advertise-client-urls" => config.advertise_client_urls = Some(field(value)?),
                "data-dir" => config.data_dir = Some(PathBuf::from(field(value)?)),
                "log" => {
                    let toml::Value::Table(log) = value else {
                        return Err(config_error("log", "expected a table ([log])"));
                    };
                    let mut section = FileLogConfig::default();
                    for (key, value) in log {
                        let full_key = format!("log.{key}");
                        let value = value
                            .try_into::<String>()
                            .map_err(|e| config_error(&full_key, e.message().to_owned()))?;
                        match key.as_str() {
                            "level" => section.level = Some(value),
                            "format" => section.format = Some(value),
                            _ => return Err(config_error(&full_key, "unknown key")),
                        }
                    }
                    config.log = Some(section);
                }
                "schedule" => {
                    let toml::Value::Table(table) = value else {
                        return Err(config_error("schedule", "expected a table ([schedule])"));
                    };
                    config.schedule = FileScheduleConfig::parse(table)?;
                }
                _ => {
                    return Err(config_error(
                        &key,
                        "unknown key (known: client-urls, advertise-client-urls, data-dir, \
                         [log] level, format, [schedule] ...)",
                    ));
                }
            }
        }
        Ok(config)
    }
}

impl FileScheduleConfig {
    /// Reads the `[schedule]` table; errors name `schedule.<key>`.
    fn parse(table: toml::Table) -> Result<FileScheduleConfig> {
        let mut config = FileScheduleConfig::default();
        for (key, value) in table {
            let full_key = format!("schedule.{key}");
            let duration = |value: toml::Value| {
                let text = value.try_into::<String>().map_err(|_| {
                    config_error(&full_key, "expected a duration string such as \"30s\"")
                })?;
                parse_duration(&text).map_err(|e| config_error(&full_key, e))
            };
            let count = |value: toml::Value| {
                value
                    .try_into::<u64>()
                    .map_err(|_| config_error(&full_key, "expected a whole number >= 0"))
            };
            match key.as_str() {
                "enable" => {
                    config.enable = Some(
                        value
                            .try_into::<bool>()
                            .map_err(|_| config_error(&full_key, "expected true or false"))?,
                    );
                }
                "max-store-down-time" => config.max_store_down_time = Some(duration(value)?),
                "balance-interval" => config.balance_interval = Some(duration(value)?),
                "region-operator-timeout" => {
                    config.region_operator_timeout = Some(duration(value)?);
                }
                "leader-operator-timeout" => {
                    config.leader_operator_timeout = Some(duration(value)?);
                }
                "leader-tolerance" => config.leader_tolerance = Some(count(value)?),
                "region-tolerance-factor" => config.region_tolerance_factor = Some(count(value)?),
                _ => {
                    return Err(config_error(
                        &full_key,
                        "unknown key (known: enable, max-store-down-time, balance-interval, \
                         region-operator-timeout, leader-operator-timeout, leader-tolerance, \
                         region-tolerance-factor)",
                    ));
                }
            }
        }
        Ok(config)
    }
}

/// Parses `http://HOST:PORT` (a trailing `/` allowed) into `HOST:PORT`.
fn url_authority<'a>(key: &str, url: &'a str) -> Result<&'a str> {
    if url.contains(',') {
        return Err(config_error(
            key,
            format!("{url:?}: only one URL is supported"),
        ));
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(config_error(
            key,
            format!("{url:?}: expected http://HOST:PORT (TLS is not supported)"),
        ));
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.is_empty() || authority.contains('/') {
        return Err(config_error(
            key,
            format!("{url:?}: expected http://HOST:PORT, no path"),
        ));
    }
    Ok(authority)
}

fn resolve(key: &str, url: &str) -> Result<SocketAddr> {
    let authority = url_authority(key, url)?;
    authority
        .to_socket_addrs()
        .map_err(|e| config_error(key, format!("{url:?}: {e}")))?
        .next()
        .ok_or_else(|| config_error(key, format!("{url:?}: resolves to no address")))
}

impl Config {
    /// Resolves flags over the config file (if `--config` names one) over
    /// defaults, and checks every value.
    pub fn from_flags(flags: Flags) -> Result<Config> {
        let file = match &flags.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        Self::resolve(flags, file)
    }

    fn resolve(flags: Flags, file: FileConfig) -> Result<Config> {
        let log = file.log.unwrap_or_default();
        let flags_schedule = (
            flags.max_store_down_time.clone(),
            flags.balance_interval.clone(),
            flags.disable_schedule,
        );
        // Each setting: the flag's value and name, else the file's and its key.
        let pick = |flag: Option<String>,
                    flag_name: &'static str,
                    value: Option<String>,
                    key: &'static str| {
            match (flag, value) {
                (Some(v), _) => Some((v, flag_name)),
                (None, Some(v)) => Some((v, key)),
                (None, None) => None,
            }
        };

        let (client_url, client_key) = pick(
            flags.client_urls,
            "--client-urls",
            file.client_urls,
            "client-urls",
        )
        .unwrap_or((DEFAULT_CLIENT_URL.to_owned(), "client-urls"));
        let listen_addr = resolve(client_key, &client_url)?;

        let advertise_client_url = match pick(
            flags.advertise_client_urls,
            "--advertise-client-urls",
            file.advertise_client_urls,
            "advertise-client-urls",
        ) {
            Some((url, key)) => {
                url_authority(key, &url)?;
                Some(url)
            }
            None => None,
        };

        let data_dir = flags
            .data_dir
            .map(|d| (d, "--data-dir"))
            .or(file.data_dir.map(|d| (d, "data-dir")))
            .unwrap_or_else(|| (PathBuf::from(DEFAULT_DATA_DIR), "data-dir"));
        if data_dir.0.as_os_str().is_empty() {
            return Err(config_error(data_dir.1, "must not be empty"));
        }

        let log_level = match pick(flags.log_level, "--log-level", log.level, "log.level") {
            Some((level, key)) => parse_level(&level).map_err(|e| config_error(key, e))?,
            None => slog::Level::Info,
        };
        let log_format = match pick(flags.log_format, "--log-format", log.format, "log.format") {
            Some((format, key)) => parse_format(&format).map_err(|e| config_error(key, e))?,
            None => LogFormat::Human,
        };

        let schedule = resolve_schedule(&flags_schedule, file.schedule)?;

        Ok(Config {
            client_url,
            listen_addr,
            advertise_client_url,
            data_dir: data_dir.0,
            log_level,
            log_format,
            schedule,
        })
    }
}

/// The schedule settings: flags (`--max-store-down-time`,
/// `--balance-interval`, `--disable-schedule`) over the `[schedule]` table
/// over the defaults (scheduling on).
fn resolve_schedule(
    flags: &(Option<String>, Option<String>, bool),
    file: FileScheduleConfig,
) -> Result<ScheduleConfig> {
    let (down_flag, interval_flag, disable) = flags;
    let mut config = ScheduleConfig::enabled_default();
    if let Some(enable) = file.enable {
        config.enabled = enable;
    }
    if *disable {
        config.enabled = false;
    }
    let flag_duration = |flag: &Option<String>, name: &str| {
        flag.as_deref()
            .map(|text| parse_duration(text).map_err(|e| config_error(name, e)))
            .transpose()
    };
    config.max_store_down_time = flag_duration(down_flag, "--max-store-down-time")?
        .or(file.max_store_down_time)
        .unwrap_or(config.max_store_down_time);
    let (interval, interval_key) = match flag_duration(interval_flag, "--balance-interval")? {
        Some(d) => (Some(d), "--balance-interval"),
        None => (file.balance_interval, "schedule.balance-interval"),
    };
    if let Some(interval) = interval {
        if interval.is_zero() {
            return Err(config_error(interval_key, "must be more than 0"));
        }
        config.balance_interval = interval;
    }
    if let Some(timeout) = file.region_operator_timeout {
        config.region_operator_timeout = timeout;
    }
    if let Some(timeout) = file.leader_operator_timeout {
        config.leader_operator_timeout = timeout;
    }
    if let Some(tolerance) = file.leader_tolerance {
        config.leader_tolerance = tolerance;
    }
    if let Some(factor) = file.region_tolerance_factor {
        config.region_tolerance_factor = factor;
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Flags {
        Flags::try_parse_from(std::iter::once("tinykv-scheduler").chain(args.iter().copied()))
            .unwrap()
    }

    fn must_config_error(result: Result<impl std::fmt::Debug>, key: &str, reason_part: &str) {
        match result {
            Err(Error::Config { key: got, reason }) => {
                assert_eq!(got, key, "{reason}");
                assert!(reason.contains(reason_part), "{key}: {reason}");
            }
            other => panic!("expected a config error on {key}, got {other:?}"),
        }
    }

    #[test]
    fn test_defaults() {
        let config = Config::from_flags(Flags::default()).unwrap();
        assert_eq!(config.client_url, DEFAULT_CLIENT_URL);
        assert_eq!(config.listen_addr, "127.0.0.1:2379".parse().unwrap());
        assert_eq!(config.advertise_client_url, None);
        assert_eq!(config.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(config.log_level, slog::Level::Info);
        assert_eq!(config.log_format, LogFormat::Human);
    }

    #[test]
    fn test_flag_wins_over_file_wins_over_default() {
        let file = FileConfig::parse(
            "client-urls = \"http://127.0.0.1:3000\"\n\
             data-dir = \"from-file\"\n\
             [log]\nlevel = \"debug\"\nformat = \"json\"\n",
        )
        .unwrap();
        let config =
            Config::resolve(flags(&["--data-dir", "from-flag", "-L", "warn"]), file).unwrap();
        assert_eq!(
            config.listen_addr,
            "127.0.0.1:3000".parse().unwrap(),
            "file over default"
        );
        assert_eq!(
            config.data_dir,
            PathBuf::from("from-flag"),
            "flag over file"
        );
        assert_eq!(config.log_level, slog::Level::Warning, "flag over file");
        assert_eq!(config.log_format, LogFormat::Json, "file over default");
    }

    #[test]
    fn test_errors_name_the_key_and_reason() {
        must_config_error(
            FileConfig::parse("client-url = \"x\""),
            "client-url",
            "unknown key",
        );
        must_config_error(FileConfig::parse("data-dir = 5"), "data-dir", "string");
        must_config_error(
            FileConfig::parse("[log]\nlevle = \"x\""),
            "log.levle",
            "unknown key",
        );
        must_config_error(FileConfig::parse("log = 1"), "log", "table");
        must_config_error(
            FileConfig::parse("data-dir = \"d\"\nclient-urls = "),
            "(file)",
            "TOML at line 2",
        );

        let file = FileConfig::parse("[log]\nlevel = \"loud\"").unwrap();
        must_config_error(Config::resolve(Flags::default(), file), "log.level", "loud");
        must_config_error(
            Config::resolve(
                flags(&["--client-urls", "https://127.0.0.1:1"]),
                FileConfig::default(),
            ),
            "--client-urls",
            "TLS",
        );
        must_config_error(
            Config::resolve(
                flags(&["--client-urls", "http://127.0.0.1"]),
                FileConfig::default(),
            ),
            "--client-urls",
            "127.0.0.1",
        );
        must_config_error(
            Config::resolve(
                flags(&["--advertise-client-urls", "http://a:1,http://b:2"]),
                FileConfig::default(),
            ),
            "--advertise-client-urls",
            "one URL",
        );
        must_config_error(
            Config::resolve(flags(&["--log-format", "xml"]), FileConfig::default()),
            "--log-format",
            "human or json",
        );
    }

    #[test]
    fn test_schedule_table_and_flags() {
        let config = Config::from_flags(Flags::default()).unwrap();
        assert_eq!(
            config.schedule,
            ScheduleConfig::enabled_default(),
            "on by default"
        );

        let file = FileConfig::parse(
            "[schedule]\nenable = true\nmax-store-down-time = \"2m\"\n\
             balance-interval = \"500ms\"\nregion-operator-timeout = \"1h\"\n\
             leader-operator-timeout = \"5s\"\nleader-tolerance = 3\n\
             region-tolerance-factor = 4\n",
        )
        .unwrap();
        let config = Config::resolve(flags(&["--max-store-down-time", "90s"]), file).unwrap();
        let schedule = config.schedule;
        assert!(schedule.enabled);
        assert_eq!(
            schedule.max_store_down_time,
            Duration::from_secs(90),
            "flag over file"
        );
        assert_eq!(schedule.balance_interval, Duration::from_millis(500));
        assert_eq!(schedule.region_operator_timeout, Duration::from_secs(3600));
        assert_eq!(schedule.leader_operator_timeout, Duration::from_secs(5));
        assert_eq!(schedule.leader_tolerance, 3);
        assert_eq!(schedule.region_tolerance_factor, 4);

        let file = FileConfig::parse("[schedule]\nenable = false\n").unwrap();
        assert!(
            !Config::resolve(Flags::default(), file)
                .unwrap()
                .schedule
                .enabled
        );
        let off = Config::resolve(flags(&["--disable-schedule"]), FileConfig::default()).unwrap();
        assert!(!off.schedule.enabled);
    }

    #[test]
    fn test_schedule_errors_name_the_key() {
        must_config_error(
            FileConfig::parse("[schedule]\nmax-store-down-time = \"30\"\n"),
            "schedule.max-store-down-time",
            "no unit",
        );
        must_config_error(
            FileConfig::parse("[schedule]\nmax-store-down-time = 30\n"),
            "schedule.max-store-down-time",
            "duration string",
        );
        must_config_error(
            FileConfig::parse("[schedule]\nbalance-interval = \"3d\"\n"),
            "schedule.balance-interval",
            "unknown unit",
        );
        must_config_error(
            FileConfig::parse("[schedule]\nenable = \"yes\"\n"),
            "schedule.enable",
            "true or false",
        );
        must_config_error(
            FileConfig::parse("[schedule]\nleader-tolerance = -1\n"),
            "schedule.leader-tolerance",
            "whole number",
        );
        must_config_error(
            FileConfig::parse("[schedule]\nmax-down = \"1s\"\n"),
            "schedule.max-down",
            "unknown key",
        );
        must_config_error(FileConfig::parse("schedule = 1"), "schedule", "table");
        let file = FileConfig::parse("[schedule]\nbalance-interval = \"0s\"\n").unwrap();
        must_config_error(
            Config::resolve(Flags::default(), file),
            "schedule.balance-interval",
            "more than 0",
        );
        must_config_error(
            Config::resolve(
                flags(&["--max-store-down-time", "x"]),
                FileConfig::default(),
            ),
            "--max-store-down-time",
            "whole number",
        );
    }

    #[test]
    fn test_parse_duration() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("30m"), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1.5s").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
    }

    #[test]
    fn test_config_file_errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scheduler.toml");
        std::fs::write(&path, "data-dir = [1]\n").unwrap();
        let flags = Flags {
            config: Some(path.clone()),
            ..Flags::default()
        };
        let err = Config::from_flags(flags).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("data-dir") && msg.contains("scheduler.toml"),
            "{msg}"
        );
        let missing = Flags {
            config: Some(dir.path().join("nope.toml")),
            ..Flags::default()
        };
        must_config_error(Config::from_flags(missing), "--config", "nope.toml");
    }
}
