//! herald: a real-time notification server.
//!
//! Browsers keep a WebSocket open to herald; a main web site POSTs to it, and
//! herald pushes each message to every client or to the clients of one id.
//!
//! Layout:
//! - [`app`]: binds, builds the HTTP server (whose first worker starts the one
//!   `NotifyServer`), handles graceful shutdown.
//! - [`assets`]: the console page and browser client, compiled in.
//! - [`cli`]: the command line: run, check-config, print-config, token.
//! - [`config`]: the typed settings, from file, environment and flags;
//!   [`config_env`]: the `HERALD_*` variables.
//! - [`error`]: errors a client of the HTTP API sees, mapped to JSON.
//! - [`protocol`]: the wire frames and close codes.
//! - [`ids`]: validated client ids, channel names and session ids.
//! - [`form`]: strict urlencoded parsing for bodies and query strings.
//! - [`auth`]: who may publish (keys, loopback) and from which origins.
//! - [`client_addr`]: a request's client address: the TCP peer, or the
//!   client a trusted proxy names (`trusted_proxies`).
//! - [`host`]: the `Host` names herald answers to (against DNS rebinding).
//! - [`token`]: signed client identity (HS256 JWT).
//! - [`limits`]: connection caps (per address, IPv6 by /64) and the client
//!   frame-rate limit.
//! - [`tcp`]: every accepted TCP connection counted against the TCP caps,
//!   refused at once over them.
//! - [`fd_limit`]: the open-file limit raised at startup, the TCP cap fitted
//!   into it.
//! - [`history`]: recent messages per stream, for resume.
//! - [`replay`]: the replay budget: what one resume may pin.
//! - [`logging`]: log lines as text or JSON (`log_format`).
//! - [`metrics`]: Prometheus metrics for `/metrics`.
//! - [`broker`]: the `Broker` trait that numbers, keeps and announces each
//!   publish: `MemoryBroker` (this process) or `RedisBroker` (several nodes;
//!   its client, TLS included, from `broker/redis_client.rs`).
//! - [`hub`]: the actors — `NotifyServer` (routing) and the
//!   sessions: `WsSession`, `SseSession`, `PollWaiter`.
//! - [`routes`]: the HTTP surface — console page, publish, `/ws`, `/events`,
//!   `/poll`, `/health`, `/metrics`, `/stats`; `routes::cors`: who may read
//!   `/events` and `/poll` from another origin.

pub mod app;
pub mod assets;
pub mod auth;
pub mod broker;
pub mod cli;
pub mod client_addr;
pub mod config;
pub mod config_env;
pub mod error;
pub mod fd_limit;
pub mod form;
pub mod history;
pub mod host;
pub mod hub;
pub mod ids;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod protocol;
pub mod replay;
pub mod routes;
pub mod tcp;
pub mod token;

pub use app::Application;
pub use config::Config;
