//! Several herald nodes on one Redis (`[broker] kind = "redis"`): messages
//! published on any node reach sessions on every node exactly once; Redis
//! going away answers 503 without closing sessions, and delivery comes back
//! with it.
//!
//! Each test starts its own `redis-server` on a free port (see
//! `helpers/redis.rs`).

use std::time::Duration;

use actix_web::http::StatusCode;
use herald::protocol::close_code;
use serde_json::json;

use crate::helpers::redis::Redis;
use crate::helpers::{within, TestApp};

#[actix_web::test]
async fn a_message_published_on_one_node_reaches_every_node_exactly_once() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let a = redis.node(|_| {}).await;
    let b = redis.node(|_| {}).await;
    let mut on_a = a.ws("id=63&channel=news").await;
    on_a.recv_json().await; // registered
    on_a.recv_json().await; // subscribed
    let mut tab_on_b = b.ws_registered("63").await;
    let mut other_on_b = b.ws_registered("64").await;
    assert_eq!(
        a.health().await["epoch"],
        b.health().await["epoch"],
        "one cluster epoch"
    );
    // Each node sees the cluster: both nodes, all three sessions, and two
    // distinct ids (63 has a tab on each node and counts once).
    a.wait_for_health("the cluster view", |h| {
        h["cluster"] == json!({"nodes": 2, "sessions": 3, "ids": 2})
    })
    .await;

    let (status, body) = a.publish_form(&[("message", "all")]).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // The count is per node and not known cluster-wide: null, with the
    // number of nodes it was announced to.
    assert_eq!(
        (&body["delivered"], &body["nodes"]),
        (&json!(null), &json!(2))
    );
    let seq = body["seq"].clone();
    for client in [&mut on_a, &mut tab_on_b, &mut other_on_b] {
        let frame = client.recv_json().await;
        assert_eq!((&frame["data"], &frame["seq"]), (&json!("all"), &seq));
    }

    let (_, body) = b.publish_form(&[("message", "to 63"), ("id", "63")]).await;
    for client in [&mut on_a, &mut tab_on_b] {
        let frame = client.recv_json().await;
        assert_eq!(
            (&frame["data"], &frame["id"]),
            (&json!("to 63"), &json!("63"))
        );
        assert_eq!(frame["seq"], body["seq"]);
    }
    let (_, body) = b
        .publish_form(&[("message", "headline"), ("channel", "news")])
        .await;
    let frame = on_a.recv_json().await;
    assert_eq!(
        (&frame["data"], &frame["seq"]),
        (&json!("headline"), &body["seq"])
    );

    // Nothing else arrived anywhere: the next frame each sees is this one.
    let (_, body) = a.publish_form(&[("message", "sentinel")]).await;
    for client in [&mut on_a, &mut tab_on_b, &mut other_on_b] {
        let frame = client.recv_json().await;
        assert_eq!(
            (&frame["data"], &frame["seq"]),
            (&json!("sentinel"), &body["seq"])
        );
    }
    // An id that leaves its last node leaves the cluster's count.
    other_on_b.close().await;
    a.wait_for_health("64 to leave the cluster view", |h| {
        h["cluster"] == json!({"nodes": 2, "sessions": 2, "ids": 1})
    })
    .await;
    // Redis loses the presence keys while it stays up: the nodes write
    // them again, ids included, though none of their ids changed.
    redis.flush_all().await;
    a.wait_for_health("the cluster view after Redis lost it", |h| {
        h["cluster"] == json!({"nodes": 2, "sessions": 2, "ids": 1})
    })
    .await;
}

#[actix_web::test]
async fn without_redis_publishing_answers_503_sessions_resume_and_delivery_comes_back() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let a = redis.node(|_| {}).await;
    let b = redis.node(|_| {}).await;
    let mut on_a = a.ws_registered("1").await;
    let mut on_b = b.ws_registered("2").await;
    // Numbers well past what a few probes after the restart could reach.
    for _ in 0..100 {
        a.publish_form(&[("message", "x"), ("id", "nobody")]).await;
    }
    let (_, first) = a.publish_form(&[("message", "first")]).await;
    for client in [&mut on_a, &mut on_b] {
        assert_eq!(client.recv_json().await["data"], "first");
    }

    redis.kill();
    // Once the node knows: before, a publish written to the broken
    // connection has an unknown outcome (504, see `redis_outage.rs`).
    a.wait_for_health("node A to see Redis gone", |h| {
        h["broker_connected"] == false
    })
    .await;
    let (status, body) = a.publish_form(&[("message", "lost?")]).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "broker_unavailable");
    assert!(
        body["error"].as_str().unwrap().contains("not published"),
        "{body}"
    );
    // The WebSocket sessions are untouched.
    assert_eq!(a.health().await["sessions"], 1);
    assert_eq!(b.health().await["sessions"], 1);

    redis.restart().await;
    // Redis came back empty: the nodes cannot tell what their sessions
    // missed, and tell each to resume, once.
    for client in [&mut on_a, &mut on_b] {
        assert_eq!(client.close_code_next().await, Some(close_code::MISSED));
    }
    let mut on_a = a.ws_registered("1").await;
    let mut on_b = b.ws_registered("2").await;
    // Both nodes subscribe again and the command connection comes back on
    // its own: probe (to an id nobody holds) until a publish is announced
    // to both nodes.
    within("both nodes to be back", async {
        loop {
            let (status, body) = b
                .publish_form(&[("message", "probe"), ("id", "nobody")])
                .await;
            if status == StatusCode::OK && body["nodes"] == 2 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    let (status, body) = b.publish_form(&[("message", "back")]).await;
    assert_eq!(status, StatusCode::OK);
    // Redis lost its counter with its data; numbering continues after what
    // the nodes had seen instead of starting again at 1.
    assert!(
        body["seq"].as_u64() > first["seq"].as_u64(),
        "{body} after {first}"
    );
    assert_eq!(body["nodes"], 2);
    for client in [&mut on_a, &mut on_b] {
        let frame = client.recv_json().await;
        assert_eq!(
            (&frame["data"], &frame["seq"]),
            (&json!("back"), &body["seq"])
        );
    }
    let (_, body) = a.publish_form(&[("message", "once")]).await;
    for client in [&mut on_a, &mut on_b] {
        let frame = client.recv_json().await;
        assert_eq!(frame["data"], "once", "nothing delivered twice: {frame}");
        assert_eq!(frame["seq"], body["seq"]);
    }
}

#[actix_web::test]
async fn a_publish_refused_while_redis_is_down_is_not_published_when_it_returns() {
    let Some(mut redis) = Redis::start().await else {
        return;
    };
    let a = redis.node(|_| {}).await;
    let mut client = a.ws_registered("1").await;
    redis.kill();
    a.wait_for_health("the node to see Redis gone", |h| {
        h["broker_connected"] == false
    })
    .await;

    // A publish while the node knows Redis is down. Should it still be
    // waiting a second later, Redis comes back meanwhile: a publish that
    // waited for it would then go out, after its publisher was told 503 or
    // gave up.
    let port = a.port;
    let mut publishing = actix_web::rt::spawn(async move {
        let a = TestApp {
            port,
            http: awc::Client::builder()
                .timeout(Duration::from_secs(30))
                .finish(),
        };
        a.publish_form(&[("message", "refused"), ("id", "1")]).await
    });
    let (answer, restarted) = tokio::select! {
        answer = &mut publishing => (answer, false),
        () = tokio::time::sleep(Duration::from_secs(1)) => {
            redis.restart().await;
            (publishing.await, true)
        }
    };
    let (status, body) = answer.expect("the publisher");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "broker_unavailable");
    assert!(
        body["error"].as_str().unwrap().contains("not published"),
        "{body}"
    );

    // Redis back (if it is not yet) and the node with it: the refused
    // message reaches no client and is in no stream.
    if !restarted {
        redis.restart().await;
    }
    within("the node to be back", async {
        loop {
            let (status, _) = a.publish_form(&[("message", "after"), ("id", "1")]).await;
            if status == StatusCode::OK {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    // Redis came back empty: the session was told to resume.
    assert_eq!(client.close_code_next().await, Some(close_code::MISSED));
    let mut client = a.ws_registered("1").await;
    let (status, _) = a.publish_form(&[("message", "after"), ("id", "1")]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(client.recv_json().await["data"], "after");
    let mut con = redis.connection().await;
    let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
        .arg("herald:stream:i:1")
        .arg("-")
        .arg("+")
        .query_async(&mut con)
        .await
        .expect("XRANGE");
    assert!(
        entries
            .iter()
            .all(|(_, fields)| fields.iter().all(|(_, frame)| !frame.contains("refused"))),
        "{entries:?}"
    );
}

#[actix_web::test]
async fn a_client_resumes_on_another_node_with_its_position() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let a = redis.node(|_| {}).await;
    let b = redis.node(|_| {}).await;
    let mut before = a.ws("id=63&channel=news").await;
    let registered = before.recv_json().await;
    let epoch = registered["epoch"].as_str().unwrap().to_owned();
    let since = registered["seq"].as_u64().unwrap();
    before.close().await;
    a.wait_for_counts(0, 0).await;

    let mut missed = Vec::new();
    for fields in [
        &[("message", "all")][..],
        &[("message", "to 63"), ("id", "63")],
        &[("message", "elsewhere"), ("id", "64")],
        &[("message", "news"), ("channel", "news")],
        &[("message", "other channel"), ("channel", "sport")],
    ] {
        let (status, body) = b.publish_form(fields).await;
        assert_eq!(status, StatusCode::OK);
        if !matches!(fields.last(), Some((_, "64")) | Some((_, "sport"))) {
            missed.push(body["seq"].as_u64().unwrap());
        }
    }

    // Back on the other node, with its position: the missed ones, in
    // order, then `resumed`, then live messages.
    let mut back = b
        .ws(&format!("id=63&channel=news&since={since}&epoch={epoch}"))
        .await;
    assert_eq!(back.recv_json().await["type"], "registered");
    assert_eq!(back.recv_json().await["type"], "subscribed");
    let mut replayed = Vec::new();
    let resumed = loop {
        let frame = back.recv_json().await;
        if frame["type"] != "message" {
            break frame;
        }
        replayed.push(frame["seq"].as_u64().unwrap());
    };
    assert_eq!(replayed, missed);
    assert_eq!(
        (&resumed["type"], &resumed["count"]),
        (&json!("resumed"), &json!(3))
    );
    let (_, body) = a.publish_form(&[("message", "live"), ("id", "63")]).await;
    let frame = back.recv_json().await;
    assert_eq!(
        (&frame["data"], &frame["seq"]),
        (&json!("live"), &body["seq"])
    );

    // A position from another lifetime is reset, with nothing replayed.
    let mut stale = b.ws("id=9&since=1&epoch=0000").await;
    stale.recv_json().await;
    assert_eq!(stale.recv_json().await["type"], "reset");
}

#[actix_web::test]
async fn publishes_racing_a_resume_across_nodes_arrive_once_in_order() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let a = redis.node(|_| {}).await;
    let b = redis.node(|_| {}).await;
    let (epoch, since) = b.position().await;
    for i in 0..20 {
        a.publish_form(&[("message", &format!("before{i}"))]).await;
    }
    let port = a.port;
    let publisher = actix_web::rt::spawn(async move {
        let a = TestApp {
            port,
            http: awc::Client::default(),
        };
        let mut seqs = Vec::new();
        for i in 0..100 {
            let (_, body) = a.publish_form(&[("message", &format!("during{i}"))]).await;
            seqs.push(body["seq"].as_u64().unwrap());
        }
        seqs
    });
    let mut client = b.ws(&format!("since={since}&epoch={epoch}")).await;
    let last = *publisher.await.unwrap().last().unwrap();
    let mut seen = Vec::new();
    while seen.last().is_none_or(|&s| s < last) {
        let frame = client.recv_json().await;
        if frame["type"] == "message" {
            seen.push(frame["seq"].as_u64().unwrap());
        }
    }
    assert_eq!(
        seen,
        ((since + 1)..=last).collect::<Vec<_>>(),
        "once each, in order"
    );
}

#[actix_web::test]
async fn a_publish_redis_took_but_never_answered_is_not_called_unpublished() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let a = redis.node(|_| {}).await;
    // A hung Redis: the connection stays open, nothing answers.
    let stopped = redis.stop();
    let patient = TestApp {
        port: a.port,
        http: awc::Client::builder()
            .timeout(Duration::from_secs(30))
            .finish(),
    };
    let (status, body) = patient
        .publish_form(&[("message", "during-hang"), ("id", "1")])
        .await;
    drop(stopped);
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(body["code"], "broker_timeout", "{body}");
    assert_eq!(body["published"], "unknown", "{body}");
    let error = body["error"].as_str().unwrap();
    assert!(
        error.contains("may or may not") && !error.contains("was not published"),
        "the command may have run once Redis wakes: {body}"
    );
}
