//! Where this node stands in the cluster: the cluster's epoch and counter
//! as it last read them, and the highest seq it has seen. A node joins the
//! cluster ([`scripts::JOIN`](super::scripts::JOIN)) when it starts, each
//! time its subscription comes back, when an announcement or a resume
//! finds the cluster's epoch is not the node's. Whichever join finds a new
//! epoch tells every session of the node, once, to resume into it
//! ([`Missed::Everything`]): their positions are of an epoch Redis lost.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};

use redis::aio::ConnectionManager;

use super::scripts;
use crate::broker::{BrokerEvents, Missed};
use crate::ids::Epoch;

/// Where this node stands in the cluster: its epoch and the counter as last
/// read. Shared by the broker, its subscription and the replays being
/// read, any of which may join the cluster again ([`Standing::join`]).
pub(super) struct Standing {
    prefix: String,
    join: redis::Script,
    /// The cluster's epoch as of the last join.
    epoch: RwLock<Epoch>,
    /// The cluster's counter as of the last join.
    pub(super) numbered_before: AtomicU64,
    /// The highest seq this node has published, received or read.
    pub(super) seen: AtomicU64,
    /// Told when the epoch changes, once the node has started.
    events: OnceLock<Arc<dyn BrokerEvents>>,
}

impl Standing {
    /// A node that has not joined yet: no epoch, nothing seen. Keys are
    /// under `prefix`.
    pub(super) fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_owned(),
            join: redis::Script::new(scripts::JOIN),
            epoch: RwLock::new(Epoch::default()),
            numbered_before: AtomicU64::new(0),
            seen: AtomicU64::new(0),
            events: OnceLock::new(),
        }
    }

    /// From now on a change of epoch is told to `events`.
    pub(super) fn start(&self, events: Arc<dyn BrokerEvents>) {
        let _ = self.events.set(events);
    }

    /// Whether `epoch` is the node's, without a copy (checked for every
    /// announcement).
    pub(super) fn is_epoch(&self, epoch: &Epoch) -> bool {
        *self.epoch.read().unwrap_or_else(PoisonError::into_inner) == *epoch
    }

    pub(super) fn epoch(&self) -> Epoch {
        // Nothing panics while the lock is held: a poisoned lock holds a
        // whole value.
        self.epoch
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Joins the cluster ([`scripts::JOIN`]), proposing `candidate` as its
    /// epoch; returns and keeps the cluster's epoch and counter. A change
    /// of epoch is told to the sessions (see the module's header).
    pub(super) async fn join(
        &self,
        con: &mut ConnectionManager,
        candidate: &Epoch,
    ) -> Result<(Epoch, u64), redis::RedisError> {
        let floor = self.seen.load(Ordering::Relaxed);
        let (epoch, seq): (String, u64) = self
            .join
            .key(format!("{}:epoch", self.prefix))
            .key(format!("{}:seq", self.prefix))
            .key(format!("{}:base", self.prefix))
            .arg(candidate.as_str())
            .arg(floor)
            .arg(self.epoch().as_str())
            .invoke_async(con)
            .await?;
        self.seen.fetch_max(seq, Ordering::Relaxed);
        self.numbered_before.fetch_max(seq, Ordering::Relaxed);
        let epoch = Epoch::from(epoch);
        let mut current = self.epoch.write().unwrap_or_else(PoisonError::into_inner);
        if *current != epoch {
            let moved = !current.as_str().is_empty();
            if moved {
                log::warn!(
                    "broker: the cluster's epoch changed from {current} to {epoch} \
                     (Redis lost its data); every session resumes"
                );
            }
            *current = epoch.clone();
            drop(current);
            if let (true, Some(events)) = (moved, self.events.get()) {
                events.missed(Missed::Everything);
            }
        }
        Ok((epoch, seq))
    }
}
