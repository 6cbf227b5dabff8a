//! The wire protocol between herald and its clients: the JSON frames each side
//! sends and the WebSocket close codes herald uses. `docs/protocol.md` is the
//! prose version of this file; keep them in step.

use bytestring::ByteString;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::ids::{ChannelName, ClientId};

/// A text frame a client sends. Fields a client adds beyond these are ignored,
/// so newer clients keep working against older servers.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    /// Register (or re-register) this session: under `id`, or under the
    /// `sub` of `token` (which wins when both are given).
    Register {
        #[serde(default)]
        id: Option<ClientId>,
        #[serde(default)]
        token: Option<String>,
    },
    /// Start receiving a channel's messages.
    Subscribe { channel: ChannelName },
    /// Stop receiving a channel's messages.
    Unsubscribe { channel: ChannelName },
    /// Replace the session's token with a fresh one for the same id, before
    /// the current one expires.
    Refresh { token: String },
}

impl ClientFrame {
    /// Parses one complete client text message, with an error text meant for
    /// the client.
    pub fn parse(text: &str) -> Result<Self, String> {
        serde_json::from_str(text).map_err(|e| match e.classify() {
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                format!("frame is not valid JSON: {e}")
            }
            _ => format!("bad frame: {e}"),
        })
    }
}

/// A frame herald sends to a client. Built and encoded once per event; a
/// publish is encoded once and the bytes are shared by every recipient.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    /// A notification. `id` is present on direct messages only, `channel`
    /// on channel messages only.
    Message {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<&'a ClientId>,
        #[serde(skip_serializing_if = "Option::is_none")]
        channel: Option<&'a ChannelName>,
        data: &'a RawValue,
    },
    /// The answer to a registration, with the greeting the console shows.
    Registered { id: &'a ClientId, greeting: String },
    /// The session now receives this channel's messages.
    Subscribed { channel: &'a ChannelName },
    /// The session no longer receives this channel's messages.
    Unsubscribed { channel: &'a ChannelName },
    /// A fresh token was accepted; `exp` is its expiry (Unix seconds).
    Refreshed { id: &'a ClientId, exp: u64 },
    /// A client frame herald could not act on; the session stays open.
    Error { error: &'a str },
}

impl ServerFrame<'_> {
    /// Encodes the frame as the text of one WebSocket message.
    pub fn encode(&self) -> ByteString {
        // The frame holds only strings and already-valid JSON, which
        // serde_json always serializes; the fallback keeps that an invariant
        // rather than a panic.
        match serde_json::to_string(self) {
            Ok(text) => ByteString::from(text),
            Err(e) => {
                log::error!("could not encode a server frame: {e}");
                ByteString::from_static(r#"{"type":"error","error":"internal encoding error"}"#)
            }
        }
    }
}

/// WebSocket close codes herald sends, and when.
pub mod close_code {
    /// The client closed, or herald is shutting down the session normally.
    pub const NORMAL: u16 = 1000;
    /// The client broke the WebSocket protocol: reserved bits set, an
    /// unmasked frame, a bad opcode, a control frame over 125 bytes, a
    /// continuation out of order, an invalid close code.
    pub const PROTOCOL_ERROR: u16 = 1002;
    /// A text message that is not valid UTF-8.
    pub const INVALID_PAYLOAD: u16 = 1007;
    /// The client sent frames faster than `max_client_frames_per_sec` and
    /// kept going after being told.
    pub const POLICY_VIOLATION: u16 = 1008;
    /// A client frame, or a fragmented message once reassembled, over
    /// `max_frame_bytes`.
    pub const MESSAGE_TOO_BIG: u16 = 1009;
    /// The client stayed silent (no pong, no frame) for `client_timeout_ms`.
    pub const HEARTBEAT_TIMEOUT: u16 = 4000;
    /// No valid token: required by `require_token` and not given in time, a
    /// frame other than `register` sent before it, or an invalid one.
    pub const UNAUTHORIZED: u16 = 4001;
    /// The session's token expired and no fresh one came (`refresh`).
    pub const TOKEN_EXPIRED: u16 = 4002;
    /// The session's outbound queue (`session_queue_messages`) was full: the
    /// client does not read fast enough, and herald drops it rather than let
    /// it hold memory or slow anyone else.
    pub const SLOW_CONSUMER: u16 = 4003;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_frames_parse_with_string_or_integer_ids() {
        for text in [
            r#"{"type":"register","id":"63"}"#,
            r#"{"type":"register","id":63,"extra":1}"#,
        ] {
            match ClientFrame::parse(text) {
                Ok(ClientFrame::Register {
                    id: Some(id),
                    token: None,
                }) => assert_eq!(id.as_str(), "63"),
                other => panic!("{text}: {other:?}"),
            }
        }
    }

    #[test]
    fn bad_frames_get_a_reason() {
        assert!(ClientFrame::parse("hello")
            .unwrap_err()
            .contains("not valid JSON"));
        assert!(ClientFrame::parse(r#"{"type":"dance"}"#)
            .unwrap_err()
            .contains("unknown variant"));
        assert!(ClientFrame::parse(r#"{"type":"register","id":""}"#)
            .unwrap_err()
            .contains("id must not be empty"));
        assert!(ClientFrame::parse(r#"{"id":"1"}"#)
            .unwrap_err()
            .contains("type"));
        assert!(
            ClientFrame::parse(r#"{"type":"subscribe","channel":"a b"}"#)
                .unwrap_err()
                .contains("channel name may only contain")
        );
    }

    #[test]
    fn message_frames_embed_the_data_verbatim() {
        let data = RawValue::from_string(r#"{"order":17}"#.into()).unwrap();
        let id = ClientId::parse("63").unwrap();
        let frame = ServerFrame::Message {
            id: Some(&id),
            channel: None,
            data: &data,
        };
        assert_eq!(
            &*frame.encode(),
            r#"{"type":"message","id":"63","data":{"order":17}}"#
        );
        let frame = ServerFrame::Message {
            id: None,
            channel: None,
            data: &data,
        };
        assert_eq!(
            &*frame.encode(),
            r#"{"type":"message","data":{"order":17}}"#
        );
        let news = ChannelName::parse("news").unwrap();
        let frame = ServerFrame::Message {
            id: None,
            channel: Some(&news),
            data: &data,
        };
        assert_eq!(
            &*frame.encode(),
            r#"{"type":"message","channel":"news","data":{"order":17}}"#
        );
    }
}
