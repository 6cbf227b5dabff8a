//! Attacks from outside, each against the real server: what one
//! unauthenticated connection can make herald hold, and what a client can
//! make a session believe about it.

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use herald::protocol::close_code;

use crate::helpers::process::HeraldProcess;
use crate::helpers::{
    now, parse_server_frame, spawn_app, spawn_app_with, token_for, with_tokens, within, RawHttp,
    RawWs, CLIENT_SECRET, FIN, OP_CLOSE, OP_TEXT,
};

/// What the flood may write at most: more than loopback carries before the
/// test's wait ends, so the flood stops only when herald ends the connection.
const FLOOD_CAP_BYTES: usize = 1 << 40;

/// Opens `/ws?{query}`, sends one text frame header declaring 2^40 bytes,
/// then streams payload until herald ends the connection (after reading on
/// for at most `client_disconnect_timeout`, discarding). Returns the close
/// code herald sent and how many payload bytes went out.
async fn flood_one_frame(port: u16, query: &str) -> (u16, usize) {
    let ws = RawWs::connect(port, query).await;
    let (stream, mut seen) = ws.into_parts();
    let (mut reader, mut writer) = stream.into_split();
    let flood = actix_web::rt::spawn(async move {
        let mut header = vec![0x81, 0x80 | 127];
        header.extend_from_slice(&(1u64 << 40).to_be_bytes());
        header.extend_from_slice(&[1, 2, 3, 4]);
        if writer.write_all(&header).await.is_err() {
            return 0;
        }
        let chunk = vec![0u8; 64 * 1024];
        let mut sent = 0;
        while sent < FLOOD_CAP_BYTES {
            if writer.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
        sent
    });
    let code = within("a close frame", async {
        loop {
            if let Some((opcode, payload, used)) = parse_server_frame(&seen) {
                seen.drain(..used);
                if opcode == OP_CLOSE {
                    return u16::from_be_bytes([payload[0], payload[1]]);
                }
                continue;
            }
            let mut chunk = [0u8; 4096];
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => panic!("connection ended without a close frame"),
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    let sent = within("herald to end the flooding connection", flood)
        .await
        .unwrap();
    (code, sent)
}

#[actix_web::test]
async fn a_frame_header_declaring_a_terabyte_closes_with_1009_without_buffering() {
    let limit = "max_frame_bytes = 65536\n";
    let plain = format!("port = 0\nworkers = 1\n{limit}");
    let guarded = format!("{}{limit}", requiring_tokens());
    for (config, query) in [(plain, "id=flood"), (guarded, "await_register=1")] {
        let herald = HeraldProcess::start(&config, &[]).await;
        let mut ws = RawWs::connect(herald.port, "id=warmup").await;
        if query.starts_with("id") {
            assert_eq!(ws.recv_json().await["type"], "registered");
        }
        let before = herald.rss_kib();

        let (code, sent) = flood_one_frame(herald.port, query).await;

        assert_eq!(code, herald::protocol::close_code::MESSAGE_TOO_BIG);
        let grown = herald.rss_kib().saturating_sub(before);
        assert!(
            grown < 16 * 1024,
            "RSS grew by {grown} KiB on one refused frame of which {sent} bytes were sent ({config})"
        );
    }
}

#[actix_web::test]
async fn a_token_swapped_before_admission_does_not_keep_the_first_tokens_private_channels() {
    let app = spawn_app_with(with_tokens).await;
    let vip = token_for("alice", &["private:vip"]);
    let mut client = app
        .ws(&format!("token={vip}&channel=private:vip&await_register=1"))
        .await;
    client
        .send_json(&json!({"type": "register", "token": token_for("mallory", &[])}))
        .await;

    let refused = client.recv_json().await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("private:vip"),
        "{refused}"
    );
    let registered = client.recv_json().await;
    assert_eq!(
        (&registered["type"], &registered["id"]),
        (&json!("registered"), &json!("mallory"))
    );
    let (_, body) = app
        .publish_form(&[("message", "for the vips"), ("channel", "private:vip")])
        .await;
    assert_eq!(body["delivered"], 0, "{body}");
    // The session is still usable, as mallory.
    let (_, body) = app
        .publish_form(&[("message", "hi"), ("id", "mallory")])
        .await;
    assert_eq!(body["delivered"], 1, "{body}");
    assert_eq!(client.recv_json().await["data"], "hi");
}

/// Config text for a binary that requires tokens.
fn requiring_tokens() -> String {
    format!("port = 0\nworkers = 1\nrequire_token = true\nclient_secret = \"{CLIENT_SECRET}\"\n")
}

#[actix_web::test]
async fn a_bad_first_frame_gets_its_reason_in_an_error_frame_and_a_short_fixed_close_reason() {
    let app = spawn_app_with(|c| {
        with_tokens(c);
        c.require_token = true;
    })
    .await;
    let mut raw = RawWs::connect(app.port, "").await;

    raw.send_frame(FIN | OP_TEXT, br#"{"type":"registr"}"#, true)
        .await;

    let error = raw.next_json().await.expect("an error frame first");
    assert_eq!(error["type"], "error");
    assert!(
        error["error"].as_str().unwrap().contains("registr"),
        "{error}"
    );
    let (opcode, payload) = raw.read_frame().await.expect("the close frame");
    assert_eq!(opcode, OP_CLOSE);
    assert_eq!(
        u16::from_be_bytes([payload[0], payload[1]]),
        close_code::UNAUTHORIZED
    );
    let reason = std::str::from_utf8(&payload[2..]).unwrap();
    assert!(reason.len() <= 123, "{reason}");
    assert_eq!(reason, "unauthorized");
}

#[actix_web::test]
async fn client_text_in_a_log_line_is_escaped_and_stays_on_its_line() {
    let mut herald = HeraldProcess::start(&requiring_tokens(), &[]).await;
    let mut raw = RawWs::connect(herald.port, "").await;

    let forged = "{\"type\":\"x\\nINFO herald forged line \\u2028 \\u202e \\r end\"}";
    raw.send_frame(FIN | OP_TEXT, forged.as_bytes(), true).await;
    raw.expect_close().await;

    let line = herald.log_line("refused").await;
    assert!(
        line.contains("forged line"),
        "the detail is on the refused line: {line}"
    );
    assert!(line.contains("x\\nINFO herald forged"), "{line}");
    for raw_char in ['\n', '\r', '\u{2028}', '\u{202E}'] {
        assert!(
            !line.contains(raw_char),
            "{raw_char:?} unescaped in {line:?}"
        );
    }
    assert!(
        line.contains("\\u{2028}") && line.contains("\\u{202e}"),
        "{line}"
    );
}

#[actix_web::test]
async fn a_long_channel_list_is_refused_at_the_limit_without_reading_the_rest() {
    let app = spawn_app_with(|c| c.max_channels_per_session = 64).await;
    // 2,000 distinct names, a 27 KB query (near the longest request head
    // herald reads); then a name that is invalid: reading stops at the 65th
    // channel, so the answer is the limit.
    let mut query: Vec<String> = (0..2_000).map(|i| format!("channel=c{i}")).collect();
    query.push("channel=bad%20name".into());
    let query = query.join("&");
    let Err((status, body)) = RawWs::attempt(app.port, &query, &[]).await else {
        panic!("a WebSocket with 2,000 channels was accepted");
    };
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["code"], "too_many_channels", "{body}");
    for path in ["events", "poll"] {
        let (status, body) = RawHttp::get(app.port, &format!("/{path}?{query}"), None)
            .await
            .answer()
            .await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains("too_many_channels"), "{path}: {body}");
    }
}

#[actix_web::test]
async fn ids_made_of_invisible_characters_are_refused_everywhere() {
    let app = spawn_app_with(with_tokens).await;
    // A tag character, a Hangul filler, a noncharacter, a musical format
    // control: each makes "admin" look like itself.
    for lookalike in [
        "admin%F3%A0%80%81",
        "admin%E3%85%A4",
        "admin%EF%BF%BE",
        "admin%F0%9D%85%B3",
    ] {
        let (status, body) = app.ws_attempt(&format!("id={lookalike}"), &[]).await;
        assert_eq!(status, 400, "{lookalike}: {body}");
        assert_eq!(body["code"], "invalid_id", "{body}");
    }
    let (status, body) = app
        .publish_form(&[("message", "m"), ("id", "admin\u{E0041}")])
        .await;
    assert_eq!(status, 400, "{body}");
    let token = token_for("admin\u{3164}", &[]);
    let (status, body) = app.ws_attempt(&format!("token={token}"), &[]).await;
    assert_eq!(status, 401, "{body}");
}

#[actix_web::test]
async fn tokens_for_another_audience_or_none_are_refused() {
    let app = spawn_app_with(with_tokens).await;
    let claims = |aud: serde_json::Value| {
        let mut claims = json!({"sub": "63", "exp": now() + 60});
        if !aud.is_null() {
            claims["aud"] = aud;
        }
        claims
    };
    let key = jsonwebtoken::EncodingKey::from_secret(CLIENT_SECRET.as_bytes()).unwrap();
    let sign = |claims: &serde_json::Value| {
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), claims, &key).unwrap()
    };
    for refused in [serde_json::Value::Null, json!("billing"), json!(["api"])] {
        let token = sign(&claims(refused.clone()));
        let (status, body) = app.ws_attempt(&format!("token={token}"), &[]).await;
        assert_eq!(status, 401, "aud {refused}: {body}");
        assert!(body["error"].as_str().unwrap().contains("aud"), "{body}");
    }
    let token = sign(&claims(json!("herald")));
    let mut client = app.ws(&format!("token={token}")).await;
    assert_eq!(client.recv_json().await["id"], "63");
}

#[actix_web::test]
async fn a_token_session_with_private_channels_in_its_url_is_admitted_by_its_register_frame() {
    // The URL herald.js builds for a token session: the token comes in the
    // first frame, the channels (private ones too) in the URL.
    let app = spawn_app_with(with_tokens).await;
    let mut client = app
        .ws("await_register=1&channel=private:u&channel=news")
        .await;
    client
        .send_json(&json!({"type": "register", "token": token_for("u", &["private:u"])}))
        .await;
    assert_eq!(client.recv_json().await["type"], "registered");
    let mut joined = Vec::new();
    for _ in 0..2 {
        let frame = client.recv_json().await;
        assert_eq!(frame["type"], "subscribed", "{frame}");
        joined.push(frame["channel"].as_str().unwrap().to_owned());
    }
    joined.sort();
    assert_eq!(joined, ["news", "private:u"]);
    let (_, body) = app
        .publish_form(&[("message", "yours"), ("channel", "private:u")])
        .await;
    assert_eq!(body["delivered"], 1);
    assert_eq!(client.recv_json().await["data"], "yours");

    // Event streams and polls are admitted at the request: no token there,
    // no private channel, whatever the URL says.
    let (status, _) = app.poll("await_register=1&channel=private:u").await;
    assert_eq!(status, 403);
}

#[actix_web::test]
async fn json_and_static_answers_forbid_content_sniffing() {
    let app = spawn_app().await;
    for path in ["/health", "/static/herald.js", "/", "/nothing-here"] {
        let response = app.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(
            response
                .headers()
                .get("x-content-type-options")
                .map(|v| v.to_str().unwrap()),
            Some("nosniff"),
            "{path}"
        );
    }
    let (status, _) = app.post_raw(Some("text/plain"), b"x".to_vec()).await;
    assert_eq!(status, 415);
    let refused = app
        .http
        .get(app.url("/stats"))
        .insert_header(("Host", "evil.test"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 421);
    assert_eq!(
        refused.headers().get("x-content-type-options").unwrap(),
        "nosniff"
    );
}

#[actix_web::test]
async fn a_null_target_is_refused_rather_than_broadcast() {
    let app = spawn_app().await;
    let mut bystander = app.ws_registered("someone-else").await;
    for body in [
        json!({"message": "for user 42", "id": null}),
        json!({"message": "for a channel", "channel": null}),
        json!({"message": "both", "id": null, "channel": "news"}),
    ] {
        let (status, reply) = app.publish_json(&body).await;
        assert_eq!(status, 400, "{body}: {reply}");
    }
    let (status, _) = app.publish_json(&json!({"message": "sentinel"})).await;
    assert_eq!(status, 200);
    assert_eq!(bystander.recv_json().await["data"], "sentinel");
}

#[actix_web::test]
async fn a_long_poll_ends_when_its_token_expires() {
    let app = spawn_app_with(with_tokens).await;
    let token = crate::helpers::mint(
        &json!({"sub": "vip", "exp": now() + 2, "channels": ["private:vip"]}),
        CLIENT_SECRET,
    );
    // poll_timeout_secs is 25: the answer must come at the expiry instead,
    // well within the test's wait.
    let (status, body) = within(
        "the poll to end at the token's expiry",
        app.poll(&format!("token={token}&channel=private:vip")),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["messages"], json!([]), "{body}");
}
