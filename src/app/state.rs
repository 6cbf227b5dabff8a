//! What every worker shares: the settings the handlers read, the policies
//! built from the config, the metrics and the broker, built once.

use std::sync::Arc;
use std::time::Instant;

use super::StartError;
use crate::auth::{KeyAuth, OriginPolicy, PublisherAuth};
use crate::broker::Broker;
use crate::client_addr::TrustedProxies;
use crate::config::Config;
use crate::hub::admission::Admission;
use crate::hub::session::SessionSettings;
use crate::limits::ConnectionLimiter;
use crate::metrics::Metrics;
use crate::routes::ready::Draining;
use crate::routes::Shared;
use crate::token::TokenVerifier;

/// The console page served at `/`: `None` with `console = false`, the
/// built-in page, or `console_template` read now.
pub(super) fn console_page(config: &Config) -> Result<Option<bytes::Bytes>, StartError> {
    Ok(if !config.console {
        None
    } else if config.console_template.as_os_str().is_empty() {
        Some(bytes::Bytes::from_static(crate::assets::CONSOLE_PAGE))
    } else {
        let page =
            std::fs::read(&config.console_template).map_err(|source| StartError::Console {
                path: config.console_template.clone(),
                source,
            })?;
        Some(page.into())
    })
}

/// The verifier of client tokens; `None` when `client_secret` is empty
/// (signed identity off).
pub(super) fn token_verifier(config: &Config) -> Result<Option<TokenVerifier>, StartError> {
    if config.client_secret.is_empty() {
        return Ok(None);
    }
    TokenVerifier::new(&config.client_secret, &config.token_audience)
        .map(Some)
        .map_err(StartError::Token)
}

/// The state every worker's handlers share, from the config and what was
/// built from it at startup.
pub(super) fn shared(
    config: &Config,
    console_page: Option<bytes::Bytes>,
    tokens: Option<TokenVerifier>,
    broker: Arc<dyn Broker>,
    metrics: &Arc<Metrics>,
    proxies: &TrustedProxies,
    draining: &Arc<Draining>,
) -> Shared {
    Shared {
        console_page,
        max_message_bytes: config.max_message_bytes,
        remember_idempotency_keys: config.idempotency_limits().enabled(),
        session_settings: Arc::new(SessionSettings {
            heartbeat_interval: config.heartbeat_interval(),
            client_timeout: config.client_timeout(),
            max_frame_bytes: config.max_frame_bytes,
            max_pending_messages: config.max_pending_messages,
            max_channels: config.max_channels_per_session,
            frames_per_sec: config.max_client_frames_per_sec,
            admission: Admission {
                private_prefix: config.private_channel_prefix.clone(),
                tokens,
                require_token: config.require_token,
            },
            metrics: metrics.clone(),
        }),
        publishers: PublisherAuth::publishers(&config.publish_keys, config.trust_loopback),
        admins: KeyAuth::admins(&config.admin_keys, config.trust_loopback),
        metrics: metrics.clone(),
        origins: OriginPolicy::new(&config.allowed_origins),
        connections: ConnectionLimiter::new(
            config.max_connections,
            config.max_connections_per_ip,
            config.ipv6_limit_prefix_len,
        ),
        proxies: proxies.clone(),
        draining: draining.clone(),
        broker,
        poll_timeout_secs: config.poll_timeout_secs,
        started_at: Instant::now(),
    }
}
