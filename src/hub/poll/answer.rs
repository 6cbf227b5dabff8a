//! [`PollAnswer`]: the streamed body of a long-poll answer, which waits for
//! the message (writing probes meanwhile) or writes what was there at once.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_web::rt::time::{sleep, Instant, Sleep};
use bytes::Bytes;
use bytestring::ByteString;
use futures_util::Stream;
use tokio::sync::oneshot;

use super::{Leave, PROBE_INTERVAL};
use crate::hub::backlog::{Backlog, SLICE_BYTES};
use crate::ids::Epoch;
use crate::limits::ConnectionPermit;
use crate::protocol::poll::{MessageList, PROBE};

/// The body of a long-poll answer. Holds the request's connection slot
/// until the body has been handed to actix-web in full (what it still
/// buffers then is under its 32 KiB write buffer); dropped, as when the
/// client goes away, it ends the wait and the session.
pub struct PollAnswer {
    state: State,
    _permit: ConnectionPermit,
}

impl PollAnswer {
    pub(super) fn new(state: State, permit: ConnectionPermit) -> Self {
        Self {
            state,
            _permit: permit,
        }
    }
}

pub(super) enum State {
    /// Nothing to answer yet.
    Waiting(Box<Waiting>),
    /// The answer, being written.
    Writing(Answer),
}

pub(super) struct Waiting {
    /// The first message for this client, from its `PollWaiter`.
    answer: oneshot::Receiver<(u64, ByteString)>,
    timeout: Pin<Box<Sleep>>,
    /// When to write the next probe.
    probe: Pin<Box<Sleep>>,
    epoch: Epoch,
    /// The position at join: where an empty answer leaves the client.
    seq: u64,
    /// Takes the session out of `NotifyServer` once the wait is over.
    _leave: Leave,
}

impl Waiting {
    /// A wait of at most `wait` for the message `answer` brings, from
    /// position `epoch`/`seq`; `leave` goes with it.
    pub(super) fn new(
        answer: oneshot::Receiver<(u64, ByteString)>,
        wait: Duration,
        epoch: Epoch,
        seq: u64,
        leave: Leave,
    ) -> Self {
        Self {
            answer,
            timeout: Box::pin(sleep(wait)),
            probe: Box::pin(sleep(PROBE_INTERVAL)),
            epoch,
            seq,
            _leave: leave,
        }
    }

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
                // The session leaves `NotifyServer` here, with `waiting`.
                Poll::Ready(answer) => this.state = State::Writing(answer),
                Poll::Pending => {
                    return match waiting.probe.as_mut().poll(cx) {
                        Poll::Ready(()) => {
                            let next = Instant::now() + PROBE_INTERVAL;
                            waiting.probe.as_mut().reset(next);
                            Poll::Ready(Some(Ok(Bytes::from_static(PROBE))))
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
pub(super) enum Answer {
    /// A whole frame (`reset`); `None` once written.
    Frame(Option<Bytes>),
    /// `{"messages":[…],"epoch":…,"seq":…}`.
    Messages {
        backlog: Backlog,
        list: MessageList,
        epoch: Epoch,
        seq: u64,
    },
}

impl Answer {
    pub(super) fn messages(backlog: Backlog, epoch: Epoch, seq: u64) -> Self {
        Self::Messages {
            backlog,
            list: MessageList::default(),
            epoch,
            seq,
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
                list,
                epoch,
                seq,
            } => {
                if list.is_finished() {
                    return None;
                }
                let mut out = String::new();
                for (_, frame) in backlog.next_slice(SLICE_BYTES) {
                    list.push(&mut out, &frame);
                }
                if backlog.is_empty() {
                    list.finish(&mut out, epoch, *seq);
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
