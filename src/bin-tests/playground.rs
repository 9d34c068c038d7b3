//! `tinykv-playground` as a user runs it: it starts a 3-store cluster,
//! says when it serves, stops every process on Ctrl-C (SIGINT) and exits
//! 0; run again on the same folder it is the same cluster with its data.
//!
//! It runs the `tinykv-scheduler` and `tinykv-server` beside it: `cargo
//! test --workspace` builds them; run alone, `cargo build --workspace
//! --bins` first so none is stale.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tempfile::TempDir;
use tinykv::client::{Client, ClientOptions};
use tinykv::playground::Layout;

const BIN: &str = env!("CARGO_BIN_EXE_tinykv-playground");
const SERVE_TIMEOUT: Duration = Duration::from_secs(120);

/// Kills the playground if the test fails while it runs.
struct Playground {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl Drop for Playground {
    fn drop(&mut self) {
        // SIGINT first, so it stops its children; they also get SIGTERM
        // when it dies.
        let _ = signal(&self.child, libc::SIGINT);
        let _ = self.child.wait();
    }
}

fn signal(child: &Child, sig: libc::c_int) -> std::io::Result<()> {
    let pid = libc::pid_t::try_from(child.id()).map_err(std::io::Error::other)?;
    // SAFETY: plain integers; the pid is our unreaped child.
    if unsafe { libc::kill(pid, sig) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Every process whose command line mentions `dir` (the playground's
/// children name their data dirs under it).
fn processes_under(dir: &std::path::Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .filter(|cmd| cmd.contains(&needle) && !cmd.contains("tinykv-playground"))
        .collect()
}

fn start(dir: &std::path::Path, ports: Option<(u16, u16)>) -> Playground {
    let mut cmd = Command::new(BIN);
    cmd.arg("--dir").arg(dir).args(["--loglevel", "warn"]);
    if let Some((scheduler, store)) = ports {
        cmd.args(["--stores", "3"])
            .args(["--scheduler-port", &scheduler.to_string()])
            .args(["--store-port", &store.to_string()]);
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start tinykv-playground");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    Playground { child, lines }
}

/// Reads the playground's output until it says it serves; returns it.
fn wait_serving(p: &mut Playground) -> String {
    let mut seen = String::new();
    let deadline = std::time::Instant::now() + SERVE_TIMEOUT;
    while std::time::Instant::now() < deadline {
        match p.lines.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.starts_with("Press Ctrl-C") {
                    return seen;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Some(status) = p.child.try_wait().expect("try_wait") {
                    panic!("tinykv-playground exited ({status}) before serving:\n{seen}");
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    panic!("tinykv-playground did not serve in {SERVE_TIMEOUT:?}:\n{seen}");
}

fn stop(mut p: Playground) {
    signal(&p.child, libc::SIGINT).expect("send SIGINT");
    let status = p.child.wait().expect("wait");
    assert!(status.success(), "exit after Ctrl-C: {status}");
}

#[test]
fn test_help_explains_the_flags() {
    let out = Command::new(BIN)
        .arg("--help")
        .output()
        .expect("run --help");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--dir",
        "--stores",
        "--scheduler-port",
        "--store-port",
        "--bin-dir",
    ] {
        assert!(help.contains(flag), "--help lacks {flag}:\n{help}");
    }
}

#[test]
fn test_starts_serves_stops_and_restarts_the_same_cluster() {
    let tmp = TempDir::new().expect("temp dir");
    let dir = tmp.path().join("cluster");
    let layout = Layout::on_free_ports(3).expect("free ports");
    let (scheduler_port, store_port) = (layout.scheduler_port, layout.store_ports[0]);
    let scheduler = format!("127.0.0.1:{scheduler_port}");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");

    let mut p = start(&dir, Some((scheduler_port, store_port)));
    let banner = wait_serving(&mut p);
    assert!(
        banner.contains(&format!("scheduler  {scheduler}")),
        "{banner}"
    );
    assert!(
        banner.contains("tinykv-ctl"),
        "no first command shown:\n{banner}"
    );
    runtime.block_on(async {
        let client = Client::connect(&scheduler, ClientOptions::default())
            .await
            .expect("connect");
        client.raw_put("", b"hello", b"world").await.expect("put");
        let region = client.region(b"").await.expect("region").expect("a region");
        assert_eq!(region.region.peers.len(), 3, "{region:?}");
    });
    assert_eq!(
        processes_under(&dir).len(),
        4,
        "{:?}",
        processes_under(&dir)
    );
    stop(p);
    // Every child process is gone.
    let left = processes_under(&dir);
    assert!(left.is_empty(), "still running after Ctrl-C: {left:?}");

    // Again, with no flags: the folder's layout and data.
    let mut p = start(&dir, None);
    wait_serving(&mut p);
    runtime.block_on(async {
        let client = Client::connect(&scheduler, ClientOptions::default())
            .await
            .expect("connect again");
        assert_eq!(
            client.raw_get("", b"hello").await.expect("get"),
            Some(b"world".to_vec())
        );
    });
    // A second playground on a running folder is refused.
    let out = Command::new(BIN)
        .arg("--dir")
        .arg(&dir)
        .output()
        .expect("run a second playground");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stop(p);
}
