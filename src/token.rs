//! Signed client identity: HS256 JSON Web Tokens minted by the main site
//! with `client_secret`.
//!
//! Claims: `sub` (the client id, required), `exp` (required, enforced),
//! `aud` (required: `token_audience`, "herald" by default, so that a token
//! the main site signs for another service with the same secret is not a
//! herald identity), `nbf` (honoured when present), `channels` (optional
//! list: the private channels the client may join). Only HS256 is accepted;
//! `none` and every other algorithm are refused.

use std::collections::BTreeSet;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::config::Secret;
use crate::ids::{ChannelName, ClientId};

/// Longest token accepted, in bytes; longer ones are refused unread.
pub const MAX_TOKEN_BYTES: usize = 4096;

/// Who a valid token says the client is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// From `sub`.
    pub id: ClientId,
    /// From `exp`: seconds since the Unix epoch.
    pub expires_at: u64,
    /// From `channels`: private channels the client may join.
    pub channels: BTreeSet<ChannelName>,
}

impl Identity {
    /// How long until the token expires (zero once it has).
    pub fn time_left(&self) -> std::time::Duration {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        std::time::Duration::from_secs(self.expires_at).saturating_sub(now)
    }
}

#[derive(Deserialize)]
struct Claims {
    // Options, so that a missing claim is reported as such rather than as a
    // malformed token.
    sub: Option<String>,
    exp: Option<u64>,
    #[serde(default)]
    channels: Vec<String>,
}

/// Why a token was refused. The text is shown to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("token expired")]
    Expired,
    #[error("token not valid yet (nbf)")]
    NotYetValid,
    #[error("token signature does not match")]
    BadSignature,
    #[error("token algorithm not allowed: only HS256 is accepted")]
    BadAlgorithm,
    #[error("token `aud` is not this server's audience ({0:?})")]
    WrongAudience(String),
    #[error("token is missing the `{0}` claim")]
    MissingClaim(String),
    #[error("token `sub` is not a valid id: {0}")]
    BadSubject(String),
    #[error("token `channels` holds an invalid channel name: {0}")]
    BadChannel(String),
    #[error("token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLong,
    #[error("malformed token")]
    Malformed,
}

/// Verifies client tokens against `client_secret`.
pub struct TokenVerifier {
    key: DecodingKey,
    validation: Validation,
    /// The `aud` accepted, for the error text.
    audience: String,
}

impl TokenVerifier {
    /// Accepts tokens signed with `secret` whose `aud` is `audience`. Fails
    /// only for an empty secret, which config validation refuses.
    pub fn new(secret: &Secret, audience: &str) -> Result<Self, String> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.algorithms = vec![Algorithm::HS256];
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "sub", "aud"]);
        let key = DecodingKey::from_secret(secret.expose().as_bytes())
            .map_err(|e| format!("unusable client_secret: {e}"))?;
        Ok(Self {
            key,
            validation,
            audience: audience.to_owned(),
        })
    }

    pub fn verify(&self, token: &str) -> Result<Identity, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLong);
        }
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::ImmatureSignature => TokenError::NotYetValid,
                ErrorKind::InvalidSignature => TokenError::BadSignature,
                ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                    TokenError::BadAlgorithm
                }
                ErrorKind::MissingRequiredClaim(claim) => TokenError::MissingClaim(claim.clone()),
                ErrorKind::InvalidAudience => TokenError::WrongAudience(self.audience.clone()),
                _ => TokenError::Malformed,
            },
        )?;
        let claims = data.claims;
        let sub = claims
            .sub
            .ok_or_else(|| TokenError::MissingClaim("sub".into()))?;
        let expires_at = claims
            .exp
            .ok_or_else(|| TokenError::MissingClaim("exp".into()))?;
        let id = ClientId::parse(sub).map_err(|e| TokenError::BadSubject(e.to_string()))?;
        let channels = claims
            .channels
            .into_iter()
            .map(|c| ChannelName::parse(c).map_err(|e| TokenError::BadChannel(e.to_string())))
            .collect::<Result<_, _>>()?;
        Ok(Identity {
            id,
            expires_at,
            channels,
        })
    }
}

/// Signs client tokens as a main site does, for `herald token`.
pub struct TokenSigner {
    key: jsonwebtoken::EncodingKey,
    audience: String,
}

impl TokenSigner {
    pub fn new(secret: &Secret, audience: &str) -> Result<Self, String> {
        let key = jsonwebtoken::EncodingKey::from_secret(secret.expose().as_bytes())
            .map_err(|e| format!("unusable client_secret: {e}"))?;
        Ok(Self {
            key,
            audience: audience.to_owned(),
        })
    }

    /// An HS256 token for `id`, listing `channels`, expiring after `ttl`.
    pub fn sign(
        &self,
        id: &ClientId,
        channels: &[ChannelName],
        ttl: std::time::Duration,
    ) -> Result<String, String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let claims = serde_json::json!({
            "sub": id.as_str(),
            "aud": self.audience,
            "exp": now.saturating_add(ttl).as_secs(),
            "channels": channels.iter().map(ChannelName::as_str).collect::<Vec<_>>(),
        });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(Algorithm::HS256),
            &claims,
            &self.key,
        )
        .map_err(|e| format!("cannot sign the token: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};
    use serde_json::json;

    const SECRET: &str = "test-secret-that-is-long-enough-0123456789";

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn mint(claims: serde_json::Value, secret: &str, alg: Algorithm) -> String {
        encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    fn verifier() -> TokenVerifier {
        TokenVerifier::new(&Secret::new(SECRET), "herald").unwrap()
    }

    #[test]
    fn signed_tokens_verify() {
        let signer = TokenSigner::new(&Secret::new(SECRET), "herald").unwrap();
        let channels = [ChannelName::parse("private:9").unwrap()];
        let id = ClientId::parse("9").unwrap();
        let token = signer
            .sign(&id, &channels, std::time::Duration::from_secs(60))
            .unwrap();
        let identity = verifier().verify(&token).unwrap();
        assert_eq!(identity.id, id);
        assert!(identity.channels.contains(&channels[0]));
        let other = TokenSigner::new(&Secret::new(SECRET), "billing").unwrap();
        let token = other
            .sign(&id, &[], std::time::Duration::from_secs(60))
            .unwrap();
        assert!(verifier().verify(&token).is_err());
    }

    #[test]
    fn a_valid_token_gives_id_expiry_and_channels() {
        let token = mint(
            json!({"sub": "63", "aud": "herald", "exp": now() + 60, "channels": ["private:63"]}),
            SECRET,
            Algorithm::HS256,
        );
        let identity = verifier().verify(&token).unwrap();
        assert_eq!(identity.id.as_str(), "63");
        assert!(identity
            .channels
            .contains(&ChannelName::parse("private:63").unwrap()));
    }

    #[test]
    fn refuses_expired_immature_foreign_and_other_algorithms() {
        let v = verifier();
        let expired = mint(
            json!({"sub": "1", "aud": "herald", "exp": now() - 10}),
            SECRET,
            Algorithm::HS256,
        );
        assert_eq!(v.verify(&expired), Err(TokenError::Expired));
        let early = mint(
            json!({"sub": "1", "aud": "herald", "exp": now() + 600, "nbf": now() + 300}),
            SECRET,
            Algorithm::HS256,
        );
        assert_eq!(v.verify(&early), Err(TokenError::NotYetValid));
        let foreign = mint(
            json!({"sub": "1", "aud": "herald", "exp": now() + 60}),
            "another-secret-another-secret-000",
            Algorithm::HS256,
        );
        assert_eq!(v.verify(&foreign), Err(TokenError::BadSignature));
        let hs512 = mint(
            json!({"sub": "1", "aud": "herald", "exp": now() + 60}),
            SECRET,
            Algorithm::HS512,
        );
        assert_eq!(v.verify(&hs512), Err(TokenError::BadAlgorithm));
        let no_exp = mint(
            json!({"sub": "1", "aud": "herald"}),
            SECRET,
            Algorithm::HS256,
        );
        assert_eq!(
            v.verify(&no_exp),
            Err(TokenError::MissingClaim("exp".into()))
        );
        let bad_sub = mint(
            json!({"sub": "a\nb", "aud": "herald", "exp": now() + 60}),
            SECRET,
            Algorithm::HS256,
        );
        assert!(matches!(v.verify(&bad_sub), Err(TokenError::BadSubject(_))));
        assert_eq!(v.verify("not.a.token"), Err(TokenError::Malformed));
        let no_aud = mint(
            json!({"sub": "1", "exp": now() + 60}),
            SECRET,
            Algorithm::HS256,
        );
        assert_eq!(
            v.verify(&no_aud),
            Err(TokenError::MissingClaim("aud".into()))
        );
        for aud in [json!("billing"), json!(["billing", "api"])] {
            let other = mint(
                json!({"sub": "1", "exp": now() + 60, "aud": aud}),
                SECRET,
                Algorithm::HS256,
            );
            assert_eq!(
                v.verify(&other),
                Err(TokenError::WrongAudience("herald".into()))
            );
        }
        let listed = mint(
            json!({"sub": "1", "exp": now() + 60, "aud": ["billing", "herald"]}),
            SECRET,
            Algorithm::HS256,
        );
        assert!(v.verify(&listed).is_ok());
        assert_eq!(
            v.verify(&"a".repeat(MAX_TOKEN_BYTES + 1)),
            Err(TokenError::TooLong)
        );
    }
}
