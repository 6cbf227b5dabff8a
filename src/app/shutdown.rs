//! How herald stops: on SIGTERM or Ctrl-C, `/ready` answers 503, herald
//! serves on for `shutdown_drain_ms`, then closes every session and lets
//! requests in flight finish within `shutdown_timeout_secs`.

use super::Application;
use crate::hub::messages::Shutdown;

/// SIGTERM and SIGINT (Ctrl-C), listened for from before the server
/// accepts its first connection, so that a stop signal is never taken by
/// the default action (death with no goodbye to clients). On other systems
/// than Unix, Ctrl-C only.
pub(super) struct StopSignals {
    #[cfg(unix)]
    term: Option<actix_web::rt::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<actix_web::rt::signal::unix::Signal>,
}

impl StopSignals {
    pub(super) fn listen() -> Self {
        #[cfg(unix)]
        {
            use actix_web::rt::signal::unix::{signal, SignalKind};
            Self {
                term: signal(SignalKind::terminate()).ok(),
                interrupt: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        {
            Self {}
        }
    }

    /// Resolves at the next of them.
    async fn recv(&mut self) {
        #[cfg(unix)]
        {
            async fn wait(signal: &mut Option<actix_web::rt::signal::unix::Signal>) {
                match signal {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            }
            let term = Box::pin(wait(&mut self.term));
            let interrupt = Box::pin(wait(&mut self.interrupt));
            futures_util::future::select(term, interrupt).await;
        }
        #[cfg(not(unix))]
        {
            let _ = actix_web::rt::signal::ctrl_c().await;
        }
    }
}

impl Application {
    /// Serves until SIGTERM or Ctrl-C, then shuts down gracefully: `/ready`
    /// answers 503 at once; herald goes on serving for `shutdown_drain_ms`
    /// (a second signal cuts that short) so load balancers take it out
    /// first; then it stops accepting, closes every session (WebSockets
    /// with 1001, so clients reconnect elsewhere; event streams and
    /// long-polls end) and lets requests in flight finish, within
    /// `shutdown_timeout_secs`.
    pub async fn run_until_signal(mut self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let server = actix_web::rt::spawn(self.server);
        self.signals.recv().await;
        self.draining.start();
        if !self.shutdown_drain.is_zero() {
            log::info!(target: super::LOG_TARGET,
                "draining: /ready answers 503; serving on for {} ms before closing",
                self.shutdown_drain.as_millis()
            );
            let drained = actix_web::rt::time::sleep(self.shutdown_drain);
            let again = self.signals.recv();
            if let futures_util::future::Either::Right(_) =
                futures_util::future::select(Box::pin(drained), Box::pin(again)).await
            {
                log::info!(target: super::LOG_TARGET, "second stop signal: ending the drain early");
            }
        }
        log::info!(target: super::LOG_TARGET, "shutting down: closing sessions, finishing requests");
        if let Some(notify_server) = self.notify_server.get() {
            if let Ok(sessions) = notify_server.send(Shutdown).await {
                log::info!(target: super::LOG_TARGET, "asked {sessions} sessions to close");
            }
        }
        let stopped = handle.stop(true);
        if actix_web::rt::time::timeout(self.shutdown_timeout, stopped)
            .await
            .is_err()
        {
            log::warn!(target: super::LOG_TARGET, "shutdown timeout reached; exiting with connections still open");
        }
        server.abort();
        log::info!(target: super::LOG_TARGET, "stopped");
        Ok(())
    }
}
