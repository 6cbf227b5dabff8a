//! The query string every client transport takes (`/ws`, `/events`,
//! `/poll`): who the client is, what it listens to, where it resumes.
//!
//! `id=<client id>`; `token=<JWT>` (its `sub` wins over `id`);
//! `channel=<name>`, repeatable; `since=<seq>&epoch=<epoch>`, both or
//! neither; `await_register=1`: admit the session only with its first
//! `register` frame (WebSocket only), so a token and a position sent there
//! are applied in the same step as the rest. Other parameters are ignored
//! (room for cache-busters).

use crate::error::ApiError;
use crate::form::parse_pairs;
use crate::hub::session::{SessionSettings, SessionStart};
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
    pub fn parse(query: &str) -> Result<Self, ApiError> {
        let pairs = parse_pairs(query.as_bytes()).map_err(ApiError::InvalidQuery)?;
        let mut parsed = Self::default();
        let (mut since, mut epoch) = (None, None);
        for (key, value) in pairs {
            let twice = || ApiError::InvalidQuery(format!("`{key}` given twice"));
            match key.as_str() {
                "id" if parsed.id.is_some() => return Err(twice()),
                "id" => parsed.id = Some(ClientId::parse(value).map_err(ApiError::InvalidId)?),
                "token" if parsed.token.is_some() => return Err(twice()),
                "token" => parsed.token = Some(value),
                "channel" => {
                    let channel = ChannelName::parse(value).map_err(ApiError::InvalidChannel)?;
                    if !parsed.channels.contains(&channel) {
                        parsed.channels.push(channel);
                    }
                }
                "since" if since.is_some() => return Err(twice()),
                "since" => {
                    let seq = value.parse::<u64>().map_err(|_| {
                        ApiError::InvalidQuery("`since` must be a sequence number".into())
                    })?;
                    since = Some(seq);
                }
                "epoch" if epoch.is_some() => return Err(twice()),
                "epoch" => epoch = Some(value),
                "await_register" => parsed.await_register = matches!(value.as_str(), "1" | "true"),
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

    /// Checks the token and the channels against the session rules.
    pub fn into_start(self, settings: &SessionSettings) -> Result<SessionStart, ApiError> {
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
            resume: self.resume,
            await_register: self.await_register,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_validated_and_single() {
        assert!(ClientQuery::parse("").unwrap().id.is_none());
        let q = ClientQuery::parse("id=63&v=2&channel=a&channel=b&channel=a").unwrap();
        assert_eq!(q.id.unwrap().as_str(), "63");
        assert_eq!(q.channels.len(), 2);
        assert!(matches!(
            ClientQuery::parse("id="),
            Err(ApiError::InvalidId(_))
        ));
        assert!(matches!(
            ClientQuery::parse("id=%00"),
            Err(ApiError::InvalidId(_))
        ));
        assert!(matches!(
            ClientQuery::parse("id=%FF"),
            Err(ApiError::InvalidQuery(_))
        ));
        assert!(matches!(
            ClientQuery::parse("channel=a%20b"),
            Err(ApiError::InvalidChannel(_))
        ));
        assert!(ClientQuery::parse("id=1&id=2").is_err());
        assert!(ClientQuery::parse("token=a&token=b").is_err());
    }

    #[test]
    fn a_position_needs_both_since_and_epoch() {
        let q = ClientQuery::parse("since=41&epoch=abc").unwrap();
        assert_eq!(q.resume, Some(Position::new("abc".into(), 41).unwrap()));
        for bad in [
            "since=41",
            "epoch=abc",
            "since=-1&epoch=a",
            "since=x&epoch=a",
            "since=1&epoch=a%20b",
        ] {
            assert!(
                matches!(ClientQuery::parse(bad), Err(ApiError::InvalidQuery(_))),
                "{bad}"
            );
        }
    }
}
