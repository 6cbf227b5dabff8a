//! Errors a client of the HTTP API can see, and their one mapping to HTTP:
//! a status code and a JSON body `{"error": "<clear reason>", "code": "<stable code>"}`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::ids::IdError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("missing or empty field `message`")]
    MissingMessage,
    #[error("invalid field `id`: {0}")]
    InvalidId(IdError),
    #[error("{0}")]
    MalformedBody(String),
    #[error("body is larger than max_message_bytes ({limit} bytes)")]
    TooLarge { limit: usize },
    #[error("unsupported content type {0:?}: send application/x-www-form-urlencoded or application/json")]
    UnsupportedMediaType(String),
    #[error("invalid query string: {0}")]
    InvalidQuery(String),
    #[error("not a WebSocket upgrade request: {0}")]
    BadUpgrade(String),
    #[error("no such resource")]
    NotFound,
    #[error("method not allowed on this resource")]
    MethodNotAllowed,
    #[error("the notification hub is not running")]
    Unavailable,
}

impl ApiError {
    /// A stable, machine-readable name for the error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingMessage => "missing_message",
            Self::InvalidId(_) => "invalid_id",
            Self::MalformedBody(_) => "malformed_body",
            Self::TooLarge { .. } => "body_too_large",
            Self::UnsupportedMediaType(_) => "unsupported_media_type",
            Self::InvalidQuery(_) => "invalid_query",
            Self::BadUpgrade(_) => "bad_upgrade",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Unavailable => "unavailable",
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: String,
    code: &'a str,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::MissingMessage
            | Self::InvalidId(_)
            | Self::MalformedBody(_)
            | Self::InvalidQuery(_)
            | Self::BadUpgrade(_) => StatusCode::BAD_REQUEST,
            Self::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(ErrorBody {
            error: self.to_string(),
            code: self.code(),
        })
    }
}

impl From<actix::MailboxError> for ApiError {
    fn from(_: actix::MailboxError) -> Self {
        Self::Unavailable
    }
}
