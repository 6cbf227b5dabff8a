//! herald-bench as a library: the load generator's pieces, so its own tests
//! can drive servers started in-process.
//!
//! - [`wire`]: a minimal WebSocket client (handshake, in-place frame parsing).
//! - [`publish`]: a keep-alive HTTP/1.1 publisher.
//! - [`run`]: one scenario run with exact delivery accounting.
//! - [`report`]: medians over runs as Markdown and an SVG chart.
//! - [`soak`]: a long run of mixed traffic, and the server back to its
//!   baseline once the clients leave.

pub mod publish;
pub mod report;
pub mod run;
pub mod soak;
pub mod wire;
