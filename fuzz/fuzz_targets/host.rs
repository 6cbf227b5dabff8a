//! `Host` header values: parsing never panics, what is accepted prints back
//! to a value that parses the same and is judged the same, and nothing with
//! characters outside a host and port gets through.
#![no_main]

use herald::host::{HostHeader, HostName, HostPolicy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let policy = HostPolicy::new(&["rt.example.com".to_owned()]);
    let allowed = policy.allows(text);
    let Some(parsed) = HostHeader::parse(text) else {
        assert!(!allowed, "{text:?} allowed without parsing");
        return;
    };
    assert!(
        text.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:[]".contains(&b)),
        "{text:?}"
    );
    if let HostName::Name(name) = parsed.host {
        assert!(herald::host::is_dns_name(name), "{name:?}");
        assert!(!name.contains(':'), "{name:?}");
    } else {
        assert!(allowed, "an IP literal is always allowed: {text:?}");
    }
    let printed = parsed.to_string();
    assert_eq!(HostHeader::parse(&printed), Some(parsed), "{text:?} → {printed:?}");
    assert_eq!(policy.allows(&printed), allowed, "{text:?} → {printed:?}");
});
