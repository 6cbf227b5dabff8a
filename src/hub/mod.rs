//! The hub: who sends what to whom.
//!
//! ```text
//!  WsSession / SseSession / PollWaiter ──Connect (id, channels, resume)──▶ NotifyServer
//!       ◀── Joined (epoch, seq, replay or reset) ──
//!  WsSession ──Register / Subscribe / Unsubscribe / Disconnect──▶ NotifyServer
//!  POST /    ──Broadcast / Direct / ToChannel (frame encoded once)──▶ NotifyServer
//!  NotifyServer ──publish──▶ Broker: seq += 1, stamp, keep (memory or Redis)
//!  Broker ──Publication(seq, stamped frame)──▶ NotifyServer
//!            (memory: at once, as publish's answer; Redis: on every node,
//!             via pub/sub, through `BrokerEvents`, which `NotifyServer` implements)
//!  NotifyServer ──Deliver(seq, shared frame), pushed to its mailbox──▶ every target session
//!       (one wake-up per burst; the session takes the burst as one Batch)
//!  NotifyServer ──Close (slow consumer)──▶ a session whose queue is full
//! ```
//!
//! `NotifyServer` ([`server`]) is the one owner of routing state, owns the
//! broker (`crate::broker`), and never waits on a session. Inside it:
//!
//! ```text
//!  server/mod.rs       the actor: its fields, one handler per message
//!  server/registry.rs  Registry: sessions, id and channel indexes, routing
//!  server/outbox.rs    Outbox: where a session's frames go; slow consumers
//!  server/resume.rs    Streams: has_from per stream, held-back, replayed-ahead
//!  server/report.rs    session log lines, /health counts, /stats, presence
//! ```
//!
//! Each transport has its own session actor, all joining the same routing:
//! `WsSession` ([`session`]) owns one WebSocket, `SseSession` ([`sse`]) one
//! event stream, `PollWaiter` ([`poll`]) one waiting long-poll request,
//! whose answer body (`PollAnswer`) waits for it. The messages between
//! them are in [`messages`]; the frames `NotifyServer` fans out to a
//! session go through its [`mailbox`] instead, one wake-up per burst.
//! Who a client is, what it may join, how long it may stay and which
//! frames answer its join are decided for every transport in one place
//! ([`admission`]). What a session owes its client
//! when it joins (a replay above all) goes out a slice at a time, as
//! the client reads ([`backlog`]).

pub mod admission;
pub mod backlog;
pub mod mailbox;
pub mod messages;
pub mod poll;
pub mod server;
pub mod session;
pub mod sse;

pub use poll::PollWaiter;
pub use server::NotifyServer;
pub use session::WsSession;
pub use sse::SseSession;
