//! `X-Forwarded-For` and `Forwarded` values as a trusted proxy would pass
//! them (the input split at its first 0 byte: X-Forwarded-For before,
//! Forwarded after): resolving never panics, a trusted peer stays the proxy
//! and never a direct peer, and an untrusted peer's headers change nothing.
#![no_main]

use std::net::SocketAddr;

use actix_http::header::{HeaderMap, HeaderName, HeaderValue};
use herald::client_addr::TrustedProxies;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (xff, forwarded) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], Some(&data[i + 1..])),
        None => (data, None),
    };
    let mut headers = HeaderMap::new();
    for (name, value) in [("x-forwarded-for", Some(xff)), ("forwarded", forwarded)] {
        let Some(value) = value else { continue };
        let Ok(value) = HeaderValue::from_bytes(value) else {
            return;
        };
        headers.append(HeaderName::from_static(name), value);
    }
    let proxies = TrustedProxies::parse(&["127.0.0.1/32".to_owned(), "10.0.0.0/8".to_owned()])
        .expect("valid entries");

    let proxy: SocketAddr = ([127, 0, 0, 1], 4000).into();
    let client = proxies.resolve(Some(proxy), &headers).expect("a peer");
    assert_eq!(client.proxy(), Some(proxy));
    assert_eq!(client.direct_peer(), None);
    assert!(client.to_string().ends_with(" proxy=127.0.0.1:4000"));

    let stranger: SocketAddr = ([192, 0, 2, 1], 4000).into();
    let client = proxies.resolve(Some(stranger), &headers).expect("a peer");
    assert_eq!(client.ip(), stranger.ip());
    assert_eq!(client.proxy(), None);
});
