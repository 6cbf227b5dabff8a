//! The memory broker: one process numbers and keeps its own messages.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use futures_util::future::BoxFuture;

use super::remembered::Remembered;
use super::{Broker, Publication, Publishing, Refused, Remembering, Replaying};
use crate::config::BrokerKind;
use crate::history::{History, HistoryLimits, HistoryUsage, StreamKey};
use crate::idempotency::ScopedKey;
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
    /// Idempotency keys and the seq each was first published as.
    remembered: Remembered,
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
                remembered: Remembered::off(),
            }),
        }
    }

    /// The same broker, remembering idempotency keys as `remembering` says
    /// (without this, it remembers none).
    pub fn remembering(self, remembering: Remembering) -> Self {
        self.state().remembered = Remembered::new(remembering);
        self
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

    fn publish(
        &self,
        key: StreamKey,
        frame: &PendingFrame,
        idempotency: Option<&ScopedKey>,
    ) -> Publishing {
        let mut state = self.state();
        let now = Instant::now();
        if let Some(first) = idempotency.and_then(|k| state.remembered.recall(k, now)) {
            return Publishing::Duplicate { seq: first };
        }
        state.seq += 1;
        let seq = state.seq;
        if let Some(idempotency) = idempotency {
            state.remembered.remember(idempotency.clone(), seq, now);
        }
        let bytes = frame.stamp(seq);
        state.history.append(&key, seq, bytes.clone(), now);
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
        let mut state = self.state();
        state.history.expire(now);
        state.remembered.expire(now);
    }

    fn remembered_keys(&self) -> BoxFuture<'static, Option<usize>> {
        let held = self.state().remembered.len();
        Box::pin(std::future::ready(Some(held)))
    }

    fn usage(&self) -> HistoryUsage {
        self.state().history.usage()
    }
}
