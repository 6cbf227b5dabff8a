//! DNS rebinding: herald answers only to IP literals, `localhost` and the
//! names in `allowed_hosts`, on every route.

use actix_web::http::StatusCode;
use serde_json::Value;

use crate::helpers::{spawn_app_with, TestApp};

/// `method path` with this `Host`: the status, and the JSON error code when
/// refused.
async fn request_with_host(
    app: &TestApp,
    method: &str,
    path: &str,
    host: &str,
) -> (StatusCode, Option<String>) {
    let method = actix_web::http::Method::from_bytes(method.as_bytes()).unwrap();
    let req = app
        .http
        .request(method.clone(), app.url(path))
        .insert_header(("host", host));
    let mut resp = if method == actix_web::http::Method::POST {
        req.send_form(&[("message", "rebound")]).await
    } else {
        req.send().await
    }
    .expect("an answer");
    let status = resp.status();
    // Only a refusal is read: a granted /events would stream forever.
    let code = if status.is_success() {
        None
    } else {
        let body: Value = resp.json().await.expect("a JSON error");
        body["code"].as_str().map(str::to_owned)
    };
    (status, code)
}

#[actix_web::test]
async fn a_rebound_host_name_is_refused_on_every_route() {
    // A page of http://evil.test:PORT whose name now points at 127.0.0.1.
    let app = spawn_app_with(|c| c.poll_timeout_secs = 1).await;
    let host = format!("evil.test:{}", app.port);
    for (method, path) in [
        ("GET", "/stats"),
        ("GET", "/metrics"),
        ("GET", "/poll?id=63"),
        ("GET", "/events?id=63"),
        ("GET", "/"),
        ("POST", "/"),
        ("GET", "/health"),
        ("GET", "/static/herald.js"),
        ("GET", "/no-such-page"),
    ] {
        let (status, code) = request_with_host(&app, method, path, &host).await;
        assert_eq!(
            (status, code.as_deref()),
            (StatusCode::MISDIRECTED_REQUEST, Some("unknown_host")),
            "{method} {path}"
        );
    }
    let (status, body) = app.ws_attempt("id=63", &[("host", &host)]).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::MISDIRECTED_REQUEST, Some("unknown_host")),
        "the WebSocket upgrade"
    );
    // Nothing was published through it.
    assert_eq!(app.position().await.1, 0);
}

#[actix_web::test]
async fn ip_literals_localhost_and_listed_hosts_are_served() {
    let app = spawn_app_with(|c| c.allowed_hosts = vec!["rt.example.com".into()]).await;
    let port = app.port;
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        format!("app.localhost:{port}"),
        "rt.example.com".to_owned(),
        "RT.Example.com:443".to_owned(),
    ] {
        for path in ["/health", "/stats", "/static/herald.js"] {
            let (status, code) = request_with_host(&app, "GET", path, &host).await;
            assert_eq!(status, StatusCode::OK, "{host} {path}: {code:?}");
        }
        let (status, body) = app.ws_attempt("", &[("host", &host)]).await;
        assert_eq!(status, StatusCode::SWITCHING_PROTOCOLS, "{host}: {body}");
    }
    // A name that merely contains a listed one is not it.
    let (status, _) = request_with_host(&app, "GET", "/stats", "rt.example.com.evil.test").await;
    assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
}
