//! The rules no type can express, checked once at startup: each error
//! names the key at fault.

use std::net::IpAddr;

use super::{BrokerKind, Config, ConfigError, REDACTED};

/// Shortest `client_secret` accepted, in bytes (HS256 wants 256 bits).
pub const MIN_CLIENT_SECRET_BYTES: usize = 32;
/// Shortest publish key accepted, in bytes.
pub const MIN_PUBLISH_KEY_BYTES: usize = 16;
/// Longest `shutdown_drain_ms` accepted: far past any orchestrator's
/// grace period, so a larger value is a mistake (seconds times 1000 twice).
pub const MAX_SHUTDOWN_DRAIN_MS: u64 = 600_000;

impl Config {
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
        self.validate_idempotency()
    }

    fn validate_idempotency(&self) -> Result<(), ConfigError> {
        use crate::idempotency::{MAX_IDEMPOTENCY_KEYS, MAX_IDEMPOTENCY_WINDOW_SECS};
        let (key, reason) = if self.idempotency_window_secs > MAX_IDEMPOTENCY_WINDOW_SECS {
            (
                "idempotency_window_secs",
                format!("must be at most {MAX_IDEMPOTENCY_WINDOW_SECS} (a day), in seconds"),
            )
        } else if !(1..=MAX_IDEMPOTENCY_KEYS).contains(&self.idempotency_max_keys) {
            (
                "idempotency_max_keys",
                format!("must be between 1 and {MAX_IDEMPOTENCY_KEYS}"),
            )
        } else {
            return Ok(());
        };
        Err(ConfigError::Invalid { key, reason })
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::tests::env;
    use crate::config::{Overrides, Secret};

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
}
