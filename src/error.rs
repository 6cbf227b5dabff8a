//! Errors a client of the HTTP API can see, and their one mapping to HTTP:
//! a status code and a JSON body `{"error": "<clear reason>", "code": "<stable code>"}`.
//! The layers below return errors of their own (`AuthError`, `UnknownHost`,
//! `LimitExceeded`, `TokenError`, `BrokerError`, ...); this is the one place
//! that turns them into HTTP answers.

use actix_web::http::{header, StatusCode};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::auth::AuthError;
use crate::broker::BrokerError;
use crate::host::UnknownHost;
use crate::ids::{ChannelError, IdError};
use crate::limits::LimitExceeded;
use crate::token::TokenError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or empty field `message`")]
    MissingMessage,
    #[error("invalid field `id`: {0}")]
    InvalidId(IdError),
    #[error("invalid channel: {0}")]
    InvalidChannel(ChannelError),
    #[error("give at most one of `id` and `channel`")]
    TargetConflict,
    /// An idempotency key that is malformed, or given twice differently.
    #[error("{0}")]
    BadIdempotencyKey(String),
    #[error("{0}")]
    MalformedBody(String),
    #[error("body is larger than max_message_bytes ({limit} bytes)")]
    TooLarge { limit: usize },
    #[error("unsupported content type {0:?}: send application/x-www-form-urlencoded or application/json")]
    UnsupportedMediaType(String),
    #[error("invalid query string: {0}")]
    InvalidQuery(String),
    #[error("too many channels: at most {0} per session (max_channels_per_session)")]
    TooManyChannels(usize),
    #[error("not a WebSocket upgrade request: {0}")]
    BadUpgrade(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("invalid token: {0}")]
    InvalidToken(TokenError),
    #[error("{0}")]
    Forbidden(String),
    /// A `Host` header herald does not answer to (DNS rebinding, or a name
    /// missing from `allowed_hosts`).
    #[error("{0}")]
    UnknownHost(String),
    #[error("no such resource")]
    NotFound,
    #[error("method not allowed on this resource")]
    MethodNotAllowed,
    #[error("too many connections from this address (max_connections_per_ip)")]
    TooManyConnectionsFromIp,
    #[error("the server is at its connection limit (max_connections); retry later")]
    ServerFull,
    #[error("the notification hub is not running")]
    Unavailable,
    /// `GET /ready` while the broker cannot take publishes; the broker's
    /// error.
    #[error("not ready: the broker (Redis) cannot take publishes now ({0}), so nothing can be published or delivered across nodes")]
    BrokerDisconnected(String),
    /// A resume (`Last-Event-ID` or `since` on `/events`, `since` on
    /// `/poll`) while the broker's history cannot be read: it is not lost,
    /// so the client is asked to come back rather than reset.
    #[error("the message broker (Redis) cannot be read now; the history is kept: resume from the same position later")]
    ResumeLater,
    /// `GET /ready` from the first stop signal until exit.
    #[error("not ready: shutting down")]
    ShuttingDown,
    /// A publish the broker did not take: 503 `broker_unavailable` when it
    /// is known not to be published, 504 `broker_timeout` with
    /// `"published": "unknown"` when it may have been.
    #[error("{0}; {outcome}", outcome = .0.outcome())]
    Broker(BrokerError),
}

impl ApiError {
    /// A stable, machine-readable name for the error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingMessage => "missing_message",
            Self::InvalidId(_) => "invalid_id",
            Self::InvalidChannel(_) => "invalid_channel",
            Self::TargetConflict => "target_conflict",
            Self::BadIdempotencyKey(_) => "bad_idempotency_key",
            Self::MalformedBody(_) => "malformed_body",
            Self::TooLarge { .. } => "body_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::InvalidQuery(_) => "invalid_query",
            Self::TooManyChannels(_) => "too_many_channels",
            Self::BadUpgrade(_) => "bad_upgrade",
            Self::Unauthorized(_) => "unauthorized",
            Self::InvalidToken(_) => "invalid_token",
            Self::Forbidden(_) => "forbidden",
            Self::UnknownHost(_) => "unknown_host",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::TooManyConnectionsFromIp => "too_many_connections",
            Self::ServerFull => "server_full",
            Self::Unavailable => "unavailable",
            Self::Broker(e) if e.outcome_unknown() => "broker_timeout",
            Self::Broker(_) | Self::ResumeLater => "broker_unavailable",
            Self::BrokerDisconnected(_) => "broker_disconnected",
            Self::ShuttingDown => "shutting_down",
        }
    }

    /// Seconds to wait before trying again, sent as `Retry-After` with
    /// every 429 and 503 (and only with those).
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            // A place frees when one of the address's sessions ends, which
            // nothing predicts; long enough not to hammer, short enough
            // for a closed tab to have freed one.
            Self::TooManyConnectionsFromIp => Some(10),
            Self::ServerFull => Some(10),
            // A publish whose outcome is unknown (504) is retried at once,
            // with its idempotency key.
            Self::Broker(e) if e.outcome_unknown() => None,
            // The Redis connection is retried with a backoff that tops out
            // at 5 s.
            Self::Broker(_)
            | Self::BrokerDisconnected(_)
            | Self::ResumeLater
            | Self::Unavailable => Some(5),
            // This node is going away: its clients belong elsewhere.
            Self::ShuttingDown => Some(30),
            _ => None,
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: String,
    code: &'a str,
    /// `"unknown"` when the message may or may not have been published.
    #[serde(skip_serializing_if = "Option::is_none")]
    published: Option<&'static str>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::MissingMessage
            | Self::InvalidId(_)
            | Self::InvalidChannel(_)
            | Self::TargetConflict
            | Self::BadIdempotencyKey(_)
            | Self::MalformedBody(_)
            | Self::InvalidQuery(_)
            | Self::TooManyChannels(_)
            | Self::BadUpgrade(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) | Self::InvalidToken(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::UnknownHost(_) => StatusCode::MISDIRECTED_REQUEST,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::TooManyConnectionsFromIp => StatusCode::TOO_MANY_REQUESTS,
            Self::Broker(e) if e.outcome_unknown() => StatusCode::GATEWAY_TIMEOUT,
            Self::ServerFull
            | Self::Unavailable
            | Self::Broker(_)
            | Self::BrokerDisconnected(_)
            | Self::ResumeLater
            | Self::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if self.status_code() == StatusCode::UNAUTHORIZED {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        if let Some(secs) = self.retry_after_secs() {
            response.insert_header((header::RETRY_AFTER, secs));
        }
        let published = match self {
            Self::Broker(e) if e.outcome_unknown() => Some("unknown"),
            _ => None,
        };
        response.json(ErrorBody {
            error: self.to_string(),
            code: self.code(),
            published,
        })
    }
}

/// A session over a connection cap: 503 for the total, 429 per address.
impl From<LimitExceeded> for ApiError {
    fn from(limit: LimitExceeded) -> Self {
        match limit {
            LimitExceeded::Total => Self::ServerFull,
            LimitExceeded::PerAddress => Self::TooManyConnectionsFromIp,
        }
    }
}

/// A refused publisher, operator or web origin: 401 without valid
/// credentials (with `WWW-Authenticate: Bearer`), 403 otherwise.
impl From<AuthError> for ApiError {
    fn from(refusal: AuthError) -> Self {
        if refusal.is_unauthenticated() {
            Self::Unauthorized(refusal.to_string())
        } else {
            Self::Forbidden(refusal.to_string())
        }
    }
}

/// A `Host` herald does not answer to: 421.
impl From<UnknownHost> for ApiError {
    fn from(refusal: UnknownHost) -> Self {
        Self::UnknownHost(refusal.to_string())
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(_: actix::MailboxError) -> Self {
        Self::Unavailable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_429_and_503_says_when_to_retry_and_nothing_else_does() {
        let errors = [
            ApiError::TooManyConnectionsFromIp,
            ApiError::ServerFull,
            ApiError::Unavailable,
            ApiError::Broker(BrokerError::Unavailable("down".into())),
            ApiError::Broker(BrokerError::TimedOut { ms: 1000 }),
            ApiError::BrokerDisconnected("down".into()),
            ApiError::ResumeLater,
            ApiError::ShuttingDown,
            ApiError::MissingMessage,
            ApiError::Forbidden("no".into()),
            ApiError::Unauthorized("no".into()),
            ApiError::NotFound,
            ApiError::TooLarge { limit: 1 },
        ];
        for error in errors {
            let response = error.error_response();
            let status = response.status();
            let retry = response.headers().get(header::RETRY_AFTER);
            if matches!(
                status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            ) {
                let secs: u64 = retry
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("{error:?}: no Retry-After"));
                assert!(secs > 0, "{error:?}");
            } else {
                assert!(retry.is_none(), "{error:?}: Retry-After on {status}");
            }
        }
    }

    #[test]
    fn a_publish_is_503_only_when_known_unpublished_and_504_when_unknown() {
        let answer = |error: BrokerError| {
            let error = ApiError::Broker(error);
            let status = error.error_response().status().as_u16();
            (status, error.code(), error.to_string())
        };
        let (status, code, text) = answer(BrokerError::Unavailable("refused".into()));
        assert_eq!((status, code), (503, "broker_unavailable"));
        assert!(text.ends_with("the message was not published"), "{text}");
        for error in [
            BrokerError::TimedOut { ms: 200 },
            BrokerError::Interrupted("reset".into()),
        ] {
            let (status, code, text) = answer(error);
            assert_eq!((status, code), (504, "broker_timeout"));
            assert!(
                text.contains("retry with the same idempotency key"),
                "{text}"
            );
        }
    }

    #[test]
    fn refusals_from_below_keep_their_status_and_code() {
        let answer = |error: ApiError| (error.status_code().as_u16(), error.code());
        let wrong_key = AuthError::WrongKey { role: "publish" };
        assert_eq!(answer(wrong_key.into()), (401, "unauthorized"));
        assert_eq!(answer(AuthError::OriginRefused.into()), (403, "forbidden"));
        let host = UnknownHost::NotAllowed("evil.test".into());
        assert_eq!(answer(host.into()), (421, "unknown_host"));
    }
}
