//! `GET /poll`: long-polling, for clients behind proxies that break
//! streaming.
//!
//! The same query as `/ws` ([`super::query`]) and the same checks as
//! `/events`. With `since`/`epoch`, the messages missed since then are
//! answered at once: `{"messages":[<message frames>],"epoch":"E","seq":S}`,
//! where `S` is the position to send as `since` next time; or
//! `{"type":"reset",…}` when they cannot all be recovered; 503
//! `broker_unavailable` with `Retry-After` when the broker cannot be read
//! now (the history is kept: poll again later from the same position). When there is
//! nothing to answer, the request waits up to `poll_timeout_secs` for the
//! next message and answers with it, or with an empty list. The answer is
//! streamed, its headers sent at once; how it waits and why it writes
//! spaces meanwhile is in [`hub::poll`].

use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};

use super::query::ClientQuery;
use super::AppState;
use crate::error::ApiError;
use crate::hub;
use crate::hub::poll::PollRequest;

pub async fn poll(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.origins.check(req.headers())?;
    let start = ClientQuery::parse(req.query_string(), state.session_settings.max_channels)?
        .into_start(&state.session_settings)?;
    let peer = state.client_addr(&req);
    let permit = state.connections.try_acquire(peer.map(|p| p.ip()))?;
    let request = PollRequest {
        peer,
        admitted: state.session_settings.admission.admit(start),
        timeout: Duration::from_secs(state.poll_timeout_secs),
    };
    let body = hub::poll::answer(&state.server, request, permit)
        .await
        .map_err(super::sse::not_joined)?;
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(body))
}
