//! A private `redis-server` per test, on a free port, for the tests of the
//! redis broker; plain, or TLS only with a password ([`Redis::start_tls`]).
//! Without the binary those tests say so and skip, except in CI
//! (`CI=true`), where they fail.

use std::collections::{HashMap, HashSet};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use herald::config::BrokerKind;
use herald::Config;

use super::latency::LatencyProxy;
use super::{or_skip, spawn_app_with, within, TestApp};

pub struct Redis {
    child: Option<Child>,
    port: u16,
    dir: tempfile::TempDir,
    tls: Option<RedisTls>,
}

/// What a TLS Redis is started with. It requires a client certificate
/// signed by `ca` (Redis's default, `tls-auth-clients yes`) and `password`.
#[derive(Clone)]
pub struct RedisTls {
    /// The CA that signed the server's and clients' certificates (PEM).
    pub ca: PathBuf,
    /// The server's certificate and key (PEM).
    pub cert: PathBuf,
    pub key: PathBuf,
    /// A client certificate and key the CA signed, for the readiness check.
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    pub password: String,
}

impl Redis {
    /// Starts a private Redis, or `None` (after saying so) when the binary
    /// is missing outside CI.
    pub async fn start() -> Option<Self> {
        Self::start_with(None).await
    }

    /// Starts a private Redis that speaks TLS only (`--port 0`), or `None`
    /// as [`Redis::start`].
    pub async fn start_tls(tls: RedisTls) -> Option<Self> {
        Self::start_with(Some(tls)).await
    }

    async fn start_with(tls: Option<RedisTls>) -> Option<Self> {
        or_skip(
            Command::new("redis-server").arg("--version").output().ok(),
            "redis-server is required in CI (apt-get install redis-server)",
            "SKIPPED: redis-server is not installed; the cluster tests did not run",
        )?;
        let port = TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let mut redis = Self {
            child: None,
            port,
            dir: tempfile::tempdir().expect("temp dir"),
            tls,
        };
        redis.restart().await;
        Some(redis)
    }

    pub async fn restart(&mut self) {
        let mut command = Command::new("redis-server");
        match &self.tls {
            None => command.args(["--port", &self.port.to_string()]),
            Some(tls) => command
                .args(["--port", "0", "--tls-port", &self.port.to_string()])
                .arg("--tls-cert-file")
                .arg(&tls.cert)
                .arg("--tls-key-file")
                .arg(&tls.key)
                .arg("--tls-ca-cert-file")
                .arg(&tls.ca)
                .args(["--requirepass", &tls.password]),
        };
        let child = command
            .args(["--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server starts");
        self.child = Some(child);
        if self.tls.is_some() {
            within("redis to answer PING over TLS", async {
                while self.tls_ping().await.is_err() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            })
            .await;
            return;
        }
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

    /// The server's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|child| child.id())
    }

    /// Stops the server with `SIGSTOP`, as a hung or overloaded Redis or a
    /// stalled network path: its connections stay open and nothing
    /// answers. It goes on (`SIGCONT`) when the guard is dropped, whatever
    /// the test did meanwhile (and [`Redis`]'s own drop kills it anyway).
    pub fn stop(&self) -> Stopped {
        let pid = self.pid().expect("redis-server runs");
        assert!(signal(pid, "-STOP"), "kill -STOP {pid} failed");
        Stopped { pid }
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Writes Redis's data to disk (`SAVE`), so that the next
    /// [`Redis::restart`] loads it again: an outage that loses nothing.
    /// (Redis runs without persistence otherwise, and comes back empty.)
    pub async fn save(&self) {
        let mut con = self.connection().await;
        // A save may be refused while another is under way: tried again.
        let mut last = None;
        for _ in 0..20 {
            match redis::cmd("SAVE").query_async::<String>(&mut con).await {
                Ok(answer) => return assert_eq!(answer, "OK"),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("SAVE failed: {last:?}");
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

    /// PING over TLS, with the client certificate and the password.
    async fn tls_ping(&self) -> redis::RedisResult<()> {
        let Some(tls) = &self.tls else {
            return Ok(());
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        let read = |path: &PathBuf| std::fs::read(path).expect("a test certificate file");
        let client = redis::Client::build_with_tls(
            self.url(),
            redis::TlsCertificates {
                client_tls: Some(redis::ClientTlsConfig {
                    client_cert: read(&tls.client_cert),
                    client_key: read(&tls.client_key),
                }),
                root_cert: Some(read(&tls.ca)),
            },
        )?;
        let mut con = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut con).await?;
        Ok(())
    }

    /// A client connection (plain Redis only), for a test's own queries.
    pub async fn connection(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.url())
            .expect("the test Redis URL")
            .get_multiplexed_async_connection()
            .await
            .expect("redis answers")
    }

    /// A herald node on this Redis, with `configure` applied to its config
    /// after the broker settings; returns once its subscription is up.
    pub async fn node(&self, configure: impl FnOnce(&mut Config)) -> TestApp {
        self.node_at(self.url(), configure).await
    }

    /// A node reaching this Redis through `proxy`, as [`Redis::node`].
    pub async fn node_through(
        &self,
        proxy: &LatencyProxy,
        configure: impl FnOnce(&mut Config),
    ) -> TestApp {
        self.node_at(proxy.url(), configure).await
    }

    /// A proxy to this Redis (plain only), with no delay yet.
    pub async fn proxy(&self) -> LatencyProxy {
        LatencyProxy::start(([127, 0, 0, 1], self.port).into()).await
    }

    /// A proxy as [`Redis::proxy`] whose sockets to Redis have a receive
    /// buffer of about `recv_buffer_bytes`.
    pub async fn proxy_with_recv_buffer(&self, recv_buffer_bytes: u32) -> LatencyProxy {
        LatencyProxy::start_with(([127, 0, 0, 1], self.port).into(), Some(recv_buffer_bytes)).await
    }

    async fn node_at(&self, url: String, configure: impl FnOnce(&mut Config)) -> TestApp {
        let app = spawn_app_with(|c| {
            c.broker.kind = BrokerKind::Redis;
            c.broker.url = url;
            configure(c);
        })
        .await;
        app.wait_for_health("the node's Redis subscription", |h| {
            h["broker"] == "redis" && h["broker_connected"] == true
        })
        .await;
        app
    }

    /// Redis's URL: `redis://`, or for TLS `rediss://` with the password.
    pub fn url(&self) -> String {
        match &self.tls {
            None => format!("redis://127.0.0.1:{}", self.port),
            Some(tls) => format!("rediss://:{}@127.0.0.1:{}", tls.password, self.port),
        }
    }
}

/// A Redis stopped by [`Redis::stop`]: dropping it lets it go on.
pub struct Stopped {
    pid: u32,
}

impl Drop for Stopped {
    fn drop(&mut self) {
        // Never panics (a drop may run while a test fails).
        signal(self.pid, "-CONT");
    }
}

/// Sends `signal` (`-STOP`, `-CONT`) to process `pid`; whether it was sent.
fn signal(pid: u32, signal: &str) -> bool {
    Command::new("kill")
        .arg(signal)
        .arg(pid.to_string())
        .status()
        .is_ok_and(|status| status.success())
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Redis's clients of `kind` (`normal`, `pubsub`), as `con` sees them: the
/// fields of each (`omem`, its output buffer's bytes, and so on) by its
/// id, from `CLIENT LIST`.
pub async fn clients(
    con: &mut redis::aio::MultiplexedConnection,
    kind: &str,
) -> HashMap<u64, HashMap<String, String>> {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg(kind)
        .query_async(con)
        .await
        .expect("CLIENT LIST");
    list.lines()
        .map(|line| {
            line.split(' ')
                .filter_map(|field| field.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect::<HashMap<_, _>>()
        })
        .filter_map(|fields| Some((fields.get("id")?.parse().ok()?, fields)))
        .collect()
}

/// The ids of Redis's clients of `kind`, as [`clients`].
pub async fn client_ids(con: &mut redis::aio::MultiplexedConnection, kind: &str) -> HashSet<u64> {
    clients(con, kind).await.into_keys().collect()
}
