//! `WsSession`: one actor per WebSocket connection.
//!
//! It keeps the connection alive (ping every `heartbeat_interval_ms`, drop
//! after `client_timeout_ms` of silence), enforces the client's limits (frame
//! size, frame rate, channel count), checks who the client is (tokens, private
//! channels), turns client frames into requests to `NotifyServer` and writes
//! the frames it is handed. Any WebSocket protocol violation closes the
//! session at once with the matching close code; the actor then stops, so its
//! stream is never polled again.
//!
//! The session decides what its client may do; `NotifyServer` only records
//! the outcome (registration, subscriptions) for routing.
//!
//! This directory and `routes/ws.rs` are the only places that know the
//! WebSocket library.

mod backlog;
pub mod fragments;
pub mod inbound;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_http::ws::Item;
use actix_web::error::PayloadError;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws::{self, CloseCode, CloseReason, HandshakeError, ProtocolError};
use bytes::Bytes;

use self::fragments::{Assembled, Reassembler};
use self::inbound::InboundFrames;
use super::admission::{Admission, Refusal, SessionStart};
use super::backlog::Backlog;
use super::messages::{
    Close, Deliver, Disconnect, DisconnectReason, Register, SessionOutbox, Subscribe, Transport,
    Unsubscribe,
};
use super::NotifyServer;
use crate::client_addr::ClientAddr;
use crate::ids::{ChannelName, ClientId, SessionId};
use crate::limits::{ConnectionPermit, FrameRateLimiter, RateVerdict};
use crate::protocol::{close_code, ClientFrame, Position, ServerFrame};
use crate::token::Identity;

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
    /// The request's choices, applied once the session is admitted.
    start: Option<SessionStart>,
    /// Whether `NotifyServer` knows this session. False only while a
    /// `require_token` session waits for its token.
    admitted: bool,
    /// Who a token says the client is; `None` for anonymous clients.
    identity: Option<Identity>,
    /// Closes the session when the token expires; replaced on refresh.
    expiry_timer: Option<SpawnHandle>,
    /// This session's channels, for its limit and permission checks.
    channels: BTreeSet<ChannelName>,
    /// When the connection opened.
    opened_at: Instant,
    /// When the client was last heard from (any frame, pongs included).
    last_heard: Instant,
    rate: FrameRateLimiter,
    fragments: Reassembler,
    /// Reported to the server when the actor stops.
    end_reason: DisconnectReason,
    /// The close code herald sent, or the client's, for the log.
    end_code: Option<u16>,
    /// The echo route's session (`echo_route`): the same frame handling,
    /// but messages are sent back instead of read as client frames, and it
    /// never joins the router. For protocol-compliance suites only.
    echo: bool,
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
            fragments: Reassembler::new(settings.max_frame_bytes),
            settings,
            start: Some(start),
            admitted: false,
            identity: None,
            expiry_timer: None,
            channels: BTreeSet::new(),
            opened_at: now,
            last_heard: now,
            end_reason: DisconnectReason::ConnectionLost,
            end_code: None,
            echo: false,
            _permit: permit,
        }
    }

    /// A session for the echo route.
    pub fn echo(
        server: Addr<NotifyServer>,
        peer: Option<ClientAddr>,
        settings: Arc<SessionSettings>,
        permit: ConnectionPermit,
    ) -> Self {
        Self {
            echo: true,
            ..Self::new(server, peer, settings, SessionStart::default(), permit)
        }
    }

    /// Tells `NotifyServer` about the session with what the upgrade request
    /// asked for (id, channels, resume), in one step, and writes the answer.
    /// The session handles nothing else until the answer is written, so the
    /// replay comes before any live message.
    ///
    /// This is where admission is decided: every channel is checked against
    /// the identity the session is admitted with, which may be another than
    /// the upgrade request's (a `register` frame with a new token before
    /// admission). A channel that identity may not join is answered with an
    /// error frame and not joined.
    fn admit(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        let start = self.start.take().unwrap_or_default();
        let mut admitted = self.settings.admission.admit(start);
        if let Some(identity) = admitted.identity.take() {
            self.set_identity(identity, ctx);
        }
        self.channels.extend(admitted.channels.iter().cloned());
        let outbox = SessionOutbox::of(&ctx.address());
        let connect = admitted.connect(self.session, Transport::WebSocket, self.peer, outbox);
        self.admitted = true;
        self.server
            .send(connect)
            .into_actor(self)
            .map(move |answer, act, ctx| {
                let Ok(joined) = answer else {
                    return act.router_gone(ctx);
                };
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
                    return act.router_gone(ctx);
                };
                act.write_backlog(Backlog::new(joined.frames(Some(&id), &[])), ctx);
            })
            .wait(ctx);
    }

    fn router_gone(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        self.close(
            ctx,
            close_code::INTERNAL_ERROR,
            DisconnectReason::ServerGone,
        );
    }

    /// Takes on a verified identity: its id, its expiry, its channels.
    fn become_identity(
        &mut self,
        identity: Identity,
        resume: Option<Position>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        let id = identity.id.clone();
        self.set_identity(identity, ctx);
        self.register(id, resume, ctx);
    }

    /// Replaces the identity, re-arms the expiry timer and leaves private
    /// channels the new token no longer lists.
    fn set_identity(&mut self, identity: Identity, ctx: &mut ws::WebsocketContext<Self>) {
        if let Some(timer) = self.expiry_timer.take() {
            ctx.cancel_future(timer);
        }
        self.expiry_timer = Some(ctx.run_later(identity.time_left(), |act, ctx| {
            act.close(
                ctx,
                close_code::TOKEN_EXPIRED,
                DisconnectReason::TokenExpired,
            );
        }));
        self.identity = Some(identity);
        let revoked: Vec<ChannelName> = self
            .channels
            .iter()
            .filter(|c| {
                self.settings
                    .admission
                    .may_join(c, self.identity.as_ref())
                    .is_err()
            })
            .cloned()
            .collect();
        for channel in revoked {
            self.unsubscribe(channel, ctx);
        }
    }

    fn subscribe(&mut self, channel: ChannelName, ctx: &mut ws::WebsocketContext<Self>) {
        if !self.channels.contains(&channel) {
            if self.channels.len() >= self.settings.max_channels {
                let error = format!(
                    "subscription limit reached: at most {} channels per session",
                    self.settings.max_channels
                );
                return Self::send_error(ctx, &error);
            }
            if let Err(error) = self
                .settings
                .admission
                .may_join(&channel, self.identity.as_ref())
            {
                return Self::send_error(ctx, &error);
            }
            self.server.do_send(Subscribe {
                session: self.session,
                channel: channel.clone(),
            });
            self.channels.insert(channel.clone());
        }
        ctx.text(
            ServerFrame::Subscribed {
                channel: &channel,
                epoch: None,
                seq: None,
            }
            .encode(),
        );
    }

    fn unsubscribe(&mut self, channel: ChannelName, ctx: &mut ws::WebsocketContext<Self>) {
        if self.channels.remove(&channel) {
            self.server.do_send(Unsubscribe {
                session: self.session,
                channel: channel.clone(),
            });
        }
        ctx.text(ServerFrame::Unsubscribed { channel: &channel }.encode());
    }

    fn send_error(ctx: &mut ws::WebsocketContext<Self>, error: &str) {
        ctx.text(ServerFrame::Error { error }.encode());
    }

    /// Closes the session with `code` and stops the actor at once. The close
    /// frame carries a fixed reason; the details, which may quote what the
    /// client sent, go in an `error` frame just before it (not on the echo
    /// route, which sends back only what it got).
    fn close(&mut self, ctx: &mut ws::WebsocketContext<Self>, code: u16, reason: DisconnectReason) {
        if let (Some(detail), false) = (reason.detail(), self.echo) {
            Self::send_error(ctx, detail);
        }
        ctx.close(Some(CloseReason {
            code: CloseCode::from(code),
            description: Some(reason.close_text().into()),
        }));
        self.end_reason = reason;
        self.end_code = Some(code);
        ctx.stop();
    }

    fn unauthorized(&mut self, ctx: &mut ws::WebsocketContext<Self>, why: String) {
        self.close(
            ctx,
            close_code::UNAUTHORIZED,
            DisconnectReason::Unauthorized(why),
        );
    }

    fn handle_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        if self.echo {
            return ctx.text(text.to_owned());
        }
        let frame = match ClientFrame::parse(text) {
            Ok(frame) => frame,
            Err(reason) if self.admitted => return Self::send_error(ctx, &reason),
            Err(reason) => return self.unauthorized(ctx, reason),
        };
        match frame {
            ClientFrame::Register {
                id,
                token,
                since,
                epoch,
            } => {
                let resume = match (since, epoch) {
                    (None, None) => None,
                    (Some(since), Some(epoch)) => match Position::new(epoch, since) {
                        Ok(position) => Some(position),
                        Err(e) => return self.refuse(ctx, e),
                    },
                    _ => {
                        let error = "give both `since` and `epoch`, or neither";
                        return self.refuse(ctx, error.into());
                    }
                };
                if resume.is_some() && self.admitted {
                    // Messages may already be on their way to this session:
                    // a replay now could arrive after newer ones.
                    let error = "a position is taken only when the session is admitted: put \
                                 since/epoch in the URL, or connect with await_register=1 and \
                                 send them in the first register frame";
                    return Self::send_error(ctx, error);
                }
                match (token, id) {
                    (Some(token), _) => self.register_with_token(&token, resume, ctx),
                    (None, Some(id)) => self.register_anonymous(id, resume, ctx),
                    (None, None) => self.refuse(ctx, "register needs an `id` or a `token`".into()),
                }
            }
            _ if !self.admitted => self.unauthorized(
                ctx,
                "send {\"type\":\"register\",\"token\":...} first".into(),
            ),
            ClientFrame::Subscribe { channel } => self.subscribe(channel, ctx),
            ClientFrame::Unsubscribe { channel } => self.unsubscribe(channel, ctx),
            ClientFrame::Refresh { token } => self.refresh(&token, ctx),
        }
    }

    /// An error frame for an admitted session; for one still waiting for its
    /// token, the end of it.
    fn refuse(&mut self, ctx: &mut ws::WebsocketContext<Self>, error: String) {
        if self.admitted {
            Self::send_error(ctx, &error);
        } else {
            self.unauthorized(ctx, error);
        }
    }

    fn refuse_binary(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        self.refuse(
            ctx,
            "binary messages are not supported: send JSON text".into(),
        );
    }

    fn register_with_token(
        &mut self,
        token: &str,
        resume: Option<Position>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        match self.settings.admission.identify(token) {
            Ok(identity) if !self.admitted => {
                // Admission registers the identity, joins the channels the
                // upgrade asked for (which may need it) and resumes.
                let start = self.start.get_or_insert_with(SessionStart::default);
                start.identity = Some(identity);
                if resume.is_some() {
                    start.resume = resume;
                }
                self.admit(ctx);
            }
            Ok(identity) => self.become_identity(identity, resume, ctx),
            Err(refusal) => self.refuse(ctx, refusal.to_string()),
        }
    }

    fn register_anonymous(
        &mut self,
        id: ClientId,
        resume: Option<Position>,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        if self.settings.admission.require_token {
            return self.refuse(ctx, "this server requires a token to register".into());
        }
        if let Some(identity) = &self.identity {
            let error = format!(
                "this session is signed in as {}; register with a new token to change id",
                identity.id
            );
            return Self::send_error(ctx, &error);
        }
        if !self.admitted {
            let start = self.start.get_or_insert_with(SessionStart::default);
            start.id = Some(id);
            if resume.is_some() {
                start.resume = resume;
            }
            return self.admit(ctx);
        }
        self.register(id, resume, ctx);
    }

    fn refresh(&mut self, token: &str, ctx: &mut ws::WebsocketContext<Self>) {
        if self.settings.admission.tokens.is_none() {
            return Self::send_error(ctx, &Refusal::TokensDisabled.to_string());
        }
        let Some(current) = self.identity.as_ref().map(|i| i.id.clone()) else {
            return Self::send_error(ctx, "refresh needs a session registered with a token");
        };
        match self.settings.admission.identify(token) {
            Ok(identity) if identity.id == current => {
                let exp = identity.expires_at;
                self.set_identity(identity, ctx);
                ctx.text(ServerFrame::Refreshed { id: &current, exp }.encode());
            }
            Ok(_) => Self::send_error(ctx, "refresh token is for another id"),
            Err(refusal) => Self::send_error(ctx, &refusal.to_string()),
        }
    }

    fn handle_fragment(&mut self, item: Item, ctx: &mut ws::WebsocketContext<Self>) {
        let protocol_error = |what: &str| DisconnectReason::ProtocolError(what.into());
        match self.fragments.push(item) {
            Assembled::Pending => {}
            Assembled::Text(text) => self.handle_text(&text, ctx),
            Assembled::Binary(data) if self.echo => ctx.binary(data),
            Assembled::Binary(_) => self.refuse_binary(ctx),
            Assembled::TooBig => {
                let reason = protocol_error("fragmented message over max_frame_bytes");
                self.close(ctx, close_code::MESSAGE_TOO_BIG, reason);
            }
            Assembled::InvalidUtf8 => {
                let reason = protocol_error("text message is not valid UTF-8");
                self.close(ctx, close_code::INVALID_PAYLOAD, reason);
            }
            Assembled::OutOfOrder => {
                let reason = protocol_error("continuation without a first frame");
                self.close(ctx, close_code::PROTOCOL_ERROR, reason);
            }
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
        if !self.admitted && self.opened_at.elapsed() >= self.settings.client_timeout {
            self.unauthorized(ctx, "no token received in time".into());
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

/// The upgrade answer that runs `session` over the connection. The client's
/// bytes are read through [`InboundFrames`], which bounds what one
/// connection can make herald buffer; the context's own input is left empty.
pub fn start(
    session: WsSession,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, HandshakeError> {
    let mut response = ws::handshake(req)?;
    let input = InboundFrames::new(payload, session.settings.max_frame_bytes);
    let unused = futures_util::stream::pending::<Result<Bytes, PayloadError>>();
    Ok(
        response.streaming(ws::WebsocketContext::with_factory(unused, move |ctx| {
            ctx.add_stream(input);
            session
        })),
    )
}

/// The close code for a frame the codec refused, and the reason to log.
fn classify(error: &ProtocolError) -> (u16, String) {
    match error {
        ProtocolError::Overflow => (
            close_code::MESSAGE_TOO_BIG,
            "frame over max_frame_bytes".into(),
        ),
        // The codec reports reserved bits as InvalidData, and text frames
        // that are not UTF-8 as an error whose text names UTF-8; anything
        // else under Io is the transport failing.
        ProtocolError::Io(e) if e.kind() == std::io::ErrorKind::InvalidData => {
            (close_code::PROTOCOL_ERROR, e.to_string())
        }
        ProtocolError::Io(e) if e.to_string().to_ascii_lowercase().contains("utf-8") => (
            close_code::INVALID_PAYLOAD,
            "text message is not valid UTF-8".into(),
        ),
        ProtocolError::Io(e) => (close_code::NORMAL, format!("transport error: {e}")),
        other => (close_code::PROTOCOL_ERROR, other.to_string()),
    }
}

impl Actor for WsSession {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.settings.max_pending_messages);
        ctx.run_interval(self.settings.heartbeat_interval, Self::heartbeat);
        let start = self.start.as_ref();
        let has_token = start.is_some_and(|s| s.identity.is_some());
        let awaits = start.is_some_and(|s| s.await_register);
        if self.echo {
            return; // not routed: it only sends back what it gets
        }
        // A session that must bring a token, or asked to be admitted with its
        // first register frame, waits for that frame; the heartbeat ends the
        // wait after `client_timeout`.
        if !awaits && (!self.settings.admission.require_token || has_token) {
            self.admit(ctx);
        }
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if self.admitted {
            self.server.do_send(Disconnect {
                session: self.session,
                reason: self.end_reason.clone(),
                close_code: self.end_code,
            });
        } else if !self.echo {
            // Never admitted, so the router never heard of it: log here.
            let peer = self
                .peer
                .map_or_else(|| "unknown".into(), |p| p.to_string());
            let (session, reason) = (self.session, &self.end_reason);
            let client_peer = self.peer.map_or_else(|| "unknown".into(), |p| p.client());
            let proxy = self.peer.and_then(|p| p.proxy()).map(|p| p.to_string());
            log::info!(
                event = "refused",
                session:% = session,
                transport = "ws",
                peer = client_peer,
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
            Err(error) => {
                let (code, what) = classify(&error);
                if code == close_code::NORMAL {
                    self.end_reason = DisconnectReason::ConnectionLost;
                    return ctx.stop();
                }
                return self.close(ctx, code, DisconnectReason::ProtocolError(what));
            }
        };
        self.last_heard = Instant::now();
        let counted = !matches!(msg, ws::Message::Close(_) | ws::Message::Nop);
        if counted && !self.echo && !self.within_rate(ctx) {
            return;
        }
        match msg {
            ws::Message::Text(text) => self.handle_text(&text, ctx),
            ws::Message::Binary(data) if self.echo => ctx.binary(data),
            ws::Message::Binary(_) => self.refuse_binary(ctx),
            ws::Message::Continuation(item) => self.handle_fragment(item, ctx),
            ws::Message::Ping(payload) => ctx.pong(&payload),
            ws::Message::Pong(_) | ws::Message::Nop => {}
            ws::Message::Close(reason) => {
                self.end_code = reason.as_ref().map(|r| u16::from(r.code));
                // Echo the client's code, as RFC 6455 §5.5.1 asks.
                ctx.close(reason.map(|r| CloseReason {
                    code: r.code,
                    description: None,
                }));
                self.end_reason = DisconnectReason::ClientClosed;
                ctx.stop();
            }
        }
    }

    fn finished(&mut self, ctx: &mut Self::Context) {
        // The client's byte stream ended without a close frame.
        self.end_reason = DisconnectReason::ConnectionLost;
        ctx.stop();
    }
}

impl Handler<Deliver> for WsSession {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        ctx.text(msg.frame);
        let waited = msg.routed_at.elapsed().as_secs_f64();
        self.settings.metrics.publish_to_write.observe(waited);
    }
}

impl Handler<Close> for WsSession {
    type Result = ();

    fn handle(&mut self, msg: Close, ctx: &mut Self::Context) {
        self.close(ctx, msg.code, msg.reason);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_errors_map_to_close_codes() {
        let rsv = ProtocolError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "Received a frame with non-zero reserved bits",
        ));
        assert_eq!(classify(&rsv).0, close_code::PROTOCOL_ERROR);
        assert_eq!(
            classify(&ProtocolError::Overflow).0,
            close_code::MESSAGE_TOO_BIG
        );
        assert_eq!(
            classify(&ProtocolError::UnmaskedFrame).0,
            close_code::PROTOCOL_ERROR
        );
        assert_eq!(
            classify(&ProtocolError::InvalidLength(200)).0,
            close_code::PROTOCOL_ERROR
        );
        let bytes = vec![b'a', 0xff];
        let utf8 = std::str::from_utf8(&bytes).unwrap_err();
        let utf8 = ProtocolError::Io(std::io::Error::other(utf8.to_string()));
        assert_eq!(classify(&utf8).0, close_code::INVALID_PAYLOAD);
    }
}
