//! Hostile clients: foreign origins, too many connections, floods, bad bytes.

use actix_web::http::StatusCode;
use herald::protocol::close_code;
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with, RawWs, FIN, OP_TEXT};

#[actix_web::test]
async fn a_websocket_from_a_foreign_origin_is_refused() {
    let app = spawn_app_with(|c| c.allowed_origins = vec!["https://app.example.com".into()]).await;
    let (status, body) = app
        .ws_attempt("", &[("origin", "https://evil.example")])
        .await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::FORBIDDEN, &json!("forbidden"))
    );

    let own = format!("http://127.0.0.1:{}", app.port);
    for origin in [own.as_str(), "https://app.example.com"] {
        let (status, _) = app.ws_attempt("", &[("origin", origin)]).await;
        assert_eq!(status, StatusCode::SWITCHING_PROTOCOLS, "{origin}");
    }
}

#[actix_web::test]
async fn a_rebound_domain_is_not_taken_for_herald_itself() {
    // DNS rebinding: a page of http://evil.example:PORT reaches 127.0.0.1 with
    // a Host header naming its own domain, matching its Origin.
    let app = spawn_app().await;
    let host = format!("evil.example:{}", app.port);
    let origin = format!("http://{host}");
    let headers = [("origin", origin.as_str()), ("host", host.as_str())];
    let (status, body) = app.ws_attempt("", &headers).await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::MISDIRECTED_REQUEST, &json!("unknown_host"))
    );
    let (status, body) = app.publish_form_with(&headers, &[("message", "m")]).await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::MISDIRECTED_REQUEST, &json!("unknown_host"))
    );
    // Listed as a host but not as an origin, the name still cannot use
    // herald from a browser: it is not taken for herald's own origin.
    let app = spawn_app_with(|c| c.allowed_hosts = vec!["evil.example".into()]).await;
    let host = format!("evil.example:{}", app.port);
    let origin = format!("http://{host}");
    let headers = [("origin", origin.as_str()), ("host", host.as_str())];
    let (status, body) = app.ws_attempt("", &headers).await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::FORBIDDEN, &json!("forbidden"))
    );
}

#[actix_web::test]
async fn past_max_connections_the_upgrade_gets_503() {
    let app = spawn_app_with(|c| c.max_connections = 2).await;
    let first = app.ws("").await;
    let _second = app.ws("").await;

    let (status, body) = app.ws_attempt("", &[]).await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::SERVICE_UNAVAILABLE, &json!("server_full"))
    );

    first.close().await;
    app.wait_for_counts(1, 0).await;
    let _third = app.ws_when_admitted("").await;
}

#[actix_web::test]
async fn past_max_connections_per_ip_the_upgrade_gets_429() {
    let app = spawn_app_with(|c| c.max_connections_per_ip = 1).await;
    let _first = app.ws("").await;
    let (status, body) = app.ws_attempt("", &[]).await;
    assert_eq!(
        (status, &body["code"]),
        (
            StatusCode::TOO_MANY_REQUESTS,
            &json!("too_many_connections")
        )
    );
}

#[actix_web::test]
async fn a_flooding_client_is_warned_then_closed_with_1008() {
    let app = spawn_app_with(|c| c.max_client_frames_per_sec = 5).await;
    let mut raw = RawWs::connect(app.port, "").await;
    for _ in 0..30 {
        raw.send_frame(
            FIN | OP_TEXT,
            br#"{"type":"subscribe","channel":"x"}"#,
            true,
        )
        .await;
    }
    let mut subscribed = 0;
    let mut warned = false;
    loop {
        match raw.read_frame().await {
            Some((OP_TEXT, payload)) => {
                let frame: serde_json::Value = serde_json::from_slice(&payload).unwrap();
                match frame["type"].as_str() {
                    Some("subscribed") => subscribed += 1,
                    Some("connected") => {}
                    Some("error") => {
                        assert!(frame["error"].as_str().unwrap().contains("too many frames"));
                        warned = true;
                    }
                    other => panic!("unexpected {other:?}"),
                }
            }
            Some((crate::helpers::OP_CLOSE, payload)) => {
                let code = u16::from_be_bytes([payload[0], payload[1]]);
                assert_eq!(code, close_code::POLICY_VIOLATION);
                break;
            }
            Some(_) => continue,
            None => panic!("connection ended without a close frame"),
        }
    }
    assert!(warned, "an error frame came before the close");
    assert!(
        (5..30).contains(&subscribed),
        "{subscribed} frames were handled"
    );
    app.wait_for_counts(0, 0).await;
}

#[actix_web::test]
async fn control_characters_and_invalid_utf8_are_refused_in_every_input() {
    let app = spawn_app().await;
    // Query.
    for query in ["id=a%0Db", "id=a%00", "id=%FF%FE", "channel=%E2%82"] {
        let (status, _) = app.ws_attempt(query, &[]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
    }
    // POST form, as raw bytes.
    for body in [
        &b"message=m&id=a%0Ab"[..],
        b"message=m&id=%C3",
        b"message=m&channel=a%00",
    ] {
        let (status, _) = app
            .post_raw(Some("application/x-www-form-urlencoded"), body.to_vec())
            .await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{}",
            String::from_utf8_lossy(body)
        );
    }
    // Frames.
    let mut client = app.ws("").await;
    client.send_text(r#"{"type":"register","id":"a\rb"}"#).await;
    assert_eq!(client.recv_json().await["type"], "error");
    client
        .send_text(r#"{"type":"subscribe","channel":"a\u0000"}"#)
        .await;
    assert_eq!(client.recv_json().await["type"], "error");
    app.wait_for_counts(1, 0).await;
}
