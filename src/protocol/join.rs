//! The frames that answer a client's join (a connect, or a `register`),
//! the same on every transport: what the client is told it joined, then
//! the outcome of its resume.

use bytestring::ByteString;

use super::ServerFrame;
use crate::ids::{ChannelName, ClientId, Epoch};
use crate::replay::ResetReason;

/// The outcome of a resume, as `NotifyServer` found it.
#[derive(Debug, Clone)]
pub enum Resume {
    /// Every missed message, in seq order (possibly none).
    Replayed {
        since: u64,
        frames: Vec<(u64, ByteString)>,
    },
    /// Complete recovery was impossible: the client goes on from `at`
    /// (in the join's epoch). Nothing from before is replayed; `frames`
    /// are what the history already holds after `at` (when the client's
    /// epoch is gone, what the new one has numbered), in seq order.
    Reset {
        reason: ResetReason,
        at: u64,
        frames: Vec<(u64, ByteString)>,
    },
    /// The history could not be read now (the broker is unreachable or did
    /// not answer), though it may be intact: nothing is sent, and the
    /// transport asks the client to come back later from the same position
    /// (WebSocket close 1013, HTTP 503) instead of resetting it. `why` is
    /// for the log.
    RetryLater { why: String },
}

/// The frames that tell the client the outcome of its join at position
/// `epoch`/`seq`, in wire order: `registered` (when `id` is given),
/// `subscribed` for each channel (or `connected` when there is neither and
/// no resume), then the replayed messages and `resumed`, or `reset` and
/// the messages that follow it. Each
/// is paired with the position it completes, which SSE sends as the event
/// id: a message's own seq; `seq` on `resumed`, the reset's position on
/// `reset`, and `seq` on the
/// opening frames when no resume is under way (during one, the position is
/// reached only at `resumed`). None for a resume to retry later: the
/// client is not told it joined.
pub fn frames(
    epoch: &Epoch,
    seq: u64,
    resume: Option<&Resume>,
    id: Option<&ClientId>,
    channels: &[ChannelName],
) -> Vec<(Option<u64>, ByteString)> {
    let mut out = Vec::new();
    if let Some(Resume::RetryLater { .. }) = resume {
        return out;
    }
    let opening = resume.is_none().then_some(seq);
    if let Some(id) = id {
        let frame = ServerFrame::Registered {
            id,
            greeting: format!("Hello client {id}"),
            epoch,
            seq,
        };
        out.push((opening, frame.encode()));
    }
    for channel in channels {
        let frame = ServerFrame::Subscribed {
            channel,
            epoch: Some(epoch),
            seq: Some(seq),
        };
        out.push((opening, frame.encode()));
    }
    match resume {
        None if out.is_empty() => {
            let frame = ServerFrame::Connected { epoch, seq };
            out.push((opening, frame.encode()));
        }
        None => {}
        Some(Resume::Replayed { since, frames }) => {
            out.extend(
                frames
                    .iter()
                    .map(|(seq, frame)| (Some(*seq), frame.clone())),
            );
            let frame = ServerFrame::Resumed {
                since: *since,
                count: frames.len(),
                epoch,
                seq,
            };
            out.push((Some(seq), frame.encode()));
        }
        Some(Resume::Reset { reason, at, frames }) => {
            out.push((Some(*at), reset(reason, epoch, *at)));
            out.extend(
                frames
                    .iter()
                    .map(|(seq, frame)| (Some(*seq), frame.clone())),
            );
        }
        Some(Resume::RetryLater { .. }) => {}
    }
    out
}

/// The `reset` frame: a resume from where the client was is impossible;
/// it should reload its state and go on from `epoch`/`seq`.
pub fn reset(reason: &ResetReason, epoch: &Epoch, seq: u64) -> ByteString {
    ServerFrame::Reset { reason, epoch, seq }.encode()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(frames: &[(Option<u64>, ByteString)]) -> Vec<(Option<u64>, &str)> {
        frames.iter().map(|(at, f)| (*at, &**f)).collect()
    }

    #[test]
    fn a_fresh_join_is_told_its_id_and_channels_at_the_current_position() {
        let id = ClientId::parse("63").unwrap();
        let news = ChannelName::parse("news").unwrap();
        let frames = frames(&"E".into(), 5, None, Some(&id), std::slice::from_ref(&news));
        assert_eq!(
            text(&frames),
            [
                (
                    Some(5),
                    r#"{"type":"registered","id":"63","greeting":"Hello client 63","epoch":"E","seq":5}"#
                ),
                (
                    Some(5),
                    r#"{"type":"subscribed","channel":"news","epoch":"E","seq":5}"#
                ),
            ]
        );
        assert_eq!(
            text(&super::frames(&"E".into(), 5, None, None, &[])),
            [(Some(5), r#"{"type":"connected","epoch":"E","seq":5}"#)]
        );
    }

    #[test]
    fn a_replay_reaches_the_position_only_at_resumed() {
        let id = ClientId::parse("63").unwrap();
        let resume = Resume::Replayed {
            since: 3,
            frames: vec![(4, ByteString::from_static("m4"))],
        };
        let frames = frames(&"E".into(), 9, Some(&resume), Some(&id), &[]);
        let positions: Vec<_> = frames.iter().map(|(at, _)| *at).collect();
        assert_eq!(positions, [None, Some(4), Some(9)]);
        assert_eq!(&*frames[1].1, "m4");
        assert_eq!(
            &*frames[2].1,
            r#"{"type":"resumed","since":3,"count":1,"epoch":"E","seq":9}"#
        );
    }

    #[test]
    fn a_reset_replaces_the_replay() {
        let resume = Resume::Reset {
            reason: ResetReason::SessionClosed,
            at: 9,
            frames: Vec::new(),
        };
        assert_eq!(
            text(&frames(&"E".into(), 9, Some(&resume), None, &[])),
            [(
                Some(9),
                r#"{"type":"reset","reason":"session closed","epoch":"E","seq":9}"#
            )]
        );
    }

    #[test]
    fn what_follows_a_reset_comes_after_it_from_its_position() {
        let resume = Resume::Reset {
            reason: ResetReason::SessionClosed,
            at: 2,
            frames: vec![(3, ByteString::from_static("m3"))],
        };
        assert_eq!(
            text(&frames(&"F".into(), 3, Some(&resume), None, &[])),
            [
                (
                    Some(2),
                    r#"{"type":"reset","reason":"session closed","epoch":"F","seq":2}"#
                ),
                (Some(3), "m3")
            ]
        );
    }

    #[test]
    fn a_resume_to_retry_later_answers_nothing() {
        let id = ClientId::parse("63").unwrap();
        let resume = Resume::RetryLater { why: "down".into() };
        assert!(frames(&"E".into(), 9, Some(&resume), Some(&id), &[]).is_empty());
    }
}
