//! herald: a real-time notification server.
//!
//! Browsers keep a WebSocket open to herald; a main web site POSTs to it, and
//! herald pushes each message to every client or to the clients of one id.
//!
//! # Layout
//!
//! The modules in layers, top first. A module uses only modules of the
//! layers below its own, never one of its own layer or above, so the
//! imports have no loop; a lower layer that must reach a higher one does it
//! through a trait of its own (the broker's `BrokerEvents`, which the hub
//! implements). `tests/api/layers.rs` holds every `crate::` and `super::`
//! path under `src/` to this order.
//!
//! 1. What `main` runs:
//!    - [`app`]: binds, builds the HTTP server (whose first worker starts
//!      the one `NotifyServer` and hands it to the broker), handles graceful
//!      shutdown; `app/`: the socket, the HTTP server, the upgraded
//!      connections it hands over, the shared state, the startup notices
//!      and the shutdown, one file each.
//!    - [`cli`]: the command line: run, check-config, print-config, token.
//!    - [`logging`]: log lines as text or JSON (`log_format`), written to
//!      stderr a batch at a time.
//! 2. The HTTP surface:
//!    - [`routes`]: console page, publish, `/ws`, `/events`, `/poll`,
//!      `/health`, `/ready`, `/metrics`, `/stats`; `routes::cors`: who may
//!      read `/events` and `/poll` from another origin; `routes::host`: the
//!      `Host` check around every route.
//! 3. The actors, and what the app sets beside them:
//!    - [`hub`]: the actors — `NotifyServer` (routing) and the sessions:
//!      `WsSession`, `SseSession`, `PollWaiter`, and `EchoSession` for
//!      `/echo` — and the plain rules they
//!      share: `hub::admission` (who a client is, what it may join) and the
//!      WebSocket client-frame machine, `hub::session::machine`.
//!    - [`tcp`]: every accepted TCP connection counted against the TCP caps,
//!      refused at once over them.
//!    - [`assets`]: the console page and browser client, compiled in.
//! 4. HTTP answers:
//!    - [`error`]: every error a client of the HTTP API sees, from the
//!      layers below included, mapped to JSON in one place.
//! 5. Policies and the broker, each with errors of its own:
//!    - [`auth`]: who may publish (keys, loopback) and from which origins.
//!    - [`limits`]: connection caps (per address, IPv6 by /64) and the
//!      client frame-rate limit.
//!    - [`token`]: signed client identity (HS256 JWT).
//!    - [`broker`]: the `Broker` trait that numbers, keeps and announces
//!      each publish: `MemoryBroker` (this process) or `RedisBroker`
//!      (several nodes, in `broker/redis/`: its Lua scripts, standing in
//!      the cluster, publish, replay, announcements, the catch-up after a
//!      gap in the subscription, presence, health and client, TLS
//!      included, one file each); it hands what it receives up through
//!      `BrokerEvents`, and what it missed and cannot hand up as `Missed`.
//! 6. Settings:
//!    - [`config`]: the typed settings, from file, environment and flags,
//!      in `config/`: the tree, loading, validation, secrets, errors and
//!      `[broker]`, one file each.
//! 7. What the settings and the broker are made of:
//!    - [`history`]: recent messages per stream, for resume.
//!    - [`protocol`]: every byte on the wire: the frames, those that answer
//!      a join, the close codes, SSE events, the long-poll answer.
//!    - [`config_env`]: the `HERALD_*` variables.
//! 8. Plain parts that use no other module:
//!    - [`ids`]: validated client ids, channel names, session ids and
//!      history epochs.
//!    - [`idempotency`]: a publisher's idempotency key, checked, and
//!      scoped by the publisher that sent it.
//!    - [`origin`]: a web origin (`scheme://host:port`), parsed and compared.
//!    - [`host`]: the `Host` names herald answers to (against DNS
//!      rebinding).
//!    - [`client_addr`]: a request's client address: the TCP peer, or the
//!      client a trusted proxy names (`trusted_proxies`).
//!    - [`replay`]: the replay budget: what one resume may pin.
//!    - [`form`]: strict urlencoded parsing for bodies and query strings.
//!    - [`metrics`]: Prometheus metrics for `/metrics`.
//!    - [`fd_limit`]: the open-file limit raised at startup, the TCP cap
//!      fitted into it.

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
pub mod idempotency;
pub mod ids;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod origin;
pub mod protocol;
pub mod replay;
pub mod routes;
pub mod tcp;
pub mod token;

pub use app::Application;
pub use config::Config;
