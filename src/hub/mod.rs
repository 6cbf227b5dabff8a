//! The hub: who sends what to whom.
//!
//! ```text
//!  WsSession ──Connect / Register / Disconnect──▶ NotifyServer
//!  POST /    ──Broadcast / Direct (frame encoded once)──▶ NotifyServer
//!  NotifyServer ──Deliver(shared frame), try_send──▶ every target session
//!  NotifyServer ──Close (slow consumer)──▶ a session whose queue is full
//! ```
//!
//! `NotifyServer` ([`server`]) is the one owner of routing state and never
//! waits on a session. Each `WsSession` ([`session`]) owns one socket: its
//! heartbeat, the frames its client sends and the frames it is handed. The
//! messages between them are in [`messages`].

pub mod messages;
pub mod server;
pub mod session;

pub use server::NotifyServer;
pub use session::WsSession;
