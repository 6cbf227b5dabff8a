//! Builds and binds herald: one `NotifyServer`, then the HTTP server around it.
//!
//! Files: this one builds and runs the server; `listen.rs` the socket and
//! the descriptors; `http.rs` the HTTP server on it; `upgraded.rs` the
//! connections that upgraded (WebSockets) once the HTTP server hands them
//! over; `state.rs` what every worker shares; `notices.rs` what herald logs
//! about its settings at startup; `shutdown.rs` the stop signals and the
//! graceful shutdown.

mod http;
mod listen;
mod notices;
mod shutdown;
mod state;
mod upgraded;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::{Actor, Addr};
use actix_web::dev::Server;
use actix_web::middleware::DefaultHeaders;
use actix_web::{web, App};

use self::shutdown::StopSignals;
use crate::broker;
use crate::client_addr::TrustedProxies;
use crate::config::Config;
use crate::host::HostPolicy;
use crate::hub::NotifyServer;
use crate::limits::ConnectionLimiter;
use crate::metrics::Metrics;
use crate::routes::ready::Draining;
use crate::routes::{self, AppState};
use crate::tcp::TcpAdmission;

/// The `target` of startup and shutdown log lines: a fixed name that log
/// collectors and `RUST_LOG` filters can rely on, whichever file under
/// `app/` writes the line.
pub const LOG_TARGET: &str = "herald::app";

/// A bound, not yet running herald.
pub struct Application {
    port: u16,
    server: Server,
    /// `NotifyServer`, once the first worker has started it.
    notify_server: Arc<OnceLock<Addr<NotifyServer>>>,
    shutdown_timeout: Duration,
    /// How long to keep serving, `/ready` at 503, before closing.
    shutdown_drain: Duration,
    /// Set at the first stop signal; `/ready` reads it.
    draining: Arc<Draining>,
    /// Listening since before the server started.
    signals: StopSignals,
}

/// Why herald could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot read the console page {path}: {source}")]
    Console {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(crate::config::ConfigError),
    #[error("{0}")]
    Token(String),
    #[error("{0}")]
    Broker(crate::broker::BrokerError),
    #[error("{0}")]
    Descriptors(String),
    #[error("the server stopped with an error: {0}")]
    Serve(std::io::Error),
}

impl Application {
    /// Binds the listener and prepares the server. Must run inside an actix
    /// system (`#[actix_web::main]`, `#[actix_web::test]`), which hosts the
    /// `NotifyServer` actor. With `port = 0` the OS picks a free port;
    /// [`Application::port`] tells which. Raises the process's soft
    /// open-file limit to its hard limit ([`crate::fd_limit`]).
    pub async fn build(config: Config) -> Result<Self, StartError> {
        config.validate().map_err(StartError::Config)?;
        let descriptors = listen::descriptor_budget(&config)?;
        let console_page = state::console_page(&config)?;
        let addr = format!("{}:{}", config.host, config.port);
        let bind_error = |source| StartError::Bind {
            addr: addr.clone(),
            source,
        };
        let listener = listen::listen(&config.host, config.port).map_err(bind_error)?;
        let local = listener.local_addr().map_err(bind_error)?;
        let tokens = state::token_verifier(&config)?;

        let metrics = Arc::new(Metrics::new());
        let broker = broker::from_config(&config, metrics.idempotency_evictions.clone())
            .await
            .map_err(StartError::Broker)?;
        notices::broker(&config, broker.kind());
        // Validated with the config.
        let proxies = TrustedProxies::parse(&config.trusted_proxies).map_err(|e| {
            StartError::Config(crate::config::ConfigError::Invalid {
                key: "trusted_proxies",
                reason: e.to_string(),
            })
        })?;
        let draining = Arc::new(Draining::default());
        let epoch = broker.epoch();
        log::info!("history epoch {epoch}");
        let shared = Arc::new(state::shared(
            &config,
            console_page,
            tokens,
            broker.clone(),
            &metrics,
            &proxies,
            &draining,
        ));
        // One `NotifyServer` for the whole process. It is started once, by
        // the first worker that runs this factory, on that worker's thread:
        // the `OnceLock` keeps every worker on the same `NotifyServer`, and
        // sharing a thread spares each publish two cross-thread wake-ups
        // (measured in BENCHMARKS.md). With one worker, routing and sockets
        // share one thread, like an event loop.
        let notify_server: Arc<OnceLock<Addr<NotifyServer>>> = Arc::new(OnceLock::new());
        let app_notify_server = notify_server.clone();
        let notify_server_metrics = metrics.clone();
        let static_dir =
            (!config.static_dir.as_os_str().is_empty()).then(|| config.static_dir.clone());
        let echo_route = config.echo_route;
        notices::routes(&config);
        let admission = TcpAdmission::new(
            ConnectionLimiter::new(
                descriptors.max_tcp_connections,
                config.max_tcp_connections_per_ip,
                config.ipv6_limit_prefix_len,
            ),
            config.client_timeout(),
            proxies.clone(),
            metrics.clone(),
        );
        let hosts = Arc::new(HostPolicy::new(&config.allowed_hosts));
        let make_app = move || {
            let server = notify_server
                .get_or_init(|| {
                    let notify_server = NotifyServer::new(broker.clone())
                        .with_metrics(notify_server_metrics.clone())
                        .start();
                    broker.start(Arc::new(notify_server.clone()));
                    notify_server
                })
                .clone();
            let state = web::Data::new(AppState {
                server,
                shared: shared.clone(),
            });
            App::new()
                .app_data(state)
                .configure(routes::configure(static_dir.clone(), echo_route))
                .default_service(web::to(routes::not_found))
                // Around every route: no route, file or upgrade runs for a Host
                // herald does not answer to.
                .wrap(routes::host::CheckHost::new(hosts.clone()))
                // Outermost of all, refusals included: every answer is
                // exactly what its Content-Type says, so a browser never
                // sniffs a JSON error or a client file into something it
                // would run.
                .wrap(DefaultHeaders::new().add(("X-Content-Type-Options", "nosniff")))
        };
        let settings = http::HttpSettings {
            workers: config.workers,
            // Accepting stops before the descriptors run out (fd_limit).
            max_connections_per_worker: descriptors.accept_limit_per_worker,
            request_head_timeout: config.request_head_timeout(),
            keep_alive: config.keep_alive_timeout(),
            shutdown_timeout_secs: config.shutdown_timeout_secs,
        };
        let server =
            http::server(listener, make_app, Arc::new(admission), &settings).map_err(bind_error)?;
        notices::exposure(&config, &proxies);
        log::info!("herald listening on http://{local}");
        notices::publishing(&config);
        let signals = StopSignals::listen();
        Ok(Self {
            port: local.port(),
            signals,
            server,
            notify_server: app_notify_server,
            shutdown_timeout: Duration::from_secs(config.shutdown_timeout_secs),
            shutdown_drain: config.shutdown_drain(),
            draining,
        })
    }

    /// The port actually bound.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until the server stops; for tests and embedders that stop it
    /// themselves.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.server.await
    }
}
