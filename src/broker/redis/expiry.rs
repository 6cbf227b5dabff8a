//! How long Redis keeps what herald writes, from `history_ttl_secs`: the
//! streams, the clock and the expired mark (see the broker's module
//! header).

use std::time::Duration;

/// Buckets of the clock per `history_ttl_secs`: how finely it tells when a
/// message expired (a sixteenth of the TTL) against how many entries it
/// holds (at most this many plus two).
pub(super) const CLOCK_BUCKETS: u64 = 16;

/// How long Redis keeps what herald writes, from `history_ttl_secs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Expiry {
    /// A bucket of the clock, in ms: `history_ttl_secs / CLOCK_BUCKETS`,
    /// at least 1.
    pub(super) bucket_ms: u64,
    /// How long a stream, the clock and the expired mark live after the
    /// last publish to them: `history_ttl_secs` plus one bucket, so that a
    /// message is never taken for expired before it is `history_ttl_secs`
    /// old, and is after at most `keep_ms`.
    pub(super) keep_ms: u64,
}

/// The longest TTL Redis is given: ten years. Lua writes numbers past
/// 10^14 in exponent form, which Redis would refuse as a duration.
const MAX_TTL_MS: u64 = 10 * 365 * 24 * 3600 * 1000;

impl Expiry {
    pub(super) fn new(ttl: Duration) -> Self {
        let ttl_ms = u64::try_from(ttl.as_millis())
            .unwrap_or(MAX_TTL_MS)
            .min(MAX_TTL_MS);
        let bucket_ms = (ttl_ms / CLOCK_BUCKETS).max(1);
        Self {
            bucket_ms,
            keep_ms: ttl_ms.saturating_add(bucket_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_follows_the_ttl_by_a_sixteenth_and_stays_a_plain_integer() {
        let e = Expiry::new(Duration::from_secs(300));
        assert_eq!((e.bucket_ms, e.keep_ms), (18_750, 318_750));
        let e = Expiry::new(Duration::ZERO);
        assert_eq!((e.bucket_ms, e.keep_ms), (1, 1));
        let e = Expiry::new(Duration::from_secs(u64::MAX));
        assert!(e.keep_ms < 100_000_000_000_000, "{e:?}");
    }
}
