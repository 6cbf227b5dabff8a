//! Positions on Redis are the cluster's: a node that starts after the last
//! publish stands at the cluster's counter, not at 0; and a `reset` carries
//! the cluster's newest position, from which a resume has nothing to
//! replay, so a client that follows it is not reset again — after the
//! history expired, and after Redis lost its data. Long-polling shows it
//! best: every poll is a resume.

use actix_web::http::StatusCode;
use serde_json::{json, Value};

use crate::helpers::redis::Redis;
use crate::helpers::{within, TestApp};

/// A node whose history lasts 1 s and whose polls wait 1 s.
async fn node(redis: &Redis) -> TestApp {
    redis
        .node(|c| {
            c.history_ttl_secs = 1;
            c.poll_timeout_secs = 1;
        })
        .await
}

/// The cluster's counter, as Redis holds it.
async fn counter(redis: &Redis) -> u64 {
    let mut con = redis.connection().await;
    redis::cmd("GET")
        .arg("herald:seq")
        .query_async::<Option<u64>>(&mut con)
        .await
        .expect("GET herald:seq")
        .unwrap_or(0)
}

/// `GET /poll` as id 63 from `(epoch, since)`.
async fn poll_from(app: &TestApp, epoch: &str, since: u64) -> Value {
    let (status, body) = app
        .poll(&format!("id=63&since={since}&epoch={epoch}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// The position a poll answer or a `reset` gives to go on from.
fn position_of(body: &Value) -> (String, u64) {
    (
        body["epoch"].as_str().expect("epoch").to_owned(),
        body["seq"].as_u64().expect("seq"),
    )
}

/// A poll that follows a reset: nothing to replay, so it waits for the
/// next message (1 s here) and answers an empty list, not `reset` again.
async fn assert_resumes_cleanly(app: &TestApp, (epoch, since): &(String, u64)) {
    let body = poll_from(app, epoch, *since).await;
    assert_eq!(
        (&body["type"], &body["messages"]),
        (&Value::Null, &json!([])),
        "{body}"
    );
    assert_eq!(position_of(&body), (epoch.clone(), *since), "{body}");
}

#[actix_web::test]
async fn a_node_started_after_the_last_publish_stands_at_the_cluster_counter() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let a = node(&redis).await;
    let (epoch, start) = a.position().await;
    let mut last = 0;
    for text in ["one", "two", "three"] {
        let (status, body) = a.publish_form(&[("message", text), ("id", "63")]).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        last = body["seq"].as_u64().expect("seq");
    }
    // The history expires: a poll from before it gets `reset`.
    within("the history to expire", async {
        while poll_from(&a, &epoch, start).await["type"] != "reset" {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    })
    .await;

    // A node started now is at the cluster's counter.
    let b = node(&redis).await;
    assert_eq!(counter(&redis).await, last);
    assert_eq!(b.position().await, (epoch.clone(), last));

    // A poll from before the expiry, on that node: `reset` to the cluster's
    // position, and from there the next poll just waits.
    let reset = poll_from(&b, &epoch, start).await;
    assert_eq!(reset["type"], "reset", "{reset}");
    assert_eq!(position_of(&reset), (epoch.clone(), last), "{reset}");
    assert_resumes_cleanly(&b, &position_of(&reset)).await;

    // So does a position past the counter (`ahead`).
    let ahead = poll_from(&b, &epoch, last + 10).await;
    assert_eq!(ahead["type"], "reset", "{ahead}");
    assert_resumes_cleanly(&b, &position_of(&ahead)).await;
}

#[actix_web::test]
async fn after_redis_lost_its_data_a_reset_position_resumes_cleanly_on_every_node() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let a = node(&redis).await;
    let b = node(&redis).await;
    let mut last = 0;
    for text in ["one", "two"] {
        let (_, body) = a.publish_form(&[("message", text), ("id", "63")]).await;
        last = body["seq"].as_u64().expect("seq");
    }
    let (old_epoch, _) = a.position().await;

    redis.flush_all().await;

    // The old position is reset, to a new epoch and a counter that does
    // not go back.
    let reset = poll_from(&a, &old_epoch, last).await;
    assert_eq!(reset["type"], "reset", "{reset}");
    let (epoch, since) = position_of(&reset);
    assert_ne!(epoch, old_epoch, "{reset}");
    assert!(since >= last, "{reset}");
    // From it: no second reset, on this node and on the other, which had
    // not seen the change.
    assert_resumes_cleanly(&a, &(epoch.clone(), since)).await;
    assert_resumes_cleanly(&b, &(epoch.clone(), since)).await;
    assert_eq!(b.position().await.0, epoch);

    // And what is published next comes to a poll from there.
    let (status, published) = b.publish_form(&[("message", "after"), ("id", "63")]).await;
    assert_eq!(status, StatusCode::OK, "{published}");
    assert!(published["seq"].as_u64() > Some(since), "{published}");
    let body = poll_from(&a, &epoch, since).await;
    assert_eq!(body["messages"][0]["data"], "after", "{body}");
    assert_eq!(body["seq"], published["seq"], "{body}");
}
