//! `GET /ws`: upgrade to a WebSocket session.
//!
//! The query ([`super::query`]) registers, subscribes and resumes at
//! connect. Refused before the upgrade, with a JSON error: a foreign
//! `Origin` (403), too many connections (503 / 429), a bad id, channel or
//! query (400), an invalid token (401), a private channel the token does not
//! list (403).

use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;

use super::query::ClientQuery;
use super::AppState;
use crate::error::ApiError;
use crate::hub::session::{self, echo::EchoSession};
use crate::hub::WsSession;

/// `GET /echo` (only with `echo_route = true`): a WebSocket that reads the
/// connection as a session does and sends back every message, for
/// protocol-compliance suites.
pub async fn echo(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    ws::handshake(&req).map_err(|e| ApiError::BadUpgrade(e.to_string()))?;
    let peer = state.client_addr(&req);
    let permit = state.connections.try_acquire(peer.map(|p| p.ip()))?;
    let session = EchoSession::new(state.session_settings.clone(), permit);
    session
        .start(&req, stream)
        .map_err(|e| ApiError::BadUpgrade(e.to_string()))
}

pub async fn upgrade(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.origins.check(req.headers())?;
    ws::handshake(&req).map_err(|e| ApiError::BadUpgrade(e.to_string()))?;
    let start = ClientQuery::parse(req.query_string(), state.session_settings.max_channels)?
        .into_ws_start(&state.session_settings)?;
    let peer = state.client_addr(&req);
    let permit = state.connections.try_acquire(peer.map(|p| p.ip()))?;
    let session = WsSession::new(
        state.server.clone(),
        peer,
        state.session_settings.clone(),
        start,
        permit,
    );
    session::start(session, &req, stream).map_err(|e| ApiError::BadUpgrade(e.to_string()))
}
