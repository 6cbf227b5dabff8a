//! `GET /ready`: readiness, for load balancers and orchestrators deciding
//! whether to send this node new clients. `/health` is liveness: it answers
//! 200 as long as the process works, whatever its broker's state.
//!
//! `200 {"ready":true}` when herald can accept and deliver; otherwise 503
//! in herald's error shape, with `Retry-After`:
//! - `shutting_down`: from the first stop signal until exit, through the
//!   `shutdown_drain_ms` wait in which herald still serves everything
//!   else, so the node leaves the load balancer before its sockets close;
//! - `broker_disconnected`: the Redis broker cannot take publishes (its
//!   subscription is down, Redis does not answer its PINGs, or its last
//!   write to Redis failed: publishing answers 503 or 504), with the
//!   broker's error;
//! - `unavailable`: the routing actor is gone.

use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::{web, HttpResponse};
use serde::Serialize;

use super::AppState;
use crate::error::ApiError;

/// Whether this node is shutting down: set at the first stop signal,
/// never cleared.
#[derive(Debug, Default)]
pub struct Draining(AtomicBool);

impl Draining {
    pub fn start(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Serialize)]
struct Ready {
    ready: bool,
}

pub async fn ready(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    if state.draining.is_draining() {
        return Err(ApiError::ShuttingDown);
    }
    if state.broker.connected() == Some(false) {
        let why = state.broker.error().unwrap_or_else(|| "unknown".into());
        return Err(ApiError::BrokerDisconnected(why));
    }
    if !state.server.connected() {
        return Err(ApiError::Unavailable);
    }
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(Ready { ready: true }))
}
