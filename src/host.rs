//! Which names herald answers to: the `Host` check against DNS rebinding.
//!
//! A page of `http://evil.test:8001` whose DNS name the attacker re-points at
//! 127.0.0.1 ("DNS rebinding") talks to herald as its own site: same
//! origin, so neither the `Origin` check nor the browser's same-origin
//! policy stops it from reading `/stats`, `/metrics` or any id's history
//! through `/poll`. What it cannot change is the `Host` header, which still
//! names `evil.test`. So every request, on every route (static files and the
//! WebSocket upgrade included), must name herald by:
//!
//! - an IP literal, IPv4 or IPv6 in brackets, with or without a port: no
//!   DNS lookup is involved;
//! - `localhost` or a name under `.localhost`, which browsers resolve to
//!   loopback themselves;
//! - a name listed in `allowed_hosts` (herald's own name in DNS or behind a
//!   proxy), any port; `"*"` there turns the check off.
//!
//! Anything else is answered 421 `unknown_host`. A request without `Host`
//! (HTTP/1.0 tools) passes: browsers always send one. A request target in
//! absolute form (`GET http://name/ …`) is checked like a `Host`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use actix_web::http::header::{self, HeaderMap};

/// Longest host name accepted, in bytes (DNS's limit).
const MAX_NAME_BYTES: usize = 253;
/// Longest label of a host name, in bytes (DNS's limit).
const MAX_LABEL_BYTES: usize = 63;

/// What a `Host` value names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostName<'a> {
    /// An IPv4 or IPv6 literal.
    Ip(IpAddr),
    /// A DNS name as written: labels of ASCII letters, digits, `-` and `_`
    /// separated by single dots, no trailing dot.
    Name(&'a str),
}

/// A parsed `Host` header value: `host[:port]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostHeader<'a> {
    pub host: HostName<'a>,
    pub port: Option<u16>,
}

impl<'a> HostHeader<'a> {
    /// Parses `name`, `a.b.c.d` or `[v6]`, each with an optional `:port`
    /// (1 to 5 digits, at most 65535). Nothing else: no user info, path,
    /// spaces, zone ids, empty ports or unbracketed IPv6.
    pub fn parse(value: &'a str) -> Option<Self> {
        if let Some(rest) = value.strip_prefix('[') {
            let (inside, after) = rest.split_once(']')?;
            let ip: Ipv6Addr = inside.parse().ok()?;
            let port = match after {
                "" => None,
                _ => Some(parse_port(after.strip_prefix(':')?)?),
            };
            return Some(Self {
                host: HostName::Ip(IpAddr::V6(ip)),
                port,
            });
        }
        let (host, port) = match value.split_once(':') {
            Some((host, port)) => (host, Some(parse_port(port)?)),
            None => (value, None),
        };
        let host = match host.parse::<Ipv4Addr>() {
            Ok(ip) => HostName::Ip(IpAddr::V4(ip)),
            Err(_) if is_dns_name(host) => HostName::Name(host),
            Err(_) => return None,
        };
        Some(Self { host, port })
    }
}

impl fmt::Display for HostHeader<'_> {
    /// The value again, IPs in their canonical form.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.host {
            HostName::Ip(IpAddr::V4(ip)) => write!(f, "{ip}")?,
            HostName::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]")?,
            HostName::Name(name) => f.write_str(name)?,
        }
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// Digits only (`u16::from_str` would take a `+`), 1 to 5 of them.
fn parse_port(text: &str) -> Option<u16> {
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// Labels of `[A-Za-z0-9_-]`, 1 to 63 bytes each, joined by single dots.
pub fn is_dns_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= MAX_NAME_BYTES
        && text.split('.').all(|label| {
            (1..=MAX_LABEL_BYTES).contains(&label.len())
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// `localhost` or `*.localhost`, in any case: names browsers resolve to
/// loopback without asking DNS.
fn is_localhost(name: &str) -> bool {
    let len = name.len();
    name.eq_ignore_ascii_case("localhost")
        || (len > ".localhost".len()
            && name.is_char_boundary(len - ".localhost".len())
            && name[len - ".localhost".len()..].eq_ignore_ascii_case(".localhost"))
}

/// A request names a host herald does not answer to. `error.rs` answers it
/// with 421 `unknown_host`; the middleware that asks is `routes::host`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnknownHost {
    #[error("more than one Host header")]
    SeveralHeaders,
    #[error("the Host header is not ASCII text")]
    NotAscii,
    /// The name given, cut to 100 characters.
    #[error(
        "herald does not answer to Host {0:?}: use its IP address or localhost, \
         or list the name in allowed_hosts"
    )]
    NotAllowed(String),
}

/// The names herald answers to, from `allowed_hosts`.
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    /// `"*"` was listed: every `Host` passes.
    allow_any: bool,
    /// Listed names, lower-cased.
    names: Vec<String>,
}

impl HostPolicy {
    /// From `allowed_hosts`; entries were validated with the config.
    pub fn new(allowed_hosts: &[String]) -> Self {
        Self {
            allow_any: allowed_hosts.iter().any(|h| h == "*"),
            names: allowed_hosts
                .iter()
                .filter(|h| h.as_str() != "*")
                .map(|h| h.to_ascii_lowercase())
                .collect(),
        }
    }

    /// Whether herald answers to this `Host` value.
    pub fn allows(&self, value: &str) -> bool {
        if self.allow_any {
            return true;
        }
        match HostHeader::parse(value).map(|h| h.host) {
            Some(HostName::Ip(_)) => true,
            Some(HostName::Name(name)) => {
                is_localhost(name) || self.names.iter().any(|n| n.eq_ignore_ascii_case(name))
            }
            None => false,
        }
    }

    /// Checks every name a request gives for herald: its `Host` headers
    /// (exactly one, or none) and the authority of an absolute-form target.
    pub fn check(&self, headers: &HeaderMap, authority: Option<&str>) -> Result<(), UnknownHost> {
        let mut hosts = headers.get_all(header::HOST);
        let first = hosts.next();
        if hosts.next().is_some() {
            return Err(UnknownHost::SeveralHeaders);
        }
        if let Some(value) = first {
            let value = value.to_str().map_err(|_| UnknownHost::NotAscii)?;
            self.check_value(value)?;
        }
        match authority {
            Some(authority) => self.check_value(authority),
            None => Ok(()),
        }
    }

    fn check_value(&self, value: &str) -> Result<(), UnknownHost> {
        if self.allows(value) {
            return Ok(());
        }
        // Quoted as JSON text: the reply encodes it, and nothing logs it.
        Err(UnknownHost::NotAllowed(value.chars().take(100).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_values_parse_strictly() {
        let parsed = |v| HostHeader::parse(v).map(|h| h.to_string());
        assert_eq!(parsed("127.0.0.1:8001").as_deref(), Some("127.0.0.1:8001"));
        assert_eq!(parsed("[::1]:8001").as_deref(), Some("[::1]:8001"));
        assert_eq!(parsed("[0:0::1]").as_deref(), Some("[::1]"));
        assert_eq!(
            parsed("Rt.Example.com:443").as_deref(),
            Some("Rt.Example.com:443")
        );
        assert_eq!(parsed("localhost").as_deref(), Some("localhost"));
        for bad in [
            "",
            ":8001",
            "a:",
            "a:+80",
            "a:65536",
            "a:123456",
            "::1",
            "[::1",
            "[::1]x",
            "[::1]:",
            "[fe80::1%25eth0]",
            "[127.0.0.1]",
            "localhost.",
            "a..b",
            ".a",
            "user@host",
            "host/path",
            "host name",
            "héllo",
            "a:1:2",
        ] {
            assert!(HostHeader::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn addresses_localhost_and_listed_names_are_allowed() {
        let policy = HostPolicy::new(&["rt.example.com".into()]);
        for good in [
            "127.0.0.1",
            "127.0.0.1:8001",
            "203.0.113.5:80",
            "[::1]:8001",
            "[2001:db8::1]",
            "localhost:8001",
            "LOCALHOST",
            "app.localhost:3000",
            "rt.example.com",
            "RT.example.COM:443",
        ] {
            assert!(policy.allows(good), "{good}");
        }
        for bad in [
            "evil.test",
            "evil.test:8001",
            "localhost.evil.test",
            "evillocalhost",
            "rt.example.com.evil.test",
            "example.com",
            "localhost.",
            "",
        ] {
            assert!(!policy.allows(bad), "{bad}");
        }
        assert!(HostPolicy::new(&["*".into()]).allows("evil.test"));
    }

    #[test]
    fn every_name_a_request_gives_is_checked() {
        use actix_web::http::header::HeaderValue;
        let policy = HostPolicy::default();
        let mut headers = HeaderMap::new();
        assert!(policy.check(&headers, None).is_ok(), "no Host at all");
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8001"));
        assert!(policy.check(&headers, None).is_ok());
        let err = policy.check(&headers, Some("evil.test")).unwrap_err();
        assert!(matches!(err, UnknownHost::NotAllowed(_)), "{err}");
        headers.append(header::HOST, HeaderValue::from_static("localhost"));
        assert!(policy.check(&headers, None).is_err(), "two Host headers");
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("evil.test:8001"));
        let err = policy.check(&headers, None).unwrap_err();
        assert!(err.to_string().contains("allowed_hosts"), "{err}");
    }
}
