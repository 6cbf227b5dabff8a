//! Channels: subscribe, unsubscribe, publish to a channel, limits.

use actix_web::http::StatusCode;
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with};

#[actix_web::test]
async fn a_channel_message_reaches_its_subscribers_only() {
    let app = spawn_app().await;
    let mut a = app.ws("").await;
    a.subscribe("news").await;
    let mut b = app.ws("").await;
    b.subscribe("news").await;
    b.subscribe("sport").await;
    let mut outsider = app.ws("").await;

    let (status, body) = app
        .publish_form(&[("message", "headline"), ("channel", "news")])
        .await;

    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"delivered": 2, "seq": 1}))
    );
    let expected = json!({"type": "message", "seq": 1, "channel": "news", "data": "headline"});
    assert_eq!(a.recv_json().await, expected);
    assert_eq!(b.recv_json().await, expected);
    let (_, body) = app
        .publish_json(&json!({"message": {"score": [2, 1]}, "channel": "sport"}))
        .await;
    assert_eq!(body, json!({"delivered": 1, "seq": 2}));
    assert_eq!(
        b.recv_json().await,
        json!({"type": "message", "seq": 2, "channel": "sport", "data": {"score": [2, 1]}})
    );
    app.assert_nothing_before_sentinel(&mut [&mut a, &mut outsider])
        .await;
}

#[actix_web::test]
async fn unsubscribe_stops_delivery_and_empty_channels_vanish() {
    let app = spawn_app().await;
    let mut client = app.ws("").await;
    client.subscribe("news").await;
    app.wait_for_health("one channel", |h| h["channels"] == 1)
        .await;

    client
        .send_json(&json!({"type": "unsubscribe", "channel": "news"}))
        .await;
    assert_eq!(
        client.recv_json().await,
        json!({"type": "unsubscribed", "channel": "news"})
    );

    let (_, body) = app
        .publish_form(&[("message", "m"), ("channel", "news")])
        .await;
    assert_eq!(body["delivered"], 0);
    app.wait_for_health("no channels", |h| h["channels"] == 0)
        .await;
}

#[actix_web::test]
async fn a_disconnect_leaves_no_channel_behind() {
    let app = spawn_app().await;
    let client = app.ws("channel=news&channel=sport").await;
    app.wait_for_health("two channels", |h| h["channels"] == 2)
        .await;
    client.close().await;
    app.wait_for_health("no channels", |h| h["channels"] == 0 && h["sessions"] == 0)
        .await;
}

#[actix_web::test]
async fn channels_in_the_url_are_subscribed_at_connect() {
    let app = spawn_app().await;
    let mut client = app.ws("channel=news&channel=sport").await;
    let (epoch, seq) = app.position().await;
    for channel in ["news", "sport"] {
        assert_eq!(
            client.recv_json().await,
            json!({"type": "subscribed", "channel": channel, "epoch": epoch, "seq": seq})
        );
    }

    let (_, body) = app
        .publish_form(&[("message", "goal"), ("channel", "sport")])
        .await;
    assert_eq!(body["delivered"], 1);
    assert_eq!(client.recv_json().await["data"], "goal");
}

#[actix_web::test]
async fn id_and_channel_together_is_a_400() {
    let app = spawn_app().await;
    let (status, body) = app
        .publish_form(&[("message", "m"), ("id", "1"), ("channel", "news")])
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["code"], "target_conflict");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("at most one of `id` and `channel`"));
    let (status, body) = app
        .publish_json(&json!({"message": "m", "id": "1", "channel": "news"}))
        .await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::BAD_REQUEST, &json!("target_conflict"))
    );
}

#[actix_web::test]
async fn bad_channel_names_are_refused_everywhere() {
    let app = spawn_app().await;
    let long = "c".repeat(129);
    for bad in ["", "has space", "new\nline", "ü", long.as_str()] {
        let (status, body) = app
            .publish_form(&[("message", "m"), ("channel", bad)])
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {body}");
        assert_eq!(body["code"], "invalid_channel");
    }

    let mut client = app.ws("").await;
    client
        .send_json(&json!({"type": "subscribe", "channel": "a/b"}))
        .await;
    let frame = client.recv_json().await;
    assert_eq!(frame["type"], "error");
    assert!(
        frame["error"].as_str().unwrap().contains("channel name"),
        "{frame}"
    );

    let (status, body) = app.ws_attempt("channel=a%0Ab", &[]).await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_channel"))
    );
}

#[actix_web::test]
async fn subscriptions_are_capped_per_session() {
    let app = spawn_app_with(|c| c.max_channels_per_session = 2).await;
    let mut client = app.ws("").await;
    client.subscribe("a").await;
    client.subscribe("b").await;
    // Subscribing again to one already held is not a new subscription.
    client.subscribe("a").await;

    client
        .send_json(&json!({"type": "subscribe", "channel": "c"}))
        .await;
    let frame = client.recv_json().await;
    assert_eq!(frame["type"], "error");
    assert!(
        frame["error"]
            .as_str()
            .unwrap()
            .contains("at most 2 channels"),
        "{frame}"
    );
    let (_, body) = app
        .publish_form(&[("message", "m"), ("channel", "c")])
        .await;
    assert_eq!(body["delivered"], 0);

    let (status, body) = app.ws_attempt("channel=a&channel=b&channel=c", &[]).await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::BAD_REQUEST, &json!("too_many_channels"))
    );
}
