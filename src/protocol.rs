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
        /// With `epoch`: resume after this seq (see [`Position`]).
        #[serde(default)]
        since: Option<u64>,
        #[serde(default)]
        epoch: Option<String>,
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

/// A client's position in the server's message sequence: it has every
/// message addressed to it up to `since`, in server lifetime `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub epoch: String,
    pub since: u64,
}

impl Position {
    /// Longest epoch accepted from a client, in bytes.
    pub const MAX_EPOCH_BYTES: usize = 64;

    /// Builds a position from the two values a client sends.
    pub fn new(epoch: String, since: u64) -> Result<Self, String> {
        if epoch.is_empty()
            || epoch.len() > Self::MAX_EPOCH_BYTES
            || !epoch
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return Err("`epoch` must be the epoch herald sent (letters, digits, '-')".into());
        }
        Ok(Self { epoch, since })
    }

    /// Reads `<epoch>:<seq>`, the form SSE event ids and `Last-Event-ID`
    /// carry.
    pub fn parse_event_id(text: &str) -> Result<Self, String> {
        let (epoch, seq) = text
            .rsplit_once(':')
            .ok_or("Last-Event-ID must be <epoch>:<seq>")?;
        let since = seq
            .parse()
            .map_err(|_| "Last-Event-ID must end in a sequence number".to_owned())?;
        Self::new(epoch.to_owned(), since)
    }
}

/// A message frame encoded once per publish, before its `seq` is known:
/// the router stamps the seq in with [`PendingFrame::stamp`], a copy of
/// bytes rather than an encoding.
#[derive(Debug, Clone)]
pub struct PendingFrame {
    /// `{"id":…,"channel":…,"data":…}`: the frame's fields after `seq`.
    tail: String,
}

#[derive(Serialize)]
struct MessageTail<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a ClientId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a ChannelName>,
    data: &'a RawValue,
}

impl PendingFrame {
    /// Encodes a message frame's fields. `data` must be compact JSON (no
    /// raw line breaks: SSE frames it line by line); see [`minify_json`].
    pub fn message(
        id: Option<&ClientId>,
        channel: Option<&ChannelName>,
        data: &RawValue,
    ) -> Result<Self, String> {
        let tail = serde_json::to_string(&MessageTail { id, channel, data })
            .map_err(|e| format!("could not encode the message: {e}"))?;
        Ok(Self { tail })
    }

    /// The frame's fields after `seq`, without the opening brace (what a
    /// broker that numbers messages elsewhere appends after the seq).
    pub fn fields(&self) -> &str {
        self.tail.get(1..).unwrap_or("}")
    }

    /// The complete frame `{"type":"message","seq":<seq>,…}`.
    pub fn stamp(&self, seq: u64) -> ByteString {
        const HEAD: &str = r#"{"type":"message","seq":"#;
        // The tail always starts with `{` and holds at least `data`.
        let fields = self.fields();
        let mut frame = String::with_capacity(HEAD.len() + 21 + self.tail.len());
        frame.push_str(HEAD);
        frame.push_str(&seq.to_string());
        frame.push(',');
        frame.push_str(fields);
        ByteString::from(frame)
    }
}

/// Removes the whitespace between the tokens of valid JSON, leaving strings
/// untouched, so a published value is stored and sent compact and on one
/// line. Numbers and strings keep their exact text.
pub fn minify_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\n' | '\r') {
            out.push(c);
        }
    }
    out
}

/// A frame herald sends to a client. Built and encoded once per event; a
/// publish is encoded once and the bytes are shared by every recipient.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    /// The answer to a registration, with the greeting the console shows
    /// and the server's position: its epoch and latest seq.
    Registered {
        id: &'a ClientId,
        greeting: String,
        epoch: &'a str,
        seq: u64,
    },
    /// A session with neither id nor channel opened: the server's position,
    /// from which it can resume later.
    Connected { epoch: &'a str, seq: u64 },
    /// A resume succeeded: `count` missed messages were sent before this
    /// frame; the client is now up to date with `seq`.
    Resumed {
        since: u64,
        count: usize,
        epoch: &'a str,
        seq: u64,
    },
    /// A resume was impossible; nothing was replayed. The client should
    /// reload its state and continue from `epoch` / `seq`.
    Reset {
        reason: &'a str,
        epoch: &'a str,
        seq: u64,
    },
    /// The session now receives this channel's messages. At connect it
    /// carries the server's position too.
    Subscribed {
        channel: &'a ChannelName,
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
    },
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
    /// herald is shutting down: reconnect (to another node).
    pub const GOING_AWAY: u16 = 1001;
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
    /// herald could not serve the session (its router stopped).
    pub const INTERNAL_ERROR: u16 = 1011;
    /// The session's outbound queue (`max_pending_messages`) was full: the
    /// client does not read fast enough, and herald drops it rather than let
    /// it hold memory or slow anyone else. It can resume from history.
    pub const SLOW_CONSUMER: u16 = 4003;
}

/// The bytes of every message frame before its seq. A broker that numbers
/// messages elsewhere (the Redis publish script) builds the frame as this,
/// the seq in decimal, then [`PendingFrame::after_seq`]: the bytes
/// [`PendingFrame::stamp`] builds here.
pub const MESSAGE_FRAME_HEAD: &str = r#"{"type":"message","seq":"#;

impl PendingFrame {
    /// The bytes of the frame after its seq: a comma, then its fields.
    pub fn after_seq(&self) -> String {
        format!(",{}", self.fields())
    }
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
                    since: None,
                    epoch: None,
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
    fn message_frames_embed_the_data_verbatim_with_the_stamped_seq() {
        let data = RawValue::from_string(r#"{"order":17}"#.into()).unwrap();
        let id = ClientId::parse("63").unwrap();
        let frame = PendingFrame::message(Some(&id), None, &data).unwrap();
        assert_eq!(
            &*frame.stamp(42),
            r#"{"type":"message","seq":42,"id":"63","data":{"order":17}}"#
        );
        let frame = PendingFrame::message(None, None, &data).unwrap();
        assert_eq!(
            &*frame.stamp(7),
            r#"{"type":"message","seq":7,"data":{"order":17}}"#
        );
        let news = ChannelName::parse("news").unwrap();
        let frame = PendingFrame::message(None, Some(&news), &data).unwrap();
        let stamped = frame.stamp(u64::MAX);
        let parsed: serde_json::Value = serde_json::from_str(&stamped).unwrap();
        assert_eq!(parsed["seq"], u64::MAX);
        assert_eq!(parsed["channel"], "news");
    }

    #[test]
    fn minify_keeps_strings_and_numbers_exact() {
        let raw = "{ \"a\" : [1 ,\n 2.50e3 ],\r\n\t\"s\": \"x \\\" y\\n \\\\\" , \"big\": 123456789012345678901234567890 }";
        let min = minify_json(raw);
        assert_eq!(
            min,
            r#"{"a":[1,2.50e3],"s":"x \" y\n \\","big":123456789012345678901234567890}"#
        );
        let a: serde_json::Value = serde_json::from_str(raw).unwrap();
        let b: serde_json::Value = serde_json::from_str(&min).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn positions_parse_from_event_ids() {
        let p = Position::parse_event_id("a1b2-c3:41").unwrap();
        assert_eq!((p.epoch.as_str(), p.since), ("a1b2-c3", 41));
        assert!(Position::parse_event_id("41").is_err());
        assert!(Position::parse_event_id("e:x").is_err());
        assert!(Position::parse_event_id("bad epoch:1").is_err());
    }
}
