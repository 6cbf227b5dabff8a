//! `GET /ws`: upgrade to a WebSocket session.
//!
//! Query: `id=<client id>` registers the session at connect. Other query
//! parameters are ignored (room for cache-busters and later extensions).

use actix_web::{web, HttpRequest, HttpResponse};
use actix_web_actors::ws;

use super::AppState;
use crate::error::ApiError;
use crate::hub::WsSession;
use crate::ids::ClientId;

/// What the upgrade URL may carry.
#[derive(Debug, Default, PartialEq)]
pub struct WsQuery {
    pub id: Option<ClientId>,
}

impl WsQuery {
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(query).map_err(|e| ApiError::InvalidQuery(e.to_string()))?;
        let mut parsed = Self::default();
        for (key, value) in pairs {
            if key == "id" {
                if parsed.id.is_some() {
                    return Err(ApiError::InvalidQuery("`id` given twice".into()));
                }
                parsed.id = Some(ClientId::parse(value).map_err(ApiError::InvalidId)?);
            }
        }
        Ok(parsed)
    }
}

pub async fn upgrade(
    req: HttpRequest,
    stream: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    ws::handshake(&req).map_err(|e| ApiError::BadUpgrade(e.to_string()))?;
    let query = WsQuery::parse(req.query_string())?;
    let session = WsSession::new(
        state.server.clone(),
        req.peer_addr(),
        query.id,
        state.session_limits,
    );
    ws::WsResponseBuilder::new(session, &req, stream)
        .frame_size(state.session_limits.max_frame_bytes)
        .start()
        .map_err(|e| ApiError::BadUpgrade(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_optional_validated_and_single() {
        assert_eq!(WsQuery::parse("").unwrap(), WsQuery::default());
        assert_eq!(
            WsQuery::parse("id=63&v=2").unwrap().id.unwrap().as_str(),
            "63"
        );
        assert!(matches!(WsQuery::parse("id="), Err(ApiError::InvalidId(_))));
        assert!(matches!(
            WsQuery::parse("id=%00"),
            Err(ApiError::InvalidId(_))
        ));
        assert!(WsQuery::parse("id=1&id=2").is_err());
    }
}
