//! How a message travels between nodes: the publish script announces it on
//! the cluster's pub/sub channel as `<stream>\n<seq>\n<frame>`, and every
//! node, the publishing one included, receives it through its subscription
//! and hands it up to [`BrokerEvents`].

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytestring::ByteString;
use futures_util::StreamExt;

use super::RedisBroker;
use crate::broker::{BrokerEvents, Publication};
use crate::history::StreamKey;
use crate::ids::{ChannelName, ClientId};

impl RedisBroker {
    /// Receives every announced message and hands it to `events`, for as
    /// long as the process runs; reconnects with backoff when Redis goes
    /// away, logging each change of state once. Once subscribed, joins the
    /// cluster again (a Redis that came back empty gets an epoch, and the
    /// node's position is the counter, not what it had before the gap).
    pub(super) fn subscribe(&self, events: Arc<dyn BrokerEvents>) {
        let client = self.client.clone();
        let mut commands = self.commands.clone();
        let channel = self.channel();
        let health = self.health.clone();
        let standing = self.standing.clone();
        tokio::task::spawn_local(async move {
            let mut delay = Duration::from_millis(100);
            let mut was_up = true;
            loop {
                match client.get_async_pubsub().await {
                    Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                        Ok(()) => {
                            let (epoch, seq) = match standing
                                .join(&mut commands, &crate::broker::new_epoch())
                                .await
                            {
                                Ok(position) => position,
                                Err(e) => {
                                    note_down(&mut was_up, &e);
                                    tokio::time::sleep(delay).await;
                                    delay = (delay * 2).min(Duration::from_secs(5));
                                    continue;
                                }
                            };
                            health.set_subscribed(true);
                            log::info!(
                                "broker: subscribed to {channel} (cluster epoch {epoch}, seq {seq})"
                            );
                            was_up = true;
                            delay = Duration::from_millis(100);
                            let mut messages = pubsub.on_message();
                            while let Some(msg) = messages.next().await {
                                match decode(msg.get_payload_bytes()) {
                                    Some(message) => {
                                        standing.seen.fetch_max(message.seq, Ordering::Relaxed);
                                        events.publication(message)
                                    }
                                    None => log::warn!("broker: ignored a malformed message"),
                                }
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

/// Reads an announcement: `<stream>\n<seq>\n<frame>`.
fn decode(payload: &[u8]) -> Option<Publication> {
    let text = std::str::from_utf8(payload).ok()?;
    let (name, rest) = text.split_once('\n')?;
    let (seq, frame) = rest.split_once('\n')?;
    let key = match name.split_once(':') {
        None if name == "b" => StreamKey::Broadcast,
        Some(("i", id)) => StreamKey::Id(ClientId::parse(id).ok()?),
        Some(("c", channel)) => StreamKey::Channel(ChannelName::parse(channel).ok()?),
        _ => return None,
    };
    Some(Publication {
        key,
        seq: seq.parse().ok()?,
        frame: ByteString::from(frame.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_round_trip() {
        let id = StreamKey::Id(ClientId::parse("user 63").unwrap());
        let payload = format!("{}\n42\n{{\"type\":\"message\"}}", encode_key(&id));
        let fanout = decode(payload.as_bytes()).unwrap();
        assert_eq!((fanout.key, fanout.seq), (id, 42));
        assert_eq!(&*fanout.frame, r#"{"type":"message"}"#);
        assert!(decode(b"x:1\n1\n{}").is_none());
        assert!(decode(b"b\nnotanumber\n{}").is_none());
        assert!(decode(b"c:bad name\n1\n{}").is_none());
    }
}
