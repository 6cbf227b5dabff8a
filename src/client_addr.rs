//! Who a request came from: its TCP peer, or, when that peer is one of the
//! `trusted_proxies`, the client the proxy names in `X-Forwarded-For` or
//! `Forwarded`. Every route that counts, logs or trusts a client address
//! asks [`TrustedProxies::resolve`] for it; nothing else reads those
//! headers for an address.
//!
//! The rules:
//! - A peer outside `trusted_proxies` is the client; its headers are
//!   ignored, whatever they say.
//! - From a trusted peer, the proxy chain is read from the right (the hop
//!   nearest herald) and the first address that is not itself a trusted
//!   proxy is the client: whatever a client writes into the header itself
//!   stands to the left of what its proxy appended, so it cannot choose its
//!   address. If every address is trusted, the leftmost is the client.
//! - `X-Forwarded-For` wins over `Forwarded` when a request carries both:
//!   it is what nginx, HAProxy, Traefik, Caddy and the cloud load balancers
//!   write, and a proxy that writes one header usually passes the other on
//!   untouched from the client.
//! - A header that cannot be read as far as the client (an entry that is
//!   not an address, `for=unknown`, an obfuscated node, a `Forwarded`
//!   element without `for=`, text that is not ASCII) gives no client: the
//!   request counts as the peer's, the proxy's own address.
//! - A request whose peer is a trusted proxy is a proxied request even
//!   without these headers: it never gets keyless loopback trust
//!   ([`ClientAddr::direct_peer`]).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use actix_web::http::header::HeaderMap;
use ipnet::IpNet;

/// The `trusted_proxies` setting: networks whose peers are proxies that
/// say who their clients are.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    /// The entries as written, for the startup warnings.
    entries: Vec<String>,
}

/// Why a `trusted_proxies` entry was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{entry:?} is not an address or network like \"10.0.0.0/8\", \"127.0.0.1\" or \"::1/128\"")]
pub struct BadProxyEntry {
    pub entry: String,
}

impl TrustedProxies {
    /// From the `trusted_proxies` entries: networks in CIDR notation, or
    /// bare addresses (a /32 or /128).
    pub fn parse(entries: &[String]) -> Result<Self, BadProxyEntry> {
        let nets = entries
            .iter()
            .map(|entry| parse_entry(entry))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            nets,
            entries: entries.iter().map(|e| e.trim().to_owned()).collect(),
        })
    }

    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// What a deployer should hear at startup about these entries: one
    /// that trusts every address, or one written with host bits (read as
    /// its network).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        for (net, entry) in self.nets.iter().zip(&self.entries) {
            if net.prefix_len() == 0 {
                warnings.push(format!(
                    "trusted_proxies entry {entry} trusts every address: any client can \
                     choose the address herald sees with X-Forwarded-For"
                ));
            } else if entry.parse::<IpNet>().is_ok_and(|written| written != *net) {
                warnings.push(format!(
                    "trusted_proxies entry {entry} is read as the network {net}"
                ));
            }
        }
        warnings
    }

    /// Whether `ip` is a trusted proxy (IPv4-mapped IPv6 addresses as
    /// their IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// Whether some loopback address is trusted as a proxy: then keyless
    /// publishing from this machine through that address is refused.
    pub fn covers_loopback(&self) -> bool {
        self.nets.iter().any(|net| {
            net.contains(&IpAddr::from([127, 0, 0, 1]))
                || net.contains(&IpAddr::V6(std::net::Ipv6Addr::LOCALHOST))
        })
    }

    /// Who a request with TCP peer `peer` and these headers came from;
    /// `None` when the peer is unknown (not over TCP).
    pub fn resolve(&self, peer: Option<SocketAddr>, headers: &HeaderMap) -> Option<ClientAddr> {
        let peer = peer?;
        if !self.contains(peer.ip()) {
            return Some(ClientAddr {
                peer,
                via_proxy: false,
                forwarded: None,
            });
        }
        Some(ClientAddr {
            peer,
            via_proxy: true,
            forwarded: self.forwarded_client(headers),
        })
    }

    /// The client a trusted proxy names, or `None` when its headers do not
    /// say (absent, or unreadable as far as the client).
    fn forwarded_client(&self, headers: &HeaderMap) -> Option<IpAddr> {
        let chain = if headers.contains_key("x-forwarded-for") {
            x_forwarded_for(headers)
        } else if headers.contains_key("forwarded") {
            forwarded(headers)
        } else {
            return None;
        };
        let mut leftmost_trusted = None;
        for hop in chain.into_iter().rev() {
            let ip = hop?.to_canonical();
            if !self.contains(ip) {
                return Some(ip);
            }
            leftmost_trusted = Some(ip);
        }
        leftmost_trusted
    }
}

/// One `trusted_proxies` entry: `a.b.c.d/n`, `x::y/n`, or a bare address.
fn parse_entry(entry: &str) -> Result<IpNet, BadProxyEntry> {
    let text = entry.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        // `10.0.0.1/8` names the network 10.0.0.0/8.
        .map(|net| net.trunc())
        .map_err(|_| BadProxyEntry {
            entry: entry.to_owned(),
        })
}

/// The addresses of every `X-Forwarded-For` header, in order, left to
/// right; `None` for an entry that is not an address. Entries are read by
/// the standard library's address parsers (an address, or an address with
/// a port as some proxies write it); the list is comma-separated, and
/// several header lines are one list in their order (RFC 9110, 5.3).
fn x_forwarded_for(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut chain = Vec::new();
    for value in headers.get_all("x-forwarded-for") {
        let Ok(value) = value.to_str() else {
            chain.push(None);
            continue;
        };
        chain.extend(
            value
                .split(',')
                .map(str::trim)
                .filter(|entry| !entry.is_empty())
                .map(|entry| {
                    entry
                        .parse::<IpAddr>()
                        .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
                        .ok()
                }),
        );
    }
    chain
}

/// The `for=` addresses of every `Forwarded` element (RFC 7239, read by
/// the `rfc7239` crate: quoted IPv6 in brackets, ports), in order; `None`
/// for an element that does not parse or names no address.
fn forwarded(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut chain = Vec::new();
    for value in headers.get_all("forwarded") {
        let Ok(value) = value.to_str() else {
            chain.push(None);
            continue;
        };
        chain.extend(rfc7239::parse(value).map(|element| {
            element
                .ok()
                .and_then(|element| element.forwarded_for)
                .and_then(|node| node.ip().copied())
        }));
    }
    chain
}

/// Where one request came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    /// The TCP peer.
    peer: SocketAddr,
    /// Whether the peer is a trusted proxy.
    via_proxy: bool,
    /// The client the proxy named, when it named one that could be read.
    forwarded: Option<IpAddr>,
}

impl ClientAddr {
    /// The address the per-address caps count and logs show: the
    /// forwarded client's, else the peer's.
    pub fn ip(&self) -> IpAddr {
        self.forwarded.unwrap_or_else(|| self.peer.ip())
    }

    /// The trusted proxy the request came through, if any.
    pub fn proxy(&self) -> Option<SocketAddr> {
        self.via_proxy.then_some(self.peer)
    }

    /// The peer's address when it is not a proxy: the only address that
    /// may earn keyless loopback trust. `None` for a trusted proxy, whose
    /// requests come from elsewhere whatever its own address.
    pub fn direct_peer(&self) -> Option<IpAddr> {
        (!self.via_proxy).then(|| self.peer.ip())
    }
}

/// A session's address after `peer=` in a log line's text ([`ClientAddr`]'s
/// `Display`), or `unknown`; written only when the line is.
pub struct PeerLabel(pub Option<ClientAddr>);

impl fmt::Display for PeerLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("unknown"),
        }
    }
}

/// The client alone, for a log line's `peer` field: the peer with its port
/// when direct; through a proxy, the address it named (or the proxy's own);
/// `unknown` when not known. Written only when the line is.
pub struct ClientLabel(pub Option<ClientAddr>);

impl fmt::Display for ClientLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("unknown"),
            Some(ClientAddr {
                peer,
                via_proxy: false,
                ..
            }) => peer.fmt(f),
            Some(ClientAddr {
                peer, forwarded, ..
            }) => forwarded.unwrap_or_else(|| peer.ip()).fmt(f),
        }
    }
}

/// The `proxy` field of a session's log line: the trusted proxy the client
/// came through, if any.
pub fn proxy_label(peer: Option<ClientAddr>) -> Option<String> {
    peer.and_then(|p| p.proxy()).map(|proxy| proxy.to_string())
}

/// For log lines, after `peer=`: the peer with its port when direct;
/// through a proxy, the client's address and ` proxy=<peer>`.
impl fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.via_proxy, self.forwarded) {
            (false, _) => write!(f, "{}", self.peer),
            (true, Some(client)) => write!(f, "{client} proxy={}", self.peer),
            (true, None) => write!(f, "{} proxy={}", self.peer.ip(), self.peer),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::{HeaderName, HeaderValue};

    fn proxies(entries: &[&str]) -> TrustedProxies {
        let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
        TrustedProxies::parse(&entries).unwrap()
    }

    #[test]
    fn entries_that_trust_everyone_or_carry_host_bits_are_warned_about() {
        assert!(proxies(&["127.0.0.1/32", "10.0.0.0/8", "::1"])
            .warnings()
            .is_empty());
        let warnings = proxies(&["10.0.0.1/8", "0.0.0.0/0", "::/0"]).warnings();
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].contains("10.0.0.0/8"), "{warnings:?}");
        assert!(warnings[1].contains("every address"), "{warnings:?}");
        assert!(warnings[2].contains("every address"), "{warnings:?}");
    }

    fn headers(pairs: &[(&str, &[u8])]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_bytes(value).unwrap(),
            );
        }
        map
    }

    fn peer(text: &str) -> Option<SocketAddr> {
        Some(text.parse().unwrap())
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// The address herald takes for a request from `from` with `pairs`.
    fn client(trusted: &[&str], from: &str, pairs: &[(&str, &[u8])]) -> IpAddr {
        proxies(trusted)
            .resolve(peer(from), &headers(pairs))
            .unwrap()
            .ip()
    }

    const LB: &[&str] = &["127.0.0.1/32", "10.0.0.0/8"];

    #[test]
    fn entries_are_networks_or_bare_addresses() {
        let trusted = proxies(&["10.0.0.0/8", "192.0.2.7", "2001:db8::/32", "::1"]);
        assert!(trusted.contains(ip("10.200.3.4")));
        assert!(trusted.contains(ip("192.0.2.7")));
        assert!(!trusted.contains(ip("192.0.2.8")));
        assert!(trusted.contains(ip("2001:db8:ffff::1")));
        assert!(trusted.contains(ip("::1")));
        assert!(!trusted.contains(ip("::2")));
        // A dual-stack listener sees IPv4 peers as mapped addresses.
        assert!(trusted.contains(ip("::ffff:10.1.2.3")));
        // Host bits are dropped: 10.1.2.3/8 is 10.0.0.0/8.
        assert!(proxies(&["10.1.2.3/8"]).contains(ip("10.9.9.9")));
        for bad in ["", "10.0.0.0/33", "localhost", "10.0.0", "::1/129", "*"] {
            let err = TrustedProxies::parse(&[bad.to_owned()]).unwrap_err();
            assert_eq!(err.entry, bad);
        }
        assert!(proxies(&[]).is_empty());
        assert!(proxies(&["127.0.0.0/8"]).covers_loopback());
        assert!(proxies(&["::1"]).covers_loopback());
        assert!(!proxies(&["10.0.0.0/8"]).covers_loopback());
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_its_headers_say() {
        let pairs: &[(&str, &[u8])] = &[
            ("x-forwarded-for", b"203.0.113.9"),
            ("forwarded", b"for=203.0.113.9"),
        ];
        assert_eq!(client(LB, "192.0.2.1:5000", pairs), ip("192.0.2.1"));
        assert_eq!(client(&[], "127.0.0.1:5000", pairs), ip("127.0.0.1"));
        let direct = proxies(LB)
            .resolve(peer("192.0.2.1:5000"), &headers(pairs))
            .unwrap();
        assert_eq!(direct.proxy(), None);
        assert_eq!(direct.direct_peer(), Some(ip("192.0.2.1")));
        assert_eq!(direct.to_string(), "192.0.2.1:5000");
        assert_eq!(proxies(LB).resolve(None, &headers(pairs)), None);
    }

    #[test]
    fn x_forwarded_for_gives_the_rightmost_untrusted_address() {
        let from = "127.0.0.1:40000";
        let xff = |value: &'static [u8]| client(LB, from, &[("x-forwarded-for", value)]);
        assert_eq!(xff(b"203.0.113.9"), ip("203.0.113.9"));
        // A client that writes its own header only adds to the left.
        assert_eq!(xff(b"1.2.3.4, 203.0.113.9"), ip("203.0.113.9"));
        // Trusted hops on the right are skipped.
        assert_eq!(xff(b"203.0.113.9, 10.0.0.5, 10.1.1.1"), ip("203.0.113.9"));
        // All trusted: the leftmost.
        assert_eq!(xff(b"10.0.0.7, 10.0.0.5"), ip("10.0.0.7"));
        // Ports, IPv6, brackets, spaces.
        assert_eq!(xff(b"203.0.113.9:4711"), ip("203.0.113.9"));
        assert_eq!(xff(b" 2001:db8::7 "), ip("2001:db8::7"));
        assert_eq!(xff(b"[2001:db8::7]:4711"), ip("2001:db8::7"));
        assert_eq!(xff(b"::ffff:203.0.113.9"), ip("203.0.113.9"));
        // Several header lines are one list, in order.
        let two = client(
            LB,
            from,
            &[
                ("x-forwarded-for", b"198.51.100.1"),
                ("x-forwarded-for", b"203.0.113.9, 10.0.0.5"),
            ],
        );
        assert_eq!(two, ip("203.0.113.9"));
        let resolved = proxies(LB)
            .resolve(peer(from), &headers(&[("x-forwarded-for", b"203.0.113.9")]))
            .unwrap();
        assert_eq!(resolved.proxy(), peer(from));
        assert_eq!(resolved.direct_peer(), None);
        assert_eq!(resolved.to_string(), "203.0.113.9 proxy=127.0.0.1:40000");
    }

    #[test]
    fn garbage_left_of_the_client_does_not_matter_and_at_the_client_falls_back() {
        let from = "127.0.0.1:40000";
        let xff = |value: &'static [u8]| client(LB, from, &[("x-forwarded-for", value)]);
        assert_eq!(xff(b"not-an-ip, 203.0.113.9"), ip("203.0.113.9"));
        for garbage in [
            &b"not-an-ip"[..],
            b"203.0.113.9, nonsense",
            b"unknown",
            b"203.0.113.9, 10.0.0.5, 300.1.1.1",
            b"\xff\xfe",
            b",,,",
            b"203.0.113.9;drop table",
        ] {
            assert_eq!(xff(garbage), ip("127.0.0.1"), "{garbage:?}");
        }
        let resolved = proxies(LB)
            .resolve(peer(from), &headers(&[("x-forwarded-for", b"junk")]))
            .unwrap();
        assert_eq!(resolved.proxy(), peer(from));
        assert_eq!(resolved.direct_peer(), None, "still a proxied request");
        assert_eq!(resolved.to_string(), "127.0.0.1 proxy=127.0.0.1:40000");
        // A trusted peer without any header is the proxy itself.
        let bare = proxies(LB).resolve(peer(from), &HeaderMap::new()).unwrap();
        assert_eq!((bare.ip(), bare.direct_peer()), (ip("127.0.0.1"), None));
    }

    #[test]
    fn forwarded_for_is_read_as_rfc_7239_says() {
        let from = "10.0.0.2:40000";
        let fwd = |value: &'static [u8]| client(LB, from, &[("forwarded", value)]);
        assert_eq!(fwd(b"for=203.0.113.9"), ip("203.0.113.9"));
        assert_eq!(fwd(b"For=\"203.0.113.9:4711\""), ip("203.0.113.9"));
        assert_eq!(
            fwd(b"for=\"[2001:db8:cafe::17]:4711\""),
            ip("2001:db8:cafe::17")
        );
        assert_eq!(fwd(b"for=\"[2001:db8:cafe::17]\""), ip("2001:db8:cafe::17"));
        assert_eq!(
            fwd(b"for=192.0.2.43;proto=https;by=10.0.0.2, for=203.0.113.9;proto=http"),
            ip("203.0.113.9")
        );
        assert_eq!(
            fwd(b"for=203.0.113.9, for=10.0.0.3;by=10.0.0.2"),
            ip("203.0.113.9")
        );
        // Unknown or obfuscated nodes, no `for=`, bad syntax: the peer.
        for garbage in [
            &b"for=unknown"[..],
            b"for=_hidden",
            b"proto=https",
            b"for=2001:db8::1",
            b"for",
            b"for=\"[::1\"",
            b"for=203.0.113.9:99999",
        ] {
            assert_eq!(fwd(garbage), ip("10.0.0.2"), "{garbage:?}");
        }
    }

    #[test]
    fn x_forwarded_for_wins_over_forwarded() {
        let both = client(
            LB,
            "127.0.0.1:1",
            &[
                ("forwarded", b"for=198.51.100.1"),
                ("x-forwarded-for", b"203.0.113.9"),
            ],
        );
        assert_eq!(both, ip("203.0.113.9"));
        // Even when it is the one that cannot be read.
        let broken = client(
            LB,
            "127.0.0.1:1",
            &[
                ("forwarded", b"for=198.51.100.1"),
                ("x-forwarded-for", b"junk"),
            ],
        );
        assert_eq!(broken, ip("127.0.0.1"));
    }

    #[test]
    fn a_direct_address_displays_as_the_peer() {
        let direct = proxies(LB)
            .resolve(peer("[::1]:8000"), &HeaderMap::new())
            .unwrap();
        assert_eq!(direct.to_string(), "[::1]:8000");
        assert_eq!(direct.ip(), ip("::1"));
    }
}
