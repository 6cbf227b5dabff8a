//! A connection that asks to upgrade, once the HTTP server hands it over
//! to herald: frames sent with the handshake reach the session, answers to
//! requests pipelined ahead of the upgrade are not lost, a refusal is
//! answered whole and the connection closed after it, a body cut short is
//! refused, `100 Continue` comes when asked for, and a client that closes
//! its side ends its session.

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
        let text = read_all(&mut stream, "the refusal and the close").await;
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

/// Reads what the server sends on `stream` until a `101` has come.
async fn read_until_upgraded(stream: &mut TcpStream, what: &str) -> String {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    within(what, async {
        while !String::from_utf8_lossy(&received).contains("101 Switching Protocols") {
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(
                n > 0,
                "closed after {:?}",
                String::from_utf8_lossy(&received)
            );
            received.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    String::from_utf8_lossy(&received).into_owned()
}

/// Reads what the server sends on `stream` until it closes.
async fn read_all(stream: &mut TcpStream, what: &str) -> String {
    let mut answer = Vec::new();
    within(what, stream.read_to_end(&mut answer))
        .await
        .expect("read to the end");
    String::from_utf8_lossy(&answer).into_owned()
}

#[actix_web::test]
async fn the_answer_to_a_request_pipelined_before_the_upgrade_is_not_lost() {
    let app = spawn_app().await;
    let host = format!("127.0.0.1:{}", app.port);
    let body = "message=ahead&id=nobody";
    let mut bytes = format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    bytes.push_str(&upgrade_request_to("/ws?id=behind", &host, &[]));
    let mut stream = TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("TCP connect");
    // Both requests in one write: the dispatcher reads them together.
    stream.write_all(bytes.as_bytes()).await.expect("write");

    let text = read_until_upgraded(&mut stream, "the publish's answer, then the 101").await;
    let publish = text.find("HTTP/1.1 200 OK").expect("the publish's 200");
    let upgrade = text.find("HTTP/1.1 101").expect("the 101");
    assert!(publish < upgrade, "{text}");
    assert!(text.contains(r#""delivered":0"#), "{text}");
}

#[actix_web::test]
async fn a_body_cut_short_on_an_upgrade_request_is_refused_and_not_published() {
    let app = spawn_app().await;
    let host = format!("127.0.0.1:{}", app.port);
    let seq_before = app.health().await["seq"].clone();
    let mut stream = TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("TCP connect");
    // Forty bytes announced, thirteen sent, then the client's side closed.
    let request = format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Content-Length: 40\r\n\r\nmessage=Hello"
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    stream.shutdown().await.expect("close the client's side");

    let answer = read_all(&mut stream, "the refusal").await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    assert_eq!(app.health().await["seq"], seq_before, "nothing published");
}

#[actix_web::test]
async fn an_upgrade_request_that_expects_100_continue_gets_it_first() {
    let app = spawn_app().await;
    let host = format!("127.0.0.1:{}", app.port);
    let mut stream = TcpStream::connect(("127.0.0.1", app.port))
        .await
        .expect("TCP connect");
    let request = upgrade_request_to("/ws?id=patient", &host, &[("Expect", "100-continue")]);
    stream.write_all(request.as_bytes()).await.expect("write");

    let text = read_until_upgraded(&mut stream, "100 Continue, then the 101").await;
    assert!(
        text.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 101 "),
        "{text}"
    );
}
