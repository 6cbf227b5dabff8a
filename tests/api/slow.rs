//! A client that stops reading is cut off at its queue bound, without
//! slowing anyone else, and resumes from history when it reads again.

use herald::protocol::close_code;

use crate::helpers::{spawn_app_with, RawWs};

#[actix_web::test]
async fn a_client_that_never_reads_is_closed_at_its_queue_cap_and_others_keep_receiving() {
    let app = spawn_app_with(|c| {
        c.max_pending_messages = 8;
        c.history_size = 10_000;
    })
    .await;
    // A small receive buffer: the stalled client's socket fills quickly.
    let mut slow = RawWs::attempt_with_buffer(app.port, "id=slow", &[], Some(4096))
        .await
        .unwrap_or_else(|(status, body)| panic!("{status} {body}"));
    let registered = slow.recv_json().await;
    let epoch = registered["epoch"].as_str().unwrap().to_owned();
    let mut healthy = app.ws_registered("fast").await;
    app.wait_for_counts(2, 2).await;

    let payload = "x".repeat(32 * 1024);
    let mut published = Vec::new();
    let mut dropped_at = None;
    for i in 0..2_000 {
        let (_, body) = app.publish_form(&[("message", &payload)]).await;
        published.push(body["seq"].as_u64().unwrap());
        // The healthy client reads every message as it comes.
        let frame = healthy.recv_json().await;
        assert_eq!(frame["seq"], body["seq"]);
        if body["delivered"] == 1 {
            dropped_at = Some(i);
            break;
        }
        assert_eq!(body["delivered"], 2);
    }
    assert!(dropped_at.is_some(), "the stalled client was never dropped");
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .body()
        .await
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics
            .lines()
            .any(|l| l == "herald_slow_consumer_disconnects_total 1"),
        "{metrics}"
    );
    let health = app.health().await;
    assert_eq!(
        (&health["sessions"], &health["ids"]),
        (&1.into(), &1.into())
    );

    // Publishing still reaches the healthy client at once.
    let (_, body) = app.publish_form(&[("message", "after")]).await;
    assert_eq!(body["delivered"], 1);
    assert_eq!(healthy.recv_json().await["data"], "after");
    published.push(body["seq"].as_u64().unwrap());

    // The stalled client reads again: what was queued, then the close.
    let mut last_seq = registered["seq"].as_u64().unwrap();
    while let Some(frame) = slow.next_json().await {
        last_seq = frame["seq"].as_u64().unwrap();
    }
    assert_eq!(slow.close_code(), Some(close_code::SLOW_CONSUMER));
    assert!(last_seq < *published.last().unwrap());

    // And resumes from history with everything it missed.
    let query = format!("id=slow&since={last_seq}&epoch={epoch}");
    let mut back = RawWs::connect(app.port, &query).await;
    assert_eq!(back.recv_json().await["type"], "registered");
    let mut replayed = Vec::new();
    loop {
        let frame = back.recv_json().await;
        if frame["type"] == "resumed" {
            break;
        }
        replayed.push(frame["seq"].as_u64().unwrap());
    }
    let missed: Vec<u64> = published.into_iter().filter(|&s| s > last_seq).collect();
    assert_eq!(replayed, missed);
}

#[actix_web::test]
async fn a_stalled_connection_is_ended_and_frees_its_slot() {
    let app = spawn_app_with(|c| {
        c.max_pending_messages = 64;
        c.max_connections_per_ip = 1;
        c.heartbeat_interval_ms = 200;
        c.client_timeout_ms = 1_000;
    })
    .await;
    let slow = RawWs::attempt_with_buffer(app.port, "id=slow", &[], Some(4096))
        .await
        .unwrap_or_else(|(status, body)| panic!("{status} {body}"));
    app.wait_for_counts(1, 1).await;
    let (status, _) = app.ws_attempt("id=other", &[]).await;
    assert_eq!(status, actix_web::http::StatusCode::TOO_MANY_REQUESTS);

    // Fill the stalled client's buffers until herald drops it.
    let payload = "x".repeat(32 * 1024);
    let mut dropped = false;
    for _ in 0..2_000 {
        let (_, body) = app
            .publish_form(&[("message", &payload), ("id", "slow")])
            .await;
        if body["delivered"] == 0 {
            dropped = true;
            break;
        }
    }
    assert!(dropped, "the stalled client was never dropped");

    // The client never reads a byte, yet herald ends its side of the
    // connection (after `client_timeout_ms` without progress) and the slot
    // is free again.
    app.ws_when_admitted("id=other").await;
    drop(slow);
}
