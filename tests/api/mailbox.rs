//! Per-session fan-out mailboxes: what a session leaves behind once it is
//! done, measured from outside on herald as a child process.

use crate::helpers::process::HeraldProcess;

/// Polls answered at once, each by a poll session of its own.
const POLLS: u64 = 16_000;
/// Growth allowed for all of them: the allocator's slack and the
/// connection's buffers, far below one KiB per poll.
const BOUND_KIB: u64 = 4 * 1024;

#[actix_web::test]
async fn long_polls_answered_at_once_leave_nothing_behind() {
    let herald = HeraldProcess::start("port = 0\nworkers = 1\n", &[]).await;
    let app = herald.app();
    assert!(app.publish_seq(&[("message", "m")]).await >= 1);
    let epoch = app.position().await.0;
    // One keep-alive connection for every poll; each is answered at once
    // with the replay of the one message.
    let client = awc::Client::default();
    let url = app.url(&format!("/poll?since=0&epoch={epoch}"));
    let poll = || async {
        let mut resp = client.get(&url).send().await.expect("GET /poll");
        assert!(resp.status().is_success());
        let body = resp.body().await.expect("poll answer");
        assert!(body.starts_with(b"{\"messages\":[{"), "{body:?}");
    };
    for _ in 0..1_000 {
        poll().await;
    }
    let before = herald.rss_kib();
    for _ in 0..POLLS {
        poll().await;
    }
    let after = herald.rss_kib();
    let grown = after.saturating_sub(before);
    eprintln!("{POLLS} polls: RSS {before} KiB -> {after} KiB (+{grown} KiB)");
    assert!(
        grown <= BOUND_KIB,
        "herald grew by {grown} KiB over {POLLS} answered polls (bound {BOUND_KIB} KiB): \
         something of each poll outlives it"
    );
}

/// A message fanned out before a `register` frame was read is written
/// before its answer, whose position (`seq`) covers it: herald.js takes
/// `registered`'s position and drops any message at or below it.
#[actix_web::test]
async fn messages_queued_before_a_register_frame_come_before_registered() {
    use crate::helpers::{spawn_app, RawWs, FIN, OP_TEXT};
    let app = spawn_app().await;
    let mut ws = RawWs::attempt_with_buffer(app.port, "", &[], Some(4096))
        .await
        .expect("upgrade");
    assert_eq!(ws.recv_json().await["type"], "connected");
    // The client stops reading: big broadcasts fill the socket's buffers,
    // so the session is not run until it reads again.
    let big = "x".repeat(60_000);
    for _ in 0..150 {
        app.publish_form(&[("message", &big)]).await;
    }
    let marker = app.publish_seq(&[("message", "marker")]).await;
    ws.send_frame(FIN | OP_TEXT, br#"{"type":"register","id":"r"}"#, true)
        .await;
    let mut seen = Vec::new();
    let registered = loop {
        let frame = ws.recv_json().await;
        match frame["type"].as_str() {
            Some("message") => seen.push(frame["seq"].as_u64().expect("seq")),
            Some("registered") => break frame,
            _ => {}
        }
    };
    let position = registered["seq"].as_u64().expect("seq");
    assert!(position >= marker, "{registered}");
    assert!(
        seen.contains(&marker),
        "registered (seq {position}) came before message {marker}, which it covers \
         ({} messages before it)",
        seen.len()
    );
}
