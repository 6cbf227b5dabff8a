//! A short run of the load generator against herald (started in-process)
//! and the ceiling server (the built binary): it checks the generator, the
//! zero-loss rule and the ceiling's protocol subset, not timings.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use herald_bench::publish::Publisher;
use herald_bench::run::{self, Flavor, Options, Report};
use herald_bench::wire::{self, OP_TEXT};

fn options(server: SocketAddr, flavor: Flavor) -> Options {
    Options {
        server,
        more_nodes: Vec::new(),
        flavor,
        server_pids: Vec::new(),
        connect_concurrency: 64,
        publishers: 2,
        rate: 0.0,
        drain: Duration::from_secs(5),
        hold: Duration::ZERO,
    }
}

async fn scenarios(server: SocketAddr, label: &str, flavor: Flavor) {
    let cases = [
        ("broadcast", 50, 40, 0),
        ("direct", 50, 200, 0),
        ("channel", 60, 100, 20),
        ("connect", 40, 0, 0),
        ("storm", 50, 60, 0),
    ];
    for (scenario, clients, messages, channel_size) in cases {
        if matches!(scenario, "storm" | "channel") && flavor == Flavor::Ceiling {
            continue; // resuming and channels are not in the ceiling's subset
        }
        let plan = run::plan(scenario, clients, messages, channel_size);
        let mut opts = options(server, flavor);
        if scenario == "storm" {
            opts.rate = 100.0;
        }
        let report: Report = run::run(scenario, label, plan, opts).await;
        assert_eq!(report.failed_clients, 0, "{label} {scenario}: {report:?}");
        assert_eq!(
            (report.lost, report.duplicated, report.misrouted),
            (0, 0, 0),
            "{label} {scenario}: {report:?}"
        );
        assert_eq!(report.delivered, report.expected, "{label} {scenario}");
        assert_eq!(report.storm_resets, 0, "{label} {scenario}: {report:?}");
        // (The CPU share is not checked: herald shares this test's process.)
        assert!(
            !report.note.contains("registered"),
            "{label} {scenario}: {}",
            report.note
        );
    }
}

#[actix_web::test]
async fn the_generator_counts_every_delivery_against_herald() {
    let config = herald::Config {
        port: 0,
        workers: 1,
        ..herald::Config::default()
    };
    let app = herald::Application::build(config)
        .await
        .expect("herald starts");
    let addr = SocketAddr::from(([127, 0, 0, 1], app.port()));
    actix_web::rt::spawn(app.run_until_stopped());
    let local = tokio::task::LocalSet::new();
    local
        .run_until(scenarios(addr, "herald", Flavor::Herald))
        .await;
}

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the ceiling server on a free port; it stops when the guard drops.
async fn ceiling() -> (SocketAddr, Kill) {
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        probe.local_addr().expect("addr").port()
    };
    let child = Command::new(env!("CARGO_BIN_EXE_ceiling-server"))
        .env("PORT", port.to_string())
        .env("CEILING_WORKERS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ceiling server starts");
    let guard = Kill(child);
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the ceiling server did not listen on {addr}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    (addr, guard)
}

#[actix_web::test]
async fn the_generator_counts_every_delivery_against_the_ceiling_server() {
    let (addr, _guard) = ceiling().await;
    let local = tokio::task::LocalSet::new();
    local
        .run_until(scenarios(addr, "ceiling", Flavor::Ceiling))
        .await;
}

/// Reads frames until one holds `needle`, within the timeout; returns it.
async fn frame_with(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>, needle: &str) -> String {
    let found = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            while let Some(frame) = wire::parse(buf) {
                let text = String::from_utf8_lossy(&buf[frame.start..frame.end]).into_owned();
                buf.drain(..frame.end);
                if text.contains(needle) {
                    return text;
                }
            }
            let read = wire::read_more(stream, buf).await.expect("read");
            assert!(read > 0, "the ceiling server closed the connection");
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("no frame with {needle} within 5 s"))
}

#[actix_web::test]
async fn the_ceiling_server_speaks_the_benchmarks_protocol_subset() {
    let (addr, _guard) = ceiling().await;
    let host = addr.to_string();

    // GET /health answers JSON.
    let mut health = tokio::net::TcpStream::connect(addr).await.expect("connect");
    health
        .write_all(format!("GET /health HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut reply = Vec::new();
    while wire::find(&reply, b"}").is_none() {
        let read = tokio::time::timeout(
            Duration::from_secs(5),
            wire::read_more(&mut health, &mut reply),
        )
        .await
        .expect("health answers in time")
        .expect("read");
        assert!(read > 0, "health closed early");
    }
    let reply = String::from_utf8_lossy(&reply);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("{\"sessions\":0}"), "{reply}");

    // Two clients: one registered by a frame, one bystander.
    let mut buf = Vec::new();
    let mut alice = wire::connect(None, addr).await.expect("connect");
    wire::handshake(&mut alice, &host, "/ws", &mut buf)
        .await
        .expect("upgrade");
    alice
        .write_all(&wire::frame(
            OP_TEXT,
            br#"{"type":"register","id":"alice"}"#,
        ))
        .await
        .expect("register");
    let registered = frame_with(&mut alice, &mut buf, "registered").await;
    assert_eq!(registered, r#"{"type":"registered","id":"alice"}"#);
    let mut other_buf = Vec::new();
    let mut bob = wire::connect(None, addr).await.expect("connect");
    wire::handshake(&mut bob, &host, "/ws?id=bob", &mut other_buf)
        .await
        .expect("upgrade");

    // A direct POST reaches alice alone; a broadcast reaches both.
    let mut publisher = Publisher::connect(addr).await.expect("publisher");
    let reply = publisher
        .post("message=hello%20alice&id=alice")
        .await
        .expect("post");
    assert_eq!(reply, br#"{"delivered":1}"#);
    let message = frame_with(&mut alice, &mut buf, "message").await;
    assert_eq!(message, r#"{"type":"message","data":"hello alice"}"#);
    let reply = publisher.post("message=all").await.expect("post");
    assert_eq!(reply, br#"{"delivered":2}"#);
    let first = frame_with(&mut bob, &mut other_buf, "message").await;
    assert_eq!(
        first, r#"{"type":"message","data":"all"}"#,
        "bob got only the broadcast"
    );
    let message = frame_with(&mut alice, &mut buf, "message").await;
    assert_eq!(message, r#"{"type":"message","data":"all"}"#);
}
