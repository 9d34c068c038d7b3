//! The `tinykv-ctl` binary as a process against a scheduler and a store
//! node served in the test process: put, get, delete, append, scan,
//! stores, regions and region, in table and JSON form; its `--help`;
//! errors on stderr with a non-zero exit.

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration;

use scheduler_stub::{MemoryScheduler, SchedulerService};
use serde_json::Value;
use slog::{Logger, o};
use tempfile::TempDir;
use tinykv::node::{Node, NodeConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;

const BIN: &str = env!("CARGO_BIN_EXE_tinykv-ctl");
const DEADLINE: Duration = Duration::from_secs(30);

fn logger() -> Logger {
    Logger::root(slog::Discard, o!())
}

/// A scheduler and one store node on loopback; dropping it stops the
/// scheduler (the node is stopped by the test).
struct TestCluster {
    scheduler: SocketAddr,
    node: Node,
    _stop: oneshot::Sender<()>,
    _dirs: (TempDir, TempDir),
}

async fn start_cluster() -> TestCluster {
    let sched_dir = TempDir::new().expect("temp dir");
    let scheduler =
        Arc::new(MemoryScheduler::open(sched_dir.path(), &logger()).expect("open scheduler"));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("bound address");
    let service = SchedulerService::new(scheduler, format!("http://{addr}"), &logger());
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(scheduler_stub::serve(listener, service, async {
        let _ = stopped.await;
    }));
    let data = TempDir::new().expect("temp dir");
    let mut cfg = NodeConfig::new(
        addr.to_string(),
        "127.0.0.1:0".to_owned(),
        data.path().to_path_buf(),
    );
    cfg.raftstore = raftstore::Config::for_tests();
    cfg.connect_deadline = Some(DEADLINE);
    let node = Node::start(cfg, &logger()).await.expect("node starts");
    TestCluster {
        scheduler: addr,
        node,
        _stop: stop,
        _dirs: (sched_dir, data),
    }
}

/// Runs `tinykv-ctl --scheduler ADDR ARGS...` off the async workers (the
/// node runs on them).
async fn ctl(scheduler: SocketAddr, args: &[&str]) -> Output {
    let mut command = Command::new(BIN);
    command
        .arg("--scheduler")
        .arg(scheduler.to_string())
        .args(["--timeout", "30"])
        .args(args);
    tokio::task::spawn_blocking(move || command.output())
        .await
        .expect("join")
        .expect("run tinykv-ctl")
}

/// Runs `args`, asserting success; its stdout.
async fn must_ctl(scheduler: SocketAddr, args: &[&str]) -> String {
    let output = ctl(scheduler, args).await;
    assert!(
        output.status.success(),
        "tinykv-ctl {args:?}: {:?}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8 output")
}

/// Runs `args` with `--format json`, asserting success; the document.
async fn must_ctl_json(scheduler: SocketAddr, args: &[&str]) -> Value {
    let mut with_format = vec!["--format", "json"];
    with_format.extend_from_slice(args);
    let out = must_ctl(scheduler, &with_format).await;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not one JSON document ({e}): {out}"))
}

#[test]
fn test_help_explains_every_command() {
    let output = Command::new(BIN)
        .arg("--help")
        .output()
        .expect("run tinykv-ctl --help");
    assert!(output.status.success(), "{output:?}");
    let help = String::from_utf8(output.stdout).expect("utf-8 help");
    for word in [
        "put",
        "get",
        "delete",
        "append",
        "scan",
        "stores",
        "regions",
        "region",
        "--scheduler",
        "--format",
        "--timeout",
        "--cf",
    ] {
        assert!(
            help.contains(word),
            "--help does not mention {word}:\n{help}"
        );
    }
    assert!(help.contains("Exit status"), "{help}");
    let output = Command::new(BIN)
        .args(["get", "--help"])
        .output()
        .expect("run tinykv-ctl get --help");
    let help = String::from_utf8(output.stdout).expect("utf-8 help");
    assert!(help.contains("(not found)"), "{help}");
    let output = Command::new(BIN)
        .args(["append", "--help"])
        .output()
        .expect("run tinykv-ctl append --help");
    let help = String::from_utf8(output.stdout).expect("utf-8 help");
    for words in [
        "exactly once",
        "client session",
        "outcome is unknown",
        "KEY",
        "VALUE",
    ] {
        assert!(
            help.contains(words),
            "append --help lacks {words:?}:\n{help}"
        );
    }
}

#[test]
fn test_bad_usage_exits_2() {
    let output = Command::new(BIN)
        .args(["--format", "yaml", "stores"])
        .output()
        .expect("run tinykv-ctl");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(String::from_utf8_lossy(&output.stderr).contains("--format"));
    // Sessions cover the default column family only.
    let output = Command::new(BIN)
        .args(["--cf", "lock", "append", "k", "v"])
        .output()
        .expect("run tinykv-ctl");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("default only"), "{stderr}");
}

#[test]
fn test_unreachable_scheduler_is_an_error_on_stderr() {
    // A port nothing listens on.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let output = Command::new(BIN)
        .args([
            "--scheduler",
            &addr.to_string(),
            "--timeout",
            "0.5",
            "stores",
        ])
        .output()
        .expect("run tinykv-ctl");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("timed out"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_commands_against_a_cluster_in_table_and_json() {
    let cluster = start_cluster().await;
    let sched = cluster.scheduler;

    assert_eq!(must_ctl(sched, &["put", "apple", "red"]).await, "OK\n");
    assert_eq!(must_ctl(sched, &["put", "banana", "yellow"]).await, "OK\n");
    assert_eq!(
        must_ctl(sched, &["put", "cherry", "dark red"]).await,
        "OK\n"
    );
    assert_eq!(
        must_ctl(sched, &["--cf", "lock", "put", "apple", "in lock"]).await,
        "OK\n"
    );

    assert_eq!(must_ctl(sched, &["get", "apple"]).await, "red\n");
    assert_eq!(
        must_ctl(sched, &["get", "apple", "--cf", "lock"]).await,
        "in lock\n"
    );
    assert_eq!(must_ctl(sched, &["get", "durian"]).await, "(not found)\n");
    let got = must_ctl_json(sched, &["get", "banana"]).await;
    assert_eq!(got["found"], true);
    assert_eq!(got["value"], "yellow");
    let missing = must_ctl_json(sched, &["get", "durian"]).await;
    assert_eq!(missing["found"], false);
    assert!(missing["value"].is_null());

    let scan = must_ctl(sched, &["scan", "--start", "b"]).await;
    assert_eq!(
        scan,
        "KEY     VALUE\nbanana  yellow\ncherry  dark red\n(2 pairs)\n"
    );
    let scan = must_ctl_json(sched, &["scan", "--end", "c", "--limit", "5"]).await;
    let pairs = scan["pairs"].as_array().expect("pairs");
    assert_eq!(pairs.len(), 2);
    assert_eq!(pairs[0]["key"], "apple");
    assert_eq!(pairs[1]["value"], "yellow");

    assert_eq!(must_ctl(sched, &["delete", "banana"]).await, "OK\n");
    assert_eq!(must_ctl(sched, &["get", "banana"]).await, "(not found)\n");

    let store_id = cluster.node.store_id();
    let stores = must_ctl(sched, &["stores"]).await;
    let lines: Vec<&str> = stores.lines().collect();
    assert_eq!(lines.len(), 2, "{stores}");
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("ADDRESS"),
        "{stores}"
    );
    assert!(lines[1].starts_with(&store_id.to_string()), "{stores}");
    assert!(
        lines[1].contains(&cluster.node.advertise_addr().to_string()),
        "{stores}"
    );
    assert!(lines[1].ends_with("Up"), "{stores}");
    let stores = must_ctl_json(sched, &["stores"]).await;
    assert_eq!(stores["stores"][0]["id"], store_id);
    assert_eq!(stores["stores"][0]["state"], "Up");

    let regions = must_ctl(sched, &["regions"]).await;
    let lines: Vec<&str> = regions.lines().collect();
    assert_eq!(lines.len(), 2, "{regions}");
    assert!(
        lines[0].starts_with("ID") && lines[0].contains("LEADER") && lines[0].ends_with("SESSIONS"),
        "{regions}"
    );
    assert!(
        lines[1].contains("(min)") && lines[1].contains("(max)"),
        "{regions}"
    );
    let regions = must_ctl_json(sched, &["regions"]).await;
    let region = &regions["regions"][0];
    assert_eq!(region["start_key"], "");
    assert_eq!(region["leader"]["store_id"], store_id);
    // This scheduler reports session-table sizes; no Clerk has written yet.
    assert_eq!(region["client_sessions"], 0);
    let region_id = region["id"].clone();

    let one = must_ctl_json(sched, &["region", "cherry"]).await;
    assert_eq!(one["region"]["id"], region_id);
    let one = must_ctl(sched, &["region", "cherry"]).await;
    assert!(one.contains(&format!("@{store_id}")), "{one}");

    // Bad input: the store's error on stderr, exit 1.
    let output = ctl(sched, &["--cf", "nope", "get", "apple"]).await;
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("nope"), "{stderr}");

    cluster.node.stop().await;
}

/// `append` through a Clerk: each run a new client session, applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_append_against_a_cluster() {
    let cluster = start_cluster().await;
    let sched = cluster.scheduler;
    assert_eq!(must_ctl(sched, &["append", "log", "a"]).await, "OK\n");
    assert_eq!(must_ctl(sched, &["append", "log", "b"]).await, "OK\n");
    let first = must_ctl_json(sched, &["append", "log", "c"]).await;
    assert_eq!(first["ok"], true);
    let second = must_ctl_json(sched, &["append", "log", "d"]).await;
    assert_ne!(
        first["client_id"], second["client_id"],
        "each run is its own session"
    );
    assert_eq!(must_ctl(sched, &["get", "log"]).await, "abcd\n");
    must_ctl(sched, &["put", "log", "x"]).await;
    must_ctl(sched, &["append", "log", "y"]).await;
    assert_eq!(must_ctl(sched, &["get", "log"]).await, "xy\n");
    cluster.node.stop().await;
}
