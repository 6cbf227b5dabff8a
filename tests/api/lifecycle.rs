//! Sessions end cleanly however they end: close frame, dropped TCP
//! connection, heartbeat timeout. A live client survives the heartbeat.

use herald::protocol::close_code;

use crate::helpers::{spawn_app, spawn_app_with, RawWs};

#[actix_web::test]
async fn a_clean_close_leaves_no_trace() {
    let app = spawn_app().await;
    let client = app.ws_registered("63").await;
    app.wait_for_counts(1, 1).await;

    client.close().await;

    app.wait_for_counts(0, 0).await;
}

#[actix_web::test]
async fn a_dropped_tcp_connection_leaves_no_trace() {
    let app = spawn_app().await;
    let mut raw = RawWs::connect(app.port, "id=63").await;
    assert_eq!(raw.recv_json().await["type"], "registered");
    let _other_tab = app.ws_registered("63").await;
    app.wait_for_counts(2, 1).await;

    drop(raw);

    app.wait_for_counts(1, 1).await;
    let (_, body) = app.publish_form(&[("message", "m"), ("id", "63")]).await;
    assert_eq!(body["delivered"], 1);
}

#[actix_web::test]
async fn a_silent_client_is_dropped_after_the_timeout() {
    let app = spawn_app_with(|c| {
        c.heartbeat_interval_ms = 50;
        c.client_timeout_ms = 200;
    })
    .await;
    // Reads frames but never answers pings.
    let mut raw = RawWs::connect(app.port, "id=quiet").await;
    assert_eq!(raw.recv_json().await["type"], "registered");

    assert_eq!(raw.expect_close().await, close_code::HEARTBEAT_TIMEOUT);
    app.wait_for_counts(0, 0).await;
}

#[actix_web::test]
async fn a_client_that_answers_pings_outlives_the_timeout() {
    let app = spawn_app_with(|c| {
        c.heartbeat_interval_ms = 50;
        c.client_timeout_ms = 200;
    })
    .await;
    let mut client = app.ws_registered("alive").await;

    // Ten beats span 500 ms, well past the 200 ms timeout.
    client.answer_pings(10).await;

    let (_, body) = app
        .publish_form(&[("message", "still here"), ("id", "alive")])
        .await;
    assert_eq!(body["delivered"], 1);
    assert_eq!(client.recv_json().await["data"], "still here");
}
