//! What herald sends a client besides messages: [`ServerFrame`].

use bytestring::ByteString;
use serde::Serialize;

use crate::ids::{ChannelName, ClientId, Epoch};
use crate::replay::ResetReason;

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
        epoch: &'a Epoch,
        seq: u64,
    },
    /// A session with neither id nor channel opened: the server's position,
    /// from which it can resume later.
    Connected { epoch: &'a Epoch, seq: u64 },
    /// A resume succeeded: `count` missed messages were sent before this
    /// frame; the client is now up to date with `seq`.
    Resumed {
        since: u64,
        count: usize,
        epoch: &'a Epoch,
        seq: u64,
    },
    /// A resume was impossible; nothing was replayed. The client should
    /// reload its state and continue from `epoch` / `seq`.
    Reset {
        reason: &'a ResetReason,
        epoch: &'a Epoch,
        seq: u64,
    },
    /// The session now receives this channel's messages. At connect it
    /// carries the server's position too.
    Subscribed {
        channel: &'a ChannelName,
        #[serde(skip_serializing_if = "Option::is_none")]
        epoch: Option<&'a Epoch>,
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
