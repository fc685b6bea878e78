//! Who the caller is when a reverse proxy stands in front: the address in `Forwarded` (RFC 7239),
//! `X-Forwarded-For` or `X-Real-IP`, believed only when the peer is a configured trusted proxy.
//!
//! Local mode serves loopback callers with every role. Behind a proxy on the same host every request
//! arrives from loopback, so a request that says it was forwarded is judged by the address it was
//! forwarded for, or refused when the proxy is not trusted (see `auth::admit`).

use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;

const FORWARDED: &str = "forwarded";
const X_FORWARDED_FOR: &str = "x-forwarded-for";
const X_REAL_IP: &str = "x-real-ip";

/// The caller's address as resolved for this request (the peer, or the address a trusted proxy
/// forwarded), for middleware and handlers that key on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallerAddr(pub IpAddr);

/// Why a forwarded request is not believed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untrusted {
    /// The headers came from a peer that is not a trusted proxy.
    Proxy(IpAddr),
    /// A trusted proxy forwarded something that is not an address (`unknown`, an obfuscated name).
    Unreadable(String),
}

/// Whether the request carries any forwarding header.
pub fn is_forwarded(headers: &HeaderMap) -> bool {
    [FORWARDED, X_FORWARDED_FOR, X_REAL_IP]
        .iter()
        .any(|name| headers.contains_key(*name))
}

/// The caller: the peer when nothing was forwarded; otherwise, walking the chain of forwarded
/// addresses from the nearest hop, the first address that is not a trusted proxy.
pub fn caller(headers: &HeaderMap, peer: IpAddr, trusted: &[IpAddr]) -> Result<IpAddr, Untrusted> {
    let peer = peer.to_canonical();
    if !is_forwarded(headers) {
        return Ok(peer);
    }
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|t| t.to_canonical() == *ip);
    if !is_trusted(&peer) {
        return Err(Untrusted::Proxy(peer));
    }
    let mut client = peer;
    for hop in chain(headers).iter().rev() {
        client = parse_node(hop).ok_or_else(|| Untrusted::Unreadable(hop.clone()))?;
        if !is_trusted(&client) {
            break;
        }
    }
    Ok(client)
}

/// The forwarded addresses, farthest first, from the first header kind present (`Forwarded` wins over
/// `X-Forwarded-For`, which wins over `X-Real-IP`); repeated header lines are one list in order.
fn chain(headers: &HeaderMap) -> Vec<String> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    };
    let forwarded = values(FORWARDED);
    if !forwarded.is_empty() {
        return forwarded
            .iter()
            .flat_map(|line| line.split(','))
            .map(|element| {
                element
                    .split(';')
                    .filter_map(|pair| pair.split_once('='))
                    .find(|(key, _)| key.trim().eq_ignore_ascii_case("for"))
                    .map_or_else(String::new, |(_, value)| value.trim().to_owned())
            })
            .collect();
    }
    let forwarded_for = values(X_FORWARDED_FOR);
    let lines = if forwarded_for.is_empty() {
        values(X_REAL_IP)
    } else {
        forwarded_for
    };
    lines
        .iter()
        .flat_map(|line| line.split(','))
        .map(|hop| hop.trim().to_owned())
        .collect()
}

/// One hop: `192.0.2.1`, `192.0.2.1:8080`, `2001:db8::1`, `[2001:db8::1]:8080`, optionally quoted.
fn parse_node(node: &str) -> Option<IpAddr> {
    let node = node.trim().trim_matches('"');
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(addr.ip().to_canonical());
    }
    node.strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(ip, _)| ip.parse::<IpAddr>().ok())
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn without_headers_the_peer_is_the_caller() {
        assert_eq!(
            caller(&HeaderMap::new(), ip("10.0.0.1"), &[]),
            Ok(ip("10.0.0.1"))
        );
    }

    #[test]
    fn headers_from_an_untrusted_peer_are_refused() {
        let h = headers(&[("x-forwarded-for", "127.0.0.1")]);
        assert_eq!(
            caller(&h, ip("127.0.0.1"), &[]),
            Err(Untrusted::Proxy(ip("127.0.0.1")))
        );
    }

    #[test]
    fn a_trusted_proxy_names_the_caller() {
        let trusted = [ip("127.0.0.1"), ip("10.0.0.2")];
        let h = headers(&[("x-forwarded-for", "203.0.113.7, 10.0.0.2")]);
        assert_eq!(caller(&h, ip("127.0.0.1"), &trusted), Ok(ip("203.0.113.7")));
        // A client cannot hide behind an address it prepends itself: the nearest untrusted hop wins.
        let h = headers(&[("x-forwarded-for", "127.0.0.1, 203.0.113.7")]);
        assert_eq!(caller(&h, ip("127.0.0.1"), &trusted), Ok(ip("203.0.113.7")));
        let h = headers(&[("forwarded", "for=\"[2001:db8::1]:4711\";proto=http")]);
        assert_eq!(caller(&h, ip("::1"), &[ip("::1")]), Ok(ip("2001:db8::1")));
        let h = headers(&[("x-real-ip", "192.0.2.9:5000")]);
        assert_eq!(caller(&h, ip("127.0.0.1"), &trusted), Ok(ip("192.0.2.9")));
    }

    #[test]
    fn an_unreadable_hop_is_refused() {
        let h = headers(&[("forwarded", "for=unknown")]);
        assert!(matches!(
            caller(&h, ip("127.0.0.1"), &[ip("127.0.0.1")]),
            Err(Untrusted::Unreadable(_))
        ));
    }
}
