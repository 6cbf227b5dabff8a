//! `GET /poll`: long-polling, for clients behind proxies that break
//! streaming.
//!
//! The same query as `/ws` ([`super::query`]). With `since`/`epoch`, the
//! messages missed since then are answered at once:
//! `{"messages":[<message frames>],"epoch":"E","seq":S}`, where `S` is the
//! position to send as `since` next time; or `{"type":"reset",…}` when they
//! cannot all be recovered. When there is nothing to answer, the request
//! waits up to `poll_timeout_secs` for the next message and answers with it,
//! or with an empty list.
//!
//! The answer is a streamed body ([`PollAnswer`]), sent with its headers at
//! once. It holds the request's connection slot until it is written,
//! encodes a replay a slice at a time as the client reads, and does the
//! waiting itself, writing one space (JSON allows it before the answer)
//! every [`PROBE_INTERVAL`] meanwhile.
//!
//! Why the probe: actix-web's HTTP/1 dispatcher allows half-closed
//! connections, so when a client closes its side it stops reading and lets
//! the request run on; it learns that the client is gone only when a write
//! fails. A handler that waited before answering would keep its slot and
//! its session until `poll_timeout_secs`, however soon the client left. The
//! probe is that write: the first one after the close fails (or draws the
//! peer's reset, and the next one fails), the dispatcher drops the body,
//! and the slot and the session go with it.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix::{Actor, Addr};
use actix_web::http::header;
use actix_web::rt::time::{sleep, Instant, Sleep};
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use bytestring::ByteString;
use futures_util::Stream;
use tokio::sync::oneshot;

use super::query::ClientQuery;
use super::AppState;
use crate::error::ApiError;
use crate::hub::backlog::{Backlog, SLICE_BYTES};
use crate::hub::messages::{Disconnect, DisconnectReason, Resume, SessionOutbox, Transport};
use crate::hub::{NotifyServer, PollWaiter};
use crate::ids::SessionId;
use crate::limits::ConnectionPermit;
use crate::protocol::ServerFrame;

/// How often a waiting poll writes a space to learn whether its client is
/// still there. A client that closed is noticed at the first write after
/// the close (it fails) or, if that write only drew the peer's reset, at
/// the next one: within one or two intervals.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Takes the waiting session out of the router however the request ends:
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

pub async fn poll(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.origins.check(req.headers())?;
    let start = ClientQuery::parse(req.query_string(), state.session_settings.max_channels)?
        .into_start(&state.session_settings)?;
    let peer = state.client_addr(&req);
    let permit = state.connections.try_acquire(peer.map(|p| p.ip()))?;
    let (waiter, answer) = PollWaiter::new();
    let waiter = waiter.start();
    let session = SessionId::next();
    let leave = Leave {
        server: state.server.clone(),
        session,
    };
    let mut admitted = state.session_settings.admission.admit(start);
    // A poll ends at its token's expiry, as a WebSocket (4002) or an event
    // stream does: nothing reaches it past `exp`.
    let timeout = Duration::from_secs(state.poll_timeout_secs);
    let wait = admitted
        .lifetime()
        .map_or(timeout, |left| left.min(timeout));
    let outbox = SessionOutbox::of(&waiter);
    let connect = admitted.connect(session, Transport::LongPoll, peer, outbox);
    let joined = state.server.send(connect).await?;
    let epoch = joined.epoch;
    let body = match joined.resume {
        Some(Resume::Reset { reason }) => {
            let frame = ServerFrame::Reset {
                reason: &reason,
                epoch: &epoch,
                seq: joined.seq,
            };
            let frame = frame.encode().into_bytes();
            State::Writing(Answer::Frame(Some(frame)))
        }
        Some(Resume::Replayed { frames, .. }) if !frames.is_empty() => {
            let frames = frames.into_iter().map(|(seq, f)| (Some(seq), f)).collect();
            State::Writing(Answer::messages(Backlog::new(frames), epoch, joined.seq))
        }
        _ => State::Waiting(Box::new(Waiting {
            answer,
            timeout: Box::pin(sleep(wait)),
            probe: Box::pin(sleep(PROBE_INTERVAL)),
            epoch,
            seq: joined.seq,
            _leave: leave,
        })),
    };
    // Answered at once, the session is done: `leave` (if not moved into
    // the wait) takes it out of the router now.
    let body = PollAnswer {
        state: body,
        _permit: permit,
    };
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .streaming(body))
}

/// The body of a long-poll answer. Holds the request's connection slot
/// until the body has been handed to actix-web in full (what it still
/// buffers then is under its 32 KiB write buffer); dropped, as when the
/// client goes away, it ends the wait and the session.
pub struct PollAnswer {
    state: State,
    _permit: ConnectionPermit,
}

enum State {
    /// Nothing to answer yet.
    Waiting(Box<Waiting>),
    /// The answer, being written.
    Writing(Answer),
}

struct Waiting {
    /// The first message for this client, from its `PollWaiter`.
    answer: oneshot::Receiver<(u64, ByteString)>,
    timeout: Pin<Box<Sleep>>,
    /// When to write the next probe.
    probe: Pin<Box<Sleep>>,
    epoch: Arc<str>,
    /// The position at join: where an empty answer leaves the client.
    seq: u64,
    /// Takes the session out of the router once the wait is over.
    _leave: Leave,
}

impl Waiting {
    /// The answer, once there is one: the message, or an empty list at the
    /// timeout or when the waiter is gone (slow consumer, shutdown).
    fn poll_answer(&mut self, cx: &mut Context<'_>) -> Poll<Answer> {
        match Pin::new(&mut self.answer).poll(cx) {
            Poll::Ready(Ok((seq, frame))) => {
                let backlog = Backlog::new(vec![(Some(seq), frame)]);
                return Poll::Ready(Answer::messages(backlog, self.epoch.clone(), seq));
            }
            Poll::Ready(Err(_)) => return Poll::Ready(self.empty()),
            Poll::Pending => {}
        }
        match self.timeout.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(self.empty()),
            Poll::Pending => Poll::Pending,
        }
    }

    fn empty(&self) -> Answer {
        Answer::messages(Backlog::default(), self.epoch.clone(), self.seq)
    }
}

impl Stream for PollAnswer {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if let State::Waiting(waiting) = &mut this.state {
            match waiting.poll_answer(cx) {
                // The session leaves the router here, with `waiting`.
                Poll::Ready(answer) => this.state = State::Writing(answer),
                Poll::Pending => {
                    return match waiting.probe.as_mut().poll(cx) {
                        Poll::Ready(()) => {
                            let next = Instant::now() + PROBE_INTERVAL;
                            waiting.probe.as_mut().reset(next);
                            Poll::Ready(Some(Ok(Bytes::from_static(b" "))))
                        }
                        Poll::Pending => Poll::Pending,
                    };
                }
            }
        }
        match &mut this.state {
            State::Writing(answer) => Poll::Ready(answer.next_chunk().map(Ok)),
            State::Waiting(_) => Poll::Pending,
        }
    }
}

/// An answer as it is written: one frame, or a list of messages encoded a
/// slice at a time.
enum Answer {
    /// A whole frame (`reset`); `None` once written.
    Frame(Option<Bytes>),
    /// `{"messages":[…],"epoch":…,"seq":…}`.
    Messages {
        backlog: Backlog,
        epoch: Arc<str>,
        seq: u64,
        /// Whether the opening `{"messages":[` went out.
        opened: bool,
        /// Whether the closing `],"epoch":…}` went out.
        closed: bool,
    },
}

impl Answer {
    fn messages(backlog: Backlog, epoch: Arc<str>, seq: u64) -> Self {
        Self::Messages {
            backlog,
            epoch,
            seq,
            opened: false,
            closed: false,
        }
    }

    /// The next piece of the body: about a slice of frames, with the list's
    /// opening before the first and its end after the last; `None` when
    /// everything was given.
    fn next_chunk(&mut self) -> Option<Bytes> {
        match self {
            Self::Frame(frame) => frame.take(),
            Self::Messages {
                backlog,
                epoch,
                seq,
                opened,
                closed,
            } => {
                if *closed {
                    return None;
                }
                let mut out = String::new();
                for (_, frame) in backlog.next_slice(SLICE_BYTES) {
                    out.push_str(if *opened { "," } else { r#"{"messages":["# });
                    *opened = true;
                    out.push_str(&frame);
                }
                if backlog.is_empty() {
                    if !*opened {
                        out.push_str(r#"{"messages":["#);
                    }
                    out.push_str(r#"],"epoch":"#);
                    // Epochs are [A-Za-z0-9-]; encoding keeps that an
                    // invariant anyway.
                    out.push_str(
                        &serde_json::to_string(&**epoch).unwrap_or_else(|_| "\"\"".into()),
                    );
                    out.push_str(r#","seq":"#);
                    out.push_str(&seq.to_string());
                    out.push('}');
                    *closed = true;
                }
                Some(Bytes::from(out))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(mut answer: Answer) -> (Vec<usize>, serde_json::Value) {
        let mut sizes = Vec::new();
        let mut all = Vec::new();
        while let Some(chunk) = answer.next_chunk() {
            sizes.push(chunk.len());
            all.extend_from_slice(&chunk);
        }
        (
            sizes,
            serde_json::from_slice(&all).expect("the answer is JSON"),
        )
    }

    fn frame(seq: u64, text: &str) -> (Option<u64>, ByteString) {
        let frame = format!(r#"{{"type":"message","seq":{seq},"data":"{text}"}}"#);
        (Some(seq), ByteString::from(frame))
    }

    #[test]
    fn an_empty_answer_is_a_complete_list() {
        let (_, json) = body(Answer::messages(Backlog::default(), "E".into(), 7));
        assert_eq!(
            json,
            serde_json::json!({"messages": [], "epoch": "E", "seq": 7})
        );
    }

    #[test]
    fn a_long_answer_goes_out_in_slices_and_reads_as_one_list() {
        let big = "x".repeat(SLICE_BYTES / 3);
        let frames: Vec<_> = (1..=10).map(|seq| frame(seq, &big)).collect();
        let (sizes, json) = body(Answer::messages(Backlog::new(frames), "E".into(), 10));
        assert!(sizes.len() >= 4, "{sizes:?}");
        assert!(sizes.iter().all(|&n| n <= SLICE_BYTES + 64), "{sizes:?}");
        let seqs: Vec<u64> = json["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
        assert_eq!((&json["epoch"], &json["seq"]), (&"E".into(), &10.into()));
    }

    #[test]
    fn a_frame_answer_is_written_once() {
        let mut answer = Answer::Frame(Some(Bytes::from_static(b"{}")));
        assert_eq!(answer.next_chunk().as_deref(), Some(&b"{}"[..]));
        assert_eq!(answer.next_chunk(), None);
    }
}
