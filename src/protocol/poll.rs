//! The body of a long-poll answer (`GET /poll`), and the probes written
//! while it waits.
//!
//! An answer is one JSON value: the `reset` frame when the client's
//! position cannot be recovered ([`reset_answer`]), or
//! `{"messages":[<message frames>],"epoch":"E","seq":S}`, where `S` is the
//! position to poll from next ([`MessageList`], written a piece at a time
//! so that a long replay is never encoded whole). Before it, a waiting poll
//! writes [`PROBE`]s.

use std::fmt::Write;

use bytestring::ByteString;

use super::join;
use crate::ids::Epoch;
use crate::replay::ResetReason;

/// What a waiting poll writes to learn whether its client is still there:
/// one space, which JSON allows before the answer, so `JSON.parse` and
/// `response.json()` read the answer as usual.
pub const PROBE: &[u8] = b" ";

/// The whole answer when the client's position cannot be recovered: the
/// `reset` frame, as on the other transports.
pub fn reset_answer(reason: &ResetReason, epoch: &Epoch, seq: u64) -> ByteString {
    join::reset(reason, epoch, seq)
}

/// `{"messages":[…],"epoch":…,"seq":…}`, written a piece at a time:
/// [`MessageList::push`] for each message frame, then
/// [`MessageList::finish`] once, which ends the list, even an empty one.
#[derive(Debug, Default)]
pub struct MessageList {
    /// Whether the opening `{"messages":[` went out.
    opened: bool,
    /// Whether the closing `],"epoch":…}` went out.
    finished: bool,
}

impl MessageList {
    /// Appends one message frame to `out` (after the list's opening when it
    /// is the first).
    pub fn push(&mut self, out: &mut String, frame: &str) {
        out.push_str(if self.opened { "," } else { r#"{"messages":["# });
        self.opened = true;
        out.push_str(frame);
    }

    /// Appends the end of the answer to `out`: the list's end and the
    /// position `epoch`/`seq` to poll from next.
    pub fn finish(&mut self, out: &mut String, epoch: &Epoch, seq: u64) {
        if !self.opened {
            out.push_str(r#"{"messages":["#);
            self.opened = true;
        }
        out.push_str(r#"],"epoch":"#);
        // Epochs are [A-Za-z0-9-]; encoding keeps that an invariant anyway.
        out.push_str(&serde_json::to_string(epoch).unwrap_or_else(|_| "\"\"".into()));
        // Writing into a String cannot fail.
        let _ = write!(out, r#","seq":{seq}}}"#);
        self.finished = true;
    }

    /// Whether the answer is complete.
    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_answer_is_a_complete_list() {
        let mut list = MessageList::default();
        let mut out = String::new();
        assert!(!list.is_finished());
        list.finish(&mut out, &"E".into(), 7);
        assert!(list.is_finished());
        assert_eq!(out, r#"{"messages":[],"epoch":"E","seq":7}"#);
    }

    #[test]
    fn messages_written_in_pieces_read_as_one_list() {
        let mut list = MessageList::default();
        let mut first = String::new();
        list.push(&mut first, r#"{"seq":1}"#);
        list.push(&mut first, r#"{"seq":2}"#);
        let mut second = String::new();
        list.push(&mut second, r#"{"seq":3}"#);
        list.finish(&mut second, &"E-1".into(), u64::MAX);
        assert_eq!(
            first + &second,
            format!(
                r#"{{"messages":[{{"seq":1}},{{"seq":2}},{{"seq":3}}],"epoch":"E-1","seq":{}}}"#,
                u64::MAX
            )
        );
    }

    #[test]
    fn a_reset_answer_is_the_reset_frame() {
        assert_eq!(
            &*reset_answer(&ResetReason::SessionClosed, &"E".into(), 9),
            r#"{"type":"reset","reason":"session closed","epoch":"E","seq":9}"#
        );
    }
}
