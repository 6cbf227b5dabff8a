//! The WebSocket side that every WebSocket actor shares (the session and
//! the echo route's): the upgrade that runs an actor over the connection,
//! and what each client message amounts to once the codec has read it and
//! fragments are joined ([`Incoming`]), codec errors mapped to close codes
//! included.

use actix::{Actor, AsyncContext, StreamHandler};
use actix_web::error::PayloadError;
use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws::{self, CloseCode, CloseReason, HandshakeError, ProtocolError};
use bytes::Bytes;
use bytestring::ByteString;

use super::fragments::{Assembled, Reassembler};
use super::inbound::InboundFrames;
use crate::hub::messages::DisconnectReason;
use crate::protocol::close_code;

/// What one client message amounts to.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A complete text message.
    Text(ByteString),
    /// A complete binary message.
    Binary(Bytes),
    /// A ping: answer with a pong carrying this payload.
    Ping(Bytes),
    /// The client's close frame: answer with its code ([`echoed`]), then
    /// stop. The code is the client's, for the log.
    Close(Option<CloseReason>),
    /// The client broke the protocol: close with `code`.
    Fail { code: u16, reason: DisconnectReason },
    /// The connection failed under the session: stop, nothing can be sent.
    Lost,
    /// Nothing to act on: a pong, or part of a fragmented message.
    Nothing,
}

/// Client messages, with fragmented ones joined (bounded by
/// `max_frame_bytes`).
pub struct ClientMessages {
    fragments: Reassembler,
}

impl ClientMessages {
    pub fn new(max_frame_bytes: usize) -> Self {
        Self {
            fragments: Reassembler::new(max_frame_bytes),
        }
    }

    /// What a message the codec read amounts to.
    pub fn message(&mut self, message: ws::Message) -> Incoming {
        let fail = |code, what: &str| Incoming::Fail {
            code,
            reason: DisconnectReason::ProtocolError(what.into()),
        };
        match message {
            ws::Message::Text(text) => Incoming::Text(text),
            ws::Message::Binary(data) => Incoming::Binary(data),
            ws::Message::Ping(payload) => Incoming::Ping(payload),
            ws::Message::Pong(_) | ws::Message::Nop => Incoming::Nothing,
            ws::Message::Close(reason) => Incoming::Close(reason),
            ws::Message::Continuation(item) => match self.fragments.push(item) {
                Assembled::Pending => Incoming::Nothing,
                Assembled::Text(text) => Incoming::Text(ByteString::from(text)),
                Assembled::Binary(data) => Incoming::Binary(data),
                Assembled::TooBig => fail(
                    close_code::MESSAGE_TOO_BIG,
                    "fragmented message over max_frame_bytes",
                ),
                Assembled::InvalidUtf8 => fail(
                    close_code::INVALID_PAYLOAD,
                    "text message is not valid UTF-8",
                ),
                Assembled::OutOfOrder => fail(
                    close_code::PROTOCOL_ERROR,
                    "continuation without a first frame",
                ),
            },
        }
    }

    /// What an error from the codec amounts to.
    pub fn error(error: &ProtocolError) -> Incoming {
        match classify(error) {
            (close_code::NORMAL, _) => Incoming::Lost,
            (code, what) => Incoming::Fail {
                code,
                reason: DisconnectReason::ProtocolError(what),
            },
        }
    }
}

/// The close frame herald sends with `code`: a fixed reason per kind
/// ([`DisconnectReason::close_text`]), never the client's own text.
pub fn close_frame(code: u16, reason: &DisconnectReason) -> CloseReason {
    CloseReason {
        code: CloseCode::from(code),
        description: Some(reason.close_text().into()),
    }
}

/// The answer to the client's close frame: its code, as RFC 6455 §5.5.1
/// asks, without its text.
pub fn echoed(reason: Option<CloseReason>) -> Option<CloseReason> {
    reason.map(|r| CloseReason {
        code: r.code,
        description: None,
    })
}

/// The upgrade answer that runs `actor` over the connection. The client's
/// bytes are read through [`InboundFrames`], which bounds what one
/// connection can make herald buffer; the context's own input is left
/// empty.
pub fn start<A>(
    actor: A,
    max_frame_bytes: usize,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, HandshakeError>
where
    A: Actor<Context = ws::WebsocketContext<A>> + StreamHandler<Result<ws::Message, ProtocolError>>,
{
    let mut response = ws::handshake(req)?;
    let input = InboundFrames::new(payload, max_frame_bytes);
    let unused = futures_util::stream::pending::<Result<Bytes, PayloadError>>();
    Ok(
        response.streaming(ws::WebsocketContext::with_factory(unused, move |ctx| {
            ctx.add_stream(input);
            actor
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

#[cfg(test)]
mod tests {
    use super::*;
    use actix_http::ws::Item;

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
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert_eq!(
            ClientMessages::error(&ProtocolError::Io(reset)),
            Incoming::Lost
        );
    }

    #[test]
    fn fragments_are_joined_and_their_faults_close() {
        let mut messages = ClientMessages::new(8);
        let first = ws::Message::Continuation(Item::FirstText(Bytes::from_static(b"ab")));
        assert_eq!(messages.message(first), Incoming::Nothing);
        let last = ws::Message::Continuation(Item::Last(Bytes::from_static(b"c")));
        assert_eq!(messages.message(last), Incoming::Text("abc".into()));
        let stray = ws::Message::Continuation(Item::Last(Bytes::new()));
        assert!(matches!(
            messages.message(stray),
            Incoming::Fail {
                code: close_code::PROTOCOL_ERROR,
                ..
            }
        ));
        let big = ws::Message::Continuation(Item::FirstBinary(Bytes::from_static(b"123456789")));
        assert!(matches!(
            messages.message(big),
            Incoming::Fail {
                code: close_code::MESSAGE_TOO_BIG,
                ..
            }
        ));
    }
}
