//! For operators: `GET /metrics` (Prometheus text) and `GET /stats` (JSON).
//! Both need an admin key (`admin_keys`) or, while none is configured, a
//! direct loopback peer.

use actix_web::{web, HttpRequest, HttpResponse};

use super::AppState;
use crate::error::ApiError;
use crate::hub::messages::GetStats;

/// Channels listed in `/stats`.
const TOP_CHANNELS: usize = 10;

/// How long `/metrics` waits for the broker's count of idempotency keys.
const KEYS_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(300);

pub async fn metrics(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.admins.check(req.headers(), state.direct_peer(&req))?;
    let broker_up = state.broker.connected().unwrap_or(true);
    state.metrics.broker_up.set(i64::from(broker_up));
    // Read briefly: with Redis away the gauge keeps its last value.
    let keys = actix_web::rt::time::timeout(KEYS_READ_TIMEOUT, state.broker.remembered_keys());
    if let Ok(Some(keys)) = keys.await {
        state.metrics.idempotency_keys.set(keys as i64);
    }
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render()))
}

pub async fn stats(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.admins.check(req.headers(), state.direct_peer(&req))?;
    let stats = state.server.send(GetStats { top: TOP_CHANNELS }).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "uptime_secs": state.started_at.elapsed().as_secs(),
        "epoch": state.broker.epoch(),
        "broker": state.broker.kind().as_str(),
        "node": stats,
    })))
}
