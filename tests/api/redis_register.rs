//! A `register` sent in the middle of a WebSocket session that resumed on
//! a node whose pub/sub connection lags: the `registered` answer's
//! position is never below what the session was already given (the
//! resume's snapshot and every message since), and what follows is still
//! each message once, in seq order. Node A reaches Redis through a
//! [`crate::helpers::latency::LatencyProxy`] with only its pub/sub
//! connection 50 ms behind; node B publishes at a steady rate.

use std::time::Duration;

use actix_web::http::StatusCode;
use serde_json::{json, Value};

use crate::helpers::latency::{Delay, Link};
use crate::helpers::redis::Redis;
use crate::helpers::steady::{Publisher, Received, QUERY};
use crate::helpers::within;

/// Resumes `u1` on the lagging node, registers again as `id` at once, and
/// checks the answer and everything after it. With `id` other than `u1`
/// the messages for `u1` may stop at the switch, so losses are not
/// counted then.
async fn register_after_resume(id: &str) {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let proxy = redis.proxy().await;
    let a = redis.node_through(&proxy, |_| {}).await;
    let b = redis.node(|_| {}).await;
    assert!(proxy.pubsub_seen(), "node A's SUBSCRIBE not seen");
    proxy.set_link_delay(Link::PubSub, Delay::both(Duration::from_millis(50)));

    let (epoch, since) = a.position().await;
    let publisher = Publisher::start(&b);
    // Something to replay, and messages in flight on A's pub/sub link.
    publisher.wait_for(10).await;
    let mut ws = a.ws(&format!("{QUERY}&since={since}&epoch={epoch}")).await;
    let mut got = Received::default();
    let mut frames: Vec<Value> = Vec::new();
    // The session's high-water mark: what it has been given so far.
    let mut given = since;
    loop {
        let frame = ws.recv_json().await;
        frames.push(frame.clone());
        got.take(&frame);
        match frame["type"].as_str() {
            Some("message") | Some("resumed") => {
                given = given.max(frame["seq"].as_u64().expect("seq"));
            }
            Some("registered") | Some("subscribed") => {}
            _ => panic!(
                "unexpected frame {frame}; frames so far:\n{}",
                lines(&frames)
            ),
        }
        if frame["type"] == "resumed" {
            break;
        }
    }
    let resumed = given;

    ws.send_json(&json!({"type": "register", "id": id})).await;
    let before_registered = loop {
        let frame = ws.recv_json().await;
        frames.push(frame.clone());
        match frame["type"].as_str() {
            Some("message") => {
                got.take(&frame);
                given = given.max(frame["seq"].as_u64().expect("seq"));
            }
            Some("registered") => break frame,
            _ => panic!(
                "unexpected frame {frame}; frames so far:\n{}",
                lines(&frames)
            ),
        }
    };
    assert_eq!(before_registered["id"], id, "{before_registered}");
    let registered = before_registered["seq"].as_u64().expect("seq");
    assert!(
        registered >= given,
        "`registered` at {registered} after the session was given {given} \
         (resumed at {resumed}); frames:\n{}",
        lines(&frames)
    );

    publisher.wait_for(20).await;
    let mut accepted = publisher.stop().await;
    // A last broadcast, which reaches the session whatever its id.
    let (status, body) = b.publish_form(&[("message", "last")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let last = body["seq"].as_u64().expect("seq");
    accepted.all.push((last, true));
    within("the last message", async {
        while got.max() < last {
            let frame = ws.recv_json().await;
            frames.push(frame.clone());
            assert_eq!(frame["type"], "message", "frames:\n{}", lines(&frames));
            got.take(&frame);
        }
    })
    .await;
    let tally = got.tally(&accepted);
    eprintln!(
        "register as {id}: resumed at {resumed}, given {given}, registered at {registered}; \
         {} received, {tally}",
        got.seqs.len()
    );
    if id == "u1" {
        assert!(tally.is_clean(), "{tally}; frames:\n{}", lines(&frames));
    } else {
        // Messages for `u1` may stop at the switch; nothing else may.
        assert_eq!(
            (tally.doubled, tally.disordered, tally.stray),
            (0, 0, 0),
            "{tally}; frames:\n{}",
            lines(&frames)
        );
    }
}

/// The frames, one a line.
fn lines(frames: &[Value]) -> String {
    let lines: Vec<String> = frames.iter().map(Value::to_string).collect();
    lines.join("\n")
}

#[actix_web::test]
async fn registering_the_same_id_after_a_lagging_resume_goes_back_on_nothing() {
    register_after_resume("u1").await;
}

#[actix_web::test]
async fn registering_a_new_id_after_a_lagging_resume_goes_back_on_nothing() {
    register_after_resume("u9").await;
}
