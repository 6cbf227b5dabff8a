//! The Redis broker while Redis is unavailable: a publish answers 503
//! `broker_unavailable` when it was not sent, 504 `broker_timeout` with
//! `"published":"unknown"` when it was and no answer came, within
//! `publish_timeout_ms`; `/health` and `/ready` say the node cannot
//! publish whenever that is so (subscription down, a write Redis refused)
//! and why, and recover on the next successful write; a resume that cannot
//! read the history is asked to come back later (WebSocket close 1013,
//! HTTP 503 with `Retry-After`) rather than reset, and replays what was
//! missed once Redis is back.

use std::time::{Duration, Instant};

use actix_web::http::{Method, StatusCode};
use awc::ws::Frame;
use serde_json::{json, Value};

use crate::helpers::latency::{Delay, Link};
use crate::helpers::redis::Redis;
use crate::helpers::{message_seqs, read_replay, within, TestApp, WsClient};

/// `POST /` with `message`, timed.
async fn timed_publish(app: &TestApp, message: &str) -> (StatusCode, Value, Duration) {
    let started = Instant::now();
    let (status, body) = app.publish_form(&[("message", message)]).await;
    (status, body, started.elapsed())
}

#[actix_web::test]
async fn a_publish_while_redis_is_gone_answers_503_within_publish_timeout_ms() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let app = redis.node(|c| c.broker.publish_timeout_ms = 200).await;
    redis.kill();
    // At once, whether or not the node has noticed yet. Until it has, the
    // publish may be written to the connection Redis's end closed, and a
    // broken connection cannot tell whether Redis ran it: 504, unknown.
    let (status, body, took) = timed_publish(&app, "lost?").await;
    match status {
        StatusCode::SERVICE_UNAVAILABLE => assert_eq!(body["code"], "broker_unavailable"),
        StatusCode::GATEWAY_TIMEOUT => assert_eq!(body["published"], "unknown", "{body}"),
        _ => panic!("{status}: {body}"),
    }
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    // Once it has, nothing is sent: known not published.
    app.wait_for_health("the node to see Redis gone", |h| {
        h["broker_connected"] == false
    })
    .await;
    let (status, body, took) = timed_publish(&app, "lost").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "broker_unavailable", "{body}");
    assert!(body.get("published").is_none(), "{body}");
    assert!(took < Duration::from_secs(1), "answered after {took:?}");
}

#[actix_web::test]
async fn a_publish_redis_does_not_answer_ends_at_the_configured_bound() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    // Redis stops answering without the node noticing: the connections
    // stay open, so the subscription stays up and the publish is sent.
    let (short, long) = (redis.proxy().await, redis.proxy().await);
    let quick = redis
        .node_through(&short, |c| c.broker.publish_timeout_ms = 200)
        .await;
    let patient = redis
        .node_through(&long, |c| c.broker.publish_timeout_ms = 3000)
        .await;
    short.stall(true);
    long.stall(true);

    let (status, body, took) = timed_publish(&quick, "stalled").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["code"], "broker_timeout", "{body}");
    assert_eq!(body["published"], "unknown", "{body}");
    let error = body["error"].as_str().expect("error");
    assert!(error.contains("within 200 ms"), "{body}");
    assert!(
        error.contains("may or may not"),
        "the outcome is unknown: {body}"
    );
    assert!(took < Duration::from_secs(2), "answered after {took:?}");
    // A publish that timed out counts against the node's health (as would
    // a presence report timing out meanwhile).
    let health = quick.health().await;
    assert_eq!(health["broker_connected"], false, "{health}");
    assert!(health["broker_error"].is_string(), "{health}");

    let (status, body, took) = timed_publish(&patient, "stalled").await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("within 3000 ms"),
        "{body}"
    );
    assert!(
        took >= Duration::from_millis(2900),
        "the longer bound was not waited for: {took:?}"
    );
}

#[actix_web::test]
async fn a_redis_refusing_writes_makes_health_say_so_until_a_write_succeeds() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let app = redis.node(|_| {}).await;
    let _client = app.ws_registered("63").await;
    let health = app
        .wait_for_health("this node in the cluster view", |h| {
            h["cluster"]["nodes"] == 1
        })
        .await;
    assert_eq!(health["broker_connected"], true);
    assert!(health.get("broker_error").is_none(), "{health}");

    let used = [("Idempotency-Key", "before-oom")];
    let (status, body) = app.publish_form_with(&used, &[("message", "kept")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // With the default noeviction policy, Redis refuses every write.
    let mut con = redis.connection().await;
    let config_set = |value: &'static str| {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory")
            .arg(value)
            .to_owned()
    };
    let _: () = config_set("1").query_async(&mut con).await.expect("CONFIG");
    let (status, body) = app.publish_form(&[("message", "refused")]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "broker_unavailable", "{body}");
    let mentions_memory = |text: &Value| {
        let text = text.as_str().unwrap_or_default().to_lowercase();
        text.contains("oom") || text.contains("memory")
    };
    assert!(mentions_memory(&body["error"]), "{body}");

    // The next presence report fails too: the cluster is then unknown,
    // never a cluster of no nodes.
    let health = app
        .wait_for_health("the failed presence report", |h| {
            h.get("cluster") == Some(&Value::Null)
        })
        .await;
    assert_eq!(health["broker_connected"], false, "{health}");
    assert!(mentions_memory(&health["broker_error"]), "{health}");
    let (status, retry, body) = app.ready().await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "broker_disconnected", "{body}");
    assert!(mentions_memory(&body["error"]), "{body}");
    assert!(retry.is_some_and(|s| s > 0), "Retry-After: {retry:?}");
    // Publishing is refused all along.
    let (status, _) = app.publish_form(&[("message", "refused")]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    // A retry of a publish Redis already has is answered (it writes
    // nothing), but says nothing of writes: the node stays down.
    let (status, body) = app.publish_form_with(&used, &[("message", "kept")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["duplicate"], true, "{body}");
    let health = app.health().await;
    assert_eq!(health["broker_connected"], false, "{health}");
    assert_eq!(app.ready().await.0, StatusCode::SERVICE_UNAVAILABLE);

    let _: () = config_set("0").query_async(&mut con).await.expect("CONFIG");
    within("a publish to succeed again", async {
        while app.publish_form(&[("message", "back")]).await.0 != StatusCode::OK {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let health = app
        .wait_for_health("health to recover", |h| {
            h["broker_connected"] == true && h["cluster"]["nodes"] == 1
        })
        .await;
    assert!(health.get("broker_error").is_none(), "{health}");
    assert_eq!(app.ready().await.0, StatusCode::OK);
}

/// The frames a WebSocket gets until it is closed, and the close code.
async fn frames_until_close(client: &mut WsClient) -> (Vec<Value>, Option<u16>) {
    let mut frames = Vec::new();
    loop {
        match client.recv().await {
            Some(Frame::Text(bytes)) => {
                frames.push(serde_json::from_slice(&bytes).expect("JSON frame"))
            }
            Some(Frame::Close(reason)) => return (frames, reason.map(|r| u16::from(r.code))),
            None => return (frames, None),
            Some(_) => {}
        }
    }
}

/// `GET path`: status, `Retry-After`, JSON body.
async fn get_json(
    app: &TestApp,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Option<u64>, Value) {
    let mut resp = app.request(Method::GET, path, headers).await;
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = resp.json::<Value>().await.unwrap_or(Value::Null);
    (resp.status(), retry, body)
}

#[actix_web::test]
async fn a_resume_while_redis_is_gone_is_asked_to_retry_then_replays_what_was_missed() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let app = redis.node(|_| {}).await;
    let join = "id=63&channel=news";
    let mut client = app.ws(join).await;
    assert_eq!(client.recv_json().await["type"], "registered");
    let subscribed = client.recv_json().await;
    assert_eq!(subscribed["type"], "subscribed", "{subscribed}");
    let epoch = subscribed["epoch"].as_str().expect("epoch").to_owned();
    let seen = app.publish_seq(&[("message", "seen"), ("id", "63")]).await;
    assert_eq!(client.recv_json().await["seq"], seen);
    client.close().await;
    let missed = [
        app.publish_seq(&[("message", "missed 1"), ("id", "63")])
            .await,
        app.publish_seq(&[("message", "missed 2"), ("channel", "news")])
            .await,
    ];
    app.wait_for_counts(0, 0).await;

    // Redis goes away with its data on disk.
    redis.save().await;
    redis.kill();
    app.wait_for_health("the node to see Redis gone", |h| {
        h["broker_connected"] == false
    })
    .await;
    let resume = format!("{join}&since={seen}&epoch={epoch}");

    let mut ws = app.ws(&resume).await;
    let (frames, code) = frames_until_close(&mut ws).await;
    assert_eq!(code, Some(1013), "try again later: {frames:?}");
    assert!(
        frames.iter().all(|f| f["type"] == "error"),
        "no reset, nothing joined: {frames:?}"
    );
    let event_id = format!("{epoch}:{seen}");
    for (path, headers) in [
        (format!("/events?{resume}"), vec![]),
        (
            format!("/events?{join}"),
            vec![("Last-Event-ID", event_id.as_str())],
        ),
        (format!("/poll?{resume}"), vec![]),
    ] {
        let (status, retry, body) = get_json(&app, &path, &headers).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {body}");
        assert_eq!(body["code"], "broker_unavailable", "{path}: {body}");
        assert!(
            retry.is_some_and(|s| s > 0),
            "{path}: Retry-After {retry:?}"
        );
    }
    // None of them stayed.
    app.wait_for_counts(0, 0).await;

    redis.restart().await;
    app.wait_for_health("the node to be back", |h| h["broker_connected"] == true)
        .await;
    let mut ws = app.ws(&resume).await;
    assert_eq!(ws.recv_json().await["type"], "registered");
    assert_eq!(ws.recv_json().await["type"], "subscribed");
    let (messages, end) = read_replay(&mut ws).await;
    let seqs: Vec<&Value> = messages.iter().map(|m| &m["seq"]).collect();
    assert_eq!(seqs, [&json!(missed[0]), &json!(missed[1])], "{messages:?}");
    assert_eq!(end["type"], "resumed", "{end}");
    assert_eq!(end["epoch"], epoch.as_str(), "the history survived: {end}");

    let (status, _, answer) = get_json(&app, &format!("/poll?{resume}"), &[]).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(message_seqs(&answer), missed, "{answer}");
    let mut sse = app.sse(join, &[("Last-Event-ID", event_id.as_str())]).await;
    let mut replayed = Vec::new();
    while replayed.len() < 2 {
        let event = sse.next_event().await;
        if event.data.is_some() && event.json()["type"] == "message" {
            replayed.push(event.json()["seq"].as_u64().expect("seq"));
        }
    }
    assert_eq!(replayed, missed);
}

#[actix_web::test]
async fn a_publish_whose_connection_breaks_before_the_answer_is_not_said_unpublished() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let proxy = redis.proxy().await;
    let a = redis
        .node_through(&proxy, |c| c.broker.publish_timeout_ms = 10_000)
        .await;
    let b = redis.node(|_| {}).await;
    let mut on_b = b.ws_registered("1").await;
    // Redis knows the script (a first publish loads it).
    let (status, _) = a
        .publish_form(&[("message", "warm"), ("id", "nobody")])
        .await;
    assert_eq!(status, StatusCode::OK);
    // A's commands reach Redis; their answers do not come back.
    proxy.set_link_delay(
        Link::Commands,
        Delay {
            to_redis: Duration::ZERO,
            from_redis: Duration::from_secs(3600),
        },
    );
    let port = a.port;
    let publishing = actix_web::rt::spawn(async move {
        TestApp::at(port)
            .publish_form(&[("message", "ran"), ("id", "1")])
            .await
    });
    // The script ran: B's client has the message.
    assert_eq!(on_b.recv_json().await["data"], "ran");
    // Then A's connection to Redis breaks.
    proxy.cut();
    let (status, body) = within("A's answer", publishing).await.expect("publisher");
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["code"], "broker_timeout", "{body}");
    assert_eq!(body["published"], "unknown", "{body}");
    let error = body["error"].as_str().unwrap_or_default();
    assert!(error.contains("may or may not"), "{body}");
    assert!(!error.contains("not published"), "{body}");
}
