//! How the project's binaries log: the level and format a config names, and
//! the root slog logger to stderr they build from them.
//!
//! It lives here because this is the lowest crate both `tinykv-scheduler`
//! and `tinykv-server` build on, and both must read `--loglevel`/`log.level`
//! and `--log-format`/`log.format` alike.

use slog::{Drain, Logger, o};

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines (slog-term).
    Human,
    /// One JSON object per line (slog-json).
    Json,
}

/// Parses a log level name (case-insensitive); `Err` is the reason, for the
/// caller to pair with the key it came from.
pub fn parse_level(level: &str) -> Result<slog::Level, String> {
    match level.to_ascii_lowercase().as_str() {
        "trace" => Ok(slog::Level::Trace),
        "debug" => Ok(slog::Level::Debug),
        "info" => Ok(slog::Level::Info),
        "warn" | "warning" => Ok(slog::Level::Warning),
        "error" => Ok(slog::Level::Error),
        "fatal" | "critical" => Ok(slog::Level::Critical),
        _ => Err(format!(
            "{level:?}: expected trace, debug, info, warn, error or fatal"
        )),
    }
}

/// Parses a log format name (case-insensitive); `Err` is the reason.
pub fn parse_format(format: &str) -> Result<LogFormat, String> {
    match format.to_ascii_lowercase().as_str() {
        "human" | "text" => Ok(LogFormat::Human),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!("{format:?}: expected human or json")),
    }
}

/// The root logger, to stderr, at `level` in `format`. The guard flushes
/// buffered lines when dropped.
pub fn new_logger(level: slog::Level, format: LogFormat) -> (Logger, slog_async::AsyncGuard) {
    let drain: Box<dyn Drain<Ok = (), Err = slog::Never> + Send> = match format {
        LogFormat::Human => {
            let decorator = slog_term::PlainDecorator::new(std::io::stderr());
            Box::new(slog_term::FullFormat::new(decorator).build().fuse())
        }
        LogFormat::Json => Box::new(
            slog_json::Json::new(std::io::stderr())
                .add_default_keys()
                .build()
                .fuse(),
        ),
    };
    let drain = slog::LevelFilter::new(drain, level).fuse();
    let (drain, guard) = slog_async::Async::new(drain).build_with_guard();
    (Logger::root(drain.fuse(), o!()), guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_case_insensitively() {
        assert_eq!(parse_level("WARN"), Ok(slog::Level::Warning));
        assert_eq!(parse_level("fatal"), Ok(slog::Level::Critical));
        assert!(parse_level("loud").is_err());
        assert_eq!(parse_format("Text"), Ok(LogFormat::Human));
        assert_eq!(parse_format("json"), Ok(LogFormat::Json));
        assert!(parse_format("xml").is_err());
    }
}
