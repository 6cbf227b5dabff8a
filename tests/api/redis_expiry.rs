//! Redis memory stays bounded: a stream not published to for
//! `history_ttl_secs` leaves Redis, and so does everything else herald
//! writes per stream or per node; what is left answers a late resume with
//! `reset`. (That a message older than the TTL is a gap and a newer one is
//! replayed, on both brokers, is in `contract.rs`.)

use std::time::Duration;

use redis::aio::MultiplexedConnection;

use crate::helpers::redis::Redis;
use crate::helpers::TestApp;

/// The TTL of these tests, in seconds.
const TTL_SECS: u64 = 2;

/// Distinct ids published to.
const IDS: usize = 2000;

/// How much more memory Redis may use once everything expired than before.
/// The streams of 2,000 ids take about 9 MB; what stays after they expire
/// is about 100 KB for 2,000 ids and 140 KB for 6,000 (Redis's own
/// bookkeeping, not per id).
const MEMORY_SLACK_BYTES: u64 = 256 * 1024;

/// A node whose history lasts [`TTL_SECS`].
async fn node(redis: &Redis) -> TestApp {
    redis.node(|c| c.history_ttl_secs = TTL_SECS).await
}

/// A number from `INFO <section>`, such as `used_memory`.
async fn info(con: &mut MultiplexedConnection, section: &str, name: &str) -> u64 {
    let text: String = redis::cmd("INFO")
        .arg(section)
        .query_async(con)
        .await
        .expect("INFO");
    text.lines()
        .find_map(|line| line.strip_prefix(&format!("{name}:")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} in INFO {section}"))
}

async fn keys(con: &mut MultiplexedConnection) -> Vec<String> {
    redis::cmd("KEYS")
        .arg("*")
        .query_async(con)
        .await
        .expect("KEYS")
}

/// Waits, up to 30 s, until `done` says so; checks every 100 ms.
async fn wait_until<F: std::future::Future<Output = bool>>(
    what: &str,
    mut done: impl FnMut() -> F,
) {
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while !done().await {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(waited.is_ok(), "timed out after 30 s waiting for {what}");
}

/// Keys that live as long as the cluster: its epoch, counter and base. Every
/// other key herald writes expires.
fn lives_with_the_cluster(key: &str) -> bool {
    key == "herald:epoch" || key == "herald:seq" || key == "herald:base"
}

#[actix_web::test]
async fn streams_expire_after_the_history_ttl_and_redis_memory_comes_back() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let app = node(&redis).await;
    let mut con = redis.connection().await;
    let (epoch, start) = app.position().await;

    // Both scripts run once (Redis keeps them, a few KiB); then their
    // stream expires, leaving the cluster's keys and this node's.
    let (status, body) = app
        .publish_form(&[("message", "warm-up"), ("id", "warm-up")])
        .await;
    assert!(status.is_success(), "{body}");
    let mut client = app
        .ws(&format!("id=warm-up&since={start}&epoch={epoch}"))
        .await;
    client.recv_json().await; // registered
    assert_eq!(client.recv_json().await["data"], "warm-up");
    client.close().await;
    let node_keys = |keys: &[String]| {
        keys.iter().all(|k| {
            lives_with_the_cluster(k) || k == "herald:nodes" || k.starts_with("herald:ids:")
        })
    };
    wait_until("the warm-up stream to leave Redis", || {
        let mut con = con.clone();
        async move {
            let keys = keys(&mut con).await;
            let size: usize = redis::cmd("DBSIZE").query_async(&mut con).await.unwrap();
            node_keys(&keys) && size == keys.len()
        }
    })
    .await;
    let keys_before: u64 = redis::cmd("DBSIZE").query_async(&mut con).await.unwrap();
    let memory_before = info(&mut con, "memory", "used_memory").await;
    let expired_before = info(&mut con, "stats", "expired_keys").await;

    // Many distinct ids, from 8 publishers at once.
    let publishers: Vec<_> = (0..8)
        .map(|p| {
            let port = app.port;
            actix_web::rt::spawn(async move {
                let app = TestApp {
                    port,
                    http: awc::Client::default(),
                };
                for i in (p..IDS).step_by(8) {
                    let id = format!("id-{i}");
                    let (status, body) = app.publish_form(&[("message", "m"), ("id", &id)]).await;
                    assert!(status.is_success(), "{body}");
                }
            })
        })
        .collect();
    for publisher in publishers {
        publisher.await.expect("a publisher");
    }

    // Every key herald wrote expires, but the cluster's epoch and counter.
    for key in keys(&mut con).await {
        let ttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut con)
            .await
            .unwrap();
        assert!(
            ttl != -1 || lives_with_the_cluster(&key),
            "{key} never expires"
        );
    }

    // Within the TTL and a little more, Redis is back where it started.
    wait_until("Redis to drop the expired streams", || {
        let mut con = con.clone();
        async move {
            let keys: u64 = redis::cmd("DBSIZE").query_async(&mut con).await.unwrap();
            let memory = info(&mut con, "memory", "used_memory").await;
            keys <= keys_before && memory <= memory_before + MEMORY_SLACK_BYTES
        }
    })
    .await;
    let expired = info(&mut con, "stats", "expired_keys").await - expired_before;
    assert!(expired >= IDS as u64, "{expired} keys expired");

    // A client resuming from before that gets `reset`, not an empty replay.
    let mut late = app
        .ws(&format!("id=id-17&since={start}&epoch={epoch}"))
        .await;
    late.recv_json().await; // registered
    let end = late.recv_json().await;
    assert_eq!(end["type"], "reset", "{end}");
    assert!(
        end["reason"]
            .as_str()
            .is_some_and(|r| r.contains("no longer covers")),
        "{end}"
    );
}
