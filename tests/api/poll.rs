//! `GET /poll`: long-polling on the same routing and history.

use actix_web::http::StatusCode;
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with, within, TestApp};

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
    let got: Vec<u64> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
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
