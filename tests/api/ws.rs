//! `GET /ws`: registration, error frames, fragmented messages.

use actix_web::http::StatusCode;
use awc::error::WsClientError;
use awc::ws;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with, RawWs, FIN, OP_CONT, OP_PING, OP_PONG, OP_TEXT};

#[actix_web::test]
async fn registering_in_the_url_is_answered_with_the_greeting() {
    let app = spawn_app().await;
    let (_, published) = app.publish_form(&[("message", "earlier")]).await;
    let mut client = app.ws("id=63").await;
    let health = app.health().await;
    assert_eq!(
        client.recv_json().await,
        json!({
            "type": "registered",
            "id": "63",
            "greeting": "Hello client 63",
            "epoch": health["epoch"],
            "seq": published["seq"],
        })
    );
}

#[actix_web::test]
async fn a_register_frame_registers_and_a_second_one_moves_the_session() {
    let app = spawn_app().await;
    let mut client = app.ws("").await;

    client
        .send_json(&json!({"type": "register", "id": "a"}))
        .await;
    assert_eq!(client.recv_json().await["id"], "a");
    let (_, body) = app.publish_form(&[("message", "to a"), ("id", "a")]).await;
    assert_eq!(body["delivered"], 1);
    assert_eq!(client.recv_json().await["data"], "to a");

    client
        .send_json(&json!({"type": "register", "id": 7}))
        .await;
    assert_eq!(client.recv_json().await["id"], "7");
    let (_, body) = app.publish_form(&[("message", "to a"), ("id", "a")]).await;
    assert_eq!(body["delivered"], 0);
    let (_, body) = app.publish_form(&[("message", "to 7"), ("id", "7")]).await;
    assert_eq!(body["delivered"], 1);
    assert_eq!(client.recv_json().await["data"], "to 7");
    app.wait_for_counts(1, 1).await;
}

#[actix_web::test]
async fn bad_frames_get_an_error_frame_and_the_session_stays_open() {
    let app = spawn_app().await;
    let mut client = app.ws("").await;
    let cases: [(&str, &str); 6] = [
        ("hello", "not valid JSON"),
        (r#"{"type":"dance"}"#, "unknown variant `dance`"),
        (r#"{"id":"1"}"#, "type"),
        (r#"{"type":"register","id":""}"#, "id must not be empty"),
        (
            r#"{"type":"register","id":"a\u0000b"}"#,
            "control character",
        ),
        (r#"{"type":"register"}"#, "needs an `id` or a `token`"),
    ];
    for (text, reason) in cases {
        client.send_text(text).await;
        let frame = client.recv_json().await;
        assert_eq!(frame["type"], "error", "{text}: {frame}");
        let error = frame["error"].as_str().unwrap();
        assert!(
            error.contains(reason),
            "{text}: {error:?} should mention {reason:?}"
        );
    }
    client.send(ws::Message::Binary(vec![1, 2, 3].into())).await;
    let frame = client.recv_json().await;
    assert!(
        frame["error"].as_str().unwrap().contains("binary"),
        "{frame}"
    );

    // Still open and usable.
    client
        .send_json(&json!({"type": "register", "id": "ok"}))
        .await;
    assert_eq!(client.recv_json().await["type"], "registered");
}

#[actix_web::test]
async fn a_bad_id_in_the_url_is_refused_before_the_upgrade() {
    let app = spawn_app().await;
    let url = format!("ws://127.0.0.1:{}/ws?id=a%0Ab", app.port);
    let err = app
        .http
        .ws(url)
        .connect()
        .await
        .err()
        .expect("upgrade refused");
    assert!(
        matches!(
            err,
            WsClientError::InvalidResponseStatus(StatusCode::BAD_REQUEST)
        ),
        "{err:?}"
    );
}

#[actix_web::test]
async fn a_plain_get_on_ws_is_a_json_400() {
    let app = spawn_app().await;
    let mut resp = app.http.get(app.url("/ws")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], "bad_upgrade");
}

#[actix_web::test]
async fn a_fragmented_message_is_reassembled() {
    let app = spawn_app().await;
    let mut raw = RawWs::connect(app.port, "").await;
    assert_eq!(raw.recv_json().await["type"], "connected");

    raw.send_frame(OP_TEXT, br#"{"type":"reg"#, true).await;
    raw.send_frame(OP_CONT, br#"ister","#, true).await;
    // A control frame may arrive between fragments.
    raw.send_frame(FIN | OP_PING, b"mid", true).await;
    raw.send_frame(FIN | OP_CONT, br#""id":"frag"}"#, true)
        .await;

    assert_eq!(raw.read_frame().await, Some((OP_PONG, b"mid".to_vec())));
    let frame = raw.recv_json().await;
    assert_eq!(frame["type"], "registered", "{frame}");
    assert_eq!(frame["id"], "frag");
}

#[actix_web::test]
async fn a_ping_is_answered_with_its_payload() {
    let app = spawn_app_with(|c| {
        c.heartbeat_interval_ms = 60_000;
        c.client_timeout_ms = 120_000;
    })
    .await;
    let mut raw = RawWs::connect(app.port, "").await;
    assert_eq!(raw.recv_json().await["type"], "connected");
    raw.send_frame(FIN | OP_PING, b"are you there", true).await;
    assert_eq!(
        raw.read_frame().await,
        Some((OP_PONG, b"are you there".to_vec()))
    );
}
