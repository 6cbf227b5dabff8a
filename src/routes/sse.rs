//! `GET /events`: Server-Sent Events, for clients whose WebSocket is broken
//! by a proxy (or who only listen).
//!
//! The same query as `/ws` ([`super::query`]); a `Last-Event-ID` header
//! (`<epoch>:<seq>`, as the browser's EventSource sends it on reconnect)
//! resumes from there and wins over `since`/`epoch` in the URL, which stay
//! as they were when the page opened. The same checks as the WebSocket
//! upgrade; with `require_token`, the token must be in the URL (401 without).
//! The stream starts once the join is answered: a resume the broker cannot
//! read now is answered 503 `broker_unavailable` with `Retry-After`, not a
//! `reset`, since the history is not known to be lost.

use actix::Actor;
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::query::ClientQuery;
use super::AppState;
use crate::error::ApiError;
use crate::hub::messages::NotJoined;
use crate::hub::SseSession;
use crate::protocol::Position;

pub async fn events(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.origins.check(req.headers())?;
    let mut query = ClientQuery::parse(req.query_string(), state.session_settings.max_channels)?;
    if let Some(last) = req.headers().get("last-event-id") {
        let last = last
            .to_str()
            .map_err(|_| ApiError::InvalidQuery("Last-Event-ID is not text".into()))?;
        query.resume = Some(Position::parse_event_id(last).map_err(ApiError::InvalidQuery)?);
    }
    let start = query.into_start(&state.session_settings)?;
    let peer = state.client_addr(&req);
    let permit = state.connections.try_acquire(peer.map(|p| p.ip()))?;
    let (session, body, joined) = SseSession::new(
        state.server.clone(),
        peer,
        state.session_settings.clone(),
        start,
        permit,
    );
    session.start();
    // A session that stopped without answering: NotifyServer is gone.
    joined
        .await
        .unwrap_or(Err(NotJoined::ServerGone))
        .map_err(not_joined)?;
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(body))
}

/// The answer to a join that was not taken: 503, to retry later.
pub(super) fn not_joined(refusal: NotJoined) -> ApiError {
    match refusal {
        NotJoined::ServerGone => ApiError::Unavailable,
        NotJoined::RetryLater => ApiError::ResumeLater,
    }
}
