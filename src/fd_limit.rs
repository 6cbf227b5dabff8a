//! The open-file limit. Every TCP connection is a descriptor; once the
//! process has none left, accept(2) fails with EMFILE, the server stops
//! accepting for half a second at a time and every new client waits. So at
//! startup herald raises its soft limit to the hard one (a plain systemd
//! service starts at 1024), keeps `max_tcp_connections` within what that
//! allows (lowering it, with one warning, when it does not fit), and tells
//! actix to stop accepting before the descriptors run out.

use std::io;

/// Descriptors herald keeps for itself whatever its connections: standard
/// streams, the listener, the accept loop, Redis connections, files being
/// served (about 20 with two workers, measured through `/proc/<pid>/fd`).
const RESERVED_FDS: u64 = 64;
/// More descriptors kept per worker thread (its event loop and wake-ups).
const RESERVED_FDS_PER_WORKER: u64 = 8;
/// Of the descriptors left for connections, one in this many, up to
/// [`MAX_REFUSAL_FDS`], is kept for connections over `max_tcp_connections`:
/// they are accepted only to be closed at once, and need a descriptor for
/// that moment.
const REFUSAL_SHARE: u64 = 8;
/// Most descriptors kept for refusing: refusals last an instant, so a few
/// thousand cover any burst.
const MAX_REFUSAL_FDS: u64 = 4096;
/// Fewest connections worth running with.
const MIN_CONNECTIONS: u64 = 16;

/// The open-file limits of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileLimits {
    /// The soft limit before herald raised it.
    pub soft_before: u64,
    /// The soft limit in force.
    pub soft: u64,
    /// The hard limit: the most an unprivileged process may raise to.
    pub hard: u64,
}

/// The limits as they are, unchanged.
#[cfg(unix)]
pub fn current() -> io::Result<FileLimits> {
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    Ok(FileLimits {
        soft_before: soft,
        soft,
        hard,
    })
}

/// Raises the soft open-file limit to the hard one, as far as the system
/// allows, and reports both.
#[cfg(unix)]
pub fn raise_soft_limit() -> io::Result<FileLimits> {
    let (soft_before, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE)?;
    let soft = rlimit::increase_nofile_limit(u64::MAX)?;
    Ok(FileLimits {
        soft_before,
        soft: soft.max(soft_before),
        hard,
    })
}

/// Systems without Unix resource limits (Windows) have no open-file limit
/// to read or raise: the caps apply as configured.
#[cfg(not(unix))]
pub fn current() -> io::Result<FileLimits> {
    Ok(FileLimits {
        soft_before: u64::MAX,
        soft: u64::MAX,
        hard: u64::MAX,
    })
}

/// Nothing to raise on this system.
#[cfg(not(unix))]
pub fn raise_soft_limit() -> io::Result<FileLimits> {
    current()
}

/// How many connections herald lets in, given its descriptors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorBudget {
    /// `max_tcp_connections` as it applies: as configured, or lowered to
    /// fit the open-file limit.
    pub max_tcp_connections: usize,
    /// Connections each worker may hold before actix stops accepting
    /// (actix-server's `max_concurrent_connections`). Together they stay
    /// within the descriptors left for connections, so accept never fails
    /// for want of one: connections past it wait in the kernel's queue.
    pub accept_limit_per_worker: usize,
    /// Why `max_tcp_connections` was lowered and what to change, when it
    /// was.
    pub warning: Option<String>,
}

/// Fits `max_tcp_connections` into the soft limit `limits.soft`, with
/// `workers` worker threads; `max_connections` only shapes the warning.
/// Fails when the limit leaves almost no room for connections.
pub fn budget(
    limits: FileLimits,
    max_tcp_connections: usize,
    max_connections: usize,
    workers: usize,
) -> Result<DescriptorBudget, String> {
    let workers = workers.max(1) as u64;
    let reserve = RESERVED_FDS + RESERVED_FDS_PER_WORKER * workers;
    let room = limits.soft.saturating_sub(reserve);
    let fit = room - refusal_room(room);
    let (soft, hard) = (limits.soft, limits.hard);
    if fit < MIN_CONNECTIONS {
        return Err(format!(
            "the open-file limit is {soft} (hard limit {hard}): herald needs {reserve} \
             descriptors for itself and at least {MIN_CONNECTIONS} more for connections; \
             raise it (LimitNOFILE= in the systemd unit, ulimit -n)"
        ));
    }
    let configured = max_tcp_connections as u64;
    let warning = (configured > fit).then(|| {
        let needed = reserve + room_needed(configured);
        let sessions = if (max_connections as u64) > fit {
            format!("; max_connections ({max_connections}) cannot be reached")
        } else {
            String::new()
        };
        format!(
            "the open-file limit is {soft} (hard limit {hard}), room for {fit} connections: \
             max_tcp_connections lowered from {configured} to {fit}{sessions}. To allow \
             {configured}, raise the limit to at least {needed} (LimitNOFILE={needed} in the \
             systemd unit, ulimit -n {needed}, docker run --ulimit nofile={needed}), or lower \
             max_tcp_connections"
        )
    });
    let to_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    Ok(DescriptorBudget {
        max_tcp_connections: to_usize(configured.min(fit)),
        accept_limit_per_worker: to_usize(room.div_ceil(workers)),
        warning,
    })
}

/// Descriptors kept for refusing, out of `room` for connections.
fn refusal_room(room: u64) -> u64 {
    (room / REFUSAL_SHARE).min(MAX_REFUSAL_FDS)
}

/// The least room `r` with `r - refusal_room(r) >= connections`.
fn room_needed(connections: u64) -> u64 {
    // While the share is under its cap: the least r with r - r / 8 >= c.
    let within_share = connections + connections.saturating_sub(1) / (REFUSAL_SHARE - 1);
    if within_share / REFUSAL_SHARE <= MAX_REFUSAL_FDS {
        within_share
    } else {
        connections + MAX_REFUSAL_FDS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(soft: u64, hard: u64) -> FileLimits {
        FileLimits {
            soft_before: soft,
            soft,
            hard,
        }
    }

    #[test]
    fn a_cap_that_fits_is_kept() {
        let plan = budget(limits(524_288, 524_288), 12_000, 10_000, 2).unwrap();
        assert_eq!(plan.max_tcp_connections, 12_000);
        assert_eq!(plan.warning, None);
        // Accepting stops only when the descriptors for connections are used.
        assert_eq!(plan.accept_limit_per_worker, (524_288 - 80) / 2);
    }

    #[test]
    fn a_cap_over_the_limit_is_lowered_with_what_to_change() {
        // 1024 descriptors, 2 workers: 80 reserved, 944 for connections, of
        // which 118 are kept for refusing.
        let plan = budget(limits(1024, 1024), 12_000, 10_000, 2).unwrap();
        assert_eq!(plan.max_tcp_connections, 826);
        assert_eq!(plan.accept_limit_per_worker, 472);
        let warning = plan.warning.unwrap();
        for part in [
            "1024",
            "lowered from 12000 to 826",
            "max_connections (10000) cannot be reached",
            "LimitNOFILE=13794",
        ] {
            assert!(warning.contains(part), "{part} in {warning}");
        }
        // The limit it names is just enough.
        let enough = budget(limits(13_794, 13_794), 12_000, 10_000, 2).unwrap();
        assert_eq!((enough.max_tcp_connections, enough.warning), (12_000, None));
        let short = budget(limits(13_793, 13_793), 12_000, 10_000, 2).unwrap();
        assert!(short.warning.is_some());
    }

    #[test]
    fn the_room_named_is_the_least_that_fits() {
        for connections in [1, 7, 8, 9, 826, 12_000, 28_000, 28_700, 30_000, 200_000] {
            let needed = room_needed(connections);
            assert!(
                needed - refusal_room(needed) >= connections,
                "{connections}"
            );
            let less = needed - 1;
            assert!(less - refusal_room(less) < connections, "{connections}");
        }
        // Large limits keep at most MAX_REFUSAL_FDS for refusing.
        let plan = budget(limits(1_048_576, 1_048_576), 200_000, 200_000, 2).unwrap();
        assert_eq!(plan.max_tcp_connections, 200_000);
        let plan = budget(limits(1_048_576, 1_048_576), 2_000_000, 200_000, 2).unwrap();
        assert_eq!(plan.max_tcp_connections, 1_048_576 - 80 - 4096);
    }

    #[test]
    fn a_limit_with_no_room_for_connections_is_an_error() {
        let err = budget(limits(64, 64), 12_000, 10_000, 2).unwrap_err();
        assert!(err.contains("open-file limit is 64"), "{err}");
    }
}
