//! Who may publish, and from which web pages.
//!
//! - [`PublisherAuth`]: with `publish_keys` set, `POST /` needs
//!   `Authorization: Bearer <key>`, compared in constant time; without keys,
//!   only loopback peers that did not come through a proxy may publish, and
//!   nobody once `trust_loopback = false`. A peer listed in
//!   `trusted_proxies` is a proxy even when it sends no proxy header: the
//!   routes pass no peer address for it ([`crate::client_addr`]).
//! - [`OriginPolicy`]: a browser request whose `Origin` is neither herald's
//!   own nor listed in `allowed_origins` is refused, so another site cannot
//!   publish through its visitors' browsers (CSRF) or open WebSockets in
//!   their name (cross-site WebSocket hijacking). Requests without `Origin`
//!   come from non-browser clients and pass.

use std::net::IpAddr;

use actix_web::http::header::{self, HeaderMap, HeaderValue};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::origin::Origin;

/// Why a request may not go on. Each is answered by `error.rs`: a missing
/// or wrong key with 401 `unauthorized`, the others with 403 `forbidden`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// Keys are configured and the request sent none.
    #[error("missing {role} key: send Authorization: Bearer <key>")]
    MissingKey { role: &'static str },
    /// Keys are configured and the request's matches none of them.
    #[error("invalid {role} key")]
    WrongKey { role: &'static str },
    /// No key is configured and loopback is not trusted
    /// (`trust_loopback = false`): nobody passes.
    #[error(
        "{role} access needs a key (trust_loopback = false) and none is configured: \
         set {setting} in config.toml (or {variable}) and send Authorization: Bearer <key>"
    )]
    KeyRequired {
        role: &'static str,
        setting: &'static str,
        variable: &'static str,
    },
    /// No key is configured and the request is not from a direct loopback
    /// peer.
    #[error(
        "{role} access without a key is open only to direct connections from this machine \
         (not through a proxy, nor from a peer listed in trusted_proxies) while no {role} \
         key is configured: set {setting} in config.toml (or {variable}) and send \
         Authorization: Bearer <key>"
    )]
    NotLocal {
        role: &'static str,
        setting: &'static str,
        variable: &'static str,
    },
    /// A browser request from a web origin that `allowed_origins` does not
    /// list.
    #[error("requests from this web origin are not allowed: add it to allowed_origins")]
    OriginRefused,
}

impl AuthError {
    /// Whether the request lacks valid credentials (401) rather than being
    /// refused whatever it sends (403).
    pub fn is_unauthenticated(&self) -> bool {
        matches!(self, Self::MissingKey { .. } | Self::WrongKey { .. })
    }
}

/// Headers proxies, load balancers and CDNs add to say where a request
/// came from. A request carrying one came from somewhere else, whatever its
/// TCP peer, so it is not trusted as local. Any `X-Forwarded-*` header
/// counts too. (A TCP-level relay adds nothing: see `trust_loopback`.)
const PROXY_HEADERS: [&str; 14] = [
    "forwarded",
    "x-forwarded-for",
    "x-real-ip",
    "via",
    "x-client-ip",
    "true-client-ip",
    "cf-connecting-ip",
    "x-cluster-client-ip",
    "fastly-client-ip",
    "x-forwarded-host",
    "x-original-forwarded-for",
    "x-envoy-external-address",
    "client-ip",
    "forwarded-for",
];

/// Whether a request says it came through a proxy.
pub fn is_proxied(headers: &HeaderMap) -> bool {
    headers.keys().any(|name| {
        let name = name.as_str();
        PROXY_HEADERS.contains(&name) || name.starts_with("x-forwarded-")
    })
}

/// Whether `host` (the `host` setting) is a loopback address.
pub fn is_loopback_host(host: &str) -> bool {
    host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The warning to log at startup when publishing or the admin endpoints
/// are open to loopback peers without a key while herald listens beyond
/// loopback: then anything that relays TCP to it on this machine (stunnel,
/// HAProxy in TCP mode, an SSH tunnel, a sidecar) makes its clients local.
pub fn keyless_exposure_warning(
    host: &str,
    trust_loopback: bool,
    publish_keys: &[Secret],
    admin_keys: &[Secret],
) -> Option<String> {
    if !trust_loopback || is_loopback_host(host) {
        return None;
    }
    let open = match (publish_keys.is_empty(), admin_keys.is_empty()) {
        (true, true) => "publishing (POST /) and /metrics, /stats are",
        (true, false) => "publishing (POST /) is",
        (false, true) => "/metrics and /stats are",
        (false, false) => return None,
    };
    Some(format!(
        "herald listens on {host} and {open} open without a key to any loopback peer: \
         a TCP relay on this machine (stunnel, HAProxy in TCP mode, an SSH tunnel, a sidecar) \
         makes every client it forwards local; set publish_keys and admin_keys \
         (HERALD_PUBLISH_KEYS, HERALD_ADMIN_KEYS), or trust_loopback = false"
    ))
}

/// Checks a request against a set of keys: publishers against
/// `publish_keys`, operators (`/metrics`, `/stats`) against `admin_keys`.
pub struct KeyAuth {
    /// SHA-256 of each key: every comparison is between 32-byte digests, so
    /// neither the content nor the length of a key leaks through timing.
    key_digests: Vec<[u8; 32]>,
    /// Without keys, whether direct loopback peers pass (`trust_loopback`).
    trust_loopback: bool,
    /// What the keys are for, and where they are set, for error messages.
    role: &'static str,
    setting: &'static str,
    variable: &'static str,
}

/// Publishers are checked against `publish_keys`.
pub type PublisherAuth = KeyAuth;

impl KeyAuth {
    /// For `POST /`, against `publish_keys`; without keys, loopback peers
    /// pass while `trust_loopback` holds.
    pub fn publishers(keys: &[Secret], trust_loopback: bool) -> Self {
        Self::new(
            keys,
            trust_loopback,
            "publish",
            "publish_keys",
            "HERALD_PUBLISH_KEYS",
        )
    }

    /// For `/metrics` and `/stats`, against `admin_keys`; without keys,
    /// loopback peers pass while `trust_loopback` holds.
    pub fn admins(keys: &[Secret], trust_loopback: bool) -> Self {
        Self::new(
            keys,
            trust_loopback,
            "admin",
            "admin_keys",
            "HERALD_ADMIN_KEYS",
        )
    }

    fn new(
        keys: &[Secret],
        trust_loopback: bool,
        role: &'static str,
        setting: &'static str,
        variable: &'static str,
    ) -> Self {
        Self {
            key_digests: keys.iter().map(|k| digest(k.expose())).collect(),
            trust_loopback,
            role,
            setting,
            variable,
        }
    }

    /// Decides whether the request may go on. Without keys, only direct
    /// loopback peers may, and only while `trust_loopback` holds. `peer` is
    /// the TCP peer's address, `None` when unknown or a trusted proxy.
    pub fn check(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Result<(), AuthError> {
        if self.key_digests.is_empty() {
            return self.check_local(headers, peer);
        }
        let role = self.role;
        let presented = bearer_token(headers).ok_or(AuthError::MissingKey { role })?;
        let presented = digest(presented);
        // No early exit: every key is compared whatever matches.
        let matched = self
            .key_digests
            .iter()
            .fold(subtle::Choice::from(0), |acc, key| {
                acc | key.ct_eq(&presented)
            });
        if bool::from(matched) {
            Ok(())
        } else {
            Err(AuthError::WrongKey { role })
        }
    }

    /// Without keys: loopback only, not through a proxy, and only while
    /// loopback is trusted.
    fn check_local(&self, headers: &HeaderMap, peer: Option<IpAddr>) -> Result<(), AuthError> {
        let (role, setting, variable) = (self.role, self.setting, self.variable);
        if !self.trust_loopback {
            return Err(AuthError::KeyRequired {
                role,
                setting,
                variable,
            });
        }
        let loopback = peer.is_some_and(|ip| ip.to_canonical().is_loopback());
        if loopback && !is_proxied(headers) {
            return Ok(());
        }
        Err(AuthError::NotLocal {
            role,
            setting,
            variable,
        })
    }
}

/// The scope of idempotency keys when no publish keys are configured:
/// every (loopback) publisher shares it.
const SHARED_SCOPE: &str = "-";

impl KeyAuth {
    /// The scope a publisher's idempotency keys are remembered in, for a
    /// request [`KeyAuth::check`] let through: with keys configured, a
    /// name for the key it presented (16 hex digits of a SHA-256 of the
    /// key with a label of its own: neither the key nor the digest `check`
    /// compares, and the same whatever the order or number of configured
    /// keys, so it survives config edits); without keys, one scope shared
    /// by every publisher.
    pub fn scope(&self, headers: &HeaderMap) -> String {
        match bearer_token(headers) {
            Some(key) if !self.key_digests.is_empty() => {
                let mut hasher = Sha256::new();
                hasher.update(b"herald idempotency scope\n");
                hasher.update(key.as_bytes());
                let digest = hasher.finalize();
                digest[..8].iter().map(|b| format!("{b:02x}")).collect()
            }
            _ => SHARED_SCOPE.into(),
        }
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn bearer_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Which browser origins may talk to herald.
pub struct OriginPolicy {
    allow_any: bool,
    allowed: Vec<Origin>,
}

impl OriginPolicy {
    /// From `allowed_origins`; entries were validated with the config.
    pub fn new(allowed_origins: &[String]) -> Self {
        Self {
            allow_any: allowed_origins.iter().any(|o| o == "*"),
            allowed: allowed_origins
                .iter()
                .filter_map(|o| Origin::parse(o))
                .collect(),
        }
    }

    /// Passes requests without `Origin` (non-browser clients), from
    /// herald's own origin, and from listed origins.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), AuthError> {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return Ok(());
        };
        if self.allow_any {
            return Ok(());
        }
        let origin = origin
            .to_str()
            .ok()
            .and_then(Origin::parse)
            .ok_or(AuthError::OriginRefused)?;
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        if host.is_some_and(|h| origin.is_host(h)) || self.allowed.contains(&origin) {
            Ok(())
        } else {
            Err(AuthError::OriginRefused)
        }
    }

    /// The request's `Origin` when it comes from a web page that
    /// [`OriginPolicy::check`] lets in: what a cross-origin answer names in
    /// `Access-Control-Allow-Origin` ([`crate::routes::cors`]). `None`
    /// without `Origin` or for a refused one.
    pub fn allowed_origin(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        let origin = headers.get(header::ORIGIN)?;
        self.check(headers).ok()?;
        Some(origin.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().unwrap())
    }

    #[test]
    fn without_keys_only_direct_loopback_peers_publish() {
        let auth = PublisherAuth::publishers(&[], true);
        assert!(auth.check(&headers(&[]), ip("127.0.0.1")).is_ok());
        assert!(auth.check(&headers(&[]), ip("::1")).is_ok());
        assert!(auth.check(&headers(&[]), ip("::ffff:127.0.0.1")).is_ok());
        let err = auth.check(&headers(&[]), ip("192.168.1.20")).unwrap_err();
        assert!(matches!(err, AuthError::NotLocal { .. }));
        assert!(err.to_string().contains("publish_keys"), "{err}");
        let proxied = headers(&[("x-forwarded-for", "203.0.113.9")]);
        assert!(auth.check(&proxied, ip("127.0.0.1")).is_err());
        assert!(auth.check(&headers(&[]), None).is_err());
    }

    #[test]
    fn idempotency_scopes_name_the_key_used_without_holding_it() {
        let (one, two) = ("publisher-one-0123456789", "publisher-two-0123456789");
        let auth = PublisherAuth::publishers(&[Secret::new(one), Secret::new(two)], true);
        let with = |key: &str| headers(&[("authorization", &format!("Bearer {key}"))]);
        let (scope_one, scope_two) = (auth.scope(&with(one)), auth.scope(&with(two)));
        assert_ne!(scope_one, scope_two);
        assert_eq!(scope_one.len(), 16);
        assert!(!scope_one.contains("publisher"), "{scope_one}");
        // The same key gives the same scope whatever else is configured.
        let alone = PublisherAuth::publishers(&[Secret::new(one)], true);
        assert_eq!(alone.scope(&with(one)), scope_one);
        let keyless = PublisherAuth::publishers(&[], true);
        assert_eq!(keyless.scope(&headers(&[])), SHARED_SCOPE);
    }

    #[test]
    fn every_proxy_header_marks_a_request_as_proxied() {
        let auth = PublisherAuth::publishers(&[], true);
        for name in PROXY_HEADERS.iter().copied().chain(["x-forwarded-proto"]) {
            let proxied = headers(&[(name, "203.0.113.9")]);
            assert!(is_proxied(&proxied), "{name}");
            assert!(auth.check(&proxied, ip("127.0.0.1")).is_err(), "{name}");
        }
        assert!(!is_proxied(&headers(&[("user-agent", "curl/8")])));
    }

    #[test]
    fn without_loopback_trust_no_keyless_request_passes() {
        let auth = PublisherAuth::publishers(&[], false);
        let err = auth.check(&headers(&[]), ip("127.0.0.1")).unwrap_err();
        assert!(matches!(err, AuthError::KeyRequired { .. }), "{err}");
        assert!(err.to_string().contains("trust_loopback"), "{err}");
        let admins = KeyAuth::admins(&[Secret::new("admin-key-0123456789")], false);
        let keyed = headers(&[("authorization", "Bearer admin-key-0123456789")]);
        assert!(admins.check(&keyed, ip("127.0.0.1")).is_ok());
        assert!(matches!(
            admins.check(&headers(&[]), ip("127.0.0.1")),
            Err(AuthError::MissingKey { .. })
        ));
    }

    #[test]
    fn keyless_access_beyond_loopback_is_warned_about() {
        let key = [Secret::new("a-key-0123456789abc")];
        let warn = |host, trust, publish: &[Secret], admin: &[Secret]| {
            keyless_exposure_warning(host, trust, publish, admin)
        };
        let text = warn("0.0.0.0", true, &[], &[]).unwrap();
        assert!(
            text.contains("0.0.0.0") && text.contains("trust_loopback"),
            "{text}"
        );
        assert!(warn("::", true, &key, &[]).unwrap().contains("/metrics"));
        assert!(warn("192.168.1.5", true, &[], &key)
            .unwrap()
            .contains("POST /"));
        assert!(warn("0.0.0.0", true, &key, &key).is_none());
        assert!(warn("0.0.0.0", false, &[], &[]).is_none());
        for host in ["127.0.0.1", "127.0.0.2", "::1", "localhost"] {
            assert!(warn(host, true, &[], &[]).is_none(), "{host}");
        }
    }

    #[test]
    fn with_keys_any_peer_needs_a_right_key() {
        let auth = PublisherAuth::publishers(
            &[
                Secret::new("first-key-0123456789"),
                Secret::new("second-key-0123456789"),
            ],
            true,
        );
        let right = headers(&[("authorization", "Bearer second-key-0123456789")]);
        assert!(auth.check(&right, ip("198.51.100.7")).is_ok());
        let lower = headers(&[("authorization", "bearer first-key-0123456789")]);
        assert!(auth.check(&lower, ip("127.0.0.1")).is_ok());
        for bad in [
            headers(&[]),
            headers(&[("authorization", "Bearer wrong")]),
            headers(&[("authorization", "Basic Zmlyc3Qta2V5")]),
            headers(&[("authorization", "first-key-0123456789")]),
        ] {
            let err = auth.check(&bad, ip("127.0.0.1")).unwrap_err();
            assert!(err.is_unauthenticated(), "{err}");
        }
    }

    #[test]
    fn same_host_listed_and_absent_origins_pass_others_do_not() {
        let policy = OriginPolicy::new(&["https://app.example.com".into()]);
        let check = |origin: Option<&str>, host: &str| {
            let mut pairs = vec![("host", host)];
            if let Some(o) = origin {
                pairs.push(("origin", o));
            }
            policy.check(&headers(&pairs)).is_ok()
        };
        assert!(check(None, "herald.example.com"));
        assert!(check(Some("http://localhost:8001"), "localhost:8001"));
        assert!(check(Some("http://127.0.0.1:8001"), "127.0.0.1:8001"));
        assert!(check(Some("http://[::1]:8001"), "[::1]:8001"));
        assert!(check(Some("https://app.example.com"), "herald.example.com"));
        // A domain matching its own Host may be DNS rebinding: not trusted.
        let own_domain = Some("https://herald.example.com");
        assert!(!check(own_domain, "herald.example.com"));
        assert!(!check(
            Some("http://evil.example:8001"),
            "evil.example:8001"
        ));
        assert!(!check(Some("http://localhost:8002"), "localhost:8001"));
        assert!(!check(Some("https://evil.example"), "herald.example.com"));
        assert!(!check(Some("null"), "herald.example.com"));
        assert!(OriginPolicy::new(&["*".into()])
            .check(&headers(&[("origin", "https://x.y")]))
            .is_ok());
    }

    #[test]
    fn the_allowed_origin_is_the_one_the_check_passes() {
        let policy = OriginPolicy::new(&["https://app.example.com".into()]);
        let origin = |pairs: &[(&str, &str)]| policy.allowed_origin(&headers(pairs));
        let listed = origin(&[("origin", "https://app.example.com")]);
        assert_eq!(listed.unwrap(), "https://app.example.com");
        assert!(origin(&[("origin", "https://evil.example")]).is_none());
        assert!(origin(&[("host", "herald.example.com")]).is_none());
        let own = origin(&[
            ("origin", "http://127.0.0.1:8001"),
            ("host", "127.0.0.1:8001"),
        ]);
        assert_eq!(own.unwrap(), "http://127.0.0.1:8001");
    }
}
