//! Exactly once on Redis when Redis is not on the node's host: node A
//! reaches Redis through a [`LatencyProxy`], node B publishes at a steady
//! rate (broadcasts, to id `u1`, to channel `room`, and to others), and a
//! client `id=u1&channel=room` on A drops and resumes again and again, on
//! WebSocket, SSE (`Last-Event-ID`) and long-poll (each poll a resume).
//! Every message B accepted (200) for that client reaches it once, in seq
//! order: none lost, none doubled, nothing that was not for it, across
//! every resume. The same when only A's pub/sub connection lags its
//! commands, and when every connection stalls while the client is away
//! (between two long-polls, now and then). And a resume costs the same
//! number of Redis round trips whatever the number of streams.

use std::time::Duration;

use actix_web::http::StatusCode;

use crate::helpers::latency::{Delay, LatencyProxy, Link};
use crate::helpers::redis::Redis;
use crate::helpers::steady::{Publisher, Received, QUERY};
use crate::helpers::{within, TestApp};

/// Resumes per WebSocket or SSE case.
const RESUMES: usize = 5;

#[derive(Clone, Copy, Debug)]
enum Transport {
    WebSocket,
    Sse,
    Poll,
}

/// Where A's latency is.
#[derive(Clone, Copy, Debug)]
enum Lag {
    /// Every connection, this one-way delay in ms.
    All(u64),
    /// Only the pub/sub connection, this one-way delay in ms.
    PubSub(u64),
    /// 5 ms, and every connection stalls while the client is away.
    Stalls,
}

/// Two nodes on one Redis, A behind the proxy lagging as `lag`.
async fn cluster(redis: &Redis, lag: Lag) -> (LatencyProxy, TestApp, TestApp) {
    let proxy = redis.proxy().await;
    let a = redis
        .node_through(&proxy, |c| c.poll_timeout_secs = 2)
        .await;
    let b = redis.node(|_| {}).await;
    match lag {
        Lag::All(ms) => proxy.set_delay(Duration::from_millis(ms)),
        Lag::PubSub(ms) => {
            // Without A's pub/sub link found, the lag would not apply.
            assert!(proxy.pubsub_seen(), "node A's SUBSCRIBE not seen");
            proxy.set_link_delay(Link::PubSub, Delay::both(Duration::from_millis(ms)))
        }
        Lag::Stalls => proxy.set_delay(Duration::from_millis(5)),
    }
    (proxy, a, b)
}

/// One session on a streaming transport: opens it from the client's
/// position, reads until `done` says so, and drops it.
async fn stream_session(
    a: &TestApp,
    transport: Transport,
    got: &mut Received,
    done: impl Fn(&Received) -> bool,
) {
    match transport {
        Transport::WebSocket => {
            let mut ws = a.ws(&got.resume_query()).await;
            if std::env::var("TRACE").is_ok() {
                eprintln!("ws open {}", got.resume_query());
            }
            while !done(got) {
                let frame = ws.recv_json().await;
                if std::env::var("TRACE").is_ok() {
                    eprintln!("ws {frame}");
                }
                got.take(&frame);
            }
        }
        Transport::Sse => {
            let headers: Vec<(String, String)> = match &got.position {
                Some((epoch, seq)) => vec![("last-event-id".into(), format!("{epoch}:{seq}"))],
                None => Vec::new(),
            };
            let headers: Vec<(&str, &str)> = headers
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            let mut events = a.sse(QUERY, &headers).await;
            while !done(got) {
                let (id, frame) = events.next_data().await;
                got.take(&frame);
                if let Some((epoch, seq)) = id.as_deref().and_then(|id| id.split_once(':')) {
                    let seq = seq.parse().expect("seq in the event id");
                    got.position = Some((epoch.to_owned(), seq));
                }
            }
        }
        Transport::Poll => unreachable!("polls are not streams"),
    }
}

/// One long-poll: a resume from the client's position.
async fn poll_once(a: &TestApp, got: &mut Received) {
    let (status, body) = a.poll(&got.resume_query()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    if std::env::var("TRACE").is_ok() {
        eprintln!("poll {} -> {body}", got.resume_query());
    }
    if body["type"] == "reset" {
        got.take(&body);
        return;
    }
    for message in body["messages"].as_array().expect("messages") {
        got.take(message);
    }
    let epoch = body["epoch"].as_str().expect("epoch").to_owned();
    let seq = body["seq"].as_u64().expect("seq");
    got.position = Some((epoch, seq));
}

/// Runs one case and asserts none lost, none doubled, in order.
async fn exactly_once(transport: Transport, lag: Lag) {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let (proxy, a, b) = cluster(&redis, lag).await;
    // The client's first session starts from the node's position.
    let mut got = Received {
        position: Some(a.position().await),
        ..Received::default()
    };
    let publisher = Publisher::start(&b);
    match transport {
        Transport::Poll => {
            let until = publisher.accepted() + 150;
            // A bound, so a stalled publisher fails the test rather than
            // hanging it; generous, as the suite shares two cores.
            let polled = tokio::time::timeout(Duration::from_secs(60), async {
                let mut polls = 0usize;
                while publisher.accepted() < until {
                    poll_once(&a, &mut got).await;
                    polls += 1;
                    // Between polls, now and then, Redis is out of reach.
                    if matches!(lag, Lag::Stalls) && polls.is_multiple_of(3) {
                        proxy.stall(true);
                        publisher.wait_for(10).await;
                        proxy.stall(false);
                    }
                }
            })
            .await;
            assert!(polled.is_ok(), "150 messages were not accepted in 60 s");
        }
        _ => {
            for round in 0..RESUMES {
                let want = got.seqs.len() + 15;
                stream_session(&a, transport, &mut got, |got| got.seqs.len() >= want).await;
                // Every other time the client is back at once, while what
                // it missed may still be on its way to A.
                if matches!(lag, Lag::Stalls) {
                    proxy.stall(true);
                    publisher.wait_for(10).await;
                    proxy.stall(false);
                } else if round % 2 == 0 {
                    publisher.wait_for(10).await;
                }
            }
        }
    }
    let accepted = publisher.stop().await;
    let last = accepted.last_for_client().expect("messages were accepted");
    // A last session collects the rest.
    within("the last messages", async {
        match transport {
            Transport::Poll => {
                while got.max() < last && got.resets.is_empty() {
                    poll_once(&a, &mut got).await;
                }
            }
            _ => {
                stream_session(&a, transport, &mut got, |got| {
                    got.max() >= last || !got.resets.is_empty()
                })
                .await
            }
        }
    })
    .await;
    let tally = got.tally(&accepted);
    eprintln!(
        "{transport:?} {lag:?}: {} accepted for the client, {} received, {tally}, {} resets",
        accepted.for_client().len(),
        got.seqs.len(),
        got.resets.len()
    );
    assert!(got.resets.is_empty(), "reset: {:?}", got.resets);
    assert!(tally.is_clean(), "{tally}: {:?}", got.seqs);
}

#[actix_web::test]
async fn websocket_resumes_exactly_once_with_redis_local() {
    exactly_once(Transport::WebSocket, Lag::All(0)).await;
}

#[actix_web::test]
async fn websocket_resumes_exactly_once_at_5_ms() {
    exactly_once(Transport::WebSocket, Lag::All(5)).await;
}

#[actix_web::test]
async fn websocket_resumes_exactly_once_at_50_ms() {
    exactly_once(Transport::WebSocket, Lag::All(50)).await;
}

#[actix_web::test]
async fn websocket_resumes_exactly_once_when_pubsub_lags() {
    exactly_once(Transport::WebSocket, Lag::PubSub(50)).await;
}

#[actix_web::test]
async fn websocket_resumes_exactly_once_across_stalls() {
    exactly_once(Transport::WebSocket, Lag::Stalls).await;
}

#[actix_web::test]
async fn sse_resumes_exactly_once_with_redis_local() {
    exactly_once(Transport::Sse, Lag::All(0)).await;
}

#[actix_web::test]
async fn sse_resumes_exactly_once_at_5_ms() {
    exactly_once(Transport::Sse, Lag::All(5)).await;
}

#[actix_web::test]
async fn sse_resumes_exactly_once_at_50_ms() {
    exactly_once(Transport::Sse, Lag::All(50)).await;
}

#[actix_web::test]
async fn sse_resumes_exactly_once_when_pubsub_lags() {
    exactly_once(Transport::Sse, Lag::PubSub(50)).await;
}

#[actix_web::test]
async fn sse_resumes_exactly_once_across_stalls() {
    exactly_once(Transport::Sse, Lag::Stalls).await;
}

#[actix_web::test]
async fn long_poll_is_exactly_once_with_redis_local() {
    exactly_once(Transport::Poll, Lag::All(0)).await;
}

#[actix_web::test]
async fn long_poll_is_exactly_once_at_5_ms() {
    exactly_once(Transport::Poll, Lag::All(5)).await;
}

#[actix_web::test]
async fn long_poll_is_exactly_once_at_50_ms() {
    exactly_once(Transport::Poll, Lag::All(50)).await;
}

#[actix_web::test]
async fn long_poll_is_exactly_once_when_pubsub_lags() {
    exactly_once(Transport::Poll, Lag::PubSub(50)).await;
}

#[actix_web::test]
async fn long_poll_is_exactly_once_across_stalls() {
    exactly_once(Transport::Poll, Lag::Stalls).await;
}

/// The commands node A sends to Redis while a WebSocket client with
/// `channels` channels (and an id) resumes; the fewest of three tries, so
/// that a periodic command of the node landing in one does not count.
async fn resume_commands(redis: &Redis, channels: usize) -> Vec<String> {
    let proxy = redis.proxy().await;
    let a = redis.node_through(&proxy, |_| {}).await;
    let (epoch, since) = a.position().await;
    let query: String = (0..channels).map(|i| format!("&channel=c{i}")).collect();
    let query = format!("id=u1{query}&since={since}&epoch={epoch}");
    let mut fewest: Option<Vec<String>> = None;
    for _ in 0..3 {
        let before = proxy.commands().len();
        let mut ws = a.ws(&query).await;
        loop {
            let frame = ws.recv_json().await;
            if frame["type"] == "resumed" {
                break;
            }
            assert_ne!(frame["type"], "reset", "{frame}");
        }
        let sent = proxy.commands()[before..].to_vec();
        ws.close().await;
        if fewest.as_ref().is_none_or(|f| sent.len() < f.len()) {
            fewest = Some(sent);
        }
    }
    fewest.unwrap_or_default()
}

#[actix_web::test]
async fn a_resume_costs_the_same_round_trips_for_1_or_20_channels() {
    let Some(redis) = Redis::start().await else {
        return;
    };
    let one = resume_commands(&redis, 1).await;
    let twenty = resume_commands(&redis, 20).await;
    eprintln!("one channel: {one:?}; twenty channels: {twenty:?}");
    assert!(
        one.iter().any(|c| c == "EVALSHA" || c == "EVAL"),
        "the replay script was not seen: {one:?}"
    );
    assert_eq!(one, twenty);
    assert!(one.len() <= 2, "{one:?}");
}
