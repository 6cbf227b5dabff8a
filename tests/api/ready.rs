//! `GET /ready` (readiness) beside `GET /health` (liveness): 200 while the
//! node can accept and deliver; 503 with a reason and `Retry-After` while
//! Redis is away and from the first stop signal on, while `/health` stays
//! 200; `shutdown_drain_ms` keeps serving meanwhile.

use actix_web::http::StatusCode;
use herald::config::BrokerKind;
use serde_json::json;

use crate::helpers::process::{sigterm, HeraldProcess};
use crate::helpers::redis::Redis;
use crate::helpers::{spawn_app, spawn_app_with, within, RawWs, WAIT};

#[actix_web::test]
async fn a_node_that_can_serve_is_ready() {
    let app = spawn_app().await;
    let (status, retry, body) = app.ready().await;
    assert_eq!(
        (status, retry, body),
        (StatusCode::OK, None, json!({"ready": true}))
    );
    let resp = app.http.post(app.url("/ready")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
}

#[actix_web::test]
async fn without_redis_the_node_is_not_ready_but_alive_and_ready_again_after() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let url = redis.url();
    let app = spawn_app_with(|c| {
        c.broker.kind = BrokerKind::Redis;
        c.broker.url = url;
    })
    .await;
    app.wait_for_ready(StatusCode::OK).await;

    redis.kill();
    // Once the node knows (before, a publish written to the broken
    // connection has an unknown outcome: 504), a publish: 503, with
    // Retry-After too. (The Redis client may take a few seconds to give
    // up: a longer wait than the usual.)
    app.wait_for_health("the node to see Redis gone", |h| {
        h["broker_connected"] == false
    })
    .await;
    let resp = awc::Client::builder()
        .timeout(WAIT * 3)
        .finish()
        .post(app.url("/"))
        .send_form(&[("message", "lost?")])
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(resp.headers().contains_key("retry-after"), "{resp:?}");
    let (retry, body) = app.wait_for_ready(StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["code"], "broker_disconnected", "{body}");
    assert!(body["error"].as_str().unwrap().contains("Redis"), "{body}");
    assert!(retry.is_some_and(|s| s > 0), "Retry-After: {retry:?}");
    // Alive all the same, and saying why.
    let health = app.health().await;
    assert_eq!(
        (&health["status"], &health["broker_connected"]),
        (&json!("ok"), &json!(false))
    );

    redis.restart().await;
    let (retry, body) = app.wait_for_ready(StatusCode::OK).await;
    assert_eq!((retry, body), (None, json!({"ready": true})));
}

#[actix_web::test]
async fn on_sigterm_the_node_drains_not_ready_but_serving_then_exits_0() {
    // A drain far longer than the test: the second signal ends it.
    let config = "port = 0\nworkers = 1\nshutdown_timeout_secs = 5\nshutdown_drain_ms = 600000\n";
    let mut herald = HeraldProcess::start(config, &[]).await;
    let app = herald.app();
    assert_eq!(app.ready().await.0, StatusCode::OK);
    let mut before = RawWs::connect(herald.port, "id=before").await;
    assert_eq!(before.recv_json().await["type"], "registered");

    sigterm(herald.pid()).await;
    herald.log_line("draining: /ready answers 503").await;
    let (retry, body) = app.wait_for_ready(StatusCode::SERVICE_UNAVAILABLE).await;
    assert_eq!(body["code"], "shutting_down", "{body}");
    assert!(retry.is_some_and(|s| s > 0), "Retry-After: {retry:?}");
    // Still alive and serving: health, new sessions, publishing.
    assert_eq!(app.health().await["status"], "ok");
    let mut during = RawWs::connect(herald.port, "id=during").await;
    assert_eq!(during.recv_json().await["type"], "registered");
    let (status, body) = app.publish_form(&[("message", "still here")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for ws in [&mut before, &mut during] {
        assert_eq!(ws.recv_json().await["data"], "still here");
    }

    // The second signal ends the drain: sessions close, herald exits 0.
    sigterm(herald.pid()).await;
    for ws in [&mut before, &mut during] {
        assert_eq!(
            ws.expect_close().await,
            herald::protocol::close_code::GOING_AWAY
        );
    }
    let status = within("herald to exit", herald.child.wait()).await.unwrap();
    assert_eq!(status.code(), Some(0));
}

#[actix_web::test]
async fn the_drain_ends_by_itself_then_sessions_close() {
    let config = "port = 0\nworkers = 1\nshutdown_timeout_secs = 5\nshutdown_drain_ms = 200\n";
    let mut herald = HeraldProcess::start(config, &[]).await;
    let mut ws = RawWs::connect(herald.port, "id=leaving").await;
    assert_eq!(ws.recv_json().await["type"], "registered");

    sigterm(herald.pid()).await;
    herald.log_line("serving on for 200 ms").await;
    assert_eq!(
        ws.expect_close().await,
        herald::protocol::close_code::GOING_AWAY
    );
    let status = within("herald to exit", herald.child.wait()).await.unwrap();
    assert_eq!(status.code(), Some(0));
}

#[actix_web::test]
async fn head_probes_answer_like_get_without_a_body() {
    let app = spawn_app().await;
    for path in ["/ready", "/health", "/", "/static/herald.js"] {
        let mut resp = app.http.head(app.url(path)).send().await.expect("HEAD");
        assert_eq!(resp.status(), StatusCode::OK, "HEAD {path}");
        let body = resp.body().await.expect("no body");
        assert!(body.is_empty(), "HEAD {path} sent {} bytes", body.len());
    }
    // HEAD does not open a session.
    for path in ["/events", "/poll"] {
        let resp = app.http.head(app.url(path)).send().await.expect("HEAD");
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "HEAD {path}");
    }
}
