//! `EchoSession`: the echo route's actor (`GET /echo`, only with
//! `echo_route = true`), for WebSocket protocol-compliance suites.
//!
//! It reads the connection exactly as a `WsSession` does (the same bounded
//! input, codec and fragment joining, and the same close codes for a
//! client that breaks the protocol, from [`super::wire`]) and sends every
//! complete message back as it came. It never joins `NotifyServer`, has no
//! frame-rate limit, and writes no `error` frames: only what it got, pongs,
//! pings and close frames.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws::{self, HandshakeError, ProtocolError};

use super::wire::{self, close_frame, echoed, ClientMessages, Incoming};
use super::SessionSettings;
use crate::hub::messages::DisconnectReason;
use crate::limits::ConnectionPermit;
use crate::protocol::close_code;

pub struct EchoSession {
    settings: Arc<SessionSettings>,
    /// When the client was last heard from (any frame, pongs included).
    last_heard: Instant,
    messages: ClientMessages,
    /// Holds this connection's place under `max_connections`; freed when
    /// the session is dropped.
    _permit: ConnectionPermit,
}

impl EchoSession {
    pub fn new(settings: Arc<SessionSettings>, permit: ConnectionPermit) -> Self {
        Self {
            last_heard: Instant::now(),
            messages: ClientMessages::new(settings.max_frame_bytes),
            settings,
            _permit: permit,
        }
    }

    /// The upgrade answer that runs the session over the connection.
    pub fn start(
        self,
        req: &HttpRequest,
        payload: web::Payload,
    ) -> Result<HttpResponse, HandshakeError> {
        let max_frame_bytes = self.settings.max_frame_bytes;
        wire::start(self, max_frame_bytes, req, payload)
    }

    /// Closes with `code` (and the fixed text of `reason`) and stops.
    fn close(ctx: &mut ws::WebsocketContext<Self>, code: u16, reason: &DisconnectReason) {
        ctx.close(Some(close_frame(code, reason)));
        ctx.stop();
    }

    /// Pings, or closes after `client_timeout` of silence.
    fn heartbeat(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if self.last_heard.elapsed() >= self.settings.client_timeout {
            let reason = DisconnectReason::HeartbeatTimeout;
            Self::close(ctx, close_code::HEARTBEAT_TIMEOUT, &reason);
        } else {
            ctx.ping(b"");
        }
    }
}

impl Actor for EchoSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.settings.heartbeat_interval, Self::heartbeat);
    }
}

impl StreamHandler<Result<ws::Message, ProtocolError>> for EchoSession {
    fn handle(&mut self, item: Result<ws::Message, ProtocolError>, ctx: &mut Self::Context) {
        let incoming = match item {
            Ok(message) => {
                self.last_heard = Instant::now();
                self.messages.message(message)
            }
            Err(error) => ClientMessages::error(&error),
        };
        match incoming {
            Incoming::Text(text) => ctx.text(text),
            Incoming::Binary(data) => ctx.binary(data),
            Incoming::Ping(payload) => ctx.pong(&payload),
            Incoming::Close(reason) => {
                ctx.close(echoed(reason));
                ctx.stop();
            }
            Incoming::Fail { code, reason } => Self::close(ctx, code, &reason),
            Incoming::Lost => ctx.stop(),
            Incoming::Nothing => {}
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        // The client's byte stream ended without a close frame.
        ctx.stop();
    }
}
