//! `PollWaiter`: the session behind one long-poll request (`GET /poll`)
//! that found nothing to answer at once. It joins `NotifyServer` like any
//! session and hands the first message it receives to the waiting request.

use actix::prelude::*;
use bytestring::ByteString;
use tokio::sync::oneshot;

use crate::hub::mailbox::{Batch, Taker};
use crate::hub::messages::{Close, SessionOutbox};

/// Frames a waiter's mailbox holds: it answers with the first and stops.
const WAITER_CAPACITY: usize = 16;

pub struct PollWaiter {
    answer: Option<oneshot::Sender<(u64, ByteString)>>,
    mailbox: Taker,
}

impl PollWaiter {
    /// Starts a waiter; returns its outbox for `NotifyServer` (which keeps
    /// it alive) and the receiving end of its one message.
    pub fn start() -> (SessionOutbox, oneshot::Receiver<(u64, ByteString)>) {
        let (answer, receiver) = oneshot::channel();
        let mut opened = None;
        Self::create(|ctx| {
            let (outbox, mailbox) = SessionOutbox::open::<Self>(ctx, WAITER_CAPACITY);
            opened = Some(outbox);
            Self {
                answer: Some(answer),
                mailbox,
            }
        });
        let Some(outbox) = opened else {
            unreachable!("Actor::create runs its closure before returning");
        };
        (outbox, receiver)
    }

    /// Hands the first of `batch` to the waiting request, and stops.
    fn answer(&mut self, mut batch: Batch, ctx: &mut Context<Self>) {
        if let (Some(answer), Some(first)) = (self.answer.take(), batch.pop_front()) {
            // The request may be gone already; then there is nobody to tell.
            let _ = answer.send((first.seq, first.frame));
        }
        ctx.stop();
    }
}

impl Actor for PollWaiter {
    type Context = Context<Self>;
}

impl StreamHandler<Batch> for PollWaiter {
    fn handle(&mut self, batch: Batch, ctx: &mut Context<Self>) {
        self.answer(batch, ctx);
    }
}

impl Handler<Close> for PollWaiter {
    type Result = ();

    /// Answers with a frame queued before the order, if any, and stops.
    fn handle(&mut self, _: Close, ctx: &mut Context<Self>) {
        let queued = self.mailbox.take();
        self.answer(queued, ctx);
    }
}
