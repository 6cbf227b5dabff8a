//! `SseSession`: one actor per Server-Sent Events stream (`GET /events`).
//!
//! It joins `NotifyServer` like a WebSocket session (same routing, same
//! history, same resume) and writes each frame as an event: `data:` holds
//! the JSON frame, and message events carry `id: <epoch>:<seq>` so the
//! browser's EventSource resumes through `Last-Event-ID`. Every heartbeat
//! a comment line and a `ping` event keep proxies from closing the stream
//! and notice a client that left; the ping (also sent at the opening, with
//! the heartbeat interval in its data) is what lets a page see that the
//! stream is still alive, since EventSource hides comments.
//!
//! The outbound queue is a bounded channel to the response body of
//! `max_pending_messages` events: when it is full the client is not reading,
//! and the stream is ended (slow consumer) rather than let it grow. The
//! answer to the join (a replay above all) takes one place in that queue,
//! as a [`Backlog`] of shared frames that the body ([`EventStream`])
//! encodes a slice at a time, as the client reads.
//!
//! The route answers once the join is answered ([`SseSession::new`]'s
//! receiver), so that a resume the broker cannot read now gets a 503 to
//! retry later instead of a stream that starts with `reset`.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use actix::prelude::*;
use bytes::Bytes;
use futures_util::Stream;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::sync::oneshot;

use super::admission::SessionStart;
use super::backlog::{Backlog, SLICE_BYTES};
use super::mailbox::{Batch, Taker};
use super::messages::{Close, Disconnect, DisconnectReason, NotJoined, SessionOutbox, Transport};
use super::session::SessionSettings;
use super::NotifyServer;
use crate::client_addr::ClientAddr;
use crate::ids::{Epoch, SessionId};
use crate::limits::ConnectionPermit;
use crate::protocol::sse;

pub struct SseSession {
    session: SessionId,
    peer: Option<ClientAddr>,
    server: Addr<NotifyServer>,
    settings: Arc<SessionSettings>,
    start: Option<SessionStart>,
    /// The epoch, once joined: the prefix of every event id.
    epoch: Epoch,
    /// Events on their way to the response body.
    events: mpsc::Sender<Outbound>,
    /// Whether `NotifyServer` knows this session.
    admitted: bool,
    /// Takes the frames queued in the session's mailbox (open once
    /// admitted) outside a wake-up, and takes back each batch's buffer.
    mailbox: Option<Taker>,
    /// Tells the route how the join went, once.
    answered: Option<oneshot::Sender<Result<(), NotJoined>>>,
    end_reason: DisconnectReason,
}

/// What the session hands its response body, in order.
enum Outbound {
    /// An event or a comment, encoded.
    Event(Bytes),
    /// The answer to the join, encoded as the client reads it.
    Joined { epoch: Epoch, backlog: Backlog },
}

impl SseSession {
    /// A session, its response body, which holds the connection's
    /// `permit` until it has been written (or the client is gone), and how
    /// its join went, known once the session has started and
    /// `NotifyServer` answered: the stream is to be sent only after an
    /// `Ok`; on an error, the session has stopped.
    pub fn new(
        server: Addr<NotifyServer>,
        peer: Option<ClientAddr>,
        settings: Arc<SessionSettings>,
        start: SessionStart,
        permit: ConnectionPermit,
    ) -> (Self, EventStream, oneshot::Receiver<Result<(), NotJoined>>) {
        let (events, receiver) = mpsc::channel(settings.max_pending_messages);
        let (answered, joined) = oneshot::channel();
        let session = Self {
            session: SessionId::next(),
            peer,
            server,
            settings,
            start: Some(start),
            epoch: Epoch::default(),
            events,
            admitted: false,
            mailbox: None,
            answered: Some(answered),
            end_reason: DisconnectReason::ConnectionLost,
        };
        let body = EventStream {
            receiver,
            joined: None,
            _permit: permit,
        };
        (session, body, joined)
    }

    /// Tells the route how the join went.
    fn answer(&mut self, outcome: Result<(), NotJoined>) {
        if let Some(answered) = self.answered.take() {
            // The route may be gone (the client left): nobody to tell.
            let _ = answered.send(outcome);
        }
    }

    /// Queues one event (or the answer to the join); ends the session if
    /// the client is gone or too slow.
    fn push(&mut self, event: Outbound, ctx: &mut Context<Self>) {
        match self.events.try_send(event) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.settings.metrics.slow_consumers.inc();
                self.end_reason = DisconnectReason::SlowConsumer;
                ctx.stop();
            }
            Err(TrySendError::Closed(_)) => {
                self.end_reason = DisconnectReason::ConnectionLost;
                ctx.stop();
            }
        }
    }

    fn admit(&mut self, ctx: &mut Context<Self>) {
        let start = self.start.take().unwrap_or_default();
        let mut admitted = self.settings.admission.admit(start);
        if let Some(left) = admitted.lifetime() {
            ctx.run_later(left, |act, ctx| {
                act.end_reason = DisconnectReason::TokenExpired;
                ctx.stop();
            });
        }
        let (outbox, mailbox) =
            SessionOutbox::open::<Self>(ctx, self.settings.max_pending_messages);
        self.mailbox = Some(mailbox);
        let connect = admitted.connect(self.session, Transport::EventStream, self.peer, outbox);
        self.admitted = true;
        self.server
            .send(connect)
            .into_actor(self)
            .map(move |answer, act, ctx| {
                let Ok(joined) = answer else {
                    act.end_reason = DisconnectReason::ServerGone;
                    act.answer(Err(NotJoined::ServerGone));
                    return ctx.stop();
                };
                if let Some(why) = joined.retry_later() {
                    act.end_reason = DisconnectReason::ResumeLater(why.to_owned());
                    act.answer(Err(NotJoined::RetryLater));
                    return ctx.stop();
                }
                act.answer(Ok(()));
                act.epoch = joined.epoch.clone();
                // One place in the queue, however long the replay.
                let backlog = Backlog::new(admitted.answer(&joined));
                let epoch = joined.epoch.clone();
                act.push(Outbound::Joined { epoch, backlog }, ctx);
            })
            .wait(ctx);
    }
}

impl Actor for SseSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Opens the stream at once, tells EventSource how soon to retry, and
        // the page how often to expect a ping.
        let every = self.settings.heartbeat_interval;
        self.push(Outbound::Event(Bytes::from(sse::opening(every))), ctx);
        let keep_alive = Bytes::from(sse::keep_alive(every));
        ctx.run_interval(self.settings.heartbeat_interval, move |act, ctx| {
            act.push(Outbound::Event(keep_alive.clone()), ctx);
        });
        self.admit(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if self.admitted {
            self.server.do_send(Disconnect {
                session: self.session,
                reason: self.end_reason.clone(),
                close_code: None,
            });
        }
    }
}

impl SseSession {
    /// Queues each frame `NotifyServer` queued as an event, oldest first.
    fn write_batch(&mut self, mut batch: Batch, ctx: &mut Context<Self>) {
        let now = Instant::now();
        for msg in batch.drain(..) {
            if ctx.state() != ActorState::Running {
                break; // ended by a frame before (a full stream): once is enough
            }
            let mut event = String::with_capacity(sse::event_capacity(&self.epoch, &msg.frame));
            sse::write_event(&mut event, &self.epoch, Some(msg.seq), &msg.frame);
            self.push(Outbound::Event(Bytes::from(event)), ctx);
            let waited = msg.waited(now);
            self.settings.metrics.publish_to_write.observe(waited);
        }
        if let Some(mailbox) = &self.mailbox {
            mailbox.give_back(batch);
        }
    }
}

impl StreamHandler<Batch> for SseSession {
    fn handle(&mut self, batch: Batch, ctx: &mut Self::Context) {
        self.write_batch(batch, ctx);
    }

    fn finished(&mut self, _: &mut Self::Context) {
        // The mailbox never ends while the session holds it.
    }
}

impl Handler<Close> for SseSession {
    type Result = ();

    /// Queues what was queued before the order, then ends.
    fn handle(&mut self, msg: Close, ctx: &mut Self::Context) {
        if let Some(queued) = self.mailbox.as_ref().map(Taker::take) {
            self.write_batch(queued, ctx);
        }
        self.end_reason = msg.reason;
        ctx.stop();
    }
}

/// The response body of one event stream: what the session queued, in
/// order, with the answer to the join encoded a slice at a time, each only
/// when actix-web asks for more (its write buffer has room). Ends when the
/// session has ended and everything queued was taken.
pub struct EventStream {
    receiver: mpsc::Receiver<Outbound>,
    /// The answer to the join being written, with its epoch.
    joined: Option<(Epoch, Backlog)>,
    /// Holds this connection's place under `max_connections` for as long
    /// as there is something to write: the session may end first.
    _permit: ConnectionPermit,
}

impl Stream for EventStream {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some((epoch, backlog)) = &mut this.joined {
                if !backlog.is_empty() {
                    let mut out = String::new();
                    for (seq, frame) in backlog.next_slice(SLICE_BYTES) {
                        sse::write_event(&mut out, epoch, seq, &frame);
                    }
                    return Poll::Ready(Some(Ok(Bytes::from(out))));
                }
                this.joined = None;
            }
            match this.receiver.poll_recv(cx) {
                Poll::Ready(Some(Outbound::Event(event))) => return Poll::Ready(Some(Ok(event))),
                Poll::Ready(Some(Outbound::Joined { epoch, backlog })) => {
                    this.joined = Some((epoch, backlog));
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytestring::ByteString;
    use futures_util::StreamExt;

    #[actix_web::test]
    async fn the_join_answer_is_encoded_a_slice_at_a_time_in_order() {
        let (sender, receiver) = mpsc::channel(4);
        let limiter = crate::limits::ConnectionLimiter::new(1, 1, 64);
        let mut body = EventStream {
            receiver,
            joined: None,
            _permit: limiter.try_acquire(None).unwrap(),
        };
        let big = "x".repeat(SLICE_BYTES / 2);
        let frames = (1..=5)
            .map(|seq| (Some(seq), ByteString::from(big.clone())))
            .collect();
        let epoch = Epoch::from("E");
        let backlog = Backlog::new(frames);
        let sent = [
            Outbound::Event(Bytes::from_static(b": first\n\n")),
            Outbound::Joined { epoch, backlog },
            Outbound::Event(Bytes::from_static(b": after\n\n")),
        ];
        for item in sent {
            assert!(sender.try_send(item).is_ok());
        }
        drop(sender);

        let mut chunks = Vec::new();
        while let Some(Ok(chunk)) = body.next().await {
            chunks.push(String::from_utf8(chunk.to_vec()).unwrap());
        }
        assert_eq!(chunks.first().map(String::as_str), Some(": first\n\n"));
        assert_eq!(chunks.last().map(String::as_str), Some(": after\n\n"));
        let slices = &chunks[1..chunks.len() - 1];
        assert_eq!(slices.len(), 3, "two frames per slice");
        assert!(slices.iter().all(|s| s.len() <= SLICE_BYTES + 64));
        let ids: Vec<&str> = slices
            .iter()
            .flat_map(|s| s.lines().filter_map(|l| l.strip_prefix("id: ")))
            .collect();
        assert_eq!(ids, ["E:1", "E:2", "E:3", "E:4", "E:5"]);
    }
}
