//! `GET /metrics` (Prometheus text) and `GET /stats` (JSON), for operators.

use actix_web::http::StatusCode;
use herald::config::Secret;
use serde_json::{json, Value};

use crate::helpers::{spawn_app, spawn_app_with};

/// The value of one sample line, e.g. `herald_ids` or
/// `herald_sessions{transport="ws"}`.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[actix_web::test]
async fn metrics_follow_sessions_publishes_deliveries_and_rejections() {
    let app = spawn_app().await;
    let mut client = app.ws("id=7&channel=news").await;
    client.recv_json().await;
    client.recv_json().await;
    app.publish_form(&[("message", "m")]).await;
    client.recv_json().await;
    app.publish_form(&[("message", "d"), ("id", "7")]).await;
    client.recv_json().await;
    let (status, _) = app.publish_form(&[("id", "7")]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let (status, text) = app.get_text("/metrics", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let expect = [
        ("herald_sessions{transport=\"ws\"}", 1.0),
        ("herald_ids", 1.0),
        ("herald_channels", 1.0),
        ("herald_published_total{target=\"broadcast\"}", 1.0),
        ("herald_published_total{target=\"direct\"}", 1.0),
        ("herald_deliveries_total", 2.0),
        (
            "herald_rejected_publishes_total{reason=\"missing_message\"}",
            1.0,
        ),
        ("herald_publish_to_write_seconds_count", 2.0),
        ("herald_broker_up", 1.0),
    ];
    for (name, value) in expect {
        assert_eq!(sample(&text, name), Some(value), "{name} in\n{text}");
    }

    client.close().await;
    app.wait_for_counts(0, 0).await;
    let (_, text) = app.get_text("/metrics", &[]).await;
    assert_eq!(
        sample(&text, "herald_sessions{transport=\"ws\"}"),
        Some(0.0),
        "{text}"
    );
    assert_eq!(sample(&text, "herald_ids"), Some(0.0));
}

#[actix_web::test]
async fn stats_list_sessions_and_the_largest_channels() {
    let app = spawn_app().await;
    let _a = app.ws("channel=big&channel=small").await;
    let _b = app.ws("channel=big").await;
    let _poll_free = app.ws("id=x").await;
    app.wait_for_counts(3, 1).await;
    let (status, text) = app.get_text("/stats", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let stats: Value = serde_json::from_str(&text).unwrap();
    let node = &stats["node"];
    assert_eq!(node["sessions"], 3);
    assert_eq!(node["sessions_by_transport"], json!({"ws": 3}));
    assert_eq!(
        node["top_channels"],
        json!([{"channel": "big", "subscribers": 2}, {"channel": "small", "subscribers": 1}])
    );
    assert_eq!(stats["broker"], "memory");
}

#[actix_web::test]
async fn metrics_and_stats_need_an_admin_key_when_one_is_set() {
    const KEY: &str = "admin-key-0123456789";
    let app = spawn_app_with(|c| c.admin_keys = vec![Secret::new(KEY)]).await;
    for path in ["/metrics", "/stats"] {
        let (status, _) = app.get_text(path, &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        let (status, _) = app
            .get_text(path, &[("authorization", "Bearer wrong-key-000000")])
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        let bearer = format!("Bearer {KEY}");
        let (status, _) = app.get_text(path, &[("authorization", &bearer)]).await;
        assert_eq!(status, StatusCode::OK, "{path}");
    }
}

#[actix_web::test]
async fn without_admin_keys_only_this_machine_reads_them() {
    let app = spawn_app().await;
    let (status, body) = app
        .get_text("/stats", &[("x-forwarded-for", "203.0.113.1")])
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(body.contains("admin_keys"), "{body}");
}
