//! WebSocket close codes herald sends, when, and whether the client
//! should reconnect.
//!
//! Every close leaves the client its position, so whatever reconnects
//! resumes from it and misses nothing the history still holds. Two
//! answers to "reconnect?":
//! - **after a backoff step**: reconnect, but not at once: wait the
//!   client's jittered, growing backoff (so clients closed together do not
//!   come back together, and one closed again and again comes back ever
//!   more slowly);
//! - **only with a new token**: the same token would be refused again.
//!
//! No code asks a client to reconnect at once.
//!
//! herald.js treats every code alike: it reconnects after a backoff step
//! (the first, 250-500 ms, when the connection had made progress; a longer
//! one each time it had not), asking its `token` function again if it was
//! given one, until the page calls `close()`. With a fixed token string,
//! it keeps presenting the refused token, each attempt waiting longer.

/// The client closed with this code, and herald echoes it (as it echoes
/// any code a client closes with). The client chose to close: it connects
/// again when it wants messages again, from its position. (Inside herald,
/// also the code of a connection that failed, to which no close frame is
/// sent at all: the client sees it drop, and reconnects after a backoff
/// step.)
pub const NORMAL: u16 = 1000;
/// herald is shutting down. Reconnect after a backoff step, to another
/// node if there is one: every client of the node is closed at once, and
/// the jitter spreads their return.
pub const GOING_AWAY: u16 = 1001;
/// The client broke the WebSocket protocol: reserved bits set, an
/// unmasked frame, a bad opcode, a control frame over 125 bytes, a
/// continuation out of order, an invalid close code. Reconnect after a
/// backoff step; a client that breaks it again is closed again.
pub const PROTOCOL_ERROR: u16 = 1002;
/// A text message that is not valid UTF-8. Reconnect after a backoff step,
/// without resending it.
pub const INVALID_PAYLOAD: u16 = 1007;
/// The client sent frames faster than `max_client_frames_per_sec` and
/// kept going after being told. Reconnect after a backoff step, and send
/// slower.
pub const POLICY_VIOLATION: u16 = 1008;
/// A client frame, or a fragmented message once reassembled, over
/// `max_frame_bytes`. Reconnect after a backoff step, without resending it.
pub const MESSAGE_TOO_BIG: u16 = 1009;
/// herald could not serve the session (its `NotifyServer` stopped).
/// Reconnect after a backoff step, to another node if there is one.
pub const INTERNAL_ERROR: u16 = 1011;
/// The client asked to resume from its position, and the history that
/// holds it could not be read now (the Redis broker is unreachable or did
/// not answer), though it is not known to be lost: no `reset`, nothing
/// replayed. Reconnect after a backoff step, resuming from the same
/// position; once the broker is back the resume replays what was missed.
pub const TRY_AGAIN_LATER: u16 = 1013;
/// The client stayed silent (no pong, no frame) for `client_timeout_ms`:
/// its path or its page stalled. Reconnect after a backoff step.
pub const HEARTBEAT_TIMEOUT: u16 = 4000;
/// The session was never admitted. With `require_token`: no valid token
/// (not given in time, a frame other than a token `register` before it,
/// or an invalid one). With `await_register=1`: the first frame was not a
/// valid `register`, or none came within `client_timeout_ms`. Reconnect
/// after a backoff step: with a valid token where one is required, and
/// with a valid `register` first under `await_register=1`.
pub const UNAUTHORIZED: u16 = 4001;
/// The session's token expired and no fresh one came (`refresh`).
/// Reconnect only with a new token (after a backoff step).
pub const TOKEN_EXPIRED: u16 = 4002;
/// The session's outbound queue (`max_pending_messages`) was full: the
/// client does not read fast enough, and herald drops it rather than let
/// it hold memory or slow anyone else. Reconnect after a backoff step; the
/// resume brings what it missed from history.
pub const SLOW_CONSUMER: u16 = 4003;
/// herald's node lost its link to the cluster (Redis) for a while and
/// could not recover by itself every message meant for the session. Reconnect after a
/// backoff step, resuming from the position: the resume brings what the
/// history holds, or a `reset` where it no longer does.
pub const MISSED: u16 = 4004;
