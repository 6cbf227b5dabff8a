//! The wire protocol between herald and its clients: every byte herald
//! writes to a client, and every frame it reads from one, on each
//! transport. `docs/protocol.md` is the prose version of this module; keep
//! them in step.
//!
//! - [`client_frame`]: the frames a client sends ([`ClientFrame`]).
//! - [`server_frame`]: the frames herald sends besides messages
//!   ([`ServerFrame`]).
//! - [`message`]: message frames, encoded once per publish
//!   ([`PendingFrame`]).
//! - [`position`]: a client's position, as it sends it back ([`Position`]).
//! - [`join`]: the frames that answer a client's join, in wire order.
//! - [`close_code`]: the WebSocket close codes, each with whether and when
//!   the client should reconnect.
//! - [`sse`]: how frames travel as Server-Sent Events, and the stream's
//!   comments and pings.
//! - [`poll`]: the body of a long-poll answer, and its probes.

pub mod client_frame;
pub mod close_code;
pub mod join;
pub mod message;
pub mod poll;
pub mod position;
pub mod server_frame;
pub mod sse;

pub use client_frame::ClientFrame;
pub use message::{minify_json, PendingFrame, MESSAGE_FRAME_HEAD};
pub use position::Position;
pub use server_frame::ServerFrame;
