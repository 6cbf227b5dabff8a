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
    /// With the redis broker: the nodes seen in the last few seconds and
    /// their sessions in all (`null` when Redis cannot be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<Option<Cluster>>,
    /// Messages and bytes held in history.
    history_messages: usize,
    history_bytes: usize,
}

/// How long `/health` waits for Redis's view of the cluster.
const CLUSTER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(300);

#[derive(Serialize)]
struct Cluster {
    nodes: usize,
    sessions: usize,
}

pub async fn health(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let counts = state.server.send(GetCounts).await?;
    let cluster = match &state.broker {
        None => None,
        // Health must answer while Redis is away: it waits for it briefly.
        Some(broker) => Some(
            actix_web::rt::time::timeout(CLUSTER_READ_TIMEOUT, broker.cluster())
                .await
                .ok()
                .flatten()
                .map(|(nodes, sessions)| Cluster { nodes, sessions }),
        ),
    };
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
        cluster,
        seq: counts.seq,
        history_messages: counts.history_messages,
        history_bytes: counts.history_bytes,
    }))
}
