//! Attacks from outside, each against the real server: what one
//! unauthenticated connection can make herald hold, and what a client can
//! make a session believe about it.

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{
    parse_server_frame, spawn_app_with, token_for, with_tokens, within, RawWs, CLIENT_SECRET,
    OP_CLOSE,
};
use crate::process::HeraldProcess;

/// What the flood may write at most: more than loopback carries before the
/// test's wait ends, so the flood stops only when herald ends the connection.
const FLOOD_CAP_BYTES: usize = 1 << 40;

/// Opens `/ws?{query}`, sends one text frame header declaring 2^40 bytes,
/// then streams payload until herald ends the connection (after reading on
/// for at most `client_disconnect_timeout`, discarding). Returns the close
/// code herald sent and how many payload bytes went out.
async fn flood_one_frame(port: u16, query: &str) -> (u16, usize) {
    let ws = RawWs::connect(port, query).await;
    let (stream, mut seen) = ws.into_parts();
    let (mut reader, mut writer) = stream.into_split();
    let flood = actix_web::rt::spawn(async move {
        let mut header = vec![0x81, 0x80 | 127];
        header.extend_from_slice(&(1u64 << 40).to_be_bytes());
        header.extend_from_slice(&[1, 2, 3, 4]);
        if writer.write_all(&header).await.is_err() {
            return 0;
        }
        let chunk = vec![0u8; 64 * 1024];
        let mut sent = 0;
        while sent < FLOOD_CAP_BYTES {
            if writer.write_all(&chunk).await.is_err() {
                break;
            }
            sent += chunk.len();
        }
        sent
    });
    let code = within("a close frame", async {
        loop {
            if let Some((opcode, payload, used)) = parse_server_frame(&seen) {
                seen.drain(..used);
                if opcode == OP_CLOSE {
                    return u16::from_be_bytes([payload[0], payload[1]]);
                }
                continue;
            }
            let mut chunk = [0u8; 4096];
            match reader.read(&mut chunk).await {
                Ok(0) | Err(_) => panic!("connection ended without a close frame"),
                Ok(n) => seen.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    let sent = within("herald to end the flooding connection", flood)
        .await
        .unwrap();
    (code, sent)
}

#[actix_web::test]
async fn a_frame_header_declaring_a_terabyte_closes_with_1009_without_buffering() {
    let plain = "port = 0\nworkers = 1\nmax_frame_bytes = 65536\n";
    let guarded = format!("{plain}require_token = true\nclient_secret = \"{CLIENT_SECRET}\"\n");
    for (config, query) in [(plain.to_owned(), "id=flood"), (guarded, "await_register=1")] {
        let herald = HeraldProcess::start(&config, &[]).await;
        let mut ws = RawWs::connect(herald.port, "id=warmup").await;
        if query.starts_with("id") {
            assert_eq!(ws.recv_json().await["type"], "registered");
        }
        let before = herald.rss_kib();

        let (code, sent) = flood_one_frame(herald.port, query).await;

        assert_eq!(code, herald::protocol::close_code::MESSAGE_TOO_BIG);
        let grown = herald.rss_kib().saturating_sub(before);
        assert!(
            grown < 16 * 1024,
            "RSS grew by {grown} KiB on one refused frame of which {sent} bytes were sent ({config})"
        );
    }
}

#[actix_web::test]
async fn a_token_swapped_before_admission_does_not_keep_the_first_tokens_private_channels() {
    let app = spawn_app_with(with_tokens).await;
    let vip = token_for("alice", &["private:vip"]);
    let mut client = app
        .ws(&format!("token={vip}&channel=private:vip&await_register=1"))
        .await;
    client
        .send_json(&json!({"type": "register", "token": token_for("mallory", &[])}))
        .await;

    let refused = client.recv_json().await;
    assert_eq!(refused["type"], "error", "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains("private:vip"),
        "{refused}"
    );
    let registered = client.recv_json().await;
    assert_eq!(
        (&registered["type"], &registered["id"]),
        (&json!("registered"), &json!("mallory"))
    );
    let (_, body) = app
        .publish_form(&[("message", "for the vips"), ("channel", "private:vip")])
        .await;
    assert_eq!(body["delivered"], 0, "{body}");
    // The session is still usable, as mallory.
    let (_, body) = app
        .publish_form(&[("message", "hi"), ("id", "mallory")])
        .await;
    assert_eq!(body["delivered"], 1, "{body}");
    assert_eq!(client.recv_json().await["data"], "hi");
}
