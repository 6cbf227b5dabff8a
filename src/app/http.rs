//! The HTTP server: actix-server accepts on herald's listener and runs
//! actix-http's HTTP/1 service on each connection, with the app behind it,
//! as actix-web's `HttpServer` would; herald builds it itself so that
//! connections asking to upgrade are handed over to [`super::upgraded`]
//! rather than kept in the dispatcher for their whole life.

use std::net::TcpListener;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix_http::body::MessageBody;
use actix_http::HttpService;
use actix_service::IntoServiceFactory;
use actix_web::dev::{
    fn_factory, fn_service, AppConfig, Extensions, Server, ServiceFactory, ServiceRequest,
    ServiceResponse,
};
use actix_web::rt::net::TcpStream;
use actix_web::App;

use super::upgraded;
use crate::tcp::TcpAdmission;

/// How long a client may take to close its side once herald has closed
/// its own (actix-web's default).
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// What the HTTP server takes from the config.
pub(super) struct HttpSettings {
    /// Worker threads; 0 for one per core.
    pub workers: usize,
    /// Connections each worker serves at once; it stops accepting past it.
    pub max_connections_per_worker: usize,
    /// The first request's head must come within this.
    pub request_head_timeout: Duration,
    /// An idle keep-alive connection closes after this.
    pub keep_alive: Duration,
    /// How long a graceful stop waits for connections.
    pub shutdown_timeout_secs: u64,
}

/// The server, not yet running: `make_app` builds the app, once per worker
/// for requests and once per worker for upgrade requests; `admission` sees
/// every accepted connection first.
pub(super) fn server<F, T, B>(
    listener: TcpListener,
    make_app: F,
    admission: Arc<TcpAdmission>,
    settings: &HttpSettings,
) -> std::io::Result<Server>
where
    F: Fn() -> App<T> + Send + Clone + 'static,
    T: ServiceFactory<
            ServiceRequest,
            Config = (),
            Response = ServiceResponse<B>,
            Error = actix_web::Error,
            InitError = (),
        > + 'static,
    B: MessageBody + 'static,
{
    let local = listener.local_addr()?;
    let mut builder = Server::build()
        .max_concurrent_connections(settings.max_connections_per_worker)
        // herald handles the signals itself, to say goodbye to clients first.
        .disable_signals()
        .shutdown_timeout(settings.shutdown_timeout_secs);
    if settings.workers > 0 {
        builder = builder.workers(settings.workers);
    }
    let graceful = builder.graceful_shutdown_signal();
    let request_head_timeout = settings.request_head_timeout;
    let keep_alive = settings.keep_alive;
    // No route reads the host or address of the app's config (they serve
    // URL generation, which herald does not use): the default stands.
    let config = AppConfig::default;
    builder
        .listen("herald", listener, move || {
            let graceful = graceful.clone();
            let admission = admission.clone();
            let upgrade_app = make_app.clone();
            let upgrade = fn_factory(move || {
                let app = upgrade_app().into_factory().new_service(config());
                async move {
                    // Shared by the service's clones.
                    let app = Rc::new(app.await?);
                    Ok::<_, ()>(fn_service(move |(req, framed)| {
                        // Boxed: inline, it would size every connection's
                        // task, upgraded or not.
                        Box::pin(upgraded::serve(app.as_ref(), req, framed))
                    }))
                }
            });
            HttpService::<TcpStream, _, B>::build()
                .keep_alive(keep_alive)
                .client_request_timeout(request_head_timeout)
                .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
                .local_addr(local)
                .graceful_shutdown_signal(move || {
                    let graceful = graceful.clone();
                    async move { graceful.notified().await }
                })
                // Every accepted connection counts against the TCP caps,
                // and is shut down at once over them.
                .on_connect_ext(move |io: &TcpStream, extensions: &mut Extensions| {
                    admission.on_connect(io, extensions)
                })
                .upgrade(upgrade)
                .h1(actix_service::map_config(
                    make_app().into_factory(),
                    move |_| config(),
                ))
                .tcp()
        })
        .map(|builder| builder.run())
}
