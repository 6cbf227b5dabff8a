//! The Lua scripts herald runs in Redis, each atomic: Redis runs nothing
//! else while one runs. Their code is in the `.lua` files beside this one;
//! what each takes (KEYS, ARGV, in that order) and answers is documented
//! here, where herald calls them. The bytes of a message frame come from
//! [`crate::protocol`], as ARGV: no script spells a frame itself.

/// Joins the cluster: takes its epoch, or sets `candidate` when it has none
/// (the first node, or Redis lost its data), and reads its counter, first
/// raised to the highest seq this node has seen (after a loss of data,
/// numbering goes on after what clients were given). A counter below the
/// floor in the node's own epoch means Redis came back with older data (a
/// snapshot, a lagging replica): that epoch's history is no longer what
/// clients were given, so `candidate` replaces it. An epoch set here
/// starts at the counter: its base, the seq after which its history
/// begins. KEYS: epoch, counter, base. ARGV: candidate, floor, the node's
/// epoch. Answers `{epoch, counter}`.
pub(super) const JOIN: &str = include_str!("join.lua");

/// Numbers, keeps and announces one message, atomically, so `seq` order is
/// publish order on every node. KEYS: counter, stream, channel, clock,
/// expired mark (see the broker's module header), the node log
/// (`<prefix>:log`), the epoch, its base. ARGV: the frame's bytes
/// before its seq ([`crate::protocol::MESSAGE_FRAME_HEAD`]) and after it
/// ([`crate::protocol::PendingFrame::after_seq`]), the history bound, the
/// stream's name, the highest seq this node has seen (if Redis lost its
/// data, the counter continues after it instead of starting again at 1:
/// clients skip seqs they believe they have), then
/// [`Expiry::keep_ms`](super::expiry::Expiry::keep_ms) and
/// [`Expiry::bucket_ms`](super::expiry::Expiry::bucket_ms), and the most
/// entries the node log keeps ([`LOG_ENTRIES`]), an epoch to set if the
/// cluster has none (Redis lost its data) or if the counter is below the
/// floor in the node's own epoch (Redis came back with older data; as in
/// [`JOIN`]), its base then the seq before this one, and the node's
/// epoch. Answers `{seq, nodes, 0, evicted}`: the message's seq, the
/// nodes subscribed when it was announced, and how many idempotency keys
/// were forgotten to make room (below).
///
/// With an idempotency key, two more KEYS: the key's own
/// (`<prefix>:idempotency:<scope>:<key>`, holding the seq of the publish
/// that used it first) and the index of remembered keys
/// (`<prefix>:idempotency`, a sorted set: member `<scope>:<key>`, score
/// the instant it expires, in Redis's time, ms); and four more ARGV: the
/// window (ms), the most keys remembered, the member, and the prefix of
/// the keys' own (`<prefix>:idempotency:`). If the key's own is there
/// (unexpired), the script does nothing else and answers `{first, 0, 1,
/// 0}`: `first` the seq it holds. Otherwise, after the publish, it sets
/// the key's own to the new seq, expiring after the window, and adds it to
/// the index, which drops its expired members and, past the most keys, its
/// oldest (deleting their keys: `evicted`), and expires with the last
/// key. So the check and the publish are one atomic step on every node,
/// each key goes by itself, and the keys held never exceed the bound.
/// Without a key the script touches none of this.
///
/// The frame is the head, the seq, then the rest, so the wire bytes are
/// those [`crate::protocol::PendingFrame::stamp`] builds. The stream keeps
/// exactly `history_size` entries. Older ones go by `XDEL`, not `XTRIM`:
/// only `XDEL` records the newest removed id in the stream's
/// `max-deleted-entry-id`, which is how a resume learns that a message
/// after its position is gone. A stream created anew gets the expired mark
/// as its `max-deleted-entry-id` (`XSETID`): it may be one that expired.
/// The announcement is `<epoch>\n<stream>\n<seq>\n<frame>` (see
/// `announce.rs`): a node that gets one of another epoch learns at once
/// that Redis lost its data.
///
/// The node log records, for each seq, the stream it went to (entry id
/// `<seq>-0`, field `s`): what a node whose subscription broke reads to
/// learn what it missed ([`CATCH_UP`]). It is trimmed from its oldest end
/// (`MAXLEN ~`), and expires with the streams.
pub(super) const PUBLISH: &str = include_str!("publish.lua");

/// Reads a resume's replay, atomically and within its budget. KEYS: the
/// epoch, the counter, the clock, the expired mark (see the broker's module
/// header), the epoch's base, then each stream. ARGV: the epoch the
/// position is from, `since`, the first entry id to read (`<since + 1>-0`,
/// formatted by herald: Lua would write large numbers in exponent form),
/// `max_replay_bytes`, the bytes counted per message besides its frame, the
/// page size of each `XRANGE` ([`REPLAY_PAGE_ENTRIES`]), and
/// [`Expiry::keep_ms`](super::expiry::Expiry::keep_ms).
///
/// Answers `{outcome, a, b, latest, epoch, entries}`, `latest` being the
/// counter and `epoch` the cluster's: `{"ok", since, 0, latest, epoch,
/// {{id, frame}, …}}`; `{"moved", base, 0, latest, epoch, {…}}` when the
/// position is of another epoch: the entries are the cluster epoch's
/// history from its base, which the client gets after a `reset` to that
/// base (so a message published in the new epoch before the client came
/// back is not lost to it); `{"epoch", 0, 0, 0, "", {}}` when the cluster
/// has no epoch (Redis lost its data and no node has joined since);
/// `{"ahead", 0, 0, latest, epoch, {}}` when `since` is past the latest
/// seq; `{"dropped", i, up_to, latest, epoch, {}}` when stream `i`
/// (1-based, in KEYS after the base) dropped messages after `since` (or
/// the base), by count or by age; `{"forgotten", i, expired, latest,
/// epoch, {}}` when stream `i` is gone from Redis and may have held
/// messages after it; `{"over", 0, 0, latest, epoch, {}}` as soon as the
/// frames read would exceed the budget.
/// Redis reads the streams a page at a time and sends nothing of a replay
/// over the budget, so a resume never costs herald (or the network) more
/// than `max_replay_bytes`.
pub(super) const REPLAY: &str = include_str!("replay.lua");

/// What a node missed while its subscription was down, read at one
/// instant: every seq numbered after `after`, from the node log, with the
/// frame its stream still keeps. KEYS: the epoch, the counter, the node
/// log. ARGV: the node's epoch, `after` (the last seq the node fanned out),
/// the first entry id to read (`<after + 1>-0`), the prefix of stream keys
/// (`<prefix>:stream:`), the most frame bytes to answer with
/// ([`CATCH_UP_BYTES`]) and the most entries ([`LOG_ENTRIES`]).
///
/// Answers `{outcome, latest, entries}`, `latest` being the counter:
/// `{"ok", latest, {{id, stream, frame}, …}}` in seq order, `frame` empty
/// when the stream no longer keeps it; `{"epoch", 0, {}}` when the
/// cluster's epoch is not the node's (Redis lost its data); `{"lost",
/// latest, {}}` when the log no longer reaches back to `after` or the
/// answer would be over a bound: the node cannot tell what it missed.
pub(super) const CATCH_UP: &str = include_str!("catch_up.lua");

/// Most entries the node log keeps (about; Redis trims it in whole
/// nodes), so the longest run of publishes a node can miss and still
/// recover by itself. Some tens of bytes each.
pub(super) const LOG_ENTRIES: usize = 100_000;

/// Most frame bytes one catch-up reads; past it the node cannot recover
/// by itself (see [`CATCH_UP`]).
pub(super) const CATCH_UP_BYTES: usize = 64 << 20;

/// What [`CATCH_UP`] answers.
pub(super) type CatchUpReply = (String, u64, Vec<(String, String, Vec<u8>)>);

/// Entries each `XRANGE` of [`REPLAY`] reads.
pub(super) const REPLAY_PAGE_ENTRIES: usize = 100;

/// What [`REPLAY`] answers.
pub(super) type ReplayReply = (String, u64, u64, u64, String, Vec<(String, Vec<u8>)>);

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use super::*;
    use crate::ids::ClientId;
    use crate::protocol::{PendingFrame, MESSAGE_FRAME_HEAD};

    /// What [`PUBLISH`] builds (`ARGV[1] .. seq .. ARGV[2]`) is the frame
    /// a node that numbers messages itself would send.
    #[test]
    fn the_publish_script_builds_the_frame_the_protocol_stamps() {
        let data = RawValue::from_string(r#"{"order":17}"#.into()).unwrap();
        let id = ClientId::parse("63").unwrap();
        let frame = PendingFrame::message(Some(&id), None, &data).unwrap();
        for seq in [1, 42, 99_999_999_999_999] {
            let spliced = format!("{MESSAGE_FRAME_HEAD}{seq}{}", frame.after_seq());
            assert_eq!(spliced, &*frame.stamp(seq));
        }
        assert!(PUBLISH.contains("local frame = ARGV[1] .. id .. ARGV[2]"));
        assert!(!PUBLISH.contains("\"type\""), "the script spells no frame");
    }
}
