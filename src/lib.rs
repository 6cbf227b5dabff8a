//! herald: a real-time notification server.
//!
//! Browsers keep a WebSocket open to herald; a main web site POSTs to it, and
//! herald pushes each message to every client or to the clients of one id.
//!
//! Layout:
//! - [`app`]: builds the HTTP server, starts the one `NotifyServer`, binds.
//! - [`config`]: the typed settings, from file, environment and flags.
//! - [`error`]: errors a client of the HTTP API sees, mapped to JSON.
//! - [`protocol`]: the wire frames and close codes.
//! - [`ids`]: validated client and session ids.
//! - [`hub`]: the actors — `NotifyServer` (routing) and `WsSession` (a socket).
//! - [`routes`]: the HTTP surface — console page, publish, WebSocket, health.

pub mod app;
pub mod config;
pub mod error;
pub mod hub;
pub mod ids;
pub mod protocol;
pub mod routes;

pub use app::Application;
pub use config::Config;
