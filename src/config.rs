//! herald's settings: one typed tree with a default for every key.
//!
//! Sources, each overriding the one before: built-in defaults → the config
//! file (`config.toml`, or `--config` / `HERALD_CONFIG`) → `HERALD_*`
//! environment variables → command-line flags. The result is validated once,
//! at startup; every error names the file, variable or key at fault.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use toml::{Table, Value};

use crate::config_env;

mod broker;

pub use self::broker::{BrokerConfig, BrokerKind, InvalidSetting, RedisTarget};

/// The config file read when none is named. Its absence is not an error.
pub const DEFAULT_CONFIG_PATH: &str = "config.toml";

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
    /// How often the server pings each WebSocket client.
    pub heartbeat_interval_ms: u64,
    /// A client that sends nothing (not even a pong) for this long is
    /// dropped. Must exceed `heartbeat_interval_ms`.
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

/// A secret from the config: compared and used, never printed.
#[derive(Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_empty() {
            f.write_str("\"\"")
        } else {
            f.write_str("\"<redacted>\"")
        }
    }
}

/// Shortest `client_secret` accepted, in bytes (HS256 wants 256 bits).
pub const MIN_CLIENT_SECRET_BYTES: usize = 32;
/// Shortest publish key accepted, in bytes.
pub const MIN_PUBLISH_KEY_BYTES: usize = 16;
/// Longest `shutdown_drain_ms` accepted: far past any orchestrator's
/// grace period, so a larger value is a mistake (seconds times 1000 twice).
pub const MAX_SHUTDOWN_DRAIN_MS: u64 = 600_000;

impl Default for Config {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8001,
            workers: 0,
            heartbeat_interval_ms: 5_000,
            client_timeout_ms: 15_000,
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
            poll_timeout_secs: 25,
            shutdown_timeout_secs: 10,
            shutdown_drain_ms: 0,
            echo_route: false,
            log_format: LogFormat::Text,
            broker: BrokerConfig::default(),
        }
    }
}

/// A setting that could not be used, with the place it came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid environment variable {var}: {reason}")]
    Env { var: String, reason: String },
    #[error("invalid setting `{key}`: {reason}")]
    Invalid { key: &'static str, reason: String },
}

impl From<config_env::InvalidVar> for ConfigError {
    fn from(e: config_env::InvalidVar) -> Self {
        Self::Env {
            var: e.var,
            reason: e.reason,
        }
    }
}

/// Values given outside the config file, by environment or flags.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// Config file to read instead of `config.toml`; it must exist.
    pub config_path: Option<PathBuf>,
    /// Settings from `HERALD_*` variables, shaped like the file
    /// ([`crate::config_env`]).
    pub env: Table,
    /// `--host`.
    pub host: Option<String>,
    /// `--port`.
    pub port: Option<u16>,
}

impl Overrides {
    /// Reads `HERALD_CONFIG` and every `HERALD_<KEY>` from `vars` (the
    /// process environment in production, pairs in tests).
    pub fn from_env(vars: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let vars: Vec<(String, String)> = vars.into_iter().collect();
        let config_path = vars
            .iter()
            .find(|(name, _)| name == config_env::CONFIG_PATH_VAR)
            .map(|(_, path)| PathBuf::from(path));
        let env = config_env::settings_table(vars, &Config::default_table())?;
        Ok(Self {
            config_path,
            env,
            host: None,
            port: None,
        })
    }

    /// `self` with every value that `over` sets replaced by it.
    pub fn overridden_by(self, over: Overrides) -> Self {
        let mut env = self.env;
        config_env::merge(&mut env, over.env);
        Self {
            config_path: over.config_path.or(self.config_path),
            env,
            host: over.host.or(self.host),
            port: over.port.or(self.port),
        }
    }
}

/// The placeholder `print-config` writes for a secret; refused as a value.
pub const REDACTED: &str = "<redacted>";

impl Config {
    /// The defaults as a TOML table: which keys exist and their types.
    pub fn default_table() -> Table {
        match Value::try_from(Self::default()) {
            Ok(Value::Table(table)) => table,
            _ => Table::new(),
        }
    }

    /// Builds the configuration: defaults, then the file named in
    /// `overrides` (or `config.toml` if it exists), then `HERALD_*`
    /// variables, then flags; then validates.
    pub fn load(overrides: &Overrides) -> Result<Self, ConfigError> {
        let (mut table, path) = match &overrides.config_path {
            Some(path) => (Self::read_table(path)?, path.clone()),
            None if Path::new(DEFAULT_CONFIG_PATH).exists() => (
                Self::read_table(Path::new(DEFAULT_CONFIG_PATH))?,
                PathBuf::from(DEFAULT_CONFIG_PATH),
            ),
            None => (Table::new(), PathBuf::from("(no config file)")),
        };
        // Each variable alone first, so that a value of the wrong kind is
        // reported against its variable rather than the file.
        for (key, value) in &overrides.env {
            let single = Table::from_iter([(key.clone(), value.clone())]);
            if let Err(e) = Self::deserialize(Value::Table(single)) {
                let var = match value {
                    Value::Table(section) => section
                        .keys()
                        .next()
                        .map(|k| config_env::var_name(&format!("{key}.{k}")))
                        .unwrap_or_else(|| config_env::var_name(key)),
                    _ => config_env::var_name(key),
                };
                return Err(ConfigError::Env {
                    var,
                    reason: deserialize_reason(&e),
                });
            }
        }
        config_env::merge(&mut table, overrides.env.clone());
        if let Some(host) = &overrides.host {
            table.insert("host".into(), Value::String(host.clone()));
        }
        if let Some(port) = overrides.port {
            table.insert("port".into(), Value::Integer(i64::from(port)));
        }
        let config = Self::deserialize(Value::Table(table)).map_err(|e| ConfigError::Parse {
            path,
            message: deserialize_reason(&e),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// A config file as a table, before defaults; errors name the file.
    fn read_table(path: &Path) -> Result<Table, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: toml_error(&text, &e),
        })
    }

    /// The configuration as TOML herald reads back, with every secret
    /// replaced by [`REDACTED`] (and the password of the Redis URL).
    pub fn to_redacted_toml(&self) -> String {
        let mut redacted = self.clone();
        let hide = |secret: &mut Secret| {
            if !secret.is_empty() {
                *secret = Secret::new(REDACTED);
            }
        };
        redacted.publish_keys.iter_mut().for_each(hide);
        redacted.admin_keys.iter_mut().for_each(hide);
        hide(&mut redacted.client_secret);
        redacted.broker.url = redact_url_password(&redacted.broker.url);
        toml::to_string(&redacted).unwrap_or_default()
    }
    /// Reads a TOML config file; keys it omits keep their defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses TOML text; `path` only names the source in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: toml_error(text, &e),
        })
    }

    /// Checks the rules no type can express.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.into(),
            })
        };
        if self.host.parse::<IpAddr>().is_err() && self.host != "localhost" {
            return invalid(
                "host",
                "must be an IP address such as 127.0.0.1, or localhost",
            );
        }
        if !self.static_dir.as_os_str().is_empty() && !self.static_dir.is_dir() {
            return invalid(
                "static_dir",
                &format!("{} is not a readable directory", self.static_dir.display()),
            );
        }
        if !self.console_template.as_os_str().is_empty() {
            if let Err(e) = std::fs::metadata(&self.console_template) {
                return invalid(
                    "console_template",
                    &format!("cannot read {}: {e}", self.console_template.display()),
                );
            }
        }
        if self.heartbeat_interval_ms == 0 {
            return invalid("heartbeat_interval_ms", "must be above 0");
        }
        if self.client_timeout_ms <= self.heartbeat_interval_ms {
            return invalid(
                "client_timeout_ms",
                "must be greater than heartbeat_interval_ms, or every client times out between two pings",
            );
        }
        if !(1..=16 * 1024 * 1024).contains(&self.max_message_bytes) {
            return invalid("max_message_bytes", "must be between 1 and 16777216");
        }
        if !(125..=16 * 1024 * 1024).contains(&self.max_frame_bytes) {
            return invalid("max_frame_bytes", "must be between 125 and 16777216");
        }
        if self.max_replay_bytes < self.max_message_bytes {
            return invalid(
                "max_replay_bytes",
                "must be at least max_message_bytes, or one missed message could never be replayed",
            );
        }
        if self.max_pending_messages == 0 {
            return invalid("max_pending_messages", "must be at least 1");
        }
        for (key, redacted) in [
            (
                "publish_keys",
                self.publish_keys.iter().any(|k| k.expose() == REDACTED),
            ),
            (
                "admin_keys",
                self.admin_keys.iter().any(|k| k.expose() == REDACTED),
            ),
            ("client_secret", self.client_secret.expose() == REDACTED),
            ("broker.url", self.broker.url.contains(REDACTED)),
        ] {
            if redacted {
                return invalid(
                    key,
                    "holds the placeholder print-config writes for a secret: \
                     give the real value (e.g. through its HERALD_* variable)",
                );
            }
        }
        for (key, keys) in [
            ("publish_keys", &self.publish_keys),
            ("admin_keys", &self.admin_keys),
        ] {
            if keys
                .iter()
                .any(|k| k.expose().len() < MIN_PUBLISH_KEY_BYTES)
            {
                return invalid(
                    key,
                    &format!("every key must be at least {MIN_PUBLISH_KEY_BYTES} bytes long"),
                );
            }
        }
        if self.token_audience.trim().is_empty() {
            return invalid("token_audience", "must not be empty");
        }
        if self.require_token && self.client_secret.is_empty() {
            return invalid(
                "client_secret",
                "require_token = true needs a client_secret to verify tokens with",
            );
        }
        if !self.client_secret.is_empty()
            && self.client_secret.expose().len() < MIN_CLIENT_SECRET_BYTES
        {
            return invalid(
                "client_secret",
                &format!("must be at least {MIN_CLIENT_SECRET_BYTES} bytes long (a random string)"),
            );
        }
        if let Some(bad) = self
            .allowed_origins
            .iter()
            .find(|o| o.as_str() != "*" && crate::origin::Origin::parse(o).is_none())
        {
            return invalid(
                "allowed_origins",
                &format!(
                    "{bad:?} is not an origin like \"https://example.com\" or \"*\" \
                     (no paths or wildcards; an international name in its xn-- form)"
                ),
            );
        }
        if self.shutdown_drain_ms > MAX_SHUTDOWN_DRAIN_MS {
            return invalid(
                "shutdown_drain_ms",
                &format!("must be at most {MAX_SHUTDOWN_DRAIN_MS} (10 minutes), in milliseconds"),
            );
        }
        if let Err(e) = crate::client_addr::TrustedProxies::parse(&self.trusted_proxies) {
            return invalid("trusted_proxies", &e.to_string());
        }
        // A name, as a Host header would carry it, without the port.
        let host_name =
            |h: &str| crate::host::HostHeader::parse(h).is_some_and(|p| p.port.is_none());
        if let Some(bad) = self
            .allowed_hosts
            .iter()
            .find(|h| h.as_str() != "*" && !host_name(h))
        {
            return invalid(
                "allowed_hosts",
                &format!(
                    "{bad:?} is not a host name like \"rt.example.com\" (no scheme, no port) or \"*\""
                ),
            );
        }
        if self.broker.kind == BrokerKind::Redis
            && !["redis://", "rediss://", "unix://", "redis+unix://"]
                .iter()
                .any(|scheme| self.broker.url.starts_with(scheme))
        {
            return invalid(
                "broker.url",
                "must be a Redis URL such as redis://127.0.0.1:6379",
            );
        }
        if let Err(e) = self.broker.check() {
            return Err(ConfigError::Invalid {
                key: e.key,
                reason: e.reason,
            });
        }
        if self.private_channel_prefix.is_empty() {
            return invalid("private_channel_prefix", "must not be empty");
        }
        for (key, value) in [
            ("max_channels_per_session", self.max_channels_per_session),
            ("max_connections", self.max_connections),
            ("max_connections_per_ip", self.max_connections_per_ip),
            (
                "max_client_frames_per_sec",
                self.max_client_frames_per_sec as usize,
            ),
        ] {
            if value == 0 {
                return invalid(key, "must be at least 1");
            }
        }
        if self.max_tcp_connections < self.max_connections {
            return invalid(
                "max_tcp_connections",
                "must be at least max_connections: every session holds a TCP connection, \
                 and publishers and page loads need more",
            );
        }
        if self.max_tcp_connections_per_ip < self.max_connections_per_ip {
            return invalid(
                "max_tcp_connections_per_ip",
                "must be at least max_connections_per_ip: every session holds a TCP connection",
            );
        }
        if !(32..=128).contains(&self.ipv6_limit_prefix_len) {
            return invalid(
                "ipv6_limit_prefix_len",
                "must be between 32 and 128 (64: one subscriber's network)",
            );
        }
        for (key, value) in [
            ("request_head_timeout_ms", self.request_head_timeout_ms),
            ("keep_alive_timeout_ms", self.keep_alive_timeout_ms),
        ] {
            // The HTTP server starts these timers from a clock it updates
            // every 500 ms, so each may end up to that much early.
            if value < 1000 {
                return invalid(
                    key,
                    "must be at least 1000 (the HTTP server's clock ticks every 500 ms, \
                     and a shorter wait cuts off clients on slow networks)",
                );
            }
        }
        Ok(())
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
}

/// A TOML error as `line L, column C: what`, without the source line or
/// any quoted value, either of which may be a secret.
fn toml_error(text: &str, error: &toml::de::Error) -> String {
    let place = error.span().map(|span| {
        let start = span.start.min(text.len());
        let before = text.get(..start).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let column = before.chars().rev().take_while(|&c| c != '\n').count() + 1;
        // The key the line sets, when it reads `key = ...`: a name, never
        // a value.
        let line_text = text.lines().nth(line - 1).unwrap_or_default();
        let key = line_text
            .split_once('=')
            .map(|(key, _)| key.trim())
            .filter(|key| {
                !key.is_empty()
                    && key
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            });
        match key {
            Some(key) => format!("line {line}, column {column}, key `{key}`: "),
            None => format!("line {line}, column {column}: "),
        }
    });
    format!(
        "{}{}",
        place.unwrap_or_default(),
        without_quoted_values(error.message().trim_end())
    )
    .replace('\n', " ")
}

/// `text` with every double-quoted part replaced by `"…"`: serde names
/// keys in backquotes and values in double quotes.
fn without_quoted_values(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut quoted = false;
    for c in text.chars() {
        if c == '"' {
            if !quoted {
                out.push_str("\"…\"");
            }
            quoted = !quoted;
        } else if !quoted {
            out.push(c);
        }
    }
    out
}

/// A deserializer's complaint on one line.
fn deserialize_reason(error: &toml::de::Error) -> String {
    error.to_string().trim_end().replace('\n', " ")
}

/// A URL with its password replaced by [`REDACTED`], for logs and
/// printed configuration: the one between `:` and `@`, and a `pass` or
/// `password` query parameter (how `redis+unix://` URLs carry it).
pub fn redact_url_password(url: &str) -> String {
    let (url, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let base = redact_userinfo_password(url);
    let Some(query) = query else {
        return base;
    };
    let params: Vec<String> = query
        .split('&')
        .map(|param| match param.split_once('=') {
            Some((key, _)) if ["pass", "password"].contains(&key.to_ascii_lowercase().as_str()) => {
                format!("{key}={REDACTED}")
            }
            _ => param.to_owned(),
        })
        .collect();
    format!("{base}?{}", params.join("&"))
}

fn redact_userinfo_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let Some(at) = url.rfind('@').filter(|&at| at > scheme_end) else {
        return url.to_owned();
    };
    let userinfo = &url[scheme_end..at];
    let user = userinfo.split_once(':').map_or("", |(user, _)| user);
    if !userinfo.contains(':') && !userinfo.is_empty() {
        // `redis://secret@host`: the only part is the password.
        return format!("{}{REDACTED}{}", &url[..scheme_end], &url[at..]);
    }
    format!("{}{user}:{REDACTED}{}", &url[..scheme_end], &url[at..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
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

    #[test]
    fn a_file_overrides_only_the_keys_it_sets() {
        let config = Config::from_toml("port = 9000\n", Path::new("x.toml")).unwrap();
        assert_eq!(config.port, 9000);
        assert_eq!(config.host, "127.0.0.1");
    }

    #[test]
    fn an_unknown_key_is_an_error_naming_file_and_key() {
        let err = Config::from_toml("prot = 9000\n", Path::new("my.toml")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("my.toml"), "{text}");
        assert!(text.contains("prot"), "{text}");
    }

    #[test]
    fn a_mistyped_value_is_an_error_naming_the_key() {
        let err = Config::from_toml("port = \"high\"\n", Path::new("my.toml")).unwrap_err();
        assert!(err.to_string().contains("port"), "{err}");
    }

    #[test]
    fn validation_names_the_key() {
        let config = Config {
            client_timeout_ms: 100,
            heartbeat_interval_ms: 200,
            ..Config::default()
        };
        let err = config.validate().unwrap_err();
        assert!(err.to_string().contains("client_timeout_ms"), "{err}");
        let config = Config {
            host: "not a host".into(),
            ..Config::default()
        };
        assert!(config.validate().unwrap_err().to_string().contains("host"));
    }

    #[test]
    fn trusted_proxies_and_the_drain_are_checked_naming_the_key() {
        let config = Config {
            trusted_proxies: vec!["127.0.0.1/32".into(), "10.0.0.0/8".into(), "::1".into()],
            shutdown_drain_ms: 10_000,
            ..Config::default()
        };
        assert!(config.validate().is_ok());
        let config = Config {
            trusted_proxies: vec!["10.0.0.0/8".into(), "10.0.0.0/40".into()],
            ..Config::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(
            err.contains("`trusted_proxies`") && err.contains("10.0.0.0/40"),
            "{err}"
        );
        let config = Config {
            shutdown_drain_ms: MAX_SHUTDOWN_DRAIN_MS + 1,
            ..Config::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("`shutdown_drain_ms`"), "{err}");
        // From the environment, a comma-separated list.
        let env = Overrides::from_env(env(&[(
            "HERALD_TRUSTED_PROXIES",
            "127.0.0.1/32, 10.0.0.0/8",
        )]))
        .unwrap();
        let config = Config::load(&Overrides {
            config_path: Some(PathBuf::from("/dev/null")),
            ..env
        })
        .unwrap();
        assert_eq!(config.trusted_proxies, ["127.0.0.1/32", "10.0.0.0/8"]);
    }

    #[test]
    fn the_replay_budget_must_hold_one_message() {
        let config = Config {
            max_message_bytes: 64 * 1024,
            max_replay_bytes: 1024,
            ..Config::default()
        };
        let err = config.validate().unwrap_err();
        assert!(err.to_string().contains("max_replay_bytes"), "{err}");
    }

    #[test]
    fn env_then_flags_override_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "host = \"0.0.0.0\"\nport = 7000\nworkers = 3\n").unwrap();

        let from_env = Overrides::from_env(env(&[
            ("HERALD_CONFIG", path.to_str().unwrap()),
            ("HERALD_PORT", "7100"),
        ]))
        .unwrap();
        let config = Config::load(&from_env).unwrap();
        assert_eq!(
            (config.host.as_str(), config.port, config.workers),
            ("0.0.0.0", 7100, 3)
        );

        let flags = Overrides {
            host: Some("127.0.0.2".into()),
            port: Some(7200),
            ..Overrides::default()
        };
        let config = Config::load(&from_env.overridden_by(flags)).unwrap();
        assert_eq!((config.host.as_str(), config.port), ("127.0.0.2", 7200));
    }

    #[test]
    fn secrets_come_from_the_environment_and_are_never_printed() {
        let overrides = Overrides::from_env(env(&[
            (
                "HERALD_PUBLISH_KEYS",
                "key-one-0123456789, key-two-0123456789",
            ),
            (
                "HERALD_CLIENT_SECRET",
                "a-client-secret-of-at-least-32-bytes",
            ),
        ]))
        .unwrap();
        let config = Config::load(&Overrides {
            config_path: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("config.toml")),
            ..overrides
        })
        .unwrap();
        assert_eq!(config.publish_keys.len(), 2);
        assert_eq!(config.publish_keys[1].expose(), "key-two-0123456789");
        config.validate().unwrap();
        let printed = format!("{config:?}");
        assert!(!printed.contains("key-one"), "{printed}");
        assert!(!printed.contains("a-client-secret"), "{printed}");
        let printed = config.to_redacted_toml();
        assert!(!printed.contains("key-one"), "{printed}");
        assert!(!printed.contains("a-client-secret"), "{printed}");
        assert!(printed.contains(REDACTED), "{printed}");
    }

    #[test]
    fn every_key_comes_from_its_variable_above_the_file_and_below_the_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "port = 7000
max_connections = 5
[broker]
prefix = \"p\"\n",
        )
        .unwrap();
        let env = Overrides::from_env(env(&[
            ("HERALD_CONFIG", path.to_str().unwrap()),
            ("HERALD_MAX_CONNECTIONS", "77"),
            (
                "HERALD_ALLOWED_ORIGINS",
                "https://a.example, https://b.example",
            ),
            ("HERALD_ECHO_ROUTE", "true"),
            ("HERALD_BROKER__KIND", "redis"),
            (
                "HERALD_BROKER__URL",
                "redis://:hunter2-hunter2@10.0.0.1:6379",
            ),
        ]))
        .unwrap();
        let flags = Overrides {
            port: Some(7300),
            ..Overrides::default()
        };
        let config = Config::load(&env.overridden_by(flags)).unwrap();
        assert_eq!(config.port, 7300);
        assert_eq!(config.max_connections, 77);
        assert_eq!(config.allowed_origins.len(), 2);
        assert!(config.echo_route);
        assert_eq!(config.broker.kind, BrokerKind::Redis);
        assert_eq!(
            config.broker.prefix, "p",
            "the file's other [broker] keys stay"
        );
        let printed = config.to_redacted_toml();
        assert!(!printed.contains("hunter2"), "{printed}");
        assert!(
            printed.contains("redis://:<redacted>@10.0.0.1:6379"),
            "{printed}"
        );
    }

    #[test]
    fn passwords_in_any_part_of_a_redis_url_are_redacted() {
        for (url, shown) in [
            ("redis://u:pw1@h:1/0", "redis://u:<redacted>@h:1/0"),
            ("redis://pw2@h", "redis://<redacted>@h"),
            (
                "redis+unix:///tmp/r.sock?db=1&pass=pw3",
                "redis+unix:///tmp/r.sock?db=1&pass=<redacted>",
            ),
            (
                "unix:///tmp/r.sock?Password=pw4",
                "unix:///tmp/r.sock?Password=<redacted>",
            ),
            ("redis://h:6379", "redis://h:6379"),
        ] {
            assert_eq!(redact_url_password(url), shown);
        }
    }

    #[test]
    fn a_broken_config_file_is_reported_without_its_text() {
        for text in [
            "client_secret = \"S3cret-S3cret-S3cret-S3cret-S3cret\n",
            "publish_keys = [\"S3cret-key-0123456\" \"x\"]\n",
            "publish_keys = \"S3cret-key-0123456\"\n",
        ] {
            let err = Config::from_toml(text, Path::new("bad.toml"))
                .unwrap_err()
                .to_string();
            assert!(!err.contains("S3cret"), "{err}");
            assert!(err.contains("line 1"), "{err}");
        }
    }

    #[test]
    fn a_variable_of_the_wrong_kind_names_the_variable() {
        for (var, value) in [
            ("HERALD_PORT", "70000"),
            ("HERALD_BROKER__KIND", "postgres"),
            ("HERALD_WORKERS", "-1"),
        ] {
            let overrides = Overrides::from_env(env(&[(var, value)])).unwrap();
            let err = Config::load(&overrides).unwrap_err().to_string();
            assert!(err.contains(var), "{var}: {err}");
        }
    }

    #[test]
    fn the_printed_configuration_reads_back_the_same() {
        let config = Config {
            port: 9100,
            allowed_origins: vec!["https://a.example".into()],
            ..Config::default()
        };
        let text = config.to_redacted_toml();
        let back = Config::from_toml(&text, Path::new("printed.toml")).unwrap();
        back.validate().unwrap();
        assert_eq!(format!("{back:?}"), format!("{config:?}"));
        let with_secret = Config {
            client_secret: Secret::new("a-client-secret-of-at-least-32-bytes"),
            ..Config::default()
        };
        let back = Config::from_toml(&with_secret.to_redacted_toml(), Path::new("p")).unwrap();
        let err = back.validate().unwrap_err().to_string();
        assert!(
            err.contains("client_secret") && err.contains("placeholder"),
            "{err}"
        );
    }

    #[test]
    fn weak_or_missing_secrets_refuse_to_start() {
        let config = Config {
            require_token: true,
            ..Config::default()
        };
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("client_secret"));
        let config = Config {
            client_secret: Secret::new("short"),
            ..Config::default()
        };
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("32 bytes"));
        let config = Config {
            publish_keys: vec![Secret::new("abc")],
            ..Config::default()
        };
        assert!(config
            .validate()
            .unwrap_err()
            .to_string()
            .contains("publish_keys"));
    }

    #[test]
    fn allowed_origins_must_be_origins() {
        for good in [
            "https://example.com",
            "http://localhost:3000",
            "http://[::1]:8080",
            "https://xn--bcher-kva.example",
            "*",
        ] {
            let config = Config {
                allowed_origins: vec![good.into()],
                ..Config::default()
            };
            assert!(config.validate().is_ok(), "{good}");
        }
        for bad in [
            "example.com",
            "https://example.com/path",
            "ftp://x",
            "https://*.example.com",
            "http://bücher.example",
        ] {
            let config = Config {
                allowed_origins: vec![bad.into()],
                ..Config::default()
            };
            assert!(config.validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn tcp_caps_sit_above_the_session_caps() {
        let config = Config {
            max_tcp_connections: 100,
            max_connections: 200,
            ..Config::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("max_tcp_connections"), "{err}");
        let config = Config {
            max_tcp_connections_per_ip: 10,
            ..Config::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("max_tcp_connections_per_ip"), "{err}");
        for len in [0, 31, 129] {
            let config = Config {
                ipv6_limit_prefix_len: len,
                ..Config::default()
            };
            assert!(config.validate().is_err(), "{len}");
        }
        let config = Config {
            keep_alive_timeout_ms: 999,
            ..Config::default()
        };
        let err = config.validate().unwrap_err().to_string();
        assert!(err.contains("keep_alive_timeout_ms"), "{err}");
    }

    #[test]
    fn allowed_hosts_must_be_host_names() {
        for good in ["rt.example.com", "herald", "*", "10.0.0.5"] {
            let config = Config {
                allowed_hosts: vec![good.into()],
                ..Config::default()
            };
            assert!(config.validate().is_ok(), "{good}");
        }
        for bad in [
            "https://rt.example.com",
            "rt.example.com:443",
            "a b",
            "",
            "rt.example.com.",
        ] {
            let config = Config {
                allowed_hosts: vec![bad.into()],
                ..Config::default()
            };
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains("allowed_hosts"), "{bad}: {err}");
        }
    }

    #[test]
    fn a_bad_env_port_names_the_variable() {
        let err = Overrides::from_env(env(&[("HERALD_PORT", "eighty")])).unwrap_err();
        assert!(err.to_string().contains("HERALD_PORT"), "{err}");
    }

    #[test]
    fn a_named_config_file_must_exist() {
        let overrides = Overrides {
            config_path: Some("/nonexistent/herald.toml".into()),
            ..Overrides::default()
        };
        let err = Config::load(&overrides).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/herald.toml"),
            "{err}"
        );
    }
}
