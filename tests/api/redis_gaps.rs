//! A node whose subscription to Redis breaks catches up when it is back:
//! what was published meanwhile reaches its sessions once, in order, from
//! the node log and the streams; where a stream no longer keeps a missed
//! message, the sessions of that stream (and only they) are closed with
//! 4004, resume, and get `reset` with a position they can go on from.

use std::collections::HashSet;
use std::time::Duration;

use actix_http::ws::Frame;
use actix_web::http::StatusCode;
use herald::protocol::close_code;
use serde_json::Value;

use crate::helpers::latency::{Delay, Link};
use crate::helpers::redis::{client_ids, Redis};
use crate::helpers::steady::{Publisher, Received};
use crate::helpers::{within, WsClient};

async fn kill(con: &mut redis::aio::MultiplexedConnection, ids: &HashSet<u64>) {
    for id in ids {
        let killed: u64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("ID")
            .arg(id)
            .query_async(con)
            .await
            .expect("CLIENT KILL");
        assert_eq!(killed, 1, "client {id} was not there to kill");
    }
}

/// A WebSocket as id `u1` on `node`, resumed from `epoch`/`since` with
/// nothing to replay.
async fn resumed_u1(node: &crate::helpers::TestApp, epoch: &str, since: u64) -> WsClient {
    let mut ws = node.ws(&format!("id=u1&since={since}&epoch={epoch}")).await;
    assert_eq!(ws.recv_json().await["type"], "registered");
    assert_eq!(ws.recv_json().await["type"], "resumed");
    ws
}

/// Reads `ws` into `got` until `done`.
async fn read(ws: &mut WsClient, got: &mut Received, done: impl Fn(&Received) -> bool) {
    while !done(got) {
        got.take(&ws.recv_json().await);
    }
}

#[actix_web::test]
async fn a_node_whose_connections_are_killed_loses_nothing() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let mut admin = redis.connection().await;
    let (normal, pubsub) = (
        client_ids(&mut admin, "normal").await,
        client_ids(&mut admin, "pubsub").await,
    );
    let a = redis.node(|_| {}).await;
    // Node A's connections: its subscriber and its command connection.
    let a_pubsub: HashSet<u64> = &client_ids(&mut admin, "pubsub").await - &pubsub;
    let a_normal: HashSet<u64> = &client_ids(&mut admin, "normal").await - &normal;
    assert_eq!(a_pubsub.len(), 1, "{a_pubsub:?}");
    assert!(!a_normal.is_empty());
    let b = redis.node(|_| {}).await;

    let mut got = Received {
        position: Some(a.position().await),
        ..Received::default()
    };
    let mut ws = a.ws(&got.resume_query()).await;
    let publisher = Publisher::start(&b);
    read(&mut ws, &mut got, |got| got.seqs.len() >= 10).await;
    kill(&mut admin, &a_pubsub).await;
    kill(&mut admin, &a_normal).await;
    // Publishing goes on while A subscribes again and catches up.
    publisher.wait_for(40).await;
    let fewest = publisher.fewest_nodes();
    let accepted = publisher.stop().await;
    let last = accepted.last_for_client().expect("messages were accepted");
    within(
        "the last message",
        read(&mut ws, &mut got, |got| got.max() >= last),
    )
    .await;

    let tally = got.tally(&accepted);
    eprintln!(
        "{} accepted for the client, {} received: {tally}",
        accepted.for_client().len(),
        got.seqs.len()
    );
    // Some messages were announced while A was not subscribed: without
    // its catch-up they would be lost.
    assert_eq!(fewest, Some(1), "A's subscription never broke");
    assert!(got.resets.is_empty(), "{:?}", got.resets);
    assert!(tally.is_clean(), "{tally}: {:?}", got.seqs);
}

#[actix_web::test]
async fn a_message_trimmed_during_the_gap_sends_only_its_sessions_to_resume() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let mut admin = redis.connection().await;
    let pubsub = client_ids(&mut admin, "pubsub").await;
    let proxy = redis.proxy().await;
    let a = redis.node_through(&proxy, |c| c.history_size = 3).await;
    let a_pubsub: HashSet<u64> = &client_ids(&mut admin, "pubsub").await - &pubsub;
    let b = redis.node(|c| c.history_size = 3).await;

    let (epoch, start) = a.position().await;
    let from = |id: &str| format!("id={id}&since={start}&epoch={epoch}");
    let mut u1 = a.ws(&from("u1")).await;
    let mut u2 = a.ws(&from("u2")).await;
    for ws in [&mut u1, &mut u2] {
        assert_eq!(ws.recv_json().await["type"], "registered");
        assert_eq!(ws.recv_json().await["type"], "resumed");
    }

    // A's subscriber is cut and cannot come back for now.
    proxy.refuse(true);
    kill(&mut admin, &a_pubsub).await;
    a.wait_for_health("A to notice", |h| h["broker_connected"] == false)
        .await;
    let to = |id: &'static str| {
        let b = &b;
        async move {
            let (status, body) = b.publish_form(&[("message", "m"), ("id", id)]).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["nodes"], 1, "A is not subscribed: {body}");
            body["seq"].as_u64().expect("seq")
        }
    };
    // Five to u1: its stream keeps the last three; one to u2.
    for _ in 0..5 {
        to("u1").await;
    }
    let for_u2 = to("u2").await;
    proxy.refuse(false);

    // u2 missed nothing that is gone: it gets its message and stays.
    let message = u2.recv_json().await;
    assert_eq!(
        (message["type"].as_str(), message["seq"].as_u64()),
        (Some("message"), Some(for_u2))
    );
    // u1 gets no message past the gap, only the close.
    match u1.recv().await {
        Some(Frame::Close(Some(reason))) => assert_eq!(u16::from(reason.code), close_code::MISSED),
        other => panic!("expected close {}, got {other:?}", close_code::MISSED),
    }
    // Resuming from where it was gets `reset` with a usable position.
    let mut again = a.ws(&from("u1")).await;
    assert_eq!(again.recv_json().await["type"], "registered");
    let reset: Value = again.recv_json().await;
    assert_eq!(reset["type"], "reset", "{reset}");
    let next = b
        .publish_form(&[("message", "after"), ("id", "u1")])
        .await
        .1;
    let message = again.recv_json().await;
    assert_eq!(message["seq"], next["seq"], "{message}");
    assert!(
        next["seq"].as_u64() > reset["seq"].as_u64(),
        "{reset} {next}"
    );
    // u2's session is still open and served.
    let next = b
        .publish_form(&[("message", "still"), ("id", "u2")])
        .await
        .1;
    assert_eq!(u2.recv_json().await["seq"], next["seq"]);
}

#[actix_web::test]
async fn after_redis_restarts_empty_every_session_resumes_once_and_numbering_goes_on() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let a = redis.node(|_| {}).await;
    let (epoch, start) = a.position().await;
    let mut ws = resumed_u1(&a, &epoch, start).await;
    let mut newest = 0;
    for _ in 0..3 {
        let (status, body) = a.publish_form(&[("message", "m"), ("id", "u1")]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        newest = body["seq"].as_u64().expect("seq");
        assert_eq!(ws.recv_json().await["seq"], newest);
    }

    redis.kill();
    redis.restart().await;
    // The node takes the new epoch and tells its session to resume...
    assert_eq!(ws.close_code_next().await, Some(close_code::MISSED));
    a.wait_for_health("A to subscribe again", |h| h["broker_connected"] == true)
        .await;
    // ...which is told, once, that what came before is gone; its position
    // is of the new epoch and not below what it had.
    let mut again = a.ws(&format!("id=u1&since={newest}&epoch={epoch}")).await;
    assert_eq!(again.recv_json().await["type"], "registered");
    let reset = again.recv_json().await;
    assert_eq!(reset["type"], "reset", "{reset}");
    assert_ne!(reset["epoch"], epoch.as_str(), "{reset}");
    assert!(reset["seq"].as_u64() >= Some(newest), "{reset}");
    let (status, body) = a.publish_form(&[("message", "after"), ("id", "u1")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["seq"].as_u64() > Some(newest),
        "numbering went back: {body}"
    );
    assert_eq!(again.recv_json().await["seq"], body["seq"]);
    // Resuming from the reset's position has nothing to replay.
    let mut third = a
        .ws(&format!(
            "id=u1&since={}&epoch={}",
            body["seq"],
            reset["epoch"].as_str().expect("epoch")
        ))
        .await;
    assert_eq!(third.recv_json().await["type"], "registered");
    let resumed = third.recv_json().await;
    assert_eq!(resumed["type"], "resumed", "{resumed}");
}

/// Publishes `text` to id `u1` on `node`; its seq.
async fn to_u1(node: &crate::helpers::TestApp, text: &str) -> u64 {
    let (status, body) = node.publish_form(&[("message", text), ("id", "u1")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["seq"].as_u64().expect("seq")
}

/// Resumes `u1` on `node` from `epoch`/`since` after its session was told
/// to; returns the `reset` and the seqs of the messages after it, reading
/// until `until` arrived.
async fn resume_after_loss(
    node: &crate::helpers::TestApp,
    epoch: &str,
    since: u64,
    until: u64,
) -> (Value, Vec<u64>) {
    let mut ws = node.ws(&format!("id=u1&since={since}&epoch={epoch}")).await;
    assert_eq!(ws.recv_json().await["type"], "registered");
    let reset = ws.recv_json().await;
    assert_eq!(reset["type"], "reset", "{reset}");
    let mut seqs = Vec::new();
    while seqs.last() < Some(&until) {
        let frame = ws.recv_json().await;
        assert_eq!(frame["type"], "message", "{frame}");
        seqs.push(frame["seq"].as_u64().expect("seq"));
    }
    (reset, seqs)
}

#[actix_web::test]
async fn after_a_flushall_every_node_tells_its_sessions_and_nothing_accepted_is_lost() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let a = redis.node(|_| {}).await;
    let b = redis.node(|_| {}).await;
    let (epoch, start) = a.position().await;
    let mut on_a = a.ws(&format!("id=u1&since={start}&epoch={epoch}")).await;
    let mut on_b = b.ws(&format!("id=u1&since={start}&epoch={epoch}")).await;
    for ws in [&mut on_a, &mut on_b] {
        assert_eq!(ws.recv_json().await["type"], "registered");
        assert_eq!(ws.recv_json().await["type"], "resumed");
    }
    let before = to_u1(&b, "before").await;
    for ws in [&mut on_a, &mut on_b] {
        assert_eq!(ws.recv_json().await["seq"], before);
    }

    // Redis loses everything while every connection stays up.
    redis.flush_all().await;
    let first = to_u1(&b, "first after").await;
    assert!(
        first > before,
        "numbering went back: {first} after {before}"
    );
    // Both nodes learn the new epoch from that message and tell their
    // sessions, which have not been given it.
    for ws in [&mut on_a, &mut on_b] {
        assert_eq!(ws.close_code_next().await, Some(close_code::MISSED));
    }
    // Each resumes into the new epoch: `reset`, then what it already holds.
    for node in [&a, &b] {
        let (reset, seqs) = resume_after_loss(node, &epoch, before, first).await;
        assert_ne!(reset["epoch"], epoch.as_str(), "{reset}");
        assert!(reset["seq"].as_u64() < Some(first), "{reset}");
        assert_eq!(seqs, [first]);
    }
    // The nodes report the new epoch.
    for node in [&a, &b] {
        let (now, _) = node.position().await;
        assert_ne!(now, epoch);
    }
}

#[actix_web::test]
async fn a_node_started_after_redis_lost_its_data_numbers_nothing_a_client_misses() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let a = redis.node(|_| {}).await;
    let (epoch, start) = a.position().await;
    let mut ws = resumed_u1(&a, &epoch, start).await;
    let mut last = start;
    for _ in 0..50 {
        last = to_u1(&a, "old").await;
    }
    while ws.recv_json().await["seq"].as_u64() < Some(last) {}

    redis.kill();
    redis.restart().await;
    // A node that has seen nothing starts on the empty Redis and publishes
    // at once, perhaps before A is back.
    let c = redis.node(|_| {}).await;
    let mut accepted = Vec::new();
    for _ in 0..3 {
        accepted.push(to_u1(&c, "new").await);
    }
    assert_eq!(ws.close_code_next().await, Some(close_code::MISSED));
    a.wait_for_health("A to subscribe again", |h| h["broker_connected"] == true)
        .await;
    accepted.push(to_u1(&c, "later").await);
    let newest = *accepted.last().expect("accepted");
    let (reset, seqs) = resume_after_loss(&a, &epoch, last, newest).await;
    assert_ne!(reset["epoch"], epoch.as_str(), "{reset}");
    // Every message accepted in the new epoch, once, ascending.
    assert_eq!(seqs, accepted, "{reset}");
}

#[actix_web::test]
async fn without_history_a_resume_that_missed_anything_is_reset_not_resumed() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let a = redis.node(|c| c.history_size = 0).await;
    let (epoch, start) = a.position().await;
    let sent = to_u1(&a, "missed").await;
    let resume = |since: u64| format!("id=u1&since={since}&epoch={epoch}");
    // From before the message: nothing can replay it.
    let mut ws = a.ws(&resume(start)).await;
    assert_eq!(ws.recv_json().await["type"], "registered");
    let reset = ws.recv_json().await;
    assert_eq!(reset["type"], "reset", "{reset}");
    assert_eq!(reset["seq"], sent, "{reset}");
    // From the newest position: nothing was missed.
    let mut ws = a.ws(&resume(sent)).await;
    assert_eq!(ws.recv_json().await["type"], "registered");
    let resumed = ws.recv_json().await;
    assert_eq!(resumed["type"], "resumed", "{resumed}");
}

#[actix_web::test]
async fn a_resume_that_finds_redis_emptied_tells_the_nodes_other_sessions_too() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let a = redis.node(|_| {}).await;
    let (epoch, start) = a.position().await;
    let mut live = resumed_u1(&a, &epoch, start).await;
    let sent = to_u1(&a, "before").await;
    assert_eq!(live.recv_json().await["seq"], sent);

    redis.flush_all().await;
    // Nothing is published: a resume is what finds the loss first.
    let mut back = a.ws(&format!("id=u2&since={sent}&epoch={epoch}")).await;
    assert_eq!(back.recv_json().await["type"], "registered");
    let reset = back.recv_json().await;
    assert_eq!(reset["type"], "reset", "{reset}");
    assert_ne!(reset["epoch"], epoch.as_str(), "{reset}");
    // The session that stayed holds a position of the lost epoch: told too.
    assert_eq!(live.close_code_next().await, Some(close_code::MISSED));
}

#[actix_web::test]
async fn a_subscription_that_goes_silent_is_noticed_and_caught_up() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let proxy = redis.proxy().await;
    let a = redis.node_through(&proxy, |_| {}).await;
    let b = redis.node(|_| {}).await;
    let (epoch, start) = a.position().await;
    let mut ws = resumed_u1(&a, &epoch, start).await;

    // A's subscription carries nothing more, and stays open.
    assert!(proxy.pubsub_seen(), "A's SUBSCRIBE not seen");
    proxy.set_link_delay(Link::PubSub, Delay::both(Duration::from_secs(3600)));
    let mut sent = Vec::new();
    for _ in 0..3 {
        sent.push(to_u1(&b, "while silent").await);
    }
    // A notices without any publish of its own, and comes back once its
    // link to Redis carries data again.
    a.wait_for_health("A to notice", |h| h["broker_connected"] == false)
        .await;
    proxy.set_link_delay(Link::PubSub, Delay::default());
    let mut got = Vec::new();
    while got.len() < sent.len() {
        let frame = ws.recv_json().await;
        assert_eq!(frame["type"], "message", "{frame}");
        got.push(frame["seq"].as_u64().expect("seq"));
    }
    assert_eq!(got, sent);
}

#[actix_web::test]
async fn redis_back_with_older_data_is_a_new_epoch_not_a_silent_skip() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let a = redis.node(|_| {}).await;
    let (epoch, start) = a.position().await;
    let mut ws = resumed_u1(&a, &epoch, start).await;
    let saved = to_u1(&a, "in the snapshot").await;
    redis.save().await;
    let mut newest = saved;
    for _ in 0..2 {
        newest = to_u1(&a, "after the snapshot").await;
    }
    while ws.recv_json().await["seq"].as_u64() < Some(newest) {}

    // Redis comes back with the snapshot: its counter is behind.
    redis.kill();
    redis.restart().await;
    assert_eq!(ws.close_code_next().await, Some(close_code::MISSED));
    a.wait_for_health("A to subscribe again", |h| h["broker_connected"] == true)
        .await;
    // A client that had only the snapshot's message is told, not moved
    // silently past the two Redis forgot.
    let (status, body) = a.poll(&format!("id=u1&since={saved}&epoch={epoch}")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["type"], "reset", "{body}");
    assert_ne!(body["epoch"], epoch.as_str(), "{body}");
    // Numbering goes on above everything given out.
    assert!(to_u1(&a, "later").await > newest);
}

#[actix_web::test]
async fn without_history_a_lost_epoch_resets_once() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let a = redis
        .node(|c| {
            c.history_size = 0;
            c.poll_timeout_secs = 1;
        })
        .await;
    let (epoch, _) = a.position().await;
    let before = to_u1(&a, "before").await;
    redis.flush_all().await;
    to_u1(&a, "after").await;
    let (_, reset) = a.poll(&format!("id=u1&since={before}&epoch={epoch}")).await;
    assert_eq!(reset["type"], "reset", "{reset}");
    // Following it is not reset again.
    let (_, next) = a
        .poll(&format!(
            "id=u1&since={}&epoch={}",
            reset["seq"],
            reset["epoch"].as_str().expect("epoch")
        ))
        .await;
    assert_ne!(next["type"], "reset", "reset twice: {reset} then {next}");
}

#[actix_web::test]
async fn seqs_past_ten_to_the_fourteenth_keep_their_digits() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let mut con = redis.connection().await;
    let _: () = redis::cmd("SET")
        .arg("herald:seq")
        .arg(99_999_999_999_998u64)
        .query_async(&mut con)
        .await
        .expect("SET");
    let a = redis.node(|_| {}).await;
    let (epoch, start) = a.position().await;
    let mut ws = resumed_u1(&a, &epoch, start).await;
    for want in [
        99_999_999_999_999u64,
        100_000_000_000_000,
        100_000_000_000_001,
    ] {
        assert_eq!(to_u1(&a, "big").await, want);
        assert_eq!(ws.recv_json().await["seq"], want);
    }
    let (_, replay) = a.poll(&format!("id=u1&since={start}&epoch={epoch}")).await;
    let seqs: Vec<u64> = replay["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["seq"].as_u64())
        .collect();
    assert_eq!(
        seqs,
        [99_999_999_999_999, 100_000_000_000_000, 100_000_000_000_001]
    );
}
