//! `GET /health`: liveness and the size of the registry.

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::AppState;
use crate::error::ApiError;
use crate::hub::messages::GetCounts;

#[derive(Serialize)]
struct Health<'a> {
    status: &'static str,
    uptime_secs: u64,
    /// Open WebSocket sessions.
    sessions: usize,
    /// Distinct registered ids.
    ids: usize,
    /// Channels with at least one subscriber.
    channels: usize,
    /// This lifetime's epoch and latest seq: the server's position.
    epoch: &'a str,
    seq: u64,
    /// `memory`, or `redis` with whether this node's subscription is up.
    broker: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    broker_connected: Option<bool>,
    /// Messages and bytes held in history.
    history_messages: usize,
    history_bytes: usize,
}

pub async fn health(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let counts = state.server.send(GetCounts).await?;
    Ok(HttpResponse::Ok().json(Health {
        status: "ok",
        uptime_secs: state.started_at.elapsed().as_secs(),
        sessions: counts.sessions,
        ids: counts.ids,
        channels: counts.channels,
        epoch: &state.epoch,
        broker: if state.broker.is_some() {
            "redis"
        } else {
            "memory"
        },
        broker_connected: state.broker.as_ref().map(|b| b.is_subscribed()),
        seq: counts.seq,
        history_messages: counts.history_messages,
        history_bytes: counts.history_bytes,
    }))
}
