//! The `herald` binary itself: config errors exit 2, and a running server logs
//! where it listens and each connect, register and disconnect.

use std::path::Path;

use crate::helpers::process::{herald, line_containing, port_of, sigterm, HeraldProcess};
use crate::helpers::within;

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
    assert_eq!(
        version.trim(),
        format!("herald {}", env!("CARGO_PKG_VERSION"))
    );
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
    let app = crate::helpers::TestApp::at(port);
    let poll = actix_web::rt::spawn(async move { app.poll("id=polling").await });
    let checker = crate::helpers::TestApp::at(port);
    let mut events = checker.sse("id=streaming", &[]).await;
    assert_eq!(events.next_data().await.1["type"], "registered");
    // The WebSocket, the waiting poll and the event stream.
    checker.wait_for_counts(3, 3).await;

    sigterm(child.id().expect("running")).await;

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

/// Runs `herald <args>` with `env` and a config file holding `config`;
/// returns the exit code, stdout and stderr.
async fn run_with(
    config: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("herald.toml");
    std::fs::write(&path, config).unwrap();
    let mut cmd = herald();
    cmd.args(args).arg("--config").arg(&path);
    for (name, value) in env {
        cmd.env(name, value);
    }
    let output = within("the command", cmd.output()).await.unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const SECRET: &str = "a-client-secret-of-at-least-32-bytes!";

#[actix_web::test]
async fn check_config_accepts_a_good_configuration_and_names_the_fault_in_a_bad_one() {
    let (code, _, _) = run_with("port = 9000\n", &["check-config"], &[]).await;
    assert_eq!(code, Some(0));
    let (code, _, stderr) = run_with("max_frame_bytes = 3\n", &["check-config"], &[]).await;
    assert_eq!(code, Some(2));
    assert!(stderr.contains("max_frame_bytes"), "{stderr}");
    for bad in ["10", "60000"] {
        let config = format!("[broker]\npublish_timeout_ms = {bad}\n");
        let (code, _, stderr) = run_with(&config, &["check-config"], &[]).await;
        assert_eq!(code, Some(2), "publish_timeout_ms = {bad}");
        assert!(stderr.contains("broker.publish_timeout_ms"), "{stderr}");
    }
    let (code, _, stderr) =
        run_with("", &["check-config"], &[("HERALD_MAX_CONNECTIONS", "many")]).await;
    assert_eq!(code, Some(2));
    assert!(stderr.contains("HERALD_MAX_CONNECTIONS"), "{stderr}");
    let (code, _, stderr) = run_with("", &["check-config"], &[("HERALD_FOO", "1")]).await;
    assert_eq!(code, Some(2));
    assert!(stderr.contains("HERALD_FOO"), "{stderr}");
}

#[actix_web::test]
async fn print_config_prints_what_herald_reads_back_without_its_secrets() {
    let env = [
        ("HERALD_CLIENT_SECRET", SECRET),
        (
            "HERALD_PUBLISH_KEYS",
            "publish-key-0123456789,publish-key-abcdefghij",
        ),
        ("HERALD_MAX_CONNECTIONS", "1234"),
    ];
    let (code, printed, _) = run_with("port = 9001\n", &["print-config"], &env).await;
    assert_eq!(code, Some(0));
    assert!(
        !printed.contains(SECRET) && !printed.contains("publish-key"),
        "{printed}"
    );
    assert!(printed.contains("<redacted>"), "{printed}");
    let parsed: toml::Table = toml::from_str(&printed).unwrap();
    assert_eq!(parsed["port"].as_integer(), Some(9001));
    assert_eq!(parsed["max_connections"].as_integer(), Some(1234));
    // Read back with the secrets from the environment again: accepted.
    let (code, _, stderr) = run_with(&printed, &["check-config"], &env).await;
    assert_eq!(code, Some(0), "{stderr}");
    // Without them, the placeholder is refused by name.
    let (code, _, stderr) = run_with(&printed, &["check-config"], &[]).await;
    assert_eq!(code, Some(2));
    assert!(stderr.contains("placeholder"), "{stderr}");
}

#[actix_web::test]
async fn settings_from_the_environment_take_effect_in_a_running_herald() {
    let herald = HeraldProcess::start(
        "port = 0\nworkers = 1\n",
        &[
            ("HERALD_MAX_CHANNELS_PER_SESSION", "2"),
            (
                "HERALD_ALLOWED_ORIGINS",
                "https://a.example,https://b.example",
            ),
            ("HERALD_BROKER__PREFIX", "from-env"),
        ],
    )
    .await;
    let app = herald.app();
    let (status, body) = app.ws_attempt("channel=a&channel=b&channel=c", &[]).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "too_many_channels");
    for origin in ["https://a.example", "https://b.example"] {
        let (status, body) = app.ws_attempt("id=1", &[("Origin", origin)]).await;
        assert_eq!(status, 101, "{origin}: {body}");
    }
    let (status, _) = app.ws_attempt("", &[("Origin", "https://c.example")]).await;
    assert_eq!(status, 403);
}

#[actix_web::test]
async fn a_minted_token_is_accepted_by_a_running_herald() {
    let env = [("HERALD_CLIENT_SECRET", SECRET)];
    let (code, token, stderr) = run_with(
        "",
        &[
            "token",
            "--sub",
            "63",
            "--channels",
            "private:63,private:vip",
            "--ttl",
            "10m",
        ],
        &env,
    )
    .await;
    assert_eq!(code, Some(0), "{stderr}");
    let herald = HeraldProcess::start("port = 0\nworkers = 1\n", &env).await;
    let app = herald.app();
    let mut client = app
        .ws(&format!("token={}&channel=private:vip", token.trim()))
        .await;
    assert_eq!(client.recv_json().await["id"], "63");
    assert_eq!(client.recv_json().await["channel"], "private:vip");

    let (code, _, stderr) = run_with("", &["token", "--sub", "63"], &[]).await;
    assert_eq!(code, Some(2));
    assert!(stderr.contains("client_secret"), "{stderr}");
}

#[actix_web::test]
async fn the_binary_serves_its_console_and_client_from_an_empty_directory() {
    let empty = tempfile::tempdir().unwrap();
    let mut cmd = herald();
    cmd.current_dir(empty.path())
        .env("HERALD_PORT", "0")
        .env("HERALD_WORKERS", "1")
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stderr));
    let listening = line_containing(&mut lines, "listening on http://127.0.0.1:").await;
    let port = port_of(&listening);
    let http = awc::Client::default();
    let mut page = http
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let body = page.body().await.unwrap();
    assert!(String::from_utf8_lossy(&body).contains("herald console"));
    for (file, kind) in [
        ("herald.js", "text/javascript"),
        ("console.js", "text/javascript"),
        ("console.css", "text/css"),
    ] {
        let mut response = http
            .get(format!("http://127.0.0.1:{port}/static/{file}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{file}");
        let content_type = response.headers().get("content-type").unwrap();
        assert!(content_type.to_str().unwrap().starts_with(kind), "{file}");
        let etag = response.headers().get("etag").unwrap().clone();
        assert!(!response.body().await.unwrap().is_empty());
        let again = http
            .get(format!("http://127.0.0.1:{port}/static/{file}"))
            .insert_header(("If-None-Match", etag))
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304, "{file} revalidated");
    }
    let missing = http
        .get(format!("http://127.0.0.1:{port}/static/nope.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    child.kill().await.unwrap();
}

#[actix_web::test]
async fn console_off_answers_404_and_overrides_are_checked_at_startup() {
    let herald = HeraldProcess::start("port = 0\nworkers = 1\nconsole = false\n", &[]).await;
    let app = herald.app();
    let page = app.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.status(), 404);
    let client = app
        .http
        .get(app.url("/static/herald.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(client.status(), 200, "the client library is still served");
    let (status, _) = app.publish_form(&[("message", "still publishing")]).await;
    assert_eq!(status, 200);

    for key in ["console_template", "static_dir"] {
        let (code, _, stderr) = run_with(
            &format!("{key} = \"/nonexistent/x\"\n"),
            &["check-config"],
            &[],
        )
        .await;
        assert_eq!(code, Some(2), "{key}");
        assert!(stderr.contains(key), "{stderr}");
    }
    let own = tempfile::tempdir().unwrap();
    std::fs::write(own.path().join("herald.js"), "// mine").unwrap();
    std::fs::write(own.path().join("page.html"), "<h1>my page</h1>").unwrap();
    let config = format!(
        "port = 0\nworkers = 1\nstatic_dir = \"{0}\"\nconsole_template = \"{0}/page.html\"\n",
        own.path().display()
    );
    let herald = HeraldProcess::start(&config, &[]).await;
    let app = herald.app();
    let mut page = app.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(page.body().await.unwrap(), "<h1>my page</h1>");
    let mut js = app
        .http
        .get(app.url("/static/herald.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(js.body().await.unwrap(), "// mine");
}

#[actix_web::test]
async fn a_configuration_error_is_shown_whatever_rust_log_filters() {
    for filter in ["off", "actix_web=debug"] {
        let output = herald()
            .env("RUST_LOG", filter)
            .env("HERALD_PORT", "lots")
            .output()
            .await
            .unwrap();
        assert_eq!(output.status.code(), Some(2));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("HERALD_PORT"),
            "RUST_LOG={filter}: {stderr}"
        );
    }
}
