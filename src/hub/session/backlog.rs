//! How a `WsSession` writes its [`Backlog`]: one slice, then nothing else
//! (no live message, no client frame) until the response has taken that
//! slice; then the next.
//!
//! A WebSocket session's context runs only when the connection's writer
//! pulls the next chunk of the response, and it pulls only while less than
//! 32 KiB waits for the socket (`app/upgraded.rs`). So a client that stops
//! reading stops its replay where it is: what waits is the rest of the
//! backlog, frames shared with the history, never an encoded copy of it.
//! Live messages wait meanwhile in the session's mailbox, bounded by
//! `max_pending_messages` as always, and follow the replay.
//!
//! The heartbeat does not run meanwhile either. A slice taken is progress
//! (past the kernel's buffers, only a client that reads takes more), so it
//! counts as hearing from the client: a long replay read steadily is not
//! mistaken for silence when the heartbeat resumes. A client that stops
//! reading makes no progress, and the kernel ends its connection after
//! `client_timeout_ms` (TCP_USER_TIMEOUT).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use actix::prelude::*;
use actix_web_actors::ws;

use super::WsSession;
use crate::hub::backlog::{Backlog, SLICE_BYTES};

impl WsSession {
    /// Writes `backlog` a slice at a time, each once the response has taken
    /// the one before; the session handles nothing else until the last.
    pub(super) fn write_backlog(
        &mut self,
        mut backlog: Backlog,
        ctx: &mut ws::WebsocketContext<Self>,
    ) {
        self.last_heard = Instant::now();
        for (_, frame) in backlog.next_slice(SLICE_BYTES) {
            ctx.text(frame);
        }
        if backlog.is_empty() {
            return;
        }
        let next = NextPull::default()
            .into_actor(self)
            .map(move |(), act, ctx| act.write_backlog(backlog, ctx));
        ctx.wait(next);
    }
}

/// Ready the second time it is polled. Polled inside the session's
/// context, it is polled again only when the response pulls its next
/// chunk, i.e. once the slice written before it has been taken.
#[derive(Default)]
struct NextPull {
    polled: bool,
}

impl Future for NextPull {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.polled {
            return Poll::Ready(());
        }
        self.polled = true;
        // Ask to be polled again: the connection's writer decides when, by
        // what waits for the socket.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}
