//! `PollWaiter`: the session behind one long-poll request (`GET /poll`)
//! that found nothing to answer at once. It joins `NotifyServer` like any
//! session and hands the first message it receives to the waiting request.

use actix::prelude::*;
use bytestring::ByteString;
use tokio::sync::oneshot;

use crate::hub::messages::{Close, Deliver};

pub struct PollWaiter {
    answer: Option<oneshot::Sender<(u64, ByteString)>>,
}

impl PollWaiter {
    /// A waiter and the receiving end of its one message.
    pub fn new() -> (Self, oneshot::Receiver<(u64, ByteString)>) {
        let (answer, receiver) = oneshot::channel();
        (
            Self {
                answer: Some(answer),
            },
            receiver,
        )
    }
}

impl Actor for PollWaiter {
    type Context = Context<Self>;
}

impl Handler<Deliver> for PollWaiter {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Context<Self>) {
        if let Some(answer) = self.answer.take() {
            // The request may be gone already; then there is nobody to tell.
            let _ = answer.send((msg.seq, msg.frame));
        }
        ctx.stop();
    }
}

impl Handler<Close> for PollWaiter {
    type Result = ();

    fn handle(&mut self, _: Close, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
