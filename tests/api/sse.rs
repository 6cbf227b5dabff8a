//! `GET /events`: Server-Sent Events on the same routing and history.

use actix_web::http::StatusCode;
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with, token_for, with_tokens, SseEvent};

#[actix_web::test]
async fn events_carry_frames_and_positions() {
    let app = spawn_app().await;
    let mut events = app.sse("id=63&channel=news", &[]).await;
    let (id, registered) = events.next_data().await;
    let epoch = registered["epoch"].as_str().unwrap().to_owned();
    // The opening frames carry the position the stream starts from.
    assert_eq!(registered["type"], "registered");
    assert_eq!(id, Some(format!("{epoch}:0")));
    assert_eq!(events.next_data().await.1["type"], "subscribed");

    let (_, body) = app.publish_form(&[("message", "hi"), ("id", "63")]).await;
    let seq = body["seq"].as_u64().unwrap();
    let (id, frame) = events.next_data().await;
    assert_eq!(id, Some(format!("{epoch}:{seq}")));
    assert_eq!(
        frame,
        json!({"type": "message", "seq": seq, "id": "63", "data": "hi"})
    );

    let (_, body) = app
        .publish_form(&[("message", "n"), ("channel", "news")])
        .await;
    assert_eq!(body["delivered"], 1);
    assert_eq!(events.next_data().await.1["channel"], "news");
}

#[actix_web::test]
async fn last_event_id_resumes_the_stream() {
    // A short heartbeat notices the dropped stream quickly.
    let app = spawn_app_with(|c| {
        c.heartbeat_interval_ms = 50;
        c.client_timeout_ms = 200;
    })
    .await;
    let mut events = app.sse("id=5", &[]).await;
    events.next_data().await; // registered
    app.publish_form(&[("message", "first"), ("id", "5")]).await;
    let (last_id, _) = events.next_data().await;
    drop(events);
    app.wait_for_counts(0, 0).await;

    let mut missed = Vec::new();
    for text in ["a", "b", "c"] {
        let (_, body) = app.publish_form(&[("message", text), ("id", "5")]).await;
        missed.push(body["seq"].as_u64().unwrap());
    }
    let last_id = last_id.expect("message events have ids");
    // The URL keeps its original (older) position; the header wins.
    let mut events = app
        .sse("id=5&since=0&epoch=stale", &[("last-event-id", &last_id)])
        .await;
    assert_eq!(events.next_data().await.1["type"], "registered");
    let mut got = Vec::new();
    for _ in 0..3 {
        let (id, frame) = events.next_data().await;
        assert!(id.is_some());
        got.push(frame["seq"].as_u64().unwrap());
    }
    assert_eq!(got, missed);
    let resumed = events.next_data().await.1;
    assert_eq!(
        (&resumed["type"], &resumed["count"]),
        (&json!("resumed"), &json!(3))
    );
}

#[actix_web::test]
async fn a_keep_alive_comment_comes_every_heartbeat() {
    let app = spawn_app_with(|c| {
        c.heartbeat_interval_ms = 50;
        c.client_timeout_ms = 200;
    })
    .await;
    let mut events = app.sse("", &[]).await;
    let mut comments = 0;
    while comments < 3 {
        if events.next_event().await.comment.as_deref() == Some("keep-alive") {
            comments += 1;
        }
    }
}

/// herald.js notices a stalled stream by its pings: they must reach the
/// page (a named event with data, unlike a comment) at the opening and every
/// heartbeat, name the heartbeat, and stay out of `onmessage` and of
/// `Last-Event-ID`.
#[actix_web::test]
async fn a_ping_event_comes_at_the_opening_and_every_heartbeat() {
    let app = spawn_app_with(|c| {
        c.heartbeat_interval_ms = 50;
        c.client_timeout_ms = 200;
    })
    .await;
    let mut events = app.sse("id=p", &[]).await;
    let ping = SseEvent {
        event: Some("ping".into()),
        id: None,
        data: Some(r#"{"heartbeat_interval_ms":50}"#.into()),
        comment: None,
    };
    // The opening comment, then a ping before any frame.
    assert_eq!(events.next_event().await.comment.as_deref(), Some("herald"));
    assert_eq!(events.next_event().await, ping);
    let mut pings = 0;
    let mut frames = Vec::new();
    while pings < 3 || frames.is_empty() {
        let event = events.next_event().await;
        if event.event.is_some() {
            assert_eq!(event, ping);
            pings += 1;
        } else if event.data.is_some() {
            frames.push(event.json()["type"].clone());
        }
    }
    assert_eq!(frames, [json!("registered")], "pings are not frames");
}

#[actix_web::test]
async fn a_closed_event_stream_leaves_no_session() {
    let app = spawn_app_with(|c| {
        c.heartbeat_interval_ms = 50;
        c.client_timeout_ms = 200;
    })
    .await;
    let mut events = app.sse("id=9&channel=c", &[]).await;
    events.next_data().await;
    app.wait_for_counts(1, 1).await;
    drop(events);
    app.wait_for_health("the stream to be gone", |h| {
        h["sessions"] == 0 && h["ids"] == 0 && h["channels"] == 0
    })
    .await;
}

#[actix_web::test]
async fn event_streams_follow_the_same_auth_rules() {
    let app = spawn_app_with(|c| {
        with_tokens(c);
        c.require_token = true;
    })
    .await;
    let resp = app.http.get(app.url("/events?id=1")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let resp = app
        .http
        .get(app.url("/events"))
        .insert_header(("origin", "https://evil.example"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    let resp = app
        .http
        .get(app.url("/events?channel=private:x"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);

    let token = token_for("ivy", &["private:ivy"]);
    let mut events = app
        .sse(&format!("token={token}&channel=private:ivy"), &[])
        .await;
    assert_eq!(events.next_data().await.1["id"], "ivy");
    app.publish_form(&[("message", "psst"), ("channel", "private:ivy")])
        .await;
    assert_eq!(events.next_data().await.1["type"], "subscribed");
    assert_eq!(events.next_data().await.1["data"], "psst");
}

#[actix_web::test]
async fn a_stream_that_drops_before_any_message_resumes_from_its_opening_position() {
    let app = spawn_app_with(|c| {
        c.heartbeat_interval_ms = 50;
        c.client_timeout_ms = 200;
    })
    .await;
    app.publish_form(&[("message", "before")]).await;
    let mut events = app.sse("", &[]).await;
    let (opening, connected) = events.next_data().await;
    assert_eq!(connected["type"], "connected");
    drop(events);
    app.wait_for_counts(0, 0).await;
    let (_, missed) = app.publish_form(&[("message", "missed")]).await;

    let opening = opening.expect("the opening event has an id");
    let mut events = app.sse("", &[("last-event-id", &opening)]).await;
    let (_, frame) = events.next_data().await;
    assert_eq!(
        (&frame["data"], &frame["seq"]),
        (&json!("missed"), &missed["seq"])
    );
    assert_eq!(events.next_data().await.1["type"], "resumed");
}

#[actix_web::test]
async fn a_replay_longer_than_the_queue_arrives_whole() {
    let app = spawn_app_with(|c| c.max_pending_messages = 4).await;
    let (epoch, since) = app.position().await;
    for i in 0..20 {
        app.publish_form(&[("message", &format!("m{i}")), ("id", "z")])
            .await;
    }
    let mut events = app
        .sse(&format!("id=z&since={since}&epoch={epoch}"), &[])
        .await;
    assert_eq!(events.next_data().await.1["type"], "registered");
    for i in 0..20 {
        assert_eq!(events.next_data().await.1["data"], format!("m{i}"));
    }
    let (id, resumed) = events.next_data().await;
    assert_eq!(
        (&resumed["type"], &resumed["count"]),
        (&json!("resumed"), &json!(20))
    );
    assert_eq!(id, Some(format!("{epoch}:{}", since + 20)));
}
