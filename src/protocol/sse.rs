//! Frames as Server-Sent Events (`GET /events`), and what else the stream
//! carries: its opening, its keep-alives and pings.
//!
//! Each frame is one event whose `data:` is the JSON frame (frames are
//! compact JSON: one line). An event that completes a position carries
//! `id: <epoch>:<seq>`, so the browser's EventSource sends it back as
//! `Last-Event-ID` when it reconnects ([`super::Position::parse_event_id`]
//! reads it).

use std::fmt::Write;
use std::time::Duration;

use crate::ids::Epoch;

/// What the browser waits before it reconnects by itself, in
/// milliseconds (`retry:`). herald.js never lets it: it closes the stream
/// on an error and reconnects with its own backoff.
const RETRY_MS: u64 = 2000;

/// Bytes an event adds around its frame and epoch, at most: `id: `, `:`,
/// a 20-digit seq, `\n`, `data: `, `\n\n`.
const EVENT_OVERHEAD_BYTES: usize = 4 + 1 + 20 + 1 + 6 + 2;

/// The first bytes of every stream: a comment (which opens the stream at
/// once, through proxies that wait for a first byte), how soon EventSource
/// may retry, and a [ping](ping_event) telling the page how often to expect
/// one.
pub fn opening(heartbeat_interval: Duration) -> String {
    let mut out = format!(": herald\nretry: {RETRY_MS}\n\n");
    out.push_str(&ping_event(heartbeat_interval));
    out
}

/// What the stream carries every `heartbeat_interval`: a comment, which
/// keeps proxies from closing an idle stream, and a [ping](ping_event),
/// which a page can see (EventSource hides comments).
pub fn keep_alive(heartbeat_interval: Duration) -> String {
    format!(": keep-alive\n\n{}", ping_event(heartbeat_interval))
}

/// The keep-alive event a page can see: `event: ping` (so EventSource's
/// `onmessage` ignores it; only a listener for "ping" gets it) with the
/// heartbeat interval as its data, `{"heartbeat_interval_ms":N}` (an event
/// without data would not be dispatched at all). No `id:`, so it leaves
/// `Last-Event-ID` as it was.
fn ping_event(heartbeat_interval: Duration) -> String {
    format!(
        "event: ping\ndata: {{\"heartbeat_interval_ms\":{}}}\n\n",
        heartbeat_interval.as_millis()
    )
}

/// The room [`write_event`] needs for one event of `frame` in `epoch`:
/// a buffer of this capacity takes it without growing.
pub fn event_capacity(epoch: &Epoch, frame: &str) -> usize {
    frame.len() + epoch.as_str().len() + EVENT_OVERHEAD_BYTES
}

/// Appends one event to `out`: `id: <epoch>:<seq>` when the frame completes
/// a position, then the frame as `data:`. `frame` must be one line, as
/// every frame herald encodes is.
pub fn write_event(out: &mut String, epoch: &Epoch, seq: Option<u64>, frame: &str) {
    if let Some(seq) = seq {
        // Writing into a String cannot fail.
        let _ = writeln!(out, "id: {epoch}:{seq}");
    }
    out.push_str("data: ");
    out.push_str(frame);
    out.push_str("\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_event_carries_its_position_as_its_id() {
        let frame = r#"{"type":"message","seq":7,"data":1}"#;
        let epoch = Epoch::from("E-1");
        let mut out = String::with_capacity(event_capacity(&epoch, frame));
        let room = out.capacity();
        write_event(&mut out, &epoch, Some(u64::MAX), frame);
        assert_eq!(
            out,
            format!("id: E-1:{}\ndata: {frame}\n\n", u64::MAX),
            "one event"
        );
        assert_eq!(out.capacity(), room, "written without growing");
    }

    #[test]
    fn an_event_without_a_position_has_no_id() {
        let mut out = String::from(": before\n\n");
        write_event(&mut out, &"E".into(), None, r#"{"type":"connected"}"#);
        assert_eq!(out, ": before\n\ndata: {\"type\":\"connected\"}\n\n");
    }

    #[test]
    fn the_stream_opens_with_a_comment_a_retry_and_a_ping() {
        let ping = "event: ping\ndata: {\"heartbeat_interval_ms\":5000}\n\n";
        let every = Duration::from_secs(5);
        assert_eq!(opening(every), format!(": herald\nretry: 2000\n\n{ping}"));
        assert_eq!(keep_alive(every), format!(": keep-alive\n\n{ping}"));
    }
}
