//! What one resume may cost: the replay budget (`max_replay_bytes`).
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
}
