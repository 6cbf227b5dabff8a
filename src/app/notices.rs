//! What herald logs at startup about its settings: the broker it uses, and
//! each setting that exposes more than the defaults do, once, when it
//! starts, so that an operator reads it in the first lines.

use crate::auth;
use crate::client_addr::TrustedProxies;
use crate::config::{BrokerKind, Config};

/// The Redis in use, or the `[broker]` settings a memory broker ignores.
pub(super) fn broker(config: &Config, kind: BrokerKind) {
    if kind == BrokerKind::Redis {
        log::info!(target: super::LOG_TARGET,
            "broker: redis at {}",
            crate::config::redact_url_password(&config.broker.url)
        );
    }
    let unused = config.broker.unused_settings();
    if !unused.is_empty() {
        log::warn!(target: super::LOG_TARGET,
            "broker.kind is \"memory\", which ignores {}: this node works alone; \
             for a node of a cluster on Redis set broker.kind = \"redis\" \
             (HERALD_BROKER__KIND=redis)",
            unused.join(", ")
        );
    }
}

/// The `/echo` route, and answering to any `Host`.
pub(super) fn routes(config: &Config) {
    if config.echo_route {
        log::warn!(target: super::LOG_TARGET, "echo_route is on: /echo sends back every message (for compliance tests only)");
    }
    if config.allowed_hosts.iter().any(|h| h == "*") {
        log::warn!(target: super::LOG_TARGET,
            "allowed_hosts has \"*\": herald answers to any Host name, so a page on a \
             rebound DNS name can read /stats, /metrics and /poll from this machine"
        );
    }
}

/// Who may publish and read `/metrics` and `/stats` without a key, and
/// which proxies name clients.
pub(super) fn exposure(config: &Config, proxies: &TrustedProxies) {
    if let Some(warning) = auth::keyless_exposure_warning(
        &config.host,
        config.trust_loopback,
        &config.publish_keys,
        &config.admin_keys,
    ) {
        log::warn!(target: super::LOG_TARGET, "{warning}");
    }
    if !proxies.is_empty() {
        log::info!(target: super::LOG_TARGET,
            "trusted proxies: {}; their X-Forwarded-For or Forwarded header names the client",
            config.trusted_proxies.join(", ")
        );
    }
    for warning in proxies.warnings() {
        log::warn!(target: super::LOG_TARGET, "{warning}");
    }
    if proxies.covers_loopback() && config.trust_loopback {
        let keyless: Vec<&str> = [
            (
                config.publish_keys.is_empty(),
                "publishing (set publish_keys)",
            ),
            (
                config.admin_keys.is_empty(),
                "/metrics and /stats (set admin_keys)",
            ),
        ]
        .into_iter()
        .filter_map(|(empty, what)| empty.then_some(what))
        .collect();
        if !keyless.is_empty() {
            log::warn!(target: super::LOG_TARGET,
                "trusted_proxies covers a loopback address: peers there are proxies, never \
                 local, so keyless {} from this machine is refused",
                keyless.join(" and ")
            );
        }
    }
}

/// Who may publish when no publish key is set.
pub(super) fn publishing(config: &Config) {
    if config.publish_keys.is_empty() {
        if config.trust_loopback {
            log::info!(target: super::LOG_TARGET, "no publish_keys configured: publishing is accepted from this machine only");
        } else {
            log::warn!(target: super::LOG_TARGET, "no publish_keys configured and trust_loopback = false: nobody can publish");
        }
    }
}
