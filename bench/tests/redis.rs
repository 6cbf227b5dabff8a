//! The generator against two herald nodes (started in-process) sharing a
//! private `redis-server` on a free port: clients spread over both nodes,
//! publishers on the first, so half the deliveries cross Redis. It checks
//! the accounting, not timings. Without `redis-server` the test says so and
//! passes, except in CI (`CI=true`), where it fails.

use std::net::{SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use herald::config::BrokerKind;
use herald_bench::run::{self, Flavor, Options};

/// A private Redis without persistence; it stops when dropped.
struct Redis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let probe = TcpListener::bind("127.0.0.1:0").expect("free port");
    probe.local_addr().expect("addr").port()
}

/// Waits for `what` up to ten seconds, or fails the test naming it.
async fn within<T>(what: &str, work: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), work)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Starts `redis-server`, or `None` after saying so when it is not installed.
async fn redis() -> Option<Redis> {
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "redis-server is required in CI (apt-get install redis-server)"
        );
        eprintln!("SKIPPED: redis-server is not installed; the two-node run did not happen");
        return None;
    }
    let port = free_port();
    let dir = tempfile::tempdir().expect("temp dir");
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server starts");
    let redis = Redis {
        child,
        port,
        _dir: dir,
    };
    within("redis to answer PING", async {
        loop {
            if let Ok(mut s) = tokio::net::TcpStream::connect(("127.0.0.1", port)).await {
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
    Some(redis)
}

/// GET /health's body.
async fn health(addr: SocketAddr) -> std::io::Result<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(
        format!("GET /health HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).await?;
    Ok(String::from_utf8_lossy(&reply).into_owned())
}

/// A herald node on `redis`, once its subscription is up.
async fn node(redis: &Redis) -> SocketAddr {
    let mut config = herald::Config {
        port: 0,
        workers: 1,
        ..herald::Config::default()
    };
    config.broker.kind = BrokerKind::Redis;
    config.broker.url = format!("redis://127.0.0.1:{}", redis.port);
    let app = herald::Application::build(config)
        .await
        .expect("herald starts");
    let addr = SocketAddr::from(([127, 0, 0, 1], app.port()));
    actix_web::rt::spawn(app.run_until_stopped());
    within("the node's Redis subscription", async {
        loop {
            let body = health(addr).await.unwrap_or_default();
            if body.contains(r#""broker_connected":true"#) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    addr
}

#[actix_web::test]
async fn the_generator_spreads_clients_over_two_nodes_on_redis() {
    let Some(redis) = redis().await else {
        return;
    };
    let a = node(&redis).await;
    let b = node(&redis).await;
    let local = tokio::task::LocalSet::new();
    for (scenario, clients, messages) in [("broadcast", 20, 5), ("direct", 20, 40)] {
        let opts = Options {
            server: a,
            more_nodes: vec![b],
            flavor: Flavor::Herald,
            server_pids: vec![std::process::id()],
            connect_concurrency: 16,
            publishers: 2,
            rate: 0.0,
            drain: Duration::from_secs(5),
            hold: Duration::ZERO,
        };
        let plan = run::plan(scenario, clients, messages, 0);
        let report = local
            .run_until(run::run(scenario, "herald-redis", plan, opts))
            .await;
        assert_eq!(report.failed_clients, 0, "{scenario}: {report:?}");
        assert_eq!(
            (report.lost, report.duplicated, report.misrouted),
            (0, 0, 0),
            "{scenario}: {report:?}"
        );
        assert_eq!(report.delivered, report.expected, "{scenario}");
        assert_eq!(report.nodes, 2, "{scenario}");
        assert_eq!(report.clients_per_node, vec![10, 10], "{scenario}");
        assert_eq!(report.rss_processes, 1, "{scenario}");
        assert!(report.rss_after_kib > 0, "{scenario}: {report:?}");
    }
}
