//! Admission: the one place that decides, for every transport (WebSocket,
//! event stream, long-poll), who a client is, what it may join, whether it
//! may be admitted at all, how long its session may live, and which frames
//! answer its join.
//!
//! - Who: a valid token's `sub` wins over a plain `id`.
//! - What: a channel under `private_channel_prefix` needs a token that
//!   lists it; any other channel is open to all.
//! - Whether: with `require_token`, no session is admitted without a token.
//! - How long: a session with a token ends at the token's `exp`.
//! - Answer: each channel refused at admission gets an `error` frame, before
//!   the frames that tell the outcome of the join (`Joined::frames`).
//!
//! Plain rules over plain values: the transports carry out what is decided
//! here and never decide it again.

use std::time::Duration;

use bytestring::ByteString;

use super::messages::{Connect, Joined, SessionOutbox, Transport};
use crate::client_addr::ClientAddr;
use crate::ids::{ChannelName, ClientId, SessionId};
use crate::protocol::{Position, ServerFrame};
use crate::token::{Identity, TokenError, TokenVerifier};

/// The admission rules, from the config; shared by every session.
pub struct Admission {
    /// Channels with this prefix need a token listing them.
    pub private_prefix: String,
    /// Verifies tokens; `None` when no `client_secret` is configured.
    pub tokens: Option<TokenVerifier>,
    /// Sessions without a valid token are refused (WebSocket: closed 4001;
    /// event stream and long-poll: 401).
    pub require_token: bool,
}

/// Why a client (or one of its requests) is refused. The text (`Display`)
/// is what a WebSocket client is told in an `error` frame; the HTTP
/// transports map each kind to their own status and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A token was given, but no `client_secret` is configured.
    TokensDisabled,
    /// The token does not verify.
    InvalidToken(TokenError),
    /// A private channel the identity does not list; the text says which.
    Forbidden(String),
    /// `require_token` is set and the client brought no token.
    TokenRequired,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TokensDisabled => f.write_str("tokens are not enabled on this server"),
            Self::InvalidToken(e) => write!(f, "invalid token: {e}"),
            Self::Forbidden(why) => f.write_str(why),
            Self::TokenRequired => f.write_str("this server requires a token to register"),
        }
    }
}

/// What the client's request asked for, already validated: the input to
/// admission.
#[derive(Debug, Default)]
pub struct SessionStart {
    /// `?id=`; ignored when a token is given.
    pub id: Option<ClientId>,
    /// From a valid `?token=`.
    pub identity: Option<Identity>,
    /// `?channel=` (each checked against the limits and permissions).
    pub channels: Vec<ChannelName>,
    /// `?since=&epoch=`: resume from there.
    pub resume: Option<Position>,
    /// `?await_register=1`: admit with the first `register` frame
    /// (WebSocket only).
    pub await_register: bool,
}

/// The outcome of admission: what the session joins as, and what it was
/// refused.
#[derive(Debug)]
pub struct Admitted {
    /// The id the session registers under: the token's over the plain one.
    pub id: Option<ClientId>,
    /// Who the token says the client is; `None` for anonymous clients.
    pub identity: Option<Identity>,
    /// The channels joined.
    pub channels: Vec<ChannelName>,
    /// Why each refused channel was refused, in the order asked.
    pub refused: Vec<String>,
    pub resume: Option<Position>,
}

impl Admission {
    /// Whether client tokens are on (`client_secret` set).
    pub fn tokens_on(&self) -> Result<(), Refusal> {
        self.tokens
            .as_ref()
            .map(|_| ())
            .ok_or(Refusal::TokensDisabled)
    }

    /// Who `token` says the client is.
    pub fn identify(&self, token: &str) -> Result<Identity, Refusal> {
        let verifier = self.tokens.as_ref().ok_or(Refusal::TokensDisabled)?;
        verifier.verify(token).map_err(Refusal::InvalidToken)
    }

    /// Whether a client with `identity` may join `channel`; the error is
    /// the text the client is shown.
    pub fn may_join(
        &self,
        channel: &ChannelName,
        identity: Option<&Identity>,
    ) -> Result<(), String> {
        if !channel.as_str().starts_with(&self.private_prefix) {
            return Ok(());
        }
        match identity {
            Some(identity) if identity.channels.contains(channel) => Ok(()),
            Some(_) => Err(format!(
                "private channel {channel}: your token does not list it"
            )),
            None => Err(format!(
                "private channel {channel}: needs a token that lists it"
            )),
        }
    }

    /// The require-token rule: whether a session with `identity` may be
    /// admitted.
    pub fn admits(&self, identity: Option<&Identity>) -> Result<(), Refusal> {
        match (self.require_token, identity) {
            (true, None) => Err(Refusal::TokenRequired),
            _ => Ok(()),
        }
    }

    /// A request's choices checked before it is taken on, for transports
    /// admitted with the request itself (and a WebSocket that does not wait
    /// for its first `register` frame): every channel against the identity.
    pub fn check_channels(
        &self,
        channels: &[ChannelName],
        identity: Option<&Identity>,
    ) -> Result<(), Refusal> {
        channels
            .iter()
            .try_for_each(|channel| self.may_join(channel, identity).map_err(Refusal::Forbidden))
    }

    /// Admits `start`: the id it registers under, and its channels split
    /// into those joined and those refused (each with the reason its
    /// `error` frame gives).
    pub fn admit(&self, start: SessionStart) -> Admitted {
        let mut refused = Vec::new();
        let identity = start.identity;
        let channels = start
            .channels
            .into_iter()
            .filter(|channel| match self.may_join(channel, identity.as_ref()) {
                Ok(()) => true,
                Err(why) => {
                    refused.push(why);
                    false
                }
            })
            .collect();
        Admitted {
            id: client_id(identity.as_ref(), start.id),
            identity,
            channels,
            refused,
            resume: start.resume,
        }
    }
}

/// Who the client is: a token's id over a plain `id`.
pub fn client_id(identity: Option<&Identity>, id: Option<ClientId>) -> Option<ClientId> {
    identity.map(|identity| identity.id.clone()).or(id)
}

/// How long a session of `identity` may live: until its token's expiry;
/// `None` (no limit) without a token.
pub fn lifetime(identity: Option<&Identity>) -> Option<Duration> {
    identity.map(token_lifetime)
}

/// How long a session admitted with `identity` may live: until its
/// token's expiry.
pub fn token_lifetime(identity: &Identity) -> Duration {
    identity.time_left()
}

impl Admitted {
    /// How long the session may live ([`lifetime`]).
    pub fn lifetime(&self) -> Option<Duration> {
        lifetime(self.identity.as_ref())
    }

    /// The request that joins the session to `NotifyServer`. Takes the resume
    /// position: it is asked for once.
    pub fn connect(
        &mut self,
        session: SessionId,
        transport: Transport,
        peer: Option<ClientAddr>,
        outbox: SessionOutbox,
    ) -> Connect {
        Connect {
            session,
            transport,
            peer,
            outbox,
            id: self.id.clone(),
            channels: self.channels.clone(),
            resume: self.resume.take(),
        }
    }

    /// The frames that answer the join, in wire order, each with the
    /// position it completes: an `error` frame per refused channel, then
    /// the outcome of the join ([`Joined::frames`]).
    pub fn answer(&self, joined: &Joined) -> Vec<(Option<u64>, ByteString)> {
        let refusals = self
            .refused
            .iter()
            .map(|error| (None, ServerFrame::Error { error }.encode()));
        let outcome = joined.frames(self.id.as_ref(), &self.channels);
        refusals.chain(outcome).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::ids::Epoch;
    use crate::token::TokenSigner;

    fn channel(name: &str) -> ChannelName {
        ChannelName::parse(name).unwrap()
    }

    fn id(name: &str) -> ClientId {
        ClientId::parse(name).unwrap()
    }

    fn identity(name: &str, channels: &[&str]) -> Identity {
        Identity {
            id: id(name),
            expires_at: u64::MAX,
            channels: channels.iter().map(|c| channel(c)).collect(),
        }
    }

    fn rules(require_token: bool) -> Admission {
        Admission {
            private_prefix: "private:".into(),
            tokens: None,
            require_token,
        }
    }

    #[test]
    fn private_channels_need_a_token_listing_them() {
        let rules = rules(false);
        let (public, mine, theirs) = (
            channel("news"),
            channel("private:63"),
            channel("private:64"),
        );
        let identity = identity("63", &["private:63"]);
        assert!(rules.may_join(&public, None).is_ok());
        assert!(rules
            .may_join(&mine, None)
            .unwrap_err()
            .contains("needs a token"));
        assert!(rules.may_join(&mine, Some(&identity)).is_ok());
        assert!(rules
            .may_join(&theirs, Some(&identity))
            .unwrap_err()
            .contains("does not list"));
        assert!(matches!(
            rules.check_channels(&[public, theirs], Some(&identity)),
            Err(Refusal::Forbidden(_))
        ));
    }

    #[test]
    fn a_tokens_id_wins_over_a_plain_id() {
        let identity = identity("63", &[]);
        assert_eq!(client_id(Some(&identity), Some(id("7"))), Some(id("63")));
        assert_eq!(client_id(None, Some(id("7"))), Some(id("7")));
        assert_eq!(client_id(None, None), None);
    }

    #[test]
    fn require_token_refuses_only_sessions_without_one() {
        assert_eq!(rules(true).admits(None), Err(Refusal::TokenRequired));
        assert!(rules(true).admits(Some(&identity("63", &[]))).is_ok());
        assert!(rules(false).admits(None).is_ok());
    }

    #[test]
    fn tokens_are_verified_only_when_enabled() {
        assert_eq!(rules(false).identify("x"), Err(Refusal::TokensDisabled));
        let secret = Secret::new("a-secret-of-enough-length-for-hs256");
        let mut rules = rules(false);
        rules.tokens = Some(TokenVerifier::new(&secret, "herald").unwrap());
        let signer = TokenSigner::new(&secret, "herald").unwrap();
        let token = signer
            .sign(&id("63"), &[channel("private:63")], Duration::from_secs(60))
            .unwrap();
        let identity = rules.identify(&token).unwrap();
        assert_eq!(identity.id, id("63"));
        assert!(matches!(
            rules.identify("not-a-token"),
            Err(Refusal::InvalidToken(_))
        ));
        let left = lifetime(Some(&identity)).unwrap();
        assert!(left > Duration::from_secs(50) && left <= Duration::from_secs(60));
        assert_eq!(lifetime(None), None);
    }

    #[test]
    fn refused_channels_are_answered_with_errors_before_the_join() {
        let start = SessionStart {
            id: Some(id("7")),
            identity: Some(identity("63", &["private:63"])),
            channels: vec![
                channel("news"),
                channel("private:64"),
                channel("private:63"),
            ],
            ..SessionStart::default()
        };
        let admitted = rules(false).admit(start);
        assert_eq!(admitted.id, Some(id("63")));
        assert_eq!(admitted.channels, [channel("news"), channel("private:63")]);
        assert_eq!(admitted.refused.len(), 1);
        let joined = Joined {
            epoch: Epoch::from("E"),
            seq: 3,
            resume: None,
        };
        let frames: Vec<String> = admitted
            .answer(&joined)
            .into_iter()
            .map(|(_, frame)| frame.to_string())
            .collect();
        assert_eq!(frames.len(), 4, "{frames:?}");
        assert!(frames[0].contains(r#""type":"error""#) && frames[0].contains("private:64"));
        assert!(frames[1].contains(r#""type":"registered""#));
        assert!(frames[2].contains("news") && frames[3].contains("private:63"));
    }
}
