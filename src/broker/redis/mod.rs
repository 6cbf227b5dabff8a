//! The Redis broker: atomic numbering, bounded history in Redis Streams,
//! fan-out between nodes over pub/sub.
//!
//! Redis memory is bounded by time as well as by `history_size`: a stream
//! not published to for [`Expiry::keep_ms`] (`history_ttl_secs` and one
//! [`CLOCK_BUCKETS`](expiry::CLOCK_BUCKETS)th more) is removed by Redis
//! itself, its `PEXPIRE` refreshed by each publish in the publish script. Like a stream the
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
//! [`PRESENCE_TTL`](presence::PRESENCE_TTL) after the last report), and
//! so does the node log (`catch_up.rs`); only the cluster's epoch, counter
//! and the epoch's base, three small keys, live as long as the cluster.
//!
//! A node *joins* the cluster ([`scripts::JOIN`]) when it starts, each time
//! its subscription comes back, and when a resume finds the cluster's
//! epoch is not the one it was given: it takes the cluster's epoch (setting
//! a fresh one if Redis lost its data) and reads the counter, so that the
//! positions it hands out are the cluster's, not those of a node that has
//! seen nothing yet. A resume that cannot be answered carries the newest
//! position read with the refusal ([`Refused::newest`](super::Refused::newest)): resuming from it
//! has nothing to replay.
//!
//! Files: `scripts.rs` the Lua scripts (`*.lua` beside it) and what each
//! takes and answers; `standing.rs` the node's standing in the cluster
//! (epoch, counter, join); `catch_up.rs` what a node reads after a gap in
//! its subscription; `publish.rs` and `replay.rs` a publish and a
//! resume; `announce.rs` the pub/sub announcements and the subscription;
//! `presence.rs` the presence reports and `/health`'s cluster counts;
//! `health.rs` whether the node can publish now, and why not; `probe.rs`
//! the PING that tells whether Redis answers at all; `expiry.rs` how long
//! Redis keeps what herald writes; `client.rs` the Redis client from
//! `[broker]`.
//!
//! Idempotency keys live in Redis, so that a retry on any node finds the
//! first publish: `<prefix>:idempotency:<scope>:<key>` holds its seq and
//! expires after `idempotency_window_secs`; the sorted set
//! `<prefix>:idempotency` indexes them by expiry and holds them to
//! `idempotency_max_keys`, forgetting the oldest first (see
//! [`scripts::PUBLISH`]).

mod announce;
mod catch_up;
mod client;
mod expiry;
mod health;
mod presence;
mod probe;
mod publish;
mod replay;
mod scripts;
mod standing;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use self::expiry::Expiry;
use self::health::Health;
use self::standing::Standing;
use super::{Broker, BrokerError, BrokerEvents, ClusterCounts, Remembering};
use super::{Publishing, Replaying};
use crate::config::{BrokerConfig, BrokerKind};
use crate::history::StreamKey;
use crate::idempotency::ScopedKey;
use crate::ids::Epoch;
use crate::protocol::{PendingFrame, Position};

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
    /// Whether the node can publish now, and why not, for `/health` and
    /// `/ready`; while its subscription is down, a publish is refused at
    /// once.
    health: Arc<Health>,
    /// `publish_timeout_ms`: the longest a publish waits for Redis, and
    /// the longest the probe waits for a PING's answer.
    publish_timeout: Duration,
    /// How idempotency keys are remembered.
    remembering: Remembering,
}

/// How much longer than a publish the connection waits for any answer
/// (its response timeout): a publish Redis took but did not answer always
/// ends at its own bound, as `TimedOut`, before the connection gives up.
const RESPONSE_TIMEOUT_MARGIN: Duration = Duration::from_secs(1);

impl RedisBroker {
    /// Connects and joins the cluster's epoch (`candidate` if this is the
    /// first node); fails if Redis cannot be reached now. Streams keep
    /// `history_size` messages and expire after `history_ttl` without a
    /// publish (see the module's header); a resume reads at most
    /// `max_replay_bytes`; idempotency keys are remembered as `remembering`
    /// says.
    pub async fn connect(
        config: &BrokerConfig,
        history_size: usize,
        history_ttl: Duration,
        max_replay_bytes: usize,
        candidate: &Epoch,
        remembering: Remembering,
    ) -> Result<Self, BrokerError> {
        let client = client::client(config).map_err(|e| {
            BrokerError::Unavailable(format!("invalid setting `{}`: {}", e.key, e.reason))
        })?;
        let tls = matches!(
            client.get_connection_info().addr(),
            redis::ConnectionAddr::TcpTls { .. }
        );
        if tls {
            log::info!(
                "broker: TLS to Redis, trusting {}",
                client::trusted_roots(config)
            );
        }
        // Startup errors name the Redis (its password hidden).
        let at = |e: String| {
            BrokerError::Unavailable(format!(
                "{}: {e}",
                crate::config::redact_url_password(&config.url)
            ))
        };
        let publish_timeout = Duration::from_millis(config.publish_timeout_ms);
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(publish_timeout + RESPONSE_TIMEOUT_MARGIN))
            .set_max_delay(Duration::from_secs(5));
        // Reachable now, or a clear failure within seconds (the manager
        // itself would keep retrying); from here on the manager reconnects
        // by itself.
        let probe = client.get_multiplexed_async_connection();
        match tokio::time::timeout(Duration::from_secs(3), probe).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) if tls => {
                return Err(at(format!(
                    "{e}{}",
                    client::tls_hint(&e.to_string(), config)
                )))
            }
            Ok(Err(e)) => return Err(at(e.to_string())),
            Err(_) => return Err(at("no answer within 3 s".into())),
        }
        let mut commands = ConnectionManager::new_lazy_with_config(client.clone(), manager)
            .map_err(|e| at(e.to_string()))?;
        let password = client.get_connection_info().redis_settings().password();
        let health = Arc::new(Health::new(&config.url, password));
        let standing = Arc::new(Standing::new(&config.prefix));
        standing
            .join(&mut commands, candidate)
            .await
            .map_err(|e| at(e.to_string()))?;
        Ok(Self {
            client,
            commands,
            publish: Arc::new(redis::Script::new(scripts::PUBLISH)),
            replay: Arc::new(redis::Script::new(scripts::REPLAY)),
            prefix: config.prefix.clone(),
            history_size,
            expiry: Expiry::new(history_ttl),
            max_replay_bytes,
            standing,
            node: format!("{:016x}", rand::random::<u64>()),
            health,
            publish_timeout,
            remembering,
        })
    }

    /// How long the connection waits for any answer from Redis: a margin
    /// above `publish_timeout_ms`.
    fn response_timeout(&self) -> Duration {
        self.publish_timeout + RESPONSE_TIMEOUT_MARGIN
    }

    /// The pub/sub channel every message is announced on.
    fn channel(&self) -> String {
        format!("{}:messages", self.prefix)
    }

    /// The node log: the stream of each seq (see [`scripts::CATCH_UP`]).
    fn log_key(&self) -> String {
        format!("{}:log", self.prefix)
    }

    /// The index of remembered idempotency keys (see the module's header).
    fn idempotency_index(&self) -> String {
        format!("{}:idempotency", self.prefix)
    }

    /// What each remembered idempotency key's own Redis key starts with.
    fn idempotency_prefix(&self) -> String {
        format!("{}:idempotency:", self.prefix)
    }

    /// The clock and the expired mark (see the module's header).
    fn expiry_keys(&self) -> (String, String) {
        (
            format!("{}:clock", self.prefix),
            format!("{}:expired", self.prefix),
        )
    }
}

impl Broker for RedisBroker {
    fn kind(&self) -> BrokerKind {
        BrokerKind::Redis
    }

    fn epoch(&self) -> Epoch {
        self.standing.epoch()
    }

    fn numbered_before(&self) -> u64 {
        self.standing.numbered_before.load(Ordering::Relaxed)
    }

    /// See [`RedisBroker::publish_frame`].
    fn publish(
        &self,
        key: StreamKey,
        frame: &PendingFrame,
        idempotency: Option<&ScopedKey>,
    ) -> Publishing {
        self.publish_frame(key, frame, idempotency)
    }

    /// See [`RedisBroker::read_replay`].
    fn replay(&self, streams: &[(StreamKey, u64)], from: &Position) -> Replaying {
        self.read_replay(streams, from)
    }

    fn start(&self, events: Arc<dyn BrokerEvents>) {
        self.standing.start(events.clone());
        self.subscribe(events.clone());
        self.report_presence(events);
        self.probe();
    }

    /// Subscribed, answering PINGs, and the last write (publish or
    /// presence report) did not fail (see `health.rs`).
    fn connected(&self) -> Option<bool> {
        Some(self.health.connected())
    }

    fn error(&self) -> Option<String> {
        self.health.error()
    }

    /// The unexpired members of the index, by this node's clock (close to
    /// Redis's: the count is a gauge, not a bound).
    fn remembered_keys(&self) -> BoxFuture<'static, Option<usize>> {
        let mut con = self.commands.clone();
        let index = self.idempotency_index();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Box::pin(async move {
            redis::cmd("ZCOUNT")
                .arg(index)
                .arg(format!("({now}"))
                .arg("+inf")
                .query_async::<usize>(&mut con)
                .await
                .ok()
        })
    }

    /// The nodes that reported in the last
    /// [`PRESENCE_TTL`](presence::PRESENCE_TTL), their sessions
    /// in all, and the union of their ids; unknown while this node's own
    /// report is not written.
    fn cluster(&self) -> Option<BoxFuture<'static, Option<ClusterCounts>>> {
        Some(self.cluster_counts())
    }
}
