//! `log_format = "json"` in the real binary: every line is one JSON object a
//! collector can parse, session events carry their fields, and neither a
//! key, the client secret nor a token reaches the log. Text lines keep
//! env_logger's layout, in colour only when asked.

use serde_json::Value;

use crate::helpers::process::{sigterm, HeraldProcess};
use crate::helpers::{token_for, within, RawWs, CLIENT_SECRET, FIN, OP_TEXT};

const PUBLISH_KEY: &str = "log-test-publish-key-0123456789";
const ADMIN_KEY: &str = "log-test-admin-key-0123456789ab";

/// Parses one log line, failing the test when it is not a JSON object with
/// the members every line has.
fn parsed(line: &str) -> Value {
    let json: Value = serde_json::from_str(line)
        .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line:?}"));
    for member in ["time", "level", "target", "message"] {
        assert!(json[member].is_string(), "no {member} in {line}");
    }
    json
}

/// Reads log lines, keeping each in `seen`, until one whose `event` is
/// `event`.
async fn event(herald: &mut HeraldProcess, seen: &mut Vec<String>, event: &str) -> Value {
    within(&format!("a log line of event {event:?}"), async {
        loop {
            let line = herald
                .lines
                .next_line()
                .await
                .unwrap()
                .expect("herald still running");
            seen.push(line.clone());
            let json = parsed(&line);
            if json["event"] == event {
                return json;
            }
        }
    })
    .await
}

/// `[<RFC 3339 time> INFO  herald::app] herald listening on http://…`.
fn assert_listening_layout(line: &str) {
    let time = line.get(1..21).unwrap_or_default();
    assert!(line.starts_with('['), "{line:?}");
    assert!(humantime::parse_rfc3339(time).is_ok(), "{line:?}");
    assert!(
        line[21..].starts_with(" INFO  herald::app] herald listening on http://127.0.0.1:"),
        "{line:?}"
    );
}

#[actix_web::test]
async fn text_lines_keep_env_loggers_layout_in_colour_only_when_asked() {
    let config = "port = 0\nworkers = 1\n";
    // stderr is a pipe here: no colours, whatever RUST_LOG_STYLE says
    // short of `always` (an unknown value counts as `auto`, as in
    // env_logger).
    for style in ["auto", "never", "bogus"] {
        let herald = HeraldProcess::start(config, &[("RUST_LOG_STYLE", style)]).await;
        for line in &herald.startup {
            assert!(!line.contains('\u{1b}'), "{style}: {line:?}");
        }
        assert_listening_layout(&herald.listening);
        sigterm(herald.pid()).await;
    }
    let herald = HeraldProcess::start(config, &[("RUST_LOG_STYLE", "always")]).await;
    let line = &herald.listening;
    assert!(line.contains("\u{1b}[32mINFO \u{1b}[0m"), "{line:?}");
    let stripped: String = anstream::adapter::strip_str(line).to_string();
    assert_listening_layout(&stripped);
    sigterm(herald.pid()).await;
}

#[actix_web::test]
async fn json_log_lines_carry_session_fields_escape_client_text_and_hold_no_secret() {
    let config = format!(
        "port = 0\nworkers = 1\nlog_format = \"json\"\nrequire_token = true\n\
         client_secret = \"{CLIENT_SECRET}\"\n\
         publish_keys = [\"{PUBLISH_KEY}\"]\nadmin_keys = [\"{ADMIN_KEY}\"]\n"
    );
    let mut herald = HeraldProcess::start(&config, &[("RUST_LOG", "info,herald=debug")]).await;
    for line in &herald.startup {
        parsed(line);
    }
    assert!(
        parsed(&herald.listening)["message"]
            .as_str()
            .is_some_and(|m| m.contains("listening on http://127.0.0.1:")),
        "{}",
        herald.listening
    );
    let app = herald.app();
    let mut seen = herald.startup.clone();

    // A session with a token: connected, registered, then closed by the client.
    let token = token_for("log-user", &[]);
    let client = app.ws(&format!("token={token}")).await;
    let connected = event(&mut herald, &mut seen, "connected").await;
    assert_eq!(connected["level"], "INFO");
    // Collectors match on `target`: session lines keep theirs whichever
    // file writes them.
    assert_eq!(connected["target"], "herald::hub::server", "{connected}");
    assert_eq!(connected["transport"], "ws");
    assert!(
        connected["peer"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{connected}"
    );
    assert!(connected["proxy"].is_null(), "{connected}");
    let session = connected["session"].clone();
    assert!(session.is_string(), "{connected}");
    let registered = event(&mut herald, &mut seen, "registered").await;
    assert_eq!(
        (&registered["session"], &registered["id"]),
        (&session, &Value::from("log-user"))
    );

    // Publishes with the key, and with a wrong one; the metrics with theirs.
    let (status, _) = app
        .publish_form_with(
            &[("Authorization", &format!("Bearer {PUBLISH_KEY}"))],
            &[("message", "hello")],
        )
        .await;
    assert_eq!(status, 200);
    let wrong = format!("Bearer {PUBLISH_KEY}-wrong");
    let (status, _) = app
        .publish_form_with(&[("Authorization", &wrong)], &[("message", "x")])
        .await;
    assert_eq!(status, 401);
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .insert_header(("Authorization", format!("Bearer {ADMIN_KEY}")))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);

    client.close().await;
    let gone = event(&mut herald, &mut seen, "disconnected").await;
    assert_eq!(gone["session"], session);
    assert_eq!(gone["id"], "log-user");
    assert_eq!(gone["reason"], "closed by client");
    assert_eq!(gone["close_code"], 1000);

    // A client's own text with line breaks and terminal escapes.
    let mut raw = RawWs::connect(herald.port, "").await;
    let forged = "{\"type\":\"x\\nINFO forged \\u001b[31m \\u2028 end\"}";
    raw.send_frame(FIN | OP_TEXT, forged.as_bytes(), true).await;
    raw.expect_close().await;
    let refused = event(&mut herald, &mut seen, "refused").await;
    // A token sent where it does not belong is quoted back in the parse
    // error: the client sees it, the log does not.
    let mut raw = RawWs::connect(herald.port, "").await;
    let misplaced = format!("{{\"type\":\"{token}\"}}");
    raw.send_frame(FIN | OP_TEXT, misplaced.as_bytes(), true)
        .await;
    raw.expect_close().await;
    let quoted = event(&mut herald, &mut seen, "refused").await;
    assert!(
        quoted["detail"]
            .as_str()
            .is_some_and(|d| d.contains("<token>")),
        "{quoted}"
    );
    assert_eq!(refused["reason"], "unauthorized");
    assert_eq!(refused["close_code"], 4001);
    let detail = refused["detail"].as_str().expect("a detail");
    assert!(detail.contains("forged"), "{refused}");
    for raw_char in ['\n', '\u{1b}', '\u{2028}'] {
        assert!(!detail.contains(raw_char), "{raw_char:?} in {detail:?}");
    }

    // Text that grows when escaped (each private-use character is written
    // `\u{10fffd}`) is cut as written, so the line stays within one write
    // of the log sink, which no other process's output can cut into.
    let mut raw = RawWs::connect(herald.port, "").await;
    let wide = format!("{{\"type\":\"{}\"}}", "\u{10fffd}".repeat(400));
    raw.send_frame(FIN | OP_TEXT, wide.as_bytes(), true).await;
    raw.expect_close().await;
    let cut = event(&mut herald, &mut seen, "refused").await;
    let cut_detail = cut["detail"].as_str().expect("a detail");
    assert!(cut_detail.contains("\\u{10fffd}"), "{cut}");
    assert!(cut_detail.chars().count() < 300, "{cut}");
    let longest = seen.iter().map(String::len).max().unwrap_or(0);
    assert!(longest <= 4096, "a log line of {longest} bytes");

    // Every line up to a clean exit parses, and none holds a secret.
    sigterm(herald.pid()).await;
    let mut rest = Vec::new();
    within("herald's exit", async {
        while let Some(line) = herald.lines.next_line().await.unwrap() {
            rest.push(line);
        }
    })
    .await;
    let status = herald.child.wait().await.unwrap();
    assert_eq!(status.code(), Some(0), "{rest:#?}");
    assert!(
        rest.iter()
            .map(|l| parsed(l))
            .any(|l| l["message"] == "stopped" && l["target"] == "herald::app"),
        "{rest:#?}"
    );
    let signature = token.rsplit('.').next().unwrap();
    for line in seen.iter().chain(&rest) {
        parsed(line);
        for secret in [
            PUBLISH_KEY,
            ADMIN_KEY,
            CLIENT_SECRET,
            token.as_str(),
            signature,
        ] {
            assert!(!line.contains(secret), "a secret in {line}");
        }
    }
}

#[actix_web::test]
async fn through_a_trusted_proxy_json_lines_name_the_client_and_the_proxy_apart() {
    let config =
        "port = 0\nworkers = 1\nlog_format = \"json\"\ntrusted_proxies = [\"127.0.0.1/32\"]\n";
    let mut herald = HeraldProcess::start(config, &[]).await;
    let mut seen = Vec::new();
    let direct = RawWs::attempt(herald.port, "id=direct", &[])
        .await
        .expect("upgrade");
    let connected = event(&mut herald, &mut seen, "connected").await;
    // The test connects from loopback, which is listed: a proxy naming no one.
    assert_eq!(connected["peer"], "127.0.0.1", "{connected}");
    drop(direct);
    event(&mut herald, &mut seen, "disconnected").await;

    let behind = RawWs::attempt(
        herald.port,
        "id=behind",
        &[("X-Forwarded-For", "203.0.113.9")],
    )
    .await
    .expect("upgrade");
    let connected = event(&mut herald, &mut seen, "connected").await;
    assert_eq!(connected["peer"], "203.0.113.9", "{connected}");
    assert!(
        connected["proxy"]
            .as_str()
            .is_some_and(|p| p.starts_with("127.0.0.1:")),
        "{connected}"
    );
    drop(behind);
    let gone = event(&mut herald, &mut seen, "disconnected").await;
    assert_eq!(
        (&gone["peer"], &gone["id"]),
        (&"203.0.113.9".into(), &"behind".into())
    );
}
