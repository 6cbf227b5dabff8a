//! The Redis broker: atomic numbering, bounded history in Redis Streams,
//! fan-out between nodes over pub/sub.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use actix::Recipient;
use bytestring::ByteString;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{Announced, Broker, BrokerConfig, BrokerError, BrokerKind, ClusterCounts};
use super::{Frames, Publishing, Replaying};
use crate::history::StreamKey;
use crate::hub::messages::{Fanout, GetPresence};
use crate::ids::{ChannelName, ClientId};
use crate::protocol::PendingFrame;
use crate::replay::{ReplayBudget, REPLAY_ENTRY_OVERHEAD_BYTES};

/// Numbers, keeps and announces one message, atomically, so `seq` order is
/// publish order on every node. KEYS: counter, stream, channel. ARGV: the
/// frame's fields after `seq`, the history bound, the stream's name, and
/// the highest seq this node has seen: if Redis lost its data, the counter
/// continues after it instead of starting again at 1 (clients skip seqs
/// they believe they have).
///
/// The stream keeps exactly `history_size` entries. Older ones go by
/// `XDEL`, not `XTRIM`: only `XDEL` records the newest removed id in the
/// stream's `max-deleted-entry-id`, which is how a resume learns that a
/// message after its position is gone.
const PUBLISH_SCRIPT: &str = r#"
local seq = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[4])
if seq <= floor then
  seq = floor + 1
  redis.call('SET', KEYS[1], seq)
end
local frame = '{"type":"message","seq":' .. seq .. ',' .. ARGV[1]
local size = tonumber(ARGV[2])
if size > 0 then
  redis.call('XADD', KEYS[2], seq .. '-0', 'f', frame)
  local over = redis.call('XLEN', KEYS[2]) - size
  if over > 0 then
    for _, entry in ipairs(redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', over)) do
      redis.call('XDEL', KEYS[2], entry[1])
    end
  end
end
local nodes = redis.call('PUBLISH', KEYS[3], ARGV[3] .. '\n' .. seq .. '\n' .. frame)
return {seq, nodes}
"#;

/// Reads a resume's replay, atomically and within its budget. KEYS: the
/// epoch, the counter, then each stream. ARGV: the epoch the position is from, `since`,
/// the first entry id to read (`<since + 1>-0`, formatted by herald: Lua
/// would write large numbers in exponent form), `max_replay_bytes`, the
/// bytes counted per message besides its frame, and the page size of each
/// `XRANGE`.
///
/// Answers `{outcome, a, b, entries}`: `{"ok", 0, 0, {{id, frame}, …}}`;
/// `{"epoch", 0, 0, {}}` when the epoch changed; `{"ahead", latest, 0, {}}`
/// when `since` is past the latest seq; `{"dropped", i, up_to, {}}` when
/// stream `i` (1-based, in KEYS after the counter) dropped messages after
/// `since`; `{"over", 0, 0, {}}` as soon as the frames read would
/// exceed the budget. Redis reads the streams a page at a time and sends
/// nothing of a replay over the budget, so a resume never costs herald (or
/// the network) more than `max_replay_bytes`.
const REPLAY_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {'epoch', 0, 0, {}}
end
local since = tonumber(ARGV[2])
local first = ARGV[3]
local budget = tonumber(ARGV[4])
local overhead = tonumber(ARGV[5])
local page = tonumber(ARGV[6])
local latest = tonumber(redis.call('GET', KEYS[2]) or '0')
if since > latest then
  return {'ahead', latest, 0, {}}
end
local used = 0
local found = {}
for i = 3, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local info = redis.call('XINFO', 'STREAM', KEYS[i])
    for j = 1, #info - 1, 2 do
      if info[j] == 'max-deleted-entry-id' then
        local dropped = tonumber(string.match(info[j + 1], '^(%d+)')) or 0
        if dropped > since then
          return {'dropped', i - 2, dropped, {}}
        end
      end
    end
    local start = first
    while true do
      local entries = redis.call('XRANGE', KEYS[i], start, '+', 'COUNT', page)
      for _, entry in ipairs(entries) do
        local fields = entry[2]
        for k = 1, #fields - 1, 2 do
          if fields[k] == 'f' then
            used = used + #fields[k + 1] + overhead
            if used > budget then
              return {'over', 0, 0, {}}
            end
            found[#found + 1] = {entry[1], fields[k + 1]}
          end
        end
      end
      if #entries < page then
        break
      end
      start = '(' .. entries[#entries][1]
    end
  end
end
return {'ok', 0, 0, found}
"#;

/// Entries each `XRANGE` of [`REPLAY_SCRIPT`] reads.
const REPLAY_PAGE_ENTRIES: usize = 100;

/// What [`REPLAY_SCRIPT`] answers.
type ReplayReply = (String, u64, u64, Vec<(String, Vec<u8>)>);

pub struct RedisBroker {
    client: redis::Client,
    commands: ConnectionManager,
    /// Shared with the publishes in flight.
    publish: Arc<redis::Script>,
    /// Shared with the replays being read.
    replay: Arc<redis::Script>,
    prefix: String,
    history_size: usize,
    /// `max_replay_bytes`: most one resume may read.
    max_replay_bytes: usize,
    /// The cluster's epoch, read from Redis at connect.
    epoch: Arc<str>,
    /// This node's name in presence reports.
    node: String,
    /// Whether the node's subscription is up, for `/health`.
    subscribed: Arc<AtomicBool>,
    /// The highest seq this node has published or received.
    seen: Arc<AtomicU64>,
}

impl RedisBroker {
    /// Connects and joins the cluster's epoch (`candidate` if this is the
    /// first node); fails if Redis cannot be reached now. Streams keep
    /// `history_size` messages; a resume reads at most `max_replay_bytes`.
    pub async fn connect(
        config: &BrokerConfig,
        history_size: usize,
        max_replay_bytes: usize,
        candidate: &str,
    ) -> Result<Self, BrokerError> {
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
        let epoch = join_epoch(&commands, &config.prefix, candidate).await?;
        Ok(Self {
            client,
            commands,
            publish: Arc::new(redis::Script::new(PUBLISH_SCRIPT)),
            replay: Arc::new(redis::Script::new(REPLAY_SCRIPT)),
            prefix: config.prefix.clone(),
            history_size,
            max_replay_bytes,
            epoch: epoch.into(),
            node: format!("{:016x}", rand::random::<u64>()),
            subscribed: Arc::new(AtomicBool::new(false)),
            seen: Arc::new(AtomicU64::new(0)),
        })
    }

    fn channel(&self) -> String {
        format!("{}:messages", self.prefix)
    }

    fn nodes_key(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// Receives every announced message and hands it to `fanout`, for as
    /// long as the process runs; reconnects with backoff when Redis goes
    /// away, logging each change of state once.
    fn subscribe(&self, fanout: Recipient<Fanout>) {
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
                                    Some(message) => {
                                        seen.fetch_max(message.seq, Ordering::Relaxed);
                                        fanout.do_send(message)
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

    /// Reports this node every [`PRESENCE_INTERVAL`]: its session count in
    /// the nodes hash, and its ids in a HyperLogLog of its own, rewritten
    /// when they changed and expiring with the node.
    fn report_presence(&self, presence: Recipient<GetPresence>) {
        let mut con = self.commands.clone();
        let nodes_key = self.nodes_key();
        let ids_key = format!("{}:ids:{}", self.prefix, self.node);
        let node = self.node.clone();
        actix_web::rt::spawn(async move {
            let mut known = None;
            loop {
                if let Ok(report) = presence.send(GetPresence { known }).await {
                    let mut pipe = redis::pipe();
                    pipe.atomic();
                    pipe.hset(
                        &nodes_key,
                        &node,
                        format!("{} {}", unix_millis(), report.sessions),
                    );
                    if let Some(ids) = &report.ids {
                        pipe.del(&ids_key);
                        // PFADD with no element still creates the key.
                        pipe.cmd("PFADD").arg(&ids_key);
                        for chunk in ids.chunks(1000) {
                            let names: Vec<&str> = chunk.iter().map(|id| id.as_str()).collect();
                            pipe.cmd("PFADD").arg(&ids_key).arg(names);
                        }
                    }
                    pipe.pexpire(&ids_key, PRESENCE_TTL.as_millis() as i64);
                    let replies: Result<Vec<redis::Value>, _> = pipe.query_async(&mut con).await;
                    // The ids are rewritten on the next report if this one
                    // failed or found them gone (Redis restarted empty).
                    known = match replies.as_deref() {
                        Ok([.., redis::Value::Int(1)]) => Some(report.generation),
                        _ => None,
                    };
                }
                actix_web::rt::time::sleep(PRESENCE_INTERVAL).await;
            }
        });
    }
}

impl Broker for RedisBroker {
    fn kind(&self) -> BrokerKind {
        BrokerKind::Redis
    }

    fn epoch(&self) -> Arc<str> {
        self.epoch.clone()
    }

    fn publish(&self, key: StreamKey, frame: &PendingFrame) -> Publishing {
        let name = encode_key(&key);
        let counter = format!("{}:seq", self.prefix);
        let stream = format!("{}:stream:{name}", self.prefix);
        let channel = self.channel();
        let fields = frame.fields().to_owned();
        let history_size = self.history_size;
        let floor = self.seen.load(Ordering::Relaxed);
        let script = self.publish.clone();
        let mut con = self.commands.clone();
        let seen = self.seen.clone();
        Publishing::Sent(Box::pin(async move {
            let (seq, nodes): (u64, u64) = script
                .key(counter)
                .key(stream)
                .key(channel)
                .arg(fields)
                .arg(history_size)
                .arg(name)
                .arg(floor)
                .invoke_async(&mut con)
                .await
                .map_err(unavailable)?;
            seen.fetch_max(seq, Ordering::Relaxed);
            Ok(Announced { seq, nodes })
        }))
    }

    /// Fetches everything kept after `since` (a stream's `has_from` cannot
    /// bound it: live messages may still be on their way), in one script,
    /// or fails when the cluster's epoch changed (Redis lost its data), a
    /// stream dropped a message after `since`, the messages need more than
    /// `max_replay_bytes` (Redis then sends none of them), or Redis is
    /// unreachable.
    fn replay(&self, streams: &[(StreamKey, u64)], since: u64) -> Replaying {
        let mut con = self.commands.clone();
        let script = self.replay.clone();
        let prefix = &self.prefix;
        let mut names = vec![format!("{prefix}:epoch"), format!("{prefix}:seq")];
        names.extend(
            streams
                .iter()
                .map(|(key, _)| format!("{prefix}:stream:{}", encode_key(key))),
        );
        let epoch = self.epoch.clone();
        let max_replay_bytes = self.max_replay_bytes;
        let keys: Vec<StreamKey> = streams.iter().map(|(key, _)| key.clone()).collect();
        let budget = ReplayBudget::new(max_replay_bytes, since);
        Replaying::Fetching(Box::pin(async move {
            let mut invocation = script.prepare_invoke();
            for name in &names {
                invocation.key(name);
            }
            let reply: ReplayReply = invocation
                .arg(&*epoch)
                .arg(since)
                .arg(format!("{}-0", since.saturating_add(1)))
                .arg(max_replay_bytes)
                .arg(REPLAY_ENTRY_OVERHEAD_BYTES)
                .arg(REPLAY_PAGE_ENTRIES)
                .invoke_async(&mut con)
                .await
                .map_err(|e| format!("the message broker is unavailable: {e}"))?;
            match reply {
                (outcome, _, _, entries) if outcome == "ok" => {
                    let mut found: Frames = entries
                        .into_iter()
                        .filter_map(|(id, frame)| {
                            let seq = id.split('-').next()?.parse::<u64>().ok()?;
                            let text = String::from_utf8(frame).ok()?;
                            Some((seq, ByteString::from(text)))
                        })
                        .collect();
                    found.sort_unstable_by_key(|(seq, _)| *seq);
                    Ok(found)
                }
                (outcome, ..) if outcome == "epoch" => {
                    Err("the broker's history started afresh (epoch changed)".into())
                }
                (outcome, latest, ..) if outcome == "ahead" => Err(format!(
                    "position {since} is ahead of this cluster ({latest})"
                )),
                (outcome, stream, dropped_up_to, _) if outcome == "dropped" => {
                    let key = usize::try_from(stream)
                        .ok()
                        .and_then(|i| keys.get(i.checked_sub(1)?))
                        .map_or_else(|| "a stream".to_owned(), ToString::to_string);
                    Err(format!(
                        "history of {key} dropped messages after seq {since} (up to {dropped_up_to})"
                    ))
                }
                (outcome, ..) if outcome == "over" => Err(budget.exceeded().to_string()),
                (outcome, ..) => Err(format!(
                    "the message broker answered a replay with {outcome:?}"
                )),
            }
        }))
    }

    fn start(&self, fanout: Recipient<Fanout>, presence: Recipient<GetPresence>) {
        self.subscribe(fanout);
        self.report_presence(presence);
    }

    fn connected(&self) -> Option<bool> {
        Some(self.subscribed.load(Ordering::Relaxed))
    }

    /// The nodes that reported in the last [`PRESENCE_TTL`], their sessions
    /// in all, and the union of their ids.
    fn cluster(&self) -> Option<BoxFuture<'static, Option<ClusterCounts>>> {
        let mut con = self.commands.clone();
        let nodes_key = self.nodes_key();
        let prefix = self.prefix.clone();
        Some(Box::pin(async move {
            let nodes: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
                .arg(&nodes_key)
                .query_async(&mut con)
                .await
                .ok()?;
            let now = unix_millis();
            let mut live = Vec::new();
            let mut sessions = 0;
            for (node, report) in nodes {
                let mut parts = report.split(' ');
                let at: u64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
                if now.saturating_sub(at) > PRESENCE_TTL.as_millis() as u64 {
                    // Gone: forget it (another reader may race us; harmless).
                    let _: Result<(), _> = redis::cmd("HDEL")
                        .arg(&nodes_key)
                        .arg(&node)
                        .query_async(&mut con)
                        .await;
                    continue;
                }
                sessions += parts
                    .next()
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                live.push(format!("{prefix}:ids:{node}"));
            }
            let ids: usize = if live.is_empty() {
                0
            } else {
                redis::cmd("PFCOUNT")
                    .arg(&live)
                    .query_async(&mut con)
                    .await
                    .ok()?
            };
            Some(ClusterCounts {
                nodes: live.len(),
                sessions,
                ids,
            })
        }))
    }
}

/// The cluster's epoch: set by the first node, read by the others. A Redis
/// that lost its data loses it too, so positions from before are not taken
/// for new ones.
async fn join_epoch(
    commands: &ConnectionManager,
    prefix: &str,
    candidate: &str,
) -> Result<String, BrokerError> {
    let key = format!("{prefix}:epoch");
    let mut con = commands.clone();
    let _: Option<String> = redis::cmd("SET")
        .arg(&key)
        .arg(candidate)
        .arg("NX")
        .query_async(&mut con)
        .await
        .map_err(unavailable)?;
    redis::cmd("GET")
        .arg(&key)
        .query_async(&mut con)
        .await
        .map_err(unavailable)
}

fn unavailable(e: redis::RedisError) -> BrokerError {
    BrokerError::Unavailable(e.to_string())
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
