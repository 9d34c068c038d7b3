//! The `tinykv-server` binary as a process: its `--help`, and a run against
//! a scheduler served in the test process — it registers, serves a write,
//! and exits 0 on SIGTERM.

use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use kvproto::kvrpcpb::{Context, RawGetRequest, RawPutRequest};
use kvproto::tinykvpb::tiny_kv_client::TinyKvClient;
use scheduler_stub::{MemoryScheduler, SchedulerClient, SchedulerService};
use slog::{Logger, o};
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::Instant;

const BIN: &str = env!("CARGO_BIN_EXE_tinykv-server");
const DEADLINE: Duration = Duration::from_secs(30);

#[test]
fn test_help_explains_every_option() {
    let output = Command::new(BIN)
        .arg("--help")
        .output()
        .expect("run tinykv-server --help");
    assert!(output.status.success(), "{output:?}");
    let help = String::from_utf8(output.stdout).expect("utf-8 help");
    for flag in [
        "--scheduler",
        "--addr",
        "--advertise-addr",
        "--path",
        "--loglevel",
        "--log-format",
        "--config",
    ] {
        assert!(
            help.contains(flag),
            "--help does not mention {flag}:\n{help}"
        );
    }
}

#[test]
fn test_bad_flag_value_exits_2_naming_the_flag() {
    let output = Command::new(BIN)
        .args(["--loglevel", "loud"])
        .output()
        .expect("run tinykv-server");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--loglevel"), "{stderr}");
}

/// Kills the child if the test fails before it exits.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_for_exit(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        assert!(Instant::now() < deadline, "tinykv-server did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_serves_and_exits_0_on_sigterm() {
    let logger = Logger::root(slog::Discard, o!());
    let sched_dir = TempDir::new().expect("temp dir");
    let scheduler =
        Arc::new(MemoryScheduler::open(sched_dir.path(), &logger).expect("open scheduler"));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let sched_addr = listener.local_addr().expect("bound address");
    let service = SchedulerService::new(
        Arc::clone(&scheduler),
        format!("http://{sched_addr}"),
        &logger,
    );
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(scheduler_stub::serve(listener, service, async {
        let _ = stopped.await;
    }));

    let data = TempDir::new().expect("temp dir");
    let config = data.path().join("server.toml");
    std::fs::write(&config, "[raftstore]\nraft-base-tick-interval-ms = 10\n")
        .expect("write config");
    let mut server = Process(
        Command::new(BIN)
            .arg("--scheduler")
            .arg(sched_addr.to_string())
            .args(["--addr", "127.0.0.1:0", "--loglevel", "warn"])
            .arg("--path")
            .arg(data.path().join("store"))
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tinykv-server"),
    );

    // Serving once the scheduler has its address and the region's leader.
    let deadline = Instant::now() + DEADLINE;
    let (store, region, leader) = loop {
        let store = scheduler
            .get_all_stores()
            .ok()
            .and_then(|stores| stores.into_iter().find(|s| !s.address.is_empty()));
        let region = scheduler.get_region(b"").ok();
        if let (Some(store), Some((region, Some(leader)))) = (store, region)
            && region.id != 0
        {
            break (store, region, leader);
        }
        assert!(
            server.0.try_wait().expect("try_wait").is_none(),
            "tinykv-server exited during start-up"
        );
        assert!(
            Instant::now() < deadline,
            "tinykv-server did not start serving"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(leader.store_id, store.id);
    let ctx = Context {
        region_id: region.id,
        region_epoch: region.region_epoch,
        peer: Some(leader),
        ..Default::default()
    };
    let mut kv = TinyKvClient::connect(format!("http://{}", store.address))
        .await
        .expect("connect to tinykv-server");
    let put = kv
        .raw_put(RawPutRequest {
            context: Some(ctx),
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            cf: String::new(),
        })
        .await
        .expect("RawPut answers")
        .into_inner();
    assert!(
        put.region_error.is_none() && put.error.is_empty(),
        "{put:?}"
    );
    let get = kv
        .raw_get(RawGetRequest {
            context: Some(ctx),
            key: b"k".to_vec(),
            cf: String::new(),
        })
        .await
        .expect("RawGet answers")
        .into_inner();
    assert_eq!(get.value, b"v");

    let pid = server.0.id().to_string();
    let kill = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("send SIGTERM");
    assert!(kill.success());
    let status = wait_for_exit(&mut server.0).await;
    assert_eq!(status.code(), Some(0), "exit after SIGTERM: {status:?}");
}
