//! A session's mailbox for fan-out: where `NotifyServer` queues the
//! numbered frames of one session, and where that session takes them, all
//! of them at once.
//!
//! Were each frame an actix message, every delivery would cost a boxed
//! envelope, a queue node and a wake-up of the session, and the session
//! would write each frame as it came: one socket write per frame. Here a
//! delivery is a push onto the session's queue (an uncontended lock and a
//! reference-count bump; the session gives each batch's buffer back for
//! the next), and only the push that finds the queue empty wakes the
//! session. When the session runs, it takes everything queued since
//! ([`Batch`]) and writes it as one chunk: a burst of N frames costs one
//! wake-up and one write.
//!
//! The queue holds at most `capacity` frames (`max_pending_messages`). A
//! push beyond that is refused ([`Refused::Full`]) and `NotifyServer`'s
//! slow-consumer policy takes over; a push to a session that has ended is
//! refused as [`Refused::Closed`].
//!
//! The wake-up of a fan-out's sessions goes through their worker thread
//! (`worker.rs`), which gives wake-ups out a turn at a time so the next
//! publish is read while a fan-out is written. A frame for one session
//! alone (a direct message to a one-tab id) wakes that session at once:
//! there is no fan-out to take turns with, and it saves a turn of the
//! worker's task per message.

mod worker;

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;
use futures_util::Stream;

use self::worker::{Wake, Worker};
use crate::hub::messages::Deliver;

/// Every frame queued for a session since it last took them, oldest first.
pub type Batch = VecDeque<Deliver>;

/// How a push that finds the queue empty wakes the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WakeUp {
    /// Through the session's worker, a turn at a time with the other
    /// sessions of the same fan-out.
    InTurn,
    /// At once: the frame goes to this session alone.
    Now,
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The queue holds `capacity` frames already.
    Full,
    /// The session has ended.
    Closed,
}

/// A new mailbox holding at most `capacity` frames: the end
/// `NotifyServer` pushes to, and the session's end, a [`Stream`] of
/// batches (added to the session's context). Made on the session's
/// thread, whose worker wakes it.
pub fn channel(capacity: usize) -> (MailboxSender, Mailbox) {
    let shared = Arc::new(Shared {
        queue: Mutex::new(Queue::default()),
        waker: AtomicWaker::new(),
        capacity: capacity.max(1),
        worker: Worker::current(),
        senders: AtomicUsize::new(1),
    });
    (
        MailboxSender {
            shared: shared.clone(),
        },
        Mailbox { shared },
    )
}

struct Shared {
    queue: Mutex<Queue>,
    /// The session's task, woken by the push that finds the queue empty.
    waker: AtomicWaker,
    capacity: usize,
    /// The worker of the session's thread; none outside an arbiter.
    worker: Option<Arc<Worker>>,
    /// `MailboxSender`s alive: at 0, `NotifyServer` has let the session go
    /// and the stream ends once empty, so an actor that does not stop by
    /// itself (a long-poll's waiter) stops then, as with an actix mailbox.
    senders: AtomicUsize,
}

impl Wake for Shared {
    fn wake(&self) {
        self.waker.wake();
    }
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Deliver>,
    /// The buffer of the last batch taken, given back empty for the next.
    spare: VecDeque<Deliver>,
    /// Set when the session's end is dropped: later pushes are refused.
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while the lock is held; a poisoned queue is still
        // a consistent one.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// `NotifyServer`'s end of a session's mailbox.
pub struct MailboxSender {
    shared: Arc<Shared>,
}

impl Clone for MailboxSender {
    fn clone(&self) -> Self {
        self.shared.senders.fetch_add(1, Ordering::SeqCst);
        Self {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for MailboxSender {
    fn drop(&mut self) {
        if self.shared.senders.fetch_sub(1, Ordering::SeqCst) == 1 {
            // The last one: the stream may end now.
            self.shared.waker.wake();
        }
    }
}

impl MailboxSender {
    /// Queues `deliver` without waiting, waking the session as `wake` says
    /// when it is the first frame since the session last took its queue.
    #[inline]
    pub fn push(&self, deliver: Deliver, wake: WakeUp) -> Result<(), Refused> {
        let mut queue = self.shared.lock();
        if queue.closed {
            return Err(Refused::Closed);
        }
        if queue.frames.len() >= self.shared.capacity {
            return Err(Refused::Full);
        }
        let first = queue.frames.is_empty();
        queue.frames.push_back(deliver);
        drop(queue);
        if first {
            match (&self.shared.worker, wake) {
                (Some(worker), WakeUp::InTurn) => worker.schedule(self.shared.clone()),
                _ => self.shared.waker.wake(),
            }
        }
        Ok(())
    }
}

/// The session's end of its mailbox: a stream of [`Batch`]es that ends
/// when every [`MailboxSender`] is gone and nothing is left to take (the
/// session no longer routed to). Dropping it closes the mailbox.
pub struct Mailbox {
    shared: Arc<Shared>,
}

impl Mailbox {
    /// A handle that takes what is queued without waiting for a wake-up:
    /// for a session about to close, to write what was queued before the
    /// close order came.
    pub fn taker(&self) -> Taker {
        Taker {
            shared: self.shared.clone(),
        }
    }
}

impl Stream for Mailbox {
    type Item = Batch;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Batch>> {
        // Registered before looking, so a push after the look wakes us.
        self.shared.waker.register(cx.waker());
        let mut queue = self.shared.lock();
        if queue.frames.is_empty() {
            if self.shared.senders.load(Ordering::SeqCst) == 0 {
                return Poll::Ready(None);
            }
            return Poll::Pending;
        }
        let spare = std::mem::take(&mut queue.spare);
        Poll::Ready(Some(std::mem::replace(&mut queue.frames, spare)))
    }
}

impl Drop for Mailbox {
    fn drop(&mut self) {
        let mut queue = self.shared.lock();
        queue.closed = true;
        queue.frames = VecDeque::new();
        queue.spare = VecDeque::new();
    }
}

/// Takes a session's queued frames outside its stream (see
/// [`Mailbox::taker`]).
pub struct Taker {
    shared: Arc<Shared>,
}

impl Taker {
    /// Everything queued now, oldest first.
    pub fn take(&self) -> Batch {
        std::mem::take(&mut self.shared.lock().frames)
    }

    /// Gives a handled batch's buffer back, for the next batch: no
    /// allocation per burst. A buffer grown past [`KEPT_CAPACITY`] by a
    /// burst is freed instead, so an idle session holds little.
    pub fn give_back(&self, mut batch: Batch) {
        if batch.capacity() > KEPT_CAPACITY {
            return;
        }
        batch.clear();
        let mut queue = self.shared.lock();
        if !queue.closed {
            queue.spare = batch;
        }
    }
}

/// The largest batch buffer a session keeps between bursts, in frames.
pub const KEPT_CAPACITY: usize = 16;

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Wake, Waker};
    use std::time::Instant;

    use bytestring::ByteString;

    use super::*;

    fn frame(seq: u64) -> Deliver {
        Deliver {
            seq,
            frame: ByteString::from_static("m"),
            routed_at: Instant::now(),
        }
    }

    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn poll(mailbox: &mut Mailbox, waker: &Waker) -> Poll<Option<Batch>> {
        Pin::new(mailbox).poll_next(&mut Context::from_waker(waker))
    }

    fn seqs(batch: Poll<Option<Batch>>) -> Vec<u64> {
        match batch {
            Poll::Ready(Some(batch)) => batch.iter().map(|d| d.seq).collect(),
            other => panic!(
                "expected a batch, got {:?}",
                other.map(|b| b.map(|b| b.len()))
            ),
        }
    }

    #[test]
    fn a_burst_wakes_once_and_is_taken_in_one_batch() {
        let (sender, mut mailbox) = channel(8);
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        assert!(poll(&mut mailbox, &waker).is_pending());
        for seq in 1..=3 {
            sender.push(frame(seq), WakeUp::InTurn).unwrap();
        }
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "one wake-up per burst");
        assert_eq!(seqs(poll(&mut mailbox, &waker)), [1, 2, 3]);
        assert!(poll(&mut mailbox, &waker).is_pending());
        sender.push(frame(4), WakeUp::InTurn).unwrap();
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            2,
            "the next burst wakes again"
        );
        assert_eq!(seqs(poll(&mut mailbox, &waker)), [4]);
    }

    #[test]
    fn a_full_queue_refuses_until_taken() {
        let (sender, mut mailbox) = channel(2);
        let waker = Waker::from(Arc::new(Count::default()));
        sender.push(frame(1), WakeUp::InTurn).unwrap();
        sender.push(frame(2), WakeUp::InTurn).unwrap();
        assert_eq!(sender.push(frame(3), WakeUp::InTurn), Err(Refused::Full));
        assert_eq!(seqs(poll(&mut mailbox, &waker)), [1, 2]);
        sender.push(frame(3), WakeUp::InTurn).unwrap();
    }

    #[test]
    fn a_dropped_mailbox_refuses_as_closed_and_frees_its_frames() {
        let (sender, mailbox) = channel(4);
        sender.push(frame(1), WakeUp::InTurn).unwrap();
        let taker = mailbox.taker();
        drop(mailbox);
        assert_eq!(sender.push(frame(2), WakeUp::InTurn), Err(Refused::Closed));
        assert!(taker.take().is_empty());
    }

    #[test]
    fn a_batch_given_back_is_reused_and_a_big_one_is_freed() {
        let (sender, mut mailbox) = channel(64);
        let waker = Waker::from(Arc::new(Count::default()));
        let taker = mailbox.taker();
        sender.push(frame(1), WakeUp::InTurn).unwrap();
        let Poll::Ready(Some(batch)) = poll(&mut mailbox, &waker) else {
            panic!("expected a batch");
        };
        let buffer = batch.as_slices().0.as_ptr();
        taker.give_back(batch);
        sender.push(frame(2), WakeUp::InTurn).unwrap();
        assert!(sender.push(frame(3), WakeUp::InTurn).is_ok());
        let Poll::Ready(Some(batch)) = poll(&mut mailbox, &waker) else {
            panic!("expected a batch");
        };
        assert_eq!(batch.iter().map(|d| d.seq).collect::<Vec<_>>(), [2, 3]);
        taker.give_back(batch);
        // The first batch's buffer, given back, took the fourth frame.
        sender.push(frame(4), WakeUp::InTurn).unwrap();
        let Poll::Ready(Some(batch)) = poll(&mut mailbox, &waker) else {
            panic!("expected a batch");
        };
        assert_eq!(batch.as_slices().0.as_ptr(), buffer);
        for seq in 5..=40 {
            sender.push(frame(seq), WakeUp::InTurn).unwrap();
        }
        let Poll::Ready(Some(big)) = poll(&mut mailbox, &waker) else {
            panic!("expected a batch");
        };
        assert!(big.capacity() > KEPT_CAPACITY);
        taker.give_back(big);
        assert_eq!(
            mailbox.shared.lock().spare.capacity(),
            0,
            "a big buffer is freed"
        );
    }

    #[test]
    fn the_stream_ends_once_every_sender_is_gone_and_it_is_empty() {
        let (sender, mut mailbox) = channel(4);
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        let second = sender.clone();
        sender.push(frame(1), WakeUp::InTurn).unwrap();
        drop(sender);
        assert_eq!(seqs(poll(&mut mailbox, &waker)), [1]);
        assert!(poll(&mut mailbox, &waker).is_pending(), "a sender is left");
        drop(second);
        assert!(
            count.0.load(Ordering::SeqCst) >= 1,
            "the last sender's drop wakes"
        );
        assert!(matches!(poll(&mut mailbox, &waker), Poll::Ready(None)));
    }

    #[actix::test]
    async fn a_fan_out_wakes_in_the_workers_turn_and_a_lone_frame_at_once() {
        // Made on an arbiter: the mailbox has a worker.
        let (sender, mut mailbox) = channel(8);
        let count = Arc::new(Count::default());
        let waker = Waker::from(count.clone());
        assert!(poll(&mut mailbox, &waker).is_pending());
        sender.push(frame(1), WakeUp::InTurn).unwrap();
        assert_eq!(count.0.load(Ordering::SeqCst), 0, "not woken by the push");
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        while count.0.load(Ordering::SeqCst) == 0 {
            assert!(Instant::now() < deadline, "the worker never woke it");
            tokio::task::yield_now().await;
        }
        assert_eq!(seqs(poll(&mut mailbox, &waker)), [1]);
        assert!(poll(&mut mailbox, &waker).is_pending());
        sender.push(frame(2), WakeUp::Now).unwrap();
        assert_eq!(
            count.0.load(Ordering::SeqCst),
            2,
            "woken by the push itself"
        );
        assert_eq!(seqs(poll(&mut mailbox, &waker)), [2]);
    }

    #[test]
    fn the_taker_takes_what_is_queued_without_a_wake_up() {
        let (sender, mailbox) = channel(4);
        sender.push(frame(1), WakeUp::InTurn).unwrap();
        sender.push(frame(2), WakeUp::InTurn).unwrap();
        let taken: Vec<u64> = mailbox.taker().take().iter().map(|d| d.seq).collect();
        assert_eq!(taken, [1, 2]);
        assert!(mailbox.taker().take().is_empty());
    }
}
