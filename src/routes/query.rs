//! The query string every client transport takes (`/ws`, `/events`,
//! `/poll`): who the client is, what it listens to, where it resumes.
//!
//! `id=<client id>`; `token=<JWT>` (its `sub` wins over `id`);
//! `channel=<name>`, repeatable; `since=<seq>&epoch=<epoch>`, both or
//! neither; `await_register=1`: admit the session only with its first
//! `register` frame (WebSocket only), so a token and a position sent there
//! are applied in the same step as the rest. Other parameters are ignored
//! (room for cache-busters).

use std::collections::HashSet;

use crate::error::ApiError;
use crate::form::parse_pairs;
use crate::hub::admission::{Refusal, SessionStart};
use crate::hub::session::SessionSettings;
use crate::ids::{ChannelName, ClientId};
use crate::protocol::Position;

/// What a client's URL asked for, syntax-checked.
#[derive(Debug, Default)]
pub struct ClientQuery {
    pub id: Option<ClientId>,
    pub token: Option<String>,
    pub channels: Vec<ChannelName>,
    pub resume: Option<Position>,
    pub await_register: bool,
}

impl ClientQuery {
    /// Parses `query`, refusing it as soon as it names more than
    /// `max_channels` distinct channels (so a long list costs one pass over
    /// the string, not a comparison of every pair).
    pub fn parse(query: &str, max_channels: usize) -> Result<Self, ApiError> {
        let pairs = parse_pairs(query.as_bytes()).map_err(ApiError::InvalidQuery)?;
        let mut parsed = Self::default();
        let mut seen = HashSet::new();
        let (mut since, mut epoch) = (None, None);
        for (key, value) in pairs {
            let twice = || ApiError::InvalidQuery(format!("`{key}` given twice"));
            match key.as_ref() {
                "id" if parsed.id.is_some() => return Err(twice()),
                "id" => parsed.id = Some(ClientId::parse(value).map_err(ApiError::InvalidId)?),
                "token" if parsed.token.is_some() => return Err(twice()),
                "token" => parsed.token = Some(value.into_owned()),
                "channel" => {
                    let channel = ChannelName::parse(value).map_err(ApiError::InvalidChannel)?;
                    if seen.contains(&channel) {
                        continue;
                    }
                    if parsed.channels.len() == max_channels {
                        return Err(ApiError::TooManyChannels(max_channels));
                    }
                    seen.insert(channel.clone());
                    parsed.channels.push(channel);
                }
                "since" if since.is_some() => return Err(twice()),
                "since" => {
                    let seq = value.parse::<u64>().map_err(|_| {
                        ApiError::InvalidQuery("`since` must be a sequence number".into())
                    })?;
                    since = Some(seq);
                }
                "epoch" if epoch.is_some() => return Err(twice()),
                "epoch" => epoch = Some(value.into_owned()),
                "await_register" => parsed.await_register = matches!(value.as_ref(), "1" | "true"),
                _ => {}
            }
        }
        parsed.resume = match (since, epoch) {
            (None, None) => None,
            (Some(since), Some(epoch)) => {
                Some(Position::new(epoch, since).map_err(ApiError::InvalidQuery)?)
            }
            _ => {
                return Err(ApiError::InvalidQuery(
                    "give both `since` and `epoch`, or neither".into(),
                ))
            }
        };
        Ok(parsed)
    }

    /// Checks the token and the channels against the admission rules, for
    /// a transport admitted at the request (SSE, long-poll): with
    /// `require_token`, a request without a token is refused here (401).
    pub fn into_start(mut self, settings: &SessionSettings) -> Result<SessionStart, ApiError> {
        self.await_register = false;
        let start = self.into_ws_start(settings)?;
        settings
            .admission
            .admits(start.identity.as_ref())
            .map_err(refused)?;
        Ok(start)
    }

    /// [`ClientQuery::into_start`] for a WebSocket: with `await_register`,
    /// private channels are checked at admission instead, against the
    /// identity the first `register` frame brings; `require_token` is
    /// enforced by the session, which waits for a token.
    pub fn into_ws_start(self, settings: &SessionSettings) -> Result<SessionStart, ApiError> {
        let rules = &settings.admission;
        let identity = match &self.token {
            None => None,
            Some(token) => Some(rules.identify(token).map_err(refused)?),
        };
        if self.channels.len() > settings.max_channels {
            return Err(ApiError::TooManyChannels(settings.max_channels));
        }
        // A session admitted by its first `register` frame has its channels
        // checked then, against the identity that frame brings (herald.js
        // connects this way with a token, private channels in the URL, so
        // that they are joined and resumed in the same step).
        if !self.await_register {
            rules
                .check_channels(&self.channels, identity.as_ref())
                .map_err(refused)?;
        }
        Ok(SessionStart {
            id: self.id,
            identity,
            channels: self.channels,
            resume: self.resume,
            await_register: self.await_register,
        })
    }
}

/// A refusal at the request, as the HTTP error the client gets.
fn refused(refusal: Refusal) -> ApiError {
    match refusal {
        Refusal::TokensDisabled => {
            ApiError::InvalidQuery("`token` given but tokens are not enabled on this server".into())
        }
        Refusal::InvalidToken(e) => ApiError::InvalidToken(e),
        Refusal::Forbidden(why) => ApiError::Forbidden(why),
        Refusal::TokenRequired => ApiError::Unauthorized(
            "this server requires a token: add token=<JWT> to the URL".into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 16;

    #[test]
    fn channels_past_the_limit_are_refused_and_repeats_do_not_count() {
        let three = ClientQuery::parse("channel=a&channel=b&channel=a&channel=c&channel=b", 3);
        assert_eq!(three.unwrap().channels.len(), 3);
        assert!(matches!(
            ClientQuery::parse("channel=a&channel=b&channel=c", 2),
            Err(ApiError::TooManyChannels(2))
        ));
        let many: Vec<String> = (0..5_000).map(|i| format!("channel=c{i}")).collect();
        assert!(matches!(
            ClientQuery::parse(&many.join("&"), 64),
            Err(ApiError::TooManyChannels(64))
        ));
    }

    #[test]
    fn values_are_validated_and_single() {
        assert!(ClientQuery::parse("", LIMIT).unwrap().id.is_none());
        let q = ClientQuery::parse("id=63&v=2&channel=a&channel=b&channel=a", LIMIT).unwrap();
        assert_eq!(q.id.unwrap().as_str(), "63");
        assert_eq!(q.channels.len(), 2);
        assert!(matches!(
            ClientQuery::parse("id=", LIMIT),
            Err(ApiError::InvalidId(_))
        ));
        assert!(matches!(
            ClientQuery::parse("id=%00", LIMIT),
            Err(ApiError::InvalidId(_))
        ));
        assert!(matches!(
            ClientQuery::parse("id=%FF", LIMIT),
            Err(ApiError::InvalidQuery(_))
        ));
        assert!(matches!(
            ClientQuery::parse("channel=a%20b", LIMIT),
            Err(ApiError::InvalidChannel(_))
        ));
        assert!(ClientQuery::parse("id=1&id=2", LIMIT).is_err());
        assert!(ClientQuery::parse("token=a&token=b", LIMIT).is_err());
    }

    #[test]
    fn a_position_needs_both_since_and_epoch() {
        let q = ClientQuery::parse("since=41&epoch=abc", LIMIT).unwrap();
        assert_eq!(q.resume, Some(Position::new("abc".into(), 41).unwrap()));
        for bad in [
            "since=41",
            "epoch=abc",
            "since=-1&epoch=a",
            "since=x&epoch=a",
            "since=1&epoch=a%20b",
        ] {
            assert!(
                matches!(
                    ClientQuery::parse(bad, LIMIT),
                    Err(ApiError::InvalidQuery(_))
                ),
                "{bad}"
            );
        }
    }
}
