//! Where a publish is numbered, kept and announced, and where a resume is
//! answered from. One trait, two back ends, chosen in one place
//! ([`from_config`]):
//!
//! - `memory` (the default): this process. [`MemoryBroker`] numbers each
//!   message, keeps it in a bounded [`History`](crate::history::History) and
//!   hands it straight back to `NotifyServer` to fan out; nothing to install.
//! - `redis`: several herald nodes share one Redis. [`RedisBroker`] numbers,
//!   keeps (a Redis Stream per stream, bounded by `history_size`) and
//!   announces (pub/sub) each message in one atomic script; every node, the
//!   publishing one included, receives it from pub/sub and fans it out to its
//!   own sessions. Every node subscribes to every message: simple and exact,
//!   at the cost of each node receiving messages none of its sessions want
//!   (see docs/deploy.md). Streams idle for `history_ttl_secs` expire in
//!   Redis, leaving what a late resume needs to get `reset` (see
//!   `redis/mod.rs`); `redis/client.rs` builds the Redis client from
//!   `[broker]` (URL, TLS).
//!
//! Either way `NotifyServer` fans out a [`Publication`] through one
//! function: the memory broker returns it at once ([`Publishing::Here`]),
//! Redis delivers it later through the subscription ([`Publishing::Sent`],
//! then [`BrokerEvents::publication`]). Positions are `seq` numbers under an
//! epoch, the same in both.
//!
//! A publish may carry an idempotency key ([`ScopedKey`]): the broker
//! remembers it for `idempotency_window_secs`, at most
//! `idempotency_max_keys` of them, oldest forgotten first, and a publish
//! whose key it remembers is answered with the first one's seq and
//! delivered to nobody ([`Publishing::Duplicate`], [`Announced::duplicate`]).
//! The check and the publish are one step: in the memory broker under its
//! lock (`remembered.rs`), on Redis in the publish script.
//!
//! The broker sits below the hub: it names no hub type and no actix type,
//! and reaches `NotifyServer` only through [`BrokerEvents`], which the hub
//! implements. Its settings, `[broker]`, are the config's
//! ([`crate::config::BrokerConfig`]).

mod memory;
mod redis;
mod remembered;

use std::sync::Arc;
use std::time::Instant;

use bytestring::ByteString;
use futures_util::future::BoxFuture;
use prometheus::IntCounter;

pub use self::memory::MemoryBroker;
pub use self::redis::RedisBroker;
use crate::config::{BrokerKind, Config};
use crate::history::{HistoryUsage, StreamKey};
use crate::idempotency::{IdempotencyLimits, ScopedKey};
use crate::ids::{ClientId, Epoch};
use crate::protocol::{PendingFrame, Position};
use crate::replay::ResetReason;

/// The broker could not take a publish.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Nothing was published: the command was not sent, or Redis refused
    /// it.
    #[error("the message broker (Redis) is unavailable: {0}")]
    Unavailable(String),
    /// Redis did not answer in time: the command may have run.
    #[error("the message broker (Redis) did not answer within {ms} ms")]
    TimedOut { ms: u64 },
    /// The connection broke after the command may have been sent (a broken
    /// pipe, a reset): the command may have run.
    #[error("the connection to the message broker (Redis) broke before it answered: {0}")]
    Interrupted(String),
}

impl BrokerError {
    /// Whether the message may have been published: the command reached, or
    /// may have reached, Redis, and no answer came.
    pub fn outcome_unknown(&self) -> bool {
        !matches!(self, Self::Unavailable(_))
    }

    /// What became of the message, for the publisher.
    pub fn outcome(&self) -> &'static str {
        if self.outcome_unknown() {
            "the message may or may not have been published: retry with the same \
             idempotency key, which publishes it only if it was not (a retry without \
             one may deliver it twice)"
        } else {
            "the message was not published"
        }
    }
}

/// Messages of a replay, `(seq, complete frame)`, in seq order.
pub type Frames = Vec<(u64, ByteString)>;

/// A replay fetched from a broker other nodes publish to: every kept
/// message asked for up to `upto`, the cluster's counter at the instant
/// they were read. It is one consistent cut: each message of the asked
/// streams numbered up to `upto` is in `frames`, each one numbered after it
/// is not, so live delivery takes over exactly above `upto`.
#[derive(Debug)]
pub struct Snapshot {
    pub frames: Frames,
    pub upto: u64,
}

/// A message numbered and kept by the broker, to fan out to this node's
/// sessions. With Redis, every node, the publishing one included, gets it
/// from the subscription.
pub struct Publication {
    pub key: StreamKey,
    pub seq: u64,
    /// The complete frame, seq included.
    pub frame: ByteString,
}

/// Messages this node should have fanned out and cannot: its link to the
/// cluster broke and the history no longer holds them (with Redis, see
/// `redis/catch_up.rs`). The sessions that may have missed them are told
/// to resume, which answers them from the history or with `reset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Missed {
    /// Messages of these streams.
    Streams(Vec<StreamKey>),
    /// Messages of any stream: every session.
    Everything,
}

impl Missed {
    /// Adds `key` to what `missed` names.
    pub fn add(missed: &mut Option<Missed>, key: StreamKey) {
        match missed {
            None => *missed = Some(Missed::Streams(vec![key])),
            Some(Missed::Streams(keys)) if !keys.contains(&key) => keys.push(key),
            Some(_) => {}
        }
    }
}

/// This node's part of the cluster view, as `NotifyServer` reports it.
#[derive(Debug, Clone)]
pub struct Presence {
    pub sessions: usize,
    /// Changes whenever an id appears on or leaves this node.
    pub generation: u64,
    /// Every registered id, unless unchanged since the generation asked.
    pub ids: Option<Vec<ClientId>>,
}

/// How a broker reaches the layer above it, which implements this: the
/// broker hands over what it receives and asks what it reports, and knows
/// nothing of sessions, actors or how a message is delivered (centrifuge's
/// `BrokerEventHandler`).
pub trait BrokerEvents: Send + Sync {
    /// A message announced by the cluster, to fan out on this node. Called
    /// in the order the broker receives them, once each.
    fn publication(&self, publication: Publication);

    /// Messages this node missed and cannot fan out, in order with the
    /// publications: the sessions they were for must resume.
    fn missed(&self, missed: Missed);

    /// This node's sessions, and its ids unless they are unchanged since
    /// generation `known`; `None` when nothing can answer (the process is
    /// stopping).
    fn presence(&self, known: Option<u64>) -> BoxFuture<'static, Option<Presence>>;
}

/// What became of a publish.
pub enum Publishing {
    /// Numbered and kept in this process: fan it out now. Nothing else
    /// will deliver it.
    Here(Publication),
    /// Handed to the cluster: once the future says it was announced, it
    /// comes back to every node, this one included, as a [`Publication`]
    /// through [`BrokerEvents::publication`].
    Sent(BoxFuture<'static, Result<Announced, BrokerError>>),
    /// Its idempotency key was used within the window by the publish
    /// numbered `seq`: nothing is kept or delivered.
    Duplicate { seq: u64 },
}

/// A publish the cluster took.
#[derive(Debug, Clone, Copy)]
pub struct Announced {
    pub seq: u64,
    /// Nodes subscribed when it was announced (each fans out locally); 0
    /// for a duplicate.
    pub nodes: u64,
    /// Its idempotency key was used within the window by the publish
    /// numbered `seq`: nothing was kept or announced.
    pub duplicate: bool,
}

/// What a resume gets: every kept message it asked for, or why that
/// cannot be complete (the client then gets a `reset` frame), or, when
/// fetched, that the broker could not be read now.
pub enum Replaying {
    /// Read from this process, exact up to each stream's `has_from`:
    /// nothing can be in flight.
    Here(Result<Frames, Refused>),
    /// Being fetched: live messages may arrive meanwhile, before or after
    /// the snapshot's instant, and may repeat what the replay holds (see
    /// `NotifyServer::finish_resume`).
    Fetching(BoxFuture<'static, Result<Snapshot, NotReplayed>>),
}

/// Why a fetched replay brought nothing.
#[derive(Debug)]
pub enum NotReplayed {
    /// The history cannot answer in full: the client gets `reset`.
    Refused(Refused),
    /// The broker could not be read now (unreachable, or no answer in
    /// time). Its history is not known to be lost, so the client is asked
    /// to come back later rather than reset; the text says why, for the
    /// log.
    Unavailable(String),
}

impl From<Refused> for NotReplayed {
    fn from(refused: Refused) -> Self {
        Self::Refused(refused)
    }
}

/// A resume that cannot be answered in full: nothing is replayed and the
/// client gets `reset`, with a position to go on from.
#[derive(Debug)]
pub struct Refused {
    /// Why (the `reset` frame's `reason`).
    pub reason: ResetReason,
    /// The newest position the broker knows (epoch, latest seq), read with
    /// the refusal: a resume from it has nothing to replay, so a client that
    /// follows the `reset` is not reset again. `None` when the broker could
    /// not be read: the node's own position is given.
    pub newest: Option<(Epoch, u64)>,
    /// When the position is of an epoch the cluster left (Redis lost its
    /// data): what the cluster's epoch holds of the session's streams
    /// after `newest` (its base), delivered after the `reset`, so that a
    /// message published in the new epoch before the client came back is
    /// not lost to it.
    pub following: Option<Snapshot>,
}

impl Refused {
    /// A refusal with no newer position than the node's own.
    pub fn because(reason: ResetReason) -> Self {
        Self {
            reason,
            newest: None,
            following: None,
        }
    }

    /// A refusal that carries the broker's newest position.
    pub fn from_newest(reason: ResetReason, newest: (Epoch, u64)) -> Self {
        Self {
            reason,
            newest: Some(newest),
            following: None,
        }
    }
}

/// The cluster as the broker sees it, for `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ClusterCounts {
    /// Nodes that reported in the last few seconds.
    pub nodes: usize,
    /// Their sessions in all.
    pub sessions: usize,
    /// Distinct registered ids over all nodes (an id with tabs on two
    /// nodes counts once). Estimated by a HyperLogLog union: exact for
    /// small numbers, within about 1% for large ones.
    pub ids: usize,
}

/// A place where messages are numbered, kept and announced. Owned by
/// `NotifyServer`, which is the only caller of `publish` and `replay`, one
/// call at a time, in publish order.
pub trait Broker: Send + Sync {
    fn kind(&self) -> BrokerKind;

    /// The history's epoch: positions from another epoch are refused. With
    /// Redis it changes when the cluster's does (Redis lost its data).
    fn epoch(&self) -> Epoch;

    /// The newest seq numbered elsewhere before this node could see it: the
    /// cluster's counter as read when the node joined the cluster (at
    /// startup, each time its subscription comes back, after the cluster's
    /// epoch changed). No position the node hands out is below it. 0 for a
    /// broker that numbers in this process only.
    fn numbered_before(&self) -> u64 {
        0
    }

    /// Numbers (the next `seq`), keeps and announces one message. Its order
    /// among publishes is the order of the calls. With an `idempotency`
    /// key remembered from an earlier publish within the window, does none
    /// of that and answers that publish's seq as a duplicate; otherwise
    /// remembers the key with the message's seq, in the same step.
    fn publish(
        &self,
        key: StreamKey,
        frame: &PendingFrame,
        idempotency: Option<&ScopedKey>,
    ) -> Publishing;

    /// Every kept message of `streams` after `from` (`since < seq`); with
    /// each stream comes its `has_from`, the seq from which the session
    /// already has it live (a broker that can, stops there). Refused when
    /// `from` is of another epoch, is ahead, or the history no longer holds
    /// all of it, and, with nothing read past the budget, when those
    /// messages need more than `max_replay_bytes` (see [`crate::replay`]).
    fn replay(&self, streams: &[(StreamKey, u64)], from: &Position) -> Replaying;

    /// Drops what has outlived its time; called about once a second.
    fn expire(&self, _now: Instant) {}

    /// Messages, bytes and streams kept in this process.
    fn usage(&self) -> HistoryUsage {
        HistoryUsage::default()
    }

    /// Starts whatever runs in the background: delivery of announced
    /// messages to `events`, and this node's presence report, read from
    /// it. Called once, when `NotifyServer` has started.
    fn start(&self, _events: Arc<dyn BrokerEvents>) {}

    /// Whether this node can publish now: announced messages reach it, and
    /// its last write to the broker did not fail; `None` when there is
    /// nothing to connect to.
    fn connected(&self) -> Option<bool> {
        None
    }

    /// Why [`Broker::connected`] is false: the last broker error, short,
    /// with no password in it; `None` while connected.
    fn error(&self) -> Option<String> {
        None
    }

    /// Idempotency keys remembered now and not yet expired (on Redis, by the
    /// whole cluster), for `/metrics`; `None` when that cannot be read now.
    fn remembered_keys(&self) -> BoxFuture<'static, Option<usize>> {
        Box::pin(std::future::ready(None))
    }

    /// The cluster's counts; `None` without a cluster. The inner `None`:
    /// unknown, because the broker cannot be read now or this node's own
    /// report could not be written.
    fn cluster(&self) -> Option<BoxFuture<'static, Option<ClusterCounts>>> {
        None
    }
}

/// A fresh epoch: random, so that it differs from every earlier one.
fn new_epoch() -> Epoch {
    Epoch::from(format!("{:016x}", rand::random::<u64>()))
}

/// The broker the config asks for; connects to Redis, and fails if it
/// cannot be reached now.
/// Idempotency keys the broker forgot before their window ended, to make
/// room (`idempotency_max_keys`), are counted in `evictions`.
pub async fn from_config(
    config: &Config,
    evictions: IntCounter,
) -> Result<Arc<dyn Broker>, BrokerError> {
    let epoch = new_epoch();
    let idempotency = Remembering {
        limits: config.idempotency_limits(),
        evictions,
    };
    Ok(match config.broker.kind {
        BrokerKind::Memory => Arc::new(
            MemoryBroker::new(epoch, config.history_limits(), config.max_replay_bytes)
                .remembering(idempotency),
        ),
        BrokerKind::Redis => Arc::new(
            RedisBroker::connect(
                &config.broker,
                config.history_size,
                config.history_limits().ttl,
                config.max_replay_bytes,
                &epoch,
                idempotency,
            )
            .await?,
        ),
    })
}

/// How a broker remembers idempotency keys: its limits, and where it
/// counts the keys it forgot early.
#[derive(Clone)]
pub struct Remembering {
    pub limits: IdempotencyLimits,
    pub evictions: IntCounter,
}
