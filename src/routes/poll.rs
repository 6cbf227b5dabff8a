//! `GET /poll`: long-polling, for clients behind proxies that break
//! streaming.
//!
//! The same query as `/ws` ([`super::query`]). With `since`/`epoch`, the
//! messages missed since then are answered at once:
//! `{"messages":[<message frames>],"epoch":"E","seq":S}`, where `S` is the
//! position to send as `since` next time; or `{"type":"reset",…}` when they
//! cannot all be recovered. When there is nothing to answer, the request
//! waits up to `poll_timeout_secs` for the next message and answers with it,
//! or with an empty list.

use std::time::Duration;

use actix::{Actor, Addr};
use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytestring::ByteString;

use super::query::ClientQuery;
use super::AppState;
use crate::error::ApiError;
use crate::hub::messages::{
    Connect, Disconnect, DisconnectReason, Resume, SessionOutbox, Transport,
};
use crate::hub::{NotifyServer, PollWaiter};
use crate::ids::SessionId;
use crate::protocol::ServerFrame;

/// Takes the waiting session out of the router however the request ends:
/// answered, timed out, or dropped because the client went away.
struct Leave {
    server: Addr<NotifyServer>,
    session: SessionId,
}

impl Drop for Leave {
    fn drop(&mut self) {
        self.server.do_send(Disconnect {
            session: self.session,
            reason: DisconnectReason::PollDone,
        });
    }
}

pub async fn poll(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.origins.check(req.headers())?;
    let start = ClientQuery::parse(req.query_string(), state.session_settings.max_channels)?
        .into_start(&state.session_settings)?;
    if state.session_settings.require_token && start.identity.is_none() {
        return Err(ApiError::Unauthorized(
            "this server requires a token: add token=<JWT> to the URL".into(),
        ));
    }
    let _permit = state
        .connections
        .try_acquire(req.peer_addr().map(|p| p.ip()))?;
    let (waiter, answer) = PollWaiter::new();
    let waiter = waiter.start();
    let session = SessionId::next();
    let _leave = Leave {
        server: state.server.clone(),
        session,
    };
    let joined = state
        .server
        .send(Connect {
            session,
            transport: Transport::LongPoll,
            peer: req.peer_addr(),
            outbox: SessionOutbox::of(&waiter),
            id: start.identity.map(|i| i.id).or(start.id),
            channels: start.channels,
            resume: start.resume,
        })
        .await?;
    let epoch = &joined.epoch;
    match &joined.resume {
        Some(Resume::Reset { reason }) => {
            let frame = ServerFrame::Reset {
                reason,
                epoch,
                seq: joined.seq,
            };
            return Ok(json(frame.encode().to_string()));
        }
        Some(Resume::Replayed { frames, .. }) if !frames.is_empty() => {
            let frames = frames.iter().map(|(_, f)| f);
            return Ok(json(messages(frames, epoch, joined.seq)));
        }
        _ => {}
    }
    let timeout = Duration::from_secs(state.poll_timeout_secs);
    let body = match actix_web::rt::time::timeout(timeout, answer).await {
        Ok(Ok((seq, frame))) => messages([&frame], epoch, seq),
        // Timed out, or the waiter was dropped (slow consumer, shutdown).
        _ => messages(std::iter::empty(), epoch, joined.seq),
    };
    Ok(json(body))
}

/// `{"messages":[…],"epoch":…,"seq":…}` from frames already encoded.
fn messages<'a>(frames: impl IntoIterator<Item = &'a ByteString>, epoch: &str, seq: u64) -> String {
    let mut body = String::from(r#"{"messages":["#);
    for (i, frame) in frames.into_iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(frame);
    }
    body.push_str(r#"],"epoch":"#);
    // Epochs are [A-Za-z0-9-]; encoding keeps that an invariant anyway.
    body.push_str(&serde_json::to_string(epoch).unwrap_or_else(|_| "\"\"".into()));
    body.push_str(r#","seq":"#);
    body.push_str(&seq.to_string());
    body.push('}');
    body
}

fn json(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}
