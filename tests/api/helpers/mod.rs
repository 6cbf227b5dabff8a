//! The one way tests start herald and talk to it: [`spawn_app`] runs the
//! real server in-process on an ephemeral port and returns a [`TestApp`];
//! each client kind has its file:
//! - `http.rs`: publishing, `/health`, the server's position;
//! - `ws.rs`: [`WsClient`], a real WebSocket client (awc);
//! - `raw.rs`: [`RawWs`], hand-made frames over TCP for protocol errors;
//! - `raw_http.rs`: [`RawHttp`], HTTP over a raw socket;
//! - `sse.rs`: [`SseClient`], an event-stream reader;
//! - `poll.rs`: long-polling;
//! - `tcp.rs`: TCP connections from a chosen source address;
//! - `token.rs`: signed identity;
//! - `process.rs`: the `herald` binary as a child process;
//! - `redis.rs`: a private `redis-server` per test;
//! - `latency.rs`: a TCP proxy adding latency between a node and Redis;
//! - `stub.rs`: a scripted stand-in for herald's `POST /`;
//! - `publisher.rs`: herald's own publish scripts and snippets as child
//!   processes, and the retry checks they must pass.

use std::future::Future;
use std::time::Duration;

use herald::{Application, Config};

mod http;
pub mod latency;
mod poll;
pub mod process;
pub mod publisher;
mod raw;
mod raw_http;
pub mod redis;
mod sse;
pub mod steady;
pub mod stub;
pub mod tcp;
mod token;
mod ws;

pub use poll::message_seqs;
pub use raw::{
    client_frame, parse_server_frame, upgrade_request_to, RawWs, FIN, OP_BINARY, OP_CLOSE, OP_CONT,
    OP_PING, OP_PONG, OP_TEXT, RSV1,
};
pub use raw_http::RawHttp;
pub use sse::SseEvent;
pub use token::{mint, now, token_for, with_tokens, CLIENT_SECRET};
pub use ws::{read_replay, read_replay_seqs, WsClient};

/// How long any wait in a test may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(5);

pub struct TestApp {
    pub port: u16,
    pub http: awc::Client,
}

/// A test config: ephemeral port, one worker, the built-in console.
pub fn test_config() -> Config {
    Config {
        port: 0,
        workers: 1,
        ..Config::default()
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = test_config();
    configure(&mut config);
    let app = Application::build(config).await.expect("herald starts");
    let port = app.port();
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        port,
        http: awc::Client::builder().timeout(WAIT).finish(),
    }
}

/// Awaits `fut`, failing the test if it takes longer than [`WAIT`].
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(value) => value,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

impl TestApp {
    /// A client for a herald already listening on `port` (a child process).
    pub fn at(port: u16) -> Self {
        Self {
            port,
            http: awc::Client::default(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }
}

/// What a test needs from the machine (a program, IPv6 loopback): `found`,
/// or, when it is missing, `None` after printing `skipped`. In CI
/// (`CI=true`) a missing need fails the test with `required` instead.
pub fn or_skip<T>(found: Option<T>, required: &str, skipped: &str) -> Option<T> {
    if found.is_some() {
        return found;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{required}");
    }
    eprintln!("{skipped}");
    None
}
