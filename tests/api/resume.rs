//! Positions, history and resume: nothing lost within the window, nothing
//! doubled, and a clear `reset` beyond it.

use std::collections::HashSet;

use serde_json::json;

use crate::helpers::{read_replay, spawn_app, spawn_app_with, TestApp};

#[actix_web::test]
async fn a_client_that_comes_back_gets_exactly_the_300_it_missed_then_live_ones() {
    let app = spawn_app().await;
    let mut before = app.ws("id=63&channel=news").await;
    let registered = before.recv_json().await;
    let epoch = registered["epoch"].as_str().unwrap().to_owned();
    let since = registered["seq"].as_u64().unwrap();
    before.recv_json().await; // subscribed
    before.close().await;
    app.wait_for_counts(0, 0).await;

    let mut expected = Vec::new();
    for i in 0..100 {
        let text = format!("b{i}");
        expected.push(app.publish_seq(&[("message", &text)]).await);
        let text = format!("d{i}");
        expected.push(app.publish_seq(&[("message", &text), ("id", "63")]).await);
        let text = format!("n{i}");
        expected.push(
            app.publish_seq(&[("message", &text), ("channel", "news")])
                .await,
        );
        // Someone else's: never replayed to 63.
        app.publish_seq(&[("message", "x"), ("id", "64")]).await;
        app.publish_seq(&[("message", "x"), ("channel", "sport")])
            .await;
    }

    let query = format!("id=63&channel=news&since={since}&epoch={epoch}");
    let mut back = app.ws(&query).await;
    assert_eq!(back.recv_json().await["type"], "registered");
    assert_eq!(back.recv_json().await["type"], "subscribed");
    let (messages, resumed) = read_replay(&mut back).await;

    let seqs: Vec<u64> = messages
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, expected, "every missed message, once, in order");
    assert_eq!(messages[1]["data"], "d0");
    assert_eq!(messages[1]["id"], "63");
    assert_eq!(messages[2]["channel"], "news");
    assert_eq!(resumed["since"], since);
    assert_eq!(resumed["count"], 300);
    assert_eq!(resumed["epoch"], epoch.as_str());

    let live = app.publish_seq(&[("message", "live"), ("id", "63")]).await;
    let frame = back.recv_json().await;
    assert_eq!(
        (frame["seq"].as_u64(), &frame["data"]),
        (Some(live), &json!("live"))
    );
}

#[actix_web::test]
async fn a_publish_racing_with_the_resume_arrives_exactly_once_in_order() {
    let app = spawn_app_with(|c| c.workers = 2).await;
    let (epoch, since) = app.position().await;
    for i in 0..20 {
        app.publish_seq(&[("message", &format!("before{i}"))]).await;
    }

    // Publish 200 more while the client reconnects and resumes.
    let port = app.port;
    let publisher = actix_web::rt::spawn(async move {
        let app = TestApp::at(port);
        let mut seqs = Vec::new();
        for i in 0..200 {
            seqs.push(app.publish_seq(&[("message", &format!("during{i}"))]).await);
        }
        seqs
    });
    let mut client = app.ws(&format!("since={since}&epoch={epoch}")).await;
    let published = publisher.await.expect("publisher");
    let last = *published.last().unwrap();

    let mut seen = Vec::new();
    let mut resumed = false;
    while seen.last().is_none_or(|&s| s < last) {
        let frame = client.recv_json().await;
        match frame["type"].as_str() {
            Some("message") => seen.push(frame["seq"].as_u64().unwrap()),
            Some("resumed") => resumed = true,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(resumed);
    let unique: HashSet<u64> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "no message twice");
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    assert_eq!(seen, sorted, "in seq order");
    assert_eq!(
        seen,
        ((since + 1)..=last).collect::<Vec<_>>(),
        "none missing"
    );
}

#[actix_web::test]
async fn a_gap_beyond_the_history_resets_with_nothing_replayed() {
    let app = spawn_app_with(|c| c.history_size = 5).await;
    let (epoch, since) = app.position().await;
    for i in 0..10 {
        app.publish_seq(&[("message", &format!("m{i}"))]).await;
    }
    let mut client = app.ws(&format!("id=1&since={since}&epoch={epoch}")).await;
    assert_eq!(client.recv_json().await["type"], "registered");
    let reset = client.recv_json().await;
    assert_eq!(
        reset["type"], "reset",
        "nothing replayed before the reset: {reset}"
    );
    assert!(
        reset["reason"].as_str().unwrap().contains("dropped"),
        "{reset}"
    );
    assert_eq!(reset["seq"], since + 10);

    // Within the window it is complete.
    let mut client = app
        .ws(&format!("id=1&since={}&epoch={epoch}", since + 5))
        .await;
    client.recv_json().await;
    let (messages, resumed) = read_replay(&mut client).await;
    assert_eq!((messages.len(), &resumed["type"]), (5, &json!("resumed")));
}

#[actix_web::test]
async fn a_position_from_another_lifetime_resets() {
    let app = spawn_app().await;
    app.publish_seq(&[("message", "m")]).await;
    let mut client = app.ws("since=0&epoch=0123456789abcdef").await;
    let reset = client.recv_json().await;
    assert_eq!(reset["type"], "reset");
    assert!(
        reset["reason"].as_str().unwrap().contains("epoch"),
        "{reset}"
    );
    let (epoch, _) = app.position().await;
    assert_eq!(reset["epoch"], epoch.as_str());
}

#[actix_web::test]
async fn a_register_frame_with_a_position_resumes_when_the_session_awaits_it() {
    let app = spawn_app().await;
    let (epoch, since) = app.position().await;
    let a = app.publish_seq(&[("message", "for 7"), ("id", "7")]).await;
    let b = app.publish_seq(&[("message", "all")]).await;

    // Admitted only with its first register frame: no message can come
    // before the replay.
    let mut client = app.ws("await_register=1&channel=news").await;
    let (_, body) = app.publish_form(&[("message", "not yet")]).await;
    assert_eq!(
        body["delivered"], 0,
        "not admitted before its register frame"
    );
    let c = body["seq"].as_u64().unwrap();
    client
        .send_json(&json!({"type": "register", "id": "7", "since": since, "epoch": epoch}))
        .await;
    assert_eq!(client.recv_json().await["type"], "registered");
    assert_eq!(client.recv_json().await["type"], "subscribed");
    let (messages, resumed) = read_replay(&mut client).await;
    let seqs: Vec<u64> = messages
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, [a, b, c]);
    assert_eq!(resumed["count"], 3);
}

#[actix_web::test]
async fn a_position_on_an_admitted_session_is_refused() {
    let app = spawn_app().await;
    let (epoch, since) = app.position().await;
    let mut client = app.ws("").await;
    client
        .send_json(&json!({"type": "register", "id": "7", "since": since, "epoch": epoch}))
        .await;
    let error = client.recv_json().await;
    assert_eq!(error["type"], "error", "{error}");
    assert!(
        error["error"].as_str().unwrap().contains("await_register"),
        "{error}"
    );
    client
        .send_json(&json!({"type": "register", "id": "7", "since": since}))
        .await;
    let error = client.recv_json().await;
    assert!(error["error"]
        .as_str()
        .unwrap()
        .contains("both `since` and `epoch`"));
}

#[actix_web::test]
async fn history_stays_within_its_byte_budget() {
    let app = spawn_app_with(|c| {
        c.history_max_bytes = 64 * 1024;
        c.history_size = 1000;
    })
    .await;
    let big = "x".repeat(1000);
    for _ in 0..200 {
        app.publish_seq(&[("message", &big)]).await;
    }
    let health = app.health().await;
    let bytes = health["history_bytes"].as_u64().unwrap();
    assert!(bytes <= 64 * 1024, "{health}");
    assert!(
        health["history_messages"].as_u64().unwrap() < 200,
        "{health}"
    );
}
