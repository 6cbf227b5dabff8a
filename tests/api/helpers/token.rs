//! Signed identity for tests: the secret apps are started with and tokens
//! minted the way a main site would.

use herald::config::Secret;
use herald::Config;
use serde_json::Value;

/// The `client_secret` of apps started with [`with_tokens`].
pub const CLIENT_SECRET: &str = "test-client-secret-0123456789abcdef";

/// Turns on signed identity with [`CLIENT_SECRET`].
pub fn with_tokens(config: &mut Config) {
    config.client_secret = Secret::new(CLIENT_SECRET);
}

/// Seconds since the Unix epoch.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// A token signed like a main site would, with `jsonwebtoken`, for
/// herald's audience (`"aud": "herald"`) unless `claims` name one.
pub fn mint(claims: &Value, secret: &str) -> String {
    let mut claims = claims.clone();
    if let Some(map) = claims.as_object_mut() {
        map.entry("aud").or_insert_with(|| "herald".into());
    }
    let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()).expect("HMAC key");
    jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key).expect("token encodes")
}

/// A valid token for `sub`, an hour long, listing `channels`.
pub fn token_for(sub: &str, channels: &[&str]) -> String {
    mint(
        &serde_json::json!({"sub": sub, "exp": now() + 3600, "channels": channels}),
        CLIENT_SECRET,
    )
}
