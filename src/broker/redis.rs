//! The Redis broker: atomic numbering, bounded history in Redis Streams,
//! fan-out between nodes over pub/sub.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use bytestring::ByteString;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{BrokerConfig, BrokerError};
use crate::history::StreamKey;
use crate::hub::messages::{Fanout, GetCounts};
use crate::hub::NotifyServer;
use crate::ids::{ChannelName, ClientId};
use crate::protocol::PendingFrame;

/// Numbers, keeps and announces one message, atomically, so `seq` order is
/// publish order on every node. KEYS: counter, stream, channel. ARGV: the
/// frame's fields after `seq`, the history bound, the stream's name, and
/// the highest seq this node has seen: if Redis lost its data, the counter
/// continues after it instead of starting again at 1 (clients skip seqs
/// they believe they have).
const PUBLISH_SCRIPT: &str = r#"
local seq = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[4])
if seq <= floor then
  seq = floor + 1
  redis.call('SET', KEYS[1], seq)
end
local frame = '{"type":"message","seq":' .. seq .. ',' .. ARGV[1]
if tonumber(ARGV[2]) > 0 then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], seq .. '-0', 'f', frame)
end
local nodes = redis.call('PUBLISH', KEYS[3], ARGV[3] .. '\n' .. seq .. '\n' .. frame)
return {seq, nodes}
"#;

/// One `XRANGE` entry: its id and its field/value pairs.
type StreamEntry = (String, Vec<(String, Vec<u8>)>);

/// What a publish through Redis did.
#[derive(Debug, Clone, Copy)]
pub struct RedisPublished {
    pub seq: u64,
    /// Nodes subscribed when it was announced (each fans out locally).
    pub nodes: u64,
}

pub struct RedisBroker {
    client: redis::Client,
    commands: ConnectionManager,
    publish: redis::Script,
    prefix: String,
    history_size: usize,
    /// Whether the node's subscription is up, for `/health`.
    subscribed: Arc<AtomicBool>,
    /// The highest seq this node has published or received.
    seen: Arc<AtomicU64>,
}

impl RedisBroker {
    /// Connects; fails if Redis cannot be reached now.
    pub async fn connect(config: &BrokerConfig, history_size: usize) -> Result<Self, BrokerError> {
        let unavailable = |e: redis::RedisError| BrokerError::Unavailable(e.to_string());
        let client = redis::Client::open(config.url.as_str()).map_err(unavailable)?;
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_max_delay(Duration::from_secs(5));
        // Reachable now, or a clear failure within seconds (the manager
        // itself would keep retrying); from here on the manager reconnects
        // by itself.
        let probe = client.get_multiplexed_async_connection();
        match actix_web::rt::time::timeout(Duration::from_secs(3), probe).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(unavailable(e)),
            Err(_) => {
                return Err(BrokerError::Unavailable(format!(
                    "no answer from {} within 3 s",
                    client.get_connection_info().addr()
                )))
            }
        }
        let commands = ConnectionManager::new_lazy_with_config(client.clone(), manager)
            .map_err(unavailable)?;
        Ok(Self {
            client,
            commands,
            publish: redis::Script::new(PUBLISH_SCRIPT),
            prefix: config.prefix.clone(),
            history_size,
            subscribed: Arc::new(AtomicBool::new(false)),
            seen: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The cluster's epoch: set by the first node, read by the others. A
    /// Redis that lost its data loses it too, so positions from before are
    /// not taken for new ones.
    pub async fn epoch(&self, candidate: &str) -> Result<String, BrokerError> {
        let key = format!("{}:epoch", self.prefix);
        let mut con = self.commands.clone();
        let _: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(candidate)
            .arg("NX")
            .query_async(&mut con)
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
        redis::cmd("GET")
            .arg(&key)
            .query_async(&mut con)
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))
    }

    fn channel(&self) -> String {
        format!("{}:messages", self.prefix)
    }

    /// Numbers, keeps and announces a message.
    pub async fn publish(
        &self,
        key: &StreamKey,
        frame: &PendingFrame,
    ) -> Result<RedisPublished, BrokerError> {
        let name = encode_key(key);
        let mut con = self.commands.clone();
        let (seq, nodes): (u64, u64) = self
            .publish
            .key(format!("{}:seq", self.prefix))
            .key(format!("{}:stream:{name}", self.prefix))
            .key(self.channel())
            .arg(frame.fields())
            .arg(self.history_size)
            .arg(&name)
            .arg(self.seen.load(Ordering::Relaxed))
            .invoke_async(&mut con)
            .await
            .map_err(|e| BrokerError::Unavailable(e.to_string()))?;
        self.seen.fetch_max(seq, Ordering::Relaxed);
        Ok(RedisPublished { seq, nodes })
    }

    /// Every message kept for `keys` after `since`, in seq order; or why
    /// that cannot be complete: the cluster's epoch is no longer `epoch`
    /// (Redis lost its data), a stream dropped a message after `since`, or
    /// Redis is unreachable.
    pub async fn replay(
        &self,
        epoch: &str,
        keys: &[StreamKey],
        since: u64,
    ) -> Result<Vec<(u64, ByteString)>, String> {
        let mut con = self.commands.clone();
        let failed = |e: redis::RedisError| format!("the message broker is unavailable: {e}");
        let current: Option<String> = redis::cmd("GET")
            .arg(format!("{}:epoch", self.prefix))
            .query_async(&mut con)
            .await
            .map_err(failed)?;
        if current.as_deref() != Some(epoch) {
            return Err("the broker's history started afresh (epoch changed)".into());
        }
        let mut found = Vec::new();
        for key in keys {
            let stream = format!("{}:stream:{}", self.prefix, encode_key(key));
            let exists: bool = redis::cmd("EXISTS")
                .arg(&stream)
                .query_async(&mut con)
                .await
                .map_err(failed)?;
            if !exists {
                continue; // never published to
            }
            let info: std::collections::HashMap<String, redis::Value> = redis::cmd("XINFO")
                .arg("STREAM")
                .arg(&stream)
                .query_async(&mut con)
                .await
                .map_err(failed)?;
            let dropped_up_to = info
                .get("max-deleted-entry-id")
                .and_then(|v| redis::from_redis_value::<String>(v.clone()).ok())
                .and_then(|id| id.split('-').next().and_then(|ms| ms.parse::<u64>().ok()))
                .unwrap_or(0);
            if dropped_up_to > since {
                return Err(format!(
                    "history of {key} dropped messages after seq {since} (up to {dropped_up_to})"
                ));
            }
            let entries: Vec<StreamEntry> = redis::cmd("XRANGE")
                .arg(&stream)
                .arg(format!("{}-0", since + 1))
                .arg("+")
                .query_async(&mut con)
                .await
                .map_err(failed)?;
            for (id, fields) in entries {
                let seq = id.split('-').next().and_then(|ms| ms.parse::<u64>().ok());
                let frame = fields
                    .into_iter()
                    .find(|(name, _)| name == "f")
                    .map(|(_, v)| v);
                if let (Some(seq), Some(frame)) = (seq, frame) {
                    if let Ok(text) = String::from_utf8(frame) {
                        found.push((seq, ByteString::from(text)));
                    }
                }
            }
        }
        found.sort_unstable_by_key(|(seq, _)| *seq);
        Ok(found)
    }

    /// The nodes that reported in the last [`PRESENCE_TTL`], and their
    /// sessions in all; `None` when Redis cannot be read.
    pub async fn cluster(&self) -> Option<(usize, usize)> {
        let mut con = self.commands.clone();
        let nodes: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
            .arg(self.nodes_key())
            .query_async(&mut con)
            .await
            .ok()?;
        let now = unix_millis();
        let mut live = 0;
        let mut sessions = 0;
        for (node, report) in nodes {
            let mut parts = report.split(' ');
            let at: u64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            if now.saturating_sub(at) > PRESENCE_TTL.as_millis() as u64 {
                // Gone: forget it (another reader may race us; harmless).
                let _: Result<(), _> = redis::cmd("HDEL")
                    .arg(self.nodes_key())
                    .arg(&node)
                    .query_async(&mut con)
                    .await;
                continue;
            }
            live += 1;
            sessions += parts
                .next()
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
        }
        Some((live, sessions))
    }

    fn nodes_key(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// Reports this node (`node`) and its session count every
    /// [`PRESENCE_INTERVAL`], for the cluster view in `/health`.
    pub fn report_presence(&self, node: String, router: Addr<NotifyServer>) {
        let mut con = self.commands.clone();
        let key = self.nodes_key();
        actix_web::rt::spawn(async move {
            loop {
                if let Ok(counts) = router.send(GetCounts).await {
                    let report = format!("{} {}", unix_millis(), counts.sessions);
                    let _: Result<(), _> = redis::cmd("HSET")
                        .arg(&key)
                        .arg(&node)
                        .arg(report)
                        .query_async(&mut con)
                        .await;
                }
                actix_web::rt::time::sleep(PRESENCE_INTERVAL).await;
            }
        });
    }

    /// Whether this node currently receives the cluster's messages.
    pub fn is_subscribed(&self) -> bool {
        self.subscribed.load(Ordering::Relaxed)
    }

    /// Receives every announced message and hands it to `router`, for as
    /// long as the process runs; reconnects with backoff when Redis goes
    /// away, logging each change of state once.
    pub fn subscribe(&self, router: Addr<NotifyServer>) {
        let client = self.client.clone();
        let channel = self.channel();
        let subscribed = self.subscribed.clone();
        let seen = self.seen.clone();
        actix_web::rt::spawn(async move {
            let mut delay = Duration::from_millis(100);
            let mut was_up = true;
            loop {
                match client.get_async_pubsub().await {
                    Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                        Ok(()) => {
                            subscribed.store(true, Ordering::Relaxed);
                            log::info!("broker: subscribed to {channel}");
                            was_up = true;
                            delay = Duration::from_millis(100);
                            let mut messages = pubsub.on_message();
                            while let Some(msg) = messages.next().await {
                                match decode(msg.get_payload_bytes()) {
                                    Some(fanout) => {
                                        seen.fetch_max(fanout.seq, Ordering::Relaxed);
                                        router.do_send(fanout)
                                    }
                                    None => log::warn!("broker: ignored a malformed message"),
                                }
                            }
                            subscribed.store(false, Ordering::Relaxed);
                            log::warn!("broker: lost the Redis subscription; reconnecting");
                        }
                        Err(e) => note_down(&mut was_up, &e),
                    },
                    Err(e) => note_down(&mut was_up, &e),
                }
                actix_web::rt::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        });
    }
}

/// How often a node reports itself, and how long a report counts.
const PRESENCE_INTERVAL: Duration = Duration::from_secs(2);
const PRESENCE_TTL: Duration = Duration::from_secs(6);

fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn note_down(was_up: &mut bool, error: &redis::RedisError) {
    if *was_up {
        log::warn!("broker: Redis unavailable ({error}); retrying with backoff");
        *was_up = false;
    }
}

/// A stream's name in Redis keys and announcements.
fn encode_key(key: &StreamKey) -> String {
    match key {
        StreamKey::Broadcast => "b".into(),
        StreamKey::Id(id) => format!("i:{id}"),
        StreamKey::Channel(channel) => format!("c:{channel}"),
    }
}

/// Reads an announcement: `<stream>\n<seq>\n<frame>`.
fn decode(payload: &[u8]) -> Option<Fanout> {
    let text = std::str::from_utf8(payload).ok()?;
    let (name, rest) = text.split_once('\n')?;
    let (seq, frame) = rest.split_once('\n')?;
    let key = match name.split_once(':') {
        None if name == "b" => StreamKey::Broadcast,
        Some(("i", id)) => StreamKey::Id(ClientId::parse(id).ok()?),
        Some(("c", channel)) => StreamKey::Channel(ChannelName::parse(channel).ok()?),
        _ => return None,
    };
    Some(Fanout {
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
