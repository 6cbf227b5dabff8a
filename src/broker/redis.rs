//! The Redis broker: atomic numbering, bounded history in Redis Streams,
//! fan-out between nodes over pub/sub.
//!
//! Redis memory is bounded by time as well as by `history_size`: a stream
//! not published to for [`Expiry::keep_ms`] (`history_ttl_secs` and one
//! [`CLOCK_BUCKETS`]th more) is removed by Redis itself, its `PEXPIRE`
//! refreshed by each publish in the publish script. Like a stream the
//! memory history forgets, it leaves one mark for all: *expired*, the newest
//! seq that may be gone. It comes from the clock (`<prefix>:clock`), a
//! sorted set of at most `CLOCK_BUCKETS + 2` buckets of
//! [`Expiry::bucket_ms`]: score, the bucket's start in Redis's time (ms);
//! member, the newest seq published in it. At any moment `now`, the newest
//! member of a bucket that started by `now - keep_ms` is *expired*: every
//! message up to it was published more than `history_ttl_secs` ago (its
//! bucket ended by then), and every stream Redis removed held only messages
//! up to it (its last publish was at least `keep_ms` ago). The next publish
//! folds such buckets into `<prefix>:expired`. Clock and mark expire
//! `keep_ms` after the last publish, as the last stream does; without them
//! every seq up to the counter is expired.
//!
//! A resume from `since < expired` is a gap, answered with `reset` as the
//! memory history would: when one of its streams is gone, or when its first
//! message after `since` is at or below *expired* (older than the TTL). A
//! stream published to again after it expired starts with *expired* as its
//! `max-deleted-entry-id`, so a position from before still reads as a gap.
//! The per-node keys expire too (the ids' HyperLogLog, and the nodes hash
//! [`PRESENCE_TTL`] after the last report); only the cluster's epoch and
//! counter, two small keys, live as long as the cluster.
//!
//! A node *joins* the cluster ([`JOIN_SCRIPT`]) when it starts, each time
//! its subscription comes back, and when a resume finds the cluster's
//! epoch is not the one it was given: it takes the cluster's epoch (setting
//! a fresh one if Redis lost its data) and reads the counter, so that the
//! positions it hands out are the cluster's, not those of a node that has
//! seen nothing yet. A resume that cannot be answered carries the newest
//! position read with the refusal ([`Refused::newest`]): resuming from it
//! has nothing to replay.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use bytestring::ByteString;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::redis_client;
use super::{Announced, Broker, BrokerError, BrokerEvents, ClusterCounts};
use super::{Frames, Publication, Publishing, Refused, Replaying};
use crate::config::{BrokerConfig, BrokerKind};
use crate::history::StreamKey;
use crate::ids::{ChannelName, ClientId};
use crate::protocol::{PendingFrame, Position};
use crate::replay::{ReplayBudget, REPLAY_ENTRY_OVERHEAD_BYTES};

/// Joins the cluster: takes its epoch, or sets `candidate` when it has none
/// (the first node, or Redis lost its data), and reads its counter, first
/// raised to the highest seq this node has seen (after a loss of data,
/// numbering goes on after what clients were given). KEYS: epoch, counter.
/// ARGV: candidate, floor. Answers `{epoch, counter}`.
const JOIN_SCRIPT: &str = r#"
redis.call('SET', KEYS[1], ARGV[1], 'NX')
local seq = tonumber(redis.call('GET', KEYS[2]) or '0')
if seq < tonumber(ARGV[2]) then
  redis.call('SET', KEYS[2], ARGV[2])
  seq = tonumber(ARGV[2])
end
return {redis.call('GET', KEYS[1]), seq}
"#;

/// Numbers, keeps and announces one message, atomically, so `seq` order is
/// publish order on every node. KEYS: counter, stream, channel, clock,
/// expired mark (see the module's header). ARGV: the frame's fields after
/// `seq`, the history bound, the stream's name, the highest seq this node
/// has seen (if Redis lost its data, the counter continues after it instead
/// of starting again at 1: clients skip seqs they believe they have), then
/// [`Expiry::keep_ms`] and [`Expiry::bucket_ms`].
///
/// The stream keeps exactly `history_size` entries. Older ones go by
/// `XDEL`, not `XTRIM`: only `XDEL` records the newest removed id in the
/// stream's `max-deleted-entry-id`, which is how a resume learns that a
/// message after its position is gone. A stream created anew gets the
/// expired mark as its `max-deleted-entry-id` (`XSETID`): it may be one
/// that expired.
const PUBLISH_SCRIPT: &str = r#"
local seq = redis.call('INCR', KEYS[1])
local floor = tonumber(ARGV[4])
if seq <= floor then
  seq = floor + 1
  redis.call('SET', KEYS[1], seq)
end
local frame = '{"type":"message","seq":' .. seq .. ',' .. ARGV[1]
local keep = tonumber(ARGV[5])
local width = tonumber(ARGV[6])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local expired
if redis.call('EXISTS', KEYS[4]) == 0 then
  expired = seq - 1
else
  expired = tonumber(redis.call('GET', KEYS[5]) or '0')
  local old = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now - keep)
  if #old > 0 then
    for _, member in ipairs(old) do
      expired = math.max(expired, tonumber(member))
    end
    redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - keep)
  end
end
local last = redis.call('ZRANGE', KEYS[4], -1, -1, 'WITHSCORES')
if #last == 2 and tonumber(last[2]) > now - width then
  redis.call('ZREM', KEYS[4], last[1])
  redis.call('ZADD', KEYS[4], last[2], seq)
else
  redis.call('ZADD', KEYS[4], now, seq)
end
redis.call('PEXPIRE', KEYS[4], keep)
redis.call('SET', KEYS[5], expired, 'PX', keep)
local size = tonumber(ARGV[2])
if size > 0 then
  local fresh = redis.call('EXISTS', KEYS[2]) == 0
  redis.call('XADD', KEYS[2], seq .. '-0', 'f', frame)
  if fresh and expired > 0 and expired < seq then
    redis.call('XSETID', KEYS[2], seq .. '-0', 'MAXDELETEDID', expired .. '-0')
  end
  local over = redis.call('XLEN', KEYS[2]) - size
  if over > 0 then
    for _, entry in ipairs(redis.call('XRANGE', KEYS[2], '-', '+', 'COUNT', over)) do
      redis.call('XDEL', KEYS[2], entry[1])
    end
  end
  redis.call('PEXPIRE', KEYS[2], keep)
end
local nodes = redis.call('PUBLISH', KEYS[3], ARGV[3] .. '\n' .. seq .. '\n' .. frame)
return {seq, nodes}
"#;

/// Reads a resume's replay, atomically and within its budget. KEYS: the
/// epoch, the counter, the clock, the expired mark (see the module's
/// header), then each stream. ARGV: the epoch the position is from,
/// `since`, the first entry id to read (`<since + 1>-0`, formatted by
/// herald: Lua would write large numbers in exponent form),
/// `max_replay_bytes`, the bytes counted per message besides its frame, the
/// page size of each `XRANGE`, and [`Expiry::keep_ms`].
///
/// Answers `{outcome, a, b, latest, entries}`, `latest` being the counter:
/// `{"ok", 0, 0, latest, {{id, frame}, …}}`; `{"epoch", 0, 0, 0, {}}` when
/// the position's epoch is not the cluster's; `{"ahead", 0, 0, latest, {}}`
/// when `since` is past the latest seq; `{"dropped", i, up_to, latest, {}}`
/// when stream `i` (1-based, in KEYS after the expired mark) dropped
/// messages after `since`, by count or by age; `{"forgotten", i, expired,
/// latest, {}}` when stream `i` is gone from Redis and may have held
/// messages after `since`; `{"over", 0, 0, latest, {}}` as soon as the
/// frames read would exceed the budget.
/// Redis reads the streams a page at a time and sends nothing of a replay
/// over the budget, so a resume never costs herald (or the network) more
/// than `max_replay_bytes`.
const REPLAY_SCRIPT: &str = r#"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then
  return {'epoch', 0, 0, 0, {}}
end
local since = tonumber(ARGV[2])
local first = ARGV[3]
local budget = tonumber(ARGV[4])
local overhead = tonumber(ARGV[5])
local page = tonumber(ARGV[6])
local keep = tonumber(ARGV[7])
local latest = tonumber(redis.call('GET', KEYS[2]) or '0')
if since > latest then
  return {'ahead', 0, 0, latest, {}}
end
local expired = latest
if redis.call('EXISTS', KEYS[3]) == 1 then
  local time = redis.call('TIME')
  local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
  expired = tonumber(redis.call('GET', KEYS[4]) or '0')
  for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now - keep)) do
    expired = math.max(expired, tonumber(member))
  end
end
local used = 0
local found = {}
for i = 5, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then
    local info = redis.call('XINFO', 'STREAM', KEYS[i])
    for j = 1, #info - 1, 2 do
      if info[j] == 'max-deleted-entry-id' then
        local dropped = tonumber(string.match(info[j + 1], '^(%d+)')) or 0
        if dropped > since then
          return {'dropped', i - 4, dropped, latest, {}}
        end
      end
    end
    if expired > since then
      local oldest = redis.call('XRANGE', KEYS[i], first, '+', 'COUNT', 1)
      if #oldest > 0 and tonumber(string.match(oldest[1][1], '^(%d+)')) <= expired then
        return {'dropped', i - 4, expired, latest, {}}
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
              return {'over', 0, 0, latest, {}}
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
  elseif expired > since then
    return {'forgotten', i - 4, expired, latest, {}}
  end
end
return {'ok', 0, 0, latest, found}
"#;

/// Entries each `XRANGE` of [`REPLAY_SCRIPT`] reads.
const REPLAY_PAGE_ENTRIES: usize = 100;

/// Buckets of the clock per `history_ttl_secs`: how finely it tells when a
/// message expired (a sixteenth of the TTL) against how many entries it
/// holds (at most this many plus two).
const CLOCK_BUCKETS: u64 = 16;

/// How long Redis keeps what herald writes, from `history_ttl_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Expiry {
    /// A bucket of the clock, in ms: `history_ttl_secs / CLOCK_BUCKETS`,
    /// at least 1.
    bucket_ms: u64,
    /// How long a stream, the clock and the expired mark live after the
    /// last publish to them: `history_ttl_secs` plus one bucket, so that a
    /// message is never taken for expired before it is `history_ttl_secs`
    /// old, and is after at most `keep_ms`.
    keep_ms: u64,
}

/// The longest TTL Redis is given: ten years. Lua writes numbers past
/// 10^14 in exponent form, which Redis would refuse as a duration.
const MAX_TTL_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

impl Expiry {
    fn new(ttl: Duration) -> Self {
        let ttl_ms = u64::try_from(ttl.as_millis())
            .unwrap_or(MAX_TTL_MS)
            .min(MAX_TTL_MS);
        let bucket_ms = (ttl_ms / CLOCK_BUCKETS).max(1);
        Self {
            bucket_ms,
            keep_ms: ttl_ms.saturating_add(bucket_ms),
        }
    }
}

/// What [`REPLAY_SCRIPT`] answers.
type ReplayReply = (String, u64, u64, u64, Vec<(String, Vec<u8>)>);

pub struct RedisBroker {
    client: redis::Client,
    commands: ConnectionManager,
    /// Shared with the publishes in flight.
    publish: Arc<redis::Script>,
    /// Shared with the replays being read.
    replay: Arc<redis::Script>,
    prefix: String,
    history_size: usize,
    /// From `history_ttl_secs`.
    expiry: Expiry,
    /// `max_replay_bytes`: most one resume may read.
    max_replay_bytes: usize,
    /// The cluster's epoch and counter as this node knows them.
    standing: Arc<Standing>,
    /// This node's name in presence reports.
    node: String,
    /// Whether the node's subscription is up, for `/health` and `/ready`;
    /// while it is not, a publish is refused at once.
    subscribed: Arc<AtomicBool>,
}

/// The longest a publish waits for Redis: after it, the publisher is told
/// 503 with the outcome unknown (the script may have run), and herald
/// sends nothing more for it. Without this the connection manager's
/// reconnection attempts could hold a publish for several seconds, and
/// send it once Redis came back, long after the publisher gave up.
/// Shorter than the connection's response timeout (2 s), so that a publish
/// Redis took but did not answer always ends here, as `TimedOut`.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);

/// Where this node stands in the cluster: its epoch and the counter as last
/// read. Shared by the broker, its subscription and the replays being
/// read, any of which may join the cluster again ([`Standing::join`]).
struct Standing {
    prefix: String,
    join: redis::Script,
    /// The cluster's epoch as of the last join.
    epoch: RwLock<Arc<str>>,
    /// The cluster's counter as of the last join.
    numbered_before: AtomicU64,
    /// The highest seq this node has published, received or read.
    seen: AtomicU64,
}

impl Standing {
    fn epoch(&self) -> Arc<str> {
        // Nothing panics while the lock is held: a poisoned lock holds a
        // whole value.
        self.epoch
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Joins the cluster ([`JOIN_SCRIPT`]), proposing `candidate` as its
    /// epoch; returns and keeps the cluster's epoch and counter.
    async fn join(
        &self,
        con: &mut ConnectionManager,
        candidate: &str,
    ) -> Result<(Arc<str>, u64), redis::RedisError> {
        let floor = self.seen.load(Ordering::Relaxed);
        let (epoch, seq): (String, u64) = self
            .join
            .key(format!("{}:epoch", self.prefix))
            .key(format!("{}:seq", self.prefix))
            .arg(candidate)
            .arg(floor)
            .invoke_async(con)
            .await?;
        self.seen.fetch_max(seq, Ordering::Relaxed);
        self.numbered_before.fetch_max(seq, Ordering::Relaxed);
        let epoch: Arc<str> = epoch.into();
        let mut current = self.epoch.write().unwrap_or_else(PoisonError::into_inner);
        if *current != epoch {
            if !current.is_empty() {
                log::warn!(
                    "broker: the cluster's epoch changed from {current} to {epoch} \
                     (Redis lost its data); positions from before get reset"
                );
            }
            *current = epoch.clone();
        }
        Ok((epoch, seq))
    }
}

impl RedisBroker {
    /// Connects and joins the cluster's epoch (`candidate` if this is the
    /// first node); fails if Redis cannot be reached now. Streams keep
    /// `history_size` messages and expire after `history_ttl` without a
    /// publish (see the module's header); a resume reads at most
    /// `max_replay_bytes`.
    pub async fn connect(
        config: &BrokerConfig,
        history_size: usize,
        history_ttl: Duration,
        max_replay_bytes: usize,
        candidate: &str,
    ) -> Result<Self, BrokerError> {
        let client = redis_client::client(config).map_err(|e| {
            BrokerError::Unavailable(format!("invalid setting `{}`: {}", e.key, e.reason))
        })?;
        let tls = matches!(
            client.get_connection_info().addr(),
            redis::ConnectionAddr::TcpTls { .. }
        );
        if tls {
            log::info!(
                "broker: TLS to Redis, trusting {}",
                redis_client::trusted_roots(config)
            );
        }
        // Startup errors name the Redis (its password hidden).
        let at = |e: String| {
            BrokerError::Unavailable(format!(
                "{}: {e}",
                crate::config::redact_url_password(&config.url)
            ))
        };
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_max_delay(Duration::from_secs(5));
        // Reachable now, or a clear failure within seconds (the manager
        // itself would keep retrying); from here on the manager reconnects
        // by itself.
        let probe = client.get_multiplexed_async_connection();
        match tokio::time::timeout(Duration::from_secs(3), probe).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if tls => {
                return Err(at(format!("{e}{}", tls_hint(&e.to_string(), config))))
            }
            Ok(Err(e)) => return Err(at(e.to_string())),
            Err(_) => return Err(at("no answer within 3 s".into())),
        }
        let mut commands = ConnectionManager::new_lazy_with_config(client.clone(), manager)
            .map_err(|e| at(e.to_string()))?;
        let standing = Arc::new(Standing {
            prefix: config.prefix.clone(),
            join: redis::Script::new(JOIN_SCRIPT),
            epoch: RwLock::new("".into()),
            numbered_before: AtomicU64::new(0),
            seen: AtomicU64::new(0),
        });
        standing
            .join(&mut commands, candidate)
            .await
            .map_err(|e| at(e.to_string()))?;
        Ok(Self {
            client,
            commands,
            publish: Arc::new(redis::Script::new(PUBLISH_SCRIPT)),
            replay: Arc::new(redis::Script::new(REPLAY_SCRIPT)),
            prefix: config.prefix.clone(),
            history_size,
            expiry: Expiry::new(history_ttl),
            max_replay_bytes,
            standing,
            node: format!("{:016x}", rand::random::<u64>()),
            subscribed: Arc::new(AtomicBool::new(false)),
        })
    }

    fn channel(&self) -> String {
        format!("{}:messages", self.prefix)
    }

    fn nodes_key(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// The clock and the expired mark (see the module's header).
    fn expiry_keys(&self) -> (String, String) {
        (
            format!("{}:clock", self.prefix),
            format!("{}:expired", self.prefix),
        )
    }

    /// Receives every announced message and hands it to `events`, for as
    /// long as the process runs; reconnects with backoff when Redis goes
    /// away, logging each change of state once. Once subscribed, joins the
    /// cluster again (a Redis that came back empty gets an epoch, and the
    /// node's position is the counter, not what it had before the gap).
    fn subscribe(&self, events: Arc<dyn BrokerEvents>) {
        let client = self.client.clone();
        let mut commands = self.commands.clone();
        let channel = self.channel();
        let subscribed = self.subscribed.clone();
        let standing = self.standing.clone();
        tokio::task::spawn_local(async move {
            let mut delay = Duration::from_millis(100);
            let mut was_up = true;
            loop {
                match client.get_async_pubsub().await {
                    Ok(mut pubsub) => match pubsub.subscribe(&channel).await {
                        Ok(()) => {
                            let (epoch, seq) =
                                match standing.join(&mut commands, &super::new_epoch()).await {
                                    Ok(position) => position,
                                    Err(e) => {
                                        note_down(&mut was_up, &e);
                                        tokio::time::sleep(delay).await;
                                        delay = (delay * 2).min(Duration::from_secs(5));
                                        continue;
                                    }
                                };
                            subscribed.store(true, Ordering::Relaxed);
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
                            subscribed.store(false, Ordering::Relaxed);
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

    /// Reports this node every [`PRESENCE_INTERVAL`]: its session count in
    /// the nodes hash, and its ids in a HyperLogLog of its own, rewritten
    /// when they changed and expiring with the node.
    fn report_presence(&self, events: Arc<dyn BrokerEvents>) {
        let mut con = self.commands.clone();
        let nodes_key = self.nodes_key();
        let ids_key = format!("{}:ids:{}", self.prefix, self.node);
        let node = self.node.clone();
        tokio::task::spawn_local(async move {
            let mut known = None;
            loop {
                if let Some(report) = events.presence(known).await {
                    let mut pipe = redis::pipe();
                    pipe.atomic();
                    pipe.hset(
                        &nodes_key,
                        &node,
                        format!("{} {}", unix_millis(), report.sessions),
                    );
                    // Gone with the last node (`cluster` drops stale fields).
                    pipe.pexpire(&nodes_key, PRESENCE_TTL.as_millis() as i64);
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
                tokio::time::sleep(PRESENCE_INTERVAL).await;
            }
        });
    }
}

impl Broker for RedisBroker {
    fn kind(&self) -> BrokerKind {
        BrokerKind::Redis
    }

    fn epoch(&self) -> Arc<str> {
        self.standing.epoch()
    }

    fn numbered_before(&self) -> u64 {
        self.standing.numbered_before.load(Ordering::Relaxed)
    }

    /// Refused at once, without sending anything, while the node's
    /// subscription is down (Redis is known to be unreachable); otherwise
    /// waits at most [`PUBLISH_TIMEOUT`].
    fn publish(&self, key: StreamKey, frame: &PendingFrame) -> Publishing {
        if !self.subscribed.load(Ordering::Relaxed) {
            return Publishing::Sent(Box::pin(std::future::ready(Err(BrokerError::Unavailable(
                "this node is not connected to Redis".into(),
            )))));
        }
        let name = encode_key(&key);
        let counter = format!("{}:seq", self.prefix);
        let stream = format!("{}:stream:{name}", self.prefix);
        let channel = self.channel();
        let (clock, expired) = self.expiry_keys();
        let expiry = self.expiry;
        let fields = frame.fields().to_owned();
        let history_size = self.history_size;
        let floor = self.standing.seen.load(Ordering::Relaxed);
        let script = self.publish.clone();
        let mut con = self.commands.clone();
        let standing = self.standing.clone();
        Publishing::Sent(Box::pin(async move {
            let mut invocation = script.prepare_invoke();
            invocation
                .key(counter)
                .key(stream)
                .key(channel)
                .key(clock)
                .key(expired)
                .arg(fields)
                .arg(history_size)
                .arg(name)
                .arg(floor)
                .arg(expiry.keep_ms)
                .arg(expiry.bucket_ms);
            // Dropped on time out: not sent later if it was not sent yet.
            let answer = tokio::time::timeout(
                PUBLISH_TIMEOUT,
                invocation.invoke_async::<(u64, u64)>(&mut con),
            )
            .await;
            let (seq, nodes) = answer
                .map_err(|_| BrokerError::TimedOut {
                    secs: PUBLISH_TIMEOUT.as_secs(),
                })?
                .map_err(|e| {
                    // The connection's own response timeout: sent, unanswered.
                    if e.is_timeout() {
                        BrokerError::TimedOut {
                            secs: PUBLISH_TIMEOUT.as_secs(),
                        }
                    } else {
                        unavailable(e)
                    }
                })?;
            standing.seen.fetch_max(seq, Ordering::Relaxed);
            Ok(Announced { seq, nodes })
        }))
    }

    /// Fetches everything kept after `from` (a stream's `has_from` cannot
    /// bound it: live messages may still be on their way), in one script,
    /// or refuses when `from` is not of the cluster's epoch (Redis lost its
    /// data, or it is from elsewhere), a stream dropped a message after it,
    /// the messages need more than `max_replay_bytes` (Redis then sends none
    /// of them), or Redis is unreachable. A refusal carries the cluster's
    /// newest position, read in the same script; when the epoch differed,
    /// the node joins the cluster again first, which gives Redis an epoch
    /// if it lost its own.
    fn replay(&self, streams: &[(StreamKey, u64)], from: &Position) -> Replaying {
        let mut con = self.commands.clone();
        let script = self.replay.clone();
        let prefix = &self.prefix;
        let (clock, expired) = self.expiry_keys();
        let mut names = vec![
            format!("{prefix}:epoch"),
            format!("{prefix}:seq"),
            clock,
            expired,
        ];
        names.extend(
            streams
                .iter()
                .map(|(key, _)| format!("{prefix}:stream:{}", encode_key(key))),
        );
        let since = from.since;
        let epoch: Arc<str> = from.epoch.as_str().into();
        let standing = self.standing.clone();
        let max_replay_bytes = self.max_replay_bytes;
        let keep_ms = self.expiry.keep_ms;
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
                .arg(keep_ms)
                .invoke_async(&mut con)
                .await
                .map_err(|e| Refused::because(format!("the message broker is unavailable: {e}")))?;
            let (outcome, a, b, latest, entries) = reply;
            if outcome == "epoch" {
                let reason = "the broker's history started afresh (epoch changed)";
                return Err(match standing.join(&mut con, &super::new_epoch()).await {
                    Ok(newest) => Refused {
                        reason: reason.into(),
                        newest: Some(newest),
                    },
                    Err(_) => Refused::because(reason),
                });
            }
            // The position's epoch is the cluster's: if it is not this
            // node's, the node missed a change of epoch (Redis lost its data
            // while the node stayed connected), and takes it now.
            if epoch != standing.epoch() {
                let _ = standing.join(&mut con, &super::new_epoch()).await;
            }
            standing.seen.fetch_max(latest, Ordering::Relaxed);
            let refused = |reason: String| Refused {
                reason,
                newest: Some((epoch.clone(), latest)),
            };
            match outcome.as_str() {
                "ok" => {
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
                "ahead" => Err(refused(format!(
                    "position {since} is ahead of this cluster ({latest})"
                ))),
                "dropped" => {
                    let key = stream_named(&keys, a);
                    Err(refused(format!(
                        "history of {key} dropped messages after seq {since} (up to {b})"
                    )))
                }
                "forgotten" => {
                    let key = stream_named(&keys, a);
                    Err(refused(format!(
                        "history no longer covers {key} after seq {since}"
                    )))
                }
                "over" => Err(refused(budget.exceeded().to_string())),
                other => Err(refused(format!(
                    "the message broker answered a replay with {other:?}"
                ))),
            }
        }))
    }

    fn start(&self, events: Arc<dyn BrokerEvents>) {
        self.subscribe(events.clone());
        self.report_presence(events);
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

/// The stream a replay script's answer names, 1-based in `keys`.
fn stream_named(keys: &[StreamKey], index: u64) -> String {
    usize::try_from(index)
        .ok()
        .and_then(|i| keys.get(i.checked_sub(1)?))
        .map_or_else(|| "a stream".to_owned(), ToString::to_string)
}

/// What to check when a TLS connection failed with `error` (as rustls
/// words it), for the two failures a setting can fix; empty otherwise.
fn tls_hint(error: &str, config: &BrokerConfig) -> String {
    if error.contains("CaUsedAsEndEntity") {
        " (TLS: Redis presents a CA certificate as its own; give Redis a \
         certificate signed by that CA, or a self-signed one with \
         basicConstraints CA:FALSE)"
            .into()
    } else if error.contains("invalid peer certificate") {
        format!(
            " (TLS: Redis's certificate is not signed by {}, or does not name the host \
             of broker.url in its subjectAltName; a private CA goes in broker.ca_file)",
            redis_client::trusted_roots(config)
        )
    } else if error.contains("CertificateRequired")
        || error.contains("BadCertificate")
        || error.contains("UnknownCA")
    {
        " (TLS: Redis refused this node's client certificate, or requires one: \
         broker.client_cert_file and broker.client_key_file)"
            .into()
    } else {
        String::new()
    }
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
    fn expiry_follows_the_ttl_by_a_sixteenth_and_stays_a_plain_integer() {
        let e = Expiry::new(Duration::from_secs(300));
        assert_eq!((e.bucket_ms, e.keep_ms), (18_750, 318_750));
        let e = Expiry::new(Duration::ZERO);
        assert_eq!((e.bucket_ms, e.keep_ms), (1, 1));
        let e = Expiry::new(Duration::from_secs(u64::MAX));
        assert!(e.keep_ms < 100_000_000_000_000, "{e:?}");
    }

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
