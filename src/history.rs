//! Recent messages per stream, so a client that reconnects can get what it
//! missed.
//!
//! A *stream* is one way a message reaches sessions: the broadcast stream,
//! one per client id, one per channel. Every message lives in exactly one
//! stream, under the server-wide `seq` it was published with.
//!
//! Bounds, whatever the publish rate:
//! - `history_size` messages per stream (older ones are dropped first);
//! - `history_ttl_secs`: messages older than this are dropped;
//! - `history_max_bytes` over all streams (oldest dropped first), counting
//!   each message's frame plus [`ENTRY_OVERHEAD_BYTES`];
//! - `history_max_streams` streams remembered, retained messages or not
//!   (the least recently published one is forgotten first).
//!
//! Recovery is all or nothing: [`History::replay`] either returns every
//! retained message a position is missing, or says that some were dropped
//! or that they are more than the resume's [`ReplayBudget`].
//! To know that, each stream remembers the newest seq it dropped, and the
//! history remembers the newest seq of any stream it forgot entirely.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;

use crate::ids::{ChannelName, ClientId};
use crate::replay::{ReplayBudget, ResetReason};

/// Memory counted per retained message besides its frame: the entry, its
/// slot in the global order and map overhead, rounded up.
pub const ENTRY_OVERHEAD_BYTES: usize = 96;

/// Where a message was published.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StreamKey {
    Broadcast,
    Id(ClientId),
    Channel(ChannelName),
}

impl std::fmt::Display for StreamKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Broadcast => f.write_str("broadcast"),
            Self::Id(id) => write!(f, "id {id:?}"),
            Self::Channel(channel) => write!(f, "channel {channel}"),
        }
    }
}

/// The configured bounds.
#[derive(Debug, Clone, Copy)]
pub struct HistoryLimits {
    pub per_stream: usize,
    pub ttl: Duration,
    pub max_bytes: usize,
    pub max_streams: usize,
}

pub struct History {
    limits: HistoryLimits,
    streams: HashMap<StreamKey, Stream>,
    /// Retained messages oldest first, for age and size eviction. Holds
    /// stale references to messages a stream already dropped by count;
    /// compacted when those outnumber the live ones.
    order: VecDeque<OrderRef>,
    /// Messages retained in all streams.
    retained: usize,
    /// Stream by the seq of its newest message, to forget the least
    /// recently published stream first.
    by_activity: BTreeMap<u64, Arc<StreamKey>>,
    /// Bytes counted against `max_bytes`.
    bytes: usize,
    /// Newest seq of any stream forgotten entirely: a position older than
    /// this cannot be proven complete for a stream the history no longer
    /// knows.
    forgotten_up_to: u64,
}

struct Stream {
    /// The stream's key, shared by its references in the global order and
    /// the activity index: an append copies no name.
    key: Arc<StreamKey>,
    entries: VecDeque<Entry>,
    /// Newest seq this stream dropped (0: none).
    dropped_up_to: u64,
    /// Newest seq published to this stream.
    last_seq: u64,
}

struct Entry {
    seq: u64,
    frame: ByteString,
}

struct OrderRef {
    seq: u64,
    at: Instant,
    key: Arc<StreamKey>,
}

/// What the history holds now, for `/health` and `/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryUsage {
    /// Messages retained over all streams.
    pub messages: usize,
    /// Bytes counted against `history_max_bytes`: each retained message's
    /// frame plus [`ENTRY_OVERHEAD_BYTES`].
    pub bytes: usize,
    /// Streams remembered, retained messages or not.
    pub streams: usize,
}

impl History {
    pub fn new(limits: HistoryLimits) -> Self {
        Self {
            limits,
            streams: HashMap::new(),
            order: VecDeque::new(),
            retained: 0,
            by_activity: BTreeMap::new(),
            bytes: 0,
            forgotten_up_to: 0,
        }
    }

    /// Records a message. `seq` must exceed every seq recorded before.
    pub fn append(&mut self, key: &StreamKey, seq: u64, frame: ByteString, now: Instant) {
        if !self.streams.contains_key(key) {
            self.open(key);
        }
        let Some(stream) = self.streams.get_mut(key) else {
            return;
        };
        let size = frame.len() + ENTRY_OVERHEAD_BYTES;
        self.by_activity.remove(&stream.last_seq);
        stream.last_seq = seq;
        self.by_activity.insert(seq, stream.key.clone());
        if self.limits.per_stream > 0 {
            stream.entries.push_back(Entry { seq, frame });
            self.bytes += size;
            self.retained += 1;
            self.order.push_back(OrderRef {
                seq,
                at: now,
                key: stream.key.clone(),
            });
            if stream.entries.len() > self.limits.per_stream {
                if let Some(old) = stream.entries.pop_front() {
                    stream.dropped_up_to = old.seq;
                    self.bytes -= old.frame.len() + ENTRY_OVERHEAD_BYTES;
                    self.retained -= 1;
                }
            }
        } else {
            stream.dropped_up_to = seq;
        }
        self.expire(now);
        self.compact();
    }

    /// Starts remembering `key`, forgetting the least recently published
    /// stream first when at `history_max_streams`. A stream new to the
    /// history may be one it forgot: it inherits the forgotten mark, so a
    /// position from before stays a gap.
    fn open(&mut self, key: &StreamKey) {
        if self.streams.len() >= self.limits.max_streams {
            self.forget_least_recent();
        }
        let stream = Stream {
            key: Arc::new(key.clone()),
            entries: VecDeque::new(),
            dropped_up_to: self.forgotten_up_to,
            last_seq: 0,
        };
        self.streams.insert(key.clone(), stream);
    }

    /// Drops messages past their age, then the oldest ones while over the
    /// byte budget.
    pub fn expire(&mut self, now: Instant) {
        while let Some(front) = self.order.front() {
            let too_old = now.saturating_duration_since(front.at) >= self.limits.ttl;
            if !too_old && self.bytes <= self.limits.max_bytes {
                break;
            }
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            let Some(stream) = self.streams.get_mut(&*oldest.key) else {
                continue;
            };
            if stream.entries.front().is_some_and(|e| e.seq == oldest.seq) {
                if let Some(entry) = stream.entries.pop_front() {
                    stream.dropped_up_to = entry.seq;
                    self.bytes -= entry.frame.len() + ENTRY_OVERHEAD_BYTES;
                    self.retained -= 1;
                }
            }
        }
    }

    /// Removes stale references from the global order once they outnumber
    /// the live ones, so its length stays within twice the retained count.
    fn compact(&mut self) {
        let stale = self.order.len() - self.retained;
        if stale <= self.retained + 1024 {
            return;
        }
        let streams = &self.streams;
        self.order.retain(|r| {
            streams
                .get(&*r.key)
                .is_some_and(|s| s.entries.binary_search_by_key(&r.seq, |e| e.seq).is_ok())
        });
    }

    fn forget_least_recent(&mut self) {
        let Some((_, key)) = self.by_activity.pop_first() else {
            return;
        };
        if let Some(stream) = self.streams.remove(&*key) {
            self.forgotten_up_to = self.forgotten_up_to.max(stream.last_seq);
            for entry in &stream.entries {
                self.bytes -= entry.frame.len() + ENTRY_OVERHEAD_BYTES;
                self.retained -= 1;
            }
        }
    }

    /// Every retained message with `since < seq <= until` in each stream,
    /// merged in seq order; or why not ([`ResetReason`]) if any stream
    /// dropped a message newer than `since`, or if those messages would
    /// exceed `budget` (nothing is returned then). The frames are shared with the history,
    /// not copied.
    pub fn replay<'a>(
        &mut self,
        streams: impl IntoIterator<Item = (&'a StreamKey, u64)>,
        since: u64,
        now: Instant,
        budget: &mut ReplayBudget,
    ) -> Result<Vec<(u64, ByteString)>, ResetReason> {
        self.expire(now);
        let mut found = Vec::new();
        for (key, until) in streams {
            if until <= since {
                continue;
            }
            let Some(stream) = self.streams.get(key) else {
                if self.forgotten_up_to > since {
                    return Err(ResetReason::HistoryForgotten {
                        stream: key.to_string(),
                        since,
                    });
                }
                continue;
            };
            if stream.dropped_up_to > since {
                return Err(ResetReason::HistoryDropped {
                    stream: key.to_string(),
                    since,
                    up_to: stream.dropped_up_to,
                });
            }
            let start = stream.entries.partition_point(|e| e.seq <= since);
            for entry in stream.entries.range(start..).take_while(|e| e.seq <= until) {
                budget.take(entry.frame.len())?;
                found.push((entry.seq, entry.frame.clone()));
            }
        }
        found.sort_unstable_by_key(|(seq, _)| *seq);
        Ok(found)
    }

    /// Retained messages, bytes counted, and streams remembered.
    pub fn usage(&self) -> HistoryUsage {
        HistoryUsage {
            messages: self.retained,
            bytes: self.bytes,
            streams: self.streams.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> HistoryLimits {
        HistoryLimits {
            per_stream: 3,
            ttl: Duration::from_secs(60),
            max_bytes: 1 << 20,
            max_streams: 100,
        }
    }

    fn frame(seq: u64) -> ByteString {
        ByteString::from(format!("m{seq}"))
    }

    fn id(name: &str) -> StreamKey {
        StreamKey::Id(ClientId::parse(name).unwrap())
    }

    /// A budget no test here comes near.
    fn budget() -> ReplayBudget {
        ReplayBudget::new(1 << 30, 0)
    }

    fn seqs(found: Vec<(u64, ByteString)>) -> Vec<u64> {
        found.into_iter().map(|(seq, _)| seq).collect()
    }

    #[test]
    fn replays_the_streams_asked_for_merged_in_order() {
        let now = Instant::now();
        let mut h = History::new(limits());
        h.append(&StreamKey::Broadcast, 1, frame(1), now);
        h.append(&id("a"), 2, frame(2), now);
        h.append(&id("b"), 3, frame(3), now);
        h.append(&StreamKey::Broadcast, 4, frame(4), now);
        h.append(&id("a"), 5, frame(5), now);
        let asked = [(&StreamKey::Broadcast, 5), (&id("a"), 5)];
        assert_eq!(
            seqs(h.replay(asked, 1, now, &mut budget()).unwrap()),
            [2, 4, 5]
        );
        // `until` bounds each stream.
        let asked = [(&StreamKey::Broadcast, 5), (&id("a"), 2)];
        assert_eq!(
            seqs(h.replay(asked, 0, now, &mut budget()).unwrap()),
            [1, 2, 4]
        );
    }

    #[test]
    fn a_stream_that_dropped_newer_messages_is_a_gap() {
        let now = Instant::now();
        let mut h = History::new(limits());
        for seq in 1..=5 {
            h.append(&id("a"), seq, frame(seq), now);
        }
        let asked = [(&id("a"), 5)];
        assert_eq!(
            seqs(h.replay(asked, 2, now, &mut budget()).unwrap()),
            [3, 4, 5]
        );
        let gap = h.replay(asked, 1, now, &mut budget()).unwrap_err();
        assert!(gap.to_string().contains("dropped"), "{gap:?}");
        // Another stream's losses do not matter.
        assert!(h
            .replay([(&id("b"), 5)], 0, now, &mut budget())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn old_messages_expire_and_leave_a_gap_marker() {
        let start = Instant::now();
        let mut h = History::new(limits());
        h.append(&id("a"), 1, frame(1), start);
        let later = start + Duration::from_secs(61);
        h.append(&id("b"), 2, frame(2), later);
        assert_eq!(h.usage().messages, 1);
        assert!(h.replay([(&id("a"), 2)], 0, later, &mut budget()).is_err());
        assert!(h
            .replay([(&id("a"), 2)], 1, later, &mut budget())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn the_byte_budget_drops_the_oldest_messages() {
        let now = Instant::now();
        let mut h = History::new(HistoryLimits {
            max_bytes: 3 * (2 + ENTRY_OVERHEAD_BYTES),
            ..limits()
        });
        for seq in 1..=5 {
            h.append(
                &StreamKey::Channel(ChannelName::parse(format!("c{seq}")).unwrap()),
                seq,
                frame(seq),
                now,
            );
        }
        let HistoryUsage {
            messages: retained,
            bytes,
            ..
        } = h.usage();
        assert_eq!(retained, 3);
        assert!(bytes <= 3 * (2 + ENTRY_OVERHEAD_BYTES));
        let c1 = StreamKey::Channel(ChannelName::parse("c1").unwrap());
        assert!(h.replay([(&c1, 5)], 0, now, &mut budget()).is_err());
    }

    #[test]
    fn the_stream_cap_forgets_the_least_recent_stream_conservatively() {
        let now = Instant::now();
        let mut h = History::new(HistoryLimits {
            max_streams: 2,
            ..limits()
        });
        h.append(&id("a"), 1, frame(1), now);
        h.append(&id("b"), 2, frame(2), now);
        h.append(&id("a"), 3, frame(3), now);
        h.append(&id("c"), 4, frame(4), now); // forgets "b", last published at 2
        assert_eq!(h.usage().streams, 2);
        assert!(h.replay([(&id("b"), 4)], 1, now, &mut budget()).is_err());
        // A position past everything "b" ever had is still complete.
        assert!(h
            .replay([(&id("b"), 4)], 2, now, &mut budget())
            .unwrap()
            .is_empty());
        assert_eq!(
            seqs(h.replay([(&id("a"), 4)], 0, now, &mut budget()).unwrap()),
            [1, 3]
        );
        // "b" comes back: what it lost before is still a gap.
        h.append(&id("b"), 5, frame(5), now);
        assert!(h.replay([(&id("b"), 5)], 0, now, &mut budget()).is_err());
        assert_eq!(
            seqs(h.replay([(&id("b"), 5)], 4, now, &mut budget()).unwrap()),
            [5]
        );
    }

    #[test]
    fn a_replay_over_its_budget_is_a_gap_and_returns_nothing() {
        let now = Instant::now();
        let mut h = History::new(limits());
        for seq in 1..=3 {
            h.append(&StreamKey::Broadcast, seq, frame(seq), now);
        }
        for seq in 11..=13 {
            h.append(&id("a"), seq, frame(seq), now);
        }
        let asked = [(&StreamKey::Broadcast, 13), (&id("a"), 13)];
        // Frames "m1".."m3" are 2 bytes, "m11".."m13" 3 bytes.
        let cost = |frame: usize| ReplayBudget::cost(frame);
        let all = 3 * cost(2) + 3 * cost(3);
        let mut exact = ReplayBudget::new(all, 0);
        assert_eq!(seqs(h.replay(asked, 0, now, &mut exact).unwrap()).len(), 6);
        assert_eq!(exact.used(), all);

        let mut short = ReplayBudget::new(all - 1, 0);
        let gap = h.replay(asked, 0, now, &mut short).unwrap_err();
        assert!(gap.to_string().contains("max_replay_bytes"), "{gap:?}");
        // From a later position the same budget suffices.
        let mut later = ReplayBudget::new(all - 1, 1);
        assert_eq!(
            seqs(h.replay(asked, 1, now, &mut later).unwrap()),
            [2, 3, 11, 12, 13]
        );
    }

    #[test]
    fn memory_stays_bounded_under_any_number_of_messages() {
        let now = Instant::now();
        let mut h = History::new(limits());
        for seq in 1..=100_000u64 {
            let key = id(&format!("user{}", seq % 7));
            h.append(&key, seq, frame(seq), now);
        }
        let HistoryUsage {
            messages: retained,
            streams,
            ..
        } = h.usage();
        assert_eq!(streams, 7);
        assert_eq!(retained, 21);
        assert!(
            h.order.len() <= 2 * retained + 1024 + 1,
            "{}",
            h.order.len()
        );
    }
}
