//! Addresses peers claim, and which of them are worth keeping (proto-spec/messages.md §2.2).
//!
//! Every address the DHT hears of is a claim until we dial it: a peer's own `Hello`, the
//! `closer` peers a responder names, a provider's record. Some claims cannot be true whatever
//! the sender's intent: the unspecified address, a multicast or broadcast one, port 0. Others
//! can be true only near the sender: a loopback address names the sender's own host, a private
//! or link-local one its own network. A node on a public address that names them is either
//! misconfigured or pointing us at someone else's service, so they are dropped unless the
//! sender is itself on loopback or a private network, or the operator declared the network
//! local (`dht.local_network`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// Where an address can be reached from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Scope {
    /// Only on the host itself.
    Loopback,
    /// Only on its own network: RFC 1918, shared (RFC 6598) and link-local IPv4, unique-local
    /// and link-local IPv6.
    Private,
    /// Anywhere.
    Public,
}

impl Scope {
    /// The scope of `ip`; `None` for an address no one can be dialled at (unspecified,
    /// multicast, broadcast).
    pub fn of(ip: IpAddr) -> Option<Scope> {
        match ip.to_canonical() {
            IpAddr::V4(v4) => scope_v4(v4),
            IpAddr::V6(v6) => scope_v6(v6),
        }
    }
}

fn scope_v4(ip: Ipv4Addr) -> Option<Scope> {
    let [a, b, ..] = ip.octets();
    if ip.is_unspecified() || ip.is_multicast() || ip.is_broadcast() {
        None
    } else if ip.is_loopback() {
        Some(Scope::Loopback)
    } else if ip.is_private() || ip.is_link_local() || (a == 100 && (b & 0xc0) == 64) {
        Some(Scope::Private)
    } else {
        Some(Scope::Public)
    }
}

fn scope_v6(ip: Ipv6Addr) -> Option<Scope> {
    let first = ip.segments()[0];
    if ip.is_unspecified() || ip.is_multicast() {
        None
    } else if ip.is_loopback() {
        Some(Scope::Loopback)
    } else if (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80 {
        Some(Scope::Private)
    } else {
        Some(Scope::Public)
    }
}

/// Whether `claim`, heard from a sender at `from`, could be where its subject listens.
pub fn plausible(claim: &SocketAddr, from: IpAddr, local_network: bool) -> bool {
    let Some(scope) = Scope::of(claim.ip()) else { return false };
    if claim.port() == 0 {
        return false;
    }
    if local_network {
        return true;
    }
    // A claim may be no more local than its sender.
    Scope::of(from).is_some_and(|sender| scope >= sender)
}

/// Keeps the plausible claims of `addrs` (in order); returns how many were dropped.
pub fn retain_plausible(addrs: &mut Vec<SocketAddr>, from: IpAddr, local_network: bool) -> usize {
    let before = addrs.len();
    addrs.retain(|a| plausible(a, from, local_network));
    before - addrs.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn scopes_of_every_range() {
        for (addr, scope) in [
            ("0.0.0.0", None),
            ("255.255.255.255", None),
            ("224.0.0.1", None),
            ("::", None),
            ("ff02::1", None),
            ("127.0.0.1", Some(Scope::Loopback)),
            ("127.8.9.10", Some(Scope::Loopback)),
            ("::1", Some(Scope::Loopback)),
            ("::ffff:127.0.0.1", Some(Scope::Loopback)),
            ("10.1.2.3", Some(Scope::Private)),
            ("172.16.0.1", Some(Scope::Private)),
            ("172.31.255.1", Some(Scope::Private)),
            ("192.168.1.1", Some(Scope::Private)),
            ("169.254.0.9", Some(Scope::Private)),
            ("100.64.0.1", Some(Scope::Private)),
            ("100.127.255.1", Some(Scope::Private)),
            ("fd00::1", Some(Scope::Private)),
            ("fe80::1", Some(Scope::Private)),
            ("::ffff:10.0.0.1", Some(Scope::Private)),
            ("172.32.0.1", Some(Scope::Public)),
            ("100.128.0.1", Some(Scope::Public)),
            ("8.8.8.8", Some(Scope::Public)),
            ("2001:db8::1", Some(Scope::Public)),
        ] {
            assert_eq!(Scope::of(ip(addr)), scope, "{addr}");
        }
    }

    #[test]
    fn a_claim_is_no_more_local_than_its_sender() {
        let public = ip("203.0.113.7");
        let private = ip("10.0.0.7");
        let loopback = ip("127.0.0.1");
        // From a public sender: only public claims.
        assert!(plausible(&sa("198.51.100.1:4000"), public, false));
        assert!(!plausible(&sa("10.0.0.1:4000"), public, false));
        assert!(!plausible(&sa("127.0.0.1:4000"), public, false));
        assert!(!plausible(&sa("[fe80::1]:4000"), public, false));
        // From a private sender: private and public.
        assert!(plausible(&sa("10.9.9.9:4000"), private, false));
        assert!(plausible(&sa("198.51.100.1:4000"), private, false));
        assert!(!plausible(&sa("127.0.0.1:4000"), private, false));
        // From loopback (a devnet on one host): everything dialable.
        assert!(plausible(&sa("127.0.0.1:4000"), loopback, false));
        assert!(plausible(&sa("10.0.0.1:4000"), loopback, false));
        // A local network takes every dialable claim.
        assert!(plausible(&sa("127.0.0.1:4000"), public, true));
    }

    #[test]
    fn undialable_claims_are_dropped_from_anyone() {
        for claim in ["0.0.0.0:4000", "224.0.0.1:4000", "255.255.255.255:4000", "8.8.8.8:0"] {
            assert!(!plausible(&sa(claim), ip("127.0.0.1"), true), "{claim}");
        }
        let mut addrs = vec![sa("8.8.8.8:4000"), sa("10.0.0.1:4000"), sa("8.8.4.4:0")];
        assert_eq!(retain_plausible(&mut addrs, ip("203.0.113.7"), false), 2);
        assert_eq!(addrs, vec![sa("8.8.8.8:4000")]);
    }
}
