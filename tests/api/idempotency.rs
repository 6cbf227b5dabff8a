//! Idempotency keys, the same on both brokers (the contract suite's
//! `memory::` and `redis::` runs): a publish with a key already used within
//! `idempotency_window_secs` by the same publisher answers the first seq
//! with `"duplicate":true` and delivers nothing; after the window it is a
//! new publish; at most `idempotency_max_keys` are remembered, the oldest
//! forgotten first, and `/metrics` counts them; keys of different
//! publishers never collide; a bad key is refused with 400 and nothing is
//! published. And on Redis, a key used on one node is a duplicate on every
//! other.

use std::time::Duration;

use actix_web::http::StatusCode;
use herald::config::Secret;
use serde_json::{json, Value};

use crate::contract::{contract, Backend};
use crate::helpers::redis::Redis;
use crate::helpers::{within, TestApp, WsClient};

contract!(
    a_retry_with_the_same_key_is_a_duplicate_and_delivered_once,
    after_the_window_the_same_key_publishes_again,
    past_the_bound_the_oldest_keys_are_forgotten_and_counted,
    keys_of_different_publishers_never_collide,
    a_bad_key_is_refused_and_nothing_is_published,
    a_zero_window_remembers_no_key,
);

/// `POST /` (form) with `key` as its `Idempotency-Key` header.
async fn publish_keyed(app: &TestApp, key: &str, fields: &[(&str, &str)]) -> (StatusCode, Value) {
    app.publish_form_with(&[("Idempotency-Key", key)], fields)
        .await
}

/// The seq of an answer that must be 200 with `"duplicate"` as given.
fn seq_of(answer: &(StatusCode, Value), duplicate: bool) -> u64 {
    let (status, body) = answer;
    assert_eq!(*status, StatusCode::OK, "{body}");
    assert_eq!(body["duplicate"], duplicate, "{body}");
    if duplicate {
        assert_eq!(body["delivered"], 0, "a duplicate delivers nothing: {body}");
        assert!(body.get("nodes").is_none(), "{body}");
    }
    body["seq"].as_u64().expect("seq")
}

/// The next frame, which must be a message: `(seq, data)`.
async fn next_message(client: &mut WsClient) -> (u64, Value) {
    let frame = client.recv_json().await;
    assert_eq!(frame["type"], "message", "{frame}");
    (frame["seq"].as_u64().expect("seq"), frame["data"].clone())
}

/// The value of one sample line of `/metrics`.
async fn metric(app: &TestApp, name: &str) -> f64 {
    let (status, text) = app.get_text("/metrics", &[]).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{name} in\n{text}"))
}

async fn a_retry_with_the_same_key_is_a_duplicate_and_delivered_once(backend: Backend) {
    let app = backend.node(|_| {}).await;
    let mut client = app.ws_registered("63").await;

    let first = publish_keyed(&app, "order-17", &[("message", "paid"), ("id", "63")]).await;
    let seq = seq_of(&first, false);
    // The same key as a field, then in a JSON body: the same publish.
    let again = app
        .publish_form(&[
            ("message", "paid"),
            ("id", "63"),
            ("idempotency_key", "order-17"),
        ])
        .await;
    assert_eq!(seq_of(&again, true), seq);
    let both = app
        .publish_form_with(
            &[("Idempotency-Key", "order-17")],
            &[("message", "paid"), ("idempotency_key", "order-17")],
        )
        .await;
    assert_eq!(seq_of(&both, true), seq);
    let json = app
        .publish_json(&json!({"message": "paid", "id": "63", "idempotency_key": "order-17"}))
        .await;
    assert_eq!(seq_of(&json, true), seq);
    // Another key is another publish; no key, no `duplicate` in the answer.
    let other = publish_keyed(&app, "order-18", &[("message", "shipped"), ("id", "63")]).await;
    let other_seq = seq_of(&other, false);
    let (status, plain) = app
        .publish_form(&[("message", "plain"), ("id", "63")])
        .await;
    assert_eq!(status, StatusCode::OK, "{plain}");
    assert!(plain.get("duplicate").is_none(), "{plain}");

    assert_eq!(next_message(&mut client).await, (seq, json!("paid")));
    assert_eq!(
        next_message(&mut client).await,
        (other_seq, json!("shipped"))
    );
    assert_eq!(next_message(&mut client).await.1, "plain");
    app.assert_nothing_before_sentinel(&mut [&mut client]).await;
    assert_eq!(
        metric(&app, "herald_idempotent_duplicates_total").await,
        3.0
    );
    assert_eq!(
        metric(&app, "herald_published_total{target=\"direct\"}").await,
        3.0,
        "duplicates are not counted as published"
    );
}

async fn after_the_window_the_same_key_publishes_again(backend: Backend) {
    let app = backend.node(|c| c.idempotency_window_secs = 2).await;
    let mut client = app.ws_registered("63").await;
    let fields = [("message", "tick"), ("id", "63")];
    let first = seq_of(&publish_keyed(&app, "tick-1", &fields).await, false);
    assert_eq!(
        seq_of(&publish_keyed(&app, "tick-1", &fields).await, true),
        first
    );
    // Once the window has passed, the key is new again.
    let second = within("the window to end", async {
        loop {
            let answer = publish_keyed(&app, "tick-1", &fields).await;
            if answer.1["duplicate"] == false {
                return seq_of(&answer, false);
            }
            assert_eq!(seq_of(&answer, true), first);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(second > first);
    assert_eq!(next_message(&mut client).await.0, first);
    assert_eq!(next_message(&mut client).await.0, second);
    app.assert_nothing_before_sentinel(&mut [&mut client]).await;
}

async fn past_the_bound_the_oldest_keys_are_forgotten_and_counted(backend: Backend) {
    let app = backend.node(|c| c.idempotency_max_keys = 2).await;
    let mut client = app.ws_registered("63").await;
    let fields = |text| [("message", text), ("id", "63")];
    let mut seqs = Vec::new();
    for key in ["k1", "k2", "k3"] {
        seqs.push(seq_of(&publish_keyed(&app, key, &fields(key)).await, false));
    }
    // k1 was forgotten to make room for k3; k3 is remembered.
    assert_eq!(
        seq_of(&publish_keyed(&app, "k3", &fields("k3")).await, true),
        seqs[2]
    );
    seqs.push(seq_of(
        &publish_keyed(&app, "k1", &fields("k1")).await,
        false,
    ));
    for (seq, text) in seqs.iter().zip(["k1", "k2", "k3", "k1"]) {
        assert_eq!(next_message(&mut client).await, (*seq, json!(text)));
    }
    app.assert_nothing_before_sentinel(&mut [&mut client]).await;
    assert_eq!(metric(&app, "herald_idempotency_keys").await, 2.0);
    assert_eq!(
        metric(&app, "herald_idempotency_evictions_total").await,
        2.0
    );
    assert_eq!(
        metric(&app, "herald_idempotent_duplicates_total").await,
        1.0
    );
}

async fn keys_of_different_publishers_never_collide(backend: Backend) {
    let (one, two) = ("publisher-one-0123456789", "publisher-two-0123456789");
    let app = backend
        .node(|c| c.publish_keys = vec![Secret::new(one), Secret::new(two)])
        .await;
    let mut client = app.ws_registered("63").await;
    let publish_as = |key: &'static str| {
        let app = &app;
        async move {
            let bearer = format!("Bearer {key}");
            app.publish_form_with(
                &[("Authorization", &bearer), ("Idempotency-Key", "same")],
                &[("message", key), ("id", "63")],
            )
            .await
        }
    };
    let by_one = seq_of(&publish_as(one).await, false);
    let by_two = seq_of(&publish_as(two).await, false);
    assert_eq!(seq_of(&publish_as(one).await, true), by_one);
    assert_eq!(seq_of(&publish_as(two).await, true), by_two);
    assert_eq!(next_message(&mut client).await, (by_one, json!(one)));
    assert_eq!(next_message(&mut client).await, (by_two, json!(two)));
    let bearer = format!("Bearer {one}");
    let (status, _) = app
        .publish_form_with(&[("Authorization", &bearer)], &[("message", "sentinel")])
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(next_message(&mut client).await.1, "sentinel");
}

async fn a_bad_key_is_refused_and_nothing_is_published(backend: Backend) {
    let app = backend.node(|_| {}).await;
    let mut client = app.ws_registered("63").await;
    let too_long = "k".repeat(129);
    let message = [("message", "never"), ("id", "63")];
    let mut answers = vec![
        publish_keyed(&app, &too_long, &message).await,
        publish_keyed(&app, "has space", &message).await,
        app.publish_form_with(
            &[("Idempotency-Key", "one")],
            &[("message", "never"), ("idempotency_key", "two")],
        )
        .await,
    ];
    for key in ["a\u{1}b", "tab\there", "clé", ""] {
        let fields = [("message", "never"), ("idempotency_key", key)];
        answers.push(app.publish_form(&fields).await);
    }
    for key in [json!(17), json!(null), json!("line\nbreak")] {
        let body = json!({"message": "never", "idempotency_key": key});
        answers.push(app.publish_json(&body).await);
    }
    for (status, body) in &answers {
        assert_eq!(*status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["code"], "bad_idempotency_key", "{body}");
    }
    let error = |i: usize| {
        answers[i].1["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    assert!(error(0).contains("129 characters"), "{}", error(0));
    assert!(error(1).contains("printable ASCII"), "{}", error(1));
    assert!(error(2).contains("differ"), "{}", error(2));
    app.assert_nothing_before_sentinel(&mut [&mut client]).await;
    assert_eq!(
        metric(
            &app,
            "herald_rejected_publishes_total{reason=\"bad_idempotency_key\"}"
        )
        .await,
        answers.len() as f64
    );
}

async fn a_zero_window_remembers_no_key(backend: Backend) {
    let app = backend.node(|c| c.idempotency_window_secs = 0).await;
    let mut client = app.ws_registered("63").await;
    let fields = [("message", "again"), ("id", "63")];
    for _ in 0..2 {
        let (status, body) = publish_keyed(&app, "k", &fields).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body.get("duplicate").is_none(), "not remembered: {body}");
        assert_eq!(next_message(&mut client).await.1, "again");
    }
    // Still checked.
    let (status, body) = publish_keyed(&app, "bad key", &fields).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[actix_web::test]
async fn on_redis_a_key_used_on_one_node_is_a_duplicate_on_every_other_within_the_window() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let configure = |c: &mut herald::Config| c.idempotency_window_secs = 2;
    let a = redis.node(configure).await;
    let b = redis.node(configure).await;
    let mut on_a = a.ws_registered("63").await;
    let mut on_b = b.ws_registered("63").await;
    let fields = [("message", "once"), ("id", "63")];
    let seq = seq_of(&publish_keyed(&a, "cross-node", &fields).await, false);
    assert_eq!(
        seq_of(&publish_keyed(&b, "cross-node", &fields).await, true),
        seq
    );
    assert_eq!(
        seq_of(&publish_keyed(&a, "cross-node", &fields).await, true),
        seq
    );
    for client in [&mut on_a, &mut on_b] {
        assert_eq!(next_message(client).await, (seq, json!("once")));
    }
    a.assert_nothing_before_sentinel(&mut [&mut on_a, &mut on_b])
        .await;
    // After the window, from either node: a new publish.
    let again = within("the window to end", async {
        loop {
            let answer = publish_keyed(&b, "cross-node", &fields).await;
            if answer.1["duplicate"] == false {
                return seq_of(&answer, false);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    for client in [&mut on_a, &mut on_b] {
        assert_eq!(next_message(client).await, (again, json!("once")));
    }
    // What Redis holds for it: the key itself, expiring, and its index.
    let mut con = redis.connection().await;
    let keys: Vec<String> = ::redis::cmd("KEYS")
        .arg("herald:idempotency*")
        .query_async(&mut con)
        .await
        .expect("KEYS");
    assert_eq!(keys.len(), 2, "{keys:?}");
    for key in keys {
        let ttl: i64 = ::redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut con)
            .await
            .expect("PTTL");
        assert!(ttl > 0 && ttl <= 2000, "{key} expires in {ttl} ms");
    }
}
