//! How a message travels between nodes: the publish script announces it on
//! the cluster's pub/sub channel as `<epoch>\n<stream>\n<seq>\n<frame>`,
//! and every node, the publishing one included, receives it through its
//! subscription and hands it up to [`BrokerEvents`].
//!
//! A subscription that stops carrying data without closing (a NAT or load
//! balancer that dropped the flow, a half-open connection) would look like
//! a quiet cluster: the node PINGs Redis over it every
//! [`PING_INTERVAL`] and, without an answer within [`PING_TIMEOUT`], drops
//! it and subscribes again, catching up on what it missed.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytestring::ByteString;
use futures_util::StreamExt;

use redis::aio::ConnectionManager;

use super::catch_up::{CatchUp, CaughtUp};
use super::standing::Standing;
use super::RedisBroker;
use crate::broker::{BrokerEvents, Missed, Publication};
use crate::history::StreamKey;
use crate::ids::{ChannelName, ClientId, Epoch};

/// How often a node checks that its subscription still answers.
const PING_INTERVAL: Duration = Duration::from_secs(1);
/// How long a node waits for that answer before it subscribes again.
const PING_TIMEOUT: Duration = Duration::from_secs(2);

impl RedisBroker {
    /// Receives every announced message and hands it to `events`, for as
    /// long as the process runs; reconnects with backoff when Redis goes
    /// away, logging each change of state once. Once subscribed, joins the
    /// cluster again (a Redis that came back empty gets an epoch, and the
    /// node's position is the counter, not what it had before the gap),
    /// then catches up on what it missed meanwhile (`catch_up.rs`) before
    /// fanning out announcements again. Publishes are refused until then.
    pub(super) fn subscribe(&self, events: Arc<dyn BrokerEvents>) {
        let client = self.client.clone();
        let mut commands = self.commands.clone();
        let channel = self.channel();
        let health = self.health.clone();
        let standing = self.standing.clone();
        let catch_up = CatchUp::new(&self.prefix);
        tokio::task::spawn_local(async move {
            let mut delay = Duration::from_millis(100);
            let mut was_up = true;
            // The last seq fanned out here, in the node's epoch.
            let mut last = standing.numbered_before.load(Ordering::Relaxed);
            loop {
                match client.get_async_pubsub().await {
                    Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                        Ok(()) => {
                            let caught_up =
                                rejoin(&standing, &mut commands, &catch_up, last, &*events).await;
                            match caught_up {
                                Ok(upto) => last = upto,
                                Err(e) => {
                                    note_down(&mut was_up, &e);
                                    tokio::time::sleep(delay).await;
                                    delay = (delay * 2).min(Duration::from_secs(5));
                                    continue;
                                }
                            }
                            health.set_subscribed(true);
                            log::info!(
                                "broker: subscribed to {channel} (cluster epoch {}, seq {last})",
                                standing.epoch()
                            );
                            was_up = true;
                            delay = Duration::from_millis(100);
                            let (mut sink, mut messages) = pubsub.split();
                            // The epoch `last` is of.
                            let mut fanning = standing.epoch();
                            let mut ping = tokio::time::interval(PING_INTERVAL);
                            ping.reset();
                            loop {
                                let msg = tokio::select! {
                                    msg = messages.next() => msg,
                                    _ = ping.tick() => {
                                        let pong = sink.ping::<redis::Value>();
                                        if matches!(tokio::time::timeout(PING_TIMEOUT, pong).await, Ok(Ok(_))) {
                                            continue;
                                        }
                                        log::warn!("broker: the Redis subscription stopped answering");
                                        break;
                                    }
                                };
                                let Some(msg) = msg else { break };
                                let Some((epoch, message)) = decode(msg.get_payload_bytes()) else {
                                    log::warn!("broker: ignored a malformed message");
                                    continue;
                                };
                                // Redis lost its data, or came back with
                                // older data, while this node stayed
                                // subscribed: a new epoch.
                                if !standing.is_epoch(&epoch)
                                    && moved_on(&standing, &mut commands).await.is_err()
                                {
                                    break;
                                }
                                if epoch != fanning {
                                    fanning = epoch;
                                } else if message.seq <= last {
                                    continue; // read by the catch-up already
                                }
                                last = message.seq;
                                standing.seen.fetch_max(message.seq, Ordering::Relaxed);
                                events.publication(message)
                            }
                            health.set_subscribed(false);
                            log::warn!("broker: lost the Redis subscription; reconnecting");
                        }
                        Err(e) => note_down(&mut was_up, &e),
                    },
                    Err(e) => note_down(&mut was_up, &e),
                }
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        });
    }
}

/// A subscription just came (back): joins the cluster, and hands `events`
/// what was numbered since `last` (the last seq fanned out), or tells it
/// which sessions missed what cannot be read. Returns the seq fanned out
/// up to: announcements at or below it are not fanned out again.
async fn rejoin(
    standing: &Standing,
    commands: &mut ConnectionManager,
    catch_up: &CatchUp,
    last: u64,
    events: &dyn BrokerEvents,
) -> Result<u64, redis::RedisError> {
    let before = standing.epoch();
    let (epoch, counter) = standing.join(commands, &crate::broker::new_epoch()).await?;
    if epoch != before {
        // Every session was told (see `standing.rs`): nothing to catch up.
        return Ok(counter);
    }
    match catch_up.read(commands, &epoch, last).await? {
        CaughtUp::Found {
            upto,
            publications,
            missed,
        } => {
            if !publications.is_empty() || missed.is_some() {
                log::info!(
                    "broker: caught up on {} message(s) published while unsubscribed",
                    publications.len()
                );
            }
            // First: the sessions that missed a frame leave before any
            // later one could move their position past it.
            if let Some(missed) = missed {
                events.missed(missed);
            }
            for publication in publications {
                standing.seen.fetch_max(publication.seq, Ordering::Relaxed);
                events.publication(publication);
            }
            Ok(upto.max(last))
        }
        CaughtUp::Lost { upto } => {
            log::warn!(
                "broker: cannot read what was published after seq {last} while unsubscribed \
                 (the node log no longer reaches back to it); every session resumes"
            );
            events.missed(Missed::Everything);
            Ok(upto.max(last))
        }
        CaughtUp::EpochChanged => moved_on(standing, commands).await,
    }
}

/// The cluster's epoch is no longer the node's: takes the new one (which
/// tells every session, see `standing.rs`). Returns the counter.
async fn moved_on(
    standing: &Standing,
    commands: &mut ConnectionManager,
) -> Result<u64, redis::RedisError> {
    let (_, counter) = standing.join(commands, &crate::broker::new_epoch()).await?;
    Ok(counter)
}

/// Logs that Redis went away, once per outage.
fn note_down(was_up: &mut bool, error: &redis::RedisError) {
    if *was_up {
        log::warn!("broker: Redis unavailable ({error}); retrying with backoff");
        *was_up = false;
    }
}

/// A stream's name in Redis keys and announcements.
pub(super) fn encode_key(key: &StreamKey) -> String {
    match key {
        StreamKey::Broadcast => "b".into(),
        StreamKey::Id(id) => format!("i:{id}"),
        StreamKey::Channel(channel) => format!("c:{channel}"),
    }
}

/// A stream from its name in Redis keys and announcements.
pub(super) fn decode_key(name: &str) -> Option<StreamKey> {
    match name.split_once(':') {
        None if name == "b" => Some(StreamKey::Broadcast),
        Some(("i", id)) => Some(StreamKey::Id(ClientId::parse(id).ok()?)),
        Some(("c", channel)) => Some(StreamKey::Channel(ChannelName::parse(channel).ok()?)),
        _ => None,
    }
}

/// Reads an announcement: `<epoch>\n<stream>\n<seq>\n<frame>`.
fn decode(payload: &[u8]) -> Option<(Epoch, Publication)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (epoch, rest) = text.split_once('\n')?;
    let (name, rest) = rest.split_once('\n')?;
    let (seq, frame) = rest.split_once('\n')?;
    let publication = Publication {
        key: decode_key(name)?,
        seq: seq.parse().ok()?,
        frame: ByteString::from(frame.to_owned()),
    };
    Some((Epoch::from(epoch), publication))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_round_trip() {
        let id = StreamKey::Id(ClientId::parse("user 63").unwrap());
        let payload = format!("E1\n{}\n42\n{{\"type\":\"message\"}}", encode_key(&id));
        let (epoch, fanout) = decode(payload.as_bytes()).unwrap();
        assert_eq!(epoch.as_str(), "E1");
        assert_eq!((fanout.key, fanout.seq), (id, 42));
        assert_eq!(&*fanout.frame, r#"{"type":"message"}"#);
        assert!(decode(b"E\nx:1\n1\n{}").is_none());
        assert!(decode(b"E\nb\nnotanumber\n{}").is_none());
        assert!(decode(b"E\nc:bad name\n1\n{}").is_none());
        assert!(decode(b"b\n1\n{}").is_none(), "no epoch");
    }
}
