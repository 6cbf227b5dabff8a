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
//!   `redis.rs`); `redis_client.rs` builds the Redis client from `[broker]`
//!   (URL, TLS).
//!
//! Either way `NotifyServer` fans out a [`Fanout`] through one function: the
//! memory broker returns it at once ([`Publishing::Here`]), Redis delivers it
//! later through the subscription ([`Publishing::Sent`]). Positions are
//! `seq` numbers under an epoch, the same in both.

mod memory;
mod redis;
mod redis_client;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use actix::Recipient;
use bytestring::ByteString;
use futures_util::future::BoxFuture;
use serde::Deserialize;

pub use self::memory::MemoryBroker;
pub use self::redis::RedisBroker;
pub use self::redis_client::InvalidSetting;
use crate::config::Config;
use crate::history::StreamKey;
use crate::hub::messages::{Fanout, GetPresence};
use crate::protocol::{PendingFrame, Position};

/// `[broker]` in the config.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    pub kind: BrokerKind,
    /// Redis URL, for `kind = "redis"`.
    pub url: String,
    /// Prefix of every Redis key and channel herald uses, so several
    /// clusters can share one Redis.
    pub prefix: String,
    /// For `rediss://`: a PEM file of the CA certificates to trust instead
    /// of the built-in web PKI roots (a private CA). Empty: the built-in
    /// roots.
    pub ca_file: PathBuf,
    /// For `rediss://`: a PEM client certificate (chain) to present, for a
    /// Redis that requires one; with `client_key_file`. Empty: none.
    pub client_cert_file: PathBuf,
    /// The private key of `client_cert_file` (PEM).
    pub client_key_file: PathBuf,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            kind: BrokerKind::Memory,
            url: "redis://127.0.0.1:6379".into(),
            prefix: "herald".into(),
            ca_file: PathBuf::new(),
            client_cert_file: PathBuf::new(),
            client_key_file: PathBuf::new(),
        }
    }
}

impl BrokerConfig {
    /// For `kind = "redis"`, checks what can be checked before connecting:
    /// the URL parses, and the TLS files are readable PEM of the right
    /// kind. Reads those files; connects to nothing.
    pub fn check(&self) -> Result<(), InvalidSetting> {
        match self.kind {
            BrokerKind::Memory => Ok(()),
            BrokerKind::Redis => redis_client::client(self).map(|_| ()),
        }
    }

    /// With `kind = "memory"`, the other `[broker]` settings that differ
    /// from their defaults: they do nothing there, so herald names them in
    /// a startup warning (a node meant for a cluster, started without
    /// `kind = "redis"`). Empty with `kind = "redis"`.
    pub fn unused_settings(&self) -> Vec<&'static str> {
        if self.kind != BrokerKind::Memory {
            return Vec::new();
        }
        let default = Self::default();
        [
            ("broker.url", self.url != default.url),
            ("broker.prefix", self.prefix != default.prefix),
            ("broker.ca_file", self.ca_file != default.ca_file),
            (
                "broker.client_cert_file",
                self.client_cert_file != default.client_cert_file,
            ),
            (
                "broker.client_key_file",
                self.client_key_file != default.client_key_file,
            ),
        ]
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerKind {
    Memory,
    Redis,
}

impl BrokerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Redis => "redis",
        }
    }
}

/// The broker could not take a publish.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// Nothing was published: the command was not sent, or Redis refused
    /// it.
    #[error("the message broker (Redis) is unavailable: {0}")]
    Unavailable(String),
    /// Redis did not answer in time: the command may have run.
    #[error("the message broker (Redis) did not answer within {secs} s")]
    TimedOut { secs: u64 },
}

impl BrokerError {
    /// What became of the message, for the publisher.
    pub fn outcome(&self) -> &'static str {
        match self {
            Self::Unavailable(_) => "the message was not published",
            Self::TimedOut { .. } => {
                "the message may or may not have been published: check before sending it again"
            }
        }
    }
}

/// Messages of a replay, `(seq, complete frame)`, in seq order.
pub type Frames = Vec<(u64, ByteString)>;

/// What became of a publish.
pub enum Publishing {
    /// Numbered and kept in this process: fan it out now. Nothing else
    /// will deliver it.
    Here(Fanout),
    /// Handed to the cluster: once the future says it was announced, it
    /// comes back to every node, this one included, as a [`Fanout`].
    Sent(BoxFuture<'static, Result<Announced, BrokerError>>),
}

/// A publish the cluster took.
#[derive(Debug, Clone, Copy)]
pub struct Announced {
    pub seq: u64,
    /// Nodes subscribed when it was announced (each fans out locally).
    pub nodes: u64,
}

/// What a resume gets: every kept message it asked for, or why that
/// cannot be complete (the client then gets a `reset` frame).
pub enum Replaying {
    /// Read from this process, exact up to each stream's `has_from`:
    /// nothing can be in flight.
    Here(Result<Frames, Refused>),
    /// Being fetched: live messages may arrive meanwhile, and may repeat
    /// what the replay holds (see `NotifyServer::finish_resume`).
    Fetching(BoxFuture<'static, Result<Frames, Refused>>),
}

/// A resume that cannot be answered in full: nothing is replayed and the
/// client gets `reset`, with a position to go on from.
#[derive(Debug)]
pub struct Refused {
    /// Why, for people (the `reset` frame's `reason`).
    pub reason: String,
    /// The newest position the broker knows (epoch, latest seq), read with
    /// the refusal: a resume from it has nothing to replay, so a client that
    /// follows the `reset` is not reset again. `None` when the broker could
    /// not be read: the node's own position is given.
    pub newest: Option<(Arc<str>, u64)>,
}

impl Refused {
    /// A refusal with no newer position than the node's own.
    pub fn because(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            newest: None,
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

/// A place where messages are numbered, kept and announced. Owned by the
/// routing layer (`NotifyServer`), which is the only caller of `publish`
/// and `replay`, one call at a time, in publish order.
pub trait Broker: Send + Sync {
    fn kind(&self) -> BrokerKind;

    /// The history's epoch: positions from another epoch are refused. With
    /// Redis it changes when the cluster's does (Redis lost its data).
    fn epoch(&self) -> Arc<str>;

    /// The newest seq numbered elsewhere before this node could see it: the
    /// cluster's counter as read when the node joined the cluster (at
    /// startup, each time its subscription comes back, after the cluster's
    /// epoch changed). No position the node hands out is below it. 0 for a
    /// broker that numbers in this process only.
    fn numbered_before(&self) -> u64 {
        0
    }

    /// Numbers (the next `seq`), keeps and announces one message. Its order
    /// among publishes is the order of the calls.
    fn publish(&self, key: StreamKey, frame: &PendingFrame) -> Publishing;

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
    fn usage(&self) -> (usize, usize, usize) {
        (0, 0, 0)
    }

    /// Starts whatever runs in the background: delivery of announced
    /// messages to `fanout`, and this node's presence report, read from
    /// `presence`. Called once, when the router has started.
    fn start(&self, _fanout: Recipient<Fanout>, _presence: Recipient<GetPresence>) {}

    /// Whether announced messages reach this node now; `None` when there is
    /// nothing to connect to.
    fn connected(&self) -> Option<bool> {
        None
    }

    /// The cluster's counts; `None` without a cluster. The inner `None`:
    /// the broker cannot be read now.
    fn cluster(&self) -> Option<BoxFuture<'static, Option<ClusterCounts>>> {
        None
    }
}

/// A fresh epoch: random, so that it differs from every earlier one.
fn new_epoch() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The broker the config asks for; connects to Redis, and fails if it
/// cannot be reached now.
pub async fn from_config(config: &Config) -> Result<Arc<dyn Broker>, BrokerError> {
    let epoch = new_epoch();
    Ok(match config.broker.kind {
        BrokerKind::Memory => Arc::new(MemoryBroker::new(
            epoch,
            config.history_limits(),
            config.max_replay_bytes,
        )),
        BrokerKind::Redis => Arc::new(
            RedisBroker::connect(
                &config.broker,
                config.history_size,
                config.history_limits().ttl,
                config.max_replay_bytes,
                &epoch,
            )
            .await?,
        ),
    })
}
