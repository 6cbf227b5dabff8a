//! A node too slow to read its subscription: Redis piles up what it
//! announces to it in the subscriber's output buffer and, past
//! `client-output-buffer-limit pubsub`, disconnects it. The node subscribes
//! again and catches up from the node log, so its sessions lose nothing.
//! Node A reaches Redis through a [`LatencyProxy`] that stops reading from
//! Redis on A's pub/sub link (with small socket buffers, so that the
//! kernel does not take it all); node B publishes large messages.

use std::time::Duration;

use actix_web::http::StatusCode;
use awc::ws::Frame;

use crate::helpers::latency::LatencyProxy;
use crate::helpers::redis::{client_ids, clients, Redis};
use crate::helpers::steady::{Accepted, Received, QUERY, TARGETS};
use crate::helpers::{TestApp, WAIT};

/// Redis's hard limit for a subscriber's output buffer, in bytes.
const LIMIT_BYTES: u64 = 256 * 1024;

/// The size of each message's text: large, so that few fill the buffers.
const MESSAGE_BYTES: usize = 32 * 1024;

/// The most messages published before A's subscriber must be gone: the
/// sockets' buffers and the limit, over the size of a message, with room.
const MOST_MESSAGES: usize = 400;

/// Messages each node keeps per stream: more than are published, so that
/// the catch-up finds every frame.
const HISTORY: usize = 1000;

/// Publishes, from `b`, large messages to each of [`TARGETS`] in turn until
/// `gone` says A's subscriber is gone; what was accepted, and the largest
/// output buffer Redis reported for that subscriber meanwhile.
async fn flood_until_cut_off(b: &TestApp, redis: &Redis, subscriber: u64) -> (Accepted, u64) {
    let mut admin = redis.connection().await;
    let filler = "x".repeat(MESSAGE_BYTES);
    let mut accepted = Accepted::default();
    let mut largest_omem = 0;
    for n in 0..MOST_MESSAGES {
        let (field, value, targeted) = TARGETS[n % TARGETS.len()];
        let text = format!("m{n} {filler}");
        let mut form = vec![("message", text.as_str())];
        if !field.is_empty() {
            form.push((field, value));
        }
        let (status, body) = b.publish_form(&form).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        accepted
            .all
            .push((body["seq"].as_u64().expect("seq"), targeted));
        let subscribers = clients(&mut admin, "pubsub").await;
        match subscribers.get(&subscriber) {
            None => return (accepted, largest_omem),
            Some(fields) => {
                let omem = fields.get("omem").and_then(|o| o.parse().ok());
                largest_omem = largest_omem.max(omem.unwrap_or(0));
            }
        }
    }
    panic!(
        "A's subscriber was still there after {MOST_MESSAGES} messages of {MESSAGE_BYTES} \
         bytes; its output buffer reached {largest_omem} bytes"
    );
}

#[actix_web::test]
async fn a_node_cut_off_by_the_pubsub_output_buffer_limit_loses_nothing() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let mut admin = redis.connection().await;
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("client-output-buffer-limit")
        .arg(format!("pubsub {LIMIT_BYTES} 0 0"))
        .query_async(&mut admin)
        .await
        .expect("CONFIG SET");
    let before = client_ids(&mut admin, "pubsub").await;
    let proxy: LatencyProxy = redis.proxy_with_recv_buffer(4096).await;
    let a = redis
        .node_through(&proxy, |c| {
            c.history_size = HISTORY;
            // All that was missed is fanned out at once after the gap.
            c.max_pending_messages = 2 * HISTORY;
        })
        .await;
    let subscriber: Vec<u64> = (&client_ids(&mut admin, "pubsub").await - &before)
        .into_iter()
        .collect();
    let [subscriber] = subscriber[..] else {
        panic!("A's subscriber not found: {subscriber:?}");
    };
    let b = redis.node(|c| c.history_size = HISTORY).await;

    // The client, opened before, from the node's position.
    let (epoch, since) = a.position().await;
    let mut ws = a.ws(&format!("{QUERY}&since={since}&epoch={epoch}")).await;
    let mut got = Received::default();
    while got.position.is_none() {
        got.take(&ws.recv_json().await);
    }

    proxy.hold_pubsub(true);
    let (mut accepted, largest_omem) = tokio::time::timeout(
        Duration::from_secs(30),
        flood_until_cut_off(&b, &redis, subscriber),
    )
    .await
    .expect("A's subscriber cut off within 30 s");
    // Redis's own doing: the buffer had grown (no one else cut it off).
    assert!(largest_omem > 0, "A's output buffer never grew");
    proxy.hold_pubsub(false);

    // One more, which A gets either live or in its catch-up.
    let (status, body) = b.publish_form(&[("message", "last")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let last = body["seq"].as_u64().expect("seq");
    accepted.all.push((last, true));
    // A subscribed again (a new subscriber).
    a.wait_for_health("A to subscribe again", |h| h["broker_connected"] == true)
        .await;
    // Until the last arrives or nothing more comes: the tally says what
    // is missing. A close frame (or anything but text) fails here.
    while got.max() < last {
        match tokio::time::timeout(WAIT / 2, ws.recv()).await {
            Ok(Some(Frame::Text(text))) => {
                got.take(&serde_json::from_slice(&text).expect("frame is JSON"))
            }
            Ok(other) => panic!("expected a text frame, got {other:?}"),
            Err(_) => break,
        }
    }
    let tally = got.tally(&accepted);
    eprintln!(
        "{} published (largest output buffer {largest_omem} bytes), {} for the client, \
         {} received: {tally}",
        accepted.all.len(),
        accepted.for_client().len(),
        got.seqs.len()
    );
    assert!(got.resets.is_empty(), "{:?}", got.resets);
    assert!(tally.is_clean(), "{tally}: {:?}", got.seqs);
    let now = client_ids(&mut admin, "pubsub").await;
    assert!(
        !now.contains(&subscriber) && now.len() == before.len() + 2,
        "A's subscriber was not replaced: {now:?}"
    );
}
