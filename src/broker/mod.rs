//! Where a publish goes and comes back from.
//!
//! - `memory` (the default): this process. `NotifyServer` numbers, keeps and
//!   fans out every message itself; nothing to install.
//! - `redis`: several herald nodes share one Redis. A publish is numbered,
//!   kept (a Redis Stream per stream, bounded by `history_size`) and
//!   announced (pub/sub) by one atomic script; every node, the publishing
//!   one included, receives it from pub/sub and fans it out to its own
//!   sessions — one delivery path for local and remote publishes. Every node
//!   subscribes to every message: simple and exact, at the cost of each node
//!   receiving messages none of its sessions want (see docs/deploy.md).

mod redis;

use serde::Deserialize;

pub use self::redis::RedisBroker;

/// `[broker]` in the config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerConfig {
    pub kind: BrokerKind,
    /// Redis URL, for `kind = "redis"`.
    pub url: String,
    /// Prefix of every Redis key and channel herald uses, so several
    /// clusters can share one Redis.
    pub prefix: String,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            kind: BrokerKind::Memory,
            url: "redis://127.0.0.1:6379".into(),
            prefix: "herald".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BrokerKind {
    Memory,
    Redis,
}

/// The broker could not take a publish.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("the message broker (Redis) is unavailable: {0}")]
    Unavailable(String),
}
