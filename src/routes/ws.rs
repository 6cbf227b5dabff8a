//! `GET /ws`: upgrade to a WebSocket session.
//!
//! Query: `id=<client id>` registers at connect; `token=<JWT>` registers as
//! the token's `sub` (and wins over `id`); `channel=<name>`, repeatable,
//! subscribes at connect. Other parameters are ignored (room for
//! cache-busters). Refused before the upgrade, with a JSON error: a foreign
//! `Origin` (403), too many connections (503 / 429), a bad id, channel or
//! query (400), an invalid token (401), a private channel the token does not
//! list (403).

use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;

use super::AppState;
use crate::error::ApiError;
use crate::form::parse_pairs;
use crate::hub::session::{SessionSettings, SessionStart};
use crate::hub::WsSession;
use crate::ids::{ChannelName, ClientId};

/// What the upgrade URL may carry, syntax-checked.
#[derive(Debug, Default)]
pub struct WsQuery {
    pub id: Option<ClientId>,
    pub token: Option<String>,
    pub channels: Vec<ChannelName>,
}

impl WsQuery {
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let pairs = parse_pairs(query.as_bytes()).map_err(ApiError::InvalidQuery)?;
        let mut parsed = Self::default();
        for (key, value) in pairs {
            match key.as_str() {
                "id" if parsed.id.is_some() => {
                    return Err(ApiError::InvalidQuery("`id` given twice".into()))
                }
                "id" => parsed.id = Some(ClientId::parse(value).map_err(ApiError::InvalidId)?),
                "token" if parsed.token.is_some() => {
                    return Err(ApiError::InvalidQuery("`token` given twice".into()))
                }
                "token" => parsed.token = Some(value),
                "channel" => {
                    let channel = ChannelName::parse(value).map_err(ApiError::InvalidChannel)?;
                    if !parsed.channels.contains(&channel) {
                        parsed.channels.push(channel);
                    }
                }
                _ => {}
            }
        }
        Ok(parsed)
    }

    /// Checks the token and the channels against the session rules.
    fn into_start(self, settings: &SessionSettings) -> Result<SessionStart, ApiError> {
        let identity = match (&self.token, &settings.tokens) {
            (None, _) => None,
            (Some(_), None) => {
                return Err(ApiError::InvalidQuery(
                    "`token` given but tokens are not enabled on this server".into(),
                ))
            }
            (Some(token), Some(verifier)) => {
                Some(verifier.verify(token).map_err(ApiError::InvalidToken)?)
            }
        };
        if self.channels.len() > settings.max_channels {
            return Err(ApiError::TooManyChannels(settings.max_channels));
        }
        for channel in &self.channels {
            settings
                .may_join(channel, identity.as_ref())
                .map_err(ApiError::Forbidden)?;
        }
        Ok(SessionStart {
            id: self.id,
            identity,
            channels: self.channels,
        })
    }
}

pub async fn upgrade(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    state.origins.check(req.headers())?;
    ws::handshake(&req).map_err(|e| ApiError::BadUpgrade(e.to_string()))?;
    let start = WsQuery::parse(req.query_string())?.into_start(&state.session_settings)?;
    let peer = req.peer_addr();
    let permit = state.connections.try_acquire(peer.map(|p| p.ip()))?;
    let session = WsSession::new(
        state.server.clone(),
        peer,
        state.session_settings.clone(),
        start,
        permit,
    );
    ws::WsResponseBuilder::new(session, &req, stream)
        .frame_size(state.session_settings.max_frame_bytes)
        .start()
        .map_err(|e| ApiError::BadUpgrade(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_values_are_validated_and_single() {
        assert!(WsQuery::parse("").unwrap().id.is_none());
        let q = WsQuery::parse("id=63&v=2&channel=a&channel=b&channel=a").unwrap();
        assert_eq!(q.id.unwrap().as_str(), "63");
        assert_eq!(q.channels.len(), 2);
        assert!(matches!(WsQuery::parse("id="), Err(ApiError::InvalidId(_))));
        assert!(matches!(
            WsQuery::parse("id=%00"),
            Err(ApiError::InvalidId(_))
        ));
        assert!(matches!(
            WsQuery::parse("id=%FF"),
            Err(ApiError::InvalidQuery(_))
        ));
        assert!(matches!(
            WsQuery::parse("channel=a%20b"),
            Err(ApiError::InvalidChannel(_))
        ));
        assert!(WsQuery::parse("id=1&id=2").is_err());
        assert!(WsQuery::parse("token=a&token=b").is_err());
    }
}
