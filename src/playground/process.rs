//! One child process of a local cluster: started with its output appended
//! to a log file, stopped by a signal, never leaked.
//!
//! Invariants:
//! - a [`ChildProcess`] that is dropped while its process runs kills it
//!   (`SIGKILL`) and reaps it, so a failing test or a panicking playground
//!   leaves no store behind holding a port or a RocksDB lock;
//! - every child runs in a process group of its own, so a Ctrl-C in the
//!   terminal reaches only the playground, which then stops the children in
//!   its own order (stores first, the scheduler last);
//! - on Linux a child also gets `SIGTERM` when the thread that started it
//!   ends (`PR_SET_PDEATHSIG`), so even a `kill -9` of the playground stops
//!   its children. The signal follows the *thread*: start children from a
//!   thread that outlives them (the playground's main thread, a test's own
//!   thread), never from a short-lived pool thread.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// How often a stopping child is checked for having exited.
const EXIT_POLL: Duration = Duration::from_millis(20);

/// A running (or exited, not yet dropped) child process.
#[derive(Debug)]
pub struct ChildProcess {
    name: String,
    child: Child,
    log: PathBuf,
    /// The exit status, once reaped.
    exited: Option<ExitStatus>,
}

fn open_log(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    OpenOptions::new().create(true).append(true).open(path)
}

impl ChildProcess {
    /// Starts `program` with `args`, its stdout and stderr appended to
    /// `log`, stdin closed. `name` is how messages refer to it.
    pub fn spawn(
        name: impl Into<String>,
        program: &Path,
        args: &[String],
        log: &Path,
    ) -> io::Result<ChildProcess> {
        let name = name.into();
        let out = open_log(log)?;
        let err = out.try_clone()?;
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        set_parent_death_signal(&mut command);
        let child = command.spawn().map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("start {name} ({}): {e}", program.display()),
            )
        })?;
        Ok(ChildProcess {
            name,
            child,
            log: log.to_path_buf(),
            exited: None,
        })
    }

    /// What messages call this process.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Where its output goes.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Its exit status if it has exited (reaping it), `None` while it runs.
    pub fn try_exit(&mut self) -> io::Result<Option<ExitStatus>> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait()?;
        }
        Ok(self.exited)
    }

    /// Sends `signal` unless the process has been reaped already.
    pub fn signal(&mut self, signal: libc::c_int) -> io::Result<()> {
        if self.try_exit()?.is_some() {
            return Ok(());
        }
        let pid = libc::pid_t::try_from(self.child.id())
            .map_err(|_| io::Error::other("process id out of range"))?;
        // SAFETY: `kill` takes plain integers; the pid is our own unreaped
        // child, so it cannot name a recycled process.
        if unsafe { libc::kill(pid, signal) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// `kill -9`: ends the process at once, whatever it is doing, and
    /// reaps it.
    pub fn kill9(&mut self) -> io::Result<ExitStatus> {
        self.signal(libc::SIGKILL)?;
        self.wait()
    }

    /// Freezes the process (`SIGSTOP`): it holds its ports and files but
    /// answers nothing until [`resume`](Self::resume).
    pub fn pause(&mut self) -> io::Result<()> {
        self.signal(libc::SIGSTOP)
    }

    /// Lets a paused process run again (`SIGCONT`).
    pub fn resume(&mut self) -> io::Result<()> {
        self.signal(libc::SIGCONT)
    }

    /// Asks the process to stop (`SIGTERM`) and waits up to `grace` for it;
    /// after that it is killed. Returns how it ended.
    pub fn terminate(&mut self, grace: Duration) -> io::Result<ExitStatus> {
        self.signal(libc::SIGCONT)?; // a paused process cannot act on SIGTERM
        self.signal(libc::SIGTERM)?;
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = self.try_exit()? {
                return Ok(status);
            }
            std::thread::sleep(EXIT_POLL);
        }
        self.kill9()
    }

    /// Waits until the process exits.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.exited {
            return Ok(status);
        }
        let status = self.child.wait()?;
        self.exited = Some(status);
        Ok(status)
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if matches!(self.try_exit(), Ok(None)) {
            let _ = self.kill9();
        }
    }
}

#[cfg(target_os = "linux")]
fn set_parent_death_signal(command: &mut Command) {
    // SAFETY: between fork and exec only `prctl`, which is async-signal-safe,
    // runs; it allocates nothing and touches no lock.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn set_parent_death_signal(_: &mut Command) {}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper(dir: &Path) -> ChildProcess {
        ChildProcess::spawn(
            "sleeper",
            Path::new("/bin/sh"),
            &["-c".to_owned(), "echo started; exec sleep 600".to_owned()],
            &dir.join("logs/sleeper.log"),
        )
        .expect("start sh")
    }

    #[test]
    fn kill9_ends_and_reaps_the_process() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let mut p = sleeper(dir.path());
        assert!(p.try_exit().expect("try_exit").is_none());
        let status = p.kill9().expect("kill -9");
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(status.signal(), Some(libc::SIGKILL));
        assert_eq!(p.try_exit().expect("try_exit"), Some(status));
        // Signalling a reaped child is a no-op, not an error.
        p.signal(libc::SIGTERM).expect("no-op");
    }

    #[test]
    fn terminate_stops_a_paused_process() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let mut p = sleeper(dir.path());
        p.pause().expect("pause");
        let status = p.terminate(Duration::from_secs(10)).expect("terminate");
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(status.signal(), Some(libc::SIGTERM));
    }

    #[test]
    fn output_is_appended_to_the_log() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        for _ in 0..2 {
            let mut p = ChildProcess::spawn(
                "echo",
                Path::new("/bin/sh"),
                &["-c".to_owned(), "echo line".to_owned()],
                &dir.path().join("logs/echo.log"),
            )
            .expect("start sh");
            assert!(p.wait().expect("wait").success());
        }
        let log = std::fs::read_to_string(dir.path().join("logs/echo.log")).expect("read log");
        assert_eq!(log, "line\nline\n");
    }

    #[test]
    fn dropping_a_running_child_kills_it() {
        let dir = tempfile::TempDir::new().expect("temp dir");
        let p = sleeper(dir.path());
        let pid = libc::pid_t::try_from(p.pid()).expect("pid fits");
        drop(p);
        // Reaped by the drop: the pid no longer names our child.
        // SAFETY: signal 0 only checks for existence.
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        assert!(!alive, "child {pid} still exists after drop");
    }
}
