//! Every actix message exchanged inside the hub, grouped by receiver.

use std::fmt;
use std::net::SocketAddr;

use actix::prelude::*;
use bytestring::ByteString;

use crate::ids::{ChannelName, ClientId, SessionId};

// ---- to the server -------------------------------------------------------

/// A session opened. Sent by the session as it starts, before anything else.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Connect {
    pub session: SessionId,
    /// The TCP peer, for logs.
    pub peer: Option<SocketAddr>,
    /// Where the server sends this session's frames and its close order.
    pub outbox: SessionOutbox,
}

/// A session ended, for whatever reason. Removes every trace of it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub session: SessionId,
    pub reason: DisconnectReason,
}

/// A session registers (or re-registers) under an id.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Register {
    pub session: SessionId,
    pub id: ClientId,
}

/// A session starts receiving a channel. Sent only once the session has
/// checked its own limits and permissions.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Subscribe {
    pub session: SessionId,
    pub channel: ChannelName,
}

/// A session stops receiving a channel.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    pub session: SessionId,
    pub channel: ChannelName,
}

/// Hand `frame` to every session. Answers the number of sessions it was
/// handed to.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Broadcast {
    /// The complete, already encoded frame.
    pub frame: ByteString,
}

/// Hand `frame` to every session registered as `id`. Answers the number of
/// sessions it was handed to (0 if nobody holds the id).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Direct {
    pub id: ClientId,
    /// The complete, already encoded frame.
    pub frame: ByteString,
}

/// Hand `frame` to every subscriber of `channel`. Answers the number of
/// sessions it was handed to (0 for a channel nobody listens to).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct ToChannel {
    pub channel: ChannelName,
    /// The complete, already encoded frame.
    pub frame: ByteString,
}

/// Ask for the current size of the registry.
#[derive(Message)]
#[rtype(result = "Counts")]
pub struct GetCounts;

/// The size of the registry, for `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, MessageResponse)]
pub struct Counts {
    /// Open sessions, registered or not.
    pub sessions: usize,
    /// Distinct registered ids.
    pub ids: usize,
    /// Channels with at least one subscriber.
    pub channels: usize,
}

// ---- to a session --------------------------------------------------------

/// Write this frame to the client. The frame is shared: cloning it bumps a
/// reference count.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Deliver {
    pub frame: ByteString,
}

/// Close the session with this WebSocket close code.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close {
    pub code: u16,
    /// Logged, and sent to the client as the close frame's text.
    pub reason: DisconnectReason,
}

/// The two addresses of one session that the server keeps.
#[derive(Clone)]
pub struct SessionOutbox {
    /// Fan-out goes here, with `try_send`, so a full queue is noticed.
    pub deliver: Recipient<Deliver>,
    /// Control: always queued (`do_send`).
    pub close: Recipient<Close>,
}

/// Why a session ended, as written in the disconnect log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client sent a close frame.
    ClientClosed,
    /// The TCP connection ended without a close frame.
    ConnectionLost,
    /// Nothing heard within `client_timeout_ms`.
    HeartbeatTimeout,
    /// The client broke the WebSocket protocol; the text says how.
    ProtocolError(String),
    /// The session's queue was full.
    SlowConsumer,
    /// No valid token when one was needed; the text says why.
    Unauthorized(String),
    /// The session's token expired.
    TokenExpired,
    /// Too many frames, for too long.
    Flooding,
    /// The session's mailbox was closed when the server tried to deliver.
    Gone,
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ClientClosed => f.write_str("closed by client"),
            Self::ConnectionLost => f.write_str("connection lost"),
            Self::HeartbeatTimeout => f.write_str("heartbeat timeout"),
            Self::ProtocolError(what) => write!(f, "protocol error: {what}"),
            Self::SlowConsumer => f.write_str("slow consumer"),
            Self::Unauthorized(why) => write!(f, "unauthorized: {why}"),
            Self::TokenExpired => f.write_str("token expired"),
            Self::Flooding => f.write_str("too many frames (max_client_frames_per_sec)"),
            Self::Gone => f.write_str("session gone"),
        }
    }
}
