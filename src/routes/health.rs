//! `GET /health`: liveness, the counts `NotifyServer` keeps, the node's
//! position and the broker's state. It answers 200 while Redis is away;
//! whether the node can serve is `/ready`'s question.

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::AppState;
use crate::broker::ClusterCounts;
use crate::error::ApiError;
use crate::hub::messages::GetCounts;
use crate::ids::Epoch;

#[derive(Serialize)]
struct Health {
    status: &'static str,
    uptime_secs: u64,
    /// herald's version (`herald --version`).
    version: &'static str,
    /// Open sessions of every transport (WebSocket, event stream, waiting
    /// long-poll).
    sessions: usize,
    /// Distinct registered ids.
    ids: usize,
    /// Channels with at least one subscriber.
    channels: usize,
    /// This lifetime's epoch and latest seq: `NotifyServer`'s position.
    epoch: Epoch,
    seq: u64,
    /// `memory`, or `redis` with whether this node can publish now (its
    /// subscription is up and its last write to Redis did not fail), and
    /// while it cannot, the last broker error.
    broker: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    broker_connected: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    broker_error: Option<String>,
    /// With the redis broker: the nodes seen in the last few seconds, their
    /// sessions in all and their distinct ids (`null` when Redis cannot be
    /// read, or this node's own report could not be written).
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<Option<ClusterCounts>>,
    /// Messages and bytes held in history.
    history_messages: usize,
    history_bytes: usize,
}

/// How long `/health` waits for Redis's view of the cluster.
const CLUSTER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(300);

pub async fn health(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let counts = state.server.send(GetCounts).await?;
    let cluster = match state.broker.cluster() {
        None => None,
        // Health must answer while Redis is away: it waits for it briefly.
        Some(reading) => Some(
            actix_web::rt::time::timeout(CLUSTER_READ_TIMEOUT, reading)
                .await
                .ok()
                .flatten(),
        ),
    };
    Ok(HttpResponse::Ok().json(Health {
        status: "ok",
        uptime_secs: state.started_at.elapsed().as_secs(),
        version: env!("CARGO_PKG_VERSION"),
        sessions: counts.sessions,
        ids: counts.ids,
        channels: counts.channels,
        epoch: state.broker.epoch(),
        broker: state.broker.kind().as_str(),
        broker_connected: state.broker.connected(),
        broker_error: state.broker.error(),
        cluster,
        seq: counts.seq,
        history_messages: counts.history_messages,
        history_bytes: counts.history_bytes,
    }))
}
