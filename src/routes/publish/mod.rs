//! `POST /`: a main site publishes a notification.
//!
//! Form (`message=…[&id=…|&channel=…]`) or JSON
//! (`{"message": <any JSON>, "id": "…"}` / `"channel": "…"`), read in
//! `body.rs`. No target → every session; `id` → every session registered
//! as it; `channel` → every subscriber. The frame is encoded here, once,
//! and `NotifyServer` shares it among the recipients, after stamping the
//! message's `seq` in. Answer: `{"delivered": N, "seq": S}`: the number of
//! sessions it was handed to, and its position.
//!
//! Before the body is read: a foreign `Origin` is refused (403), then the
//! publisher is checked (key, or loopback when no keys are configured).
//!
//! An idempotency key (the `Idempotency-Key` header or the
//! `idempotency_key` field; both only if equal) makes a retry safe: a
//! publish whose key was used within `idempotency_window_secs` by the same
//! publisher is answered with the first one's `seq` and `"duplicate":
//! true`, and delivered to nobody. The answer to a publish with a key says
//! `"duplicate"` either way (unless the window is 0: keys are then not
//! remembered, and the answer has no `duplicate`). Keys are scoped by the
//! publish key that was used ([`crate::auth::KeyAuth::scope`]).

mod body;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde::Serialize;

pub use self::body::{BodyKind, Publish, Target};
use super::AppState;
use crate::error::ApiError;
use crate::hub::messages::{Broadcast, Direct, Published, ToChannel};
use crate::idempotency::IdempotencyKey;
use crate::protocol::PendingFrame;

/// The header a publisher may send its idempotency key in.
const IDEMPOTENCY_KEY_HEADER: header::HeaderName =
    header::HeaderName::from_static("idempotency-key");

#[derive(Serialize)]
struct Reply {
    /// Sessions the message was handed to. `null` with the redis broker:
    /// each node hands it to its own sessions, and counting them would mean
    /// waiting on every node. 0 for a duplicate.
    delivered: Option<usize>,
    /// The message's position; for a duplicate, the first publish's.
    seq: u64,
    /// With the redis broker: the nodes it was announced to.
    #[serde(skip_serializing_if = "Option::is_none")]
    nodes: Option<u64>,
    /// With an idempotency key (and a window above 0): whether an earlier
    /// publish already used it, and this one delivered nothing.
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicate: Option<bool>,
}

/// Reads the whole body, refusing it as soon as it passes `limit` bytes.
/// A body that came in one chunk (the usual case) is that chunk, not a
/// copy; it shares the connection's read buffer, so the caller drops it
/// before waiting on anything.
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<Bytes, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::TooLarge { limit });
    }
    let mut first = Bytes::new();
    let mut joined: Option<BytesMut> = None;
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::MalformedBody(format!("could not read the body: {e}")))?;
        let read = joined.as_ref().map_or(first.len(), BytesMut::len);
        if read + chunk.len() > limit {
            return Err(ApiError::TooLarge { limit });
        }
        match &mut joined {
            Some(joined) => joined.extend_from_slice(&chunk),
            None if first.is_empty() => first = chunk,
            None => {
                let mut both = BytesMut::with_capacity(first.len() + chunk.len());
                both.extend_from_slice(&first);
                both.extend_from_slice(&chunk);
                joined = Some(both);
            }
        }
    }
    Ok(joined.map_or(first, BytesMut::freeze))
}

/// The `Idempotency-Key` header, checked; more than one is refused.
fn header_key(req: &HttpRequest) -> Result<Option<IdempotencyKey>, ApiError> {
    let mut values = req.headers().get_all(&IDEMPOTENCY_KEY_HEADER);
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::BadIdempotencyKey(
            "more than one Idempotency-Key header: give one".into(),
        ));
    }
    IdempotencyKey::from_bytes(value.as_bytes())
        .map(Some)
        .map_err(|e| ApiError::BadIdempotencyKey(e.to_string()))
}

/// The publish's idempotency key, from the header or the body; both given
/// and different is refused.
fn idempotency_key(
    header: Option<IdempotencyKey>,
    field: Option<IdempotencyKey>,
) -> Result<Option<IdempotencyKey>, ApiError> {
    match (header, field) {
        (Some(header), Some(field)) if header != field => Err(ApiError::BadIdempotencyKey(
            "the Idempotency-Key header and the idempotency_key field differ: \
             give the key once, or the same in both"
                .into(),
        )),
        (header, field) => Ok(header.or(field)),
    }
}

pub async fn publish(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let metrics = state.metrics.clone();
    match accept(req, payload, state).await {
        Ok((target, published)) => {
            if published.duplicate {
                metrics.idempotent_duplicates.inc();
            } else {
                metrics.published.with_label_values(&[target]).inc();
            }
            Ok(published.reply)
        }
        Err(e) => {
            metrics.rejected.with_label_values(&[e.code()]).inc();
            Err(e)
        }
    }
}

/// What an accepted publish answers.
struct Answered {
    /// Whether it was a duplicate (nothing published).
    duplicate: bool,
    reply: HttpResponse,
}

async fn accept(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<(&'static str, Answered), ApiError> {
    state.origins.check(req.headers())?;
    state
        .publishers
        .check(req.headers(), state.direct_peer(&req))?;
    let from_header = header_key(&req)?;
    let kind = BodyKind::of(&req)?;
    let mut publish = {
        let body = read_body(&req, payload, state.max_message_bytes).await?;
        Publish::parse(kind, &body)?
    };
    let key = idempotency_key(from_header, publish.idempotency_key.take())?;
    // Without a window, a key is checked but not remembered.
    let idempotency = key
        .filter(|_| state.remember_idempotency_keys)
        .map(|key| key.scoped(&state.publishers.scope(req.headers())));
    let keyed = idempotency.is_some();
    let (id, channel) = match &publish.target {
        Target::Everyone => (None, None),
        Target::Id(id) => (Some(id), None),
        Target::Channel(channel) => (None, Some(channel)),
    };
    let frame =
        PendingFrame::message(id, channel, &publish.message).map_err(ApiError::MalformedBody)?;
    let label = match &publish.target {
        Target::Everyone => "broadcast",
        Target::Id(_) => "direct",
        Target::Channel(_) => "channel",
    };
    let published: Published = match publish.target {
        Target::Everyone => state.server.send(Broadcast { frame, idempotency }).await?,
        Target::Id(id) => {
            state
                .server
                .send(Direct {
                    id,
                    frame,
                    idempotency,
                })
                .await?
        }
        Target::Channel(channel) => {
            state
                .server
                .send(ToChannel {
                    channel,
                    frame,
                    idempotency,
                })
                .await?
        }
    }
    .map_err(ApiError::Broker)?;
    // A static content type: `json` alone would build it anew each time.
    let reply = HttpResponse::Ok()
        .content_type(header::HeaderValue::from_static("application/json"))
        .json(Reply {
            delivered: published.delivered,
            seq: published.seq,
            nodes: published.nodes,
            duplicate: keyed.then_some(published.duplicate),
        });
    Ok((
        label,
        Answered {
            duplicate: published.duplicate,
            reply,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(text: &str) -> Option<IdempotencyKey> {
        Some(IdempotencyKey::parse(text).unwrap())
    }

    #[test]
    fn a_key_may_come_from_the_header_or_the_body_or_both_if_equal() {
        assert_eq!(idempotency_key(None, None).unwrap(), None);
        assert_eq!(idempotency_key(key("a"), None).unwrap(), key("a"));
        assert_eq!(idempotency_key(None, key("a")).unwrap(), key("a"));
        assert_eq!(idempotency_key(key("a"), key("a")).unwrap(), key("a"));
        let err = idempotency_key(key("a"), key("b")).unwrap_err();
        assert_eq!(err.code(), "bad_idempotency_key");
        assert!(err.to_string().contains("differ"), "{err}");
    }
}
