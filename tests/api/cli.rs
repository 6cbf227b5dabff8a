//! The `herald` binary itself: config errors exit 2, and a running server logs
//! where it listens and each connect, register and disconnect.

use std::path::Path;

use tokio::process::Command;

use crate::helpers::within;
use crate::process::{herald, line_containing, HeraldProcess};

#[actix_web::test]
async fn an_unknown_config_key_exits_2_naming_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "port = 8001\nheartbeat_interval = 5\n").unwrap();

    let output = herald().arg("--config").arg(&path).output().await.unwrap();

    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.toml"), "{stderr}");
    assert!(stderr.contains("heartbeat_interval"), "{stderr}");
}

#[actix_web::test]
async fn version_and_help_name_the_version_and_every_variable() {
    let output = herald().arg("--version").output().await.unwrap();
    assert!(output.status.success());
    let version = String::from_utf8_lossy(&output.stdout);
    assert_eq!(version.trim(), format!("herald {}", env!("CARGO_PKG_VERSION")));
    let output = herald().arg("--help").output().await.unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for var in ["HERALD_PORT", "HERALD_BROKER__URL", "HERALD_PUBLISH_KEYS"] {
        assert!(help.contains(var), "{var} in --help: {help}");
    }
}

#[actix_web::test]
async fn a_bad_env_override_exits_2() {
    let output = herald().env("HERALD_PORT", "lots").output().await.unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("HERALD_PORT"));
}

#[actix_web::test]
async fn the_binary_logs_listening_address_and_session_events() {
    // The environment overrides the file: listen on a free port.
    let herald = HeraldProcess::start("port = 8001\nworkers = 1\n", &[("HERALD_PORT", "0")]).await;
    let (mut child, mut lines, port, listening) =
        (herald.child, herald.lines, herald.port, herald.listening);
    assert_ne!(port, 8001);
    assert!(
        listening.contains("INFO"),
        "info level by default: {listening}"
    );

    let client = awc::Client::default();
    let (_, framed) = client
        .ws(format!("ws://127.0.0.1:{port}/ws?id=cli-63"))
        .connect()
        .await
        .unwrap();
    let connected = line_containing(&mut lines, "connected: transport=ws peer=127.0.0.1:").await;
    assert!(connected.contains("session"), "{connected}");
    let registered = line_containing(&mut lines, "registered:").await;
    assert!(
        registered.contains("transport=ws peer=127.0.0.1:") && registered.contains("id=\"cli-63\""),
        "{registered}"
    );

    drop(framed);
    let gone = line_containing(&mut lines, "disconnected:").await;
    assert!(
        gone.contains("id=\"cli-63\"") && gone.contains("peer=127.0.0.1:"),
        "{gone}"
    );
    assert!(Path::new(env!("CARGO_BIN_EXE_herald")).exists());
    child.kill().await.unwrap();
}

#[actix_web::test]
async fn sigterm_closes_sessions_with_1001_ends_streams_and_polls_and_exits_0() {
    let config = "port = 0\nworkers = 1\nshutdown_timeout_secs = 5\n";
    let herald = HeraldProcess::start(config, &[]).await;
    let (mut child, port) = (herald.child, herald.port);

    let mut ws = crate::helpers::RawWs::connect(port, "id=leaving").await;
    assert_eq!(ws.recv_json().await["type"], "registered");
    let app = crate::helpers::TestApp {
        port,
        http: awc::Client::default(),
    };
    let poll = actix_web::rt::spawn(async move { app.poll("id=polling").await });
    let checker = crate::helpers::TestApp {
        port,
        http: awc::Client::default(),
    };
    let mut events = checker.sse("id=streaming", &[]).await;
    assert_eq!(events.next_data().await.1["type"], "registered");
    // The WebSocket, the waiting poll and the event stream.
    checker.wait_for_counts(3, 3).await;

    let pid = child.id().expect("running").to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());

    assert_eq!(
        ws.expect_close().await,
        herald::protocol::close_code::GOING_AWAY
    );
    events.expect_end().await;
    let (status, body) = within("the poll's answer", poll).await.unwrap();
    assert_eq!(status, actix_web::http::StatusCode::OK);
    assert_eq!(body["messages"], serde_json::json!([]));
    let status = within("herald to exit", child.wait()).await.unwrap();
    assert_eq!(status.code(), Some(0));
}

#[actix_web::test]
async fn a_port_in_use_is_one_clear_line_and_a_failure_exit() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let output = herald().args(["--port", &port]).output().await.unwrap();
    assert_ne!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("cannot listen on") && errors[0].contains(&port),
        "{stderr}"
    );
}

#[actix_web::test]
async fn an_unreachable_redis_is_one_clear_line_and_a_failure_exit() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed); // nothing listens there now
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.toml");
    let config =
        format!("port = 0\n[broker]\nkind = \"redis\"\nurl = \"redis://127.0.0.1:{port}\"\n");
    std::fs::write(&path, config).unwrap();

    let output = within(
        "herald to give up",
        herald().arg("--config").arg(&path).output(),
    )
    .await
    .unwrap();

    assert_ne!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.contains("ERROR")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(
        errors[0].contains("Redis") || errors[0].contains("broker"),
        "{stderr}"
    );
}
