//! Every actix message exchanged inside the hub, grouped by receiver.

use std::fmt;

use actix::prelude::*;
use bytestring::ByteString;

use super::backlog::Positioned;
use super::mailbox::{self, Batch, MailboxSender, Taker};
use crate::broker::{BrokerError, Missed, Presence, Publication};
use crate::client_addr::ClientAddr;
use crate::idempotency::ScopedKey;
use crate::ids::{ChannelName, ClientId, Epoch, SessionId};
use crate::protocol::join;
pub use crate::protocol::join::Resume;
use crate::protocol::{PendingFrame, Position};

// ---- to NotifyServer -----------------------------------------------------

/// A session opens, with what it asked for at connect. Registering,
/// subscribing and resuming happen in this one step, so no publish can fall
/// between them: the answer's replay and the live messages that follow it
/// neither overlap nor leave a hole.
#[derive(Message)]
#[rtype(result = "Joined")]
pub struct Connect {
    pub session: SessionId,
    pub transport: Transport,
    /// The client address (the TCP peer, or the client behind a trusted
    /// proxy), for logs.
    pub peer: Option<ClientAddr>,
    /// Where `NotifyServer` sends this session's frames and its close order.
    pub outbox: SessionOutbox,
    pub id: Option<ClientId>,
    /// Already checked against the session's limits and permissions.
    pub channels: Vec<ChannelName>,
    pub resume: Option<Position>,
}

/// A session ended, for whatever reason. Removes every trace of it.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Disconnect {
    pub session: SessionId,
    pub reason: DisconnectReason,
    /// The WebSocket close code sent or received, for the log.
    pub close_code: Option<u16>,
}

/// A session registers (or re-registers) under an id, and may resume.
#[derive(Message)]
#[rtype(result = "Joined")]
pub struct Register {
    pub session: SessionId,
    pub id: ClientId,
    pub resume: Option<Position>,
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

/// Publish to every session.
#[derive(Message)]
#[rtype(result = "Result<Published, BrokerError>")]
pub struct Broadcast {
    /// Encoded once by the publisher; `NotifyServer` only stamps the seq in.
    pub frame: PendingFrame,
    /// The publisher's idempotency key, if it gave one (see
    /// [`crate::broker::Broker::publish`]).
    pub idempotency: Option<ScopedKey>,
}

/// Publish to every session registered as `id` (and keep it for the id's
/// next sessions, within the history bounds).
#[derive(Message)]
#[rtype(result = "Result<Published, BrokerError>")]
pub struct Direct {
    pub id: ClientId,
    pub frame: PendingFrame,
    pub idempotency: Option<ScopedKey>,
}

/// Publish to every subscriber of `channel`.
#[derive(Message)]
#[rtype(result = "Result<Published, BrokerError>")]
pub struct ToChannel {
    pub channel: ChannelName,
    pub frame: PendingFrame,
    pub idempotency: Option<ScopedKey>,
}

/// A message numbered and kept by the broker ([`Publication`]), to fan out
/// to this node's sessions: handed to `NotifyServer` as it is, without a
/// copy.
impl Message for Publication {
    type Result = ();
}

/// Messages this node missed and cannot fan out ([`Missed`]): the
/// sessions they were for are closed, to resume.
impl Message for Missed {
    type Result = ();
}

/// The process is stopping: close every session (WebSockets with 1001).
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Shutdown;

/// Ask for the operator's view (`/stats`).
#[derive(Message)]
#[rtype(result = "Stats")]
pub struct GetStats {
    /// How many of the largest channels to list.
    pub top: usize,
}

/// What `/stats` shows.
#[derive(Debug, Clone, serde::Serialize, MessageResponse)]
pub struct Stats {
    pub sessions: usize,
    pub sessions_by_transport: std::collections::BTreeMap<String, usize>,
    pub ids: usize,
    pub channels: usize,
    /// The largest channels, by subscribers, largest first.
    pub top_channels: Vec<ChannelCount>,
    pub seq: u64,
    pub history_messages: usize,
    pub history_bytes: usize,
    pub history_streams: usize,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ChannelCount {
    pub channel: ChannelName,
    pub subscribers: usize,
}

/// Ask `NotifyServer` for its current size and the history's ([`Counts`]).
#[derive(Message)]
#[rtype(result = "Counts")]
pub struct GetCounts;

/// Ask for what this node reports to the cluster ([`Presence`]): its
/// sessions, and its ids unless they are unchanged since generation
/// `known`.
#[derive(Message)]
#[rtype(result = "Presence")]
pub struct GetPresence {
    pub known: Option<u64>,
}

// ---- answers from NotifyServer -------------------------------------------

/// What a publish did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    /// Sessions the message was handed to; `None` when other nodes deliver
    /// it too and the count is not known without waiting on each.
    pub delivered: Option<usize>,
    /// The message's position.
    pub seq: u64,
    /// With a cluster: the nodes it was announced to.
    pub nodes: Option<u64>,
    /// Its idempotency key was used within the window: `seq` is the first
    /// publish's, and nothing was delivered.
    pub duplicate: bool,
}

/// The answer to [`Connect`] and [`Register`]: the server's position at
/// that moment, and the outcome of a resume if one was asked.
#[derive(Debug, Clone, MessageResponse)]
pub struct Joined {
    pub epoch: Epoch,
    pub seq: u64,
    pub resume: Option<Resume>,
}

impl Joined {
    /// The frames that tell the client the outcome of its join, in wire
    /// order, each with the position it completes ([`join::frames`]).
    pub fn frames(&self, id: Option<&ClientId>, channels: &[ChannelName]) -> Vec<Positioned> {
        join::frames(&self.epoch, self.seq, self.resume.as_ref(), id, channels)
    }

    /// Why the client is to come back later instead of being answered,
    /// when it is ([`Resume::RetryLater`]).
    pub fn retry_later(&self) -> Option<&str> {
        match &self.resume {
            Some(Resume::RetryLater { why }) => Some(why),
            _ => None,
        }
    }
}

/// Why a join that an HTTP status answers (an event stream, a long-poll)
/// was not taken: its request is answered 503 instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotJoined {
    /// `NotifyServer` is not running.
    ServerGone,
    /// The resume could not be read now ([`Resume::RetryLater`]): come
    /// back later from the same position.
    RetryLater,
}

impl From<actix::MailboxError> for NotJoined {
    fn from(_: actix::MailboxError) -> Self {
        Self::ServerGone
    }
}

/// What `NotifyServer` holds (sessions, ids, channels) and the size of
/// the history, for `/health`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, MessageResponse)]
pub struct Counts {
    /// Open sessions, registered or not.
    pub sessions: usize,
    /// Distinct registered ids.
    pub ids: usize,
    /// Channels with at least one subscriber.
    pub channels: usize,
    /// Latest seq.
    pub seq: u64,
    /// Messages retained in history.
    pub history_messages: usize,
    /// Bytes counted against `history_max_bytes`.
    pub history_bytes: usize,
}

// ---- to a session --------------------------------------------------------

/// A message frame for a session to write, as queued in its mailbox
/// (`crate::hub::mailbox`). The frame is shared: cloning it bumps a
/// reference count.
pub struct Deliver {
    pub seq: u64,
    pub frame: ByteString,
    /// When `NotifyServer` handed it out, for the publish-to-write metric.
    pub routed_at: std::time::Instant,
}

impl Deliver {
    /// Seconds from routing to `now`, when it is written.
    pub fn waited(&self, now: std::time::Instant) -> f64 {
        now.saturating_duration_since(self.routed_at).as_secs_f64()
    }
}

/// Close the session with this WebSocket close code.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Close {
    pub code: u16,
    /// Logged, and sent to the client as the close frame's text.
    pub reason: DisconnectReason,
}

/// Where `NotifyServer` reaches one session.
#[derive(Clone)]
pub struct SessionOutbox {
    /// Fan-out goes here, without waiting: a full queue is refused.
    pub frames: MailboxSender,
    /// Control: always queued (`do_send`).
    pub close: Recipient<Close>,
}

impl SessionOutbox {
    /// Opens the fan-out mailbox of the session actor whose context is
    /// `ctx`, holding at most `capacity` frames; the actor receives them
    /// as [`Batch`]es. Also returns what takes the queued frames at once,
    /// for a session about to close.
    pub fn open<A>(ctx: &mut A::Context, capacity: usize) -> (Self, Taker)
    where
        A: Actor + StreamHandler<Batch> + Handler<Close>,
        A::Context: AsyncContext<A> + actix::dev::ToEnvelope<A, Close>,
    {
        let (frames, mailbox) = mailbox::channel(capacity);
        let taker = mailbox.taker();
        ctx.add_stream(mailbox);
        let close = ctx.address().recipient();
        (Self { frames, close }, taker)
    }
}

/// How a session is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    EventStream,
    LongPoll,
}

impl Transport {
    /// Its name in log lines and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WebSocket => "ws",
            Self::EventStream => "sse",
            Self::LongPoll => "poll",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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
    /// A long-poll request got its answer or timed out.
    PollDone,
    /// herald is shutting down.
    ServerShutdown,
    /// `NotifyServer` is not running: the session
    /// cannot be served (WebSocket close 1011).
    ServerGone,
    /// The session's mailbox was closed when `NotifyServer` tried to deliver.
    Gone,
    /// The node missed messages for the session and cannot fan them out
    /// (its link to the cluster broke): the client resumes to get them.
    Missed,
    /// The client's resume could not be read from the broker now (the
    /// text says why): it is told to come back later (WebSocket close
    /// 1013), not reset.
    ResumeLater(String),
}

/// What a client asked to resume later is told (the broker's own error
/// stays in the log).
pub const RESUME_LATER: &str =
    "the message broker cannot be read now; the history is kept: resume from the same position later";

impl DisconnectReason {
    /// The reason sent in a close frame: a fixed text per kind, well within
    /// the 123 bytes a close frame allows. The details, which may carry the
    /// client's own text, go in an `error` frame before it
    /// ([`DisconnectReason::detail`]) and, escaped, in the log.
    pub fn close_text(&self) -> &'static str {
        match self {
            Self::ClientClosed => "closed by client",
            Self::ConnectionLost => "connection lost",
            Self::HeartbeatTimeout => "heartbeat timeout",
            Self::ProtocolError(_) => "protocol error",
            Self::SlowConsumer => "slow consumer",
            Self::Unauthorized(_) => "unauthorized",
            Self::TokenExpired => "token expired",
            Self::Flooding => "too many frames",
            Self::PollDone => "poll answered",
            Self::ServerShutdown => "server shutting down",
            Self::ServerGone => "router not running",
            Self::Gone => "session gone",
            Self::Missed => "missed messages: resume",
            Self::ResumeLater(_) => "try again later",
        }
    }

    /// What the client should be told before the close, when there is more
    /// to say than [`DisconnectReason::close_text`].
    pub fn detail(&self) -> Option<&str> {
        match self {
            Self::ProtocolError(text) | Self::Unauthorized(text) => Some(text),
            Self::ServerGone => Some("the router is not running"),
            Self::ResumeLater(_) => Some(RESUME_LATER),
            _ => None,
        }
    }
}

/// Longest client-derived text written into one log line, in characters
/// as written (an escape counts as the characters it is written with).
/// With UTF-8 at 4 bytes a character at most, the two copies a session
/// line can hold (its message and `detail`) keep the whole line within one
/// 4 KiB write of the log sink.
const MAX_LOGGED_DETAIL_CHARS: usize = 200;

/// `text` fit for one log line: control, format and line-separator
/// characters escaped (`\n`, `\u{202e}`), anything shaped like a JWT (a
/// client's token quoted back in a parse error) replaced by `<token>`, cut
/// at [`MAX_LOGGED_DETAIL_CHARS`] written characters.
pub struct LogSafe<'a>(pub &'a str);

/// A JWT's header is base64url of `{"`: `eyJ`. A run of base64url and dots
/// at least this long after it is taken for a token.
const MIN_REDACTED_TOKEN_CHARS: usize = 16;

impl fmt::Display for LogSafe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        let mut written = 0;
        while let Some(c) = rest.chars().next() {
            if rest.starts_with("eyJ") {
                let run = rest
                    .bytes()
                    .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                    .count();
                if run >= MIN_REDACTED_TOKEN_CHARS {
                    const TOKEN: &str = "<token>";
                    if written + TOKEN.len() > MAX_LOGGED_DETAIL_CHARS {
                        return f.write_str("…");
                    }
                    f.write_str(TOKEN)?;
                    rest = &rest[run..];
                    written += TOKEN.len();
                    continue;
                }
            }
            let escaped = c == '\\' || c.is_control() || crate::ids::is_invisible(c);
            let width = if escaped { c.escape_default().len() } else { 1 };
            if written + width > MAX_LOGGED_DETAIL_CHARS {
                return f.write_str("…");
            }
            if escaped {
                write!(f, "{}", c.escape_default())?;
            } else {
                write!(f, "{c}")?;
            }
            rest = &rest[c.len_utf8()..];
            written += width;
        }
        Ok(())
    }
}

impl fmt::Display for DisconnectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ProtocolError(what) => write!(f, "protocol error: {}", LogSafe(what)),
            Self::Unauthorized(why) => write!(f, "unauthorized: {}", LogSafe(why)),
            Self::SlowConsumer => f.write_str("slow consumer: max_pending_messages reached"),
            Self::Flooding => f.write_str("too many frames (max_client_frames_per_sec)"),
            Self::ResumeLater(why) => write!(f, "resume to retry later: {why}"),
            other => f.write_str(other.close_text()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LogSafe;

    #[test]
    fn a_token_quoted_back_in_client_text_is_not_logged() {
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI2MyJ9.c2lnbmF0dXJlLWJ5dGVz";
        let text = format!("unknown variant `{token}`, expected one of `register`");
        let logged = LogSafe(&text).to_string();
        assert_eq!(
            logged,
            "unknown variant `<token>`, expected one of `register`"
        );
        // Short runs and other words stay.
        assert_eq!(LogSafe("eyJ-short").to_string(), "eyJ-short");
    }

    #[test]
    fn control_characters_are_escaped_and_long_text_cut() {
        assert_eq!(LogSafe("a\nb\u{202e}").to_string(), "a\\nb\\u{202e}");
        let long = "x".repeat(500);
        let logged = LogSafe(&long).to_string();
        assert_eq!(logged.chars().count(), super::MAX_LOGGED_DETAIL_CHARS + 1);
        assert!(logged.ends_with('…'));
        // Escapes count as written: a run of private-use characters, each
        // written `\u{10fffd}`, is cut at the same length.
        let escaped = LogSafe(&"\u{10fffd}".repeat(400)).to_string();
        assert!(escaped.starts_with("\\u{10fffd}"), "{escaped}");
        assert!(escaped.chars().count() <= super::MAX_LOGGED_DETAIL_CHARS + 1);
        assert!(escaped.ends_with('…'));
        let tokens = LogSafe(&"eyJhbGciOiJIUzI1NiJ9.e30 ".repeat(100)).to_string();
        assert!(tokens.chars().count() <= super::MAX_LOGGED_DETAIL_CHARS + 1);
    }
}
