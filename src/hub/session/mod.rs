//! `WsSession`: one actor per WebSocket connection, the I/O shell around
//! the session's client-frame logic ([`machine`]).
//!
//! It keeps the connection alive (ping every `heartbeat_interval_ms`, drop
//! after `client_timeout_ms` of silence), enforces the connection's limits
//! (frame size, frame rate), hands each complete client text to its
//! [`Machine`] and carries out what that decides (frames to write, requests
//! to `NotifyServer`, the token's expiry, a close), and writes the frames
//! it is handed. Any WebSocket protocol violation closes the session at
//! once with the matching close code; the actor then stops, so its stream
//! is never polled again.
//!
//! The session decides what its client may do; `NotifyServer` only records
//! the outcome (registration, subscriptions) for routing.
//!
//! This directory and `routes/ws.rs` are the only places that know the
//! WebSocket library; of this directory, [`machine`] does not. The echo
//! route's actor ([`echo`]) shares the reading of the connection
//! ([`wire`]) and nothing else.

mod backlog;
pub mod echo;
pub mod fragments;
pub mod inbound;
pub mod machine;
pub mod wire;

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws::{self, HandshakeError, ProtocolError};

use self::machine::{Action, Actions, Machine};
use self::wire::{close_frame, echoed, ClientMessages, Incoming};
use super::admission::{Admission, Admitted, SessionStart};
use super::backlog::Backlog;
use super::mailbox::{Batch, Taker};
use super::messages::{
    Close, Disconnect, DisconnectReason, Register, SessionOutbox, Subscribe, Transport, Unsubscribe,
};
use super::NotifyServer;
use crate::client_addr::{proxy_label, ClientAddr, ClientLabel, PeerLabel};
use crate::ids::{ClientId, SessionId};
use crate::limits::{ConnectionPermit, FrameRateLimiter, RateVerdict};
use crate::protocol::{close_code, Position, ServerFrame};

/// What every session enforces, from the config; shared by all sessions.
pub struct SessionSettings {
    pub heartbeat_interval: Duration,
    pub client_timeout: Duration,
    /// Largest client message, per frame and reassembled.
    pub max_frame_bytes: usize,
    /// Mailbox capacity: deliveries that may wait before the session counts
    /// as a slow consumer.
    pub max_pending_messages: usize,
    pub max_channels: usize,
    pub frames_per_sec: u32,
    /// Who may be admitted, as whom, to which channels.
    pub admission: Admission,
    pub metrics: Arc<crate::metrics::Metrics>,
}

pub struct WsSession {
    session: SessionId,
    peer: Option<ClientAddr>,
    server: Addr<NotifyServer>,
    settings: Arc<SessionSettings>,
    /// What the client's frames mean: admission, registration,
    /// subscriptions, tokens.
    machine: Machine,
    /// Closes the session when the token expires; replaced on refresh.
    expiry_timer: Option<SpawnHandle>,
    /// When the connection opened.
    opened_at: Instant,
    /// When the client was last heard from (any frame, pongs included).
    last_heard: Instant,
    rate: FrameRateLimiter,
    messages: ClientMessages,
    /// Reported to `NotifyServer` when the actor stops.
    end_reason: DisconnectReason,
    /// The close code herald sent, or the client's, for the log.
    end_code: Option<u16>,
    /// Takes the frames queued in the session's mailbox (open once
    /// admitted) outside a wake-up, and takes back each batch's buffer.
    mailbox: Option<Taker>,
    /// Holds this connection's place under `max_connections`; freed when
    /// the session is dropped.
    _permit: ConnectionPermit,
}

impl WsSession {
    pub fn new(
        server: Addr<NotifyServer>,
        peer: Option<ClientAddr>,
        settings: Arc<SessionSettings>,
        start: SessionStart,
        permit: ConnectionPermit,
    ) -> Self {
        let now = Instant::now();
        Self {
            session: SessionId::next(),
            peer,
            server,
            rate: FrameRateLimiter::new(settings.frames_per_sec, now),
            messages: ClientMessages::new(settings.max_frame_bytes),
            machine: Machine::new(settings.clone(), start),
            settings,
            expiry_timer: None,
            opened_at: now,
            last_heard: now,
            end_reason: DisconnectReason::ConnectionLost,
            end_code: None,
            mailbox: None,
            _permit: permit,
        }
    }

    /// Carries out `actions` in order; a close ends the list.
    fn run(&mut self, actions: Actions, ctx: &mut ws::WebsocketContext<Self>) {
        for action in actions {
            match action {
                Action::Send(frame) => ctx.text(frame),
                Action::Error(error) => Self::send_error(ctx, &error),
                Action::Join(admitted) => self.join(admitted, ctx),
                Action::Register { id, resume } => self.register(id, resume, ctx),
                Action::Subscribe(channel) => self.server.do_send(Subscribe {
                    session: self.session,
                    channel,
                }),
                Action::Unsubscribe(channel) => self.server.do_send(Unsubscribe {
                    session: self.session,
                    channel,
                }),
                Action::ExpireIn(left) => {
                    if let Some(timer) = self.expiry_timer.take() {
                        ctx.cancel_future(timer);
                    }
                    let timer = ctx.run_later(left, |act, ctx| {
                        let actions = act.machine.expired();
                        act.run(actions, ctx);
                    });
                    self.expiry_timer = Some(timer);
                }
                Action::Close { code, reason } => return self.close(ctx, code, reason),
            }
        }
    }

    /// Tells `NotifyServer` about the session as admitted (id, channels,
    /// resume), in one step, and writes the answer. The session handles
    /// nothing else until the answer is written, so the replay comes before
    /// any live message.
    fn join(&mut self, mut admitted: Admitted, ctx: &mut ws::WebsocketContext<Self>) {
        let (outbox, taker) = SessionOutbox::open::<Self>(ctx, self.settings.max_pending_messages);
        self.mailbox = Some(taker);
        let connect = admitted.connect(self.session, Transport::WebSocket, self.peer, outbox);
        self.server
            .send(connect)
            .into_actor(self)
            .map(move |answer, act, ctx| {
                let Ok(joined) = answer else {
                    return act.server_gone(ctx);
                };
                if let Some(why) = joined.retry_later() {
                    return act.resume_later(why, ctx);
                }
                act.write_backlog(Backlog::new(admitted.answer(&joined)), ctx);
            })
            .wait(ctx);
    }

    /// Registers under `id`, resuming from `resume` if given, and writes the
    /// answer before anything else.
    fn register(
        &mut self,
        id: ClientId,
        resume: Option<Position>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let register = Register {
            session: self.session,
            id: id.clone(),
            resume,
        };
        self.server
            .send(register)
            .into_actor(self)
            .map(move |answer, act, ctx| {
                let Ok(joined) = answer else {
                    return act.server_gone(ctx);
                };
                if let Some(why) = joined.retry_later() {
                    return act.resume_later(why, ctx);
                }
                // Messages `NotifyServer` routed here before it took the
                // register are at or below the position the answer gives:
                // they go out before it.
                act.flush_mailbox(ctx);
                act.write_backlog(Backlog::new(joined.frames(Some(&id), &[])), ctx);
            })
            .wait(ctx);
    }

    /// `NotifyServer` is not running: the session cannot be served.
    fn server_gone(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let reason = DisconnectReason::ServerGone;
        self.close(ctx, close_code::INTERNAL_ERROR, reason);
    }

    /// The resume could not be read now (`why`): no `reset`, the history
    /// is kept; the client is closed with 1013 to come back later.
    fn resume_later(&mut self, why: &str, ctx: &mut ws::WebsocketContext<Self>) {
        let reason = DisconnectReason::ResumeLater(why.to_owned());
        self.close(ctx, close_code::TRY_AGAIN_LATER, reason);
    }

    fn send_error(ctx: &mut ws::WebsocketContext<Self>, error: &str) {
        ctx.text(ServerFrame::Error { error }.encode());
    }

    /// Closes the session with `code` and stops the actor at once. The close
    /// frame carries a fixed reason; the details, which may quote what the
    /// client sent, go in an `error` frame just before it.
    fn close(&mut self, ctx: &mut ws::WebsocketContext<Self>, code: u16, reason: DisconnectReason) {
        // What was fanned out before the close goes out before it.
        self.flush_mailbox(ctx);
        if let Some(detail) = reason.detail() {
            Self::send_error(ctx, detail);
        }
        ctx.close(Some(close_frame(code, &reason)));
        self.end_reason = reason;
        self.end_code = Some(code);
        ctx.stop();
    }

    /// Acts on one client message.
    fn incoming(&mut self, incoming: Incoming, ctx: &mut ws::WebsocketContext<Self>) {
        match incoming {
            Incoming::Text(text) => {
                let actions = self.machine.text(&text);
                self.run(actions, ctx);
            }
            Incoming::Binary(_) => {
                let actions = self.machine.binary();
                self.run(actions, ctx);
            }
            Incoming::Ping(payload) => ctx.pong(&payload),
            Incoming::Close(reason) => {
                self.end_code = reason.as_ref().map(|r| u16::from(r.code));
                ctx.close(echoed(reason));
                self.end_reason = DisconnectReason::ClientClosed;
                ctx.stop();
            }
            Incoming::Fail { code, reason } => self.close(ctx, code, reason),
            Incoming::Lost => {
                self.end_reason = DisconnectReason::ConnectionLost;
                ctx.stop();
            }
            Incoming::Nothing => {}
        }
    }

    /// Applies the frame-rate limit; false when the frame must be ignored.
    fn within_rate(&mut self, ctx: &mut ws::WebsocketContext<Self>) -> bool {
        match self.rate.check(Instant::now()) {
            RateVerdict::Allow => true,
            RateVerdict::Warn => {
                let error = format!(
                    "too many frames: at most {} per second; frames are being ignored",
                    self.settings.frames_per_sec
                );
                Self::send_error(ctx, &error);
                false
            }
            RateVerdict::Drop => false,
            RateVerdict::Close => {
                self.close(
                    ctx,
                    close_code::POLICY_VIOLATION,
                    DisconnectReason::Flooding,
                );
                false
            }
        }
    }

    fn heartbeat(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let waited = self.opened_at.elapsed() >= self.settings.client_timeout;
        if !self.machine.admitted() && waited {
            let actions = self.machine.token_wait_over();
            self.run(actions, ctx);
        } else if self.last_heard.elapsed() >= self.settings.client_timeout {
            self.close(
                ctx,
                close_code::HEARTBEAT_TIMEOUT,
                DisconnectReason::HeartbeatTimeout,
            );
        } else {
            ctx.ping(b"");
        }
    }
}

/// The upgrade answer that runs `session` over the connection.
pub fn start(
    session: WsSession,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, HandshakeError> {
    let max_frame_bytes = session.settings.max_frame_bytes;
    wire::start(session, max_frame_bytes, req, payload)
}

impl Actor for WsSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.settings.heartbeat_interval, Self::heartbeat);
        // A session that must bring a token, or asked to be admitted with its
        // first register frame, waits for that frame; the heartbeat ends the
        // wait after `client_timeout`.
        let actions = self.machine.opened();
        self.run(actions, ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if self.machine.admitted() {
            self.server.do_send(Disconnect {
                session: self.session,
                reason: self.end_reason.clone(),
                close_code: self.end_code,
            });
        } else {
            // Never admitted, so `NotifyServer` never heard of it: log here.
            let peer = PeerLabel(self.peer);
            let (session, reason) = (self.session, &self.end_reason);
            let client_peer = ClientLabel(self.peer);
            let proxy = proxy_label(self.peer);
            log::info!(
                event = "refused",
                session:% = session,
                transport = "ws",
                peer:% = client_peer,
                proxy = proxy,
                reason = reason.close_text(),
                detail:% = reason,
                close_code = self.end_code;
                "session {session} refused: transport=ws peer={peer} reason={reason}"
            );
        }
    }
}

impl StreamHandler<Result<ws::Message, ProtocolError>> for WsSession {
    fn handle(&mut self, item: Result<ws::Message, ProtocolError>, ctx: &mut Self::Context) {
        let msg = match item {
            Ok(msg) => msg,
            Err(error) => return self.incoming(ClientMessages::error(&error), ctx),
        };
        self.last_heard = Instant::now();
        // Messages fanned out before this frame was read go out before
        // anything it answers.
        self.flush_mailbox(ctx);
        let counted = !matches!(msg, ws::Message::Close(_) | ws::Message::Nop);
        if counted && !self.within_rate(ctx) {
            return;
        }
        let incoming = self.messages.message(msg);
        self.incoming(incoming, ctx);
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        // The client's byte stream ended without a close frame.
        self.end_reason = DisconnectReason::ConnectionLost;
        ctx.stop();
    }
}

impl WsSession {
    /// Writes the frames `NotifyServer` queued, oldest first: the context
    /// encodes them into one chunk, written at once.
    fn write_batch(&mut self, mut batch: Batch, ctx: &mut ws::WebsocketContext<Self>) {
        let now = Instant::now();
        for deliver in batch.drain(..) {
            let waited = deliver.waited(now);
            ctx.text(deliver.frame);
            self.settings.metrics.publish_to_write.observe(waited);
        }
        if let Some(mailbox) = &self.mailbox {
            mailbox.give_back(batch);
        }
    }
}

impl WsSession {
    /// Writes what is queued in the mailbox now, without waiting for its
    /// wake-up: before acting on a client frame and before writing a
    /// `registered` (which must come after every message fanned out before
    /// it: its position covers them), and before a close.
    fn flush_mailbox(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let Some(queued) = self.mailbox.as_ref().map(Taker::take) else {
            return;
        };
        if !queued.is_empty() {
            self.write_batch(queued, ctx);
        }
    }
}

impl StreamHandler<Batch> for WsSession {
    fn handle(&mut self, batch: Batch, ctx: &mut Self::Context) {
        self.write_batch(batch, ctx);
    }

    fn finished(&mut self, _: &mut Self::Context) {
        // The mailbox never ends while the session holds it.
    }
}

impl Handler<Close> for WsSession {
    type Result = ();

    /// Writes what was queued before the order, then closes.
    fn handle(&mut self, msg: Close, ctx: &mut Self::Context) {
        self.close(ctx, msg.code, msg.reason);
    }
}
