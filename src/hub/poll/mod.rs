//! A long-poll request (`GET /poll`) once admitted: it joins
//! `NotifyServer` through a [`PollWaiter`], and its answer is a streamed
//! body ([`PollAnswer`]) sent with its headers at once.
//!
//! With a position whose missed messages can be recovered, the answer is
//! those messages at once; with one that cannot, the `reset` frame at once;
//! with one the broker cannot read now, no answer body: the route answers
//! 503 to retry later (the history is not known to be lost); otherwise the body waits up to the request's `wait` for the next message
//! and answers with it, or with an empty list. What the body says is
//! defined in `protocol::poll`.
//!
//! The body holds the request's connection slot until it is written,
//! encodes a replay a slice at a time as the client reads, and does the
//! waiting itself, writing a probe (one space) every [`PROBE_INTERVAL`]
//! meanwhile.
//!
//! Why the probe: actix-web's HTTP/1 dispatcher allows half-closed
//! connections, so when a client closes its side it stops reading and lets
//! the request run on; it learns that the client is gone only when a write
//! fails. A handler that waited before answering would keep its slot and
//! its session until `poll_timeout_secs`, however soon the client left. The
//! probe is that write: the first one after the close fails (or draws the
//! peer's reset, and the next one fails), the dispatcher drops the body,
//! and the slot and the session go with it.

mod answer;
mod waiter;

use std::time::Duration;

use actix::Addr;

pub use self::answer::PollAnswer;
use self::answer::{Answer, State, Waiting};
pub use self::waiter::PollWaiter;
use super::admission::Admitted;
use super::backlog::Backlog;
use super::messages::{Disconnect, DisconnectReason, NotJoined, Resume, Transport};
use super::NotifyServer;
use crate::client_addr::ClientAddr;
use crate::ids::SessionId;
use crate::limits::ConnectionPermit;
use crate::protocol::poll::reset_answer;

/// How often a waiting poll writes a probe to learn whether its client is
/// still there. A client that closed is noticed at the first write after
/// the close (it fails) or, if that write only drew the peer's reset, at
/// the next one: within one or two intervals.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// What an admitted long-poll asks for.
pub struct PollRequest {
    /// The client address, for logs.
    pub peer: Option<ClientAddr>,
    /// Who the client is and what it joins ([`Admission::admit`]).
    pub admitted: Admitted,
    /// `poll_timeout_secs`: the longest a poll waits for a message. A poll
    /// ends sooner at its token's expiry, as a WebSocket (4002) or an event
    /// stream does: nothing reaches it past `exp`.
    pub timeout: Duration,
}

/// Joins the poll to `server` and gives the body of its answer, which
/// holds `permit` until it has been written. Fails when `NotifyServer` is
/// not running, and when the resume asked for could not be read now.
pub async fn answer(
    server: &Addr<NotifyServer>,
    request: PollRequest,
    permit: ConnectionPermit,
) -> Result<PollAnswer, NotJoined> {
    let (outbox, first) = PollWaiter::start();
    let session = SessionId::next();
    let leave = Leave {
        server: server.clone(),
        session,
    };
    let PollRequest {
        peer,
        mut admitted,
        timeout,
    } = request;
    let wait = admitted
        .lifetime()
        .map_or(timeout, |left| left.min(timeout));
    let joined = server
        .send(admitted.connect(session, Transport::LongPoll, peer, outbox))
        .await?;
    let epoch = joined.epoch;
    let state = match joined.resume {
        // `leave` takes the session out of `NotifyServer` as it drops.
        Some(Resume::RetryLater { .. }) => return Err(NotJoined::RetryLater),
        // What follows the reset's position is the next poll's answer.
        Some(Resume::Reset { reason, at, .. }) => {
            let frame = reset_answer(&reason, &epoch, at).into_bytes();
            State::Writing(Answer::Frame(Some(frame)))
        }
        Some(Resume::Replayed { frames, .. }) if !frames.is_empty() => {
            let frames = frames.into_iter().map(|(seq, f)| (Some(seq), f)).collect();
            State::Writing(Answer::messages(Backlog::new(frames), epoch, joined.seq))
        }
        _ => State::Waiting(Box::new(Waiting::new(
            first, wait, epoch, joined.seq, leave,
        ))),
    };
    // Answered at once, the session is done: `leave` (if not moved into
    // the wait) takes it out of `NotifyServer` now.
    Ok(PollAnswer::new(state, permit))
}

/// Takes the waiting session out of `NotifyServer` however the request ends:
/// answered, timed out, or dropped because the client went away.
struct Leave {
    server: Addr<NotifyServer>,
    session: SessionId,
}

impl Drop for Leave {
    fn drop(&mut self) {
        self.server.do_send(Disconnect {
            session: self.session,
            reason: DisconnectReason::PollDone,
            close_code: None,
        });
    }
}
