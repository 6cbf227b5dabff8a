//! Abuse limits that are not about routing: how many connections may be
//! open (in all and per client address), and how fast one client may send.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use ipnet::Ipv6Net;

/// The unit a per-address cap counts: an IPv4 address, or the IPv6 network
/// of `ipv6_limit_prefix_len` bits around an IPv6 address. One subscriber
/// usually holds a whole /64, so counting single IPv6 addresses would let
/// one of them take any number of places. IPv4-mapped IPv6 addresses
/// (`::ffff:a.b.c.d`, as a dual-stack listener sees IPv4 peers) count as
/// their IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddressKey(IpAddr);

impl AddressKey {
    /// The key of `ip` with IPv6 addresses cut to `ipv6_prefix_len` bits
    /// (validated with the config; an impossible length keeps the whole
    /// address).
    pub fn new(ip: IpAddr, ipv6_prefix_len: u8) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => Self(IpAddr::V6(
                Ipv6Net::new(v6, ipv6_prefix_len).map_or(v6, |net| net.network()),
            )),
        }
    }
}

/// Which cap a connection ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitExceeded {
    /// The total cap (`max_connections`, `max_tcp_connections`).
    Total,
    /// The per-address cap (`max_connections_per_ip`,
    /// `max_tcp_connections_per_ip`).
    PerAddress,
}

/// Counts open connections against a total cap and a per-address cap,
/// addresses keyed by [`AddressKey`]. herald has two: sessions (WebSocket,
/// event stream, long-poll) against `max_connections` and
/// `max_connections_per_ip`, and every accepted TCP connection against
/// `max_tcp_connections` and `max_tcp_connections_per_ip`. Touched once per
/// connect and once per disconnect, never per message.
#[derive(Clone)]
pub struct ConnectionLimiter {
    inner: Arc<LimiterInner>,
}

struct LimiterInner {
    max_total: usize,
    max_per_address: usize,
    ipv6_prefix_len: u8,
    open: Mutex<OpenConnections>,
}

#[derive(Default)]
struct OpenConnections {
    total: usize,
    per_address: HashMap<AddressKey, usize>,
}

/// One admitted connection; dropping it frees its place.
pub struct ConnectionPermit {
    inner: Arc<LimiterInner>,
    key: Option<AddressKey>,
}

impl ConnectionLimiter {
    /// At most `max_total` connections, and `max_per_address` per
    /// [`AddressKey`] (IPv6 cut to `ipv6_prefix_len` bits).
    pub fn new(max_total: usize, max_per_address: usize, ipv6_prefix_len: u8) -> Self {
        Self {
            inner: Arc::new(LimiterInner {
                max_total,
                max_per_address,
                ipv6_prefix_len,
                open: Mutex::new(OpenConnections::default()),
            }),
        }
    }

    /// Admits one more connection from `ip`, or says which cap it hit. A
    /// connection without a known address counts against the total only.
    pub fn try_acquire(&self, ip: Option<IpAddr>) -> Result<ConnectionPermit, LimitExceeded> {
        let mut open = self
            .inner
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if open.total >= self.inner.max_total {
            return Err(LimitExceeded::Total);
        }
        let key = ip.map(|ip| AddressKey::new(ip, self.inner.ipv6_prefix_len));
        if let Some(key) = key {
            let count = open.per_address.entry(key).or_default();
            if *count >= self.inner.max_per_address {
                return Err(LimitExceeded::PerAddress);
            }
            *count += 1;
        }
        open.total += 1;
        Ok(ConnectionPermit {
            inner: self.inner.clone(),
            key,
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

    /// Connections open now from `ip`'s [`AddressKey`].
    pub fn open_from(&self, ip: IpAddr) -> usize {
        let key = AddressKey::new(ip, self.inner.ipv6_prefix_len);
        self.inner
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .per_address
            .get(&key)
            .copied()
            .unwrap_or(0)
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
        if let Some(key) = self.key {
            if let Some(count) = open.per_address.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    open.per_address.remove(&key);
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
        let limiter = ConnectionLimiter::new(3, 2, 64);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let p1 = limiter.try_acquire(Some(a)).unwrap();
        let _p2 = limiter.try_acquire(Some(a)).unwrap();
        assert!(matches!(
            limiter.try_acquire(Some(a)),
            Err(LimitExceeded::PerAddress)
        ));
        let _p3 = limiter.try_acquire(Some(b)).unwrap();
        assert!(matches!(
            limiter.try_acquire(Some(b)),
            Err(LimitExceeded::Total)
        ));
        drop(p1);
        assert_eq!(limiter.open(), 2);
        assert!(limiter.try_acquire(Some(a)).is_ok());
    }

    #[test]
    fn ipv6_addresses_in_one_slash_64_share_one_count() {
        let limiter = ConnectionLimiter::new(100, 2, 64);
        let ip = |text: &str| -> IpAddr { text.parse().unwrap() };
        let _p1 = limiter.try_acquire(Some(ip("2001:db8:1:2::1"))).unwrap();
        let _p2 = limiter
            .try_acquire(Some(ip("2001:db8:1:2:ffff:ffff:ffff:fffe")))
            .unwrap();
        // A third address of the same /64: over the cap.
        assert_eq!(
            limiter.try_acquire(Some(ip("2001:db8:1:2:abcd::9"))).err(),
            Some(LimitExceeded::PerAddress)
        );
        assert_eq!(limiter.open_from(ip("2001:db8:1:2::77")), 2);
        // The next /64 counts on its own.
        let _p3 = limiter.try_acquire(Some(ip("2001:db8:1:3::1"))).unwrap();
        assert_eq!(limiter.open_from(ip("2001:db8:1:3::2")), 1);
        // IPv4 addresses still count one by one, mapped or not.
        let _p4 = limiter.try_acquire(Some(ip("192.0.2.1"))).unwrap();
        let _p5 = limiter.try_acquire(Some(ip("::ffff:192.0.2.1"))).unwrap();
        assert_eq!(
            limiter.try_acquire(Some(ip("192.0.2.1"))).err(),
            Some(LimitExceeded::PerAddress)
        );
        assert!(limiter.try_acquire(Some(ip("192.0.2.2"))).is_ok());
    }

    #[test]
    fn the_ipv6_prefix_length_is_configurable() {
        let ip = |text: &str| -> IpAddr { text.parse().unwrap() };
        let (a, b) = (ip("2001:db8:0:1::1"), ip("2001:db8:0:2::1"));
        assert_ne!(AddressKey::new(a, 64), AddressKey::new(b, 64));
        assert_eq!(AddressKey::new(a, 48), AddressKey::new(b, 48));
        assert_ne!(
            AddressKey::new(a, 128),
            AddressKey::new(ip("2001:db8:0:1::2"), 128)
        );
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
