//! The `herald` binary itself: config errors exit 2, and a running server logs
//! where it listens and each connect, register and disconnect.

use std::path::Path;
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{ChildStderr, Command};

use crate::helpers::within;

fn herald() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_herald"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .env_remove("RUST_LOG")
        .env_remove("HERALD_CONFIG")
        .env_remove("HERALD_HOST")
        .env_remove("HERALD_PORT")
        .kill_on_drop(true);
    cmd
}

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
async fn a_bad_env_override_exits_2() {
    let output = herald().env("HERALD_PORT", "lots").output().await.unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("HERALD_PORT"));
}

async fn line_containing(lines: &mut Lines<BufReader<ChildStderr>>, needle: &str) -> String {
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

#[actix_web::test]
async fn the_binary_logs_listening_address_and_session_events() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.toml");
    std::fs::write(&path, "port = 8001\nworkers = 1\n").unwrap();
    // The environment overrides the file: listen on a free port.
    let mut child = herald()
        .arg("--config")
        .arg(&path)
        .env("HERALD_PORT", "0")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();

    let listening = line_containing(&mut lines, "listening on http://127.0.0.1:").await;
    let port: u16 = listening
        .rsplit(':')
        .next()
        .unwrap()
        .trim()
        .parse()
        .unwrap();
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
