//! Client tokens: arbitrary text, and correctly signed tokens carrying
//! arbitrary claims. A token is accepted only when signed with the secret,
//! and then its identity is a valid id with valid channels.
#![no_main]

use herald::config::Secret;
use herald::ids::{ChannelName, ClientId};
use herald::token::TokenVerifier;
use jsonwebtoken::{encode, EncodingKey, Header};
use libfuzzer_sys::fuzz_target;

const SECRET: &str = "fuzz-secret-fuzz-secret-fuzz-secret";

fuzz_target!(|data: &[u8]| {
    let verifier = TokenVerifier::new(&Secret::new(SECRET), "herald").expect("secret");
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // As sent: nothing unsigned gets through.
    assert!(
        verifier.verify(text).is_err(),
        "accepted an unsigned token: {text}"
    );
    // As claims, signed.
    let Ok(claims) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    let key = EncodingKey::from_secret(SECRET.as_bytes()).expect("a fixed secret");
    let Ok(token) = encode(&Header::default(), &claims, &key) else {
        return;
    };
    if let Ok(identity) = verifier.verify(&token) {
        assert_eq!(
            ClientId::parse(identity.id.as_str()).as_ref(),
            Ok(&identity.id)
        );
        for channel in &identity.channels {
            assert_eq!(ChannelName::parse(channel.as_str()).as_ref(), Ok(channel));
        }
        assert_eq!(claims["sub"].as_str(), Some(identity.id.as_str()));
    }
});
