//! herald's settings: one typed tree with a default for every key.
//!
//! Sources, each overriding the one before: built-in defaults → the config
//! file (`config.toml`, or `--config` / `HERALD_CONFIG`) → `HERALD_*`
//! environment variables → command-line flags. The result is validated once,
//! at startup; every error names the file, variable or key at fault.
//!
//! Files: this one the tree, its defaults and the durations read from it;
//! `load.rs` the sources and their order; `validate.rs` the rules no type
//! can express; `secret.rs` secrets and their redaction; `error.rs` what a
//! config error says; `broker.rs` `[broker]` and its check.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

mod broker;
mod error;
mod load;
mod secret;
mod validate;

pub use self::broker::{BrokerConfig, BrokerKind, InvalidSetting, RedisTarget};
pub use self::error::ConfigError;
pub use self::load::{Overrides, DEFAULT_CONFIG_PATH};
pub use self::secret::{redact_url_password, Secret, REDACTED};
pub use self::validate::{MAX_SHUTDOWN_DRAIN_MS, MIN_CLIENT_SECRET_BYTES, MIN_PUBLISH_KEY_BYTES};

/// Every setting herald has. `config.toml` documents each one.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on. Loopback by default, so a fresh install is not
    /// reachable from other machines.
    pub host: String,
    /// TCP port; 0 asks the OS for a free one (tests use this).
    pub port: u16,
    /// HTTP worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// How often the server pings each WebSocket client (and writes a
    /// keep-alive on each event stream). 25 s by default: each ping costs
    /// the server a write, a read and a timer per connection (BENCHMARKS.md,
    /// "Scale"), and 25 s stays under common proxies' 60 s idle timeouts.
    pub heartbeat_interval_ms: u64,
    /// A client that sends nothing (not even a pong) for this long is
    /// dropped, at the next ping time. Must exceed `heartbeat_interval_ms`;
    /// the default, 45 s, closes a vanished client at the second ping after
    /// it went silent (about 50 s).
    pub client_timeout_ms: u64,
    /// Largest `POST /` body accepted; larger ones get 413.
    pub max_message_bytes: usize,
    /// Largest message a client may send over its WebSocket, per frame and
    /// after reassembling fragments; larger ones close the session with 1009.
    pub max_frame_bytes: usize,
    /// Messages that may wait for one session before herald treats it as a
    /// slow consumer and closes it (code 4003).
    pub max_pending_messages: usize,
    /// Serve the console page at `/`; false answers 404 there (publishing
    /// with `POST /` is unaffected), for nodes that only serve clients.
    pub console: bool,
    /// A directory whose files replace the built-in browser client under
    /// `/static/`; empty: the files compiled into herald.
    pub static_dir: PathBuf,
    /// A page that replaces the built-in console at `/`; empty: the page
    /// compiled into herald.
    pub console_template: PathBuf,
    /// Keys a publisher must present as `Authorization: Bearer <key>`.
    /// Empty: only loopback peers may publish (local development).
    pub publish_keys: Vec<Secret>,
    /// Keys for `GET /metrics` and `GET /stats` (`Authorization: Bearer`).
    /// Empty: only loopback peers may read them.
    pub admin_keys: Vec<Secret>,
    /// Origins (`scheme://host[:port]`) that may open WebSockets, read
    /// `/events` and `/poll` across origins (CORS) and POST, besides
    /// herald's own. `"*"` allows any (not recommended).
    pub allowed_origins: Vec<String>,
    /// Host names (no port) herald answers to besides IP addresses,
    /// `localhost` and `*.localhost`; any other `Host` gets 421, which stops
    /// DNS rebinding. `"*"` answers to any (not recommended).
    pub allowed_hosts: Vec<String>,
    /// Without keys, whether direct loopback peers may publish and read
    /// `/metrics` and `/stats`. False makes keys mandatory for both.
    pub trust_loopback: bool,
    /// Proxies (networks in CIDR notation, or bare addresses) whose
    /// `X-Forwarded-For` or `Forwarded` header names the client; empty:
    /// every client is its TCP peer and those headers are ignored.
    pub trusted_proxies: Vec<String>,
    /// HS256 secret that signs client tokens (JWT); empty turns signed
    /// identity off. At least 32 bytes when set.
    pub client_secret: Secret,
    /// The `aud` claim every client token must carry, so that a token the
    /// main site signs for another service is not accepted here.
    pub token_audience: String,
    /// Refuse clients without a valid token.
    pub require_token: bool,
    /// Channels whose names start with this need a token listing them.
    pub private_channel_prefix: String,
    /// Most channels one session may subscribe to.
    pub max_channels_per_session: usize,
    /// Most WebSocket connections open at once; more get 503.
    pub max_connections: usize,
    /// Most WebSocket connections open at once from one IP address; more get 429.
    pub max_connections_per_ip: usize,
    /// Most TCP connections open at once, of any kind (sessions, publishers,
    /// page loads, idle keep-alive); more are closed as soon as accepted.
    /// At least `max_connections`; lowered at startup to what the open-file
    /// limit allows.
    pub max_tcp_connections: usize,
    /// Most TCP connections open at once from one address; more are closed
    /// as soon as accepted. At least `max_connections_per_ip`.
    pub max_tcp_connections_per_ip: usize,
    /// IPv6 peers count against the per-address caps by network of this
    /// many bits (one subscriber usually holds a /64).
    pub ipv6_limit_prefix_len: u8,
    /// A new connection must send its first request's head within this
    /// long, or it gets 408 and is closed. The HTTP server's clock ticks
    /// every 500 ms, so the wait may end up to that much early.
    pub request_head_timeout_ms: u64,
    /// A keep-alive connection idle this long between requests is closed
    /// (up to 500 ms early, as above). WebSockets, event streams and
    /// long-polls are requests in progress, and are not affected.
    pub keep_alive_timeout_ms: u64,
    /// Client frames per second a session may send (bursts up to this many);
    /// beyond it frames are refused with an error frame, and a client that
    /// keeps going is closed with 1008.
    pub max_client_frames_per_sec: u32,
    /// Messages kept per stream (broadcast, each id, each channel) for
    /// clients that resume.
    pub history_size: usize,
    /// Messages older than this are dropped from history.
    pub history_ttl_secs: u64,
    /// Memory budget of the whole history, in bytes.
    pub history_max_bytes: usize,
    /// Streams the history remembers at most.
    pub history_max_streams: usize,
    /// Most bytes of messages one resume may bring back (each counts its
    /// frame plus `replay::REPLAY_ENTRY_OVERHEAD_BYTES`). A replay is held
    /// by its session until the client has read it, so this bounds what one
    /// resuming client can pin; a resume needing more gets `reset`.
    pub max_replay_bytes: usize,
    /// How long a publish's idempotency key is remembered, in seconds: a
    /// publish with a key already used in this window is answered with the
    /// first one's seq and delivered to nobody. 0: keys are checked but not
    /// remembered.
    pub idempotency_window_secs: u64,
    /// Most idempotency keys remembered at once (on Redis: by the whole
    /// cluster); past it the oldest are forgotten first.
    pub idempotency_max_keys: usize,
    /// How long `GET /poll` waits for a message before answering empty.
    pub poll_timeout_secs: u64,
    /// On SIGTERM or Ctrl-C: how long herald waits for connections to close
    /// and publishes in flight to finish before it exits anyway.
    pub shutdown_timeout_secs: u64,
    /// On SIGTERM or Ctrl-C, before any of that: how long herald keeps
    /// serving as before, sessions and new connections included, while
    /// `GET /ready` answers 503, so that load balancers stop sending new
    /// clients first. 0: close at once. A second signal ends the wait.
    pub shutdown_drain_ms: u64,
    /// Serve `GET /echo`, a WebSocket that sends back every message, on the
    /// same session code, for protocol-compliance suites (Autobahn). Never
    /// in production.
    pub echo_route: bool,
    /// How log lines are written to stderr: `text` for people, `json` (one
    /// object per line) for a log collector. `RUST_LOG` picks what is
    /// logged either way.
    pub log_format: LogFormat,
    /// `[broker]`: this process alone (memory) or several nodes on Redis.
    pub broker: BrokerConfig,
}

/// How log lines are written: see [`crate::logging`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `[time LEVEL target] message`, for a terminal.
    #[default]
    Text,
    /// One JSON object per line: time, level, target, message and the
    /// event's fields.
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8001,
            workers: 0,
            heartbeat_interval_ms: 25_000,
            client_timeout_ms: 45_000,
            max_message_bytes: 64 * 1024,
            max_frame_bytes: 64 * 1024,
            max_pending_messages: 256,
            console: true,
            static_dir: PathBuf::new(),
            console_template: PathBuf::new(),
            publish_keys: Vec::new(),
            admin_keys: Vec::new(),
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            trust_loopback: true,
            trusted_proxies: Vec::new(),
            client_secret: Secret::default(),
            token_audience: "herald".into(),
            require_token: false,
            private_channel_prefix: "private:".into(),
            max_channels_per_session: 100,
            max_connections: 10_000,
            max_connections_per_ip: 256,
            max_tcp_connections: 12_000,
            max_tcp_connections_per_ip: 512,
            ipv6_limit_prefix_len: 64,
            request_head_timeout_ms: 5_000,
            keep_alive_timeout_ms: 15_000,
            max_client_frames_per_sec: 50,
            history_size: 100,
            history_ttl_secs: 300,
            history_max_bytes: 64 * 1024 * 1024,
            history_max_streams: 100_000,
            max_replay_bytes: 4 * 1024 * 1024,
            idempotency_window_secs: 300,
            idempotency_max_keys: 100_000,
            poll_timeout_secs: 25,
            shutdown_timeout_secs: 10,
            shutdown_drain_ms: 0,
            echo_route: false,
            log_format: LogFormat::Text,
            broker: BrokerConfig::default(),
        }
    }
}

impl Config {
    /// The defaults as a TOML table: which keys exist and their types.
    pub fn default_table() -> Table {
        match Value::try_from(Self::default()) {
            Ok(Value::Table(table)) => table,
            _ => Table::new(),
        }
    }

    pub fn heartbeat_interval(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }

    pub fn client_timeout(&self) -> Duration {
        Duration::from_millis(self.client_timeout_ms)
    }

    pub fn request_head_timeout(&self) -> Duration {
        Duration::from_millis(self.request_head_timeout_ms)
    }

    pub fn keep_alive_timeout(&self) -> Duration {
        Duration::from_millis(self.keep_alive_timeout_ms)
    }

    pub fn shutdown_drain(&self) -> Duration {
        Duration::from_millis(self.shutdown_drain_ms)
    }

    pub fn history_limits(&self) -> crate::history::HistoryLimits {
        crate::history::HistoryLimits {
            per_stream: self.history_size,
            ttl: Duration::from_secs(self.history_ttl_secs),
            max_bytes: self.history_max_bytes,
            max_streams: self.history_max_streams,
        }
    }

    pub fn idempotency_limits(&self) -> crate::idempotency::IdempotencyLimits {
        crate::idempotency::IdempotencyLimits {
            window: Duration::from_secs(self.idempotency_window_secs),
            max_keys: self.idempotency_max_keys,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    pub(super) fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_listen_on_loopback_port_8001() {
        let config = Config::default();
        assert_eq!(config.host, "127.0.0.1");
        assert_eq!(config.port, 8001);
        assert_eq!(config.max_message_bytes, 65536);
        config.validate().expect("defaults are valid");
    }

    #[test]
    fn the_shipped_config_file_is_valid_and_matches_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml");
        let file = Config::from_file(&path).expect("config.toml parses");
        file.validate().expect("config.toml is valid");
        assert_eq!(format!("{file:?}"), format!("{:?}", Config::default()));
    }
}
