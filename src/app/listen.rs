//! The listening socket and the descriptors it may use: bound before the
//! server starts, so tests can ask for port 0 and read the port back.

use std::net::TcpListener;

use super::StartError;
use crate::config::Config;
use crate::fd_limit;

/// Pending connections the kernel queues before herald accepts them. The
/// standard library's 128 drops SYNs when clients connect in bursts (a
/// reconnect storm), and each dropped SYN costs that client a 1-second
/// retransmit.
const LISTEN_BACKLOG: i32 = 4096;

/// Binds `host:port` with address reuse and a deep accept queue.
pub(super) fn listen(host: &str, port: u16) -> std::io::Result<TcpListener> {
    use std::net::ToSocketAddrs;
    let addr = (host, port)
        .to_socket_addrs()?
        .next()
        .ok_or_else(|| std::io::Error::other(format!("{host} resolves to no address")))?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Worker threads: as configured, or one per core as actix counts them.
fn worker_count(config: &Config) -> usize {
    if config.workers > 0 {
        config.workers
    } else {
        std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
    }
}

/// Raises the open-file limit and fits `max_tcp_connections` into it,
/// logging what changed.
pub(super) fn descriptor_budget(config: &Config) -> Result<fd_limit::DescriptorBudget, StartError> {
    let limits = match fd_limit::raise_soft_limit() {
        Ok(limits) => {
            if limits.soft > limits.soft_before {
                log::info!(target: super::LOG_TARGET,
                    "open-file limit raised from {} to {}",
                    limits.soft_before,
                    limits.soft
                );
            }
            limits
        }
        Err(e) => {
            log::warn!(target: super::LOG_TARGET, "cannot raise the open-file limit: {e}");
            fd_limit::current().map_err(|e| {
                StartError::Descriptors(format!("cannot read the open-file limit: {e}"))
            })?
        }
    };
    let budget = fd_limit::budget(
        limits,
        config.max_tcp_connections,
        config.max_connections,
        worker_count(config),
    )
    .map_err(StartError::Descriptors)?;
    if let Some(warning) = &budget.warning {
        log::warn!(target: super::LOG_TARGET, "{warning}");
    }
    Ok(budget)
}
