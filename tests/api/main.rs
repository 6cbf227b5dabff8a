//! herald's integration tests: one binary, one `spawn_app`, a real server
//! on an ephemeral port, real HTTP and WebSocket clients.

mod abuse;
mod admin;
mod browser;
mod channels;
mod cli;
mod client_js;
mod cluster;
mod connections;
mod console;
mod contract;
mod cors;
mod docs;
mod health;
mod helpers;
mod hosts;
mod lifecycle;
mod logs;
mod loopback;
mod poll;
mod process;
mod protocol_errors;
mod proxies;
mod publish;
mod publishers;
mod ready;
mod redis_expiry;
mod redis_server;
mod redis_tls;
mod replay;
mod resume;
mod security;
mod slow;
mod sse;
mod tokens;
mod ws;
