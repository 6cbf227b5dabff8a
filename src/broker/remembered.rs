//! The idempotency keys the memory broker remembers: each with the seq of
//! the publish that used it first, for the window
//! (`idempotency_window_secs`), at most `idempotency_max_keys` of them.
//!
//! Every key is remembered for the same window from the moment it is
//! first used, so the order keys were remembered in is the order they
//! expire in: one queue serves both for dropping expired keys (from its
//! front, before each look-up and once a second) and for forgetting the
//! oldest when over the bound (counted as evictions). Memory is therefore
//! bounded by the number of keys, whatever the window.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use super::Remembering;
use crate::idempotency::ScopedKey;

pub(super) struct Remembered {
    remembering: Option<Remembering>,
    /// Each remembered key: the seq its first publish got, and when it is
    /// forgotten.
    seqs: HashMap<ScopedKey, (u64, Instant)>,
    /// The same keys, oldest first.
    order: VecDeque<ScopedKey>,
}

impl Remembered {
    /// Remembers nothing: every publish is new.
    pub(super) fn off() -> Self {
        Self {
            remembering: None,
            seqs: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    /// Remembers keys within `remembering`'s limits (nothing with a zero
    /// window).
    pub(super) fn new(remembering: Remembering) -> Self {
        Self {
            remembering: remembering.limits.enabled().then_some(remembering),
            ..Self::off()
        }
    }

    /// The seq of the publish that used `key` first, if it is remembered
    /// at `now`.
    pub(super) fn recall(&mut self, key: &ScopedKey, now: Instant) -> Option<u64> {
        self.expire(now);
        self.seqs.get(key).map(|(seq, _)| *seq)
    }

    /// Remembers `key` as used first by publish `seq` at `now`, forgetting
    /// the oldest keys past the bound. Call after [`Remembered::recall`]
    /// found nothing.
    pub(super) fn remember(&mut self, key: ScopedKey, seq: u64, now: Instant) {
        let Some(remembering) = &self.remembering else {
            return;
        };
        let until = now + remembering.limits.window;
        match self.seqs.entry(key) {
            Entry::Occupied(_) => return,
            Entry::Vacant(slot) => {
                self.order.push_back(slot.key().clone());
                slot.insert((seq, until));
            }
        }
        while self.seqs.len() > remembering.limits.max_keys {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            self.seqs.remove(&oldest);
            remembering.evictions.inc();
        }
    }

    /// Forgets the keys whose window ended by `now`.
    pub(super) fn expire(&mut self, now: Instant) {
        while let Some(oldest) = self.order.front() {
            match self.seqs.get(oldest) {
                Some((_, until)) if *until > now => break,
                _ => {
                    if let Some(oldest) = self.order.pop_front() {
                        self.seqs.remove(&oldest);
                    }
                }
            }
        }
    }

    /// Keys remembered now.
    pub(super) fn len(&self) -> usize {
        self.seqs.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use prometheus::IntCounter;

    use super::*;
    use crate::idempotency::{IdempotencyKey, IdempotencyLimits};

    fn key(name: &str) -> ScopedKey {
        IdempotencyKey::parse(name).unwrap().scoped("-")
    }

    fn remembered(window_secs: u64, max_keys: usize) -> (Remembered, IntCounter) {
        let evictions = IntCounter::new("evictions", "test").unwrap();
        let limits = IdempotencyLimits {
            window: Duration::from_secs(window_secs),
            max_keys,
        };
        let remembered = Remembered::new(Remembering {
            limits,
            evictions: evictions.clone(),
        });
        (remembered, evictions)
    }

    #[test]
    fn a_key_is_recalled_within_its_window_only() {
        let (mut keys, _) = remembered(10, 100);
        let t0 = Instant::now();
        assert_eq!(keys.recall(&key("a"), t0), None);
        keys.remember(key("a"), 7, t0);
        assert_eq!(keys.recall(&key("a"), t0 + Duration::from_secs(9)), Some(7));
        assert_eq!(keys.recall(&key("b"), t0), None);
        assert_eq!(keys.recall(&key("a"), t0 + Duration::from_secs(10)), None);
        assert_eq!(keys.len(), 0);
        // Used again after its window: a new publish, remembered anew.
        keys.remember(key("a"), 9, t0 + Duration::from_secs(10));
        assert_eq!(
            keys.recall(&key("a"), t0 + Duration::from_secs(11)),
            Some(9)
        );
    }

    #[test]
    fn past_the_bound_the_oldest_keys_are_forgotten_and_counted() {
        let (mut keys, evictions) = remembered(60, 2);
        let t0 = Instant::now();
        for (i, name) in ["a", "b", "c"].into_iter().enumerate() {
            keys.remember(key(name), i as u64 + 1, t0 + Duration::from_secs(i as u64));
        }
        assert_eq!(keys.len(), 2);
        assert_eq!(evictions.get(), 1);
        let later = t0 + Duration::from_secs(5);
        assert_eq!(keys.recall(&key("a"), later), None);
        assert_eq!(keys.recall(&key("b"), later), Some(2));
        assert_eq!(keys.recall(&key("c"), later), Some(3));
        // Expired keys go without counting as evictions.
        keys.expire(t0 + Duration::from_secs(100));
        assert_eq!((keys.len(), evictions.get()), (0, 1));
    }

    #[test]
    fn a_zero_window_remembers_nothing() {
        let (mut keys, _) = remembered(0, 10);
        let t0 = Instant::now();
        keys.remember(key("a"), 1, t0);
        assert_eq!(keys.recall(&key("a"), t0), None);
        assert_eq!(keys.len(), 0);
    }
}
