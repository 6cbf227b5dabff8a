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

/// A `register` answered while broadcasts are being routed: those that
/// `NotifyServer` routed before it took the register (so at or below the
/// position `registered` gives) reach the client before `registered`, never
/// after it. herald.js would drop one written after as already shown.
#[actix_web::test]
async fn no_message_a_registered_position_covers_comes_after_it() {
    use std::cell::Cell;
    use std::rc::Rc;

    use crate::helpers::{spawn_app, RawWs, TestApp, FIN, OP_TEXT};
    // Under `max_client_frames_per_sec` (50), which a burst may reach.
    const REGISTERS: usize = 40;
    const PUBLISHERS: usize = 4;
    let app = spawn_app().await;
    let mut ws = RawWs::connect(app.port, "").await;
    assert_eq!(ws.recv_json().await["type"], "connected");
    let stop = Rc::new(Cell::new(false));
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let (stop, port) = (stop.clone(), app.port);
        publishers.push(actix_web::rt::spawn(async move {
            let app = TestApp::at(port);
            let mut sent = 0u64;
            while !stop.get() {
                app.publish_seq(&[("message", &format!("p{p}-{sent}"))])
                    .await;
                sent += 1;
            }
            sent
        }));
    }
    // Every message seq seen so far, and each registered position with the
    // messages seen before it.
    let mut late = Vec::new();
    let mut covered_by: Option<u64> = None;
    let mut messages = 0u64;
    for i in 0..REGISTERS {
        let register = format!(r#"{{"type":"register","id":"r{i}"}}"#);
        ws.send_frame(FIN | OP_TEXT, register.as_bytes(), true)
            .await;
        loop {
            let frame = ws.recv_json().await;
            match frame["type"].as_str() {
                Some("message") => {
                    let seq = frame["seq"].as_u64().expect("seq");
                    messages += 1;
                    if covered_by.is_some_and(|position| seq <= position) {
                        late.push((seq, covered_by));
                    }
                }
                Some("registered") => {
                    covered_by = frame["seq"].as_u64();
                    break;
                }
                _ => {}
            }
        }
    }
    stop.set(true);
    let mut published = 0;
    for publisher in publishers {
        published += publisher.await.expect("publisher");
    }
    assert!(
        messages > 0 && published > 0,
        "no broadcast was routed during the registers"
    );
    assert!(
        late.is_empty(),
        "{} messages came after a registered position covering them (seq, position): {:?}",
        late.len(),
        &late[..late.len().min(10)]
    );
}
