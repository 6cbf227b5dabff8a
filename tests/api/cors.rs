//! Cross-origin reads of `/events` and `/poll` (CORS): an origin in
//! `allowed_origins` may read them, errors included; any other is refused
//! without a CORS header; preflights are answered for the first only; the
//! other routes stay without CORS headers.

use actix_web::http::{Method, StatusCode};
use herald::Config;
use serde_json::Value;

use crate::helpers::{spawn_app_with, token_for, with_tokens};

/// A page's origin listed in `allowed_origins`.
const PAGE: &str = "https://app.example.com";
/// An origin nobody listed.
const STRANGER: &str = "https://evil.example";

fn allowing_the_page(config: &mut Config) {
    config.allowed_origins = vec![PAGE.into()];
}

fn header(resp: &awc::ClientResponse, name: &str) -> Option<String> {
    let values: Vec<_> = resp
        .headers()
        .get_all(name)
        .map(|v| v.to_str().expect("ASCII header").to_owned())
        .collect();
    (!values.is_empty()).then(|| values.join(", "))
}

fn varies_on_origin(resp: &awc::ClientResponse) -> bool {
    header(resp, "vary").is_some_and(|v| v.split(',').any(|n| n.trim() == "Origin"))
}

#[actix_web::test]
async fn an_allowed_origin_may_read_event_streams_and_polls() {
    let app = spawn_app_with(allowing_the_page).await;
    for path in ["/events?id=1", "/poll?id=1"] {
        let resp = app.request(Method::GET, path, &[("origin", PAGE)]).await;
        assert_eq!(resp.status(), StatusCode::OK, "{path}");
        assert_eq!(
            header(&resp, "access-control-allow-origin").as_deref(),
            Some(PAGE),
            "{path}"
        );
        assert!(varies_on_origin(&resp), "{path}");
        assert_eq!(
            header(&resp, "access-control-expose-headers").as_deref(),
            Some("Retry-After"),
            "{path}"
        );
        // herald reads no cookies: it never asks for them.
        assert_eq!(
            header(&resp, "access-control-allow-credentials"),
            None,
            "{path}"
        );
    }
    // And the stream is the usual one.
    let mut events = app.sse("id=2", &[("origin", PAGE)]).await;
    assert_eq!(events.next_data().await.1["type"], "registered");
    app.publish_form(&[("message", "across"), ("id", "2")])
        .await;
    assert_eq!(events.next_data().await.1["data"], "across");
}

#[actix_web::test]
async fn an_unlisted_origin_is_refused_without_cors_headers() {
    let app = spawn_app_with(allowing_the_page).await;
    for path in ["/events?id=1", "/poll?id=1"] {
        let mut resp = app
            .request(Method::GET, path, &[("origin", STRANGER)])
            .await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{path}");
        assert_eq!(header(&resp, "access-control-allow-origin"), None, "{path}");
        assert_eq!(
            header(&resp, "access-control-expose-headers"),
            None,
            "{path}"
        );
        assert!(varies_on_origin(&resp), "{path}");
        let body: Value = resp.json().await.expect("JSON error");
        assert_eq!(body["code"], "forbidden", "{path}");
    }
    // Without an Origin (not a browser) nothing changes, but caches still
    // learn that the answer depends on it.
    let resp = app.request(Method::GET, "/events?id=1", &[]).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(header(&resp, "access-control-allow-origin"), None);
    assert!(varies_on_origin(&resp));
}

#[actix_web::test]
async fn preflights_are_answered_for_allowed_origins_and_refused_for_others() {
    let app = spawn_app_with(allowing_the_page).await;
    let asking = |origin: &'static str, method: &'static str, headers: &'static str| {
        vec![
            ("origin", origin),
            ("access-control-request-method", method),
            ("access-control-request-headers", headers),
        ]
    };
    for path in ["/events", "/poll"] {
        let resp = app
            .request(Method::OPTIONS, path, &asking(PAGE, "GET", "last-event-id"))
            .await;
        assert_eq!(resp.status(), StatusCode::NO_CONTENT, "{path}");
        assert_eq!(
            header(&resp, "access-control-allow-origin").as_deref(),
            Some(PAGE)
        );
        assert_eq!(
            header(&resp, "access-control-allow-methods").as_deref(),
            Some("GET")
        );
        assert_eq!(
            header(&resp, "access-control-allow-headers").as_deref(),
            Some("Last-Event-ID")
        );
        assert!(header(&resp, "access-control-max-age").is_some(), "{path}");
        assert!(varies_on_origin(&resp), "{path}");

        let mut resp = app
            .request(Method::OPTIONS, path, &asking(STRANGER, "GET", ""))
            .await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{path}");
        assert_eq!(header(&resp, "access-control-allow-origin"), None, "{path}");
        assert_eq!(
            header(&resp, "access-control-allow-methods"),
            None,
            "{path}"
        );
        let body: Value = resp.json().await.expect("JSON error");
        assert_eq!(body["code"], "forbidden");

        // An allowed page asking for more than a GET with Last-Event-ID.
        for (method, headers, named) in [
            ("POST", "", "POST"),
            ("GET", "last-event-id, authorization", "authorization"),
        ] {
            let mut resp = app
                .request(Method::OPTIONS, path, &asking(PAGE, method, headers))
                .await;
            assert_eq!(
                resp.status(),
                StatusCode::FORBIDDEN,
                "{path} {method} {headers}"
            );
            assert_eq!(header(&resp, "access-control-allow-methods"), None);
            let body: Value = resp.json().await.expect("JSON error");
            assert!(body["error"].as_str().unwrap().contains(named), "{body}");
        }
    }
    // An OPTIONS that is no preflight goes to the route as before.
    let resp = app
        .request(Method::OPTIONS, "/events", &[("origin", PAGE)])
        .await;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        header(&resp, "access-control-allow-origin").as_deref(),
        Some(PAGE)
    );
}

#[actix_web::test]
async fn error_answers_to_an_allowed_origin_carry_the_cors_header() {
    let app = spawn_app_with(|c| {
        allowing_the_page(c);
        with_tokens(c);
        c.require_token = true;
        c.max_connections_per_ip = 1;
    })
    .await;
    let token = token_for("ann", &[]);
    let cases = [
        (Method::GET, "/events?id=1".to_owned(), 401, "unauthorized"),
        (
            Method::GET,
            "/poll?token=forged".to_owned(),
            401,
            "invalid_token",
        ),
        (
            Method::GET,
            "/poll?since=1".to_owned(),
            400,
            "invalid_query",
        ),
        (
            Method::GET,
            format!("/events?token={token}&channel=private:bob"),
            403,
            "forbidden",
        ),
        (Method::POST, "/poll".to_owned(), 405, "method_not_allowed"),
    ];
    for (method, path, status, code) in cases {
        let mut resp = app.request(method, &path, &[("origin", PAGE)]).await;
        assert_eq!(resp.status().as_u16(), status, "{path}");
        assert_eq!(
            header(&resp, "access-control-allow-origin").as_deref(),
            Some(PAGE),
            "{path}"
        );
        let body: Value = resp.json().await.expect("JSON error");
        assert_eq!(body["code"], code, "{path}");
    }
    // One stream holds this address's only slot: the next request gets 429,
    // which the page can read.
    let _stream = app
        .sse(&format!("token={token}"), &[("origin", PAGE)])
        .await;
    let mut resp = app
        .request(
            Method::GET,
            &format!("/poll?token={token}"),
            &[("origin", PAGE)],
        )
        .await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        header(&resp, "access-control-allow-origin").as_deref(),
        Some(PAGE)
    );
    let body: Value = resp.json().await.expect("JSON error");
    assert_eq!(body["code"], "too_many_connections");
}

#[actix_web::test]
async fn a_full_server_answers_an_allowed_origin_503_with_the_cors_header() {
    let app = spawn_app_with(|c| {
        allowing_the_page(c);
        c.max_connections = 1;
    })
    .await;
    let _stream = app.sse("id=1", &[]).await;
    for path in ["/events?id=2", "/poll?id=2"] {
        let mut resp = app.request(Method::GET, path, &[("origin", PAGE)]).await;
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE, "{path}");
        assert_eq!(
            header(&resp, "access-control-allow-origin").as_deref(),
            Some(PAGE),
            "{path}"
        );
        let body: Value = resp.json().await.expect("JSON error");
        assert_eq!(body["code"], "server_full");
    }
}

#[actix_web::test]
async fn with_a_star_any_origin_is_named_back() {
    let app = spawn_app_with(|c| c.allowed_origins = vec!["*".into()]).await;
    let resp = app
        .request(Method::GET, "/poll?id=1", &[("origin", STRANGER)])
        .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "access-control-allow-origin").as_deref(),
        Some(STRANGER)
    );
}

#[actix_web::test]
async fn publishing_and_operator_routes_send_no_cors_headers() {
    let app = spawn_app_with(allowing_the_page).await;
    let (status, _) = app
        .publish_form_with(&[("origin", PAGE)], &[("message", "hi")])
        .await;
    assert_eq!(status, StatusCode::OK);
    let resp = app.request(Method::POST, "/", &[("origin", PAGE)]).await;
    assert_eq!(header(&resp, "access-control-allow-origin"), None);
    for path in ["/", "/health", "/stats", "/static/herald.js"] {
        let resp = app.request(Method::GET, path, &[("origin", PAGE)]).await;
        assert_eq!(header(&resp, "access-control-allow-origin"), None, "{path}");
    }
    let resp = app
        .request(
            Method::OPTIONS,
            "/",
            &[("origin", PAGE), ("access-control-request-method", "POST")],
        )
        .await;
    assert_eq!(header(&resp, "access-control-allow-origin"), None);
    assert_ne!(resp.status(), StatusCode::NO_CONTENT);
}
