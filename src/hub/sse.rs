//! `SseSession`: one actor per Server-Sent Events stream (`GET /events`).
//!
//! It joins `NotifyServer` like a WebSocket session (same routing, same
//! history, same resume) and writes each frame as an event: `data:` holds
//! the JSON frame, and message events carry `id: <epoch>:<seq>` so the
//! browser's EventSource resumes through `Last-Event-ID`. A comment line
//! every heartbeat keeps proxies from closing the stream and notices a
//! client that left.
//!
//! The outbound queue is a bounded channel to the response body of
//! `max_pending_messages` events: when it is full the client is not reading,
//! and the stream is ended (slow consumer) rather than let it grow.

use std::net::SocketAddr;
use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use bytestring::ByteString;
use tokio::sync::mpsc::{self, error::TrySendError};

use super::messages::{
    Close, Connect, Deliver, Disconnect, DisconnectReason, SessionOutbox, Transport,
};
use super::session::{SessionSettings, SessionStart};
use super::NotifyServer;
use crate::ids::SessionId;
use crate::limits::ConnectionPermit;

pub struct SseSession {
    session: SessionId,
    peer: Option<SocketAddr>,
    server: Addr<NotifyServer>,
    settings: Arc<SessionSettings>,
    start: Option<SessionStart>,
    /// The epoch, once joined: the prefix of every event id.
    epoch: Arc<str>,
    /// Events on their way to the response body.
    events: mpsc::Sender<Bytes>,
    /// Whether `NotifyServer` knows this session.
    admitted: bool,
    end_reason: DisconnectReason,
    _permit: ConnectionPermit,
}

impl SseSession {
    /// A session and the receiving end of its events, to stream as the
    /// response body.
    pub fn new(
        server: Addr<NotifyServer>,
        peer: Option<SocketAddr>,
        settings: Arc<SessionSettings>,
        start: SessionStart,
        permit: ConnectionPermit,
    ) -> (Self, mpsc::Receiver<Bytes>) {
        let (events, receiver) = mpsc::channel(settings.max_pending_messages);
        let session = Self {
            session: SessionId::next(),
            peer,
            server,
            settings,
            start: Some(start),
            epoch: Arc::from(""),
            events,
            admitted: false,
            end_reason: DisconnectReason::ConnectionLost,
            _permit: permit,
        };
        (session, receiver)
    }

    /// Queues one event; ends the session if the client is gone or too slow.
    fn push(&mut self, event: Bytes, ctx: &mut Context<Self>) {
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

    /// Appends one event to `out`: `id:` when the frame completes a
    /// position, then the frame as `data:` (frames are compact JSON: one
    /// line).
    fn write_event(&self, out: &mut String, seq: Option<u64>, frame: &ByteString) {
        if let Some(seq) = seq {
            out.push_str("id: ");
            out.push_str(&self.epoch);
            out.push(':');
            out.push_str(&seq.to_string());
            out.push('\n');
        }
        out.push_str("data: ");
        out.push_str(frame);
        out.push_str("\n\n");
    }

    fn admit(&mut self, ctx: &mut Context<Self>) {
        let start = self.start.take().unwrap_or_default();
        if let Some(identity) = &start.identity {
            ctx.run_later(identity.time_left(), |act, ctx| {
                act.end_reason = DisconnectReason::TokenExpired;
                ctx.stop();
            });
        }
        let id = start.identity.map(|i| i.id).or(start.id);
        let addr = ctx.address();
        let connect = Connect {
            session: self.session,
            transport: Transport::EventStream,
            peer: self.peer,
            outbox: SessionOutbox::of(&addr),
            id: id.clone(),
            channels: start.channels.clone(),
            resume: start.resume,
        };
        self.admitted = true;
        self.server
            .send(connect)
            .into_actor(self)
            .map(move |answer, act, ctx| {
                let Ok(joined) = answer else {
                    act.end_reason = DisconnectReason::ProtocolError("router not running".into());
                    return ctx.stop();
                };
                act.epoch = joined.epoch.clone();
                // One chunk, so a long replay takes one place in the queue.
                let mut events = String::new();
                for (seq, frame) in joined.frames(id.as_ref(), &start.channels) {
                    act.write_event(&mut events, seq, &frame);
                }
                act.push(Bytes::from(events), ctx);
            })
            .wait(ctx);
    }
}

impl Actor for SseSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(self.settings.max_pending_messages);
        // Opens the stream at once, and tells EventSource how soon to retry.
        self.push(Bytes::from_static(b": herald\nretry: 2000\n\n"), ctx);
        ctx.run_interval(self.settings.heartbeat_interval, |act, ctx| {
            act.push(Bytes::from_static(b": keep-alive\n\n"), ctx);
        });
        self.admit(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        if self.admitted {
            self.server.do_send(Disconnect {
                session: self.session,
                reason: self.end_reason.clone(),
            });
        }
    }
}

impl Handler<Deliver> for SseSession {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        let mut event = String::with_capacity(msg.frame.len() + 48);
        self.write_event(&mut event, Some(msg.seq), &msg.frame);
        self.push(Bytes::from(event), ctx);
        let waited = msg.routed_at.elapsed().as_secs_f64();
        self.settings.metrics.publish_to_write.observe(waited);
    }
}

impl Handler<Close> for SseSession {
    type Result = ();

    fn handle(&mut self, msg: Close, ctx: &mut Self::Context) {
        self.end_reason = msg.reason;
        ctx.stop();
    }
}
