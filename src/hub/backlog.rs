//! What a session owes its client when it joins (the opening frames, the
//! replay, `resumed` or `reset`), handed to the transport a slice at a
//! time instead of all at once.
//!
//! A replay may hold up to `max_replay_bytes` of messages. Encoded in one
//! piece, it would be copied whole into the session's write buffers however
//! slowly the client reads. A [`Backlog`] keeps the frames themselves
//! (shared with the history, not copied) and gives out about
//! [`SLICE_BYTES`] at a time; each transport asks for the next slice only
//! once its writer has taken the previous one, the same back-pressure live
//! messages get. What a slow reader pins is then the rest of its backlog
//! (within `max_replay_bytes`) plus one slice, never a copy of the replay.

use std::collections::vec_deque::Drain;
use std::collections::VecDeque;

use bytestring::ByteString;

/// Bytes of frames a transport encodes at a time: about what actix-web's
/// write buffer takes before it waits for the socket (32 KiB), so a slice
/// is written in one or two rounds.
pub const SLICE_BYTES: usize = 64 * 1024;

/// A frame to write, with the position it completes (SSE's event id).
pub type Positioned = (Option<u64>, ByteString);

/// Frames still to be written, in order.
#[derive(Debug, Default)]
pub struct Backlog {
    frames: VecDeque<Positioned>,
}

impl Backlog {
    pub fn new(frames: Vec<Positioned>) -> Self {
        Self {
            frames: frames.into(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The next frames to write: at least one while any are left, then
    /// more only while they stay within `max_bytes` in all.
    pub fn next_slice(&mut self, max_bytes: usize) -> Drain<'_, Positioned> {
        let mut bytes = 0usize;
        let mut count = 0;
        for (_, frame) in &self.frames {
            bytes = bytes.saturating_add(frame.len());
            if count > 0 && bytes > max_bytes {
                break;
            }
            count += 1;
        }
        self.frames.drain(..count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(sizes: &[usize]) -> Backlog {
        Backlog::new(
            sizes
                .iter()
                .enumerate()
                .map(|(i, &n)| (Some(i as u64), ByteString::from("x".repeat(n))))
                .collect(),
        )
    }

    fn slices(mut backlog: Backlog, max: usize) -> Vec<Vec<u64>> {
        let mut out = Vec::new();
        while !backlog.is_empty() {
            out.push(
                backlog
                    .next_slice(max)
                    .map(|(seq, _)| seq.unwrap())
                    .collect(),
            );
        }
        out
    }

    #[test]
    fn slices_stay_within_the_bound_and_keep_the_order() {
        let sizes = [40, 40, 20, 50, 10, 10, 90];
        assert_eq!(
            slices(frames(&sizes), 100),
            [vec![0, 1, 2], vec![3, 4, 5], vec![6]]
        );
    }

    #[test]
    fn a_frame_larger_than_a_slice_goes_alone() {
        assert_eq!(
            slices(frames(&[10, 500, 10]), 100),
            [vec![0], vec![1], vec![2]]
        );
    }

    #[test]
    fn an_empty_backlog_gives_nothing() {
        let mut backlog = Backlog::default();
        assert_eq!(backlog.next_slice(SLICE_BYTES).count(), 0);
        assert!(backlog.is_empty());
    }
}
