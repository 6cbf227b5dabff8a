//! The replay budget (`max_replay_bytes`): whatever the history holds, one
//! resume pins at most that much memory, and a resume that would need more
//! is answered `reset`, with nothing replayed.
//!
//! The attack, measured from outside on herald as a child process: a
//! history filled by ordinary publishes, then anonymous clients resuming
//! from position 0 on every transport (and on Redis) without reading what
//! they asked for.

use serde_json::Value;

use crate::helpers::process::HeraldProcess;
use crate::helpers::redis::Redis;
use crate::helpers::{message_seqs, read_replay_seqs, RawHttp, RawWs, TestApp};

/// Size of each message that fills the history.
const MESSAGE_BYTES: usize = 48 * 1024;
/// Messages that fill the history: 24 MiB of frames.
const FILL_MESSAGES: usize = 512;
/// The default `max_replay_bytes`, in KiB.
const BUDGET_KIB: u64 = 4 * 1024;
/// Resumers per test.
const RESUMERS: u64 = 10;
/// Growth allowed besides the budgets: the connections' own buffers and
/// the allocator's slack.
const MARGIN_KIB: u64 = 16 * 1024;

/// Every node here: a history deep enough for the fill, the default
/// budget.
const CONFIG: &str = "port = 0\nworkers = 1\nhistory_size = 10000\n";

/// Fills the history with broadcasts; returns the epoch.
async fn fill(app: &TestApp) -> String {
    let payload = "x".repeat(MESSAGE_BYTES);
    for _ in 0..FILL_MESSAGES {
        let (status, body) = app.publish_form(&[("message", &payload)]).await;
        assert!(status.is_success(), "{body}");
    }
    app.position().await.0
}

/// The answer to a resume over the budget: `reset`, naming the budget.
fn assert_over_budget_reset(frame: &Value) {
    assert_eq!(frame["type"], "reset", "{frame:.200}");
    let reason = frame["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("max_replay_bytes"), "{frame}");
}

/// Fails when herald grew by more than the budget per resumer plus the
/// margin; prints the figures either way.
fn assert_bounded(what: &str, before_kib: u64, after_kib: u64) {
    let grown = after_kib.saturating_sub(before_kib);
    let bound = RESUMERS * BUDGET_KIB + MARGIN_KIB;
    eprintln!(
        "{what}: RSS {before_kib} KiB -> {after_kib} KiB (+{grown} KiB) with {RESUMERS} \
         resumers; bound +{bound} KiB"
    );
    assert!(
        grown <= bound,
        "{what}: herald grew by {grown} KiB for {RESUMERS} resumers (bound {bound} KiB)"
    );
}

#[actix_web::test]
async fn websocket_resumes_over_the_budget_are_reset_and_pin_almost_nothing() {
    let herald = HeraldProcess::start(CONFIG, &[]).await;
    let epoch = fill(&herald.app()).await;
    let before = herald.rss_kib();

    let mut resumers = Vec::new();
    for i in 0..RESUMERS {
        let query = format!("id=r{i}&since=0&epoch={epoch}");
        // A small receive buffer, never read past the first frame.
        let mut raw = RawWs::attempt_with_buffer(herald.port, &query, &[], Some(4096))
            .await
            .unwrap_or_else(|(status, body)| panic!("{status} {body}"));
        assert_eq!(raw.recv_json().await["type"], "registered");
        resumers.push(raw);
    }
    assert_bounded("websocket", before, herald.rss_kib());

    for raw in &mut resumers {
        assert_over_budget_reset(&raw.recv_json().await);
    }
}

#[actix_web::test]
async fn event_stream_resumes_over_the_budget_are_reset_and_pin_almost_nothing() {
    let herald = HeraldProcess::start(CONFIG, &[]).await;
    let app = herald.app();
    let epoch = fill(&app).await;
    let before = herald.rss_kib();

    let mut streams = Vec::new();
    for i in 0..RESUMERS {
        let mut events = app
            .sse(&format!("id=r{i}&since=0&epoch={epoch}"), &[])
            .await;
        assert_eq!(events.next_data().await.1["type"], "registered");
        streams.push(events);
    }
    assert_bounded("event stream", before, herald.rss_kib());

    for events in &mut streams {
        assert_over_budget_reset(&events.next_data().await.1);
    }
}

#[actix_web::test]
async fn long_poll_resumes_over_the_budget_are_reset_and_pin_almost_nothing() {
    let herald = HeraldProcess::start(CONFIG, &[]).await;
    let epoch = fill(&herald.app()).await;
    let before = herald.rss_kib();

    let mut polls = Vec::new();
    for i in 0..RESUMERS {
        let path = format!("/poll?id=r{i}&since=0&epoch={epoch}");
        let mut raw = RawHttp::get(herald.port, &path, Some(4096)).await;
        let (status, head) = raw.head().await;
        assert_eq!(status, 200, "{head}");
        polls.push((raw, head));
    }
    assert_bounded("long-poll", before, herald.rss_kib());

    for (raw, head) in polls {
        let body = raw.body(&head).await;
        assert_over_budget_reset(&serde_json::from_slice(&body).expect("JSON answer"));
    }
}

#[actix_web::test]
async fn redis_resumes_over_the_budget_are_reset_after_reading_at_most_the_budget() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let config = format!(
        "{CONFIG}[broker]\nkind = \"redis\"\nurl = \"{}\"\n",
        redis.url()
    );
    let herald = HeraldProcess::start(&config, &[]).await;
    let app = herald.app();
    app.wait_for_health("the node's Redis subscription", |h| {
        h["broker_connected"] == true
    })
    .await;
    let epoch = fill(&app).await;
    let rss_before = herald.rss_kib();
    let sent_before = redis.stat("total_net_output_bytes").await;

    let mut resumers = Vec::new();
    for i in 0..RESUMERS {
        let query = format!("id=r{i}&since=0&epoch={epoch}");
        let mut raw = RawWs::attempt_with_buffer(herald.port, &query, &[], Some(4096))
            .await
            .unwrap_or_else(|(status, body)| panic!("{status} {body}"));
        assert_eq!(raw.recv_json().await["type"], "registered");
        resumers.push(raw);
    }
    assert_bounded("redis websocket", rss_before, herald.rss_kib());
    for raw in &mut resumers {
        assert_over_budget_reset(&raw.recv_json().await);
    }

    // What Redis sent meanwhile: never more than the budget per resume (the
    // rest is this test's INFO and the node's presence reports).
    let sent_kib = (redis.stat("total_net_output_bytes").await - sent_before) / 1024;
    eprintln!("redis: sent {sent_kib} KiB for {RESUMERS} resumes over a 24 MiB history");
    assert!(
        sent_kib <= RESUMERS * BUDGET_KIB + 256,
        "Redis sent {sent_kib} KiB for {RESUMERS} resumes"
    );
}

#[actix_web::test]
async fn resumes_within_the_budget_replay_exactly_and_pin_at_most_the_budget() {
    // A 2 MiB budget; each resumer misses the last 40 messages (1.9 MiB).
    let config = format!("{CONFIG}max_replay_bytes = {}\n", 2 * 1024 * 1024);
    let herald = HeraldProcess::start(&config, &[]).await;
    let app = herald.app();
    let epoch = fill(&app).await;
    let last = app.position().await.1;
    let since = last - 40;
    let missed: Vec<u64> = ((since + 1)..=last).collect();
    let before = herald.rss_kib();

    // Every transport, none reading past its first frame for now.
    let mut sockets = Vec::new();
    let mut streams = Vec::new();
    let mut polls = Vec::new();
    for i in 0..RESUMERS / 2 {
        let query = format!("id=w{i}&since={since}&epoch={epoch}");
        let mut raw = RawWs::attempt_with_buffer(herald.port, &query, &[], Some(4096))
            .await
            .unwrap_or_else(|(status, body)| panic!("{status} {body}"));
        assert_eq!(raw.recv_json().await["type"], "registered");
        sockets.push(raw);
        let mut events = app
            .sse(&format!("id=s{i}&since={since}&epoch={epoch}"), &[])
            .await;
        assert_eq!(events.next_data().await.1["type"], "registered");
        streams.push(events);
        let path = format!("/poll?id=p{i}&since={since}&epoch={epoch}");
        let mut poll = RawHttp::get(herald.port, &path, Some(4096)).await;
        let (status, head) = poll.head().await;
        assert_eq!(status, 200, "{head}");
        polls.push((poll, head));
    }
    let grown = herald.rss_kib().saturating_sub(before);
    let bound = 3 * (RESUMERS / 2) * 2 * 1024 + MARGIN_KIB;
    eprintln!(
        "within the budget: RSS +{grown} KiB with {} resumers of 1.9 MiB each; bound +{bound} KiB",
        3 * (RESUMERS / 2)
    );
    assert!(grown <= bound, "herald grew by {grown} KiB (bound {bound})");

    // Now they read: exactly what they missed, once, in order.
    for raw in &mut sockets {
        let (seqs, end) = read_replay_seqs(raw).await;
        assert_eq!(end["type"], "resumed", "{end:.200}");
        assert_eq!(seqs, missed);
    }
    for events in &mut streams {
        let mut seqs = Vec::new();
        loop {
            let (_, frame) = events.next_data().await;
            match frame["type"].as_str() {
                Some("message") => seqs.push(frame["seq"].as_u64().expect("seq")),
                Some("resumed") => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(seqs, missed);
    }
    for (poll, head) in polls {
        let body: Value = serde_json::from_slice(&poll.body(&head).await).expect("JSON");
        let seqs = message_seqs(&body);
        assert_eq!(seqs, missed);
        assert_eq!(body["seq"], last);
    }
}
