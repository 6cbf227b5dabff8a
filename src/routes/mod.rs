//! The one route table, and the state every handler shares.
//!
//! | route          | handler                 |
//! |----------------|-------------------------|
//! | `GET /`        | [`console::page`]       |
//! | `POST /`       | [`publish::publish`]    |
//! | `GET /ws`      | [`ws::upgrade`]         |
//! | `GET /events`  | [`sse::events`], readable across origins ([`cors`]) |
//! | `GET /poll`    | [`poll::poll`], readable across origins ([`cors`]) |
//! | `GET /health`  | [`health::health`] (and `HEAD`, as `/`, `/ready`, `/static/*`) |
//! | `GET /ready`   | [`ready::ready`]        |
//! | `GET /metrics` | [`admin::metrics`]      |
//! | `GET /stats`   | [`admin::stats`]        |
//! | `GET /static/*`| [`crate::assets::serve`], or files from `static_dir` |
//! | `GET /echo`    | [`ws::echo`], only with `echo_route = true` |
//!
//! The `Host` check ([`host::CheckHost`]) wraps the whole app, in `app`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use actix::Addr;
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::from_fn;
use actix_web::{guard, web, HttpRequest, HttpResponse, ResponseError};
use bytes::Bytes;

use crate::auth::{KeyAuth, OriginPolicy, PublisherAuth};
use crate::client_addr::{ClientAddr, TrustedProxies};
use crate::error::ApiError;
use crate::hub::session::SessionSettings;
use crate::hub::NotifyServer;
use crate::limits::ConnectionLimiter;
use crate::metrics::Metrics;

pub mod admin;
pub mod console;
pub mod cors;
pub mod health;
pub mod host;
pub mod poll;
pub mod publish;
pub mod query;
pub mod ready;
pub mod sse;
pub mod ws;

/// What handlers see: `NotifyServer`'s address and the settings every worker
/// shares (reached through `Deref`, so `state.origins` reads naturally).
pub struct AppState {
    /// The process's one routing actor.
    pub server: Addr<NotifyServer>,
    pub shared: Arc<Shared>,
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.shared
    }
}

/// Settings and state common to all workers; built once in `app`.
pub struct Shared {
    /// The console page (built in, or read once at startup); `None` with
    /// `console = false`.
    pub console_page: Option<Bytes>,
    /// Largest `POST /` body, in bytes.
    pub max_message_bytes: usize,
    /// Whether publishes' idempotency keys are remembered
    /// (`idempotency_window_secs` above 0).
    pub remember_idempotency_keys: bool,
    /// Rules every session enforces, whatever its transport.
    pub session_settings: Arc<SessionSettings>,
    /// Who may publish.
    pub publishers: PublisherAuth,
    /// Who may read `/metrics` and `/stats`.
    pub admins: KeyAuth,
    pub metrics: Arc<Metrics>,
    /// Which web pages may open WebSockets, POST, and read `/events` and
    /// `/poll` across origins.
    pub origins: OriginPolicy,
    /// `max_connections` and `max_connections_per_ip`.
    pub connections: ConnectionLimiter,
    /// `trusted_proxies`: whose forwarding headers name the client.
    pub proxies: TrustedProxies,
    /// Set from the first stop signal: `/ready` answers 503.
    pub draining: Arc<ready::Draining>,
    /// The broker `NotifyServer` publishes through, for its state in
    /// `/health` and `/metrics`.
    pub broker: Arc<dyn crate::broker::Broker>,
    /// How long `GET /poll` waits for a message.
    pub poll_timeout_secs: u64,
    /// When the process started, for `/health`.
    pub started_at: Instant,
}

impl Shared {
    /// Who `req` came from: the one place routes learn a client's address
    /// (for the per-address cap, logs and loopback trust).
    pub fn client_addr(&self, req: &HttpRequest) -> Option<ClientAddr> {
        self.proxies.resolve(req.peer_addr(), req.headers())
    }

    /// The request's TCP peer unless it is a trusted proxy: the only
    /// address keyless loopback trust may look at, since a proxy's
    /// requests come from elsewhere whatever its own address.
    pub fn direct_peer(&self, req: &HttpRequest) -> Option<IpAddr> {
        self.client_addr(req)
            .and_then(|client| client.direct_peer())
    }
}

/// Registers every route. `/static/` serves `static_dir` when given, else
/// the files compiled into herald.
pub fn configure(static_dir: Option<PathBuf>, echo: bool) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg| {
        if echo {
            cfg.service(
                web::resource("/echo")
                    .route(on(GET).to(ws::echo))
                    .default_service(not_allowed("GET")),
            );
        }
        cfg.service(
            web::resource("/")
                .route(on(POST).to(publish::publish))
                .route(on(GET_OR_HEAD).to(console::page))
                .default_service(not_allowed("GET, HEAD, POST")),
        )
        .service(
            web::resource("/ws")
                .route(on(GET).to(ws::upgrade))
                .default_service(not_allowed("GET")),
        )
        .service(
            web::resource("/events")
                .route(on(GET).to(sse::events))
                .default_service(not_allowed("GET"))
                .wrap(from_fn(cors::cross_origin)),
        )
        .service(
            web::resource("/poll")
                .route(on(GET).to(poll::poll))
                .default_service(not_allowed("GET"))
                .wrap(from_fn(cors::cross_origin)),
        )
        .service(
            web::resource("/metrics")
                .route(on(GET).to(admin::metrics))
                .default_service(not_allowed("GET")),
        )
        .service(
            web::resource("/stats")
                .route(on(GET).to(admin::stats))
                .default_service(not_allowed("GET")),
        )
        .service(
            web::resource("/health")
                .route(on(GET_OR_HEAD).to(health::health))
                .default_service(not_allowed("GET, HEAD")),
        )
        .service(
            web::resource("/ready")
                .route(on(GET_OR_HEAD).to(ready::ready))
                .default_service(not_allowed("GET, HEAD")),
        );
        match static_dir {
            Some(dir) => cfg.service(actix_files::Files::new("/static", dir)),
            None => cfg.service(
                web::resource("/static/{name}")
                    .route(on(GET_OR_HEAD).to(crate::assets::serve))
                    .default_service(not_allowed("GET, HEAD")),
            ),
        };
    }
}

/// A route for any of `methods`. actix-web's own method guards
/// (`web::get()` and the like) note every method they test in the
/// request's extensions, a `Vec` and a map entry per request, for an
/// `Allow` header they would build; this test allocates nothing, and every
/// route here uses it, with [`not_allowed`] naming the resource's methods.
fn on(methods: &'static [Method]) -> actix_web::Route {
    web::route().guard(guard::fn_guard(move |ctx| {
        methods.contains(&ctx.head().method)
    }))
}

const GET: &[Method] = &[Method::GET];

/// `POST`, tested first on `/`: every publish takes this route.
const POST: &[Method] = &[Method::POST];

/// `GET`, and `HEAD` with the same head and no body (actix-web leaves the
/// body out), for the routes a monitor or a load balancer may probe with
/// `HEAD`: the console page, `/health`, `/ready` and the static files.
/// Not `/events` or `/poll`, whose `GET` opens a session.
const GET_OR_HEAD: &[Method] = &[Method::GET, Method::HEAD];

/// The answer to a method a resource does not serve: 405
/// `method_not_allowed`, with the `Allow` header a 405 must carry (RFC 9110)
/// listing `allow`, the methods its routes take.
fn not_allowed(allow: &'static str) -> actix_web::Route {
    web::to(move || async move {
        let mut response = ApiError::MethodNotAllowed.error_response();
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        response
    })
}

/// Answers every path no route claims.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound)
}
