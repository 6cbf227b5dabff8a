//! Where `NotifyServer` hands a session its frames, and the slow-consumer
//! policy for a session that cannot take one.
//!
//! [`Outbox`] is the seam between the plain [`Registry`](super::registry)
//! and a session: the session actor's mailbox ([`SessionOutbox`]) when
//! herald runs, a plain queue in tests. `Registry` is generic over it
//! rather than boxing it, so a delivery costs what the outbox's own send
//! costs: for a session, a reference-count bump and a queue push.

use crate::hub::mailbox::{Refused, WakeUp};
use crate::hub::messages::{Close, Deliver, DisconnectReason, SessionOutbox};
use crate::protocol::close_code;

/// Where a session's frames and its close order go.
pub trait Outbox {
    /// Queues a frame without waiting, waking the session as `wake` says;
    /// refused when the session's queue is full or the session is gone.
    fn deliver(&self, deliver: Deliver, wake: WakeUp) -> Result<(), Failed>;
    /// Queues a close order, however full the queue is.
    fn close(&self, close: Close);
}

/// A delivery that did not happen, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// The session's queue is full: a slow consumer.
    QueueFull,
    /// The session is gone.
    Closed,
}

impl Failed {
    /// The slow-consumer policy: a session that could not take a frame is
    /// removed, never waited for, so it cannot slow the others. One whose
    /// queue is full is also told to close, with
    /// [`close_code::SLOW_CONSUMER`] (returned here, with the reason); one
    /// that is gone needs no close.
    pub fn disconnect(self) -> (DisconnectReason, Option<u16>) {
        match self {
            Self::QueueFull => (
                DisconnectReason::SlowConsumer,
                Some(close_code::SLOW_CONSUMER),
            ),
            Self::Closed => (DisconnectReason::Gone, None),
        }
    }
}

/// A session actor: frames pushed to its mailbox (`crate::hub::mailbox`),
/// so a full queue is noticed; the close order with `do_send`, so it
/// always gets through.
impl Outbox for SessionOutbox {
    #[inline]
    fn deliver(&self, deliver: Deliver, wake: WakeUp) -> Result<(), Failed> {
        self.frames
            .push(deliver, wake)
            .map_err(|refused| match refused {
                Refused::Full => Failed::QueueFull,
                Refused::Closed => Failed::Closed,
            })
    }

    fn close(&self, close: Close) {
        self.close.do_send(close);
    }
}
