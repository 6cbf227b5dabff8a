//! A private `redis-server` per test, on a free port, for the tests of the
//! redis broker. Without the binary those tests say so and skip, except in
//! CI (`CI=true`), where they fail.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::within;

pub struct Redis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
}

impl Redis {
    /// Starts a private Redis, or `None` (after saying so) when the binary
    /// is missing outside CI.
    pub async fn start() -> Option<Self> {
        if Command::new("redis-server")
            .arg("--version")
            .output()
            .is_err()
        {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("redis-server is required in CI (apt-get install redis-server)");
            }
            eprintln!("SKIPPED: redis-server is not installed; the cluster tests did not run");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let mut redis = Self {
            child: None,
            port,
            dir: tempfile::tempdir().expect("temp dir"),
        };
        redis.restart().await;
        Some(redis)
    }

    pub async fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        within("redis to answer PING", async {
            loop {
                if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await {
                    let mut reply = [0u8; 7];
                    if s.write_all(b"PING\r\n").await.is_ok()
                        && s.read_exact(&mut reply).await.is_ok()
                        && &reply == b"+PONG\r\n"
                    {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Empties Redis while it keeps running, as an eviction or an operator
    /// would.
    pub async fn flush_all(&self) {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("redis answers");
        let mut reply = [0u8; 5];
        s.write_all(b"FLUSHALL\r\n").await.expect("FLUSHALL sent");
        s.read_exact(&mut reply).await.expect("FLUSHALL answered");
        assert_eq!(&reply, b"+OK\r\n");
    }

    /// A counter of `INFO stats`, such as `total_net_output_bytes` (every
    /// byte Redis has sent to its clients).
    pub async fn stat(&self, name: &str) -> u64 {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("redis answers");
        s.write_all(b"INFO stats\r\n").await.expect("INFO sent");
        let mut reply = Vec::new();
        within("the INFO reply", async {
            loop {
                let mut chunk = [0u8; 4096];
                let n = s.read(&mut chunk).await.expect("INFO answered");
                assert!(n > 0, "Redis closed the connection");
                reply.extend_from_slice(&chunk[..n]);
                // `$<len>\r\n<text>\r\n`: complete once the text is in.
                let text = String::from_utf8_lossy(&reply);
                if let Some((len, rest)) = text.strip_prefix('$').and_then(|t| t.split_once("\r\n"))
                {
                    if rest.len() >= len.parse::<usize>().expect("bulk length") {
                        return;
                    }
                }
            }
        })
        .await;
        String::from_utf8_lossy(&reply)
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}:")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} in INFO stats"))
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}
