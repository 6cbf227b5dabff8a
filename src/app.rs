//! Builds and binds herald: one `NotifyServer`, then the HTTP server around it.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use std::time::Instant;

use actix::{Actor, Addr};
use actix_web::dev::Server;
use actix_web::middleware::{from_fn, DefaultHeaders};
use actix_web::{web, App, HttpServer};

use crate::auth::{self, KeyAuth, OriginPolicy, PublisherAuth};
use crate::broker;
use crate::client_addr::TrustedProxies;
use crate::config::{BrokerKind, Config};
use crate::fd_limit;
use crate::host::HostPolicy;
use crate::hub::admission::Admission;
use crate::hub::messages::Shutdown;
use crate::hub::session::SessionSettings;
use crate::hub::NotifyServer;
use crate::limits::ConnectionLimiter;
use crate::metrics::Metrics;
use crate::routes::ready::Draining;
use crate::routes::{self, AppState, Shared};
use crate::tcp::TcpAdmission;
use crate::token::TokenVerifier;

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

/// SIGTERM and SIGINT (Ctrl-C), listened for from before the server
/// accepts its first connection, so that a stop signal is never taken by
/// the default action (death with no goodbye to clients). On other systems
/// than Unix, Ctrl-C only.
struct StopSignals {
    #[cfg(unix)]
    term: Option<actix_web::rt::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<actix_web::rt::signal::unix::Signal>,
}

impl StopSignals {
    fn listen() -> Self {
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

/// Pending connections the kernel queues before herald accepts them. The
/// standard library's 128 drops SYNs when clients connect in bursts (a
/// reconnect storm), and each dropped SYN costs that client a 1-second
/// retransmit.
const LISTEN_BACKLOG: i32 = 4096;

/// Binds `host:port` with address reuse and a deep accept queue.
fn listen(host: &str, port: u16) -> std::io::Result<TcpListener> {
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
fn descriptor_budget(config: &Config) -> Result<fd_limit::DescriptorBudget, StartError> {
    let limits = match fd_limit::raise_soft_limit() {
        Ok(limits) => {
            if limits.soft > limits.soft_before {
                log::info!(
                    "open-file limit raised from {} to {}",
                    limits.soft_before,
                    limits.soft
                );
            }
            limits
        }
        Err(e) => {
            log::warn!("cannot raise the open-file limit: {e}");
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
        log::warn!("{warning}");
    }
    Ok(budget)
}

impl Application {
    /// Binds the listener and prepares the server. Must run inside an actix
    /// system (`#[actix_web::main]`, `#[actix_web::test]`), which hosts the
    /// `NotifyServer` actor. With `port = 0` the OS picks a free port;
    /// [`Application::port`] tells which. Raises the process's soft
    /// open-file limit to its hard limit ([`fd_limit`]).
    pub async fn build(config: Config) -> Result<Self, StartError> {
        config.validate().map_err(StartError::Config)?;
        let descriptors = descriptor_budget(&config)?;
        let console_page = if !config.console {
            None
        } else if config.console_template.as_os_str().is_empty() {
            Some(bytes::Bytes::from_static(crate::assets::CONSOLE_PAGE))
        } else {
            let page =
                std::fs::read(&config.console_template).map_err(|source| StartError::Console {
                    path: config.console_template.clone(),
                    source,
                })?;
            Some(page.into())
        };
        let addr = format!("{}:{}", config.host, config.port);
        let bind_error = |source| StartError::Bind {
            addr: addr.clone(),
            source,
        };
        let listener = listen(&config.host, config.port).map_err(bind_error)?;
        let local = listener.local_addr().map_err(bind_error)?;

        let tokens = if config.client_secret.is_empty() {
            None
        } else {
            Some(
                TokenVerifier::new(&config.client_secret, &config.token_audience)
                    .map_err(StartError::Token)?,
            )
        };

        let broker = broker::from_config(&config)
            .await
            .map_err(StartError::Broker)?;
        if broker.kind() == BrokerKind::Redis {
            log::info!(
                "broker: redis at {}",
                crate::config::redact_url_password(&config.broker.url)
            );
        }
        let unused = config.broker.unused_settings();
        if !unused.is_empty() {
            log::warn!(
                "broker.kind is \"memory\", which ignores {}: this node works alone; \
                 for a node of a cluster on Redis set broker.kind = \"redis\" \
                 (HERALD_BROKER__KIND=redis)",
                unused.join(", ")
            );
        }
        let metrics = Arc::new(Metrics::new());
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
        let shared = Arc::new(Shared {
            console_page,
            max_message_bytes: config.max_message_bytes,
            session_settings: Arc::new(SessionSettings {
                heartbeat_interval: config.heartbeat_interval(),
                client_timeout: config.client_timeout(),
                max_frame_bytes: config.max_frame_bytes,
                max_pending_messages: config.max_pending_messages,
                max_channels: config.max_channels_per_session,
                frames_per_sec: config.max_client_frames_per_sec,
                admission: Admission {
                    private_prefix: config.private_channel_prefix.clone(),
                    tokens,
                    require_token: config.require_token,
                },
                metrics: metrics.clone(),
            }),
            publishers: PublisherAuth::publishers(&config.publish_keys, config.trust_loopback),
            admins: KeyAuth::admins(&config.admin_keys, config.trust_loopback),
            metrics: metrics.clone(),
            origins: OriginPolicy::new(&config.allowed_origins),
            connections: ConnectionLimiter::new(
                config.max_connections,
                config.max_connections_per_ip,
                config.ipv6_limit_prefix_len,
            ),
            proxies: proxies.clone(),
            draining: draining.clone(),
            broker: broker.clone(),
            poll_timeout_secs: config.poll_timeout_secs,
            started_at: Instant::now(),
        });
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
        if echo_route {
            log::warn!(
                "echo_route is on: /echo sends back every message (for compliance tests only)"
            );
        }
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
        let hosts = web::Data::new(HostPolicy::new(&config.allowed_hosts));
        if config.allowed_hosts.iter().any(|h| h == "*") {
            log::warn!(
                "allowed_hosts has \"*\": herald answers to any Host name, so a page on a \
                 rebound DNS name can read /stats, /metrics and /poll from this machine"
            );
        }
        let mut server = HttpServer::new(move || {
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
                .app_data(hosts.clone())
                .configure(routes::configure(static_dir.clone(), echo_route))
                .default_service(web::to(routes::not_found))
                // Around every route: no route, file or upgrade runs for a Host
                // herald does not answer to.
                .wrap(from_fn(routes::host::check_host))
                // Outermost of all, refusals included: every answer is
                // exactly what its Content-Type says, so a browser never
                // sniffs a JSON error or a client file into something it
                // would run.
                .wrap(DefaultHeaders::new().add(("X-Content-Type-Options", "nosniff")))
        })
        // Every accepted connection counts against the TCP caps, and is
        // shut down at once over them.
        .on_connect(move |io, extensions| admission.on_connect(io, extensions))
        // Not-yet-upgraded connections: the first request's head must come
        // within this, and an idle keep-alive connection closes after this.
        .client_request_timeout(config.request_head_timeout())
        .keep_alive(config.keep_alive_timeout())
        // Accepting stops before the descriptors run out (fd_limit).
        .max_connections(descriptors.accept_limit_per_worker)
        .listen(listener)
        .map_err(bind_error)?;
        if config.workers > 0 {
            server = server.workers(config.workers);
        }
        // herald handles the signals itself, to say goodbye to clients first.
        server = server
            .disable_signals()
            .shutdown_timeout(config.shutdown_timeout_secs);
        if let Some(warning) = auth::keyless_exposure_warning(
            &config.host,
            config.trust_loopback,
            &config.publish_keys,
            &config.admin_keys,
        ) {
            log::warn!("{warning}");
        }
        if !proxies.is_empty() {
            log::info!(
                "trusted proxies: {}; their X-Forwarded-For or Forwarded header names the client",
                config.trusted_proxies.join(", ")
            );
        }
        for warning in proxies.warnings() {
            log::warn!("{warning}");
        }
        if proxies.covers_loopback() && config.trust_loopback {
            let keyless: Vec<&str> = [
                (
                    config.publish_keys.is_empty(),
                    "publishing (set publish_keys)",
                ),
                (
                    config.admin_keys.is_empty(),
                    "/metrics and /stats (set admin_keys)",
                ),
            ]
            .into_iter()
            .filter_map(|(empty, what)| empty.then_some(what))
            .collect();
            if !keyless.is_empty() {
                log::warn!(
                    "trusted_proxies covers a loopback address: peers there are proxies, never \
                     local, so keyless {} from this machine is refused",
                    keyless.join(" and ")
                );
            }
        }
        log::info!("herald listening on http://{local}");
        if config.publish_keys.is_empty() {
            if config.trust_loopback {
                log::info!(
                    "no publish_keys configured: publishing is accepted from this machine only"
                );
            } else {
                log::warn!(
                    "no publish_keys configured and trust_loopback = false: nobody can publish"
                );
            }
        }
        let signals = StopSignals::listen();
        Ok(Self {
            port: local.port(),
            signals,
            server: server.run(),
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
            log::info!(
                "draining: /ready answers 503; serving on for {} ms before closing",
                self.shutdown_drain.as_millis()
            );
            let drained = actix_web::rt::time::sleep(self.shutdown_drain);
            let again = self.signals.recv();
            if let futures_util::future::Either::Right(_) =
                futures_util::future::select(Box::pin(drained), Box::pin(again)).await
            {
                log::info!("second stop signal: ending the drain early");
            }
        }
        log::info!("shutting down: closing sessions, finishing requests");
        if let Some(notify_server) = self.notify_server.get() {
            if let Ok(sessions) = notify_server.send(Shutdown).await {
                log::info!("asked {sessions} sessions to close");
            }
        }
        let stopped = handle.stop(true);
        if actix_web::rt::time::timeout(self.shutdown_timeout, stopped)
            .await
            .is_err()
        {
            log::warn!("shutdown timeout reached; exiting with connections still open");
        }
        server.abort();
        log::info!("stopped");
        Ok(())
    }
}
