//! `tinykv-ctl`: the command line of the client library — Raw API reads
//! and writes, exactly-once appends through a Clerk, and the scheduler's
//! view of stores and regions.
//!
//! `append` runs through a [`Clerk`]: a client session (a client id from
//! the scheduler, one sequence number), so an attempt retried after a lost
//! answer is not applied twice. Sessions live in the raft store's column
//! family `default`; `append` refuses another `--cf` as bad usage.
//!
//! Output: an aligned table (or a single line for `get`, `put`, `delete`,
//! `append`)
//! by default, one JSON document with `--format json`. Keys and values are
//! taken as UTF-8 and printed as such when they are valid, printable
//! UTF-8; anything else is printed escaped (`\n`, `\xff`, ...). In tables
//! an empty start key shows as `(min)` and an empty end key as `(max)`.
//!
//! Exit codes: 0 on success — including `get` of a missing key, which
//! prints `(not found)` (`"found": false` in JSON): a missing key is an
//! answer, not a failure; 1 when the operation fails (the error goes to
//! stderr); 2 for bad usage.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand, ValueEnum};
use kvproto::metapb::{Peer, Store, StoreState};
use serde_json::{Value, json};
use tinykv::client::{Clerk, Client, ClientOptions, KvPair, RegionInfo};

/// Reads and writes keys of a tinykv-rs (or TinyKV) cluster through its
/// Raw API, and shows the scheduler's view of its stores and regions.
///
/// Requests are routed to each key's region leader through the scheduler,
/// and retried (following the stores' hints) until --timeout.
#[derive(Debug, Parser)]
#[command(
    name = "tinykv-ctl",
    version,
    after_help = "Exit status: 0 on success (a missing key is an answer, not a failure), \
                  1 when the operation fails (the error is on stderr), 2 for bad usage."
)]
struct Cli {
    /// The scheduler's address, HOST:PORT.
    #[arg(
        long,
        global = true,
        default_value = "127.0.0.1:2379",
        value_name = "ADDR"
    )]
    scheduler: String,
    /// How to print results: an aligned table, or one JSON document.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    format: Format,
    /// Give up on an operation (retries included) after this many seconds.
    #[arg(long, global = true, default_value = "20", value_name = "SECS", value_parser = parse_timeout)]
    timeout: Duration,
    /// The column family of get, put, delete and scan: default, lock or
    /// write (append: default only).
    #[arg(long, global = true, default_value = "default", value_name = "NAME")]
    cf: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Aligned columns for people.
    Table,
    /// One JSON document for programs.
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Set KEY to VALUE.
    Put {
        /// The key (UTF-8).
        key: String,
        /// The value (UTF-8).
        value: String,
    },
    /// Print KEY's value; a missing key prints "(not found)" and exits 0.
    Get {
        /// The key (UTF-8).
        key: String,
    },
    /// Delete KEY; deleting a missing key succeeds.
    Delete {
        /// The key (UTF-8).
        key: String,
    },
    /// Append VALUE to KEY's value (a missing key counts as empty), exactly
    /// once.
    ///
    /// The append goes through a client session: the scheduler allocates a
    /// client id, the write carries it with sequence 1, and the stores
    /// apply it once however often it is resent (a lost answer, a leader
    /// change). If it fails — a timeout, or the session expiring after an
    /// attempt that may have applied — its outcome is unknown: it applied
    /// once or not at all; running the command again is a new append.
    /// Column family default only.
    Append {
        /// The key (UTF-8).
        key: String,
        /// The value to append (UTF-8).
        value: String,
    },
    /// Print the pairs with keys in [START, END) in key order, across regions.
    Scan {
        /// The first key (inclusive); empty: from the first key.
        #[arg(long, default_value = "", value_name = "K")]
        start: String,
        /// The end key (exclusive); empty: to the last key.
        #[arg(long, default_value = "", value_name = "K")]
        end: String,
        /// Print at most this many pairs.
        #[arg(long, default_value_t = 100, value_name = "N")]
        limit: usize,
    },
    /// List the stores the scheduler knows: id, address, state.
    Stores,
    /// List the regions in key order: range, epoch, peers (PEER@STORE), leader.
    Regions {
        /// Regions overlapping keys from this one on; empty: all.
        #[arg(long, default_value = "", value_name = "K")]
        start: String,
        /// Regions overlapping keys before this one; empty: no bound.
        #[arg(long, default_value = "", value_name = "K")]
        end: String,
        /// List at most this many regions (0: all).
        #[arg(long, default_value_t = 0, value_name = "N")]
        limit: usize,
    },
    /// Show the region holding KEY and its leader.
    Region {
        /// The key (UTF-8).
        key: String,
    },
}

fn parse_timeout(secs: &str) -> Result<Duration, String> {
    let secs: f64 = secs
        .parse()
        .map_err(|e| format!("not a number of seconds: {e}"))?;
    if secs.is_nan() || secs <= 0.0 {
        return Err("must be more than 0 seconds".to_owned());
    }
    Duration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if matches!(cli.command, Command::Append { .. }) && !matches!(cli.cf.as_str(), "" | "default") {
        Cli::command()
            .error(
                clap::error::ErrorKind::ArgumentConflict,
                format!(
                    "append works on column family default only (client sessions cover it), \
                     not --cf {:?}",
                    cli.cf
                ),
            )
            .exit();
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("tinykv-ctl: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&cli)) {
        Ok(output) => {
            // A closed pipe (`| head`) is not an error worth reporting.
            let mut stdout = std::io::stdout().lock();
            let _ = stdout
                .write_all(output.as_bytes())
                .and_then(|()| stdout.flush());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tinykv-ctl: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the command; the text to print.
async fn run(cli: &Cli) -> tinykv::client::Result<String> {
    let opts = ClientOptions {
        timeout: cli.timeout,
        attempt_timeout: cli.timeout.min(ClientOptions::default().attempt_timeout),
        ..ClientOptions::default()
    };
    let client = Client::connect(&cli.scheduler, opts).await?;
    let cf = cli.cf.as_str();
    let json = cli.format == Format::Json;
    let output = match &cli.command {
        Command::Put { key, value } => {
            client.raw_put(cf, key.as_bytes(), value.as_bytes()).await?;
            if json {
                document(json!({ "ok": true, "key": text(key.as_bytes()) }))
            } else {
                "OK\n".to_owned()
            }
        }
        Command::Get { key } => {
            let value = client.raw_get(cf, key.as_bytes()).await?;
            if json {
                document(json!({
                    "key": text(key.as_bytes()),
                    "found": value.is_some(),
                    "value": value.as_deref().map(text),
                }))
            } else {
                match value {
                    Some(value) => format!("{}\n", printable(&value)),
                    None => "(not found)\n".to_owned(),
                }
            }
        }
        Command::Delete { key } => {
            client.raw_delete(cf, key.as_bytes()).await?;
            if json {
                document(json!({ "ok": true, "key": text(key.as_bytes()) }))
            } else {
                "OK\n".to_owned()
            }
        }
        Command::Append { key, value } => {
            let mut clerk = Clerk::new(client).await?;
            clerk.append(key.as_bytes(), value.as_bytes()).await?;
            if json {
                document(json!({
                    "ok": true,
                    "key": text(key.as_bytes()),
                    "client_id": clerk.client_id(),
                }))
            } else {
                "OK\n".to_owned()
            }
        }
        Command::Scan { start, end, limit } => {
            let pairs = client
                .raw_scan(cf, start.as_bytes(), end.as_bytes(), *limit)
                .await?;
            if json {
                document(json!({ "pairs": pairs.iter().map(pair_json).collect::<Vec<_>>() }))
            } else {
                pairs_table(&pairs)
            }
        }
        Command::Stores => {
            let stores = client.stores().await?;
            if json {
                document(json!({ "stores": stores.iter().map(store_json).collect::<Vec<_>>() }))
            } else {
                stores_table(&stores)
            }
        }
        Command::Regions { start, end, limit } => {
            let regions = client
                .regions(start.as_bytes(), end.as_bytes(), *limit)
                .await?;
            if json {
                document(json!({ "regions": regions.iter().map(region_json).collect::<Vec<_>>() }))
            } else {
                regions_table(&regions)
            }
        }
        Command::Region { key } => {
            let region = client.region(key.as_bytes()).await?;
            match (json, region) {
                (true, region) => document(json!({ "region": region.as_ref().map(region_json) })),
                (false, Some(region)) => regions_table(std::slice::from_ref(&region)),
                (false, None) => "(no region)\n".to_owned(),
            }
        }
    };
    Ok(output)
}

/// `bytes` as text: as is when valid UTF-8, escaped otherwise.
fn text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_owned(),
        Err(_) => bytes.escape_ascii().to_string(),
    }
}

/// `bytes` for a terminal: as is when valid, printable UTF-8, escaped
/// otherwise (so one value stays on one line and columns stay aligned).
fn printable(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.chars().any(char::is_control) => s.to_owned(),
        _ => bytes.escape_ascii().to_string(),
    }
}

fn document(value: Value) -> String {
    format!("{value:#}\n")
}

fn pair_json((key, value): &KvPair) -> Value {
    json!({ "key": text(key), "value": text(value) })
}

fn state_name(state: StoreState) -> &'static str {
    match state {
        StoreState::Up => "Up",
        StoreState::Offline => "Offline",
        StoreState::Tombstone => "Tombstone",
    }
}

fn store_json(store: &Store) -> Value {
    json!({ "id": store.id, "address": store.address, "state": state_name(store.state()) })
}

fn peer_json(peer: &Peer) -> Value {
    json!({ "id": peer.id, "store_id": peer.store_id })
}

fn region_json(info: &RegionInfo) -> Value {
    let region = &info.region;
    let epoch = region.region_epoch.unwrap_or_default();
    json!({
        "id": region.id,
        "start_key": text(&region.start_key),
        "end_key": text(&region.end_key),
        "epoch": { "conf_ver": epoch.conf_ver, "version": epoch.version },
        "peers": region.peers.iter().map(peer_json).collect::<Vec<_>>(),
        "leader": info.leader.as_ref().map(peer_json),
        "client_sessions": info.client_sessions,
    })
}

/// `rows` under `header`, each column as wide as its widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

fn pairs_table(pairs: &[KvPair]) -> String {
    let rows: Vec<Vec<String>> = pairs
        .iter()
        .map(|(k, v)| vec![printable(k), printable(v)])
        .collect();
    let mut out = table(&["KEY", "VALUE"], &rows);
    out.push_str(&format!(
        "({} pair{})\n",
        pairs.len(),
        if pairs.len() == 1 { "" } else { "s" }
    ));
    out
}

fn stores_table(stores: &[Store]) -> String {
    let rows: Vec<Vec<String>> = stores
        .iter()
        .map(|s| {
            vec![
                s.id.to_string(),
                s.address.clone(),
                state_name(s.state()).to_owned(),
            ]
        })
        .collect();
    table(&["ID", "ADDRESS", "STATE"], &rows)
}

fn show_peer(peer: &Peer) -> String {
    format!("{}@{}", peer.id, peer.store_id)
}

fn regions_table(regions: &[RegionInfo]) -> String {
    let rows: Vec<Vec<String>> = regions
        .iter()
        .map(|info| {
            let region = &info.region;
            let epoch = region.region_epoch.unwrap_or_default();
            let bound = |key: &[u8], empty: &str| {
                if key.is_empty() {
                    empty.to_owned()
                } else {
                    printable(key)
                }
            };
            vec![
                region.id.to_string(),
                bound(&region.start_key, "(min)"),
                bound(&region.end_key, "(max)"),
                epoch.conf_ver.to_string(),
                epoch.version.to_string(),
                region
                    .peers
                    .iter()
                    .map(show_peer)
                    .collect::<Vec<_>>()
                    .join(","),
                info.leader
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), show_peer),
                info.client_sessions
                    .map_or_else(|| "-".to_owned(), |n| n.to_string()),
            ]
        })
        .collect();
    table(
        &[
            "ID", "START", "END", "CONF_VER", "VERSION", "PEERS", "LEADER", "SESSIONS",
        ],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_table_aligns_columns() {
        let out = table(
            &["A", "LONG HEADER"],
            &[
                vec!["wide cell".to_owned(), "x".to_owned()],
                vec!["y".to_owned(), "z".to_owned()],
            ],
        );
        assert_eq!(out, "A          LONG HEADER\nwide cell  x\ny          z\n");
    }

    #[test]
    fn test_bytes_print_as_utf8_or_escaped() {
        assert_eq!(printable("héllo".as_bytes()), "héllo");
        assert_eq!(printable(b"a\xffb"), "a\\xffb");
        assert_eq!(printable(b"line\nbreak"), "line\\nbreak");
        assert_eq!(
            text(b"line\nbreak"),
            "line\nbreak",
            "JSON escapes it itself"
        );
        assert_eq!(text(b"\xff"), "\\xff");
    }

    #[test]
    fn test_timeout_must_be_positive() {
        assert_eq!(parse_timeout("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("-1").is_err());
        assert!(parse_timeout("soon").is_err());
    }
}
