//! A web origin (`scheme://host[:port]`), as browsers send it in `Origin`
//! and as `allowed_origins` lists it. The policy that decides which origins
//! may talk to herald is `auth::OriginPolicy`; this module only parses and
//! compares.

use std::net::IpAddr;

/// A web origin: scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// Parses `http(s)://host[:port]`, nothing else (no path, no user).
    pub fn parse(text: &str) -> Option<Self> {
        let (scheme, rest) = text.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let (host, port) = split_host_port(rest, default_port)?;
        // Browsers send a host as ASCII (an IDN in its xn-- form), never a
        // pattern: `*.example.com` or `bücher.example` could never match.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':');
        if !bare.chars().all(plain) {
            return None;
        }
        Some(Self { scheme, host, port })
    }

    /// Whether this origin names the same host and port as a `Host` header
    /// (which carries no scheme; the origin's default port fills in), and
    /// that host is an IP address or `localhost`.
    ///
    /// A domain name is not trusted this way: through DNS rebinding, a page
    /// of `http://evil.example:8001` can reach herald on 127.0.0.1 with
    /// `Host: evil.example:8001`, matching its own `Origin`. herald's own
    /// pages served under a domain name need that origin in
    /// `allowed_origins`.
    pub fn is_host(&self, host_header: &str) -> bool {
        let default_port = if self.scheme == "https" { 443 } else { 80 };
        let same = split_host_port(host_header, default_port)
            .is_some_and(|(host, port)| host == self.host && port == self.port);
        same && is_address_or_localhost(&self.host)
    }
}

/// An IP literal (IPv6 in brackets) or `localhost`: names no DNS lookup can
/// make point elsewhere.
fn is_address_or_localhost(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || bare.parse::<IpAddr>().is_ok()
}

/// Splits `host[:port]` (IPv6 in brackets); lower-cases the host.
fn split_host_port(text: &str, default_port: u16) -> Option<(String, u16)> {
    if text.is_empty() || text.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => default_port,
            None => return None,
        };
        (format!("[{host}]"), port)
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), port.parse().ok()?),
            None => (text.to_owned(), default_port),
        }
    };
    (!host.is_empty()).then(|| (host.to_ascii_lowercase(), port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_parse_strictly() {
        let o = Origin::parse("HTTPS://Example.com").unwrap();
        assert_eq!((o.host.as_str(), o.port), ("example.com", 443));
        assert_eq!(Origin::parse("http://[::1]:8001").unwrap().port, 8001);
        for bad in [
            "example.com",
            "https://",
            "https://a/b",
            "ws://a",
            "https://a:x",
            "null",
        ] {
            assert!(Origin::parse(bad).is_none(), "{bad}");
        }
    }
}
