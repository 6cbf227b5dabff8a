//! WebSocket close codes herald sends, and when.

/// The client closed, or herald is shutting down the session normally.
pub const NORMAL: u16 = 1000;
/// herald is shutting down: reconnect (to another node).
pub const GOING_AWAY: u16 = 1001;
/// The client broke the WebSocket protocol: reserved bits set, an
/// unmasked frame, a bad opcode, a control frame over 125 bytes, a
/// continuation out of order, an invalid close code.
pub const PROTOCOL_ERROR: u16 = 1002;
/// A text message that is not valid UTF-8.
pub const INVALID_PAYLOAD: u16 = 1007;
/// The client sent frames faster than `max_client_frames_per_sec` and
/// kept going after being told.
pub const POLICY_VIOLATION: u16 = 1008;
/// A client frame, or a fragmented message once reassembled, over
/// `max_frame_bytes`.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// The client stayed silent (no pong, no frame) for `client_timeout_ms`.
pub const HEARTBEAT_TIMEOUT: u16 = 4000;
/// No valid token: required by `require_token` and not given in time, a
/// frame other than `register` sent before it, or an invalid one.
pub const UNAUTHORIZED: u16 = 4001;
/// The session's token expired and no fresh one came (`refresh`).
pub const TOKEN_EXPIRED: u16 = 4002;
/// herald could not serve the session (its router stopped).
pub const INTERNAL_ERROR: u16 = 1011;
/// The session's outbound queue (`max_pending_messages`) was full: the
/// client does not read fast enough, and herald drops it rather than let
/// it hold memory or slow anyone else. It can resume from history.
pub const SLOW_CONSUMER: u16 = 4003;
