//! `POST /`: broadcast, direct, JSON bodies, and every way to get it wrong.

use actix_web::http::{Method, StatusCode};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{spawn_app, spawn_app_with, within, TestApp};

#[actix_web::test]
async fn broadcast_reaches_every_session() {
    let app = spawn_app().await;
    let mut a = app.ws_registered("1").await;
    let mut b = app.ws_registered("2").await;
    let mut anonymous = app.ws("").await;
    app.wait_for_counts(3, 2).await;

    let (status, body) = app.publish_form(&[("message", "Ping")]).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"delivered": 3, "seq": 1}));
    for client in [&mut a, &mut b, &mut anonymous] {
        assert_eq!(
            client.recv_json().await,
            json!({"type": "message", "seq": 1, "data": "Ping"})
        );
    }
}

#[actix_web::test]
async fn direct_message_reaches_every_tab_of_its_id_and_no_one_else() {
    let app = spawn_app().await;
    let mut tab1 = app.ws_registered("63").await;
    let mut tab2 = app.ws_registered("63").await;
    let mut other = app.ws_registered("64").await;
    let mut anonymous = app.ws("").await;
    app.wait_for_counts(4, 2).await;

    let (status, body) = app
        .publish_form(&[("message", "Hello_63"), ("id", "63")])
        .await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"delivered": 2, "seq": 1}));
    let expected = json!({"type": "message", "seq": 1, "id": "63", "data": "Hello_63"});
    assert_eq!(tab1.recv_json().await, expected);
    assert_eq!(tab2.recv_json().await, expected);
    app.assert_nothing_before_sentinel(&mut [&mut other, &mut anonymous])
        .await;
}

#[actix_web::test]
async fn direct_to_an_id_nobody_holds_delivers_zero() {
    let app = spawn_app().await;
    let _someone = app.ws_registered("1").await;

    let (status, body) = app.publish_form(&[("message", "hi"), ("id", "999")]).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"delivered": 0, "seq": 1}));
}

#[actix_web::test]
async fn json_body_delivers_a_structured_value() {
    let app = spawn_app().await;
    let mut client = app.ws_registered("5").await;
    let order = json!({"event": "order", "id": 17, "items": ["tea", "cake"], "paid": true});

    let (status, body) = app
        .publish_json(&json!({"message": order, "id": "5"}))
        .await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"delivered": 1, "seq": 1}));
    assert_eq!(
        client.recv_json().await,
        json!({"type": "message", "seq": 1, "id": "5", "data": order})
    );
}

#[actix_web::test]
async fn json_body_takes_an_integer_id_and_any_json_message() {
    let app = spawn_app().await;
    let mut client = app.ws_registered("63").await;

    let (status, body) = app
        .publish_json(&json!({"message": [1, 2.5, null], "id": 63}))
        .await;

    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"delivered": 1, "seq": 1}))
    );
    assert_eq!(client.recv_json().await["data"], json!([1, 2.5, null]));
}

async fn assert_error(reply: (StatusCode, Value), status: StatusCode, code: &str, mentions: &str) {
    let (got_status, body) = reply;
    assert_eq!(got_status, status, "{body}");
    assert_eq!(body["code"], code, "{body}");
    let text = body["error"].as_str().expect("error text");
    assert!(
        text.contains(mentions),
        "{text:?} should mention {mentions:?}"
    );
}

#[actix_web::test]
async fn missing_or_empty_message_is_a_400_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        app.publish_form(&[("id", "1")]).await,
        app.publish_form(&[("message", "")]).await,
        app.publish_json(&json!({"id": "1"})).await,
        app.publish_json(&json!({"message": null})).await,
        app.publish_json(&json!({"message": ""})).await,
    ];
    for reply in cases {
        assert_error(
            reply,
            StatusCode::BAD_REQUEST,
            "missing_message",
            "`message`",
        )
        .await;
    }
}

#[actix_web::test]
async fn malformed_json_is_a_400() {
    let app = spawn_app().await;
    let reply = app
        .post_raw(
            Some("application/json"),
            br#"{"message": "unterminated"#.to_vec(),
        )
        .await;
    assert_error(
        reply,
        StatusCode::BAD_REQUEST,
        "malformed_body",
        "malformed JSON",
    )
    .await;
    let reply = app
        .post_raw(Some("application/json"), b"[1,2]".to_vec())
        .await;
    assert_error(
        reply,
        StatusCode::BAD_REQUEST,
        "malformed_body",
        "invalid JSON body",
    )
    .await;
}

#[actix_web::test]
async fn unknown_fields_are_refused_rather_than_broadcast() {
    let app = spawn_app().await;
    let mut client = app.ws_registered("1").await;
    let reply = app
        .publish_form(&[("message", "secret"), ("idd", "1")])
        .await;
    assert_error(reply, StatusCode::BAD_REQUEST, "malformed_body", "idd").await;
    let reply = app
        .publish_json(&json!({"message": "secret", "to": "1"}))
        .await;
    assert_error(reply, StatusCode::BAD_REQUEST, "malformed_body", "to").await;
    app.assert_nothing_before_sentinel(&mut [&mut client]).await;
}

#[actix_web::test]
async fn bad_ids_are_a_400_with_the_reason() {
    let app = spawn_app().await;
    let long = "x".repeat(129);
    let reply = app.publish_form(&[("message", "m"), ("id", &long)]).await;
    assert_error(reply, StatusCode::BAD_REQUEST, "invalid_id", "limit is 128").await;
    let reply = app
        .publish_form(&[("message", "m"), ("id", "a\r\nb")])
        .await;
    assert_error(
        reply,
        StatusCode::BAD_REQUEST,
        "invalid_id",
        "control character",
    )
    .await;
    let reply = app.publish_json(&json!({"message": "m", "id": true})).await;
    assert_error(
        reply,
        StatusCode::BAD_REQUEST,
        "malformed_body",
        "string or an integer",
    )
    .await;
}

#[actix_web::test]
async fn a_body_over_max_message_bytes_is_a_413() {
    let app = spawn_app_with(|c| c.max_message_bytes = 1024).await;
    let message = "x".repeat(1100);

    let reply = app.publish_form(&[("message", &message)]).await;

    assert_error(
        reply,
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        "1024",
    )
    .await;
    // Just under the limit is fine.
    let (status, _) = app.publish_form(&[("message", &"x".repeat(1000))]).await;
    assert_eq!(status, StatusCode::OK);
}

/// Sends a form `POST /` in chunked transfer encoding, one chunk per
/// piece, and reads the whole reply.
async fn post_chunked(app: &TestApp, pieces: &[&str]) -> String {
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    let mut request = String::from(
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    );
    for piece in pieces {
        request.push_str(&format!("{:x}\r\n{piece}\r\n", piece.len()));
    }
    request.push_str("0\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    within("the reply", stream.read_to_end(&mut reply))
        .await
        .unwrap();
    String::from_utf8_lossy(&reply).into_owned()
}

#[actix_web::test]
async fn a_chunked_body_is_cut_off_at_the_limit() {
    let app = spawn_app_with(|c| c.max_message_bytes = 1024).await;
    let piece = format!("message={}", "y".repeat(0x200 - 8));
    let reply = post_chunked(&app, &[&piece, &piece, &piece]).await;
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("body_too_large"), "{reply}");
}

#[actix_web::test]
async fn a_body_in_several_chunks_is_read_whole() {
    let app = spawn_app().await;
    let mut client = app.ws_registered("63").await;
    let reply = post_chunked(&app, &["mess", "age=Hel", "lo+there&i", "d=63"]).await;
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains(r#""delivered":1"#), "{reply}");
    let frame = client.recv_json().await;
    assert_eq!(frame["data"], "Hello there", "{frame}");
    assert_eq!(frame["id"], "63", "{frame}");
}

#[actix_web::test]
async fn an_unsupported_content_type_is_a_415() {
    let app = spawn_app().await;
    let reply = app
        .post_raw(Some("text/plain"), b"message=hi".to_vec())
        .await;
    assert_error(
        reply,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "text/plain",
    )
    .await;
    let reply = app.post_raw(None, b"message=hi".to_vec()).await;
    assert_error(
        reply,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "none",
    )
    .await;
}

#[actix_web::test]
async fn unknown_routes_and_methods_get_json_errors() {
    let app = spawn_app().await;
    let mut resp = app.http.get(app.url("/nope")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(resp.json::<Value>().await.unwrap()["code"], "not_found");
    let mut resp = app.http.put(app.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["code"],
        "method_not_allowed"
    );
    // Every route answers only its own methods, and names them in `Allow`.
    let routes = [
        ("/", "GET, HEAD, POST"),
        ("/ws", "GET"),
        ("/events", "GET"),
        ("/poll", "GET"),
        ("/metrics", "GET"),
        ("/stats", "GET"),
        ("/health", "GET, HEAD"),
        ("/ready", "GET, HEAD"),
        ("/static/herald.js", "GET, HEAD"),
        ("/static/nope", "GET, HEAD"),
    ];
    for (path, allow) in routes {
        let mut wrong = vec![Method::DELETE, Method::PATCH, Method::PUT];
        if path != "/" {
            wrong.push(Method::POST);
        }
        for method in wrong {
            let mut resp = app
                .http
                .request(method.clone(), app.url(path))
                .send()
                .await
                .unwrap();
            assert_eq!(
                resp.status(),
                StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path}"
            );
            assert_eq!(
                resp.headers().get("allow").and_then(|v| v.to_str().ok()),
                Some(allow),
                "{method} {path}"
            );
            assert_eq!(
                resp.json::<Value>().await.unwrap()["code"],
                "method_not_allowed",
                "{method} {path}"
            );
        }
    }
}
