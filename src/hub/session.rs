//! `WsSession`: one actor per WebSocket connection.
//!
//! It keeps the connection alive (ping every `heartbeat_interval_ms`, drop
//! after `client_timeout_ms` of silence), reassembles fragmented client
//! messages up to `max_frame_bytes`, turns client frames into requests to
//! `NotifyServer`, and writes the frames it is handed. Any WebSocket protocol
//! violation closes the session at once with the matching close code; the
//! actor then stops, so its stream is never polled again.
//!
//! This file and `routes/ws.rs` are the only ones that know the WebSocket
//! library.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_http::ws::Item;
use actix_web_actors::ws::{self, CloseCode, CloseReason, ProtocolError};
use bytes::BytesMut;

use super::messages::{
    Close, Connect, Deliver, Disconnect, DisconnectReason, Register, SessionOutbox,
};
use super::NotifyServer;
use crate::ids::{ClientId, SessionId};
use crate::protocol::{close_code, ClientFrame, ServerFrame};

/// The limits a session enforces, taken from the config.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub heartbeat_interval: Duration,
    pub client_timeout: Duration,
    /// Largest client message, per frame and reassembled.
    pub max_frame_bytes: usize,
    /// Mailbox capacity: deliveries that may wait before the session counts
    /// as a slow consumer.
    pub queue_messages: usize,
}

pub struct WsSession {
    session: SessionId,
    peer: Option<SocketAddr>,
    server: Addr<NotifyServer>,
    limits: SessionLimits,
    /// The id given in the upgrade URL, registered as the session starts.
    initial_id: Option<ClientId>,
    /// When the client was last heard from (any frame, pongs included).
    last_heard: Instant,
    /// A fragmented message being reassembled.
    partial: Option<Partial>,
    /// Reported to the server when the actor stops.
    end_reason: DisconnectReason,
}

/// The fragments received so far of one message.
struct Partial {
    is_text: bool,
    data: BytesMut,
}

impl WsSession {
    pub fn new(
        server: Addr<NotifyServer>,
        peer: Option<SocketAddr>,
        initial_id: Option<ClientId>,
        limits: SessionLimits,
    ) -> Self {
        Self {
            session: SessionId::next(),
            peer,
            server,
            limits,
            initial_id,
            last_heard: Instant::now(),
            partial: None,
            end_reason: DisconnectReason::ConnectionLost,
        }
    }

    fn register(&mut self, id: ClientId, ctx: &mut ws::WebsocketContext<Self>) {
        // Queued before any publish the client may cause after reading the
        // answer below, so a direct message sent then finds the registration.
        self.server.do_send(Register {
            session: self.session,
            id: id.clone(),
        });
        let greeting = format!("Hello client {id}");
        ctx.text(ServerFrame::Registered { id: &id, greeting }.encode());
    }

    fn send_error(ctx: &mut ws::WebsocketContext<Self>, error: &str) {
        ctx.text(ServerFrame::Error { error }.encode());
    }

    /// Closes the session with `code` and stops the actor at once.
    fn close(&mut self, ctx: &mut ws::WebsocketContext<Self>, code: u16, reason: DisconnectReason) {
        let description = reason.to_string();
        ctx.close(Some(CloseReason {
            code: CloseCode::from(code),
            description: Some(description),
        }));
        self.end_reason = reason;
        ctx.stop();
    }

    fn handle_text(&mut self, text: &str, ctx: &mut ws::WebsocketContext<Self>) {
        match ClientFrame::parse(text) {
            Ok(ClientFrame::Register { id }) => self.register(id, ctx),
            Err(reason) => Self::send_error(ctx, &reason),
        }
    }

    fn handle_fragment(&mut self, item: Item, ctx: &mut ws::WebsocketContext<Self>) {
        let (first, chunk, last) = match item {
            Item::FirstText(b) => (Some(true), b, false),
            Item::FirstBinary(b) => (Some(false), b, false),
            Item::Continue(b) => (None, b, false),
            Item::Last(b) => (None, b, true),
        };
        if let Some(is_text) = first {
            self.partial = Some(Partial {
                is_text,
                data: BytesMut::new(),
            });
        }
        let Some(partial) = self.partial.as_mut() else {
            // The codec orders continuations; this is a second line of defence.
            let reason =
                DisconnectReason::ProtocolError("continuation without a first frame".into());
            return self.close(ctx, close_code::PROTOCOL_ERROR, reason);
        };
        if partial.data.len() + chunk.len() > self.limits.max_frame_bytes {
            let reason = DisconnectReason::ProtocolError(format!(
                "fragmented message over {} bytes",
                self.limits.max_frame_bytes
            ));
            return self.close(ctx, close_code::MESSAGE_TOO_BIG, reason);
        }
        partial.data.extend_from_slice(&chunk);
        if !last {
            return;
        }
        let Some(Partial { is_text, data }) = self.partial.take() else {
            return;
        };
        if !is_text {
            return Self::send_error(ctx, "binary messages are not supported: send JSON text");
        }
        match std::str::from_utf8(&data) {
            Ok(text) => self.handle_text(text, ctx),
            Err(_) => {
                let reason =
                    DisconnectReason::ProtocolError("text message is not valid UTF-8".into());
                self.close(ctx, close_code::INVALID_PAYLOAD, reason);
            }
        }
    }

    fn heartbeat(&mut self, ctx: &mut ws::WebsocketContext<Self>) {
        if self.last_heard.elapsed() >= self.limits.client_timeout {
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
        ctx.set_mailbox_capacity(self.limits.queue_messages);
        let addr = ctx.address();
        self.server.do_send(Connect {
            session: self.session,
            peer: self.peer,
            outbox: SessionOutbox {
                deliver: addr.clone().recipient(),
                close: addr.recipient(),
            },
        });
        if let Some(id) = self.initial_id.take() {
            self.register(id, ctx);
        }
        ctx.run_interval(self.limits.heartbeat_interval, Self::heartbeat);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.server.do_send(Disconnect {
            session: self.session,
            reason: self.end_reason.clone(),
        });
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
        match msg {
            ws::Message::Text(text) => self.handle_text(&text, ctx),
            ws::Message::Binary(_) => {
                Self::send_error(ctx, "binary messages are not supported: send JSON text")
            }
            ws::Message::Continuation(item) => self.handle_fragment(item, ctx),
            ws::Message::Ping(payload) => ctx.pong(&payload),
            ws::Message::Pong(_) | ws::Message::Nop => {}
            ws::Message::Close(reason) => {
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
