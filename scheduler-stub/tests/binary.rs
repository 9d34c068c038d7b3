//! The `tinykv-scheduler` binary as a process: `--help`, serving on a free
//! loopback port, graceful exit on SIGTERM, `kill -9` while allocating and
//! restart, and a refused start on a damaged state file.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use kvproto::schedulerpb::scheduler_client::SchedulerClient as GrpcClient;
use kvproto::schedulerpb::{AllocIdRequest, GetMembersRequest, RequestHeader};

const BIN: &str = env!("CARGO_BIN_EXE_tinykv-scheduler");
/// How long any single wait in these tests may take before it fails.
const DEADLINE: Duration = Duration::from_secs(30);

/// A running `tinykv-scheduler` and its log lines (JSON, from stderr).
struct Process {
    child: Child,
    lines: mpsc::Receiver<String>,
    /// The address it listens on, from its "serving" log line.
    addr: String,
}

fn start(data_dir: &Path) -> Process {
    let mut child = Command::new(BIN)
        .args([
            "--client-urls",
            "http://127.0.0.1:0",
            "--log-format",
            "json",
            "--data-dir",
        ])
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start tinykv-scheduler");
    // Drain stderr on a thread so the child never blocks on a full pipe.
    let stderr = child.stderr.take().expect("stderr piped");
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + DEADLINE;
    let addr = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|e| panic!("no serving line from tinykv-scheduler: {e}"));
        if line.contains("tinykv-scheduler serving") {
            let (_, rest) = line
                .split_once("\"listen\":\"")
                .expect("listen key in {line}");
            break rest.split('"').next().expect("quoted address").to_owned();
        }
    };
    Process { child, lines, addr }
}

impl Process {
    /// Waits for the process to exit, failing after the deadline; returns
    /// its status and the log lines it wrote meanwhile.
    fn wait(&mut self) -> (ExitStatus, Vec<String>) {
        let deadline = Instant::now() + DEADLINE;
        let mut lines = Vec::new();
        loop {
            if let Some(status) = self.child.try_wait().expect("poll child") {
                lines.extend(self.lines.try_iter());
                return (status, lines);
            }
            assert!(
                Instant::now() < deadline,
                "tinykv-scheduler did not exit in time"
            );
            // Lines keep arriving while it shuts down; waiting on them paces the poll.
            if let Ok(line) = self.lines.recv_timeout(Duration::from_millis(50)) {
                lines.push(line);
            }
        }
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([name, &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill {name} failed");
    }

    /// Its cluster id, and `n` ids allocated over gRPC.
    async fn alloc_ids(&self, n: usize) -> (u64, Vec<u64>) {
        let mut client = tokio::time::timeout(
            DEADLINE,
            GrpcClient::connect(format!("http://{}", self.addr)),
        )
        .await
        .expect("connect in time")
        .expect("connect");
        let members = client
            .get_members(GetMembersRequest::default())
            .await
            .unwrap()
            .into_inner();
        let cluster_id = members.header.unwrap().cluster_id;
        assert_eq!(
            members.leader.unwrap().client_urls,
            vec![format!("http://{}", self.addr)],
            "advertises the bound address"
        );
        let mut ids = Vec::new();
        for _ in 0..n {
            let response = client
                .alloc_id(AllocIdRequest {
                    header: Some(RequestHeader { cluster_id }),
                })
                .await
                .unwrap()
                .into_inner();
            assert!(response.header.unwrap().error.is_none());
            ids.push(response.id);
        }
        (cluster_id, ids)
    }
}

#[test]
fn test_help_explains_every_option() {
    let output = Command::new(BIN).arg("--help").output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    for flag in [
        "--client-urls",
        "--advertise-client-urls",
        "--data-dir",
        "--config",
        "--log-level",
        "--log-format",
        "--max-store-down-time",
        "--balance-interval",
        "--disable-schedule",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

#[test]
fn test_bad_flag_value_names_the_flag() {
    let output = Command::new(BIN)
        .args(["--log-level", "loud"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("--log-level") && stderr.contains("loud"),
        "{stderr}"
    );
}

#[test]
fn test_bad_schedule_key_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("scheduler.toml");
    std::fs::write(&config, "[schedule]\nmax-store-down-time = \"soon\"\n").unwrap();
    let output = Command::new(BIN)
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("schedule.max-store-down-time") && stderr.contains("soon"),
        "{stderr}"
    );
}

// Multi-threaded, so the client's connection keeps being served (and closes
// when the server says goodbye) while the test blocks waiting for the exit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_serves_then_exits_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut process = start(dir.path());
    let (_, ids) = process.alloc_ids(3).await;
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    process.signal("-TERM");
    let (status, lines) = process.wait();
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        lines.iter().any(|l| l.contains("SIGTERM received")),
        "{lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("grace period")),
        "shutdown was not graceful: {lines:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_kill_9_while_allocating_loses_no_id() {
    // A client allocates ids as fast as it can while the scheduler is killed
    // with SIGKILL, three times over; with reservations of 1000 ids, each run
    // of 1500 answers crosses at least one durable reservation. Every id ever
    // answered must be distinct, and each restart must answer above them all.
    let dir = tempfile::tempdir().unwrap();
    let mut answered: Vec<u64> = Vec::new();
    let mut cluster = None;
    for round in 0..3 {
        let mut process = start(dir.path());
        let (cluster_id, first) = process.alloc_ids(1).await;
        assert_eq!(
            *cluster.get_or_insert(cluster_id),
            cluster_id,
            "same cluster after restart"
        );
        let max_before = answered.iter().max().copied().unwrap_or(0);
        assert!(
            first[0] > max_before,
            "round {round}: {} after {max_before}",
            first[0]
        );
        answered.extend(first);

        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let addr = process.addr.clone();
        let allocating = tokio::spawn(async move {
            let mut client = GrpcClient::connect(format!("http://{addr}"))
                .await
                .expect("connect");
            let header = Some(RequestHeader { cluster_id });
            // Ends when the killed scheduler's connection fails.
            while let Ok(response) = client.alloc_id(AllocIdRequest { header }).await {
                if tx.send(response.into_inner().id).is_err() {
                    break;
                }
            }
        });
        let target = answered.len() + 1500;
        while answered.len() < target {
            let id = tokio::time::timeout(DEADLINE, rx.recv())
                .await
                .expect("ids answered in time")
                .expect("allocating task alive");
            answered.push(id);
        }
        process.child.kill().expect("kill -9");
        process.wait();
        allocating.await.expect("allocating task");
        answered.extend(std::iter::from_fn(|| rx.try_recv().ok()));
    }
    let distinct = answered.iter().collect::<std::collections::HashSet<_>>();
    assert_eq!(distinct.len(), answered.len(), "an id was answered twice");
}

#[test]
fn test_damaged_state_file_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("scheduler.state"), b"TKVSCHED\x01").unwrap();
    let output = Command::new(BIN)
        .args(["--client-urls", "http://127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("scheduler.state") && stderr.contains("truncated"),
        "{stderr}"
    );
}
