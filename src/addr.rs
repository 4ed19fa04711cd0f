//! Peer addresses: `NODEID@host:port` (proto-spec/transport.md §4).
//!
//! A dial always names the key it expects, so even the first connection to a bootstrap node
//! is authenticated. `NODEID` is 64 hex digits; `host` is an IP address (IPv6 in brackets) or
//! a name resolved once, when parsed.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;

use crate::identity::NodeId;

/// A peer's expected id and where to reach it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerAddr {
    /// The id TLS must authenticate.
    pub id: NodeId,
    /// The TCP address.
    pub addr: SocketAddr,
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#}@{}", self.id, self.addr)
    }
}

impl FromStr for PeerAddr {
    type Err = ParseAddrError;

    fn from_str(s: &str) -> Result<PeerAddr, ParseAddrError> {
        let (id, host) = s.split_once('@').ok_or(ParseAddrError::MissingId)?;
        let id = id.parse().map_err(|_| ParseAddrError::BadId)?;
        let addr = match host.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => host
                .to_socket_addrs()
                .map_err(|_| ParseAddrError::BadHost)?
                .next()
                .ok_or(ParseAddrError::BadHost)?,
        };
        Ok(PeerAddr { id, addr })
    }
}

/// A peer address string is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseAddrError {
    /// No `NODEID@` prefix.
    MissingId,
    /// The id is not 64 hex digits.
    BadId,
    /// `host:port` is not an address and does not resolve.
    BadHost,
}

impl fmt::Display for ParseAddrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::MissingId => "expected NODEID@host:port",
            Self::BadId => "NODEID must be 64 hex digits",
            Self::BadHost => "host:port is not a reachable address",
        })
    }
}

impl std::error::Error for ParseAddrError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints_id_at_address() {
        let id = NodeId::from_bytes([0xab; 32]);
        let text = format!("{id:#}@127.0.0.1:4040");
        let pa: PeerAddr = text.parse().unwrap();
        assert_eq!(pa, PeerAddr { id, addr: "127.0.0.1:4040".parse().unwrap() });
        assert_eq!(pa.to_string(), text);
        let v6: PeerAddr = format!("{id:#}@[::1]:9").parse().unwrap();
        assert_eq!(v6.addr, "[::1]:9".parse().unwrap());
    }

    #[test]
    fn rejects_missing_or_bad_parts() {
        assert_eq!("127.0.0.1:1".parse::<PeerAddr>(), Err(ParseAddrError::MissingId));
        assert_eq!("abc@127.0.0.1:1".parse::<PeerAddr>(), Err(ParseAddrError::BadId));
        let id = "00".repeat(32);
        assert_eq!(format!("{id}@nowhere").parse::<PeerAddr>(), Err(ParseAddrError::BadHost));
    }
}
