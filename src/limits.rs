//! Abuse limits that are not about routing: how many connections may be
//! open (in all and per IP address), and how fast one client may send.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::error::ApiError;

/// Counts open connections against `max_connections` and
/// `max_connections_per_ip`. Touched once per connect and once per
/// disconnect, never per message.
#[derive(Clone)]
pub struct ConnectionLimiter {
    inner: Arc<LimiterInner>,
}

struct LimiterInner {
    max_total: usize,
    max_per_ip: usize,
    open: Mutex<OpenConnections>,
}

#[derive(Default)]
struct OpenConnections {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// One admitted connection; dropping it frees its place.
pub struct ConnectionPermit {
    inner: Arc<LimiterInner>,
    ip: Option<IpAddr>,
}

impl ConnectionLimiter {
    pub fn new(max_total: usize, max_per_ip: usize) -> Self {
        Self {
            inner: Arc::new(LimiterInner {
                max_total,
                max_per_ip,
                open: Mutex::new(OpenConnections::default()),
            }),
        }
    }

    /// Admits one more connection from `ip`, or says which limit it hit.
    pub fn try_acquire(&self, ip: Option<IpAddr>) -> Result<ConnectionPermit, ApiError> {
        let mut open = self
            .inner
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if open.total >= self.inner.max_total {
            return Err(ApiError::ServerFull);
        }
        if let Some(ip) = ip {
            let count = open.per_ip.entry(ip).or_default();
            if *count >= self.inner.max_per_ip {
                return Err(ApiError::TooManyConnectionsFromIp);
            }
            *count += 1;
        }
        open.total += 1;
        Ok(ConnectionPermit {
            inner: self.inner.clone(),
            ip,
        })
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.inner
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .total
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut open = self
            .inner
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.total = open.total.saturating_sub(1);
        if let Some(ip) = self.ip {
            if let Some(count) = open.per_ip.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    open.per_ip.remove(&ip);
                }
            }
        }
    }
}

/// What to do with one client frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateVerdict {
    /// Within the limit: handle it.
    Allow,
    /// Over the limit for the first time in this burst: refuse it with an
    /// error frame.
    Warn,
    /// Over the limit again: refuse it silently.
    Drop,
    /// Still going after as many refused frames as the limit allows per
    /// second: close the session (1008).
    Close,
}

/// A token bucket of `per_sec` frames per second, bursts up to `per_sec`.
pub struct FrameRateLimiter {
    per_sec: f64,
    tokens: f64,
    last: Instant,
    /// Frames refused since the bucket was last full.
    refused: u32,
}

impl FrameRateLimiter {
    pub fn new(per_sec: u32, now: Instant) -> Self {
        Self {
            per_sec: f64::from(per_sec),
            tokens: f64::from(per_sec),
            last: now,
            refused: 0,
        }
    }

    pub fn check(&mut self, now: Instant) -> RateVerdict {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.per_sec).min(self.per_sec);
        if self.tokens >= self.per_sec {
            // Quiet long enough to refill: the client is forgiven.
            self.refused = 0;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            return RateVerdict::Allow;
        }
        self.refused += 1;
        if f64::from(self.refused) > self.per_sec {
            RateVerdict::Close
        } else if self.refused == 1 {
            RateVerdict::Warn
        } else {
            RateVerdict::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn connection_caps_in_all_and_per_ip() {
        let limiter = ConnectionLimiter::new(3, 2);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let p1 = limiter.try_acquire(Some(a)).unwrap();
        let _p2 = limiter.try_acquire(Some(a)).unwrap();
        assert!(matches!(
            limiter.try_acquire(Some(a)),
            Err(ApiError::TooManyConnectionsFromIp)
        ));
        let _p3 = limiter.try_acquire(Some(b)).unwrap();
        assert!(matches!(
            limiter.try_acquire(Some(b)),
            Err(ApiError::ServerFull)
        ));
        drop(p1);
        assert_eq!(limiter.open(), 2);
        assert!(limiter.try_acquire(Some(a)).is_ok());
    }

    #[test]
    fn a_burst_passes_then_warns_drops_and_closes() {
        let start = Instant::now();
        let mut rate = FrameRateLimiter::new(5, start);
        let verdicts: Vec<_> = (0..12).map(|_| rate.check(start)).collect();
        assert_eq!(&verdicts[..5], &[RateVerdict::Allow; 5]);
        assert_eq!(verdicts[5], RateVerdict::Warn);
        assert_eq!(&verdicts[6..10], &[RateVerdict::Drop; 4]);
        assert_eq!(verdicts[10], RateVerdict::Close);
    }

    #[test]
    fn a_quiet_second_refills_and_forgives() {
        let start = Instant::now();
        let mut rate = FrameRateLimiter::new(5, start);
        for _ in 0..8 {
            rate.check(start);
        }
        let later = start + Duration::from_secs(2);
        let verdicts: Vec<_> = (0..6).map(|_| rate.check(later)).collect();
        assert_eq!(&verdicts[..5], &[RateVerdict::Allow; 5]);
        assert_eq!(verdicts[5], RateVerdict::Warn);
    }
}
