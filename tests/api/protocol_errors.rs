//! WebSocket protocol violations close the session at once with the matching
//! close code, and leave nothing behind in the registry.

use herald::protocol::close_code;

use crate::helpers::{
    spawn_app_with, RawWs, TestApp, FIN, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,
    RSV1,
};

async fn app() -> TestApp {
    spawn_app_with(|c| c.max_frame_bytes = 1024).await
}

/// Sends `frames` on a fresh registered session and returns the close code.
async fn close_code_after(app: &TestApp, frames: &[(u8, Vec<u8>, bool)]) -> u16 {
    let mut raw = RawWs::connect(app.port, "id=victim").await;
    assert_eq!(raw.recv_json().await["type"], "registered");
    app.wait_for_counts(1, 1).await;
    for (first, payload, masked) in frames {
        raw.send_frame(*first, payload, *masked).await;
    }
    let code = raw.expect_close().await;
    app.wait_for_counts(0, 0).await;
    code
}

#[actix_web::test]
async fn reserved_bits_close_with_1002() {
    let app = app().await;
    let frames = [(FIN | RSV1 | OP_TEXT, b"{}".to_vec(), true)];
    assert_eq!(
        close_code_after(&app, &frames).await,
        close_code::PROTOCOL_ERROR
    );
}

#[actix_web::test]
async fn an_unmasked_frame_closes_with_1002() {
    let app = app().await;
    let frames = [(FIN | OP_TEXT, b"{}".to_vec(), false)];
    assert_eq!(
        close_code_after(&app, &frames).await,
        close_code::PROTOCOL_ERROR
    );
}

#[actix_web::test]
async fn an_unknown_opcode_closes_with_1002() {
    let app = app().await;
    let frames = [(FIN | 0x3, b"x".to_vec(), true)];
    assert_eq!(
        close_code_after(&app, &frames).await,
        close_code::PROTOCOL_ERROR
    );
}

#[actix_web::test]
async fn invalid_utf8_text_closes_with_1007() {
    let app = app().await;
    let frames = [(FIN | OP_TEXT, vec![b'{', 0xff, 0xfe, b'}'], true)];
    assert_eq!(
        close_code_after(&app, &frames).await,
        close_code::INVALID_PAYLOAD
    );
}

#[actix_web::test]
async fn invalid_utf8_across_fragments_closes_with_1007() {
    let app = app().await;
    // A valid 3-byte sequence cut in two is fine; a bad continuation byte is not.
    let frames = [
        (OP_TEXT, vec![b'"', 0xe2, 0x82], true),
        (FIN | OP_CONT, vec![0x28, b'"'], true),
    ];
    assert_eq!(
        close_code_after(&app, &frames).await,
        close_code::INVALID_PAYLOAD
    );
}

#[actix_web::test]
async fn a_frame_over_max_frame_bytes_closes_with_1009() {
    let app = app().await;
    let frames = [(FIN | OP_TEXT, vec![b' '; 1025], true)];
    assert_eq!(
        close_code_after(&app, &frames).await,
        close_code::MESSAGE_TOO_BIG
    );
}

#[actix_web::test]
async fn fragments_over_max_frame_bytes_close_with_1009() {
    let app = app().await;
    let frames = [
        (OP_TEXT, vec![b' '; 600], true),
        (OP_CONT, vec![b' '; 600], true),
        (FIN | OP_CONT, b"{}".to_vec(), true),
    ];
    assert_eq!(
        close_code_after(&app, &frames).await,
        close_code::MESSAGE_TOO_BIG
    );
}

#[actix_web::test]
async fn fragmented_binary_over_the_limit_closes_with_1009_too() {
    let app = app().await;
    let frames = [
        (OP_BINARY, vec![0; 800], true),
        (FIN | OP_CONT, vec![0; 800], true),
    ];
    assert_eq!(
        close_code_after(&app, &frames).await,
        close_code::MESSAGE_TOO_BIG
    );
}

#[actix_web::test]
async fn a_control_frame_over_125_bytes_closes_with_1002() {
    let app = app().await;
    let frames = [(FIN | OP_PING, vec![b'p'; 126], true)];
    assert_eq!(
        close_code_after(&app, &frames).await,
        close_code::PROTOCOL_ERROR
    );
}

#[actix_web::test]
async fn a_fragmented_control_frame_closes_with_1002() {
    let app = app().await;
    let frames = [(OP_PING, b"p".to_vec(), true)];
    assert_eq!(
        close_code_after(&app, &frames).await,
        close_code::PROTOCOL_ERROR
    );
}

#[actix_web::test]
async fn a_continuation_without_a_start_closes_with_1002() {
    let app = app().await;
    let frames = [(FIN | OP_CONT, b"{}".to_vec(), true)];
    assert_eq!(
        close_code_after(&app, &frames).await,
        close_code::PROTOCOL_ERROR
    );
}

#[actix_web::test]
async fn a_new_message_inside_a_fragmented_one_closes_with_1002() {
    let app = app().await;
    let frames = [
        (OP_TEXT, b"{".to_vec(), true),
        (FIN | OP_TEXT, b"{}".to_vec(), true),
    ];
    assert_eq!(
        close_code_after(&app, &frames).await,
        close_code::PROTOCOL_ERROR
    );
}

#[actix_web::test]
async fn an_invalid_close_code_closes_with_1002() {
    let app = app().await;
    for bad in [999u16, 1005, 1006, 2999] {
        let frames = [(FIN | OP_CLOSE, bad.to_be_bytes().to_vec(), true)];
        assert_eq!(
            close_code_after(&app, &frames).await,
            close_code::PROTOCOL_ERROR,
            "close code {bad}"
        );
    }
}

#[actix_web::test]
async fn a_valid_close_is_echoed() {
    let app = app().await;
    let frames = [(FIN | OP_CLOSE, 4321u16.to_be_bytes().to_vec(), true)];
    assert_eq!(close_code_after(&app, &frames).await, 4321);
}

#[actix_web::test]
async fn the_echo_route_sends_messages_back_and_closes_as_ws_does() {
    let app = spawn_app_with(|c| {
        c.max_frame_bytes = 1024;
        c.echo_route = true;
    })
    .await;
    let mut raw = RawWs::connect_to(app.port, "/echo").await;
    raw.send_frame(FIN | OP_TEXT, b"not json", true).await;
    assert_eq!(
        raw.read_frame().await,
        Some((OP_TEXT, b"not json".to_vec()))
    );
    raw.send_frame(OP_BINARY, &[1, 2], true).await;
    raw.send_frame(FIN | OP_CONT, &[3], true).await;
    assert_eq!(raw.read_frame().await, Some((OP_BINARY, vec![1, 2, 3])));
    raw.send_frame(FIN | OP_PING, b"p", true).await;
    assert_eq!(raw.read_frame().await, Some((OP_PONG, b"p".to_vec())));
    raw.send_frame(FIN | OP_TEXT, &vec![b'a'; 1025], true).await;
    assert_eq!(raw.expect_close().await, close_code::MESSAGE_TOO_BIG);
    assert_eq!(app.health().await["sessions"], 0, "never routed");
}
