//! A connection that asks to upgrade, once the HTTP server hands it over
//! to herald: frames sent with the handshake reach the session, a refusal
//! is answered whole and the connection closed after it, and a client that
//! closes its side ends its session.

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{client_frame, spawn_app, upgrade_request_to, within, RawWs, FIN, OP_TEXT};

#[actix_web::test]
async fn frames_sent_with_the_handshake_reach_the_session() {
    let app = spawn_app().await;
    // A client that does not wait for the 101: its register frame arrives
    // in the same read as the request's head.
    let register = client_frame(FIN | OP_TEXT, br#"{"type":"register","id":"early"}"#, true);
    let mut client = RawWs::connect_sending(app.port, "/ws", &register).await;

    assert_eq!(client.recv_json().await["type"], "connected");
    let registered = client.recv_json().await;
    assert_eq!(
        (&registered["type"], &registered["id"]),
        (&json!("registered"), &json!("early"))
    );
    let (_, published) = app
        .publish_form(&[("message", "after"), ("id", "early")])
        .await;
    assert_eq!(published["delivered"], 1);
    assert_eq!(client.recv_json().await["data"], "after");
}

#[actix_web::test]
async fn a_refused_upgrade_is_answered_whole_and_the_connection_closed() {
    let app = spawn_app().await;
    let host = format!("127.0.0.1:{}", app.port);
    for (target, host, status) in [
        ("/ws?id=%00", host.as_str(), 400),
        ("/nowhere", host.as_str(), 404),
        ("/ws", "rebound.example", 421),
    ] {
        let mut stream = TcpStream::connect(("127.0.0.1", app.port))
            .await
            .expect("TCP connect");
        stream
            .write_all(upgrade_request_to(target, host, &[]).as_bytes())
            .await
            .expect("write the handshake");
        // The whole answer, then the end of the stream.
        let mut answer = Vec::new();
        within("the refusal and the close", stream.read_to_end(&mut answer))
            .await
            .expect("read the refusal");

        let text = String::from_utf8_lossy(&answer);
        let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
        let head = head.to_ascii_lowercase();
        assert!(
            head.starts_with(&format!("http/1.1 {status} ")),
            "{target}: {head}"
        );
        assert!(
            head.contains("\r\nconnection: close\r\n"),
            "{target}: {head}"
        );
        assert!(
            head.contains("\r\nx-content-type-options: nosniff\r\n"),
            "{target}: {head}"
        );
        assert!(
            head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())),
            "{target}: {head} with a body of {} bytes",
            body.len()
        );
        let error: Value = serde_json::from_str(body).expect("a JSON error");
        assert!(error["code"].is_string(), "{target}: {error}");
    }
}

#[actix_web::test]
async fn a_client_that_closes_its_side_ends_its_session() {
    let app = spawn_app().await;
    let mut client = RawWs::connect(app.port, "id=leaving").await;
    assert_eq!(client.recv_json().await["id"], "leaving");

    let (mut stream, _) = client.into_parts();
    stream.shutdown().await.expect("close the client's side");
    // herald ends the connection, and the id has no session left.
    let mut rest = Vec::new();
    within(
        "herald to close the connection",
        stream.read_to_end(&mut rest),
    )
    .await
    .expect("read to the end");
    within("the session to be gone", async {
        loop {
            let (_, published) = app
                .publish_form(&[("message", "anyone?"), ("id", "leaving")])
                .await;
            if published["delivered"] == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
}
