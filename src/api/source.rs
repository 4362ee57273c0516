//! The source address a request is counted under for failed authentications
//! (SPEC §4): the peer's, or, when the peer is one of the server's trusted
//! proxies, the client address its `x-forwarded-for` names.

use std::net::{IpAddr, SocketAddr};

use ipnet::IpNet;

/// The address `peer`'s request is from. Behind trusted proxies the
/// `x-forwarded-for` hops are read from the right (the hop the nearest proxy
/// appended) and the first hop that is not itself a trusted proxy is the
/// client: hops further left were written by the client and prove nothing.
/// A hop that is not an address ends the walk at the last good one.
pub fn source_address(
    peer: Option<IpAddr>,
    forwarded_for: &[&str],
    trusted: &[IpNet],
) -> Option<IpAddr> {
    let peer = peer?.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let mut source = peer;
    let hops = forwarded_for
        .iter()
        .rev()
        .flat_map(|value| value.rsplit(','));
    for hop in hops {
        let Some(ip) = parse_hop(hop.trim()) else {
            break;
        };
        source = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    Some(source)
}

/// One `x-forwarded-for` hop: an address, with or without a port.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|a| a.ip()))
        .ok()
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn forwarded_for_counts_only_from_a_trusted_proxy() {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let peer = Some(ip("10.1.2.3"));
        assert_eq!(
            source_address(peer, &["203.0.113.7"], &trusted),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(
            source_address(Some(ip("198.51.100.1")), &["203.0.113.7"], &trusted),
            Some(ip("198.51.100.1")),
            "an untrusted peer's header is ignored"
        );
        assert_eq!(
            source_address(peer, &["1.1.1.1, 203.0.113.7, 10.9.9.9"], &trusted),
            Some(ip("203.0.113.7")),
            "the client-written hops on the left are not believed"
        );
        assert_eq!(
            source_address(peer, &["203.0.113.7:4711"], &trusted),
            Some(ip("203.0.113.7"))
        );
        assert_eq!(source_address(peer, &["junk"], &trusted), peer);
        assert_eq!(source_address(peer, &[], &trusted), peer);
        assert_eq!(source_address(None, &["203.0.113.7"], &trusted), None);
    }
}
