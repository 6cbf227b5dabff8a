//! The `herald` binary as a child process, for tests that must see what the
//! server costs from outside: its resident memory and open descriptors read
//! from `/proc/<pid>`, its log lines, its exit code.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStderr, Command};

use crate::helpers::{within, TestApp};

/// The built `herald` binary, started from the source tree with no
/// inherited herald settings.
pub fn herald() -> Command {
    prepared(Command::new(env!("CARGO_BIN_EXE_herald")))
}

/// [`herald`] started through `prlimit --nofile=soft:hard`, so that it
/// begins with those open-file limits.
pub fn herald_with_file_limit(soft: u64, hard: u64) -> Command {
    let mut cmd = Command::new("prlimit");
    cmd.arg(format!("--nofile={soft}:{hard}"))
        .arg(env!("CARGO_BIN_EXE_herald"));
    prepared(cmd)
}

fn prepared(mut cmd: Command) -> Command {
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("RUST_LOG")
        .env_remove("HERALD_CONFIG")
        .env_remove("HERALD_HOST")
        .env_remove("HERALD_PORT")
        .kill_on_drop(true);
    cmd
}

/// Reads log lines until one contains `needle`; fails the test after
/// [`crate::helpers::WAIT`].
pub async fn line_containing(lines: &mut Lines<BufReader<ChildStderr>>, needle: &str) -> String {
    within(&format!("a log line containing {needle:?}"), async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("herald still running");
            if line.contains(needle) {
                return line;
            }
        }
    })
    .await
}

/// A running `herald` process with its config file and its log.
pub struct HeraldProcess {
    /// Holds the config file for as long as the process runs.
    pub _dir: tempfile::TempDir,
    pub child: Child,
    pub lines: Lines<BufReader<ChildStderr>>,
    pub port: u16,
    /// The "listening on" log line.
    pub listening: String,
    /// Every log line up to and including the "listening on" one.
    pub startup: Vec<String>,
}

// Each accessor is for the tests that measure the process from outside.
#[allow(dead_code)]
impl HeraldProcess {
    /// Starts the binary with `config` (TOML text) as its file and `env` set,
    /// and reads the port it logs.
    pub async fn start(config: &str, env: &[(&str, &str)]) -> Self {
        Self::start_from(herald(), config, env).await
    }

    /// [`HeraldProcess::start`] with a prepared command (e.g. a lowered
    /// open-file limit through `prlimit`).
    pub async fn start_from(mut cmd: Command, config: &str, env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.toml");
        std::fs::write(&path, config).unwrap();
        cmd.arg("--config").arg(&path).stderr(Stdio::piped());
        for (name, value) in env {
            cmd.env(name, value);
        }
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut startup = Vec::new();
        let listening = within("the \"listening on\" log line", async {
            loop {
                let line = lines
                    .next_line()
                    .await
                    .unwrap()
                    .unwrap_or_else(|| panic!("herald exited during startup: {startup:#?}"));
                startup.push(line.clone());
                if line.contains("listening on http://") {
                    return line;
                }
            }
        })
        .await;
        let port = port_of(&listening);
        Self {
            _dir: dir,
            child,
            lines,
            port,
            listening,
            startup,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("herald running")
    }

    /// An HTTP client for this process, with the helpers of [`TestApp`].
    pub fn app(&self) -> TestApp {
        TestApp::at(self.port)
    }

    /// Resident memory in KiB (`VmRSS` of `/proc/<pid>/status`).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status")
    }

    /// Open file descriptors (entries of `/proc/<pid>/fd`).
    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .unwrap()
            .count()
    }

    /// [`HeraldProcess::start`] through `prlimit --nofile=soft:hard`.
    pub async fn start_with_file_limit(soft: u64, hard: u64, config: &str) -> Self {
        Self::start_from(herald_with_file_limit(soft, hard), config, &[]).await
    }

    /// `(soft, hard)` "Max open files", from `/proc/<pid>/limits`.
    pub fn open_file_limits(&self) -> (u64, u64) {
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", self.pid())).unwrap();
        let line = limits
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .expect("a Max open files line");
        let numbers: Vec<u64> = line
            .split_whitespace()
            .filter_map(|word| word.parse().ok())
            .collect();
        (numbers[0], numbers[1])
    }

    /// Reads log lines until one contains `needle`.
    pub async fn log_line(&mut self, needle: &str) -> String {
        line_containing(&mut self.lines, needle).await
    }
}

/// Sends SIGTERM to process `pid` (with `kill`) and checks it was sent.
pub async fn sigterm(pid: u32) {
    let sent = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .await
        .expect("kill runs");
    assert!(sent.success());
}

/// The port a "listening on http://HOST:PORT" log line names, in text or
/// in a JSON line.
pub fn port_of(listening: &str) -> u16 {
    listening
        .split_once("listening on http://")
        .and_then(|(_, rest)| rest.split(|c: char| c.is_whitespace() || c == '"').next())
        .and_then(|address| address.rsplit(':').next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {listening:?}"))
}
