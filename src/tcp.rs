//! Every accepted TCP connection, whatever it turns into: counted against
//! `max_tcp_connections` and `max_tcp_connections_per_ip` from accept to
//! close, and shut down at once, before a byte is read, when over either.
//!
//! The session caps (`max_connections`, `max_connections_per_ip`) count
//! only WebSockets, event streams and long-polls, and answer in JSON; they
//! cannot stop idle keep-alive connections, page loads or half-open
//! requests from taking every descriptor. These caps do, at the cost of an
//! accept and a close per refused connection; they sit above the session
//! caps so those still answer first. A connection that sends no request,
//! or idles between requests, is closed by the HTTP server's own timers
//! (`request_head_timeout_ms`, `keep_alive_timeout_ms`).
//!
//! A peer in `trusted_proxies` is exempt from `max_tcp_connections_per_ip`
//! (it still counts toward `max_tcp_connections`): it carries every client
//! behind it, and who those are is known only from each request's headers,
//! after accept. Their sessions still count per client under
//! `max_connections_per_ip`.

use std::any::Any;
use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;
use prometheus::IntGauge;

use crate::client_addr::TrustedProxies;
use crate::limits::{ConnectionLimiter, ConnectionPermit, LimitExceeded};
use crate::metrics::Metrics;

/// How often, at most, herald logs that it is refusing connections at
/// `max_tcp_connections`, in seconds.
const FULL_WARNING_EVERY_SECS: u64 = 60;

/// Admits or refuses each accepted connection; one for the whole server,
/// called on the worker that took the connection.
pub struct TcpAdmission {
    limiter: ConnectionLimiter,
    /// Set on admitted sockets as `TCP_USER_TIMEOUT`: a peer that stops
    /// reading stops the session writing to it, heartbeat included, so the
    /// kernel ends a connection whose data made no progress for this long,
    /// which frees the session and its places.
    stall_timeout: Duration,
    /// Peers exempt from the per-address cap.
    proxies: TrustedProxies,
    metrics: Arc<Metrics>,
    /// Unix second of the last "at max_tcp_connections" warning.
    last_full_warning: AtomicU64,
}

/// Held in the connection's extensions, which actix drops with the
/// connection: frees its places under both TCP caps.
struct TcpPermit {
    _permit: ConnectionPermit,
    open: IntGauge,
}

impl Drop for TcpPermit {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl TcpAdmission {
    pub fn new(
        limiter: ConnectionLimiter,
        stall_timeout: Duration,
        proxies: TrustedProxies,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            limiter,
            stall_timeout,
            proxies,
            metrics,
            last_full_warning: AtomicU64::new(0),
        }
    }

    /// For the HTTP server's `on_connect`: runs once per accepted connection,
    /// before the HTTP server reads from it.
    pub fn on_connect(&self, io: &dyn Any, extensions: &mut Extensions) {
        let Some(tcp) = io.downcast_ref::<TcpStream>() else {
            return;
        };
        let socket = socket2::SockRef::from(tcp);
        // A peer whose address cannot be read has already gone.
        let admitted = match tcp.peer_addr() {
            Ok(peer) => {
                // A trusted proxy counts toward the total only.
                let per_address = Some(peer.ip()).filter(|&ip| !self.proxies.contains(ip));
                self.limiter.try_acquire(per_address).map_err(|limit| {
                    self.refused(limit, &peer.ip().to_string());
                })
            }
            Err(_) => Err(()),
        };
        let Ok(permit) = admitted else {
            // The HTTP server then reads end-of-stream and drops the
            // connection, closing its descriptor.
            let _ = socket.shutdown(Shutdown::Both);
            return;
        };
        let open = self.metrics.tcp_connections.clone();
        open.inc();
        extensions.insert(TcpPermit {
            _permit: permit,
            open,
        });
        // Linux-only option; elsewhere the heartbeat alone ends stalled
        // connections.
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Err(e) = socket.set_tcp_user_timeout(Some(self.stall_timeout)) {
            log::debug!("cannot set TCP_USER_TIMEOUT: {e}");
        }
    }

    fn refused(&self, limit: LimitExceeded, peer: &str) {
        let setting = match limit {
            LimitExceeded::Total => "max_tcp_connections",
            LimitExceeded::PerAddress => "max_tcp_connections_per_ip",
        };
        self.metrics.tcp_refused.with_label_values(&[setting]).inc();
        log::debug!(
            event = "tcp_refused", peer = peer, limit = setting;
            "connection refused: peer={peer} limit={setting}"
        );
        if limit == LimitExceeded::Total && self.first_full_warning_in_a_while() {
            log::warn!(
                "refusing new connections: {} are open, the most max_tcp_connections allows",
                self.limiter.open()
            );
        }
    }

    fn first_full_warning_in_a_while(&self) -> bool {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let last = self.last_full_warning.load(Ordering::Relaxed);
        now >= last + FULL_WARNING_EVERY_SECS
            && self
                .last_full_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }
}
