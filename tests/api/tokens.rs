//! Signed client identity: the token's `sub` is the id, nobody can claim
//! another's, tokens expire, private channels need the claim.

use actix_web::http::StatusCode;
use herald::protocol::close_code;
use serde_json::json;

use crate::helpers::{
    mint, now, spawn_app_with, token_for, with_tokens, RawWs, CLIENT_SECRET, FIN, OP_CLOSE, OP_TEXT,
};

#[actix_web::test]
async fn a_token_in_the_url_registers_its_sub_and_an_id_beside_it_is_ignored() {
    let app = spawn_app_with(with_tokens).await;
    let token = token_for("alice", &[]);
    let mut client = app.ws(&format!("token={token}&id=victim")).await;

    let frame = client.recv_json().await;
    assert_eq!(
        (&frame["type"], &frame["id"]),
        (&json!("registered"), &json!("alice"))
    );

    let (_, body) = app
        .publish_form(&[("message", "m"), ("id", "victim")])
        .await;
    assert_eq!(body["delivered"], 0);
    let (_, body) = app
        .publish_form(&[("message", "for alice"), ("id", "alice")])
        .await;
    assert_eq!(body["delivered"], 1);
    assert_eq!(client.recv_json().await["data"], "for alice");
}

#[actix_web::test]
async fn a_token_in_the_register_frame_wins_over_its_id() {
    let app = spawn_app_with(with_tokens).await;
    let mut client = app.ws("").await;
    let token = token_for("bob", &[]);
    client
        .send_json(&json!({"type": "register", "id": "victim", "token": token}))
        .await;
    assert_eq!(client.recv_json().await["id"], "bob");
    app.wait_for_counts(1, 1).await;
}

#[actix_web::test]
async fn bad_tokens_are_refused_at_the_upgrade_with_401() {
    let app = spawn_app_with(with_tokens).await;
    let expired = mint(&json!({"sub": "a", "exp": now() - 60}), CLIENT_SECRET);
    let foreign = mint(
        &json!({"sub": "a", "exp": now() + 60}),
        "some-other-secret-0123456789abcdef",
    );
    // An attacker's edit of a library-made token: the header swapped for
    // {"alg":"none","typ":"JWT"} (base64url) and the signature dropped.
    let signed = mint(&json!({"sub": "a", "exp": now() + 60}), CLIENT_SECRET);
    let claims = signed.split('.').nth(1).expect("claims part");
    let none = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{claims}.");
    let hs512 = {
        let key = jsonwebtoken::EncodingKey::from_secret(CLIENT_SECRET.as_bytes()).unwrap();
        let header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS512);
        jsonwebtoken::encode(&header, &json!({"sub": "a", "exp": now() + 60}), &key).unwrap()
    };
    let cases = [
        ("expired", expired),
        ("foreign", foreign),
        ("none", none),
        ("hs512", hs512),
    ];
    for (name, token) in cases {
        let (status, body) = app.ws_attempt(&format!("token={token}"), &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{name}: {body}");
        assert_eq!(body["code"], "invalid_token", "{name}");
    }
}

#[actix_web::test]
async fn bad_tokens_in_a_frame_get_an_error_and_no_identity() {
    let app = spawn_app_with(with_tokens).await;
    let mut client = app.ws("").await;
    let expired = mint(&json!({"sub": "a", "exp": now() - 60}), CLIENT_SECRET);
    client
        .send_json(&json!({"type": "register", "token": expired}))
        .await;
    let frame = client.recv_json().await;
    assert_eq!(frame["type"], "error");
    assert!(
        frame["error"].as_str().unwrap().contains("token expired"),
        "{frame}"
    );
    app.wait_for_counts(1, 0).await;
}

#[actix_web::test]
async fn with_require_token_nobody_can_claim_an_id() {
    let app = spawn_app_with(|c| {
        with_tokens(c);
        c.require_token = true;
    })
    .await;
    let mut raw = RawWs::connect(app.port, "id=victim").await;
    // While the socket is open, the id it asked for in the URL is nobody's.
    let (_, body) = app
        .publish_form(&[("message", "m"), ("id", "victim")])
        .await;
    assert_eq!(body["delivered"], 0);
    assert_eq!(app.health().await["ids"], 0);

    let register = br#"{"type":"register","id":"victim"}"#;
    raw.send_frame(FIN | OP_TEXT, register, true).await;

    // The next frames are an error saying why, then the close: no
    // registered, no message.
    let (opcode, payload) = raw.read_frame().await.expect("a frame");
    let error: serde_json::Value = serde_json::from_slice(&payload).expect("an error frame");
    assert_eq!(error["type"], "error", "{error}");
    assert!(
        error["error"]
            .as_str()
            .unwrap()
            .contains("requires a token"),
        "{error}"
    );
    let (opcode_after, payload) = raw.read_frame().await.expect("a frame");
    assert_eq!(opcode, OP_TEXT);
    let opcode = opcode_after;
    assert_eq!(opcode, OP_CLOSE, "{}", String::from_utf8_lossy(&payload));
    assert_eq!(
        u16::from_be_bytes([payload[0], payload[1]]),
        close_code::UNAUTHORIZED
    );
    app.wait_for_counts(0, 0).await;
}

#[actix_web::test]
async fn with_require_token_a_silent_unauthenticated_client_is_closed() {
    let app = spawn_app_with(|c| {
        with_tokens(c);
        c.require_token = true;
        c.heartbeat_interval_ms = 50;
        c.client_timeout_ms = 300;
    })
    .await;
    let mut raw = RawWs::connect(app.port, "").await;
    // Not counted as a session meanwhile: broadcasts do not reach it.
    let (_, body) = app.publish_form(&[("message", "m")]).await;
    assert_eq!(body["delivered"], 0);
    assert_eq!(raw.expect_close().await, close_code::UNAUTHORIZED);
}

#[actix_web::test]
async fn with_require_token_a_token_in_the_frame_admits_the_session() {
    let app = spawn_app_with(|c| {
        with_tokens(c);
        c.require_token = true;
    })
    .await;
    let mut client = app.ws("channel=news").await;
    client
        .send_json(&json!({"type": "register", "token": token_for("carol", &[])}))
        .await;
    assert_eq!(client.recv_json().await["id"], "carol");
    // The channel asked for in the URL is joined once admitted.
    let subscribed = client.recv_json().await;
    assert_eq!(
        (&subscribed["type"], &subscribed["channel"]),
        (&json!("subscribed"), &json!("news"))
    );
    let (_, body) = app
        .publish_form(&[("message", "hi carol"), ("id", "carol")])
        .await;
    assert_eq!(body["delivered"], 1);
}

#[actix_web::test]
async fn private_channels_need_a_token_that_lists_them() {
    let app = spawn_app_with(with_tokens).await;
    let mut anonymous = app.ws("id=anon").await;
    anonymous.recv_json().await;
    anonymous
        .send_json(&json!({"type": "subscribe", "channel": "private:dave"}))
        .await;
    let frame = anonymous.recv_json().await;
    assert_eq!(frame["type"], "error");
    assert!(
        frame["error"].as_str().unwrap().contains("needs a token"),
        "{frame}"
    );

    let token = token_for("dave", &["private:dave"]);
    let mut dave = app.ws(&format!("token={token}")).await;
    dave.recv_json().await;
    dave.send_json(&json!({"type": "subscribe", "channel": "private:dave"}))
        .await;
    assert_eq!(dave.recv_json().await["type"], "subscribed");
    dave.send_json(&json!({"type": "subscribe", "channel": "private:erin"}))
        .await;
    let frame = dave.recv_json().await;
    assert!(
        frame["error"].as_str().unwrap().contains("does not list"),
        "{frame}"
    );

    let (_, body) = app
        .publish_form(&[("message", "secret"), ("channel", "private:dave")])
        .await;
    assert_eq!(body["delivered"], 1);
    assert_eq!(dave.recv_json().await["data"], "secret");

    let (status, body) = app.ws_attempt("channel=private:dave", &[]).await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::FORBIDDEN, &json!("forbidden"))
    );
}

#[actix_web::test]
async fn an_expiring_token_closes_the_session_with_4002() {
    let app = spawn_app_with(with_tokens).await;
    let token = mint(&json!({"sub": "frank", "exp": now() + 1}), CLIENT_SECRET);
    let mut raw = RawWs::connect(app.port, &format!("token={token}")).await;
    assert_eq!(raw.recv_json().await["id"], "frank");
    assert_eq!(raw.expect_close().await, close_code::TOKEN_EXPIRED);
    app.wait_for_counts(0, 0).await;
}

#[actix_web::test]
async fn a_refreshed_token_keeps_the_session_past_the_old_expiry() {
    let app = spawn_app_with(|c| {
        with_tokens(c);
        c.heartbeat_interval_ms = 200;
        c.client_timeout_ms = 1_000;
    })
    .await;
    let short = mint(&json!({"sub": "gina", "exp": now() + 3}), CLIENT_SECRET);
    let mut client = app.ws(&format!("token={short}")).await;
    assert_eq!(client.recv_json().await["id"], "gina");

    let other = token_for("someone-else", &[]);
    client
        .send_json(&json!({"type": "refresh", "token": other}))
        .await;
    assert!(client.recv_json().await["error"]
        .as_str()
        .unwrap()
        .contains("another id"));

    let fresh = token_for("gina", &[]);
    client
        .send_json(&json!({"type": "refresh", "token": fresh}))
        .await;
    let frame = client.recv_json().await;
    assert_eq!(
        (&frame["type"], &frame["id"]),
        (&json!("refreshed"), &json!("gina"))
    );

    // Twenty beats of 200 ms outlast the first token (3 s at most).
    client.answer_pings(20).await;
    let (_, body) = app
        .publish_form(&[("message", "still on"), ("id", "gina")])
        .await;
    assert_eq!(body["delivered"], 1);
}

#[actix_web::test]
async fn a_token_on_a_server_without_tokens_is_refused() {
    let app = spawn_app_with(|_| {}).await;
    let (status, body) = app
        .ws_attempt(&format!("token={}", token_for("h", &[])), &[])
        .await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_query"))
    );
}
