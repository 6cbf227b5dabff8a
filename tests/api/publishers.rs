//! Who may publish: keys, loopback without keys, and never a foreign web page.

use actix_web::http::StatusCode;
use herald::config::Secret;
use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with};

const KEY: &str = "publish-key-0123456789";

#[actix_web::test]
async fn with_keys_a_missing_or_wrong_key_is_a_401_and_the_right_one_publishes() {
    let app = spawn_app_with(|c| {
        c.publish_keys = vec![Secret::new("other-key-0123456789"), Secret::new(KEY)]
    })
    .await;
    let mut client = app.ws("").await;

    let mut resp = app
        .http
        .post(app.url("/"))
        .send_form(&[("message", "m")])
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(resp.headers().get("www-authenticate").unwrap(), "Bearer");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["code"], "unauthorized");
    assert!(body["error"]
        .as_str()
        .unwrap()
        .contains("Authorization: Bearer"));

    let (status, body) = app
        .publish_form_with(
            &[("authorization", "Bearer publish-key-WRONG")],
            &[("message", "m")],
        )
        .await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::UNAUTHORIZED, &json!("unauthorized"))
    );

    let bearer = format!("Bearer {KEY}");
    let (status, body) = app
        .publish_form_with(&[("authorization", &bearer)], &[("message", "keyed")])
        .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"delivered": 1, "seq": 1}))
    );
    assert_eq!(client.recv_json().await["data"], "keyed");
}

#[actix_web::test]
async fn without_keys_a_proxied_request_is_not_local_and_gets_403() {
    let app = spawn_app().await;
    for header in ["x-forwarded-for", "x-real-ip", "forwarded"] {
        let (status, body) = app
            .publish_form_with(&[(header, "203.0.113.7")], &[("message", "m")])
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{header}");
        assert_eq!(body["code"], "forbidden");
        assert!(
            body["error"].as_str().unwrap().contains("publish_keys"),
            "{body}"
        );
    }
    // A direct loopback request publishes.
    let (status, _) = app.publish_form(&[("message", "m")]).await;
    assert_eq!(status, StatusCode::OK);
}

#[actix_web::test]
async fn a_foreign_origin_cannot_publish_even_with_a_key() {
    let app = spawn_app_with(|c| {
        c.publish_keys = vec![Secret::new(KEY)];
        c.allowed_origins = vec!["https://app.example.com".into()];
    })
    .await;
    let bearer = format!("Bearer {KEY}");

    let (status, body) = app
        .publish_form_with(
            &[
                ("authorization", &bearer),
                ("origin", "https://evil.example"),
            ],
            &[("message", "m")],
        )
        .await;
    assert_eq!(
        (status, &body["code"]),
        (StatusCode::FORBIDDEN, &json!("forbidden"))
    );
    assert!(body["error"].as_str().unwrap().contains("allowed_origins"));

    let own = format!("http://127.0.0.1:{}", app.port);
    for origin in [own.as_str(), "https://app.example.com"] {
        let (status, _) = app
            .publish_form_with(
                &[("authorization", &bearer), ("origin", origin)],
                &[("message", "m")],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{origin}");
    }
}

#[actix_web::test]
async fn replies_carry_no_cors_headers() {
    let app = spawn_app().await;
    let resp = app
        .http
        .post(app.url("/"))
        .insert_header(("origin", "https://evil.example"))
        .send_form(&[("message", "m")])
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert!(resp.headers().get("access-control-allow-origin").is_none());

    let preflight = app
        .http
        .request(actix_web::http::Method::OPTIONS, app.url("/"))
        .insert_header(("origin", "https://evil.example"))
        .insert_header(("access-control-request-method", "POST"))
        .send()
        .await
        .unwrap();
    assert!(!preflight.status().is_success());
    assert!(preflight
        .headers()
        .get("access-control-allow-origin")
        .is_none());

    let ok = app
        .http
        .post(app.url("/"))
        .send_form(&[("message", "m")])
        .await
        .unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(ok.headers().get("access-control-allow-origin").is_none());
}
