//! The memory broker: one process numbers and keeps its own messages.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use super::{Broker, Publication, Publishing, Refused, Replaying};
use crate::config::BrokerKind;
use crate::history::{History, HistoryLimits, HistoryUsage, StreamKey};
use crate::ids::Epoch;
use crate::protocol::{PendingFrame, Position};
use crate::replay::{HistoryKeeper, ReplayBudget, ResetReason};

/// Numbers and history of one process. The lock is taken once per publish
/// or resume, by `NotifyServer` only, so it is never contended; it is there
/// because a broker is shared with the HTTP handlers (`/health`).
pub struct MemoryBroker {
    epoch: Epoch,
    /// `max_replay_bytes`: most one resume may bring back.
    max_replay_bytes: usize,
    state: Mutex<State>,
}

struct State {
    /// The latest seq handed out.
    seq: u64,
    history: History,
}

impl MemoryBroker {
    /// A broker for a fresh lifetime: `epoch` must differ from every earlier
    /// lifetime's. A resume needing more than `max_replay_bytes` is refused.
    pub fn new(epoch: impl Into<Epoch>, limits: HistoryLimits, max_replay_bytes: usize) -> Self {
        Self {
            epoch: epoch.into(),
            max_replay_bytes,
            state: Mutex::new(State {
                seq: 0,
                history: History::new(limits),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere cannot leave numbers or history half-changed:
        // every update below completes without panicking.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Broker for MemoryBroker {
    fn kind(&self) -> BrokerKind {
        BrokerKind::Memory
    }

    fn epoch(&self) -> Epoch {
        self.epoch.clone()
    }

    fn publish(&self, key: StreamKey, frame: &PendingFrame) -> Publishing {
        let mut state = self.state();
        state.seq += 1;
        let seq = state.seq;
        let bytes = frame.stamp(seq);
        state
            .history
            .append(&key, seq, bytes.clone(), Instant::now());
        Publishing::Here(Publication {
            key,
            seq,
            frame: bytes,
        })
    }

    /// Refusals carry no position: the node's own, the latest seq fanned
    /// out, is this broker's latest, and a resume from it replays nothing.
    fn replay(&self, streams: &[(StreamKey, u64)], from: &Position) -> Replaying {
        if from.epoch != self.epoch {
            return Replaying::Here(Err(Refused::because(ResetReason::EpochChanged {
                keeper: HistoryKeeper::Server,
            })));
        }
        let since = from.since;
        let mut state = self.state();
        if since > state.seq {
            return Replaying::Here(Err(Refused::because(ResetReason::Ahead {
                since,
                latest: state.seq,
                keeper: HistoryKeeper::Server,
            })));
        }
        let asked = streams.iter().map(|(key, from)| (key, *from));
        let mut budget = ReplayBudget::new(self.max_replay_bytes, since);
        let result = state
            .history
            .replay(asked, since, Instant::now(), &mut budget)
            .map_err(Refused::because);
        Replaying::Here(result)
    }

    fn expire(&self, now: Instant) {
        self.state().history.expire(now);
    }

    fn usage(&self) -> HistoryUsage {
        self.state().history.usage()
    }
}
