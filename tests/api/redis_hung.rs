//! A Redis that stops answering (`SIGSTOP` on the test's own
//! `redis-server`: its connections stay open, nothing answers) and one that
//! refuses connections (killed): what a publisher is told is true, and a
//! retry with the same idempotency key never delivers a message twice.
//! - Hung: a publish already sent answers 504 `broker_timeout` with
//!   `"published":"unknown"` within `publish_timeout_ms`; the node's PING
//!   goes unanswered, so `/health` says `broker_connected: false` and
//!   `/ready` 503, and later publishes are refused at once with 503 (not
//!   sent). Once Redis goes on, the message it was sent arrives once, and
//!   its retry with the same key answers `duplicate: true`.
//! - Refused: 503 `broker_unavailable`, and nothing of it is delivered
//!   once Redis is back; the same key then publishes (it was never used).

use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use awc::ws::Frame;
use serde_json::Value;

use crate::helpers::redis::Redis;
use crate::helpers::WsClient;

/// The next frame, which must be a message: `(seq, data)`.
async fn next_message(client: &mut WsClient) -> (u64, Value) {
    let frame = client.recv_json().await;
    assert_eq!(frame["type"], "message", "{frame}");
    (frame["seq"].as_u64().expect("seq"), frame["data"].clone())
}

#[actix_web::test]
async fn a_hung_redis_answers_504_then_the_retry_with_its_key_is_a_duplicate() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let app = redis.node(|c| c.broker.publish_timeout_ms = 500).await;
    let mut client = app.ws_registered("63").await;
    let key = [("Idempotency-Key", "during-hang")];
    let fields = [("message", "during-hang"), ("id", "63")];
    // Redis knows the publish script (a first publish loads it), so the
    // publish below is one command, which Redis runs when it goes on.
    let (status, _) = app
        .publish_form(&[("message", "warm"), ("id", "nobody")])
        .await;
    assert_eq!(status, StatusCode::OK);

    let stopped = redis.stop();
    let started = Instant::now();
    let (status, body) = app.publish_form_with(&key, &fields).await;
    let took = started.elapsed();
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["code"], "broker_timeout", "{body}");
    assert_eq!(body["published"], "unknown", "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("within 500 ms"), "{body}");
    assert!(
        error.contains("retry with the same idempotency key"),
        "{body}"
    );
    assert!(took < Duration::from_secs(2), "answered after {took:?}");

    // The probe's PING goes unanswered: the node says so, and refuses
    // publishes without sending them (known not published).
    let health = app
        .wait_for_health("the unanswered PING", |h| {
            h["broker_connected"] == false
                && h["broker_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("PING"))
        })
        .await;
    assert!(
        health["broker_error"]
            .as_str()
            .is_some_and(|e| e.contains("within 500 ms")),
        "{health}"
    );
    let (status, _, ready) = app.ready().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{ready}");
    assert_eq!(ready["code"], "broker_disconnected", "{ready}");
    let started = Instant::now();
    let refused = [("message", "refused"), ("id", "63")];
    let (status, body) = app
        .publish_form_with(&[("Idempotency-Key", "refused")], &refused)
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "broker_unavailable", "{body}");
    assert!(body.get("published").is_none(), "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("not published")),
        "{body}"
    );
    assert!(
        started.elapsed() < Duration::from_millis(400),
        "not at once"
    );

    // Redis goes on: it runs the publish it was sent, once.
    drop(stopped);
    let (seq, data) = next_message(&mut client).await;
    assert_eq!(data, "during-hang");
    app.wait_for_health("the node to be back", |h| h["broker_connected"] == true)
        .await;
    let (status, body) = app.publish_form_with(&key, &fields).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["duplicate"], true, "{body}");
    assert_eq!(body["seq"], seq, "{body}");
    // The refused one was never sent: its key is unused.
    let (status, body) = app
        .publish_form_with(&[("Idempotency-Key", "refused")], &refused)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["duplicate"], false, "{body}");
    assert_eq!(next_message(&mut client).await.1, "refused");
    app.assert_nothing_before_sentinel(&mut [&mut client]).await;
}

#[actix_web::test]
async fn a_refused_connection_answers_503_and_nothing_is_delivered_after_redis_returns() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let app = redis.node(|c| c.broker.publish_timeout_ms = 500).await;
    let mut client = app.ws_registered("63").await;
    let key = [("Idempotency-Key", "while-gone")];
    let fields = [("message", "while-gone"), ("id", "63")];

    redis.kill();
    // Once the node knows (before, a publish written to the closed
    // connection is an unknown outcome: see `redis_outage.rs`).
    app.wait_for_health("the node to see Redis gone", |h| {
        h["broker_connected"] == false
    })
    .await;
    let (status, body) = app.publish_form_with(&key, &fields).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "broker_unavailable", "{body}");
    assert!(body.get("published").is_none(), "{body}");

    redis.restart().await;
    app.wait_for_health("the node to be back", |h| h["broker_connected"] == true)
        .await;
    // Neither the session from before (which its node may close, to
    // resume across Redis's loss of data) nor a new one gets it.
    let mut fresh = app.ws_registered("63").await;
    let (status, body) = app
        .publish_form(&[("message", "after"), ("id", "63")])
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(next_message(&mut fresh).await.1, "after");
    loop {
        match client.recv().await {
            Some(Frame::Text(bytes)) => {
                let frame: Value = serde_json::from_slice(&bytes).expect("JSON frame");
                assert_ne!(frame["data"], "while-gone", "{frame}");
                if frame["data"] == "after" {
                    break;
                }
            }
            Some(Frame::Close(_)) | None => break,
            Some(_) => {}
        }
    }
    // Its key was never used: the retry publishes.
    let (status, body) = app.publish_form_with(&key, &fields).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["duplicate"], false, "{body}");
}

/// The probe's verdict is logged once each way: one warning while Redis
/// stays hung past several PINGs (each unanswered PING ends with the
/// connection's response timeout, publish_timeout_ms + 1 s, and the next
/// is sent), and one notice once it answers again.
#[actix_web::test]
async fn a_hung_redis_is_logged_once_going_down_and_once_coming_back() {
    use crate::helpers::process::HeraldProcess;
    let Some(redis) = Redis::start().await else {
        return;
    };
    let config = format!(
        "port = 0\n[broker]\nkind = \"redis\"\nurl = \"{}\"\npublish_timeout_ms = 100\n",
        redis.url()
    );
    let mut herald = HeraldProcess::start(&config, &[]).await;
    let app = herald.app();
    app.wait_for_health("the node to join", |h| h["broker_connected"] == true)
        .await;
    let down = "publishes refused, until Redis answers again";
    let up = "Redis answers PINGs again";

    let stopped = redis.stop();
    let mut lines = vec![herald.log_line(down).await];
    app.wait_for_health("the unanswered PING", |h| h["broker_connected"] == false)
        .await;
    // Held past three response timeouts (1.1 s each), so several PINGs go
    // unanswered; the node stays down all along.
    let held = Instant::now();
    while held.elapsed() < Duration::from_millis(3_500) {
        let health = app.health().await;
        assert_eq!(health["broker_connected"], false, "{health}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(stopped);
    app.wait_for_health("the node to be back", |h| h["broker_connected"] == true)
        .await;
    // Everything logged meanwhile, up to the notice.
    let collect = async {
        while let Some(line) = herald.lines.next_line().await.expect("log") {
            let last = line.contains(up);
            lines.push(line);
            if last {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), collect)
        .await
        .expect("the notice that Redis answers again");
    let count = |needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    assert_eq!(count(down), 1, "{lines:#?}");
    assert_eq!(count(up), 1, "{lines:#?}");
}

/// A Redis that answers, but later than `publish_timeout_ms`, keeps the
/// node down: its late PING answers do not make it ready again (each would
/// let through publishes that then time out, 504 with an unknown outcome),
/// so publishes get a clean 503 all along. Once Redis answers in time
/// again, the node is back.
#[actix_web::test]
async fn a_redis_slower_than_the_bound_keeps_the_node_down_without_flapping() {
    use crate::helpers::latency::{Delay, Link};
    let Some(redis) = Redis::start().await else {
        return;
    };
    let proxy = redis.proxy().await;
    let app = redis
        .node_through(&proxy, |c| c.broker.publish_timeout_ms = 200)
        .await;
    app.wait_for_health("the node to join", |h| h["broker_connected"] == true)
        .await;
    // A 300 ms round trip on the command connection, over the 200 ms bound.
    proxy.set_link_delay(Link::Commands, Delay::both(Duration::from_millis(150)));
    app.wait_for_health("the late PING", |h| {
        h["broker_connected"] == false
            && h["broker_error"]
                .as_str()
                .is_some_and(|e| e.contains("PING"))
    })
    .await;
    // Past three probes, each answered late: down all along, and every
    // publish refused unsent.
    let held = Instant::now();
    let mut refused = 0;
    while held.elapsed() < Duration::from_millis(3_500) {
        let health = app.health().await;
        assert_eq!(health["broker_connected"], false, "{health}");
        let key = format!("slow-{refused}");
        let (status, body) = app
            .publish_form_with(&[("Idempotency-Key", &key)], &[("message", "slow")])
            .await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["code"], "broker_unavailable", "{body}");
        refused += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(refused > 0);
    proxy.set_link_delay(Link::Commands, Delay::default());
    app.wait_for_health("the node to be back", |h| h["broker_connected"] == true)
        .await;
    let (status, body) = app.publish_form(&[("message", "in time")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
