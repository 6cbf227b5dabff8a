//! One client of a run: it connects, registers, and counts every message
//! it reads; in the storm scenario it also drops and resumes when told.
//!
//! The receive path is the generator's hot path, kept cheap so that the
//! generator is not what a run measures: every complete frame of one read is
//! handled at once, with one clock read, a byte search for the message's
//! stamp (no JSON parse), then one drain of the buffer and one write of any
//! answers.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;
use tokio::io::AsyncWriteExt;
use tokio::sync::Semaphore;

use super::{Flavor, Shared};
use crate::wire::{self, OP_CLOSE, OP_PING, OP_TEXT};

/// The path a client connects to.
fn path(flavor: Flavor, client: usize, channel: Option<u32>) -> String {
    let channel = channel
        .map(|c| format!("&channel=ch{c}"))
        .unwrap_or_default();
    match flavor {
        Flavor::Herald | Flavor::Ceiling => format!("/ws?id=c{client}{channel}"),
        Flavor::Socketio => format!("/socket.io/?EIO=4&transport=websocket&id=c{client}{channel}"),
    }
}

/// The second octet of a run's source network, from the clock's seconds:
/// runs started less than 254 s apart (longer than TIME_WAIT lasts) never
/// share one.
pub(super) fn source_net() -> u8 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    1 + (secs % 254) as u8
}

/// The address client `client` connects from, when the server is on IPv4
/// loopback: 127.`net`.x.1, with `net` from [`source_net`] and one address
/// per 25,000 clients, so each keeps within one ephemeral port range. A
/// run that connected from 127.0.0.1 like the one before it found that
/// run's ports still in TIME_WAIT toward the same server address, and the
/// kernel searched for a free port on every connect: connect runs came out
/// at a third of their rate, for every server alike, with the generator's
/// core busy in that search.
fn source(client: usize, net: u8, server: SocketAddr) -> Option<IpAddr> {
    let loopback = matches!(server.ip(), IpAddr::V4(ip) if ip.is_loopback());
    loopback.then(|| IpAddr::V4(Ipv4Addr::new(127, net, (client / 25_000) as u8, 1)))
}

pub(super) async fn client(
    shared: Rc<Shared>,
    idx: usize,
    admission: Rc<Semaphore>,
) -> io::Result<()> {
    let permit = admission.acquire().await.map_err(io::Error::other)?;
    let mut permit = Some(permit);
    // herald's position (epoch, seq), for reconnecting after a storm.
    let mut position: Option<(String, u64)> = None;
    let mut storms = shared.storms.get();
    let mut attempt = 0u32;
    let node = shared.node_of(idx);
    let host = node.to_string();
    // Pongs and other answers, written once per batch of frames.
    let mut replies = Vec::new();
    loop {
        let mut path = path(shared.flavor, idx, shared.plan.channel_of(idx));
        if let Some((epoch, seq)) = &position {
            path.push_str(&format!("&since={seq}&epoch={epoch}"));
        }
        let mut buf = Vec::with_capacity(8 * 1024);
        let opened = async {
            let mut stream = wire::connect(source(idx, shared.source_net, node), node).await?;
            wire::handshake(&mut stream, &host, &path, &mut buf).await?;
            Ok::<_, io::Error>(stream)
        }
        .await;
        let mut stream = match opened {
            Ok(stream) => stream,
            Err(e) if position.is_none() => return Err(e),
            Err(_) => {
                // Refused or overloaded during a storm: back off and retry,
                // as herald.js does.
                shared.refused.set(shared.refused.get() + 1);
                attempt += 1;
                tokio::time::sleep(storm_backoff(attempt)).await;
                continue;
            }
        };
        match shared.flavor {
            Flavor::Herald => {}
            Flavor::Ceiling => {
                let register = format!(r#"{{"type":"register","id":"c{idx}"}}"#);
                stream
                    .write_all(&wire::frame(OP_TEXT, register.as_bytes()))
                    .await?;
            }
            Flavor::Socketio => stream.write_all(&wire::frame(OP_TEXT, b"40")).await?,
        }
        loop {
            // Every complete frame of this wake-up, then one drain.
            let used = take_frames(&shared, idx, &buf, &mut position, &mut permit, &mut replies)?;
            buf.drain(..used);
            if !replies.is_empty() {
                stream.write_all(&replies).await?;
                replies.clear();
            }
            if !shared.storming {
                if wire::read_more(&mut stream, &mut buf).await? == 0 {
                    return Err(io::Error::other("connection ended"));
                }
                continue;
            }
            let storm = shared.storm.notified();
            if shared.storms.get() != storms {
                break;
            }
            tokio::select! {
                read = wire::read_more(&mut stream, &mut buf) => {
                    if read? == 0 {
                        return Err(io::Error::other("connection ended"));
                    }
                }
                _ = storm => break,
            }
        }
        // A storm: every client drops its connection at once and comes back
        // after a jittered delay, resuming from its position.
        storms = shared.storms.get();
        drop(stream);
        attempt = 0;
        tokio::time::sleep(storm_backoff(attempt)).await;
    }
}

/// Handles every complete frame at the start of `buf` and returns how many
/// bytes they took. A message frame costs a byte search for its stamp (no
/// JSON parse) and a bit in the tally, with the clock read once per call;
/// answers to the server (pongs) are appended to `replies`.
fn take_frames(
    shared: &Shared,
    idx: usize,
    buf: &[u8],
    position: &mut Option<(String, u64)>,
    permit: &mut Option<tokio::sync::SemaphorePermit<'_>>,
    replies: &mut Vec<u8>,
) -> io::Result<usize> {
    let mut at = 0;
    let mut now = None;
    while let Some(frame) = wire::parse(&buf[at..]) {
        let payload = &buf[at + frame.start..at + frame.end];
        at += frame.end;
        match frame.opcode {
            OP_TEXT => {
                if let Some((msg, sent)) = wire::message_stamp(payload) {
                    let now = *now.get_or_insert_with(|| (shared.now_us(), Instant::now()));
                    shared.deliver(idx, msg, sent, now);
                    // The position only matters for coming back after a storm.
                    if shared.storming {
                        if let (Some(pos), Some(seq)) =
                            (position.as_mut(), wire::frame_seq(payload))
                        {
                            pos.1 = seq;
                        }
                    }
                } else if shared.flavor == Flavor::Socketio {
                    if payload == b"2" {
                        replies.extend_from_slice(&wire::frame(OP_TEXT, b"3"));
                    } else if wire::find(payload, b"registered").is_some()
                        && permit.take().is_some()
                    {
                        shared.registered(idx);
                    }
                } else {
                    control_frame(shared, idx, payload, position, permit);
                }
            }
            OP_PING => replies.extend_from_slice(&wire::frame(0xA, payload)),
            OP_CLOSE => return Err(io::Error::other("server closed the connection")),
            _ => {}
        }
    }
    Ok(at)
}

/// herald.js's reconnect delay: exponential from 500 ms, capped at 30 s,
/// a random point in the upper half.
fn storm_backoff(attempt: u32) -> Duration {
    let window = (500u64 << attempt.min(6)).min(30_000);
    Duration::from_millis(window / 2 + rand::thread_rng().gen_range(0..=window / 2))
}

/// Reads herald's control frames: readiness, the position, resume outcomes.
fn control_frame(
    shared: &Shared,
    idx: usize,
    payload: &[u8],
    position: &mut Option<(String, u64)>,
    permit: &mut Option<tokio::sync::SemaphorePermit<'_>>,
) {
    let Ok(frame) = serde_json::from_slice::<serde_json::Value>(payload) else {
        return;
    };
    let epoch = frame["epoch"].as_str().map(str::to_owned);
    let seq = frame["seq"].as_u64();
    match frame["type"].as_str() {
        Some("registered") => {
            if position.is_none() {
                if let (Some(epoch), Some(seq)) = (epoch, seq) {
                    *position = Some((epoch, seq));
                }
            }
            if permit.take().is_some() {
                shared.registered(idx);
            }
        }
        Some("resumed") => {
            if let (Some(pos), Some(seq)) = (position.as_mut(), seq) {
                pos.1 = pos.1.max(seq);
            }
            shared.resumed.set(shared.resumed.get() + 1);
            shared.changed.notify_waiters();
        }
        Some("reset") => {
            shared.resets.set(shared.resets.get() + 1);
            if let (Some(epoch), Some(seq)) = (epoch, seq) {
                *position = Some((epoch, seq));
            }
            shared.resumed.set(shared.resumed.get() + 1);
            shared.changed.notify_waiters();
        }
        _ => {}
    }
}
