//! What one resume may get: the replay budget (`max_replay_bytes`), and
//! why a resume is answered `reset` instead ([`ResetReason`]): only when
//! the history is known not to hold what it asks for. A broker that cannot
//! be read now is no such reason; that resume is retried later (the
//! broker's `NotReplayed::Unavailable`).
//!
//! A replay is held by its session until the client has read it, however
//! slowly it reads; and anyone may ask for one, from any position. So the
//! messages one resume brings back are bounded in bytes, per session: a
//! resume whose replay would need more than `max_replay_bytes` gets
//! `reset` (nothing partial, as for a position the history no longer
//! covers) and the client reloads its state instead.
//!
//! Each replayed message counts its frame plus
//! [`REPLAY_ENTRY_OVERHEAD_BYTES`]. Both brokers count the same way: the
//! memory broker while it collects the replay ([`crate::history`]), the
//! Redis broker inside the script that reads it, so Redis never sends more
//! than the budget allows.

use std::fmt;

/// Memory counted per replayed message besides its frame: its slot in the
/// replay, in the session's queue and in the transport's encoding, rounded
/// up.
pub const REPLAY_ENTRY_OVERHEAD_BYTES: usize = 64;

/// The bytes one resume has taken of its budget so far.
#[derive(Debug, Clone, Copy)]
pub struct ReplayBudget {
    max_bytes: usize,
    used: usize,
    /// The position resumed from, for the reason given to the client.
    since: u64,
}

/// A replay needs more than its budget: the resume is answered `reset`
/// with this text as the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "replay too large: the messages after seq {since} need more than max_replay_bytes \
     ({max_bytes} bytes); reload your state"
)]
pub struct OverBudget {
    pub since: u64,
    pub max_bytes: usize,
}

/// Whose history a reset speaks of: this process's (the memory broker) or
/// the cluster's (the Redis broker). Only the reason's words differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryKeeper {
    Server,
    Cluster,
}

/// Why a resume cannot be answered in full: nothing is replayed and the
/// client gets `reset`, whose `reason` is this value's text. The text is
/// for people and stays stable (clients and tests may look for a word in
/// it); `docs/protocol.md` lists the kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetReason {
    /// The position is of another epoch than the history's: it started
    /// afresh since (a restart, or a Redis that lost its data), or the
    /// position comes from elsewhere.
    EpochChanged { keeper: HistoryKeeper },
    /// The position is past the newest seq numbered (`latest`).
    Ahead {
        since: u64,
        latest: u64,
        keeper: HistoryKeeper,
    },
    /// `stream` (as it names itself: `broadcast`, `id "63"`, `channel
    /// news`) dropped messages after `since`, the newest of them `up_to`.
    HistoryDropped {
        stream: String,
        since: u64,
        up_to: u64,
    },
    /// The history no longer knows `stream`, which may have had messages
    /// after `since`.
    HistoryForgotten { stream: String, since: u64 },
    /// The messages after the position need more than the replay budget.
    ReplayTooLarge(OverBudget),
    /// The session closed before its resume could be read.
    SessionClosed,
    /// The broker answered a replay with an outcome herald does not know.
    BrokerAnswer(String),
}

impl fmt::Display for ResetReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EpochChanged {
                keeper: HistoryKeeper::Server,
            } => f.write_str("epoch changed: this server's history started afresh"),
            Self::EpochChanged {
                keeper: HistoryKeeper::Cluster,
            } => f.write_str("the broker's history started afresh (epoch changed)"),
            Self::Ahead {
                since,
                latest,
                keeper,
            } => {
                let keeper = match keeper {
                    HistoryKeeper::Server => "server",
                    HistoryKeeper::Cluster => "cluster",
                };
                write!(f, "position {since} is ahead of this {keeper} ({latest})")
            }
            Self::HistoryDropped {
                stream,
                since,
                up_to,
            } => write!(
                f,
                "history of {stream} dropped messages after seq {since} (up to {up_to})"
            ),
            Self::HistoryForgotten { stream, since } => {
                write!(f, "history no longer covers {stream} after seq {since}")
            }
            Self::ReplayTooLarge(over) => fmt::Display::fmt(over, f),
            Self::SessionClosed => f.write_str("session closed"),
            Self::BrokerAnswer(outcome) => {
                write!(f, "the message broker answered a replay with {outcome:?}")
            }
        }
    }
}

/// On the wire, the `reset` frame's `reason`: the text above.
impl serde::Serialize for ResetReason {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl From<OverBudget> for ResetReason {
    fn from(over: OverBudget) -> Self {
        Self::ReplayTooLarge(over)
    }
}

impl ReplayBudget {
    /// A budget of `max_bytes` for the resume from `since`.
    pub fn new(max_bytes: usize, since: u64) -> Self {
        Self {
            max_bytes,
            used: 0,
            since,
        }
    }

    /// What a message with a frame of `frame_bytes` counts.
    pub fn cost(frame_bytes: usize) -> usize {
        frame_bytes.saturating_add(REPLAY_ENTRY_OVERHEAD_BYTES)
    }

    /// Counts one more message; fails, counting nothing, when the replay
    /// would then exceed the budget.
    pub fn take(&mut self, frame_bytes: usize) -> Result<(), OverBudget> {
        let used = self.used.saturating_add(Self::cost(frame_bytes));
        if used > self.max_bytes {
            return Err(self.exceeded());
        }
        self.used = used;
        Ok(())
    }

    /// The error for this resume, when the budget is exceeded elsewhere
    /// (the Redis script counts on its side).
    pub fn exceeded(&self) -> OverBudget {
        OverBudget {
            since: self.since,
            max_bytes: self.max_bytes,
        }
    }

    /// Bytes counted so far.
    pub fn used(&self) -> usize {
        self.used
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_message_counts_its_frame_plus_the_overhead() {
        let mut budget = ReplayBudget::new(1000, 7);
        budget.take(100).unwrap();
        budget.take(36).unwrap();
        assert_eq!(budget.used(), 100 + 36 + 2 * REPLAY_ENTRY_OVERHEAD_BYTES);
    }

    #[test]
    fn the_budget_may_be_filled_exactly_but_not_passed() {
        let frame = 1000 - REPLAY_ENTRY_OVERHEAD_BYTES;
        let mut exact = ReplayBudget::new(1000, 0);
        assert!(exact.take(frame).is_ok());
        assert_eq!(exact.used(), 1000);
        assert!(exact.take(0).is_err(), "nothing fits after a full budget");

        let mut over = ReplayBudget::new(1000, 41);
        over.take(500).unwrap();
        let err = over.take(500).unwrap_err();
        assert_eq!(
            over.used(),
            500 + REPLAY_ENTRY_OVERHEAD_BYTES,
            "not counted"
        );
        assert_eq!(
            err,
            OverBudget {
                since: 41,
                max_bytes: 1000
            }
        );
        let reason = err.to_string();
        assert!(reason.contains("max_replay_bytes"), "{reason}");
        assert!(reason.contains("after seq 41"), "{reason}");
    }

    #[test]
    fn huge_frames_never_wrap_around() {
        let mut budget = ReplayBudget::new(usize::MAX - 10, 0);
        assert!(budget.take(usize::MAX).is_err());
        assert_eq!(budget.used(), 0);
    }

    #[test]
    fn each_reset_reason_reads_as_it_always_has() {
        use HistoryKeeper::{Cluster, Server};
        let cases = [
            (
                ResetReason::EpochChanged { keeper: Server },
                "epoch changed: this server's history started afresh",
            ),
            (
                ResetReason::EpochChanged { keeper: Cluster },
                "the broker's history started afresh (epoch changed)",
            ),
            (
                ResetReason::Ahead {
                    since: 9,
                    latest: 4,
                    keeper: Server,
                },
                "position 9 is ahead of this server (4)",
            ),
            (
                ResetReason::Ahead {
                    since: 9,
                    latest: 4,
                    keeper: Cluster,
                },
                "position 9 is ahead of this cluster (4)",
            ),
            (
                ResetReason::HistoryDropped {
                    stream: "channel news".into(),
                    since: 3,
                    up_to: 7,
                },
                "history of channel news dropped messages after seq 3 (up to 7)",
            ),
            (
                ResetReason::HistoryForgotten {
                    stream: "broadcast".into(),
                    since: 3,
                },
                "history no longer covers broadcast after seq 3",
            ),
            (
                OverBudget {
                    since: 41,
                    max_bytes: 4194304,
                }
                .into(),
                "replay too large: the messages after seq 41 need more than \
                 max_replay_bytes (4194304 bytes); reload your state",
            ),
            (ResetReason::SessionClosed, "session closed"),
            (
                ResetReason::BrokerAnswer("odd".into()),
                "the message broker answered a replay with \"odd\"",
            ),
        ];
        for (reason, text) in cases {
            assert_eq!(reason.to_string(), text);
            let json = serde_json::to_string(&reason).unwrap();
            assert_eq!(json, serde_json::to_string(text).unwrap(), "a plain string");
        }
    }
}
