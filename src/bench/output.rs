//! `tinykv-bench --json`: one JSON object per line on stdout, so that a
//! script can compare runs.
//!
//! Shapes (the first field is always `kind`; the fields listed here are
//! always present, more may follow):
//! - per run (one per client count, or per concurrency with `--remote`):
//!   `{"kind":"run","workload":"put"|"get"|"mixed","clients":N,
//!   "ops_per_sec":F,"p50_ms":F,"p99_ms":F,"p999_ms":F,"failed":N,
//!   "mode":"in-process"|"remote","ops":N,"window_secs":F,"mean_ms":F,
//!   "p90_ms":F,"max_ms":F,"first_error":S|null,"value_size":N, …}`;
//!   in-process runs add `"stores":N`, `"retries":N` and
//!   `"log_growth":N` (raft-log entries appended in the window, see
//!   [`super::workload`]); runs over a key space (remote runs, in-process
//!   get and mixed runs) add `"key_space":N`.
//! - the baseline, one line: `{"kind":"baseline",
//!   "sync_writes_per_sec":F,"sync_write_p50_ms":F,"sync_write_p99_ms":F,
//!   "fdatasync_writes_per_sec":F,"fdatasync_p50_ms":F,
//!   "fdatasync_p99_ms":F,"quorum_writers":N,
//!   "quorum_sync_writes_per_sec":F,"quorum_sync_write_p50_ms":F,
//!   "quorum_sync_write_p99_ms":F}`: the `sync_` fields are the synced
//!   RocksDB put, the `fdatasync_` fields the append + `fdatasync` of the
//!   same baseline, both one writer; the `quorum_` fields are rounds of
//!   `quorum_writers` synced puts at once, each done when a majority of
//!   them is (see [`super::baseline`]).
//! - a Clerk run (`--workload clerk`), one line: `{"kind":"clerk",
//!   "appends":N,"ops_per_sec":F,"mean_ms":F,"p50_ms":F,"p99_ms":F,
//!   "max_ms":F,"lab_max_mean_ms":F,"within_lab_bound":B,"stores":N,
//!   "max_raft_state":N|null}` ([`super::clerk`]).
//!
//! Invariant: a line's fields keep the order they were added in (the
//! crate's `serde_json` sorts object keys, so a line is built here, not as a
//! `serde_json::Value`), and every value is a JSON value serde_json wrote.

use std::fmt;
use std::time::Duration;

use serde_json::{Value, json};

use super::baseline::BaselineReport;
use super::clerk::{ClerkReport, LAB_MAX_MEAN};
use super::remote::RemoteReport;
use super::{Latencies, Mix, RunReport};

/// One output line: a JSON object whose fields keep their order.
#[derive(Debug, Clone)]
pub struct JsonLine {
    fields: Vec<(&'static str, Value)>,
}

impl JsonLine {
    /// A line whose first field is `"kind": kind`.
    pub fn new(kind: &str) -> Self {
        JsonLine {
            fields: vec![("kind", json!(kind))],
        }
    }

    /// Appends the field `name` (which must not be there yet).
    pub fn field(mut self, name: &'static str, value: impl Into<Value>) -> Self {
        debug_assert!(
            self.fields.iter().all(|(n, _)| *n != name),
            "field {name} twice"
        );
        self.fields.push((name, value.into()));
        self
    }
}

impl fmt::Display for JsonLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, (name, value)) in self.fields.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            // A string and a `Value` always serialize; `{}` of a `Value`
            // is its compact JSON.
            write!(f, "{}:{value}", Value::from(*name))?;
        }
        f.write_str("}")
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The fields every run line has, in order.
fn run_line(mix: Mix, clients: usize, l: &Latencies, window: Duration, failed: u64) -> JsonLine {
    JsonLine::new("run")
        .field("workload", mix.name())
        .field("clients", clients)
        .field("ops_per_sec", l.len() as f64 / window.as_secs_f64())
        .field("p50_ms", ms(l.percentile(50.0)))
        .field("p99_ms", ms(l.percentile(99.0)))
        .field("p999_ms", ms(l.percentile(99.9)))
        .field("failed", failed)
}

/// The line of an in-process run on `stores` stores.
pub fn in_process_run(r: &RunReport, stores: u64, value_size: usize, key_space: u64) -> JsonLine {
    let l = &r.latencies;
    let line = run_line(r.mix, r.clients, l, r.window, r.failures)
        .field("mode", "in-process")
        .field("ops", l.len())
        .field("window_secs", r.window.as_secs_f64())
        .field("mean_ms", ms(l.mean()))
        .field("p90_ms", ms(l.percentile(90.0)))
        .field("max_ms", ms(l.max()))
        .field("first_error", r.first_failure.clone())
        .field("value_size", value_size)
        .field("stores", stores)
        .field("retries", r.retries.total())
        .field("log_growth", r.log_growth);
    if r.mix.reads() {
        line.field("key_space", key_space)
    } else {
        line
    }
}

/// The line of a run against a running cluster (`clients` = concurrency).
pub fn remote_run(r: &RemoteReport, value_size: usize, key_space: u64) -> JsonLine {
    let l = &r.latencies;
    run_line(r.mix, r.concurrency, l, r.window, r.errors)
        .field("mode", "remote")
        .field("ops", l.len())
        .field("window_secs", r.window.as_secs_f64())
        .field("mean_ms", ms(l.mean()))
        .field("p90_ms", ms(l.percentile(90.0)))
        .field("max_ms", ms(l.max()))
        .field("first_error", r.first_error.clone())
        .field("value_size", value_size)
        .field("key_space", key_space)
}

/// The line of a Clerk run on `stores` stores, with log GC at
/// `max_raft_state` bytes if set.
pub fn clerk_run(r: &ClerkReport, stores: u64, max_raft_state: Option<u64>) -> JsonLine {
    let l = &r.latencies;
    JsonLine::new("clerk")
        .field("appends", r.appends)
        .field("ops_per_sec", r.ops_per_sec())
        .field("mean_ms", ms(l.mean()))
        .field("p50_ms", ms(l.percentile(50.0)))
        .field("p99_ms", ms(l.percentile(99.0)))
        .field("max_ms", ms(l.max()))
        .field("lab_max_mean_ms", ms(LAB_MAX_MEAN))
        .field("within_lab_bound", r.within_lab_bound())
        .field("stores", stores)
        .field("max_raft_state", max_raft_state)
}

/// The baseline line: the synced RocksDB put (`sync_…`), the append +
/// `fdatasync` (`fdatasync_…`), and the rounds of `quorum_writers` synced
/// puts at once (`quorum_…`).
pub fn baseline(
    rocksdb_sync_put: &BaselineReport,
    fdatasync: &BaselineReport,
    quorum: &BaselineReport,
    quorum_writers: usize,
) -> JsonLine {
    let (r, f, q) = (
        &rocksdb_sync_put.latencies,
        &fdatasync.latencies,
        &quorum.latencies,
    );
    JsonLine::new("baseline")
        .field("sync_writes_per_sec", rocksdb_sync_put.ops_per_sec())
        .field("sync_write_p50_ms", ms(r.percentile(50.0)))
        .field("sync_write_p99_ms", ms(r.percentile(99.0)))
        .field("fdatasync_writes_per_sec", fdatasync.ops_per_sec())
        .field("fdatasync_p50_ms", ms(f.percentile(50.0)))
        .field("fdatasync_p99_ms", ms(f.percentile(99.0)))
        .field("quorum_writers", quorum_writers)
        .field("quorum_sync_writes_per_sec", quorum.ops_per_sec())
        .field("quorum_sync_write_p50_ms", ms(q.percentile(50.0)))
        .field("quorum_sync_write_p99_ms", ms(q.percentile(99.0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::Retries;
    use serde_json::Map;

    fn latencies() -> Latencies {
        Latencies::from_unsorted((1..=1000).map(Duration::from_micros).collect())
    }

    /// Parses `line` as one JSON object, checking it is one line whose
    /// first field is `"kind": kind`.
    fn parse(line: &JsonLine, kind: &str) -> Map<String, Value> {
        let text = line.to_string();
        assert!(!text.contains('\n'), "more than one line: {text}");
        assert!(
            text.starts_with(&format!("{{\"kind\":\"{kind}\",")),
            "kind is not first: {text}"
        );
        match serde_json::from_str(&text) {
            Ok(Value::Object(map)) => map,
            other => panic!("not a JSON object: {text} ({other:?})"),
        }
    }

    /// A field's name and the check of its JSON type.
    type Field = (&'static str, fn(&Value) -> bool);

    fn assert_types(map: &Map<String, Value>, fields: &[Field]) {
        for (name, is_type) in fields {
            let value = map
                .get(*name)
                .unwrap_or_else(|| panic!("no field {name} in {map:?}"));
            assert!(is_type(value), "field {name} has the wrong type: {value}");
        }
    }

    /// The fields the issue asks of every run line, with their types.
    const RUN_FIELDS: &[Field] = &[
        ("kind", Value::is_string),
        ("workload", Value::is_string),
        ("clients", Value::is_u64),
        ("ops_per_sec", Value::is_f64),
        ("p50_ms", Value::is_f64),
        ("p99_ms", Value::is_f64),
        ("p999_ms", Value::is_f64),
        ("failed", Value::is_u64),
    ];

    fn report(mix: Mix) -> RunReport {
        RunReport {
            clients: 64,
            mix,
            window: Duration::from_secs(2),
            latencies: latencies(),
            retries: Retries {
                not_leader: 1,
                ..Retries::default()
            },
            failures: 0,
            first_failure: None,
            warmup_ops: 5,
            log_growth: 0,
        }
    }

    #[test]
    fn an_in_process_get_run_is_one_line_of_the_run_shape() {
        let map = parse(&in_process_run(&report(Mix::Get), 3, 100, 1000), "run");
        assert_types(&map, RUN_FIELDS);
        assert_types(
            &map,
            &[
                ("mode", Value::is_string),
                ("ops", Value::is_u64),
                ("retries", Value::is_u64),
                ("log_growth", Value::is_u64),
                ("stores", Value::is_u64),
                ("value_size", Value::is_u64),
                ("key_space", Value::is_u64),
                ("first_error", Value::is_null),
            ],
        );
        assert_eq!(map["workload"], "get");
        assert_eq!(map["clients"], 64);
        assert_eq!(map["ops"], 1000);
        assert_eq!(map["ops_per_sec"].as_f64(), Some(500.0));
        assert_eq!(map["p50_ms"].as_f64(), Some(0.5));
        assert_eq!(map["p999_ms"].as_f64(), Some(0.999));
        assert_eq!(map["retries"], 1);
        assert_eq!(map["log_growth"], 0);
    }

    #[test]
    fn a_put_run_has_no_key_space_and_keeps_its_first_error() {
        let mut r = report(Mix::Put);
        r.failures = 2;
        r.first_failure = Some("no answer \"quoted\"".to_owned());
        let map = parse(&in_process_run(&r, 3, 100, 1000), "run");
        assert_types(&map, RUN_FIELDS);
        assert_eq!(map["workload"], "put");
        assert_eq!(map["failed"], 2);
        assert_eq!(map["first_error"], "no answer \"quoted\"");
        assert!(!map.contains_key("key_space"), "{map:?}");
    }

    #[test]
    fn an_empty_run_still_has_numbers() {
        let mut r = report(Mix::Mixed);
        r.latencies = Latencies::default();
        let map = parse(&in_process_run(&r, 1, 100, 10), "run");
        assert_types(&map, RUN_FIELDS);
        assert_eq!(map["ops_per_sec"].as_f64(), Some(0.0));
    }

    #[test]
    fn a_remote_run_has_the_run_shape() {
        let r = RemoteReport {
            concurrency: 16,
            mix: Mix::Mixed,
            window: Duration::from_secs(1),
            latencies: latencies(),
            errors: 3,
            first_error: Some("timed out".to_owned()),
        };
        let map = parse(&remote_run(&r, 100, 5000), "run");
        assert_types(&map, RUN_FIELDS);
        assert_eq!(map["workload"], "mixed");
        assert_eq!(map["clients"], 16);
        assert_eq!(map["failed"], 3);
        assert_eq!(map["mode"], "remote");
        assert_eq!(map["key_space"], 5000);
    }

    #[test]
    fn a_clerk_run_is_one_line_with_the_lab_bound() {
        let r = ClerkReport {
            appends: 1000,
            elapsed: Duration::from_secs(2),
            latencies: latencies(),
        };
        let map = parse(&clerk_run(&r, 3, Some(1000)), "clerk");
        assert_types(
            &map,
            &[
                ("appends", Value::is_u64),
                ("ops_per_sec", Value::is_f64),
                ("mean_ms", Value::is_f64),
                ("p50_ms", Value::is_f64),
                ("p99_ms", Value::is_f64),
                ("max_ms", Value::is_f64),
                ("lab_max_mean_ms", Value::is_f64),
                ("within_lab_bound", Value::is_boolean),
                ("stores", Value::is_u64),
                ("max_raft_state", Value::is_u64),
            ],
        );
        assert_eq!(map["ops_per_sec"].as_f64(), Some(500.0));
        assert_eq!(map["within_lab_bound"], true);
        assert_eq!(map["lab_max_mean_ms"].as_f64(), Some(33.0));
        let map = parse(&clerk_run(&r, 5, None), "clerk");
        assert!(map["max_raft_state"].is_null());
    }

    #[test]
    fn the_baseline_line_has_the_sync_put_figures() {
        let sync_put = BaselineReport {
            what: "RocksDB put, sync=true",
            elapsed: Duration::from_secs(1),
            latencies: latencies(),
        };
        let fsync = BaselineReport {
            what: "append + fdatasync",
            elapsed: Duration::from_secs(2),
            latencies: latencies(),
        };
        let quorum = BaselineReport {
            what: "RocksDB put, sync, N at once",
            elapsed: Duration::from_secs(4),
            latencies: latencies(),
        };
        let map = parse(&baseline(&sync_put, &fsync, &quorum, 3), "baseline");
        assert_types(
            &map,
            &[
                ("sync_writes_per_sec", Value::is_f64),
                ("sync_write_p50_ms", Value::is_f64),
                ("sync_write_p99_ms", Value::is_f64),
                ("fdatasync_writes_per_sec", Value::is_f64),
                ("fdatasync_p50_ms", Value::is_f64),
                ("quorum_writers", Value::is_u64),
                ("quorum_sync_writes_per_sec", Value::is_f64),
                ("quorum_sync_write_p50_ms", Value::is_f64),
                ("quorum_sync_write_p99_ms", Value::is_f64),
            ],
        );
        assert_eq!(map["quorum_sync_writes_per_sec"].as_f64(), Some(250.0));
        assert_eq!(map["quorum_writers"].as_u64(), Some(3));
        assert_eq!(map["sync_writes_per_sec"].as_f64(), Some(1000.0));
        assert_eq!(map["fdatasync_writes_per_sec"].as_f64(), Some(500.0));
        assert_eq!(map["sync_write_p50_ms"].as_f64(), Some(0.5));
    }
}
