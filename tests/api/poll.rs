//! `GET /poll`: long-polling on the same routing and history.

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use serde_json::json;

use crate::helpers::{message_seqs, spawn_app, spawn_app_with, within, RawHttp, TestApp};

#[actix_web::test]
async fn a_poll_with_a_position_answers_at_once_with_what_was_missed() {
    let app = spawn_app().await;
    let (epoch, since) = app.position().await;
    let mut seqs = Vec::new();
    for (text, target) in [("a", "id"), ("b", "channel"), ("c", "id")] {
        let value = if target == "id" { "63" } else { "news" };
        let (_, body) = app
            .publish_form(&[("message", text), (target, value)])
            .await;
        seqs.push(body["seq"].as_u64().unwrap());
    }
    app.publish_form(&[("message", "x"), ("id", "64")]).await;

    let (status, body) = app
        .poll(&format!("id=63&channel=news&since={since}&epoch={epoch}"))
        .await;

    assert_eq!(status, StatusCode::OK);
    let got = message_seqs(&body);
    assert_eq!(got, seqs);
    assert_eq!(
        body["messages"][1],
        json!({"type": "message", "seq": seqs[1], "channel": "news", "data": "b"})
    );
    assert_eq!(body["epoch"], epoch.as_str());
    assert_eq!(
        body["seq"],
        seqs[2] + 1,
        "the server's position, to poll from next"
    );
    app.wait_for_counts(0, 0).await;
}

#[actix_web::test]
async fn a_poll_with_nothing_pending_waits_for_the_next_message() {
    let app = spawn_app().await;
    let (epoch, since) = app.position().await;
    let port = app.port;
    let waiting = actix_web::rt::spawn(async move {
        let app = TestApp {
            port,
            http: awc::Client::default(),
        };
        app.poll(&format!("id=63&since={since}&epoch={epoch}"))
            .await
    });
    app.wait_for_counts(1, 1).await; // the poll is waiting
    let (_, published) = app.publish_form(&[("message", "now"), ("id", "63")]).await;

    let (status, body) = within("the poll answer", waiting).await.unwrap();
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["messages"][0]["data"], "now");
    assert_eq!(body["seq"], published["seq"]);
    app.wait_for_counts(0, 0).await;
}

#[actix_web::test]
async fn a_poll_that_times_out_answers_an_empty_list() {
    let app = spawn_app_with(|c| c.poll_timeout_secs = 1).await;
    let (epoch, seq) = app.position().await;
    let (status, body) = app.poll("id=1").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"messages": [], "epoch": epoch, "seq": seq}));
    app.wait_for_counts(0, 0).await;
}

#[actix_web::test]
async fn a_poll_from_another_lifetime_resets() {
    let app = spawn_app().await;
    let (status, body) = app.poll("id=1&since=3&epoch=0000").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["type"], "reset");
    assert!(body["reason"].as_str().unwrap().contains("epoch"));
}

/// Tries `/ws` from 127.0.0.1 until it is admitted; how long that took.
/// Fails after `limit`.
async fn admitted_within(app: &TestApp, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let (status, _) = app.ws_attempt("", &[]).await;
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return start.elapsed();
        }
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert!(
            start.elapsed() < limit,
            "the slots were still held after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn abandoned_polls_free_their_slots_and_sessions_within_seconds() {
    // The default poll_timeout_secs (25 s): the slots must come back long
    // before the polls would have timed out.
    let app = spawn_app_with(|c| c.max_connections_per_ip = 2).await;

    // Fire and forget: each request sent, its socket closed at once.
    for id in ["gone1", "gone2"] {
        drop(RawHttp::get(app.port, &format!("/poll?id={id}"), None).await);
    }
    app.wait_for_counts(2, 2).await;
    let took = admitted_within(&app, Duration::from_millis(2500)).await;
    eprintln!("fire-and-forget polls: a slot was free again after {took:?}");
    app.wait_for_counts(0, 0).await;

    // Read the answer's head, then leave (a tab navigating away).
    let mut polls = Vec::new();
    for id in ["left1", "left2"] {
        let mut poll = RawHttp::get(app.port, &format!("/poll?id={id}"), None).await;
        assert_eq!(poll.head().await.0, 200);
        polls.push(poll);
    }
    app.wait_for_counts(2, 2).await;
    let (status, _) = app.ws_attempt("", &[]).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "both slots taken");
    drop(polls);
    let took = admitted_within(&app, Duration::from_millis(3000)).await;
    eprintln!("polls left after their head: a slot was free again after {took:?}");
    app.wait_for_counts(0, 0).await;
}

#[actix_web::test]
async fn a_long_poll_keeps_its_slot_until_its_answer_is_written() {
    let app = spawn_app_with(|c| {
        c.max_connections_per_ip = 1;
        c.history_size = 1000;
        c.max_replay_bytes = 16 * 1024 * 1024;
    })
    .await;
    let (epoch, since) = app.position().await;
    let payload = "x".repeat(32 * 1024);
    let mut published = Vec::new();
    for _ in 0..256 {
        let (_, body) = app.publish_form(&[("message", &payload)]).await;
        published.push(body["seq"].as_u64().unwrap());
    }

    // An 8 MiB answer (more than the kernel's socket buffers take) to a
    // client that reads only its head, through a small receive buffer:
    // much of the body is still to be written.
    let path = format!("/poll?since={since}&epoch={epoch}");
    let mut poll = RawHttp::get(app.port, &path, Some(4096)).await;
    let (status, head) = poll.head().await;
    assert_eq!(status, 200);
    app.wait_for_counts(0, 0).await; // the router is done with it
    let (status, _) = app.ws_attempt("", &[]).await;
    assert_eq!(
        status,
        StatusCode::TOO_MANY_REQUESTS,
        "the unwritten answer still holds its connection slot"
    );

    // Once the client has read it all, the slot is free.
    let body: serde_json::Value = serde_json::from_slice(&poll.body(&head).await).unwrap();
    let got = message_seqs(&body);
    assert_eq!(got, published);
    admitted_within(&app, crate::helpers::WAIT).await;
}
