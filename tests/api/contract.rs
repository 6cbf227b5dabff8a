//! The broker contract: the same tests run against `[broker] kind =
//! "memory"` and against a real Redis (`kind = "redis"`, a private
//! `redis-server` per test). Whatever the broker, a publish takes the next
//! `seq` and reaches its targets once, in order; a client that comes back
//! gets exactly what it missed, however many slices its replay takes; a
//! position the history no longer covers, or a replay over
//! `max_replay_bytes`, gets a `reset`, never a partial replay.

use herald::config::Config;
use serde_json::{json, Value};

use crate::helpers::redis::Redis;
use crate::helpers::{read_replay_seqs, spawn_app_with, TestApp, WsClient};

/// Where the node under test keeps its messages.
pub enum Backend {
    Memory,
    Redis(Redis),
}

impl Backend {
    /// A node on this back end, with `configure` applied to its config;
    /// returns once it can take publishes.
    pub async fn node(&self, configure: impl FnOnce(&mut Config)) -> TestApp {
        match self {
            Self::Memory => spawn_app_with(configure).await,
            Self::Redis(redis) => redis.node(configure).await,
        }
    }
}

/// Runs each listed test once per back end: `memory::<name>` and
/// `redis::<name>`. The module that invokes it names `Backend` (this one).
macro_rules! contract {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[actix_web::test]
                async fn $name() {
                    super::$name(super::Backend::Memory).await;
                }
            )*
        }
        mod redis {
            $(
                #[actix_web::test]
                async fn $name() {
                    if let Some(redis) = crate::helpers::redis::Redis::start().await {
                        super::$name(super::Backend::Redis(redis)).await;
                    }
                }
            )*
        }
    };
}

pub(crate) use contract;

contract!(
    each_publish_takes_the_next_seq_and_reaches_its_targets_once,
    a_client_that_comes_back_gets_what_it_missed_once_in_order_then_live,
    a_position_the_history_no_longer_covers_gets_a_reset,
    a_position_from_another_epoch_gets_a_reset,
    a_position_ahead_of_the_server_gets_a_reset,
    a_replay_within_the_budget_arrives_whole_before_live_messages,
    a_replay_over_the_budget_gets_a_reset_and_nothing_of_it,
    a_message_older_than_the_history_ttl_is_a_gap_and_a_newer_one_is_replayed,
    a_message_older_than_the_history_ttl_is_a_gap_in_a_stream_still_in_use,
);

/// The replay budget of the tests below: 1 MiB.
const BUDGET_BYTES: usize = 1024 * 1024;

/// The `(seq, data)` of the next frame, which must be a message.
async fn next_message(client: &mut WsClient) -> (u64, Value) {
    let frame = client.recv_json().await;
    assert_eq!(frame["type"], "message", "{frame}");
    (frame["seq"].as_u64().expect("seq"), frame["data"].clone())
}

/// Message frames up to `resumed` or `reset`, and that last frame.
/// Reads a resume's answer and checks it is a `reset` whose reason names
/// `why`, with nothing replayed before it (all or nothing); returns it.
async fn expect_reset(back: &mut WsClient, why: &str) -> Value {
    let (replayed, end) = read_replay_seqs(back).await;
    assert_eq!(end["type"], "reset", "{end}");
    assert!(replayed.is_empty(), "all or nothing: {replayed:?}");
    assert!(
        end["reason"].as_str().is_some_and(|r| r.contains(why)),
        "{end}"
    );
    end
}

/// Opens `id=63&channel=news`, then leaves; returns its position.
async fn visit_and_leave(app: &TestApp) -> (String, u64) {
    let mut client = app.ws("id=63&channel=news").await;
    let registered = client.recv_json().await;
    assert_eq!(registered["type"], "registered", "{registered}");
    assert_eq!(client.recv_json().await["type"], "subscribed");
    client.close().await;
    app.wait_for_counts(0, 0).await;
    let epoch = registered["epoch"].as_str().expect("epoch").to_owned();
    (epoch, registered["seq"].as_u64().expect("seq"))
}

async fn each_publish_takes_the_next_seq_and_reaches_its_targets_once(backend: Backend) {
    let app = backend.node(|_| {}).await;
    let mut a = app.ws("id=63&channel=news").await;
    a.recv_json().await; // registered
    a.recv_json().await; // subscribed
    let mut b = app.ws_registered("64").await;

    let all = app.publish_seq(&[("message", "all")]).await;
    let to_a = app.publish_seq(&[("message", "to 63"), ("id", "63")]).await;
    let to_b = app.publish_seq(&[("message", "to 64"), ("id", "64")]).await;
    let news = app
        .publish_seq(&[("message", "news"), ("channel", "news")])
        .await;
    let sport = app
        .publish_seq(&[("message", "sport"), ("channel", "sport")])
        .await;
    assert_eq!(
        [to_a, to_b, news, sport],
        [all + 1, all + 2, all + 3, all + 4],
        "one seq per publish, in publish order"
    );

    for expected in [(all, "all"), (to_a, "to 63"), (news, "news")] {
        assert_eq!(next_message(&mut a).await, (expected.0, json!(expected.1)));
    }
    for expected in [(all, "all"), (to_b, "to 64")] {
        assert_eq!(next_message(&mut b).await, (expected.0, json!(expected.1)));
    }
    // Nothing else came: the next message each sees is this one.
    let last = app.publish_seq(&[("message", "last")]).await;
    assert_eq!(next_message(&mut a).await, (last, json!("last")));
    assert_eq!(next_message(&mut b).await, (last, json!("last")));
}

async fn a_client_that_comes_back_gets_what_it_missed_once_in_order_then_live(backend: Backend) {
    let app = backend.node(|_| {}).await;
    let (epoch, since) = visit_and_leave(&app).await;
    let mut missed = Vec::new();
    for i in 0..10 {
        let text = i.to_string();
        missed.push(app.publish_seq(&[("message", &text)]).await);
        missed.push(app.publish_seq(&[("message", &text), ("id", "63")]).await);
        missed.push(
            app.publish_seq(&[("message", &text), ("channel", "news")])
                .await,
        );
        // Someone else's: never replayed to 63.
        app.publish_seq(&[("message", &text), ("id", "64")]).await;
        app.publish_seq(&[("message", &text), ("channel", "sport")])
            .await;
    }

    let mut back = app
        .ws(&format!("id=63&channel=news&since={since}&epoch={epoch}"))
        .await;
    assert_eq!(back.recv_json().await["type"], "registered");
    assert_eq!(back.recv_json().await["type"], "subscribed");
    let (replayed, end) = read_replay_seqs(&mut back).await;
    assert_eq!(end["type"], "resumed", "{end}");
    assert_eq!(replayed, missed, "every missed message, once, in order");
    assert_eq!(end["count"], 30);

    let live = app.publish_seq(&[("message", "live"), ("id", "63")]).await;
    assert_eq!(next_message(&mut back).await, (live, json!("live")));
}

async fn a_position_the_history_no_longer_covers_gets_a_reset(backend: Backend) {
    let app = backend.node(|c| c.history_size = 2).await;
    let (epoch, since) = visit_and_leave(&app).await;
    for _ in 0..3 {
        app.publish_seq(&[("message", "m"), ("id", "63")]).await;
    }
    let mut back = app
        .ws(&format!("id=63&channel=news&since={since}&epoch={epoch}"))
        .await;
    back.recv_json().await; // registered
    back.recv_json().await; // subscribed
    let end = expect_reset(&mut back, "").await;

    // Live from the reset's position on. With Redis a message published
    // just before may still be on its way to this node: it comes now, once,
    // since it is newer than that position.
    let mut last = end["seq"].as_u64().expect("reset seq");
    let live = app.publish_seq(&[("message", "live"), ("id", "63")]).await;
    loop {
        let (seq, data) = next_message(&mut back).await;
        assert!(seq > last, "{seq} after {last}");
        last = seq;
        if data == "live" {
            assert_eq!(seq, live);
            break;
        }
    }
}

async fn a_position_from_another_epoch_gets_a_reset(backend: Backend) {
    let app = backend.node(|_| {}).await;
    app.publish_seq(&[("message", "m"), ("id", "63")]).await;
    let mut back = app.ws("id=63&since=0&epoch=0000000000000000").await;
    back.recv_json().await; // registered
    expect_reset(&mut back, "epoch").await;
}

async fn a_position_ahead_of_the_server_gets_a_reset(backend: Backend) {
    let app = backend.node(|_| {}).await;
    let seq = app.publish_seq(&[("message", "m"), ("id", "63")]).await;
    let (epoch, _) = app.position().await;
    for since in [seq + 1000, u64::MAX] {
        let mut back = app.ws(&format!("id=63&since={since}&epoch={epoch}")).await;
        back.recv_json().await; // registered
        expect_reset(&mut back, "ahead").await;
    }
}

async fn a_replay_within_the_budget_arrives_whole_before_live_messages(backend: Backend) {
    let app = backend
        .node(|c| {
            c.history_size = 1000;
            c.max_replay_bytes = BUDGET_BYTES;
        })
        .await;
    let (epoch, since) = visit_and_leave(&app).await;
    // About 900 KiB missed, in three streams: many slices, within 1 MiB.
    let text = "x".repeat(16 * 1024);
    let mut missed = Vec::new();
    for i in 0..18 {
        missed.push(app.publish_seq(&[("message", &text)]).await);
        missed.push(app.publish_seq(&[("message", &text), ("id", "63")]).await);
        missed.push(
            app.publish_seq(&[("message", &text), ("channel", "news")])
                .await,
        );
        app.publish_seq(&[("message", &i.to_string()), ("id", "64")])
            .await;
    }

    // Live messages race with the resume.
    let port = app.port;
    let publisher = actix_web::rt::spawn(async move {
        let app = TestApp {
            port,
            http: awc::Client::default(),
        };
        let mut seqs = Vec::new();
        for i in 0..30 {
            seqs.push(
                app.publish_seq(&[("message", &i.to_string()), ("id", "63")])
                    .await,
            );
        }
        seqs
    });
    let mut back = app
        .ws(&format!("id=63&channel=news&since={since}&epoch={epoch}"))
        .await;
    assert_eq!(back.recv_json().await["type"], "registered");
    assert_eq!(back.recv_json().await["type"], "subscribed");
    let (replayed, end) = read_replay_seqs(&mut back).await;
    assert_eq!(end["type"], "resumed", "{end}");
    let live = publisher.await.expect("publisher");

    // The replay holds every missed message; the rest (live ones published
    // while it was read) follows, each once, in order.
    let mut seen = replayed;
    let mut last = end["seq"].as_u64().expect("resumed seq");
    while seen.last().is_none_or(|s| s < live.last().expect("live")) {
        let (seq, _) = next_message(&mut back).await;
        assert!(seq > last, "{seq} after {last}");
        last = seq;
        seen.push(seq);
    }
    let mut expected = missed;
    expected.extend(&live);
    assert_eq!(seen, expected, "everything once, in order");
}

async fn a_replay_over_the_budget_gets_a_reset_and_nothing_of_it(backend: Backend) {
    let app = backend
        .node(|c| {
            c.history_size = 1000;
            c.max_replay_bytes = BUDGET_BYTES;
        })
        .await;
    let (epoch, since) = visit_and_leave(&app).await;
    let text = "x".repeat(16 * 1024);
    for _ in 0..70 {
        app.publish_seq(&[("message", &text), ("id", "63")]).await;
    }
    let mut back = app
        .ws(&format!("id=63&channel=news&since={since}&epoch={epoch}"))
        .await;
    back.recv_json().await; // registered
    back.recv_json().await; // subscribed
    let end = expect_reset(&mut back, "max_replay_bytes").await;
    let reason = end["reason"].as_str().expect("reason");
    assert!(reason.contains(&format!("after seq {since}")), "{reason}");

    // Live from the reset's position on.
    let live = app.publish_seq(&[("message", "live"), ("id", "63")]).await;
    let mut last = end["seq"].as_u64().expect("reset seq");
    loop {
        let (seq, data) = next_message(&mut back).await;
        assert!(seq > last, "{seq} after {last}");
        last = seq;
        if data == "live" {
            assert_eq!(seq, live);
            break;
        }
    }
}

/// Resumes as `id` from `since`; returns what was replayed and the frame
/// that ended it (`resumed` or `reset`).
async fn resume(app: &TestApp, id: &str, since: u64, epoch: &str) -> (Vec<u64>, Value) {
    let mut back = app
        .ws(&format!("id={id}&since={since}&epoch={epoch}"))
        .await;
    assert_eq!(back.recv_json().await["type"], "registered");
    read_replay_seqs(&mut back).await
}

async fn a_message_older_than_the_history_ttl_is_a_gap_and_a_newer_one_is_replayed(
    backend: Backend,
) {
    let app = backend.node(|c| c.history_ttl_secs = 2).await;
    let (epoch, start) = app.position().await;
    let old = app.publish_seq(&[("message", "old"), ("id", "63")]).await;
    // Within the TTL: replayed.
    let (replayed, end) = resume(&app, "63", start, &epoch).await;
    assert_eq!((replayed, &end["type"]), (vec![old], &json!("resumed")));

    // Once it is older than the TTL: `reset`, and never a partial replay
    // on the way there.
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let (replayed, end) = resume(&app, "63", start, &epoch).await;
            if end["type"] == "reset" {
                assert!(replayed.is_empty(), "all or nothing: {replayed:?}");
                break;
            }
            assert_eq!(replayed, [old], "{end}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the message to expire within 30 s");

    // New messages, on that stream and on the broadcast one: a position
    // from before the expired message is still a gap; one after it gets
    // the new ones.
    let all = app.publish_seq(&[("message", "new to all")]).await;
    let new = app.publish_seq(&[("message", "new"), ("id", "63")]).await;
    let (replayed, end) = resume(&app, "63", start, &epoch).await;
    assert_eq!((replayed, &end["type"]), (vec![], &json!("reset")));
    let (replayed, end) = resume(&app, "63", old, &epoch).await;
    assert_eq!(
        (replayed, &end["type"]),
        (vec![all, new], &json!("resumed"))
    );
}

async fn a_message_older_than_the_history_ttl_is_a_gap_in_a_stream_still_in_use(backend: Backend) {
    let app = backend
        .node(|c| {
            c.history_ttl_secs = 2;
            c.history_size = 1000;
        })
        .await;
    let (epoch, start) = app.position().await;
    // A session with neither id nor channel: the broadcast stream alone,
    // which keeps getting messages. A resume from the start gets all of
    // them until the first is older than the TTL, then `reset`.
    let resume_all = |since: u64| {
        let query = format!("since={since}&epoch={epoch}");
        let app = &app;
        async move { read_replay_seqs(&mut app.ws(&query).await).await }
    };
    let mut sent = vec![app.publish_seq(&[("message", "old")]).await];
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        loop {
            let (replayed, end) = resume_all(start).await;
            if end["type"] == "reset" {
                assert!(replayed.is_empty(), "all or nothing: {replayed:?}");
                break;
            }
            assert_eq!(replayed, sent, "{end}");
            sent.push(app.publish_seq(&[("message", "more")]).await);
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the first message to expire within 30 s");

    // A position after the newest of them still gets what followed.
    let since = *sent.last().expect("a message");
    let fresh = app.publish_seq(&[("message", "fresh")]).await;
    let (replayed, end) = resume_all(since).await;
    assert_eq!((replayed, &end["type"]), (vec![fresh], &json!("resumed")));
}
