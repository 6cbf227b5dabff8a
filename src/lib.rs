//! herald: a real-time notification server.
//!
//! Browsers keep a WebSocket open to herald; a main web site POSTs to it, and
//! herald pushes each message to every client or to the clients of one id.
//!
//! Layout:
//! - [`app`]: binds, builds the HTTP server (whose first worker starts the one
//!   `NotifyServer`), handles graceful shutdown.
//! - [`config`]: the typed settings, from file, environment and flags.
//! - [`error`]: errors a client of the HTTP API sees, mapped to JSON.
//! - [`protocol`]: the wire frames and close codes.
//! - [`ids`]: validated client ids, channel names and session ids.
//! - [`form`]: strict urlencoded parsing for bodies and query strings.
//! - [`auth`]: who may publish (keys, loopback) and from which origins.
//! - [`token`]: signed client identity (HS256 JWT).
//! - [`limits`]: connection caps and the client frame-rate limit.
//! - [`history`]: recent messages per stream, for resume.
//! - [`replay`]: the replay budget: what one resume may pin.
//! - [`metrics`]: Prometheus metrics for `/metrics`.
//! - [`broker`]: the `Broker` trait that numbers, keeps and announces each
//!   publish: `MemoryBroker` (this process) or `RedisBroker` (several nodes).
//! - [`hub`]: the actors — `NotifyServer` (routing) and the
//!   sessions: `WsSession`, `SseSession`, `PollWaiter`.
//! - [`routes`]: the HTTP surface — console page, publish, `/ws`, `/events`,
//!   `/poll`, `/health`, `/metrics`, `/stats`.

pub mod app;
pub mod auth;
pub mod broker;
pub mod config;
pub mod error;
pub mod form;
pub mod history;
pub mod hub;
pub mod ids;
pub mod limits;
pub mod metrics;
pub mod protocol;
pub mod replay;
pub mod routes;
pub mod token;

pub use app::Application;
pub use config::Config;
